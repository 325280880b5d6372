//! Items through their life: draft → in_review → approved → published → withdrawn / expired,
//! with rejection back to draft. Every change is one transaction that also writes its audit
//! entry; what is published is exactly the version a reviewer approved.

use chrono::{DateTime, NaiveDate, Utc};
use herald_channels::ChannelKind;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::{
    accounts::Caller,
    attachments,
    audit::{self, AuditEvent},
    clock::{china_date, end_of_china_day},
    delivery::{
        self,
        targets::{Reach, TargetView},
    },
    domain::{
        area::AreaCode,
        item::{ContentRules, Disclosure, ItemContent, ItemInput, ItemState, sha256_hex},
        page::Page,
        text::{MAX_COMMENT_CHARS, MAX_ID_CHARS, MAX_REASON_CHARS, multi_line, single_line},
    },
    error::{Error, Result},
    hub::Hub,
    items::{ItemKind, content_of, kind_of, load_version, load_visible, state_of},
    store::{
        begin_write,
        entities::{attachment, idempotency, item, item_version, publication, review},
    },
};

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
    let state = state_of(row)?;
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

/// Validates input against configuration and the store: area within the caller's scope,
/// attachments uploaded, the interpreted policy visible and not itself an interpretation.
async fn parse_content(
    hub: &Hub,
    db: &impl ConnectionTrait,
    caller: &Caller,
    input: ItemInput,
    item_id: Option<&str>,
) -> Result<ItemContent> {
    let rules = ContentRules {
        index_no_pattern: &hub.index_no_pattern,
        max_body_bytes: hub.settings.content.max_body_bytes,
        areas: &hub.areas,
        catalog: &hub.catalog,
    };
    let content = ItemContent::parse(input, &rules)?;
    let area = AreaCode::parse(&content.area_code).map_err(anyhow::Error::new)?;
    if !caller.sees(&area) {
        return Err(Error::Refused {
            code: "area_out_of_scope",
            field: Some("area_code".into()),
            message: format!("area {area} is outside your area {}", caller.area),
        });
    }
    for (i, attachment) in content.attachments.iter().enumerate() {
        if attachment::Entity::find_by_id(&attachment.sha256)
            .count(db)
            .await?
            == 0
        {
            return Err(Error::validation(
                format!("attachments[{i}].sha256"),
                "no attachment with that digest was uploaded",
            ));
        }
    }
    if let Some(policy_id) = &content.interprets {
        if Some(policy_id.as_str()) == item_id {
            return Err(Error::validation("interprets", "an item cannot interpret itself"));
        }
        // A township may interpret a published county policy: a policy is linkable when it lies
        // in the caller's area, or is published in an area above it. Any other id answers
        // exactly as one that does not exist.
        let linkable = |policy: &item::Model| {
            AreaCode::parse(&policy.area_code).is_ok_and(|area| {
                caller.sees(&area)
                    || (caller.area.is_within(&area) && policy.state == ItemState::Published.as_str())
            })
        };
        let policy = item::Entity::find_by_id(policy_id)
            .one(db)
            .await?
            .filter(linkable)
            .ok_or_else(|| Error::validation("interprets", "no policy item you may interpret has that id"))?;
        if policy.interprets_id.is_some() {
            return Err(Error::validation(
                "interprets",
                "the target is itself an interpretation",
            ));
        }
    }
    let clash = item::Entity::find()
        .filter(item::Column::IndexNo.eq(&content.index_no))
        .filter(item::Column::Id.ne(item_id.unwrap_or_default()))
        .count(db)
        .await?;
    if clash > 0 {
        return Err(Error::validation(
            "index_no",
            format!("索引号 {} is already used by another item", content.index_no),
        ));
    }
    Ok(content)
}

