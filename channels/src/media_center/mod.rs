//! The county convergence media center (融媒体中心): the item goes to the center's ingest
//! endpoint as IPTC ninjs (2.2, or 3.1 per center), signed with HMAC-SHA256; the center's
//! editors take it through their own review and report back by signed status callbacks
//! (received, in review, published with its URL, rejected with the reason). A withdrawal
//! sends the same `uri` with `pubstatus: canceled`. `README.md` beside this file is the
//! contract a center implements.

pub mod ninjs;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::{
    CallbackError, CallbackReply, CallbackRequest, Callbacks, Channel, ChannelKind, ChannelReceipt,
    Correlation, DeliveryOutcome, Dispatch, Permanence, PublishedItem, ReceiptStatus, RenderError, Rendition,
    TargetError, TargetRef, Verified, WithdrawOutcome,
};
use ninjs::{Links, NinjsVersion};

/// Hex HMAC-SHA256 of `timestamp.body` under the target's key, both ways.
pub const SIGNATURE_HEADER: &str = "x-herald-signature";
/// Unix seconds the request was signed at; part of what is signed.
pub const TIMESTAMP_HEADER: &str = "x-herald-timestamp";
/// The delivery's key, the same on every attempt: the center keeps one manuscript per key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// A callback signed further than this from the hub's now is refused as a possible replay.
pub const REPLAY_WINDOW_SECONDS: i64 = 300;
/// A center's editors review a manuscript (三审三校) within a working day or so; past this
/// with no callback the hub asks the center.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(24 * 3600);
/// The secret the hub signs pushes with, and the one it checks the center's callbacks with.
pub const SIGNING_KEY: &str = "signing_key";
pub const CALLBACK_KEY: &str = "callback_key";

/// The hub's clock, lent to the adapter for signing times (adapters keep none of their own).
pub type Now = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub struct MediaCenter {
    client: reqwest::Client,
    portal_base: String,
    now: Now,
}

impl MediaCenter {
    /// `portal_base`: the hub's public address, for the links to the item's page and files.
    pub fn new(client: reqwest::Client, portal_base: &str, now: Now) -> Self {
        Self {
            client,
            portal_base: portal_base.trim_end_matches('/').to_owned(),
            now,
        }
    }
}

/// A center's settings, from its target.
struct Center {
    endpoint: String,
    version: NinjsVersion,
}

fn center(config: &Value) -> Result<Center, TargetError> {
    let endpoint = config["endpoint"]
        .as_str()
        .filter(|e| e.starts_with("https://") || e.starts_with("http://"))
        .ok_or_else(|| {
            TargetError::new(
                "config.endpoint",
                "the center's ingest URL (https://…) is required",
            )
        })?;
    let version = match config.get("ninjs_version") {
        None | Some(Value::Null) => NinjsVersion::V2_2,
        Some(raw) => raw
            .as_str()
            .and_then(NinjsVersion::parse)
            .ok_or_else(|| TargetError::new("config.ninjs_version", "must be \"2.2\" or \"3.1\""))?,
    };
    Ok(Center {
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        version,
    })
}

/// Hex HMAC-SHA256 of `timestamp.body`.
pub fn signature(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn failed(permanence: Permanence, code: &str, message: impl Into<String>) -> DeliveryOutcome {
    DeliveryOutcome::Failed {
        permanence,
        code: code.into(),
        message: message.into(),
        checkpoint: None,
    }
}

/// What a request to the center came to.
enum HttpResult {
    /// 2xx, with its JSON body (`Null` if none).
    Taken(Value),
    /// Nothing was sent (no connection): safe to try again.
    NotSent(String),
    /// Sent, with no answer: it may have taken effect.
    NoAnswer(String),
    /// An HTTP error status, with what the center said.
    Refused { status: u16, message: String },
}

impl HttpResult {
    /// Whether a refusal may go away on its own (overload, a server error).
    fn transient(status: u16) -> bool {
        status == 408 || status == 429 || status >= 500
    }
}

impl MediaCenter {
    async fn send(&self, request: reqwest::RequestBuilder, key: &[u8], body: Vec<u8>) -> HttpResult {
        let timestamp = (self.now)().timestamp().to_string();
        let signed = signature(key, &timestamp, &body);
        let sent = request
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, signed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_connect() => return HttpResult::NotSent(e.to_string()),
            Err(e) => return HttpResult::NoAnswer(e.to_string()),
        };
        let status = response.status();
        let text = match response.text().await {
            Ok(text) => text,
            Err(e) => return HttpResult::NoAnswer(e.to_string()),
        };
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return HttpResult::Taken(json);
        }
        // What the center says, in its own words (its `error` field, else the text), bounded.
        let said = json["error"].as_str().map_or(text.as_str(), |e| e);
        HttpResult::Refused {
            status: status.as_u16(),
            message: said.chars().take(500).collect(),
        }
    }
}

