//! `herald bench publish`: the cost of publishing one item to many targets, and of reading its
//! delivery summary, on a scratch database. Prints figures; judges nothing.

mod fanout;
mod portal;
mod receipts;
mod search;

pub use fanout::{FanoutOptions, fanout};
pub use portal::{PortalOptions, portal};
pub use receipts::receipts;
pub use search::{SearchOptions, search};

use std::{path::PathBuf, time::Instant};

use anyhow::Context;
use herald_channels::{
    Channel, ChannelKind, DeliveryOutcome, Dispatch, PublishedItem, RenderError, Rendition, TargetRef,
    WithdrawOutcome,
};
use sea_orm::{ConnectionTrait, Database, EntityTrait, Set};

use crate::{
    accounts::{self, NewUser},
    clock::Clock,
    config::Settings,
    delivery,
    domain::{
        item::{Disclosure, Genre, ItemInput},
        user::Role,
    },
    hub::Hub,
    idempotency::IdempotencyKey,
    startup::open_hub,
    store::entities::target,
    workflow::{self, ApproveInput, ConfidentialityCheckInput, PublishInput},
};

pub struct BenchOptions {
    pub targets: usize,
    pub summary_runs: usize,
    /// A PostgreSQL server to benchmark on (a scratch database is created and dropped); none: SQLite.
    pub postgres_url: Option<String>,
}

struct Scratch {
    settings: Settings,
    dir: Option<PathBuf>,
    postgres: Option<(String, String)>,
}

async fn scratch(options: &BenchOptions) -> anyhow::Result<Scratch> {
    let mut settings = Settings::default();
    let dir = std::env::temp_dir().join(format!("herald-bench-{}", uuid::Uuid::new_v4().simple()));
    settings.storage.data_dir = dir.clone();
    let postgres = match &options.postgres_url {
        Some(base) => {
            let name = format!("herald_bench_{}", uuid::Uuid::new_v4().simple());
            let admin = Database::connect(base.as_str())
                .await
                .context("connecting to --postgres")?;
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await?;
            let (prefix, _) = base
                .split('?')
                .next()
                .unwrap_or(base)
                .rsplit_once('/')
                .context("the URL names no database")?;
            settings.storage.database_url = format!("{prefix}/{name}");
            Some((base.clone(), name))
        }
        None => None,
    };
    Ok(Scratch {
        settings,
        dir: Some(dir),
        postgres,
    })
}

/// Runs `bench` on a scratch database (PostgreSQL at `postgres_url`, or SQLite), dropped
/// afterwards whatever `bench` answered.
async fn on_scratch<F: std::future::Future<Output = anyhow::Result<()>>>(
    postgres_url: Option<String>,
    bench: impl FnOnce(Settings) -> F,
) -> anyhow::Result<()> {
    let options = BenchOptions {
        targets: 0,
        summary_runs: 0,
        postgres_url,
    };
    let scratch = scratch(&options).await?;
    let result = bench(scratch.settings.clone()).await;
    drop_scratch(scratch).await?;
    result
}

async fn drop_scratch(scratch: Scratch) -> anyhow::Result<()> {
    if let Some((base, name)) = scratch.postgres {
        let admin = Database::connect(base.as_str()).await?;
        admin
            // FORCE: a device process the benchmark started may not have closed its
            // connections yet (PostgreSQL 13 and later).
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await?;
    }
    if let Some(dir) = scratch.dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

fn item(area: &str) -> ItemInput {
    ItemInput {
        title: "基准测试：关于做好秋冬季森林防火工作的通知".into(),
        body:
            "<p>各乡镇人民政府、县直有关部门：为切实做好秋冬季森林草原防灭火工作，现将有关事项通知如下。</p>"
                .repeat(20),
        summary: "基准测试".into(),
        disclosure: Disclosure::Public,
        redacted_body: None,
        legal_reason: None,
        index_no: "000014349/2026-99999".into(),
        issuers: vec!["峨山彝族自治县人民政府办公室".into()],
        doc_no: Some("峨政办发〔2026〕99号".into()),
        written_date: chrono::NaiveDate::from_ymd_opt(2026, 9, 28).unwrap_or_default(),
        topic: vec!["综合政务".into()],
        validity: None,
        genre: Genre::Notice,
        keywords: Vec::new(),
        catalog: "art20-12".into(),
        area_code: area.into(),
        tags: Vec::new(),
        attachments: Vec::new(),
        emergency: false,
        expires_on: None,
        interprets: None,
        correction_note: None,
        // Every run publishes the same document again.
        confirm_duplicate_doc_no: true,
    }
}

fn err(e: crate::error::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub async fn publish(options: BenchOptions) -> anyhow::Result<()> {
    let scratch = scratch(&options).await?;
    let result = run_publish(&scratch.settings, &options).await;
    drop_scratch(scratch).await?;
    result
}

/// What `sql`, a `SELECT COUNT(*)`, counts.
async fn count(db: &sea_orm::DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql))
        .await?
        .context("a count")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// The value at fraction `p` of `sorted` (nearest rank).
fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

fn backend_name(hub: &Hub) -> &'static str {
    if crate::store::is_postgres(&hub.db) {
        "PostgreSQL"
    } else {
        "SQLite"
    }
}

