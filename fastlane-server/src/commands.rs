//! The three ways to run fastlane: `standalone` (everything in one process,
//! on the embedded store and queue by default), `api` and `worker` (any
//! number of each, sharing a networked queue and store). Each builds the
//! [`Services`], picks its [`roles`](crate::roles) and runs until SIGTERM or
//! SIGINT.

use std::net::SocketAddr;

use anyhow::Context;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::roles::{self, Process, WorkerRoles};
use crate::services::Services;

/// `fastlane standalone`: the API and every worker role in one process.
pub async fn standalone(config: Config, bind: SocketAddr) -> anyhow::Result<()> {
    info!(data_dir = %config.data_dir.display(), docker_hosts = %config.docker_hosts, "starting standalone");
    serve(config, bind, WorkerRoles::ALL, None).await
}

/// `fastlane api`: the HTTP API alone.
pub async fn api(config: Config, bind: SocketAddr) -> anyhow::Result<()> {
    serve(config, bind, WorkerRoles::NONE, Some("api")).await
}

/// `fastlane worker`: the worker roles, without HTTP. Prints
/// `worker <id> started` on stdout once it takes work.
pub async fn worker(config: Config, id: String, roles: WorkerRoles) -> anyhow::Result<()> {
    roles::require_networked(&config, "worker")?;
    let services = Services::build(config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(roles::signals(shutdown.clone()));
    let process = Process {
        id: id.clone(),
        api: None,
        roles,
    };
    let run = roles::run(services, process, shutdown);
    // Machine-readable, for scripts and tests.
    println!("worker {id} started");
    run.await
}

/// Listens on `bind`, then runs the API with `roles`. `networked` names the
/// command when it must share a networked queue and store.
async fn serve(
    mut config: Config,
    bind: SocketAddr,
    roles: WorkerRoles,
    networked: Option<&str>,
) -> anyhow::Result<()> {
    if let Some(command) = networked {
        roles::require_networked(&config, command)?;
    }
    let (acceptor, local) = listen(bind).await?;
    if let Some(addr) = local {
        let host = if addr.ip().is_unspecified() {
            "localhost".to_owned()
        } else {
            addr.ip().to_string()
        };
        config.listen_base_url = Some(format!("http://{host}:{}", addr.port()));
        if !addr.ip().is_loopback() && config.basic_auth.is_none() && config.api_tokens.is_empty() {
            tracing::warn!(
                %addr,
                "no authentication is configured and the API listens beyond this machine: anyone \
                 who can reach it can run containers (set API_TOKENS or BASIC_AUTH_*, or listen \
                 on 127.0.0.1)"
            );
        }
    }
    let services = Services::build(config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(roles::signals(shutdown.clone()));
    let process = Process {
        id: default_id(),
        api: Some(acceptor),
        roles,
    };
    let run = roles::run(services, process, shutdown);
    if let Some(addr) = local {
        // Machine-readable, for scripts and tests that asked for port 0.
        println!("listening on {addr}");
        info!(%addr, "listening");
    }
    run.await
}

async fn listen(bind: SocketAddr) -> anyhow::Result<(TcpAcceptor, Option<SocketAddr>)> {
    let acceptor = TcpListener::bind(bind)
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied());
    Ok((acceptor, local))
}

/// `<hostname>-<pid>`: what identifies a process that was not given an id.
pub fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "fastlane".to_owned());
    format!("{host}-{}", std::process::id())
}
