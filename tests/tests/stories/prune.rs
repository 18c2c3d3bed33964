//! `fastlane prune` removes the containers of finished executions, and only
//! those: not containers fastlane did not start, not ones still running.
//!
//! It runs on Docker Engine (`FASTLANE_TEST_DOCKERD_UNIX`): a prune goes
//! through every defunct container of the engine, and the rest of the suite
//! leaves hundreds on Podman, whose removals are one at a time.

use std::process::Command;
use std::time::{Duration, Instant};

use fastlane_tests::{Server, binary, image};
use serde_json::{Value, json};

fn engine() -> String {
    std::env::var("FASTLANE_TEST_DOCKERD_UNIX")
        .unwrap_or_else(|_| "unix:///run/fastlane/docker.sock".to_owned())
}

fn docker_hosts() -> String {
    json!([{"match": "", "hosts": [engine()], "maxRunning": 10}]).to_string()
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .arg("-H")
        .arg(engine())
        .args(args)
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn exists(name: &str) -> anyhow::Result<bool> {
    Ok(!docker(&["ps", "-a", "-q", "--filter", &format!("name=^{name}$")])?.is_empty())
}

#[tokio::test]
async fn prune_removes_only_defunct_fastlane_containers() -> anyhow::Result<()> {
    let hosts = docker_hosts();
    let server = Server::start(&[("STOP_GRACE_SECONDS", "0"), ("DOCKER_HOSTS", &hosts)]).await?;
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
    docker(&["create", "--name", &decoy, "busybox", "true"])?;
    assert!(exists(&decoy)?);

    let output = Command::new(binary())
        .arg("prune")
        .env("DOCKER_HOSTS", &hosts)
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
    docker(&["rm", "-f", &decoy])?;
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
