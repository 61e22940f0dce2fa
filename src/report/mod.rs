//! Reporters: turn the engine's [`Event`]s into what a person or a machine reads.
//!
//! One reporter per output mode: a live multi-progress view on a terminal
//! ([`tty`]), prefixed lines for logs and pipes ([`plain`]), `::group::` and
//! `::error::` workflow commands under GitHub Actions ([`github`]) and one JSON
//! object per event ([`json`]). The human modes close with the table built in
//! [`summary`]. This module picks the mode and holds the few formatting rules
//! the modes share.
//!
//! It is not the state store's recorder and it never decides anything about the
//! run: it only reads events, so a reporter can be swapped or tested without an
//! engine. Output goes to an injected [`Write`], never straight to stdout, so
//! tests capture exactly what a user would see.

pub mod github;
pub mod json;
pub mod plain;
pub mod summary;
pub mod tty;

use crate::event::{Event, Status};
use std::io::{IsTerminal, Write};
use std::str::FromStr;

pub use github::GithubReporter;
pub use json::JsonReporter;
pub use plain::PlainReporter;
pub use summary::RunSummary;
pub use tty::TtyReporter;

/// Consumes the events of one run and renders them.
pub trait Reporter: Send {
    fn event(&mut self, ev: &Event);
    /// Called once after RunFinished (or when the run aborts); prints the
    /// closing summary where the mode has one.
    fn finish(&mut self);
}

/// How progress is shown; `Auto` is settled by [`ReportOptions::resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    #[default]
    Auto,
    Tty,
    Plain,
    Github,
    Json,
}

/// `--progress` got a word that is not a mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown progress mode `{0}`: expected one of auto, tty, plain, github, json")]
pub struct UnknownProgressMode(pub String);

impl FromStr for ProgressMode {
    type Err = UnknownProgressMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => ProgressMode::Auto,
            "tty" => ProgressMode::Tty,
            "plain" => ProgressMode::Plain,
            "github" => ProgressMode::Github,
            "json" => ProgressMode::Json,
            other => return Err(UnknownProgressMode(other.to_string())),
        })
    }
}

/// The facts about the process's surroundings that choose a mode. Separate from
/// [`ReportOptions`] so the choice can be tested without touching the real
/// environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Environment {
    /// `GITHUB_ACTIONS=true`.
    pub github_actions: bool,
    /// Standard error is a terminal (the progress view draws there).
    pub stderr_is_tty: bool,
    /// `NO_COLOR` is set, to any value (<https://no-color.org>).
    pub no_color: bool,
}

