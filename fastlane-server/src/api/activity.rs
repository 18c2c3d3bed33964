//! `GET /status/activity`: what the farm did lately, minute by minute —
//! how many executions ended in each final status, and how long they ran
//! (percentiles) — and the latest failures. The admin UI's overview charts
//! read it. It is computed from the store's executions, so it covers every
//! worker process and survives restarts.

use chrono::{DateTime, Duration, DurationRound, Utc};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::{Object, OpenApi, payload::Json};

use fastlane_sdk::ExecutionStatus;

use super::ApiTags;
use super::error::ApiError;
use super::views::StatusView;
use crate::services::Services;
use crate::store::Ended;

/// The final statuses the minutes count.
const FINAL: [ExecutionStatus; 5] = [
    ExecutionStatus::Done,
    ExecutionStatus::Failed,
    ExecutionStatus::Timedout,
    ExecutionStatus::Expired,
    ExecutionStatus::Stopped,
];

/// The statuses the latest failures are made of.
const FAILING: [ExecutionStatus; 2] = [ExecutionStatus::Failed, ExecutionStatus::Timedout];

/// The most ended executions read for the minutes: when it is reached, the
/// earliest minutes may be incomplete (and the answer says so).
const MOST_ENDED: u64 = 20_000;

/// How many of the latest failures are listed.
const FAILURES: u64 = 10;

/// The window, in minutes, when none is asked for.
const DEFAULT_MINUTES: u32 = 60;

/// What the farm did lately.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Activity {
    /// The start of the first minute.
    pub from: DateTime<Utc>,
    /// When this was read (within the last minute).
    pub until: DateTime<Utc>,
    /// One entry per minute, the oldest first, empty minutes included.
    pub minutes: Vec<Minute>,
    /// How many executions ended in the window, as far as they were read.
    pub ended: u64,
    /// False when 20,000 executions or more ended in the window: only the
    /// latest 20,000 are counted, so the earliest minutes may fall short.
    pub complete: bool,
    /// The latest failed or timed-out executions, at any time, the latest
    /// first (at most 10).
    pub failures: Vec<Failure>,
}

/// The executions that ended in one minute.
#[derive(Debug, Default, PartialEq, Object)]
#[oai(rename_all = "camelCase")]
pub struct Minute {
    /// The minute's start.
    pub at: DateTime<Utc>,
    /// How many ended `done`.
    pub done: u64,
    /// How many ended `failed`.
    pub failed: u64,
    /// How many ended `timedout`.
    pub timedout: u64,
    /// How many ended `expired`.
    pub expired: u64,
    /// How many ended `stopped`.
    pub stopped: u64,
    /// The median run time, in milliseconds, of those whose container
    /// started.
    #[oai(skip_serializing_if_is_none)]
    pub p50_ms: Option<u64>,
    /// The 90th percentile run time, in milliseconds.
    #[oai(skip_serializing_if_is_none)]
    pub p90_ms: Option<u64>,
    /// The 99th percentile run time, in milliseconds.
    #[oai(skip_serializing_if_is_none)]
    pub p99_ms: Option<u64>,
}

/// A failed or timed-out execution.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Failure {
    /// Its task.
    pub task_id: String,
    /// Its job.
    pub job_id: String,
    /// The execution id.
    pub execution_id: String,
    /// The execution's URL.
    pub url: String,
    /// `failed` or `timedout`.
    pub status: StatusView,
    /// Its exit code, if it exited.
    #[oai(skip_serializing_if_is_none)]
    pub exit_code: Option<i64>,
    /// What went wrong, as the execution records it.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
}

/// The route.
#[derive(Debug)]
pub struct ActivityApi;

#[OpenApi]
impl ActivityApi {
    /// Recent activity
    ///
    /// Per minute over the last `minutes` (60 unless given): how many
    /// executions ended in each final status and the percentiles of their
    /// run time; and the latest failures.
    #[oai(
        path = "/status/activity",
        method = "get",
        operation_id = "activity",
        tag = "ApiTags::Health"
    )]
    async fn activity(
        &self,
        request: &Request,
        services: Data<&Services>,
        /// How many minutes back, from 1 to 1440.
        #[oai(validator(minimum(value = "1"), maximum(value = "1440")))]
        minutes: Query<Option<u32>>,
    ) -> Result<Json<Activity>, ApiError> {
        const OP: &str = "activity";
        let count = minutes.0.unwrap_or(DEFAULT_MINUTES);
        let until = Utc::now();
        let from = window_start(until, count);
        let store = &services.store;
        let ended = store
            .ended_since(from, &FINAL, MOST_ENDED)
            .await
            .map_err(ApiError::store(OP))?;
        let failures = store
            .ended_since(DateTime::UNIX_EPOCH, &FAILING, FAILURES)
            .await
            .map_err(ApiError::store(OP))?;
        let urls = super::urls_for(request, &services);
        Ok(Json(Activity {
            from,
            until,
            ended: ended.len() as u64,
            complete: (ended.len() as u64) < MOST_ENDED,
            minutes: minutes_of(&ended, from, count),
            failures: failures
                .into_iter()
                .map(|e| Failure {
                    url: urls.execution(&e.task_id, &e.job_id, &e.execution_id),
                    task_id: e.task_id,
                    job_id: e.job_id,
                    execution_id: e.execution_id,
                    status: e.status.into(),
                    exit_code: e.exit_code,
                    error: e.error,
                    finished_at: e.finished_at,
                })
                .collect(),
        }))
    }
}

