//! Throughput benchmark: how fast fastlane turns submitted jobs into
//! finished containers on the local engine, and what it costs.
//!
//! Run with (after `scripts/services.sh`):
//!
//! ```sh
//! cargo build --release -p fastlane-server
//! FASTLANE_BIN=target/release/fastlane \
//!     cargo run --release -p fastlane-tests --bin bench-throughput -- 200 8
//! ```
//!
//! Arguments: number of jobs (default 200), `WORKER_CONCURRENCY` (default
//! 8), and a number of workers (default 0). With 0 it measures one
//! `fastlane standalone` on its embedded store and queue; with N it measures
//! one `fastlane api` and N `fastlane worker`s on a private Redis and a fresh
//! PostgreSQL schema, with the engine's two listeners as two hosts. It
//! submits every job at once (64 requests in flight), waits for all of them
//! to finish, and prints submission latency, queue wait, end-to-end latency,
//! overall jobs per second and each process's peak RSS.
//! `FASTLANE_BENCH_DOCKER_HOSTS` replaces the workers' `DOCKER_HOSTS`.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use fastlane_tests::{Server, image};
use futures_util::StreamExt;
use serde_json::{Value, json};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn time(value: &Value) -> anyhow::Result<DateTime<Utc>> {
    let text = value.as_str().context("missing timestamp")?;
    Ok(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn row(name: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} |",
        percentile(&values, 50.0),
        percentile(&values, 99.0),
        values.last().copied().unwrap_or(f64::NAN)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().map_or(Ok(200), |a| a.parse())?;
    let concurrency = args.next().unwrap_or_else(|| "8".to_owned());
    let workers: usize = args.next().map_or(Ok(0), |a| a.parse())?;

    // Kept alive until the end: the networked deployment's parts.
    let mut redis = None;
    let mut worker_processes = Vec::new();
    let server = if workers == 0 {
        Server::start(&[("WORKER_CONCURRENCY", &concurrency), ("RUST_LOG", "warn")]).await?
    } else {
        let queue = fastlane_tests::redis::RedisServer::start().await?;
        let redis_url = queue.url();
        redis = Some(queue);
        let store = fastlane_tests::postgres::fresh_store_url()?;
        let unix = std::env::var("FASTLANE_TEST_DOCKER_UNIX")
            .unwrap_or_else(|_| "unix:///run/fastlane/podman.sock".to_owned());
        let tcp = std::env::var("FASTLANE_TEST_DOCKER_TCP")
            .unwrap_or_else(|_| "127.0.0.1:23750".to_owned());
        let hosts = std::env::var("FASTLANE_BENCH_DOCKER_HOSTS").unwrap_or_else(|_| {
            json!([{"match": "", "hosts": [unix, tcp], "maxRunning": 100}]).to_string()
        });
        let env = [
            ("STORE_URL", store.as_str()),
            ("REDIS_URL", redis_url.as_str()),
            ("DOCKER_HOSTS", hosts.as_str()),
            ("WORKER_CONCURRENCY", concurrency.as_str()),
            ("RUST_LOG", "warn"),
        ];
        for i in 0..workers {
            worker_processes.push(fastlane_tests::processes::Worker::start(
                &format!("bench-{i}"),
                &[],
                &env,
            )?);
        }
        Server::start_api(&env).await?
    };

    let started = Instant::now();
    let submissions = futures_util::stream::iter(0..jobs)
        .map(|i| {
            let server = &server;
            async move {
                let t = Instant::now();
                let created = server
                    .submit(
                        "bench",
                        json!({"image": image(), "command": format!("echo {i}")}),
                    )
                    .await?;
                Ok::<_, anyhow::Error>((t.elapsed(), created))
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let submitted = started.elapsed();
    let mut submit_ms = Vec::new();
    let mut urls = Vec::new();
    for result in submissions {
        let (took, created) = result?;
        submit_ms.push(took.as_secs_f64() * 1000.0);
        urls.push(created["executionUrl"].as_str().context("url")?.to_owned());
    }

    let mut queue_wait_ms = Vec::new();
    let mut end_to_end_ms = Vec::new();
    for url in &urls {
        let execution = server.wait_finished(url, Duration::from_secs(600)).await?;
        anyhow::ensure!(execution["status"] == "done", "{execution}");
        let created = time(&execution["createdAt"])?;
        let started = time(&execution["startedAt"])?;
        let finished = time(&execution["finishedAt"])?;
        queue_wait_ms.push((started - created).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        end_to_end_ms.push((finished - created).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    let all_done = started.elapsed();

    let deployment = if workers == 0 {
        "one fastlane standalone".to_owned()
    } else {
        format!("one fastlane api and {workers} fastlane worker(s) on Redis and PostgreSQL")
    };
    println!(
        "{deployment}; jobs: {jobs}, WORKER_CONCURRENCY: {concurrency}, image: {}",
        image()
    );
    println!(
        "all submitted in {:.2} s; all finished in {:.2} s: {:.2} jobs/s",
        submitted.as_secs_f64(),
        all_done.as_secs_f64(),
        jobs as f64 / all_done.as_secs_f64()
    );
    println!();
    println!("| latency (ms) | p50 | p99 | max |");
    println!("|---|---|---|---|");
    row("submit (POST → 200)", submit_ms);
    row("queue wait (created → started)", queue_wait_ms);
    row("end to end (created → finished)", end_to_end_ms);
    println!();
    if let Some(kib) = server.pid().and_then(peak_rss_kib) {
        println!("server peak RSS: {:.1} MiB", kib as f64 / 1024.0);
    }
    for worker in &worker_processes {
        if let Some(kib) = worker.pid().and_then(peak_rss_kib) {
            println!(
                "worker {} peak RSS: {:.1} MiB",
                worker.id,
                kib as f64 / 1024.0
            );
        }
    }
    drop(worker_processes);
    drop(redis);
    Ok(())
}
