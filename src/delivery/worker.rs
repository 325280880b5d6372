//! The delivery worker: claim a channel's due deliveries under a lease, hand them to the
//! channel's adapter in batches (one per rendition, under the channel's deadline), record
//! every outcome of the batch in one transaction. Shaped `run_until_stopped` →
//! `try_execute_channel_batch` (or `try_execute_batch` for all channels at once), so tests
//! drive single steps with the hub's clock.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use herald_channels::{
    Channel, ChannelKind, DeliveryOutcome, Dispatch, Permanence, Rendition, WithdrawOutcome,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, Query},
};
use tokio::sync::Semaphore;

use super::{
    DeliveryKind, DeliveryState,
    counts::{CountChanges, CountedDeliveries},
    receipt_log::{OutcomeReceipt, record_outcome},
    targets::TargetRefs,
};
use crate::{
    error::Result,
    hub::Hub,
    store::{
        Binds, ClaimTurn, JsonRows, among, begin_write,
        entities::{delivery, delivery_confirmation, rendition},
        handoff::{CLAIMED_COLUMNS, Handed, Listener},
        is_postgres,
    },
};

pub use crate::store::handoff::Claimed;

/// In-flight bounds per channel and per target, owned by the worker that runs the batches.
#[derive(Default)]
pub struct InFlight {
    channels: Mutex<HashMap<String, Arc<Semaphore>>>,
    targets: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl InFlight {
    fn permit_source(map: &Mutex<HashMap<String, Arc<Semaphore>>>, key: &str, size: u32) -> Arc<Semaphore> {
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(size as usize)))
            .clone()
    }
}

/// Claims up to `limit` due deliveries for `worker_id`, emergency first, of one channel (or of
/// all): a first or further attempt whose time has come, or a delivery still `sending` under a
/// lease that lapsed (its worker died). On PostgreSQL queue rows locked by another instance
/// are skipped; on SQLite the claims of this process take turns (`store::LeaseWriter`). Either
/// way a row is leased only while it is still in the state the claim read.
///
/// The lease is kept on the delivery alone, so a claim writes its queue rows not at all: a
/// delivery under way stays due in the queue, and the claim passes over it while its lease
/// holds. That costs a claim a look at each delivery of its channel under way elsewhere (one
/// batch per other instance, at most) and saves rewriting every claimed queue row.
pub async fn claim(
    hub: &Hub,
    worker_id: &str,
    channel: Option<ChannelKind>,
    limit: u32,
) -> Result<Vec<Claimed>> {
    read_due(hub, channel, limit).await?.lease(worker_id).await
}

/// A claim's due rows, read, with the transaction that is to lease them open (and on SQLite
/// the claim's turn held).
struct DueRows {
    selected: Vec<(DeliveryState, Claimed)>,
    txn: sea_orm::DatabaseTransaction,
    _turn: ClaimTurn,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
}

/// Reads up to `limit` due deliveries (of `channel`, or of any), emergency first, and opens
/// the transaction that leases them.
async fn read_due(hub: &Hub, channel: Option<ChannelKind>, limit: u32) -> Result<DueRows> {
    let now = hub.clock.now();
    let lease_until = now + chrono::Duration::seconds(i64::from(hub.settings.delivery.lease_seconds));
    let backend = hub.db.get_database_backend();
    let mut binds = Binds::new(backend);
    let due = binds.add(now);
    // A `sending` row without a lease (none should be) counts as lapsed, never as held.
    let unleased = binds.add(now - chrono::Duration::seconds(1));
    let held_past = binds.add(now);
    let only_channel = match channel {
        Some(channel) => format!("AND delivery_queue.channel = {}", binds.add(channel.as_str())),
        None => String::new(),
    };
    let limit = binds.add(i64::from(limit));
    // What the worker reads of each delivery comes with the claim: one read of the rows (as
    // one JSON text), and the update that moves them returns nothing.
    let json = JsonRows::new(backend);
    let lock = if is_postgres(&hub.db) {
        "FOR UPDATE OF delivery_queue SKIP LOCKED"
    } else {
        ""
    };
    let claimed_columns = CLAIMED_COLUMNS.map(|c| format!("deliveries.{c}")).join(", ");
    let element = json.array([
        "claimable.state".to_owned(),
        json.array(CLAIMED_COLUMNS.map(|c| format!("claimable.{c}"))),
    ]);
    let rows = json.aggregate(
        &element,
        "claimable.queue_priority DESC, claimable.queue_due_at, claimable.id",
    );
    let sql = format!(
        "SELECT {rows} \
         FROM (SELECT {claimed_columns}, deliveries.state, \
                 delivery_queue.priority AS queue_priority, delivery_queue.due_at AS queue_due_at \
               FROM delivery_queue JOIN deliveries ON deliveries.id = delivery_queue.delivery_id \
               WHERE delivery_queue.due_at <= {due} \
                 AND NOT (deliveries.state = 'sending' AND COALESCE(deliveries.lease_expires_at, {unleased}) > {held_past}) {only_channel} \
               ORDER BY delivery_queue.priority DESC, delivery_queue.due_at, delivery_queue.delivery_id \
               LIMIT {limit} {lock}) AS claimable"
    );
    let (turn, txn, selected) = hub.leases.read_then_begin(binds.statement(sql)).await?;
    Ok(DueRows {
        selected,
        txn,
        _turn: turn,
        now,
        lease_until,
    })
}

