//! One cluster: its API client (made on first use), its circuit breaker,
//! and the calls the executor makes, each error mapped to the kind the
//! worker acts on. Failing to reach the API server counts against the
//! circuit; any answer from it (an error status too) counts for it.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use fastlane_sdk::PluginError;
use fastlane_sdk::circuit::{Circuit, CircuitSettings, CircuitState};

use crate::config::ClusterConfig;
use crate::manifest::EXECUTION_LABEL;

/// How long connecting to the API server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one API call may take (watches and followed logs aside).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A cluster as the executor uses it.
#[derive(Debug)]
pub struct Cluster {
    /// What the operator configured.
    pub config: ClusterConfig,
    /// Whether the API server answers.
    pub circuit: Circuit,
    connected: OnceCell<Connected>,
}

/// A client to the API server and the namespace Jobs go to.
#[derive(Clone)]
pub struct Connected {
    /// The client.
    pub client: Client,
    /// The namespace Jobs are made in.
    pub namespace: String,
}

impl std::fmt::Debug for Connected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connected")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Connected {
    /// Jobs in the namespace.
    pub fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Pods in the namespace.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

impl Cluster {
    /// A cluster not connected to yet.
    pub fn new(config: ClusterConfig) -> Self {
        let settings = CircuitSettings {
            max_fails: config.circuit_breaker_max_fails,
            reset_timeout: Duration::from_secs(config.circuit_breaker_reset_seconds),
        };
        Self {
            config,
            circuit: Circuit::new(settings),
            connected: OnceCell::new(),
        }
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The client, made on first use from the kubeconfig or the pod's
    /// service account. A failure is not kept: the next call tries again.
    pub async fn connect(&self) -> Result<&Connected, PluginError> {
        let connected: Result<&Connected, PluginError> = self
            .connected
            .get_or_try_init(|| async {
                let mut config = if self.config.in_cluster {
                    Config::incluster().map_err(|err| {
                        PluginError::unavailable(format!(
                            "cluster {}: not running in a cluster: {err}",
                            self.name()
                        ))
                    })?
                } else {
                    let path = self
                        .config
                        .kubeconfig
                        .as_deref()
                        .unwrap_or(std::path::Path::new(""));
                    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|err| {
                        PluginError::unavailable(format!("cluster {}: {err}", self.name()))
                    })?;
                    let options = kube::config::KubeConfigOptions {
                        context: self.config.context.clone(),
                        ..Default::default()
                    };
                    Config::from_custom_kubeconfig(kubeconfig, &options)
                        .await
                        .map_err(|err| {
                            PluginError::unavailable(format!("cluster {}: {err}", self.name()))
                        })?
                };
                config.connect_timeout = Some(CONNECT_TIMEOUT);
                let namespace = self
                    .config
                    .namespace
                    .clone()
                    .unwrap_or_else(|| config.default_namespace.clone());
                let client = Client::try_from(config).map_err(|err| {
                    PluginError::unavailable(format!("cluster {}: {err}", self.name()))
                })?;
                Ok(Connected { client, namespace })
            })
            .await;
        if let Err(err) = &connected {
            self.circuit.failed(err.message());
        }
        connected
    }

