//! fastlane with its queue on the Redis topologies operators run: a master
//! behind Sentinels that fails over while jobs run and arrive, a Redis
//! Cluster, a server that speaks only TLS, and Sentinel and Cluster set-ups
//! that speak only TLS and let in only an ACL user
//! (`rediss+sentinel://`, `rediss+cluster://`).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use fastlane_tests::engine::Certificates;
use fastlane_tests::redis::{RedisServer, Secure};
use fastlane_tests::redis_topologies::{Cluster, SentinelSet};
use fastlane_tests::{Server, image};

const LIMIT: Duration = Duration::from_secs(90);

fn url(created: &Value) -> anyhow::Result<&str> {
    created["executionUrl"].as_str().context("executionUrl")
}

/// Jobs are running and more arrive while an operator fails the master
/// over: every submission gets a 200 or a 503 with a JSON error, in
/// seconds, and every job acknowledged with a 200 runs to its end.
#[tokio::test]
async fn jobs_survive_a_sentinel_failover_while_they_run_and_arrive() -> anyhow::Result<()> {
    let set = SentinelSet::start(1).await?;
    let server = Server::start(&[
        ("REDIS_URL", &set.url()),
        ("WORKER_CONCURRENCY", "4"),
        ("QUEUE_LEASE_SECONDS", "5"),
    ])
    .await?;
    let mut acknowledged = Vec::new();
    for i in 0..4 {
        let job = json!({"image": image(), "command": format!("sh -c 'sleep 2; echo {i}'")});
        acknowledged.push((i, server.submit("failover", job).await?));
    }

    let submissions = async {
        let mut refused = 0;
        for i in 4..20 {
            let job = json!({"image": image(), "command": format!("echo {i}")});
            let started = Instant::now();
            let posted = tokio::time::timeout(
                Duration::from_secs(30),
                server.post_raw("failover", job.to_string()),
            )
            .await
            .with_context(|| format!("submission {i} hung"))??;
            match posted {
                (200, created) => acknowledged.push((i, created)),
                (503, body) if body["error"].is_string() => refused += 1,
                (status, body) => bail!("submission {i} answered {status}: {body}"),
            }
            assert!(started.elapsed() < Duration::from_secs(25));
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        Ok(refused)
    };
    let failover = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        set.failover().await
    };
    let (refused, new_master) = tokio::join!(submissions, failover);
    let (refused, new_master) = (refused?, new_master?);
    assert_ne!(new_master, 0, "the master changed");
    eprintln!(
        "{} submissions acknowledged, {refused} refused with a 503",
        acknowledged.len()
    );
    assert!(acknowledged.len() >= 10, "{refused} of 16 refused");

    for (i, created) in &acknowledged {
        let execution = server.wait_finished(url(created)?, LIMIT).await?;
        assert_eq!(execution["status"], "done", "job {i}: {execution}");
        assert_eq!(execution["log"], format!("{i}\n"), "job {i}");
    }
    let (status, health) = server.get("/healthcheck").await?;
    assert_eq!((status, &health["queue"]), (200, &json!(true)));
    let log = server.log();
    assert!(
        log.contains("lost the master"),
        "the server saw the failover:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn jobs_run_through_a_redis_cluster_queue() -> anyhow::Result<()> {
    let cluster = Cluster::start(3).await?;
    let server = Server::start(&[
        ("REDIS_URL", &cluster.url()),
        ("REDIS_KEY_PREFIX", "on-cluster"),
    ])
    .await?;
    let created = server
        .submit(
            "on-cluster",
            json!({"image": image(), "command": "echo via the cluster"}),
        )
        .await?;
    let execution = server.wait_finished(url(&created)?, LIMIT).await?;
    assert_eq!(execution["status"], "done");
    assert_eq!(execution["log"], "via the cluster\n");
    let per_node = cluster.keys_per_node("{on-cluster}:*")?;
    assert_eq!(
        per_node.iter().filter(|n| **n > 0).count(),
        1,
        "{per_node:?}"
    );
    Ok(())
}

/// `rediss://`: the server's certificate is checked against the CA named by
/// `SSL_CERT_FILE`; with a CA that did not sign it, fastlane refuses to
/// start and says why.
#[tokio::test]
async fn a_tls_redis_is_used_only_with_a_certificate_fastlane_trusts() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("fastlane-redis-tls-{}", uuid::Uuid::new_v4()));
    let certs = Certificates::generate(&dir)?;
    let redis = RedisServer::start_tls(&certs).await?;
    let redis_url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let ca = certs.ca.display().to_string();
    let server = Server::start(&[("REDIS_URL", &redis_url), ("SSL_CERT_FILE", &ca)]).await?;
    let created = server
        .submit(
            "over-tls",
            json!({"image": image(), "command": "echo over tls"}),
        )
        .await?;
    let execution = server.wait_finished(url(&created)?, LIMIT).await?;
    assert_eq!(
        (&execution["status"], &execution["log"]),
        (&json!("done"), &json!("over tls\n"))
    );

    let other = certs.other_ca.display().to_string();
    let refused = Server::start(&[("REDIS_URL", &redis_url), ("SSL_CERT_FILE", &other)]).await;
    let err = format!("{:#}", refused.expect_err("an untrusted certificate"));
    assert!(err.contains("connecting to the queue"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Runs one job through `server` and checks it ends `done` with `text`.
async fn runs_a_job(server: &Server, text: &str) -> anyhow::Result<()> {
    let created = server
        .submit(
            "secured",
            json!({"image": image(), "command": format!("echo {text}")}),
        )
        .await?;
    let execution = server.wait_finished(url(&created)?, LIMIT).await?;
    assert_eq!(
        (&execution["status"], &execution["log"]),
        (&json!("done"), &json!(format!("{text}\n"))),
        "{execution}"
    );
    Ok(())
}

/// Starting fastlane on `redis_url` fails; the error, for the test's
/// assertions.
async fn refused(redis_url: &str, ca: &str) -> String {
    let started = tokio::time::timeout(Duration::from_secs(60), async {
        Server::start(&[("REDIS_URL", redis_url), ("SSL_CERT_FILE", ca)]).await
    })
    .await
    .unwrap_or_else(|_| panic!("fastlane neither started nor failed on {redis_url}"));
    let err = format!("{:#}", started.expect_err(redis_url));
    assert!(err.contains("connecting to the queue"), "{err}");
    assert!(
        !err.contains("wrong-secret"),
        "the password is shown: {err}"
    );
    err
}

/// `rediss+sentinel://` with an ACL user: the Sentinels, the master and,
/// after an operator's failover, the new master are all reached over TLS
/// (the CA from `SSL_CERT_FILE`) and logged in to; jobs run before and
/// after the failover. A wrong data password, or no password for the
/// Sentinels, stops fastlane at start with the server's refusal; so does
/// plain `redis+sentinel://` to the same ports (they speak only TLS).
#[tokio::test]
async fn jobs_run_through_sentinels_over_tls_with_an_acl_user_across_a_failover()
-> anyhow::Result<()> {
    let set = SentinelSet::start_secured(1, Some(Secure::generate()?)).await?;
    let ca = set
        .secure
        .as_ref()
        .context("secured")?
        .certs
        .ca
        .display()
        .to_string();
    let redis_url = set.url();
    assert!(redis_url.starts_with("rediss+sentinel://fastlane:secret@"));
    let server = Server::start(&[("REDIS_URL", &redis_url), ("SSL_CERT_FILE", &ca)]).await?;
    runs_a_job(&server, "before the failover").await?;
    let new_master = set.failover().await?;
    assert_ne!(new_master, 0, "the master changed");
    runs_a_job(&server, "after the failover").await?;
    let (status, health) = server.get("/healthcheck").await?;
    assert_eq!((status, &health["queue"]), (200, &json!(true)));
    let log = server.log();
    assert!(log.contains("lost the master"), "no failover seen:\n{log}");
    assert!(!log.contains("secret"), "a password in the log:\n{log}");

    let service = SentinelSet::SERVICE;
    let hosts = set.hosts();
    let sentinels = "sentinel_username=fastlane&sentinel_password=secret";
    let err = refused(
        &format!("rediss+sentinel://fastlane:wrong-secret@{hosts}/{service}/0?{sentinels}"),
        &ca,
    )
    .await;
    assert!(err.contains("authentication failed"), "{err}");
    let err = refused(
        &format!("rediss+sentinel://fastlane:secret@{hosts}/{service}/0"),
        &ca,
    )
    .await;
    assert!(err.contains("NOAUTH"), "{err}");
    let err = refused(
        &format!("redis+sentinel://fastlane:secret@{hosts}/{service}/0?{sentinels}"),
        &ca,
    )
    .await;
    assert!(!err.contains("NOAUTH"), "a plain connection got in: {err}");
    assert!(
        !err.contains("authentication"),
        "a plain connection got in: {err}"
    );
    Ok(())
}

/// `rediss+cluster://` with an ACL user: jobs run, every node (those
/// listed and those the cluster names) reached over TLS and logged in to.
/// A wrong password is refused, and plain `redis+cluster://` to the same
/// ports does not connect at all: they speak only TLS.
#[tokio::test]
async fn jobs_run_through_a_cluster_over_tls_with_an_acl_user() -> anyhow::Result<()> {
    let cluster = Cluster::start_secured(3, Some(Secure::generate()?)).await?;
    let ca = cluster
        .secure
        .as_ref()
        .context("secured")?
        .certs
        .ca
        .display()
        .to_string();
    // Only a node that does not hold the queue's keys is listed: the one
    // that does is found through it (CLUSTER SLOTS), and must be reached
    // over TLS and logged in to as well.
    let holder = cluster.node_serving("on-tls-cluster")?;
    let listed = cluster.nodes[(holder + 1) % cluster.nodes.len()].port;
    let redis_url = format!("rediss+cluster://fastlane:secret@127.0.0.1:{listed}");
    let server = Server::start(&[
        ("REDIS_URL", &redis_url),
        ("SSL_CERT_FILE", &ca),
        ("REDIS_KEY_PREFIX", "on-tls-cluster"),
    ])
    .await?;
    for i in 0..3 {
        runs_a_job(&server, &format!("job {i} via the cluster over tls")).await?;
    }
    let per_node = cluster.keys_per_node("{on-tls-cluster}:*")?;
    assert!(per_node[holder] > 0, "{per_node:?}");
    assert_eq!(
        per_node.iter().sum::<usize>(),
        per_node[holder],
        "{per_node:?}"
    );
    let (status, health) = server.get("/healthcheck").await?;
    assert_eq!((status, &health["queue"]), (200, &json!(true)));

    let hosts = cluster.hosts();
    let err = refused(
        &format!("rediss+cluster://fastlane:wrong-secret@{hosts}"),
        &ca,
    )
    .await;
    assert!(err.contains("authentication failed"), "{err}");
    let err = refused(&format!("redis+cluster://fastlane:secret@{hosts}"), &ca).await;
    assert!(err.contains("initial connections"), "{err}");
    assert!(
        !err.contains("authentication"),
        "a plain connection got in: {err}"
    );
    let err = refused(&cluster.url(), &certs_elsewhere(&cluster)?).await;
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    Ok(())
}

/// The CA that signed nothing here: trusting only it, fastlane must refuse
/// the nodes' certificates.
fn certs_elsewhere(cluster: &Cluster) -> anyhow::Result<String> {
    Ok(cluster
        .secure
        .as_ref()
        .context("secured")?
        .certs
        .other_ca
        .display()
        .to_string())
}
