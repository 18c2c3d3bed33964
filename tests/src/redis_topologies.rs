//! Redis set-ups of several processes, for the queue's tests: a master and
//! its replicas watched by three Sentinels ([`SentinelSet`]), and a Cluster
//! of masters ([`Cluster`]). Every process listens on loopback on a free
//! port, keeps its files in a temporary directory, and is killed when the
//! set-up is dropped. They are tuned to be quick: a Sentinel calls a master
//! down after a second without an answer. `start_secured` makes the same
//! set-ups over TLS only and behind an ACL user ([`Secure`]).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::redis::{RedisServer, Secure};

/// How long a set-up may take to settle.
const SETTLE: Duration = Duration::from_secs(30);

/// Polls `ready` every 50 ms until it holds, for up to [`SETTLE`].
async fn settle(what: &str, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE;
    while !ready() {
        if Instant::now() > deadline {
            bail!("gave up waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A master, its replicas and three Sentinels (quorum two) monitoring
/// them as [`SentinelSet::SERVICE`].
#[derive(Debug)]
pub struct SentinelSet {
    /// The data servers; the first is the master at start.
    pub servers: Vec<RedisServer>,
    /// The Sentinels.
    pub sentinels: Vec<RedisServer>,
    /// Their TLS and ACL user, if secured (dropped after them).
    pub secure: Option<Secure>,
}

impl SentinelSet {
    /// The name the Sentinels monitor the master under.
    pub const SERVICE: &'static str = "fastlane-test";

    /// Starts a master with `replicas` replicas and three Sentinels, and
    /// waits until the replicas are in sync and every Sentinel knows them
    /// and the other Sentinels.
    pub async fn start(replicas: usize) -> anyhow::Result<Self> {
        Self::start_secured(replicas, None).await
    }

    /// [`SentinelSet::start`], every process over TLS only and behind
    /// `secure`'s ACL user when there is one: the Sentinels log in to the
    /// servers and to each other as that user, and so do replicas to their
    /// master.
    pub async fn start_secured(replicas: usize, secure: Option<Secure>) -> anyhow::Result<Self> {
        let master = RedisServer::start_secured(&[], secure.as_ref()).await?;
        let master_port = master.port.to_string();
        let mut servers = vec![master];
        for _ in 0..replicas {
            servers.push(
                RedisServer::start_secured(
                    &["--replicaof", "127.0.0.1", &master_port],
                    secure.as_ref(),
                )
                .await?,
            );
        }
        let service = Self::SERVICE;
        let mut config = format!(
            "sentinel monitor {service} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {service} 1000\n\
             sentinel failover-timeout {service} 4000\n\
             sentinel parallel-syncs {service} 1\n"
        );
        if secure.is_some() {
            config.push_str(&format!(
                "sentinel auth-user {service} {}\nsentinel auth-pass {service} {}\n",
                Secure::USER,
                Secure::PASSWORD
            ));
        }
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(RedisServer::start_secured_sentinel(&config, secure.as_ref()).await?);
        }
        let set = Self {
            servers,
            sentinels,
            secure,
        };
        set.wait_for_replicas(0, replicas).await?;
        settle("the sentinels to know each other and the replicas", || {
            set.sentinels.iter().all(|sentinel| {
                let fields = sentinel_fields(sentinel);
                field(&fields, "num-slaves") == Some(replicas.to_string().as_str())
                    && field(&fields, "num-other-sentinels") == Some("2")
            })
        })
        .await?;
        Ok(set)
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/<service>/0`;
    /// secured, `rediss+sentinel://` with the user and password, for the
    /// servers and (`sentinel_username`, `sentinel_password`) the Sentinels.
    pub fn url(&self) -> String {
        match self.secure {
            None => format!("redis+sentinel://{}/{}/0", self.hosts(), Self::SERVICE),
            Some(_) => format!(
                "rediss+sentinel://{user}:{password}@{}/{}/0\
                 ?sentinel_username={user}&sentinel_password={password}",
                self.hosts(),
                Self::SERVICE,
                user = Secure::USER,
                password = Secure::PASSWORD,
            ),
        }
    }

    /// The Sentinels, `127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn hosts(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        hosts.join(",")
    }

    /// The master's port, as the first Sentinel that answers names it.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|sentinel| {
            let answer = sentinel
                .cli(&["sentinel", "get-master-addr-by-name", Self::SERVICE])
                .ok()?;
            answer.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// The index in [`SentinelSet::servers`] of the server on `port`.
    pub fn index_of(&self, port: u16) -> Option<usize> {
        self.servers.iter().position(|s| s.port == port)
    }

    /// The index of the master every Sentinel names, once they agree.
    pub fn master(&self) -> Option<usize> {
        let mut ports = self.sentinels.iter().map(|sentinel| {
            sentinel
                .cli(&["sentinel", "get-master-addr-by-name", Self::SERVICE])
                .ok()
                .and_then(|a| a.lines().nth(1)?.trim().parse::<u16>().ok())
        });
        let first = ports.next()??;
        if ports.all(|p| p == Some(first)) {
            self.index_of(first)
        } else {
            None
        }
    }

    /// Waits until the server at `index` is a master with `replicas`
    /// replicas in sync.
    pub async fn wait_for_replicas(&self, index: usize, replicas: usize) -> anyhow::Result<()> {
        let master = self.servers.get(index).context("no such server")?;
        settle(&format!("{replicas} replica(s) of {}", master.port), || {
            master.info("replication", "role").as_deref() == Some("master")
                && master
                    .info("replication", "connected_slaves")
                    .is_some_and(|n| n == replicas.to_string())
                && (0..replicas).all(|i| {
                    master
                        .info("replication", &format!("slave{i}"))
                        .is_some_and(|s| s.contains("state=online"))
                })
        })
        .await
    }

    /// Waits until every Sentinel names a master other than the server at
    /// `old` and that server says it is master; returns its index.
    pub async fn wait_for_new_master(&self, old: usize) -> anyhow::Result<usize> {
        let mut new = None;
        settle("the sentinels to agree on a new master", || {
            new = self.master().filter(|i| {
                *i != old
                    && self.servers[*i].info("replication", "role").as_deref() == Some("master")
            });
            new.is_some()
        })
        .await?;
        new.context("no new master")
    }

    /// A failover as an operator starts one (`SENTINEL FAILOVER`): returns
    /// once every Sentinel names the new master and the old one follows it
    /// as a replica, in sync.
    ///
    /// Sentinel promotes a replica within a second or two, but turns the
    /// old master (which never went down) into a replica only after a fixed
    /// eight to eighteen seconds; until then a one-replica set has no
    /// replica to confirm writes. This does that step at once, with
    /// `REPLICAOF`, as an operator in a hurry would; Sentinel agrees with it.
    pub async fn failover(&self) -> anyhow::Result<usize> {
        let old = self
            .master()
            .context("the sentinels disagree on the master")?;
        let answer = self.sentinels[0].cli(&["sentinel", "failover", Self::SERVICE])?;
        if answer != "OK" {
            bail!("SENTINEL FAILOVER answered {answer:?}");
        }
        let new = self.wait_for_new_master(old).await?;
        let new_port = self.servers[new].port.to_string();
        self.servers[old].cli(&["replicaof", "127.0.0.1", &new_port])?;
        self.wait_for_replicas(new, self.servers.len() - 1).await?;
        Ok(new)
    }
}

/// `SENTINEL MASTER <service>` as name/value pairs.
fn sentinel_fields(sentinel: &RedisServer) -> Vec<String> {
    sentinel
        .cli(&["sentinel", "master", SentinelSet::SERVICE])
        .map(|answer| answer.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn field<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    fields
        .chunks(2)
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair.get(1))
        .map(String::as_str)
}

/// A Redis Cluster of masters without replicas, all 16384 slots covered.
#[derive(Debug)]
pub struct Cluster {
    /// Its nodes.
    pub nodes: Vec<RedisServer>,
    /// Their TLS and ACL user, if secured (dropped after them).
    pub secure: Option<Secure>,
}

impl Cluster {
    /// Starts `masters` nodes, joins them with `redis-cli --cluster create`
    /// and waits until every node says `cluster_state:ok`.
    pub async fn start(masters: usize) -> anyhow::Result<Self> {
        Self::start_secured(masters, None).await
    }

    /// [`Cluster::start`], every node over TLS only (the cluster bus too)
    /// and behind `secure`'s ACL user when there is one.
    pub async fn start_secured(masters: usize, secure: Option<Secure>) -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        for _ in 0..masters {
            let bus = crate::smtp::free_port()?.to_string();
            nodes.push(
                RedisServer::start_secured(
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-port",
                        &bus,
                        "--cluster-node-timeout",
                        "2000",
                    ],
                    secure.as_ref(),
                )
                .await?,
            );
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = tokio::process::Command::new("redis-cli");
        create
            .args(nodes.first().map(RedisServer::cli_args).unwrap_or_default())
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .kill_on_drop(true);
        // It waits for ever for nodes that cannot reach each other.
        let created = tokio::time::timeout(SETTLE, create.output())
            .await
            .context("redis-cli --cluster create: the nodes did not join")?
            .context("running redis-cli --cluster create")?;
        if !created.status.success() {
            bail!(
                "redis-cli --cluster create: {}{}",
                String::from_utf8_lossy(&created.stdout),
                String::from_utf8_lossy(&created.stderr)
            );
        }
        let cluster = Self { nodes, secure };
        settle("cluster_state:ok on every node", || {
            cluster.nodes.iter().all(|n| {
                n.info("cluster", "cluster_enabled").as_deref() == Some("1")
                    && n.cli(&["cluster", "info"]).is_ok_and(|info| {
                        info.lines().any(|l| l.trim() == "cluster_state:ok")
                            && info.lines().any(|l| l.trim() == "cluster_slots_ok:16384")
                    })
            })
        })
        .await?;
        Ok(cluster)
    }

    /// `redis+cluster://127.0.0.1:P1,…`; secured,
    /// `rediss+cluster://fastlane:secret@127.0.0.1:P1,…`.
    pub fn url(&self) -> String {
        match self.secure {
            None => format!("redis+cluster://{}", self.hosts()),
            Some(_) => format!(
                "rediss+cluster://{}:{}@{}",
                Secure::USER,
                Secure::PASSWORD,
                self.hosts()
            ),
        }
    }

    /// The nodes, `127.0.0.1:P1,…`.
    pub fn hosts(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        hosts.join(",")
    }

    /// The index in [`Cluster::nodes`] of the node serving `key`'s slot.
    pub fn node_serving(&self, key: &str) -> anyhow::Result<usize> {
        let first = self.nodes.first().context("no nodes")?;
        let slot: u16 = first.cli(&["cluster", "keyslot", key])?.parse()?;
        for (index, node) in self.nodes.iter().enumerate() {
            let nodes = node.cli(&["cluster", "nodes"])?;
            let myself = nodes
                .lines()
                .find(|line| line.contains("myself"))
                .context("CLUSTER NODES without myself")?;
            let serves = myself.split(' ').skip(8).any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(from), Ok(to)) if (from..=to).contains(&slot))
            });
            if serves {
                return Ok(index);
            }
        }
        bail!("no node serves slot {slot}")
    }

    /// How many keys matching `pattern` (a `KEYS` glob) each node holds.
    pub fn keys_per_node(&self, pattern: &str) -> anyhow::Result<Vec<usize>> {
        self.nodes
            .iter()
            .map(|n| {
                Ok(n.cli(&["keys", pattern])?
                    .lines()
                    .filter(|l| !l.is_empty())
                    .count())
            })
            .collect()
    }
}
