//! The console in a real browser: headless Chromium driven through WebDriver (Debian's
//! `chromium` and `chromium-driver`, installed by scripts/install-test-deps), clicking through
//! what staff do. Each main screen is saved as a PNG at desktop and phone width under
//! `target/tmp/console-screenshots/`, with Noto CJK installed so the Chinese is legible.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use herald_channels::ChannelKind;

use crate::{
    helpers::{Backend, TestApp, VILLAGE_A, VILLAGE_B, item_body, spawn_app_with},
    scripted::{Scripted, Step},
};

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    process: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

async fn start_driver() -> Driver {
    let port = free_port();
    let process = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (scripts/install-test-deps installs chromium-driver)");
    let url = format!("http://127.0.0.1:{port}");
    let driver = Driver { process, url };
    for _ in 0..100 {
        if reqwest::get(format!("{}/status", driver.url)).await.is_ok() {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not answer on port {port}");
}

/// A headless Chromium session, in Chinese, at desktop size.
async fn browser(driver: &Driver) -> Client {
    let binary = ["/usr/bin/chromium", "/usr/lib/chromium/chromium"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .expect("chromium is installed (scripts/install-test-deps)");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": binary,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=zh-CN", "--window-size=1280,900"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

/// Saves the page at desktop and at phone width (360 px), and checks what every console page
/// must have: a Chinese `<title>` and one `<h1>`.
async fn screens(client: &Client, name: &str) {
    screens_of(client, name, "body").await;
}

/// `screens`, with the part of the page `css` selects scrolled into view.
async fn screens_of(client: &Client, name: &str, css: &str) {
    let title = client.title().await.expect("title");
    assert!(
        title.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "{name}: the title {title:?} is not Chinese"
    );
    let headings = client.find_all(Locator::Css("h1")).await.expect("h1");
    assert_eq!(headings.len(), 1, "{name}: one h1");
    for (width, height, suffix) in [(1280, 900, "desktop"), (360, 780, "phone")] {
        client.set_window_size(width, height).await.expect("resize");
        client
            .execute(
                "document.querySelector(arguments[0]).scrollIntoView()",
                vec![json!(css)],
            )
            .await
            .expect("scroll");
        let png = client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
        std::fs::write(screenshot_dir().join(format!("{name}-{suffix}.png")), png).expect("save");
    }
    client.set_window_size(1280, 900).await.expect("resize");
}

async fn fill(client: &Client, id: &str, text: &str) {
    let field = client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .expect("click");
}

/// Clicks what leads to another page, and waits until that page has loaded: the click can
/// return before the browser leaves the page (a form post, then its 303).
async fn follow(client: &Client, css: &str) {
    client
        .execute("window.heraldLeft = false", Vec::new())
        .await
        .expect("mark the page");
    click(client, css).await;
    for _ in 0..100 {
        let arrived = client
            .execute(
                "return window.heraldLeft === undefined && document.readyState === 'complete'",
                Vec::new(),
            )
            .await
            .is_ok_and(|arrived| arrived == true);
        if arrived {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("clicking {css} led to no new page");
}

/// The page's text, once it has loaded (it may be reloading itself).
async fn text_of_page(client: &Client) -> String {
    let mut last_error = None;
    for _ in 0..50 {
        let ready = client
            .execute("return document.readyState", Vec::new())
            .await
            .map(|state| state == "complete")
            .unwrap_or(false);
        if ready {
            let text = async { client.find(Locator::Css("body")).await?.text().await };
            match text.await {
                Ok(text) => return text,
                Err(e) => last_error = Some(e),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page did not settle: {last_error:?}");
}

/// The path the browser is at once it gets to `path` (it may still be following a redirect).
/// The page's heading (its one `h1`).
async fn heading_of(client: &Client) -> String {
    client
        .find(Locator::Css("h1"))
        .await
        .expect("h1")
        .text()
        .await
        .expect("text")
}

async fn arrives_at(client: &Client, path: &str) {
    for _ in 0..50 {
        if client.current_url().await.expect("url").path() == path {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the browser did not get to {path}: at {}",
        client.current_url().await.expect("url")
    );
}

/// Opens `path` of the hub.
async fn visit(client: &Client, app: &TestApp, path: &str) {
    client
        .goto(&format!("{}{path}", app.address))
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
}

async fn sign_in(client: &Client, app: &TestApp, user: &str) {
    visit(client, app, "/console/login").await;
    fill(client, "username", user).await;
    fill(client, "password", &format!("{user}-password-1")).await;
    follow(client, "form.card button[type=submit]").await;
    arrives_at(client, "/console").await;
}

async fn sign_out(client: &Client) {
    follow(client, "header form button[type=submit]").await;
    arrives_at(client, "/console/login").await;
}

/// Staff click through an item's life: a publisher composes it and submits it, a reviewer
/// approves it with the 保密审查, the publisher publishes it after the confirmation and watches
/// the delivery arrive; a village operator sees their village's items and not another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_take_an_item_from_draft_to_delivered_in_the_browser() {
    // Beside the portal, two media centers: one takes the item, one is broken (its delivery
    // fails, for the operator to send again). WeChat keeps its real adapter, for its preview.
    let center = Scripted::new(ChannelKind::MediaCenter, &[], Step::Deliver);
    let app = spawn_app_with(Backend::Sqlite, vec![center.clone()]).await;
    app.add_target("media_center", "县融媒体中心", "530426", json!({}))
        .await;
    app.add_target("media_center", "失效账号", "530426", json!({"fail": true}))
        .await;
    let driver = start_driver().await;
    let client = browser(&driver).await;
    // The session is closed whatever happens, so no Chromium outlives a failed test.
    let outcome =
        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(click_through(&app, &client))).await;
    client.close().await.expect("close the session");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn click_through(app: &TestApp, client: &Client) {
    visit(client, app, "/console").await;
    screens(client, "login").await;

    // The publisher composes an item and submits it.
    sign_in(client, app, "publisher").await;
    screens(client, "home").await;
    follow(client, "a[href='/console/items/new']").await;
    screens(client, "compose").await;
    let example = item_body("530426");
    fill(client, "title", "关于做好今冬明春森林防火工作的通知").await;
    fill(client, "summary", "部署今冬明春森林防火工作").await;
    fill(
        client,
        "body",
        "各乡镇人民政府：\n\n为做好今冬明春森林防火工作，现通知如下。",
    )
    .await;
    fill(
        client,
        "index_no",
        example["index_no"].as_str().expect("index_no"),
    )
    .await;
    fill(client, "issuers", "县政府办公室").await;
    // A date input takes typing in the browser's own format: set it as a form value instead.
    client
        .execute(
            "document.getElementById('written_date').value = '2026-09-20'",
            Vec::new(),
        )
        .await
        .expect("date");
    client
        .find(Locator::Id("topic"))
        .await
        .expect("topic")
        .select_by_value("综合政务")
        .await
        .expect("select");
    // The notice goes with its attachment, chosen as a file.
    let attachment = screenshot_dir().join("森林防火工作方案.pdf");
    std::fs::write(&attachment, b"%PDF-1.4\n%forest fire plan\n").expect("attachment");
    client
        .find(Locator::Id("files"))
        .await
        .expect("file input")
        .send_keys(attachment.to_str().expect("path"))
        .await
        .expect("choose the file");
    follow(client, "form.compose > button[type=submit]").await;
    let page = text_of_page(client).await;
    assert!(page.contains("草稿已保存"), "{page}");
    assert!(
        page.contains("森林防火工作方案.pdf"),
        "the attachment is listed: {page}"
    );
    let item_path = client.current_url().await.expect("url").path().to_owned();
    screens(client, "item-draft").await;

    // Each channel's preview, side by side, before it goes for review.
    follow(client, "a.button[href$='/previews']").await;
    let previews = text_of_page(client).await;
    for channel in ["政府门户网站", "微信公众号"] {
        assert!(previews.contains(channel), "{channel}: {previews}");
    }
    assert!(
        previews.contains("标题") && previews.contains("/ 32 字"),
        "WeChat's limits: {previews}"
    );
    let portal = client
        .find(Locator::Css("iframe.portal-frame"))
        .await
        .expect("the portal page, framed");
    portal.clone().enter_frame().await.expect("enter the frame");
    let framed = heading_of(client).await;
    assert!(
        framed.contains("森林防火"),
        "the portal page shows the item: {framed}"
    );
    client.enter_parent_frame().await.expect("leave the frame");
    screens(client, "previews").await;
    visit(client, app, &item_path).await;
    follow(client, "form[action$='/submit'] button").await;
    assert!(text_of_page(client).await.contains("已提交审核"));
    sign_out(client).await;

    // The reviewer approves it with the confidentiality check.
    sign_in(client, app, "reviewer").await;
    visit(client, app, &item_path).await;
    screens(client, "review").await;
    click(client, "input[name=confidentiality_checked]").await;
    follow(client, "button[value=approve]").await;
    assert!(text_of_page(client).await.contains("已审核通过"));
    follow(client, "header a[href='/console/audit']").await;
    assert!(text_of_page(client).await.contains("审核通过"));
    screens(client, "audit").await;
    sign_out(client).await;

    // The publisher publishes it after the confirmation naming its targets.
    sign_in(client, app, "publisher").await;
    visit(client, app, &item_path).await;
    follow(client, "a.button[href$='/publish']").await;
    let confirmation = text_of_page(client).await;
    assert!(
        confirmation.contains("政府门户网站") && confirmation.contains("失效账号"),
        "{confirmation}"
    );
    screens(client, "publish-confirm").await;
    follow(client, "form.card button[type=submit]").await;
    let sending = text_of_page(client).await;
    assert!(
        sending.contains("送达情况") && sending.contains("待发送"),
        "{sending}"
    );
    // The page reloads itself while deliveries run; the worker delivers meanwhile.
    app.deliver_due().await;
    // The matrix fills without a click: the good account's cell turns delivered, the broken
    // one's failed, with the channel's error.
    let mut filled = false;
    for _ in 0..40 {
        text_of_page(client).await;
        let delivered = client
            .find_all(Locator::Css("li.cell.state-delivered"))
            .await
            .expect("cells");
        let failed = client
            .find_all(Locator::Css("li.cell.state-failed"))
            .await
            .expect("cells");
        if !delivered.is_empty() && !failed.is_empty() {
            filled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(filled, "the status matrix filled without a click");
    screens(client, "deliveries").await;

    // The broken account's delivery failed: sent again with one click.
    let failed = text_of_page(client).await;
    assert!(failed.contains("失败"), "{failed}");
    follow(client, "form[action$='/retry'] button").await;
    let retried = text_of_page(client).await;
    assert!(
        retried.contains("已重新发送") && retried.contains("待发送"),
        "{retried}"
    );
    assert_eq!(app.deliver_due().await, 1, "only the retried delivery is sent");
    screens_of(client, "matrix", "table.matrix").await;
    sign_out(client).await;

    // The administrator's screens, each reached from the header.
    sign_in(client, app, "admin").await;
    for (link, heading, name) in [
        ("/console/deliveries", "发送异常", "queues"),
        ("/console/devices", "设备状态", "devices"),
        ("/console/targets", "发布目标", "targets"),
        ("/console/cleanup", "清理结果", "cleanup"),
        ("/console/report", "年报统计", "report"),
        ("/console/users", "用户管理", "users"),
        ("/console/tokens", "API 令牌", "tokens"),
    ] {
        follow(client, &format!("header a[href='{link}']")).await;
        let shown = heading_of(client).await;
        assert_eq!(shown, heading);
        screens(client, name).await;
    }
    // This year's figures count the item just published.
    visit(client, app, "/console/report?year=2026").await;
    let report = text_of_page(client).await;
    assert!(report.contains("本年新发布 1 条"), "{report}");
    screens(client, "report-2026").await;
    sign_out(client).await;

    // A village operator sees their own village's items only.
    for (user, area, title) in [
        ("village_a", VILLAGE_A, "甲村村务公开：十月份低保名单"),
        ("village_b", VILLAGE_B, "乙村村务公开：饮水工程验收"),
    ] {
        let mut item = item_body(area);
        item["title"] = json!(title);
        app.create_item(user, &item).await;
    }
    sign_in(client, app, "village_a").await;
    let home = text_of_page(client).await;
    assert!(
        home.contains("十月份低保名单") && !home.contains("饮水工程验收"),
        "{home}"
    );
    screens(client, "village-home").await;
}

/// Script that would mark the page if any of it ran: as markup, as an attribute breaking out
/// of its quotes, as a URL.
const XSS: &str = "\"'><img src=x onerror=\"window.heraldXss=1\"><script>window.heraldXss=1</script><svg onload=\"window.heraldXss=1\">javascript:window.heraldXss=1";

/// The same, short enough for a name (at most 100 characters).
const XSS_NAME: &str = "\"><img src=x onerror=\"window.heraldXss=1\"><script>window.heraldXss=1</script>";

/// Every text staff type — titles, bodies, summaries, 发文字号, file names, review comments,
/// withdrawal reasons, target names — carries script, and no console page runs any of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_typed_into_any_field_stays_inert_on_every_console_page() {
    let center = Scripted::new(ChannelKind::MediaCenter, &[], Step::Deliver);
    let app = spawn_app_with(Backend::Sqlite, vec![center.clone()]).await;
    app.add_target(
        "media_center",
        &format!("中心{XSS_NAME}"),
        "530426",
        json!({"fail": true}),
    )
    .await;
    // An account whose name carries it, on the users page and in the audit log.
    let user = app
        .post(
            "admin",
            "/api/v1/users",
            &json!({"username": "xss.clerk", "display_name": format!("职员{XSS_NAME}"), "role": "publisher", "area_code": "530426"}),
        )
        .await;
    assert_eq!(user.status, 201, "{}", user.json);
    let attachment = app
        .upload("publisher", "text/plain", "附件正文".as_bytes().to_vec())
        .await;
    assert_eq!(attachment.status, 201, "{}", attachment.json);
    let typed = |title: &str| {
        let mut item = item_body("530426");
        item["title"] = json!(format!("{title}{XSS}"));
        item["summary"] = json!(format!("摘要{XSS}"));
        item["body"] = json!(format!(
            "<p>正文{XSS}</p><p><a href=\"javascript:window.heraldXss=1\">链接</a></p>"
        ));
        item["keywords"] = json!([format!("关键词{XSS_NAME}")]);
        item["attachments"] =
            json!([{"sha256": attachment.json["sha256"], "filename": format!("{XSS_NAME}.txt")}]);
        item
    };
    // Published (its deliveries, one failing, in the matrix and the queues), then withdrawn.
    let published = app.create_item("publisher", &typed("已发布")).await;
    assert_eq!(app.approve("publisher", "reviewer", &published).await.status, 200);
    assert_eq!(app.publish("publisher", &published, "xss-1").await.status, 201);
    app.deliver_due().await;
    // Sent back with a comment.
    let rejected = app.create_item("publisher", &typed("已退回")).await;
    let submitted = app
        .post(
            "publisher",
            &format!("/api/v1/items/{rejected}/submit"),
            &json!({}),
        )
        .await;
    let rejection = app
        .post(
            "reviewer",
            &format!("/api/v1/items/{rejected}/reject"),
            &json!({"version": submitted.json["current_version"], "comment": format!("意见{XSS}")}),
        )
        .await;
    assert_eq!(rejection.status, 200, "{}", rejection.json);
    // Approved, waiting on the publish page that names its targets.
    let approved = app.create_item("publisher", &typed("待发布")).await;
    assert_eq!(app.approve("publisher", "reviewer", &approved).await.status, 200);
    let withdrawn = app.create_item("publisher", &typed("已撤回")).await;
    assert_eq!(app.approve("publisher", "reviewer", &withdrawn).await.status, 200);
    assert_eq!(app.publish("publisher", &withdrawn, "xss-2").await.status, 201);
    let withdrawal = app
        .post(
            "publisher",
            &format!("/api/v1/items/{withdrawn}/withdraw"),
            &json!({"reason": format!("理由{XSS}")}),
        )
        .await;
    assert_eq!(withdrawal.status, 200, "{}", withdrawal.json);

    let driver = start_driver().await;
    let client = browser(&driver).await;
    let pages = [
        "/console".to_owned(),
        format!("/console?q={}", crate::helpers::urlencode(XSS)),
        format!("/console/items/{published}"),
        format!("/console/items/{published}/previews"),
        format!("/console/items/{published}/previews/portal"),
        format!("/console/items/{rejected}"),
        format!("/console/items/{approved}/publish"),
        format!("/console/items/{withdrawn}"),
        "/console/deliveries".to_owned(),
        "/console/audit".to_owned(),
        "/console/users".to_owned(),
        "/console/items/new".to_owned(),
    ];
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        sign_in(&client, &app, "admin").await;
        for path in &pages {
            visit(&client, &app, path).await;
            let text = text_of_page(&client).await;
            stays_inert(&client, path).await;
            if path.starts_with("/console/items/") {
                assert!(
                    text.contains("<script>"),
                    "{path}: the typed script is shown as text:\n{text}"
                );
            }
        }
        // What was typed comes back in the refused form, as text.
        visit(&client, &app, "/console/items/new").await;
        fill(&client, "title", XSS).await;
        fill(&client, "body", XSS).await;
        fill(&client, "index_no", XSS).await;
        fill(&client, "issuers", XSS).await;
        client
            .execute(
                "document.getElementById('written_date').value = '2026-09-20'",
                Vec::new(),
            )
            .await
            .expect("date");
        follow(&client, "form.compose > button[type=submit]").await;
        let refused = text_of_page(&client).await;
        assert!(refused.contains("发文机关"), "{refused}");
        stays_inert(&client, "the refused compose form").await;
        let kept = client
            .find(Locator::Id("title"))
            .await
            .expect("title")
            .prop("value")
            .await
            .expect("value");
        assert_eq!(kept.as_deref(), Some(XSS), "the title is kept as typed");
    }))
    .await;
    client.close().await.expect("close the session");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// No script of the page ran and no dialog opened.
async fn stays_inert(client: &Client, page: &str) {
    let ran = client
        .execute("return window.heraldXss !== undefined", Vec::new())
        .await
        .expect("read the page");
    assert_eq!(ran, json!(false), "{page}: a typed script ran");
    // Inert even where the Content-Security-Policy would stop it running: none of the typed
    // markup became elements (the console has no script of its own, nor handlers).
    let injected = client
        .execute(
            "return document.querySelectorAll('script, img[src=\"x\"], svg, [onerror], [onload], a[href^=\"javascript:\"]').length",
            Vec::new(),
        )
        .await
        .expect("read the page");
    assert_eq!(injected, json!(0), "{page}: typed markup became elements");
    assert!(client.get_alert_text().await.is_err(), "{page}: a dialog opened");
}
