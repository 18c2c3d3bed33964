//! Errors a plugin returns, each with a kind that tells the host what to do.

use std::fmt;

/// What the host should do about a [`PluginError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A passing fault (a dropped connection, a busy engine): the same call
    /// may succeed if tried again later.
    Retryable,
    /// The request itself cannot succeed (an image that exists nowhere, a
    /// command the image does not have): retrying is pointless.
    Permanent,
    /// The plugin's configuration is wrong; the server should refuse to start.
    InvalidConfig,
    /// The host or service the plugin talks to is down; work should wait for
    /// it (or go elsewhere), not fail.
    Unavailable,
    /// The thing the call refers to no longer exists (a container removed
    /// behind fastlane's back).
    NotFound,
    /// A started run was lost with its host (the host stopped answering
    /// and is given up on): the execution fails, and may be retried
    /// elsewhere.
    Lost,
    /// The run was ended by a deadline the executor gave its backend (a
    /// Kubernetes Job's `activeDeadlineSeconds`, from
    /// [`crate::ExecutionSpec::timeout`]): the execution is `timedout`.
    TimedOut,
    /// The run could not start before the job's expiration
    /// ([`crate::ExecutionSpec::start_before`]): the execution is `expired`.
    Expired,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Permanent => "permanent",
            ErrorKind::InvalidConfig => "invalid config",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::NotFound => "not found",
            ErrorKind::Lost => "lost",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::Expired => "expired",
        })
    }
}

/// An error from a plugin: a kind, a message for humans, and maybe a cause.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PluginError {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl PluginError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// A [`ErrorKind::Retryable`] error.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Retryable, message)
    }

    /// A [`ErrorKind::Permanent`] error.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }

    /// A [`ErrorKind::InvalidConfig`] error.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }

    /// A [`ErrorKind::Lost`] error.
    pub fn lost(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Lost, message)
    }

    /// A [`ErrorKind::TimedOut`] error.
    pub fn timed_out(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TimedOut, message)
    }

    /// A [`ErrorKind::Expired`] error.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Expired, message)
    }

    /// A [`ErrorKind::Unavailable`] error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// A [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// What the host should do about this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_and_the_cause_survive() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = PluginError::unavailable("host a:1 is down").with_source(io);
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert_eq!(err.to_string(), "host a:1 is down");
        let source = std::error::Error::source(&err).map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("refused"));
    }
}
