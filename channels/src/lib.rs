//! Herald's channels: the vocabulary every part of the hub shares, and (as they arrive) one
//! adapter module per channel behind a single trait.
//!
//! **Architecture Invariant:** only this crate knows third-party channel APIs (WeChat, media
//! centers, device payloads). The hub speaks in [`ChannelKind`] and renditions.

pub mod callbacks;
pub mod devices;
pub mod media_center;
pub mod portal;
#[cfg(feature = "sea-orm")]
mod stored;
pub mod wechat;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

pub use callbacks::{
    CallbackError, CallbackReply, CallbackRequest, Callbacks, ChannelReceipt, Correlation, ReceiptStatus,
    Verified,
};

use serde::{Deserialize, Serialize};

/// Every kind of destination Herald delivers to.
/// The wire-name methods of a snake_case enum, over its strum derives (`IntoStaticStr`,
/// `EnumString`, `VariantArray`): `ALL`, `as_str` and `parse`, written once for every such enum.
#[macro_export]
macro_rules! wire_names {
    ($ty:ty) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &[Self] = <Self as ::strum::VariantArray>::VARIANTS;

            /// The wire name, as serde writes it.
            pub fn as_str(self) -> &'static str {
                self.into()
            }

            /// The variant whose wire name is `raw`.
            pub fn parse(raw: &str) -> Option<Self> {
                raw.parse().ok()
            }
        }
    };
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
    strum::Display,
)]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::DeriveValueType),
    sea_orm(value_type = "String")
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ChannelKind {
    /// The government portal Herald serves itself (政府信息公开 column).
    Portal,
    /// WeChat official accounts (微信公众号).
    Wechat,
    /// The county convergence media center (融媒体中心).
    MediaCenter,
    /// Village notice-board displays (信息公示屏), over MQTT.
    NoticeBoard,
    /// Village loudspeaker controllers (大喇叭), over MQTT.
    Loudspeaker,
}

wire_names!(ChannelKind);

impl ChannelKind {
    /// The name staff see in the console.
    pub fn label_zh(self) -> &'static str {
        match self {
            ChannelKind::Portal => "政府门户网站",
            ChannelKind::Wechat => "微信公众号",
            ChannelKind::MediaCenter => "融媒体中心",
            ChannelKind::NoticeBoard => "村务公开屏",
            ChannelKind::Loudspeaker => "村村通大喇叭",
        }
    }

    /// Devices report back as they receive, verify, start and finish an item.
    pub fn is_device(self) -> bool {
        matches!(self, ChannelKind::NoticeBoard | ChannelKind::Loudspeaker)
    }
}

/// An approved item version as every channel sees it: only what may leave the store (for
/// 此件删减后公开 the body is already the redacted one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PublishedItem {
    pub item_id: String,
    pub version: i32,
    pub content_hash: String,
    pub title: String,
    pub summary: String,
    /// Sanitised HTML.
    pub body_html: String,
    /// 附注, e.g. （此件公开发布）.
    pub annotation: String,
    pub index_no: String,
    pub topic: Vec<String>,
    pub issuers: Vec<String>,
    /// ISO date.
    pub written_date: String,
    pub doc_no: Option<String>,
    /// 有效性 label in Chinese, when the item has one.
    pub validity: Option<String>,
    pub genre: String,
    pub keywords: Vec<String>,
    pub catalog_code: String,
    pub catalog_name: String,
    pub area_code: String,
    pub area_name: String,
    pub attachments: Vec<Attachment>,
    pub emergency: bool,
    /// RFC 3339.
    pub published_at: String,
    /// RFC 3339: when the item stops being valid (有效期, or an alert's `expires`); channels
    /// that show it until a time stop it here.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Set when this version corrects (更正) one published before: every channel shows the note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<Correction>,
}

/// What a correction (更正) says of itself, wherever the corrected item is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Correction {
    /// What was corrected, in the words the public reads.
    pub note: String,
    /// The version this one replaces.
    pub corrects_version: i32,
    /// RFC 3339.
    pub corrected_at: String,
}

impl Correction {
    /// The note as one line of text: 更正说明 and the date.
    pub fn notice_zh(&self) -> String {
        format!(
            "更正说明（{}）：{}",
            portal::chinese_date(&self.corrected_at),
            self.note
        )
    }
}

