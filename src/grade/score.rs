//! Scoring: turning what the engine observed when it ran a rubric's commands into statuses
//! and points.
//!
//! The engine runs a repository's generated steps in order (the rubric's `setup` once, then
//! every criterion after its `needs`) and hands each command's [`Observed`] result here. A
//! criterion whose need did not pass is `skipped`; a failed setup makes every criterion
//! `error`; a timeout scores 0 and the rest still run. Partial credit comes from a JUnit
//! file or a fraction the command leaves in `$TRUN_OUT`.
//!
//! This module never runs a command, opens a sandbox or touches the disk: it is a pure
//! function of what was observed. It does not render reports or cache results (see `report`
//! and `cache`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::compare;
use crate::event::Status;
use crate::rubric::{Criterion, Rubric, ScoreFrom};

/// What a captured stream held.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Captured {
    /// The first `max_output` bytes, decoded lossily as UTF-8.
    pub text: String,
    /// Every byte the command wrote to the stream.
    pub total_bytes: u64,
    /// True when bytes were dropped (over the cap, or the pipe was abandoned).
    pub truncated: bool,
}

/// How a criterion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CriterionStatus {
    /// Full points.
    Passed,
    /// The command ran and did not do what was expected (possibly with partial credit).
    Failed,
    /// The criterion could not be judged: setup failed, a score file was missing or bad,
    /// or the runner itself failed.
    Error,
    /// The command ran past its time limit and was killed.
    Timeout,
    /// Not run, because a criterion it needs did not pass.
    Skipped,
}

impl CriterionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CriterionStatus::Passed => "passed",
            CriterionStatus::Failed => "failed",
            CriterionStatus::Error => "error",
            CriterionStatus::Timeout => "timeout",
            CriterionStatus::Skipped => "skipped",
        }
    }

    /// The engine's step status for the generated step of this criterion.
    pub fn step_status(self) -> Status {
        match self {
            CriterionStatus::Passed => Status::Success,
            CriterionStatus::Skipped => Status::Skipped,
            _ => Status::Failure,
        }
    }
}

impl std::fmt::Display for CriterionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one criterion for one repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CriterionResult {
    pub id: String,
    pub title: String,
    pub status: CriterionStatus,
    pub points: f64,
    pub max_points: f64,
    pub hidden: bool,
    /// Why it ended this way, for a person: `stdout did not match (exact)`, `exit code 2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// Passed and counted test cases when scored from JUnit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<(u32, u32)>,
    #[serde(default)]
    pub stdout: Captured,
    #[serde(default)]
    pub stderr: Captured,
}

/// The result of grading one repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoResult {
    /// Display name: the repository directory's name.
    pub repo: String,
    pub path: PathBuf,
    pub score: f64,
    pub max_score: f64,
    /// In rubric order.
    pub criteria: Vec<CriterionResult>,
    /// How the rubric's `setup` went (`None` when the rubric has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<SetupResult>,
    /// Set when grading itself crashed (no sandbox, a runner failure, a panic): the
    /// gradebook shows `error` for this repository instead of points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    /// Milliseconds since the epoch when the criteria ran.
    pub graded_at: i64,
    /// The fingerprint the result was stored under, when a cache was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// True when the result was reused from the cache instead of running anything.
    #[serde(default)]
    pub cached: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupResult {
    pub passed: bool,
    pub reason: String,
    pub duration_ms: u64,
    pub stdout: Captured,
    pub stderr: Captured,
}

impl RepoResult {
    pub fn criterion(&self, id: &str) -> Option<&CriterionResult> {
        self.criteria.iter().find(|c| c.id == id)
    }

    /// A result for a repository whose grading crashed: every criterion `error`, 0 points.
    pub fn crashed(rubric: &Rubric, repo: &Path, message: String, duration_ms: u64) -> RepoResult {
        let criteria = rubric
            .criteria
            .iter()
            .map(|c| blank(c, CriterionStatus::Error, Some(message.clone())))
            .collect();
        RepoResult {
            repo: repo_name(repo),
            path: repo.to_path_buf(),
            score: 0.0,
            max_score: rubric.max_score(),
            criteria,
            setup: None,
            error: Some(message),
            duration_ms,
            graded_at: crate::event::now_ms(),
            fingerprint: None,
            cached: false,
        }
    }
}

/// The last path component, or the whole path when it has none.
pub fn repo_name(repo: &Path) -> String {
    repo.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| repo.display().to_string())
}

/// A result for a criterion that did not run: 0 points, with why.
pub fn blank(c: &Criterion, status: CriterionStatus, reason: Option<String>) -> CriterionResult {
    CriterionResult {
        id: c.id.clone(),
        title: c.display_title().to_string(),
        status,
        points: 0.0,
        max_points: c.points,
        hidden: c.hidden,
        reason,
        exit_code: None,
        duration_ms: 0,
        tests: None,
        stdout: Captured::default(),
        stderr: Captured::default(),
    }
}

