//! Reading a job pod's log. Kubernetes keeps one log per container, stdout
//! and stderr merged in the order written, so all of it is handed over as
//! stdout. Reading stops as soon as the sink wants no more, and a read of
//! a finished pod asks the API server for no more than the sink can keep.

use futures_util::AsyncReadExt;
use kube::api::LogParams;

use fastlane_sdk::{COUNT_PAST_LIMIT, LogSink, LogStream, PluginError};

use crate::cluster::Cluster;
use crate::manifest::CONTAINER;

/// How much of the log is read at once.
const CHUNK: usize = 64 * 1024;

/// Hands the log of pod `pod` to `sink` from its first byte: to its end
/// when `follow` is false, else until the container exits. At most `limit`
/// bytes (and the count past it the sink asks for) are asked of the API
/// server.
pub async fn read(
    cluster: &Cluster,
    pod: &str,
    follow: bool,
    limit: u64,
    sink: &dyn LogSink,
) -> Result<(), PluginError> {
    let pods = cluster.connect().await?.pods();
    let params = LogParams {
        container: Some(CONTAINER.to_owned()),
        follow,
        limit_bytes: i64::try_from(limit.saturating_add(COUNT_PAST_LIMIT + 1)).ok(),
        ..LogParams::default()
    };
    let what = if follow {
        "following the log"
    } else {
        "reading the log"
    };
    let stream = if follow {
        // A followed log stays open for as long as the run: only opening
        // it is bounded in time.
        let opened = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            pods.log_stream(pod, &params),
        )
        .await
        .map_err(|_| {
            PluginError::unavailable(format!("cluster {}: {what}: no answer", cluster.name()))
        })?;
        cluster.observe(what, opened)?
    } else {
        cluster.call(what, pods.log_stream(pod, &params)).await?
    };
    let mut stream = std::pin::pin!(stream);
    let mut buffer = vec![0; CHUNK];
    while sink.wants(LogStream::Stdout) {
        let read = stream.read(&mut buffer).await.map_err(|err| {
            PluginError::retryable(format!("cluster {}: {what}: {err}", cluster.name()))
        })?;
        if read == 0 {
            break;
        }
        sink.write(LogStream::Stdout, &buffer[..read]).await;
    }
    Ok(())
}
