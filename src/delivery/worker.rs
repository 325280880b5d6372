//! The delivery worker: claim due deliveries under a lease, hand each to its channel adapter,
//! record the outcome. Shaped `run_until_stopped` → `try_execute_batch` → `execute_one`, so
//! tests drive single steps with the hub's clock.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use herald_channels::{ChannelKind, DeliveryOutcome, Permanence, Rendition, SecretString, WithdrawOutcome};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Statement, sea_query::Expr};
use tokio::sync::Semaphore;

use super::{
    DeliveryKind, DeliveryState, NewReceipt,
    counts::CountChanges,
    record_receipt,
    targets::{self, TargetView},
};
use crate::{
    error::Result,
    hub::Hub,
    store::{
        begin_write,
        entities::{delivery, rendition, target},
        is_postgres,
    },
};

/// In-flight bounds for one hub instance: per channel and per target.
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

/// Capped exponential backoff with "equal jitter": half the step fixed, half random, so
/// retries spread out yet each waits at least as long as the previous one's minimum.
pub fn backoff(attempt: u32, base_seconds: u32, cap_seconds: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let step = u64::from(base_seconds)
        .saturating_mul(1 << exponent)
        .min(u64::from(cap_seconds))
        .max(1);
    let half = step / 2;
    let mut random = [0u8; 8];
    let jitter = match getrandom::fill(&mut random) {
        Ok(()) => u64::from_le_bytes(random) % (step - half + 1),
        Err(_) => step - half,
    };
    Duration::from_secs(half + jitter)
}

/// Due for a (first or further) attempt, or held under a lapsed lease by a worker that died.
const CLAIMABLE: &str = "((state IN ('pending', 'retrying') AND next_attempt_at <= $1) OR (state = 'sending' AND lease_expires_at <= $1)) \
     AND (not_before IS NULL OR not_before <= $1)";

/// Claims up to `limit` due deliveries for `worker_id`, emergency first, of one channel (or of
/// all). On PostgreSQL rows locked by another instance are skipped; on SQLite the write
/// transaction is exclusive.
pub async fn claim(
    hub: &Hub,
    worker_id: &str,
    channel: Option<ChannelKind>,
    limit: u32,
) -> Result<Vec<delivery::Model>> {
    // Scoped: its blanket `min`/`add` would shadow the integer ones elsewhere in this file.
    use sea_orm::sea_query::ExprTrait;
    let now = hub.clock.now();
    let lease_until = now + chrono::Duration::seconds(i64::from(hub.settings.delivery.lease_seconds));
    let lock = if is_postgres(&hub.db) {
        "FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let only_channel = if channel.is_some() { "AND channel = $3" } else { "" };
    let sql = format!(
        "SELECT id, item_id, channel, kind, state FROM deliveries WHERE {CLAIMABLE} {only_channel} \
         ORDER BY priority DESC, next_attempt_at, id LIMIT $2 {lock}"
    );
    let mut values: Vec<sea_orm::Value> = vec![now.into(), i64::from(limit).into()];
    if let Some(channel) = channel {
        values.push(channel.as_str().into());
    }
    let txn = begin_write(&hub.db).await?;
    let backend = txn.get_database_backend();
    let candidates = txn
        .query_all_raw(Statement::from_sql_and_values(backend, &sql, values))
        .await?;
    let mut ids = Vec::with_capacity(candidates.len());
    let mut counts = CountChanges::default();
    for row in &candidates {
        let [id, item_id, channel, kind, state] =
            [0, 1, 2, 3, 4].map(|i| row.try_get_by_index::<String>(i).unwrap_or_default());
        counts.moved(
            &item_id,
            &channel,
            &kind,
            &state,
            DeliveryState::Sending.as_str(),
            1,
        );
        ids.push(id);
    }
    if ids.is_empty() {
        txn.commit().await?;
        return Ok(Vec::new());
    }
    delivery::Entity::update_many()
        .col_expr(
            delivery::Column::State,
            Expr::value(DeliveryState::Sending.as_str()),
        )
        .col_expr(delivery::Column::LeaseOwner, Expr::value(worker_id))
        .col_expr(delivery::Column::LeaseExpiresAt, Expr::value(lease_until))
        .col_expr(
            delivery::Column::Attempts,
            Expr::col(delivery::Column::Attempts).add(1),
        )
        .col_expr(delivery::Column::UpdatedAt, Expr::value(now))
        .filter(delivery::Column::Id.is_in(ids.clone()))
        .exec(&txn)
        .await?;
    counts.apply(&txn).await?;
    let rows = delivery::Entity::find()
        .filter(delivery::Column::Id.is_in(ids))
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(rows)
}

/// How one attempt ended, as the record keeps it.
struct Settled {
    state: DeliveryState,
    receipt_kind: &'static str,
    external_id: Option<String>,
    error: Option<String>,
    retry_at: Option<DateTime<Utc>>,
}

fn settle_delivery(hub: &Hub, attempts: i32, outcome: DeliveryOutcome) -> Settled {
    match outcome {
        DeliveryOutcome::Delivered { external_id } => Settled {
            state: DeliveryState::Delivered,
            receipt_kind: "delivered",
            external_id,
            error: None,
            retry_at: None,
        },
        DeliveryOutcome::Accepted { external_id } => Settled {
            state: DeliveryState::Accepted,
            receipt_kind: "accepted",
            external_id: Some(external_id),
            error: None,
            retry_at: None,
        },
        DeliveryOutcome::Unknown { message } => Settled {
            state: DeliveryState::Unconfirmed,
            receipt_kind: "unknown",
            external_id: None,
            error: Some(message),
            retry_at: None,
        },
        DeliveryOutcome::Failed {
            permanence,
            code,
            message,
        } => settle_failure(hub, attempts, permanence, &code, &message),
    }
}

fn settle_failure(hub: &Hub, attempts: i32, permanence: Permanence, code: &str, message: &str) -> Settled {
    let settings = &hub.settings.delivery;
    let error = Some(format!(
        "{code}: {}",
        message.chars().take(2000).collect::<String>()
    ));
    let exhausted = u32::try_from(attempts).unwrap_or(u32::MAX) >= settings.max_attempts;
    if permanence == Permanence::Transient && !exhausted {
        let delay = backoff(
            u32::try_from(attempts).unwrap_or(1),
            settings.backoff_base_seconds,
            settings.backoff_cap_seconds,
        );
        let retry_at =
            hub.clock.now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(60));
        return Settled {
            state: DeliveryState::Retrying,
            receipt_kind: "failed_transient",
            external_id: None,
            error,
            retry_at: Some(retry_at),
        };
    }
    Settled {
        state: DeliveryState::Failed,
        receipt_kind: "failed",
        external_id: None,
        error,
        retry_at: None,
    }
}

