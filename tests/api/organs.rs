//! Reference data instead of free text: 发文机关 from the organ list (names and aliases, edited
//! by administrators over the API, seeded from a file), 主题分类 from the national vocabulary.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, cap_message, item_body, spawn_app};
use crate::on_both_databases;

const WATER: &str = "峨山彝族自治县水务局";

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn with_issuers(issuers: &[&str], title: &str) -> Value {
    let mut body = item_body("530426");
    body["issuers"] = json!(issuers);
    body["title"] = json!(title);
    body
}

fn organ<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .expect("organ list")
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("{name} is listed: {list}"))
}

async fn organ_id(app: &TestApp, name: &str) -> String {
    let list = app.get("publisher", "/api/v1/organs").await;
    assert_eq!(list.status, 200, "{}", list.json);
    organ(&list.json, name)["id"].as_str().expect("id").to_owned()
}

async fn patch(app: &TestApp, user: &str, id: &str, body: Value) -> crate::helpers::Reply {
    app.call(
        Method::PATCH,
        Some(user),
        &format!("/api/v1/organs/{id}"),
        Some(&body),
    )
    .await
}

fn refusal(reply: &crate::helpers::Reply) -> (u16, Value, Option<&str>) {
    (reply.status, reply.json["error"]["code"].clone(), reply.field())
}

