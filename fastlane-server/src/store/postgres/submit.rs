//! A [`Submission`] written in one transaction: one statement a table,
//! each inserting all of its rows from arrays (`unnest`), pipelined (sent
//! back to back, their answers read together), so a transaction costs three
//! round trips (`BEGIN`, the rows, `COMMIT`) and a handful of statements
//! however many rows it holds. The statements are prepared once per pooled
//! connection.
//!
//! Concurrent submissions share those transactions: see `group.rs`.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::try_join_all;
use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::rows::{document, pg};
use crate::store::line::class_key;
use crate::store::{IdempotencyRecord, Outgoing, StoreError, Submission, task_words};

/// The `last_modified_at` of task `t`: its newest job's (the
/// `jobs_by_task` index holds it), else the task row's own.
pub(super) const TASK_MODIFIED: &str = "COALESCE((SELECT MAX(j.last_modified_at) FROM jobs j
     WHERE j.task_id = t.task_id), t.last_modified_at)";

/// An execution, unless one with its id is stored.
pub(super) const NEW_EXECUTION: &str =
    "INSERT INTO executions (execution_id, job_id, created_at, status, data)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (execution_id) DO NOTHING";

/// An execution saved, keeping its stored dispatches, unless it is stopped
/// and the save is not.
pub(super) const EXECUTION: &str =
    "INSERT INTO executions (execution_id, job_id, created_at, status, data)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (execution_id) DO UPDATE SET status = EXCLUDED.status,
         data = jsonb_set(EXCLUDED.data, '{dispatches}',
                          COALESCE(NULLIF(executions.data -> 'dispatches', 'null'), '[]'))
     WHERE executions.status <> 'stopped' OR EXCLUDED.status = 'stopped'";

/// Tasks, each created when new. An existing task's row is left alone: every
/// submission to a task updating its one row made them wait on each
/// other's commits (half the rate of submissions spread over tasks). Its
/// `last_modified_at` is read as its newest job's ([`TASK_MODIFIED`]).
const TASKS: &str = "INSERT INTO tasks (task_id, created_at, last_modified_at, words)
     SELECT t, m, m, w FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS u(t, m, w)
     ON CONFLICT (task_id) DO NOTHING";

/// Jobs, created or replaced.
const JOBS: &str = "INSERT INTO jobs (job_id, task_id, last_modified_at, data)
     SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[])
     ON CONFLICT (job_id) DO UPDATE SET last_modified_at = EXCLUDED.last_modified_at,
                                        data = EXCLUDED.data";

/// Executions, as [`NEW_EXECUTION`], from arrays.
const NEW_EXECUTIONS: &str =
    "INSERT INTO executions (execution_id, job_id, created_at, status, data)
     SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::jsonb[])
     ON CONFLICT (execution_id) DO NOTHING";

/// Executions, as [`EXECUTION`], from arrays.
const EXECUTIONS: &str = "INSERT INTO executions (execution_id, job_id, created_at, status, data)
     SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::jsonb[])
     ON CONFLICT (execution_id) DO UPDATE SET status = EXCLUDED.status,
         data = jsonb_set(EXCLUDED.data, '{dispatches}',
                          COALESCE(NULLIF(executions.data -> 'dispatches', 'null'), '[]'))
     WHERE executions.status <> 'stopped' OR EXCLUDED.status = 'stopped'";

const DELIVERIES: &str = "INSERT INTO deliveries (id, queue, payload, due_ms)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
     ON CONFLICT (id) DO NOTHING";

/// Queue messages into the outbox, from arrays.
pub(super) const OUTBOX: &str = "INSERT INTO outbox (id, queue, payload, due_ms)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
     ON CONFLICT (id) DO NOTHING";

/// Waiters joining the line, in order (one already there keeps its place).
const LINE: &str = "INSERT INTO admission_line (execution_id, gates, class, since, trace)
     SELECT * FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::timestamptz[], $5::text[])
     ON CONFLICT (execution_id) DO NOTHING";

