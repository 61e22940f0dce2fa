//! `GET /api/v1/runs/{id}/logs/{job}/{step}?follow=true`: a step's output
//! lines as the engine emits them, from the run's event log (the one SSE
//! reads), ending when the step (or its job, or the run) ends. The log file
//! is buffered while the step runs, so following reads events, not the file.
//!
//! Not a second log store: without `follow` the handler serves the recorded
//! file whole; a run whose events are no longer kept is not followed.

use super::error::ApiError;
use super::events::{EventLog, Next};
use super::runs::{RunEntry, Runs};
use axum::body::{Body, Bytes};
use std::sync::Arc;

/// A step's output lines from the run's event log, the newest attempt's.
struct Follow {
    log: Arc<EventLog>,
    version: tokio::sync::watch::Receiver<u64>,
    job: String,
    index: usize,
    next: usize,
    sent: u64,
    limit: u64,
}

/// The step `step` (its id or 1-based position) of job `job` of `entry`'s
/// run, followed; a 404 when the run has no such step, a 404 when the run's
/// events are no longer kept (its log file is served whole without `follow`).
pub async fn step_log(
    runs: Arc<Runs>,
    entry: Arc<RunEntry>,
    job: String,
    step: String,
    limit: u64,
) -> Result<Body, ApiError> {
    let run_id = entry.run_id;
    let store = runs.store.clone();
    let detail = tokio::task::spawn_blocking(move || store.run(run_id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(|| ApiError::not_found(format!("run {} has no record yet", entry.id)))?;
    let index = detail
        .jobs
        .iter()
        .find(|j| j.key == job)
        .and_then(|j| {
            j.steps
                .iter()
                .enumerate()
                .find(|(i, s)| s.id == step || (i + 1).to_string() == step)
                .map(|(i, _)| i)
        })
        .ok_or_else(|| {
            ApiError::not_found(format!("run {} has no step `{job}.{step}`", entry.id))
        })?;
    if entry.log.is_expired() {
        return Err(ApiError::not_found(format!(
            "the events of run {} are no longer kept; without `follow` its log file is served whole",
            entry.id
        )));
    }
    let follow = Follow {
        version: entry.log.subscribe(),
        next: entry.log.last_start(),
        log: entry.log.clone(),
        job,
        index,
        sent: 0,
        limit,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if f.sent >= f.limit {
                return None;
            }
            match f.log.get(f.next) {
                Next::Entry(e) => {
                    f.next += 1;
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&e.json) else {
                        continue;
                    };
                    let mine = v["job"] == f.job.as_str() && v["step"] == f.index;
                    match e.kind.as_str() {
                        "step_output" if mine => {
                            let mut line = v["line"].as_str().unwrap_or_default().to_string();
                            line.push('\n');
                            f.sent += line.len() as u64;
                            return Some((Ok::<_, std::io::Error>(Bytes::from(line)), f));
                        }
                        "step_finished" if mine => return None,
                        // The job ended without reaching the step.
                        "job_finished" if v["job"] == f.job.as_str() => return None,
                        _ => {}
                    }
                }
                Next::End => return None,
                Next::Wait => {
                    if f.version.changed().await.is_err() {
                        return None;
                    }
                }
            }
        }
    });
    Ok(Body::from_stream(stream))
}