on_both_databases! {
    async fn both_spellings_of_an_organ_are_one_organ_and_one_organ_page(app: TestApp) {
        // Written under the county's short name: filed under the organ's full name.
        let short = app.publish_new(&with_issuers(&["峨山县水务局"], "关于2026年冬春农田水利建设的通知"), &json!({})).await;
        let shown = app.get("publisher", &format!("/api/v1/items/{short}")).await;
        assert_eq!(shown.json["content"]["issuers"], json!([WATER]), "{}", shown.json);
        let full = app.publish_new(&with_issuers(&[WATER, "县水务局"], "关于做好2026年防汛抗旱工作的通知"), &json!({})).await;
        let shown = app.get("publisher", &format!("/api/v1/items/{full}")).await;
        assert_eq!(shown.json["content"]["issuers"], json!([WATER]), "the same organ twice is named once");
        // A page written before the organ list, under an alias.
        let legacy = app.publish_new(&with_issuers(&[WATER], "关于农村饮水安全工程的公告"), &json!({})).await;
        app.deliver_due().await;
        sea_orm::ConnectionTrait::execute_unprepared(
            &app.hub.db,
            &format!("UPDATE portal_pages SET issuers = '[\"峨山县水务局\"]' WHERE item_id = '{legacy}'"),
        )
        .await
        .expect("a legacy page");

        let column = app.public_get("/xxgk").await.text();
        assert_eq!(column.matches("水务局</a>").count(), 1, "one organ link: {column}");
        assert!(column.contains(&format!("/xxgk/organs/{}\">{WATER}</a>", urlencode(WATER))), "{column}");
        let page = app.public_get(&format!("/xxgk/organs/{}", urlencode(WATER))).await;
        assert_eq!(page.status, 200);
        for id in [&short, &full, &legacy] {
            assert!(page.text().contains(id.as_str()), "the organ page lists {id}: {}", page.text());
        }
        // The alias's address moves to the organ's.
        let direct = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let moved = direct
            .get(format!("{}/xxgk/organs/{}", app.address, urlencode("峨山县水务局")))
            .send()
            .await
            .expect("answer");
        assert_eq!(moved.status().as_u16(), 301);
        assert_eq!(moved.headers()["location"].to_str().expect("location"), format!("/xxgk/organs/{}", urlencode(WATER)));
        // A 发文字号 is one organ's however the other item spelled it.
        let mut again = with_issuers(&["县水务局"], "重复字号");
        let first = app.get("publisher", &format!("/api/v1/items/{short}")).await;
        again["doc_no"] = first.json["content"]["doc_no"].clone();
        let duplicate = app.post("publisher", "/api/v1/items", &again).await;
        assert_eq!(refusal(&duplicate), (422, json!("duplicate_doc_no"), Some("doc_no")), "{}", duplicate.json);
    }

    async fn an_organ_not_in_the_list_is_refused_naming_the_field(app: TestApp) {
        let unknown = app.post("publisher", "/api/v1/items", &with_issuers(&["峨山县水利局"], "未知机关")).await;
        assert_eq!(refusal(&unknown), (422, json!("unknown_organ"), Some("issuers[0]")), "{}", unknown.json);
        let error = &unknown.json["error"];
        assert_eq!(error["field_label"], "发文机关（第1项）");
        assert!(error["message_zh"].as_str().expect("zh").contains("不在发文机关名录中"), "{error}");
        assert!(error["message"].as_str().expect("message").contains("峨山县水利局"), "{error}");
        let second = app.post("publisher", "/api/v1/items", &with_issuers(&["峨山彝族自治县人民政府办公室", "县水利局"], "联合发文")).await;
        assert_eq!(refusal(&second), (422, json!("unknown_organ"), Some("issuers[1]")), "{}", second.json);
        // Nothing was stored, and an edit is held to the same list.
        let id = app.create_item("publisher", &item_body("530426")).await;
        let mut edit = item_body("530426");
        edit["issuers"] = json!(["县政府办公室", "县水利局"]);
        let edited = app.put("publisher", &format!("/api/v1/items/{id}"), &edit).await;
        assert_eq!(refusal(&edited), (422, json!("unknown_organ"), Some("issuers[1]")), "{}", edited.json);
    }

    async fn administrators_edit_the_organ_list_and_items_follow_it(app: TestApp) {
        let listed = app.get("village_a", "/api/v1/organs").await;
        assert_eq!(listed.status, 200, "everyone signed in reads the list");
        assert_eq!(organ(&listed.json, WATER)["aliases"], json!(["县水务局", "峨山县水务局"]));
        assert_eq!(organ(&listed.json, "峨山彝族自治县甸中镇人民政府")["area_code"], "530426101");
        assert_eq!(app.public_get("/api/v1/organs").await.status, 401);

        let archives = json!({"name": "峨山彝族自治县档案馆", "aliases": ["县档案馆", " 县档案馆 "]});
        let refused = app.post("publisher", "/api/v1/organs", &archives).await;
        assert_eq!(refused.status, 403, "{}", refused.json);
        let unlisted = app.post("publisher", "/api/v1/items", &with_issuers(&["县档案馆"], "档案")).await;
        assert_eq!(refusal(&unlisted), (422, json!("unknown_organ"), Some("issuers[0]")));
        let created = app.post("admin", "/api/v1/organs", &archives).await;
        assert_eq!(created.status, 201, "{}", created.json);
        assert_eq!(created.json["aliases"], json!(["县档案馆"]));
        assert_eq!(created.json["area_code"], "530426", "the administrator's area");
        let archives_id = created.json["id"].as_str().expect("id").to_owned();
        let item = app.publish_new(&with_issuers(&["县档案馆"], "关于开展档案工作检查的通知"), &json!({})).await;
        let shown = app.get("publisher", &format!("/api/v1/items/{item}")).await;
        assert_eq!(shown.json["content"]["issuers"], json!(["峨山彝族自治县档案馆"]));

        // A spelling belongs to one organ: a name or alias another organ has is refused, naming it.
        let clash = app.post("admin", "/api/v1/organs", &json!({"name": "峨山彝族自治县水文站", "aliases": ["县水文站", "县水务局"]})).await;
        assert_eq!(refusal(&clash), (422, json!("organ_name_taken"), Some("aliases[1]")), "{}", clash.json);
        assert!(clash.json["error"]["message"].as_str().expect("message").contains(WATER));
        assert_eq!(clash.json["error"]["field_label"], "别名（第2项）");
        let name_clash = app.post("admin", "/api/v1/organs", &json!({"name": "峨山县水务局"})).await;
        assert_eq!(refusal(&name_clash), (422, json!("organ_name_taken"), Some("name")), "{}", name_clash.json);
        let alias_clash = patch(&app, "admin", &archives_id, json!({"aliases": ["县档案馆", "县政府"]})).await;
        assert_eq!(refusal(&alias_clash), (422, json!("organ_name_taken"), Some("aliases[1]")), "{}", alias_clash.json);
        let foreign = patch(&app, "admin", &archives_id, json!({"area_code": "530499"})).await;
        assert_eq!(refusal(&foreign), (422, json!("invalid"), Some("area_code")));
        assert_eq!(patch(&app, "publisher", &archives_id, json!({"retired": true})).await.status, 403);
        assert_eq!(patch(&app, "admin", "no-such-organ", json!({"retired": true})).await.status, 404);

        // An alias added over the API is accepted at once.
        let added = patch(&app, "admin", &archives_id, json!({"aliases": ["县档案馆", "峨山县档案馆"]})).await;
        assert_eq!(added.status, 200, "{}", added.json);
        assert_eq!(added.json["aliases"], json!(["县档案馆", "峨山县档案馆"]));
        let draft = app.create_item("publisher", &with_issuers(&["峨山县档案馆"], "关于档案馆开放日的公告")).await;

        // Retired: no new item may name it; its items stay, and keep it when edited.
        let retired = patch(&app, "admin", &archives_id, json!({"retired": true})).await;
        assert_eq!((retired.status, retired.json["retired"].clone()), (200, json!(true)), "{}", retired.json);
        let refused = app.post("publisher", "/api/v1/items", &with_issuers(&["县档案馆"], "新文件")).await;
        assert_eq!(refusal(&refused), (422, json!("retired_organ"), Some("issuers[0]")), "{}", refused.json);
        let mut edit = with_issuers(&["县档案馆"], "关于档案馆开放日的公告（修改）");
        edit["index_no"] = app.get("publisher", &format!("/api/v1/items/{draft}")).await.json["content"]["index_no"].clone();
        let edited = app.put("publisher", &format!("/api/v1/items/{draft}"), &edit).await;
        assert_eq!(edited.status, 200, "an item keeps its retired issuer: {}", edited.json);
        // The stored content is an item's input, as it stands.
        let mut input = app.get("publisher", &format!("/api/v1/items/{item}")).await.json["content"].clone();
        input["summary"] = json!("更正了摘要");
        input["correction_note"] = json!("更正摘要中的错字");
        let corrected = app.correct(&item, &input).await;
        assert_eq!(corrected.status, 200, "a correction keeps its retired issuer: {}", corrected.json);
        app.deliver_due().await;
        let page = app.public_get(&format!("/xxgk/organs/{}", urlencode("峨山彝族自治县档案馆"))).await;
        assert!(page.text().contains(&item), "a retired organ's published items stay");

        let audit = app.get("admin", "/api/v1/audit?limit=1000").await;
        let actions: Vec<&str> = audit.json.as_array().expect("audit").iter()
            .filter(|e| e["target_id"] == archives_id.as_str())
            .map(|e| e["action"].as_str().expect("action"))
            .collect();
        assert_eq!(actions, ["organ.create", "organ.update", "organ.retire"]);

        // A restart seeds what the file adds and keeps what administrators did.
        let water = organ_id(&app, WATER).await;
        let trimmed = patch(&app, "admin", &water, json!({"aliases": ["县水务局"]})).await;
        assert_eq!(trimmed.json["aliases"], json!(["县水务局"]));
        let file = app._dir.path().join("organs.toml");
        std::fs::write(&file, format!(
            "[[organs]]\nname = \"{WATER}\"\naliases = [\"峨山县水务局\", \"县水务局\"]\n\n\
             [[organs]]\nname = \"峨山彝族自治县地方志编纂委员会办公室\"\naliases = [\"县志办\", \"县档案馆\"]\narea_code = \"530426\"\n"
        )).expect("write");
        let mut settings = app.hub.settings.clone();
        settings.content.organs_file = file.display().to_string();
        herald::startup::open_hub(settings, app.hub.clock.clone()).await.expect("a second start");
        let listed = app.get("publisher", "/api/v1/organs").await;
        assert_eq!(organ(&listed.json, WATER)["aliases"], json!(["县水务局"]), "an administrator's edit stays");
        assert_eq!(organ(&listed.json, "峨山彝族自治县档案馆")["retired"], json!(true));
        let added = organ(&listed.json, "峨山彝族自治县地方志编纂委员会办公室");
        assert_eq!(added["aliases"], json!(["县志办"]), "an alias another organ holds is left out");
    }

    async fn an_alerts_unknown_sender_is_named_and_taken_once_listed(app: TestApp) {
        let expires = app.hub.clock.now() + chrono::Duration::hours(6);
        let xml = cap_message("organ-1", "Alert", None, "530426101", expires)
            .replace("<senderName>峨山县气象台</senderName>", "<senderName>峨山县气象站</senderName>");
        let refused = app.post_cap("admin", "application/cap+xml", xml.clone()).await;
        assert_eq!(refusal(&refused), (422, json!("unknown_organ"), Some("alert.info.senderName")), "{}", refused.json);
        let observatory = organ_id(&app, "峨山彝族自治县气象台").await;
        let added = patch(&app, "admin", &observatory, json!({"aliases": ["峨山县气象台", "县气象台", "峨山县气象站"]})).await;
        assert_eq!(added.status, 200, "{}", added.json);
        let taken = app.post_cap("admin", "application/cap+xml", xml).await;
        assert_eq!(taken.status, 201, "{}", taken.json);
        let item = taken.json["item_id"].as_str().expect("item");
        let shown = app.get("admin", &format!("/api/v1/items/{item}")).await;
        assert_eq!(shown.json["content"]["issuers"], json!(["峨山彝族自治县气象台"]));
        assert_eq!(shown.json["content"]["topic"], json!(["综合政务", "应急管理"]));
    }

    async fn the_topic_comes_from_the_national_vocabulary(app: TestApp) {
        let vocabulary = app.get("village_b", "/api/v1/topics").await;
        assert_eq!(vocabulary.status, 200);
        let classes = vocabulary.json.as_array().expect("classes");
        assert_eq!(classes.len(), 21);
        assert_eq!(classes[0]["name"], "综合政务");
        assert!(classes[0]["entries"].as_array().expect("entries").contains(&json!("应急管理")));
        assert_eq!(app.public_get("/api/v1/topics").await.status, 401);

        let path = json!(["综合政务", "应急管理"]);
        for (sent, stored) in [
            (json!(["综合政务", "应急管理"]), path.clone()),
            (json!(["综合政务\\应急管理"]), path.clone()),
            (json!(["应急管理"]), path.clone()),
            (json!(["农业、林业、水利"]), json!(["农业、林业、水利"])),
            (json!([]), json!([])),
        ] {
            let mut body = item_body("530426");
            body["topic"] = sent.clone();
            let id = app.create_item("publisher", &body).await;
            let shown = app.get("publisher", &format!("/api/v1/items/{id}")).await;
            assert_eq!(shown.json["content"]["topic"], stored, "{sent}");
        }
        for (sent, field) in [
            (json!(["森林防火"]), "topic[0]"),
            (json!(["综合政务", "水利"]), "topic[1]"),
            (json!(["综合政务", "应急管理", "其他"]), "topic[2]"),
        ] {
            let mut body = item_body("530426");
            body["topic"] = sent.clone();
            let refused = app.post("publisher", "/api/v1/items", &body).await;
            assert_eq!(refusal(&refused), (422, json!("unknown_topic"), Some(field)), "{sent}: {}", refused.json);
            assert!(refused.json["error"]["field_label"].as_str().expect("label").starts_with("主题分类"));
        }
        let mut body = item_body("530426");
        body["topic"] = json!(["综合政务", "水利"]);
        let refused = app.post("publisher", "/api/v1/items", &body).await;
        let message = refused.json["error"]["message"].as_str().expect("message");
        assert!(message.contains("政务公开、政务督查、应急管理"), "the class's entries are named: {message}");
    }
}

