//! Village devices: loudspeaker controllers (大喇叭) and notice-board displays (村务公开屏).
//!
//! An item becomes one signed command per group of devices (`herald-firmware-protocol`): text
//! to speak for a loudspeaker, or the item's audio recording for loudspeakers that play its
//! codec, pages of text and a link for a notice board. The hub signs (it
//! owns the issuer key, the sequence and the clock) and the broker carries the frame to each
//! device's command topic; the delivery is `accepted` once the frame is handed to the broker,
//! and the device's acks and proofs come back as receipts (played, displayed, rejected…).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use herald_firmware_protocol::{
    Audience, CommandBody,
    command::{AudioCodec, AudioRef, Cancel, Display, Play, PlaySource, TtsText},
    topic,
};
use serde::{Deserialize, Serialize};

use crate::{
    Channel, ChannelKind, CorrectionStyle, DeliveryOutcome, Dispatch, Permanence, PublishedItem, RenderError,
    Rendition, TargetRef, WithdrawOutcome, portal::plain_text,
};

/// A command signed by the hub, ready for the broker.
#[derive(Debug, Clone)]
pub struct IssuedCommand {
    /// The command's id: the external id its deliveries are correlated by.
    pub id: String,
    /// The signed frame, the same bytes for every device in the audience.
    pub frame: Vec<u8>,
}

/// Why a command was not signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// `ends_by` has passed: the item expired before it could be sent, and never will be.
    #[error("the item expired before it could be sent")]
    Expired,
    /// Signing or keeping the command failed; a later attempt may succeed.
    #[error("{0}")]
    Failed(String),
}

/// What the hub lends the device adapters: signing and the broker.
#[async_trait::async_trait]
pub trait DeviceLink: Send + Sync {
    /// Signs `body` once for each of `audiences`, in order, each valid for `lifetime` from now
    /// and never past `ends_by` (Unix seconds) when given (the hub's clock, the next sequences
    /// of its issuer key, fresh command ids). All of them are signed and kept, or none.
    async fn issue(
        &self,
        audiences: Vec<Audience>,
        body: CommandBody,
        lifetime: Duration,
        ends_by: Option<u64>,
    ) -> Result<Vec<IssuedCommand>, IssueError>;

    /// Hands a frame to the broker for `topic` (QoS 1).
    async fn publish(&self, topic: String, frame: Vec<u8>) -> Result<(), String>;

    /// Whether the command's validity has ended (by the hub's clock); an unknown command
    /// counts as ended.
    async fn command_expired(&self, command_id: &str) -> Result<bool, String>;

    /// What each of `device_ids` said it plays in its last birth; a device not yet heard from
    /// is absent.
    async fn abilities(&self, device_ids: &[&str]) -> Result<HashMap<String, Abilities>, String>;
}

/// What a loudspeaker plays, as its birth message says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Abilities {
    #[serde(default)]
    pub codecs: Vec<AudioCodec>,
    #[serde(default)]
    pub tts: bool,
}

/// Where devices download an item's recording: the hub's address, this, the file's SHA-256.
pub const MEDIA_PATH: &str = "/media/";

/// Devices named in one command. A command lists its audience inside the signature, and each
/// device of the group is sent the whole frame on its own topic: with 200 ids a frame was
/// 4.6 KB, most of it other devices' names, on every device's (often metered 4G) link and in
/// the broker's queue for each. With 32 it is about 1 KB, and signing stays cheap: 313
/// signatures for 10,000 devices, a few milliseconds.
pub const DEVICES_PER_COMMAND: usize = 32;

/// Longest text a loudspeaker is asked to speak (the protocol's TTS limit).
const MAX_TTS_CHARS: usize = 2000;
/// Characters per notice-board page.
const PAGE_CHARS: usize = 120;
/// Pages a notice board cycles through at most.
const MAX_PAGES: usize = 20;

/// Priority slots (see the protocol): a county emergency, or routine village information.
const EMERGENCY_PRIORITY: u8 = 2;
const ROUTINE_PRIORITY: u8 = 5;

