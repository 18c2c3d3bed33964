//! Failures reach Sentry: with `SENTRY_DSN` pointing at a real HTTP receiver
//! on loopback, a failed execution arrives as an envelope tagged with the
//! operation and the task, job and execution ids, and no env values.

use std::time::{Duration, Instant};

use fastlane_tests::Server;
use fastlane_tests::receiver::Receiver;
use serde_json::json;

#[tokio::test]
async fn a_failure_arrives_as_a_sentry_event_with_its_context() -> anyhow::Result<()> {
    let receiver = Receiver::start(vec![200]).await?;
    let dsn = format!("{}/42", receiver.url.replace("http://", "http://public@"));
    let server = Server::start(&[("SENTRY_DSN", &dsn)]).await?;
    let created = server
        .submit(
            "sentry",
            json!({"image": "fastlane-test/missing:1", "command": "true", "envs": {"DB_PASSWORD": "hunter2"}}),
        )
        .await?;
    let execution = server
        .wait_finished(
            created["executionUrl"].as_str().expect("url"),
            Duration::from_secs(60),
        )
        .await?;
    assert_eq!(execution["status"], "failed");

    let deadline = Instant::now() + Duration::from_secs(30);
    let envelope = loop {
        let found = receiver
            .received()
            .into_iter()
            .find(|r| r.path.starts_with("/api/42/envelope"));
        if let Some(envelope) = found {
            break envelope;
        }
        assert!(Instant::now() < deadline, "no envelope arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(envelope.method, "POST");
    let auth = envelope.header("x-sentry-auth").unwrap_or_default();
    assert!(auth.contains("sentry_key=public"), "{auth}");
    let body = String::from_utf8_lossy(&envelope.body);
    let event = body
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|item| item.get("tags").is_some())
        .expect("an event item");
    let tags = &event["tags"];
    assert_eq!(tags["operation"], "running");
    assert_eq!(tags["execution_id"], created["executionId"]);
    assert_eq!(tags["job_id"], created["jobId"]);
    assert_eq!(tags["task_id"], "sentry");
    assert!(
        event["message"]
            .to_string()
            .contains("fastlane-test/missing:1"),
        "{event}"
    );
    assert!(!body.contains("hunter2"));
    Ok(())
}
