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
//! stalls 2-4 ms each time (measured: BENCHMARKS.md). Should the passes
//! never catch up, the writer is asked anyway at four times the limit and
//! then copies the rest itself, a longer stall. Trimming the file
//! at each restart (`journal_size_limit`) was measured too: it took the
//! submissions' p99 from 16-20 ms to 30 ms, so the file keeps its size.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// How long the writer's restart may wait for readers to leave the log
/// (copying what is left is not counted). Writes wait meanwhile, so this
/// is short: a reader holding the log longer only postpones the restart
/// to the checkpointer's next request.
const RESTART_WAIT: Duration = Duration::from_millis(100);

/// A frame's header in the log; a frame is this and a page.
const FRAME_HEADER: i64 = 24;

/// What the checkpointer and the writer share.
#[derive(Debug, Default)]
struct Shared {
    /// The checkpointer asks the writer to restart the log.
    wanted: AtomicBool,
    /// Restarts done (the next commit writes from the log's start).
    restarts: AtomicU64,
    /// Requests made after a pass caught up, and at four times the limit.
    caught_up: AtomicU64,
    forced: AtomicU64,
}

/// The writer's side: asked by the checkpointer, restarts the log between
/// two commits.
pub struct Log {
    shared: Arc<Shared>,
}

impl Log {
    /// Starts the checkpointer thread on `checkpoints`, which ends when
    /// `stop` closes; the writer calls [`Log::after_commit`].
    pub fn start(
        checkpoints: Connection,
        stop: Receiver<()>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("fastlane-db-checkpoint".to_owned())
            .spawn(move || checkpoint(&checkpoints, &stop, &theirs))?;
        Ok((Self { shared }, thread))
    }

    /// Called by the writer between two commits: restarts the log if the
    /// checkpointer asked for it.
    pub fn after_commit(&self, conn: &Connection) {
        if !self.shared.wanted.load(Ordering::Acquire) {
            return;
        }
        let started = std::time::Instant::now();
        let outcome = restart(conn);
        self.shared.wanted.store(false, Ordering::Release);
        match outcome {
            Ok(true) => {
                self.shared.restarts.fetch_add(1, Ordering::AcqRel);
                tracing::debug!(
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "the embedded database's log restarts at the next commit"
                );
            }
            // Asked again after the next catch-up.
            Ok(false) => tracing::debug!(
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "a reader held the embedded database's log"
            ),
            Err(err) => {
                tracing::warn!(error = %err, "the embedded database's log could not be restarted");
            }
        }
    }
}

