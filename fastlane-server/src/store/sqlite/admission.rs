//! The embedded store's admission line: executions join it as they are
//! stored, and a pass (or an execution asking itself) takes a slot of each
//! gate of the first choice with room, or leaves them waiting; a run that
//! ends gives back its slots and place through the triggers of schema
//! version 5. Who goes first is [`crate::store::line`]'s
//! business; this reads the line a class of identical asks at a time
//! (`admission_line.class`, indexed with `seq`).

use rusqlite::{Connection, OptionalExtension, params};

use crate::embedded::DbError;
use crate::store::line::{Class, Member, class_key, decide, grants, loaded, plan, room};
use crate::store::{
    Admission, Ask, Bucket, Granted, LineState, Plan, Policy, RunMessage, StoreError, TaskBacklog,
    Waiter,
};

use super::{Outbox, SqliteStore, from_json, parse_ts, to_json, ts};

/// A waiter's row in `admission_line`, made before the writer runs.
pub(super) struct LineRow {
    execution_id: String,
    ask: String,
    class: String,
    since: String,
    trace: Option<String>,
}

impl LineRow {
    pub(super) fn of(waiter: &Waiter) -> Result<Self, DbError> {
        Ok(Self {
            execution_id: waiter.execution_id.clone(),
            ask: to_json(&waiter.ask)?,
            class: class_key(&waiter.ask),
            since: ts(waiter.ask.since),
            trace: waiter.trace.clone(),
        })
    }

    pub(super) fn execution_id(&self) -> &str {
        &self.execution_id
    }

    /// Puts the waiter at the end of the line (one already there keeps its
    /// place).
    pub(super) fn join(&self, conn: &Connection) -> Result<(), DbError> {
        conn.prepare_cached(
            "INSERT INTO admission_line (execution_id, gates, class, since, trace)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (execution_id) DO NOTHING",
        )?
        .execute(params![
            self.execution_id,
            self.ask,
            self.class,
            self.since,
            self.trace
        ])?;
        Ok(())
    }
}

/// One pass over the line: the waiters that may go take their slots and
/// tokens, leave the line, and their messages are written (into the
/// embedded queue, or the outbox), all in one step of the writer.
pub(super) async fn grant(
    store: &SqliteStore,
    policy: &Policy,
    run: RunMessage,
) -> Result<Granted, StoreError> {
    let policy = *policy;
    let outbox = store.outbox;
    let granted = store
        .db
        .write(move |conn| {
            let tx = conn.savepoint()?;
            let now = chrono::Utc::now();
            let (state, _) = read_state(&tx, None, now)?;
            let decision = decide(&state, &policy, now);
            let grants = grants(&state, &decision, now);
            let mut ids = Vec::with_capacity(grants.takes.len());
            for take in grants.takes {
                take_slots(&tx, &take.execution_id, &take.gates)?;
                let trace: Option<String> = tx
                    .prepare_cached(
                        "DELETE FROM admission_line WHERE execution_id = ?1 RETURNING trace",
                    )?
                    .query_row(params![take.execution_id], |row| row.get(0))
                    .optional()?
                    .flatten();
                match run(&take.execution_id, trace.as_deref()) {
                    Some(message) => outbox.write(&tx, &message)?,
                    None => tracing::warn!(
                        execution = %take.execution_id,
                        "cannot make the message that runs an execution; start-up reconciliation queues it"
                    ),
                }
                ids.push(take.execution_id);
            }
            store_buckets(&tx, &grants.buckets)?;
            tx.commit()?;
            Ok(Granted {
                ids,
                queued: true,
                retry_in: decision.retry_in,
            })
        })
        .await?;
    if !granted.ids.is_empty() && outbox == Outbox::EmbeddedQueue {
        store.db.messages_added().notify_waiters();
    }
    Ok(granted)
}

/// `execution_id` takes a slot of each of `gates`.
fn take_slots(tx: &Connection, execution_id: &str, gates: &[String]) -> Result<(), DbError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO admission_slots (gate, execution_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )?;
    for gate in gates {
        insert.execute(params![gate, execution_id])?;
    }
    Ok(())
}

/// Keeps the rate limits' buckets as a decision left them.
fn store_buckets(tx: &Connection, buckets: &[(String, Bucket)]) -> Result<(), DbError> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO admission_buckets (gate, tokens, at) VALUES (?1, ?2, ?3)
         ON CONFLICT (gate) DO UPDATE SET tokens = excluded.tokens, at = excluded.at",
    )?;
    for (gate, bucket) in buckets {
        upsert.execute(params![gate, bucket.tokens, ts(bucket.at)])?;
    }
    Ok(())
}

pub(super) async fn admit(
    store: &SqliteStore,
    execution_id: &str,
    ask: &Ask,
    policy: &Policy,
) -> Result<Admission, StoreError> {
    let execution_id = execution_id.to_owned();
    let ask = ask.clone();
    let policy = *policy;
    Ok(store
        .db
        .write(move |conn| {
            let tx = conn.savepoint()?;
            let held: Vec<String> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT gate FROM admission_slots WHERE execution_id = ?1 ORDER BY gate",
                )?;
                let rows = stmt.query_map(params![execution_id], |row| row.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            if !held.is_empty() || ask.unlimited() {
                tx.commit()?;
                return Ok(Admission::Admitted { gates: held });
            }
            // A waiter already in line keeps its place and the time it
            // first asked (`since` is not updated).
            let since = ts(ask.since);
            tx.execute(
                "INSERT INTO admission_line (execution_id, gates, class, since)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (execution_id) DO UPDATE SET gates = excluded.gates, class = excluded.class",
                params![execution_id, to_json(&ask)?, class_key(&ask), since],
            )?;
            let now = chrono::Utc::now();
            let (state, place) = read_state(&tx, Some(&execution_id), now)?;
            let Some((index, rank)) = place else {
                tx.commit()?;
                return Ok(Admission::Waiting { ahead: 0 });
            };
            match plan(&state, index, rank, &execution_id, &policy, now) {
                Plan::Wait { ahead } => {
                    tx.commit()?;
                    Ok(Admission::Waiting { ahead })
                }
                Plan::Take { gates, buckets } => {
                    take_slots(&tx, &execution_id, &gates)?;
                    store_buckets(&tx, &buckets)?;
                    tx.execute(
                        "DELETE FROM admission_line WHERE execution_id = ?1",
                        params![execution_id],
                    )?;
                    tx.commit()?;
                    Ok(Admission::Admitted { gates })
                }
            }
        })
        .await?)
}

