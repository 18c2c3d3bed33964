//! [`KubernetesExecutor`]: the [`Executor`] contract on Kubernetes Jobs.
//!
//! | step | what it does on the cluster |
//! |---|---|
//! | `place` | the first cluster whose `match` fits the task and whose API server answers |
//! | `prepare` | creates the Job (or adopts the one a previous try made), then waits while its pod is scheduled and its image pulled, reporting why it waits |
//! | `start` | finds the Job (creating it should it be gone): the run's handle |
//! | `wait` | watches the pod to its container's exit |
//! | `follow`, `output` | the pod's log (stdout and stderr merged) |
//! | `stop` | deletes the pod within the grace period, then the Job |
//! | `release` | deletes the Job once its result is stored (`ttlSecondsAfterFinished` is the backstop) |
//! | `abandon` | deletes the Job of an execution stopped while it waited to start |

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fastlane_sdk::{
    ErrorKind, ExecutionSpec, Executor, ExecutorStatus, ExitStatus, HostHealth, HostStatus,
    LogSink, OutputCollector, Placement, PluginError, Pool, Progress, RunHandle, RunOutput,
    RunningContainer,
};
use kube::api::ListParams;

use crate::cluster::Cluster;
use crate::config::ClusterConfig;
use crate::manifest::{self, EXECUTION_LABEL};
use crate::state::{PodState, job_complete, job_failure, past_deadline, pod_state};
use crate::watch::PodWatch;

/// How often a wait looks again with nothing new from the watch (a Job
/// past its deadline, an expiration).
const TICK: Duration = Duration::from_secs(5);

/// How long reading a finished pod's log may take.
const OUTPUT_PATIENCE: Duration = Duration::from_secs(120);

/// The exit code reported for a run whose pod was deleted before its
/// container's exit was seen (a stop): a killed process's.
const KILLED: i64 = 137;

/// Runs executions as Jobs on one or more clusters.
#[derive(Debug)]
pub struct KubernetesExecutor {
    clusters: Vec<Arc<Cluster>>,
    blacklist: Mutex<BTreeSet<String>>,
    /// Runs this process stopped (and when), so that their end reads as a
    /// stop rather than a disappearance once their Job is gone. Kept an
    /// hour: an API process stops runs it never releases.
    stopped: Mutex<HashMap<String, Instant>>,
}

impl KubernetesExecutor {
    /// An executor for `clusters` (checked by [`crate::config::parse`]).
    pub fn new(clusters: Vec<ClusterConfig>) -> Self {
        Self {
            clusters: clusters
                .into_iter()
                .map(|config| Arc::new(Cluster::new(config)))
                .collect(),
            blacklist: Mutex::new(BTreeSet::new()),
            stopped: Mutex::new(HashMap::new()),
        }
    }

