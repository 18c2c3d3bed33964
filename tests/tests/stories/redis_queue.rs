//! fastlane with its queue in Redis: jobs run through it, and a Redis that
//! goes away and comes back loses nothing the API acknowledged; while it
//! is away, submissions are still accepted (the store keeps their queue
//! messages in its outbox) and run once, when it is back.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use fastlane_tests::receiver::Receiver;
use fastlane_tests::redis::RedisServer;
use fastlane_tests::{Server, image};

const LIMIT: Duration = Duration::from_secs(90);

fn url(created: &Value) -> anyhow::Result<&str> {
    created["executionUrl"].as_str().context("executionUrl")
}

#[tokio::test]
async fn jobs_run_through_a_redis_queue() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let server = Server::start(&[("REDIS_URL", &redis.url())]).await?;

    let created = server
        .submit(
            "on-redis",
            json!({"image": image(), "command": "echo via redis"}),
        )
        .await?;
    let execution = server.wait_finished(url(&created)?, LIMIT).await?;
    assert_eq!(execution["status"], "done");
    assert_eq!(execution["log"], "via redis\n");

    let (status, health) = server.get("/healthcheck").await?;
    assert_eq!((status, &health["queue"]), (200, &json!(true)));
    Ok(())
}

#[tokio::test]
async fn a_redis_outage_loses_nothing_and_jobs_submitted_during_it_run_once_it_is_back()
-> anyhow::Result<()> {
    let mut redis = RedisServer::start().await?;
    let server = Server::start(&[("REDIS_URL", &redis.url()), ("WORKER_CONCURRENCY", "2")]).await?;
    let mut acknowledged = Vec::new();
    for i in 0..4 {
        let job = json!({"image": image(), "command": format!("sh -c 'sleep 1; echo {i}'")});
        acknowledged.push(server.submit("redis-restart", job).await?);
    }

    redis.kill();
    let during = json!({"image": image(), "command": "echo 4"});
    acknowledged.push(server.submit("redis-restart", during).await?);
    let (status, health) = server.get("/healthcheck").await?;
    assert_eq!((status, &health["queue"]), (500, &json!(false)));

    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart().await?;
    acknowledged.push(
        server
            .submit(
                "redis-restart",
                json!({"image": image(), "command": "echo 5"}),
            )
            .await?,
    );
    for (i, created) in acknowledged.iter().enumerate() {
        let execution = server.wait_finished(url(created)?, LIMIT).await?;
        assert_eq!(execution["status"], "done", "{execution}");
        assert_eq!(execution["log"], format!("{i}\n"));
    }
    // Each job ran once: one execution each, and six jobs in all.
    let (_, task) = server.get("/tasks/redis-restart").await?;
    let jobs = task["jobs"].as_array().context("jobs")?;
    assert_eq!(jobs.len(), 6, "{task}");
    for created in &acknowledged {
        let job_url = created["jobUrl"].as_str().context("jobUrl")?;
        let (_, job) = server.get(job_url).await?;
        let executions = job["job"]["executions"].as_array().context("executions")?;
        assert_eq!(executions.len(), 1, "{job}");
    }
    Ok(())
}

/// A cron job keeps firing after Redis loses every message (`FLUSHALL`, as a
/// restart without persistence or a failover to an empty replica would):
/// the monitor sees the queue's epoch change and queues the schedule's next
/// firing again from the store. No slot fires twice.
#[tokio::test]
async fn a_cron_schedule_survives_a_redis_flushall() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let server = Server::start(&[("REDIS_URL", &redis.url())]).await?;
    let created = server
        .submit(
            "flushed",
            json!({"image": image(), "command": "echo tick", "cron": "*/2 * * * * *"}),
        )
        .await?;
    let job_url = created["jobUrl"].as_str().context("jobUrl")?;
    let fired = |job: &Value| job["job"]["executions"].as_array().map_or(0, Vec::len);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fired(&server.get(job_url).await?.1) < 2 {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never fired twice");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    redis.cli(&["FLUSHALL"])?;
    let before = fired(&server.get(job_url).await?.1);
    let flushed = tokio::time::Instant::now();
    loop {
        let (_, job) = server.get(job_url).await?;
        if fired(&job) >= before + 2 {
            break;
        }
        anyhow::ensure!(
            flushed.elapsed() < Duration::from_secs(10),
            "the schedule stopped with the queue's data: {job}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stop = server
        .client()
        .post(format!("{job_url}stop"))
        .send()
        .await?;
    assert_eq!(stop.status(), 200);

    let (_, job) = server.get(job_url).await?;
    let mut slots: Vec<chrono::DateTime<chrono::Utc>> = job["job"]["executions"]
        .as_array()
        .context("executions")?
        .iter()
        .filter_map(|e| e["scheduledAt"].as_str()?.parse().ok())
        .collect();
    slots.sort();
    for pair in slots.windows(2) {
        let gap = (pair[1] - pair[0]).num_milliseconds();
        // Each run names the slot it fired for; slots are 2 s apart, and
        // the same slot fired twice would show twice.
        assert!(gap >= 2000, "two firings for slots {gap} ms apart: {job}");
    }
    assert!(
        server.log().contains("the queue lost its messages"),
        "{}",
        server.log()
    );
    Ok(())
}

/// A webhook that failed waits in the queue for its next try (a minute of
/// back-off); Redis loses every message meanwhile. The store still owes the
/// delivery, so the monitor queues it again: the hook gets its second try,
/// once, long before the back-off would have ended.
#[tokio::test]
async fn a_webhook_waiting_for_its_next_try_survives_a_redis_flushall() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let receiver = Receiver::start(vec![500, 200]).await?;
    let server = Server::start(&[
        ("REDIS_URL", &redis.url()),
        ("WEBHOOKS_ALLOW_LOCAL_NETWORK", "true"),
        ("WEBHOOKS_EXPONENTIAL_BACKOFF_MIN_MS", "60000"),
    ])
    .await?;
    let hook = json!({"url": format!("{}/finishes", receiver.url), "retries": 3});
    let created = server
        .submit(
            "flushed-hook",
            json!({"image": image(), "command": "echo hooked", "webhooks": {"finishes": [hook]}}),
        )
        .await?;
    server.wait_finished(url(&created)?, LIMIT).await?;
    wait_received(&receiver, 1, LIMIT).await?;

    redis.cli(&["FLUSHALL"])?;
    wait_received(&receiver, 2, Duration::from_secs(20)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // nothing more may come
    let paths: Vec<_> = receiver.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/finishes", "/finishes"], "tried twice, no more");
    let (_, execution) = server.get(url(&created)?).await?;
    let dispatch = execution["execution"]["metadata"]["webhookDispatch"]
        .as_array()
        .context("webhookDispatch")?;
    let codes: Vec<&Value> = dispatch.iter().map(|d| &d["statusCode"]).collect();
    assert_eq!(codes, [&json!(500), &json!(200)], "{execution}");
    Ok(())
}

async fn wait_received(receiver: &Receiver, count: usize, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    while receiver.received().len() < count {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} requests received",
            receiver.received().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
