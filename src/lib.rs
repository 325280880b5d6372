//! Herald: post once, deliver everywhere, know what happened. See ARCHITECTURE.md.

pub mod accounts;
pub mod annual_report;
pub mod attachments;
pub mod audit;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod device_link;
pub mod domain;
pub mod error;
pub mod http;
pub mod hub;
pub mod idempotency;
pub mod items;
pub mod organs;
pub mod portal;
pub mod secrets;
pub mod simulate;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod workers;
pub mod workflow;
