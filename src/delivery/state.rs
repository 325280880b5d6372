//! A delivery's state and kind, as stored and as shown.

use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Sending,
    Retrying,
    Accepted,
    Delivered,
    Displayed,
    Played,
    Failed,
    Unconfirmed,
    Expired,
    Withdrawn,
    Cancelled,
}

herald_channels::wire_names!(DeliveryState);

impl DeliveryState {
    /// The item reached the target: a withdrawal must follow it there.
    pub fn reached_target(self) -> bool {
        matches!(
            self,
            DeliveryState::Accepted
                | DeliveryState::Delivered
                | DeliveryState::Displayed
                | DeliveryState::Played
                | DeliveryState::Unconfirmed
        )
    }

    /// Not yet sent: a withdrawal simply cancels it.
    pub fn not_yet_sent(self) -> bool {
        matches!(self, DeliveryState::Pending | DeliveryState::Retrying)
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DeliveryKind {
    Publish,
    Withdraw,
}

herald_channels::wire_names!(DeliveryKind);

/// Emergency information goes out first.
pub fn priority_of(emergency: bool) -> i32 {
    if emergency { 100 } else { 0 }
}

#[cfg(test)]
mod wire_name_tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        assert_eq!(DeliveryState::ALL.len(), 12);
        for &state in DeliveryState::ALL {
            let json = serde_json::to_string(&state).expect("serialises");
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
        }
        assert_eq!(DeliveryKind::ALL.len(), 2);
        for &kind in DeliveryKind::ALL {
            let json = serde_json::to_string(&kind).expect("serialises");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(DeliveryKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(DeliveryState::parse("Pending"), None);
    }
}
