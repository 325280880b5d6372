//! Device → hub reports: the JSON payload of a [`Direction::Report`](crate::Direction) frame,
//! signed by the device's own key.
//!
//! `session` counts the device's MQTT sessions (it is stored before each CONNECT) and `seq`
//! counts reports within one session, so the hub can drop duplicates and stale wills without the
//! device writing flash for every report (the Sparkplug B `bdSeq`/`seq` idea, without the wrap).

use alloc::{string::String, vec::Vec};
use serde::{Deserialize, Serialize};

use crate::command::AudioCodec;
use crate::wire::{self, DecodeError};

/// `seq` of the will (`status` offline): it is signed at CONNECT, before any other report.
pub const WILL_SEQ: u32 = 0;

/// One signed device → hub report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The reporting device; must be the device registered for the frame's key id and the
    /// device named in the topic.
    pub device: String,
    /// MQTT session counter, increased (and persisted) before every CONNECT.
    pub session: u32,
    /// Report counter within the session: 0 the will, then 1, 2, …
    pub seq: u32,
    /// Device clock in Unix seconds; 0 while it has no trusted time.
    pub sent_at: u64,
    /// What is reported.
    pub msg: ReportBody,
}

/// What a report says, tagged by `"type"`; the topic's last level is the same word.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReportBody {
    /// Online (after CONNECT) or offline (the will); published retained.
    Status(Status),
    /// Capabilities and state after every CONNECT and on `rebirth`.
    Birth(Birth),
    /// A step of a command's lifecycle.
    Ack(Ack),
    /// Periodic health.
    Health(Health),
    /// An item was played or shown.
    Proof(Proof),
    /// Acks and proofs the device had to send at one moment, under one signature.
    Bundle(Bundle),
}

/// Reports a [`Bundle`] holds at most.
pub const MAX_BUNDLED: usize = 16;

/// Several acks and proofs in one report: a play that starts and ends at once, or ends and
/// leaves its proof, costs one message and one signature instead of three.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// 2 to [`MAX_BUNDLED`] acks and proofs, in the order they happened.
    pub reports: Vec<Bundled>,
}

/// What a bundle may hold, tagged by `"type"` as the report it stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Bundled {
    /// As [`ReportBody::Ack`].
    Ack(Ack),
    /// As [`ReportBody::Proof`].
    Proof(Proof),
}

impl From<Bundled> for ReportBody {
    fn from(bundled: Bundled) -> Self {
        match bundled {
            Bundled::Ack(ack) => ReportBody::Ack(ack),
            Bundled::Proof(proof) => ReportBody::Proof(proof),
        }
    }
}

impl ReportBody {
    /// The `"type"` string, which is also the topic's last level.
    pub const fn kind(&self) -> &'static str {
        match self {
            ReportBody::Status(_) => "status",
            ReportBody::Birth(_) => "birth",
            ReportBody::Ack(_) => "ack",
            ReportBody::Health(_) => "health",
            ReportBody::Proof(_) => "proof",
            ReportBody::Bundle(_) => "bundle",
        }
    }

    /// Every `"type"` this version defines.
    pub const KINDS: [&'static str; 6] = ["status", "birth", "ack", "health", "proof", "bundle"];
}

/// Online or offline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `false` only in the will.
    pub online: bool,
}

/// What the device can do and what it last saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Birth {
    /// Vendor firmware version string.
    pub firmware: String,
    /// Codecs it plays.
    pub codecs: Vec<AudioCodec>,
    /// Whether it speaks `tts` play commands.
    pub tts: bool,
    /// Its screen, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<Screen>,
    /// Its configured area code, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// Trusted issuer keys and the highest `seq` accepted from each.
    pub keys: Vec<KeySeen>,
    /// Version of the schedule it holds (0: none).
    pub schedule_version: u64,
}

/// A text/LED screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Screen {
    /// Pixels.
    pub width: u16,
    /// Pixels.
    pub height: u16,
    /// Whether it can show a QR code legibly.
    pub qr: bool,
}

