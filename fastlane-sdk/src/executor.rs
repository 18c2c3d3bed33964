//! The [`Executor`] trait: how an execution is run to its end.
//!
//! The host drives an execution through these steps, persisting what each
//! returns so that any worker can pick the execution up again after a crash:
//!
//! 1. [`Executor::place`] chooses where it runs (status `pulling`);
//! 2. [`Executor::prepare`] gets the image ready there, reporting a pull's
//!    progress (the execution's status detail); an execution stopped
//!    meanwhile is [abandoned](Executor::abandon) instead;
//! 3. [`Executor::start`] starts it (status `running`). Starting is
//!    idempotent per execution id: a second call finds the first run
//!    instead of starting another;
//! 4. [`Executor::wait`] returns when it exits, [`Executor::output`] reads
//!    what it wrote (up to a limit per stream), and [`Executor::follow`]
//!    (beside `wait`) hands it over as it is written, for live logs;
//! 5. once the result is stored, [`Executor::release`] tidies up.
//!
//! [`Executor::stop`] ends a run early (timeouts, users). Timeouts are the
//! host's business: it races `wait` against its own timer.
//!
//! The host's memory must not grow with what a run writes: `output` keeps
//! at most its limit of each stream, and both `output` and `follow` stop
//! reading a stream once the [`LogSink`] no longer [wants](LogSink::wants)
//! it. [`LogSink::write`] waits while the host is behind, so reading goes
//! at the pace the host keeps.

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
    /// The pool (one of [`Executor::pools`]) the host admitted the
    /// execution to: place it there. `None` when the executor has no pools.
    pub pool: Option<String>,
    /// When the image is pulled, as the job says; the executor's own
    /// default when `None`.
    pub pull_policy: Option<crate::model::PullPolicy>,
    /// How long the run may take. The host enforces it with its own timer
    /// (racing [`Executor::wait`], then [`Executor::stop`]); an executor
    /// whose backend has deadlines of its own (a Kubernetes Job's
    /// `activeDeadlineSeconds`) also gives it there, so the run ends on
    /// time while no fastlane process watches, and reports it ended so with
    /// an [`crate::ErrorKind::TimedOut`] error.
    pub timeout: Option<Duration>,
    /// The job's expiration: a run not started by then must not start. An
    /// executor that waits in [`Executor::prepare`] (for a node, say) gives
    /// up then with an [`crate::ErrorKind::Expired`] error.
    pub start_before: Option<chrono::DateTime<chrono::Utc>>,
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
    /// Set when stdout went on past the limit [`Executor::output`] was
    /// given: `stdout` holds its start, and says how much more there was.
    pub stdout_cut: Option<Cut>,
    /// Set when stderr went on past the limit, as for stdout.
    pub stderr_cut: Option<Cut>,
}

/// How a stream of [`RunOutput`] was cut at its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Bytes past the limit that were seen (and not kept).
    pub more_bytes: u64,
    /// True when the stream was read to its end, so `more_bytes` is all
    /// that was cut; false when reading stopped early (the stream had at
    /// least `more_bytes` more).
    pub complete: bool,
}

/// The resources a job asks for, as [`Executor::accepts_resources`] checks
/// them when the job is submitted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    /// CPUs each run may use (`cpuLimit`), when the job sets it.
    pub cpu_limit: Option<f64>,
    /// Bytes of memory each run may use (`memoryLimit`), when the job sets
    /// it.
    pub memory_limit: Option<u64>,
}

/// Which of a run's output streams a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogStream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// Where [`Executor::follow`] hands what a run writes, as it writes it. The
/// host keeps it with the execution, so that it can be streamed live and
/// outlives the run. The host buffers a bounded amount: `write` waits while
/// the buffer is full, and once the host keeps nothing more of a stream
/// (the log reached its cap) [`LogSink::wants`] says so, and the executor
/// stops reading it.
#[async_trait]
pub trait LogSink: Send + Sync {
    /// Takes the next bytes of `stream`, in the order the run wrote them,
    /// waiting while the host is behind. A piece may end in the middle of a
    /// UTF-8 character; the host joins it to the next piece of the same
    /// stream.
    async fn write(&self, stream: LogStream, bytes: &[u8]);

    /// False once nothing more of `stream` will be kept: the executor stops
    /// reading that stream (and returns once it wants neither), instead of
    /// reading output that would be thrown away.
    fn wants(&self, stream: LogStream) -> bool {
        let _ = stream;
        true
    }
}

/// Where [`Executor::prepare`] says how far it got, for the execution's
/// status detail while it is `pulling` (`pulling busybox:1: 1 of 2 layers,
/// 0.8 of 2.1 MB`). The host keeps the newest report and stores it every so
/// often, so report as often as anything changes.
pub trait Progress: Send + Sync {
    /// The newest state, replacing the one before. Cheap; never waits.
    fn report(&self, detail: &str);
}

