//! The remote cache client: step results shared between machines through a
//! server speaking the Bazel HTTP remote-cache protocol (bazel-remote, any
//! WebDAV server such as nginx with `dav_methods PUT`, or `trun serve`).
//!
//! A step's result is stored as blobs at `/cas/<sha256>` (its `generates`
//! files, its log, its outputs) and an entry at `/ac/<key>` naming them
//! ([`action_result`]). The key is the step's fingerprint made machine-safe
//! ([`ac_key`]): OS, architecture, the container image's id for a step in a
//! job container, and the values of the environment variables the user says
//! count (`--remote-cache-env`).
//!
//! It is not a second up-to-date engine: on a local miss the hooks ask
//! [`RemoteCache::restore`], which fetches and verifies the blobs into the
//! local CAS, records the success in the [`Store`](crate::state::Store) and
//! lets [`UpToDate::try_restore`](crate::uptodate::UpToDate::try_restore)
//! write the files, exactly as for a local restore. After a success the
//! hooks call [`RemoteCache::upload`].
//!
//! A remote cache is an optimisation: no error of the server (down, 500,
//! timeout) fails a run. The first one is reported once and the cache is not
//! used again in that run. An entry that is refused (a bad signature, an
//! unsafe path, a corrupted blob) is reported and the step runs.

pub mod action_result;
pub mod client;
mod step;

pub use step::Hit;

use crate::uptodate::Fingerprint;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Default `--remote-cache-max-blob`.
pub const DEFAULT_MAX_BLOB: u64 = 1 << 30;
/// Default `--remote-cache-timeout`: a 1 GiB blob at 20 MB/s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The remote-cache flags, shared by the commands that run steps.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RemoteCacheArgs {
    /// Share step results through a Bazel HTTP remote cache: http://host[:port]/[instance]
    /// (bazel-remote, a WebDAV server, or `trun serve`). A step not up to date here is
    /// restored from it when another machine ran it with the same inputs.
    #[arg(long = "remote-cache", env = "TRUN_REMOTE_CACHE", value_name = "URL")]
    pub remote_cache: Option<String>,
    /// Read from the remote cache, never write to it (a developer machine).
    #[arg(long = "remote-cache-read-only")]
    pub remote_cache_read_only: bool,
    /// Sign the cache entries this run writes, and refuse entries without a valid
    /// signature, with the key in FILE (or TRUN_REMOTE_CACHE_KEY).
    #[arg(long = "remote-cache-key-file", value_name = "FILE")]
    pub remote_cache_key_file: Option<PathBuf>,
    /// Bearer token for the cache server (`trun serve --token`).
    #[arg(
        long = "remote-cache-token",
        env = "TRUN_REMOTE_CACHE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub remote_cache_token: Option<String>,
    /// Environment variables whose values count in shared keys (e.g. CC,RUSTFLAGS):
    /// a step is only restored from a machine where they had the same values.
    #[arg(
        long = "remote-cache-env",
        env = "TRUN_REMOTE_CACHE_ENV",
        value_name = "NAME,…",
        value_delimiter = ','
    )]
    pub remote_cache_env: Vec<String>,
    /// Largest blob fetched or sent (e.g. 512MiB; default 1GiB).
    #[arg(long = "remote-cache-max-blob", value_name = "SIZE")]
    pub remote_cache_max_blob: Option<String>,
    /// Longest one request to the cache may take, e.g. 30s (default 60s).
    #[arg(long = "remote-cache-timeout", value_name = "DURATION")]
    pub remote_cache_timeout: Option<String>,
}

/// What the OS and architecture are called in keys.
fn platform() -> (&'static str, &'static str) {
    (std::env::consts::OS, std::env::consts::ARCH)
}

