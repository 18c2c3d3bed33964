//! A fake Kubernetes API server, for the Kubernetes executor's tests: no
//! API server can be installed on the machines the tests run on, so this
//! one speaks the part of the API the executor uses (Jobs: create, get,
//! list, delete; pods: get, list, watch, delete, log; `/version`), and its
//! "kubelet" runs each pod's container on the **real** container engine
//! the other tests use (`FASTLANE_TEST_DOCKER_TCP`): commands, exit codes,
//! output, image pulls and stops are the engine's own. What the fake adds
//! is Kubernetes' bookkeeping, as the API documents it: a Job makes one
//! pod; a pod whose `nodeSelector` the one node (`kubernetes.io/hostname:
//! fake-node`) lacks stays `Unschedulable`; a pull that fails is
//! `ErrImagePull`, then `ImagePullBackOff`; a Job past its
//! `activeDeadlineSeconds` fails with `DeadlineExceeded` and loses its pod;
//! a pod deleted with a grace period is stopped within it, then removed;
//! `ttlSecondsAfterFinished` deletes a finished Job. One thing the engine
//! here cannot tell (Podman on this kernel does not report OOM kills) is
//! told to the fake instead: [`FakeCluster::exit_reason`].
//!
//! Requests need `Authorization: Bearer <token>` from the kubeconfig the
//! fake writes ([`FakeCluster::kubeconfig`]).

mod api;
mod kubelet;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use poem::{EndpointExt, Route};
use serde_json::Value;
use tokio::sync::broadcast;

/// The node's labels: a `nodeSelector` asking for anything else leaves a
/// pod unschedulable.
const NODE_LABELS: [(&str, &str); 2] = [
    ("kubernetes.io/hostname", "fake-node"),
    ("kubernetes.io/os", "linux"),
];

/// The token the fake's kubeconfig carries.
const TOKEN: &str = "fake-cluster-token";

/// A fake API server on a loopback port; stopped (and its containers
/// removed) when dropped.
#[derive(Debug)]
pub struct FakeCluster {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// A kubeconfig for it (context `fake`, namespace `fastlane-test`).
    pub kubeconfig: PathBuf,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

/// One change, as a watch sends it.
#[derive(Debug, Clone)]
struct Change {
    version: u64,
    kind: &'static str,
    namespace: String,
    kind_of_change: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
struct Objects {
    version: u64,
    jobs: BTreeMap<(String, String), Value>,
    pods: BTreeMap<(String, String), Value>,
    /// Each pod's container on the engine.
    containers: HashMap<(String, String), String>,
    history: Vec<Change>,
}

#[derive(Debug)]
struct State {
    /// Names this fake's containers (`fake-kube=<id>`), for the clean-up.
    id: String,
    objects: Mutex<Objects>,
    changes: broadcast::Sender<Change>,
    engine: reqwest::Client,
    engine_url: String,
    /// Every request: `METHOD path?query`, then the body if any.
    requests: Mutex<Vec<String>>,
    /// Termination reasons to report instead of the engine's, by the
    /// execution label of the pod.
    reasons: Mutex<HashMap<String, String>>,
}

impl FakeCluster {
    /// Starts the fake API server.
    pub async fn start() -> anyhow::Result<Self> {
        let port = crate::smtp::free_port()?;
        let tcp = std::env::var("FASTLANE_TEST_DOCKER_TCP")
            .unwrap_or_else(|_| "127.0.0.1:23750".to_owned());
        let state = Arc::new(State {
            id: uuid::Uuid::new_v4().simple().to_string(),
            objects: Mutex::new(Objects::default()),
            changes: broadcast::channel(4096).0,
            engine: reqwest::Client::new(),
            engine_url: format!("http://{tcp}/v1.41"),
            requests: Mutex::new(Vec::new()),
            reasons: Mutex::new(HashMap::new()),
        });
        let app = Route::new()
            .at("/*path", api::serve)
            .data(Arc::clone(&state));
        let listener = poem::listener::TcpListener::bind(format!("127.0.0.1:{port}"));
        let acceptor = poem::listener::Listener::into_acceptor(listener).await?;
        let server = tokio::spawn(async move {
            if let Err(err) = poem::Server::new_with_acceptor(acceptor).run(app).await {
                eprintln!("fake API server stopped: {err}");
            }
        });
        let url = format!("http://127.0.0.1:{port}");
        let dir = std::env::temp_dir().join(format!("fastlane-fake-kube-{}", state.id));
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(&url))?;
        Ok(Self {
            url,
            kubeconfig,
            state,
            server,
        })
    }

    /// Every request so far: `METHOD path?query` and the body.
    pub fn requests(&self) -> Vec<String> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The Job `name` in `namespace`, as stored.
    pub fn job(&self, namespace: &str, name: &str) -> Option<Value> {
        let objects = self.state.lock();
        objects
            .jobs
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every Job ever created in `namespace`, as created (deleted ones
    /// too).
    pub fn created_jobs(&self, namespace: &str) -> Vec<Value> {
        let objects = self.state.lock();
        objects
            .history
            .iter()
            .filter(|c| c.kind == "jobs" && c.namespace == namespace && c.kind_of_change == "ADDED")
            .map(|c| c.object.clone())
            .collect()
    }

    /// The Jobs in `namespace`.
    pub fn jobs(&self, namespace: &str) -> Vec<Value> {
        let objects = self.state.lock();
        objects
            .jobs
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, job)| job.clone())
            .collect()
    }

    /// Makes the pod of execution `execution_id` report `reason` when its
    /// container ends (`OOMKilled`: the engine here does not say).
    pub fn exit_reason(&self, execution_id: &str, reason: &str) {
        self.state
            .reasons
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(execution_id.to_owned(), reason.to_owned());
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        self.server.abort();
        // The engine's containers of this fake go with it.
        let listed = std::process::Command::new("podman")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=fake-kube={}", self.state.id))
            .output();
        if let Ok(listed) = listed {
            let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let _ = std::process::Command::new("podman")
                    .args(["rm", "-f"])
                    .args(ids)
                    .output();
            }
        }
        if let Some(dir) = self.kubeconfig.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn kubeconfig_text(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
         clusters:\n- name: fake\n  cluster:\n    server: {url}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    \
         namespace: fastlane-test\n\
         users:\n- name: fake\n  user:\n    token: {TOKEN}\n"
    )
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A stream fed by `produce` through a channel.
fn async_stream<F, Fut>(
    produce: F,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(produce(sender));
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}
