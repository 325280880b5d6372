//! Deliveries: one row per (published item version, target), written in the publishing
//! transaction (transactional outbox), worked off by `worker`, and recorded as append-only
//! receipts from which each delivery's state follows.

pub mod counts;
pub mod inbox;
pub mod portal_store;
pub mod targets;
pub mod transition;
pub mod worker;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use herald_channels::{ChannelKind, PublishedItem};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
    sea_query::{BinOper, CaseStatement, Expr, ExprTrait, IntoColumnRef, OnConflict, Query, SelectStatement},
};
use serde::{Deserialize, Serialize};

use self::counts::CountChanges;
use crate::{
    accounts::Caller,
    audit::{self, AuditEvent},
    domain::{
        area::AreaCode,
        item::{ItemContent, sha256_hex},
        page::Page,
        user::Role,
    },
    error::{Error, Result},
    hub::Hub,
    store::{
        begin_write,
        entities::{delivery, delivery_count, item, receipt, rendition, target},
    },
};

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

/// What channels receive of a stored version: the redacted body for 此件删减后公开.
pub fn published_item(
    hub: &Hub,
    item_id: &str,
    version: i32,
    hash: &str,
    content: &ItemContent,
    at: DateTime<Utc>,
) -> PublishedItem {
    let catalog_name = hub
        .catalog
        .get(&content.catalog)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let area_name = AreaCode::parse(&content.area_code)
        .ok()
        .and_then(|code| hub.areas.get(&code).map(|a| a.name.clone()))
        .unwrap_or_default();
    let validity = content.validity.map(|v| v.label_zh().to_owned());
    PublishedItem {
        item_id: item_id.to_owned(),
        version,
        content_hash: hash.to_owned(),
        title: content.title.clone(),
        summary: content.summary.clone(),
        body_html: content.public_body().to_owned(),
        annotation: content.disclosure.annotation().to_owned(),
        index_no: content.index_no.clone(),
        topic: content.topic.clone(),
        issuers: content.issuers.clone(),
        written_date: content.written_date.to_string(),
        doc_no: content.doc_no.clone(),
        validity,
        genre: serde_json::to_value(content.genre)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        keywords: content.keywords.clone(),
        catalog_code: content.catalog.clone(),
        catalog_name,
        area_code: content.area_code.clone(),
        area_name,
        attachments: content
            .attachments
            .iter()
            .map(|a| herald_channels::Attachment {
                sha256: a.sha256.clone(),
                filename: a.filename.clone(),
            })
            .collect(),
        emergency: content.emergency,
        published_at: at.to_rfc3339(),
    }
}

/// Ids per `IN (…)` list: well under both databases' bind-parameter limits.
const ID_CHUNK: usize = 1000;

/// The columns both delivery writers fill, in the order their SELECTs produce them.
const DELIVERY_COLUMNS: [delivery::Column; 19] = {
    use delivery::Column as C;
    [
        C::NotBefore,
        C::NotAfter,
        C::Id,
        C::PublicationId,
        C::ItemId,
        C::Version,
        C::TargetId,
        C::Channel,
        C::AreaCode,
        C::Kind,
        C::State,
        C::Priority,
        C::Attempts,
        C::NextAttemptAt,
        C::RenditionId,
        C::IdempotencyKey,
        C::WithdrawsId,
        C::CreatedAt,
        C::UpdatedAt,
    ]
};

/// Writes the deliveries `select` produces (one row per delivery, in `DELIVERY_COLUMNS`
/// order) without shipping them through the client.
async fn insert_selected(txn: &DatabaseTransaction, select: SelectStatement) -> Result<()> {
    let mut insert = Query::insert();
    insert
        .into_table(delivery::Entity)
        .columns(DELIVERY_COLUMNS)
        .select_from(select)
        .map_err(|e| anyhow::anyhow!("delivery insert: {e}"))?;
    txn.execute(&insert).await?;
    Ok(())
}

