//! Looking back at recorded runs: the text and JSON of `trun history` and
//! `trun show RUN` (`render.rs`), and the resolution of `trun logs RUN
//! [JOB[.STEP]]` to log files (`logs.rs`).
//!
//! Everything here reads from the [`Store`](crate::state::Store) and returns
//! strings or paths; the CLI prints them. It is not the live reporter of a
//! running workflow (that is `report`, fed by events) and it never writes to
//! the store.

mod logs;
mod render;

pub use logs::{log_selection, logs, LogReadError, LogRef, SelectedLog, CACHED_LOG};
pub use render::{
    format_duration, format_time, history_json, local_offset, render_history, render_history_with,
    render_run, render_run_with, run_json, RenderOptions,
};

use crate::state::StateError;
use std::fmt::Write as _;

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

#[cfg(test)]
mod tests;
