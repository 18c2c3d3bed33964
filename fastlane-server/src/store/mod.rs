//! Where tasks, jobs and executions are kept: the [`Store`] trait.
//!
//! The embedded implementation ([`sqlite::SqliteStore`]) serves standalone
//! mode; networked stores ([`postgres::PostgresStore`], and
//! `mongo::MongoStore` with the `store-mongo` feature) implement the same
//! trait.

#[cfg(test)]
pub mod conformance;
mod ended;
pub mod line;
#[cfg(feature = "store-mongo")]
pub mod mongo;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use fastlane_sdk::{Execution, ExecutionStatus, Job, Task};

pub use ended::{Ended, EndedColumns, ended_of};
pub use line::{
    Ask, Bucket, Decision, Gate, GateUsage, Hold, LineState, Order, Plan, Policy, Rate,
};

/// A store failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or did not answer.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A record could not be read back.
    #[error("a stored record is unreadable: {0}")]
    Corrupt(String),
}

/// Records that listings skipped because they could not be read, since the
/// process started (`fastlane_unreadable_records_total`).
static UNREADABLE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many stored records listings have skipped as unreadable in this
/// process.
pub fn unreadable_records() -> u64 {
    UNREADABLE.load(std::sync::atomic::Ordering::Relaxed)
}

/// A record a listing read: `Ok(Some)` when readable; `Ok(None)` (with a
/// warning naming it, counted in [`unreadable_records`]) when it cannot be
/// read, so that one bad record never takes a listing down; the error when
/// the store itself failed.
pub fn readable<T>(
    kind: &'static str,
    id: &str,
    read: Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    match read {
        Ok(record) => Ok(Some(record)),
        Err(StoreError::Corrupt(reason)) => {
            UNREADABLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                record = kind,
                id = ?id,
                %reason,
                "skipping a stored record that cannot be read"
            );
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// One record read by its id: an unreadable one is an error naming it.
pub fn named<T>(
    kind: &'static str,
    id: &str,
    read: Result<T, StoreError>,
) -> Result<T, StoreError> {
    read.map_err(|err| match err {
        StoreError::Corrupt(reason) => StoreError::Corrupt(format!("{kind} {id:?}: {reason}")),
        other => other,
    })
}

/// `n` as a signed 64-bit SQL parameter, saturating: an offset or a limit
/// past `i64::MAX` (a page number nobody has) means "none left" / "no
/// limit", never an error.
pub fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A task with its job count, for listings.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSummary {
    /// The task.
    pub task: Task,
    /// How many jobs it has.
    pub jobs_count: u64,
    /// The status of its newest execution, once it has one.
    pub last_status: Option<ExecutionStatus>,
}

/// A job's id and creation time, for task details.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    /// The job id.
    pub job_id: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A job and its newest execution, if it has one yet.
pub type JobWithNewest = (Job, Option<Execution>);

impl From<Job> for JobSummary {
    fn from(job: Job) -> Self {
        Self {
            job_id: job.job_id,
            created_at: job.created_at,
        }
    }
}

/// Where a piece of an execution's log came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// The run's standard output.
    Stdout,
    /// The run's standard error.
    Stderr,
    /// fastlane's own words in the log (where it was cut).
    Notice,
}

impl LogSource {
    /// `stdout`, `stderr` or `notice`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Notice => "notice",
        }
    }

    /// The source named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "stdout" => Some(Self::Stdout),
            "stderr" => Some(Self::Stderr),
            "notice" => Some(Self::Notice),
            _ => None,
        }
    }
}

/// A piece of an execution's log: what the run wrote to stdout and stderr,
/// in the order it wrote it, as one text addressed by byte offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPiece {
    /// Where `text` starts in the log, in bytes.
    pub offset: u64,
    /// Which stream it came from.
    pub source: LogSource,
    /// The text (whole UTF-8 characters).
    pub text: String,
    /// How many bytes of the run's own stream it stands for (0 for
    /// notices; it differs from `text.len()` where bytes were not UTF-8).
    pub raw_len: u64,
}

