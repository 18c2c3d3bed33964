//! The embedded [`Queue`]: a table in the standalone server's SQLite file.
//!
//! A lease is the message's due time pushed into the future plus a token
//! (SQS's visibility timeout). Only one process can open the file, so at
//! start-up [`SqliteQueue::new`] makes every leased message due again: its
//! holder was the previous process, and it is gone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::params;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Delivery, Queue, QueueError, Work, due_ms, ms, now_ms};
use crate::embedded::{Db, DbError, insert_message};

/// The longest a waiting consumer sleeps before looking again, as a guard
/// against a missed wake-up.
const MAX_IDLE: Duration = Duration::from_secs(5);

/// The embedded queue.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    db: Db,
    /// Wakes waiting consumers when a message is enqueued or given back
    /// (the database's own, which the embedded store also wakes).
    wake: Arc<Notify>,
}

impl From<DbError> for QueueError {
    fn from(err: DbError) -> Self {
        QueueError::Unavailable(err.to_string())
    }
}

impl SqliteQueue {
    /// The queue on an open database; takes back the previous process's leases.
    pub async fn new(db: Db) -> Result<Self, QueueError> {
        let now = now_ms();
        let released = db
            .write(move |conn| {
                Ok(conn.execute(
                    "UPDATE queue SET lease_token = NULL, due_ms = MIN(due_ms, ?1)
                     WHERE lease_token IS NOT NULL",
                    params![now],
                )?)
            })
            .await?;
        if released > 0 {
            tracing::info!(released, "took back leases of the previous process");
        }
        Ok(Self {
            wake: Arc::clone(db.messages_added()),
            db,
        })
    }

