//! One access token per WeChat official account, shared by every hub instance, sealed with the
//! storage secrets key like target secrets (it is one, for two hours).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("wechat_tokens")
                    .col(string("app_id").primary_key())
                    .col(binary("nonce"))
                    .col(binary("ciphertext"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone("renewed_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("wechat_tokens").to_owned())
            .await
    }
}
