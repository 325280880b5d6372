//! The console's screens beyond an item's life: previews, the status matrix and its charts,
//! the delivery queues, devices, targets, 清理结果, API tokens, accounts and the 年报 figures —
//! each within the caller's area only.

use serde_json::json;

use herald_channels::ChannelKind;

use crate::{
    console::Browser,
    helpers::{
        Backend, TestApp, VILLAGE_A, VILLAGE_B, item_body, spawn_app, spawn_app_configured, spawn_app_with,
    },
    scripted::{Scripted, Step},
};

async fn signed_in(app: &TestApp, user: &str) -> Browser {
    let browser = Browser::new(app);
    browser
        .sign_in(user, &format!("{user}-password-1"))
        .await
        .redirects_to("/console");
    browser
}

async fn header(browser: &Browser, path: &str, name: &str) -> Option<String> {
    let response = browser
        .client
        .get(format!("{}{path}", browser.base))
        .send()
        .await
        .expect("GET");
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Each channel's preview comes from the render the delivery uses: WeChat's limits counted
/// and broken ones named, the notice board's screens, the loudspeaker's words, the portal's
/// page framed from its own address.
#[tokio::test]
async fn previews_show_what_each_channel_would_receive() {
    // With a broker configured, the loudspeaker and notice-board channels are there too.
    let broker = std::env::var("HERALD_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let app = spawn_app_configured(Backend::Sqlite, Vec::new(), |s| s.mqtt.url = broker).await;
    let mut item = item_body("530426");
    item["title"] = json!("关于做好2026年秋冬季森林草原防灭火工作和冬春季节安全生产工作的紧急通知");
    let id = app.create_item("publisher", &item).await;
    let publisher = signed_in(&app, "publisher").await;
    let page = publisher.get(&format!("/console/items/{id}/previews")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.is_page("发布预览");
    for channel in [
        "政府门户网站",
        "微信公众号",
        "融媒体中心",
        "村务公开屏",
        "村村通大喇叭",
    ] {
        assert!(page.body.contains(&format!("<h2>{channel}</h2>")), "{channel}");
    }
    assert!(
        page.body
            .contains("<tr class=\"over\"><th scope=\"row\">标题</th><td>37 / 32 字</td></tr>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("微信限 32 字，当前 37 字（不能发送）"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("class=\"board\" aria-label=\"第 1 屏\""),
        "notice-board screens"
    );
    assert!(
        page.body
            .contains("<blockquote class=\"speech\">关于做好2026年秋冬季"),
        "the words spoken"
    );
    assert!(page.body.contains("发送的 ninjs 2.2 文档") && page.body.contains("发送的 ninjs 3.1 文档"));
    let policy = header(
        &publisher,
        &format!("/console/items/{id}/previews"),
        "content-security-policy",
    )
    .await
    .expect("policy");
    assert!(
        policy.contains("frame-src 'self'") && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );
    let framed = publisher
        .get(&format!("/console/items/{id}/previews/portal"))
        .await;
    assert_eq!(framed.status, 200);
    assert!(framed.body.contains("森林草原防灭火工作"), "{}", framed.body);
    assert_eq!(
        header(
            &publisher,
            &format!("/console/items/{id}/previews/portal"),
            "x-frame-options"
        )
        .await
        .as_deref(),
        Some("SAMEORIGIN"),
        "framed by the console alone"
    );
    // Not another village's.
    let village_b = signed_in(&app, "village_b").await;
    for page in ["previews", "previews/portal"] {
        let path = format!("/console/items/{id}/{page}");
        assert_eq!(village_b.get(&path).await.status, 403, "{path}");
    }
}

/// The matrix shows each target of each channel coloured by its delivery's state, with the
/// channel's error; the charts are SVG images of the same deliveries, for those who may see
/// the item only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_matrix_and_its_charts_follow_the_deliveries() {
    let wechat = Scripted::new(ChannelKind::Wechat, &[], Step::Deliver);
    let app = spawn_app_with(Backend::Sqlite, vec![wechat]).await;
    app.add_target("wechat", "峨山发布", "530426", json!({})).await;
    app.add_target("wechat", "失效账号", "530426", json!({"fail": true}))
        .await;
    let id = app.publish_new(&item_body("530426"), &json!({})).await;
    app.deliver_due().await;
    let admin = signed_in(&app, "admin").await;
    let page = admin.get(&format!("/console/items/{id}")).await;
    assert!(page.body.contains("<table class=\"matrix\">"), "{}", page.body);
    assert!(
        page.body.contains(
            "<li class=\"cell state-delivered\">峨山发布<span class=\"cell-state\">已送达</span></li>"
        ),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<li class=\"cell state-failed\" title=\""),
        "the failure carries its error"
    );
    assert!(
        page.body.contains("已送达 2") || page.body.contains("已送达 1"),
        "counts per channel"
    );
    for chart in ["progress", "coverage"] {
        let path = format!("/console/items/{id}/charts/{chart}.svg");
        let response = admin
            .client
            .get(format!("{}{path}", admin.base))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("image/svg+xml")
        );
        let svg = response.text().await.expect("svg");
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{svg}");
    }
    assert!(page.body.contains(&format!(
        "<img class=\"chart\" src=\"/console/items/{id}/charts/progress.svg\""
    )));
    let progress = admin
        .get(&format!("/console/items/{id}/charts/progress.svg"))
        .await;
    assert!(
        progress.body.contains("送达进度（共 3 个发布对象）"),
        "{}",
        progress.body
    );
    let village_b = signed_in(&app, "village_b").await;
    for page in ["charts/progress.svg", "charts/coverage.svg"] {
        let path = format!("/console/items/{id}/{page}");
        assert_eq!(village_b.get(&path).await.status, 404, "{path}");
    }
}

