//! Which later CAP message (an Update or a Cancel) took an alert's place. An alert that an
//! attempt left unpublished (approved, say, when the process stopped) must never go out once
//! it has been cancelled or updated, however often its sender resends it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("cap_alerts")
                    .add_column(string_null("superseded_by"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("cap_alerts")
                    .drop_column("superseded_by")
                    .to_owned(),
            )
            .await
    }
}
