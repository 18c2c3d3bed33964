//! The `batch/v1` Job an execution runs as: named after the execution,
//! one pod, no retries of its own (fastlane keeps retries and back-off),
//! its deadline from the execution's timeout, and hardened: no privilege
//! escalation, the runtime's default seccomp profile, no API credentials
//! and no service links in the pod.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, HostAlias, LocalObjectReference, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use fastlane_sdk::{ExecutionSpec, PluginError, PullPolicy};

use crate::config::{ClusterConfig, is_dns_label};

/// The name of the one container in each job pod.
pub const CONTAINER: &str = "job";

/// The label naming the execution a Job or pod runs.
pub const EXECUTION_LABEL: &str = "fastlane.execution";

/// The annotation holding the whole task id (its label may be shortened).
pub const TASK_ANNOTATION: &str = "fastlane.task-id";

/// The Job's name for `execution_id`: `fastlane-<execution id>`.
pub fn job_name(execution_id: &str) -> Result<String, PluginError> {
    let name = format!("fastlane-{execution_id}");
    if is_dns_label(&name) {
        Ok(name)
    } else {
        Err(PluginError::permanent(format!(
            "execution id {execution_id:?} cannot name a Kubernetes Job \
             (lowercase letters, digits and '-', 54 at most)"
        )))
    }
}

/// `value` as a label value: as it is when Kubernetes allows it, else a
/// stable hash of it (the whole value goes in an annotation).
pub fn label_value(value: &str) -> String {
    let allowed = value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if allowed {
        return value.to_owned();
    }
    // FNV-1a: stable across builds and processes.
    let hash = value.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("h-{hash:016x}")
}

/// The labels of `spec`'s Job and pod, the cluster's own first.
pub fn labels(spec: &ExecutionSpec, cluster: &ClusterConfig) -> BTreeMap<String, String> {
    let mut labels = cluster.labels.clone();
    labels.insert(EXECUTION_LABEL.to_owned(), label_value(&spec.execution_id));
    labels.insert("fastlane.job".to_owned(), label_value(&spec.job_id));
    labels.insert("fastlane.task".to_owned(), label_value(&spec.task_id));
    labels
}

/// CPUs as a Kubernetes quantity, in millicores (rounded up).
fn cpus(cpus: f64) -> Quantity {
    Quantity(format!("{}m", (cpus * 1000.0).ceil().max(1.0) as u64))
}