/// A [`Progress`] that keeps nothing (for tests, and calls outside the
/// host's steps).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn report(&self, _detail: &str) {}
}

/// A group of hosts that runs a bounded number of executions at once (a
/// Docker farm and its `maxRunning`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pool {
    /// The pool's name, unique within the executor.
    pub name: String,
    /// How many executions of the pool may run at once.
    pub max_running: u32,
}

/// A [`LogSink`] that keeps up to a limit of each stream, stdout and
/// stderr apart: how an executor can build [`Executor::output`] from the
/// same code that follows a run. Past its limit a stream is only counted,
/// for [`COUNT_PAST_LIMIT`] more bytes, so that a small overrun is reported
/// exactly; after that the collector no longer [wants](LogSink::wants) the
/// stream, and the executor stops reading it.
#[derive(Debug)]
pub struct OutputCollector {
    /// The most kept of each stream.
    limit: u64,
    /// What was kept of stdout and of stderr.
    kept: std::sync::Mutex<[Kept; 2]>,
}

/// How many bytes past its limit an [`OutputCollector`] counts before it
/// wants no more of a stream.
pub const COUNT_PAST_LIMIT: u64 = 1024 * 1024;

/// What an [`OutputCollector`] kept of one stream.
#[derive(Debug, Default)]
struct Kept {
    /// The stream's first bytes, at most the limit.
    bytes: Vec<u8>,
    /// Bytes seen past the limit.
    more: u64,
}

impl Default for OutputCollector {
    /// A collector that keeps everything (for tests and small runs).
    fn default() -> Self {
        Self::with_limit(u64::MAX)
    }
}

impl OutputCollector {
    /// A collector keeping at most `limit` bytes of each stream.
    pub fn with_limit(limit: u64) -> Self {
        Self {
            limit,
            kept: std::sync::Mutex::new(Default::default()),
        }
    }

    /// What was written, bytes that are not UTF-8 replaced (a character cut
    /// at the limit included), and how each stream was cut. Call it once
    /// the executor stopped reading.
    pub fn into_output(self) -> RunOutput {
        let [mut stdout, mut stderr] = self.kept.into_inner().unwrap_or_else(|e| e.into_inner());
        for kept in [&mut stdout, &mut stderr] {
            // A character the limit cut in two goes with the rest.
            if kept.more > 0
                && let Err(err) = std::str::from_utf8(&kept.bytes)
                && err.error_len().is_none()
            {
                let partial = kept.bytes.len() - err.valid_up_to();
                kept.bytes.truncate(err.valid_up_to());
                kept.more += partial as u64;
            }
        }
        let cut = |kept: &Kept| {
            (kept.more > 0).then_some(Cut {
                more_bytes: kept.more,
                complete: kept.more <= COUNT_PAST_LIMIT,
            })
        };
        RunOutput {
            stdout_cut: cut(&stdout),
            stderr_cut: cut(&stderr),
            stdout: String::from_utf8_lossy(&stdout.bytes).into_owned(),
            stderr: String::from_utf8_lossy(&stderr.bytes).into_owned(),
        }
    }

    fn index(stream: LogStream) -> usize {
        match stream {
            LogStream::Stdout => 0,
            LogStream::Stderr => 1,
        }
    }
}

#[async_trait]
impl LogSink for OutputCollector {
    async fn write(&self, stream: LogStream, bytes: &[u8]) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let kept = &mut kept[Self::index(stream)];
        let room = usize::try_from(self.limit.saturating_sub(kept.bytes.len() as u64))
            .unwrap_or(usize::MAX);
        let taken = bytes.len().min(room);
        kept.bytes.extend_from_slice(&bytes[..taken]);
        kept.more = kept.more.saturating_add((bytes.len() - taken) as u64);
    }

    fn wants(&self, stream: LogStream) -> bool {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept[Self::index(stream)].more <= COUNT_PAST_LIMIT
    }
}