/// As [`LINE`], for the runs of a firing that may have been made (and let
/// go) by an earlier delivery of it: only a run still waiting to start that
/// holds no slot joins.
const LINE_KEPT: &str = "INSERT INTO admission_line (execution_id, gates, class, since, trace)
     SELECT u.* FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::timestamptz[], $5::text[])
         AS u(i, g, c, s, t)
     WHERE EXISTS (SELECT 1 FROM executions e WHERE e.execution_id = u.i AND e.status = 'enqueued')
       AND NOT EXISTS (SELECT 1 FROM admission_slots a WHERE a.execution_id = u.i)
     ON CONFLICT (execution_id) DO NOTHING";

const IDEMPOTENCY: &str = "INSERT INTO idempotency (key, fingerprint, response, expires_ms)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint,
         response = excluded.response, expires_ms = excluded.expires_ms
     WHERE idempotency.expires_ms <= $5";

/// Parameters of one row.
type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

/// `(execution_id, job_id, created_at, status, document)`.
type ExecutionRow = (String, String, DateTime<Utc>, String, Value);

/// `(execution_id, ask, class, since, trace)`.
type LineRow = (String, Value, String, DateTime<Utc>, Option<String>);

/// One submission's rows, owned, so that a writer can hold many.
#[derive(Debug)]
pub(super) struct Rows {
    /// `(task_id, last_modified_at, words)`.
    tasks: Vec<(String, DateTime<Utc>, String)>,
    /// `(job_id, task_id, last_modified_at, document)`.
    jobs: Vec<(String, String, DateTime<Utc>, Value)>,
    executions: Vec<ExecutionRow>,
    /// Executions joining the admission line.
    waiting: Vec<LineRow>,
    /// Stored executions are kept, not replaced.
    keep_existing: bool,
    /// Owed deliveries, also queued through the outbox.
    owed: Vec<Outgoing>,
    /// Every message for the queue, the owed ones included.
    outbox: Vec<Outgoing>,
}

