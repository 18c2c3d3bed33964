//! The [`Notifier`] trait: telling someone what happened to an execution.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::PluginError;
use crate::model::{Execution, Job};

/// Which moment of an execution's life a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationEvent {
    /// The container started.
    Starts,
    /// It ended `done`.
    Succeeds,
    /// It ended `failed`.
    Fails,
    /// It ended, whatever the status.
    Finishes,
}

/// One notification: the event, the job and the execution, and where to read
/// more.
#[derive(Debug, Clone)]
pub struct Notification {
    /// What happened.
    pub event: NotificationEvent,
    /// The job, with its notification targets.
    pub job: Job,
    /// The execution the event is about.
    pub execution: Execution,
    /// The absolute URL of the task.
    pub task_url: String,
    /// The absolute URL of the job.
    pub job_url: String,
}

/// Delivers notifications. The host calls it from its notification queue, so
/// a slow or failing notifier delays notifications, never jobs; errors of kind
/// retryable or unavailable are retried with back-off.
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// The name the notifier was registered under.
    fn name(&self) -> &str;

    /// Delivers one notification to every target the job names for its event.
    async fn notify(&self, notification: &Notification) -> Result<(), PluginError>;
}

/// Builds a [`Notifier`] from its configuration.
pub trait NotifierFactory: Send + Sync {
    /// The name configurations use to pick this notifier.
    fn kind(&self) -> &'static str;

    /// Builds the notifier from its configuration section.
    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn Notifier>, PluginError>;
}
