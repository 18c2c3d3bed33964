//! `fastlane prune` and the background pruner: they remove the containers of
//! finished executions (renamed `defunct-fastlane-job-<executionId>` once
//! their result was stored) from every configured Docker host.

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Every `PRUNE_INTERVAL_SECONDS` until `shutdown`, removes finished
/// containers, sparing the newest `PRUNE_KEEP_NEWEST` and those younger than
/// `PRUNE_KEEP_YOUNGER_THAN_SECONDS` on each host. Does nothing when the
/// interval is 0.
pub async fn background(config: std::sync::Arc<Config>, shutdown: CancellationToken) {
    if config.prune_interval_seconds == 0 {
        return;
    }
    #[cfg(feature = "plugin-docker")]
    {
        use fastlane_plugin_docker::{DockerExecutor, DockerExecutorConfig, PruneKeep};
        let farms = config.docker_executor();
        let executor = match DockerExecutorConfig::from_json(farms).and_then(DockerExecutor::new) {
            Ok(executor) => executor,
            Err(err) => {
                tracing::warn!(error = %err, "background pruner off");
                return;
            }
        };
        let keep = PruneKeep {
            newest: usize::try_from(config.prune_keep_newest).unwrap_or(usize::MAX),
            younger_than_seconds: config.prune_keep_younger_than_seconds,
        };
        let interval = std::time::Duration::from_secs(config.prune_interval_seconds);
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.cancelled() => return,
            }
            let (removed, errors) = executor.prune_defunct_keeping(&keep).await;
            if !removed.is_empty() {
                tracing::info!(removed = removed.len(), "pruned finished containers");
            }
            for error in errors {
                tracing::warn!(error = %error, "pruning failed on a host");
            }
        }
    }
    #[cfg(not(feature = "plugin-docker"))]
    {
        let _ = shutdown;
        tracing::warn!("background pruner off: this fastlane was built without `plugin-docker`");
    }
}

/// Prunes every host of `DOCKER_HOSTS`, printing one JSON line per
/// container removed and one error line per host that failed. Returns false
/// when a host failed.
pub async fn run(config: &Config) -> anyhow::Result<bool> {
    #[cfg(feature = "plugin-docker")]
    {
        use fastlane_plugin_docker::{DockerExecutor, DockerExecutorConfig};
        let farms = config.docker_executor();
        let executor = DockerExecutor::new(DockerExecutorConfig::from_json(farms)?)?;
        let (removed, errors) = executor.prune_defunct().await;
        for container in &removed {
            println!("{}", serde_json::to_string(container)?);
        }
        for error in &errors {
            eprintln!("fastlane prune: {error}");
        }
        Ok(errors.is_empty())
    }
    #[cfg(not(feature = "plugin-docker"))]
    {
        let _ = config;
        anyhow::bail!("this fastlane was built without the plugin-docker feature")
    }
}
