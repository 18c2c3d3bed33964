//! [`Executors`]: which executor runs which task.
//!
//! `EXECUTORS` routes task ids to executors by regex, in order; tasks no
//! route matches go to `docker`, the default. Every call about an
//! execution goes to the executor of its task, so the routing must stay
//! the same while executions of a task are live.

use std::collections::BTreeMap;
use std::sync::Arc;

use fastlane_sdk::{Executor, ExecutorStatus, PluginError};

use crate::config::ExecutorRoute;

/// The name of the executor tasks go to unless a route says otherwise.
pub const DEFAULT: &str = "docker";

/// The configured executors and the routes to them.
#[derive(Debug, Clone)]
pub struct Executors {
    routes: Vec<ExecutorRoute>,
    by_name: BTreeMap<String, Arc<dyn Executor>>,
    default: Arc<dyn Executor>,
}

impl Executors {
    /// Routes `routes` to the executors built, checking that every route
    /// names one of them.
    pub fn new(
        routes: Vec<ExecutorRoute>,
        by_name: BTreeMap<String, Arc<dyn Executor>>,
    ) -> Result<Self, PluginError> {
        let known = || by_name.keys().cloned().collect::<Vec<_>>().join(", ");
        let Some(default) = by_name.get(DEFAULT).cloned() else {
            return Err(PluginError::invalid_config(format!(
                "no {DEFAULT:?} executor (built: {})",
                known()
            )));
        };
        if let Some(route) = routes.iter().find(|r| !by_name.contains_key(&r.executor)) {
            return Err(PluginError::invalid_config(format!(
                "EXECUTORS routes {:?} to executor {:?}, which is not loaded (loaded: {})",
                route.pattern.as_str(),
                route.executor,
                known()
            )));
        }
        Ok(Self {
            routes,
            by_name,
            default,
        })
    }

    /// Only `executor`, for everything.
    pub fn single(executor: Arc<dyn Executor>) -> Self {
        Self {
            routes: Vec::new(),
            by_name: BTreeMap::from([(DEFAULT.to_owned(), executor.clone())]),
            default: executor,
        }
    }

    /// The name of the executor that runs `task_id`.
    pub fn name_for(&self, task_id: &str) -> &str {
        self.routes
            .iter()
            .find(|route| route.pattern.is_match(task_id))
            .map_or(DEFAULT, |route| route.executor.as_str())
    }

    /// The executor that runs `task_id`.
    pub fn for_task(&self, task_id: &str) -> &Arc<dyn Executor> {
        self.by_name
            .get(self.name_for(task_id))
            .unwrap_or(&self.default)
    }

    /// The executors' names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// Every executor's hosts and running work, together.
    pub async fn status(&self) -> ExecutorStatus {
        let mut all = ExecutorStatus::default();
        for executor in self.by_name.values() {
            let status = executor.status().await;
            all.hosts.extend(status.hosts);
            all.running.extend(status.running);
        }
        all
    }

    /// What every executor learnt of its hosts' health.
    pub fn host_health(&self) -> Vec<fastlane_sdk::HostHealth> {
        self.by_name
            .values()
            .flat_map(|executor| executor.host_health())
            .collect()
    }

    /// Hands what every process learnt of host health to every executor.
    pub fn share_host_health(&self, shared: &[fastlane_sdk::HostHealth]) {
        for executor in self.by_name.values() {
            executor.share_host_health(shared);
        }
    }

    /// Hands the operator's blacklist to every executor.
    pub fn set_blacklist(&self, hosts: &[String]) {
        for executor in self.by_name.values() {
            executor.set_blacklist(hosts);
        }
    }
}
