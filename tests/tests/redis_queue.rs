//! fastlane with its queue in Redis: jobs run through it, and a Redis that
//! goes away and comes back loses nothing the API acknowledged; while it
//! is away, submissions are still accepted (the store keeps their queue
//! messages in its outbox) and run once, when it is back.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

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
