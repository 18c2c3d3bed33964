//! The behaviour every [`Store`] must have, as test functions each
//! implementation's tests run against a fresh, empty store of its own (see
//! the `store_conformance!` macro at the bottom).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use fastlane_sdk::{DispatchRecord, Execution, ExecutionStatus, Job, JobSpec};

use super::{LogPiece, LogSource, LogTotals, Store, Submission};

mod admission;
mod listings;
mod messages;

pub use admission::{
    a_gate_admits_up_to_its_limit_then_lines_up, an_execution_takes_the_first_choice_with_room,
    concurrent_admissions_keep_the_limit, executions_line_up_on_submit_and_a_pass_lets_them_go,
    paused_gates_rates_and_priorities_hold_in_the_store,
};
pub use listings::{
    a_tasks_jobs_come_in_pages_with_their_newest_execution,
    a_tasks_last_run_is_the_status_of_its_newest_execution,
    executions_that_ended_lately_come_latest_first,
    of_executions_created_together_the_last_written_is_the_newest,
    tasks_come_in_pages_and_search_matches_whole_words,
    the_soonest_scheduled_jobs_come_first_and_all_are_counted,
};
pub use messages::{
    an_idempotency_key_writes_once_until_it_expires, concurrent_submissions_each_land_whole,
    owed_deliveries_stay_until_settled, the_outbox_keeps_messages_with_their_job_until_published,
};

/// A fixed instant, so stored times compare exactly.
fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
}

fn job(task: &str, created: i64) -> Job {
    Job::new(
        task,
        uuid::Uuid::new_v4().to_string(),
        JobSpec::new("busybox", "echo hi"),
        at(created),
    )
}

fn execution(job: &Job, created: i64) -> Execution {
    Execution::enqueued(
        job,
        "busybox",
        "echo hi",
        None,
        at(created),
        uuid::Uuid::new_v4().to_string(),
    )
}

/// A job of `task` with its first execution, stored.
async fn stored(store: &dyn Store, task: &str, created: i64) -> (Job, Execution) {
    let job = job(task, created);
    let first = execution(&job, created);
    store
        .submit(Submission {
            executions: std::slice::from_ref(&first),
            ..Submission::job(&job)
        })
        .await
        .expect("create");
    (job, first)
}

/// Jobs are found by task and id, or by id alone, and tasks list them.
pub async fn jobs_are_found_by_task_and_id(store: Arc<dyn Store>) {
    let (job, first) = stored(store.as_ref(), "found", 0).await;
    assert_eq!(
        store.job("found", &job.job_id).await.expect("job"),
        Some(job.clone())
    );
    assert_eq!(
        store.find_job(&job.job_id).await.expect("find"),
        Some(job.clone())
    );
    assert_eq!(store.job("other", &job.job_id).await.expect("job"), None);
    assert_eq!(
        store
            .execution(&first.execution_id)
            .await
            .expect("execution"),
        Some(first)
    );
    let (task, jobs) = store.task("found").await.expect("task").expect("the task");
    assert_eq!(task.task_id, "found");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job_id, job.job_id);
    assert_eq!(store.counts().await.expect("counts"), (1, 1));
    assert!(store.task("missing").await.expect("task").is_none());
}

/// A job's executions come newest first; a failed one saved with its retry
/// adds the retry and counts it on the job, together.
pub async fn executions_come_newest_first_and_a_retry_is_counted(store: Arc<dyn Store>) {
    let (job, mut first) = stored(store.as_ref(), "retried", 0).await;
    first.status = ExecutionStatus::Failed;
    first.exit_code = Some(1);
    first.finished_at = Some(at(5));
    let retry = execution(&job, 10);
    store
        .save_execution(&first, Some(&retry))
        .await
        .expect("save");
    let (newest, total) = store.executions(&job.job_id, 10).await.expect("executions");
    let ids: Vec<&str> = newest.iter().map(|e| e.execution_id.as_str()).collect();
    assert_eq!(
        ids,
        [retry.execution_id.as_str(), first.execution_id.as_str()]
    );
    assert_eq!(total, 2);
    assert_eq!(newest[1], first);
    let (one, total) = store.executions(&job.job_id, 1).await.expect("executions");
    assert_eq!((one.len(), total), (1, 2));
    let job = store
        .find_job(&job.job_id)
        .await
        .expect("find")
        .expect("job");
    assert_eq!(job.retry_count, 1);
    let live = store.live_executions(&job.job_id).await.expect("live");
    assert_eq!(live, std::slice::from_ref(&retry));
    let unfinished = store.unfinished_executions().await.expect("unfinished");
    assert!(
        unfinished
            .iter()
            .any(|e| e.execution_id == retry.execution_id)
    );
    assert!(
        !unfinished
            .iter()
            .any(|e| e.execution_id == first.execution_id)
    );
}

