//! The embedded store's admission line: an execution takes a slot of each
//! gate of its first choice with room, or waits in line; finished runs
//! give their slots back.

use rusqlite::{Connection, params};

use crate::embedded::DbError;
use crate::store::{
    Admission, Choices, Gate, GateUsage, StoreError, TaskBacklog, admissible_in_order,
};

use super::{SqliteStore, from_json, to_json};

pub(super) async fn admit(
    store: &SqliteStore,
    execution_id: &str,
    choices: &[Vec<Gate>],
) -> Result<Admission, StoreError> {
    let execution_id = execution_id.to_owned();
    let gates_json = to_json(&choices)?;
    let unlimited = choices.is_empty() || choices.iter().any(Vec::is_empty);
    Ok(store
        .db
        .write(move |conn| {
            let tx = conn.savepoint()?;
            give_back_finished(&tx)?;
            let held: Vec<String> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT gate FROM admission_slots WHERE execution_id = ?1 ORDER BY gate",
                )?;
                let rows = stmt.query_map(params![execution_id], |row| row.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            if !held.is_empty() || unlimited {
                tx.commit()?;
                return Ok(Admission::Admitted { gates: held });
            }
            tx.execute(
                "INSERT INTO admission_line (execution_id, gates) VALUES (?1, ?2)
                 ON CONFLICT (execution_id) DO UPDATE SET gates = excluded.gates",
                params![execution_id, gates_json],
            )?;
            let (ids, line) = read_line(&tx)?;
            let position = ids.iter().position(|id| *id == execution_id).unwrap_or(0);
            let choice = admissible_in_order(held_slots(&tx)?, &line)
                .into_iter()
                .find_map(|(waiter, choice)| (waiter == position).then_some(choice));
            let Some(gates) = choice.and_then(|c| line.get(position)?.get(c)) else {
                tx.commit()?;
                return Ok(Admission::Waiting {
                    ahead: position as u64,
                });
            };
            for gate in gates {
                tx.execute(
                    "INSERT INTO admission_slots (gate, execution_id) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                    params![gate.key, execution_id],
                )?;
            }
            tx.execute(
                "DELETE FROM admission_line WHERE execution_id = ?1",
                params![execution_id],
            )?;
            tx.commit()?;
            Ok(Admission::Admitted {
                gates: gates.iter().map(|g| g.key.clone()).collect(),
            })
        })
        .await?)
}

pub(super) async fn admissible(store: &SqliteStore) -> Result<Vec<String>, StoreError> {
    Ok(store
        .db
        .write(|conn| {
            let tx = conn.savepoint()?;
            give_back_finished(&tx)?;
            let (ids, line) = read_line(&tx)?;
            let admissible = admissible_in_order(held_slots(&tx)?, &line);
            tx.commit()?;
            Ok(admissible
                .into_iter()
                .filter_map(|(i, _)| ids.get(i).cloned())
                .collect())
        })
        .await?)
}

pub(super) async fn waiting(store: &SqliteStore) -> Result<Vec<String>, StoreError> {
    Ok(store
        .db
        .write(|conn| {
            let tx = conn.savepoint()?;
            give_back_finished(&tx)?;
            let (ids, _) = read_line(&tx)?;
            tx.commit()?;
            Ok(ids)
        })
        .await?)
}

/// Executions waiting to start, counted by task in one query.
pub(super) async fn backlogs(
    store: &SqliteStore,
    limit: usize,
) -> Result<Vec<TaskBacklog>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<(String, i64, String)> = store
        .db
        .read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT j.task_id, COUNT(*), MIN(e.created_at)
                 FROM executions e JOIN jobs j ON j.job_id = e.job_id
                 WHERE e.status = 'enqueued'
                 GROUP BY j.task_id ORDER BY COUNT(*) DESC, j.task_id LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await?;
    rows.into_iter()
        .map(|(task_id, waiting, oldest)| {
            Ok(TaskBacklog {
                task_id,
                waiting: u64::try_from(waiting).unwrap_or(0),
                oldest: super::parse_ts(&oldest)?,
            })
        })
        .collect::<Result<_, DbError>>()
        .map_err(StoreError::from)
}

pub(super) async fn gate_usage(store: &SqliteStore) -> Result<Vec<GateUsage>, StoreError> {
    Ok(store
        .db
        .write(|conn| {
            let tx = conn.savepoint()?;
            give_back_finished(&tx)?;
            let held = held_slots(&tx)?;
            let (_, line) = read_line(&tx)?;
            tx.commit()?;
            Ok(crate::store::usage_of(held, &line))
        })
        .await?)
}

/// Gives back the slots and places in line of executions that are final
/// or gone.
pub(super) fn give_back_finished(tx: &Connection) -> Result<(), DbError> {
    for table in ["admission_slots", "admission_line"] {
        tx.execute(
            &format!(
                "DELETE FROM {table} WHERE execution_id IN (
                     SELECT t.execution_id FROM {table} t
                     LEFT JOIN executions e ON e.execution_id = t.execution_id
                     WHERE e.status IS NULL OR e.status NOT IN ('enqueued', 'pulling', 'running'))"
            ),
            [],
        )?;
    }
    Ok(())
}

/// Slots held, by gate.
pub(super) fn held_slots(
    tx: &Connection,
) -> Result<std::collections::HashMap<String, u32>, DbError> {
    let mut stmt = tx.prepare_cached("SELECT gate, COUNT(*) FROM admission_slots GROUP BY gate")?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The executions in line, first come first, with their choices of gates.
pub(super) fn read_line(tx: &Connection) -> Result<(Vec<String>, Vec<Choices>), DbError> {
    let mut stmt =
        tx.prepare_cached("SELECT execution_id, gates FROM admission_line ORDER BY seq")?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut ids = Vec::new();
    let mut line = Vec::new();
    for row in rows {
        let (id, gates) = row?;
        ids.push(id);
        line.push(from_json(&gates)?);
    }
    Ok((ids, line))
}
