//! Looking back at recorded runs: the text and JSON of `trun history` and
//! `trun show RUN`, and the resolution of `trun logs RUN [JOB[.STEP]]` to log
//! files.
//!
//! Everything here reads from the [`Store`] and returns strings or paths; the
//! CLI prints them. It is not the live reporter of a running workflow (that is
//! `report`, fed by events) and it never writes to the store.

use crate::event::{Millis, Status};
use crate::state::{JobDetail, RunDetail, RunSummary, StateError, StepDetail, Store};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use time::{format_description::BorrowedFormatItem, macros::format_description, UtcOffset};

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("there is no run {0} in this workspace's history; `trun history` lists the runs")]
    NoSuchRun(i64),
    #[error("run {run} has no job `{job}`; {}", hint(suggestion, known))]
    NoSuchJob {
        run: i64,
        job: String,
        suggestion: Option<String>,
        known: Vec<String>,
    },
    #[error(
        "job `{job}` of run {run} has no step `{step}`; {}",
        hint(suggestion, known)
    )]
    NoSuchStep {
        run: i64,
        job: String,
        step: String,
        suggestion: Option<String>,
        known: Vec<String>,
    },
    #[error("run {run} recorded no log for {what}")]
    NoLogs { run: i64, what: String },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

fn hint(suggestion: &Option<String>, known: &[String]) -> String {
    if let Some(s) = suggestion {
        return format!("did you mean `{s}`?");
    }
    const SHOWN: usize = 10;
    let mut list = known
        .iter()
        .take(SHOWN)
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if known.len() > SHOWN {
        let _ = write!(list, " and {} more", known.len() - SHOWN);
    }
    if list.is_empty() {
        "it has none".to_string()
    } else {
        format!("it has {list}")
    }
}

/// How to render: colours, and the time zone for wall-clock times.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    pub color: bool,
    pub offset: UtcOffset,
}

impl RenderOptions {
    pub fn new(color: bool) -> RenderOptions {
        RenderOptions {
            color,
            offset: local_offset(),
        }
    }
}

/// The local UTC offset, or UTC when it cannot be known safely. The `time`
/// crate refuses to read it once the process has several threads (reading the
/// zone races with `setenv`), so a CLI should call this early in `main`, before
/// starting a runtime, and pass the result on in [`RenderOptions`].
pub fn local_offset() -> UtcOffset {
    UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC)
}

/// `trun history`: one line per run, newest first as given.
pub fn render_history(runs: &[RunSummary], color: bool) -> String {
    render_history_with(runs, &RenderOptions::new(color))
}

pub fn render_history_with(runs: &[RunSummary], opts: &RenderOptions) -> String {
    if runs.is_empty() {
        return "no runs recorded yet\n".to_string();
    }
    let mut table = Table::new(
        opts.color,
        &["RUN", "STATUS", "STARTED", "DURATION", "WORKFLOW", "ARGS"],
    );
    for run in runs {
        table.row(vec![
            Cell::plain(run.id.to_string()),
            Cell::status(run.status),
            Cell::plain(format_time(run.started_at, opts.offset)),
            Cell::plain(run.duration_ms.map_or("-".into(), format_duration)),
            Cell::plain(run.workflow.clone()),
            Cell::plain(truncate(&command_line(&run.args), 60)),
        ]);
    }
    table.render()
}

/// `trun show RUN`: the run's header, then each job and its steps.
pub fn render_run(detail: &RunDetail, color: bool) -> String {
    render_run_with(detail, &RenderOptions::new(color))
}

