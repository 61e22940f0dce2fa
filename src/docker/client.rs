//! The connection to the Docker daemon and the few image queries everyone needs.

use super::error::{describe, is_not_found, DockerError};
use std::time::Duration;

/// Default socket when `DOCKER_HOST` is unset (what bollard and the CLI use too).
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long a ping may take before we call the daemon unreachable: long enough for
/// a loaded machine, short enough that `trun` fails fast when Docker is down.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected, version-negotiated Docker client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Docker {
    inner: bollard::Docker,
    host: String,
}

impl Docker {
    /// Connects to `DOCKER_HOST` (or the default socket), pings the daemon and
    /// negotiates the API version, so that an old daemon works with a new client.
    pub async fn connect() -> Result<Docker, DockerError> {
        match std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) {
            Some(host) => Docker::connect_with(&host, "from DOCKER_HOST").await,
            None => Docker::connect_with(DEFAULT_HOST, "DOCKER_HOST is not set").await,
        }
    }

    /// Like [`Docker::connect`] with an explicit address (`unix://…`, `tcp://…`);
    /// `origin` says where it came from, for the error message.
    pub async fn connect_with(host: &str, origin: &str) -> Result<Docker, DockerError> {
        let unreachable = |reason: String| DockerError::Unreachable {
            host: host.to_string(),
            origin: origin.to_string(),
            reason,
        };
        let inner =
            bollard::Docker::connect_with_host(host).map_err(|e| unreachable(reason(&e)))?;
        match tokio::time::timeout(PING_TIMEOUT, inner.ping()).await {
            Err(_) => return Err(unreachable(format!("no answer within {PING_TIMEOUT:?}"))),
            Ok(Err(e)) => return Err(unreachable(reason(&e))),
            Ok(Ok(_)) => {}
        }
        let inner = inner.negotiate_version().await.map_err(|e| {
            unreachable(format!("API version negotiation failed: {}", describe(&e)))
        })?;
        Ok(Docker {
            inner,
            host: host.to_string(),
        })
    }

    /// The bollard client, for callers needing an API this layer does not wrap.
    pub fn api(&self) -> &bollard::Docker {
        &self.inner
    }

    /// The daemon address in use, e.g. `unix:///var/run/docker.sock`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The id (`sha256:…`) of a local image, or `None` when it is not present.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, DockerError> {
        match self.inner.inspect_image(image).await {
            Ok(info) => Ok(info.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(DockerError::api(format!("inspecting image {image}"), e)),
        }
    }

    /// Like [`Docker::image_id`], but a missing image is the actionable error that
    /// tells the user no pull happens implicitly.
    pub async fn require_image(&self, image: &str) -> Result<String, DockerError> {
        self.image_id(image)
            .await?
            .ok_or_else(|| DockerError::ImageMissing {
                image: image.to_string(),
            })
    }
}

/// A short human reason for a connection failure, taken from the innermost I/O
/// error when there is one ("connection refused" reads better than hyper's chain).
fn reason(err: &bollard::errors::Error) -> String {
    if let bollard::errors::Error::SocketNotFoundError(path) = err {
        return format!("socket {path} does not exist");
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::NotFound => "no such socket".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => io.to_string(),
            };
        }
        source = e.source();
    }
    describe(err)
}
