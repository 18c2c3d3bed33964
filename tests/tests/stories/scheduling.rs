//! Jobs that run later, on a cron, or again; and jobs a user stops.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fastlane_tests::{Server, image};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

fn at(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("timestamp"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// Polls the job until `done(job)` holds; returns the job.
async fn wait_job(
    server: &Server,
    job_url: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, body) = server.get(job_url).await?;
        if done(&body["job"]) {
            return Ok(body["job"].clone());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "gave up waiting on {job_url}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count(job: &Value) -> u64 {
    job["executionCount"].as_u64().unwrap_or_default()
}

fn all_final(job: &Value) -> bool {
    job["executions"].as_array().is_some_and(|e| {
        e.iter().all(|e| {
            !matches!(
                e["status"].as_str(),
                Some("enqueued" | "pulling" | "running")
            )
        })
    })
}

#[tokio::test]
async fn a_start_in_job_fires_when_due_and_not_before() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let submitted = Utc::now();
    let created = server
        .submit(
            "later",
            json!({"image": image(), "command": "echo later", "startIn": "2s"}),
        )
        .await?;
    assert!(created["executionId"].is_null());
    let job_url = created["jobUrl"].as_str().expect("jobUrl");

    let (_, job) = server.get(job_url).await?;
    assert_eq!(job["job"]["executionCount"], 0);
    assert_eq!(job["job"]["scheduled"], true);
    let (_, status) = server.get("/status").await?;
    let listed = &status["jobs"]["scheduled"][0];
    assert_eq!(listed["jobId"], created["jobId"]);
    assert_eq!(listed["stopUrl"], format!("{job_url}stop/"));
    let due = at(&listed["nextScheduledAt"]);
    assert!(
        (due - submitted).num_milliseconds() >= 1900,
        "due {due}, submitted {submitted}"
    );

    let job = wait_job(&server, job_url, |j| count(j) == 1 && all_final(j)).await?;
    let execution = &job["executions"][0];
    assert_eq!(execution["log"], "later\n");
    let fired = at(&execution["createdAt"]);
    assert!(fired >= due, "fired at {fired}, before {due}");
    // On time, with room for a machine busy with other tests.
    assert!(
        (fired - due).num_milliseconds() < 3000,
        "fired {} ms late",
        (fired - due).num_milliseconds()
    );
    assert_eq!(job["scheduled"], false);
    Ok(())
}

#[tokio::test]
async fn a_start_at_in_the_past_runs_now() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit(
            "past",
            json!({"image": image(), "command": "echo now", "startAt": 1_600_000_000}),
        )
        .await?;
    let job = wait_job(&server, created["jobUrl"].as_str().expect("url"), |j| {
        count(j) == 1 && all_final(j)
    })
    .await?;
    assert_eq!(job["executions"][0]["log"], "now\n");
    Ok(())
}

#[tokio::test]
async fn a_cron_job_fires_every_slot_until_stopped() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit(
            "cron",
            json!({"image": image(), "command": "echo tick", "cron": "*/2 * * * * *"}),
        )
        .await?;
    let job_url = created["jobUrl"].as_str().expect("url");
    let job = wait_job(&server, job_url, |j| count(j) >= 2).await?;
    let executions = job["executions"].as_array().expect("executions");
    // Each run names its slot: two seconds apart, each fired in its time.
    let slots: Vec<DateTime<Utc>> = executions.iter().map(|e| at(&e["scheduledAt"])).collect();
    let gap = (slots[0] - slots[1]).num_milliseconds();
    assert_eq!(gap, 2000, "slots {gap} ms apart");
    for execution in &executions[..2] {
        let late = (at(&execution["createdAt"]) - at(&execution["scheduledAt"])).num_milliseconds();
        assert!((0..3000).contains(&late), "fired {late} ms after its slot");
    }

    let stop = server
        .client()
        .post(format!("{job_url}stop"))
        .send()
        .await?;
    assert_eq!(stop.status(), 200);
    let stopped: Value = stop.json().await?;
    assert_eq!(stopped["jobId"], created["jobId"]);
    let before = count(&server.get(job_url).await?.1["job"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, job) = server.get(job_url).await?;
    assert_eq!(count(&job["job"]), before, "fired after stop: {job}");
    assert_eq!(job["job"]["scheduled"], false);
    let (_, status) = server.get("/status").await?;
    assert_eq!(status["jobs"]["scheduled"], json!([]));
    Ok(())
}

