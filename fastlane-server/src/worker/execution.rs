//! The life of one execution, step by step. Each step is stored before the
//! next begins, and each can be repeated safely, so `drive` can resume an
//! execution wherever a previous worker left it:
//!
//! | stored state | step | what it does |
//! |---|---|---|
//! | `enqueued` | [`expire`], [`place`] | check expiration, take a slot in line, choose a host → `pulling` |
//! | `pulling` | [`start`] | ready the image (its pull's progress stored as the status detail, `progress.rs`), start the container (finding one already started) → `running` |
//! | `running` | [`watch`] | wait for the exit (or the timeout), collect output → final status |
//! | final | | tidy up the container |
//!
//! `place`, `start` and the collecting part of `watch` are timed in
//! `fastlane_execution_step_seconds{step}`.

use std::time::Duration;

use chrono::Utc;
use tracing::{Instrument, info, info_span, warn};

use fastlane_sdk::{
    ErrorKind, Execution, ExecutionSpec, ExecutionStatus, Job, PluginError, RunHandle,
};

use crate::queue::{JOBS, Work};
use crate::services::Services;
use crate::store::Admission;
use crate::worker::turnstile::Ticket;

/// What the worker should do with the message once `drive` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The execution reached a final status (or no longer exists): ack.
    Finished,
    /// A passing problem: deliver the message again after the delay.
    Later(Duration),
    /// The process is shutting down: leave the message leased.
    Interrupted,
    /// The execution waits in line for a slot: ack; it is queued again
    /// when its turn comes.
    Parked,
}

/// Why a step could not complete.
enum StepError {
    Plugin(PluginError),
    Internal(String),
    /// A user stopped the execution before it started.
    Stopped,
}

impl From<PluginError> for StepError {
    fn from(err: PluginError) -> Self {
        Self::Plugin(err)
    }
}

impl From<crate::store::StoreError> for StepError {
    fn from(err: crate::store::StoreError) -> Self {
        Self::Internal(err.to_string())
    }
}

impl From<anyhow::Error> for StepError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(format!("{err:#}"))
    }
}

impl From<crate::queue::QueueError> for StepError {
    fn from(err: crate::queue::QueueError) -> Self {
        Self::Internal(err.to_string())
    }
}

/// Back-off for passing problems: 1 s, 2 s, 4 s … capped at a minute.
fn later(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.saturating_sub(1).min(6))
}

/// Drives the execution `execution_id` as far as it can go, in the trace
/// `trace` (the queue message's `traceparent`) continues.
pub async fn drive(
    services: &Services,
    execution_id: &str,
    trace: Option<&str>,
    attempts: u32,
    ticket: Ticket,
) -> Outcome {
    let loaded = async {
        let execution = services.store.execution(execution_id).await?;
        let Some(mut execution) = execution else {
            return Ok(None);
        };
        // An earlier try's progress says nothing of this one: the next save
        // clears it, and this try's `prepare` reports afresh.
        execution.detail = None;
        let job = services
            .store
            .job(&execution.task_id, &execution.job_id)
            .await?;
        Ok::<_, StepError>(job.map(|job| (job, execution)))
    }
    .await;
    let (job, mut execution) = match loaded {
        Ok(Some(found)) => found,
        Ok(None) => {
            warn!(
                execution = execution_id,
                "execution or job no longer exists; dropping its message"
            );
            return Outcome::Finished;
        }
        Err(_) => return Outcome::Later(later(attempts)),
    };
    // Every line about this execution, here and in the executor, carries
    // its ids.
    let span = info_span!(
        "execution",
        execution = %execution.execution_id,
        job = %job.job_id,
        task = %job.task_id,
    );
    crate::telemetry::continue_trace(&span, trace);
    async move {
        match steps(services, &job, &mut execution, ticket).await {
            Ok(outcome) => outcome,
            Err(StepError::Plugin(err))
                if matches!(err.kind(), ErrorKind::Retryable | ErrorKind::Unavailable) =>
            {
                warn!(execution = execution_id, error = %err, attempts, "will try again");
                Outcome::Later(later(attempts))
            }
            Err(StepError::Plugin(err)) => {
                // An executor's own deadline or the job's expiration is
                // the execution's end, not a failure to report.
                execution.status = match err.kind() {
                    ErrorKind::TimedOut => ExecutionStatus::Timedout,
                    ErrorKind::Expired => ExecutionStatus::Expired,
                    _ => {
                        services
                            .reporter
                            .report("running", err.message(), &execution);
                        ExecutionStatus::Failed
                    }
                };
                execution.finished_at = Some(Utc::now());
                execution.error = Some(err.message().to_owned());
                // A run lost with its host may be tried again elsewhere.
                let retry = if err.kind() == ErrorKind::Lost {
                    Retry::AfterLoss
                } else {
                    Retry::OnNonZeroExit
                };
                finish_as(services, &job, execution, retry).await
            }
            Err(StepError::Stopped) => {
                execution.finished_at = Some(Utc::now());
                finish(services, &job, execution).await
            }
            Err(StepError::Internal(err)) => {
                warn!(execution = execution_id, error = %err, attempts, "will try again");
                Outcome::Later(later(attempts))
            }
        }
    }
    .instrument(span)
    .await
}

