//! The transactional outbox: what a publication or a withdrawal writes, inside the
//! transaction that publishes or withdraws the item, for the worker to send.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use herald_channels::{ChannelKind, CorrectionStyle, PublishedItem};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QuerySelect, Set,
    sea_query::{BinOper, CaseStatement, Expr, ExprTrait, IntoColumnRef, Query, SelectStatement},
};

use super::{
    counts::{CountChanges, CountedDeliveries},
    queue,
    state::{DeliveryKind, DeliveryState, priority_of},
    targets,
};
use crate::{
    domain::{area::AreaCode, delivery::RenditionFor, item::ItemContent},
    error::{Error, Result},
    hub::Hub,
    store::{
        JsonRows,
        entities::{delivery, rendition, target},
        handoff::{Claimed, Handed, Promise},
    },
};

/// What channels receive of a stored version (number, content hash, content): the redacted
/// body for 此件删减后公开. The second pair is when it is (or would be) published and when it
/// expires; `db` the connection (a publishing transaction, for one) its attachments' facts are
/// read on.
pub async fn published_item(
    hub: &Hub,
    db: &impl ConnectionTrait,
    item_id: &str,
    (version, hash, content): (i32, &str, &ItemContent),
    (at, expires_at): (DateTime<Utc>, Option<DateTime<Utc>>),
) -> Result<PublishedItem> {
    // Names come from reference data, which may have retired an entry since the item was
    // written: the code still identifies it, so the item goes out with an empty name rather
    // than not at all.
    let catalog_name = hub
        .catalog
        .get(&content.catalog)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let area = AreaCode::parse(&content.area_code).map_err(anyhow::Error::new)?;
    let area_name = hub.areas.get(&area).map(|a| a.name.clone()).unwrap_or_default();
    let validity = content.validity.map(|v| v.label_zh().to_owned());
    let named: Vec<&str> = content.attachments.iter().map(|a| a.sha256.as_str()).collect();
    let facts = crate::attachments::facts(db, &named).await?;
    let mut attachments = Vec::with_capacity(content.attachments.len());
    for attachment in &content.attachments {
        let stored = facts
            .get(&attachment.sha256)
            .ok_or_else(|| anyhow::anyhow!("attachment {} is not stored", attachment.sha256))?;
        attachments.push(herald_channels::Attachment {
            sha256: attachment.sha256.clone(),
            filename: attachment.filename.clone(),
            content_type: stored.content_type.clone(),
            size: u64::try_from(stored.size).map_err(anyhow::Error::new)?,
            audio_duration_ms: stored
                .audio_duration_ms
                .map(u64::try_from)
                .transpose()
                .map_err(anyhow::Error::new)?,
        });
    }
    Ok(PublishedItem {
        item_id: item_id.to_owned(),
        version,
        content_hash: hash.to_owned(),
        title: content.title.clone(),
        summary: content.summary.clone(),
        body_html: content.public_body().to_owned(),
        annotation: annotation_unless_typed(content).to_owned(),
        index_no: content.index_no.clone(),
        topic: content.topic.clone(),
        issuers: content.issuers.clone(),
        written_date: content.written_date.to_string(),
        doc_no: content.doc_no.clone(),
        validity,
        genre: serde_json::to_value(content.genre)
            .map_err(anyhow::Error::new)?
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("genre {:?} has no wire name", content.genre))?
            .to_owned(),
        keywords: content.keywords.clone(),
        catalog_code: content.catalog.clone(),
        catalog_name,
        area_code: content.area_code.clone(),
        area_name,
        attachments,
        emergency: content.emergency,
        published_at: at.to_rfc3339(),
        expires_at: expires_at.map(|e| e.to_rfc3339()),
        correction: None,
    })
}

