//! Reading recorded runs back from SQLite: the rows `trun history`, `show`
//! and `logs` need. Nothing here writes.

use super::super::records::{AttemptDetail, JobDetail, RunDetail, RunSummary, StepDetail};
use super::super::{outputs_from_json, Result, StateError};
use crate::event::Status;
use rusqlite::{Connection, OptionalExtension, Row};
use std::collections::BTreeMap;

const RUN_COLUMNS: &str =
    "id, workflow, workflow_path, args, status, started_at, finished_at, duration_ms, pid, host";

/// The most recent runs, newest first.
pub(super) fn runs(conn: &Connection, limit: usize) -> Result<Vec<RunSummary>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?1"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map([limit], raw_run)?;
    rows.map(|row| row?.decode()).collect()
}

pub(super) fn latest_run_id(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row("SELECT MAX(id) FROM runs", [], |row| row.get(0))?)
}

pub(super) fn run(conn: &Connection, run_id: i64) -> Result<Option<RunDetail>> {
    let Some(raw) = conn
        .query_row(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
            [run_id],
            raw_run,
        )
        .optional()?
    else {
        return Ok(None);
    };
    let run = raw.decode()?;
    let mut attempts: BTreeMap<(String, i64), Vec<AttemptDetail>> = BTreeMap::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT job_key, step_idx, attempt, status, exit_code, started_at, finished_at, reason
                 FROM attempts WHERE run_id = ?1 ORDER BY job_key, step_idx, attempt",
        )?;
        let mut rows = stmt.query([run_id])?;
        while let Some(row) = rows.next()? {
            let key = (row.get::<_, String>(0)?, row.get::<_, i64>(1)?);
            attempts.entry(key).or_default().push(AttemptDetail {
                attempt: row.get(2)?,
                status: status(row, 3)?,
                exit_code: row.get(4)?,
                started_at: row.get(5)?,
                finished_at: row.get(6)?,
                reason: row.get(7)?,
            });
        }
    }

    let mut steps: BTreeMap<String, Vec<StepDetail>> = BTreeMap::new();
    {
        let mut stmt = conn.prepare_cached(
                "SELECT job_key, idx, step_id, name, status, reason, exit_code, started_at, finished_at,
                        duration_ms, outputs, log_path, continue_on_error, definition_version
                 FROM steps WHERE run_id = ?1 ORDER BY job_key, idx",
            )?;
        let mut rows = stmt.query([run_id])?;
        while let Some(row) = rows.next()? {
            let job_key: String = row.get(0)?;
            let idx: i64 = row.get(1)?;
            let step = StepDetail {
                index: usize::try_from(idx)
                    .map_err(|_| StateError::Corrupt(format!("step index {idx}")))?,
                id: row.get(2)?,
                name: row.get(3)?,
                status: status(row, 4)?,
                reason: row.get(5)?,
                exit_code: row.get(6)?,
                started_at: row.get(7)?,
                finished_at: row.get(8)?,
                duration_ms: duration(row, 9)?,
                outputs: outputs_from_json(&row.get::<_, String>(10)?)?,
                log_path: row.get(11)?,
                continue_on_error: row.get(12)?,
                definition_version: row.get(13)?,
                attempts: attempts.remove(&(job_key.clone(), idx)).unwrap_or_default(),
            };
            steps.entry(job_key).or_default().push(step);
        }
    }

    let mut jobs = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT key, job_id, name, matrix, needs, status, reason, started_at, finished_at,
                        duration_ms, outputs
                 FROM jobs WHERE run_id = ?1 ORDER BY position",
        )?;
        let mut rows = stmt.query([run_id])?;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let matrix: String = row.get(3)?;
            let needs: String = row.get(4)?;
            jobs.push(JobDetail {
                job_id: row.get(1)?,
                name: row.get(2)?,
                matrix: serde_json::from_str(&matrix)
                    .map_err(|e| StateError::Corrupt(format!("matrix {matrix:?}: {e}")))?,
                needs: serde_json::from_str(&needs)
                    .map_err(|e| StateError::Corrupt(format!("needs {needs:?}: {e}")))?,
                status: status(row, 5)?,
                reason: row.get(6)?,
                started_at: row.get(7)?,
                finished_at: row.get(8)?,
                duration_ms: duration(row, 9)?,
                outputs: outputs_from_json(&row.get::<_, String>(10)?)?,
                steps: steps.remove(&key).unwrap_or_default(),
                key,
            });
        }
    }
    Ok(Some(RunDetail { run, jobs }))
}

/// A `runs` row before its JSON and status columns are decoded, so that the
/// decoding errors can be ours rather than rusqlite's.
struct RawRun {
    summary: RunSummary,
    args: String,
    status: String,
}

impl RawRun {
    fn decode(mut self) -> Result<RunSummary> {
        self.summary.args = serde_json::from_str(&self.args)
            .map_err(|e| StateError::Corrupt(format!("run args {:?}: {e}", self.args)))?;
        self.summary.status = parse_status(&self.status)?;
        Ok(self.summary)
    }
}

fn raw_run(row: &Row<'_>) -> rusqlite::Result<RawRun> {
    Ok(RawRun {
        summary: RunSummary {
            id: row.get(0)?,
            workflow: row.get(1)?,
            workflow_path: row.get(2)?,
            args: Vec::new(),
            status: Status::Pending,
            started_at: row.get(5)?,
            finished_at: row.get(6)?,
            duration_ms: row.get::<_, Option<i64>>(7)?.map(|d| d.max(0) as u64),
            pid: row.get(8)?,
            host: row.get(9)?,
        },
        args: row.get(3)?,
        status: row.get(4)?,
    })
}

fn status(row: &Row<'_>, idx: usize) -> Result<Status> {
    parse_status(&row.get::<_, String>(idx)?)
}

fn parse_status(text: &str) -> Result<Status> {
    Status::parse(text).ok_or_else(|| StateError::Corrupt(format!("status {text:?}")))
}

fn duration(row: &Row<'_>, idx: usize) -> Result<Option<u64>> {
    Ok(row.get::<_, Option<i64>>(idx)?.map(|d| d.max(0) as u64))
}
