//! Runs whose source is a git repository at a ref: each gets a checkout of
//! its own in `ROOT/.trun/sources/<run id>` (the server's state dir, never
//! the workspace itself), fetched by [`crate::git_source`] when the run is
//! created, fetched again at the recorded commit after a restart or for a
//! retry, and removed when the run ends.
//!
//! Not here: checking and fetching (`crate::git_source`), planning the
//! workflow in the checkout (`load`), when a run ends (`runs`).

use super::error::ApiError;
use crate::git_source::{self, GitError, Limits};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A run's git source as recorded: what the client asked for and the commit
/// the ref named then (what the run ran, and what it runs again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GitSource {
    /// The repository, as the client gave it.
    pub url: String,
    /// The branch, tag or commit id the client asked for.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The commit id `ref` named when the run was created.
    pub commit: String,
}

/// Where run `id`'s checkout is.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(".trun").join("sources").join(id)
}

/// Forgets run `id`'s checkout, if it has one.
pub fn discard(root: &Path, id: &str) {
    let _ = std::fs::remove_dir_all(dir(root, id));
}

/// Forgets every checkout: a server starting fetches its queued runs again.
pub fn discard_all(root: &Path) {
    let _ = std::fs::remove_dir_all(root.join(".trun").join("sources"));
}

/// Checks `url` and `reference` and fetches them into run `id`'s checkout
/// (a fresh one); returns the checkout and the commit id. On an error
/// nothing is left behind.
pub fn checkout(
    root: &Path,
    id: &str,
    url: &str,
    reference: &str,
) -> Result<(PathBuf, String), ApiError> {
    let fetched = git_source::check_url(url, root)
        .and_then(|u| git_source::check_ref(reference).map(|()| u))
        .and_then(|u| {
            discard(root, id);
            git_source::fetch(&u, reference, &dir(root, id), Limits::default())
        });
    match fetched {
        Ok(commit) => Ok((dir(root, id), commit)),
        Err(e) => {
            discard(root, id);
            Err(api_error(e))
        }
    }
}

/// Run `id`'s checkout at the commit `git` recorded, fetched again.
pub fn checkout_again(root: &Path, id: &str, git: &GitSource) -> Result<PathBuf, ApiError> {
    let (dir, commit) = checkout(root, id, &git.url, &git.commit)?;
    if commit != git.commit {
        discard(root, id);
        return Err(ApiError::internal(format!(
            "{} at {} gave commit {commit}",
            git.url, git.commit
        )));
    }
    Ok(dir)
}

fn api_error(e: GitError) -> ApiError {
    let field = |f: &str| if f == "ref" { "git.ref" } else { "git.url" };
    match e {
        GitError::Refused { field: f, message } => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_git_source", message).field(field(f))
        }
        GitError::Outside(message) => {
            ApiError::new(StatusCode::BAD_REQUEST, "path_outside_root", message).field("git.url")
        }
        GitError::Failed { field: f, message } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "git_fetch_failed",
            message,
        )
        .field(field(f)),
    }
}
