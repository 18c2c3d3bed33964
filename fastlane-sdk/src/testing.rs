//! The compliance kit (feature `testing`): checks that a plugin keeps the
//! contract the server relies on. Call the checks from a `#[tokio::test]`
//! with your factory; each panics with a message naming the broken rule.
//!
//! ```ignore
//! #[tokio::test]
//! async fn my_executor_keeps_the_contract() {
//!     fastlane_sdk::testing::check_executor(&ExecutorSubject {
//!         factory: &MyExecutorFactory,
//!         config: serde_json::json!({}),
//!         invalid_config: serde_json::json!({"no such key": 1}),
//!         image: "busybox".into(),
//!         task_id: "compliance".into(),
//!         merged_streams: false,
//!     })
//!     .await;
//! }
//! ```
//!
//! Executor checks run real commands through `sh -c` (so the image, or the
//! machine for a process executor, needs a POSIX shell with `sleep`):
//! a run that exits 0 reports code 0 (the server marks it `done`); a
//! non-zero exit keeps its code; stdout and stderr stay apart (or, for an
//! executor whose backend merges them, such as Kubernetes, both are in
//! stdout, line for line, and stderr is empty); `output`
//! keeps at most its limit of each stream and marks the cut; `follow` stops
//! reading once the sink wants no more, even while the run goes on writing;
//! `start` is idempotent; `stop` ends a running run; dropping a `wait`
//! (cancellation) leaves the run alone; an unknown run and a bad
//! configuration give errors of the right kind.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{ErrorKind, PluginError};
use crate::executor::{
    Cut, ExecutionSpec, Executor, ExecutorFactory, LogSink, LogStream, OutputCollector, RunHandle,
};
use crate::model::{Execution, ExecutionStatus, Job, JobSpec};
use crate::notifier::{Delivery, DeliveryReport, NotificationEvent, NotifierFactory};

/// An executor under test and how to build it.
#[derive(Debug, Clone)]
pub struct ExecutorSubject<'a> {
    /// The factory under test.
    pub factory: &'a dyn ExecutorFactory,
    /// A configuration it accepts.
    pub config: serde_json::Value,
    /// A configuration it must refuse with [`ErrorKind::InvalidConfig`].
    pub invalid_config: serde_json::Value,
    /// The image runs use (ignored by executors without images).
    pub image: String,
    /// The task id runs belong to.
    pub task_id: String,
    /// The executor's backend merges stderr into stdout (Kubernetes keeps
    /// one log per container): the checks then expect every line in
    /// `stdout` (in either order across the two streams, as the backend's
    /// log may interleave them) and `stderr` empty.
    pub merged_streams: bool,
}

/// How long a check waits for a run that should end by itself.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs every executor check, one after another.
pub async fn check_executor(subject: &ExecutorSubject<'_>) {
    refuses_invalid_config(subject);
    let executor = build(subject);
    exit_zero_reports_success(subject, &executor).await;
    nonzero_exit_keeps_its_code(subject, &executor).await;
    start_is_idempotent(subject, &executor).await;
    follow_hands_over_what_the_run_writes(subject, &executor).await;
    output_keeps_at_most_its_limit(subject, &executor).await;
    follow_stops_when_the_sink_wants_no_more(subject, &executor).await;
    stop_ends_a_running_run(subject, &executor).await;
    dropping_wait_leaves_the_run_alone(subject, &executor).await;
    an_unknown_run_is_an_error(subject, &executor).await;
}

/// Builds the executor from the subject's good configuration.
pub fn build(subject: &ExecutorSubject<'_>) -> Arc<dyn Executor> {
    let what = format!(
        "executor {:?} building from its valid configuration {}",
        subject.factory.kind(),
        subject.config
    );
    succeeded(&what, subject.factory.build(subject.config.clone()))
}

/// A bad configuration is an [`ErrorKind::InvalidConfig`] error.
pub fn refuses_invalid_config(subject: &ExecutorSubject<'_>) {
    let what = format!("executor {:?}", subject.factory.kind());
    refused(
        &what,
        &subject.invalid_config,
        subject.factory.build(subject.invalid_config.clone()),
    );
}

/// The value of a call that must succeed; panics naming `what` otherwise.
#[track_caller]
fn succeeded<T>(what: &str, result: Result<T, PluginError>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what} failed: {err}"),
    }
}

/// Asserts that building from `config` was refused as `InvalidConfig`.
#[track_caller]
fn refused<T>(what: &str, config: &serde_json::Value, built: Result<T, PluginError>) {
    match built {
        Ok(_) => panic!("{what} accepted the invalid configuration {config}"),
        Err(err) => assert_eq!(
            err.kind(),
            ErrorKind::InvalidConfig,
            "a bad configuration must be an InvalidConfig error, got: {err}"
        ),
    }
}