/// The 附注 the item closes with (（此件公开发布）…), unless the editor already typed it at the
/// end of the body: then it would be printed twice.
fn annotation_unless_typed(content: &ItemContent) -> &'static str {
    let annotation = content.disclosure.annotation();
    let core = annotation.trim_matches(['（', '）']);
    let text = herald_channels::portal::plain_text(content.public_body());
    // Only the annotation itself, in brackets either way, closing the body: not a sentence
    // that happens to end with its words (…同意此件公开发布。).
    let typed = text
        .trim_end_matches(|c: char| c.is_whitespace() || c == '。' || c == '.')
        .strip_suffix(['）', ')'])
        .and_then(|inner| inner.trim_end().strip_suffix(core))
        .is_some_and(|before| before.trim_end().ends_with(['（', '(']));
    if typed { "" } else { annotation }
}

/// The columns every delivery writer fills, in the order their SELECTs produce them.
const DELIVERY_COLUMNS: [delivery::Column; 20] = {
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
        C::SupersedesId,
    ]
};

/// Writes the deliveries `select` produces (one row per delivery, in `DELIVERY_COLUMNS`
/// order) without shipping them through the client.
pub(super) async fn insert_selected(txn: &DatabaseTransaction, select: SelectStatement) -> Result<()> {
    insert_columns(txn, DELIVERY_COLUMNS, select).await
}

async fn insert_columns(
    txn: &DatabaseTransaction,
    columns: impl IntoIterator<Item = delivery::Column>,
    select: SelectStatement,
) -> Result<()> {
    let mut insert = Query::insert();
    insert
        .into_table(delivery::Entity)
        .columns(columns)
        .select_from(select)
        .map_err(|e| anyhow::anyhow!("delivery insert: {e}"))?;
    txn.execute(&insert).await?;
    Ok(())
}

/// `prefix || column`, in SQL both databases speak. A delivery is (batch, target): its id and
/// its idempotency key are the batch's prefix and the target id.
pub(super) fn prefixed(prefix: String, column: impl IntoColumnRef) -> Expr {
    Expr::val(prefix).binary(BinOper::Custom("||"), Expr::col(column))
}

/// The id and idempotency key prefixes of a publication's (or a correction's) deliveries:
/// `{publication}:` and `herald-{publication}:`, each followed by the target id.
pub(super) fn delivery_prefixes(publication_id: &str) -> (String, String) {
    (format!("{publication_id}:"), format!("herald-{publication_id}:"))
}

/// When a publication's deliveries may go out (定时发布): not before `not_before`, and never
/// after `not_after`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedule {
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
}

/// A publication's renditions, one per channel, and what choosing among them takes.
pub(super) struct Renditions {
    /// Picks each delivery row's rendition by its channel.
    pub pick: CaseStatement,
    pub ids: Vec<String>,
    /// `n` pending publish deliveries per channel, for the counts.
    pub counts: CountChanges,
    pub written: BTreeMap<ChannelKind, usize>,
}

/// Renders `item` once per channel of `per_channel` (with how many deliveries each gets) and
/// stores the renditions under `publication_id`; `channel_column` is the column the rows being
/// written read their channel from.
pub(super) async fn store_renditions(
    hub: &Hub,
    txn: &DatabaseTransaction,
    publication_id: &str,
    item: &PublishedItem,
    per_channel: &[(ChannelKind, i64)],
    channel_column: impl IntoColumnRef + Clone,
    now: DateTime<Utc>,
) -> Result<Renditions> {
    let mut renditions = Renditions {
        pick: CaseStatement::new(),
        ids: Vec::with_capacity(per_channel.len()),
        counts: CountChanges::default(),
        written: BTreeMap::new(),
    };
    for (kind, n) in per_channel {
        let channel = hub
            .channels
            .get(*kind)
            .ok_or_else(|| anyhow::anyhow!("no adapter for {}", kind.as_str()))?;
        let rendered = channel.render(item).map_err(|e| Error::Refused {
            code: "unrenderable",
            field: None,
            message: format!("{}: {e}", kind.label_zh()),
        })?;
        let id = hub.clock.new_id().to_string();
        rendition::ActiveModel {
            id: Set(id.as_str().into()),
            publication_id: Set(publication_id.into()),
            channel: Set(RenditionFor::Channel(*kind)),
            payload: Set(rendered.payload.to_string()),
            created_at: Set(now),
        }
        .insert(txn)
        .await?;
        renditions.pick = renditions.pick.case(
            Expr::col(channel_column.clone()).eq(kind.as_str()),
            Expr::val(id.as_str()),
        );
        renditions.ids.push(id);
        let counted = CountedDeliveries {
            item_id: item.item_id.as_str().into(),
            channel: *kind,
            kind: DeliveryKind::Publish,
        };
        renditions.counts.add(&counted, DeliveryState::Pending, *n);
        renditions.written.insert(*kind, usize::try_from(*n).unwrap_or(0));
    }
    Ok(renditions)
}

