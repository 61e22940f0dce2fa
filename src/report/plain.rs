//! Prefixed lines for logs, pipes and `--progress plain`.
//!
//! Every line names its job (`[build] ▶ compile`, `[build] <output>`) so the
//! output of parallel jobs stays readable when interleaved and can be filtered
//! with grep. Nothing is redrawn or buffered beyond one event, so the output is
//! live. Not for GitHub Actions (see [`super::github`], which groups output) and
//! not machine-readable (see [`super::json`]).

use super::{
    format_duration, ignore_io, outcome_reason, paint, status_symbol, step_outcome_line,
    OutputTail, ReportOptions, Reporter, RunSummary,
};
use crate::event::{Event, Status};
use std::collections::HashMap;
use std::io::{BufWriter, Write};

pub struct PlainReporter {
    opts: ReportOptions,
    out: BufWriter<Box<dyn Write + Send>>,
    summary: RunSummary,
    /// With `quiet`, output is held back per job and shown only when a step
    /// fails.
    tails: HashMap<String, OutputTail>,
    /// How deep in `::group::`s each job's current step is: its output is
    /// indented that many steps.
    groups: HashMap<String, usize>,
    finished: bool,
}

/// Groups deeper than this are not indented further.
pub(super) const MAX_GROUP_INDENT: usize = 8;

impl PlainReporter {
    pub fn new(opts: ReportOptions, out: Box<dyn Write + Send>) -> PlainReporter {
        PlainReporter {
            opts,
            out: BufWriter::new(out),
            summary: RunSummary::new(),
            tails: HashMap::new(),
            groups: HashMap::new(),
            finished: false,
        }
    }

    fn line(&mut self, job: &str, text: &str) {
        ignore_io(writeln!(self.out, "[{job}] {text}"));
    }

    fn render(&mut self, ev: &Event) {
        let quiet = self.opts.quiet;
        let color = self.opts.color;
        match ev {
            Event::RunStarted { .. } | Event::JobStarted { .. } | Event::RunFinished { .. } => {}
            Event::JobWaiting { job, reason, .. } => {
                if !quiet {
                    self.line(job, &format!("waiting: {reason}"));
                }
            }
            Event::StepStarted {
                job, step, attempt, ..
            } => {
                self.tails.remove(job);
                if !quiet {
                    let name = self.summary.step_name(job, *step);
                    let mut text = format!("▶ {name}");
                    if *attempt > 1 {
                        text.push_str(&format!(" (attempt {attempt})"));
                    }
                    self.line(job, &text);
                }
            }
            Event::StepOutput { job, line, .. } => {
                let depth = self.groups.get(job).copied().unwrap_or(0);
                let indented;
                let line = if depth == 0 {
                    line
                } else {
                    indented = format!("{}{line}", "  ".repeat(depth.min(MAX_GROUP_INDENT)));
                    &indented
                };
                if quiet {
                    self.tails.entry(job.clone()).or_default().push(line);
                } else {
                    self.line(job, line);
                }
            }
            Event::StepGroup { job, title, .. } => {
                let depth = self.groups.entry(job.clone()).or_default();
                match title {
                    Some(t) => {
                        let text = format!("{}▸ {t}", "  ".repeat((*depth).min(MAX_GROUP_INDENT)));
                        *depth += 1;
                        if quiet {
                            self.tails.entry(job.clone()).or_default().push(&text);
                        } else {
                            self.line(job, &text);
                        }
                    }
                    None => *depth = depth.saturating_sub(1),
                }
            }
            Event::Annotation {
                job, annotation, ..
            } => {
                if !quiet {
                    self.line(job, &annotation.render());
                }
            }
            // Shown after the closing table.
            Event::StepSummary { .. } => {}
            Event::StepRetrying {
                job,
                step,
                delay_ms,
                reason,
                ..
            } => {
                if !quiet {
                    let name = self.summary.step_name(job, *step);
                    let text = format!(
                        "↻ {name}: {reason}; retrying in {}",
                        format_duration(*delay_ms)
                    );
                    self.line(job, &text);
                }
            }
            Event::StepFinished {
                job,
                step,
                status,
                exit_code,
                reason,
                duration_ms,
                continue_on_error,
                log_path,
                ..
            } => {
                let failed = *status == Status::Failure;
                self.groups.remove(job);
                if quiet && !failed {
                    return;
                }
                if let Some(tail) = self.tails.remove(job) {
                    if tail.dropped() > 0 {
                        self.line(job, &format!("… {} earlier lines", tail.dropped()));
                    }
                    for output in tail.lines() {
                        self.line(job, output);
                    }
                }
                let name = self.summary.step_name(job, *step);
                let text = step_outcome_line(
                    &name,
                    *status,
                    *exit_code,
                    reason.as_deref(),
                    *continue_on_error,
                    *duration_ms,
                    color,
                );
                self.line(job, &text);
                if let (true, Some(path)) = (failed, log_path) {
                    self.line(job, &format!("  log: {path}"));
                }
            }
            Event::JobFinished {
                job,
                status,
                reason,
                duration_ms,
                ..
            } => {
                if quiet && *status != Status::Failure {
                    return;
                }
                let mut text = format!(
                    "{} job {}",
                    paint(status_symbol(*status), *status, color),
                    job_verb(*status)
                );
                if let Some(reason) = reason
                    .as_deref()
                    .and_then(|r| outcome_reason(*status, None, Some(r)))
                {
                    text.push_str(&format!(": {reason}"));
                }
                if *status != Status::Skipped {
                    text.push_str(&format!(" ({})", format_duration(*duration_ms)));
                }
                self.line(job, &text);
            }
        }
    }
}

