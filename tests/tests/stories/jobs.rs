//! A user submits jobs and reads what they did: status, exit code, stdout,
//! stderr, all from real containers.

use std::time::Duration;

use fastlane_tests::{Server, image};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);
/// 200,000 lines come back from the engine line by line: under the whole
/// suite's load that alone takes close to a minute on this machine.
const BIG_LIMIT: Duration = Duration::from_secs(180);

#[tokio::test]
async fn an_echo_job_ends_done_with_its_output() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit(
            "hello-world",
            json!({"image": image(), "command": "echo 'it works'"}),
        )
        .await?;
    assert_eq!(created["taskId"], "hello-world");
    let execution_url = created["executionUrl"].as_str().expect("executionUrl");
    assert_eq!(
        execution_url,
        server.url(&format!(
            "/tasks/hello-world/jobs/{}/executions/{}/",
            created["jobId"].as_str().expect("jobId"),
            created["executionId"].as_str().expect("executionId")
        ))
    );

    let execution = server.wait_finished(execution_url, LIMIT).await?;
    assert_eq!(execution["status"], "done");
    assert_eq!(execution["exitCode"], 0);
    assert_eq!(execution["log"], "it works\n");
    assert_eq!(execution["error"], "");
    assert!(execution["startedAt"].is_string() && execution["finishedAt"].is_string());

    let stdout = server
        .client()
        .get(format!(
            "{}stdout",
            created["jobUrl"].as_str().expect("jobUrl")
        ))
        .send()
        .await?;
    assert_eq!(stdout.headers()["fastlane-exit-code"], "0");
    assert_eq!(stdout.text().await?, "it works\n");
    Ok(())
}

#[tokio::test]
async fn a_failing_job_keeps_its_exit_code_and_stderr() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit(
            "failing",
            json!({"image": image(), "command": "sh -c 'echo \"it failed\" && echo oops >&2 && exit 123'"}),
        )
        .await?;
    let execution_url = created["executionUrl"].as_str().expect("executionUrl");
    let execution = server.wait_finished(execution_url, LIMIT).await?;
    assert_eq!(execution["status"], "failed");
    assert_eq!(execution["exitCode"], 123);
    assert_eq!(execution["log"], "it failed\n");
    assert_eq!(execution["error"], "oops\n");

    for (route, body) in [
        ("stdout", "it failed\n"),
        ("stderr", "oops\n"),
        ("logs", "it failed\n\n-=-\noops\n"),
    ] {
        let response = server
            .client()
            .get(format!("{execution_url}{route}"))
            .send()
            .await?;
        assert_eq!(response.status(), 200, "{route}");
        assert_eq!(response.headers()["fastlane-exit-code"], "123", "{route}");
        assert_eq!(response.text().await?, body, "{route}");
    }
    Ok(())
}

#[tokio::test]
async fn an_unknown_shell_command_exits_127() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit("qwe", json!({"image": image(), "command": "sh -c qwe"}))
        .await?;
    let execution = server
        .wait_finished(created["executionUrl"].as_str().expect("url"), LIMIT)
        .await?;
    assert_eq!(execution["status"], "failed");
    assert_eq!(execution["exitCode"], 127);
    let stderr = execution["error"].as_str().expect("error");
    assert!(stderr.contains("qwe: not found"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn envs_reach_the_container_and_secrets_are_masked_in_the_api() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit(
            "envs",
            json!({
                "image": image(),
                "command": "sh -c 'echo \"$GREETING $DB_PASSWORD $COUNT\"'",
                "envs": {"GREETING": "hello", "DB_PASSWORD": "hunter2", "COUNT": 3}
            }),
        )
        .await?;
    let execution = server
        .wait_finished(created["executionUrl"].as_str().expect("url"), LIMIT)
        .await?;
    assert_eq!(execution["log"], "hello hunter2 3\n");

    let (status, job) = server
        .get(created["jobUrl"].as_str().expect("jobUrl"))
        .await?;
    assert_eq!(status, 200);
    let envs = &job["job"]["metadata"]["envs"];
    assert_eq!(envs["GREETING"], "hello");
    assert_eq!(envs["DB_PASSWORD"], "***");
    assert_eq!(envs["COUNT"], "3");
    assert!(
        !job["job"]["metadata"].to_string().contains("hunter2"),
        "{job}"
    );
    Ok(())
}

#[tokio::test]
async fn a_200000_line_output_is_kept_whole_and_unicode_survives() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let big = server
        .submit("big", json!({"image": image(), "command": "seq 1 200000"}))
        .await?;
    let text = server
        .submit(
            "unicode",
            json!({"image": image(), "command": "echo 'héllo wörld ✓ 日本語 🚀'"}),
        )
        .await?;

    let execution = server
        .wait_finished(big["executionUrl"].as_str().expect("url"), BIG_LIMIT)
        .await?;
    assert_eq!(execution["status"], "done");
    let expected: String = (1..=200_000).map(|n| format!("{n}\n")).collect();
    let stdout = server
        .client()
        .get(format!(
            "{}stdout",
            big["executionUrl"].as_str().expect("url")
        ))
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(stdout.len(), expected.len());
    assert!(stdout == expected, "the output differs from seq's");

    let execution = server
        .wait_finished(text["executionUrl"].as_str().expect("url"), LIMIT)
        .await?;
    assert_eq!(execution["log"], "héllo wörld ✓ 日本語 🚀\n");
    Ok(())
}

