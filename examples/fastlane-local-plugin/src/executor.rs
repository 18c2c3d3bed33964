//! `local`: runs an execution's command as a process on this machine.
//!
//! Configuration: `{"workdir": "/path", "maxRunning": 8}`, both optional:
//! where each run's stdout and stderr files go (a `fastlane-local` folder
//! in the system's temporary directory by default), and how many runs the
//! machine takes at once across every worker (a pool, `local`, whose slots
//! the server's admission line hands out; no limit by default). The image is ignored, the command runs
//! with `PATH` and the job's `envs` only, in its own process group so that
//! `stop` reaches its children too.
//!
//! Runs are known to the process that started them: after a server restart
//! an unfinished local run is reported lost (`NotFound`), never run twice.

use std::collections::HashMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fastlane_sdk::{
    Cut, ExecutionSpec, Executor, ExecutorFactory, ExecutorStatus, ExitStatus, HostStatus,
    Placement, PluginError, RunHandle, RunOutput, RunningContainer,
};
use tokio::sync::watch;

/// The only "host" a local executor has.
const HOST: &str = "local";

/// Builds [`LocalExecutor`]s.
#[derive(Debug, Clone, Copy)]
pub struct LocalExecutorFactory;

impl ExecutorFactory for LocalExecutorFactory {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn Executor>, PluginError> {
        let workdir = match config.get("workdir") {
            None | Some(serde_json::Value::Null) => std::env::temp_dir().join("fastlane-local"),
            Some(serde_json::Value::String(dir)) if !dir.is_empty() => PathBuf::from(dir),
            Some(other) => {
                return Err(PluginError::invalid_config(format!(
                    "local: `workdir` must be a folder path, not {other}"
                )));
            }
        };
        std::fs::create_dir_all(&workdir).map_err(|err| {
            PluginError::invalid_config(format!(
                "local: cannot create {}: {err}",
                workdir.display()
            ))
        })?;
        let max_running = match config.get("maxRunning") {
            None | Some(serde_json::Value::Null) => None,
            Some(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) if n > 0 => Some(n),
                _ => {
                    return Err(PluginError::invalid_config(format!(
                        "local: `maxRunning` must be a whole number from 1, not {n}"
                    )));
                }
            },
        };
        Ok(Arc::new(LocalExecutor {
            workdir,
            max_running,
            runs: Mutex::new(HashMap::new()),
        }))
    }
}

/// Runs commands as local processes.
#[derive(Debug)]
pub struct LocalExecutor {
    workdir: PathBuf,
    max_running: Option<u32>,
    runs: Mutex<HashMap<String, Arc<Run>>>,
}

/// One started process.
#[derive(Debug)]
struct Run {
    pid: u32,
    /// `None` while it runs, then its exit code.
    exit: watch::Receiver<Option<i64>>,
}

impl LocalExecutor {
    fn file(&self, id: &str, stream: &str) -> PathBuf {
        self.workdir.join(format!("{id}.{stream}"))
    }

    fn run(&self, handle: &RunHandle) -> Result<Arc<Run>, PluginError> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&handle.id)
            .cloned()
            .ok_or_else(|| {
                PluginError::not_found(format!(
                    "no local run {} (local runs do not survive a server restart)",
                    handle.id
                ))
            })
    }

    fn spawn(&self, spec: &ExecutionSpec) -> Result<Run, PluginError> {
        let Some((program, args)) = spec.argv.split_first() else {
            return Err(PluginError::permanent("the command is empty"));
        };
        let create = |stream: &str| {
            std::fs::File::create(self.file(&spec.execution_id, stream)).map_err(|err| {
                PluginError::retryable(format!("cannot create the {stream} file: {err}"))
            })
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .envs(&spec.envs)
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .stdout(create("stdout")?)
            .stderr(create("stderr")?)
            .process_group(0);
        let mut child = command
            .spawn()
            .map_err(|err| PluginError::permanent(format!("cannot run {program:?}: {err}")))?;
        let pid = child.id();
        let (tx, rx) = watch::channel(None);
        // Tokio's own timers and tasks: in a library they run on the
        // library's runtime, which the SDK starts.
        tokio::spawn(async move {
            let code = loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        break status
                            .code()
                            .map(i64::from)
                            .or_else(|| status.signal().map(|s| 128 + i64::from(s)))
                            .unwrap_or(-1);
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(err) => {
                        tracing::warn!(pid, error = %err, "cannot wait for a local run");
                        break -1;
                    }
                }
            };
            let _ = tx.send(Some(code));
        });
        tracing::info!(execution_id = %spec.execution_id, pid, "local run started");
        Ok(Run { pid, exit: rx })
    }
}

