//! Concurrency limits, as an operator sees them on the engine: a farm's
//! `maxRunning` and a task's limit are never exceeded, and the executions
//! over the limit wait their turn (scheduled and retried ones included)
//! instead of being dropped.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use fastlane_tests::engine::EngineApi;
use fastlane_tests::{Server, docker_hosts, image};

const LIMIT: Duration = Duration::from_secs(120);

/// `DOCKER_HOSTS` with every farm's `maxRunning` set to `max`.
pub(crate) fn farms_running_at_most(max: u32) -> anyhow::Result<String> {
    let mut farms: Value = serde_json::from_str(&docker_hosts())?;
    let farms = match &mut farms {
        Value::Array(farms) => farms,
        one => {
            return Ok(
                json!([{"match": one["match"], "hosts": one["hosts"], "maxRunning": max}])
                    .to_string(),
            );
        }
    };
    for farm in farms.iter_mut() {
        farm["maxRunning"] = json!(max);
    }
    Ok(Value::Array(farms.clone()).to_string())
}

/// The most containers of each task seen running at once (an upper-bound
/// check: a short overlap can fall between samples), sampled every
/// 100 ms until every job in `jobs` has a final execution and nothing
/// waits; returns the maxima and the jobs' details.
async fn watch(
    server: &Server,
    tasks: &[&str],
    jobs: &[Value],
) -> anyhow::Result<(Vec<usize>, Vec<Value>)> {
    let engine = EngineApi::new();
    let mut most = vec![0; tasks.len()];
    let deadline = Instant::now() + LIMIT;
    loop {
        for (task, most) in tasks.iter().zip(most.iter_mut()) {
            *most = (*most).max(engine.running(task).await?);
        }
        let mut details = Vec::with_capacity(jobs.len());
        for job in jobs {
            let url = job["jobUrl"].as_str().context("jobUrl")?;
            details.push(server.get(url).await?.1);
        }
        let settled = details.iter().all(|d| {
            let executions = d["job"]["executions"].as_array();
            executions.is_some_and(|e| {
                !e.is_empty()
                    && e.iter().all(|x| {
                        !matches!(
                            x["status"].as_str(),
                            Some("enqueued" | "pulling" | "running")
                        )
                    })
            })
        });
        if settled {
            return Ok((most, details));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "jobs did not all finish within {LIMIT:?}; most running {most:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The most executions of these jobs that ran at once, from their own
/// `startedAt` and `finishedAt` (exact, where sampling the engine can miss a
/// short overlap on a loaded machine).
pub(crate) fn peak(details: &[Value]) -> anyhow::Result<usize> {
    let time = |execution: &Value, field: &str| -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
        let text = execution[field]
            .as_str()
            .with_context(|| format!("no {field}: {execution}"))?;
        Ok(chrono::DateTime::parse_from_rfc3339(text)?.to_utc())
    };
    let mut edges = Vec::new();
    for job in details {
        for execution in job["job"]["executions"].as_array().into_iter().flatten() {
            // Ends sort before starts at the same instant.
            edges.push((time(execution, "startedAt")?, 1));
            edges.push((time(execution, "finishedAt")?, -1));
        }
    }
    edges.sort();
    let (mut running, mut most) = (0i64, 0i64);
    for (_, change) in edges {
        running += change;
        most = most.max(running);
    }
    Ok(usize::try_from(most).unwrap_or(0))
}

fn started_at(details: &Value) -> anyhow::Result<String> {
    let newest = &details["job"]["executions"][0];
    newest["startedAt"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("never started: {newest}"))
}

#[tokio::test]
async fn a_farm_never_runs_more_than_max_running_and_the_rest_wait_their_turn() -> anyhow::Result<()>
{
    let server = Server::start(&[
        ("DOCKER_HOSTS", &farms_running_at_most(2)?),
        ("WORKER_CONCURRENCY", "8"),
        ("EXPONENTIAL_BACKOFF_MIN_MS", "100"),
    ])
    .await?;
    let task = format!("limited-{}", uuid::Uuid::new_v4().simple());
    let mut now = Vec::new();
    for _ in 0..6 {
        let job = json!({"image": image(), "command": "sleep 2"});
        now.push(server.submit(&task, job).await?);
    }
    // One that fails once and is retried, one that falls due a second
    // later: both join the line.
    let retried = server
        .submit(
            &task,
            json!({"image": image(), "command": "sh -c 'sleep 1; exit 1'", "retries": 1}),
        )
        .await?;
    let later = server
        .submit(
            &task,
            json!({"image": image(), "command": "sleep 2", "startIn": "1s"}),
        )
        .await?;
    let mut jobs = now.clone();
    jobs.extend([retried, later]);

    let (most, details) = watch(&server, &[&task], &jobs).await?;

    assert!(
        most[0] <= 2,
        "the engine ran {most:?} at once: the farm allows 2"
    );
    assert_eq!(
        peak(&details)?,
        2,
        "the farm must run 2 at once, never more"
    );
    for job in &details[..6] {
        assert_eq!(job["job"]["executions"][0]["status"], "done", "{job}");
    }
    assert_eq!(details[6]["job"]["executionCount"], 2, "the retry ran");
    assert_eq!(details[7]["job"]["executions"][0]["status"], "done");
    // First come, first served: a job starts only after the one submitted
    // two places before it (two run at a time).
    let starts: Vec<String> = details[..6]
        .iter()
        .map(started_at)
        .collect::<Result<_, _>>()?;
    for (i, pair) in starts.windows(3).enumerate() {
        assert!(
            pair[0] < pair[2],
            "job {} started before job {i}: {starts:?}",
            i + 2
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_task_limit_holds_across_its_jobs_whichever_worker_runs_them() -> anyhow::Result<()> {
    let server = Server::start(&[
        (
            "TASK_CONCURRENCY",
            r#"[{"match": "capped-", "maxConcurrent": 2}]"#,
        ),
        ("WORKER_CONCURRENCY", "8"),
    ])
    .await?;
    let capped = format!("capped-{}", uuid::Uuid::new_v4().simple());
    let serial = format!("serial-{}", uuid::Uuid::new_v4().simple());
    let mut jobs = Vec::new();
    for _ in 0..4 {
        let job = json!({"image": image(), "command": "sleep 2"});
        jobs.push(server.submit(&capped, job).await?);
    }
    for _ in 0..3 {
        let job = json!({"image": image(), "command": "sleep 2", "maxConcurrent": 1});
        jobs.push(server.submit(&serial, job).await?);
    }

    let (most, details) = watch(&server, &[&capped, &serial], &jobs).await?;

    assert!(
        most[0] <= 2 && most[1] <= 1,
        "the engine ran {most:?} at once: TASK_CONCURRENCY allows 2, maxConcurrent 1"
    );
    let peaks = [peak(&details[..4])?, peak(&details[4..])?];
    assert_eq!(peaks, [2, 1], "TASK_CONCURRENCY allows 2, maxConcurrent 1");
    for job in &details {
        assert_eq!(job["job"]["executions"][0]["status"], "done", "{job}");
    }
    let (_, status) = server.get("/status").await?;
    let limits = status["limits"].as_array().context("limits in /status")?;
    assert!(
        limits
            .iter()
            .all(|l| l["running"] == 0 && l["waiting"] == 0),
        "every slot is given back: {limits:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_bad_max_concurrent_is_refused_before_anything_is_stored() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let (status, body) = server
        .post_raw(
            "bad-limit",
            json!({"image": image(), "command": "true", "maxConcurrent": 0}).to_string(),
        )
        .await?;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("maxConcurrent must be a whole number")),
        "{body}"
    );
    let (status, _) = server.get("/tasks/bad-limit").await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn a_full_farm_that_lets_work_fall_through_sends_it_to_the_next_matching_farm()
-> anyhow::Result<()> {
    let unix = fastlane_tests::engine::engine_socket();
    let tcp =
        std::env::var("FASTLANE_TEST_DOCKER_TCP").unwrap_or_else(|_| "127.0.0.1:23750".to_owned());
    let farms = json!([
        {"match": "spill-", "hosts": [format!("unix://{unix}")], "maxRunning": 1, "fallthrough": true},
        {"match": "", "hosts": [tcp.clone()], "maxRunning": 1},
    ]);
    let server = Server::start(&[
        ("DOCKER_HOSTS", &farms.to_string()),
        ("WORKER_CONCURRENCY", "8"),
    ])
    .await?;
    let task = format!("spill-{}", uuid::Uuid::new_v4().simple());
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let job = json!({"image": image(), "command": "sleep 4"});
        jobs.push(server.submit(&task, job).await?);
    }

    let (most, details) = watch(&server, &[&task], &jobs).await?;

    let hosts: Vec<&str> = details
        .iter()
        .map(|d| {
            d["job"]["executions"][0]["metadata"]["docker_host"]
                .as_str()
                .unwrap_or("")
        })
        .collect();
    // One slot in each farm, never more. (Whether the two runs overlap on
    // the engine depends on how fast it starts containers under load, so
    // the fall-through itself is shown by where the second job ran.)
    assert!(
        most[0] <= 2,
        "more than one slot in each farm: {most:?} (ran on {hosts:?})"
    );
    assert_eq!(
        hosts[0],
        format!("unix://{unix}"),
        "the first job runs on the farm its task id matches first"
    );
    assert_ne!(hosts[0], hosts[1], "the second job fell through: {hosts:?}");
    assert!(hosts.contains(&tcp.as_str()), "{hosts:?}");
    for job in &details {
        assert_eq!(job["job"]["executions"][0]["status"], "done", "{job}");
    }
    // A task only the catch-all matches never runs on the first farm.
    let other = server
        .submit("other-task", json!({"image": image(), "command": "true"}))
        .await?;
    let execution = server
        .wait_finished(other["executionUrl"].as_str().context("url")?, LIMIT)
        .await?;
    assert_eq!(execution["metadata"]["docker_host"], tcp.as_str());
    Ok(())
}
