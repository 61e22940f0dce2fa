//! Running the steps a `rubric/grade` step generated: the rubric's setup,
//! each criterion, and the closing score. All of a job's grading steps share
//! one sandbox (a scratch copy of the repository), opened by the first of
//! them and removed when the job ends, as `trun grade` does per repository.

use super::process::Exit;
use crate::event::Stream;
use crate::grade::score::{self, CriterionResult, CriterionStatus};
use crate::grade::{CriterionRunner, LocalRunner, Rubric, Sandbox};
use crate::plan::GradePart;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// A job's grading so far.
#[derive(Default)]
pub struct Grading {
    sandbox: Option<Box<dyn Sandbox>>,
    setup_failed: Option<String>,
    status: HashMap<String, CriterionStatus>,
    results: Vec<CriterionResult>,
}

pub struct Outcome {
    pub exit: Exit,
    pub outputs: BTreeMap<String, String>,
    pub skipped: Option<String>,
    pub lines: Vec<(Stream, String)>,
}

/// Run one generated step. Grading is blocking work (copies, processes with
/// their own timeouts), so it runs on a blocking thread.
pub async fn run(
    grading: &mut Option<Grading>,
    rubric: Arc<Rubric>,
    repo: PathBuf,
    part: GradePart,
) -> Outcome {
    let mut g = grading.take().unwrap_or_default();
    let joined = tokio::task::spawn_blocking(move || {
        let out = step(&mut g, &rubric, &repo, &part);
        (g, out)
    })
    .await;
    match joined {
        Ok((g, out)) => {
            *grading = Some(g);
            out
        }
        Err(e) => Outcome {
            exit: Exit::Failed(format!("grading panicked: {e}")),
            outputs: BTreeMap::new(),
            skipped: None,
            lines: Vec::new(),
        },
    }
}

fn step(g: &mut Grading, rubric: &Rubric, repo: &std::path::Path, part: &GradePart) -> Outcome {
    let mut lines = Vec::new();
    let mut outputs = BTreeMap::new();
    if g.sandbox.is_none() && !matches!(part, GradePart::Score) {
        match LocalRunner::new().open(repo) {
            Ok(s) => g.sandbox = Some(s),
            Err(e) => {
                return Outcome {
                    exit: Exit::Failed(format!("cannot prepare {}: {e}", repo.display())),
                    outputs,
                    skipped: None,
                    lines,
                }
            }
        }
    }
    let exit = match part {
        GradePart::Setup => {
            let sandbox = g.sandbox.as_deref_mut().expect("opened above");
            match score::run_setup(rubric, sandbox) {
                Some(r) => {
                    capture(&mut lines, &r.stdout.text, &r.stderr.text);
                    if r.passed {
                        Exit::Code(0)
                    } else {
                        g.setup_failed = Some(r.reason.clone());
                        Exit::Failed(format!("setup failed: {}", r.reason))
                    }
                }
                None => Exit::Code(0),
            }
        }
        GradePart::Criterion(id) => {
            let Some(c) = rubric.criteria.iter().find(|c| &c.id == id) else {
                return Outcome {
                    exit: Exit::Failed(format!("no criterion `{id}`")),
                    outputs,
                    skipped: None,
                    lines,
                };
            };
            let result = if let Some(why) = &g.setup_failed {
                score::blank(
                    c,
                    CriterionStatus::Error,
                    Some(format!("setup failed: {why}")),
                )
            } else {
                let done: HashMap<&str, CriterionStatus> =
                    g.status.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                match score::blocked(c, &done) {
                    Some(r) => r,
                    None => {
                        let sandbox = g.sandbox.as_deref_mut().expect("opened above");
                        score::run_criterion(rubric, c, sandbox)
                    }
                }
            };
            capture(&mut lines, &result.stdout.text, &result.stderr.text);
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
            let reason = result
                .reason
                .clone()
                .unwrap_or_else(|| status.as_str().to_string());
            g.results.push(result);
            match status {
                CriterionStatus::Passed => Exit::Code(0),
                CriterionStatus::Skipped => {
                    return Outcome {
                        exit: Exit::Code(0),
                        outputs,
                        skipped: Some(reason),
                        lines,
                    };
                }
                _ => Exit::Failed(reason),
            }
        }
        GradePart::Score => {
            let score: f64 = g.results.iter().map(|r| r.points).sum();
            let max = rubric.max_score();
            let s = crate::grade::report::fmt_points(score);
            let m = crate::grade::report::fmt_points(max);
            lines.push((Stream::Stdout, format!("score: {s} / {m}")));
            outputs.insert("score".into(), s);
            outputs.insert("max-score".into(), m);
            // The sandbox is no longer needed.
            g.sandbox = None;
            Exit::Code(0)
        }
    };
    Outcome {
        exit,
        outputs,
        skipped: None,
        lines,
    }
}

fn capture(lines: &mut Vec<(Stream, String)>, stdout: &str, stderr: &str) {
    lines.extend(stdout.lines().map(|l| (Stream::Stdout, l.to_string())));
    lines.extend(stderr.lines().map(|l| (Stream::Stderr, l.to_string())));
}
