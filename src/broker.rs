//! The in-process MQTT broker `herald serve` runs when no external broker is configured
//! (`mqtt.url` empty), so one command runs everything. rmqtt, on the hub's own tokio runtime,
//! behind this seam: `EmbeddedBroker::start` binds and serves; `BrokerGate` decides who may
//! connect and what each may publish and subscribe to.
//!
//! - Devices log in with their device id as both client id and user name and the credential
//!   issued at registration; an unknown, revoked or wrong credential is refused at CONNECT
//!   (`BadUsernameOrPassword` / `NotAuthorized`).
//! - A device may publish only its own reports and subscribe only to its own and area command
//!   topics (`topic::device_may_publish` / `device_may_subscribe`, PROTOCOL.md §2.2); a publish
//!   elsewhere is dropped, a subscription elsewhere is refused in the SUBACK. Its will must be
//!   one of its own report topics (a will skips the publish check).
//! - The hub logs in with a login made up for this process (`HubLogin`), as the only superuser.
//!
//! Retained messages (device status) are kept in memory: they are rebuilt by the devices'
//! own births and wills when the hub restarts.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_firmware_protocol::topic;
use rmqtt::{
    codec::v5::SubscribeAckReason,
    context::ServerContext,
    hook::{Handler, HookResult, Parameter, Register, ReturnType, Type},
    net::Builder,
    retain::{DefaultRetainStorage, RetainStorage},
    server::MqttServer,
    types::{
        AuthResult, ConnectInfo, LastWill, PublishAclResult, Retain, SubscribeAclResult, TopicFilter,
        TopicName,
    },
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio::task::JoinHandle;

use crate::{accounts::random_secret, delivery::devices, hub::Hub, store::entities::device};

/// Packets larger than the largest command (1,000 devices named, 2,000 characters of text) or
/// report are refused.
const MAX_PACKET_BYTES: u32 = 256 * 1024;
/// Pending connections the listener holds: a village's devices reconnect together after a
/// power cut.
const BACKLOG: i32 = 4096;
/// Messages a session may have queued: the hub's own session takes every device's reports, and
/// 10,000 devices answering a command send 40,000 at once; past the queue they would be lost.
/// A device's session queues a few commands at most.
const SESSION_QUEUE: usize = 200_000;
/// How often the broker looks for devices revoked while connected.
const REVOCATION_CHECK: Duration = Duration::from_secs(10);
/// Unacknowledged QoS 1 messages in flight to one session: the hub acknowledges reports only
/// once they are stored, a batch at a time.
const IN_FLIGHT: u16 = 256;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the in-process MQTT broker cannot listen on {0}: the address is already in use")]
    AddressInUse(String),
    #[error("the in-process MQTT broker cannot listen on {address}: {reason}")]
    Listen { address: String, reason: String },
    #[error("the in-process MQTT broker cannot make the hub's login: {0}")]
    Login(String),
}

/// The hub's own login to the in-process broker, made up for each process.
#[derive(Clone)]
pub struct HubLogin {
    pub username: String,
    pub password: String,
}

impl HubLogin {
    pub fn generate() -> anyhow::Result<Self> {
        Ok(Self {
            // Device ids never contain `~`, so the hub's name is never a device's.
            username: "herald~hub".into(),
            password: random_secret(32).map_err(|e| anyhow::anyhow!("{e}"))?,
        })
    }
}

/// Who may connect: the hub's login, and devices checked against the registry once the hub
/// is attached and hears device reports (until then, while the hub starts, devices are turned
/// away and retry).
pub struct BrokerGate {
    hub_login: HubLogin,
    hub: OnceLock<Arc<Hub>>,
}

/// What the gate says of a CONNECT.
enum Verdict {
    Hub,
    Device,
    Refused(AuthResult),
}

impl BrokerGate {
    pub fn new(hub_login: HubLogin) -> Arc<Self> {
        Arc::new(Self {
            hub_login,
            hub: OnceLock::new(),
        })
    }

    /// Lets devices in from now on, checked against `hub`'s registry.
    pub fn attach(&self, hub: Arc<Hub>) {
        // A second attach keeps the first hub: one gate guards one hub's devices.
        let _ = self.hub.set(hub);
    }

