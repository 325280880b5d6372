//! Outcomes that arrive later: the receipt inbox (every verified inbound receipt, stored before
//! it is answered, applied later), and what deliveries keep for them: a multi-step send's
//! checkpoint, the time by which an `accepted` delivery must be confirmed and how often the
//! channel was asked. Callbacks correlate by external id or idempotency key, so both are indexed.

use sea_orm_migration::{prelude::*, schema::*};

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("receipt_inbox")
                    .col(big_pk_auto("id"))
                    .col(string("channel"))
                    .col(string("target_id"))
                    // The channel's own identity of the receipt: the same again is a resend.
                    .col(string("dedup"))
                    .col(string("correlation_by"))
                    .col(string("correlation"))
                    .col(string("status"))
                    // The status as the channel reported it (with a failure's code and message).
                    .col(text("detail"))
                    .col(timestamp_with_time_zone_null("source_time"))
                    .col(text("raw"))
                    .col(timestamp_with_time_zone("received_at"))
                    // When the apply step next looks at it: at once, or again while a receipt
                    // that overtook its delivery's record waits for it.
                    .col(timestamp_with_time_zone("due_at"))
                    .col(timestamp_with_time_zone_null("applied_at"))
                    // applied | unchanged | unmatched, once applied.
                    .col(string_null("outcome"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "receipt_inbox_dedup",
                    "receipt_inbox",
                    &["channel", "target_id", "dedup"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        // Partial: only receipts still to apply are in it, so marking one applied takes it out
        // of the index instead of moving it inside, and the index stays as small as the backlog.
        manager
            .create_index(
                index("receipt_inbox_due", "receipt_inbox", &["due_at", "id"])
                    .and_where(Expr::col("applied_at").is_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("receipt_inbox_by_outcome", "receipt_inbox", &["outcome"]))
            .await?;

        // One column per ALTER: SQLite adds a single column per statement.
        let mut asks = integer("confirm_asks");
        asks.default(0);
        for column in [
            text_null("checkpoint"),
            timestamp_with_time_zone_null("confirm_by"),
            asks,
        ] {
            manager
                .alter_table(Table::alter().table("deliveries").add_column(column).to_owned())
                .await?;
        }
        manager
            .create_index(index(
                "deliveries_by_external_id",
                "deliveries",
                &["channel", "external_id"],
            ))
            .await?;
        manager
            .create_index(
                index(
                    "deliveries_by_idempotency_key",
                    "deliveries",
                    &["idempotency_key"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        // Partial, and without the state: only `accepted` deliveries carry a confirm-by time, so
        // the claims and records that move every other delivery never touch this index.
        manager
            .create_index(
                index("deliveries_to_confirm", "deliveries", &["confirm_by"])
                    .and_where(Expr::col("confirm_by").is_not_null())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [
            "deliveries_to_confirm",
            "deliveries_by_idempotency_key",
            "deliveries_by_external_id",
        ] {
            manager
                .drop_index(Index::drop().name(name).table("deliveries").to_owned())
                .await?;
        }
        for column in ["confirm_asks", "confirm_by", "checkpoint"] {
            manager
                .alter_table(Table::alter().table("deliveries").drop_column(column).to_owned())
                .await?;
        }
        manager
            .drop_table(Table::drop().table("receipt_inbox").to_owned())
            .await
    }
}
