use serde_json::json;

use crate::helpers::{Backend, TestApp, item_body, spawn_app};
use crate::on_both_databases;

on_both_databases! {
    async fn an_item_goes_from_draft_to_published_to_withdrawn(app: TestApp) {
        let mut body = item_body("530426");
        body["doc_no"] = json!("峨政办发[2026]12号");
        let id = app.create_item("publisher", &body).await;
        let created = app.get("publisher", &format!("/api/v1/items/{id}")).await;
        assert_eq!(created.json["state"], "draft");
        assert_eq!(created.json["content"]["doc_no"], "峨政办发〔2026〕12号", "doc_no normalised");

        let approved = app.approve("publisher", "reviewer", &id).await;
        assert_eq!(approved.status, 200, "{}", approved.json);
        assert_eq!(approved.json["state"], "approved");
        assert_eq!(approved.json["approved_version"], 1);
        assert_eq!(approved.json["approved_hash"], approved.json["content_hash"]);

        let published = app.publish("publisher", &id, "publish-1").await;
        assert_eq!(published.status, 201, "{}", published.json);
        assert_eq!(published.json["version"], 1);
        assert_eq!(published.json["content_hash"], approved.json["approved_hash"]);
        let item = app.get("publisher", &format!("/api/v1/items/{id}")).await;
        assert_eq!(item.json["state"], "published");
        assert_eq!(item.json["published_version"], 1);

        let withdrawn = app.post("publisher", &format!("/api/v1/items/{id}/withdraw"), &json!({"reason": "政策已废止"})).await;
        assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
        assert_eq!(withdrawn.json["state"], "withdrawn");
        let again = app.publish("publisher", &id, "publish-2").await;
        assert_eq!(again.status, 409, "a withdrawn item never goes out again: {}", again.json);

        assert_eq!(
            app.audit_actions(&id).await,
            ["item.create", "item.submit", "item.confidentiality_check", "item.approve", "item.publish", "item.withdraw"]
        );
    }

    async fn an_author_cannot_review_their_own_item(app: TestApp) {
        // An administrator may both write and review, but never both on one item.
        let id = app.create_item("admin", &item_body("530426")).await;
        let submitted = app.post("admin", &format!("/api/v1/items/{id}/submit"), &json!({})).await;
        assert_eq!(submitted.status, 200);
        let check = app.post("admin", &format!("/api/v1/items/{id}/confidentiality-check"), &json!({"version": 1, "confirmed": true})).await;
        assert_eq!(check.status, 403, "{}", check.json);
        let approve = app.post("admin", &format!("/api/v1/items/{id}/approve"), &json!({"version": 1})).await;
        assert_eq!(approve.status, 403, "{}", approve.json);
        let item = app.get("admin", &format!("/api/v1/items/{id}")).await;
        assert_eq!(item.json["state"], "in_review");
    }

    async fn approval_requires_the_confidentiality_check_of_that_version(app: TestApp) {
        let id = app.create_item("publisher", &item_body("530426")).await;
        app.post("publisher", &format!("/api/v1/items/{id}/submit"), &json!({})).await;
        let unconfirmed = app.post("reviewer", &format!("/api/v1/items/{id}/confidentiality-check"), &json!({"version": 1, "confirmed": false})).await;
        assert_eq!(unconfirmed.status, 422);
        assert_eq!(unconfirmed.field(), Some("confirmed"));
        let approve = app.post("reviewer", &format!("/api/v1/items/{id}/approve"), &json!({"version": 1})).await;
        assert_eq!(approve.status, 409, "{}", approve.json);
        assert_eq!(approve.json["error"]["code"], "confidentiality_check_missing");
        let stale = app.post("reviewer", &format!("/api/v1/items/{id}/approve"), &json!({"version": 7})).await;
        assert_eq!(stale.status, 422);
        assert_eq!(stale.field(), Some("version"));
    }

    async fn items_disclosed_on_request_or_not_at_all_are_never_published(app: TestApp) {
        for (disclosure, extra) in [("on_request", json!({})), ("not_public", json!({"legal_reason": "涉及个人隐私（条例第十五条）"}))] {
            let mut body = item_body("530426");
            body["disclosure"] = json!(disclosure);
            if let Some(reason) = extra.get("legal_reason") {
                body["legal_reason"] = reason.clone();
            }
            let id = app.create_item("publisher", &body).await;
            let approved = app.approve("publisher", "reviewer", &id).await;
            assert_eq!(approved.status, 200);
            let refused = app.publish("publisher", &id, &format!("key-{disclosure}")).await;
            assert_eq!(refused.status, 422, "{disclosure}: {}", refused.json);
            assert_eq!(refused.field(), Some("disclosure"));
            let item = app.get("publisher", &format!("/api/v1/items/{id}")).await;
            assert_eq!(item.json["state"], "approved", "{disclosure} stays in the store");
        }
    }

    async fn a_redacted_item_needs_its_redacted_body(app: TestApp) {
        let mut body = item_body("530426");
        body["disclosure"] = json!("public_redacted");
        let refused = app.post("publisher", "/api/v1/items", &body).await;
        assert_eq!(refused.status, 422, "{}", refused.json);
        assert_eq!(refused.field(), Some("redacted_body"));

        body["redacted_body"] = json!("<p>删减后的正文</p>");
        let id = app.create_item("publisher", &body).await;
        app.approve("publisher", "reviewer", &id).await;
        let published = app.publish("publisher", &id, "redacted").await;
        assert_eq!(published.status, 201, "{}", published.json);
    }

    async fn an_edit_after_approval_returns_the_item_to_draft(app: TestApp) {
        let mut body = item_body("530426");
        let id = app.create_item("publisher", &body).await;
        app.approve("publisher", "reviewer", &id).await;
        body["title"] = json!("关于做好2026年秋冬季森林防火工作的补充通知");
        let edited = app.put("publisher", &format!("/api/v1/items/{id}"), &body).await;
        assert_eq!(edited.status, 200, "{}", edited.json);
        assert_eq!(edited.json["state"], "draft");
        assert_eq!(edited.json["current_version"], 2);
        assert_eq!(edited.json["approved_version"], serde_json::Value::Null);
        let refused = app.publish("publisher", &id, "after-edit").await;
        assert_eq!(refused.status, 409, "{}", refused.json);

        let versions = app.get("publisher", &format!("/api/v1/items/{id}/versions")).await;
        assert_eq!(versions.json.as_array().map(Vec::len), Some(2));
        let first = app.get("publisher", &format!("/api/v1/items/{id}/versions/1")).await;
        assert_eq!(first.json["content"]["title"], "关于做好2026年秋冬季森林防火工作的通知", "old versions never change");

        // Re-review of version 2 then publishes exactly version 2.
        let approved = app.approve("publisher", "reviewer", &id).await;
        assert_eq!(approved.json["approved_version"], 2);
        let published = app.publish("publisher", &id, "after-re-review").await;
        assert_eq!(published.json["version"], 2);
    }

    async fn a_retried_publish_with_the_same_key_publishes_once(app: TestApp) {
        let id = app.create_item("publisher", &item_body("530426")).await;
        app.approve("publisher", "reviewer", &id).await;
        let (first, second) = futures::join!(app.publish("publisher", &id, "same-key"), app.publish("publisher", &id, "same-key"));
        assert_eq!(first.status, 201, "{}", first.json);
        assert_eq!(second.status, 201, "{}", second.json);
        assert_eq!(first.json["publication_id"], second.json["publication_id"]);
        let third = app.publish("publisher", &id, "same-key").await;
        assert_eq!(third.json["publication_id"], first.json["publication_id"]);
        assert_eq!(third.headers.get("Idempotent-Replayed").and_then(|v| v.to_str().ok()), Some("true"));

        let publishes = app.audit_actions(&id).await.into_iter().filter(|a| a == "item.publish").count();
        assert_eq!(publishes, 1);
        let other_key = app.publish("publisher", &id, "another-key").await;
        assert_eq!(other_key.status, 409, "a second key cannot publish twice: {}", other_key.json);
        let missing = app.publish("publisher", &id, "").await;
        assert_eq!(missing.status, 422);
        assert_eq!(missing.field(), Some("Idempotency-Key"));
    }

    async fn a_rejected_item_returns_to_draft_with_the_comment(app: TestApp) {
        let id = app.create_item("publisher", &item_body("530426")).await;
        app.post("publisher", &format!("/api/v1/items/{id}/submit"), &json!({})).await;
        let empty = app.post("reviewer", &format!("/api/v1/items/{id}/reject"), &json!({"version": 1, "comment": " "})).await;
        assert_eq!(empty.status, 422);
        let rejected = app.post("reviewer", &format!("/api/v1/items/{id}/reject"), &json!({"version": 1, "comment": "发文字号有误"})).await;
        assert_eq!(rejected.status, 200, "{}", rejected.json);
        assert_eq!(rejected.json["state"], "draft");
        assert_eq!(rejected.json["review_comment"], "发文字号有误");
    }

    async fn item_ids_sort_by_hub_time_and_carry_it(app: TestApp) {
        let start = app.hub.clock.now();
        let mut made = Vec::new();
        for hours in [0, 5, -30, 1] {
            let at = start + chrono::Duration::hours(hours);
            app.hub.clock.set(at);
            let id = app.create_item("publisher", &item_body("530426")).await;
            let uuid = uuid::Uuid::parse_str(&id).expect("a UUID");
            let (seconds, nanos) = uuid.get_timestamp().expect("a v7 UUID").to_unix();
            let carried = i64::try_from(seconds).expect("seconds") * 1000 + i64::from(nanos / 1_000_000);
            assert_eq!(carried, at.timestamp_millis(), "the id carries the hub time");
            made.push((at, id));
        }
        made.sort_by_key(|(at, _)| *at);
        let ids: Vec<&String> = made.iter().map(|(_, id)| id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "made later in hub time, sorted later");
    }

    async fn published_items_expire_after_their_last_valid_day(app: TestApp) {
        let mut body = item_body("530426");
        body["expires_on"] = json!("2026-10-08");
        let id = app.create_item("publisher", &body).await;
        app.approve("publisher", "reviewer", &id).await;
        app.publish("publisher", &id, "expiring").await;
        // 23:59 Beijing on the last valid day: still published.
        app.hub.clock.set("2026-10-08T15:59:00Z".parse().expect("time"));
        assert_eq!(herald::workflow::expire_due(&app.hub).await.expect("sweep"), 0);
        app.hub.clock.set("2026-10-08T16:00:00Z".parse().expect("time"));
        assert_eq!(herald::workflow::expire_due(&app.hub).await.expect("sweep"), 1);
        let item = app.get("publisher", &format!("/api/v1/items/{id}")).await;
        assert_eq!(item.json["state"], "expired");
    }
}
