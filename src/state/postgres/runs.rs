//! Recording and reading runs in PostgreSQL: the same rows and the same rules
//! as the SQLite backend's `runs.rs` and `queries.rs`, in PostgreSQL's SQL.

use super::super::process;
use super::super::records::{AttemptDetail, JobDetail, RunDetail, RunSummary, StepDetail};
use super::super::{outputs_from_json, to_json, Result, StateError};
use super::nul_free;
use crate::event::{now_ms, Event, JobInfo, Millis, Status};
use postgres::{Client, Row, Transaction};
use std::borrow::Cow;
use std::collections::BTreeMap;

pub(super) fn begin_run(
    client: &mut Client,
    workflow_name: &str,
    workflow_path: &str,
    args: &[String],
    jobs: &[JobInfo],
) -> Result<i64> {
    let mut tx = client.transaction()?;
    let run_id = insert_run(
        &mut tx,
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
    tx: &mut Transaction<'_>,
    workflow_name: &str,
    workflow_path: &str,
    args: &[String],
    jobs: &[JobInfo],
    status: Status,
) -> Result<i64> {
    let me = process::ProcessId::current();
    let now = now_ms();
    let (workflow_name, workflow_path) = (nul_free(workflow_name), nul_free(workflow_path));
    let jobs = nul_free_jobs(jobs);
    let run_id: i64 = tx
        .query_one(
            "INSERT INTO runs (workflow, workflow_path, args, status, started_at, pid, pid_start, host)
             VALUES ($1, $2, $3, $8, $4, $5, $6, $7) RETURNING id",
            &[
                &workflow_name,
                &workflow_path,
                &to_json(&args)?,
                &now,
                &me.pid,
                &me.start,
                &me.host,
                &status.as_str(),
            ],
        )?
        .get(0);
    let job_stmt = tx.prepare(
        "INSERT INTO jobs (run_id, key, position, job_id, name, matrix, needs, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending')",
    )?;
    let step_stmt = tx.prepare(
        "INSERT INTO steps (run_id, job_key, idx, step_id, name, status)
         VALUES ($1, $2, $3, $4, $5, 'pending')",
    )?;
    for (position, job) in jobs.iter().enumerate() {
        tx.execute(
            &job_stmt,
            &[
                &run_id,
                &job.key,
                &(position as i64),
                &job.job_id,
                &job.name,
                &to_json(&job.matrix)?,
                &to_json(&job.needs)?,
            ],
        )?;
        for step in &job.steps {
            tx.execute(
                &step_stmt,
                &[
                    &run_id,
                    &job.key,
                    &(step.index as i64),
                    &step.id,
                    &step.name,
                ],
            )?;
        }
    }
    log_transition(tx, run_id, None, None, status, now, None)?;
    Ok(run_id)
}

/// Appends one transition of a run (`job` is `None`) or of one of its jobs.
pub(super) fn log_transition(
    tx: &mut Transaction<'_>,
    run_id: i64,
    job: Option<&str>,
    from: Option<Status>,
    to: Status,
    at: Millis,
    reason: Option<&str>,
) -> Result<()> {
    let job = job.map(nul_free);
    let reason = reason.map(nul_free);
    tx.execute(
        "INSERT INTO transitions (run_id, job, from_status, to_status, at, reason)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &run_id,
            &job.as_deref(),
            &from.map(Status::as_str),
            &to.as_str(),
            &at,
            &reason.as_deref(),
        ],
    )?;
    Ok(())
}

/// The status of a run (`job` is `None`) or of one of its jobs.
pub(super) fn status_of(
    tx: &mut Transaction<'_>,
    run_id: i64,
    job: Option<&str>,
) -> Result<Option<Status>> {
    let row = match job {
        None => tx.query_opt("SELECT status FROM runs WHERE id = $1", &[&run_id])?,
        Some(job) => tx.query_opt(
            "SELECT status FROM jobs WHERE run_id = $1 AND key = $2",
            &[&run_id, &job],
        )?,
    };
    row.map(|r| {
        let t: String = r.get(0);
        Status::parse(&t).ok_or_else(|| StateError::Corrupt(format!("status {t:?}")))
    })
    .transpose()
}

