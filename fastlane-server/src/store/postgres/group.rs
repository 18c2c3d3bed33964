//! Group commit: concurrent submissions share transactions. Each is turned
//! into its rows at once ([`Rows`]) and handed to a gatherer; a few writers
//! each commit whatever waits when they are free, in one transaction, and
//! answer every submission after the commit that holds it. Under load a
//! commit carries many submissions (one `COMMIT`, one WAL flush); alone, a
//! submission waits for no one.

use std::sync::Arc;

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

/// Commits `batch` in one transaction; should that fail, each submission
/// in one of its own, so that one bad submission fails alone.
async fn commit(pool: &Pool, batch: Vec<Waiting>) {
    let all: Vec<&Rows> = batch.iter().map(|w| &w.rows).collect();
    let result = transaction(pool, &all).await;
    match result {
        Ok(()) => {
            for waiting in batch {
                // A submitter that went away needs no answer.
                let _ = waiting.done.send(Ok(()));
            }
        }
        Err(err) if batch.len() == 1 => {
            for waiting in batch {
                let _ = waiting.done.send(Err(err.clone().into_store()));
            }
        }
        Err(err) => {
            tracing::debug!(submissions = batch.len(), error = ?err, "a group commit failed; writing each alone");
            for waiting in batch {
                let result = transaction(pool, &[&waiting.rows]).await;
                let _ = waiting.done.send(result.map_err(WriteError::into_store));
            }
        }
    }
}

async fn transaction(pool: &Pool, batch: &[&Rows]) -> Result<(), WriteError> {
    let mut client = pool.get().await.map_err(|e| {
        StoreError::Unavailable(format!("postgres: {}", fastlane_sdk::text::error_chain(&e)))
    })?;
    let tx = client.transaction().await.map_err(pg)?;
    write_rows(&tx, batch).await?;
    tx.commit().await.map_err(pg)?;
    Ok(())
}
