//! Operators take Docker hosts out of rotation and put them back: a
//! blacklisted host gets no new work, a farm with every host blacklisted
//! makes jobs wait (not fail), and bad requests are 400s naming the problem.

use std::time::Duration;

use fastlane_tests::{Server, image};
use serde_json::{Value, json};

fn unix_host() -> String {
    std::env::var("FASTLANE_TEST_DOCKER_UNIX")
        .unwrap_or_else(|_| "unix:///run/fastlane/podman.sock".to_owned())
}

fn tcp_host() -> String {
    std::env::var("FASTLANE_TEST_DOCKER_TCP").unwrap_or_else(|_| "127.0.0.1:23750".to_owned())
}

async fn blacklist(
    server: &Server,
    method: reqwest::Method,
    body: &str,
) -> anyhow::Result<(u16, Value)> {
    let response = server
        .client()
        .request(method, server.url("/docker-executor/blacklist"))
        .body(body.to_owned())
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test]
async fn a_blacklisted_host_gets_no_new_work_and_a_fully_blacklisted_farm_waits()
-> anyhow::Result<()> {
    let hosts = json!([{"match": "", "hosts": [unix_host(), tcp_host()]}]).to_string();
    let server = Server::start(&[("DOCKER_HOSTS", &hosts)]).await?;

    let (status, error) = blacklist(&server, reqwest::Method::POST, "{}").await?;
    assert_eq!(status, 400);
    assert!(
        error["error"]
            .as_str()
            .unwrap_or_default()
            .contains("'host' attribute was not found")
    );
    let (status, error) =
        blacklist(&server, reqwest::Method::POST, r#"{"host": "example.com"}"#).await?;
    assert_eq!(status, 400, "{error}");
    let (status, _) = blacklist(
        &server,
        reqwest::Method::PUT,
        r#"{"host": "localhost:2375"}"#,
    )
    .await?;
    assert_eq!(status, 200, "single-label host names are fine");
    blacklist(
        &server,
        reqwest::Method::DELETE,
        r#"{"host": "localhost:2375"}"#,
    )
    .await?;

    let unix = json!({"host": unix_host()}).to_string();
    let (status, list) = blacklist(&server, reqwest::Method::POST, &unix).await?;
    assert_eq!(status, 200);
    assert_eq!(list["blacklisted"], json!([unix_host()]));
    let mut urls = Vec::new();
    for i in 0..4 {
        let created = server
            .submit(
                "blacklist",
                json!({"image": image(), "command": format!("echo {i}")}),
            )
            .await?;
        urls.push(
            created["executionUrl"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    for url in &urls {
        let execution = server.wait_finished(url, Duration::from_secs(60)).await?;
        assert_eq!(execution["status"], "done");
        assert_eq!(
            execution["metadata"]["docker_host"],
            tcp_host(),
            "{execution}"
        );
    }
    let (_, status) = server.get("/status").await?;
    let unix_status = status["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["host"] == unix_host()).cloned())
        .expect("the unix host is listed");
    assert_eq!(unix_status["blacklisted"], true);
    assert_eq!(unix_status["available"], false);

    // Every host out: a new job waits instead of failing...
    blacklist(
        &server,
        reqwest::Method::POST,
        &json!({"host": tcp_host()}).to_string(),
    )
    .await?;
    let waiting = server
        .submit(
            "blacklist",
            json!({"image": image(), "command": "echo waited"}),
        )
        .await?;
    let url = waiting["executionUrl"].as_str().unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, execution) = server.get(url).await?;
    assert_eq!(execution["execution"]["status"], "enqueued", "{execution}");
    // ...and runs once a host is back.
    blacklist(
        &server,
        reqwest::Method::DELETE,
        &json!({"host": tcp_host()}).to_string(),
    )
    .await?;
    let execution = server.wait_finished(url, Duration::from_secs(60)).await?;
    assert_eq!(execution["log"], "waited\n");
    Ok(())
}