/// The start of the first of `count` whole minutes, the last of which
/// holds `now`.
fn window_start(now: DateTime<Utc>, count: u32) -> DateTime<Utc> {
    let minute = now.duration_trunc(Duration::minutes(1)).unwrap_or(now);
    minute - Duration::minutes(i64::from(count) - 1)
}

/// `ended` counted into `count` minutes from `from`, with the run time
/// percentiles of each minute.
fn minutes_of(ended: &[Ended], from: DateTime<Utc>, count: u32) -> Vec<Minute> {
    let mut minutes: Vec<(Minute, Vec<u64>)> = (0..count)
        .map(|i| {
            let at = from + Duration::minutes(i64::from(i));
            (
                Minute {
                    at,
                    ..Minute::default()
                },
                Vec::new(),
            )
        })
        .collect();
    for e in ended {
        // Minutes round toward zero: what ended in the second before `from`
        // would count in its first minute.
        if e.finished_at < from {
            continue;
        }
        let Ok(index) = usize::try_from((e.finished_at - from).num_minutes()) else {
            continue;
        };
        let Some((minute, runs)) = minutes.get_mut(index) else {
            continue;
        };
        match e.status {
            ExecutionStatus::Done => minute.done += 1,
            ExecutionStatus::Failed => minute.failed += 1,
            ExecutionStatus::Timedout => minute.timedout += 1,
            ExecutionStatus::Expired => minute.expired += 1,
            ExecutionStatus::Stopped => minute.stopped += 1,
            _ => continue,
        }
        if let Some(started) = e.started_at {
            let ran = (e.finished_at - started).num_milliseconds();
            runs.push(u64::try_from(ran).unwrap_or(0));
        }
    }
    minutes
        .into_iter()
        .map(|(mut minute, mut runs)| {
            runs.sort_unstable();
            minute.p50_ms = percentile(&runs, 50);
            minute.p90_ms = percentile(&runs, 90);
            minute.p99_ms = percentile(&runs, 99);
            minute
        })
        .collect()
}

/// The `p`th percentile of `sorted` by nearest rank; `None` when empty.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("time")
    }

    fn ended(status: ExecutionStatus, started: Option<&str>, finished: &str) -> Ended {
        Ended {
            execution_id: "e".to_owned(),
            job_id: "j".to_owned(),
            task_id: "t".to_owned(),
            status,
            started_at: started.map(at),
            finished_at: at(finished),
            exit_code: None,
            error: None,
        }
    }

    #[test]
    fn the_window_ends_with_the_minute_of_now() {
        let from = window_start(at("2026-12-03T10:59:42.5Z"), 60);
        assert_eq!(from, at("2026-12-03T10:00:00Z"));
        assert_eq!(
            window_start(at("2026-12-03T10:59:42Z"), 1),
            at("2026-12-03T10:59:00Z")
        );
    }

    #[test]
    fn each_minute_counts_what_ended_in_it_with_run_time_percentiles() {
        let from = at("2026-12-03T10:00:00Z");
        let mut runs = Vec::new();
        for second in 1..=10 {
            runs.push(ended(
                ExecutionStatus::Done,
                Some("2026-12-03T09:59:00Z"),
                &format!("2026-12-03T10:00:{second:02}Z"),
            ));
        }
        runs.push(ended(
            ExecutionStatus::Failed,
            None,
            "2026-12-03T10:00:59.9Z",
        ));
        runs.push(ended(
            ExecutionStatus::Stopped,
            None,
            "2026-12-03T10:02:00Z",
        ));
        runs.push(ended(ExecutionStatus::Done, None, "2026-12-03T09:59:59Z"));
        runs.push(ended(ExecutionStatus::Done, None, "2026-12-03T10:03:00Z"));
        let minutes = minutes_of(&runs, from, 3);
        assert_eq!(minutes.len(), 3);
        assert_eq!(
            minutes[0],
            Minute {
                at: from,
                done: 10,
                failed: 1,
                // Ran 61 … 70 s: the median is the 5th, p90 the 9th, p99 the 10th.
                p50_ms: Some(65_000),
                p90_ms: Some(69_000),
                p99_ms: Some(70_000),
                ..Minute::default()
            }
        );
        assert_eq!(
            minutes[1],
            Minute {
                at: at("2026-12-03T10:01:00Z"),
                ..Minute::default()
            },
            "an empty minute is kept, with no percentiles"
        );
        assert_eq!((minutes[2].stopped, minutes[2].p50_ms), (1, None));
    }
}
