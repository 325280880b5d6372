//! `herald bench fanout`: an emergency published to N loudspeakers over a real broker, each a
//! virtual device (`crate::simulate`) in this process. Prints when the devices received the
//! command (p50, p99, last) from the moment of publishing, when 99 % of their acks were in the
//! store, and, in the same run, how long a plain MQTT client takes to fan the same frame out
//! to the same devices' topics, with the ratio. Judges nothing.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use herald_channels::ChannelKind;
use herald_firmware_protocol::topic;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use sea_orm::EntityTrait;

use super::{
    BenchOptions, approved, backend_name, count, drain_loudspeakers, drop_scratch, err,
    idle_loudspeaker_loops, percentile, scratch,
};
use crate::{
    broker::{BrokerGate, EmbeddedBroker},
    clock::Clock,
    config::Settings,
    delivery::gateway,
    idempotency::IdempotencyKey,
    simulate::{Behaviour, Tally, run_device},
    startup::open_hub,
    store::entities::device_command,
    workflow::{self, PublishInput},
};

pub struct FanoutOptions {
    pub devices: usize,
    pub postgres_url: Option<String>,
    /// The broker, `mqtt://HOST:PORT`, or `in-process` for the one `herald serve` runs.
    pub mqtt_url: String,
    /// Run the devices in this many `herald simulate` processes instead of this one, so this
    /// process is the hub (and its broker) alone: its memory is the hub's, and the devices'
    /// sockets count against their own open-file limits.
    pub device_processes: usize,
}

/// `--mqtt in-process`: the broker of `herald serve`, in this process.
pub const IN_PROCESS: &str = "in-process";

pub async fn fanout(options: FanoutOptions) -> anyhow::Result<()> {
    let bench = BenchOptions {
        targets: options.devices,
        summary_runs: 0,
        postgres_url: options.postgres_url.clone(),
    };
    let mut scratch = scratch(&bench).await?;
    let embedded = if options.mqtt_url == IN_PROCESS {
        Some(EmbeddedBroker::start_for_hub("127.0.0.1:0", &mut scratch.settings.mqtt).await?)
    } else {
        scratch.settings.mqtt.url = options.mqtt_url.clone();
        None
    };
    scratch.settings.storage.secrets_key = crate::accounts::random_secret(32).map_err(err)?;
    let gate = embedded.as_ref().map(|(_, gate)| gate.clone());
    let result = run(&scratch.settings, &options, gate).await;
    if let Some((broker, _)) = embedded {
        broker.shutdown().await;
    }
    // The run's own failure, if any, is the one to report.
    let dropped = drop_scratch(scratch).await;
    result?;
    dropped
}

/// Starts `options.device_processes` `herald simulate` processes sharing the devices, on this
/// benchmark's store and broker, and feeds the arrivals they print into `tally`. The processes
/// end when the returned handles drop.
async fn device_processes(
    settings: &Settings,
    options: &FanoutOptions,
    village: &str,
    hub: &crate::hub::Hub,
    tally: &Arc<Tally>,
) -> anyhow::Result<Vec<tokio::process::Child>> {
    use tokio::io::AsyncBufReadExt;
    let mut shared = settings.clone();
    // The devices log in with their own credentials, never the hub's.
    shared.mqtt.username.clear();
    shared.mqtt.password.clear();
    std::fs::create_dir_all(&shared.storage.data_dir)
        .with_context(|| format!("cannot create {}", shared.storage.data_dir.display()))?;
    let config = shared.storage.data_dir.join("fanout-devices.toml");
    std::fs::write(&config, toml::to_string(&shared)?)
        .with_context(|| format!("cannot write {}", config.display()))?;
    let exe = std::env::current_exe().context("the path of this program")?;
    // Wall-clock arrival times from the other processes, placed on this process's stopwatch.
    let origin = (Instant::now(), hub.clock.now().timestamp_micros());
    let k = options.device_processes;
    let mut children = Vec::with_capacity(k);
    for i in 0..k {
        let count = options.devices / k + usize::from(i < options.devices % k);
        let mut child = tokio::process::Command::new(&exe)
            .arg("--config")
            .arg(&config)
            .args([
                "simulate",
                "--devices",
                &count.to_string(),
                "--area",
                village,
                "--print-arrivals",
            ])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting herald simulate")?;
        let stdout = child.stdout.take().context("its output")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        // One registers at a time: key ids are handed out in order.
        loop {
            match lines.next_line().await? {
                Some(line) if line.starts_with("registered ") => break,
                Some(_) => {}
                None => anyhow::bail!("herald simulate ended before it registered its devices"),
            }
        }
        let tally = tally.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut words = line.split(' ');
                if let (Some("arrival"), Some(device), Some(micros)) =
                    (words.next(), words.next(), words.next())
                    && let Ok(micros) = micros.parse::<i64>()
                {
                    let offset = micros.saturating_sub(origin.1);
                    let at = if offset >= 0 {
                        origin.0 + Duration::from_micros(offset.unsigned_abs())
                    } else {
                        origin.0
                    };
                    let mut arrivals = tally.arrivals.lock().unwrap_or_else(|p| p.into_inner());
                    arrivals.push((Arc::from(device), at));
                }
            }
        });
        children.push(child);
    }
    Ok(children)
}