/// The `/ac/` key of a step: its fingerprint, extended with what makes a
/// result valid on one machine and not another. The only place it is
/// computed.
///
/// - `image`: the id (`sha256:…`) of the job's container image, never its
///   tag; `None` for a step on the host.
/// - `env`: (name, value) of each variable that counts; `None` when unset
///   (unset and empty differ).
pub fn ac_key(fp: &Fingerprint, image: Option<&str>, env: &[(String, Option<String>)]) -> String {
    let (os, arch) = platform();
    let mut h = Sha256::new();
    let mut part = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    part(b"trun.remote-cache.v1");
    part(&fp.0);
    part(os.as_bytes());
    part(arch.as_bytes());
    part(image.unwrap_or("").as_bytes());
    let mut env: Vec<&(String, Option<String>)> = env.iter().collect();
    env.sort();
    for (name, value) in env {
        part(name.as_bytes());
        match value {
            Some(v) => {
                part(b"=");
                part(v.as_bytes());
            }
            None => part(b"unset"),
        }
    }
    hex::encode(h.finalize())
}

/// A configured remote cache. One per run; shared by the engine's threads.
pub struct RemoteCache {
    client: client::Client,
    read_only: bool,
    secret: Option<Vec<u8>>,
    env: Vec<(String, Option<String>)>,
    max_blob: u64,
    /// Image reference -> image id, for the jobs with a container.
    images: Mutex<HashMap<String, String>>,
    /// Set after the first server error: not used again in this run.
    down: AtomicBool,
    /// Steps not shared because their image id is unknown: said once.
    told_image: AtomicBool,
}

impl RemoteCache {
    /// The cache the flags configure, or `None` without `--remote-cache`.
    /// A malformed URL, an unreadable or empty key is an error (exit 2).
    pub fn from_args(a: &RemoteCacheArgs) -> Result<Option<RemoteCache>, String> {
        let Some(url) = a.remote_cache.as_deref().filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let base = parse_url(url)?;
        let secret = match (
            &a.remote_cache_key_file,
            std::env::var("TRUN_REMOTE_CACHE_KEY"),
        ) {
            (Some(f), _) => {
                let text = std::fs::read(f)
                    .map_err(|e| format!("--remote-cache-key-file {}: {e}", f.display()))?;
                let key = text.trim_ascii().to_vec();
                if key.is_empty() {
                    return Err(format!(
                        "--remote-cache-key-file {}: the file is empty",
                        f.display()
                    ));
                }
                Some(key)
            }
            (None, Ok(k)) if !k.trim().is_empty() => Some(k.trim().as_bytes().to_vec()),
            (None, Ok(_)) => return Err("TRUN_REMOTE_CACHE_KEY is set but empty".into()),
            (None, Err(_)) => None,
        };
        let max_blob = match &a.remote_cache_max_blob {
            Some(s) => {
                crate::size::parse(s).map_err(|e| format!("--remote-cache-max-blob: {e}"))?
            }
            None => DEFAULT_MAX_BLOB,
        };
        let timeout = match &a.remote_cache_timeout {
            Some(t) => {
                crate::duration::parse(t).map_err(|e| format!("--remote-cache-timeout: {e}"))?
            }
            None => DEFAULT_TIMEOUT,
        };
        if timeout.is_zero() {
            return Err("--remote-cache-timeout: must be more than 0s".into());
        }
        let mut env = Vec::new();
        for name in &a.remote_cache_env {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            if name.contains('=') || name.contains('\0') {
                return Err(format!(
                    "--remote-cache-env: `{name}` is not a variable name"
                ));
            }
            env.push((name.to_string(), std::env::var(name).ok()));
        }
        Ok(Some(RemoteCache {
            client: client::Client::new(&base, a.remote_cache_token.clone(), timeout),
            read_only: a.remote_cache_read_only,
            secret,
            env,
            max_blob,
            images: Mutex::new(HashMap::new()),
            down: AtomicBool::new(false),
            told_image: AtomicBool::new(false),
        }))
    }

    pub fn url(&self) -> &str {
        self.client.base()
    }

    /// The HTTP client, for blobs that are not step results (workspace
    /// snapshots moving between machines, `crate::worker`).
    pub fn client(&self) -> &client::Client {
        &self.client
    }

