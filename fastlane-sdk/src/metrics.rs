//! The [`MetricsSink`] trait: where counters, gauges and histograms go.

use std::fmt;
use std::sync::Arc;

use crate::error::PluginError;

/// The value of one measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue {
    /// Add this much to a counter.
    Counter(u64),
    /// Set a gauge to this value.
    Gauge(f64),
    /// Record one observation in a histogram (seconds for durations).
    Histogram(f64),
}

/// One measurement: a `fastlane_…` name, labels, and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The metric name, `fastlane_<noun>_<unit>[_total]`.
    pub name: &'static str,
    /// Label pairs, such as `("status", "done")`.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: MetricValue,
}

/// Records metrics. `record` is called on hot paths: it must be quick and
/// must not block.
pub trait MetricsSink: Send + Sync + fmt::Debug {
    /// The name the sink was registered under.
    fn name(&self) -> &str;

    /// Records one measurement.
    fn record(&self, metric: &Metric);
}

/// Builds a [`MetricsSink`] from its configuration.
pub trait MetricsSinkFactory: Send + Sync {
    /// The name configurations use to pick this sink.
    fn kind(&self) -> &'static str;

    /// Builds the sink from its configuration section.
    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn MetricsSink>, PluginError>;
}