/// `job succeeded`, `job failed`: the status words as a sentence.
fn job_verb(status: Status) -> &'static str {
    match status {
        Status::Success => "succeeded",
        Status::Failure => "failed",
        other => other.as_str(),
    }
}

impl Reporter for PlainReporter {
    fn event(&mut self, ev: &Event) {
        self.summary.record(ev);
        self.render(ev);
        // Live output matters more than fewer syscalls: a CI log that stops
        // mid-step must show everything up to that point.
        ignore_io(self.out.flush());
    }

    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let table = self.summary.render(self.opts.color);
        ignore_io(write!(self.out, "\n{table}"));
        ignore_io(self.out.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::{sample_run, SharedBuf, SAMPLE_TABLE};
    use crate::report::ProgressMode;

    fn run(quiet: bool, color: bool) -> String {
        let buf = SharedBuf::default();
        let opts = ReportOptions {
            mode: ProgressMode::Plain,
            quiet,
            verbose: false,
            color,
        };
        let mut reporter = PlainReporter::new(opts, Box::new(buf.clone()));
        for ev in sample_run() {
            reporter.event(&ev);
        }
        reporter.finish();
        reporter.finish();
        buf.text()
    }

    #[test]
    fn prints_prefixed_lines_then_the_summary() {
        assert_eq!(
            run(false, false),
            "\
[build] ▶ compile
[lint] ↷ fmt: up to date
[lint] ▶ clippy
[build] compiling app v0.1.0
[lint] checking app
[build] error: linker crashed
[build] ↻ compile: exit code 1; retrying in 500ms
[build] ▶ compile (attempt 2)
[lint] no warnings
[lint] ✓ clippy (700ms)
[lint] ✓ job succeeded (710ms)
[build] compiling app v0.1.0
[build] ✓ compile (800ms)
[build] ▶ test
[build] running 2 tests
[build] test a ... ok
[build] test b ... FAILED
[build] ✗ test: exit code 2 (1.2s)
[build]   log: .trun/logs/17/build/test.log
[build] ✗ job failed: step test failed (2.8s)
[deploy] ↷ job skipped: needs build failed

"
            .to_string()
                + SAMPLE_TABLE
        );
    }

    #[test]
    fn quiet_shows_only_failures_with_their_output() {
        assert_eq!(
            run(true, false),
            "\
[build] running 2 tests
[build] test a ... ok
[build] test b ... FAILED
[build] ✗ test: exit code 2 (1.2s)
[build]   log: .trun/logs/17/build/test.log
[build] ✗ job failed: step test failed (2.8s)

"
            .to_string()
                + SAMPLE_TABLE
        );
    }

    #[test]
    fn colour_touches_only_the_marks_and_status_words() {
        let coloured = run(false, true);
        assert!(coloured.contains("[build] \u{1b}[31m✗\u{1b}[0m test: exit code 2 (1.2s)"));
        assert_eq!(console::strip_ansi_codes(&coloured), run(false, false));
    }

    #[test]
    fn quiet_keeps_only_the_last_lines_of_a_long_failure() {
        let buf = SharedBuf::default();
        let opts = ReportOptions {
            mode: ProgressMode::Plain,
            quiet: true,
            verbose: false,
            color: false,
        };
        let mut reporter = PlainReporter::new(opts, Box::new(buf.clone()));
        for ev in sample_run() {
            if let Event::StepStarted { step: 1, job, .. } = &ev {
                reporter.event(&ev);
                for i in 0..25 {
                    reporter.event(&Event::StepOutput {
                        job: job.clone(),
                        step: 1,
                        stream: crate::event::Stream::Stderr,
                        line: format!("noise {i}"),
                    });
                }
                continue;
            }
            reporter.event(&ev);
        }
        let text = buf.text();
        assert!(text.starts_with("[build] … 8 earlier lines\n[build] noise 8\n"));
        assert!(text.contains("[build] noise 24\n[build] running 2 tests\n"));
    }
}
