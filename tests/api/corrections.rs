//! Corrections (更正) of a published item: the edit needs a note, goes through review again
//! (never by whoever wrote it, never without the confidentiality check) while the published
//! version stays live, and on approval goes out as an update on every target the item reached:
//! the portal shows the note and both versions, the media center gets a new ninjs version,
//! WeChat a new article with the old one deleted once the new one is out. The audit chain
//! records it, and a withdrawal afterwards takes down what stands, each once.

use serde_json::{Value, json};

use crate::fake_media_center::FakeCenter;
use crate::helpers::{Backend, TestApp, item_body};
use crate::media_center::{PUSH_KEY, add_center, assert_valid_ninjs};
use crate::on_both_backends;
use crate::wechat::account;

const NOTE: &str = "原文第二段“十一月一日”应为“十月一日”";

async fn deliveries(app: &TestApp, item: &str) -> Vec<Value> {
    app.get("admin", &format!("/api/v1/items/{item}/deliveries"))
        .await
        .json["deliveries"]
        .as_array()
        .expect("rows")
        .clone()
}

/// The item as it was published, corrected: a new title and body, and the note.
fn corrected(mut body: Value, note: Option<&str>) -> Value {
    body["title"] = json!("关于做好2026年秋冬季森林防火工作的通知（更正）");
    body["body"] = json!("<p>各乡镇人民政府：自十月一日起进入森林防火期。</p>");
    if let Some(note) = note {
        body["correction_note"] = json!(note);
    }
    body
}

