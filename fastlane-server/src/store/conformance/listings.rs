//! Listings: pages of tasks and of a task's jobs, each with what its
//! newest execution did, and the executions that ended lately.

use std::sync::Arc;

use fastlane_sdk::ExecutionStatus;

use super::{at, execution, job, stored};
use crate::store::{Store, Submission};

/// A task's jobs come a page at a time, each with its newest execution,
/// and can be narrowed to those whose newest execution has a status.
pub async fn a_tasks_jobs_come_in_pages_with_their_newest_execution(store: Arc<dyn Store>) {
    let (failed, mut failed_first) = stored(store.as_ref(), "paged", 0).await;
    failed_first.status = ExecutionStatus::Failed;
    failed_first.finished_at = Some(at(3));
    store
        .save_execution(&failed_first, None)
        .await
        .expect("save");
    let (retried, mut retried_first) = stored(store.as_ref(), "paged", 1).await;
    retried_first.status = ExecutionStatus::Failed;
    let retry = execution(&retried, 10);
    store
        .save_execution(&retried_first, Some(&retry))
        .await
        .expect("save");
    let (waiting, waiting_first) = stored(store.as_ref(), "paged", 2).await;
    stored(store.as_ref(), "elsewhere", 3).await;

    let page = |status, offset, limit| {
        let store = Arc::clone(&store);
        async move {
            let (jobs, total) = store
                .task_jobs("paged", status, offset, limit)
                .await
                .expect("task_jobs")
                .expect("the task");
            let jobs: Vec<(String, Option<String>)> = jobs
                .into_iter()
                .map(|(job, newest)| (job.job_id, newest.map(|e| e.execution_id)))
                .collect();
            (jobs, total)
        }
    };
    let (all, total) = page(None, 0, 10).await;
    assert_eq!(total, 3);
    let mut expected = vec![
        (
            failed.job_id.clone(),
            Some(failed_first.execution_id.clone()),
        ),
        (retried.job_id.clone(), Some(retry.execution_id.clone())),
        (
            waiting.job_id.clone(),
            Some(waiting_first.execution_id.clone()),
        ),
    ];
    let mut sorted = all.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(
        sorted, expected,
        "every job once, with its newest execution"
    );
    let mut paged = Vec::new();
    for offset in 0..3 {
        let (one, total) = page(None, offset, 1).await;
        assert_eq!((one.len(), total), (1, 3));
        paged.extend(one);
    }
    assert_eq!(paged, all, "pages follow one order");

    let (failing, total) = page(Some(ExecutionStatus::Failed), 0, 10).await;
    assert_eq!(total, 1, "the retried job's newest execution waits");
    assert_eq!(failing[0].0, failed.job_id);
    let (enqueued, total) = page(Some(ExecutionStatus::Enqueued), 0, 10).await;
    assert_eq!(total, 2);
    assert_eq!(enqueued.len(), 2);
    store
        .mark_stopped(&waiting_first.execution_id, "by a user", at(20))
        .await
        .expect("stop");
    let (stopped, total) = page(Some(ExecutionStatus::Stopped), 0, 10).await;
    assert_eq!((stopped.len(), total), (1, 1), "a stop moves the job");
    assert_eq!(stopped[0].0, waiting.job_id);
    let (_, total) = page(Some(ExecutionStatus::Enqueued), 0, 10).await;
    assert_eq!(total, 1, "only the retry waits now");
    assert!(
        store
            .task_jobs("missing", None, 0, 10)
            .await
            .expect("task_jobs")
            .is_none()
    );
}