/// `prefix || column`, in SQL both databases speak. A delivery is (batch, target): its id and
/// its idempotency key are the batch's prefix and the target id.
fn prefixed(prefix: String, column: impl IntoColumnRef) -> Expr {
    Expr::val(prefix).binary(BinOper::Custom("||"), Expr::col(column))
}

/// When a publication's deliveries may go out (定时发布): not before `not_before`, and never
/// after `not_after`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedule {
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
}

/// Renders the item once per channel and writes one delivery per reached target: called
/// inside the publishing transaction, so the publication and every delivery commit together
/// or not at all. The rows are written by one INSERT … SELECT over the targets, so a publish
/// to 100,000 targets never ships 100,000 rows through the client.
pub async fn enqueue_publication(
    hub: &Hub,
    txn: &DatabaseTransaction,
    publication_id: &str,
    item: &PublishedItem,
    (reach, schedule): (&targets::Reach, Schedule),
    now: DateTime<Utc>,
) -> Result<BTreeMap<ChannelKind, usize>> {
    let per_channel = reach.count_by_channel(txn).await?;
    if per_channel.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut rendition_of_channel = CaseStatement::new();
    let mut counts = CountChanges::default();
    let mut written = BTreeMap::new();
    for (kind, n) in &per_channel {
        let channel = hub
            .channels
            .get(*kind)
            .ok_or_else(|| anyhow::anyhow!("no adapter for {}", kind.as_str()))?;
        let rendered = channel.render(item).map_err(|e| Error::Refused {
            code: "unrenderable",
            field: None,
            message: format!("{}: {e}", kind.label_zh()),
        })?;
        let id = uuid::Uuid::now_v7().to_string();
        rendition::ActiveModel {
            id: Set(id.clone()),
            publication_id: Set(publication_id.to_owned()),
            channel: Set(kind.as_str().to_owned()),
            payload: Set(rendered.payload.to_string()),
            created_at: Set(now),
        }
        .insert(txn)
        .await?;
        rendition_of_channel =
            rendition_of_channel.case(target::Column::Channel.eq(kind.as_str()), Expr::val(id));
        counts.add(
            &item.item_id,
            kind.as_str(),
            DeliveryKind::Publish.as_str(),
            DeliveryState::Pending.as_str(),
            *n,
        );
        written.insert(*kind, usize::try_from(*n).unwrap_or(0));
    }
    let target_id = (target::Entity, target::Column::Id);
    let first_attempt = schedule.not_before.map_or(now, |at| std::cmp::max(at, now));
    let mut select = Query::select();
    select
        .from(target::Entity)
        .expr(Expr::val(schedule.not_before))
        .expr(Expr::val(schedule.not_after))
        .expr(prefixed(format!("{publication_id}:"), target_id))
        .expr(Expr::val(publication_id))
        .expr(Expr::val(item.item_id.as_str()))
        .expr(Expr::val(item.version))
        .column((target::Entity, target::Column::Id))
        .column((target::Entity, target::Column::Channel))
        .column((target::Entity, target::Column::AreaCode))
        .expr(Expr::val(DeliveryKind::Publish.as_str()))
        .expr(Expr::val(DeliveryState::Pending.as_str()))
        .expr(Expr::val(priority_of(item.emergency)))
        .expr(Expr::val(0i32))
        .expr(Expr::val(first_attempt))
        .expr(rendition_of_channel)
        .expr(prefixed(format!("herald-{publication_id}:"), target_id))
        .expr(Expr::val(Option::<String>::None))
        .expr(Expr::val(now))
        .expr(Expr::val(now))
        .cond_where(reach.condition());
    insert_selected(txn, select).await?;
    counts.apply(txn).await?;
    Ok(written)
}