/// What the engine saw when it ran one command of a rubric (the setup, a criterion's own
/// setup, or a criterion): the scorer judges only this, it never runs anything itself.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `None` when killed by a signal (including after a timeout) or when it never started.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Set when the command could not be run at all (the sandbox failed): the criterion is
    /// an `error`, not a `failed`.
    pub runner_error: Option<String>,
    pub stdout: Captured,
    pub stderr: Captured,
    pub duration: std::time::Duration,
    /// The time limit that applied (the criterion's, or less when the job's ran out).
    pub timeout: std::time::Duration,
    /// Why the sandbox killed the command, when it knows (`out of memory (…)`).
    pub killed_for: Option<String>,
    /// Regular files the command left in `$TRUN_OUT`, read after every process it started
    /// was gone, each capped (see the sandbox).
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
}

impl Observed {
    pub fn succeeded(&self) -> bool {
        self.runner_error.is_none() && !self.timed_out && self.exit_code == Some(0)
    }

    /// `exit code 2`, `killed by a signal`, `timed out after 5s`.
    pub fn describe(&self) -> String {
        if let Some(e) = &self.runner_error {
            return e.clone();
        }
        if self.timed_out {
            format!(
                "timed out after {}",
                crate::rubric::DurationSpec(self.timeout)
            )
        } else if let Some(why) = &self.killed_for {
            match self.exit_code {
                Some(code) => format!("killed: {why}, exit code {code}"),
                None => format!("killed: {why}"),
            }
        } else {
            match self.exit_code {
                Some(code) => format!("exit code {code}"),
                None => "killed by a signal".to_string(),
            }
        }
    }
}

/// Assembles a repository's result from its criteria (in rubric order) and setup.
pub fn repo_result(
    rubric: &Rubric,
    repo: &Path,
    criteria: Vec<CriterionResult>,
    setup: Option<SetupResult>,
    duration_ms: u64,
    graded_at: i64,
) -> RepoResult {
    RepoResult {
        repo: repo_name(repo),
        path: repo.to_path_buf(),
        score: round(criteria.iter().map(|c| c.points).sum()),
        max_score: rubric.max_score(),
        criteria,
        setup,
        error: None,
        duration_ms,
        graded_at,
        fingerprint: None,
        cached: false,
    }
}

/// Judges the rubric's `setup` (run once per repository before the criteria).
pub fn judge_setup(obs: Observed) -> SetupResult {
    SetupResult {
        passed: obs.succeeded(),
        reason: obs.describe(),
        duration_ms: obs.duration.as_millis() as u64,
        stdout: obs.stdout,
        stderr: obs.stderr,
    }
}

/// The result of a criterion whose own `setup` failed.
pub fn criterion_setup_failed(c: &Criterion, obs: Observed) -> CriterionResult {
    let mut r = blank(
        c,
        CriterionStatus::Error,
        Some(format!("criterion setup failed: {}", obs.describe())),
    );
    r.stdout = obs.stdout;
    r.stderr = obs.stderr;
    r
}

/// Judges one criterion's command. Does not look at `needs` or the rubric's setup: see
/// [`blocked`].
pub fn judge_criterion(c: &Criterion, obs: Observed) -> CriterionResult {
    if let Some(e) = &obs.runner_error {
        let mut r = blank(c, CriterionStatus::Error, Some(e.clone()));
        r.stdout = obs.stdout;
        r.stderr = obs.stderr;
        return r;
    }
    let mut r = blank(c, CriterionStatus::Failed, None);
    r.exit_code = obs.exit_code;
    r.duration_ms = obs.duration.as_millis() as u64;
    let (status, points, reason, tests) = judge(c, &obs);
    r.status = status;
    r.points = round(points);
    r.reason = reason;
    r.tests = tests;
    r.stdout = obs.stdout;
    r.stderr = obs.stderr;
    r
}

/// The `skipped` result for a criterion whose need did not pass, given the statuses of the
/// criteria done so far; `None` when it may run.
pub fn blocked(c: &Criterion, done: &HashMap<&str, CriterionStatus>) -> Option<CriterionResult> {
    let need = c
        .needs
        .iter()
        .find(|n| done.get(n.as_str()) != Some(&CriterionStatus::Passed))?;
    let how = done
        .get(need.as_str())
        .map_or("did not run", |s| s.as_str());
    Some(blank(
        c,
        CriterionStatus::Skipped,
        Some(format!("needs `{need}`, which {how}")),
    ))
}

/// Points are shown with two decimals; keep sums free of float noise like 6.6666667.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

type Verdict = (CriterionStatus, f64, Option<String>, Option<(u32, u32)>);