/// Text made safe to place inside HTML.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// How a channel takes a correction (更正) in place of what it holds of the earlier version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorrectionStyle {
    /// The new version replaces the old where it stands (a portal page, a media center's story
    /// under the same uri): only the new version is sent.
    InPlace,
    /// The new version is a new publication (a WeChat article); the old one is removed once
    /// the new one is out, so the public never finds neither.
    PublishThenRemoveOld,
    /// The old is cancelled and the new sent at once (a device's command, cancelled by its id).
    RemoveOldAndResend,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    pub sha256: String,
    pub filename: String,
    #[serde(default)]
    pub content_type: String,
    /// Bytes.
    #[serde(default)]
    pub size: u64,
    /// Audio that decoded when it was uploaded: its length. None for anything else, and for
    /// audio the hub never decoded, which no loudspeaker is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_duration_ms: Option<u64>,
}

/// What one channel makes of an item; stored, so that a retry sends exactly what a preview showed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Rendition {
    pub channel: ChannelKind,
    pub payload: serde_json::Value,
}

/// A registered destination of one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRef {
    pub id: String,
    pub name: String,
    pub area_code: String,
    /// Channel-specific settings (an account id, a device group, a portal section).
    pub config: serde_json::Value,
    /// The target's secrets (an app secret, a signing key), decrypted for the adapter alone.
    /// Never logged, never serialised: see [`SecretString`].
    pub secrets: BTreeMap<String, SecretString>,
}

/// A secret value: an app secret, a signing key. `Debug` and `Display` print `[redacted]`,
/// and it deliberately does not implement `Serialize`, so it cannot reach a log line, an API
/// answer or an audit row by accident; an adapter reads it with [`SecretString::expose`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one call that needs it (signing a request, fetching a token).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permanence {
    /// Worth retrying later (network, rate limit, 5xx).
    Transient,
    /// Retrying cannot help (bad payload, revoked account, content refused).
    Permanent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The channel took it and will report the result later (a callback, a device report).
    /// Past `confirm_within` with no report the hub asks [`Channel::reconcile`]; `None` takes
    /// the hub's default. A duration, not an instant: adapters have no clock, time is the hub's.
    Accepted {
        external_id: String,
        confirm_within: Option<Duration>,
        /// As for `Failed`: kept, so an operator's retry after a lost confirmation resumes.
        checkpoint: Option<serde_json::Value>,
    },
    /// Done; for the portal, live.
    Delivered { external_id: Option<String> },
    Failed {
        permanence: Permanence,
        code: String,
        message: String,
        /// Progress of a multi-step send to keep for the next attempt (a WeChat draft's
        /// `media_id`), handed back in [`Dispatch::checkpoint`]; `None` keeps what was kept.
        checkpoint: Option<serde_json::Value>,
    },
    /// The call may or may not have taken effect (timeout after sending). Never resent blindly.
    /// A multi-step send keeps its progress here too, so an operator's retry reuses it (a
    /// WeChat draft made before the submit timed out: never a second draft).
    Unknown {
        message: String,
        checkpoint: Option<serde_json::Value>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WithdrawOutcome {
    Withdrawn,
    /// Taken down, and the channel says what it removed (the WeChat article deleted): kept as
    /// the withdrawal's external id, so the record names it.
    Removed {
        what: String,
    },
    /// The channel has no way to take content down; said so in the record.
    Unsupported {
        reason: String,
    },
    Failed {
        permanence: Permanence,
        code: String,
        message: String,
    },
    Unknown {
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Unrenderable(String),
}

/// One delivery of a batch: where it goes, and the key every attempt of it carries.
#[derive(Debug, Clone, Copy)]
pub struct Dispatch<'a> {
    pub target: &'a TargetRef,
    pub idempotency_key: &'a str,
    /// What an earlier attempt of this delivery kept (`DeliveryOutcome::Failed::checkpoint`):
    /// a retry resumes from it instead of starting over (reuse the draft, never a second one).
    pub checkpoint: Option<&'a serde_json::Value>,
}

/// One adapter per channel. `render` is pure and backs both delivery and the exact preview;
/// `deliver` and `withdraw` receive the same idempotency key on every attempt of one delivery.
#[async_trait::async_trait]
pub trait Channel: Send + Sync {
    fn kind(&self) -> ChannelKind;

    fn render(&self, item: &PublishedItem) -> Result<Rendition, RenderError>;

    async fn deliver(&self, rendition: &Rendition, dispatch: &Dispatch<'_>) -> DeliveryOutcome;

    /// Sends one rendition to several targets and returns one outcome per dispatch, in
    /// order. The hub never hands over more dispatches at once than the channel's in-flight
    /// bound. By default each goes through `deliver`, all at once; a device channel overrides
    /// this to send one signed command to the whole group.
    async fn deliver_batch(
        &self,
        rendition: &Rendition,
        dispatches: &[Dispatch<'_>],
    ) -> Vec<DeliveryOutcome> {
        futures::future::join_all(dispatches.iter().map(|d| self.deliver(rendition, d))).await
    }

    async fn withdraw(
        &self,
        item_id: &str,
        target: &TargetRef,
        external_id: Option<&str>,
        reason: &str,
        idempotency_key: &str,
    ) -> WithdrawOutcome;

    /// Asks the channel what became of an `Accepted` delivery whose report is overdue
    /// (WeChat `freepublish/get`). `None`: it cannot tell yet (still in progress, unreachable,
    /// or this channel has no way to ask); the hub asks again later, a bounded number of times.
    async fn reconcile(&self, _dispatch: &Dispatch<'_>, _external_id: &str) -> Option<ReceiptStatus> {
        None
    }

    /// Looks for what became of an `unconfirmed` delivery whose attempt may have taken effect
    /// but named nothing to ask about (a WeChat submit whose answer, and publish_id, were lost),
    /// from what the attempt kept (`Dispatch::checkpoint`). `None`: it cannot tell (yet); the
    /// hub asks again later, a bounded number of times, then leaves it to an operator.
    async fn find_lost(&self, _dispatch: &Dispatch<'_>) -> Option<Found> {
        None
    }

    /// What this channel keeps fresh for its targets ahead of use, if anything (a WeChat
    /// account's access token).
    fn upkeep(&self) -> Option<&dyn Upkeep> {
        None
    }

    /// The verification of this channel's inbound callbacks, if it takes any.
    fn callbacks(&self) -> Option<&dyn Callbacks> {
        None
    }

    /// How a correction of an item reaches what this channel already holds of it.
    fn correction_style(&self) -> CorrectionStyle {
        CorrectionStyle::InPlace
    }

    /// Checks a target's settings and the names of its secrets when it is registered, so a
    /// target that could never be delivered to is refused then, naming the field.
    fn check_target(&self, _config: &serde_json::Value, _secret_names: &[&str]) -> Result<(), TargetError> {
        Ok(())
    }
}

/// Upkeep a channel needs for each target, done by one hub task now and then rather than by
/// the workers when they find it wanting.
#[async_trait::async_trait]
pub trait Upkeep: Send + Sync {
    /// Keeps what `target` needs fresh; the error says what failed, for the log.
    async fn upkeep(&self, target: &TargetRef) -> Result<(), String>;
}

/// What a channel found of a send whose answer was lost ([`Channel::find_lost`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub status: ReceiptStatus,
    /// The channel's own id for what it found: kept as the delivery's, so a withdrawal names it.
    pub external_id: String,
}

/// Why a channel refuses a target's settings: the field (`config.endpoint`,
/// `secrets.signing_key`) and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TargetError {
    pub field: String,
    pub message: String,
}

impl TargetError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The first of `required` missing from `secret_names`, named `secrets.<name>`, with
    /// `where_from` saying where an administrator finds it.
    pub fn missing_secret(secret_names: &[&str], required: &[&str], where_from: &str) -> Result<(), Self> {
        match required.iter().find(|name| !secret_names.contains(name)) {
            Some(name) => Err(Self::new(
                format!("secrets.{name}"),
                format!("required: {where_from}"),
            )),
            None => Ok(()),
        }
    }
}

