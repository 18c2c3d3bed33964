//! The PostgreSQL store's live logs: pieces appended once each at their
//! byte offset (text as `BYTEA`, so offsets stay byte-exact), read from any
//! offset, and totalled.

use super::rows::{big, col, corrupt, count, pg};

use crate::store::{LogPiece, LogSource, LogTotals, StoreError};

use super::PostgresStore;

pub(super) async fn append_log(
    store: &PostgresStore,
    execution_id: &str,
    pieces: &[LogPiece],
) -> Result<(), StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg)?;
    let insert = tx
        .prepare(
            "INSERT INTO execution_logs (execution_id, start, source, text, raw_len)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (execution_id, start) DO NOTHING",
        )
        .await
        .map_err(pg)?;
    for piece in pieces {
        tx.execute(
            &insert,
            &[
                &execution_id,
                &big(piece.offset),
                &piece.source.as_str(),
                &piece.text.as_bytes(),
                &big(piece.raw_len),
            ],
        )
        .await
        .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)
}

pub(super) async fn read_log(
    store: &PostgresStore,
    execution_id: &str,
    from: u64,
    limit: u32,
) -> Result<Vec<LogPiece>, StoreError> {
    let rows = store
        .query(
            "SELECT start, source, text, raw_len FROM execution_logs
             WHERE execution_id = $1
               AND start >= COALESCE((SELECT MAX(start) FROM execution_logs
                                      WHERE execution_id = $1 AND start <= $2), 0)
             ORDER BY start LIMIT $3",
            &[&execution_id, &big(from), &i64::from(limit)],
        )
        .await?;
    let mut pieces = Vec::with_capacity(rows.len());
    for row in &rows {
        let source: String = col(row, 1)?;
        let source = LogSource::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown log source {source:?}")))?;
        pieces.push(LogPiece {
            offset: count(row, 0)?,
            source,
            text: String::from_utf8(col(row, 2)?).map_err(corrupt)?,
            raw_len: count(row, 3)?,
        });
    }
    Ok(crate::store::log_from(pieces, from))
}

pub(super) async fn log_totals(
    store: &PostgresStore,
    execution_id: &str,
) -> Result<LogTotals, StoreError> {
    let rows = store
        .query(
            "SELECT COALESCE(MAX(start + octet_length(text)), 0)::bigint,
                    COALESCE(SUM(CASE source WHEN 'stdout' THEN raw_len END), 0)::bigint,
                    COALESCE(SUM(CASE source WHEN 'stderr' THEN raw_len END), 0)::bigint,
                    COALESCE(bool_or(source = 'notice'), false)
             FROM execution_logs WHERE execution_id = $1",
            &[&execution_id],
        )
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| StoreError::Unavailable("postgres: no log totals".to_owned()))?;
    Ok(LogTotals {
        bytes: count(row, 0)?,
        stdout: count(row, 1)?,
        stderr: count(row, 2)?,
        cut: col(row, 3)?,
    })
}
