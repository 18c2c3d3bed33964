//! Following an execution's pod: a listing, then a watch from the
//! listing's resource version, listed afresh whenever the watch ends (its
//! server-side timeout, a `410 Gone`). Each change is handed over as it
//! comes; a caller that also waits for a time of its own gets the newest
//! state back every `tick` at the latest.

use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, WatchEvent, WatchParams};

use fastlane_sdk::PluginError;

use crate::cluster::{Cluster, newest, selector};

/// How long the API server keeps one watch open.
const WATCH_SECONDS: u32 = 60;

/// How long a watch may say nothing before it is taken for dead.
const SILENCE: Duration = Duration::from_secs(WATCH_SECONDS as u64 + 15);

/// What [`PodWatch::next`] saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The pod as it is now (as it was last, when it was deleted), or
    /// `None` when the execution has no pod.
    pub pod: Option<Pod>,
    /// The pod was deleted.
    pub deleted: bool,
}

/// The pod of one execution, as it changes.
pub struct PodWatch<'a> {
    cluster: &'a Cluster,
    selector: String,
    stream: Option<BoxStream<'static, Result<WatchEvent<Pod>, kube::Error>>>,
    latest: Option<Pod>,
    /// When the watch last said anything (bookmarks too).
    heard: std::time::Instant,
}

impl std::fmt::Debug for PodWatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodWatch")
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

impl<'a> PodWatch<'a> {
    /// Watches the pod of `execution_id` on `cluster`.
    pub fn new(cluster: &'a Cluster, execution_id: &str) -> Self {
        Self {
            cluster,
            selector: selector(execution_id),
            stream: None,
            latest: None,
            heard: std::time::Instant::now(),
        }
    }

    /// The pod's state: at once the first time (from a listing), then as
    /// soon as it changes, or after `tick` with nothing new.
    pub async fn next(&mut self, tick: Duration) -> Result<Seen, PluginError> {
        loop {
            if self.heard.elapsed() > SILENCE {
                // Longer than the server keeps a watch open, and not a
                // word: the connection died without closing.
                self.stream = None;
            }
            let Some(stream) = self.stream.as_mut() else {
                return self.list().await;
            };
            let event = match tokio::time::timeout(tick, stream.next()).await {
                Err(_) => {
                    return Ok(Seen {
                        pod: self.latest.clone(),
                        deleted: false,
                    });
                }
                Ok(event) => event,
            };
            self.heard = std::time::Instant::now();
            match event {
                None => {
                    // The server ended the watch: list afresh.
                    self.stream = None;
                }
                Some(Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod))) => {
                    self.latest = Some(pod.clone());
                    return Ok(Seen {
                        pod: Some(pod),
                        deleted: false,
                    });
                }
                Some(Ok(WatchEvent::Deleted(pod))) => {
                    self.latest = None;
                    return Ok(Seen {
                        pod: Some(pod),
                        deleted: true,
                    });
                }
                Some(Ok(WatchEvent::Bookmark(_))) => {}
                Some(Ok(WatchEvent::Error(status))) => {
                    tracing::debug!(
                        cluster = self.cluster.name(),
                        code = status.code,
                        "watch ended"
                    );
                    self.stream = None;
                }
                Some(Err(err)) => {
                    // A watch cut short: listing afresh says whether the
                    // API server still answers.
                    tracing::debug!(cluster = self.cluster.name(), error = %err, "watch broke");
                    self.stream = None;
                }
            }
        }
    }

    /// Lists the pod and opens a watch from there.
    async fn list(&mut self) -> Result<Seen, PluginError> {
        let pods = self.cluster.connect().await?.pods();
        let listed = self
            .cluster
            .call(
                "listing the execution's pods",
                pods.list(&ListParams::default().labels(&self.selector)),
            )
            .await?;
        let version = listed.metadata.resource_version.clone().unwrap_or_default();
        self.latest = newest(listed.items);
        let params = WatchParams::default()
            .labels(&self.selector)
            .timeout(WATCH_SECONDS);
        let stream = self
            .cluster
            .call("watching the pod", pods.watch(&params, &version))
            .await?;
        self.stream = Some(stream.map_err(kube::Error::from).boxed());
        self.heard = std::time::Instant::now();
        Ok(Seen {
            pod: self.latest.clone(),
            deleted: false,
        })
    }
}
