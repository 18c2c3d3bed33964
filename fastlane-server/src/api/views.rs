//! What the API answers with: the JSON shapes of tasks, jobs and executions
//! (field names as the original fastlane had them), and the conversions from
//! the domain types.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use serde_json::{Value, json};

use fastlane_sdk::{Execution, ExecutionStatus, Job, Schedule};

use crate::redact::{redact_envs, redact_webhooks};
use crate::urls::Urls;

/// An id and its absolute URL.
#[derive(Debug, Clone, Object)]
pub struct Link {
    /// The id.
    pub id: String,
    /// Its absolute URL.
    pub url: String,
}

/// The answer to a job submission.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct JobCreated {
    /// The task id from the URL.
    pub task_id: String,
    /// The new job's UUID.
    pub job_id: String,
    /// The first execution's UUID.
    #[oai(nullable)]
    pub execution_id: Option<String>,
    /// The first execution's URL.
    #[oai(nullable)]
    pub execution_url: Option<String>,
    /// The id of the queue message that will run it.
    #[oai(nullable)]
    pub queue_job_id: Option<String>,
    /// The job's URL.
    pub job_url: String,
    /// The task's URL.
    pub task_url: String,
}

/// The answer to a batch submission: each job as `POST /tasks/{taskId}`
/// answers it, in the order sent.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct BatchCreated {
    /// One answer per job of the request.
    pub jobs: Vec<JobCreated>,
}

impl poem_openapi::types::Example for JobCreated {
    fn example() -> Self {
        let base = "http://localhost:10000/tasks/hello-world/";
        let job_id = "4b1c7c43-5b5e-4d4c-9d43-2f0a2f1c6a1e";
        let execution_id = "9f0d2a61-8a7e-4c1f-b6f0-0c7b0f3e2d11";
        Self {
            task_id: "hello-world".to_owned(),
            job_id: job_id.to_owned(),
            execution_id: Some(execution_id.to_owned()),
            execution_url: Some(format!("{base}jobs/{job_id}/executions/{execution_id}/")),
            queue_job_id: Some(execution_id.to_owned()),
            job_url: format!("{base}jobs/{job_id}/"),
            task_url: base.to_owned(),
        }
    }
}

/// A task in a listing.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct TaskItem {
    /// The task id.
    pub task_id: String,
    /// When its first job was created.
    pub created_at: DateTime<Utc>,
    /// When a job was last added.
    pub last_modified_at: DateTime<Utc>,
    /// The task's URL.
    pub url: String,
    /// How many jobs it has.
    pub jobs_count: u64,
    /// The status of its newest execution, once it has one.
    #[oai(skip_serializing_if_is_none)]
    pub last_status: Option<StatusView>,
}

/// One page of tasks.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct TaskPage {
    /// The tasks on this page, oldest first.
    pub items: Vec<TaskItem>,
    /// How many tasks there are.
    pub total: u64,
    /// This page's number, from 1.
    pub page: u64,
    /// How many pages there are.
    pub pages: u64,
    /// Tasks per page (`PAGINATION_PER_PAGE`).
    pub per_page: u64,
    /// True when a next page exists.
    pub has_next: bool,
    /// True when a previous page exists.
    pub has_prev: bool,
    /// The next page's URL.
    #[oai(nullable)]
    pub next_url: Option<String>,
    /// The previous page's URL.
    #[oai(nullable)]
    pub prev_url: Option<String>,
}

/// A job in a task's details.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct TaskJob {
    /// The job id.
    pub id: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Its URL.
    pub url: String,
}

/// A task and its jobs.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct TaskDetails {
    /// The task id.
    pub task_id: String,
    /// Its jobs, most recently changed first.
    pub jobs: Vec<TaskJob>,
}

/// Where an execution is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum StatusView {
    /// Waiting in the queue.
    Enqueued,
    /// Taken by a worker; the image is being readied.
    Pulling,
    /// The container runs.
    Running,
    /// Exited 0.
    Done,
    /// Exited non-zero, or could not run.
    Failed,
    /// Stopped after its timeout.
    Timedout,
    /// Not started because the job had expired.
    Expired,
    /// Stopped by a user.
    Stopped,
}

/// The expression and time zone of a cron job; `(None, None)` for others.
pub fn cron_of(job: &Job) -> (Option<String>, Option<String>) {
    match &job.spec.schedule {
        Schedule::Cron {
            expression,
            timezone,
        } => (Some(expression.clone()), timezone.clone()),
        _ => (None, None),
    }
}

/// When a job runs next: a delayed or cron job's next slot, none once the
/// job is stopped.
pub fn next_run_of(job: &Job) -> Option<DateTime<Utc>> {
    job.next_run_at.filter(|_| !job.stopped)
}

