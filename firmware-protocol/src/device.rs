//! The device side: a sans-IO session that verifies commands and signs reports.
//!
//! The firmware (or a fleet simulator) owns the MQTT connection, the clock and the flash; it
//! feeds each received PUBLISH to [`DeviceSession::handle`] with the current time and carries
//! out the [`Output`]s in order. Nothing here blocks, allocates a socket or reads a clock.

use alloc::{string::String, vec, vec::Vec};

use crate::command::{Audience, AudioCodec, Command, CommandBody, KeyRole, PlaySource};
use crate::frame::{Direction, Frame, FrameError, KeyPair};
use crate::report::{
    Ack, AckStage, Birth, Bundle, Bundled, KeySeen, MAX_BUNDLED, RejectReason, Report, ReportBody, Screen,
    Status, WILL_SEQ,
};
use crate::topic;
use crate::wire::DecodeError;

/// How far in the device's future `issued_at` may be: hub and device clocks are NTP-synced,
/// so five minutes is slack for a device whose RTC drifted since its last sync.
pub const MAX_CLOCK_SKEW_S: u64 = 300;

/// How many sequence numbers below the highest accepted one are still accepted once each.
/// Commands for one device travel on up to four topics (device, village, township, county), and
/// the broker orders messages per topic only, so a strictly increasing check would reject
/// legitimate commands that overtook each other; the IPsec anti-replay window solves this.
pub const REPLAY_WINDOW: u64 = 64;

/// At most this many trusted issuer keys: room for a root, its successor, and operational keys
/// during a rotation.
pub const MAX_TRUSTED_KEYS: usize = 8;

/// Who the device is: its id, and the key it signs reports with.
#[derive(Clone, Debug)]
pub struct DeviceIdentity {
    /// The registered device id (also its MQTT client id and topic level).
    pub device_id: String,
    /// The id the hub gave the device's public key at registration.
    pub key_id: u32,
    /// The device's Ed25519 key pair.
    pub keys: KeyPair,
}

/// What the device can do; reported in its birth and checked before accepting a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Firmware version string.
    pub firmware: String,
    /// Codecs it plays.
    pub codecs: Vec<AudioCodec>,
    /// Whether it speaks TTS.
    pub tts: bool,
    /// Its screen, if any.
    pub screen: Option<Screen>,
}

/// An issuer key the device trusts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    /// Key id from the frame header.
    pub key_id: u32,
    /// What it may sign.
    pub role: KeyRole,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
}

/// The accepted sequence numbers of one issuer key: the highest, and a bitmap of the 64 below
/// it (bit n: `highest − n` accepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Issuer key id.
    pub key_id: u32,
    /// Highest accepted `seq`; 0 before the first.
    pub highest: u64,
    /// Bit n set: `highest − n` was accepted.
    pub seen: u64,
}

impl ReplayWindow {
    fn new(key_id: u32) -> Self {
        ReplayWindow {
            key_id,
            highest: 0,
            seen: 0,
        }
    }

    fn is_fresh(&self, seq: u64) -> bool {
        if seq > self.highest {
            return true;
        }
        let behind = self.highest - seq;
        seq != 0 && behind < REPLAY_WINDOW && self.seen & (1 << behind) == 0
    }

    fn record(&mut self, seq: u64) {
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = seq;
        } else {
            self.seen |= 1 << (self.highest - seq);
        }
    }
}

/// What the device must keep in flash across reboots. Write it whenever [`Output::Persist`]
/// comes out, before carrying out the outputs after it, and after [`DeviceSession::connect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceState {
    /// Trusted issuer keys; the factory flashes at least one root key.
    pub trusted: Vec<TrustedKey>,
    /// Replay windows, kept even after a key is removed so re-adding it cannot reopen old
    /// sequence numbers.
    pub windows: Vec<ReplayWindow>,
    /// The last MQTT session counter used.
    pub session: u32,
    /// The configured area code.
    pub area: Option<String>,
    /// Version of the schedule held (0: none).
    pub schedule_version: u64,
}

