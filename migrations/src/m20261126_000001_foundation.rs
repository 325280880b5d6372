//! Accounts, items with immutable versions, reviews, publication intents, idempotency records
//! and the hash-chained audit log.

use sea_orm_migration::{prelude::*, schema::*};

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The audit chain starts from this hash, so the first row has a predecessor like every other.
const AUDIT_GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn fk(
    from_table: &'static str,
    from_col: &'static str,
    to_table: &'static str,
    to_col: &'static str,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from_table, from_col)
        .to(to_table, to_col)
        .on_delete(ForeignKeyAction::Restrict)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("users")
                    .col(string("id").primary_key())
                    .col(string_uniq("username"))
                    .col(string("display_name"))
                    .col(string("password_hash"))
                    .col(string("role"))
                    .col(string("area_code"))
                    .col(boolean("disabled"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("sessions")
                    .col(string("token_hash").primary_key())
                    .col(string("user_id"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .foreign_key(&mut fk("sessions", "user_id", "users", "id"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("api_tokens")
                    .col(string("id").primary_key())
                    .col(string("user_id"))
                    .col(string("name"))
                    .col(string_uniq("token_hash"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("revoked_at"))
                    .foreign_key(&mut fk("api_tokens", "user_id", "users", "id"))
                    .to_owned(),
            )
            .await?;

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
        manager
            .create_index(index(
                "login_failures_by_user",
                "login_failures",
                &["username", "at"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("attachments")
                    .col(string("sha256").primary_key())
                    .col(string("content_type"))
                    .col(big_integer("size"))
                    .col(blob("data"))
                    .col(string("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(&mut fk("attachments", "created_by", "users", "id"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("items")
                    .col(string("id").primary_key())
                    .col(string("state"))
                    .col(string("title"))
                    .col(string("area_code"))
                    .col(string_uniq("index_no"))
                    .col(string("disclosure"))
                    .col(boolean("emergency"))
                    .col(string_null("interprets_id"))
                    .col(string("author_id"))
                    .col(integer("current_version"))
                    .col(integer_null("approved_version"))
                    .col(string_null("approved_hash"))
                    .col(integer_null("published_version"))
                    .col(timestamp_with_time_zone_null("published_at"))
                    .col(timestamp_with_time_zone_null("withdrawn_at"))
                    .col(timestamp_with_time_zone_null("expires_at"))
                    .col(text_null("review_comment"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut fk("items", "author_id", "users", "id"))
                    .foreign_key(&mut fk("items", "interprets_id", "items", "id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("items_by_area", "items", &["area_code"]))
            .await?;
        manager
            .create_index(index("items_by_state", "items", &["state"]))
            .await?;
        manager
            .create_index(index("items_by_policy", "items", &["interprets_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("item_versions")
                    .col(string("item_id"))
                    .col(integer("version"))
                    .col(text("content"))
                    .col(string("content_hash"))
                    .col(string("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("item_id").col("version"))
                    .foreign_key(&mut fk("item_versions", "item_id", "items", "id"))
                    .foreign_key(&mut fk("item_versions", "created_by", "users", "id"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("reviews")
                    .col(big_pk_auto("id"))
                    .col(string("item_id"))
                    .col(integer("version"))
                    .col(string("content_hash"))
                    .col(string("reviewer_id"))
                    .col(string("kind"))
                    .col(text("comment"))
                    .col(timestamp_with_time_zone("at"))
                    .foreign_key(&mut fk("reviews", "item_id", "items", "id"))
                    .foreign_key(&mut fk("reviews", "reviewer_id", "users", "id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("reviews_by_item", "reviews", &["item_id", "version"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("publications")
                    .col(string("id").primary_key())
                    .col(string("item_id"))
                    .col(integer("version"))
                    .col(string("content_hash"))
                    .col(string("published_by"))
                    .col(timestamp_with_time_zone("published_at"))
                    .col(text("channels"))
                    .foreign_key(&mut fk("publications", "item_id", "items", "id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("publications_by_item", "publications", &["item_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("idempotency")
                    .col(string("user_id"))
                    .col(string("key"))
                    .col(string("request_hash"))
                    .col(integer("response_status"))
                    .col(text("response_body"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("user_id").col("key"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("audit_log")
                    .col(big_integer("seq").primary_key())
                    .col(timestamp_with_time_zone("at"))
                    .col(string("actor"))
                    .col(string("action"))
                    .col(string("target_type"))
                    .col(string("target_id"))
                    .col(string_null("before_hash"))
                    .col(string_null("after_hash"))
                    .col(text("detail"))
                    .col(string("prev_hash"))
                    .col(string("row_hash"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("audit_head")
                    .col(integer("id").primary_key())
                    .col(big_integer("seq"))
                    .col(string("row_hash"))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("audit_head")
                    .columns(["id", "seq", "row_hash"])
                    .values_panic([1.into(), 0i64.into(), AUDIT_GENESIS_HASH.into()])
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "audit_head",
            "audit_log",
            "idempotency",
            "publications",
            "reviews",
            "item_versions",
            "items",
            "attachments",
            "login_failures",
            "api_tokens",
            "sessions",
            "users",
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