impl LogPiece {
    /// The offset just past this piece.
    pub fn end(&self) -> u64 {
        self.offset + self.text.len() as u64
    }
}

/// How much of an execution's log is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogTotals {
    /// The log's length in bytes (the next piece's offset).
    pub bytes: u64,
    /// Bytes of the run's stdout kept so far.
    pub stdout: u64,
    /// Bytes of the run's stderr kept so far.
    pub stderr: u64,
    /// True once the log reached its cap: nothing more is kept.
    pub cut: bool,
}

/// The answer to [`Store::admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The execution holds a slot of each of these gates (the keys of one
    /// of its choices) until it is final.
    Admitted {
        /// The gates it holds.
        gates: Vec<String>,
    },
    /// It waits in line; `ahead` executions waited before it.
    Waiting {
        /// Waiting executions ahead of it.
        ahead: u64,
    },
}

/// The executions of one task that wait to start, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskBacklog {
    /// The task.
    pub task_id: String,
    /// Its executions created and not started yet (status `enqueued`).
    pub waiting: u64,
    /// When the oldest of them was created.
    pub oldest: DateTime<Utc>,
}

/// How many tasks `/metrics` reports a backlog for: those with the most
/// waiting (a label per task must stay a bounded set).
pub const BACKLOG_TASKS: usize = 500;

/// Folds unfinished executions into per-task backlogs, most waiting first,
/// at most `limit`.
pub fn backlogs_of(executions: &[Execution], limit: usize) -> Vec<TaskBacklog> {
    let mut by_task: std::collections::HashMap<&str, TaskBacklog> = Default::default();
    for execution in executions
        .iter()
        .filter(|e| e.status == fastlane_sdk::ExecutionStatus::Enqueued)
    {
        let backlog = by_task
            .entry(&execution.task_id)
            .or_insert_with(|| TaskBacklog {
                task_id: execution.task_id.clone(),
                waiting: 0,
                oldest: execution.created_at,
            });
        backlog.waiting += 1;
        backlog.oldest = backlog.oldest.min(execution.created_at);
    }
    let mut backlogs: Vec<TaskBacklog> = by_task.into_values().collect();
    backlogs.sort_by(|a, b| b.waiting.cmp(&a.waiting).then(a.task_id.cmp(&b.task_id)));
    backlogs.truncate(limit);
    backlogs
}

/// The `LIKE` pattern task search matches against a task's words (kept
/// as ` word word `): every task, or those having `word` whole. No escape
/// character: `%` and `_` are taken out of the word instead.
pub fn search_pattern(word: Option<String>) -> String {
    word.map_or_else(
        || "%".to_owned(),
        |w| format!("% {} %", w.replace(['%', '_'], "")),
    )
}

/// The words of a task id, lower-cased, as search matches them.
pub fn task_words(task_id: &str) -> Vec<String> {
    task_id
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// `pieces` (read from a piece at or before `from`) cut to start at byte
/// `from`, or at the first character boundary after it.
pub fn log_from(mut pieces: Vec<LogPiece>, from: u64) -> Vec<LogPiece> {
    pieces.retain(|p| p.end() > from);
    if let Some(first) = pieces.first_mut()
        && first.offset < from
    {
        let mut skip = usize::try_from(from - first.offset).unwrap_or(usize::MAX);
        while !first.text.is_char_boundary(skip) {
            skip += 1;
        }
        first.text.drain(..skip);
        first.offset += skip as u64;
        if first.source != LogSource::Notice {
            // What is left stands for the rest of the raw bytes, at most.
            first.raw_len = first.raw_len.min(first.text.len() as u64);
        }
    }
    pieces.retain(|p| !p.text.is_empty());
    pieces
}

/// A queue message written by the store in the transaction that writes the
/// records it is about (the transactional outbox): the message exists
/// exactly when the records do, and [`crate::outbox`] publishes it to the
/// queue afterwards. The store keeps it as opaque text; the queue's types
/// stay above the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The queue it goes to (`jobs`, `schedule`, …).
    pub queue: String,
    /// The message id; publishing the same id twice queues it once.
    pub id: String,
    /// The message, as the queue keeps it.
    pub payload: String,
    /// When it is due, in milliseconds since the epoch (the time of writing
    /// for a message due at once, which also keeps the queue's FIFO order).
    pub due_ms: i64,
}