    async fn verdict(&self, client_id: &str, username: &str, password: &[u8]) -> Verdict {
        if username == self.hub_login.username {
            let matches = crate::accounts::constant_time_eq(password, self.hub_login.password.as_bytes());
            return if matches {
                Verdict::Hub
            } else {
                Verdict::Refused(AuthResult::BadUsernameOrPassword)
            };
        }
        // A device is its own account: the client id, the user name and the topics' id agree.
        if client_id != username || devices::check_device_id(username).is_err() {
            return Verdict::Refused(AuthResult::NotAuthorized);
        }
        let (Some(hub), Ok(credential)) = (self.hub.get(), std::str::from_utf8(password)) else {
            return Verdict::Refused(AuthResult::NotAuthorized);
        };
        // Not before the hub hears reports: a device that came in earlier (devices reconnect
        // quickly after a restart) would announce itself unheard, and what it missed while
        // away would not be sent again until its next reconnection. Turned away, it retries.
        if hub.device_link.as_ref().is_some_and(|link| !link.is_listening()) {
            return Verdict::Refused(AuthResult::NotAuthorized);
        }
        match devices::authenticate(hub, username, credential).await {
            Ok(Some(_)) => Verdict::Device,
            Ok(None) => Verdict::Refused(AuthResult::BadUsernameOrPassword),
            Err(e) => {
                tracing::warn!(device = username, error = %e, "broker: checking a device login failed");
                Verdict::Refused(AuthResult::NotAuthorized)
            }
        }
    }
}

struct AuthHook(Arc<BrokerGate>);

#[async_trait]
impl Handler for AuthHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let Parameter::ClientAuthenticate(connect) = param else {
            return (true, acc);
        };
        let connect: &ConnectInfo = connect;
        // The verdict ends the hook chain, whichever way it goes.
        let answer = |result| (false, Some(HookResult::AuthResult(result)));
        let (Some(username), Some(password)) = (connect.username(), connect.password()) else {
            return answer(AuthResult::NotAuthorized);
        };
        let client_id: &str = connect.client_id();
        match self.0.verdict(client_id, username, password).await {
            // The superuser passes the ACL hooks untouched.
            Verdict::Hub => answer(AuthResult::Allow(true, None)),
            Verdict::Device => {
                let will_is_own = connect.last_will().is_none_or(|will| {
                    let will_topic: &str = match &will {
                        LastWill::V3(will) => &will.topic,
                        LastWill::V5(will) => &will.topic,
                    };
                    topic::device_may_publish(client_id, will_topic)
                });
                if will_is_own {
                    answer(AuthResult::Allow(false, None))
                } else {
                    answer(AuthResult::NotAuthorized)
                }
            }
            Verdict::Refused(result) => answer(result),
        }
    }
}

struct AclHook;

#[async_trait]
impl Handler for AclHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let result = if topic::device_may_subscribe(&session.id.client_id, &subscribe.topic_filter) {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                } else {
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let result = if topic::device_may_publish(&session.id.client_id, &publish.topic) {
                    PublishAclResult::allow()
                } else {
                    // MQTT 3.1.1 has no negative PUBACK: the message goes nowhere, as on
                    // Mosquitto, and the device stays connected for its own commands.
                    PublishAclResult::rejected(false, None)
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            _ => (true, acc),
        }
    }
}

/// Retained messages in memory, kept until replaced or cleared: rmqtt's own store reports
/// itself disabled, and would otherwise expire a device's status after the listener's
/// message expiry.
#[derive(Default)]
struct KeptRetained(DefaultRetainStorage);

#[async_trait]
impl RetainStorage for KeptRetained {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        _listener_expiry: Option<Duration>,
    ) -> rmqtt::Result<()> {
        let asked = retain
            .publish
            .properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval)
            .map(|s| Duration::from_secs(u64::from(s.get())));
        self.0.set_with_timeout(topic, retain, asked).await
    }

    async fn get(&self, topic_filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        self.0.get_message(topic_filter).await
    }

    async fn count(&self) -> isize {
        self.0.count().await
    }

    async fn max(&self) -> isize {
        self.0.max().await
    }
}

