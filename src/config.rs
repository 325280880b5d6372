//! Typed settings: defaults, then one TOML file, then `HERALD_SECTION__KEY` environment
//! variables, then command-line flags. Unknown keys are rejected so a typo never silently
//! falls back to a default.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use herald_channels::ChannelKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub content: ContentSettings,
    pub auth: AuthSettings,
    pub workflow: WorkflowSettings,
    pub delivery: DeliverySettings,
    pub mqtt: MqttSettings,
    pub portal: PortalSettings,
}

/// What stands in for a secret wherever settings are shown.
const REDACTED: &str = "[redacted]";

impl Settings {
    /// The settings as `check-config` prints them: every secret replaced (the secrets key,
    /// passwords, also inside a database or broker URL, the metrics token), so the output can
    /// be pasted into a ticket.
    pub fn shown(&self) -> Settings {
        let mut shown = self.clone();
        for secret in [
            &mut shown.storage.secrets_key,
            &mut shown.mqtt.password,
            &mut shown.server.metrics_token,
        ] {
            if !secret.is_empty() {
                *secret = REDACTED.into();
            }
        }
        shown.storage.database_url = without_password(&self.storage.database_url);
        shown.mqtt.url = without_password(&self.mqtt.url);
        shown
    }
}

/// `url` with the password in it, if any, replaced.
fn without_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => match parsed.set_password(Some(REDACTED)) {
            Ok(()) => parsed.to_string(),
            Err(()) => REDACTED.into(),
        },
        _ => url.to_owned(),
    }
}

/// What the portal says of the site itself: its footer (the identification a government site
/// must show) and where applications for disclosure (依申请公开) go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalSettings {
    /// 主办单位. Empty: the root area's 人民政府办公室.
    pub host: String,
    /// 网站标识码, issued when the site is registered with the State Council's list.
    pub site_code: String,
    /// ICP备案号, e.g. 滇ICP备00000000号.
    pub icp_record: String,
    /// 公安备案号, e.g. 滇公网安备 00000000000000号.
    pub police_record: String,
    /// 联系方式 in the footer: a telephone number or an address.
    pub contact: String,
    /// 依申请公开: the office that receives applications, its address, telephone and hours,
    /// and the e-mail (or web form address) applications may be sent to.
    pub application_office: String,
    pub application_address: String,
    pub application_phone: String,
    pub application_hours: String,
    pub application_email: String,
}

impl Default for PortalSettings {
    fn default() -> Self {
        Self {
            host: String::new(),
            site_code: String::new(),
            icp_record: String::new(),
            police_record: String::new(),
            contact: String::new(),
            application_office: String::new(),
            application_address: String::new(),
            application_phone: String::new(),
            application_hours: "工作日 上午 9:00–12:00，下午 14:30–17:30".into(),
            application_email: String::new(),
        }
    }
}

/// The broker village devices connect to.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSettings {
    /// `mqtt://HOST:PORT` of an external broker (Mosquitto, EMQX). Empty: `herald serve` runs
    /// its own broker on `listen`.
    pub url: String,
    /// HOST:PORT the in-process broker of `herald serve` listens on when `url` is empty
    /// (`--mqtt-listen`). Empty too: no device link, and the loudspeaker and notice-board
    /// channels are not offered.
    pub listen: String,
    /// The hub's own broker login (`herald mqtt acl` writes it for Mosquitto).
    pub username: String,
    pub password: String,
    /// The hub's MQTT client id (its commands go out as `<client_id>-commands`); empty:
    /// `herald-hub-` and a random suffix, so two instances never take each other's session.
    pub client_id: String,
    /// Seconds a device command stays valid: a device that was offline longer never acts on it.
    pub command_lifetime_seconds: u64,
    /// The id devices know the hub's issuer key by (its key is derived from
    /// `storage.secrets_key`, so every instance signs with the same one).
    pub issuer_key_id: u32,
}

