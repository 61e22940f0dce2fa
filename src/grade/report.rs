//! Rendering grading results for people and for the tools graders already use.
//!
//! One repository's [`RepoResult`] renders as a terminal table, JSON, Markdown, JUnit XML or
//! Gradescope's `results.json`; many repositories render as a CSV gradebook. Every function
//! returns text; writing files is left to [`write_reports`] and the caller. This module does
//! not grade or decide anything: statuses and points come from `score`.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use quick_xml::escape::escape;
use serde::Serialize;

use super::score::{CriterionStatus, RepoResult};
use crate::rubric::Rubric;

/// `10`, `6.67`, `0.5`: at most two decimals, no trailing zeros.
pub fn fmt_points(x: f64) -> String {
    let s = format!("{x:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn pad(s: &str, width: usize) -> String {
    let n = console::measure_text_width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

fn lpad(s: &str, width: usize) -> String {
    let n = console::measure_text_width(s);
    format!("{}{s}", " ".repeat(width.saturating_sub(n)))
}

/// The terminal table: one row per criterion (title, status, points/max, why), then the
/// total. `color` paints statuses; pass false when not writing to a terminal.
pub fn table(r: &RepoResult, color: bool) -> String {
    let mut out = String::new();
    let cached = if r.cached {
        " (cached: nothing changed since it was last graded; --force re-runs)"
    } else {
        ""
    };
    let _ = writeln!(out, "{}{cached}", r.repo);
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  grading failed: {e}");
    }
    if let Some(s) = r.setup.as_ref().filter(|s| !s.passed) {
        let _ = writeln!(out, "  setup failed: {}", s.reason);
    }
    let tw = r
        .criteria
        .iter()
        .map(|c| console::measure_text_width(&c.title))
        .max()
        .unwrap_or(0)
        .max("criterion".len());
    let points: Vec<String> = r
        .criteria
        .iter()
        .map(|c| format!("{}/{}", fmt_points(c.points), fmt_points(c.max_points)))
        .collect();
    let total = format!("{}/{}", fmt_points(r.score), fmt_points(r.max_score));
    let pw = points
        .iter()
        .chain([&total])
        .map(|p| p.len())
        .max()
        .unwrap_or(0)
        .max("points".len());
    let _ = writeln!(
        out,
        "  {}  {}  {}",
        pad("criterion", tw),
        pad("status", 7),
        lpad("points", pw)
    );
    for (c, p) in r.criteria.iter().zip(&points) {
        let status = pad(c.status.as_str(), 7);
        let status = if color {
            let s = console::style(status);
            match c.status {
                CriterionStatus::Passed => s.green(),
                CriterionStatus::Failed | CriterionStatus::Timeout => s.red(),
                CriterionStatus::Error => s.red().bold(),
                CriterionStatus::Skipped => s.yellow(),
            }
            .force_styling(true)
            .to_string()
        } else {
            status
        };
        let why = c
            .reason
            .as_deref()
            .map(|r| format!("  {r}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}  {status}  {}{why}",
            pad(&c.title, tw),
            lpad(p, pw)
        );
    }
    let _ = writeln!(
        out,
        "  {}  {}  {}",
        pad("total", tw),
        pad("", 7),
        lpad(&total, pw)
    );
    out
}

/// The full result as pretty JSON (the same shape the cache stores).
pub fn to_json(r: &RepoResult) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A Markdown report a student can read: a table, then the output of failed criteria.
pub fn to_markdown(r: &RepoResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {}: {} / {}\n",
        md_cell(&r.repo),
        fmt_points(r.score),
        fmt_points(r.max_score)
    );
    if let Some(e) = &r.error {
        let _ = writeln!(out, "Grading failed: {}\n", md_cell(e));
    }
    if let Some(s) = r.setup.as_ref().filter(|s| !s.passed) {
        let _ = writeln!(out, "Setup failed: {}\n", md_cell(&s.reason));
    }
    out.push_str("| Criterion | Status | Points | Notes |\n|---|---|---:|---|\n");
    for c in &r.criteria {
        let _ = writeln!(
            out,
            "| {} | {} | {} / {} | {} |",
            md_cell(&c.title),
            c.status,
            fmt_points(c.points),
            fmt_points(c.max_points),
            md_cell(c.reason.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(
        out,
        "| **Total** | | **{} / {}** | |",
        fmt_points(r.score),
        fmt_points(r.max_score)
    );
    for c in r.criteria.iter().filter(|c| {
        matches!(
            c.status,
            CriterionStatus::Failed | CriterionStatus::Error | CriterionStatus::Timeout
        ) && !(c.stdout.text.is_empty() && c.stderr.text.is_empty())
    }) {
        let _ = writeln!(out, "\n## {}\n", md_cell(&c.title));
        for (name, cap) in [("stdout", &c.stdout), ("stderr", &c.stderr)] {
            if !cap.text.is_empty() {
                let cut = if cap.truncated { " (cut)" } else { "" };
                let _ = writeln!(
                    out,
                    "{name}{cut}:\n\n````text\n{}\n````\n",
                    cap.text.trim_end()
                );
            }
        }
    }
    out
}

/// JUnit XML: one test suite for the repository, one test case per criterion. Timeouts and
/// errors are `<error>`, failures `<failure>`, skipped criteria `<skipped>`.
pub fn to_junit(r: &RepoResult) -> String {
    let count = |s: CriterionStatus| r.criteria.iter().filter(|c| c.status == s).count();
    let failures = count(CriterionStatus::Failed);
    let errors = count(CriterionStatus::Error) + count(CriterionStatus::Timeout);
    let skipped = count(CriterionStatus::Skipped);
    let time = r.duration_ms as f64 / 1000.0;
    let name = escape(&r.repo);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"trun grade\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
        r.criteria.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
        r.criteria.len()
    );
    let _ = writeln!(
        out,
        "    <properties>\n      <property name=\"score\" value=\"{}\"/>\n      <property name=\"max-score\" value=\"{}\"/>\n    </properties>",
        fmt_points(r.score),
        fmt_points(r.max_score)
    );
    for c in &r.criteria {
        let _ = write!(
            out,
            "    <testcase classname=\"{name}\" name=\"{}\" time=\"{:.3}\">",
            escape(&c.title),
            c.duration_ms as f64 / 1000.0
        );
        let message = escape(c.reason.as_deref().unwrap_or(""));
        let points = format!(
            "{} of {} points",
            fmt_points(c.points),
            fmt_points(c.max_points)
        );
        match c.status {
            CriterionStatus::Passed => {}
            CriterionStatus::Failed => {
                let _ = write!(
                    out,
                    "\n      <failure message=\"{message}\">{points}</failure>"
                );
            }
            CriterionStatus::Error | CriterionStatus::Timeout => {
                let _ = write!(
                    out,
                    "\n      <error type=\"{}\" message=\"{message}\">{points}</error>",
                    c.status
                );
            }
            CriterionStatus::Skipped => {
                let _ = write!(out, "\n      <skipped message=\"{message}\"/>");
            }
        }
        if !c.stdout.text.is_empty() {
            let _ = write!(
                out,
                "\n      <system-out>{}</system-out>",
                escape(&c.stdout.text)
            );
        }
        if !c.stderr.text.is_empty() {
            let _ = write!(
                out,
                "\n      <system-err>{}</system-err>",
                escape(&c.stderr.text)
            );
        }
        let closing = if c.status == CriterionStatus::Passed
            && c.stdout.text.is_empty()
            && c.stderr.text.is_empty()
        {
            "</testcase>\n"
        } else {
            "\n    </testcase>\n"
        };
        out.push_str(closing);
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Gradescope's `results.json` (autograder specification).
#[derive(Debug, Serialize)]
pub struct GradescopeResults {
    pub score: f64,
    /// Seconds.
    pub execution_time: u64,
    pub output: String,
    pub tests: Vec<GradescopeTest>,
}

#[derive(Debug, Serialize)]
pub struct GradescopeTest {
    pub name: String,
    pub number: String,
    pub score: f64,
    pub max_score: f64,
    /// `passed` or `failed`.
    pub status: &'static str,
    pub output: String,
    /// `visible`, or `after_due_date` for hidden criteria.
    pub visibility: &'static str,
}

/// The Gradescope results for one repository.
pub fn gradescope(r: &RepoResult) -> GradescopeResults {
    let mut output = format!(
        "Graded by trun: {} / {}",
        fmt_points(r.score),
        fmt_points(r.max_score)
    );
    if let Some(e) = &r.error {
        let _ = write!(output, "\nGrading failed: {e}");
    }
    if let Some(s) = r.setup.as_ref().filter(|s| !s.passed) {
        let _ = write!(
            output,
            "\nSetup failed: {}\n{}{}",
            s.reason, s.stdout.text, s.stderr.text
        );
    }
    let tests = r
        .criteria
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut text = format!("{}", c.status);
            if let Some(reason) = &c.reason {
                let _ = write!(text, ": {reason}");
            }
            if c.status != CriterionStatus::Passed {
                for (name, cap) in [("stdout", &c.stdout), ("stderr", &c.stderr)] {
                    if !cap.text.is_empty() {
                        let _ = write!(text, "\n--- {name} ---\n{}", cap.text.trim_end());
                    }
                }
            }
            GradescopeTest {
                name: c.title.clone(),
                number: (i + 1).to_string(),
                score: c.points,
                max_score: c.max_points,
                status: if c.status == CriterionStatus::Passed {
                    "passed"
                } else {
                    "failed"
                },
                output: text,
                visibility: if c.hidden {
                    "after_due_date"
                } else {
                    "visible"
                },
            }
        })
        .collect();
    GradescopeResults {
        score: r.score,
        execution_time: r.duration_ms.div_ceil(1000),
        output,
        tests,
    }
}

/// Gradescope's `results.json` text.
pub fn to_gradescope(r: &RepoResult) -> String {
    serde_json::to_string_pretty(&gradescope(r)).unwrap_or_default()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The CSV gradebook: `repo`, one column per criterion id (its points), `total`. A
/// repository whose grading crashed has `error` in every score column.
pub fn gradebook_csv(rubric: &Rubric, results: &[RepoResult]) -> String {
    let mut out = String::from("repo");
    for c in &rubric.criteria {
        out.push(',');
        out.push_str(&csv_field(&c.id));
    }
    out.push_str(",total\n");
    for r in results {
        out.push_str(&csv_field(&r.repo));
        for c in &rubric.criteria {
            out.push(',');
            match (&r.error, r.criterion(&c.id)) {
                (None, Some(cr)) => out.push_str(&fmt_points(cr.points)),
                _ => out.push_str("error"),
            }
        }
        out.push(',');
        match r.error {
            None => out.push_str(&fmt_points(r.score)),
            Some(_) => out.push_str("error"),
        }
        out.push('\n');
    }
    out
}

/// A machine-readable report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Markdown,
    Junit,
    Gradescope,
}

impl Format {
    /// `json`, `markdown` (or `md`), `junit`, `gradescope`.
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "json" => Format::Json,
            "markdown" | "md" => Format::Markdown,
            "junit" => Format::Junit,
            "gradescope" => Format::Gradescope,
            _ => return None,
        })
    }

    pub fn render(self, r: &RepoResult) -> String {
        match self {
            Format::Json => to_json(r),
            Format::Markdown => to_markdown(r),
            Format::Junit => to_junit(r),
            Format::Gradescope => to_gradescope(r),
        }
    }

    /// The file a report of this format is written to inside `--out DIR`.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Json => "report.json",
            Format::Markdown => "report.md",
            Format::Junit => "junit.xml",
            Format::Gradescope => "results.json",
        }
    }
}

/// Writes one repository's reports into `dir` (created). Returns the files written.
pub fn write_reports(r: &RepoResult, dir: &Path, formats: &[Format]) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    formats
        .iter()
        .map(|f| {
            let path = dir.join(f.file_name());
            std::fs::write(&path, f.render(r))?;
            Ok(path)
        })
        .collect()
}

/// Writes `gradebook.csv` into `dir` and each repository's reports into `dir/<repo>/`.
pub fn write_batch_reports(
    rubric: &Rubric,
    results: &[RepoResult],
    dir: &Path,
    formats: &[Format],
) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let book = dir.join("gradebook.csv");
    std::fs::write(&book, gradebook_csv(rubric, results))?;
    let mut written = vec![book];
    for r in results {
        written.extend(write_reports(r, &dir.join(&r.repo), formats)?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_format() {
        assert_eq!(fmt_points(10.0), "10");
        assert_eq!(fmt_points(20.0 * 2.0 / 3.0), "13.33");
        assert_eq!(fmt_points(0.5), "0.5");
        assert_eq!(fmt_points(0.0), "0");
    }

    #[test]
    fn csv_quotes_when_needed() {
        assert_eq!(csv_field("alice"), "alice");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