/// What an `Idempotency-Key` stands for: the request it came with (as a
/// fingerprint) and the answer given, kept until `expires_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The key, as the client sent it.
    pub key: String,
    /// A digest of the request (route and body) the key was first used with.
    pub fingerprint: String,
    /// The answer, as JSON, to give again.
    pub response: String,
    /// When the key may be used for another request, in milliseconds since
    /// the epoch.
    pub expires_ms: i64,
}

/// What one submission writes in one transaction ([`Store::submit`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Submission<'a> {
    /// The jobs, new or changed (and their tasks, created if new); none for
    /// a retry, which leaves its job as it is.
    pub jobs: &'a [Job],
    /// The executions to run now.
    pub executions: &'a [Execution],
    /// The queue messages that set it going.
    pub outgoing: &'a [Outgoing],
    /// Notification deliveries a status change calls for: queued like
    /// `outgoing`, and also kept as owed until [`Store::settle_deliveries`]
    /// says each was made or given up, so that a queue that loses them
    /// gets them again ([`Store::owed_deliveries`]).
    pub owed: &'a [Outgoing],
    /// The request's `Idempotency-Key`, with the answer it stands for.
    pub idempotency: Option<&'a IdempotencyRecord>,
    /// Executions already stored are left as they are, not replaced (a
    /// backfill: a slot's run that exists, or is being made, stays).
    pub keep_existing: bool,
    /// Executions of `executions` that join the admission line now, in
    /// this order, instead of when a worker reads a message (only where
    /// [`Store::lines_up_on_submit`]): a pass over the line
    /// ([`Store::grant`]) lets them go. One whose execution was already
    /// stored (`keep_existing`) is not added.
    pub waiting: &'a [Waiter],
}

/// An execution joining the admission line as it is written
/// ([`Submission::waiting`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiter {
    /// The execution.
    pub execution_id: String,
    /// What it asks of the line.
    pub ask: Ask,
    /// The trace its run continues (a W3C `traceparent`), handed to the
    /// message that sets it going.
    pub trace: Option<String>,
}

/// The message that sets a waiter going once a pass over the line lets it
/// go, from its execution id and trace; the store keeps it as opaque text.
/// `None` when it cannot be made (the execution keeps its slots and is
/// queued again by start-up reconciliation).
pub type RunMessage = fn(&str, Option<&str>) -> Option<Outgoing>;

/// The answer to [`Store::grant`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Granted {
    /// The executions let go, in the order they go.
    pub ids: Vec<String>,
    /// True when the store gave them their slots and queued their messages
    /// in the step that decided; false when the caller queues a message
    /// for each, and each takes its slots as a worker reads it
    /// ([`Store::admit`]).
    pub queued: bool,
    /// When a waiter held back by a rate limit alone gets its token: the
    /// line is worth a pass again then.
    pub retry_in: Option<std::time::Duration>,
}

impl<'a> Submission<'a> {
    /// Only `job` (a save).
    pub fn job(job: &'a Job) -> Self {
        Self {
            jobs: std::slice::from_ref(job),
            ..Self::default()
        }
    }
}

