//! `Hub`: the store plus the configuration every operation consults. One per process; HTTP
//! handlers, the CLI and workers all act through it.

use anyhow::Context;
use regex::Regex;
use sea_orm::DatabaseConnection;

use herald_channels::ChannelRegistry;

use crate::{
    clock::Clock,
    config::Settings,
    domain::{
        area::{AreaTree, DEMO_AREAS},
        calendar::{DEFAULT_CALENDAR, WorkCalendar},
        catalog::{Catalog, DEFAULT_CATALOG},
        organ::{DEFAULT_ORGANS, OrganList, organs_from_toml},
        topic::{DEFAULT_TOPICS, TopicVocabulary},
    },
    secrets::SecretsKey,
    telemetry::Metrics,
};

pub struct Hub {
    pub db: DatabaseConnection,
    /// Where the delivery worker's claims are written (see `LeaseWriter`).
    pub leases: crate::store::LeaseWriter,
    pub settings: Settings,
    pub areas: AreaTree,
    pub catalog: Catalog,
    pub calendar: WorkCalendar,
    /// 主题分类: the vocabulary an item's topic is taken from.
    pub topics: TopicVocabulary,
    pub index_no_pattern: Regex,
    pub clock: Clock,
    /// Channel adapters; tests may register their own before the hub is shared.
    pub channels: ChannelRegistry,
    /// This hub's Prometheus metrics, rendered at `/metrics`.
    pub metrics: Metrics,
    /// Seals and opens target secrets; `None` when no key is configured (then targets cannot
    /// be given secrets).
    pub secrets_key: Option<SecretsKey>,
    /// The MQTT session village devices are reached through, when `mqtt.url` is set.
    pub device_link: Option<std::sync::Arc<crate::device_link::MqttLink>>,
    /// Its event loop, for `delivery::gateway::run_until_stopped` to take.
    pub device_events: crate::device_link::DeviceEvents,
    /// Wakes this process's idle worker loops when its own commits make deliveries due or
    /// store receipts.
    pub due: crate::store::due::DueSignal,
    /// Deliveries this process's publishes leased to its own idle claim loops, waiting for
    /// them in memory.
    pub handoff: crate::store::handoff::Handoff,
}

fn read_or_builtin(path: &str, builtin: &'static str) -> anyhow::Result<String> {
    if path.is_empty() {
        Ok(builtin.to_owned())
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
    }
}

/// Reference data the settings point at, loaded and checked before anything opens.
pub struct ReferenceData {
    pub areas: AreaTree,
    pub catalog: Catalog,
    pub calendar: WorkCalendar,
    /// The organ list the file seeds (the list itself lives in the database, where
    /// administrators edit it: the `organs` module).
    pub organs: OrganList,
    pub topics: TopicVocabulary,
    pub index_no_pattern: Regex,
}

impl ReferenceData {
    pub fn load(settings: &Settings) -> anyhow::Result<Self> {
        let content = &settings.content;
        let areas = AreaTree::from_toml(&read_or_builtin(&content.areas_file, DEMO_AREAS)?)
            .context("content.areas_file")?;
        let catalog = Catalog::from_toml(&read_or_builtin(&content.catalog_file, DEFAULT_CATALOG)?)
            .context("content.catalog_file")?;
        let calendar = WorkCalendar::from_toml(&read_or_builtin(&content.calendar_file, DEFAULT_CALENDAR)?)
            .context("content.calendar_file")?;
        let organs = organs_from_toml(&read_or_builtin(&content.organs_file, DEFAULT_ORGANS)?, &areas)
            .context("content.organs_file")?;
        let topics = TopicVocabulary::from_toml(&read_or_builtin(&content.topics_file, DEFAULT_TOPICS)?)
            .context("content.topics_file")?;
        let index_no_pattern = Regex::new(&content.index_no_pattern).context("content.index_no_pattern")?;
        Ok(Self {
            areas,
            catalog,
            calendar,
            organs,
            topics,
            index_no_pattern,
        })
    }
}