/// A spec running `script` with `sh -c`, with a fresh execution id.
pub fn spec(subject: &ExecutorSubject<'_>, script: &str) -> ExecutionSpec {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let execution_id = format!("compliance-{}-{nanos}-{n}", std::process::id());
    ExecutionSpec {
        job_id: format!("{execution_id}-job"),
        execution_id,
        task_id: subject.task_id.clone(),
        image: subject.image.clone(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        envs: [("FASTLANE_COMPLIANCE".to_owned(), "1".to_owned())].into(),
        extra_hosts: Vec::new(),
        cpu_limit: None,
        memory_limit: None,
        pool: None,
        pull_policy: None,
        timeout: None,
        start_before: None,
    }
}

/// Places, prepares and starts `spec`, as the server does.
pub async fn start(executor: &Arc<dyn Executor>, spec: &ExecutionSpec) -> RunHandle {
    let placement = succeeded("place", executor.place(spec).await);
    succeeded(
        "prepare",
        executor
            .prepare(spec, &placement, &crate::executor::NoProgress)
            .await,
    );
    succeeded("start", executor.start(spec, &placement).await)
}

async fn wait_code(executor: &Arc<dyn Executor>, handle: &RunHandle) -> i64 {
    match tokio::time::timeout(PATIENCE, executor.wait(handle)).await {
        Ok(Ok(status)) => status.code,
        Ok(Err(err)) => panic!("wait failed: {err}"),
        Err(_) => panic!("the run did not end within {PATIENCE:?}"),
    }
}

async fn release(executor: &Arc<dyn Executor>, handle: &RunHandle) {
    succeeded("release", executor.release(handle).await);
}

/// A run that exits 0 reports code 0, and what it wrote, stdout and stderr
/// apart.
pub async fn exit_zero_reports_success(
    subject: &ExecutorSubject<'_>,
    executor: &Arc<dyn Executor>,
) {
    let spec = spec(
        subject,
        "echo to-stdout; echo to-stderr >&2; echo \"$FASTLANE_COMPLIANCE\"",
    );
    let handle = start(executor, &spec).await;
    assert_eq!(
        wait_code(executor, &handle).await,
        0,
        "`exit 0` must report code 0"
    );
    let output = succeeded("output", executor.output(&handle, u64::MAX).await);
    if subject.merged_streams {
        let mut lines: Vec<&str> = output.stdout.lines().collect();
        lines.sort_unstable();
        assert_eq!(
            (lines, output.stderr.as_str()),
            (vec!["1", "to-stderr", "to-stdout"], ""),
            "both streams (with the env var) are kept whole in stdout: {:?}",
            output.stdout
        );
    } else {
        assert_eq!(
            output.stdout, "to-stdout\n1\n",
            "stdout (with the env var) is kept whole and apart"
        );
        assert_eq!(
            output.stderr, "to-stderr\n",
            "stderr is kept apart from stdout"
        );
    }
    release(executor, &handle).await;
}

/// A non-zero exit keeps its code.
pub async fn nonzero_exit_keeps_its_code(
    subject: &ExecutorSubject<'_>,
    executor: &Arc<dyn Executor>,
) {
    let spec = spec(subject, "exit 3");
    let handle = start(executor, &spec).await;
    assert_eq!(
        wait_code(executor, &handle).await,
        3,
        "`exit 3` must report code 3"
    );
    // Waiting again on a finished run answers at once, with the same code.
    assert_eq!(
        wait_code(executor, &handle).await,
        3,
        "a second wait must give the same code"
    );
    release(executor, &handle).await;
}

/// Follows `handle` to its end; what it handed over, stdout and stderr.
async fn follow_to_the_end(executor: &Arc<dyn Executor>, handle: &RunHandle) -> (String, String) {
    let sink = OutputCollector::default();
    match tokio::time::timeout(PATIENCE, executor.follow(handle, &sink)).await {
        Ok(result) => succeeded("follow", result),
        Err(_) => panic!("follow did not return within {PATIENCE:?} of the run's end"),
    }
    let output = sink.into_output();
    (output.stdout, output.stderr)
}

/// `follow` returns when the run ends, having handed over exactly what
/// `output` reads, stream by stream; following again starts from the first
/// byte. (An executor that cannot follow hands over nothing.)
pub async fn follow_hands_over_what_the_run_writes(
    subject: &ExecutorSubject<'_>,
    executor: &Arc<dyn Executor>,
) {
    let spec = spec(
        subject,
        "echo first; sleep 1; echo oops >&2; echo \"second, héllo\"",
    );
    let handle = start(executor, &spec).await;
    let followed = follow_to_the_end(executor, &handle).await;
    assert_eq!(wait_code(executor, &handle).await, 0);
    let output = succeeded("output", executor.output(&handle, u64::MAX).await);
    if followed != (String::new(), String::new()) {
        assert_eq!(
            followed,
            (output.stdout.clone(), output.stderr.clone()),
            "follow must hand over what output reads, stdout and stderr apart"
        );
        assert_eq!(
            follow_to_the_end(executor, &handle).await,
            followed,
            "following a finished run again hands over all of it again"
        );
    }
    release(executor, &handle).await;
}

/// `output` keeps at most its limit of each stream, says how much more a
/// stream that went on past it had, and leaves a stream within it whole
/// and uncut (one exactly at the limit included).
pub async fn output_keeps_at_most_its_limit(
    subject: &ExecutorSubject<'_>,
    executor: &Arc<dyn Executor>,
) {
    let spec = spec(
        subject,
        "i=0; while [ $i -lt 200 ]; do echo 0123456789abcdef; i=$((i+1)); done; printf 0123456789 >&2",
    );
    let handle = start(executor, &spec).await;
    assert_eq!(wait_code(executor, &handle).await, 0);
    let output = succeeded("output", executor.output(&handle, 10).await);
    if subject.merged_streams {
        // Both streams start with the same ten bytes, whichever came first.
        assert_eq!(
            (
                output.stdout.as_str(),
                output.stdout_cut,
                output.stderr.as_str()
            ),
            (
                "0123456789",
                Some(Cut {
                    more_bytes: 3400,
                    complete: true
                }),
                ""
            ),
            "the merged log (3410 bytes) is cut at the limit of 10 bytes, with 3400 more"
        );
        release(executor, &handle).await;
        return;
    }
    assert_eq!(
        (output.stdout.as_str(), output.stdout_cut),
        (
            "0123456789",
            Some(Cut {
                more_bytes: 3390,
                complete: true
            })
        ),
        "stdout (3400 bytes) is cut at the limit of 10 bytes, with 3390 more"
    );
    assert_eq!(
        (output.stderr.as_str(), output.stderr_cut),
        ("0123456789", None),
        "stderr of exactly the limit is whole and not cut"
    );
    release(executor, &handle).await;
}

/// A sink that wants nothing more once it was handed `limit` bytes.
struct Wanting {
    limit: u64,
    seen: AtomicU64,
}

#[async_trait::async_trait]
impl LogSink for Wanting {
    async fn write(&self, _stream: LogStream, bytes: &[u8]) {
        self.seen.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }

    fn wants(&self, _stream: LogStream) -> bool {
        self.seen.load(Ordering::Relaxed) < self.limit
    }
}

/// `follow` returns once the sink wants neither stream, though the run
/// goes on writing: an executor must not read output the host throws
/// away. (An executor that cannot follow returns at once.)
pub async fn follow_stops_when_the_sink_wants_no_more(
    subject: &ExecutorSubject<'_>,
    executor: &Arc<dyn Executor>,
) {
    let spec = spec(
        subject,
        "while true; do echo 0123456789abcdef; echo 0123456789abcdef >&2; done",
    );
    let handle = start(executor, &spec).await;
    let sink = Wanting {
        limit: 4096,
        seen: AtomicU64::new(0),
    };
    match tokio::time::timeout(PATIENCE, executor.follow(&handle, &sink)).await {
        Ok(result) => succeeded("follow", result),
        Err(_) => panic!(
            "follow went on for {PATIENCE:?} after the sink stopped wanting output \
             ({} bytes handed over)",
            sink.seen.load(Ordering::Relaxed)
        ),
    }
    succeeded("stop", executor.stop(&handle, Duration::from_secs(1)).await);
    wait_code(executor, &handle).await;
    release(executor, &handle).await;
}

/// Starting the same execution twice finds the first run.
pub async fn start_is_idempotent(subject: &ExecutorSubject<'_>, executor: &Arc<dyn Executor>) {
    let spec = spec(subject, "sleep 1; exit 5");
    let first = start(executor, &spec).await;
    let second = start(executor, &spec).await;
    assert_eq!(
        first, second,
        "a second start of one execution id must return the first run"
    );
    assert_eq!(wait_code(executor, &first).await, 5);
    release(executor, &first).await;
}

/// `stop` ends a running run within its grace period (plus slack).
pub async fn stop_ends_a_running_run(subject: &ExecutorSubject<'_>, executor: &Arc<dyn Executor>) {
    let spec = spec(subject, "sleep 300");
    let handle = start(executor, &spec).await;
    let began = Instant::now();
    if let Err(err) = executor.stop(&handle, Duration::from_secs(1)).await {
        panic!("stop failed: {err}");
    }
    let code = wait_code(executor, &handle).await;
    assert_ne!(code, 0, "a stopped run must not report success");
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "stop took {:?} to end a `sleep 300`",
        began.elapsed()
    );
    release(executor, &handle).await;
}