/// The stored execution `execution_id`, which must exist.
async fn reread(store: &dyn Store, execution_id: &str) -> Execution {
    store
        .execution(execution_id)
        .await
        .expect("read")
        .expect("execution")
}

/// A stopped execution stays stopped: a save with another status is
/// ignored, one that keeps it stopped adds its output; stopping a final
/// execution does nothing.
pub async fn a_stopped_execution_stays_stopped(store: Arc<dyn Store>) {
    let (_, mut first) = stored(store.as_ref(), "stopped", 0).await;
    let stopped = store
        .mark_stopped(&first.execution_id, "stopped by a user", at(3))
        .await
        .expect("stop")
        .expect("it was live");
    assert_eq!(stopped.status, ExecutionStatus::Stopped);
    first.status = ExecutionStatus::Done;
    first.exit_code = Some(0);
    store.save_execution(&first, None).await.expect("save");
    let read = || reread(store.as_ref(), &first.execution_id);
    assert_eq!(read().await, stopped, "a save as done is ignored");
    let mut with_output = stopped.clone();
    with_output.stdout = Some("late output\n".to_owned());
    store
        .save_execution(&with_output, None)
        .await
        .expect("save");
    assert_eq!(read().await.stdout.as_deref(), Some("late output\n"));
    let again = store
        .mark_stopped(&first.execution_id, "again", at(4))
        .await
        .expect("stop");
    assert!(again.is_none(), "a final execution is not stopped again");
}

/// Notification attempts are only added, and saves keep them.
pub async fn dispatches_survive_saves(store: Arc<dyn Store>) {
    let (_, mut first) = stored(store.as_ref(), "dispatched", 0).await;
    let record = DispatchRecord {
        timestamp: at(1),
        notifier: "webhook".to_owned(),
        event: "finishes".to_owned(),
        target: "http://receiver.invalid/".to_owned(),
        attempt: 1,
        status_code: Some(200),
        error: None,
    };
    store
        .append_dispatch(&first.execution_id, &record)
        .await
        .expect("append");
    first.status = ExecutionStatus::Running;
    store.save_execution(&first, None).await.expect("save");
    let kept = reread(store.as_ref(), &first.execution_id).await;
    assert_eq!(kept.dispatches, [record]);
    assert_eq!(kept.status, ExecutionStatus::Running);
}

/// The status detail is kept while an execution is `pulling`, and a save
/// that moves it on (which carries no detail) ends it; a late detail does
/// not come back.
pub async fn a_detail_is_kept_only_while_pulling(store: Arc<dyn Store>) {
    let (_, mut first) = stored(store.as_ref(), "detailed", 0).await;
    let read = || reread(store.as_ref(), &first.execution_id);
    store
        .set_detail(&first.execution_id, "ignored: not pulling yet")
        .await
        .expect("detail");
    assert_eq!(read().await.detail, None);
    first.status = ExecutionStatus::Pulling;
    store.save_execution(&first, None).await.expect("save");
    for detail in [
        "pulling b:1: 0 of 2 layers downloaded",
        "pulling b:1: 1 of 2 layers downloaded",
    ] {
        store
            .set_detail(&first.execution_id, detail)
            .await
            .expect("detail");
        assert_eq!(read().await.detail.as_deref(), Some(detail));
    }
    first.status = ExecutionStatus::Running;
    store.save_execution(&first, None).await.expect("save");
    store
        .set_detail(&first.execution_id, "pulling b:1: late")
        .await
        .expect("detail");
    let running = read().await;
    assert_eq!(
        (running.status, running.detail),
        (ExecutionStatus::Running, None)
    );
}