pub fn render_run_with(detail: &RunDetail, opts: &RenderOptions) -> String {
    let run = &detail.run;
    let mut out = String::new();
    let status = paint(opts.color, status_color(run.status), run.status.as_str());
    let title = paint(opts.color, BOLD, &format!("run {}", run.id));
    let _ = writeln!(out, "{title} · {} · {status}", run.workflow);
    let _ = writeln!(out, "  workflow  {}", run.workflow_path);
    if !run.args.is_empty() {
        let _ = writeln!(out, "  command   {}", command_line(&run.args));
    }
    let took = match run.duration_ms {
        Some(ms) => format!(", took {}", format_duration(ms)),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "  started   {}{took}",
        format_time(run.started_at, opts.offset)
    );
    let _ = writeln!(out, "  process   pid {} on {}", run.pid, run.host);
    if detail.jobs.is_empty() {
        out.push_str("\nno jobs\n");
        return out;
    }
    out.push('\n');

    let mut table = Table::new(
        opts.color,
        &["JOB / STEP", "STATUS", "EXIT", "DURATION", "REASON"],
    );
    for job in &detail.jobs {
        table.row(vec![
            Cell::styled(truncate(&job.key, 48), BOLD),
            Cell::status(job.status),
            Cell::plain(String::new()),
            Cell::plain(job.duration_ms.map_or(String::new(), format_duration)),
            Cell::plain(job.reason.clone().unwrap_or_default()),
        ]);
        for (position, step) in job.steps.iter().enumerate() {
            table.row(vec![
                Cell::plain(format!("  {}", truncate(&step_label(position, step), 46))),
                Cell::status(step.status),
                Cell::plain(step.exit_code.map_or(String::new(), |c| c.to_string())),
                Cell::plain(step.duration_ms.map_or(String::new(), format_duration)),
                Cell::plain(step_reason(step)),
            ]);
        }
    }
    out.push_str(&table.render());
    out
}

/// `trun history --json`.
pub fn history_json(runs: &[RunSummary]) -> Result<String, HistoryError> {
    Ok(serde_json::to_string_pretty(runs)?)
}

/// `trun show RUN --json`.
pub fn run_json(detail: &RunDetail) -> Result<String, HistoryError> {
    Ok(serde_json::to_string_pretty(detail)?)
}

/// `trun logs RUN [JOB[.STEP]]`: the log files of a whole run, of one job (by
/// key, or by job id for every leg of a matrix), or of one step (by id or
/// 1-based position), each with a label like `build.compile`, in plan order.
/// Relative log paths are resolved against the workspace (the directory that
/// holds the store's `.trun`).
pub fn logs(
    store: &Store,
    run_id: i64,
    selector: Option<&str>,
) -> Result<Vec<(String, PathBuf)>, HistoryError> {
    let detail = store.run(run_id)?.ok_or(HistoryError::NoSuchRun(run_id))?;
    let selected = select(&detail, selector)?;
    let workspace = store
        .path()
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let mut found = Vec::new();
    for (job, steps) in &selected {
        for (position, step) in steps {
            if let Some(log) = &step.log_path {
                let label = format!("{}.{}", job.key, step_name_for_selector(*position, step));
                found.push((label, workspace.join(log)));
            }
        }
    }
    if found.is_empty() {
        let what = match selected.as_slice() {
            [(job, steps)] if steps.len() == 1 => {
                let (position, step) = steps[0];
                let why = step_reason(step);
                let why = if why.is_empty() {
                    step.status.to_string()
                } else {
                    format!("{}: {why}", step.status)
                };
                format!(
                    "{}.{} ({why})",
                    job.key,
                    step_name_for_selector(position, step)
                )
            }
            _ => selector.map_or("any step".to_string(), |s| format!("`{s}`")),
        };
        return Err(HistoryError::NoLogs { run: run_id, what });
    }
    Ok(found)
}

