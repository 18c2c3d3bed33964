//! Docker API errors sorted into the SDK's kinds ([`ErrorKind`]), naming
//! the host, and counted against its circuit only when it did not answer.

use bollard::errors::Error as DockerError;

use fastlane_sdk::{ErrorKind, PluginError};

use crate::circuit::CircuitState;
use crate::host::Host;

/// Sorts a Docker API error into the SDK's kinds, naming the host.
pub(crate) fn classify(host: &Host, what: &str, err: DockerError) -> PluginError {
    if matches!(err, DockerError::DockerResponseServerError { .. }) {
        // The engine answered, if only with an error: the host is up.
        host.answered();
    }
    if matches!(
        err,
        DockerError::JsonDataError { .. } | DockerError::JsonSerdeError { .. }
    ) {
        // The engine answered with something bollard cannot read (Podman
        // lists a container between states as `stopped`): the host is up,
        // and asking again usually reads fine. Counting it against the
        // host's circuit would take a healthy host out of rotation.
        host.answered();
        return PluginError::retryable(format!(
            "{what} on {}: the engine's answer could not be read: {err}",
            host.name
        ));
    }
    match err {
        DockerError::DockerResponseServerError {
            status_code: 404,
            message,
        } => PluginError::not_found(format!("{what} on {}: {message}", host.name)),
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } if status_code < 500 => PluginError::permanent(format!(
            "{what} on {} was refused ({status_code}): {message}",
            host.name
        )),
        DockerError::DockerResponseServerError { message, .. } => {
            PluginError::retryable(format!("{what} on {} failed: {message}", host.name))
        }
        other => host.unavailable(&format_args!(
            "{what}: {}",
            fastlane_sdk::text::error_chain(&other)
        )),
    }
}

/// A host that stopped answering while it ran an execution: once its
/// circuit opens, the run is given up as [`ErrorKind::Lost`] (the execution
/// fails, and a retry may run elsewhere); until then, the error stands.
pub(crate) fn lost_if_given_up(host: &Host, err: PluginError) -> PluginError {
    if err.kind() == ErrorKind::Unavailable && host.circuit.state() != CircuitState::Closed {
        PluginError::lost(format!(
            "docker host {} stopped answering while the execution ran, and was given up \
             after {} connection failures in a row: {}",
            host.name,
            host.circuit.fails(),
            err.message()
        ))
    } else {
        err
    }
}

/// True when a create failed because the container's name is taken.
pub(crate) fn name_in_use(err: &DockerError) -> bool {
    // Docker answers 409; Podman's compat API answers 500 "name is already in use".
    matches!(
        err,
        DockerError::DockerResponseServerError {
            status_code: 409,
            ..
        }
    ) || matches!(err, DockerError::DockerResponseServerError { message, .. } if message.contains("already in use"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::addr::HostAddr;
    use crate::circuit::CircuitSettings;

    fn host() -> Host {
        let settings = CircuitSettings {
            max_fails: 1,
            reset_timeout: Duration::from_secs(60),
        };
        let addr = HostAddr::parse("127.0.0.1:1").expect("address");
        Host::new("127.0.0.1:1", addr, None, 5, settings)
    }

    #[test]
    fn an_answer_bollard_cannot_read_keeps_the_host_in_rotation() {
        let host = host();
        let unreadable = DockerError::JsonDataError {
            message: "unknown variant `stopped`".to_owned(),
            column: 42,
        };
        let err = classify(&host, "listing containers", unreadable);
        assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
        assert_eq!(host.circuit.state(), CircuitState::Closed);

        // A connection that fails does count: one failure opens this circuit.
        let refused = DockerError::RequestTimeoutError;
        let err = classify(&host, "listing containers", refused);
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert_eq!(host.circuit.state(), CircuitState::Open);
    }
}
