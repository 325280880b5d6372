//! Outcomes that arrive later: what a channel reports after it took a delivery (a WeChat
//! `PUBLISHJOBFINISH` event, a media centre's signed status callback, a device's report), and
//! the verification of an inbound HTTP callback, which is each channel's own.
//!
//! The hub stores every verified receipt first and applies it later (`src/delivery/inbox.rs`);
//! nothing here touches the store or reads a clock.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Permanence, TargetRef};

/// How a receipt names the delivery it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "value")]
pub enum Correlation {
    /// The id the channel gave when it accepted the delivery (`publish_id`, a message id).
    ExternalId(String),
    /// The delivery's idempotency key, which devices echo back.
    Key(String),
}

/// What the channel says became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ReceiptStatus {
    /// Taken, the result follows (a device's or a broker's acknowledgement).
    Accepted,
    Delivered,
    /// Shown on a screen.
    Displayed,
    /// Played over a loudspeaker.
    Played,
    /// Taken down (the outcome of a withdrawal).
    Withdrawn,
    /// Its validity ended before it was carried out (a device offline past the command's
    /// `not_after`): it never will be.
    Expired,
    Failed {
        permanence: Permanence,
        code: String,
        message: String,
    },
}

impl ReceiptStatus {
    /// The name a receipt of this status is recorded under.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReceiptStatus::Accepted => "accepted",
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::Displayed => "displayed",
            ReceiptStatus::Played => "played",
            ReceiptStatus::Withdrawn => "withdrawn",
            ReceiptStatus::Expired => "expired",
            ReceiptStatus::Failed { .. } => "failed",
        }
    }
}

/// One receipt, as a channel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelReceipt {
    pub correlation: Correlation,
    pub status: ReceiptStatus,
    /// When the source says it happened.
    pub source_time: Option<DateTime<Utc>>,
    /// What makes this receipt itself, per channel and target: the same value again is the
    /// same receipt resent (WeChat retries three times; devices resend until acknowledged), and
    /// is stored once. A `publish_id` + event, a `MsgId`, a device sequence number.
    pub dedup: String,
    /// The payload as the channel sent it, kept for the record.
    pub raw: serde_json::Value,
}

/// An inbound HTTP callback, as the hub received it: everything a channel's verification may
/// sign (WeChat signs query parameters; a media centre signs headers and the raw body).
#[derive(Debug, Clone, Copy)]
pub struct CallbackRequest<'a> {
    pub method: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// Header names in lower case.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

impl CallbackRequest<'_> {
    /// The first value of a header, by its lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }
}

/// What the hub answers a verified callback with, at once (before the receipts are applied):
/// WeChat waits 5 s and wants `success` (or the `echostr` of a URL check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackReply {
    /// `text/plain`: `success`, an echoed challenge.
    Text(String),
    /// `application/json`.
    Json(serde_json::Value),
    /// An empty 200.
    Empty,
}

/// A callback the channel's verification accepted: the receipts it carries (none for a URL
/// check) and the answer the channel expects.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub receipts: Vec<ChannelReceipt>,
    pub reply: CallbackReply,
    /// What makes this request unique among those signed within the channel's time window
    /// (WeChat: its timestamp and nonce): the hub stores it with the receipts, in one
    /// transaction, and refuses the same request again. `None`: repeats are harmless (a URL
    /// check, or a channel whose callbacks are idempotent by their event ids).
    pub replay_key: Option<String>,
}

/// Why a callback was turned away. Nothing of a rejected callback is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// The signature is missing or wrong, or the target has no key to check it with.
    #[error("{message}")]
    Unauthenticated { field: String, message: String },
    /// Signed at a time outside the replay window.
    #[error("{message}")]
    Stale { field: String, message: String },
    /// Verified, but not a payload this channel sends.
    #[error("{message}")]
    Malformed { field: String, message: String },
    /// A method this callback does not take.
    #[error("{0}")]
    Method(String),
}

/// Channels whose outcomes arrive as HTTP callbacks. `verify` is the callback's whole
/// authentication: it decides from the target's settings and secrets, the request (method,
/// query, headers, raw body) and the hub's time, and it must compare signatures in constant
/// time.
pub trait Callbacks: Send + Sync {
    fn verify(
        &self,
        target: &TargetRef,
        request: &CallbackRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verified, CallbackError>;
}
