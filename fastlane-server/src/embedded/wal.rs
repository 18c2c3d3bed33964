//! The embedded database's write-ahead log: copied back into the database
//! beside the writer, and kept bounded.
//!
//! A checkpointer thread copies the log back into the database file
//! (passive checkpoints, which never wait for the writer or the readers),
//! so the writer's commits do not carry that work. But SQLite starts the
//! log again from its beginning only when a write begins at a moment when
//! every frame has been copied back and no reader still reads from the
//! log; under a steady write load that moment never comes, and the log
//! grows by every page every commit writes (3.7 GB in 40 s of batch
//! submissions, for a 660 MB database, before this module bounded it) and
//! keeps that size on disk.
//!
//! So once the log holds more than [`WAL_LIMIT`], the checkpointer copies
//! without pausing until a pass finds little left to copy, then asks the
//! writer ([`Log`]) to make that moment between two of its commits: a
//! `RESTART` checkpoint that copies the few frames written meanwhile and
//! waits briefly for readers to leave the log. The next commit writes from
//! the log's start, over the same file: under a steady load of single
//! submissions the file stays at about twice the limit, and the writer
//! stalls 2-4 ms each time (measured: BENCHMARKS.md). Trimming the file
//! at each restart (`journal_size_limit`) was measured too: it took the
//! submissions' p99 from 16-20 ms to 30 ms, so the file keeps its size.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

/// The log's size past which it is restarted (a restart begins once the
/// passes have caught up; the file keeps its largest size).
const WAL_LIMIT: i64 = if cfg!(test) { 1 } else { 64 } * 1024 * 1024;

/// How little a checkpoint pass must have found to copy for the writer to
/// be asked to copy the rest itself.
const SHORT_TAIL: i64 = if cfg!(test) { 64 } else { 256 } * 1024;

/// The busy timeout of the writer's and the checkpointer's connections.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the checkpointer copies the log back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(if cfg!(test) { 10 } else { 250 });

/// How long the writer's restart may wait for a reader to leave the log.
/// Writes wait meanwhile, so this is short: a reader holding the log
/// longer only postpones the restart to the checkpointer's next request.
const RESTART_WAIT: Duration = Duration::from_millis(100);

/// Bytes a frame takes in the log: a page and its 24-byte header.
const FRAME_HEADER: i64 = 24;

/// The writer's side: asked by the checkpointer, restarts the log between
/// two commits.
pub struct Log {
    wanted: Arc<AtomicBool>,
}

impl Log {
    /// Starts the checkpointer thread on `checkpoints`, which ends when
    /// `stop` closes; the writer calls [`Log::after_commit`].
    pub fn start(
        checkpoints: Connection,
        stop: Receiver<()>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let wanted = Arc::new(AtomicBool::new(false));
        let asks = Arc::clone(&wanted);
        let thread = std::thread::Builder::new()
            .name("fastlane-db-checkpoint".to_owned())
            .spawn(move || checkpoint(&checkpoints, &stop, &asks))?;
        Ok((Self { wanted }, thread))
    }

    /// Called by the writer between two commits: restarts the log if the
    /// checkpointer asked for it.
    pub fn after_commit(&self, conn: &Connection) {
        if !self.wanted.swap(false, Ordering::AcqRel) {
            return;
        }
        let started = std::time::Instant::now();
        match restart(conn) {
            Ok(true) => tracing::debug!(
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "the embedded database's log restarted"
            ),
            // Asked again after the next catch-up.
            Ok(false) => tracing::debug!("a reader held the embedded database's log"),
            Err(err) => {
                tracing::warn!(error = %err, "the embedded database's log could not be restarted");
            }
        }
    }
}

/// Runs a `RESTART` checkpoint waiting at most [`RESTART_WAIT`]; whether
/// it completed, so that the next commit writes from the log's start.
fn restart(conn: &Connection) -> rusqlite::Result<bool> {
    conn.busy_timeout(RESTART_WAIT)?;
    let busy = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
        row.get::<_, i64>(0)
    });
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(busy? == 0)
}

/// The checkpointer thread: every [`CHECKPOINT_EVERY`], copies what the
/// log holds back into the database. Once the log is over [`WAL_LIMIT`],
/// copies again at once until a pass finds only a short tail to copy
/// ([`SHORT_TAIL`]) and copies it all, then asks the writer to restart the
/// log (`wanted`) and waits its usual time: the writer's restart is left
/// with the few frames written during that last, short pass. Should the
/// passes never catch up (writes outpacing them, or a reader holding
/// frames back), the writer is asked anyway once the log is four times
/// the limit, and copies the rest itself.
fn checkpoint(conn: &Connection, stop: &Receiver<()>, wanted: &AtomicBool) {
    let frame = conn
        .query_row("PRAGMA page_size", [], |row| row.get::<_, i64>(0))
        .unwrap_or(4096)
        + FRAME_HEADER;
    let (limit, short) = (WAL_LIMIT / frame, SHORT_TAIL / frame);
    // Frames the previous pass had copied back (the log's start: 0).
    let mut copied_before = 0;
    let mut wait = CHECKPOINT_EVERY;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
        wait = CHECKPOINT_EVERY;
        let pass = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        let (log, copied) = match pass {
            Ok(pass) => pass,
            Err(err) => {
                tracing::warn!(error = %err, "the embedded database's checkpoint failed");
                continue;
            }
        };
        // After a restart the log counts from its start again.
        let tail = if copied_before <= log {
            log - copied_before
        } else {
            log
        };
        copied_before = copied;
        if log > limit {
            if (copied == log && tail <= short) || log > 4 * limit {
                wanted.store(true, Ordering::Release);
            } else {
                wait = Duration::ZERO;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Db, insert_message};
    use super::*;

    fn log_size(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("fastlane.db-wal")).map_or(0, |meta| meta.len())
    }

    /// Writers that never pause leave the checkpoints no moment to start
    /// the log again on their own: without the restarts the log file ends
    /// up holding every page written (about 100 MB here); with them it
    /// stays within a few times the limit (1 MiB in tests, where the
    /// checkpointer also runs 25 times as often; 3-6 MiB measured on two
    /// busy cores, so the bound leaves room for a slower machine).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_stays_bounded_under_writes_that_never_pause() {
        let dir = std::env::temp_dir().join(format!("fastlane-db-{}", uuid::Uuid::new_v4()));
        let db = Db::open(&dir).expect("open");
        let payload = "x".repeat(32 * 1024);
        let writers = (0..8).map(|writer| {
            let (db, payload) = (db.clone(), payload.clone());
            tokio::spawn(async move {
                for i in 0..320 {
                    let (payload, id) = (payload.clone(), format!("{writer}-{i}"));
                    db.write(move |conn| Ok(insert_message(conn, "q", &id, &payload, 0)?))
                        .await
                        .expect("write");
                }
            })
        });
        let writers: Vec<_> = writers.collect();
        let mut largest = 0;
        while !writers.iter().all(|writer| writer.is_finished()) {
            largest = largest.max(log_size(&dir));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        largest = largest.max(log_size(&dir));
        let limit = u64::try_from(WAL_LIMIT).expect("positive");
        assert!(
            largest <= 16 * limit,
            "the log file reached {largest} bytes, over 16 times the {limit}-byte limit"
        );
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