/// Waits until `n` devices have had a command since `since` (or `limit` passes); returns when
/// each first had one after `since`, sorted.
async fn arrivals(tally: &Tally, since: Instant, n: usize, limit: Duration) -> Vec<Duration> {
    let deadline = Instant::now() + limit;
    loop {
        let mut first: std::collections::HashMap<Arc<str>, Duration> = std::collections::HashMap::new();
        for (device, at) in tally.arrivals.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if *at >= since {
                let after = at.duration_since(since);
                first
                    .entry(device.clone())
                    .and_modify(|d| *d = (*d).min(after))
                    .or_insert(after);
            }
        }
        if first.len() >= n || Instant::now() >= deadline {
            let mut seen: Vec<Duration> = first.into_values().collect();
            seen.sort();
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stored_reports(db: &sea_orm::DatabaseConnection) -> anyhow::Result<i64> {
    count(db, "SELECT COUNT(*) FROM receipt_inbox").await
}

/// This process's resident memory, from /proc (Linux), in MiB.
fn resident_mib() -> Option<f64> {
    resident_mib_of("self")
}

/// A process's resident memory (`self` or a pid), from /proc (Linux), in MiB.
fn resident_mib_of(process: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

async fn run(
    settings: &Settings,
    options: &FanoutOptions,
    gate: Option<Arc<BrokerGate>>,
) -> anyhow::Result<()> {
    let n = options.devices;
    let hub = Arc::new(open_hub(settings.clone(), Clock::System).await?);
    if let Some(gate) = gate {
        gate.attach(hub.clone());
    }
    let link = hub
        .device_link
        .clone()
        .context("mqtt.url opened no device link")?;
    let broker = crate::device_link::broker_address(&settings.mqtt.url)?;
    let gateway = tokio::spawn(gateway::run_until_stopped(hub.clone()));

    let village = super::first_village(&hub)?;
    let resident_before = resident_mib();
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let (topics, running, children) = if options.device_processes == 0 {
        let fleet = crate::simulate::register(&hub, "bench", (ChannelKind::Loudspeaker, &village), n, "fan")
            .await?
            .map_err(|errors| anyhow::anyhow!("registering devices: {} rows refused", errors.len()))?;
        let topics: Vec<String> = fleet
            .iter()
            .map(|d| topic::device_commands(&d.device_id))
            .collect();
        let trusted = crate::simulate::trusted(&link);
        let mut running = Vec::with_capacity(n);
        for device in fleet {
            running.push(tokio::spawn(run_device(
                device,
                trusted,
                broker.clone(),
                crate::simulate::hub_time(&hub.clock),
                Behaviour::default(),
                tally.clone(),
            )));
        }
        (topics, running, Vec::new())
    } else {
        let children = device_processes(settings, options, &village, &hub, &tally).await?;
        (Vec::new(), Vec::new(), children)
    };
    // Every device connected and announced (status and birth stored).
    let online = "SELECT COUNT(*) FROM devices WHERE online";
    loop {
        let announced = count(&hub.db, online).await?;
        if announced >= n as i64 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "only {announced} of {n} devices announced themselves: {}",
            tally.line()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connect_time = started.elapsed();
    let topics = if topics.is_empty() {
        crate::store::entities::device::Entity::find()
            .all(&hub.db)
            .await?
            .iter()
            .map(|d| topic::device_commands(&d.device_id))
            .collect()
    } else {
        topics
    };

    let (publisher, item_id) = approved(&hub, true).await?;
    let input = PublishInput {
        channels: vec![ChannelKind::Loudspeaker],
        ..PublishInput::default()
    };
    let key = IdempotencyKey::parse("bench-fanout").map_err(err)?;
    let before_reports = stored_reports(&hub.db).await?;
    let published_at = Instant::now();
    let acks_wanted = before_reports + ((4 * n) as f64 * 0.99).ceil() as i64;
    let loops = idle_loudspeaker_loops(&hub);
    let drain = async {
        workflow::publish(&hub, &publisher, &item_id, &key, input)
            .await
            .map_err(err)?;
        drain_loudspeakers(&hub, &loops).await?;
        Ok::<_, anyhow::Error>(published_at.elapsed())
    };
    // Counted while the drain runs: acks are stored as they come, and the drain ends only
    // once it has recorded its own outcomes, which can be after the acks are in. Every 50 ms,
    // so the count itself takes little from the drain beside it.
    let acks = async {
        while published_at.elapsed() < Duration::from_secs(60) {
            if stored_reports(&hub.db).await? >= acks_wanted {
                return Ok::<_, anyhow::Error>(Some(published_at.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(None)
    };
    let (sent, acks_time) = futures::future::try_join(drain, acks).await?;
    let received = arrivals(&tally, published_at, n, Duration::from_secs(60)).await;
    let resident = resident_mib();
    let device_processes_mib: Option<f64> = children
        .iter()
        .map(|c| c.id().and_then(|pid| resident_mib_of(&pid.to_string())))
        .sum();

    // The peer: a plain client sends one of those frames to the same topics.
    let frame = device_command::Entity::find()
        .one(&hub.db)
        .await?
        .context("a signed command")?
        .frame;
    let peer_id = format!("fan-peer-{}", uuid::Uuid::new_v4().simple());
    let mut options_peer = MqttOptions::new(peer_id, broker.0.clone(), broker.1);
    options_peer.set_max_packet_size(256 * 1024, 256 * 1024);
    if !settings.mqtt.username.is_empty() {
        options_peer.set_credentials(settings.mqtt.username.clone(), settings.mqtt.password.clone());
    }
    let (peer, mut peer_events) = AsyncClient::new(options_peer, n + 16);
    tokio::spawn(async move { while peer_events.poll().await.is_ok() {} });
    let peer_at = Instant::now();
    for topic in topics {
        peer.publish(topic, QoS::AtLeastOnce, false, frame.clone())
            .await?;
    }
    let peer_received = arrivals(&tally, peer_at, n, Duration::from_secs(60)).await;

    // Done with them before the scratch store goes.
    gateway.abort();
    for device in running {
        device.abort();
    }
    for mut child in children {
        child.kill().await?;
    }
    let last = received.last().copied().unwrap_or_default();
    let peer_last = peer_received.last().copied().unwrap_or_default();
    println!("backend: {}", backend_name(&hub));
    let broker_name = if options.mqtt_url == IN_PROCESS {
        format!("in-process (herald serve's), {}", settings.mqtt.url)
    } else {
        settings.mqtt.url.clone()
    };
    println!("broker: {broker_name}");
    let whose = match options.device_processes {
        0 => "this process".to_owned(),
        k => format!("{k} herald simulate processes"),
    };
    println!(
        "devices: {n} virtual loudspeakers in {whose}, connected and announced in {:.1} s",
        connect_time.as_secs_f64()
    );
    println!(
        "frame: {} bytes, one signature per {} devices",
        frame.len(),
        herald_channels::devices::DEVICES_PER_COMMAND
    );
    println!(
        "hub: publish, then drain (claim, sign, hand to the broker, record the outcomes while acks come in): {:.3} s",
        sent.as_secs_f64()
    );
    println!(
        "hub: received by {} of {n} devices; p50 {:.3} s, p99 {:.3} s, last {:.3} s after publishing",
        received.len(),
        percentile(&received, 0.50).as_secs_f64(),
        percentile(&received, 0.99).as_secs_f64(),
        last.as_secs_f64()
    );
    match acks_time {
        Some(t) => println!(
            "hub: 99 % of acks ({acks_wanted} reports) in the store after {:.3} s",
            t.as_secs_f64()
        ),
        None => println!("hub: 99 % of acks not in the store within 60 s"),
    }
    println!(
        "peer (plain MQTT client, same frame, same {n} topics): received by {} devices; p50 {:.3} s, p99 {:.3} s, last {:.3} s",
        peer_received.len(),
        percentile(&peer_received, 0.50).as_secs_f64(),
        percentile(&peer_received, 0.99).as_secs_f64(),
        peer_last.as_secs_f64()
    );
    println!(
        "last device, hub / peer: {:.2}",
        last.as_secs_f64() / peer_last.as_secs_f64().max(f64::EPSILON)
    );
    if let Some(mib) = resident {
        let what = match (options.device_processes, options.mqtt_url == IN_PROCESS) {
            (0, true) => format!("hub, its broker and {n} virtual devices"),
            (0, false) => format!("hub and {n} virtual devices"),
            (_, true) => "the hub and its broker alone".to_owned(),
            (_, false) => "the hub alone".to_owned(),
        };
        println!("resident memory of this process ({what}): {mib:.0} MiB");
        if let Some(before) = resident_before {
            println!(
                "  of which per device (the growth since before they connected): {:.1} KiB",
                (mib - before) * 1024.0 / n as f64
            );
        }
    }
    if let (Some(mib), true) = (device_processes_mib, options.device_processes > 0) {
        println!(
            "resident memory of the device processes: {mib:.0} MiB, {:.1} KiB per virtual device",
            mib * 1024.0 / n as f64
        );
    }
    anyhow::ensure!(
        received.len() == n,
        "only {} of {n} devices received the command",
        received.len()
    );
    Ok(())
}
