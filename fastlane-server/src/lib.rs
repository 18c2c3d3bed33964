//! # fastlane-server
//!
//! The fastlane HTTP API and worker, and the `fastlane` binary that runs
//! them.
//!
//! # Layout
//! From the process down. Only the process modules use [`api`]; nothing
//! below it does (`tests/tests/stories/tidy.rs` checks).
//!
//! The process:
//! - `main.rs`: the `fastlane` command line.
//! - [`commands`]: `standalone`, `api` and `worker`, each a set of
//!   [`roles`] over one [`services::Services`].
//! - [`roles`]: what a process runs (the API, the consumers, the
//!   reconciliation at start-up) and how it shuts down.
//!
//! The HTTP layer:
//! - [`api`]: the routes, the OpenAPI document, Swagger UI, live logs.
//!
//! What the routes and the consumers do:
//! - [`worker`]: drives executions to their end; [`admission`] decides
//!   which may be placed now under the concurrency limits.
//! - [`scheduler`]: fires delayed and cron jobs ([`schedule`] parses when).
//! - [`control`]: stopping executions and jobs.
//! - [`notify`]: e-mail, webhook and plugin notifications, owed in the
//!   store until delivered.
//! - [`outbox`]: publishes the queue messages the store wrote with a
//!   submission.
//! - [`logs`]: live logs kept with their execution as they are written.
//! - [`prune`]: removing the containers of finished executions.
//! - [`hosts`]: the blacklist and host health every process shares.
//!
//! What they share:
//! - [`services`]: everything built once at start-up from [`config`].
//! - [`store`] and [`queue`]: persistent state and pending work, with the
//!   embedded SQLite implementations ([`embedded`] opens their file).
//! - [`executors`]: which executor runs which task; [`plugins`]: where the
//!   executors, notifiers and sinks come from.
//! - [`metrics`], [`reporting`], [`telemetry`]: what fastlane measures, the
//!   failures it reports, and the traces it exports.
//! - [`urls`], [`redact`], [`egress`], [`clock`]: absolute URLs, masking
//!   secrets, the webhook egress policy, the current time.
//!
//! Only what `main.rs` and the fuzz target use is public: [`api`],
//! [`commands`], [`config`], [`prune`], [`roles`] and [`telemetry`]; the
//! rest is private to the crate, so the compiler reports what nothing uses.

mod admission;
pub mod api;
mod clock;
pub mod commands;
pub mod config;
mod control;
mod egress;
mod embedded;
mod executors;
mod hosts;
mod logs;
mod metrics;
mod notify;
mod outbox;
mod plugins;
pub mod prune;
mod queue;
mod redact;
mod reporting;
pub mod roles;
mod schedule;
mod scheduler;
mod services;
mod store;
pub mod telemetry;
mod urls;
mod worker;