    /// Runs one call, bounded in time, keeping the circuit up to date and
    /// mapping its error.
    pub async fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, PluginError> {
        let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => {
                let message = format!("{what}: no answer within {CALL_TIMEOUT:?}");
                self.circuit.failed(&message);
                return Err(PluginError::unavailable(format!(
                    "cluster {}: {message}",
                    self.name()
                )));
            }
        };
        self.observe(what, result)
    }

    /// Runs one call like [`Cluster::call`], but hands back an answer with
    /// one of the status `codes` (409 for a create, 404 for a delete) as
    /// that code instead of an error.
    pub async fn call_allowing<T>(
        &self,
        what: &str,
        codes: &[u16],
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, u16>, PluginError> {
        let allowed = |result: Result<T, kube::Error>| match result {
            Err(kube::Error::Api(status)) if codes.contains(&status.code) => Ok(Err(status.code)),
            other => other.map(Ok),
        };
        self.call(what, async { allowed(call.await) }).await
    }

    /// Keeps the circuit up to date with `result` and maps its error.
    pub fn observe<T>(&self, what: &str, result: Result<T, kube::Error>) -> Result<T, PluginError> {
        match result {
            Ok(value) => {
                self.circuit.succeeded();
                Ok(value)
            }
            Err(err) => {
                if is_unreachable(&err) {
                    self.circuit.failed(&err.to_string());
                } else {
                    self.circuit.succeeded();
                }
                Err(mapped(self.name(), what, &err))
            }
        }
    }

    /// The circuit's state for new work: an open circuit takes none.
    pub fn takes_work(&self) -> bool {
        self.circuit.state() != CircuitState::Open
    }

    /// Creates `job`, or finds the one made before for the same execution
    /// (a repeated start): never two Jobs for one execution.
    pub async fn create_or_adopt(&self, job: &Job) -> Result<Job, PluginError> {
        let connected = self.connect().await?;
        let jobs = connected.jobs();
        let name = job.metadata.name.clone().unwrap_or_default();
        match self
            .call_allowing(
                "creating the Job",
                &[409],
                jobs.create(&PostParams::default(), job),
            )
            .await?
        {
            Ok(created) => {
                tracing::info!(cluster = self.name(), job = %name, "job created");
                Ok(created)
            }
            Err(_conflict) => {
                let found = self.call("reading the Job", jobs.get(&name)).await?;
                let ours = |job: &Job| {
                    job.metadata
                        .labels
                        .as_ref()
                        .and_then(|labels| labels.get(EXECUTION_LABEL))
                        .cloned()
                };
                if ours(&found) != ours(job) {
                    return Err(PluginError::permanent(format!(
                        "cluster {}: a Job named {name} exists that is not this execution's",
                        self.name()
                    )));
                }
                tracing::info!(cluster = self.name(), job = %name, "job adopted");
                Ok(found)
            }
        }
    }

    /// The Job `name`, `None` when there is none.
    pub async fn job(&self, name: &str) -> Result<Option<Job>, PluginError> {
        let jobs = self.connect().await?.jobs();
        self.call("reading the Job", jobs.get_opt(name)).await
    }

    /// Deletes the Job `name`: its pod first, within `grace`, then the Job
    /// with foreground propagation. A Job already gone is fine.
    pub async fn delete(&self, name: &str, grace: Duration) -> Result<(), PluginError> {
        let connected = self.connect().await?;
        let pods = self
            .call(
                "listing the Job's pods",
                connected
                    .pods()
                    .list(&ListParams::default().labels(&format!("job-name={name}"))),
            )
            .await?;
        let gently = DeleteParams {
            grace_period_seconds: Some(u32::try_from(grace.as_secs()).unwrap_or(u32::MAX)),
            ..DeleteParams::default()
        };
        for pod in pods.items {
            let pod_name = pod.metadata.name.unwrap_or_default();
            // Deleted, or gone already (404): either will do.
            let _deleted_or_gone = self
                .call_allowing(
                    "deleting the pod",
                    &[404],
                    connected.pods().delete(&pod_name, &gently),
                )
                .await?;
        }
        let foreground = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..gently
        };
        let _deleted_or_gone = self
            .call_allowing(
                "deleting the Job",
                &[404],
                connected.jobs().delete(name, &foreground),
            )
            .await?;
        Ok(())
    }

    /// Deletes the finished Job `name` and its pod (in the background); a
    /// Job already gone is fine.
    pub async fn delete_job(&self, name: &str) -> Result<(), PluginError> {
        let jobs = self.connect().await?.jobs();
        let background = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        let _deleted_or_gone = self
            .call_allowing("deleting the Job", &[404], jobs.delete(name, &background))
            .await?;
        Ok(())
    }

    /// The newest pod of the execution, `None` when it has none.
    pub async fn pod(&self, execution_id: &str) -> Result<Option<Pod>, PluginError> {
        let pods = self.connect().await?.pods();
        let list = self
            .call(
                "listing the execution's pods",
                pods.list(&ListParams::default().labels(&selector(execution_id))),
            )
            .await?;
        Ok(newest(list.items))
    }
}

/// The label selector of an execution's Job and pod.
pub fn selector(execution_id: &str) -> String {
    format!(
        "{EXECUTION_LABEL}={}",
        crate::manifest::label_value(execution_id)
    )
}

/// The most recently created of `pods`.
pub fn newest(pods: Vec<Pod>) -> Option<Pod> {
    pods.into_iter()
        .max_by_key(|pod| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// True when `err` means the API server could not be reached (no answer
/// at all), as opposed to an answer that refused the call.
pub fn is_unreachable(err: &kube::Error) -> bool {
    matches!(
        err,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_)
    )
}

/// The kind of an API error, as the worker acts on it; messages end with
/// the code and reason (`(404 NotFound)`).
pub fn mapped(cluster: &str, what: &str, err: &kube::Error) -> PluginError {
    let kube::Error::Api(status) = err else {
        return if is_unreachable(err) {
            PluginError::unavailable(format!("cluster {cluster}: {what}: {err}"))
        } else {
            PluginError::retryable(format!("cluster {cluster}: {what}: {err}"))
        };
    };
    let message = format!(
        "cluster {cluster}: {what}: {} ({} {})",
        status.message, status.code, status.reason
    );
    match status.code {
        404 | 410 => PluginError::not_found(message),
        // Credentials or RBAC that do not allow fastlane's calls: an
        // operator's fix, while the work waits.
        401 | 403 => PluginError::unavailable(message),
        409 | 429 | 500..=599 => PluginError::retryable(message),
        _ => PluginError::permanent(message),
    }
}
