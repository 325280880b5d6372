//! A publish leases its deliveries to this process's idle claim loop and hands them over in
//! memory (`store::handoff`): they go out without a claim, never twice, and a claim finds
//! them again when the handing over is lost.

use std::sync::Arc;

use chrono::{Duration, SecondsFormat};
use herald::delivery::worker::{InFlight, claim, execute_claimed, try_execute_batch, try_execute_listening};
use herald::store::handoff::Listener;
use herald_channels::{Channel, ChannelKind};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, item_body, second_instance, spawn_app_with};
use crate::inbox::assert_counts_match;
use crate::on_both_backends;
use crate::scripted::{Scripted, Step};

const TARGETS: i64 = 3;
const LOOP_WORKER: &str = "loop-worker";

async fn wechat_app(backend: Backend) -> (TestApp, Arc<Scripted>) {
    let wechat = Scripted::new(ChannelKind::Wechat, &[], Step::Deliver);
    let channels: Vec<Arc<dyn Channel>> = vec![wechat.clone()];
    let app = spawn_app_with(backend, channels).await;
    for i in 0..TARGETS {
        app.add_target("wechat", &format!("公众号{i}"), "530426", json!({}))
            .await;
    }
    (app, wechat)
}

async fn publish(app: &TestApp, options: &Value) -> String {
    app.publish_new(&item_body("530426"), options).await
}

fn to_wechat() -> Value {
    json!({"channels": ["wechat"]})
}

fn advance(app: &TestApp, by: Duration) {
    let clock = &app.hub.clock;
    clock.set(clock.now() + by);
}

/// Moves the clock past the lease a publish or a claim writes now.
fn lapse_the_lease(app: &TestApp) {
    let lease = i64::from(app.hub.settings.delivery.lease_seconds);
    advance(app, Duration::seconds(lease + 1));
}

/// A WeChat claim loop of `LOOP_WORKER` that has gone idle: the next publish is handed to it.
fn idle_loop(app: &TestApp) -> Listener<'_> {
    let listener = app.hub.handoff.listen(ChannelKind::Wechat, LOOP_WORKER);
    listener.set_idle(true);
    listener
}

async fn in_state(app: &TestApp, item: &str, state: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM deliveries WHERE item_id = '{item}' AND state = '{state}'"
    ))
    .await
}

/// Deliveries of `item` written `sending` under `owner`'s lease, their first attempt under way.
async fn leased_to(app: &TestApp, item: &str, owner: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM deliveries WHERE item_id = '{item}' AND state = 'sending' \
         AND lease_owner = '{owner}' AND attempts = 1 AND lease_expires_at IS NOT NULL"
    ))
    .await
}

