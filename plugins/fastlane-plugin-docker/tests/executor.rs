//! The Docker executor against a real engine (the Podman service that
//! `scripts/services.sh` starts; `FASTLANE_TEST_DOCKER_UNIX` names it).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fastlane_plugin_docker::DockerExecutorFactory;
use fastlane_sdk::{ErrorKind, ExecutionSpec, Executor, ExecutorFactory, NoProgress};
use serde_json::json;

fn engine() -> String {
    std::env::var("FASTLANE_TEST_DOCKER_UNIX")
        .unwrap_or_else(|_| "unix:///run/fastlane/podman.sock".to_owned())
}

fn executor(farms: serde_json::Value) -> std::sync::Arc<dyn Executor> {
    DockerExecutorFactory
        .build(json!({ "farms": farms }))
        .expect("valid config")
}

fn local() -> std::sync::Arc<dyn Executor> {
    executor(json!([{"match": "", "hosts": [engine()]}]))
}

fn spec(argv: &[&str]) -> ExecutionSpec {
    ExecutionSpec {
        execution_id: uuid::Uuid::new_v4().to_string(),
        job_id: uuid::Uuid::new_v4().to_string(),
        task_id: "executor-test".to_owned(),
        image: std::env::var("FASTLANE_TEST_IMAGE").unwrap_or_else(|_| "busybox".to_owned()),
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        envs: BTreeMap::from([("WHO".to_owned(), "world".to_owned())]),
        extra_hosts: vec![("db.internal".to_owned(), "10.1.2.3".to_owned())],
        cpu_limit: None,
        memory_limit: None,
        pool: None,
        pull_policy: None,
        timeout: None,
        start_before: None,
    }
}

#[tokio::test]
async fn a_run_reports_its_exit_code_and_keeps_stdout_and_stderr_apart() {
    let executor = local();
    let spec = spec(&[
        "sh",
        "-c",
        "echo hello $WHO; grep db.internal /etc/hosts >&2; exit 7",
    ]);
    let placement = executor.place(&spec).await.expect("placed");
    executor
        .prepare(&spec, &placement, &NoProgress)
        .await
        .expect("image ready");
    let handle = executor.start(&spec, &placement).await.expect("started");
    let exit = executor.wait(&handle).await.expect("exited");
    assert_eq!(exit.code, 7);
    let output = executor.output(&handle, u64::MAX).await.expect("output");
    assert_eq!(output.stdout, "hello world\n");
    assert!(output.stderr.contains("10.1.2.3"), "{:?}", output.stderr);
    executor.release(&handle).await.expect("released");
}

#[tokio::test]
async fn starting_the_same_execution_twice_finds_the_first_container() {
    let executor = local();
    let spec = spec(&["sh", "-c", "sleep 1; echo once"]);
    let placement = executor.place(&spec).await.expect("placed");
    let first = executor.start(&spec, &placement).await.expect("started");
    let second = executor.start(&spec, &placement).await.expect("adopted");
    assert_eq!(first, second);
    let exit = executor.wait(&second).await.expect("exited");
    assert_eq!(exit.code, 0);
    assert_eq!(
        executor
            .output(&first, u64::MAX)
            .await
            .expect("output")
            .stdout,
        "once\n"
    );
    executor.release(&first).await.expect("released");
    // Released twice is fine: the container is already defunct.
    executor.release(&first).await.expect("released again");
}

#[tokio::test]
async fn stop_ends_a_running_container_within_the_grace_period() {
    let executor = local();
    let spec = spec(&["sleep", "60"]);
    let placement = executor.place(&spec).await.expect("placed");
    let handle = executor.start(&spec, &placement).await.expect("started");
    let began = Instant::now();
    executor
        .stop(&handle, Duration::from_secs(1))
        .await
        .expect("stopped");
    let exit = executor.wait(&handle).await.expect("exited");
    assert_ne!(exit.code, 0);
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "{:?}",
        began.elapsed()
    );
    executor.release(&handle).await.expect("released");
}

#[tokio::test]
async fn a_command_the_image_lacks_is_a_permanent_error() {
    let executor = local();
    let spec = spec(&["no-such-binary-here"]);
    let placement = executor.place(&spec).await.expect("placed");
    let err = executor
        .start(&spec, &placement)
        .await
        .expect_err("cannot start");
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
}

