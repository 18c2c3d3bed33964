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

/// Issue #13, item 3: each bound of a submission is a 400 that names the
/// problem, on POST and on PUT, and nothing is created; the server still
/// answers afterwards.
#[tokio::test]
async fn every_bound_of_a_submission_is_a_400_that_creates_nothing() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let ok = || json!({"image": image(), "command": "echo hi"});
    let with = |field: &str, value: serde_json::Value| {
        let mut body = ok();
        body[field] = value;
        body.to_string()
    };
    let nested = |levels: usize| {
        let mut value = json!(1);
        for _ in 0..levels {
            value = json!({"d": value});
        }
        value
    };
    let envs: serde_json::Map<String, serde_json::Value> =
        (0..257).map(|i| (format!("E{i}"), json!("x"))).collect();
    let hooks: Vec<_> = (0..21)
        .map(|i| json!({"url": format!("http://hooks.example.com/{i}")}))
        .collect();
    let addresses: Vec<_> = (0..51).map(|i| format!("u{i}@example.com")).collect();
    let dns: serde_json::Map<String, serde_json::Value> = (0..65)
        .map(|i| (format!("h{i}"), json!("10.0.0.1")))
        .collect();
    let long_id = "t".repeat(257);
    // (task id as it goes in the path, body, what the error says)
    let cases: Vec<(&str, String, &str)> = vec![
        ("line%0Abreak", ok().to_string(), "is not a valid task id"),
        (
            "forged%0D%0A2026-01-01",
            ok().to_string(),
            "is not a valid task id",
        ),
        ("bell%07", ok().to_string(), "is not a valid task id"),
        ("with%20space", ok().to_string(), "is not a valid task id"),
        ("slash%2Finside", ok().to_string(), "is not a valid task id"),
        ("caf%C3%A9", ok().to_string(), "is not a valid task id"),
        (".hidden", ok().to_string(), "is not a valid task id"),
        (&long_id, ok().to_string(), "is not a valid task id"),
        (
            "deep-33",
            with("metadata", nested(33)),
            "metadata is nested more than 32 levels deep",
        ),
        // The issue's 125 levels: refused before the body is parsed.
        (
            "deep-125",
            with("metadata", nested(125)),
            "nested more than 64 levels deep",
        ),
        (
            "deep-list",
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
            "nested more than 64 levels deep",
        ),
        (
            "big-metadata",
            with("metadata", json!({"pad": "x".repeat(70_000)})),
            "metadata is 70010 bytes as JSON: at most 65536",
        ),
        (
            "many-envs",
            with("envs", serde_json::Value::Object(envs)),
            "envs has 257 entries: at most 256",
        ),
        (
            "env-name",
            with("envs", json!({"A=B": "1"})),
            "envs: \"A=B\" is not a valid name",
        ),
        (
            "env-value",
            with("envs", json!({"BIG": "v".repeat(40_000)})),
            "envs.BIG must be a string (at most 32768 characters)",
        ),
        (
            "many-hooks",
            with("webhooks", json!({"finishes": hooks})),
            "webhooks.finishes has 21 items: at most 20",
        ),
        (
            "hook-header",
            with(
                "webhooks",
                json!({"fails": [{"url": "http://h.example.com/", "headers": {"X-A": "1\r\nX-B: 2"}}]}),
            ),
            "webhooks.fails[0].headers.X-A must be a string without line breaks",
        ),
        (
            "many-addresses",
            with("notify", json!({"fails": addresses})),
            "notify.fails has 51 items: at most 50",
        ),
        (
            "spread-addresses",
            with(
                "notify",
                json!({"fails": &addresses[..30], "finishes": &addresses[30..]}),
            ),
            "notify has 51 e-mail addresses: at most 50",
        ),
        (
            "many-dns",
            with("additionalDNSEntries", serde_json::Value::Object(dns)),
            "additionalDNSEntries has 65 entries: at most 64",
        ),
        (
            "retries-101",
            with("retries", json!(101)),
            "retries must be a whole number from 0 to 100",
        ),
        (
            "policy",
            with("concurrencyPolicy", json!("Never")),
            "concurrencyPolicy must be Allow, Forbid or Replace",
        ),
        (
            "memory-bytes",
            with("memoryLimit", json!(1024)),
            "memoryLimit must be at least 6m",
        ),
        (
            "backoff-key",
            with("backoff", json!({"minMS": 10})),
            "backoff: unknown key \"minMS\"",
        ),
    ];
    for (task, body, expected) in &cases {
        let (status, error) = server.post_raw(task, body.clone()).await?;
        let message = error["error"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "POST {task}: {message}");
        assert_eq!(error["operation"], "create_job", "POST {task}");
        assert!(
            message.contains(expected),
            "POST {task}: got {message:?}, expected {expected:?}"
        );

        let job = uuid::Uuid::new_v4();
        let response = server
            .client()
            .put(server.url(&format!("/tasks/{task}/jobs/{job}")))
            .body(body.clone())
            .send()
            .await?;
        let status = response.status().as_u16();
        let error: serde_json::Value = response.json().await?;
        let message = error["error"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "PUT {task}: {message}");
        assert_eq!(error["operation"], "create_or_update_job", "PUT {task}");
        assert!(
            message.contains(expected),
            "PUT {task}: got {message:?}, expected {expected:?}"
        );

        let (status, _) = server.get(&format!("/tasks/{task}")).await?;
        assert_eq!(status, 404, "task {task} must not exist");
    }

    let (_, tasks) = server.get("/tasks/").await?;
    assert_eq!(tasks["total"], 0);
    let (status, report) = server.get("/status/").await?;
    assert_eq!(status, 200);
    assert_eq!(report["jobs"]["count"], 0);
    assert_eq!(report["queues"]["jobs"]["length"], 0);

    // Right at the bounds, a job is accepted and stays readable.
    let envs: serde_json::Map<String, serde_json::Value> =
        (0..256).map(|i| (format!("E{i}"), json!(i))).collect();
    let created = server
        .submit(
            "at.the-bounds:1@eu_2",
            json!({"image": image(), "command": "true", "metadata": nested(32),
                   "envs": envs, "retries": 100}),
        )
        .await?;
    let (status, job) = server
        .get(created["jobUrl"].as_str().expect("jobUrl"))
        .await?;
    assert_eq!(status, 200, "{job}");
    let (status, _) = server.get("/status/").await?;
    assert_eq!(status, 200);
    Ok(())
}