fn judge(c: &Criterion, ex: &Observed) -> Verdict {
    use CriterionStatus::*;
    if ex.timed_out {
        return (Timeout, 0.0, Some(ex.describe()), None);
    }
    if let Some(expect) = &c.expect {
        let want = expect.exit_code.unwrap_or(0);
        if ex.exit_code != Some(want) {
            let reason = format!("{}, expected exit code {want}", ex.describe());
            return (Failed, 0.0, Some(reason), None);
        }
        for (name, wanted, got) in [
            ("stdout", &expect.stdout, &ex.stdout),
            ("stderr", &expect.stderr, &ex.stderr),
        ] {
            let Some(wanted) = wanted else { continue };
            if !compare::matches(expect.compare, wanted, &got.text) {
                let cut = if got.truncated {
                    " (output was cut at max-output)"
                } else {
                    ""
                };
                let reason = format!("{name} did not match ({}){cut}", expect.compare.as_str());
                return (Failed, 0.0, Some(reason), None);
            }
        }
    }
    let Some(source) = &c.score else {
        if c.expect.is_none() && !ex.succeeded() {
            return (Failed, 0.0, Some(ex.describe()), None);
        }
        return (Passed, c.points, None, None);
    };
    // A test runner exits non-zero when some tests fail; the file, not the exit code,
    // says how many passed.
    let file = ex.files.get(source.file_name()).map(Vec::as_slice);
    let name = source.file_name();
    let fraction = match source.from {
        ScoreFrom::Junit => match read_junit(name, file) {
            Ok((passed, total)) if total > 0 => {
                Ok((passed as f64 / total as f64, Some((passed, total))))
            }
            Ok(_) => Err(format!("{} has no test cases", source.file_name())),
            Err(e) => Err(e),
        },
        ScoreFrom::Fraction => read_fraction(name, file).map(|f| (f, None)),
    };
    match fraction {
        Ok((f, tests)) => {
            let points = f * c.points;
            let status = if f >= 1.0 { Passed } else { Failed };
            let reason = match tests {
                Some((p, t)) if p < t => Some(format!("{p} of {t} tests passed")),
                None if f < 1.0 => Some(format!("scored {:.0}%", f * 100.0)),
                _ => None,
            };
            (status, points, reason, tests)
        }
        Err(e) => {
            let reason = format!("{e} ({})", ex.describe());
            (Error, 0.0, Some(reason), None)
        }
    }
}

/// Passed and counted test cases in a JUnit XML file. Skipped cases are not counted;
/// a case with a `<failure>` or `<error>` child failed.
pub fn read_junit(name: &str, file: Option<&[u8]>) -> Result<(u32, u32), String> {
    let text = file.ok_or_else(|| format!("the command wrote no $TRUN_OUT/{name}"))?;
    parse_junit(&String::from_utf8_lossy(text))
        .map_err(|e| format!("$TRUN_OUT/{name} is not valid JUnit XML: {e}"))
}

/// Counts `(passed, counted)` test cases in JUnit XML text.
pub fn parse_junit(text: &str) -> Result<(u32, u32), String> {
    use quick_xml::events::Event as Xml;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut passed = 0;
    let mut total = 0;
    // Inside a <testcase>: whether it has failed or been skipped so far.
    let mut open: Option<(bool, bool)> = None;
    let mut finish = |case: (bool, bool)| match case {
        (_, true) => {}
        (failed, false) => {
            total += 1;
            if !failed {
                passed += 1;
            }
        }
    };
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Xml::Start(e) if e.name().as_ref() == b"testcase" => open = Some((false, false)),
            Xml::Empty(e) if e.name().as_ref() == b"testcase" => finish((false, false)),
            Xml::End(e) if e.name().as_ref() == b"testcase" => {
                if let Some(case) = open.take() {
                    finish(case);
                }
            }
            Xml::Start(e) | Xml::Empty(e) => {
                if let Some(case) = open.as_mut() {
                    match e.name().as_ref() {
                        b"failure" | b"error" => case.0 = true,
                        b"skipped" => case.1 = true,
                        _ => {}
                    }
                }
            }
            Xml::Eof => break,
            _ => {}
        }
    }
    Ok((passed, total))
}

fn read_fraction(name: &str, file: Option<&[u8]>) -> Result<f64, String> {
    let bytes = file.ok_or_else(|| format!("the command wrote no $TRUN_OUT/{name}"))?;
    let text = String::from_utf8_lossy(bytes);
    let shown: String = text.trim().chars().take(40).collect();
    let f: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("$TRUN_OUT/{name} holds `{shown}`, not a number from 0 to 1"))?;
    if !(0.0..=1.0).contains(&f) || f.is_nan() {
        return Err(format!("$TRUN_OUT/{name} holds {f}, outside 0..1"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_counts_passed_failed_and_skipped() {
        let xml = r#"<?xml version="1.0"?>
<testsuites><testsuite name="s" tests="5">
  <testcase name="a"/>
  <testcase name="b"><failure message="no"/></testcase>
  <testcase name="c"><error>boom</error></testcase>
  <testcase name="d"><skipped/></testcase>
  <testcase name="e"><system-out>ok</system-out></testcase>
</testsuite></testsuites>"#;
        assert_eq!(parse_junit(xml), Ok((2, 4)));
        assert!(parse_junit("<testsuite><testcase></testsuite>").is_err());
    }
}
