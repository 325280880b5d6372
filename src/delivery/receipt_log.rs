//! The append-only receipt log every delivery's history is read from.

use chrono::{DateTime, Utc};
use herald_channels::ChannelKind;
use sea_orm::{ConnectionTrait, EntityTrait, Set, sea_query::OnConflict};

use crate::{
    domain::item::sha256_hex,
    error::Result,
    store::{ID_CHUNK, entities::receipt},
};

pub struct NewReceipt<'a> {
    pub delivery_id: &'a str,
    /// The channel whose answer (to the worker's call, or pushed later) this records.
    pub source: ChannelKind,
    /// What happened, in the channel's words or the worker's (`delivered`, `failed_transient`…):
    /// open-ended, since each channel's pushed receipts name their own kinds.
    pub kind: &'a str,
    pub source_time: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    /// What tells this receipt apart from others of its kind (an attempt number, a raw payload);
    /// the same value again is the same receipt, recorded once.
    pub distinct_by: &'a str,
    pub detail: serde_json::Value,
}

impl NewReceipt<'_> {
    /// The row it is stored as; the digest makes the same receipt again a no-op.
    fn into_row(self) -> receipt::ActiveModel {
        let digest = sha256_hex(
            format!(
                "{}\u{1f}{}\u{1f}{}\u{1f}{}",
                self.delivery_id,
                self.source.as_str(),
                self.kind,
                self.distinct_by
            )
            .as_bytes(),
        );
        receipt::ActiveModel {
            id: Default::default(),
            delivery_id: Set(self.delivery_id.into()),
            source: Set(self.source.as_str().to_owned()),
            kind: Set(self.kind.to_owned()),
            source_time: Set(self.source_time),
            received_at: Set(self.received_at),
            digest: Set(digest),
            detail: Set(self.detail.to_string()),
        }
    }
}

/// Appends receipts, each unless the same one was already recorded; returns how many were new.
pub async fn record_receipts<'a>(
    db: &impl ConnectionTrait,
    receipts: impl IntoIterator<Item = NewReceipt<'a>>,
) -> Result<u64> {
    let rows: Vec<_> = receipts.into_iter().map(NewReceipt::into_row).collect();
    let mut inserted = 0;
    // Eight values a row: well under both databases' bind-parameter limits.
    for chunk in rows.chunks(ID_CHUNK) {
        inserted += receipt::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([receipt::Column::DeliveryId, receipt::Column::Digest])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(inserted)
}
