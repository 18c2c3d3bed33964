//! [`Metrics`]: what fastlane measures, recorded through every configured
//! [`MetricsSink`], and rendered for `GET /metrics` when the Prometheus sink
//! is compiled in.
//!
//! The metric names (all `fastlane_…`) are listed in the README.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fastlane_sdk::{Metric, MetricValue, MetricsSink};

/// The metrics of one process.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    sinks: Vec<Arc<dyn MetricsSink>>,
    #[cfg(feature = "plugin-prometheus")]
    prometheus: Option<Arc<fastlane_plugin_prometheus::PrometheusSink>>,
    /// What [`Metrics::count_up_to`] has recorded of each total so far.
    reported: Arc<Mutex<HashMap<&'static str, u64>>>,
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
                reported: Arc::default(),
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

    /// Brings a counter without labels up to `total`, a count kept outside
    /// the metrics (such as [`crate::store::unreadable_records`]): adds what
    /// it grew by since the last call.
    pub fn count_up_to(&self, name: &'static str, total: u64) {
        let grown = match self.reported.lock() {
            Ok(mut reported) => {
                let seen = reported.entry(name).or_insert(0);
                let grown = total.saturating_sub(*seen);
                *seen = (*seen).max(total);
                grown
            }
            Err(_) => return,
        };
        self.count(name, &[], grown);
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

/// The route label of a request path: the template of the OpenAPI route it
/// matches (ids as placeholders, so one series per route, not per task),
/// `/docs` and `/openapi.json` for the documentation, and `unmatched` for
/// anything else (scanners must not grow the series without bound).
pub fn route_of(path: &str) -> String {
    if let Some(template) = crate::api::route_template(path) {
        return template.to_owned();
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed == "/openapi.json" {
        "/openapi.json".to_owned()
    } else if trimmed == "/docs" || trimmed.starts_with("/docs/") {
        "/docs".to_owned()
    } else {
        UNMATCHED.to_owned()
    }
}

/// The route label of paths no route matches.
pub const UNMATCHED: &str = "unmatched";

/// The method label of a request: the method when it is a standard one,
/// else `other` (any token is a valid method, and each would be a series).
pub fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    STANDARD
        .iter()
        .find(|(m, _)| m == method)
        .map_or("other", |(_, label)| label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_the_documents_templates() {
        assert_eq!(
            route_of("/tasks/a/jobs/b/executions/c/stdout/"),
            "/tasks/{taskId}/jobs/{jobId}/executions/{executionId}/stdout"
        );
        assert_eq!(route_of("/tasks/"), "/tasks");
        assert_eq!(route_of("/"), "/");
        assert_eq!(route_of("/docs/index.css"), "/docs");
        for unknown in [
            "/wp-admin/x.php",
            "/tasks/a/nope",
            "/tasks/a/jobs/b/c/d/e/f/g",
        ] {
            assert_eq!(route_of(unknown), UNMATCHED, "{unknown}");
        }
    }

    #[test]
    fn odd_methods_are_other() {
        let odd = poem::http::Method::from_bytes(b"PROPFIND").expect("a token");
        assert_eq!(method_label(&odd), "other");
        assert_eq!(method_label(&poem::http::Method::DELETE), "DELETE");
    }
}
