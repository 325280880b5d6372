//! CAP alerts without devices: a message recorded by an attempt that stopped part-way is
//! carried on by the resend, and broadcast once.

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
