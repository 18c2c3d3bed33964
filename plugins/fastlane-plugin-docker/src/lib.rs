//! # fastlane-plugin-docker
//!
//! The Docker-pool executor: runs each execution as a container named
//! `fastlane-job-<execution_id>` on one host of the farm whose `match`
//! pattern fits the task id, through the Docker Engine API (Podman's
//! compatible API works too).
//!
//! # Layout
//! - [`config`]: farms and hosts as the operator writes them (`DOCKER_HOSTS`).
//! - [`addr`]: a host's address forms (TLS included), parsed at load.
//! - [`host`]: one Docker API endpoint and its client.
//! - [`events`]: each host's event stream, which ends waits on `die` and keeps
//!   the fastlane containers running there, so that placement and `/status`
//!   need no listing.
//! - [`circuit`]: each host's circuit breaker.
//! - [`load`]: each host's running count, as placement sees it.
//! - [`image`]: splitting `registry:port/name:tag@digest` references.
//! - [`executor`]: [`DockerExecutor`], the [`fastlane_sdk::Executor`] itself.
//!
//! Register it with [`register`].

pub mod addr;
/// Each host's circuit breaker (the SDK's, shared with other executors).
pub use fastlane_sdk::circuit;
pub mod config;
mod container;
mod errors;
pub mod events;
pub mod executor;
pub mod host;
pub mod image;
pub mod load;
pub mod prune;
pub mod registry;

use std::sync::Arc;

use fastlane_sdk::{Executor, ExecutorFactory, PluginError, Registry};

pub use config::{DockerExecutorConfig, Farm};
pub use executor::DockerExecutor;
pub use prune::{PruneKeep, PrunedContainer};

/// The kind this executor registers under.
pub const KIND: &str = "docker";

/// Builds [`DockerExecutor`]s from a [`DockerExecutorConfig`] in JSON.
#[derive(Debug, Default)]
pub struct DockerExecutorFactory;

impl ExecutorFactory for DockerExecutorFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn Executor>, PluginError> {
        let config = DockerExecutorConfig::from_json(config)?;
        Ok(Arc::new(DockerExecutor::new(config)?))
    }
}

/// Adds the Docker executor to `registry`.
pub fn register(registry: &mut Registry) -> Result<(), PluginError> {
    registry.register_executor(Box::new(DockerExecutorFactory))
}
