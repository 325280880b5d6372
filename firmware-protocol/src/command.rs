//! Hub → device commands: the JSON payload of a [`Direction::Command`](crate::Direction) frame.
//!
//! Every command carries its own replay and expiry fields (`seq`, `issued_at`, `not_after`)
//! and its audience (`to`) inside the signed bytes, so neither the broker nor anyone on the
//! path can replay it later, keep it past its life, or move it to another device.

use alloc::{string::String, vec::Vec};
use serde::{Deserialize, Serialize};

use crate::wire::{self, DecodeError};

/// Priority slots, 1 the highest: 1 national/provincial emergency, 2 county emergency,
/// 3 township order, 4 village live, 5 village scheduled, 6 background. A higher slot preempts a
/// lower one at once; cancelling reverts to the next.
pub const PRIORITY_RANGE: core::ops::RangeInclusive<u8> = 1..=6;

/// One signed hub → device command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Per-issuer-key sequence, strictly increasing across every command the key signs.
    pub seq: u64,
    /// Unix seconds when the hub signed it.
    pub issued_at: u64,
    /// Unix seconds after which the device must not act on it (`expired`).
    pub not_after: u64,
    /// The hub's id for this command; acks, proofs and cancels refer to it.
    pub id: String,
    /// Who must act on it.
    pub to: Audience,
    /// What to do.
    pub cmd: CommandBody,
}

/// The devices a command is for, inside the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// These device ids.
    Devices(Vec<String>),
    /// Every device whose configured area code starts with one of these codes (GB/T 2260 +
    /// township + village digits: 6, 9 or 12 digits).
    Areas(Vec<String>),
}

/// What a command asks for, tagged by `"type"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandBody {
    /// Play audio or speak text.
    Play(Play),
    /// Show paged text and an optional QR link.
    Display(Display),
    /// Stop an item (or everything this hub started).
    Cancel(Cancel),
    /// Replace the device's local timetable of announcements.
    ScheduleSync(ScheduleSync),
    /// Change settings; absent fields keep their value.
    Config(Config),
    /// Set the device clock.
    TimeSync(TimeSync),
    /// Publish a fresh birth message.
    Rebirth,
    /// Add or remove trusted issuer keys; only a root key may sign it.
    Trust(Trust),
}

impl CommandBody {
    /// The `"type"` string on the wire.
    pub const fn kind(&self) -> &'static str {
        match self {
            CommandBody::Play(_) => "play",
            CommandBody::Display(_) => "display",
            CommandBody::Cancel(_) => "cancel",
            CommandBody::ScheduleSync(_) => "schedule_sync",
            CommandBody::Config(_) => "config",
            CommandBody::TimeSync(_) => "time_sync",
            CommandBody::Rebirth => "rebirth",
            CommandBody::Trust(_) => "trust",
        }
    }

    /// Every `"type"` this version defines; a device answers others with `unsupported`.
    pub const KINDS: [&'static str; 8] = [
        "play",
        "display",
        "cancel",
        "schedule_sync",
        "config",
        "time_sync",
        "rebirth",
        "trust",
    ];
}

/// Play audio or text-to-speech.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Play {
    /// See [`PRIORITY_RANGE`].
    pub priority: u8,
    /// What to play.
    pub source: PlaySource,
    /// How many times, at least 1.
    pub repeat: u8,
    /// Unix seconds to start at; absent: as soon as the priority allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<u64>,
    /// Play even inside the configured quiet hours (emergencies only, by hub policy).
    #[serde(default)]
    pub override_quiet_hours: bool,
}

/// Audio by reference, or text for a device that advertised TTS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaySource {
    /// A file the device downloads (HTTPS) and checks before playing.
    Audio(AudioRef),
    /// Text the device speaks itself.
    Tts(TtsText),
}

/// An audio file by URL, pinned by its hash and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioRef {
    /// `https://` (or `http://` on a closed county network) URL.
    pub url: String,
    /// Lowercase hex SHA-256 of the file; a mismatch is `rejected` with `bad_media`.
    pub sha256: String,
    /// Bytes; lets the device refuse before downloading what it cannot store.
    pub size: u64,
    /// The container/codec; one of the device's advertised codecs.
    pub codec: AudioCodec,
}

