//! The convergence media center adapter against a fake center: ninjs 2.2 and 3.1 that the
//! official schemas accept, signed pushes, signed status callbacks (received, published,
//! rejected with the reason), reconcile by asking the center, withdrawal by `canceled`, and
//! targets that could never work refused when they are registered.

use herald::delivery::inbox;
use herald_channels::media_center::{SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
use serde_json::{Value, json};

use crate::fake_media_center::FakeCenter;
use crate::helpers::{Backend, Reply, TestApp, item_body, spawn_app_configured};
use crate::on_both_backends;

pub(crate) const PUSH_KEY: &str = "push-key-峨山";
pub(crate) const CALLBACK_KEY: &str = "callback-key-峨山";

/// The GeoJSON schema ninjs refers to for `places[].geojson` is on the web, which tests never
/// reach; Herald never writes `geojson`, so an empty schema stands in for it.
struct Offline;

impl jsonschema::Retrieve for Offline {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        match uri.as_str() {
            "https://geojson.org/schema/GeoJSON.json" => Ok(json!({})),
            other => Err(format!("no network in tests: {other}").into()),
        }
    }
}

/// The official ninjs schema of `version` (vendored from ../shared/schemas, IPTC's CC BY 4.0).
fn ninjs_validator(version: &str) -> jsonschema::Validator {
    let path = format!(
        "{}/tests/fixtures/ninjs/ninjs-schema_{version}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema file")).expect("schema JSON");
    jsonschema::options()
        .with_retriever(Offline)
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles")
}

pub(crate) fn assert_valid_ninjs(document: &Value) {
    let version = document["standard"]["version"]
        .as_str()
        .expect("a standard version");
    let validator = ninjs_validator(version);
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "ninjs {version}: {errors:?}\n{document:#}");
}

async fn served_app(backend: Backend) -> TestApp {
    spawn_app_configured(backend, Vec::new(), |s| {
        s.server.public_url = "https://www.eshan.gov.cn".into()
    })
    .await
}

