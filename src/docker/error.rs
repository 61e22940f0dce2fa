//! Errors of the Docker layer, as data with messages a person can act on.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DockerError {
    /// The daemon did not answer a ping. `host` is the address tried and `origin`
    /// says where it came from, so the one line tells the user what to fix.
    #[error("cannot reach the Docker daemon at {host} ({origin}): {reason} — is Docker running?")]
    Unreachable {
        host: String,
        origin: String,
        reason: String,
    },
    #[error(
        "image {image} is not present locally (no registry pulls happen implicitly); \
         add a docker/pull or docker/build step"
    )]
    ImageMissing { image: String },
    #[error("no container {what}")]
    ContainerNotFound { what: String },
    #[error("invalid container option `{option}`: {reason}")]
    InvalidOption { option: String, reason: String },
    #[error("{action}: {message}")]
    Api { action: String, message: String },
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

impl DockerError {
    /// Wraps a bollard error with what we were doing; the daemon's own message is
    /// kept verbatim because it is usually the most precise one available.
    pub(crate) fn api(action: impl Into<String>, err: bollard::errors::Error) -> DockerError {
        DockerError::Api {
            action: action.into(),
            message: describe(&err),
        }
    }
}

/// The useful part of a bollard error: the daemon's message when it sent one.
pub(crate) fn describe(err: &bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    match err {
        E::DockerResponseServerError { message, .. } => message.trim().to_string(),
        E::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}

/// True when the daemon answered 404 (no such image, container, network, exec).
pub(crate) fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
