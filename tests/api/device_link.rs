//! Village devices over a real broker (the machine's Mosquitto, `HERALD_TEST_MQTT_URL`): the
//! hub signs and publishes, simulated devices (the protocol crate's own state machine over
//! rumqttc) verify, ack and play, and the hub's device link turns their reports into receipts.

use std::{sync::Arc, time::Duration};

use herald::{
    broker::EmbeddedBroker,
    delivery::{
        devices::{self, NewDevice},
        gateway, inbox,
    },
    hub::Hub,
    simulate::{self, Behaviour, Tally, VirtualDevice},
};
use herald_channels::ChannelKind;
use herald_firmware_protocol::{
    Command, CommandBody, KeyPair, Report, ReportBody,
    command::{AudioCodec, PlaySource},
    frame::{Direction, Frame},
    report::AckStage,
    topic,
};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::json;

use crate::helpers::{TestApp, cap_message, item_body, spawn_app_configured};
use crate::on_both_backends;

const VILLAGE: &str = "530426101001";

fn broker() -> Option<(String, u16)> {
    let url = std::env::var("HERALD_TEST_MQTT_URL").ok()?;
    Some(herald::device_link::broker_address(&url).expect("HERALD_TEST_MQTT_URL is mqtt://HOST:PORT"))
}

/// A device's key seed, from a number the test picks.
fn seed_bytes(n: u16) -> [u8; 32] {
    let mut seed = [7; 32];
    seed[..2].copy_from_slice(&n.to_le_bytes());
    seed
}

/// A device's signing key, from a number the test picks.
fn device_keys(n: u16) -> KeyPair {
    KeyPair::from_seed(&seed_bytes(n))
}

struct SimulatedDevice {
    device_id: String,
    channel: ChannelKind,
    seed: u16,
    /// Its broker login (the machine's Mosquitto lets anyone in; the in-process broker checks).
    credential: String,
    /// A loudspeaker's audio codecs and whether it speaks text (as its birth says).
    codecs: Vec<AudioCodec>,
    tts: bool,
}

/// Runs one device (`herald::simulate`) until the test ends, trusting the hub's issuer key
/// and keeping the hub's time.
async fn run_device(hub: Arc<Hub>, device: SimulatedDevice, key_id: u32, address: (String, u16)) {
    run_counted(hub, device, key_id, address, Arc::new(Tally::default())).await;
}

/// As `run_device`, counting into `tally`.
async fn run_counted(
    hub: Arc<Hub>,
    device: SimulatedDevice,
    key_id: u32,
    address: (String, u16),
    tally: Arc<Tally>,
) {
    run_behaving(hub, device, key_id, address, tally, Behaviour::default()).await;
}

/// As `run_counted`, behaving as told.
async fn run_behaving(
    hub: Arc<Hub>,
    device: SimulatedDevice,
    key_id: u32,
    address: (String, u16),
    tally: Arc<Tally>,
    behaviour: Behaviour,
) {
    let link = hub.device_link.clone().expect("a device link");
    let trusted = simulate::trusted(&link);
    let virtual_device = VirtualDevice {
        device_id: device.device_id,
        key_id,
        seed: seed_bytes(device.seed),
        screen: device.channel == ChannelKind::NoticeBoard,
        codecs: device.codecs,
        tts: device.tts,
        credential: Some(device.credential),
    };
    let now = simulate::hub_time(&hub.clock);
    if let Err(e) = simulate::run_device(virtual_device, trusted, address, now, behaviour, tally).await {
        panic!("the simulated device stopped: {e}");
    }
}

async fn target_of(app: &TestApp, device_id: &str) -> String {
    let listed = devices::list_devices(&app.hub, None).await.expect("list");
    let ids: Vec<String> = listed.iter().map(|d| d.device_id.clone()).collect();
    listed
        .into_iter()
        .find(|d| d.device_id == device_id)
        .map(|d| d.target_id)
        .unwrap_or_else(|| panic!("{device_id} is not among {ids:?}"))
}

/// States of the item's deliveries on `channel`.
async fn states(app: &TestApp, item: &str, channel: &str) -> Vec<String> {
    let listed = app
        .get(
            "admin",
            &format!("/api/v1/items/{item}/deliveries?channel={channel}&limit=500"),
        )
        .await
        .json;
    listed["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| d["state"].as_str().expect("state").to_owned())
        .collect()
}

/// Clears the retained statuses simulated devices left on the shared broker (each test's
/// devices leave theirs, and their wills after them): a hub subscribing takes every one at
/// once, and past the broker's queue (1,000 by default) the rest of its messages are dropped.
async fn clear_retained((host, port): &(String, u16)) {
    let options = MqttOptions::new(
        format!("sweeper-{}", uuid::Uuid::new_v4().simple()),
        host.clone(),
        *port,
    );
    let (client, mut events) = AsyncClient::new(options, 10_000);
    client
        .subscribe("herald/v1/d/+/status", QoS::AtMostOnce)
        .await
        .expect("subscribe");
    let mut topics = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(300), events.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))))
                if p.retain && !p.payload.is_empty() =>
            {
                topics.push(p.topic)
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("the test broker: {e}"),
            Err(_) => break,
        }
    }
    for topic in topics {
        client
            .publish(topic, QoS::AtMostOnce, true, Vec::new())
            .await
            .expect("clear");
    }
    client.disconnect().await.expect("disconnect");
    while tokio::time::timeout(Duration::from_millis(300), events.poll())
        .await
        .is_ok_and(|e| e.is_ok())
    {}
}

/// A hub with a device link to the test broker, its gateway running; `None` without a broker.
async fn linked_app(backend: crate::helpers::Backend) -> Option<(TestApp, (String, u16), String)> {
    let Some(address) = broker() else {
        eprintln!("HERALD_TEST_MQTT_URL is not set: no broker to test the device link on");
        return None;
    };
    clear_retained(&address).await;
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let url = format!("mqtt://{}:{}", address.0, address.1);
    let app = spawn_app_configured(backend, Vec::new(), |s| {
        s.mqtt.url = url;
    })
    .await;
    start_gateway(&app.hub).await;
    Some((app, address, run))
}

