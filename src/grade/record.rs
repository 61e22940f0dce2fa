//! Recording a grading in the state store, so that `trun history`, `trun show` and
//! `trun logs` list it like any run: the invocation is one run, each repository a job (its
//! key the repository's name), each criterion a step of it, after a `setup` step when the
//! rubric has one.
//!
//! Criteria map onto the engine's vocabulary: a passed criterion is a successful step; a
//! failed, timed-out or errored one is a failed step that does not fail its job (like
//! `continue-on-error`: losing points is a result, not a failure of grading); a criterion
//! skipped for a failed need is a skipped step; a result reused from the grade cache is
//! recorded as up-to-date (skipped) steps whose reason says what was reused. A job fails
//! only when its repository could not be graded at all. Output goes to log files under
//! `.trun/logs/RUN/`, as for workflow steps. This module builds events; it does not open
//! the store or grade anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::report::fmt_points;
use super::rubric::Rubric;
use super::score::{CriterionStatus, RepoResult};
use crate::event::{now_ms, Event, JobInfo, Status, StepInfo};

/// Steps of every repository's job: `setup` when the rubric has one, then the criteria in
/// rubric order.
fn steps(rubric: &Rubric) -> Vec<StepInfo> {
    let setup = rubric
        .setup
        .as_ref()
        .map(|_| ("setup".to_string(), "setup".to_string()));
    setup
        .into_iter()
        .chain(
            rubric
                .criteria
                .iter()
                .map(|c| (c.id.clone(), c.display_title().to_string())),
        )
        .enumerate()
        .map(|(index, (id, name))| StepInfo { index, id, name })
        .collect()
}

/// The jobs of a grading run, one per repository, keyed by `keys`.
pub fn job_infos(rubric: &Rubric, repos: &[PathBuf], keys: &[String]) -> Vec<JobInfo> {
    let steps = steps(rubric);
    repos
        .iter()
        .zip(keys)
        .map(|(repo, key)| JobInfo {
            key: key.clone(),
            job_id: "grade".to_string(),
            name: key.clone(),
            needs: Vec::new(),
            matrix: BTreeMap::from([(
                "repo".to_string(),
                serde_json::Value::from(repo.display().to_string()),
            )]),
            steps: steps.clone(),
        })
        .collect()
}

/// The events that record a finished grading (see the module docs), from the job start to
/// `RunFinished`; step output is written to log files under `log_dir`.
pub fn run_events(
    rubric: &Rubric,
    results: &[RepoResult],
    run_id: i64,
    log_dir: &Path,
    took_ms: u64,
) -> Vec<Event> {
    let offset = usize::from(rubric.setup.is_some());
    let now = now_ms();
    let mut events = Vec::new();
    for r in results {
        let job = r.repo.clone();
        // A reused result happened in this run, instantly; its own times are the old run's.
        let (start, duration_ms) = if r.cached {
            (now, 0)
        } else {
            (r.graded_at, r.duration_ms)
        };
        events.push(Event::JobStarted {
            job: job.clone(),
            at: start,
        });
        let mut at = start;
        if let Some(s) = &r.setup {
            let step = StepRun {
                job: &job,
                step: 0,
                id: "setup",
                name: "setup",
                status: if s.passed {
                    Status::Success
                } else {
                    Status::Failure
                },
                reason: (!s.passed).then(|| format!("setup failed: {}", s.reason)),
                exit_code: None,
                outputs: BTreeMap::new(),
                log: log_text(&s.stdout.text, &s.stderr.text),
            };
            let how = if r.cached {
                How::Reused
            } else {
                How::Ran(s.duration_ms)
            };
            step.push(&mut events, &mut at, how, log_dir);
        }
        for i in rubric.run_order() {
            let Some(c) = r.criteria.get(i) else { continue };
            let points = format!("{}/{}", fmt_points(c.points), fmt_points(c.max_points));
            let reason = match &c.reason {
                Some(why) => format!("{}: {why} ({points} points)", c.status),
                None => format!("{} ({points} points)", c.status),
            };
            let step = StepRun {
                job: &job,
                step: i + offset,
                id: &c.id,
                name: &c.title,
                status: c.status.step_status(),
                reason: Some(reason),
                exit_code: c.exit_code,
                outputs: BTreeMap::from([
                    ("status".to_string(), c.status.to_string()),
                    ("points".to_string(), fmt_points(c.points)),
                    ("max-points".to_string(), fmt_points(c.max_points)),
                ]),
                log: log_text(&c.stdout.text, &c.stderr.text),
            };
            let how = if r.cached {
                How::Reused
            } else if c.status == CriterionStatus::Skipped || r.error.is_some() {
                How::NotRun
            } else {
                How::Ran(c.duration_ms)
            };
            step.push(&mut events, &mut at, how, log_dir);
        }
        let (status, reason) = match &r.error {
            Some(e) => (Status::Failure, format!("grading failed: {e}")),
            None => (
                Status::Success,
                format!(
                    "{}/{} points{}",
                    fmt_points(r.score),
                    fmt_points(r.max_score),
                    if r.cached { " (reused)" } else { "" }
                ),
            ),
        };
        events.push(Event::JobFinished {
            job,
            status,
            reason: Some(reason),
            at: start + duration_ms as i64,
            duration_ms,
            outputs: BTreeMap::from([
                ("score".to_string(), fmt_points(r.score)),
                ("max-score".to_string(), fmt_points(r.max_score)),
            ]),
        });
    }
    let failed = results.iter().any(|r| r.error.is_some());
    events.push(Event::RunFinished {
        run_id,
        status: if failed {
            Status::Failure
        } else {
            Status::Success
        },
        at: now,
        duration_ms: took_ms,
    });
    events
}