#[test]
fn check_config_refuses_a_malformed_organs_or_topics_file_naming_the_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |setting: &str, text: &str| {
        let file = dir.path().join(format!("{setting}.toml"));
        std::fs::write(&file, text).expect("write");
        let output = crate::cli::herald()
            .env(format!("HERALD_CONTENT__{}", setting.to_uppercase()), &file)
            .arg("check-config")
            .output()
            .expect("runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stderr) = check(
        "organs_file",
        "[[organs]]\nname = \"峨山彝族自治县水务局\"\naliases = [\"县水务局\"]\n",
    );
    assert!(ok, "{stderr}");
    let (ok, stderr) = check(
        "organs_file",
        "[[organs]]\nname = \"峨山彝族自治县水务局\"\naliases = [\"县水务局\"]\n[[organs]]\nname = \"峨山彝族自治县水利局\"\naliases = [\"县水务局\"]\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("content.organs_file")
            && stderr.contains("峨山彝族自治县水利局")
            && stderr.contains("县水务局"),
        "{stderr}"
    );
    let (ok, stderr) = check(
        "organs_file",
        "[[organs]]\nname = \"峨山彝族自治县水务局\"\narea_code = \"530499\"\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("峨山彝族自治县水务局") && stderr.contains("530499"),
        "{stderr}"
    );

    let (ok, stderr) = check(
        "topics_file",
        "[[classes]]\nname = \"综合政务\"\nentries = [\"政务公开\"]\n",
    );
    assert!(ok, "{stderr}");
    let (ok, stderr) = check(
        "topics_file",
        "[[classes]]\nname = \"综合政务\"\nentries = [\"政务公开\", \"应急管理\", \"政务公开\"]\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("content.topics_file") && stderr.contains("政务公开"),
        "{stderr}"
    );
}