/// An execution id is inserted once; a schedule is recorded only for the
/// job's current generation, and scheduled jobs are listed.
pub async fn inserts_are_idempotent_and_schedules_follow_generations(store: Arc<dyn Store>) {
    let mut job = job("scheduled", 0);
    store.submit(Submission::job(&job)).await.expect("create");
    let slot = execution(&job, 60);
    assert!(store.insert_execution(&slot).await.expect("insert"));
    assert!(!store.insert_execution(&slot).await.expect("insert again"));

    assert!(
        store
            .set_next_run(&job.job_id, 0, Some(at(120)))
            .await
            .expect("set")
    );
    let scheduled = store.scheduled_jobs().await.expect("scheduled");
    assert_eq!(scheduled.len(), 1);
    assert_eq!(scheduled[0].next_run_at, Some(at(120)));
    job.generation = 1;
    job.next_run_at = None;
    store.save_job(&job).await.expect("save");
    assert!(
        !store
            .set_next_run(&job.job_id, 0, Some(at(180)))
            .await
            .expect("set"),
        "an older generation records nothing"
    );
    assert!(store.scheduled_jobs().await.expect("scheduled").is_empty());
}

/// The blacklist adds and removes hosts, each once.
pub async fn the_blacklist_keeps_each_host_once(store: Arc<dyn Store>) {
    store.set_blacklisted("a:1", true).await.expect("add");
    store.set_blacklisted("a:1", true).await.expect("add again");
    store.set_blacklisted("b:2", true).await.expect("add");
    store.set_blacklisted("b:2", false).await.expect("remove");
    store
        .set_blacklisted("c:3", false)
        .await
        .expect("remove absent");
    assert_eq!(store.blacklist().await.expect("blacklist"), ["a:1"]);
}

/// Host health reports are kept per host, the newest winning.
pub async fn the_newest_host_health_report_wins(store: Arc<dyn Store>) {
    let report = |since: i64, open: bool| fastlane_sdk::HostHealth {
        host: "docker-1:2375".to_owned(),
        since: at(since),
        open_until: open.then(|| at(since + 60)),
        error: open.then(|| "connection refused".to_owned()),
    };
    assert_eq!(
        store
            .share_host_health(&[report(10, true)])
            .await
            .expect("share"),
        [report(10, true)]
    );
    assert_eq!(
        store
            .share_host_health(&[report(5, false)])
            .await
            .expect("share"),
        [report(10, true)],
        "an older report changes nothing"
    );
    assert_eq!(
        store.share_host_health(&[]).await.expect("share"),
        [report(10, true)]
    );
    assert_eq!(
        store
            .share_host_health(&[report(20, false)])
            .await
            .expect("share"),
        [report(20, false)]
    );
}

/// A log is appended piece by piece, idempotently, and read from any
/// offset.
pub async fn logs_append_once_and_read_from_any_offset(store: Arc<dyn Store>) {
    let (_, first) = stored(store.as_ref(), "logged", 0).await;
    let id = &first.execution_id;
    let piece = |offset, source, text: &str| LogPiece {
        offset,
        source,
        text: text.to_owned(),
        raw_len: if source == LogSource::Notice {
            0
        } else {
            text.len() as u64
        },
    };
    let pieces = [
        piece(0, LogSource::Stdout, "héllo\n"),
        piece(7, LogSource::Stderr, "oops\n"),
    ];
    store.append_log(id, &pieces).await.expect("append");
    store
        .append_log(id, &pieces[1..])
        .await
        .expect("append again");
    assert_eq!(store.read_log(id, 0, 100).await.expect("read"), pieces);
    let from_inside = store.read_log(id, 2, 100).await.expect("read");
    assert_eq!(from_inside[0].offset, 3, "cut at a character boundary");
    assert_eq!(from_inside[0].text, "llo\n");
    assert_eq!(store.read_log(id, 12, 100).await.expect("read"), []);
    assert_eq!(
        store.log_totals(id).await.expect("totals"),
        LogTotals {
            bytes: 12,
            stdout: 7,
            stderr: 5,
            cut: false
        }
    );
    store
        .append_log(id, &[piece(12, LogSource::Notice, "[cut]")])
        .await
        .expect("append");
    assert!(store.log_totals(id).await.expect("totals").cut);
}

