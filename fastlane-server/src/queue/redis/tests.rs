//! The Redis queue on every topology: the conformance suite against the
//! shared test Redis (one test per behaviour), and, in one test each, a
//! server on a Unix socket, a Sentinel set and a Cluster these tests start
//! (`fastlane_tests::redis_topologies`); then what only a failover or a
//! Cluster can show.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fastlane_tests::redis::RedisServer;
use fastlane_tests::redis_topologies::{Cluster, SentinelSet};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::queue::{JOBS, NOTIFY};

fn prefix() -> String {
    format!("fastlane-test-{}", uuid::Uuid::new_v4().simple())
}

async fn queue_at(url: &str, prefix: &str) -> RedisQueue {
    RedisQueue::connect(url, prefix)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
}

/// A queue of its own (its own key prefix) on the test Redis.
async fn fresh() -> RedisQueue {
    let url = std::env::var("FASTLANE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6390/0".to_owned());
    RedisQueue::connect(&url, &prefix())
        .await
        .unwrap_or_else(|err| panic!("{err} (scripts/services.sh starts the test Redis)"))
}

crate::queue_conformance!(async { Arc::new(fresh().await) });

async fn started<T>(what: impl Future<Output = anyhow::Result<T>>) -> T {
    what.await
        .unwrap_or_else(|err| panic!("starting the servers: {err:#}"))
}

crate::queue_conformance!(
    one test conformance_over_a_unix_socket,
    started(RedisServer::start_unix()),
    |server| async {
        let url = format!("unix://{}", server.socket().display());
        Arc::new(queue_at(&url, &prefix()).await)
    }
);

crate::queue_conformance!(
    one test conformance_behind_sentinels,
    started(SentinelSet::start(1)),
    |set| async { Arc::new(queue_at(&set.url(), &prefix()).await) }
);

crate::queue_conformance!(
    one test conformance_on_a_cluster,
    started(Cluster::start(3)),
    |cluster| async { Arc::new(queue_at(&cluster.url(), &prefix()).await) }
);

/// A Redis that lost its data (here: the queue's keys deleted, as a
/// `FLUSHALL` or an empty replica would) answers with another epoch.
#[tokio::test]
async fn the_epoch_changes_when_redis_loses_the_data() {
    let url = std::env::var("FASTLANE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6390/0".to_owned());
    let prefix = prefix();
    let queue = queue_at(&url, &prefix).await;
    let before = queue.epoch().await.expect("epoch");
    queue
        .enqueue(JOBS, &run("lost"), None)
        .await
        .expect("enqueue");
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = c.keys(format!("{prefix}*")).await.expect("KEYS");
    let _: () = c.del(keys).await.expect("DEL");
    let after = queue.epoch().await.expect("epoch");
    assert_ne!(before, after);
    assert_eq!(queue.epoch().await.expect("epoch"), after, "then it stays");
}

fn run(id: &str) -> Work {
    Work::RunExecution {
        execution_id: id.to_owned(),
        trace: None,
    }
}

/// Every key under `prefix` on the server at `port`, with its content
/// (sorted-set members with their scores, hash fields, strings, set
/// members), read straight from that server.
async fn dump(port: u16, prefix: &str) -> BTreeMap<String, Vec<String>> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).expect("client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = c.keys(format!("{prefix}*")).await.expect("KEYS");
    let mut out = BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut c)
            .await
            .expect("TYPE");
        let mut content: Vec<String> = match kind.as_str() {
            "zset" => {
                let members: Vec<(String, String)> =
                    c.zrange_withscores(&key, 0, -1).await.expect("ZRANGE");
                members
                    .into_iter()
                    .map(|(m, s)| format!("{m}={s}"))
                    .collect()
            }
            "hash" => {
                let fields: BTreeMap<String, String> = c.hgetall(&key).await.expect("HGETALL");
                fields
                    .into_iter()
                    .map(|(f, v)| format!("{f}={v}"))
                    .collect()
            }
            "set" => c.smembers(&key).await.expect("SMEMBERS"),
            _ => vec![c.get(&key).await.expect("GET")],
        };
        content.sort();
        out.insert(key, content);
    }
    out
}

async fn take(queue: &RedisQueue, name: &str, lease: Duration) -> Option<Delivery> {
    let cancel = CancellationToken::new();
    let taking = queue.dequeue(name, lease, &cancel);
    tokio::time::timeout(Duration::from_millis(500), taking)
        .await
        .ok()
        .map(|d| d.expect("dequeue").expect("a message"))
}

