//! A task's jobs a page at a time, each with its newest execution, in one
//! read: what the admin UI's task page shows, fast with 100,000 jobs.

use rusqlite::params;

use fastlane_sdk::{Execution, ExecutionStatus, Job};

use crate::store::{JobWithNewest, StoreError, named, readable, sql_int};

use super::{SqliteStore, from_json};

/// The jobs of a task joined to their newest execution (the one
/// `executions_by_job` finds last), newest change first.
const PAGE: &str = "
    SELECT j.job_id, j.data, e.execution_id, e.data
    FROM jobs j
    LEFT JOIN executions e ON e.rowid = (
        SELECT rowid FROM executions WHERE job_id = j.job_id
        ORDER BY created_at DESC, rowid DESC LIMIT 1)
    WHERE j.task_id = ?1 AND (?2 IS NULL OR e.status = ?2)
    ORDER BY j.last_modified_at DESC, j.job_id
    LIMIT ?3 OFFSET ?4";

/// How many jobs of a task have a newest execution in a status.
const COUNT_IN_STATUS: &str = "
    SELECT COUNT(*)
    FROM jobs j
    JOIN executions e ON e.rowid = (
        SELECT rowid FROM executions WHERE job_id = j.job_id
        ORDER BY created_at DESC, rowid DESC LIMIT 1)
    WHERE j.task_id = ?1 AND e.status = ?2";

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
            let mut stmt = conn.prepare_cached(PAGE)?;
            let rows: Vec<Row> = stmt
                .query_map(params![task_id, status, limit, offset], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
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
