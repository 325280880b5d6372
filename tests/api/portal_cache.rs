//! The portal's kept pages: revalidated with ETag and Last-Modified, sent compressed, and
//! never served after what they show changed, whichever instance changed it.

use serde_json::json;

use crate::helpers::{Backend, TestApp, item_body, second_instance, spawn_app};
use crate::on_both_databases;

async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let client = reqwest::Client::builder().no_gzip().build().expect("client");
    let mut request = client.get(format!("{}{path}", app.address));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

on_both_databases! {
    async fn an_item_page_is_revalidated_and_compressed_and_a_withdrawal_shows_at_once(app: TestApp) {
        let id = app.publish_new(&item_body("530426"), &json!({})).await;
        app.deliver_due().await;
        let path = format!("/xxgk/items/{id}");

        let first = get(&app, &path, &[]).await;
        assert_eq!(first.status(), 200);
        let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
        let last_modified = first.headers()["last-modified"].to_str().expect("last-modified").to_owned();
        assert_eq!(first.headers()["cache-control"], "no-cache", "readers ask again each time");
        assert!(first.headers().get("content-encoding").is_none(), "not asked for gzip");
        let plain = first.text().await.expect("body");
        assert!(plain.contains("森林防火"));

        let again = get(&app, &path, &[("If-None-Match", &etag)]).await;
        assert_eq!(again.status(), 304);
        assert_eq!(again.headers()["etag"].to_str().expect("etag"), etag);
        assert_eq!(get(&app, &path, &[("If-Modified-Since", &last_modified)]).await.status(), 304);
        assert_eq!(get(&app, &path, &[("If-None-Match", "\"other\"")]).await.status(), 200);

        let compressed = get(&app, &path, &[("Accept-Encoding", "gzip")]).await;
        assert_eq!(compressed.headers()["content-encoding"], "gzip");
        assert_eq!(compressed.headers()["vary"], "Accept-Encoding");
        assert!(compressed.headers()["content-security-policy"].to_str().expect("csp").contains("default-src 'none'"), "kept pages keep the security headers");
        let bytes = compressed.bytes().await.expect("body");
        let mut unzipped = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut unzipped).expect("gzip");
        assert_eq!(unzipped, plain);
        assert!(bytes.len() < plain.len());

        // Withdrawn through the API of this instance: the next read is the 410 page.
        let withdrawn = app.post("publisher", &format!("/api/v1/items/{id}/withdraw"), &json!({"reason": "政策已废止"})).await;
        assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
        let gone = get(&app, &path, &[("If-None-Match", &etag)]).await;
        assert_eq!(gone.status(), 410);
        assert!(!app.public_get("/").await.text().contains(&id), "nor is it listed");
    }

    async fn a_change_made_through_another_instance_drops_the_kept_pages(app: TestApp) {
        let id = app.publish_new(&item_body("530426"), &json!({})).await;
        app.deliver_due().await;
        let path = format!("/xxgk/items/{id}");
        let etag = get(&app, &path, &[]).await.headers()["etag"].to_str().expect("etag").to_owned();
        assert!(app.public_get("/").await.text().contains(&id));

        // Straight to the store, as another hub instance sharing it would write.
        let count = |db: &sea_orm::DatabaseConnection| {
            let db = db.clone();
            async move {
                use sea_orm::{ConnectionTrait, Statement};
                let row = db
                    .query_one_raw(Statement::from_string(db.get_database_backend(), "SELECT generation FROM portal_generation"))
                    .await
                    .expect("query")
                    .expect("row");
                row.try_get_by_index::<i64>(0).expect("generation")
            }
        };
        let before = count(&app.hub.db).await;
        let later = app.hub.clock.now() + chrono::Duration::days(400);
        {
            use sea_orm::{ConnectionTrait, Statement, Value};
            let backend = app.hub.db.get_database_backend();
            let sql = match backend {
                sea_orm::DbBackend::Postgres => "UPDATE items SET expires_at = $1 WHERE id = $2",
                _ => "UPDATE items SET expires_at = ? WHERE id = ?",
            };
            app.hub.db.execute_raw(Statement::from_sql_and_values(backend, sql, [Value::from(later), Value::from(id.clone())])).await.expect("update");
        }
        assert!(count(&app.hub.db).await > before, "the store counted the change");
        let after = get(&app, &path, &[("If-None-Match", &etag)]).await;
        assert_eq!(after.status(), 304, "same page, rendered again");

        let other = second_instance(&app, Vec::new()).await;
        let publisher = {
            use herald::store::entities::user;
            use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
            let row = user::Entity::find().filter(user::Column::Username.eq("publisher")).one(&other.db).await.expect("query").expect("user");
            herald::accounts::caller_from(row).expect("caller")
        };
        let withdrawn = herald::workflow::withdraw(
            &other,
            &publisher,
            &id,
            herald::workflow::WithdrawInput { reason: "另一实例撤回".into() },
        )
        .await;
        assert!(withdrawn.is_ok(), "{withdrawn:?}");
        assert_eq!(get(&app, &path, &[("If-None-Match", &etag)]).await.status(), 410);
        assert!(!app.public_get("/").await.text().contains(&id));
    }

    async fn a_kept_listing_changes_when_an_items_validity_ends(app: TestApp) {
        let mut body = item_body("530426");
        body["expires_on"] = json!("2026-12-31");
        let id = app.publish_new(&body, &json!({})).await;
        app.deliver_due().await;
        assert!(app.public_get("/").await.text().contains(&id));
        app.hub.clock.set(chrono::DateTime::parse_from_rfc3339("2027-01-01T00:30:00+08:00").expect("time").with_timezone(&chrono::Utc));
        assert!(!app.public_get("/").await.text().contains(&id), "gone from the kept listing when its 有效期 ended, with no write");
    }
}

/// With a long recheck interval, a withdrawal through this instance's API still drops what it
/// keeps at once.
#[tokio::test]
async fn a_withdrawal_through_this_instance_shows_at_once_whatever_the_recheck_interval() {
    let app = crate::helpers::spawn_app_configured(Backend::Sqlite, Vec::new(), |settings| {
        settings.server.portal_recheck_ms = 60_000;
    })
    .await;
    let id = app.publish_new(&item_body("530426"), &json!({})).await;
    app.deliver_due().await;
    let path = format!("/xxgk/items/{id}");
    assert_eq!(get(&app, &path, &[]).await.status(), 200);
    let withdrawn = app
        .post(
            "publisher",
            &format!("/api/v1/items/{id}/withdraw"),
            &json!({"reason": "有误"}),
        )
        .await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.json);
    assert_eq!(get(&app, &path, &[]).await.status(), 410);
}
