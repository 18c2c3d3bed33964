//! What the operator configures (`KUBERNETES_CLUSTERS`): clusters, routed
//! by task id, and how the Jobs of each are made. Checked when the executor
//! is built, each problem named by its key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Toleration;
use regex::Regex;
use serde::Deserialize;

use fastlane_sdk::PluginError;

/// The labels fastlane puts on every Job and pod; a cluster's own `labels`
/// may not use them.
pub const OWN_LABELS: [&str; 3] = ["fastlane.execution", "fastlane.job", "fastlane.task"];

/// One cluster: where its Jobs go and what they look like.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterConfig {
    /// How the cluster is named in `/status` and in each run's handle.
    pub name: String,
    /// A regular expression matched at the start of the task id; empty
    /// matches every task.
    #[serde(rename = "match", default)]
    pub pattern: String,
    /// A kubeconfig file to reach the cluster with.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use (its current one when unset).
    #[serde(default)]
    pub context: Option<String>,
    /// Reach the cluster fastlane runs in, with the pod's service account.
    #[serde(default)]
    pub in_cluster: bool,
    /// Where Jobs are made (the kubeconfig context's or the pod's own
    /// namespace when unset).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The service account job pods run as (the namespace's `default`
    /// when unset).
    #[serde(default)]
    pub service_account: Option<String>,
    /// Nodes job pods may run on, by label.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Taints job pods tolerate.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// Secrets (by name, in the namespace) kubelets pull images with.
    #[serde(default)]
    pub image_pull_secrets: Vec<String>,
    /// CPUs a run may use when its job sets no `cpuLimit`.
    #[serde(default)]
    pub cpu_limit: Option<f64>,
    /// Bytes of memory a run may use when its job sets no `memoryLimit`.
    #[serde(default)]
    pub memory_limit: Option<u64>,
    /// Labels added to every Job and pod.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every Job and pod.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// fastlane deletes each Job once its result is stored; this is how
    /// long Kubernetes keeps a finished Job whose result never was (a
    /// fastlane down all that time). At least 600: a fastlane down longer
    /// than this while an execution waited to start may start it again.
    #[serde(default = "default_ttl")]
    pub ttl_seconds_after_finished: u32,
    /// How many executions of the cluster run at once (a fastlane
    /// admission gate, like a Docker farm's).
    #[serde(default = "default_max_running")]
    pub max_running: u32,
    /// Job pods must not run as root (`runAsNonRoot`): images whose user
    /// is root then fail to start.
    #[serde(default)]
    pub run_as_non_root: bool,
    /// How long a pod may fail to pull its image (`ErrImagePull`,
    /// `ImagePullBackOff`) before its execution fails.
    #[serde(default = "default_image_pull_timeout")]
    pub image_pull_timeout_seconds: u64,
    /// Connection failures in a row after which the cluster gets no work
    /// for `circuitBreakerResetSeconds`.
    #[serde(default = "default_max_fails")]
    pub circuit_breaker_max_fails: u32,
    /// How long an unreachable cluster gets no work before it is tried
    /// again.
    #[serde(default = "default_reset_seconds")]
    pub circuit_breaker_reset_seconds: u64,
    /// `pattern`, compiled at load.
    #[serde(skip)]
    pub regex: Option<Regex>,
}

fn default_ttl() -> u32 {
    86_400
}

fn default_max_running() -> u32 {
    10
}

fn default_image_pull_timeout() -> u64 {
    120
}

fn default_max_fails() -> u32 {
    3
}

fn default_reset_seconds() -> u64 {
    30
}

impl ClusterConfig {
    /// True when this cluster runs the executions of `task_id`.
    pub fn matches(&self, task_id: &str) -> bool {
        self.regex.as_ref().is_some_and(|r| r.is_match(task_id))
    }
}

/// Reads `KUBERNETES_CLUSTERS` (a JSON array of clusters) and checks it.
pub fn parse(config: serde_json::Value) -> Result<Vec<ClusterConfig>, PluginError> {
    let bad =
        |message: String| PluginError::invalid_config(format!("KUBERNETES_CLUSTERS{message}"));
    let mut clusters: Vec<ClusterConfig> =
        serde_path_to_error::deserialize(config).map_err(|err| {
            let path = err.path().to_string();
            let at = if path == "." { String::new() } else { path };
            bad(format!("{at}: {}", err.into_inner()))
        })?;
    if clusters.is_empty() {
        return Err(bad(" names no cluster".to_owned()));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, cluster) in clusters.iter_mut().enumerate() {
        let at = |key: &str, message: &str| bad(format!("[{i}].{key} {message}"));
        if cluster.name.trim().is_empty() {
            return Err(at("name", "must not be empty"));
        }
        if !names.insert(cluster.name.clone()) {
            return Err(at(
                "name",
                &format!("{:?} names two clusters", cluster.name),
            ));
        }
        match (&cluster.kubeconfig, cluster.in_cluster) {
            (Some(_), true) => {
                return Err(at("inCluster", "cannot be set with kubeconfig: choose one"));
            }
            (None, false) => {
                return Err(bad(format!(
                    "[{i}] says neither kubeconfig nor inCluster: how is the cluster reached?"
                )));
            }
            (None, true) if cluster.context.is_some() => {
                return Err(at("context", "needs a kubeconfig"));
            }
            _ => {}
        }
        if let Some(path) = &cluster.kubeconfig {
            check_kubeconfig(path, cluster.context.as_deref())
                .map_err(|message| at("kubeconfig", &message))?;
        }
        if let Some(namespace) = &cluster.namespace
            && !is_dns_label(namespace)
        {
            return Err(at(
                "namespace",
                &format!("{namespace:?} is not a namespace name (a DNS label)"),
            ));
        }
        if cluster.ttl_seconds_after_finished < 600 {
            return Err(at("ttlSecondsAfterFinished", "must be at least 600"));
        }
        if cluster.max_running == 0 {
            return Err(at("maxRunning", "must be at least 1"));
        }
        if cluster.circuit_breaker_max_fails == 0 {
            return Err(at("circuitBreakerMaxFails", "must be at least 1"));
        }
        if let Some(cpus) = cluster.cpu_limit
            && !(cpus.is_finite() && cpus > 0.0)
        {
            return Err(at("cpuLimit", "must be a positive number of CPUs"));
        }
        if let Some(own) = cluster
            .labels
            .keys()
            .find(|k| OWN_LABELS.contains(&k.as_str()))
        {
            return Err(at(
                "labels",
                &format!("may not set {own:?}, which fastlane sets"),
            ));
        }
        let regex = Regex::new(&format!("^(?:{})", cluster.pattern))
            .map_err(|err| at("match", &format!("is not a regular expression: {err}")))?;
        cluster.regex = Some(regex);
    }
    Ok(clusters)
}

