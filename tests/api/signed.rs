//! A media-centre-like test channel that reports later: it accepts deliveries (or fails after
//! a first step, keeping a checkpoint), answers reconcile questions as the test says, and
//! takes signed status callbacks, verified as a real media centre's would be: HMAC-SHA256 over
//! `timestamp.body` with the target's `callback_key` secret, within a replay window of the
//! hub's clock, compared in constant time.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use herald_channels::{
    CallbackError, CallbackReply, CallbackRequest, Callbacks, Channel, ChannelKind, ChannelReceipt,
    Correlation, DeliveryOutcome, Dispatch, Permanence, PublishedItem, ReceiptStatus, RenderError, Rendition,
    TargetRef, Verified, WithdrawOutcome,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

pub use herald_channels::media_center::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
pub const CONFIRM_WITHIN: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Accepted; the result follows by callback.
    Accept,
    /// Waits for the test to open the gate, then accepts: the worker's record comes late.
    HoldThenAccept,
    /// Makes a draft (unless the checkpoint has one), then fails transiently after it.
    FailAfterDraft,
    /// Makes a draft (unless the checkpoint has one), then cannot tell whether the submit
    /// took effect.
    UnknownAfterDraft,
}

pub struct Signed {
    script: Mutex<VecDeque<Step>>,
    otherwise: Step,
    pub gate: Semaphore,
    /// (target id, idempotency key) of every deliver call, in order.
    pub calls: Mutex<Vec<(String, String)>>,
    /// The checkpoint each deliver call was handed.
    pub checkpoints_seen: Mutex<Vec<Option<Value>>>,
    pub drafts_created: Mutex<u32>,
    /// Answers to reconcile by target id; absent: "cannot tell yet".
    pub reconcile_answers: Mutex<BTreeMap<String, ReceiptStatus>>,
    /// (target id, external id) of every reconcile call.
    pub reconcile_calls: Mutex<Vec<(String, String)>>,
}

impl Signed {
    /// The draft the checkpoint names, or a new one (counted: a second one is the bug).
    fn draft_for(&self, dispatch: &Dispatch<'_>) -> String {
        match dispatch.checkpoint.and_then(|c| c["draft"].as_str()) {
            Some(draft) => draft.to_owned(),
            None => {
                let mut made = self.drafts_created.lock().expect("lock");
                *made += 1;
                format!("draft-{made}")
            }
        }
    }

    pub fn new(script: &[Step], otherwise: Step) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script.iter().copied().collect()),
            otherwise,
            gate: Semaphore::new(0),
            calls: Mutex::new(Vec::new()),
            checkpoints_seen: Mutex::new(Vec::new()),
            drafts_created: Mutex::new(0),
            reconcile_answers: Mutex::new(BTreeMap::new()),
            reconcile_calls: Mutex::new(Vec::new()),
        })
    }

    pub fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().expect("lock").clone()
    }

    /// The key the hub delivered to `target` with.
    pub fn key_of(&self, target: &str) -> String {
        self.calls()
            .into_iter()
            .find(|(t, _)| t == target)
            .map(|(_, key)| key)
            .unwrap_or_else(|| panic!("no delivery to {target}"))
    }

    /// The external id this channel gives a delivery.
    pub fn external_id(key: &str) -> String {
        format!("pub-{key}")
    }
}

/// The signature a media centre puts on a callback.
pub fn sign(key: &str, timestamp: &str, body: &[u8]) -> String {
    herald_channels::media_center::signature(key.as_bytes(), timestamp, body)
}

fn malformed(field: String, message: &str) -> CallbackError {
    CallbackError::Malformed {
        field,
        message: message.into(),
    }
}

