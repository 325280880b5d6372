//! The WeChat adapter against the fake official-account API: draft → submit → the
//! PUBLISHJOBFINISH event in safe mode → delivered, one draft and one submit; the error-code
//! branches; a lost event settled by asking `freepublish/get`; withdrawal deleting the article;
//! the callback refusing what is not WeChat's.

use herald::delivery::inbox;
use serde_json::json;

use crate::fake_wechat::{EventFault, FakeWechat, SUBMIT};
use crate::helpers::{Backend, TestApp, item_body, spawn_app_configured};
use crate::on_both_backends;

const APP_ID: &str = "wx49f0ab532d5d035a";
const APP_SECRET: &str = "app-secret-峨山";
const TOKEN: &str = "callback-token-峨山";
const ENCODING_AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";

pub(crate) struct Account {
    pub(crate) app: TestApp,
    pub(crate) fake: FakeWechat,
    pub(crate) target: String,
}

pub(crate) async fn account(backend: Backend) -> Account {
    account_sending(backend, json!(null)).await
}

/// An account whose items are mass-sent with `mass_send` (null: published).
async fn account_sending(backend: Backend, mass_send: serde_json::Value) -> Account {
    let fake = FakeWechat::start(APP_ID, APP_SECRET).await;
    let app = spawn_app_configured(backend, Vec::new(), |s| {
        s.server.public_url = "https://www.eshan.gov.cn".into()
    })
    .await;
    fake.set_now(app.hub.clock.now());
    let reply = app
        .post(
            "admin",
            "/api/v1/targets",
            &json!({
                "channel": "wechat", "name": "峨山发布", "area_code": "530426",
                "config": {"app_id": APP_ID, "api_base": fake.base_url, "thumb_media_id": "thumb-cover-1", "mass_send": mass_send},
                "secrets": {"app_secret": APP_SECRET, "token": TOKEN, "encoding_aes_key": ENCODING_AES_KEY},
            }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.json);
    let target = reply.json["id"].as_str().expect("id").to_owned();
    fake.set_callback(
        format!("{}/callbacks/wechat/{target}", app.address),
        TOKEN.into(),
        ENCODING_AES_KEY.into(),
        APP_ID.into(),
        "gh_eshan".into(),
    );
    Account { app, fake, target }
}

impl Account {
    /// Moves the hub's clock on, and the fake WeChat's with it (its events carry its time,
    /// which the callback checks against the hub's).
    pub(crate) fn advance(&self, by: chrono::Duration) {
        self.app.hub.clock.set(self.app.hub.clock.now() + by);
        self.fake.set_now(self.app.hub.clock.now());
    }
}

async fn publish(account: &Account) -> String {
    account
        .app
        .publish_new(&item_body("530426"), &json!({"channels": ["wechat"]}))
        .await
}

on_both_backends! {
    an_item_is_drafted_submitted_once_reported_by_its_event_and_deleted_when_withdrawn => |backend| async move {
        let wx = account(backend).await;
        // Jobs wait until the test finishes them, so the worker's record comes first.
        wx.fake.set_hold_publishes(true);
        wx.fake.set_duplicate_events(2);
        let item = publish(&wx).await;
        assert_eq!(wx.app.deliver_due().await, 1);
        let delivery = wx.app.publish_delivery(&item, "target_id", &wx.target).await;
        assert_eq!(delivery["state"], "accepted", "{delivery}");
        let publish_id = delivery["external_id"].as_str().expect("publish_id").to_owned();
        assert_eq!((wx.fake.drafts(), wx.fake.submits()), (1, 1));
        let draft = wx.fake.draft_log().pop().expect("a draft");
        assert_eq!(draft.articles[0].title, "关于做好2026年秋冬季森林防火工作的通知");
        assert_eq!(draft.articles[0].content_source_url, Some(format!("https://www.eshan.gov.cn/xxgk/items/{item}")));
        assert_eq!(draft.articles[0].thumb_media_id.as_deref(), Some("thumb-cover-1"));

        // The event comes three times, byte for byte (a replay, or WeChat's retries of a push
        // answered late): taken once with `success`, then refused as replayed, stored once.
        wx.fake.finish_publish(&publish_id).await;
        let replies = wx.fake.wait_for_event_replies(3).await;
        assert_eq!((replies[0].status, replies[0].body.as_str()), (200, "success"), "{replies:?}");
        assert!(replies[1..].iter().all(|r| r.status == 401 && r.body.contains("replayed")), "{replies:?}");
        assert_eq!(wx.app.count("SELECT COUNT(*) FROM receipt_inbox").await, 1);
        wx.app.apply_receipts().await;
        assert_eq!(wx.app.publish_delivery(&item, "target_id", &wx.target).await["state"], "delivered");
        let csv = wx.app.get("admin", &format!("/api/v1/items/{item}/receipts.csv")).await.text();
        let job = wx.fake.publish(&publish_id).expect("the job");
        let article_id = job.article_id.clone().expect("an article");
        assert_eq!(csv.lines().filter(|l| l.contains(&article_id)).count(), 1, "{csv}");

        let withdrawn = wx.app.post("publisher", &format!("/api/v1/items/{item}/withdraw"), &json!({"reason": "内容有误"})).await;
        assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
        wx.app.deliver_due().await;
        assert_eq!(wx.fake.deleted(), std::slice::from_ref(&article_id));
        // The record names the article it deleted.
        let view = wx.app.get("admin", &format!("/api/v1/items/{item}/deliveries")).await.json;
        let withdrawal = view["deliveries"].as_array().expect("rows").iter().find(|d| d["kind"] == "withdraw").cloned().expect("a withdrawal");
        assert_eq!((withdrawal["state"].clone(), withdrawal["external_id"].clone()), (json!("withdrawn"), json!(article_id)), "{withdrawal}");
    };
}

#[tokio::test]
async fn each_error_branch_ends_in_the_right_state() {
    let wx = account(Backend::Sqlite).await;
    // A token WeChat no longer takes: renewed once, and the call made again.
    wx.fake.set_hold_publishes(true);
    // (This first one will be refused by the platform's review.)
    wx.fake.set_final_status(4);
    let first = publish(&wx).await;
    assert_eq!(wx.app.deliver_due().await, 1);
    wx.fake.set_final_status(0);
    wx.fake.expire_tokens();
    let second = publish(&wx).await;
    assert_eq!(wx.app.deliver_due().await, 1);
    assert_eq!(
        wx.app.publish_delivery(&second, "target_id", &wx.target).await["state"],
        "accepted"
    );
    assert_eq!(wx.fake.tokens_issued(), 2);

    // No permission (an unverified account): failed for good, with what to do.
    wx.fake.fail_next(SUBMIT, 48001);
    let refused = publish(&wx).await;
    wx.app.deliver_due().await;
    let delivery = wx.app.publish_delivery(&refused, "target_id", &wx.target).await;
    assert_eq!(delivery["state"], "failed", "{delivery}");
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("wechat_48001") && e.contains("认证")),
        "{delivery}"
    );
    // Quota used up: tried again later.
    wx.fake.fail_next(SUBMIT, 45009);
    let throttled = publish(&wx).await;
    wx.app.deliver_due().await;
    assert_eq!(
        wx.app.publish_delivery(&throttled, "target_id", &wx.target).await["state"],
        "retrying"
    );
    let drafts_before = wx.fake.drafts();
    wx.advance(chrono::Duration::minutes(10));
    wx.app.deliver_due().await;
    assert_eq!(
        wx.app.publish_delivery(&throttled, "target_id", &wx.target).await["state"],
        "accepted"
    );
    assert_eq!(wx.fake.drafts(), drafts_before, "the retry reused its draft");

    // Refused by the platform's review: failed, naming the article.
    let first_id = wx.app.publish_delivery(&first, "target_id", &wx.target).await["external_id"]
        .as_str()
        .expect("id")
        .to_owned();
    wx.fake.finish_publish(&first_id).await;
    wx.fake.wait_for_event_replies(1).await;
    wx.app.apply_receipts().await;
    let rejected = wx.app.publish_delivery(&first, "target_id", &wx.target).await;
    assert_eq!(rejected["state"], "failed");
    assert!(
        rejected["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("平台审核不通过")),
        "{rejected}"
    );

    // An event that never comes: after the confirm-by time WeChat is asked, and it settles.
    wx.fake.set_lose_events(true);
    let second_id = wx.app.publish_delivery(&second, "target_id", &wx.target).await["external_id"]
        .as_str()
        .expect("id")
        .to_owned();
    wx.fake.finish_publish(&second_id).await;
    wx.advance(chrono::Duration::minutes(31));
    assert!(inbox::try_reconcile(&wx.app.hub, 100).await.expect("reconcile") >= 1);
    wx.app.apply_receipts().await;
    assert_eq!(
        wx.app.publish_delivery(&second, "target_id", &wx.target).await["state"],
        "delivered"
    );
}

