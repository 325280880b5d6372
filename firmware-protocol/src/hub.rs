//! The hub side: sign commands, open and check device reports.

use alloc::{string::String, vec::Vec};

use crate::command::Command;
use crate::frame::{Direction, Frame, FrameError, KeyPair};
use crate::report::{Report, ReportBody, WILL_SEQ};
use crate::topic;
use crate::wire::DecodeError;

/// An issuer key the hub signs commands with.
#[derive(Clone, Debug)]
pub struct Issuer {
    key_id: u32,
    keys: KeyPair,
}

impl Issuer {
    /// The issuer `key_id` whose Ed25519 seed is `seed` (kept in the hub's secret store).
    pub fn new(key_id: u32, seed: &[u8; 32]) -> Self {
        Issuer {
            key_id,
            keys: KeyPair::from_seed(seed),
        }
    }

    /// The key id devices know this issuer by.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The public key to put in a device's trust list.
    pub fn public_key(&self) -> [u8; 32] {
        self.keys.public_key()
    }

    /// The signed frame of `command`; one frame serves every device in its audience.
    pub fn sign(&self, command: &Command) -> Result<Vec<u8>, DecodeError> {
        let payload = command.encode()?;
        self.keys
            .seal(Direction::Command, self.key_id, &payload)
            .map_err(|_| DecodeError::Malformed)
    }
}

/// A registered device's report key, as the hub stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKey {
    /// The device the key belongs to.
    pub device_id: String,
    /// Its Ed25519 public key.
    pub public_key: [u8; 32],
}

/// Why the hub drops a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportRejection {
    /// Not a report topic.
    BadTopic,
    /// Not a frame.
    Frame(FrameError),
    /// No device is registered under the frame's key id.
    UnknownKey,
    /// The signature does not verify under the registered key.
    BadSignature,
    /// The payload is not a valid report.
    Payload(DecodeError),
    /// The report names a device other than the key's owner: one device reporting for another.
    DeviceMismatch,
    /// The topic names another device, or another report type than the payload.
    TopicMismatch,
}

/// Checks a report received on `topic`: frame, key, signature, payload, and that the key's
/// owner, the payload's `device` and the topic's device are the same device. `lookup` finds
/// the registered key by key id.
pub fn open_report(
    topic: &str,
    bytes: &[u8],
    lookup: impl FnOnce(u32) -> Option<DeviceKey>,
) -> Result<Report, ReportRejection> {
    let (topic_device, topic_kind) = topic::parse_report(topic).ok_or(ReportRejection::BadTopic)?;
    let frame = Frame::parse(bytes).map_err(ReportRejection::Frame)?;
    let key = lookup(frame.key_id).ok_or(ReportRejection::UnknownKey)?;
    frame
        .verify(Direction::Report, &key.public_key)
        .map_err(|_| ReportRejection::BadSignature)?;
    let report = Report::decode(frame.payload).map_err(ReportRejection::Payload)?;
    if report.device != key.device_id {
        return Err(ReportRejection::DeviceMismatch);
    }
    if topic_device != report.device || topic_kind != report.msg.kind() {
        return Err(ReportRejection::TopicMismatch);
    }
    Ok(report)
}

/// The newest `(session, seq)` the hub has accepted from one device; the hub stores it with
/// the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportCursor {
    /// Newest session seen.
    pub session: u32,
    /// Newest seq seen in that session.
    pub seq: u32,
}

/// What to do with an authentic report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// New: act on it.
    Fresh,
    /// Already seen (a QoS 1 redelivery) or older: drop it.
    Duplicate,
    /// The will of a session that has since been replaced: the device is online, ignore it.
    StaleWill,
}

