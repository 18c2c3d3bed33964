//! The domain: tasks group jobs, a job is what a user submitted, an execution
//! is one run of a job.
//!
//! A job can have many executions: a retry, a cron firing or a manual re-run
//! each add one. The job holds the *spec* (what to run and how); each
//! execution holds what happened (status, exit code, output).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::executor::{Placement, RunHandle};

/// A named group of jobs. Task ids are chosen by users and are not owned by
/// anyone: two users who pick the same id share the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The id from the URL, `POST /tasks/<task_id>`.
    pub task_id: String,
    /// When the first job of the task was created.
    pub created_at: DateTime<Utc>,
    /// When a job was last added to the task.
    pub last_modified_at: DateTime<Utc>,
}

/// When a job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Schedule {
    /// As soon as a worker is free.
    Now,
    /// Once, at (or as soon as possible after) the given instant.
    At {
        /// When to run.
        at: DateTime<Utc>,
    },
    /// Repeatedly, on a cron expression.
    Cron {
        /// The expression as the user wrote it.
        expression: String,
        /// An IANA time zone name; UTC when absent.
        timezone: Option<String>,
    },
}

/// E-mail addresses to tell about an execution's end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyTargets {
    /// Told when an execution ends `done`.
    #[serde(default)]
    pub succeeds: Vec<String>,
    /// Told when an execution ends `failed`.
    #[serde(default)]
    pub fails: Vec<String>,
    /// Told whenever an execution ends, whatever its status.
    #[serde(default)]
    pub finishes: Vec<String>,
}

/// One attempt to deliver a notification, as recorded with its execution
/// (`metadata.webhookDispatch` for webhooks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchRecord {
    /// When the attempt ended.
    pub timestamp: DateTime<Utc>,
    /// The notifier (`webhook`, `email`).
    pub notifier: String,
    /// The event (`starts`, `succeeds`, `fails`, `finishes`).
    pub event: String,
    /// Where it went: the URL or the address.
    pub target: String,
    /// Which attempt this was, from 1.
    pub attempt: u32,
    /// The response status, for HTTP targets.
    pub status_code: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// One HTTP endpoint to call about an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Where to send the execution's JSON.
    pub url: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How many more times to try after a failed delivery.
    #[serde(default)]
    pub retries: u32,
    /// The HTTP method; `POST` when absent.
    #[serde(default)]
    pub method: Option<String>,
}

/// Webhooks to call about an execution, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookTargets {
    /// Called when an execution's container starts.
    #[serde(default)]
    pub starts: Vec<Webhook>,
    /// Called when an execution ends `done`.
    #[serde(default)]
    pub succeeds: Vec<Webhook>,
    /// Called when an execution ends `failed`.
    #[serde(default)]
    pub fails: Vec<Webhook>,
    /// Called whenever an execution ends.
    #[serde(default)]
    pub finishes: Vec<Webhook>,
}

/// How long to wait before each automatic retry: `min_ms × factor^n`,
/// capped at `max_ms`, optionally spread by up to `jitter` (a fraction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    /// Delay before the first retry, in milliseconds.
    pub min_ms: u64,
    /// Growth per retry.
    pub factor: f64,
    /// The longest delay, in milliseconds.
    pub max_ms: u64,
    /// Random spread: each delay is multiplied by a factor in `[1 − jitter, 1 + jitter]`.
    #[serde(default)]
    pub jitter: f64,
}

/// What a cron job does when a slot comes while its previous run still runs
/// (the names Kubernetes CronJobs use).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConcurrencyPolicy {
    /// Run anyway (the original's behaviour).
    #[default]
    Allow,
    /// Skip the slot.
    Forbid,
    /// Stop the running execution and start the new one.
    Replace,
}

/// What a cron job does with the slots that passed while nothing fired
/// them (fastlane was down, its queue lost the firing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissedRuns {
    /// Fire the first of them, late, and go on from the next slot to come
    /// (the original's behaviour).
    #[default]
    Skip,
    /// Fire only the latest of them, once.
    Latest,
    /// Fire every one of them, oldest first (at most `max_missed_runs`, the
    /// latest ones).
    All,
}

/// When an executor pulls a job's image before running it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PullPolicy {
    /// Only when the host does not hold it.
    #[default]
    IfNotPresent,
    /// Before every run, so a moved tag is followed.
    Always,
    /// Never: a host without the image fails the run.
    Never,
}