fn log_text(stdout: &str, stderr: &str) -> String {
    match (stdout.is_empty(), stderr.is_empty()) {
        (_, true) => stdout.to_string(),
        (true, false) => stderr.to_string(),
        (false, false) => format!("{stdout}\n--- stderr ---\n{stderr}"),
    }
}

/// Whether a step ran, and for how long.
enum How {
    Ran(u64),
    /// Its result was reused from the grade cache: recorded as up to date.
    Reused,
    /// Skipped for a failed need, or never reached because grading crashed.
    NotRun,
}

/// One step's record, before it becomes events.
struct StepRun<'a> {
    job: &'a str,
    step: usize,
    id: &'a str,
    name: &'a str,
    status: Status,
    reason: Option<String>,
    exit_code: Option<i32>,
    outputs: BTreeMap<String, String>,
    log: String,
}

impl StepRun<'_> {
    fn push(self, events: &mut Vec<Event>, at: &mut i64, how: How, log_dir: &Path) {
        let ms = match how {
            How::Ran(ms) => ms,
            How::Reused | How::NotRun => {
                let (status, reason) = match how {
                    How::Reused => (
                        Status::Skipped,
                        Some(match self.reason {
                            Some(r) => format!("up to date, reused: {r}"),
                            None => "up to date, reused".to_string(),
                        }),
                    ),
                    _ => (self.status, self.reason),
                };
                events.push(Event::StepFinished {
                    job: self.job.to_string(),
                    step: self.step,
                    status,
                    exit_code: None,
                    reason,
                    attempt: 0,
                    at: *at,
                    duration_ms: 0,
                    outputs: self.outputs,
                    continue_on_error: status == Status::Failure,
                    log_path: None,
                });
                return;
            }
        };
        events.push(Event::StepStarted {
            job: self.job.to_string(),
            step: self.step,
            name: self.name.to_string(),
            attempt: 1,
            at: *at,
        });
        *at += ms as i64;
        let log_path = (!self.log.is_empty())
            .then(|| {
                let dir = log_dir.join(sanitize(self.job));
                let path = dir.join(format!("{:02}-{}.log", self.step + 1, sanitize(self.id)));
                std::fs::create_dir_all(&dir)
                    .and_then(|_| std::fs::write(&path, &self.log))
                    .ok()
                    .map(|_| path.display().to_string())
            })
            .flatten();
        events.push(Event::StepFinished {
            job: self.job.to_string(),
            step: self.step,
            status: self.status,
            exit_code: self.exit_code,
            reason: self.reason,
            attempt: 1,
            at: *at,
            duration_ms: ms,
            outputs: self.outputs,
            continue_on_error: self.status == Status::Failure,
            log_path,
        });
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
