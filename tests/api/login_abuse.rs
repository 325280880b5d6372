//! Failed logins: counted atomically, throttled per account and client address with growing
//! delays, never a lock-out of an official at their own computer, lifted by an administrator,
//! and every one in the audit log.

use chrono::Duration;
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, TestApp, spawn_app};
use crate::on_both_databases;

async fn login_from(app: &TestApp, client: &reqwest::Client, username: &str, password: &str) -> Reply {
    app.send(
        client
            .post(format!("{}/api/v1/session", app.address))
            .json(&json!({"username": username, "password": password})),
    )
    .await
}

async fn failures_in_audit(app: &TestApp, username: &str) -> Vec<Value> {
    let log = app.get("admin", "/api/v1/audit?limit=1000").await;
    log.json
        .as_array()
        .expect("audit")
        .iter()
        .filter(|e| e["action"] == "login.failure" && e["detail"]["username"] == username)
        .cloned()
        .collect()
}

fn retry_after(reply: &Reply) -> i64 {
    reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("429 without Retry-After: {}", reply.json))
}

on_both_databases! {
    async fn concurrent_wrong_passwords_get_no_more_checks_than_the_limit(app: TestApp) {
        let limit = app.hub.settings.auth.login_max_failures as usize;
        let mut unauthorised = 0;
        let mut throttled = 0;
        for _ in 0..4 {
            let wave: Vec<_> = (0..50)
                .map(|_| login_from(&app, &app.client, "reviewer", "wrong-password-guess"))
                .collect();
            for reply in futures::future::join_all(wave).await {
                match reply.status {
                    401 => unauthorised += 1,
                    429 => throttled += 1,
                    other => panic!("unexpected {other}: {}", reply.json),
                }
            }
        }
        assert_eq!(unauthorised + throttled, 200);
        assert!(unauthorised <= limit, "{unauthorised} password checks against a limit of {limit}");
        let audited = failures_in_audit(&app, "reviewer").await;
        assert_eq!(audited.len(), unauthorised, "every checked failure is audited, nothing else");
    }

    async fn an_attacker_cannot_lock_an_official_out_of_their_own_computer(app: TestApp) {
        let office = TestApp::client_from("127.0.0.1");
        assert_eq!(login_from(&app, &office, "admin", "admin-password-1").await.status, 200, "the office is now a known client");

        // Five attacking addresses, five wrong passwords each: past the per-address limit on
        // each, and past the account's limit for unknown addresses together.
        let attackers: Vec<_> = (2..=6).map(|i| TestApp::client_from(&format!("127.0.0.{i}"))).collect();
        for attacker in &attackers {
            for _ in 0..5 {
                let reply = login_from(&app, attacker, "admin", "guess-123456").await;
                assert!(matches!(reply.status, 401 | 429), "{}", reply.json);
            }
            let throttled = login_from(&app, attacker, "admin", "guess-123456").await;
            assert_eq!(throttled.status, 429, "{}", throttled.json);
        }
        // The right password from the office still works at once.
        assert_eq!(login_from(&app, &office, "admin", "admin-password-1").await.status, 200);
        // A new address must wait, even with the right password, while the account is under attack.
        let new_place = TestApp::client_from("127.0.0.9");
        let waiting = login_from(&app, &new_place, "admin", "admin-password-1").await;
        assert_eq!(waiting.status, 429, "{}", waiting.json);
        assert_eq!(waiting.json["error"]["code"], "rate_limited");

        // Delays grow for the attacker, rather than a fixed lock.
        let attacker = &attackers[0];
        let first = retry_after(&login_from(&app, attacker, "admin", "guess-123456").await);
        app.hub.clock.set(app.hub.clock.now() + Duration::seconds(first));
        assert_eq!(login_from(&app, attacker, "admin", "guess-123456").await.status, 401);
        let second = retry_after(&login_from(&app, attacker, "admin", "guess-123456").await);
        assert!(second > first, "delays grow: {first}s then {second}s");
        assert!(second <= 15 * 60, "delays are capped");

        // An administrator lifts the delays.
        let me = app.get("admin", "/api/v1/me").await;
        let admin_id = me.json["id"].as_str().expect("id").to_owned();
        let refused = app.post("publisher", &format!("/api/v1/users/{admin_id}/unlock"), &json!({})).await;
        assert_eq!(refused.status, 403);
        let unlocked = app.post("admin", &format!("/api/v1/users/{admin_id}/unlock"), &json!({})).await;
        assert_eq!(unlocked.status, 200, "{}", unlocked.json);
        assert_eq!(login_from(&app, &new_place, "admin", "admin-password-1").await.status, 200);

        // Every failed attempt is in the audit log, with the address and nothing unbounded.
        let audited = failures_in_audit(&app, "admin").await;
        assert_eq!(audited.len(), 21, "20 checked guesses (the limit for unknown addresses together) and one after the first delay");
        for entry in &audited {
            assert!(entry["detail"]["client"].as_str().is_some_and(|c| c.starts_with("127.0.0.")), "{entry}");
            assert!(entry.to_string().len() < 2000, "bounded entry: {entry}");
        }
        assert!(app.get("admin", "/api/v1/audit?limit=1000").await.json.to_string().contains("user.unlock"));
    }

    async fn failures_for_unknown_names_are_throttled_and_audited_too(app: TestApp) {
        for _ in 0..5 {
            assert_eq!(login_from(&app, &app.client, "nobody.here", "guess-123456").await.status, 401);
        }
        assert_eq!(login_from(&app, &app.client, "nobody.here", "guess-123456").await.status, 429);
        let audited = failures_in_audit(&app, "nobody.here").await;
        assert_eq!(audited.len(), 5);
        assert!(audited.iter().all(|e| e["detail"]["reason"] == "unknown_user"));
    }
}

#[tokio::test]
async fn the_cli_lifts_login_delays() {
    let app = spawn_app(Backend::Sqlite).await;
    for _ in 0..6 {
        login_from(&app, &app.client, "reviewer", "guess-123456").await;
    }
    assert_eq!(
        login_from(&app, &app.client, "reviewer", "reviewer-password-1")
            .await
            .status,
        429
    );
    let output = crate::cli::herald()
        .arg("--config")
        .arg(&app.config_path)
        .args(["user", "unlock", "reviewer"])
        .output()
        .expect("herald runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("unlocked reviewer"));
    assert_eq!(
        login_from(&app, &app.client, "reviewer", "reviewer-password-1")
            .await
            .status,
        200
    );
    let missing = crate::cli::herald()
        .arg("--config")
        .arg(&app.config_path)
        .args(["user", "unlock", "no.such.user"])
        .output()
        .expect("herald runs");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no.such.user"));
}