/// 发送异常 lists the area's failed and waiting deliveries with their items; a failed one is
/// sent again and a waiting one cancelled from there, and a village sees only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queues_send_failed_deliveries_again_and_cancel_waiting_ones() {
    let wechat = Scripted::new(ChannelKind::Wechat, &[], Step::Deliver);
    let app = spawn_app_with(Backend::Sqlite, vec![wechat]).await;
    app.add_target("wechat", "失效账号", "530426", json!({"fail": true}))
        .await;
    let mut failing = item_body("530426");
    failing["title"] = json!("关于开展冬季供暖安全检查的通知");
    let failing = app.publish_new(&failing, &json!({"channels": ["wechat"]})).await;
    app.deliver_due().await;
    let mut waiting = item_body("530426");
    waiting["title"] = json!("关于召开村民代表会议的通知");
    app.publish_new(&waiting, &json!({"channels": ["portal"]})).await;

    let publisher = signed_in(&app, "publisher").await;
    let queues = publisher.get("/console/deliveries").await;
    queues.is_page("发送异常");
    let failed_section = queues.body.split("<h2>待核实").next().expect("sections");
    assert!(
        failed_section.contains("<h2>发送失败（1）</h2>"),
        "{}",
        queues.body
    );
    assert!(failed_section.contains(&format!(
        "<a href=\"/console/items/{failing}\">关于开展冬季供暖安全检查的通知</a>"
    )));
    let waiting_section = queues.body.split("<h2>等待发送").nth(1).expect("waiting");
    assert!(
        waiting_section.contains("关于召开村民代表会议的通知"),
        "{}",
        queues.body
    );

    let csrf = queues.csrf();
    let retry = queues
        .between("action=\"/console/deliveries/", "\"", "retry form")
        .to_owned();
    assert!(retry.ends_with("/retry"), "{retry}");
    publisher
        .post(&format!("/console/deliveries/{retry}"), &[("csrf", &csrf)])
        .await
        .redirects_to("/console/deliveries?done=retried");
    let after = publisher.get("/console/deliveries?done=retried").await;
    assert!(
        after.body.contains("已重新发送。") && after.body.contains("<h2>发送失败（0）</h2>"),
        "{}",
        after.body
    );
    let cancel = after
        .body
        .split("action=\"/console/deliveries/")
        .find_map(|rest| {
            rest.split('"')
                .next()
                .filter(|action| action.ends_with("/cancel"))
        })
        .expect("a cancel form")
        .to_owned();
    publisher
        .post(&format!("/console/deliveries/{cancel}"), &[("csrf", &csrf)])
        .await
        .redirects_to("/console/deliveries?done=cancelled");
    // Cancelling it twice is refused on the page, saying why.
    let again = publisher
        .post(&format!("/console/deliveries/{cancel}"), &[("csrf", &csrf)])
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("class=\"problem\""));

    let village_b = signed_in(&app, "village_b").await;
    let theirs = village_b.get("/console/deliveries").await;
    assert!(
        !theirs.body.contains("冬季供暖安全检查"),
        "another area's deliveries are not listed"
    );
    let refused = village_b
        .post(
            &format!("/console/deliveries/{retry}"),
            &[("csrf", &village_b.get("/console").await.csrf())],
        )
        .await;
    assert!(matches!(refused.status, 403 | 404), "{}", refused.body);
    assert!(refused.body.contains("<h1>"), "a page, not an error document");
}