#[tokio::test]
async fn placement_errors_say_whether_to_wait_or_give_up() {
    let executor = executor(json!([{"match": "only-this", "hosts": [engine()]}]));
    let err = executor.place(&spec(&["true"])).await.expect_err("no farm");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("executor-test"), "{err}");

    // A lone host that is down is found out when the image is readied.
    let executor = executor_down();
    let spec = spec(&["true"]);
    let placement = executor.place(&spec).await.expect("the only host");
    let err = executor
        .prepare(&spec, &placement, &NoProgress)
        .await
        .expect_err("host down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("127.0.0.1:9"), "{err}");

    // With a choice to make, every host of the farm is asked first.
    let farm_down = self::executor(json!({"match": "", "hosts": ["127.0.0.1:9", "127.0.0.1:11"]}));
    let err = farm_down.place(&spec).await.expect_err("farm down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

fn executor_down() -> std::sync::Arc<dyn Executor> {
    executor(json!({"match": "", "hosts": ["127.0.0.1:9"]}))
}

#[tokio::test]
async fn status_lists_the_hosts_and_the_running_containers() {
    let executor = local();
    let spec = spec(&["sleep", "5"]);
    let placement = executor.place(&spec).await.expect("placed");
    let handle = executor.start(&spec, &placement).await.expect("started");
    let status = executor.status().await;
    assert!(
        status
            .hosts
            .iter()
            .any(|h| h.host == engine() && h.available)
    );
    assert!(
        status
            .running
            .iter()
            .any(|c| c.id == handle.id && c.execution_id.as_deref() == Some(&spec.execution_id))
    );
    executor
        .stop(&handle, Duration::from_secs(0))
        .await
        .expect("stopped");
    executor.release(&handle).await.expect("released");
}

/// The container's own view of its memory and CPU limits (cgroup v2, else v1).
const READ_LIMITS: &str = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
     cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us";

async fn limits_seen_by(executor: &std::sync::Arc<dyn Executor>, spec: &ExecutionSpec) -> String {
    let placement = executor.place(spec).await.expect("placed");
    let handle = executor.start(spec, &placement).await.expect("started");
    executor.wait(&handle).await.expect("exited");
    let output = executor.output(&handle, u64::MAX).await.expect("output");
    executor.release(&handle).await.expect("released");
    output.stdout
}

#[tokio::test]
async fn a_job_s_cpu_and_memory_limits_reach_the_container_and_farm_defaults_fill_in() {
    let mut limited = spec(&["sh", "-c", READ_LIMITS]);
    limited.memory_limit = Some(64 * 1024 * 1024);
    limited.cpu_limit = Some(0.5);
    let seen = limits_seen_by(&local(), &limited).await;
    assert!(seen.starts_with("67108864\n"), "{seen:?}");
    assert!(seen.contains("50000"), "half a CPU: {seen:?}");

    let with_defaults = executor(json!([{
        "match": "", "hosts": [engine()], "memoryLimit": 33554432, "cpuLimit": 0.25
    }]));
    let seen = limits_seen_by(&with_defaults, &spec(&["sh", "-c", READ_LIMITS])).await;
    assert!(seen.starts_with("33554432\n"), "{seen:?}");
    assert!(seen.contains("25000"), "a quarter CPU: {seen:?}");
}

#[tokio::test]
async fn a_prune_policy_spares_the_newest_and_the_young() {
    use fastlane_plugin_docker::{DockerExecutor, DockerExecutorConfig, PruneKeep};
    let executor = local();
    let spec = spec(&["true"]);
    let placement = executor.place(&spec).await.expect("placed");
    let handle = executor.start(&spec, &placement).await.expect("started");
    executor.wait(&handle).await.expect("exited");
    executor.release(&handle).await.expect("now defunct");

    let pruner = DockerExecutor::new(
        DockerExecutorConfig::from_json(json!({"farms": [{"hosts": [engine()]}]})).expect("config"),
    )
    .expect("executor");
    for keep in [
        PruneKeep {
            newest: usize::MAX,
            younger_than_seconds: 0,
        },
        PruneKeep {
            newest: 0,
            younger_than_seconds: 3600,
        },
    ] {
        let (removed, errors) = pruner.prune_defunct_keeping(&keep).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert!(
            !removed.iter().any(|r| r.id == handle.id),
            "{keep:?} removed the fresh container"
        );
    }
}

/// Sends one request to the engine's API; returns the status code.
async fn engine_request(method: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = engine();
    let socket = socket.trim_start_matches("unix://");
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("the engine's socket");
    let request = format!("{method} {path} HTTP/1.0\r\nHost: engine\r\nContent-Length: 0\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("answer read");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// An image the host held a moment ago is taken on trust (no engine round
/// trip per execution); one removed meanwhile is pulled again at start, and
/// where it cannot be pulled, the error names it.
#[tokio::test]
async fn an_image_removed_after_it_was_seen_is_pulled_again_at_start() {
    let executor = local();
    let base = spec(&["true"]).image;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let image = format!("fastlane-test/trusted:{tag}");
    let tagged = engine_request(
        "POST",
        &format!("/images/{base}/tag?repo=fastlane-test/trusted&tag={tag}"),
    )
    .await;
    assert_eq!(tagged, 201, "tagging {base}");
    let first = ExecutionSpec {
        image: image.clone(),
        ..spec(&["true"])
    };
    let placement = executor.place(&first).await.expect("placed");
    executor
        .prepare(&first, &placement, &NoProgress)
        .await
        .expect("seen");
    let handle = executor.start(&first, &placement).await.expect("started");
    assert_eq!(executor.wait(&handle).await.expect("exited").code, 0);
    executor.release(&handle).await.expect("released");

    let removed = engine_request("DELETE", &format!("/images/{image}?force=true")).await;
    assert_eq!(removed, 200, "removing {image}");
    let second = ExecutionSpec {
        image: image.clone(),
        ..spec(&["true"])
    };
    executor
        .prepare(&second, &placement, &NoProgress)
        .await
        .expect("taken on trust");
    let err = executor
        .start(&second, &placement)
        .await
        .expect_err("the image is gone, and no registry has it");
    assert!(
        err.message().contains(&image) && err.message().contains("could not be pulled"),
        "{err}"
    );
}
