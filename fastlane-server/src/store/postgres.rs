//! A networked [`Store`] on PostgreSQL, for processes that share one store.
//!
//! It keeps what the embedded store keeps, the same way: jobs and executions
//! as JSONB documents with the columns needed to find and order them beside,
//! every change the embedded store makes in one transaction made in one here.
//! Admission takes an exclusive lock on the line for the length of its
//! transaction, so processes see and change the line one at a time.
//!
//! Two things PostgreSQL cannot hold that SQLite can, handled here: a NUL
//! character in a JSONB string (documents are stored with each NUL as
//! U+FFFD), and a NUL in `TEXT` (log text is kept as `BYTEA`, so offsets stay
//! byte-exact).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};

use fastlane_sdk::{Execution, ExecutionStatus, Job, Task};

mod admission;
mod group;
mod hosts;
mod listing;
mod logs;
mod messages;
mod rows;
mod schema;
mod submit;
pub mod tls;

use rows::{big, col, count, document, listed, one, pg};

use super::{
    Admission, Ask, Ended, Granted, IdempotencyRecord, JobSummary, JobWithNewest, LineState,
    LogPiece, LogTotals, Outgoing, Policy, RunMessage, Store, StoreError, Submission, TaskBacklog,
    TaskSummary,
};

/// Statuses of executions that have not reached a final status, in SQL.
const LIVE: &str = "('enqueued', 'pulling', 'running')";

