//! An operator's logs: with `LOG_FORMAT=json` every line is a JSON object;
//! a request's lines carry the id the client sent (or one made for it, sent
//! back in `X-Request-Id`), an access line sums each request up, and the
//! worker's lines about an execution carry its execution, job and task ids.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use fastlane_tests::{Server, image};

/// The server's log lines, each parsed as JSON (failing on one that is not).
fn json_lines(server: &Server) -> anyhow::Result<Vec<Value>> {
    server
        .log()
        .lines()
        .map(|line| {
            serde_json::from_str(line).with_context(|| format!("a log line is not JSON: {line:?}"))
        })
        .collect()
}

#[tokio::test]
async fn json_logs_follow_a_request_and_its_execution_by_their_ids() -> anyhow::Result<()> {
    let server = Server::start(&[("LOG_FORMAT", "json")]).await?;
    let response = server
        .client()
        .post(server.url("/tasks/observed"))
        .header("X-Request-Id", "req-7f3a")
        .json(&json!({"image": image(), "command": "echo observed"}))
        .send()
        .await?;
    assert_eq!(response.headers()["x-request-id"], "req-7f3a");
    let created: Value = response.json().await?;
    let execution_url = created["executionUrl"].as_str().context("executionUrl")?;
    let execution_id = created["executionId"].as_str().context("executionId")?;
    let job_id = created["jobId"].as_str().context("jobId")?;
    let finished = server
        .wait_finished(execution_url, Duration::from_secs(60))
        .await?;
    assert_eq!(finished["status"], "done");

    // A request without an id gets one, and a hostile one is replaced.
    let too_long = "x".repeat(200);
    for sent in [None, Some("two words"), Some(too_long.as_str())] {
        let mut request = server.client().get(server.url("/status"));
        if let Some(sent) = sent {
            request = request.header("X-Request-Id", sent);
        }
        let answered = request.send().await?;
        let id = answered.headers()["x-request-id"].to_str()?;
        assert!(uuid::Uuid::parse_str(id).is_ok(), "a made id: {id}");
    }

    let lines = json_lines(&server)?;
    let in_request = |line: &&Value| line["span"]["request_id"] == "req-7f3a";
    let submitted = lines
        .iter()
        .filter(in_request)
        .find(|l| l["message"] == "job submitted")
        .context("no `job submitted` line under the request's id")?;
    assert_eq!(submitted["job"], job_id);
    assert_eq!(submitted["task"], "observed");
    for field in ["timestamp", "level", "target"] {
        assert!(submitted[field].is_string(), "{field} in {submitted}");
    }

    let access = lines
        .iter()
        .filter(in_request)
        .find(|l| l["target"] == "fastlane_server::access")
        .context("no access line for the request")?;
    assert_eq!(access["status"], 200);
    assert_eq!(access["span"]["method"], "POST");
    assert_eq!(access["span"]["route"], "/tasks/{taskId}");
    assert!(access["latency_ms"].as_f64().is_some(), "{access}");
    assert!(access["bytes"].as_u64().is_some_and(|b| b > 0), "{access}");

    let execution_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["execution"] == execution_id)
        .collect();
    assert!(
        execution_lines
            .iter()
            .any(|l| l["message"] == "finished" && l["span"]["job"] == job_id),
        "the worker's lines carry the execution's ids: {execution_lines:?}"
    );
    assert!(
        execution_lines
            .iter()
            .all(|l| l["span"]["task"] == "observed"),
        "{execution_lines:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unknown_log_format_is_refused_at_start() -> anyhow::Result<()> {
    let output = std::process::Command::new(fastlane_tests::binary())
        .args(["standalone", "-p", "0"])
        .env("LOG_FORMAT", "yaml")
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("LOG_FORMAT is text or json"), "{stderr}");
    Ok(())
}
