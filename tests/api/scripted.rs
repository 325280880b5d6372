//! A channel adapter whose answers a test scripts, and which remembers every call.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
};

use herald_channels::{
    Channel, ChannelKind, DeliveryOutcome, Dispatch, Permanence, PublishedItem, RenderError, Rendition,
    TargetRef, WithdrawOutcome,
};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    Deliver,
    Transient,
    Permanent,
    Unknown,
    /// Never answers: the worker holding it "dies" when the test drops it.
    Hang,
}

pub struct Scripted {
    kind: ChannelKind,
    script: Mutex<VecDeque<Step>>,
    otherwise: Step,
    can_withdraw: bool,
    /// Idempotency keys of every deliver call, in order.
    pub calls: Mutex<Vec<String>>,
    pub withdrawals: Mutex<Vec<String>>,
    /// The decrypted secrets each deliver call was handed: (target id, name → value).
    pub secrets_seen: Mutex<Vec<(String, BTreeMap<String, String>)>>,
}

impl Scripted {
    pub fn new(kind: ChannelKind, script: &[Step], otherwise: Step) -> Arc<Self> {
        Arc::new(Self {
            kind,
            script: Mutex::new(script.iter().copied().collect()),
            otherwise,
            can_withdraw: true,
            calls: Mutex::new(Vec::new()),
            withdrawals: Mutex::new(Vec::new()),
            secrets_seen: Mutex::new(Vec::new()),
        })
    }

    pub fn without_withdrawal(kind: ChannelKind) -> Arc<Self> {
        Arc::new(Self {
            kind,
            script: Mutex::new(VecDeque::new()),
            otherwise: Step::Deliver,
            can_withdraw: false,
            calls: Mutex::new(Vec::new()),
            withdrawals: Mutex::new(Vec::new()),
            secrets_seen: Mutex::new(Vec::new()),
        })
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

#[async_trait::async_trait]
impl Channel for Scripted {
    fn kind(&self) -> ChannelKind {
        self.kind
    }

    fn render(&self, item: &PublishedItem) -> Result<Rendition, RenderError> {
        Ok(Rendition {
            channel: self.kind,
            payload: serde_json::json!({"title": item.title, "body": item.body_html}),
        })
    }

    async fn deliver(&self, _rendition: &Rendition, dispatch: &Dispatch<'_>) -> DeliveryOutcome {
        let (target, key) = (dispatch.target, dispatch.idempotency_key);
        self.calls.lock().expect("lock").push(key.to_owned());
        let secrets = target
            .secrets
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().to_owned()))
            .collect();
        self.secrets_seen
            .lock()
            .expect("lock")
            .push((target.id.clone(), secrets));
        // A target configured to fail always fails permanently, whatever the script says.
        let step = if target.config["fail"] == true {
            Step::Permanent
        } else {
            self.script
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or(self.otherwise)
        };
        tokio::task::yield_now().await;
        match step {
            Step::Deliver => DeliveryOutcome::Delivered {
                external_id: Some(format!("ext-{key}")),
            },
            Step::Transient => DeliveryOutcome::Failed {
                permanence: Permanence::Transient,
                code: "http_503".into(),
                message: "服务暂不可用".into(),
                checkpoint: None,
            },
            Step::Permanent => DeliveryOutcome::Failed {
                permanence: Permanence::Permanent,
                code: "invalid_account".into(),
                message: "账号无效".into(),
                checkpoint: None,
            },
            Step::Unknown => DeliveryOutcome::Unknown {
                message: "timed out after sending".into(),
                checkpoint: None,
            },
            Step::Hang => std::future::pending().await,
        }
    }

    async fn withdraw(
        &self,
        _item_id: &str,
        _target: &TargetRef,
        _external_id: Option<&str>,
        _reason: &str,
        key: &str,
    ) -> WithdrawOutcome {
        self.withdrawals.lock().expect("lock").push(key.to_owned());
        if self.can_withdraw {
            WithdrawOutcome::Withdrawn
        } else {
            WithdrawOutcome::Unsupported {
                reason: "published articles cannot be deleted through this account".into(),
            }
        }
    }
}
