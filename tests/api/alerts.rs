//! CAP alerts without devices: a message recorded by an attempt that stopped part-way is
//! carried on by the resend, and broadcast once, even by resends racing each other; one that
//! was cancelled before it went out never goes out.

use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::helpers::cap_message;
use crate::on_both_backends;

on_both_backends! {
    a_message_recorded_by_an_interrupted_attempt_is_carried_on_by_the_resend_and_broadcast_once => |backend| async move {
        let app = crate::helpers::spawn_app(backend).await;
        let admin = app.get("admin", "/api/v1/me").await.json["id"].as_str().expect("an id").to_owned();
        // What an attempt that stopped right after recording the message leaves.
        let sql = format!(
            "INSERT INTO cap_alerts (id, sender, identifier, sent, msg_type, item_id, posted_by, received_at) \
             VALUES ('interrupted', 'qx@eshan.gov.cn', 'EW-R', '{0}', 'Alert', NULL, '{admin}', '{0}')",
            app.hub.clock.now().format("%Y-%m-%d %H:%M:%S%.6f+00:00"),
        );
        app.hub.db.execute_raw(Statement::from_string(app.hub.db.get_database_backend(), sql)).await.expect("insert");

        let message = cap_message("EW-R", "Alert", None, "530426101", app.hub.clock.now() + chrono::Duration::hours(3));
        let resent = app.post_cap("admin", "application/cap+xml", message.clone()).await;
        assert_eq!(resent.status, 201, "{}", resent.text());
        let item = resent.json["item_id"].as_str().expect("an item").to_owned();
        let view = app.get("admin", &format!("/api/v1/items/{item}")).await.json;
        assert_eq!((view["state"].clone(), view["content"]["emergency"].clone()), (json!("published"), json!(true)), "{view}");
        assert_eq!(app.audit_actions(&item).await.iter().filter(|a| a.as_str() == "item.create").count(), 1);

        let again = app.post_cap("admin", "application/cap+xml", message).await;
        assert_eq!((again.status, again.json["replayed"].clone(), again.json["item_id"].clone()), (200, json!(true), json!(item)));
        let emergencies = app.get("admin", "/api/v1/items?emergency=true").await.json;
        assert_eq!(emergencies["total"], 1, "one emergency item for the message: {emergencies}");
    };
}

