//! fastlane on networked backends, PostgreSQL (`STORE_URL`) and Redis
//! (`REDIS_URL`): a server that dies mid-run leaves nothing behind that
//! another server sharing them cannot finish. The execution is adopted,
//! not run again.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use fastlane_tests::redis::RedisServer;
use fastlane_tests::{Server, image};

const LIMIT: Duration = Duration::from_secs(90);

/// How many containers (running or not) the engine has for `execution`.
async fn containers_of(execution: &str) -> anyhow::Result<usize> {
    let tcp =
        std::env::var("FASTLANE_TEST_DOCKER_TCP").unwrap_or_else(|_| "127.0.0.1:23750".to_owned());
    let filters = json!({"label": [format!("fastlane.execution={execution}")]});
    let mut url = reqwest::Url::parse(&format!("http://{tcp}/v1.41/containers/json"))?;
    url.query_pairs_mut()
        .append_pair("all", "true")
        .append_pair("filters", &filters.to_string());
    let containers: Vec<Value> = reqwest::get(url).await?.error_for_status()?.json().await?;
    Ok(containers.len())
}

#[tokio::test]
async fn a_server_that_dies_mid_run_has_its_execution_adopted_by_another() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let store = fastlane_tests::postgres::fresh_store_url()?;
    let env = [
        ("STORE_URL", store.as_str()),
        ("REDIS_URL", &redis.url()),
        ("QUEUE_LEASE_SECONDS", "5"),
    ];
    let mut first = Server::start(&env).await?;
    let created = first
        .submit(
            "networked",
            json!({"image": image(), "command": "sh -c 'echo started; sleep 4; echo finished'"}),
        )
        .await?;
    let execution_id = created["executionId"].as_str().context("executionId")?;
    let path = created["executionUrl"]
        .as_str()
        .and_then(|url| url.find("/tasks/").map(|at| url[at..].to_owned()))
        .context("executionUrl")?;
    first
        .wait_for(&first.url(&path), LIMIT, |e| e["status"] == "running")
        .await?;
    first.kill();

    // Another server on the same store and queue (and its own data
    // directory) takes the message once the dead one's lease lapses.
    let second = Server::start(&env).await?;
    let execution = second.wait_finished(&second.url(&path), LIMIT).await?;
    assert_eq!(execution["status"], "done", "{execution}");
    assert_eq!(execution["log"], "started\nfinished\n");
    assert_eq!(execution["executionId"], execution_id);
    assert_eq!(
        containers_of(execution_id).await?,
        1,
        "the run was adopted, not started again"
    );
    Ok(())
}
