//! Bad input gets a 400 (or 413) JSON error that names the problem, and
//! leaves nothing behind: no task, no job, nothing queued.

use fastlane_tests::{Server, image};
use serde_json::json;

#[tokio::test]
async fn every_invalid_submission_is_a_400_that_creates_nothing() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let ok = || json!({"image": image(), "command": "echo hi"});
    let with = |field: &str, value: serde_json::Value| {
        let mut body = ok();
        body[field] = value;
        body.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "JSON body could not be parsed"),
        ("{not json".to_owned(), "JSON body could not be parsed"),
        ("[1, 2]".to_owned(), "must be a JSON object"),
        (
            "{}".to_owned(),
            "image and command must be filled in the request.",
        ),
        (
            json!({"image": image()}).to_string(),
            "image and command must be filled",
        ),
        (
            json!({"image": 42, "command": "x"}).to_string(),
            "image must be a string",
        ),
        (with("command", json!("")), "command must not be empty"),
        (
            with("command", json!("echo 'unclosed")),
            "command cannot be split",
        ),
        (
            with("timeout", json!("abc")),
            "timeout must be a positive number",
        ),
        (with("retries", json!(-3)), "retries must be"),
        (with("envs", json!(["A=1"])), "envs must be a JSON object"),
        (with("envs", json!({"A": {"nested": true}})), "envs.A"),
        (
            with("metadata", json!("qwe")),
            "metadata must be a JSON object",
        ),
        (with("expiration", json!("soon")), "expiration must be"),
        (
            with("notify", json!({"fails": ["not-an-address"]})),
            "notify.fails",
        ),
        (
            with("webhooks", json!({"succeeds": [{"url": "nope"}]})),
            "webhooks.succeeds[0].url",
        ),
        (
            with("additionalDNSEntries", json!({"db": "x.y"})),
            "additionalDNSEntries.db",
        ),
        (with("comand", json!("typo")), "unknown field \"comand\""),
    ];
    for (body, expected) in cases {
        let (status, error) = server.post_raw("must-not-exist", body.clone()).await?;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["operation"], "create_job", "{body}");
        let message = error["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(expected),
            "{body}: got {message:?}, expected {expected:?}"
        );
    }

    let (status, _) = server.get("/tasks/must-not-exist/").await?;
    assert_eq!(status, 404);
    let (_, tasks) = server.get("/tasks/").await?;
    assert_eq!(tasks["total"], 0);
    let (_, status) = server.get("/status/").await?;
    assert_eq!(status["jobs"]["count"], 0);
    assert_eq!(status["queues"]["jobs"]["length"], 0);
    Ok(())
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_that_creates_nothing() -> anyhow::Result<()> {
    let server = Server::start(&[("MAX_BODY_BYTES", "2048")]).await?;
    let padding = "x".repeat(4096);
    let body = json!({"image": image(), "command": "echo hi", "metadata": {"pad": padding}});
    let (status, error) = server.post_raw("too-big", body.to_string()).await?;
    assert_eq!(status, 413, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap_or_default()
            .contains("2048 bytes")
    );
    let (_, tasks) = server.get("/tasks/").await?;
    assert_eq!(tasks["total"], 0);
    Ok(())
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_still_read() -> anyhow::Result<()> {
    // `curl -d` sends application/x-www-form-urlencoded; the original accepted it.
    let server = Server::start(&[]).await?;
    let response = server
        .client()
        .post(server.url("/tasks/curl-style"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(json!({"image": image(), "command": "echo hi"}).to_string())
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    Ok(())
}

#[tokio::test]
async fn bad_configuration_stops_the_server_naming_the_key() -> anyhow::Result<()> {
    for (key, value) in [
        ("HARD_EXECUTION_TIMEOUT_SECONDS", "thirty"),
        ("DOCKER_HOSTS", r#"[{"match": "(", "hosts": ["a:1"]}]"#),
        ("DOCKER_HOSTS", r#"[{"hosts": ["a:notaport"]}]"#),
    ] {
        let err = Server::start(&[(key, value)])
            .await
            .expect_err("must not start");
        let message = format!("{err:#}");
        assert!(message.contains(key), "{key}={value}: {message}");
    }
    Ok(())
}

#[tokio::test]
async fn a_task_id_no_farm_serves_is_refused_at_submit_time() -> anyhow::Result<()> {
    let hosts =
        fastlane_tests::docker_hosts().replace("\"match\": \"\"", "\"match\": \"reports-\"");
    let server = Server::start(&[("DOCKER_HOSTS", &hosts)]).await?;
    let (status, error) = server
        .post_raw(
            "billing-run",
            json!({"image": image(), "command": "true"}).to_string(),
        )
        .await?;
    assert_eq!(status, 400, "{error}");
    let message = error["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("no docker farm matches task id \"billing-run\""),
        "{message}"
    );
    let (_, tasks) = server.get("/tasks/").await?;
    assert_eq!(tasks["total"], 0);

    let created = server
        .submit(
            "reports-daily",
            json!({"image": image(), "command": "echo routed"}),
        )
        .await?;
    let execution = server
        .wait_finished(
            created["executionUrl"].as_str().expect("url"),
            std::time::Duration::from_secs(60),
        )
        .await?;
    assert_eq!(execution["log"], "routed\n");
    Ok(())
}
