//! No channel stalls another: each channel is claimed by its own loop, and every adapter call
//! ends by its deadline.

use std::{sync::Arc, time::Duration};

use herald_channels::{Channel, ChannelKind};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, item_body, spawn_app_configured};
use crate::on_both_backends;
use crate::scripted::{Scripted, Step};

const WECHAT_DEADLINE_SECONDS: u32 = 2;

async fn delivery_of(app: &TestApp, item: &str, channel: &str) -> Value {
    app.publish_delivery(item, "channel", channel).await
}

/// Polls until the publish delivery leaves `sending`/`pending`, at most `limit`; returns it.
async fn settled(app: &TestApp, item: &str, channel: &str, limit: Duration) -> Value {
    settled_of_kind(app, item, "publish", channel, limit).await
}

/// As `settled`, for the delivery of `kind` (`publish`, `withdraw`).
async fn settled_of_kind(app: &TestApp, item: &str, kind: &str, channel: &str, limit: Duration) -> Value {
    app.delivery_when(item, (kind, "channel", channel), limit, |d| {
        !matches!(d["state"].as_str(), Some("pending" | "sending"))
    })
    .await
}

async fn a_hung_channel_holds_up_only_itself(backend: Backend) {
    let hung = Scripted::new(ChannelKind::Wechat, &[], Step::Hang);
    let channels: Vec<Arc<dyn Channel>> = vec![hung.clone()];
    let app = spawn_app_configured(backend, channels, |settings| {
        settings.delivery.poll_interval_ms = 20;
        settings.delivery.channels.insert(
            ChannelKind::Wechat,
            herald::config::ChannelLimits {
                attempt_deadline_seconds: Some(WECHAT_DEADLINE_SECONDS),
                ..Default::default()
            },
        );
    })
    .await;
    app.add_target("wechat", "县政府公众号", "530426", json!({}))
        .await;
    let stuck = app
        .publish_new(&item_body("530426"), &json!({"channels": ["wechat"]}))
        .await;
    let workers = tokio::spawn(herald::delivery::worker::run_until_stopped(
        app.hub.clone(),
        "worker".into(),
    ));
    for _ in 0..500 {
        if !hung.calls().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hung.calls().len(), 1, "the WeChat call is under way and hangs");

    let mut alarm = item_body("530426");
    alarm["title"] = json!("紧急通知：今晚有强降雨，请低洼地带群众立即转移");
    alarm["emergency"] = json!(true);
    let emergency = app.publish_new(&alarm, &json!({"channels": ["portal"]})).await;
    let portal = settled(&app, &emergency, "portal", Duration::from_secs(30)).await;
    assert_eq!(portal["state"], "delivered", "{portal}");
    assert_eq!(
        delivery_of(&app, &stuck, "wechat").await["state"],
        "sending",
        "the emergency went out while the WeChat call still hung"
    );
    assert_eq!(
        app.public_get(&format!("/xxgk/items/{emergency}")).await.status,
        200
    );

    let wechat = settled(&app, &stuck, "wechat", Duration::from_secs(30)).await;
    assert_eq!(wechat["state"], "unconfirmed", "{wechat}");
    let error = wechat["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("no answer within {WECHAT_DEADLINE_SECONDS} s")),
        "{error}"
    );
    // Unconfirmed is never resent on its own.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hung.calls().len(), 1);
    workers.abort();
}

/// Idle claim loops sleep for an hour here: whatever goes out must have woken them.
async fn a_publish_and_a_withdrawal_wake_the_idle_loops(backend: Backend) {
    let app = spawn_app_configured(backend, Vec::new(), |settings| {
        settings.delivery.poll_interval_ms = 3_600_000;
    })
    .await;
    let workers = tokio::spawn(herald::delivery::worker::run_until_stopped(
        app.hub.clone(),
        "worker".into(),
    ));
    // Their first claims find nothing, and they go to sleep (a claim takes milliseconds).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let id = app
        .publish_new(&item_body("530426"), &json!({"channels": ["portal"]}))
        .await;
    let published = settled(&app, &id, "portal", Duration::from_secs(30)).await;
    assert_eq!(published["state"], "delivered", "{published}");

    // Asleep again after the claim that came up empty behind the publish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let withdrawn = app
        .post(
            "publisher",
            &format!("/api/v1/items/{id}/withdraw"),
            &json!({"reason": "政策调整"}),
        )
        .await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
    let withdrawal = settled_of_kind(&app, &id, "withdraw", "portal", Duration::from_secs(30)).await;
    assert_eq!(withdrawal["state"], "withdrawn", "{withdrawal}");
    workers.abort();
}

on_both_backends! {
    a_hung_channel_holds_up_only_itself => a_hung_channel_holds_up_only_itself;
    a_publish_and_a_withdrawal_wake_the_idle_loops => a_publish_and_a_withdrawal_wake_the_idle_loops;
}
