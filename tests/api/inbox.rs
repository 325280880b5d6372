//! Outcomes that arrive later: signed callbacks stored first and answered at once, applied in
//! batches through the transition table (duplicated, reordered, early and unknown receipts),
//! overdue `accepted` deliveries reconciled, and multi-step sends resumed from their checkpoint.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use herald::delivery::inbox::{self, APPLY_BATCH, MAX_CONFIRM_ASKS, UNMATCHED_GRACE};
use herald_channels::ReceiptStatus;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::{
    helpers::{Backend, Reply, TestApp, item_body, spawn_app_with},
    openapi_check::Conformance,
    signed::{self, CONFIRM_WITHIN, Signed, Step},
};

const KEY: &str = "media-center-callback-key-1";

async fn signed_app(backend: Backend, channel: &Arc<Signed>) -> TestApp {
    spawn_app_with(backend, vec![channel.clone()]).await
}

async fn add_signed_target(app: &TestApp, name: &str, key: Option<&str>) -> String {
    let mut body = json!({"channel": "media_center", "name": name, "area_code": "530426", "config": {}});
    if let Some(key) = key {
        body["secrets"] = json!({"callback_key": key});
    }
    let reply = app.post("admin", "/api/v1/targets", &body).await;
    assert_eq!(reply.status, 201, "{}", reply.json);
    reply.json["id"].as_str().expect("id").to_owned()
}

async fn publish_to_media_center(app: &TestApp) -> String {
    app.publish_new(&item_body("530426"), &json!({"channels": ["media_center"]}))
        .await
}

/// POSTs `body` to the target's callback URL, signed with `key` at `at`.
async fn post_callback(app: &TestApp, target: &str, body: &[u8], key: &str, at: DateTime<Utc>) -> Reply {
    let timestamp = at.timestamp().to_string();
    let request = app
        .client
        .post(format!("{}/callbacks/media_center/{target}", app.address))
        .header("content-type", "application/json")
        .header(signed::TIMESTAMP_HEADER, &timestamp)
        .header(signed::SIGNATURE_HEADER, signed::sign(key, &timestamp, body))
        .body(body.to_vec());
    app.send(request).await
}

async fn report(app: &TestApp, target: &str, events: Value) -> Reply {
    let body = json!({ "events": events }).to_string();
    let reply = post_callback(app, target, body.as_bytes(), KEY, app.hub.clock.now()).await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(reply.text(), "success");
    reply
}

/// Stored receipts not yet applied.
async fn waiting_receipts(app: &TestApp) -> i64 {
    scalar(app, "SELECT COUNT(*) FROM receipt_inbox WHERE applied_at IS NULL").await
}

/// Applies the receipts of one applying loop's share until none of it is due.
async fn apply_share(app: &TestApp, share: inbox::ApplierShare) {
    while inbox::try_apply_share(&app.hub, share, APPLY_BATCH)
        .await
        .expect("apply step")
        > 0
    {}
}

/// Applies stored receipts until none is due.
async fn apply_all(app: &TestApp) -> usize {
    let mut total = 0;
    loop {
        let applied = inbox::try_apply_receipts(&app.hub, APPLY_BATCH)
            .await
            .expect("apply step");
        if applied == 0 {
            app.assert_queue_agrees().await;
            return total;
        }
        total += applied;
    }
}

async fn state_of(app: &TestApp, item: &str, target: &str) -> String {
    let delivery = app.publish_delivery(item, "target_id", target).await;
    delivery["state"].as_str().expect("a state").to_owned()
}

async fn numbers(app: &TestApp, sql: &str) -> BTreeMap<Vec<String>, i64> {
    let db = &app.hub.db;
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query");
    rows.into_iter()
        .map(|row| {
            let key = (0..4)
                .map(|i| row.try_get_by_index::<String>(i).expect("text column"))
                .collect();
            (key, row.try_get_by_index::<i64>(4).expect("count"))
        })
        .collect()
}

