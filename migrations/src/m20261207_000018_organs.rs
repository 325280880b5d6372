//! The organ list (发文机关名录): one row per organ, and one row per spelling (its name and each
//! alias) whose primary key makes every name and alias belong to one organ only, whichever
//! instance writes it.

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
                    .table("organs")
                    .col(string("id").primary_key())
                    .col(string_uniq("name"))
                    .col(string_null("area_code"))
                    .col(timestamp_with_time_zone_null("retired_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("organ_spellings")
                    .col(string("spelling").primary_key())
                    .col(string("organ_id"))
                    .col(boolean("is_alias"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("organ_spellings", "organ_id")
                            .to("organs", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("organ_spellings_organ", "organ_spellings", &["organ_id"]))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("organ_spellings").to_owned())
            .await?;
        manager.drop_table(Table::drop().table("organs").to_owned()).await
    }
}
