//! The worker's in-flight bounds. Its own file so the hub can hold one per instance without
//! importing the worker (which imports the hub).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::Semaphore;

/// In-flight bounds for one hub instance: per channel and per target.
#[derive(Default)]
pub struct InFlight {
    pub(super) channels: Mutex<HashMap<String, Arc<Semaphore>>>,
    pub(super) targets: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl InFlight {
    pub(super) fn permit_source(
        map: &Mutex<HashMap<String, Arc<Semaphore>>>,
        key: &str,
        size: u32,
    ) -> Arc<Semaphore> {
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(size as usize)))
            .clone()
    }
}
