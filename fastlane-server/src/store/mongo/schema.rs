//! The MongoDB store's collections and their indexes, created at connect
//! (creating an index that exists is a no-op, so any number of processes
//! may connect at once).
//!
//! | collection | `_id` | beside the record in `doc` |
//! |---|---|---|
//! | `tasks` | task id | `seq` (creation order), `words` and `words_text` (search) |
//! | `jobs` | job id | `task_id`, `last_modified_at`, `generation`, `next_run_at`, `stopped` |
//! | `executions` | execution id | `job_id`, `seq`, `created_at`, `status`, `dispatches` |
//! | `execution_logs` | generated | `execution_id`, `start`, `end`, `source`, `text` (binary), `raw_len` |
//! | `admission` | `line` | the one admission document (see `admission.rs`) |
//! | `host_health` | host | `since_ns`, the report in `doc` |
//! | `blacklist` | host | — |
//! | `counters` | sequence name | `n`, the last number handed out |
//! | `idempotency` | key | `fingerprint`, `response`, `expires_ms` |
//! | `outbox` | message id | `queue`, `payload`, `due_ms`, `taken_until` (see `Store::take_outbox`) |
//! | `deliveries` | message id | `queue`, `payload`, `due_ms` (see `Submission::owed`) |

use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};

pub(super) const TASKS: &str = "tasks";
pub(super) const JOBS: &str = "jobs";
pub(super) const EXECUTIONS: &str = "executions";
pub(super) const LOGS: &str = "execution_logs";
pub(super) const ADMISSION: &str = "admission";
/// The gates an operator paused: `_id` the gate's key, `at` when.
pub(super) const PAUSED: &str = "paused_gates";
pub(super) const HOST_HEALTH: &str = "host_health";
pub(super) const BLACKLIST: &str = "blacklist";
pub(super) const COUNTERS: &str = "counters";
pub(super) const OUTBOX: &str = "outbox";
pub(super) const DELIVERIES: &str = "deliveries";
pub(super) const IDEMPOTENCY: &str = "idempotency";

fn index(keys: Document, unique: bool) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().unique(unique).build())
        .build()
}

/// Creates the indexes the store's queries use.
pub(super) async fn create_indexes(db: &Database) -> mongodb::error::Result<()> {
    let collection = |name: &str| db.collection::<Document>(name);
    collection(TASKS)
        .create_indexes([
            // Listing in creation order.
            index(doc! {"seq": 1}, false),
            // Search: one entry per word of the id.
            index(doc! {"words": 1, "seq": 1}, false),
        ])
        .await?;
    collection(JOBS)
        .create_indexes([
            // A task's jobs, most recently changed first (the job id is `_id`,
            // unique across tasks as in the other stores).
            index(doc! {"task_id": 1, "last_modified_at": -1}, false),
            // Scheduled jobs, by next firing.
            index(doc! {"next_run_at": 1}, false),
        ])
        .await?;
    collection(EXECUTIONS)
        .create_indexes([
            // A job's executions, newest first.
            index(doc! {"job_id": 1, "created_at": -1, "seq": -1}, false),
            // Unfinished executions, oldest first.
            index(doc! {"status": 1, "created_at": 1, "seq": 1}, false),
            // Those that ended lately, the latest first.
            index(doc! {"status": 1, "doc.finished_at": -1}, false),
            // A task's newest execution (its last run).
            index(doc! {"doc.task_id": 1, "created_at": -1, "seq": -1}, false),
        ])
        .await?;
    collection(OUTBOX)
        .create_indexes([
            // Messages free to take, oldest first.
            index(doc! {"taken_until": 1, "due_ms": 1, "_id": 1}, false),
        ])
        .await?;
    collection(LOGS)
        .create_indexes([
            // One piece per offset: appending again is ignored.
            index(doc! {"execution_id": 1, "start": 1}, true),
        ])
        .await?;
    Ok(())
}