#[async_trait::async_trait]
impl Channel for MediaCenter {
    fn kind(&self) -> ChannelKind {
        ChannelKind::MediaCenter
    }

    fn check_target(&self, config: &Value, secret_names: &[&str]) -> Result<(), TargetError> {
        center(config)?;
        TargetError::missing_secret(
            secret_names,
            &[SIGNING_KEY, CALLBACK_KEY],
            "the keys shared with the center (pushes are signed with signing_key, its callbacks checked with callback_key)",
        )
    }

    /// Both ninjs forms, so what goes to each center is exactly what the preview shows.
    fn render(&self, item: &PublishedItem) -> Result<Rendition, RenderError> {
        let links = Links {
            portal_base: &self.portal_base,
        };
        let mut payload = serde_json::Map::new();
        for version in [NinjsVersion::V2_2, NinjsVersion::V3_1] {
            payload.insert(
                version.payload_key().into(),
                ninjs::document(item, version, &links),
            );
        }
        Ok(Rendition {
            channel: ChannelKind::MediaCenter,
            payload: Value::Object(payload),
        })
    }

    async fn deliver(&self, rendition: &Rendition, dispatch: &Dispatch<'_>) -> DeliveryOutcome {
        let center = match center(&dispatch.target.config) {
            Ok(center) => center,
            Err(e) => return failed(Permanence::Permanent, "misconfigured", e.to_string()),
        };
        let Some(key) = dispatch.target.secrets.get(SIGNING_KEY) else {
            return failed(
                Permanence::Permanent,
                "misconfigured",
                format!("the target has no secrets.{SIGNING_KEY}"),
            );
        };
        let Some(document) = rendition.payload.get(center.version.payload_key()) else {
            return failed(
                Permanence::Permanent,
                "unreadable_rendition",
                format!("the rendition holds no ninjs {}", center.version.as_str()),
            );
        };
        let body = document.to_string().into_bytes();
        let request = self
            .client
            .post(&center.endpoint)
            .header(IDEMPOTENCY_HEADER, dispatch.idempotency_key);
        match self.send(request, key.expose().as_bytes(), body).await {
            HttpResult::Taken(answer) => match answer["id"].as_str() {
                Some(id) if !id.is_empty() => DeliveryOutcome::Accepted {
                    external_id: id.to_owned(),
                    confirm_within: Some(CONFIRM_WITHIN),
                    checkpoint: None,
                },
                // It was taken, but without its id no callback can be matched to it.
                _ => DeliveryOutcome::Unknown {
                    message: "the center took the item but answered without an `id`".into(),
                    checkpoint: None,
                },
            },
            HttpResult::NotSent(e) => failed(Permanence::Transient, "unreachable", e),
            HttpResult::NoAnswer(e) => DeliveryOutcome::Unknown {
                message: format!("no answer from the center: {e}"),
                checkpoint: None,
            },
            HttpResult::Refused { status, message } => {
                let permanence = if HttpResult::transient(status) {
                    Permanence::Transient
                } else {
                    Permanence::Permanent
                };
                failed(permanence, &format!("http_{status}"), message)
            }
        }
    }