fn spec(
    job: &Job,
    execution: &Execution,
    hard_timeout_seconds: u64,
) -> Result<ExecutionSpec, PluginError> {
    let argv = shlex::split(&execution.command)
        .filter(|words| !words.is_empty())
        .ok_or_else(|| {
            PluginError::permanent(format!(
                "the command {:?} cannot be split into words",
                execution.command
            ))
        })?;
    Ok(ExecutionSpec {
        execution_id: execution.execution_id.clone(),
        job_id: job.job_id.clone(),
        task_id: job.task_id.clone(),
        image: execution.image.clone(),
        argv,
        envs: {
            let mut envs = job.spec.envs.clone();
            if let Some(slot) = execution.scheduled_at {
                envs.insert(
                    "FASTLANE_SCHEDULED_AT".to_owned(),
                    slot.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                );
            }
            envs
        },
        extra_hosts: job.spec.additional_dns_entries.clone(),
        cpu_limit: job.spec.cpu_limit,
        memory_limit: job.spec.memory_limit,
        pool: None,
        pull_policy: job.spec.pull_policy,
        timeout: Some(Duration::from_secs(
            job.spec.timeout_seconds.min(hard_timeout_seconds),
        )),
        start_before: job.spec.expiration,
    })
}

/// Takes the execution from its stored state to its end, one step per
/// status (see the module's table); each step is stored before the next.
async fn steps(
    services: &Services,
    job: &Job,
    execution: &mut Execution,
    ticket: Ticket,
) -> Result<Outcome, StepError> {
    if execution.status.is_final() {
        release(services, execution).await;
        return Ok(Outcome::Finished);
    }
    let spec = spec(
        job,
        execution,
        services.config.hard_execution_timeout_seconds,
    )?;
    if execution.status == ExecutionStatus::Enqueued && expire(job, execution) {
        return Ok(finish(services, job, execution.clone()).await);
    }
    let placement = match &execution.placement {
        Some(placement) => {
            // Placed before: nothing to wait for in line.
            drop(ticket);
            placement.clone()
        }
        None => match timed(
            services,
            "place",
            place(services, job, execution, &spec, ticket),
        )
        .await?
        {
            Some(placement) => placement,
            None => return Ok(Outcome::Parked),
        },
    };
    let handle = match &execution.handle {
        Some(handle) => handle.clone(),
        None => {
            timed(
                services,
                "start",
                start(services, job, execution, &spec, &placement),
            )
            .await?
        }
    };
    watch(services, job, execution, &handle).await
}

/// Runs one step, and records how long it took in
/// `fastlane_execution_step_seconds{step}`.
async fn timed<T>(
    services: &Services,
    step: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    let began = std::time::Instant::now();
    let result = work.await;
    services.metrics.observe(
        "fastlane_execution_step_seconds",
        &[("step", step)],
        began.elapsed().as_secs_f64(),
    );
    result
}

/// `enqueued`, past the job's expiration: marks the execution expired.
fn expire(job: &Job, execution: &mut Execution) -> bool {
    let now = Utc::now();
    let Some(expiration) = job.spec.expiration.filter(|e| now > *e) else {
        return false;
    };
    execution.status = ExecutionStatus::Expired;
    execution.finished_at = Some(now);
    execution.error = Some(format!(
        "Job was supposed to be done before {}, but was started at {}.",
        expiration.to_rfc3339(),
        now.to_rfc3339()
    ));
    true
}