/// The adapters a hub delivers through, one per channel kind.
#[derive(Clone, Default)]
pub struct ChannelRegistry {
    channels: BTreeMap<ChannelKind, Arc<dyn Channel>>,
}

impl ChannelRegistry {
    /// Adds (or replaces) the adapter for its kind.
    pub fn register(&mut self, channel: Arc<dyn Channel>) {
        self.channels.insert(channel.kind(), channel);
    }

    pub fn get(&self, kind: ChannelKind) -> Option<&Arc<dyn Channel>> {
        self.channels.get(&kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = ChannelKind> + '_ {
        self.channels.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        assert_eq!(ChannelKind::ALL.len(), 5);
        for &kind in ChannelKind::ALL {
            let json = serde_json::to_string(&kind).expect("serialises");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(ChannelKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn a_secret_prints_redacted_whichever_way_it_is_formatted() {
        let secret = SecretString::new("S3CR3T-value");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        let target = TargetRef {
            id: "t".into(),
            name: "n".into(),
            area_code: "530426".into(),
            config: serde_json::json!({}),
            secrets: BTreeMap::from([("app_secret".to_owned(), secret.clone())]),
        };
        assert!(!format!("{target:?}").contains("S3CR3T"));
        assert_eq!(secret.expose(), "S3CR3T-value");
    }
}
