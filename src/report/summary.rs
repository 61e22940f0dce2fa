//! The run as the reporters remember it, and the closing summary table.
//!
//! [`RunSummary`] folds events into per-job and per-step records, starting from
//! the plan in `RunStarted`, so every reporter can name a step from its index
//! and the terminal modes can end with one table of every job and step. It is
//! not the state store: it keeps only what a report shows, in memory, for one
//! run.

use super::{format_duration, outcome_reason, paint};
use crate::event::{Annotation, Event, Status};
use console::measure_text_width;
use std::collections::HashMap;

/// What is known about one step so far.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// Display name; the engine's rendered name once the step has started.
    pub name: String,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    /// The attempt that last started or finished (1-based).
    pub attempt: u32,
    pub duration_ms: Option<u64>,
    pub continue_on_error: bool,
    pub log_path: Option<String>,
}

/// What is known about one job so far.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub key: String,
    pub name: String,
    pub status: Status,
    pub reason: Option<String>,
    pub duration_ms: Option<u64>,
    /// `JobStarted` arrived: a job skipped before starting has no step rows.
    pub started: bool,
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    run_id: Option<i64>,
    jobs: Vec<JobRecord>,
    by_key: HashMap<String, usize>,
    status: Option<Status>,
    duration_ms: Option<u64>,
    /// `::error::` and friends, in arrival order, with (job, step).
    annotations: Vec<(String, usize, Annotation)>,
    /// `$GITHUB_STEP_SUMMARY` of each step that wrote one, with (job, step).
    step_summaries: Vec<(String, usize, String)>,
}

/// How many annotations the closing summary lists; the rest are counted.
const MAX_LISTED: usize = 50;

impl RunSummary {
    pub fn new() -> RunSummary {
        RunSummary::default()
    }

    pub fn run_id(&self) -> Option<i64> {
        self.run_id
    }

    /// Jobs in plan order.
    pub fn jobs(&self) -> &[JobRecord] {
        &self.jobs
    }

    pub fn job(&self, key: &str) -> Option<&JobRecord> {
        self.by_key.get(key).map(|&i| &self.jobs[i])
    }

    /// The step's display name, or `step-N` (1-based, as the plan names a step
    /// without an id) when events arrive for a step the plan did not list.
    pub fn step_name(&self, job: &str, step: usize) -> String {
        self.job(job)
            .and_then(|j| j.steps.get(step))
            .map(|s| s.name.clone())
            .unwrap_or_else(|| format!("step-{}", step + 1))
    }

    /// Display width of the widest job key, to line up per-job output.
    pub fn key_width(&self) -> usize {
        self.jobs
            .iter()
            .map(|j| measure_text_width(&j.key))
            .max()
            .unwrap_or(0)
    }

    pub fn record(&mut self, ev: &Event) {
        match ev {
            Event::RunStarted { run_id, jobs, .. } => {
                self.run_id = Some(*run_id);
                for info in jobs {
                    let job = self.job_mut(&info.key);
                    job.name = info.name.clone();
                    job.steps = info.steps.iter().map(|s| new_step(&s.name)).collect();
                }
            }
            Event::JobWaiting { job, .. } => {
                self.job_mut(job).status = Status::Waiting;
            }
            Event::JobStarted { job, .. } => {
                let record = self.job_mut(job);
                record.status = Status::Running;
                record.started = true;
            }
            Event::StepStarted {
                job,
                step,
                name,
                attempt,
                ..
            } => {
                let record = self.step_mut(job, *step);
                record.name = name.clone();
                record.status = Status::Running;
                record.attempt = *attempt;
            }
            Event::StepOutput { .. } | Event::StepRetrying { .. } | Event::StepGroup { .. } => {}
            Event::Annotation {
                job,
                step,
                annotation,
            } => self
                .annotations
                .push((job.clone(), *step, annotation.clone())),
            Event::StepSummary {
                job,
                step,
                markdown,
            } => self
                .step_summaries
                .push((job.clone(), *step, markdown.clone())),
            Event::StepFinished {
                job,
                step,
                status,
                exit_code,
                reason,
                attempt,
                duration_ms,
                continue_on_error,
                log_path,
                ..
            } => {
                let record = self.step_mut(job, *step);
                record.status = *status;
                record.exit_code = *exit_code;
                record.reason = reason.clone();
                record.attempt = *attempt;
                record.duration_ms = Some(*duration_ms);
                record.continue_on_error = *continue_on_error;
                record.log_path = log_path.clone();
            }
            Event::JobFinished {
                job,
                status,
                reason,
                duration_ms,
                ..
            } => {
                let record = self.job_mut(job);
                record.status = *status;
                record.reason = reason.clone();
                record.duration_ms = Some(*duration_ms);
            }
            Event::RunFinished {
                run_id,
                status,
                duration_ms,
                ..
            } => {
                self.run_id = Some(*run_id);
                self.status = Some(*status);
                self.duration_ms = Some(*duration_ms);
            }
        }
    }

