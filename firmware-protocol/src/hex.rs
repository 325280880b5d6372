//! Lowercase hex, the only way binary values (keys, hashes) appear inside JSON payloads. Hex
//! rather than base64 because every C code base already has `%02x` and needs no table.

use alloc::string::String;

/// Lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Exactly `N` bytes from exactly `2 * N` lowercase hex digits; anything else is `None`, so a
/// value has one spelling on the wire.
pub fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *slot = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Any number of bytes from lowercase hex (tests and vector files).
pub fn decode(text: &str) -> Option<alloc::vec::Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_uppercase_and_odd_lengths() {
        assert_eq!(encode(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(decode_array::<3>("00abff"), Some([0x00, 0xab, 0xff]));
        assert_eq!(decode_array::<3>("00ABFF"), None);
        assert_eq!(decode_array::<3>("00abf"), None);
        assert_eq!(decode("0"), None);
        assert_eq!(decode("").as_deref(), Some(&[][..]));
    }
}
