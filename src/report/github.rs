//! Output for GitHub Actions logs: one collapsible `::group::` per step and an
//! `::error` annotation per failed step.
//!
//! GitHub draws a group from the lines between `::group::` and `::endgroup::`,
//! so output of parallel jobs written as it arrives would land in the wrong
//! group. This reporter therefore holds each step's lines and writes the whole
//! group when the step finishes: the log reads step by step, at the cost of
//! seeing a step's output only once it ends. Not for terminals (see
//! [`super::tty`]) or other CI systems (see [`super::plain`]).

use super::{
    format_duration, ignore_io, job_outcome_line, outcome_reason, step_outcome_line, ReportOptions,
    Reporter, RunSummary,
};
use crate::event::{Event, Status};
use std::collections::HashMap;
use std::io::{BufWriter, Write};

pub struct GithubReporter {
    opts: ReportOptions,
    out: BufWriter<Box<dyn Write + Send>>,
    summary: RunSummary,
    /// Lines of each running step, keyed by (job, step index), in arrival order.
    held: HashMap<(String, usize), Vec<String>>,
    finished: bool,
    /// The `::stop-commands::` token that keeps a step's command-like output
    /// from being acted on; a step cannot guess it to end the stop early.
    token: String,
}

/// A token no step output can predict: a hash of the time, the process and
/// a stack address.
fn stop_token() -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(format!("{:?}", std::time::SystemTime::now()));
    h.update(std::process::id().to_le_bytes());
    let here = 0u8;
    h.update((&here as *const u8 as usize).to_le_bytes());
    format!("trun-{}", &hex::encode(h.finalize())[..24])
}

impl GithubReporter {
    pub fn new(opts: ReportOptions, out: Box<dyn Write + Send>) -> GithubReporter {
        GithubReporter {
            opts,
            out: BufWriter::new(out),
            summary: RunSummary::new(),
            held: HashMap::new(),
            finished: false,
            token: stop_token(),
        }
    }

    fn title(&self, job: &str, step: usize) -> String {
        format!("{job} / {}", self.summary.step_name(job, step))
    }

    fn write_group(&mut self, title: &str, lines: &[String]) {
        ignore_io(writeln!(self.out, "::group::{}", escape_data(title)));
        for line in lines {
            ignore_io(writeln!(self.out, "{line}"));
        }
        ignore_io(writeln!(self.out, "::endgroup::"));
    }

    fn render(&mut self, ev: &Event) {
        let color = self.opts.color;
        match ev {
            Event::RunStarted { .. }
            | Event::JobStarted { .. }
            | Event::JobWaiting { .. }
            | Event::RunFinished { .. } => {}
            Event::StepStarted {
                job, step, attempt, ..
            } => {
                let held = self.held.entry((job.clone(), *step)).or_default();
                if *attempt > 1 {
                    held.push(format!("▶ attempt {attempt}"));
                }
            }
            Event::StepOutput {
                job, step, line, ..
            } => {
                let held = self.held.entry((job.clone(), *step)).or_default();
                // A line that reads as a command but was output (inside the
                // step's `::stop-commands::`, or one trun does not act on) must
                // stay output for the GitHub runner reading trun's output too.
                if crate::exec::commands::parse(line).is_some() {
                    held.push(format!("::stop-commands::{}", self.token));
                    held.push(line.clone());
                    held.push(format!("::{}::", self.token));
                } else {
                    held.push(line.clone());
                }
            }
            // A step's own workflow commands, re-emitted in its output for the
            // GitHub runner around trun to act on.
            Event::StepGroup { job, step, title } => {
                let line = match title {
                    Some(t) => format!("::group::{}", escape_data(t)),
                    None => "::endgroup::".to_string(),
                };
                self.held
                    .entry((job.clone(), *step))
                    .or_default()
                    .push(line);
            }
            Event::Annotation {
                job,
                step,
                annotation,
            } => {
                let line = annotation_command(annotation);
                self.held
                    .entry((job.clone(), *step))
                    .or_default()
                    .push(line);
            }
            Event::StepSummary { .. } => {}
            Event::StepRetrying {
                job,
                step,
                delay_ms,
                reason,
                ..
            } => {
                self.held
                    .entry((job.clone(), *step))
                    .or_default()
                    .push(format!(
                        "↻ {reason}; retrying in {}",
                        format_duration(*delay_ms)
                    ));
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
                let lines = self.held.remove(&(job.clone(), *step)).unwrap_or_default();
                let failed = *status == Status::Failure;
                if self.opts.quiet && !failed {
                    return;
                }
                let title = self.title(job, *step);
                let outcome = step_outcome_line(
                    &title,
                    *status,
                    *exit_code,
                    reason.as_deref(),
                    *continue_on_error,
                    *duration_ms,
                    color,
                );
                // A step that never ran (up to date, `if` false) has nothing to
                // fold away; one line says so.
                if *status == Status::Skipped && lines.is_empty() {
                    ignore_io(writeln!(self.out, "{outcome}"));
                    return;
                }
                self.write_group(&title, &lines);
                ignore_io(writeln!(self.out, "{outcome}"));
                if failed {
                    let mut message = outcome_reason(*status, *exit_code, reason.as_deref())
                        .unwrap_or_else(|| "failed".to_string());
                    if let Some(path) = log_path {
                        message.push_str(&format!("\nfull log: {path}"));
                    }
                    // continue-on-error keeps the job going; GitHub shows that as a warning.
                    let level = if *continue_on_error {
                        "warning"
                    } else {
                        "error"
                    };
                    ignore_io(writeln!(
                        self.out,
                        "::{level} title={}::{}",
                        escape_property(&title),
                        escape_data(&message)
                    ));
                }
            }
            Event::JobFinished {
                job,
                status,
                reason,
                duration_ms,
                ..
            } => {
                if self.opts.quiet && *status != Status::Failure {
                    return;
                }
                let text = job_outcome_line(job, *status, reason.as_deref(), *duration_ms, color);
                ignore_io(writeln!(self.out, "{text}"));
            }
        }
    }
}

