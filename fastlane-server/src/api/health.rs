//! `GET /healthcheck` (and `/`): can fastlane reach its store and queue?
//! `GET /status`: hosts, running containers, queue lengths and counts.

use chrono::{DateTime, Utc};
use poem::Request;
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    payload::{Json, PlainText},
};

use fastlane_sdk::{HostStatus, RunningContainer};

use super::ApiTags;
use super::error::ApiError;
use super::views::{Link, cron_of, job_metadata};
use crate::services::Services;

/// How many scheduled jobs `/status` lists (the soonest); it counts them all.
const SCHEDULED_SHOWN: u64 = 100;

/// One failed check.
#[derive(Debug, Object)]
pub struct HealthError {
    /// `store` or `queue`.
    pub source: String,
    /// What failed.
    pub message: String,
}

/// Health of the store and the queue.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Health {
    /// True when the store answered.
    pub store: bool,
    /// True when the queue answered.
    pub queue: bool,
    /// What failed, if anything.
    pub errors: Vec<HealthError>,
}

impl poem_openapi::types::Example for Health {
    fn example() -> Self {
        Self {
            store: true,
            queue: true,
            errors: Vec::new(),
        }
    }
}

/// The health check's answer.
#[derive(Debug, ApiResponse)]
pub enum HealthResponse {
    /// Store and queue answer.
    #[oai(status = 200)]
    Healthy(Json<Health>),
    /// Something failed; `errors` says what.
    #[oai(status = 500)]
    Unhealthy(Json<Health>),
}

/// A queue's length.
#[derive(Debug, Object)]
pub struct QueueLength {
    /// Messages waiting or in progress.
    pub length: u64,
}

/// Running containers.
#[derive(Debug, Object)]
pub struct Containers {
    /// Every fastlane container running on a reachable host.
    pub running: Vec<RunningView>,
}

/// A running container.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct RunningView {
    /// The host.
    pub host: String,
    /// The container id.
    pub id: String,
    /// The execution it runs.
    #[oai(nullable)]
    pub execution_id: Option<String>,
}

/// A Docker host.
#[derive(Debug, Object)]
pub struct HostView {
    /// The host as configured.
    pub host: String,
    /// The `match` pattern of its farm.
    pub farm: String,
    /// True when it answers and takes work.
    pub available: bool,
    /// True when taken out of rotation.
    pub blacklisted: bool,
    /// `closed`, `open` or `half-open`.
    pub circuit: String,
    /// Why it is unavailable.
    #[oai(nullable)]
    pub error: Option<String>,
    /// Executions running there.
    pub running: u64,
}

/// A count.
#[derive(Debug, Object)]
pub struct Count {
    /// How many.
    pub count: u64,
}

/// A job waiting for its next scheduled firing.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct ScheduledJob {
    /// The job id.
    pub job_id: String,
    /// The job's URL.
    pub url: String,
    /// POST here to stop the job for good.
    pub stop_url: String,
    /// The task.
    pub task: Link,
    /// The cron expression, for cron jobs.
    #[oai(nullable)]
    pub cron: Option<String>,
    /// The cron expression's time zone, when not UTC.
    #[oai(nullable)]
    pub cron_timezone: Option<String>,
    /// When it fires next.
    pub next_scheduled_at: DateTime<Utc>,
    /// The image it runs.
    pub image: String,
    /// The command it runs.
    pub command: String,
    /// The job's metadata, secret env values masked.
    pub metadata: serde_json::Value,
}

/// Job counts.
#[derive(Debug, Object)]
pub struct JobCounts {
    /// How many jobs exist.
    pub count: u64,
    /// The 100 jobs that fire soonest (delayed and cron), soonest first.
    pub scheduled: Vec<ScheduledJob>,
    /// How many jobs will fire again in all.
    #[oai(rename = "scheduledCount")]
    pub scheduled_count: u64,
}