    async fn withdraw(
        &self,
        item_id: &str,
        target: &TargetRef,
        _external_id: Option<&str>,
        reason: &str,
        idempotency_key: &str,
    ) -> WithdrawOutcome {
        // Sent even when the push's answer was lost (no manuscript id): the cancellation names
        // the item by its `uri`, and a center that never took it has nothing to take down.
        let (center, key) = match (center(&target.config), target.secrets.get(SIGNING_KEY)) {
            (Ok(center), Some(key)) => (center, key),
            (Err(e), _) => {
                return WithdrawOutcome::Failed {
                    permanence: Permanence::Permanent,
                    code: "misconfigured".into(),
                    message: e.to_string(),
                };
            }
            (Ok(_), None) => {
                return WithdrawOutcome::Failed {
                    permanence: Permanence::Permanent,
                    code: "misconfigured".into(),
                    message: format!("the target has no secrets.{SIGNING_KEY}"),
                };
            }
        };
        let at = (self.now)().to_rfc3339();
        let body = ninjs::cancellation(item_id, center.version, &at, reason)
            .to_string()
            .into_bytes();
        let request = self
            .client
            .post(&center.endpoint)
            .header(IDEMPOTENCY_HEADER, idempotency_key);
        match self.send(request, key.expose().as_bytes(), body).await {
            HttpResult::Taken(_) => WithdrawOutcome::Withdrawn,
            HttpResult::NotSent(message) => WithdrawOutcome::Failed {
                permanence: Permanence::Transient,
                code: "unreachable".into(),
                message,
            },
            HttpResult::NoAnswer(message) => WithdrawOutcome::Unknown { message },
            HttpResult::Refused { status, message } => WithdrawOutcome::Failed {
                permanence: if HttpResult::transient(status) {
                    Permanence::Transient
                } else {
                    Permanence::Permanent
                },
                code: format!("http_{status}"),
                message,
            },
        }
    }

    /// Asks the center about a manuscript whose callback is overdue: `GET {endpoint}/{id}`.
    async fn reconcile(&self, dispatch: &Dispatch<'_>, external_id: &str) -> Option<ReceiptStatus> {
        let center = center(&dispatch.target.config).ok()?;
        let key = dispatch.target.secrets.get(SIGNING_KEY)?;
        let request = self.client.get(format!("{}/{external_id}", center.endpoint));
        match self.send(request, key.expose().as_bytes(), Vec::new()).await {
            HttpResult::Taken(answer) => status_of(&answer).ok().flatten(),
            HttpResult::Refused { status: 404, .. } => Some(ReceiptStatus::Failed {
                permanence: Permanence::Permanent,
                code: "unknown_to_center".into(),
                message: "the center has no record of this manuscript".into(),
            }),
            HttpResult::Refused { .. } | HttpResult::NotSent(_) | HttpResult::NoAnswer(_) => None,
        }
    }

    fn callbacks(&self) -> Option<&dyn Callbacks> {
        Some(self)
    }
}

/// A status the center reports (in a callback or an answer to `reconcile`); `None` for one
/// that settles nothing yet (received, in review).
fn status_of(event: &Value) -> Result<Option<ReceiptStatus>, String> {
    match event["status"].as_str() {
        Some("received" | "in_review") => Ok(None),
        Some("published") => Ok(Some(ReceiptStatus::Delivered)),
        Some("canceled") => Ok(Some(ReceiptStatus::Withdrawn)),
        Some("rejected") => Ok(Some(ReceiptStatus::Failed {
            permanence: Permanence::Permanent,
            code: "rejected".into(),
            message: event["reason"]
                .as_str()
                .unwrap_or("rejected without a reason")
                .chars()
                .take(500)
                .collect(),
        })),
        Some(other) => Err(format!("unknown status `{other}`")),
        None => Err("missing".into()),
    }
}

fn unauthenticated(field: &str, message: &str) -> CallbackError {
    CallbackError::Unauthenticated {
        field: field.into(),
        message: message.into(),
    }
}

fn malformed(field: String, message: impl Into<String>) -> CallbackError {
    CallbackError::Malformed {
        field,
        message: message.into(),
    }
}