#[tokio::test]
async fn an_image_that_exists_nowhere_fails_with_a_clear_error() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit(
            "missing-image",
            json!({"image": "fastlane-test/no-such-image:1.0", "command": "true"}),
        )
        .await?;
    let execution = server
        .wait_finished(created["executionUrl"].as_str().expect("url"), LIMIT)
        .await?;
    assert_eq!(execution["status"], "failed");
    assert!(execution["exitCode"].is_null());
    let error = execution["error"].as_str().expect("error text");
    assert!(
        error.contains("fastlane-test/no-such-image:1.0") && error.contains("could not be pulled"),
        "{error}"
    );
    Ok(())
}

#[tokio::test]
async fn forty_jobs_posted_in_a_burst_all_finish_with_their_own_output() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let submissions = (0..40).map(|i| {
        let server = &server;
        async move {
            server
                .submit(
                    &format!("burst-{}", i % 4),
                    json!({"image": image(), "command": format!("echo job-{i}")}),
                )
                .await
                .map(|created| (i, created))
        }
    });
    let created = futures_util::future::try_join_all(submissions).await?;
    assert_eq!(created.len(), 40);
    for (i, job) in created {
        let execution = server
            .wait_finished(
                job["executionUrl"].as_str().expect("url"),
                Duration::from_secs(180),
            )
            .await?;
        assert_eq!(execution["status"], "done", "job {i}: {execution}");
        assert_eq!(execution["log"], format!("job-{i}\n"), "job {i}");
    }
    let (_, tasks) = server.get("/tasks/").await?;
    assert_eq!(tasks["total"], 4);
    let jobs: u64 = tasks["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["jobsCount"].as_u64().unwrap_or_default())
        .sum();
    assert_eq!(jobs, 40);
    Ok(())
}

#[tokio::test]
async fn a_job_past_its_timeout_is_stopped_and_ends_timedout() -> anyhow::Result<()> {
    let server = Server::start(&[("STOP_GRACE_SECONDS", "1")]).await?;
    let created = server
        .submit(
            "slow",
            json!({"image": image(), "command": "sh -c 'echo started; sleep 60'", "timeout": 2}),
        )
        .await?;
    let execution = server
        .wait_finished(created["executionUrl"].as_str().expect("url"), LIMIT)
        .await?;
    assert_eq!(execution["status"], "timedout");
    assert_eq!(execution["log"], "started\n");
    let error = execution["error"].as_str().expect("error");
    assert!(error.contains("timed out after 2 seconds"), "{error}");
    let started = execution["startedAt"].as_str().expect("startedAt");
    let finished = execution["finishedAt"].as_str().expect("finishedAt");
    let took = epoch_seconds(finished) - epoch_seconds(started);
    assert!((2.0..20.0).contains(&took), "took {took}s");
    Ok(())
}

