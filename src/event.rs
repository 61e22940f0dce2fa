//! Events the engine emits while a run progresses.
//!
//! The engine never prints and never writes the state store directly: it sends
//! [`Event`]s, and consumers (the terminal reporters, the JSON-lines reporter,
//! the state recorder) turn them into output and rows. This module is the
//! contract between them; it holds data only.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest output line an event carries whole; longer ones are split into pieces this
/// size, so output without newlines is never buffered whole (local steps and Docker execs
/// alike).
pub const MAX_LINE: usize = 64 * 1024;

/// Lifecycle state of a run, a job or a step. One vocabulary for all three, the
/// same words in the state store, in `--json` output and on the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    /// A run waiting for its turn (`trun serve`'s queue).
    Queued,
    Waiting,
    Running,
    Success,
    Failure,
    Skipped,
    Cancelled,
    Paused,
    /// The process recording the run died (SIGKILL, power loss) before it finished.
    Interrupted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Queued => "queued",
            Status::Waiting => "waiting",
            Status::Running => "running",
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Skipped => "skipped",
            Status::Cancelled => "cancelled",
            Status::Paused => "paused",
            Status::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "queued" => Status::Queued,
            "waiting" => Status::Waiting,
            "running" => Status::Running,
            "success" => Status::Success,
            "failure" => Status::Failure,
            "skipped" => Status::Skipped,
            "cancelled" => Status::Cancelled,
            "paused" => Status::Paused,
            "interrupted" => Status::Interrupted,
            _ => return None,
        })
    }

    /// True once nothing more will happen to the thing carrying this status.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Success
                | Status::Failure
                | Status::Skipped
                | Status::Cancelled
                | Status::Interrupted
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A job of the plan as the reporters and the state store see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInfo {
    /// Unique key of the job instance in this run, e.g. `build` or `test (1, linux)`.
    pub key: String,
    /// The job's id in the workflow file (`test` for every leg of its matrix).
    pub job_id: String,
    /// Display name (`name:` or the key).
    pub name: String,
    pub needs: Vec<String>,
    pub matrix: BTreeMap<String, serde_json::Value>,
    pub steps: Vec<StepInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepInfo {
    pub index: usize,
    /// The step's `id:` or `step-N` (1-based) when it has none.
    pub id: String,
    /// Display name: `name:`, else the first line of `run:`, else `uses:`.
    pub name: String,
}

/// One thing that happened during a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: i64,
        workflow: String,
        at: Millis,
        jobs: Vec<JobInfo>,
    },
    JobStarted {
        job: String,
        at: Millis,
    },
    /// A ready job waits for a slot of its concurrency group (`reason` names
    /// the group and who holds it); it starts (`JobStarted`) once it has one.
    JobWaiting {
        job: String,
        reason: String,
        at: Millis,
    },
    StepStarted {
        job: String,
        step: usize,
        name: String,
        attempt: u32,
        at: Millis,
    },
    StepOutput {
        job: String,
        step: usize,
        stream: Stream,
        line: String,
    },
    StepRetrying {
        job: String,
        step: usize,
        attempt: u32,
        delay_ms: u64,
        reason: String,
        /// Exit code of the attempt that failed, when it exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    StepFinished {
        job: String,
        step: usize,
        status: Status,
        exit_code: Option<i32>,
        /// Why it ended this way: `exit code 2`, `timed out after 10s`,
        /// `skipped: if evaluated to false`, `up to date`.
        reason: Option<String>,
        attempt: u32,
        at: Millis,
        duration_ms: u64,
        outputs: BTreeMap<String, String>,
        /// `continue-on-error` turned a failure into a pass for the job.
        continue_on_error: bool,
        log_path: Option<String>,
    },
    JobFinished {
        job: String,
        status: Status,
        reason: Option<String>,
        at: Millis,
        duration_ms: u64,
        outputs: BTreeMap<String, String>,
    },
    RunFinished {
        run_id: i64,
        status: Status,
        at: Millis,
        duration_ms: u64,
    },
    /// A step printed `::group::TITLE` (`title` is `Some`) or `::endgroup::`.
    StepGroup {
        job: String,
        step: usize,
        title: Option<String>,
    },
    /// A step printed `::error`, `::warning` or `::notice`, or trun warns
    /// about a workflow command (a deprecated one, one refused).
    Annotation {
        job: String,
        step: usize,
        #[serde(flatten)]
        annotation: Annotation,
    },
    /// What a step wrote to `$GITHUB_STEP_SUMMARY` (Markdown), once it ended.
    StepSummary {
        job: String,
        step: usize,
        markdown: String,
    },
}

/// How serious an [`Annotation`] is: GitHub's three levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnotationLevel {
    Error,
    Warning,
    Notice,
}

impl AnnotationLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnotationLevel::Error => "error",
            AnnotationLevel::Warning => "warning",
            AnnotationLevel::Notice => "notice",
        }
    }
}

/// A message about a place in a file, as `::error file=a.rs,line=3::msg` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    pub level: AnnotationLevel,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub col: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_line: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_column: Option<u64>,
}

impl Annotation {
    /// `file:line:col: error: title: message`, with what is known of the place.
    pub fn render(&self) -> String {
        let mut place = String::new();
        if let Some(f) = &self.file {
            place.push_str(f);
            if let Some(l) = self.line {
                place.push_str(&format!(":{l}"));
                if let Some(c) = self.col {
                    place.push_str(&format!(":{c}"));
                }
            }
            place.push_str(": ");
        }
        let title = self
            .title
            .as_deref()
            .map(|t| format!("{t}: "))
            .unwrap_or_default();
        format!("{place}{}: {title}{}", self.level.as_str(), self.message)
    }
}

impl Event {
    /// Replaces every value `masker` holds in the event's text (output
    /// lines, names, reasons, outputs) with `***`.
    pub fn mask(&mut self, masker: &crate::secrets::Masker) {
        if masker.is_empty() {
            return;
        }
        let m = |s: &mut String| masker.mask_in_place(s);
        let map = |o: &mut BTreeMap<String, String>| {
            if o.iter()
                .any(|(k, v)| masker.reveals(k) || masker.reveals(v))
            {
                *o = std::mem::take(o)
                    .into_iter()
                    .map(|(k, v)| (masker.mask(&k).into_owned(), masker.mask(&v).into_owned()))
                    .collect();
            }
        };
        match self {
            Event::RunStarted { workflow, jobs, .. } => {
                m(workflow);
                for j in jobs {
                    m(&mut j.name);
                    for s in &mut j.steps {
                        m(&mut s.name);
                    }
                }
            }
            Event::JobStarted { .. } | Event::RunFinished { .. } => {}
            Event::StepStarted { name, .. } => m(name),
            Event::StepOutput { line, .. } => m(line),
            Event::StepRetrying { reason, .. } | Event::JobWaiting { reason, .. } => m(reason),
            Event::StepFinished {
                reason, outputs, ..
            } => {
                if let Some(r) = reason {
                    m(r);
                }
                map(outputs);
            }
            Event::JobFinished {
                reason, outputs, ..
            } => {
                if let Some(r) = reason {
                    m(r);
                }
                map(outputs);
            }
            Event::StepGroup { title, .. } => {
                if let Some(t) = title {
                    m(t);
                }
            }
            Event::Annotation { annotation: a, .. } => {
                m(&mut a.message);
                for s in [&mut a.title, &mut a.file].into_iter().flatten() {
                    m(s);
                }
            }
            Event::StepSummary { markdown, .. } => m(markdown),
        }
    }
}
