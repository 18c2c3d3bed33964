//! Listings, each one read over an index: pages of tasks with their last
//! run, a task's jobs a page at a time with their newest execution (fast
//! with 100,000 jobs), and the executions that ended lately.

use chrono::{DateTime, Utc};
use rusqlite::params;

use fastlane_sdk::{Execution, ExecutionStatus, Job, Task};

use crate::store::{
    Ended, EndedColumns, JobWithNewest, StoreError, TaskSummary, ended_of, named, readable,
    search_pattern, sql_int,
};

use super::{SqliteStore, from_json, parse_ts, read_all, ts};

/// The newest execution of job `j` (the one `executions_by_job` finds
/// last), as a join.
macro_rules! newest {
    () => {
        "LEFT JOIN executions e ON e.rowid = (
            SELECT rowid FROM executions WHERE job_id = j.job_id
            ORDER BY created_at DESC, rowid DESC LIMIT 1)"
    };
}

/// A page of a task's jobs, newest change first, joined to their newest
/// execution: the page is picked on `jobs_by_task` alone, so only its
/// rows are joined (the last of 100,000 jobs' pages came in 3.2 s when
/// every skipped row was joined too).
const PAGE: &str = concat!(
    "SELECT j.job_id, j.data, e.execution_id, e.data
     FROM (SELECT rowid AS picked FROM jobs WHERE task_id = ?1
           ORDER BY last_modified_at DESC, rowid DESC LIMIT ?2 OFFSET ?3) page
     JOIN jobs j ON j.rowid = page.picked ",
    newest!(),
    " ORDER BY j.last_modified_at DESC, j.rowid DESC"
);

/// A page of the jobs of a task whose newest execution has status `?2`,
/// picked on `jobs_by_task_status` (the triggers keep `newest_status`).
const PAGE_IN_STATUS: &str = concat!(
    "SELECT j.job_id, j.data, e.execution_id, e.data
     FROM (SELECT rowid AS picked FROM jobs WHERE task_id = ?1 AND newest_status = ?2
           ORDER BY last_modified_at DESC, rowid DESC LIMIT ?3 OFFSET ?4) page
     JOIN jobs j ON j.rowid = page.picked ",
    newest!(),
    " ORDER BY j.last_modified_at DESC, j.rowid DESC"
);

/// How many jobs of a task have a newest execution in a status.
const COUNT_IN_STATUS: &str = "SELECT COUNT(*) FROM jobs WHERE task_id = ?1 AND newest_status = ?2";

/// A page of tasks in creation order with their job count and the status
/// of their newest execution (`jobs_by_task_newest` finds it).
const TASK_PAGE: &str = "SELECT t.task_id, t.created_at, t.last_modified_at,
        (SELECT COUNT(*) FROM jobs j WHERE j.task_id = t.task_id),
        (SELECT j.newest_status FROM jobs j WHERE j.task_id = t.task_id
         AND j.newest_at IS NOT NULL ORDER BY j.newest_at DESC LIMIT 1)
     FROM tasks t WHERE t.words LIKE ?3 ORDER BY t.rowid LIMIT ?1 OFFSET ?2";

/// The executions in status `?3` that ended at or after `?1`, the latest
/// first, at most `?2`: one backwards range of `executions_by_end` (status,
/// end time). Times are compared as text, exact to the second; the caller
/// compares them again.
const ENDED: &str = "SELECT execution_id, job_id, status, json_extract(data, '$.task_id'),
        json_extract(data, '$.started_at'), json_extract(data, '$.finished_at'),
        json_extract(data, '$.exit_code'), json_extract(data, '$.error')
     FROM executions
     WHERE status = ?3 AND json_extract(data, '$.finished_at') >= ?1
     ORDER BY json_extract(data, '$.finished_at') DESC LIMIT ?2";

type Row = (String, String, Option<String>, Option<String>);