/// Dropping a `wait` future (the server cancels waits on shutdown) leaves
/// the run going; a later wait sees its end.
pub async fn dropping_wait_leaves_the_run_alone(
    subject: &ExecutorSubject<'_>,
    executor: &Arc<dyn Executor>,
) {
    let spec = spec(subject, "sleep 2; exit 4");
    let handle = start(executor, &spec).await;
    let cancelled = tokio::time::timeout(Duration::from_millis(200), executor.wait(&handle)).await;
    assert!(
        cancelled.is_err(),
        "wait returned before the run ended: {cancelled:?}"
    );
    assert_eq!(
        wait_code(executor, &handle).await,
        4,
        "the run must go on after a dropped wait"
    );
    release(executor, &handle).await;
}

/// Waiting on a run the executor never started is a `NotFound` or
/// `Permanent` error, not a hang and not a success.
pub async fn an_unknown_run_is_an_error(
    subject: &ExecutorSubject<'_>,
    executor: &Arc<dyn Executor>,
) {
    let spec = spec(subject, "true");
    let placement = succeeded("place", executor.place(&spec).await);
    let handle = RunHandle {
        host: placement.host,
        id: spec.execution_id,
    };
    match tokio::time::timeout(PATIENCE, executor.wait(&handle)).await {
        Ok(Err(err)) => assert!(
            matches!(err.kind(), ErrorKind::NotFound | ErrorKind::Permanent),
            "an unknown run must be NotFound or Permanent, got {:?}: {err}",
            err.kind()
        ),
        Ok(Ok(status)) => panic!("waiting on an unknown run succeeded: {status:?}"),
        Err(_) => panic!("waiting on an unknown run hung"),
    }
}

