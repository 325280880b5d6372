//! The binary envelope around every message, and its signature.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "HR" (0x48 0x52)
//! 2       1     version, 1
//! 3       1     algorithm: 1 = Ed25519 (2 is reserved for SM2 with SM3)
//! 4       4     key id, unsigned big-endian
//! 8       64    signature
//! 72      n     payload: UTF-8 JSON, 1 ≤ n ≤ 16384
//! ```
//!
//! The signature covers `domain ‖ bytes 0..8 ‖ payload`: the exact bytes sent, never a
//! re-serialisation, so a C verifier needs no canonical JSON. The domain string differs per
//! direction, so a device's report can never be passed off as a hub command or back.

use alloc::vec::Vec;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"HR";
/// The only envelope version so far.
pub const VERSION: u8 = 1;
/// Magic, version, algorithm and key id: the signed part of the header.
pub const HEADER_LEN: usize = 8;
/// An Ed25519 signature; SM2 signatures (r ‖ s) are 64 bytes as well.
pub const SIGNATURE_LEN: usize = 64;
/// Where the payload starts.
pub const PAYLOAD_OFFSET: usize = HEADER_LEN + SIGNATURE_LEN;
/// A bound a device with 300 KB of RAM can reserve up front; a schedule sync fits well inside.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024;

/// Which way a frame travels; it picks the domain-separation prefix of the signing input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Hub → device, signed by an issuer key the device trusts.
    Command,
    /// Device → hub, signed by the device's own key.
    Report,
}

impl Direction {
    /// The bytes prepended to the signing input (NUL-terminated).
    pub const fn domain(self) -> &'static [u8] {
        match self {
            Direction::Command => b"herald/cmd/v1\0",
            Direction::Report => b"herald/dev/v1\0",
        }
    }
}

/// The signature algorithm byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// RFC 8032 Ed25519, verified strictly (canonical `S`, no small-order keys).
    Ed25519,
}

impl Algorithm {
    /// The wire byte.
    pub const fn code(self) -> u8 {
        match self {
            Algorithm::Ed25519 => 1,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Algorithm::Ed25519),
            _ => None,
        }
    }
}

/// Why bytes are not a frame, before any key is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than a header, a signature and one payload byte.
    TooShort,
    /// Not `"HR"`.
    BadMagic,
    /// A version this implementation does not speak.
    UnsupportedVersion(u8),
    /// An algorithm byte this implementation does not speak.
    UnsupportedAlgorithm(u8),
    /// More than [`MAX_PAYLOAD_LEN`] payload bytes.
    PayloadTooLong,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::TooShort => f.write_str("frame too short"),
            FrameError::BadMagic => f.write_str("frame does not start with HR"),
            FrameError::UnsupportedVersion(v) => write!(f, "unsupported frame version {v}"),
            FrameError::UnsupportedAlgorithm(a) => write!(f, "unsupported algorithm {a}"),
            FrameError::PayloadTooLong => f.write_str("payload longer than 16384 bytes"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Why a well-formed frame's signature does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// The public key bytes are not a valid (or are a weak) Ed25519 point.
    BadKey,
    /// The signature does not verify under the key.
    BadSignature,
}

/// A parsed, not yet verified, frame borrowing the received bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The algorithm byte, known to this implementation.
    pub algorithm: Algorithm,
    /// Which key signed: an issuer key for commands, a device key for reports.
    pub key_id: u32,
    /// Bytes 0..8, as received; part of the signing input.
    pub header: &'a [u8],
    /// The 64 signature bytes.
    pub signature: &'a [u8; SIGNATURE_LEN],
    /// The JSON payload, as received.
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Splits `bytes` into header, signature and payload, checking only the layout.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        if bytes.len() < PAYLOAD_OFFSET + 1 {
            return Err(FrameError::TooShort);
        }
        let (header, rest) = bytes.split_at(HEADER_LEN);
        let (signature, payload) = rest.split_at(SIGNATURE_LEN);
        if header[0..2] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        if header[2] != VERSION {
            return Err(FrameError::UnsupportedVersion(header[2]));
        }
        let algorithm = Algorithm::from_code(header[3]).ok_or(FrameError::UnsupportedAlgorithm(header[3]))?;
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(FrameError::PayloadTooLong);
        }
        let key_id = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let signature = signature.try_into().map_err(|_| FrameError::TooShort)?;
        Ok(Frame {
            algorithm,
            key_id,
            header,
            signature,
            payload,
        })
    }

    /// Checks the signature over `direction`'s domain, the header and the payload.
    pub fn verify(&self, direction: Direction, public_key: &[u8; 32]) -> Result<(), SignatureError> {
        match self.algorithm {
            Algorithm::Ed25519 => {
                let key = VerifyingKey::from_bytes(public_key).map_err(|_| SignatureError::BadKey)?;
                if key.is_weak() {
                    return Err(SignatureError::BadKey);
                }
                let signature = Signature::from_bytes(self.signature);
                let input = signing_input(direction, self.header, self.payload);
                key.verify_strict(&input, &signature)
                    .map_err(|_| SignatureError::BadSignature)
            }
        }
    }
}