/// On withdrawal or expiry: cancels what was not yet sent and sends a withdrawal to every
/// target the item reached. Runs in the caller's transaction.
pub async fn enqueue_withdrawal(
    hub: &Hub,
    txn: &DatabaseTransaction,
    item_id: &str,
    reason: &str,
    emergency: bool,
) -> Result<usize> {
    let now = hub.clock.now();
    let publishes = delivery::Entity::find()
        .filter(delivery::Column::ItemId.eq(item_id))
        .filter(delivery::Column::Kind.eq(DeliveryKind::Publish.as_str()))
        .lock_exclusive()
        .all(txn)
        .await?;
    let mut reached = Vec::new();
    let mut cancelled = CountChanges::default();
    for publish in publishes {
        let state = DeliveryState::parse(&publish.state).unwrap_or(DeliveryState::Failed);
        // A delivery being sent right now may land: follow it with a withdrawal too.
        if state.reached_target() || state == DeliveryState::Sending {
            reached.push(publish);
        } else if state.not_yet_sent() {
            cancelled.moved(
                item_id,
                &publish.channel,
                &publish.kind,
                &publish.state,
                DeliveryState::Cancelled.as_str(),
                1,
            );
            let mut active: delivery::ActiveModel = publish.into();
            active.state = Set(DeliveryState::Cancelled.as_str().to_owned());
            active.updated_at = Set(now);
            active.update(txn).await?;
        }
    }
    cancelled.apply(txn).await?;
    if reached.is_empty() {
        return Ok(0);
    }
    let rendition_id = uuid::Uuid::now_v7().to_string();
    rendition::ActiveModel {
        id: Set(rendition_id.clone()),
        publication_id: Set(format!("withdraw:{item_id}:{rendition_id}")),
        channel: Set("withdrawal".into()),
        payload: Set(serde_json::json!({"reason": reason}).to_string()),
        created_at: Set(now),
    }
    .insert(txn)
    .await?;
    // The publish rows are locked above, so this selects exactly `reached`.
    use delivery::Column as C;
    let target_id = (delivery::Entity, C::TargetId);
    let mut select = Query::select();
    select
        .from(delivery::Entity)
        .expr(Expr::val(Option::<DateTime<Utc>>::None))
        .expr(Expr::val(Option::<DateTime<Utc>>::None))
        .expr(prefixed(format!("{rendition_id}:"), target_id))
        .columns([
            C::PublicationId,
            C::ItemId,
            C::Version,
            C::TargetId,
            C::Channel,
            C::AreaCode,
        ])
        .expr(Expr::val(DeliveryKind::Withdraw.as_str()))
        .expr(Expr::val(DeliveryState::Pending.as_str()))
        .expr(Expr::val(priority_of(emergency)))
        .expr(Expr::val(0i32))
        .expr(Expr::val(now))
        .expr(Expr::val(rendition_id.as_str()))
        .expr(prefixed(format!("herald-{rendition_id}:"), target_id))
        .column(C::Id)
        .expr(Expr::val(now))
        .expr(Expr::val(now))
        .and_where(C::ItemId.eq(item_id))
        .and_where(C::Kind.eq(DeliveryKind::Publish.as_str()))
        .and_where(C::State.is_in(reached.iter().map(|d| d.state.clone()).collect::<BTreeSet<_>>()));
    insert_selected(txn, select).await?;
    let mut counts = CountChanges::default();
    for delivery in &reached {
        counts.add(
            item_id,
            &delivery.channel,
            DeliveryKind::Withdraw.as_str(),
            DeliveryState::Pending.as_str(),
            1,
        );
    }
    counts.apply(txn).await?;
    Ok(reached.len())
}

