//! Grading one repository: running its rubric through a sandbox and turning what happened
//! into statuses and points.
//!
//! The order is: open a sandbox, run the rubric's `setup` once, then every criterion after
//! its `needs`. A criterion whose need did not pass is `skipped`; a failed setup makes every
//! criterion `error`; a timeout scores 0 and the rest still run. Partial credit comes from a
//! JUnit file or a fraction the command leaves in `$TRUN_OUT`. This module does not render
//! reports or cache results (see `report` and `cache`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::compare;
use super::rubric::{Criterion, Rubric, ScoreFrom};
use super::runner::{Captured, CommandSpec, CriterionRunner, Execution, Sandbox};
use crate::event::Status;

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

/// Grades one repository. Never fails: a runner that cannot even open a sandbox gives a
/// [`RepoResult::crashed`] result, so one bad repository cannot stop a batch.
pub fn grade_repo(rubric: &Rubric, repo: &Path, runner: &dyn CriterionRunner) -> RepoResult {
    let started = Instant::now();
    let graded_at = crate::event::now_ms();
    let mut sandbox = match runner.open(repo) {
        Ok(s) => s,
        Err(e) => {
            return RepoResult::crashed(
                rubric,
                repo,
                e.to_string(),
                started.elapsed().as_millis() as u64,
            )
        }
    };

    let setup = run_setup(rubric, sandbox.as_mut());
    let setup_failed = setup
        .as_ref()
        .filter(|s| !s.passed)
        .map(|s| s.reason.clone());

    let mut done: HashMap<&str, CriterionStatus> = HashMap::new();
    let mut results: Vec<Option<CriterionResult>> = vec![None; rubric.criteria.len()];
    for i in rubric.run_order() {
        let c = &rubric.criteria[i];
        let result = if let Some(reason) = &setup_failed {
            blank(
                c,
                CriterionStatus::Error,
                Some(format!("setup failed: {reason}")),
            )
        } else if let Some(skipped) = blocked(c, &done) {
            skipped
        } else {
            run_criterion(rubric, c, sandbox.as_mut())
        };
        done.insert(c.id.as_str(), result.status);
        results[i] = Some(result);
    }
    let criteria: Vec<CriterionResult> = results.into_iter().flatten().collect();
    RepoResult {
        repo: repo_name(repo),
        path: repo.to_path_buf(),
        score: round(criteria.iter().map(|c| c.points).sum()),
        max_score: rubric.max_score(),
        criteria,
        setup,
        error: None,
        duration_ms: started.elapsed().as_millis() as u64,
        graded_at,
        fingerprint: None,
        cached: false,
    }
}