pub(super) fn record(client: &mut Client, run_id: i64, events: &[Event]) -> Result<()> {
    let mut tx = client.transaction()?;
    if tx
        .query_opt("SELECT 1 FROM runs WHERE id = $1", &[&run_id])?
        .is_none()
    {
        return Err(StateError::NoSuchRun(run_id));
    }
    for event in events {
        apply(&mut tx, run_id, &nul_free_event(event))?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn mark_run(client: &mut Client, run_id: i64, status: Status) -> Result<bool> {
    let mut tx = client.transaction()?;
    let before = status_of(&mut tx, run_id, None)?;
    if let Some(from) = before.filter(|&b| b != status) {
        log_transition(&mut tx, run_id, None, Some(from), status, now_ms(), None)?;
    }
    let changed = if status.is_final() {
        let now = now_ms();
        let changed = tx.execute(
            "UPDATE runs SET status = $2, finished_at = COALESCE(finished_at, $3),
                    duration_ms = COALESCE(duration_ms, GREATEST($3 - started_at, 0))
             WHERE id = $1",
            &[&run_id, &status.as_str(), &now],
        )?;
        close_unfinished(&mut tx, run_id, status, status, now)?;
        changed
    } else {
        tx.execute(
            "UPDATE runs SET status = $2 WHERE id = $1",
            &[&run_id, &status.as_str()],
        )?
    };
    tx.commit()?;
    Ok(changed > 0)
}

pub(super) fn set_definition_versions(
    client: &mut Client,
    run_id: i64,
    versions: &[(String, usize, u32)],
) -> Result<()> {
    let mut tx = client.transaction()?;
    let stmt = tx.prepare(
        "UPDATE steps SET definition_version = $4 WHERE run_id = $1 AND job_key = $2 AND idx = $3",
    )?;
    for (job, idx, v) in versions {
        tx.execute(
            &stmt,
            &[&run_id, &nul_free(job), &(*idx as i64), &i64::from(*v)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn mark_interrupted(client: &mut Client) -> Result<usize> {
    let me = process::ProcessId::current();
    let dead: Vec<i64> = client
        .query(
            "SELECT id, pid, pid_start FROM runs WHERE status IN ('running', 'paused') AND host = $1",
            &[&me.host],
        )?
        .iter()
        .filter(|r| !process::is_alive(r.get(1), r.get(2)))
        .map(|r| r.get(0))
        .collect();
    if dead.is_empty() {
        return Ok(0);
    }
    let mut tx = client.transaction()?;
    let mut marked = 0;
    for run_id in dead {
        // The row lock of the UPDATE and the status re-check make this safe
        // against a run finishing between the read above and now.
        let changed = tx.execute(
            "UPDATE runs SET status = 'interrupted' WHERE id = $1 AND status IN ('running', 'paused')",
            &[&run_id],
        )?;
        if changed > 0 {
            marked += 1;
            log_transition(
                &mut tx,
                run_id,
                None,
                Some(Status::Running),
                Status::Interrupted,
                now_ms(),
                Some("the process recording it is gone"),
            )?;
            close_unfinished(
                &mut tx,
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

pub(super) fn close_unfinished(
    tx: &mut Transaction<'_>,
    run_id: i64,
    running_to: Status,
    pending_to: Status,
    now: Millis,
) -> Result<()> {
    // The jobs' transitions first, while their statuses are still there.
    let open: Vec<(String, String)> = tx
        .query(
            "SELECT key, status FROM jobs
             WHERE run_id = $1 AND status IN ('pending', 'waiting', 'running', 'paused')
             ORDER BY position",
            &[&run_id],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
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
                "UPDATE {table} SET status = CASE status WHEN 'running' THEN $2 ELSE $3 END,
                        finished_at = CASE WHEN started_at IS NULL THEN finished_at ELSE COALESCE(finished_at, $4) END
                 WHERE run_id = $1 AND status IN ('pending', 'waiting', 'running', 'paused')"
            ),
            &[&run_id, &running_to.as_str(), &pending_to.as_str(), &now],
        )?;
    }
    tx.execute(
        "UPDATE attempts SET status = $2, finished_at = COALESCE(finished_at, $3)
         WHERE run_id = $1 AND status = 'running'",
        &[&run_id, &running_to.as_str(), &now],
    )?;
    Ok(())
}

fn apply(tx: &mut Transaction<'_>, run_id: i64, event: &Event) -> Result<()> {
    match event {
        Event::RunStarted { .. } | Event::StepOutput { .. } => {}
        Event::StepGroup { .. } | Event::Annotation { .. } | Event::StepSummary { .. } => {}
        Event::JobStarted { job, at } => {
            let from = status_of(tx, run_id, Some(job))?;
            log_transition(tx, run_id, Some(job), from, Status::Running, *at, None)?;
            let sql = "UPDATE jobs SET status = 'running', started_at = $3 WHERE run_id = $1 AND key = $2";
            if tx.execute(sql, &[&run_id, job, at])? == 0 {
                ensure_job(tx, run_id, job)?;
                tx.execute(sql, &[&run_id, job, at])?;
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
            tx.execute(
                "UPDATE jobs SET status = 'waiting', reason = $3 WHERE run_id = $1 AND key = $2",
                &[&run_id, job, reason],
            )?;
        }
        Event::StepStarted {
            job,
            step,
            name,
            attempt,
            at,
        } => {
            let idx = *step as i64;
            let attempt = i64::from(*attempt);
            let sql =
                "UPDATE steps SET status = 'running', name = $4, attempts = GREATEST(attempts, $5),
                              started_at = COALESCE(started_at, $6)
                       WHERE run_id = $1 AND job_key = $2 AND idx = $3";
            if tx.execute(sql, &[&run_id, job, &idx, name, &attempt, at])? == 0 {
                ensure_step(tx, run_id, job, idx, name)?;
                tx.execute(sql, &[&run_id, job, &idx, name, &attempt, at])?;
            }
            tx.execute(
                "INSERT INTO attempts (run_id, job_key, step_idx, attempt, status, started_at)
                 VALUES ($1, $2, $3, $4, 'running', $5)
                 ON CONFLICT (run_id, job_key, step_idx, attempt) DO UPDATE SET status = 'running',
                    started_at = excluded.started_at, finished_at = NULL, exit_code = NULL, reason = NULL",
                &[&run_id, job, &idx, &attempt, at],
            )?;
        }
        Event::StepRetrying {
            job,
            step,
            reason,
            exit_code,
            ..
        } => {
            tx.execute(
                "UPDATE attempts SET status = 'failure', reason = $4, finished_at = $5, exit_code = $6
                 WHERE run_id = $1 AND job_key = $2 AND step_idx = $3 AND status = 'running'",
                &[
                    &run_id,
                    job,
                    &(*step as i64),
                    reason,
                    &now_ms(),
                    &exit_code.map(i64::from),
                ],
            )?;
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
            let sql = "UPDATE steps SET status = $4, exit_code = $5, reason = $6, finished_at = $7,
                              duration_ms = $8, outputs = $9, continue_on_error = $10, log_path = $11,
                              attempts = GREATEST(attempts, $12),
                              started_at = CASE WHEN $4::TEXT = 'skipped' THEN started_at
                                                ELSE COALESCE(started_at, $7::BIGINT - $8::BIGINT) END
                       WHERE run_id = $1 AND job_key = $2 AND idx = $3";
            let ran = *status != Status::Skipped;
            let outputs = to_json(outputs)?;
            let exit_code = exit_code.map(i64::from);
            let duration = *duration_ms as i64;
            let attempts = if ran { i64::from(*attempt) } else { 0 };
            let status_text = status.as_str();
            let args: [&(dyn postgres::types::ToSql + Sync); 12] = [
                &run_id,
                job,
                &idx,
                &status_text,
                &exit_code,
                reason,
                at,
                &duration,
                &outputs,
                continue_on_error,
                log_path,
                &attempts,
            ];
            if tx.execute(sql, &args)? == 0 {
                ensure_step(tx, run_id, job, idx, &format!("step-{}", idx + 1))?;
                tx.execute(sql, &args)?;
            }
            if ran && *attempt > 0 {
                tx.execute(
                    "INSERT INTO attempts (run_id, job_key, step_idx, attempt, status, exit_code,
                                           started_at, finished_at, reason)
                     VALUES ($1, $2, $3, $4, $5, $6, $7::BIGINT - $8::BIGINT, $7, $9)
                     ON CONFLICT (run_id, job_key, step_idx, attempt) DO UPDATE SET
                        status = excluded.status, exit_code = excluded.exit_code,
                        finished_at = excluded.finished_at, reason = excluded.reason",
                    &[
                        &run_id,
                        job,
                        &idx,
                        &i64::from(*attempt),
                        &status_text,
                        &exit_code,
                        at,
                        &duration,
                        reason,
                    ],
                )?;
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
            let sql = "UPDATE jobs SET status = $3, reason = $4, finished_at = $5, duration_ms = $6,
                              outputs = $7,
                              started_at = CASE WHEN $3::TEXT = 'skipped' THEN started_at
                                                ELSE COALESCE(started_at, $5::BIGINT - $6::BIGINT) END
                       WHERE run_id = $1 AND key = $2";
            let outputs = to_json(outputs)?;
            let duration = *duration_ms as i64;
            let status_text = status.as_str();
            let args: [&(dyn postgres::types::ToSql + Sync); 7] =
                [&run_id, job, &status_text, reason, at, &duration, &outputs];
            if tx.execute(sql, &args)? == 0 {
                ensure_job(tx, run_id, job)?;
                tx.execute(sql, &args)?;
            }
            let leftover = match status {
                Status::Cancelled | Status::Interrupted => *status,
                _ => Status::Skipped,
            };
            let running_to = match status {
                Status::Success | Status::Skipped => Status::Cancelled.as_str(),
                other => other.as_str(),
            };
            tx.execute(
                "UPDATE steps SET status = CASE status WHEN 'running' THEN $3 ELSE $4 END
                 WHERE run_id = $1 AND job_key = $2 AND status IN ('pending', 'waiting', 'running')",
                &[&run_id, job, &running_to, &leftover.as_str()],
            )?;
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
            tx.execute(
                "UPDATE runs SET status = $2, finished_at = $3, duration_ms = $4 WHERE id = $1",
                &[finished, &status.as_str(), at, &(*duration_ms as i64)],
            )?;
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

/// The plan with every NUL replaced (see [`nul_free`]); borrowed when there is none.
fn nul_free_jobs(jobs: &[JobInfo]) -> Cow<'_, [JobInfo]> {
    let has = |s: &String| s.contains('\0');
    let any = jobs.iter().any(|j| {
        has(&j.key)
            || has(&j.job_id)
            || has(&j.name)
            || j.needs.iter().any(has)
            || j.steps.iter().any(|s| has(&s.id) || has(&s.name))
    });
    if !any {
        return Cow::Borrowed(jobs);
    }
    let clean = |s: &mut String| *s = nul_free(s).into_owned();
    let mut jobs = jobs.to_vec();
    for j in &mut jobs {
        clean(&mut j.key);
        clean(&mut j.job_id);
        clean(&mut j.name);
        j.needs.iter_mut().for_each(clean);
        for s in &mut j.steps {
            clean(&mut s.id);
            clean(&mut s.name);
        }
    }
    Cow::Owned(jobs)
}

/// An event with every NUL in its recorded text replaced; borrowed when there is none.
fn nul_free_event(event: &Event) -> Cow<'_, Event> {
    let has = |s: &String| s.contains('\0');
    let has_opt = |s: &Option<String>| s.as_ref().is_some_and(has);
    let needed = match event {
        Event::JobStarted { job, .. } => has(job),
        Event::JobWaiting { job, reason, .. } => has(job) || has(reason),
        Event::StepStarted { job, name, .. } => has(job) || has(name),
        Event::StepRetrying { job, reason, .. } => has(job) || has(reason),
        Event::StepFinished {
            job,
            reason,
            log_path,
            ..
        } => has(job) || has_opt(reason) || has_opt(log_path),
        Event::JobFinished { job, reason, .. } => has(job) || has_opt(reason),
        _ => false,
    };
    if !needed {
        return Cow::Borrowed(event);
    }
    let clean = |s: &mut String| *s = nul_free(s).into_owned();
    let clean_opt = |s: &mut Option<String>| s.iter_mut().for_each(clean);
    let mut event = event.clone();
    match &mut event {
        Event::JobStarted { job, .. } => clean(job),
        Event::JobWaiting { job, reason, .. } => {
            clean(job);
            clean(reason);
        }
        Event::StepStarted { job, name, .. } => {
            clean(job);
            clean(name);
        }
        Event::StepRetrying { job, reason, .. } => {
            clean(job);
            clean(reason);
        }
        Event::StepFinished {
            job,
            reason,
            log_path,
            ..
        } => {
            clean(job);
            clean_opt(reason);
            clean_opt(log_path);
        }
        Event::JobFinished { job, reason, .. } => {
            clean(job);
            clean_opt(reason);
        }
        _ => {}
    }
    Cow::Owned(event)
}

fn ensure_job(tx: &mut Transaction<'_>, run_id: i64, job: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO jobs (run_id, key, position, job_id, name, matrix, needs, status)
         VALUES ($1, $2, (SELECT COALESCE(MAX(position), -1) + 1 FROM jobs WHERE run_id = $1),
                 $2, $2, '{}', '[]', 'pending')
         ON CONFLICT DO NOTHING",
        &[&run_id, &job],
    )?;
    Ok(())
}

fn ensure_step(
    tx: &mut Transaction<'_>,
    run_id: i64,
    job: &str,
    idx: i64,
    name: &str,
) -> Result<()> {
    ensure_job(tx, run_id, job)?;
    tx.execute(
        "INSERT INTO steps (run_id, job_key, idx, step_id, name, status)
         VALUES ($1, $2, $3, $4, $5, 'pending') ON CONFLICT DO NOTHING",
        &[&run_id, &job, &idx, &format!("step-{}", idx + 1), &name],
    )?;
    Ok(())
}

// ---- reading ------------------------------------------------------------------

const RUN_COLUMNS: &str =
    "id, workflow, workflow_path, args, status, started_at, finished_at, duration_ms, pid, host";

pub(super) fn runs(client: &mut Client, limit: usize) -> Result<Vec<RunSummary>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    client
        .query(
            &format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT $1"),
            &[&limit],
        )?
        .iter()
        .map(run_summary)
        .collect()
}

pub(super) fn latest_run_id(client: &mut Client) -> Result<Option<i64>> {
    Ok(client.query_one("SELECT MAX(id) FROM runs", &[])?.get(0))
}

pub(super) fn run(client: &mut Client, run_id: i64) -> Result<Option<RunDetail>> {
    let Some(row) = client.query_opt(
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
        &[&run_id],
    )?
    else {
        return Ok(None);
    };
    let run = run_summary(&row)?;
    let mut attempts: BTreeMap<(String, i64), Vec<AttemptDetail>> = BTreeMap::new();
    for row in client.query(
        "SELECT job_key, step_idx, attempt, status, exit_code, started_at, finished_at, reason
         FROM attempts WHERE run_id = $1 ORDER BY job_key, step_idx, attempt",
        &[&run_id],
    )? {
        attempts
            .entry((row.get(0), row.get(1)))
            .or_default()
            .push(AttemptDetail {
                attempt: small(row.get(2))?,
                status: status(&row, 3)?,
                exit_code: exit_code(row.get(4))?,
                started_at: row.get(5),
                finished_at: row.get(6),
                reason: row.get(7),
            });
    }
    let mut steps: BTreeMap<String, Vec<StepDetail>> = BTreeMap::new();
    for row in client.query(
        "SELECT job_key, idx, step_id, name, status, reason, exit_code, started_at, finished_at,
                duration_ms, outputs, log_path, continue_on_error, definition_version
         FROM steps WHERE run_id = $1 ORDER BY job_key, idx",
        &[&run_id],
    )? {
        let job_key: String = row.get(0);
        let idx: i64 = row.get(1);
        let step = StepDetail {
            index: usize::try_from(idx)
                .map_err(|_| StateError::Corrupt(format!("step index {idx}")))?,
            id: row.get(2),
            name: row.get(3),
            status: status(&row, 4)?,
            reason: row.get(5),
            exit_code: exit_code(row.get(6))?,
            started_at: row.get(7),
            finished_at: row.get(8),
            duration_ms: duration(row.get(9)),
            outputs: outputs_from_json(row.get(10))?,
            log_path: row.get(11),
            continue_on_error: row.get(12),
            definition_version: row.get::<_, Option<i64>>(13).map(small).transpose()?,
            attempts: attempts.remove(&(job_key.clone(), idx)).unwrap_or_default(),
        };
        steps.entry(job_key).or_default().push(step);
    }
    let mut jobs = Vec::new();
    for row in client.query(
        "SELECT key, job_id, name, matrix, needs, status, reason, started_at, finished_at,
                duration_ms, outputs
         FROM jobs WHERE run_id = $1 ORDER BY position",
        &[&run_id],
    )? {
        let key: String = row.get(0);
        let matrix: &str = row.get(3);
        let needs: &str = row.get(4);
        jobs.push(JobDetail {
            job_id: row.get(1),
            name: row.get(2),
            matrix: serde_json::from_str(matrix)
                .map_err(|e| StateError::Corrupt(format!("matrix {matrix:?}: {e}")))?,
            needs: serde_json::from_str(needs)
                .map_err(|e| StateError::Corrupt(format!("needs {needs:?}: {e}")))?,
            status: status(&row, 5)?,
            reason: row.get(6),
            started_at: row.get(7),
            finished_at: row.get(8),
            duration_ms: duration(row.get(9)),
            outputs: outputs_from_json(row.get(10))?,
            steps: steps.remove(&key).unwrap_or_default(),
            key,
        });
    }
    Ok(Some(RunDetail { run, jobs }))
}

fn run_summary(row: &Row) -> Result<RunSummary> {
    let args: &str = row.get(3);
    Ok(RunSummary {
        id: row.get(0),
        workflow: row.get(1),
        workflow_path: row.get(2),
        args: serde_json::from_str(args)
            .map_err(|e| StateError::Corrupt(format!("run args {args:?}: {e}")))?,
        status: status(row, 4)?,
        started_at: row.get(5),
        finished_at: row.get(6),
        duration_ms: duration(row.get(7)),
        pid: row.get(8),
        host: row.get(9),
    })
}

fn status(row: &Row, idx: usize) -> Result<Status> {
    let text: &str = row.get(idx);
    Status::parse(text).ok_or_else(|| StateError::Corrupt(format!("status {text:?}")))
}

fn duration(value: Option<i64>) -> Option<u64> {
    value.map(|d| d.max(0) as u64)
}

fn exit_code(value: Option<i64>) -> Result<Option<i32>> {
    value
        .map(|v| i32::try_from(v).map_err(|_| StateError::Corrupt(format!("exit code {v}"))))
        .transpose()
}

/// A BIGINT column that holds a `u32` (attempt numbers, versions, modes).
pub(super) fn small(value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| StateError::Corrupt(format!("value {value} out of range")))
}
