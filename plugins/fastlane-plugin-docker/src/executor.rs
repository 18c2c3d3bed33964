//! [`DockerExecutor`]: the [`Executor`] on a pool of Docker API hosts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::models::ContainerStateStatusEnum;
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    RenameContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use regex::Regex;
use tracing::{debug, info, warn};

use fastlane_sdk::{
    ExecutionSpec, Executor, ExecutorStatus, ExitStatus, HostHealth, HostStatus, LogSink,
    LogStream, NoProgress, OutputCollector, Placement, PluginError, Pool, Progress, Resources,
    RunHandle, RunOutput, RunningContainer,
};

use crate::addr::HostAddr;
use crate::circuit::{CircuitSettings, CircuitState};
use crate::config::DockerExecutorConfig;
use crate::container::check_resources;
use crate::errors::{classify, lost_if_given_up, name_in_use};
use crate::host::Host;
use crate::image::{make_ready, pull_if_allowed};

/// Prefix of the name of every container fastlane starts.
pub const CONTAINER_PREFIX: &str = "fastlane-job-";
/// Prefix a container gets once its result is stored.
pub const DEFUNCT_PREFIX: &str = "defunct-";
/// How long `status` waits for each host.
const STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Label carrying the execution id; fastlane only ever lists containers
/// that have it (the engine may serve others too).
pub const LABEL_EXECUTION: &str = "fastlane.execution";
/// Label carrying the job id.
pub const LABEL_JOB: &str = "fastlane.job";
/// Label carrying the task id.
pub const LABEL_TASK: &str = "fastlane.task";

#[derive(Debug)]
pub(crate) struct FarmHosts {
    pub(crate) pattern: String,
    matcher: Regex,
    hosts: Vec<usize>,
    max_running: u32,
    fallthrough: bool,
    pub(crate) cpu_limit: Option<f64>,
    pub(crate) memory_limit: Option<u64>,
    /// Its place in `DOCKER_HOSTS`, for messages.
    pub(crate) index: usize,
    /// Its settings as configured (limits and hardening).
    pub(crate) config: crate::config::Farm,
}

/// Runs executions as containers on the configured farms.
#[derive(Debug)]
pub struct DockerExecutor {
    farms: Vec<FarmHosts>,
    pub(crate) hosts: Vec<Host>,
    /// Hosts an operator took out of rotation.
    blacklist: std::sync::RwLock<std::collections::BTreeSet<String>>,
    /// Turns through hosts that tie for the least load.
    rotation: std::sync::atomic::AtomicUsize,
    /// `PIDS_LIMIT`: the engine's pids limit per container; 0 sets none.
    pub(crate) pids_limit: u64,
}

/// The name a farm's pool goes by.
fn pool_name(farm: &FarmHosts) -> String {
    format!("farm {:?}", farm.pattern)
}

