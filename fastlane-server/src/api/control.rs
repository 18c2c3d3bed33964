//! Job control routes: stop a job, stop one execution, retry a job,
//! backfill a cron job's slots.

use chrono::Utc;
use poem::Request;
use poem::web::Data;
use poem_openapi::{
    Object, OpenApi,
    param::{Header, Path},
    payload::Json,
    types::ParseFromJSON,
};

use fastlane_sdk::{Execution, Job, Schedule};

use super::body::{BodyError, JsonBody};
use super::error::ApiError;
use super::idempotency::Idempotency;
use super::submit;
use super::views::Link;
use super::{ApiTags, JOB_NOT_FOUND, client_ip, find_job, task_or_job_not_found};
use crate::control::{self, STOPPED_BY_USER};
use crate::services::Services;
use crate::store::Submission;
use crate::urls::Urls;

/// A job, after a stop or a retry.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct JobControlled {
    /// The task id.
    pub task_id: String,
    /// The job id.
    pub job_id: String,
    /// The job's URL.
    pub job_url: String,
    /// The task's URL.
    pub task_url: String,
    /// The new execution (retry only).
    #[oai(nullable)]
    pub execution_id: Option<String>,
    /// The new execution's URL (retry only).
    #[oai(nullable)]
    pub execution_url: Option<String>,
}

/// The slots to backfill: every slot of the job's cron schedule from `from`
/// to `to`, both included.
#[derive(Debug, Object)]
pub struct BackfillRequest {
    /// The first instant (RFC 3339).
    pub from: chrono::DateTime<Utc>,
    /// The last instant (RFC 3339), not in the future.
    pub to: chrono::DateTime<Utc>,
}

/// One slot's run, made by a backfill or found made.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct BackfilledRun {
    /// The slot.
    pub scheduled_at: chrono::DateTime<Utc>,
    /// Its execution (the same one however often the slot is backfilled).
    pub execution_id: String,
    /// Its execution's URL.
    pub execution_url: String,
}

/// The answer to a backfill.
#[derive(Debug, Clone, Object)]
pub struct Backfilled {
    /// The slots' runs, oldest first.
    pub runs: Vec<BackfilledRun>,
}

/// The most slots one backfill covers.
pub const MAX_BACKFILL: usize = 1000;

impl JobControlled {
    /// `job`'s ids and URLs, with the execution a retry queued.
    fn new(urls: &Urls, job: Job, execution_id: Option<String>) -> Self {
        Self {
            job_url: urls.job(&job.task_id, &job.job_id),
            task_url: urls.task(&job.task_id),
            execution_url: execution_id
                .as_ref()
                .map(|id| urls.execution(&job.task_id, &job.job_id, id)),
            execution_id,
            task_id: job.task_id,
            job_id: job.job_id,
        }
    }
}

/// An execution, after a stop.
#[derive(Debug, Object)]
pub struct ExecutionStopped {
    /// The task.
    pub task: Link,
    /// The job.
    pub job: Link,
    /// The execution.
    pub execution: Link,
}

/// Job control routes.
#[derive(Debug)]
pub struct ControlApi;