impl Rows {
    /// The rows `submission` writes (its idempotency record aside).
    pub(super) fn of(submission: &Submission<'_>) -> Result<Self, StoreError> {
        let tasks = submission
            .jobs
            .iter()
            .map(|job| {
                let words = format!(" {} ", task_words(&job.task_id).join(" "));
                (job.task_id.clone(), job.last_modified_at, words)
            })
            .collect();
        let jobs = submission
            .jobs
            .iter()
            .map(|job| {
                Ok((
                    job.job_id.clone(),
                    job.task_id.clone(),
                    job.last_modified_at,
                    document(job)?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        let executions = submission
            .executions
            .iter()
            .map(|run| {
                Ok((
                    run.execution_id.clone(),
                    run.job_id.clone(),
                    run.created_at,
                    run.status.as_str().to_owned(),
                    document(run)?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        let waiting = submission
            .waiting
            .iter()
            .map(|w| {
                Ok((
                    w.execution_id.clone(),
                    document(&w.ask)?,
                    class_key(&w.ask),
                    w.ask.since,
                    w.trace.clone(),
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Self {
            tasks,
            jobs,
            executions,
            waiting,
            keep_existing: submission.keep_existing,
            owed: submission.owed.to_vec(),
            outbox: submission
                .outgoing
                .iter()
                .chain(submission.owed)
                .cloned()
                .collect(),
        })
    }

    pub(super) fn len(&self) -> usize {
        self.tasks.len()
            + self.jobs.len()
            + self.executions.len()
            + self.waiting.len()
            + self.outbox.len()
    }
}

/// Writes `submission` with its idempotency record in a transaction of its
/// own; false when its key holds another live record (nothing is written).
pub(super) async fn write_keyed(
    client: &mut deadpool_postgres::Object,
    submission: Submission<'_>,
    record: &IdempotencyRecord,
) -> Result<bool, StoreError> {
    let rows = Rows::of(&submission)?;
    let now_ms = Utc::now().timestamp_millis();
    let tx = client.transaction().await.map_err(pg)?;
    let key = tx.prepare_cached(IDEMPOTENCY).await.map_err(pg)?;
    // A concurrent request with the same key waits here for the first to
    // commit, then finds its record.
    let params: [&(dyn ToSql + Sync); 5] = [
        &record.key,
        &record.fingerprint,
        &record.response,
        &record.expires_ms,
        &now_ms,
    ];
    if tx.execute(&key, &params).await.map_err(pg)? == 0 {
        return Ok(false);
    }
    write_rows(&tx, &[&rows])
        .await
        .map_err(WriteError::into_store)?;
    tx.commit().await.map_err(pg)?;
    Ok(true)
}

/// Writes the rows of `batch` in `tx`. New tasks are written in id order,
/// the one order every writer shares, so that two transactions creating
/// the same tasks wait on each other instead of deadlocking; jobs and
/// executions keep their submission's order (it numbers them). A batch in
/// which two submissions write one job or execution is refused
/// ([`WriteError::Overlap`]): one statement cannot write a row twice, and
/// such submissions are written one after the other.
pub(super) async fn write_rows(tx: &Transaction<'_>, batch: &[&Rows]) -> Result<(), WriteError> {
    let mut tasks: Vec<_> = batch.iter().flat_map(|rows| &rows.tasks).collect();
    // The first of a task's rows creates it; the others would be no-ops.
    tasks.sort_by(|a, b| a.0.cmp(&b.0));
    tasks.dedup_by(|a, b| a.0 == b.0);
    let jobs: Vec<_> = batch.iter().flat_map(|rows| &rows.jobs).collect();
    let mut executions: [Vec<_>; 2] = [Vec::new(), Vec::new()];
    let mut waiting: [Vec<_>; 2] = [Vec::new(), Vec::new()];
    for rows in batch {
        executions[usize::from(rows.keep_existing)].extend(&rows.executions);
        waiting[usize::from(rows.keep_existing)].extend(&rows.waiting);
    }
    let twice = |mut ids: Vec<&str>| {
        ids.sort_unstable();
        ids.windows(2).any(|w| w[0] == w[1])
    };
    if twice(jobs.iter().map(|j| j.0.as_str()).collect())
        || twice(executions.iter().flatten().map(|e| e.0.as_str()).collect())
    {
        return Err(WriteError::Overlap);
    }
    let [replaced, kept] = executions;
    let owed: Vec<&Outgoing> = batch.iter().flat_map(|rows| &rows.owed).collect();
    let outbox: Vec<&Outgoing> = batch.iter().flat_map(|rows| &rows.outbox).collect();

    let task_columns = (
        column(&tasks, |t| t.0.as_str()),
        column(&tasks, |t| t.1),
        column(&tasks, |t| t.2.as_str()),
    );
    let job_columns = (
        column(&jobs, |j| j.0.as_str()),
        column(&jobs, |j| j.1.as_str()),
        column(&jobs, |j| j.2),
        column(&jobs, |j| &j.3),
    );
    let (replaced, kept) = (execution_columns(&replaced), execution_columns(&kept));
    let [waiting, waiting_kept] = waiting;
    let (waiting, waiting_kept) = (line_columns(&waiting), line_columns(&waiting_kept));
    let (owed, outbox) = (message_columns(&owed), message_columns(&outbox));

    let mut statements: Vec<(&str, Params<'_>)> = Vec::new();
    if !task_columns.0.is_empty() {
        let (ids, modified, words) = &task_columns;
        statements.push((TASKS, vec![ids, modified, words]));
    }
    if !job_columns.0.is_empty() {
        let (ids, tasks, modified, documents) = &job_columns;
        statements.push((JOBS, vec![ids, tasks, modified, documents]));
    }
    for (sql, (ids, jobs, created, statuses, documents)) in
        [(EXECUTIONS, &replaced), (NEW_EXECUTIONS, &kept)]
    {
        if !ids.is_empty() {
            statements.push((sql, vec![ids, jobs, created, statuses, documents]));
        }
    }
    // After the executions: a kept run's waiter looks its execution up.
    for (sql, (ids, asks, classes, since, traces)) in [(LINE, &waiting), (LINE_KEPT, &waiting_kept)]
    {
        if !ids.is_empty() {
            statements.push((sql, vec![ids, asks, classes, since, traces]));
        }
    }
    for (sql, (ids, queues, payloads, due)) in [(DELIVERIES, &owed), (OUTBOX, &outbox)] {
        if !ids.is_empty() {
            statements.push((sql, vec![ids, queues, payloads, due]));
        }
    }
    let prepared = try_join_all(statements.iter().map(|(sql, _)| tx.prepare_cached(sql)))
        .await
        .map_err(WriteError::of)?;
    // Polled together, the statements are pipelined on the connection; the
    // server still runs them in this order.
    try_join_all(
        prepared
            .iter()
            .zip(statements)
            .map(|(statement, (_, params))| tx.execute_raw(statement, params)),
    )
    .await
    .map_err(WriteError::of)?;
    Ok(())
}

/// One column of `rows`, as an array parameter.
fn column<'a, R: 'a, T>(rows: &[&'a R], value: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(|row| value(row)).collect()
}

/// The columns of executions' rows.
type ExecutionColumns<'a> = (
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<DateTime<Utc>>,
    Vec<&'a str>,
    Vec<&'a Value>,
);

fn execution_columns<'a>(rows: &[&'a ExecutionRow]) -> ExecutionColumns<'a> {
    (
        column(rows, |e| e.0.as_str()),
        column(rows, |e| e.1.as_str()),
        column(rows, |e| e.2),
        column(rows, |e| e.3.as_str()),
        column(rows, |e| &e.4),
    )
}

/// The columns of waiters' rows.
type LineColumns<'a> = (
    Vec<&'a str>,
    Vec<&'a Value>,
    Vec<&'a str>,
    Vec<DateTime<Utc>>,
    Vec<Option<&'a str>>,
);

fn line_columns<'a>(rows: &[&'a LineRow]) -> LineColumns<'a> {
    (
        column(rows, |w| w.0.as_str()),
        column(rows, |w| &w.1),
        column(rows, |w| w.2.as_str()),
        column(rows, |w| w.3),
        column(rows, |w| w.4.as_deref()),
    )
}

/// The columns of queue messages.
pub(super) type MessageColumns<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>, Vec<i64>);

pub(super) fn message_columns<'a>(messages: &[&'a Outgoing]) -> MessageColumns<'a> {
    (
        column(messages, |m| m.id.as_str()),
        column(messages, |m| m.queue.as_str()),
        column(messages, |m| m.payload.as_str()),
        column(messages, |m| m.due_ms),
    )
}

/// Why a transaction was not written.
#[derive(Debug, Clone)]
pub(super) enum WriteError {
    /// Two submissions of the batch write one row.
    Overlap,
    /// The server refused a statement (a deadlock, a constraint): nothing
    /// was written, and the submissions may be tried one by one.
    Refused(StoreError),
    /// The store could not be reached, or the commit's outcome is unknown:
    /// trying again could write twice.
    Store(StoreError),
}

impl WriteError {
    /// A driver error, refused or not.
    fn of(err: tokio_postgres::Error) -> Self {
        if err.as_db_error().is_some() {
            Self::Refused(pg(err))
        } else {
            Self::Store(pg(err))
        }
    }

    pub(super) fn into_store(self) -> StoreError {
        match self {
            Self::Overlap => StoreError::Unavailable(
                "postgres: one submission writes a job or an execution twice".to_owned(),
            ),
            Self::Refused(err) | Self::Store(err) => err,
        }
    }
}

impl From<StoreError> for WriteError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}