const HOUR: Duration = Duration::from_secs(3600);

/// Enqueues `a`…`f` on the jobs queue (`e` and `f` due in an hour), one
/// notification, and leases `a` and `b`; returns the two deliveries.
async fn fill(queue: &RedisQueue) -> (Delivery, Delivery) {
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    for id in ["a", "b", "c", "d"] {
        assert!(queue.enqueue(JOBS, &run(id), None).await.expect("enqueue"));
    }
    for id in ["e", "f"] {
        assert!(
            queue
                .enqueue(JOBS, &run(id), Some(later))
                .await
                .expect("enqueue")
        );
    }
    queue
        .enqueue(NOTIFY, &run("n"), None)
        .await
        .expect("enqueue");
    let a = take(queue, JOBS, HOUR).await.expect("a");
    let b = take(queue, JOBS, HOUR).await.expect("b");
    assert_eq!((a.id.as_str(), b.id.as_str()), ("a", "b"));
    (a, b)
}

/// What a queue filled by [`fill`] gives after a failover: the held
/// leases still hold (their tokens extend and ack), `c` and `d` come out in
/// order, `e` and `f` stay unleased and not due, and new work goes in and
/// out.
async fn still_works(queue: &RedisQueue, a: &Delivery, b: &Delivery) {
    queue
        .extend(a, HOUR)
        .await
        .expect("the lease on a still holds");
    queue.ack(b).await.expect("ack b");
    let c = take(queue, JOBS, HOUR).await.expect("c");
    let d = take(queue, JOBS, HOUR).await.expect("d");
    assert_eq!((c.id.as_str(), d.id.as_str()), ("c", "d"));
    assert_eq!((c.attempts, d.attempts), (1, 1));
    assert!(
        queue
            .enqueue(JOBS, &run("new"), None)
            .await
            .expect("enqueue")
    );
    let new = take(queue, JOBS, HOUR).await.expect("new work comes out");
    assert_eq!(new.id, "new");
    assert!(
        take(queue, JOBS, HOUR).await.is_none(),
        "e and f are not due"
    );
    let lengths = queue.lengths().await.expect("lengths");
    // a, c, d, new (leased), e, f; the notification.
    assert_eq!((lengths[JOBS], lengths[NOTIFY]), (6, 1));
}

/// An operator's failover (`SENTINEL FAILOVER`) while writes go on: the new
/// master has every message exactly as it was (ids, payloads, scores — due
/// times and lease ends —, lease tokens, delivery counts), every write the
/// queue acknowledged during the switch is there, and the queue works on.
#[tokio::test]
async fn a_sentinel_failover_keeps_every_message_lease_and_acknowledged_write() {
    let set = started(SentinelSet::start(1)).await;
    let prefix = prefix();
    let queue = queue_at(&set.url(), &prefix).await;
    let (a, b) = fill(&queue).await;
    let before = dump(set.servers[0].port, &prefix).await;

    let writer = {
        let queue = queue.clone();
        let done = CancellationToken::new();
        let stop = done.clone();
        let task = tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut refused = 0;
            for i in 0.. {
                if stop.is_cancelled() {
                    break;
                }
                let id = format!("during-{i}");
                let due = Some(chrono::Utc::now() + chrono::Duration::hours(2));
                // Ok(false), "already queued", is an acknowledgement too: a
                // write sent again after its answer was lost finds itself.
                match queue.enqueue("during", &run(&id), due).await {
                    Ok(_) => acknowledged.push(id),
                    Err(_) => refused += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acknowledged, refused)
        });
        (done, task)
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let new = set.failover().await.expect("failover");
    eprintln!("failover took {:?}", started.elapsed());
    assert_ne!(new, 0, "the replica is the master now");
    tokio::time::sleep(Duration::from_millis(200)).await;
    writer.0.cancel();
    let (acknowledged, refused) = writer.1.await.expect("writer");
    eprintln!(
        "{} writes acknowledged, {refused} refused",
        acknowledged.len()
    );
    assert!(acknowledged.len() >= 5, "{acknowledged:?}");

    let after = dump(set.servers[new].port, &prefix).await;
    for (key, content) in &before {
        if key.ends_with(":seq") || key.ends_with(":queues") {
            continue;
        }
        assert_eq!(after.get(key), Some(content), "{key} after the failover");
    }
    let during = after
        .get(&format!("{prefix}:queue:during"))
        .expect("the queue written during the failover");
    for id in &acknowledged {
        assert!(
            during.iter().any(|m| m.contains(&format!(":{id}="))),
            "{id} was acknowledged but is gone ({refused} writes were refused)"
        );
    }
    still_works(&queue, &a, &b).await;
}

