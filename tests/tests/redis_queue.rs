//! fastlane with its queue in Redis: jobs run through it, and a Redis that
//! goes away and comes back loses nothing the API acknowledged; while it
//! is away, submissions get a 503 with a JSON error and nothing is written.

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
async fn a_redis_restart_loses_nothing_acknowledged_and_meanwhile_the_api_says_503()
-> anyhow::Result<()> {
    let mut redis = RedisServer::start().await?;
    let server = Server::start(&[("REDIS_URL", &redis.url()), ("WORKER_CONCURRENCY", "2")]).await?;
    let mut acknowledged = Vec::new();
    for i in 0..4 {
        let job = json!({"image": image(), "command": format!("sh -c 'sleep 1; echo {i}'")});
        acknowledged.push(server.submit("redis-restart", job).await?);
    }

    redis.kill();
    let (status, body) = server
        .post_raw(
            "redis-restart",
            json!({"image": image(), "command": "echo refused"}).to_string(),
        )
        .await?;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("queue")),
        "{body}"
    );
    let (status, health) = server.get("/healthcheck").await?;
    assert_eq!((status, &health["queue"]), (500, &json!(false)));
    // Nothing was written for the refused job.
    let (_, task) = server.get("/tasks/redis-restart").await?;
    assert_eq!(task["jobs"].as_array().map(Vec::len), Some(4), "{task}");

    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart().await?;
    acknowledged.push(
        server
            .submit(
                "redis-restart",
                json!({"image": image(), "command": "echo 4"}),
            )
            .await?,
    );
    for (i, created) in acknowledged.iter().enumerate() {
        let execution = server.wait_finished(url(created)?, LIMIT).await?;
        assert_eq!(execution["status"], "done", "{execution}");
        assert_eq!(execution["log"], format!("{i}\n"));
    }
    Ok(())
}
