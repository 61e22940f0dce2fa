//! The live view on a terminal: one spinner line per running job.
//!
//! Each running job shows its key, its current step and how long it has been
//! running; a finished job leaves one line (✓ / ✗ / ↷) and its bar goes away.
//! Step output is not shown (it is in the log files) unless `verbose`; when a
//! step fails, its last lines are printed above the bars so the reason is on
//! screen. Bars are drawn by indicatif; every other line goes to the injected
//! writer while the bars are suspended, so the two never tear each other. Not
//! for logs or pipes: see [`super::plain`].

use super::plain::MAX_GROUP_INDENT;
use super::{
    format_duration, ignore_io, job_outcome_line, step_outcome_line, OutputTail, ReportOptions,
    Reporter, RunSummary,
};
use crate::event::{Event, Status};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

/// Often enough for the spinner to look alive, rarely enough to cost nothing.
const TICK: Duration = Duration::from_millis(100);

pub struct TtyReporter {
    opts: ReportOptions,
    out: Box<dyn Write + Send>,
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    /// Output of each job's current step, for the failure tail.
    tails: HashMap<String, OutputTail>,
    /// `::group::` depth of each job's current step (see the plain reporter).
    groups: HashMap<String, usize>,
    summary: RunSummary,
    finished: bool,
}

impl TtyReporter {
    /// `target` is where the bars are drawn: `ProgressDrawTarget::stderr()` in
    /// use, `hidden()` in tests. With `quiet` the bars are not drawn at all.
    pub fn new(
        opts: ReportOptions,
        out: Box<dyn Write + Send>,
        target: ProgressDrawTarget,
    ) -> TtyReporter {
        let target = if opts.quiet {
            ProgressDrawTarget::hidden()
        } else {
            target
        };
        TtyReporter {
            opts,
            out,
            multi: MultiProgress::with_draw_target(target),
            bars: HashMap::new(),
            tails: HashMap::new(),
            groups: HashMap::new(),
            summary: RunSummary::new(),
            finished: false,
        }
    }

    /// Writes whole lines above the bars.
    fn print(&mut self, lines: &[String]) {
        let out = &mut self.out;
        self.multi.suspend(|| {
            for line in lines {
                ignore_io(writeln!(out, "{line}"));
            }
            ignore_io(out.flush());
        });
    }

    fn bar_style(&self) -> ProgressStyle {
        let template = bar_template(self.summary.key_width(), self.opts.color);
        // The template is ours and tested; the fallback only guards a typo.
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_spinner())
    }

    fn render(&mut self, ev: &Event) {
        let color = self.opts.color;
        let quiet = self.opts.quiet;
        match ev {
            Event::RunStarted { .. } | Event::RunFinished { .. } | Event::JobWaiting { .. } => {}
            Event::JobStarted { job, .. } => {
                let bar = ProgressBar::new_spinner()
                    .with_style(self.bar_style())
                    .with_prefix(job.clone());
                let bar = self.multi.add(bar);
                bar.enable_steady_tick(TICK);
                self.bars.insert(job.clone(), bar);
            }
            Event::StepStarted {
                job, step, attempt, ..
            } => {
                self.tails.remove(job);
                let mut message = self.summary.step_name(job, *step);
                if *attempt > 1 {
                    message.push_str(&format!(" (attempt {attempt})"));
                }
                if let Some(bar) = self.bars.get(job) {
                    bar.set_message(message);
                }
            }
            Event::StepOutput { job, line, .. } => {
                let depth = self.groups.get(job).copied().unwrap_or(0);
                let line = format!("{}{line}", "  ".repeat(depth.min(MAX_GROUP_INDENT)));
                self.tails.entry(job.clone()).or_default().push(&line);
                if self.opts.verbose && !quiet {
                    self.print(&[format!("[{job}] {line}")]);
                }
            }
            Event::StepGroup { job, title, .. } => {
                let depth = self.groups.entry(job.clone()).or_default();
                match title {
                    Some(t) => {
                        let line = format!("{}▸ {t}", "  ".repeat((*depth).min(MAX_GROUP_INDENT)));
                        *depth += 1;
                        self.tails.entry(job.clone()).or_default().push(&line);
                        if self.opts.verbose && !quiet {
                            self.print(&[format!("[{job}] {line}")]);
                        }
                    }
                    None => *depth = depth.saturating_sub(1),
                }
            }
            // An annotation is news whatever the mode: it goes above the bars.
            Event::Annotation {
                job, annotation, ..
            } => {
                if !quiet {
                    self.print(&[format!("[{job}] {}", annotation.render())]);
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
                    self.print(&[format!(
                        "↻ {job} / {name}: {reason}; retrying in {}",
                        format_duration(*delay_ms)
                    )]);
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
                let tail = self.tails.remove(job).unwrap_or_default();
                self.groups.remove(job);
                if *status != Status::Failure {
                    return;
                }
                let title = format!("{job} / {}", self.summary.step_name(job, *step));
                let mut lines = vec![step_outcome_line(
                    &title,
                    *status,
                    *exit_code,
                    reason.as_deref(),
                    *continue_on_error,
                    *duration_ms,
                    color,
                )];
                // With verbose the output is already on screen.
                if !self.opts.verbose || quiet {
                    if tail.dropped() > 0 {
                        lines.push(format!("  … {} earlier lines", tail.dropped()));
                    }
                    lines.extend(tail.lines().map(|l| format!("  │ {l}")));
                }
                if let Some(path) = log_path {
                    lines.push(format!("  log: {path}"));
                }
                self.print(&lines);
            }
            Event::JobFinished {
                job,
                status,
                reason,
                duration_ms,
                ..
            } => {
                if let Some(bar) = self.bars.remove(job) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                if quiet && *status != Status::Failure {
                    return;
                }
                let text = job_outcome_line(job, *status, reason.as_deref(), *duration_ms, color);
                self.print(&[text]);
            }
        }
    }
}

