//! Running the steps a rubric generated (the rubric's setup, each criterion, the closing
//! score) for one job: the engine's side of grading.
//!
//! All of a job's grading steps share one [`Sandbox`], opened by the first of them and
//! closed when the job ends ([`close`]). Each command runs in it under the step's timeout
//! (the criterion's own limit, cut to what is left of the job's `timeout-minutes`) and the
//! run's cancellation, its output streamed to the step's log and events like any step;
//! what was observed is judged by `grade::score`, a pure function. The closing step adds
//! up the score and hands the repository's result to the run's [`GradeSink`], if any
//! (`trun grade` collects results there to write its reports).

use super::output::OutputSink;
use super::process::Exit;
use super::sandbox::{Sandbox, SandboxCommand};
use crate::event::Stream;
use crate::grade::score::{self, CriterionResult, CriterionStatus, RepoResult, SetupResult};
use crate::plan::{GradePart, GradeSandbox};
use crate::rubric::Rubric;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Receives each graded repository's result when its closing step runs.
pub trait GradeSink: Send + Sync {
    fn graded(&self, job: &str, result: RepoResult);
}

/// A job's grading so far.
pub struct Grading {
    sandbox: Option<Sandbox>,
    /// Set when the sandbox could not be opened: every command is then an error.
    broken: Option<String>,
    setup_failed: Option<String>,
    setup: Option<SetupResult>,
    status: HashMap<String, CriterionStatus>,
    results: Vec<CriterionResult>,
    started: Instant,
    graded_at: i64,
}

impl Default for Grading {
    fn default() -> Grading {
        Grading {
            sandbox: None,
            broken: None,
            setup_failed: None,
            setup: None,
            status: HashMap::new(),
            results: Vec::new(),
            started: Instant::now(),
            graded_at: crate::event::now_ms(),
        }
    }
}

/// One generated step, as the job runner hands it over.
pub struct GradeStep<'a> {
    pub rubric: &'a Arc<Rubric>,
    pub rubric_dir: &'a Path,
    pub repo: PathBuf,
    pub part: &'a GradePart,
    pub sandbox: GradeSandbox,
    pub job: &'a str,
    pub run_id: i64,
    pub docker: Option<&'a Arc<crate::docker::Docker>>,
    pub results: Option<&'a Arc<dyn GradeSink>>,
    /// What is left of the step's and the job's time limits.
    pub timeout: Option<Duration>,
}

pub struct Outcome {
    pub exit: Exit,
    pub outputs: BTreeMap<String, String>,
    /// Set when the step ended without judging anything (a criterion whose need failed).
    pub skipped: Option<String>,
}