type Selected<'a> = Vec<(&'a JobDetail, Vec<(usize, &'a StepDetail)>)>;

fn select<'a>(detail: &'a RunDetail, selector: Option<&str>) -> Result<Selected<'a>, HistoryError> {
    let all_steps = |job: &'a JobDetail| job.steps.iter().enumerate().collect::<Vec<_>>();
    let Some(selector) = selector else {
        return Ok(detail.jobs.iter().map(|j| (j, all_steps(j))).collect());
    };
    let jobs = find_jobs(detail, selector);
    if !jobs.is_empty() {
        return Ok(jobs.into_iter().map(|j| (j, all_steps(j))).collect());
    }
    // Job keys of matrix legs may contain dots (`test (1.5)`), so try every
    // split, the last dot first.
    for (dot, _) in selector.rmatch_indices('.') {
        let (job_part, step_part) = (&selector[..dot], &selector[dot + 1..]);
        let jobs = find_jobs(detail, job_part);
        if jobs.is_empty() {
            continue;
        }
        let selected: Selected<'a> = jobs
            .iter()
            .filter_map(|job| find_step(job, step_part).map(|s| (*job, vec![s])))
            .collect();
        if selected.is_empty() {
            let known: Vec<String> = jobs[0]
                .steps
                .iter()
                .enumerate()
                .map(|(p, s)| step_name_for_selector(p, s))
                .collect();
            return Err(HistoryError::NoSuchStep {
                run: detail.run.id,
                job: job_part.to_string(),
                step: step_part.to_string(),
                suggestion: crate::diag::did_you_mean(step_part, known.iter().map(String::as_str)),
                known,
            });
        }
        return Ok(selected);
    }
    let mut known: Vec<String> = detail.jobs.iter().map(|j| j.key.clone()).collect();
    let mut candidates = known.clone();
    for job in &detail.jobs {
        if !candidates.contains(&job.job_id) {
            candidates.push(job.job_id.clone());
        }
        for (p, s) in job.steps.iter().enumerate() {
            candidates.push(format!("{}.{}", job.key, step_name_for_selector(p, s)));
        }
    }
    known.dedup();
    Err(HistoryError::NoSuchJob {
        run: detail.run.id,
        job: selector.to_string(),
        suggestion: crate::diag::did_you_mean(selector, candidates.iter().map(String::as_str)),
        known,
    })
}

/// A job by its key, else every leg of a matrix by the job id.
fn find_jobs<'a>(detail: &'a RunDetail, name: &str) -> Vec<&'a JobDetail> {
    if let Some(job) = detail.jobs.iter().find(|j| j.key == name) {
        return vec![job];
    }
    detail.jobs.iter().filter(|j| j.job_id == name).collect()
}

/// A step by id, else by 1-based position.
fn find_step<'a>(job: &'a JobDetail, name: &str) -> Option<(usize, &'a StepDetail)> {
    let by_id = job.steps.iter().enumerate().find(|(_, s)| s.id == name);
    by_id.or_else(|| {
        let n: usize = name.parse().ok()?;
        let position = n.checked_sub(1)?;
        job.steps.get(position).map(|s| (position, s))
    })
}

/// What a user types to select this step: its id (`step-N` when it has none).
fn step_name_for_selector(position: usize, step: &StepDetail) -> String {
    if step.id.is_empty() {
        format!("step-{}", position + 1)
    } else {
        step.id.clone()
    }
}

/// `1. cargo build`, plus the id when the user gave one.
fn step_label(position: usize, step: &StepDetail) -> String {
    let n = position + 1;
    let generated = step.id.is_empty() || step.id == format!("step-{n}");
    if generated || step.id == step.name {
        format!("{n}. {}", step.name)
    } else {
        format!("{n}. {} [{}]", step.name, step.id)
    }
}

fn step_reason(step: &StepDetail) -> String {
    let mut parts = Vec::new();
    if let Some(reason) = &step.reason {
        parts.push(reason.clone());
    }
    if step.attempts.len() > 1 {
        parts.push(format!("{} attempts", step.attempts.len()));
    }
    if step.continue_on_error && step.status == Status::Failure {
        parts.push("continue-on-error".to_string());
    }
    if let Some(v) = step.definition_version {
        parts.push(format!("definition v{v}"));
    }
    parts.join("; ")
}

const TIME_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

/// `2026-11-23 03:12:05` in the given offset.
pub fn format_time(ms: Millis, offset: UtcOffset) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.to_offset(offset).format(TIME_FORMAT).ok())
        .unwrap_or_else(|| "?".to_string())
}

/// `850ms`, `12.3s`, `2m05s`, `1h02m`: the crate's one formatter.
pub use crate::duration::format_ms as format_duration;

