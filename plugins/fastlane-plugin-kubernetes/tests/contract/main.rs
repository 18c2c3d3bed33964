//! The Kubernetes executor keeps its contract with the cluster, told as
//! the operator and the worker see it.
//!
//! No Kubernetes API server can be installed on the machines these tests
//! run on, so they run against `fastlane_tests::kube::FakeCluster`: a fake
//! API server (the part of the API the executor uses) whose pods run on the
//! real container engine of the other tests. `real_cluster.rs` runs the
//! same story on a real cluster when `FASTLANE_TEST_KUBECONFIG` names one,
//! and is reported ignored otherwise.

mod real_cluster;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastlane_plugin_kubernetes::KubernetesExecutorFactory;
use fastlane_sdk::testing::{ExecutorSubject, check_executor, spec, start};
use fastlane_sdk::{
    ErrorKind, ExecutionSpec, Executor, ExecutorFactory, NoProgress, PluginError, Progress,
    RunHandle,
};
use fastlane_tests::kube::FakeCluster;
use serde_json::{Value, json};

/// The namespace the fake's kubeconfig names.
const NAMESPACE: &str = "fastlane-test";

/// A cluster configuration for `kubeconfig`, with `extra` keys.
fn cluster(kubeconfig: &std::path::Path, extra: Value) -> Value {
    let mut cluster = json!({"name": "fake", "kubeconfig": kubeconfig, "maxRunning": 5});
    if let (Some(cluster), Some(extra)) = (cluster.as_object_mut(), extra.as_object()) {
        cluster.extend(extra.clone());
    }
    json!([cluster])
}

fn subject(config: Value) -> ExecutorSubject<'static> {
    ExecutorSubject {
        factory: &KubernetesExecutorFactory,
        config: config.clone(),
        invalid_config: json!([{"name": "fake", "inCluster": true, "maxRuning": 1}]),
        image: fastlane_tests::image(),
        task_id: "k8s-contract".into(),
        merged_streams: true,
    }
}

fn executor(config: Value) -> Arc<dyn Executor> {
    match KubernetesExecutorFactory.build(config) {
        Ok(executor) => executor,
        Err(err) => panic!("the configuration was refused: {err}"),
    }
}

/// What `prepare` reported, in order.
#[derive(Debug, Default)]
struct Reports(Mutex<Vec<String>>);

impl Progress for Reports {
    fn report(&self, detail: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(detail.to_owned());
    }
}

