//! Nothing the API acknowledged is lost when the process dies: a restarted
//! standalone finds the executions it left behind and finishes them.

use std::time::Duration;

use fastlane_tests::receiver::Receiver;
use fastlane_tests::{Server, image};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_standalone_killed_while_a_job_runs_records_its_result_after_restart()
-> anyhow::Result<()> {
    let mut server = Server::start(&[]).await?;
    let created = server
        .submit(
            "crash",
            json!({"image": image(), "command": "sh -c 'echo before; sleep 3; echo after'"}),
        )
        .await?;
    let url = created["executionUrl"].as_str().expect("url").to_owned();
    server
        .wait_for(&url, LIMIT, |e| e["status"] == "running")
        .await?;

    server.kill();
    // The container goes on without us and exits while we are down.
    tokio::time::sleep(Duration::from_secs(4)).await;
    server.spawn()?;

    let url = url.replace(
        url.split("/tasks/").next().unwrap_or_default(),
        &server.base,
    );
    let execution = server.wait_finished(&url, LIMIT).await?;
    assert_eq!(execution["status"], "done", "{execution}");
    assert_eq!(execution["log"], "before\nafter\n");
    assert_eq!(execution["exitCode"], 0);
    Ok(())
}

#[tokio::test]
async fn jobs_queued_before_a_crash_run_after_the_restart() -> anyhow::Result<()> {
    // One execution at a time, so most of the burst is still queued at the kill.
    let mut server = Server::start(&[("WORKER_CONCURRENCY", "1")]).await?;
    let mut paths = Vec::new();
    for i in 0..5 {
        let created = server
            .submit(
                "queued",
                json!({"image": image(), "command": format!("sh -c 'sleep 1; echo run-{i}'")}),
            )
            .await?;
        let url = created["executionUrl"].as_str().expect("url");
        paths.push((i, url.trim_start_matches(&server.base).to_owned()));
    }
    server.kill();
    server.spawn()?;
    for (i, path) in paths {
        let execution = server.wait_finished(&server.url(&path), LIMIT).await?;
        assert_eq!(execution["status"], "done", "run {i}: {execution}");
        assert_eq!(execution["log"], format!("run-{i}\n"));
    }
    Ok(())
}

#[tokio::test]
async fn sigterm_stops_promptly_and_the_next_start_finishes_the_job() -> anyhow::Result<()> {
    let mut server = Server::start(&[]).await?;
    let created = server
        .submit(
            "term",
            json!({"image": image(), "command": "sh -c 'sleep 2; echo finished'"}),
        )
        .await?;
    let url = created["executionUrl"].as_str().expect("url");
    let path = url.trim_start_matches(&server.base).to_owned();
    server
        .wait_for(url, LIMIT, |e| e["status"] == "running")
        .await?;

    let exit = server.terminate(Duration::from_secs(10));
    let exit = exit.expect("exited within 10 s of SIGTERM");
    assert!(exit.success(), "{exit:?}\n{}", server.log());

    server.spawn()?;
    let execution = server.wait_finished(&server.url(&path), LIMIT).await?;
    assert_eq!(execution["status"], "done");
    assert_eq!(execution["log"], "finished\n");
    Ok(())
}

