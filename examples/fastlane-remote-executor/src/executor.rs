//! `remote`: runs an execution as a one-run job on another fastlane server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use fastlane_client::follow::{Event, Stream};
use fastlane_sdk::{
    ErrorKind, ExecutionSpec, Executor, ExecutorFactory, ExecutorStatus, ExitStatus, HostStatus,
    LogSink, LogStream, OutputCollector, Placement, PluginError, Pool, RunHandle, RunOutput,
    RunningContainer,
};
use serde_json::json;

use crate::client::{Remote, RemoteRun, followed};
use crate::config::RemoteConfig;

/// The exit code reported for a remote execution stopped before it
/// exited by itself (a killed container's).
const STOPPED_CODE: i64 = 137;

/// A log offset past the end of any log: `wait` follows from there, so
/// only the `exit` frame comes.
const PAST_THE_END: u64 = i64::MAX as u64;

/// Builds [`RemoteExecutor`]s from [`RemoteConfig`].
#[derive(Debug, Clone, Copy)]
pub struct RemoteExecutorFactory;

impl ExecutorFactory for RemoteExecutorFactory {
    fn kind(&self) -> &'static str {
        "remote"
    }

    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn Executor>, PluginError> {
        let config = RemoteConfig::parse(config)?;
        let remote = Remote::new(&config)?;
        tracing::info!(url = %config.url, "remote executor ready");
        Ok(Arc::new(RemoteExecutor {
            config,
            remote,
            waiting: Arc::new(Mutex::new(HashMap::new())),
        }))
    }
}

/// Runs executions on another fastlane server.
#[derive(Debug)]
pub struct RemoteExecutor {
    config: RemoteConfig,
    remote: Remote,
    /// The runs this process waits on now (each with how many waits), for
    /// `status`.
    waiting: Arc<Mutex<HashMap<String, usize>>>,
}

/// Counts one wait on a run for as long as it lives.
struct Waiting {
    waiting: Arc<Mutex<HashMap<String, usize>>>,
    id: String,
}

impl Waiting {
    fn new(waiting: &Arc<Mutex<HashMap<String, usize>>>, id: &str) -> Self {
        *waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.to_owned())
            .or_default() += 1;
        Self {
            waiting: Arc::clone(waiting),
            id: id.to_owned(),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = waiting.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                waiting.remove(&self.id);
            }
        }
    }
}

impl RemoteExecutor {
    /// The job the remote server runs for `spec`: one run (this server
    /// keeps the retries, the timeout and the notifications), labelled with
    /// where it came from.
    fn job(spec: &ExecutionSpec) -> Result<serde_json::Value, PluginError> {
        let command = shlex::try_join(spec.argv.iter().map(String::as_str)).map_err(|err| {
            PluginError::permanent(format!("the command cannot be sent on: {err}"))
        })?;
        let mut job = json!({
            "image": spec.image,
            "command": command,
            "envs": spec.envs,
            "retries": 0,
            "metadata": {"forwardedFrom": {
                "taskId": spec.task_id,
                "jobId": spec.job_id,
                "executionId": spec.execution_id,
            }},
        });
        if !spec.extra_hosts.is_empty() {
            let hosts: serde_json::Map<_, _> = spec
                .extra_hosts
                .iter()
                .map(|(host, ip)| (host.clone(), json!(ip)))
                .collect();
            job["additionalDNSEntries"] = hosts.into();
        }
        if let Some(cpus) = spec.cpu_limit {
            job["cpuLimit"] = json!(cpus);
        }
        if let Some(bytes) = spec.memory_limit {
            job["memoryLimit"] = json!(bytes);
        }
        if let Some(policy) = spec.pull_policy {
            job["pullPolicy"] = json!(policy);
        }
        Ok(job)
    }

    fn run(handle: &RunHandle) -> Result<RemoteRun, PluginError> {
        RemoteRun::parse(&handle.id)
    }
}

