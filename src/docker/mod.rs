//! The Docker layer: job containers, `docker exec` of steps, services, cleanup and
//! the built-in `uses:` actions (`files/exist`, `docker/build|pull|run|exec`).
//!
//! Everything here talks to the Docker Engine API through bollard (so `DOCKER_HOST`
//! is honoured and no `docker` CLI is needed at run time). Every container, network
//! and volume this layer creates carries the labels `trun.run=<id>` and
//! `trun.job=<name>`, which is what makes [`Docker::cleanup_run`] and [`Docker::gc`]
//! exact. This module is not the engine: it does not decide *when* a step runs, does
//! not emit events and does not touch the state store; callers pass closures for
//! output lines and a [`actions::Memory`] for the little state the actions keep.

pub mod actions;
mod cleanup;
mod client;
mod container;
pub(crate) mod error;
pub(crate) mod exec;
pub mod grading_image;
pub(crate) mod options;

pub use cleanup::CleanupReport;
pub use client::Docker;
pub(crate) use container::unique_suffix;
pub use container::{parse_memory, ContainerSpec, ServiceSpec};
pub use error::DockerError;
pub use exec::ExecOutcome;

/// Label carrying the run id on everything trun creates.
pub const LABEL_RUN: &str = "trun.run";
/// Label carrying the job name (the job key, e.g. `test (1, linux)`).
pub const LABEL_JOB: &str = "trun.job";
/// Label marking a `docker/run` container that must outlive its run (`keep: true`).
pub const LABEL_KEEP: &str = "trun.keep";

/// Label naming the workspace a run belongs to. Run ids count from 1 in every
/// workspace, so cleanup must match both labels or one project's `trun`
/// would remove another's containers.
pub const LABEL_WORKSPACE: &str = "trun.workspace";

static WORKSPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Tag everything this process creates with the workspace at `root` (once
/// per process, before anything is created).
pub fn set_workspace(root: &std::path::Path) {
    use sha2::Digest;
    let h = sha2::Sha256::digest(root.to_string_lossy().as_bytes());
    let _ = WORKSPACE.set(hex::encode(&h[..8]));
}

/// `trun.workspace=<id>` when a workspace is set.
pub(crate) fn workspace_filter() -> Option<String> {
    WORKSPACE.get().map(|w| format!("{LABEL_WORKSPACE}={w}"))
}

/// The labels identifying what a run (and which job of it) created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub run_id: i64,
    pub job: String,
}

impl Labels {
    pub fn new(run_id: i64, job: impl Into<String>) -> Labels {
        Labels {
            run_id,
            job: job.into(),
        }
    }

    pub(crate) fn to_map(&self) -> std::collections::HashMap<String, String> {
        let mut m = std::collections::HashMap::from([
            (LABEL_RUN.to_string(), self.run_id.to_string()),
            (LABEL_JOB.to_string(), self.job.clone()),
        ]);
        if let Some(w) = WORKSPACE.get() {
            m.insert(LABEL_WORKSPACE.to_string(), w.clone());
        }
        m
    }
}