impl DockerExecutor {
    /// Hands the container's logs, from the first byte, to `sink`: both
    /// streams, or `only` one; with `follow`, keeps reading until the
    /// container's output ends. Stops reading (dropping the engine's
    /// stream) once the sink wants none of the streams read, so what the
    /// server holds grows with its caps, not with the output.
    async fn read_logs(
        &self,
        handle: &RunHandle,
        follow: bool,
        only: Option<LogStream>,
        sink: &dyn LogSink,
    ) -> Result<(), PluginError> {
        use bollard::container::LogOutput;
        let streams: Vec<LogStream> = [LogStream::Stdout, LogStream::Stderr]
            .into_iter()
            .filter(|&s| only.is_none_or(|o| o == s) && sink.wants(s))
            .collect();
        if streams.is_empty() {
            return Ok(());
        }
        let host = self.host(&handle.host)?;
        let docker = host.client().await?;
        let options = LogsOptions {
            stdout: streams.contains(&LogStream::Stdout),
            stderr: streams.contains(&LogStream::Stderr),
            follow,
            tail: "all".to_owned(),
            ..Default::default()
        };
        let mut logs = docker.logs(&handle.id, Some(options));
        while let Some(frame) = logs.next().await {
            match frame.map_err(|e| classify(host, "reading the logs", e))? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    sink.write(LogStream::Stdout, &message).await
                }
                LogOutput::StdErr { message } => sink.write(LogStream::Stderr, &message).await,
                LogOutput::StdIn { .. } => {}
            }
            if !streams.iter().any(|&s| sink.wants(s)) {
                debug!(container = %handle.id, "the logs are not wanted any more; stopped reading");
                break;
            }
        }
        Ok(())
    }

    /// An executor for `config`; no host is contacted until work arrives.
    pub fn new(config: DockerExecutorConfig) -> Result<Self, PluginError> {
        let circuit = CircuitSettings {
            max_fails: config.circuit_breaker.max_fails,
            reset_timeout: Duration::from_secs(config.circuit_breaker.reset_timeout_seconds),
        };
        let mut hosts: Vec<Host> = Vec::new();
        let mut farms = Vec::new();
        for (index, farm) in config.farms.iter().enumerate() {
            let matcher = Regex::new(&format!("^(?:{})", farm.pattern))
                .map_err(|e| PluginError::invalid_config(format!("DOCKER_HOSTS match: {e}")))?;
            let mut indexes = Vec::new();
            for name in &farm.hosts {
                let index = match hosts.iter().position(|h| &h.name == name) {
                    Some(i) => i,
                    None => {
                        let addr = HostAddr::parse(name).map_err(PluginError::invalid_config)?;
                        let tls = if addr.uses_tls(config.tls.verify) {
                            Some(config.tls.files()?)
                        } else {
                            None
                        };
                        hosts.push(Host::new(
                            name,
                            addr,
                            tls,
                            config.request_timeout_seconds,
                            circuit,
                        ));
                        hosts.len() - 1
                    }
                };
                indexes.push(index);
            }
            farms.push(FarmHosts {
                pattern: farm.pattern.clone(),
                matcher,
                hosts: indexes,
                max_running: farm.max_running,
                fallthrough: farm.fallthrough,
                cpu_limit: farm.cpu_limit,
                memory_limit: farm.memory_limit,
                index,
                config: farm.clone(),
            });
        }
        Ok(Self {
            farms,
            hosts,
            blacklist: Default::default(),
            rotation: Default::default(),
            pids_limit: config.pids_limit,
        })
    }

    /// True when some host of `farm` is in rotation with its circuit not
    /// open.
    fn has_host_to_offer(&self, farm: &FarmHosts) -> bool {
        farm.hosts.iter().any(|&i| {
            let host = &self.hosts[i];
            !self.blacklisted(&host.name) && host.circuit.state() != CircuitState::Open
        })
    }

    fn host(&self, name: &str) -> Result<&Host, PluginError> {
        self.hosts.iter().find(|h| h.name == name).ok_or_else(|| {
            PluginError::not_found(format!("docker host {name} is no longer configured"))
        })
    }

    fn blacklisted(&self, host: &str) -> bool {
        self.blacklist
            .read()
            .map(|b| b.contains(host))
            .unwrap_or(false)
    }

    /// The first farm whose pattern matches the start of `task_id`.
    fn farm_for(&self, task_id: &str) -> Result<&FarmHosts, PluginError> {
        self.farms
            .iter()
            .find(|f| f.matcher.is_match(task_id))
            .ok_or_else(|| {
                PluginError::permanent(format!(
                    "no docker farm matches task id {task_id:?} (farms match: {})",
                    self.farms
                        .iter()
                        .map(|f| format!("{:?}", f.pattern))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The farms that may run `task_id`: the first whose pattern matches,
    /// and while a farm lets work fall through, the next matching ones.
    fn farm_chain(&self, task_id: &str) -> Vec<&FarmHosts> {
        let mut chain = Vec::new();
        for farm in self.farms.iter().filter(|f| f.matcher.is_match(task_id)) {
            chain.push(farm);
            if !farm.fallthrough {
                break;
            }
        }
        chain
    }

    /// The farm an execution goes to: the pool it was admitted to, else
    /// the first farm matching its task.
    fn farm_of(&self, spec: &ExecutionSpec) -> Result<&FarmHosts, PluginError> {
        match &spec.pool {
            Some(pool) => self
                .farms
                .iter()
                .find(|farm| pool_name(farm) == *pool)
                .ok_or_else(|| {
                    PluginError::permanent(format!("no docker farm is called {pool:?}"))
                }),
            None => self.farm_for(&spec.task_id),
        }
    }

    /// Inspects a container. Podman briefly reports a container that is
    /// exiting as `stopped`, a state bollard's model does not know; such an
    /// answer is asked again until the container settles.
    async fn inspect(
        &self,
        host: &Host,
        id: &str,
        what: &str,
    ) -> Result<bollard::models::ContainerInspectResponse, PluginError> {
        let docker = host.client().await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
            {
                Ok(inspect) => return Ok(inspect),
                Err(e) if attempt < 100 && e.to_string().contains("unknown variant `stopped`") => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(classify(host, what, e)),
            }
        }
    }

    /// The fastlane containers on `host` (running ones unless `all`). The
    /// running ones of a host whose circuit is closed come from its event
    /// stream while that is up (no engine call; see `events`); a host
    /// given up on is listed, which is how it is found answering again.
    async fn list(&self, host: &Host, all: bool) -> Result<Vec<RunningContainer>, PluginError> {
        let docker = host.client().await?;
        host.watch_events(docker);
        let trusted = !all && host.circuit.state() == CircuitState::Closed;
        if let (true, Some(running)) = (trusted, host.events.running()) {
            return Ok(running
                .into_iter()
                .map(|(id, execution)| RunningContainer {
                    host: host.name.clone(),
                    id,
                    execution_id: Some(execution),
                })
                .collect());
        }
        let mut filters = HashMap::from([("label".to_owned(), vec![LABEL_EXECUTION.to_owned()])]);
        if !all {
            // Said outright, not only by `all: false`: Podman then skips the
            // finished containers before it reads labels, which keeps a
            // listing fast on a host with hundreds of defunct containers
            // (0.3 s against 3 to 5 s with 750 of them, measured here).
            filters.insert("status".to_owned(), vec!["running".to_owned()]);
        }
        let options = ListContainersOptions {
            all,
            filters: Some(filters),
            ..Default::default()
        };
        // Under load a listing can fail without the host being down: Podman
        // answers 500 when a container vanishes mid-listing, and a busy
        // socket can refuse a connection. Try again before calling the host
        // unavailable.
        let mut attempt = 0;
        let containers = loop {
            attempt += 1;
            match docker.list_containers(Some(options.clone())).await {
                Ok(containers) => {
                    host.answered();
                    break containers;
                }
                Err(e)
                    if attempt < 3
                        && !matches!(&e, DockerError::DockerResponseServerError { status_code, .. } if *status_code < 500) =>
                {
                    debug!(host = %host.name, error = %e, "listing containers failed; again");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(classify(host, "listing containers", e)),
            }
        };
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                Some(RunningContainer {
                    host: host.name.clone(),
                    execution_id: c
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(LABEL_EXECUTION).cloned()),
                    id: c.id?,
                })
            })
            .collect())
    }

    /// Finds the container of `execution_id` by name, starting it if it was
    /// created but never started.
    async fn adopt(&self, host: &Host, spec: &ExecutionSpec) -> Result<RunHandle, PluginError> {
        let name = format!("{CONTAINER_PREFIX}{}", spec.execution_id);
        let inspect = self
            .inspect(host, &name, "inspecting an existing container")
            .await?;
        let id = inspect.id.unwrap_or(name);
        let status = inspect.state.and_then(|s| s.status);
        info!(host = %host.name, container = %id, ?status, "adopting existing container");
        let handle = RunHandle {
            host: host.name.clone(),
            id,
        };
        if status == Some(ContainerStateStatusEnum::CREATED) {
            self.start_container(host, &handle).await?;
        }
        Ok(handle)
    }

    async fn start_container(&self, host: &Host, handle: &RunHandle) -> Result<(), PluginError> {
        let docker = host.client().await?;
        match docker.start_container(&handle.id, None).await {
            Ok(()) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code,
                message,
            }) if status_code < 500
                || message.contains("OCI")
                || message.contains("executable") =>
            {
                // A command the image lacks: Podman answers 500 with an OCI
                // runtime error, Docker 400. Either way it will never start.
                Err(PluginError::permanent(format!(
                    "the container could not start on {}: {message}",
                    host.name
                )))
            }
            Err(e) => Err(classify(host, "starting the container", e)),
        }
    }
}

