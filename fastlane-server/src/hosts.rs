//! Host state every process shares through the store: the operator's
//! blacklist, and what each process learnt of the Docker hosts' health (a
//! circuit one worker opened keeps every worker's work off that host; one
//! that closed brings it back everywhere). Workers exchange it every
//! [`SHARE`].

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::executors::Executors;
use crate::store::{Store, StoreError};

/// How often a worker shares host state.
pub const SHARE: Duration = Duration::from_secs(2);

/// One exchange: this process's host health goes to the store, everyone's
/// comes back to the executors, with the blacklist.
pub async fn share(executors: &Executors, store: &dyn Store) -> Result<(), StoreError> {
    let shared = store.share_host_health(&executors.host_health()).await?;
    executors.share_host_health(&shared);
    executors.set_blacklist(&store.blacklist().await?);
    Ok(())
}

/// Shares host state every [`SHARE`] until `shutdown`.
pub async fn keep_shared(executors: &Executors, store: &dyn Store, shutdown: CancellationToken) {
    loop {
        if let Err(err) = share(executors, store).await {
            warn!(error = %err, "cannot share host state through the store");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SHARE) => {}
        }
    }
}

#[cfg(all(test, feature = "plugin-docker"))]
mod tests {
    use std::sync::Arc;

    use fastlane_sdk::{Executor, ExecutorFactory};

    use super::*;
    use crate::embedded::Db;
    use crate::store::sqlite::SqliteStore;

    /// One "process": its own Docker executor on a farm of two hosts that
    /// refuse connections (ports 1 and 2).
    fn process() -> Executors {
        let config = serde_json::json!({
            "farms": [{"match": "", "hosts": ["127.0.0.1:1", "127.0.0.1:2"]}],
            "circuitBreaker": {"maxFails": 1, "resetTimeoutSeconds": 600},
        });
        let executor: Arc<dyn Executor> = fastlane_plugin_docker::DockerExecutorFactory
            .build(config)
            .expect("executor");
        Executors::single(executor)
    }

    fn circuit(status: &fastlane_sdk::ExecutorStatus, host: &str) -> String {
        status
            .hosts
            .iter()
            .find(|h| h.host == host)
            .map(|h| h.circuit.clone())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_circuit_one_process_opens_is_open_in_the_others_and_so_is_the_blacklist() {
        let dir = std::env::temp_dir().join(format!("fastlane-hosts-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store = SqliteStore::new(Db::open(&dir).expect("db"));
        let (first, second) = (process(), process());

        // The first process finds 127.0.0.1:1 dead (its status probes it).
        let seen = first.status().await;
        assert_eq!(circuit(&seen, "127.0.0.1:1"), "open");
        share(&first, &store).await.expect("share");
        share(&second, &store).await.expect("share");
        // The second never talked to it, and knows.
        let second_view = second.host_health();
        let dead = second_view.iter().find(|h| h.host == "127.0.0.1:1");
        assert!(
            dead.is_some_and(|h| h.open_until.is_some()),
            "{second_view:?}"
        );

        store
            .set_blacklisted("127.0.0.1:2", true)
            .await
            .expect("blacklist");
        share(&second, &store).await.expect("share");
        let status = second.status().await;
        let blacklisted = status.hosts.iter().find(|h| h.host == "127.0.0.1:2");
        assert!(blacklisted.is_some_and(|h| h.blacklisted), "{status:?}");
    }
}