/// The PostgreSQL store: a pool of connections to one database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Writes submissions, many to a commit under load.
    group: group::GroupCommit,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`,
    /// or the `key=value` form; TLS as libpq's `sslmode` and `sslrootcert`
    /// say, see [`tls`]) and brings its tables to this build's schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let refused = |e: String| StoreError::Unavailable(format!("postgres url: {e}"));
        let (url, tls) = tls::split(url).map_err(refused)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| refused(e.to_string()))?;
        config.ssl_mode(tls.ssl_mode());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let manager = Manager::from_config(
            config,
            tls.connector().map_err(refused)?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("postgres pool: {e}")))?;
        let store = Self {
            group: group::GroupCommit::start(pool.clone()),
            pool,
        };
        let mut client = store.client().await?;
        schema::migrate(&mut client).await?;
        drop(client);
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            StoreError::Unavailable(format!("postgres: {}", fastlane_sdk::text::error_chain(&e)))
        })
    }

    /// Runs `sql` on a pooled connection and returns its rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.client().await?.query(sql, params).await.map_err(pg)
    }

    /// Runs `sql` on a pooled connection and returns how many rows it changed.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        self.client().await?.execute(sql, params).await.map_err(pg)
    }
}

/// Inserts `execution` unless one with its id is stored; returns whether
/// it was inserted.
async fn insert_execution_in(
    client: &impl deadpool_postgres::GenericClient,
    execution: &Execution,
) -> Result<bool, StoreError> {
    let added = client
        .execute(
            submit::NEW_EXECUTION,
            &[
                &execution.execution_id,
                &execution.job_id,
                &execution.created_at,
                &execution.status.as_str(),
                &document(execution)?,
            ],
        )
        .await
        .map_err(pg)?;
    Ok(added > 0)
}

/// Saves `execution`, keeping its stored dispatches, unless it is stopped
/// and the save is not.
async fn upsert_execution(tx: &Transaction<'_>, execution: &Execution) -> Result<(), StoreError> {
    tx.execute(
        submit::EXECUTION,
        &[
            &execution.execution_id,
            &execution.job_id,
            &execution.created_at,
            &execution.status.as_str(),
            &document(execution)?,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// The queue message in the columns `id, queue, payload, due_ms` of `row`,
/// from column `first` on (the outbox's and the owed deliveries').
fn outgoing_at(row: &Row, first: usize) -> Result<Outgoing, tokio_postgres::Error> {
    Ok(Outgoing {
        id: row.try_get(first)?,
        queue: row.try_get(first + 1)?,
        payload: row.try_get(first + 2)?,
        due_ms: row.try_get(first + 3)?,
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn submit(&self, submission: Submission<'_>) -> Result<bool, StoreError> {
        match submission.idempotency {
            Some(record) => {
                submit::write_keyed(&mut self.client().await?, submission, record).await
            }
            None => {
                self.group.write(submit::Rows::of(&submission)?).await?;
                Ok(true)
            }
        }
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
        let rows = self
            .query("SELECT data FROM jobs WHERE job_id = $1", &[&job_id])
            .await?;
        one("job", job_id, &rows)
    }

    async fn job(&self, task_id: &str, job_id: &str) -> Result<Option<Job>, StoreError> {
        let rows = self
            .query(
                "SELECT data FROM jobs WHERE job_id = $1 AND task_id = $2",
                &[&job_id, &task_id],
            )
            .await?;
        one("job", job_id, &rows)
    }

    async fn tasks(&self, offset: u64, limit: u64) -> Result<(Vec<TaskSummary>, u64), StoreError> {
        listing::task_page(self, None, offset, limit).await
    }

    async fn task(&self, task_id: &str) -> Result<Option<(Task, Vec<JobSummary>)>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                &format!(
                    "SELECT t.created_at, {} FROM tasks t WHERE t.task_id = $1",
                    submit::TASK_MODIFIED
                ),
                &[&task_id],
            )
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let task = Task {
            task_id: task_id.to_owned(),
            created_at: col(&row, 0)?,
            last_modified_at: col(&row, 1)?,
        };
        let rows = client
            .query(
                "SELECT data, job_id FROM jobs WHERE task_id = $1 ORDER BY last_modified_at DESC",
                &[&task_id],
            )
            .await
            .map_err(pg)?;
        let jobs = listed::<Job>("job", &rows)?
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
        let client = self.client().await?;
        let total = client
            .query_one(
                "SELECT COUNT(*) FROM executions WHERE job_id = $1",
                &[&job_id],
            )
            .await
            .map_err(pg)?;
        let rows = client
            .query(
                "SELECT data, execution_id FROM executions WHERE job_id = $1
                 ORDER BY created_at DESC, seq DESC LIMIT $2",
                &[&job_id, &big(limit)],
            )
            .await
            .map_err(pg)?;
        Ok((listed("execution", &rows)?, count(&total, 0)?))
    }

    async fn execution(&self, execution_id: &str) -> Result<Option<Execution>, StoreError> {
        let rows = self
            .query(
                "SELECT data FROM executions WHERE execution_id = $1",
                &[&execution_id],
            )
            .await?;
        one("execution", execution_id, &rows)
    }

    async fn save_execution(
        &self,
        execution: &Execution,
        retry: Option<&Execution>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        upsert_execution(&tx, execution).await?;
        if let Some(next) = retry {
            tx.execute(
                "UPDATE jobs SET data = jsonb_set(data, '{retry_count}',
                     to_jsonb(COALESCE((data ->> 'retry_count')::bigint, 0) + 1))
                 WHERE job_id = $1",
                &[&next.job_id],
            )
            .await
            .map_err(pg)?;
            upsert_execution(&tx, next).await?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn mark_stopped(
        &self,
        execution_id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Execution>, StoreError> {
        let changes = document(&serde_json::json!({
            "status": "stopped",
            "finished_at": at,
            "error": reason,
        }))?;
        let rows = self
            .query(
                &format!(
                    "UPDATE executions SET status = 'stopped', data = data || $1::jsonb
                     WHERE execution_id = $2 AND status IN {LIVE} RETURNING data"
                ),
                &[&changes, &execution_id],
            )
            .await?;
        one("execution", execution_id, &rows)
    }

    async fn append_dispatch(
        &self,
        execution_id: &str,
        record: &fastlane_sdk::DispatchRecord,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE executions SET data = jsonb_set(data, '{dispatches}',
                 COALESCE(NULLIF(data -> 'dispatches', 'null'), '[]') || jsonb_build_array($1::jsonb))
             WHERE execution_id = $2",
            &[&document(record)?, &execution_id],
        )
        .await?;
        Ok(())
    }

    async fn set_detail(&self, execution_id: &str, detail: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE executions SET data = jsonb_set(data, '{detail}', to_jsonb($2::text))
             WHERE execution_id = $1 AND status = 'pulling'",
            &[&execution_id, &detail],
        )
        .await?;
        Ok(())
    }

    async fn insert_execution(&self, execution: &Execution) -> Result<bool, StoreError> {
        insert_execution_in(&self.client().await?, execution).await
    }

    async fn set_next_run(
        &self,
        job_id: &str,
        generation: u32,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let next = document(&next_run_at)?;
        let updated = self
            .execute(
                "UPDATE jobs SET data = jsonb_set(data, '{next_run_at}', $1::jsonb)
                 WHERE job_id = $2 AND COALESCE((data ->> 'generation')::bigint, 0) = $3",
                &[&next, &job_id, &i64::from(generation)],
            )
            .await?;
        Ok(updated > 0)
    }

    async fn live_executions(&self, job_id: &str) -> Result<Vec<Execution>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT data, execution_id FROM executions
                     WHERE job_id = $1 AND status IN {LIVE} ORDER BY created_at, seq"
                ),
                &[&job_id],
            )
            .await?;
        listed("execution", &rows)
    }

    async fn scheduled_jobs(&self) -> Result<Vec<Job>, StoreError> {
        Ok(listing::soonest_scheduled(self, None).await?.0)
    }

    async fn soonest_scheduled(&self, limit: u64) -> Result<(Vec<Job>, u64), StoreError> {
        listing::soonest_scheduled(self, Some(limit)).await
    }

    async fn search_tasks(
        &self,
        word: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<TaskSummary>, u64), StoreError> {
        listing::task_page(self, Some(word.to_lowercase()), offset, limit).await
    }

    async fn unfinished_executions(&self) -> Result<Vec<Execution>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT data, execution_id FROM executions
                     WHERE status IN {LIVE} ORDER BY created_at, seq"
                ),
                &[],
            )
            .await?;
        listed("execution", &rows)
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
        let rows = self
            .query(
                "SELECT (SELECT COUNT(*) FROM tasks), (SELECT COUNT(*) FROM jobs)",
                &[],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Unavailable("postgres: no counts".to_owned()))?;
        Ok((count(row, 0)?, count(row, 1)?))
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
        self.query("SELECT 1", &[]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
