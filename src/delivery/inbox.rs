//! The receipt inbox: outcomes that arrive after a delivery was sent.
//!
//! - `intake` stores verified receipts, idempotently on (channel, target, dedup), and nothing
//!   else; its caller answers the channel only once it returns, so a crash at any point loses no
//!   receipt the channel was told we took. The HTTP callback route and (later) the MQTT driver
//!   both come through it.
//! - `try_apply_share` (`try_apply_receipts` for all of them) takes a batch of stored receipts
//!   and moves their deliveries through `transition`, with the counts, in one transaction; each
//!   stays in the inbox, marked with the delivery it was applied to, as part of that delivery's
//!   record. The worker runs one loop per `ApplierShare`, side by side.
//! - `try_reconcile` asks the channel about `accepted` deliveries whose report is overdue, and
//!   puts its answer in the inbox like any other receipt.
//! - receipts that match no delivery are kept and listed for administrators (`unmatched`).

use futures::StreamExt;
use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use chrono::{DateTime, Utc};
use herald_channels::{ChannelKind, ChannelReceipt, Correlation, Dispatch, ReceiptStatus};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
    sea_query::{Expr, LockBehavior, LockType, OnConflict, Query},
};
use serde::{Deserialize, Serialize};

use super::{
    DeliveryKind, DeliveryState, backoff,
    counts::{CountChanges, CountedDeliveries},
    targets,
    transition::transition,
};
use crate::{
    accounts::Caller,
    domain::{ids::ItemId, page::Page, user::Role},
    error::{Error, Result},
    hub::Hub,
    store::{
        Binds, JsonRows, among, begin_write,
        due::Armed,
        entities::{callback_replay, delivery, delivery_confirmation, receipt_inbox, target},
        is_postgres,
    },
};

/// How long an `accepted` delivery waits for its report before the channel is asked, when the
/// adapter does not say. WeChat's `PUBLISHJOBFINISH` comes within minutes.
pub const DEFAULT_CONFIRM_WITHIN: Duration = Duration::from_secs(30 * 60);
/// How often the channel is asked before the delivery is left `unconfirmed` for an operator:
/// without a cap a channel that never knows would be asked forever.
pub const MAX_CONFIRM_ASKS: i32 = 5;
/// The waits between asks grow from this, doubling, up to `CONFIRM_ASK_CAP_SECONDS`.
const CONFIRM_ASK_BASE_SECONDS: u32 = 60;
const CONFIRM_ASK_CAP_SECONDS: u32 = 6 * 3600;
/// A receipt naming an external id no delivery has yet may have overtaken the worker's record
/// of it (a callback faster than our commit): it is looked at again every `RECHECK` until
/// `UNMATCHED_GRACE` after its arrival, and only then reported as unmatched.
pub const UNMATCHED_GRACE: Duration = Duration::from_secs(10 * 60);
const RECHECK: Duration = Duration::from_secs(15);
/// Receipts per apply transaction.
pub const APPLY_BATCH: u64 = 1000;
const RECONCILE_BATCH: u64 = 100;
/// Channels asked at once by one reconcile pass.
const RECONCILE_IN_FLIGHT: usize = 16;
/// Values per `IN (…)` list: well under both databases' bind-parameter limits.
const CHUNK: usize = 1000;

fn later(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1))
}

/// When a delivery `accepted` at `at` is to be confirmed by.
pub fn confirm_by(at: DateTime<Utc>, confirm_within: Option<Duration>) -> DateTime<Utc> {
    later(at, confirm_within.unwrap_or(DEFAULT_CONFIRM_WITHIN))
}

fn correlation_parts(correlation: &Correlation) -> (&'static str, &str) {
    match correlation {
        Correlation::ExternalId(id) => ("external_id", id),
        Correlation::Key(key) => ("key", key),
    }
}

/// Stores receipts of `channel` about deliveries to `target_id`, each once (a resend with the
/// same dedup is a no-op); returns how many were new. Commits before returning.
pub async fn intake(
    db: &DatabaseConnection,
    channel: ChannelKind,
    target_id: &str,
    receipts: &[ChannelReceipt],
    received_at: DateTime<Utc>,
) -> Result<u64> {
    let rows = receipts
        .iter()
        .map(|r| inbox_row(channel, target_id, r, received_at))
        .collect::<Result<Vec<_>>>()?;
    Ok(store_rows(db, rows, None).await?.unwrap_or(0))
}