impl DueRows {
    /// What the rows point at, for a `BatchContext` read while they are leased.
    fn pointers(&self) -> BatchPointers {
        BatchPointers::of(self.selected.iter().map(|(_, row)| row))
    }

    /// Leases the rows still in the state they were read in to `worker_id`, drops the queue
    /// rows of those that moved on, and commits; returns what it leased, in the claim's order.
    async fn lease(self, worker_id: &str) -> Result<Vec<Claimed>> {
        // The turn is bound, so it is held until this returns, past the commit.
        let DueRows {
            selected,
            txn,
            _turn,
            now,
            lease_until,
        } = self;
        let mut by_state: BTreeMap<DeliveryState, Vec<Claimed>> = BTreeMap::new();
        let mut order = Vec::new();
        let mut moved_on = Vec::new();
        for (state, mut claimed) in selected {
            order.push(claimed.id.clone());
            // Left out by the read: a `sending` row whose lease holds. So a `sending` one here
            // lapsed.
            if state.not_yet_sent() || state == DeliveryState::Sending {
                claimed.attempts += 1;
                by_state.entry(state).or_default().push(claimed);
            } else {
                moved_on.push(claimed.id);
            }
        }
        let moved_on: Vec<&str> = moved_on.iter().map(String::as_str).collect();
        super::queue::drop_moved_on(&txn, &moved_on).await?;
        let mut claimed = Vec::with_capacity(order.len());
        let mut counts = CountChanges::default();
        for (from, rows) in by_state {
            let moved = move_to_sending(&txn, (worker_id, lease_until, now), from, &rows).await?;
            for row in rows {
                if moved.holds(&row.id) {
                    let counted = CountedDeliveries {
                        item_id: row.item_id.as_str().into(),
                        channel: row.channel,
                        kind: row.kind,
                    };
                    counts.moved(&counted, from, DeliveryState::Sending, 1);
                    claimed.push(row);
                }
            }
        }
        counts.apply(&txn).await?;
        txn.commit().await?;
        // The claim's order, emergency first, is the batch's.
        let rank: HashMap<&str, usize> = order.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        claimed.sort_by_key(|row| rank.get(row.id.as_str()).copied());
        Ok(claimed)
    }
}

/// Which rows an update moved: all of them, as a rule, or those listed.
enum Moved {
    All,
    Only(HashSet<String>),
}

impl Moved {
    fn holds(&self, id: &str) -> bool {
        match self {
            Moved::All => true,
            Moved::Only(ids) => ids.contains(id),
        }
    }
}

/// Moves `ids`, still `from`, to `sending` under this worker's lease. The state is the
/// update's condition: a row another transaction moved since the claim read it (possible on
/// PostgreSQL, whose claim locks only the queue rows) is left alone and not claimed.
async fn move_to_sending(
    txn: &sea_orm::DatabaseTransaction,
    (worker_id, lease_until, now): (&str, DateTime<Utc>, DateTime<Utc>),
    from: DeliveryState,
    rows: &[Claimed],
) -> Result<Moved> {
    // Scoped: its blanket `min`/`add` would shadow the integer ones elsewhere in this file.
    use sea_orm::sea_query::ExprTrait;
    let backend = txn.get_database_backend();
    let ids = || rows.iter().map(|row| row.id.as_str());
    let mut update = Query::update()
        .table(delivery::Entity)
        .value(delivery::Column::State, DeliveryState::Sending)
        .value(delivery::Column::LeaseOwner, worker_id)
        .value(delivery::Column::LeaseExpiresAt, lease_until)
        .value(
            delivery::Column::Attempts,
            Expr::col(delivery::Column::Attempts).add(1),
        )
        .value(delivery::Column::UpdatedAt, now)
        .and_where(among(backend, delivery::Column::Id, ids()))
        .and_where(delivery::Column::State.eq(from))
        .to_owned();
    // A lapsed lease is taken only while it is still lapsed: on PostgreSQL the claim locks
    // queue rows alone, and another instance may have taken the delivery since this one read it.
    if from == DeliveryState::Sending {
        update.cond_where(
            sea_orm::Condition::any()
                .add(delivery::Column::LeaseExpiresAt.is_null())
                .add(delivery::Column::LeaseExpiresAt.lte(now)),
        );
    }
    let changed = txn.execute(&update).await?.rows_affected();
    if changed == rows.len() as u64 {
        return Ok(Moved::All);
    }
    // This lease's end is this claim's own: the rows carrying it are the ones it moved.
    let ours = delivery::Entity::find()
        .select_only()
        .column(delivery::Column::Id)
        .filter(among(backend, delivery::Column::Id, ids()))
        .filter(delivery::Column::State.eq(DeliveryState::Sending))
        .filter(delivery::Column::LeaseOwner.eq(worker_id))
        .filter(delivery::Column::LeaseExpiresAt.eq(lease_until))
        .into_tuple::<String>()
        .all(txn)
        .await?;
    Ok(Moved::Only(ours.into_iter().collect()))
}