/// What to run and how: everything a user said when submitting a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The container image, `name[:tag]` or `name@digest`, registry host allowed.
    pub image: String,
    /// The command, split shell-style into words (not run through a shell).
    pub command: String,
    /// Environment variables of the container.
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    /// The user's own data, kept and echoed back (`metadata.custom`).
    #[serde(default)]
    pub custom: Option<serde_json::Map<String, serde_json::Value>>,
    /// How many more times to run after a non-zero exit.
    #[serde(default)]
    pub retries: u32,
    /// Seconds an execution may run before it is stopped as `timedout`.
    pub timeout_seconds: u64,
    /// An execution that would start after this instant ends `expired` instead.
    #[serde(default)]
    pub expiration: Option<DateTime<Utc>>,
    /// When to run.
    pub schedule: Schedule,
    /// E-mail notifications.
    #[serde(default)]
    pub notify: NotifyTargets,
    /// Webhook notifications.
    #[serde(default)]
    pub webhooks: WebhookTargets,
    /// Extra `hostname → IP` entries for the container's `/etc/hosts`.
    #[serde(default)]
    pub additional_dns_entries: Vec<(String, String)>,
    /// Retry delays for this job; the server's defaults when absent.
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// What a cron slot does while a previous run is still live.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// What a cron job does with slots that passed while nothing fired them.
    #[serde(default)]
    pub missed_runs: MissedRuns,
    /// With [`MissedRuns::All`], at most this many missed slots fire.
    #[serde(default)]
    pub max_missed_runs: Option<u32>,
    /// CPUs the container may use (`1.5` = one and a half); the farm's
    /// default when absent.
    #[serde(default)]
    pub cpu_limit: Option<f64>,
    /// Bytes of memory the container may use; the farm's default when absent.
    #[serde(default)]
    pub memory_limit: Option<u64>,
    /// At most this many executions of the job's task run at once (counting
    /// every job of the task); the others wait their turn in order.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Higher runs first when executions wait for the same slot; the
    /// task's (`TASK_FLOW`), else 0, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Whom the job runs for (a customer, a tenant): executions with the
    /// same key share its limits, rate and fair share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// At most this many executions of the task with the same
    /// `concurrency_key` run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_per_key: Option<u32>,
    /// When the image is pulled; the farm's policy when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
}

impl JobSpec {
    /// A job that runs `command` in `image` now, once, with everything else
    /// at its default (no retries, no notifications, a one-hour timeout).
    pub fn new(image: impl Into<String>, command: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            command: command.into(),
            envs: BTreeMap::new(),
            custom: None,
            retries: 0,
            timeout_seconds: 3600,
            expiration: None,
            schedule: Schedule::Now,
            notify: NotifyTargets::default(),
            webhooks: WebhookTargets::default(),
            additional_dns_entries: Vec::new(),
            backoff: None,
            concurrency_policy: ConcurrencyPolicy::Allow,
            missed_runs: MissedRuns::Skip,
            max_missed_runs: None,
            cpu_limit: None,
            memory_limit: None,
            max_concurrent: None,
            priority: None,
            concurrency_key: None,
            max_concurrent_per_key: None,
            pull_policy: None,
        }
    }
}

impl Job {
    /// A new job of `task_id` with a fresh `job_id`, created `now`.
    pub fn new(
        task_id: impl Into<String>,
        job_id: impl Into<String>,
        spec: JobSpec,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            job_id: job_id.into(),
            task_id: task_id.into(),
            created_at: now,
            last_modified_at: now,
            spec,
            request_ip: None,
            retry_count: 0,
            generation: 0,
            next_run_at: None,
            stopped: false,
        }
    }
}

/// A job: one submission, with the executions it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// A UUID, chosen by the server or by the caller of `PUT`.
    pub job_id: String,
    /// The task the job belongs to.
    pub task_id: String,
    /// When the job was created.
    pub created_at: DateTime<Utc>,
    /// When the job was last changed.
    pub last_modified_at: DateTime<Utc>,
    /// What to run.
    pub spec: JobSpec,
    /// The address the job was submitted from.
    pub request_ip: Option<String>,
    /// How many automatic retries have been made.
    pub retry_count: u32,
    /// Bumped whenever the job's schedule is replaced (`PUT`) or stopped:
    /// scheduled firings of an older generation are ignored.
    #[serde(default)]
    pub generation: u32,
    /// The next scheduled firing, for delayed and cron jobs that will fire again.
    #[serde(default)]
    pub next_run_at: Option<DateTime<Utc>>,
    /// True once a user stopped the job: no more firings, no more retries.
    #[serde(default)]
    pub stopped: bool,
}

