//! [`Reporter`]: failures fastlane could not handle itself, logged and sent
//! to every configured [`ErrorHandler`] (Sentry) with their context.

use std::collections::BTreeMap;
use std::sync::Arc;

use fastlane_sdk::{ErrorHandler, ErrorReport, Execution};

/// Sends error reports to the configured handlers.
#[derive(Debug, Clone, Default)]
pub struct Reporter {
    handlers: Vec<Arc<dyn ErrorHandler>>,
}

impl Reporter {
    /// A reporter sending to `handlers`.
    pub fn new(handlers: Vec<Arc<dyn ErrorHandler>>) -> Self {
        Self { handlers }
    }

    /// Reports a failure of `operation` (`running`, `monitoring`,
    /// `dispatching`…) about `execution`. Only ids, image and command are
    /// attached: never env values.
    pub fn report(&self, operation: &str, message: &str, execution: &Execution) {
        tracing::error!(
            operation,
            execution = %execution.execution_id,
            job = %execution.job_id,
            task = %execution.task_id,
            "{message}"
        );
        if self.handlers.is_empty() {
            return;
        }
        let report = ErrorReport {
            operation: operation.to_owned(),
            message: message.to_owned(),
            context: BTreeMap::from([
                ("task_id".to_owned(), execution.task_id.clone()),
                ("job_id".to_owned(), execution.job_id.clone()),
                ("execution_id".to_owned(), execution.execution_id.clone()),
                ("image".to_owned(), execution.image.clone()),
                ("command".to_owned(), execution.command.clone()),
            ]),
        };
        for handler in &self.handlers {
            handler.report(&report);
        }
    }
}
