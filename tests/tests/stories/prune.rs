//! `fastlane prune` removes the containers of finished executions, and only
//! those: not containers fastlane did not start, not ones still running.

use std::process::Command;
use std::time::{Duration, Instant};

use fastlane_tests::{Server, binary, docker_hosts, image};
use serde_json::{Value, json};

fn podman(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("podman").args(args).output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn exists(name: &str) -> anyhow::Result<bool> {
    Ok(!podman(&["ps", "-a", "-q", "--filter", &format!("name=^{name}$")])?.is_empty())
}

#[tokio::test]
async fn prune_removes_only_defunct_fastlane_containers() -> anyhow::Result<()> {
    let server = Server::start(&[("STOP_GRACE_SECONDS", "0")]).await?;
    let done = server
        .submit("prune", json!({"image": image(), "command": "echo pruned"}))
        .await?;
    let running = server
        // Long enough to outlast the test on a busy engine (a run has taken
        // over 60 s); the test stops it at the end.
        .submit("prune", json!({"image": image(), "command": "sleep 600"}))
        .await?;
    server
        .wait_finished(
            done["executionUrl"].as_str().unwrap_or_default(),
            Duration::from_secs(60),
        )
        .await?;
    server
        .wait_for(
            running["executionUrl"].as_str().unwrap_or_default(),
            Duration::from_secs(60),
            |e| e["status"] == "running",
        )
        .await?;
    let defunct = format!(
        "defunct-fastlane-job-{}",
        done["executionId"].as_str().unwrap_or_default()
    );
    let live = format!(
        "fastlane-job-{}",
        running["executionId"].as_str().unwrap_or_default()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !exists(&defunct)? {
        anyhow::ensure!(Instant::now() < deadline, "{defunct} never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Not fastlane's: the same kind of name, but no fastlane label.
    let decoy = format!("defunct-fastlane-job-decoy-{}", uuid::Uuid::new_v4());
    podman(&["create", "--name", &decoy, "busybox", "true"])?;
    assert!(exists(&decoy)?);

    let output = Command::new(binary())
        .arg("prune")
        .env("DOCKER_HOSTS", docker_hosts())
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let removed: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let names: Vec<&str> = removed.iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(names.contains(&defunct.as_str()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("decoy") || *n == live),
        "{names:?}"
    );

    assert!(!exists(&defunct)?, "the defunct container is gone");
    assert!(exists(&decoy)?, "a container fastlane did not start stays");
    assert!(exists(&live)?, "a running execution's container stays");
    podman(&["rm", "-f", &decoy])?;
    server
        .client()
        .post(format!(
            "{}stop",
            running["jobUrl"].as_str().unwrap_or_default()
        ))
        .send()
        .await?;
    Ok(())
}
