//! `fastlane prune`: removes the containers of finished executions
//! (renamed `defunct-fastlane-job-<executionId>` once their result was
//! stored) from every configured Docker host.

use crate::config::Config;

/// Prunes every host of `DOCKER_HOSTS`, printing one JSON line per
/// container removed and one error line per host that failed. Returns false
/// when a host failed.
pub async fn run(config: &Config) -> anyhow::Result<bool> {
    #[cfg(feature = "plugin-docker")]
    {
        use fastlane_plugin_docker::{DockerExecutor, DockerExecutorConfig};
        let farms = serde_json::json!({ "farms": config.docker_hosts });
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
