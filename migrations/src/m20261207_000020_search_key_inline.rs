//! A portal page's search key kept in the page's row, compressed with lz4 where the server
//! has it, instead of out of line.
//!
//! A search reads the key of each of the newest pages it checks. Out of line, as PostgreSQL
//! keeps a text of over 2 kB by default, each key was one more index lookup and a pglz
//! decompression: 1,000 keys took about 8 ms more than the same keys kept in the row (measured
//! on 100,000 pages). `MAIN` keeps the key in the row unless the row cannot fit otherwise; the
//! page's other large columns go out of line first. lz4 decompresses several times faster
//! than pglz.
//!
//! Only keys written from now on take the new form; older pages take it when next rewritten.
//! Rewriting them all here would also recompute every page's grams (migration 000017): a
//! few milliseconds a page, minutes for a large site, on an upgrade that needs none of it to
//! answer correctly.
//!
//! SQLite keeps every value in its row already: nothing to do there.

use sea_orm_migration::{
    prelude::*,
    sea_orm::{DatabaseBackend, Statement},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Whether the server was built with lz4 (PostgreSQL 14 and later, when built with it, list it
/// among `default_toast_compression`'s values).
const HAS_LZ4: &str = "SELECT 1 AS lz4 FROM pg_settings \
     WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE portal_pages ALTER COLUMN search_key SET STORAGE MAIN")
            .await?;
        if db
            .query_one_raw(Statement::from_string(DatabaseBackend::Postgres, HAS_LZ4))
            .await?
            .is_some()
        {
            db.execute_unprepared("ALTER TABLE portal_pages ALTER COLUMN search_key SET COMPRESSION lz4")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE portal_pages ALTER COLUMN search_key SET STORAGE EXTENDED, \
                 ALTER COLUMN search_key SET COMPRESSION default",
            )
            .await?;
        Ok(())
    }
}