/// A publisher, and an item by them approved by a reviewer, ready to publish.
async fn approved_item(hub: &Hub) -> anyhow::Result<(crate::accounts::Caller, String)> {
    approved(hub, false).await
}

/// As `approved_item`, flagged an emergency if `emergency`.
async fn approved(hub: &Hub, emergency: bool) -> anyhow::Result<(crate::accounts::Caller, String)> {
    let root = hub.areas.root().code.to_string();
    let mut callers = Vec::new();
    for (name, role) in [
        ("bench-publisher", Role::Publisher),
        ("bench-reviewer", Role::Reviewer),
    ] {
        let new = NewUser {
            username: name.into(),
            display_name: String::new(),
            role,
            area_code: root.clone(),
            password: Some("bench-password".into()),
        };
        let (user, _) = accounts::create_user(hub, "bench", None, new)
            .await
            .map_err(err)?;
        callers.push(crate::accounts::Caller {
            id: user.id,
            username: user.username,
            role,
            area: hub.areas.root().code.clone(),
            must_change_password: false,
        });
    }
    let reviewer = callers.pop().context("reviewer")?;
    let publisher = callers.pop().context("publisher")?;
    let mut input = item(&root);
    input.emergency = emergency;
    let view = workflow::create_item(hub, &publisher, input).await.map_err(err)?;
    workflow::submit(hub, &publisher, &view.id).await.map_err(err)?;
    let check = ConfidentialityCheckInput {
        version: 1,
        confirmed: true,
        comment: String::new(),
    };
    workflow::confidentiality_check(hub, &reviewer, &view.id, check)
        .await
        .map_err(err)?;
    let approval = ApproveInput {
        version: 1,
        comment: String::new(),
    };
    workflow::approve(hub, &reviewer, &view.id, approval)
        .await
        .map_err(err)?;
    Ok((publisher, view.id))
}

/// Registers `count` targets of `channel` in `area`, in bulk.
async fn add_targets(hub: &Hub, channel: ChannelKind, area: &str, count: usize) -> anyhow::Result<()> {
    let now = hub.clock.now();
    let rows: Vec<target::ActiveModel> = (0..count)
        .map(|i| target::ActiveModel {
            id: Set(format!("bench-{}-{i:07}", channel.as_str()).into()),
            channel: Set(channel),
            name: Set(format!("{}{i}", channel.label_zh())),
            area_code: Set(area.to_owned()),
            catalogs: Set("[]".into()),
            tags: Set("[]".into()),
            config: Set("{}".into()),
            enabled: Set(true),
            created_at: Set(now),
        })
        .collect();
    for chunk in rows.chunks(1000) {
        target::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&hub.db)
            .await?;
    }
    Ok(())
}