pub struct NewReceipt<'a> {
    pub delivery_id: &'a str,
    /// Who reported it: the channel, or the worker for its own observations.
    pub source: &'a str,
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
                self.delivery_id, self.source, self.kind, self.distinct_by
            )
            .as_bytes(),
        );
        receipt::ActiveModel {
            id: Default::default(),
            delivery_id: Set(self.delivery_id.to_owned()),
            source: Set(self.source.to_owned()),
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

#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, utoipa::ToSchema)]
pub struct SummaryRow {
    #[schema(value_type = ChannelKind)]
    pub channel: String,
    #[schema(value_type = DeliveryKind)]
    pub kind: String,
    #[schema(value_type = DeliveryState)]
    pub state: String,
    pub count: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub item_id: String,
    pub version: i32,
    pub target_id: String,
    pub target_name: String,
    #[schema(value_type = ChannelKind)]
    pub channel: String,
    pub area_code: String,
    #[schema(value_type = DeliveryKind)]
    pub kind: String,
    #[schema(value_type = DeliveryState)]
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub external_id: Option<String>,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    pub channel: Option<ChannelKind>,
    pub kind: Option<DeliveryKind>,
    pub area: Option<String>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemDeliveries {
    pub item_id: String,
    /// Counts by channel × kind × state.
    pub summary: Vec<SummaryRow>,
    pub deliveries: Vec<DeliveryView>,
}

const MAX_PAGE: u64 = 500;

fn page_of(filter: &DeliveryFilter) -> Result<Page> {
    Page::parse(filter.limit, filter.offset, 100, MAX_PAGE)
}

pub async fn summary(db: &impl ConnectionTrait, item_id: &str) -> Result<Vec<SummaryRow>> {
    let rows = delivery_count::Entity::find()
        .filter(delivery_count::Column::ItemId.eq(item_id))
        .filter(delivery_count::Column::N.gt(0))
        .order_by_asc(delivery_count::Column::Channel)
        .order_by_asc(delivery_count::Column::Kind)
        .order_by_asc(delivery_count::Column::State)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| SummaryRow {
            channel: r.channel,
            kind: r.kind,
            state: r.state,
            count: r.n,
        })
        .collect())
}

async fn with_target_names(hub: &Hub, rows: Vec<delivery::Model>) -> Result<Vec<DeliveryView>> {
    let ids: Vec<String> = rows.iter().map(|d| d.target_id.clone()).collect();
    let names: BTreeMap<String, String> = target::Entity::find()
        .filter(target::Column::Id.is_in(ids))
        .all(&hub.db)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    Ok(rows
        .into_iter()
        .map(|d| DeliveryView {
            target_name: names.get(&d.target_id).cloned().unwrap_or_default(),
            id: d.id,
            item_id: d.item_id,
            version: d.version,
            target_id: d.target_id,
            channel: d.channel,
            area_code: d.area_code,
            kind: d.kind,
            state: d.state,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            external_id: d.external_id,
            last_error: d.last_error,
            updated_at: d.updated_at,
        })
        .collect())
}

fn filtered(
    mut query: sea_orm::Select<delivery::Entity>,
    filter: &DeliveryFilter,
) -> sea_orm::Select<delivery::Entity> {
    if let Some(state) = filter.state {
        query = query.filter(delivery::Column::State.eq(state.as_str()));
    }
    if let Some(channel) = filter.channel {
        query = query.filter(delivery::Column::Channel.eq(channel.as_str()));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(delivery::Column::Kind.eq(kind.as_str()));
    }
    query
}

pub async fn item_deliveries(
    hub: &Hub,
    caller: &Caller,
    item_id: &str,
    filter: DeliveryFilter,
) -> Result<ItemDeliveries> {
    crate::workflow::load_visible(&hub.db, caller, item_id, false).await?;
    let page = page_of(&filter)?;
    let rows = filtered(
        delivery::Entity::find().filter(delivery::Column::ItemId.eq(item_id)),
        &filter,
    )
    .order_by_asc(delivery::Column::Id)
    .offset(page.offset)
    .limit(page.limit)
    .all(&hub.db)
    .await?;
    Ok(ItemDeliveries {
        item_id: item_id.to_owned(),
        summary: summary(&hub.db, item_id).await?,
        deliveries: with_target_names(hub, rows).await?,
    })
}

pub async fn list_deliveries(
    hub: &Hub,
    caller: &Caller,
    filter: DeliveryFilter,
) -> Result<Vec<DeliveryView>> {
    let scope = caller.scope(filter.area.as_deref())?;
    let page = page_of(&filter)?;
    let rows = filtered(
        delivery::Entity::find().filter(delivery::Column::AreaCode.starts_with(scope.as_str())),
        &filter,
    )
    .order_by_desc(delivery::Column::UpdatedAt)
    .offset(page.offset)
    .limit(page.limit)
    .all(&hub.db)
    .await?;
    with_target_names(hub, rows).await
}