#[OpenApi]
impl ControlApi {
    /// Stop a job
    ///
    /// For good: its schedule (delayed or cron) never fires again, it is not
    /// retried, and its live executions end `stopped` (running containers are
    /// stopped).
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/stop",
        method = "post",
        operation_id = "stopJob",
        tag = "ApiTags::Jobs"
    )]
    async fn stop_job(
        &self,
        request: &Request,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
    ) -> Result<Json<JobControlled>, ApiError> {
        const OP: &str = "stop_job";
        let job = find_job(&services, &task_id, &job_id, OP, || JOB_NOT_FOUND.into()).await?;
        let job = control::stop_job(&services, job)
            .await
            .map_err(|e| ApiError::unavailable(OP, e.to_string()))?;
        let urls = super::urls_for(request, &services);
        Ok(Json(JobControlled::new(&urls, job, None)))
    }

    /// Retry a job
    ///
    /// Queues a new execution of the last execution's image and command.
    /// 400 when the job has no execution yet or waits for its scheduled start.
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/retry",
        method = "post",
        operation_id = "retryJob",
        tag = "ApiTags::Jobs"
    )]
    async fn retry_job(
        &self,
        request: &Request,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
        /// As on `POST /tasks/{taskId}`: the same key answers with the
        /// first retry's answer, and makes one execution.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
    ) -> Result<Json<JobControlled>, ApiError> {
        const OP: &str = "retry_job";
        let idempotency = Idempotency::of(
            idempotency_key.as_deref(),
            &format!("POST /tasks/{}/jobs/{}/retry", task_id.0, job_id.0),
            &serde_json::Value::Null,
            OP,
        )?;
        let now = Utc::now();
        if let Some(earlier) = submit::replayed(&services, idempotency.as_ref(), now, OP).await? {
            return Ok(Json(earlier));
        }
        let job = find_job(&services, &task_id, &job_id, OP, || JOB_NOT_FOUND.into()).await?;
        if matches!(job.spec.schedule, Schedule::At { .. })
            && job.next_run_at.is_some()
            && !job.stopped
        {
            return Err(ApiError::bad_request(OP, "Can't retry a scheduled job."));
        }
        let (mut last, _) = services
            .store
            .executions(&job.job_id, 1)
            .await
            .map_err(ApiError::store(OP))?;
        let last = last
            .pop()
            .ok_or_else(|| ApiError::bad_request(OP, "No execution yet to retry."))?;
        let execution = Execution::enqueued(
            &job,
            &last.image,
            &last.command,
            client_ip(request),
            now,
            uuid::Uuid::new_v4().to_string(),
        );
        let urls = super::urls_for(request, &services);
        let answer = JobControlled::new(&urls, job, Some(execution.execution_id.clone()));
        // The execution and its message in one transaction (the outbox),
        // with the key's record.
        let message = crate::scheduler::run_now(&execution, now)
            .map_err(|err| ApiError::internal(OP, format!("{err:#}")))?;
        let submission = Submission {
            executions: std::slice::from_ref(&execution),
            outgoing: &[message],
            ..Submission::default()
        };
        let (answer, _) =
            submit::commit(&services, submission, idempotency.as_ref(), answer, now, OP).await?;
        Ok(Json(answer))
    }

    /// Backfill a cron job
    ///
    /// Runs the slots of the job's cron schedule between `from` and `to`
    /// (both included, `to` not in the future, at most 1,000 slots), each
    /// once: a slot's run has an id derived from the slot, so a slot that
    /// already ran, fired or was backfilled keeps its run and is not run
    /// again. Each run sees its slot as `FASTLANE_SCHEDULED_AT`. 400 for a
    /// job that is not a cron job.
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/backfill",
        method = "post",
        operation_id = "backfillJob",
        tag = "ApiTags::Jobs"
    )]
    async fn backfill_job(
        &self,
        request: &Request,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
        body: JsonBody<BackfillRequest>,
    ) -> Result<Json<Backfilled>, ApiError> {
        const OP: &str = "backfill_job";
        let body = match body.0 {
            Ok(body) => body,
            Err(BodyError::TooLarge(limit)) => return Err(ApiError::too_large(OP, limit)),
            Err(err) => return Err(ApiError::bad_request(OP, err.message())),
        };
        let BackfillRequest { from, to } =
            BackfillRequest::parse_from_json(Some(body)).map_err(|err| {
                ApiError::bad_request(
                    OP,
                    format!(
                        "the body must be {{\"from\": \"<RFC 3339>\", \"to\": \"<RFC 3339>\"}}: {}",
                        err.message()
                    ),
                )
            })?;
        let job = find_job(&services, &task_id, &job_id, OP, || JOB_NOT_FOUND.into()).await?;
        let Schedule::Cron {
            expression,
            timezone,
        } = &job.spec.schedule
        else {
            return Err(ApiError::bad_request(
                OP,
                "only a cron job can be backfilled",
            ));
        };
        let now = Utc::now();
        if from > to {
            return Err(ApiError::bad_request(OP, "from must not be after to"));
        }
        if to > now {
            return Err(ApiError::bad_request(
                OP,
                "to is in the future: slots to come fire on their own",
            ));
        }
        let cron = crate::schedule::CronSchedule::parse(expression, timezone.as_deref())
            .map_err(|e| ApiError::internal(OP, e))?;
        let mut slots = Vec::new();
        let mut at = from - chrono::Duration::milliseconds(1);
        while let Some(slot) = cron.next_after(at).filter(|slot| *slot <= to) {
            if slots.len() == MAX_BACKFILL {
                return Err(ApiError::bad_request(
                    OP,
                    format!(
                        "more than {MAX_BACKFILL} slots from {from} to {to}: backfill a shorter span"
                    ),
                ));
            }
            slots.push(slot);
            at = slot;
        }
        let urls = super::urls_for(request, &services);
        let executions: Vec<Execution> = slots
            .iter()
            .map(|slot| crate::scheduler::slot_execution(&job, job.generation, *slot, now))
            .collect();
        let outgoing = executions
            .iter()
            .map(|execution| {
                crate::scheduler::run_now(execution, now)
                    .map_err(|err| ApiError::internal(OP, format!("{err:#}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A slot whose run exists keeps it; its message finds it and leaves
        // it be if it ended.
        services
            .store
            .submit(Submission {
                executions: &executions,
                outgoing: &outgoing,
                keep_existing: true,
                ..Submission::default()
            })
            .await
            .map_err(ApiError::store(OP))?;
        services.outbox.nudge();
        tracing::info!(job = %job.job_id, slots = slots.len(), %from, %to, "backfilled");
        Ok(Json(Backfilled {
            runs: executions
                .into_iter()
                .map(|execution| BackfilledRun {
                    scheduled_at: execution.scheduled_at.unwrap_or(now),
                    execution_url: urls.execution(
                        &job.task_id,
                        &job.job_id,
                        &execution.execution_id,
                    ),
                    execution_id: execution.execution_id,
                })
                .collect(),
        }))
    }

    /// Stop an execution
    ///
    /// Ends that execution `stopped` (stopping its container); the job's
    /// schedule goes on.
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/executions/:executionId/stop",
        method = "post",
        operation_id = "stopExecution",
        tag = "ApiTags::Executions"
    )]
    async fn stop_execution(
        &self,
        request: &Request,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
        #[oai(name = "executionId")] execution_id: Path<String>,
    ) -> Result<Json<ExecutionStopped>, ApiError> {
        const OP: &str = "stop_job_execution";
        find_job(&services, &task_id, &job_id, OP, || {
            task_or_job_not_found(&task_id, &job_id)
        })
        .await?;
        let execution = services
            .store
            .execution(&execution_id)
            .await
            .map_err(ApiError::store(OP))?
            .filter(|e| e.job_id == job_id.0)
            .ok_or_else(|| {
                ApiError::not_found(
                    OP,
                    format!(
                        "Job Execution ({}) not found in Job ({}).",
                        execution_id.0, job_id.0
                    ),
                )
            })?;
        control::stop_execution(&services, &execution, STOPPED_BY_USER)
            .await
            .map_err(|e| ApiError::unavailable(OP, e.to_string()))?;
        let urls = super::urls_for(request, &services);
        Ok(Json(ExecutionStopped {
            task: Link {
                id: task_id.0.clone(),
                url: urls.task(&task_id),
            },
            job: Link {
                id: job_id.0.clone(),
                url: urls.job(&task_id, &job_id),
            },
            execution: Link {
                url: urls.execution(&task_id, &job_id, &execution_id),
                id: execution_id.0,
            },
        }))
    }
}
