//! An operator's logs: with `LOG_FORMAT=json` every line is a JSON object;
//! a request's lines carry the id the client sent (or one made for it, sent
//! back in `X-Request-Id`), an access line sums each request up, and the
//! worker's lines about an execution carry its execution, job and task ids.
//! With an OTLP endpoint set, a submission and its execution are exported
//! as one trace.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use fastlane_tests::receiver::Receiver;
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

/// The spans an OTLP/HTTP JSON export holds: `(service, span)` pairs.
fn exported_spans(receiver: &Receiver) -> Vec<(Value, Value)> {
    let mut spans = Vec::new();
    for request in receiver.received() {
        if request.path != "/v1/traces" {
            continue;
        }
        let body = request.json();
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].clone())
                .unwrap_or(Value::Null);
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    spans.push((service.clone(), span.clone()));
                }
            }
        }
    }
    spans
}

/// The string value of a span's attribute.
fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]["stringValue"]
        .as_str()
}

#[tokio::test]
async fn a_submission_and_its_execution_are_one_exported_trace() -> anyhow::Result<()> {
    // A loopback OTLP/HTTP receiver; the server exports to it as JSON (the
    // default protocol is protobuf, which a collector reads the same way).
    let collector = Receiver::start(vec![200]).await?;
    let server = Server::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_SERVICE_NAME", "fastlane-story"),
    ])
    .await?;
    let created = server
        .submit(
            "traced",
            json!({"image": image(), "command": "echo traced"}),
        )
        .await?;
    let execution_url = created["executionUrl"].as_str().context("executionUrl")?;
    let execution_id = created["executionId"].as_str().context("executionId")?;
    server
        .wait_finished(execution_url, Duration::from_secs(60))
        .await?;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (request, execution) = loop {
        let spans = exported_spans(&collector);
        let execution = spans
            .iter()
            .find(|(_, s)| {
                s["name"] == "execution" && attribute(s, "execution") == Some(execution_id)
            })
            .cloned();
        let request = execution.as_ref().and_then(|(_, e)| {
            spans
                .iter()
                .find(|(_, s)| s["name"] == "request" && s["traceId"] == e["traceId"])
                .cloned()
        });
        if let (Some(request), Some(execution)) = (request, execution) {
            break (request, execution);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no request and execution spans of one trace; exported: {spans:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(request.0, "fastlane-story");
    assert_eq!(attribute(&request.1, "route"), Some("/tasks/{taskId}"));
    assert_eq!(
        execution.1["parentSpanId"], request.1["spanId"],
        "the execution is a child of the submission's span, across the queue"
    );
    assert_eq!(attribute(&execution.1, "task"), Some("traced"));
    Ok(())
}
