//! `herald bench receipts`: N `accepted` deliveries, one receipt each taken in through the
//! same `inbox::intake` the callback route uses, then applied in batches of 1,000 by the hub's
//! applying loops side by side (`delivery.receipt_appliers`); prints
//! receipts per second for the apply step (and, apart, for intake).

use std::{sync::Arc, time::Instant};

use futures::StreamExt;
use herald_channels::{ChannelKind, ChannelReceipt, Correlation, ReceiptStatus};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use super::{
    BenchOptions, InstantDevices, backend_name, drain_loudspeakers, drop_scratch, err,
    publish_to_loudspeakers, scratch,
};
use crate::{
    clock::Clock,
    config::Settings,
    delivery::{self, DeliveryState, inbox},
    startup::open_hub,
    store::entities::delivery as delivery_row,
};

/// Receipts per apply transaction, as the worker's applying loops take them.
const APPLY_BATCH: u64 = 1000;

pub async fn receipts(options: BenchOptions) -> anyhow::Result<()> {
    let scratch = scratch(&options).await?;
    let result = run(&scratch.settings, &options).await;
    drop_scratch(scratch).await?;
    result
}

async fn run(settings: &Settings, options: &BenchOptions) -> anyhow::Result<()> {
    let mut hub = open_hub(settings.clone(), Clock::System).await?;
    hub.channels
        .register(Arc::new(InstantDevices { accepting: true }));
    let loops = super::idle_loudspeaker_loops(&hub);
    let item_id = publish_to_loudspeakers(&hub, options.targets).await?.item_id;
    drain_loudspeakers(&hub, &loops).await?;
    if crate::store::is_postgres(&hub.db) {
        // The scratch tables were empty when PostgreSQL last planned for them, and the drain
        // just left a dead row version behind for each delivery. By the time a village's
        // reports come in, minutes later, autovacuum has analyzed and vacuumed them; here it
        // would start in the middle of the timing, planning lookups as scans of tables it
        // takes for empty and competing for the same two cores.
        hub.db.execute_unprepared("VACUUM ANALYZE").await?;
    }
    let accepted: Vec<(String, Option<String>)> = delivery_row::Entity::find()
        .select_only()
        .column(delivery_row::Column::TargetId)
        .column(delivery_row::Column::ExternalId)
        .filter(delivery_row::Column::ItemId.eq(&item_id))
        .filter(delivery_row::Column::State.eq(DeliveryState::Accepted))
        .into_tuple()
        .all(&hub.db)
        .await?;
    anyhow::ensure!(
        accepted.len() == options.targets,
        "expected {} accepted deliveries, found {}",
        options.targets,
        accepted.len()
    );

    // One callback per device, as a device reports; 32 in flight, as a server would take them.
    let hub = &hub;
    let started = Instant::now();
    let stored: Vec<anyhow::Result<u64>> = futures::stream::iter(accepted.into_iter().enumerate())
        .map(|(i, (target_id, external_id))| async move {
            let receipt = ChannelReceipt {
                correlation: Correlation::ExternalId(external_id.unwrap_or_default()),
                status: ReceiptStatus::Delivered,
                source_time: None,
                dedup: format!("bench-{i}"),
                raw: serde_json::json!({"event": "delivered", "seq": i}),
            };
            inbox::intake(
                &hub.db,
                ChannelKind::Loudspeaker,
                &target_id,
                &[receipt],
                hub.clock.now(),
            )
            .await
            .map_err(err)
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let intake_time = started.elapsed();
    let mut intaken = 0;
    for result in stored {
        intaken += result?;
    }

    // The hub's applying loops side by side (`delivery.receipt_appliers`), each until its
    // share is empty.
    let shares = inbox::ApplierShare::of_hub(hub);
    let appliers = shares.len();
    let started = Instant::now();
    let apply_loop = |share| async move {
        let mut batch_times = Vec::new();
        let mut applied = 0;
        loop {
            let batch_started = Instant::now();
            let n = inbox::try_apply_share(hub, share, APPLY_BATCH)
                .await
                .map_err(err)?;
            if n == 0 {
                return Ok::<_, anyhow::Error>((applied, batch_times));
            }
            batch_times.push(batch_started.elapsed());
            applied += n;
        }
    };
    let (mut applied, mut batch_times) = (0, Vec::new());
    for result in futures::future::join_all(shares.into_iter().map(apply_loop)).await {
        let (n, times) = result?;
        applied += n;
        batch_times.extend(times);
    }
    let batches = batch_times.len();
    let apply_time = started.elapsed();
    batch_times.sort();
    let summary = delivery::summary(&hub.db, &item_id).await.map_err(err)?;
    let delivered: i64 = summary
        .iter()
        .filter(|r| r.state == DeliveryState::Delivered)
        .map(|r| r.count)
        .sum();
    let rate = |n: usize, t: std::time::Duration| n as f64 / t.as_secs_f64().max(f64::EPSILON);
    println!("backend: {}", backend_name(hub));
    println!("accepted deliveries: {}", options.targets);
    println!(
        "intake {intaken} receipts (one callback each, 32 at a time): {:.3} s, {:.0} receipts/s",
        intake_time.as_secs_f64(),
        rate(intaken as usize, intake_time)
    );
    println!(
        "apply {applied} receipts ({batches} batches of up to {APPLY_BATCH}; applying loops: {appliers}): {:.3} s, {:.0} receipts/s",
        apply_time.as_secs_f64(),
        rate(applied, apply_time)
    );
    if let (Some(fastest), Some(slowest)) = (batch_times.first(), batch_times.last()) {
        println!(
            "apply batches: fastest {:.1} ms, median {:.1} ms, slowest {:.1} ms",
            fastest.as_secs_f64() * 1000.0,
            batch_times[batch_times.len() / 2].as_secs_f64() * 1000.0,
            slowest.as_secs_f64() * 1000.0
        );
    }
    anyhow::ensure!(
        delivered as usize == options.targets,
        "expected {} delivered, the counts say {delivered}",
        options.targets
    );
    Ok(())
}
