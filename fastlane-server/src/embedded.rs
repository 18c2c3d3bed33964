//! The embedded database behind standalone mode: one SQLite file in the data
//! directory, shared by the embedded store and queue.
//!
//! The directory is locked for the life of the process, so two standalone
//! servers can never share (and corrupt) one data directory; that is also
//! what lets the embedded queue take back, at start-up, every lease the
//! previous process held.
//!
//! What the database holds (commands, environments, logs) is for the
//! owner's eyes only: on Unix the directory is created `0700`, and the
//! database with its WAL and shared-memory files (SQLite gives them the
//! database file's mode) and the lock file are `0600`, even when an
//! earlier version left them readable by others.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Notify, mpsc, oneshot};

mod schema;
mod wal;

use schema::MIGRATIONS;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The most operations one commit holds.
const MAX_BATCH: usize = 512;

/// Operations waiting for the writer; senders wait when it is full.
const WRITE_QUEUE: usize = 4096;

/// Statements each connection keeps parsed.
const STATEMENTS: usize = 64;

/// Read connections kept open between reads.
const IDLE_READERS: usize = 4;

/// An operation for the writer: runs inside the batch's transaction and
/// says whether it succeeded, with what to do once the batch's fate is
/// known. It may run more than once: a batch in which one fails is rolled
/// back and run again, each operation in a savepoint of its own.
type Op = Box<dyn FnMut(&mut Connection) -> (bool, Reply) + Send>;

/// Tells the caller how its operation ended: `Ok` when the commit that
/// holds it is durable, or why the batch failed.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// An open embedded database.
///
/// Writes ([`Db::write`]) go to one writer thread, which commits whatever
/// is waiting in one transaction (one fsync for many operations; should
/// one of them fail, the batch is run again with each operation in its
/// own savepoint, so that it fails alone) and answers each caller only
/// after that commit. Reads
/// ([`Db::read`]) go to a small pool of read-only connections, which WAL
/// lets run beside the writer and see every acknowledged write.
#[derive(Debug, Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    ops: Option<mpsc::Sender<Op>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Closed to stop the checkpointer.
    checkpoints: Option<std::sync::mpsc::Sender<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    /// Woken whenever messages are added to the queue table.
    messages: Arc<Notify>,
    /// Held (and locked) until the writer has closed the database.
    _lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer ends when its queue closes; wait for it, so the
        // directory is free again once the last clone is gone.
        self.ops.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        self.checkpoints.take();
        if let Some(checkpointer) = self.checkpointer.take() {
            let _ = checkpointer.join();
        }
    }
}

/// Why the embedded database could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The data directory is in use by another process.
    #[error("data directory {0} is in use by another fastlane process")]
    Locked(String),
    /// A file-system problem.
    #[error("data directory {dir}: {source}")]
    Io {
        /// The directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite refused.
    #[error("embedded database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The blocking task running the query died.
    #[error("embedded database worker: {0}")]
    Join(String),
    /// The commit holding the operation failed: nothing it wrote is kept.
    #[error("embedded database commit: {0}")]
    Commit(String),
    /// The database was made by a newer fastlane.
    #[error(
        "the embedded database {path} has schema version {found}, newer than the {known} this \
         fastlane knows: run the fastlane that wrote it (or a newer one), or restore a backup"
    )]
    NewerSchema {
        /// The database file.
        path: String,
        /// Its version.
        found: u32,
        /// This build's ([`SCHEMA_VERSION`]).
        known: u32,
    },
}