impl Environment {
    pub fn detect() -> Environment {
        Environment {
            github_actions: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
            stderr_is_tty: std::io::stderr().is_terminal(),
            no_color: std::env::var_os("NO_COLOR").is_some(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    pub mode: ProgressMode,
    /// Only failures and the summary.
    pub quiet: bool,
    /// Step output live on the terminal too (plain and GitHub modes show it anyway).
    pub verbose: bool,
    pub color: bool,
}

impl ReportOptions {
    /// Settles `Auto` and colour from the real environment; see [`ReportOptions::resolve_in`].
    pub fn resolve(mode: ProgressMode, quiet: bool, verbose: bool) -> ReportOptions {
        ReportOptions::resolve_in(mode, quiet, verbose, Environment::detect())
    }

    /// `Auto` becomes `Github` under GitHub Actions, `Tty` when stderr is a
    /// terminal, else `Plain`; an explicit mode is kept. Colour is on only when
    /// stderr is a terminal and `NO_COLOR` is unset, whatever the mode, so a log
    /// file never collects escape codes.
    pub fn resolve_in(
        mode: ProgressMode,
        quiet: bool,
        verbose: bool,
        env: Environment,
    ) -> ReportOptions {
        let mode = match mode {
            ProgressMode::Auto if env.github_actions => ProgressMode::Github,
            ProgressMode::Auto if env.stderr_is_tty => ProgressMode::Tty,
            ProgressMode::Auto => ProgressMode::Plain,
            explicit => explicit,
        };
        ReportOptions {
            mode,
            quiet,
            verbose,
            color: env.stderr_is_tty && !env.no_color && mode != ProgressMode::Json,
        }
    }
}

/// The reporter for `opts.mode`, writing to `out`. The TTY reporter draws its
/// bars on stderr; give it stderr as `out` too so its lines and bars share one
/// stream. An unresolved `Auto` is resolved against the real environment here.
pub fn reporter(opts: &ReportOptions, out: Box<dyn Write + Send>) -> Box<dyn Reporter> {
    let opts = match opts.mode {
        ProgressMode::Auto => ReportOptions {
            mode: ReportOptions::resolve(ProgressMode::Auto, opts.quiet, opts.verbose).mode,
            ..*opts
        },
        _ => *opts,
    };
    match opts.mode {
        ProgressMode::Tty => Box::new(TtyReporter::new(
            opts,
            out,
            indicatif::ProgressDrawTarget::stderr(),
        )),
        ProgressMode::Github => Box::new(GithubReporter::new(opts, out)),
        ProgressMode::Json => Box::new(JsonReporter::new(out)),
        ProgressMode::Plain | ProgressMode::Auto => Box::new(PlainReporter::new(opts, out)),
    }
}

/// The one duration formatter, re-exported for the reporters.
pub use crate::duration::format_ms as format_duration;

/// The mark shown before a finished job or step.
pub fn status_symbol(status: Status) -> &'static str {
    match status {
        Status::Success => "✓",
        Status::Skipped => "↷",
        Status::Failure | Status::Cancelled | Status::Interrupted => "✗",
        Status::Pending | Status::Queued | Status::Waiting | Status::Running | Status::Paused => {
            "•"
        }
    }
}

/// `text` in the colour that goes with `status`, or unchanged without colour.
/// Styling is forced either way so the result depends on `color` alone, not on
/// what the console crate guesses about the terminal.
pub fn paint(text: &str, status: Status, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let styled = console::style(text).force_styling(true);
    match status {
        Status::Success => styled.green(),
        Status::Failure | Status::Cancelled | Status::Interrupted => styled.red(),
        Status::Skipped => styled.yellow(),
        Status::Pending | Status::Queued | Status::Waiting | Status::Running | Status::Paused => {
            styled.dim()
        }
    }
    .to_string()
}

/// Why a step or job ended as it did, in words: the engine's reason when it
/// gave one, else what the exit code says. `None` for a plain success.
pub fn outcome_reason(
    status: Status,
    exit_code: Option<i32>,
    reason: Option<&str>,
) -> Option<String> {
    if let Some(reason) = reason.filter(|r| !r.is_empty()) {
        // The mark or status word already says "skipped".
        let reason = reason.strip_prefix("skipped: ").unwrap_or(reason);
        return Some(reason.to_string());
    }
    match status {
        Status::Success => None,
        Status::Failure => Some(match exit_code {
            Some(code) => format!("exit code {code}"),
            None => "failed".to_string(),
        }),
        other if other.is_final() => Some(other.as_str().to_string()),
        // Not ended yet, so there is no why.
        _ => None,
    }
}

/// `✓ compile (0.8s)`, `✗ test: exit code 2 (1.2s)`, `↷ fmt: up to date`: how
/// the line-based modes announce a finished step. `name` is whatever the mode
/// calls the step (`compile`, `build / compile`).
pub fn step_outcome_line(
    name: &str,
    status: Status,
    exit_code: Option<i32>,
    reason: Option<&str>,
    continue_on_error: bool,
    duration_ms: u64,
    color: bool,
) -> String {
    let mut line = format!("{} {name}", paint(status_symbol(status), status, color));
    if let Some(reason) = outcome_reason(status, exit_code, reason) {
        line.push_str(": ");
        line.push_str(&reason);
    }
    if continue_on_error && status == Status::Failure {
        line.push_str(", continue-on-error");
    }
    if status != Status::Skipped {
        line.push_str(&format!(" ({})", format_duration(duration_ms)));
    }
    line
}

/// `✓ build (0.7s)`, `✗ build: step test failed (2.8s)`, `↷ deploy skipped:
/// needs build failed`: how the terminal and GitHub modes announce a finished
/// job. Only a reason the engine gave is shown; the mark already says failed.
pub fn job_outcome_line(
    job: &str,
    status: Status,
    reason: Option<&str>,
    duration_ms: u64,
    color: bool,
) -> String {
    let mut line = format!("{} {job}", paint(status_symbol(status), status, color));
    if !matches!(status, Status::Success | Status::Failure) {
        line.push(' ');
        line.push_str(status.as_str());
    }
    if let Some(reason) = reason.and_then(|r| outcome_reason(status, None, Some(r))) {
        line.push_str(": ");
        line.push_str(&reason);
    }
    if status != Status::Skipped {
        line.push_str(&format!(" ({})", format_duration(duration_ms)));
    }
    line
}

/// The last lines a step printed, kept so a failure can show why without the
/// whole log.
#[derive(Debug, Default)]
pub(crate) struct OutputTail {
    lines: std::collections::VecDeque<String>,
    /// Lines seen in all, including those dropped from the front.
    total: usize,
}

impl OutputTail {
    /// As many lines as fit on a screen above the progress bars.
    pub(crate) const KEEP: usize = 20;

    pub(crate) fn push(&mut self, line: &str) {
        if self.lines.len() == Self::KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_string());
        self.total += 1;
    }

    pub(crate) fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }

    /// How many lines were dropped to keep the tail short.
    pub(crate) fn dropped(&self) -> usize {
        self.total - self.lines.len()
    }
}

/// Output problems (a closed pipe, a full disk) must not abort a run whose
/// state is being recorded elsewhere, so reporters hand write errors here, in
/// one visible place: a reader that went away (`| head -1`) is not an error,
/// anything else (`> /dev/full`) is remembered so the process exits non-zero.
pub(crate) fn ignore_io(result: std::io::Result<()>) {
    if let Err(e) = result {
        note_output_error(&e);
    }
}

static OUTPUT_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records that writing trun's output failed. A closed pipe (the reader
/// stopped reading, as `head` does) is ignored; any other error is said once
/// on stderr and makes [`output_failed`] true.
pub fn note_output_error(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return;
    }
    if !OUTPUT_FAILED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        eprintln!("trun: error: cannot write the output: {e}");
    }
}

/// Whether some output could not be written (see [`note_output_error`]): the
/// command then exits 1 even if everything else succeeded.
pub fn output_failed() -> bool {
    OUTPUT_FAILED.load(std::sync::atomic::Ordering::SeqCst)
}

/// What the reporters' tests share: a captured writer and one realistic run.
#[cfg(test)]
pub(crate) mod testing {
    use crate::event::{Event, JobInfo, Millis, Status, StepInfo, Stream};
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A writer the test keeps a handle on after the reporter took its box.
    #[derive(Clone, Default)]
    pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl SharedBuf {
        pub fn text(&self) -> String {
            let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
            String::from_utf8(bytes).expect("reporters write UTF-8")
        }
    }

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const T0: Millis = 1_700_000_000_000;

    fn job(key: &str, needs: &[&str], steps: &[(&str, &str)]) -> JobInfo {
        JobInfo {
            key: key.to_string(),
            job_id: key.to_string(),
            name: key.to_string(),
            needs: needs.iter().map(|n| n.to_string()).collect(),
            matrix: BTreeMap::new(),
            steps: steps
                .iter()
                .enumerate()
                .map(|(index, (id, name))| StepInfo {
                    index,
                    id: id.to_string(),
                    name: name.to_string(),
                })
                .collect(),
        }
    }

    fn started(job: &str, step: usize, name: &str, attempt: u32, at: Millis) -> Event {
        Event::StepStarted {
            job: job.to_string(),
            step,
            name: name.to_string(),
            attempt,
            at: T0 + at,
        }
    }

