//! The embedded [`Store`]: tasks, jobs and executions in the standalone
//! server's SQLite file. Jobs and executions are kept as JSON documents with
//! the columns needed to find and order them beside.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use fastlane_sdk::{Execution, ExecutionStatus, Job, Task};

use super::{
    Admission, Ask, Ended, Granted, IdempotencyRecord, JobSummary, JobWithNewest, LineState,
    LogPiece, LogTotals, Outgoing, Policy, RunMessage, Store, StoreError, Submission, TaskBacklog,
    TaskSummary, task_words,
};
use crate::embedded::{Db, DbError};

mod admission;
mod hosts;
mod listing;
mod logs;
mod messages;

/// The embedded store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Db,
    /// Where the messages of [`Store::submit`] go.
    outbox: Outbox,
}

/// Where the embedded store writes the messages that go with its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outbox {
    /// Its own outbox table, which [`crate::outbox`] publishes to a
    /// networked queue.
    Table,
    /// Straight into the embedded queue's table, in the same transaction:
    /// the queue is in this database, so there is nothing to publish later.
    EmbeddedQueue,
}

impl Outbox {
    /// Writes `message` where this outbox keeps it.
    fn write(self, conn: &Connection, message: &Outgoing) -> Result<(), DbError> {
        let Outgoing {
            queue,
            id,
            payload,
            due_ms,
        } = message;
        match self {
            Self::EmbeddedQueue => {
                crate::embedded::insert_message(conn, queue, id, payload, *due_ms)?;
            }
            Self::Table => {
                conn.prepare_cached(
                    "INSERT INTO outbox (id, queue, payload, due_ms)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![id, queue, payload, due_ms])?;
            }
        }
        Ok(())
    }
}

impl SqliteStore {
    /// A store on an open database, keeping outgoing messages in its outbox.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            outbox: Outbox::Table,
        }
    }

    /// A store on an open database that also holds the queue
    /// ([`crate::queue::sqlite::SqliteQueue`] on the same [`Db`]): outgoing
    /// messages are queued in the transaction that writes their records.
    pub fn with_embedded_queue(db: Db) -> Self {
        Self {
            db,
            outbox: Outbox::EmbeddedQueue,
        }
    }
}

/// Fixed-width UTC timestamps, so that text order is time order.
fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(text: &str) -> Result<DateTime<Utc>, DbError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| DbError::Join(format!("bad timestamp {text:?}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(|e| DbError::Join(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, DbError> {
    serde_json::from_str(text).map_err(|e| DbError::Join(format!("unreadable record: {e}")))
}

/// The records of `rows` (`(id, JSON)` pairs) that can be read; the others
/// are skipped with a warning (see [`super::readable`]).
fn read_all<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    rows: Vec<(String, String)>,
) -> Result<Vec<T>, StoreError> {
    let mut records = Vec::with_capacity(rows.len());
    for (id, data) in rows {
        let read = from_json(&data).map_err(StoreError::from);
        records.extend(super::readable(kind, &id, read)?);
    }
    Ok(records)
}

/// The record `id` read from `data`, if any; unreadable is an error naming it.
fn read_one<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    id: &str,
    data: Option<String>,
) -> Result<Option<T>, StoreError> {
    data.map(|d| super::named(kind, id, from_json(&d).map_err(StoreError::from)))
        .transpose()
}

impl From<DbError> for StoreError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Join(message) if message.starts_with("unreadable") => {
                StoreError::Corrupt(message)
            }
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// A job as its rows hold it, encoded before it goes to the writer (whose
/// thread every write waits for).
struct JobRow {
    job_id: String,
    task_id: String,
    modified: String,
    words: String,
    data: String,
}

impl JobRow {
    fn of(job: &Job) -> Result<Self, DbError> {
        Ok(Self {
            job_id: job.job_id.clone(),
            task_id: job.task_id.clone(),
            modified: ts(job.last_modified_at),
            words: format!(" {} ", task_words(&job.task_id).join(" ")),
            data: to_json(job)?,
        })
    }