#[tokio::test]
async fn stopping_a_cron_job_before_its_first_run_means_it_never_runs() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit(
            "cron-early",
            json!({"image": image(), "command": "echo no", "cron": "*/3 * * * * *"}),
        )
        .await?;
    let job_url = created["jobUrl"].as_str().expect("url");
    let stop = server
        .client()
        .post(format!("{job_url}stop/"))
        .send()
        .await?;
    assert_eq!(stop.status(), 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, job) = server.get(job_url).await?;
    assert_eq!(count(&job["job"]), 0, "{job}");
    Ok(())
}

#[tokio::test]
async fn put_replaces_a_schedule_and_only_the_new_command_runs() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let job_id = uuid::Uuid::new_v4().to_string();
    let put = |body: Value| {
        let url = server.url(&format!("/tasks/put/jobs/{job_id}"));
        let client = server.client().clone();
        async move {
            let response = client.put(url).body(body.to_string()).send().await?;
            let status = response.status().as_u16();
            Ok::<_, anyhow::Error>((status, response.json::<Value>().await?))
        }
    };
    let (status, created) =
        put(json!({"image": image(), "command": "echo old", "startIn": "1h"})).await?;
    assert_eq!(status, 200);
    assert_eq!(created["jobId"], job_id);
    let (status, _) =
        put(json!({"image": image(), "command": "echo new", "startIn": "1s"})).await?;
    assert_eq!(status, 200);

    let job_url = created["jobUrl"].as_str().expect("url");
    let job = wait_job(&server, job_url, |j| count(j) == 1 && all_final(j)).await?;
    assert_eq!(job["executions"][0]["log"], "new\n");
    assert_eq!(job["command"], "echo new");

    let bad = server
        .client()
        .put(server.url("/tasks/put/jobs/not-a-uuid"))
        .body(json!({"image": image(), "command": "true"}).to_string())
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await?;
    assert_eq!(
        bad["error"],
        "The job_id not-a-uuid is not a valid UUID4. All job IDs must be UUID4."
    );
    Ok(())
}

#[tokio::test]
async fn put_on_a_cron_job_that_already_fired_stops_the_old_chain() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let job_id = uuid::Uuid::new_v4().to_string();
    let url = server.url(&format!("/tasks/put-cron/jobs/{job_id}"));
    let send = |command: &str| {
        server
            .client()
            .put(&url)
            .body(
                json!({"image": image(), "command": command, "cron": "*/2 * * * * *"}).to_string(),
            )
            .send()
    };
    assert_eq!(send("echo old").await?.status(), 200);
    let job = wait_job(&server, &format!("{url}/"), |j| count(j) >= 1).await?;
    assert_eq!(job["executions"][0]["command"], "echo old");
    let replaced_at = Utc::now();
    assert_eq!(send("echo new").await?.status(), 200);
    let job = wait_job(&server, &format!("{url}/"), |j| {
        j["executions"]
            .as_array()
            .is_some_and(|e| e.iter().filter(|e| e["command"] == "echo new").count() >= 2)
    })
    .await?;
    for execution in job["executions"].as_array().expect("executions") {
        if at(&execution["createdAt"]) > replaced_at {
            assert_eq!(
                execution["command"], "echo new",
                "the old chain fired: {execution}"
            );
        }
    }
    server.client().post(format!("{url}/stop")).send().await?;
    Ok(())
}

