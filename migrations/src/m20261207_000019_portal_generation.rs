//! A counter of changes to what the portal shows, so that every hub instance can tell when
//! the pages it rendered and kept (`http::portal_cache`) are out of date.
//!
//! Triggers move it with each change in the same transaction: a portal page written or taken
//! down, an item's state, expiry or policy link changed (which `portal::live` and the item
//! page read), a portal delivery's state changed (the 版本记录 lists the versions that got
//! there). An instance that reads the counter after a commit therefore never keeps a page
//! rendered before it.
//!
//! On PostgreSQL the triggers are deferred constraint triggers: the counter's row is locked
//! only at commit, after everything else the transaction locks, so two transactions can wait
//! for each other on it but never deadlock over it.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (trigger name, table, event, condition on the new row or "").
const CHANGES: &[(&str, &str, &str, &str)] = &[
    ("portal_page_written", "portal_pages", "INSERT", ""),
    ("portal_page_changed", "portal_pages", "UPDATE", ""),
    ("portal_page_deleted", "portal_pages", "DELETE", ""),
    (
        "item_shown_changed",
        "items",
        "UPDATE OF state, expires_at, interprets_id",
        "",
    ),
    (
        "portal_delivery_changed",
        "deliveries",
        "UPDATE OF state",
        "NEW.channel = 'portal'",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE portal_generation (id INTEGER PRIMARY KEY, generation BIGINT NOT NULL)",
        )
        .await?;
        db.execute_unprepared("INSERT INTO portal_generation (id, generation) VALUES (1, 0)")
            .await?;
        let postgres = manager.get_database_backend() == DatabaseBackend::Postgres;
        if postgres {
            db.execute_unprepared(
                "CREATE FUNCTION herald_portal_changed() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN UPDATE portal_generation SET generation = generation + 1 WHERE id = 1; RETURN NULL; END $$",
            )
            .await?;
        }
        for (name, table, event, condition) in CHANGES {
            let when = if condition.is_empty() {
                String::new()
            } else {
                format!("WHEN ({condition})")
            };
            let statement = if postgres {
                format!(
                    "CREATE CONSTRAINT TRIGGER {name} AFTER {event} ON {table} DEFERRABLE INITIALLY DEFERRED \
                     FOR EACH ROW {when} EXECUTE FUNCTION herald_portal_changed()"
                )
            } else {
                format!(
                    "CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW {when} \
                     BEGIN UPDATE portal_generation SET generation = generation + 1 WHERE id = 1; END"
                )
            };
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = manager.get_database_backend() == DatabaseBackend::Postgres;
        for (name, table, _, _) in CHANGES {
            let statement = if postgres {
                format!("DROP TRIGGER {name} ON {table}")
            } else {
                format!("DROP TRIGGER {name}")
            };
            db.execute_unprepared(&statement).await?;
        }
        if postgres {
            db.execute_unprepared("DROP FUNCTION herald_portal_changed()")
                .await?;
        }
        db.execute_unprepared("DROP TABLE portal_generation").await?;
        Ok(())
    }
}
