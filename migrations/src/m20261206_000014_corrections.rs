//! Corrections (更正) of published items. An edit of a published item is a new version that
//! goes through review again while the published one stays live (`items.correcting`); its note
//! says what was corrected. On approval it is published as a correction of the version it
//! replaces (`publications.corrects_version`), and each of its deliveries names the delivery
//! of the earlier version it supersedes on that target.

use sea_orm_migration::{prelude::*, schema::*};

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// SQLite alters one column per statement.
const ADDED: [(&str, &str); 5] = [
    ("items", "correcting"),
    ("item_versions", "correction_note"),
    ("publications", "correction_note"),
    ("publications", "corrects_version"),
    ("deliveries", "supersedes_id"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column) in ADDED {
            let column = if column == "corrects_version" {
                integer_null(column)
            } else {
                text_null(column)
            };
            manager
                .alter_table(Table::alter().table(table).add_column(column).to_owned())
                .await?;
        }
        manager
            .create_index(index("deliveries_supersedes", "deliveries", &["supersedes_id"]))
            .await?;
        manager
            .create_index(index("deliveries_withdraws", "deliveries", &["withdraws_id"]))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["deliveries_supersedes", "deliveries_withdraws"] {
            manager
                .drop_index(Index::drop().name(name).table("deliveries").to_owned())
                .await?;
        }
        for (table, column) in ADDED.iter().rev() {
            manager
                .alter_table(Table::alter().table(*table).drop_column(*column).to_owned())
                .await?;
        }
        Ok(())
    }
}
