//! Background work a hub instance runs beside its HTTP server. Each worker is shaped
//! `run_*_until_stopped` → loop → `try_*`, so tests can drive the single step directly.

use std::{sync::Arc, time::Duration};

use crate::{hub::Hub, workflow};

/// How often published items are checked against their expiry date; expiry is by the day, so
/// a minute's lag is harmless.
pub const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

pub async fn run_expiry_until_stopped(hub: Arc<Hub>) -> anyhow::Result<()> {
    loop {
        match workflow::expire_due(&hub).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired items past their validity"),
            Err(e) => tracing::error!(error.cause_chain = ?e, "expiry sweep failed; retrying next interval"),
        }
        tokio::time::sleep(EXPIRY_SWEEP_INTERVAL).await;
    }
}
