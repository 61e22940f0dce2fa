//! `GET /api/v1/workflows`: the workflow files under the server's root
//! (`trun.yaml` and its other names, `.github/workflows/*.yml|*.yaml`), each
//! with its jobs and inputs as `trun list` reads them, or with what is wrong
//! with it. Every path goes through the same guard as a run's `workflow`
//! (nothing outside the root, no symlink out of it).
//!
//! It lists; it does not plan or run anything.

use super::load;
use crate::workflow::{InputSummary, JobSummary, WorkflowFile, FILE_NAMES};
use serde::Serialize;
use std::path::Path;

/// The most files listed from `.github/workflows`.
pub const MAX_LISTED: usize = 200;

/// One workflow file under the root.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkflowSummary {
    /// Relative to the server's root: what `POST /api/v1/runs` takes as `workflow`.
    pub path: String,
    /// Its `name:`, when it has one.
    pub name: Option<String>,
    pub jobs: Vec<JobSummary>,
    pub inputs: Vec<InputSummary>,
    /// What is wrong with it (`file:line:col: message`); empty when it is valid.
    pub errors: Vec<String>,
}

/// The list `GET /api/v1/workflows` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowSummary>,
}

/// The workflow files under `root`, the root's own first, then
/// `.github/workflows` by name. Blocking: it reads files.
pub fn list(root: &Path) -> WorkflowList {
    let mut paths: Vec<String> = FILE_NAMES
        .iter()
        .filter(|n| root.join(n).is_file())
        .map(|n| n.to_string())
        .collect();
    let gh = root.join(".github").join("workflows");
    if let Ok(dir) = std::fs::read_dir(&gh) {
        let mut names: Vec<String> = dir
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
            .collect();
        names.sort();
        names.truncate(MAX_LISTED);
        paths.extend(names.into_iter().map(|n| format!(".github/workflows/{n}")));
    }
    WorkflowList {
        workflows: paths.iter().filter_map(|p| summary(root, p)).collect(),
    }
}

fn summary(root: &Path, rel: &str) -> Option<WorkflowSummary> {
    // A path the run guard refuses (a symlink out of the root) is not listed.
    let (file, shown) = load::resolve(root, rel).ok()?;
    let mut out = WorkflowSummary {
        path: shown,
        name: None,
        jobs: Vec::new(),
        inputs: Vec::new(),
        errors: Vec::new(),
    };
    let shown_diag = |d: &crate::diag::Diagnostic| {
        let mut d = d.clone();
        if d.path.is_some() {
            d.path = Some(rel.into());
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
    };
    match WorkflowFile::load(&file) {
        Ok(wf) => {
            out.name = wf.workflow.name.as_ref().map(|n| n.value.clone());
            out.jobs = wf.job_summaries();
            out.inputs = wf.input_summaries();
            let templates = crate::template::Engine::new(wf.root.clone());
            if let Err(diags) = crate::validate::validate(&wf, &templates) {
                out.errors = diags.iter().map(shown_diag).collect();
            }
        }
        Err(d) => out.errors.push(shown_diag(&d)),
    }
    Some(out)
}