/// Reads the kubeconfig at `path` and checks it has `context` (or a
/// current one), so that a typo stops the server at start-up.
fn check_kubeconfig(path: &std::path::Path, context: Option<&str>) -> Result<(), String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .map_err(|err| format!("{}: cannot be read: {err}", path.display()))?;
    let wanted = context
        .map(str::to_owned)
        .or_else(|| kubeconfig.current_context.clone())
        .ok_or_else(|| format!("{} has no current-context; set context", path.display()))?;
    if !kubeconfig.contexts.iter().any(|c| c.name == wanted) {
        let known: Vec<&str> = kubeconfig
            .contexts
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        return Err(format!(
            "{} has no context {wanted:?} (it has {})",
            path.display(),
            known.join(", ")
        ));
    }
    Ok(())
}

/// A DNS-1123 label: what namespaces and Job names must be.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastlane_sdk::ErrorKind;
    use serde_json::json;

    fn refused(config: serde_json::Value) -> String {
        match parse(config) {
            Ok(clusters) => panic!("accepted: {clusters:?}"),
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::InvalidConfig);
                err.message().to_owned()
            }
        }
    }

    #[test]
    fn each_mistake_is_refused_by_the_key_it_is_in() {
        let cases = [
            (json!({}), "KUBERNETES_CLUSTERS: invalid type: map"),
            (json!([]), "names no cluster"),
            (json!([{"name": "a"}]), "neither kubeconfig nor inCluster"),
            (
                json!([{"name": "a", "inCluster": true, "nodeSelectr": {}}]),
                "[0].nodeSelectr: unknown field `nodeSelectr`",
            ),
            (
                json!([{"name": "a", "inCluster": true, "maxRunning": "ten"}]),
                "[0].maxRunning: invalid type: string",
            ),
            (
                json!([{"name": "a", "inCluster": true, "namespace": "Jobs_1"}]),
                "[0].namespace \"Jobs_1\" is not a namespace name",
            ),
            (
                json!([{"name": "a", "inCluster": true}, {"name": "a", "inCluster": true}]),
                "[1].name \"a\" names two clusters",
            ),
            (
                json!([{"name": "a", "inCluster": true, "labels": {"fastlane.task": "x"}}]),
                "[0].labels may not set \"fastlane.task\"",
            ),
            (
                json!([{"name": "a", "kubeconfig": "/nonexistent/kubeconfig"}]),
                "[0].kubeconfig /nonexistent/kubeconfig: cannot be read",
            ),
            (
                json!([{"name": "a", "inCluster": true, "match": "("}]),
                "[0].match is not a regular expression",
            ),
        ];
        for (config, expected) in cases {
            let message = refused(config.clone());
            assert!(message.contains(expected), "{config}: {message}");
        }
    }

    #[test]
    fn a_kubeconfig_without_the_context_named_is_refused_naming_those_it_has() {
        let dir = std::env::temp_dir().join(format!("fastlane-kube-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: one\nclusters:\n\
             - name: c\n  cluster: {server: \"http://127.0.0.1:1\"}\n\
             contexts:\n- name: one\n  context: {cluster: c, user: u}\n\
             users:\n- name: u\n  user: {}\n",
        )
        .expect("kubeconfig");
        let good = json!([{"name": "a", "kubeconfig": path}]);
        assert_eq!(parse(good).expect("accepted")[0].name, "a");
        let message = refused(json!([{"name": "a", "kubeconfig": path, "context": "two"}]));
        assert!(
            message.contains("has no context \"two\" (it has one)"),
            "{message}"
        );
        std::fs::remove_dir_all(dir).expect("cleaned up");
    }

    #[test]
    fn defaults_are_a_gate_of_ten_a_day_of_ttl_and_every_task() {
        let clusters = parse(json!([{"name": "a", "inCluster": true}])).expect("accepted");
        let a = &clusters[0];
        assert_eq!(
            (
                a.max_running,
                a.ttl_seconds_after_finished,
                a.image_pull_timeout_seconds
            ),
            (10, 86_400, 120)
        );
        assert!(a.matches("anything"));
    }
}