on_both_backends! {
    a_correction_is_reviewed_again_and_updates_every_target_the_item_reached => |backend: Backend| async move {
        let wx = account(backend).await;
        let app = &wx.app;
        wx.fake.set_hold_publishes(true);
        let center = FakeCenter::start(PUSH_KEY).await;
        let center_target = add_center(app, &center, "县融媒体中心", "2.2").await;
        let original = item_body("530426");
        let item = app.publish_new(&original, &json!({})).await;
        assert_eq!(app.deliver_due().await, 3, "portal, WeChat, media center");
        let first = wx.app.publish_delivery(&item, "target_id", &wx.target).await;
        let first_publish = first["external_id"].as_str().expect("a publish_id").to_owned();
        wx.fake.finish_publish(&first_publish).await;
        wx.fake.wait_for_event_replies(1).await;
        app.apply_receipts().await;
        let first_article = wx.fake.publish(&first_publish).and_then(|job| job.article_id).expect("an article");

        // An edit of a published item must say what it corrects; only then is it a correction.
        let path = format!("/api/v1/items/{item}");
        let bare = app.put("admin", &path, &corrected(original.clone(), None)).await;
        assert_eq!((bare.status, bare.field()), (422, Some("correction_note")), "{}", bare.json);
        let draft = app.put("admin", &path, &corrected(original.clone(), Some(NOTE))).await;
        assert_eq!(draft.status, 200, "{}", draft.json);
        assert_eq!((draft.json["state"].clone(), draft.json["correcting"].clone(), draft.json["published_version"].clone()), (json!("published"), json!("draft"), json!(1)));
        // Until it is approved, the public reads the published version.
        let live = app.public_get(&format!("/xxgk/items/{item}")).await;
        assert!(live.text().contains("秋冬季森林防火工作的通知</h1>") && !live.text().contains("更正说明"), "{}", live.text());

        // Reviewed again: not by its writer, not without the confidentiality check (保密审查).
        let submitted = app.post("admin", &format!("{path}/submit"), &json!({})).await;
        assert_eq!((submitted.status, submitted.json["correcting"].clone()), (200, json!("in_review")), "{}", submitted.json);
        let own = app.post("admin", &format!("{path}/confidentiality-check"), &json!({"version": 2, "confirmed": true})).await;
        assert_eq!(own.status, 403, "{}", own.json);
        let unchecked = app.post("reviewer", &format!("{path}/approve"), &json!({"version": 2})).await;
        assert_eq!((unchecked.status, unchecked.json["error"]["code"].clone()), (409, json!("confidentiality_check_missing")), "{}", unchecked.json);
        // A rejection sends it back to its writer; the published version stays up.
        let rejected = app.post("reviewer", &format!("{path}/reject"), &json!({"version": 2, "comment": "请写明更正的具体位置"})).await;
        assert_eq!((rejected.json["state"].clone(), rejected.json["correcting"].clone()), (json!("published"), json!("draft")), "{}", rejected.json);
        let checked = app.post("admin", &format!("{path}/submit"), &json!({})).await;
        assert_eq!(checked.status, 200, "{}", checked.json);
        let checked = app.post("reviewer", &format!("{path}/confidentiality-check"), &json!({"version": 2, "confirmed": true})).await;
        assert_eq!(checked.status, 200, "{}", checked.json);
        let approved = app.post("reviewer", &format!("{path}/approve"), &json!({"version": 2, "comment": "同意更正"})).await;
        assert_eq!(approved.status, 200, "{}", approved.json);
        assert_eq!((approved.json["state"].clone(), approved.json["published_version"].clone(), approved.json["correcting"].clone()), (json!("published"), json!(2), json!(null)));

        // One update per target the item reached, each naming the delivery it updates.
        let updates: Vec<Value> = deliveries(app, &item).await.into_iter().filter(|d| d["version"] == 2).collect();
        assert_eq!(updates.len(), 3, "{updates:?}");
        for update in &updates {
            let replaced = deliveries(app, &item).await.into_iter().find(|d| d["id"] == update["supersedes_id"]).expect("the delivery it updates");
            assert_eq!((replaced["version"].clone(), replaced["target_id"].clone()), (json!(1), update["target_id"].clone()), "{update}");
        }
        assert_eq!(app.deliver_due().await, 3);

        // The media center: a new ninjs version of the same story, saying what was corrected.
        let pushes = center.pushes();
        assert_eq!(pushes.len(), 2);
        let (first_doc, update_doc) = (&pushes[0].1, &pushes[1].1);
        assert_eq!((first_doc["uri"].clone(), first_doc["version"].clone()), (update_doc["uri"].clone(), json!("1")));
        assert_eq!(update_doc["version"], "2");
        assert!(update_doc["descriptions"].as_array().expect("descriptions").iter().any(|d| d["role"] == "correction" && d["value"].as_str().is_some_and(|v| v.contains(NOTE))), "{update_doc}");
        assert_valid_ninjs(update_doc);

        // WeChat: a new article, saying so first; the old one is deleted once the new one is out.
        assert_eq!((wx.fake.drafts(), wx.fake.submits()), (2, 2));
        let article = wx.fake.draft_log().pop().expect("a draft").articles[0].clone();
        assert!(article.content.starts_with("<p><strong>更正说明（"), "{}", article.content);
        // Its 阅读原文 is its own version's page: each version's article has a link of its own.
        assert!(article.content_source_url.as_deref().is_some_and(|url| url.ends_with(&format!("/xxgk/items/{item}/versions/2"))), "{:?}", article.content_source_url);
        assert_eq!(herald::delivery::try_remove_superseded(&app.hub, 100).await.expect("sweep"), 0, "not before the new article is out");
        let update = deliveries(app, &item).await.into_iter().find(|d| d["channel"] == "wechat" && d["version"] == 2).expect("the WeChat update");
        let second_publish = update["external_id"].as_str().expect("a publish_id").to_owned();
        wx.fake.finish_publish(&second_publish).await;
        wx.fake.wait_for_event_replies(2).await;
        app.apply_receipts().await;
        assert_eq!(herald::delivery::try_remove_superseded(&app.hub, 100).await.expect("sweep"), 1);
        assert_eq!(herald::delivery::try_remove_superseded(&app.hub, 100).await.expect("sweep"), 0, "once");
        app.deliver_due().await;
        assert_eq!(wx.fake.deleted(), std::slice::from_ref(&first_article));

        // Every update is in the record, marked as one.
        let csv = app.get("admin", &format!("/api/v1/items/{item}/receipts.csv")).await.text();
        for target in [&wx.target, &center_target] {
            assert!(csv.lines().any(|l| l.contains(",更正,") && l.contains(target.as_str())), "{target}: {csv}");
        }

        // The portal: the corrected version with its note, and both versions to read.
        let page = app.public_get(&format!("/xxgk/items/{item}")).await.text();
        for shown in ["（更正）</h1>", "更正说明（", NOTE, "版本记录", &format!("/xxgk/items/{item}/versions/1")] {
            assert!(page.contains(shown), "{shown} missing from\n{page}");
        }
        let old = app.public_get(&format!("/xxgk/items/{item}/versions/1")).await;
        assert_eq!(old.status, 200);
        assert!(old.text().contains("秋冬季森林防火工作的通知</h1>") && old.text().contains("已被更正"), "{}", old.text());
        assert_eq!(app.public_get(&format!("/xxgk/items/{item}/versions/3")).await.status, 404);

        // The audit chain records the correction's draft and its publication.
        let actions = app.audit_actions(&item).await;
        for action in ["item.correction_draft", "item.correct"] {
            assert!(actions.iter().any(|a| a == action), "{action} missing from {actions:?}");
        }

        // Withdrawn afterwards: what stands comes down, each once, and old versions with it.
        let withdrawn = app.post("publisher", &format!("{path}/withdraw"), &json!({"reason": "政策已调整"})).await;
        assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
        app.deliver_due().await;
        let second_article = wx.fake.publish(&second_publish).and_then(|job| job.article_id).expect("an article");
        assert_eq!(wx.fake.deleted(), vec![first_article, second_article]);
        let withdrawals: Vec<Value> = deliveries(app, &item).await.into_iter().filter(|d| d["kind"] == "withdraw").collect();
        assert_eq!(withdrawals.len(), 4, "the old article, then the portal, the center and the new article: {withdrawals:?}");
        assert_eq!(app.public_get(&format!("/xxgk/items/{item}/versions/1")).await.status, 410);
    };
}

