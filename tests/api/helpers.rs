//! `spawn_app()`: a hub on a fresh database (SQLite, or PostgreSQL when
//! HERALD_TEST_DATABASE_URL is set), its HTTP server on port 0, and one API token per role.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use chrono::{DateTime, TimeZone, Utc};
use herald::{
    accounts::{self, NewUser},
    clock::Clock,
    config::Settings,
    domain::user::Role,
    http::Application,
    hub::Hub,
    startup::open_hub,
};
use herald_channels::Channel;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub address: String,
    pub hub: Arc<Hub>,
    pub client: reqwest::Client,
    pub tokens: HashMap<&'static str, String>,
    /// A configuration file naming this app's database, for driving the CLI against it.
    pub config_path: PathBuf,
    pub _dir: tempfile::TempDir,
}

/// The test users: name, role, area.
pub const USERS: &[(&str, Role, &str)] = &[
    ("admin", Role::Admin, "530426"),
    ("publisher", Role::Publisher, "530426"),
    ("reviewer", Role::Reviewer, "530426"),
    ("township_publisher", Role::Publisher, "530426101"),
    ("village_a", Role::VillageOperator, "530426101001"),
    ("village_b", Role::VillageOperator, "530426101002"),
];

pub const VILLAGE_A: &str = "530426101001";
pub const VILLAGE_B: &str = "530426101002";

/// The test calendar: National Day 2026 off from 1 to 7 October (3–4 are a weekend anyway),
/// Saturday 10 October worked.
pub const TEST_CALENDAR: &str = "holidays = [\"2026-10-01\", \"2026-10-02\", \"2026-10-05\", \"2026-10-06\", \"2026-10-07\"]\nmakeup_workdays = [\"2026-10-10\"]\n";

/// Body size limit in tests, small enough to exceed cheaply.
pub const TEST_MAX_BODY_BYTES: usize = 8 * 1024;

/// 10:00 Beijing time on Wednesday 30 September 2026, the eve of the National Day holiday.
/// A port that was free a moment ago, for a server that must know its port before it binds
/// (a broker's configuration, a hub whose public URL names it). Taken below the system's
/// ephemeral range (32768 and up here), so no test binding port 0 meanwhile is handed it.
pub fn free_port() -> u16 {
    loop {
        let candidate = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            return candidate;
        }
    }
}

pub fn test_start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 30, 2, 0, 0)
        .single()
        .expect("valid time")
}

pub async fn fresh_postgres_url(base: &str) -> String {
    let db = Database::connect(base)
        .await
        .expect("PostgreSQL from HERALD_TEST_DATABASE_URL answers");
    let name = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
    db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    let (prefix, _) = base
        .split('?')
        .next()
        .unwrap_or(base)
        .rsplit_once('/')
        .expect("URL has a database name");
    format!("{prefix}/{name}")
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Vec::new()).await
}

/// Opens another hub instance on `app`'s database, as a second `herald serve` would.
pub async fn second_instance(app: &TestApp, channels: Vec<Arc<dyn Channel>>) -> Arc<Hub> {
    let mut hub = open_hub(app.hub.settings.clone(), app.hub.clock.clone())
        .await
        .expect("second hub opens");
    for channel in channels {
        hub.channels.register(channel);
    }
    Arc::new(hub)
}

/// Like `spawn_app`, with extra channel adapters registered (replacing built-in ones of the same kind).
pub async fn spawn_app_with(backend: Backend, channels: Vec<Arc<dyn Channel>>) -> TestApp {
    spawn_app_configured(backend, channels, |_| {}).await
}

/// The key target secrets are sealed with in tests (`storage.secrets_key`).
pub const TEST_SECRETS_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The bearer token `/metrics` takes in tests.
pub const TEST_METRICS_TOKEN: &str = "test-metrics-token";

