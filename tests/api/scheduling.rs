//! 定时发布: nothing goes out before `not_before`, nothing after `not_after`.

use std::sync::Arc;

use chrono::{Duration, SecondsFormat};
use herald_channels::{Channel, ChannelKind};
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, TestApp, item_body, spawn_app, spawn_app_with};
use crate::on_both_backends;
use crate::on_both_databases;
use crate::scripted::{Scripted, Step};

fn at(app: &TestApp, from_now: Duration) -> String {
    (app.hub.clock.now() + from_now).to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn publish_with(app: &TestApp, id: &str, body: &Value) -> Reply {
    app.send(
        app.auth(
            "publisher",
            app.client
                .post(format!("{}/api/v1/items/{id}/publish", app.address))
                .header("Idempotency-Key", format!("scheduled-{id}"))
                .json(body),
        ),
    )
    .await
}

async fn approved(app: &TestApp, body: &Value) -> String {
    let id = app.create_item("publisher", body).await;
    assert_eq!(app.approve("publisher", "reviewer", &id).await.status, 200);
    id
}

async fn states(app: &TestApp, id: &str) -> Vec<(String, String)> {
    let reply = app.get("admin", &format!("/api/v1/items/{id}/deliveries")).await;
    reply.json["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| {
            (
                d["channel"].as_str().expect("channel").to_owned(),
                d["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect()
}

async fn scheduled_app(backend: Backend) -> (TestApp, Arc<Scripted>) {
    let wechat = Scripted::new(ChannelKind::Wechat, &[], Step::Deliver);
    let channels: Vec<Arc<dyn Channel>> = vec![wechat.clone()];
    let app = spawn_app_with(backend, channels).await;
    app.add_target("wechat", "县政府公众号", "530426", json!({}))
        .await;
    (app, wechat)
}

async fn nothing_goes_out_before_not_before(backend: Backend) {
    let (app, wechat) = scheduled_app(backend).await;
    let id = approved(&app, &item_body("530426")).await;
    let published = publish_with(
        &app,
        &id,
        &json!({"not_before": at(&app, Duration::hours(2)), "not_after": at(&app, Duration::days(1))}),
    )
    .await;
    assert_eq!(published.status, 201, "{}", published.json);
    assert_eq!(
        published.json["not_before"]
            .as_str()
            .map(|s| s.starts_with("2026-09-30T04:00:00")),
        Some(true),
        "{}",
        published.json
    );

    assert_eq!(
        app.deliver_due().await,
        0,
        "nothing is due before the scheduled time"
    );
    app.hub.clock.set(app.hub.clock.now() + Duration::minutes(119));
    assert_eq!(app.deliver_due().await, 0);
    assert!(wechat.calls().is_empty());
    assert_eq!(app.public_get(&format!("/xxgk/items/{id}")).await.status, 404);

    app.hub.clock.set(app.hub.clock.now() + Duration::minutes(1));
    assert_eq!(app.deliver_due().await, 2);
    assert_eq!(wechat.calls().len(), 1);
    assert!(
        states(&app, &id)
            .await
            .iter()
            .all(|(_, state)| state == "delivered")
    );
    assert_eq!(app.public_get(&format!("/xxgk/items/{id}")).await.status, 200);
}

async fn nothing_goes_out_after_not_after(backend: Backend) {
    let (app, wechat) = scheduled_app(backend).await;
    let id = approved(&app, &item_body("530426")).await;
    let published = publish_with(
        &app,
        &id,
        &json!({"not_before": at(&app, Duration::hours(1)), "not_after": at(&app, Duration::hours(2))}),
    )
    .await;
    assert_eq!(published.status, 201, "{}", published.json);
    // The hub was down through the whole window: when it comes back, the notice is stale.
    app.hub.clock.set(app.hub.clock.now() + Duration::hours(3));
    app.deliver_due().await;
    assert!(wechat.calls().is_empty(), "nothing was sent after not_after");
    let states = states(&app, &id).await;
    assert_eq!(states.len(), 2);
    assert!(states.iter().all(|(_, state)| state == "expired"), "{states:?}");
    assert_eq!(app.public_get(&format!("/xxgk/items/{id}")).await.status, 404);
}

on_both_databases! {
    async fn a_schedule_is_checked_and_an_interpretation_waits_for_its_policy(app: TestApp) {
        let id = approved(&app, &item_body("530426")).await;
        let backwards = publish_with(&app, &id, &json!({"not_before": at(&app, Duration::hours(3)), "not_after": at(&app, Duration::hours(2))})).await;
        assert_eq!((backwards.status, backwards.field()), (422, Some("not_after")), "{}", backwards.json);
        let too_far = publish_with(&app, &id, &json!({"not_before": at(&app, Duration::days(400))})).await;
        assert_eq!((too_far.status, too_far.field()), (422, Some("not_before")), "{}", too_far.json);
        let not_a_time = publish_with(&app, &id, &json!({"not_before": "明天上午"})).await;
        assert_eq!((not_a_time.status, not_a_time.field()), (400, Some("not_before")), "{}", not_a_time.json);

        // The policy goes out in two hours; its interpretation may not go out before it.
        let policy = publish_with(&app, &id, &json!({"not_before": at(&app, Duration::hours(2))})).await;
        assert_eq!(policy.status, 201, "{}", policy.json);
        let mut body = item_body("530426");
        body["genre"] = json!("interpretation");
        body["interprets"] = json!(id);
        let interpretation = approved(&app, &body).await;
        let early = publish_with(&app, &interpretation, &json!({})).await;
        assert_eq!(early.status, 409, "{}", early.json);
        assert_eq!(early.json["error"]["code"], "policy_not_published");
        let after = app.send(app.auth(
            "publisher",
            app.client
                .post(format!("{}/api/v1/items/{interpretation}/publish", app.address))
                .header("Idempotency-Key", "interpretation-later")
                .json(&json!({"not_before": at(&app, Duration::hours(3))})),
        ))
        .await;
        assert_eq!(after.status, 201, "{}", after.json);
    }
}

on_both_backends! {
    nothing_goes_out_before_not_before => nothing_goes_out_before_not_before;
    nothing_goes_out_after_not_after => nothing_goes_out_after_not_after;
}
