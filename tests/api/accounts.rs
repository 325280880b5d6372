use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app};
use crate::on_both_databases;

async fn login(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/api/v1/session", app.address))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("login sent")
}

on_both_databases! {
    async fn a_password_login_opens_a_session_for_the_console(app: TestApp) {
        let response = login(&app, "publisher", "publisher-password-1").await;
        assert_eq!(response.status(), 200);
        let cookie = response.cookies().find(|c| c.name() == "herald_session").expect("session cookie");
        assert!(cookie.http_only());
        let me = app.client.get(format!("{}/api/v1/me", app.address))
            .header("cookie", format!("herald_session={}", cookie.value())).send().await.expect("me");
        assert_eq!(me.status(), 200);
        let me: serde_json::Value = me.json().await.expect("json");
        assert_eq!(me["role"], "publisher");
        let anonymous = app.client.get(format!("{}/api/v1/me", app.address)).send().await.expect("me");
        assert_eq!(anonymous.status(), 401);
    }

    async fn repeated_failed_logins_are_refused_even_with_the_right_password(app: TestApp) {
        for _ in 0..5 {
            assert_eq!(login(&app, "reviewer", "wrong-password").await.status(), 401);
        }
        assert_eq!(login(&app, "reviewer", "reviewer-password-1").await.status(), 429);
        assert_eq!(login(&app, "publisher", "publisher-password-1").await.status(), 200, "other accounts are unaffected");
    }

    async fn administrators_manage_users_and_disabling_revokes_access(app: TestApp) {
        let refused = app.post("publisher", "/api/v1/users", &json!({"username": "x1", "role": "publisher", "area_code": "530426"})).await;
        assert_eq!(refused.status, 403);
        let bad_scope = app.post("admin", "/api/v1/users", &json!({"username": "op", "role": "village_operator", "area_code": "530426101"})).await;
        assert_eq!(bad_scope.status, 422);
        assert_eq!(bad_scope.field(), Some("area_code"));
        let bad_role = app.post("admin", "/api/v1/users", &json!({"username": "op", "role": "mayor", "area_code": "530426"})).await;
        assert_eq!(bad_role.status, 400);
        assert_eq!(bad_role.field(), Some("role"));

        let created = app.post("admin", "/api/v1/users", &json!({"username": "li.si", "display_name": "李四", "role": "reviewer", "area_code": "530426101"})).await;
        assert_eq!(created.status, 201, "{}", created.json);
        let password = created.json["generated_password"].as_str().expect("generated password").to_owned();
        let user_id = created.json["user"]["id"].as_str().expect("id").to_owned();
        assert_eq!(login(&app, "li.si", &password).await.status(), 200);
        let duplicate = app.post("admin", "/api/v1/users", &json!({"username": "li.si", "role": "reviewer", "area_code": "530426"})).await;
        assert_eq!(duplicate.status, 422);
        assert_eq!(duplicate.field(), Some("username"));

        let token = app.post("admin", "/api/v1/tokens", &json!({"name": "审核终端", "user_id": user_id})).await;
        assert_eq!(token.status, 201, "{}", token.json);
        let secret = token.json["secret"].as_str().expect("secret").to_owned();
        let me = app.client.get(format!("{}/api/v1/me", app.address)).bearer_auth(&secret).send().await.expect("me");
        assert_eq!(me.status(), 200);

        let disabled = app.post("admin", &format!("/api/v1/users/{user_id}/disable"), &json!({})).await;
        assert_eq!(disabled.status, 200, "{}", disabled.json);
        let me = app.client.get(format!("{}/api/v1/me", app.address)).bearer_auth(&secret).send().await.expect("me");
        assert_eq!(me.status(), 401, "a disabled user's token stops working");
        assert_eq!(login(&app, "li.si", &password).await.status(), 401);
    }

    async fn a_one_time_password_must_be_changed_before_anything_else(app: TestApp) {
        let created = app.post("admin", "/api/v1/users", &json!({"username": "wang.wu", "role": "publisher", "area_code": "530426"})).await;
        assert_eq!(created.status, 201, "{}", created.json);
        let one_time = created.json["generated_password"].as_str().expect("generated password").to_owned();
        let user_id = created.json["user"]["id"].as_str().expect("id").to_owned();
        let signed_in = login(&app, "wang.wu", &one_time).await;
        assert_eq!(signed_in.status(), 200);
        let cookie = format!("herald_session={}", signed_in.cookies().find(|c| c.name() == "herald_session").expect("cookie").value());
        let me: serde_json::Value = signed_in.json().await.expect("json");
        assert_eq!(me["must_change_password"], true);
        let call = |method: reqwest::Method, path: &str, body: serde_json::Value| {
            app.client.request(method, format!("{}{path}", app.address)).header("cookie", cookie.clone()).json(&body).send()
        };
        // Nothing but choosing a password of their own.
        let items = call(reqwest::Method::GET, "/api/v1/items", json!(null)).await.expect("items");
        assert_eq!(items.status(), 403);
        let refused: serde_json::Value = items.json().await.expect("json");
        assert_eq!(refused["error"]["code"], "password_change_required", "{refused}");
        for (body, field) in [
            (json!({"current_password": "not-it-at-all-1", "new_password": "森林防火-2026-峨山"}), "current_password"),
            (json!({"current_password": one_time, "new_password": "abcdefghijkl"}), "new_password"),
            (json!({"current_password": one_time, "new_password": "1111111111"}), "new_password"),
            (json!({"current_password": one_time, "new_password": one_time}), "new_password"),
        ] {
            let bad = call(reqwest::Method::POST, "/api/v1/me/password", body).await.expect("change");
            assert_eq!(bad.status(), 422);
            let bad: serde_json::Value = bad.json().await.expect("json");
            assert_eq!(bad["error"]["field"], field, "{bad}");
        }
        let changed = call(reqwest::Method::POST, "/api/v1/me/password", json!({"current_password": one_time, "new_password": "森林防火-2026-峨山"})).await.expect("change");
        assert_eq!(changed.status(), 200);
        assert_eq!(call(reqwest::Method::GET, "/api/v1/items", json!(null)).await.expect("items").status(), 200);
        assert_eq!(login(&app, "wang.wu", &one_time).await.status(), 401, "the one-time password is spent");

        // An administrator resets it: a new one-time password; the sessions and tokens end.
        let token = call(reqwest::Method::POST, "/api/v1/tokens", json!({"name": "办公电脑"})).await.expect("token");
        assert_eq!(token.status(), 201);
        let token: serde_json::Value = token.json().await.expect("json");
        let secret = token["secret"].as_str().expect("secret").to_owned();
        let reset = app.post("admin", &format!("/api/v1/users/{user_id}/password-reset"), &json!({})).await;
        assert_eq!(reset.status, 200, "{}", reset.json);
        let again = reset.json["one_time_password"].as_str().expect("password").to_owned();
        assert_eq!(call(reqwest::Method::GET, "/api/v1/me", json!(null)).await.expect("me").status(), 401);
        let by_token = app.client.get(format!("{}/api/v1/me", app.address)).bearer_auth(&secret).send().await.expect("me");
        assert_eq!(by_token.status(), 401, "a reset revokes the user's tokens");
        let signed_in: serde_json::Value = login(&app, "wang.wu", &again).await.json().await.expect("json");
        assert_eq!(signed_in["must_change_password"], true);
        let not_admin = app.post("publisher", &format!("/api/v1/users/{user_id}/password-reset"), &json!({})).await;
        assert_eq!(not_admin.status, 403);
        // One administrator cannot take over another by resetting their password.
        let other_admin = app.post("admin", "/api/v1/users", &json!({"username": "zhao.liu", "role": "admin", "area_code": "530426"})).await;
        let other_admin = other_admin.json["user"]["id"].as_str().expect("id").to_owned();
        assert_eq!(app.post("admin", &format!("/api/v1/users/{other_admin}/password-reset"), &json!({})).await.status, 403);
        assert!(app.audit_actions(&user_id).await.iter().any(|a| a == "user.password_reset"));
    }

    async fn a_revoked_token_no_longer_authenticates(app: TestApp) {
        let created = app.post("publisher", "/api/v1/tokens", &json!({"name": "脚本"})).await;
        assert_eq!(created.status, 201);
        let id = created.json["token"]["id"].as_str().expect("id").to_owned();
        let secret = created.json["secret"].as_str().expect("secret").to_owned();
        let listed = app.get("publisher", "/api/v1/tokens").await;
        assert!(listed.json.as_array().expect("array").iter().any(|t| t["id"] == id.as_str()));
        assert!(!listed.json.to_string().contains(&secret), "secrets are never listed");
        let revoked = app.client.delete(format!("{}/api/v1/tokens/{id}", app.address)).bearer_auth(&secret).send().await.expect("revoke");
        assert_eq!(revoked.status(), 200);
        let me = app.client.get(format!("{}/api/v1/me", app.address)).bearer_auth(&secret).send().await.expect("me");
        assert_eq!(me.status(), 401);
    }
}
