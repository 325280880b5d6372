//! One scenario per finding of the outside probe (issue 6): access leaks, input bounds,
//! headers. Login abuse has its own file, `login_abuse.rs`.

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, VILLAGE_A, VILLAGE_B, item_body, spawn_app, spawn_app_configured};
use crate::on_both_databases;

const PDF: &[u8] = b"%PDF-1.4\n% Herald test attachment\n";

/// A user created through the API, with an API token; returns the token.
pub async fn user_with_token(app: &TestApp, username: &str, role: &str, area: &str) -> String {
    let created = app
        .post(
            "admin",
            "/api/v1/users",
            &json!({"username": username, "role": role, "area_code": area, "password": format!("{username}-password-1")}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json);
    let id = created.json["user"]["id"].as_str().expect("id").to_owned();
    let token = app
        .post(
            "admin",
            "/api/v1/tokens",
            &json!({"name": "tests", "user_id": id}),
        )
        .await;
    assert_eq!(token.status, 201, "{}", token.json);
    token.json["secret"].as_str().expect("secret").to_owned()
}

async fn get_with(app: &TestApp, token: &str, path: &str) -> crate::helpers::Reply {
    app.send(
        app.client
            .get(format!("{}{path}", app.address))
            .bearer_auth(token),
    )
    .await
}

fn not_public_with_attachment(area: &str, sha256: &str) -> Value {
    let mut body = item_body(area);
    body["disclosure"] = json!("not_public");
    body["legal_reason"] = json!("涉及个人隐私（《条例》第十五条）");
    body["attachments"] = json!([{"sha256": sha256, "filename": "名单.pdf"}]);
    body
}

on_both_databases! {
    async fn an_attachment_is_readable_only_through_an_item_the_caller_may_see(app: TestApp) {
        let uploaded = app.upload("village_a", "application/pdf", PDF.to_vec()).await;
        assert_eq!(uploaded.status, 201, "{}", uploaded.json);
        let sha = uploaded.json["sha256"].as_str().expect("sha256").to_owned();
        let path = format!("/api/v1/attachments/{sha}");

        // Uploaded but named by no item yet: only its uploader reads it.
        assert_eq!(app.get("village_a", &path).await.status, 200);
        let before = app.get("village_b", &path).await;
        assert_eq!(before.status, 404, "{}", before.json);

        app.create_item("village_a", &not_public_with_attachment(VILLAGE_A, &sha)).await;
        let leaked = app.get("village_b", &path).await;
        assert_eq!(leaked.status, 404, "village B reads village A's not_public attachment: {}", leaked.text());
        let missing = app.get("village_b", &format!("/api/v1/attachments/{}", "0".repeat(64))).await;
        assert_eq!(missing.status, leaked.status, "an invisible attachment answers like a missing one");
        assert_eq!(missing.json["error"]["code"], leaked.json["error"]["code"]);
        for reader in ["village_a", "township_publisher", "publisher", "admin"] {
            assert_eq!(app.get(reader, &path).await.status, 200, "{reader} may see the item");
        }
        // Unreferenced uploads stay their uploader's.
        let own = app.upload("village_b", "application/pdf", b"%PDF-1.4\n% village B\n".to_vec()).await;
        let own_sha = own.json["sha256"].as_str().expect("sha256").to_owned();
        assert_eq!(app.get("village_b", &format!("/api/v1/attachments/{own_sha}")).await.status, 200);
        assert_eq!(app.get("village_a", &format!("/api/v1/attachments/{own_sha}")).await.status, 404);
        // The public portal serves it only through a live page: never for a not_public item.
        assert_eq!(app.public_get(&format!("/xxgk/attachments/{sha}")).await.status, 404);
    }

    async fn the_audit_log_is_scoped_like_items(app: TestApp) {
        let township_reviewer = user_with_token(&app, "tr.reviewer", "reviewer", "530426101").await;
        let village_item = app.create_item("village_a", &item_body(VILLAGE_A)).await;
        let county_item = app.create_item("publisher", &item_body("530426")).await;
        let submitted = app.post("publisher", &format!("/api/v1/items/{county_item}/submit"), &json!({})).await;
        let rejected = app.post("reviewer", &format!("/api/v1/items/{county_item}/reject"),
            &json!({"version": submitted.json["current_version"], "comment": "县级机密意见：请补充依据"})).await;
        assert_eq!(rejected.status, 200, "{}", rejected.json);
        let other_township = app.post("admin", "/api/v1/users",
            &json!({"username": "hn.publisher", "role": "publisher", "area_code": "530426102"})).await;
        let other_user = other_township.json["user"]["id"].as_str().expect("id").to_owned();

        let seen = get_with(&app, &township_reviewer, "/api/v1/audit?limit=1000").await;
        assert_eq!(seen.status, 200, "{}", seen.json);
        let entries = seen.json.as_array().expect("entries");
        assert!(entries.iter().any(|e| e["target_id"] == village_item.as_str()), "the township sees its villages' entries");
        for entry in entries {
            let area = entry["area_code"].as_str().unwrap_or_default();
            assert!(area.starts_with("530426101"), "a township reviewer read an entry outside the township: {entry}");
        }
        let text = seen.json.to_string();
        assert!(!text.contains(&county_item), "county item entries leaked");
        assert!(!text.contains("县级机密意见"), "county review comments leaked");
        assert!(!text.contains(&other_user), "another township's user.create leaked");

        let county = app.get("admin", "/api/v1/audit?limit=1000").await;
        let county_text = county.json.to_string();
        assert!(county_text.contains(&county_item) && county_text.contains(&other_user) && county_text.contains(&village_item));
    }

    async fn nobody_who_wrote_any_version_reviews_the_item(app: TestApp) {
        let original = item_body("530426");
        let id = app.create_item("publisher", &original).await;
        let mut edited = original.clone();
        edited["title"] = json!("关于做好2026年秋冬季森林防火工作的通知（修改稿）");
        let by_admin = app.put("admin", &format!("/api/v1/items/{id}"), &edited).await;
        assert_eq!(by_admin.status, 200, "{}", by_admin.json);
        edited["title"] = json!("关于做好2026年秋冬季森林防火工作的通知（定稿）");
        let by_publisher = app.put("publisher", &format!("/api/v1/items/{id}"), &edited).await;
        assert_eq!(by_publisher.json["current_version"], 3);
        let submitted = app.post("publisher", &format!("/api/v1/items/{id}/submit"), &json!({})).await;
        assert_eq!(submitted.status, 200);

        let check = app.post("admin", &format!("/api/v1/items/{id}/confidentiality-check"), &json!({"version": 3, "confirmed": true})).await;
        assert_eq!(check.status, 403, "the admin wrote version 2: {}", check.json);
        let by_reviewer = app.post("reviewer", &format!("/api/v1/items/{id}/confidentiality-check"), &json!({"version": 3, "confirmed": true})).await;
        assert_eq!(by_reviewer.status, 200, "{}", by_reviewer.json);
        let approve = app.post("admin", &format!("/api/v1/items/{id}/approve"), &json!({"version": 3})).await;
        assert_eq!(approve.status, 403, "{}", approve.json);
        let approve = app.post("reviewer", &format!("/api/v1/items/{id}/approve"), &json!({"version": 3})).await;
        assert_eq!(approve.status, 200, "{}", approve.json);
    }

    async fn linking_an_interpretation_reveals_nothing_outside_the_callers_area(app: TestApp) {
        let village_b_policy = app.create_item("village_b", &item_body(VILLAGE_B)).await;
        let county_draft = app.create_item("publisher", &item_body("530426")).await;
        let county_published = app.publish_new(&item_body("530426"), &json!({})).await;
        let nonexistent = uuid::Uuid::now_v7().to_string();

        let attempt = |policy: String| {
            let mut body = item_body(VILLAGE_A);
            body["genre"] = json!("interpretation");
            body["interprets"] = json!(policy);
            body
        };
        let missing = app.post("village_a", "/api/v1/items", &attempt(nonexistent.clone())).await;
        assert_eq!(missing.status, 422, "{}", missing.json);
        assert_eq!(missing.field(), Some("interprets"));
        for hidden in [village_b_policy, county_draft] {
            let answer = app.post("village_a", "/api/v1/items", &attempt(hidden.clone())).await;
            assert_eq!(answer.status, missing.status, "{}", answer.json);
            assert_eq!(answer.field(), missing.field());
            assert_eq!(answer.json["error"]["code"], missing.json["error"]["code"]);
            assert_eq!(
                answer.json["error"]["message"].as_str().expect("message").replace(&hidden, "ID"),
                missing.json["error"]["message"].as_str().expect("message").replace(&nonexistent, "ID"),
            );
        }
        let allowed = app.post("village_a", "/api/v1/items", &attempt(county_published)).await;
        assert_eq!(allowed.status, 201, "a village interprets a published county policy: {}", allowed.json);
    }

    async fn an_expired_item_is_not_published_and_leaves_the_portal_at_its_expiry(app: TestApp) {
        let mut lapsed = item_body("530426");
        lapsed["expires_on"] = json!("2026-09-29");
        let id = app.create_item("publisher", &lapsed).await;
        assert_eq!(app.approve("publisher", "reviewer", &id).await.status, 200);
        let refused = app.publish("publisher", &id, "lapsed").await;
        assert_eq!(refused.status, 422, "{}", refused.json);
        assert_eq!(refused.field(), Some("expires_on"));

        let mut today = item_body("530426");
        today["expires_on"] = json!("2026-09-30");
        let id = app.publish_new(&today, &json!({})).await;
        app.deliver_due().await;
        let page = format!("/xxgk/items/{id}");
        assert_eq!(app.public_get(&page).await.status, 200);
        // 2026-09-30 ends at 16:00 UTC; one second later, before any expiry step has run:
        app.hub.clock.set(Utc.with_ymd_and_hms(2026, 9, 30, 16, 0, 1).single().expect("time"));
        let gone = app.public_get(&page).await;
        assert_eq!(gone.status, 410, "{}", gone.text());
        assert!(!app.public_get("/").await.text().contains(&id));
        assert!(!app.public_get("/feed.xml").await.text().contains(&id));
        app.hub.clock.set(Utc.with_ymd_and_hms(2026, 9, 30, 15, 59, 59).single().expect("time"));
        assert_eq!(app.public_get(&page).await.status, 200, "still live before its expiry");
    }

    async fn offsets_and_limits_beyond_their_bounds_are_refused_naming_the_parameter(app: TestApp) {
        for (path, field) in [
            ("/api/v1/items?offset=9223372036854775808", "offset"),
            ("/api/v1/items?offset=18446744073709551615", "offset"),
            ("/api/v1/items?limit=18446744073709551615", "limit"),
            ("/api/v1/deliveries?offset=9223372036854775808", "offset"),
            ("/api/v1/deliveries?offset=-1", "offset"),
            ("/api/v1/audit?limit=9223372036854775808", "limit"),
            ("/api/v1/audit?after=9223372036854775808", "after"),
        ] {
            let answer = app.get("admin", path).await;
            assert!((400..500).contains(&answer.status), "{path}: {} {}", answer.status, answer.json);
            assert_eq!(answer.field(), Some(field), "{path}: {}", answer.json);
        }
        let item = app.create_item("publisher", &item_body("530426")).await;
        let deep = app.get("admin", &format!("/api/v1/items/{item}/deliveries?offset=9223372036854775808")).await;
        assert_eq!(deep.field(), Some("offset"), "{}", deep.json);
    }

    async fn nul_bytes_are_refused_at_the_edge_alike_on_both_databases(app: TestApp) {
        for (path, field) in [
            ("/search?q=a%00b", "q"),
            ("/xxgk/items/%00", "path"),
            ("/xxgk/attachments/a%00b", "path"),
            ("/xxgk/organs/a%00b", "path"),
        ] {
            let answer = app.public_get(path).await;
            assert_eq!(answer.status, 422, "{path}: {}", answer.text());
            assert_eq!(answer.field(), Some(field), "{path}");
        }
        for path in ["/api/v1/items/a%00b", "/api/v1/items?q=a%00b", "/api/v1/items?area=%00"] {
            let answer = app.get("admin", path).await;
            assert_eq!(answer.status, 422, "{path}: {}", answer.json);
        }
        let login = app.send(app.client.post(format!("{}/api/v1/session", app.address))
            .json(&json!({"username": "ad\u{0}min", "password": "x"}))).await;
        assert_eq!(login.status, 422, "{}", login.json);
        assert_eq!(login.field(), Some("username"));
        let mut body = item_body("530426");
        body["issuers"] = json!(["办公室\u{0}"]);
        let create = app.post("publisher", "/api/v1/items", &body).await;
        assert_eq!(create.status, 422, "{}", create.json);
        assert_eq!(create.field(), Some("issuers[0]"));
        assert_eq!(app.get("admin", "/api/v1/items").await.json["total"], 0, "nothing was stored");
    }

    async fn every_text_field_has_a_limit_answered_with_422_naming_it(app: TestApp) {
        let failures_before = app.get("admin", "/api/v1/audit?limit=1000").await.json.as_array().expect("audit").len();
        let long_name = "a".repeat(1000);
        let login = app.send(app.client.post(format!("{}/api/v1/session", app.address))
            .json(&json!({"username": long_name, "password": "x"}))).await;
        assert_eq!(login.status, 422, "{}", login.json);
        assert_eq!(login.field(), Some("username"));
        let huge = app.send(app.client.post(format!("{}/api/v1/session", app.address))
            .json(&json!({"username": "a".repeat(10 * 1024 * 1024), "password": "x"}))).await;
        assert_eq!(huge.status, 413, "a 10 MB body is refused before it is read into a login");
        let long_password = app.send(app.client.post(format!("{}/api/v1/session", app.address))
            .json(&json!({"username": "admin", "password": "p".repeat(2000)}))).await;
        assert_eq!(long_password.field(), Some("password"));
        let failures_after = app.get("admin", "/api/v1/audit?limit=1000").await.json.as_array().expect("audit").len();
        assert_eq!(failures_before, failures_after, "refused input stores nothing");

        let id = app.create_item("publisher", &item_body("530426")).await;
        let submitted = app.post("publisher", &format!("/api/v1/items/{id}/submit"), &json!({})).await;
        let version = submitted.json["current_version"].clone();
        let too_long_comment = "意".repeat(2001);
        for (step, body) in [
            ("confidentiality-check", json!({"version": version, "confirmed": true, "comment": too_long_comment})),
            ("approve", json!({"version": version, "comment": too_long_comment})),
            ("reject", json!({"version": version, "comment": too_long_comment})),
        ] {
            let answer = app.post("reviewer", &format!("/api/v1/items/{id}/{step}"), &body).await;
            assert_eq!(answer.status, 422, "{step}: {}", answer.json);
            assert_eq!(answer.field(), Some("comment"), "{step}");
        }
        let published = app.publish_new(&item_body("530426"), &json!({})).await;
        let reason = app.post("publisher", &format!("/api/v1/items/{published}/withdraw"), &json!({"reason": "因".repeat(501)})).await;
        assert_eq!(reason.status, 422, "{}", reason.json);
        assert_eq!(reason.field(), Some("reason"));
        assert!(!app.public_get("/xxgk/cleanup").await.text().contains(&"因".repeat(501)));

        let mut doc_no = item_body("530426");
        doc_no["doc_no"] = json!(format!("峨政办发〔2026〕{}号", "1".repeat(200)));
        let answer = app.post("publisher", "/api/v1/items", &doc_no).await;
        assert_eq!((answer.status, answer.field()), (422, Some("doc_no")), "{}", answer.json);

        let config = json!({"note": "x".repeat(20 * 1024)});
        let target = app.post("admin", "/api/v1/targets", &json!({"channel": "portal", "name": "大号配置", "area_code": "530426", "config": config})).await;
        assert_eq!((target.status, target.field()), (422, Some("config")), "{}", target.json);
        let name = app.post("admin", "/api/v1/users", &json!({"username": "dn.user", "display_name": "名".repeat(101), "role": "publisher", "area_code": "530426"})).await;
        assert_eq!((name.status, name.field()), (422, Some("display_name")), "{}", name.json);
    }

    async fn json_bodies_are_exactly_one_application_json_value(app: TestApp) {
        let body = serde_json::to_vec(&item_body("530426")).expect("json");
        let send = |content_type: &'static str, bytes: Vec<u8>| {
            app.client.post(format!("{}/api/v1/items", app.address))
                .bearer_auth(&app.tokens["publisher"]).header("content-type", content_type).body(bytes)
        };
        assert_eq!(app.send(send("application/jsonx", body.clone())).await.status, 415);
        assert_eq!(app.send(send("text/plain", body.clone())).await.status, 415);
        let mut trailing = body.clone();
        trailing.extend_from_slice(b"garbage");
        let answer = app.send(send("application/json", trailing)).await;
        assert_eq!(answer.status, 400, "{}", answer.json);
        let mut two_values = body.clone();
        two_values.extend_from_slice(b" {}");
        assert_eq!(app.send(send("application/json", two_values)).await.status, 400);
        assert_eq!(app.get("admin", "/api/v1/items").await.json["total"], 0);
        assert_eq!(app.send(send("application/json; charset=utf-8", body)).await.status, 201);
    }

    async fn receipts_csv_cells_never_start_a_formula(app: TestApp) {
        app.add_target("portal", "=HYPERLINK(\"http://evil.example\",\"点击\")", "530426", json!({})).await;
        app.add_target("portal", "@SUM(1+1)", "530426", json!({})).await;
        let id = app.publish_new(&item_body("530426"), &json!({})).await;
        let csv = app.get("publisher", &format!("/api/v1/items/{id}/receipts.csv")).await.text();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let mut names = Vec::new();
        for record in reader.records() {
            let record = record.expect("CSV parses");
            for cell in record.iter() {
                assert!(!cell.starts_with(['=', '+', '-', '@']), "formula cell {cell:?} in {csv}");
            }
            names.push(record.get(6).expect("target_name").to_owned());
        }
        assert!(names.iter().any(|n| n == "'=HYPERLINK(\"http://evil.example\",\"点击\")"), "{names:?}");
        assert!(names.iter().any(|n| n == "'@SUM(1+1)"), "{names:?}");
    }

    async fn absolute_links_come_from_the_public_url_never_the_host_header(app: TestApp) {
        app.publish_new(&item_body("530426"), &json!({})).await;
        app.deliver_due().await;
        for (header, value) in [("host", "evil.example\"><x"), ("x-forwarded-host", "evil.example")] {
            let feed = app.send(app.client.get(format!("{}/feed.xml", app.address)).header(header, value)).await.text();
            assert!(!feed.contains("evil.example"), "{feed}");
            assert!(feed.contains(&format!("<link href=\"{}/xxgk/items/", app.address)), "{feed}");
        }
    }

    async fn every_answer_carries_the_security_headers(app: TestApp) {
        let id = app.publish_new(&item_body("530426"), &json!({})).await;
        app.deliver_due().await;
        let answers = [
            app.public_get("/").await,
            app.public_get(&format!("/xxgk/items/{id}")).await,
            app.public_get("/xxgk/items/nothing").await,
            app.public_get("/search?q=a%00").await,
            app.public_get("/feed.xml").await,
            app.public_get("/api/v1/items").await,
            app.get("admin", "/api/v1/items").await,
            app.get("admin", "/api/v1/no-such-thing").await,
            app.public_get("/healthz").await,
        ];
        for answer in answers {
            let csp = answer.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
            assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{} lacks a CSP: {csp}", answer.status);
            assert!(csp.contains("img-src 'self'"), "images only from the hub");
            assert_eq!(answer.headers.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]));
            assert!(answer.headers.get("referrer-policy").is_some());
        }
        let page = app.public_get(&format!("/xxgk/items/{id}")).await.text();
        assert!(!page.contains("<script") && !page.contains("<style") && !page.contains("style="), "no inline script or style");
        assert_eq!(app.public_get("/assets/portal.css").await.status, 200);
    }

    async fn metrics_answer_only_the_configured_token(app: TestApp) {
        let url = format!("{}/metrics", app.address);
        assert_eq!(app.client.get(&url).send().await.expect("sent").status(), 401);
        assert_eq!(app.client.get(&url).bearer_auth("wrong").send().await.expect("sent").status(), 401);
        assert_eq!(app.client.get(&url).bearer_auth(&app.tokens["admin"]).send().await.expect("sent").status(), 401);
        let scraped = app.client.get(&url).bearer_auth(crate::helpers::TEST_METRICS_TOKEN).send().await.expect("sent");
        assert_eq!(scraped.status(), 200);
    }
}