/// `?page=` outside 1..=100000000 is a 400 on both listings, never a 5xx.
#[tokio::test]
async fn a_page_out_of_its_range_is_a_400() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    for page in [
        "",
        "0",
        "-1",
        "abc",
        "1.5",
        "18446744073709551615",
        "100000001",
        "99999999999999999999",
    ] {
        for (path, operation) in [
            (format!("/tasks/?page={page}"), "get_tasks"),
            (format!("/search/?query=x&page={page}"), "search_tasks"),
        ] {
            let (status, error) = server.get(&path).await?;
            assert_eq!(status, 400, "{path}: {error}");
            assert_eq!(error["operation"], operation, "{path}");
            let message = error["error"].as_str().unwrap_or_default();
            assert!(
                message.contains("page param should be a positive integer"),
                "{path}: {message}"
            );
        }
    }
    let (status, page) = server.get("/tasks/?page=1").await?;
    assert_eq!(status, 200, "{page}");
    let (status, error) = server.get("/tasks/?page=&page=2").await?;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("given once")),
        "{error}"
    );
    let (status, _) = server.get("/tasks/?page=100000000").await?;
    assert_eq!(status, 404, "a page in range that does not exist");
    let (status, _) = server.get("/status/").await?;
    assert_eq!(status, 200);
    Ok(())
}
