//! The composition root: the one place that knows which adapters exist and what a fresh hub
//! must find in its store. Lower layers take a `Hub` and never build one.

use std::sync::Arc;

use herald_channels::{
    ChannelKind, ChannelRegistry,
    devices::DeviceChannel,
    media_center::MediaCenter,
    portal::Portal,
    wechat::{adapter::WeChat, tokens::AccessTokens},
};

use crate::{
    clock::Clock,
    config::Settings,
    delivery::{targets, wechat_tokens::StoredTokens},
    device_link::{self, DeviceEvents, MqttLink},
    hub::{Hub, ReferenceData},
    organs,
    portal::store::DbPortalStore,
    store,
    telemetry::Metrics,
};

/// Connects, brings the schema up to date, registers the channel adapters and makes sure the
/// portal has its target row and the organ list the organs of `content.organs_file`.
pub async fn open_hub(settings: Settings, clock: Clock) -> anyhow::Result<Hub> {
    let reference = ReferenceData::load(&settings)?;
    let secrets_key = settings.storage.open_secrets_key()?;
    let db = store::connect(&settings.storage).await?;
    store::migrate(&db).await?;
    let leases = store::LeaseWriter::connect(&settings.storage, &db).await?;
    crate::items::fill_search_keys(&db).await?;
    crate::portal::store::fill_search_keys(&db).await?;
    let mut channels = channel_registry(&db, &clock, &settings, &secrets_key)?;
    let (device_link, device_events) = match (&settings.mqtt.url, &secrets_key) {
        (url, _) if url.is_empty() => (None, DeviceEvents::default()),
        (_, None) => {
            anyhow::bail!("mqtt.url needs storage.secrets_key: the key devices trust is derived from it")
        }
        (_, Some(key)) => {
            let (link, events) = device_link::connect(&settings.mqtt, key, db.clone(), clock.clone())?;
            register_device_channels(&mut channels, &link, &settings);
            (Some(link), events)
        }
    };
    let hub = Hub {
        db,
        leases,
        settings,
        areas: reference.areas,
        catalog: reference.catalog,
        calendar: reference.calendar,
        topics: reference.topics,
        index_no_pattern: reference.index_no_pattern,
        clock,
        channels,
        metrics: Metrics::new()?,
        secrets_key,
        device_link,
        device_events,
        due: store::due::DueSignal::default(),
        handoff: store::handoff::Handoff::default(),
    };
    targets::ensure_portal_target(&hub)
        .await
        .map_err(|e| anyhow::anyhow!("registering the portal target: {e}"))?;
    organs::seed(&hub, &reference.organs)
        .await
        .map_err(|e| anyhow::anyhow!("seeding the organ list from content.organs_file: {e}"))?;
    Ok(hub)
}

/// The loudspeaker and notice-board adapters, over the hub's device link.
fn register_device_channels(channels: &mut ChannelRegistry, link: &Arc<MqttLink>, settings: &Settings) {
    let lifetime = std::time::Duration::from_secs(settings.mqtt.command_lifetime_seconds);
    for kind in [ChannelKind::Loudspeaker, ChannelKind::NoticeBoard] {
        channels.register(Arc::new(DeviceChannel::new(
            kind,
            link.clone(),
            settings.server.public_url.clone(),
            lifetime,
        )));
    }
}

/// Adding a channel is one `register` line here (plus its module in `channels/`).
fn channel_registry(
    db: &sea_orm::DatabaseConnection,
    clock: &Clock,
    settings: &Settings,
    secrets_key: &Option<crate::secrets::SecretsKey>,
) -> anyhow::Result<ChannelRegistry> {
    let mut channels = ChannelRegistry::default();
    let portal_store = DbPortalStore {
        db: db.clone(),
        clock: clock.clone(),
    };
    channels.register(Arc::new(Portal::new(Arc::new(portal_store))));
    // Asked for by name, so a build without TLS fails here rather than at a county's first
    // https:// call.
    let client = reqwest::Client::builder().use_rustls_tls().build()?;
    let now = {
        let clock = clock.clone();
        Arc::new(move || clock.now())
    };
    channels.register(Arc::new(MediaCenter::new(
        client.clone(),
        &settings.server.public_url,
        now.clone(),
    )));
    let token_store = StoredTokens::new(db.clone(), secrets_key.clone(), clock.clone());
    let tokens = AccessTokens::new(client.clone(), Arc::new(token_store), now);
    let images = Arc::new(crate::attachments::StoredImages { db: db.clone() });
    channels.register(Arc::new(WeChat::new(
        client,
        tokens,
        images,
        &settings.server.public_url,
    )));
    Ok(channels)
}