/// Audio formats by wire name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioCodec {
    /// MPEG-1/2 Layer III.
    Mp3,
    /// AAC-LC in ADTS.
    Aac,
    /// Opus in Ogg.
    Opus,
    /// PCM in RIFF/WAVE.
    Wav,
}

impl AudioCodec {
    /// The media type a file of this codec is served with (and uploaded to the hub as).
    pub fn media_type(self) -> &'static str {
        match self {
            AudioCodec::Mp3 => "audio/mpeg",
            AudioCodec::Aac => "audio/aac",
            AudioCodec::Opus => "audio/ogg",
            AudioCodec::Wav => "audio/wav",
        }
    }

    /// The codec served as `media_type`, if any.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        [
            AudioCodec::Mp3,
            AudioCodec::Aac,
            AudioCodec::Opus,
            AudioCodec::Wav,
        ]
        .into_iter()
        .find(|codec| codec.media_type() == media_type)
    }
}

/// Text to speak.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtsText {
    /// At most 2000 characters.
    pub text: String,
    /// BCP 47 tag, e.g. `zh-CN`.
    pub lang: String,
}

/// Show text pages and an optional QR code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Display {
    /// See [`PRIORITY_RANGE`].
    pub priority: u8,
    /// Pages shown in turn, at least one.
    pub pages: Vec<String>,
    /// Seconds per page, at least 1.
    pub page_seconds: u16,
    /// A link shown as a QR code beside the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr: Option<String>,
    /// Unix seconds to start showing; absent: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<u64>,
    /// Unix seconds to stop showing; absent: until cancelled or `not_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// Stop an item, or everything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    /// The command id to stop; absent: stop every item and clear the schedule ("stop all").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The whole local timetable, replacing the previous one. The hub expands recurrences into
/// concrete times (the next 48 hours), so the device needs no calendar code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSync {
    /// Increases with every change; the device reports it in its birth.
    pub version: u64,
    /// Entries by start time.
    pub entries: Vec<ScheduleEntry>,
}

/// One timed announcement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleEntry {
    /// Proofs of play refer to it.
    pub id: String,
    /// Unix seconds.
    pub at: u64,
    /// See [`PRIORITY_RANGE`].
    pub priority: u8,
    /// What to play.
    pub source: PlaySource,
}

/// Settings; absent fields keep their current value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<u8>,
    /// No routine audio inside this window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// Minutes east of UTC for local-time settings; 480 in China.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset_minutes: Option<i16>,
    /// The device's area code (12 digits); decides which area topics it subscribes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// Seconds between health reports, 60–3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_interval_s: Option<u16>,
}

/// A daily window in local minutes since midnight; `from > to` spans midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// 0–1439.
    pub from_minute: u16,
    /// 0–1439.
    pub to_minute: u16,
}

/// Set the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSync {
    /// Unix seconds at signing.
    pub unix_time: u64,
}

/// Change the device's trusted issuer keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trust {
    /// Keys to trust from now on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<TrustedKeyEntry>,
    /// Key ids to stop trusting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<u32>,
}

/// A key in a `trust` command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKeyEntry {
    /// Never reused for a different key.
    pub key_id: u32,
    /// What it may sign.
    pub role: KeyRole,
    /// Lowercase hex of the 32-byte Ed25519 public key.
    pub public_key: String,
}

/// What an issuer key may sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// Kept offline; may sign anything, and is the only role that may sign `trust`.
    Root,
    /// The hub's online key; signs everything but `trust`.
    Operational,
}