async fn run_publish(settings: &Settings, options: &BenchOptions) -> anyhow::Result<()> {
    let hub = open_hub(settings.clone(), Clock::System).await?;
    let root = hub.areas.root().code.to_string();
    let (publisher, item_id) = approved_item(&hub).await?;
    // The built-in portal target is one; add the rest in bulk.
    add_targets(
        &hub,
        ChannelKind::Portal,
        &root,
        options.targets.saturating_sub(1),
    )
    .await?;

    let key = IdempotencyKey::parse("bench").map_err(err)?;
    let started = Instant::now();
    let outcome = workflow::publish(&hub, &publisher, &item_id, &key, PublishInput::default())
        .await
        .map_err(err)?;
    let publish_time = started.elapsed();
    let written = outcome.body["deliveries"]["portal"].as_u64().unwrap_or(0);

    let mut summary_times = Vec::with_capacity(options.summary_runs);
    for _ in 0..options.summary_runs.max(1) {
        let started = Instant::now();
        let summary = delivery::summary(&hub.db, &item_id).await.map_err(err)?;
        summary_times.push(started.elapsed());
        anyhow::ensure!(
            summary.iter().map(|r| r.count).sum::<i64>() as u64 == written,
            "summary disagrees with the deliveries written"
        );
    }
    summary_times.sort();
    let median = summary_times[summary_times.len() / 2];
    let max = summary_times[summary_times.len() - 1];
    println!("backend: {}", backend_name(&hub));
    println!("targets: {}", options.targets);
    println!("deliveries written: {written}");
    println!(
        "publish (resolve targets, render, write deliveries, commit): {:.3} s",
        publish_time.as_secs_f64()
    );
    println!(
        "item delivery summary (counts + first page of rows) over {} runs: median {:.2} ms, max {:.2} ms",
        summary_times.len(),
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
    anyhow::ensure!(
        written as usize == options.targets,
        "expected {} deliveries, wrote {written}",
        options.targets
    );
    Ok(())
}

/// A loudspeaker channel that answers at once: what the engine costs, without any device.
/// `accepting` devices acknowledge and report later (`bench receipts`); the others are done.
pub(crate) struct InstantDevices {
    pub accepting: bool,
}

impl InstantDevices {
    fn answer(&self, dispatch: &Dispatch<'_>) -> DeliveryOutcome {
        if self.accepting {
            DeliveryOutcome::Accepted {
                external_id: format!("ack-{}", dispatch.idempotency_key),
                confirm_within: None,
                checkpoint: None,
            }
        } else {
            DeliveryOutcome::Delivered { external_id: None }
        }
    }
}

#[async_trait::async_trait]
impl Channel for InstantDevices {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Loudspeaker
    }

    fn render(&self, item: &PublishedItem) -> Result<Rendition, RenderError> {
        Ok(Rendition {
            channel: ChannelKind::Loudspeaker,
            payload: serde_json::json!({"title": item.title}),
        })
    }

    async fn deliver(&self, _: &Rendition, dispatch: &Dispatch<'_>) -> DeliveryOutcome {
        self.answer(dispatch)
    }

    async fn deliver_batch(&self, _: &Rendition, dispatches: &[Dispatch<'_>]) -> Vec<DeliveryOutcome> {
        dispatches.iter().map(|dispatch| self.answer(dispatch)).collect()
    }

    async fn withdraw(&self, _: &str, _: &TargetRef, _: Option<&str>, _: &str, _: &str) -> WithdrawOutcome {
        WithdrawOutcome::Withdrawn
    }
}

/// One item published to `targets` loudspeakers in a village, timed.
pub(crate) struct Published {
    pub item_id: String,
    pub written: u64,
    pub took: std::time::Duration,
}

/// The first village of the area tree, where the benchmarks' devices stand.
fn first_village(hub: &Hub) -> anyhow::Result<String> {
    hub.areas
        .iter()
        .find(|a| a.code.level() == crate::domain::area::AreaLevel::Village)
        .map(|a| a.code.to_string())
        .context("the area tree has no village")
}

pub(crate) async fn publish_to_loudspeakers(hub: &Hub, targets: usize) -> anyhow::Result<Published> {
    let village = first_village(hub)?;
    let (publisher, item_id) = approved_item(hub).await?;
    add_targets(hub, ChannelKind::Loudspeaker, &village, targets).await?;
    let input = PublishInput {
        channels: vec![ChannelKind::Loudspeaker],
        ..PublishInput::default()
    };
    let key = IdempotencyKey::parse("bench").map_err(err)?;
    let started = Instant::now();
    let outcome = workflow::publish(hub, &publisher, &item_id, &key, input)
        .await
        .map_err(err)?;
    let took = started.elapsed();
    let written = outcome.body["deliveries"]["loudspeaker"].as_u64().unwrap_or(0);
    Ok(Published {
        item_id,
        written,
        took,
    })
}

/// The loudspeaker channel's claim loops of one worker, as `herald serve` runs them, idle:
/// a publish meanwhile leases its deliveries to them and hands them over
/// (`store::handoff`), as it would to a waiting hub's.
pub(crate) fn idle_loudspeaker_loops(hub: &Hub) -> Vec<crate::store::handoff::Listener<'_>> {
    let claimers = hub
        .settings
        .delivery
        .limits_for(ChannelKind::Loudspeaker)
        .claimers;
    (0..claimers)
        .map(|_| {
            let listener = hub.handoff.listen(ChannelKind::Loudspeaker, "bench-worker");
            listener.set_idle(true);
            listener
        })
        .collect()
}

