//! Background work a hub instance runs beside its HTTP server. Each worker is shaped
//! `run_*_until_stopped` → loop → `try_*`, so tests can drive the single step directly.

use std::{sync::Arc, time::Duration};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use crate::{
    delivery::{inbox, targets::TargetRefs},
    device_link,
    hub::Hub,
    store::entities::target,
    workflow,
};

/// How often published items are checked against their expiry date; expiry is by the day, so
/// a minute's lag is harmless.
pub const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

pub async fn run_expiry_until_stopped(hub: Arc<Hub>) -> anyhow::Result<()> {
    loop {
        match workflow::expire_due(&hub).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired items past their validity"),
            Err(e) => tracing::error!(error.cause_chain = ?e, "expiry sweep failed; retrying next interval"),
        }
        tokio::time::sleep(EXPIRY_SWEEP_INTERVAL).await;
    }
}

/// How often old records are pruned: they only pile up, nothing waits on them.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);

/// Prunes what the hub keeps only for a while: signed device commands a month past their end
/// (`device_link::prune_commands`) and callback replay keys past their keeping
/// (`inbox::prune_replay_keys`); returns how many of each.
pub async fn try_housekeeping(hub: &Hub) -> crate::error::Result<(u64, u64)> {
    let now = hub.clock.now();
    let commands = device_link::prune_commands(&hub.db, now).await?;
    let replay_keys = inbox::prune_replay_keys(&hub.db, now).await?;
    Ok((commands, replay_keys))
}

pub async fn run_housekeeping_until_stopped(hub: Arc<Hub>) -> anyhow::Result<()> {
    loop {
        match try_housekeeping(&hub).await {
            Ok((0, 0)) => {}
            Ok((commands, replay_keys)) => {
                tracing::info!(commands, replay_keys, "pruned records past their keeping")
            }
            Err(e) => tracing::error!(error.cause_chain = ?e, "housekeeping failed; retrying next interval"),
        }
        tokio::time::sleep(HOUSEKEEPING_INTERVAL).await;
    }
}

/// How often channels' upkeep runs: a WeChat token is renewed in the last five minutes of its
/// two hours, so each minute gives the task several chances.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Runs each channel's upkeep (`Channel::upkeep`) for each of its enabled targets; returns how
/// many were kept. A target whose upkeep fails is logged and left to its workers (and the next
/// round); the others go on.
pub async fn try_channel_upkeep(hub: &Hub) -> crate::error::Result<usize> {
    let mut kept = 0;
    for kind in hub.channels.kinds() {
        let Some(upkeep) = hub.channels.get(kind).and_then(|adapter| adapter.upkeep()) else {
            continue;
        };
        let ids: Vec<String> = target::Entity::find()
            .select_only()
            .column(target::Column::Id)
            .filter(target::Column::Channel.eq(kind))
            .filter(target::Column::Enabled.eq(true))
            .into_tuple()
            .all(&hub.db)
            .await?;
        let named: Vec<&str> = ids.iter().map(String::as_str).collect();
        let targets = TargetRefs::load(hub, &named).await?;
        for id in &named {
            let kept_one = match targets.target_ref(id) {
                Ok(target) => upkeep.upkeep(&target).await,
                Err(e) => Err(e.to_string()),
            };
            match kept_one {
                Ok(()) => kept += 1,
                Err(e) => tracing::warn!(
                    target = id,
                    channel = kind.as_str(),
                    error = e,
                    "channel upkeep failed"
                ),
            }
        }
    }
    Ok(kept)
}

pub async fn run_upkeep_until_stopped(hub: Arc<Hub>) -> anyhow::Result<()> {
    loop {
        if let Err(e) = try_channel_upkeep(&hub).await {
            tracing::error!(error.cause_chain = ?e, "channel upkeep failed; retrying next interval");
        }
        tokio::time::sleep(UPKEEP_INTERVAL).await;
    }
}