/// Sends `signal` to the process group of `pid`.
fn signal_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[async_trait]
impl Executor for LocalExecutor {
    fn name(&self) -> &str {
        "local"
    }

    fn pools(&self, _task_id: &str) -> Vec<fastlane_sdk::Pool> {
        self.max_running
            .map(|max_running| fastlane_sdk::Pool {
                name: HOST.to_owned(),
                max_running,
            })
            .into_iter()
            .collect()
    }

    async fn place(&self, _spec: &ExecutionSpec) -> Result<Placement, PluginError> {
        Ok(Placement { host: HOST.into() })
    }

    async fn prepare(
        &self,
        _spec: &ExecutionSpec,
        _placement: &Placement,
        _progress: &dyn fastlane_sdk::Progress,
    ) -> Result<(), PluginError> {
        Ok(())
    }

    async fn start(
        &self,
        spec: &ExecutionSpec,
        _placement: &Placement,
    ) -> Result<RunHandle, PluginError> {
        let handle = RunHandle {
            host: HOST.into(),
            id: spec.execution_id.clone(),
        };
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !runs.contains_key(&spec.execution_id) {
            let run = self.spawn(spec)?;
            runs.insert(spec.execution_id.clone(), Arc::new(run));
        }
        Ok(handle)
    }

    async fn wait(&self, handle: &RunHandle) -> Result<ExitStatus, PluginError> {
        let mut exit = self.run(handle)?.exit.clone();
        let code = exit
            .wait_for(Option::is_some)
            .await
            .map_err(|_| PluginError::permanent("the local run's watcher ended"))?
            .unwrap_or(-1);
        Ok(ExitStatus { code, error: None })
    }

    async fn output(&self, handle: &RunHandle, limit: u64) -> Result<RunOutput, PluginError> {
        // At most `limit` bytes of each file are read, so memory does not
        // grow with the output; the file's length says how much was cut.
        let read = |stream: &str| {
            use std::io::Read;
            let not_found = |err: std::io::Error| {
                PluginError::not_found(format!("no {stream} for {}: {err}", handle.id))
            };
            let file = std::fs::File::open(self.file(&handle.id, stream)).map_err(not_found)?;
            let length = file.metadata().map_err(not_found)?.len();
            let mut bytes = Vec::new();
            file.take(limit)
                .read_to_end(&mut bytes)
                .map_err(not_found)?;
            let cut = (length > bytes.len() as u64).then(|| Cut {
                more_bytes: length - bytes.len() as u64,
                complete: true,
            });
            Ok::<_, PluginError>((String::from_utf8_lossy(&bytes).into_owned(), cut))
        };
        let (stdout, stdout_cut) = read("stdout")?;
        let (stderr, stderr_cut) = read("stderr")?;
        Ok(RunOutput {
            stdout,
            stderr,
            stdout_cut,
            stderr_cut,
        })
    }

    async fn stop(&self, handle: &RunHandle, grace: Duration) -> Result<(), PluginError> {
        let run = self.run(handle)?;
        let mut exit = run.exit.clone();
        if exit.borrow().is_some() {
            return Ok(());
        }
        signal_group(run.pid, "TERM");
        if tokio::time::timeout(grace, exit.wait_for(Option::is_some))
            .await
            .is_err()
        {
            signal_group(run.pid, "KILL");
        }
        Ok(())
    }

    async fn release(&self, handle: &RunHandle) -> Result<(), PluginError> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&handle.id);
        for stream in ["stdout", "stderr"] {
            let _ = std::fs::remove_file(self.file(&handle.id, stream));
        }
        Ok(())
    }

    async fn status(&self) -> ExecutorStatus {
        let runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let running: Vec<RunningContainer> = runs
            .iter()
            .filter(|(_, run)| run.exit.borrow().is_none())
            .map(|(id, run)| RunningContainer {
                host: HOST.into(),
                id: run.pid.to_string(),
                execution_id: Some(id.clone()),
            })
            .collect();
        ExecutorStatus {
            hosts: vec![HostStatus {
                host: HOST.into(),
                farm: "local".into(),
                available: true,
                blacklisted: false,
                circuit: "closed".into(),
                error: None,
                running: running.len() as u64,
            }],
            running,
        }
    }
}