/// Not 1883: a county server often runs Mosquitto there already (this project's test
/// machines do); devices are flashed with the port they use.
pub const DEFAULT_MQTT_LISTEN: &str = "0.0.0.0:1884";

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            listen: DEFAULT_MQTT_LISTEN.into(),
            username: String::new(),
            password: String::new(),
            client_id: String::new(),
            command_lifetime_seconds: 3600,
            issuer_key_id: 1,
        }
    }
}

/// The password never reaches a log line through `{:?}` of the settings.
impl std::fmt::Debug for MqttSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSettings")
            .field("url", &without_password(&self.url))
            .field("username", &self.username)
            .field("password", &REDACTED)
            .field("client_id", &self.client_id)
            .field("command_lifetime_seconds", &self.command_lifetime_seconds)
            .field("issuer_key_id", &self.issuer_key_id)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// `HOST:PORT`; port 0 asks the system for a free port.
    pub listen: String,
    /// The address citizens reach the portal at (`https://www.example.gov.cn`); every absolute
    /// link is built from it, never from the request's Host header. Empty: `http://` and the
    /// address the server listens on. An `https` URL also marks the session cookie `Secure`.
    pub public_url: String,
    /// Bearer token a Prometheus scraper presents at `/metrics`. Empty: `/metrics` is off.
    pub metrics_token: String,
    /// Header a reverse proxy sets to the client's address (e.g. `X-Real-IP`). Empty: the
    /// TCP peer's address. Only set it when every request passes through that proxy.
    pub client_address_header: String,
    /// How long (milliseconds) this instance serves the portal pages it keeps before asking
    /// the store whether anything they show changed. A change made through this instance drops
    /// them at once; one made through another instance shows here within this time. 0: ask
    /// before every page.
    pub portal_recheck_ms: u64,
}

impl ServerSettings {
    /// The base every absolute link starts with, without a trailing slash: `public_url`, or
    /// `http://` and the address the server is bound to.
    pub fn public_base(&self, bound: std::net::SocketAddr) -> Result<String, String> {
        let raw = self.public_url.trim().trim_end_matches('/');
        if raw.is_empty() {
            return Ok(format!("http://{bound}"));
        }
        let rest = raw
            .strip_prefix("https://")
            .or_else(|| raw.strip_prefix("http://"))
            .ok_or_else(|| format!("server.public_url `{raw}` must start with http:// or https://"))?;
        let host = rest.split('/').next().unwrap_or_default();
        let unsafe_char = |c: char| c.is_whitespace() || c.is_control() || "\"'<>`{}|\\^?#".contains(c);
        if host.is_empty() || rest.chars().any(unsafe_char) {
            return Err(format!(
                "server.public_url `{raw}` must be a URL like https://www.example.gov.cn, without query or fragment"
            ));
        }
        Ok(raw.to_owned())
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: String::new(),
            metrics_token: String::new(),
            client_address_header: String::new(),
            portal_recheck_ms: 100,
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Holds the embedded SQLite database.
    pub data_dir: PathBuf,
    /// Empty: SQLite in `data_dir`. `postgres://…` selects PostgreSQL.
    pub database_url: String,
    pub max_connections: u32,
    /// 64 hex characters (32 bytes): the key target secrets are encrypted with. Empty: on
    /// SQLite, `herald serve` generates one into `data_dir/secrets.key`; PostgreSQL requires it.
    pub secrets_key: String,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("herald-data"),
            database_url: String::new(),
            max_connections: 8,
            secrets_key: String::new(),
        }
    }
}

/// The key never reaches a log line through `{:?}` of the settings.
impl std::fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.secrets_key.is_empty() { "" } else { REDACTED };
        f.debug_struct("StorageSettings")
            .field("data_dir", &self.data_dir)
            .field("database_url", &without_password(&self.database_url))
            .field("max_connections", &self.max_connections)
            .field("secrets_key", &key)
            .finish()
    }
}

/// The embedded default's database file, in `storage.data_dir`.
pub const SQLITE_FILE: &str = "herald.db";

