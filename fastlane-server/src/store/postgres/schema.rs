//! The PostgreSQL store's tables: the embedded store's, with `TIMESTAMPTZ`
//! for times, JSONB for documents, `BYTEA` for log text, and a `seq` where
//! the embedded store orders by SQLite's rowid.

/// The tables, created at connect when missing.
pub(super) const SCHEMA: &str = r#"
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