/// `enqueued` → `pulling`: a slot in the admission line, then a host.
/// `None` when the execution waits in line.
async fn place(
    services: &Services,
    job: &Job,
    execution: &mut Execution,
    spec: &ExecutionSpec,
    ticket: Ticket,
) -> Result<Option<fastlane_sdk::Placement>, StepError> {
    let executor = services.executors.for_task(&execution.task_id);
    let ask = crate::admission::ask(services, job, chrono::Utc::now());
    // Executions ask for slots in the order they came off the queue.
    ticket.wait().await;
    let admitted = services
        .store
        .admit(&execution.execution_id, &ask, &services.config.flow.policy)
        .await;
    drop(ticket);
    let held = match admitted? {
        Admission::Admitted { gates } => gates,
        Admission::Waiting { ahead } => {
            info!(execution = %execution.execution_id, ahead, "waiting for a slot");
            return Ok(None);
        }
    };
    let spec = ExecutionSpec {
        pool: crate::admission::pool_held(executor.name(), &held),
        ..spec.clone()
    };
    let placement = executor.place(&spec).await?;
    execution.placement = Some(placement.clone());
    execution.status = ExecutionStatus::Pulling;
    services.store.save_execution(execution, None).await?;
    Ok(Some(placement))
}

/// `pulling` → `running`: the image ready, the container started (or the
/// one a previous try started found), the start announced.
async fn start(
    services: &Services,
    job: &Job,
    execution: &mut Execution,
    spec: &ExecutionSpec,
    placement: &fastlane_sdk::Placement,
) -> Result<RunHandle, StepError> {
    let store = &services.store;
    let executor = services.executors.for_task(&execution.task_id);
    let detail = super::progress::Detail::start(store.clone(), execution.execution_id.clone());
    let prepared = tokio::select! {
        prepared = executor.prepare(spec, placement, &detail) => prepared,
        () = stopped_meanwhile(services, &execution.execution_id) => {
            // Stopped while it was being prepared (a pod waiting for a
            // node, a long pull): it will not start.
            drop(detail);
            executor.abandon(spec, placement).await?;
            info!(execution = %execution.execution_id, "stopped while preparing; abandoned");
            return Err(StepError::Stopped);
        }
    };
    drop(detail);
    if let Err(err) = prepared {
        if err.kind() == ErrorKind::Unavailable {
            // The host did not answer, and nothing was created on it yet:
            // the next try places the execution afresh, on a host that
            // answers, instead of waiting for this one.
            execution.placement = None;
            execution.status = ExecutionStatus::Enqueued;
            store.save_execution(execution, None).await?;
        }
        return Err(err.into());
    }
    let started_at = Utc::now();
    let handle = executor.start(spec, placement).await?;
    execution.started_at.get_or_insert(started_at);
    execution.handle = Some(handle.clone());
    execution.status = ExecutionStatus::Running;
    store.save_execution(execution, None).await?;
    info!(execution = %execution.execution_id, host = %handle.host, container = %handle.id, "running");
    crate::notify::announce(services, job, execution).await?;
    let waited = (started_at - execution.created_at)
        .num_milliseconds()
        .max(0);
    services
        .metrics
        .observe("fastlane_queue_wait_seconds", &[], waited as f64 / 1000.0);
    // A stop that came while the container was starting found no
    // container to stop: stop it now.
    let stored = store.execution(&execution.execution_id).await?;
    if stored.is_some_and(|e| e.status == ExecutionStatus::Stopped) {
        let grace = Duration::from_secs(services.config.stop_grace_seconds);
        executor.stop(&handle, grace).await?;
    }
    Ok(handle)
}

/// Returns once a user has stopped the execution (its stored status is
/// `stopped`), looking every second; never returns otherwise.
async fn stopped_meanwhile(services: &Services, execution_id: &str) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(Some(stored)) = services.store.execution(execution_id).await
            && stored.status == ExecutionStatus::Stopped
        {
            return;
        }
    }
}

