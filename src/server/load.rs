//! From a create-run request to a [`Plan`]: the workflow file named by a path
//! under `--root` (never leaving it: no absolute paths, no `..`, no symlink
//! pointing out) or inline YAML kept under `ROOT/.trun/server/`, validated and
//! planned exactly as `trun run` does. Errors carry the CLI's file:line:col.
//!
//! It does not run anything and does not touch the store.

use super::error::ApiError;
use crate::diag::Diagnostic;
use crate::plan::{self, Plan, Request};
use crate::template::Engine as Templates;
use crate::workflow::WorkflowFile;
use axum::http::StatusCode;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// A workflow file larger than this is refused (the request body has the same cap).
pub const MAX_WORKFLOW_BYTES: u64 = 1 << 20;

/// Where a run's workflow comes from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Path(&'a str),
    Inline(&'a str),
    /// A file in a run's git checkout (the root given is the checkout).
    Checkout(&'a str),
}

/// A planned run and the workflow path it records (relative to the root).
pub struct Loaded {
    pub plan: Plan,
    pub workflow_path: String,
}

/// Loads, validates and plans the workflow for run `id`.
pub fn load(
    root: &Path,
    id: &str,
    source: Source<'_>,
    request: &Request,
) -> Result<Loaded, ApiError> {
    let inline = matches!(source, Source::Inline(_));
    let loaded = load_source(root, id, source, request);
    if inline && loaded.is_err() {
        discard(root, id);
    }
    loaded
}

/// Where run `id`'s inline YAML is kept.
fn inline_file(root: &Path, id: &str) -> PathBuf {
    root.join(".trun").join("server").join(format!("{id}.yaml"))
}

/// Forgets run `id`'s inline YAML, if it had any.
pub fn discard(root: &Path, id: &str) {
    let _ = std::fs::remove_file(inline_file(root, id));
}

fn load_source(
    root: &Path,
    id: &str,
    source: Source<'_>,
    request: &Request,
) -> Result<Loaded, ApiError> {
    let (wf, shown, field) = match source {
        Source::Path(rel) | Source::Checkout(rel) => {
            let place = match source {
                Source::Checkout(_) => "in the git repository",
                _ => "under the server's root",
            };
            let (file, shown) = resolve_in(root, rel, place)?;
            let text = read_bounded(&file).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "workflow_unreadable",
                    format!("cannot read {shown}: {e}"),
                )
                .field("workflow")
            })?;
            let wf =
                WorkflowFile::parse(&file, text).map_err(|d| invalid(&[d], root, "workflow"))?;
            (wf, shown, "workflow")
        }
        Source::Inline(text) => {
            let file = inline_file(root, id);
            file.parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&file, text))
                .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", file.display())))?;
            let mut wf = WorkflowFile::parse(&file, text.to_string())
                .map_err(|d| invalid(&[d], root, "yaml"))?;
            // Inline YAML runs in the server's root, as if it were a file there.
            wf.root = root.to_path_buf();
            (wf, shown_path(&file, root), "yaml")
        }
    };
    let templates = Templates::new(wf.root.clone());
    crate::validate::validate(&wf, &templates).map_err(|d| invalid(&d, root, field))?;
    let plan = plan::build(&wf, request).map_err(|d| invalid(&d, root, field))?;
    Ok(Loaded {
        plan,
        workflow_path: shown,
    })
}

/// `rel` as a file under `root`, refusing every way out of it.
pub fn resolve(root: &Path, rel: &str) -> Result<(PathBuf, String), ApiError> {
    resolve_in(root, rel, "under the server's root")
}

/// [`resolve`], its errors saying the file must be `place`.
fn resolve_in(root: &Path, rel: &str, place: &str) -> Result<(PathBuf, String), ApiError> {
    let outside = |why: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "path_outside_root",
            format!("workflow path `{rel}` {why}: it must name a file {place}"),
        )
        .field("workflow")
    };
    let path = Path::new(rel);
    if rel.is_empty() {
        return Err(ApiError::bad_request("workflow path is empty").field("workflow"));
    }
    if path.is_absolute() {
        return Err(outside("is absolute"));
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(outside("leaves the root with `..`"));
    }
    let root = root
        .canonicalize()
        .map_err(|e| ApiError::internal(format!("cannot resolve the root: {e}")))?;
    let file = root.join(path).canonicalize().map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "workflow_not_found",
            format!("there is no workflow file `{rel}` {place}"),
        )
        .field("workflow")
    })?;
    if !file.starts_with(&root) {
        return Err(outside("is a symlink pointing outside"));
    }
    if !file.is_file() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "workflow_not_found",
            format!("workflow path `{rel}` is not a file"),
        )
        .field("workflow"));
    }
    Ok((file, rel.to_string()))
}

fn read_bounded(file: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(file)?
        .take(MAX_WORKFLOW_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_WORKFLOW_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_WORKFLOW_BYTES} bytes"
        )));
    }
    Ok(text)
}

/// A 422 whose message is each diagnostic as `file:line:col: message`, the
/// file relative to the root; the caret rendering goes along in the same text.
fn invalid(diags: &[Diagnostic], root: &Path, field: &'static str) -> ApiError {
    let message = diags
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if let Some(p) = &d.path {
                d.path = Some(PathBuf::from(shown_path(p, root)));
            }
            let at = d.location();
            let first = if at.is_empty() {
                d.message.clone()
            } else {
                format!("{at}: {}", d.message)
            };
            match &d.help {
                Some(help) => format!("{first} (help: {help})"),
                None => first,
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
        message,
    )
    .field(field)
}

/// `path` relative to `root` when it is under it (both resolved), as shown to a client.
fn shown_path(path: &Path, root: &Path) -> String {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    path.strip_prefix(&root)
        .unwrap_or(&path)
        .display()
        .to_string()
}