/// Devices, targets and 清理结果 show what lies in the caller's area: a village operator sees
/// their village's devices and none of another village's.
#[tokio::test]
async fn devices_targets_and_takedowns_are_shown_within_ones_area() {
    let app = spawn_app(Backend::Sqlite).await;
    for (name, area) in [("甲村大喇叭", VILLAGE_A), ("乙村大喇叭", VILLAGE_B)] {
        let added = app
            .post(
                "admin",
                "/api/v1/devices",
                &json!({"channel": "loudspeaker", "name": name, "area_code": area}),
            )
            .await;
        assert_eq!(added.status, 201, "{}", added.json);
    }
    let village_a = signed_in(&app, "village_a").await;
    let devices = village_a.get("/console/devices").await;
    devices.is_page("设备状态");
    assert!(
        devices.body.contains("甲村大喇叭") && devices.body.contains("尚未连接"),
        "{}",
        devices.body
    );
    assert!(
        !devices.body.contains("乙村大喇叭"),
        "another village's device is not shown"
    );
    let targets = village_a.get("/console/targets").await;
    targets.is_page("发布目标");
    assert!(!targets.body.contains("乙村大喇叭"));
    assert!(
        !targets.body.contains("action=\"/console/targets\""),
        "only administrators add targets"
    );

    // An administrator adds a target; a setting that is not JSON is refused naming it.
    let admin = signed_in(&app, "admin").await;
    let form = admin.get("/console/targets").await;
    assert!(
        !form.body.contains("甲村大喇叭"),
        "devices are listed under 设备状态, not here"
    );
    let csrf = form.csrf();
    let bad = admin
        .post(
            "/console/targets",
            &[
                ("csrf", &csrf),
                ("channel", "wechat"),
                ("name", "峨山发布"),
                ("area_code", "530426"),
                ("config", "{appid"),
                ("secrets", "app_secret=s3cret"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.problem().contains("配置"), "{}", bad.problem());
    let incomplete = admin
        .post(
            "/console/targets",
            &[
                ("csrf", &csrf),
                ("channel", "wechat"),
                ("name", "峨山发布"),
                ("area_code", "530426"),
                ("config", "{}"),
            ],
        )
        .await;
    assert_eq!(incomplete.status, 422);
    assert!(
        incomplete.problem().contains("config.app_id"),
        "the setting is named: {}",
        incomplete.problem()
    );
    assert!(
        bad.body
            .contains("id=\"config\" name=\"config\" rows=\"4\" aria-invalid=\"true\"")
    );
    assert!(!bad.body.contains("s3cret"), "a secret is never shown back");
    let secrets = format!(
        "app_secret=s3cret\ntoken=tok123\nencoding_aes_key={}",
        "a".repeat(43)
    );
    admin
        .post(
            "/console/targets",
            &[
                ("csrf", &csrf),
                ("channel", "wechat"),
                ("name", "峨山发布"),
                ("area_code", "530426"),
                (
                    "config",
                    "{\"app_id\": \"wx123\", \"thumb_media_id\": \"cover-1\"}",
                ),
                ("secrets", &secrets),
            ],
        )
        .await
        .redirects_to("/console/targets?done=added");
    let listed = admin.get("/console/targets?done=added").await;
    assert!(
        listed.body.contains("<td>峨山发布</td>")
            && listed
                .body
                .contains("<td>app_secret、encoding_aes_key、token</td>"),
        "{}",
        listed.body
    );
    assert!(!listed.body.contains("s3cret"));

    // A withdrawn item is in 清理结果 with its reason, for its area alone.
    let id = app.publish_new(&item_body(VILLAGE_A), &json!({})).await;
    app.deliver_due().await;
    let withdrawn = app
        .post(
            "publisher",
            &format!("/api/v1/items/{id}/withdraw"),
            &json!({"reason": "内容已过时"}),
        )
        .await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
    app.deliver_due().await;
    let cleanup = village_a.get("/console/cleanup").await;
    cleanup.is_page("清理结果");
    assert!(cleanup.body.contains("内容已过时"), "{}", cleanup.body);
    let village_b = signed_in(&app, "village_b").await;
    assert!(
        !village_b
            .get("/console/cleanup")
            .await
            .body
            .contains("内容已过时")
    );
}

/// A token's secret is shown once, when it is made; it can be revoked from the list. An
/// administrator disables an account and lifts another's sign-in delays.
#[tokio::test]
async fn tokens_are_shown_once_and_accounts_are_disabled_from_the_console() {
    let app = spawn_app(Backend::Sqlite).await;
    let publisher = signed_in(&app, "publisher").await;
    let page = publisher.get("/console/tokens").await;
    page.is_page("API 令牌");
    let made = publisher
        .post(
            "/console/tokens",
            &[("csrf", &page.csrf()), ("name", "办公系统同步")],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let secret = made
        .between("<strong class=\"secret\">", "<", "secret")
        .to_owned();
    let me = app
        .client
        .get(format!("{}/api/v1/me", app.address))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("GET");
    assert_eq!(me.status(), 200, "the token works");
    let listed = publisher.get("/console/tokens").await;
    assert!(
        listed.body.contains("办公系统同步") && !listed.body.contains(&secret),
        "shown once"
    );
    let revoke = listed
        .body
        .split("<tr>")
        .find(|row| row.contains("办公系统同步"))
        .and_then(|row| row.split("action=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("the token's revoke form")
        .to_owned();
    publisher
        .post(&revoke, &[("csrf", &listed.csrf())])
        .await
        .redirects_to("/console/tokens");
    assert!(publisher.get("/console/tokens").await.body.contains("吊销"));
    let after = app
        .client
        .get(format!("{}/api/v1/me", app.address))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("GET");
    assert_eq!(after.status(), 401, "a revoked token no longer works");

    let admin = signed_in(&app, "admin").await;
    let users = admin.get("/console/users").await;
    let users_json = app.get("admin", "/api/v1/users").await;
    let id = users_json
        .json
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["username"] == "township_publisher")
        .expect("user")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let csrf = users.csrf();
    let unlocked = admin
        .post(&format!("/console/users/{id}/unlock"), &[("csrf", &csrf)])
        .await;
    assert_eq!(unlocked.status, 200, "{}", unlocked.body);
    let disabled = admin
        .post(&format!("/console/users/{id}/disable"), &[("csrf", &csrf)])
        .await;
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    assert!(disabled.body.contains("已停用"), "{}", disabled.body);
    let refused = Browser::new(&app)
        .sign_in("township_publisher", "township_publisher-password-1")
        .await;
    assert_ne!(refused.status, 303, "a disabled account cannot sign in");
    // Not by a publisher.
    let not_admin = publisher
        .post(
            &format!("/console/users/{id}/unlock"),
            &[("csrf", &publisher.get("/console").await.csrf())],
        )
        .await;
    assert_eq!(not_admin.status, 403);
}

/// The 年报 figures count the year's record: items first published, corrected, withdrawn,
/// by catalog entry; 规范性文件 issued, repealed and in force; what each channel carried —
/// within the caller's area, as a table and as CSV for Excel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_annual_report_counts_the_years_record() {
    let app = spawn_app(Backend::Sqlite).await;
    let normative = |title: &str| {
        let mut item = item_body("530426");
        item["title"] = json!(title);
        item["catalog"] = json!("art20-01");
        item
    };
    let kept = app
        .publish_new(&normative("峨山县农村集体资产管理办法"), &json!({}))
        .await;
    let repealed = app
        .publish_new(&normative("峨山县临时救助实施细则"), &json!({}))
        .await;
    app.publish_new(&item_body("530426"), &json!({})).await;
    app.publish_new(&item_body(VILLAGE_A), &json!({})).await;
    app.deliver_due().await;
    // One is corrected to 已废止, one withdrawn.
    let mut correction = normative("峨山县临时救助实施细则");
    correction["validity"] = json!("repealed");
    correction["correction_note"] = json!("该细则已废止");
    correction["index_no"] = app
        .get("publisher", &format!("/api/v1/items/{repealed}"))
        .await
        .json["content"]["index_no"]
        .clone();
    correction["doc_no"] = app
        .get("publisher", &format!("/api/v1/items/{repealed}"))
        .await
        .json["content"]["doc_no"]
        .clone();
    let corrected = app.correct(&repealed, &correction).await;
    assert!(corrected.status < 300, "{}", corrected.json);
    let withdrawn = app
        .post(
            "publisher",
            &format!("/api/v1/items/{kept}/withdraw"),
            &json!({"reason": "已被新办法取代"}),
        )
        .await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
    app.deliver_due().await;

    let report = app.get("admin", "/api/v1/reports/annual?year=2026").await;
    assert_eq!(report.status, 200, "{}", report.json);
    let totals = &report.json["totals"];
    assert_eq!(totals["published"], 4, "{}", report.json);
    assert_eq!(totals["corrected"], 1);
    assert_eq!(totals["withdrawn"], 1);
    let entry = |code: &str| {
        report.json["by_catalog"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["code"] == code)
            .cloned()
            .expect("entry")
    };
    assert_eq!(entry("art20-01")["published"], 2);
    assert_eq!(entry("art20-01")["corrected"], 1);
    assert_eq!(entry("art20-01")["withdrawn"], 1);
    assert_eq!(entry("art20-12")["published"], 2);
    assert_eq!(
        report.json["normative"],
        json!({"issued": 2, "repealed": 2, "in_force": 0})
    );
    let portal = report.json["by_channel"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["channel"] == "portal")
        .cloned()
        .expect("portal");
    assert_eq!(portal["items"], 4, "{}", report.json);

    // A village counts its own items only; a year before Herald or to come is refused.
    let village = app.get("village_a", "/api/v1/reports/annual?year=2026").await;
    assert_eq!(village.json["totals"]["published"], 1, "{}", village.json);
    let last_year = app.get("admin", "/api/v1/reports/annual?year=2025").await;
    assert_eq!(last_year.json["totals"]["published"], 0);
    for year in ["1999", "2027"] {
        let refused = app
            .get("admin", &format!("/api/v1/reports/annual?year={year}"))
            .await;
        assert_eq!(refused.status, 422, "{year}");
        assert_eq!(refused.field(), Some("year"));
    }

    let csv = app.get("admin", "/api/v1/reports/annual.csv?year=2026").await;
    assert_eq!(csv.status, 200);
    let text = csv.text();
    assert!(text.starts_with('\u{feff}'), "a byte-order mark, for Excel");
    assert!(text.contains("行政法规、规章和规范性文件,2,1,1,0"), "{text}");
    assert!(
        text.contains("本年制发件数,本年废止件数,现行有效件数\n2,2,0"),
        "{text}"
    );

    let admin = signed_in(&app, "admin").await;
    let page = admin.get("/console/report?year=2026").await;
    page.is_page("年报统计");
    assert!(page.body.contains("本年新发布 4 条"), "{}", page.body);
    assert!(
        page.body
            .contains("href=\"/api/v1/reports/annual.csv?year=2026\"")
    );
    let refused = admin.get("/console/report?year=二〇二六").await;
    assert_eq!(refused.status, 422);
    assert!(refused.problem().contains("年"), "{}", refused.problem());
}

/// A reviewer sees what changed since the version before: the fields that differ and the
/// text's changes, marked where they are.
#[tokio::test]
async fn the_reviewer_sees_what_changed_between_versions() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut item = item_body("530426");
    item["body"] = json!("<p>报名截止到十月十日。</p><p>请各村做好宣传。</p>");
    let id = app.create_item("publisher", &item).await;
    let submitted = app
        .post("publisher", &format!("/api/v1/items/{id}/submit"), &json!({}))
        .await;
    let rejected = app
        .post(
            "reviewer",
            &format!("/api/v1/items/{id}/reject"),
            &json!({"version": submitted.json["current_version"], "comment": "截止日期有误"}),
        )
        .await;
    assert_eq!(rejected.status, 200, "{}", rejected.json);
    item["body"] = json!("<p>报名截止到十月二十日。</p><p>请各村做好宣传。</p>");
    item["summary"] = json!("延长报名时间");
    let edited = app.put("publisher", &format!("/api/v1/items/{id}"), &item).await;
    assert_eq!(edited.status, 200, "{}", edited.json);
    app.post("publisher", &format!("/api/v1/items/{id}/submit"), &json!({}))
        .await;

    let reviewer = signed_in(&app, "reviewer").await;
    let page = reviewer.get(&format!("/console/items/{id}")).await;
    assert!(
        page.body.contains("<h2>修改内容（第 1 版 → 第 2 版）</h2>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<tr><th scope=\"row\">摘要</th><td><del>部署秋冬季森林防火工作</del></td><td><ins>延长报名时间</ins></td></tr>"), "{}", page.body);
    assert!(
        page.body
            .contains("<div class=\"diff\">报名截止到十月<ins>二</ins>十日。\n请各村做好宣传。</div>"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("<tr><th scope=\"row\">标题</th>"),
        "unchanged fields are not listed"
    );
}

/// The 工作台 lists fifty items a page, with links to the pages before and after that keep
/// the search; a page number that is not one is said so.
#[tokio::test]
async fn the_home_page_lists_items_page_by_page() {
    let app = spawn_app(Backend::Sqlite).await;
    for n in 0..55 {
        let mut item = item_body("530426");
        item["title"] = json!(format!("关于第{n}批惠民资金发放的公示"));
        app.create_item("publisher", &item).await;
    }
    let publisher = signed_in(&app, "publisher").await;
    let first = publisher.get("/console?q=%E6%83%A0%E6%B0%91&state=draft").await;
    assert!(first.body.contains("共 55 条，第 1 / 2 页"), "{}", first.body);
    assert_eq!(first.body.matches("惠民资金发放的公示</a>").count(), 50);
    let next = "/console?q=%E6%83%A0%E6%B0%91&#38;state=draft&#38;page=2";
    assert!(
        first.body.contains(&format!("<a href=\"{next}\">下一页</a>")),
        "{}",
        first.body
    );
    assert!(!first.body.contains("上一页"));
    let second = publisher.get(&next.replace("&#38;", "&")).await;
    assert!(second.body.contains("共 55 条，第 2 / 2 页"));
    assert_eq!(second.body.matches("惠民资金发放的公示</a>").count(), 5);
    assert!(second.body.contains("上一页") && !second.body.contains("下一页"));
    let refused = publisher.get("/console?page=0").await;
    assert!(refused.problem().contains("页"), "{}", refused.problem());
    // A reviewer's 待审核 is a click away.
    let reviewer = signed_in(&app, "reviewer").await;
    assert!(
        reviewer
            .get("/console")
            .await
            .body
            .contains("href=\"/console?state=in_review\"")
    );
}

/// A delivery whose fate is unknown is asked about (向渠道核实) from 发送异常 rather than sent
/// again blind: the reconciler asks the channel on its next pass, and the audit log says who
/// asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_delivery_is_asked_about_from_the_queues() {
    let wechat = Scripted::new(ChannelKind::Wechat, &[], Step::Unknown);
    let app = spawn_app_with(Backend::Sqlite, vec![wechat]).await;
    app.add_target("wechat", "峨山发布", "530426", json!({})).await;
    let mut item = item_body("530426");
    item["title"] = json!("关于调整农村客运班线的通告");
    app.publish_new(&item, &json!({"channels": ["wechat"]})).await;
    app.deliver_due().await;

    let publisher = signed_in(&app, "publisher").await;
    let queues = publisher.get("/console/deliveries").await;
    let unconfirmed = queues
        .body
        .split("<h2>待核实")
        .nth(1)
        .expect("the unconfirmed queue");
    assert!(unconfirmed.starts_with("（1）</h2>"), "{}", queues.body);
    let action = unconfirmed
        .split("action=\"")
        .find_map(|rest| rest.split('"').next().filter(|a| a.ends_with("/reconcile")))
        .expect("向渠道核实")
        .to_owned();
    let asked_before = app.count("SELECT COUNT(*) FROM delivery_confirmations").await;
    publisher
        .post(&action, &[("csrf", &queues.csrf())])
        .await
        .redirects_to("/console/deliveries?done=reconciling");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM delivery_confirmations").await,
        asked_before + 1,
        "watched again, due now"
    );
    assert!(
        publisher
            .get("/console/deliveries?done=reconciling")
            .await
            .body
            .contains("已请渠道核实")
    );
    let audit = signed_in(&app, "admin").await.get("/console/audit").await;
    assert!(audit.body.contains("向渠道核实"), "{}", audit.body);
}
