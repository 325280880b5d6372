use crate::helpers::{Backend, TestApp, VILLAGE_A, VILLAGE_B, item_body, spawn_app};
use crate::on_both_databases;

on_both_databases! {
    async fn a_village_operator_sees_only_their_own_village(app: TestApp) {
        let a = app.create_item("village_a", &item_body(VILLAGE_A)).await;
        let b = app.create_item("village_b", &item_body(VILLAGE_B)).await;
        let county = app.create_item("publisher", &item_body("530426")).await;

        let forbidden = app.get("village_a", &format!("/api/v1/items/{b}")).await;
        assert_eq!(forbidden.status, 403, "{}", forbidden.json);
        let versions = app.get("village_a", &format!("/api/v1/items/{b}/versions")).await;
        assert_eq!(versions.status, 403);
        let submit = app.post("village_a", &format!("/api/v1/items/{b}/submit"), &serde_json::json!({})).await;
        assert_eq!(submit.status, 403);

        let listed = app.get("village_a", "/api/v1/items").await;
        let ids: Vec<_> = listed.json["items"].as_array().expect("items").iter().map(|i| i["id"].as_str().expect("id")).collect();
        assert_eq!(ids, [a.as_str()], "village A's list holds only its own item");
        assert_eq!(listed.json["total"], 1);
        let other_area = app.get("village_a", &format!("/api/v1/items?area={VILLAGE_B}")).await;
        assert_eq!(other_area.status, 403);

        let township = app.get("township_publisher", "/api/v1/items").await;
        assert_eq!(township.json["total"], 2, "the township sees both its villages but not the county item");
        let county_list = app.get("publisher", "/api/v1/items").await;
        assert_eq!(county_list.json["total"], 3);
        assert!(county_list.json["items"].as_array().expect("items").iter().any(|i| i["id"] == county));

        let outside = app.post("village_a", "/api/v1/items", &item_body(VILLAGE_B)).await;
        assert_eq!(outside.status, 422, "{}", outside.json);
        assert_eq!(outside.field(), Some("area_code"));
    }
}
