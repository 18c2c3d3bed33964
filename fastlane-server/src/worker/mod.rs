//! The worker: takes messages off the queue and drives each execution to its
//! end, several at once.
//!
//! Every step of an execution is persisted before the next one starts (see
//! [`execution`]), so a worker can be killed at any point: the message's
//! lease lapses (or, in standalone mode, is taken back at the next start)
//! and whichever worker receives it again carries on from the last step
//! stored.

pub mod execution;
mod progress;
pub mod turnstile;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::queue::consumer::consume;
use crate::queue::{Delivery, JOBS, Work};
use crate::services::Services;
use execution::Outcome;

/// Runs until `shutdown` fires, then returns once the executions in hand
/// have stopped where they were (their messages stay leased, to be taken
/// back on the next start).
pub async fn run(services: Services, shutdown: CancellationToken) {
    let services = Arc::new(services);
    let concurrency = services.config.worker_concurrency;
    let lease = Duration::from_secs(services.config.queue_lease_seconds);
    info!(concurrency, "worker started");
    let queue = Arc::clone(&services.queue);
    let turnstile = turnstile::Turnstile::new();
    consume(
        queue,
        JOBS,
        concurrency,
        lease,
        shutdown.clone(),
        |delivery| {
            let services = Arc::clone(&services);
            let shutdown = shutdown.clone();
            // Taken here, in the order messages come off the queue.
            let ticket = turnstile.ticket();
            async move { handle(&services, delivery, ticket, lease, &shutdown).await }
        },
    )
    .await;
    info!("worker stopped");
}

/// Works on one message under its lease, then acks it or gives it back.
async fn handle(
    services: &Services,
    delivery: Delivery,
    ticket: turnstile::Ticket,
    lease: Duration,
    shutdown: &CancellationToken,
) {
    let Work::RunExecution {
        execution_id,
        trace,
    } = &delivery.work
    else {
        warn!(message = %delivery.id, "not work for the worker; dropping it");
        let _ = services.queue.ack(&delivery).await;
        return;
    };
    let keep_lease = async {
        loop {
            tokio::time::sleep(lease / 3).await;
            if let Err(err) = services.queue.extend(&delivery, lease).await {
                // Someone else may hold the message now: stop working on it.
                warn!(message = %delivery.id, error = %err, "lost the lease");
                break;
            }
        }
    };
    let outcome = tokio::select! {
        outcome = execution::drive(services, execution_id, trace.as_deref(), delivery.attempts, ticket) => outcome,
        () = keep_lease => Outcome::Interrupted,
        () = shutdown.cancelled() => Outcome::Interrupted,
    };
    let result = match outcome {
        Outcome::Finished | Outcome::Parked => services.queue.ack(&delivery).await,
        Outcome::Later(delay) => services.queue.retry_later(&delivery, delay).await,
        Outcome::Interrupted => Ok(()),
    };
    if let Err(err) = result {
        warn!(message = %delivery.id, error = %err, "cannot settle queue message; it will be delivered again");
    }
}

/// Which unfinished executions [`reconcile`] queues again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconcile {
    /// All of them, those waiting in the admission line included: at
    /// start-up, so that each waiter asks again with the gates of the
    /// configuration now loaded (a raised `maxRunning` counts at once), and
    /// keeps its place.
    All,
    /// All but those waiting in line, which a pass over the line
    /// ([`crate::admission`]) queues when a slot frees: periodically, where
    /// queueing every waiter again would only park it again.
    NotWaiting,
}

/// Puts unfinished executions back in the queue (a no-op for those already
/// there): nothing the API accepted waits forever because a process died
/// between storing an execution and queueing it.
pub async fn reconcile(services: &Services, which: Reconcile) -> anyhow::Result<usize> {
    let mut unfinished = services.store.unfinished_executions().await?;
    if which == Reconcile::NotWaiting {
        let waiting: std::collections::HashSet<String> =
            services.store.waiting().await?.into_iter().collect();
        unfinished.retain(|execution| !waiting.contains(&execution.execution_id));
    }
    let mut requeued = 0;
    for execution in unfinished {
        let work = Work::RunExecution {
            execution_id: execution.execution_id.clone(),
            trace: None,
        };
        if services.queue.enqueue(JOBS, &work, None).await? {
            requeued += 1;
        }
    }
    Ok(requeued)
}