#[tokio::test]
async fn the_callback_takes_only_what_wechat_signed_for_this_account() {
    let wx = account(Backend::Sqlite).await;
    wx.fake.set_hold_publishes(true);
    let mut pushed = 0;
    for fault in [
        EventFault::BadSignature,
        EventFault::WrongAppId,
        EventFault::StaleTimestamp(400),
    ] {
        let item = publish(&wx).await;
        wx.app.deliver_due().await;
        let publish_id = wx.app.publish_delivery(&item, "target_id", &wx.target).await["external_id"]
            .as_str()
            .expect("id")
            .to_owned();
        wx.fake.set_event_fault(Some(fault));
        wx.fake.finish_publish(&publish_id).await;
        pushed += 1;
        let replies = wx.fake.wait_for_event_replies(pushed).await;
        assert_eq!(replies[pushed - 1].status, 401, "{fault:?}: {replies:?}");
        wx.app.apply_receipts().await;
        assert_eq!(
            wx.app.publish_delivery(&item, "target_id", &wx.target).await["state"],
            "accepted",
            "{fault:?} moved nothing"
        );
    }

    // A valid query signature, but a body whose Encrypt is not the one msg_signature covers.
    use herald_channels::wechat::crypto::{AesKey, encrypt, signature};
    let key = AesKey::from_encoding_aes_key(ENCODING_AES_KEY).expect("key");
    let timestamp = wx.app.hub.clock.now().timestamp().to_string();
    let signed_event = encrypt(
        &key,
        b"0123456789abcdef",
        b"<xml><MsgType>event</MsgType></xml>",
        APP_ID,
    );
    let swapped_event = encrypt(
        &key,
        b"fedcba9876543210",
        b"<xml><MsgType>event</MsgType></xml>",
        APP_ID,
    );
    let url = format!(
        "{}/callbacks/wechat/{}?signature={}&timestamp={timestamp}&nonce=7&encrypt_type=aes&msg_signature={}",
        wx.app.address,
        wx.target,
        signature(&[TOKEN, &timestamp, "7"]),
        signature(&[TOKEN, &timestamp, "7", &signed_event]),
    );
    let swapped = reqwest::Client::new()
        .post(url)
        .body(format!("<xml><ToUserName><![CDATA[gh_eshan]]></ToUserName><Encrypt><![CDATA[{swapped_event}]]></Encrypt></xml>"))
        .send()
        .await
        .expect("answers");
    assert_eq!(swapped.status(), 401);
    assert!(swapped.text().await.expect("body").contains("msg_signature"));
    // Signed, but no envelope: malformed, named, nothing stored.
    let garbled = reqwest::Client::new()
        .post(format!(
            "{}/callbacks/wechat/{}?signature={}&timestamp={timestamp}&nonce=8&encrypt_type=aes&msg_signature=00",
            wx.app.address,
            wx.target,
            signature(&[TOKEN, &timestamp, "8"]),
        ))
        .body("not xml at all")
        .send()
        .await
        .expect("answers");
    assert_eq!(garbled.status(), 400);
    assert!(garbled.text().await.expect("body").contains(r#""field":"body""#));
    assert_eq!(wx.app.count("SELECT COUNT(*) FROM receipt_inbox").await, 0);

    // A replay: the same signed request again is refused however valid, on any instance (the
    // key is in the store), until it is stale anyway; then the key is forgotten.
    let item = publish(&wx).await;
    wx.app.deliver_due().await;
    let publish_id = wx.app.publish_delivery(&item, "target_id", &wx.target).await["external_id"]
        .as_str()
        .expect("id")
        .to_owned();
    wx.fake.set_event_fault(None);
    wx.fake.set_duplicate_events(1);
    wx.fake.finish_publish(&publish_id).await;
    let replies = wx.fake.wait_for_event_replies(pushed + 2).await;
    assert_eq!(
        (replies[pushed].status, replies[pushed + 1].status),
        (200, 401),
        "{replies:?}"
    );
    assert!(
        replies[pushed + 1].body.contains(r#""field":"nonce""#),
        "{replies:?}"
    );
    wx.app.apply_receipts().await;
    assert_eq!(
        wx.app.publish_delivery(&item, "target_id", &wx.target).await["state"],
        "delivered"
    );
    assert_eq!(wx.app.count("SELECT COUNT(*) FROM callback_replays").await, 1);
    wx.advance(chrono::Duration::hours(25));
    let (_, forgotten) = herald::workers::try_housekeeping(&wx.app.hub)
        .await
        .expect("housekeeping");
    assert_eq!(forgotten, 1);

    // WeChat checking the URL: the echostr comes back when the signature holds.
    let url_signature = signature(&[TOKEN, &timestamp, "42"]);
    let check = reqwest::get(format!(
        "{}/callbacks/wechat/{}?signature={url_signature}&timestamp={timestamp}&nonce=42&echostr=echo-123",
        wx.app.address, wx.target
    ))
    .await
    .expect("answers");
    assert_eq!(check.status(), 200);
    assert_eq!(check.text().await.expect("body"), "echo-123");
    let forged = reqwest::get(format!(
        "{}/callbacks/wechat/{}?signature=00&timestamp={timestamp}&nonce=42&echostr=echo-123",
        wx.app.address, wx.target
    ))
    .await
    .expect("answers");
    assert_eq!(forged.status(), 401);
}

on_both_backends! {
    a_wechat_target_without_what_it_needs_is_refused_naming_the_field => |backend| async move {
        let app = spawn_app_configured(backend, Vec::new(), |_| {}).await;
        // A channel no adapter serves in this hub (no device link here) is refused at once,
        // not skipped at every publish.
        let unserved = app.post("admin", "/api/v1/targets", &json!({"channel": "loudspeaker", "name": "大村喇叭", "area_code": "530426101001", "config": {}})).await;
        assert_eq!((unserved.status, unserved.field()), (422, Some("channel")), "{}", unserved.json);
        let secrets = json!({"app_secret": APP_SECRET, "token": TOKEN, "encoding_aes_key": ENCODING_AES_KEY});
        for (config, secrets, field) in [
            (json!({"thumb_media_id": "t"}), secrets.clone(), "config.app_id"),
            (json!({"app_id": APP_ID}), secrets.clone(), "config.thumb_media_id"),
            (json!({"app_id": APP_ID, "thumb_media_id": "t", "api_base": "ftp://x"}), secrets.clone(), "config.api_base"),
            (json!({"app_id": APP_ID, "thumb_media_id": "t"}), json!({"app_secret": APP_SECRET, "token": TOKEN}), "secrets.encoding_aes_key"),
        ] {
            let reply = app.post("admin", "/api/v1/targets", &json!({"channel": "wechat", "name": "公众号", "area_code": "530426", "config": config, "secrets": secrets})).await;
            assert_eq!((reply.status, reply.field()), (422, Some(field)), "{}", reply.json);
        }
    };
}

#[tokio::test]
async fn the_preview_names_each_field_that_breaks_wechats_limits_and_such_an_item_is_not_sent() {
    let wx = account(Backend::Sqlite).await;
    // An image WeChat will not take: 1 MB or more.
    let mut large = b"\x89PNG\r\n\x1a\n".to_vec();
    large.resize(1024 * 1024 + 10, 0);
    let sha = wx.app.upload("publisher", "image/png", large).await.json["sha256"]
        .as_str()
        .expect("sha")
        .to_owned();
    let mut body = item_body("530426");
    body["title"] = json!("关于进一步做好2026年秋冬季森林草原防灭火工作和冬春季节安全生产工作的通知");
    body["body"] = json!(format!(
        "<p>现将有关事项通知如下。</p><p><img src=\"/xxgk/attachments/{sha}\" alt=\"图\"></p>"
    ));
    body["attachments"] = json!([{"sha256": sha, "filename": "现场图.png"}]);
    let item = wx.app.publish_new(&body, &json!({"channels": ["wechat"]})).await;
    let preview = wx
        .app
        .get("publisher", &format!("/api/v1/items/{item}/preview/wechat"))
        .await;
    assert_eq!(preview.status, 200, "{}", preview.json);
    let problems = preview.json["payload"]["problems"]
        .as_array()
        .expect("problems")
        .clone();
    let fields: Vec<&str> = problems
        .iter()
        .map(|p| p["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["title", "content"], "{problems:?}");
    assert!(
        problems[0]["message"].as_str().is_some_and(|m| m.contains("32")),
        "{problems:?}"
    );
    assert!(
        problems[1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("现场图.png") && m.contains("1 MB")),
        "{problems:?}"
    );

    wx.app.deliver_due().await;
    let delivery = wx.app.publish_delivery(&item, "target_id", &wx.target).await;
    assert_eq!(delivery["state"], "failed");
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("exceeds_wechat_limits") && e.contains("title")),
        "{delivery}"
    );
    assert_eq!(wx.fake.drafts(), 0, "nothing reached WeChat");
}

on_both_backends! {
    an_account_set_to_mass_send_reaches_a_tag_once_and_records_the_counts => |backend| async move {
        let wx = account_sending(backend, json!({"tag_id": 2})).await;
        let item = publish(&wx).await;
        assert_eq!(wx.app.deliver_due().await, 1);
        let delivery = wx.app.publish_delivery(&item, "target_id", &wx.target).await;
        assert_eq!(delivery["state"], "accepted", "{delivery}");
        let external = delivery["external_id"].as_str().expect("an id").to_owned();
        let sends = wx.fake.mass_sends();
        assert_eq!(sends.len(), 1);
        assert_eq!(external, format!("mass:{}", sends[0].msg_id));
        assert_eq!(sends[0].filter, json!({"is_to_all": false, "tag_id": 2}));
        assert_eq!(wx.fake.submits(), 0, "mass-sent, not published");

        wx.fake.wait_for_event_replies(1).await;
        wx.app.apply_receipts().await;
        assert_eq!(wx.app.publish_delivery(&item, "target_id", &wx.target).await["state"], "delivered");
        let csv = wx.app.get("admin", &format!("/api/v1/items/{item}/receipts.csv")).await.text();
        assert!(csv.contains("sent_count: 75") && csv.contains("error_count: 5"), "{csv}");

        let withdrawn = wx.app.post("publisher", &format!("/api/v1/items/{item}/withdraw"), &json!({"reason": "内容有误"})).await;
        assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
        wx.app.deliver_due().await;
        assert_eq!(wx.fake.mass_deleted(), [(sends[0].msg_id.clone(), 0)]);
    };
}

#[tokio::test]
async fn a_mass_send_refused_by_review_fails_with_the_reason() {
    let wx = account_sending(Backend::Sqlite, json!({"to_all": true})).await;
    wx.fake.set_mass_outcome("err(20001)");
    let item = publish(&wx).await;
    wx.app.deliver_due().await;
    wx.fake.wait_for_event_replies(1).await;
    wx.app.apply_receipts().await;
    let delivery = wx.app.publish_delivery(&item, "target_id", &wx.target).await;
    assert_eq!(delivery["state"], "failed");
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("群发未通过审核") && e.contains("政治")),
        "{delivery}"
    );
    let refused = wx
        .app
        .post(
            "admin",
            "/api/v1/targets",
            &json!({
                "channel": "wechat", "name": "另一个号", "area_code": "530426",
                "config": {"app_id": APP_ID, "thumb_media_id": "t", "mass_send": {"tag_id": "二组"}},
                "secrets": {"app_secret": APP_SECRET, "token": TOKEN, "encoding_aes_key": ENCODING_AES_KEY},
            }),
        )
        .await;
    assert_eq!(
        (refused.status, refused.field()),
        (422, Some("config.mass_send")),
        "{}",
        refused.json
    );
}

/// WeChat answers the submit after the adapter stopped waiting (5 s): the delivery ends
/// unconfirmed, and an operator's retry asks for a look at the platform instead of submitting
/// again.
#[tokio::test]
async fn a_submit_whose_answer_is_lost_is_never_sent_again_and_is_found_once_published() {
    let wx = account(Backend::Sqlite).await;
    wx.fake.set_hold_publishes(true);
    wx.fake
        .set_submit_delay(herald_channels::wechat::api::CALL_TIMEOUT + std::time::Duration::from_secs(1));
    let item = publish(&wx).await;
    wx.app.deliver_due().await;
    let delivery = wx.app.publish_delivery(&item, "target_id", &wx.target).await;
    assert_eq!(delivery["state"], "unconfirmed", "{delivery}");
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("可能已发布")),
        "{delivery}"
    );
    assert_eq!((wx.fake.drafts(), wx.fake.submits()), (1, 1));

    wx.fake.set_submit_delay(std::time::Duration::ZERO);
    let id = delivery["id"].as_str().expect("an id");
    let retried = wx
        .app
        .post("admin", &format!("/api/v1/deliveries/{id}/retry"), &json!({}))
        .await;
    assert!(retried.status < 300, "{}", retried.json);
    wx.app.deliver_due().await;
    let again = wx.app.publish_delivery(&item, "target_id", &wx.target).await;
    assert_eq!(again["state"], "unconfirmed", "{again}");
    assert!(
        again["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("勿重复发布")),
        "{again}"
    );
    assert_eq!(
        (wx.fake.drafts(), wx.fake.submits()),
        (1, 1),
        "no second draft, no second submit"
    );

    // Withdrawn while nobody knows whether it is out: the withdrawal waits for the outcome.
    let withdrawn = wx
        .app
        .post(
            "publisher",
            &format!("/api/v1/items/{item}/withdraw"),
            &json!({"reason": "内容有误"}),
        )
        .await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
    wx.app.deliver_due().await;
    let view = wx
        .app
        .get("admin", &format!("/api/v1/items/{item}/deliveries"))
        .await
        .json;
    let withdrawal = view["deliveries"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|d| d["kind"] == "withdraw")
        .cloned()
        .expect("a withdrawal");
    assert_eq!(withdrawal["state"], "retrying", "{withdrawal}");
    assert!(
        withdrawal["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("awaiting_outcome")),
        "{withdrawal}"
    );
    assert!(wx.fake.deleted().is_empty());

    // WeChat publishes it after all (its event names a publish_id no delivery knows). Asked
    // later, the hub finds the article among those published, by its link and title.
    let job = wx.fake.publishes().pop().expect("the submitted job");
    wx.fake.finish_publish(&job.publish_id).await;
    wx.fake.wait_for_event_replies(1).await;
    wx.advance(chrono::Duration::minutes(31));
    assert_eq!(
        inbox::try_reconcile(&wx.app.hub, 100).await.expect("reconcile"),
        1
    );
    wx.app.apply_receipts().await;
    let article_id = wx
        .fake
        .publish(&job.publish_id)
        .and_then(|job| job.article_id)
        .expect("an article");
    let found = wx.app.publish_delivery(&item, "target_id", &wx.target).await;
    assert_eq!(
        (found["state"].clone(), found["external_id"].clone()),
        (json!("delivered"), json!(format!("article:{article_id}"))),
        "{found}"
    );
    assert_eq!((wx.fake.drafts(), wx.fake.submits()), (1, 1), "still one submit");
    // The withdrawal, due again, deletes the article found.
    wx.advance(chrono::Duration::hours(2));
    wx.app.deliver_due().await;
    assert_eq!(wx.fake.deleted(), vec![article_id]);
}

#[tokio::test]
async fn body_images_are_uploaded_to_wechat_and_pointed_at_there() {
    let wx = account(Backend::Sqlite).await;
    wx.fake.set_hold_publishes(true);
    let mut shas = Vec::new();
    for n in 0..3u8 {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend([n; 64]);
        shas.push(
            wx.app.upload("publisher", "image/png", png).await.json["sha256"]
                .as_str()
                .expect("sha")
                .to_owned(),
        );
    }
    let images: String = shas
        .iter()
        .map(|sha| format!("<p><img src=\"/xxgk/attachments/{sha}\"></p>"))
        .collect();
    let mut body = item_body("530426");
    body["body"] = json!(format!("<p>现场照片如下。</p>{images}"));
    body["attachments"] = json!(
        shas.iter()
            .enumerate()
            .map(|(n, sha)| json!({"sha256": sha, "filename": format!("图{n}.png")}))
            .collect::<Vec<_>>()
    );
    let item = wx.app.publish_new(&body, &json!({"channels": ["wechat"]})).await;
    // Two images per attempt: the first attempt uploads two and waits, the retry the third.
    wx.app.deliver_due().await;
    let first = wx.app.publish_delivery(&item, "target_id", &wx.target).await;
    assert_eq!(first["state"], "retrying", "{first}");
    assert_eq!(wx.fake.uploaded_images(), 2);
    wx.advance(chrono::Duration::minutes(10));
    wx.app.deliver_due().await;
    assert_eq!(
        wx.app.publish_delivery(&item, "target_id", &wx.target).await["state"],
        "accepted"
    );
    assert_eq!(wx.fake.uploaded_images(), 3, "each image uploaded once");
    let draft = wx.fake.draft_log().pop().expect("a draft");
    let content = &draft.articles[0].content;
    assert_eq!(
        content.matches("http://mmbiz.qpic.cn/fake/").count(),
        3,
        "{content}"
    );
    assert!(!content.contains("/xxgk/attachments/"), "{content}");
    // The item's first image is its cover, uploaded once as permanent material.
    let materials = wx.fake.materials();
    assert_eq!(materials.len(), 1, "{materials:?}");
    assert_eq!(draft.articles[0].thumb_media_id.as_ref(), Some(&materials[0]));
}
