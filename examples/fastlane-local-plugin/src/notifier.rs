//! `file-events`: appends one JSON line per notification to a file.
//!
//! Configuration: `{"events_file": "/path/events.jsonl"}` (other keys of the
//! library's configuration are ignored).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fastlane_sdk::{Delivery, DeliveryReport, Notifier, NotifierFactory, PluginError};

/// Builds [`FileNotifier`]s.
#[derive(Debug, Clone, Copy)]
pub struct FileNotifierFactory;

impl NotifierFactory for FileNotifierFactory {
    fn kind(&self) -> &'static str {
        "file-events"
    }

    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn Notifier>, PluginError> {
        let path = config
            .get("events_file")
            .and_then(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                PluginError::invalid_config(
                    "file-events needs `events_file`, the file to append to",
                )
            })?;
        Ok(Arc::new(FileNotifier {
            path: PathBuf::from(path),
            lock: Mutex::new(()),
        }))
    }
}

/// Appends notifications to a file, one JSON object per line.
#[derive(Debug)]
pub struct FileNotifier {
    path: PathBuf,
    lock: Mutex<()>,
}

#[async_trait]
impl Notifier for FileNotifier {
    fn name(&self) -> &str {
        "file-events"
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<DeliveryReport, PluginError> {
        let line = serde_json::json!({
            "event": delivery.event.as_str(),
            "taskId": delivery.job.task_id,
            "jobId": delivery.job.job_id,
            "executionId": delivery.execution.execution_id,
            "status": delivery.execution.status.as_str(),
            "exitCode": delivery.execution.exit_code,
            "target": delivery.target,
            "attempt": delivery.attempt,
        });
        let _serialised = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|err| {
                PluginError::retryable(format!("cannot open {}: {err}", self.path.display()))
            })?;
        writeln!(file, "{line}").map_err(|err| {
            PluginError::retryable(format!("cannot write {}: {err}", self.path.display()))
        })?;
        tracing::debug!(path = %self.path.display(), event = delivery.event.as_str(), "event written");
        Ok(DeliveryReport {
            accepted: true,
            status_code: None,
            detail: Some(format!("appended to {}", self.path.display())),
        })
    }
}