/// Tasks come a page at a time in the order they were created, and search
/// matches whole words of their ids, whatever the case.
pub async fn tasks_come_in_pages_and_search_matches_whole_words(store: Arc<dyn Store>) {
    for (i, task) in ["alpha-one", "Beta-two", "gamma.ALPHA"]
        .into_iter()
        .enumerate()
    {
        stored(store.as_ref(), task, i as i64).await;
    }
    let (page, total) = store.tasks(0, 2).await.expect("tasks");
    let ids: Vec<&str> = page.iter().map(|t| t.task.task_id.as_str()).collect();
    assert_eq!((ids, total), (vec!["alpha-one", "Beta-two"], 3));
    let (page, _) = store.tasks(2, 2).await.expect("tasks");
    assert_eq!(page[0].task.task_id, "gamma.ALPHA");
    assert_eq!(page[0].jobs_count, 1);

    let (found, total) = store.search_tasks("alpha", 0, 10).await.expect("search");
    let mut ids: Vec<&str> = found.iter().map(|t| t.task.task_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!((ids, total), (vec!["alpha-one", "gamma.ALPHA"], 2));
    let (found, total) = store.search_tasks("alp", 0, 10).await.expect("search");
    assert!(found.is_empty() && total == 0, "only whole words match");
}

/// A task's last run is the status of its newest execution, whichever of
/// its jobs ran it and however it got there.
pub async fn a_tasks_last_run_is_the_status_of_its_newest_execution(store: Arc<dyn Store>) {
    let last = |store: Arc<dyn Store>| async move {
        let (page, _) = store.tasks(0, 10).await.expect("tasks");
        page.into_iter()
            .map(|t| (t.task.task_id, t.last_status))
            .collect::<Vec<_>>()
    };
    let (older, mut older_first) = stored(store.as_ref(), "nightly", 0).await;
    let (_, mut newer_first) = stored(store.as_ref(), "nightly", 5).await;
    assert_eq!(
        last(Arc::clone(&store)).await,
        vec![("nightly".to_owned(), Some(ExecutionStatus::Enqueued))]
    );
    newer_first.status = ExecutionStatus::Done;
    newer_first.finished_at = Some(at(7));
    store
        .save_execution(&newer_first, None)
        .await
        .expect("save");
    older_first.status = ExecutionStatus::Failed;
    older_first.finished_at = Some(at(8));
    store
        .save_execution(&older_first, None)
        .await
        .expect("save");
    assert_eq!(
        last(Arc::clone(&store)).await,
        vec![("nightly".to_owned(), Some(ExecutionStatus::Done))],
        "the newest execution counts, not the latest to end"
    );
    let retry = execution(&older, 10);
    store.insert_execution(&retry).await.expect("retry");
    assert_eq!(
        last(Arc::clone(&store)).await,
        vec![("nightly".to_owned(), Some(ExecutionStatus::Enqueued))],
        "a retry is the newest run"
    );
    store
        .mark_stopped(&retry.execution_id, "by a user", at(11))
        .await
        .expect("stop");
    let (found, _) = store.search_tasks("nightly", 0, 10).await.expect("search");
    assert_eq!(found[0].last_status, Some(ExecutionStatus::Stopped));
}

/// The executions that ended since a time come the latest first, only in
/// the statuses asked for, at most as many as asked.
pub async fn executions_that_ended_lately_come_latest_first(store: Arc<dyn Store>) {
    let mut ended = Vec::new();
    for (i, status) in [
        ExecutionStatus::Done,
        ExecutionStatus::Failed,
        ExecutionStatus::Done,
        ExecutionStatus::Timedout,
    ]
    .into_iter()
    .enumerate()
    {
        let i = i as i64;
        let (_, mut first) = stored(store.as_ref(), "ends", i).await;
        first.status = status;
        first.started_at = Some(at(100 + i));
        first.finished_at = Some(at(110 + 10 * i));
        first.exit_code = Some(i);
        first.error = (status != ExecutionStatus::Done).then(|| format!("error {i}"));
        store.save_execution(&first, None).await.expect("save");
        ended.push(first);
    }
    stored(store.as_ref(), "ends", 9).await;
    let stopped = stored(store.as_ref(), "ends", 10).await.1;
    store
        .mark_stopped(&stopped.execution_id, "by a user", at(140))
        .await
        .expect("stop");

    let finals = [
        ExecutionStatus::Done,
        ExecutionStatus::Failed,
        ExecutionStatus::Timedout,
        ExecutionStatus::Stopped,
    ];
    let found = store
        .ended_since(at(120), &finals, 100)
        .await
        .expect("ended");
    let ids: Vec<(&str, ExecutionStatus)> = found
        .iter()
        .map(|e| (e.execution_id.as_str(), e.status))
        .collect();
    assert_eq!(
        ids,
        vec![
            (ended[3].execution_id.as_str(), ExecutionStatus::Timedout),
            (stopped.execution_id.as_str(), ExecutionStatus::Stopped),
            (ended[2].execution_id.as_str(), ExecutionStatus::Done),
            (ended[1].execution_id.as_str(), ExecutionStatus::Failed),
        ],
        "the latest end first; the one that ended before the start is left out"
    );
    let failed = &found[3];
    assert_eq!(
        (
            failed.task_id.as_str(),
            failed.job_id.as_str(),
            failed.started_at,
            failed.finished_at,
            failed.exit_code,
            failed.error.as_deref(),
        ),
        (
            "ends",
            ended[1].job_id.as_str(),
            Some(at(101)),
            at(120),
            Some(1),
            Some("error 1")
        )
    );
    let failures = store
        .ended_since(
            at(0),
            &[ExecutionStatus::Failed, ExecutionStatus::Timedout],
            1,
        )
        .await
        .expect("ended");
    assert_eq!(failures.len(), 1, "at most the limit");
    assert_eq!(failures[0].execution_id, ended[3].execution_id);
}

/// Executions created in the same instant (slots fired together) are
/// ordered by when they were written: the last written is the newest, and
/// a status change of an older one moves neither the filters nor the
/// task's last run.
pub async fn of_executions_created_together_the_last_written_is_the_newest(store: Arc<dyn Store>) {
    let (job, _) = stored(store.as_ref(), "together", 0).await;
    let older = execution(&job, 5);
    let newer = execution(&job, 5);
    for e in [&older, &newer] {
        assert!(store.insert_execution(e).await.expect("insert"));
    }
    let mut ended = older.clone();
    ended.status = ExecutionStatus::Done;
    ended.finished_at = Some(at(6));
    store.save_execution(&ended, None).await.expect("save");

    let count = |status| {
        let store = Arc::clone(&store);
        async move {
            let (_, total) = store
                .task_jobs("together", Some(status), 0, 10)
                .await
                .expect("task_jobs")
                .expect("the task");
            total
        }
    };
    assert_eq!(count(ExecutionStatus::Done).await, 0);
    assert_eq!(count(ExecutionStatus::Enqueued).await, 1);
    let (jobs, _) = store
        .task_jobs("together", None, 0, 10)
        .await
        .expect("task_jobs")
        .expect("the task");
    let shown = jobs[0].1.as_ref().map(|e| e.execution_id.clone());
    assert_eq!(shown, Some(newer.execution_id.clone()), "the last written");
    let (tasks, _) = store.tasks(0, 10).await.expect("tasks");
    assert_eq!(tasks[0].last_status, Some(ExecutionStatus::Enqueued));
}

/// The jobs that fire soonest come first, as many as asked, with how many
/// will fire in all; a stopped job is not among them.
pub async fn the_soonest_scheduled_jobs_come_first_and_all_are_counted(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for (created, next) in [(0, 300), (1, 100), (2, 200), (3, 400)] {
        let mut later = job("later", created);
        later.next_run_at = Some(at(next));
        later.stopped = created == 3;
        store.submit(Submission::job(&later)).await.expect("create");
        ids.push(later.job_id);
    }
    stored(store.as_ref(), "now", 4).await;
    let (soonest, total) = store.soonest_scheduled(2).await.expect("scheduled");
    let shown: Vec<&str> = soonest.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(shown, vec![ids[1].as_str(), ids[2].as_str()]);
    assert_eq!(total, 3, "the stopped job and the one that ran now are not");
    assert_eq!(store.scheduled_jobs().await.expect("all").len(), 3);
}