/// `running` → final: waits for the exit (or the timeout) while following
/// the output, collects the result and stores it.
async fn watch(
    services: &Services,
    job: &Job,
    execution: &mut Execution,
    handle: &RunHandle,
) -> Result<Outcome, StepError> {
    let store = &services.store;
    let executor = services.executors.for_task(&execution.task_id);
    let handle = handle.clone();

    let timeout = job
        .spec
        .timeout_seconds
        .min(services.config.hard_execution_timeout_seconds);
    let started_at = execution.started_at.unwrap_or_else(Utc::now);
    let deadline =
        started_at + chrono::Duration::seconds(i64::try_from(timeout).unwrap_or(i64::MAX));
    let remaining = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);

    let cap = services.config.execution_log_max_bytes;
    let follower = Follower(tokio::spawn(crate::logs::follow(
        services.store.clone(),
        executor.clone(),
        handle.clone(),
        execution.execution_id.clone(),
        cap,
    )));
    let waited = tokio::time::timeout(remaining, executor.wait(&handle)).await;
    // From here on the run has ended: the rest is collecting its result.
    let ended = std::time::Instant::now();
    // The run has ended (or was stopped): its output ends too, soon.
    follower.finish().await;
    match waited {
        Ok(Err(err)) if err.kind() == ErrorKind::NotFound => {
            execution.status = ExecutionStatus::Failed;
            execution.finished_at = Some(Utc::now());
            execution.error = Some(format!(
                "the container of this execution disappeared from {}: {}",
                handle.host,
                err.message()
            ));
            services.reporter.report(
                "monitoring",
                execution.error.as_deref().unwrap_or_default(),
                execution,
            );
        }
        Ok(Err(err)) if err.kind() == ErrorKind::TimedOut => {
            // The executor's backend ended the run at its own deadline
            // (a Kubernetes Job's): timed out, with what it wrote.
            let output = collected(services, executor, &handle, &execution.execution_id).await;
            (execution.stdout, execution.stderr) = capped(output, cap);
            execution.finished_at = Some(Utc::now());
            execution.status = ExecutionStatus::Timedout;
            execution.error = Some(err.message().to_owned());
        }
        Ok(exit) => {
            let exit = exit?;
            let output = match executor.output(&handle, cap).await {
                // The run's output went with it (a stopped Kubernetes Job's
                // pod): what was followed live stands for it.
                Err(err) if err.kind() == ErrorKind::NotFound => {
                    crate::logs::kept_output(store.as_ref(), &execution.execution_id, cap).await
                }
                output => output?,
            };
            crate::logs::catch_up(store.as_ref(), &execution.execution_id, &output, cap).await;
            execution.exit_code = Some(exit.code);
            (execution.stdout, execution.stderr) = capped(output, cap);
            execution.error = exit.error;
            execution.finished_at = Some(Utc::now());
            execution.status = if exit.code == 0 {
                ExecutionStatus::Done
            } else {
                ExecutionStatus::Failed
            };
        }
        Err(_elapsed) => {
            let grace = Duration::from_secs(services.config.stop_grace_seconds);
            executor.stop(&handle, grace).await?;
            let output = collected(services, executor, &handle, &execution.execution_id).await;
            (execution.stdout, execution.stderr) = capped(output, cap);
            execution.finished_at = Some(Utc::now());
            execution.status = ExecutionStatus::Timedout;
            execution.error = Some(format!("Job execution timed out after {timeout} seconds."));
        }
    }
    let outcome = finish(services, job, execution.clone()).await;
    services.metrics.observe(
        "fastlane_execution_step_seconds",
        &[("step", "collect")],
        ended.elapsed().as_secs_f64(),
    );
    Ok(outcome)
}

/// What a run that ended early wrote: its output if the executor still
/// has it, else what was followed live; the live log completed from it.
async fn collected(
    services: &Services,
    executor: &std::sync::Arc<dyn fastlane_sdk::Executor>,
    handle: &RunHandle,
    execution_id: &str,
) -> fastlane_sdk::RunOutput {
    let (store, cap) = (&services.store, services.config.execution_log_max_bytes);
    let output = match executor.output(handle, cap).await {
        Ok(output) => output,
        Err(_) => crate::logs::kept_output(store.as_ref(), execution_id, cap).await,
    };
    crate::logs::catch_up(store.as_ref(), execution_id, &output, cap).await;
    output
}

/// The task following a run's output, stopped if the step is dropped.
struct Follower(tokio::task::JoinHandle<()>);

impl Follower {
    /// How long following may go on once the run has ended.
    const GRACE: Duration = Duration::from_secs(5);

