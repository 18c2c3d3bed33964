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
//! - [`circuit`]: a host's circuit breaker, shared across processes through
//!   [`HostHealth`] reports.
//! - [`model`]: tasks, jobs, executions and their status set.
//! - [`executor`], [`notifier`], [`error_handler`], [`metrics`]: one trait and
//!   its factory each.
//! - [`registry`]: the explicit list of factories a server knows.
//!
//! - [`dynamic`]: what a plugin library exports ([`declare_plugin!`]), the
//!   fingerprint a server checks before using it, and the runtime of its
//!   own a library's plugins run on.
//! - `testing` (feature `testing`): the compliance kit plugin authors run.
//!
//! The crate is `#![forbid(unsafe_code)]`; the server's `fastlane-loader`
//! crate holds the `unsafe` that loading a library takes.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod circuit;
pub mod dynamic;
pub mod error;
pub mod error_handler;
pub mod executor;
pub mod metrics;
pub mod model;
pub mod notifier;
pub mod registry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;

pub use error::{ErrorKind, PluginError};
pub use error_handler::{ErrorHandler, ErrorHandlerFactory, ErrorReport};
pub use executor::{
    COUNT_PAST_LIMIT, Cut, ExecutionSpec, Executor, ExecutorFactory, ExecutorStatus, ExitStatus,
    HostHealth, HostStatus, LogSink, LogStream, NoProgress, OutputCollector, Placement, Pool,
    Progress, Resources, RunHandle, RunOutput, RunningContainer,
};
pub use metrics::{Metric, MetricValue, MetricsSink, MetricsSinkFactory};
pub use model::{
    Backoff, ConcurrencyPolicy, DispatchRecord, Execution, ExecutionStatus, Job, JobSpec,
    MissedRuns, NotifyTargets, PullPolicy, Schedule, Task, Webhook, WebhookTargets,
};
pub use notifier::{Delivery, DeliveryReport, NotificationEvent, Notifier, NotifierFactory};
pub use registry::Registry;

/// The version of this SDK, compared with a plugin's when it is loaded.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