fn settle_withdrawal(hub: &Hub, attempts: i32, outcome: WithdrawOutcome) -> Settled {
    match outcome {
        WithdrawOutcome::Withdrawn => Settled {
            state: DeliveryState::Withdrawn,
            receipt_kind: "withdrawn",
            external_id: None,
            error: None,
            retry_at: None,
        },
        WithdrawOutcome::Unsupported { reason } => Settled {
            state: DeliveryState::Failed,
            receipt_kind: "withdraw_unsupported",
            external_id: None,
            error: Some(format!("this channel cannot withdraw: {reason}")),
            retry_at: None,
        },
        WithdrawOutcome::Unknown { message } => Settled {
            state: DeliveryState::Unconfirmed,
            receipt_kind: "unknown",
            external_id: None,
            error: Some(message),
            retry_at: None,
        },
        WithdrawOutcome::Failed {
            permanence,
            code,
            message,
        } => settle_failure(hub, attempts, permanence, &code, &message),
    }
}

/// Writes the outcome, but only while this worker still holds the lease: a worker whose
/// lease lapsed must not overwrite the record of the one that took over.
async fn record(hub: &Hub, worker_id: &str, row: &delivery::Model, settled: Settled) -> Result<bool> {
    let now = hub.clock.now();
    let txn = begin_write(&hub.db).await?;
    let mut update = delivery::Entity::update_many()
        .col_expr(delivery::Column::State, Expr::value(settled.state.as_str()))
        .col_expr(delivery::Column::LastError, Expr::value(settled.error.clone()))
        .col_expr(delivery::Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(
            delivery::Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(delivery::Column::UpdatedAt, Expr::value(now));
    if let Some(external_id) = &settled.external_id {
        update = update.col_expr(delivery::Column::ExternalId, Expr::value(external_id.clone()));
    }
    if let Some(retry_at) = settled.retry_at {
        update = update.col_expr(delivery::Column::NextAttemptAt, Expr::value(retry_at));
    }
    let result = update
        .filter(delivery::Column::Id.eq(&row.id))
        .filter(delivery::Column::LeaseOwner.eq(worker_id))
        .filter(delivery::Column::State.eq(DeliveryState::Sending.as_str()))
        .exec(&txn)
        .await?;
    let detail = serde_json::json!({"attempt": row.attempts, "error": settled.error, "external_id": settled.external_id, "worker": worker_id});
    let attempt = row.attempts.to_string();
    let receipt = NewReceipt {
        delivery_id: &row.id,
        source: &row.channel,
        kind: settled.receipt_kind,
        source_time: None,
        received_at: now,
        distinct_by: &attempt,
        detail,
    };
    record_receipt(&txn, receipt).await?;
    if result.rows_affected == 1 {
        let mut counts = CountChanges::default();
        counts.moved(
            &row.item_id,
            &row.channel,
            &row.kind,
            DeliveryState::Sending.as_str(),
            settled.state.as_str(),
            1,
        );
        counts.apply(&txn).await?;
    }
    txn.commit().await?;
    Ok(result.rows_affected == 1)
}

/// What a claimed batch's deliveries point at, read once for the whole batch: most of a
/// batch shares one rendition, and a rendition (a whole item body) is the largest thing read.
pub struct BatchContext {
    targets: HashMap<String, TargetView>,
    /// Decrypted secrets by target (absent: none), or why they cannot be opened.
    secrets: HashMap<String, std::result::Result<BTreeMap<String, SecretString>, String>>,
    renditions: HashMap<String, serde_json::Value>,
}

impl BatchContext {
    pub async fn load(hub: &Hub, rows: &[delivery::Model]) -> Result<Self> {
        let target_ids: BTreeSet<&str> = rows.iter().map(|r| r.target_id.as_str()).collect();
        let rendition_ids: BTreeSet<&str> = rows.iter().map(|r| r.rendition_id.as_str()).collect();
        let mut targets = HashMap::new();
        for row in target::Entity::find()
            .filter(target::Column::Id.is_in(target_ids))
            .all(&hub.db)
            .await?
        {
            targets.insert(row.id.clone(), TargetView::try_from(row)?);
        }
        let ids: Vec<&str> = target_ids_of(rows);
        let secrets = targets::load_secrets(hub, &ids).await?;
        let mut renditions = HashMap::new();
        for row in rendition::Entity::find()
            .filter(rendition::Column::Id.is_in(rendition_ids))
            .all(&hub.db)
            .await?
        {
            let payload = serde_json::from_str(&row.payload).map_err(anyhow::Error::new)?;
            renditions.insert(row.id, payload);
        }
        Ok(Self {
            targets,
            secrets,
            renditions,
        })
    }
}

fn target_ids_of(rows: &[delivery::Model]) -> Vec<&str> {
    let ids: BTreeSet<&str> = rows.iter().map(|r| r.target_id.as_str()).collect();
    ids.into_iter().collect()
}

/// One attempt of one claimed delivery.
pub async fn execute_one(
    hub: &Hub,
    worker_id: &str,
    batch: &BatchContext,
    row: delivery::Model,
) -> Result<DeliveryState> {
    if row.not_after.is_some_and(|deadline| deadline <= hub.clock.now()) {
        let settled = Settled {
            state: DeliveryState::Expired,
            receipt_kind: "expired",
            external_id: None,
            error: None,
            retry_at: None,
        };
        record(hub, worker_id, &row, settled).await?;
        return Ok(DeliveryState::Expired);
    }
    let kind = ChannelKind::parse(&row.channel);
    let Some(channel) = kind.and_then(|k| hub.channels.get(k)).cloned() else {
        let settled = settle_failure(
            hub,
            row.attempts,
            Permanence::Permanent,
            "no_adapter",
            "no adapter is registered for this channel",
        );
        let state = settled.state;
        record(hub, worker_id, &row, settled).await?;
        return Ok(state);
    };
    let target = batch
        .targets
        .get(&row.target_id)
        .ok_or_else(|| anyhow::anyhow!("target {} vanished", row.target_id))?;
    let secrets = match batch.secrets.get(&row.target_id).cloned() {
        None => BTreeMap::new(),
        Some(Ok(secrets)) => secrets,
        Some(Err(reason)) => {
            // Sending without the credentials cannot succeed, and retrying will not bring the
            // key back: the operator fixes the configuration and retries.
            let settled = settle_failure(
                hub,
                row.attempts,
                Permanence::Permanent,
                "secrets_unreadable",
                &reason,
            );
            let state = settled.state;
            record(hub, worker_id, &row, settled).await?;
            return Ok(state);
        }
    };
    let payload = batch
        .renditions
        .get(&row.rendition_id)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("rendition {} vanished", row.rendition_id))?;
    let limits = hub.settings.delivery.limits_for(channel.kind());
    let deadline = limits.attempt_deadline;
    // Past the deadline the request may still have reached the channel: the outcome is
    // unknown, so the delivery ends `unconfirmed` and is never resent on its own.
    let no_answer = || {
        format!(
            "no answer within {} s; it may have taken effect",
            deadline.as_secs()
        )
    };
    let in_flight = &hub.in_flight;
    let channel_slots = InFlight::permit_source(&in_flight.channels, &row.channel, limits.in_flight);
    let target_slots = InFlight::permit_source(
        &in_flight.targets,
        &row.target_id,
        hub.settings.delivery.target_in_flight,
    );
    let _channel_permit = channel_slots.acquire_owned().await.map_err(anyhow::Error::new)?;
    let _target_permit = target_slots.acquire_owned().await.map_err(anyhow::Error::new)?;
    let target_ref = target.target_ref(secrets);
    let settled = if row.kind == DeliveryKind::Withdraw.as_str() {
        let original = match &row.withdraws_id {
            Some(id) => delivery::Entity::find_by_id(id).one(&hub.db).await?,
            None => None,
        };
        let reason = payload["reason"].as_str().unwrap_or_default().to_owned();
        let external_id = original.and_then(|d| d.external_id);
        let call = channel.withdraw(
            &row.item_id,
            &target_ref,
            external_id.as_deref(),
            &reason,
            &row.idempotency_key,
        );
        let outcome = tokio::time::timeout(deadline, call)
            .await
            .unwrap_or_else(|_| WithdrawOutcome::Unknown { message: no_answer() });
        settle_withdrawal(hub, row.attempts, outcome)
    } else {
        let rendition = Rendition {
            channel: target.channel,
            payload,
        };
        let call = channel.deliver(&rendition, &target_ref, &row.idempotency_key);
        let outcome = tokio::time::timeout(deadline, call)
            .await
            .unwrap_or_else(|_| DeliveryOutcome::Unknown { message: no_answer() });
        settle_delivery(hub, row.attempts, outcome)
    };
    let state = settled.state;
    if !record(hub, worker_id, &row, settled).await? {
        tracing::warn!(delivery = %row.id, worker = worker_id, "lease lost before the outcome was recorded; the other worker's record stands");
    }
    Ok(state)
}

/// Claims one batch of any channel and works it off; returns how many deliveries it handled.
pub async fn try_execute_batch(hub: &Hub, worker_id: &str) -> Result<usize> {
    let claimed = claim(hub, worker_id, None, hub.settings.delivery.batch_size).await?;
    execute_claimed(hub, worker_id, claimed).await
}

/// Claims one batch of `channel`, sized for that channel, and works it off.
pub async fn try_execute_channel_batch(hub: &Hub, worker_id: &str, channel: ChannelKind) -> Result<usize> {
    let limit = hub.settings.delivery.limits_for(channel).batch_size;
    let claimed = claim(hub, worker_id, Some(channel), limit).await?;
    execute_claimed(hub, worker_id, claimed).await
}

async fn execute_claimed(hub: &Hub, worker_id: &str, claimed: Vec<delivery::Model>) -> Result<usize> {
    let count = claimed.len();
    if count == 0 {
        return Ok(0);
    }
    let batch = BatchContext::load(hub, &claimed).await?;
    let batch = &batch;
    let results = futures::future::join_all(claimed.into_iter().map(|row| {
        let id = row.id.clone();
        async move { (id, execute_one(hub, worker_id, batch, row).await) }
    }))
    .await;
    for (id, result) in results {
        if let Err(e) = result {
            // The lease runs out and another attempt follows; nothing is lost.
            tracing::error!(delivery = %id, error.cause_chain = ?e, "delivery attempt failed unexpectedly");
        }
    }
    Ok(count)
}

/// One claim loop per registered channel, polled together: a slow or hung channel holds up
/// only itself, and every adapter call ends by its deadline.
pub async fn run_until_stopped(hub: Arc<Hub>, worker_id: String) -> anyhow::Result<()> {
    let loops = hub
        .channels
        .kinds()
        .map(|channel| run_channel_until_stopped(&hub, &worker_id, channel));
    futures::future::join_all(loops).await;
    Ok(())
}

async fn run_channel_until_stopped(hub: &Hub, worker_id: &str, channel: ChannelKind) {
    let idle = Duration::from_millis(hub.settings.delivery.poll_interval_ms);
    loop {
        match try_execute_channel_batch(hub, worker_id, channel).await {
            Ok(0) => tokio::time::sleep(idle).await,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(channel = channel.as_str(), error.cause_chain = ?e, "claiming deliveries failed; retrying");
                tokio::time::sleep(idle).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut previous_min = 0;
        for attempt in 1..=10 {
            let step = (30u64 << (attempt - 1)).min(3600);
            let delay = backoff(attempt, 30, 3600).as_secs();
            assert!(delay >= step / 2 && delay <= step, "attempt {attempt}: {delay}");
            assert!(step / 2 >= previous_min);
            previous_min = step / 2;
        }
        assert!(backoff(40, 30, 3600).as_secs() <= 3600);
    }
}
