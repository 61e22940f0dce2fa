//! Job containers and their service sidecars.
//!
//! A job with `container:` gets ONE long-lived container whose only process is an
//! idle shell loop; each step is then a `docker exec` in it (see `exec.rs`), which
//! costs tens of milliseconds instead of a container start per step. The workspace
//! is bind-mounted at the same path so that paths, `$TRUN_OUTPUT` files and error
//! messages mean the same inside and outside. This module does not pull images:
//! a missing image is an error that points at `docker/pull`/`docker/build`.

use super::client::Docker;
use super::error::DockerError;
use super::options::{parse_cpus, RunOptions};
use super::Labels;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// The idle main process of a job container. It needs only `sh` and `sleep`, and
/// it exits at once on SIGTERM (a plain `sleep infinity` as PID 1 ignores it).
pub(crate) const KEEPALIVE: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

/// How long to wait for a service whose image defines a HEALTHCHECK to be healthy.
const SERVICE_HEALTH_TIMEOUT: Duration = Duration::from_secs(120);

/// A job's `container:` section, already rendered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    pub image: String,
    pub env: Vec<(String, String)>,
    /// `src:dst[:ro]`; a relative `src` (`./cache`) is relative to the workspace, a
    /// bare name is a named volume (the user's; cleanup does not remove it).
    pub volumes: Vec<String>,
    /// A network name or id, or `none`; set it to the id returned by
    /// [`Docker::start_services`] so that services are reachable by name.
    pub network: Option<String>,
    /// `512m`, `1g`, `1073741824`.
    pub memory: Option<String>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
    pub user: Option<String>,
    pub read_only_workspace: bool,
    /// `docker run` flags, see `options.rs` for the supported subset.
    pub options: Vec<String>,
}

/// A `services:` entry: a named sidecar reachable by `name` from the job container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceSpec {
    pub name: String,
    pub image: String,
    pub env: Vec<(String, String)>,
    /// Replaces the image's CMD when given.
    pub command: Option<Vec<String>>,
    pub options: Vec<String>,
}

/// Parses a memory size as Docker writes it (`512m`, `1.5g`, binary units) with the crate's
/// one size parser, [`crate::size`].
pub fn parse_memory(text: &str) -> Result<i64, DockerError> {
    crate::size::parse(text)
        .ok()
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(|| DockerError::InvalidOption {
            option: text.to_string(),
            reason: "expected a size like 512m, 2g or 1048576".to_string(),
        })
}

/// A container or network name fragment: Docker allows `[a-zA-Z0-9][a-zA-Z0-9_.-]`.
pub(crate) fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "job".to_string()
    } else {
        s
    }
}

/// A short random suffix so that names of parallel runs and matrix legs whose
/// sanitized names collide do not clash.
pub(crate) fn unique_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:08x}", h.finish() as u32)
}

fn env_list(env: &[(String, String)]) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

