use std::process::Command;

use sea_orm::ConnectionTrait;

use crate::helpers::{Backend, TestApp, item_body, spawn_app};
use crate::on_both_databases;

fn verify(app: &TestApp) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["audit", "verify", "--config"])
        .arg(&app.config_path)
        .output()
        .expect("herald runs")
}

on_both_databases! {
    async fn audit_verify_names_the_first_edited_row(app: TestApp) {
        let id = app.create_item("publisher", &item_body("530426")).await;
        app.approve("publisher", "reviewer", &id).await;
        let intact = verify(&app);
        assert!(intact.status.success(), "{}", String::from_utf8_lossy(&intact.stderr));
        assert!(String::from_utf8_lossy(&intact.stdout).contains("intact"));

        // Rows 1–12 are the test users and their tokens; 13 is the item's creation.
        app.hub.db.execute_unprepared("UPDATE audit_log SET actor = 'mallory' WHERE seq = 13").await.expect("tamper");
        let broken = verify(&app);
        assert!(!broken.status.success());
        let stderr = String::from_utf8_lossy(&broken.stderr);
        assert!(stderr.contains("row 13"), "{stderr}");
    }

    async fn audit_verify_notices_deleted_and_reordered_rows(app: TestApp) {
        let id = app.create_item("publisher", &item_body("530426")).await;
        app.approve("publisher", "reviewer", &id).await;
        let total = herald::audit::verify(&app.hub.db).await.expect("verify").rows_checked as i64;

        app.hub.db.execute_unprepared(&format!("DELETE FROM audit_log WHERE seq = {total}")).await.expect("delete last");
        let report = herald::audit::verify(&app.hub.db).await.expect("verify");
        assert_eq!(report.first_bad.map(|b| b.seq), Some(total), "deleting the last row is caught by the head");

        app.hub.db.execute_unprepared("UPDATE audit_log SET seq = -5 WHERE seq = 5").await.expect("move");
        app.hub.db.execute_unprepared("UPDATE audit_log SET seq = 5 WHERE seq = 6").await.expect("move");
        app.hub.db.execute_unprepared("UPDATE audit_log SET seq = 6 WHERE seq = -5").await.expect("move");
        let report = herald::audit::verify(&app.hub.db).await.expect("verify");
        assert_eq!(report.first_bad.map(|b| b.seq), Some(5), "swapped rows are caught");
    }
}
