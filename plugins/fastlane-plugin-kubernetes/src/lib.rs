//! # fastlane-plugin-kubernetes
//!
//! The Kubernetes executor: runs each execution as a `batch/v1` Job named
//! `fastlane-<execution id>` on the cluster whose `match` pattern fits the
//! task id, through the cluster's API (kube-rs, rustls: no OpenSSL).
//! Tasks reach it through an `EXECUTORS` route to `kubernetes`; clusters
//! are configured in `KUBERNETES_CLUSTERS`.
//!
//! Kubernetes keeps one log per container, stdout and stderr merged: an
//! execution's whole output is its stdout, and its stderr stays empty.
//!
//! # Layout
//! - [`config`]: clusters as the operator writes them, checked at load.
//! - [`manifest`]: the Job an execution runs as.
//! - [`cluster`]: one cluster's client, circuit breaker and API calls.
//! - [`watch`]: following an execution's pod (list, then watch).
//! - [`state`]: how a Job and its pod read as an execution's state.
//! - [`logs`]: reading a pod's log into a sink.
//! - [`executor`]: [`KubernetesExecutor`], the [`fastlane_sdk::Executor`].
//!
//! Register it with [`register`].

pub mod cluster;
pub mod config;
pub mod executor;
pub mod logs;
pub mod manifest;
pub mod state;
pub mod watch;

use std::sync::Arc;

use fastlane_sdk::{Executor, ExecutorFactory, PluginError, Registry};

pub use config::ClusterConfig;
pub use executor::KubernetesExecutor;

/// The kind this executor registers under.
pub const KIND: &str = "kubernetes";

/// Builds [`KubernetesExecutor`]s from `KUBERNETES_CLUSTERS` (a JSON array
/// of [`ClusterConfig`]).
#[derive(Debug, Default)]
pub struct KubernetesExecutorFactory;

impl ExecutorFactory for KubernetesExecutorFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn Executor>, PluginError> {
        let clusters = config::parse(config)?;
        for cluster in &clusters {
            tracing::info!(cluster = %cluster.name, pattern = %cluster.pattern, "kubernetes cluster configured");
        }
        Ok(Arc::new(KubernetesExecutor::new(clusters)))
    }
}

/// Adds the Kubernetes executor to `registry`.
pub fn register(registry: &mut Registry) -> Result<(), PluginError> {
    registry.register_executor(Box::new(KubernetesExecutorFactory))
}
