//! Review: the confidentiality check, then approval of exactly one version, or rejection back
//! to draft. A reviewer never reviews their own work.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, Set,
};
use serde::Deserialize;

use super::{Audited, ItemView, audit_item, get_item, require, require_state};
use crate::{
    accounts::Caller,
    domain::{
        item::{Correcting, ItemState},
        review::ReviewKind,
        text::{MAX_COMMENT_CHARS, multi_line},
    },
    error::{Error, Result},
    hub::Hub,
    items::{load_version, load_visible},
    store::{
        begin_write,
        entities::{item, item_version, review},
    },
};

/// Loads an item under review for a reviewer who neither created it nor wrote any of its
/// versions, and checks the reviewer is looking at the current version.
async fn load_for_review(
    txn: &DatabaseTransaction,
    caller: &Caller,
    id: &str,
    seen_version: i32,
) -> Result<(item::Model, item_version::Model)> {
    require(caller.role.may_review(), "your role may not review items")?;
    let row = load_visible(txn, caller, id, true).await?;
    let version = load_version(txn, id, row.current_version).await?;
    let wrote_a_version = item_version::Entity::find()
        .filter(item_version::Column::ItemId.eq(id))
        .filter(item_version::Column::CreatedBy.eq(&caller.id))
        .count(txn)
        .await?
        > 0;
    if row.author_id == caller.id || wrote_a_version {
        return Err(Error::forbidden(
            "a reviewer may not review an item they wrote any version of",
        ));
    }
    // A published item under review is its correction (更正).
    let state = require_state(&row, &[ItemState::InReview, ItemState::Published], "review")?;
    if state == ItemState::Published && row.correcting != Some(Correcting::InReview) {
        return Err(Error::conflict(
            "invalid_state",
            "the item is published and has no correction (更正) in review",
        ));
    }
    if seen_version != row.current_version {
        return Err(Error::Refused {
            code: "stale_version",
            field: Some("version".into()),
            message: format!(
                "you reviewed version {seen_version}, but the current version is {}",
                row.current_version
            ),
        });
    }
    Ok((row, version))
}

/// Records a review step and its audit entry; the audit action is `item.<kind>`.
async fn record_review(
    txn: &DatabaseTransaction,
    hub: &Hub,
    caller: &Caller,
    version: &item_version::Model,
    kind: ReviewKind,
    comment: &str,
) -> Result<()> {
    review::ActiveModel {
        id: Default::default(),
        item_id: Set(version.item_id.clone()),
        version: Set(version.version),
        content_hash: Set(version.content_hash.clone()),
        reviewer_id: Set(caller.id.clone()),
        kind: Set(kind),
        comment: Set(comment.to_owned()),
        at: Set(hub.clock.now()),
    }
    .insert(txn)
    .await?;
    let action = format!("item.{}", kind.as_str());
    audit_item(
        txn,
        hub,
        caller,
        &version.item_id,
        Audited {
            action: &action,
            before_hash: Some(&version.content_hash),
            after_hash: Some(&version.content_hash),
            detail: serde_json::json!({"version": version.version, "comment": comment}),
        },
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfidentialityCheckInput {
    /// The version the reviewer checked.
    pub version: i32,
    /// Must be true: the reviewer confirms the content holds no state secret, personal privacy
    /// or trade secret (保密审查).
    pub confirmed: bool,
    #[serde(default)]
    pub comment: String,
}

pub async fn confidentiality_check(
    hub: &Hub,
    caller: &Caller,
    id: &str,
    input: ConfidentialityCheckInput,
) -> Result<ItemView> {
    let comment = multi_line("comment", &input.comment, MAX_COMMENT_CHARS, false)?;
    if !input.confirmed {
        return Err(Error::validation(
            "confirmed",
            "the confidentiality check (保密审查) must be explicitly confirmed",
        ));
    }
    let txn = begin_write(&hub.db).await?;
    let (_, version) = load_for_review(&txn, caller, id, input.version).await?;
    record_review(
        &txn,
        hub,
        caller,
        &version,
        ReviewKind::ConfidentialityCheck,
        &comment,
    )
    .await?;
    txn.commit().await?;
    get_item(hub, caller, id).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveInput {
    /// The version the reviewer read; approval pins exactly this version.
    pub version: i32,
    #[serde(default)]
    pub comment: String,
}

pub async fn approve(hub: &Hub, caller: &Caller, id: &str, input: ApproveInput) -> Result<ItemView> {
    let comment = multi_line("comment", &input.comment, MAX_COMMENT_CHARS, false)?;
    let txn = begin_write(&hub.db).await?;
    let (row, version) = load_for_review(&txn, caller, id, input.version).await?;
    let checked = review::Entity::find()
        .filter(review::Column::ItemId.eq(id))
        .filter(review::Column::Version.eq(version.version))
        .filter(review::Column::ContentHash.eq(&version.content_hash))
        .filter(review::Column::Kind.eq(ReviewKind::ConfidentialityCheck.as_str()))
        .count(&txn)
        .await?;
    if checked == 0 {
        return Err(Error::conflict(
            "confidentiality_check_missing",
            "the confidentiality check (保密审查) of this version must be confirmed before approval",
        ));
    }
    record_review(&txn, hub, caller, &version, ReviewKind::Approve, &comment).await?;
    if row.state == ItemState::Published {
        // An approved correction goes out at once, in place of the version it corrects.
        super::correct::publish_correction(&txn, hub, caller, row, &version, &comment).await?;
        txn.commit().await?;
        // The new version's deliveries, and the withdrawals of the one it replaces.
        hub.due.wake_all();
        return get_item(hub, caller, id).await;
    }
    let mut active: item::ActiveModel = row.into();
    active.state = Set(ItemState::Approved);
    active.approved_version = Set(Some(version.version));
    active.approved_hash = Set(Some(version.content_hash.clone()));
    active.review_comment = Set(Some(comment).filter(|c| !c.is_empty()));
    active.updated_at = Set(hub.clock.now());
    active.update(&txn).await?;
    txn.commit().await?;
    get_item(hub, caller, id).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectInput {
    pub version: i32,
    /// What the author must change; required.
    pub comment: String,
}

pub async fn reject(hub: &Hub, caller: &Caller, id: &str, input: RejectInput) -> Result<ItemView> {
    let comment = multi_line("comment", &input.comment, MAX_COMMENT_CHARS, false)?;
    if comment.is_empty() {
        return Err(Error::validation("comment", "say what must change"));
    }
    let comment = comment.as_str();
    let txn = begin_write(&hub.db).await?;
    let (row, version) = load_for_review(&txn, caller, id, input.version).await?;
    record_review(&txn, hub, caller, &version, ReviewKind::Reject, comment).await?;
    let correction = row.state == ItemState::Published;
    let mut active: item::ActiveModel = row.into();
    if correction {
        // The published version stays live; the correction goes back to its author.
        active.correcting = Set(Some(Correcting::Draft));
    } else {
        active.state = Set(ItemState::Draft);
    }
    active.review_comment = Set(Some(comment.to_owned()));
    active.updated_at = Set(hub.clock.now());
    active.update(&txn).await?;
    txn.commit().await?;
    get_item(hub, caller, id).await
}