#[tokio::test]
async fn stopping_a_running_job_ends_it_stopped_and_it_is_not_retried() -> anyhow::Result<()> {
    let server = Server::start(&[("STOP_GRACE_SECONDS", "1")]).await?;
    let created = server
        .submit(
            "stop",
            json!({"image": image(), "command": "sleep 30", "retries": 2}),
        )
        .await?;
    let url = created["executionUrl"].as_str().expect("url");
    server
        .wait_for(url, LIMIT, |e| e["status"] == "running")
        .await?;
    let began = Instant::now();
    let stop = server
        .client()
        .post(format!("{}stop", created["jobUrl"].as_str().expect("url")))
        .send()
        .await?;
    assert_eq!(stop.status(), 200);
    let execution = server.wait_finished(url, LIMIT).await?;
    assert_eq!(execution["status"], "stopped");
    assert!(
        execution["error"]
            .as_str()
            .unwrap_or_default()
            .contains("User stopped"),
        "{execution}"
    );
    // The container was stopped, not left to sleep out its 30 s.
    let job = wait_job(&server, created["jobUrl"].as_str().expect("url"), |j| {
        j["executions"][0]["exitCode"].is_number()
    })
    .await?;
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, job_now) = server.get(created["jobUrl"].as_str().expect("url")).await?;
    assert_eq!(
        job_now["job"]["executionCount"], 1,
        "retried after stop: {job}"
    );
    Ok(())
}

#[tokio::test]
async fn stopping_one_execution_answers_with_its_links() -> anyhow::Result<()> {
    let server = Server::start(&[("STOP_GRACE_SECONDS", "1")]).await?;
    let created = server
        .submit("stop-one", json!({"image": image(), "command": "sleep 30"}))
        .await?;
    let url = created["executionUrl"].as_str().expect("url");
    server
        .wait_for(url, LIMIT, |e| e["status"] == "running")
        .await?;
    let response = server.client().post(format!("{url}stop")).send().await?;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    assert_eq!(body["execution"]["id"], created["executionId"]);
    assert_eq!(body["execution"]["url"], url);
    assert_eq!(body["job"]["url"], created["jobUrl"]);
    let execution = server.wait_finished(url, LIMIT).await?;
    assert_eq!(execution["status"], "stopped");

    let missing = server
        .client()
        .post(format!(
            "{}executions/nope/stop",
            created["jobUrl"].as_str().expect("url")
        ))
        .send()
        .await?;
    assert_eq!(missing.status(), 404);
    Ok(())
}

#[tokio::test]
async fn retry_runs_the_last_execution_again() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit(
            "retry-route",
            json!({"image": image(), "command": "echo again"}),
        )
        .await?;
    let job_url = created["jobUrl"].as_str().expect("url");
    server
        .wait_finished(created["executionUrl"].as_str().expect("url"), LIMIT)
        .await?;
    let response = server
        .client()
        .post(format!("{job_url}retry"))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let retried: Value = response.json().await?;
    let execution = server
        .wait_finished(retried["executionUrl"].as_str().expect("url"), LIMIT)
        .await?;
    assert_eq!(execution["log"], "again\n");
    let (_, job) = server.get(job_url).await?;
    assert_eq!(job["job"]["executionCount"], 2);

    // A retry sent again with its Idempotency-Key makes one execution.
    let mut keyed = Vec::new();
    for _ in 0..3 {
        let response = server
            .client()
            .post(format!("{job_url}retry"))
            .header("Idempotency-Key", "retry-once")
            .send()
            .await?;
        assert_eq!(response.status(), 200);
        keyed.push(response.json::<Value>().await?["executionId"].clone());
    }
    assert!(
        keyed.iter().all(|id| *id == keyed[0] && id.is_string()),
        "{keyed:?}"
    );
    let (_, job) = server.get(job_url).await?;
    assert_eq!(job["job"]["executionCount"], 3);

    let later = server
        .submit(
            "retry-route",
            json!({"image": image(), "command": "true", "startIn": "1h"}),
        )
        .await?;
    let response = server
        .client()
        .post(format!("{}retry", later["jobUrl"].as_str().expect("url")))
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await?["error"],
        "Can't retry a scheduled job."
    );

    let cron = server
        .submit(
            "retry-route",
            json!({"image": image(), "command": "true", "cron": "0 0 1 1 *"}),
        )
        .await?;
    let response = server
        .client()
        .post(format!("{}retry", cron["jobUrl"].as_str().expect("url")))
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await?["error"],
        "No execution yet to retry."
    );
    Ok(())
}