impl Reports {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Places and prepares `spec`, for the error it fails with.
async fn prepare_error(
    executor: &Arc<dyn Executor>,
    spec: &ExecutionSpec,
    progress: &dyn Progress,
) -> PluginError {
    let placement = executor.place(spec).await.expect("placed");
    let prepared = tokio::time::timeout(
        Duration::from_secs(60),
        executor.prepare(spec, &placement, progress),
    )
    .await
    .expect("prepare gave up within a minute");
    match prepared {
        Ok(()) => panic!("prepared, though it could not be"),
        Err(err) => err,
    }
}

async fn wait(
    executor: &Arc<dyn Executor>,
    handle: &RunHandle,
) -> Result<fastlane_sdk::ExitStatus, PluginError> {
    tokio::time::timeout(Duration::from_secs(60), executor.wait(handle))
        .await
        .expect("the run ended within a minute")
}

#[tokio::test]
async fn the_executor_keeps_the_sdk_contract_on_the_fake_cluster() {
    let fake = FakeCluster::start().await.expect("fake cluster");
    check_executor(&subject(cluster(&fake.kubeconfig, json!({})))).await;
}

#[tokio::test]
async fn the_cluster_gets_one_hardened_job_per_execution_that_runs_within_its_timeout() {
    let fake = FakeCluster::start().await.expect("fake cluster");
    let config = cluster(&fake.kubeconfig, json!({"ttlSecondsAfterFinished": 600}));
    let executor = executor(config.clone());
    let spec = ExecutionSpec {
        envs: [("WHO".to_owned(), "world".to_owned())].into(),
        extra_hosts: vec![("db.internal".to_owned(), "10.1.2.3".to_owned())],
        memory_limit: Some(64 * 1024 * 1024),
        timeout: Some(Duration::from_secs(120)),
        ..spec(
            &subject(config.clone()),
            "echo hello $WHO; grep db.internal /etc/hosts",
        )
    };
    let handle = start(&executor, &spec).await;
    // A second start, and one from another process after a restart, find
    // the same Job.
    assert_eq!(start(&executor, &spec).await, handle);
    assert_eq!(start(&self::executor(config), &spec).await, handle);
    assert_eq!(fake.jobs(NAMESPACE).len(), 1, "one Job for one execution");

    let job = fake.job(NAMESPACE, &handle.id).expect("the Job");
    assert_eq!(handle.id, format!("fastlane-{}", spec.execution_id));
    let job_spec = &job["spec"];
    assert_eq!(
        (
            &job_spec["backoffLimit"],
            &job_spec["activeDeadlineSeconds"],
            &job_spec["ttlSecondsAfterFinished"]
        ),
        (&json!(0), &json!(120), &json!(600)),
        "fastlane keeps retries; the timeout is the Job's deadline: {job_spec}"
    );
    let labels = &job["metadata"]["labels"];
    assert_eq!(labels["fastlane.execution"], spec.execution_id.as_str());
    assert_eq!(labels["fastlane.job"], spec.job_id.as_str());
    assert_eq!(labels["fastlane.task"], "k8s-contract");
    let pod = &job_spec["template"]["spec"];
    assert_eq!(
        pod["automountServiceAccountToken"], false,
        "no API credentials in jobs"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(container["resources"]["limits"]["memory"], "67108864");

    let exit = wait(&executor, &handle).await.expect("exited");
    assert_eq!(exit.code, 0);
    let output = executor.output(&handle, 1 << 20).await.expect("output");
    assert_eq!(output.stdout, "hello world\n10.1.2.3\tdb.internal\n");
    assert_eq!(
        output.stderr, "",
        "Kubernetes merges stderr into the one log"
    );

    // Its result stored, the Job goes; starting it again finds none and
    // makes none: the run is not run twice.
    executor.release(&handle).await.expect("released");
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.job(NAMESPACE, &handle.id).is_some() {
        assert!(Instant::now() < deadline, "the released Job was kept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let placement = executor.place(&spec).await.expect("placed");
    let err = executor
        .start(&spec, &placement)
        .await
        .expect_err("no Job to start");
    assert_eq!(err.kind(), ErrorKind::Lost, "{err}");
    assert_eq!(fake.created_jobs(NAMESPACE).len(), 1);
}

#[tokio::test]
async fn a_job_named_like_ours_that_is_not_ours_is_refused_not_adopted() {
    let fake = FakeCluster::start().await.expect("fake cluster");
    let config = cluster(&fake.kubeconfig, json!({}));
    let executor = executor(config.clone());
    let spec = spec(&subject(config), "true");
    let stranger = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": format!("fastlane-{}", spec.execution_id),
                     "labels": {"fastlane.execution": "someone-else"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "nodeSelector": {"nowhere": "1"},
                 "containers": [{"name": "job", "image": "busybox"}]}}}});
    let created = reqwest::Client::new()
        .post(format!(
            "{}/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
            fake.url
        ))
        .bearer_auth("fake-cluster-token")
        .json(&stranger)
        .send()
        .await
        .expect("posted");
    assert_eq!(created.status(), 201);
    let err = prepare_error(&executor, &spec, &NoProgress).await;
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("is not this execution's"), "{err}");
}