/// Where an execution is in its life. The first three are live; the others
/// are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// Waiting in the queue.
    Enqueued,
    /// A worker took it and is getting the image ready.
    Pulling,
    /// The container was started.
    Running,
    /// It exited 0.
    Done,
    /// It exited non-zero, or could not be run at all.
    Failed,
    /// It ran longer than its timeout and was stopped.
    Timedout,
    /// It would have started after the job's expiration.
    Expired,
    /// A user stopped it.
    Stopped,
}

impl ExecutionStatus {
    /// Every status, in life order.
    pub const ALL: [ExecutionStatus; 8] = [
        Self::Enqueued,
        Self::Pulling,
        Self::Running,
        Self::Done,
        Self::Failed,
        Self::Timedout,
        Self::Expired,
        Self::Stopped,
    ];

    /// The lowercase name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enqueued => "enqueued",
            Self::Pulling => "pulling",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Timedout => "timedout",
            Self::Expired => "expired",
            Self::Stopped => "stopped",
        }
    }

    /// True once nothing more will happen to the execution.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Enqueued | Self::Pulling | Self::Running)
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExecutionStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown execution status {s:?}"))
    }
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// A UUID; the container is named `fastlane-job-<execution_id>`.
    pub execution_id: String,
    /// The job this is a run of.
    pub job_id: String,
    /// The job's task.
    pub task_id: String,
    /// When the execution was created (enqueued).
    pub created_at: DateTime<Utc>,
    /// When the container was started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the result was collected.
    pub finished_at: Option<DateTime<Utc>>,
    /// The image this run used (kept with its tag).
    pub image: String,
    /// The command this run used.
    pub command: String,
    /// Where the execution is in its life.
    pub status: ExecutionStatus,
    /// The process's exit code, once it exited.
    pub exit_code: Option<i64>,
    /// What the process wrote to stdout, once collected.
    pub stdout: Option<String>,
    /// What the process wrote to stderr, once collected.
    pub stderr: Option<String>,
    /// Why fastlane ended the execution the way it did, when it was not
    /// simply the process exiting (an unknown image, a timeout…).
    pub error: Option<String>,
    /// The host chosen for the run.
    pub placement: Option<Placement>,
    /// The started container, so any worker can find it again.
    pub handle: Option<RunHandle>,
    /// The address that asked for this execution, if it came from the API.
    pub request_ip: Option<String>,
    /// For an execution of a delayed or cron job, the slot it fired for
    /// (the container sees it as `FASTLANE_SCHEDULED_AT`).
    #[serde(default)]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Every notification attempt made about this execution.
    #[serde(default)]
    pub dispatches: Vec<DispatchRecord>,
    /// While it is `pulling`: how far its executor got, as its
    /// [`Progress`](crate::Progress) last said (a pull's layers). Gone once
    /// it moves on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Execution {
    /// A new execution of `job`, waiting in the queue, running `image` and
    /// `command` (the job's own for a first run; the previous execution's
    /// for a retry).
    pub fn enqueued(
        job: &Job,
        image: &str,
        command: &str,
        request_ip: Option<String>,
        now: DateTime<Utc>,
        execution_id: String,
    ) -> Self {
        Self {
            execution_id,
            job_id: job.job_id.clone(),
            task_id: job.task_id.clone(),
            created_at: now,
            started_at: None,
            finished_at: None,
            image: image.to_owned(),
            command: command.to_owned(),
            status: ExecutionStatus::Enqueued,
            exit_code: None,
            stdout: None,
            stderr: None,
            error: None,
            placement: None,
            handle: None,
            request_ip,
            scheduled_at: None,
            dispatches: Vec::new(),
            detail: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in ExecutionStatus::ALL {
            assert_eq!(status.as_str().parse::<ExecutionStatus>(), Ok(status));
            let json = serde_json::to_string(&status).expect("serialize");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert!("finished".parse::<ExecutionStatus>().is_err());
    }

    #[test]
    fn only_the_first_three_statuses_are_live() {
        let live: Vec<_> = ExecutionStatus::ALL
            .into_iter()
            .filter(|s| !s.is_final())
            .collect();
        assert_eq!(
            live,
            [
                ExecutionStatus::Enqueued,
                ExecutionStatus::Pulling,
                ExecutionStatus::Running
            ]
        );
    }
}