    fn upsert(&self, conn: &Connection) -> Result<(), DbError> {
        conn.prepare_cached(
            "INSERT INTO tasks (task_id, created_at, last_modified_at, words) VALUES (?1, ?2, ?2, ?3)
             ON CONFLICT (task_id) DO UPDATE SET last_modified_at = excluded.last_modified_at",
        )?
        .execute(params![self.task_id, self.modified, self.words])?;
        conn.prepare_cached(
            "INSERT INTO jobs (job_id, task_id, last_modified_at, data) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (job_id) DO UPDATE SET last_modified_at = excluded.last_modified_at,
                                                data = excluded.data",
        )?
        .execute(params![self.job_id, self.task_id, self.modified, self.data])?;
        Ok(())
    }
}

/// An execution as its row holds it, encoded before it goes to the writer.
struct ExecutionRow {
    execution_id: String,
    job_id: String,
    created: String,
    status: &'static str,
    data: String,
}

impl ExecutionRow {
    fn of(execution: &Execution) -> Result<Self, DbError> {
        Ok(Self {
            execution_id: execution.execution_id.clone(),
            job_id: execution.job_id.clone(),
            created: ts(execution.created_at),
            status: execution.status.as_str(),
            data: to_json(execution)?,
        })
    }

    /// Inserts the execution unless one with its id is stored; returns
    /// whether it was inserted.
    fn insert(&self, conn: &Connection) -> Result<bool, DbError> {
        let added = conn
            .prepare_cached(
                "INSERT INTO executions (execution_id, job_id, created_at, status, data)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (execution_id) DO NOTHING",
            )?
            .execute(params![
                self.execution_id,
                self.job_id,
                self.created,
                self.status,
                self.data
            ])?;
        Ok(added > 0)
    }

    fn upsert(&self, conn: &Connection) -> Result<(), DbError> {
        conn.prepare_cached(
            "INSERT INTO executions (execution_id, job_id, created_at, status, data)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (execution_id) DO UPDATE SET status = excluded.status,
                 data = json_set(excluded.data, '$.dispatches',
                                 json(COALESCE(json_extract(executions.data, '$.dispatches'), '[]')))
             WHERE executions.status != 'stopped' OR excluded.status = 'stopped'",
        )?
        .execute(params![
            self.execution_id,
            self.job_id,
            self.created,
            self.status,
            self.data
        ])?;
        Ok(())
    }
}

