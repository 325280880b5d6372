//! Search on the portal and in the staff list: by 发文字号 and 索引号 however their brackets
//! are typed, by several words that must all occur, with `%` and `_` as plain characters.

use serde_json::json;

use crate::helpers::{Backend, TestApp, item_body, spawn_app, urlencode};
use crate::on_both_databases;

/// Publishes an item with `title`, `body` and 发文字号 `doc_no`; returns its id and 索引号.
async fn published(app: &TestApp, title: &str, body: &str, doc_no: &str) -> (String, String) {
    let mut item = item_body("530426");
    item["title"] = json!(title);
    item["body"] = json!(format!("<p>{body}</p>"));
    item["doc_no"] = json!(doc_no);
    let index_no = item["index_no"].as_str().expect("index_no").to_owned();
    (app.publish_new(&item, &json!({})).await, index_no)
}

/// The ids the portal's search lists for `q`, in order.
async fn portal_finds(app: &TestApp, q: &str) -> Vec<String> {
    let page = app.public_get(&format!("/search?q={}", urlencode(q))).await;
    assert_eq!(page.status, 200, "{q}: {}", page.text());
    page.text()
        .split("href=\"/xxgk/items/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_owned))
        .collect()
}

/// The ids the staff list gives `user` for `q`.
async fn staff_finds(app: &TestApp, q: &str) -> Vec<String> {
    let list = app
        .get("publisher", &format!("/api/v1/items?q={}", urlencode(q)))
        .await;
    assert_eq!(list.status, 200, "{q}: {}", list.json);
    list.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect()
}

on_both_databases! {
    async fn search_finds_document_and_index_numbers_however_the_brackets_are_typed(app: TestApp) {
        let (water, water_index_no) = published(&app, "关于做好防汛工作的通知", "县水务局：请做好汛期值守。", "峨政办发〔2026〕41号").await;
        let (forest, _) = published(&app, "关于森林防火的通知", "各乡镇做好防火。", "峨政办发〔2026〕4号").await;
        app.deliver_due().await;

        for typed in ["峨政办发〔2026〕41号", "峨政办发[2026]41号", "峨政办发［2026］41号", "峨政办发(2026)41号", "峨政办发（2026）41号", "峨政办发【2026】41号"] {
            assert_eq!(portal_finds(&app, typed).await, vec![water.clone()], "portal: {typed}");
            assert_eq!(staff_finds(&app, typed).await, vec![water.clone()], "staff list: {typed}");
        }
        assert_eq!(portal_finds(&app, "峨政办发[2026]4号").await, vec![forest.clone()], "41号 is not 4号");
        assert_eq!(portal_finds(&app, &water_index_no).await, vec![water.clone()]);
        assert_eq!(staff_finds(&app, &water_index_no).await, vec![water.clone()]);
        // Full-width digits are the digits.
        assert_eq!(portal_finds(&app, "峨政办发〔２０２６〕４１号").await, vec![water.clone()]);
    }

    async fn every_word_must_occur_and_wildcards_are_plain_characters(app: TestApp) {
        let (both, _) = published(&app, "防汛抗旱应急预案", "县水务局牵头，完成率100%。", "峨政发〔2026〕7号").await;
        let (one, _) = published(&app, "防汛物资储备", "物资到位率_九成。", "峨政发〔2026〕8号").await;
        let (withdrawn, _) = published(&app, "防汛工作已撤回的通知", "县水务局。", "峨政发〔2026〕9号").await;
        app.deliver_due().await;
        let withdraw = app.post("publisher", &format!("/api/v1/items/{withdrawn}/withdraw"), &json!({"reason": "有误"})).await;
        assert_eq!(withdraw.status, 200, "{}", withdraw.json);

        let mut found = portal_finds(&app, "防汛").await;
        found.sort();
        let mut expected = vec![both.clone(), one.clone()];
        expected.sort();
        assert_eq!(found, expected, "a withdrawn page is not found");
        assert_eq!(portal_finds(&app, "  防汛   水务局 ").await, vec![both.clone()], "both words");
        assert_eq!(portal_finds(&app, "防汛 抗旱 不存在").await, Vec::<String>::new());
        assert_eq!(portal_finds(&app, "100%").await, vec![both.clone()]);
        assert_eq!(portal_finds(&app, "%").await, vec![both.clone()], "% is a character, not anything");
        assert_eq!(portal_finds(&app, "率_").await, vec![one.clone()], "_ is a character, not any one");
        assert_eq!(portal_finds(&app, "位_九").await, Vec::<String>::new());
        assert_eq!(staff_finds(&app, "防汛 7号").await, vec![both.clone()]);
        assert_eq!(staff_finds(&app, "%").await, Vec::<String>::new(), "titles and numbers hold no %");

        let long = "一 二 三 四 五 六 七 八 九";
        let refused = app.public_get(&format!("/search?q={}", urlencode(long))).await;
        assert_eq!(refused.status, 400);
        assert!(refused.text().contains("搜索词过长"), "{}", refused.text());
        let refused = app.get("publisher", &format!("/api/v1/items?q={}", urlencode(long))).await;
        assert_eq!((refused.status, refused.json["error"]["field"].clone()), (422, json!("q")), "{}", refused.json);
    }

    async fn pages_and_items_written_before_search_keys_get_them_on_start(app: TestApp) {
        use sea_orm::ConnectionTrait;
        let (id, _) = published(&app, "关于规范村级财务管理的通知", "各村委会。", "峨政发〔2026〕21号").await;
        app.deliver_due().await;
        for table in ["portal_pages", "items"] {
            app.hub.db.execute_unprepared(&format!("UPDATE {table} SET search_key = NULL")).await.expect("clear");
        }
        assert_eq!(portal_finds(&app, "峨政发[2026]21号").await, Vec::<String>::new());
        assert_eq!(herald::items::fill_search_keys(&app.hub.db).await.expect("items"), 1);
        assert_eq!(herald::portal::store::fill_search_keys(&app.hub.db).await.expect("pages"), 1);
        assert_eq!(portal_finds(&app, "峨政发[2026]21号").await, vec![id.clone()]);
        assert_eq!(staff_finds(&app, "峨政发[2026]21号").await, vec![id]);
    }
}
