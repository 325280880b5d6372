//! Deliveries: one row per (published item version, target), written in the publishing
//! transaction (transactional outbox), worked off by `worker`, and recorded as append-only
//! receipts from which each delivery's state follows.

mod backoff;
mod correction;
pub mod counts;
pub mod coverage;
pub mod devices;
pub mod gateway;
pub mod inbox;
mod operator;
mod outbox;
mod queue;
mod receipt_log;
mod report;
mod state;
pub mod targets;
pub mod transition;
pub mod wechat_tokens;
pub mod worker;

pub use correction::{enqueue_correction, try_remove_superseded};
pub use operator::{cancel, reconcile, retry};
pub use outbox::{Schedule, enqueue_publication, enqueue_withdrawal, published_item};
pub use report::{
    DeliveryFilter, DeliveryView, ItemDeliveries, SummaryRow, item_deliveries, list_deliveries, receipts_csv,
    summary,
};
pub use state::{DeliveryKind, DeliveryState, priority_of};

// The worker's path for the chunk size it shares with the writers here.
use crate::store::ID_CHUNK;