impl DeviceState {
    /// A factory-fresh device trusting `root`.
    pub fn factory(root: TrustedKey) -> Self {
        DeviceState {
            trusted: vec![root],
            windows: Vec::new(),
            session: 0,
            area: None,
            schedule_version: 0,
        }
    }
}

/// An MQTT PUBLISH to send, always at QoS 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Topic name.
    pub topic: String,
    /// A signed frame.
    pub payload: Vec<u8>,
    /// The retain flag (only `status`).
    pub retain: bool,
}

/// What to do after a CONNECT: set the will, subscribe, then publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectPlan {
    /// The will to put in the CONNECT packet (retained, QoS 1).
    pub will: Publish,
    /// Topics to subscribe to at QoS 1.
    pub subscribe: Vec<String>,
    /// Status online, then birth.
    pub publish: Vec<Publish>,
}

/// A command that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The issuer key that signed it.
    pub key_id: u32,
    /// The command.
    pub command: Command,
}

/// One thing for the firmware to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write [`DeviceSession::state`] to flash now (before the outputs that follow).
    Persist,
    /// Send this PUBLISH.
    Publish(Publish),
    /// Set the clock to these Unix seconds.
    SetClock(u64),
    /// Carry out a verified play, display, cancel, schedule sync or config.
    Execute(Accepted),
}

/// A refused command: what it claimed to be, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rejection {
    claimed: Claimed,
    reason: RejectReason,
}

/// What an unverified command says about itself, echoed in the ack so the hub can match it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Claimed {
    key_id: Option<u32>,
    seq: Option<u64>,
    id: Option<String>,
}

/// The verifying state machine of one device.
#[derive(Debug)]
pub struct DeviceSession {
    identity: DeviceIdentity,
    capabilities: Capabilities,
    state: DeviceState,
    next_seq: u32,
}

impl DeviceSession {
    /// A session over `state` as read from flash.
    pub fn new(identity: DeviceIdentity, capabilities: Capabilities, state: DeviceState) -> Self {
        DeviceSession {
            identity,
            capabilities,
            state,
            next_seq: WILL_SEQ + 1,
        }
    }

    /// What to persist.
    pub fn state(&self) -> &DeviceState {
        &self.state
    }

    /// The device id.
    pub fn device_id(&self) -> &str {
        &self.identity.device_id
    }

    /// Starts a new MQTT session: increases the session counter (persist [`Self::state`]
    /// before sending CONNECT) and returns the will, the subscriptions and the first reports.
    pub fn connect(&mut self, now: Option<u64>) -> Result<ConnectPlan, DecodeError> {
        self.state.session = self.state.session.wrapping_add(1);
        self.next_seq = WILL_SEQ;
        let will = self.report(now, ReportBody::Status(Status { online: false }))?;
        let online = self.report(now, ReportBody::Status(Status { online: true }))?;
        let birth = self.birth(now)?;
        Ok(ConnectPlan {
            will,
            subscribe: self.subscriptions(),
            publish: vec![online, birth],
        })
    }

    /// The command topics this device listens on.
    pub fn subscriptions(&self) -> Vec<String> {
        topic::subscriptions(&self.identity.device_id, self.state.area.as_deref())
    }

    /// Handles one received PUBLISH at `now` (Unix seconds; `None` while the device has no
    /// trusted time). A message on a topic that is not one of ours is ignored; any other
    /// either comes out verified or is answered by a `rejected` ack with its reason.
    pub fn handle(&mut self, now: Option<u64>, topic: &str, bytes: &[u8]) -> Vec<Output> {
        if !self.subscriptions().iter().any(|t| t == topic) {
            return Vec::new();
        }
        match self.verify(now, bytes) {
            Ok(accepted) => self.accept(now, accepted),
            Err(rejection) => {
                let ack = Ack {
                    key_id: rejection.claimed.key_id,
                    cmd_seq: rejection.claimed.seq,
                    id: rejection.claimed.id,
                    stage: AckStage::Rejected,
                    reason: Some(rejection.reason),
                };
                self.report(now, ReportBody::Ack(ack))
                    .map(|publish| vec![Output::Publish(publish)])
                    .unwrap_or_default()
            }
        }
    }

