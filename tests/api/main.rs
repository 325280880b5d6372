//! Black-box tests: Herald over HTTP and its command line, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod fake_media_center;
mod fake_wechat;
mod helpers;
pub mod openapi_check;
mod scripted;
mod signed;

mod accounts;
mod alerts;
mod architecture;
mod audit;
mod broker;
mod browser;
mod cli;
mod conformance;
mod console;
mod console_screens;
mod corrections;
mod deadlines;
mod delivery;
mod deployment;
mod device_link;
mod devices;
mod handoff;
mod hardening;
mod inbox;
mod interpretations;
mod login_abuse;
mod matrix;
mod media_center;
mod organs;
mod portal;
mod portal_cache;
mod scheduling;
mod scoping;
mod search;
mod secrets;
mod sweep;
mod system;
mod two_serves;
mod validation;
mod wechat;
mod wechat_tokens;
mod workflow;
