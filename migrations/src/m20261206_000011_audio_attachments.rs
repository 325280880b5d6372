//! The decoded length of an audio attachment, measured once at upload. A loudspeaker is sent
//! an attachment as audio only when it decoded at upload; files uploaded before this column
//! existed were never decoded, so they stay NULL and their items are spoken by TTS instead.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("attachments")
                    .add_column(big_integer_null("audio_duration_ms"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("attachments")
                    .drop_column("audio_duration_ms")
                    .to_owned(),
            )
            .await
    }
}