impl Db {
    /// Opens (creating if needed) the database in `dir` and locks `dir`.
    pub fn open(dir: &Path) -> Result<Self, DbError> {
        let io = |source| DbError::Io {
            dir: dir.display().to_string(),
            source,
        };
        private_dir(dir).map_err(io)?;
        let lock = private_file(&dir.join("fastlane.lock")).map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DbError::Locked(dir.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let path = dir.join("fastlane.db");
        private_file(&path).map_err(io)?;
        for suffix in ["-wal", "-shm"] {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            restrict(Path::new(&name)).map_err(io)?;
        }
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(wal::BUSY_TIMEOUT)?;
        let mut conn = conn;
        migrate(&mut conn, &path)?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        // Checkpoints run beside the writer, not inside its commits; the
        // writer only restarts the log when it has grown too long.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoint_conn = Connection::open(&path)?;
        checkpoint_conn.busy_timeout(wal::BUSY_TIMEOUT)?;
        let (checkpoints, stop) = std::sync::mpsc::channel();
        let (log, checkpointer) = wal::Log::start(checkpoint_conn, stop).map_err(io)?;
        let (ops, queue) = mpsc::channel(WRITE_QUEUE);
        let writer = std::thread::Builder::new()
            .name("fastlane-db-writer".to_owned())
            .spawn(move || write_batches(conn, queue, log))
            .map_err(io)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                ops: Some(ops),
                writer: Some(writer),
                checkpoints: Some(checkpoints),
                checkpointer: Some(checkpointer),
                readers: Mutex::new(Vec::new()),
                messages: Arc::new(Notify::new()),
                _lock: lock,
            }),
        })
    }

    /// Runs `f` on the writer's connection, in a transaction shared with
    /// the other writes waiting at that moment, and answers once that
    /// transaction is committed. `f` may open savepoints of its own
    /// (`conn.savepoint()`), not transactions. It may be called more than
    /// once (a batch in which another operation failed is rolled back and
    /// run again), so it must change nothing but the database.
    pub async fn write<R, F>(&self, mut f: F) -> Result<R, DbError>
    where
        R: Send + 'static,
        F: FnMut(&mut Connection) -> Result<R, DbError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        // Shared by the replies of every run: only the run that counts
        // answers, and a reply dropped with its rolled-back run does not.
        let answer = Arc::new(Mutex::new(Some(answer)));
        let op: Op = Box::new(move |conn| {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|_| Err(DbError::Join("the operation panicked".to_owned())));
            let ok = result.is_ok();
            let answer = Arc::clone(&answer);
            let reply: Reply = Box::new(move |commit| {
                let Some(answer) = answer.lock().ok().and_then(|mut a| a.take()) else {
                    return;
                };
                let _ = answer.send(match commit {
                    Ok(()) => result,
                    Err(why) => result.and(Err(DbError::Commit(why))),
                });
            });
            (ok, reply)
        });
        let ops = self.inner.ops.as_ref().ok_or_else(writer_gone)?;
        ops.send(op).await.map_err(|_| writer_gone())?;
        // Under tokio's paused test clock, a runtime that only waits for
        // another thread counts as idle and jumps ahead in time; waiting on
        // a blocking task keeps the clock where it is while the writer works.
        #[cfg(test)]
        let answered = async {
            tokio::task::spawn_blocking(move || answered.blocking_recv())
                .await
                .map_err(|e| DbError::Join(e.to_string()))
        };
        #[cfg(not(test))]
        let answered = async { Ok::<_, DbError>(answered.await) };
        answered.await?.map_err(|_| writer_gone())?
    }

    /// Woken (`notify_waiters`) after a commit added messages to the queue
    /// table, whoever wrote them: the embedded queue, or the embedded store
    /// handing over the messages of a submission in its own transaction.
    pub fn messages_added(&self) -> &Arc<Notify> {
        &self.inner.messages
    }

    /// Runs `f` on a read-only connection, off the async runtime's threads.
    /// It sees every write acknowledged before it started.
    pub async fn read<R, F>(&self, f: F) -> Result<R, DbError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, DbError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut idle| idle.pop());
            let mut conn = match pooled {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    conn.busy_timeout(std::time::Duration::from_secs(10))?;
                    conn
                }
            };
            let result = f(&mut conn);
            if let Ok(mut idle) = inner.readers.lock()
                && idle.len() < IDLE_READERS
            {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| DbError::Join(e.to_string()))?
    }
}

/// Brings the schema to [`SCHEMA_VERSION`], in one transaction; refuses a
/// database a newer fastlane made.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let found: u32 = tx
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| {
            r.get::<_, Option<u32>>(0)
        })?
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(DbError::NewerSchema {
            path: path.display().to_string(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    for migration in MIGRATIONS.iter().skip(found as usize) {
        tx.execute_batch(migration)?;
    }
    if found < SCHEMA_VERSION {
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            rusqlite::params![SCHEMA_VERSION],
        )?;
        tracing::info!(
            from = found,
            to = SCHEMA_VERSION,
            "embedded database schema migrated"
        );
    }
    tx.commit()?;
    Ok(())
}

/// Adds a message to the embedded queue's table unless one with its id is
/// there; returns whether it was added. The one statement both the embedded
/// queue and the embedded store (for the messages of the records it writes)
/// enqueue with; wake [`Db::messages_added`] after the commit.
pub fn insert_message(
    conn: &Connection,
    queue: &str,
    id: &str,
    payload: &str,
    due_ms: i64,
) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO queue (id, queue, payload, due_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute(rusqlite::params![id, queue, payload, due_ms])?
        > 0)
}

