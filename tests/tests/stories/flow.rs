//! Flow control, as an operator sees it on the engine: a priority jumps the
//! line, a concurrency key is held to its limit while other keys go on, a
//! rate limit holds over half a minute, and a paused task starts nothing
//! (across a restart) until it is resumed, then drains in order.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use fastlane_tests::engine::EngineApi;
use fastlane_tests::{Server, image};

use super::limits::{farms_running_at_most, peak};

const LIMIT: Duration = Duration::from_secs(120);

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

fn url(created: &Value, field: &str) -> anyhow::Result<String> {
    created[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no {field} in {created}"))
}

fn time(execution: &Value, field: &str) -> Option<DateTime<Utc>> {
    let text = execution[field].as_str()?;
    Some(DateTime::parse_from_rfc3339(text).ok()?.to_utc())
}

/// The execution details (`GET …/executions/{id}`) once `ready` holds.
async fn execution_when(
    server: &Server,
    created: &Value,
    ready: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + LIMIT;
    let url = url(created, "executionUrl")?;
    loop {
        let (_, details) = server.get(&url).await?;
        if ready(&details) {
            return Ok(details);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "never ready: {details}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The newest execution of each job, in the order given.
async fn newest(server: &Server, jobs: &[Value]) -> anyhow::Result<Vec<Value>> {
    let mut newest = Vec::with_capacity(jobs.len());
    for job in jobs {
        let (_, details) = server.get(&url(job, "jobUrl")?).await?;
        newest.push(details["job"]["executions"][0].clone());
    }
    Ok(newest)
}

#[tokio::test]
async fn a_priority_job_submitted_behind_fifty_waiting_ones_on_a_full_farm_starts_next()
-> anyhow::Result<()> {
    let server = Server::start(&[
        ("DOCKER_HOSTS", &farms_running_at_most(1)?),
        ("WORKER_CONCURRENCY", "8"),
    ])
    .await?;
    let task = unique("ranked-");
    // Holds the farm's one slot until stopped below, however long the
    // fifty submissions take.
    let blocker = server
        .submit(&task, json!({"image": image(), "command": "sleep 300"}))
        .await?;
    execution_when(&server, &blocker, |d| d["execution"]["status"] == "running").await?;
    let mut low = Vec::new();
    for _ in 0..50 {
        let job = json!({"image": image(), "command": "true"});
        low.push(server.submit(&task, job).await?);
    }
    // Each says why it waits, and where it stands.
    let last = execution_when(&server, &low[49], |d| !d["waiting"].is_null()).await?;
    assert_eq!(last["waiting"]["reason"], "full", "{last}");
    assert!(
        last["waiting"]["gate"]
            .as_str()
            .is_some_and(|g| g.starts_with("pool:docker:")),
        "{last}"
    );
    let urgent = server
        .submit(
            &task,
            json!({"image": image(), "command": "true", "priority": 10}),
        )
        .await?;
    let first = execution_when(&server, &low[0], |d| {
        d["waiting"]["ahead"] == 1 || d["execution"]["status"] != "enqueued"
    })
    .await?;
    assert_eq!(
        first["waiting"]["ahead"], 1,
        "the first low job now waits behind the urgent one: {first}"
    );
    let blocker_url = url(&blocker, "executionUrl")?;
    let (status, body) = server
        .post_json(
            &format!(
                "{}/stop",
                blocker_url
                    .strip_prefix(&server.base)
                    .context("a URL of the server")?
            ),
            &json!({}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");

    let urgent = server
        .wait_finished(&url(&urgent, "executionUrl")?, LIMIT)
        .await?;
    assert_eq!(urgent["status"], "done", "{urgent}");
    let urgent_start = time(&urgent, "startedAt").context("urgent started")?;
    let blocker_end = time(
        &server.wait_finished(&blocker_url, LIMIT).await?,
        "finishedAt",
    )
    .context("blocker finished")?;
    assert!(blocker_end <= urgent_start, "one at a time on the farm");
    for (i, execution) in newest(&server, &low).await?.iter().enumerate() {
        if let Some(started) = time(execution, "startedAt") {
            assert!(
                started > urgent_start,
                "low job {i} started at {started}, before the urgent one at {urgent_start}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_concurrency_key_limited_to_two_never_has_three_running_while_other_keys_proceed()
-> anyhow::Result<()> {
    let shared = unique("shared-");
    let server = Server::start(&[
        ("DOCKER_HOSTS", &farms_running_at_most(6)?),
        ("WORKER_CONCURRENCY", "12"),
        (
            "KEY_FLOW",
            &json!([{"match": "shared-", "maxConcurrent": 1}]).to_string(),
        ),
    ])
    .await?;
    let keyed = unique("keyed-");
    let (other_a, other_b) = (unique("other-a-"), unique("other-b-"));
    let big = unique("big-");
    let mut big_jobs = Vec::new();
    for _ in 0..5 {
        let job = json!({"image": image(), "command": "sleep 2",
                         "concurrencyKey": big, "maxConcurrentPerKey": 2});
        big_jobs.push(server.submit(&keyed, job).await?);
    }
    let mut small_jobs = Vec::new();
    for key in ["small-1", "small-2"] {
        let job = json!({"image": image(), "command": "sleep 2", "concurrencyKey": key,
                         "maxConcurrentPerKey": 2});
        small_jobs.push(server.submit(&keyed, job).await?);
    }
    // A key limited across tasks by KEY_FLOW.
    let mut shared_jobs = Vec::new();
    for task in [&other_a, &other_a, &other_b] {
        let job = json!({"image": image(), "command": "sleep 2", "concurrencyKey": shared});
        shared_jobs.push(server.submit(task, job).await?);
    }

    let engine = EngineApi::new();
    let mut shared_most = 0;
    let deadline = Instant::now() + LIMIT;
    let executions = loop {
        shared_most = shared_most.max(engine.running_of(&[&other_a, &other_b]).await?);
        let all: Vec<Value> = [&big_jobs[..], &small_jobs[..], &shared_jobs[..]].concat();
        let executions = newest(&server, &all).await?;
        if executions.iter().all(|e| e["status"] == "done") {
            break executions;
        }
        anyhow::ensure!(Instant::now() < deadline, "not all done: {executions:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let as_details = |executions: &[Value]| -> Vec<Value> {
        executions
            .iter()
            .map(|e| json!({"job": {"executions": [e]}}))
            .collect()
    };
    assert_eq!(
        peak(&as_details(&executions[..5]))?,
        2,
        "maxConcurrentPerKey 2: never 3 of the key at once"
    );
    assert!(
        shared_most <= 1,
        "the engine ran {shared_most} of the shared key"
    );
    assert_eq!(peak(&as_details(&executions[7..]))?, 1, "KEY_FLOW allows 1");
    // The other keys did not wait for the big key's turn.
    let mut big_starts: Vec<DateTime<Utc>> = executions[..5]
        .iter()
        .filter_map(|e| time(e, "startedAt"))
        .collect();
    big_starts.sort();
    for small in &executions[5..7] {
        let started = time(small, "startedAt").context("small started")?;
        assert!(
            started < big_starts[2],
            "a small key started at {started}, after the big key's third at {}",
            big_starts[2]
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_rate_of_five_starts_a_second_with_a_burst_of_ten_holds_over_thirty_seconds()
-> anyhow::Result<()> {
    let server = Server::start(&[
        // Slots and workers for all 200 (a worker follows its execution
        // until it ends), so that only the rate holds them back however
        // slowly the engine gets through each.
        ("DOCKER_HOSTS", &farms_running_at_most(250)?),
        ("WORKER_CONCURRENCY", "250"),
        (
            "TASK_FLOW",
            &json!([{"match": "rated-", "rate": 5, "burst": 10}]).to_string(),
        ),
    ])
    .await?;
    let task = unique("rated-");
    let jobs: Vec<Value> = (0..200)
        .map(|_| json!({"image": image(), "command": "true"}))
        .collect();
    let (status, created) = server
        .post_json(&format!("/tasks/{task}/batch"), &json!({ "jobs": jobs }))
        .await?;
    anyhow::ensure!(status == 200, "batch refused: {created}");
    let created = created["jobs"].as_array().context("jobs")?.clone();

    // How many have left the line (their newest execution is no longer
    // `enqueued`), every 200 ms: what the rate limits, whatever the
    // engine's own pace of starting containers.
    let waiting = format!("/tasks/{task}/jobs?status=enqueued");
    let mut first: Option<(Instant, u64)> = None;
    let gone = loop {
        let (_, page) = server.get(&waiting).await?;
        let gone = 200 - page["total"].as_u64().unwrap_or(200);
        match first {
            None if gone > 0 => first = Some((Instant::now(), gone)),
            Some((at, _)) if at.elapsed() >= Duration::from_secs(30) => break gone,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (_, at_first) = first.context("something left the line")?;
    // A full bucket of 10 (part of it maybe gone at the first look), then
    // 5 a second: 160 in the first 30 s.
    assert!(
        (144..=176).contains(&gone),
        "{gone} left the line in the first 30 s ({at_first} at the first look): a burst of \
         10 and 5/s make 160 (±10 %)"
    );
    // The containers, started by the engine at its own pace, never run
    // ahead of the rate either.
    let mut starts: Vec<DateTime<Utc>> = newest(&server, &created)
        .await?
        .iter()
        .filter_map(|e| time(e, "startedAt"))
        .collect();
    starts.sort();
    let started = *starts.first().context("no container started")?;
    let early = starts
        .iter()
        .filter(|s| **s < started + chrono::Duration::seconds(30))
        .count();
    assert!(
        early <= 176,
        "{early} containers started in their first 30 s"
    );
    Ok(())
}

#[tokio::test]
async fn a_paused_task_starts_nothing_for_a_minute_then_drains_in_order_also_after_a_restart()
-> anyhow::Result<()> {
    let mut server = Server::start(&[
        ("DOCKER_HOSTS", &farms_running_at_most(1)?),
        ("WORKER_CONCURRENCY", "8"),
    ])
    .await?;
    let task = unique("paused-");
    let (status, paused) = server
        .post_json(&format!("/tasks/{task}/pause"), &json!({}))
        .await?;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["gate"], format!("task:{task}"));
    let mut jobs = Vec::new();
    for i in 0..4 {
        let job = json!({"image": image(), "command": format!("echo {i}")});
        jobs.push(server.submit(&task, job).await?);
    }
    let cron = server
        .submit(
            &task,
            json!({"image": image(), "command": "true", "cron": "*/20 * * * * *", "missedRuns": "latest"}),
        )
        .await?;
    let waiting = execution_when(&server, &jobs[3], |d| !d["waiting"].is_null()).await?;
    assert_eq!(waiting["waiting"]["reason"], "paused", "{waiting}");
    assert_eq!(waiting["waiting"]["gate"], format!("task:{task}"));

    // A minute, with a restart half way: nothing starts.
    let engine = EngineApi::new();
    let until = Instant::now() + Duration::from_secs(62);
    let mut restarted = false;
    while Instant::now() < until {
        assert_eq!(
            engine.running(&task).await?,
            0,
            "a container of the paused task ran"
        );
        for execution in newest(&server, &jobs).await? {
            assert_eq!(execution["status"], "enqueued", "{execution}");
        }
        if !restarted && until - Instant::now() < Duration::from_secs(31) {
            assert!(server.terminate(Duration::from_secs(10)).is_some());
            server.respawn_on_same_port()?;
            restarted = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (_, status) = server.get("/status").await?;
    let gate = format!("task:{task}");
    let limit = status["limits"]
        .as_array()
        .and_then(|limits| limits.iter().find(|l| l["gate"] == gate.as_str()))
        .with_context(|| format!("{gate} in /status: {status}"))?;
    assert_eq!(limit["paused"], true, "{limit}");
    assert_eq!(limit["waiting"], 4, "{limit}");
    let (_, cron_job) = server.get(&url(&cron, "jobUrl")?).await?;
    assert_eq!(
        cron_job["job"]["executionCount"], 0,
        "no cron slot fired while paused: {cron_job}"
    );

    let resumed_at = Utc::now();
    let (status, resumed) = server
        .post_json(&format!("/tasks/{task}/resume"), &json!({}))
        .await?;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(
        (&resumed["paused"], &resumed["changed"]),
        (&json!(false), &json!(true))
    );
    let mut starts = Vec::new();
    for job in &jobs {
        let done = server
            .wait_finished(&url(job, "executionUrl")?, LIMIT)
            .await?;
        assert_eq!(done["status"], "done", "{done}");
        starts.push(time(&done, "startedAt").context("started")?);
    }
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "drained in the order submitted: {starts:?}"
    );
    // The slots that passed while paused fire as `missedRuns: latest` says:
    // once.
    let (_, cron_job) = server.get(&url(&cron, "jobUrl")?).await?;
    let missed: Vec<&Value> = cron_job["job"]["executions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| time(e, "scheduledAt").is_some_and(|s| s < resumed_at))
        .collect();
    assert_eq!(missed.len(), 1, "one run for the missed slots: {cron_job}");
    Ok(())
}
