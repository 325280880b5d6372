//! Channel targets, renditions, deliveries (the transactional outbox), their counts, receipts
//! and portal pages.

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
                    .table("targets")
                    .col(string("id").primary_key())
                    .col(string("channel"))
                    .col(string("name"))
                    .col(string("area_code"))
                    .col(text("catalogs"))
                    .col(text("tags"))
                    .col(text("config"))
                    .col(boolean("enabled"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "targets_by_channel_area",
                "targets",
                &["channel", "area_code"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("renditions")
                    .col(string("id").primary_key())
                    .col(string("publication_id"))
                    .col(string("channel"))
                    .col(text("payload"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "renditions_by_publication",
                    "renditions",
                    &["publication_id", "channel"],
                )
                .unique()
                .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("deliveries")
                    .col(string("id").primary_key())
                    .col(string("publication_id"))
                    .col(string("item_id"))
                    .col(integer("version"))
                    .col(string("target_id"))
                    .col(string("channel"))
                    .col(string("area_code"))
                    .col(string("kind"))
                    .col(string("state"))
                    .col(integer("priority"))
                    .col(timestamp_with_time_zone_null("not_before"))
                    .col(timestamp_with_time_zone_null("not_after"))
                    .col(integer("attempts"))
                    .col(timestamp_with_time_zone("next_attempt_at"))
                    .col(string_null("lease_owner"))
                    .col(timestamp_with_time_zone_null("lease_expires_at"))
                    .col(string_null("external_id"))
                    .col(text_null("last_error"))
                    .col(string("rendition_id"))
                    .col(string("idempotency_key"))
                    .col(string_null("withdraws_id"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
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
            .create_index(index("deliveries_by_target", "deliveries", &["target_id"]))
            .await?;

        // Deliveries per item × channel × kind × state, kept in step with every state change
        // so an item's summary never counts its (possibly 100,000) deliveries.
        manager
            .create_table(
                Table::create()
                    .table("delivery_counts")
                    .col(string("item_id"))
                    .col(string("channel"))
                    .col(string("kind"))
                    .col(string("state"))
                    .col(big_integer("n"))
                    .primary_key(
                        Index::create()
                            .col("item_id")
                            .col("channel")
                            .col("kind")
                            .col("state"),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("receipts")
                    .col(big_pk_auto("id"))
                    .col(string("delivery_id"))
                    .col(string("source"))
                    .col(string("kind"))
                    .col(timestamp_with_time_zone_null("source_time"))
                    .col(timestamp_with_time_zone("received_at"))
                    .col(string("digest"))
                    .col(text("detail"))
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
            .create_table(
                Table::create()
                    .table("portal_pages")
                    .col(string("item_id").primary_key())
                    .col(string("target_id"))
                    .col(integer("version"))
                    .col(string("title"))
                    .col(text("payload"))
                    .col(text("search_text"))
                    .col(string("catalog"))
                    .col(string("area_code"))
                    .col(text("issuers"))
                    .col(boolean("emergency"))
                    .col(timestamp_with_time_zone("published_at"))
                    .col(timestamp_with_time_zone_null("withdrawn_at"))
                    .col(text_null("withdraw_reason"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("portal_pages_by_catalog", "portal_pages", &["catalog"]))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "portal_pages",
            "receipts",
            "delivery_counts",
            "deliveries",
            "renditions",
            "targets",
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
