//! How a Job and its pod read as an execution's state: what the worker is
//! told while the pod waits (the status detail), and how its end maps to
//! an exit or an error. Pure functions over the API's objects.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};

use fastlane_sdk::ExitStatus;

use crate::manifest::CONTAINER;

/// Waiting reasons that mean the image cannot be had (yet).
const PULL_FAILURES: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// Waiting reasons that mean the container cannot be made as asked.
const START_FAILURES: [&str; 3] = [
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Where a pod is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not running yet; what it waits for, for the status detail.
    Waiting(String),
    /// No node can take it now.
    Unschedulable(String),
    /// Its image cannot be pulled (after a bounded wait the execution
    /// fails); `retry` is false when retrying cannot help
    /// (`InvalidImageName`, `ErrImageNeverPull`).
    CannotPull {
        /// The reason and the kubelet's message.
        message: String,
        /// Whether the kubelet keeps trying.
        retry: bool,
    },
    /// Its container cannot be made (a bad configuration): the execution
    /// fails after the same bounded wait.
    CannotStart(String),
    /// Its container runs.
    Running,
    /// Its container exited.
    Exited(ExitStatus),
    /// The pod failed without its container exiting (evicted, its node
    /// lost): why.
    Failed(String),
}

/// The state of `pod`.
pub fn pod_state(pod: &Pod) -> PodState {
    let status = pod.status.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == CONTAINER);
    let state = container.and_then(|c| c.state).unwrap_or_default();
    if let Some(terminated) = &state.terminated {
        return PodState::Exited(exit(terminated));
    }
    // A pod failed without its container's exit (evicted, its node lost):
    // its container may still read `running`.
    if status.phase.as_deref() == Some("Failed") {
        let reason = status.reason.clone().unwrap_or_else(|| "Failed".to_owned());
        return PodState::Failed(match &status.message {
            Some(message) => format!("{reason}: {message}"),
            None => reason,
        });
    }
    if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.clone().unwrap_or_default();
        let message = match &waiting.message {
            Some(message) => format!("{reason}: {message}"),
            None => reason.clone(),
        };
        if PULL_FAILURES.contains(&reason.as_str()) {
            let retry = matches!(reason.as_str(), "ErrImagePull" | "ImagePullBackOff");
            return PodState::CannotPull { message, retry };
        }
        if START_FAILURES.contains(&reason.as_str()) {
            return PodState::CannotStart(message);
        }
    }
    if state.running.is_some() {
        return PodState::Running;
    }
    let unscheduled = status
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        });
    if let Some(condition) = unscheduled {
        return PodState::Unschedulable(condition.message.unwrap_or_default());
    }
    let waiting = state.waiting.and_then(|w| w.reason).map_or_else(
        || "waiting to start".to_owned(),
        |r| format!("waiting: {r}"),
    );
    PodState::Waiting(waiting)
}

/// A terminated container's exit. `OOMKilled` and any reason other than
/// the kubelet's plain `Completed`/`Error` is kept as the error.
fn exit(terminated: &ContainerStateTerminated) -> ExitStatus {
    let code = i64::from(terminated.exit_code);
    let reason = terminated.reason.as_deref().unwrap_or_default();
    let error = match reason {
        "OOMKilled" => {
            Some("OOMKilled: the container went over its memory limit and was killed".to_owned())
        }
        "" | "Completed" | "Error" => None,
        other => Some(match &terminated.message {
            Some(message) => format!("{other}: {message}"),
            None => other.to_owned(),
        }),
    };
    ExitStatus { code, error }
}

/// Why `job` failed as a whole, when it did: its `Failed` condition's
/// reason and message. `DeadlineExceeded` means the timeout passed.
pub fn job_failure(job: &Job) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        // `FailureTarget` comes first (Kubernetes 1.27 on), while the
        // Job's pods are still being stopped.
        .find(|c| matches!(c.type_.as_str(), "Failed" | "FailureTarget") && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// True when `job` succeeded as a whole (its `Complete` condition).
pub fn job_complete(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                matches!(c.type_.as_str(), "Complete" | "SuccessCriteriaMet") && c.status == "True"
            })
        })
}

