//! The admission line's steps shared by `admit`, `admissible` and
//! `gate_usage`, each inside the caller's transaction.

use tokio_postgres::Transaction;

use super::LIVE;
use super::PostgresStore;
use super::rows::{col, corrupt, count, from_doc, pg};
use crate::store::{Choices, GateUsage, StoreError, TaskBacklog};

/// Gives back the slots and places in line of executions that are final
/// or gone.
pub(super) async fn give_back_finished(tx: &Transaction<'_>) -> Result<(), StoreError> {
    for table in ["admission_slots", "admission_line"] {
        tx.execute(
            &format!(
                "DELETE FROM {table} t WHERE NOT EXISTS (
                     SELECT 1 FROM executions e
                     WHERE e.execution_id = t.execution_id AND e.status IN {LIVE})"
            ),
            &[],
        )
        .await
        .map_err(pg)?;
    }
    Ok(())
}

/// Takes the admission lock for the rest of `tx`: admissions in other
/// transactions (and processes) wait for it to end.
pub(super) async fn lock_admission(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.batch_execute("LOCK TABLE admission_line, admission_slots IN EXCLUSIVE MODE")
        .await
        .map_err(pg)
}

/// Slots held, by gate.
pub(super) async fn held_slots(
    tx: &Transaction<'_>,
) -> Result<std::collections::HashMap<String, u32>, StoreError> {
    let rows = tx
        .query(
            "SELECT gate, COUNT(*) FROM admission_slots GROUP BY gate",
            &[],
        )
        .await
        .map_err(pg)?;
    rows.iter()
        .map(|row| {
            Ok((
                col(row, 0)?,
                u32::try_from(count(row, 1)?).map_err(corrupt)?,
            ))
        })
        .collect()
}

/// The executions in line, first come first, with their choices of gates.
pub(super) async fn read_line(
    tx: &Transaction<'_>,
) -> Result<(Vec<String>, Vec<Choices>), StoreError> {
    let rows = tx
        .query(
            "SELECT execution_id, gates FROM admission_line ORDER BY seq",
            &[],
        )
        .await
        .map_err(pg)?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut line = Vec::with_capacity(rows.len());
    for row in &rows {
        ids.push(col(row, 0)?);
        line.push(from_doc(row, 1)?);
    }
    Ok((ids, line))
}

/// How full every gate in use is, after giving back the slots of finished
/// executions.
pub(super) async fn gate_usage(store: &PostgresStore) -> Result<Vec<GateUsage>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg)?;
    lock_admission(&tx).await?;
    give_back_finished(&tx).await?;
    let held = held_slots(&tx).await?;
    let (_, line) = read_line(&tx).await?;
    tx.commit().await.map_err(pg)?;
    Ok(crate::store::usage_of(held, &line))
}

/// Executions waiting to start, counted by task in one query.
pub(super) async fn backlogs(
    store: &PostgresStore,
    limit: usize,
) -> Result<Vec<TaskBacklog>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = store
        .query(
            "SELECT j.task_id, COUNT(*), MIN(e.created_at)
             FROM executions e JOIN jobs j ON j.job_id = e.job_id
             WHERE e.status = 'enqueued'
             GROUP BY j.task_id ORDER BY COUNT(*) DESC, j.task_id LIMIT $1",
            &[&limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let waiting: i64 = col(row, 1)?;
            Ok(TaskBacklog {
                task_id: col(row, 0)?,
                waiting: u64::try_from(waiting).unwrap_or(0),
                oldest: col(row, 2)?,
            })
        })
        .collect()
}
