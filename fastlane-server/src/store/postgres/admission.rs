//! The PostgreSQL store's admission line: each pass or admission takes the
//! admission lock for its transaction and decides with
//! [`crate::store::line`]; what final executions held is given back by a
//! trigger in the save that ends them (schema version 5).

use tokio_postgres::Transaction;

use super::PostgresStore;
use super::rows::{col, corrupt, count, document, from_doc, pg};
use super::submit::{OUTBOX, message_columns};
use crate::store::line::{Class, Member, class_key, decide, grants, loaded, plan, room};
use crate::store::{
    Admission, Ask, Bucket, Granted, LineState, Outgoing, Plan, Policy, RunMessage, StoreError,
    TaskBacklog,
};

pub(super) async fn admit(
    store: &PostgresStore,
    execution_id: &str,
    ask: &Ask,
    policy: &Policy,
) -> Result<Admission, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg)?;
    lock_admission(&tx).await?;
    let held: Vec<String> = tx
        .query(
            "SELECT gate FROM admission_slots WHERE execution_id = $1 ORDER BY gate COLLATE \"C\"",
            &[&execution_id],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|row| col(row, 0))
        .collect::<Result<_, _>>()?;
    if !held.is_empty() || ask.unlimited() {
        tx.commit().await.map_err(pg)?;
        return Ok(Admission::Admitted { gates: held });
    }
    // A waiter already in line keeps its place and the time it first asked
    // (`since` is not updated).
    tx.execute(
        "INSERT INTO admission_line (execution_id, gates, class, since) VALUES ($1, $2, $3, $4)
         ON CONFLICT (execution_id) DO UPDATE SET gates = EXCLUDED.gates, class = EXCLUDED.class",
        &[&execution_id, &document(ask)?, &class_key(ask), &ask.since],
    )
    .await
    .map_err(pg)?;
    let now = chrono::Utc::now();
    let (state, place) = read_state(&tx, Some(execution_id), now).await?;
    let Some((index, rank)) = place else {
        tx.commit().await.map_err(pg)?;
        return Ok(Admission::Waiting { ahead: 0 });
    };
    match plan(&state, index, rank, execution_id, policy, now) {
        Plan::Wait { ahead } => {
            tx.commit().await.map_err(pg)?;
            Ok(Admission::Waiting { ahead })
        }
        Plan::Take { gates, buckets } => {
            let keys: Vec<&str> = gates.iter().map(String::as_str).collect();
            take_slots(&tx, &keys, &vec![execution_id; keys.len()]).await?;
            store_buckets(&tx, &buckets).await?;
            tx.execute(
                "DELETE FROM admission_line WHERE execution_id = $1",
                &[&execution_id],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(Admission::Admitted { gates })
        }
    }
}

/// One pass over the line: the waiters that may go take their slots and
/// tokens, leave the line, and their messages go to the outbox, in one
/// transaction under the admission lock.
pub(super) async fn grant(
    store: &PostgresStore,
    policy: &Policy,
    run: RunMessage,
) -> Result<Granted, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg)?;
    lock_admission(&tx).await?;
    let now = chrono::Utc::now();
    let (state, _) = read_state(&tx, None, now).await?;
    let decision = decide(&state, policy, now);
    let grants = grants(&state, &decision, now);
    let ids: Vec<&str> = grants
        .takes
        .iter()
        .map(|t| t.execution_id.as_str())
        .collect();
    if !ids.is_empty() {
        let (gates, holders): (Vec<&str>, Vec<&str>) = grants
            .takes
            .iter()
            .flat_map(|t| {
                t.gates
                    .iter()
                    .map(|g| (g.as_str(), t.execution_id.as_str()))
            })
            .unzip();
        take_slots(&tx, &gates, &holders).await?;
        store_buckets(&tx, &grants.buckets).await?;
        let left = tx
            .query(
                "DELETE FROM admission_line WHERE execution_id = ANY($1)
                 RETURNING execution_id, trace",
                &[&ids],
            )
            .await
            .map_err(pg)?;
        let mut messages: Vec<Outgoing> = Vec::with_capacity(left.len());
        for row in &left {
            let (id, trace): (String, Option<String>) = (col(row, 0)?, col(row, 1)?);
            match run(&id, trace.as_deref()) {
                Some(message) => messages.push(message),
                None => tracing::warn!(
                    execution = %id,
                    "cannot make the message that runs an execution; start-up reconciliation queues it"
                ),
            }
        }
        let messages: Vec<&Outgoing> = messages.iter().collect();
        let (message_ids, queues, payloads, due) = message_columns(&messages);
        tx.execute(OUTBOX, &[&message_ids, &queues, &payloads, &due])
            .await
            .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)?;
    Ok(Granted {
        ids: grants.takes.into_iter().map(|t| t.execution_id).collect(),
        queued: true,
        retry_in: decision.retry_in,
    })
}

/// Each of `holders` takes a slot of the gate beside it in `gates`.
async fn take_slots(
    tx: &Transaction<'_>,
    gates: &[&str],
    holders: &[&str],
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO admission_slots (gate, execution_id)
         SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
        &[&gates, &holders],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Keeps the rate limits' buckets as a decision left them.
async fn store_buckets(
    tx: &Transaction<'_>,
    buckets: &[(String, Bucket)],
) -> Result<(), StoreError> {
    for (gate, bucket) in buckets {
        tx.execute(
            "INSERT INTO admission_buckets (gate, tokens, at) VALUES ($1, $2, $3)
             ON CONFLICT (gate) DO UPDATE SET tokens = EXCLUDED.tokens, at = EXCLUDED.at",
            &[gate, &bucket.tokens, &bucket.at],
        )
        .await
        .map_err(pg)?;
    }
    Ok(())
}

/// The line as it stands, with the class and rank of `focus` if it waits:
/// a read from one snapshot, without the admission lock (what final
/// executions held is given back in the write that ends them).
pub(super) async fn line(
    store: &PostgresStore,
    focus: Option<&str>,
) -> Result<(LineState, Option<(usize, u64)>), StoreError> {
    let mut client = store.client().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg)?;
    let read = read_state(&tx, focus, chrono::Utc::now()).await?;
    tx.commit().await.map_err(pg)?;
    Ok(read)
}

