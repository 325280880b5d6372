//! Publishing an approved correction (更正) of a published item: the new version replaces the
//! one it corrects on every target the item reached, as one publication in one transaction.

use herald_channels::Correction;
use sea_orm::{ActiveModelTrait, DatabaseTransaction, Set};

use super::{Audited, audit_item, authoring::show_content};
use crate::{
    accounts::Caller,
    clock::end_of_china_day,
    delivery,
    error::{Error, Result},
    hub::Hub,
    items::content_of,
    store::entities::{item, item_version, publication},
};

/// The correction `version` of published item `row` (approved just now, with `comment`) goes
/// out: the item's published version becomes it, and every target the item reached gets it.
pub(super) async fn publish_correction(
    txn: &DatabaseTransaction,
    hub: &Hub,
    caller: &Caller,
    row: item::Model,
    version: &item_version::Model,
    comment: &str,
) -> Result<()> {
    let id = row.id.clone();
    let replaced_hash = row.approved_hash.clone();
    let content = content_of(version)?;
    let note = version
        .correction_note
        .clone()
        .ok_or_else(|| anyhow::anyhow!("item {id}: correction version {} has no note", version.version))?;
    let corrects_version = row
        .published_version
        .ok_or_else(|| anyhow::anyhow!("item {id} is published without a published version"))?;
    let now = hub.clock.now();
    let expires_at = content.expires_on.map(end_of_china_day);
    if expires_at.is_some_and(|end| end <= now) {
        return Err(Error::Refused {
            code: "expired",
            field: Some("expires_on".into()),
            message: "the correction's 有效期 has ended; an expired item is never published".into(),
        });
    }
    // The item keeps the date it was first published (发布日期); the correction has its own.
    let first_out = row.published_at.unwrap_or(now);
    let publication_id = hub.clock.new_id().to_string();
    publication::ActiveModel {
        id: Set(publication_id.as_str().into()),
        item_id: Set(id.as_str().into()),
        version: Set(version.version),
        content_hash: Set(version.content_hash.clone()),
        published_by: Set(caller.id.clone()),
        published_at: Set(now),
        channels: Set("[]".into()),
        corrects_version: Set(Some(corrects_version)),
        correction_note: Set(Some(note.clone())),
    }
    .insert(txn)
    .await?;
    let mut active: item::ActiveModel = row.into();
    show_content(&mut active, &content);
    active.approved_version = Set(Some(version.version));
    active.approved_hash = Set(Some(version.content_hash.clone()));
    active.published_version = Set(Some(version.version));
    active.correcting = Set(None);
    active.review_comment = Set(Some(comment.to_owned()).filter(|c| !c.is_empty()));
    active.updated_at = Set(now);
    active.update(txn).await?;
    let mut published = delivery::published_item(
        hub,
        txn,
        &id,
        (version.version, &version.content_hash, &content),
        (first_out, expires_at),
    )
    .await?;
    published.correction = Some(Correction {
        note: note.clone(),
        corrects_version,
        corrected_at: now.to_rfc3339(),
    });
    let per_channel = delivery::enqueue_correction(hub, txn, &publication_id, &published, now).await?;
    let deliveries: std::collections::BTreeMap<&str, usize> =
        per_channel.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    audit_item(
        txn,
        hub,
        caller,
        &id,
        Audited {
            action: "item.correct",
            before_hash: replaced_hash.as_deref(),
            after_hash: Some(&version.content_hash),
            detail: serde_json::json!({
                "version": version.version,
                "corrects_version": corrects_version,
                "correction_note": note,
                "publication_id": publication_id,
                "deliveries": deliveries,
            }),
        },
    )
    .await
}