/// The line as it stands, with the class and rank of `focus` if it waits:
/// a read, beside the writer (what final executions held is given back in
/// the write that ends them).
pub(super) async fn line(
    store: &SqliteStore,
    focus: Option<&str>,
) -> Result<(LineState, Option<(usize, u64)>), StoreError> {
    let focus = focus.map(str::to_owned);
    Ok(store
        .db
        .read(move |conn| {
            let tx = conn.transaction()?;
            read_state(&tx, focus.as_deref(), chrono::Utc::now())
        })
        .await?)
}

/// Every execution in line, first come first.
pub(super) async fn waiting(store: &SqliteStore) -> Result<Vec<String>, StoreError> {
    Ok(store
        .db
        .read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT execution_id FROM admission_line ORDER BY seq")?;
            let rows = stmt.query_map([], |row| row.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await?)
}

pub(super) async fn set_paused(
    store: &SqliteStore,
    key: &str,
    paused: bool,
) -> Result<bool, StoreError> {
    let key = key.to_owned();
    Ok(store
        .db
        .write(move |conn| {
            let changed = if paused {
                conn.execute(
                    "INSERT INTO paused_gates (gate, paused_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![key, ts(chrono::Utc::now())],
                )?
            } else {
                conn.execute("DELETE FROM paused_gates WHERE gate = ?1", params![key])?
            };
            Ok(changed > 0)
        })
        .await?)
}

pub(super) async fn paused(store: &SqliteStore) -> Result<Vec<String>, StoreError> {
    Ok(store
        .db
        .read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT gate FROM paused_gates ORDER BY gate")?;
            let rows = stmt.query_map([], |row| row.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
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

/// Slots held, the line by class (each with as many of its first waiters
/// as could go now), the paused gates and the buckets; with the class and
/// rank of `focus` if it waits.
pub(super) fn read_state(
    tx: &Connection,
    focus: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(LineState, Option<(usize, u64)>), DbError> {
    let mut state = LineState::default();
    let mut stmt = tx.prepare_cached("SELECT gate, COUNT(*) FROM admission_slots GROUP BY gate")?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    state.held = rows.collect::<Result<_, _>>()?;
    let mut stmt = tx.prepare_cached("SELECT gate FROM paused_gates")?;
    let rows = stmt.query_map([], |row| row.get(0))?;
    state.paused = rows.collect::<Result<_, _>>()?;
    let mut stmt = tx.prepare_cached("SELECT gate, tokens, at FROM admission_buckets")?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, f64>(1)?,
            row.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (gate, tokens, at) = row?;
        let at = parse_ts(&at)?;
        state.buckets.insert(gate, Bucket { tokens, at });
    }
    let heads: Vec<(String, i64, i64)> = {
        let mut stmt =
            tx.prepare_cached("SELECT class, n, first FROM admission_classes ORDER BY first")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut first_ask =
        tx.prepare_cached("SELECT gates, since FROM admission_line WHERE seq = ?1")?;
    let mut keys = Vec::with_capacity(heads.len());
    for (class, count, first) in heads {
        let (ask, since): (String, String) =
            first_ask.query_row(params![first], |row| Ok((row.get(0)?, row.get(1)?)))?;
        let mut ask: Ask = from_json(&ask)?;
        ask.since = parse_ts(&since)?;
        state.classes.push(Class {
            ask,
            count: u64::try_from(count).unwrap_or(0),
            first,
            members: Vec::new(),
        });
        keys.push(class);
    }
    let place = match focus {
        None => None,
        Some(id) => tx
            .query_row(
                "SELECT class, seq FROM admission_line WHERE execution_id = ?1",
                params![id],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
            )
            .optional()?
            .and_then(|(class, seq)| Some((keys.iter().position(|k| *k == class)?, seq)))
            .map(|(index, seq)| {
                tx.query_row(
                    "SELECT COUNT(*) FROM admission_line WHERE class = ?1 AND seq < ?2",
                    params![keys[index], seq],
                    |row| row.get::<_, i64>(0),
                )
                .map(|rank| (index, u64::try_from(rank).unwrap_or(0)))
            })
            .transpose()?,
    };
    let mut members = tx.prepare_cached(
        "SELECT seq, execution_id, since FROM admission_line WHERE class = ?1
         ORDER BY seq LIMIT ?2",
    )?;
    for (index, class) in keys.iter().enumerate() {
        let focus_rank = place.and_then(|(c, rank)| (c == index).then_some(rank));
        let limit = loaded(room(&state, &state.classes[index].ask, now), focus_rank);
        if limit == 0 {
            continue;
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = members.query_map(params![class, limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        let mut read = Vec::new();
        for row in rows {
            let (seq, execution_id, since) = row?;
            read.push(Member {
                seq,
                execution_id,
                since: parse_ts(&since)?,
            });
        }
        state.classes[index].members = read;
    }
    Ok((state, place))
}
