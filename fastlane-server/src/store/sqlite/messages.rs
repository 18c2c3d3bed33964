//! What the embedded store keeps for others: idempotency keys, the
//! outbox's queue messages and the deliveries owed.

use chrono::Utc;
use rusqlite::{OptionalExtension, params};

use crate::store::{IdempotencyRecord, Outgoing, StoreError};

use super::{SqliteStore, outgoing_at};

pub(super) async fn idempotency(
    store: &SqliteStore,
    key: &str,
    now_ms: i64,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let key = key.to_owned();
    Ok(store
        .db
        .read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT key, fingerprint, response, expires_ms FROM idempotency
                     WHERE key = ?1 AND expires_ms > ?2",
                )?
                .query_row(params![key, now_ms], |r| {
                    Ok(IdempotencyRecord {
                        key: r.get(0)?,
                        fingerprint: r.get(1)?,
                        response: r.get(2)?,
                        expires_ms: r.get(3)?,
                    })
                })
                .optional()?)
        })
        .await?)
}

pub(super) async fn forget_expired_keys(
    store: &SqliteStore,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let forgotten = store
        .db
        .write(move |conn| {
            Ok(conn.execute(
                "DELETE FROM idempotency WHERE expires_ms <= ?1",
                params![now_ms],
            )?)
        })
        .await?;
    Ok(forgotten as u64)
}

pub(super) async fn take_outbox(
    store: &SqliteStore,
    limit: usize,
    lease: std::time::Duration,
) -> Result<Vec<Outgoing>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let now = Utc::now().timestamp_millis();
    Ok(store
        .db
        .write(move |conn| {
            let mut taken: Vec<(i64, Outgoing)> = conn
                .prepare_cached(
                    "UPDATE outbox SET taken_until = ?1 WHERE seq IN
                         (SELECT seq FROM outbox WHERE taken_until <= ?2 ORDER BY seq LIMIT ?3)
                     RETURNING seq, id, queue, payload, due_ms",
                )?
                .query_map(params![now.saturating_add(lease_ms), now, limit], |r| {
                    Ok((r.get(0)?, outgoing_at(r, 1)?))
                })?
                .collect::<Result<_, _>>()?;
            // RETURNING has no order of its own.
            taken.sort_by_key(|(seq, _)| *seq);
            let taken: Vec<Outgoing> = taken.into_iter().map(|(_, message)| message).collect();
            Ok(taken)
        })
        .await?)
}

pub(super) async fn remove_outbox(store: &SqliteStore, ids: &[String]) -> Result<(), StoreError> {
    let ids = ids.to_vec();
    store
        .db
        .write(move |conn| {
            let mut remove = conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
            for id in &ids {
                remove.execute(params![id])?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}

pub(super) async fn owed_deliveries(
    store: &SqliteStore,
    after: &str,
    limit: usize,
) -> Result<Vec<Outgoing>, StoreError> {
    let after = after.to_owned();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    Ok(store
        .db
        .read(move |conn| {
            let owed = conn
                .prepare_cached(
                    "SELECT id, queue, payload, due_ms FROM deliveries
                     WHERE id > ?1 ORDER BY id LIMIT ?2",
                )?
                .query_map(params![after, limit], |r| outgoing_at(r, 0))?
                .collect::<Result<_, _>>()?;
            Ok(owed)
        })
        .await?)
}

pub(super) async fn settle_deliveries(
    store: &SqliteStore,
    ids: &[String],
) -> Result<(), StoreError> {
    let ids = ids.to_vec();
    store
        .db
        .write(move |conn| {
            let mut settle = conn.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
            for id in &ids {
                settle.execute(params![id])?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}