impl Command {
    /// Parses and checks a command payload. Unknown fields are ignored (newer hubs may add
    /// some); an unknown `"type"` is [`DecodeError::UnknownType`].
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let command: Command = match serde_json::from_slice(payload) {
            Ok(command) => command,
            Err(_) => {
                return Err(if wire::has_unknown_type(payload, "cmd", &CommandBody::KINDS) {
                    DecodeError::UnknownType
                } else {
                    DecodeError::Malformed
                });
            }
        };
        command.check()?;
        Ok(command)
    }

    /// The payload bytes, as the hub signs them.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        self.check()?;
        serde_json::to_vec(self).map_err(|_| DecodeError::Malformed)
    }

    fn check(&self) -> Result<(), DecodeError> {
        use wire::{ensure, id, safe_int, text};
        // 0 means "none accepted yet" in a device's replay window.
        ensure(self.seq >= 1)?;
        safe_int(self.seq)?;
        safe_int(self.issued_at)?;
        safe_int(self.not_after)?;
        ensure(self.not_after >= self.issued_at)?;
        id(&self.id)?;
        match &self.to {
            Audience::Devices(devices) => {
                ensure(!devices.is_empty() && devices.len() <= wire::MAX_LIST)?;
                devices.iter().try_for_each(|d| id(d))?;
            }
            Audience::Areas(areas) => {
                ensure(!areas.is_empty() && areas.len() <= wire::MAX_LIST)?;
                areas.iter().try_for_each(|a| wire::area_code(a))?;
            }
        }
        match &self.cmd {
            CommandBody::Play(play) => {
                priority(play.priority)?;
                ensure(play.repeat >= 1)?;
                play.start_at.map(safe_int).transpose()?;
                source(&play.source)?;
            }
            CommandBody::Display(display) => {
                priority(display.priority)?;
                ensure(!display.pages.is_empty() && display.pages.len() <= wire::MAX_LIST)?;
                display.pages.iter().try_for_each(|p| text(p, 2000))?;
                ensure(display.page_seconds >= 1)?;
                display.qr.as_deref().map(url).transpose()?;
                display.start_at.map(safe_int).transpose()?;
                display.until.map(safe_int).transpose()?;
            }
            CommandBody::Cancel(cancel) => {
                cancel.target.as_deref().map(id).transpose()?;
            }
            CommandBody::ScheduleSync(sync) => {
                safe_int(sync.version)?;
                ensure(sync.entries.len() <= wire::MAX_LIST)?;
                for entry in &sync.entries {
                    id(&entry.id)?;
                    safe_int(entry.at)?;
                    priority(entry.priority)?;
                    source(&entry.source)?;
                }
            }
            CommandBody::Config(config) => {
                config.volume.map(|v| ensure(v <= 100)).transpose()?;
                if let Some(quiet) = config.quiet_hours {
                    ensure(quiet.from_minute < 1440 && quiet.to_minute < 1440)?;
                }
                config
                    .utc_offset_minutes
                    .map(|m| ensure((-720..=840).contains(&m)))
                    .transpose()?;
                config.area.as_deref().map(wire::area_code).transpose()?;
                config
                    .health_interval_s
                    .map(|s| ensure((60..=3600).contains(&s)))
                    .transpose()?;
            }
            CommandBody::TimeSync(sync) => safe_int(sync.unix_time)?,
            CommandBody::Rebirth => {}
            CommandBody::Trust(trust) => {
                ensure(!trust.add.is_empty() || !trust.remove.is_empty())?;
                ensure(trust.add.len() + trust.remove.len() <= wire::MAX_LIST)?;
                for key in &trust.add {
                    ensure(crate::hex::decode_array::<32>(&key.public_key).is_some())?;
                }
            }
        }
        Ok(())
    }
}

fn priority(priority: u8) -> Result<(), DecodeError> {
    wire::ensure(PRIORITY_RANGE.contains(&priority))
}

fn url(url: &str) -> Result<(), DecodeError> {
    wire::text(url, 1024)?;
    wire::ensure(url.starts_with("https://") || url.starts_with("http://"))
}

fn source(source: &PlaySource) -> Result<(), DecodeError> {
    match source {
        PlaySource::Audio(audio) => {
            url(&audio.url)?;
            wire::ensure(crate::hex::decode_array::<32>(&audio.sha256).is_some())?;
            wire::safe_int(audio.size)
        }
        PlaySource::Tts(tts) => {
            wire::text(&tts.text, 2000)?;
            wire::ensure(!tts.text.is_empty())?;
            wire::text(&tts.lang, 35)
        }
    }
}
