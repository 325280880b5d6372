//! WeChat's callback crypto (wechat-api.md §A.7), sans-IO: the SHA-1 signatures over sorted
//! values, and safe mode's AES-256-CBC with a 32-byte PKCS#7 block and the AppID appended. The
//! hub verifies WeChat's pushes with it; the tests' fake WeChat encrypts with it. Reproduces the
//! published vectors (§A.7.6).

use aes::Aes256;
use base64::{
    Engine,
    alphabet::STANDARD,
    engine::{GeneralPurpose, GeneralPurposeConfig},
};
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::NoPadding};
use sha1::{Digest, Sha1};

/// WeChat pads to 32 bytes, not AES's 16.
const PAD_BLOCK: usize = 32;

/// Why a pushed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the EncodingAESKey must be 43 characters of A-Z, a-z and 0-9")]
    BadKey,
    #[error("the encrypted message is not Base64 of whole 32-byte blocks")]
    BadCiphertext,
    #[error("the decrypted message's padding or length is wrong")]
    BadPlaintext,
    #[error("the message was encrypted for another AppID")]
    WrongAppId,
}

/// The AES key an account's EncodingAESKey stands for.
#[derive(Clone)]
pub struct AesKey([u8; 32]);

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesKey([redacted])")
    }
}

/// Standard Base64 that accepts the non-zero trailing bits a 43-character key ends in.
fn lenient_base64() -> GeneralPurpose {
    GeneralPurpose::new(
        &STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    )
}

impl AesKey {
    /// `Base64_Decode(EncodingAESKey + "=")`, which must be 32 bytes.
    pub fn from_encoding_aes_key(encoding_aes_key: &str) -> Result<Self, CryptoError> {
        if encoding_aes_key.len() != 43 || !encoding_aes_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(CryptoError::BadKey);
        }
        let bytes = lenient_base64()
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| CryptoError::BadKey)?;
        Ok(Self(bytes.try_into().map_err(|_| CryptoError::BadKey)?))
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.0[..16]);
        iv
    }
}

/// Lowercase hex SHA-1 of the values sorted as strings and joined without separator: the
/// `signature` (token, timestamp, nonce) and the `msg_signature` (the same and `Encrypt`).
pub fn signature(values: &[&str]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    hex::encode(Sha1::digest(sorted.concat().as_bytes()))
}

