//! Work waiting for a worker: the [`Queue`] trait.
//!
//! Messages are delivered in FIFO order of their due time. A consumer holds
//! a delivered message under a lease that it extends while it works; a
//! message whose lease lapses is delivered again. Message ids are unique:
//! enqueuing an id that is already queued does nothing, which makes
//! re-enqueuing after a crash safe.

#[cfg(test)]
pub mod conformance;
pub mod consumer;
pub mod redis;
pub mod sqlite;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The queue executions wait in.
pub const JOBS: &str = "jobs";
/// The queue e-mail and plugin notification deliveries wait in.
pub const NOTIFY: &str = "notify";
/// The queue webhook deliveries wait in (apart, so that `fastlane worker
/// --no-webhooks` and `--no-notify` can split them).
pub const WEBHOOKS: &str = "webhooks";
/// The queue scheduled firings (delayed and cron jobs) wait in, due at
/// their slot.
pub const SCHEDULE: &str = "schedule";

/// A queue failure.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue could not be reached or did not answer.
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    /// A message could not be read back.
    #[error("a queued message is unreadable: {0}")]
    Corrupt(String),
}

/// What a message asks a worker to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Work {
    /// Drive an execution to its end.
    #[serde(rename_all = "camelCase")]
    RunExecution {
        /// The execution.
        execution_id: String,
        /// The W3C `traceparent` of the span that queued it, when traces
        /// are exported (see [`crate::telemetry`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace: Option<String>,
    },
    /// Deliver one notification to one target.
    #[serde(rename_all = "camelCase")]
    Deliver {
        /// The execution the notification is about.
        execution_id: String,
        /// Its task.
        task_id: String,
        /// Its job.
        job_id: String,
        /// The notifier (`webhook`).
        notifier: String,
        /// The event (`starts`, `succeeds`, `fails`, `finishes`).
        event: fastlane_sdk::NotificationEvent,
        /// The target's position in the job's list for that event.
        index: usize,
    },
    /// Fire a delayed or cron job for one slot: create its execution and,
    /// for cron jobs, schedule the next slot.
    #[serde(rename_all = "camelCase")]
    FireJob {
        /// The job's task.
        task_id: String,
        /// The job.
        job_id: String,
        /// The job's schedule generation this firing belongs to; a firing of
        /// an older generation (the job was replaced or stopped) does nothing.
        generation: u32,
        /// The slot.
        slot: DateTime<Utc>,
    },
}

impl Work {
    /// The message's payload, as queues keep it.
    fn payload(&self) -> Result<String, QueueError> {
        serde_json::to_string(self).map_err(|e| QueueError::Corrupt(e.to_string()))
    }

    /// The message id for this work: one message per execution, one per
    /// (job, generation, slot), so enqueuing the same work twice is a no-op.
    pub fn message_id(&self) -> String {
        match self {
            Work::RunExecution { execution_id, .. } => execution_id.clone(),
            Work::Deliver {
                execution_id,
                notifier,
                event,
                index,
                ..
            } => format!(
                "deliver:{execution_id}:{notifier}:{}:{index}",
                event.as_str()
            ),
            Work::FireJob {
                job_id,
                generation,
                slot,
                ..
            } => format!("fire:{job_id}:{generation}:{}", slot.timestamp_millis()),
        }
    }
}

/// Now in milliseconds, on the queues' clock (tokio's paused clock in unit
/// tests). Read on the async side, never inside a database closure (those
/// run on blocking threads, outside the test clock).
fn now_ms() -> i64 {
    crate::clock::now().timestamp_millis()
}

/// `due` in milliseconds; now when `None`.
fn due_ms(due: Option<DateTime<Utc>>) -> i64 {
    due.map_or_else(now_ms, |d| d.timestamp_millis())
}

/// `d` in milliseconds, saturating.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A message handed to a consumer, with the lease that proves it holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message id.
    pub id: String,
    /// What to do.
    pub work: Work,
    /// The lease token; only its holder may ack or extend.
    pub token: String,
    /// How many times the message has been delivered, this time included.
    pub attempts: u32,
}

/// A FIFO queue with leases.
#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// Adds `work` to `queue`, due at `due` (now when `None`). Returns false
    /// when a message with the same id was already queued.
    async fn enqueue(
        &self,
        queue: &str,
        work: &Work,
        due: Option<DateTime<Utc>>,
    ) -> Result<bool, QueueError>;

    /// Waits for the oldest due message of `queue` and leases it for
    /// `lease`. Returns `None` when `cancel` fires first.
    async fn dequeue(
        &self,
        queue: &str,
        lease: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<Delivery>, QueueError>;

    /// Like [`Queue::dequeue`], but leases up to `max` due messages at once
    /// (at least one, oldest first). Queues that cannot lease several in one
    /// step lease one.
    async fn dequeue_many(
        &self,
        queue: &str,
        max: usize,
        lease: Duration,
        cancel: &CancellationToken,
    ) -> Result<Vec<Delivery>, QueueError> {
        let _ = max;
        Ok(self
            .dequeue(queue, lease, cancel)
            .await?
            .into_iter()
            .collect())
    }

    /// Extends a lease. Fails when the lease was lost.
    async fn extend(&self, delivery: &Delivery, lease: Duration) -> Result<(), QueueError>;

    /// Removes a message whose work is done.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;

    /// Gives a message back, to be delivered again after `delay`.
    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError>;

    /// How many messages each queue holds (due or not, leased or not).
    async fn lengths(&self) -> Result<BTreeMap<String, u64>, QueueError>;

    /// Checks the queue answers.
    async fn ping(&self) -> Result<(), QueueError>;

    /// An id the queue keeps as long as it keeps its messages: a different
    /// answer means it lost them (a Redis restarted without persistence,
    /// failed over to an empty replica, or flushed), and the store's state
    /// must be queued again ([`crate::roles`] watches it). The embedded
    /// queue lives and dies with the store, so it never changes.
    async fn epoch(&self) -> Result<String, QueueError> {
        Ok("embedded".to_owned())
    }
}