#[tokio::test]
async fn every_submission_acknowledged_before_a_kill_9_is_there_after_the_restart()
-> anyhow::Result<()> {
    // Nothing runs: the only host is out of rotation, so every job stays
    // queued and the count is exact.
    let hosts = r#"[{"match": "", "hosts": ["127.0.0.1:9"]}]"#;
    let mut server = Server::start(&[("DOCKER_HOSTS", hosts)]).await?;
    let blacklist = server
        .client()
        .post(server.url("/docker-executor/blacklist"))
        .json(&json!({"host": "127.0.0.1:9"}))
        .send()
        .await?;
    assert_eq!(blacklist.status(), 200);

    // 32 clients submit as fast as they can; the process is killed under them.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for _ in 0..32 {
        let (client, url) = (server.client().clone(), server.url("/tasks/durable"));
        let acknowledged = std::sync::Arc::clone(&acknowledged);
        clients.push(tokio::spawn(async move {
            let body = json!({"image": "busybox", "command": "true"}).to_string();
            // Stops at the first refused or broken request: the kill.
            while let Ok(response) = client.post(&url).body(body.clone()).send().await {
                if response.status() != 200 {
                    break;
                }
                let Ok(created) = response.json::<serde_json::Value>().await else {
                    break;
                };
                let ids = (created["jobId"].clone(), created["executionId"].clone());
                if let Ok(mut list) = acknowledged.lock() {
                    list.push(ids);
                }
            }
        }));
    }
    // Killed in the middle of the load: once a few hundred are in, and
    // a while after its start.
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(60);
    while acknowledged.lock().map_or(0, |l| l.len()) < 300 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed())).await;
    server.kill();
    for client in clients {
        client.await?;
    }
    let acknowledged = acknowledged.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        acknowledged.len() > 100,
        "only {} submissions",
        acknowledged.len()
    );

    server.spawn()?;
    let mut missing = Vec::new();
    for (job_id, execution_id) in &acknowledged {
        let (status, job) = server
            .get(&format!(
                "/tasks/durable/jobs/{}",
                job_id.as_str().unwrap_or_default()
            ))
            .await?;
        let kept = status == 200
            && job["job"]["executions"].as_array().is_some_and(|runs| {
                runs.iter()
                    .any(|run| run["executionId"] == *execution_id && run["status"] == "enqueued")
            });
        if !kept {
            missing.push(job_id.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged jobs lost: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
    Ok(())
}

/// The store is the source of truth for schedules: with every message of the
/// embedded queue deleted while the standalone was stopped, the next start
/// queues the delayed job's firing again from the store, and it fires once.
#[tokio::test]
async fn a_delayed_job_fires_after_its_queued_firing_is_lost() -> anyhow::Result<()> {
    let mut server = Server::start(&[]).await?;
    let created = server
        .submit(
            "lost-firing",
            json!({"image": image(), "command": "echo still here", "startIn": "3s"}),
        )
        .await?;
    // A path: the restarted server listens on another port.
    let job_path = format!(
        "/tasks/lost-firing/jobs/{}",
        created["jobId"].as_str().expect("jobId")
    );
    assert!(server.terminate(Duration::from_secs(10)).is_some());

    let db = rusqlite::Connection::open(server.data_dir.join("fastlane.db"))?;
    let deleted = db.execute("DELETE FROM queue", [])?;
    assert_eq!(deleted, 1, "the firing was queued");
    drop(db);
    server.spawn()?;

    let deadline = tokio::time::Instant::now() + LIMIT;
    let job = loop {
        let (_, job) = server.get(&job_path).await?;
        let executions = job["job"]["executions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if executions.iter().any(|e| e["status"] == "done") {
            break job;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never fired: {job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["job"]["executionCount"], 1, "{job}");
    assert_eq!(job["job"]["scheduled"], false, "{job}");
    Ok(())
}

/// Notifications too: a webhook that failed waits in the embedded queue for
/// its next try (a minute of back-off) when the standalone stops, and its
/// message is deleted meanwhile. The store still owes the delivery, so the
/// next start queues it again: the hook gets its second try, once.
#[tokio::test]
async fn a_webhook_owed_when_the_queue_lost_it_is_tried_again_after_a_restart() -> anyhow::Result<()>
{
    let receiver = Receiver::start(vec![500, 200]).await?;
    let mut server = Server::start(&[
        ("WEBHOOKS_ALLOW_LOCAL_NETWORK", "true"),
        ("WEBHOOKS_EXPONENTIAL_BACKOFF_MIN_MS", "60000"),
    ])
    .await?;
    let hook = json!({"url": format!("{}/finishes", receiver.url), "retries": 3});
    let created = server
        .submit(
            "lost-delivery",
            json!({"image": image(), "command": "echo hooked", "webhooks": {"finishes": [hook]}}),
        )
        .await?;
    let execution_path = format!(
        "/tasks/lost-delivery/jobs/{}/executions/{}",
        created["jobId"].as_str().expect("jobId"),
        created["executionId"].as_str().expect("executionId")
    );
    let deadline = tokio::time::Instant::now() + LIMIT;
    while receiver.received().is_empty() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never notified");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.terminate(Duration::from_secs(10)).is_some());

    let db = rusqlite::Connection::open(server.data_dir.join("fastlane.db"))?;
    let deleted = db.execute("DELETE FROM queue WHERE queue = 'webhooks'", [])?;
    assert_eq!(deleted, 1, "the next try was queued");
    drop(db);
    server.spawn()?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while receiver.received().len() < 2 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the delivery was lost with the queue's message"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // nothing more may come
    assert_eq!(receiver.received().len(), 2, "tried twice, no more");
    let (_, execution) = server.get(&execution_path).await?;
    let dispatch = execution["execution"]["metadata"]["webhookDispatch"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let codes: Vec<&serde_json::Value> = dispatch.iter().map(|d| &d["statusCode"]).collect();
    assert_eq!(codes, [&json!(500), &json!(200)], "{execution}");
    Ok(())
}

/// A database an earlier fastlane made (`tests/fixtures/upgrade/fastlane.db`,
/// by `tests/fixtures/make-upgrade-db.sh` with a build from before schema
/// versions were kept) opens with this build: every task, job, execution
/// and schedule is there, and the schema is brought to this build's version.
#[tokio::test]
async fn a_database_made_by_an_earlier_fastlane_opens_with_everything_in_it() -> anyhow::Result<()>
{
    let mut server = Server::start(&[]).await?;
    assert!(server.terminate(Duration::from_secs(10)).is_some());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(server.data_dir.join(format!("fastlane.db{suffix}")));
    }
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/upgrade/fastlane.db");
    std::fs::copy(&fixture, server.data_dir.join("fastlane.db"))?;
    server.spawn()?;

    let (_, tasks) = server.get("/tasks").await?;
    let mut ids: Vec<&str> = tasks["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["taskId"].as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["upgraded", "upgraded-cron"], "{tasks}");

    let (_, task) = server.get("/tasks/upgraded").await?;
    let jobs = task["jobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(jobs.len(), 3, "{task}");
    let mut finished = Vec::new();
    for listed in &jobs {
        let job_id = listed["id"].as_str().unwrap_or_default();
        let (_, job) = server
            .get(&format!("/tasks/upgraded/jobs/{job_id}"))
            .await?;
        for execution in job["job"]["executions"].as_array().into_iter().flatten() {
            let id = execution["executionId"].as_str().unwrap_or_default();
            let path = format!("/tasks/upgraded/jobs/{job_id}/executions/{id}");
            let (status, body) = server.get(&path).await?;
            assert_eq!(status, 200, "{path}: {body}");
            let execution = &body["execution"];
            finished.push((
                execution["status"].as_str().unwrap_or_default().to_owned(),
                execution["exitCode"].clone(),
                execution["log"].clone(),
                execution["error"].clone(),
            ));
        }
        if job["job"]["metadata"]["envs"]["A_SECRET"].is_string() {
            assert_eq!(job["job"]["metadata"]["envs"]["A_SECRET"], "***", "{job}");
        }
    }
    finished.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        finished,
        [
            ("done".to_owned(), json!(0), json!("kept\n"), json!("")),
            ("failed".to_owned(), json!(3), json!(""), json!("oops\n")),
        ]
    );

    let (_, status) = server.get("/status").await?;
    let scheduled = status["jobs"]["scheduled"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(scheduled.len(), 2, "the delayed and the cron job: {status}");
    assert!(
        scheduled.iter().all(|s| s["nextScheduledAt"].is_string()),
        "{status}"
    );

    assert!(server.terminate(Duration::from_secs(10)).is_some());
    let db = rusqlite::Connection::open(server.data_dir.join("fastlane.db"))?;
    let version: u32 = db.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?;
    assert!(version >= 1, "migrated to version {version}");
    Ok(())
}