    fn cluster(&self, name: &str) -> Result<&Arc<Cluster>, PluginError> {
        self.clusters
            .iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                PluginError::not_found(format!("no cluster {name:?} in KUBERNETES_CLUSTERS"))
            })
    }

    fn blacklisted(&self, cluster: &str) -> bool {
        self.blacklist
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(cluster)
    }

    fn was_stopped(&self, job: &str) -> bool {
        self.stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(job)
    }

    /// Waits until the execution's pod runs (or ran), reporting why it
    /// waits; gives up (deleting the Job) on an image that cannot be
    /// pulled, a container that cannot start, or the job's expiration.
    async fn wait_ready(
        &self,
        cluster: &Cluster,
        spec: &ExecutionSpec,
        name: &str,
        progress: &dyn Progress,
    ) -> Result<(), PluginError> {
        let pull_patience = Duration::from_secs(cluster.config.image_pull_timeout_seconds);
        let mut failing_since: Option<Instant> = None;
        let mut watch = PodWatch::new(cluster, &spec.execution_id);
        loop {
            let seen = watch.next(TICK).await?;
            let state = seen.pod.as_ref().map(pod_state);
            let next = match &state {
                Some(PodState::Running | PodState::Exited(_) | PodState::Failed(_)) => Next::Ready,
                Some(PodState::CannotPull { message, retry }) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    progress.report(&format!("pulling {}: {message}", spec.image));
                    if !retry || since.elapsed() >= pull_patience {
                        Next::GiveUp(PluginError::permanent(format!(
                            "the image {} cannot be pulled on cluster {}: {message}",
                            spec.image,
                            cluster.name()
                        )))
                    } else {
                        Next::Wait
                    }
                }
                Some(PodState::CannotStart(message)) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    progress.report(&format!("cannot start: {message}"));
                    if since.elapsed() >= pull_patience {
                        Next::GiveUp(PluginError::permanent(format!(
                            "the container cannot start on cluster {}: {message}",
                            cluster.name()
                        )))
                    } else {
                        Next::Wait
                    }
                }
                Some(PodState::Unschedulable(message)) => {
                    progress.report(&format!("waiting for a node: {message}"));
                    Next::Wait
                }
                Some(PodState::Waiting(why)) => {
                    progress.report(why);
                    Next::Wait
                }
                None => {
                    progress.report("waiting for the Job's pod to be made");
                    Next::Wait
                }
            };
            match next {
                Next::Ready => return Ok(()),
                Next::GiveUp(err) => {
                    cluster.delete(name, Duration::ZERO).await?;
                    return Err(err);
                }
                Next::Wait => {}
            }
            if let Some(expiration) = spec.start_before
                && chrono::Utc::now() > expiration
            {
                cluster.delete(name, Duration::ZERO).await?;
                return Err(PluginError::expired(format!(
                    "the job was to start before {}; its pod had not by then ({})",
                    expiration.to_rfc3339(),
                    state.map_or_else(|| "no pod yet".to_owned(), |s| format!("{s:?}"))
                )));
            }
            if seen.pod.is_none() || seen.deleted {
                // No pod (yet, or any more): the Job says why.
                match cluster.job(name).await? {
                    None => {
                        return Err(PluginError::not_found(format!(
                            "cluster {}: Job {name} was deleted before it ran",
                            cluster.name()
                        )));
                    }
                    Some(job) => {
                        if let Some(err) = failed(cluster, &job) {
                            return Err(err);
                        }
                    }
                }
            }
        }
    }

    /// The newest pod of `handle`'s execution, or `NotFound`.
    async fn pod_name(cluster: &Cluster, handle: &RunHandle) -> Result<String, PluginError> {
        let execution_id = execution_of(handle)?;
        cluster
            .pod(execution_id)
            .await?
            .and_then(|pod| pod.metadata.name)
            .ok_or_else(|| {
                PluginError::not_found(format!(
                    "cluster {}: Job {} has no pod (any more)",
                    cluster.name(),
                    handle.id
                ))
            })
    }
}

/// The execution id in a handle (`fastlane-<execution id>`).
fn execution_of(handle: &RunHandle) -> Result<&str, PluginError> {
    handle
        .id
        .strip_prefix("fastlane-")
        .ok_or_else(|| PluginError::not_found(format!("{:?} is not a fastlane Job", handle.id)))
}

/// What `prepare` does about a pod's state.
enum Next {
    /// Its container runs or ran: prepared.
    Ready,
    /// Wait for the next change.
    Wait,
    /// Give up, deleting the Job.
    GiveUp(PluginError),
}

#[async_trait]
impl Executor for KubernetesExecutor {
    fn name(&self) -> &str {
        crate::KIND
    }

    fn accepts(&self, task_id: &str) -> Result<(), PluginError> {
        if self.clusters.iter().any(|c| c.config.matches(task_id)) {
            Ok(())
        } else {
            Err(PluginError::permanent(format!(
                "no cluster in KUBERNETES_CLUSTERS matches task {task_id:?}"
            )))
        }
    }

    fn pools(&self, task_id: &str) -> Vec<Pool> {
        self.clusters
            .iter()
            .filter(|c| c.config.matches(task_id))
            .map(|c| Pool {
                name: c.name().to_owned(),
                max_running: c.config.max_running,
            })
            .collect()
    }

    fn host_health(&self) -> Vec<HostHealth> {
        self.clusters
            .iter()
            .filter_map(|c| c.circuit.report(c.name()))
            .collect()
    }

    fn share_host_health(&self, shared: &[HostHealth]) {
        for report in shared {
            if let Some(cluster) = self.clusters.iter().find(|c| c.name() == report.host) {
                cluster.circuit.adopt(report);
            }
        }
    }

    fn set_blacklist(&self, hosts: &[String]) {
        *self
            .blacklist
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = hosts.iter().cloned().collect();
    }

    async fn place(&self, spec: &ExecutionSpec) -> Result<Placement, PluginError> {
        let candidates = self.clusters.iter().filter(|c| match &spec.pool {
            Some(pool) => c.name() == pool,
            None => c.config.matches(&spec.task_id),
        });
        let mut why = Vec::new();
        for cluster in candidates {
            if self.blacklisted(cluster.name()) {
                why.push(format!("{} is blacklisted", cluster.name()));
            } else if !cluster.takes_work() {
                let error = cluster.circuit.last_error().unwrap_or_default();
                why.push(format!("{} does not answer ({error})", cluster.name()));
            } else {
                return Ok(Placement {
                    host: cluster.name().to_owned(),
                });
            }
        }
        Err(PluginError::unavailable(if why.is_empty() {
            format!("no cluster matches task {:?}", spec.task_id)
        } else {
            format!("no cluster takes work now: {}", why.join("; "))
        }))
    }