#[async_trait]
impl Executor for DockerExecutor {
    fn name(&self) -> &str {
        crate::KIND
    }

    fn accepts(&self, task_id: &str) -> Result<(), PluginError> {
        self.farm_for(task_id).map(|_| ())
    }

    fn accepts_resources(&self, task_id: &str, resources: &Resources) -> Result<(), PluginError> {
        // Every farm the job may be placed on must allow what it asks.
        for farm in self.farm_chain(task_id) {
            check_resources(farm, resources.cpu_limit, resources.memory_limit)?;
        }
        Ok(())
    }

    fn pools(&self, task_id: &str) -> Vec<Pool> {
        // The first matching farm; while a farm lets work fall through, the
        // next matching one too. A farm with no host to offer (every host
        // blacklisted or its circuit open) is skipped when there is a next.
        let candidates = self.farm_chain(task_id);
        let offering: Vec<&&FarmHosts> = candidates
            .iter()
            .filter(|farm| self.has_host_to_offer(farm))
            .collect();
        let chosen: Vec<&FarmHosts> = if offering.is_empty() {
            // Every candidate is down: wait for the preferred one.
            candidates.into_iter().take(1).collect()
        } else {
            offering.into_iter().copied().collect()
        };
        chosen
            .into_iter()
            .map(|farm| Pool {
                name: pool_name(farm),
                max_running: farm.max_running,
            })
            .collect()
    }

