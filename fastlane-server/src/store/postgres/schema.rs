//! The PostgreSQL store's tables: the embedded store's, with `TIMESTAMPTZ`
//! for times, JSONB for documents, `BYTEA` for log text, and a `seq` where
//! the embedded store orders by SQLite's rowid.

use deadpool_postgres::Object;

use crate::store::StoreError;

/// The schema's migrations, in order: migration `i` brings a database at
/// version `i` to `i + 1`. Version 0 is a new database, or one made before
/// versions were kept: the first migration creates whatever is missing.
/// Every schema change is a new migration at the end; one that shipped is
/// never edited.
const MIGRATIONS: &[&str] = &[
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
    due_ms  BIGINT NOT NULL
);
"#;

/// Version 3: what listings filter and sort on without reading every
/// execution. Each job keeps the status and creation time of its newest
/// execution (`newest_status`, `newest_at`), written by a trigger on every
/// insert and status change of the job's newest execution (latest
/// `created_at`, then latest `seq`), so no write path can forget them:
/// a task's jobs filtered by status, and a task's last run, are index
/// reads. Only job rows are touched, never the task's one row (see
/// `submit::TASKS` on why); a status change now also waits for its job's
/// row lock. Both tables are locked first, so executions written by other
/// processes while it runs are neither missed by the backfill nor
/// deadlocked against it. Executions are indexed by status and end time,
/// for the activity of the last hour and the latest failures; jobs with a
/// next run are indexed apart, so `/status` lists them without reading
/// every job.
const NEWEST_AND_ENDED: &str = r#"
LOCK TABLE executions, jobs IN SHARE ROW EXCLUSIVE MODE;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS newest_status TEXT;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS newest_at TIMESTAMPTZ;
UPDATE jobs j SET (newest_status, newest_at) = (
    SELECT e.status, e.created_at FROM executions e WHERE e.job_id = j.job_id
    ORDER BY e.created_at DESC, e.seq DESC LIMIT 1);
CREATE INDEX IF NOT EXISTS jobs_by_task_status ON jobs (task_id, newest_status, last_modified_at);
CREATE INDEX IF NOT EXISTS jobs_by_task_newest ON jobs (task_id, newest_at);
CREATE INDEX IF NOT EXISTS executions_by_end
    ON executions (status, (data->>'finished_at') COLLATE "C");
CREATE INDEX IF NOT EXISTS jobs_scheduled ON jobs ((data->>'next_run_at'))
    WHERE data->>'next_run_at' IS NOT NULL
    AND NOT COALESCE((data->>'stopped')::boolean, false);
CREATE OR REPLACE FUNCTION fastlane_newest_execution() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status IS NOT DISTINCT FROM NEW.status THEN
        RETURN NULL;
    END IF;
    UPDATE jobs SET newest_status = NEW.status, newest_at = NEW.created_at
    WHERE job_id = NEW.job_id AND NEW.seq = (
        SELECT seq FROM executions WHERE job_id = NEW.job_id
        ORDER BY created_at DESC, seq DESC LIMIT 1);
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS executions_newest ON executions;
CREATE TRIGGER executions_newest AFTER INSERT OR UPDATE OF status ON executions
    FOR EACH ROW EXECUTE FUNCTION fastlane_newest_execution();
"#;

/// Version 4: flow control. The gates paused by an operator
/// (`paused_gates`) and the rate limits' token buckets as last spent
/// (`admission_buckets`, written under the admission lock). Each waiter
/// keeps its class (what it asked but when) and when it first asked;
/// `admission_classes` counts each class's waiters and knows its first,
/// kept by triggers, so deciding reads a row per class instead of the
/// whole line.
const FLOW_CONTROL: &str = r#"
ALTER TABLE admission_line ADD COLUMN IF NOT EXISTS class TEXT NOT NULL DEFAULT '';
ALTER TABLE admission_line ADD COLUMN IF NOT EXISTS since TIMESTAMPTZ;
UPDATE admission_line l SET class = l.gates::text, since = COALESCE(
    (SELECT e.created_at FROM executions e WHERE e.execution_id = l.execution_id),
    'epoch'::timestamptz);
ALTER TABLE admission_line ALTER COLUMN since SET DEFAULT now();
ALTER TABLE admission_line ALTER COLUMN since SET NOT NULL;
CREATE INDEX IF NOT EXISTS admission_line_by_class ON admission_line (class, seq);
CREATE TABLE IF NOT EXISTS admission_classes (
    class TEXT PRIMARY KEY,
    n     BIGINT NOT NULL,
    first BIGINT NOT NULL
);
INSERT INTO admission_classes (class, n, first)
    SELECT class, COUNT(*), MIN(seq) FROM admission_line GROUP BY class
    ON CONFLICT (class) DO NOTHING;
