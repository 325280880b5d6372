use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::{Backend, TEST_METRICS_TOKEN, TestApp, spawn_app};
use crate::on_both_databases;

fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            assert!(
                operation["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no response"
            );
            assert!(
                operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has no summary"
            );
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    operations
}

#[test]
fn the_openapi_document_lists_exactly_the_routes_the_server_registers() {
    let doc = herald::http::openapi_document();
    std::fs::write(
        "/tmp/herald-openapi.json",
        serde_json::to_string_pretty(&doc).unwrap(),
    )
    .unwrap();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let registered: BTreeSet<_> = herald::http::api_routes()
        .into_iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    let documented = documented_operations(&doc);
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document: {undocumented:?}"
    );
    assert!(
        phantom.is_empty(),
        "the OpenAPI document lists routes that do not exist: {phantom:?}"
    );
    // Every $ref points at a schema that exists.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().expect("name");
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
}

on_both_databases! {
    async fn health_metrics_and_the_openapi_document_are_served(app: TestApp) {
        let health = app.client.get(format!("{}/healthz", app.address)).send().await.expect("healthz");
        assert_eq!(health.status(), 200);
        let metrics = app.client.get(format!("{}/metrics", app.address)).bearer_auth(TEST_METRICS_TOKEN).send().await.expect("metrics").text().await.expect("text");
        assert!(metrics.contains("herald_items{state=\"draft\"} 0"), "{metrics}");
        assert!(metrics.contains("herald_http_responses_total{class=\"2xx\"}"));
        assert!(metrics.contains("herald_database_up 1"));
        // A delivery shows in the delivery metrics of this hub (each hub has its own recorder).
        assert!(!metrics.contains("herald_deliveries_total{"), "{metrics}");
        app.publish_new(&crate::helpers::item_body("530426"), &serde_json::json!({})).await;
        assert_eq!(app.deliver_due().await, 1);
        let metrics = app.client.get(format!("{}/metrics", app.address)).bearer_auth(TEST_METRICS_TOKEN).send().await.expect("metrics").text().await.expect("text");
        assert!(metrics.contains("herald_deliveries_total{channel=\"portal\",outcome=\"delivered\"} 1"), "{metrics}");
        assert!(metrics.contains("# TYPE herald_adapter_call_seconds histogram"), "{metrics}");
        assert!(metrics.contains("herald_adapter_call_seconds_count{channel=\"portal\"} 1"), "{metrics}");
        assert!(metrics.contains("herald_adapter_call_seconds_bucket{channel=\"portal\",le=\"+Inf\"} 1"), "{metrics}");
        assert!(metrics.contains("herald_items{state=\"published\"} 1"), "{metrics}");
        let doc: Value = app.client.get(format!("{}/api/openapi.json", app.address)).send().await.expect("doc").json().await.expect("json");
        // Every documented operation reaches a handler (not the fallback for unknown paths).
        for (method, path) in documented_operations(&doc) {
            let url = format!("{}{}", app.address, path.replace("{id}", "x").replace("{version}", "1").replace("{sha256}", "x"));
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let response = app.client.request(method.clone(), &url).bearer_auth(&app.tokens["admin"]).send().await.expect("sent");
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert!(!body.contains("no_route") && status != 405, "{method} {path} is not routed: {status} {body}");
        }
    }
}

#[tokio::test]
async fn the_embedded_sqlite_store_runs_in_wal_mode_with_foreign_keys_on() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app(Backend::Sqlite).await;
    let db = &app.hub.db;
    let pragma = |name: &str| Statement::from_string(db.get_database_backend(), format!("PRAGMA {name}"));
    let journal = db
        .query_one_raw(pragma("journal_mode"))
        .await
        .expect("pragma")
        .expect("row");
    assert_eq!(journal.try_get_by_index::<String>(0).expect("text"), "wal");
    let foreign_keys = db
        .query_one_raw(pragma("foreign_keys"))
        .await
        .expect("pragma")
        .expect("row");
    assert_eq!(foreign_keys.try_get_by_index::<i32>(0).expect("int"), 1);
}