    /// Lets following end by itself, for a while; whatever it misses is
    /// caught up from the whole output.
    async fn finish(mut self) {
        if tokio::time::timeout(Self::GRACE, &mut self.0)
            .await
            .is_err()
        {
            warn!("following the output did not end with the run; stopped it");
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// stdout and stderr as stored with the execution: each cut at `cap`
/// bytes, with a note saying how much more there was (`more than N` when
/// the executor stopped reading a long stream).
fn capped(output: fastlane_sdk::RunOutput, cap: u64) -> (Option<String>, Option<String>) {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let cut = |text: String, cut: Option<fastlane_sdk::Cut>| match cut {
        // An executor that kept more than asked: cut it here.
        _ if text.len() > cap => fastlane_sdk::text::truncate(&text, cap).0,
        Some(cut) if cut.complete => {
            format!("{text}\n[truncated: {} more bytes]", cut.more_bytes)
        }
        Some(cut) => format!(
            "{text}\n[truncated: more than {} more bytes]",
            cut.more_bytes
        ),
        None => text,
    };
    (
        Some(cut(output.stdout, output.stdout_cut)),
        Some(cut(output.stderr, output.stderr_cut)),
    )
}

/// When a failed execution gets another attempt (if the job has retries
/// left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// When the process exited non-zero.
    OnNonZeroExit,
    /// Also without an exit code: the run was lost with its host.
    AfterLoss,
}

/// Stores a final execution (with the next attempt, when the job has
/// retries left), queues that attempt, and tidies up the container.
async fn finish(services: &Services, job: &Job, execution: Execution) -> Outcome {
    finish_as(services, job, execution, Retry::OnNonZeroExit).await
}

async fn finish_as(
    services: &Services,
    job: &Job,
    mut execution: Execution,
    retry: Retry,
) -> Outcome {
    // A user may have stopped the execution (or the job) meanwhile: that
    // status and reason stand, and a stopped run is not retried.
    let (stored, current_job) = match tokio::try_join!(
        services.store.execution(&execution.execution_id),
        services.store.job(&job.task_id, &job.job_id),
    ) {
        Ok(found) => found,
        Err(err) => {
            warn!(execution = %execution.execution_id, error = %err, "cannot read back; will try again");
            return Outcome::Later(later(1));
        }
    };
    if let Some(stored) = stored.filter(|e| e.status == ExecutionStatus::Stopped) {
        execution.status = ExecutionStatus::Stopped;
        execution.error = stored.error;
        execution.finished_at = stored.finished_at;
    }
    let job = current_job.as_ref().unwrap_or(job);
    let retry = (execution.status == ExecutionStatus::Failed
        && (execution.exit_code.is_some_and(|c| c != 0) || retry == Retry::AfterLoss)
        && !job.stopped
        && job.retry_count < job.spec.retries)
        .then(|| next_attempt(services, job, &execution));
    // Announced before the final status is stored, so that a crash between
    // the two cannot lose the notifications (announcing is idempotent).
    if let Err(err) = crate::notify::announce(services, job, &execution).await {
        warn!(execution = %execution.execution_id, error = %err, "cannot queue notifications; will try again");
        return Outcome::Later(later(1));
    }
    let saved = services
        .store
        .save_execution(&execution, retry.as_ref().map(|(e, _)| e))
        .await;
    if let Err(err) = saved {
        warn!(execution = %execution.execution_id, error = %err, "cannot store the result; will try again");
        return Outcome::Later(later(1));
    }
    info!(
        execution = %execution.execution_id,
        status = %execution.status,
        exit_code = ?execution.exit_code,
        "finished"
    );
    let status = execution.status.as_str();
    let metrics = &services.metrics;
    metrics.count(
        "fastlane_executions_finished_total",
        &[("status", status)],
        1,
    );
    if let (Some(started), Some(finished)) = (execution.started_at, execution.finished_at) {
        let seconds = (finished - started).num_milliseconds().max(0) as f64 / 1000.0;
        metrics.observe(
            "fastlane_execution_duration_seconds",
            &[("status", status)],
            seconds,
        );
    }
    if let Some((next, due)) = &retry {
        // The retry continues this execution's trace.
        let work = Work::RunExecution {
            execution_id: next.execution_id.clone(),
            trace: crate::telemetry::traceparent(),
        };
        if let Err(err) = services.queue.enqueue(JOBS, &work, Some(*due)).await {
            // The retry is stored as enqueued; start-up reconciliation queues it.
            warn!(execution = %next.execution_id, error = %err, "cannot queue the retry");
        }
    }
    release(services, &execution).await;
    // Its slots are free now: the next in line may go.
    services.line.nudge();
    Outcome::Finished
}

/// The retry's execution and when it is due: the job's `backoff`, or the
/// server's `EXPONENTIAL_BACKOFF_*`, for retry number `retry_count + 1`.
fn next_attempt(
    services: &Services,
    job: &Job,
    failed: &Execution,
) -> (Execution, chrono::DateTime<Utc>) {
    let now = Utc::now();
    let config = &services.config;
    let backoff = job.spec.backoff.clone().unwrap_or(fastlane_sdk::Backoff {
        min_ms: config.exponential_backoff_min_ms,
        factor: config.exponential_backoff_factor,
        max_ms: config.exponential_backoff_max_ms,
        jitter: 0.0,
    });
    let delay = retry_delay(&backoff, job.retry_count, random_unit());
    let mut next = Execution::enqueued(
        job,
        &failed.image,
        &failed.command,
        None,
        now,
        uuid::Uuid::new_v4().to_string(),
    );
    // A retry of a slot's run is still that slot's.
    next.scheduled_at = failed.scheduled_at;
    (next, now + delay)
}

/// A number in `[0, 1)`, from the operating system's randomness (by way of
/// a v4 UUID), for jitter.
fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// `min(max, min × factor^retry)`, spread by ±jitter (`unit` in `[0, 1)`).
pub fn retry_delay(backoff: &fastlane_sdk::Backoff, retry: u32, unit: f64) -> chrono::Duration {
    let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
    let base = (backoff.min_ms as f64 * backoff.factor.powi(exponent)).min(backoff.max_ms as f64);
    let spread = 1.0 + backoff.jitter * (2.0 * unit - 1.0);
    chrono::Duration::milliseconds((base * spread).max(0.0) as i64)
}

/// Tells the executor the result is stored (the container is renamed
/// `defunct-…`). Failing here loses nothing, so it is only logged.
async fn release(services: &Services, execution: &Execution) {
    let Some(handle): Option<&RunHandle> = execution.handle.as_ref() else {
        return;
    };
    let executor = services.executors.for_task(&execution.task_id);
    if let Err(err) = executor.release(handle).await {
        warn!(execution = %execution.execution_id, error = %err, "cannot release the container");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_output_is_marked_where_it_was_cut() {
        let output = fastlane_sdk::RunOutput {
            stdout: "0123".to_owned(),
            stderr: "ab".to_owned(),
            stdout_cut: Some(fastlane_sdk::Cut {
                more_bytes: 10,
                complete: true,
            }),
            stderr_cut: Some(fastlane_sdk::Cut {
                more_bytes: 7,
                complete: false,
            }),
        };
        assert_eq!(
            capped(output, 4),
            (
                Some("0123\n[truncated: 10 more bytes]".to_owned()),
                Some("ab\n[truncated: more than 7 more bytes]".to_owned())
            )
        );
        // An executor that kept more than the cap is cut here.
        let whole = fastlane_sdk::RunOutput {
            stdout: "0123456789".to_owned(),
            ..Default::default()
        };
        assert_eq!(
            capped(whole, 4).0.as_deref(),
            Some("0123\n[truncated: 6 more bytes]")
        );
    }

    #[test]
    fn retry_delays_grow_by_the_factor_up_to_the_cap_and_jitter_stays_in_bounds() {
        let backoff = fastlane_sdk::Backoff {
            min_ms: 1000,
            factor: 2.0,
            max_ms: 5000,
            jitter: 0.0,
        };
        let ms = |retry| retry_delay(&backoff, retry, 0.5).num_milliseconds();
        assert_eq!(
            [ms(0), ms(1), ms(2), ms(3), ms(10)],
            [1000, 2000, 4000, 5000, 5000]
        );

        let jittery = fastlane_sdk::Backoff {
            jitter: 0.5,
            ..backoff
        };
        assert_eq!(retry_delay(&jittery, 0, 0.0).num_milliseconds(), 500);
        assert_eq!(retry_delay(&jittery, 0, 0.999_999).num_milliseconds(), 1499);
        for _ in 0..1000 {
            let d = retry_delay(&jittery, 1, random_unit()).num_milliseconds();
            assert!((1000..=3000).contains(&d), "{d}");
        }
    }
}
