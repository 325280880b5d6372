//! Search by 发文字号, 索引号 and several words, on an index where the database has one.
//!
//! `search_key` is the text an item or a portal page is found by, folded as
//! `domain::search::fold` folds what a searcher types (bracket variants as 〔〕, full-width
//! ASCII as ASCII, lower case). Rows written before this have none until the hub fills it in
//! on start (`startup::open_hub`).
//!
//! On PostgreSQL a portal page also keeps `search_grams`: every one- and two-character piece
//! of its key, generated from the key and indexed with GIN, so a search first narrows to pages
//! holding every piece of every word (a two-character Chinese word is one lookup; pg_trgm
//! cannot look up words shorter than three characters) and then checks the words whole.
//!
//! Listings and searches read pages emergencies first, then newest first (then by id, so a
//! window never overlaps the next): an index in exactly that order, read backwards, lets them
//! stop after the first window instead of sorting every live page.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Each character and each pair of neighbours, without spaces. The pairs come from `lead()`
/// over the characters once: a `substr` per position re-reads the string from its start (UTF-8),
/// which made a 2,000-character page cost 23 ms instead of 2.5 ms.
const GRAMS_FUNCTION: &str = r"
CREATE OR REPLACE FUNCTION herald_search_grams(search_key text) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT array_to_tsvector(coalesce(array_agg(DISTINCT piece), '{}'::text[]))
  FROM (
    SELECT ch, lead(ch) OVER (ORDER BY n) AS next
    FROM unnest(string_to_array(search_key, NULL)) WITH ORDINALITY AS chars(ch, n)
  ) AS pairs,
  LATERAL (VALUES (ch), (ch || next)) AS pieces(piece)
  WHERE piece IS NOT NULL AND position(' ' in piece) = 0
$$";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["portal_pages", "items"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(ColumnDef::new("search_key").text().null())
                        .to_owned(),
                )
                .await?;
        }
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared(GRAMS_FUNCTION).await?;
            db.execute_unprepared(
                "ALTER TABLE portal_pages ADD COLUMN search_grams tsvector \
                 GENERATED ALWAYS AS (herald_search_grams(search_key)) STORED",
            )
            .await?;
            db.execute_unprepared(
                "CREATE INDEX portal_pages_by_search_grams ON portal_pages USING gin (search_grams)",
            )
            .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("portal_pages_newest_first")
                    .table("portal_pages")
                    .col("emergency")
                    .col("published_at")
                    .col("item_id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("portal_pages_newest_first")
                    .table("portal_pages")
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared("ALTER TABLE portal_pages DROP COLUMN search_grams")
                .await?;
            db.execute_unprepared("DROP FUNCTION herald_search_grams(text)")
                .await?;
        }
        for table in ["portal_pages", "items"] {
            manager
                .alter_table(Table::alter().table(table).drop_column("search_key").to_owned())
                .await?;
        }
        Ok(())
    }
}