/// Runs one generated step.
pub async fn run(
    grading: &mut Option<Grading>,
    step: GradeStep<'_>,
    sink: &mut OutputSink,
    cancel: &mut watch::Receiver<bool>,
) -> Outcome {
    let g = grading.get_or_insert_with(Grading::default);
    let rubric = step.rubric.as_ref();
    let mut outputs = BTreeMap::new();
    if g.sandbox.is_none() && g.broken.is_none() && !matches!(step.part, GradePart::Score) {
        let labels = crate::docker::Labels::new(step.run_id, step.job.to_string());
        let opened = Sandbox::open(
            step.sandbox,
            rubric,
            step.rubric_dir,
            &step.repo,
            step.docker,
            labels,
            sink,
            cancel,
        )
        .await;
        match opened {
            Ok(Some(s)) => g.sandbox = Some(s),
            Ok(None) => {
                return Outcome {
                    exit: Exit::Cancelled,
                    outputs,
                    skipped: None,
                }
            }
            Err(e) => g.broken = Some(format!("cannot prepare {}: {e}", step.repo.display())),
        }
    }
    let limit = |t: Duration| step.timeout.map_or(t, |s| s.min(t));
    let exit = match step.part {
        GradePart::Setup => {
            let Some(script) = rubric.setup.as_deref() else {
                return Outcome {
                    exit: Exit::Code(0),
                    outputs,
                    skipped: None,
                };
            };
            let cmd = SandboxCommand {
                label: "setup",
                script,
                shell: rubric.defaults.shell.program(),
                stdin: None,
                timeout: limit(rubric.defaults.timeout.0),
                max_output: rubric.defaults.max_output.0,
                score_file: None,
            };
            let obs = execute(g, &cmd, sink, cancel).await;
            if obs.runner_error.as_deref() == Some("cancelled") {
                return cancelled(outputs);
            }
            let setup = score::judge_setup(obs);
            let exit = if setup.passed {
                Exit::Code(0)
            } else {
                g.setup_failed = Some(setup.reason.clone());
                Exit::Failed(format!("setup failed: {}", setup.reason))
            };
            g.setup = Some(setup);
            exit
        }
        GradePart::Criterion(id) => {
            let Some(c) = rubric.criteria.iter().find(|c| &c.id == id) else {
                return Outcome {
                    exit: Exit::Failed(format!("no criterion `{id}`")),
                    outputs,
                    skipped: None,
                };
            };
            let done: HashMap<&str, CriterionStatus> =
                g.status.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let result = if let Some(why) = &g.setup_failed {
                score::blank(
                    c,
                    CriterionStatus::Error,
                    Some(format!("setup failed: {why}")),
                )
            } else if let Some(r) = score::blocked(c, &done) {
                r
            } else {
                let timeout = limit(rubric.timeout_of(c));
                let max_output = rubric.max_output_of(c);
                let shell = rubric.defaults.shell.program();
                let mut own_setup_failed = None;
                if let Some(script) = &c.setup {
                    let cmd = SandboxCommand {
                        label: &c.id,
                        script,
                        shell,
                        stdin: None,
                        timeout,
                        max_output,
                        score_file: None,
                    };
                    let obs = execute(g, &cmd, sink, cancel).await;
                    if obs.runner_error.as_deref() == Some("cancelled") {
                        return cancelled(outputs);
                    }
                    if !obs.succeeded() {
                        own_setup_failed = Some(score::criterion_setup_failed(c, obs));
                    }
                }
                match own_setup_failed {
                    Some(r) => r,
                    None => {
                        let cmd = SandboxCommand {
                            label: &c.id,
                            script: &c.run,
                            shell,
                            stdin: c.stdin.as_deref(),
                            timeout,
                            max_output,
                            score_file: c.score.as_ref().map(|s| s.file_name()),
                        };
                        let obs = execute(g, &cmd, sink, cancel).await;
                        if obs.runner_error.as_deref() == Some("cancelled") {
                            return cancelled(outputs);
                        }
                        score::judge_criterion(c, obs)
                    }
                }
            };
            outputs.insert("status".into(), result.status.as_str().into());
            outputs.insert(
                "points".into(),
                crate::grade::report::fmt_points(result.points),
            );
            outputs.insert(
                "max-points".into(),
                crate::grade::report::fmt_points(result.max_points),
            );
            g.status.insert(c.id.clone(), result.status);
            let status = result.status;
            let reason = step_reason(&result);
            g.results.push(result);
            match status {
                CriterionStatus::Passed => Exit::Code(0),
                CriterionStatus::Skipped => {
                    return Outcome {
                        exit: Exit::Code(0),
                        outputs,
                        skipped: Some(reason),
                    };
                }
                _ => Exit::Failed(reason),
            }
        }
        GradePart::Score => {
            // Criteria ran in dependency order; the result lists them in rubric order.
            let mut by_id: HashMap<String, CriterionResult> =
                g.results.drain(..).map(|r| (r.id.clone(), r)).collect();
            let criteria: Vec<CriterionResult> = rubric
                .criteria
                .iter()
                .map(|c| {
                    by_id.remove(&c.id).unwrap_or_else(|| {
                        score::blank(c, CriterionStatus::Skipped, Some("did not run".into()))
                    })
                })
                .collect();
            let mut result = score::repo_result(
                rubric,
                &step.repo,
                criteria,
                g.setup.take(),
                g.started.elapsed().as_millis() as u64,
                g.graded_at,
            );
            result.error = g.broken.clone();
            let s = crate::grade::report::fmt_points(result.score);
            let m = crate::grade::report::fmt_points(result.max_score);
            sink.line(Stream::Stdout, &format!("score: {s} / {m}"));
            outputs.insert("score".into(), s);
            outputs.insert("max-score".into(), m);
            if let Some(results) = step.results {
                results.graded(step.job, result);
            }
            // The sandbox is no longer needed.
            if let Some(s) = g.sandbox.take() {
                s.close().await;
            }
            Exit::Code(0)
        }
    };
    Outcome {
        exit,
        outputs,
        skipped: None,
    }
}