    /// The ids of the container images the run's jobs use, as Docker knows
    /// them before the run (an image pulled during the run counts from the
    /// next run on).
    pub fn set_image_ids(&self, ids: impl IntoIterator<Item = (String, String)>) {
        self.images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids);
    }

    /// The key of a step, or `None` when it cannot be made machine-safe (a
    /// container image whose id is unknown).
    pub fn key(&self, fp: &Fingerprint, image: Option<&str>) -> Option<String> {
        let id = match image {
            None => None,
            Some(tag) => {
                let images = self.images.lock().unwrap_or_else(|e| e.into_inner());
                match images.get(tag) {
                    Some(id) => Some(id.clone()),
                    None => {
                        if !self.told_image.swap(true, Ordering::Relaxed) {
                            eprintln!(
                                "trun: note: remote cache: the id of image {tag} is not known before the run, so its steps are not shared this time"
                            );
                        }
                        return None;
                    }
                }
            }
        };
        Some(ac_key(fp, id.as_deref(), &self.env))
    }

    fn usable(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    /// A server error: said once, and the cache is left alone for the rest
    /// of the run.
    fn fail(&self, e: &client::HttpError) {
        if !self.down.swap(true, Ordering::Relaxed) {
            eprintln!(
                "trun: warning: remote cache {}: {e}; continuing without it for this run",
                self.client.base()
            );
        }
    }
}

/// `http://host[:port]/[instance]` -> the base URL the paths go below.
fn parse_url(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        if url.starts_with("https://") {
            format!("--remote-cache {url}: only http:// is supported (put a TLS proxy on the same host, or use a tunnel)")
        } else {
            format!("--remote-cache {url}: expected http://host[:port]/[instance]")
        }
    })?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) || rest.contains(['?', '#']) {
        return Err(format!(
            "--remote-cache {url}: expected http://host[:port]/[instance]"
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_image_env_and_fingerprint_only() {
        let fp = Fingerprint([7; 32]);
        let base = ac_key(&fp, None, &[]);
        assert_eq!(base.len(), 64);
        assert_eq!(base, ac_key(&fp, None, &[]));
        assert_ne!(base, ac_key(&Fingerprint([8; 32]), None, &[]));
        assert_ne!(base, ac_key(&fp, Some("sha256:ab"), &[]));
        let cc = |v: Option<&str>| vec![("CC".to_string(), v.map(String::from))];
        assert_ne!(
            ac_key(&fp, None, &cc(Some("gcc"))),
            ac_key(&fp, None, &cc(Some("clang")))
        );
        assert_ne!(
            ac_key(&fp, None, &cc(Some(""))),
            ac_key(&fp, None, &cc(None))
        );
        // Order of the list does not matter.
        let ab = vec![
            ("A".to_string(), Some("1".to_string())),
            ("B".to_string(), Some("2".to_string())),
        ];
        let ba: Vec<_> = ab.iter().rev().cloned().collect();
        assert_eq!(ac_key(&fp, None, &ab), ac_key(&fp, None, &ba));
    }

    #[test]
    fn a_container_step_is_keyed_by_image_id_and_unshared_without_one() {
        let cache = RemoteCache::from_args(&RemoteCacheArgs {
            remote_cache: Some("http://127.0.0.1:1/".into()),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        let fp = Fingerprint([1; 32]);
        assert_eq!(cache.key(&fp, Some("app:dev")), None);
        cache.set_image_ids([("app:dev".to_string(), "sha256:aaaa".to_string())]);
        let with_image = cache.key(&fp, Some("app:dev")).unwrap();
        assert_eq!(with_image, ac_key(&fp, Some("sha256:aaaa"), &[]));
        assert_ne!(with_image, cache.key(&fp, None).unwrap());
        // The same tag naming other content is another key.
        cache.set_image_ids([("app:dev".to_string(), "sha256:bbbb".to_string())]);
        assert_ne!(cache.key(&fp, Some("app:dev")).unwrap(), with_image);
    }

    #[test]
    fn urls() {
        assert_eq!(parse_url("http://h:9090/").unwrap(), "http://h:9090");
        assert_eq!(parse_url("http://h/inst").unwrap(), "http://h/inst");
        assert!(parse_url("https://h/")
            .unwrap_err()
            .contains("only http://"));
        assert!(parse_url("h:80").is_err());
        assert!(parse_url("http:///x").is_err());
    }
}
