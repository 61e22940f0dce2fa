//! `Rubric × repositories → Plan`: what `trun grade` hands the engine.
//!
//! Each repository becomes one job (its key is the repository's unique short name), and
//! each job holds the generated steps of `plan::rubric_steps`: the rubric's setup, one
//! step per criterion, and a closing `score` step — the same steps a `rubric/grade`
//! workflow step expands into, so both faces grade identically. Jobs are independent, so
//! the engine's one `-j` decides how many repositories are graded at once, and its
//! timeouts, Ctrl-C handling, progress view, history and logs apply unchanged.
//!
//! This module builds data only: it does not open sandboxes, run commands or score.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::plan::{GradeSandbox, Plan, PlannedJob};
use crate::rubric::Rubric;

/// Memory limit of a grading container when the rubric sets none.
pub const DEFAULT_MEMORY: u64 = 512 * 1024 * 1024;
/// Process limit of a grading container when the rubric sets none.
pub const DEFAULT_PIDS: u32 = 256;

/// The resource limits of a grading container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub memory: u64,
    pub pids: u32,
    pub cpus: Option<f64>,
}

impl Limits {
    /// The rubric's `defaults.memory/pids/cpus`, or 512 MiB, 256 and no CPU limit.
    pub fn of(rubric: &Rubric) -> Limits {
        Limits {
            memory: rubric.defaults.memory.map_or(DEFAULT_MEMORY, |m| m.0),
            pids: rubric.defaults.pids.unwrap_or(DEFAULT_PIDS),
            cpus: rubric.defaults.cpus,
        }
    }
}

/// Where a rubric's commands run, as chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// The rubric's container when it names one, else a local scratch copy.
    Rubric,
    /// `--local`: a scratch copy on this machine even when the rubric names a container.
    Local,
}

/// One repository to grade.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The job key: the repository's name, made unique within the batch.
    pub key: String,
    /// Absolute path of the repository.
    pub path: PathBuf,
}

/// The plan that grades `submissions` against `rubric`. `root` is the grader's workspace
/// (where `.trun/` lives); `rubric_path` names the rubric in the run's title.
pub fn compile(
    rubric: Arc<Rubric>,
    rubric_path: &Path,
    root: &Path,
    submissions: &[Submission],
    isolation: Isolation,
) -> Plan {
    let sandbox = match (isolation, &rubric.container) {
        (Isolation::Rubric, Some(_)) => GradeSandbox::Container,
        _ => GradeSandbox::Local,
    };
    let rubric_dir = rubric_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let jobs = submissions
        .iter()
        .map(|s| PlannedJob {
            key: s.key.clone(),
            job_id: s.key.clone(),
            name: s.key.clone(),
            needs: Vec::new(),
            needs_ids: Vec::new(),
            matrix: Default::default(),
            condition: None,
            env: Vec::new(),
            container: None,
            services: Vec::new(),
            outputs: Vec::new(),
            timeout: job_timeout(&rubric),
            continue_on_error: false,
            fail_fast: false,
            max_parallel: None,
            concurrency: None,
            dynamic_matrix: None,
            fed_by: Vec::new(),
            input: None,
            steps: crate::plan::rubric_steps(
                &rubric,
                &rubric_dir,
                &s.path.display().to_string(),
                sandbox,
                None,
                0,
            ),
            notes: Vec::new(),
            runs_on: Vec::new(),
            call: None,
        })
        .collect();
    Plan {
        workflow: format!("grade {}", rubric_path.display()),
        path: rubric_path.to_path_buf(),
        root: root.to_path_buf(),
        inputs: Default::default(),
        env: Vec::new(),
        jobs,
        fed_by: Default::default(),
        github: None,
        notes: Vec::new(),
        secrets: Default::default(),
        webhooks: Vec::new(),
        concurrency: None,
    }
}

/// A repository's whole grading is bounded too: the sum of its commands' limits plus a
/// margin for opening the sandbox, so that no repository can hold a batch forever even if
/// a sandbox operation stalls.
fn job_timeout(rubric: &Rubric) -> Option<Duration> {
    let mut total = Duration::from_secs(300);
    if rubric.setup.is_some() {
        total = total.saturating_add(rubric.defaults.timeout.0);
    }
    for c in &rubric.criteria {
        let t = rubric.timeout_of(c);
        total = total.saturating_add(if c.setup.is_some() {
            t.saturating_mul(2)
        } else {
            t
        });
    }
    Some(total)
}