    /// A job the plan did not announce still gets a record, so a reporter never
    /// loses events over a missing `RunStarted`.
    fn job_mut(&mut self, key: &str) -> &mut JobRecord {
        let index = match self.by_key.get(key) {
            Some(&i) => i,
            None => {
                self.jobs.push(JobRecord {
                    key: key.to_string(),
                    name: key.to_string(),
                    status: Status::Pending,
                    reason: None,
                    duration_ms: None,
                    started: false,
                    steps: Vec::new(),
                });
                self.by_key.insert(key.to_string(), self.jobs.len() - 1);
                self.jobs.len() - 1
            }
        };
        &mut self.jobs[index]
    }

    fn step_mut(&mut self, job: &str, step: usize) -> &mut StepRecord {
        let steps = &mut self.job_mut(job).steps;
        while steps.len() <= step {
            let name = format!("step-{}", steps.len() + 1);
            steps.push(new_step(&name));
        }
        &mut steps[step]
    }

    /// The closing table: one row per step of every job that ran, one row per
    /// job that never started, then a count line. Columns line up by display
    /// width, so wide characters in names and colour codes do not skew them.
    pub fn render(&self, color: bool) -> String {
        let mut rows: Vec<Row> = Vec::new();
        for job in &self.jobs {
            let touched = job.started || job.steps.iter().any(|s| s.status != Status::Pending);
            if !touched || job.steps.is_empty() {
                rows.push(Row {
                    job: job.key.clone(),
                    step: "-".to_string(),
                    status: job.status,
                    status_word: job.status.as_str().to_string(),
                    duration: String::new(),
                    reason: outcome_reason(job.status, None, job.reason.as_deref())
                        .unwrap_or_default(),
                });
                continue;
            }
            for step in &job.steps {
                rows.push(step_row(job, step));
            }
        }

        let header = Row {
            job: "JOB".to_string(),
            step: "STEP".to_string(),
            status: Status::Pending,
            status_word: "STATUS".to_string(),
            duration: "DURATION".to_string(),
            reason: String::new(),
        };
        let width = |f: fn(&Row) -> &str| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|r| measure_text_width(f(r)))
                .max()
                .unwrap_or(0)
        };
        let widths = [
            width(|r| &r.job),
            width(|r| &r.step),
            width(|r| &r.status_word),
            width(|r| &r.duration),
        ];

        let mut out = String::new();
        let header_line = format_row(&header, widths, false);
        if color {
            out.push_str(
                &console::style(header_line)
                    .force_styling(true)
                    .dim()
                    .to_string(),
            );
        } else {
            out.push_str(&header_line);
        }
        out.push('\n');
        for row in &rows {
            out.push_str(&format_row(row, widths, color));
            out.push('\n');
        }
        out.push_str(&self.count_line(color));
        out.push('\n');
        out.push_str(&self.render_notes());
        out
    }

    /// Annotations the steps made, as `file:line:col: error: message`.
    pub fn annotations(&self) -> &[(String, usize, Annotation)] {
        &self.annotations
    }

    /// After the table: the annotations (`file:line:col: error: message
    /// (job / step)`) and each step summary's Markdown under its step's name.
    /// Empty when the steps made neither.
    pub fn render_notes(&self) -> String {
        let label = |job: &str, step: usize| format!("{job} / {}", self.step_name(job, step));
        let annotations: Vec<(String, &Annotation)> = self
            .annotations
            .iter()
            .map(|(j, s, a)| (label(j, *s), a))
            .collect();
        let summaries: Vec<(String, &str)> = self
            .step_summaries
            .iter()
            .map(|(j, s, m)| (label(j, *s), m.as_str()))
            .collect();
        notes(&annotations, &summaries, MAX_LISTED)
    }
}