async fn insert_version(
    txn: &DatabaseTransaction,
    item_id: &str,
    version: i32,
    content: &ItemContent,
    caller: &Caller,
    at: DateTime<Utc>,
) -> Result<String> {
    let hash = content.content_hash();
    item_version::ActiveModel {
        item_id: Set(item_id.to_owned()),
        version: Set(version),
        content: Set(content.canonical_json()),
        content_hash: Set(hash.clone()),
        created_by: Set(caller.id.clone()),
        created_at: Set(at),
    }
    .insert(txn)
    .await?;
    attachments::link_to_item(txn, item_id, &content.attachments).await?;
    Ok(hash)
}

pub async fn create_item(hub: &Hub, caller: &Caller, input: ItemInput) -> Result<ItemView> {
    require(caller.role.may_author(), "your role may not create items")?;
    let txn = begin_write(&hub.db).await?;
    let content = parse_content(hub, &txn, caller, input, None).await?;
    let now = hub.clock.now();
    let id = uuid::Uuid::now_v7().to_string();
    item::ActiveModel {
        id: Set(id.clone()),
        state: Set(ItemState::Draft.as_str().to_owned()),
        title: Set(content.title.clone()),
        area_code: Set(content.area_code.clone()),
        index_no: Set(content.index_no.clone()),
        disclosure: Set(content.disclosure.as_str().to_owned()),
        emergency: Set(content.emergency),
        interprets_id: Set(content.interprets.clone()),
        author_id: Set(caller.id.clone()),
        current_version: Set(1),
        approved_version: Set(None),
        approved_hash: Set(None),
        published_version: Set(None),
        published_at: Set(None),
        withdrawn_at: Set(None),
        expires_at: Set(content.expires_on.map(end_of_china_day)),
        review_comment: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let hash = insert_version(&txn, &id, 1, &content, caller, now).await?;
    audit_item(
        &txn,
        hub,
        caller,
        &id,
        Audited {
            action: "item.create",
            before_hash: None,
            after_hash: Some(&hash),
            detail: serde_json::json!({"version": 1}),
        },
    )
    .await?;
    txn.commit().await?;
    get_item(hub, caller, &id).await
}

/// Every edit is a new immutable version; an edit to a submitted or approved item sends it
/// back to draft, so nothing unreviewed can be published.
pub async fn edit_item(hub: &Hub, caller: &Caller, id: &str, input: ItemInput) -> Result<ItemView> {
    require(caller.role.may_author(), "your role may not edit items")?;
    let txn = begin_write(&hub.db).await?;
    let row = load_visible(&txn, caller, id, true).await?;
    let state = require_state(
        &row,
        &[ItemState::Draft, ItemState::InReview, ItemState::Approved],
        "edit",
    )?;
    let content = parse_content(hub, &txn, caller, input, Some(id)).await?;
    let previous = load_version(&txn, id, row.current_version).await?;
    if previous.content_hash == content.content_hash() {
        return Err(Error::conflict("unchanged", "the edit changes nothing"));
    }
    let now = hub.clock.now();
    let version = row.current_version + 1;
    let hash = insert_version(&txn, id, version, &content, caller, now).await?;
    let mut active: item::ActiveModel = row.into();
    active.state = Set(ItemState::Draft.as_str().to_owned());
    active.title = Set(content.title.clone());
    active.area_code = Set(content.area_code.clone());
    active.index_no = Set(content.index_no.clone());
    active.disclosure = Set(content.disclosure.as_str().to_owned());
    active.emergency = Set(content.emergency);
    active.interprets_id = Set(content.interprets.clone());
    active.current_version = Set(version);
    active.approved_version = Set(None);
    active.approved_hash = Set(None);
    active.expires_at = Set(content.expires_on.map(end_of_china_day));
    active.updated_at = Set(now);
    active.update(&txn).await?;
    let detail = serde_json::json!({"version": version, "from_state": state.as_str()});
    audit_item(
        &txn,
        hub,
        caller,
        id,
        Audited {
            action: "item.edit",
            before_hash: Some(&previous.content_hash),
            after_hash: Some(&hash),
            detail,
        },
    )
    .await?;
    txn.commit().await?;
    get_item(hub, caller, id).await
}

async fn interpretation_deadline(
    hub: &Hub,
    db: &impl ConnectionTrait,
    row: &item::Model,
) -> Result<Option<NaiveDate>> {
    let Some(policy_id) = &row.interprets_id else {
        return Ok(None);
    };
    let policy = item::Entity::find_by_id(policy_id).one(db).await?;
    Ok(policy
        .and_then(|p| p.published_at)
        .map(|at| deadline_after(hub, at)))
}

fn deadline_after(hub: &Hub, published_at: DateTime<Utc>) -> NaiveDate {
    hub.calendar.add_working_days(
        china_date(published_at),
        hub.settings.workflow.interpretation_working_days,
    )
}

pub async fn get_item(hub: &Hub, caller: &Caller, id: &str) -> Result<ItemView> {
    let row = load_visible(&hub.db, caller, id, false).await?;
    let version = load_version(&hub.db, id, row.current_version).await?;
    Ok(ItemView {
        kind: kind_of(&row),
        state: state_of(&row)?,
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
    /// Part of the title.
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
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        condition = condition.add(item::Column::Title.contains(q));
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
                state: state_of(&row)?,
                disclosure: Disclosure::parse(&row.disclosure).ok_or_else(|| {
                    anyhow::anyhow!("item {} has unknown disclosure {}", row.id, row.disclosure)
                })?,
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
    })
}

pub async fn submit(hub: &Hub, caller: &Caller, id: &str) -> Result<ItemView> {
    require(
        caller.role.may_author(),
        "your role may not submit items for review",
    )?;
    let txn = begin_write(&hub.db).await?;
    let row = load_visible(&txn, caller, id, true).await?;
    require_state(&row, &[ItemState::Draft], "submit")?;
    let version = load_version(&txn, id, row.current_version).await?;
    let mut active: item::ActiveModel = row.into();
    active.state = Set(ItemState::InReview.as_str().to_owned());
    active.updated_at = Set(hub.clock.now());
    active.update(&txn).await?;
    let detail = serde_json::json!({"version": version.version});
    audit_item(
        &txn,
        hub,
        caller,
        id,
        Audited {
            action: "item.submit",
            before_hash: Some(&version.content_hash),
            after_hash: Some(&version.content_hash),
            detail,
        },
    )
    .await?;
    txn.commit().await?;
    get_item(hub, caller, id).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
enum ReviewKind {
    ConfidentialityCheck,
    Approve,
    Reject,
}

impl ReviewKind {
    /// The name stored in `reviews.kind` (generated by strum).
    fn as_str(self) -> &'static str {
        self.into()
    }
}

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
    require_state(&row, &[ItemState::InReview], "review")?;
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
        kind: Set(kind.as_str().to_owned()),
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
    let mut active: item::ActiveModel = row.into();
    active.state = Set(ItemState::Approved.as_str().to_owned());
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
    let mut active: item::ActiveModel = row.into();
    active.state = Set(ItemState::Draft.as_str().to_owned());
    active.review_comment = Set(Some(comment.to_owned()));
    active.updated_at = Set(hub.clock.now());
    active.update(&txn).await?;
    txn.commit().await?;
    get_item(hub, caller, id).await
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishInput {
    /// Channels to deliver to; empty means every channel whose targets match the item.
    #[serde(default)]
    pub channels: Vec<ChannelKind>,
    /// Narrows delivery to these of the resolved targets; empty means all of them.
    #[serde(default)]
    pub targets: Vec<String>,
    /// 定时发布: nothing goes out before this time. Omitted or past: at once.
    #[serde(default)]
    pub not_before: Option<DateTime<Utc>>,
    /// Deliveries not sent by this time are never sent (a notice about an event that is over).
    #[serde(default)]
    pub not_after: Option<DateTime<Utc>>,
}

const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;
/// More targets than a county registers are never named in one request.
const MAX_NAMED_TARGETS: usize = 10_000;

impl PublishInput {
    fn check_bounds(&self) -> Result<()> {
        if self.targets.len() > MAX_NAMED_TARGETS {
            return Err(Error::validation(
                "targets",
                format!("must name at most {MAX_NAMED_TARGETS} targets"),
            ));
        }
        for (i, target) in self.targets.iter().enumerate() {
            single_line(&format!("targets[{i}]"), target, MAX_ID_CHARS, true)?;
        }
        Ok(())
    }

    /// The schedule this request asks for, checked against `now`: a start in the past means
    /// at once; the end must come after the start.
    fn schedule(&self, now: DateTime<Utc>) -> Result<delivery::Schedule> {
        let not_before = self.not_before.filter(|at| *at > now);
        if let Some(at) = not_before
            && at > now + chrono::Duration::days(MAX_SCHEDULE_DAYS)
        {
            return Err(Error::validation(
                "not_before",
                format!("must be at most {MAX_SCHEDULE_DAYS} days ahead"),
            ));
        }
        if let Some(end) = self.not_after
            && end <= not_before.unwrap_or(now)
        {
            return Err(Error::validation(
                "not_after",
                "must come after the time the item goes out",
            ));
        }
        Ok(delivery::Schedule {
            not_before,
            not_after: self.not_after,
        })
    }
}

/// 定时发布 reaches at most this far ahead.
const MAX_SCHEDULE_DAYS: i64 = 366;

/// The targets an item's current version would reach, narrowed as a publish request would.
async fn reach_of(
    hub: &Hub,
    db: &impl ConnectionTrait,
    content: &ItemContent,
    input: &PublishInput,
) -> Result<Reach> {
    for (i, channel) in input.channels.iter().enumerate() {
        if hub.channels.get(*channel).is_none() {
            return Err(Error::validation(
                format!("channels[{i}]"),
                format!("channel {} is not available", channel.as_str()),
            ));
        }
    }
    let area = AreaCode::parse(&content.area_code).map_err(anyhow::Error::new)?;
    let reach = Reach::new(
        hub,
        &area,
        &content.catalog,
        &content.tags,
        &input.channels,
        &input.targets,
    );
    if let Some(missing) = reach.missing(db, &input.targets).await?.first() {
        let i = input.targets.iter().position(|t| t == missing).unwrap_or(0);
        return Err(Error::validation(
            format!("targets[{i}]"),
            format!("target {missing} is not among the targets this item reaches"),
        ));
    }
    Ok(reach)
}

/// What publishing would reach now, for the publisher to check first.
pub async fn preview_targets(
    hub: &Hub,
    caller: &Caller,
    id: &str,
    input: PublishInput,
) -> Result<Vec<TargetView>> {
    input.check_bounds()?;
    let row = load_visible(&hub.db, caller, id, false).await?;
    let content = content_of(&load_version(&hub.db, id, row.current_version).await?)?;
    reach_of(hub, &hub.db, &content, &input)
        .await?
        .targets(&hub.db)
        .await
}

/// The exact rendition a channel would receive for the current version.
pub async fn preview_rendition(
    hub: &Hub,
    caller: &Caller,
    id: &str,
    channel: ChannelKind,
) -> Result<herald_channels::Rendition> {
    let row = load_visible(&hub.db, caller, id, false).await?;
    let version = load_version(&hub.db, id, row.current_version).await?;
    let content = content_of(&version)?;
    let adapter = hub.channels.get(channel).ok_or_else(|| {
        Error::validation(
            "channel",
            format!("channel {} is not available", channel.as_str()),
        )
    })?;
    let at = row.published_at.unwrap_or_else(|| hub.clock.now());
    let item = delivery::published_item(hub, id, version.version, &version.content_hash, &content, at);
    adapter.render(&item).map_err(|e| Error::Refused {
        code: "unrenderable",
        field: None,
        message: e.to_string(),
    })
}

/// The saved outcome of a publish request, returned again for a retry with the same key.
#[derive(Debug, Clone)]
pub struct PublishOutcome {
    pub status: u16,
    pub body: serde_json::Value,
    pub replayed: bool,
}

pub async fn publish(
    hub: &Hub,
    caller: &Caller,
    id: &str,
    idempotency_key: &str,
    input: PublishInput,
) -> Result<PublishOutcome> {
    let key = single_line(
        "Idempotency-Key",
        idempotency_key,
        MAX_IDEMPOTENCY_KEY_CHARS,
        true,
    )?;
    let key = key.as_str();
    input.check_bounds()?;
    require(caller.role.may_publish(), "your role may not publish items")?;
    let request_hash = sha256_hex(serde_json::json!([id, input]).to_string().as_bytes());
    let txn = begin_write(&hub.db).await?;
    // Lock the item first: a concurrent retry waits here, then finds the saved response below.
    let row = load_visible(&txn, caller, id, true).await?;
    if let Some(saved) = idempotency::Entity::find_by_id((caller.id.clone(), key.to_owned()))
        .one(&txn)
        .await?
    {
        if saved.request_hash != request_hash {
            return Err(Error::Refused {
                code: "idempotency_key_reused",
                field: Some("Idempotency-Key".into()),
                message: "this Idempotency-Key was used for a different request".into(),
            });
        }
        let body = serde_json::from_str(&saved.response_body).map_err(anyhow::Error::new)?;
        return Ok(PublishOutcome {
            status: u16::try_from(saved.response_status).unwrap_or(200),
            body,
            replayed: true,
        });
    }
    let disclosure = Disclosure::parse(&row.disclosure)
        .ok_or_else(|| anyhow::anyhow!("unknown disclosure {}", row.disclosure))?;
    if !disclosure.may_leave_the_store() {
        return Err(Error::Refused {
            code: "not_publishable",
            field: Some("disclosure".into()),
            message: format!(
                "an item whose disclosure is {} (此件依申请公开 / 此件不公开) is never published",
                disclosure.as_str()
            ),
        });
    }
    require_state(&row, &[ItemState::Approved], "publish")?;
    if let Some(expires_at) = row.expires_at
        && expires_at <= hub.clock.now()
    {
        return Err(Error::Refused {
            code: "expired",
            field: Some("expires_on".into()),
            message: "the item's 有效期 has ended; an expired item is never published".into(),
        });
    }
    let (Some(approved_version), Some(approved_hash)) = (row.approved_version, row.approved_hash.clone())
    else {
        return Err(Error::conflict(
            "not_approved",
            "the item has no approved version",
        ));
    };
    let version = load_version(&txn, id, approved_version).await?;
    if version.content_hash != approved_hash || approved_version != row.current_version {
        return Err(anyhow::anyhow!(
            "item {id}: approved version {approved_version} no longer matches its pinned hash"
        )
        .into());
    }
    let now = hub.clock.now();
    let schedule = input.schedule(now)?;
    // A scheduled publication counts as published from the time it goes out.
    let goes_out = schedule.not_before.unwrap_or(now);
    if let Some(policy_id) = &row.interprets_id {
        let policy = item::Entity::find_by_id(policy_id).one(&txn).await?;
        if policy
            .and_then(|p| p.published_at)
            .is_none_or(|policy_out| policy_out > goes_out)
        {
            return Err(Error::conflict(
                "policy_not_published",
                "an interpretation (解读) is published after its policy, not before",
            ));
        }
    }
    let content = content_of(&version)?;
    let reach = reach_of(hub, &txn, &content, &input).await?;
    let publication_id = uuid::Uuid::now_v7().to_string();
    let channels = serde_json::to_string(&input.channels).map_err(anyhow::Error::new)?;
    publication::ActiveModel {
        id: Set(publication_id.clone()),
        item_id: Set(id.to_owned()),
        version: Set(approved_version),
        content_hash: Set(approved_hash.clone()),
        published_by: Set(caller.id.clone()),
        published_at: Set(goes_out),
        channels: Set(channels),
    }
    .insert(&txn)
    .await?;
    let mut active: item::ActiveModel = row.into();
    active.state = Set(ItemState::Published.as_str().to_owned());
    active.published_version = Set(Some(approved_version));
    active.published_at = Set(Some(goes_out));
    active.updated_at = Set(now);
    active.update(&txn).await?;
    let published = delivery::published_item(hub, id, approved_version, &approved_hash, &content, goes_out);
    let per_channel =
        delivery::enqueue_publication(hub, &txn, &publication_id, &published, (&reach, schedule), now)
            .await?;
    let deliveries: BTreeMap<&str, usize> = per_channel.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    let detail = serde_json::json!({"version": approved_version, "publication_id": publication_id, "channels": input.channels, "deliveries": deliveries, "not_before": schedule.not_before, "not_after": schedule.not_after});
    audit_item(
        &txn,
        hub,
        caller,
        id,
        Audited {
            action: "item.publish",
            before_hash: Some(&approved_hash),
            after_hash: Some(&approved_hash),
            detail,
        },
    )
    .await?;
    let body = serde_json::json!({
        "publication_id": publication_id,
        "item_id": id,
        "version": approved_version,
        "content_hash": approved_hash,
        "published_at": goes_out,
        "channels": input.channels,
        "deliveries": deliveries,
        "not_before": schedule.not_before,
        "not_after": schedule.not_after,
    });
    idempotency::ActiveModel {
        user_id: Set(caller.id.clone()),
        key: Set(key.to_owned()),
        request_hash: Set(request_hash),
        response_status: Set(201),
        response_body: Set(body.to_string()),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(PublishOutcome {
        status: 201,
        body,
        replayed: false,
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawInput {
    /// Why the item comes down; shown in the cleanup record.
    pub reason: String,
}

pub async fn withdraw(hub: &Hub, caller: &Caller, id: &str, input: WithdrawInput) -> Result<ItemView> {
    require(caller.role.may_withdraw(), "your role may not withdraw items")?;
    let reason = multi_line("reason", &input.reason, MAX_REASON_CHARS, false)?;
    if reason.is_empty() {
        return Err(Error::validation("reason", "say why the item is withdrawn"));
    }
    let reason = reason.as_str();
    let txn = begin_write(&hub.db).await?;
    let row = load_visible(&txn, caller, id, true).await?;
    require_state(&row, &[ItemState::Published], "withdraw")?;
    let hash = row.approved_hash.clone();
    let emergency = row.emergency;
    let now = hub.clock.now();
    let mut active: item::ActiveModel = row.into();
    active.state = Set(ItemState::Withdrawn.as_str().to_owned());
    active.withdrawn_at = Set(Some(now));
    active.updated_at = Set(now);
    active.update(&txn).await?;
    let withdrawals = delivery::enqueue_withdrawal(hub, &txn, id, reason, emergency).await?;
    let detail = serde_json::json!({"reason": reason, "withdrawal_deliveries": withdrawals});
    audit_item(
        &txn,
        hub,
        caller,
        id,
        Audited {
            action: "item.withdraw",
            before_hash: hash.as_deref(),
            after_hash: hash.as_deref(),
            detail,
        },
    )
    .await?;
    txn.commit().await?;
    get_item(hub, caller, id).await
}

/// Why expired items come down, as the cleanup record (清理结果) says.
pub const EXPIRY_REASON: &str = "有效期届满";

/// Moves published items past their 有效期 to `expired` and takes them down from every
/// channel; returns how many.
pub async fn expire_due(hub: &Hub) -> Result<u64> {
    let now = hub.clock.now();
    let due = item::Entity::find()
        .filter(item::Column::State.eq(ItemState::Published.as_str()))
        .filter(item::Column::ExpiresAt.lte(now))
        .all(&hub.db)
        .await?;
    let mut expired = 0;
    for candidate in due {
        let txn = begin_write(&hub.db).await?;
        // Re-read under the lock: another instance may have expired or withdrawn it meanwhile.
        let Some(row) = item::Entity::find_by_id(&candidate.id)
            .lock_exclusive()
            .one(&txn)
            .await?
        else {
            continue;
        };
        if row.state != ItemState::Published.as_str() {
            continue;
        }
        let hash = row.approved_hash.clone();
        let id = row.id.clone();
        let area_code = row.area_code.clone();
        let withdrawals = delivery::enqueue_withdrawal(hub, &txn, &id, EXPIRY_REASON, row.emergency).await?;
        let mut active: item::ActiveModel = row.into();
        active.state = Set(ItemState::Expired.as_str().to_owned());
        active.updated_at = Set(now);
        active.update(&txn).await?;
        audit::append(
            &txn,
            now,
            AuditEvent {
                actor: "system",
                action: "item.expire",
                target_type: "item",
                target_id: &id,
                before_hash: hash.as_deref(),
                after_hash: hash.as_deref(),
                detail: serde_json::json!({"withdrawal_deliveries": withdrawals}),
                area: Some(&area_code),
            },
        )
        .await?;
        txn.commit().await?;
        expired += 1;
    }
    Ok(expired)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DueStatus {
    Overdue,
    DueSoon,
    Pending,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DueInterpretation {
    pub interpretation_id: String,
    pub title: String,
    pub state: ItemState,
    pub policy_id: String,
    pub policy_title: String,
    pub policy_published_at: DateTime<Utc>,
    pub deadline: NaiveDate,
    pub status: DueStatus,
}

/// Unpublished interpretations of published policies, most urgent first.
pub async fn interpretations_due(hub: &Hub, caller: &Caller) -> Result<Vec<DueInterpretation>> {
    let open = item::Entity::find()
        .filter(item::Column::InterpretsId.is_not_null())
        .filter(item::Column::AreaCode.starts_with(caller.area.as_str()))
        .filter(item::Column::State.is_in([
            ItemState::Draft.as_str(),
            ItemState::InReview.as_str(),
            ItemState::Approved.as_str(),
        ]))
        .all(&hub.db)
        .await?;
    let today = china_date(hub.clock.now());
    let due_soon_days = hub.settings.workflow.due_soon_working_days;
    let mut due = Vec::new();
    for interpretation in open {
        let Some(policy_id) = interpretation.interprets_id.clone() else {
            continue;
        };
        let Some(policy) = item::Entity::find_by_id(&policy_id).one(&hub.db).await? else {
            continue;
        };
        let Some(published_at) = policy.published_at else {
            continue;
        };
        let deadline = deadline_after(hub, published_at);
        let status = if today > deadline {
            DueStatus::Overdue
        } else if hub.calendar.working_days_between(today, deadline) <= due_soon_days {
            DueStatus::DueSoon
        } else {
            DueStatus::Pending
        };
        due.push(DueInterpretation {
            state: state_of(&interpretation)?,
            interpretation_id: interpretation.id,
            title: interpretation.title,
            policy_id,
            policy_title: policy.title,
            policy_published_at: published_at,
            deadline,
            status,
        });
    }
    due.sort_by_key(|d| (d.deadline, d.interpretation_id.clone()));
    Ok(due)
}

#[cfg(test)]
mod wire_name_tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn review_kinds_keep_their_stored_names() {
        let names: Vec<&str> = ReviewKind::VARIANTS.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["confidentiality_check", "approve", "reject"]);
    }
}
