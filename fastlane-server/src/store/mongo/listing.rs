//! Listings: pages of tasks with their job count and last run, and the
//! executions that ended lately. Untested here (no MongoDB server runs on
//! this machine); the conformance suite covers them where one does.

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};

use fastlane_sdk::{ExecutionStatus, Task};

use super::documents::{big, corrupt, count, from_record, mongo, text};
use super::schema::{EXECUTIONS, JOBS, TASKS};
use super::{MongoStore, execution_from, listed, search_filter};
use crate::store::{Ended, StoreError, TaskSummary, readable};

/// A page of tasks in creation order, all of them or those having `word`.
pub(super) async fn task_page(
    store: &MongoStore,
    word: Option<&str>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<TaskSummary>, u64), StoreError> {
    let filter = match word {
        None => Document::new(),
        Some(word) => match search_filter(word) {
            Some(filter) => filter,
            None => return Ok((Vec::new(), 0)),
        },
    };
    let tasks = store.collection(TASKS);
    let total = tasks.count_documents(filter.clone()).await.map_err(mongo)?;
    if limit == 0 {
        return Ok((Vec::new(), total));
    }
    let page: Vec<Document> = tasks
        .find(filter)
        .sort(doc! {"seq": 1})
        // The driver sends a signed number: past i64::MAX, nothing is left.
        .skip(offset.min(i64::MAX.unsigned_abs()))
        .limit(big(limit))
        .await
        .map_err(mongo)?
        .try_collect()
        .await
        .map_err(mongo)?;
    let tasks: Vec<Task> = listed("task", &page, from_record)?;
    let ids: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
    let counted: Vec<Document> = store
        .collection(JOBS)
        .aggregate([
            doc! {"$match": {"task_id": {"$in": ids}}},
            doc! {"$group": {"_id": "$task_id", "n": {"$sum": 1}}},
        ])
        .await
        .map_err(mongo)?
        .try_collect()
        .await
        .map_err(mongo)?;
    let mut jobs = std::collections::HashMap::new();
    for group in &counted {
        jobs.insert(text(group, "_id")?, count(group.get("n"))?);
    }
    let mut summaries = Vec::with_capacity(tasks.len());
    for task in tasks {
        summaries.push(TaskSummary {
            jobs_count: jobs.get(&task.task_id).copied().unwrap_or(0),
            last_status: last_status(store, &task.task_id).await?,
            task,
        });
    }
    Ok((summaries, total))
}

/// The status of the newest execution of task `task_id` (the
/// `doc.task_id` index finds it).
async fn last_status(
    store: &MongoStore,
    task_id: &str,
) -> Result<Option<ExecutionStatus>, StoreError> {
    let newest = store
        .collection(EXECUTIONS)
        .find_one(doc! {"doc.task_id": task_id})
        .sort(doc! {"created_at": -1, "seq": -1})
        .projection(doc! {"status": 1})
        .await
        .map_err(mongo)?;
    Ok(newest.and_then(|d| d.get_str("status").ok().and_then(|s| s.parse().ok())))
}

/// The executions that ended at or after `since` in `statuses`, the latest
/// first, at most `limit` (the `status, doc.finished_at` index holds them).
/// Times are kept as RFC 3339 text, compared exact to the second here and
/// again after reading.
pub(super) async fn ended_since(
    store: &MongoStore,
    since: DateTime<Utc>,
    statuses: &[ExecutionStatus],
    limit: u64,
) -> Result<Vec<Ended>, StoreError> {
    let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let from = since.to_rfc3339_opts(SecondsFormat::Micros, true);
    let found: Vec<Document> = store
        .collection(EXECUTIONS)
        .find(doc! {"status": {"$in": names}, "doc.finished_at": {"$gte": from}})
        .sort(doc! {"doc.finished_at": -1})
        .limit(big(limit))
        .await
        .map_err(mongo)?
        .try_collect()
        .await
        .map_err(mongo)?;
    let mut ended = Vec::with_capacity(found.len());
    for stored in &found {
        let id = stored.get_str("_id").unwrap_or("(no id)");
        let read = || -> Result<Option<Ended>, StoreError> {
            let execution = execution_from(stored)?;
            let finished_at = execution
                .finished_at
                .ok_or_else(|| corrupt(format!("execution {id:?} ended with no end time")))?;
            Ok((finished_at >= since).then_some(Ended {
                execution_id: execution.execution_id,
                job_id: execution.job_id,
                task_id: execution.task_id,
                status: execution.status,
                started_at: execution.started_at,
                finished_at,
                exit_code: execution.exit_code,
                error: execution.error,
            }))
        };
        ended.extend(readable("execution", id, read())?.flatten());
    }
    Ok(ended)
}