#[tokio::test]
async fn metrics_are_off_without_a_token() {
    let app = spawn_app_configured(Backend::Sqlite, Vec::new(), |settings| {
        settings.server.metrics_token = String::new();
    })
    .await;
    let answer = app.public_get("/metrics").await;
    assert_eq!(answer.status, 404, "{}", answer.json);
}

/// Whether the session cookie a password login sets is marked `Secure`.
async fn session_cookie_is_secure(app: &TestApp) -> bool {
    let login = app
        .client
        .post(format!("{}/api/v1/session", app.address))
        .json(&json!({"username": "publisher", "password": "publisher-password-1"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    login
        .cookies()
        .find(|c| c.name() == "herald_session")
        .expect("cookie")
        .secure()
}

#[tokio::test]
async fn an_https_public_url_makes_the_session_cookie_secure_and_feeds_link_to_it() {
    let app = spawn_app_configured(Backend::Sqlite, Vec::new(), |settings| {
        settings.server.public_url = "https://www.eshan.gov.cn/".into();
    })
    .await;
    assert!(
        session_cookie_is_secure(&app).await,
        "an https site sends the session cookie only over https"
    );
    let feed = app.public_get("/feed.xml").await.text();
    assert!(
        feed.contains("<link href=\"https://www.eshan.gov.cn/\"/>"),
        "{feed}"
    );
    assert!(!session_cookie_is_secure(&spawn_app(Backend::Sqlite).await).await);
}

#[tokio::test]
async fn a_body_over_the_request_limit_is_refused_in_the_api_error_shape() {
    let app = spawn_app_configured(Backend::Sqlite, Vec::new(), |settings| {
        settings.content.max_attachment_bytes = 1024;
    })
    .await;
    let oversized = vec![b'%'; 3 << 20];
    let upload = app
        .upload("publisher", "application/pdf", oversized.clone())
        .await;
    assert_eq!(upload.status, 413);
    assert_eq!(upload.json["error"]["code"], "too_large", "{}", upload.text());
    assert_eq!(upload.field(), Some("body"));
    let id = app.create_item("publisher", &item_body("530426")).await;
    let publish = app
        .send(
            app.auth(
                "publisher",
                app.client
                    .post(format!("{}/api/v1/items/{id}/publish", app.address))
                    .header("Idempotency-Key", "big")
                    .header("content-type", "application/json")
                    .body(oversized),
            ),
        )
        .await;
    assert_eq!(publish.status, 413);
    assert_eq!(publish.json["error"]["code"], "too_large", "{}", publish.text());
}
