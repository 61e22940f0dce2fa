//! Recording runs in SQLite: `begin_run`, event batches, `mark_run`, and
//! marking runs whose process died as interrupted.

use super::super::process;
use super::super::{to_json, Result, StateError};
use crate::event::{now_ms, Event, JobInfo, Millis, Status};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

pub(super) fn begin_run(
    conn: &mut Connection,
    workflow_name: &str,
    workflow_path: &str,
    args: &[String],
    jobs: &[JobInfo],
) -> Result<i64> {
    let tx = conn.transaction()?;
    let run_id = insert_run(
        &tx,
        workflow_name,
        workflow_path,
        args,
        jobs,
        Status::Running,
    )?;
    tx.commit()?;
    Ok(run_id)
}

/// Inserts a run with `status` and every job and step of its plan pending,
/// and records its first transition.
pub(super) fn insert_run(
    tx: &Transaction<'_>,
    workflow_name: &str,
    workflow_path: &str,
    args: &[String],
    jobs: &[JobInfo],
    status: Status,
) -> Result<i64> {
    let me = process::ProcessId::current();
    let now = now_ms();
    tx.execute(
        "INSERT INTO runs (workflow, workflow_path, args, status, started_at, pid, pid_start, host)
         VALUES (?1, ?2, ?3, ?8, ?4, ?5, ?6, ?7)",
        params![
            workflow_name,
            workflow_path,
            to_json(&args)?,
            now,
            me.pid,
            me.start,
            me.host,
            status.as_str()
        ],
    )?;
    let run_id = tx.last_insert_rowid();
    {
        let mut job_stmt = tx.prepare_cached(
            "INSERT INTO jobs (run_id, key, position, job_id, name, matrix, needs, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')",
        )?;
        let mut step_stmt = tx.prepare_cached(
            "INSERT INTO steps (run_id, job_key, idx, step_id, name, status)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
        )?;
        for (position, job) in jobs.iter().enumerate() {
            job_stmt.execute(params![
                run_id,
                job.key,
                position as i64,
                job.job_id,
                job.name,
                to_json(&job.matrix)?,
                to_json(&job.needs)?,
            ])?;
            for step in &job.steps {
                step_stmt.execute(params![
                    run_id,
                    job.key,
                    step.index as i64,
                    step.id,
                    step.name
                ])?;
            }
        }
    }
    log_transition(tx, run_id, None, None, status, now, None)?;
    Ok(run_id)
}

/// Appends one transition of a run (`job` is `None`) or of one of its jobs.
pub(super) fn log_transition(
    tx: &Transaction<'_>,
    run_id: i64,
    job: Option<&str>,
    from: Option<Status>,
    to: Status,
    at: Millis,
    reason: Option<&str>,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO transitions (run_id, job, from_status, to_status, at, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        run_id,
        job,
        from.map(Status::as_str),
        to.as_str(),
        at,
        reason
    ])?;
    Ok(())
}

/// The status of a run (`job` is `None`) or of one of its jobs.
pub(super) fn status_of(
    tx: &Transaction<'_>,
    run_id: i64,
    job: Option<&str>,
) -> Result<Option<Status>> {
    let text: Option<String> = match job {
        None => tx
            .prepare_cached("SELECT status FROM runs WHERE id = ?1")?
            .query_row([run_id], |r| r.get(0))
            .optional()?,
        Some(job) => tx
            .prepare_cached("SELECT status FROM jobs WHERE run_id = ?1 AND key = ?2")?
            .query_row(params![run_id, job], |r| r.get(0))
            .optional()?,
    };
    text.map(|t| Status::parse(&t).ok_or_else(|| StateError::Corrupt(format!("status {t:?}"))))
        .transpose()
}