/// What an attempt that stopped right after recording the message leaves: the message,
/// naming `item` (or none yet).
async fn interrupted_message(app: &crate::helpers::TestApp, identifier: &str, item: Option<&str>) {
    let admin = app.get("admin", "/api/v1/me").await.json["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let item = item.map(|i| format!("'{i}'")).unwrap_or_else(|| "NULL".into());
    let sql = format!(
        "INSERT INTO cap_alerts (id, sender, identifier, sent, msg_type, item_id, posted_by, received_at) \
         VALUES ('interrupted-{identifier}', 'qx@eshan.gov.cn', '{identifier}', '{0}', 'Alert', {item}, '{admin}', '{0}')",
        app.hub.clock.now().format("%Y-%m-%d %H:%M:%S%.6f+00:00"),
    );
    app.hub
        .db
        .execute_raw(Statement::from_string(app.hub.db.get_database_backend(), sql))
        .await
        .expect("insert");
}

on_both_backends! {
    an_alert_cancelled_before_it_went_out_never_goes_out_however_often_it_is_resent => |backend| async move {
        let app = crate::helpers::spawn_app(backend).await;
        // The attempt stopped with the alert's item approved, not yet published.
        let mut body = crate::helpers::item_body("530426101");
        body["emergency"] = json!(true);
        let item = app.create_item("publisher", &body).await;
        let approved = app.approve("publisher", "reviewer", &item).await;
        assert_eq!(approved.status, 200, "{}", approved.json);
        interrupted_message(&app, "EW-C", Some(&item)).await;

        let expires = app.hub.clock.now() + chrono::Duration::hours(3);
        let cancel = app.post_cap("admin", "application/cap+xml", cap_message("EW-C-X", "Cancel", Some("EW-C"), "530426101", expires)).await;
        assert!(cancel.status < 300, "{}", cancel.text());
        assert_eq!(cancel.json["withdrawn"], json!([]), "nothing of it was out");
        for _ in 0..2 {
            let resent = app.post_cap("admin", "application/cap+xml", cap_message("EW-C", "Alert", None, "530426101", expires)).await;
            assert_eq!((resent.status, resent.json["error"]["code"].clone()), (409, json!("alert_superseded")), "{}", resent.text());
            assert!(resent.json["error"]["message"].as_str().is_some_and(|m| m.contains("EW-C-X")), "{}", resent.text());
        }
        let view = app.get("admin", &format!("/api/v1/items/{item}")).await.json;
        assert_eq!(view["state"], "approved", "{view}");
        assert!(!app.audit_actions(&item).await.iter().any(|a| a == "item.publish"));
    };
}

on_both_backends! {
    resends_of_an_interrupted_message_racing_each_other_broadcast_one_item => |backend| async move {
        let app = crate::helpers::spawn_app(backend).await;
        interrupted_message(&app, "EW-RACE", None).await;
        let message = cap_message("EW-RACE", "Alert", None, "530426101", app.hub.clock.now() + chrono::Duration::hours(3));
        let (first, second) = tokio::join!(
            app.post_cap("admin", "application/cap+xml", message.clone()),
            app.post_cap("admin", "application/cap+xml", message.clone()),
        );
        // Each either broadcast it or was told another request has it in hand.
        for reply in [&first, &second] {
            assert!(matches!(reply.status, 200 | 201 | 409), "{}", reply.text());
        }
        assert!(first.status == 201 || second.status == 201, "{} / {}", first.text(), second.text());
        let emergencies = app.get("admin", "/api/v1/items?emergency=true").await.json;
        assert_eq!(emergencies["total"], 1, "one item for the message: {emergencies}");
        let item = emergencies["items"][0]["id"].as_str().expect("an item").to_owned();
        assert_eq!(app.get("admin", &format!("/api/v1/items/{item}")).await.json["state"], "published");
        assert_eq!(app.audit_actions(&item).await.iter().filter(|a| a.as_str() == "item.publish").count(), 1);
        let again = app.post_cap("admin", "application/cap+xml", message).await;
        assert_eq!((again.status, again.json["item_id"].clone()), (200, json!(item)));
    };
}

on_both_backends! {
    an_alert_left_out_by_an_attempt_that_stopped_as_its_cancel_came_comes_down_on_the_resend => |backend| async move {
        let app = crate::helpers::spawn_app(backend).await;
        let expires = app.hub.clock.now() + chrono::Duration::hours(3);
        let message = cap_message("EW-LATE", "Alert", None, "530426101", expires);
        let posted = app.post_cap("admin", "application/cap+xml", message.clone()).await;
        assert_eq!(posted.status, 201, "{}", posted.text());
        let item = posted.json["item_id"].as_str().expect("an item").to_owned();
        // What a Cancel that came while the alert was publishing leaves, when the alert's own
        // attempt stopped before it could take its item down: the mark, and the item still out.
        let mark = "UPDATE cap_alerts SET superseded_by = 'EW-LATE-X' WHERE identifier = 'EW-LATE'";
        app.hub.db.execute_raw(Statement::from_string(app.hub.db.get_database_backend(), mark)).await.expect("mark");
        assert_eq!(app.get("admin", &format!("/api/v1/items/{item}")).await.json["state"], "published");

        let resent = app.post_cap("admin", "application/cap+xml", message).await;
        assert_eq!((resent.status, resent.json["error"]["code"].clone()), (409, json!("alert_superseded")), "{}", resent.text());
        assert_eq!(app.get("admin", &format!("/api/v1/items/{item}")).await.json["state"], "withdrawn");
    };
}
