//! Tasks routed to the Kubernetes executor (`EXECUTORS` → `kubernetes`,
//! `KUBERNETES_CLUSTERS`) run as Jobs, through the real `fastlane` binary,
//! on the fake API server of `fastlane_tests::kube` (no API server can be
//! installed here; its pods run on the real engine). A user sees the same
//! API as with Docker: the result and the merged log, a timeout, a stop,
//! the wait for a node in the status detail (and a stop during it), the
//! cluster in `/status`, a run adopted after a crash without running
//! twice, and each Job deleted once its result is stored.

use std::time::Duration;

use anyhow::Context;
use fastlane_tests::kube::FakeCluster;
use fastlane_tests::{Server, image};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

/// A server sending tasks `k8s-…` to the fake cluster: `k8s-gpu-…` to a
/// cluster whose nodes no pod fits, the others to one that runs them.
async fn server(fake: &FakeCluster) -> anyhow::Result<Server> {
    let clusters = json!([
        {"name": "gpus", "match": "k8s-gpu-", "kubeconfig": fake.kubeconfig,
         "nodeSelector": {"nvidia.com/gpu.present": "true"}},
        {"name": "fake", "kubeconfig": fake.kubeconfig, "maxRunning": 4},
    ])
    .to_string();
    let routes = json!([{"match": "^k8s-", "executor": "kubernetes"}]).to_string();
    Server::start(&[
        ("EXECUTORS", routes.as_str()),
        ("KUBERNETES_CLUSTERS", clusters.as_str()),
        ("STOP_GRACE_SECONDS", "1"),
    ])
    .await
}

async fn submit(server: &Server, task: &str, job: Value) -> anyhow::Result<(String, String)> {
    let created = server.submit(task, job).await?;
    let url = created["executionUrl"].as_str().context("executionUrl")?;
    let id = created["executionId"].as_str().context("executionId")?;
    Ok((url.to_owned(), id.to_owned()))
}

/// Stops the execution at `url` as a user does; fails unless answered 200.
async fn stop(server: &Server, url: &str) -> anyhow::Result<()> {
    let path = url
        .strip_prefix(&server.base)
        .context("a URL of the server")?;
    let (status, body) = server
        .post_json(&format!("{path}/stop"), &json!({}))
        .await?;
    anyhow::ensure!(status == 200, "stop answered {status}: {body}");
    Ok(())
}

