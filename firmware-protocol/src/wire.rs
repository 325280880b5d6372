//! Checks shared by every payload decoder: the limits a C implementation can rely on.

/// Why a payload is not a valid message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not JSON, a field missing or of the wrong type, or a value out of range.
    Malformed,
    /// Well-formed, but its `"type"` is one this version does not define.
    UnknownType,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DecodeError::Malformed => "malformed payload",
            DecodeError::UnknownType => "unknown message type",
        })
    }
}

impl core::error::Error for DecodeError {}

/// The longest list (devices, areas, pages, schedule entries, keys) a message may hold.
pub const MAX_LIST: usize = 1000;

/// 2^53 − 1: cJSON and JavaScript hold numbers as doubles, so larger integers would not
/// survive a C or browser decoder exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

pub(crate) fn ensure(condition: bool) -> Result<(), DecodeError> {
    if condition {
        Ok(())
    } else {
        Err(DecodeError::Malformed)
    }
}

pub(crate) fn safe_int(value: u64) -> Result<(), DecodeError> {
    ensure(value <= MAX_SAFE_INTEGER)
}

/// An id that can sit in a topic level: 1–64 of `A–Z a–z 0–9 . _ : -`.
pub(crate) fn id(value: &str) -> Result<(), DecodeError> {
    ensure(
        (1..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')),
    )
}

/// An area code: 6 (county), 9 (township) or 12 (village) ASCII digits.
pub(crate) fn area_code(value: &str) -> Result<(), DecodeError> {
    ensure(matches!(value.len(), 6 | 9 | 12) && value.bytes().all(|b| b.is_ascii_digit()))
}

/// Text of at most `max_chars` Unicode scalar values.
pub(crate) fn text(value: &str, max_chars: usize) -> Result<(), DecodeError> {
    ensure(value.chars().count() <= max_chars)
}

/// Whether `payload` is a JSON object whose `field` object has a `"type"` string outside
/// `known`: then the sender speaks a newer version, and the answer is `unsupported`, not
/// `malformed`.
pub(crate) fn has_unknown_type(payload: &[u8], field: &str, known: &[&str]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return false;
    };
    value
        .get(field)
        .and_then(|body| body.get("type"))
        .and_then(serde_json::Value::as_str)
        .is_some_and(|kind| !known.contains(&kind))
}
