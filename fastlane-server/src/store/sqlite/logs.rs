//! The embedded store's live logs: pieces appended once each at their byte
//! offset, read from any offset, and totalled.

use rusqlite::params;

use crate::store::{LogPiece, LogSource, LogTotals, StoreError};

use super::SqliteStore;

pub(super) async fn append_log(
    store: &SqliteStore,
    execution_id: &str,
    pieces: &[LogPiece],
) -> Result<(), StoreError> {
    let execution_id = execution_id.to_owned();
    let pieces = pieces.to_vec();
    store
        .db
        .write(move |conn| {
            let tx = conn.savepoint()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO execution_logs (execution_id, start, source, text, raw_len)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (execution_id, start) DO NOTHING",
                )?;
                for piece in &pieces {
                    insert.execute(params![
                        execution_id,
                        piece.offset,
                        piece.source.as_str(),
                        piece.text,
                        piece.raw_len
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(())
}

pub(super) async fn read_log(
    store: &SqliteStore,
    execution_id: &str,
    from: u64,
    limit: u32,
) -> Result<Vec<LogPiece>, StoreError> {
    let execution_id = execution_id.to_owned();
    let start = crate::store::sql_int(from);
    let rows: Vec<(u64, String, String, u64)> = store
        .db
        .read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT start, source, text, raw_len FROM execution_logs
                 WHERE execution_id = ?1
                   AND start >= COALESCE((SELECT MAX(start) FROM execution_logs
                                           WHERE execution_id = ?1 AND start <= ?2), 0)
                 ORDER BY start LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![execution_id, start, limit], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await?;
    let mut pieces = Vec::with_capacity(rows.len());
    for (offset, source, text, raw_len) in rows {
        let source = LogSource::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown log source {source:?}")))?;
        pieces.push(LogPiece {
            offset,
            source,
            text,
            raw_len,
        });
    }
    Ok(crate::store::log_from(pieces, from))
}

pub(super) async fn log_totals(
    store: &SqliteStore,
    execution_id: &str,
) -> Result<LogTotals, StoreError> {
    let execution_id = execution_id.to_owned();
    Ok(store
        .db
        .read(move |conn| {
            Ok(conn.query_row(
                "SELECT COALESCE(MAX(start + length(CAST(text AS BLOB))), 0),
                        COALESCE(SUM(CASE source WHEN 'stdout' THEN raw_len END), 0),
                        COALESCE(SUM(CASE source WHEN 'stderr' THEN raw_len END), 0),
                        COALESCE(MAX(source = 'notice'), 0)
                 FROM execution_logs WHERE execution_id = ?1",
                params![execution_id],
                |row| {
                    Ok(LogTotals {
                        bytes: row.get(0)?,
                        stdout: row.get(1)?,
                        stderr: row.get(2)?,
                        cut: row.get(3)?,
                    })
                },
            )?)
        })
        .await?)
}
