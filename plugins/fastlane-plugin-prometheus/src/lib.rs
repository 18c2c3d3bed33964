//! # fastlane-plugin-prometheus
//!
//! A [`MetricsSink`] that keeps every metric in memory and renders them in
//! the Prometheus text exposition format (version 0.0.4) for `GET /metrics`.
//! Counters add, gauges are set, histograms count observations into fixed
//! buckets (seconds, from 5 ms to 1 h).
//!
//! Register it with [`register`]; the server keeps the built sink to render
//! it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use fastlane_sdk::{Metric, MetricValue, MetricsSink, MetricsSinkFactory, PluginError, Registry};

/// The kind this sink registers under.
pub const KIND: &str = "prometheus";

/// Histogram bucket bounds, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 3600.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone)]
enum Series {
    Counter(u64),
    Gauge(f64),
    Histogram {
        counts: [u64; BUCKETS.len()],
        sum: f64,
        count: u64,
    },
}

/// Help text of the metrics fastlane records; others render without it.
fn help(name: &str) -> &'static str {
    match name {
        "fastlane_jobs_submitted_total" => "Jobs submitted through the API.",
        "fastlane_executions_finished_total" => {
            "Executions that reached a final status, by status."
        }
        "fastlane_execution_duration_seconds" => {
            "Time from container start to result, by final status."
        }
        "fastlane_queue_wait_seconds" => "Time an execution waited between enqueued and started.",
        "fastlane_execution_step_seconds" => {
            "Time the worker spent in each step of an execution: place (a slot and a host), \
             start (image ready, container started), collect (run ended to result stored)."
        }
        "fastlane_schedule_lateness_seconds" => "How late scheduled and cron firings happened.",
        "fastlane_notifications_total" => "Notification attempts, by notifier and outcome.",
        "fastlane_queue_messages" => "Messages in each queue (due or not, leased or not).",
        "fastlane_executions_running" => "Fastlane containers running, by host and farm.",
        "fastlane_docker_host_up" => "1 when a Docker host answers, by host and farm.",
        "fastlane_http_requests_total" => {
            "HTTP requests, by method (`other` past the standard ones), route template \
             (`unmatched` for no route) and status."
        }
        "fastlane_unreadable_records_total" => {
            "Stored records listings skipped because they could not be read."
        }
        "fastlane_live_log_store_reads_total" => {
            "Store reads made to stream live logs (one poller per followed execution)."
        }
        "fastlane_websocket_connections" => "Live-log WebSocket connections open.",
        "fastlane_task_executions_waiting" => {
            "Executions created and not started yet, by task (the 500 tasks with the most)."
        }
        "fastlane_task_oldest_waiting_seconds" => {
            "How long the oldest execution waiting to start has waited, by task."
        }
        _ => "",
    }
}

/// The Prometheus sink.
#[derive(Debug, Default)]
pub struct PrometheusSink {
    series: Mutex<BTreeMap<&'static str, BTreeMap<Labels, Series>>>,
}

/// Builds [`PrometheusSink`]s.
#[derive(Debug, Default)]
pub struct PrometheusSinkFactory;

impl MetricsSinkFactory for PrometheusSinkFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(&self, _config: serde_json::Value) -> Result<Arc<dyn MetricsSink>, PluginError> {
        Ok(Arc::new(PrometheusSink::default()))
    }
}

/// Adds the Prometheus sink to `registry`.
pub fn register(registry: &mut Registry) -> Result<(), PluginError> {
    registry.register_metrics_sink(Box::new(PrometheusSinkFactory))
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 {
            "+Inf".to_owned()
        } else {
            "-Inf".to_owned()
        }
    } else {
        format!("{value}")
    }
}

