//! Group commit: concurrent submissions share transactions. Each is turned
//! into its rows at once ([`Rows`]) and handed to a gatherer; a few writers
//! each commit whatever waits when they are free, in one transaction, and
//! answer every submission after the commit that holds it. Under load a
//! commit carries many submissions (one `COMMIT`, one WAL flush); alone, a
//! submission waits for no one.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::rows::pg;
use super::submit::{Rows, WriteError, write_rows};
use crate::store::StoreError;

/// How many transactions are written at once: enough to keep the server's
/// cores busy while one commit waits on its flush, few enough that the
/// rest of the pool serves reads.
const WRITERS: usize = 4;

/// How many rows one transaction takes at the most (a batch route's
/// submission alone may hold more, and is written alone).
const MOST_ROWS: usize = 4_000;

/// A submission waiting for its commit.
struct Waiting {
    rows: Rows,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// Commits concurrent submissions together (see the module's header).
#[derive(Debug, Clone)]
pub(super) struct GroupCommit {
    waiting: mpsc::Sender<Waiting>,
}

impl GroupCommit {
    /// Starts the writers on `pool`; they stop when the last handle drops.
    pub(super) fn start(pool: Pool) -> Self {
        let (waiting, receiver) = mpsc::channel(1_024);
        tokio::spawn(gather(pool, receiver));
        Self { waiting }
    }

    /// Writes `rows`, answering once the transaction that holds them has
    /// committed.
    pub(super) async fn write(&self, rows: Rows) -> Result<(), StoreError> {
        let stopped = || StoreError::Unavailable("postgres: the store's writers stopped".into());
        let (done, answer) = oneshot::channel();
        self.waiting
            .send(Waiting { rows, done })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Takes what waits whenever a writer is free and commits it on that
/// writer.
async fn gather(pool: Pool, mut receiver: mpsc::Receiver<Waiting>) {
    let writers = Arc::new(Semaphore::new(WRITERS));
    while let Some(first) = receiver.recv().await {
        let Ok(writer) = writers.clone().acquire_owned().await else {
            return;
        };
        // What arrived while every writer was busy goes with it.
        let mut size = first.rows.len();
        let mut batch = vec![first];
        while size < MOST_ROWS {
            let Ok(next) = receiver.try_recv() else { break };
            size += next.rows.len();
            batch.push(next);
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            commit(&pool, batch).await;
            drop(writer);
        });
    }
}

/// How long one transaction may take before its submissions are answered
/// with an error (a half-open connection must not hold a writer forever).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Commits `batch` in one transaction. Should the server refuse it, each
/// submission is written in one of its own, so that one bad submission
/// fails alone; should the store be unreachable or the commit's outcome
/// unknown, every submission is told so (writing again could write twice).
async fn commit(pool: &Pool, batch: Vec<Waiting>) {
    let all: Vec<&Rows> = batch.iter().map(|w| &w.rows).collect();
    let result = transaction(pool, &all).await;
    match result {
        Err(err @ (WriteError::Overlap | WriteError::Refused(_))) if batch.len() > 1 => {
            tracing::debug!(submissions = batch.len(), error = ?err, "a group commit was refused; writing each alone");
            for waiting in batch {
                // A submitter that went away needs no answer, nor its write.
                if waiting.done.is_closed() {
                    continue;
                }
                let result = transaction(pool, &[&waiting.rows]).await;
                let _ = waiting.done.send(result.map_err(WriteError::into_store));
            }
        }
        result => {
            let result = result.map_err(WriteError::into_store);
            for waiting in batch {
                let _ = waiting.done.send(result.clone());
            }
        }
    }
}

async fn transaction(pool: &Pool, batch: &[&Rows]) -> Result<(), WriteError> {
    let written = async {
        let mut client = pool.get().await.map_err(|e| {
            WriteError::Store(StoreError::Unavailable(format!(
                "postgres: {}",
                fastlane_sdk::text::error_chain(&e)
            )))
        })?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| WriteError::Store(pg(e)))?;
        write_rows(&tx, batch).await?;
        // Whatever goes wrong now, the outcome is unknown.
        tx.commit().await.map_err(|e| WriteError::Store(pg(e)))
    };
    match tokio::time::timeout(TRANSACTION_TIMEOUT, written).await {
        Ok(result) => result,
        Err(_) => Err(WriteError::Store(StoreError::Unavailable(format!(
            "postgres: a transaction took over {} s",
            TRANSACTION_TIMEOUT.as_secs()
        )))),
    }
}
