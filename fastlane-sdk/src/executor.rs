//! The [`Executor`] trait: how an execution is run to its end.
//!
//! The host drives an execution through these steps, persisting what each
//! returns so that any worker can pick the execution up again after a crash:
//!
//! 1. [`Executor::place`] chooses where it runs (status `pulling`);
//! 2. [`Executor::prepare`] gets the image ready there;
//! 3. [`Executor::start`] starts it (status `running`). Starting is
//!    idempotent per execution id: a second call finds the first run
//!    instead of starting another;
//! 4. [`Executor::wait`] returns when it exits, [`Executor::output`] reads
//!    what it wrote;
//! 5. once the result is stored, [`Executor::release`] tidies up.
//!
//! [`Executor::stop`] ends a run early (timeouts, users). Timeouts are the
//! host's business: it races `wait` against its own timer.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::PluginError;

/// Everything an executor needs to know to run one execution.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionSpec {
    /// The execution's UUID; names the container.
    pub execution_id: String,
    /// The job's UUID.
    pub job_id: String,
    /// The task id.
    pub task_id: String,
    /// The image, as the user wrote it.
    pub image: String,
    /// The command's words (already split shell-style).
    pub argv: Vec<String>,
    /// Environment variables.
    pub envs: BTreeMap<String, String>,
    /// Extra `hostname → IP` entries.
    pub extra_hosts: Vec<(String, String)>,
    /// CPUs the run may use, when limited.
    pub cpu_limit: Option<f64>,
    /// Bytes of memory the run may use, when limited.
    pub memory_limit: Option<u64>,
}

/// Where an execution was placed, recorded before anything is started so a
/// worker that adopts the execution knows where to look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The host, in the executor's own notation (`host:port`, `unix:///…`).
    pub host: String,
}

/// A started run, as stored with its execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHandle {
    /// The host it runs on.
    pub host: String,
    /// The executor's id for it (a container id).
    pub id: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    /// The process's exit code.
    pub code: i64,
    /// An error the engine recorded about the run, if any.
    pub error: Option<String>,
}

/// What a run wrote. Bytes that are not UTF-8 are replaced, never dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// One host as the `/status/` route shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    /// The host as configured.
    pub host: String,
    /// Which farm (its `match` pattern) the host belongs to.
    pub farm: String,
    /// True when the host answered and takes work.
    pub available: bool,
    /// True when an operator took the host out of rotation.
    pub blacklisted: bool,
    /// `closed`, `open` or `half-open`.
    pub circuit: String,
    /// Why the host is unavailable.
    pub error: Option<String>,
    /// How many fastlane executions run there now.
    pub running: u64,
}

/// A fastlane container that is running now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningContainer {
    /// The host it runs on.
    pub host: String,
    /// The container id.
    pub id: String,
    /// The execution it belongs to, from its labels.
    pub execution_id: Option<String>,
}

/// The pool as a whole, for `/status/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorStatus {
    /// Every configured host.
    pub hosts: Vec<HostStatus>,
    /// Every fastlane container running on a reachable host.
    pub running: Vec<RunningContainer>,
}

/// Runs executions. Implementations must be cheap to share (`Arc`) and safe
/// to call from many tasks at once.
#[async_trait]
pub trait Executor: Send + Sync + fmt::Debug {
    /// The name the executor was registered under.
    fn name(&self) -> &str;

    /// Says whether this executor can ever run work of `task_id` (a farm
    /// matches it, say), so that the API can refuse a job it could never
    /// run instead of accepting it and failing it later. Everything is
    /// accepted unless an executor says otherwise.
    fn accepts(&self, task_id: &str) -> Result<(), PluginError> {
        let _ = task_id;
        Ok(())
    }

    /// Takes these hosts out of rotation (an operator's blacklist): they get
    /// no new work, while runs already on them are followed to their end.
    /// Replaces the previous list. Executors without hosts ignore it.
    fn set_blacklist(&self, hosts: &[String]) {
        let _ = hosts;
    }

    /// Chooses where `spec` runs. An [`crate::ErrorKind::Unavailable`] error
    /// means no host can take it now; the host retries later.
    async fn place(&self, spec: &ExecutionSpec) -> Result<Placement, PluginError>;

    /// Makes the image ready on the placement's host.
    async fn prepare(&self, spec: &ExecutionSpec, placement: &Placement)
    -> Result<(), PluginError>;

    /// Starts the run, or returns the run already started for this execution
    /// id (so redelivered work never starts a second container).
    async fn start(
        &self,
        spec: &ExecutionSpec,
        placement: &Placement,
    ) -> Result<RunHandle, PluginError>;

    /// Waits until the run exits. Returns at once if it already has.
    async fn wait(&self, handle: &RunHandle) -> Result<ExitStatus, PluginError>;

    /// Reads everything the run wrote.
    async fn output(&self, handle: &RunHandle) -> Result<RunOutput, PluginError>;

    /// Stops the run, killing it after `grace`.
    async fn stop(&self, handle: &RunHandle, grace: Duration) -> Result<(), PluginError>;

    /// Called once the result is stored (the Docker executor renames the
    /// container `defunct-fastlane-job-<execution_id>`).
    async fn release(&self, handle: &RunHandle) -> Result<(), PluginError>;

    /// The state of every host, for the status route.
    async fn status(&self) -> ExecutorStatus;
}

/// Builds an [`Executor`] from its configuration.
pub trait ExecutorFactory: Send + Sync {
    /// The name configurations use to pick this executor (`docker`).
    fn kind(&self) -> &'static str;

    /// Builds the executor. `config` is the plugin's own section of the
    /// server configuration; errors should be [`crate::ErrorKind::InvalidConfig`]
    /// and name the bad key.
    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn Executor>, PluginError>;
}

impl fmt::Debug for dyn ExecutorFactory + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExecutorFactory({})", self.kind())
    }
}