/// How a remote execution's end reads here. A run stopped there never
/// reads as a success; one that failed there without exiting (its host
/// lost) is `Lost`, so this server's own retry rules apply; one the remote
/// server timed out or expired is a failure saying so.
fn exit_status(
    base: &str,
    status: &str,
    exit_code: Option<i64>,
    error: Option<String>,
) -> Result<ExitStatus, PluginError> {
    let why = || {
        error
            .clone()
            .unwrap_or_else(|| "no reason given".to_owned())
    };
    match (status, exit_code) {
        ("stopped", code) => Ok(ExitStatus {
            code: code.filter(|c| *c != 0).unwrap_or(STOPPED_CODE),
            error: Some(format!("stopped on {base}: {}", why())),
        }),
        (_, Some(code)) => Ok(ExitStatus { code, error }),
        ("done", None) => Ok(ExitStatus { code: 0, error }),
        ("failed", None) => Err(PluginError::lost(format!(
            "the execution failed on {base} without exiting: {}",
            why()
        ))),
        (status, None) => Err(PluginError::permanent(format!(
            "the execution ended {status} on {base} (its own limits, such as \
             HARD_EXECUTION_TIMEOUT_SECONDS, apply there): {}",
            why()
        ))),
    }
}

/// Hands what the remote execution's live log holds (from its first byte)
/// to `sink`, stdout and stderr apart, until the log ends or the sink wants
/// no more. The remote server's own notices (a cap reached) are left out.
async fn read_log(remote: &Remote, run: &RemoteRun, sink: &dyn LogSink) -> Result<(), PluginError> {
    let mut follow = remote.follow(run);
    while sink.wants(LogStream::Stdout) || sink.wants(LogStream::Stderr) {
        let Some(event) = follow.next().await.map_err(followed)? else {
            break;
        };
        match event {
            Event::Output { stream, text } => {
                let stream = match stream {
                    Stream::Stdout => LogStream::Stdout,
                    Stream::Stderr => LogStream::Stderr,
                    Stream::Notice => continue,
                };
                if sink.wants(stream) {
                    sink.write(stream, text.as_bytes()).await;
                }
            }
            Event::Exited { .. } => break,
            Event::Started { .. } | Event::Reconnecting { .. } => {}
        }
    }
    Ok(())
}

#[async_trait]
impl Executor for RemoteExecutor {
    fn name(&self) -> &str {
        "remote"
    }

    fn pools(&self, _task_id: &str) -> Vec<Pool> {
        self.config
            .max_running
            .map(|max| Pool {
                name: self.config.url.clone(),
                max_running: max.get(),
            })
            .into_iter()
            .collect()
    }

    async fn place(&self, _spec: &ExecutionSpec) -> Result<Placement, PluginError> {
        Ok(Placement {
            host: self.config.url.clone(),
        })
    }

