//! A task's jobs a page at a time, each with its newest execution, in one
//! query: what the admin UI's task page shows, fast with 100,000 jobs.

use fastlane_sdk::{Execution, ExecutionStatus, Job};

use crate::store::{JobWithNewest, StoreError, named, readable, sql_int};

use super::PostgresStore;
use super::rows::{col, from_doc};

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
            let sql = format!(
                "SELECT COUNT(*) FROM jobs j {NEWEST} WHERE j.task_id = $1 AND e.status = $2"
            );
            store.query(&sql, &[&task_id, &status]).await?
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
    let sql = format!(
        "SELECT j.data, j.job_id, e.data, e.execution_id FROM jobs j {NEWEST}
         WHERE j.task_id = $1 AND ($2::text IS NULL OR e.status = $2)
         ORDER BY j.last_modified_at DESC, j.job_id LIMIT $3 OFFSET $4"
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