/// The queue message in the columns `id, queue, payload, due_ms` of `row`,
/// from column `first` on (the outbox's and the owed deliveries').
fn outgoing_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Outgoing> {
    Ok(Outgoing {
        id: row.get(first)?,
        queue: row.get(first + 1)?,
        payload: row.get(first + 2)?,
        due_ms: row.get(first + 3)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn submit(&self, submission: Submission<'_>) -> Result<bool, StoreError> {
        let Submission {
            jobs,
            executions,
            outgoing,
            owed,
            idempotency,
            keep_existing,
            waiting,
        } = submission;
        let jobs = jobs.iter().map(JobRow::of).collect::<Result<Vec<_>, _>>()?;
        let idempotency = idempotency.cloned();
        let now = Utc::now().timestamp_millis();
        let executions = executions
            .iter()
            .map(ExecutionRow::of)
            .collect::<Result<Vec<_>, _>>()?;
        let waiting = waiting
            .iter()
            .map(admission::LineRow::of)
            .collect::<Result<Vec<_>, _>>()?;
        let owed = owed.to_vec();
        let outgoing = [outgoing, &owed].concat();
        let outbox = self.outbox;
        let queued = !outgoing.is_empty() && outbox == Outbox::EmbeddedQueue;
        // Every row is kept, or none: should this fail, the writer rolls
        // its batch back and runs it again with each operation in a
        // savepoint of its own.
        let created = self
            .db
            .write(move |conn| {
                if let Some(record) = &idempotency
                    && !claim_key(conn, record, now)?
                {
                    return Ok(false);
                }
                for job in &jobs {
                    job.upsert(conn)?;
                }
                let mut kept = std::collections::HashSet::new();
                for execution in &executions {
                    if keep_existing {
                        if !execution.insert(conn)? {
                            kept.insert(execution.execution_id.as_str());
                        }
                    } else {
                        execution.upsert(conn)?;
                    }
                }
                // A run that existed already has its place (or its slots).
                for waiter in waiting.iter().filter(|w| !kept.contains(w.execution_id())) {
                    waiter.join(conn)?;
                }
                for message in &owed {
                    conn.prepare_cached(
                        "INSERT INTO deliveries (id, queue, payload, due_ms)
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
                    )?
                    .execute(params![
                        message.id,
                        message.queue,
                        message.payload,
                        message.due_ms
                    ])?;
                }
                for message in &outgoing {
                    outbox.write(conn, message)?;
                }
                Ok(true)
            })
            .await?;
        if created && queued {
            self.db.messages_added().notify_waiters();
        }
        Ok(created)
    }

    async fn idempotency(
        &self,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        messages::idempotency(self, key, now_ms).await
    }

    async fn forget_expired_keys(&self, now_ms: i64) -> Result<u64, StoreError> {
        messages::forget_expired_keys(self, now_ms).await
    }

    async fn take_outbox(
        &self,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<Outgoing>, StoreError> {
        messages::take_outbox(self, limit, lease).await
    }

    async fn remove_outbox(&self, ids: &[String]) -> Result<(), StoreError> {
        messages::remove_outbox(self, ids).await
    }

    async fn owed_deliveries(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Outgoing>, StoreError> {
        messages::owed_deliveries(self, after, limit).await
    }

    async fn settle_deliveries(&self, ids: &[String]) -> Result<(), StoreError> {
        messages::settle_deliveries(self, ids).await
    }

    async fn save_job(&self, job: &Job) -> Result<(), StoreError> {
        self.submit(Submission::job(job)).await?;
        Ok(())
    }

    async fn find_job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        let id = job_id.to_owned();
        let data: Option<String> = self
            .db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT data FROM jobs WHERE job_id = ?1")?
                    .query_row(params![id], |row| row.get(0))
                    .optional()?)
            })
            .await?;
        read_one("job", job_id, data)
    }

    async fn job(&self, task_id: &str, job_id: &str) -> Result<Option<Job>, StoreError> {
        let (task, id) = (task_id.to_owned(), job_id.to_owned());
        let data: Option<String> = self
            .db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT data FROM jobs WHERE job_id = ?1 AND task_id = ?2")?
                    .query_row(params![id, task], |row| row.get(0))
                    .optional()?)
            })
            .await?;
        read_one("job", job_id, data)
    }

    async fn tasks(&self, offset: u64, limit: u64) -> Result<(Vec<TaskSummary>, u64), StoreError> {
        listing::task_page(self, None, offset, limit).await
    }

    async fn search_tasks(
        &self,
        word: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<TaskSummary>, u64), StoreError> {
        listing::task_page(self, Some(word.to_lowercase()), offset, limit).await
    }

    async fn mark_stopped(
        &self,
        execution_id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Execution>, StoreError> {
        let id = execution_id.to_owned();
        let (execution_id, reason) = (execution_id.to_owned(), reason.to_owned());
        let at = serde_json::to_string(&at).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let data: Option<String> = self
            .db
            .write(move |conn| {
                let tx = conn.savepoint()?;
                let updated = tx.execute(
                    "UPDATE executions SET status = 'stopped',
                         data = json_set(data, '$.status', 'stopped', '$.finished_at', json(?1),
                                         '$.error', ?2)
                     WHERE execution_id = ?3 AND status IN ('enqueued', 'pulling', 'running')",
                    params![at, reason, execution_id],
                )?;
                let data = if updated > 0 {
                    Some(tx.query_row(
                        "SELECT data FROM executions WHERE execution_id = ?1",
                        params![execution_id],
                        |r| r.get(0),
                    )?)
                } else {
                    None
                };
                tx.commit()?;
                Ok(data)
            })
            .await?;
        read_one("execution", &id, data)
    }

    async fn append_dispatch(
        &self,
        execution_id: &str,
        record: &fastlane_sdk::DispatchRecord,
    ) -> Result<(), StoreError> {
        let execution_id = execution_id.to_owned();
        let record =
            serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE executions SET data = json_set(data, '$.dispatches',
                         json_insert(COALESCE(json_extract(data, '$.dispatches'), json('[]')),
                                     '$[#]', json(?1)))
                     WHERE execution_id = ?2",
                    params![record, execution_id],
                )?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn set_detail(&self, execution_id: &str, detail: &str) -> Result<(), StoreError> {
        let (execution_id, detail) = (execution_id.to_owned(), detail.to_owned());
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE executions SET data = json_set(data, '$.detail', ?2)
                     WHERE execution_id = ?1 AND status = 'pulling'",
                    params![execution_id, detail],
                )?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn insert_execution(&self, execution: &Execution) -> Result<bool, StoreError> {
        let execution = ExecutionRow::of(execution)?;
        Ok(self.db.write(move |conn| execution.insert(conn)).await?)
    }

    async fn set_next_run(
        &self,
        job_id: &str,
        generation: u32,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let job_id = job_id.to_owned();
        let next =
            serde_json::to_string(&next_run_at).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(self
            .db
            .write(move |conn| {
                let updated = conn.execute(
                    "UPDATE jobs SET data = json_set(data, '$.next_run_at', json(?1))
                     WHERE job_id = ?2 AND COALESCE(json_extract(data, '$.generation'), 0) = ?3",
                    params![next, job_id, generation],
                )?;
                Ok(updated > 0)
            })
            .await?)
    }

    async fn live_executions(&self, job_id: &str) -> Result<Vec<Execution>, StoreError> {
        let job_id = job_id.to_owned();
        let rows = self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT execution_id, data FROM executions WHERE job_id = ?1
                     AND status IN ('enqueued', 'pulling', 'running') ORDER BY created_at",
                )?;
                let rows = stmt.query_map(params![job_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        read_all("execution", rows)
    }

    async fn scheduled_jobs(&self) -> Result<Vec<Job>, StoreError> {
        Ok(listing::soonest_scheduled(self, None).await?.0)
    }

    async fn soonest_scheduled(&self, limit: u64) -> Result<(Vec<Job>, u64), StoreError> {
        listing::soonest_scheduled(self, Some(limit)).await
    }
    async fn task(&self, task_id: &str) -> Result<Option<(Task, Vec<JobSummary>)>, StoreError> {
        let task_id = task_id.to_owned();
        let found = self
            .db
            .read(move |conn| {
                let row: Option<(String, String)> = conn
                    .query_row(
                        "SELECT created_at, last_modified_at FROM tasks WHERE task_id = ?1",
                        params![task_id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                let Some((created, modified)) = row else {
                    return Ok(None);
                };
                let mut stmt = conn.prepare(
                    "SELECT job_id, data FROM jobs WHERE task_id = ?1
                     ORDER BY last_modified_at DESC",
                )?;
                let rows: Vec<(String, String)> = stmt
                    .query_map(params![task_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let task = Task {
                    task_id,
                    created_at: parse_ts(&created)?,
                    last_modified_at: parse_ts(&modified)?,
                };
                Ok(Some((task, rows)))
            })
            .await?;
        let Some((task, rows)) = found else {
            return Ok(None);
        };
        let jobs = read_all::<Job>("job", rows)?
            .into_iter()
            .map(JobSummary::from)
            .collect();
        Ok(Some((task, jobs)))
    }

    async fn task_jobs(
        &self,
        task_id: &str,
        status: Option<ExecutionStatus>,
        offset: u64,
        limit: u64,
    ) -> Result<Option<(Vec<JobWithNewest>, u64)>, StoreError> {
        listing::task_jobs(self, task_id, status, offset, limit).await
    }

    async fn ended_since(
        &self,
        since: DateTime<Utc>,
        statuses: &[ExecutionStatus],
        limit: u64,
    ) -> Result<Vec<Ended>, StoreError> {
        listing::ended_since(self, since, statuses, limit).await
    }

    async fn executions(
        &self,
        job_id: &str,
        limit: u64,
    ) -> Result<(Vec<Execution>, u64), StoreError> {
        let job_id = job_id.to_owned();
        let limit = super::sql_int(limit);
        let (rows, total) = self
            .db
            .read(move |conn| {
                let total: u64 = conn.query_row(
                    "SELECT COUNT(*) FROM executions WHERE job_id = ?1",
                    params![job_id],
                    |r| r.get(0),
                )?;
                let mut stmt = conn.prepare(
                    "SELECT execution_id, data FROM executions WHERE job_id = ?1
                     ORDER BY created_at DESC, rowid DESC LIMIT ?2",
                )?;
                let rows: Vec<(String, String)> = stmt
                    .query_map(params![job_id, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                Ok((rows, total))
            })
            .await?;
        Ok((read_all("execution", rows)?, total))
    }

    async fn execution(&self, execution_id: &str) -> Result<Option<Execution>, StoreError> {
        let id = execution_id.to_owned();
        let data: Option<String> = self
            .db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT data FROM executions WHERE execution_id = ?1")?
                    .query_row(params![id], |r| r.get(0))
                    .optional()?)
            })
            .await?;
        read_one("execution", execution_id, data)
    }

    async fn save_execution(
        &self,
        execution: &Execution,
        retry: Option<&Execution>,
    ) -> Result<(), StoreError> {
        let execution = ExecutionRow::of(execution)?;
        let retry = retry.map(ExecutionRow::of).transpose()?;
        self.db
            .write(move |conn| {
                execution.upsert(conn)?;
                if let Some(next) = &retry {
                    conn.execute(
                        "UPDATE jobs SET data = json_set(data, '$.retry_count',
                             COALESCE(json_extract(data, '$.retry_count'), 0) + 1)
                         WHERE job_id = ?1",
                        params![next.job_id],
                    )?;
                    next.upsert(conn)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn unfinished_executions(&self) -> Result<Vec<Execution>, StoreError> {
        let rows = self
            .db
            .read(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT execution_id, data FROM executions
                     WHERE status IN ('enqueued', 'pulling', 'running') ORDER BY created_at",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        read_all("execution", rows)
    }

    async fn blacklist(&self) -> Result<Vec<String>, StoreError> {
        hosts::blacklist(self).await
    }

    async fn set_blacklisted(&self, host: &str, blacklisted: bool) -> Result<(), StoreError> {
        hosts::set_blacklisted(self, host, blacklisted).await
    }

    async fn share_host_health(
        &self,
        reports: &[fastlane_sdk::HostHealth],
    ) -> Result<Vec<fastlane_sdk::HostHealth>, StoreError> {
        hosts::share_host_health(self, reports).await
    }

    async fn counts(&self) -> Result<(u64, u64), StoreError> {
        Ok(self
            .db
            .read(|conn| {
                let tasks = conn.query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))?;
                let jobs = conn.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0))?;
                Ok((tasks, jobs))
            })
            .await?)
    }

    async fn append_log(&self, execution_id: &str, pieces: &[LogPiece]) -> Result<(), StoreError> {
        logs::append_log(self, execution_id, pieces).await
    }

    async fn read_log(
        &self,
        execution_id: &str,
        from: u64,
        limit: u32,
    ) -> Result<Vec<LogPiece>, StoreError> {
        logs::read_log(self, execution_id, from, limit).await
    }

    async fn log_totals(&self, execution_id: &str) -> Result<LogTotals, StoreError> {
        logs::log_totals(self, execution_id).await
    }

    async fn admit(
        &self,
        execution_id: &str,
        ask: &Ask,
        policy: &Policy,
    ) -> Result<Admission, StoreError> {
        admission::admit(self, execution_id, ask, policy).await
    }

    async fn line(
        &self,
        focus: Option<&str>,
    ) -> Result<(LineState, Option<(usize, u64)>), StoreError> {
        admission::line(self, focus).await
    }

    async fn waiting(&self) -> Result<Vec<String>, StoreError> {
        admission::waiting(self).await
    }

    fn lines_up_on_submit(&self) -> bool {
        true
    }

    async fn grant(&self, policy: &Policy, run: RunMessage) -> Result<Granted, StoreError> {
        admission::grant(self, policy, run).await
    }

    async fn set_paused(&self, key: &str, paused: bool) -> Result<bool, StoreError> {
        admission::set_paused(self, key, paused).await
    }

    async fn paused(&self) -> Result<Vec<String>, StoreError> {
        admission::paused(self).await
    }

    async fn backlogs(&self, limit: usize) -> Result<Vec<TaskBacklog>, StoreError> {
        admission::backlogs(self, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .read(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await?;
        Ok(())
    }
}

/// Writes an idempotency key's record unless a live one holds the key;
/// returns whether it was written.
fn claim_key(conn: &Connection, record: &IdempotencyRecord, now_ms: i64) -> Result<bool, DbError> {
    let written = conn
        .prepare_cached(
            "INSERT INTO idempotency (key, fingerprint, response, expires_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint,
                 response = excluded.response, expires_ms = excluded.expires_ms
             WHERE idempotency.expires_ms <= ?5",
        )?
        .execute(params![
            record.key,
            record.fingerprint,
            record.response,
            record.expires_ms,
            now_ms
        ])?;
    Ok(written > 0)
}

#[cfg(test)]
mod tests;
