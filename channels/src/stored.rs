//! What sea-orm needs beyond `DeriveValueType` to hold a [`ChannelKind`] in a composite primary
//! key (`delivery_counts`): a key of names is never made from an auto-increment number.

use crate::ChannelKind;

impl sea_orm::TryFromU64 for ChannelKind {
    fn try_from_u64(_: u64) -> Result<Self, sea_orm::DbErr> {
        Err(sea_orm::DbErr::ConvertFromU64("ChannelKind"))
    }
}
