//! [`consume`]: the loop every queue consumer runs (the worker, the
//! scheduler, the notification sender). It leases messages from one queue
//! (as many at once as it has free slots) and hands each to a handler, at
//! most `concurrency` at once, until
//! shutdown; then it waits for the handlers in flight. Handlers settle their
//! own messages (ack, or give back for later).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, warn};

use super::{Delivery, Queue};

/// Consumes `queue_name` until `shutdown` fires.
pub async fn consume<F, Fut>(
    queue: Arc<dyn Queue>,
    queue_name: &'static str,
    concurrency: usize,
    lease: Duration,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    loop {
        let first = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        // As many messages as there are free slots, leased in one step.
        let mut permits = vec![first];
        while let Ok(permit) = Arc::clone(&slots).try_acquire_owned() {
            permits.push(permit);
        }
        let deliveries = match queue
            .dequeue_many(queue_name, permits.len(), lease, &shutdown)
            .await
        {
            Ok(deliveries) if deliveries.is_empty() => break,
            Ok(deliveries) => deliveries,
            Err(err) => {
                warn!(queue = queue_name, error = %err, "cannot read the queue; trying again in 1s");
                drop(permits);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
        };
        // Slots without a message go back with the surplus permits.
        for (delivery, permit) in deliveries.into_iter().zip(permits) {
            let handled = handler(delivery);
            in_flight.spawn(
                async move {
                    handled.await;
                    drop(permit);
                }
                // Handlers log under the consumer's span (the process's id).
                .in_current_span(),
            );
        }
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}
