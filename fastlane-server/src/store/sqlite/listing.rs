//! A task's jobs a page at a time, each with its newest execution, in one
//! read: what the admin UI's task page shows, fast with 100,000 jobs.

use rusqlite::params;

use fastlane_sdk::{Execution, ExecutionStatus, Job};

use crate::store::{JobWithNewest, StoreError, named, readable, sql_int};

use super::{SqliteStore, from_json};

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

/// A page of the jobs of a task whose newest execution has status `?2`.
const PAGE_IN_STATUS: &str = concat!(
    "SELECT j.job_id, j.data, e.execution_id, e.data FROM jobs j ",
    newest!(),
    " WHERE j.task_id = ?1 AND e.status = ?2
     ORDER BY j.last_modified_at DESC, j.rowid DESC LIMIT ?3 OFFSET ?4"
);

/// How many jobs of a task have a newest execution in a status.
const COUNT_IN_STATUS: &str = concat!(
    "SELECT COUNT(*) FROM jobs j ",
    newest!(),
    " WHERE j.task_id = ?1 AND e.status = ?2"
);

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