/// Words joined by spaces, quoting those a shell would split.
fn command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn truncate(text: &str, max: usize) -> String {
    let first_line = text.lines().next().unwrap_or("");
    if first_line.chars().count() <= max && first_line.len() == text.len() {
        return text.to_string();
    }
    let kept: String = first_line.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

const BOLD: &str = "1";
const DIM: &str = "2";

fn status_color(status: Status) -> &'static str {
    match status {
        Status::Success => "32",
        Status::Failure => "31",
        Status::Cancelled | Status::Interrupted => "35",
        Status::Running | Status::Waiting | Status::Paused => "36",
        Status::Skipped => "33",
        Status::Pending => DIM,
    }
}

fn paint(color: bool, code: &str, text: &str) -> String {
    if color && !text.is_empty() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

struct Cell {
    text: String,
    style: Option<&'static str>,
}

impl Cell {
    fn plain(text: String) -> Cell {
        Cell { text, style: None }
    }
    fn styled(text: String, style: &'static str) -> Cell {
        Cell {
            text,
            style: Some(style),
        }
    }
    fn status(status: Status) -> Cell {
        Cell::styled(status.as_str().to_string(), status_color(status))
    }
}

/// Left-aligned columns; widths from the plain text so colour codes do not
/// skew them; no trailing spaces.
struct Table {
    color: bool,
    header: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    fn new(color: bool, header: &[&str]) -> Table {
        Table {
            color,
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.text.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<Cell> = self
            .header
            .iter()
            .map(|h| Cell::styled(h.clone(), DIM))
            .collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width - cell.text.chars().count();
                match cell.style {
                    Some(style) => line.push_str(&paint(self.color, style, &cell.text)),
                    None => line.push_str(&cell.text),
                }
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, JobInfo, StepInfo};
    use crate::state::{db_path, AttemptDetail};
    use std::collections::BTreeMap;

    const T0: Millis = 1_795_403_525_000; // 2026-11-23 03:12:05 UTC

    fn utc(color: bool) -> RenderOptions {
        RenderOptions {
            color,
            offset: UtcOffset::UTC,
        }
    }

    fn summary(id: i64, status: Status, duration_ms: Option<u64>, args: &[&str]) -> RunSummary {
        RunSummary {
            id,
            workflow: "app".into(),
            workflow_path: "/ws/trun.yaml".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            status,
            started_at: T0 + id * 61_000,
            finished_at: duration_ms.map(|d| T0 + id * 61_000 + d as i64),
            duration_ms,
            pid: 4242,
            host: "box".into(),
        }
    }

    fn step(index: usize, id: &str, name: &str, status: Status) -> StepDetail {
        StepDetail {
            index,
            id: id.into(),
            name: name.into(),
            status,
            reason: None,
            exit_code: None,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            outputs: BTreeMap::new(),
            log_path: None,
            continue_on_error: false,
            definition_version: None,
            attempts: Vec::new(),
        }
    }

    fn attempt(n: u32, status: Status) -> AttemptDetail {
        AttemptDetail {
            attempt: n,
            status,
            exit_code: None,
            started_at: None,
            finished_at: None,
            reason: None,
        }
    }

    fn job(key: &str, status: Status, reason: Option<&str>, steps: Vec<StepDetail>) -> JobDetail {
        JobDetail {
            key: key.into(),
            job_id: key.split(' ').next().unwrap_or(key).into(),
            name: key.into(),
            matrix: BTreeMap::new(),
            needs: Vec::new(),
            status,
            reason: reason.map(str::to_string),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            outputs: BTreeMap::new(),
            steps,
        }
    }

    fn detail() -> RunDetail {
        let mut fetch = step(0, "fetch", "fetch", Status::Skipped);
        fetch.reason = Some("up to date".into());
        let mut compile = step(1, "compile", "cargo build --release", Status::Success);
        compile.exit_code = Some(0);
        compile.duration_ms = Some(12_345);
        compile.attempts = vec![attempt(1, Status::Failure), attempt(2, Status::Success)];
        let mut lint = step(2, "step-3", "cargo clippy", Status::Failure);
        lint.exit_code = Some(1);
        lint.duration_ms = Some(900);
        lint.reason = Some("exit code 1".into());
        lint.continue_on_error = true;
        let mut unit = step(0, "step-1", "cargo test", Status::Interrupted);
        unit.duration_ms = None;
        let mut build = job("build", Status::Success, None, vec![fetch, compile, lint]);
        build.duration_ms = Some(13_400);
        let test = job("test (1, linux)", Status::Interrupted, None, vec![unit]);
        let deploy = job(
            "deploy",
            Status::Skipped,
            Some("needs failed: test (1, linux)"),
            vec![step(0, "push", "push", Status::Skipped)],
        );
        RunDetail {
            run: summary(
                17,
                Status::Interrupted,
                None,
                &["trun", "deploy", "-i", "msg=a b"],
            ),
            jobs: vec![build, test, deploy],
        }
    }

    #[test]
    fn history_table_is_pinned() {
        let runs = [
            summary(18, Status::Running, None, &["trun"]),
            summary(17, Status::Failure, Some(4_200), &["trun", "build", "test"]),
            summary(3, Status::Success, Some(125_000), &["trun", "ci"]),
        ];
        assert_eq!(
            render_history_with(&runs, &utc(false)),
            "\
RUN  STATUS   STARTED              DURATION  WORKFLOW  ARGS
18   running  2026-11-23 03:30:23  -         app       trun
17   failure  2026-11-23 03:29:22  4.2s      app       trun build test
3    success  2026-11-23 03:15:08  2m05s     app       trun ci
"
        );
        assert_eq!(
            render_history_with(&[], &utc(false)),
            "no runs recorded yet\n"
        );
    }

    #[test]
    fn colour_does_not_change_the_layout() {
        let runs = [summary(17, Status::Failure, Some(4_200), &["trun"])];
        let coloured = render_history_with(&runs, &utc(true));
        assert!(coloured.contains("\x1b[31mfailure\x1b[0m"), "{coloured:?}");
        let stripped = regex_free_strip(&coloured);
        assert_eq!(stripped, render_history_with(&runs, &utc(false)));
    }

    fn regex_free_strip(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn show_is_pinned() {
        assert_eq!(
            render_run_with(&detail(), &utc(false)),
            "\
run 17 · app · interrupted
  workflow  /ws/trun.yaml
  command   trun deploy -i 'msg=a b'
  started   2026-11-23 03:29:22
  process   pid 4242 on box

JOB / STEP                            STATUS       EXIT  DURATION  REASON
build                                 success            13.4s
  1. fetch                            skipped                      up to date
  2. cargo build --release [compile]  success      0     12.3s     2 attempts
  3. cargo clippy                     failure      1     900ms     exit code 1; continue-on-error
test (1, linux)                       interrupted
  1. cargo test                       interrupted
deploy                                skipped                      needs failed: test (1, linux)
  1. push                             skipped
"
        );
    }

    #[test]
    fn show_json_round_trips() {
        let detail = detail();
        let json = run_json(&detail).expect("json");
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(value["id"], 17, "run fields are at the top level");
        assert_eq!(value["status"], "interrupted");
        assert_eq!(value["jobs"][0]["steps"][0]["reason"], "up to date");
        let back: RunDetail = serde_json::from_str(&json).expect("parse back");
        assert_eq!(back, detail);
        let list = history_json(std::slice::from_ref(&detail.run)).expect("json");
        let back: Vec<RunSummary> = serde_json::from_str(&list).expect("parse back");
        assert_eq!(back, [detail.run]);
    }

    #[test]
    fn durations_and_times_format_for_people() {
        assert_eq!(format_duration(0), "0ms");
        assert_eq!(format_duration(999), "999ms");
        assert_eq!(format_duration(1_000), "1.0s");
        assert_eq!(format_duration(59_949), "59.9s");
        assert_eq!(format_duration(60_000), "1m00s");
        assert_eq!(format_duration(3_725_000), "1h02m");
        let plus_two = UtcOffset::from_hms(2, 0, 0).expect("offset");
        assert_eq!(format_time(T0, plus_two), "2026-11-23 05:12:05");
    }

    /// A store with one run: build (fetch up to date, compile, test), and a
    /// matrix job `test` with two legs.
    fn store_with_logs() -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&db_path(dir.path())).expect("open");
        let info = |key: &str, job_id: &str, steps: &[&str]| JobInfo {
            key: key.into(),
            job_id: job_id.into(),
            name: key.into(),
            needs: Vec::new(),
            matrix: BTreeMap::new(),
            steps: steps
                .iter()
                .enumerate()
                .map(|(index, id)| StepInfo {
                    index,
                    id: id.to_string(),
                    name: id.to_string(),
                })
                .collect(),
        };
        let jobs = [
            info("build", "build", &["fetch", "compile", "step-3"]),
            info("test (1)", "test", &["step-1"]),
            info("test (2)", "test", &["step-1"]),
        ];
        let run = store
            .begin_run("app", "trun.yaml", &[], &jobs)
            .expect("begin");
        let mut events = Vec::new();
        for job in &jobs {
            for step in &job.steps {
                let up_to_date = step.id == "fetch";
                events.push(Event::StepFinished {
                    job: job.key.clone(),
                    step: step.index,
                    status: if up_to_date {
                        Status::Skipped
                    } else {
                        Status::Success
                    },
                    exit_code: (!up_to_date).then_some(0),
                    reason: up_to_date.then(|| "up to date".to_string()),
                    attempt: 1,
                    at: T0,
                    duration_ms: 1,
                    outputs: BTreeMap::new(),
                    continue_on_error: false,
                    log_path: (!up_to_date)
                        .then(|| format!(".trun/logs/{run}/{}/{}.log", job.key, step.index + 1)),
                });
            }
        }
        store.record(&events).expect("record");
        (dir, store, run)
    }

    fn labels(found: &[(String, PathBuf)]) -> Vec<&str> {
        found.iter().map(|(label, _)| label.as_str()).collect()
    }

    #[test]
    fn logs_resolve_runs_jobs_and_steps() {
        let (dir, store, run) = store_with_logs();
        let all = logs(&store, run, None).expect("all");
        assert_eq!(
            labels(&all),
            [
                "build.compile",
                "build.step-3",
                "test (1).step-1",
                "test (2).step-1"
            ]
        );
        assert_eq!(
            all[0].1,
            dir.path().join(format!(".trun/logs/{run}/build/2.log")),
            "relative paths are resolved against the workspace"
        );
        let build = logs(&store, run, Some("build")).expect("job");
        assert_eq!(labels(&build), ["build.compile", "build.step-3"]);
        let by_id = logs(&store, run, Some("build.compile")).expect("step by id");
        assert_eq!(labels(&by_id), ["build.compile"]);
        let by_position = logs(&store, run, Some("build.3")).expect("step by position");
        assert_eq!(labels(&by_position), ["build.step-3"]);
        let matrix = logs(&store, run, Some("test")).expect("every leg");
        assert_eq!(labels(&matrix), ["test (1).step-1", "test (2).step-1"]);
        let leg = logs(&store, run, Some("test (2).1")).expect("one leg");
        assert_eq!(labels(&leg), ["test (2).step-1"]);
    }

    #[test]
    fn logs_explain_what_they_cannot_find() {
        let (_dir, store, run) = store_with_logs();
        let message = |selector| {
            logs(&store, run, Some(selector))
                .expect_err("should fail")
                .to_string()
        };
        assert_eq!(
            message("buld"),
            format!("run {run} has no job `buld`; did you mean `build`?")
        );
        assert_eq!(
            message("buld.compile"),
            format!("run {run} has no job `buld.compile`; did you mean `build.compile`?")
        );
        assert_eq!(
            message("build.compil"),
            format!("job `build` of run {run} has no step `compil`; did you mean `compile`?")
        );
        assert_eq!(
            message("build.9"),
            format!(
                "job `build` of run {run} has no step `9`; it has `fetch`, `compile`, `step-3`"
            )
        );
        assert_eq!(
            message("zzzzzzzz"),
            format!("run {run} has no job `zzzzzzzz`; it has `build`, `test (1)`, `test (2)`")
        );
        assert_eq!(
            message("build.fetch"),
            format!("run {run} recorded no log for build.fetch (skipped: up to date)")
        );
        assert_eq!(
            logs(&store, run + 1, None).expect_err("no run").to_string(),
            format!(
                "there is no run {} in this workspace's history; `trun history` lists the runs",
                run + 1
            )
        );
    }
}