/// Waits until the fake cluster holds no Job `name`.
async fn job_deleted(fake: &FakeCluster, name: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + LIMIT;
    while fake.job("fastlane-test", name).is_some() {
        anyhow::ensure!(std::time::Instant::now() < deadline, "Job {name} was kept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_task_routed_to_kubernetes_runs_as_a_job_and_its_merged_log_comes_back()
-> anyhow::Result<()> {
    let fake = FakeCluster::start().await?;
    let server = server(&fake).await?;
    let (url, id) = submit(
        &server,
        "k8s-hello",
        json!({"image": image(), "command": "sh -c 'echo out; echo err >&2; exit 3'"}),
    )
    .await?;
    let execution = server.wait_finished(&url, LIMIT).await?;
    assert_eq!(execution["status"], "failed", "{execution}");
    assert_eq!(execution["exitCode"], 3);
    let mut lines: Vec<&str> = execution["log"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["err", "out"],
        "both streams are in the log: {execution}"
    );
    let name = format!("fastlane-{id}");
    let created = fake.created_jobs("fastlane-test");
    let job = created
        .iter()
        .find(|job| job["metadata"]["name"] == name.as_str())
        .context("the Job was made on the cluster")?;
    assert_eq!(job["metadata"]["labels"]["fastlane.task"], "k8s-hello");
    // Its result stored, fastlane deletes the Job.
    job_deleted(&fake, &name).await?;

    let (_, status) = server.get("/status").await?;
    let hosts = status["hosts"].to_string();
    assert!(
        hosts.contains("\"fake\"") && hosts.contains("\"gpus\""),
        "/status lists each cluster as a host: {status}"
    );
    Ok(())
}

#[tokio::test]
async fn a_kubernetes_run_times_out_and_a_stopped_one_is_stopped() -> anyhow::Result<()> {
    let fake = FakeCluster::start().await?;
    let server = server(&fake).await?;
    let (timed, _) = submit(
        &server,
        "k8s-slow",
        // The deadline counts from the Job's creation: long enough for the
        // pod to start and write its line on a loaded machine.
        json!({"image": image(), "command": "sh -c 'echo before; sleep 60'", "timeout": 10}),
    )
    .await?;
    let (stopped, id) = submit(
        &server,
        "k8s-long",
        json!({"image": image(), "command": "sh -c 'echo started; sleep 300'"}),
    )
    .await?;

    let execution = server.wait_finished(&timed, LIMIT).await?;
    assert_eq!(execution["status"], "timedout", "{execution}");
    // What it wrote before its pod went with the deadline is kept.
    server
        .wait_for(&timed, LIMIT, |e| e["log"] == "before\n")
        .await?;

    server
        .wait_for(&stopped, LIMIT, |e| e["status"] == "running")
        .await?;
    stop(&server, &stopped).await?;
    let execution = server.wait_finished(&stopped, LIMIT).await?;
    assert_eq!(execution["status"], "stopped", "{execution}");
    // Its pod is gone with its Job; what it wrote was kept as it ran.
    let execution = server
        .wait_for(&stopped, LIMIT, |e| e["log"] == "started\n")
        .await?;
    assert_eq!(execution["status"], "stopped");
    job_deleted(&fake, &format!("fastlane-{id}")).await?;
    Ok(())
}

#[tokio::test]
async fn a_pod_no_node_can_take_waits_saying_why_until_the_job_expires_or_is_stopped()
-> anyhow::Result<()> {
    let fake = FakeCluster::start().await?;
    let server = server(&fake).await?;
    // Long enough for the wait's reason to show first on a busy machine.
    let expiration = chrono::Utc::now().timestamp() + 10;
    let (url, _) = submit(
        &server,
        "k8s-gpu-train",
        json!({"image": image(), "command": "true", "expiration": expiration}),
    )
    .await?;
    let waiting = server
        .wait_for(&url, LIMIT, |e| {
            e["statusDetail"]
                .as_str()
                .is_some_and(|d| d.starts_with("waiting for a node: 0/1 nodes are available"))
        })
        .await?;
    assert_eq!(waiting["status"], "pulling", "{waiting}");
    let execution = server.wait_finished(&url, LIMIT).await?;
    assert_eq!(execution["status"], "expired", "{execution}");

    // One stopped while it waits goes, and so does its Job.
    let (url, id) = submit(
        &server,
        "k8s-gpu-eval",
        json!({"image": image(), "command": "true"}),
    )
    .await?;
    server
        .wait_for(&url, LIMIT, |e| {
            e["statusDetail"]
                .as_str()
                .is_some_and(|d| d.starts_with("waiting for a node"))
        })
        .await?;
    stop(&server, &url).await?;
    let execution = server.wait_finished(&url, LIMIT).await?;
    assert_eq!(execution["status"], "stopped", "{execution}");
    job_deleted(&fake, &format!("fastlane-{id}")).await?;
    Ok(())
}

#[tokio::test]
async fn a_kubernetes_run_is_adopted_after_a_crash_and_not_run_twice() -> anyhow::Result<()> {
    let fake = FakeCluster::start().await?;
    let mut server = server(&fake).await?;
    let (url, _) = submit(
        &server,
        "k8s-adopted",
        json!({"image": image(), "command": "sh -c 'sleep 4; echo after'"}),
    )
    .await?;
    server
        .wait_for(&url, LIMIT, |e| e["status"] == "running")
        .await?;
    server.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.respawn_on_same_port()?;
    let execution = server.wait_finished(&url, LIMIT).await?;
    assert_eq!(execution["status"], "done", "{execution}");
    assert_eq!(execution["log"], "after\n", "{execution}");
    assert_eq!(
        fake.created_jobs("fastlane-test").len(),
        1,
        "one Job, run once"
    );
    Ok(())
}