/// The master killed outright: a write no replica confirmed is not
/// acknowledged (it fails, and so does a ping while no replica could
/// confirm one), and everything acknowledged before is on the replica the
/// Sentinels promote, leases and all. Once a replica is back, writes are
/// acknowledged again.
#[tokio::test]
async fn a_killed_master_loses_nothing_acknowledged() {
    let mut set = started(SentinelSet::start(1)).await;
    let prefix = prefix();
    let queue = queue_at(&set.url(), &prefix).await;
    let (a, b) = fill(&queue).await;
    let before = dump(set.servers[0].port, &prefix).await;

    // The replica stops answering: a write reaches the master only.
    set.servers[1].pause().expect("pause the replica");
    let unconfirmed = {
        let queue = queue.clone();
        tokio::spawn(async move { queue.enqueue("probe", &run("unconfirmed"), None).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    set.servers[0].kill();
    set.servers[1].resume().expect("resume the replica");
    let new = set.wait_for_new_master(0).await.expect("a new master");
    assert_eq!(new, 1);

    let after = dump(set.servers[1].port, &prefix).await;
    for (key, content) in &before {
        if key.ends_with(":seq") {
            continue;
        }
        let kept = after.get(key).expect(key);
        if key.contains(":message:") {
            assert_eq!(kept, content, "{key} after the kill");
        } else {
            // The queues, and the set of queue names, may also hold the
            // unconfirmed write.
            for item in content {
                assert!(kept.contains(item), "{item} of {key} after the kill");
            }
        }
    }
    // The new master has no replica to confirm the write: it was never
    // acknowledged, whether or not it survived.
    // Nor does the queue answer a ping, the API's check before it stores a
    // job.
    let (answer, ping) = tokio::join!(unconfirmed, queue.ping());
    let err = answer
        .expect("task")
        .expect_err("a write no replica confirmed is not acknowledged");
    assert!(err.to_string().contains("replica"), "{err}");
    let err = ping.expect_err("no ping while writes cannot be acknowledged");
    assert!(err.to_string().contains("replica"), "{err}");

    // The old master comes back as a replica; writes go through again.
    set.servers[0].restart().await.expect("restart");
    let new_port = set.servers[1].port.to_string();
    set.servers[0]
        .cli(&["replicaof", "127.0.0.1", &new_port])
        .expect("REPLICAOF");
    set.wait_for_replicas(1, 1).await.expect("in sync");
    still_works(&queue, &a, &b).await;
}

/// On a Cluster every key of one fastlane carries its prefix as a hash
/// tag, so they all live on one node; a plain server keeps the plain names
/// it always had.
#[tokio::test]
async fn cluster_keys_share_a_hash_tag_and_plain_keys_keep_their_names() {
    let cluster = started(Cluster::start(3)).await;
    let prefix = prefix();
    let queue = queue_at(&cluster.url(), &prefix).await;
    let (a, _b) = fill(&queue).await;
    queue.ack(&a).await.expect("ack");
    let per_node = cluster
        .keys_per_node(&format!("{{{prefix}}}:*"))
        .expect("KEYS");
    // 2 queues + 6 messages (a is gone, n is one) + seq + queues.
    assert_eq!(per_node.iter().sum::<usize>(), 10, "{per_node:?}");
    assert_eq!(
        per_node.iter().filter(|n| **n > 0).count(),
        1,
        "one node holds them all: {per_node:?}"
    );

    let plain = fresh().await;
    plain.enqueue(JOBS, &run("x"), None).await.expect("enqueue");
    let mut c = plain.connection.clone();
    for key in ["queue:jobs", "message:x", "seq", "queues"] {
        let exists: bool = c
            .exists(format!("{}:{key}", plain.prefix))
            .await
            .expect("EXISTS");
        assert!(exists, "{}:{key}", plain.prefix);
    }
    assert!(!plain.prefix.contains('{'));
}
