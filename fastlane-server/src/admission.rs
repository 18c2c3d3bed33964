//! Concurrency limits: which executions may be placed now, and which wait.
//!
//! An execution passes its gates before a host is chosen: its executor's
//! pool (a Docker farm's `maxRunning`), its task's (the job's
//! `maxConcurrent`, `TASK_FLOW`'s limit and rate, and whether the task is
//! paused), and with a `concurrencyKey`, its key's. The store keeps the
//! slots, the line and the rate limits' buckets, so the limits hold
//! exactly across every worker; who goes first is
//! [`crate::store::line`]'s business. An execution that
//! does not fit waits in line, and nothing polls for it.
//!
//! Where the store lines up on submit (the embedded store and PostgreSQL),
//! an execution joins the line in the transaction that makes it
//! ([`start`]), so the line knows every waiter at once however long the
//! queue, and a pass over the line ([`wake`]) gives the waiters that may go their slots and queues their
//! messages in one step: a worker only ever reads the message of an
//! execution that may run. Elsewhere each execution asks when a worker
//! reads its message ([`crate::store::Store::admit`]) and waits there if it
//! does not fit; a pass queues the first waiters again. Passes run in every
//! process's [`sweep`]: at once when nudged ([`Line::nudge`]: a submission
//! joined, a slot freed), every few seconds in case a nudge was lost.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use fastlane_sdk::{Execution, Job};

use crate::config::FlowRule;
use crate::queue::{JOBS, Work};
use crate::services::Services;
use crate::store::{Ask, Gate, Outgoing, Rate, Waiter};

/// Nudges this process's [`sweep`] into a pass over the line now.
#[derive(Debug, Clone, Default)]
pub struct Line {
    nudged: Arc<Notify>,
}

impl Line {
    /// Asks for a pass soon; nudges made while one runs make one more.
    pub fn nudge(&self) {
        self.nudged.notify_one();
    }
}

/// How a new execution sets off.
#[derive(Debug)]
pub enum Start {
    /// It joins the line in the transaction that writes it.
    Line(Waiter),
    /// Its message is queued with it: it asks when a worker reads it.
    Message(Outgoing),
}

/// How `execution` of `job`, run by `message`, sets off: in line, where the
/// store lines up on submit and the execution has gates to pass (every
/// execution has its task's); else by its message.
pub fn start(services: &Services, job: &Job, execution: &Execution, message: Outgoing) -> Start {
    if !services.store.lines_up_on_submit() {
        return Start::Message(message);
    }
    let ask = ask(services, job, execution.created_at);
    if ask.unlimited() {
        return Start::Message(message);
    }
    Start::Line(Waiter {
        execution_id: execution.execution_id.clone(),
        ask,
        trace: crate::telemetry::traceparent(),
    })
}

/// Splits `starts` into the waiters and the messages of a submission.
pub fn split(starts: impl IntoIterator<Item = Start>) -> (Vec<Waiter>, Vec<Outgoing>) {
    let (mut waiting, mut outgoing) = (Vec::new(), Vec::new());
    for start in starts {
        match start {
            Start::Line(waiter) => waiting.push(waiter),
            Start::Message(message) => outgoing.push(message),
        }
    }
    (waiting, outgoing)
}

/// How often [`sweep`] looks for executions to wake.
const SWEEP: Duration = Duration::from_secs(2);

/// The shortest time between two passes of one process: nudges that come
/// faster (a submission each, under load) share a pass, which is then at
/// most this late, instead of keeping the store busy deciding a line that
/// has not changed much.
const PASS_GAP: Duration = Duration::from_millis(10);

/// The gate key of `task_id`: pausing it pauses the task.
pub fn task_key(task_id: &str) -> String {
    format!("task:{task_id}")
}

/// The gate key of a concurrency key.
fn key_key(key: &str) -> String {
    format!("key:{key}")
}