/// How a criterion's step is explained in `trun show`: `failed: stdout did not match
/// (exact) (0/10 points)`.
pub fn step_reason(r: &CriterionResult) -> String {
    let points = format!(
        "{}/{}",
        crate::grade::report::fmt_points(r.points),
        crate::grade::report::fmt_points(r.max_points)
    );
    match &r.reason {
        Some(why) => format!("{}: {why} ({points} points)", r.status),
        None => format!("{} ({points} points)", r.status),
    }
}

/// Step hooks for repositories whose stored result is reused: their steps are skipped as
/// up to date, each saying what it scored then, so the run still records every
/// repository. Other repositories' steps run.
pub struct Reused {
    results: HashMap<String, RepoResult>,
}

impl Reused {
    /// `results` by job key.
    pub fn new(results: HashMap<String, RepoResult>) -> Reused {
        Reused { results }
    }
}

impl super::job::StepHooks for Reused {
    fn before_step(
        &self,
        job: &str,
        step: &crate::plan::PlannedStep,
    ) -> Option<(String, BTreeMap<String, String>)> {
        let result = self.results.get(job)?;
        let crate::plan::Action::Grade { part, .. } = &step.action else {
            return None;
        };
        let (reason, outputs) = match part {
            GradePart::Setup => ("up to date, reused".to_string(), BTreeMap::new()),
            GradePart::Criterion(id) => {
                let c = result.criterion(id)?;
                let outputs = BTreeMap::from([
                    ("status".to_string(), c.status.as_str().to_string()),
                    (
                        "points".to_string(),
                        crate::grade::report::fmt_points(c.points),
                    ),
                    (
                        "max-points".to_string(),
                        crate::grade::report::fmt_points(c.max_points),
                    ),
                ]);
                (format!("up to date, reused: {}", step_reason(c)), outputs)
            }
            GradePart::Score => (
                format!(
                    "up to date, reused: {}/{}",
                    crate::grade::report::fmt_points(result.score),
                    crate::grade::report::fmt_points(result.max_score)
                ),
                BTreeMap::from([
                    (
                        "score".to_string(),
                        crate::grade::report::fmt_points(result.score),
                    ),
                    (
                        "max-score".to_string(),
                        crate::grade::report::fmt_points(result.max_score),
                    ),
                ]),
            ),
        };
        Some((reason, outputs))
    }

    fn after_step(
        &self,
        _job: &str,
        _step: &crate::plan::PlannedStep,
        _success: bool,
        _outputs: &BTreeMap<String, String>,
    ) {
    }
}

/// Runs `cmd` in the job's sandbox, or reports why there is none.
async fn execute(
    g: &mut Grading,
    cmd: &SandboxCommand<'_>,
    sink: &mut OutputSink,
    cancel: &mut watch::Receiver<bool>,
) -> crate::grade::Observed {
    match g.sandbox.as_mut() {
        Some(s) => s.run(cmd, sink, cancel).await,
        None => crate::grade::Observed {
            runner_error: Some(
                g.broken
                    .clone()
                    .unwrap_or_else(|| "the sandbox is closed".into()),
            ),
            ..Default::default()
        },
    }
}

fn cancelled(outputs: BTreeMap<String, String>) -> Outcome {
    Outcome {
        exit: Exit::Cancelled,
        outputs,
        skipped: None,
    }
}

/// Removes the job's sandbox when the job ends, however it ended.
pub async fn close(grading: Option<Grading>) {
    if let Some(s) = grading.and_then(|mut g| g.sandbox.take()) {
        s.close().await;
    }
}