/// A running in-process broker. Dropping it does not stop it; `shutdown` does.
pub struct EmbeddedBroker {
    local_addr: SocketAddr,
    context: ServerContext,
    register: Box<dyn Register>,
    serving: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Binds `address` (HOST:PORT; port 0 picks a free one) and serves on the caller's runtime.
    pub async fn start(address: &str, gate: Arc<BrokerGate>) -> Result<Self, BrokerError> {
        let listen_error = |reason: String| BrokerError::Listen {
            address: address.to_owned(),
            reason,
        };
        let socket: SocketAddr = tokio::net::lookup_host(address)
            .await
            .map_err(|e| listen_error(e.to_string()))?
            .next()
            .ok_or_else(|| listen_error("the name resolves to no address".into()))?;
        let context = ServerContext::new()
            // Its busy check refuses every CONNECT while the machine's CPU is above 90 %, which
            // a two-core county server reaches during a fan-out.
            .busy_check_enable(false)
            .build()
            .await;
        *context.extends.retain_mut().await = Box::new(KeptRetained::default());
        let register = context.extends.hook_mgr().register();
        register
            .add(Type::ClientAuthenticate, Box::new(AuthHook(gate)))
            .await;
        register
            .add(Type::ClientSubscribeCheckAcl, Box::new(AclHook))
            .await;
        register
            .add(Type::MessagePublishCheckAcl, Box::new(AclHook))
            .await;
        register.start().await;
        let listener = Builder::new()
            .name("herald")
            .laddr(socket)
            // Without it a login with no user name would skip the authentication hook.
            .allow_anonymous(false)
            .reuseaddr(Some(true))
            .backlog(BACKLOG)
            .max_packet_size(MAX_PACKET_BYTES)
            .max_mqueue_len(SESSION_QUEUE)
            .max_inflight(std::num::NonZeroU16::new(IN_FLIGHT).unwrap_or(std::num::NonZeroU16::MIN))
            .bind()
            .map_err(|e| {
                let in_use = e
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse);
                if in_use {
                    BrokerError::AddressInUse(address.to_owned())
                } else {
                    listen_error(format!("{e:#}"))
                }
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| listen_error(format!("{e:#}")))?;
        let listener = listener.tcp().map_err(|e| listen_error(format!("{e:#}")))?;
        let server = MqttServer::new(context.clone())
            .listener_by_id(listener, 1)
            .build();
        let serving = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "the in-process MQTT broker stopped");
            }
        });
        Ok(Self {
            local_addr,
            context,
            register,
            serving,
        })
    }

    /// Starts a broker on `address` for a hub about to open, and points `settings` at it
    /// with a login made up for this start. Attach the hub to the gate once it is open.
    pub async fn start_for_hub(
        address: &str,
        settings: &mut crate::config::MqttSettings,
    ) -> Result<(Self, Arc<BrokerGate>), BrokerError> {
        let login = HubLogin::generate().map_err(|e| BrokerError::Login(e.to_string()))?;
        let gate = BrokerGate::new(login.clone());
        let broker = Self::start(address, gate.clone()).await?;
        settings.url = broker.url();
        settings.username = login.username;
        settings.password = login.password;
        Ok((broker, gate))
    }

    /// Where it listens (the port chosen, when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL the hub's own client connects to: loopback when listening on every address.
    pub fn url(&self) -> String {
        let ip = self.local_addr.ip();
        let host = if ip.is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            ip.to_string()
        };
        format!("mqtt://{host}:{}", self.local_addr.port())
    }

    /// Closes the sessions of these client ids that are connected; returns how many.
    pub async fn disconnect(&self, client_ids: &[&str]) -> usize {
        self.close_sessions(|client_id| client_ids.contains(&client_id))
            .await
    }

    /// Closes every session whose client id is `wanted`; returns how many.
    async fn close_sessions(&self, wanted: impl Fn(&str) -> bool) -> usize {
        // Collected first: the session table's shard locks are held while it is iterated.
        let ids: Vec<_> = self
            .context
            .extends
            .shared()
            .await
            .iter()
            .map(|e| e.id())
            .filter(|id| wanted(&id.client_id))
            .collect();
        let closed = ids.len();
        for id in ids {
            let mut entry = self.context.extends.shared().await.entry(id);
            if let Err(e) = entry.kick(true, true, true).await {
                tracing::debug!(error = %e, "broker: a session did not close cleanly");
            }
        }
        closed
    }

    /// Disconnects the devices revoked at or after `since`; returns the latest revocation
    /// seen (the next `since`) and how many sessions were closed. Their credentials no longer
    /// let them back in.
    pub async fn try_disconnect_revoked(
        &self,
        hub: &Hub,
        since: DateTime<Utc>,
    ) -> anyhow::Result<(DateTime<Utc>, usize)> {
        let revoked = device::Entity::find()
            .filter(device::Column::RevokedAt.gte(since))
            .all(&hub.db)
            .await?;
        let latest = revoked.iter().filter_map(|d| d.revoked_at).max().unwrap_or(since);
        let ids: Vec<&str> = revoked.iter().map(|d| d.device_id.as_str()).collect();
        Ok((latest, self.disconnect(&ids).await))
    }

    /// Closes the session of each device revoked while it is connected, within
    /// `REVOCATION_CHECK`.
    pub async fn run_revocations_until_stopped(&self, hub: Arc<Hub>) -> anyhow::Result<()> {
        let mut since = hub.clock.now();
        loop {
            tokio::time::sleep(REVOCATION_CHECK).await;
            let (latest, closed) = self.try_disconnect_revoked(&hub, since).await?;
            if closed > 0 {
                tracing::info!(closed, "broker: disconnected revoked devices");
            }
            since = latest;
        }
    }

    /// Stops accepting and closes every session (their wills fire).
    pub async fn shutdown(self) {
        self.serving.abort();
        self.register.stop().await;
        self.close_sessions(|_| true).await;
        let _ = self.serving.await;
    }
}
