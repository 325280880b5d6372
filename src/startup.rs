//! The composition root: the one place that knows which adapters exist and what a fresh hub
//! must find in its store. Lower layers take a `Hub` and never build one.

use std::sync::Arc;

use herald_channels::{ChannelRegistry, portal::Portal};

use crate::{
    clock::Clock,
    config::Settings,
    delivery::targets,
    hub::{Hub, ReferenceData},
    portal::store::DbPortalStore,
    store,
    telemetry::Metrics,
};

/// Connects, brings the schema up to date, registers the channel adapters and makes sure the
/// portal has its target row.
pub async fn open_hub(settings: Settings, clock: Clock) -> anyhow::Result<Hub> {
    let reference = ReferenceData::load(&settings)?;
    let secrets_key = settings.storage.open_secrets_key()?;
    let db = store::connect(&settings.storage).await?;
    store::migrate(&db).await?;
    let channels = channel_registry(&db, &clock);
    let hub = Hub {
        db,
        settings,
        areas: reference.areas,
        catalog: reference.catalog,
        calendar: reference.calendar,
        index_no_pattern: reference.index_no_pattern,
        clock,
        channels,
        metrics: Metrics::new()?,
        secrets_key,
    };
    targets::ensure_portal_target(&hub)
        .await
        .map_err(|e| anyhow::anyhow!("registering the portal target: {e}"))?;
    Ok(hub)
}

/// Adding a channel is one `register` line here (plus its module in `channels/`).
fn channel_registry(db: &sea_orm::DatabaseConnection, clock: &Clock) -> ChannelRegistry {
    let mut channels = ChannelRegistry::default();
    let portal_store = DbPortalStore {
        db: db.clone(),
        clock: clock.clone(),
    };
    channels.register(Arc::new(Portal::new(Arc::new(portal_store))));
    channels
}