/// A trusted key and the last sequence accepted under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySeen {
    /// Issuer key id.
    pub key_id: u32,
    /// Highest accepted `seq` (0: none yet).
    pub last_seq: u64,
}

/// One step of a command's lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The command's issuer key id, as claimed by its frame (absent if the frame was unreadable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<u32>,
    /// The command's `seq`, as claimed by its payload (absent if unreadable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd_seq: Option<u64>,
    /// The command's `id`, as claimed by its payload (absent if unreadable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where the command is now.
    pub stage: AckStage,
    /// Why, present exactly when `stage` is `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RejectReason>,
}

/// received → verified → queued → started → finished, or one of the terminal outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStage {
    /// Bytes arrived (optional: for devices whose verification is slow).
    Received,
    /// Signature, key, sequence, audience and time all checked.
    Verified,
    /// Waiting for its start time, its media, or a higher priority to end.
    Queued,
    /// Playing or showing.
    Started,
    /// Done.
    Finished,
    /// Refused; `reason` says why.
    Rejected,
    /// Its `not_after` passed while it was queued or playing.
    Expired,
    /// Stopped by a higher priority or a `cancel`; it will not resume.
    Preempted,
}

/// Why a device refused a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The frame or payload could not be read.
    Malformed,
    /// Frame version or algorithm the device does not speak.
    UnsupportedFormat,
    /// The key id is not in the device's trust list.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `seq` already accepted, or too far behind the highest.
    Replay,
    /// `now > not_after`.
    Expired,
    /// `issued_at` more than five minutes in the device's future.
    NotYetValid,
    /// The device has no trusted time and the command is not `time_sync`.
    ClockUnset,
    /// The audience does not include this device.
    NotForMe,
    /// An operational key signed `trust`, or the change would leave no root key.
    Forbidden,
    /// A command type, codec, TTS or screen the device lacks.
    Unsupported,
    /// The downloaded media's size or SHA-256 did not match.
    BadMedia,
}

/// Periodic health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Current volume 0–100.
    pub volume: u8,
    /// Amplifier state.
    pub amplifier: Condition,
    /// Loudspeaker line state (open/short detection).
    pub line: Condition,
    /// Free media storage, KiB.
    pub storage_free_kib: u32,
    /// Total media storage, KiB.
    pub storage_total_kib: u32,
    /// Temperature in tenths of a degree Celsius (integers only on the wire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_decidegrees: Option<i16>,
    /// The command or schedule entry id playing now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playing: Option<String>,
}

/// A monitored part's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Working.
    Ok,
    /// Failed.
    Fault,
    /// The hardware cannot tell.
    Unknown,
}

/// Proof that an item was played or shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The command id or schedule entry id.
    pub item: String,
    /// Audio or screen.
    pub medium: Medium,
    /// Unix seconds, device clock.
    pub start: u64,
    /// Unix seconds, device clock.
    pub end: u64,
    /// Milliseconds actually played or shown (less than `end − start` if paused by a higher
    /// priority).
    pub duration_ms: u64,
    /// Whether it ran to its end (false: cancelled, preempted or failed mid-way).
    pub completed: bool,
}

/// Audio or screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Medium {
    /// Loudspeaker.
    Audio,
    /// Screen.
    Display,
}