pub(super) async fn task_jobs(
    store: &SqliteStore,
    task_id: &str,
    status: Option<ExecutionStatus>,
    offset: u64,
    limit: u64,
) -> Result<Option<(Vec<JobWithNewest>, u64)>, StoreError> {
    let task_id = task_id.to_owned();
    let status = status.map(ExecutionStatus::as_str);
    let (offset, limit) = (sql_int(offset), sql_int(limit));
    let found = store
        .db
        .read(move |conn| {
            let known: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM tasks WHERE task_id = ?1)",
                params![task_id],
                |r| r.get(0),
            )?;
            if !known {
                return Ok(None);
            }
            let total: u64 = match status {
                Some(status) => {
                    conn.query_row(COUNT_IN_STATUS, params![task_id, status], |r| r.get(0))?
                }
                None => conn.query_row(
                    "SELECT COUNT(*) FROM jobs WHERE task_id = ?1",
                    params![task_id],
                    |r| r.get(0),
                )?,
            };
            let read = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
            let rows: Vec<Row> = match status {
                Some(status) => conn
                    .prepare_cached(PAGE_IN_STATUS)?
                    .query_map(params![task_id, status, limit, offset], read)?
                    .collect::<Result<_, _>>()?,
                None => conn
                    .prepare_cached(PAGE)?
                    .query_map(params![task_id, limit, offset], read)?
                    .collect::<Result<_, _>>()?,
            };
            Ok(Some((rows, total)))
        })
        .await?;
    let Some((rows, total)) = found else {
        return Ok(None);
    };
    let mut page = Vec::with_capacity(rows.len());
    for (job_id, job, execution_id, execution) in rows {
        let Some(job) = readable::<Job>("job", &job_id, from_json(&job).map_err(StoreError::from))?
        else {
            continue;
        };
        let newest = match (execution_id, execution) {
            (Some(id), Some(data)) => Some(named::<Execution>(
                "execution",
                &id,
                from_json(&data).map_err(StoreError::from),
            )?),
            _ => None,
        };
        page.push((job, newest));
    }
    Ok(Some((page, total)))
}

/// A page of tasks in creation order, all of them or those having `word`.
pub(super) async fn task_page(
    store: &SqliteStore,
    word: Option<String>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<TaskSummary>, u64), StoreError> {
    let pattern = search_pattern(word);
    let (offset, limit) = (sql_int(offset), sql_int(limit));
    Ok(store
        .db
        .read(move |conn| {
            let total: u64 = conn.query_row(
                "SELECT COUNT(*) FROM tasks WHERE words LIKE ?1",
                params![pattern],
                |r| r.get(0),
            )?;
            let mut stmt = conn.prepare_cached(TASK_PAGE)?;
            let rows = stmt.query_map(params![limit, offset, pattern], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, u64>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            })?;
            let mut tasks = Vec::new();
            for row in rows {
                let (task_id, created, modified, jobs_count, last) = row?;
                tasks.push(TaskSummary {
                    task: Task {
                        task_id,
                        created_at: parse_ts(&created)?,
                        last_modified_at: parse_ts(&modified)?,
                    },
                    jobs_count,
                    last_status: last.and_then(|s| s.parse().ok()),
                });
            }
            Ok((tasks, total))
        })
        .await?)
}

/// The executions that ended at or after `since` in `statuses`, the latest
/// first, at most `limit`.
pub(super) async fn ended_since(
    store: &SqliteStore,
    since: DateTime<Utc>,
    statuses: &[ExecutionStatus],
    limit: u64,
) -> Result<Vec<Ended>, StoreError> {
    let statuses: Vec<&'static str> = statuses.iter().map(|s| s.as_str()).collect();
    let (from, most) = (ts(since), sql_int(limit));
    // One index range per status, merged by `ended_of`: an `IN` over
    // statuses would read every match before sorting them.
    let rows = store
        .db
        .read(move |conn| {
            let mut stmt = conn.prepare_cached(ENDED)?;
            let mut rows = Vec::new();
            for status in statuses {
                let found = stmt.query_map(params![from, most, status], |r| {
                    Ok(EndedColumns {
                        execution_id: r.get(0)?,
                        job_id: r.get(1)?,
                        status: r.get(2)?,
                        task_id: r.get(3)?,
                        started_at: r.get(4)?,
                        finished_at: r.get(5)?,
                        exit_code: r.get(6)?,
                        error: r.get(7)?,
                    })
                })?;
                rows.extend(found.collect::<Result<Vec<_>, _>>()?);
            }
            Ok(rows)
        })
        .await?;
    ended_of(rows, since, limit)
}

/// The jobs that will fire again, soonest first, read on the partial index
/// `jobs_scheduled` whose condition is this query's (so counting them reads
/// the index alone): at most `limit` of them, with how many there are in
/// all; all of them without a limit.
pub(super) async fn soonest_scheduled(
    store: &SqliteStore,
    limit: Option<u64>,
) -> Result<(Vec<Job>, u64), StoreError> {
    const SCHEDULED: &str = "FROM jobs WHERE json_extract(data, '$.next_run_at') IS NOT NULL
         AND COALESCE(json_extract(data, '$.stopped'), 0) = 0";
    let most = limit.map_or(-1, sql_int);
    let (rows, total): (Vec<(String, String)>, Option<u64>) = store
        .db
        .read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT job_id, data {SCHEDULED}
                     ORDER BY json_extract(data, '$.next_run_at') LIMIT ?1"
                ))?
                .query_map(params![most], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            let total = match limit {
                Some(_) => {
                    Some(conn.query_row(&format!("SELECT COUNT(*) {SCHEDULED}"), [], |r| r.get(0))?)
                }
                None => None,
            };
            Ok((rows, total))
        })
        .await?;
    let total = total.unwrap_or(rows.len() as u64);
    Ok((read_all("job", rows)?, total))
}