/// The writer dropped the operation without running it: it has stopped,
/// or could not begin a transaction (its log says why).
fn writer_gone() -> DbError {
    DbError::Join("the database writer did not run the operation".to_owned())
}

/// The writer thread: takes whatever operations are waiting (at least one,
/// at most [`MAX_BATCH`]), runs them in one transaction, commits, then
/// answers them all, then keeps the log bounded ([`wal::Log`]). Ends when
/// the queue closes.
///
/// Operations run side by side, without savepoints: a savepoint copies
/// every page it changes that an earlier one of the transaction already
/// changed into the statement journal, which was a third of this thread's
/// time under a submission load. Should one fail, the transaction is
/// rolled back and the batch run again ([`in_savepoints`]), so that only
/// that one fails.
fn write_batches(mut conn: Connection, mut queue: mpsc::Receiver<Op>, log: wal::Log) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let size = batch.len();
        if let Err(err) = run(&conn, "BEGIN IMMEDIATE") {
            // The operations never ran: their callers hear that they were
            // dropped ([`writer_gone`]).
            tracing::error!(error = %err, operations = size, "the embedded database cannot begin a transaction");
            batch.clear();
            continue;
        }
        // The first run stops at the first operation that fails; the
        // replies of that run are dropped unanswered, and the run that
        // counts comes next.
        let first: Option<Vec<Reply>> = batch
            .iter_mut()
            .map(|op| {
                let (ok, reply) = op(&mut conn);
                ok.then_some(reply)
            })
            .collect();
        let replies = match first {
            Some(replies) => replies,
            None => {
                if let Err(err) =
                    run(&conn, "ROLLBACK").and_then(|()| run(&conn, "BEGIN IMMEDIATE"))
                {
                    tracing::error!(error = %err, operations = size, "the embedded database cannot run a batch again");
                    batch.clear();
                    continue;
                }
                in_savepoints(&mut conn, &mut batch)
            }
        };
        batch.clear();
        let outcome = match run(&conn, "COMMIT") {
            Ok(()) => Ok(()),
            Err(err) => {
                let _ = conn.execute_batch("ROLLBACK");
                tracing::error!(error = %err, operations = size, "an embedded database commit failed");
                Err(err.to_string())
            }
        };
        for reply in replies {
            reply(outcome.clone());
        }
        log.after_commit(&conn);
    }
}

/// Runs `batch` in the open transaction, each operation in a savepoint of
/// its own that is rolled back should it fail; returns their replies.
fn in_savepoints(conn: &mut Connection, batch: &mut [Op]) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(batch.len());
    for op in batch {
        let saved = run(conn, "SAVEPOINT op");
        let (ok, reply) = op(conn);
        let undo = if ok && saved.is_ok() {
            run(conn, "RELEASE op")
        } else {
            run(conn, "ROLLBACK TO op").and_then(|()| run(conn, "RELEASE op"))
        };
        if let Err(err) = undo {
            tracing::error!(error = %err, "the embedded database lost an operation's savepoint");
        }
        replies.push(reply);
    }
    replies
}

/// Runs one statement, parsed once per connection.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Creates `dir` (and its parents) if missing, the new ones readable by
/// the owner only. A directory the operator made is left as it is (it may
/// be shared on purpose), with a warning when others may read it.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{:o}", mode & 0o777),
                "the data directory is open to other users (its files are not): \
                 consider chmod 700"
            );
        }
    }
    Ok(())
}

/// Opens `path` for writing, creating it readable by the owner only, and
/// takes the permissions of others away if it already existed.
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    restrict(path)?;
    Ok(file)
}

