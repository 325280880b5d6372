use serde_json::json;

use crate::helpers::{Backend, TestApp, item_body, spawn_app, urlencode};
use crate::on_both_databases;

on_both_databases! {
    async fn the_portal_finds_a_chinese_phrase_from_the_middle_of_a_body(app: TestApp) {
        let mut body = item_body("530426101");
        body["body"] = json!("<p>为进一步加强农村人居环境整治，甸中镇决定开展春季爱国卫生运动，请各村委会认真组织实施。</p>");
        let id = app.publish_new(&body, &json!({})).await;
        app.deliver_due().await;

        let found = app.public_get(&format!("/search?q={}", urlencode("开展春季爱国卫生"))).await;
        assert_eq!(found.status, 200);
        assert!(found.text().contains(&format!("/xxgk/items/{id}")), "{}", found.text());
        let missed = app.public_get(&format!("/search?q={}", urlencode("秋季防汛"))).await;
        assert!(!missed.text().contains(&format!("/xxgk/items/{id}")));

        let column = app.public_get("/xxgk").await.text();
        for sub_column in ["政府信息公开指南", "政府信息公开制度", "法定主动公开内容", "政府信息公开年报"] {
            assert!(column.contains(sub_column), "the column lacks {sub_column}");
        }
        assert!(column.contains("突发公共事件的应急预案、预警信息及应对情况</a><span class=\"date\">（1）"), "catalog counts");
        let catalog = app.public_get("/xxgk/catalog/art20-12").await.text();
        assert!(catalog.contains(&id));
        let organ = app.public_get(&format!("/xxgk/organs/{}", urlencode("峨山彝族自治县人民政府办公室"))).await.text();
        assert!(organ.contains(&id), "the organ's page lists it");
        let township = app.public_get("/xxgk/areas/530426101").await.text();
        assert!(township.contains(&id), "the township's page lists it");
        let other_township = app.public_get("/xxgk/areas/530426102").await.text();
        assert!(!other_township.contains(&id));
        let feed = app.public_get("/feed.xml").await;
        assert!(feed.headers["content-type"].to_str().expect("type").starts_with("application/atom+xml"));
        assert!(feed.text().contains(&format!("/xxgk/items/{id}")));
        assert_eq!(app.public_get("/xxgk/items/no-such-item").await.status, 404);
    }

    async fn item_bodies_render_inert(app: TestApp) {
        let mut body = item_body("530426");
        body["title"] = json!("<b>标题</b><script>alert('t')</script>");
        body["body"] = json!(r#"<p>正文</p><script>alert(1)</script><img src="x.png" onerror="alert(2)"><a href="javascript:alert(3)">链接</a><div onclick="alert(4)" style="x">块</div>"#);
        let id = app.publish_new(&body, &json!({})).await;
        app.deliver_due().await;
        let page = app.public_get(&format!("/xxgk/items/{id}")).await;
        assert_eq!(page.status, 200);
        let html = page.text();
        for banned in ["<script", "onerror", "javascript:", "onclick", "<b>标题"] {
            assert!(!html.contains(banned), "{banned} reached the page");
        }
        assert!(html.contains("正文"), "the text survives");
        assert!(html.contains("&#60;b&#62;标题") || html.contains("&lt;b&gt;标题"), "markup in the title is shown as text: {html}");
    }

    async fn attachments_of_live_pages_download_and_others_do_not(app: TestApp) {
        let pdf = b"%PDF-1.7\n%portal attachment\n".to_vec();
        let stored = app.upload("publisher", "application/pdf", pdf.clone()).await;
        let sha = stored.json["sha256"].as_str().expect("sha").to_owned();
        assert_eq!(app.public_get(&format!("/xxgk/attachments/{sha}")).await.status, 404, "not public before publication");
        let mut body = item_body("530426");
        body["attachments"] = json!([{"sha256": sha, "filename": "实施方案.pdf"}]);
        let id = app.publish_new(&body, &json!({})).await;
        app.deliver_due().await;
        let page = app.public_get(&format!("/xxgk/items/{id}")).await.text();
        assert!(page.contains("实施方案.pdf") && page.contains(&format!("/xxgk/attachments/{sha}")));
        let file = app.client.get(format!("{}/xxgk/attachments/{sha}", app.address)).send().await.expect("get");
        assert_eq!(file.status(), 200);
        // Saved under its own name and extension (RFC 6266).
        let disposition = file.headers()["content-disposition"].to_str().expect("ascii").to_owned();
        assert!(disposition.starts_with("attachment"), "{disposition}");
        assert!(disposition.contains("filename=\"attachment.pdf\""), "{disposition}");
        assert!(disposition.contains("filename*=UTF-8''%E5%AE%9E%E6%96%BD%E6%96%B9%E6%A1%88.pdf"), "{disposition}");
        assert_eq!(file.bytes().await.expect("bytes").to_vec(), pdf);

        // Withdrawn: its attachment says so, as its page does.
        let withdrawn = app.post("publisher", &format!("/api/v1/items/{id}/withdraw"), &json!({"reason": "政策已废止"})).await;
        assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
        let gone = app.public_get(&format!("/xxgk/attachments/{sha}")).await;
        assert_eq!(gone.status, 410);
        assert!(gone.text().contains("已撤回"), "{}", gone.text());
        // Once the portal's withdrawal has run, with its reason.
        app.deliver_due().await;
        let gone = app.public_get(&format!("/xxgk/attachments/{sha}")).await;
        assert_eq!(gone.status, 410);
        assert!(gone.text().contains("政策已废止"), "{}", gone.text());
    }

    async fn an_annotation_typed_at_the_end_of_the_body_is_printed_once(app: TestApp) {
        let mut body = item_body("530426");
        body["body"] = json!("<p>特此通知。</p><p style=\"text-align:right\">峨山彝族自治县人民政府办公室</p><p>（此件公开发布）</p>");
        let id = app.publish_new(&body, &json!({})).await;
        app.deliver_due().await;
        let page = app.public_get(&format!("/xxgk/items/{id}")).await.text();
        assert_eq!(page.matches("此件公开发布").count(), 1, "{page}");
        assert!(page.contains(r#"<p class="align-right">峨山彝族自治县人民政府办公室</p>"#), "{page}");
        // A sentence that merely ends with its words keeps the annotation.
        let mut sentence = item_body("530426");
        sentence["body"] = json!("<p>经研究，同意此件公开发布。</p>");
        let id = app.publish_new(&sentence, &json!({})).await;
        app.deliver_due().await;
        let page = app.public_get(&format!("/xxgk/items/{id}")).await.text();
        assert!(page.contains("（此件公开发布）"), "{page}");
    }

    async fn a_mistyped_portal_address_gets_a_chinese_page_and_a_mistyped_api_path_json(app: TestApp) {
        let page = app.public_get("/xxgk/no-such-column").await;
        assert_eq!(page.status, 404);
        assert!(page.content_type().is_some_and(|t| t.starts_with("text/html")), "{:?}", page.content_type());
        assert!(page.text().contains("页面不存在"), "{}", page.text());
        let api = app.public_get("/api/v1/no-such-endpoint").await;
        assert_eq!((api.status, api.json["error"]["code"].clone()), (404, json!("no_route")));
    }
}

/// The 政府信息公开 column as an inspector checks it: the 依申请公开 entry with its form,
/// contact and time limits; 指南 and 制度 that are never empty; the catalog in its hierarchy; a
/// breadcrumb on every page; the footer a government site must carry, from the settings.
#[tokio::test]
async fn the_column_has_its_application_entry_guide_rules_hierarchy_breadcrumbs_and_footer() {
    let app = crate::helpers::spawn_app_configured(Backend::Sqlite, Vec::new(), |settings| {
        settings.portal.host = "峨山彝族自治县人民政府办公室".into();
        settings.portal.site_code = "5304260001".into();
        settings.portal.icp_record = "滇ICP备00000000号".into();
        settings.portal.police_record = "滇公网安备53042602000001号".into();
        settings.portal.contact = "0877-4011111".into();
        settings.portal.application_phone = "0877-4012345".into();
        settings.portal.application_address = "峨山县双江街道人民路1号".into();
    })
    .await;
    let id = app.publish_new(&item_body("530426"), &json!({})).await;
    app.deliver_due().await;

    let application = app.public_get("/xxgk/ysqgk").await;
    assert_eq!(application.status, 200);
    let text = application.text();
    for expected in [
        "申请表",
        "0877-4012345",
        "峨山县双江街道人民路1号",
        "20 个工作日",
        "第三十三条",
        "当前位置",
    ] {
        assert!(text.contains(expected), "依申请公开 lacks {expected}");
    }
    let column = app.public_get("/xxgk").await.text();
    assert!(
        column.contains("href=\"/xxgk/ysqgk\""),
        "the column links 依申请公开"
    );
    for group in [
        "《政府信息公开条例》第二十条规定的信息",
        "第二十一条规定的信息（乡镇人民政府）",
        "基层政务公开标准目录",
    ] {
        assert!(
            column.contains(&format!("<h3>{group}</h3>")),
            "the catalog is grouped: {group}"
        );
    }
    let guide = app.public_get("/xxgk/catalog/guide").await.text();
    assert!(
        guide.contains("依申请公开") && !guide.contains("暂无信息"),
        "the 指南 is not empty"
    );
    let rules = app.public_get("/xxgk/catalog/rules").await.text();
    assert!(
        rules.contains("保密审查制度") && rules.contains("3 个工作日"),
        "the 制度 is not empty"
    );

    for path in [
        "/",
        "/xxgk",
        "/xxgk/ysqgk",
        "/xxgk/catalog/art20-12",
        &format!("/xxgk/items/{id}"),
        "/xxgk/cleanup",
        "/search?q=防火",
        "/no-such-page",
    ] {
        let page = app.public_get(path).await.text();
        assert!(
            page.contains("<nav class=\"crumbs\" aria-label=\"当前位置\">当前位置：<a href=\"/\">首页</a>")
                || path == "/",
            "{path} has a breadcrumb"
        );
        for line in [
            "主办单位：峨山彝族自治县人民政府办公室",
            "网站标识码：5304260001",
            "滇ICP备00000000号",
            "滇公网安备53042602000001号",
            "联系方式：0877-4011111",
        ] {
            assert!(page.contains(line), "{path}'s footer lacks {line}");
        }
    }
    let item = app.public_get(&format!("/xxgk/items/{id}")).await.text();
    assert!(
        item.contains("<a href=\"/xxgk\">政府信息公开</a> &gt; <a href=\"/xxgk/catalog/art20-12\">"),
        "an item's trail runs through its catalog entry"
    );
}