impl PrometheusSink {
    /// A sink with no series.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every series in the text exposition format.
    pub fn render(&self) -> String {
        let Ok(series) = self.series.lock() else {
            return String::new();
        };
        let mut out = String::new();
        for (name, by_labels) in series.iter() {
            let Some(first) = by_labels.values().next() else {
                continue;
            };
            let kind = match first {
                Series::Counter(_) => "counter",
                Series::Gauge(_) => "gauge",
                Series::Histogram { .. } => "histogram",
            };
            let help = help(name);
            if !help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {help}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in by_labels {
                match value {
                    Series::Counter(n) => {
                        let _ = writeln!(out, "{name}{} {n}", label_text(labels, None));
                    }
                    Series::Gauge(v) => {
                        let _ = writeln!(out, "{name}{} {}", label_text(labels, None), number(*v));
                    }
                    Series::Histogram { counts, sum, count } => {
                        let mut cumulative = 0;
                        for (bound, n) in BUCKETS.iter().zip(counts) {
                            cumulative += n;
                            let le = Some(("le", number(*bound)));
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {cumulative}",
                                label_text(labels, le)
                            );
                        }
                        let inf = Some(("le", "+Inf".to_owned()));
                        let _ = writeln!(out, "{name}_bucket{} {count}", label_text(labels, inf));
                        let _ = writeln!(
                            out,
                            "{name}_sum{} {}",
                            label_text(labels, None),
                            number(*sum)
                        );
                        let _ = writeln!(out, "{name}_count{} {count}", label_text(labels, None));
                    }
                }
            }
        }
        out
    }

    /// Forgets every series of `name` (before gauges are set afresh).
    pub fn clear(&self, name: &'static str) {
        if let Ok(mut series) = self.series.lock() {
            series.remove(name);
        }
    }
}

impl MetricsSink for PrometheusSink {
    fn name(&self) -> &str {
        KIND
    }

    fn record(&self, metric: &Metric) {
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let mut labels = metric.labels.clone();
        labels.sort();
        let entry = series.entry(metric.name).or_default();
        match metric.value {
            MetricValue::Counter(n) => {
                let slot = entry.entry(labels).or_insert(Series::Counter(0));
                if let Series::Counter(total) = slot {
                    *total += n;
                }
            }
            MetricValue::Gauge(v) => {
                entry.insert(labels, Series::Gauge(v));
            }
            MetricValue::Histogram(v) => {
                let slot = entry.entry(labels).or_insert(Series::Histogram {
                    counts: [0; BUCKETS.len()],
                    sum: 0.0,
                    count: 0,
                });
                if let Series::Histogram { counts, sum, count } = slot {
                    if let Some(i) = BUCKETS.iter().position(|b| v <= *b) {
                        counts[i] += 1;
                    }
                    *sum += v;
                    *count += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render_in_the_text_format() {
        let sink = PrometheusSink::new();
        let status = |s: &str| vec![("status", s.to_owned())];
        for _ in 0..3 {
            sink.record(&Metric {
                name: "fastlane_executions_finished_total",
                labels: status("done"),
                value: MetricValue::Counter(1),
            });
        }
        sink.record(&Metric {
            name: "fastlane_queue_messages",
            labels: vec![("queue", "jobs".to_owned())],
            value: MetricValue::Gauge(4.0),
        });
        sink.record(&Metric {
            name: "fastlane_queue_wait_seconds",
            labels: vec![],
            value: MetricValue::Histogram(0.2),
        });
        sink.record(&Metric {
            name: "fastlane_queue_wait_seconds",
            labels: vec![],
            value: MetricValue::Histogram(7.0),
        });
        let text = sink.render();
        assert!(
            text.contains("# TYPE fastlane_executions_finished_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("fastlane_executions_finished_total{status=\"done\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("fastlane_queue_messages{queue=\"jobs\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("fastlane_queue_wait_seconds_bucket{le=\"0.25\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("fastlane_queue_wait_seconds_bucket{le=\"5\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("fastlane_queue_wait_seconds_bucket{le=\"10\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("fastlane_queue_wait_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("fastlane_queue_wait_seconds_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("fastlane_queue_wait_seconds_sum 7.2\n"),
            "{text}"
        );
    }
}
