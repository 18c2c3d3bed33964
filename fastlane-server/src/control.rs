//! Stopping things a user asked to stop: one execution, or a whole job
//! (its schedule, its retries and its live executions).
//!
//! A stop is recorded first (the execution becomes `stopped`, which no
//! later save can undo) and the container is stopped second; the worker
//! driving the execution then sees the exit, keeps the `stopped` status and
//! adds the output.

use std::time::Duration;

use chrono::Utc;
use tracing::{info, warn};

use fastlane_sdk::{Execution, Job};

use crate::services::Services;

/// What a stopped execution's `error` says when a user stopped it.
pub const STOPPED_BY_USER: &str = "User stopped job execution manually.";

/// Stops one execution; returns false when it had already finished.
pub async fn stop_execution(
    services: &Services,
    execution: &Execution,
    reason: &str,
) -> anyhow::Result<bool> {
    let Some(stopped) = services
        .store
        .mark_stopped(&execution.execution_id, reason, Utc::now())
        .await?
    else {
        return Ok(false);
    };
    info!(execution = %stopped.execution_id, reason, "execution stopped");
    if stopped.handle.is_none() {
        // Never started: no worker will finish it, so announce it here.
        if let Some(job) = services
            .store
            .job(&stopped.task_id, &stopped.job_id)
            .await?
        {
            crate::notify::announce(services, &job, &stopped).await?;
        }
    }
    if let Some(handle) = &stopped.handle {
        let grace = Duration::from_secs(services.config.stop_grace_seconds);
        let executor = services.executors.for_task(&stopped.task_id);
        if let Err(err) = executor.stop(handle, grace).await {
            // The worker's own stop-on-sight check catches it if this fails.
            warn!(execution = %stopped.execution_id, error = %err, "cannot stop the container");
        }
    }
    Ok(true)
}

/// Stops a job for good: no more scheduled firings, no more retries, and
/// every live execution stopped. Returns the job as stored.
pub async fn stop_job(services: &Services, mut job: Job) -> anyhow::Result<Job> {
    job.stopped = true;
    job.generation += 1;
    job.next_run_at = None;
    job.last_modified_at = Utc::now();
    services.store.save_job(&job).await?;
    for execution in services.store.live_executions(&job.job_id).await? {
        stop_execution(services, &execution, STOPPED_BY_USER).await?;
    }
    Ok(job)
}