/// Like `spawn_app_with`, with the test settings changed by `configure` before the hub opens.
pub async fn spawn_app_configured(
    backend: Backend,
    channels: Vec<Arc<dyn Channel>>,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let calendar_path = dir.path().join("calendar.toml");
    std::fs::write(&calendar_path, TEST_CALENDAR).expect("write calendar");

    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.storage.data_dir = dir.path().join("data");
    settings.content.max_body_bytes = TEST_MAX_BODY_BYTES;
    settings.content.calendar_file = calendar_path.display().to_string();
    settings.server.metrics_token = TEST_METRICS_TOKEN.into();
    // Tests change the store through the hub directly, as another instance would, and read
    // the portal at once: it asks the store before every page.
    settings.server.portal_recheck_ms = 0;
    settings.storage.secrets_key = TEST_SECRETS_KEY.into();
    configure(&mut settings);
    match (backend, std::env::var("HERALD_TEST_DATABASE_URL")) {
        (Backend::Postgres, Ok(base)) => settings.storage.database_url = fresh_postgres_url(&base).await,
        (Backend::Postgres, Err(_)) => {
            eprintln!("HERALD_TEST_DATABASE_URL is not set: this PostgreSQL test runs on SQLite");
        }
        (Backend::Sqlite, _) => {}
    }
    let config_path = dir.path().join("herald.toml");
    std::fs::write(
        &config_path,
        toml::to_string(&settings).expect("settings serialise"),
    )
    .expect("write config");

    let mut hub = open_hub(settings, Clock::manual(test_start_time()))
        .await
        .expect("hub opens");
    for channel in channels {
        hub.channels.register(channel);
    }
    let hub = Arc::new(hub);
    let mut tokens = HashMap::new();
    for (name, role, area) in USERS {
        let new = NewUser {
            username: (*name).into(),
            display_name: String::new(),
            role: *role,
            area_code: (*area).into(),
            password: Some(format!("{name}-password-1")),
        };
        let (user, _) = accounts::create_user(&hub, "test", None, new)
            .await
            .expect("create user");
        let (_, secret) = accounts::create_token(&hub, "test", &user.id, "tests")
            .await
            .expect("create token");
        tokens.insert(*name, secret);
    }
    let application = Application::build(hub.clone()).expect("app builds");
    let address = format!("http://{}", application.local_addr());
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        hub,
        client: reqwest::Client::new(),
        tokens,
        config_path,
        _dir: dir,
    }
}

static NEXT_INDEX_NO: AtomicU32 = AtomicU32::new(1);

/// A valid item in `area` with a fresh 索引号.
/// `text` as a query-string value.
pub fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub fn item_body(area: &str) -> Value {
    let n = NEXT_INDEX_NO.fetch_add(1, Ordering::Relaxed);
    json!({
        "title": "关于做好2026年秋冬季森林防火工作的通知",
        "body": "<p>各乡镇人民政府、县直有关部门：为切实做好秋冬季森林草原防灭火工作，现将有关事项通知如下。</p>",
        "summary": "部署秋冬季森林防火工作",
        "disclosure": "public",
        "index_no": format!("000014349/2026-{n:05}"),
        "issuers": ["峨山彝族自治县人民政府办公室"],
        // Each its own: the same 发文字号 twice for one organ is refused unless confirmed.
        "doc_no": format!("峨政办发[2026]{n}号"),
        "written_date": "2026-09-28",
        "topic": ["综合政务", "应急管理"],
        "validity": "current",
        "genre": "notice",
        "keywords": ["森林防火"],
        "catalog": "art20-12",
        "area_code": area,
        "tags": ["防火"],
    })
}

/// A CAP 1.2 message from the county weather office, sent an hour before it expires.
pub fn cap_message(
    identifier: &str,
    msg_type: &str,
    references: Option<&str>,
    area: &str,
    expires: chrono::DateTime<chrono::Utc>,
) -> String {
    let sent = (expires - chrono::Duration::hours(1)).to_rfc3339();
    let references = references
        .map(|r| format!("<references>qx@eshan.gov.cn,{r},2026-12-06T09:00:00+08:00</references>"))
        .unwrap_or_default();
    let info = match msg_type {
        "Cancel" => String::new(),
        _ => format!(
            "<info><category>Met</category><event>暴雨</event><urgency>Immediate</urgency>\
             <severity>Extreme</severity><certainty>Observed</certainty>\
             <expires>{}</expires><senderName>峨山县气象台</senderName>\
             <headline>峨山县气象台发布暴雨{}预警信号</headline>\
             <description>预计未来3小时内将出现强降雨，请注意防范山洪和地质灾害。</description>\
             <area><areaDesc>甸中镇</areaDesc><geocode><valueName>GB/T 2260</valueName><value>{area}</value></geocode></area></info>",
            expires.to_rfc3339(),
            if msg_type == "Update" { "红色" } else { "橙色" },
        ),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\
         <identifier>{identifier}</identifier><sender>qx@eshan.gov.cn</sender>\
         <sent>{sent}</sent><status>Actual</status><msgType>{msg_type}</msgType>\
         <scope>Public</scope>{references}{info}</alert>"
    )
}

pub struct Reply {
    pub status: u16,
    pub json: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn text(&self) -> String {
        match &self.json {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        }
    }

    pub fn field(&self) -> Option<&str> {
        self.json["error"]["field"].as_str()
    }

