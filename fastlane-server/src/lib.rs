//! # fastlane-server
//!
//! The fastlane HTTP API and worker, and the `fastlane` binary that runs
//! them.
//!
//! # Layout
//! - [`config`]: known keys, read from a TOML file and the environment.
//! - [`api`]: the HTTP routes, the OpenAPI document and Swagger UI.
//! - [`worker`]: takes queued work and drives executions to their end.
//! - [`store`] and [`queue`]: traits for persistent state and pending work,
//!   with the embedded SQLite implementations standalone mode uses
//!   ([`embedded`] opens their shared file).
//! - [`plugins`]: the built-in plugins, registered in one place.
//! - [`services`]: what the API and the worker share.
//! - [`standalone`]: everything in one process.
//! - [`redact`]: masking secrets (env values, webhook headers, URL
//!   credentials) in output.
//! - [`egress`]: the webhook egress policy checked at submission.

pub mod admission;
pub mod api;
pub mod clock;
pub mod commands;
pub mod config;
pub mod control;
pub mod egress;
pub mod embedded;
pub mod executors;
pub mod hosts;
pub mod logs;
pub mod metrics;
pub mod notify;
pub mod outbox;
pub mod plugins;
pub mod prune;
pub mod queue;
pub mod redact;
pub mod reporting;
pub mod roles;
pub mod schedule;
pub mod scheduler;
pub mod services;
pub mod store;
pub mod worker;