/// Annotations (`file:line:col: error: message (job / step)`), at most
/// `max` of them, then each step summary under its step's label.
fn notes(
    annotations: &[(String, &Annotation)],
    summaries: &[(String, &str)],
    max: usize,
) -> String {
    let mut out = String::new();
    if !annotations.is_empty() {
        out.push_str("\nannotations:\n");
        for (label, a) in annotations.iter().take(max) {
            let text = a.render().replace('\n', "\n    ");
            out.push_str(&format!("  {text} ({label})\n"));
        }
        if annotations.len() > max {
            out.push_str(&format!(
                "  … and {} more (trun show lists them all)\n",
                annotations.len() - max
            ));
        }
    }
    for (label, markdown) in summaries {
        out.push_str(&format!("\n── summary of {label} ──\n{markdown}"));
        if !markdown.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// For `trun show`: the annotations and step summaries a recorded run's
/// steps left beside their logs (`NN-step.annotations.jsonl`,
/// `NN-step.summary.md`), as the closing summary showed them.
pub fn stored_notes(detail: &crate::state::RunDetail) -> String {
    let mut annotations = Vec::new();
    let mut summaries = Vec::new();
    for job in &detail.jobs {
        for step in &job.steps {
            let Some(log) = &step.log_path else { continue };
            let log = std::path::Path::new(log);
            let label = format!("{} / {}", job.key, step.name);
            if let Ok(text) = std::fs::read_to_string(log.with_extension("annotations.jsonl")) {
                for line in text.lines() {
                    if let Ok(a) = serde_json::from_str::<Annotation>(line) {
                        annotations.push((label.clone(), a));
                    }
                }
            }
            if let Ok(md) = std::fs::read_to_string(log.with_extension("summary.md")) {
                summaries.push((label, md));
            }
        }
    }
    let annotations: Vec<(String, &Annotation)> =
        annotations.iter().map(|(l, a)| (l.clone(), a)).collect();
    let summaries: Vec<(String, &str)> = summaries
        .iter()
        .map(|(l, m)| (l.clone(), m.as_str()))
        .collect();
    notes(&annotations, &summaries, usize::MAX)
}

impl RunSummary {
    /// `run 17: 1 job succeeded, 1 failed, 1 skipped in 3.2s`.
    fn count_line(&self, color: bool) -> String {
        let count = |pred: fn(Status) -> bool| self.jobs.iter().filter(|j| pred(j.status)).count();
        let succeeded = count(|s| s == Status::Success);
        let failed = count(|s| s == Status::Failure);
        let skipped = count(|s| s == Status::Skipped);
        let cancelled = count(|s| matches!(s, Status::Cancelled | Status::Interrupted));
        let unfinished = count(|s| !s.is_final());

        let noun = if succeeded == 1 { "job" } else { "jobs" };
        let mut parts = vec![paint(
            &format!("{succeeded} {noun} succeeded"),
            Status::Success,
            color && succeeded > 0,
        )];
        for (n, word, status) in [
            (failed, "failed", Status::Failure),
            (skipped, "skipped", Status::Skipped),
            (cancelled, "cancelled", Status::Cancelled),
            (unfinished, "did not finish", Status::Pending),
        ] {
            if n > 0 {
                parts.push(paint(&format!("{n} {word}"), status, color));
            }
        }
        let mut line = String::new();
        if let Some(id) = self.run_id {
            line.push_str(&format!("run {id}: "));
        }
        line.push_str(&parts.join(", "));
        if let Some(ms) = self.duration_ms {
            line.push_str(&format!(" in {}", format_duration(ms)));
        }
        if let Some(status @ (Status::Cancelled | Status::Interrupted)) = self.status {
            line.push_str(&format!(" ({status})"));
        }
        line
    }
}

fn new_step(name: &str) -> StepRecord {
    StepRecord {
        name: name.to_string(),
        status: Status::Pending,
        exit_code: None,
        reason: None,
        attempt: 0,
        duration_ms: None,
        continue_on_error: false,
        log_path: None,
    }
}

struct Row {
    job: String,
    step: String,
    /// Picks the colour of `status_word`.
    status: Status,
    status_word: String,
    duration: String,
    reason: String,
}

fn step_row(job: &JobRecord, step: &StepRecord) -> Row {
    // A step still marked running when the job ended was stopped with it.
    let status = match step.status {
        Status::Running if job.status.is_final() => job.status,
        other => other,
    };
    let status_word = match status {
        Status::Pending => "not run".to_string(),
        other => other.as_str().to_string(),
    };
    let duration = match (status, step.duration_ms) {
        (Status::Skipped, _) | (_, None) => String::new(),
        (_, Some(ms)) => format_duration(ms),
    };
    let mut reason = if status == Status::Pending {
        String::new()
    } else {
        outcome_reason(status, step.exit_code, step.reason.as_deref()).unwrap_or_default()
    };
    if step.continue_on_error && status == Status::Failure {
        reason.push_str(", continue-on-error");
    }
    if step.attempt > 1 {
        reason = if reason.is_empty() {
            format!("attempt {}", step.attempt)
        } else {
            format!("{reason} (attempt {})", step.attempt)
        };
    }
    Row {
        job: job.key.clone(),
        step: step.name.clone(),
        status,
        status_word,
        duration,
        reason,
    }
}

fn format_row(row: &Row, widths: [usize; 4], color: bool) -> String {
    let pad = |text: &str, width: usize| " ".repeat(width.saturating_sub(measure_text_width(text)));
    let mut line = String::new();
    line.push_str(&row.job);
    line.push_str(&pad(&row.job, widths[0]));
    line.push_str("  ");
    line.push_str(&row.step);
    line.push_str(&pad(&row.step, widths[1]));
    line.push_str("  ");
    line.push_str(&paint(&row.status_word, row.status, color));
    line.push_str(&pad(&row.status_word, widths[2]));
    line.push_str("  ");
    // Durations right-aligned so their decimal points line up.
    line.push_str(&pad(&row.duration, widths[3]));
    line.push_str(&row.duration);
    line.push_str("  ");
    line.push_str(&row.reason);
    line.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::{aborted_run, sample_run, SAMPLE_TABLE};

    fn summary_of(events: &[Event]) -> RunSummary {
        let mut summary = RunSummary::new();
        for ev in events {
            summary.record(ev);
        }
        summary
    }

    #[test]
    fn renders_every_job_and_step() {
        let summary = summary_of(&sample_run());
        assert_eq!(summary.render(false), SAMPLE_TABLE);
    }

    #[test]
    fn colour_does_not_shift_columns() {
        let summary = summary_of(&sample_run());
        let plain = summary.render(false);
        let coloured = summary.render(true);
        assert_ne!(plain, coloured);
        assert!(coloured.contains("\u{1b}[31mfailure\u{1b}[0m"));
        assert_eq!(console::strip_ansi_codes(&coloured), plain);
    }

    #[test]
    fn wide_names_align_by_display_width() {
        let mut events = sample_run();
        if let Event::RunStarted { jobs, .. } = &mut events[0] {
            jobs[2].key = "部署".to_string();
        }
        for ev in &mut events {
            if let Event::JobFinished { job, .. } = ev {
                if job == "deploy" {
                    *job = "部署".to_string();
                }
            }
        }
        let text = summary_of(&events).render(false);
        let deploy = text.lines().find(|l| l.starts_with("部署")).unwrap();
        let build = text.lines().find(|l| l.starts_with("build")).unwrap();
        // "部署" is four columns wide; its step column starts where build's does.
        assert_eq!(measure_text_width(&deploy[..deploy.find('-').unwrap()]), 7);
        assert_eq!(build.find("compile"), Some(7));
    }

    #[test]
    fn an_aborted_run_shows_what_was_running_and_what_never_ran() {
        let summary = summary_of(&aborted_run());
        assert_eq!(
            summary.render(false),
            "\
JOB     STEP     STATUS   DURATION
build   compile  success     800ms  attempt 2
build   test     running
lint    fmt      skipped            up to date
lint    clippy   success     700ms
deploy  -        pending
run 17: 1 job succeeded, 2 did not finish
"
        );
    }

    #[test]
    fn steps_are_named_from_the_plan() {
        let summary = summary_of(&sample_run()[..1]);
        assert_eq!(summary.step_name("build", 1), "test");
        assert_eq!(summary.step_name("build", 7), "step-8");
        assert_eq!(summary.step_name("nope", 0), "step-1");
        assert_eq!(summary.key_width(), 6);
    }
}
