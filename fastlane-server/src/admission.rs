//! Concurrency limits: which executions may be placed now, and which wait.
//!
//! An execution passes its gates before a host is chosen: its executor's
//! pool (a Docker farm's `maxRunning`) and its task's limit (the job's
//! `maxConcurrent`, `TASK_CONCURRENCY`). The store keeps the slots and the
//! line, so the limits hold exactly across every worker. An execution that
//! does not fit is parked: its message is acked and nothing polls for it.
//! When a slot frees (an execution reaches a final status), [`wake`] queues
//! the executions at the front of the line again; a slow sweep
//! ([`sweep`]) does the same in case a wake-up was lost to a crash.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use fastlane_sdk::Job;

use crate::queue::{JOBS, Work};
use crate::services::Services;
use crate::store::Gate;

/// How often [`sweep`] looks for executions to wake.
const SWEEP: Duration = Duration::from_secs(2);

/// The gates executions of `job` may pass: for each pool of its executor,
/// preferred first, that pool's gate with the task's. Empty: no limit.
pub fn choices(services: &Services, job: &Job) -> Vec<Vec<Gate>> {
    let executor = services.executors.for_task(&job.task_id);
    let task = task_gate(services, job);
    let pools = executor.pools(&job.task_id);
    if pools.is_empty() {
        return task.map(|gate| vec![vec![gate]]).unwrap_or_default();
    }
    pools
        .into_iter()
        .map(|pool| {
            let mut gates = vec![Gate {
                key: format!("{}{}", pool_prefix(executor.name()), pool.name),
                limit: pool.max_running,
            }];
            gates.extend(task.clone());
            gates
        })
        .collect()
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

/// The limit on executions of `job`'s task at once, if any.
fn task_gate(services: &Services, job: &Job) -> Option<Gate> {
    let task_limit = services
        .config
        .task_limits
        .iter()
        .filter(|limit| limit.pattern.is_match(&job.task_id))
        .map(|limit| limit.max_concurrent)
        .chain(job.spec.max_concurrent)
        .min();
    task_limit.map(|limit| Gate {
        key: format!("task:{}", job.task_id),
        limit,
    })
}

/// Queues the executions that may take the slots free now (a no-op for
/// those whose message is still queued).
pub async fn wake(services: &Services) {
    let admissible = match services.store.admissible().await {
        Ok(admissible) => admissible,
        Err(err) => {
            warn!(error = %err, "cannot read the line of waiting executions");
            return;
        }
    };
    for execution_id in admissible {
        let work = Work::RunExecution {
            execution_id,
            trace: None,
        };
        if let Err(err) = services.queue.enqueue(JOBS, &work, None).await {
            warn!(error = %err, "cannot queue a waiting execution; the sweep will");
        }
    }
}

/// Wakes waiting executions every few seconds until `shutdown`.
pub async fn sweep(services: &Services, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SWEEP) => wake(services).await,
        }
    }
}
