//! Virtual village devices over a real broker, speaking only the protocol crate: each
//! connects with its will, announces itself, verifies every command with the protocol's own
//! state machine, acks it through its lifecycle, "plays" or "shows" it and reports a proof.
//! Knobs: a delay before answering and a share of commands lost on the way. `herald simulate`
//! runs a fleet of them; the device-link tests and benchmarks run them too, and a vendor can
//! check a hub with them. Futures only: the caller decides where they run.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use herald_channels::ChannelKind;
use herald_firmware_protocol::command::KeyRole;
use herald_firmware_protocol::{
    CommandBody, DeviceSession, KeyPair, Output,
    command::{AudioCodec, AudioRef, PlaySource},
    device::{Accepted, Capabilities, DeviceIdentity, DeviceState, TrustedKey},
    player::{Happening, Player},
    report::{AckStage, Bundled, RejectReason, Screen},
};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};

use crate::{
    clock::Clock,
    delivery::devices::{self, NewDevice, RowError},
    device_link::MqttLink,
    hub::Hub,
};

/// One virtual device: who it is, and what it has.
#[derive(Clone)]
pub struct VirtualDevice {
    pub device_id: String,
    /// The key id the hub registered its public key under.
    pub key_id: u32,
    /// Its Ed25519 seed (the public key registered for it derives from it).
    pub seed: [u8; 32],
    /// A notice board (a screen); otherwise a loudspeaker.
    pub screen: bool,
    /// A loudspeaker's: the audio codecs it plays (it downloads the file, checks its size and
    /// SHA-256, decodes it to know how long it plays) and whether it speaks text.
    pub codecs: Vec<AudioCodec>,
    pub tts: bool,
    /// The broker login Herald issued it (`herald device add`); none on an open broker.
    pub credential: Option<String>,
}

impl VirtualDevice {
    /// The public key to register for it.
    pub fn public_key(&self) -> [u8; 32] {
        KeyPair::from_seed(&self.seed).public_key()
    }
}

/// Registers `count` virtual devices of `kind` in `area` under fresh ids (`{prefix}-{run}-{n}`)
/// and fresh keys, each with the key id and broker login the hub issued it; or the registry's
/// reasons for refusing them.
pub async fn register(
    hub: &Hub,
    actor: &str,
    (kind, area): (ChannelKind, &str),
    count: usize,
    prefix: &str,
) -> anyhow::Result<Result<Vec<VirtualDevice>, Vec<RowError>>> {
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut fleet = Vec::with_capacity(count);
    let mut rows = Vec::with_capacity(count);
    for i in 0..count {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("system randomness unavailable: {e}"))?;
        let device = VirtualDevice {
            device_id: format!("{prefix}-{run}-{i:05}"),
            key_id: 0,
            seed,
            screen: kind == ChannelKind::NoticeBoard,
            codecs: Vec::new(),
            tts: kind == ChannelKind::Loudspeaker,
            credential: None,
        };
        rows.push((
            i + 1,
            NewDevice {
                channel: kind,
                device_id: Some(device.device_id.clone()),
                name: format!("模拟设备 {run}-{i}"),
                area_code: area.to_owned(),
                group: String::new(),
                public_key: Some(herald_firmware_protocol::hex::encode(&device.public_key())),
            },
        ));
        fleet.push(device);
    }
    let issued = match devices::add_devices(hub, actor, None, rows, &|_| {})
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        Ok(issued) => issued,
        Err(errors) => return Ok(Err(errors)),
    };
    for (device, issued) in fleet.iter_mut().zip(&issued) {
        anyhow::ensure!(
            issued.device.device_id == device.device_id,
            "registered out of order"
        );
        device.key_id = issued
            .device
            .key_id
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| anyhow::anyhow!("{} got no key id", device.device_id))?;
        device.credential = Some(issued.credential.clone());
    }
    Ok(Ok(fleet))
}

/// A device clock that keeps the hub's time, as devices synced by its `time_sync` do: Unix
/// seconds.
pub fn hub_time(clock: &Clock) -> impl Fn() -> u64 + Send + 'static {
    let clock = clock.clone();
    move || u64::try_from(clock.now().timestamp()).unwrap_or_default()
}

/// The hub's issuer key as a device is flashed with it.
pub fn trusted(link: &MqttLink) -> TrustedKey {
    TrustedKey {
        key_id: link.issuer_key_id(),
        role: KeyRole::Operational,
        public_key: link.issuer_public_key(),
    }
}

/// How a virtual device misbehaves.
#[derive(Clone, Copy, Debug, Default)]
pub struct Behaviour {
    /// Waited before each answer, as a slow radio link would.
    pub latency: Duration,
    /// Share of commands that never arrive (0.0 to 1.0).
    pub loss: f64,
    /// Seconds one run of an item takes: every repeat of a play, one cycle through a
    /// display's pages. Zero: done at once (a display then stays on screen until it stops).
    pub run_seconds: u64,
}