/// A delivery an operator acts on, loaded under lock with its item, if the caller's area
/// holds the item or the target.
async fn load_for_operator(
    txn: &DatabaseTransaction,
    caller: &Caller,
    delivery_id: &str,
) -> Result<(delivery::Model, item::Model, DeliveryState)> {
    let row = delivery::Entity::find_by_id(delivery_id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(Error::NotFound("delivery"))?;
    let item = item::Entity::find_by_id(&row.item_id)
        .one(txn)
        .await?
        .ok_or(Error::NotFound("item"))?;
    let target_area = AreaCode::parse(&row.area_code).map_err(anyhow::Error::new)?;
    if !caller.sees(&target_area) && !item.area_code.starts_with(caller.area.as_str()) {
        return Err(Error::forbidden("that delivery is outside your area"));
    }
    let state = DeliveryState::parse(&row.state)
        .ok_or_else(|| anyhow::anyhow!("delivery {} has unknown state {}", row.id, row.state))?;
    Ok((row, item, state))
}

/// Moves one delivery to `to` with its counts and an audit entry `action`; `adjust` sets
/// whatever else the move changes.
async fn move_by_operator(
    txn: &DatabaseTransaction,
    hub: &Hub,
    caller: &Caller,
    (row, from, item_area): (delivery::Model, DeliveryState, &str),
    to: DeliveryState,
    action: &str,
    adjust: impl FnOnce(&mut delivery::ActiveModel),
) -> Result<delivery::Model> {
    let now = hub.clock.now();
    let mut counts = CountChanges::default();
    counts.moved(
        &row.item_id,
        &row.channel,
        &row.kind,
        from.as_str(),
        to.as_str(),
        1,
    );
    counts.apply(txn).await?;
    let mut active: delivery::ActiveModel = row.into();
    active.state = Set(to.as_str().to_owned());
    active.updated_at = Set(now);
    adjust(&mut active);
    let row = active.update(txn).await?;
    let detail = serde_json::json!({"from_state": from.as_str(), "item_id": row.item_id});
    let event = AuditEvent {
        actor: &caller.id,
        action,
        target_type: "delivery",
        target_id: &row.id,
        before_hash: None,
        after_hash: None,
        detail,
        area: Some(item_area),
    };
    audit::append(txn, now, event).await?;
    Ok(row)
}

/// Sends a failed or unconfirmed delivery again, touching nothing else.
pub async fn retry(hub: &Hub, caller: &Caller, delivery_id: &str) -> Result<DeliveryView> {
    if !matches!(caller.role, Role::Admin | Role::Publisher) {
        return Err(Error::forbidden(
            "only publishers and administrators retry deliveries",
        ));
    }
    let txn = begin_write(&hub.db).await?;
    let (row, item, state) = load_for_operator(&txn, caller, delivery_id).await?;
    if !matches!(state, DeliveryState::Failed | DeliveryState::Unconfirmed) {
        let message = format!(
            "only failed or unconfirmed deliveries are retried; this one is {}",
            state.as_str()
        );
        return Err(Error::conflict("not_retryable", message));
    }
    if row.kind == DeliveryKind::Publish.as_str()
        && item.state != crate::domain::item::ItemState::Published.as_str()
    {
        return Err(Error::conflict(
            "item_not_published",
            "the item is no longer published",
        ));
    }
    let now = hub.clock.now();
    let row = move_by_operator(
        &txn,
        hub,
        caller,
        (row, state, &item.area_code),
        DeliveryState::Pending,
        "delivery.retry",
        |active| {
            // A fresh budget of attempts, due now.
            active.attempts = Set(0);
            active.next_attempt_at = Set(now);
            active.lease_owner = Set(None);
            active.lease_expires_at = Set(None);
        },
    )
    .await?;
    txn.commit().await?;
    with_target_names(hub, vec![row])
        .await?
        .into_iter()
        .next()
        .ok_or(Error::NotFound("delivery"))
}

/// Cancels a delivery not yet sent (a scheduled announcement called off); nothing else changes.
pub async fn cancel(hub: &Hub, caller: &Caller, delivery_id: &str) -> Result<DeliveryView> {
    if !matches!(caller.role, Role::Admin | Role::Publisher | Role::VillageOperator) {
        return Err(Error::forbidden("your role may not cancel deliveries"));
    }
    let txn = begin_write(&hub.db).await?;
    let (row, item, state) = load_for_operator(&txn, caller, delivery_id).await?;
    if !state.not_yet_sent() {
        let message = format!(
            "only deliveries not yet sent are cancelled; this one is {}",
            state.as_str()
        );
        return Err(Error::conflict("not_cancellable", message));
    }
    let row = move_by_operator(
        &txn,
        hub,
        caller,
        (row, state, &item.area_code),
        DeliveryState::Cancelled,
        "delivery.cancel",
        |_| {},
    )
    .await?;
    txn.commit().await?;
    with_target_names(hub, vec![row])
        .await?
        .into_iter()
        .next()
        .ok_or(Error::NotFound("delivery"))
}

/// A cell a spreadsheet would not run as a formula: text starting with `=`, `+`, `-`, `@` (or a
/// tab or carriage return, which some programs strip first) gets a leading apostrophe.
fn spreadsheet_safe(value: String) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value
    }
}

