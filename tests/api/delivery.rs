use std::{sync::Arc, time::Duration};

use herald_channels::ChannelKind;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, item_body, second_instance, spawn_app, spawn_app_with};
use crate::on_both_backends;
use crate::scripted::{Scripted, Step};

fn count(summary: &Value, channel: &str, kind: &str, state: &str) -> i64 {
    summary["summary"]
        .as_array()
        .expect("summary")
        .iter()
        .find(|r| r["channel"] == channel && r["kind"] == kind && r["state"] == state)
        .and_then(|r| r["count"].as_i64())
        .unwrap_or(0)
}

async fn deliveries(app: &TestApp, id: &str) -> Value {
    let reply = app
        .get("publisher", &format!("/api/v1/items/{id}/deliveries"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    reply.json
}

async fn only_delivery(app: &TestApp, id: &str, channel: &str) -> Value {
    let all = deliveries(app, id).await;
    let rows: Vec<_> = all["deliveries"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|d| d["channel"] == channel)
        .cloned()
        .collect();
    assert_eq!(rows.len(), 1, "{all}");
    rows[0].clone()
}

async fn wechat_app(backend: Backend, scripted: &Arc<Scripted>) -> (TestApp, String) {
    let app = spawn_app_with(backend, vec![scripted.clone()]).await;
    let target = app.add_target("wechat", "峨山发布", "530426", json!({})).await;
    (app, target)
}

on_both_backends! {
    publishing_makes_the_portal_page_live_and_records_the_receipt => |backend| async move {
        let app = spawn_app(backend).await;
        let mut body = item_body("530426");
        body["doc_no"] = json!("峨政办发[2026]12号");
        let id = app.publish_new(&body, &json!({})).await;
        let pending = deliveries(&app, &id).await;
        assert_eq!(count(&pending, "portal", "publish", "pending"), 1, "the delivery is written with the publish: {pending}");

        assert_eq!(app.deliver_due().await, 1);
        let summary = deliveries(&app, &id).await;
        assert_eq!(count(&summary, "portal", "publish", "delivered"), 1, "{summary}");
        let row = only_delivery(&app, &id, "portal").await;
        assert_eq!(row["external_id"], format!("/xxgk/items/{id}"));
        assert_eq!(row["target_name"], "政府门户网站");

        let page = app.public_get(&format!("/xxgk/items/{id}")).await;
        assert_eq!(page.status, 200);
        let html = page.text();
        for expected in ["索引号", "主题分类", "综合政务\\应急管理", "发文机关", "峨山彝族自治县人民政府办公室", "成文日期", "2026年9月28日",
                         "发文字号", "峨政办发〔2026〕12号", "发布日期", "2026年9月30日", "有效性", "现行有效", "（此件公开发布）"] {
            assert!(html.contains(expected), "page lacks {expected}");
        }
        let csv = app.get("publisher", &format!("/api/v1/items/{id}/receipts.csv")).await.text();
        assert!(csv.lines().any(|l| l.contains(",发布,政府门户网站,") && l.contains(",已送达,")), "{csv}");
        // Ready for Excel on Chinese Windows: the BOM, Chinese headers, the item named on every
        // row, Beijing time, a detail to read rather than JSON.
        assert!(csv.starts_with("\u{feff}信息标题,发文字号,投递编号,投递类型,渠道,"), "{csv}");
        let row = csv.lines().nth(1).expect("a row");
        assert!(row.starts_with("关于做好2026年秋冬季森林防火工作的通知,峨政办发〔2026〕12号,"), "{row}");
        assert!(row.contains(",2026-09-30 10:00:00,"), "{row}");
        assert!(row.contains("attempt: 1") && !row.contains('{'), "{row}");
    };

    a_worker_that_dies_holding_a_lease_is_replaced_with_the_same_key => |backend| async move {
        let scripted = Scripted::new(ChannelKind::Wechat, &[Step::Hang], Step::Deliver);
        let (app, _) = wechat_app(backend, &scripted).await;
        let id = app.publish_new(&item_body("530426"), &json!({"channels": ["wechat"]})).await;

        let hub = app.hub.clone();
        let doomed = tokio::spawn(async move { herald::delivery::worker::try_execute_batch(&hub, &herald::delivery::worker::InFlight::default(), "doomed-worker").await });
        for _ in 0..200 {
            if !scripted.calls().is_empty() { break; }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(scripted.calls().len(), 1, "the first worker reached the channel");
        doomed.abort();
        let _ = doomed.await;

        // Before the lease runs out nobody else may take it.
        assert_eq!(app.deliver_due().await, 0);
        let lease = i64::from(app.hub.settings.delivery.lease_seconds);
        app.hub.clock.set(app.hub.clock.now() + chrono::Duration::seconds(lease + 1));
        assert_eq!(app.deliver_due().await, 1);

        let calls = scripted.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0], calls[1], "both attempts carried the same idempotency key");
        assert_eq!(only_delivery(&app, &id, "wechat").await["state"], "delivered");
    };

    transient_failures_are_retried_with_growing_delays => |backend| async move {
        let scripted = Scripted::new(ChannelKind::Wechat, &[Step::Transient, Step::Transient, Step::Transient], Step::Deliver);
        let (app, _) = wechat_app(backend, &scripted).await;
        let id = app.publish_new(&item_body("530426"), &json!({"channels": ["wechat"]})).await;
        let mut delays = Vec::new();
        for _ in 0..3 {
            assert_eq!(app.deliver_due().await, 1);
            let row = only_delivery(&app, &id, "wechat").await;
            assert_eq!(row["state"], "retrying", "{row}");
            assert!(row["last_error"].as_str().is_some_and(|e| e.contains("http_503")));
            let next: chrono::DateTime<chrono::Utc> = row["next_attempt_at"].as_str().expect("time").parse().expect("rfc3339");
            delays.push((next - app.hub.clock.now()).num_seconds());
            assert_eq!(app.deliver_due().await, 0, "nothing is resent before its time");
            app.hub.clock.set(next);
        }
        assert_eq!(app.deliver_due().await, 1);
        let row = only_delivery(&app, &id, "wechat").await;
        assert_eq!(row["state"], "delivered");
        assert_eq!(row["attempts"], 4);
        assert!(delays[0] > 0 && delays.windows(2).all(|w| w[1] >= w[0]), "delays grow: {delays:?}");
        assert!(delays[2] > delays[0], "delays grow: {delays:?}");
    };

    a_channel_that_always_fails_ends_failed_with_its_error => |backend| async move {
        let scripted = Scripted::new(ChannelKind::Wechat, &[], Step::Transient);
        let (app, _) = wechat_app(backend, &scripted).await;
        let id = app.publish_new(&item_body("530426"), &json!({"channels": ["wechat"]})).await;
        let max = app.hub.settings.delivery.max_attempts as usize;
        for _ in 0..max {
            assert_eq!(app.deliver_due().await, 1);
            app.hub.clock.set(app.hub.clock.now() + chrono::Duration::hours(2));
        }
        assert_eq!(app.deliver_due().await, 0);
        let row = only_delivery(&app, &id, "wechat").await;
        assert_eq!(row["state"], "failed");
        assert_eq!(row["attempts"], max);
        assert!(row["last_error"].as_str().is_some_and(|e| e.contains("http_503") && e.contains("服务暂不可用")), "{row}");
        assert_eq!(scripted.calls().len(), max);
        let failed = app.get("admin", "/api/v1/deliveries?state=failed").await;
        assert_eq!(failed.json.as_array().map(Vec::len), Some(1), "{}", failed.json);
    };

    an_unknown_outcome_is_unconfirmed_and_never_resent_until_reconciled => |backend| async move {
        let scripted = Scripted::new(ChannelKind::Wechat, &[Step::Unknown], Step::Deliver);
        let (app, _) = wechat_app(backend, &scripted).await;
        let id = app.publish_new(&item_body("530426"), &json!({"channels": ["wechat"]})).await;
        assert_eq!(app.deliver_due().await, 1);
        let row = only_delivery(&app, &id, "wechat").await;
        assert_eq!(row["state"], "unconfirmed");
        app.hub.clock.set(app.hub.clock.now() + chrono::Duration::days(3));
        assert_eq!(app.deliver_due().await, 0, "an unconfirmed delivery is not resent by itself");
        assert_eq!(scripted.calls().len(), 1);

        let delivery_id = row["id"].as_str().expect("id");
        let village = app.post("village_a", &format!("/api/v1/deliveries/{delivery_id}/retry"), &json!({})).await;
        assert_eq!(village.status, 403);
        let retried = app.post("admin", &format!("/api/v1/deliveries/{delivery_id}/retry"), &json!({})).await;
        assert_eq!(retried.status, 200, "{}", retried.json);
        assert_eq!(retried.json["state"], "pending");
        assert_eq!(app.deliver_due().await, 1);
        assert_eq!(only_delivery(&app, &id, "wechat").await["state"], "delivered");
        let again = app.post("admin", &format!("/api/v1/deliveries/{delivery_id}/retry"), &json!({})).await;
        assert_eq!(again.status, 409, "a delivered delivery is not retried");
    };

    retrying_a_failed_delivery_touches_only_that_delivery => |backend| async move {
        let scripted = Scripted::new(ChannelKind::Wechat, &[], Step::Deliver);
        let (app, good) = wechat_app(backend, &scripted).await;
        let bad = app.add_target("wechat", "失效账号", "530426", json!({"fail": true})).await;
        let id = app.publish_new(&item_body("530426"), &json!({"channels": ["wechat"]})).await;
        assert_eq!(app.deliver_due().await, 2);
        let rows = deliveries(&app, &id).await["deliveries"].as_array().expect("rows").clone();
        let by_target = |t: &str| rows.iter().find(|d| d["target_id"] == t).cloned().expect("row");
        assert_eq!(by_target(&bad)["state"], "failed");
        assert_eq!(by_target(&good)["state"], "delivered");

        let retried = app.post("publisher", &format!("/api/v1/deliveries/{}/retry", by_target(&bad)["id"].as_str().expect("id")), &json!({})).await;
        assert_eq!(retried.status, 200, "{}", retried.json);
        let after = deliveries(&app, &id).await["deliveries"].as_array().expect("rows").clone();
        let good_after = after.iter().find(|d| d["target_id"] == good.as_str()).expect("row");
        assert_eq!(good_after, &by_target(&good), "the delivered target's row is untouched");
        assert_eq!(app.deliver_due().await, 1, "only the retried delivery is sent");
        assert_eq!(scripted.calls().len(), 3);
        // Both attempts are in the record, though the retry's attempts count from 1 again.
        let bad_id = by_target(&bad)["id"].as_str().expect("id").to_owned();
        let csv = app.get("publisher", &format!("/api/v1/items/{id}/receipts.csv")).await.text();
        let failures = csv::Reader::from_reader(csv.as_bytes())
            .records()
            .map(|r| r.expect("CSV parses"))
            .filter(|r| r.get(2) == Some(bad_id.as_str()) && r.get(10).is_some_and(|kind| kind.starts_with("failed")))
            .count();
        assert_eq!(failures, 2, "{csv}");
    };

    a_delivery_that_cannot_be_read_fails_alone_and_the_batch_goes_out => |backend| async move {
        let scripted = Scripted::new(ChannelKind::Wechat, &[], Step::Deliver);
        let (app, good) = wechat_app(backend, &scripted).await;
        let bad = app.add_target("wechat", "检查点损坏", "530426", json!({})).await;
        let id = app.publish_new(&item_body("530426"), &json!({"channels": ["wechat"]})).await;
        // A checkpoint that no longer decodes (only corruption can do that: the worker writes
        // them from JSON values).
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        use herald::store::entities::delivery;
        delivery::Entity::update_many()
            .col_expr(delivery::Column::Checkpoint, Expr::value("{not json"))
            .filter(delivery::Column::TargetId.eq(bad.as_str()))
            .exec(&app.hub.db)
            .await
            .expect("corrupt the checkpoint");
        assert_eq!(app.deliver_due().await, 2);
        let rows = deliveries(&app, &id).await["deliveries"].as_array().expect("rows").clone();
        let by_target = |t: &str| rows.iter().find(|d| d["target_id"] == t).cloned().expect("row");
        assert_eq!(by_target(&good)["state"], "delivered", "the readable delivery went out");
        let failed = by_target(&bad);
        assert_eq!(failed["state"], "failed", "{failed}");
        assert!(failed["last_error"].as_str().is_some_and(|e| e.starts_with("unreadable")), "{failed}");
        assert_eq!(scripted.calls().len(), 1, "the unreadable one was never sent");
        let summary = deliveries(&app, &id).await;
        assert_eq!(count(&summary, "wechat", "publish", "failed"), 1, "{summary}");
        assert_eq!(count(&summary, "wechat", "publish", "delivered"), 1, "{summary}");
    };

    a_withdrawal_follows_a_delivery_waiting_for_its_retry_too => |backend| async move {
        let wechat = Scripted::new(ChannelKind::Wechat, &[Step::Transient], Step::Deliver);
        let (app, _) = wechat_app(backend, &wechat).await;
        let id = app.publish_new(&item_body("530426"), &json!({"channels": ["wechat"]})).await;
        assert_eq!(app.deliver_due().await, 1);
        assert_eq!(only_delivery(&app, &id, "wechat").await["state"], "retrying");

        let withdrawn = app.post("publisher", &format!("/api/v1/items/{id}/withdraw"), &json!({"reason": "政策调整"})).await;
        assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
        // The retry is called off, and a withdrawal follows it all the same (its first attempt
        // may have landed): a row for it, counted once.
        let summary = deliveries(&app, &id).await;
        let rows = summary["deliveries"].as_array().expect("rows");
        let withdrawals = rows.iter().filter(|d| d["channel"] == "wechat" && d["kind"] == "withdraw").count();
        assert_eq!(withdrawals, 1, "{summary}");
        assert_eq!(count(&summary, "wechat", "withdraw", "pending"), 1, "{summary}");
        assert_eq!(count(&summary, "wechat", "publish", "cancelled"), 1, "{summary}");
        app.assert_queue_agrees().await;
    };

    withdrawal_takes_the_item_down_everywhere_and_is_recorded => |backend| async move {
        let wechat = Scripted::without_withdrawal(ChannelKind::Wechat);
        let (app, _) = wechat_app(backend, &wechat).await;
        let id = app.publish_new(&item_body("530426"), &json!({})).await;
        assert_eq!(app.deliver_due().await, 2, "portal and WeChat");
        assert_eq!(app.public_get(&format!("/xxgk/items/{id}")).await.status, 200);

        let withdrawn = app.post("publisher", &format!("/api/v1/items/{id}/withdraw"), &json!({"reason": "政策调整"})).await;
        assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
        assert_eq!(app.public_get(&format!("/xxgk/items/{id}")).await.status, 410, "the page is gone at once");
        assert_eq!(app.deliver_due().await, 2);

        let summary = deliveries(&app, &id).await;
        assert_eq!(count(&summary, "portal", "withdraw", "withdrawn"), 1, "{summary}");
        assert_eq!(count(&summary, "wechat", "withdraw", "failed"), 1, "{summary}");
        let wechat_withdrawal = summary["deliveries"].as_array().expect("rows").iter()
            .find(|d| d["channel"] == "wechat" && d["kind"] == "withdraw").cloned().expect("row");
        assert!(wechat_withdrawal["last_error"].as_str().is_some_and(|e| e.contains("cannot withdraw")), "{wechat_withdrawal}");

        let csv = app.get("publisher", &format!("/api/v1/items/{id}/receipts.csv")).await.text();
        assert!(csv.lines().any(|l| l.contains(",撤回,政府门户网站,") && l.contains(",已撤回,")), "{csv}");
        assert!(csv.contains("withdraw_unsupported"), "{csv}");
        let gone = app.public_get(&format!("/xxgk/items/{id}")).await;
        assert_eq!(gone.status, 410);
        let cleanup = app.public_get("/xxgk/cleanup").await.text();
        assert!(cleanup.contains("关于做好2026年秋冬季森林防火工作的通知") && cleanup.contains("政策调整"), "{cleanup}");
    };

    withdrawing_a_delivery_awaiting_its_retry_cancels_it_and_still_withdraws => |backend| async move {
        let scripted = Scripted::new(ChannelKind::Wechat, &[Step::Transient], Step::Deliver);
        let (app, _) = wechat_app(backend, &scripted).await;
        let id = app.publish_new(&item_body("530426"), &json!({"channels": ["wechat"]})).await;
        assert_eq!(app.deliver_due().await, 1);
        assert_eq!(only_delivery(&app, &id, "wechat").await["state"], "retrying");
        let withdrawn = app.post("publisher", &format!("/api/v1/items/{id}/withdraw"), &json!({"reason": "政策调整"})).await;
        assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
        let summary = deliveries(&app, &id).await;
        assert_eq!(count(&summary, "wechat", "publish", "cancelled"), 1, "{summary}");
        assert_eq!(
            count(&summary, "wechat", "withdraw", "pending"), 1,
            "the failed attempt may have landed, so a withdrawal follows: {summary}"
        );
    };

    withdrawing_before_delivery_cancels_what_was_not_sent => |backend| async move {
        let app = spawn_app(backend).await;
        let id = app.publish_new(&item_body("530426"), &json!({})).await;
        app.post("publisher", &format!("/api/v1/items/{id}/withdraw"), &json!({"reason": "发布有误"})).await;
        assert_eq!(app.deliver_due().await, 0, "nothing goes out");
        let summary = deliveries(&app, &id).await;
        assert_eq!(count(&summary, "portal", "publish", "cancelled"), 1, "{summary}");
    };

    publishers_see_and_narrow_the_resolved_targets => |backend| async move {
        let scripted = Scripted::new(ChannelKind::Wechat, &[], Step::Deliver);
        let app = spawn_app_with(backend, vec![scripted.clone()]).await;
        let county = app.add_target("wechat", "县政府公众号", "530426", json!({})).await;
        let township = app.add_target("wechat", "甸中镇公众号", "530426101", json!({})).await;
        let other_township = app.add_target("wechat", "化念镇公众号", "530426102", json!({})).await;
        let health_only = app.add_target("wechat", "卫健公众号", "530426", json!({}))
            .await;
        let _ = health_only;
        let body = item_body("530426101");
        let id = app.create_item("township_publisher", &body).await;

        let resolved = app.get("township_publisher", &format!("/api/v1/items/{id}/targets")).await;
        assert_eq!(resolved.status, 200, "{}", resolved.json);
        let ids: Vec<&str> = resolved.json.as_array().expect("targets").iter().map(|t| t["id"].as_str().expect("id")).collect();
        assert!(ids.contains(&county.as_str()), "a township item reaches the county outlets");
        assert!(ids.contains(&township.as_str()));
        assert!(!ids.contains(&other_township.as_str()), "not another township's");
        let unknown = app.get("township_publisher", &format!("/api/v1/items/{id}/targets?channels=fax")).await;
        assert_eq!(unknown.status, 422);

        let preview = app.get("township_publisher", &format!("/api/v1/items/{id}/preview/portal")).await;
        assert_eq!(preview.status, 200, "{}", preview.json);
        assert_eq!(preview.json["payload"]["title"], body["title"]);

        app.approve("township_publisher", "reviewer", &id).await;
        let narrowed = app.client.post(format!("{}/api/v1/items/{id}/publish", app.address))
            .bearer_auth(&app.tokens["township_publisher"]).header("Idempotency-Key", "narrow")
            .json(&json!({"channels": ["wechat"], "targets": [township]})).send().await.expect("publish");
        assert_eq!(narrowed.status(), 201);
        let summary = deliveries(&app, &id).await;
        let rows = summary["deliveries"].as_array().expect("rows");
        assert_eq!(rows.len(), 1, "{summary}");
        assert_eq!(rows[0]["target_id"], township.as_str());
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_every_delivery_exactly_once() {
    use herald::store::entities::target;
    use sea_orm::{EntityTrait, Set};

    let scripted = Scripted::new(ChannelKind::Wechat, &[], Step::Deliver);
    let app = spawn_app_with(Backend::Postgres, vec![scripted.clone()]).await;
    let now = app.hub.clock.now();
    let targets = (0..2000).map(|i| target::ActiveModel {
        id: Set(format!("bench-{i:05}").into()),
        channel: Set(ChannelKind::Wechat),
        name: Set(format!("公众号{i}")),
        area_code: Set("530426".into()),
        catalogs: Set("[]".into()),
        tags: Set("[]".into()),
        config: Set("{}".into()),
        enabled: Set(true),
        created_at: Set(now),
    });
    for chunk in targets.collect::<Vec<_>>().chunks(500) {
        target::Entity::insert_many(chunk.to_vec())
            .exec(&app.hub.db)
            .await
            .expect("targets");
    }
    let id = app
        .publish_new(&item_body("530426"), &json!({"channels": ["wechat"]}))
        .await;
    let second = second_instance(&app, vec![scripted.clone()]).await;

    let run = |hub: Arc<herald::hub::Hub>, name: &'static str| async move {
        let in_flight = herald::delivery::worker::InFlight::default();
        let mut handled = 0;
        loop {
            let n = herald::delivery::worker::try_execute_batch(&hub, &in_flight, name)
                .await
                .expect("worker step");
            if n == 0 {
                return handled;
            }
            handled += n;
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(run(app.hub.clone(), "instance-a")),
        tokio::spawn(run(second, "instance-b"))
    );
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_eq!(a + b, 2000);

    let calls = scripted.calls();
    let distinct: std::collections::BTreeSet<_> = calls.iter().collect();
    assert_eq!(calls.len(), 2000, "each delivery reached the channel once");
    assert_eq!(distinct.len(), 2000);
    let summary = deliveries(&app, &id).await;
    assert_eq!(
        count(&summary, "wechat", "publish", "delivered"),
        2000,
        "{}",
        summary["summary"]
    );
    eprintln!("instance a handled {a}, instance b handled {b}");
}

on_both_backends! {
    expiry_takes_the_item_down_like_a_withdrawal => |backend| async move {
        let app = spawn_app(backend).await;
        let mut body = item_body("530426");
        body["expires_on"] = json!("2026-10-08");
        let id = app.publish_new(&body, &json!({})).await;
        app.deliver_due().await;
        app.hub.clock.set("2026-10-08T16:00:00Z".parse().expect("time"));
        assert_eq!(herald::workflow::expire_due(&app.hub).await.expect("sweep"), 1);
        assert_eq!(app.public_get(&format!("/xxgk/items/{id}")).await.status, 410);
        assert_eq!(app.deliver_due().await, 1);
        let summary = deliveries(&app, &id).await;
        assert_eq!(count(&summary, "portal", "withdraw", "withdrawn"), 1, "{summary}");
        let cleanup = app.public_get("/xxgk/cleanup").await.text();
        assert!(cleanup.contains("有效期届满"), "{cleanup}");
    };

    a_claim_keeps_the_queue_row_of_a_delivery_queued_again_after_its_read => |backend| async move {
        use sea_orm::ConnectionTrait;
        // On SQLite a claim reads its due rows before it takes the write lock. On PostgreSQL
        // its read locks the queue rows, so nothing can queue one again in between.
        if matches!(backend, Backend::Postgres) {
            return;
        }
        let app = Arc::new(spawn_app(backend).await);
        let id = app.publish_new(&item_body("530426"), &json!({})).await;
        let row = only_delivery(&app, &id, "portal").await;
        let delivery_id = row["id"].as_str().expect("id").to_owned();
        let cancelled = app.post("publisher", &format!("/api/v1/deliveries/{delivery_id}/cancel"), &json!({})).await;
        assert_eq!(cancelled.status, 200, "{}", cancelled.json);
        // A queue row left behind for the cancelled delivery: the claim reads it as moved on.
        app.hub
            .db
            .execute_unprepared(&format!(
                "INSERT INTO delivery_queue (delivery_id, channel, priority, due_at) \
                 SELECT id, channel, priority, next_attempt_at FROM deliveries WHERE id = '{delivery_id}'"
            ))
            .await
            .expect("stale row");
        let writer = herald::store::begin_write(&app.hub.db).await.expect("write lock");
        let claiming = tokio::spawn({
            let app = Arc::clone(&app);
            async move { herald::delivery::worker::claim(&app.hub, "w", None, 10).await.expect("claim").len() }
        });
        // The claim reads (one row, well under a millisecond), then waits for the write lock.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!claiming.is_finished(), "the claim waits for the write lock");
        // Meanwhile the delivery is queued again, under the same queue row.
        writer
            .execute_unprepared(&format!("UPDATE deliveries SET state = 'pending' WHERE id = '{delivery_id}'"))
            .await
            .expect("queued again");
        writer.commit().await.expect("commit");
        assert_eq!(claiming.await.expect("claim task"), 0, "it read the delivery as moved on");
        app.assert_queue_agrees().await;
        assert_eq!(app.deliver_due().await, 1, "the delivery queued again is sent");
    };

    emergency_items_go_out_first => |backend| async move {
        let app = spawn_app(backend).await;
        let routine = app.publish_new(&item_body("530426"), &json!({})).await;
        let mut urgent = item_body("530426");
        urgent["title"] = json!("暴雨红色预警：请立即转移");
        urgent["emergency"] = json!(true);
        let urgent = app.publish_new(&urgent, &json!({})).await;
        let first = herald::delivery::worker::claim(&app.hub, "w", None, 1).await.expect("claim");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].item_id, urgent, "the emergency item is claimed before the earlier routine one");
        let listed = app.get("publisher", "/api/v1/items").await;
        assert_eq!(listed.json["items"][0]["id"], urgent.as_str(), "and listed first");
        let _ = routine;
    };

    a_delivery_not_yet_sent_can_be_cancelled => |backend| async move {
        let app = spawn_app(backend).await;
        let id = app.publish_new(&item_body("530426"), &json!({})).await;
        let row = only_delivery(&app, &id, "portal").await;
        let delivery_id = row["id"].as_str().expect("id");
        let cancelled = app.post("publisher", &format!("/api/v1/deliveries/{delivery_id}/cancel"), &json!({})).await;
        assert_eq!(cancelled.status, 200, "{}", cancelled.json);
        assert_eq!(cancelled.json["state"], "cancelled");
        assert_eq!(app.deliver_due().await, 0);
        // A queue row left behind for a delivery that moved on is passed over and dropped.
        let stale = herald::store::entities::delivery_queue::ActiveModel {
            delivery_id: sea_orm::Set(delivery_id.into()),
            channel: sea_orm::Set(ChannelKind::Portal),
            priority: sea_orm::Set(0),
            due_at: sea_orm::Set(app.hub.clock.now()),
        };
        sea_orm::ActiveModelTrait::insert(stale, &app.hub.db).await.expect("stale row");
        assert_eq!(app.deliver_due().await, 0, "nothing is sent for it, and the row is gone");
        let again = app.post("publisher", &format!("/api/v1/deliveries/{delivery_id}/cancel"), &json!({})).await;
        assert_eq!(again.status, 409);
        assert_eq!(count(&deliveries(&app, &id).await, "portal", "publish", "cancelled"), 1);
    };
    claims_commit_without_waiting_for_the_disk_and_nothing_else_does => |backend| async move {
        use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
        let app = spawn_app(backend).await;
        async fn setting(conn: &sea_orm::DatabaseTransaction, backend: Backend) -> String {
            let sql = match backend {
                Backend::Sqlite => "SELECT CAST(synchronous AS TEXT) FROM pragma_synchronous",
                Backend::Postgres => "SELECT current_setting('synchronous_commit')",
            };
            let statement = Statement::from_string(conn.get_database_backend(), sql);
            let row = conn.query_one_raw(statement).await.expect("setting").expect("a row");
            row.try_get_by_index::<String>(0).expect("text")
        }
        let (waits, does_not) = match backend {
            // FULL and NORMAL.
            Backend::Sqlite => ("2", "1"),
            Backend::Postgres => ("on", "off"),
        };
        let one_row = Statement::from_string(app.hub.db.get_database_backend(), "SELECT '[1]'");
        let (_turn, lease, _) = app.hub.leases.read_then_begin::<i64>(one_row).await.expect("lease transaction");
        assert_eq!(setting(&lease, backend).await, does_not, "a claim's commit does not wait for the disk");
        lease.rollback().await.expect("rollback");
        let write = herald::store::begin_write(&app.hub.db).await.expect("write transaction");
        assert_eq!(setting(&write, backend).await, waits, "every other write waits for it");
        write.rollback().await.expect("rollback");
        let after = app.hub.db.begin().await.expect("transaction");
        assert_eq!(setting(&after, backend).await, waits, "the setting ended with the claim's transaction");
        after.rollback().await.expect("rollback");
    };
}