/// What a publication wrote: how many deliveries per channel, and those it leased to this
/// process's idle claim loops, to hand over once the transaction commits
/// (`Enqueued::hand_over`). Dropped without it (the transaction failed), its promises to
/// the loops are withdrawn.
pub struct Enqueued<'a> {
    pub written: BTreeMap<ChannelKind, usize>,
    handed: Vec<(Promise<'a>, Handed)>,
}

impl Enqueued<'_> {
    /// Called once the publishing transaction has committed: hands the leased deliveries to
    /// their loops and wakes every channel written to.
    pub fn hand_over(self, hub: &Hub) {
        for (promise, handed) in self.handed {
            promise.keep(handed);
        }
        for &channel in self.written.keys() {
            hub.due.wake(channel);
        }
    }
}

/// Renders the item once per channel and writes one delivery per reached target: called
/// inside the publishing transaction, so the publication and every delivery commit together
/// or not at all. The rows are written by one INSERT … SELECT over the targets, so a publish
/// to 100,000 targets never ships 100,000 rows through the client.
///
/// A channel due now whose claim loop in this process waits idle gets its deliveries written
/// `sending`, under that worker's lease, and read back as the batch to hand over
/// (`store::handoff`): the first send needs no claim.
pub async fn enqueue_publication<'a>(
    hub: &'a Hub,
    txn: &DatabaseTransaction,
    publication_id: &str,
    item: &PublishedItem,
    (reach, schedule): (&targets::Reach, Schedule),
    now: DateTime<Utc>,
) -> Result<Enqueued<'a>> {
    let per_channel = reach.count_by_channel(txn).await?;
    if per_channel.is_empty() {
        return Ok(Enqueued {
            written: BTreeMap::new(),
            handed: Vec::new(),
        });
    }
    let first_attempt = schedule.not_before.map_or(now, |at| std::cmp::max(at, now));
    // A lease shorter than its margin leaves a handed batch no time to be sent in.
    let leases_last = hub.settings.delivery.lease_seconds > crate::config::LEASE_MARGIN_SECONDS;
    let mut leased: BTreeMap<ChannelKind, Promise<'a>> = if first_attempt > now || !leases_last {
        BTreeMap::new()
    } else {
        per_channel
            .iter()
            .filter_map(|&(kind, n)| {
                let batch_size = hub.settings.delivery.limits_for(kind).batch_size as usize;
                let promise =
                    hub.handoff
                        .promise(kind, usize::try_from(n).unwrap_or(usize::MAX), batch_size)?;
                Some((kind, promise))
            })
            .collect()
    };
    let Renditions {
        pick: rendition_of_channel,
        ids: renditions,
        mut counts,
        written,
    } = store_renditions(
        hub,
        txn,
        publication_id,
        item,
        &per_channel,
        (target::Entity, target::Column::Channel),
        now,
    )
    .await?;
    let target_id = (target::Entity, target::Column::Id);
    let channel = (target::Entity, target::Column::Channel);
    let lease_until = now + chrono::Duration::seconds(i64::from(hub.settings.delivery.lease_seconds));
    // Each leased channel's rows take `leased_value` of its promise, the others `otherwise`.
    let when_leased = |leased_value: &dyn Fn(&Promise<'a>) -> Expr, otherwise: Expr| -> Expr {
        if leased.is_empty() {
            return otherwise;
        }
        let mut case = CaseStatement::new();
        for (kind, promise) in &leased {
            case = case.case(Expr::col(channel).eq(kind.as_str()), leased_value(promise));
        }
        case.finally(otherwise).into()
    };
    let (id_prefix, key_prefix) = delivery_prefixes(publication_id);
    let mut select = Query::select();
    select
        .from(target::Entity)
        .expr(Expr::val(schedule.not_before))
        .expr(Expr::val(schedule.not_after))
        .expr(prefixed(id_prefix, target_id))
        .expr(Expr::val(publication_id))
        .expr(Expr::val(item.item_id.as_str()))
        .expr(Expr::val(item.version))
        .column(target_id)
        .column(channel)
        .column((target::Entity, target::Column::AreaCode))
        .expr(Expr::val(DeliveryKind::Publish))
        .expr(when_leased(
            &|_| Expr::val(DeliveryState::Sending),
            Expr::val(DeliveryState::Pending),
        ))
        .expr(Expr::val(priority_of(item.emergency)))
        // A leased delivery's first attempt is under way.
        .expr(when_leased(&|_| Expr::val(1i32), Expr::val(0i32)))
        .expr(Expr::val(first_attempt))
        .expr(rendition_of_channel)
        .expr(prefixed(key_prefix, target_id))
        .expr(Expr::val(Option::<String>::None))
        .expr(Expr::val(now))
        .expr(Expr::val(now))
        .expr(Expr::val(Option::<String>::None))
        .expr(when_leased(
            &|promise| Expr::val(promise.worker_id()),
            Expr::val(Option::<String>::None),
        ))
        .expr(when_leased(
            &|_| Expr::val(lease_until),
            Expr::val(Option::<DateTime<Utc>>::None),
        ))
        .cond_where(reach.condition());
    let columns = DELIVERY_COLUMNS
        .into_iter()
        .chain([delivery::Column::LeaseOwner, delivery::Column::LeaseExpiresAt]);
    insert_columns(txn, columns, select).await?;
    let rendition_ids: Vec<&str> = renditions.iter().map(String::as_str).collect();
    queue::enqueue_written(txn, &item.item_id, &rendition_ids).await?;
    let mut handed = Vec::with_capacity(leased.len());
    for ((kind, n), rendition_id) in per_channel.iter().zip(&renditions) {
        let Some(promise) = leased.remove(kind) else {
            continue;
        };
        let counted = CountedDeliveries {
            item_id: item.item_id.as_str().into(),
            channel: *kind,
            kind: DeliveryKind::Publish,
        };
        counts.moved(&counted, DeliveryState::Pending, DeliveryState::Sending, *n);
        let rows = leased_rows(txn, publication_id, item, (*kind, rendition_id), schedule).await?;
        let batch = Handed {
            worker_id: promise.worker_id().to_owned(),
            priority: priority_of(item.emergency),
            leased_at: now,
            lease_until,
            rows,
        };
        handed.push((promise, batch));
    }
    counts.apply(txn).await?;
    Ok(Enqueued { written, handed })
}