/// Keeps a replay key this long: well past any channel's signature window (WeChat's 300 s),
/// after which the request is refused as stale anyway.
pub const REPLAY_KEYS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Stores a verified callback's receipts as `intake` does, together with its replay key (in
/// one transaction, so a request is refused again only once what it carried is stored).
/// `None`: the same request was taken before, and nothing is written.
pub async fn intake_callback(
    db: &DatabaseConnection,
    channel: ChannelKind,
    target_id: &str,
    verified: &herald_channels::Verified,
    received_at: DateTime<Utc>,
) -> Result<Option<u64>> {
    let rows = verified
        .receipts
        .iter()
        .map(|r| inbox_row(channel, target_id, r, received_at))
        .collect::<Result<Vec<_>>>()?;
    let replay = verified
        .replay_key
        .as_ref()
        .map(|key| callback_replay::ActiveModel {
            channel: Set(channel),
            target_id: Set(target_id.to_owned()),
            replay_key: Set(key.clone()),
            seen_at: Set(received_at),
        });
    store_rows(db, rows, replay).await
}

/// Forgets replay keys older than `REPLAY_KEYS_KEPT`; returns how many.
pub async fn prune_replay_keys(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<u64> {
    let cutoff = now - chrono::Duration::from_std(REPLAY_KEYS_KEPT).map_err(anyhow::Error::new)?;
    let pruned = callback_replay::Entity::delete_many()
        .filter(callback_replay::Column::SeenAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(pruned.rows_affected)
}

/// A receipt and whom it is from: what a device link hears, many devices at a time.
#[derive(Debug, Clone)]
pub struct InboundReceipt {
    pub channel: ChannelKind,
    pub target_id: String,
    pub receipt: ChannelReceipt,
}

/// Stores receipts from many targets in one write, each once, as `intake` does.
pub async fn intake_batch(
    db: &DatabaseConnection,
    receipts: &[InboundReceipt],
    received_at: DateTime<Utc>,
) -> Result<u64> {
    let rows = receipts
        .iter()
        .map(|r| inbox_row(r.channel, &r.target_id, &r.receipt, received_at))
        .collect::<Result<Vec<_>>>()?;
    Ok(store_rows(db, rows, None).await?.unwrap_or(0))
}

fn inbox_row(
    channel: ChannelKind,
    target_id: &str,
    r: &ChannelReceipt,
    received_at: DateTime<Utc>,
) -> Result<receipt_inbox::ActiveModel> {
    let (by, value) = correlation_parts(&r.correlation);
    let detail = serde_json::to_string(&r.status).map_err(anyhow::Error::new)?;
    Ok(receipt_inbox::ActiveModel {
        id: Default::default(),
        channel: Set(channel),
        target_id: Set(target_id.to_owned()),
        dedup: Set(r.dedup.clone()),
        correlation_by: Set(by.to_owned()),
        correlation: Set(value.to_owned()),
        status: Set(r.status.as_str().to_owned()),
        detail: Set(detail),
        source_time: Set(r.source_time.map(crate::store::store_time)),
        raw: Set(r.raw.to_string()),
        received_at: Set(received_at),
        due_at: Set(received_at),
        applied_at: Set(None),
        outcome: Set(None),
        delivery_id: Set(None),
        moved_to: Set(None),
    })
}

/// Inserts inbox rows in one transaction, skipping any already stored; returns how many were
/// new. With a `replay` key, that key is stored too, and `None` returned (nothing written)
/// when it was stored before.
async fn store_rows(
    db: &DatabaseConnection,
    rows: Vec<receipt_inbox::ActiveModel>,
    replay: Option<callback_replay::ActiveModel>,
) -> Result<Option<u64>> {
    if rows.is_empty() && replay.is_none() {
        return Ok(Some(0));
    }
    let txn = begin_write(db).await?;
    if let Some(replay) = replay {
        let taken = callback_replay::Entity::insert(replay)
            .on_conflict(
                OnConflict::columns([
                    callback_replay::Column::Channel,
                    callback_replay::Column::TargetId,
                    callback_replay::Column::ReplayKey,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        if taken == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
    }
    let mut inserted = 0;
    for chunk in rows.chunks(CHUNK / 4) {
        inserted += receipt_inbox::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    receipt_inbox::Column::Channel,
                    receipt_inbox::Column::TargetId,
                    receipt_inbox::Column::Dedup,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(Some(inserted))
}

/// (channel, target, correlation kind, correlation value): what a receipt names.
type Named = (String, String, &'static str, String);

/// What the apply step reads of a delivery: only these columns, since a batch reads a
/// thousand of them. Read as one JSON text (`JsonRows`), in `NAMED_COLUMNS` order.
#[derive(Debug, Clone, Deserialize)]
struct NamedDelivery {
    id: String,
    item_id: ItemId,
    channel: ChannelKind,
    target_id: String,
    kind: DeliveryKind,
    state: DeliveryState,
    external_id: Option<String>,
    idempotency_key: String,
}

/// The columns of `deliveries` that `NamedDelivery` reads, in its fields' order.
const NAMED_COLUMNS: [&str; 8] = [
    "id",
    "item_id",
    "channel",
    "target_id",
    "kind",
    "state",
    "external_id",
    "idempotency_key",
];

impl NamedDelivery {
    /// The deliveries that meet `condition`, in `order_by` order.
    async fn read(
        txn: &DatabaseTransaction,
        condition: sea_orm::Condition,
        order_by: delivery::Column,
    ) -> Result<Vec<Self>> {
        let json = JsonRows::new(txn.get_database_backend());
        let statement = json.select(
            delivery::Entity,
            &json.array(NAMED_COLUMNS),
            sea_orm::IdenStatic::as_str(&order_by),
            condition,
        );
        Ok(JsonRows::read(txn, statement).await?)
    }

    /// What a receipt naming this delivery by `by` (its `value`) names.
    fn named_by(&self, by: &'static str, value: String) -> Named {
        (
            self.channel.as_str().to_owned(),
            self.target_id.clone(),
            by,
            value,
        )
    }
}

/// What the apply step reads of a stored receipt: not its raw payload, which stays for the
/// record and the unmatched list. Read as one JSON text (`JsonRows`), in `COLUMNS` order.
#[derive(Deserialize)]
struct PendingReceipt {
    id: i64,
    channel: ChannelKind,
    target_id: String,
    correlation_by: String,
    correlation: String,
    detail: String,
    received_at: DateTime<Utc>,
}

impl PendingReceipt {
    const COLUMNS: [&str; 7] = [
        "id",
        "channel",
        "target_id",
        "correlation_by",
        "correlation",
        "detail",
        "received_at",
    ];

    /// Up to `limit` receipts of `share` due at `now`, oldest first. On PostgreSQL they are
    /// locked, and those another instance holds are passed over.
    async fn take(
        txn: &DatabaseTransaction,
        share: ApplierShare,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Self>> {
        let backend = txn.get_database_backend();
        let json = JsonRows::new(backend);
        let mut binds = Binds::new(backend);
        let due = binds.add(now);
        let in_share = if share.of > 1 {
            // Only PostgreSQL runs several loops (`receipt_appliers`), and has `hashtext`.
            format!(
                "AND (hashtext(target_id) & 2147483647) % {} = {}",
                binds.add(share.of as i32),
                binds.add(share.index as i32)
            )
        } else {
            String::new()
        };
        let limit = binds.add(i64::try_from(limit).unwrap_or(i64::MAX));
        // Two instances apply different receipts side by side.
        let lock = if is_postgres(txn) {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let rows = json.aggregate(&json.array(Self::COLUMNS), "due_at, id");
        let sql = format!(
            "SELECT {rows} FROM (SELECT {}, due_at FROM receipt_inbox \
               WHERE applied_at IS NULL AND due_at <= {due} {in_share} \
               ORDER BY due_at, id LIMIT {limit} {lock}) AS pending",
            Self::COLUMNS.join(", ")
        );
        Ok(JsonRows::read(txn, binds.statement(sql)).await?)
    }
}

/// Brings forward the receipts of `channel` put off (`RECHECK`) because they named one of
/// `external_ids` before the worker's record of it: called in the transaction of the record
/// that writes those ids, so once it commits they apply at once, not up to `RECHECK` later.
/// (With the appliers woken by each stored receipt, a device's acks almost always overtake
/// the record of the command they answer.) Returns how many it brought forward.
pub(super) async fn due_again(
    txn: &DatabaseTransaction,
    channel: ChannelKind,
    external_ids: &[&str],
    now: DateTime<Utc>,
) -> Result<u64> {
    use receipt_inbox::Column as R;
    if external_ids.is_empty() {
        return Ok(0);
    }
    let brought = receipt_inbox::Entity::update_many()
        .col_expr(R::DueAt, Expr::val(now))
        .filter(R::AppliedAt.is_null())
        .filter(R::DueAt.gt(now))
        .filter(R::Channel.eq(channel))
        .filter(R::CorrelationBy.eq("external_id"))
        .filter(among(
            txn.get_database_backend(),
            R::Correlation,
            external_ids.iter().copied(),
        ))
        .exec(txn)
        .await?;
    Ok(brought.rows_affected)
}

/// The deliveries the receipts name. Not locked: each move is an UPDATE guarded by the state
/// read here, so a delivery another transaction moved meanwhile fails the batch, which rolls
/// back whole and is applied again on the next pass (cheaper than locking every row read, and
/// conflicts are rare: a worker's record and a receipt for the same delivery at once).
async fn named_deliveries(
    txn: &DatabaseTransaction,
    rows: &[PendingReceipt],
) -> Result<HashMap<Named, NamedDelivery>> {
    let mut external: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut keys = Vec::new();
    for row in rows {
        if row.correlation_by == "key" {
            keys.push(row.correlation.clone());
        } else {
            external
                .entry(row.channel.as_str())
                .or_default()
                .push(row.correlation.clone());
        }
    }
    let backend = txn.get_database_backend();
    let mut found = HashMap::new();
    // Ordered by creation, so when two deliveries share an external id the newer is named.
    for (channel, ids) in external {
        let condition = sea_orm::Condition::all()
            .add(delivery::Column::Channel.eq(channel))
            .add(among(
                backend,
                delivery::Column::ExternalId,
                ids.iter().map(String::as_str),
            ));
        for d in NamedDelivery::read(txn, condition, delivery::Column::CreatedAt).await? {
            let id = d.external_id.clone().unwrap_or_default();
            found.insert(d.named_by("external_id", id), d);
        }
    }
    let condition = sea_orm::Condition::all().add(among(
        backend,
        delivery::Column::IdempotencyKey,
        keys.iter().map(String::as_str),
    ));
    for d in NamedDelivery::read(txn, condition, delivery::Column::Id).await? {
        let key = d.idempotency_key.clone();
        found.insert(d.named_by("key", key), d);
    }
    Ok(found)
}

/// What became of one stored receipt.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// It moved its delivery.
    Applied,
    /// Its delivery was already there or further (a resend, a reordered report).
    Unchanged,
    /// No delivery of that channel and target carries what it names.
    Unmatched,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Unmatched => "unmatched",
        }
    }
}

/// Applies up to `limit` stored receipts that are due, in one transaction: each delivery moves
/// at most as `transition` allows, its counts move with it, and each inbox row is marked with
/// its outcome and the delivery it names (which makes it part of that delivery's record). Returns how many inbox rows it took.
pub async fn try_apply_receipts(hub: &Hub, limit: u64) -> Result<usize> {
    try_apply_share(hub, ApplierShare::ALL, limit).await
}

/// Which stored receipts one applying loop takes: those of the targets in its share. A
/// target's receipts all fall in one share, so within one hub instance one loop applies a
/// device's reports in order and two loops never move the same delivery at once. (Instances
/// run the same shares; across them SKIP LOCKED and the guarded moves hold, as before: a batch
/// that finds a delivery moved under it rolls back and is applied again.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplierShare {
    index: u32,
    of: u32,
}

impl ApplierShare {
    /// Every receipt: the one loop.
    pub const ALL: Self = Self { index: 0, of: 1 };

    /// The shares of this hub's applying loops (`delivery.receipt_appliers`; one on SQLite).
    pub fn of_hub(hub: &Hub) -> Vec<Self> {
        let of = hub.settings.delivery.receipt_appliers(is_postgres(&hub.db));
        (0..of).map(|index| Self { index, of }).collect()
    }
}

/// As `try_apply_receipts`, for the receipts of one share.
pub async fn try_apply_share(hub: &Hub, share: ApplierShare, limit: u64) -> Result<usize> {
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let rows = PendingReceipt::take(&txn, share, now, limit).await?;
    if rows.is_empty() {
        txn.commit().await?;
        return Ok(0);
    }
    let named = named_deliveries(&txn, &rows).await?;
    // Each delivery's state as it was and as the receipts so far leave it; a batch may hold
    // several receipts of one delivery (delivered, then played).
    let mut states: HashMap<String, (DeliveryState, DeliveryState)> = HashMap::new();
    let mut marks: Vec<Mark<'_>> = Vec::with_capacity(rows.len());
    let mut recheck = Vec::new();
    // Why a receipt failed a delivery (a media center's rejection reason), for its record.
    let mut failed_because: HashMap<String, String> = HashMap::new();
    for row in &rows {
        let key = (
            row.channel.as_str().to_owned(),
            row.target_id.clone(),
            if row.correlation_by == "key" {
                "key"
            } else {
                "external_id"
            },
            row.correlation.clone(),
        );
        // Written by `intake` from the same type; should a row ever not read back, it is set
        // aside (listed as unmatched) rather than holding up every batch after it.
        let status = match serde_json::from_str::<ReceiptStatus>(&row.detail) {
            Ok(status) => status,
            Err(e) => {
                tracing::error!(receipt = row.id, error = %e, "stored receipt does not read back; set aside");
                marks.push(Mark::unmatched(row.id));
                continue;
            }
        };
        // A delivery still `sending` carries the external id of an earlier attempt (this
        // attempt's id is written when the worker records it): a report naming that id is
        // about the earlier attempt and must not settle this one. Like a report that overtook
        // its record, it waits; if the new attempt brings a new id, it ends unmatched.
        let named_delivery = named
            .get(&key)
            .filter(|d| row.correlation_by == "key" || d.state != DeliveryState::Sending);
        let Some(d) = named_delivery else {
            if now < later(row.received_at, UNMATCHED_GRACE) && row.correlation_by != "key" {
                recheck.push(row.id);
            } else {
                marks.push(Mark::unmatched(row.id));
            }
            continue;
        };
        let entry = states.entry(d.id.clone()).or_insert((d.state, d.state));
        let moved = transition(entry.1, d.kind, &status);
        if let Some(to) = moved {
            entry.1 = to;
            if let ReceiptStatus::Failed { code, message, .. } = &status {
                failed_because.insert(d.id.clone(), format!("{code}: {message}"));
            }
        }
        let outcome = if moved.is_some() {
            Outcome::Applied
        } else {
            Outcome::Unchanged
        };
        marks.push(Mark {
            id: row.id,
            outcome,
            delivery_id: Some(d.id.as_str()),
            moved_to: moved,
        });
    }

    // Deliveries that moved: one guarded UPDATE per (from, to) pair.
    let by_id: HashMap<&str, &NamedDelivery> = named.values().map(|d| (d.id.as_str(), d)).collect();
    let backend = txn.get_database_backend();
    let mut counts = CountChanges::default();
    let mut moves: BTreeMap<(DeliveryState, DeliveryState), Vec<String>> = BTreeMap::new();
    for (id, (from, to)) in &states {
        if from == to {
            continue;
        }
        let d = by_id
            .get(id.as_str())
            .ok_or_else(|| anyhow::anyhow!("delivery {id} vanished"))?;
        let counted = CountedDeliveries {
            item_id: d.item_id.clone(),
            channel: d.channel,
            kind: d.kind,
        };
        counts.moved(&counted, *from, *to, 1);
        moves.entry((*from, *to)).or_default().push(id.clone());
    }
    for ((from, to), mut ids) in moves {
        // In id order within each move, which makes deadlocks rarer, not impossible (moves of
        // different kinds run one after another): a deadlocked batch rolls back and is applied
        // again, and the worker's record retries.
        ids.sort_unstable();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let changed = delivery::Entity::update_many()
            .col_expr(delivery::Column::State, Expr::value(to))
            .col_expr(delivery::Column::UpdatedAt, Expr::value(now))
            // A receipt that overtook the worker's record ends its lease: the record, when
            // it comes, finds the row no longer `sending` and leaves it be.
            .col_expr(delivery::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(
                delivery::Column::LeaseExpiresAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(among(backend, delivery::Column::Id, ids.iter().copied()))
            .filter(delivery::Column::State.eq(from))
            .exec(&txn)
            .await?
            .rows_affected;
        if changed != ids.len() as u64 {
            // Another transaction moved some since they were read: nothing of this batch
            // is kept (the counts stay true) and the next pass applies it afresh.
            return Err(anyhow::anyhow!(
                "{} of {} deliveries left {} while their receipts were applied; applying again",
                ids.len() as u64 - changed,
                ids.len(),
                from.as_str()
            )
            .into());
        }
        if from == DeliveryState::Sending || from.not_yet_sent() {
            // Overtaken (its lease ends here), or a retry a late report made needless:
            // either way the worker has nothing more to do for it.
            super::queue::dequeue(&txn, &ids).await?;
        }
        if to == DeliveryState::Accepted {
            // Accepted by a receipt (a device's acknowledgement that overtook the worker's
            // record): it gets a confirm-by time too, or nothing would ever ask about it.
            super::queue::await_report(&txn, &ids, later(now, DEFAULT_CONFIRM_WITHIN)).await?;
        } else if matches!(from, DeliveryState::Accepted | DeliveryState::Unconfirmed) {
            // Settled: nothing left to confirm.
            super::queue::report_settled(&txn, &ids).await?;
        }
    }

    // Failures are few (a rejection, a device's refusal): one UPDATE each, for those the batch
    // leaves failed.
    for (id, error) in failed_because {
        if states
            .get(&id)
            .is_some_and(|(_, to)| *to == DeliveryState::Failed)
        {
            delivery::Entity::update_many()
                .col_expr(delivery::Column::LastError, Expr::value(error))
                .filter(delivery::Column::Id.eq(id))
                .exec(&txn)
                .await?;
        }
    }
    // The applied (and unchanged) rows become part of their deliveries' record: one UPDATE
    // marks each with its outcome and delivery.
    mark_applied(&txn, now, &marks).await?;
    for chunk in recheck.chunks(CHUNK) {
        receipt_inbox::Entity::update_many()
            .col_expr(receipt_inbox::Column::DueAt, Expr::value(later(now, RECHECK)))
            .filter(receipt_inbox::Column::Id.is_in(chunk.to_vec()))
            .exec(&txn)
            .await?;
    }
    counts.apply(&txn).await?;
    txn.commit().await?;
    Ok(rows.len())
}

/// What an inbox row is marked with once looked at: its outcome, the delivery it was applied
/// to and the state it moved that delivery to (for the record an auditor reads).
struct Mark<'a> {
    id: i64,
    outcome: Outcome,
    delivery_id: Option<&'a str>,
    moved_to: Option<DeliveryState>,
}

impl Mark<'_> {
    fn unmatched(id: i64) -> Self {
        Self {
            id,
            outcome: Outcome::Unmatched,
            delivery_id: None,
            moved_to: None,
        }
    }
}

/// Marks inbox rows applied, each with its own outcome, delivery and move: one statement over
/// the marks as one JSON array (UPDATE … FROM, on both databases) rather than one per row.
async fn mark_applied(txn: &DatabaseTransaction, now: DateTime<Utc>, marks: &[Mark<'_>]) -> Result<()> {
    // One JSON value rather than four binds a row: PostgreSQL planned a VALUES list of 1,000
    // rows anew for every batch.
    let rows: Vec<serde_json::Value> = marks
        .iter()
        .map(|mark| {
            serde_json::json!([
                mark.id,
                mark.outcome.as_str(),
                mark.delivery_id,
                mark.moved_to.map(DeliveryState::as_str)
            ])
        })
        .collect();
    let backend = txn.get_database_backend();
    let mut binds = Binds::new(backend);
    let rows = binds.add(serde_json::Value::from(rows).to_string());
    let unpacked = match backend {
        sea_orm::DbBackend::Postgres => format!(
            "SELECT (value->>0)::bigint AS id, value->>1 AS outcome, value->>2 AS delivery_id, \
               value->>3 AS moved_to FROM json_array_elements({rows}::json)"
        ),
        _ => format!(
            "SELECT value->>0 AS id, value->>1 AS outcome, value->>2 AS delivery_id, \
               value->>3 AS moved_to FROM json_each({rows})"
        ),
    };
    let sql = format!(
        "WITH marks AS ({unpacked}) \
         UPDATE receipt_inbox SET applied_at = {}, outcome = marks.outcome, \
           delivery_id = marks.delivery_id, moved_to = marks.moved_to \
         FROM marks WHERE receipt_inbox.id = marks.id",
        binds.add(now),
    );
    txn.execute_raw(binds.statement(sql)).await?;
    Ok(())
}

/// Asks the channels about up to `limit` `accepted` deliveries past their confirm-by time.
/// Each is first rescheduled (so it is asked once, by one instance, however long the channel
/// takes), then asked under the channel's deadline; an answer goes into the inbox as a receipt
/// correlated by key, applied like any other. Returns how many were asked.
pub async fn try_reconcile(hub: &Hub, limit: u64) -> Result<usize> {
    let now = hub.clock.now();
    let postgres = is_postgres(&hub.db);
    let txn = begin_write(&hub.db).await?;
    let mut due = delivery_confirmation::Entity::find()
        .filter(delivery_confirmation::Column::ConfirmBy.lte(now))
        .order_by_asc(delivery_confirmation::Column::ConfirmBy)
        .order_by_asc(delivery_confirmation::Column::DeliveryId)
        .limit(limit);
    if postgres {
        due = due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let watched = due.all(&txn).await?;
    let ids: Vec<&str> = watched.iter().map(|w| w.delivery_id.as_str()).collect();
    let mut deliveries: HashMap<String, delivery::Model> = delivery::Entity::find()
        .filter(delivery::Column::Id.is_in(ids))
        .all(&txn)
        .await?
        .into_iter()
        .map(|d| (d.id.to_string(), d))
        .collect();
    let mut rows = Vec::with_capacity(watched.len());
    let mut moved_on = Vec::new();
    for watch in watched {
        let Some(row) = deliveries
            .remove(watch.delivery_id.as_str())
            .filter(|d| matches!(d.state, DeliveryState::Accepted | DeliveryState::Unconfirmed))
        else {
            moved_on.push(watch.delivery_id);
            continue;
        };
        let asks = watch.asks.saturating_add(1);
        let wait = backoff::backoff(
            u32::try_from(asks).unwrap_or(1),
            CONFIRM_ASK_BASE_SECONDS,
            CONFIRM_ASK_CAP_SECONDS,
        );
        delivery_confirmation::Entity::update_many()
            .col_expr(delivery_confirmation::Column::Asks, Expr::value(asks))
            .col_expr(
                delivery_confirmation::Column::ConfirmBy,
                Expr::value(later(now, wait)),
            )
            .filter(delivery_confirmation::Column::DeliveryId.eq(watch.delivery_id.as_str()))
            .exec(&txn)
            .await?;
        rows.push((row, asks));
    }
    // Left behind by a delivery that moved on: nothing to ask.
    let moved_on: Vec<&str> = moved_on.iter().map(|id| id.as_str()).collect();
    super::queue::report_settled(&txn, &moved_on).await?;
    txn.commit().await?;
    if rows.is_empty() {
        return Ok(0);
    }

    let target_ids: Vec<&str> = rows.iter().map(|(r, _)| r.target_id.as_str()).collect();
    let targets = targets::TargetRefs::load(hub, &target_ids).await?;
    let asked = rows.len();
    // Asked side by side, so one unreachable channel costs its deadline once, not once a row;
    // a row that cannot be asked is logged and left to its next time, the others go on.
    let asks: Vec<_> = rows.iter().map(|(row, asks)| {
        let targets = &targets;
        async move {
            if let Err(e) = reconcile_one(hub, row, *asks, targets).await {
                tracing::error!(delivery = %row.id, error.cause_chain = ?e, "asking the channel about an accepted delivery failed");
            }
        }
    }).collect();
    futures::stream::iter(asks)
        .buffer_unordered(RECONCILE_IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    Ok(asked)
}

/// Asks the channel about one overdue `accepted` delivery (already rescheduled and charged an
/// ask). An answer goes into the inbox; whether or not it moves the delivery, the delivery
/// keeps its next confirm-by time, so one the answer leaves `accepted` is asked again, and
/// given up on after `MAX_CONFIRM_ASKS`, rather than left unwatched.
async fn reconcile_one(
    hub: &Hub,
    row: &delivery::Model,
    asks: i32,
    targets: &targets::TargetRefs,
) -> Result<()> {
    let channel = hub.channels.get(row.channel).map(|c| (row.channel, c));
    // A target gone or whose secrets cannot be opened cannot be asked about: the delivery
    // takes the unanswered path.
    let target = targets.target_ref(row.target_id.as_str()).inspect_err(|e| {
        tracing::error!(delivery = %row.id, error.cause_chain = ?e, "the delivery's target cannot be read");
    });
    let answer = match (channel, target) {
        (Some((kind, channel)), Ok(target)) => {
            match super::state::decode_checkpoint(row.checkpoint.as_deref()) {
                Ok(checkpoint) => {
                    let dispatch = Dispatch {
                        target: &target,
                        idempotency_key: &row.idempotency_key,
                        checkpoint: checkpoint.as_ref(),
                    };
                    let deadline = hub.settings.delivery.limits_for(kind).attempt_deadline;
                    let asked = async {
                        match (row.state, row.external_id.as_deref()) {
                            (DeliveryState::Accepted, Some(external_id)) => {
                                channel.reconcile(&dispatch, external_id).await
                            }
                            (DeliveryState::Accepted, None) => None,
                            // Unconfirmed: the last attempt named nothing to ask by (an id it
                            // carries is an earlier attempt's), so the channel looks for it.
                            _ => match channel.find_lost(&dispatch).await {
                                Some(found) => {
                                    name_found(hub, row, &found.external_id).await.ok()?;
                                    Some(found.status)
                                }
                                None => None,
                            },
                        }
                    };
                    tokio::time::timeout(deadline, asked)
                        .await
                        .ok()
                        .flatten()
                        .map(|status| (kind, status))
                }
                // Unreadable, it cannot be asked about; counted as unanswered, so the delivery
                // is given up to an operator after its asks instead of rescheduled for ever.
                Err(e) => {
                    tracing::error!(delivery = %row.id, error.cause_chain = ?e, "stored checkpoint does not decode");
                    None
                }
            }
        }
        _ => None,
    };
    match answer {
        // An unconfirmed delivery found still under way waits for its report, as accepted.
        Some((kind, status))
            if status != ReceiptStatus::Accepted || row.state == DeliveryState::Unconfirmed =>
        {
            let receipt = ChannelReceipt {
                correlation: Correlation::Key(row.idempotency_key.clone()),
                raw: serde_json::json!({"reconciled": true, "ask": asks, "external_id": row.external_id}),
                // Asks count afresh after a retry: the row's last change tells the rounds apart.
                dedup: format!(
                    "reconcile:{}:{}:{asks}",
                    row.id,
                    row.updated_at.timestamp_micros()
                ),
                source_time: None,
                status,
            };
            intake(&hub.db, kind, &row.target_id, &[receipt], hub.clock.now()).await?;
            hub.due.wake_appliers();
        }
        _ if asks >= MAX_CONFIRM_ASKS => give_up(hub, row, asks).await?,
        // Still unknown: asked again at the time set above.
        _ => {}
    }
    Ok(())
}

/// Keeps the id under which a channel found a lost send as its delivery's (replacing an
/// earlier attempt's), so the receipt that follows, a withdrawal and the record all name it.
/// Refused (an error) when another delivery to the same target already goes by that id: it
/// found something else's.
async fn name_found(hub: &Hub, row: &delivery::Model, external_id: &str) -> Result<()> {
    let taken = delivery::Entity::find()
        .filter(delivery::Column::TargetId.eq(row.target_id.as_str()))
        .filter(delivery::Column::ExternalId.eq(external_id))
        .filter(delivery::Column::Id.ne(row.id.as_str()))
        .count(&hub.db)
        .await?;
    if taken > 0 {
        return Err(anyhow::anyhow!("{external_id} is already another delivery's to this target").into());
    }
    delivery::Entity::update_many()
        .col_expr(delivery::Column::ExternalId, Expr::value(external_id))
        .filter(delivery::Column::Id.eq(row.id.as_str()))
        .filter(delivery::Column::State.eq(DeliveryState::Unconfirmed))
        .exec(&hub.db)
        .await?;
    Ok(())
}

/// After `MAX_CONFIRM_ASKS` unanswered asks an `accepted` delivery becomes `unconfirmed`: an
/// operator looks, and may retry (which resumes from its checkpoint).
async fn give_up(hub: &Hub, row: &delivery::Model, asks: i32) -> Result<()> {
    let txn = begin_write(&hub.db).await?;
    let changed = delivery::Entity::update_many()
        .col_expr(delivery::Column::State, Expr::value(DeliveryState::Unconfirmed))
        .col_expr(
            delivery::Column::LastError,
            Expr::value(format!(
                "accepted, but no report came and the channel could not say after {asks} asks"
            )),
        )
        .col_expr(delivery::Column::UpdatedAt, Expr::value(hub.clock.now()))
        .filter(delivery::Column::Id.eq(row.id.as_str()))
        .filter(delivery::Column::State.eq(DeliveryState::Accepted))
        .exec(&txn)
        .await?
        .rows_affected;
    super::queue::report_settled(&txn, &[row.id.as_str()]).await?;
    if changed == 1 {
        let mut counts = CountChanges::default();
        counts.moved(
            &CountedDeliveries::of(row),
            DeliveryState::Accepted,
            DeliveryState::Unconfirmed,
            1,
        );
        counts.apply(&txn).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Applies receipts, reconciles overdue deliveries and takes down what corrections replaced,
/// until the process ends.
pub async fn run_until_stopped(hub: &Hub, worker_id: &str) {
    // Apart: asking a slow channel about its overdue deliveries never holds up applying the
    // receipts every other channel sends.
    let appliers = ApplierShare::of_hub(hub).into_iter().map(|share| {
        let receipts_stored = || Some(hub.due.armed_appliers());
        run_step_until_stopped(hub, worker_id, "applying receipts", receipts_stored, move || {
            try_apply_share(hub, share, APPLY_BATCH)
        })
    });
    // These look for what time brings (a confirm-by time passed, a correction's delivery
    // settled), not for a commit worth waking them for: the poll paces them.
    let polled = || None;
    futures::future::join3(
        futures::future::join_all(appliers),
        run_step_until_stopped(hub, worker_id, "reconciling accepted deliveries", polled, || {
            try_reconcile(hub, RECONCILE_BATCH)
        }),
        run_step_until_stopped(hub, worker_id, "removing corrected versions", polled, || {
            super::try_remove_superseded(hub, RECONCILE_BATCH)
        }),
    )
    .await;
}

/// `run_passes` for one of the inbox's steps; `arm` is its wake-up, if any.
async fn run_step_until_stopped<'a, F, Fut>(
    hub: &'a Hub,
    worker_id: &str,
    what: &str,
    arm: impl Fn() -> Option<Armed<'a>>,
    step: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    crate::store::due::run_passes(
        Duration::from_millis(hub.settings.delivery.poll_interval_ms),
        arm,
        step,
        |e| tracing::error!(worker = worker_id, error.cause_chain = ?e, "{what} failed; retrying"),
    )
    .await;
}

/// A stored receipt, as administrators see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InboxReceiptView {
    pub id: i64,
    pub channel: ChannelKind,
    pub target_id: String,
    pub dedup: String,
    /// `external_id` or `key`.
    pub correlation_by: String,
    pub correlation: String,
    pub status: String,
    pub source_time: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub applied_at: Option<DateTime<Utc>>,
    /// `applied`, `unchanged` or `unmatched`; none while it waits.
    pub outcome: Option<String>,
    /// The payload as the channel sent it.
    #[schema(value_type = Object)]
    pub raw: serde_json::Value,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UnmatchedQuery {
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// Receipts that named no delivery (after the grace period), newest first: kept, never
/// dropped, so an administrator sees a misconfigured target or a channel reporting on content
/// Herald did not send. Only those of targets within the administrator's area.
pub async fn unmatched(hub: &Hub, caller: &Caller, query: UnmatchedQuery) -> Result<Vec<InboxReceiptView>> {
    if caller.role != Role::Admin {
        return Err(Error::forbidden("only administrators read unmatched receipts"));
    }
    let page = Page::parse(query.limit, query.offset, 100, 500)?;
    let targets_in_area = Query::select()
        .column(target::Column::Id)
        .from(target::Entity)
        .and_where(target::Column::AreaCode.starts_with(caller.area.as_str()))
        .to_owned();
    let rows = receipt_inbox::Entity::find()
        .filter(receipt_inbox::Column::Outcome.eq(Outcome::Unmatched.as_str()))
        .filter(receipt_inbox::Column::TargetId.in_subquery(targets_in_area))
        .order_by_desc(receipt_inbox::Column::Id)
        .offset(page.offset)
        .limit(page.limit)
        .all(&hub.db)
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok(InboxReceiptView {
                raw: serde_json::from_str(&r.raw).map_err(anyhow::Error::new)?,
                id: r.id,
                channel: r.channel,
                target_id: r.target_id,
                dedup: r.dedup,
                correlation_by: r.correlation_by,
                correlation: r.correlation,
                status: r.status,
                source_time: r.source_time,
                received_at: r.received_at,
                applied_at: r.applied_at,
                outcome: r.outcome,
            })
        })
        .collect()
}