    async fn prepare(
        &self,
        spec: &ExecutionSpec,
        placement: &Placement,
        progress: &dyn Progress,
    ) -> Result<(), PluginError> {
        let cluster = self.cluster(&placement.host)?;
        let job = manifest::job(spec, &cluster.config)?;
        let name = job.metadata.name.clone().unwrap_or_default();
        cluster.create_or_adopt(&job).await?;
        // The Job exists now: a cluster that stops answering must not send
        // the execution elsewhere (it would run twice), so work waits for it.
        self.wait_ready(cluster, spec, &name, progress)
            .await
            .map_err(|err| match err.kind() {
                ErrorKind::Unavailable => PluginError::retryable(err.message()),
                _ => err,
            })
    }

    async fn start(
        &self,
        spec: &ExecutionSpec,
        placement: &Placement,
    ) -> Result<RunHandle, PluginError> {
        // `prepare` made the Job; starting only finds it. Making it again
        // here could run a run that ended (and whose Job was deleted) a
        // second time.
        let cluster = self.cluster(&placement.host)?;
        let name = manifest::job_name(&spec.execution_id)?;
        match cluster.job(&name).await? {
            Some(_) => Ok(RunHandle {
                host: cluster.name().to_owned(),
                id: name,
            }),
            None => Err(PluginError::lost(format!(
                "cluster {}: Job {name} was deleted before its start was recorded",
                cluster.name()
            ))),
        }
    }

    async fn wait(&self, handle: &RunHandle) -> Result<ExitStatus, PluginError> {
        let cluster = self.cluster(&handle.host)?;
        let execution_id = execution_of(handle)?;
        let mut watch = PodWatch::new(cluster, execution_id);
        loop {
            let seen = watch.next(Duration::from_secs(30)).await?;
            match seen.pod.as_ref().map(pod_state) {
                Some(PodState::Exited(exit)) if exit.code == 0 => return Ok(exit),
                Some(PodState::Exited(exit)) => {
                    // Killed at the Job's deadline, the container exits
                    // too: the Job says which it was (or, before the Job
                    // controller wrote it down, its start and deadline).
                    let job = cluster.job(&handle.id).await?;
                    let timed_out = job.as_ref().and_then(|job| {
                        failed(cluster, job)
                            .filter(|err| err.kind() == ErrorKind::TimedOut)
                            .or_else(|| {
                                past_deadline(job, chrono::Utc::now())
                                    .then(|| deadline_error(cluster, job))
                            })
                    });
                    return match timed_out {
                        Some(err) => Err(err),
                        None => Ok(exit),
                    };
                }
                Some(PodState::Failed(why)) => {
                    return Err(PluginError::lost(format!(
                        "cluster {}: the pod of Job {} failed without exiting: {why}",
                        cluster.name(),
                        handle.id
                    )));
                }
                _ => {}
            }
            // No exit seen: the Job says how it ended, if it did.
            let Some(job) = cluster.job(&handle.id).await? else {
                if self.was_stopped(&handle.id) {
                    return Ok(ExitStatus {
                        code: KILLED,
                        error: Some("stopped: its Job was deleted".to_owned()),
                    });
                }
                return Err(PluginError::not_found(format!(
                    "cluster {}: Job {} is gone",
                    cluster.name(),
                    handle.id
                )));
            };
            if let Some(err) = failed(cluster, &job) {
                return Err(err);
            }
            if job_complete(&job) && seen.pod.is_none() {
                // Its pod is gone (garbage-collected with its node), but
                // the Job saw it succeed.
                return Ok(ExitStatus {
                    code: 0,
                    error: Some("its pod is gone; the Job says it succeeded".to_owned()),
                });
            }
            if seen.deleted && job.metadata.deletion_timestamp.is_some() {
                // Deleted by a stop (here or elsewhere) before its exit
                // was written down: a killed run.
                return Ok(ExitStatus {
                    code: KILLED,
                    error: Some("stopped: its Job was deleted".to_owned()),
                });
            }
        }
    }

    async fn output(&self, handle: &RunHandle, limit: u64) -> Result<RunOutput, PluginError> {
        let cluster = self.cluster(&handle.host)?;
        let pod = Self::pod_name(cluster, handle).await?;
        let collector = OutputCollector::with_limit(limit);
        tokio::time::timeout(
            OUTPUT_PATIENCE,
            crate::logs::read(cluster, &pod, false, limit, &collector),
        )
        .await
        .map_err(|_| {
            PluginError::retryable(format!(
                "cluster {}: the log of {pod} was not read within {OUTPUT_PATIENCE:?}",
                cluster.name()
            ))
        })??;
        Ok(collector.into_output())
    }

