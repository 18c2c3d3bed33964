//! Notifications: who hears about an execution, and their delivery.
//!
//! [`announce`] owes one `Deliver` message per target the job names for an
//! event: its webhooks (`webhooks.<event>`, notifier `webhook`) and its
//! e-mail addresses (`notify.<event>`, notifier `email`), and the notifier
//! plugins the operator subscribed to the task (`NOTIFIERS`). The store
//! keeps each owed delivery until it settles, and the outbox queues it.
//! Message ids are derived from execution, notifier, event and target
//! position, so announcing twice is harmless. [`run`] consumes them: it
//! hands each to its notifier plugin, records the attempt with the
//! execution, and gives failed ones back to the queue with back-off until
//! the target's attempts are used up; then (or once accepted) the delivery
//! is settled in the store. [`reconcile`] queues every owed delivery again
//! after the queue lost its messages. Deliveries never hold up jobs.
//!
//! Deliveries are fair across jobs: a worker makes at most
//! `NOTIFICATIONS_MAX_IN_FLIGHT_PER_JOB` of one job's deliveries at once
//! ([`Shares`]); the job's others are given back to the queue for a moment
//! (longer the more of them wait), so one job's thousands of dead hooks
//! take a few slots and never the others' turn.
//!
//! What plugins are handed is masked like the API's output: secret env
//! values, webhook header values and credentials in webhook URLs (the
//! webhook plugin gets its own hook, unmasked, as the delivery's target).
//! Records and logs name a webhook by its masked URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use fastlane_sdk::{
    Delivery, DispatchRecord, ErrorKind, Execution, ExecutionStatus, Job, NotificationEvent,
};

use crate::config::Config;
use crate::queue::consumer::consume;
use crate::queue::{Delivery as QueueDelivery, NOTIFY, WEBHOOKS, Work};
use crate::redact::{redact_envs, redact_url, redact_webhooks};
use crate::services::Services;
use crate::store::Submission;

/// Deliveries in flight at once.
const CONCURRENCY: usize = 8;
/// The longest wait between two tries of one delivery.
const MAX_DELAY: Duration = Duration::from_secs(600);
/// How long a delivery waiting for its job's turn is put off, per round of
/// `NOTIFICATIONS_MAX_IN_FLIGHT_PER_JOB` deliveries of the job ahead of it.
const PARK_STEP: Duration = Duration::from_millis(250);
/// The longest a delivery waiting for its job's turn is put off at once.
const MAX_PARK: Duration = Duration::from_secs(30);
/// A waiting delivery not seen again for this long is forgotten (another
/// worker took it).
const PARK_FORGOTTEN: Duration = Duration::from_secs(600);

/// One job's use of this worker's delivery slots.
#[derive(Debug, Default)]
struct JobShare {
    /// Its deliveries in flight here.
    running: usize,
    /// Its deliveries put off, by message id, with when.
    waiting: HashMap<String, Instant>,
}

/// The delivery slots of one worker shared out by job: each job may have
/// at most `cap` deliveries in flight.
#[derive(Debug)]
struct Shares {
    cap: usize,
    jobs: Mutex<HashMap<String, JobShare>>,
}

/// A job's slot, given back when dropped.
#[derive(Debug)]
struct Slot {
    shares: Arc<Shares>,
    job: String,
}

impl Shares {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            jobs: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `message` of `job`, or how long to put it off.
    fn take(self: &Arc<Self>, job: &str, message: &str) -> Result<Slot, Duration> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let share = jobs.entry(job.to_owned()).or_default();
        share.waiting.remove(message);
        if share.running < self.cap {
            share.running += 1;
            return Ok(Slot {
                shares: Arc::clone(self),
                job: job.to_owned(),
            });
        }
        let now = Instant::now();
        share
            .waiting
            .retain(|_, since| now.duration_since(*since) < PARK_FORGOTTEN);
        share.waiting.insert(message.to_owned(), now);
        let rounds = u32::try_from(share.waiting.len().div_ceil(self.cap)).unwrap_or(u32::MAX);
        Err(PARK_STEP.saturating_mul(rounds).min(MAX_PARK))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut jobs = self
            .shares
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(share) = jobs.get_mut(&self.job) {
            share.running = share.running.saturating_sub(1);
            if share.running == 0 && share.waiting.is_empty() {
                jobs.remove(&self.job);
            }
        }
    }
}

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