/// Runs the rubric's `setup` in the sandbox, once per repository (`None` when there is
/// none). An engine running criteria as steps calls this before them.
pub fn run_setup(rubric: &Rubric, sandbox: &mut dyn Sandbox) -> Option<SetupResult> {
    rubric.setup.as_deref().map(|script| {
        let spec = CommandSpec {
            label: "setup",
            script,
            shell: rubric.defaults.shell,
            stdin: None,
            timeout: rubric.defaults.timeout.0,
            max_output: rubric.defaults.max_output.0,
        };
        match sandbox.run(&spec) {
            Ok(ex) => SetupResult {
                passed: ex.succeeded(),
                reason: ex.describe(spec.timeout),
                duration_ms: ex.duration.as_millis() as u64,
                stdout: ex.stdout,
                stderr: ex.stderr,
            },
            Err(e) => SetupResult {
                passed: false,
                reason: e.to_string(),
                duration_ms: 0,
                stdout: Captured::default(),
                stderr: Captured::default(),
            },
        }
    })
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

/// Runs one criterion (its own setup, then its command) and judges it. Does not look at
/// `needs` or the rubric's setup: see [`blocked`] and [`run_setup`].
pub fn run_criterion(rubric: &Rubric, c: &Criterion, sandbox: &mut dyn Sandbox) -> CriterionResult {
    let timeout = rubric.timeout_of(c);
    let max_output = rubric.max_output_of(c);
    if let Some(script) = &c.setup {
        let spec = CommandSpec {
            label: &c.id,
            script,
            shell: rubric.defaults.shell,
            stdin: None,
            timeout,
            max_output,
        };
        match sandbox.run(&spec) {
            Ok(ex) if ex.succeeded() => {}
            Ok(ex) => {
                let mut r = blank(
                    c,
                    CriterionStatus::Error,
                    Some(format!("criterion setup failed: {}", ex.describe(timeout))),
                );
                r.stdout = ex.stdout;
                r.stderr = ex.stderr;
                return r;
            }
            Err(e) => return blank(c, CriterionStatus::Error, Some(e.to_string())),
        }
    }
    let spec = CommandSpec {
        label: &c.id,
        script: &c.run,
        shell: rubric.defaults.shell,
        stdin: c.stdin.as_deref(),
        timeout,
        max_output,
    };
    let ex = match sandbox.run(&spec) {
        Ok(ex) => ex,
        Err(e) => return blank(c, CriterionStatus::Error, Some(e.to_string())),
    };
    let mut r = blank(c, CriterionStatus::Failed, None);
    r.exit_code = ex.exit_code;
    r.duration_ms = ex.duration.as_millis() as u64;
    let (status, points, reason, tests) = judge(c, &ex, timeout);
    r.status = status;
    r.points = round(points);
    r.reason = reason;
    r.tests = tests;
    r.stdout = ex.stdout;
    r.stderr = ex.stderr;
    r
}

type Verdict = (CriterionStatus, f64, Option<String>, Option<(u32, u32)>);

fn judge(c: &Criterion, ex: &Execution, timeout: std::time::Duration) -> Verdict {
    use CriterionStatus::*;
    if ex.timed_out {
        return (Timeout, 0.0, Some(ex.describe(timeout)), None);
    }
    if let Some(expect) = &c.expect {
        let want = expect.exit_code.unwrap_or(0);
        if ex.exit_code != Some(want) {
            let reason = format!("{}, expected exit code {want}", ex.describe(timeout));
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
            return (Failed, 0.0, Some(ex.describe(timeout)), None);
        }
        return (Passed, c.points, None, None);
    };
    // A test runner exits non-zero when some tests fail; the file, not the exit code,
    // says how many passed.
    let file = ex.out_dir.join(source.file_name());
    let fraction = match source.from {
        ScoreFrom::Junit => match read_junit(&file) {
            Ok((passed, total)) if total > 0 => {
                Ok((passed as f64 / total as f64, Some((passed, total))))
            }
            Ok(_) => Err(format!("{} has no test cases", source.file_name())),
            Err(e) => Err(e),
        },
        ScoreFrom::Fraction => read_fraction(&file).map(|f| (f, None)),
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
            let reason = format!("{e} ({})", ex.describe(timeout));
            (Error, 0.0, Some(reason), None)
        }
    }
}

/// Passed and counted test cases in a JUnit XML file. Skipped cases are not counted;
/// a case with a `<failure>` or `<error>` child failed.
pub fn read_junit(path: &Path) -> Result<(u32, u32), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|_| format!("the command wrote no {}", display_out(path)))?;
    parse_junit(&text).map_err(|e| format!("{} is not valid JUnit XML: {e}", display_out(path)))
}

fn display_out(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    format!("$TRUN_OUT/{name}")
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

fn read_fraction(path: &Path) -> Result<f64, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|_| format!("the command wrote no {}", display_out(path)))?;
    let f: f64 = text.trim().parse().map_err(|_| {
        format!(
            "{} holds `{}`, not a number from 0 to 1",
            display_out(path),
            text.trim()
        )
    })?;
    if !(0.0..=1.0).contains(&f) {
        return Err(format!("{} holds {f}, outside 0..1", display_out(path)));
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
