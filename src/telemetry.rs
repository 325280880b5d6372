//! Logging to standard error (`RUST_LOG` overrides the default filter) and the Prometheus
//! metrics a hub records.

use std::{io::IsTerminal, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    // A second initialisation (tests that start several hubs) keeps the first subscriber.
    // Colours only on a terminal: a redirected log is read by tools, not people.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

const HTTP_RESPONSES: &str = "herald_http_responses_total";
const ITEMS: &str = "herald_items";
const DATABASE_UP: &str = "herald_database_up";
const DELIVERIES: &str = "herald_deliveries_total";
const ADAPTER_CALL: &str = "herald_adapter_call_seconds";

/// Bucket bounds of `herald_adapter_call_seconds`, up to the longest attempt deadlines.
const ADAPTER_CALL_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One hub's metrics: a Prometheus recorder of its own (the `metrics` facade's global
/// recorder is never installed), so hubs sharing a process — the tests run many — each
/// count only what they did, and `/metrics` renders exactly this hub's numbers.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(ADAPTER_CALL.into()), &ADAPTER_CALL_BUCKETS)?
            .build_recorder();
        let handle = recorder.handle();
        let metrics = Self { recorder, handle };
        metrics.record(|| {
            metrics::describe_counter!(HTTP_RESPONSES, "HTTP responses by status class.");
            metrics::describe_gauge!(ITEMS, "Items by workflow state.");
            metrics::describe_gauge!(DATABASE_UP, "Whether the database answers.");
            metrics::describe_counter!(
                DELIVERIES,
                "Delivery attempts recorded, by channel and the state they ended in."
            );
            metrics::describe_histogram!(
                ADAPTER_CALL,
                metrics::Unit::Seconds,
                "How long channel adapter calls (deliver, withdraw) took, by channel."
            );
        });
        Ok(metrics)
    }

    fn record(&self, f: impl FnOnce()) {
        metrics::with_local_recorder(&self.recorder, f);
    }

    /// One HTTP answer, counted by status class (`2xx`…).
    pub fn http_response(&self, status: u16) {
        let class = match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        self.record(|| metrics::counter!(HTTP_RESPONSES, "class" => class).increment(1));
    }

    /// `n` delivery attempts of `channel` were recorded ending in state `outcome`.
    pub fn deliveries_recorded(&self, channel: &str, outcome: &'static str, n: u64) {
        let channel = channel.to_owned();
        self.record(|| {
            metrics::counter!(DELIVERIES, "channel" => channel, "outcome" => outcome).increment(n)
        });
    }

    /// One adapter call (deliver or withdraw) took `elapsed`, deadline included.
    pub fn adapter_call(&self, channel: &str, elapsed: Duration) {
        let channel = channel.to_owned();
        self.record(|| metrics::histogram!(ADAPTER_CALL, "channel" => channel).record(elapsed.as_secs_f64()));
    }

    /// The Prometheus text exposition, after setting the gauges read at scrape time.
    pub fn render(&self, items: &[(&'static str, u64)], database_up: bool) -> String {
        self.record(|| {
            for &(state, count) in items {
                // Item counts stay far below 2^53, where f64 is exact.
                metrics::gauge!(ITEMS, "state" => state).set(count as f64);
            }
            metrics::gauge!(DATABASE_UP).set(if database_up { 1.0 } else { 0.0 });
        });
        self.handle.render()
    }
}
