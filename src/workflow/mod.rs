//! Items through their life: draft → in_review → approved → published → withdrawn / expired,
//! with rejection back to draft. Every change is one transaction that also writes its audit
//! entry; what is published is exactly the version a reviewer approved.

mod alerts;
mod authoring;
mod correct;
mod interpretations;
mod publish;
mod retire;
mod review;

pub use alerts::{AlertOutcome, receive_cap};
pub use authoring::{create_item, edit_item, submit};
pub use interpretations::{DueInterpretation, DueStatus, deadline_after, interpretations_due};
pub use publish::{PublishInput, PublishOutcome, preview_rendition, preview_targets, publish};
pub use retire::{EXPIRY_REASON, WithdrawInput, expire_due, withdraw};
pub use review::{
    ApproveInput, ConfidentialityCheckInput, RejectInput, approve, confidentiality_check, reject,
};

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ColumnTrait, Condition, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};

use crate::{
    accounts::Caller,
    audit::{self, AuditEvent},
    domain::{
        item::{Correcting, Disclosure, ItemContent, ItemState},
        page::Page,
        search::SearchTerms,
    },
    error::{Error, Result},
    hub::Hub,
    items::{ItemKind, content_of, kind_of, load_version, load_visible},
    store::entities::{item, item_version},
};
use interpretations::interpretation_deadline;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemView {
    pub id: String,
    pub kind: ItemKind,
    pub state: ItemState,
    pub area_code: String,
    pub author_id: String,
    pub current_version: i32,
    pub content_hash: String,
    pub approved_version: Option<i32>,
    pub approved_hash: Option<String>,
    pub published_version: Option<i32>,
    pub published_at: Option<DateTime<Utc>>,
    pub withdrawn_at: Option<DateTime<Utc>>,
    pub review_comment: Option<String>,
    /// A correction (更正) of the published item on its way through review.
    pub correcting: Option<Correcting>,
    /// For an interpretation whose policy is published: the day it is due.
    pub interpretation_deadline: Option<NaiveDate>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub content: ItemContent,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemSummary {
    pub id: String,
    pub kind: ItemKind,
    pub state: ItemState,
    pub title: String,
    pub area_code: String,
    pub disclosure: Disclosure,
    pub emergency: bool,
    pub current_version: i32,
    pub published_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionView {
    pub version: i32,
    pub content_hash: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// For a correction (更正): what it corrects.
    pub correction_note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<ItemContent>,
}

fn require(allowed: bool, message: &str) -> Result<()> {
    if allowed {
        Ok(())
    } else {
        Err(Error::forbidden(message))
    }
}

fn require_state(row: &item::Model, expected: &[ItemState], action: &str) -> Result<ItemState> {
    let state = row.state;
    if expected.contains(&state) {
        Ok(state)
    } else {
        Err(Error::conflict(
            "invalid_state",
            format!("cannot {action} an item that is {}", state.as_str()),
        ))
    }
}

struct Audited<'a> {
    action: &'a str,
    before_hash: Option<&'a str>,
    after_hash: Option<&'a str>,
    detail: serde_json::Value,
}

async fn audit_item(
    txn: &DatabaseTransaction,
    hub: &Hub,
    caller: &Caller,
    item_id: &str,
    entry: Audited<'_>,
) -> Result<()> {
    // Read back inside the transaction: an edit may just have moved the item to another area.
    let area = item::Entity::find_by_id(item_id)
        .one(txn)
        .await?
        .map(|row| row.area_code);
    audit::append(
        txn,
        hub.clock.now(),
        AuditEvent {
            actor: &caller.id,
            action: entry.action,
            target_type: "item",
            target_id: item_id,
            before_hash: entry.before_hash,
            after_hash: entry.after_hash,
            detail: entry.detail,
            area: area.as_deref(),
        },
    )
    .await?;
    Ok(())
}

pub async fn get_item(hub: &Hub, caller: &Caller, id: &str) -> Result<ItemView> {
    let row = load_visible(&hub.db, caller, id, false).await?;
    let version = load_version(&hub.db, id, row.current_version).await?;
    Ok(ItemView {
        kind: kind_of(&row),
        state: row.state,
        interpretation_deadline: interpretation_deadline(hub, &hub.db, &row).await?,
        content: content_of(&version)?,
        content_hash: version.content_hash,
        id: row.id,
        area_code: row.area_code,
        author_id: row.author_id,
        current_version: row.current_version,
        approved_version: row.approved_version,
        approved_hash: row.approved_hash,
        published_version: row.published_version,
        published_at: row.published_at,
        withdrawn_at: row.withdrawn_at,
        review_comment: row.review_comment,
        correcting: row.correcting,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ItemFilter {
    pub state: Option<ItemState>,
    pub area: Option<String>,
    pub disclosure: Option<Disclosure>,
    pub kind: Option<ItemKind>,
    pub emergency: Option<bool>,
    /// Words that must all occur in the title, 索引号, 发文字号 or 发文机关 (bracket forms of a
    /// 发文字号 are alike; `%` and `_` are plain characters).
    pub q: Option<String>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemPage {
    pub total: u64,
    pub items: Vec<ItemSummary>,
}

const MAX_PAGE: u64 = 200;

pub async fn list_items(hub: &Hub, caller: &Caller, filter: ItemFilter) -> Result<ItemPage> {
    let scope = caller.scope(filter.area.as_deref())?;
    let mut condition = Condition::all().add(item::Column::AreaCode.starts_with(scope.as_str()));
    if let Some(state) = filter.state {
        condition = condition.add(item::Column::State.eq(state.as_str()));
    }
    if let Some(disclosure) = filter.disclosure {
        condition = condition.add(item::Column::Disclosure.eq(disclosure.as_str()));
    }
    match filter.kind {
        Some(ItemKind::Interpretation) => condition = condition.add(item::Column::InterpretsId.is_not_null()),
        Some(ItemKind::Document) => condition = condition.add(item::Column::InterpretsId.is_null()),
        None => {}
    }
    if let Some(emergency) = filter.emergency {
        condition = condition.add(item::Column::Emergency.eq(emergency));
    }
    let terms =
        SearchTerms::parse(filter.q.as_deref().unwrap_or_default()).map_err(|e| Error::validation("q", e))?;
    if let Some(terms) = &terms {
        let backend = hub.db.get_database_backend();
        condition = condition.add(crate::store::holds_every_word(
            backend,
            item::Column::SearchKey,
            terms,
        ));
    }
    let page = Page::parse(filter.limit, filter.offset, 50, MAX_PAGE)?;
    let query = item::Entity::find().filter(condition);
    let total = query.clone().count(&hub.db).await?;
    let rows = query
        .order_by_desc(item::Column::Emergency)
        .order_by_desc(item::Column::UpdatedAt)
        .offset(page.offset)
        .limit(page.limit)
        .all(&hub.db)
        .await?;
    let items = rows
        .into_iter()
        .map(|row| {
            Ok(ItemSummary {
                kind: kind_of(&row),
                state: row.state,
                disclosure: row.disclosure,
                id: row.id,
                title: row.title,
                area_code: row.area_code,
                emergency: row.emergency,
                current_version: row.current_version,
                published_at: row.published_at,
                updated_at: row.updated_at,
            })
        })
        .collect::<Result<_>>()?;
    Ok(ItemPage { total, items })
}

pub async fn list_versions(hub: &Hub, caller: &Caller, id: &str) -> Result<Vec<VersionView>> {
    load_visible(&hub.db, caller, id, false).await?;
    let versions = item_version::Entity::find()
        .filter(item_version::Column::ItemId.eq(id))
        .order_by_asc(item_version::Column::Version)
        .all(&hub.db)
        .await?;
    Ok(versions
        .into_iter()
        .map(|v| VersionView {
            version: v.version,
            content_hash: v.content_hash,
            created_by: v.created_by,
            created_at: v.created_at,
            correction_note: v.correction_note,
            content: None,
        })
        .collect())
}

pub async fn get_version(hub: &Hub, caller: &Caller, id: &str, version: i32) -> Result<VersionView> {
    load_visible(&hub.db, caller, id, false).await?;
    let v = load_version(&hub.db, id, version).await?;
    Ok(VersionView {
        content: Some(content_of(&v)?),
        version: v.version,
        content_hash: v.content_hash,
        created_by: v.created_by,
        created_at: v.created_at,
        correction_note: v.correction_note,
    })
}
