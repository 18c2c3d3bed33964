//! # fastlane-tests
//!
//! Black-box tests: each starts the real `fastlane` binary on a free port
//! with its own data directory, talks to it over HTTP the way a user would,
//! and lets it run real containers on the engine that `scripts/services.sh`
//! started.
//!
//! Environment:
//! - `FASTLANE_BIN`: the binary (default: `target/debug/fastlane`).
//! - `FASTLANE_TEST_DOCKER_HOSTS`: the `DOCKER_HOSTS` the servers get
//!   (default: the Podman socket `scripts/services.sh` starts).
//! - `FASTLANE_TEST_IMAGE`: the image jobs run (default `busybox`).
//!
//! [`kube`] is a fake Kubernetes API server whose pods run on the engine,
//! for the Kubernetes executor's tests.
//!
//! [`browser`] drives a headless Chromium for the tests of the pages
//! (`FASTLANE_TEST_CHROMIUM`, `FASTLANE_TEST_CHROMEDRIVER`).

pub mod browser;
pub mod engine;
pub mod kube;
pub mod postgres;
pub mod processes;
pub mod proxy;
pub mod receiver;
pub mod redis;
pub mod redis_topologies;
pub mod smtp;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// The image test jobs run in.
pub fn image() -> String {
    std::env::var("FASTLANE_TEST_IMAGE").unwrap_or_else(|_| "busybox".to_owned())
}

/// The `fastlane` binary under test.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("FASTLANE_BIN") {
        return PathBuf::from(path);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"));
    target.join("debug").join("fastlane")
}

/// Starts `fastlane <args…>` on the test engine (`DOCKER_HOSTS`) with `env`,
/// its log appended to `log`, and returns it with the first line it printed
/// (what it says once it has started).
pub(crate) fn start_fastlane(
    args: &[&str],
    env: &[(&str, &str)],
    log: &Path,
) -> anyhow::Result<(Child, String)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut command = Command::new(binary());
    command
        .args(args)
        .env("DOCKER_HOSTS", docker_hosts())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", binary().display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    if let Err(err) = BufReader::new(stdout).read_line(&mut line) {
        let _ = child.kill();
        return Err(err.into());
    }
    Ok((child, line.trim().to_owned()))
}

/// Makes an API token with `fastlane token`; returns the token and its
/// `API_TOKENS` entry.
pub fn make_token(name: &str, scopes: &[&str]) -> anyhow::Result<(String, Value)> {
    let mut command = std::process::Command::new(binary());
    command.args(["token", "--name", name]);
    for scope in scopes {
        command.args(["--scope", scope]);
    }
    let output = command.output()?;
    anyhow::ensure!(output.status.success(), "fastlane token failed");
    let text = String::from_utf8(output.stdout)?;
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .ok_or_else(|| anyhow::anyhow!("no token in {text:?}"))?;
    let entry = text
        .lines()
        .find_map(|l| l.strip_prefix("API_TOKENS entry: "))
        .ok_or_else(|| anyhow::anyhow!("no entry in {text:?}"))?;
    assert!(
        !entry.contains(token),
        "the entry holds the hash, not the token"
    );
    Ok((token.to_owned(), serde_json::from_str(entry)?))
}

/// The `DOCKER_HOSTS` test servers use.
pub fn docker_hosts() -> String {
    std::env::var("FASTLANE_TEST_DOCKER_HOSTS").unwrap_or_else(|_| {
        r#"[{"match": "", "hosts": ["unix:///run/fastlane/podman.sock"], "maxRunning": 10}]"#
            .to_owned()
    })
}

/// A running `fastlane standalone` (or `fastlane api`), killed when
/// dropped.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// `standalone` or `api`.
    command: &'static str,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The data directory, kept across restarts.
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
    client: reqwest::Client,
}

impl Server {
    /// Starts `fastlane standalone` with a fresh data directory and extra
    /// environment.
    pub async fn start(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_command("standalone", env)
    }

    /// Starts `fastlane api` (it needs `REDIS_URL` and `STORE_URL` in `env`).
    pub async fn start_api(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_command("api", env)
    }

    fn start_command(command: &'static str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let data_dir = std::env::temp_dir().join(format!("fastlane-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&data_dir)?;
        let mut server = Self {
            child: None,
            command,
            base: String::new(),
            data_dir,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        };
        server.spawn()?;
        Ok(server)
    }