    /// A lifecycle ack for an accepted command (`queued`, `started`, `finished`, `expired`,
    /// `preempted`, or `rejected` with `bad_media`).
    pub fn progress(
        &mut self,
        now: Option<u64>,
        accepted: &Accepted,
        stage: AckStage,
        reason: Option<RejectReason>,
    ) -> Result<Publish, DecodeError> {
        self.report(now, ReportBody::Ack(Self::ack(accepted, stage, reason)))
    }

    /// The ack of `stage` for an accepted command, unsigned: for [`Self::report_together`].
    pub fn ack(accepted: &Accepted, stage: AckStage, reason: Option<RejectReason>) -> Ack {
        Ack {
            key_id: Some(accepted.key_id),
            cmd_seq: Some(accepted.command.seq),
            id: Some(accepted.command.id.clone()),
            stage,
            reason,
        }
    }

    /// Signs the acks and proofs the device has at one moment (a play that started and
    /// finished at once, say) as few reports as it can: one `bundle` per [`MAX_BUNDLED`], or
    /// the report alone when it is one.
    pub fn report_together(
        &mut self,
        now: Option<u64>,
        reports: Vec<Bundled>,
    ) -> Result<Vec<Publish>, DecodeError> {
        reports
            .chunks(MAX_BUNDLED)
            .map(|chunk| {
                let body = match chunk {
                    [only] => ReportBody::from(only.clone()),
                    _ => ReportBody::Bundle(Bundle {
                        reports: chunk.to_vec(),
                    }),
                };
                self.report(now, body)
            })
            .collect()
    }

    /// Signs a report for the current session (health, proof, …).
    pub fn report(&mut self, now: Option<u64>, body: ReportBody) -> Result<Publish, DecodeError> {
        let retain = matches!(body, ReportBody::Status(_));
        let topic = topic::report(&self.identity.device_id, body.kind());
        let report = Report {
            device: self.identity.device_id.clone(),
            session: self.state.session,
            seq: self.next_seq,
            sent_at: now.unwrap_or(0),
            msg: body,
        };
        let payload = report.encode()?;
        let payload = self
            .identity
            .keys
            .seal(Direction::Report, self.identity.key_id, &payload)
            .map_err(|_| DecodeError::Malformed)?;
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(Publish {
            topic,
            payload,
            retain,
        })
    }

    fn birth(&mut self, now: Option<u64>) -> Result<Publish, DecodeError> {
        let keys = self
            .state
            .trusted
            .iter()
            .map(|key| KeySeen {
                key_id: key.key_id,
                last_seq: self.window(key.key_id).map_or(0, |w| w.highest),
            })
            .collect();
        let birth = Birth {
            firmware: self.capabilities.firmware.clone(),
            codecs: self.capabilities.codecs.clone(),
            tts: self.capabilities.tts,
            screen: self.capabilities.screen,
            area: self.state.area.clone(),
            keys,
            schedule_version: self.state.schedule_version,
        };
        self.report(now, ReportBody::Birth(birth))
    }

    fn window(&self, key_id: u32) -> Option<&ReplayWindow> {
        self.state.windows.iter().find(|w| w.key_id == key_id)
    }