/// Every execution in line, first come first.
pub(super) async fn waiting(store: &PostgresStore) -> Result<Vec<String>, StoreError> {
    let rows = store
        .query("SELECT execution_id FROM admission_line ORDER BY seq", &[])
        .await?;
    rows.iter().map(|row| col(row, 0)).collect()
}

pub(super) async fn set_paused(
    store: &PostgresStore,
    key: &str,
    paused: bool,
) -> Result<bool, StoreError> {
    let client = store.client().await?;
    let changed = if paused {
        client
            .execute(
                "INSERT INTO paused_gates (gate, paused_at) VALUES ($1, now()) ON CONFLICT DO NOTHING",
                &[&key],
            )
            .await
    } else {
        client
            .execute("DELETE FROM paused_gates WHERE gate = $1", &[&key])
            .await
    };
    Ok(changed.map_err(pg)? > 0)
}

pub(super) async fn paused(store: &PostgresStore) -> Result<Vec<String>, StoreError> {
    let rows = store
        .query(
            "SELECT gate FROM paused_gates ORDER BY gate COLLATE \"C\"",
            &[],
        )
        .await?;
    rows.iter().map(|row| col(row, 0)).collect()
}

/// Takes the admission lock for the rest of `tx`: passes and admissions in
/// other transactions (and processes) wait for it to end. It is an advisory
/// lock (one per schema), not a lock on the line's tables, so submissions
/// joining the line and saves ending executions never wait for a pass.
pub(super) async fn lock_admission(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.batch_execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.admission'))")
        .await
        .map_err(pg)
}

/// Slots held, the line by class (each with as many of its first waiters
/// as could go now), the paused gates and the buckets; with the class and
/// rank of `focus` if it waits.
async fn read_state(
    tx: &Transaction<'_>,
    focus: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(LineState, Option<(usize, u64)>), StoreError> {
    let mut state = LineState::default();
    for row in tx
        .query(
            "SELECT gate, COUNT(*) FROM admission_slots GROUP BY gate",
            &[],
        )
        .await
        .map_err(pg)?
    {
        let held = u32::try_from(count(&row, 1)?).map_err(corrupt)?;
        state.held.insert(col(&row, 0)?, held);
    }
    for row in tx
        .query("SELECT gate FROM paused_gates", &[])
        .await
        .map_err(pg)?
    {
        state.paused.insert(col(&row, 0)?);
    }
    for row in tx
        .query("SELECT gate, tokens, at FROM admission_buckets", &[])
        .await
        .map_err(pg)?
    {
        let bucket = Bucket {
            tokens: col(&row, 1)?,
            at: col(&row, 2)?,
        };
        state.buckets.insert(col(&row, 0)?, bucket);
    }
    // Each class with its first waiter, found through the `(class, seq)`
    // index rather than `admission_classes.first`: a pass that empties a
    // class while another transaction adds to it leaves `first` naming a
    // waiter that has gone (the trigger's statement sees only what was
    // committed when it began). The counts stay exact (row locks).
    let heads = tx
        .query(
            "SELECT c.class, c.n, l.seq, l.gates, l.since FROM admission_classes c
             CROSS JOIN LATERAL (SELECT seq, gates, since FROM admission_line
                                 WHERE class = c.class ORDER BY seq LIMIT 1) l
             ORDER BY l.seq",
            &[],
        )
        .await
        .map_err(pg)?;
    let mut keys = Vec::with_capacity(heads.len());
    for row in &heads {
        keys.push(col::<String>(row, 0)?);
        let mut ask: Ask = from_doc(row, 3)?;
        ask.since = col(row, 4)?;
        state.classes.push(Class {
            ask,
            count: count(row, 1)?,
            first: col(row, 2)?,
            members: Vec::new(),
        });
    }
    let mut place = None;
    if let Some(id) = focus
        && let Some(row) = tx
            .query_opt(
                "SELECT class, seq FROM admission_line WHERE execution_id = $1",
                &[&id],
            )
            .await
            .map_err(pg)?
    {
        let (class, seq): (String, i64) = (col(&row, 0)?, col(&row, 1)?);
        if let Some(index) = keys.iter().position(|k| *k == class) {
            let rank = tx
                .query_one(
                    "SELECT COUNT(*) FROM admission_line WHERE class = $1 AND seq < $2",
                    &[&class, &seq],
                )
                .await
                .map_err(pg)?;
            place = Some((index, count(&rank, 0)?));
        }
    }
    for (index, class) in keys.iter().enumerate() {
        let focus_rank = place.and_then(|(c, rank)| (c == index).then_some(rank));
        let limit = loaded(room(&state, &state.classes[index].ask, now), focus_rank);
        if limit == 0 {
            continue;
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = tx
            .query(
                "SELECT seq, execution_id, since FROM admission_line WHERE class = $1
                 ORDER BY seq LIMIT $2",
                &[class, &limit],
            )
            .await
            .map_err(pg)?;
        state.classes[index].members = rows
            .iter()
            .map(|row| {
                Ok(Member {
                    seq: col(row, 0)?,
                    execution_id: col(row, 1)?,
                    since: col(row, 2)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
    }
    Ok((state, place))
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