/// One place to send a notification.
struct Target {
    /// As the plugin takes it.
    value: Value,
    /// As records show it (a URL, an address).
    label: String,
    /// How many tries it gets.
    attempts_allowed: u32,
}

/// The targets of `job` that `notifier` serves for `event`.
fn targets(job: &Job, notifier: &str, event: NotificationEvent, config: &Config) -> Vec<Target> {
    match notifier {
        "webhook" => {
            let hooks = &job.spec.webhooks;
            let list = match event {
                NotificationEvent::Starts => &hooks.starts,
                NotificationEvent::Succeeds => &hooks.succeeds,
                NotificationEvent::Fails => &hooks.fails,
                NotificationEvent::Finishes => &hooks.finishes,
            };
            list.iter()
                .map(|hook| Target {
                    value: serde_json::to_value(hook).unwrap_or_default(),
                    label: redact_url(&hook.url, &config.env_blacklisted_words),
                    attempts_allowed: hook.retries.saturating_add(1),
                })
                .collect()
        }
        "email" => {
            let notify = &job.spec.notify;
            let list: &[String] = match event {
                NotificationEvent::Starts => &[],
                NotificationEvent::Succeeds => &notify.succeeds,
                NotificationEvent::Fails => &notify.fails,
                NotificationEvent::Finishes => &notify.finishes,
            };
            list.iter()
                .map(|address| Target {
                    value: Value::String(address.clone()),
                    label: address.clone(),
                    attempts_allowed: config.smtp_max_attempts,
                })
                .collect()
        }
        plugin => config
            .notifier_subscriptions
            .iter()
            .filter(|s| {
                s.notifier == plugin
                    && s.events.contains(&event)
                    && s.pattern.is_match(&job.task_id)
            })
            .map(|s| Target {
                value: s.target.clone(),
                label: match &s.target {
                    Value::String(text) => text.clone(),
                    Value::Null => plugin.to_owned(),
                    other => other.to_string(),
                },
                attempts_allowed: s.retries.saturating_add(1),
            })
            .collect(),
    }
}

/// Every notifier an execution may be announced to: the job's own targets
/// (`webhook`, `email`) and the plugins `NOTIFIERS` subscribes.
fn notifier_names(config: &Config) -> Vec<&str> {
    let mut names = vec!["webhook", "email"];
    for subscription in &config.notifier_subscriptions {
        if !names.contains(&subscription.notifier.as_str()) {
            names.push(&subscription.notifier);
        }
    }
    names
}

/// The delay before try number `attempt + 1` of a `notifier` delivery.
fn backoff(notifier: &str, attempt: u32, config: &Config) -> Duration {
    let (min_ms, factor) = match notifier {
        "email" => (config.smtp_retry_min_ms, 2.0),
        _ => (
            config.webhooks_backoff_min_ms,
            config.webhooks_backoff_factor,
        ),
    };
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let ms = (min_ms as f64 * factor.powi(exponent)).min(MAX_DELAY.as_millis() as f64);
    Duration::from_millis(ms as u64)
}

/// Owes the notifications `execution`'s current status calls for: writes
/// one delivery per target in one store transaction, kept until it is made
/// or given up ([`Submission::owed`]), and has the outbox queue them.
pub async fn announce(services: &Services, job: &Job, execution: &Execution) -> anyhow::Result<()> {
    let now = crate::clock::now();
    let mut owed = Vec::new();
    for &event in events_for(execution.status) {
        for notifier in notifier_names(&services.config) {
            for index in 0..targets(job, notifier, event, &services.config).len() {
                let work = Work::Deliver {
                    execution_id: execution.execution_id.clone(),
                    task_id: job.task_id.clone(),
                    job_id: job.job_id.clone(),
                    notifier: notifier.to_owned(),
                    event,
                    index,
                };
                owed.push(crate::outbox::message(queue_of(notifier), &work, now)?);
            }
        }
    }
    if owed.is_empty() {
        return Ok(());
    }
    services
        .store
        .submit(Submission {
            owed: &owed,
            ..Submission::default()
        })
        .await?;
    services.outbox.nudge();
    Ok(())
}