    /// The media type of the answer, without parameters (`text/csv`, `application/json`…).
    pub fn content_type(&self) -> Option<String> {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase())
    }
}

impl TestApp {
    /// The publish delivery of `item` whose `field` (`channel`, `target_id`) is `value`, as an
    /// administrator lists it.
    pub async fn publish_delivery(&self, item: &str, field: &str, value: &str) -> Value {
        self.delivery_of_kind(item, "publish", field, value).await
    }

    /// Polls the delivery of `kind` of `item` whose `field` is `value` until `done` holds of
    /// it or `limit` has passed; returns it as last seen.
    pub async fn delivery_when(
        &self,
        item: &str,
        (kind, field, value): (&str, &str, &str),
        limit: std::time::Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = std::time::Instant::now();
        loop {
            let delivery = self.delivery_of_kind(item, kind, field, value).await;
            if done(&delivery) || start.elapsed() > limit {
                return delivery;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// As `publish_delivery`, for a delivery of `kind` (`publish`, `withdraw`).
    pub async fn delivery_of_kind(&self, item: &str, kind: &str, field: &str, value: &str) -> Value {
        let reply = self
            .get("admin", &format!("/api/v1/items/{item}/deliveries"))
            .await;
        reply.json["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .find(|d| d[field] == value && d["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} delivery with {field} {value}: {}", reply.json))
    }

    /// A client whose requests come from another loopback address, as another computer's would.
    pub fn client_from(ip: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().expect("an IP address"))
            .build()
            .expect("client builds")
    }

    /// Sends any request and reads the answer; non-JSON bodies land in `json` as a string.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            json,
            headers,
        }
    }

    pub fn auth(&self, user: &str, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(
            self.tokens
                .get(user)
                .unwrap_or_else(|| panic!("no test user {user}")),
        )
    }

    pub async fn get(&self, user: &str, path: &str) -> Reply {
        self.send(self.auth(user, self.client.get(format!("{}{path}", self.address))))
            .await
    }

    pub async fn post(&self, user: &str, path: &str, body: &Value) -> Reply {
        self.send(self.auth(
            user,
            self.client.post(format!("{}{path}", self.address)).json(body),
        ))
        .await
    }

