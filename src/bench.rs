//! `herald bench publish`: the cost of publishing one item to many targets, and of reading its
//! delivery summary, on a scratch database. Prints figures; judges nothing.

use std::{path::PathBuf, time::Instant};

use anyhow::Context;
use herald_channels::ChannelKind;
use sea_orm::{ConnectionTrait, Database, EntityTrait, Set};

use crate::{
    accounts::{self, NewUser},
    config::Settings,
    delivery,
    domain::{
        item::{Disclosure, Genre, ItemInput},
        user::Role,
    },
    hub::{Clock, Hub},
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

async fn drop_scratch(scratch: Scratch) -> anyhow::Result<()> {
    if let Some((base, name)) = scratch.postgres {
        let admin = Database::connect(base.as_str()).await?;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\""))
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
    }
}

fn err(e: crate::error::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub async fn publish(options: BenchOptions) -> anyhow::Result<()> {
    let scratch = scratch(&options).await?;
    let result = run(&scratch.settings, &options).await;
    drop_scratch(scratch).await?;
    result
}

async fn run(settings: &Settings, options: &BenchOptions) -> anyhow::Result<()> {
    let hub = Hub::open(settings.clone(), Clock::System).await?;
    let backend = if crate::store::is_postgres(&hub.db) {
        "PostgreSQL"
    } else {
        "SQLite"
    };
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
        let (user, _) = accounts::create_user(&hub, "bench", None, new)
            .await
            .map_err(err)?;
        callers.push(crate::accounts::Caller {
            id: user.id,
            username: user.username,
            role,
            area: hub.areas.root().code.clone(),
        });
    }
    let (publisher, reviewer) = (&callers[0], &callers[1]);

    // The built-in portal target is one; add the rest in bulk.
    let now = hub.clock.now();
    let extra = options.targets.saturating_sub(1);
    let rows: Vec<target::ActiveModel> = (0..extra)
        .map(|i| target::ActiveModel {
            id: Set(format!("bench-target-{i:07}")),
            channel: Set(ChannelKind::Portal.as_str().into()),
            name: Set(format!("栏目{i}")),
            area_code: Set(root.clone()),
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

    let view = workflow::create_item(&hub, publisher, item(&root))
        .await
        .map_err(err)?;
    workflow::submit(&hub, publisher, &view.id).await.map_err(err)?;
    let check = ConfidentialityCheckInput {
        version: 1,
        confirmed: true,
        comment: String::new(),
    };
    workflow::confidentiality_check(&hub, reviewer, &view.id, check)
        .await
        .map_err(err)?;
    workflow::approve(
        &hub,
        reviewer,
        &view.id,
        ApproveInput {
            version: 1,
            comment: String::new(),
        },
    )
    .await
    .map_err(err)?;

    let started = Instant::now();
    let outcome = workflow::publish(&hub, publisher, &view.id, "bench", PublishInput::default())
        .await
        .map_err(err)?;
    let publish_time = started.elapsed();
    let written = outcome.body["deliveries"]["portal"].as_u64().unwrap_or(0);

    let mut summary_times = Vec::with_capacity(options.summary_runs);
    for _ in 0..options.summary_runs.max(1) {
        let started = Instant::now();
        let summary = delivery::summary(&hub.db, &view.id).await.map_err(err)?;
        summary_times.push(started.elapsed());
        anyhow::ensure!(
            summary.iter().map(|r| r.count).sum::<i64>() as u64 == written,
            "summary disagrees with the deliveries written"
        );
    }
    summary_times.sort();
    let median = summary_times[summary_times.len() / 2];
    let max = summary_times[summary_times.len() - 1];
    println!("backend: {backend}");
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