impl Docker {
    /// Creates and starts the container a job's steps are exec'd in, and returns its
    /// id. The workspace is mounted at its own path and is the working directory.
    pub async fn start_job_container(
        &self,
        spec: &ContainerSpec,
        workspace: &Path,
        labels: &Labels,
    ) -> Result<String, DockerError> {
        self.require_image(&spec.image).await?;
        let ws = workspace.to_string_lossy().to_string();
        let mut binds = vec![format!(
            "{ws}:{ws}{}",
            if spec.read_only_workspace { ":ro" } else { "" }
        )];
        for v in &spec.volumes {
            binds.push(resolve_volume(v, workspace));
        }
        let host = HostConfig {
            binds: Some(binds),
            network_mode: spec.network.clone(),
            memory: spec.memory.as_deref().map(parse_memory).transpose()?,
            nano_cpus: spec.cpus.map(|c| parse_cpus(&c.to_string())).transpose()?,
            pids_limit: spec.pids,
            ..Default::default()
        };
        let mut body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), KEEPALIVE.into()]),
            cmd: Some(vec![]),
            env: Some(env_list(&spec.env)),
            working_dir: Some(ws),
            user: spec.user.clone(),
            labels: Some(labels.to_map()),
            host_config: Some(host),
            ..Default::default()
        };
        RunOptions::parse(&spec.options)?.apply(&mut body)?;
        let name = format!(
            "trun-{}-{}-{}",
            labels.run_id,
            sanitize(&labels.job),
            unique_suffix()
        );
        self.create_and_start(&name, body, &format!("job container for {}", labels.job))
            .await
    }

    /// Creates the per-job network (labelled like everything else) and starts each
    /// service on it under its own name as a DNS alias. Returns the network id, for
    /// [`ContainerSpec::network`]. Services whose image has a HEALTHCHECK are
    /// waited for until healthy, so the first step does not race the database.
    pub async fn start_services(
        &self,
        labels: &Labels,
        services: &[ServiceSpec],
    ) -> Result<String, DockerError> {
        for s in services {
            self.require_image(&s.image).await?;
        }
        let net_name = format!(
            "trun-{}-{}-{}",
            labels.run_id,
            sanitize(&labels.job),
            unique_suffix()
        );
        let created = self
            .api()
            .create_network(NetworkCreateRequest {
                name: net_name.clone(),
                driver: Some("bridge".into()),
                labels: Some(labels.to_map()),
                ..Default::default()
            })
            .await
            .map_err(|e| DockerError::api(format!("creating network {net_name}"), e))?;
        let net_id = created.id;
        let mut started = Vec::new();
        for s in services {
            let mut body = ContainerCreateBody {
                image: Some(s.image.clone()),
                cmd: s.command.clone(),
                env: Some(env_list(&s.env)),
                labels: Some(labels.to_map()),
                host_config: Some(HostConfig {
                    network_mode: Some(net_id.clone()),
                    ..Default::default()
                }),
                networking_config: Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        net_id.clone(),
                        EndpointSettings {
                            aliases: Some(vec![s.name.clone()]),
                            ..Default::default()
                        },
                    )])),
                }),
                ..Default::default()
            };
            RunOptions::parse(&s.options)?.apply(&mut body)?;
            let name = format!(
                "trun-{}-{}-{}",
                labels.run_id,
                sanitize(&s.name),
                unique_suffix()
            );
            let id = self
                .create_and_start(&name, body, &format!("service {}", s.name))
                .await?;
            started.push((s.name.clone(), id));
        }
        for (name, id) in &started {
            self.wait_healthy(name, id).await?;
        }
        Ok(net_id)
    }

    async fn create_and_start(
        &self,
        name: &str,
        body: ContainerCreateBody,
        what: &str,
    ) -> Result<String, DockerError> {
        let opts = CreateContainerOptionsBuilder::default().name(name).build();
        let created = self
            .api()
            .create_container(Some(opts), body)
            .await
            .map_err(|e| DockerError::api(format!("creating the {what}"), e))?;
        if let Err(e) = self.api().start_container(&created.id, None).await {
            // A container that cannot start is useless; do not leave it for gc.
            let rm = RemoveContainerOptionsBuilder::default().force(true).build();
            let _ = self.api().remove_container(&created.id, Some(rm)).await;
            return Err(DockerError::api(format!("starting the {what}"), e));
        }
        Ok(created.id)
    }

    async fn wait_healthy(&self, name: &str, id: &str) -> Result<(), DockerError> {
        let deadline = tokio::time::Instant::now() + SERVICE_HEALTH_TIMEOUT;
        loop {
            let info = self
                .api()
                .inspect_container(id, None)
                .await
                .map_err(|e| DockerError::api(format!("inspecting service {name}"), e))?;
            let state = info.state.unwrap_or_default();
            if state.running != Some(true) {
                return Err(DockerError::Api {
                    action: format!("starting service {name}"),
                    message: format!("it exited with code {}", state.exit_code.unwrap_or(-1)),
                });
            }
            let health = state.health.and_then(|h| h.status).map(|s| s.to_string());
            match health.as_deref() {
                None | Some("none") | Some("") | Some("healthy") => return Ok(()),
                Some("unhealthy") => {
                    return Err(DockerError::Api {
                        action: format!("starting service {name}"),
                        message: "its health check reports unhealthy".into(),
                    })
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(DockerError::Api {
                        action: format!("starting service {name}"),
                        message: format!("not healthy after {SERVICE_HEALTH_TIMEOUT:?}"),
                    })
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

/// Makes a relative bind source absolute against the workspace; Docker would read
/// `./cache` as a volume name and fail.
fn resolve_volume(spec: &str, workspace: &Path) -> String {
    match spec.split_once(':') {
        Some((src, rest))
            if src.starts_with('.') || (src.contains('/') && !src.starts_with('/')) =>
        {
            format!("{}:{rest}", workspace.join(src).to_string_lossy())
        }
        _ => spec.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512m").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("1024").unwrap(), 1024);
        assert_eq!(parse_memory("64kb").unwrap(), 64 * 1024);
        assert_eq!(parse_memory("100b").unwrap(), 100);
        assert_eq!(
            parse_memory("lots").unwrap_err().to_string(),
            "invalid container option `lots`: expected a size like 512m, 2g or 1048576"
        );
    }

    #[test]
    fn names_are_docker_safe() {
        assert_eq!(sanitize("test (1, linux)"), "test--1--linux");
        assert_eq!(sanitize("()"), "job");
    }

    #[test]
    fn relative_volumes_resolve_against_the_workspace() {
        let ws = Path::new("/w");
        assert_eq!(resolve_volume("./cache:/c", ws), "/w/./cache:/c");
        assert_eq!(resolve_volume("data/x:/c:ro", ws), "/w/data/x:/c:ro");
        assert_eq!(resolve_volume("named:/c", ws), "named:/c");
        assert_eq!(resolve_volume("/abs:/c", ws), "/abs:/c");
    }
}