/// Whether `given` is `expected`, in time that does not depend on where they differ.
pub fn same(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// `Encrypt` for `message` to `app_id`: Base64 of AES-256-CBC over
/// `random ‖ length (4 bytes, big-endian) ‖ message ‖ app_id`, padded to 32 bytes.
pub fn encrypt(key: &AesKey, random: &[u8; 16], message: &[u8], app_id: &str) -> String {
    let mut buffer = Vec::with_capacity(20 + message.len() + app_id.len() + PAD_BLOCK);
    buffer.extend_from_slice(random);
    buffer.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    buffer.extend_from_slice(message);
    buffer.extend_from_slice(app_id.as_bytes());
    let pad = PAD_BLOCK - buffer.len() % PAD_BLOCK;
    buffer.extend(std::iter::repeat_n(pad as u8, pad));
    let encryptor = cbc::Encryptor::<Aes256>::new(&key.0.into(), &key.iv().into());
    let len = buffer.len();
    // Whole blocks by construction, so NoPadding cannot fail.
    let sealed = match encryptor.encrypt_padded::<NoPadding>(&mut buffer, len) {
        Ok(sealed) => sealed.to_vec(),
        Err(_) => Vec::new(),
    };
    base64::engine::general_purpose::STANDARD.encode(sealed)
}

/// The message inside `encrypted`, which must have been encrypted for `app_id`.
pub fn decrypt(key: &AesKey, encrypted: &str, app_id: &str) -> Result<Vec<u8>, CryptoError> {
    let mut buffer = lenient_base64()
        .decode(encrypted.trim())
        .map_err(|_| CryptoError::BadCiphertext)?;
    if buffer.is_empty() || buffer.len() % PAD_BLOCK != 0 {
        return Err(CryptoError::BadCiphertext);
    }
    let decryptor = cbc::Decryptor::<Aes256>::new(&key.0.into(), &key.iv().into());
    let plain = decryptor
        .decrypt_padded::<NoPadding>(&mut buffer)
        .map_err(|_| CryptoError::BadCiphertext)?;
    let pad = usize::from(*plain.last().ok_or(CryptoError::BadPlaintext)?);
    if !(1..=PAD_BLOCK).contains(&pad) || pad > plain.len() {
        return Err(CryptoError::BadPlaintext);
    }
    let unpadded = &plain[..plain.len() - pad];
    let length_bytes: [u8; 4] = unpadded
        .get(16..20)
        .and_then(|b| b.try_into().ok())
        .ok_or(CryptoError::BadPlaintext)?;
    let length = usize::try_from(u32::from_be_bytes(length_bytes)).map_err(|_| CryptoError::BadPlaintext)?;
    let message = unpadded
        .get(20..20usize.saturating_add(length))
        .ok_or(CryptoError::BadPlaintext)?;
    if !same(&String::from_utf8_lossy(&unpadded[20 + length..]), app_id) {
        return Err(CryptoError::WrongAppId);
    }
    Ok(message.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456";
    const ENCODING_AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const APP_ID: &str = "wx49f0ab532d5d035a";
    const RANDOM: &[u8; 16] = b"1234567890123456";

    #[test]
    fn the_wechatpy_vector_is_reproduced() {
        // wechatpy tests/test_crypto.py `test_encrypt_message`: its reply, its Encrypt.
        let reply = "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>";
        let key = AesKey::from_encoding_aes_key(ENCODING_AES_KEY).expect("key");
        let encrypted = encrypt(&key, RANDOM, reply.as_bytes(), APP_ID);
        assert_eq!(
            encrypted,
            "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
        );
        assert_eq!(
            signature(&[TOKEN, "1411525903", "461056294", &encrypted]),
            "407518b7649e86ef23978113f92d27afa9296533"
        );
        assert_eq!(
            decrypt(&key, &encrypted, APP_ID).expect("decrypts"),
            reply.as_bytes()
        );
    }

    #[test]
    fn the_publishjobfinish_vector_is_reproduced_and_read_back() {
        let message = "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[mphelper]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[PUBLISHJOBFINISH]]></Event><PublishEventInfo><publish_id>2247503051</publish_id><publish_status>0</publish_status></PublishEventInfo></xml>";
        assert_eq!(message.len(), 324);
        let expected = "9s4gMv99m88kKTh/H8IdkOtNzSHMHHGEffvnVKjO1H85k+uo28RGn3NdA1YmBR/3MsmRd5yPJFEsprNGrsfr8yBWhPx1ZKySyzk9Ij05XvpRkEnTv1AIEiSw4lV80epcOfhNknKx+d+4oxZx17k6/wxwdFeGGgJE8ghJbFf/jJzFoVHQtM9HuMXkZXYf3jzhWDCdcYlRhAWcTEoxP46NqhMq6u/g9uiX/9ie4LyOxKtW/OnGhQzSlbtyv7qE16PSv8FCLLa7+SZCNVK5Zkxc4ThJWujmUNAh7ppDPoKP9cc/3t0M+oxh/QUys1eVLBNBM4xs8VwrwhEanqF5oKOuan9md+GJAKBdHT4HJZgKNs7cT3Wy1LYbvJJJ0Z9C6dXXfLMJ6iKPFJTbf816nUhA8qMXLff1D7X8fTFUuwZUh50CXrsmfrLxB/SLYCTfWo371BsuRxrUd+F8LlNERMaA5zpAG/CP8sI8Cd0dR9yqEfoOxzTMhg5egsP8jZenRxEH";
        let key = AesKey::from_encoding_aes_key(ENCODING_AES_KEY).expect("key");
        assert_eq!(encrypt(&key, RANDOM, message.as_bytes(), APP_ID), expected);
        assert_eq!(
            signature(&[TOKEN, "1700000000", "987654321"]),
            "5af9f018bd8b5ec32d8649c95d83e044446478a1"
        );
        assert_eq!(
            signature(&[TOKEN, "1700000000", "987654321", expected]),
            "4f0a89373cb9cfb7e87564a6f336ac540023896d"
        );
        assert_eq!(
            decrypt(&key, expected, APP_ID).expect("decrypts"),
            message.as_bytes()
        );
    }

    #[test]
    fn a_message_for_another_account_or_mangled_is_refused() {
        let key = AesKey::from_encoding_aes_key(ENCODING_AES_KEY).expect("key");
        let encrypted = encrypt(&key, RANDOM, b"<xml/>", APP_ID);
        assert_eq!(
            decrypt(&key, &encrypted, "wx0000000000000000"),
            Err(CryptoError::WrongAppId)
        );
        assert_eq!(
            decrypt(&key, "not base64!", APP_ID),
            Err(CryptoError::BadCiphertext)
        );
        assert_eq!(
            decrypt(&key, &encrypted[..20], APP_ID),
            Err(CryptoError::BadCiphertext)
        );
        let other = AesKey::from_encoding_aes_key(&"A".repeat(43)).expect("key");
        assert!(decrypt(&other, &encrypted, APP_ID).is_err());
        for bad in ["short", &"a".repeat(44), &format!("{}+", &ENCODING_AES_KEY[..42])] {
            assert_eq!(
                AesKey::from_encoding_aes_key(bad).map(|_| ()),
                Err(CryptoError::BadKey),
                "{bad}"
            );
        }
        // A message of every length round-trips (padding of 1 to 32 bytes).
        for n in 0..70 {
            let message = vec![b'x'; n];
            let sealed = encrypt(&key, RANDOM, &message, APP_ID);
            assert_eq!(decrypt(&key, &sealed, APP_ID).expect("round trip"), message);
        }
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