    fn output(job: &str, step: usize, stream: Stream, line: &str) -> Event {
        Event::StepOutput {
            job: job.to_string(),
            step,
            stream,
            line: line.to_string(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finished(
        job: &str,
        step: usize,
        status: Status,
        exit_code: Option<i32>,
        reason: Option<&str>,
        attempt: u32,
        at: Millis,
        duration_ms: u64,
        log_path: Option<&str>,
    ) -> Event {
        Event::StepFinished {
            job: job.to_string(),
            step,
            status,
            exit_code,
            reason: reason.map(str::to_string),
            attempt,
            at: T0 + at,
            duration_ms,
            outputs: BTreeMap::new(),
            continue_on_error: false,
            log_path: log_path.map(str::to_string),
        }
    }

    fn job_finished(job: &str, status: Status, reason: Option<&str>, at: Millis, ms: u64) -> Event {
        Event::JobFinished {
            job: job.to_string(),
            status,
            reason: reason.map(str::to_string),
            at: T0 + at,
            duration_ms: ms,
            outputs: BTreeMap::new(),
        }
    }

    /// The closing table of [`sample_run`], the same in every human mode.
    pub const SAMPLE_TABLE: &str = "\
JOB     STEP     STATUS   DURATION
build   compile  success     800ms  attempt 2
build   test     failure      1.2s  exit code 2
lint    fmt      skipped            up to date
lint    clippy   success     700ms
deploy  -        skipped            needs build failed
run 17: 1 job succeeded, 1 failed, 1 skipped in 3.2s
";

    /// [`sample_run`] cut off right after `build`'s `test` step started, as
    /// when the process is interrupted: no finish for build, deploy or the run.
    pub fn aborted_run() -> Vec<Event> {
        let mut events = sample_run();
        let cut = events
            .iter()
            .position(|e| matches!(e, Event::StepStarted { job, step: 1, .. } if job == "build"))
            .map_or(events.len(), |i| i + 1);
        events.truncate(cut);
        events
    }

    /// Run 17: `build` and `lint` in parallel with interleaved output; `build`
    /// retries `compile` once, then fails in `test`; `lint` has an up-to-date
    /// step; `deploy` needs `build` and is skipped.
    pub fn sample_run() -> Vec<Event> {
        use Status::*;
        use Stream::*;
        vec![
            Event::RunStarted {
                run_id: 17,
                workflow: "app".to_string(),
                at: T0,
                jobs: vec![
                    job("build", &[], &[("compile", "compile"), ("test", "test")]),
                    job("lint", &[], &[("fmt", "fmt"), ("clippy", "clippy")]),
                    job("deploy", &["build"], &[("push", "push")]),
                ],
            },
            Event::JobStarted {
                job: "build".to_string(),
                at: T0,
            },
            Event::JobStarted {
                job: "lint".to_string(),
                at: T0,
            },
            started("build", 0, "compile", 1, 0),
            finished("lint", 0, Skipped, None, Some("up to date"), 1, 5, 0, None),
            started("lint", 1, "clippy", 1, 10),
            output("build", 0, Stdout, "compiling app v0.1.0"),
            output("lint", 1, Stdout, "checking app"),
            output("build", 0, Stderr, "error: linker crashed"),
            Event::StepRetrying {
                job: "build".to_string(),
                step: 0,
                attempt: 1,
                delay_ms: 500,
                reason: "exit code 1".to_string(),
                exit_code: Some(1),
            },
            started("build", 0, "compile", 2, 800),
            output("lint", 1, Stdout, "no warnings"),
            finished("lint", 1, Success, Some(0), None, 1, 710, 700, None),
            job_finished("lint", Success, None, 710, 710),
            output("build", 0, Stdout, "compiling app v0.1.0"),
            finished("build", 0, Success, Some(0), None, 2, 1600, 800, None),
            started("build", 1, "test", 1, 1600),
            output("build", 1, Stdout, "running 2 tests"),
            output("build", 1, Stdout, "test a ... ok"),
            output("build", 1, Stdout, "test b ... FAILED"),
            finished(
                "build",
                1,
                Failure,
                Some(2),
                Some("exit code 2"),
                1,
                2800,
                1200,
                Some(".trun/logs/17/build/test.log"),
            ),
            job_finished("build", Failure, Some("step test failed"), 2800, 2800),
            job_finished("deploy", Skipped, Some("needs build failed"), 2800, 0),
            Event::RunFinished {
                run_id: 17,
                status: Failure,
                at: T0 + 3200,
                duration_ms: 3200,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_github_then_tty_then_plain() {
        let env = |github_actions, stderr_is_tty| Environment {
            github_actions,
            stderr_is_tty,
            no_color: false,
        };
        let mode = |e| ReportOptions::resolve_in(ProgressMode::Auto, false, false, e).mode;
        assert_eq!(mode(env(true, true)), ProgressMode::Github);
        assert_eq!(mode(env(false, true)), ProgressMode::Tty);
        assert_eq!(mode(env(false, false)), ProgressMode::Plain);
        let explicit = ReportOptions::resolve_in(ProgressMode::Plain, true, false, env(true, true));
        assert_eq!(explicit.mode, ProgressMode::Plain);
        assert!(explicit.quiet);
    }

    #[test]
    fn color_needs_a_terminal_and_no_no_color() {
        let resolve = |stderr_is_tty, no_color| {
            let env = Environment {
                github_actions: false,
                stderr_is_tty,
                no_color,
            };
            ReportOptions::resolve_in(ProgressMode::Auto, false, false, env).color
        };
        assert!(resolve(true, false));
        assert!(!resolve(true, true));
        assert!(!resolve(false, false));
    }

    #[test]
    fn progress_mode_parses_its_names() {
        assert_eq!("github".parse(), Ok(ProgressMode::Github));
        assert_eq!(
            "fancy".parse::<ProgressMode>().unwrap_err().to_string(),
            "unknown progress mode `fancy`: expected one of auto, tty, plain, github, json"
        );
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(format_duration(0), "0ms");
        assert_eq!(format_duration(849), "849ms");
        assert_eq!(format_duration(59_999), "59.9s");
        assert_eq!(format_duration(65_000), "1m05s");
        assert_eq!(format_duration(7_380_000), "2h03m");
    }

    #[test]
    fn reasons_fall_back_to_the_exit_code() {
        assert_eq!(outcome_reason(Status::Success, Some(0), None), None);
        assert_eq!(
            outcome_reason(Status::Failure, Some(2), None).as_deref(),
            Some("exit code 2")
        );
        assert_eq!(
            outcome_reason(
                Status::Skipped,
                None,
                Some("skipped: if evaluated to false")
            )
            .as_deref(),
            Some("if evaluated to false")
        );
        assert_eq!(
            outcome_reason(Status::Cancelled, None, None).as_deref(),
            Some("cancelled")
        );
    }

    #[test]
    fn job_lines_name_unusual_endings() {
        assert_eq!(
            job_outcome_line("build", Status::Cancelled, None, 1000, false),
            "✗ build cancelled (1.0s)"
        );
        assert_eq!(
            job_outcome_line("build", Status::Failure, None, 1000, false),
            "✗ build (1.0s)"
        );
        assert_eq!(
            job_outcome_line(
                "lint",
                Status::Skipped,
                Some("skipped: if evaluated to false"),
                0,
                false
            ),
            "↷ lint skipped: if evaluated to false"
        );
    }

    #[test]
    fn reporter_follows_the_mode() {
        let render = |mode| {
            let buf = testing::SharedBuf::default();
            let opts = ReportOptions {
                mode,
                quiet: false,
                verbose: false,
                color: false,
            };
            let mut r = reporter(&opts, Box::new(buf.clone()));
            for ev in testing::sample_run() {
                r.event(&ev);
            }
            r.finish();
            buf.text()
        };
        assert!(render(ProgressMode::Json).starts_with(r#"{"event":"run_started""#));
        assert!(render(ProgressMode::Plain).starts_with("[build] ▶ compile\n"));
        assert!(render(ProgressMode::Github).starts_with("↷ lint / fmt: up to date\n"));
    }

    #[test]
    fn paint_colours_only_when_asked() {
        assert_eq!(paint("failure", Status::Failure, false), "failure");
        assert_eq!(
            paint("failure", Status::Failure, true),
            "\u{1b}[31mfailure\u{1b}[0m"
        );
    }
}
