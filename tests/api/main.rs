//! Black-box tests: Herald over HTTP and its command line, on SQLite and PostgreSQL.

mod helpers;

mod accounts;
mod audit;
mod cli;
mod interpretations;
mod scoping;
mod system;
mod validation;
mod workflow;
