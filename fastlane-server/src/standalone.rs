//! `fastlane standalone`: API, worker and scheduler in one process, on the
//! embedded store and queue, with containers on the configured engine.
//!
//! Shutdown (SIGTERM or SIGINT): the HTTP server stops accepting, the
//! worker stops taking messages and leaves executions where they are
//! (containers keep running). The next start takes their messages back and
//! carries on: a container that finished meanwhile has its result collected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use poem::Server;
use poem::listener::{Acceptor, Listener, TcpListener};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::embedded::Db;
use crate::executors::{self, Executors};
use crate::queue::sqlite::SqliteQueue;
use crate::services::Services;
use crate::store::sqlite::SqliteStore;
use crate::{api, notify, plugins, scheduler, worker};

/// Builds the services of a standalone process.
pub async fn services(config: Config) -> anyhow::Result<Services> {
    let db = Db::open(&config.data_dir)?;
    let mut registry = plugins::builtin()?;
    let libraries = plugins::load_libraries(&mut registry, &config.plugins);
    let executors = executors(&registry, &libraries, &config)?;
    let mut notifiers = std::collections::BTreeMap::new();
    let webhook = registry
        .build_notifier("webhook", config.webhook_notifier.clone())
        .context("configuring webhooks")?;
    notifiers.insert("webhook".to_owned(), webhook);
    for subscription in &config.notifier_subscriptions {
        let kind = subscription.notifier.as_str();
        if notifiers.contains_key(kind) {
            continue;
        }
        let plugin_config = plugins::library_config(&libraries, "notifier", kind)
            .cloned()
            .unwrap_or_default();
        let notifier = registry
            .build_notifier(kind, plugin_config)
            .with_context(|| format!("configuring notifier {kind:?} (NOTIFIERS)"))?;
        notifiers.insert(kind.to_owned(), notifier);
    }
    if let Some(email) = &config.email_notifier {
        let email = registry
            .build_notifier("email", email.clone())
            .context("configuring e-mail (SMTP_*)")?;
        notifiers.insert("email".to_owned(), email);
    }
    let mut handlers = Vec::new();
    if let Some(dsn) = &config.sentry_dsn {
        let sentry = registry
            .build_error_handler(
                "sentry",
                serde_json::json!({"dsn": dsn, "environment": config.sentry_environment}),
            )
            .context("configuring Sentry (SENTRY_DSN)")?;
        handlers.push(sentry);
    }
    Ok(Services {
        reporter: crate::reporting::Reporter::new(handlers),
        notifiers,
        metrics: crate::metrics::Metrics::new(),
        store: Arc::new(SqliteStore::new(db.clone())),
        queue: Arc::new(SqliteQueue::new(db).await?),
        executors,
        libraries: Arc::new(libraries),
        config: Arc::new(config),
    })
}

/// The Docker executor, and every executor `EXECUTORS` routes to (built
/// with the configuration of the library that registered it).
fn executors(
    registry: &fastlane_sdk::Registry,
    libraries: &[plugins::LibraryStatus],
    config: &Config,
) -> anyhow::Result<Executors> {
    let mut built = std::collections::BTreeMap::new();
    let docker = registry
        .build_executor(
            executors::DEFAULT,
            serde_json::json!({ "farms": config.docker_hosts }),
        )
        .context("configuring the docker executor")?;
    built.insert(executors::DEFAULT.to_owned(), docker);
    for route in &config.executor_routes {
        let kind = route.executor.as_str();
        if built.contains_key(kind) {
            continue;
        }
        let plugin_config = plugins::library_config(libraries, "executor", kind)
            .cloned()
            .unwrap_or_default();
        let executor = registry
            .build_executor(kind, plugin_config)
            .with_context(|| format!("configuring executor {kind:?} (EXECUTORS)"))?;
        built.insert(kind.to_owned(), executor);
    }
    Ok(Executors::new(config.executor_routes.clone(), built)?)
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(mut config: Config, bind: SocketAddr) -> anyhow::Result<()> {
    info!(data_dir = %config.data_dir.display(), docker_hosts = %config.docker_hosts, "starting standalone");
    let acceptor = TcpListener::bind(bind)
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied());
    if let Some(addr) = local {
        let host = if addr.ip().is_unspecified() {
            "localhost".to_owned()
        } else {
            addr.ip().to_string()
        };
        config.listen_base_url = Some(format!("http://{host}:{}", addr.port()));
    }

    let services = services(config).await?;
    services
        .executors
        .set_blacklist(&services.store.blacklist().await?);
    let requeued = worker::reconcile(&services).await?;
    if requeued > 0 {
        info!(requeued, "queued unfinished executions again");
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    if let Some(addr) = local {
        // Machine-readable, for scripts and tests that asked for port 0.
        println!("listening on {addr}");
        info!(%addr, "listening");
    }

    let worker = tokio::spawn(worker::run(services.clone(), shutdown.clone()));
    let scheduler = tokio::spawn(scheduler::run(services.clone(), shutdown.clone()));
    let notifications = tokio::spawn(notify::run(services.clone(), shutdown.clone()));
    tokio::spawn(crate::prune::background(
        services.config.clone(),
        shutdown.clone(),
    ));
    let server = Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
        api::app(services),
        shutdown.clone().cancelled_owned(),
        Some(Duration::from_secs(5)),
    );
    let served = server.await;
    shutdown.cancel();
    worker.await.context("worker task")?;
    scheduler.await.context("scheduler task")?;
    notifications.await.context("notification task")?;
    served.context("http server")?;
    info!("stopped");
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn signals(shutdown: CancellationToken) {
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
