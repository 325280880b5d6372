use serde_json::json;

use crate::helpers::{Backend, TestApp, item_body, spawn_app};
use crate::on_both_databases;

fn status_of(due: &serde_json::Value, id: &str) -> String {
    due.as_array()
        .expect("array")
        .iter()
        .find(|d| d["interpretation_id"] == id)
        .map(|d| d["status"].as_str().expect("status").to_owned())
        .unwrap_or_default()
}

on_both_databases! {
    async fn a_policy_and_its_interpretation_link_each_other_and_come_down_together(app: TestApp) {
        let policy = app.publish_new(&item_body("530426"), &json!({})).await;
        let mut body = item_body("530426");
        body["title"] = json!("《关于做好2026年秋冬季森林防火工作的通知》政策解读");
        body["genre"] = json!("interpretation");
        body["interprets"] = json!(policy);
        let interpretation = app.publish_new(&body, &json!({})).await;
        app.deliver_due().await;

        let policy_page = app.public_get(&format!("/xxgk/items/{policy}")).await.text();
        assert!(policy_page.contains("<h2>政策解读</h2>") && policy_page.contains(&format!("/xxgk/items/{interpretation}")), "{policy_page}");
        let interpretation_page = app.public_get(&format!("/xxgk/items/{interpretation}")).await.text();
        assert!(interpretation_page.contains("本文解读的政策") && interpretation_page.contains(&format!("/xxgk/items/{policy}")), "{interpretation_page}");
        let column = app.public_get("/xxgk/zcjd").await.text();
        assert!(column.contains(&format!("/xxgk/items/{interpretation}")) && !column.contains(&format!("/xxgk/items/{policy}\"")), "{column}");
        assert!(app.public_get("/xxgk").await.text().contains("/xxgk/zcjd"));

        // Another interpretation, approved but not yet out when the policy goes.
        let mut later = body.clone();
        later["index_no"] = item_body("530426")["index_no"].clone();
        later["doc_no"] = item_body("530426")["doc_no"].clone();
        let later = app.create_item("publisher", &later).await;
        app.approve("publisher", "reviewer", &later).await;

        // Withdrawing the policy withdraws its interpretation with it, and says why.
        let withdrawn = app.post("publisher", &format!("/api/v1/items/{policy}/withdraw"), &json!({"reason": "政策已废止"})).await;
        assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
        let explained = app.get("publisher", &format!("/api/v1/items/{interpretation}")).await;
        assert_eq!(explained.json["state"], "withdrawn");
        assert!(app.audit_actions(&interpretation).await.iter().any(|a| a == "item.withdraw"));
        app.deliver_due().await;
        let gone = app.public_get(&format!("/xxgk/items/{interpretation}")).await;
        assert_eq!(gone.status, 410);
        assert!(gone.text().contains("所解读的政策已撤回：政策已废止"), "{}", gone.text());
        // Nothing explains a policy no longer in force.
        let too_late = app.publish("publisher", &later, "later").await;
        assert_eq!((too_late.status, too_late.json["error"]["code"].clone()), (409, json!("policy_not_published")), "{}", too_late.json);
    }

    async fn an_interpretation_is_due_three_working_days_after_its_policy(app: TestApp) {
        // The clock stands at 10:00 on Wednesday 30 September 2026.
        let policy = app.create_item("publisher", &item_body("530426")).await;
        app.approve("publisher", "reviewer", &policy).await;

        let mut body = item_body("530426");
        body["title"] = json!("《关于做好2026年秋冬季森林防火工作的通知》政策解读");
        body["genre"] = json!("interpretation");
        body["interprets"] = json!(policy);
        let interpretation = app.create_item("publisher", &body).await;
        let early = app.get("publisher", &format!("/api/v1/items/{interpretation}")).await;
        assert_eq!(early.json["kind"], "interpretation");
        assert_eq!(early.json["interpretation_deadline"], serde_json::Value::Null, "no deadline before the policy is out");
        app.approve("publisher", "reviewer", &interpretation).await;
        let too_soon = app.publish("publisher", &interpretation, "interp-early").await;
        assert_eq!(too_soon.status, 409, "{}", too_soon.json);

        app.publish("publisher", &policy, "policy").await;
        let item = app.get("publisher", &format!("/api/v1/items/{interpretation}")).await;
        // 1–7 October are off (a configured holiday plus the weekend), 8 and 9 count, and
        // Saturday 10 October is a make-up workday: the third working day.
        assert_eq!(item.json["interpretation_deadline"], "2026-10-10");

        let due = app.get("publisher", "/api/v1/interpretations/due").await;
        assert_eq!(due.status, 200, "{}", due.json);
        assert_eq!(status_of(&due.json, &interpretation), "pending");
        app.hub.clock.set("2026-10-09T02:00:00Z".parse().expect("time"));
        let due = app.get("publisher", "/api/v1/interpretations/due").await;
        assert_eq!(status_of(&due.json, &interpretation), "due_soon");
        app.hub.clock.set("2026-10-11T02:00:00Z".parse().expect("time"));
        let due = app.get("publisher", "/api/v1/interpretations/due").await;
        assert_eq!(status_of(&due.json, &interpretation), "overdue");

        let published = app.publish("publisher", &interpretation, "interp").await;
        assert_eq!(published.status, 201, "{}", published.json);
        let due = app.get("publisher", "/api/v1/interpretations/due").await;
        assert_eq!(status_of(&due.json, &interpretation), "", "a published interpretation is no longer due");
    }
}