#[tokio::test]
async fn an_oom_kill_fails_the_run_with_its_reason() {
    let fake = FakeCluster::start().await.expect("fake cluster");
    let config = cluster(&fake.kubeconfig, json!({}));
    let executor = executor(config.clone());
    let spec = spec(&subject(config), "sleep 1; exit 137");
    fake.exit_reason(&spec.execution_id, "OOMKilled");
    let handle = start(&executor, &spec).await;
    let exit = wait(&executor, &handle).await.expect("exited");
    assert_eq!(exit.code, 137);
    assert!(
        exit.error
            .as_deref()
            .is_some_and(|e| e.starts_with("OOMKilled")),
        "{exit:?}"
    );
}

#[tokio::test]
async fn a_job_past_its_deadline_is_timed_out_by_the_cluster() {
    let fake = FakeCluster::start().await.expect("fake cluster");
    let config = cluster(&fake.kubeconfig, json!({}));
    let executor = executor(config.clone());
    let spec = ExecutionSpec {
        timeout: Some(Duration::from_secs(2)),
        ..spec(&subject(config), "sleep 60")
    };
    let handle = start(&executor, &spec).await;
    let began = Instant::now();
    let err = wait(&executor, &handle).await.expect_err("timed out");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(err.message().contains("timed out after 2 seconds"), "{err}");
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_naming_it_after_a_bounded_wait() {
    let fake = FakeCluster::start().await.expect("fake cluster");
    let config = cluster(&fake.kubeconfig, json!({"imagePullTimeoutSeconds": 2}));
    let executor = executor(config.clone());
    let spec = ExecutionSpec {
        image: "127.0.0.1:9/fastlane/absent:1".into(),
        ..spec(&subject(config), "true")
    };
    let reports = Reports::default();
    let began = Instant::now();
    let err = prepare_error(&executor, &spec, &reports).await;
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    assert!(
        err.message()
            .contains("the image 127.0.0.1:9/fastlane/absent:1 cannot be pulled")
            && (err.message().contains("ErrImagePull")
                || err.message().contains("ImagePullBackOff")),
        "{err}"
    );
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "it waited for the kubelet to retry"
    );
    assert!(
        reports
            .all()
            .iter()
            .any(|r| r.starts_with("pulling 127.0.0.1:9/fastlane/absent:1: ")),
        "{:?}",
        reports.all()
    );
    let name = format!("fastlane-{}", spec.execution_id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.job(NAMESPACE, &name).is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        fake.job(NAMESPACE, &name).is_none(),
        "the failed Job is deleted"
    );
}

#[tokio::test]
async fn an_unschedulable_pod_waits_saying_why_until_the_job_expires() {
    let fake = FakeCluster::start().await.expect("fake cluster");
    let config = cluster(&fake.kubeconfig, json!({"nodeSelector": {"disk": "ssd"}}));
    let executor = executor(config.clone());
    let spec = ExecutionSpec {
        start_before: Some(chrono::Utc::now() + chrono::Duration::seconds(3)),
        ..spec(&subject(config), "true")
    };
    let reports = Reports::default();
    let err = prepare_error(&executor, &spec, &reports).await;
    assert_eq!(err.kind(), ErrorKind::Expired, "{err}");
    assert!(
        reports
            .all()
            .iter()
            .any(|r| r.starts_with("waiting for a node: 0/1 nodes are available")),
        "the status detail says why it waits: {:?}",
        reports.all()
    );
}