/// A notifier under test.
#[derive(Debug, Clone)]
pub struct NotifierSubject<'a> {
    /// The factory under test.
    pub factory: &'a dyn NotifierFactory,
    /// A configuration it accepts.
    pub config: serde_json::Value,
    /// A configuration it must refuse with [`ErrorKind::InvalidConfig`].
    pub invalid_config: serde_json::Value,
    /// The target deliveries go to (a webhook object, an address, …).
    pub target: serde_json::Value,
}

/// Refuses the bad configuration, then delivers one notification of every
/// event to the target and asserts each was accepted. Returns the
/// deliveries made, in order, for the caller to compare with what the
/// target received.
pub async fn check_notifier(subject: &NotifierSubject<'_>) -> Vec<Delivery> {
    refused(
        "notifier",
        &subject.invalid_config,
        subject.factory.build(subject.invalid_config.clone()),
    );
    let notifier = succeeded(
        "building the notifier from its valid configuration",
        subject.factory.build(subject.config.clone()),
    );
    let mut sent = Vec::new();
    for (event, status, code) in [
        (NotificationEvent::Starts, ExecutionStatus::Running, None),
        (NotificationEvent::Succeeds, ExecutionStatus::Done, Some(0)),
        (NotificationEvent::Fails, ExecutionStatus::Failed, Some(2)),
        (
            NotificationEvent::Finishes,
            ExecutionStatus::Failed,
            Some(2),
        ),
    ] {
        let delivery = delivery(event, status, code, subject.target.clone());
        let report: DeliveryReport = succeeded(
            &format!("delivering {}", event.as_str()),
            notifier.deliver(&delivery).await,
        );
        assert!(
            report.accepted,
            "the target refused {}: {report:?}",
            event.as_str()
        );
        sent.push(delivery);
    }
    sent
}

/// A delivery of `event` about an execution in `status`.
pub fn delivery(
    event: NotificationEvent,
    status: ExecutionStatus,
    exit_code: Option<i64>,
    target: serde_json::Value,
) -> Delivery {
    let now = chrono::Utc::now();
    let job = Job::new(
        "compliance",
        "00000000-0000-4000-8000-000000000001",
        JobSpec::new("busybox", "true"),
        now,
    );
    let mut execution = Execution::enqueued(
        &job,
        "busybox",
        "true",
        None,
        now,
        "00000000-0000-4000-8000-000000000002".to_owned(),
    );
    execution.status = status;
    execution.exit_code = exit_code;
    Delivery {
        event,
        job,
        execution,
        target,
        task_url: "http://fastlane.invalid/tasks/compliance".to_owned(),
        job_url:
            "http://fastlane.invalid/tasks/compliance/jobs/00000000-0000-4000-8000-000000000001"
                .to_owned(),
        attempt: 1,
    }
}
