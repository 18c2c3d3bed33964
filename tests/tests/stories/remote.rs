//! Two fastlane servers: tasks `remote-…` on the first run on the second,
//! through the example remote executor (`examples/fastlane-remote-executor`),
//! a plugin library that does its own HTTP and WebSocket I/O with reqwest
//! and tokio. The first server keeps each result, streams the live log,
//! stops a run, and adopts a run it lost in a crash, without running it
//! twice. The second only accepts the first's token, whose scopes cover
//! reading and submitting `remote-…` tasks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fastlane_tests::{Server, binary, image, make_token};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(60);

/// The second server and the token the first uses there.
struct Remote {
    server: Server,
    token: String,
}

impl Remote {
    async fn start() -> anyhow::Result<Self> {
        let (token, entry) = make_token("forwarder", &["read", "submit:remote-.*"])?;
        let tokens = json!([entry]).to_string();
        let server =
            Server::start(&[("API_TOKENS", tokens.as_str()), ("STOP_GRACE_SECONDS", "1")]).await?;
        Ok(Self { server, token })
    }

    /// GET `path` there with the token.
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .server
            .client()
            .get(self.server.url(path))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok(body)
    }

    /// The jobs of `task` there that run `execution_id` of the first server.
    async fn jobs_for(&self, task: &str, execution_id: &str) -> anyhow::Result<Vec<Value>> {
        let page = self.get(&format!("/tasks/{task}/jobs")).await?;
        let mut found = Vec::new();
        for item in page["items"].as_array().context("items")? {
            let job_id = item["jobId"].as_str().context("jobId")?;
            let job = self.get(&format!("/tasks/{task}/jobs/{job_id}")).await?;
            let from = &job["job"]["metadata"]["custom"]["forwardedFrom"];
            if from["executionId"] == execution_id {
                found.push(job);
            }
        }
        Ok(found)
    }

    /// Waits until the run there of `execution_id` (of the first server)
    /// has `status`.
    async fn wait_for(&self, task: &str, execution_id: &str, status: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let jobs = self.jobs_for(task, execution_id).await?;
            let there = jobs
                .first()
                .map(|job| job["job"]["executions"][0]["status"].clone());
            if there.as_ref().is_some_and(|s| s == status) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the run there is {there:?}, not {status}, after {LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The library the workspace build produced.
fn library() -> PathBuf {
    binary()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join("libfastlane_remote_executor.so")
}

/// Starts the first server, sending `remote-…` tasks to `remote`.
async fn forwarder(remote: &Remote) -> anyhow::Result<Server> {
    let plugins = json!([{
        "path": library(),
        "config": {"url": remote.server.base, "token": remote.token},
    }])
    .to_string();
    let routes = json!([{"match": "^remote-", "executor": "remote"}]).to_string();
    Server::start(&[
        ("PLUGINS", plugins.as_str()),
        ("EXECUTORS", routes.as_str()),
    ])
    .await
}

async fn submit(server: &Server, task: &str, command: &str) -> anyhow::Result<(String, String)> {
    let created = server
        .submit(task, json!({"image": image(), "command": command}))
        .await?;
    let url = created["executionUrl"].as_str().context("executionUrl")?;
    let id = created["executionId"].as_str().context("executionId")?;
    Ok((url.to_owned(), id.to_owned()))
}

async fn running(server: &Server, url: &str) -> anyhow::Result<Value> {
    server
        .wait_for(url, LIMIT, |e| e["status"] == "running")
        .await
}

#[tokio::test]
async fn a_task_routed_to_another_server_runs_there_and_its_result_and_live_log_come_back()
-> anyhow::Result<()> {
    let remote = Remote::start().await?;
    let server = forwarder(&remote).await?;

    let (url, id) = submit(
        &server,
        "remote-hello",
        "sh -c 'echo hello from $0; echo warning >&2; exit 3' far-away",
    )
    .await?;
    let execution = server.wait_finished(&url, LIMIT).await?;
    assert_eq!(execution["status"], "failed", "{execution}");
    assert_eq!(execution["exitCode"], 3);
    assert_eq!(execution["log"], "hello from far-away\n");
    assert_eq!(execution["error"], "warning\n");

    // The run happened there, once, as a job that says where it came from
    // and leaves retries to this server.
    let jobs = remote.jobs_for("remote-hello", &id).await?;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["job"]["metadata"]["retries"], 0, "{jobs:?}");
    assert_eq!(jobs[0]["job"]["executions"][0]["exitCode"], 3, "{jobs:?}");

    // The live log streams while the remote run goes on.
    let (url, _) = submit(
        &server,
        "remote-live",
        "sh -c 'echo one; sleep 5; echo two >&2; sleep 1; echo three'",
    )
    .await?;
    // A socket opened before the run started closes at once with `retry`.
    running(&server, &url).await?;
    let socket = format!("{}/ws?format=json", url.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(&socket).await?;
    let deadline = Instant::now() + LIMIT;
    let mut texts = Vec::new();
    let mut first_seen_while = None;
    while let Some(message) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        socket.next(),
    )
    .await?
    {
        let Message::Text(text) = message? else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text)?;
        if frame["type"] == "log" {
            if first_seen_while.is_none() {
                let (_, now) = server.get(&url).await?;
                first_seen_while = Some(now["execution"]["status"].clone());
            }
            texts.push((frame["stream"].clone(), frame["text"].clone()));
        }
        if frame["type"] == "exit" {
            assert_eq!(frame["status"], "done", "{frame}");
            break;
        }
    }
    assert_eq!(
        first_seen_while,
        Some(json!("running")),
        "the first line came while the run went on"
    );
    let joined = |stream: &str| -> String {
        texts
            .iter()
            .filter(|(s, _)| s == stream)
            .filter_map(|(_, t)| t.as_str())
            .collect()
    };
    assert_eq!(joined("stdout"), "one\nthree\n", "{texts:?}");
    assert_eq!(joined("stderr"), "two\n", "{texts:?}");
    let (_, status) = server.get("/status").await?;
    assert!(
        status.to_string().contains(&remote.server.base),
        "/status lists the remote server as a host: {status}"
    );
    Ok(())
}