/// What an execution of `job` asks of the line, first asking at `since`:
/// for each pool of its executor, preferred first, that pool's gate with
/// the task's (always there, so a task can be paused; limited by
/// `maxConcurrent`, rated by `TASK_FLOW`), and with a concurrency key, the
/// key's within the task (`maxConcurrentPerKey`) and across tasks
/// (`KEY_FLOW`). It counts against its key's fair share if it has one,
/// else its task's.
pub fn ask(services: &Services, job: &Job, since: DateTime<Utc>) -> Ask {
    let flow = &services.config.flow;
    let task_id = &job.task_id;
    let task_rules: Vec<&FlowRule> = flow
        .tasks
        .iter()
        .filter(|rule| rule.pattern.is_match(task_id))
        .collect();
    let first = |rules: &[&FlowRule], field: fn(&FlowRule) -> Option<Rate>| {
        rules.iter().find_map(|rule| field(rule))
    };
    let mut common = vec![Gate {
        key: task_key(task_id),
        limit: smallest(&task_rules, |r| r.max_concurrent, job.spec.max_concurrent),
        rate: first(&task_rules, |r| r.rate),
    }];
    let mut weight = task_rules.iter().find_map(|r| r.weight);
    let mut flow_key = task_key(task_id);
    if let Some(key) = job.spec.concurrency_key.as_deref() {
        let per_key = smallest(
            &task_rules,
            |r| r.max_concurrent_per_key,
            job.spec.max_concurrent_per_key,
        );
        if per_key < u32::MAX {
            // `/` is in neither task ids nor keys: no two pairs share a gate.
            common.push(Gate::new(format!("taskkey:{task_id}/{key}"), per_key));
        }
        let key_rules: Vec<&FlowRule> = flow
            .keys
            .iter()
            .filter(|rule| rule.pattern.is_match(key))
            .collect();
        common.push(Gate {
            key: key_key(key),
            limit: smallest(&key_rules, |r| r.max_concurrent, None),
            rate: first(&key_rules, |r| r.rate),
        });
        weight = key_rules.iter().find_map(|r| r.weight);
        flow_key = key_key(key);
    }
    let executor = services.executors.for_task(task_id);
    let pools = executor.pools(task_id);
    let choices = if pools.is_empty() {
        vec![common]
    } else {
        pools
            .into_iter()
            .map(|pool| {
                let mut gates = vec![Gate::new(
                    pool_key(executor.name(), &pool.name),
                    pool.max_running,
                )];
                gates.extend(common.iter().cloned());
                gates
            })
            .collect()
    };
    Ask {
        choices,
        priority: job
            .spec
            .priority
            .or_else(|| task_rules.iter().find_map(|r| r.priority))
            .unwrap_or(0),
        flow: flow_key,
        weight: weight.unwrap_or(1),
        since,
    }
}

/// The smallest limit the `rules` and the job's own give; none: no limit.
fn smallest(rules: &[&FlowRule], field: fn(&FlowRule) -> Option<u32>, own: Option<u32>) -> u32 {
    rules
        .iter()
        .filter_map(|rule| field(rule))
        .chain(own)
        .min()
        .unwrap_or(u32::MAX)
}

/// The gate key of `executor`'s pool `pool` (a Docker farm): pausing it
/// pauses the farm.
pub fn pool_key(executor: &str, pool: &str) -> String {
    format!("{}{pool}", pool_prefix(executor))
}

/// The start of the gate keys of `executor`'s pools.
fn pool_prefix(executor: &str) -> String {
    format!("pool:{executor}:")
}

/// The pool of `executor` among the gates an execution holds.
pub fn pool_held(executor: &str, gates: &[String]) -> Option<String> {
    let prefix = pool_prefix(executor);
    gates
        .iter()
        .find_map(|key| key.strip_prefix(&prefix).map(str::to_owned))
}

/// The message that runs a waiter a pass let go, continuing its trace.
fn run_message(execution_id: &str, trace: Option<&str>) -> Option<Outgoing> {
    let work = Work::RunExecution {
        execution_id: execution_id.to_owned(),
        trace: trace.map(str::to_owned),
    };
    crate::outbox::message(JOBS, &work, Utc::now()).ok()
}

/// One pass over the line: the executions that may take the slots free now
/// are queued (by the store, with their slots, where it lines up on
/// submit; else here, a no-op for those whose message is still queued).
/// Returns when to look again for executions held back by a rate limit
/// alone.
pub async fn wake(services: &Services) -> Option<Duration> {
    let granted = match services
        .store
        .grant(&services.config.flow.policy, run_message)
        .await
    {
        Ok(granted) => granted,
        Err(err) => {
            warn!(error = %err, "cannot read the line of waiting executions");
            return None;
        }
    };
    if granted.queued {
        if !granted.ids.is_empty() {
            services.outbox.nudge();
        }
        return granted.retry_in;
    }
    for execution_id in granted.ids {
        let work = Work::RunExecution {
            execution_id,
            trace: None,
        };
        if let Err(err) = services.queue.enqueue(JOBS, &work, None).await {
            warn!(error = %err, "cannot queue a waiting execution; the sweep will");
        }
    }
    granted.retry_in
}

/// Passes over the line until `shutdown`: when nudged, every few seconds,
/// and sooner when a rate limit's next token is due; every [`SWEEP`] gives
/// back the places of executions that ended while they waited.
pub async fn sweep(services: &Services, shutdown: CancellationToken) {
    let mut next = SWEEP;
    let mut tidied = std::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = services.line.nudged.notified() => {}
            () = tokio::time::sleep(next) => {}
        }
        let passed = std::time::Instant::now();
        if tidied.elapsed() >= SWEEP {
            if let Err(err) = services.store.tidy_line().await {
                warn!(error = %err, "cannot give back the places of finished executions");
            }
            tidied = std::time::Instant::now();
        }
        // At least 20 ms apart when a rate limit is what holds the line, so
        // it is not decided over and over.
        next = wake(services)
            .await
            .map_or(SWEEP, |due| due.clamp(Duration::from_millis(20), SWEEP));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PASS_GAP.saturating_sub(passed.elapsed())) => {}
        }
        next = next.saturating_sub(PASS_GAP);
    }
}