/// The server itself.
#[derive(Debug, Object)]
pub struct About {
    /// fastlane's version.
    pub version: String,
    /// The executors in use (`docker`, and any a plugin library added), comma-separated.
    pub executor: String,
}

/// `GET /status`.
#[derive(Debug, Object)]
pub struct Status {
    /// Every configured host, available ones first.
    pub hosts: Vec<HostView>,
    /// Running containers.
    pub containers: Containers,
    /// Queue lengths by queue name.
    pub queues: std::collections::BTreeMap<String, QueueLength>,
    /// Task count.
    pub tasks: Count,
    /// Job count.
    pub jobs: JobCounts,
    /// Version and executor.
    pub fastlane: About,
    /// The plugin libraries `PLUGINS` names, loaded or refused.
    pub plugins: Vec<PluginLibraryView>,
    /// Every concurrency limit in use: how many executions hold a slot and
    /// how many wait for one.
    pub limits: Vec<LimitView>,
}

/// One concurrency limit, as `/status` shows it.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct LimitView {
    /// `pool:<executor>:<pool>` (a farm's `maxRunning`), `task:<task id>`,
    /// `key:<concurrency key>` or `taskkey:<task id>/<concurrency key>`.
    pub gate: String,
    /// Executions holding a slot (placed, starting or running).
    pub running: u64,
    /// Executions waiting in line for a slot.
    pub waiting: u64,
    /// When the longest waiting of them first asked.
    #[oai(nullable)]
    pub oldest_waiting_since: Option<chrono::DateTime<chrono::Utc>>,
    /// Paused: nothing passes it until it is resumed.
    pub paused: bool,
}

/// A `PLUGINS` library, as `/status` shows it.
#[derive(Debug, Object)]
pub struct PluginLibraryView {
    /// The library file.
    pub path: String,
    /// True when it was loaded.
    pub loaded: bool,
    /// What it registered, such as `executor local`.
    pub registered: Vec<String>,
    /// Why it was refused.
    pub error: Option<String>,
}

impl From<&crate::plugins::LibraryStatus> for PluginLibraryView {
    fn from(library: &crate::plugins::LibraryStatus) -> Self {
        Self {
            path: library.library.path.display().to_string(),
            loaded: library.error.is_none(),
            registered: library
                .registered
                .iter()
                .map(|(what, kind)| format!("{what} {kind}"))
                .collect(),
            error: library.error.clone(),
        }
    }
}

impl From<HostStatus> for HostView {
    fn from(h: HostStatus) -> Self {
        Self {
            host: h.host,
            farm: h.farm,
            available: h.available,
            blacklisted: h.blacklisted,
            circuit: h.circuit,
            error: h.error,
            running: h.running,
        }
    }
}

impl From<RunningContainer> for RunningView {
    fn from(c: RunningContainer) -> Self {
        Self {
            host: c.host,
            id: c.id,
            execution_id: c.execution_id,
        }
    }
}

/// Health and status routes.
#[derive(Debug)]
pub struct HealthApi;

async fn check(services: &Services) -> HealthResponse {
    let mut errors = Vec::new();
    if let Err(err) = services.store.ping().await {
        errors.push(HealthError {
            source: "store".to_owned(),
            message: err.to_string(),
        });
    }
    if let Err(err) = services.queue.ping().await {
        errors.push(HealthError {
            source: "queue".to_owned(),
            message: err.to_string(),
        });
    }
    let health = Health {
        store: !errors.iter().any(|e| e.source == "store"),
        queue: !errors.iter().any(|e| e.source == "queue"),
        errors,
    };
    if health.errors.is_empty() {
        HealthResponse::Healthy(Json(health))
    } else {
        HealthResponse::Unhealthy(Json(health))
    }
}