/// The Job that runs `spec` on `cluster`.
pub fn job(spec: &ExecutionSpec, cluster: &ClusterConfig) -> Result<Job, PluginError> {
    let labels = labels(spec, cluster);
    let mut annotations = cluster.annotations.clone();
    annotations.insert(TASK_ANNOTATION.to_owned(), spec.task_id.clone());
    let meta = ObjectMeta {
        labels: Some(labels.clone()),
        annotations: Some(annotations.clone()),
        ..ObjectMeta::default()
    };

    let mut limits = BTreeMap::new();
    if let Some(limit) = spec.cpu_limit.or(cluster.cpu_limit) {
        limits.insert("cpu".to_owned(), cpus(limit));
    }
    if let Some(bytes) = spec.memory_limit.or(cluster.memory_limit) {
        limits.insert("memory".to_owned(), Quantity(bytes.to_string()));
    }
    let resources = (!limits.is_empty()).then(|| ResourceRequirements {
        // Asking for what it may use: the scheduler places it where that
        // fits (with both set, the pod is in the Guaranteed class).
        requests: Some(limits.clone()),
        limits: Some(limits),
        ..ResourceRequirements::default()
    });

    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(spec.image.clone()),
        // `args` replaces the image's CMD and keeps its ENTRYPOINT, as the
        // Docker executor does.
        args: Some(spec.argv.clone()),
        env: Some(
            spec.envs
                .iter()
                .map(|(name, value)| EnvVar {
                    name: name.clone(),
                    value: Some(value.clone()),
                    ..EnvVar::default()
                })
                .collect(),
        ),
        image_pull_policy: spec.pull_policy.map(|policy| {
            match policy {
                PullPolicy::IfNotPresent => "IfNotPresent",
                PullPolicy::Always => "Always",
                PullPolicy::Never => "Never",
            }
            .to_owned()
        }),
        resources,
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            // With `runAsNonRoot`, no capabilities either: the pod then
            // meets the `restricted` Pod Security profile.
            capabilities: cluster.run_as_non_root.then(|| Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };

    let mut host_aliases: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (host, ip) in &spec.extra_hosts {
        host_aliases.entry(ip).or_default().push(host.clone());
    }
    let pod = PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".to_owned()),
        service_account_name: cluster.service_account.clone(),
        // A job's pod gets no credentials to the cluster's API, nor the
        // namespace's services in its environment.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        node_selector: (!cluster.node_selector.is_empty()).then(|| cluster.node_selector.clone()),
        tolerations: (!cluster.tolerations.is_empty()).then(|| cluster.tolerations.clone()),
        image_pull_secrets: (!cluster.image_pull_secrets.is_empty()).then(|| {
            cluster
                .image_pull_secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        }),
        host_aliases: (!host_aliases.is_empty()).then(|| {
            host_aliases
                .into_iter()
                .map(|(ip, hostnames)| HostAlias {
                    ip: ip.to_owned(),
                    hostnames: Some(hostnames),
                })
                .collect()
        }),
        security_context: Some(PodSecurityContext {
            run_as_non_root: cluster.run_as_non_root.then_some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    };

    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&spec.execution_id)?),
            ..meta.clone()
        },
        spec: Some(JobSpec {
            // fastlane keeps retries and back-off: one pod, never replaced.
            backoff_limit: Some(0),
            active_deadline_seconds: spec
                .timeout
                .map(|t| i64::try_from(t.as_secs().max(1)).unwrap_or(i64::MAX)),
            ttl_seconds_after_finished: Some(
                i32::try_from(cluster.ttl_seconds_after_finished).unwrap_or(i32::MAX),
            ),
            template: PodTemplateSpec {
                metadata: Some(meta),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cluster(extra: serde_json::Value) -> ClusterConfig {
        let mut config = serde_json::json!({"name": "c", "inCluster": true});
        if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            config.extend(extra.clone());
        }
        crate::config::parse(serde_json::json!([config]))
            .expect("config")
            .remove(0)
    }

    fn spec() -> ExecutionSpec {
        ExecutionSpec {
            execution_id: "6f1c2a4e-0d5b-4b8e-9a51-3c7f0e2d9b10".into(),
            job_id: "j-1".into(),
            task_id: "reports:nightly@eu".into(),
            image: "busybox".into(),
            argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
            envs: [("WHO".to_owned(), "world".to_owned())].into(),
            extra_hosts: vec![("db.internal".into(), "10.1.2.3".into())],
            cpu_limit: Some(0.25),
            memory_limit: None,
            pool: None,
            pull_policy: Some(PullPolicy::Never),
            timeout: Some(Duration::from_secs(90)),
            start_before: None,
        }
    }

    #[test]
    fn the_job_runs_once_within_the_timeout_hardened_and_labelled() {
        let job = job(
            &spec(),
            &cluster(serde_json::json!({"memoryLimit": 1048576, "ttlSecondsAfterFinished": 900})),
        )
        .expect("job");
        let json = serde_json::to_value(&job).expect("json");
        let job_spec = &json["spec"];
        assert_eq!(
            json["metadata"]["name"],
            "fastlane-6f1c2a4e-0d5b-4b8e-9a51-3c7f0e2d9b10"
        );
        assert_eq!(
            (
                &job_spec["backoffLimit"],
                &job_spec["activeDeadlineSeconds"],
                &job_spec["ttlSecondsAfterFinished"]
            ),
            (
                &serde_json::json!(0),
                &serde_json::json!(90),
                &serde_json::json!(900)
            )
        );
        let pod = &job_spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(
            pod["hostAliases"],
            serde_json::json!([{"ip": "10.1.2.3", "hostnames": ["db.internal"]}])
        );
        let container = &pod["containers"][0];
        assert_eq!(
            container["args"],
            serde_json::json!(["sh", "-c", "echo hi"])
        );
        assert!(
            container.get("command").is_none(),
            "the image's entrypoint stays"
        );
        assert_eq!(container["imagePullPolicy"], "Never");
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        assert_eq!(
            container["resources"]["limits"],
            serde_json::json!({"cpu": "250m", "memory": "1048576"})
        );
        assert_eq!(
            container["env"],
            serde_json::json!([{"name": "WHO", "value": "world"}])
        );
        let labels = &json["spec"]["template"]["metadata"]["labels"];
        assert_eq!(
            labels["fastlane.execution"],
            "6f1c2a4e-0d5b-4b8e-9a51-3c7f0e2d9b10"
        );
        assert!(
            labels["fastlane.task"]
                .as_str()
                .is_some_and(|v| v.starts_with("h-")),
            "a task id with ':' and '@' is hashed: {labels}"
        );
        assert_eq!(
            json["spec"]["template"]["metadata"]["annotations"][TASK_ANNOTATION],
            "reports:nightly@eu"
        );
    }

    #[test]
    fn an_execution_id_that_cannot_name_a_job_is_refused() {
        let err = job_name("Not_A_Label").expect_err("refused");
        assert_eq!(err.kind(), fastlane_sdk::ErrorKind::Permanent);
        assert_eq!(label_value("ok-1.x"), "ok-1.x");
        assert_eq!(label_value("a:b"), label_value("a:b"), "stable");
    }
}