    async fn follow(&self, handle: &RunHandle, sink: &dyn LogSink) -> Result<(), PluginError> {
        let cluster = self.cluster(&handle.host)?;
        let pod = Self::pod_name(cluster, handle).await?;
        crate::logs::read(cluster, &pod, true, u64::MAX, sink).await
    }

    async fn stop(&self, handle: &RunHandle, grace: Duration) -> Result<(), PluginError> {
        let cluster = self.cluster(&handle.host)?;
        {
            let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
            stopped.retain(|_, at| at.elapsed() < Duration::from_secs(3600));
            stopped.insert(handle.id.clone(), Instant::now());
        }
        cluster.delete(&handle.id, grace).await?;
        tracing::info!(cluster = cluster.name(), job = %handle.id, "job stopped");
        Ok(())
    }

    /// The result is stored: the Job (with its pod and log) goes.
    /// `ttlSecondsAfterFinished` is the backstop for Jobs whose result
    /// never was.
    async fn release(&self, handle: &RunHandle) -> Result<(), PluginError> {
        self.stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&handle.id);
        let cluster = self.cluster(&handle.host)?;
        cluster.delete_job(&handle.id).await
    }

    async fn abandon(
        &self,
        spec: &ExecutionSpec,
        placement: &Placement,
    ) -> Result<(), PluginError> {
        let cluster = self.cluster(&placement.host)?;
        let name = manifest::job_name(&spec.execution_id)?;
        cluster.delete(&name, Duration::ZERO).await?;
        tracing::info!(cluster = cluster.name(), job = %name, "job abandoned before it started");
        Ok(())
    }

    async fn status(&self) -> ExecutorStatus {
        let mut status = ExecutorStatus::default();
        for cluster in &self.clusters {
            let (running, error) = match running_jobs(cluster).await {
                Ok(running) => (running, None),
                Err(err) => (Vec::new(), Some(err.message().to_owned())),
            };
            status.hosts.push(HostStatus {
                host: cluster.name().to_owned(),
                farm: cluster.config.pattern.clone(),
                available: error.is_none() && cluster.takes_work(),
                blacklisted: self.blacklisted(cluster.name()),
                circuit: cluster.circuit.state().as_str().to_owned(),
                error: error.or_else(|| cluster.circuit.last_error()),
                running: running.len() as u64,
            });
            status.running.extend(running);
        }
        status
    }
}

/// The error a failed Job ends its execution with when no exit of its
/// container was seen: `TimedOut` past its deadline, else `Lost` (its pod
/// went without exiting: evicted, its node lost), which the job's retries
/// may run again.
fn failed(cluster: &Cluster, job: &k8s_openapi::api::batch::v1::Job) -> Option<PluginError> {
    let (reason, message) = job_failure(job)?;
    Some(if reason == "DeadlineExceeded" {
        deadline_error(cluster, job)
    } else {
        PluginError::lost(format!(
            "cluster {}: the Job failed without its container's exit: {reason}: {message}",
            cluster.name()
        ))
    })
}

/// `job` ran past its `activeDeadlineSeconds`.
fn deadline_error(cluster: &Cluster, job: &k8s_openapi::api::batch::v1::Job) -> PluginError {
    let deadline = job.spec.as_ref().and_then(|s| s.active_deadline_seconds);
    PluginError::timed_out(format!(
        "Job execution timed out after {} seconds (the Job's activeDeadlineSeconds on cluster {}).",
        deadline.unwrap_or_default(),
        cluster.name()
    ))
}

/// fastlane's Jobs with a pod running on `cluster` (found by their label,
/// so runs started before a restart count too).
async fn running_jobs(cluster: &Cluster) -> Result<Vec<RunningContainer>, PluginError> {
    let connected = cluster.connect().await?;
    cluster
        .call(
            "asking the API server its version",
            connected.client.apiserver_version(),
        )
        .await?;
    let jobs = cluster
        .call(
            "listing fastlane's Jobs",
            connected
                .jobs()
                .list(&ListParams::default().labels(EXECUTION_LABEL)),
        )
        .await?;
    Ok(jobs
        .items
        .into_iter()
        .filter(|job| job.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0)
        .map(|job| RunningContainer {
            host: cluster.name().to_owned(),
            execution_id: job
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(EXECUTION_LABEL))
                .cloned(),
            id: job.metadata.name.unwrap_or_default(),
        })
        .collect())
}
