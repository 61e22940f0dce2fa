//! The text and JSON of `trun history` and `trun show RUN`: tables, times,
//! durations, colours.

use super::HistoryError;
use crate::event::{Millis, Status};
use crate::state::{RunDetail, RunSummary, StepDetail};
use std::fmt::Write as _;
use time::{format_description::BorrowedFormatItem, macros::format_description, UtcOffset};

/// How to render: colours, and the time zone for wall-clock times.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub color: bool,
    pub offset: UtcOffset,
    /// Where each job ran, by key, when not in the run's own process: `trun
    /// worker` NAME (and the attempt, past the first).
    pub workers: std::collections::BTreeMap<String, String>,
}

impl RenderOptions {
    pub fn new(color: bool) -> RenderOptions {
        RenderOptions {
            color,
            offset: local_offset(),
            workers: Default::default(),
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
            Cell::plain(match (job.reason.as_deref(), opts.workers.get(&job.key)) {
                (None | Some(""), Some(w)) => format!("on {w}"),
                (Some(r), Some(w)) => format!("{r} (on {w})"),
                (r, None) => r.unwrap_or_default().to_string(),
            }),
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

pub(super) fn step_reason(step: &StepDetail) -> String {
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
        Status::Pending | Status::Queued => DIM,
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