/// What one process learnt about a host's health, shared with every other
/// process through the server's store, so that a host one worker gave up on
/// gets no work from any of them, and one that answers again gets work from
/// all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostHealth {
    /// The host, as configured.
    pub host: String,
    /// When this state began (the circuit opened, or closed again); the
    /// newest report of a host wins.
    pub since: chrono::DateTime<chrono::Utc>,
    /// While the host is given up on: until when. `None`: it answers.
    pub open_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Why it was given up on.
    pub error: Option<String>,
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

    /// Says whether a job of `task_id` may ask for `resources` (a farm's
    /// `maxCpuLimit`, say), checked when the job is submitted after
    /// [`Executor::accepts`], so that a job above a limit is refused then
    /// with the limit named. Everything is accepted unless an executor says
    /// otherwise.
    fn accepts_resources(&self, task_id: &str, resources: &Resources) -> Result<(), PluginError> {
        let _ = (task_id, resources);
        Ok(())
    }

    /// The pools that may run the executions of `task_id`, preferred
    /// first, each running a bounded number at once (a Docker farm and its
    /// `maxRunning`; more than one when a farm lets work fall through to
    /// the next). The host admits each execution to the first pool with
    /// room, in the order executions came, and never lets more than
    /// `max_running` of a pool be placed, started or running at a time,
    /// across every worker; the others wait. [`ExecutionSpec::pool`] then
    /// names the pool chosen. Empty (the default): no limit.
    fn pools(&self, task_id: &str) -> Vec<Pool> {
        let _ = task_id;
        Vec::new()
    }

    /// This process's newest knowledge of its hosts' health (one report per
    /// host whose circuit ever changed), for the server to share. Executors
    /// without hosts keep the default: nothing.
    fn host_health(&self) -> Vec<HostHealth> {
        Vec::new()
    }

    /// What every process reported: adopt each report newer than what this
    /// process knows of that host.
    fn share_host_health(&self, shared: &[HostHealth]) {
        let _ = shared;
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

    /// Makes the image ready on the placement's host, telling `progress`
    /// how far a pull got.
    async fn prepare(
        &self,
        spec: &ExecutionSpec,
        placement: &Placement,
        progress: &dyn Progress,
    ) -> Result<(), PluginError>;

    /// Undoes what [`Executor::prepare`] left behind for an execution that
    /// will not start (a user stopped it while it was being prepared): the
    /// Kubernetes executor deletes the Job it created there. The default
    /// does nothing.
    async fn abandon(
        &self,
        spec: &ExecutionSpec,
        placement: &Placement,
    ) -> Result<(), PluginError> {
        let _ = (spec, placement);
        Ok(())
    }

    /// Starts the run, or returns the run already started for this execution
    /// id (so redelivered work never starts a second container).
    async fn start(
        &self,
        spec: &ExecutionSpec,
        placement: &Placement,
    ) -> Result<RunHandle, PluginError>;

    /// Waits until the run exits. Returns at once if it already has.
    async fn wait(&self, handle: &RunHandle) -> Result<ExitStatus, PluginError>;

    /// Reads what the run wrote: at most `limit` bytes of each stream. A
    /// stream that goes on past `limit` is cut there, with how much more
    /// there was ([`RunOutput::stdout_cut`]), and is not read much further,
    /// so that memory and time do not grow with the output.
    /// [`OutputCollector::with_limit`] does all of that.
    async fn output(&self, handle: &RunHandle, limit: u64) -> Result<RunOutput, PluginError>;

    /// Hands what the run writes to `sink` as it writes it, from the first
    /// byte, and returns once the run's output ends (when it exits) or the
    /// sink [wants](LogSink::wants) neither stream any more. The
    /// host calls it beside [`Executor::wait`] and may call it again for the
    /// same run after a crash; it skips what it already kept. Executors that
    /// cannot follow a run keep this default, which writes nothing: the host
    /// then keeps what [`Executor::output`] returns at the end.
    async fn follow(&self, handle: &RunHandle, sink: &dyn LogSink) -> Result<(), PluginError> {
        let _ = (handle, sink);
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_collector_keeps_its_limit_counts_a_little_more_then_wants_no_more() {
        let kept = OutputCollector::with_limit(4);
        kept.write(LogStream::Stdout, b"abcdef").await;
        kept.write(LogStream::Stderr, b"xy").await;
        assert!(kept.wants(LogStream::Stdout), "a small overrun is counted");
        kept.write(LogStream::Stdout, &vec![b'z'; COUNT_PAST_LIMIT as usize])
            .await;
        assert!(!kept.wants(LogStream::Stdout));
        assert!(kept.wants(LogStream::Stderr));
        let output = kept.into_output();
        assert_eq!(
            (output.stdout.as_str(), output.stderr.as_str()),
            ("abcd", "xy")
        );
        assert_eq!(
            output.stdout_cut,
            Some(Cut {
                more_bytes: COUNT_PAST_LIMIT + 2,
                complete: false
            })
        );
        assert_eq!(output.stderr_cut, None);
    }

    #[tokio::test]
    async fn a_character_the_limit_cuts_in_two_goes_with_the_rest() {
        let kept = OutputCollector::with_limit(2);
        kept.write(LogStream::Stdout, "aé".as_bytes()).await;
        let output = kept.into_output();
        assert_eq!(output.stdout, "a");
        assert_eq!(
            output.stdout_cut,
            Some(Cut {
                more_bytes: 2,
                complete: true
            })
        );
    }
}