/// True when `job` has run longer than its `activeDeadlineSeconds`, by
/// the clock of the machine asking (the Job controller may not have said
/// so yet: before Kubernetes 1.31 it stops the pod first).
pub fn past_deadline(job: &Job, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(deadline) = job.spec.as_ref().and_then(|s| s.active_deadline_seconds) else {
        return false;
    };
    let Some(started) = job.status.as_ref().and_then(|s| s.start_time.as_ref()) else {
        return false;
    };
    let started = started.0.as_second();
    now.timestamp() >= started.saturating_add(deadline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "fastlane-e-abcde"},
            "status": status,
        }))
        .expect("a pod")
    }

    fn container(state: serde_json::Value) -> serde_json::Value {
        json!({"phase": "Running", "containerStatuses": [{
            "name": "job", "image": "busybox", "imageID": "", "ready": false,
            "restartCount": 0, "state": state,
        }]})
    }

    #[test]
    fn a_terminated_container_is_its_exit_and_oom_is_its_reason() {
        let done = pod(container(
            json!({"terminated": {"exitCode": 3, "reason": "Error"}}),
        ));
        assert_eq!(
            pod_state(&done),
            PodState::Exited(ExitStatus {
                code: 3,
                error: None
            })
        );
        let oom = pod(container(
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
        ));
        let PodState::Exited(exit) = pod_state(&oom) else {
            panic!("{:?}", pod_state(&oom));
        };
        assert_eq!(exit.code, 137);
        assert!(exit.error.is_some_and(|e| e.starts_with("OOMKilled")));
    }

    #[test]
    fn pull_errors_say_whether_the_kubelet_keeps_trying() {
        let backoff = pod(container(json!({"waiting": {
            "reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope:1\""}})));
        assert_eq!(
            pod_state(&backoff),
            PodState::CannotPull {
                message: "ImagePullBackOff: Back-off pulling image \"nope:1\"".into(),
                retry: true
            }
        );
        let invalid = pod(container(
            json!({"waiting": {"reason": "InvalidImageName"}}),
        ));
        assert!(matches!(
            pod_state(&invalid),
            PodState::CannotPull { retry: false, .. }
        ));
        let config = pod(container(json!({"waiting": {
            "reason": "CreateContainerConfigError", "message": "secret \"s\" not found"}})));
        assert_eq!(
            pod_state(&config),
            PodState::CannotStart("CreateContainerConfigError: secret \"s\" not found".into())
        );
    }

    #[test]
    fn an_unschedulable_pod_says_why_and_an_evicted_one_failed() {
        let pending = pod(json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu."}]}));
        assert_eq!(
            pod_state(&pending),
            PodState::Unschedulable("0/3 nodes are available: 3 Insufficient cpu.".into())
        );
        let creating = pod(container(
            json!({"waiting": {"reason": "ContainerCreating"}}),
        ));
        assert_eq!(
            pod_state(&creating),
            PodState::Waiting("waiting: ContainerCreating".into())
        );
        let evicted = pod(json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."}));
        assert_eq!(
            pod_state(&evicted),
            PodState::Failed("Evicted: The node was low on resource: memory.".into())
        );
    }

    #[test]
    fn a_pod_lost_with_its_node_failed_though_its_container_reads_running() {
        let mut status = container(json!({"running": {"startedAt": "2026-12-04T10:00:00Z"}}));
        status["phase"] = json!("Failed");
        status["reason"] = json!("NodeLost");
        assert_eq!(pod_state(&pod(status)), PodState::Failed("NodeLost".into()));
    }

    #[test]
    fn a_job_past_its_deadline_says_so() {
        let job: Job = serde_json::from_value(json!({"status": {"conditions": [
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
             "message": "Job was active longer than specified deadline"}]}}))
        .expect("a job");
        assert_eq!(
            job_failure(&job),
            Some((
                "DeadlineExceeded".into(),
                "Job was active longer than specified deadline".into()
            ))
        );
        let running: Job = serde_json::from_value(json!({
            "spec": {"activeDeadlineSeconds": 60, "template": {}},
            "status": {"startTime": "2026-12-04T10:00:00Z"}}))
        .expect("a job");
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("a time")
                .with_timezone(&chrono::Utc)
        };
        assert!(!past_deadline(&running, at("2026-12-04T10:00:59Z")));
        assert!(past_deadline(&running, at("2026-12-04T10:01:00Z")));
    }
}