#[tokio::test]
async fn a_failed_job_with_retries_runs_retries_plus_one_times() -> anyhow::Result<()> {
    let server = Server::start(&[("EXPONENTIAL_BACKOFF_MIN_MS", "200")]).await?;
    let created = server
        .submit(
            "retry",
            json!({"image": image(), "command": "sh -c 'echo try; exit 1'", "retries": 2}),
        )
        .await?;
    let job_url = created["jobUrl"].as_str().expect("jobUrl");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (_, job) = server.get(job_url).await?;
        let executions = job["job"]["executions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let finished = executions
            .iter()
            .filter(|e| e["status"] == "failed")
            .count();
        if finished == 3 {
            assert_eq!(job["job"]["executionCount"], 3);
            assert_eq!(job["job"]["metadata"]["retry_count"], 2);
            assert!(
                executions
                    .iter()
                    .all(|e| e["exitCode"] == 1 && e["log"] == "try\n")
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {finished} of 3 runs: {job}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No fourth run appears.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, job) = server.get(job_url).await?;
    assert_eq!(job["job"]["executionCount"], 3);
    Ok(())
}

fn epoch_seconds(text: &str) -> f64 {
    // RFC 3339 timestamps from the API, as seconds since the epoch.
    chrono::DateTime::parse_from_rfc3339(text)
        .map_or(f64::NAN, |at| at.timestamp_micros() as f64 / 1e6)
}

#[tokio::test]
async fn a_job_s_memory_and_cpu_limits_apply_inside_its_container() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit(
            "limits",
            json!({"image": image(), "memoryLimit": "64m", "cpuLimit": 0.5, "command":
                "sh -c 'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes'"}),
        )
        .await?;
    let execution = server
        .wait_finished(created["executionUrl"].as_str().expect("url"), LIMIT)
        .await?;
    assert_eq!(execution["log"], "67108864\n");
    Ok(())
}

/// A client that sends its submission again (a timeout, a dropped
/// connection) with the same `Idempotency-Key` gets the first answer, and
/// one job runs: here 100 identical requests at once. The same key with
/// another body is a 409 naming the key; a key that is no key, a 400.
#[tokio::test]
async fn one_idempotency_key_makes_one_job_however_often_it_is_sent() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let body = json!({"image": image(), "command": "echo once"});
    let answers = futures_util::future::join_all(
        (0..100).map(|_| server.post_keyed("keyed", "order-1234", &body)),
    )
    .await;
    let mut job_ids = std::collections::BTreeSet::new();
    for answer in answers {
        let (status, created) = answer?;
        assert_eq!(status, 200, "{created}");
        job_ids.insert(created["jobId"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(job_ids.len(), 1, "one job for one key: {job_ids:?}");
    let (_, task) = server.get("/tasks/keyed").await?;
    assert_eq!(task["jobs"].as_array().map(Vec::len), Some(1), "{task}");

    let (status, created) = server.post_keyed("keyed", "order-1234", &body).await?;
    assert_eq!((status, &created["jobId"]), (200, &json!(job_ids.first())));
    let url = created["executionUrl"].as_str().unwrap_or_default();
    let execution = server.wait_finished(url, LIMIT).await?;
    assert_eq!(execution["log"], "once\n");

    let other = json!({"image": image(), "command": "echo twice"});
    let (status, error) = server.post_keyed("keyed", "order-1234", &other).await?;
    assert_eq!(status, 409, "{error}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("order-1234")),
        "{error}"
    );
    let (status, error) = server.post_keyed("keyed", &"k".repeat(300), &body).await?;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("Idempotency-Key")),
        "{error}"
    );
    let (_, task) = server.get("/tasks/keyed").await?;
    assert_eq!(task["jobs"].as_array().map(Vec::len), Some(1), "{task}");
    Ok(())
}

/// A batch of jobs of one task goes in with one request, one transaction:
/// each job is answered and runs; one bad job refuses the whole batch,
/// naming it, and nothing is stored.
#[tokio::test]
async fn a_batch_of_jobs_runs_every_job_or_stores_none() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let jobs: Vec<_> = (0..3)
        .map(|i| json!({"image": image(), "command": format!("echo batch {i}")}))
        .collect();
    let response = server
        .client()
        .post(server.url("/tasks/batched/batch"))
        .json(&json!({ "jobs": jobs }))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let created: serde_json::Value = response.json().await?;
    let answers = created["jobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(answers.len(), 3, "{created}");
    for (i, answer) in answers.iter().enumerate() {
        let url = answer["executionUrl"].as_str().unwrap_or_default();
        let execution = server.wait_finished(url, LIMIT).await?;
        assert_eq!(
            execution["log"],
            format!("batch {i}\n"),
            "in the order sent"
        );
    }

    let bad = json!({"jobs": [
        {"image": image(), "command": "echo fine"},
        {"image": image(), "command": "echo late", "startIn": "soon"},
    ]});
    let response = server
        .client()
        .post(server.url("/tasks/refused-batch/batch"))
        .json(&bad)
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let error: serde_json::Value = response.json().await?;
    let message = error["error"].as_str().unwrap_or_default();
    assert!(message.starts_with("jobs[1]: "), "{error}");
    assert!(message.contains("startIn"), "{error}");
    let (status, _) = server.get("/tasks/refused-batch").await?;
    assert_eq!(status, 404, "nothing stored");

    let too_many = json!({"jobs": vec![json!({"image": image(), "command": "true"}); 1001]});
    let response = server
        .client()
        .post(server.url("/tasks/refused-batch/batch"))
        .json(&too_many)
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let error: serde_json::Value = response.json().await?;
    assert!(
        error["error"].as_str().is_some_and(|e| e.contains("1001")),
        "{error}"
    );
    Ok(())
}