/// The deliveries of `item` a publication just wrote leased for `channel` (with its
/// rendition), as the batch a claim would have read: only their target ids are read back, the
/// rest is what the publication wrote.
async fn leased_rows(
    txn: &DatabaseTransaction,
    publication_id: &str,
    item: &PublishedItem,
    (channel, rendition_id): (ChannelKind, &str),
    schedule: Schedule,
) -> Result<Vec<Claimed>> {
    let json = JsonRows::new(txn.get_database_backend());
    let written = sea_orm::Condition::all()
        .add(delivery::Column::ItemId.eq(item.item_id.as_str()))
        .add(delivery::Column::Channel.eq(channel))
        .add(delivery::Column::RenditionId.eq(rendition_id));
    let target_ids: Vec<String> =
        JsonRows::read(txn, json.select(delivery::Entity, "target_id", "", written)).await?;
    let (id_prefix, key_prefix) = delivery_prefixes(publication_id);
    Ok(target_ids
        .into_iter()
        .map(|target_id| Claimed {
            id: format!("{id_prefix}{target_id}"),
            item_id: item.item_id.clone(),
            channel,
            kind: DeliveryKind::Publish,
            attempts: 1,
            idempotency_key: format!("{key_prefix}{target_id}"),
            target_id,
            rendition_id: rendition_id.to_owned(),
            not_after: schedule.not_after,
            withdraws_id: None,
            checkpoint: None,
        })
        .collect())
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
    let publishes = locked_publishes(txn, item_id).await?;
    let taken_down = withdrawn_ids(txn, item_id).await?;
    // After a correction, what stands on a target is the newest delivery that got there; an
    // older one it replaced in place needs no withdrawal of its own.
    let replaced_in_place: HashSet<&str> = publishes
        .iter()
        .filter(|d| d.state.reached_target() || d.state == DeliveryState::Sending)
        .filter(|d| correction_style(hub, d.channel) == CorrectionStyle::InPlace)
        .filter_map(|d| d.supersedes_id.as_deref())
        .collect();
    let standing: Vec<delivery::Model> = publishes
        .iter()
        .filter(|d| !taken_down.contains(d.id.as_str()) && !replaced_in_place.contains(d.id.as_str()))
        .cloned()
        .collect();
    let reached = cancel_unsent(hub, txn, standing).await?;
    insert_withdrawals(hub, txn, item_id, reason, priority_of(emergency), &reached).await
}