/// The kept counts equal a recount of the delivery rows.
pub(crate) async fn assert_counts_match(app: &TestApp) {
    let kept = numbers(
        app,
        "SELECT item_id, channel, kind, state, n FROM delivery_counts WHERE n <> 0",
    )
    .await;
    let recount = numbers(
        app,
        "SELECT item_id, channel, kind, state, COUNT(*) FROM deliveries GROUP BY item_id, channel, kind, state",
    )
    .await;
    assert_eq!(kept, recount, "kept counts differ from a recount");
}

/// The one value a query returns.
async fn scalar<T: sea_orm::TryGetable>(app: &TestApp, sql: &str) -> T {
    let db = &app.hub.db;
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("a row");
    row.try_get_by_index::<T>(0).expect("a value of that type")
}

async fn inbox_rows(app: &TestApp) -> i64 {
    scalar::<i64>(app, "SELECT COUNT(*) FROM receipt_inbox").await
}

fn advance(app: &TestApp, by: Duration) {
    let clock = &app.hub.clock;
    clock.set(clock.now() + chrono::Duration::from_std(by).expect("a duration"));
}

/// Starts one worker batch in the background and returns once the channel has been called
/// `calls` times in all: the sends are under way, held at the channel's gate.
async fn batch_under_way(
    app: &TestApp,
    channel: &Signed,
    calls: usize,
    worker_id: &'static str,
) -> tokio::task::JoinHandle<Result<usize, herald::error::Error>> {
    let hub = app.hub.clone();
    let worker = tokio::spawn(async move {
        herald::delivery::worker::try_execute_batch(&hub, &Default::default(), worker_id).await
    });
    for _ in 0..500 {
        if channel.calls().len() == calls {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(channel.calls().len(), calls, "the sends are under way");
    worker
}

async fn duplicated_reordered_and_unknown_receipts(backend: Backend) {
    let channel = Signed::new(&[], Step::Accept);
    let app = signed_app(backend, &channel).await;
    let a = add_signed_target(&app, "融媒体中心甲", Some(KEY)).await;
    let b = add_signed_target(&app, "融媒体中心乙", Some(KEY)).await;
    let c = add_signed_target(&app, "融媒体中心丙", Some(KEY)).await;
    let item = publish_to_media_center(&app).await;
    assert_eq!(app.deliver_due().await, 3);
    for target in [&a, &b, &c] {
        assert_eq!(state_of(&app, &item, target).await, "accepted");
    }
    let ea = Signed::external_id(&channel.key_of(&a));
    let eb = Signed::external_id(&channel.key_of(&b));

    // A: `played` overtakes `delivered`, and the whole callback is sent twice; one event names
    // a delivery Herald never made.
    let events_a = json!([
        {"id": "e-2", "external_id": ea, "status": "played", "at": "2026-09-30T02:05:00Z"},
        {"id": "e-1", "external_id": ea, "status": "delivered", "at": "2026-09-30T02:01:00Z"},
        {"id": "e-3", "external_id": "pub-never-sent", "status": "delivered"},
    ]);
    report(&app, &a, events_a.clone()).await;
    report(&app, &a, events_a.clone()).await;
    // B: the channel refused it after accepting; a late `delivered` cannot undo that.
    report(
        &app,
        &b,
        json!([{"id": "f-1", "external_id": eb, "status": "failed", "code": "rejected", "message": "审核未通过"}]),
    )
    .await;
    assert_eq!(inbox_rows(&app).await, 4, "a resent receipt is stored once");
    assert_eq!(state_of(&app, &item, &a).await, "accepted", "not applied yet");

    assert_eq!(apply_all(&app).await, 4);
    assert_eq!(state_of(&app, &item, &a).await, "played");
    assert_eq!(state_of(&app, &item, &b).await, "failed");
    assert_eq!(state_of(&app, &item, &c).await, "accepted");
    assert_counts_match(&app).await;

    // Sent again after applying, and a `delivered` after `failed`: nothing moves.
    report(&app, &a, events_a).await;
    report(
        &app,
        &b,
        json!([{"id": "f-2", "external_id": eb, "status": "delivered"}]),
    )
    .await;
    apply_all(&app).await;
    assert_eq!(state_of(&app, &item, &a).await, "played");
    assert_eq!(state_of(&app, &item, &b).await, "failed");
    assert_counts_match(&app).await;
    assert_eq!(inbox_rows(&app).await, 5);

    // Every applied receipt joined the delivery's receipt record.
    let csv = app
        .get("admin", &format!("/api/v1/items/{item}/receipts.csv"))
        .await
        .text();
    for kind in [",played,", ",delivered,", ",failed,"] {
        assert!(csv.contains(kind), "{kind} missing from\n{csv}");
    }
    // Each says what it did to the delivery (CSV doubles the JSON's quotes).
    assert!(csv.contains("moved_to: played"), "{csv}");
    assert!(
        csv.lines()
            .any(|l| l.contains("outcome: unchanged") && !l.contains("moved_to")),
        "{csv}"
    );

    // The unknown one waits out its grace (it may have overtaken a record), then is reported.
    let unmatched = "/api/v1/receipts/unmatched";
    assert_eq!(app.get("admin", unmatched).await.json, json!([]));
    advance(&app, UNMATCHED_GRACE + Duration::from_secs(60));
    assert_eq!(apply_all(&app).await, 1);
    let listed = app.get("admin", unmatched).await;
    assert_eq!(listed.status, 200, "{}", listed.json);
    Conformance::new().check_reply("GET", unmatched, &listed);
    let rows = listed.json.as_array().expect("array");
    assert_eq!(rows.len(), 1, "{}", listed.json);
    assert_eq!(rows[0]["correlation"], "pub-never-sent");
    assert_eq!(rows[0]["target_id"], a.as_str());
    assert_eq!(rows[0]["outcome"], "unmatched");
    assert_eq!(rows[0]["raw"]["id"], "e-3");
    assert_eq!(app.get("publisher", unmatched).await.status, 403);
    assert_counts_match(&app).await;
}

async fn receipts_before_the_worker_records(backend: Backend) {
    let channel = Signed::new(&[], Step::HoldThenAccept);
    let app = signed_app(backend, &channel).await;
    let by_key = add_signed_target(&app, "村务屏组", Some(KEY)).await;
    let by_id = add_signed_target(&app, "融媒体中心", Some(KEY)).await;
    let acked = add_signed_target(&app, "村村通大喇叭组", Some(KEY)).await;
    let item = publish_to_media_center(&app).await;
    let worker = batch_under_way(&app, &channel, 3, "slow-worker").await;
    assert_eq!(state_of(&app, &item, &by_key).await, "sending");

    // Both report before the worker has recorded either send.
    let key = channel.key_of(&by_key);
    report(
        &app,
        &by_key,
        json!([{"id": "k-1", "key": key, "status": "delivered"}]),
    )
    .await;
    let external = Signed::external_id(&channel.key_of(&by_id));
    report(
        &app,
        &by_id,
        json!([{"id": "x-1", "external_id": external, "status": "delivered"}]),
    )
    .await;
    let acked_key = channel.key_of(&acked);
    report(
        &app,
        &acked,
        json!([{"id": "a-1", "key": acked_key, "status": "accepted"}]),
    )
    .await;
    apply_all(&app).await;
    assert_eq!(state_of(&app, &item, &acked).await, "accepted");
    assert_eq!(
        state_of(&app, &item, &by_key).await,
        "delivered",
        "a receipt naming the key overtakes the worker's record"
    );
    assert_eq!(
        state_of(&app, &item, &by_id).await,
        "sending",
        "the external id is not recorded yet: the receipt waits for it"
    );
    assert_counts_match(&app).await;

    channel.gate.add_permits(3);
    assert_eq!(worker.await.expect("worker task").expect("worker step"), 3);
    assert_eq!(
        state_of(&app, &item, &by_key).await,
        "delivered",
        "the late record does not undo the receipt"
    );
    assert_eq!(state_of(&app, &item, &by_id).await, "accepted");
    assert_counts_match(&app).await;
    assert_eq!(
        scalar::<i64>(
            &app,
            "SELECT COUNT(*) FROM deliveries WHERE state = 'accepted' AND external_id IS NULL"
        )
        .await,
        0,
        "a record overtaken by a receipt still leaves the channel's id for the send"
    );

    // Put off until the record named its id, it applies now, not at its next recheck.
    apply_all(&app).await;
    assert_eq!(
        state_of(&app, &item, &by_id).await,
        "delivered",
        "the record brought forward the receipt that overtook it"
    );
    assert_counts_match(&app).await;
    assert_eq!(
        app.get("admin", "/api/v1/receipts/unmatched").await.json,
        json!([])
    );
    assert_eq!(
        scalar::<i64>(
            &app,
            "SELECT COUNT(*) FROM deliveries WHERE state = 'accepted' AND id NOT IN (SELECT delivery_id FROM delivery_confirmations)"
        )
        .await,
        0,
        "accepted by a receipt, it still has a time to be asked about"
    );
}

async fn overdue_accepted_deliveries_are_reconciled(backend: Backend) {
    let channel = Signed::new(&[], Step::Accept);
    let app = signed_app(backend, &channel).await;
    let answers = add_signed_target(&app, "融媒体中心甲", Some(KEY)).await;
    let silent = add_signed_target(&app, "融媒体中心乙", Some(KEY)).await;
    let item = publish_to_media_center(&app).await;
    assert_eq!(app.deliver_due().await, 2);
    channel
        .reconcile_answers
        .lock()
        .expect("lock")
        .insert(answers.clone(), ReceiptStatus::Delivered);
    let asks_of = |target: &str| {
        channel
            .reconcile_calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|(t, _)| t == target)
            .count()
    };

    assert_eq!(
        inbox::try_reconcile(&app.hub, 100).await.expect("reconcile"),
        0,
        "not due yet"
    );
    advance(&app, CONFIRM_WITHIN + Duration::from_secs(1));
    assert_eq!(inbox::try_reconcile(&app.hub, 100).await.expect("reconcile"), 2);
    assert_eq!(
        inbox::try_reconcile(&app.hub, 100).await.expect("reconcile"),
        0,
        "asked once"
    );
    assert_eq!(asks_of(&answers), 1);
    let asked_about = channel.reconcile_calls.lock().expect("lock")[0].1.clone();
    assert_eq!(asked_about, Signed::external_id(&channel.key_of(&answers)));
    apply_all(&app).await;
    assert_eq!(state_of(&app, &item, &answers).await, "delivered");
    assert_eq!(state_of(&app, &item, &silent).await, "accepted");
    assert_counts_match(&app).await;

    // A channel that never knows is asked a bounded number of times, then an operator looks.
    for _ in 0..10 {
        advance(&app, Duration::from_secs(7 * 3600));
        inbox::try_reconcile(&app.hub, 100).await.expect("reconcile");
        apply_all(&app).await;
    }
    assert_eq!(asks_of(&silent), MAX_CONFIRM_ASKS as usize);
    assert_eq!(asks_of(&answers), 1, "a settled delivery is not asked again");
    assert_eq!(state_of(&app, &item, &silent).await, "unconfirmed");
    assert_counts_match(&app).await;
}

async fn a_retry_resumes_from_the_checkpoint(backend: Backend) {
    let channel = Signed::new(&[Step::FailAfterDraft, Step::FailAfterDraft], Step::Accept);
    let app = signed_app(backend, &channel).await;
    let target = add_signed_target(&app, "融媒体中心", Some(KEY)).await;
    let item = publish_to_media_center(&app).await;
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(state_of(&app, &item, &target).await, "retrying");
    for _ in 0..2 {
        advance(&app, Duration::from_secs(2 * 3600));
        assert_eq!(app.deliver_due().await, 1);
    }
    assert_eq!(state_of(&app, &item, &target).await, "accepted");
    let seen = channel.checkpoints_seen.lock().expect("lock").clone();
    let draft = Some(json!({"draft": "draft-1"}));
    assert_eq!(
        seen,
        vec![None, draft.clone(), draft],
        "each retry is handed the checkpoint"
    );
    assert_eq!(
        *channel.drafts_created.lock().expect("lock"),
        1,
        "never a second draft"
    );
    assert_counts_match(&app).await;
}

async fn an_operator_retry_after_an_unknown_outcome_resumes_from_its_checkpoint(backend: Backend) {
    let channel = Signed::new(&[Step::UnknownAfterDraft], Step::Accept);
    let app = signed_app(backend, &channel).await;
    let target = add_signed_target(&app, "融媒体中心", Some(KEY)).await;
    let item = publish_to_media_center(&app).await;
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(state_of(&app, &item, &target).await, "unconfirmed");
    let id: String = scalar(
        &app,
        &format!("SELECT id FROM deliveries WHERE target_id = '{target}'"),
    )
    .await;
    let retried = app
        .post("admin", &format!("/api/v1/deliveries/{id}/retry"), &json!({}))
        .await;
    assert_eq!(retried.status, 200, "{}", retried.json);
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(state_of(&app, &item, &target).await, "accepted");
    let seen = channel.checkpoints_seen.lock().expect("lock").clone();
    assert_eq!(seen, vec![None, Some(json!({"draft": "draft-1"}))]);
    assert_eq!(
        *channel.drafts_created.lock().expect("lock"),
        1,
        "never a second draft"
    );
    assert_counts_match(&app).await;
}

/// A retry is a new attempt with its own external id: a late report about the attempt before
/// it (naming that one's id) must not settle the retry while it is in flight.
async fn a_late_report_of_an_earlier_attempt_does_not_settle_a_retry(backend: Backend) {
    let channel = Signed::new(&[Step::Accept], Step::HoldThenAccept);
    let app = signed_app(backend, &channel).await;
    let target = add_signed_target(&app, "融媒体中心", Some(KEY)).await;
    let item = publish_to_media_center(&app).await;
    assert_eq!(app.deliver_due().await, 1);
    let key = channel.key_of(&target);
    let first = Signed::external_id(&key);
    report(
        &app,
        &target,
        json!([{"id": "f-1", "external_id": first, "status": "failed", "code": "rejected", "message": "审核未通过"}]),
    )
    .await;
    apply_all(&app).await;
    assert_eq!(state_of(&app, &item, &target).await, "failed");
    let id = app.publish_delivery(&item, "target_id", &target).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let retried = app
        .post("publisher", &format!("/api/v1/deliveries/{id}/retry"), &json!({}))
        .await;
    assert_eq!(retried.status, 200, "{}", retried.json);

    // The retry is under way (the channel holds its answer) when the first attempt's channel
    // reports again, late: the report is kept, and the retry goes on.
    let worker = batch_under_way(&app, &channel, 2, "retry-worker").await;
    report(
        &app,
        &target,
        json!([{"id": "f-1-again", "external_id": first, "status": "failed", "code": "rejected"}]),
    )
    .await;
    apply_all(&app).await;
    assert_eq!(state_of(&app, &item, &target).await, "sending");
    // The earlier attempt's id stays until the retry records its own: were the retry to end
    // without one, a withdrawal would still need it to take the first post down.
    let kept: String = scalar(
        &app,
        &format!("SELECT external_id FROM deliveries WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(kept, first);
    channel.gate.add_permits(1);
    worker.await.expect("worker task").expect("batch");
    assert_eq!(state_of(&app, &item, &target).await, "accepted");

    // The retry's own report settles it; the late one is listed once its grace is over.
    let second = format!("{first}-2");
    report(
        &app,
        &target,
        json!([{"id": "d-2", "external_id": second, "status": "delivered"}]),
    )
    .await;
    apply_all(&app).await;
    assert_eq!(state_of(&app, &item, &target).await, "delivered");
    advance(&app, UNMATCHED_GRACE + Duration::from_secs(60));
    apply_all(&app).await;
    let unmatched = app.get("admin", "/api/v1/receipts/unmatched").await;
    assert_eq!(unmatched.status, 200, "{}", unmatched.json);
    let dedups: Vec<&str> = unmatched
        .json
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["dedup"].as_str())
        .collect();
    assert_eq!(dedups, vec!["f-1-again"], "{}", unmatched.json);
    assert_counts_match(&app).await;
}

fn assert_error(reply: &Reply, status: u16, code: &str, field: &str) {
    assert_eq!(reply.status, status, "{}", reply.json);
    assert_eq!(reply.content_type().as_deref(), Some("application/json"));
    assert_eq!(reply.json["error"]["code"], code, "{}", reply.json);
    assert_eq!(reply.field(), Some(field), "{}", reply.json);
}

async fn the_callback_route_verifies_stores_and_answers(backend: Backend) {
    let channel = Signed::new(&[], Step::Accept);
    let app = signed_app(backend, &channel).await;
    let target = add_signed_target(&app, "融媒体中心", Some(KEY)).await;
    let keyless = add_signed_target(&app, "未配置密钥", None).await;
    let item = publish_to_media_center(&app).await;
    app.deliver_due().await;
    let external = Signed::external_id(&channel.key_of(&target));
    let body = json!({"events": [{"id": "e-1", "external_id": external, "status": "delivered"}]}).to_string();
    let body = body.as_bytes();
    let now = app.hub.clock.now();

    let wrong_key = post_callback(&app, &target, body, "not-the-key", now).await;
    assert_error(&wrong_key, 401, "unauthenticated", signed::SIGNATURE_HEADER);
    let unsigned = app
        .send(
            app.client
                .post(format!("{}/callbacks/media_center/{target}", app.address))
                .header(signed::TIMESTAMP_HEADER, now.timestamp().to_string())
                .body(body.to_vec()),
        )
        .await;
    assert_error(&unsigned, 401, "unauthenticated", signed::SIGNATURE_HEADER);
    let replayed = post_callback(&app, &target, body, KEY, now - chrono::Duration::seconds(301)).await;
    assert_error(&replayed, 401, "stale", signed::TIMESTAMP_HEADER);
    let no_key = post_callback(&app, &keyless, body, KEY, now).await;
    assert_error(&no_key, 401, "unauthenticated", "secrets.callback_key");
    let not_json = post_callback(&app, &target, b"<xml/>", KEY, now).await;
    assert_error(&not_json, 400, "malformed_request", "body");
    let bad_status =
        json!({"events": [{"id": "e-1", "external_id": external, "status": "lost"}]}).to_string();
    let bad_status = post_callback(&app, &target, bad_status.as_bytes(), KEY, now).await;
    assert_error(&bad_status, 400, "malformed_request", "events[0].status");
    let huge = vec![b' '; 70 * 1024];
    assert_error(
        &post_callback(&app, &target, &huge, KEY, now).await,
        413,
        "too_large",
        "body",
    );
    let get = app
        .send(
            app.client
                .get(format!("{}/callbacks/media_center/{target}", app.address)),
        )
        .await;
    assert_error(&get, 405, "method_not_allowed", "method");
    let put = app
        .send(
            app.client
                .put(format!("{}/callbacks/media_center/{target}", app.address)),
        )
        .await;
    assert_error(&put, 405, "method_not_allowed", "method");
    for (path, field) in [
        (format!("/callbacks/fax/{target}"), "channel"),
        (format!("/callbacks/portal/{target}"), "channel"),
        ("/callbacks/media_center/no-such-target".to_owned(), "target"),
    ] {
        let reply = app
            .send(
                app.client
                    .post(format!("{}{path}", app.address))
                    .body(body.to_vec()),
            )
            .await;
        assert_error(&reply, 404, "not_found", field);
    }
    assert_eq!(
        inbox_rows(&app).await,
        0,
        "nothing of a rejected callback is written"
    );

    let verified = post_callback(&app, &target, body, KEY, now).await;
    assert_eq!(verified.status, 200, "{}", verified.json);
    assert_eq!(verified.text(), "success");
    assert_eq!(verified.content_type().as_deref(), Some("text/plain"));
    assert_eq!(inbox_rows(&app).await, 1, "stored before the answer");
    assert_eq!(waiting_receipts(&app).await, 1);
    assert_eq!(
        state_of(&app, &item, &target).await,
        "accepted",
        "answered before it is applied"
    );
    assert_eq!(apply_all(&app).await, 1);
    assert_eq!(state_of(&app, &item, &target).await, "delivered");
    assert_counts_match(&app).await;
}

/// The hub's applying loops (two on PostgreSQL) each take the receipts of their own share of
/// the targets: a device's reports are all applied by one loop, in order, and side by side
/// the loops apply every receipt once.
async fn applying_loops_split_the_receipts_by_target(backend: Backend) {
    let channel = Signed::new(&[], Step::Accept);
    let app = signed_app(backend, &channel).await;
    let mut targets = Vec::new();
    for i in 0..16 {
        targets.push(add_signed_target(&app, &format!("融媒体中心{i}"), Some(KEY)).await);
    }
    let item = publish_to_media_center(&app).await;
    assert_eq!(app.deliver_due().await, targets.len());
    for target in &targets {
        let external = Signed::external_id(&channel.key_of(target));
        for (id, status) in [("e-1", "delivered"), ("e-2", "played")] {
            report(
                &app,
                target,
                json!([{"id": id, "external_id": external, "status": status}]),
            )
            .await;
        }
    }
    let shares = inbox::ApplierShare::of_hub(&app.hub);
    let expected = match backend {
        Backend::Postgres => 2,
        Backend::Sqlite => 1,
    };
    assert_eq!(shares.len(), expected, "receipt_appliers by default");

    // The first share alone: each target's two reports are applied together or not at all.
    apply_share(&app, shares[0]).await;
    let applied = numbers(
        &app,
        "SELECT target_id, 'x', 'x', 'x', COUNT(*) FROM receipt_inbox WHERE applied_at IS NOT NULL GROUP BY target_id",
    )
    .await;
    assert!(applied.values().all(|n| *n == 2), "{applied:?}");
    if expected > 1 {
        assert!(
            !applied.is_empty() && applied.len() < targets.len(),
            "each share holds some of the 16 targets: {applied:?}"
        );
    }

    // The rest side by side, as the worker runs them.
    futures::future::join_all(shares.iter().map(|share| apply_share(&app, *share))).await;
    for target in &targets {
        assert_eq!(state_of(&app, &item, target).await, "played");
    }
    assert_eq!(waiting_receipts(&app).await, 0);
    assert_eq!(
        scalar::<i64>(
            &app,
            "SELECT COUNT(*) FROM receipt_inbox WHERE outcome = 'applied'"
        )
        .await,
        2 * targets.len() as i64,
        "each report moved its delivery once"
    );
    app.assert_queue_agrees().await;
    assert_counts_match(&app).await;
}

on_both_backends! {
    applying_loops_split_the_receipts_by_target => applying_loops_split_the_receipts_by_target;
    duplicated_reordered_and_unknown_receipts => duplicated_reordered_and_unknown_receipts;
    receipts_before_the_worker_records => receipts_before_the_worker_records;
    overdue_accepted_deliveries_are_reconciled => overdue_accepted_deliveries_are_reconciled;
    an_operator_retry_after_an_unknown_outcome_resumes => an_operator_retry_after_an_unknown_outcome_resumes_from_its_checkpoint;
    a_retry_resumes_from_the_checkpoint => a_retry_resumes_from_the_checkpoint;
    the_callback_route_verifies_stores_and_answers => the_callback_route_verifies_stores_and_answers;
    a_late_report_of_an_earlier_attempt => a_late_report_of_an_earlier_attempt_does_not_settle_a_retry;
}