/// What a device rendition says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    pub item_id: String,
    pub emergency: bool,
    /// Loudspeakers: the text spoken, by devices that cannot play the recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech: Option<String>,
    /// Loudspeakers: the item's audio attachment, for devices that play its codec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<Recording>,
    /// Notice boards: the pages shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<String>,
    /// Notice boards: the portal page, shown as a QR code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Unix seconds the item expires at: no device plays or shows it after, and a notice
    /// board shows it until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// An item's audio attachment, as a loudspeaker downloads and checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    pub url: String,
    pub sha256: String,
    pub size: u64,
    pub codec: AudioCodec,
    /// As decoded at upload: for the preview and the schedule, not for the device.
    pub duration_ms: u64,
}

/// What a loudspeaker is sent of an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Voice {
    Recording,
    Speech,
}

/// The recording for a device whose birth lists its codec (PROTOCOL.md §5.2: only codecs a
/// device listed are offered); the text for one that speaks TTS or has not said what it plays
/// (the text is what every loudspeaker was sent before recordings); nothing for one that does
/// neither.
fn voice_for(announcement: &Announcement, heard: Option<&Abilities>) -> Option<Voice> {
    match (&announcement.recording, heard) {
        (None, _) | (Some(_), None) => Some(Voice::Speech),
        (Some(recording), Some(abilities)) if abilities.codecs.contains(&recording.codec) => {
            Some(Voice::Recording)
        }
        (Some(_), Some(abilities)) if abilities.tts => Some(Voice::Speech),
        (Some(_), Some(_)) => None,
    }
}

/// The loudspeaker or notice-board adapter.
pub struct DeviceChannel {
    kind: ChannelKind,
    link: Arc<dyn DeviceLink>,
    /// The portal's public address, for notice boards' QR links; empty: no link.
    portal_base: String,
    /// How long a command stays valid: past it a device that was offline must not act on it.
    lifetime: Duration,
}

impl DeviceChannel {
    /// An adapter for `kind` (`loudspeaker` or `notice_board`).
    pub fn new(
        kind: ChannelKind,
        link: Arc<dyn DeviceLink>,
        portal_base: String,
        lifetime: Duration,
    ) -> Self {
        Self {
            kind,
            link,
            portal_base: portal_base.trim_end_matches('/').to_owned(),
            lifetime,
        }
    }

    fn body(&self, announcement: &Announcement, voice: Voice) -> CommandBody {
        let priority = if announcement.emergency {
            EMERGENCY_PRIORITY
        } else {
            ROUTINE_PRIORITY
        };
        match self.kind {
            ChannelKind::NoticeBoard => CommandBody::Display(Display {
                priority,
                pages: announcement.pages.clone(),
                page_seconds: 10,
                qr: announcement.link.clone(),
                start_at: None,
                until: announcement.until,
            }),
            _ => CommandBody::Play(Play {
                priority,
                source: match (&announcement.recording, voice) {
                    (Some(recording), Voice::Recording) => PlaySource::Audio(AudioRef {
                        url: recording.url.clone(),
                        sha256: recording.sha256.clone(),
                        size: recording.size,
                        codec: recording.codec,
                    }),
                    _ => PlaySource::Tts(TtsText {
                        text: announcement.speech.clone().unwrap_or_default(),
                        lang: "zh-CN".into(),
                    }),
                },
                // An emergency is said twice, as broadcast practice has it.
                repeat: if announcement.emergency { 2 } else { 1 },
                start_at: None,
                override_quiet_hours: announcement.emergency,
            }),
        }
    }

    /// The item's first audio attachment that decoded at upload, at the hub's public address
    /// (without one, devices could not fetch it, and the item is spoken instead).
    fn recording(&self, item: &PublishedItem) -> Option<Recording> {
        if self.portal_base.is_empty() {
            return None;
        }
        item.attachments.iter().find_map(|attachment| {
            Some(Recording {
                duration_ms: attachment.audio_duration_ms?,
                codec: AudioCodec::from_media_type(&attachment.content_type)?,
                url: format!("{}{MEDIA_PATH}{}", self.portal_base, attachment.sha256),
                sha256: attachment.sha256.clone(),
                size: attachment.size,
            })
        })
    }

