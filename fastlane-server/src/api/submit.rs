//! Submitting jobs: one (`POST /tasks/{taskId}`, `PUT …/jobs/{jobId}`) or a
//! batch (`POST /tasks/{taskId}/batch`). Each job is checked and made ready
//! ([`prepare`]: the job, its first execution or first firing, the queue
//! message that sets it going, the answer), then everything is written in
//! one store transaction ([`write`]) with the request's idempotency key:
//! the API answers 200 exactly when every job of it will run.

use chrono::{DateTime, Utc};
use poem_openapi::types::{ParseFromJSON, ToJSON};

use fastlane_sdk::{Execution, Job};

use super::error::ApiError;
use super::idempotency::Idempotency;
use super::job_request::{self, Limits};
use super::views::JobCreated;
use crate::scheduler;
use crate::services::Services;
use crate::store::{Outgoing, Submission};
use crate::urls::Urls;

/// A checked job, ready to be written.
#[derive(Debug)]
pub struct Prepared {
    pub job: Job,
    /// Its first execution, when it runs now.
    pub execution: Option<Execution>,
    /// The message that runs it, or fires its first slot.
    pub message: Outgoing,
    /// What the API answers for it.
    pub created: JobCreated,
}

/// One job a request asks for.
#[derive(Debug)]
pub struct Asked<'a> {
    pub task_id: &'a str,
    /// The new job's id (`PUT`'s, or a new UUID).
    pub job_id: String,
    /// The job it replaces (`PUT`).
    pub existing: Option<Job>,
    /// Its job request.
    pub body: &'a serde_json::Value,
    /// The client's address.
    pub ip: Option<String>,
}

/// Checks a job request and makes the job: the message of the 400 when it
/// is not one.
pub fn prepare(
    services: &Services,
    urls: &Urls,
    asked: Asked<'_>,
    now: DateTime<Utc>,
) -> Result<Prepared, String> {
    let Asked {
        task_id,
        job_id,
        existing,
        body,
        ip,
    } = asked;
    job_request::task_id(task_id)?;
    let limits = Limits {
        hooks_per_event: services.config.webhooks_max_per_event,
        addresses: services.config.notify_max_addresses,
    };
    let spec = job_request::parse(
        body,
        &limits,
        services.config.hard_execution_timeout_seconds,
        now,
    )?;
    crate::egress::check_webhooks(&spec.webhooks, &services.config.webhook_egress)?;
    let executor = services.executors.for_task(task_id);
    let resources = fastlane_sdk::Resources {
        cpu_limit: spec.cpu_limit,
        memory_limit: spec.memory_limit,
    };
    executor
        .accepts(task_id)
        .and_then(|()| executor.accepts_resources(task_id, &resources))
        .map_err(|err| err.message().to_owned())?;
    let mut job = match existing {
        Some(mut job) => {
            job.spec = spec;
            job.generation += 1;
            job.retry_count = 0;
            job.stopped = false;
            job.last_modified_at = now;
            job.request_ip = ip.clone();
            job
        }
        None => Job {
            job_id,
            task_id: task_id.to_owned(),
            created_at: now,
            last_modified_at: now,
            request_ip: ip.clone(),
            retry_count: 0,
            generation: 0,
            next_run_at: None,
            stopped: false,
            spec,
        },
    };
    let (execution, message) =
        scheduler::first_run(&mut job, ip, now).map_err(|err| format!("{err:#}"))?;
    let created = JobCreated {
        execution_url: execution
            .as_ref()
            .map(|e| urls.execution(&job.task_id, &job.job_id, &e.execution_id)),
        execution_id: execution.as_ref().map(|e| e.execution_id.clone()),
        queue_job_id: Some(message.id.clone()),
        job_url: urls.job(&job.task_id, &job.job_id),
        task_url: urls.task(&job.task_id),
        task_id: job.task_id.clone(),
        job_id: job.job_id.clone(),
    };
    Ok(Prepared {
        job,
        execution,
        message,
        created,
    })
}

/// The first answer of a request whose idempotency key was used before
/// (or the 409 of another request with it); `None` without a key, or when
/// the key is free.
pub async fn replayed<T: ParseFromJSON>(
    services: &Services,
    idempotency: Option<&Idempotency>,
    now: DateTime<Utc>,
    operation: &'static str,
) -> Result<Option<T>, ApiError> {
    match idempotency {
        Some(idempotency) => {
            idempotency
                .earlier(services.store.as_ref(), now.timestamp_millis(), operation)
                .await
        }
        None => Ok(None),
    }
}

/// Writes `submission` in one transaction, with `idempotency`'s record
/// standing for `answer`, and nudges the outbox (and the line, which its
/// runs joined): `(answer, true)`. When a
/// request with the same key was written first (meanwhile), nothing is
/// written: `(its answer, false)`.
pub async fn commit<T: ToJSON + ParseFromJSON>(
    services: &Services,
    submission: Submission<'_>,
    idempotency: Option<&Idempotency>,
    answer: T,
    now: DateTime<Utc>,
    operation: &'static str,
) -> Result<(T, bool), ApiError> {
    let ttl_ms = i64::try_from(services.config.idempotency_ttl_seconds.saturating_mul(1000))
        .unwrap_or(i64::MAX);
    let record =
        idempotency.map(|i| i.record(&answer, now.timestamp_millis().saturating_add(ttl_ms)));
    let written = services
        .store
        .submit(Submission {
            idempotency: record.as_ref(),
            ..submission
        })
        .await
        .map_err(ApiError::store(operation))?;
    if let (false, Some(idempotency)) = (written, idempotency) {
        let first = idempotency
            .winner(services.store.as_ref(), now.timestamp_millis(), operation)
            .await?;
        return Ok((first, false));
    }
    services.outbox.nudge();
    if !submission.waiting.is_empty() {
        services.line.nudge();
    }
    Ok((answer, true))
}

/// Writes `prepared` jobs in one transaction ([`commit`]), then logs and
/// counts them.
pub async fn write<T: ToJSON + ParseFromJSON>(
    services: &Services,
    prepared: Vec<Prepared>,
    idempotency: Option<&Idempotency>,
    answer: T,
    now: DateTime<Utc>,
    operation: &'static str,
) -> Result<T, ApiError> {
    let mut jobs = Vec::with_capacity(prepared.len());
    let mut executions = Vec::with_capacity(prepared.len());
    let mut starts = Vec::with_capacity(prepared.len());
    for Prepared {
        job,
        execution,
        message,
        ..
    } in prepared
    {
        // A run now joins the line as it is written; a schedule's first
        // firing is a message.
        starts.push(match &execution {
            Some(run) => crate::admission::start(services, &job, run, message),
            None => crate::admission::Start::Message(message),
        });
        jobs.push(job);
        executions.extend(execution);
    }
    let (waiting, outgoing) = crate::admission::split(starts);
    let submission = Submission {
        jobs: &jobs,
        executions: &executions,
        outgoing: &outgoing,
        waiting: &waiting,
        ..Submission::default()
    };
    let (answer, written) =
        commit(services, submission, idempotency, answer, now, operation).await?;
    if !written {
        return Ok(answer);
    }
    for job in &jobs {
        tracing::info!(
            task = %job.task_id,
            job = %job.job_id,
            next_run_at = ?job.next_run_at,
            "job submitted"
        );
    }
    services.metrics.count(
        "fastlane_jobs_submitted_total",
        &[],
        u64::try_from(jobs.len()).unwrap_or(u64::MAX),
    );
    Ok(answer)
}