impl From<StatusView> for ExecutionStatus {
    fn from(status: StatusView) -> Self {
        match status {
            StatusView::Enqueued => Self::Enqueued,
            StatusView::Pulling => Self::Pulling,
            StatusView::Running => Self::Running,
            StatusView::Done => Self::Done,
            StatusView::Failed => Self::Failed,
            StatusView::Timedout => Self::Timedout,
            StatusView::Expired => Self::Expired,
            StatusView::Stopped => Self::Stopped,
        }
    }
}

impl From<ExecutionStatus> for StatusView {
    fn from(status: ExecutionStatus) -> Self {
        match status {
            ExecutionStatus::Enqueued => Self::Enqueued,
            ExecutionStatus::Pulling => Self::Pulling,
            ExecutionStatus::Running => Self::Running,
            ExecutionStatus::Done => Self::Done,
            ExecutionStatus::Failed => Self::Failed,
            ExecutionStatus::Timedout => Self::Timedout,
            ExecutionStatus::Expired => Self::Expired,
            ExecutionStatus::Stopped => Self::Stopped,
        }
    }
}

/// One execution.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct ExecutionView {
    /// The execution's UUID.
    pub execution_id: String,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// For a run of a delayed or cron job, the slot it fired for (the
    /// container sees it as `FASTLANE_SCHEDULED_AT`).
    #[oai(nullable)]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The address that asked for it.
    #[oai(rename = "requestIPAddress")]
    #[oai(nullable)]
    pub request_ip_address: Option<String>,
    /// When its container started.
    #[oai(nullable)]
    pub started_at: Option<DateTime<Utc>>,
    /// When its result was collected.
    #[oai(nullable)]
    pub finished_at: Option<DateTime<Utc>>,
    /// The image it ran.
    pub image: String,
    /// The command it ran.
    pub command: String,
    /// Where it ran: `docker_host`, `container_id`.
    pub metadata: Value,
    // No doc comment: a described enum field becomes `allOf`, which some
    // client generators cannot read (the enum's own description stands).
    pub status: StatusView,
    /// While it is `pulling`: how far getting its image ready got, as its
    /// executor reports it (`pulling busybox:1: 1 of 2 layers downloaded,
    /// 0.8 of 2.1 MB`); absent otherwise.
    #[oai(skip_serializing_if_is_none)]
    pub status_detail: Option<String>,
    /// The exit code, once it exited.
    #[oai(nullable)]
    pub exit_code: Option<i64>,
    /// Its standard output, once collected. For tasks the `kubernetes`
    /// executor runs, both streams (Kubernetes keeps one merged log per
    /// container), and `error` then holds no stderr.
    #[oai(nullable)]
    pub log: Option<String>,
    /// Its standard error (none for the `kubernetes` executor, whose
    /// output is all in `log`); when fastlane itself ended the execution
    /// (an unknown image, a timeout…) the reason comes first.
    #[oai(nullable)]
    pub error: Option<String>,
    /// Its URL.
    pub url: String,
}

impl poem_openapi::types::Example for ExecutionView {
    fn example() -> Self {
        let at = |s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        Self {
            execution_id: "9f0d2a61-8a7e-4c1f-b6f0-0c7b0f3e2d11".to_owned(),
            created_at: at("2026-11-23T12:00:00Z"),
            scheduled_at: None,
            request_ip_address: Some("127.0.0.1".to_owned()),
            started_at: Some(at("2026-11-23T12:00:01Z")),
            finished_at: Some(at("2026-11-23T12:00:02Z")),
            image: "busybox:latest".to_owned(),
            command: "echo 'it works'".to_owned(),
            metadata: serde_json::json!({
                "docker_host": "unix:///run/podman/podman.sock",
                "container_id": "3c9e1f…",
            }),
            status: StatusView::Done,
            status_detail: None,
            exit_code: Some(0),
            log: Some("it works\n".to_owned()),
            error: Some(String::new()),
            url: "http://localhost:10000/tasks/hello-world/jobs/4b1c7c43-5b5e-4d4c-9d43-2f0a2f1c6a1e/executions/9f0d2a61-8a7e-4c1f-b6f0-0c7b0f3e2d11/".to_owned(),
        }
    }
}

/// A job with its newest executions.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct JobView {
    /// The job's UUID.
    pub job_id: String,
    /// Its task.
    pub task_id: String,
    /// Its URL.
    pub url: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub last_modified_at: DateTime<Utc>,
    /// The image it runs.
    pub image: String,
    /// The command it runs.
    pub command: String,
    /// True for active cron jobs.
    pub scheduled: bool,
    /// The cron expression of a cron job.
    #[oai(skip_serializing_if_is_none)]
    pub cron: Option<String>,
    /// The time zone of a cron job's expression, when not UTC.
    #[oai(skip_serializing_if_is_none)]
    pub cron_timezone: Option<String>,
    /// When it runs next: a delayed or cron job that is not stopped.
    #[oai(skip_serializing_if_is_none)]
    pub next_run_at: Option<DateTime<Utc>>,
    /// How many executions it has in all.
    pub execution_count: u64,
    /// The address it was submitted from.
    #[oai(rename = "requestIPAddress")]
    #[oai(nullable)]
    pub request_ip_address: Option<String>,
    /// `retries`, `retry_count`, `timeout`, `expiration`, `envs` (secrets
    /// masked), `notify`, `webhooks` (header values and URL credentials
    /// masked), `additional_dns_entries`, `custom`.
    pub metadata: Value,
    /// The 20 newest executions, newest first.
    pub executions: Vec<ExecutionView>,
}

