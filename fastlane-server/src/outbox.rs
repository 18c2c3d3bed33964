//! The transactional outbox: a submission's queue message is written by the
//! store in the transaction that writes the job and its execution
//! ([`crate::store::Outgoing`]), and published to the queue afterwards by
//! [`run`], in every process.
//!
//! So a submission is acknowledged exactly when it will run: a store that
//! fails leaves neither the job nor its message, and a queue that is away
//! (Redis restarting, failing over) delays the message without losing it
//! and without refusing the submission. The embedded store with the
//! embedded queue writes the message straight into the queue's table in
//! that same transaction, so there is nothing to publish.
//!
//! Publishing is at least once: a publisher that dies between queueing a
//! message and removing it leaves it to be published again after
//! [`LEASE`]. Messages carry their work's id, so a message still queued is
//! not queued twice, and a worker handed an execution that already ended
//! leaves it alone.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::queue::Work;
use crate::services::Services;
use crate::store::Outgoing;

/// Messages one round takes from the store.
const BATCH: usize = 256;

/// Messages of a batch being queued at once.
const IN_FLIGHT: usize = 64;

/// How long a taken message is left to its publisher before another may
/// take it.
pub const LEASE: Duration = Duration::from_secs(5);

/// How often the outbox is looked at without a nudge (for messages written
/// by other processes, or left by a publisher that died).
const IDLE: Duration = Duration::from_secs(1);

/// The longest wait between two tries while the queue or the store is away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The handle the API nudges after writing messages, so they are published
/// at once rather than at the next look.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    nudged: Arc<Notify>,
    /// The store queues its messages itself: nothing to nudge.
    direct: bool,
}

impl Outbox {
    /// The outbox of a store that keeps its messages for [`run`].
    pub fn published() -> Self {
        Self::default()
    }

    /// The outbox of a store that queues its messages in the transaction
    /// that writes them (the embedded store with the embedded queue).
    pub fn direct() -> Self {
        Self {
            direct: true,
            ..Self::default()
        }
    }

    /// Says messages were written.
    pub fn nudge(&self) {
        if !self.direct {
            self.nudged.notify_one();
        }
    }
}

/// The outbox message that queues `work` on `queue`, due at `due`.
pub fn message(queue: &str, work: &Work, due: DateTime<Utc>) -> anyhow::Result<Outgoing> {
    Ok(Outgoing {
        queue: queue.to_owned(),
        id: work.message_id(),
        payload: serde_json::to_string(work)?,
        due_ms: due.timestamp_millis(),
    })
}

/// Publishes outbox messages to the queue until `shutdown`. Where the store
/// queues its messages itself, it only publishes what an earlier run (with
/// a networked queue, on the same data) left in the outbox, and stops.
pub async fn run(services: Services, shutdown: CancellationToken) {
    if services.outbox.direct {
        loop {
            match publish(&services).await {
                Ok(taken) if taken == BATCH && !shutdown.is_cancelled() => {}
                Ok(_) => return,
                Err(err) => {
                    warn!(error = %format!("{err:#}"), "cannot publish what the outbox holds");
                    return;
                }
            }
        }
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        let wait = match publish(&services).await {
            Ok(taken) if taken == BATCH && !shutdown.is_cancelled() => continue,
            Ok(_) => {
                backoff = Duration::from_millis(100);
                IDLE
            }
            Err(err) => {
                warn!(error = %format!("{err:#}"), retry_in = ?backoff, "cannot publish the outbox; will try again");
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = services.outbox.nudged.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One round: takes a batch, queues each message, removes those queued.
/// Returns how many were taken.
///
/// The messages are queued [`IN_FLIGHT`] at a time: on Redis's multiplexed
/// connection that pipelines them, one round trip for many where awaiting
/// each cost one each. A group with a failure ends the round, as one failed
/// message did before, so that a queue that stopped answering costs one
/// timeout, well within the lease, and the messages behind it wait their
/// turn.
async fn publish(services: &Services) -> anyhow::Result<usize> {
    // A queue that is away would leave a whole batch taken, and waiting
    // for its lease to lapse once the queue is back.
    services.queue.ping().await?;
    let taken = services.store.take_outbox(BATCH, LEASE).await?;
    let mut published = Vec::with_capacity(taken.len());
    let mut failure = None;
    for group in taken.chunks(IN_FLIGHT) {
        let outcomes = join_all(group.iter().map(|message| queue_one(services, message))).await;
        for (message, outcome) in group.iter().zip(outcomes) {
            match outcome {
                // Whatever was queued leaves the outbox, even beside a failure.
                Ok(()) => published.push(message.id.clone()),
                Err(err) => {
                    failure.get_or_insert(err);
                }
            }
        }
        if failure.is_some() {
            break;
        }
    }
    if !published.is_empty() {
        services.store.remove_outbox(&published).await?;
        debug!(published = published.len(), "outbox published");
    }
    match failure {
        Some(err) => Err(err),
        None => Ok(taken.len()),
    }
}

/// Queues one message. One that cannot be read is dropped with an error in
/// the log: kept, it would stop every message behind it.
async fn queue_one(services: &Services, message: &Outgoing) -> anyhow::Result<()> {
    let work: Work = match serde_json::from_str(&message.payload) {
        Ok(work) => work,
        Err(err) => {
            tracing::error!(message = %message.id, error = %err, "unreadable outbox message dropped");
            return Ok(());
        }
    };
    let due = DateTime::from_timestamp_millis(message.due_ms);
    services.queue.enqueue(&message.queue, &work, due).await?;
    Ok(())
}
