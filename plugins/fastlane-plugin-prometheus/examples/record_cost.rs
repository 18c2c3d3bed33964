//! What one observation costs the sink, alone and with threads contending
//! for its lock: each thread records the HTTP request counter (three
//! labels) and a histogram, the two observations every request makes.
//!
//! ```console
//! $ cargo run --release -p fastlane-plugin-prometheus --example record_cost
//! ```
//!
//! BENCHMARKS.md ("The metrics sink's lock") has the numbers and what they
//! decided.

use std::sync::Arc;
use std::time::Instant;

use fastlane_plugin_prometheus::PrometheusSink;
use fastlane_sdk::{Metric, MetricValue, MetricsSink};

/// Observations per thread.
const PER_THREAD: u32 = 1_000_000;

fn main() {
    println!("threads  observations  wall (ms)  ns per observation  observations/s");
    for threads in [1, 2, 4] {
        let sink = Arc::new(PrometheusSink::new());
        let started = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || {
                    let status = if t % 2 == 0 { "200" } else { "404" };
                    for i in 0..PER_THREAD {
                        sink.record(&Metric {
                            name: "fastlane_http_requests_total",
                            labels: vec![
                                ("method", "POST".to_owned()),
                                ("route", "/tasks/{taskId}".to_owned()),
                                ("status", status.to_owned()),
                            ],
                            value: MetricValue::Counter(1),
                        });
                        sink.record(&Metric {
                            name: "fastlane_queue_wait_seconds",
                            labels: Vec::new(),
                            value: MetricValue::Histogram(f64::from(i % 1000) / 1000.0),
                        });
                    }
                })
            })
            .collect();
        for worker in workers {
            let _ = worker.join();
        }
        let wall = started.elapsed();
        let observations = u64::from(PER_THREAD) * 2 * threads;
        let per = wall.as_nanos() as f64 / observations as f64 * threads as f64;
        let rate = observations as f64 / wall.as_secs_f64();
        println!(
            "{threads:>7}  {observations:>12}  {:>9.0}  {per:>18.0}  {rate:>14.0}",
            wall.as_secs_f64() * 1000.0
        );
    }
}
