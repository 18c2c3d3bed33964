//! # fastlane-plugin-sentry
//!
//! The Sentry [`ErrorHandler`]: every failure fastlane reports (an image
//! that cannot be pulled, a container that cannot start or disappeared, a
//! notification given up) becomes a Sentry event, tagged with the
//! operation and the task, job and execution ids. Reports never carry env
//! values.
//!
//! Register it with [`register`].

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use fastlane_sdk::{ErrorHandler, ErrorHandlerFactory, ErrorReport, PluginError, Registry};

/// The kind this handler registers under.
pub const KIND: &str = "sentry";

/// Configuration of the Sentry handler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SentryErrorHandlerConfig {
    /// The project's DSN (`SENTRY_DSN`).
    pub dsn: String,
    /// The environment events are filed under.
    #[serde(default)]
    pub environment: Option<String>,
}

/// Reports to Sentry.
pub struct SentryErrorHandler {
    /// Keeps the client alive (and flushes it when dropped).
    _guard: sentry::ClientInitGuard,
}

impl fmt::Debug for SentryErrorHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentryErrorHandler").finish_non_exhaustive()
    }
}

/// Builds [`SentryErrorHandler`]s.
#[derive(Debug, Default)]
pub struct SentryErrorHandlerFactory;

impl ErrorHandlerFactory for SentryErrorHandlerFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn ErrorHandler>, PluginError> {
        let config: SentryErrorHandlerConfig = serde_json::from_value(config)
            .map_err(|e| PluginError::invalid_config(format!("sentry: {e}")))?;
        let dsn: sentry::types::Dsn = config
            .dsn
            .parse()
            .map_err(|e| PluginError::invalid_config(format!("SENTRY_DSN is not a DSN: {e}")))?;
        let mut options = sentry::ClientOptions::new();
        options.dsn = Some(dsn);
        options.release = Some(concat!("fastlane@", env!("CARGO_PKG_VERSION")).into());
        options.environment = config.environment.map(Into::into);
        Ok(Arc::new(SentryErrorHandler {
            _guard: sentry::init(options),
        }))
    }
}

/// Adds the Sentry handler to `registry`.
pub fn register(registry: &mut Registry) -> Result<(), PluginError> {
    registry.register_error_handler(Box::new(SentryErrorHandlerFactory))
}

impl ErrorHandler for SentryErrorHandler {
    fn name(&self) -> &str {
        KIND
    }

    fn report(&self, report: &ErrorReport) {
        sentry::with_scope(
            |scope| {
                scope.set_tag("operation", &report.operation);
                for (key, value) in &report.context {
                    scope.set_tag(key, value);
                }
            },
            || sentry::capture_message(&report.message, sentry::Level::Error),
        );
    }
}