    /// The remote server pulls the image itself.
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
        let job = Self::job(spec)?;
        let run = self
            .remote
            .submit(&spec.task_id, &spec.execution_id, &job)
            .await?;
        tracing::info!(
            execution_id = %spec.execution_id,
            remote = %self.config.url,
            remote_job = %run.job,
            remote_execution = %run.execution,
            "remote run submitted"
        );
        Ok(RunHandle {
            host: self.config.url.clone(),
            id: run.id(),
        })
    }

    /// Follows the remote execution's live log to its `exit` frame,
    /// starting past its end so that no output comes over this socket
    /// (`follow` and `output` read it).
    async fn wait(&self, handle: &RunHandle) -> Result<ExitStatus, PluginError> {
        let run = Self::run(handle)?;
        let _waiting = Waiting::new(&self.waiting, &handle.id);
        let mut follow = self
            .remote
            .follow(&run)
            .resume(&run.execution, PAST_THE_END);
        while let Some(event) = follow.next().await.map_err(followed)? {
            if let Event::Exited {
                status,
                exit_code,
                error,
                ..
            } = event
            {
                return exit_status(&self.config.url, &status, exit_code, error);
            }
        }
        Err(PluginError::retryable(format!(
            "the live log of {} on {} ended without an exit",
            run.execution, &self.config.url
        )))
    }

    /// What the remote live log holds, stdout and stderr apart: the run's
    /// own streams (the remote `…/stderr` route also carries the remote
    /// server's reasons). The remote server's `EXECUTION_LOG_MAX_BYTES`
    /// caps it there.
    async fn output(&self, handle: &RunHandle, limit: u64) -> Result<RunOutput, PluginError> {
        let run = Self::run(handle)?;
        let collector = OutputCollector::with_limit(limit);
        read_log(&self.remote, &run, &collector).await?;
        Ok(collector.into_output())
    }

    async fn follow(&self, handle: &RunHandle, sink: &dyn LogSink) -> Result<(), PluginError> {
        read_log(&self.remote, &Self::run(handle)?, sink).await
    }

    /// Stops the remote execution; the remote server's `STOP_GRACE_SECONDS`
    /// applies there (its API takes no grace).
    async fn stop(&self, handle: &RunHandle, _grace: Duration) -> Result<(), PluginError> {
        let run = Self::run(handle)?;
        self.remote.stop(&run).await
    }

    /// Stops the remote execution should it still run (this server gave up
    /// on it), so that none is left behind; stopping one that ended changes
    /// nothing there.
    async fn release(&self, handle: &RunHandle) -> Result<(), PluginError> {
        match self.remote.stop(&Self::run(handle)?).await {
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    async fn status(&self) -> ExecutorStatus {
        let health = self.remote.health().await;
        let running: Vec<RunningContainer> = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .map(|id| RunningContainer {
                host: self.config.url.clone(),
                id: id.clone(),
                execution_id: None,
            })
            .collect();
        ExecutorStatus {
            hosts: vec![HostStatus {
                host: self.config.url.clone(),
                farm: "remote".into(),
                available: health.is_ok(),
                blacklisted: false,
                circuit: "closed".into(),
                error: health.err(),
                running: running.len() as u64,
            }],
            running,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_exited_keeps_its_code_and_one_that_did_not_says_why() {
        let ended = |status, code| exit_status("http://b", status, code, None);
        assert_eq!(ended("failed", Some(3)).map(|e| e.code).ok(), Some(3));
        assert_eq!(ended("done", None).map(|e| e.code).ok(), Some(0));
        for stopped in [None, Some(0)] {
            assert_eq!(
                ended("stopped", stopped).map(|e| e.code).ok(),
                Some(STOPPED_CODE),
                "a stop is never a success"
            );
        }
        let lost = ended("failed", None).expect_err("no code");
        assert_eq!(lost.kind(), ErrorKind::Lost);
        let expired = ended("expired", None).expect_err("no code");
        assert_eq!(expired.kind(), ErrorKind::Permanent);
        assert!(
            expired.message().contains("ended expired on http://b"),
            "{expired}"
        );
    }

    #[test]
    fn the_remote_job_runs_once_with_the_words_the_user_gave() -> Result<(), PluginError> {
        let spec = ExecutionSpec {
            execution_id: "e".into(),
            job_id: "j".into(),
            task_id: "t".into(),
            image: "busybox".into(),
            argv: vec!["sh".into(), "-c".into(), "echo 'a b' \"$X\"".into()],
            envs: [("X".to_owned(), "1".to_owned())].into(),
            extra_hosts: vec![("db".into(), "10.0.0.2".into())],
            cpu_limit: Some(0.5),
            memory_limit: None,
            pool: None,
            pull_policy: Some(fastlane_sdk::PullPolicy::Never),
            timeout: None,
            start_before: None,
        };
        let job = RemoteExecutor::job(&spec)?;
        let words = job["command"].as_str().and_then(shlex::split);
        assert_eq!(words.as_deref(), Some(spec.argv.as_slice()));
        assert_eq!(job["retries"], 0);
        assert_eq!(job["envs"]["X"], "1");
        assert_eq!(job["additionalDNSEntries"]["db"], "10.0.0.2");
        assert_eq!(job["pullPolicy"], "never");
        assert_eq!(job["metadata"]["forwardedFrom"]["executionId"], "e");
        assert!(job.get("memoryLimit").is_none());
        Ok(())
    }
}