/// Works off every due loudspeaker delivery as one worker would, its claim loops (`loops`)
/// side by side, pass after pass, until none finds anything; returns how many deliveries
/// they handled and in how many passes.
pub(crate) async fn drain_loudspeakers(
    hub: &Hub,
    loops: &[crate::store::handoff::Listener<'_>],
) -> anyhow::Result<(usize, usize)> {
    let in_flight = delivery::worker::InFlight::default();
    let claim_loop = |listener| {
        let in_flight = &in_flight;
        async move {
            let (mut drained, mut passes) = (0, 0);
            loop {
                let handled = delivery::worker::try_execute_listening(hub, in_flight, listener)
                    .await
                    .map_err(err)?;
                if handled == 0 {
                    return Ok::<_, anyhow::Error>((drained, passes));
                }
                drained += handled;
                passes += 1;
            }
        }
    };
    let mut total = (0, 0);
    for handled in futures::future::join_all(loops.iter().map(claim_loop)).await {
        let (drained, passes) = handled?;
        total = (total.0 + drained, total.1 + passes);
    }
    Ok(total)
}

/// `herald bench deliver`: publish to many loudspeakers answering at once, then drain every
/// delivery to `delivered`; prints the write time, the drain time and their ratio. The claim
/// loops wait idle at the publish (it hands its deliveries over) or, not `idle_loops`, are
/// busy (the deliveries are claimed).
pub async fn deliver(options: BenchOptions, idle_loops: bool) -> anyhow::Result<()> {
    // The loudspeaker channel's default limits, as a county runs it.
    let scratch = scratch(&options).await?;
    let result = run_deliver(&scratch.settings, &options, idle_loops).await;
    drop_scratch(scratch).await?;
    result
}

async fn run_deliver(settings: &Settings, options: &BenchOptions, idle_loops: bool) -> anyhow::Result<()> {
    let mut hub = open_hub(settings.clone(), Clock::System).await?;
    hub.channels
        .register(std::sync::Arc::new(InstantDevices { accepting: false }));
    let loops = idle_loudspeaker_loops(&hub);
    if !idle_loops {
        for listener in &loops {
            listener.set_idle(false);
        }
    }
    let published = publish_to_loudspeakers(&hub, options.targets).await?;
    let (item_id, written, write_time) = (published.item_id, published.written, published.took);
    // Outside the timing: how many the publish leased to the idle loops.
    let handed = count(&hub.db, "SELECT COUNT(*) FROM deliveries WHERE state = 'sending'").await?;
    let started = Instant::now();
    let (drained, passes) = drain_loudspeakers(&hub, &loops).await?;
    let drain_time = started.elapsed();
    let summary = delivery::summary(&hub.db, &item_id).await.map_err(err)?;
    let delivered: i64 = summary
        .iter()
        .filter(|r| r.state == delivery::DeliveryState::Delivered)
        .map(|r| r.count)
        .sum();
    let limits = hub.settings.delivery.limits_for(ChannelKind::Loudspeaker);
    println!("backend: {}", backend_name(&hub));
    println!(
        "targets: {} loudspeakers (instant adapter; batch {}, in flight {}, {} claim loops)",
        options.targets, limits.batch_size, limits.in_flight, limits.claimers
    );
    println!(
        "write {written} deliveries (publish, one transaction): {:.3} s",
        write_time.as_secs_f64()
    );
    let loops_were = if idle_loops { "idle" } else { "busy" };
    println!(
        "  claim loops at the publish: {loops_were}; deliveries it leased to them (handed over): {handed}"
    );
    println!(
        "drain {drained} deliveries to delivered ({passes} batches): {:.3} s",
        drain_time.as_secs_f64()
    );
    println!(
        "drain / write: {:.2}",
        drain_time.as_secs_f64() / write_time.as_secs_f64().max(f64::EPSILON)
    );
    println!(
        "publish to the last delivered (write + drain): {:.3} s",
        (write_time + drain_time).as_secs_f64()
    );
    anyhow::ensure!(
        written as usize == options.targets && delivered as usize == options.targets,
        "expected {} delivered, wrote {written}, delivered {delivered}",
        options.targets
    );
    Ok(())
}
