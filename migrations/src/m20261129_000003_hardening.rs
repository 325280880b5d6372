//! Hardening: login throttling per account and client address (replacing the per-name failure
//! rows), the clients an account signed in from, which items reference which attachments,
//! and the area each audit entry is about, so reading them can be scoped like items.

use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{ConnectionTrait, Statement},
};

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Where an audit entry's target lies, by target type, as SQL both databases run.
const AUDIT_AREA_BACKFILL: &[(&str, &str)] = &[
    (
        "item",
        "SELECT area_code FROM items WHERE items.id = audit_log.target_id",
    ),
    (
        "user",
        "SELECT area_code FROM users WHERE users.id = audit_log.target_id",
    ),
    (
        "token",
        "SELECT users.area_code FROM api_tokens JOIN users ON users.id = api_tokens.user_id WHERE api_tokens.id = audit_log.target_id",
    ),
    (
        "delivery",
        "SELECT items.area_code FROM deliveries JOIN items ON items.id = deliveries.item_id WHERE deliveries.id = audit_log.target_id",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("login_failures").to_owned())
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("login_throttles")
                    .col(string("key").primary_key())
                    .col(string("username"))
                    .col(integer("failures"))
                    .col(timestamp_with_time_zone("last_failure_at"))
                    .col(timestamp_with_time_zone("next_attempt_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "login_throttles_by_username",
                "login_throttles",
                &["username"],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("known_clients")
                    .col(string("user_id"))
                    .col(string("client"))
                    .col(timestamp_with_time_zone("last_seen_at"))
                    .primary_key(Index::create().col("user_id").col("client"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("item_attachments")
                    .col(string("item_id"))
                    .col(string("sha256"))
                    .primary_key(Index::create().col("item_id").col("sha256"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "item_attachments_by_sha256",
                "item_attachments",
                &["sha256"],
            ))
            .await?;
        backfill_item_attachments(manager).await?;

        manager
            .alter_table(
                Table::alter()
                    .table("audit_log")
                    .add_column(string_null("area_code"))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for (target_type, area_of) in AUDIT_AREA_BACKFILL {
            db.execute_raw(Statement::from_string(
                manager.get_database_backend(),
                format!("UPDATE audit_log SET area_code = ({area_of}) WHERE target_type = '{target_type}'"),
            ))
            .await?;
        }
        manager
            .create_index(index("audit_log_by_area", "audit_log", &["area_code", "seq"]))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("audit_log_by_area")
                    .table("audit_log")
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("audit_log")
                    .drop_column("area_code")
                    .to_owned(),
            )
            .await?;
        for table in ["item_attachments", "known_clients", "login_throttles"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("login_failures")
                    .col(big_pk_auto("id"))
                    .col(string("username"))
                    .col(timestamp_with_time_zone("at"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

/// Every attachment each stored version names, read from the versions' JSON content.
async fn backfill_item_attachments(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let rows = db
        .query_all_raw(Statement::from_string(
            manager.get_database_backend(),
            "SELECT item_id, content FROM item_versions",
        ))
        .await?;
    let mut pairs = std::collections::BTreeSet::new();
    for row in rows {
        let item_id: String = row.try_get("", "item_id")?;
        let content: String = row.try_get("", "content")?;
        let content: serde_json::Value = serde_json::from_str(&content)
            .map_err(|e| DbErr::Custom(format!("item {item_id}: unreadable version content: {e}")))?;
        for attachment in content["attachments"].as_array().into_iter().flatten() {
            if let Some(sha256) = attachment["sha256"].as_str() {
                pairs.insert((item_id.clone(), sha256.to_owned()));
            }
        }
    }
    for (item_id, sha256) in pairs {
        let insert = Query::insert()
            .into_table("item_attachments")
            .columns(["item_id", "sha256"])
            .values([item_id.into(), sha256.into()])
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .to_owned();
        manager.exec_stmt(insert).await?;
    }
    Ok(())
}
