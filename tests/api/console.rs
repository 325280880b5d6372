//! The staff console at `/console`, driven as a browser drives it: form posts with the
//! browser's cookies, redirects read one at a time.

use serde_json::json;

use crate::helpers::{Backend, TestApp, VILLAGE_A, VILLAGE_B, item_body, spawn_app};
use crate::on_both_databases;

/// One browser: its own cookie jar, redirects not followed so each answer can be checked.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
}

pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Answer {
    /// The text between the first `start` in the page and the `end` after it; a page without
    /// it fails the test, naming `what` was looked for.
    pub fn between(&self, start: &str, end: &str, what: &str) -> &str {
        self.body
            .split(start)
            .nth(1)
            .and_then(|rest| rest.split(end).next())
            .unwrap_or_else(|| panic!("no {what} on the page:\n{}", self.body))
    }

    /// The form token the page carries.
    pub fn csrf(&self) -> String {
        self.between("name=\"csrf\" value=\"", "\"", "form token")
            .to_owned()
    }

    /// The problem the page reports (`class="problem"`).
    pub fn problem(&self) -> &str {
        self.between("class=\"problem\" role=\"alert\">", "</p>", "problem")
    }

    pub fn redirects_to(&self, path: &str) {
        assert_eq!(self.status, 303, "{}", self.body);
        assert_eq!(self.location.as_deref(), Some(path));
    }

    /// A console page: Chinese, one `h1`, a `<title>` naming it.
    pub fn is_page(&self, heading: &str) {
        assert!(
            self.body.contains(&format!("<h1>{heading}</h1>")),
            "not the {heading} page:\n{}",
            self.body
        );
        assert_eq!(self.body.matches("<h1>").count(), 1, "one h1");
        assert!(self.body.contains("<html lang=\"zh-CN\">"));
        assert!(
            self.body.contains(&format!("<title>{heading} - ")),
            "{}",
            self.body
        );
    }
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        Self {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: app.address.clone(),
        }
    }

    pub async fn answer(response: reqwest::Response) -> Answer {
        Answer {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned),
            body: response.text().await.expect("body"),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        Self::answer(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        Self::answer(
            self.client
                .post(format!("{}{path}", self.base))
                .form(form)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    /// Posts a multipart form (the compose form): text fields, then files as
    /// `(field, file name, content type, bytes)`.
    pub async fn post_multipart(
        &self,
        path: &str,
        form: &[(&str, &str)],
        files: Vec<(&str, &str, &str, Vec<u8>)>,
    ) -> Answer {
        let mut multipart = reqwest::multipart::Form::new();
        for (name, value) in form {
            multipart = multipart.text(name.to_string(), value.to_string());
        }
        for (name, filename, content_type, bytes) in files {
            let part = reqwest::multipart::Part::bytes(bytes)
                .file_name(filename.to_owned())
                .mime_str(content_type)
                .expect("mime");
            multipart = multipart.part(name.to_owned(), part);
        }
        Self::answer(
            self.client
                .post(format!("{}{path}", self.base))
                .multipart(multipart)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    /// Signs in through the form; returns the answer to the post.
    pub async fn sign_in(&self, username: &str, password: &str) -> Answer {
        let form = self.get("/console/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = form.csrf();
        self.post(
            "/console/login",
            &[("csrf", &csrf), ("username", username), ("password", password)],
        )
        .await
    }
}

async fn village_item(app: &TestApp, user: &str, area: &str, title: &str) {
    let mut item = item_body(area);
    item["title"] = json!(title);
    app.create_item(user, &item).await;
}

on_both_databases! {
    async fn staff_sign_in_see_only_their_areas_items_and_sign_out(app: TestApp) {
        village_item(&app, "village_a", VILLAGE_A, "甲村村务公开：十月份低保名单").await;
        village_item(&app, "village_b", VILLAGE_B, "乙村村务公开：饮水工程验收").await;
        let browser = Browser::new(&app);

        browser.get("/console").await.redirects_to("/console/login");
        let form = browser.get("/console/login").await;
        form.is_page("登录");

        let wrong = browser.sign_in("village_a", "not-the-password-1").await;
        assert_eq!(wrong.status, 401);
        wrong.is_page("登录");
        assert!(wrong.problem().contains("用户名或密码错误"));
        assert!(wrong.body.contains("value=\"village_a\""), "the user name stays typed");

        browser
            .sign_in("village_a", "village_a-password-1")
            .await
            .redirects_to("/console");
        let home = browser.get("/console").await;
        assert_eq!(home.status, 200, "{}", home.body);
        home.is_page("工作台");
        assert!(home.body.contains("甲村村务公开：十月份低保名单"), "{}", home.body);
        assert!(home.body.contains("草稿"));
        assert!(!home.body.contains("乙村"), "village A sees village B's item:\n{}", home.body);
        assert!(home.body.contains("共 1 条"), "{}", home.body);

        let searched = browser.get("/console?q=%E4%BD%8E%E4%BF%9D&state=draft").await;
        assert!(searched.body.contains("十月份低保名单") && searched.body.contains("共 1 条"));
        let none = browser.get("/console?q=%E9%A5%AE%E6%B0%B4").await;
        assert!(none.body.contains("共 0 条") && none.body.contains("没有符合条件的信息"));

        // Signing out takes this browser's form token; without it nothing happens.
        let forged = browser.post("/console/logout", &[("csrf", "0".repeat(32).as_str())]).await;
        assert_eq!(forged.status, 403);
        forged.is_page("页面已过期");
        assert_eq!(browser.get("/console").await.status, 200, "still signed in");
        let csrf = home.csrf();
        browser
            .post("/console/logout", &[("csrf", &csrf)])
            .await
            .redirects_to("/console/login");
        browser.get("/console").await.redirects_to("/console/login");
    }

    async fn a_sign_in_posted_from_another_site_is_refused(app: TestApp) {
        // The other site's page cannot read this browser's token cookie; it can only guess.
        let browser = Browser::new(&app);
        let refused = browser
            .post(
                "/console/login",
                &[("csrf", "f".repeat(32).as_str()), ("username", "admin"), ("password", "admin-password-1")],
            )
            .await;
        assert_eq!(refused.status, 403);
        refused.is_page("页面已过期");
        browser.get("/console").await.redirects_to("/console/login");
    }

    async fn an_expired_session_gets_a_page_that_says_so(app: TestApp) {
        let browser = Browser::new(&app);
        browser.sign_in("publisher", "publisher-password-1").await.redirects_to("/console");
        assert_eq!(browser.get("/console").await.status, 200);
        let later = app.hub.clock.now()
            + chrono::Duration::hours(i64::from(app.hub.settings.auth.session_hours) + 1);
        app.hub.clock.set(later);
        browser.get("/console").await.redirects_to("/console/login?expired=1");
        let again = browser.get("/console/login?expired=1").await;
        again.is_page("登录");
        assert!(again.body.contains("登录已过期，请重新登录"), "{}", again.body);
        // The dead cookie is gone: the next visit is an ordinary sign-in.
        browser.get("/console").await.redirects_to("/console/login");
    }

    async fn a_one_time_password_is_replaced_first(app: TestApp) {
        let created = app
            .post("admin", "/api/v1/users", &json!({"username": "li.si", "role": "publisher", "area_code": "530426"}))
            .await;
        assert_eq!(created.status, 201, "{}", created.json);
        let one_time = created.json["generated_password"].as_str().expect("password").to_owned();
        let browser = Browser::new(&app);
        browser.sign_in("li.si", &one_time).await.redirects_to("/console/password");
        browser.get("/console").await.redirects_to("/console/password");
        let form = browser.get("/console/password").await;
        form.is_page("修改密码");
        assert!(form.body.contains("一次性密码"));
        let csrf = form.csrf();
        let change = |new: &'static str, confirm: &'static str| {
            let csrf = csrf.clone();
            let one_time = one_time.clone();
            let browser = &browser;
            async move {
                browser
                    .post(
                        "/console/password",
                        &[
                            ("csrf", csrf.as_str()),
                            ("current_password", one_time.as_str()),
                            ("new_password", new),
                            ("confirm_password", confirm),
                        ],
                    )
                    .await
            }
        };
        let mismatch = change("森林防火-2026-峨山", "森林防火-2026-峨").await;
        assert_eq!(mismatch.status, 422);
        assert!(mismatch.problem().contains("两次输入的新密码不一致"));
        let weak = change("1111111111", "1111111111").await;
        assert_eq!(weak.status, 422);
        let problem = weak.problem();
        assert!(problem.contains("新密码"), "the field is named as the form labels it: {problem}");
        change("森林防火-2026-峨山", "森林防火-2026-峨山")
            .await
            .redirects_to("/console?changed=1");
        let home = browser.get("/console?changed=1").await;
        home.is_page("工作台");
        assert!(home.body.contains("密码已修改"));
    }
}

on_both_databases! {
    async fn a_reviewer_approves_with_the_confidentiality_check_or_sends_back_with_a_comment(app: TestApp) {
        let mut item = item_body("530426");
        item["title"] = json!("关于做好冬季供水保障工作的通知");
        let first = app.create_item("publisher", &item).await;
        let second = app.create_item("publisher", &item_body("530426")).await;
        for id in [&first, &second] {
            let submitted = app.post("publisher", &format!("/api/v1/items/{id}/submit"), &json!({})).await;
            assert_eq!(submitted.status, 200, "{}", submitted.json);
        }
        // The author sees the item but no review form: no one reviews what they wrote.
        let author = Browser::new(&app);
        author.sign_in("publisher", "publisher-password-1").await.redirects_to("/console");
        let own = author.get(&format!("/console/items/{first}")).await;
        own.is_page("关于做好冬季供水保障工作的通知");
        assert!(own.body.contains("待审核") && !own.body.contains("审核通过</button>"), "{}", own.body);

        let reviewer = Browser::new(&app);
        reviewer.sign_in("reviewer", "reviewer-password-1").await.redirects_to("/console");
        let queue = reviewer.get("/console?state=in_review").await;
        assert!(queue.body.contains(&format!("href=\"/console/items/{first}\"")), "{}", queue.body);
        let page = reviewer.get(&format!("/console/items/{first}")).await;
        page.is_page("关于做好冬季供水保障工作的通知");
        for fact in ["索引号", "成文日期", "发文机关", "此件公开发布", "第 1 版"] {
            assert!(page.body.contains(fact), "{fact}: {}", page.body);
        }
        let csrf = page.csrf();
        let decide = |id: String, decision: &'static str, checked: bool, comment: &'static str| {
            let csrf = csrf.clone();
            let reviewer = &reviewer;
            async move {
                let mut form = vec![("csrf", csrf.clone()), ("version", "1".to_owned()), ("decision", decision.to_owned()), ("comment", comment.to_owned())];
                if checked {
                    form.push(("confidentiality_checked", "yes".to_owned()));
                }
                let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                reviewer.post(&format!("/console/items/{id}/review"), &form).await
            }
        };

        let unchecked = decide(first.clone(), "approve", false, "").await;
        assert_eq!(unchecked.status, 422);
        assert!(unchecked.problem().contains("保密审查"), "{}", unchecked.problem());
        assert_eq!(app.get("admin", &format!("/api/v1/items/{first}")).await.json["state"], "in_review");

        decide(first.clone(), "approve", true, "同意发布").await.redirects_to(&format!("/console/items/{first}?done=approved"));
        let approved = reviewer.get(&format!("/console/items/{first}?done=approved")).await;
        assert!(approved.body.contains("已审核通过") && approved.body.contains("已通过审核"), "{}", approved.body);
        assert_eq!(app.get("admin", &format!("/api/v1/items/{first}")).await.json["state"], "approved");

        let no_reason = decide(second.clone(), "reject", false, "").await;
        assert_eq!(no_reason.status, 422);
        assert!(no_reason.problem().contains("审核意见"), "{}", no_reason.problem());
        decide(second.clone(), "reject", false, "请补充发文字号").await.redirects_to(&format!("/console/items/{second}?done=rejected"));
        let sent_back = author.get(&format!("/console/items/{second}")).await;
        assert!(sent_back.body.contains("草稿") && sent_back.body.contains("审核意见：请补充发文字号"), "{}", sent_back.body);
    }

    async fn an_item_outside_ones_area_is_not_shown_in_the_console(app: TestApp) {
        let mut item = item_body(VILLAGE_B);
        item["title"] = json!("乙村村务公开：饮水工程验收");
        let id = app.create_item("village_b", &item).await;
        let village_a = Browser::new(&app);
        village_a.sign_in("village_a", "village_a-password-1").await.redirects_to("/console");
        let hidden = village_a.get(&format!("/console/items/{id}")).await;
        assert_eq!(hidden.status, 403, "as the API answers");
        hidden.is_page("无权查看");
        assert!(!hidden.body.contains("饮水工程"));
        let village_b = Browser::new(&app);
        village_b.sign_in("village_b", "village_b-password-1").await.redirects_to("/console");
        assert_eq!(village_b.get(&format!("/console/items/{id}")).await.status, 200);
        let missing = village_b.get("/console/items/no-such-item").await;
        assert_eq!(missing.status, 404);
        missing.is_page("信息不存在");
    }
}

on_both_databases! {
    async fn a_publisher_confirms_the_targets_publishes_once_and_watches_the_deliveries(app: TestApp) {
        let mut item = item_body("530426");
        item["title"] = json!("关于开展冬季森林防火巡查的通告");
        let id = app.create_item("publisher", &item).await;
        let approved = app.approve("publisher", "reviewer", &id).await;
        assert_eq!(approved.status, 200, "{}", approved.json);

        let publisher = Browser::new(&app);
        publisher.sign_in("publisher", "publisher-password-1").await.redirects_to("/console");
        let page = publisher.get(&format!("/console/items/{id}")).await;
        assert!(page.body.contains(&format!("href=\"/console/items/{id}/publish\"")), "{}", page.body);
        assert!(!page.body.contains("送达情况"), "nothing sent yet");

        let confirm = publisher.get(&format!("/console/items/{id}/publish")).await;
        confirm.is_page("确认发布");
        assert!(confirm.body.contains("政府门户网站"), "the targets are named by channel: {}", confirm.body);
        let csrf = confirm.csrf();
        let request = confirm
            .between("name=\"request\" value=\"", "\"", "request named by the confirmation")
            .to_owned();
        // A double click posts the confirmation twice: it publishes once.
        for _ in 0..2 {
            publisher
                .post(&format!("/console/items/{id}/publish"), &[("csrf", &csrf), ("request", &request)])
                .await
                .redirects_to(&format!("/console/items/{id}?done=published"));
        }
        let deliveries = app.get("admin", &format!("/api/v1/items/{id}/deliveries")).await;
        let sent = deliveries.json["deliveries"].as_array().expect("deliveries").len();
        assert!(sent >= 1, "{}", deliveries.json);

        let waiting = publisher.get(&format!("/console/items/{id}?done=published")).await;
        assert!(waiting.body.contains("已发布，正在向各渠道发送"));
        assert!(waiting.body.contains("送达情况") && waiting.body.contains("待发送"), "{}", waiting.body);
        assert!(waiting.body.contains("http-equiv=\"refresh\""), "the page refreshes while deliveries run");

        app.deliver_due().await;
        let done = publisher.get(&format!("/console/items/{id}")).await;
        assert!(done.body.contains("已送达") && done.body.contains("state-delivered"), "{}", done.body);
        assert!(!done.body.contains("http-equiv=\"refresh\""), "settled: no more refreshing");

        assert_eq!(
            app.get("admin", &format!("/api/v1/items/{id}/deliveries")).await.json["deliveries"]
                .as_array()
                .expect("deliveries")
                .len(),
            sent,
            "the second post published nothing more"
        );

        // Withdrawn with its reason, it comes down from the portal at once.
        let csrf = done.csrf();
        let no_reason = publisher.post(&format!("/console/items/{id}/withdraw"), &[("csrf", csrf.as_str()), ("reason", "")]).await;
        assert_eq!(no_reason.status, 422);
        assert!(no_reason.problem().contains("理由"), "{}", no_reason.problem());
        publisher
            .post(&format!("/console/items/{id}/withdraw"), &[("csrf", csrf.as_str()), ("reason", "内容已过时")])
            .await
            .redirects_to(&format!("/console/items/{id}?done=withdrawn"));
        let withdrawn = publisher.get(&format!("/console/items/{id}?done=withdrawn")).await;
        assert!(withdrawn.body.contains("已撤回，正在从各渠道撤下") && withdrawn.body.contains("撤回"), "{}", withdrawn.body);
        assert_eq!(app.public_get(&format!("/xxgk/items/{id}")).await.status, 410);


        // A reviewer may not publish; the page offers them nothing and the post is refused.
        let other = app.create_item("publisher", &item_body("530426")).await;
        assert_eq!(app.approve("publisher", "reviewer", &other).await.status, 200);
        let reviewer = Browser::new(&app);
        reviewer.sign_in("reviewer", "reviewer-password-1").await.redirects_to("/console");
        let theirs = reviewer.get(&format!("/console/items/{other}")).await;
        assert!(!theirs.body.contains("/publish\""), "{}", theirs.body);
        let csrf = theirs.csrf();
        let refused = reviewer
            .post(&format!("/console/items/{other}/publish"), &[("csrf", &csrf), ("request", "r1")])
            .await;
        assert_eq!(refused.status, 403);
        assert!(refused.problem().contains("权限"), "{}", refused.problem());
        assert_eq!(app.get("admin", &format!("/api/v1/items/{other}")).await.json["state"], "approved");
    }
}

on_both_databases! {
    async fn a_publisher_composes_an_item_is_told_which_field_is_wrong_and_submits_it(app: TestApp) {
        let publisher = Browser::new(&app);
        publisher.sign_in("publisher", "publisher-password-1").await.redirects_to("/console");
        assert!(publisher.get("/console").await.body.contains("href=\"/console/items/new\""));
        let form = publisher.get("/console/items/new").await;
        form.is_page("新建信息");
        for label in ["标题", "索引号", "发文字号", "成文日期", "发文机关", "主题分类", "此件公开发布", "此件不公开"] {
            assert!(form.body.contains(label), "{label}");
        }
        let csrf = form.csrf();
        let example = item_body("530426");
        let index_no = example["index_no"].as_str().expect("index_no").to_owned();
        let typed = |title: &'static str, written: &'static str| {
            vec![
                ("csrf", csrf.clone()),
                ("title", title.to_owned()),
                ("summary", "部署冬季供水保障工作".to_owned()),
                ("body", "各乡镇人民政府：\n\n为做好今冬供水保障，现通知如下。\n\n峨山县水务局\n2026年9月20日".to_owned()),
                ("index_no", index_no.clone()),
                ("doc_no", "峨水发〔2026〕31号".to_owned()),
                ("written_date", written.to_owned()),
                ("issuers", "县水务局".to_owned()),
                ("genre", "notice".to_owned()),
                ("topic", "综合政务".to_owned()),
                ("catalog", example["catalog"].as_str().expect("catalog").to_owned()),
                ("area_code", "530426".to_owned()),
                ("validity", String::new()),
                ("expires_on", String::new()),
                ("disclosure", "public".to_owned()),
                ("legal_reason", String::new()),
                ("redacted_body", String::new()),
            ]
        };
        let post = |fields: Vec<(&'static str, String)>| {
            let publisher = &publisher;
            async move {
                let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
                publisher.post_multipart("/console/items", &fields, Vec::new()).await
            }
        };

        // A file goes with the form; refused for another field, the form keeps it.
        let pdf = b"%PDF-1.4\n% \xe4\xbe\x9b\xe6\xb0\xb4\n".to_vec();
        let fields: Vec<(&str, String)> = typed("关于做好今冬供水保障工作的通知", "2026年9月20日");
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let no_date = publisher
            .post_multipart(
                "/console/items",
                &fields,
                vec![
                    ("files", "供水保障方案.pdf", "application/pdf", pdf.clone()),
                    ("files", "", "application/octet-stream", Vec::new()),
                ],
            )
            .await;
        assert_eq!(no_date.status, 422, "{}", no_date.body);
        let kept = no_date
            .between("name=\"attachment\" value=\"", "\"", "uploaded file kept")
            .to_owned();
        assert!(kept.ends_with("/供水保障方案.pdf"), "{kept}");
        assert!(no_date.body.contains("保留已上传的附件：供水保障方案.pdf"));
        // A type not allowed is refused naming the file, and nothing is created.
        let exe = publisher
            .post_multipart(
                "/console/items",
                &fields,
                vec![("files", "setup.exe", "application/x-msdownload", b"MZ".to_vec())],
            )
            .await;
        assert_eq!(exe.status, 422);
        assert!(exe.problem().contains("附件“setup.exe”未能上传"), "{}", exe.problem());
        assert!(exe.body.contains("id=\"files\" name=\"files\" type=\"file\""));
        assert!(no_date.problem().contains("成文日期"), "{}", no_date.problem());
        assert!(no_date.body.contains("id=\"written_date\" name=\"written_date\" type=\"date\" value=\"2026年9月20日\" required aria-invalid=\"true\""), "the field is marked and keeps what was typed");
        assert!(no_date.body.contains("value=\"关于做好今冬供水保障工作的通知\""), "the other fields keep what was typed");
        let no_title = post(typed("", "2026-09-20")).await;
        assert_eq!(no_title.status, 422);
        assert!(no_title.problem().contains("标题"), "{}", no_title.problem());

        let mut with_file = typed("关于做好今冬供水保障工作的通知", "2026-09-20");
        with_file.push(("attachment", kept.clone()));
        let created = post(with_file).await;
        assert_eq!(created.status, 303, "{}", created.body);
        let location = created.location.clone().expect("location");
        let id = location
            .trim_start_matches("/console/items/")
            .trim_end_matches("?done=created")
            .to_owned();
        let item = app.get("publisher", &format!("/api/v1/items/{id}")).await;
        assert_eq!(item.status, 200, "{}", item.json);
        assert_eq!(item.json["state"], "draft");
        assert_eq!(item.json["content"]["issuers"][0], "峨山彝族自治县水务局", "the alias is stored as the organ's full name");
        assert_eq!(item.json["content"]["doc_no"], "峨水发〔2026〕31号");
        assert_eq!(item.json["content"]["attachments"][0]["filename"], "供水保障方案.pdf");
        assert_eq!(
            item.json["content"]["attachments"][0]["sha256"].as_str(),
            kept.split('/').next()
        );

        let page = publisher.get(&location).await;
        assert!(page.body.contains("草稿已保存"), "{}", page.body);
        let csrf = page.csrf();
        publisher
            .post(&format!("/console/items/{id}/submit"), &[("csrf", &csrf)])
            .await
            .redirects_to(&format!("/console/items/{id}?done=submitted"));
        assert_eq!(app.get("publisher", &format!("/api/v1/items/{id}")).await.json["state"], "in_review");

        // A village operator composes for their own village only.
        let village = Browser::new(&app);
        village.sign_in("village_a", "village_a-password-1").await.redirects_to("/console");
        let theirs = village.get("/console/items/new").await;
        assert!(theirs.body.contains(&format!("value=\"{VILLAGE_A}\"")), "{}", theirs.body);
        assert!(!theirs.body.contains(&format!("value=\"{VILLAGE_B}\"")), "village B is not offered");
        let reviewer = Browser::new(&app);
        reviewer.sign_in("reviewer", "reviewer-password-1").await.redirects_to("/console");
        assert_eq!(reviewer.get("/console/items/new").await.status, 403);
    }
}

/// A delivery that failed is sent again from the item's page, and only that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_sent_again_from_the_items_page() {
    use crate::scripted::{Scripted, Step};
    use herald_channels::ChannelKind;
    let scripted = Scripted::new(ChannelKind::Wechat, &[], Step::Deliver);
    let app = crate::helpers::spawn_app_with(Backend::Sqlite, vec![scripted.clone()]).await;
    app.add_target("wechat", "峨山发布", "530426", json!({})).await;
    let broken = app
        .add_target("wechat", "失效账号", "530426", json!({"fail": true}))
        .await;
    let id = app
        .publish_new(&item_body("530426"), &json!({"channels": ["wechat"]}))
        .await;
    assert_eq!(app.deliver_due().await, 2);

    let publisher = Browser::new(&app);
    publisher
        .sign_in("publisher", "publisher-password-1")
        .await
        .redirects_to("/console");
    let page = publisher.get(&format!("/console/items/{id}")).await;
    assert!(
        page.body.contains("state-failed") && page.body.contains("state-delivered"),
        "{}",
        page.body
    );
    assert_eq!(
        page.body.matches(">重新发送</button>").count(),
        1,
        "only the failed one offers it"
    );
    let deliveries = app.get("admin", &format!("/api/v1/items/{id}/deliveries")).await;
    let failed = deliveries.json["deliveries"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|d| d["target_id"] == broken.as_str())
        .and_then(|d| d["id"].as_str())
        .expect("the failed delivery")
        .to_owned();
    let csrf = page.csrf();
    publisher
        .post(
            &format!("/console/deliveries/{failed}/retry"),
            &[("csrf", csrf.as_str()), ("item", id.as_str())],
        )
        .await
        .redirects_to(&format!("/console/items/{id}?done=retried"));
    let after = publisher.get(&format!("/console/items/{id}?done=retried")).await;
    assert!(
        after.body.contains("已重新发送") && after.body.contains("待发送"),
        "{}",
        after.body
    );
    assert_eq!(app.deliver_due().await, 1, "only the retried delivery is sent");
    assert_eq!(scripted.calls().len(), 3);

    // The broken account fails again; a reviewer is offered no retry, and their post is refused.
    let reviewer = Browser::new(&app);
    reviewer
        .sign_in("reviewer", "reviewer-password-1")
        .await
        .redirects_to("/console");
    let theirs = reviewer.get(&format!("/console/items/{id}")).await;
    assert!(theirs.body.contains("state-failed") && !theirs.body.contains(">重新发送</button>"));
    let refused = reviewer
        .post(
            &format!("/console/deliveries/{failed}/retry"),
            &[("csrf", theirs.csrf().as_str()), ("item", id.as_str())],
        )
        .await;
    assert_eq!(refused.status, 403);
    assert!(refused.problem().contains("权限"), "{}", refused.problem());
    assert_eq!(scripted.calls().len(), 3, "nothing was sent");
}

/// The item's page says, village by village, how far it got on the loudspeakers and boards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_items_page_shows_its_reach_by_village() {
    use crate::scripted::{Scripted, Step};
    use herald_channels::ChannelKind;
    // Village A's loudspeaker takes it; village B's is broken.
    let scripted = Scripted::new(ChannelKind::Loudspeaker, &[], Step::Deliver);
    let app = crate::helpers::spawn_app_with(Backend::Sqlite, vec![scripted.clone()]).await;
    app.add_target("loudspeaker", "甲村广播一号", VILLAGE_A, json!({}))
        .await;
    app.add_target("loudspeaker", "乙村广播一号", VILLAGE_B, json!({"fail": true}))
        .await;
    let id = app
        .publish_new(&item_body("530426"), &json!({"channels": ["loudspeaker"]}))
        .await;
    assert_eq!(app.deliver_due().await, 2);
    let admin = Browser::new(&app);
    admin
        .sign_in("admin", "admin-password-1")
        .await
        .redirects_to("/console");
    let page = admin.get(&format!("/console/items/{id}")).await;
    assert!(page.body.contains("村级覆盖"), "{}", page.body);
    let village = |class: &str| {
        page.between(
            &format!("<tr class=\"reach-{class}\">"),
            "</tr>",
            &format!("{class} village"),
        )
        .to_owned()
    };
    assert!(village("reached").contains("全部收到"));
    let silent = village("silent");
    assert!(
        silent.contains("均未收到") && silent.contains("乙村广播一号"),
        "the silent device is named: {silent}"
    );
    assert!(
        page.body
            .contains(&format!("href=\"/api/v1/items/{id}/receipts.csv\""))
    );
    // The CSV link works with the console's session.
    let csv = admin.get(&format!("/api/v1/items/{id}/receipts.csv")).await;
    assert_eq!(csv.status, 200);
    assert!(csv.body.starts_with('\u{feff}'), "UTF-8 with BOM for Excel");
}

/// The 工作台 lists interpretations still owed, with their deadline, the overdue marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_page_shows_interpretations_owed_and_their_deadlines() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut policy_body = item_body("530426");
    policy_body["title"] = json!("关于印发森林防火实施方案的通知");
    let policy = app.create_item("publisher", &policy_body).await;
    app.approve("publisher", "reviewer", &policy).await;
    let mut body = item_body("530426");
    body["title"] = json!("《森林防火实施方案》政策解读");
    body["genre"] = json!("interpretation");
    body["interprets"] = json!(policy);
    app.create_item("publisher", &body).await;
    let publisher = Browser::new(&app);
    publisher
        .sign_in("publisher", "publisher-password-1")
        .await
        .redirects_to("/console");
    assert!(
        !publisher.get("/console").await.body.contains("政策解读期限"),
        "nothing owed before the policy is out"
    );

    assert_eq!(app.publish("publisher", &policy, "policy").await.status, 201);
    app.hub.clock.set("2026-10-11T02:00:00Z".parse().expect("time"));
    publisher
        .sign_in("publisher", "publisher-password-1")
        .await
        .redirects_to("/console");
    let home = publisher.get("/console").await;
    let row = home.between("<tr class=\"due-overdue\">", "</tr>", "overdue row");
    assert!(
        row.contains("《森林防火实施方案》政策解读")
            && row.contains("关于印发森林防火实施方案的通知")
            && row.contains("2026-10-10")
            && row.contains("已逾期"),
        "{row}"
    );
}

on_both_databases! {
    async fn an_administrator_reads_the_audit_log_and_verifies_the_chain(app: TestApp) {
        use sea_orm::ConnectionTrait;
        let mut item = item_body("530426");
        item["title"] = json!("审计日志测试通知");
        app.create_item("publisher", &item).await;
        let admin = Browser::new(&app);
        admin.sign_in("admin", "admin-password-1").await.redirects_to("/console");
        assert!(admin.get("/console").await.body.contains("href=\"/console/audit\""));
        let log = admin.get("/console/audit").await;
        log.is_page("审计日志");
        let created = log
            .body
            .split("<tr>")
            .find(|row| row.contains("新建信息"))
            .unwrap_or_else(|| panic!("no 新建信息 entry: {}", log.body));
        assert!(created.contains("<td>publisher</td>"), "the actor by user name: {created}");
        let csrf = log.csrf();
        let intact = admin.post("/console/audit/verify", &[("csrf", csrf.as_str())]).await;
        assert_eq!(intact.status, 200);
        assert!(intact.body.contains("审计链完整"), "{}", intact.body);

        app.hub.db.execute_unprepared("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2").await.expect("tamper");
        let broken = admin.post("/console/audit/verify", &[("csrf", csrf.as_str())]).await;
        assert!(broken.problem().contains("第 2 条记录处断开"), "{}", broken.body);

        // Reviewers read it but do not verify; publishers do not read it.
        let reviewer = Browser::new(&app);
        reviewer.sign_in("reviewer", "reviewer-password-1").await.redirects_to("/console");
        let theirs = reviewer.get("/console/audit").await;
        assert_eq!(theirs.status, 200);
        assert!(!theirs.body.contains("/console/audit/verify"));
        assert_eq!(reviewer.post("/console/audit/verify", &[("csrf", theirs.csrf().as_str())]).await.status, 403);
        let publisher = Browser::new(&app);
        publisher.sign_in("publisher", "publisher-password-1").await.redirects_to("/console");
        assert!(!publisher.get("/console").await.body.contains("href=\"/console/audit\""));
        assert_eq!(publisher.get("/console/audit").await.status, 403);
    }
}

on_both_databases! {
    async fn an_administrator_creates_an_account_whose_one_time_password_is_shown_once(app: TestApp) {
        let admin = Browser::new(&app);
        admin.sign_in("admin", "admin-password-1").await.redirects_to("/console");
        assert!(admin.get("/console").await.body.contains("href=\"/console/users\""));
        let page = admin.get("/console/users").await;
        page.is_page("用户管理");
        assert!(page.body.contains("<td>village_a</td>") && page.body.contains("村级操作员"), "{}", page.body);
        let csrf = page.csrf();
        let one_time = |answer: &Answer| answer.between("class=\"secret\">", "<", "one-time password").to_owned();

        // A village operator must belong to a village: refused, naming the field, the form kept.
        let county = admin
            .post("/console/users", &[("csrf", csrf.as_str()), ("username", "zhao.liu"), ("display_name", "赵六"), ("role", "village_operator"), ("area_code", "530426")])
            .await;
        assert_eq!(county.status, 422, "{}", county.body);
        assert!(!county.problem().is_empty());
        assert!(county.body.contains("value=\"zhao.liu\""), "what was typed stays");

        let created = admin
            .post("/console/users", &[("csrf", csrf.as_str()), ("username", "zhao.liu"), ("display_name", "赵六"), ("role", "village_operator"), ("area_code", VILLAGE_A)])
            .await;
        assert_eq!(created.status, 200, "{}", created.body);
        let password = one_time(&created);
        assert!(created.body.contains("<td>zhao.liu</td>"));
        assert!(!admin.get("/console/users").await.body.contains(&password), "shown once only");

        let user = Browser::new(&app);
        user.sign_in("zhao.liu", &password).await.redirects_to("/console/password");

        // A reset gives a new one-time password; the first no longer works.
        let id = created
            .body
            .split("<tr><td>zhao.liu</td>")
            .nth(1)
            .and_then(|row| row.split("/console/users/").nth(1))
            .and_then(|rest| rest.split('/').next())
            .expect("the reset button names the user")
            .to_owned();
        let reset = admin.post(&format!("/console/users/{id}/password-reset"), &[("csrf", csrf.as_str())]).await;
        assert_eq!(reset.status, 200, "{}", reset.body);
        let again = one_time(&reset);
        assert_ne!(again, password);
        assert_eq!(Browser::new(&app).sign_in("zhao.liu", &password).await.status, 401);
        Browser::new(&app).sign_in("zhao.liu", &again).await.redirects_to("/console/password");

        let publisher = Browser::new(&app);
        publisher.sign_in("publisher", "publisher-password-1").await.redirects_to("/console");
        assert!(!publisher.get("/console").await.body.contains("href=\"/console/users\""));
        assert_eq!(publisher.get("/console/users").await.status, 403);
    }
}

/// The console's pages are the hub's own, never kept for another visitor.
#[tokio::test]
async fn console_pages_are_never_cached() {
    let app = spawn_app(Backend::Sqlite).await;
    let browser = Browser::new(&app);
    browser
        .sign_in("admin", "admin-password-1")
        .await
        .redirects_to("/console");
    let response = browser
        .client
        .get(format!("{}/console", app.address))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let css = browser.get("/console/assets/console.css").await;
    assert_eq!(css.status, 200);
}

/// Every form of the console is refused without this browser's form token — missing or
/// wrong — and what it would have changed is unchanged.
#[tokio::test]
async fn every_console_form_is_refused_without_its_token() {
    let app = spawn_app(Backend::Sqlite).await;
    let draft = app.create_item("publisher", &item_body("530426")).await;
    let users = app.get("admin", "/api/v1/users").await;
    let publisher_id = users
        .json
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["username"] == "publisher")
        .expect("publisher")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let admin = Browser::new(&app);
    admin
        .sign_in("admin", "admin-password-1")
        .await
        .redirects_to("/console");
    let token = admin.get("/console").await.csrf();
    let forms = [
        "/console/login".to_owned(),
        "/console/logout".to_owned(),
        "/console/password".to_owned(),
        format!("/console/items/{draft}/submit"),
        format!("/console/items/{draft}/review"),
        format!("/console/items/{draft}/publish"),
        format!("/console/items/{draft}/withdraw"),
        "/console/deliveries/any/retry".to_owned(),
        "/console/deliveries/any/cancel".to_owned(),
        "/console/users".to_owned(),
        format!("/console/users/{publisher_id}/password-reset"),
        "/console/audit/verify".to_owned(),
    ];
    let wrong = "0".repeat(token.len());
    for path in &forms {
        for csrf in ["", wrong.as_str()] {
            let answer = admin
                .post(
                    path,
                    &[
                        ("csrf", csrf),
                        ("username", "x"),
                        ("password", "y"),
                        ("reason", "r"),
                    ],
                )
                .await;
            assert_eq!(answer.status, 403, "{path} with {csrf:?}: {}", answer.body);
            assert!(answer.body.contains("页面已过期"), "{path}: {}", answer.body);
        }
    }
    // The compose form (multipart, with a file): refused before any file is stored.
    let stored = app.count("SELECT COUNT(*) FROM attachments").await;
    for csrf in ["", wrong.as_str()] {
        let form = reqwest::multipart::Form::new()
            .text("csrf", csrf.to_owned())
            .text("title", "无令牌的表单")
            .part(
                "files",
                reqwest::multipart::Part::bytes(b"%PDF-1.4 forged".to_vec())
                    .file_name("forged.pdf")
                    .mime_str("application/pdf")
                    .expect("mime"),
            );
        let answer = Browser::answer(
            admin
                .client
                .post(format!("{}/console/items", admin.base))
                .multipart(form)
                .send()
                .await
                .expect("POST"),
        )
        .await;
        assert_eq!(answer.status, 403, "{}", answer.body);
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM attachments").await,
        stored,
        "no file stored"
    );
    // Nothing changed: still signed in, the draft still a draft, the password the same.
    assert_eq!(admin.get("/console").await.status, 200);
    assert_eq!(
        app.get("publisher", &format!("/api/v1/items/{draft}")).await.json["state"],
        "draft"
    );
    Browser::new(&app)
        .sign_in("publisher", "publisher-password-1")
        .await
        .redirects_to("/console");
}
