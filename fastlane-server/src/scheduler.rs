//! The scheduler: fires delayed and cron jobs at their slots.
//!
//! A firing is a queue message due at its slot on the `schedule` queue
//! ([`Work::FireJob`]); the queue wakes its consumer at the due time, so a
//! job starts within milliseconds of its slot rather than on a polling tick.
//!
//! Every step of a firing is idempotent, which makes each slot fire exactly
//! once however often its message is delivered and however many schedulers
//! run: the slot's execution has an id derived from (job, generation, slot)
//! and is only inserted if absent, and the next slot's message id is derived
//! the same way. Replacing a job's schedule (`PUT`) or stopping it bumps the
//! job's generation, and firings of older generations do nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use fastlane_sdk::{ConcurrencyPolicy, Execution, ExecutionStatus, Job, MissedRuns, Schedule};

use crate::queue::consumer::consume;
use crate::queue::{JOBS, SCHEDULE, Work};
use crate::schedule::CronSchedule;
use crate::services::Services;
use crate::store::{Outgoing, Submission};

/// Namespace of the UUIDs of scheduled executions.
const SLOT_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6661_7374_6c61_6e65_2d73_6c6f_7473_0001);

/// The execution id of `job`'s run for `slot`: the same on every delivery.
pub fn slot_execution_id(job_id: &str, generation: u32, slot: DateTime<Utc>) -> String {
    let name = format!("{job_id}/{generation}/{}", slot.timestamp_millis());
    uuid::Uuid::new_v5(&SLOT_NAMESPACE, name.as_bytes()).to_string()
}

/// The first slot of a delayed or cron job, from `now`.
pub fn first_slot(schedule: &Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match schedule {
        Schedule::Now => None,
        Schedule::At { at } => Some(*at),
        Schedule::Cron {
            expression,
            timezone,
        } => CronSchedule::parse(expression, timezone.as_deref())
            .ok()?
            .next_after(now),
    }
}

/// The work that fires `job` at `slot`.
pub fn firing(job: &Job, slot: DateTime<Utc>) -> Work {
    Work::FireJob {
        task_id: job.task_id.clone(),
        job_id: job.job_id.clone(),
        generation: job.generation,
        slot,
    }
}

/// The message that fires `job` at `slot`, due then, on the schedule queue.
pub fn firing_message(job: &Job, slot: DateTime<Utc>) -> anyhow::Result<Outgoing> {
    crate::outbox::message(SCHEDULE, &firing(job, slot), slot)
}

/// The message that runs `execution` now, on the jobs queue.
pub fn run_now(execution: &Execution, now: DateTime<Utc>) -> anyhow::Result<Outgoing> {
    // The run continues the trace of the request (or firing) that made it.
    let work = Work::RunExecution {
        execution_id: execution.execution_id.clone(),
        trace: crate::telemetry::traceparent(),
    };
    crate::outbox::message(JOBS, &work, now)
}

/// How a new (or replaced) `job` starts: sets its `next_run_at` and returns
/// its first execution with the message that runs it now, or, for a
/// delayed or cron job, no execution and the message that fires its first
/// slot.
pub fn first_run(
    job: &mut Job,
    ip: Option<String>,
    now: DateTime<Utc>,
) -> anyhow::Result<(Option<Execution>, Outgoing)> {
    job.next_run_at = first_slot(&job.spec.schedule, now);
    match job.next_run_at {
        Some(slot) => Ok((None, firing_message(job, slot)?)),
        None => {
            let execution = Execution::enqueued(
                job,
                &job.spec.image,
                &job.spec.command,
                ip,
                now,
                uuid::Uuid::new_v4().to_string(),
            );
            let message = run_now(&execution, now)?;
            Ok((Some(execution), message))
        }
    }
}

/// Firings handled at once. Each is independent (a job's next firing is
/// queued only by the one before it), and firing together lets their
/// writes share commits, so slots due in the same second fire in it.
const FIRINGS_AT_ONCE: usize = 1024;