    /// Leases the oldest due messages, up to `max`, in one write; or, when
    /// none is due, says when the next one is.
    async fn try_lease(
        &self,
        queue: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Result<Vec<Delivery>, Option<i64>>, QueueError> {
        let queue = queue.to_owned();
        let now = now_ms();
        let limit = i64::try_from(max.max(1)).unwrap_or(1);
        Ok(self
            .db
            .write(move |conn| {
                let tx = conn.savepoint()?;
                let rows: Vec<(i64, String, String, u32)> = tx
                    .prepare_cached(
                        "SELECT seq, id, payload, attempts FROM queue
                         WHERE queue = ?1 AND due_ms <= ?2 ORDER BY due_ms, seq LIMIT ?3",
                    )?
                    .query_map(params![queue, now, limit], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<Result<_, _>>()?;
                if rows.is_empty() {
                    let next: Option<i64> = tx
                        .prepare_cached("SELECT MIN(due_ms) FROM queue WHERE queue = ?1")?
                        .query_row(params![queue], |r| r.get(0))?;
                    return Ok(Err(next));
                }
                let mut deliveries = Vec::with_capacity(rows.len());
                {
                    let mut take = tx.prepare_cached(
                        "UPDATE queue SET due_ms = ?1, lease_token = ?2, attempts = attempts + 1
                         WHERE seq = ?3",
                    )?;
                    for (seq, id, payload, attempts) in rows {
                        let token = uuid::Uuid::new_v4().to_string();
                        take.execute(params![now + ms(lease), token, seq])?;
                        let work: Work = serde_json::from_str(&payload)
                            .map_err(|e| DbError::Join(format!("unreadable message {id}: {e}")))?;
                        deliveries.push(Delivery {
                            id,
                            work,
                            token,
                            attempts: attempts + 1,
                        });
                    }
                }
                tx.commit()?;
                Ok(Ok(deliveries))
            })
            .await?)
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn enqueue(
        &self,
        queue: &str,
        work: &Work,
        due: Option<DateTime<Utc>>,
    ) -> Result<bool, QueueError> {
        let queue = queue.to_owned();
        let id = work.message_id();
        let payload = work.payload()?;
        let due_ms = due_ms(due);
        let added = self
            .db
            .write(move |conn| Ok(insert_message(conn, &queue, &id, &payload, due_ms)?))
            .await?;
        self.wake.notify_waiters();
        Ok(added)
    }

    async fn dequeue(
        &self,
        queue: &str,
        lease: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<Delivery>, QueueError> {
        Ok(self
            .dequeue_many(queue, 1, lease, cancel)
            .await?
            .into_iter()
            .next())
    }

    async fn dequeue_many(
        &self,
        queue: &str,
        max: usize,
        lease: Duration,
        cancel: &CancellationToken,
    ) -> Result<Vec<Delivery>, QueueError> {
        loop {
            // Register for wake-ups before looking, so an enqueue between the
            // look and the wait is not missed.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let idle = match self.try_lease(queue, max, lease).await? {
                Ok(deliveries) => return Ok(deliveries),
                Err(Some(next_due)) => {
                    Duration::from_millis(u64::try_from(next_due - now_ms()).unwrap_or(0))
                        .min(MAX_IDLE)
                }
                Err(None) => MAX_IDLE,
            };
            tokio::select! {
                () = cancel.cancelled() => return Ok(Vec::new()),
                () = &mut woken => {}
                () = tokio::time::sleep(idle) => {}
            }
        }
    }

    async fn extend(&self, delivery: &Delivery, lease: Duration) -> Result<(), QueueError> {
        let (id, token) = (delivery.id.clone(), delivery.token.clone());
        let until = now_ms() + ms(lease);
        let updated = self
            .db
            .write(move |conn| {
                Ok(conn.execute(
                    "UPDATE queue SET due_ms = ?1 WHERE id = ?2 AND lease_token = ?3",
                    params![until, id, token],
                )?)
            })
            .await?;
        if updated == 0 {
            return Err(QueueError::Unavailable(format!(
                "the lease on message {} was lost",
                delivery.id
            )));
        }
        Ok(())
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let (id, token) = (delivery.id.clone(), delivery.token.clone());
        self.db
            .write(move |conn| {
                Ok(conn.execute(
                    "DELETE FROM queue WHERE id = ?1 AND lease_token = ?2",
                    params![id, token],
                )?)
            })
            .await?;
        Ok(())
    }

    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        let (id, token) = (delivery.id.clone(), delivery.token.clone());
        let due = now_ms() + ms(delay);
        self.db
            .write(move |conn| {
                Ok(conn.execute(
                    "UPDATE queue SET due_ms = ?1, lease_token = NULL
                     WHERE id = ?2 AND lease_token = ?3",
                    params![due, id, token],
                )?)
            })
            .await?;
        self.wake.notify_waiters();
        Ok(())
    }

    async fn lengths(&self) -> Result<BTreeMap<String, u64>, QueueError> {
        Ok(self
            .db
            .read(|conn| {
                let mut stmt = conn.prepare("SELECT queue, COUNT(*) FROM queue GROUP BY queue")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                let mut lengths = BTreeMap::from([(super::JOBS.to_owned(), 0)]);
                for row in rows {
                    let (queue, n): (String, u64) = row?;
                    lengths.insert(queue, n);
                }
                Ok(lengths)
            })
            .await?)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.db
            .read(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::JOBS;

    fn run(id: &str) -> Work {
        Work::RunExecution {
            execution_id: id.to_owned(),
            trace: None,
        }
    }

    async fn open(dir: &std::path::Path) -> SqliteQueue {
        SqliteQueue::new(Db::open(dir).expect("open db"))
            .await
            .expect("queue")
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("fastlane-queue-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    crate::queue_conformance!(async { std::sync::Arc::new(open(&temp_dir("conformance")).await) });

    #[tokio::test]
    async fn a_restart_takes_back_the_dead_process_leases() {
        let dir = temp_dir("restart");
        let cancel = CancellationToken::new();
        {
            let queue = open(&dir).await;
            queue.enqueue(JOBS, &run("y"), None).await.expect("enqueue");
            let held = queue
                .dequeue(JOBS, Duration::from_secs(3600), &cancel)
                .await
                .expect("dequeue");
            assert!(held.is_some());
        }
        let queue = open(&dir).await;
        let again = tokio::time::timeout(
            Duration::from_secs(2),
            queue.dequeue(JOBS, Duration::from_secs(30), &cancel),
        )
        .await
        .expect("delivered at once")
        .expect("dequeue");
        assert_eq!(again.map(|d| d.work), Some(run("y")));
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_directory() {
        let dir = temp_dir("lock");
        let _first = Db::open(&dir).expect("first");
        let err = Db::open(&dir).expect_err("second");
        assert!(
            err.to_string()
                .contains("in use by another fastlane process"),
            "{err}"
        );
    }
}