    fn host_health(&self) -> Vec<HostHealth> {
        self.hosts
            .iter()
            .filter_map(|host| host.circuit.report(&host.name))
            .collect()
    }

    fn share_host_health(&self, shared: &[HostHealth]) {
        for health in shared {
            if let Some(host) = self.hosts.iter().find(|h| h.name == health.host) {
                host.circuit.adopt(health);
            }
        }
    }

    fn set_blacklist(&self, hosts: &[String]) {
        if let Ok(mut blacklist) = self.blacklist.write() {
            *blacklist = hosts.iter().cloned().collect();
        }
    }

    async fn place(&self, spec: &ExecutionSpec) -> Result<Placement, PluginError> {
        let farm = self.farm_of(spec)?;
        let in_rotation: Vec<usize> = farm
            .hosts
            .iter()
            .copied()
            .filter(|&i| !self.blacklisted(&self.hosts[i].name))
            .collect();
        if in_rotation.is_empty() {
            // Not a failure: the job waits until a host is back in rotation.
            return Err(PluginError::unavailable(format!(
                "every host of farm {:?} is blacklisted",
                farm.pattern
            )));
        }
        let open: Vec<usize> = in_rotation
            .iter()
            .copied()
            .filter(|&i| self.hosts[i].circuit.state() != CircuitState::Open)
            .collect();
        if open.is_empty() {
            // Not a failure either: the job waits for a host to come back.
            let why: Vec<String> = in_rotation
                .iter()
                .map(|&i| {
                    let host = &self.hosts[i];
                    format!(
                        "{} ({})",
                        host.name,
                        host.circuit.last_error().unwrap_or_default()
                    )
                })
                .collect();
            return Err(PluginError::unavailable(format!(
                "every host of farm {:?} is down (circuit open): {}",
                farm.pattern,
                why.join("; ")
            )));
        }
        if let [only] = open.as_slice()
            && self.hosts[*only].circuit.state() == CircuitState::Closed
        {
            // Nothing to choose between: whether the host answers shows in
            // `prepare`, which sends work back to the queue if it does not.
            return Ok(Placement {
                host: self.hosts[*only].name.clone(),
            });
        }
        // Only hosts whose last listing is too old to count are listed, all
        // at once: a listing takes the engine a while under load.
        let stale: Vec<usize> = open
            .iter()
            .copied()
            .filter(|&i| self.hosts[i].load.current(Instant::now()).is_none())
            .collect();
        let listings = futures_util::future::join_all(
            stale
                .iter()
                .map(|&index| self.list(&self.hosts[index], false)),
        )
        .await;
        let mut last_error = None;
        for (&index, listing) in stale.iter().zip(listings) {
            let host = &self.hosts[index];
            match listing {
                Ok(running) => host.load.listed(running.len(), Instant::now()),
                Err(err) => {
                    warn!(host = %host.name, error = %err, "docker host unavailable for placement");
                    last_error = Some(err);
                }
            }
        }
        let now = Instant::now();
        let loads: Vec<(usize, &Host)> = open
            .iter()
            .filter_map(|&i| {
                let host = &self.hosts[i];
                host.load.current(now).map(|running| (running, host))
            })
            .collect();
        // The least loaded; hosts that tie take turns, so that an idle farm
        // spreads its work instead of sending it all to the first host.
        let least = loads.iter().map(|(n, _)| *n).min();
        let tied: Vec<&Host> = loads
            .iter()
            .filter(|(n, _)| Some(*n) == least)
            .map(|(_, host)| *host)
            .collect();
        let best = (!tied.is_empty()).then(|| {
            let turn = self
                .rotation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tied[turn % tied.len()]
        });
        match best {
            Some(host) => {
                host.load.placed();
                Ok(Placement {
                    host: host.name.clone(),
                })
            }
            None => Err(PluginError::unavailable(format!(
                "no host of farm {:?} is reachable: {}",
                farm.pattern,
                last_error.map_or_else(String::new, |e| e.to_string())
            ))),
        }
    }