/// Queues every delivery the store says is owed again (a no-op for those
/// the queue holds): a queue that lost its messages (a Redis flushed,
/// restarted without persistence, failed over to an empty replica) loses
/// no notification. Returns how many were queued again.
pub async fn reconcile(services: &Services) -> anyhow::Result<usize> {
    const PAGE: usize = 512;
    let mut after = String::new();
    let mut requeued = 0;
    loop {
        let owed = services.store.owed_deliveries(&after, PAGE).await?;
        for message in &owed {
            let work: Work = match serde_json::from_str(&message.payload) {
                Ok(work) => work,
                Err(err) => {
                    warn!(message = %message.id, error = %err, "unreadable owed delivery dropped");
                    services
                        .store
                        .settle_deliveries(std::slice::from_ref(&message.id))
                        .await?;
                    continue;
                }
            };
            let due = chrono::DateTime::from_timestamp_millis(message.due_ms);
            if services.queue.enqueue(&message.queue, &work, due).await? {
                requeued += 1;
            }
        }
        match owed.last() {
            Some(last) if owed.len() == PAGE => after.clone_from(&last.id),
            _ => return Ok(requeued),
        }
    }
}

/// The queue deliveries of `notifier` wait in.
pub fn queue_of(notifier: &str) -> &'static str {
    if notifier == "webhook" {
        WEBHOOKS
    } else {
        NOTIFY
    }
}

