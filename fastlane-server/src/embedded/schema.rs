//! The embedded database's schema: the tables of the first version and
//! each migration since, in order ([`MIGRATIONS`]). A migration that shipped
//! is never edited; a schema change is a new one at the end.

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tasks (
    task_id          TEXT PRIMARY KEY,
    created_at       TEXT NOT NULL,
    last_modified_at TEXT NOT NULL,
    words            TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id           TEXT PRIMARY KEY,
    task_id          TEXT NOT NULL,
    last_modified_at TEXT NOT NULL,
    data             TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_task ON jobs (task_id, last_modified_at);
CREATE TABLE IF NOT EXISTS executions (
    execution_id TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    status       TEXT NOT NULL,
    data         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_job ON executions (job_id, created_at);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status);
CREATE TABLE IF NOT EXISTS queue (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    queue       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    due_ms      INTEGER NOT NULL,
    lease_token TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_by_due ON queue (queue, due_ms, seq);
CREATE TABLE IF NOT EXISTS outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    queue       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    due_ms      INTEGER NOT NULL,
    taken_until INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS idempotency (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response    TEXT NOT NULL,
    expires_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_ms);
CREATE TABLE IF NOT EXISTS execution_logs (
    execution_id TEXT NOT NULL,
    start        INTEGER NOT NULL,
    source       TEXT NOT NULL,
    text         TEXT NOT NULL,
    raw_len      INTEGER NOT NULL,
    PRIMARY KEY (execution_id, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS admission_slots (
    gate         TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (gate, execution_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS admission_slots_by_execution ON admission_slots (execution_id);
CREATE TABLE IF NOT EXISTS admission_line (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL UNIQUE,
    gates        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS host_health (
    host  TEXT PRIMARY KEY,
    since TEXT NOT NULL,
    data  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blacklist (
    host TEXT PRIMARY KEY
);
"#;

/// The schema's migrations, in order: migration `i` brings a database at
/// version `i` to `i + 1`. Version 0 is a new database, or one made before
/// versions were kept: the first migration creates whatever is missing.
/// Every schema change is a new migration at the end; one that shipped is
/// never edited.
pub(super) const MIGRATIONS: &[&str] = &[
    SCHEMA,
    OWED_DELIVERIES,
    NEWEST_AND_ENDED,
    FLOW_CONTROL,
    LINE_AT_SUBMIT,
];

/// Version 2: the notification deliveries owed, kept from the status change
/// that calls for them until they are made or given up
/// ([`crate::store::Submission::owed`]).
const OWED_DELIVERIES: &str = r#"
CREATE TABLE IF NOT EXISTS deliveries (
    id      TEXT PRIMARY KEY,
    queue   TEXT NOT NULL,
    payload TEXT NOT NULL,
    due_ms  INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// Version 3: what listings filter and sort on without reading every
/// execution. Each job keeps the status and creation time of its newest
/// execution (`newest_status`, `newest_at`), written by triggers on every
/// execution insert and status change of the job's newest execution (the
/// one listings show: latest `created_at`, then latest row, as slots fired
/// together share their creation time), so no write path can forget them:
/// a task's jobs filtered by status, and a task's last run, are index
/// reads. Executions are indexed by status and end time, for the activity
/// of the last hour and the latest failures; jobs with a next run are
/// indexed apart, so `/status` lists them without reading every job.
const NEWEST_AND_ENDED: &str = r#"
ALTER TABLE jobs ADD COLUMN newest_status TEXT;
ALTER TABLE jobs ADD COLUMN newest_at TEXT;
UPDATE jobs SET (newest_status, newest_at) = (
    SELECT e.status, e.created_at FROM executions e WHERE e.job_id = jobs.job_id
    ORDER BY e.created_at DESC, e.rowid DESC LIMIT 1);
CREATE INDEX IF NOT EXISTS jobs_by_task_status ON jobs (task_id, newest_status, last_modified_at);
CREATE INDEX IF NOT EXISTS jobs_by_task_newest ON jobs (task_id, newest_at);
CREATE INDEX IF NOT EXISTS executions_by_end
    ON executions (status, json_extract(data, '$.finished_at'));
CREATE INDEX IF NOT EXISTS jobs_scheduled ON jobs (json_extract(data, '$.next_run_at'))
    WHERE json_extract(data, '$.next_run_at') IS NOT NULL
    AND COALESCE(json_extract(data, '$.stopped'), 0) = 0;
CREATE TRIGGER IF NOT EXISTS executions_newest_on_insert AFTER INSERT ON executions
BEGIN
    UPDATE jobs SET newest_status = NEW.status, newest_at = NEW.created_at
    WHERE job_id = NEW.job_id AND NEW.rowid = (
        SELECT rowid FROM executions WHERE job_id = NEW.job_id
        ORDER BY created_at DESC, rowid DESC LIMIT 1);
END;
CREATE TRIGGER IF NOT EXISTS executions_newest_on_status AFTER UPDATE OF status ON executions
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE jobs SET newest_status = NEW.status, newest_at = NEW.created_at
    WHERE job_id = NEW.job_id AND NEW.rowid = (
        SELECT rowid FROM executions WHERE job_id = NEW.job_id
        ORDER BY created_at DESC, rowid DESC LIMIT 1);
END;
"#;

/// Version 4: flow control. The gates paused by an operator
/// (`paused_gates`: a task's `task:<id>`, a farm's `pool:<executor>:<farm>`)
/// and the rate limits' token buckets as last spent (`admission_buckets`),
/// both read and written by the admission line's step. Each waiter keeps
/// its class (what it asked but when: [`crate::store::line::class_key`])
/// and when it first asked; `admission_classes` counts each class's
/// waiters and knows its first, kept by triggers, so deciding reads a row
/// per class instead of the whole line. A waiter from before keeps its old
/// entry as its class until it asks again.
const FLOW_CONTROL: &str = r#"
ALTER TABLE admission_line ADD COLUMN class TEXT NOT NULL DEFAULT '';
ALTER TABLE admission_line ADD COLUMN since TEXT NOT NULL DEFAULT '';
UPDATE admission_line SET class = gates, since = COALESCE(
    (SELECT e.created_at FROM executions e WHERE e.execution_id = admission_line.execution_id),
    '1970-01-01T00:00:00.000000Z');
CREATE INDEX IF NOT EXISTS admission_line_by_class ON admission_line (class, seq);
CREATE TABLE IF NOT EXISTS admission_classes (
    class TEXT PRIMARY KEY,
    n     INTEGER NOT NULL,
    first INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO admission_classes (class, n, first)
    SELECT class, COUNT(*), MIN(seq) FROM admission_line GROUP BY class;
CREATE TRIGGER IF NOT EXISTS admission_line_joined AFTER INSERT ON admission_line
BEGIN
    INSERT INTO admission_classes (class, n, first) VALUES (NEW.class, 1, NEW.seq)
    ON CONFLICT (class) DO UPDATE SET n = n + 1, first = MIN(first, excluded.first);
END;
CREATE TRIGGER IF NOT EXISTS admission_line_left AFTER DELETE ON admission_line
BEGIN
    UPDATE admission_classes SET n = n - 1, first = COALESCE(
        (SELECT MIN(seq) FROM admission_line WHERE class = OLD.class), first)
    WHERE class = OLD.class;
    DELETE FROM admission_classes WHERE class = OLD.class AND n <= 0;
END;
CREATE TRIGGER IF NOT EXISTS admission_line_reclassed AFTER UPDATE OF class ON admission_line
WHEN OLD.class IS NOT NEW.class
BEGIN
    UPDATE admission_classes SET n = n - 1, first = COALESCE(
        (SELECT MIN(seq) FROM admission_line WHERE class = OLD.class), first)
    WHERE class = OLD.class;
    DELETE FROM admission_classes WHERE class = OLD.class AND n <= 0;
    INSERT INTO admission_classes (class, n, first) VALUES (NEW.class, 1, NEW.seq)
    ON CONFLICT (class) DO UPDATE SET n = n + 1, first = MIN(first, excluded.first);
END;
CREATE TABLE IF NOT EXISTS paused_gates (
    gate      TEXT PRIMARY KEY,
    paused_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS admission_buckets (
    gate   TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    at     TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Version 5: executions join the line in the transaction that makes them
/// (a submission's, a firing's), before any worker has read a message, so
/// each waiter keeps the trace (`traceparent`) its run continues until a
/// pass over the line lets it go. The line now holds every execution that
/// waits, so what a final (or removed) execution held, its slots and its
/// place, is given back by triggers in the write that ends it, instead of
/// by scans of the tables.
const LINE_AT_SUBMIT: &str = r#"
ALTER TABLE admission_line ADD COLUMN trace TEXT;
DELETE FROM admission_line WHERE execution_id NOT IN (SELECT execution_id FROM executions
    WHERE status IN ('enqueued', 'pulling', 'running'));
DELETE FROM admission_slots WHERE execution_id NOT IN (SELECT execution_id FROM executions
    WHERE status IN ('enqueued', 'pulling', 'running'));
CREATE TRIGGER IF NOT EXISTS execution_ended AFTER UPDATE OF status ON executions
WHEN NEW.status NOT IN ('enqueued', 'pulling', 'running')
BEGIN
    DELETE FROM admission_line WHERE execution_id = NEW.execution_id;
    DELETE FROM admission_slots WHERE execution_id = NEW.execution_id;
END;
CREATE TRIGGER IF NOT EXISTS execution_removed AFTER DELETE ON executions
BEGIN
    DELETE FROM admission_line WHERE execution_id = OLD.execution_id;
    DELETE FROM admission_slots WHERE execution_id = OLD.execution_id;
END;
"#;