/// `GET /tasks/{taskId}/jobs/{jobId}`.
#[derive(Debug, Object)]
pub struct JobDetails {
    /// The task.
    pub task: Link,
    /// The job.
    pub job: JobView,
}

/// `GET …/executions/{executionId}`.
#[derive(Debug, Object)]
pub struct ExecutionDetails {
    /// The task.
    pub task: Link,
    /// The job.
    pub job: Link,
    /// The execution.
    pub execution: ExecutionView,
    // Why it has not started, while it waits in line for a slot (absent
    // otherwise). No doc comment: a described object field becomes
    // `allOf` (WaitingView describes itself).
    #[oai(skip_serializing_if_is_none)]
    pub waiting: Option<WaitingView>,
}

/// Why an execution has not started, while it waits in line for a slot:
/// the gate that holds it back, and where in line it stands.
#[derive(Debug, Object)]
pub struct WaitingView {
    /// The gate that holds it back (as `/status` lists it under `limits`).
    pub gate: String,
    /// `paused` (the gate is paused), `full` (its slots are taken), `rate`
    /// (its rate limit's tokens are spent), `turn` (executions before it
    /// take the room there is).
    pub reason: String,
    /// Waiting executions that go before it and want the same gate.
    pub ahead: u64,
}

/// What `error` shows: fastlane's reason, then the process's stderr.
pub fn error_text(execution: &Execution) -> Option<String> {
    match (&execution.error, &execution.stderr) {
        (Some(reason), Some(stderr)) if !stderr.is_empty() => {
            Some(format!("{reason}\n\nstderr:\n{stderr}"))
        }
        (Some(reason), _) => Some(reason.clone()),
        (None, stderr) => stderr.clone(),
    }
}

/// The view of one execution.
pub fn execution_view(execution: &Execution, urls: &Urls) -> ExecutionView {
    let mut metadata = json!({});
    if let Some(placement) = &execution.placement {
        metadata["docker_host"] = json!(placement.host);
    }
    if let Some(handle) = &execution.handle {
        metadata["container_id"] = json!(handle.id);
    }
    for (notifier, key, target) in [
        ("webhook", "webhookDispatch", "url"),
        ("email", "emailDispatch", "address"),
    ] {
        let attempts: Vec<_> = execution
            .dispatches
            .iter()
            .filter(|d| d.notifier == notifier)
            .map(|d| {
                json!({"timestamp": d.timestamp, target: d.target, "event": d.event,
                       "attempt": d.attempt, "statusCode": d.status_code, "error": d.error})
            })
            .collect();
        if !attempts.is_empty() {
            metadata[key] = json!(attempts);
        }
    }
    ExecutionView {
        execution_id: execution.execution_id.clone(),
        created_at: execution.created_at,
        scheduled_at: execution.scheduled_at,
        request_ip_address: execution.request_ip.clone(),
        started_at: execution.started_at,
        finished_at: execution.finished_at,
        image: execution.image.clone(),
        command: execution.command.clone(),
        metadata,
        status: execution.status.into(),
        status_detail: execution
            .detail
            .clone()
            .filter(|_| execution.status == ExecutionStatus::Pulling),
        exit_code: execution.exit_code,
        log: execution.stdout.clone(),
        error: error_text(execution),
        url: urls.execution(
            &execution.task_id,
            &execution.job_id,
            &execution.execution_id,
        ),
    }
}

/// The job's `metadata` object, with secret env values, webhook header
/// values and credentials in webhook URLs masked.
pub fn job_metadata(job: &Job, blacklist: &[String]) -> Value {
    let spec = &job.spec;
    let mut metadata = json!({
        "retries": spec.retries,
        "retry_count": job.retry_count,
        "timeout": spec.timeout_seconds,
        "expiration": spec.expiration.map(|e| e.timestamp()),
        "envs": redact_envs(&spec.envs, blacklist),
        "notify": spec.notify,
        "webhooks": redact_webhooks(&spec.webhooks, blacklist),
        "additional_dns_entries": spec.additional_dns_entries,
    });
    if let Some(custom) = &spec.custom {
        metadata["custom"] = Value::Object(custom.clone());
    }
    metadata
}