#[tokio::test]
async fn retries_wait_longer_each_time() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit(
            "backoff",
            json!({"image": image(), "command": "sh -c 'exit 3'", "retries": 2,
                   "backoff": {"minMs": 1000, "factor": 3}}),
        )
        .await?;
    let job = wait_job(&server, created["jobUrl"].as_str().expect("url"), |j| {
        count(j) == 3 && all_final(j)
    })
    .await?;
    let mut runs: Vec<&Value> = job["executions"]
        .as_array()
        .expect("executions")
        .iter()
        .collect();
    runs.reverse(); // oldest first
    let gap =
        |a: &Value, b: &Value| (at(&b["startedAt"]) - at(&a["finishedAt"])).num_milliseconds();
    let (first, second) = (gap(runs[0], runs[1]), gap(runs[1], runs[2]));
    assert!(first >= 1000, "first retry after {first} ms");
    assert!(second >= 3000, "second retry after {second} ms");
    assert!(
        runs.iter()
            .all(|r| r["exitCode"] == 3 && r["status"] == "failed")
    );
    Ok(())
}

#[tokio::test]
async fn an_expired_job_is_recorded_expired_and_not_run() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let expiration = Utc::now().timestamp() + 1;
    let created = server
        .submit(
            "expired",
            json!({"image": image(), "command": "echo never", "startIn": "3s", "expiration": expiration}),
        )
        .await?;
    let job = wait_job(&server, created["jobUrl"].as_str().expect("url"), |j| {
        count(j) == 1
    })
    .await?;
    let execution = &job["executions"][0];
    assert_eq!(execution["status"], "expired");
    assert!(execution["log"].is_null());
    assert!(
        execution["error"]
            .as_str()
            .unwrap_or_default()
            .contains("was supposed to be done before")
    );
    Ok(())
}

#[tokio::test]
async fn forbid_skips_slots_while_the_previous_run_is_live() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit(
            "forbid",
            json!({"image": image(), "command": "sleep 5", "cron": "*/1 * * * * *", "concurrencyPolicy": "Forbid"}),
        )
        .await?;
    let job_url = created["jobUrl"].as_str().expect("url");
    tokio::time::sleep(Duration::from_secs(8)).await;
    server
        .client()
        .post(format!("{job_url}stop"))
        .send()
        .await?;
    let (_, job) = server.get(job_url).await?;
    let runs = job["job"]["executions"].as_array().expect("executions");
    assert!(
        (1..=3).contains(&runs.len()),
        "{} runs in 8 s of 5 s runs: {job}",
        runs.len()
    );
    Ok(())
}

#[tokio::test]
async fn search_matches_whole_words_of_task_ids() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    for task in ["task-search-1", "search", "researcher", "other"] {
        server
            .submit(task, json!({"image": image(), "command": "true"}))
            .await?;
    }
    let (status, found) = server.get("/search/?query=search").await?;
    assert_eq!(status, 200);
    let mut ids: Vec<&str> = found["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|t| t["taskId"].as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["search", "task-search-1"]);
    let (_, none) = server.get("/search?query=sea").await?;
    assert_eq!(none["total"], 0);
    let (status, error) = server.get("/search/").await?;
    assert_eq!(status, 400);
    assert_eq!(error["error"], "The query param is required.");
    Ok(())
}

#[tokio::test]
async fn replace_stops_the_previous_run_when_the_next_slot_comes() -> anyhow::Result<()> {
    let server = Server::start(&[("STOP_GRACE_SECONDS", "1")]).await?;
    let created = server
        .submit(
            "replace",
            json!({"image": image(), "command": "sleep 30", "cron": "*/3 * * * * *", "concurrencyPolicy": "Replace"}),
        )
        .await?;
    let job_url = created["jobUrl"].as_str().expect("url");
    let job = wait_job(&server, job_url, |j| {
        j["executions"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["status"] == "stopped"))
    })
    .await?;
    let stopped = job["executions"]
        .as_array()
        .expect("executions")
        .iter()
        .find(|e| e["status"] == "stopped")
        .expect("a stopped run");
    assert!(
        stopped["error"]
            .as_str()
            .unwrap_or_default()
            .contains("replaced by the next cron run"),
        "{stopped}"
    );
    server
        .client()
        .post(format!("{job_url}stop"))
        .send()
        .await?;
    Ok(())
}