CREATE OR REPLACE FUNCTION admission_class_join(c TEXT, s BIGINT) RETURNS void AS $$
    INSERT INTO admission_classes (class, n, first) VALUES (c, 1, s)
    ON CONFLICT (class) DO UPDATE SET n = admission_classes.n + 1,
        first = LEAST(admission_classes.first, EXCLUDED.first);
$$ LANGUAGE sql;
CREATE OR REPLACE FUNCTION admission_class_leave(c TEXT) RETURNS void AS $$
    UPDATE admission_classes SET n = n - 1, first = COALESCE(
        (SELECT MIN(seq) FROM admission_line WHERE class = c), first)
    WHERE class = c;
    DELETE FROM admission_classes WHERE class = c AND n <= 0;
$$ LANGUAGE sql;
CREATE OR REPLACE FUNCTION admission_line_counted() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM admission_class_leave(OLD.class);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM admission_class_join(NEW.class, NEW.seq);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS admission_line_counted ON admission_line;
CREATE TRIGGER admission_line_counted AFTER INSERT OR DELETE OR UPDATE OF class
    ON admission_line FOR EACH ROW EXECUTE FUNCTION admission_line_counted();
CREATE TABLE IF NOT EXISTS paused_gates (
    gate      TEXT PRIMARY KEY,
    paused_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS admission_buckets (
    gate   TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    at     TIMESTAMPTZ NOT NULL
);
"#;

/// Version 5: executions join the line in the transaction that makes them,
/// each waiter keeping the trace (`traceparent`) its run continues until a
/// pass over the line lets it go. What a final (or removed) execution held,
/// its slots and its place, is given back by a trigger in the write that
/// ends it, instead of by scans under the admission lock. The classes are
/// counted once per statement (from its transition tables), not once per
/// row: a group commit's waiters join in one statement.
const LINE_AT_SUBMIT: &str = r#"
ALTER TABLE admission_line ADD COLUMN IF NOT EXISTS trace TEXT;
DROP TRIGGER IF EXISTS admission_line_counted ON admission_line;
CREATE OR REPLACE FUNCTION admission_classes_join() RETURNS trigger AS $$
BEGIN
    INSERT INTO admission_classes (class, n, first)
        SELECT class, COUNT(*), MIN(seq) FROM joined_rows GROUP BY class ORDER BY class
    ON CONFLICT (class) DO UPDATE SET n = admission_classes.n + EXCLUDED.n,
        first = LEAST(admission_classes.first, EXCLUDED.first);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION admission_classes_leave() RETURNS trigger AS $$
BEGIN
    UPDATE admission_classes c SET n = c.n - l.n, first = COALESCE(
        (SELECT MIN(a.seq) FROM admission_line a WHERE a.class = c.class), c.first)
    FROM (SELECT class, COUNT(*) AS n FROM left_rows GROUP BY class) l
    WHERE c.class = l.class;
    DELETE FROM admission_classes c
    WHERE c.n <= 0 AND c.class IN (SELECT class FROM left_rows);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION admission_classes_move() RETURNS trigger AS $$
BEGIN
    UPDATE admission_classes c SET n = c.n - m.n, first = COALESCE(
        (SELECT MIN(a.seq) FROM admission_line a WHERE a.class = c.class), c.first)
    FROM (SELECT o.class, COUNT(*) AS n FROM old_rows o JOIN new_rows w ON w.seq = o.seq
          WHERE w.class <> o.class GROUP BY o.class) m
    WHERE c.class = m.class;
    DELETE FROM admission_classes c WHERE c.n <= 0;
    INSERT INTO admission_classes (class, n, first)
        SELECT w.class, COUNT(*), MIN(w.seq) FROM old_rows o JOIN new_rows w ON w.seq = o.seq
        WHERE w.class <> o.class GROUP BY w.class ORDER BY w.class
    ON CONFLICT (class) DO UPDATE SET n = admission_classes.n + EXCLUDED.n,
        first = LEAST(admission_classes.first, EXCLUDED.first);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS admission_classes_join ON admission_line;
CREATE TRIGGER admission_classes_join AFTER INSERT ON admission_line
    REFERENCING NEW TABLE AS joined_rows
    FOR EACH STATEMENT EXECUTE FUNCTION admission_classes_join();
DROP TRIGGER IF EXISTS admission_classes_leave ON admission_line;
CREATE TRIGGER admission_classes_leave AFTER DELETE ON admission_line
    REFERENCING OLD TABLE AS left_rows
    FOR EACH STATEMENT EXECUTE FUNCTION admission_classes_leave();
DROP TRIGGER IF EXISTS admission_classes_move ON admission_line;
CREATE TRIGGER admission_classes_move AFTER UPDATE ON admission_line
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION admission_classes_move();
DELETE FROM admission_line l WHERE NOT EXISTS (SELECT 1 FROM executions e
    WHERE e.execution_id = l.execution_id AND e.status IN ('enqueued', 'pulling', 'running'));
DELETE FROM admission_slots s WHERE NOT EXISTS (SELECT 1 FROM executions e
    WHERE e.execution_id = s.execution_id AND e.status IN ('enqueued', 'pulling', 'running'));
CREATE OR REPLACE FUNCTION admission_given_back() RETURNS trigger AS $$
BEGIN
    DELETE FROM admission_line WHERE execution_id = OLD.execution_id;
    DELETE FROM admission_slots WHERE execution_id = OLD.execution_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS execution_ended ON executions;
CREATE TRIGGER execution_ended AFTER UPDATE OF status ON executions FOR EACH ROW
    WHEN (NEW.status NOT IN ('enqueued', 'pulling', 'running'))
    EXECUTE FUNCTION admission_given_back();
DROP TRIGGER IF EXISTS execution_removed ON executions;
CREATE TRIGGER execution_removed AFTER DELETE ON executions FOR EACH ROW
    EXECUTE FUNCTION admission_given_back();
"#;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction, one process
/// at a time (concurrent `CREATE TABLE IF NOT EXISTS` can collide); refuses
/// a database a newer fastlane made.
pub(super) async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    let pg = super::rows::pg;
    let tx = client.transaction().await.map_err(pg)?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(hashtext('fastlane-schema'));
         CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);",
    )
    .await
    .map_err(pg)?;
    let found: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await
        .map_err(pg)?
        .try_get(0)
        .map_err(pg)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "the PostgreSQL store has schema version {found}, newer than the {SCHEMA_VERSION} this \
             fastlane knows: run the fastlane that wrote it (or a newer one), or restore a backup"
        )));
    }
    for migration in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
        tx.batch_execute(migration).await.map_err(pg)?;
    }
    if found < SCHEMA_VERSION {
        tx.execute("DELETE FROM schema_version", &[])
            .await
            .map_err(pg)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(pg)?;
        tracing::info!(from = found, to = SCHEMA_VERSION, "store schema migrated");
    }
    tx.commit().await.map_err(pg)
}