/// `domain ‖ header ‖ payload`: exactly what is signed.
pub fn signing_input(direction: Direction, header: &[u8], payload: &[u8]) -> Vec<u8> {
    let domain = direction.domain();
    let mut input = Vec::with_capacity(domain.len() + header.len() + payload.len());
    input.extend_from_slice(domain);
    input.extend_from_slice(header);
    input.extend_from_slice(payload);
    input
}

/// An Ed25519 key pair from its 32-byte seed (RFC 8032's "private key"). No RNG in this crate:
/// the hub and the device generate seeds with their own.
#[derive(Clone)]
pub struct KeyPair {
    key: SigningKey,
}

impl KeyPair {
    /// The key pair whose secret is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        KeyPair {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte public key, as stored in trust lists and device registries.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Frames `payload` under `key_id` and signs it for `direction`.
    pub fn seal(&self, direction: Direction, key_id: u32, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
        if payload.is_empty() {
            return Err(FrameError::TooShort);
        }
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(FrameError::PayloadTooLong);
        }
        let mut header = [0u8; HEADER_LEN];
        header[0..2].copy_from_slice(&MAGIC);
        header[2] = VERSION;
        header[3] = Algorithm::Ed25519.code();
        header[4..8].copy_from_slice(&key_id.to_be_bytes());
        let signature = self.key.sign(&signing_input(direction, &header, payload));
        let mut frame = Vec::with_capacity(PAYLOAD_OFFSET + payload.len());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(&signature.to_bytes());
        frame.extend_from_slice(payload);
        Ok(frame)
    }
}

impl core::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the seed.
        f.debug_struct("KeyPair")
            .field("public_key", &crate::hex::encode(&self.public_key()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1 test 1: the empty message under the published seed.
    #[test]
    fn ed25519_matches_rfc_8032_test_1() {
        let seed = crate::hex::decode_array::<32>(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        )
        .unwrap();
        let key = SigningKey::from_bytes(&seed);
        assert_eq!(
            crate::hex::encode(key.verifying_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            crate::hex::encode(&key.sign(b"").to_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn a_sealed_frame_parses_and_verifies_and_any_flipped_bit_breaks_it() {
        let pair = KeyPair::from_seed(&[7; 32]);
        let frame = pair.seal(Direction::Command, 0x0102_0304, b"{}").unwrap();
        let parsed = Frame::parse(&frame).unwrap();
        assert_eq!(parsed.key_id, 0x0102_0304);
        assert_eq!(parsed.payload, b"{}");
        parsed.verify(Direction::Command, &pair.public_key()).unwrap();
        assert_eq!(
            parsed.verify(Direction::Report, &pair.public_key()),
            Err(SignatureError::BadSignature),
            "the domain separates the directions"
        );
        for bit in 0..frame.len() * 8 {
            let mut tampered = frame.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            let still_good = Frame::parse(&tampered)
                .is_ok_and(|f| f.verify(Direction::Command, &pair.public_key()).is_ok());
            assert!(!still_good, "bit {bit} flipped and the frame still verified");
        }
    }

    #[test]
    fn layout_errors_are_named() {
        let pair = KeyPair::from_seed(&[7; 32]);
        let frame = pair.seal(Direction::Command, 1, b"{}").unwrap();
        assert_eq!(Frame::parse(&frame[..72]), Err(FrameError::TooShort));
        let mut bad = frame.clone();
        bad[0] = b'X';
        assert_eq!(Frame::parse(&bad), Err(FrameError::BadMagic));
        let mut bad = frame.clone();
        bad[2] = 2;
        assert_eq!(Frame::parse(&bad), Err(FrameError::UnsupportedVersion(2)));
        let mut bad = frame;
        bad[3] = 2;
        assert_eq!(Frame::parse(&bad), Err(FrameError::UnsupportedAlgorithm(2)));
    }
}
