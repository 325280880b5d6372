//! Deliveries still to act on live in a narrow queue of their own, and nothing that moves a
//! delivery's state is indexed on `deliveries`.
//!
//! Before, the claim found due deliveries through an index on `(state, next_attempt_at)`,
//! and `state` was in the by-item index too. So every claim and every record changed an
//! indexed column: on PostgreSQL each such update wrote a new entry into every one of the
//! table's seven indexes (measured: 150–200 ms per 10,000 rows, against 25 ms for the same
//! update with nothing indexed changed and room on the page). Now a delivery waiting to be
//! sent, or under way, has a `delivery_queue` row (four columns, two indexes) that is
//! inserted when it is written and deleted when it is done, and `deliveries` keeps half of each
//! page free on PostgreSQL so its updates stay on the page (HOT) and touch no index.
//!
//! The same goes for `accepted` deliveries waiting for a report: their confirm-by time and
//! the count of asks move to `delivery_confirmations` (a row while a delivery is `accepted`),
//! so a report that settles one deletes a narrow row instead of moving it out of a partial
//! index on `deliveries`.
//!
//! The worker's receipts are appended, never deduplicated (each record is its own), so the
//! unique index on `(delivery_id, digest)` gives way to a plain one on `delivery_id`, which
//! the CSV record reads by.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DatabaseBackend};

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("delivery_queue")
                    .col(string("delivery_id").primary_key())
                    .col(string("channel"))
                    .col(integer("priority"))
                    // Its first or next attempt, never before its not_before. (A delivery under
                    // way keeps its row; its lease is on the delivery.)
                    .col(timestamp_with_time_zone("due_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("delivery_queue_due")
                    .table("delivery_queue")
                    .col("channel")
                    .col(("priority", IndexOrder::Desc))
                    .col("due_at")
                    .col("delivery_id")
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // What was waiting or under way when this ran is queued as it stood.
        db.execute_unprepared(
            "INSERT INTO delivery_queue (delivery_id, channel, priority, due_at) \
             SELECT id, channel, priority, CASE \
               WHEN not_before IS NOT NULL AND not_before > next_attempt_at THEN not_before \
               ELSE next_attempt_at END \
             FROM deliveries WHERE state IN ('pending', 'retrying', 'sending')",
        )
        .await?;
        for name in ["deliveries_due", "deliveries_by_item"] {
            manager
                .drop_index(Index::drop().name(name).table("deliveries").to_owned())
                .await?;
        }
        manager
            .create_index(index(
                "deliveries_by_item_channel",
                "deliveries",
                &["item_id", "channel"],
            ))
            .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            // Room on each page for a new version of every row on it: a claim and its record
            // each rewrite the whole batch. Pages written before this keep their old layout.
            db.execute_unprepared("ALTER TABLE deliveries SET (fillfactor = 50)")
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("delivery_confirmations")
                    .col(string("delivery_id").primary_key())
                    .col(timestamp_with_time_zone("confirm_by"))
                    // How often the channel was asked about it.
                    .col(integer("asks"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "delivery_confirmations_due",
                "delivery_confirmations",
                &["confirm_by", "delivery_id"],
            ))
            .await?;
        db.execute_unprepared(
            "INSERT INTO delivery_confirmations (delivery_id, confirm_by, asks) \
             SELECT id, confirm_by, confirm_asks FROM deliveries \
             WHERE state = 'accepted' AND confirm_by IS NOT NULL",
        )
        .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("deliveries_to_confirm")
                    .table("deliveries")
                    .to_owned(),
            )
            .await?;
        for column in ["confirm_by", "confirm_asks"] {
            manager
                .alter_table(Table::alter().table("deliveries").drop_column(column).to_owned())
                .await?;
        }
        manager
            .drop_index(Index::drop().name("receipts_dedup").table("receipts").to_owned())
            .await?;
        manager
            .create_index(index("receipts_by_delivery", "receipts", &["delivery_id"]))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("receipts_by_delivery")
                    .table("receipts")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("receipts_dedup", "receipts", &["delivery_id", "digest"])
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("deliveries")
                    .add_column(timestamp_with_time_zone_null("confirm_by"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("deliveries")
                    .add_column(integer("confirm_asks").default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE deliveries SET \
                   confirm_by = (SELECT confirm_by FROM delivery_confirmations c WHERE c.delivery_id = deliveries.id), \
                   confirm_asks = COALESCE((SELECT asks FROM delivery_confirmations c WHERE c.delivery_id = deliveries.id), 0)",
            )
            .await?;
        manager
            .create_index(
                index("deliveries_to_confirm", "deliveries", &["confirm_by"])
                    .and_where(Expr::col("confirm_by").is_not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table("delivery_confirmations").to_owned())
            .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE deliveries RESET (fillfactor)")
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("deliveries_by_item_channel")
                    .table("deliveries")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "deliveries_by_item",
                "deliveries",
                &["item_id", "channel", "state"],
            ))
            .await?;
        manager
            .create_index(index(
                "deliveries_due",
                "deliveries",
                &["state", "next_attempt_at"],
            ))
            .await?;
        manager
            .drop_table(Table::drop().table("delivery_queue").to_owned())
            .await
    }
}
