//! What the PostgreSQL store keeps for others: idempotency keys, the
//! outbox's queue messages and the deliveries owed.

use chrono::Utc;

use super::rows::pg;

use crate::store::{IdempotencyRecord, Outgoing, StoreError};

use super::{PostgresStore, outgoing_at};

pub(super) async fn idempotency(
    store: &PostgresStore,
    key: &str,
    now_ms: i64,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let rows = store
        .query(
            "SELECT key, fingerprint, response, expires_ms FROM idempotency
             WHERE key = $1 AND expires_ms > $2",
            &[&key, &now_ms],
        )
        .await?;
    rows.first()
        .map(|row| {
            Ok(IdempotencyRecord {
                key: row.try_get(0)?,
                fingerprint: row.try_get(1)?,
                response: row.try_get(2)?,
                expires_ms: row.try_get(3)?,
            })
        })
        .transpose()
        .map_err(pg)
}

pub(super) async fn forget_expired_keys(
    store: &PostgresStore,
    now_ms: i64,
) -> Result<u64, StoreError> {
    store
        .execute("DELETE FROM idempotency WHERE expires_ms <= $1", &[&now_ms])
        .await
}

pub(super) async fn take_outbox(
    store: &PostgresStore,
    limit: usize,
    lease: std::time::Duration,
) -> Result<Vec<Outgoing>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let now = Utc::now().timestamp_millis();
    // SKIP LOCKED: publishers in other processes take other messages.
    let rows = store
        .query(
            "UPDATE outbox SET taken_until = $1 WHERE seq IN
                 (SELECT seq FROM outbox WHERE taken_until <= $2 ORDER BY seq LIMIT $3
                  FOR UPDATE SKIP LOCKED)
             RETURNING seq, id, queue, payload, due_ms",
            &[&now.saturating_add(lease_ms), &now, &limit],
        )
        .await?;
    let mut taken = rows
        .iter()
        .map(|row| Ok((row.try_get::<_, i64>(0)?, outgoing_at(row, 1)?)))
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(pg)?;
    // RETURNING has no order of its own.
    taken.sort_by_key(|(seq, _)| *seq);
    Ok(taken.into_iter().map(|(_, message)| message).collect())
}

pub(super) async fn remove_outbox(store: &PostgresStore, ids: &[String]) -> Result<(), StoreError> {
    store
        .execute("DELETE FROM outbox WHERE id = ANY($1)", &[&ids])
        .await?;
    Ok(())
}

pub(super) async fn owed_deliveries(
    store: &PostgresStore,
    after: &str,
    limit: usize,
) -> Result<Vec<Outgoing>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = store
        .query(
            "SELECT id, queue, payload, due_ms FROM deliveries
             WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &limit],
        )
        .await?;
    rows.iter()
        .map(|row| outgoing_at(row, 0))
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(pg)
}

pub(super) async fn settle_deliveries(
    store: &PostgresStore,
    ids: &[String],
) -> Result<(), StoreError> {
    store
        .execute("DELETE FROM deliveries WHERE id = ANY($1)", &[&ids])
        .await?;
    Ok(())
}