    /// The checks, in the order PROTOCOL.md gives them.
    fn verify(&self, now: Option<u64>, bytes: &[u8]) -> Result<Accepted, Rejection> {
        let mut claimed = Claimed::default();
        let reject = |claimed: &Claimed, reason| Rejection {
            claimed: claimed.clone(),
            reason,
        };
        let frame = Frame::parse(bytes).map_err(|error| {
            let reason = match error {
                FrameError::UnsupportedVersion(_) | FrameError::UnsupportedAlgorithm(_) => {
                    RejectReason::UnsupportedFormat
                }
                FrameError::TooShort | FrameError::BadMagic | FrameError::PayloadTooLong => {
                    RejectReason::Malformed
                }
            };
            reject(&claimed, reason)
        })?;
        claimed = claim(&frame);
        let key = self
            .state
            .trusted
            .iter()
            .find(|key| key.key_id == frame.key_id)
            .ok_or_else(|| reject(&claimed, RejectReason::UnknownKey))?;
        frame
            .verify(Direction::Command, &key.public_key)
            .map_err(|_| reject(&claimed, RejectReason::BadSignature))?;
        let command = Command::decode(frame.payload).map_err(|error| {
            let reason = match error {
                DecodeError::Malformed => RejectReason::Malformed,
                DecodeError::UnknownType => RejectReason::Unsupported,
            };
            reject(&claimed, reason)
        })?;
        if !self.is_for_me(&command.to) {
            return Err(reject(&claimed, RejectReason::NotForMe));
        }
        let fresh = self
            .window(frame.key_id)
            .is_none_or(|window| window.is_fresh(command.seq));
        if !fresh {
            return Err(reject(&claimed, RejectReason::Replay));
        }
        match now {
            // Without trusted time only a clock can be accepted; its sequence number still
            // stops a replay of an old one.
            None if !matches!(command.cmd, CommandBody::TimeSync(_)) => {
                return Err(reject(&claimed, RejectReason::ClockUnset));
            }
            None => {}
            Some(now) if now > command.not_after => {
                return Err(reject(&claimed, RejectReason::Expired));
            }
            Some(now) if command.issued_at > now.saturating_add(MAX_CLOCK_SKEW_S) => {
                return Err(reject(&claimed, RejectReason::NotYetValid));
            }
            Some(_) => {}
        }
        if let CommandBody::Trust(trust) = &command.cmd {
            if key.role != KeyRole::Root {
                return Err(reject(&claimed, RejectReason::Forbidden));
            }
            let after = self.trusted_after(trust);
            let roots = after.iter().filter(|k| k.role == KeyRole::Root).count();
            if roots == 0 || after.len() > MAX_TRUSTED_KEYS {
                return Err(reject(&claimed, RejectReason::Forbidden));
            }
        }
        if !self.can_do(&command.cmd) {
            return Err(reject(&claimed, RejectReason::Unsupported));
        }
        Ok(Accepted {
            key_id: frame.key_id,
            command,
        })
    }

    fn is_for_me(&self, audience: &Audience) -> bool {
        match audience {
            Audience::Devices(devices) => devices.contains(&self.identity.device_id),
            Audience::Areas(areas) => self
                .state
                .area
                .as_deref()
                .is_some_and(|mine| areas.iter().any(|area| mine.starts_with(area.as_str()))),
        }
    }

    fn can_do(&self, body: &CommandBody) -> bool {
        let playable = |source: &PlaySource| match source {
            PlaySource::Audio(audio) => self.capabilities.codecs.contains(&audio.codec),
            PlaySource::Tts(_) => self.capabilities.tts,
        };
        match body {
            CommandBody::Play(play) => playable(&play.source),
            CommandBody::Display(display) => match self.capabilities.screen {
                None => false,
                Some(screen) => display.qr.is_none() || screen.qr,
            },
            CommandBody::ScheduleSync(sync) => sync.entries.iter().all(|e| playable(&e.source)),
            CommandBody::Cancel(_)
            | CommandBody::Config(_)
            | CommandBody::TimeSync(_)
            | CommandBody::Rebirth
            | CommandBody::Trust(_) => true,
        }
    }

    fn trusted_after(&self, trust: &crate::command::Trust) -> Vec<TrustedKey> {
        let mut keys: Vec<TrustedKey> = self
            .state
            .trusted
            .iter()
            .filter(|k| !trust.remove.contains(&k.key_id))
            .copied()
            .collect();
        for entry in &trust.add {
            // Checked by `Command::decode`.
            let Some(public_key) = crate::hex::decode_array::<32>(&entry.public_key) else {
                continue;
            };
            keys.retain(|k| k.key_id != entry.key_id);
            keys.push(TrustedKey {
                key_id: entry.key_id,
                role: entry.role,
                public_key,
            });
        }
        keys
    }

