//! A delivery's state and kind (domain types, so the store's entities can hold them) and its
//! priority.

pub use crate::domain::delivery::{DeliveryKind, DeliveryState};

/// Emergency information goes out first.
pub fn priority_of(emergency: bool) -> i32 {
    if emergency { 100 } else { 0 }
}
