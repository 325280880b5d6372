//! Signed callback requests already taken (a WeChat push's timestamp and nonce), kept for a
//! while past the time window within which the channel's signature is accepted, so the same
//! request sent again is refused on every hub instance.

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
                    .table("callback_replays")
                    .col(string("channel"))
                    .col(string("target_id"))
                    .col(string("replay_key"))
                    .col(timestamp_with_time_zone("seen_at"))
                    .primary_key(Index::create().col("channel").col("target_id").col("replay_key"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("callback_replays_seen", "callback_replays", &["seen_at"]))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("callback_replays").to_owned())
            .await
    }
}
