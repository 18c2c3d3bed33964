//! fastlane deployed as separate processes: `fastlane api`s and `fastlane
//! worker`s sharing Redis (the queue) and PostgreSQL (the store), running
//! containers on two Docker API hosts. The engine's own event stream is the
//! witness that each execution ran in exactly one container.
//!
//! The hosts are Docker Engine's two listeners: these stories fill an
//! engine with hundreds of containers, and Podman creates them more slowly
//! the more finished ones it holds (the 300-job story took 126 s on an empty
//! Podman and 242 s on one holding 680 containers, as it does late in a full
//! test run; Docker Engine took 97–103 s either way).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::StreamExt;
use serde_json::{Value, json};

use fastlane_tests::postgres::fresh_store_url;
use fastlane_tests::processes::{ContainerCreations, Worker};
use fastlane_tests::receiver::Receiver;
use fastlane_tests::redis::RedisServer;
use fastlane_tests::{Server, image};

/// Docker Engine's Unix socket and TCP listener (`scripts/services.sh`).
fn engine_listeners() -> (String, String) {
    let unix = std::env::var("FASTLANE_TEST_DOCKERD_UNIX")
        .unwrap_or_else(|_| "unix:///run/fastlane/docker.sock".to_owned());
    let tcp =
        std::env::var("FASTLANE_TEST_DOCKERD_TCP").unwrap_or_else(|_| "127.0.0.1:23760".to_owned());
    (unix, tcp)
}

/// Both listeners of the test engine as two hosts of one farm.
fn two_hosts(max_running: u32) -> String {
    let (unix, tcp) = engine_listeners();
    json!([{"match": "", "hosts": [unix, tcp], "maxRunning": max_running}]).to_string()
}

/// The engine's `create` events for `task`'s containers, from now on.
async fn watch_creations(task: &str) -> anyhow::Result<ContainerCreations> {
    let (_, tcp) = engine_listeners();
    ContainerCreations::watch(&tcp, &[task.to_owned()]).await
}

