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