/// A run of a delayed job knows the slot it fired for: `scheduledAt` in the
/// API, and `FASTLANE_SCHEDULED_AT` (RFC 3339) in its container.
#[tokio::test]
async fn a_scheduled_run_sees_its_slot_in_its_environment() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit(
            "slot-env",
            json!({"image": image(), "command": "sh -c 'echo $FASTLANE_SCHEDULED_AT'", "startIn": "1s"}),
        )
        .await?;
    let job_url = created["jobUrl"].as_str().expect("jobUrl");
    let job = wait_job(&server, job_url, |job| count(job) >= 1).await?;
    let path = format!(
        "/tasks/slot-env/jobs/{}/executions/{}",
        created["jobId"].as_str().expect("jobId"),
        job["executions"][0]["executionId"]
            .as_str()
            .expect("executionId")
    );
    let execution = server.wait_finished(&path, LIMIT).await?;
    assert_eq!(execution["status"], "done", "{execution}");
    let slot = at(&execution["scheduledAt"]);
    let seen: DateTime<Utc> = execution["log"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}: {execution}"))?;
    assert_eq!(
        seen.timestamp_millis(),
        slot.timestamp_millis(),
        "{execution}"
    );
    let (_, status) = server.get("/status").await?;
    assert_eq!(status["jobs"]["scheduled"], json!([]));
    Ok(())
}

/// A cron job's past slots can be run after the fact: each once, each
/// seeing its slot, however often the same span is backfilled.
#[tokio::test]
async fn backfilling_a_cron_job_runs_each_past_slot_once() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let yearly = json!({"image": image(), "command": "sh -c 'echo $FASTLANE_SCHEDULED_AT'", "cron": "0 0 1 1 *"});
    let created = server.submit("backfill", yearly).await?;
    let job_url = created["jobUrl"].as_str().expect("jobUrl").to_owned();
    let backfill = |body: Value| {
        let url = format!("{job_url}backfill");
        let client = server.client().clone();
        async move {
            let response = client.post(url).json(&body).send().await?;
            let status = response.status().as_u16();
            anyhow::Ok((status, response.json::<Value>().await?))
        }
    };
    let span = json!({"from": "2020-01-01T00:00:00Z", "to": "2022-01-01T00:00:00Z"});
    let (status, first) = backfill(span.clone()).await?;
    assert_eq!(status, 200, "{first}");
    let runs = first["runs"].as_array().cloned().unwrap_or_default();
    let slots: Vec<&str> = runs
        .iter()
        .filter_map(|r| r["scheduledAt"].as_str())
        .collect();
    assert_eq!(slots.len(), 3, "{first}");
    for run in &runs {
        let url = run["executionUrl"].as_str().unwrap_or_default();
        let execution = server.wait_finished(url, LIMIT).await?;
        let seen: DateTime<Utc> = execution["log"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .parse()?;
        assert_eq!(seen, at(&run["scheduledAt"]), "{execution}");
    }

    let (status, again) = backfill(span).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["runs"], first["runs"], "the same runs");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, job) = server.get(&job_url).await?;
    assert_eq!(count(&job["job"]), 3, "no slot ran twice: {job}");

    let future = json!({"from": "2020-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"});
    assert_eq!(backfill(future).await?.0, 400);
    let once = server
        .submit("backfill", json!({"image": image(), "command": "true"}))
        .await?;
    let (status, error) = server
        .client()
        .post(format!(
            "{}backfill",
            once["jobUrl"].as_str().expect("jobUrl")
        ))
        .json(&json!({"from": "2020-01-01T00:00:00Z", "to": "2021-01-01T00:00:00Z"}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map(|s| (s, ()))?;
    assert_eq!(status, 400, "{error:?}");
    Ok(())
}
