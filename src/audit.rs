//! The append-only audit log. Each row carries the hash of its predecessor and a hash over its
//! own fields; `audit_head` holds the last row's number and hash. Editing, deleting or
//! reordering any row, including the last, breaks a link that `verify` reports.

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, sea_query::Expr,
};
use serde::Serialize;

use crate::{
    domain::item::sha256_hex,
    store::entities::{audit_entry, audit_head},
};

pub struct AuditEvent<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub before_hash: Option<&'a str>,
    pub after_hash: Option<&'a str>,
    pub detail: serde_json::Value,
    /// The area the target lies in; readers see the entries of their own area. None: only
    /// readers of the whole tree see it (e.g. a failed login for a name nobody has).
    pub area: Option<&'a str>,
}

fn row_hash(row: &audit_entry::Model) -> String {
    let canonical = serde_json::json!([
        row.seq,
        row.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        row.actor,
        row.action,
        row.target_type,
        row.target_id,
        row.before_hash,
        row.after_hash,
        row.detail,
        row.prev_hash,
    ]);
    sha256_hex(canonical.to_string().as_bytes())
}

/// Appends the record of a change to something that is not an item version (an account, a
/// device): no before/after content hashes, only what changed in `detail`.
pub async fn append_change(
    txn: &DatabaseTransaction,
    at: DateTime<Utc>,
    actor: &str,
    action: &str,
    (target_type, target_id): (&str, &str),
    area: Option<&str>,
    detail: serde_json::Value,
) -> Result<i64, sea_orm::DbErr> {
    let event = AuditEvent {
        actor,
        action,
        target_type,
        target_id,
        before_hash: None,
        after_hash: None,
        detail,
        area,
    };
    append(txn, at, event).await
}

/// Appends within the caller's transaction, so the entry exists exactly when the change does.
pub async fn append(
    txn: &DatabaseTransaction,
    at: DateTime<Utc>,
    event: AuditEvent<'_>,
) -> Result<i64, sea_orm::DbErr> {
    // Locking the head row serialises appenders across hub instances on PostgreSQL; SQLite
    // write transactions are already serial.
    let head = audit_head::Entity::find_by_id(1)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| sea_orm::DbErr::RecordNotFound("audit_head row 1".into()))?;
    let mut row = audit_entry::Model {
        seq: head.seq + 1,
        at,
        actor: event.actor.to_owned(),
        action: event.action.to_owned(),
        target_type: event.target_type.to_owned(),
        target_id: event.target_id.to_owned(),
        before_hash: event.before_hash.map(str::to_owned),
        after_hash: event.after_hash.map(str::to_owned),
        detail: event.detail.to_string(),
        prev_hash: head.row_hash,
        row_hash: String::new(),
        area_code: event.area.map(str::to_owned),
    };
    row.row_hash = row_hash(&row);
    let seq = row.seq;
    audit_head::Entity::update_many()
        .col_expr(audit_head::Column::Seq, Expr::value(seq))
        .col_expr(audit_head::Column::RowHash, Expr::value(row.row_hash.clone()))
        .filter(audit_head::Column::Id.eq(1))
        .exec(txn)
        .await?;
    audit_entry::ActiveModel {
        seq: Set(row.seq),
        at: Set(row.at),
        actor: Set(row.actor),
        action: Set(row.action),
        target_type: Set(row.target_type),
        target_id: Set(row.target_id),
        before_hash: Set(row.before_hash),
        after_hash: Set(row.after_hash),
        detail: Set(row.detail),
        prev_hash: Set(row.prev_hash),
        row_hash: Set(row.row_hash),
        area_code: Set(row.area_code),
    }
    .insert(txn)
    .await?;
    Ok(seq)
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Verification {
    pub rows_checked: u64,
    pub first_bad: Option<BadRow>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct BadRow {
    pub seq: i64,
    pub reason: String,
}

const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const VERIFY_PAGE: u64 = 1000;

pub async fn verify(db: &impl ConnectionTrait) -> Result<Verification, sea_orm::DbErr> {
    let mut expected_seq = 1i64;
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut rows_checked = 0u64;
    let bad = |seq: i64, reason: String, rows_checked: u64| Verification {
        rows_checked,
        first_bad: Some(BadRow { seq, reason }),
    };
    loop {
        let page = audit_entry::Entity::find()
            .filter(audit_entry::Column::Seq.gte(expected_seq))
            .order_by_asc(audit_entry::Column::Seq)
            .limit(VERIFY_PAGE)
            .all(db)
            .await?;
        if page.is_empty() {
            break;
        }
        for row in &page {
            if row.seq != expected_seq {
                return Ok(bad(
                    expected_seq,
                    format!("row {expected_seq} is missing (next row is {})", row.seq),
                    rows_checked,
                ));
            }
            if row.prev_hash != prev_hash {
                return Ok(bad(
                    row.seq,
                    "its link to the previous row is broken (deleted or reordered rows)".into(),
                    rows_checked,
                ));
            }
            if row_hash(row) != row.row_hash {
                return Ok(bad(
                    row.seq,
                    "its content does not match its hash (the row was edited)".into(),
                    rows_checked,
                ));
            }
            prev_hash = row.row_hash.clone();
            expected_seq += 1;
            rows_checked += 1;
        }
    }
    let head = audit_head::Entity::find_by_id(1).one(db).await?;
    match head {
        Some(head) if head.seq == expected_seq - 1 && head.row_hash == prev_hash => Ok(Verification {
            rows_checked,
            first_bad: None,
        }),
        Some(head) => Ok(bad(
            expected_seq,
            format!(
                "the log ends at row {} but its head records row {} (rows were deleted from the end)",
                expected_seq - 1,
                head.seq
            ),
            rows_checked,
        )),
        None => Ok(bad(0, "the audit head row is missing".into(), rows_checked)),
    }
}

/// Rows after `after`, oldest first; with a scope, only the rows about that area.
pub async fn list(
    db: &impl ConnectionTrait,
    scope: Option<&str>,
    after: i64,
    limit: u64,
) -> Result<Vec<audit_entry::Model>, sea_orm::DbErr> {
    let mut query = audit_entry::Entity::find();
    if let Some(area) = scope {
        query = query.filter(audit_entry::Column::AreaCode.starts_with(area));
    }
    query
        .filter(audit_entry::Column::Seq.gt(after))
        .order_by_asc(audit_entry::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}
