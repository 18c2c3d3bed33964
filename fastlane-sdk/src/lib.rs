//! # fastlane-sdk
//!
//! The contract between fastlane and its plugins. A plugin implements one of
//! the four traits and ships a factory that builds it from its own JSON
//! configuration; the server registers factories in a [`Registry`] and builds
//! the plugins its configuration names.
//!
//! | trait | what it does | built-in implementation |
//! |---|---|---|
//! | [`Executor`] | runs one execution (a container, a process…) to its end | `fastlane-plugin-docker` |
//! | [`Notifier`] | tells someone an execution started or ended | e-mail, webhooks |
//! | [`ErrorHandler`] | reports failures fastlane could not handle | Sentry |
//! | [`MetricsSink`] | records counters, gauges and histograms | Prometheus |
//!
//! The shared domain types ([`Task`], [`Job`], [`JobSpec`], [`Execution`],
//! [`ExecutionStatus`]) live in [`model`]. Errors carry a [`ErrorKind`] so the
//! host knows whether to retry, give up, or wait for a host to come back.
//!
//! # Layout
//! - [`error`]: [`PluginError`] and [`ErrorKind`].
//! - [`model`]: tasks, jobs, executions and their status set.
//! - [`executor`], [`notifier`], [`error_handler`], [`metrics`]: one trait and
//!   its factory each.
//! - [`registry`]: the explicit list of factories a server knows.
//!
//! The crate is `#![forbid(unsafe_code)]`; plugins loaded from a dynamic
//! library will go through a separate loader that holds all `unsafe`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod error_handler;
pub mod executor;
pub mod metrics;
pub mod model;
pub mod notifier;
pub mod registry;
pub mod text;

pub use error::{ErrorKind, PluginError};
pub use error_handler::{ErrorHandler, ErrorHandlerFactory, ErrorReport};
pub use executor::{
    ExecutionSpec, Executor, ExecutorFactory, ExecutorStatus, ExitStatus, HostStatus, Placement,
    RunHandle, RunOutput, RunningContainer,
};
pub use metrics::{Metric, MetricValue, MetricsSink, MetricsSinkFactory};
pub use model::{
    Backoff, ConcurrencyPolicy, DispatchRecord, Execution, ExecutionStatus, Job, JobSpec,
    NotifyTargets, Schedule, Task, Webhook, WebhookTargets,
};
pub use notifier::{Delivery, DeliveryReport, NotificationEvent, Notifier, NotifierFactory};
pub use registry::Registry;

/// The version of this SDK, compared with a plugin's when it is loaded.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