/// The item's publish deliveries, locked against a concurrent record or withdrawal.
pub(super) async fn locked_publishes(
    txn: &DatabaseTransaction,
    item_id: &str,
) -> Result<Vec<delivery::Model>> {
    Ok(delivery::Entity::find()
        .filter(delivery::Column::ItemId.eq(item_id))
        .filter(delivery::Column::Kind.eq(DeliveryKind::Publish))
        .lock_exclusive()
        .all(txn)
        .await?)
}

/// The item's deliveries a withdrawal already follows (or took down); one that failed, was
/// cancelled or ran out of time leaves its delivery to the next withdrawal.
pub(super) async fn withdrawn_ids(txn: &DatabaseTransaction, item_id: &str) -> Result<HashSet<String>> {
    let rows: Vec<Option<String>> = delivery::Entity::find()
        .select_only()
        .column(delivery::Column::WithdrawsId)
        .filter(delivery::Column::ItemId.eq(item_id))
        .filter(delivery::Column::Kind.eq(DeliveryKind::Withdraw))
        .filter(delivery::Column::State.is_not_in(DeliveryState::TAKEDOWN_ENDED))
        .into_tuple()
        .all(txn)
        .await?;
    Ok(rows.into_iter().flatten().collect())
}

pub(super) fn correction_style(hub: &Hub, channel: ChannelKind) -> CorrectionStyle {
    hub.channels
        .get(channel)
        .map_or(CorrectionStyle::InPlace, |adapter| adapter.correction_style())
}

