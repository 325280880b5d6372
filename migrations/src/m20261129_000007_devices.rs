//! The device registry: a village loudspeaker controller or notice-board display is a target of
//! its channel, plus what only devices have: the name it logs in to the broker with, the hash of
//! the credential issued to it (shown once), revocation, its group within the village, and what
//! it last said of itself (capabilities and firmware from its birth, health, when it was seen).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("devices")
                    .col(string("target_id").primary_key())
                    .col(string("device_id").unique_key())
                    .col(string("group_name"))
                    .col(string("credential_hash"))
                    // The same credential as Mosquitto's password file hashes it.
                    .col(string("broker_hash"))
                    .col(timestamp_with_time_zone("credential_issued_at"))
                    // The device's Ed25519 public key (hex) and the key id its report frames
                    // carry (PROTOCOL.md §3, §7): given at installation, new on every change.
                    .col(big_integer_null("key_id").unique_key())
                    .col(string_null("public_key"))
                    .col(timestamp_with_time_zone_null("revoked_at"))
                    .col(text_null("capabilities"))
                    .col(string_null("firmware_version"))
                    .col(text_null("health"))
                    .col(timestamp_with_time_zone_null("last_seen_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("devices", "target_id")
                            .to("targets", "id")
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("devices").to_owned())
            .await
    }
}
