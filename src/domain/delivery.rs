//! A delivery's state and kind: stored in `deliveries` and `delivery_counts`, shown by the API.

use herald_channels::ChannelKind;
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
    strum::Display,
    sea_orm::DeriveValueType,
)]
#[sea_orm(value_type = "String")]
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
    /// The name staff read (the receipts record, the console).
    pub fn label_zh(self) -> &'static str {
        match self {
            DeliveryState::Pending => "待发送",
            DeliveryState::Sending => "发送中",
            DeliveryState::Retrying => "待重试",
            DeliveryState::Accepted => "已受理",
            DeliveryState::Delivered => "已送达",
            DeliveryState::Displayed => "已显示",
            DeliveryState::Played => "已播放",
            DeliveryState::Failed => "失败",
            DeliveryState::Unconfirmed => "待核实",
            DeliveryState::Expired => "已过期",
            DeliveryState::Withdrawn => "已撤回",
            DeliveryState::Cancelled => "已取消",
        }
    }

    /// The states in which the item reached the target (or may have): a withdrawal must
    /// follow it there.
    pub const REACHED: [DeliveryState; 5] = [
        DeliveryState::Accepted,
        DeliveryState::Delivered,
        DeliveryState::Displayed,
        DeliveryState::Played,
        DeliveryState::Unconfirmed,
    ];

    /// The states in which a withdrawal ended without taking anything down.
    pub const TAKEDOWN_ENDED: [DeliveryState; 3] = [
        DeliveryState::Failed,
        DeliveryState::Cancelled,
        DeliveryState::Expired,
    ];

    /// The item reached the target: a withdrawal must follow it there.
    pub fn reached_target(self) -> bool {
        Self::REACHED.contains(&self)
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
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
    strum::Display,
    sea_orm::DeriveValueType,
)]
#[sea_orm(value_type = "String")]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DeliveryKind {
    Publish,
    Withdraw,
}

herald_channels::wire_names!(DeliveryKind);

/// What a rendition was made for: one channel's publish payload, or the withdrawal notice
/// every channel of an item shares. Stored in `renditions.channel` as the channel's wire name,
/// or `withdrawal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sea_orm::DeriveValueType)]
#[sea_orm(value_type = "String")]
pub enum RenditionFor {
    Channel(ChannelKind),
    Withdrawal,
}

impl RenditionFor {
    const WITHDRAWAL: &str = "withdrawal";
}

impl std::fmt::Display for RenditionFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenditionFor::Channel(kind) => f.write_str(kind.as_str()),
            RenditionFor::Withdrawal => f.write_str(Self::WITHDRAWAL),
        }
    }
}

impl std::str::FromStr for RenditionFor {
    type Err = strum::ParseError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if raw == Self::WITHDRAWAL {
            Ok(RenditionFor::Withdrawal)
        } else {
            raw.parse().map(RenditionFor::Channel)
        }
    }
}

/// Both are parts of `delivery_counts`' primary key, which is never an auto-increment number.
macro_rules! not_from_a_row_number {
    ($($ty:ident),*) => {$(
        impl sea_orm::TryFromU64 for $ty {
            fn try_from_u64(_: u64) -> Result<Self, sea_orm::DbErr> {
                Err(sea_orm::DbErr::ConvertFromU64(stringify!($ty)))
            }
        }
    )*};
}

not_from_a_row_number!(DeliveryState, DeliveryKind);

#[cfg(test)]
mod wire_name_tests {
    use super::*;
    use crate::domain::assert_wire_names_agree;

    #[test]
    fn wire_names_match_serde() {
        assert_eq!(DeliveryState::ALL.len(), 12);
        assert_wire_names_agree(DeliveryState::ALL, DeliveryState::as_str, DeliveryState::parse);
        assert_eq!(DeliveryKind::ALL.len(), 2);
        assert_wire_names_agree(DeliveryKind::ALL, DeliveryKind::as_str, DeliveryKind::parse);
        assert_eq!(DeliveryState::parse("Pending"), None);
        for made_for in [
            RenditionFor::Withdrawal,
            RenditionFor::Channel(ChannelKind::MediaCenter),
        ] {
            assert_eq!(made_for.to_string().parse::<RenditionFor>().ok(), Some(made_for));
        }
        assert_eq!(RenditionFor::Withdrawal.to_string(), "withdrawal");
        // `ChannelKind` columns are written by its Display form too.
        for &kind in ChannelKind::ALL {
            assert_eq!(kind.to_string(), kind.as_str());
        }
    }
}
