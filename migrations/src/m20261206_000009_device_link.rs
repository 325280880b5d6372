//! What the hub keeps for the device link: each issuer key's last command sequence (devices
//! refuse a sequence they have seen, so it must only grow, across every hub instance and
//! restart); every signed command while it is valid (a device that was offline gets the same
//! frame again when it comes back, never a second command); and whether each device is
//! online, from its retained status and its will.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("issuer_sequences")
                    .col(big_integer("key_id").primary_key())
                    .col(big_integer("last_seq"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("device_commands")
                    .col(string("id").primary_key())
                    .col(binary("frame"))
                    .col(timestamp_with_time_zone("not_after"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("devices")
                    .add_column(boolean_null("online"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table("devices").drop_column("online").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("device_commands").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("issuer_sequences").to_owned())
            .await
    }
}