/// Checks a signed request's `X-Herald-Signature` (HMAC-SHA256 of `timestamp.body` under the
/// target's `callback_key`, compared in constant time) and that `X-Herald-Timestamp` is within
/// [`REPLAY_WINDOW_SECONDS`] of `now`.
pub fn check_signed(
    target: &TargetRef,
    request: &CallbackRequest<'_>,
    now: DateTime<Utc>,
) -> Result<(), CallbackError> {
    let key = target.secrets.get(CALLBACK_KEY).ok_or_else(|| {
        unauthenticated(
            &format!("secrets.{CALLBACK_KEY}"),
            "the target has no callback key",
        )
    })?;
    let timestamp = request
        .header(TIMESTAMP_HEADER)
        .ok_or_else(|| unauthenticated(TIMESTAMP_HEADER, "missing"))?;
    let signed_at: i64 = timestamp
        .parse()
        .map_err(|_| unauthenticated(TIMESTAMP_HEADER, "not a Unix time"))?;
    let given = request
        .header(SIGNATURE_HEADER)
        .and_then(|text| hex::decode(text).ok())
        .ok_or_else(|| unauthenticated(SIGNATURE_HEADER, "missing or not hex"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes())
        .map_err(|_| unauthenticated(&format!("secrets.{CALLBACK_KEY}"), "unusable key"))?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(request.body);
    mac.verify_slice(&given)
        .map_err(|_| unauthenticated(SIGNATURE_HEADER, "the signature does not match"))?;
    // Checked after the signature, so the time is known to be the sender's own.
    if (now.timestamp() - signed_at).abs() > REPLAY_WINDOW_SECONDS {
        return Err(CallbackError::Stale {
            field: TIMESTAMP_HEADER.into(),
            message: format!("signed more than {REPLAY_WINDOW_SECONDS} s from the hub's time"),
        });
    }
    Ok(())
}

/// Most events one callback may carry.
const MAX_EVENTS: usize = 1000;

impl Callbacks for MediaCenter {
    fn verify(
        &self,
        target: &TargetRef,
        request: &CallbackRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verified, CallbackError> {
        if request.method != "POST" {
            return Err(CallbackError::Method("status callbacks are POSTed".into()));
        }
        check_signed(target, request, now)?;
        let body: Value =
            serde_json::from_slice(request.body).map_err(|_| malformed("body".into(), "not JSON"))?;
        let events = body["events"]
            .as_array()
            .ok_or_else(|| malformed("events".into(), "an array of events is required"))?;
        if events.is_empty() || events.len() > MAX_EVENTS {
            return Err(malformed("events".into(), format!("1 to {MAX_EVENTS} events")));
        }
        let mut receipts = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let field = |name: &str| format!("events[{i}].{name}");
            let text = |name: &str| {
                event[name]
                    .as_str()
                    .filter(|v| !v.is_empty() && v.len() <= 200)
                    .ok_or_else(|| malformed(field(name), "a string of 1 to 200 bytes is required"))
            };
            let (id, manuscript) = (text("id")?, text("item")?);
            let status = match status_of(event).map_err(|e| malformed(field("status"), e))? {
                Some(status) => status,
                // Received or in review: kept for the record, moving nothing.
                None => ReceiptStatus::Accepted,
            };
            let source_time = match event.get("at").and_then(Value::as_str) {
                Some(at) => Some(
                    DateTime::parse_from_rfc3339(at)
                        .map_err(|_| malformed(field("at"), "an RFC 3339 time"))?
                        .with_timezone(&Utc),
                ),
                None => None,
            };
            receipts.push(ChannelReceipt {
                correlation: Correlation::ExternalId(manuscript.to_owned()),
                status,
                source_time,
                dedup: id.to_owned(),
                raw: event.clone(),
            });
        }
        let received = receipts.len();
        Ok(Verified {
            receipts,
            reply: CallbackReply::Json(serde_json::json!({ "received": received })),
            // A center resends until it hears 200; its events are stored once by their ids.
            replay_key: None,
        })
    }
}