/// How one attempt ended, as the record keeps it.
struct Settled {
    state: DeliveryState,
    receipt_kind: &'static str,
    external_id: Option<String>,
    error: Option<String>,
    retry_at: Option<DateTime<Utc>>,
    /// What a multi-step send keeps for its next attempt.
    checkpoint: Option<serde_json::Value>,
    /// For `accepted`: when the channel is asked if no report came (`inbox::reconcile`).
    confirm_by: Option<DateTime<Utc>>,
}

/// `answered_at`: when the adapter answered, one instant for a whole batch call, so the
/// batch's confirm-by and retry times agree and its outcomes are recorded together
/// (`SameColumns`).
fn settle_delivery(
    hub: &Hub,
    attempts: i32,
    outcome: DeliveryOutcome,
    answered_at: DateTime<Utc>,
) -> Settled {
    match outcome {
        DeliveryOutcome::Delivered { external_id } => Settled {
            state: DeliveryState::Delivered,
            receipt_kind: "delivered",
            external_id,
            error: None,
            retry_at: None,
            checkpoint: None,
            confirm_by: None,
        },
        DeliveryOutcome::Accepted {
            external_id,
            confirm_within,
            checkpoint,
        } => Settled {
            state: DeliveryState::Accepted,
            receipt_kind: "accepted",
            external_id: Some(external_id),
            error: None,
            retry_at: None,
            checkpoint,
            confirm_by: Some(super::inbox::confirm_by(answered_at, confirm_within)),
        },
        DeliveryOutcome::Unknown { message, checkpoint } => Settled {
            state: DeliveryState::Unconfirmed,
            receipt_kind: "unknown",
            external_id: None,
            error: Some(message),
            retry_at: None,
            // What a multi-step send kept may let the channel find out later (`find_lost`).
            confirm_by: checkpoint
                .as_ref()
                .map(|_| super::inbox::confirm_by(answered_at, None)),
            checkpoint,
        },
        DeliveryOutcome::Failed {
            permanence,
            code,
            message,
            checkpoint,
        } => Settled {
            checkpoint,
            ..settle_failure(hub, answered_at, attempts, permanence, &code, &message)
        },
    }
}

/// `at`: when the attempt failed; a batch's failures share it, so retries due the same
/// whole second (the backoff's jitter is whole seconds) are recorded together.
fn settle_failure(
    hub: &Hub,
    at: DateTime<Utc>,
    attempts: i32,
    permanence: Permanence,
    code: &str,
    message: &str,
) -> Settled {
    let settings = &hub.settings.delivery;
    let error = Some(format!(
        "{code}: {}",
        message.chars().take(2000).collect::<String>()
    ));
    let exhausted = u32::try_from(attempts).unwrap_or(u32::MAX) >= settings.max_attempts;
    if permanence == Permanence::Transient && !exhausted {
        let delay = super::backoff::backoff(
            u32::try_from(attempts).unwrap_or(1),
            settings.backoff_base_seconds,
            settings.backoff_cap_seconds,
        );
        let retry_at = at + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(60));
        return Settled {
            state: DeliveryState::Retrying,
            receipt_kind: "failed_transient",
            external_id: None,
            error,
            retry_at: Some(retry_at),
            checkpoint: None,
            confirm_by: None,
        };
    }
    Settled {
        state: DeliveryState::Failed,
        receipt_kind: "failed",
        external_id: None,
        error,
        retry_at: None,
        checkpoint: None,
        confirm_by: None,
    }
}

fn settle_withdrawal(hub: &Hub, attempts: i32, outcome: WithdrawOutcome) -> Settled {
    match outcome {
        WithdrawOutcome::Removed { what } => Settled {
            external_id: Some(what),
            ..settle_withdrawal(hub, attempts, WithdrawOutcome::Withdrawn)
        },
        WithdrawOutcome::Withdrawn => Settled {
            state: DeliveryState::Withdrawn,
            receipt_kind: "withdrawn",
            external_id: None,
            error: None,
            retry_at: None,
            checkpoint: None,
            confirm_by: None,
        },
        WithdrawOutcome::Unsupported { reason } => Settled {
            state: DeliveryState::Failed,
            receipt_kind: "withdraw_unsupported",
            external_id: None,
            error: Some(format!("this channel cannot withdraw: {reason}")),
            retry_at: None,
            checkpoint: None,
            confirm_by: None,
        },
        WithdrawOutcome::Unknown { message } => Settled {
            state: DeliveryState::Unconfirmed,
            receipt_kind: "unknown",
            external_id: None,
            error: Some(message),
            retry_at: None,
            checkpoint: None,
            confirm_by: None,
        },
        WithdrawOutcome::Failed {
            permanence,
            code,
            message,
        } => settle_failure(hub, hub.clock.now(), attempts, permanence, &code, &message),
    }
}

/// What an outcome writes: state, external id, last error, next attempt, checkpoint and
/// confirm-by time. A device group's outcomes share all of them (one command id for the
/// group), so they take one UPDATE.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct SameColumns {
    state: DeliveryState,
    external_id: Option<String>,
    error: Option<String>,
    retry_at: Option<DateTime<Utc>>,
    checkpoint: Option<String>,
    confirm_by: Option<DateTime<Utc>>,
}