pub(crate) async fn add_center(app: &TestApp, center: &FakeCenter, name: &str, version: &str) -> String {
    let reply = app
        .post(
            "admin",
            "/api/v1/targets",
            &json!({
                "channel": "media_center", "name": name, "area_code": "530426",
                "config": {"endpoint": center.url, "ninjs_version": version},
                "secrets": {"signing_key": PUSH_KEY, "callback_key": CALLBACK_KEY},
            }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.json);
    reply.json["id"].as_str().expect("id").to_owned()
}

pub(crate) async fn callback(
    app: &TestApp,
    target: &str,
    events: Value,
    key: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Reply {
    let body = json!({"events": events}).to_string();
    let timestamp = at.timestamp().to_string();
    let request = app
        .client
        .post(format!("{}/callbacks/media_center/{target}", app.address))
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, &timestamp)
        .header(
            SIGNATURE_HEADER,
            signature(key.as_bytes(), &timestamp, body.as_bytes()),
        )
        .body(body);
    app.send(request).await
}

#[tokio::test]
async fn items_with_and_without_attachments_render_as_ninjs_the_official_schemas_accept() {
    let app = served_app(Backend::Sqlite).await;
    let pdf = app
        .upload(
            "publisher",
            "application/pdf",
            b"%PDF-1.7\n%attachment\n".to_vec(),
        )
        .await;
    let wav = app
        .upload(
            "publisher",
            "audio/wav",
            herald::domain::audio::tone_wav(500, 8000),
        )
        .await;
    let mut with_files = item_body("530426");
    with_files["emergency"] = json!(true);
    with_files["attachments"] = json!([
        {"sha256": pdf.json["sha256"], "filename": "附件1.pdf"},
        {"sha256": wav.json["sha256"], "filename": "广播稿.wav"},
    ]);
    for body in [item_body("530426"), with_files] {
        let id = app.create_item("publisher", &body).await;
        let preview = app
            .get("publisher", &format!("/api/v1/items/{id}/preview/media_center"))
            .await;
        assert_eq!(preview.status, 200, "{}", preview.json);
        let (v22, v31) = (
            &preview.json["payload"]["ninjs_2_2"],
            &preview.json["payload"]["ninjs_3_1"],
        );
        assert_valid_ninjs(v22);
        assert_valid_ninjs(v31);
        assert_eq!(
            (v22["uri"].clone(), v22["headlines"][0]["value"].clone()),
            (json!(format!("urn:herald:item:{id}")), body["title"].clone())
        );
        assert_eq!(v31["pubStatus"], "usable");
        assert!(
            v22["bodies"][0]["value"]
                .as_str()
                .is_some_and(|b| b.ends_with("<p>（此件公开发布）</p>")),
            "{v22}"
        );
        let index_no = v22["altids"]
            .as_array()
            .expect("altids")
            .iter()
            .find(|a| a["role"] == "gov:index-number")
            .map(|a| a["value"].clone());
        assert_eq!(index_no, Some(body["index_no"].clone()));
        if body.get("attachments").is_some() {
            assert_eq!(v22["urgency"], 1, "an emergency is the most urgent");
            let associations = v31["associations"].as_array().expect("associations");
            assert_eq!(associations.len(), 2);
            assert_eq!(
                (associations[0]["type"].clone(), associations[1]["type"].clone()),
                (json!("component"), json!("audio"))
            );
            assert_eq!(
                associations[0]["renditions"][0]["href"],
                format!(
                    "https://www.eshan.gov.cn/xxgk/attachments/{}",
                    pdf.json["sha256"].as_str().expect("sha")
                )
            );
            assert!(
                associations[0]["renditions"][0]["sizeInBytes"]
                    .as_u64()
                    .is_some_and(|n| n > 0)
            );
        } else {
            assert!(v22.get("associations").is_none());
        }
    }
}

/// Idle loops poll once an hour here: the push goes out because the publish woke the claim
/// loops, and the center's callback moves the delivery because storing it woke the appliers.
async fn a_callback_wakes_the_idle_appliers(backend: Backend) {
    let center = FakeCenter::start(PUSH_KEY).await;
    let app = spawn_app_configured(backend, Vec::new(), |s| {
        s.server.public_url = "https://www.eshan.gov.cn".into();
        s.delivery.poll_interval_ms = 3_600_000;
    })
    .await;
    let target = add_center(&app, &center, "县融媒体中心", "3.1").await;
    let workers = tokio::spawn(herald::delivery::worker::run_until_stopped(
        app.hub.clone(),
        "worker".into(),
    ));
    // Their first passes find nothing, and every loop goes to sleep.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let limit = std::time::Duration::from_secs(30);
    let item = app
        .publish_new(&item_body("530426"), &json!({"channels": ["media_center"]}))
        .await;
    let key = ("publish", "target_id", target.as_str());
    let accepted = app
        .delivery_when(&item, key, limit, |d| d["state"] == "accepted")
        .await;
    assert_eq!(accepted["state"], "accepted", "{accepted}");
    let external_id = accepted["external_id"].as_str().expect("the center's id");

    let now = app.hub.clock.now();
    let published = json!([{"id": "ev-1", "item": external_id, "status": "published", "url": "https://rmt.eshan.gov.cn/a/1.html", "at": now.to_rfc3339()}]);
    let reply = callback(&app, &target, published, CALLBACK_KEY, now).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let delivered = app
        .delivery_when(&item, key, limit, |d| d["state"] == "delivered")
        .await;
    assert_eq!(delivered["state"], "delivered", "{delivered}");
    workers.abort();
}

on_both_backends! {
    a_callback_wakes_the_idle_appliers => a_callback_wakes_the_idle_appliers;
}

on_both_backends! {
    a_media_center_takes_signed_pushes_and_reports_published_rejected_and_asked_back => |backend| async move {
        let center = FakeCenter::start(PUSH_KEY).await;
        let app = served_app(backend).await;
        let older = add_center(&app, &center, "县融媒体中心", "2.2").await;
        let newer = add_center(&app, &center, "市融媒体中心", "3.1").await;
        let silent = add_center(&app, &center, "邻县融媒体中心", "3.1").await;
        let item = app.publish_new(&item_body("530426"), &json!({"channels": ["media_center"]})).await;
        assert_eq!(app.deliver_due().await, 3);

        // Each center got the item once, signed, in the version it reads.
        let pushes = center.pushes();
        assert_eq!(pushes.len(), 3);
        assert_eq!(center.state.lock().expect("lock").bad_signatures, 0);
        let mut versions: Vec<&str> = pushes.iter().map(|(_, doc)| doc["standard"]["version"].as_str().expect("version")).collect();
        versions.sort();
        assert_eq!(versions, ["2.2", "3.1", "3.1"]);
        for (_, document) in &pushes { assert_valid_ninjs(document); }
        let external = |target: String| { let app = &app; let item = item.clone(); async move {
            let delivery = app.publish_delivery(&item, "target_id", &target).await;
            assert_eq!(delivery["state"], "accepted", "{delivery}");
            delivery["external_id"].as_str().expect("the center's id").to_owned()
        }};
        let (older_id, newer_id, silent_id) = (external(older.clone()).await, external(newer.clone()).await, external(silent.clone()).await);

        // Status callbacks: received then published; rejected with the editors' reason.
        let now = app.hub.clock.now();
        let published = json!([
            {"id": "ev-1", "item": older_id, "status": "received"},
            {"id": "ev-2", "item": older_id, "status": "published", "url": "https://rmt.eshan.gov.cn/a/1.html", "at": now.to_rfc3339()},
        ]);
        let reply = callback(&app, &older, published.clone(), CALLBACK_KEY, now).await;
        assert_eq!((reply.status, reply.json["received"].clone()), (200, json!(2)), "{}", reply.text());
        let reason = "标题与正文不符，请修改后重报";
        let rejected = callback(&app, &newer, json!([{"id": "ev-3", "item": newer_id, "status": "rejected", "reason": reason}]), CALLBACK_KEY, now).await;
        assert_eq!(rejected.status, 200, "{}", rejected.text());
        // Sent again (a center retries until it hears 200): the same receipts, stored once.
        assert_eq!(callback(&app, &older, published, CALLBACK_KEY, now).await.status, 200);
        app.apply_receipts().await;
        assert_eq!(app.publish_delivery(&item, "target_id", &older).await["state"], "delivered");
        let refused = app.publish_delivery(&item, "target_id", &newer).await;
        assert_eq!(refused["state"], "failed");
        assert!(refused["last_error"].as_str().is_some_and(|e| e.contains(reason)), "{refused}");
        let csv = app.get("admin", &format!("/api/v1/items/{item}/receipts.csv")).await.text();
        assert!(csv.contains(reason), "{csv}");
        assert_eq!(csv.lines().filter(|l| l.contains("rmt.eshan.gov.cn/a/1.html")).count(), 1, "{csv}");

        // Wrongly signed, stale or empty callbacks change nothing.
        let wrong = callback(&app, &silent, json!([{"id": "ev-4", "item": silent_id, "status": "published"}]), "not-the-key", now).await;
        assert_eq!((wrong.status, wrong.json["error"]["field"].clone()), (401, json!(SIGNATURE_HEADER)), "{}", wrong.text());
        let stale = callback(&app, &silent, json!([{"id": "ev-4", "item": silent_id, "status": "published"}]), CALLBACK_KEY, now - chrono::Duration::seconds(301)).await;
        assert_eq!((stale.status, stale.json["error"]["field"].clone()), (401, json!(TIMESTAMP_HEADER)), "{}", stale.text());
        let empty = callback(&app, &silent, json!([]), CALLBACK_KEY, now).await;
        assert_eq!((empty.status, empty.json["error"]["field"].clone()), (400, json!("events")), "{}", empty.text());
        app.apply_receipts().await;
        assert_eq!(app.publish_delivery(&item, "target_id", &silent).await["state"], "accepted");

        // No callback from the third center: after a day the hub asks it, once, and settles.
        center.set_status(&silent_id, json!({"status": "published", "url": "https://rmt.lin.gov.cn/x.html"}));
        app.hub.clock.set(now + chrono::Duration::hours(25));
        assert_eq!(inbox::try_reconcile(&app.hub, 100).await.expect("reconcile"), 1);
        app.apply_receipts().await;
        assert_eq!(app.publish_delivery(&item, "target_id", &silent).await["state"], "delivered");

        // Withdrawn: each center that has it is told `canceled`, in its own version.
        let withdrawn = app.post("publisher", &format!("/api/v1/items/{item}/withdraw"), &json!({"reason": "政策已废止"})).await;
        assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
        app.deliver_due().await;
        let cancellations: Vec<Value> = center.pushes().into_iter().skip(3).map(|(_, doc)| doc).collect();
        assert_eq!(cancellations.len(), 2, "{cancellations:?}");
        let mut seen_versions = Vec::new();
        for document in &cancellations {
            assert_valid_ninjs(document);
            assert_eq!(document["uri"], format!("urn:herald:item:{item}"));
            let version = document["standard"]["version"].as_str().expect("version");
            let (status, note) = if version == "3.1" { ("pubStatus", "edNote") } else { ("pubstatus", "ednote") };
            assert_eq!((document[status].clone(), document[note].clone()), (json!("canceled"), json!("政策已废止")), "{document}");
            seen_versions.push(version.to_owned());
        }
        seen_versions.sort();
        assert_eq!(seen_versions, ["2.2", "3.1"]);
    };
}

on_both_backends! {
    a_media_center_target_that_could_never_work_is_refused_naming_the_field => |backend| async move {
        let app = spawn_app_configured(backend, Vec::new(), |_| {}).await;
        let keys = json!({"signing_key": PUSH_KEY, "callback_key": CALLBACK_KEY});
        for (config, secrets, field) in [
            (json!({}), keys.clone(), "config.endpoint"),
            (json!({"endpoint": "ftp://rmt.example/in"}), keys.clone(), "config.endpoint"),
            (json!({"endpoint": "https://rmt.example/in", "ninjs_version": "1.6"}), keys.clone(), "config.ninjs_version"),
            (json!({"endpoint": "https://rmt.example/in"}), json!({"callback_key": CALLBACK_KEY}), "secrets.signing_key"),
            (json!({"endpoint": "https://rmt.example/in"}), json!({"signing_key": PUSH_KEY}), "secrets.callback_key"),
        ] {
            let reply = app.post("admin", "/api/v1/targets", &json!({"channel": "media_center", "name": "融媒体中心", "area_code": "530426", "config": config, "secrets": secrets})).await;
            assert_eq!((reply.status, reply.field()), (422, Some(field)), "{}", reply.json);
        }
        let listed = app.get("admin", "/api/v1/targets").await;
        assert!(listed.json.as_array().expect("targets").iter().all(|t| t["channel"] != "media_center"), "nothing was stored: {}", listed.json);
    };
}