#[tokio::test]
async fn only_a_published_item_takes_a_correction_note_and_a_correction_stays_public() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let mut body = item_body("530426");
    body["correction_note"] = json!(NOTE);
    let refused = app.post("publisher", "/api/v1/items", &body).await;
    assert_eq!(
        (refused.status, refused.field()),
        (422, Some("correction_note")),
        "{}",
        refused.json
    );

    let item = app.publish_new(&item_body("530426"), &json!({})).await;
    let mut private = corrected(item_body("530426"), Some(NOTE));
    private["disclosure"] = json!("not_public");
    private["legal_reason"] = json!("涉及个人隐私");
    let hidden = app
        .put("publisher", &format!("/api/v1/items/{item}"), &private)
        .await;
    assert_eq!(
        (hidden.status, hidden.field()),
        (422, Some("disclosure")),
        "{}",
        hidden.json
    );
    // Nothing to submit or review until there is a correction.
    let nothing = app
        .post("publisher", &format!("/api/v1/items/{item}/submit"), &json!({}))
        .await;
    assert_eq!(nothing.status, 409, "{}", nothing.json);
}

#[tokio::test]
async fn a_scheduled_item_corrected_before_its_time_goes_out_corrected_at_that_time() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let at = app.hub.clock.now() + chrono::Duration::hours(2);
    let item = app
        .publish_new(&item_body("530426"), &json!({"not_before": at}))
        .await;
    let approved = app
        .correct(&item, &corrected(item_body("530426"), Some(NOTE)))
        .await;
    assert_eq!(approved.status, 200, "{}", approved.json);
    assert_eq!(
        app.deliver_due().await,
        0,
        "the correction keeps the publication's time"
    );
    app.hub.clock.set(at + chrono::Duration::minutes(1));
    assert_eq!(app.deliver_due().await, 1);
    let rows = deliveries(&app, &item).await;
    let states: Vec<(Value, Value)> = rows
        .iter()
        .map(|d| (d["version"].clone(), d["state"].clone()))
        .collect();
    assert!(
        states.contains(&(json!(1), json!("cancelled"))) && states.contains(&(json!(2), json!("delivered"))),
        "{states:?}"
    );
    let page = app.public_get(&format!("/xxgk/items/{item}")).await.text();
    assert!(page.contains("（更正）</h1>"), "{page}");
}