/// Executions that wait to start are counted per task, most waiting first,
/// with their oldest creation time; started ones are not.
pub async fn backlogs_count_what_waits_to_start_per_task(store: Arc<dyn Store>) {
    let busy = format!("busy-{}", uuid::Uuid::new_v4().simple());
    let calm = format!("calm-{}", uuid::Uuid::new_v4().simple());
    for created in [30, 10, 20] {
        stored(&*store, &busy, created).await;
    }
    let (_, mut started) = stored(&*store, &calm, 5).await;
    stored(&*store, &calm, 40).await;
    started.status = ExecutionStatus::Running;
    started.started_at = Some(at(6));
    store.save_execution(&started, None).await.expect("save");

    let backlogs = store.backlogs(100).await.expect("backlogs");
    let ours: Vec<_> = backlogs
        .iter()
        .filter(|b| b.task_id == busy || b.task_id == calm)
        .map(|b| (b.task_id.as_str(), b.waiting, b.oldest))
        .collect();
    assert_eq!(
        ours,
        [(busy.as_str(), 3, at(10)), (calm.as_str(), 1, at(40))],
        "most waiting first; the running execution is not waiting"
    );
    let first = store.backlogs(1).await.expect("backlogs");
    assert_eq!(first.len(), 1, "at most the limit");
}