#[tokio::test]
async fn stop_deletes_the_pod_within_the_grace_period_then_the_job() {
    let fake = FakeCluster::start().await.expect("fake cluster");
    let config = cluster(&fake.kubeconfig, json!({}));
    let executor = executor(config.clone());
    let spec = spec(&subject(config), "echo started; sleep 300");
    let handle = start(&executor, &spec).await;
    executor
        .stop(&handle, Duration::from_secs(1))
        .await
        .expect("stopped");
    let exit = wait(&executor, &handle).await.expect("ended");
    assert_ne!(exit.code, 0, "a stopped run is no success");
    let requests = fake.requests();
    let deleted_pod = requests
        .iter()
        .find(|r| {
            r.starts_with(&format!(
                "DELETE /api/v1/namespaces/{NAMESPACE}/pods/{}-",
                handle.id
            ))
        })
        .unwrap_or_else(|| panic!("no pod deleted: {requests:#?}"));
    assert!(
        deleted_pod.contains("\"gracePeriodSeconds\":1"),
        "{deleted_pod}"
    );
    let deleted_job = requests
        .iter()
        .find(|r| {
            r.starts_with(&format!(
                "DELETE /apis/batch/v1/namespaces/{NAMESPACE}/jobs/{}",
                handle.id
            ))
        })
        .unwrap_or_else(|| panic!("no Job deleted: {requests:#?}"));
    assert!(
        deleted_job.contains("\"propagationPolicy\":\"Foreground\""),
        "{deleted_job}"
    );
    executor.release(&handle).await.expect("released");
}

#[tokio::test]
async fn status_lists_the_cluster_with_the_jobs_running_there() {
    let fake = FakeCluster::start().await.expect("fake cluster");
    let config = cluster(&fake.kubeconfig, json!({}));
    let executor = executor(config.clone());
    let spec = spec(&subject(config), "sleep 30");
    let handle = start(&executor, &spec).await;
    let status = executor.status().await;
    assert_eq!(status.hosts.len(), 1);
    let host = &status.hosts[0];
    assert_eq!(
        (
            host.host.as_str(),
            host.available,
            host.circuit.as_str(),
            host.running
        ),
        ("fake", true, "closed", 1),
        "{host:?}"
    );
    assert_eq!(
        status.running[0].execution_id.as_deref(),
        Some(spec.execution_id.as_str())
    );
    executor
        .stop(&handle, Duration::ZERO)
        .await
        .expect("stopped");
}

#[tokio::test]
async fn an_unreachable_api_server_makes_work_wait_and_opens_the_circuit() {
    let port = fastlane_tests::smtp::free_port().expect("a free port");
    let dir = std::env::temp_dir().join(format!("fastlane-kube-down-{port}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: down\nclusters:\n- name: down\n  \
             cluster: {{server: \"http://127.0.0.1:{port}\"}}\ncontexts:\n- name: down\n  \
             context: {{cluster: down, user: u}}\nusers:\n- name: u\n  user: {{token: t}}\n"
        ),
    )
    .expect("kubeconfig");
    let config = cluster(
        &kubeconfig,
        json!({"circuitBreakerMaxFails": 2, "circuitBreakerResetSeconds": 600}),
    );
    let executor = executor(config.clone());
    let spec = spec(&subject(config), "true");
    for _ in 0..2 {
        let placement = executor
            .place(&spec)
            .await
            .expect("placed while it may answer");
        let err = executor
            .prepare(&spec, &placement, &NoProgress)
            .await
            .expect_err("nothing answers");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "work waits: {err}");
    }
    let err = executor
        .place(&spec)
        .await
        .expect_err("the circuit is open");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("fake does not answer"), "{err}");
    let status = executor.status().await;
    let host = &status.hosts[0];
    assert!(!host.available && host.circuit == "open", "{host:?}");
    assert!(host.error.is_some(), "{host:?}");
    std::fs::remove_dir_all(dir).expect("cleaned up");
}

#[tokio::test]
async fn credentials_the_cluster_refuses_make_work_wait_instead_of_failing_it() {
    let fake = FakeCluster::start().await.expect("fake cluster");
    let text = std::fs::read_to_string(&fake.kubeconfig).expect("kubeconfig");
    let wrong = fake.kubeconfig.with_file_name("wrong-token");
    std::fs::write(&wrong, text.replace("fake-cluster-token", "expired")).expect("written");
    let config = cluster(&wrong, json!({}));
    let executor = executor(config.clone());
    let spec = spec(&subject(config), "true");
    let placement = executor.place(&spec).await.expect("placed");
    let err = executor
        .prepare(&spec, &placement, &NoProgress)
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("401"), "{err}");
}
