//! fastlane as operators deploy it: `fastlane worker` processes next to
//! `fastlane api` ones ([`crate::Server::start_api`]), and what the engine
//! saw them do.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::start_fastlane;

/// A running `fastlane worker`, killed when dropped.
#[derive(Debug)]
pub struct Worker {
    child: Option<Child>,
    /// Its `-i`.
    pub id: String,
    dir: PathBuf,
}

impl Worker {
    /// Starts `fastlane worker -i <id> <args…>` with `env` (which needs
    /// `REDIS_URL` and `STORE_URL`), once it says it started.
    pub fn start(id: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("fastlane-worker-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let mut argv = vec!["worker", "-i", id];
        argv.extend_from_slice(args);
        let (child, line) = start_fastlane(&argv, env, &dir.join("worker.log"))?;
        let mut worker = Self {
            child: Some(child),
            id: id.to_owned(),
            dir,
        };
        if line != format!("worker {id} started") {
            worker.kill();
            bail!(
                "worker {id} did not start (printed {line:?}); its log:\n{}",
                worker.log()
            );
        }
        Ok(worker)
    }

    /// What the worker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("worker.log")).unwrap_or_default()
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
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Every container the engine creates for executions of the tasks
/// matching a label filter, counted per execution id as the engine reports
/// them on its event stream: the ground truth of "ran once".
#[derive(Debug)]
pub struct ContainerCreations {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl ContainerCreations {
    /// Follows the `create` events, on the engine listening at `tcp`
    /// (`host:port`), of containers labelled `fastlane.task=<task>` for each
    /// of `tasks`, from now on.
    pub async fn watch(tcp: &str, tasks: &[String]) -> anyhow::Result<Self> {
        let labels: Vec<String> = tasks.iter().map(|t| format!("fastlane.task={t}")).collect();
        let filters = json!({"type": ["container"], "event": ["create"], "label": labels});
        let since = chrono::Utc::now().timestamp() - 1;
        let mut url = reqwest::Url::parse(&format!("http://{tcp}/v1.41/events"))?;
        url.query_pairs_mut()
            .append_pair("since", &since.to_string())
            .append_pair("filters", &filters.to_string());
        let response = reqwest::Client::new()
            .get(url)
            .send()
            .await
            .context("following the engine's events")?
            .error_for_status()?;
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let sink = Arc::clone(&counts);
        let reader = tokio::spawn(async move {
            let mut response = response;
            let mut pending = Vec::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                        continue;
                    };
                    if let Some(execution) =
                        event["Actor"]["Attributes"]["fastlane.execution"].as_str()
                        && let Ok(mut counts) = sink.lock()
                    {
                        *counts.entry(execution.to_owned()).or_insert(0) += 1;
                    }
                }
            }
        });
        Ok(Self { counts, reader })
    }

    /// Containers created so far, by execution id. An error when the
    /// engine ended the event stream: counts would then be short.
    pub fn counts(&self) -> anyhow::Result<HashMap<String, usize>> {
        if self.reader.is_finished() {
            bail!("the engine ended its event stream early (was its events log rotated?)");
        }
        Ok(self.counts.lock().map(|c| c.clone()).unwrap_or_default())
    }
}

impl Drop for ContainerCreations {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