impl StorageSettings {
    /// The key target secrets are sealed with: `secrets_key`, or on the embedded default the
    /// key file `herald serve` generated. `None`: no secrets can be stored or read.
    pub fn open_secrets_key(&self) -> anyhow::Result<Option<crate::secrets::SecretsKey>> {
        let embedded = self.database_url.is_empty().then_some(self.data_dir.as_path());
        crate::secrets::configured_key(&self.secrets_key, embedded)
    }

    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.data_dir.join(SQLITE_FILE).display())
        } else {
            self.database_url.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentSettings {
    /// Regular expression every 索引号 must match; local practice varies, so it is configurable.
    pub index_no_pattern: String,
    /// The organisation code (机构代码) before the 索引号 of items Herald numbers itself: CAP
    /// alerts, numbered `<code>/<year>-9nnnnn`.
    pub organisation_code: String,
    /// Largest accepted body (and redacted body), in bytes of UTF-8.
    pub max_body_bytes: usize,
    pub max_attachment_bytes: usize,
    pub attachment_types: Vec<String>,
    /// Administrative-division tree; empty selects the built-in demo county.
    pub areas_file: String,
    /// Catalog entries (standard directory domains, 条例 Art. 20/21 categories); empty selects the built-in list.
    pub catalog_file: String,
    /// Public holidays and make-up workdays; empty selects the built-in calendar.
    pub calendar_file: String,
    /// 发文机关名录 seeding the organ list on start; empty selects the built-in demo county's.
    pub organs_file: String,
    /// 主题分类 vocabulary; empty selects the built-in national one.
    pub topics_file: String,
}

impl ContentSettings {
    /// Largest JSON request body: room for a body and a redacted body at their limit, each
    /// possibly escaped, and the rest of an item.
    pub fn max_json_bytes(&self) -> usize {
        self.max_body_bytes.saturating_mul(3).saturating_add(64 * 1024)
    }
}

impl Default for ContentSettings {
    fn default() -> Self {
        Self {
            index_no_pattern: r"^([0-9A-Z]{9}|[0-9A-HJ-NPQRTUWXY]{18})/\d{4}-\d{5,6}$".into(),
            organisation_code: "000014349".into(),
            max_body_bytes: 1024 * 1024,
            max_attachment_bytes: 20 * 1024 * 1024,
            attachment_types: [
                "application/pdf",
                "application/ofd",
                "application/msword",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.ms-excel",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "image/jpeg",
                "image/png",
                "audio/mpeg",
                "audio/wav",
                "audio/aac",
                "text/plain",
            ]
            .map(String::from)
            .to_vec(),
            areas_file: String::new(),
            catalog_file: String::new(),
            calendar_file: String::new(),
            organs_file: String::new(),
            topics_file: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub session_hours: u32,
    /// Failed logins for one account from one client address before each further attempt
    /// must wait, 1 s after the first and doubling up to `login_max_delay_minutes`.
    pub login_max_failures: u32,
    /// Failed logins for one account from all unknown client addresses together before those
    /// addresses must wait likewise. Addresses the account signed in from before are exempt,
    /// so nobody can lock an official out from their own office.
    pub login_account_max_failures: u32,
    /// Failures older than this, with none since, are forgotten.
    pub login_window_minutes: u32,
    pub login_max_delay_minutes: u32,
    /// How long a client address stays known after the account's last sign-in from it.
    pub known_client_days: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            session_hours: 12,
            login_max_failures: 5,
            login_account_max_failures: 20,
            login_window_minutes: 15,
            login_max_delay_minutes: 15,
            known_client_days: 90,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowSettings {
    /// A policy interpretation (解读) is due this many working days after its policy is published.
    pub interpretation_working_days: u32,
    /// Interpretations due within this many working days are listed as due soon.
    pub due_soon_working_days: u32,
}

impl Default for WorkflowSettings {
    fn default() -> Self {
        Self {
            interpretation_working_days: 3,
            due_soon_working_days: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// How long a worker owns a claimed delivery; after that another worker may take it over.
    pub lease_seconds: u32,
    /// Deliveries one worker claims at a time.
    pub batch_size: u32,
    /// Pause between polls when nothing is due. This process's own publishes, withdrawals,
    /// retries and stored receipts wake its loops at once (`store::due`); the poll finds what
    /// other instances wrote and what comes due by the clock.
    pub poll_interval_ms: u64,
    /// Attempts before a transiently failing delivery is marked failed.
    pub max_attempts: u32,
    /// First retry delay; each further retry doubles it, up to the cap, with jitter.
    pub backoff_base_seconds: u32,
    pub backoff_cap_seconds: u32,
    /// Sends in flight at once per channel, per hub instance.
    pub channel_in_flight: u32,
    /// Sends in flight at once per target, per hub instance.
    pub target_in_flight: u32,
    /// Longest one adapter call may take. Past it the outcome is unknown (the request may
    /// have taken effect): the delivery ends `unconfirmed`, never resent on its own.
    pub attempt_deadline_seconds: u32,
    /// Claim loops per channel, per hub instance: while one records its batch, another claims
    /// and sends the next, so on PostgreSQL two halves of a device fan-out use two cores.
    pub claimers: u32,
    /// Receipt-applying loops per hub instance, each over its own share of the targets, so
    /// one device's reports are still applied in order by one loop. Unset: two on PostgreSQL,
    /// whose second core then applies beside the first; one on SQLite, which has one writer
    /// and gains nothing from a second (there it is always one). At most 8: each holds a
    /// database connection while it applies.
    pub receipt_appliers: Option<u32>,
    /// Per-channel batch size, in-flight bound, deadline and claim loops, over the values
    /// above: devices take thousands at once, a rate-limited API a few.
    pub channels: BTreeMap<ChannelKind, ChannelLimits>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            lease_seconds: 120,
            batch_size: 64,
            poll_interval_ms: 500,
            max_attempts: 8,
            backoff_base_seconds: 30,
            backoff_cap_seconds: 3600,
            channel_in_flight: 16,
            target_in_flight: 2,
            attempt_deadline_seconds: 60,
            claimers: 1,
            receipt_appliers: None,
            channels: default_channel_limits(),
        }
    }
}

/// What each channel can take, absent other settings: a device group hears one command, so
/// devices take a whole county's worth at once and a publish either leaves the broker within
/// seconds or not at all; WeChat allows a handful of calls at a time per account and answers
/// slowly; the media center sits in between.
fn default_channel_limits() -> BTreeMap<ChannelKind, ChannelLimits> {
    let limits = |batch_size, in_flight, attempt_deadline_seconds, claimers| ChannelLimits {
        batch_size: Some(batch_size),
        in_flight: Some(in_flight),
        attempt_deadline_seconds: Some(attempt_deadline_seconds),
        claimers: Some(claimers),
    };
    BTreeMap::from([
        // The built-in portal writes to the hub's own database: quick, or something is wrong.
        (ChannelKind::Portal, limits(64, 16, 10, 1)),
        // A county's devices in two halves, claimed and recorded side by side (measured with
        // `herald bench deliver`: 10,000 drained in 0.35 s instead of 0.44 s on PostgreSQL).
        (ChannelKind::Loudspeaker, limits(5_000, 10_000, 10, 2)),
        (ChannelKind::NoticeBoard, limits(5_000, 10_000, 10, 2)),
        // An attempt is up to seven calls of 5 s (`wechat::api::CALL_TIMEOUT`).
        (ChannelKind::Wechat, limits(8, 4, 55, 1)),
        (ChannelKind::MediaCenter, limits(16, 8, 30, 1)),
    ])
}

/// One channel's own delivery limits; an absent value takes the general one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelLimits {
    pub batch_size: Option<u32>,
    pub in_flight: Option<u32>,
    pub attempt_deadline_seconds: Option<u32>,
    pub claimers: Option<u32>,
}

/// A channel's delivery limits with every value decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedLimits {
    pub batch_size: u32,
    pub in_flight: u32,
    pub attempt_deadline: std::time::Duration,
    /// Claim loops of the channel in one hub instance (at least one).
    pub claimers: u32,
}

/// What a lease keeps beyond the longest batch it may carry (`DeliverySettings::limits_for`):
/// time to record the outcomes, and for a handed batch to reach its loop (`store::handoff`).
pub const LEASE_MARGIN_SECONDS: u32 = 5;

impl DeliverySettings {
    /// How many loops apply receipts side by side on this database (at least one).
    pub fn receipt_appliers(&self, postgres: bool) -> u32 {
        if postgres {
            self.receipt_appliers.unwrap_or(2).clamp(1, 8)
        } else {
            1
        }
    }

    pub fn limits_for(&self, channel: ChannelKind) -> ResolvedLimits {
        let own = self.channels.get(&channel).cloned().unwrap_or_default();
        // The call must end before the lease does, or another worker would start a second one.
        let lease_margin = self.lease_seconds.saturating_sub(LEASE_MARGIN_SECONDS).max(1);
        let deadline = own
            .attempt_deadline_seconds
            .unwrap_or(self.attempt_deadline_seconds)
            .clamp(1, lease_margin);
        let in_flight = own.in_flight.unwrap_or(self.channel_in_flight).max(1);
        // A batch is sent in waves of `in_flight` calls, each wave up to the deadline, and the
        // whole batch must be recorded before its lease lapses (or another worker sends it
        // again): so a batch holds no more waves than fit in the lease.
        let waves = (lease_margin / deadline).max(1);
        let batch_size = own
            .batch_size
            .unwrap_or(self.batch_size)
            .clamp(1, in_flight.saturating_mul(waves));
        ResolvedLimits {
            batch_size,
            in_flight,
            attempt_deadline: std::time::Duration::from_secs(u64::from(deadline)),
            // More loops than sends in flight would only wait on the channel's permits.
            claimers: own.claimers.unwrap_or(self.claimers).clamp(1, in_flight),
        }
    }
}

/// Command-line values that win over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub mqtt_listen: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} cannot be read: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Environment variables that share the prefix but configure the test harness or the CLI.
fn is_setting_variable(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    !key.starts_with("test_") && key != "config"
}

impl Settings {
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            // Read it ourselves: figment treats a missing file as empty, and a typo in the path
            // must not quietly run on defaults.
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
                path: path.to_path_buf(),
                source,
            })?;
            figment = figment.merge(Toml::string(&text));
        }
        figment = figment.merge(
            Env::prefixed("HERALD_")
                .split("__")
                .filter(|key| is_setting_variable(key.as_str())),
        );
        if let Some(dir) = &overrides.data_dir {
            figment = figment.merge(Serialized::default("storage.data_dir", dir));
        }
        if let Some(listen) = &overrides.listen {
            figment = figment.merge(Serialized::default("server.listen", listen));
        }
        if let Some(listen) = &overrides.mqtt_listen {
            figment = figment.merge(Serialized::default("mqtt.listen", listen));
        }
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), ConfigError> {
        regex::Regex::new(&self.content.index_no_pattern)
            .map_err(|e| ConfigError::Invalid(format!("content.index_no_pattern: {e}")))?;
        if !self.storage.secrets_key.is_empty() {
            crate::secrets::SecretsKey::from_hex(&self.storage.secrets_key)
                .map_err(|e| ConfigError::Invalid(format!("storage.secrets_key: {e}")))?;
        }
        if self.storage.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "storage.max_connections must be at least 1".into(),
            ));
        }
        // A setting that passes but makes the hub unusable (a session that ends as it starts,
        // a login window of nothing) is refused here, not discovered in use.
        let auth = &self.auth;
        let ranges: [(&str, u64, u64, u64); 10] = [
            ("auth.session_hours", u64::from(auth.session_hours), 1, 24 * 30),
            // Longer, and a withdrawal would stay up on other instances for minutes.
            (
                "server.portal_recheck_ms",
                self.server.portal_recheck_ms,
                0,
                60_000,
            ),
            (
                "auth.login_max_failures",
                u64::from(auth.login_max_failures),
                1,
                1000,
            ),
            (
                "auth.login_account_max_failures",
                u64::from(auth.login_account_max_failures),
                1,
                100_000,
            ),
            (
                "auth.login_window_minutes",
                u64::from(auth.login_window_minutes),
                1,
                24 * 60,
            ),
            (
                "auth.login_max_delay_minutes",
                u64::from(auth.login_max_delay_minutes),
                1,
                24 * 60,
            ),
            (
                "auth.known_client_days",
                u64::from(auth.known_client_days),
                1,
                3650,
            ),
            (
                "content.max_body_bytes",
                self.content.max_body_bytes as u64,
                1024,
                64 << 20,
            ),
            (
                "delivery.poll_interval_ms",
                self.delivery.poll_interval_ms,
                10,
                60_000,
            ),
            (
                "workflow.due_soon_working_days",
                u64::from(self.workflow.due_soon_working_days),
                0,
                60,
            ),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "{key} is {value}; it must be between {min} and {max}"
                )));
            }
        }
        if !self.server.public_url.trim().is_empty() {
            let unbound = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            self.server.public_base(unbound).map_err(ConfigError::Invalid)?;
        }
        if !self.server.listen.is_empty() && self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "server.listen `{}` must be HOST:PORT with an IP address, e.g. 127.0.0.1:8080",
                self.server.listen
            )));
        }
        let delivery = &self.delivery;
        let positive = [
            ("delivery.lease_seconds", delivery.lease_seconds),
            ("delivery.batch_size", delivery.batch_size),
            ("delivery.max_attempts", delivery.max_attempts),
            ("delivery.channel_in_flight", delivery.channel_in_flight),
            ("delivery.target_in_flight", delivery.target_in_flight),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!("{key} must be at least 1")));
        }
        if delivery.backoff_cap_seconds < delivery.backoff_base_seconds {
            return Err(ConfigError::Invalid(
                "delivery.backoff_cap_seconds must not be below backoff_base_seconds".into(),
            ));
        }
        if self.workflow.interpretation_working_days == 0 {
            return Err(ConfigError::Invalid(
                "workflow.interpretation_working_days must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_holds_no_more_waves_of_calls_than_fit_in_its_lease() {
        let mut delivery = DeliverySettings::default();
        // 4 calls at a time, 60 s each, a 120 s lease: one wave fits, so 4 a batch.
        delivery.channels.insert(
            ChannelKind::Wechat,
            ChannelLimits {
                batch_size: Some(8),
                in_flight: Some(4),
                attempt_deadline_seconds: Some(60),
                claimers: None,
            },
        );
        let limits = delivery.limits_for(ChannelKind::Wechat);
        assert_eq!((limits.batch_size, limits.in_flight), (4, 4));
        // The defaults already fit: two 55 s waves of 4 hold the 8 asked for.
        let defaults = DeliverySettings::default();
        assert_eq!(defaults.limits_for(ChannelKind::Wechat).batch_size, 8);
        let speakers = defaults.limits_for(ChannelKind::Loudspeaker);
        assert_eq!((speakers.batch_size, speakers.claimers), (5_000, 2));
        assert_eq!(defaults.limits_for(ChannelKind::Wechat).claimers, 1);
        // Receipts: two applying loops on PostgreSQL unless set; SQLite's one writer, one.
        assert_eq!(
            (defaults.receipt_appliers(true), defaults.receipt_appliers(false)),
            (2, 1)
        );
        let three = DeliverySettings {
            receipt_appliers: Some(3),
            ..DeliverySettings::default()
        };
        assert_eq!(
            (three.receipt_appliers(true), three.receipt_appliers(false)),
            (3, 1)
        );
        for &channel in ChannelKind::ALL {
            let limits = defaults.limits_for(channel);
            let waves = limits.batch_size.div_ceil(limits.in_flight);
            let worst = u64::from(waves) * limits.attempt_deadline.as_secs();
            assert!(
                worst < u64::from(defaults.lease_seconds),
                "{channel:?}: {worst} s"
            );
        }
    }

    #[test]
    fn a_channels_limits_override_the_general_ones_and_its_deadline_ends_before_the_lease() {
        let mut delivery = DeliverySettings::default();
        delivery.channels.insert(
            ChannelKind::Loudspeaker,
            ChannelLimits {
                batch_size: Some(2000),
                in_flight: None,
                attempt_deadline_seconds: Some(5),
                claimers: Some(64),
            },
        );
        delivery.channels.insert(
            ChannelKind::Wechat,
            ChannelLimits {
                attempt_deadline_seconds: Some(10_000),
                ..ChannelLimits::default()
            },
        );
        let speakers = delivery.limits_for(ChannelKind::Loudspeaker);
        assert_eq!(
            (
                speakers.batch_size,
                speakers.in_flight,
                speakers.attempt_deadline.as_secs()
            ),
            // The general 16 in flight, and 23 five-second waves of them fit in the lease.
            (368, 16, 5)
        );
        // No more claim loops than sends in flight.
        assert_eq!(speakers.claimers, 16);
        let portal = delivery.limits_for(ChannelKind::Portal);
        assert_eq!((portal.batch_size, portal.attempt_deadline.as_secs()), (64, 10));
        // Without its own limits a channel takes the general ones, the batch cut to what fits
        // in the lease: one 60 s wave of 16.
        delivery.channels.remove(&ChannelKind::Portal);
        let general = delivery.limits_for(ChannelKind::Portal);
        assert_eq!(
            (
                general.batch_size,
                general.in_flight,
                general.attempt_deadline.as_secs()
            ),
            (16, 16, 60)
        );
        assert_eq!(
            delivery
                .limits_for(ChannelKind::Wechat)
                .attempt_deadline
                .as_secs(),
            115,
            "capped below the 120 s lease"
        );
        let toml =
            "[delivery.channels.loudspeaker]\nbatch_size = 2000\n[delivery.channels.fax]\nbatch_size = 1\n";
        let parsed: Result<Settings, _> = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(toml))
            .extract();
        assert!(
            parsed.is_err(),
            "an unknown channel name is a configuration error"
        );
    }

    #[test]
    fn the_public_url_is_a_plain_http_or_https_base() {
        let bound: std::net::SocketAddr = ([127, 0, 0, 1], 8080).into();
        let with = |url: &str| {
            ServerSettings {
                public_url: url.into(),
                ..ServerSettings::default()
            }
            .public_base(bound)
        };
        assert_eq!(with(""), Ok("http://127.0.0.1:8080".into()));
        assert_eq!(
            with("https://www.eshan.gov.cn/"),
            Ok("https://www.eshan.gov.cn".into())
        );
        assert_eq!(with("https://gov.cn/herald"), Ok("https://gov.cn/herald".into()));
        for bad in [
            "www.eshan.gov.cn",
            "ftp://x",
            "https://",
            "https://a.cn/?q=1",
            "https://a.cn/#x",
            "https://a.cn\"><script>",
            "https://a b.cn",
        ] {
            assert!(with(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_example_file_states_every_default() {
        let example: toml::Value =
            toml::from_str(include_str!("../herald.example.toml")).expect("herald.example.toml is TOML");
        let defaults = toml::Value::try_from(Settings::default()).expect("defaults serialise");
        assert_eq!(
            example, defaults,
            "herald.example.toml drifted from Settings::default()"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, "[server]\nlisen = \"0.0.0.0:1\"\n").expect("write");
        let error = Settings::load(Some(&path), &Overrides::default()).expect_err("typo must fail");
        assert!(error.to_string().contains("lisen"), "{error}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("herald.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:9\"\n[storage]\ndata_dir = \"from-file\"\n",
        )
        .expect("write");
        let from_file = Settings::load(Some(&path), &Overrides::default()).expect("loads");
        assert_eq!(from_file.server.listen, "127.0.0.1:9");
        let overrides = Overrides {
            data_dir: Some("from-flag".into()),
            listen: Some("127.0.0.1:10".into()),
            mqtt_listen: Some("127.0.0.1:11".into()),
        };
        let settings = Settings::load(Some(&path), &overrides).expect("loads");
        assert_eq!(settings.server.listen, "127.0.0.1:10");
        assert_eq!(settings.storage.data_dir, PathBuf::from("from-flag"));
        assert_eq!(settings.mqtt.listen, "127.0.0.1:11");
    }

    #[test]
    fn a_missing_file_is_an_error_not_the_defaults() {
        let error = Settings::load(Some(Path::new("/nonexistent/herald.toml")), &Overrides::default())
            .expect_err("missing file");
        assert!(error.to_string().contains("/nonexistent/herald.toml"));
    }
}
