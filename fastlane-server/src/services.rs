//! [`Services`]: everything the API and the worker share, built once at
//! start-up from the configuration.

use std::collections::BTreeMap;
use std::sync::Arc;

use fastlane_sdk::Notifier;

use crate::config::Config;
use crate::executors::Executors;
use crate::queue::Queue;
use crate::store::Store;

/// The shared parts of a running fastlane process.
#[derive(Debug, Clone)]
pub struct Services {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Tasks, jobs and executions.
    pub store: Arc<dyn Store>,
    /// Work waiting for a worker.
    pub queue: Arc<dyn Queue>,
    /// Runs executions: the executor of each task.
    pub executors: Executors,
    /// Delivers notifications, by the kind of target they serve (`webhook`).
    pub notifiers: BTreeMap<String, Arc<dyn Notifier>>,
    /// What the process measures.
    pub metrics: crate::metrics::Metrics,
    /// Where unhandled failures are reported.
    pub reporter: crate::reporting::Reporter,
    /// The `PLUGINS` libraries and what became of them.
    pub libraries: Arc<Vec<crate::plugins::LibraryStatus>>,
}
