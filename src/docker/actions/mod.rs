//! The built-in actions a step can `uses:`: `files/exist`, `docker/build`,
//! `docker/pull`, `docker/run` and `docker/exec`.
//!
//! Each action has a typed `with` schema checked at plan time by [`validate`] (so
//! a typo fails before anything runs, with a did-you-mean), a runner ([`run`])
//! that receives the already-rendered `with`, and a plan-time skip probe
//! ([`plan_skip`]) so `trun plan` can say `skip: pulled 2h ago`. The little state
//! actions keep between runs (last pull time, last build hash and image id) goes
//! through the [`Memory`] trait, which the engine backs with the state store's kv
//! table. This module neither renders expressions nor emits events: output lines
//! go to the `out` closure and the result is returned as data.

mod build;
mod exec;
mod files_exist;
mod pull;
mod run;
mod schema;

use super::{Docker, DockerError};
use crate::event::Stream;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use thiserror::Error;

pub use schema::WithError;

const KNOWN: &[&str] = &[
    "files/exist",
    "docker/build",
    "docker/pull",
    "docker/run",
    "docker/exec",
];

/// True when `uses` names a built-in action.
pub fn is_builtin(uses: &str) -> bool {
    KNOWN.contains(&uses)
}

/// Every built-in action's name, for help texts and did-you-mean.
pub fn known() -> &'static [&'static str] {
    KNOWN
}

/// True when the action needs a Docker connection, so that the CLI can check the
/// daemon (and fail with exit 2) before anything runs.
pub fn needs_docker(uses: &str) -> bool {
    uses.starts_with("docker/")
}

/// Plan-time validation of an action's `with`: unknown keys (with a did-you-mean),
/// missing required keys, wrong types. A string containing `${{` is accepted for
/// any type because it is rendered later; [`run`] validates again after rendering.
pub fn validate(uses: &str, with: &Map<String, Value>) -> Result<(), WithError> {
    schema::validate(uses, with)
}

/// Suggestions use the one did-you-mean of the crate.
pub use crate::diag::did_you_mean;

/// Small persistent key-value memory for actions (last pull time, build hashes).
pub trait Memory: Send + Sync {
    fn get(&self, key: &str) -> Option<String>;
    fn set(&self, key: &str, value: &str);
    /// The most recently set `(key, value)` whose key starts with `prefix` (the
    /// `restore-keys` of `actions/cache`); a memory that cannot list says `None`.
    fn newest_with_prefix(&self, prefix: &str) -> Option<(String, String)> {
        let _ = prefix;
        None
    }
}

/// Everything an action may know about where it runs.
pub struct ActionCtx<'a> {
    pub run_id: i64,
    /// The job key (used for the `trun.job` label of containers it starts).
    pub job: String,
    /// Stable identity of the step across runs (e.g. `image.build`): keys the
    /// memory of `docker/build`.
    pub step_key: String,
    pub workspace: PathBuf,
    /// `None` when the plan needs no Docker; a `docker/*` action then fails.
    pub docker: Option<&'a Docker>,
    pub memory: &'a dyn Memory,
}

impl ActionCtx<'_> {
    fn docker(&self, uses: &str) -> Result<&Docker, ActionError> {
        self.docker.ok_or_else(|| ActionError::NeedsDocker {
            uses: uses.to_string(),
        })
    }
}

/// How an action ended. A failure the user must fix in the workflow or the
/// project (a missing file, a mismatched image, a non-zero exit) is
/// `success: false` with a `message`; [`ActionError`] is for everything else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionResult {
    pub success: bool,
    pub outputs: BTreeMap<String, String>,
    /// Set when nothing needed doing, with the reason: `pulled 2h ago`.
    pub skipped: Option<String>,
    pub message: Option<String>,
}

impl ActionResult {
    fn ok(outputs: BTreeMap<String, String>) -> ActionResult {
        ActionResult {
            success: true,
            outputs,
            ..Default::default()
        }
    }

    fn skipped(reason: String, outputs: BTreeMap<String, String>) -> ActionResult {
        ActionResult {
            success: true,
            outputs,
            skipped: Some(reason),
            message: None,
        }
    }

    fn failed(message: String) -> ActionResult {
        ActionResult {
            success: false,
            message: Some(message),
            ..Default::default()
        }
    }
}

#[derive(Debug, Error)]
pub enum ActionError {
    #[error("unknown action `{uses}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    Unknown {
        uses: String,
        suggestion: Option<String>,
    },
    #[error(transparent)]
    InvalidWith(#[from] WithError),
    #[error("`{uses}` needs Docker, but no Docker connection was set up for this run")]
    NeedsDocker { uses: String },
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs a built-in action with its rendered `with`.
pub async fn run(
    uses: &str,
    with: &Map<String, Value>,
    ctx: &ActionCtx<'_>,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<ActionResult, ActionError> {
    if !is_builtin(uses) {
        return Err(ActionError::Unknown {
            uses: uses.to_string(),
            suggestion: did_you_mean(uses, KNOWN.iter().copied()),
        });
    }
    validate(uses, with)?;
    match uses {
        "files/exist" => files_exist::run(with, ctx),
        "docker/build" => build::run(with, ctx, out).await,
        "docker/pull" => pull::run(with, ctx, out).await,
        "docker/run" => run::run(with, ctx, out).await,
        _ => exec::run(with, ctx, out).await,
    }
}

/// For `trun plan`: would this action be skipped, and why? Only `docker/build`
/// (unchanged watch hash, image present) and `docker/pull` (within
/// `min-interval`) ever skip; errors while probing mean "no", never a failure.
pub async fn plan_skip(
    uses: &str,
    with: &Map<String, Value>,
    ctx: &ActionCtx<'_>,
) -> Option<String> {
    if validate(uses, with).is_err() {
        return None;
    }
    match uses {
        "docker/build" => build::plan_skip(with, ctx).await,
        "docker/pull" => pull::plan_skip(with, ctx).await,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_close_names_only() {
        assert_eq!(
            did_you_mean("docker/bulid", KNOWN.iter().copied()).as_deref(),
            Some("docker/build")
        );
        assert_eq!(
            did_you_mean("docker/pul", KNOWN.iter().copied()).as_deref(),
            Some("docker/pull")
        );
        assert_eq!(did_you_mean("make/all", KNOWN.iter().copied()), None);
    }

    #[test]
    fn unknown_action_names_a_suggestion() {
        let err = ActionError::Unknown {
            uses: "docker/pul".into(),
            suggestion: Some("docker/pull".into()),
        };
        assert_eq!(
            err.to_string(),
            "unknown action `docker/pul` (did you mean `docker/pull`?)"
        );
    }
}