/// A JSON document nested `depth` levels deep: what a record carrying it
/// cannot be read back past (serde_json stops at 128 levels).
pub fn nested(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

/// A record that cannot be read is skipped by every listing (tasks, the
/// jobs of a task, search, scheduled jobs, executions) instead of failing
/// it, and counted; reading that one record is an error naming it; and a
/// page far past the end (offsets past `i64::MAX`) is empty, not an error.
/// `spoil(kind, id)` makes the stored record `id` (`kind` is `job` or
/// `execution`) unreadable behind the store's back, keeping the columns
/// listings select it by.
pub async fn unreadable_records_are_skipped_in_listings<F, Fut>(store: Arc<dyn Store>, spoil: F)
where
    F: Fn(&'static str, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (good, first) = stored(store.as_ref(), "spoilt", 0).await;
    let mut bad = job("spoilt", 1);
    bad.next_run_at = Some(at(100));
    store.submit(Submission::job(&bad)).await.expect("create");
    let mut kept = job("spoilt", 2);
    kept.next_run_at = Some(at(200));
    store.submit(Submission::job(&kept)).await.expect("create");
    let lost = execution(&good, 3);
    assert!(store.insert_execution(&lost).await.expect("insert"));
    let before = super::unreadable_records();
    spoil("job", bad.job_id.clone()).await;
    spoil("execution", lost.execution_id.clone()).await;

    let (page, total) = store.tasks(0, 10).await.expect("tasks still list");
    assert_eq!((page.len(), total), (1, 1));
    let (found, _) = store.search_tasks("spoilt", 0, 10).await.expect("search");
    assert_eq!(found.len(), 1);
    let (_, jobs) = store.task("spoilt").await.expect("the task").expect("some");
    let mut ids: Vec<String> = jobs.into_iter().map(|j| j.job_id).collect();
    ids.sort();
    let mut readable = vec![good.job_id.clone(), kept.job_id.clone()];
    readable.sort();
    assert_eq!(ids, readable, "the unreadable job is left out");
    let scheduled = store.scheduled_jobs().await.expect("scheduled jobs");
    let ids: Vec<&str> = scheduled.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(ids, [kept.job_id.as_str()]);
    let (executions, count) = store
        .executions(&good.job_id, 10)
        .await
        .expect("executions");
    assert_eq!(executions, std::slice::from_ref(&first));
    assert_eq!(count, 2, "the count still counts every record");
    let live = store.live_executions(&good.job_id).await.expect("live");
    assert_eq!(live, std::slice::from_ref(&first));
    let unfinished = store.unfinished_executions().await.expect("unfinished");
    assert_eq!(unfinished, std::slice::from_ref(&first));
    assert!(
        super::unreadable_records() >= before + 5,
        "each skip is counted"
    );

    for (read, id) in [
        (
            store.job("spoilt", &bad.job_id).await.map(|_| ()),
            &bad.job_id,
        ),
        (store.find_job(&bad.job_id).await.map(|_| ()), &bad.job_id),
        (
            store.execution(&lost.execution_id).await.map(|_| ()),
            &lost.execution_id,
        ),
    ] {
        match read {
            Err(super::StoreError::Corrupt(message)) => {
                assert!(message.contains(id.as_str()), "{message} names {id}");
            }
            other => panic!("reading an unreadable record gave {other:?}"),
        }
    }
    assert!(
        store
            .job("spoilt", &good.job_id)
            .await
            .expect("job")
            .is_some()
    );

    let (page, total) = store.tasks(u64::MAX, u64::MAX).await.expect("far page");
    assert_eq!((page.len(), total), (0, 1));
    let (page, _) = store
        .search_tasks("spoilt", u64::MAX - 1, 10)
        .await
        .expect("far search page");
    assert!(page.is_empty());
    store
        .executions(&good.job_id, u64::MAX)
        .await
        .expect("no limit");
    assert!(
        store
            .read_log(&first.execution_id, u64::MAX, u32::MAX)
            .await
            .expect("a log read from far past its end")
            .is_empty()
    );
}

/// Runs every conformance function as its own test, each against a fresh
/// store from `$make` (an async block). With `with_cleanup #[attribute]`,
/// `$make` gives the store and a future to await after the test (dropping
/// what the test made), and every test carries the attribute: a
/// `cfg_attr(…, ignore = "why")` for servers that may be missing, so that
/// without one the tests are reported skipped, never passed.
#[macro_export]
macro_rules! store_conformance {
    (with_cleanup #[$attr:meta] $make:expr) => {
        $crate::store_conformance!(@names with_cleanup [$attr] $make);
    };
    (@names $mode:ident [$($attr:meta)?] $make:expr) => {
        $crate::store_conformance!(@tests $mode [$($attr)?] $make;
            jobs_are_found_by_task_and_id,
            a_tasks_jobs_come_in_pages_with_their_newest_execution,
            tasks_come_in_pages_and_search_matches_whole_words,
            a_tasks_last_run_is_the_status_of_its_newest_execution,
            executions_that_ended_lately_come_latest_first,
            of_executions_created_together_the_last_written_is_the_newest,
            the_soonest_scheduled_jobs_come_first_and_all_are_counted,
            executions_come_newest_first_and_a_retry_is_counted,
            a_stopped_execution_stays_stopped,
            dispatches_survive_saves,
            a_detail_is_kept_only_while_pulling,
            inserts_are_idempotent_and_schedules_follow_generations,
            the_blacklist_keeps_each_host_once,
            the_newest_host_health_report_wins,
            logs_append_once_and_read_from_any_offset,
            a_gate_admits_up_to_its_limit_then_lines_up,
            an_execution_takes_the_first_choice_with_room,
            paused_gates_rates_and_priorities_hold_in_the_store,
            backlogs_count_what_waits_to_start_per_task,
            the_outbox_keeps_messages_with_their_job_until_published,
            an_idempotency_key_writes_once_until_it_expires,
            owed_deliveries_stay_until_settled,
            concurrent_submissions_each_land_whole,
        );
    };
    (@tests always [] $make:expr; $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let store: std::sync::Arc<dyn $crate::store::Store> = $make.await;
                $crate::store::conformance::$name(store).await;
            }
        )*
    };
    (@tests with_cleanup [$attr:meta] $make:expr; $($name:ident,)*) => {
        $(
            #[tokio::test]
            #[$attr]
            async fn $name() {
                let (store, cleanup) = $make.await;
                let store: std::sync::Arc<dyn $crate::store::Store> = store;
                $crate::store::conformance::$name(store).await;
                cleanup.await;
            }
        )*
    };
    ($make:expr) => {
        $crate::store_conformance!(@names always [] $make);
    };
}
