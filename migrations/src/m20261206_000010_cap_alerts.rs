//! CAP alerts taken in: one row per message (sender, identifier), with the item it published.
//! An Update or Cancel finds the items to take down by the alerts it references, and a message
//! posted twice (warning systems resend) is answered from here instead of broadcast again.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("cap_alerts")
                    .col(string("id").primary_key())
                    .col(string("sender"))
                    .col(string("identifier"))
                    .col(timestamp_with_time_zone("sent"))
                    .col(string("msg_type"))
                    .col(string_null("item_id"))
                    .col(string("posted_by"))
                    .col(timestamp_with_time_zone("received_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("cap_alerts_by_message")
                    .table("cap_alerts")
                    .col("sender")
                    .col("identifier")
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("cap_alerts").to_owned())
            .await
    }
}