/// Outcomes already sent must not be lost to a transient database error (on PostgreSQL a
/// deadlock with a receipt-applying transaction is detected and one side aborted): unrecorded,
/// they would be sent again once the lease lapses. So the record is tried again, with a
/// growing pause, for as long as the lease leaves room (a lapsed lease cannot record anyway).
async fn record_with_retries(hub: &Hub, worker_id: &str, outcomes: &[(Claimed, Settled)]) -> Result<usize> {
    let give_up_at = std::time::Duration::from_secs(u64::from(hub.settings.delivery.lease_seconds) / 4);
    let mut waited = Duration::ZERO;
    let mut attempt: u32 = 1;
    loop {
        match record(hub, worker_id, outcomes).await {
            Ok(recorded) => return Ok(recorded),
            Err(e) if waited < give_up_at => {
                tracing::warn!(error.cause_chain = ?e, attempt, "recording a batch failed; trying again");
                let pause = Duration::from_millis(50 << attempt.min(6));
                tokio::time::sleep(pause).await;
                waited += pause;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes a batch's outcomes in one transaction, each only while this worker still holds its
/// lease and the delivery is still `sending` (a worker whose lease lapsed must not overwrite
/// the record of the one that took over, and a receipt that overtook this record wins), with
/// every receipt and the counts applied once. Returns how many were recorded.
async fn record(hub: &Hub, worker_id: &str, outcomes: &[(Claimed, Settled)]) -> Result<usize> {
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let mut alike: BTreeMap<SameColumns, Vec<&str>> = BTreeMap::new();
    for (row, settled) in outcomes {
        let columns = SameColumns {
            state: settled.state,
            external_id: settled.external_id.clone(),
            error: settled.error.clone(),
            retry_at: settled.retry_at,
            checkpoint: settled.checkpoint.as_ref().map(ToString::to_string),
            confirm_by: settled.confirm_by,
        };
        alike.entry(columns).or_default().push(&row.id);
    }
    // The lease check is the update's own condition, so checking and writing happen under one
    // lock.
    let mut held = HashSet::with_capacity(outcomes.len());
    let mut queued: BTreeMap<Option<DateTime<Utc>>, Vec<String>> = BTreeMap::new();
    let mut awaiting: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
    for (columns, ids) in alike {
        // Its table is named by `update_among`, which may read the same rows.
        let mut update = Query::update();
        update
            .value(delivery::Column::State, columns.state)
            .value(delivery::Column::LastError, columns.error.clone())
            .value(delivery::Column::LeaseOwner, Option::<String>::None)
            .value(delivery::Column::LeaseExpiresAt, Option::<DateTime<Utc>>::None)
            .value(delivery::Column::UpdatedAt, now);
        // What only some outcomes set: the external id callbacks will name, a checkpoint
        // for the next attempt.
        if let Some(external_id) = &columns.external_id {
            update.value(delivery::Column::ExternalId, external_id.clone());
        }
        if let Some(retry_at) = columns.retry_at {
            update.value(delivery::Column::NextAttemptAt, retry_at);
        }
        if let Some(checkpoint) = &columns.checkpoint {
            update.value(delivery::Column::Checkpoint, checkpoint.clone());
        }
        let held_by_this_worker = sea_orm::Condition::all()
            .add(delivery::Column::LeaseOwner.eq(worker_id))
            .add(delivery::Column::State.eq(DeliveryState::Sending));
        let moved = JsonRows::update_among(&txn, delivery::Entity, update, &ids, held_by_this_worker).await?;
        // A retry waits in the queue for its time; anything else is done with the worker, and
        // an `accepted` one waits for its report.
        if let Some(confirm_by) = columns.confirm_by {
            awaiting
                .entry(confirm_by)
                .or_default()
                .extend(moved.iter().cloned());
        }
        queued
            .entry(columns.retry_at)
            .or_default()
            .extend(moved.iter().cloned());
        held.extend(moved);
    }
    // Written once for the batch, not per update: a device batch's outcomes differ only by
    // their group's command id.
    for (retry_at, ids) in &queued {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        match retry_at {
            Some(retry_at) => super::queue::due_at(&txn, &ids, *retry_at).await?,
            None => super::queue::dequeue(&txn, &ids).await?,
        }
    }
    for (confirm_by, ids) in &awaiting {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        super::queue::await_report(&txn, &ids, *confirm_by).await?;
    }
    // A receipt that overtook this record moved the state on, but the channel's own id for
    // the send is still this attempt's: without it, a later question (reconcile) or a
    // callback naming it could not find the delivery. So it is kept where none is yet.
    let mut named_late: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (row, settled) in outcomes {
        if let Some(external_id) = &settled.external_id
            && !held.contains(&row.id)
        {
            named_late.entry(external_id).or_default().push(&row.id);
        }
    }
    for (external_id, ids) in named_late {
        for chunk in ids.chunks(super::ID_CHUNK) {
            let mut update = Query::update();
            update
                .table(delivery::Entity)
                .value(delivery::Column::ExternalId, external_id)
                .and_where(delivery::Column::Id.is_in(chunk.iter().copied()))
                .and_where(delivery::Column::ExternalId.is_null());
            txn.execute(&update).await?;
        }
    }
    // Receipts that overtook this record were put off until it names their ids: they apply
    // as soon as it commits.
    let mut named: BTreeMap<ChannelKind, BTreeSet<&str>> = BTreeMap::new();
    for (row, settled) in outcomes {
        if let Some(external_id) = &settled.external_id {
            named.entry(row.channel).or_default().insert(external_id);
        }
    }
    let mut brought_forward = 0;
    for (channel, ids) in named {
        let ids: Vec<&str> = ids.into_iter().collect();
        brought_forward += super::inbox::due_again(&txn, channel, &ids, now).await?;
    }
    let mut counts = CountChanges::default();
    let mut recorded: BTreeMap<(&str, &'static str), u64> = BTreeMap::new();
    // Receipts for every outcome, recorded or not (an outcome overtaken by a report is still
    // what this attempt came to): one insert for each shared outcome and attempt.
    let record_id = hub.clock.new_id().to_string();
    let mut receipts: BTreeMap<OutcomeReceipt<'_>, Vec<&str>> = BTreeMap::new();
    for (row, settled) in outcomes {
        if held.contains(&row.id) {
            *recorded
                .entry((row.channel.as_str(), settled.state.as_str()))
                .or_insert(0) += 1;
            let counted = CountedDeliveries {
                item_id: row.item_id.as_str().into(),
                channel: row.channel,
                kind: row.kind,
            };
            counts.moved(&counted, DeliveryState::Sending, settled.state, 1);
        } else {
            tracing::warn!(delivery = %row.id, worker = worker_id, "the delivery moved on before this outcome was recorded (a receipt overtook it, or the lease lapsed and another worker took it); that record stands");
        }
        let shared = OutcomeReceipt {
            source: row.channel,
            kind: settled.receipt_kind,
            received_at: now,
            record_id: &record_id,
            attempt: row.attempts,
            error: settled.error.as_deref(),
            external_id: settled.external_id.as_deref(),
            worker: worker_id,
        };
        receipts.entry(shared).or_default().push(&row.id);
    }
    for (receipt, ids) in receipts {
        record_outcome(&txn, &receipt, &ids).await?;
    }
    counts.apply(&txn).await?;
    txn.commit().await?;
    if brought_forward > 0 {
        hub.due.wake_appliers();
    }
    // Counted per channel and outcome, once the batch is committed.
    for ((channel, outcome), n) in recorded {
        hub.metrics.deliveries_recorded(channel, outcome, n);
    }
    Ok(held.len())
}

/// What a claimed batch's deliveries point at, read once for the whole batch: most of a
/// batch shares one rendition, and a rendition (a whole item body) is the largest thing read.
pub struct BatchContext {
    targets: TargetRefs,
    renditions: HashMap<String, serde_json::Value>,
}

/// The targets and renditions a batch's deliveries point at, each once.
pub struct BatchPointers {
    targets: BTreeSet<String>,
    renditions: BTreeSet<String>,
}

impl BatchPointers {
    fn of<'a>(rows: impl IntoIterator<Item = &'a Claimed>) -> Self {
        let (mut targets, mut renditions) = (BTreeSet::new(), BTreeSet::new());
        for row in rows {
            targets.insert(row.target_id.clone());
            renditions.insert(row.rendition_id.clone());
        }
        Self { targets, renditions }
    }
}

impl BatchContext {
    pub async fn load(hub: &Hub, pointers: &BatchPointers) -> Result<Self> {
        let ids: Vec<&str> = pointers.targets.iter().map(String::as_str).collect();
        let targets = TargetRefs::load(hub, &ids).await?;
        let mut renditions = HashMap::new();
        for row in rendition::Entity::find()
            .filter(rendition::Column::Id.is_in(pointers.renditions.iter().map(String::as_str)))
            .all(&hub.db)
            .await?
        {
            let payload = serde_json::from_str(&row.payload).map_err(anyhow::Error::new)?;
            renditions.insert(row.id.into(), payload);
        }
        Ok(Self { targets, renditions })
    }
}

/// How a claimed delivery ends without calling its channel: past its `not_after`, with no
/// adapter registered for it, or with secrets that cannot be opened (sending without the
/// credentials cannot succeed, and retrying will not bring the key back: the operator fixes
/// the configuration and retries).
fn settled_without_call(hub: &Hub, batch: &BatchContext, row: &Claimed) -> Option<Settled> {
    if let Some(reason) = batch.targets.unreadable_secrets(&row.target_id) {
        return Some(settle_failure(
            hub,
            hub.clock.now(),
            row.attempts,
            Permanence::Permanent,
            "secrets_unreadable",
            reason,
        ));
    }
    if row.not_after.is_some_and(|deadline| deadline <= hub.clock.now()) {
        return Some(Settled {
            state: DeliveryState::Expired,
            receipt_kind: "expired",
            external_id: None,
            error: None,
            retry_at: None,
            checkpoint: None,
            confirm_by: None,
        });
    }
    let registered = hub.channels.get(row.channel);
    registered.is_none().then(|| {
        settle_failure(
            hub,
            hub.clock.now(),
            row.attempts,
            Permanence::Permanent,
            "no_adapter",
            "no adapter is registered for this channel",
        )
    })
}

/// Past the deadline the request may still have reached the channel: the outcome is unknown,
/// so the delivery ends `unconfirmed` and is never resent on its own.
fn no_answer_within(deadline: Duration) -> String {
    format!(
        "no answer within {} s; it may have taken effect",
        deadline.as_secs()
    )
}

/// Sends one rendition to the targets of `rows` (all of one channel), at most the channel's
/// in-flight bound at a time, each call under the channel's deadline.
async fn deliver_group(
    hub: &Hub,
    in_flight: &InFlight,
    batch: &BatchContext,
    channel: &Arc<dyn Channel>,
    rows: Vec<Claimed>,
) -> Result<Vec<(Claimed, Settled)>> {
    let limits = hub.settings.delivery.limits_for(channel.kind());
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let rendition = Rendition {
        channel: channel.kind(),
        payload: batch
            .renditions
            .get(&first.rendition_id)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("rendition {} vanished", first.rendition_id))?,
    };
    let channel_name = first.channel.as_str();
    let slots = InFlight::permit_source(&in_flight.channels, channel_name, limits.in_flight);
    let mut settled = Vec::with_capacity(rows.len());
    let chunk_size = usize::try_from(limits.in_flight).unwrap_or(usize::MAX).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut chunk = Vec::with_capacity(chunk_size);
        let mut prepared = Vec::with_capacity(chunk_size);
        // A row whose target or checkpoint cannot be read fails alone, at once: sending
        // without them cannot succeed, and failing the whole batch would hold every other
        // delivery in it hostage to the one bad row.
        for row in rows.by_ref().take(chunk_size) {
            let target = batch.targets.target_ref(&row.target_id);
            let checkpoint = super::state::decode_checkpoint(row.checkpoint.as_deref());
            match (target, checkpoint) {
                (Ok(target), Ok(checkpoint)) => {
                    prepared.push((target, checkpoint));
                    chunk.push(row);
                }
                (Err(e), _) | (_, Err(e)) => {
                    let failure = settle_failure(
                        hub,
                        hub.clock.now(),
                        row.attempts,
                        Permanence::Permanent,
                        "unreadable",
                        &e.to_string(),
                    );
                    settled.push((failure, row));
                }
            }
        }
        if chunk.is_empty() {
            continue;
        }
        let dispatches: Vec<Dispatch<'_>> = chunk
            .iter()
            .zip(&prepared)
            .map(|(row, (target, checkpoint))| Dispatch {
                target,
                idempotency_key: &row.idempotency_key,
                checkpoint: checkpoint.as_ref(),
            })
            .collect();
        let permits = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        let _permits = slots
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(anyhow::Error::new)?;
        let called = std::time::Instant::now();
        let outcomes = tokio::time::timeout(
            limits.attempt_deadline,
            channel.deliver_batch(&rendition, &dispatches),
        )
        .await
        .unwrap_or_default();
        hub.metrics.adapter_call(channel_name, called.elapsed());
        let answered_at = hub.clock.now();
        let mut outcomes = outcomes.into_iter();
        for row in chunk {
            // A call past its deadline, or an adapter that answered for fewer dispatches than
            // it was given, leaves the outcome unknown.
            let outcome = outcomes.next().unwrap_or_else(|| DeliveryOutcome::Unknown {
                message: no_answer_within(limits.attempt_deadline),
                checkpoint: None,
            });
            settled.push((settle_delivery(hub, row.attempts, outcome, answered_at), row));
        }
    }
    Ok(settled.into_iter().map(|(s, row)| (row, s)).collect())
}

/// Sends the withdrawal of one claimed delivery under the channel's deadline.
async fn withdraw_one(
    hub: &Hub,
    in_flight: &InFlight,
    batch: &BatchContext,
    channel: &Arc<dyn Channel>,
    row: &Claimed,
) -> Result<Settled> {
    let limits = hub.settings.delivery.limits_for(channel.kind());
    let target = batch.targets.target_ref(&row.target_id)?;
    let reason = batch
        .renditions
        .get(&row.rendition_id)
        .and_then(|payload| payload["reason"].as_str())
        .ok_or_else(|| anyhow::anyhow!("withdrawal rendition {} has no reason", row.rendition_id))?
        .to_owned();
    let original = match &row.withdraws_id {
        Some(id) => delivery::Entity::find_by_id(id.as_str()).one(&hub.db).await?,
        None => None,
    };
    // What it follows is still on its way, or the hub is still finding out what became of it
    // (`find_lost`): taken down now, nothing would be named, and what lands later would stay.
    // The withdrawal waits for that outcome.
    if let Some(followed) = &original
        && followed.external_id.is_none()
        && (followed.state == DeliveryState::Sending
            || (followed.state == DeliveryState::Unconfirmed
                && delivery_confirmation::Entity::find_by_id(followed.id.as_str())
                    .one(&hub.db)
                    .await?
                    .is_some()))
    {
        let waiting = WithdrawOutcome::Failed {
            permanence: Permanence::Transient,
            code: "awaiting_outcome".into(),
            message: "所撤回的发布结果尚未确认，确认后再撤回".into(),
        };
        return Ok(settle_withdrawal(hub, row.attempts, waiting));
    }
    let external_id = original.and_then(|d| d.external_id);
    let channel_slots = InFlight::permit_source(&in_flight.channels, row.channel.as_str(), limits.in_flight);
    let target_slots = InFlight::permit_source(
        &in_flight.targets,
        &row.target_id,
        hub.settings.delivery.target_in_flight,
    );
    let _channel_permit = channel_slots.acquire_owned().await.map_err(anyhow::Error::new)?;
    let _target_permit = target_slots.acquire_owned().await.map_err(anyhow::Error::new)?;
    let called = std::time::Instant::now();
    let call = channel.withdraw(
        &row.item_id,
        &target,
        external_id.as_deref(),
        &reason,
        &row.idempotency_key,
    );
    let outcome = tokio::time::timeout(limits.attempt_deadline, call)
        .await
        .unwrap_or_else(|_| WithdrawOutcome::Unknown {
            message: no_answer_within(limits.attempt_deadline),
        });
    hub.metrics.adapter_call(row.channel.as_str(), called.elapsed());
    Ok(settle_withdrawal(hub, row.attempts, outcome))
}

/// Claims one batch of any channel and works it off; returns how many deliveries it handled.
pub async fn try_execute_batch(hub: &Hub, in_flight: &InFlight, worker_id: &str) -> Result<usize> {
    let limit = hub.settings.delivery.batch_size;
    claim_and_execute(hub, in_flight, worker_id, None, limit).await
}

/// Claims one batch of `channel`, sized for that channel, and works it off.
pub async fn try_execute_channel_batch(
    hub: &Hub,
    in_flight: &InFlight,
    worker_id: &str,
    channel: ChannelKind,
) -> Result<usize> {
    let limit = hub.settings.delivery.limits_for(channel).batch_size;
    // Deliveries a publish handed this worker are older than anything a claim would find now:
    // they were leased while its loops were idle.
    while let Some(handed) = hub.handoff.take(channel, worker_id, limit as usize) {
        let Some(handed) = still_leased(hub, worker_id, handed).await? else {
            continue;
        };
        // A batch that cannot be read waits for the next pass, not for its lease to lapse.
        let batch = match BatchContext::load(hub, &BatchPointers::of(&handed.rows)).await {
            Ok(batch) => batch,
            Err(e) => {
                hub.handoff.give(channel, handed);
                return Err(e);
            }
        };
        return send_and_record(hub, in_flight, worker_id, handed.rows, &batch).await;
    }
    claim_and_execute(hub, in_flight, worker_id, Some(channel), limit).await
}

/// One pass of the claim loop `listener` stands for: busy while it runs, idle after a pass
/// that found nothing, so that a publish meanwhile leases its deliveries to this worker and
/// hands them over (`store::handoff`).
pub async fn try_execute_listening(
    hub: &Hub,
    in_flight: &InFlight,
    listener: &Listener<'_>,
) -> Result<usize> {
    listener.set_idle(false);
    let handled = try_execute_channel_batch(hub, in_flight, listener.worker_id(), listener.channel()).await;
    if matches!(handled, Ok(0)) {
        listener.set_idle(true);
    }
    handled
}

/// How long after its publish a handed batch is sent under the publish's lease as it is. A
/// batch may take all of a lease but `config::LEASE_MARGIN_SECONDS`, and this leaves most of
/// that margin to record in. A batch taken later is leased afresh first.
const HANDED_FRESH: chrono::Duration = chrono::Duration::seconds(1);

/// The handed batch as this worker may still send it: at once if fresh; otherwise only the
/// deliveries still under the very lease the publish wrote, leased afresh. Those no longer
/// under it (their lease lapsed, and a claim took them, perhaps one of this worker's own other
/// loops) are left out, so no delivery is sent twice. None: nothing is left to send.
async fn still_leased(hub: &Hub, worker_id: &str, mut handed: Handed) -> Result<Option<Handed>> {
    let now = hub.clock.now();
    if now >= handed.leased_at + HANDED_FRESH {
        let lease_until = now + chrono::Duration::seconds(i64::from(hub.settings.delivery.lease_seconds));
        let txn = begin_write(&hub.db).await?;
        let mut update = Query::update();
        update
            .value(delivery::Column::LeaseExpiresAt, lease_until)
            .value(delivery::Column::UpdatedAt, now);
        let ids: Vec<&str> = handed.rows.iter().map(|row| row.id.as_str()).collect();
        let under_the_publish_lease = sea_orm::Condition::all()
            .add(delivery::Column::State.eq(DeliveryState::Sending))
            .add(delivery::Column::LeaseOwner.eq(worker_id))
            .add(delivery::Column::LeaseExpiresAt.eq(handed.lease_until))
            .add(delivery::Column::LeaseExpiresAt.gt(now));
        let renewed: HashSet<String> =
            JsonRows::update_among(&txn, delivery::Entity, update, &ids, under_the_publish_lease)
                .await?
                .into_iter()
                .collect();
        txn.commit().await?;
        handed.rows.retain(|row| renewed.contains(&row.id));
        handed.leased_at = now;
        handed.lease_until = lease_until;
    }
    Ok((!handed.rows.is_empty()).then_some(handed))
}

/// Claims a batch and works it off. What the batch points at is read while its leases are
/// written, on another connection, so the read does not wait for the claim's commit (on
/// SQLite it also runs beside the claim's write, which holds the one write lock).
async fn claim_and_execute(
    hub: &Hub,
    in_flight: &InFlight,
    worker_id: &str,
    channel: Option<ChannelKind>,
    limit: u32,
) -> Result<usize> {
    let due = read_due(hub, channel, limit).await?;
    if due.selected.is_empty() {
        due.lease(worker_id).await?;
        return Ok(0);
    }
    let pointers = due.pointers();
    let (claimed, batch) =
        futures::future::try_join(due.lease(worker_id), BatchContext::load(hub, &pointers)).await?;
    send_and_record(hub, in_flight, worker_id, claimed, &batch).await
}

/// Sends a claimed batch: publish deliveries grouped by rendition, one batch call per group
/// (and per in-flight bound), withdrawals one by one; then records every outcome at once.
pub async fn execute_claimed(
    hub: &Hub,
    in_flight: &InFlight,
    worker_id: &str,
    claimed: Vec<Claimed>,
) -> Result<usize> {
    if claimed.is_empty() {
        return Ok(0);
    }
    let batch = BatchContext::load(hub, &BatchPointers::of(&claimed)).await?;
    send_and_record(hub, in_flight, worker_id, claimed, &batch).await
}

/// Sends a claimed batch whose context is read (see `execute_claimed`).
async fn send_and_record(
    hub: &Hub,
    in_flight: &InFlight,
    worker_id: &str,
    claimed: Vec<Claimed>,
    batch: &BatchContext,
) -> Result<usize> {
    let count = claimed.len();
    if count == 0 {
        return Ok(0);
    }
    let mut outcomes = Vec::with_capacity(count);
    let mut groups: BTreeMap<String, Vec<Claimed>> = BTreeMap::new();
    let mut withdrawals = Vec::new();
    for row in claimed {
        if let Some(settled) = settled_without_call(hub, batch, &row) {
            outcomes.push((row, settled));
        } else if row.kind == DeliveryKind::Withdraw {
            withdrawals.push(row);
        } else {
            groups.entry(row.rendition_id.clone()).or_default().push(row);
        }
    }
    let adapter = |row: &Claimed| {
        hub.channels
            .get(row.channel)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no adapter for {}", row.channel))
    };
    let sends = groups.into_values().map(|rows| async move {
        let first = rows.first().ok_or_else(|| anyhow::anyhow!("empty group"))?;
        deliver_group(hub, in_flight, batch, &adapter(first)?, rows).await
    });
    let takedowns = withdrawals.into_iter().map(|row| async move {
        let settled = withdraw_one(hub, in_flight, batch, &adapter(&row)?, &row).await?;
        Ok::<_, crate::error::Error>(vec![(row, settled)])
    });
    let (sent, taken_down) = futures::future::join(
        futures::future::join_all(sends),
        futures::future::join_all(takedowns),
    )
    .await;
    for result in sent.into_iter().chain(taken_down) {
        match result {
            Ok(settled) => outcomes.extend(settled),
            // The lease runs out and another attempt follows; nothing is lost.
            Err(e) => tracing::error!(error.cause_chain = ?e, "delivery attempt failed unexpectedly"),
        }
    }
    record_with_retries(hub, worker_id, &outcomes).await?;
    Ok(count)
}

/// The claim loops of every registered channel (`claimers` each), polled together: a slow or
/// hung channel holds up only itself, and every adapter call ends by its deadline.
pub async fn run_until_stopped(hub: Arc<Hub>, worker_id: String) -> anyhow::Result<()> {
    let in_flight = InFlight::default();
    let loops = hub
        .channels
        .kinds()
        .flat_map(|channel| {
            let claimers = hub.settings.delivery.limits_for(channel).claimers;
            (0..claimers).map(move |_| channel)
        })
        .map(|channel| run_channel_until_stopped(&hub, &in_flight, &worker_id, channel));
    // Receipts are applied (and overdue `accepted` deliveries reconciled) beside the claims.
    futures::future::join(
        futures::future::join_all(loops),
        super::inbox::run_until_stopped(&hub, &worker_id),
    )
    .await;
    Ok(())
}

async fn run_channel_until_stopped(hub: &Hub, in_flight: &InFlight, worker_id: &str, channel: ChannelKind) {
    let listener = hub.handoff.listen(channel, worker_id);
    crate::store::due::run_passes(
        Duration::from_millis(hub.settings.delivery.poll_interval_ms),
        || Some(hub.due.armed(channel)),
        || try_execute_listening(hub, in_flight, &listener),
        |e| tracing::error!(channel = channel.as_str(), error.cause_chain = ?e, "claiming deliveries failed; retrying"),
    )
    .await;
}