/// What a fleet did, counted as it happens.
#[derive(Debug, Default)]
pub struct Tally {
    pub connected: AtomicU64,
    pub commands: AtomicU64,
    pub lost: AtomicU64,
    pub carried_out: AtomicU64,
    pub refused: AtomicU64,
    /// Which device had a command, and when, for a benchmark to measure fan-out by.
    pub arrivals: std::sync::Mutex<Vec<(Arc<str>, std::time::Instant)>>,
    /// What each device plays or shows now, by command id.
    pub running: std::sync::Mutex<std::collections::HashMap<Arc<str>, Vec<String>>>,
}

impl Tally {
    pub fn line(&self) -> String {
        format!(
            "connected {}, commands {}, lost {}, carried out {}, refused {}",
            self.connected.load(Ordering::Relaxed),
            self.commands.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
            self.carried_out.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

/// The commands that arrived since the first `seen` (which moves on), each with its time as
/// Unix microseconds by `clock`: what `herald simulate --print-arrivals` tells a benchmark in
/// another process.
pub fn drain_arrivals(tally: &Tally, seen: &mut usize, clock: &Clock) -> Vec<(Arc<str>, i64)> {
    let (now, wall) = (std::time::Instant::now(), clock.now().timestamp_micros());
    let arrivals = tally.arrivals.lock().unwrap_or_else(|p| p.into_inner());
    let fresh = arrivals.get(*seen..).unwrap_or_default();
    *seen = arrivals.len();
    fresh
        .iter()
        .map(|(device, at)| {
            let ago = i64::try_from(now.duration_since(*at).as_micros()).unwrap_or(i64::MAX);
            (device.clone(), wall.saturating_sub(ago))
        })
        .collect()
}

/// A small, seeded generator for the loss knob: the same device loses the same commands. (The
/// benchmarks draw their data from it too: the same seed, the same data.) The seed must not be 0.
pub struct Dice(pub u64);

impl Dice {
    /// A number below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.roll() * n as f64) as usize).min(n.saturating_sub(1))
    }

    pub fn roll(&mut self) -> f64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let n = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (n >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs `device` against the broker at `broker` until the process ends (a lost connection is
/// retried) or an answer cannot be queued.
/// `trusted` is the hub's issuer key as the device was flashed with it; `now` the device's
/// clock in Unix seconds.
pub async fn run_device(
    device: VirtualDevice,
    trusted: TrustedKey,
    (host, port): (String, u16),
    now: impl Fn() -> u64,
    behaviour: Behaviour,
    tally: Arc<Tally>,
) -> anyhow::Result<()> {
    let identity = DeviceIdentity {
        device_id: device.device_id.clone(),
        key_id: device.key_id,
        keys: KeyPair::from_seed(&device.seed),
    };
    let capabilities = Capabilities {
        firmware: "sim-1.0".into(),
        codecs: device.codecs.clone(),
        tts: device.tts,
        screen: device.screen.then_some(Screen {
            width: 256,
            height: 128,
            qr: true,
        }),
    };
    let name: Arc<str> = device.device_id.as_str().into();
    let mut session = DeviceSession::new(identity, capabilities, DeviceState::factory(trusted));
    let plan = session
        .connect(Some(now()))
        .map_err(|e| anyhow::anyhow!("connect plan: {e}"))?;
    let mut options = MqttOptions::new(device.device_id.clone(), host, port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(256 * 1024, 256 * 1024)
        .set_last_will(LastWill::new(
            plan.will.topic,
            plan.will.payload,
            QoS::AtLeastOnce,
            true,
        ));
    if let Some(credential) = &device.credential {
        options.set_credentials(device.device_id.clone(), credential.clone());
    }
    // Room for the answers to a burst of commands: this task both queues them and drives the
    // connection that sends them, so a full queue would stall it.
    let (client, mut events) = AsyncClient::new(options, 4096);
    for topic in plan.subscribe {
        client.subscribe(topic, QoS::AtLeastOnce).await?;
    }
    for publish in plan.publish {
        client
            .publish(publish.topic, QoS::AtLeastOnce, publish.retain, publish.payload)
            .await?;
    }
    let mut dice = Dice(u64::from_le_bytes([
        device.seed[0],
        device.seed[1],
        device.seed[2],
        device.seed[3],
        device.seed[4],
        device.seed[5],
        device.seed[6],
        device.seed[7] | 1,
    ]));
    let mut player = Player::new();
    let mut media = Media::default();
    loop {
        // Wake for the player's next change, on the device's clock of whole seconds.
        let at = now();
        let wake = player
            .next_wake(at)
            .map(|wake| Duration::from_secs(wake.saturating_sub(at)));
        let polled = match wake {
            Some(after) => tokio::select! {
                polled = events.poll() => Some(polled),
                () = tokio::time::sleep(after) => None,
            },
            None => Some(events.poll().await),
        };
        let mut happenings = Vec::new();
        let mut sends = Vec::new();
        match polled {
            None => happenings = player.advance(now()),
            Some(Err(_)) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                tally.connected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Some(Ok(Event::Incoming(Packet::Publish(command)))) => {
                tally.commands.fetch_add(1, Ordering::Relaxed);
                tally
                    .arrivals
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((name.clone(), std::time::Instant::now()));
                if behaviour.loss > 0.0 && dice.roll() < behaviour.loss {
                    tally.lost.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if !behaviour.latency.is_zero() {
                    tokio::time::sleep(behaviour.latency).await;
                }
                let outputs = session.handle(Some(now()), &command.topic, &command.payload);
                // A command that passes comes out to be carried out; one refused, as an ack alone.
                let counter = if outputs.iter().any(|o| matches!(o, Output::Execute(_))) {
                    &tally.carried_out
                } else {
                    &tally.refused
                };
                counter.fetch_add(1, Ordering::Relaxed);
                for output in outputs {
                    match output {
                        Output::Publish(publish) => sends.push(publish),
                        Output::Execute(accepted) => {
                            match media.length(&accepted, behaviour.run_seconds).await {
                                Ok(length) => happenings.extend(player.execute(now(), accepted, length)),
                                Err(_) => sends.push(session.progress(
                                    Some(now()),
                                    &accepted,
                                    AckStage::Rejected,
                                    Some(RejectReason::BadMedia),
                                )?),
                            }
                        }
                        Output::Persist | Output::SetClock(_) => {}
                    }
                }
            }
            Some(Ok(_)) => continue,
        }
        // What the player did at this moment goes as one report (a bundle), as PROTOCOL.md
        // §6.7 allows; the `verified` ack above has gone on its own already.
        let together = happenings
            .into_iter()
            .map(|happening| match happening {
                Happening::Ack(accepted, stage) => Bundled::Ack(DeviceSession::ack(&accepted, stage, None)),
                Happening::Proof(proof) => Bundled::Proof(proof),
            })
            .collect();
        sends.extend(session.report_together(Some(now()), together)?);
        tally
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), player.running().map(str::to_owned).collect());
        for publish in sends {
            client
                .publish(publish.topic, QoS::AtLeastOnce, publish.retain, publish.payload)
                .await?;
        }
    }
}

/// A device's audio files, downloaded once each and kept by hash (PROTOCOL.md §5.2).
#[derive(Default)]
struct Media {
    client: Option<reqwest::Client>,
    /// Seconds each file plays, by SHA-256.
    kept: std::collections::HashMap<String, u64>,
}

impl Media {
    /// Seconds one run of `accepted` takes: for audio, the file's decoded length times its
    /// repeats, once the file is downloaded and matches its size and hash (`bad_media` when it
    /// cannot be had or does not match); for anything else, `otherwise`.
    async fn length(&mut self, accepted: &Accepted, otherwise: u64) -> anyhow::Result<u64> {
        let CommandBody::Play(play) = &accepted.command.cmd else {
            return Ok(otherwise);
        };
        let PlaySource::Audio(audio) = &play.source else {
            return Ok(otherwise);
        };
        let seconds = match self.kept.get(&audio.sha256) {
            Some(seconds) => *seconds,
            None => {
                let seconds = self.fetch(audio).await?;
                self.kept.insert(audio.sha256.clone(), seconds);
                seconds
            }
        };
        Ok(seconds.saturating_mul(u64::from(play.repeat.max(1))))
    }

    async fn fetch(&mut self, audio: &AudioRef) -> anyhow::Result<u64> {
        let client = self.client.get_or_insert_with(reqwest::Client::new);
        let response = client.get(&audio.url).send().await?.error_for_status()?;
        let bytes = response.bytes().await?;
        anyhow::ensure!(
            bytes.len() as u64 == audio.size,
            "size {} is not {}",
            bytes.len(),
            audio.size
        );
        let sha256 = crate::domain::item::sha256_hex(&bytes);
        anyhow::ensure!(sha256 == audio.sha256, "SHA-256 {sha256} is not {}", audio.sha256);
        let facts = crate::domain::audio::inspect(audio.codec.media_type(), &bytes)?;
        Ok(facts.duration_ms.div_ceil(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dice_are_fair_enough_and_repeatable() {
        let mut a = Dice(42);
        let mut b = Dice(42);
        let rolls: Vec<f64> = (0..10_000).map(|_| a.roll()).collect();
        assert!(rolls.iter().all(|r| (0.0..1.0).contains(r)));
        let low = rolls.iter().filter(|r| **r < 0.25).count();
        assert!((2000..3000).contains(&low), "{low} of 10,000 under 0.25");
        assert_eq!(rolls[..5], (0..5).map(|_| b.roll()).collect::<Vec<_>>()[..]);
    }
}
