//! Target secrets apart from target settings: one row per (target, name), holding only the
//! nonce and the AEAD ciphertext. The key is configuration, never in the database.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("target_secrets")
                    .col(string("target_id"))
                    .col(string("name"))
                    .col(blob("nonce"))
                    .col(blob("ciphertext"))
                    .primary_key(Index::create().col("target_id").col("name"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_target_secrets_target_id")
                            .from("target_secrets", "target_id")
                            .to("targets", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("target_secrets").to_owned())
            .await
    }
}