async fn an_idle_loop_is_handed_what_a_publish_writes(backend: Backend) {
    let (app, wechat) = wechat_app(backend).await;
    let hub = &app.hub;
    let in_flight = InFlight::default();
    let listener = hub.handoff.listen(ChannelKind::Wechat, LOOP_WORKER);

    // A loop still busy is handed nothing: the publish leaves its deliveries to a claim.
    let first = publish(&app, &to_wechat()).await;
    assert_eq!(in_state(&app, &first, "pending").await, TARGETS);
    assert_eq!(
        try_execute_listening(hub, &in_flight, &listener).await.unwrap(),
        3
    );
    assert_eq!(
        try_execute_listening(hub, &in_flight, &listener).await.unwrap(),
        0
    );

    // Idle now (its last pass found nothing): the next publish leases to it.
    let second = publish(&app, &to_wechat()).await;
    assert_eq!(leased_to(&app, &second, LOOP_WORKER).await, TARGETS);
    app.assert_queue_agrees().await;
    assert_counts_match(&app).await;
    assert_eq!(
        try_execute_batch(hub, &in_flight, "another-worker")
            .await
            .unwrap(),
        0,
        "a claim passes over deliveries leased to another worker"
    );
    assert_eq!(wechat.calls().len(), 3, "only the first publish went out yet");
    assert_eq!(
        try_execute_listening(hub, &in_flight, &listener).await.unwrap(),
        3
    );
    assert_eq!(in_state(&app, &second, "delivered").await, TARGETS);
    assert_eq!(wechat.calls().len(), 6);
    assert_eq!(
        try_execute_listening(hub, &in_flight, &listener).await.unwrap(),
        0
    );
    app.assert_queue_agrees().await;
    assert_counts_match(&app).await;

    // A publish that is to wait for its time (定时发布) is never handed over.
    let at = (hub.clock.now() + Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let scheduled = publish(&app, &json!({"channels": ["wechat"], "not_before": at})).await;
    assert_eq!(in_state(&app, &scheduled, "pending").await, TARGETS);
    assert_eq!(
        try_execute_listening(hub, &in_flight, &listener).await.unwrap(),
        0
    );
    assert_eq!(wechat.calls().len(), 6, "nothing goes out before not_before");
    assert_counts_match(&app).await;
}

async fn a_batch_taken_late_is_leased_again_or_left_to_the_claim(backend: Backend) {
    let (app, wechat) = wechat_app(backend).await;
    let hub = &app.hub;
    let in_flight = InFlight::default();
    let listener = idle_loop(&app);

    // Taken past the lease's margin: leased afresh before it is sent.
    let late = publish(&app, &to_wechat()).await;
    advance(&app, Duration::seconds(30));
    assert_eq!(
        try_execute_listening(hub, &in_flight, &listener).await.unwrap(),
        3
    );
    assert_eq!(in_state(&app, &late, "delivered").await, TARGETS);
    assert_eq!(
        try_execute_listening(hub, &in_flight, &listener).await.unwrap(),
        0
    );

    // Taken after the lease lapsed: the claim of the same pass finds the deliveries due and
    // sends each once.
    let lapsed = publish(&app, &to_wechat()).await;
    assert_eq!(leased_to(&app, &lapsed, LOOP_WORKER).await, TARGETS);
    lapse_the_lease(&app);
    assert_eq!(
        try_execute_listening(hub, &in_flight, &listener).await.unwrap(),
        3
    );
    assert_eq!(in_state(&app, &lapsed, "delivered").await, TARGETS);
    assert_eq!(wechat.calls().len(), 6, "each delivery went out once");
    app.assert_queue_agrees().await;
    assert_counts_match(&app).await;
}

async fn a_batch_lost_with_its_process_is_claimed_once_its_lease_lapses(backend: Backend) {
    let (app, wechat) = wechat_app(backend).await;
    let listener = idle_loop(&app);
    let item = publish(&app, &to_wechat()).await;
    assert_eq!(leased_to(&app, &item, LOOP_WORKER).await, TARGETS);
    // The process that held the batch in memory ends; another instance carries on.
    drop(listener);
    let channels: Vec<Arc<dyn Channel>> = vec![wechat.clone()];
    let other = second_instance(&app, channels).await;
    let in_flight = InFlight::default();
    assert_eq!(
        try_execute_batch(&other, &in_flight, "other-worker")
            .await
            .unwrap(),
        0,
        "the lease holds"
    );
    lapse_the_lease(&app);
    assert_eq!(
        try_execute_batch(&other, &in_flight, "other-worker")
            .await
            .unwrap(),
        3
    );
    assert_eq!(in_state(&app, &item, "delivered").await, TARGETS);

    // The batch still in the first hub's memory is no longer its to send.
    let listener = app.hub.handoff.listen(ChannelKind::Wechat, LOOP_WORKER);
    assert_eq!(
        try_execute_listening(&app.hub, &in_flight, &listener)
            .await
            .unwrap(),
        0
    );
    assert_eq!(wechat.calls().len(), 3, "each delivery went out once");
    app.assert_queue_agrees().await;
    assert_counts_match(&app).await;
}

/// Another loop of the same worker claims the deliveries once the publish's lease lapsed; the
/// handed copy, taken after, must not send them again.
async fn a_stale_batch_never_goes_out_beside_a_claim_of_the_same_worker(backend: Backend) {
    let (app, wechat) = wechat_app(backend).await;
    let hub = &app.hub;
    let in_flight = InFlight::default();
    let listener = idle_loop(&app);
    let item = publish(&app, &to_wechat()).await;
    assert_eq!(leased_to(&app, &item, LOOP_WORKER).await, TARGETS);
    lapse_the_lease(&app);
    let claimed = claim(hub, LOOP_WORKER, Some(ChannelKind::Wechat), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3, "the lapsed deliveries are claimed again");
    assert_eq!(
        try_execute_listening(hub, &in_flight, &listener).await.unwrap(),
        0,
        "the handed copy is no longer under the publish's lease"
    );
    assert_eq!(
        execute_claimed(hub, &in_flight, LOOP_WORKER, claimed)
            .await
            .unwrap(),
        3
    );
    assert_eq!(wechat.calls().len(), 3, "each delivery went out once");
    assert_eq!(in_state(&app, &item, "delivered").await, TARGETS);
    app.assert_queue_agrees().await;
    assert_counts_match(&app).await;
}

on_both_backends! {
    a_stale_batch_never_goes_out_beside_a_claim_of_the_same_worker => a_stale_batch_never_goes_out_beside_a_claim_of_the_same_worker;
    an_idle_loop_is_handed_what_a_publish_writes => an_idle_loop_is_handed_what_a_publish_writes;
    a_batch_taken_late_is_leased_again_or_left_to_the_claim => a_batch_taken_late_is_leased_again_or_left_to_the_claim;
    a_batch_lost_with_its_process_is_claimed_once_its_lease_lapses => a_batch_lost_with_its_process_is_claimed_once_its_lease_lapses;
}
