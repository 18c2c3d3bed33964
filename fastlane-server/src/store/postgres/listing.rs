//! Listings, each one read over an index: pages of tasks with their last
//! run, a task's jobs a page at a time with their newest execution (fast
//! with 100,000 jobs), and the executions that ended lately.

use chrono::{DateTime, SecondsFormat, Utc};

use fastlane_sdk::{Execution, ExecutionStatus, Job, Task};

use crate::store::{
    Ended, EndedColumns, JobWithNewest, StoreError, TaskSummary, ended_of, named, readable,
    search_pattern, sql_int,
};

use super::PostgresStore;
use super::rows::{big, col, count, from_doc, listed};
use super::submit::TASK_MODIFIED;

/// The newest execution of job `j` (the one `executions_by_job` finds
/// last), as the lateral part of a join.
const NEWEST: &str = "LEFT JOIN LATERAL (
        SELECT execution_id, status, data FROM executions WHERE job_id = j.job_id
        ORDER BY created_at DESC, seq DESC LIMIT 1) e ON true";

pub(super) async fn task_jobs(
    store: &PostgresStore,
    task_id: &str,
    status: Option<ExecutionStatus>,
    offset: u64,
    limit: u64,
) -> Result<Option<(Vec<JobWithNewest>, u64)>, StoreError> {
    let known = store
        .query("SELECT 1 FROM tasks WHERE task_id = $1", &[&task_id])
        .await?;
    if known.is_empty() {
        return Ok(None);
    }
    let status = status.map(ExecutionStatus::as_str);
    let total = match status {
        Some(status) => {
            store
                .query(
                    "SELECT COUNT(*) FROM jobs WHERE task_id = $1 AND newest_status = $2",
                    &[&task_id, &status],
                )
                .await?
        }
        None => {
            store
                .query("SELECT COUNT(*) FROM jobs WHERE task_id = $1", &[&task_id])
                .await?
        }
    };
    let total: i64 = match total.first() {
        Some(row) => col(row, 0)?,
        None => 0,
    };
    // The page is picked on `jobs_by_task` or `jobs_by_task_status` (the
    // trigger keeps `newest_status`), then only its rows are joined.
    let sql = format!(
        "SELECT j.data, j.job_id, e.data, e.execution_id
         FROM (SELECT job_id FROM jobs WHERE task_id = $1
               AND ($2::text IS NULL OR newest_status = $2)
               ORDER BY last_modified_at DESC, job_id LIMIT $3 OFFSET $4) page
         JOIN jobs j ON j.job_id = page.job_id {NEWEST}
         ORDER BY j.last_modified_at DESC, j.job_id"
    );
    let rows = store
        .query(
            &sql,
            &[&task_id, &status, &sql_int(limit), &sql_int(offset)],
        )
        .await?;
    let mut page = Vec::with_capacity(rows.len());
    for row in &rows {
        let job_id: String = col(row, 1)?;
        let Some(job) = readable::<Job>("job", &job_id, from_doc(row, 0))? else {
            continue;
        };
        let newest = match col::<Option<String>>(row, 3)? {
            Some(id) => Some(named::<Execution>("execution", &id, from_doc(row, 2))?),
            None => None,
        };
        page.push((job, newest));
    }
    Ok(Some((page, u64::try_from(total).unwrap_or(0))))
}

