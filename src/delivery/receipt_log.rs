//! The append-only receipt log: what the worker's calls to a channel came to, one receipt a
//! delivery and attempt. (What channels push later is kept in the inbox, and an applied inbox
//! row is part of its delivery's record as it stands.)

use chrono::{DateTime, Utc};
use herald_channels::ChannelKind;
use sea_orm::{
    ConnectionTrait,
    sea_query::{Expr, Query},
};

use crate::{
    error::Result,
    store::{entities::receipt, id_list},
};

/// One outcome shared by a group of deliveries: what one record (one worker transaction) says
/// of one attempt of each.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub struct OutcomeReceipt<'a> {
    /// The channel whose answer this records.
    pub source: ChannelKind,
    /// What happened, in the worker's words (`delivered`, `failed_transient`…).
    pub kind: &'a str,
    pub received_at: DateTime<Utc>,
    /// The record that writes it: with the attempt, what tells this receipt apart from every
    /// other of its delivery (an operator's retry counts attempts from 1 again).
    pub record_id: &'a str,
    pub attempt: i32,
    pub error: Option<&'a str>,
    pub external_id: Option<&'a str>,
    pub worker: &'a str,
}

/// Appends `receipt` for each of `delivery_ids`. The rows are made by the database from the
/// ids, so a batch of 10,000 outcomes ships its ids and one copy of what they share.
pub async fn record_outcome(
    db: &impl ConnectionTrait,
    receipt: &OutcomeReceipt<'_>,
    delivery_ids: &[&str],
) -> Result<()> {
    let name = format!("{}:{}", receipt.record_id, receipt.attempt);
    let detail = serde_json::json!({
        "attempt": receipt.attempt,
        "error": receipt.error,
        "external_id": receipt.external_id,
        "worker": receipt.worker,
    })
    .to_string();
    // Straight from the ids: the worker names only deliveries it claimed, and looking each up
    // again cost more than half the insert (PostgreSQL, 10,000 ids: 67 ms, now 29 ms).
    let mut select = id_list(db.get_database_backend(), delivery_ids.iter().copied());
    select
        .expr(Expr::val(receipt.source.as_str()))
        .expr(Expr::val(receipt.kind))
        .expr(Expr::val(receipt.received_at))
        .expr(Expr::val(name.as_str()))
        .expr(Expr::val(detail.as_str()));
    let mut insert = Query::insert();
    insert
        .into_table(receipt::Entity)
        .columns([
            receipt::Column::DeliveryId,
            receipt::Column::Source,
            receipt::Column::Kind,
            receipt::Column::ReceivedAt,
            receipt::Column::Digest,
            receipt::Column::Detail,
        ])
        .select_from(select)
        .map_err(|e| anyhow::anyhow!("receipt insert: {e}"))?;
    db.execute(&insert).await?;
    Ok(())
}
