//! `GET /metrics` speaks the Prometheus text format (checked by the
//! `prometheus_client` parser from PyPI), and its counters move when jobs run.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use fastlane_tests::{Server, image};
use serde_json::{Value, json};

/// The samples of `/metrics`, as prometheus_client parsed them.
async fn scrape(server: &Server) -> anyhow::Result<Vec<Value>> {
    let response = server.client().get(server.url("/metrics")).send().await?;
    anyhow::ensure!(
        response.status() == 200,
        "GET /metrics answered {}",
        response.status()
    );
    let text = response.text().await?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prom_parse.py");
    let mut parser = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    parser
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(text.as_bytes())?;
    let output = parser.wait_with_output()?;
    anyhow::ensure!(
        output.status.success(),
        "prometheus_client could not parse /metrics: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn value(samples: &[Value], name: &str, labels: Value) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| {
            labels
                .as_object()
                .is_none_or(|want| want.iter().all(|(k, v)| &s["labels"][k] == v))
        })
        .map(|s| s["value"].as_f64().unwrap_or_default())
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_move_when_jobs_run() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let before = scrape(&server).await?;
    assert_eq!(
        value(&before, "fastlane_jobs_submitted_total", json!({})),
        0.0
    );
    // The gauge reads 1 once the host answers a listing within the status
    // timeout (5 s); an engine busy with the rest of the suite may take
    // longer once, so a few scrapes are allowed.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut up = value(&before, "fastlane_docker_host_up", json!({}));
    while up != 1.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        up = value(
            &scrape(&server).await?,
            "fastlane_docker_host_up",
            json!({}),
        );
    }
    assert_eq!(up, 1.0, "the engine never read as up");

    let ok = server
        .submit("metrics", json!({"image": image(), "command": "echo hi"}))
        .await?;
    let ko = server
        .submit(
            "metrics",
            json!({"image": image(), "command": "sh -c 'exit 2'"}),
        )
        .await?;
    for created in [&ok, &ko] {
        server
            .wait_finished(
                created["executionUrl"].as_str().unwrap_or_default(),
                Duration::from_secs(60),
            )
            .await?;
    }
    // A run's last step is timed once its result is stored, so the scrape
    // may come a moment before the second run's timing is in.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let after = loop {
        let after = scrape(&server).await?;
        let collected = value(
            &after,
            "fastlane_execution_step_seconds_count",
            json!({"step": "collect"}),
        );
        if collected >= 2.0 || std::time::Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        value(&after, "fastlane_jobs_submitted_total", json!({})),
        2.0
    );
    assert_eq!(
        value(
            &after,
            "fastlane_executions_finished_total",
            json!({"status": "done"})
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "fastlane_executions_finished_total",
            json!({"status": "failed"})
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "fastlane_execution_duration_seconds_count",
            json!({"status": "done"})
        ),
        1.0
    );
    assert_eq!(
        value(&after, "fastlane_queue_wait_seconds_count", json!({})),
        2.0
    );
    // Each run's steps are timed once each.
    for step in ["place", "start", "collect"] {
        assert_eq!(
            value(
                &after,
                "fastlane_execution_step_seconds_count",
                json!({"step": step})
            ),
            2.0,
            "{step}"
        );
    }
    // The queue drains once the worker has acknowledged its messages.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let depth = value(
            &scrape(&server).await?,
            "fastlane_queue_messages",
            json!({"queue": "jobs"}),
        );
        if depth == 0.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the jobs queue still holds {depth}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        value(
            &after,
            "fastlane_http_requests_total",
            json!({"method": "POST", "route": "/tasks/{taskId}", "status": "200"})
        ),
        2.0
    );
    Ok(())
}

#[tokio::test]
async fn an_autoscaler_sees_each_tasks_backlog_and_its_age() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let (_, status) = server.get("/status").await?;
    let host = status["hosts"][0]["host"].clone();
    // The only host out of rotation: what is submitted waits.
    let blacklisted = server
        .client()
        .post(server.url("/docker-executor/blacklist"))
        .json(&json!({"host": host}))
        .send()
        .await?;
    assert_eq!(blacklisted.status(), 200);
    let mut executions = Vec::new();
    for _ in 0..3 {
        let created = server
            .submit("backlogged", json!({"image": image(), "command": "true"}))
            .await?;
        executions.push(
            created["executionUrl"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let waiting = scrape(&server).await?;
    let task = json!({"task": "backlogged"});
    assert_eq!(
        value(&waiting, "fastlane_task_executions_waiting", task.clone()),
        3.0
    );
    let age = value(
        &waiting,
        "fastlane_task_oldest_waiting_seconds",
        task.clone(),
    );
    assert!(
        (1.0..120.0).contains(&age),
        "the oldest waits since its submission: {age}"
    );

    let restored = server
        .client()
        .delete(server.url("/docker-executor/blacklist"))
        .json(&json!({"host": host}))
        .send()
        .await?;
    assert_eq!(restored.status(), 200);
    for execution in &executions {
        server
            .wait_finished(execution, Duration::from_secs(60))
            .await?;
    }
    let drained = scrape(&server).await?;
    assert_eq!(
        value(&drained, "fastlane_task_executions_waiting", task),
        0.0,
        "a drained task has no backlog"
    );
    Ok(())
}