    fn accept(&mut self, now: Option<u64>, accepted: Accepted) -> Vec<Output> {
        let key_id = accepted.key_id;
        let window = match self.state.windows.iter_mut().find(|w| w.key_id == key_id) {
            Some(window) => window,
            None => {
                self.state.windows.push(ReplayWindow::new(key_id));
                let last = self.state.windows.len() - 1;
                &mut self.state.windows[last]
            }
        };
        window.record(accepted.command.seq);
        let mut outputs = vec![Output::Persist];
        match &accepted.command.cmd {
            CommandBody::Config(config) => {
                if let Some(area) = &config.area {
                    self.state.area = Some(area.clone());
                }
            }
            CommandBody::ScheduleSync(sync) => self.state.schedule_version = sync.version,
            CommandBody::Trust(trust) => self.state.trusted = self.trusted_after(trust),
            CommandBody::TimeSync(sync) => outputs.push(Output::SetClock(sync.unix_time)),
            CommandBody::Play(_)
            | CommandBody::Display(_)
            | CommandBody::Cancel(_)
            | CommandBody::Rebirth => {}
        }
        // A time sync sets the clock first, so the ack already carries the new time.
        let now = match accepted.command.cmd {
            CommandBody::TimeSync(sync) => Some(sync.unix_time),
            _ => now,
        };
        if let Ok(ack) = self.progress(now, &accepted, AckStage::Verified, None) {
            outputs.push(Output::Publish(ack));
        }
        match accepted.command.cmd {
            CommandBody::Rebirth => {
                if let Ok(birth) = self.birth(now) {
                    outputs.push(Output::Publish(birth));
                }
            }
            CommandBody::TimeSync(_) | CommandBody::Trust(_) => {}
            CommandBody::Play(_)
            | CommandBody::Display(_)
            | CommandBody::Cancel(_)
            | CommandBody::ScheduleSync(_)
            | CommandBody::Config(_) => outputs.push(Output::Execute(accepted)),
        }
        outputs
    }
}

