//! What a fastlane process does, and the three commands that choose it.
//!
//! Every process is some of these roles over the same [`Services`]:
//!
//! | role | what it does | queue it consumes |
//! |---|---|---|
//! | API | serves HTTP (REST, WebSocket logs, pages) | — |
//! | jobs | drives executions | `jobs` |
//! | monitor | fires delayed and cron jobs; queues again what no queue holds; prunes | `schedule` |
//! | notify | e-mail and plugin notifications | `notify` |
//! | webhooks | webhook deliveries | `webhooks` |
//!
//! `fastlane standalone` is all of them in one process. `fastlane api` is
//! the API alone and `fastlane worker` the rest (each of its roles can be
//! switched off); both need the networked queue and store, so that any
//! number of each can share the work.
//!
//! Every process also passes over the admission line
//! ([`crate::admission::sweep`]): when its submissions join it, when its
//! runs free slots, and every few seconds. And every process exchanges host
//! state with the others through the store ([`crate::hosts`]): workers to
//! keep off hosts another worker found down, API processes to show it in
//! `/status`.
//!
//! Shutdown (SIGTERM or SIGINT): the HTTP server stops accepting, the
//! consumers stop taking messages and leave executions where they are
//! (containers keep running, messages stay leased). The leases lapse and any
//! worker takes the messages back and carries on; a standalone process does
//! it at its next start.

use std::time::Duration;

use anyhow::Context;
use poem::Server;
use poem::listener::TcpAcceptor;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::Config;
use crate::queue::{NOTIFY, WEBHOOKS};
use crate::services::Services;
use crate::worker::Reconcile;
use crate::{api, notify, scheduler, worker};

/// How often the monitor queues again, from the store, the unfinished
/// executions and the next firings of schedules that no queue holds.
pub const RECONCILE: Duration = Duration::from_secs(60);

/// How often the monitor asks the queue for its epoch, to notice at once
/// that it lost its messages ([`crate::queue::Queue::epoch`]).
const EPOCH_CHECK: Duration = Duration::from_secs(1);

/// The worker roles a process takes on (all of them by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerRoles {
    /// Drive executions (the `jobs` queue).
    pub jobs: bool,
    /// Fire scheduled jobs, reconcile, prune.
    pub monitor: bool,
    /// Send e-mail and plugin notifications.
    pub notify: bool,
    /// Deliver webhooks.
    pub webhooks: bool,
}

impl WorkerRoles {
    /// Every role: standalone, or a worker without `--no-…` flags.
    pub const ALL: Self = Self {
        jobs: true,
        monitor: true,
        notify: true,
        webhooks: true,
    };
    /// No role: an API process.
    pub const NONE: Self = Self {
        jobs: false,
        monitor: false,
        notify: false,
        webhooks: false,
    };

    /// The roles' names, for logs.
    pub fn names(self) -> Vec<&'static str> {
        [
            (self.jobs, "jobs"),
            (self.monitor, "monitor"),
            (self.notify, "notify"),
            (self.webhooks, "webhooks"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// The process's roles: the API when `api` is given, and `roles`.
pub struct Process {
    /// Identifies the process in logs (`fastlane worker -i`).
    pub id: String,
    /// Where the API listens, if this process serves it.
    pub api: Option<TcpAcceptor>,
    /// The worker roles.
    pub roles: WorkerRoles,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("id", &self.id)
            .field("api", &self.api.is_some())
            .field("roles", &self.roles)
            .finish()
    }
}

/// Refuses to start a process of several (`api`, `worker`) on an embedded
/// store or queue: those live in one process's data directory.
pub fn require_networked(config: &Config, command: &str) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if config.redis_url.is_none() {
        missing.push("REDIS_URL (the shared queue)");
    }
    if config.store.is_none() {
        missing.push("STORE_URL or MONGODB_CONFIG (the shared store)");
    }
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "fastlane {command} shares its work with other processes and needs {}; \
         for everything in one process on the embedded store and queue, run `fastlane standalone`",
        missing.join(" and ")
    )
}