pub(super) fn record(conn: &mut Connection, run_id: i64, events: &[Event]) -> Result<()> {
    let tx = conn.transaction()?;
    let known: Option<i64> = tx
        .prepare_cached("SELECT 1 FROM runs WHERE id = ?1")?
        .query_row([run_id], |r| r.get(0))
        .optional()?;
    if known.is_none() {
        return Err(StateError::NoSuchRun(run_id));
    }
    for event in events {
        apply(&tx, run_id, event)?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn mark_run(conn: &mut Connection, run_id: i64, status: Status) -> Result<bool> {
    let tx = conn.transaction()?;
    let before = status_of(&tx, run_id, None)?;
    if let Some(from) = before.filter(|&b| b != status) {
        log_transition(&tx, run_id, None, Some(from), status, now_ms(), None)?;
    }
    let changed = if status.is_final() {
        let now = now_ms();
        let changed = tx.execute(
            "UPDATE runs SET status = ?2, finished_at = COALESCE(finished_at, ?3),
                    duration_ms = COALESCE(duration_ms, MAX(?3 - started_at, 0))
             WHERE id = ?1",
            params![run_id, status.as_str(), now],
        )?;
        close_unfinished(&tx, run_id, status, status, now)?;
        changed
    } else {
        tx.execute(
            "UPDATE runs SET status = ?2 WHERE id = ?1",
            params![run_id, status.as_str()],
        )?
    };
    tx.commit()?;
    Ok(changed > 0)
}

pub(super) fn set_definition_versions(
    conn: &mut Connection,
    run_id: i64,
    versions: &[(String, usize, u32)],
) -> Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "UPDATE steps SET definition_version = ?4 WHERE run_id = ?1 AND job_key = ?2 AND idx = ?3",
        )?;
        for (job, idx, v) in versions {
            stmt.execute(params![run_id, job, *idx as i64, v])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn mark_interrupted(conn: &mut Connection) -> Result<usize> {
    let me = process::ProcessId::current();
    let candidates: Vec<(i64, i64, Option<i64>)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT id, pid, pid_start FROM runs WHERE status IN ('running', 'paused') AND host = ?1",
        )?;
        let rows = stmt.query_map([&me.host], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let dead: Vec<i64> = candidates
        .into_iter()
        .filter(|&(_, pid, start)| !process::is_alive(pid, start))
        .map(|(id, _, _)| id)
        .collect();
    if dead.is_empty() {
        return Ok(0);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut marked = 0;
    for run_id in dead {
        // Re-check under the write lock: the run may have finished between
        // the read above and now.
        let changed = tx.execute(
            "UPDATE runs SET status = 'interrupted' WHERE id = ?1 AND status IN ('running', 'paused')",
            [run_id],
        )?;
        if changed > 0 {
            marked += 1;
            log_transition(
                &tx,
                run_id,
                None,
                Some(Status::Running),
                Status::Interrupted,
                now_ms(),
                Some("the process recording it is gone"),
            )?;
            close_unfinished(
                &tx,
                run_id,
                Status::Interrupted,
                Status::Interrupted,
                now_ms(),
            )?;
        }
    }
    tx.commit()?;
    Ok(marked)
}

/// Gives unfinished jobs, steps and attempts of a run a final status:
/// `running` ones get `running_to`, `pending`/`waiting` ones get `pending_to`.
pub(super) fn close_unfinished(
    tx: &Transaction<'_>,
    run_id: i64,
    running_to: Status,
    pending_to: Status,
    now: Millis,
) -> Result<()> {
    // The jobs' transitions first, while their statuses are still there.
    let open: Vec<(String, String)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT key, status FROM jobs
             WHERE run_id = ?1 AND status IN ('pending', 'waiting', 'running', 'paused')",
        )?;
        let rows = stmt.query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (job, status) in open {
        let from = Status::parse(&status);
        let to = if from == Some(Status::Running) {
            running_to
        } else {
            pending_to
        };
        log_transition(tx, run_id, Some(&job), from, to, now, Some("the run ended"))?;
    }
    for table in ["jobs", "steps"] {
        tx.execute(
            &format!(
                "UPDATE {table} SET status = CASE status WHEN 'running' THEN ?2 ELSE ?3 END,
                        finished_at = CASE WHEN started_at IS NULL THEN finished_at ELSE COALESCE(finished_at, ?4) END
                 WHERE run_id = ?1 AND status IN ('pending', 'waiting', 'running', 'paused')"
            ),
            params![run_id, running_to.as_str(), pending_to.as_str(), now],
        )?;
    }
    tx.execute(
        "UPDATE attempts SET status = ?2, finished_at = COALESCE(finished_at, ?3)
         WHERE run_id = ?1 AND status = 'running'",
        params![run_id, running_to.as_str(), now],
    )?;
    Ok(())
}

fn apply(tx: &Transaction<'_>, run_id: i64, event: &Event) -> Result<()> {
    match event {
        // The run and its plan were written by begin_run; output goes to files.
        Event::RunStarted { .. } | Event::StepOutput { .. } => {}
        // Annotations and step summaries are kept beside the step's log.
        Event::StepGroup { .. } | Event::Annotation { .. } | Event::StepSummary { .. } => {}
        Event::JobStarted { job, at } => {
            let from = status_of(tx, run_id, Some(job))?;
            log_transition(tx, run_id, Some(job), from, Status::Running, *at, None)?;
            let changed = tx
                .prepare_cached(
                    "UPDATE jobs SET status = 'running', started_at = ?3
                     WHERE run_id = ?1 AND key = ?2",
                )?
                .execute(params![run_id, job, at])?;
            if changed == 0 {
                ensure_job(tx, run_id, job)?;
                tx.execute(
                    "UPDATE jobs SET status = 'running', started_at = ?3 WHERE run_id = ?1 AND key = ?2",
                    params![run_id, job, at],
                )?;
            }
        }
        Event::JobWaiting { job, reason, at } => {
            let from = status_of(tx, run_id, Some(job))?;
            if from != Some(Status::Waiting) {
                log_transition(
                    tx,
                    run_id,
                    Some(job),
                    from,
                    Status::Waiting,
                    *at,
                    Some(reason),
                )?;
            }
            ensure_job(tx, run_id, job)?;
            tx.prepare_cached(
                "UPDATE jobs SET status = 'waiting', reason = ?3 WHERE run_id = ?1 AND key = ?2",
            )?
            .execute(params![run_id, job, reason])?;
        }
        Event::StepStarted {
            job,
            step,
            name,
            attempt,
            at,
        } => {
            let idx = *step as i64;
            let sql =
                "UPDATE steps SET status = 'running', name = ?4, attempts = MAX(attempts, ?5),
                              started_at = COALESCE(started_at, ?6)
                       WHERE run_id = ?1 AND job_key = ?2 AND idx = ?3";
            let args = params![run_id, job, idx, name, attempt, at];
            if tx.prepare_cached(sql)?.execute(args)? == 0 {
                ensure_step(tx, run_id, job, idx, name)?;
                tx.prepare_cached(sql)?.execute(args)?;
            }
            tx.prepare_cached(
                "INSERT INTO attempts (run_id, job_key, step_idx, attempt, status, started_at)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5)
                 ON CONFLICT DO UPDATE SET status = 'running', started_at = excluded.started_at,
                    finished_at = NULL, exit_code = NULL, reason = NULL",
            )?
            .execute(params![run_id, job, idx, attempt, at])?;
        }
        Event::StepRetrying {
            job,
            step,
            reason,
            exit_code,
            ..
        } => {
            // Whatever attempt number the event names, the attempt that just
            // failed is the one still marked running.
            tx.prepare_cached(
                "UPDATE attempts SET status = 'failure', reason = ?4, finished_at = ?5, exit_code = ?6
                 WHERE run_id = ?1 AND job_key = ?2 AND step_idx = ?3 AND status = 'running'",
            )?
            .execute(params![run_id, job, *step as i64, reason, now_ms(), exit_code])?;
        }
        Event::StepFinished {
            job,
            step,
            status,
            exit_code,
            reason,
            attempt,
            at,
            duration_ms,
            outputs,
            continue_on_error,
            log_path,
        } => {
            let idx = *step as i64;
            let sql = "UPDATE steps SET status = ?4, exit_code = ?5, reason = ?6, finished_at = ?7,
                              duration_ms = ?8, outputs = ?9, continue_on_error = ?10, log_path = ?11,
                              attempts = MAX(attempts, ?12),
                              started_at = CASE WHEN ?4 = 'skipped' THEN started_at
                                                ELSE COALESCE(started_at, ?7 - ?8) END
                       WHERE run_id = ?1 AND job_key = ?2 AND idx = ?3";
            let ran = *status != Status::Skipped;
            let outputs = to_json(outputs)?;
            let args = params![
                run_id,
                job,
                idx,
                status.as_str(),
                exit_code,
                reason,
                at,
                *duration_ms as i64,
                outputs,
                continue_on_error,
                log_path,
                if ran { *attempt } else { 0 },
            ];
            if tx.prepare_cached(sql)?.execute(args)? == 0 {
                ensure_step(tx, run_id, job, idx, &format!("step-{}", idx + 1))?;
                tx.prepare_cached(sql)?.execute(args)?;
            }
            if ran && *attempt > 0 {
                tx.prepare_cached(
                    "INSERT INTO attempts (run_id, job_key, step_idx, attempt, status, exit_code,
                                           started_at, finished_at, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7 - ?8, ?7, ?9)
                     ON CONFLICT DO UPDATE SET status = excluded.status, exit_code = excluded.exit_code,
                        finished_at = excluded.finished_at, reason = excluded.reason",
                )?
                .execute(params![
                    run_id,
                    job,
                    idx,
                    attempt,
                    status.as_str(),
                    exit_code,
                    at,
                    *duration_ms as i64,
                    reason
                ])?;
            }
        }
        Event::JobFinished {
            job,
            status,
            reason,
            at,
            duration_ms,
            outputs,
        } => {
            let from = status_of(tx, run_id, Some(job))?;
            log_transition(tx, run_id, Some(job), from, *status, *at, reason.as_deref())?;
            let sql =
                "UPDATE jobs SET status = ?3, reason = ?4, finished_at = ?5, duration_ms = ?6,
                              outputs = ?7,
                              started_at = CASE WHEN ?3 = 'skipped' THEN started_at
                                                ELSE COALESCE(started_at, ?5 - ?6) END
                       WHERE run_id = ?1 AND key = ?2";
            let outputs = to_json(outputs)?;
            let args = params![
                run_id,
                job,
                status.as_str(),
                reason,
                at,
                *duration_ms as i64,
                outputs
            ];
            if tx.prepare_cached(sql)?.execute(args)? == 0 {
                ensure_job(tx, run_id, job)?;
                tx.prepare_cached(sql)?.execute(args)?;
            }
            // Steps the engine never reached (an earlier step failed, the job
            // was skipped) have no event of their own.
            let leftover = match status {
                Status::Cancelled | Status::Interrupted => *status,
                _ => Status::Skipped,
            };
            tx.prepare_cached(
                "UPDATE steps SET status = CASE status WHEN 'running' THEN ?3 ELSE ?4 END
                 WHERE run_id = ?1 AND job_key = ?2 AND status IN ('pending', 'waiting', 'running')",
            )?
            .execute(params![
                run_id,
                job,
                match status {
                    Status::Success | Status::Skipped => Status::Cancelled.as_str(),
                    other => other.as_str(),
                },
                leftover.as_str()
            ])?;
        }
        Event::RunFinished {
            run_id: finished,
            status,
            at,
            duration_ms,
        } => {
            let from = status_of(tx, *finished, None)?;
            let kept = crate::state::transition::on_finish(from, *status);
            let status = &kept;
            if from != Some(*status) {
                log_transition(tx, *finished, None, from, *status, *at, None)?;
            }
            tx.prepare_cached(
                "UPDATE runs SET status = ?2, finished_at = ?3, duration_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![finished, status.as_str(), at, *duration_ms as i64])?;
            let leftover = match status {
                Status::Cancelled | Status::Interrupted => *status,
                _ => Status::Skipped,
            };
            let running_to = match status {
                Status::Success | Status::Skipped => Status::Cancelled,
                other => *other,
            };
            close_unfinished(tx, *finished, running_to, leftover, *at)?;
        }
    }
    Ok(())
}

/// Creates a job row for an event about a job the plan did not list, so that an
/// unexpected event is recorded rather than failing the whole batch.
fn ensure_job(tx: &Transaction<'_>, run_id: i64, job: &str) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO jobs (run_id, key, position, job_id, name, matrix, needs, status)
         VALUES (?1, ?2, (SELECT COALESCE(MAX(position), -1) + 1 FROM jobs WHERE run_id = ?1),
                 ?2, ?2, '{}', '[]', 'pending')",
        params![run_id, job],
    )?;
    Ok(())
}

/// Same as [`ensure_job`] for a step generated after the plan was recorded.
fn ensure_step(tx: &Transaction<'_>, run_id: i64, job: &str, idx: i64, name: &str) -> Result<()> {
    ensure_job(tx, run_id, job)?;
    tx.execute(
        "INSERT OR IGNORE INTO steps (run_id, job_key, idx, step_id, name, status)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
        params![run_id, job, idx, format!("step-{}", idx + 1), name],
    )?;
    Ok(())
}
