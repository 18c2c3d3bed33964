//! The [`Notifier`] trait: telling someone what happened to an execution.
//!
//! The host decides who hears about what: for each event of an execution it
//! queues one [`Delivery`] per target the job names (a webhook, an e-mail
//! address) and hands each to the notifier registered for that kind of
//! target. A notifier delivers to that one target and reports what
//! happened; the host records every attempt and, when the error is
//! [`crate::ErrorKind::Retryable`] or [`crate::ErrorKind::Unavailable`],
//! tries again later with back-off. A slow or failing notifier delays
//! notifications, never jobs.

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

impl NotificationEvent {
    /// The lowercase name, as in the job's `webhooks` and `notify` keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starts => "starts",
            Self::Succeeds => "succeeds",
            Self::Fails => "fails",
            Self::Finishes => "finishes",
        }
    }
}

/// One notification to one target.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// What happened.
    pub event: NotificationEvent,
    /// The job (its env values already masked).
    pub job: Job,
    /// The execution the event is about.
    pub execution: Execution,
    /// The target, as the job gave it: a webhook object, an e-mail address.
    pub target: serde_json::Value,
    /// The absolute URL of the task.
    pub task_url: String,
    /// The absolute URL of the job.
    pub job_url: String,
    /// 1 for the first attempt, 2 for the first retry…
    pub attempt: u32,
}

/// How the target answered (recorded with the execution).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// True when the target took the notification; false when it answered
    /// but refused it (an HTTP 500, say), which counts as a failed attempt.
    pub accepted: bool,
    /// The response status, for HTTP targets.
    pub status_code: Option<u16>,
    /// A short description of the answer.
    pub detail: Option<String>,
}

/// Delivers notifications of one kind of target.
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// The name the notifier was registered under (`webhook`, `email`).
    fn name(&self) -> &str;

    /// Delivers one notification to its target.
    async fn deliver(&self, delivery: &Delivery) -> Result<DeliveryReport, PluginError>;
}

/// Builds a [`Notifier`] from its configuration.
pub trait NotifierFactory: Send + Sync {
    /// The name configurations use to pick this notifier.
    fn kind(&self) -> &'static str;

    /// Builds the notifier from its configuration section.
    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn Notifier>, PluginError>;
}

impl fmt::Debug for dyn NotifierFactory + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NotifierFactory({})", self.kind())
    }
}