impl ReportCursor {
    /// Classifies `report` and advances the cursor past it if fresh.
    pub fn admit(&mut self, report: &Report) -> Freshness {
        let is_will = report.seq == WILL_SEQ && matches!(report.msg, ReportBody::Status(_));
        if is_will {
            return if report.session >= self.session {
                // The will does not advance `seq`: it was signed before the session's reports.
                if report.session > self.session {
                    *self = ReportCursor {
                        session: report.session,
                        seq: WILL_SEQ,
                    };
                }
                Freshness::Fresh
            } else {
                Freshness::StaleWill
            };
        }
        let newer =
            report.session > self.session || (report.session == self.session && report.seq > self.seq);
        if newer {
            *self = ReportCursor {
                session: report.session,
                seq: report.seq,
            };
            Freshness::Fresh
        } else {
            Freshness::Duplicate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Condition, Health, Status};
    use alloc::string::ToString;

    fn device_key(device_id: &str, seed: u8) -> (KeyPair, DeviceKey) {
        let keys = KeyPair::from_seed(&[seed; 32]);
        let registered = DeviceKey {
            device_id: device_id.to_string(),
            public_key: keys.public_key(),
        };
        (keys, registered)
    }

    fn health(device: &str, session: u32, seq: u32) -> Report {
        Report {
            device: device.to_string(),
            session,
            seq,
            sent_at: 1_795_000_000,
            msg: ReportBody::Health(Health {
                volume: 80,
                amplifier: Condition::Ok,
                line: Condition::Fault,
                storage_free_kib: 10,
                storage_total_kib: 20,
                temperature_decidegrees: Some(415),
                playing: None,
            }),
        }
    }

    fn registry(key_id: u32) -> Option<DeviceKey> {
        match key_id {
            1 => Some(device_key("spk-a", 1).1),
            2 => Some(device_key("spk-b", 2).1),
            _ => None,
        }
    }

    fn sealed(keys: &KeyPair, key_id: u32, report: &Report) -> Vec<u8> {
        keys.seal(Direction::Report, key_id, &report.encode().unwrap())
            .unwrap()
    }

    #[test]
    fn a_device_report_opens_under_its_own_key() {
        let (keys, _) = device_key("spk-a", 1);
        let report = health("spk-a", 1, 3);
        let frame = sealed(&keys, 1, &report);
        assert_eq!(
            open_report("herald/v1/d/spk-a/health", &frame, registry),
            Ok(report)
        );
    }

    #[test]
    fn one_device_cannot_report_for_another() {
        let (b_keys, _) = device_key("spk-b", 2);
        // B signs with its own key but claims to be A.
        let forged = sealed(&b_keys, 2, &health("spk-a", 1, 3));
        assert_eq!(
            open_report("herald/v1/d/spk-a/health", &forged, registry),
            Err(ReportRejection::DeviceMismatch)
        );
        // B claims A's key id: the signature fails.
        let forged = sealed(&b_keys, 1, &health("spk-a", 1, 3));
        assert_eq!(
            open_report("herald/v1/d/spk-a/health", &forged, registry),
            Err(ReportRejection::BadSignature)
        );
        // B's honest report published on A's topic (the broker ACL forbids this too).
        let honest = sealed(&b_keys, 2, &health("spk-b", 1, 3));
        assert_eq!(
            open_report("herald/v1/d/spk-a/health", &honest, registry),
            Err(ReportRejection::TopicMismatch)
        );
        assert_eq!(
            open_report("herald/v1/d/spk-b/proof", &honest, registry),
            Err(ReportRejection::TopicMismatch)
        );
        assert_eq!(
            open_report("herald/v1/d/spk-b/health", &honest, |_| None),
            Err(ReportRejection::UnknownKey)
        );
    }

    #[test]
    fn the_cursor_drops_duplicates_and_stale_wills() {
        let will = |session| Report {
            seq: WILL_SEQ,
            msg: ReportBody::Status(Status { online: false }),
            ..health("spk-a", session, 0)
        };
        let mut cursor = ReportCursor::default();
        assert_eq!(cursor.admit(&health("spk-a", 1, 1)), Freshness::Fresh);
        assert_eq!(cursor.admit(&health("spk-a", 1, 2)), Freshness::Fresh);
        assert_eq!(cursor.admit(&health("spk-a", 1, 2)), Freshness::Duplicate);
        assert_eq!(cursor.admit(&will(1)), Freshness::Fresh);
        assert_eq!(cursor.admit(&health("spk-a", 2, 1)), Freshness::Fresh);
        assert_eq!(cursor.admit(&will(1)), Freshness::StaleWill);
        assert_eq!(cursor.admit(&health("spk-a", 1, 9)), Freshness::Duplicate);
    }
}