/// The key id, `seq` and `id` an unverified frame claims, for the ack; values an ack cannot
/// carry are left out.
fn claim(frame: &Frame<'_>) -> Claimed {
    let payload = serde_json::from_slice::<serde_json::Value>(frame.payload).ok();
    let field = |name: &str| payload.as_ref().and_then(|p| p.get(name));
    Claimed {
        key_id: Some(frame.key_id),
        seq: field("seq")
            .and_then(serde_json::Value::as_u64)
            .filter(|seq| *seq <= crate::wire::MAX_SAFE_INTEGER),
        id: field("id")
            .and_then(serde_json::Value::as_str)
            .filter(|id| id.chars().count() <= 64)
            .map(String::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{AudioRef, Config, Play, TimeSync, Trust, TrustedKeyEntry};
    use crate::hub::Issuer;

    const NOW: u64 = 1_795_000_000;
    const DEVICE: &str = "spk-0001";
    const ROOT: u32 = 1;
    const OPS: u32 = 2;

    fn root() -> Issuer {
        Issuer::new(ROOT, &[0x11; 32])
    }

    fn ops() -> Issuer {
        Issuer::new(OPS, &[0x22; 32])
    }

    fn session() -> DeviceSession {
        let identity = DeviceIdentity {
            device_id: DEVICE.into(),
            key_id: 1001,
            keys: KeyPair::from_seed(&[0x33; 32]),
        };
        let capabilities = Capabilities {
            firmware: "v1".into(),
            codecs: vec![AudioCodec::Mp3],
            tts: false,
            screen: None,
        };
        let mut state = DeviceState::factory(TrustedKey {
            key_id: ROOT,
            role: KeyRole::Root,
            public_key: root().public_key(),
        });
        state.trusted.push(TrustedKey {
            key_id: OPS,
            role: KeyRole::Operational,
            public_key: ops().public_key(),
        });
        let mut session = DeviceSession::new(identity, capabilities, state);
        session.connect(Some(NOW)).unwrap();
        session
    }

    fn play(seq: u64) -> Command {
        Command {
            seq,
            issued_at: NOW,
            not_after: NOW + 600,
            id: alloc::format!("item-{seq}"),
            to: Audience::Devices(vec![DEVICE.into()]),
            cmd: CommandBody::Play(Play {
                priority: 2,
                source: PlaySource::Audio(AudioRef {
                    url: "https://herald.example/a.mp3".into(),
                    sha256: "00".repeat(32),
                    size: 1000,
                    codec: AudioCodec::Mp3,
                }),
                repeat: 1,
                start_at: None,
                override_quiet_hours: false,
            }),
        }
    }

    fn topic() -> String {
        topic::device_commands(DEVICE)
    }

    /// The single ack a rejection produces, opened the way the hub opens it.
    fn rejected(outputs: &[Output]) -> (Ack, Report) {
        let [Output::Publish(publish)] = outputs else {
            panic!("expected exactly one publish, got {outputs:?}");
        };
        let device_key = KeyPair::from_seed(&[0x33; 32]).public_key();
        let report = crate::hub::open_report(&publish.topic, &publish.payload, |key_id| {
            (key_id == 1001).then(|| crate::hub::DeviceKey {
                device_id: DEVICE.into(),
                public_key: device_key,
            })
        })
        .unwrap();
        let ReportBody::Ack(ack) = report.msg.clone() else {
            panic!("not an ack: {report:?}");
        };
        assert_eq!(ack.stage, AckStage::Rejected);
        (ack, report)
    }

    fn reason(outputs: &[Output]) -> RejectReason {
        rejected(outputs).0.reason.unwrap()
    }

    #[test]
    fn a_good_command_is_persisted_then_acked_verified_then_executed() {
        let mut device = session();
        let frame = ops().sign(&play(1)).unwrap();
        let outputs = device.handle(Some(NOW), &topic(), &frame);
        assert!(matches!(outputs[0], Output::Persist));
        assert!(matches!(&outputs[1], Output::Publish(p) if p.topic.ends_with("/ack")));
        assert!(matches!(&outputs[2], Output::Execute(a) if a.command == play(1)));
        assert_eq!(device.state().windows[0].highest, 1);
    }

    #[test]
    fn reports_of_one_moment_go_as_one_signed_bundle_of_at_most_sixteen() {
        let mut device = session();
        let frame = ops().sign(&play(1)).unwrap();
        let accepted = device
            .handle(Some(NOW), &topic(), &frame)
            .into_iter()
            .find_map(|output| match output {
                Output::Execute(accepted) => Some(accepted),
                _ => None,
            })
            .unwrap();
        let device_key = KeyPair::from_seed(&[0x33; 32]).public_key();
        let open = |publish: &Publish| {
            crate::hub::open_report(&publish.topic, &publish.payload, |_| {
                Some(crate::hub::DeviceKey {
                    device_id: DEVICE.into(),
                    public_key: device_key,
                })
            })
            .unwrap()
        };
        let started = Bundled::Ack(DeviceSession::ack(&accepted, AckStage::Started, None));
        let finished = Bundled::Ack(DeviceSession::ack(&accepted, AckStage::Finished, None));

        let together = device
            .report_together(Some(NOW), vec![started.clone(), finished.clone()])
            .unwrap();
        let [bundle] = together.as_slice() else {
            panic!("expected one publish, got {together:?}");
        };
        assert!(bundle.topic.ends_with("/bundle"));
        let opened = open(bundle);
        assert_eq!(
            opened.msg,
            ReportBody::Bundle(Bundle {
                reports: vec![started.clone(), finished.clone()]
            })
        );

        // One alone is the report itself; seventeen are a bundle of sixteen and one more.
        let alone = device.report_together(Some(NOW), vec![finished.clone()]).unwrap();
        assert_eq!(open(&alone[0]).msg, ReportBody::from(finished.clone()));
        let many = device
            .report_together(Some(NOW), vec![started.clone(); 17])
            .unwrap();
        assert_eq!(many.len(), 2);
        assert!(matches!(open(&many[0]).msg, ReportBody::Bundle(b) if b.reports.len() == MAX_BUNDLED));
        assert_eq!(open(&many[1]).msg, ReportBody::from(started));
        // Each is its own report: the sequence moves on by one per message, not per part.
        assert_eq!(open(&many[1]).seq, open(&many[0]).seq + 1);
        assert!(device.report_together(Some(NOW), Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn a_tampered_signature_is_rejected_as_bad_signature() {
        let mut device = session();
        let mut frame = ops().sign(&play(1)).unwrap();
        frame[crate::frame::HEADER_LEN] ^= 0x01;
        let outputs = device.handle(Some(NOW), &topic(), &frame);
        let (ack, _) = rejected(&outputs);
        assert_eq!(ack.reason, Some(RejectReason::BadSignature));
        assert_eq!((ack.key_id, ack.cmd_seq), (Some(OPS), Some(1)));
        assert_eq!(ack.id.as_deref(), Some("item-1"));

        // A tampered payload under an intact signature fails the same way.
        let mut frame = ops().sign(&play(1)).unwrap();
        let last = frame.len() - 2;
        frame[last] ^= 0x01;
        assert_eq!(
            reason(&device.handle(Some(NOW), &topic(), &frame)),
            RejectReason::BadSignature
        );
        assert!(device.state().windows.is_empty(), "nothing was accepted");
    }

    #[test]
    fn a_replayed_sequence_is_rejected_as_replay() {
        let mut device = session();
        let frame = ops().sign(&play(5)).unwrap();
        assert_eq!(device.handle(Some(NOW), &topic(), &frame).len(), 3);
        assert_eq!(
            reason(&device.handle(Some(NOW + 1), &topic(), &frame)),
            RejectReason::Replay
        );
        // A fresh signature over an old sequence number is a replay too (counter rollback).
        let older = ops().sign(&play(5)).unwrap();
        assert_eq!(
            reason(&device.handle(Some(NOW + 1), &topic(), &older)),
            RejectReason::Replay
        );
    }

    #[test]
    fn the_replay_window_accepts_each_overtaken_sequence_once() {
        let mut device = session();
        for seq in [10, 8, 9] {
            let frame = ops().sign(&play(seq)).unwrap();
            assert_eq!(device.handle(Some(NOW), &topic(), &frame).len(), 3, "seq {seq}");
        }
        for seq in [8, 9, 10] {
            let frame = ops().sign(&play(seq)).unwrap();
            assert_eq!(
                reason(&device.handle(Some(NOW), &topic(), &frame)),
                RejectReason::Replay
            );
        }
        let far = ops().sign(&play(10 + REPLAY_WINDOW)).unwrap();
        assert_eq!(device.handle(Some(NOW), &topic(), &far).len(), 3);
        let fell_out = ops().sign(&play(7)).unwrap();
        assert_eq!(
            reason(&device.handle(Some(NOW), &topic(), &fell_out)),
            RejectReason::Replay
        );
    }

    #[test]
    fn an_expired_command_is_rejected_as_expired() {
        let mut device = session();
        let frame = ops().sign(&play(1)).unwrap();
        assert_eq!(
            reason(&device.handle(Some(NOW + 601), &topic(), &frame)),
            RejectReason::Expired
        );
        // At `not_after` itself it is still good.
        assert_eq!(device.handle(Some(NOW + 600), &topic(), &frame).len(), 3);
    }

    #[test]
    fn an_unknown_key_is_rejected_as_unknown_key() {
        let mut device = session();
        let stranger = Issuer::new(99, &[0x44; 32]);
        let outputs = device.handle(Some(NOW), &topic(), &stranger.sign(&play(1)).unwrap());
        let (ack, _) = rejected(&outputs);
        assert_eq!(ack.reason, Some(RejectReason::UnknownKey));
        assert_eq!(ack.key_id, Some(99));
        // A known key id with a stranger's signature is a bad signature, not an unknown key.
        let impostor = Issuer::new(OPS, &[0x44; 32]);
        assert_eq!(
            reason(&device.handle(Some(NOW), &topic(), &impostor.sign(&play(1)).unwrap())),
            RejectReason::BadSignature
        );
    }

    #[test]
    fn the_other_refusals_carry_their_reasons() {
        let mut device = session();
        let early = Command {
            issued_at: NOW + MAX_CLOCK_SKEW_S + 1,
            not_after: NOW + 1000,
            ..play(1)
        };
        let cases = [
            (Some(NOW), ops().sign(&early).unwrap(), RejectReason::NotYetValid),
            (None, ops().sign(&play(2)).unwrap(), RejectReason::ClockUnset),
            (
                Some(NOW),
                ops()
                    .sign(&Command {
                        to: Audience::Devices(vec!["spk-0002".into()]),
                        ..play(3)
                    })
                    .unwrap(),
                RejectReason::NotForMe,
            ),
            (Some(NOW), b"HR\x01".to_vec(), RejectReason::Malformed),
            (
                Some(NOW),
                {
                    let mut frame = ops().sign(&play(4)).unwrap();
                    frame[3] = 2;
                    frame
                },
                RejectReason::UnsupportedFormat,
            ),
            (
                Some(NOW),
                ops()
                    .sign(&Command {
                        cmd: CommandBody::Play(Play {
                            source: PlaySource::Tts(crate::command::TtsText {
                                text: "通知".into(),
                                lang: "zh-CN".into(),
                            }),
                            ..match play(5).cmd {
                                CommandBody::Play(p) => p,
                                _ => unreachable!(),
                            }
                        }),
                        ..play(5)
                    })
                    .unwrap(),
                RejectReason::Unsupported,
            ),
            (
                Some(NOW),
                ops()
                    .sign(&Command {
                        cmd: CommandBody::Trust(Trust {
                            add: Vec::new(),
                            remove: vec![ROOT],
                        }),
                        ..play(6)
                    })
                    .unwrap(),
                RejectReason::Forbidden,
            ),
        ];
        for (now, frame, expected) in cases {
            assert_eq!(reason(&device.handle(now, &topic(), &frame)), expected);
        }
        assert!(device.handle(Some(NOW), "herald/v1/d/other/cmd", &[]).is_empty());
    }

    #[test]
    fn a_time_sync_is_accepted_without_a_clock_and_sets_it() {
        let mut device = session();
        let sync = Command {
            cmd: CommandBody::TimeSync(TimeSync { unix_time: NOW }),
            ..play(1)
        };
        let outputs = device.handle(None, &topic(), &ops().sign(&sync).unwrap());
        assert_eq!(outputs[1], Output::SetClock(NOW));
        assert_eq!(outputs.len(), 3);
    }

    #[test]
    fn keys_rotate_by_a_root_signed_trust_command() {
        let mut device = session();
        let next = Issuer::new(3, &[0x55; 32]);
        let rotate = Command {
            cmd: CommandBody::Trust(Trust {
                add: vec![TrustedKeyEntry {
                    key_id: 3,
                    role: KeyRole::Operational,
                    public_key: crate::hex::encode(&next.public_key()),
                }],
                remove: vec![OPS],
            }),
            ..play(1)
        };
        assert_eq!(
            device
                .handle(Some(NOW), &topic(), &root().sign(&rotate).unwrap())
                .len(),
            2
        );
        assert_eq!(
            reason(&device.handle(Some(NOW), &topic(), &ops().sign(&play(2)).unwrap())),
            RejectReason::UnknownKey
        );
        assert_eq!(
            device
                .handle(Some(NOW), &topic(), &next.sign(&play(1)).unwrap())
                .len(),
            3
        );
    }

    #[test]
    fn area_commands_reach_devices_in_the_area_after_config() {
        let mut device = session();
        let config = Command {
            cmd: CommandBody::Config(Config {
                area: Some("411421103201".into()),
                ..Config::default()
            }),
            ..play(1)
        };
        device.handle(Some(NOW), &topic(), &ops().sign(&config).unwrap());
        let county = Command {
            to: Audience::Areas(vec!["411421".into()]),
            ..play(2)
        };
        let area_topic = topic::area_commands("411421");
        let outputs = device.handle(Some(NOW), &area_topic, &ops().sign(&county).unwrap());
        assert!(matches!(outputs.last(), Some(Output::Execute(_))));
    }
}