/// One reported event: `{"id", "external_id" | "key", "status", "code"?, "message"?, "at"?}`.
fn receipt_of(i: usize, event: &Value) -> Result<ChannelReceipt, CallbackError> {
    let field = |name: &str| format!("events[{i}].{name}");
    let text = |name: &str| event[name].as_str().map(str::to_owned);
    let dedup = text("id").ok_or_else(|| malformed(field("id"), "each event has an id"))?;
    let correlation = match (text("external_id"), text("key")) {
        (Some(id), None) => Correlation::ExternalId(id),
        (None, Some(key)) => Correlation::Key(key),
        _ => {
            return Err(malformed(
                field("external_id"),
                "name the delivery by external_id or key",
            ));
        }
    };
    let status = match event["status"].as_str() {
        Some("accepted") => ReceiptStatus::Accepted,
        Some("delivered") => ReceiptStatus::Delivered,
        Some("displayed") => ReceiptStatus::Displayed,
        Some("played") => ReceiptStatus::Played,
        Some("withdrawn") => ReceiptStatus::Withdrawn,
        Some("failed") => ReceiptStatus::Failed {
            permanence: Permanence::Permanent,
            code: text("code").unwrap_or_default(),
            message: text("message").unwrap_or_default(),
        },
        _ => return Err(malformed(field("status"), "unknown status")),
    };
    let source_time = match text("at") {
        Some(at) => Some(
            DateTime::parse_from_rfc3339(&at)
                .map_err(|_| malformed(field("at"), "not an RFC 3339 time"))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    Ok(ChannelReceipt {
        correlation,
        status,
        source_time,
        dedup,
        raw: event.clone(),
    })
}

impl Callbacks for Signed {
    fn verify(
        &self,
        target: &TargetRef,
        request: &CallbackRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verified, CallbackError> {
        if request.method != "POST" {
            return Err(CallbackError::Method("status callbacks are POSTed".into()));
        }
        // Signed as a media centre signs, and checked the same way.
        herald_channels::media_center::check_signed(target, request, now)?;
        let body: Value =
            serde_json::from_slice(request.body).map_err(|_| malformed("body".into(), "not JSON"))?;
        let events = body["events"]
            .as_array()
            .ok_or_else(|| malformed("events".into(), "an array of events"))?;
        let receipts = events
            .iter()
            .enumerate()
            .map(|(i, event)| receipt_of(i, event))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Verified {
            receipts,
            reply: CallbackReply::Text("success".into()),
            replay_key: None,
        })
    }
}

#[async_trait::async_trait]
impl Channel for Signed {
    fn kind(&self) -> ChannelKind {
        ChannelKind::MediaCenter
    }

    fn render(&self, item: &PublishedItem) -> Result<Rendition, RenderError> {
        Ok(Rendition {
            channel: ChannelKind::MediaCenter,
            payload: json!({"headline": item.title}),
        })
    }

    async fn deliver(&self, _rendition: &Rendition, dispatch: &Dispatch<'_>) -> DeliveryOutcome {
        let key = dispatch.idempotency_key.to_owned();
        self.calls
            .lock()
            .expect("lock")
            .push((dispatch.target.id.clone(), key.clone()));
        self.checkpoints_seen
            .lock()
            .expect("lock")
            .push(dispatch.checkpoint.cloned());
        let step = self
            .script
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(self.otherwise);
        // Each attempt gets its own id from the channel, as WeChat's `publish_id` does: the
        // first the plain one, a retry's numbered.
        let attempt = self.calls().iter().filter(|(_, k)| *k == key).count();
        let external_id = match attempt {
            1 => Self::external_id(&key),
            n => format!("{}-{n}", Self::external_id(&key)),
        };
        let accepted = DeliveryOutcome::Accepted {
            external_id,
            confirm_within: Some(CONFIRM_WITHIN),
            checkpoint: None,
        };
        match step {
            Step::Accept => accepted,
            Step::HoldThenAccept => {
                self.gate.acquire().await.expect("gate open").forget();
                accepted
            }
            Step::FailAfterDraft => DeliveryOutcome::Failed {
                permanence: Permanence::Transient,
                code: "submit_timeout".into(),
                message: "草稿已建，提交超时".into(),
                checkpoint: Some(json!({"draft": self.draft_for(dispatch)})),
            },
            Step::UnknownAfterDraft => DeliveryOutcome::Unknown {
                message: "草稿已建，提交无应答".into(),
                checkpoint: Some(json!({"draft": self.draft_for(dispatch)})),
            },
        }
    }

    async fn withdraw(
        &self,
        _item_id: &str,
        _target: &TargetRef,
        _external_id: Option<&str>,
        _reason: &str,
        _key: &str,
    ) -> WithdrawOutcome {
        WithdrawOutcome::Withdrawn
    }

    async fn reconcile(&self, dispatch: &Dispatch<'_>, external_id: &str) -> Option<ReceiptStatus> {
        self.reconcile_calls
            .lock()
            .expect("lock")
            .push((dispatch.target.id.clone(), external_id.to_owned()));
        self.reconcile_answers
            .lock()
            .expect("lock")
            .get(&dispatch.target.id)
            .cloned()
    }

    fn callbacks(&self) -> Option<&dyn Callbacks> {
        Some(self)
    }
}