    /// Which devices get which body: one group for a notice board's display; for loudspeakers,
    /// the recording to those that play it and the text to those that speak, with the devices
    /// that do neither failed.
    async fn voiced<'a>(
        &self,
        announcement: &Announcement,
        addressed: Vec<(usize, &'a str)>,
        outcomes: &mut [Option<DeliveryOutcome>],
    ) -> BTreeMap<Voice, Vec<(usize, &'a str)>> {
        let mut by_voice: BTreeMap<Voice, Vec<(usize, &'a str)>> = BTreeMap::new();
        let Some(recording) = announcement
            .recording
            .as_ref()
            .filter(|_| self.kind == ChannelKind::Loudspeaker)
        else {
            by_voice.insert(Voice::Speech, addressed);
            return by_voice;
        };
        let ids: Vec<&str> = addressed.iter().map(|(_, device)| *device).collect();
        let heard = match self.link.abilities(&ids).await {
            Ok(heard) => heard,
            Err(e) => {
                for (i, _) in addressed {
                    outcomes[i] = Some(DeliveryOutcome::Failed {
                        permanence: Permanence::Transient,
                        code: "device_registry".into(),
                        message: e.clone(),
                        checkpoint: None,
                    });
                }
                return by_voice;
            }
        };
        for (i, device) in addressed {
            match voice_for(announcement, heard.get(device)) {
                Some(voice) => by_voice.entry(voice).or_default().push((i, device)),
                None => {
                    outcomes[i] = Some(DeliveryOutcome::Failed {
                        permanence: Permanence::Permanent,
                        code: "unsupported_media".into(),
                        message: format!(
                            "the device plays no {} audio and does not speak text",
                            recording.codec.media_type()
                        ),
                        checkpoint: None,
                    });
                }
            }
        }
        by_voice
    }
}

/// An RFC 3339 time as the Unix seconds a device reads.
fn unix_seconds(at: &str) -> Result<u64, RenderError> {
    chrono::DateTime::parse_from_rfc3339(at)
        .ok()
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .ok_or_else(|| RenderError::Unrenderable(format!("expires_at `{at}` is not an RFC 3339 time")))
}

/// The device a target stands for (`config.device_id`, set when the device is registered).
fn device_id(target: &TargetRef) -> Option<&str> {
    target.config.get("device_id").and_then(|v| v.as_str())
}

/// `text` in pages of at most `PAGE_CHARS` characters, at most `MAX_PAGES` of them.
fn pages(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(PAGE_CHARS)
        .take(MAX_PAGES)
        .map(|page| page.iter().collect::<String>().trim().to_owned())
        .filter(|page| !page.is_empty())
        .collect()
}

fn failed_all(n: usize, permanence: Permanence, code: &str, message: &str) -> Vec<DeliveryOutcome> {
    (0..n)
        .map(|_| DeliveryOutcome::Failed {
            permanence,
            code: code.to_owned(),
            message: message.to_owned(),
            checkpoint: None,
        })
        .collect()
}

#[async_trait::async_trait]
impl Channel for DeviceChannel {
    fn kind(&self) -> ChannelKind {
        self.kind
    }

    fn correction_style(&self) -> CorrectionStyle {
        CorrectionStyle::RemoveOldAndResend
    }

    fn render(&self, item: &PublishedItem) -> Result<Rendition, RenderError> {
        // A correction says so before the text, on the board and over the loudspeaker.
        let body = match &item.correction {
            Some(correction) => format!("{}\n{}", correction.notice_zh(), plain_text(&item.body_html)),
            None => plain_text(&item.body_html),
        };
        let mut announcement = Announcement {
            item_id: item.item_id.clone(),
            emergency: item.emergency,
            speech: None,
            recording: None,
            pages: Vec::new(),
            link: None,
            until: match &item.expires_at {
                Some(at) => Some(unix_seconds(at)?),
                None => None,
            },
        };
        if self.kind == ChannelKind::NoticeBoard {
            announcement.pages = pages(&format!("{}\n{}", item.title, body));
            if !self.portal_base.is_empty() {
                announcement.link = Some(format!(
                    "{}{}",
                    self.portal_base,
                    crate::portal::Portal::page_path(&item.item_id)
                ));
            }
        } else {
            let said = if item.summary.trim().is_empty() {
                &body
            } else {
                &item.summary
            };
            let speech: String = format!("{}。{}", item.title, said)
                .chars()
                .take(MAX_TTS_CHARS)
                .collect();
            announcement.speech = Some(speech);
            announcement.recording = self.recording(item);
        }
        let payload =
            serde_json::to_value(&announcement).map_err(|e| RenderError::Unrenderable(e.to_string()))?;
        Ok(Rendition {
            channel: self.kind,
            payload,
        })
    }

