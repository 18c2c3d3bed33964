//! Pruning: removing the containers of finished executions (renamed
//! `defunct-fastlane-job-<executionId>` once their result is stored) from
//! every host, sparing what the policy keeps.

use std::collections::HashMap;

use bollard::query_parameters::ListContainersOptions;

use fastlane_sdk::PluginError;

use crate::errors::classify;
use crate::executor::{CONTAINER_PREFIX, DEFUNCT_PREFIX, DockerExecutor, LABEL_EXECUTION};

/// What a prune spares on each host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneKeep {
    /// The newest defunct containers to keep.
    pub newest: usize,
    /// Keep defunct containers created less than this many seconds ago.
    pub younger_than_seconds: u64,
}

/// A container `prune_defunct` removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PrunedContainer {
    /// The host it was on.
    pub host: String,
    /// Its name, `defunct-fastlane-job-<executionId>`.
    pub name: String,
    /// Its id.
    pub id: String,
    /// Its image.
    pub image: String,
}

impl DockerExecutor {
    /// Removes every container that fastlane started and renamed
    /// `defunct-fastlane-job-…` (its result is stored) on every configured
    /// host, and says what it removed. Containers without fastlane's label,
    /// and fastlane containers not yet defunct, are left alone. Hosts that
    /// do not answer are reported and skipped.
    pub async fn prune_defunct(&self) -> (Vec<PrunedContainer>, Vec<PluginError>) {
        self.prune_defunct_keeping(&PruneKeep::default()).await
    }

    /// Like [`Self::prune_defunct`], sparing on each host the newest
    /// `keep.newest` defunct containers and those created less than
    /// `keep.younger_than_seconds` ago.
    pub async fn prune_defunct_keeping(
        &self,
        keep: &PruneKeep,
    ) -> (Vec<PrunedContainer>, Vec<PluginError>) {
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        for host in &self.hosts {
            let docker = match host.client().await {
                Ok(docker) => docker,
                Err(err) => {
                    errors.push(err);
                    continue;
                }
            };
            let filters = HashMap::from([
                ("label".to_owned(), vec![LABEL_EXECUTION.to_owned()]),
                (
                    "name".to_owned(),
                    vec![format!("{DEFUNCT_PREFIX}{CONTAINER_PREFIX}")],
                ),
            ]);
            let options = ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            };
            let mut containers = match docker.list_containers(Some(options)).await {
                Ok(containers) => containers,
                Err(e) => {
                    errors.push(classify(host, "listing defunct containers", e));
                    continue;
                }
            };
            // Newest first, then spare what the policy keeps.
            containers.sort_by_key(|c| std::cmp::Reverse(c.created.unwrap_or(0)));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let min_age = i64::try_from(keep.younger_than_seconds).unwrap_or(i64::MAX);
            let containers = containers
                .into_iter()
                .skip(keep.newest)
                .filter(|c| now.saturating_sub(c.created.unwrap_or(now)) >= min_age);
            for container in containers {
                let name = container
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default();
                let Some(id) = container.id.clone() else {
                    continue;
                };
                if !name.starts_with(&format!("{DEFUNCT_PREFIX}{CONTAINER_PREFIX}")) {
                    continue;
                }
                match docker
                    .remove_container(
                        &id,
                        None::<bollard::query_parameters::RemoveContainerOptions>,
                    )
                    .await
                {
                    Ok(()) => removed.push(PrunedContainer {
                        host: host.name.clone(),
                        name,
                        id,
                        image: container.image.unwrap_or_default(),
                    }),
                    Err(e) => errors.push(classify(host, "removing a defunct container", e)),
                }
            }
        }
        (removed, errors)
    }
}
