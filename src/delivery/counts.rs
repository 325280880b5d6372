//! Delivery counts per item × channel × kind × state, changed in the same transaction as the
//! deliveries they count. Reading an item's summary is then a handful of rows, however many
//! targets it went to.

use std::collections::BTreeMap;

use herald_channels::ChannelKind;
use sea_orm::{ConnectionTrait, DatabaseTransaction, Statement};

use super::state::{DeliveryKind, DeliveryState};
use crate::{domain::ids::ItemId, error::Result, store::entities::delivery};

/// The deliveries one counter counts: an item's, on one channel, of one kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CountedDeliveries {
    pub item_id: ItemId,
    pub channel: ChannelKind,
    pub kind: DeliveryKind,
}

impl CountedDeliveries {
    /// The counter a delivery is counted under (with its state).
    pub fn of(delivery: &delivery::Model) -> Self {
        Self {
            item_id: delivery.item_id.clone(),
            channel: delivery.channel,
            kind: delivery.kind,
        }
    }
}

/// (item, channel, kind, state) → change.
#[derive(Default)]
pub struct CountChanges {
    changes: BTreeMap<(CountedDeliveries, DeliveryState), i64>,
}

impl CountChanges {
    pub fn add(&mut self, counted: &CountedDeliveries, state: DeliveryState, n: i64) {
        *self.changes.entry((counted.clone(), state)).or_insert(0) += n;
    }

    /// `n` deliveries moved from one state to another.
    pub fn moved(&mut self, counted: &CountedDeliveries, from: DeliveryState, to: DeliveryState, n: i64) {
        if from != to {
            self.add(counted, from, -n);
            self.add(counted, to, n);
        }
    }

    /// Applies the changes in key order, so concurrent transactions lock counter rows in the
    /// same order and cannot deadlock.
    pub async fn apply(self, txn: &DatabaseTransaction) -> Result<()> {
        let backend = txn.get_database_backend();
        for ((counted, state), n) in self.changes {
            if n == 0 {
                continue;
            }
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                "INSERT INTO delivery_counts (item_id, channel, kind, state, n) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (item_id, channel, kind, state) DO UPDATE SET n = delivery_counts.n + excluded.n",
                [
                    counted.item_id.into(),
                    counted.channel.into(),
                    counted.kind.into(),
                    state.into(),
                    n.into(),
                ],
            ))
            .await?;
        }
        Ok(())
    }
}