impl Reporter for GithubReporter {
    fn event(&mut self, ev: &Event) {
        self.summary.record(ev);
        self.render(ev);
        ignore_io(self.out.flush());
    }

    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        // An aborted run leaves steps without StepFinished; their output is
        // still what explains the abort, so it is written, marked unfinished.
        let mut unfinished: Vec<_> = self.held.drain().collect();
        unfinished.sort();
        for ((job, step), lines) in unfinished {
            let title = format!("{} (unfinished)", self.title(&job, step));
            self.write_group(&title, &lines);
        }
        let table = self.summary.render(self.opts.color);
        ignore_io(write!(self.out, "\n{table}"));
        ignore_io(self.out.flush());
    }
}

/// `::error file=…,line=…::message`: an annotation as a workflow command.
pub fn annotation_command(a: &crate::event::Annotation) -> String {
    let mut props = Vec::new();
    if let Some(f) = &a.file {
        props.push(format!("file={}", escape_property(f)));
    }
    for (k, v) in [
        ("line", a.line),
        ("col", a.col),
        ("endLine", a.end_line),
        ("endColumn", a.end_column),
    ] {
        if let Some(v) = v {
            props.push(format!("{k}={v}"));
        }
    }
    if let Some(t) = &a.title {
        props.push(format!("title={}", escape_property(t)));
    }
    let props = if props.is_empty() {
        String::new()
    } else {
        format!(" {}", props.join(","))
    };
    format!("::{}{props}::{}", a.level.as_str(), escape_data(&a.message))
}

/// The message part of a workflow command: GitHub reads `%`, CR and LF as
/// syntax there.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A property value (`title=…`): as [`escape_data`], plus `:` and `,`, which
/// end a property.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::{sample_run, SharedBuf, SAMPLE_TABLE};
    use crate::report::ProgressMode;

    fn run(events: &[Event], quiet: bool) -> String {
        let buf = SharedBuf::default();
        let opts = ReportOptions {
            mode: ProgressMode::Github,
            quiet,
            verbose: false,
            color: false,
        };
        let mut reporter = GithubReporter::new(opts, Box::new(buf.clone()));
        for ev in events {
            reporter.event(ev);
        }
        reporter.finish();
        buf.text()
    }

    #[test]
    fn groups_each_step_without_interleaving() {
        let expected = "\
↷ lint / fmt: up to date
::group::lint / clippy
checking app
no warnings
::endgroup::
✓ lint / clippy (700ms)
✓ lint (710ms)
::group::build / compile
compiling app v0.1.0
error: linker crashed
↻ exit code 1; retrying in 500ms
▶ attempt 2
compiling app v0.1.0
::endgroup::
✓ build / compile (800ms)
::group::build / test
running 2 tests
test a ... ok
test b ... FAILED
::endgroup::
✗ build / test: exit code 2 (1.2s)
::error title=build / test::exit code 2%0Afull log: .trun/logs/17/build/test.log
✗ build: step test failed (2.8s)
↷ deploy skipped: needs build failed
";
        assert_eq!(
            run(&sample_run(), false),
            format!("{expected}\n{SAMPLE_TABLE}")
        );
    }

    #[test]
    fn quiet_keeps_failed_groups_only() {
        let expected = "\
::group::build / test
running 2 tests
test a ... ok
test b ... FAILED
::endgroup::
✗ build / test: exit code 2 (1.2s)
::error title=build / test::exit code 2%0Afull log: .trun/logs/17/build/test.log
✗ build: step test failed (2.8s)
";
        assert_eq!(
            run(&sample_run(), true),
            format!("{expected}\n{SAMPLE_TABLE}")
        );
    }

    #[test]
    fn an_aborted_run_still_writes_held_output() {
        let events = sample_run();
        let cut = events
            .iter()
            .position(|e| matches!(e, Event::StepOutput { line, .. } if line == "test a ... ok"))
            .unwrap();
        let text = run(&events[..=cut], false);
        assert!(text.contains(
            "::group::build / test (unfinished)\nrunning 2 tests\ntest a ... ok\n::endgroup::\n"
        ));
    }

    #[test]
    fn continue_on_error_is_a_warning() {
        let mut events = sample_run();
        for ev in &mut events {
            if let Event::StepFinished {
                status: Status::Failure,
                continue_on_error,
                ..
            } = ev
            {
                *continue_on_error = true;
            }
        }
        let text = run(&events, true);
        assert!(text.contains(
            "✗ build / test: exit code 2, continue-on-error (1.2s)\n::warning title=build / test::exit code 2%0A"
        ));
        assert!(!text.contains("::error"));
    }

    #[test]
    fn escapes_workflow_command_syntax() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(
            escape_property("test (1, linux) / a:b"),
            "test (1%2C linux) / a%3Ab"
        );
        let mut events = sample_run();
        if let Event::RunStarted { jobs, .. } = &mut events[0] {
            jobs[0].steps[1].name = "test: 100%, all".to_string();
        }
        for ev in &mut events {
            if let Event::StepStarted {
                job, step: 1, name, ..
            } = ev
            {
                if job == "build" {
                    *name = "test: 100%, all".to_string();
                }
            }
        }
        let text = run(&events, true);
        assert!(text.contains("::group::build / test: 100%25, all\n"));
        assert!(text.contains("::error title=build / test%3A 100%25%2C all::exit code 2%0A"));
    }
}