    async fn deliver(&self, rendition: &Rendition, dispatch: &Dispatch<'_>) -> DeliveryOutcome {
        self.deliver_batch(rendition, std::slice::from_ref(dispatch))
            .await
            .into_iter()
            .next()
            .unwrap_or(DeliveryOutcome::Unknown {
                message: "no outcome".into(),
                checkpoint: None,
            })
    }

    /// One signed command per group of up to `DEVICES_PER_COMMAND` devices, the same frame
    /// published to each device's command topic.
    async fn deliver_batch(
        &self,
        rendition: &Rendition,
        dispatches: &[Dispatch<'_>],
    ) -> Vec<DeliveryOutcome> {
        let announcement: Announcement = match serde_json::from_value(rendition.payload.clone()) {
            Ok(announcement) => announcement,
            Err(e) => {
                return failed_all(
                    dispatches.len(),
                    Permanence::Permanent,
                    "unreadable_rendition",
                    &e.to_string(),
                );
            }
        };
        // A notice board shows an item until it expires (an alert until its `expires`), and a
        // board that was offline shows it on its return while it is valid; anything spoken is
        // worth saying only within the command lifetime of its publication.
        let lifetime = match (self.kind, announcement.until) {
            (ChannelKind::NoticeBoard, Some(_)) => Duration::MAX,
            _ => self.lifetime,
        };
        let mut outcomes: Vec<Option<DeliveryOutcome>> = vec![None; dispatches.len()];
        let mut addressed = Vec::with_capacity(dispatches.len());
        for (i, dispatch) in dispatches.iter().enumerate() {
            match device_id(dispatch.target) {
                Some(device) => addressed.push((i, device)),
                None => {
                    outcomes[i] = Some(DeliveryOutcome::Failed {
                        permanence: Permanence::Permanent,
                        code: "no_device".into(),
                        message: "the target names no device".into(),
                        checkpoint: None,
                    });
                }
            }
        }
        let voiced = self.voiced(&announcement, addressed, &mut outcomes).await;
        for (voice, devices) in &voiced {
            let groups: Vec<&[(usize, &str)]> = devices.chunks(DEVICES_PER_COMMAND).collect();
            let audiences = groups
                .iter()
                .map(|group| Audience::Devices(group.iter().map(|(_, d)| (*d).to_owned()).collect()))
                .collect();
            // Every group's command at once: one sequence reservation and one write for the
            // batch, so the first device hears it before the last command is even signed.
            let issued = match self
                .link
                .issue(
                    audiences,
                    self.body(&announcement, *voice),
                    lifetime,
                    announcement.until,
                )
                .await
            {
                Ok(issued) => issued,
                Err(e) => {
                    let (permanence, code) = match e {
                        IssueError::Expired => (Permanence::Permanent, "expired"),
                        IssueError::Failed(_) => (Permanence::Transient, "not_signed"),
                    };
                    for (i, _) in devices {
                        outcomes[*i] = Some(DeliveryOutcome::Failed {
                            permanence,
                            code: code.into(),
                            message: e.to_string(),
                            checkpoint: None,
                        });
                    }
                    continue;
                }
            };
            for (command, group) in issued.iter().zip(groups) {
                for (i, device) in group {
                    let sent = self
                        .link
                        .publish(topic::device_commands(device), command.frame.clone())
                        .await;
                    outcomes[*i] = Some(match sent {
                        Ok(()) => DeliveryOutcome::Accepted {
                            external_id: command.id.clone(),
                            confirm_within: Some(self.lifetime),
                            checkpoint: None,
                        },
                        Err(e) => DeliveryOutcome::Failed {
                            permanence: Permanence::Transient,
                            code: "broker".into(),
                            message: e,
                            checkpoint: None,
                        },
                    });
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(DeliveryOutcome::Unknown {
                    message: "no outcome".into(),
                    checkpoint: None,
                })
            })
            .collect()
    }

    /// No report came for a command: once its validity has ended the device never will carry
    /// it out (a device offline past `not_after` is not sent it again, and refuses it if it
    /// arrives), so the delivery has expired. Before that, nothing can be said.
    async fn reconcile(&self, _dispatch: &Dispatch<'_>, external_id: &str) -> Option<crate::ReceiptStatus> {
        match self.link.command_expired(external_id).await {
            Ok(true) => Some(crate::ReceiptStatus::Expired),
            Ok(false) | Err(_) => None,
        }
    }

    /// Stops the item on the device (or takes it off the screen): a signed `cancel` naming the
    /// command that carried it.
    async fn withdraw(
        &self,
        _item_id: &str,
        target: &TargetRef,
        external_id: Option<&str>,
        _reason: &str,
        _idempotency_key: &str,
    ) -> WithdrawOutcome {
        let (Some(device), Some(command)) = (device_id(target), external_id) else {
            return WithdrawOutcome::Withdrawn;
        };
        let body = CommandBody::Cancel(Cancel {
            target: Some(command.to_owned()),
        });
        let issued = match self
            .link
            .issue(
                vec![Audience::Devices(vec![device.to_owned()])],
                body,
                self.lifetime,
                None,
            )
            .await
            .map(|mut issued| issued.pop())
        {
            Ok(Some(issued)) => issued,
            Ok(None) => {
                return WithdrawOutcome::Failed {
                    permanence: Permanence::Transient,
                    code: "not_signed".into(),
                    message: "no command came back for one audience".into(),
                };
            }
            Err(e) => {
                return WithdrawOutcome::Failed {
                    permanence: Permanence::Transient,
                    code: "not_signed".into(),
                    message: e.to_string(),
                };
            }
        };
        match self
            .link
            .publish(topic::device_commands(device), issued.frame)
            .await
        {
            Ok(()) => WithdrawOutcome::Withdrawn,
            Err(message) => WithdrawOutcome::Failed {
                permanence: Permanence::Transient,
                code: "broker".into(),
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_paged_and_bounded() {
        let text = "村".repeat(PAGE_CHARS * (MAX_PAGES + 3));
        let paged = pages(&text);
        assert_eq!(paged.len(), MAX_PAGES);
        assert!(paged.iter().all(|p| p.chars().count() == PAGE_CHARS));
        assert_eq!(pages("  "), Vec::<String>::new());
    }

    fn announcement(recording: Option<AudioCodec>) -> Announcement {
        Announcement {
            item_id: "item".into(),
            emergency: false,
            speech: Some("通知".into()),
            recording: recording.map(|codec| Recording {
                url: "https://hub.example/media/ab".into(),
                sha256: "ab".into(),
                size: 10,
                codec,
                duration_ms: 1000,
            }),
            pages: Vec::new(),
            link: None,
            until: None,
        }
    }

    #[test]
    fn a_loudspeaker_gets_the_recording_it_plays_else_the_text_it_speaks() {
        let plays = |codecs: &[AudioCodec], tts| Abilities {
            codecs: codecs.to_vec(),
            tts,
        };
        let with_mp3 = announcement(Some(AudioCodec::Mp3));
        assert_eq!(
            voice_for(&with_mp3, Some(&plays(&[AudioCodec::Mp3], false))),
            Some(Voice::Recording)
        );
        assert_eq!(
            voice_for(&with_mp3, Some(&plays(&[AudioCodec::Mp3], true))),
            Some(Voice::Recording)
        );
        assert_eq!(
            voice_for(&with_mp3, Some(&plays(&[AudioCodec::Wav], true))),
            Some(Voice::Speech)
        );
        assert_eq!(
            voice_for(&with_mp3, Some(&plays(&[AudioCodec::Wav], false))),
            None
        );
        // Not heard from yet: the text, as before recordings.
        assert_eq!(voice_for(&with_mp3, None), Some(Voice::Speech));
        let text_only = announcement(None);
        assert_eq!(
            voice_for(&text_only, Some(&plays(&[AudioCodec::Mp3], false))),
            Some(Voice::Speech)
        );
        assert_eq!(voice_for(&text_only, None), Some(Voice::Speech));
    }
}
