//! Notifications: who hears about an execution, and their delivery.
//!
//! [`announce`] queues one `Deliver` message per target the job names for an
//! event (message ids are derived from execution, notifier, event and
//! target, so announcing twice is harmless). [`run`] consumes them: it
//! hands each to its notifier plugin, records the attempt with the
//! execution, and gives failed ones back to the queue with back-off until
//! the target's `retries` are used up. Deliveries never hold up jobs.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use fastlane_sdk::{
    Delivery, DispatchRecord, ErrorKind, Execution, ExecutionStatus, Job, NotificationEvent,
};

use crate::queue::{Delivery as QueueDelivery, NOTIFY, Work};
use crate::redact::redact_envs;
use crate::services::Services;

/// Deliveries in flight at once.
const CONCURRENCY: usize = 8;

/// The events an execution in `status` announces.
pub fn events_for(status: ExecutionStatus) -> &'static [NotificationEvent] {
    match status {
        ExecutionStatus::Running => &[NotificationEvent::Starts],
        ExecutionStatus::Done => &[NotificationEvent::Succeeds, NotificationEvent::Finishes],
        ExecutionStatus::Failed => &[NotificationEvent::Fails, NotificationEvent::Finishes],
        ExecutionStatus::Timedout | ExecutionStatus::Expired | ExecutionStatus::Stopped => {
            &[NotificationEvent::Finishes]
        }
        ExecutionStatus::Enqueued | ExecutionStatus::Pulling => &[],
    }
}

/// The webhook targets of `job` for `event`.
fn webhooks(job: &Job, event: NotificationEvent) -> &[fastlane_sdk::Webhook] {
    let hooks = &job.spec.webhooks;
    match event {
        NotificationEvent::Starts => &hooks.starts,
        NotificationEvent::Succeeds => &hooks.succeeds,
        NotificationEvent::Fails => &hooks.fails,
        NotificationEvent::Finishes => &hooks.finishes,
    }
}

/// Queues the notifications `execution`'s current status calls for.
pub async fn announce(services: &Services, job: &Job, execution: &Execution) -> anyhow::Result<()> {
    for &event in events_for(execution.status) {
        for index in 0..webhooks(job, event).len() {
            let work = Work::Deliver {
                execution_id: execution.execution_id.clone(),
                task_id: job.task_id.clone(),
                job_id: job.job_id.clone(),
                notifier: "webhook".to_owned(),
                event,
                index,
            };
            services.queue.enqueue(NOTIFY, &work, None).await?;
        }
    }
    Ok(())
}

/// Consumes the notification queue until `shutdown`.
pub async fn run(services: Services, shutdown: CancellationToken) {
    let services = Arc::new(services);
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let lease = Duration::from_secs(services.config.queue_lease_seconds);
    let mut in_flight = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let delivery = match services.queue.dequeue(NOTIFY, lease, &shutdown).await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => break,
            Err(err) => {
                warn!(error = %err, "cannot read the notification queue; trying again in 1s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
        };
        let services = Arc::clone(&services);
        in_flight.spawn(async move {
            let settled = match deliver(&services, &delivery).await {
                Ok(None) => services.queue.ack(&delivery).await,
                Ok(Some(delay)) => services.queue.retry_later(&delivery, delay).await,
                Err(err) => {
                    warn!(message = %delivery.id, error = %err, "delivery failed; will try again");
                    services
                        .queue
                        .retry_later(&delivery, Duration::from_secs(1))
                        .await
                }
            };
            if let Err(err) = settled {
                warn!(message = %delivery.id, error = %err, "cannot settle notification message");
            }
            drop(permit);
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

/// Makes one attempt; `Some(delay)` asks for another after the delay.
async fn deliver(services: &Services, message: &QueueDelivery) -> anyhow::Result<Option<Duration>> {
    let Work::Deliver {
        execution_id,
        task_id,
        job_id,
        notifier,
        event,
        index,
    } = &message.work
    else {
        anyhow::bail!("not a delivery: {:?}", message.work);
    };
    let (Some(execution), Some(mut job)) = (
        services.store.execution(execution_id).await?,
        services.store.job(task_id, job_id).await?,
    ) else {
        return Ok(None);
    };
    // Announced just before the final status was stored: wait for it.
    if *event != NotificationEvent::Starts && !execution.status.is_final() {
        return Ok(Some(Duration::from_millis(200)));
    }
    let Some(hook) = webhooks(&job, *event).get(*index).cloned() else {
        return Ok(None);
    };
    let Some(plugin) = services.notifiers.get(notifier.as_str()) else {
        warn!(
            notifier,
            "no such notifier is configured; dropping the delivery"
        );
        return Ok(None);
    };
    // Attempts are counted from the execution's record, not from queue
    // deliveries: a delivery that found the execution not yet final made no
    // attempt.
    let attempt = 1 + execution
        .dispatches
        .iter()
        .filter(|d| d.notifier == *notifier && d.event == event.as_str() && d.target == hook.url)
        .count() as u32;
    job.spec.envs = redact_envs(&job.spec.envs, &services.config.env_blacklisted_words);
    let urls = crate::api::Urls::with_base(services.config.public_base_url.as_deref());
    let delivery = Delivery {
        event: *event,
        task_url: urls.task(&job.task_id),
        job_url: urls.job(&job.task_id, &job.job_id),
        target: serde_json::to_value(&hook)?,
        job,
        execution,
        attempt,
    };
    let outcome = plugin.deliver(&delivery).await;
    let (accepted, status_code, error, retryable) = match &outcome {
        Ok(report) => (
            report.accepted,
            report.status_code,
            (!report.accepted).then(|| report.detail.clone().unwrap_or_default()),
            true,
        ),
        Err(err) => (
            false,
            None,
            Some(err.message().to_owned()),
            matches!(err.kind(), ErrorKind::Retryable | ErrorKind::Unavailable),
        ),
    };
    let record = DispatchRecord {
        timestamp: Utc::now(),
        notifier: notifier.clone(),
        event: event.as_str().to_owned(),
        target: hook.url.clone(),
        attempt,
        status_code,
        error,
    };
    services
        .store
        .append_dispatch(execution_id, &record)
        .await?;
    let attempts_allowed = hook.retries.saturating_add(1);
    if accepted {
        info!(execution = %execution_id, event = event.as_str(), url = %hook.url, "notified");
        return Ok(None);
    }
    if !retryable || attempt >= attempts_allowed {
        warn!(execution = %execution_id, url = %hook.url, attempt, "giving up on a notification");
        return Ok(None);
    }
    let config = &services.config;
    let exponent = i32::try_from(attempt - 1).unwrap_or(i32::MAX);
    let delay_ms =
        config.webhooks_backoff_min_ms as f64 * config.webhooks_backoff_factor.powi(exponent);
    Ok(Some(Duration::from_millis(
        delay_ms.min(86_400_000.0) as u64
    )))
}