    async fn prepare(
        &self,
        spec: &ExecutionSpec,
        placement: &Placement,
        progress: &dyn Progress,
    ) -> Result<(), PluginError> {
        let host = self.host(&placement.host)?;
        let farm = &self.farm_of(spec)?.config;
        make_ready(host, &spec.image, farm, spec.pull_policy, progress).await
    }

    async fn start(
        &self,
        spec: &ExecutionSpec,
        placement: &Placement,
    ) -> Result<RunHandle, PluginError> {
        let host = self.host(&placement.host)?;
        let docker = host.client().await?;
        let name = format!("{CONTAINER_PREFIX}{}", spec.execution_id);
        let farm = self.farm_of(spec)?;
        // A job stored before the farm's maximums were configured is held
        // to them all the same.
        check_resources(farm, spec.cpu_limit, spec.memory_limit)?;
        let body = self.container_body(spec, farm);
        let options = CreateContainerOptions {
            name: Some(name),
            ..Default::default()
        };
        let created = match docker
            .create_container(Some(options.clone()), body.clone())
            .await
        {
            Ok(created) => created,
            Err(e) if name_in_use(&e) => return self.adopt(host, spec).await,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                // The image `prepare` took on trust is gone: pull it again.
                host.saw_image(&spec.image, false);
                let policy = farm.config.pull_policy_for(spec.pull_policy);
                pull_if_allowed(host, &spec.image, &farm.config, policy, &NoProgress).await?;
                host.saw_image(&spec.image, true);
                match docker.create_container(Some(options), body).await {
                    Ok(created) => created,
                    Err(e) if name_in_use(&e) => return self.adopt(host, spec).await,
                    Err(e) => return Err(classify(host, "creating the container", e)),
                }
            }
            Err(e) => return Err(classify(host, "creating the container", e)),
        };
        let handle = RunHandle {
            host: host.name.clone(),
            id: created.id,
        };
        // Listening before it starts, so that even a quick exit is heard.
        host.watch_events(docker);
        self.start_container(host, &handle).await?;
        debug!(host = %host.name, container = %handle.id, "container started");
        Ok(handle)
    }

    async fn wait(&self, handle: &RunHandle) -> Result<ExitStatus, PluginError> {
        let host = self.host(&handle.host)?;
        let docker = host.client().await?;
        host.watch_events(docker);
        let exit = host.events.interest(&handle.id);
        loop {
            let options = WaitContainerOptions {
                condition: "not-running".to_owned(),
            };
            let mut waiting = docker.wait_container(&handle.id, Some(options));
            // Whichever says it first: the engine's `wait`, or its event
            // stream (sooner on Podman; see `events`). Either way the state
            // is read from inspect below.
            let answer = tokio::select! {
                answer = waiting.next() => answer,
                () = exit.exited() => None,
            };
            // A `wait` left open holds Podman's answers to inspect back.
            drop(waiting);
            // bollard reports a non-zero exit as an error value; the exit code
            // is read from inspect below either way, so both mean "it stopped".
            match answer {
                Some(Ok(_)) | Some(Err(DockerError::DockerContainerWaitError { .. })) | None => {}
                Some(Err(e)) => {
                    return Err(lost_if_given_up(
                        host,
                        classify(host, "waiting for the container", e),
                    ));
                }
            }
            let inspect = self
                .inspect(host, &handle.id, "inspecting the container")
                .await
                .map_err(|e| lost_if_given_up(host, e))?;
            let state = inspect.state.unwrap_or_default();
            match state.status {
                Some(ContainerStateStatusEnum::RUNNING)
                | Some(ContainerStateStatusEnum::RESTARTING)
                | Some(ContainerStateStatusEnum::PAUSED) => continue,
                Some(ContainerStateStatusEnum::CREATED) => {
                    return Err(PluginError::permanent(format!(
                        "container {} on {} was created but never started",
                        handle.id, handle.host
                    )));
                }
                _ => {
                    host.load.ended();
                    return Ok(ExitStatus {
                        code: state.exit_code.unwrap_or(-1),
                        error: state.error.filter(|e| !e.is_empty()),
                    });
                }
            }
        }
    }

    async fn output(&self, handle: &RunHandle, limit: u64) -> Result<RunOutput, PluginError> {
        // One stream at a time, each read only up to the limit: reading
        // both at once would have to go on through a long stdout to reach
        // the stderr written after it.
        let kept = OutputCollector::with_limit(limit);
        self.read_logs(handle, false, Some(LogStream::Stdout), &kept)
            .await?;
        self.read_logs(handle, false, Some(LogStream::Stderr), &kept)
            .await?;
        Ok(kept.into_output())
    }

    async fn follow(&self, handle: &RunHandle, sink: &dyn LogSink) -> Result<(), PluginError> {
        self.read_logs(handle, true, None, sink).await
    }

    async fn stop(&self, handle: &RunHandle, grace: Duration) -> Result<(), PluginError> {
        let host = self.host(&handle.host)?;
        let docker = host.client().await?;
        let options = StopContainerOptions {
            t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        match docker.stop_container(&handle.id, Some(options)).await {
            Ok(())
            | Err(DockerError::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            Err(e) => Err(classify(host, "stopping the container", e)),
        }
    }

    async fn release(&self, handle: &RunHandle) -> Result<(), PluginError> {
        let host = self.host(&handle.host)?;
        let docker = host.client().await?;
        let inspect = match self
            .inspect(host, &handle.id, "inspecting the container")
            .await
        {
            Ok(inspect) => inspect,
            Err(e) if e.kind() == fastlane_sdk::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let name = inspect.name.unwrap_or_default();
        let name = name.trim_start_matches('/');
        if !name.starts_with(CONTAINER_PREFIX) {
            return Ok(()); // already renamed
        }
        let options = RenameContainerOptions {
            name: format!("{DEFUNCT_PREFIX}{name}"),
        };
        docker
            .rename_container(&handle.id, options)
            .await
            .map_err(|e| classify(host, "renaming the container", e))
    }

    async fn status(&self) -> ExecutorStatus {
        // Every host at once, each given a few seconds: a slow or hung engine
        // shows as unavailable instead of holding up /status and /metrics.
        let pairs: Vec<(&FarmHosts, &Host)> = self
            .farms
            .iter()
            .flat_map(|farm| farm.hosts.iter().map(move |&i| (farm, &self.hosts[i])))
            .collect();
        // A ping says whether the engine answers now: the running
        // containers may come from its event stream, which does not.
        let listings = futures_util::future::join_all(pairs.iter().map(|(_, host)| {
            tokio::time::timeout(STATUS_TIMEOUT, async {
                let docker = host.client().await?;
                docker
                    .ping()
                    .await
                    .map_err(|e| classify(host, "pinging the engine", e))?;
                host.answered();
                self.list(host, false).await
            })
        }))
        .await;
        let mut status = ExecutorStatus::default();
        for ((farm, host), listed) in pairs.into_iter().zip(listings) {
            let (available, error, running) = match listed {
                Ok(Ok(running)) => {
                    host.load.listed(running.len(), Instant::now());
                    (true, None, running)
                }
                Ok(Err(err)) => (false, Some(err.to_string()), Vec::new()),
                Err(_) => (
                    false,
                    Some(format!("no answer within {} s", STATUS_TIMEOUT.as_secs())),
                    Vec::new(),
                ),
            };
            let blacklisted = self.blacklisted(&host.name);
            let circuit = host.circuit.state();
            let (available, error) = if blacklisted {
                (false, Some("server is blacklisted".to_owned()))
            } else if circuit != CircuitState::Closed {
                (false, error.or_else(|| host.circuit.last_error()))
            } else {
                (available, error)
            };
            status.hosts.push(HostStatus {
                host: host.name.clone(),
                farm: farm.pattern.clone(),
                available,
                blacklisted,
                circuit: circuit.as_str().to_owned(),
                error,
                running: running.len() as u64,
            });
            if !status.running.iter().any(|r| r.host == host.name) {
                status.running.extend(running);
            }
        }
        status
    }
}
