//! Executions that reached a final status, in brief: what the activity of
//! the last hour and the latest failures are made of, and how the SQL
//! stores read them from their columns.

use chrono::{DateTime, Utc};

use fastlane_sdk::ExecutionStatus;

use super::{StoreError, readable};

/// An execution that reached a final status, in brief: what the activity
/// of the last hour and the latest failures are made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// The execution id.
    pub execution_id: String,
    /// Its job.
    pub job_id: String,
    /// Its job's task.
    pub task_id: String,
    /// Its final status.
    pub status: ExecutionStatus,
    /// When its container started, if it did.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached its final status.
    pub finished_at: DateTime<Utc>,
    /// Its exit code, if it exited.
    pub exit_code: Option<i64>,
    /// What went wrong, if something did.
    pub error: Option<String>,
}

/// An ended execution's columns as the SQL stores read them, times still
/// RFC 3339 text: [`ended_of`] checks them.
#[derive(Debug)]
pub struct EndedColumns {
    /// The execution id.
    pub execution_id: String,
    /// Its job.
    pub job_id: String,
    /// Its status's name.
    pub status: String,
    /// Its job's task.
    pub task_id: Option<String>,
    /// When its container started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Its exit code.
    pub exit_code: Option<i64>,
    /// What went wrong.
    pub error: Option<String>,
}

impl EndedColumns {
    /// The execution, if it ended at or after `since` (the stores compare
    /// times as text, exact to the second).
    fn read(self, since: DateTime<Utc>) -> Result<Option<Ended>, StoreError> {
        let id = &self.execution_id;
        let (Ok(status), Some(task_id), Some(finished)) = (
            self.status.parse::<ExecutionStatus>(),
            self.task_id,
            self.finished_at,
        ) else {
            return Err(StoreError::Corrupt(format!(
                "execution {id:?} lacks its status, task or end"
            )));
        };
        let time = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    StoreError::Corrupt(format!("execution {id:?}: bad time {text:?}: {e}"))
                })
        };
        let finished_at = time(&finished)?;
        if finished_at < since {
            return Ok(None);
        }
        Ok(Some(Ended {
            started_at: self.started_at.as_deref().map(time).transpose()?,
            execution_id: self.execution_id.clone(),
            job_id: self.job_id,
            task_id,
            status,
            finished_at,
            exit_code: self.exit_code,
            error: self.error,
        }))
    }
}

/// The executions of `rows` (the per-status reads of
/// [`Store::ended_since`]) that ended at or after `since`, the latest first,
/// at most `limit`; unreadable ones are skipped with a warning (see
/// [`readable`]).
pub fn ended_of(
    rows: Vec<EndedColumns>,
    since: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Ended>, StoreError> {
    let mut ended = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.execution_id.clone();
        ended.extend(readable("execution", &id, row.read(since))?.flatten());
    }
    ended.sort_by_key(|e| std::cmp::Reverse(e.finished_at));
    ended.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(ended)
}