/// Firings reading the store at once. Their writes go together (they share
/// commits), but a thousand firings reading at the same moment would each
/// take a blocking thread and a connection of their own: on two cores the
/// last of them fired 190 ms late with all reading, 35 ms with four.
const FIRINGS_READING: usize = 4;

/// Consumes the schedule queue until `shutdown`, [`FIRINGS_AT_ONCE`] firings at a time.
pub async fn run(services: Services, shutdown: CancellationToken) {
    let services = Arc::new(services);
    let lease = Duration::from_secs(services.config.queue_lease_seconds);
    info!("scheduler started");
    let queue = Arc::clone(&services.queue);
    let reading = Arc::new(Semaphore::new(FIRINGS_READING));
    consume(queue, SCHEDULE, FIRINGS_AT_ONCE, lease, shutdown, |delivery| {
        let services = Arc::clone(&services);
        let reading = Arc::clone(&reading);
        async move {
            let settled = match fire(&services, &delivery.work, &reading).await {
                Ok(()) => services.queue.ack(&delivery).await,
                Err(err) => {
                    warn!(message = %delivery.id, error = %err, "firing failed; will try again");
                    services
                        .queue
                        .retry_later(&delivery, Duration::from_secs(1))
                        .await
                }
            };
            if let Err(err) = settled {
                warn!(message = %delivery.id, error = %err, "cannot settle schedule message");
            }
        }
    })
    .await;
    info!("scheduler stopped");
}

/// Queues the next firing of every live schedule the store holds (a no-op
/// for firings still queued: their ids are (job, generation, slot)), so
/// schedules outlive a queue that lost its messages. Returns how many were
/// missing. A firing queued again after it ran fires nothing twice: the
/// slot's execution id is derived from the slot.
pub async fn reconcile(services: &Services) -> anyhow::Result<usize> {
    let mut queued = 0;
    for job in services.store.scheduled_jobs().await? {
        if let Some(slot) = job.next_run_at
            && services
                .queue
                .enqueue(SCHEDULE, &firing(&job, slot), Some(slot))
                .await?
        {
            queued += 1;
        }
    }
    Ok(queued)
}

/// Fires the slots of `task_id`'s jobs that passed while it was paused
/// (their firings were dropped, their next run left on the first slot
/// missed): queues each such job's firing for that slot, now, and the
/// firing decides as the job's `missedRuns` says.
pub async fn resume_task(services: &Services, task_id: &str) -> anyhow::Result<()> {
    for job in services.store.scheduled_jobs().await? {
        if job.task_id == task_id
            && let Some(slot) = job.next_run_at
        {
            services
                .queue
                .enqueue(SCHEDULE, &firing(&job, slot), Some(slot))
                .await?;
        }
    }
    Ok(())
}

/// How many missed slots `missedRuns: all` fires when the job does not say.
const DEFAULT_MAX_MISSED_RUNS: u32 = 100;

/// The most slots looked at between a late firing and now.
const MAX_SLOTS_LOOKED_AT: usize = 100_000;

/// The slots a cron job's firing for `slot` fires at `now`, oldest first:
/// `slot` itself, and the slots after it that have passed too, as the
/// job's `missedRuns` says.
fn to_fire(
    job: &Job,
    cron: &CronSchedule,
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let mut missed = Vec::new();
    let mut at = slot;
    while missed.len() < MAX_SLOTS_LOOKED_AT {
        match cron.next_after(at).filter(|next| *next <= now) {
            Some(next) => {
                missed.push(next);
                at = next;
            }
            None => break,
        }
    }
    match job.spec.missed_runs {
        MissedRuns::Skip => vec![slot],
        MissedRuns::Latest => vec![missed.last().copied().unwrap_or(slot)],
        MissedRuns::All => {
            let max = job.spec.max_missed_runs.unwrap_or(DEFAULT_MAX_MISSED_RUNS) as usize;
            let kept = missed.split_off(missed.len().saturating_sub(max));
            std::iter::once(slot).chain(kept).collect()
        }
    }
}