    /// Starts the process (again) on the same data directory, on a free
    /// port.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        self.spawn_on(0)
    }

    /// Starts the process again on the same data directory and the port it
    /// had, so that clients holding its URL reach it again.
    pub fn respawn_on_same_port(&mut self) -> anyhow::Result<()> {
        let port = self
            .base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("the server has no port yet")?;
        self.spawn_on(port)
    }

    fn spawn_on(&mut self, port: u16) -> anyhow::Result<()> {
        let data_dir = self.data_dir.display().to_string();
        let mut env = vec![("FASTLANE_DATA_DIR", data_dir.as_str())];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let port = port.to_string();
        let (mut child, line) = start_fastlane(
            &[self.command, "-b", "127.0.0.1", "-p", &port],
            &env,
            &self.data_dir.join("server.log"),
        )?;
        let Some(addr) = line.strip_prefix("listening on ") else {
            let _ = child.kill();
            bail!(
                "server did not start (printed {line:?}); its log:\n{}",
                self.log()
            );
        };
        self.base = format!("http://{addr}");
        self.child = Some(child);
        Ok(())
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and how the process exited (None if it did not within `limit`).
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// An absolute URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The HTTP client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// GET `url` (absolute, or a path), expecting JSON; returns status and body.
    pub async fn get(&self, url: &str) -> anyhow::Result<(u16, Value)> {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            self.url(url)
        };
        let response = self.client.get(&url).send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text)
            .with_context(|| format!("GET {url} answered {status} with non-JSON {text:?}"))?;
        Ok((status, body))
    }

    /// POSTs `body` to `/tasks/{task}` with an `Idempotency-Key`; the
    /// status and JSON answer.
    pub async fn post_keyed(
        &self,
        task: &str,
        key: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let response = self
            .client
            .post(self.url(&format!("/tasks/{task}")))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    /// POSTs JSON `body` to `path`; the status and JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let response = self.client.post(self.url(path)).json(body).send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text)
            .with_context(|| format!("POST {path} answered {status} with non-JSON {text:?}"))?;
        Ok((status, body))
    }

    /// POSTs a raw body to `/tasks/<task>`; returns status and JSON body.
    pub async fn post_raw(
        &self,
        task: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<(u16, Value)> {
        let response = self
            .client
            .post(self.url(&format!("/tasks/{task}")))
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await?;
        if !content_type.starts_with("application/json") {
            bail!("POST answered {status} with content type {content_type:?}: {text}");
        }
        Ok((status, serde_json::from_str(&text)?))
    }

    /// Submits a job; fails unless the server answers 200.
    pub async fn submit(&self, task: &str, job: Value) -> anyhow::Result<Value> {
        let (status, body) = self.post_raw(task, job.to_string()).await?;
        if status != 200 {
            bail!("submit answered {status}: {body}");
        }
        Ok(body)
    }

    /// Polls an execution URL until its status is final; returns the
    /// execution.
    pub async fn wait_finished(
        &self,
        execution_url: &str,
        limit: Duration,
    ) -> anyhow::Result<Value> {
        self.wait_for(execution_url, limit, |e| {
            !matches!(
                e["status"].as_str(),
                Some("enqueued" | "pulling" | "running")
            )
        })
        .await
    }

    /// Polls an execution URL until its `metadata[kind]` (`emailDispatch`,
    /// `webhookDispatch`) lists at least `count` notification records,
    /// which are stored once a delivery is answered; the execution and
    /// those records.
    pub async fn wait_dispatches(
        &self,
        execution_url: &str,
        kind: &str,
        count: usize,
    ) -> anyhow::Result<(Value, Vec<Value>)> {
        let records = |e: &Value| e["metadata"][kind].as_array().cloned().unwrap_or_default();
        let execution = self
            .wait_for(execution_url, Duration::from_secs(60), |e| {
                records(e).len() >= count
            })
            .await?;
        let dispatch = records(&execution);
        Ok((execution, dispatch))
    }

    /// Polls an execution URL until `done(execution)` holds.
    pub async fn wait_for(
        &self,
        execution_url: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let (status, body) = self.get(execution_url).await?;
            if status == 200 && done(&body["execution"]) {
                return Ok(body["execution"].clone());
            }
            if Instant::now() > deadline {
                bail!(
                    "gave up after {limit:?} waiting on {execution_url}: last {status} {body}\nserver log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}
