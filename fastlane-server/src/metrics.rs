//! [`Metrics`]: what fastlane measures, recorded through every configured
//! [`MetricsSink`], and rendered for `GET /metrics` when the Prometheus sink
//! is compiled in.
//!
//! The metric names (all `fastlane_…`) are listed in the README.

use std::sync::Arc;

use fastlane_sdk::{Metric, MetricValue, MetricsSink};

/// The metrics of one process.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    sinks: Vec<Arc<dyn MetricsSink>>,
    #[cfg(feature = "plugin-prometheus")]
    prometheus: Option<Arc<fastlane_plugin_prometheus::PrometheusSink>>,
}

impl Metrics {
    /// Metrics recorded into a Prometheus sink (when compiled in).
    pub fn new() -> Self {
        #[cfg(feature = "plugin-prometheus")]
        {
            let prometheus = Arc::new(fastlane_plugin_prometheus::PrometheusSink::new());
            Self {
                sinks: vec![prometheus.clone() as Arc<dyn MetricsSink>],
                prometheus: Some(prometheus),
            }
        }
        #[cfg(not(feature = "plugin-prometheus"))]
        Self::default()
    }

    fn record(&self, name: &'static str, labels: &[(&'static str, &str)], value: MetricValue) {
        let metric = Metric {
            name,
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            value,
        };
        for sink in &self.sinks {
            sink.record(&metric);
        }
    }

    /// Adds `n` to a counter.
    pub fn count(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        self.record(name, labels, MetricValue::Counter(n));
    }

    /// Sets a gauge.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.record(name, labels, MetricValue::Gauge(value));
    }

    /// Records one observation (seconds) in a histogram.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], seconds: f64) {
        self.record(name, labels, MetricValue::Histogram(seconds));
    }

    /// Forgets a gauge's series before it is set afresh (hosts come and go).
    pub fn reset(&self, _name: &'static str) {
        #[cfg(feature = "plugin-prometheus")]
        if let Some(prometheus) = &self.prometheus {
            prometheus.clear(_name);
        }
    }

    /// The Prometheus text, when the Prometheus sink is compiled in.
    pub fn render(&self) -> Option<String> {
        #[cfg(feature = "plugin-prometheus")]
        if let Some(prometheus) = &self.prometheus {
            return Some(prometheus.render());
        }
        None
    }
}

/// A request path with its ids replaced by placeholders, so that HTTP
/// metrics have one series per route, not per task; paths outside the API
/// are all `other` (scanners must not grow the series without bound).
pub fn route_of(path: &str) -> String {
    const KNOWN: [&str; 8] = [
        "",
        "tasks",
        "search",
        "status",
        "healthcheck",
        "metrics",
        "docs",
        "openapi.json",
    ];
    let first = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    if !KNOWN.contains(&first) || path.split('/').count() > 9 {
        return "other".to_owned();
    }
    let mut out = Vec::new();
    let mut previous = "";
    for segment in path.trim_end_matches('/').split('/') {
        let shown = match previous {
            "tasks" => "{taskId}",
            "jobs" => "{jobId}",
            "executions" => "{executionId}",
            _ => segment,
        };
        out.push(shown);
        previous = segment;
    }
    let route = out.join("/");
    if route.is_empty() {
        "/".to_owned()
    } else {
        route
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_hide_ids() {
        assert_eq!(
            route_of("/tasks/a/jobs/b/executions/c/stdout/"),
            "/tasks/{taskId}/jobs/{jobId}/executions/{executionId}/stdout"
        );
        assert_eq!(route_of("/tasks/"), "/tasks");
        assert_eq!(route_of("/"), "/");
        assert_eq!(route_of("/wp-admin/x.php"), "other");
    }
}