#[tokio::test]
async fn stopping_here_stops_the_run_there() -> anyhow::Result<()> {
    let remote = Remote::start().await?;
    let server = forwarder(&remote).await?;
    let (url, id) = submit(&server, "remote-long", "sh -c 'echo started; sleep 300'").await?;
    running(&server, &url).await?;
    remote.wait_for("remote-long", &id, "running").await?;
    // The run's first line came back live before it is stopped.
    let socket = format!("{}/ws?format=json", url.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(&socket).await?;
    loop {
        let message = tokio::time::timeout(LIMIT, socket.next())
            .await?
            .context("the socket closed before the first line")??;
        if let Message::Text(text) = message
            && serde_json::from_str::<Value>(&text)?["text"] == "started\n"
        {
            break;
        }
    }

    let path = url
        .strip_prefix(&server.base)
        .context("a URL of the server")?;
    let (status, body) = server
        .post_json(&format!("{path}/stop"), &json!({}))
        .await?;
    assert_eq!(status, 200, "{body}");
    let execution = server.wait_finished(&url, LIMIT).await?;
    assert_eq!(execution["status"], "stopped", "{execution}");
    remote.wait_for("remote-long", &id, "stopped").await?;
    // What the run wrote is kept here, and the remote server's reasons do
    // not pass for the run's stderr.
    let execution = server
        .wait_for(&url, LIMIT, |e| e["log"] == "started\n")
        .await?;
    let error = execution["error"].as_str().unwrap_or_default();
    assert!(!error.contains("stderr:"), "{execution}");
    Ok(())
}

#[tokio::test]
async fn a_run_going_on_there_is_adopted_after_a_crash_here_and_not_run_twice() -> anyhow::Result<()>
{
    let remote = Remote::start().await?;
    let mut server = forwarder(&remote).await?;
    let (url, id) = submit(&server, "remote-adopted", "sh -c 'sleep 4; echo after'").await?;
    running(&server, &url).await?;

    server.kill();
    // The test's client drops the connections it kept to the killed process.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.respawn_on_same_port()?;

    let execution = server.wait_finished(&url, LIMIT).await?;
    assert_eq!(execution["status"], "done", "{execution}");
    assert_eq!(execution["log"], "after\n", "{execution}");
    let jobs = remote.jobs_for("remote-adopted", &id).await?;
    assert_eq!(jobs.len(), 1, "one job there: {jobs:?}");
    assert_eq!(
        jobs[0]["job"]["executions"].as_array().map(Vec::len),
        Some(1),
        "run once there: {jobs:?}"
    );
    Ok(())
}
