//! An applied inbox receipt is itself the delivery's record of it: it names the delivery it
//! was applied to, instead of being copied into `receipts` (a second row, index entries and
//! digest per receipt, on the path a whole village's reports come through). And the outcome
//! index keeps only what is read through it: the unmatched receipts an administrator lists.

use sea_orm_migration::{prelude::*, schema::*};

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("receipt_inbox")
                    .add_column(string_null("delivery_id"))
                    .to_owned(),
            )
            .await?;
        // What applying it did to the delivery, for the record (`applied` alone would not say).
        manager
            .alter_table(
                Table::alter()
                    .table("receipt_inbox")
                    .add_column(string_null("moved_to"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("receipt_inbox_by_delivery", "receipt_inbox", &["delivery_id"])
                    .and_where(Expr::col("delivery_id").is_not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("receipt_inbox_by_outcome")
                    .table("receipt_inbox")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("receipt_inbox_unmatched", "receipt_inbox", &["id"])
                    .and_where(Expr::col("outcome").eq("unmatched"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["receipt_inbox_unmatched", "receipt_inbox_by_delivery"] {
            manager
                .drop_index(Index::drop().name(name).table("receipt_inbox").to_owned())
                .await?;
        }
        manager
            .create_index(index("receipt_inbox_by_outcome", "receipt_inbox", &["outcome"]))
            .await?;
        for column in ["moved_to", "delivery_id"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("receipt_inbox")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
