//! Delivery counts per item × channel × kind × state, changed in the same transaction as the
//! deliveries they count. Reading an item's summary is then a handful of rows, however many
//! targets it went to.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DatabaseTransaction, Statement};

use crate::error::Result;

/// (item, channel, kind, state) → change.
#[derive(Default)]
pub struct CountChanges {
    changes: BTreeMap<(String, String, String, String), i64>,
}

impl CountChanges {
    pub fn add(&mut self, item_id: &str, channel: &str, kind: &str, state: &str, n: i64) {
        let key = (
            item_id.to_owned(),
            channel.to_owned(),
            kind.to_owned(),
            state.to_owned(),
        );
        *self.changes.entry(key).or_insert(0) += n;
    }

    /// `n` deliveries moved from one state to another.
    pub fn moved(&mut self, item_id: &str, channel: &str, kind: &str, from: &str, to: &str, n: i64) {
        if from != to {
            self.add(item_id, channel, kind, from, -n);
            self.add(item_id, channel, kind, to, n);
        }
    }

    /// Applies the changes in key order, so concurrent transactions lock counter rows in the
    /// same order and cannot deadlock.
    pub async fn apply(self, txn: &DatabaseTransaction) -> Result<()> {
        let backend = txn.get_database_backend();
        for ((item_id, channel, kind, state), n) in self.changes {
            if n == 0 {
                continue;
            }
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                "INSERT INTO delivery_counts (item_id, channel, kind, state, n) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (item_id, channel, kind, state) DO UPDATE SET n = delivery_counts.n + excluded.n",
                [item_id.into(), channel.into(), kind.into(), state.into(), n.into()],
            ))
            .await?;
        }
        Ok(())
    }
}