#[OpenApi]
impl HealthApi {
    /// Health check
    ///
    /// 200 when the store and the queue answer, 500 (with `errors`) when not.
    #[oai(
        path = "/healthcheck",
        method = "get",
        operation_id = "healthcheck",
        tag = "ApiTags::Health"
    )]
    async fn healthcheck(&self, services: Data<&Services>) -> HealthResponse {
        check(&services).await
    }

    /// Health check (root)
    ///
    /// The same as `/healthcheck`.
    #[oai(
        path = "/",
        method = "get",
        operation_id = "root",
        tag = "ApiTags::Health"
    )]
    async fn root(&self, services: Data<&Services>) -> HealthResponse {
        check(&services).await
    }

    /// Metrics
    ///
    /// Every `fastlane_…` metric in the Prometheus text format (see the
    /// README for the list).
    #[oai(
        path = "/metrics",
        method = "get",
        operation_id = "metrics",
        tag = "ApiTags::Health"
    )]
    async fn metrics(
        &self,
        services: Data<&Services>,
        live: Data<&super::logs::LiveLogs>,
    ) -> Result<PlainText<String>, ApiError> {
        const OP: &str = "metrics";
        let metrics = &services.metrics;
        let lengths = services
            .queue
            .lengths()
            .await
            .map_err(ApiError::queue(OP))?;
        metrics.reset("fastlane_queue_messages");
        for queue in [
            crate::queue::JOBS,
            crate::queue::SCHEDULE,
            crate::queue::NOTIFY,
            crate::queue::WEBHOOKS,
        ] {
            let length = lengths.get(queue).copied().unwrap_or(0);
            metrics.gauge(
                "fastlane_queue_messages",
                &[("queue", queue)],
                length as f64,
            );
        }
        metrics.count_up_to(
            "fastlane_unreadable_records_total",
            crate::store::unreadable_records(),
        );
        metrics.gauge("fastlane_websocket_connections", &[], live.open() as f64);
        // Always present, so that a rate of it can be taken from the start.
        metrics.count(super::logs::READS_METRIC, &[], 0);
        let executor = services.executors.status().await;
        for name in [
            "fastlane_executions_running",
            "fastlane_docker_host_up",
            "fastlane_docker_host_circuit",
        ] {
            metrics.reset(name);
        }
        // What an autoscaler (KEDA's Prometheus scaler) reads: per task,
        // the executions waiting to start and how long the oldest has.
        let backlogs = services
            .store
            .backlogs(crate::store::BACKLOG_TASKS)
            .await
            .map_err(ApiError::store(OP))?;
        metrics.reset("fastlane_task_executions_waiting");
        metrics.reset("fastlane_task_oldest_waiting_seconds");
        let now = chrono::Utc::now();
        for backlog in &backlogs {
            let labels = [("task", backlog.task_id.as_str())];
            metrics.gauge(
                "fastlane_task_executions_waiting",
                &labels,
                backlog.waiting as f64,
            );
            let age = (now - backlog.oldest).num_milliseconds().max(0) as f64 / 1000.0;
            metrics.gauge("fastlane_task_oldest_waiting_seconds", &labels, age);
        }
        // Per gate (farm, task, concurrency key): slots held, waiters, the
        // oldest wait and whether it is paused; the gates most waited for
        // first, so the label set stays bounded.
        let mut gates = services
            .store
            .gate_usage()
            .await
            .map_err(ApiError::store(OP))?;
        gates.sort_by(|a, b| b.waiting.cmp(&a.waiting).then(a.key.cmp(&b.key)));
        gates.truncate(crate::store::BACKLOG_TASKS);
        for name in [
            "fastlane_gate_executions_running",
            "fastlane_gate_executions_waiting",
            "fastlane_gate_oldest_waiting_seconds",
            "fastlane_gate_paused",
        ] {
            metrics.reset(name);
        }
        for gate in &gates {
            let labels = [("gate", gate.key.as_str())];
            metrics.gauge(
                "fastlane_gate_executions_running",
                &labels,
                gate.running as f64,
            );
            metrics.gauge(
                "fastlane_gate_executions_waiting",
                &labels,
                gate.waiting as f64,
            );
            let age = gate.oldest.map_or(0.0, |oldest| {
                (now - oldest).num_milliseconds().max(0) as f64 / 1000.0
            });
            metrics.gauge("fastlane_gate_oldest_waiting_seconds", &labels, age);
            metrics.gauge(
                "fastlane_gate_paused",
                &labels,
                f64::from(u8::from(gate.paused)),
            );
        }
        for host in &executor.hosts {
            let labels = [("host", host.host.as_str()), ("farm", host.farm.as_str())];
            metrics.gauge("fastlane_executions_running", &labels, host.running as f64);
            metrics.gauge(
                "fastlane_docker_host_up",
                &labels,
                f64::from(u8::from(host.available)),
            );
            let circuit = [
                ("host", host.host.as_str()),
                ("state", host.circuit.as_str()),
            ];
            metrics.gauge("fastlane_docker_host_circuit", &circuit, 1.0);
        }
        metrics.render().map(PlainText).ok_or_else(|| {
            ApiError::not_found(
                OP,
                "this fastlane was built without the plugin-prometheus feature",
            )
        })
    }

    /// Farm status
    ///
    /// Docker hosts, running containers, queue lengths, task and job counts.
    #[oai(
        path = "/status",
        method = "get",
        operation_id = "status",
        tag = "ApiTags::Health"
    )]
    async fn status(
        &self,
        request: &Request,
        services: Data<&Services>,
    ) -> Result<Json<Status>, ApiError> {
        const OP: &str = "status";
        let urls = super::urls_for(request, &services);
        let scheduled = services
            .store
            .soonest_scheduled(SCHEDULED_SHOWN)
            .await
            .map_err(ApiError::store(OP))?;
        let scheduled_count = scheduled.1;
        let scheduled = scheduled
            .0
            .into_iter()
            .filter_map(|job| {
                let (cron, cron_timezone) = cron_of(&job);
                Some(ScheduledJob {
                    url: urls.job(&job.task_id, &job.job_id),
                    stop_url: format!("{}stop/", urls.job(&job.task_id, &job.job_id)),
                    task: Link {
                        id: job.task_id.clone(),
                        url: urls.task(&job.task_id),
                    },
                    cron,
                    cron_timezone,
                    next_scheduled_at: job.next_run_at?,
                    metadata: job_metadata(&job, &services.config.env_blacklisted_words),
                    image: job.spec.image,
                    command: job.spec.command,
                    job_id: job.job_id,
                })
            })
            .collect();
        let (tasks, jobs) = services.store.counts().await.map_err(ApiError::store(OP))?;
        let lengths = services
            .queue
            .lengths()
            .await
            .map_err(ApiError::queue(OP))?;
        let limits = services
            .store
            .gate_usage()
            .await
            .map_err(ApiError::store(OP))?
            .into_iter()
            .map(|usage| LimitView {
                gate: usage.key,
                running: usage.running,
                waiting: usage.waiting,
                oldest_waiting_since: usage.oldest,
                paused: usage.paused,
            })
            .collect();
        let executor = services.executors.status().await;
        let mut hosts: Vec<HostView> = executor.hosts.into_iter().map(Into::into).collect();
        hosts.sort_by_key(|h| !h.available);
        Ok(Json(Status {
            hosts,
            containers: Containers {
                running: executor.running.into_iter().map(Into::into).collect(),
            },
            queues: lengths
                .into_iter()
                .map(|(name, length)| (name, QueueLength { length }))
                .collect(),
            tasks: Count { count: tasks },
            jobs: JobCounts {
                count: jobs,
                scheduled,
                scheduled_count,
            },
            fastlane: About {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                executor: services.executors.names().join(","),
            },
            plugins: services.libraries.iter().map(Into::into).collect(),
            limits,
        }))
    }
}
