//! A delivery's state and kind (domain types, so the store's entities can hold them) and its
//! priority.

pub use crate::domain::delivery::{DeliveryKind, DeliveryState};

/// Emergency information goes out first.
pub fn priority_of(emergency: bool) -> i32 {
    if emergency { 100 } else { 0 }
}

/// A stored checkpoint, as the adapter kept it. The worker wrote it from a JSON value, so
/// text that does not decode is corruption: an error, never a fresh start that would repeat
/// the steps the checkpoint records (a second WeChat draft).
pub(super) fn decode_checkpoint(stored: Option<&str>) -> crate::error::Result<Option<serde_json::Value>> {
    stored
        .map(|raw| serde_json::from_str(raw).map_err(|e| anyhow::Error::new(e).into()))
        .transpose()
}