/// Cancels those of `publishes` not yet sent; returns those that reached their target or may
/// have (to be followed by a withdrawal).
pub(super) async fn cancel_unsent(
    hub: &Hub,
    txn: &DatabaseTransaction,
    publishes: Vec<delivery::Model>,
) -> Result<Vec<delivery::Model>> {
    let now = hub.clock.now();
    let mut reached = Vec::new();
    let mut cancelled = CountChanges::default();
    let mut unqueued = Vec::new();
    for publish in publishes {
        let state = publish.state;
        // A delivery being sent right now may land: follow it with a withdrawal too.
        if state.reached_target() || state == DeliveryState::Sending {
            reached.push(publish);
        } else if state.not_yet_sent() {
            // A retrying delivery was sent before and failed, but an earlier attempt may yet
            // have landed (a late report can say so): its retry is cancelled and a withdrawal
            // follows it all the same, so nothing stays up unwatched.
            if state == DeliveryState::Retrying {
                reached.push(publish.clone());
            }
            cancelled.moved(
                &CountedDeliveries::of(&publish),
                state,
                DeliveryState::Cancelled,
                1,
            );
            unqueued.push(publish.id.clone());
            let mut active: delivery::ActiveModel = publish.into();
            active.state = Set(DeliveryState::Cancelled);
            active.updated_at = Set(now);
            active.update(txn).await?;
        }
    }
    cancelled.apply(txn).await?;
    let unqueued: Vec<&str> = unqueued.iter().map(|id| id.as_str()).collect();
    queue::dequeue(txn, &unqueued).await?;
    Ok(reached)
}

/// Writes one withdrawal, for `reason`, following each of `reached` (publish deliveries of
/// `item_id`, locked by the caller); returns how many.
pub(super) async fn insert_withdrawals(
    hub: &Hub,
    txn: &DatabaseTransaction,
    item_id: &str,
    reason: &str,
    priority: i32,
    reached: &[delivery::Model],
) -> Result<usize> {
    if reached.is_empty() {
        return Ok(0);
    }
    let now = hub.clock.now();
    let rendition_id = hub.clock.new_id().to_string();
    rendition::ActiveModel {
        id: Set(rendition_id.as_str().into()),
        publication_id: Set(format!("withdraw:{item_id}:{rendition_id}").into()),
        channel: Set(RenditionFor::Withdrawal),
        payload: Set(serde_json::json!({"reason": reason}).to_string()),
        created_at: Set(now),
    }
    .insert(txn)
    .await?;
    use delivery::Column as C;
    let mut select = Query::select();
    select
        .from(delivery::Entity)
        .expr(Expr::val(Option::<DateTime<Utc>>::None))
        .expr(Expr::val(Option::<DateTime<Utc>>::None))
        // A target may be followed by several withdrawals over time (a corrected WeChat
        // article, then the item): the followed delivery's id keeps their ids and keys apart.
        .expr(prefixed(format!("{rendition_id}:"), (delivery::Entity, C::Id)))
        .columns([
            C::PublicationId,
            C::ItemId,
            C::Version,
            C::TargetId,
            C::Channel,
            C::AreaCode,
        ])
        .expr(Expr::val(DeliveryKind::Withdraw))
        .expr(Expr::val(DeliveryState::Pending))
        .expr(Expr::val(priority))
        .expr(Expr::val(0i32))
        .expr(Expr::val(now))
        .expr(Expr::val(rendition_id.as_str()))
        .expr(prefixed(
            format!("herald-{rendition_id}:"),
            (delivery::Entity, C::Id),
        ))
        .column(C::Id)
        .expr(Expr::val(now))
        .expr(Expr::val(now))
        .expr(Expr::val(Option::<String>::None))
        .and_where(C::ItemId.eq(item_id))
        .and_where(C::Kind.eq(DeliveryKind::Publish))
        // By id: a retrying one was just cancelled, and its state no longer says it was reached.
        .and_where(crate::store::among(
            txn.get_database_backend(),
            (delivery::Entity, C::Id),
            reached.iter().map(|d| d.id.as_str()),
        ));
    insert_selected(txn, select).await?;
    queue::enqueue_written(txn, item_id, &[rendition_id.as_str()]).await?;
    let mut counts = CountChanges::default();
    for delivery in reached {
        let counted = CountedDeliveries {
            kind: DeliveryKind::Withdraw,
            ..CountedDeliveries::of(delivery)
        };
        counts.add(&counted, DeliveryState::Pending, 1);
    }
    counts.apply(txn).await?;
    Ok(reached.len())
}