/// Consumes a notification queue (`notify` or `webhooks`) until `shutdown`.
pub async fn run(services: Services, queue_name: &'static str, shutdown: CancellationToken) {
    let services = Arc::new(services);
    let lease = Duration::from_secs(services.config.queue_lease_seconds);
    let queue = Arc::clone(&services.queue);
    let shares = Arc::new(Shares::new(
        services.config.notifications_max_in_flight_per_job,
    ));
    consume(queue, queue_name, CONCURRENCY, lease, shutdown, |message| {
        let services = Arc::clone(&services);
        let shares = Arc::clone(&shares);
        async move {
            let turn = match &message.work {
                Work::Deliver { task_id, job_id, .. } => shares
                    .take(&format!("{task_id}/{job_id}"), &message.id)
                    .map(Some),
                _ => Ok(None),
            };
            let _slot = match turn {
                Ok(slot) => slot,
                Err(wait) => {
                    if let Err(err) = services.queue.retry_later(&message, wait).await {
                        warn!(message = %message.id, error = %err, "cannot put off a notification message");
                    }
                    return;
                }
            };
            let span = match &message.work {
                Work::Deliver { execution_id, task_id, job_id, notifier, .. } => {
                    info_span!("delivery", execution = %execution_id, job = %job_id, task = %task_id, notifier = %notifier)
                }
                _ => info_span!("delivery"),
            };
            let settled = match deliver(&services, &message).instrument(span).await {
                Ok(None) => match services.store.settle_deliveries(std::slice::from_ref(&message.id)).await {
                    Ok(()) => services.queue.ack(&message).await,
                    Err(err) => {
                        warn!(message = %message.id, error = %err, "cannot settle a delivery; will try again");
                        services
                            .queue
                            .retry_later(&message, Duration::from_secs(1))
                            .await
                    }
                },
                Ok(Some(delay)) => services.queue.retry_later(&message, delay).await,
                Err(err) => {
                    warn!(message = %message.id, error = %err, "delivery failed; will try again");
                    services
                        .queue
                        .retry_later(&message, Duration::from_secs(1))
                        .await
                }
            };
            if let Err(err) = settled {
                warn!(message = %message.id, error = %err, "cannot settle notification message");
            }
        }
    })
    .await;
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
    let (Some(mut execution), Some(mut job)) = (
        services.store.execution(execution_id).await?,
        services.store.job(task_id, job_id).await?,
    ) else {
        return Ok(None);
    };
    // Announced just before the final status was stored: wait for it.
    if *event != NotificationEvent::Starts && !execution.status.is_final() {
        return Ok(Some(Duration::from_millis(200)));
    }
    let config = &services.config;
    let Some(target) = targets(&job, notifier, *event, config)
        .into_iter()
        .nth(*index)
    else {
        return Ok(None);
    };
    // Attempts are counted from the execution's record, not from queue
    // deliveries: a delivery that found the execution not yet final made no
    // attempt. The record also says when one was made, or all were used
    // (a delivery queued again from the store after it settled).
    let made = execution.dispatches.iter().filter(|d| {
        d.notifier == *notifier && d.event == event.as_str() && d.target == target.label
    });
    let (tries, accepted) = made.fold((0_u32, false), |(tries, accepted), d| {
        (tries + 1, accepted || d.error.is_none())
    });
    if accepted || tries >= target.attempts_allowed {
        return Ok(None);
    }
    let attempt = tries + 1;
    let outcome = match services.notifiers.get(notifier.as_str()) {
        None => Err(fastlane_sdk::PluginError::permanent(
            match notifier.as_str() {
                "email" => "e-mail is not configured on this server (SMTP_HOST)".to_owned(),
                other => format!("no {other} notifier is configured on this server"),
            },
        )),
        Some(plugin) => {
            job.spec.envs = redact_envs(&job.spec.envs, &config.env_blacklisted_words);
            job.spec.webhooks = redact_webhooks(&job.spec.webhooks, &config.env_blacklisted_words);
            let base = config
                .public_base_url
                .as_ref()
                .or(config.listen_base_url.as_ref());
            let urls = crate::urls::Urls::with_base(base.map(String::as_str));
            let delivery = Delivery {
                event: *event,
                task_url: urls.task(&job.task_id),
                job_url: urls.job(&job.task_id, &job.job_id),
                target: target.value.clone(),
                job,
                execution,
                attempt,
            };
            let outcome = plugin.deliver(&delivery).await;
            execution = delivery.execution;
            outcome
        }
    };
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
        target: target.label.clone(),
        attempt,
        status_code,
        error,
    };
    services
        .store
        .append_dispatch(execution_id, &record)
        .await?;
    if accepted {
        info!(execution = %execution_id, notifier, event = event.as_str(), target = %target.label, "notified");
        return Ok(None);
    }
    if !retryable || attempt >= target.attempts_allowed {
        let message = format!(
            "gave up notifying {} ({notifier}, {}) after {attempt} attempts: {}",
            target.label,
            event.as_str(),
            record.error.as_deref().unwrap_or_default()
        );
        services
            .reporter
            .report("dispatching", &message, &execution);
        return Ok(None);
    }
    Ok(Some(backoff(notifier, attempt, config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_gets_at_most_its_share_of_slots_and_waits_longer_the_more_it_has_waiting() {
        let shares = Arc::new(Shares::new(2));
        let first = shares.take("t/a", "1").expect("a slot");
        let _second = shares.take("t/a", "2").expect("a slot");
        assert_eq!(shares.take("t/a", "3").expect_err("full"), PARK_STEP);
        assert_eq!(shares.take("t/a", "4").expect_err("full"), PARK_STEP);
        assert_eq!(shares.take("t/a", "5").expect_err("full"), PARK_STEP * 2);
        let _other = shares.take("t/b", "6").expect("another job is not held up");
        drop(first);
        let _third = shares.take("t/a", "3").expect("a slot was given back");
        let jobs = shares.jobs.lock().expect("lock");
        assert_eq!(jobs["t/a"].waiting.len(), 2, "3 stopped waiting");
    }

    #[test]
    fn a_job_with_nothing_in_flight_or_waiting_is_forgotten() {
        let shares = Arc::new(Shares::new(1));
        drop(shares.take("t/a", "1").expect("a slot"));
        assert!(shares.jobs.lock().expect("lock").is_empty());
    }
}
