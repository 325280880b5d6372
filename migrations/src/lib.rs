//! Herald's database schema.
//!
//! Migrations describe tables by name and never import the application's entities: an old
//! migration must keep producing the same schema however the code that reads it evolves.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_foundation;
mod m20261126_000002_delivery;
mod m20261129_000003_hardening;
mod m20261129_000004_target_secrets;
mod m20261129_000005_receipt_inbox;
mod m20261129_000006_inbox_record;
mod m20261129_000007_devices;
mod m20261206_000008_delivery_queue;
mod m20261206_000009_device_link;
mod m20261206_000010_cap_alerts;
mod m20261206_000011_audio_attachments;
mod m20261206_000012_cap_superseded;
mod m20261206_000013_wechat_tokens;
mod m20261206_000014_corrections;
mod m20261206_000015_callback_replays;
mod m20261206_000016_password_change;
mod m20261207_000017_search;
mod m20261207_000018_organs;
mod m20261207_000019_portal_generation;
mod m20261207_000020_search_key_inline;

/// A named index over `cols` of `table`.
fn index(name: &'static str, table: &'static str, cols: &[&'static str]) -> IndexCreateStatement {
    let mut statement = Index::create().name(name).table(table).to_owned();
    for col in cols {
        statement.col(*col);
    }
    statement
}

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_foundation::Migration),
            Box::new(m20261126_000002_delivery::Migration),
            Box::new(m20261129_000003_hardening::Migration),
            Box::new(m20261129_000004_target_secrets::Migration),
            Box::new(m20261129_000005_receipt_inbox::Migration),
            Box::new(m20261129_000006_inbox_record::Migration),
            Box::new(m20261129_000007_devices::Migration),
            Box::new(m20261206_000008_delivery_queue::Migration),
            Box::new(m20261206_000009_device_link::Migration),
            Box::new(m20261206_000010_cap_alerts::Migration),
            Box::new(m20261206_000011_audio_attachments::Migration),
            Box::new(m20261206_000012_cap_superseded::Migration),
            Box::new(m20261206_000013_wechat_tokens::Migration),
            Box::new(m20261206_000014_corrections::Migration),
            Box::new(m20261206_000015_callback_replays::Migration),
            Box::new(m20261206_000016_password_change::Migration),
            Box::new(m20261207_000017_search::Migration),
            Box::new(m20261207_000018_organs::Migration),
            Box::new(m20261207_000019_portal_generation::Migration),
            Box::new(m20261207_000020_search_key_inline::Migration),
        ]
    }
}
