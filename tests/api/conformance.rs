//! Every documented operation, called for real on both databases, answers as the generated
//! OpenAPI document says: a documented status, the documented media type and headers, and a
//! body that validates strictly against the documented schema.

use herald_channels::ChannelKind;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, TestApp, cap_message, item_body, spawn_app_with};
use crate::openapi_check::Conformance;
use crate::scripted::{Scripted, Step};

/// Calls `method path` as `user` with an optional JSON body, checks the answer against the
/// operation `template`, and asserts the expected status.
async fn call(
    app: &TestApp,
    doc: &Conformance,
    method: Method,
    user: Option<&str>,
    (template, path): (&str, &str),
    body: Option<&Value>,
    expected: u16,
) -> Reply {
    let reply = app.call(method.clone(), user, path, body).await;
    doc.check_reply(method.as_str(), template, &reply);
    assert_eq!(reply.status, expected, "{method} {path}: {}", reply.json);
    reply
}

fn id_of(reply: &Reply) -> String {
    reply.json["id"].as_str().expect("id").to_owned()
}

async fn scenario(app: TestApp) {
    let doc = Conformance::new();
    let (get, post, put, delete) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
    let a = Some("admin");
    let p = Some("publisher");
    let r = Some("reviewer");

    // System.
    call(&app, &doc, get.clone(), None, ("/healthz", "/healthz"), None, 200).await;
    call(&app, &doc, get.clone(), None, ("/metrics", "/metrics"), None, 401).await;
    let scraped = app
        .send(
            app.client
                .get(format!("{}/metrics", app.address))
                .bearer_auth(crate::helpers::TEST_METRICS_TOKEN),
        )
        .await;
    doc.check_reply("GET", "/metrics", &scraped);
    assert_eq!(scraped.status, 200);
    let served = call(
        &app,
        &doc,
        get.clone(),
        None,
        ("/api/openapi.json", "/api/openapi.json"),
        None,
        200,
    )
    .await;
    assert_eq!(served.json, herald::http::openapi_document());
    call(
        &app,
        &doc,
        get.clone(),
        a,
        ("/api/v1/areas", "/api/v1/areas"),
        None,
        200,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        p,
        ("/api/v1/catalog", "/api/v1/catalog"),
        None,
        200,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        None,
        ("/api/v1/catalog", "/api/v1/catalog"),
        None,
        401,
    )
    .await;

    // Reference data: the 主题分类 vocabulary and the organ list, which administrators edit.
    let topics = ("/api/v1/topics", "/api/v1/topics");
    call(&app, &doc, get.clone(), p, topics, None, 200).await;
    call(&app, &doc, get.clone(), None, topics, None, 401).await;
    let organs = ("/api/v1/organs", "/api/v1/organs");
    call(&app, &doc, get.clone(), r, organs, None, 200).await;
    let archives = json!({"name": "峨山彝族自治县档案馆", "aliases": ["县档案馆"]});
    let made = call(&app, &doc, post.clone(), a, organs, Some(&archives), 201).await;
    call(&app, &doc, post.clone(), a, organs, Some(&archives), 422).await;
    call(
        &app,
        &doc,
        post.clone(),
        p,
        organs,
        Some(&json!({"name": "峨山彝族自治县方志办"})),
        403,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        a,
        organs,
        Some(&json!({"name": 7})),
        400,
    )
    .await;
    let organ = "/api/v1/organs/{id}";
    let organ_at = format!("/api/v1/organs/{}", id_of(&made));
    let patch = Method::PATCH;
    let retire = json!({"aliases": ["县档案馆", "峨山县档案馆"], "retired": true});
    call(
        &app,
        &doc,
        patch.clone(),
        a,
        (organ, &organ_at),
        Some(&retire),
        200,
    )
    .await;
    call(
        &app,
        &doc,
        patch.clone(),
        a,
        (organ, &organ_at),
        Some(&json!({"aliases": ["县水务局"]})),
        422,
    )
    .await;
    call(
        &app,
        &doc,
        patch.clone(),
        p,
        (organ, &organ_at),
        Some(&json!({"retired": false})),
        403,
    )
    .await;
    call(
        &app,
        &doc,
        patch,
        a,
        (organ, "/api/v1/organs/no-such-organ"),
        Some(&json!({"retired": false})),
        404,
    )
    .await;

    // Sessions: sign in, use the cookie, sign out.
    let session = ("/api/v1/session", "/api/v1/session");
    let wrong = json!({"username": "admin", "password": "not-the-password"});
    call(&app, &doc, post.clone(), None, session, Some(&wrong), 401).await;
    call(
        &app,
        &doc,
        post.clone(),
        None,
        session,
        Some(&json!({"username": "admin"})),
        400,
    )
    .await;
    let login = json!({"username": "admin", "password": "admin-password-1"});
    let signed_in = call(&app, &doc, post.clone(), None, session, Some(&login), 200).await;
    let cookie = signed_in.headers[reqwest::header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let me = ("/api/v1/me", "/api/v1/me");
    let with_cookie = |method: Method, path: &str| {
        app.client
            .request(method, format!("{}{path}", app.address))
            .header(reqwest::header::COOKIE, cookie.clone())
    };
    let by_cookie = app.send(with_cookie(get.clone(), "/api/v1/me")).await;
    doc.check_reply("GET", me.0, &by_cookie);
    assert_eq!(by_cookie.status, 200);
    assert_eq!(by_cookie.json["username"], "admin");
    let signed_out = app.send(with_cookie(delete.clone(), "/api/v1/session")).await;
    doc.check_reply("DELETE", session.0, &signed_out);
    assert_eq!(signed_out.status, 204);
    let after = app.send(with_cookie(get.clone(), "/api/v1/me")).await;
    doc.check_reply("GET", me.0, &after);
    assert_eq!(after.status, 401);
    call(&app, &doc, get.clone(), p, me, None, 200).await;

    // Users and tokens.
    let users = ("/api/v1/users", "/api/v1/users");
    call(&app, &doc, get.clone(), a, users, None, 200).await;
    call(&app, &doc, get.clone(), p, users, None, 403).await;
    let clerk = json!({"username": "clerk", "role": "publisher", "area_code": "530426"});
    let generated = call(&app, &doc, post.clone(), a, users, Some(&clerk), 201).await;
    assert!(generated.json["generated_password"].is_string());
    let chosen = json!({"username": "clerk2", "role": "reviewer", "area_code": "530426", "password": "a-long-enough-password-9"});
    let given = call(&app, &doc, post.clone(), a, users, Some(&chosen), 201).await;
    assert!(given.json["generated_password"].is_null());
    call(&app, &doc, post.clone(), a, users, Some(&clerk), 422).await;
    call(
        &app,
        &doc,
        post.clone(),
        p,
        users,
        Some(&json!({"username": "x2", "role": "publisher", "area_code": "530426"})),
        403,
    )
    .await;
    let unknown_field =
        json!({"username": "x3", "role": "publisher", "area_code": "530426", "shoe_size": 42});
    call(&app, &doc, post.clone(), a, users, Some(&unknown_field), 400).await;
    let not_json = app
        .send(
            app.auth(
                "admin",
                app.client
                    .post(format!("{}/api/v1/users", app.address))
                    .body("username=x"),
            ),
        )
        .await;
    doc.check_reply("POST", users.0, &not_json);
    assert_eq!(not_json.status, 415);
    let clerk_id = generated.json["user"]["id"].as_str().expect("id").to_owned();
    let disable = "/api/v1/users/{id}/disable";
    call(
        &app,
        &doc,
        post.clone(),
        a,
        (disable, &format!("/api/v1/users/{clerk_id}/disable")),
        None,
        200,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        a,
        (disable, "/api/v1/users/nobody/disable"),
        None,
        404,
    )
    .await;
    let unlock = "/api/v1/users/{id}/unlock";
    call(
        &app,
        &doc,
        post.clone(),
        a,
        (unlock, &format!("/api/v1/users/{clerk_id}/unlock")),
        None,
        200,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        p,
        (unlock, &format!("/api/v1/users/{clerk_id}/unlock")),
        None,
        403,
    )
    .await;
    let reset = "/api/v1/users/{id}/password-reset";
    let reset_path = format!("/api/v1/users/{clerk_id}/password-reset");
    let one_time = call(&app, &doc, post.clone(), a, (reset, &reset_path), None, 200).await;
    assert!(one_time.json["one_time_password"].is_string());
    call(&app, &doc, post.clone(), p, (reset, &reset_path), None, 403).await;
    let own = "/api/v1/me/password";
    let weak = json!({"current_password": "publisher-password-1", "new_password": "short"});
    call(&app, &doc, post.clone(), p, (own, own), Some(&weak), 422).await;
    let chosen = json!({"current_password": "publisher-password-1", "new_password": "森林防火-2026-峨山"});
    call(&app, &doc, post.clone(), p, (own, own), Some(&chosen), 200).await;
    call(&app, &doc, post.clone(), None, (own, own), Some(&chosen), 401).await;
    let admin_id = call(&app, &doc, get.clone(), a, me, None, 200).await.json["id"]
        .as_str()
        .expect("id")
        .to_owned();
    call(
        &app,
        &doc,
        post.clone(),
        a,
        (disable, &format!("/api/v1/users/{admin_id}/disable")),
        None,
        409,
    )
    .await;

    let tokens = ("/api/v1/tokens", "/api/v1/tokens");
    call(&app, &doc, get.clone(), p, tokens, None, 200).await;
    let token = call(
        &app,
        &doc,
        post.clone(),
        p,
        tokens,
        Some(&json!({"name": "ci"})),
        201,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        p,
        tokens,
        Some(&json!({"name": ""})),
        422,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        a,
        tokens,
        Some(&json!({"name": "x", "user_id": "nobody"})),
        404,
    )
    .await;
    let token_id = token.json["token"]["id"].as_str().expect("id").to_owned();
    let revoke = "/api/v1/tokens/{id}";
    let revoked = call(
        &app,
        &doc,
        delete.clone(),
        p,
        (revoke, &format!("/api/v1/tokens/{token_id}")),
        None,
        200,
    )
    .await;
    assert!(revoked.json["revoked_at"].is_string());
    call(
        &app,
        &doc,
        delete.clone(),
        p,
        (revoke, "/api/v1/tokens/nothing"),
        None,
        404,
    )
    .await;

    // Attachments.
    let uploaded = app
        .upload("publisher", "text/plain", "会议纪要".as_bytes().to_vec())
        .await;
    doc.check_reply("POST", "/api/v1/attachments", &uploaded);
    assert_eq!(uploaded.status, 201, "{}", uploaded.json);
    let sha = uploaded.json["sha256"].as_str().expect("sha").to_owned();
    let bare = app
        .send(
            app.auth(
                "publisher",
                app.client
                    .post(format!("{}/api/v1/attachments", app.address))
                    .body("x"),
            ),
        )
        .await;
    doc.check_reply("POST", "/api/v1/attachments", &bare);
    assert_eq!(bare.status, 422);
    let download = "/api/v1/attachments/{sha256}";
    let file = call(
        &app,
        &doc,
        get.clone(),
        p,
        (download, &format!("/api/v1/attachments/{sha}")),
        None,
        200,
    )
    .await;
    assert_eq!(file.text(), "会议纪要");
    call(
        &app,
        &doc,
        get.clone(),
        p,
        (download, "/api/v1/attachments/00"),
        None,
        404,
    )
    .await;

    // Items through the workflow.
    let items = ("/api/v1/items", "/api/v1/items");
    let mut body = item_body("530426");
    body["attachments"] = json!([{"sha256": sha, "filename": "纪要.txt"}]);
    let created = call(&app, &doc, post.clone(), p, items, Some(&body), 201).await;
    let id = id_of(&created);
    let mut invalid = item_body("530426");
    invalid["written_date"] = json!("2026-13-01");
    call(&app, &doc, post.clone(), p, items, Some(&invalid), 400).await;
    call(
        &app,
        &doc,
        post.clone(),
        p,
        items,
        Some(&item_body("999999")),
        422,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        r,
        items,
        Some(&item_body("530426")),
        403,
    )
    .await;
    call(&app, &doc, get.clone(), p, items, None, 200).await;
    call(
        &app,
        &doc,
        get.clone(),
        p,
        ("/api/v1/items", "/api/v1/items?state=draft&q=森林&limit=5"),
        None,
        200,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        p,
        ("/api/v1/items", "/api/v1/items?limit=0"),
        None,
        422,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        p,
        ("/api/v1/items", "/api/v1/items?colour=red"),
        None,
        400,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        Some("village_a"),
        ("/api/v1/items", "/api/v1/items?area=530426"),
        None,
        403,
    )
    .await;

    let item = "/api/v1/items/{id}";
    let at = |suffix: &str| format!("/api/v1/items/{id}{suffix}");
    call(&app, &doc, get.clone(), p, (item, &at("")), None, 200).await;
    call(
        &app,
        &doc,
        get.clone(),
        p,
        (item, "/api/v1/items/none"),
        None,
        404,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        Some("village_a"),
        (item, &at("")),
        None,
        403,
    )
    .await;
    let mut edited = body.clone();
    edited["title"] = json!("关于做好2026年秋冬季森林防火工作的补充通知");
    call(&app, &doc, put.clone(), p, (item, &at("")), Some(&edited), 200).await;
    call(&app, &doc, put.clone(), p, (item, &at("")), Some(&edited), 409).await;
    call(
        &app,
        &doc,
        get.clone(),
        p,
        ("/api/v1/items/{id}/versions", &at("/versions")),
        None,
        200,
    )
    .await;
    let version = "/api/v1/items/{id}/versions/{version}";
    call(
        &app,
        &doc,
        get.clone(),
        p,
        (version, &at("/versions/2")),
        None,
        200,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        p,
        (version, &at("/versions/9")),
        None,
        404,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        p,
        (version, &at("/versions/two")),
        None,
        422,
    )
    .await;

    let submit = "/api/v1/items/{id}/submit";
    call(&app, &doc, post.clone(), p, (submit, &at("/submit")), None, 200).await;
    call(&app, &doc, post.clone(), p, (submit, &at("/submit")), None, 409).await;
    let approve = "/api/v1/items/{id}/approve";
    call(
        &app,
        &doc,
        post.clone(),
        r,
        (approve, &at("/approve")),
        Some(&json!({"version": 2})),
        409,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        p,
        (approve, &at("/approve")),
        Some(&json!({"version": 2})),
        403,
    )
    .await;
    let check = "/api/v1/items/{id}/confidentiality-check";
    call(
        &app,
        &doc,
        post.clone(),
        r,
        (check, &at("/confidentiality-check")),
        Some(&json!({"version": 1, "confirmed": true})),
        422,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        r,
        (check, &at("/confidentiality-check")),
        Some(&json!({"version": 2, "confirmed": true})),
        200,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        r,
        (approve, &at("/approve")),
        Some(&json!({"version": 2, "comment": "同意"})),
        200,
    )
    .await;

    let rejected_id = app.create_item("publisher", &item_body("530426")).await;
    app.post(
        "publisher",
        &format!("/api/v1/items/{rejected_id}/submit"),
        &json!({}),
    )
    .await;
    let reject = "/api/v1/items/{id}/reject";
    let reject_at = format!("/api/v1/items/{rejected_id}/reject");
    call(
        &app,
        &doc,
        post.clone(),
        r,
        (reject, &reject_at),
        Some(&json!({"version": 1, "comment": " "})),
        422,
    )
    .await;
    let back = call(
        &app,
        &doc,
        post.clone(),
        r,
        (reject, &reject_at),
        Some(&json!({"version": 1, "comment": "请补充文号"})),
        200,
    )
    .await;
    assert_eq!(back.json["review_comment"], "请补充文号");

    // Targets, preview and publishing.
    let targets = ("/api/v1/targets", "/api/v1/targets");
    let good = json!({"channel": "wechat", "name": "峨山发布", "area_code": "530426", "config": {}});
    let good_id = id_of(&call(&app, &doc, post.clone(), a, targets, Some(&good), 201).await);
    let bad =
        json!({"channel": "wechat", "name": "失效账号", "area_code": "530426", "config": {"fail": true}});
    let bad_id = id_of(&call(&app, &doc, post.clone(), a, targets, Some(&bad), 201).await);
    call(&app, &doc, post.clone(), p, targets, Some(&good), 403).await;
    call(
        &app,
        &doc,
        post.clone(),
        a,
        targets,
        Some(&json!({"channel": "wechat", "name": "", "area_code": "530426"})),
        422,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        a,
        targets,
        Some(&json!({"channel": "fax", "name": "x", "area_code": "530426"})),
        400,
    )
    .await;
    call(&app, &doc, get.clone(), p, targets, None, 200).await;

    // Devices: registered with a once-shown credential, listed, revoked.
    let devices = ("/api/v1/devices", "/api/v1/devices");
    let speaker = json!({"channel": "loudspeaker", "name": "大村喇叭", "area_code": "530426101001", "device_id": "ls-conf-1", "group": "一组"});
    let issued = call(&app, &doc, post.clone(), a, devices, Some(&speaker), 201).await;
    assert!(
        issued.json["credential"]
            .as_str()
            .is_some_and(|c| c.starts_with("hdev_"))
    );
    call(&app, &doc, post.clone(), a, devices, Some(&speaker), 422).await;
    call(&app, &doc, post.clone(), p, devices, Some(&speaker), 403).await;
    call(
        &app,
        &doc,
        post.clone(),
        a,
        devices,
        Some(&json!({"channel": "portal", "name": "x", "area_code": "530426"})),
        422,
    )
    .await;
    call(&app, &doc, get.clone(), p, devices, None, 200).await;
    let revoke = "/api/v1/devices/{id}/revoke";
    let revoke_at = "/api/v1/devices/ls-conf-1/revoke";
    call(&app, &doc, post.clone(), p, (revoke, revoke_at), None, 403).await;
    call(&app, &doc, post.clone(), a, (revoke, revoke_at), None, 200).await;
    call(&app, &doc, post.clone(), a, (revoke, revoke_at), None, 409).await;
    call(
        &app,
        &doc,
        post.clone(),
        a,
        (revoke, "/api/v1/devices/ls-nobody/revoke"),
        None,
        404,
    )
    .await;

    let reach = "/api/v1/items/{id}/targets";
    let reached = call(
        &app,
        &doc,
        get.clone(),
        p,
        (reach, &at("/targets?channels=wechat")),
        None,
        200,
    )
    .await;
    assert_eq!(reached.json.as_array().map(Vec::len), Some(2), "{}", reached.json);
    call(
        &app,
        &doc,
        get.clone(),
        p,
        (reach, &at("/targets?channels=fax")),
        None,
        422,
    )
    .await;
    let preview = "/api/v1/items/{id}/preview/{channel}";
    call(
        &app,
        &doc,
        get.clone(),
        p,
        (preview, &at("/preview/portal")),
        None,
        200,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        p,
        (preview, &at("/preview/wechat")),
        None,
        200,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        p,
        (preview, &at("/preview/fax")),
        None,
        422,
    )
    .await;

    let publish = "/api/v1/items/{id}/publish";
    let publish_request = |key: Option<&str>, body: &Value| {
        let mut request = app
            .client
            .post(format!("{}{}", app.address, at("/publish")))
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        app.auth("publisher", request)
    };
    let no_key = app.send(publish_request(None, &json!({}))).await;
    doc.check_reply("POST", publish, &no_key);
    assert_eq!(no_key.status, 422);
    assert_eq!(no_key.field(), Some("Idempotency-Key"));
    let publish_body = json!({"channels": ["portal", "wechat"]});
    let first = app
        .send(publish_request(Some("conformance-1"), &publish_body))
        .await;
    doc.check_reply("POST", publish, &first);
    assert_eq!(first.status, 201, "{}", first.json);
    assert_eq!(first.headers["Idempotent-Replayed"], "false");
    let replay = app
        .send(publish_request(Some("conformance-1"), &publish_body))
        .await;
    doc.check_reply("POST", publish, &replay);
    assert_eq!(replay.status, 201);
    assert_eq!(replay.headers["Idempotent-Replayed"], "true");
    assert_eq!(replay.json, first.json);
    let reused = app
        .send(publish_request(
            Some("conformance-1"),
            &json!({"channels": ["portal"]}),
        ))
        .await;
    doc.check_reply("POST", publish, &reused);
    assert_eq!(reused.status, 422);
    let again = app.send(publish_request(Some("conformance-2"), &json!({}))).await;
    doc.check_reply("POST", publish, &again);
    assert_eq!(again.status, 409);

    // Deliveries, receipts, retry and cancel.
    assert_eq!(app.deliver_due().await, 3, "portal and two WeChat targets");
    let item_deliveries = "/api/v1/items/{id}/deliveries";
    let rows = call(
        &app,
        &doc,
        get.clone(),
        p,
        (item_deliveries, &at("/deliveries")),
        None,
        200,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        p,
        (
            item_deliveries,
            &at("/deliveries?state=failed&channel=wechat&kind=publish"),
        ),
        None,
        200,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        p,
        (item_deliveries, &at("/deliveries?limit=0")),
        None,
        422,
    )
    .await;
    let row_of = |target: &str| {
        rows.json["deliveries"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|d| d["target_id"] == target)
            .and_then(|d| d["id"].as_str())
            .expect("delivery")
            .to_owned()
    };
    let deliveries = ("/api/v1/deliveries", "/api/v1/deliveries");
    let listed = call(&app, &doc, get.clone(), a, deliveries, None, 200).await;
    assert_eq!(listed.json.as_array().map(Vec::len), Some(3));
    call(
        &app,
        &doc,
        get.clone(),
        a,
        ("/api/v1/deliveries", "/api/v1/deliveries?kind=sideways"),
        None,
        400,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        Some("village_a"),
        ("/api/v1/deliveries", "/api/v1/deliveries?area=530426"),
        None,
        403,
    )
    .await;
    let csv = call(
        &app,
        &doc,
        get.clone(),
        p,
        ("/api/v1/items/{id}/receipts.csv", &at("/receipts.csv")),
        None,
        200,
    )
    .await;
    assert!(csv.text().lines().count() >= 4, "{}", csv.text());
    let retry = "/api/v1/deliveries/{id}/retry";
    let retried = call(
        &app,
        &doc,
        post.clone(),
        p,
        (retry, &format!("/api/v1/deliveries/{}/retry", row_of(&bad_id))),
        None,
        200,
    )
    .await;
    assert_eq!(retried.json["state"], "pending");
    call(
        &app,
        &doc,
        post.clone(),
        p,
        (retry, &format!("/api/v1/deliveries/{}/retry", row_of(&good_id))),
        None,
        409,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        r,
        (retry, &format!("/api/v1/deliveries/{}/retry", row_of(&good_id))),
        None,
        403,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        p,
        (retry, "/api/v1/deliveries/none/retry"),
        None,
        404,
    )
    .await;
    // Asking the channel about a delivery: only an unconfirmed one, by its operators.
    let reconcile = "/api/v1/deliveries/{id}/reconcile";
    for (user, id, status) in [
        (p, row_of(&good_id), 409),
        (r, row_of(&good_id), 403),
        (p, "none".to_owned(), 404),
    ] {
        let path = format!("/api/v1/deliveries/{id}/reconcile");
        call(&app, &doc, post.clone(), user, (reconcile, &path), None, status).await;
    }
    let cancel = "/api/v1/deliveries/{id}/cancel";
    let cancelled = call(
        &app,
        &doc,
        post.clone(),
        p,
        (cancel, &format!("/api/v1/deliveries/{}/cancel", row_of(&bad_id))),
        None,
        200,
    )
    .await;
    assert_eq!(cancelled.json["state"], "cancelled");
    call(
        &app,
        &doc,
        post.clone(),
        p,
        (cancel, &format!("/api/v1/deliveries/{}/cancel", row_of(&good_id))),
        None,
        409,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        p,
        (cancel, "/api/v1/deliveries/none/cancel"),
        None,
        404,
    )
    .await;

    // Interpretations due, withdrawal and the audit log.
    let mut interpretation = item_body("530426");
    interpretation["genre"] = json!("interpretation");
    interpretation["interprets"] = json!(id);
    app.create_item("publisher", &interpretation).await;
    let due = call(
        &app,
        &doc,
        get.clone(),
        p,
        ("/api/v1/interpretations/due", "/api/v1/interpretations/due"),
        None,
        200,
    )
    .await;
    assert_eq!(due.json.as_array().map(Vec::len), Some(1), "{}", due.json);
    let withdraw = "/api/v1/items/{id}/withdraw";
    call(
        &app,
        &doc,
        post.clone(),
        p,
        (withdraw, &at("/withdraw")),
        Some(&json!({"reason": ""})),
        422,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        p,
        (withdraw, &at("/withdraw")),
        Some(&json!({"reason": "内容已过时"})),
        200,
    )
    .await;
    call(
        &app,
        &doc,
        post.clone(),
        p,
        (withdraw, &at("/withdraw")),
        Some(&json!({"reason": "again"})),
        409,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        p,
        ("/api/v1/items/{id}/deliveries", &at("/deliveries")),
        None,
        200,
    )
    .await;
    let audit = ("/api/v1/audit", "/api/v1/audit");
    let entries = call(&app, &doc, get.clone(), a, audit, None, 200).await;
    assert!(entries.json.as_array().is_some_and(|e| e.len() > 10));
    call(
        &app,
        &doc,
        get.clone(),
        r,
        ("/api/v1/audit", "/api/v1/audit?after=3&limit=2"),
        None,
        200,
    )
    .await;
    call(&app, &doc, get.clone(), p, audit, None, 403).await;
    call(
        &app,
        &doc,
        get.clone(),
        a,
        ("/api/v1/audit", "/api/v1/audit?limit=0"),
        None,
        422,
    )
    .await;
    call(
        &app,
        &doc,
        get.clone(),
        a,
        ("/api/v1/audit", "/api/v1/audit?after=x"),
        None,
        400,
    )
    .await;

    // 年报 statistics, as JSON and as CSV; a year before any record is refused.
    for (template, status) in [
        ("/api/v1/reports/annual", 200),
        ("/api/v1/reports/annual.csv", 200),
    ] {
        call(
            &app,
            &doc,
            get.clone(),
            p,
            (template, &format!("{template}?year=2026")),
            None,
            status,
        )
        .await;
        call(
            &app,
            &doc,
            get.clone(),
            p,
            (template, &format!("{template}?year=1999")),
            None,
            422,
        )
        .await;
    }

    // A CAP alert: taken, taken again, refused for its content, its media type and its poster.
    let expires = app.hub.clock.now() + chrono::Duration::hours(6);
    let cap = |identifier: &str, urgency: bool| {
        let message = cap_message(identifier, "Alert", None, "530426", expires);
        if urgency {
            message
        } else {
            message.replace("<urgency>Immediate</urgency>", "")
        }
    };
    let post_cap = |user: &'static str, content_type: &'static str, xml: String| {
        let app = &app;
        let doc = &doc;
        async move {
            let reply = app.post_cap(user, content_type, xml).await;
            doc.check_reply("POST", "/api/v1/alerts/cap", &reply);
            reply.status
        }
    };
    let urgent = true;
    assert_eq!(
        post_cap("admin", "application/cap+xml", cap("conf-1", urgent)).await,
        201
    );
    assert_eq!(
        post_cap("admin", "application/cap+xml", cap("conf-1", urgent)).await,
        200
    );
    assert_eq!(
        post_cap("admin", "application/cap+xml", cap("conf-2", false)).await,
        422
    );
    assert_eq!(post_cap("admin", "text/plain", cap("conf-3", urgent)).await, 415);
    assert_eq!(
        post_cap("publisher", "application/cap+xml", cap("conf-4", urgent)).await,
        403
    );

    let unmatched = ("/api/v1/receipts/unmatched", "/api/v1/receipts/unmatched");
    call(&app, &doc, get.clone(), a, unmatched, None, 200).await;
    call(&app, &doc, get.clone(), p, unmatched, None, 403).await;

    doc.assert_all_exercised();
}

async fn conformance_app(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        vec![Scripted::new(ChannelKind::Wechat, &[], Step::Deliver)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_documented_on_sqlite() {
    scenario(conformance_app(Backend::Sqlite).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_documented_on_postgres() {
    scenario(conformance_app(Backend::Postgres).await).await
}

#[test]
fn the_checker_rejects_undocumented_fields_statuses_and_nulls() {
    let doc = Conformance::new();
    let me = json!({"id": "u", "username": "admin", "role": "admin", "area_code": "530426", "must_change_password": false});
    doc.check("GET", "/api/v1/me", 200, Some("application/json"), &me);
    let strict = |body: Value| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            doc.check("GET", "/api/v1/me", 200, Some("application/json"), &body)
        }))
        .is_err()
    };
    let mut extra = me.clone();
    extra["shoe_size"] = json!(42);
    assert!(strict(extra), "an undocumented field is caught");
    let mut null = me.clone();
    null["username"] = Value::Null;
    assert!(strict(null), "null where the document says string is caught");
    assert!(
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc.check(
            "GET",
            "/api/v1/me",
            418,
            Some("application/json"),
            &me
        )))
        .is_err(),
        "an undocumented status is caught"
    );
    doc.check_schema(
        "ErrorDetail",
        &json!({"code": "x", "message": "y", "message_zh": "z", "field": null, "field_label": null}),
    );
    let token = json!({"id": "t", "user_id": "u", "name": "n", "created_at": "2026-09-30T02:00:00Z", "revoked_at": null});
    doc.check_schema("TokenView", &token);
    let mut bad_date = token.clone();
    bad_date["created_at"] = json!("yesterday");
    assert!(
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(
            || doc.check_schema("TokenView", &bad_date)
        ))
        .is_err(),
        "formats are asserted"
    );
}