/// Every delivery of an item with each of its receipts: the record an auditor asks for.
pub async fn receipts_csv(hub: &Hub, caller: &Caller, item_id: &str) -> Result<String> {
    crate::workflow::load_visible(&hub.db, caller, item_id, false).await?;
    let deliveries = delivery::Entity::find()
        .filter(delivery::Column::ItemId.eq(item_id))
        .order_by_asc(delivery::Column::Id)
        .all(&hub.db)
        .await?;
    let views = with_target_names(hub, deliveries).await?;
    let mut receipts: BTreeMap<String, Vec<receipt::Model>> = BTreeMap::new();
    for chunk in views.chunks(ID_CHUNK) {
        let ids: Vec<String> = chunk.iter().map(|d| d.id.clone()).collect();
        for r in receipt::Entity::find()
            .filter(receipt::Column::DeliveryId.is_in(ids))
            .order_by_asc(receipt::Column::Id)
            .all(&hub.db)
            .await?
        {
            receipts.entry(r.delivery_id.clone()).or_default().push(r);
        }
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "delivery_id",
        "kind",
        "channel",
        "target_id",
        "target_name",
        "state",
        "receipt_source",
        "receipt_kind",
        "source_time",
        "received_at",
        "digest",
        "detail",
    ])
    .map_err(anyhow::Error::new)?;
    for d in &views {
        let none = Vec::new();
        let rows = receipts.get(&d.id).unwrap_or(&none);
        let receipt_rows: Vec<Option<&receipt::Model>> = if rows.is_empty() {
            vec![None]
        } else {
            rows.iter().map(Some).collect()
        };
        for r in receipt_rows {
            let fields = [
                d.id.clone(),
                d.kind.clone(),
                d.channel.clone(),
                d.target_id.clone(),
                d.target_name.clone(),
                d.state.clone(),
                r.map(|r| r.source.clone()).unwrap_or_default(),
                r.map(|r| r.kind.clone()).unwrap_or_default(),
                r.and_then(|r| r.source_time)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
                r.map(|r| r.received_at.to_rfc3339()).unwrap_or_default(),
                r.map(|r| r.digest.clone()).unwrap_or_default(),
                r.map(|r| r.detail.clone()).unwrap_or_default(),
            ];
            csv.write_record(fields.map(spreadsheet_safe))
                .map_err(anyhow::Error::new)?;
        }
    }
    let bytes = csv.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    String::from_utf8(bytes).map_err(|e| anyhow::Error::new(e).into())
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
