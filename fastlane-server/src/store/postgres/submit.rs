//! A [`Submission`] written in one transaction with its statements
//! pipelined: every row goes to the server back to back and their answers
//! are read together, so a submission costs three round trips (`BEGIN`, the
//! rows, `COMMIT`) however many rows it holds, where awaiting each statement
//! cost one or two per row. The statements are prepared once per pooled
//! connection.

use chrono::Utc;
use futures_util::future::try_join_all;
use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use super::rows::{document, pg};
use crate::store::{StoreError, Submission, task_words};

/// A task, created when new. An existing task's row is left alone: every
/// submission to a task updating its one row made them wait on each
/// other's commits (half the rate of submissions spread over tasks). Its
/// `last_modified_at` is read as its newest job's ([`TASK_MODIFIED`]).
pub(super) const TASK: &str =
    "INSERT INTO tasks (task_id, created_at, last_modified_at, words) VALUES ($1, $2, $2, $3)
     ON CONFLICT (task_id) DO NOTHING";

/// The `last_modified_at` of task `t`: its newest job's (the
/// `jobs_by_task` index holds it), else the task row's own.
pub(super) const TASK_MODIFIED: &str = "COALESCE((SELECT MAX(j.last_modified_at) FROM jobs j
     WHERE j.task_id = t.task_id), t.last_modified_at)";

/// A job, created or replaced.
pub(super) const JOB: &str =
    "INSERT INTO jobs (job_id, task_id, last_modified_at, data) VALUES ($1, $2, $3, $4)
     ON CONFLICT (job_id) DO UPDATE SET last_modified_at = EXCLUDED.last_modified_at,
                                        data = EXCLUDED.data";

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

const DELIVERY: &str = "INSERT INTO deliveries (id, queue, payload, due_ms) VALUES ($1, $2, $3, $4)
     ON CONFLICT (id) DO NOTHING";

const OUTBOX: &str = "INSERT INTO outbox (id, queue, payload, due_ms) VALUES ($1, $2, $3, $4)
     ON CONFLICT (id) DO NOTHING";

const IDEMPOTENCY: &str = "INSERT INTO idempotency (key, fingerprint, response, expires_ms)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint,
         response = excluded.response, expires_ms = excluded.expires_ms
     WHERE idempotency.expires_ms <= $5";

/// Parameters of one row.
type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

/// Writes `submission` on `client` in one transaction; false when its
/// idempotency key holds another live record (nothing is written).
pub(super) async fn write(
    client: &mut deadpool_postgres::Object,
    submission: Submission<'_>,
) -> Result<bool, StoreError> {
    let Submission {
        jobs,
        executions,
        outgoing,
        owed,
        idempotency,
        keep_existing,
    } = submission;
    // What the rows hold beyond the records themselves, made before the
    // writes borrow it.
    let words: Vec<String> = jobs
        .iter()
        .map(|job| format!(" {} ", task_words(&job.task_id).join(" ")))
        .collect();
    let job_documents = jobs.iter().map(document).collect::<Result<Vec<_>, _>>()?;
    let execution_documents = executions
        .iter()
        .map(document)
        .collect::<Result<Vec<_>, _>>()?;
    let statuses: Vec<&str> = executions.iter().map(|e| e.status.as_str()).collect();
    let now_ms = Utc::now().timestamp_millis();

    let tx = client.transaction().await.map_err(pg)?;
    let (task, job, execution, delivery, outbox, key) = futures_util::try_join!(
        tx.prepare_cached(TASK),
        tx.prepare_cached(JOB),
        tx.prepare_cached(if keep_existing {
            NEW_EXECUTION
        } else {
            EXECUTION
        }),
        tx.prepare_cached(DELIVERY),
        tx.prepare_cached(OUTBOX),
        tx.prepare_cached(IDEMPOTENCY),
    )
    .map_err(pg)?;
    if let Some(record) = idempotency {
        // A concurrent request with the same key waits here for the first
        // to commit, then finds its record.
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
    }

    let mut rows: Vec<(&Statement, Params<'_>)> = Vec::new();
    for ((job_row, words), document) in jobs.iter().zip(&words).zip(&job_documents) {
        rows.push((
            &task,
            vec![&job_row.task_id, &job_row.last_modified_at, words],
        ));
        rows.push((
            &job,
            vec![
                &job_row.job_id,
                &job_row.task_id,
                &job_row.last_modified_at,
                document,
            ],
        ));
    }
    for ((run, status), document) in executions.iter().zip(&statuses).zip(&execution_documents) {
        rows.push((
            &execution,
            vec![
                &run.execution_id,
                &run.job_id,
                &run.created_at,
                status,
                document,
            ],
        ));
    }
    for message in owed {
        rows.push((
            &delivery,
            vec![
                &message.id,
                &message.queue,
                &message.payload,
                &message.due_ms,
            ],
        ));
    }
    for message in outgoing.iter().chain(owed) {
        rows.push((
            &outbox,
            vec![
                &message.id,
                &message.queue,
                &message.payload,
                &message.due_ms,
            ],
        ));
    }
    // Polled together, the statements are pipelined on the connection; the
    // server still runs them in this order.
    try_join_all(
        rows.into_iter()
            .map(|(statement, params)| tx.execute_raw(statement, params)),
    )
    .await
    .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    Ok(true)
}
