//! A target's secrets: sealed in their own table, shown nowhere (API answers, audit rows, log
//! lines, the database on its own), handed decrypted to the adapter alone.

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use herald_channels::ChannelKind;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::on_both_backends;
use crate::{
    helpers::{Backend, TestApp, item_body, spawn_app_configured, spawn_app_with},
    scripted::{Scripted, Step},
};

/// Every log line of this test binary, at every level, from the first call on.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        logs
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every text column of the tables a secret could end up in, as PostgreSQL holds them.
async fn postgres_text(app: &TestApp) -> String {
    let db = &app.hub.db;
    let mut all = String::new();
    for table in ["target_secrets", "targets", "audit_log"] {
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT row_to_json(t)::text AS row FROM {table} t"),
            ))
            .await
            .expect("select rows");
        assert!(!rows.is_empty(), "{table} has rows to look through");
        for row in rows {
            all.push_str(&row.try_get::<String>("", "row").expect("row text"));
            all.push('\n');
        }
    }
    all
}

async fn scenario(backend: Backend) {
    let logs = captured_logs();
    let value = format!("S3CR3T-{}", uuid::Uuid::new_v4().simple());
    let scripted = Scripted::new(ChannelKind::Wechat, &[], Step::Deliver);
    let app = spawn_app_with(backend, vec![scripted.clone()]).await;
    let postgres = !app.hub.settings.storage.database_url.is_empty();

    let created = app
        .post(
            "admin",
            "/api/v1/targets",
            &json!({
                "channel": "wechat",
                "name": "峨山发布",
                "area_code": "530426",
                "config": {"app_id": "wx-public-id"},
                "secrets": {"app_secret": value, "signing_key": format!("{value}-sign")},
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json);
    let target_id = created.json["id"].as_str().expect("id").to_owned();
    assert_eq!(created.json["secret_names"], json!(["app_secret", "signing_key"]));
    assert_eq!(
        created.json["config"],
        json!({"app_id": "wx-public-id"}),
        "secrets stay out of config"
    );

    // (d) The adapter, and only the adapter, is handed the decrypted value.
    let id = app.publish_new(&item_body("530426"), &json!({})).await;
    assert!(app.deliver_due().await >= 1);
    let seen = scripted.secrets_seen.lock().expect("lock").clone();
    let handed = seen
        .iter()
        .find(|(target, _)| *target == target_id)
        .map(|(_, secrets)| secrets.clone())
        .expect("the wechat adapter was called for the target");
    assert_eq!(handed.get("app_secret"), Some(&value));
    assert_eq!(handed.get("signing_key"), Some(&format!("{value}-sign")));

    // (a) No API answer shows it.
    let mut answers = Vec::new();
    for path in [
        "/api/v1/targets".to_owned(),
        format!("/api/v1/items/{id}/targets"),
        format!("/api/v1/items/{id}/preview/wechat"),
        format!("/api/v1/items/{id}/preview/portal"),
        format!("/api/v1/items/{id}/deliveries"),
        format!("/api/v1/items/{id}/receipts.csv"),
        format!("/api/v1/items/{id}"),
        "/api/v1/audit?limit=1000".to_owned(),
    ] {
        let reply = app.get("admin", &path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.json);
        answers.push((path, reply.text()));
    }
    let listed = &answers[0].1;
    assert!(
        listed.contains(&target_id) && listed.contains("app_secret"),
        "the listing names the secrets"
    );
    let audit = &answers.last().expect("audit").1;
    assert!(
        audit.contains("target.create") && audit.contains("signing_key"),
        "the audit row names them"
    );
    let deliveries = &answers[4].1;
    assert!(
        deliveries.contains(&target_id),
        "the delivery to the target is in the record"
    );
    for (path, text) in &answers {
        assert!(!text.contains("S3CR3T"), "{path} shows the secret: {text}");
    }

    // (b) No log line shows it (the subscriber records every level, from every thread).
    let logged = logs.lock().expect("lock").clone();
    assert!(!logged.is_empty(), "the log capture records something");
    assert!(!contains(&logged, &value), "a log line shows the secret");

    // (c) The database alone does not reveal it.
    if postgres {
        let text = postgres_text(&app).await;
        assert!(text.contains(&target_id), "the rows were read");
        assert!(!text.contains(&value), "the database shows the secret");
    } else {
        let data_dir = &app.hub.settings.storage.data_dir;
        let mut bytes = Vec::new();
        for file in ["herald.db", "herald.db-wal"] {
            if let Ok(content) = std::fs::read(data_dir.join(file)) {
                bytes.extend(content);
            }
        }
        assert!(contains(&bytes, &target_id), "the database files were read");
        assert!(!contains(&bytes, "S3CR3T"), "the database file shows the secret");
    }
}

async fn without_key(backend: Backend) {
    let app = spawn_app_configured(backend, Vec::new(), |settings| {
        settings.storage.secrets_key = String::new();
    })
    .await;
    assert!(app.hub.secrets_key.is_none());
    let refused = app
        .post(
            "admin",
            "/api/v1/targets",
            &json!({"channel": "portal", "name": "门户", "area_code": "530426", "secrets": {"app_secret": "S3CR3T-plain"}}),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.json);
    assert_eq!(refused.json["error"]["code"], "secrets_key_missing");
    assert_eq!(refused.field(), Some("secrets"));
    assert!(refused.text().contains("storage.secrets_key"), "{}", refused.json);
    assert!(!refused.text().contains("S3CR3T"));
    let listed = app.get("admin", "/api/v1/targets").await;
    assert!(
        !listed.text().contains("门户\""),
        "nothing was stored: {}",
        listed.json
    );
    // Without secrets a target is still registered.
    let plain = app
        .post(
            "admin",
            "/api/v1/targets",
            &json!({"channel": "portal", "name": "门户", "area_code": "530426"}),
        )
        .await;
    assert_eq!(plain.status, 201, "{}", plain.json);
    assert_eq!(plain.json["secret_names"], json!([]));
}

fn one(name: &str, value: &str) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert(name.to_owned(), json!(value));
    serde_json::Value::Object(map)
}

async fn bounds(backend: Backend) {
    let app = spawn_app_with(backend, Vec::new()).await;
    let target = |secrets: serde_json::Value| json!({"channel": "portal", "name": "门户", "area_code": "530426", "secrets": secrets});
    let too_many: serde_json::Map<String, serde_json::Value> =
        (0..17).map(|i| (format!("s{i}"), json!("v"))).collect();
    let cases = [
        (json!({"App-Secret": "v"}), "secrets.App-Secret"),
        (json!({"": "v"}), "secrets."),
        (one(&"a".repeat(65), "v"), &*format!("secrets.{}", "a".repeat(64))),
        (one("app_secret", &"x".repeat(4097)), "secrets.app_secret"),
        (json!({"app_secret": ""}), "secrets.app_secret"),
        (json!({"app_secret": " padded "}), "secrets.app_secret"),
        (json!(too_many), "secrets"),
    ];
    for (secrets, field) in cases {
        let reply = app
            .post("admin", "/api/v1/targets", &target(secrets.clone()))
            .await;
        assert_eq!(reply.status, 422, "{secrets}: {}", reply.json);
        assert_eq!(reply.field(), Some(field), "{}", reply.json);
    }
    let at_limit = app
        .post(
            "admin",
            "/api/v1/targets",
            &target(one(&"a".repeat(64), &"x".repeat(4096))),
        )
        .await;
    assert_eq!(at_limit.status, 201, "{}", at_limit.json);
}

on_both_backends! {
    a_targets_secret_is_shown_nowhere_and_reaches_only_its_adapter => scenario;
    a_secret_without_a_configured_key_is_refused_not_stored_in_plain => without_key;
    secret_names_count_and_values_are_bounded => bounds;
}
