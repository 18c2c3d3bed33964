//! The [`ErrorHandler`] trait: reporting failures somewhere humans look.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::error::PluginError;

/// A failure fastlane hit while working on something, with its context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    /// What fastlane was doing (`pulling`, `starting`, `monitoring`, …).
    pub operation: String,
    /// The error, as text.
    pub message: String,
    /// The task, job and execution ids and anything else that helps.
    pub context: BTreeMap<String, String>,
}

/// Receives error reports. `report` must not block: queue the report and
/// send it in the background.
pub trait ErrorHandler: Send + Sync + fmt::Debug {
    /// The name the handler was registered under.
    fn name(&self) -> &str;

    /// Reports one error.
    fn report(&self, report: &ErrorReport);
}

/// Builds an [`ErrorHandler`] from its configuration.
pub trait ErrorHandlerFactory: Send + Sync {
    /// The name configurations use to pick this handler.
    fn kind(&self) -> &'static str;

    /// Builds the handler from its configuration section.
    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn ErrorHandler>, PluginError>;
}