/// Runs a `RESTART` checkpoint waiting at most [`RESTART_WAIT`] for
/// readers; whether it completed, so that the next commit writes from the
/// log's start.
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
/// copies again at once while passes make progress, until one finds only
/// a short tail to copy ([`SHORT_TAIL`]) and copies it all; then asks the
/// writer to restart the log and waits its usual time, leaving the
/// writer's restart the few frames written during that last, short pass.
/// Should the passes never catch up (writes outpacing them), the writer is
/// asked anyway once the log is four times the limit, and copies the rest
/// itself. While a request is pending, no pass runs: the checkpoint lock
/// is the writer's.
fn checkpoint(conn: &Connection, stop: &Receiver<()>, shared: &Shared) {
    let frame = conn
        .query_row("PRAGMA page_size", [], |row| row.get::<_, i64>(0))
        .unwrap_or(4096)
        + FRAME_HEADER;
    let (limit, short) = (WAL_LIMIT / frame, SHORT_TAIL / frame);
    // Frames the previous pass had copied back, and the restarts so far:
    // after a restart the log counts from its start again.
    let (mut copied_before, mut restarts) = (0, 0);
    let mut wait = CHECKPOINT_EVERY;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
        wait = CHECKPOINT_EVERY;
        if shared.wanted.load(Ordering::Acquire) {
            continue;
        }
        let now_restarts = shared.restarts.load(Ordering::Acquire);
        if now_restarts != restarts {
            (copied_before, restarts) = (0, now_restarts);
        }
        let pass = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        });
        let (log, copied) = match pass {
            Ok((0, log, copied)) if log >= 0 && copied >= 0 => (log, copied),
            // Another connection held the checkpoint lock.
            Ok(_) => continue,
            Err(err) => {
                tracing::warn!(error = %err, "the embedded database's checkpoint failed");
                continue;
            }
        };
        // A log shorter than what was copied before has restarted (the
        // writer's restart, or SQLite's own when a write found it all
        // copied): all of it is new.
        let tail = if copied_before <= log {
            log - copied_before
        } else {
            log
        };
        let progressed = copied > copied_before;
        copied_before = copied;
        if log <= limit {
            continue;
        }
        let caught_up = copied == log;
        if caught_up && tail <= short {
            shared.caught_up.fetch_add(1, Ordering::AcqRel);
            shared.wanted.store(true, Ordering::Release);
        } else if caught_up && log > 4 * limit {
            shared.forced.fetch_add(1, Ordering::AcqRel);
            shared.wanted.store(true, Ordering::Release);
        } else if progressed {
            // A reader holding frames back leaves nothing to copy: wait.
            wait = Duration::ZERO;
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

    fn temp_dir() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("fastlane-db-{}", uuid::Uuid::new_v4()))
    }

    /// Writers that never pause leave the checkpoints no moment to start
    /// the log again on their own: without the restarts the log file ends
    /// up holding every page written (about 100 MB here); with them it
    /// stays within a few times the limit (1 MiB in tests, where the
    /// checkpointer also runs 25 times as often): 3-6 MiB measured on two
    /// busy cores, 17 and 34 MiB beside the whole test suite, where the
    /// checkpointer's thread waits for a core. The bound is under two
    /// thirds of the unbounded size. Every write is kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_stays_bounded_under_writes_that_never_pause() {
        let dir = temp_dir();
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
            largest <= 64 * limit,
            "the log file reached {largest} bytes, over 64 times the {limit}-byte limit"
        );
        let kept: i64 = db
            .read(|conn| Ok(conn.query_row("SELECT count(*) FROM queue", [], |r| r.get(0))?))
            .await
            .expect("count");
        assert_eq!(kept, 8 * 320);
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Small commits one after another, as single submissions make: the
    /// checkpointer catches up and asks the writer, whose restarts keep
    /// the log file near the limit (2-3 MiB measured, on two cores busy
    /// or not; the bound is under half the 38 MB it reaches without
    /// them), every write kept.
    #[test]
    fn small_commits_restart_the_log_after_the_checkpointer_catches_up() {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("fastlane.db");
        let writer = Connection::open(&path).expect("open");
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                 PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (v BLOB);",
            )
            .expect("schema");
        let (stop, stopped) = std::sync::mpsc::channel();
        let (log, thread) =
            Log::start(Connection::open(&path).expect("open"), stopped).expect("checkpointer");
        let mut largest = 0;
        for _ in 0..1500 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(16384))", [])
                .expect("insert");
            log.after_commit(&writer);
            largest = largest.max(log_size(&dir));
        }
        drop(stop);
        thread.join().expect("checkpointer");
        let shared = &log.shared;
        let (restarts, caught_up, forced) = (
            shared.restarts.load(Ordering::Acquire),
            shared.caught_up.load(Ordering::Acquire),
            shared.forced.load(Ordering::Acquire),
        );
        assert!(
            restarts > 0 && caught_up > 0,
            "{restarts} restarts, {caught_up} requests after catching up, {forced} forced"
        );
        let limit = u64::try_from(WAL_LIMIT).expect("positive");
        assert!(
            largest <= 16 * limit,
            "the log file reached {largest} bytes"
        );
        let rows: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 1500);
        let _ = std::fs::remove_dir_all(dir);
    }
}