/// `⠋ build   compile  3s`: job keys padded to the widest so step names start
/// in one column.
fn bar_template(key_width: usize, color: bool) -> String {
    if color {
        format!("{{spinner:.cyan}} {{prefix:<{key_width}.bold}}  {{msg}}  {{elapsed:.dim}}")
    } else {
        format!("{{spinner}} {{prefix:<{key_width}}}  {{msg}}  {{elapsed}}")
    }
}

impl Reporter for TtyReporter {
    fn event(&mut self, ev: &Event) {
        self.summary.record(ev);
        self.render(ev);
    }

    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        // Bars of jobs that never finished (an aborted run) must not be left
        // drawn under the summary.
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        ignore_io(self.multi.clear());
        let table = self.summary.render(self.opts.color);
        ignore_io(write!(self.out, "\n{table}"));
        ignore_io(self.out.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::{aborted_run, sample_run, SharedBuf, SAMPLE_TABLE};
    use crate::report::ProgressMode;

    fn run(events: &[Event], quiet: bool, verbose: bool) -> String {
        let buf = SharedBuf::default();
        let opts = ReportOptions {
            mode: ProgressMode::Tty,
            quiet,
            verbose,
            color: false,
        };
        let mut reporter =
            TtyReporter::new(opts, Box::new(buf.clone()), ProgressDrawTarget::hidden());
        for ev in events {
            reporter.event(ev);
        }
        reporter.finish();
        buf.text()
    }

    #[test]
    fn bar_templates_parse() {
        for color in [false, true] {
            assert!(ProgressStyle::with_template(&bar_template(6, color)).is_ok());
        }
    }

    #[test]
    fn prints_job_lines_the_failure_tail_and_the_summary() {
        let expected = "\
↻ build / compile: exit code 1; retrying in 500ms
✓ lint (710ms)
✗ build / test: exit code 2 (1.2s)
  │ running 2 tests
  │ test a ... ok
  │ test b ... FAILED
  log: .trun/logs/17/build/test.log
✗ build: step test failed (2.8s)
↷ deploy skipped: needs build failed
";
        assert_eq!(
            run(&sample_run(), false, false),
            format!("{expected}\n{SAMPLE_TABLE}")
        );
    }

    #[test]
    fn verbose_shows_output_live_and_not_twice() {
        let text = run(&sample_run(), false, true);
        assert!(text.starts_with("[build] compiling app v0.1.0\n[lint] checking app\n"));
        assert!(text.contains(
            "[build] test b ... FAILED\n✗ build / test: exit code 2 (1.2s)\n  log: .trun/logs/17/build/test.log\n"
        ));
    }

    #[test]
    fn quiet_keeps_the_failure_and_the_summary() {
        let expected = "\
✗ build / test: exit code 2 (1.2s)
  │ running 2 tests
  │ test a ... ok
  │ test b ... FAILED
  log: .trun/logs/17/build/test.log
✗ build: step test failed (2.8s)
";
        assert_eq!(
            run(&sample_run(), true, false),
            format!("{expected}\n{SAMPLE_TABLE}")
        );
    }

    #[test]
    fn an_aborted_run_clears_its_bars_and_still_summarises() {
        let text = run(&aborted_run(), false, false);
        assert!(text.ends_with("run 17: 1 job succeeded, 2 did not finish\n"));
        assert!(text.contains("build   test     running\n"));
    }
}
