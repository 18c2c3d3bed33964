//! One connection type for every Redis topology. The queue runs its scripts
//! on a [`Connection`] whichever form `REDIS_URL` took:
//!
//! - one server (`redis://`, `rediss://`, `unix://`): the redis crate's
//!   `ConnectionManager`, which reconnects by itself (as fastlane always did);
//! - Sentinel: a [`Master`], which follows failovers;
//! - Cluster: the redis crate's cluster connection, which sends each command
//!   to the node serving its key's slot and follows the cluster's own
//!   failovers and slot moves.
//!
//! In the TLS forms (`rediss+sentinel://`, `rediss+cluster://`) every
//! connection speaks TLS: the cluster client gets `TlsMode::Secure`, so the
//! nodes `CLUSTER SLOTS` names are reached over TLS too, and with the URL's
//! user and password, like the nodes listed.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, TlsMode, Value};

use super::sentinel::{CONNECT_TIMEOUT, Master, RESPONSE_TIMEOUT, address};
use super::url::{RedisUrl, Target};

/// A connection to whatever `REDIS_URL` names. Clones share it.
#[derive(Clone)]
pub enum Connection {
    /// One server.
    Server(ConnectionManager),
    /// The master behind Sentinels.
    Sentinel(Master),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Server(_) => f.write_str("Connection::Server"),
            Self::Sentinel(master) => f.debug_tuple("Connection::Sentinel").field(master).finish(),
            Self::Cluster(_) => f.write_str("Connection::Cluster"),
        }
    }
}

impl Connection {
    /// Connects (fails when nothing answers).
    pub async fn open(url: &RedisUrl) -> RedisResult<Self> {
        match &url.target {
            Target::Server(info) => {
                let client = redis::Client::open(info.clone())?;
                // The crate's default gives an answer 500 ms: a Redis that
                // fsyncs every write (`appendfsync always`) on a busy disk
                // takes longer now and then, and a submission would get a
                // 503 for it.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                Ok(Self::Server(
                    ConnectionManager::new_with_config(client, config).await?,
                ))
            }
            Target::Sentinel(sentinel) => Ok(Self::Sentinel(Master::connect(sentinel).await?)),
            Target::Cluster(cluster) => {
                let nodes = cluster
                    .nodes
                    .iter()
                    .map(|(host, port)| address(host, *port, cluster.tls).into_connection_info())
                    .collect::<RedisResult<Vec<_>>>()?;
                let mut builder = ClusterClientBuilder::new(nodes);
                if cluster.tls {
                    builder = builder.tls(TlsMode::Secure);
                }
                if let Some(username) = &cluster.credentials.username {
                    builder = builder.username(username);
                }
                if let Some(password) = &cluster.credentials.password {
                    builder = builder.password(password);
                }
                let client = builder.build()?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