/// The execution of `job`'s run for `slot`, created `now`.
pub fn slot_execution(
    job: &Job,
    generation: u32,
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Execution {
    let mut execution = Execution::enqueued(
        job,
        &job.spec.image,
        &job.spec.command,
        None,
        now,
        slot_execution_id(&job.job_id, generation, slot),
    );
    execution.scheduled_at = Some(slot);
    execution
}

/// Fires one slot, reading the store with one of `reading`'s permits.
/// Safe to repeat.
async fn fire(services: &Services, work: &Work, reading: &Semaphore) -> anyhow::Result<()> {
    let Work::FireJob {
        task_id,
        job_id,
        generation,
        slot,
    } = work
    else {
        anyhow::bail!("not a firing: {work:?}");
    };
    let span = info_span!("firing", job = %job_id, task = %task_id, slot = %slot);
    fire_job(services, reading, task_id, job_id, *generation, *slot)
        .instrument(span)
        .await
}

async fn fire_job(
    services: &Services,
    reading: &Semaphore,
    task_id: &str,
    job_id: &str,
    generation: u32,
    slot: DateTime<Utc>,
) -> anyhow::Result<()> {
    let read = reading.acquire().await?;
    let Some(job) = services.store.job(task_id, job_id).await? else {
        return Ok(());
    };
    if job.generation != generation || job.stopped {
        info!(job = %job_id, "firing of a replaced or stopped schedule ignored");
        return Ok(());
    }
    let now = crate::clock::now();
    // A paused task's slots pass unfired, its next run left at `slot`:
    // resuming fires from there as the job's `missedRuns` says. (A firing
    // that races the pause only waits in line: the gate holds it.)
    if job.next_run_at.is_some_and(|next| next <= slot)
        && services
            .store
            .paused()
            .await?
            .contains(&crate::admission::task_key(task_id))
    {
        info!(job = %job_id, %slot, "slot passes unfired: the task is paused");
        return Ok(());
    }
    let expired = job.spec.expiration.is_some_and(|e| now > e);
    let cron = match &job.spec.schedule {
        Schedule::Cron {
            expression,
            timezone,
        } => {
            Some(CronSchedule::parse(expression, timezone.as_deref()).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    let live = services.store.live_executions(job_id).await?;
    drop(read);
    let mut fired = Vec::new();
    if expired {
        let mut execution = slot_execution(&job, generation, slot, now);
        execution.status = ExecutionStatus::Expired;
        execution.finished_at = Some(now);
        execution.error = Some(format!(
            "Job was supposed to be done before {}, but was started at {}.",
            job.spec
                .expiration
                .map(|e| e.to_rfc3339())
                .unwrap_or_default(),
            now.to_rfc3339()
        ));
        crate::notify::announce(services, &job, &execution).await?;
        services.store.insert_execution(&execution).await?;
    } else {
        let mut slots = match &cron {
            Some(cron) => to_fire(&job, cron, slot, now),
            None => vec![slot],
        };
        let own = |s: &DateTime<Utc>| {
            let id = slot_execution_id(job_id, generation, *s);
            live.iter().any(|e| e.execution_id == id)
        };
        match job.spec.concurrency_policy {
            ConcurrencyPolicy::Allow => {}
            // Only the first can start while nothing else is live; the
            // others would find it live.
            ConcurrencyPolicy::Forbid => {
                slots.truncate(1);
                if !live.is_empty() && !slots.iter().any(own) {
                    info!(job = %job_id, %slot, "slot skipped: the previous run is still live (concurrencyPolicy Forbid)");
                    slots.clear();
                }
            }
            // Each would stop the one before: only the latest runs.
            ConcurrencyPolicy::Replace => {
                slots.drain(..slots.len().saturating_sub(1));
                let keep: Vec<String> = slots
                    .iter()
                    .map(|s| slot_execution_id(job_id, generation, *s))
                    .collect();
                for old in live.iter().filter(|e| !keep.contains(&e.execution_id)) {
                    crate::control::stop_execution(services, old, "replaced by the next cron run")
                        .await?;
                }
            }
        }
        fired = slots;
    }

    // The next slot (none for one-shot jobs, nor for jobs past expiration).
    let next = match &cron {
        Some(cron) if !expired => cron.next_after(now.max(slot)),
        _ => None,
    };
    // The slots' runs, their messages and the next firing in one write (a
    // run that exists, from an earlier delivery of this firing, is kept).
    let executions: Vec<Execution> = fired
        .iter()
        .map(|at| slot_execution(&job, generation, *at, now))
        .collect();
    let starts = executions
        .iter()
        .map(|execution| {
            let message = run_now(execution, now)?;
            Ok(crate::admission::start(services, &job, execution, message))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (waiting, mut outgoing) = crate::admission::split(starts);
    if let Some(next) = next {
        outgoing.push(firing_message(&job, next)?);
    }
    if !outgoing.is_empty() || !waiting.is_empty() {
        services
            .store
            .submit(Submission {
                executions: &executions,
                outgoing: &outgoing,
                waiting: &waiting,
                keep_existing: true,
                ..Submission::default()
            })
            .await?;
        services.outbox.nudge();
        if !waiting.is_empty() {
            services.line.nudge();
        }
    }
    for at in &fired {
        let lateness_ms = (now - *at).num_milliseconds();
        info!(job = %job_id, slot = %at, lateness_ms, "fired");
        services.metrics.observe(
            "fastlane_schedule_lateness_seconds",
            &[],
            lateness_ms.max(0) as f64 / 1000.0,
        );
    }
    services
        .store
        .set_next_run(job_id, generation, next)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;
    use fastlane_sdk::{Job, JobSpec, Schedule};

    use super::*;
    use crate::config::Config;
    use crate::embedded::Db;
    use crate::queue::sqlite::SqliteQueue;
    use crate::store::sqlite::SqliteStore;

    pub(super) async fn services() -> Services {
        let dir = std::env::temp_dir().join(format!("fastlane-scheduler-{}", uuid::Uuid::new_v4()));
        let env = std::collections::HashMap::from([(
            "DOCKER_HOSTS".to_owned(),
            r#"[{"hosts": ["127.0.0.1:9"]}]"#.to_owned(),
        )]);
        let mut config = Config::load(None, &env).expect("config");
        config.data_dir = dir.clone();
        let db = Db::open(&dir).expect("db");
        let registry = crate::plugins::builtin().expect("plugins");
        Services {
            notifiers: Default::default(),
            metrics: Default::default(),
            reporter: Default::default(),
            libraries: Default::default(),
            executors: crate::executors::Executors::single(
                registry
                    .build_executor("docker", config.docker_executor())
                    .expect("executor"),
            ),
            store: Arc::new(SqliteStore::with_embedded_queue(db.clone())),
            queue: Arc::new(SqliteQueue::new(db).await.expect("queue")),
            outbox: crate::outbox::Outbox::direct(),
            line: Default::default(),
            config: Arc::new(config),
        }
    }

    /// What a firing fires when slots passed since it was due, by the job's
    /// `missedRuns`: `skip` its own slot only, `latest` the latest passed
    /// one, `all` its own and each passed one (the latest `maxMissedRuns`).
    #[test]
    fn missed_slots_fire_as_the_job_says() {
        let cron = CronSchedule::parse("* * * * *", None).expect("cron");
        let slot = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let minute = |n: i64| slot + chrono::Duration::minutes(n);
        let now = minute(5) + chrono::Duration::seconds(30);
        let mut job = cron_job();
        let fired = |job: &Job| to_fire(job, &cron, slot, now);

        assert_eq!(fired(&job), [slot], "skip, the default");
        job.spec.missed_runs = MissedRuns::Latest;
        assert_eq!(fired(&job), [minute(5)]);
        job.spec.missed_runs = MissedRuns::All;
        assert_eq!(fired(&job), (0..=5).map(minute).collect::<Vec<_>>());
        job.spec.max_missed_runs = Some(2);
        assert_eq!(fired(&job), [slot, minute(4), minute(5)]);
        // On time, nothing was missed whatever the policy.
        assert_eq!(to_fire(&job, &cron, slot, slot), [slot]);
        job.spec.missed_runs = MissedRuns::Latest;
        assert_eq!(to_fire(&job, &cron, slot, slot), [slot]);
    }

    pub(super) fn cron_job() -> Job {
        let now = Utc::now();
        Job {
            job_id: uuid::Uuid::new_v4().to_string(),
            task_id: "cron".to_owned(),
            created_at: now,
            last_modified_at: now,
            request_ip: None,
            retry_count: 0,
            generation: 3,
            next_run_at: None,
            stopped: false,
            spec: JobSpec {
                image: "busybox".to_owned(),
                command: "true".to_owned(),
                envs: Default::default(),
                custom: None,
                retries: 0,
                timeout_seconds: 60,
                expiration: None,
                schedule: Schedule::Cron {
                    expression: "0 * * * *".to_owned(),
                    timezone: None,
                },
                notify: Default::default(),
                webhooks: Default::default(),
                additional_dns_entries: Vec::new(),
                backoff: None,
                concurrency_policy: Default::default(),
                missed_runs: Default::default(),
                max_missed_runs: None,
                cpu_limit: None,
                memory_limit: None,
                max_concurrent: None,
                priority: None,
                concurrency_key: None,
                max_concurrent_per_key: None,
                pull_policy: None,
            },
        }
    }

    #[tokio::test]
    async fn a_slot_delivered_many_times_at_once_fires_once() {
        let services = services().await;
        let job = cron_job();
        services
            .store
            .submit(crate::store::Submission::job(&job))
            .await
            .expect("stored");
        let slot = Utc::now();
        let work = firing(&job, slot);
        // Four schedulers receive the same firing at the same time.
        let reading = Semaphore::new(FIRINGS_READING);
        let fired =
            futures_util::future::join_all((0..4).map(|_| fire(&services, &work, &reading))).await;
        assert!(fired.iter().all(Result::is_ok), "{fired:?}");

        let (executions, total) = services
            .store
            .executions(&job.job_id, 10)
            .await
            .expect("read");
        assert_eq!(total, 1, "{executions:?}");
        assert_eq!(
            executions[0].execution_id,
            slot_execution_id(&job.job_id, 3, slot)
        );
        // The run joined the line once; a pass over it queues it once.
        assert_eq!(
            services.store.waiting().await.expect("line"),
            [slot_execution_id(&job.job_id, 3, slot)]
        );
        crate::admission::wake(&services).await;
        let lengths = services.queue.lengths().await.expect("lengths");
        assert_eq!(lengths.get(JOBS), Some(&1), "one run queued");
        assert_eq!(lengths.get(SCHEDULE), Some(&1), "one next slot scheduled");
        let stored = services
            .store
            .job(&job.task_id, &job.job_id)
            .await
            .expect("read")
            .expect("job");
        let next = stored.next_run_at.expect("next slot recorded");
        assert!(next > slot && next.timestamp() % 3600 == 0, "{next}");
    }

    #[tokio::test]
    async fn a_firing_of_a_replaced_generation_does_nothing() {
        let services = services().await;
        let mut job = cron_job();
        services
            .store
            .submit(crate::store::Submission::job(&job))
            .await
            .expect("stored");
        let stale = firing(&job, Utc::now());
        job.generation += 1;
        services.store.save_job(&job).await.expect("replaced");
        fire(&services, &stale, &Semaphore::new(1))
            .await
            .expect("fired");
        let (_, total) = services
            .store
            .executions(&job.job_id, 10)
            .await
            .expect("read");
        assert_eq!(total, 0);
        let lengths = services.queue.lengths().await.expect("lengths");
        assert_eq!(lengths.get(SCHEDULE).copied().unwrap_or(0), 0);
    }
}

/// The scheduler against paused time: firings happen exactly at their slot,
/// every slot of a cron job fires once, and a crowd due at the same second
/// all fires in that second.
#[cfg(test)]
mod timing_tests {
    use std::time::Duration;

    use fastlane_sdk::Schedule;
    use tokio_util::sync::CancellationToken;

    use super::tests::{cron_job, services};
    use super::*;
    use crate::clock;

    async fn fired(services: &Services, job: &Job) -> Vec<DateTime<Utc>> {
        let (executions, _) = services
            .store
            .executions(&job.job_id, 1000)
            .await
            .expect("read");
        let mut times: Vec<_> = executions.iter().map(|e| e.created_at).collect();
        times.sort();
        times
    }

    #[tokio::test(start_paused = true)]
    async fn a_cron_job_fires_on_every_slot_exactly_on_time() {
        let services = services().await;
        let mut job = cron_job();
        job.spec.schedule = Schedule::Cron {
            expression: "*/10 * * * * *".to_owned(),
            timezone: None,
        };
        let start = clock::now();
        let first = first_slot(&job.spec.schedule, start).expect("fires");
        job.next_run_at = Some(first);
        services
            .store
            .submit(crate::store::Submission::job(&job))
            .await
            .expect("stored");
        services
            .queue
            .enqueue(SCHEDULE, &firing(&job, first), Some(first))
            .await
            .expect("queued");

        let shutdown = CancellationToken::new();
        let scheduler = tokio::spawn(run(services.clone(), shutdown.clone()));
        tokio::time::sleep(Duration::from_secs(65)).await;
        shutdown.cancel();
        scheduler.await.expect("scheduler");

        let end = start + chrono::Duration::seconds(65);
        let mut slots = vec![first];
        while let Some(next) = CronSchedule::parse("*/10 * * * * *", None)
            .expect("cron")
            .next_after(*slots.last().expect("a slot"))
            .filter(|n| *n <= end)
        {
            slots.push(next);
        }
        let fired = fired(&services, &job).await;
        assert_eq!(fired.len(), slots.len(), "one firing per slot: {fired:?}");
        for (at, slot) in fired.iter().zip(&slots) {
            // The queue keeps due times in milliseconds.
            let late = (*at - *slot).num_microseconds().unwrap_or(i64::MAX);
            assert!((0..1000).contains(&late), "fired {late} µs after {slot}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_due_in_the_same_second_all_fire_in_it() {
        let services = services().await;
        let due = clock::now() + chrono::Duration::seconds(5);
        let mut jobs = Vec::new();
        for _ in 0..50 {
            let mut job = cron_job();
            job.spec.schedule = Schedule::At { at: due };
            services
                .store
                .submit(crate::store::Submission::job(&job))
                .await
                .expect("stored");
            services
                .queue
                .enqueue(SCHEDULE, &firing(&job, due), Some(due))
                .await
                .expect("queued");
            jobs.push(job);
        }
        let shutdown = CancellationToken::new();
        let scheduler = tokio::spawn(run(services.clone(), shutdown.clone()));
        tokio::time::sleep(Duration::from_secs(10)).await;
        shutdown.cancel();
        scheduler.await.expect("scheduler");
        for job in &jobs {
            assert_eq!(fired(&services, job).await, [due], "fired once, on time");
        }
        // Every run waits in line (nothing passes over it here).
        assert_eq!(services.store.waiting().await.expect("line").len(), 50);
        let lengths = services.queue.lengths().await.expect("lengths");
        assert_eq!(
            lengths.get(SCHEDULE).copied().unwrap_or(0),
            0,
            "one-shot jobs schedule nothing more"
        );
    }
}
