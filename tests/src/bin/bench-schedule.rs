//! Scheduling-lateness benchmark: how late `fastlane standalone` fires
//! jobs that all fall due within the same few seconds.
//!
//! Run with (after `scripts/services.sh`):
//!
//! ```sh
//! cargo build --release -p fastlane-server
//! FASTLANE_BIN=target/release/fastlane \
//!     cargo run --release -p fastlane-tests --bin bench-schedule -- 1000
//! ```
//!
//! It submits N jobs (default 1000) with `startAt` spread over three whole
//! seconds starting 10 s ahead, then reads when each job's execution was
//! created (the firing) and prints the lateness (firing − due) percentiles.
//! The jobs run `true` on the engine, one at a time, while the rest fire.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use fastlane_tests::{Server, image};
use futures_util::StreamExt;
use serde_json::json;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted.len().saturating_sub(1)) as f64).round() as usize;
    sorted.get(rank).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let jobs: usize = std::env::args().nth(1).map_or(Ok(1000), |a| a.parse())?;
    let server = Server::start(&[("WORKER_CONCURRENCY", "1"), ("RUST_LOG", "warn")]).await?;
    let first_due = Utc::now().timestamp() + 10;

    let submitted = futures_util::stream::iter(0..jobs)
        .map(|i| {
            let server = &server;
            async move {
                let due = first_due + (i % 3) as i64;
                let created = server
                    .submit(
                        "bench-schedule",
                        json!({"image": image(), "command": "true", "startAt": due}),
                    )
                    .await?;
                Ok::<_, anyhow::Error>((due, created["jobUrl"].as_str().context("url")?.to_owned()))
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    anyhow::ensure!(
        Utc::now().timestamp() < first_due,
        "submitting took longer than 10 s; use fewer jobs"
    );

    tokio::time::sleep(Duration::from_secs(14)).await;
    let mut lateness_ms = Vec::new();
    for result in submitted {
        let (due, job_url) = result?;
        let fired = loop {
            let (_, job) = server.get(&job_url).await?;
            if let Some(created) = job["job"]["executions"][0]["createdAt"].as_str() {
                break DateTime::parse_from_rfc3339(created)?.with_timezone(&Utc);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let due = DateTime::from_timestamp(due, 0).context("due")?;
        lateness_ms.push((fired - due).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    lateness_ms.sort_by(f64::total_cmp);
    println!("jobs: {jobs}, due over 3 s; lateness of the firing (ms):");
    println!("| p50 | p99 | max | min |");
    println!("|---|---|---|---|");
    println!(
        "| {:.1} | {:.1} | {:.1} | {:.1} |",
        percentile(&lateness_ms, 50.0),
        percentile(&lateness_ms, 99.0),
        lateness_ms.last().copied().unwrap_or(f64::NAN),
        lateness_ms.first().copied().unwrap_or(f64::NAN),
    );
    Ok(())
}