/// Makes `path`, if it exists, readable and writable by its owner only.
fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A new database gets this build's schema version; one a newer
    /// fastlane made is refused, naming both versions, and left as it is.
    #[tokio::test]
    async fn a_database_from_a_newer_fastlane_is_refused() {
        let dir = std::env::temp_dir().join(format!("fastlane-db-{}", uuid::Uuid::new_v4()));
        let version = |dir: &Path| -> u32 {
            Connection::open(dir.join("fastlane.db"))
                .and_then(|c| c.query_row("SELECT version FROM schema_version", [], |r| r.get(0)))
                .expect("version")
        };
        drop(Db::open(&dir).expect("open"));
        assert_eq!(version(&dir), SCHEMA_VERSION);
        Connection::open(dir.join("fastlane.db"))
            .and_then(|c| c.execute("UPDATE schema_version SET version = 999", []))
            .expect("newer");
        let err = Db::open(&dir).expect_err("refused").to_string();
        assert!(
            err.contains("schema version 999")
                && err.contains(&format!("the {SCHEMA_VERSION} this")),
            "{err}"
        );
        assert_eq!(version(&dir), 999, "left as it is");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A database of the previous version keeps its records and gains what
    /// the new version reads: each job's newest execution status.
    #[tokio::test]
    async fn a_database_of_the_previous_version_is_brought_up_to_date() {
        let dir = std::env::temp_dir().join(format!("fastlane-db-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let old = Connection::open(dir.join("fastlane.db")).expect("open");
        old.execute_batch(&MIGRATIONS[..2].concat())
            .expect("version 2");
        old.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version VALUES (2);
             INSERT INTO jobs (job_id, task_id, last_modified_at, data)
                 VALUES ('j', 't', '2026-01-01T00:00:00.000000Z', '{}');
             INSERT INTO executions (execution_id, job_id, created_at, status, data) VALUES
                 ('e1', 'j', '2026-01-01T00:00:01.000000Z', 'failed', '{}'),
                 ('e2', 'j', '2026-01-01T00:00:02.000000Z', 'running', '{}');",
        )
        .expect("records");
        drop(old);
        let db = Db::open(&dir).expect("migrated");
        let newest: (String, String) = db
            .read(|conn| {
                Ok(conn.query_row(
                    "SELECT newest_status, newest_at FROM jobs WHERE job_id = 'j'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .await
            .expect("read");
        assert_eq!(
            newest,
            (
                "running".to_owned(),
                "2026-01-01T00:00:02.000000Z".to_owned()
            )
        );
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Writes that share a commit with one that fails are committed and
    /// answered as if it had not been there; what the failing one wrote
    /// before failing is gone.
    #[tokio::test]
    async fn a_write_that_fails_fails_alone_in_its_batch() {
        let dir = std::env::temp_dir().join(format!("fastlane-db-{}", uuid::Uuid::new_v4()));
        let db = Db::open(&dir).expect("open");
        // Holds the writer while the next twenty line up behind it, so
        // that they go in one batch with the failing one among them.
        let holder = {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(|_| {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    Ok(())
                })
                .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let writes = (1..=20).map(|i| {
            db.write(move |conn| {
                conn.execute(
                    "INSERT INTO blacklist (host) VALUES (?1)",
                    [format!("host-{i}")],
                )?;
                if i == 10 {
                    return Err(DbError::Join("refused".to_owned()));
                }
                Ok(i)
            })
        });
        let answers = futures_util::future::join_all(writes).await;
        holder.await.expect("joined").expect("held");

        for (i, answer) in (1..=20).zip(&answers) {
            match answer {
                Ok(n) => assert!(i != 10 && *n == i, "write {i} answered {n}"),
                Err(err) => assert!(i == 10, "write {i} failed: {err}"),
            }
        }
        let hosts: Vec<String> = db
            .read(|conn| {
                let mut stmt = conn.prepare("SELECT host FROM blacklist ORDER BY rowid")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .expect("read");
        let expected: Vec<String> = (1..=20)
            .filter(|i| *i != 10)
            .map(|i| format!("host-{i}"))
            .collect();
        assert_eq!(hosts, expected);
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn the_database_is_for_its_owner_only() {
        let root = std::env::temp_dir().join(format!("fastlane-db-{}", uuid::Uuid::new_v4()));
        let dir = root.join("data");
        let db = Db::open(&dir).expect("open");
        db.write(|conn| Ok(conn.execute("INSERT INTO blacklist (host) VALUES ('h')", [])?))
            .await
            .expect("write");
        let mode = |name: &str| {
            std::fs::metadata(dir.join(name))
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        assert_eq!(mode(""), 0o700, "the data directory");
        for name in [
            "fastlane.db",
            "fastlane.db-wal",
            "fastlane.db-shm",
            "fastlane.lock",
        ] {
            assert_eq!(mode(name), 0o600, "{name}");
        }
        drop(db);
        let _ = std::fs::remove_dir_all(root);
    }
}