impl Report {
    /// Parses and checks a report payload; unknown fields are ignored.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let report: Report = match serde_json::from_slice(payload) {
            Ok(report) => report,
            Err(_) => {
                return Err(if wire::has_unknown_type(payload, "msg", &ReportBody::KINDS) {
                    DecodeError::UnknownType
                } else {
                    DecodeError::Malformed
                });
            }
        };
        report.check()?;
        Ok(report)
    }

    /// The payload bytes, as the device signs them.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        self.check()?;
        serde_json::to_vec(self).map_err(|_| DecodeError::Malformed)
    }

    fn check(&self) -> Result<(), DecodeError> {
        use wire::{ensure, id, safe_int, text};
        id(&self.device)?;
        safe_int(self.sent_at)?;
        match &self.msg {
            // The will is the only report with seq 0, and it is always `offline`.
            ReportBody::Status(status) => ensure((self.seq == WILL_SEQ) != status.online)?,
            ReportBody::Birth(birth) => {
                ensure(self.seq != WILL_SEQ)?;
                text(&birth.firmware, 64)?;
                ensure(birth.codecs.len() <= 16 && birth.keys.len() <= 16)?;
                birth.area.as_deref().map(wire::area_code).transpose()?;
                birth.keys.iter().try_for_each(|k| safe_int(k.last_seq))?;
                safe_int(birth.schedule_version)?;
            }
            ReportBody::Ack(ack) => {
                ensure(self.seq != WILL_SEQ)?;
                check_ack(ack)?;
            }
            ReportBody::Health(health) => {
                ensure(self.seq != WILL_SEQ)?;
                ensure(health.volume <= 100)?;
                ensure(health.storage_free_kib <= health.storage_total_kib)?;
                health.playing.as_deref().map(id).transpose()?;
            }
            ReportBody::Proof(proof) => {
                ensure(self.seq != WILL_SEQ)?;
                check_proof(proof)?;
            }
            ReportBody::Bundle(bundle) => {
                ensure(self.seq != WILL_SEQ)?;
                ensure((2..=MAX_BUNDLED).contains(&bundle.reports.len()))?;
                for part in &bundle.reports {
                    match part {
                        Bundled::Ack(ack) => check_ack(ack)?,
                        Bundled::Proof(proof) => check_proof(proof)?,
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_ack(ack: &Ack) -> Result<(), DecodeError> {
    use wire::{ensure, safe_int, text};
    ensure(ack.reason.is_some() == (ack.stage == AckStage::Rejected))?;
    ack.cmd_seq.map(safe_int).transpose()?;
    // A rejected command's id is echoed unverified: bound it, but do not require it to be a
    // well-formed id.
    ack.id.as_deref().map(|i| text(i, 64)).transpose()?;
    Ok(())
}

fn check_proof(proof: &Proof) -> Result<(), DecodeError> {
    use wire::{ensure, id, safe_int};
    id(&proof.item)?;
    safe_int(proof.start)?;
    safe_int(proof.end)?;
    safe_int(proof.duration_ms)?;
    ensure(proof.end >= proof.start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(msg: &str) -> alloc::string::String {
        alloc::format!(r#"{{"device":"spk-0001","session":3,"seq":9,"sent_at":1795033600,"msg":{msg}}}"#)
    }

    const ACK: &str = r#"{"type":"ack","key_id":2,"cmd_seq":42,"id":"alert-0042","stage":"started"}"#;

    #[test]
    fn a_bundle_holds_two_to_sixteen_acks_and_proofs_and_nothing_else() {
        let two = payload(&alloc::format!(r#"{{"type":"bundle","reports":[{ACK},{ACK}]}}"#));
        assert!(
            matches!(Report::decode(two.as_bytes()).map(|r| r.msg), Ok(ReportBody::Bundle(b)) if b.reports.len() == 2)
        );
        let one = payload(&alloc::format!(r#"{{"type":"bundle","reports":[{ACK}]}}"#));
        assert_eq!(Report::decode(one.as_bytes()), Err(DecodeError::Malformed));
        let seventeen = alloc::vec![ACK; 17].join(",");
        let too_many = payload(&alloc::format!(r#"{{"type":"bundle","reports":[{seventeen}]}}"#));
        assert_eq!(Report::decode(too_many.as_bytes()), Err(DecodeError::Malformed));
        let status = payload(&alloc::format!(
            r#"{{"type":"bundle","reports":[{ACK},{{"type":"status","online":true}}]}}"#
        ));
        assert!(Report::decode(status.as_bytes()).is_err());
        // A part is checked as the report it stands for: `rejected` needs its reason.
        let unexplained = ACK.replace("started", "rejected");
        let bad_part = payload(&alloc::format!(
            r#"{{"type":"bundle","reports":[{ACK},{unexplained}]}}"#
        ));
        assert_eq!(Report::decode(bad_part.as_bytes()), Err(DecodeError::Malformed));
    }
}