/// The tables of the first version, created when missing.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tasks (
    task_id          TEXT PRIMARY KEY,
    seq              BIGSERIAL NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    last_modified_at TIMESTAMPTZ NOT NULL,
    words            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS tasks_by_seq ON tasks (seq);
CREATE TABLE IF NOT EXISTS jobs (
    job_id           TEXT PRIMARY KEY,
    task_id          TEXT NOT NULL,
    last_modified_at TIMESTAMPTZ NOT NULL,
    data             JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_task ON jobs (task_id, last_modified_at);
CREATE TABLE IF NOT EXISTS executions (
    execution_id TEXT PRIMARY KEY,
    seq          BIGSERIAL NOT NULL,
    job_id       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    status       TEXT NOT NULL,
    data         JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_job ON executions (job_id, created_at);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status);
CREATE TABLE IF NOT EXISTS execution_logs (
    execution_id TEXT NOT NULL,
    start        BIGINT NOT NULL,
    source       TEXT NOT NULL,
    text         BYTEA NOT NULL,
    raw_len      BIGINT NOT NULL,
    PRIMARY KEY (execution_id, start)
);
CREATE TABLE IF NOT EXISTS admission_slots (
    gate         TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (gate, execution_id)
);
CREATE INDEX IF NOT EXISTS admission_slots_by_execution ON admission_slots (execution_id);
CREATE TABLE IF NOT EXISTS admission_line (
    seq          BIGSERIAL PRIMARY KEY,
    execution_id TEXT NOT NULL UNIQUE,
    gates        JSONB NOT NULL
);
CREATE TABLE IF NOT EXISTS host_health (
    host  TEXT PRIMARY KEY,
    since TIMESTAMPTZ NOT NULL,
    data  JSONB NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    queue       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    due_ms      BIGINT NOT NULL,
    taken_until BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS idempotency (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response    TEXT NOT NULL,
    expires_ms  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_ms);
CREATE TABLE IF NOT EXISTS blacklist (
    host TEXT PRIMARY KEY
);
"#;