/// Runs the hub's gateway and waits until the broker confirmed its subscription: a device
/// born before that would go unheard. The gateway runs until the handle aborts it.
async fn start_gateway(hub: &Arc<Hub>) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let gateway = tokio::spawn(gateway::run_until_stopped(hub.clone()));
    let link = hub.device_link.clone().expect("a device link");
    for _ in 0..200 {
        if link.is_listening() {
            return gateway;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the hub did not subscribe to device reports within 10 s");
}

/// A hub whose devices connect to an in-process broker, as `herald serve` runs it when no
/// external broker is configured; its gateway running.
async fn embedded_app(backend: crate::helpers::Backend) -> (TestApp, (String, u16), String, EmbeddedBroker) {
    embedded_app_configured(backend, |_| {}).await
}

/// As `embedded_app`, the hub's public address set to where it listens, so devices can fetch
/// what it links to.
async fn embedded_app_at_public_url(
    backend: crate::helpers::Backend,
) -> (TestApp, (String, u16), String, EmbeddedBroker) {
    let port = crate::helpers::free_port();
    embedded_app_configured(backend, |s| {
        s.server.listen = format!("127.0.0.1:{port}");
        s.server.public_url = format!("http://127.0.0.1:{port}");
    })
    .await
}

async fn embedded_app_configured(
    backend: crate::helpers::Backend,
    configure: impl FnOnce(&mut herald::config::Settings),
) -> (TestApp, (String, u16), String, EmbeddedBroker) {
    let mut mqtt = herald::config::MqttSettings::default();
    let (broker, gate) = EmbeddedBroker::start_for_hub("127.0.0.1:0", &mut mqtt)
        .await
        .expect("the broker starts");
    let app = spawn_app_configured(backend, Vec::new(), |s| {
        s.mqtt = mqtt;
        configure(s);
    })
    .await;
    gate.attach(app.hub.clone());
    start_gateway(&app.hub).await;
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let address = ("127.0.0.1".to_owned(), broker.local_addr().port());
    (app, address, run, broker)
}

/// Registers a device of `channel` for each seed in the village, ids unique to this run.
async fn register(app: &TestApp, run: &str, devices: &[(ChannelKind, u16)]) -> Vec<(SimulatedDevice, u32)> {
    register_in(app, run, VILLAGE, devices).await
}

/// As `register`, in `area`.
async fn register_in(
    app: &TestApp,
    run: &str,
    area: &str,
    devices: &[(ChannelKind, u16)],
) -> Vec<(SimulatedDevice, u32)> {
    let rows = devices
        .iter()
        .enumerate()
        .map(|(i, (channel, seed))| {
            let new = NewDevice {
                channel: *channel,
                device_id: Some(format!("sim-{run}-{seed}")),
                name: format!("模拟设备{i}"),
                area_code: area.into(),
                group: "一组".into(),
                public_key: Some(herald_firmware_protocol::hex::encode(
                    &device_keys(*seed).public_key(),
                )),
            };
            (i + 1, new)
        })
        .collect();
    let issued = devices::add_devices(&app.hub, "test", None, rows, &|_| {})
        .await
        .expect("store")
        .expect("valid devices");
    devices
        .iter()
        .map(|(channel, seed)| {
            let device_id = format!("sim-{run}-{seed}");
            let issued = issued
                .iter()
                .find(|i| i.device.device_id == device_id)
                .expect("registered");
            let key_id = issued.device.key_id.expect("a key id");
            let device = SimulatedDevice {
                device_id,
                channel: *channel,
                seed: *seed,
                credential: issued.credential.clone(),
                codecs: Vec::new(),
                tts: *channel == ChannelKind::Loudspeaker,
            };
            (device, u32::try_from(key_id).expect("u32"))
        })
        .collect()
}

/// Waits until `n` devices of this run have announced themselves (their birth heard).
async fn until_born(app: &TestApp, run: &str, n: usize) {
    let mut born = 0;
    for _ in 0..100 {
        let listed = devices::list_devices(&app.hub, None).await.expect("list");
        born = listed
            .iter()
            .filter(|d| {
                d.device_id.contains(run)
                    && d.firmware_version.as_deref() == Some("sim-1.0")
                    && d.online == Some(true)
            })
            .count();
        if born >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{born} of {n} devices announced themselves");
}

/// Applies receipts until the item's deliveries on `channel` are all `want` (or time is up);
/// returns their states.
async fn until_all(app: &TestApp, item: &str, channel: &str, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    // Up to 30 s: 250 devices on SQLite beside the rest of the suite take a while.
    for _ in 0..300 {
        app.apply_receipts().await;
        seen = states(app, item, channel).await;
        if !seen.is_empty() && seen.iter().all(|s| s == want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

on_both_backends! {
    a_published_item_is_played_and_shown_by_the_devices_it_reaches => |backend| async move {
        let Some((app, address, run)) = linked_app(backend).await else { return };
        played_and_shown(app, address, run).await;
    };

    a_published_item_is_played_and_shown_over_the_in_process_broker => |backend| async move {
        let (app, address, run, broker) = embedded_app(backend).await;
        played_and_shown(app, address, run).await;
        broker.shutdown().await;
    };
}

/// Two loudspeakers and a notice board in the village play and show an item; coverage and
/// the receipt record say so.
async fn played_and_shown(app: TestApp, address: (String, u16), run: String) {
    {
        let fleet = register(
            &app,
            &run,
            &[
                (ChannelKind::Loudspeaker, 1),
                (ChannelKind::Loudspeaker, 2),
                (ChannelKind::NoticeBoard, 3),
            ],
        )
        .await;
        for (device, key_id) in fleet {
            tokio::spawn(run_device(app.hub.clone(), device, key_id, address.clone()));
        }
        until_born(&app, &run, 3).await;

        let item = app
            .publish_new(
                &item_body(VILLAGE),
                &json!({"channels": ["loudspeaker", "notice_board"]}),
            )
            .await;
        assert_eq!(app.deliver_due().await, 3);
        assert_eq!(states(&app, &item, "loudspeaker").await, ["accepted", "accepted"]);
        assert_eq!(
            until_all(&app, &item, "loudspeaker", "played").await,
            ["played", "played"]
        );
        assert_eq!(
            until_all(&app, &item, "notice_board", "displayed").await,
            ["displayed"]
        );
        app.assert_queue_agrees().await;
        let view = app
            .get("admin", &format!("/api/v1/items/{item}/deliveries"))
            .await
            .json;
        assert_eq!(
            view["coverage"],
            json!([{"area_code": VILLAGE, "area_name": view["coverage"][0]["area_name"], "reach": "reached", "devices": 3, "reached": 3, "silent": []}]),
        );
        assert!(
            view["coverage"][0]["area_name"]
                .as_str()
                .is_some_and(|n| !n.is_empty()),
            "{view}"
        );
        let csv = app
            .get("publisher", &format!("/api/v1/items/{item}/receipts.csv"))
            .await
            .text();
        assert!(csv.lines().any(|l| l.contains(",played,")), "{csv}");
    }
}

on_both_backends! {
    the_in_process_broker_lets_devices_in_only_once_the_hub_hears_their_reports => |backend| async move {
        let mut mqtt = herald::config::MqttSettings::default();
        let (broker, gate) = EmbeddedBroker::start_for_hub("127.0.0.1:0", &mut mqtt).await.expect("the broker starts");
        let app = spawn_app_configured(backend, Vec::new(), |s| s.mqtt = mqtt).await;
        gate.attach(app.hub.clone());
        let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let (device, _) = register(&app, &run, &[(ChannelKind::Loudspeaker, 70)]).await.into_iter().next().expect("a device");
        let connect = || {
            let mut options = MqttOptions::new(device.device_id.clone(), "127.0.0.1", broker.local_addr().port());
            options.set_credentials(device.device_id.clone(), device.credential.clone());
            let (_client, mut events) = AsyncClient::new(options, 16);
            async move { tokio::time::timeout(Duration::from_secs(5), events.poll()).await.expect("an answer") }
        };
        // The hub's session is not listening yet: a device born now would go unheard.
        let early = connect().await;
        assert!(matches!(early, Err(rumqttc::ConnectionError::ConnectionRefused(_))), "{early:?}");
        start_gateway(&app.hub).await;
        let later = connect().await;
        assert!(matches!(later, Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))), "{later:?}");
        broker.shutdown().await;
    };
}

/// What the hub told a device to play for `delivery`: the command its external id names.
async fn play_source(app: &TestApp, delivery: &serde_json::Value) -> PlaySource {
    let command_id = delivery["external_id"].as_str().expect("a command id");
    let kept = herald::store::entities::device_command::Entity::find_by_id(command_id)
        .one(&app.hub.db)
        .await
        .expect("read")
        .expect("the command is kept");
    let frame = Frame::parse(&kept.frame).expect("a frame");
    match Command::decode(frame.payload).expect("a command").cmd {
        CommandBody::Play(play) => play.source,
        other => panic!("not a play: {other:?}"),
    }
}

on_both_backends! {
    a_loudspeaker_plays_the_items_recording_if_it_plays_the_codec_else_speaks_the_text => |backend| async move {
        let (app, address, run, broker) = embedded_app_at_public_url(backend).await;
        let wav = herald::domain::audio::tone_wav(1000, 8000);
        let uploaded = app.upload("publisher", "audio/wav", wav.clone()).await;
        assert_eq!((uploaded.status, uploaded.json["audio_duration_ms"].clone()), (201, json!(1000)), "{}", uploaded.json);
        let sha256 = uploaded.json["sha256"].as_str().expect("sha256").to_owned();
        let media = format!("{}/media/{sha256}", app.address);
        let fetch = |url: String| async move { reqwest::get(url).await.expect("the hub answers") };
        assert_eq!(fetch(media.clone()).await.status(), 404, "nothing published names it yet");
        // A recording only a draft names is never served.
        let draft_only = app.upload("publisher", "audio/wav", herald::domain::audio::tone_wav(700, 8000)).await;
        let draft_sha = draft_only.json["sha256"].as_str().expect("sha256").to_owned();
        let mut draft = item_body(VILLAGE);
        draft["attachments"] = json!([{"sha256": draft_sha, "filename": "草稿.wav"}]);
        app.create_item("publisher", &draft).await;
        let draft_media = format!("{}/media/{draft_sha}", app.address);

        let fleet = register(&app, &run, &[(ChannelKind::Loudspeaker, 60), (ChannelKind::Loudspeaker, 61), (ChannelKind::Loudspeaker, 62)]).await;
        let voices = [(vec![AudioCodec::Wav], false), (Vec::new(), true), (vec![AudioCodec::Mp3], false)];
        let mut targets = Vec::new();
        for ((mut device, key_id), (codecs, tts)) in fleet.into_iter().zip(voices) {
            (device.codecs, device.tts) = (codecs, tts);
            targets.push(target_of(&app, &device.device_id).await);
            tokio::spawn(run_device(app.hub.clone(), device, key_id, address.clone()));
        }
        until_born(&app, &run, 3).await;

        let mut body = item_body(VILLAGE);
        body["attachments"] = json!([{"sha256": sha256, "filename": "防火通知.wav"}]);
        let item = app.publish_new(&body, &json!({"channels": ["loudspeaker"]})).await;
        assert_eq!(app.deliver_due().await, 3);
        let mut seen = Vec::new();
        for _ in 0..100 {
            app.apply_receipts().await;
            seen = states(&app, &item, "loudspeaker").await;
            seen.sort();
            if seen == ["failed", "played", "played"] { break; }
            // The recording plays for its second of device time (the hub's test clock).
            app.hub.clock.set(app.hub.clock.now() + chrono::Duration::milliseconds(200));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen, ["failed", "played", "played"]);

        // The WAV player was sent the file, pinned by hash and size, and fetched it; the TTS
        // loudspeaker was sent the text; the one that does neither was sent nothing.
        let recorded = app.publish_delivery(&item, "target_id", &targets[0]).await;
        match play_source(&app, &recorded).await {
            PlaySource::Audio(audio) => assert_eq!((audio.url, audio.sha256, audio.size, audio.codec), (media.clone(), sha256.clone(), wav.len() as u64, AudioCodec::Wav)),
            other => panic!("not the recording: {other:?}"),
        }
        let spoken = app.publish_delivery(&item, "target_id", &targets[1]).await;
        assert!(matches!(play_source(&app, &spoken).await, PlaySource::Tts(tts) if tts.text.starts_with("关于做好2026年秋冬季森林防火工作的通知")));
        let unsupported = app.publish_delivery(&item, "target_id", &targets[2]).await;
        assert!(unsupported["last_error"].as_str().is_some_and(|e| e.starts_with("unsupported_media") && e.contains("audio/wav")), "{unsupported}");
        let played = app.get("publisher", &format!("/api/v1/items/{item}/receipts.csv")).await.text();
        let played_by: std::collections::BTreeSet<&str> = played
            .lines()
            .filter(|l| l.contains(",loudspeaker,played,"))
            .filter_map(|l| l.split(',').nth(6))
            .collect();
        assert_eq!(played_by, ["模拟设备0", "模拟设备1"].into(), "{played}");

        assert_eq!(fetch(draft_media).await.status(), 404, "a draft's recording stays in the store");
        let served = fetch(media.clone()).await;
        assert_eq!(served.status(), 200);
        assert_eq!(served.headers()["cache-control"], "no-cache");
        assert_eq!(served.headers()["content-type"], "audio/wav");
        assert_eq!(served.bytes().await.expect("body").to_vec(), wav);
        // Withdrawn, the recording is no longer fetchable.
        let withdrawn = app.post("publisher", &format!("/api/v1/items/{item}/withdraw"), &json!({"reason": "通知已撤回"})).await;
        assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
        assert_eq!(fetch(media).await.status(), 404);
        broker.shutdown().await;
    };
}

on_both_backends! {
    a_device_offline_gets_the_command_when_it_returns_while_valid_and_never_after => |backend| async move {
        let Some((app, address, run)) = linked_app(backend).await else { return };
        let mut fleet = register(&app, &run, &[(ChannelKind::Loudspeaker, 4), (ChannelKind::Loudspeaker, 5)]).await.into_iter();
        let (online, online_key) = fleet.next().expect("device");
        let (away, away_key) = fleet.next().expect("device");
        tokio::spawn(run_device(app.hub.clone(), online, online_key, address.clone()));
        until_born(&app, &run, 1).await;

        // Published while one device is away: it hears nothing, the other plays it.
        let item = app.publish_new(&item_body(VILLAGE), &json!({"channels": ["loudspeaker"]})).await;
        assert_eq!(app.deliver_due().await, 2);
        let mut seen = Vec::new();
        for _ in 0..50 {
            app.apply_receipts().await;
            seen = states(&app, &item, "loudspeaker").await;
            if seen.iter().any(|s| s == "played") { break; }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen.sort();
        assert_eq!(seen, ["accepted", "played"]);
        let coverage = app.get("admin", &format!("/api/v1/items/{item}/deliveries")).await.json["coverage"].clone();
        assert_eq!((coverage[0]["reach"].clone(), coverage[0]["devices"].clone(), coverage[0]["reached"].clone()), (json!("partly"), json!(2), json!(1)), "{coverage}");
        assert_eq!(coverage[0]["silent"], json!([{"target_id": target_of(&app, &away.device_id).await, "name": "模拟设备1", "channel": "loudspeaker", "state": "accepted"}]));

        // Back within the command's validity: its birth brings the same command again.
        tokio::spawn(run_device(app.hub.clone(), away, away_key, address.clone()));
        assert_eq!(until_all(&app, &item, "loudspeaker", "played").await, ["played", "played"]);

        // A third device, away when a second item goes out and for longer than the command is
        // valid: asked about after that, its delivery has expired, and coming back brings it
        // nothing.
        let later = register(&app, &run, &[(ChannelKind::Loudspeaker, 6)]).await;
        let (late, late_key) = later.into_iter().next().expect("device");
        let late_target = target_of(&app, &late.device_id).await;
        let second = app.publish_new(&item_body(VILLAGE), &json!({"channels": ["loudspeaker"]})).await;
        assert_eq!(app.deliver_due().await, 3);
        let lifetime = app.hub.settings.mqtt.command_lifetime_seconds;
        app.hub.clock.set(app.hub.clock.now() + chrono::Duration::seconds(i64::try_from(lifetime).expect("secs") + 1));
        inbox::try_reconcile(&app.hub, 100).await.expect("reconcile");
        app.apply_receipts().await;
        let late_delivery = app.publish_delivery(&second, "target_id", &late_target).await;
        assert_eq!(late_delivery["state"], "expired", "{late_delivery}");
        tokio::spawn(run_device(app.hub.clone(), late, late_key, address.clone()));
        until_born(&app, &run, 3).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.apply_receipts().await;
        let late_delivery = app.publish_delivery(&second, "target_id", &late_target).await;
        assert_eq!(late_delivery["state"], "expired", "nothing was sent again: {late_delivery}");
    };
}

on_both_backends! {
    forged_and_replayed_commands_are_refused_and_recorded_and_a_report_for_another_device_moves_nothing => |backend| async move {
        let Some((app, address, run)) = linked_app(backend).await else { return };
        let mut fleet = register(&app, &run, &[(ChannelKind::Loudspeaker, 7), (ChannelKind::Loudspeaker, 8)]).await.into_iter();
        let (heard, heard_key) = fleet.next().expect("device");
        let (quiet, _) = fleet.next().expect("device");
        let heard_id = heard.device_id.clone();
        let heard_target = target_of(&app, &heard_id).await;
        let quiet_target = target_of(&app, &quiet.device_id).await;
        tokio::spawn(run_device(app.hub.clone(), heard, heard_key, address.clone()));
        until_born(&app, &run, 1).await;

        let item = app.publish_new(&item_body(VILLAGE), &json!({"channels": ["loudspeaker"]})).await;
        assert_eq!(app.deliver_due().await, 2);
        let mut played = json!(null);
        for _ in 0..50 {
            app.apply_receipts().await;
            played = app.publish_delivery(&item, "target_id", &heard_target).await;
            if played["state"] == "played" { break; }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(played["state"], "played", "{played}");
        let command_id = played["external_id"].as_str().expect("a command id").to_owned();
        let kept = herald::store::entities::device_command::Entity::find_by_id(command_id.as_str())
            .one(&app.hub.db)
            .await
            .expect("store")
            .expect("the signed frame is kept");

        // Someone on the broker: a tampered copy, the same frame again, and one signed by a key
        // the device does not trust, all naming the command the device played.
        let (prober, mut probe_events) = AsyncClient::new(MqttOptions::new(format!("probe-{run}"), address.0.clone(), address.1), 100);
        tokio::spawn(async move { loop { if probe_events.poll().await.is_err() { tokio::time::sleep(Duration::from_millis(100)).await; } } });
        let mut tampered = kept.frame.clone();
        // A bit of the signature (bytes 8..72 of the frame): the payload still reads.
        tampered[8] ^= 0x01;
        let now = u64::try_from(app.hub.clock.now().timestamp()).expect("time");
        let stranger = herald_firmware_protocol::Issuer::new(99, &[9; 32])
            .sign(&herald_firmware_protocol::Command {
                seq: 1,
                issued_at: now,
                not_after: now + 600,
                id: command_id.clone(),
                to: herald_firmware_protocol::Audience::Devices(vec![heard_id.clone()]),
                cmd: CommandBody::Rebirth,
            })
            .expect("sign");
        for frame in [tampered, kept.frame.clone(), stranger] {
            prober.publish(topic::device_commands(&heard_id), QoS::AtLeastOnce, false, frame).await.expect("publish");
        }

        // And a report about the quiet device's command, signed by the heard one's key.
        let quiet_delivery = app.publish_delivery(&item, "target_id", &quiet_target).await;
        let forged = Report {
            device: quiet.device_id.clone(),
            session: 1,
            seq: 1,
            sent_at: now,
            msg: ReportBody::Ack(herald_firmware_protocol::report::Ack {
                key_id: Some(1),
                cmd_seq: Some(1),
                id: quiet_delivery["external_id"].as_str().map(str::to_owned),
                stage: AckStage::Finished,
                reason: None,
            }),
        };
        let forged = device_keys(7).seal(Direction::Report, heard_key, &forged.encode().expect("encode")).expect("seal");
        prober.publish(topic::report(&quiet.device_id, "ack"), QoS::AtLeastOnce, false, forged).await.expect("publish");

        // Each refusal is stored as the device sent it, reason and all. None of them moves the
        // delivery: a refusal before the signature checks out names only what the frame claims.
        let refusals = |reason: &'static str| {
            let app = &app;
            async move {
                let sql = format!("SELECT raw FROM receipt_inbox WHERE raw LIKE '%\"reason\":\"{reason}\"%'");
                app.hub.db.query_all_raw(sea_orm::Statement::from_string(app.hub.db.get_database_backend(), sql)).await.expect("query").len()
            }
        };
        let mut seen = (0, 0, 0);
        for _ in 0..50 {
            app.apply_receipts().await;
            seen = (refusals("bad_signature").await, refusals("replay").await, refusals("unknown_key").await);
            if seen == (1, 1, 1) { break; }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen, (1, 1, 1), "a refusal each of the tampered, the replayed and the stranger's command");
        app.apply_receipts().await;
        assert_eq!(app.publish_delivery(&item, "target_id", &heard_target).await["state"], "played", "refusals of copies change nothing");
        assert_eq!(app.publish_delivery(&item, "target_id", &quiet_target).await["state"], "accepted", "the forged report moved nothing");
    };
}

on_both_backends! {
    two_hubs_on_one_store_and_broker_send_each_command_once_and_record_each_report_once => |backend| async move {
        let Some((app, address, run)) = linked_app(backend).await else { return };
        // Its own MQTT session: an instance without a configured client id makes one up.
        let second = Arc::new(herald::startup::open_hub(app.hub.settings.clone(), app.hub.clock.clone()).await.expect("second hub opens"));
        start_gateway(&second).await;

        let fleet: Vec<(ChannelKind, u16)> = (20..40).map(|seed| (ChannelKind::Loudspeaker, seed)).collect();
        let tally = Arc::new(Tally::default());
        for (device, key_id) in register(&app, &run, &fleet).await {
            tokio::spawn(run_counted(app.hub.clone(), device, key_id, address.clone(), tally.clone()));
        }
        until_born(&app, &run, fleet.len()).await;

        let item = app.publish_new(&item_body(VILLAGE), &json!({"channels": ["loudspeaker"]})).await;
        // Both instances claim at once, batches of 5: whoever takes a delivery sends it.
        let drain = |hub: Arc<Hub>, worker: &'static str| async move {
            let in_flight = herald::delivery::worker::InFlight::default();
            let mut sent = 0;
            loop {
                let claimed = herald::delivery::worker::claim(&hub, worker, Some(ChannelKind::Loudspeaker), 5).await.expect("claim");
                if claimed.is_empty() { return sent; }
                sent += claimed.len();
                herald::delivery::worker::execute_claimed(&hub, &in_flight, worker, claimed).await.expect("send");
            }
        };
        let (first, other) = tokio::join!(drain(app.hub.clone(), "first"), drain(second.clone(), "second"));
        assert_eq!(first + other, fleet.len(), "each delivery claimed once: {first} + {other}");
        let played = until_all(&app, &item, "loudspeaker", "played").await;
        assert_eq!(played.len(), fleet.len());
        assert!(played.iter().all(|s| s == "played"), "{played:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Each device carried the command out once. A hub that hears a device's birth after the
        // command went out sends it again (it cannot tell it arrived); the device refuses such a
        // copy as a replay.
        let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(count(&tally.carried_out), fleet.len() as u64, "each device carried the command out once: {}", tally.line());
        // Verified, started, finished and the proof from each device (and a refusal per copy):
        // each stored once, though both hubs heard them all.
        let sql = format!("SELECT COUNT(*) AS n FROM receipt_inbox WHERE dedup LIKE 'sim-{run}-%'");
        let stored_count = || async {
            let statement = sea_orm::Statement::from_string(app.hub.db.get_database_backend(), sql.clone());
            let row = app.hub.db.query_one_raw(statement).await.expect("count").expect("a row");
            row.try_get_by_index::<i64>(0).expect("n")
        };
        let expected = || 4 * fleet.len() as i64 + i64::try_from(count(&tally.refused)).expect("n");
        let mut stored = 0;
        for _ in 0..30 {
            stored = stored_count().await;
            if stored == expected() { break; }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if stored != expected() {
            let sql = format!("SELECT dedup, status FROM receipt_inbox WHERE dedup LIKE 'sim-{run}-%' ORDER BY dedup");
            let rows = app.hub.db.query_all_raw(sea_orm::Statement::from_string(app.hub.db.get_database_backend(), sql)).await.expect("rows");
            let listed: Vec<String> = rows.iter().map(|r| format!("{}={}", r.try_get_by_index::<String>(0).unwrap_or_default(), r.try_get_by_index::<String>(1).unwrap_or_default())).collect();
            eprintln!("STORED {listed:?}");
        }
        assert_eq!(stored, expected(), "{}", tally.line());
    };
}

/// `herald simulate` as a vendor or an operator runs it: devices registered by the command,
/// reached by the hub that shares its store and broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_simulate_runs_devices_the_hub_reaches() {
    let Some((app, _, _)) = linked_app(crate::helpers::Backend::Sqlite).await else {
        return;
    };
    // The command's devices keep real time; so does the hub here.
    app.hub.clock.set(chrono::Utc::now());
    let child = crate::cli::herald()
        .arg("--config")
        .arg(&app.config_path)
        .args(["simulate", "--devices", "3", "--area", VILLAGE, "--seconds", "8"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("herald simulate starts");
    let mut born = 0;
    for _ in 0..100 {
        let listed = devices::list_devices(&app.hub, None).await.expect("list");
        born = listed
            .iter()
            .filter(|d| d.device_id.starts_with("sim-") && d.online == Some(true))
            .count();
        if born == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(born, 3, "the command's devices announced themselves");
    let item = app
        .publish_new(&item_body(VILLAGE), &json!({"channels": ["loudspeaker"]}))
        .await;
    assert_eq!(app.deliver_due().await, 3);
    assert_eq!(
        until_all(&app, &item, "loudspeaker", "played").await,
        ["played", "played", "played"]
    );
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("herald simulate ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("registered 3 loudspeaker devices"), "{stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.contains("carried out 3, refused 0")),
        "{stdout}"
    );
}

/// Villages of the demo county: two in 甸中镇, one in 化念镇.
const NEIGHBOUR: &str = "530426101002";
const ELSEWHERE: &str = "530426102001";

/// The command ids an item's deliveries went out as.
async fn commands_of(app: &TestApp, item: &str) -> std::collections::HashSet<String> {
    let listed = app
        .get("admin", &format!("/api/v1/items/{item}/deliveries?limit=500"))
        .await
        .json;
    listed["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .filter_map(|d| d["external_id"].as_str().map(str::to_owned))
        .collect()
}

/// What each of `devices` plays or shows now.
fn running_on(tally: &Tally, devices: &[String]) -> Vec<Vec<String>> {
    let running = tally.running.lock().unwrap_or_else(|p| p.into_inner());
    devices
        .iter()
        .map(|d| running.get(d.as_str()).cloned().unwrap_or_default())
        .collect()
}

/// Waits until every one of `devices` runs exactly one of `commands` (or, with none given,
/// nothing); returns what they run.
async fn until_running(
    tally: &Tally,
    devices: &[String],
    commands: &std::collections::HashSet<String>,
) -> Vec<Vec<String>> {
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = running_on(tally, devices);
        let settled = seen.iter().all(|ids| match commands.is_empty() {
            true => ids.is_empty(),
            false => ids.len() == 1 && commands.contains(&ids[0]),
        });
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

on_both_backends! {
    a_correction_cancels_each_devices_old_command_and_sends_the_corrected_one => |backend| async move {
        let (app, address, run, broker) = embedded_app(backend).await;
        let tally = Arc::new(Tally::default());
        // Each item plays and shows for an hour of the held clock: the old one would still run.
        let behaviour = Behaviour { run_seconds: 3600, ..Behaviour::default() };
        let mut fleet = Vec::new();
        for (device, key_id) in register(&app, &run, &[(ChannelKind::Loudspeaker, 601), (ChannelKind::NoticeBoard, 602)]).await {
            fleet.push(device.device_id.clone());
            tokio::spawn(run_behaving(app.hub.clone(), device, key_id, address.clone(), tally.clone(), behaviour));
        }
        until_born(&app, &run, 2).await;
        let body = item_body(VILLAGE);
        let item = app.publish_new(&body, &json!({"channels": ["loudspeaker", "notice_board"]})).await;
        app.deliver_due().await;
        let first = commands_of(&app, &item).await;
        assert!(until_running(&tally, &fleet, &first).await.iter().all(|r| r.len() == 1));

        let mut corrected = body.clone();
        corrected["body"] = json!("<p>自十月一日起进入森林防火期。</p>");
        corrected["correction_note"] = json!("防火期起始日期有误");
        let approved = app.correct(&item, &corrected).await;
        assert_eq!(approved.status, 200, "{}", approved.json);
        assert_eq!(app.deliver_due().await, 4, "two cancels, two corrected commands");
        let listed = app.get("admin", &format!("/api/v1/items/{item}/deliveries")).await.json;
        let rows = listed["deliveries"].as_array().expect("rows");
        let corrected_commands: std::collections::HashSet<String> = rows
            .iter()
            .filter(|d| d["version"] == 2 && d["kind"] == "publish")
            .filter_map(|d| d["external_id"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(corrected_commands.len(), 2, "{listed}");
        assert_eq!(rows.iter().filter(|d| d["kind"] == "withdraw" && d["version"] == 1).count(), 2, "{listed}");
        // Each device runs the corrected command alone: the old one was cancelled.
        let running = until_running(&tally, &fleet, &corrected_commands).await;
        assert!(running.iter().all(|r| r.len() == 1 && corrected_commands.contains(&r[0])), "{running:?}");
        let board = rows.iter().find(|d| d["version"] == 2 && d["channel"] == "notice_board").expect("the board's update");
        let preview = app.get("publisher", &format!("/api/v1/items/{item}/preview/notice_board")).await;
        assert!(preview.text().contains("更正说明"), "{board}: {}", preview.text());
        app.assert_queue_agrees().await;
        broker.shutdown().await;
    };
}

on_both_backends! {
    a_cap_alert_preempts_routine_audio_takes_over_notice_boards_is_replaced_by_its_update_and_stopped_by_its_cancel => |backend| async move {
        let Some((app, address, run)) = linked_app(backend).await else { return };
        let tally = Arc::new(Tally::default());
        // Every item plays for an hour of the hub's clock, which the test holds still: what
        // starts keeps running until something stops it.
        let behaviour = Behaviour { run_seconds: 3600, ..Behaviour::default() };
        let mut reached = Vec::new();
        let mut outside = Vec::new();
        for (area, fleet) in [
            (VILLAGE, vec![(ChannelKind::Loudspeaker, 301), (ChannelKind::Loudspeaker, 302), (ChannelKind::NoticeBoard, 303)]),
            (NEIGHBOUR, vec![(ChannelKind::Loudspeaker, 304), (ChannelKind::NoticeBoard, 305)]),
            (ELSEWHERE, vec![(ChannelKind::Loudspeaker, 306)]),
        ] {
            for (device, key_id) in register_in(&app, &run, area, &fleet).await {
                if area == ELSEWHERE { outside.push(device.device_id.clone()) } else { reached.push(device.device_id.clone()) }
                tokio::spawn(run_behaving(app.hub.clone(), device, key_id, address.clone(), tally.clone(), behaviour));
            }
        }
        until_born(&app, &run, 6).await;

        // Routine information playing and showing in the first village.
        let routine = app.publish_new(&item_body(VILLAGE), &json!({"channels": ["loudspeaker", "notice_board"]})).await;
        app.deliver_due().await;
        let routine_commands = commands_of(&app, &routine).await;
        let in_village = &reached[..3];
        assert!(until_running(&tally, in_village, &routine_commands).await.iter().all(|r| r.len() == 1));

        // An alert for the township: it preempts the routine audio, takes over the boards of
        // both its villages, and the village of another township hears nothing.
        let expires = app.hub.clock.now() + chrono::Duration::hours(2);
        let taken = app.post_cap("admin", "application/cap+xml", cap_message("EW-1", "Alert", None, "530426101", expires)).await;
        assert_eq!(taken.status, 201, "{}", taken.text());
        assert_eq!(taken.json["areas"], json!(["530426101"]));
        let alert_item = taken.json["item_id"].as_str().expect("an item").to_owned();
        let item = app.get("admin", &format!("/api/v1/items/{alert_item}")).await.json;
        assert_eq!((item["content"]["emergency"].clone(), item["state"].clone()), (json!(true), json!("published")), "{item}");
        app.deliver_due().await;
        let alert_commands = commands_of(&app, &alert_item).await;
        let running = until_running(&tally, &reached, &alert_commands).await;
        assert!(running.iter().all(|r| r.len() == 1 && alert_commands.contains(&r[0])), "{running:?}");
        assert_eq!(running_on(&tally, &outside), vec![Vec::<String>::new()], "the other township heard nothing");
        let mut preempted = 0;
        for _ in 0..50 {
            preempted = app.hub.db.query_all_raw(sea_orm::Statement::from_string(
                app.hub.db.get_database_backend(),
                "SELECT raw FROM receipt_inbox WHERE raw LIKE '%\"stage\":\"preempted\"%'".to_owned(),
            )).await.expect("query").len();
            if preempted >= 3 { break; }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(preempted, 3, "the routine audio and display in the village were reported cut short");

        // The same message again is answered, not broadcast twice.
        let again = app.post_cap("admin", "application/cap+xml", cap_message("EW-1", "Alert", None, "530426101", expires)).await;
        assert_eq!((again.status, again.json["replayed"].clone(), again.json["item_id"].clone()), (200, json!(true), json!(alert_item)));

        // An Update replaces it everywhere.
        let updated = app.post_cap("admin", "application/xml", cap_message("EW-2", "Update", Some("EW-1"), "530426101", expires)).await;
        assert_eq!(updated.status, 201, "{}", updated.text());
        assert_eq!(updated.json["withdrawn"], json!([alert_item]));
        let update_item = updated.json["item_id"].as_str().expect("an item").to_owned();
        app.deliver_due().await;
        let update_commands = commands_of(&app, &update_item).await;
        let running = until_running(&tally, &reached, &update_commands).await;
        assert!(running.iter().all(|r| r.len() == 1 && update_commands.contains(&r[0])), "{running:?}");
        let old = app.get("admin", &format!("/api/v1/items/{alert_item}")).await.json;
        assert_eq!(old["state"], "withdrawn");

        // A Cancel stops it: nothing plays or shows (the preempted routine item never resumes).
        let cancelled = app.post_cap("admin", "application/cap+xml", cap_message("EW-3", "Cancel", Some("EW-2"), "530426101", expires)).await;
        assert_eq!(cancelled.status, 201, "{}", cancelled.text());
        assert_eq!((cancelled.json["withdrawn"].clone(), cancelled.json["item_id"].clone()), (json!([update_item]), json!(null)));
        app.deliver_due().await;
        let running = until_running(&tally, &reached, &Default::default()).await;
        assert!(running.iter().all(Vec::is_empty), "{running:?}");
        app.apply_receipts().await;
        app.assert_queue_agrees().await;

        // An alert left to run ends at its `expires`: the sweep takes it down everywhere.
        let short = app.hub.clock.now() + chrono::Duration::minutes(30);
        let taken = app.post_cap("admin", "application/cap+xml", cap_message("EW-9", "Alert", None, "530426101", short)).await;
        assert_eq!(taken.status, 201, "{}", taken.text());
        let lasting = taken.json["item_id"].as_str().expect("an item").to_owned();
        app.deliver_due().await;
        let commands = commands_of(&app, &lasting).await;
        assert!(until_running(&tally, &reached, &commands).await.iter().all(|r| r.len() == 1));
        app.hub.clock.set(short + chrono::Duration::seconds(1));
        assert_eq!(herald::workflow::expire_due(&app.hub).await.expect("sweep"), 1);
        app.deliver_due().await;
        let running = until_running(&tally, &reached, &Default::default()).await;
        assert!(running.iter().all(Vec::is_empty), "{running:?}");
        assert_eq!(app.get("admin", &format!("/api/v1/items/{lasting}")).await.json["state"], "expired");

        // Refusals name the element, or the header.
        let broken = cap_message("EW-4", "Alert", None, "530426101", expires).replace("<urgency>Immediate</urgency>", "");
        let refused = app.post_cap("admin", "application/cap+xml", broken).await;
        assert_eq!((refused.status, refused.field()), (422, Some("alert.info[0].urgency")), "{}", refused.text());
        let refused = app.post_cap("admin", "application/cap+xml", cap_message("EW-5", "Cancel", Some("EW-404"), "530426101", expires)).await;
        assert_eq!((refused.status, refused.field()), (422, Some("alert.references")), "{}", refused.text());
        let refused = app.post_cap("admin", "application/cap+xml", cap_message("EW-6", "Alert", None, "530426101", app.hub.clock.now() - chrono::Duration::minutes(1))).await;
        assert_eq!((refused.status, refused.field()), (422, Some("alert.info.expires")), "{}", refused.text());
        let refused = app.post_cap("admin", "application/json", cap_message("EW-7", "Alert", None, "530426101", expires)).await;
        assert_eq!((refused.status, refused.field()), (415, Some("Content-Type")), "{}", refused.text());
        let publisher = app.post_cap("publisher", "application/cap+xml", cap_message("EW-8", "Alert", None, "530426101", expires)).await;
        assert_eq!(publisher.status, 403, "{}", publisher.text());
    };
}

on_both_backends! {
    two_hundred_loudspeakers_and_fifty_notice_boards_in_three_villages_all_play_and_show => |backend| async move {
        let (app, address, run, broker) = embedded_app(backend).await;
        three_villages(app, address, run).await;
        broker.shutdown().await;
    };
}

/// The same on the machine's Mosquitto, with PostgreSQL as in production. Not on SQLite:
/// Mosquitto's default configuration drops a client's messages past 1,000 queued, and a
/// SQLite store beside the rest of the suite does not always keep up with 1,500 reports in a
/// second (README: set `max_queued_messages` in production).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_loudspeakers_and_fifty_notice_boards_over_mosquitto_and_postgresql() {
    if std::env::var("HERALD_TEST_DATABASE_URL").is_err() {
        eprintln!("HERALD_TEST_DATABASE_URL is not set: no PostgreSQL for this test");
        return;
    }
    let Some((app, address, run)) = linked_app(crate::helpers::Backend::Postgres).await else {
        return;
    };
    three_villages(app, address, run).await;
}

/// 200 loudspeakers and 50 notice boards across three villages play and show a county item;
/// coverage reaches 3 of 3 villages.
async fn three_villages(app: TestApp, address: (String, u16), run: String) {
    {
        let villages = [VILLAGE, NEIGHBOUR, ELSEWHERE];
        let tally = Arc::new(Tally::default());
        let mut seed = 1000;
        for (v, village) in villages.iter().enumerate() {
            // 67, 67 and 66 loudspeakers; 17, 17 and 16 boards.
            let speakers = if v < 2 { 67 } else { 66 };
            let boards = if v < 2 { 17 } else { 16 };
            let mut fleet = Vec::new();
            for i in 0..speakers + boards {
                seed += 1;
                fleet.push((
                    if i < speakers {
                        ChannelKind::Loudspeaker
                    } else {
                        ChannelKind::NoticeBoard
                    },
                    seed,
                ));
            }
            for (device, key_id) in register_in(&app, &run, village, &fleet).await {
                tokio::spawn(run_counted(
                    app.hub.clone(),
                    device,
                    key_id,
                    address.clone(),
                    tally.clone(),
                ));
            }
        }
        until_born(&app, &run, 250).await;

        let item = app
            .publish_new(
                &item_body("530426"),
                &json!({"channels": ["loudspeaker", "notice_board"]}),
            )
            .await;
        assert_eq!(app.deliver_due().await, 250);
        let played = until_all(&app, &item, "loudspeaker", "played").await;
        assert_eq!(
            (played.len(), played.iter().filter(|s| *s == "played").count()),
            (200, 200)
        );
        let shown = until_all(&app, &item, "notice_board", "displayed").await;
        assert_eq!(
            (shown.len(), shown.iter().filter(|s| *s == "displayed").count()),
            (50, 50)
        );
        let view = app
            .get("admin", &format!("/api/v1/items/{item}/deliveries"))
            .await
            .json;
        let coverage: Vec<(String, String, u64)> = view["coverage"]
            .as_array()
            .expect("coverage")
            .iter()
            .map(|c| {
                (
                    c["area_code"].as_str().unwrap_or("").to_owned(),
                    c["reach"].as_str().unwrap_or("").to_owned(),
                    c["reached"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            coverage,
            vec![
                (VILLAGE.to_owned(), "reached".to_owned(), 84),
                (NEIGHBOUR.to_owned(), "reached".to_owned(), 84),
                (ELSEWHERE.to_owned(), "reached".to_owned(), 82),
            ],
        );
        // Each device's proof of play or display is in the record.
        let csv = app
            .get("publisher", &format!("/api/v1/items/{item}/receipts.csv"))
            .await
            .text();
        let proofs = csv
            .lines()
            .filter(|l| l.contains(",played,") || l.contains(",displayed,"))
            .count();
        assert!(proofs >= 250, "{proofs} proofs");
        app.assert_queue_agrees().await;
    }
}

on_both_backends! {
    an_item_that_expires_before_it_is_sent_fails_at_once_and_is_never_signed => |backend| async move {
        let Some((app, _address, run)) = linked_app(backend).await else { return };
        let fleet = register(&app, &run, &[(ChannelKind::Loudspeaker, 401)]).await;
        let target = target_of(&app, &fleet[0].0.device_id).await;
        let expires = app.hub.clock.now() + chrono::Duration::minutes(30);
        let taken = app.post_cap("admin", "application/cap+xml", cap_message("EW-X", "Alert", None, "530426101", expires)).await;
        assert_eq!(taken.status, 201, "{}", taken.text());
        let item = taken.json["item_id"].as_str().expect("an item").to_owned();
        // Nothing sent it before it expired (the sweep has not run yet either).
        app.hub.clock.set(expires + chrono::Duration::seconds(1));
        let sequences = "SELECT COUNT(*) FROM issuer_sequences";
        let before = app.count(sequences).await;
        app.deliver_due().await;
        let delivery = app.publish_delivery(&item, "target_id", &target).await;
        assert_eq!((delivery["state"].clone(), delivery["attempts"].clone()), (json!("failed"), json!(1)), "{delivery}");
        assert!(delivery["last_error"].as_str().is_some_and(|e| e.contains("expired")), "{delivery}");
        assert_eq!(app.count(sequences).await, before);
        assert_eq!(app.count("SELECT COUNT(*) FROM device_commands").await, 0, "no command was signed");
    };
}

/// Polls `events` until `done` says so of an event, or 10 s pass.
async fn poll_until(events: &mut rumqttc::EventLoop, done: impl Fn(&rumqttc::Event) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, events.poll())
            .await
            .expect("the broker answered within 10 s")
            .expect("the broker");
        if done(&event) {
            return;
        }
    }
}

/// A hub of an older version subscribed to `herald/v1/d/+/+`, which also matches command
/// topics. A broker that kept that session would go on sending the hub its own commands: on
/// taking the session over, the hub drops that filter and keeps only the report kinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_taking_over_a_kept_session_drops_the_filter_that_heard_its_own_commands() {
    let Some(address) = broker() else {
        eprintln!("HERALD_TEST_MQTT_URL is not set: no broker to test the device link on");
        return;
    };
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let client_id = format!("herald-hub-kept-{run}");
    let session = |clean: bool| {
        let mut options = MqttOptions::new(client_id.clone(), address.0.clone(), address.1);
        options.set_clean_session(clean);
        options
    };
    let subscribed = |e: &rumqttc::Event| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)));

    // The older hub's session: the old filter, kept by the broker when the hub goes.
    let (older, mut events) = AsyncClient::new(session(false), 16);
    older
        .subscribe(topic::OLD_HUB_FILTER, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    poll_until(&mut events, subscribed).await;
    drop((older, events));

    // This hub takes the session over, then goes (its connection cut, the session kept).
    let url = format!("mqtt://{}:{}", address.0, address.1);
    let app = spawn_app_configured(crate::helpers::Backend::Sqlite, Vec::new(), |s| {
        s.mqtt.url = url;
        s.mqtt.client_id = client_id.clone();
    })
    .await;
    let gateway = start_gateway(&app.hub).await;
    gateway.abort();
    let _ = gateway.await;
    drop(app);

    // What the session now holds: a report of one of this run's devices reaches it, a command
    // to that device does not.
    let (resumed, mut resumed_events) = AsyncClient::new(session(false), 16);
    poll_until(
        &mut resumed_events,
        |e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(c)) if c.session_present),
    )
    .await;
    let device = format!("spk-kept-{run}");
    let (sender, mut sender_events) = AsyncClient::new(
        MqttOptions::new(format!("sender-{run}"), address.0.clone(), address.1),
        16,
    );
    for published in [topic::device_commands(&device), topic::report(&device, "status")] {
        sender
            .publish(published, QoS::AtLeastOnce, false, b"x".to_vec())
            .await
            .expect("publish");
    }
    let sending = tokio::spawn(async move { while sender_events.poll().await.is_ok() {} });
    let mut heard = Vec::new();
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_secs(2), resumed_events.poll()).await {
        if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = event
            && p.topic.contains(&device)
        {
            heard.push(p.topic);
        }
    }
    sending.abort();
    assert_eq!(heard, vec![topic::report(&device, "status")]);

    // Leave nothing behind on the shared broker: neither session the hub kept.
    drop((resumed, resumed_events));
    for kept in [client_id.clone(), format!("{client_id}-commands")] {
        let mut options = MqttOptions::new(kept, address.0.clone(), address.1);
        options.set_clean_session(true);
        let (cleaner, mut cleaner_events) = AsyncClient::new(options, 16);
        poll_until(&mut cleaner_events, |e| {
            matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))
        })
        .await;
        cleaner.disconnect().await.expect("disconnect");
    }
}

/// Commands go out on a session of their own (`<client_id>-commands`), not on the one that
/// hears the devices' acks, so a fan-out is not queued behind the acks it sets off. Mosquitto
/// logs which client each PUBLISH came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_go_out_on_a_session_apart_from_the_one_hearing_reports() {
    use herald_channels::devices::DeviceLink;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("broker.log");
    let settings = format!(
        "allow_anonymous true\nlog_dest file {}\nlog_type all\n",
        log.display()
    );
    let (_broker, port) = crate::broker::start_mosquitto(dir.path(), &settings);
    let client_id = "herald-hub-apart";
    let app = spawn_app_configured(crate::helpers::Backend::Sqlite, Vec::new(), |s| {
        s.mqtt.url = format!("mqtt://127.0.0.1:{port}");
        s.mqtt.client_id = client_id.into();
    })
    .await;
    let gateway = start_gateway(&app.hub).await;
    let link = app.hub.device_link.clone().expect("a device link");
    let command_topic = topic::device_commands("spk-apart-1");
    link.publish(command_topic.clone(), b"frame".to_vec())
        .await
        .expect("queued");
    // Mosquitto's line: `Received PUBLISH from <client id> (d0, q1, r0, m1, '<topic>', …`.
    let published_by = |logged: &str, client: &str| {
        logged.lines().any(|line| {
            line.contains(&format!("Received PUBLISH from {client} ("))
                && line.contains(&format!("'{command_topic}'"))
        })
    };
    let commands_session = format!("{client_id}-commands");
    let mut logged = String::new();
    for _ in 0..200 {
        logged = std::fs::read_to_string(&log).unwrap_or_default();
        if published_by(&logged, &commands_session) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateway.abort();
    assert!(
        published_by(&logged, &commands_session),
        "the command came from the commands' session:\n{logged}"
    );
    assert!(
        logged.contains(&format!("Received SUBSCRIBE from {client_id}\n")),
        "the reports' session subscribed:\n{logged}"
    );
    assert!(
        !published_by(&logged, client_id),
        "and not from the reports' one:\n{logged}"
    );
}