/// A page of tasks in creation order, all of them or those having `word`,
/// with their job count and the status of their newest execution
/// (`jobs_by_task_newest` finds it).
pub(super) async fn task_page(
    store: &PostgresStore,
    word: Option<String>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<TaskSummary>, u64), StoreError> {
    let pattern = search_pattern(word);
    let total = store
        .query(
            "SELECT COUNT(*) FROM tasks WHERE words LIKE $1 ESCAPE ''",
            &[&pattern],
        )
        .await?;
    let sql = format!(
        "SELECT t.task_id, t.created_at, {TASK_MODIFIED},
            (SELECT COUNT(*) FROM jobs j WHERE j.task_id = t.task_id),
            (SELECT j.newest_status FROM jobs j WHERE j.task_id = t.task_id
             AND j.newest_at IS NOT NULL ORDER BY j.newest_at DESC LIMIT 1)
         FROM tasks t WHERE t.words LIKE $3 ESCAPE '' ORDER BY t.seq
         LIMIT $1 OFFSET $2"
    );
    let rows = store
        .query(&sql, &[&big(limit), &big(offset), &pattern])
        .await?;
    let tasks = rows
        .iter()
        .map(|row| {
            Ok(TaskSummary {
                task: Task {
                    task_id: col(row, 0)?,
                    created_at: col(row, 1)?,
                    last_modified_at: col(row, 2)?,
                },
                jobs_count: count(row, 3)?,
                last_status: col::<Option<String>>(row, 4)?.and_then(|s| s.parse().ok()),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    let total = match total.first() {
        Some(row) => count(row, 0)?,
        None => 0,
    };
    Ok((tasks, total))
}

/// The executions that ended at or after `since` in `statuses`, the latest
/// first, at most `limit`: `executions_by_end` holds status and end time.
/// Times are compared as text in byte order (`COLLATE "C"`, whatever the
/// database's), exact to the second, and compared again here.
pub(super) async fn ended_since(
    store: &PostgresStore,
    since: DateTime<Utc>,
    statuses: &[ExecutionStatus],
    limit: u64,
) -> Result<Vec<Ended>, StoreError> {
    let from = since.to_rfc3339_opts(SecondsFormat::Micros, true);
    // One index range per status, merged by `ended_of`.
    let mut rows = Vec::new();
    for status in statuses {
        rows.extend(
            store
                .query(
                    r#"SELECT execution_id, job_id, status, data->>'task_id', data->>'started_at',
                            data->>'finished_at', (data->>'exit_code')::bigint, data->>'error'
                     FROM executions
                     WHERE status = $1 AND (data->>'finished_at') COLLATE "C" >= $2
                     ORDER BY (data->>'finished_at') COLLATE "C" DESC LIMIT $3"#,
                    &[&status.as_str(), &from, &sql_int(limit)],
                )
                .await?,
        );
    }
    let rows = rows
        .iter()
        .map(|row| {
            Ok(EndedColumns {
                execution_id: col(row, 0)?,
                job_id: col(row, 1)?,
                status: col(row, 2)?,
                task_id: col(row, 3)?,
                started_at: col(row, 4)?,
                finished_at: col(row, 5)?,
                exit_code: col(row, 6)?,
                error: col(row, 7)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    ended_of(rows, since, limit)
}

/// The jobs that will fire again, soonest first, read on the partial index
/// `jobs_scheduled` whose condition is this query's (it holds exactly these
/// rows): at most `limit` of them, with how many there are in
/// all; all of them without a limit.
pub(super) async fn soonest_scheduled(
    store: &PostgresStore,
    limit: Option<u64>,
) -> Result<(Vec<Job>, u64), StoreError> {
    const SCHEDULED: &str = "FROM jobs WHERE data ->> 'next_run_at' IS NOT NULL
         AND NOT COALESCE((data ->> 'stopped')::boolean, false)";
    let rows = store
        .query(
            &format!(
                "SELECT data, job_id {SCHEDULED}
                 ORDER BY (data ->> 'next_run_at')::timestamptz LIMIT $1"
            ),
            &[&limit.map(big)],
        )
        .await?;
    let total = match limit {
        Some(_) => {
            let counted = store
                .query(&format!("SELECT COUNT(*) {SCHEDULED}"), &[])
                .await?;
            match counted.first() {
                Some(row) => count(row, 0)?,
                None => 0,
            }
        }
        None => rows.len() as u64,
    };
    Ok((listed("job", &rows)?, total))
}