/// Persistent state of tasks, jobs and executions.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Writes what a submission (a new or replaced job, a retry) writes,
    /// atomically: after a failure none of it exists. With an idempotency
    /// record, nothing is written when a live (unexpired) record holds its
    /// key, and the answer is `false`.
    async fn submit(&self, submission: Submission<'_>) -> Result<bool, StoreError>;

    /// The live record of an idempotency key, if any (expired ones are
    /// absent).
    async fn idempotency(
        &self,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Forgets the idempotency keys expired by `now_ms`; returns how many.
    async fn forget_expired_keys(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// Takes up to `limit` outbox messages, oldest first, for `lease`: a
    /// message taken and not removed within it (its publisher died) is taken
    /// again. Stores that hand their messages straight to the queue
    /// (the embedded store with the embedded queue) have none.
    async fn take_outbox(
        &self,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<Outgoing>, StoreError>;

    /// Removes published outbox messages.
    async fn remove_outbox(&self, ids: &[String]) -> Result<(), StoreError>;

    /// The notification deliveries owed ([`Submission::owed`], not yet
    /// settled), in order of message id, after `after` (`""` for the
    /// first), at most `limit`.
    async fn owed_deliveries(&self, after: &str, limit: usize)
    -> Result<Vec<Outgoing>, StoreError>;

    /// Settles owed deliveries: made, given up, or about records now gone.
    async fn settle_deliveries(&self, ids: &[String]) -> Result<(), StoreError>;

    /// Saves a changed job.
    async fn save_job(&self, job: &Job) -> Result<(), StoreError>;

    /// The job `job_id`, whatever its task.
    async fn find_job(&self, job_id: &str) -> Result<Option<Job>, StoreError>;

    /// The job `job_id` of task `task_id`.
    async fn job(&self, task_id: &str, job_id: &str) -> Result<Option<Job>, StoreError>;

    /// A page of tasks in creation order, and the total number of tasks.
    async fn tasks(&self, offset: u64, limit: u64) -> Result<(Vec<TaskSummary>, u64), StoreError>;

    /// A task and its jobs, most recently changed first.
    async fn task(&self, task_id: &str) -> Result<Option<(Task, Vec<JobSummary>)>, StoreError>;

    /// A page of task `task_id`'s jobs, most recently changed first, each
    /// with its newest execution, and how many there are in all; with
    /// `status`, only the jobs whose newest execution has it. `None` for an
    /// unknown task. This default reads the whole task; the SQL stores
    /// override it with one query over their indexes.
    async fn task_jobs(
        &self,
        task_id: &str,
        status: Option<ExecutionStatus>,
        offset: u64,
        limit: u64,
    ) -> Result<Option<(Vec<JobWithNewest>, u64)>, StoreError> {
        let Some((_, summaries)) = self.task(task_id).await? else {
            return Ok(None);
        };
        let mut matching = Vec::new();
        for summary in summaries {
            let Some(job) = self.job(task_id, &summary.job_id).await? else {
                continue;
            };
            let (mut newest, _) = self.executions(&job.job_id, 1).await?;
            let newest = newest.pop();
            if status.is_none_or(|wanted| newest.as_ref().is_some_and(|e| e.status == wanted)) {
                matching.push((job, newest));
            }
        }
        let total = matching.len() as u64;
        let page = matching
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect();
        Ok(Some((page, total)))
    }

    /// The executions that reached one of `statuses` (final ones) at or
    /// after `since`, the most recently ended first, at most `limit`.
    async fn ended_since(
        &self,
        since: DateTime<Utc>,
        statuses: &[ExecutionStatus],
        limit: u64,
    ) -> Result<Vec<Ended>, StoreError>;

    /// A job's newest executions (at most `limit`, newest first) and how
    /// many it has in all.
    async fn executions(
        &self,
        job_id: &str,
        limit: u64,
    ) -> Result<(Vec<Execution>, u64), StoreError>;

    /// One execution.
    async fn execution(&self, execution_id: &str) -> Result<Option<Execution>, StoreError>;

    /// Saves an execution's new state; with `retry`, also adds the retry's
    /// execution and counts one more retry on the job, in one transaction.
    async fn save_execution(
        &self,
        execution: &Execution,
        retry: Option<&Execution>,
    ) -> Result<(), StoreError>;

    /// Marks a live execution `stopped` at `at` with `reason` and returns
    /// it; `None` when it had already reached a final status. Once stopped,
    /// an execution stays stopped: a later save with another status is
    /// ignored, and one that keeps it `stopped` (how the worker adds the
    /// run's output) is stored.
    async fn mark_stopped(
        &self,
        execution_id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Execution>, StoreError>;

    /// Sets the status detail of an execution that is still `pulling`
    /// (how far its executor's preparation got, [`Execution::detail`]);
    /// does nothing to one that moved on. A store that cannot keep it keeps
    /// this default, which does nothing.
    async fn set_detail(&self, execution_id: &str, detail: &str) -> Result<(), StoreError> {
        let _ = (execution_id, detail);
        Ok(())
    }

    /// Adds a notification attempt to an execution's record. Attempts are
    /// only ever added this way: saving an execution keeps them.
    async fn append_dispatch(
        &self,
        execution_id: &str,
        record: &fastlane_sdk::DispatchRecord,
    ) -> Result<(), StoreError>;

    /// Adds an execution unless one with its id exists; true when added.
    async fn insert_execution(&self, execution: &Execution) -> Result<bool, StoreError>;

    /// Records a job's next scheduled firing, unless the job has moved on to
    /// another `generation` (was replaced or stopped); true when recorded.
    async fn set_next_run(
        &self,
        job_id: &str,
        generation: u32,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError>;

    /// A job's executions that have not reached a final status.
    async fn live_executions(&self, job_id: &str) -> Result<Vec<Execution>, StoreError>;

    /// Jobs that will fire again (delayed or cron, not stopped).
    async fn scheduled_jobs(&self) -> Result<Vec<Job>, StoreError>;

    /// The `limit` jobs that fire soonest, and how many will fire in all.
    /// This default reads them all; the SQL stores override it with
    /// indexed reads.
    async fn soonest_scheduled(&self, limit: u64) -> Result<(Vec<Job>, u64), StoreError> {
        let mut jobs = self.scheduled_jobs().await?;
        let total = jobs.len() as u64;
        jobs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok((jobs, total))
    }

    /// Tasks whose id contains `word` as a whole word (ids split at
    /// characters other than letters and digits), case-insensitive.
    async fn search_tasks(
        &self,
        word: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<TaskSummary>, u64), StoreError>;

    /// Executions that have not reached a final status.
    async fn unfinished_executions(&self) -> Result<Vec<Execution>, StoreError>;

    /// The Docker hosts an operator took out of rotation.
    async fn blacklist(&self) -> Result<Vec<String>, StoreError>;

    /// Adds `host` to the blacklist (`true`) or removes it (`false`).
    async fn set_blacklisted(&self, host: &str, blacklisted: bool) -> Result<(), StoreError>;

    /// Keeps each of `reports` that is newer than what is kept for its
    /// host, and returns the newest report of every host: how processes
    /// share what they learnt of the Docker hosts' health.
    async fn share_host_health(
        &self,
        reports: &[fastlane_sdk::HostHealth],
    ) -> Result<Vec<fastlane_sdk::HostHealth>, StoreError>;

    /// How many tasks and jobs there are.
    async fn counts(&self) -> Result<(u64, u64), StoreError>;

    /// Appends `pieces` to the log of `execution_id`. A piece whose offset
    /// is already kept is ignored, so appending is idempotent.
    async fn append_log(&self, execution_id: &str, pieces: &[LogPiece]) -> Result<(), StoreError>;

    /// Up to `limit` pieces of the log of `execution_id`, from byte `from`
    /// on (the first piece is cut to start there, at a character boundary).
    async fn read_log(
        &self,
        execution_id: &str,
        from: u64,
        limit: u32,
    ) -> Result<Vec<LogPiece>, StoreError>;

    /// Lets `execution_id` take a slot of each gate of the first of its
    /// choices with room (and a token of each of its rate limits), or puts
    /// it in line, ordered as [`line`](self::line) says under `policy`.
    /// Idempotent: an execution holding slots is admitted again with them,
    /// one in line keeps its place. Slots and places of executions that
    /// reached a final status (or no longer exist) are given back first
    /// (the SQL stores give them back in the write that ends the execution).
    /// An ask without choices, or with an empty one, is admitted at once.
    async fn admit(
        &self,
        execution_id: &str,
        ask: &Ask,
        policy: &Policy,
    ) -> Result<Admission, StoreError>;

    /// Gives back the places in line of executions that are final or gone
    /// (reading the line gives back their slots only, so that it costs
    /// what the classes cost, not the line's length): the sweep's chore.
    /// The default does nothing, for stores that give both back in the
    /// write that ends an execution (the SQL stores, by trigger).
    async fn tidy_line(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The admission line as it stands, after giving back the slots of
    /// executions that are final or gone: each class with as
    /// many of its first waiters as could go now. With `focus`, the class
    /// and rank (waiters of its class before it) of that execution, if it
    /// waits.
    async fn line(
        &self,
        focus: Option<&str>,
    ) -> Result<(LineState, Option<(usize, u64)>), StoreError>;

    /// The executions in line that would be admitted now, in the order
    /// they would go, and when to look again for those held back by a rate
    /// limit alone.
    async fn admissible(&self, policy: &Policy) -> Result<(Vec<String>, Decision), StoreError> {
        let (state, _) = self.line(None).await?;
        let decision = line::decide(&state, policy, chrono::Utc::now());
        Ok((decision.ids(&state), decision))
    }

    /// Whether this store keeps [`Submission::waiting`]: executions join
    /// the line in the transaction that makes them. Those that do not get
    /// a message each, and join the line as a worker reads it.
    fn lines_up_on_submit(&self) -> bool {
        false
    }

    /// One pass over the line: lets go the waiters that may go now under
    /// `policy`. Stores that line up on submit give them their slots, leave
    /// the line and queue `run`'s message for each, in one step; this
    /// default only says who may go ([`Granted::queued`] false).
    async fn grant(&self, policy: &Policy, run: RunMessage) -> Result<Granted, StoreError> {
        let _ = run;
        let (ids, decision) = self.admissible(policy).await?;
        Ok(Granted {
            ids,
            queued: false,
            retry_in: decision.retry_in,
        })
    }

    /// Every execution waiting in line, first come first.
    async fn waiting(&self) -> Result<Vec<String>, StoreError>;

    /// Why `execution_id` waits, if it is in line.
    async fn hold(&self, execution_id: &str, policy: &Policy) -> Result<Option<Hold>, StoreError> {
        let (state, place) = self.line(Some(execution_id)).await?;
        Ok(place
            .and_then(|(class, rank)| line::why(&state, class, rank, policy, chrono::Utc::now())))
    }

    /// How full every gate in use is, and which are paused.
    async fn gate_usage(&self) -> Result<Vec<GateUsage>, StoreError> {
        Ok(line::usage_of(&self.line(None).await?.0))
    }

    /// Pauses (`true`) or resumes the gate `key`: while paused, nothing
    /// passes it. Kept until changed. Returns whether this changed it.
    async fn set_paused(&self, key: &str, paused: bool) -> Result<bool, StoreError>;

    /// The paused gates.
    async fn paused(&self) -> Result<Vec<String>, StoreError>;

    /// The tasks with executions waiting to start, most waiting first, at
    /// most `limit`. The default reads every unfinished execution; stores
    /// that can count in their query do.
    async fn backlogs(&self, limit: usize) -> Result<Vec<TaskBacklog>, StoreError> {
        Ok(backlogs_of(&self.unfinished_executions().await?, limit))
    }

    /// How much of the log of `execution_id` is kept.
    async fn log_totals(&self, execution_id: &str) -> Result<LogTotals, StoreError>;

    /// Checks the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlogs_fold_waiting_executions_by_task_most_waiting_first() {
        let at = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default();
        let waiting = |task: &str, created: i64| {
            let job = Job::new(
                task,
                "j",
                fastlane_sdk::JobSpec::new("busybox", "true"),
                at(0),
            );
            Execution::enqueued(
                &job,
                "busybox",
                "true",
                None,
                at(created),
                format!("{task}{created}"),
            )
        };
        let mut running = waiting("b", 1);
        running.status = fastlane_sdk::ExecutionStatus::Running;
        let executions = [waiting("a", 9), waiting("b", 7), waiting("b", 3), running];
        let backlogs = backlogs_of(&executions, 10);
        let folded: Vec<_> = backlogs
            .iter()
            .map(|b| (b.task_id.as_str(), b.waiting, b.oldest))
            .collect();
        assert_eq!(folded, [("b", 2, at(3)), ("a", 1, at(9))]);
        assert_eq!(backlogs_of(&executions, 1).len(), 1);
    }
}