    /// A request of any method as `user` (None: no credential), with an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        user: Option<&str>,
        path: &str,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.address));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(user) = user {
            request = self.auth(user, request);
        }
        self.send(request).await
    }

    pub async fn put(&self, user: &str, path: &str, body: &Value) -> Reply {
        self.send(self.auth(
            user,
            self.client.put(format!("{}{path}", self.address)).json(body),
        ))
        .await
    }

    pub async fn publish(&self, user: &str, id: &str, key: &str) -> Reply {
        let request = self
            .client
            .post(format!("{}/api/v1/items/{id}/publish", self.address))
            .header("Idempotency-Key", key);
        self.send(self.auth(user, request)).await
    }

    pub async fn upload(&self, user: &str, content_type: &str, bytes: Vec<u8>) -> Reply {
        let request = self
            .client
            .post(format!("{}/api/v1/attachments", self.address))
            .header("content-type", content_type)
            .body(bytes);
        self.send(self.auth(user, request)).await
    }

    /// Creates an item and returns its id.
    pub async fn create_item(&self, user: &str, body: &Value) -> String {
        let reply = self.post(user, "/api/v1/items", body).await;
        assert_eq!(reply.status, 201, "create failed: {}", reply.json);
        reply.json["id"].as_str().expect("id").to_owned()
    }

    /// Submits (as `author`), confidentiality-checks and approves (as `reviewer`).
    pub async fn approve(&self, author: &str, reviewer: &str, id: &str) -> Reply {
        let submitted = self
            .post(author, &format!("/api/v1/items/{id}/submit"), &json!({}))
            .await;
        assert_eq!(submitted.status, 200, "submit failed: {}", submitted.json);
        let version = submitted.json["current_version"].clone();
        let checked = self
            .post(
                reviewer,
                &format!("/api/v1/items/{id}/confidentiality-check"),
                &json!({"version": version, "confirmed": true}),
            )
            .await;
        assert_eq!(
            checked.status, 200,
            "confidentiality check failed: {}",
            checked.json
        );
        self.post(
            reviewer,
            &format!("/api/v1/items/{id}/approve"),
            &json!({"version": version, "comment": "同意发布"}),
        )
        .await
    }

    /// Corrects published `item` (更正) to `body`, which carries its `correction_note`: edited
    /// by the publisher, checked and approved by the reviewer, which sends it out.
    pub async fn correct(&self, item: &str, body: &Value) -> Reply {
        let edited = self
            .put("publisher", &format!("/api/v1/items/{item}"), body)
            .await;
        assert_eq!(edited.status, 200, "{}", edited.json);
        self.approve("publisher", "reviewer", item).await
    }

    /// An unauthenticated GET, as a citizen's browser makes it.
    pub async fn public_get(&self, path: &str) -> Reply {
        self.send(self.client.get(format!("{}{path}", self.address)))
            .await
    }

    /// Applies every stored receipt (the inbox worker's apply step) until none is left.
    pub async fn apply_receipts(&self) {
        while herald::delivery::inbox::try_apply_receipts(&self.hub, herald::delivery::inbox::APPLY_BATCH)
            .await
            .expect("apply")
            > 0
        {}
    }

    /// Runs the delivery worker until nothing is due at the current clock.
    pub async fn deliver_due(&self) -> usize {
        let in_flight = herald::delivery::worker::InFlight::default();
        let mut total = 0;
        loop {
            let handled = herald::delivery::worker::try_execute_batch(&self.hub, &in_flight, "test-worker")
                .await
                .expect("worker step");
            // Checked after each batch's record, before a claim could drop what it left behind.
            self.assert_queue_agrees().await;
            if handled == 0 {
                return total;
            }
            total += handled;
        }
    }

    /// The delivery queue holds exactly the deliveries waiting to be sent or under way, and the
    /// confirmations exactly the `accepted` ones: one missing would never be sent (or asked
    /// about), one left over would be looked at for nothing.
    pub async fn assert_queue_agrees(&self) {
        let missing = self
            .count(
                "SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'retrying', 'sending') \
             AND id NOT IN (SELECT delivery_id FROM delivery_queue)",
            )
            .await;
        let left_over = self
            .count(
                "SELECT COUNT(*) FROM delivery_queue WHERE delivery_id NOT IN \
             (SELECT id FROM deliveries WHERE state IN ('pending', 'retrying', 'sending'))",
            )
            .await;
        assert_eq!(
            (missing, left_over),
            (0, 0),
            "deliveries missing from the queue, and queue rows left over"
        );
    }

    /// Posts a CAP message as `user`, with this `Content-Type`.
    pub async fn post_cap(&self, user: &str, content_type: &str, xml: String) -> Reply {
        let request = self
            .client
            .post(format!("{}/api/v1/alerts/cap", self.address))
            .header("content-type", content_type)
            .body(xml);
        self.send(self.auth(user, request)).await
    }

    /// The one number a `SELECT COUNT(*) …` answers.
    pub async fn count(&self, sql: &str) -> i64 {
        let statement = sea_orm::Statement::from_string(self.hub.db.get_database_backend(), sql.to_owned());
        let row = self
            .hub
            .db
            .query_one_raw(statement)
            .await
            .expect("count")
            .expect("a row");
        row.try_get_by_index::<i64>(0).expect("a count")
    }

    /// Creates, approves and publishes an item; returns its id.
    pub async fn publish_new(&self, body: &Value, publish: &Value) -> String {
        let id = self.create_item("publisher", body).await;
        let approved = self.approve("publisher", "reviewer", &id).await;
        assert_eq!(approved.status, 200, "{}", approved.json);
        let request = self
            .client
            .post(format!("{}/api/v1/items/{id}/publish", self.address))
            .header("Idempotency-Key", format!("publish-{id}"))
            .json(publish);
        let published = self.send(self.auth("publisher", request)).await;
        assert_eq!(published.status, 201, "{}", published.json);
        id
    }

    pub async fn add_target(&self, channel: &str, name: &str, area: &str, config: Value) -> String {
        let reply = self
            .post(
                "admin",
                "/api/v1/targets",
                &json!({"channel": channel, "name": name, "area_code": area, "config": config}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.json);
        reply.json["id"].as_str().expect("id").to_owned()
    }

    pub async fn audit_actions(&self, item_id: &str) -> Vec<String> {
        let reply = self.get("admin", "/api/v1/audit?limit=1000").await;
        reply
            .json
            .as_array()
            .expect("audit array")
            .iter()
            .filter(|e| e["target_id"] == item_id)
            .map(|e| e["action"].as_str().expect("action").to_owned())
            .collect()
    }
}

/// Runs each scenario (an `async` function, or closure, of the `Backend`) twice: on SQLite and
/// on PostgreSQL, as `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident => $scenario:expr;)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($scenario)($crate::helpers::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($scenario)($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

/// Defines each scenario twice: on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($(async fn $name:ident($app:ident: TestApp) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario($app: TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                scenario(spawn_app(Backend::Sqlite).await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                scenario(spawn_app(Backend::Postgres).await).await
            }
        }
    )*};
}