/// A task name no other test uses.
fn unique_task(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// The path of a submission's execution (`/tasks/…/executions/<id>`).
fn execution_path(created: &Value) -> anyhow::Result<String> {
    created["executionUrl"]
        .as_str()
        .and_then(|url| url.find("/tasks/").map(|at| url[at..].to_owned()))
        .with_context(|| format!("no executionUrl in {created}"))
}

/// Polls every execution (through `api`) until all are final or `limit`
/// passes; returns them by path.
async fn wait_all_finished(
    api: &Server,
    paths: &[String],
    limit: Duration,
) -> anyhow::Result<HashMap<String, Value>> {
    let deadline = Instant::now() + limit;
    let mut finished = HashMap::new();
    loop {
        let pending: Vec<&String> = paths
            .iter()
            .filter(|p| !finished.contains_key(*p))
            .collect();
        if pending.is_empty() {
            return Ok(finished);
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} executions still unfinished after {limit:?}, e.g. {}",
                pending.len(),
                paths.len(),
                pending[0]
            );
        }
        let polled: Vec<anyhow::Result<(String, Value)>> = futures_util::stream::iter(pending)
            .map(|path| async move {
                let (status, body) = api.get(path).await?;
                ensure!(status == 200, "GET {path} answered {status}: {body}");
                Ok((path.clone(), body["execution"].clone()))
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for polled in polled {
            let (path, execution) = polled?;
            if !matches!(
                execution["status"].as_str(),
                Some("enqueued" | "pulling" | "running")
            ) {
                finished.insert(path, execution);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_apis_and_three_workers_run_each_of_300_jobs_exactly_once() -> anyhow::Result<()> {
    const JOBS: usize = 300;
    let redis = RedisServer::start().await?;
    let store = fresh_store_url()?;
    let redis_url = redis.url();
    let hosts = two_hosts(12);
    let env = [
        ("STORE_URL", store.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("DOCKER_HOSTS", hosts.as_str()),
        ("WORKER_CONCURRENCY", "4"),
    ];
    let apis = [
        Server::start_api(&env).await?,
        Server::start_api(&env).await?,
    ];
    let _workers = ["w1", "w2", "w3"]
        .iter()
        .map(|id| Worker::start(id, &[], &env))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let task = unique_task("multi");
    let creations = watch_creations(&task).await?;

    // Posted across both APIs, ten at a time.
    let submitted: Vec<anyhow::Result<(usize, String)>> = futures_util::stream::iter(0..JOBS)
        .map(|i| {
            let api = &apis[i % 2];
            let task = &task;
            async move {
                let job = json!({"image": image(), "command": format!("echo job-{i}")});
                let created = api.submit(task, job).await?;
                Ok((i, execution_path(&created)?))
            }
        })
        .buffer_unordered(10)
        .collect()
        .await;
    let submitted = submitted.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let paths: Vec<String> = submitted.iter().map(|(_, path)| path.clone()).collect();

    // Read back through the other API than the one that took each job.
    let finished = wait_all_finished(&apis[1], &paths, Duration::from_secs(600)).await?;
    let mut hosts_used = HashMap::<String, usize>::new();
    for (i, path) in &submitted {
        let execution = &finished[path];
        assert_eq!(execution["status"], "done", "job {i}: {execution}");
        assert_eq!(
            execution["log"],
            format!("job-{i}\n"),
            "job {i}: {execution}"
        );
        let host = execution["metadata"]["docker_host"].as_str().unwrap_or("?");
        *hosts_used.entry(host.to_owned()).or_default() += 1;
    }
    assert_eq!(
        hosts_used.len(),
        2,
        "work spread over both hosts: {hosts_used:?}"
    );

    // The engine saw exactly one container per execution.
    let counts = creations.counts()?;
    let ran_twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        ran_twice.is_empty(),
        "executions with several containers: {ran_twice:?}"
    );
    assert_eq!(counts.len(), JOBS, "one container for every job");
    drop(redis);
    Ok(())
}

/// A small deterministic generator, so that a failing run's kill points can
/// be replayed from its seed.
struct KillPoints(u64);

impl KillPoints {
    fn below(&mut self, bound: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_killed_at_random_points_lose_no_job_and_run_none_twice() -> anyhow::Result<()> {
    const TRIALS: usize = 20;
    let seed = std::env::var("FASTLANE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 | 1);
    eprintln!("kill points from seed {seed} (FASTLANE_TEST_SEED={seed} replays them)");
    let mut kill_points = KillPoints(seed);

    let redis = RedisServer::start().await?;
    let store = fresh_store_url()?;
    let redis_url = redis.url();
    let hosts = two_hosts(20);
    let env = [
        ("STORE_URL", store.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("DOCKER_HOSTS", hosts.as_str()),
        ("WORKER_CONCURRENCY", "4"),
        // A dead worker's messages come back after 5 s (the shortest lease).
        ("QUEUE_LEASE_SECONDS", "5"),
    ];
    let api = Server::start_api(&env).await?;
    let task = unique_task("crash");
    let creations = watch_creations(&task).await?;

    // Each trial: a fresh worker, three jobs of different lengths, and a
    // SIGKILL somewhere between taking them and finishing them (pulling,
    // running, just exited, result half stored...). Later workers also
    // inherit the earlier ones' unfinished work, and may die on it too.
    let mut jobs = Vec::new();
    let mut kills = Vec::new();
    for trial in 0..TRIALS {
        let mut worker = Worker::start(&format!("doomed-{trial}"), &[], &env)?;
        for (n, sleep) in ["0", "0.3", "1"].into_iter().enumerate() {
            let exit = (trial + n) % 3;
            let command = format!(
                "sh -c 'echo begin-{trial}-{n}; sleep {sleep}; echo end-{trial}-{n}; exit {exit}'"
            );
            let created = api
                .submit(&task, json!({"image": image(), "command": command}))
                .await?;
            let expected_log = format!("begin-{trial}-{n}\nend-{trial}-{n}\n");
            jobs.push((execution_path(&created)?, expected_log, exit));
        }
        let after = Duration::from_millis(kill_points.below(2500));
        tokio::time::sleep(after).await;
        worker.kill();
        kills.push(after.as_millis());
    }
    eprintln!("workers killed after (ms): {kills:?}");

    let _survivor = Worker::start("survivor", &[], &env)?;
    let paths: Vec<String> = jobs.iter().map(|(path, _, _)| path.clone()).collect();
    let finished = wait_all_finished(&api, &paths, Duration::from_secs(300)).await?;
    for (path, expected_log, exit) in &jobs {
        let execution = &finished[path];
        let status = if *exit == 0 { "done" } else { "failed" };
        assert_eq!(execution["status"], status, "seed {seed}: {execution}");
        assert_eq!(execution["exitCode"], *exit, "seed {seed}: {execution}");
        assert_eq!(execution["log"], *expected_log, "seed {seed}: {execution}");
    }

    let counts = creations.counts()?;
    let ran_twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        ran_twice.is_empty(),
        "seed {seed}: executions with several containers: {ran_twice:?}"
    );
    assert_eq!(
        counts.len(),
        jobs.len(),
        "seed {seed}: one container for every job"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_under_api_and_worker_processes_loses_nothing_and_refuses_nothing()
-> anyhow::Result<()> {
    let mut redis = RedisServer::start().await?;
    let store = fresh_store_url()?;
    let redis_url = redis.url();
    let env = [
        ("STORE_URL", store.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("WORKER_CONCURRENCY", "2"),
    ];
    let api = Server::start_api(&env).await?;
    let _worker = Worker::start("steady", &[], &env)?;
    let task = unique_task("redis-restart");
    let mut acknowledged = Vec::new();
    for i in 0..4 {
        let job = json!({"image": image(), "command": format!("sh -c 'sleep 1; echo {i}'")});
        acknowledged.push(api.submit(&task, job).await?);
    }

    // The API keeps accepting jobs while Redis is away: their messages
    // wait in the store's outbox.
    redis.kill();
    let during = json!({"image": image(), "command": "echo 4"});
    acknowledged.push(api.submit(&task, during).await?);

    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart().await?;
    let last = json!({"image": image(), "command": "echo 5"});
    acknowledged.push(api.submit(&task, last).await?);
    let paths = acknowledged
        .iter()
        .map(execution_path)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let finished = wait_all_finished(&api, &paths, Duration::from_secs(120)).await?;
    for (i, path) in paths.iter().enumerate() {
        let execution = &finished[path];
        assert_eq!(execution["status"], "done", "{execution}");
        assert_eq!(execution["log"], format!("{i}\n"), "{execution}");
    }
    let (_, listed) = api.get(&format!("/tasks/{task}")).await?;
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(6), "{listed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_process_streams_the_live_log_of_a_job_a_worker_process_runs() -> anyhow::Result<()>
{
    use tokio_tungstenite::tungstenite::Message;

    let redis = RedisServer::start().await?;
    let store = fresh_store_url()?;
    let redis_url = redis.url();
    let env = [
        ("STORE_URL", store.as_str()),
        ("REDIS_URL", redis_url.as_str()),
    ];
    let api = Server::start_api(&env).await?;
    let _worker = Worker::start("runs-it", &[], &env)?;
    let command = "sh -c 'echo one; sleep 5; echo two; sleep 1; echo three'";
    let created = api
        .submit(
            &unique_task("live"),
            json!({"image": image(), "command": command}),
        )
        .await?;
    let path = execution_path(&created)?;
    api.wait_for(&api.url(&path), Duration::from_secs(60), |e| {
        e["status"] == "running"
    })
    .await?;

    let job_url = created["jobUrl"].as_str().context("jobUrl")?;
    let socket_url = format!("{}ws", job_url.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(&socket_url).await?;
    let mut frames = Vec::new();
    let mut reason = None;
    while let Some(message) = tokio::time::timeout(Duration::from_secs(60), socket.next()).await? {
        match message? {
            Message::Text(text) => frames.push((Instant::now(), text.to_string())),
            Message::Close(frame) => {
                reason = frame.map(|f| f.reason.to_string());
                break;
            }
            _ => {}
        }
    }
    let text: String = frames.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(text, "one\ntwo\nthree\n", "{frames:?}");
    assert_eq!(reason.as_deref(), Some("done"));
    // `one` may come with the socket's catch-up, however late it opened;
    // `two` and `three`, a second apart, come live.
    let came = |line: &str| {
        frames
            .iter()
            .find(|(_, text)| text.contains(line))
            .map(|(at, _)| *at)
            .with_context(|| format!("no frame with {line:?}: {frames:?}"))
    };
    let apart = came("three")? - came("two")?;
    assert!(
        apart >= Duration::from_millis(700),
        "frames came as written, not all at the end: {frames:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn work_a_queue_lost_is_queued_again_from_the_store_when_a_worker_starts()
-> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let store = fresh_store_url()?;
    let redis_url = redis.url();
    let env = [
        ("STORE_URL", store.as_str()),
        ("REDIS_URL", redis_url.as_str()),
    ];
    let api = Server::start_api(&env).await?;
    let task = unique_task("requeued");
    let mut paths = Vec::new();
    for i in 0..3 {
        let job = json!({"image": image(), "command": format!("echo {i}")});
        paths.push(execution_path(&api.submit(&task, job).await?)?);
    }
    // Redis loses everything (say, restarted without persistence) before
    // any worker ran.
    let flushed = std::process::Command::new("redis-cli")
        .args(["-u", &redis_url, "FLUSHALL"])
        .output()?;
    ensure!(flushed.status.success(), "redis-cli FLUSHALL: {flushed:?}");

    let _worker = Worker::start("reconciler", &[], &env)?;
    let finished = wait_all_finished(&api, &paths, Duration::from_secs(60)).await?;
    for (i, path) in paths.iter().enumerate() {
        assert_eq!(finished[path]["status"], "done", "{}", finished[path]);
        assert_eq!(finished[path]["log"], format!("{i}\n"));
    }
    Ok(())
}

/// Redis loses everything while an API and a worker run a cron job and a
/// webhook waits in the queue for its next try (a minute of back-off): the
/// worker's monitor role sees the queue's epoch change and queues the
/// schedule and the owed delivery again from the store, so the job goes on
/// firing and the hook gets its second try, once.
#[tokio::test(flavor = "multi_thread")]
async fn schedules_and_owed_notifications_outlive_a_redis_flushall_under_api_and_worker_processes()
-> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let receiver = Receiver::start(vec![500, 200]).await?;
    let store = fresh_store_url()?;
    let redis_url = redis.url();
    let env = [
        ("STORE_URL", store.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("WEBHOOKS_ALLOW_LOCAL_NETWORK", "true"),
        ("WEBHOOKS_EXPONENTIAL_BACKOFF_MIN_MS", "60000"),
    ];
    let api = Server::start_api(&env).await?;
    let worker = Worker::start("cron-keeper", &[], &env)?;
    let task = unique_task("flushed-cron");
    let hook = json!({"url": format!("{}/finishes", receiver.url), "retries": 3});
    api.submit(
        &task,
        json!({"image": image(), "command": "echo hooked", "webhooks": {"finishes": [hook]}}),
    )
    .await?;
    let created = api
        .submit(
            &task,
            json!({"image": image(), "command": "echo tick", "cron": "*/2 * * * * *"}),
        )
        .await?;
    let job_path = format!(
        "/tasks/{task}/jobs/{}",
        created["jobId"].as_str().context("jobId")?
    );
    let fired = |job: &Value| job["job"]["executions"].as_array().map_or(0, Vec::len);
    let started = Instant::now();
    while fired(&api.get(&job_path).await?.1) < 2 || receiver.received().is_empty() {
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "never fired twice, or never notified"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    redis.cli(&["FLUSHALL"])?;
    let before = fired(&api.get(&job_path).await?.1);
    let flushed = Instant::now();
    loop {
        let (_, job) = api.get(&job_path).await?;
        if fired(&job) >= before + 2 && receiver.received().len() >= 2 {
            break;
        }
        ensure!(
            flushed.elapsed() < Duration::from_secs(15),
            "the schedule or the delivery went with the queue's data: {job}, {} requests\n{}",
            receiver.received().len(),
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // nothing more may come
    assert_eq!(
        receiver.received().len(),
        2,
        "the hook tried twice, no more"
    );
    Ok(())
}

/// On PostgreSQL too, with two API processes: 100 identical submissions
/// with one `Idempotency-Key`, sent at once to both, make one job.
#[tokio::test(flavor = "multi_thread")]
async fn one_idempotency_key_makes_one_job_across_api_processes() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let store = fresh_store_url()?;
    let redis_url = redis.url();
    let env = [
        ("STORE_URL", store.as_str()),
        ("REDIS_URL", redis_url.as_str()),
    ];
    let apis = [
        Server::start_api(&env).await?,
        Server::start_api(&env).await?,
    ];
    let task = unique_task("keyed");
    let body = json!({"image": image(), "command": "echo once"});
    let answers = futures_util::future::join_all(
        (0..100).map(|i| apis[i % 2].post_keyed(&task, "payment-42", &body)),
    )
    .await;
    let mut job_ids = std::collections::BTreeSet::new();
    for answer in answers {
        let (status, created) = answer?;
        ensure!(status == 200, "{status}: {created}");
        job_ids.insert(created["jobId"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(job_ids.len(), 1, "one job for one key: {job_ids:?}");
    let (_, listed) = apis[0].get(&format!("/tasks/{task}")).await?;
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(1), "{listed}");
    Ok(())
}