/// Runs the process's roles until `shutdown`, then waits for them to stop.
pub async fn run(
    services: Services,
    process: Process,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let span = info_span!("process", id = %process.id);
    let roles = process.roles;
    info!(parent: &span, api = process.api.is_some(), roles = ?roles.names(), "starting");
    services
        .executors
        .set_blacklist(&services.store.blacklist().await?);
    if roles.monitor {
        reconcile(&services, Reconcile::All)
            .instrument(span.clone())
            .await?;
    }

    let mut tasks = JoinSet::new();
    let mut spawn = |role: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
        tasks.spawn(
            async move {
                role.await;
                Ok(())
            }
            .instrument(span.clone()),
        );
    };
    {
        let services = services.clone();
        let shutdown = shutdown.clone();
        spawn(Box::pin(async move {
            crate::hosts::keep_shared(&services.executors, services.store.as_ref(), shutdown).await;
        }));
    }
    spawn(Box::pin(crate::outbox::run(
        services.clone(),
        shutdown.clone(),
    )));
    // Every process passes over the admission line: the API's after its
    // submissions join it, a worker's after its runs free slots.
    {
        let services = services.clone();
        let shutdown = shutdown.clone();
        spawn(Box::pin(async move {
            crate::admission::sweep(&services, shutdown).await;
        }));
    }
    if roles.jobs {
        spawn(Box::pin(worker::run(services.clone(), shutdown.clone())));
    }
    if roles.monitor {
        spawn(Box::pin(scheduler::run(services.clone(), shutdown.clone())));
        spawn(Box::pin(keep_reconciling(
            services.clone(),
            shutdown.clone(),
        )));
        spawn(Box::pin(crate::prune::background(
            services.config.clone(),
            shutdown.clone(),
        )));
    }
    for (on, queue) in [(roles.notify, NOTIFY), (roles.webhooks, WEBHOOKS)] {
        if on {
            spawn(Box::pin(notify::run(
                services.clone(),
                queue,
                shutdown.clone(),
            )));
        }
    }
    if let Some(acceptor) = process.api {
        let server = Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            api::app(services.clone()),
            shutdown.clone().cancelled_owned(),
            Some(Duration::from_secs(5)),
        );
        let stop = shutdown.clone();
        tasks.spawn(
            async move {
                let served = server.await.context("http server");
                // The server only ends on its own when it failed: take the
                // rest of the process down with it.
                stop.cancel();
                served
            }
            .instrument(span.clone()),
        );
    }

    let mut result = Ok(());
    while let Some(ended) = tasks.join_next().await {
        match ended.context("a role of the process panicked") {
            Ok(Ok(())) => {}
            Ok(Err(err)) | Err(err) => {
                shutdown.cancel();
                if result.is_ok() {
                    result = Err(err);
                }
            }
        }
    }
    info!(parent: &span, "stopped");
    result
}

/// Queues again what the store says should be queued (a no-op for what the
/// queue holds): every unfinished execution, the next firing of every live
/// schedule, and every notification delivery owed. Nothing the API accepted waits forever because a process
/// died, or the queue lost its messages, between storing it and running it.
async fn reconcile(services: &Services, which: Reconcile) -> anyhow::Result<()> {
    let requeued = worker::reconcile(services, which).await?;
    if requeued > 0 {
        info!(requeued, "queued unfinished executions again");
    }
    let firings = scheduler::reconcile(services).await?;
    if firings > 0 {
        info!(firings, "queued schedules' next firings again");
    }
    let deliveries = crate::notify::reconcile(services).await?;
    if deliveries > 0 {
        info!(deliveries, "queued owed notification deliveries again");
    }
    let forgotten = services
        .store
        .forget_expired_keys(chrono::Utc::now().timestamp_millis())
        .await?;
    if forgotten > 0 {
        info!(forgotten, "forgot expired idempotency keys");
    }
    Ok(())
}

/// [`reconcile`] every [`RECONCILE`] until `shutdown`, leaving executions
/// waiting in the admission line to its sweep; and at once, all of them
/// included, when the queue's epoch changes (it lost its messages).
async fn keep_reconciling(services: Services, shutdown: CancellationToken) {
    let mut epoch = services.queue.epoch().await.ok();
    let mut last = tokio::time::Instant::now();
    // A reconciliation after a loss that failed, to do again.
    let mut owed = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(EPOCH_CHECK) => {}
            () = shutdown.cancelled() => return,
        }
        // A queue that is away has no epoch to give; it is asked again.
        let lost = match services.queue.epoch().await {
            Ok(now) => {
                let lost = epoch.as_ref().is_some_and(|before| *before != now);
                epoch = Some(now);
                lost
            }
            Err(_) => false,
        } || owed;
        if !lost && last.elapsed() < RECONCILE {
            continue;
        }
        let which = if lost {
            warn!(
                "the queue lost its messages (or a reconciliation after that failed); queueing the store's work again"
            );
            Reconcile::All
        } else {
            Reconcile::NotWaiting
        };
        last = tokio::time::Instant::now();
        owed = match reconcile(&services, which).await {
            Ok(()) => false,
            Err(err) => {
                warn!(error = %format!("{err:#}"), "cannot reconcile with the store; will try again");
                lost
            }
        };
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
pub async fn signals(shutdown: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
        () = term => info!("SIGTERM: shutting down"),
    }
    shutdown.cancel();
}
