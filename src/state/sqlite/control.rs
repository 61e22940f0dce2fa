//! Run control in SQLite (`trun serve`): runs queued over the API, status
//! changes checked by [`transition::check`] and recorded, and reading both back.

use super::super::records::{Claim, Queued, Retry, ServerRun};
use super::super::transition::{self, Illegal, Transition};
use super::super::{outputs_from_json, process, Result, StateError};
use super::runs::{insert_run, log_transition, status_of};
use crate::event::{now_ms, JobInfo, Status};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

const SERVER_RUN_COLUMNS: &str =
    "s.id, s.run_id, s.request, s.idempotency_key, s.body_hash, s.created_at, r.status";

fn server_run(row: &rusqlite::Row<'_>) -> rusqlite::Result<(ServerRun, String)> {
    Ok((
        ServerRun {
            id: row.get(0)?,
            run_id: row.get(1)?,
            request: row.get(2)?,
            idempotency_key: row.get(3)?,
            body_hash: row.get(4)?,
            created_at: row.get(5)?,
            status: Status::Queued,
        },
        row.get(6)?,
    ))
}

fn decode((mut run, status): (ServerRun, String)) -> Result<ServerRun> {
    run.status =
        Status::parse(&status).ok_or_else(|| StateError::Corrupt(format!("status {status:?}")))?;
    Ok(run)
}

pub(super) fn queue_run(
    conn: &mut Connection,
    workflow_name: &str,
    workflow_path: &str,
    args: &[String],
    jobs: &[JobInfo],
    server: &ServerRun,
) -> Result<Queued> {
    // IMMEDIATE: the key is looked up and claimed under one write lock, so
    // two processes creating with one key make one run.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(key) = &server.idempotency_key {
        let found = tx
            .query_row(
                &format!(
                    "SELECT {SERVER_RUN_COLUMNS} FROM server_runs s JOIN runs r ON r.id = s.run_id
                     WHERE s.idempotency_key = ?1"
                ),
                [key],
                server_run,
            )
            .optional()?;
        if let Some(found) = found {
            return Ok(Queued::Existing(decode(found)?));
        }
    }
    let run_id = insert_run(
        &tx,
        workflow_name,
        workflow_path,
        args,
        jobs,
        Status::Queued,
    )?;
    tx.execute(
        "INSERT INTO server_runs (id, run_id, request, idempotency_key, body_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            server.id,
            run_id,
            server.request,
            server.idempotency_key,
            server.body_hash,
            server.created_at
        ],
    )?;
    tx.commit()?;
    Ok(Queued::New(ServerRun {
        run_id,
        status: Status::Queued,
        ..server.clone()
    }))
}

pub(super) fn server_runs(conn: &Connection) -> Result<Vec<ServerRun>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SERVER_RUN_COLUMNS} FROM server_runs s JOIN runs r ON r.id = s.run_id
         ORDER BY s.created_at, s.run_id"
    ))?;
    let rows = stmt.query_map([], server_run)?;
    rows.map(|r| decode(r?)).collect()
}

pub(super) fn transition_run(
    conn: &mut Connection,
    run_id: i64,
    to: Status,
    reason: &str,
) -> Result<std::result::Result<Status, Illegal>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let from = status_of(&tx, run_id, None)?.ok_or(StateError::NoSuchRun(run_id))?;
    if let Err(illegal) = transition::check(from, to) {
        return Ok(Err(illegal));
    }
    let now = now_ms();
    if matches!(from, Status::Queued | Status::Waiting) && to == Status::Running {
        // The run starts now, in this process: `mark_interrupted` of a later
        // trun finds it by this pid if the process dies.
        let me = process::ProcessId::current();
        tx.execute(
            "UPDATE runs SET status = ?2, started_at = ?3, pid = ?4, pid_start = ?5, host = ?6
             WHERE id = ?1",
            params![run_id, to.as_str(), now, me.pid, me.start, me.host],
        )?;
    } else if to.is_final() {
        tx.execute(
            "UPDATE runs SET status = ?2, finished_at = ?3,
                    duration_ms = MAX(?3 - started_at, 0)
             WHERE id = ?1",
            params![run_id, to.as_str(), now],
        )?;
        super::runs::close_unfinished(&tx, run_id, to, to, now)?;
    } else {
        tx.execute(
            "UPDATE runs SET status = ?2 WHERE id = ?1",
            params![run_id, to.as_str()],
        )?;
    }
    log_transition(&tx, run_id, None, Some(from), to, now, Some(reason))?;
    tx.commit()?;
    Ok(Ok(from))
}

pub(super) fn retry_run(
    conn: &mut Connection,
    run_id: i64,
    reason: &str,
) -> Result<std::result::Result<Retry, Illegal>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let from = status_of(&tx, run_id, None)?.ok_or(StateError::NoSuchRun(run_id))?;
    if let Err(illegal) = transition::check(from, Status::Queued) {
        return Ok(Err(illegal));
    }
    let now = now_ms();
    let mut kept = std::collections::BTreeMap::new();
    let mut again: Vec<(String, Status)> = Vec::new();
    {
        let mut stmt =
            tx.prepare_cached("SELECT key, status, outputs FROM jobs WHERE run_id = ?1")?;
        let mut rows = stmt.query([run_id])?;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let status: String = row.get(1)?;
            match Status::parse(&status) {
                Some(Status::Success) => {
                    kept.insert(key, outputs_from_json(&row.get::<_, String>(2)?)?);
                }
                Some(s) => again.push((key, s)),
                None => return Err(StateError::Corrupt(format!("status {status:?}"))),
            }
        }
    }
    for (job, status) in &again {
        tx.execute(
            "UPDATE jobs SET status = 'pending', reason = NULL, started_at = NULL,
                    finished_at = NULL, duration_ms = NULL, outputs = '{}'
             WHERE run_id = ?1 AND key = ?2",
            params![run_id, job],
        )?;
        tx.execute(
            "UPDATE steps SET status = 'pending', reason = NULL, exit_code = NULL,
                    started_at = NULL, finished_at = NULL, duration_ms = NULL,
                    outputs = '{}', log_path = NULL, attempts = 0
             WHERE run_id = ?1 AND job_key = ?2",
            params![run_id, job],
        )?;
        // The step attempts of the earlier run attempt go: the engine numbers
        // the new ones from 1 (the transitions keep what happened before).
        tx.execute(
            "DELETE FROM attempts WHERE run_id = ?1 AND job_key = ?2",
            params![run_id, job],
        )?;
        if *status != Status::Pending {
            log_transition(
                &tx,
                run_id,
                Some(job),
                Some(*status),
                Status::Pending,
                now,
                Some(reason),
            )?;
        }
    }
    tx.execute(
        "UPDATE runs SET status = 'queued', finished_at = NULL, duration_ms = NULL WHERE id = ?1",
        [run_id],
    )?;
    log_transition(
        &tx,
        run_id,
        None,
        Some(from),
        Status::Queued,
        now,
        Some(reason),
    )?;
    let attempt = attempt_of(&tx, run_id)?;
    tx.commit()?;
    Ok(Ok(Retry { attempt, kept }))
}

pub(super) fn claim_slot(
    conn: &mut Connection,
    group: &str,
    max: u32,
    run_id: i64,
    holder: &str,
) -> Result<Claim> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Slots of runs that ended (or whose process died and was marked) are free.
    tx.execute(
        "DELETE FROM concurrency_slots WHERE group_name = ?1 AND run_id NOT IN
            (SELECT id FROM runs WHERE status IN ('queued', 'waiting', 'running', 'paused'))",
        [group],
    )?;
    let mut holders: Vec<(i64, String)> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT run_id, holder FROM concurrency_slots WHERE group_name = ?1
             ORDER BY claimed_at, run_id, holder",
        )?;
        let mut rows = stmt.query([group])?;
        while let Some(row) = rows.next()? {
            holders.push((row.get(0)?, row.get(1)?));
        }
    }
    if holders.iter().any(|(r, h)| *r == run_id && h == holder) {
        return Ok(Claim::Claimed);
    }
    if holders.len() >= max as usize {
        return Ok(Claim::Full(holders));
    }
    tx.execute(
        "INSERT INTO concurrency_slots (group_name, run_id, holder, claimed_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![group, run_id, holder, now_ms()],
    )?;
    tx.commit()?;
    Ok(Claim::Claimed)
}

pub(super) fn release_slots(conn: &Connection, run_id: i64, holder: Option<&str>) -> Result<()> {
    match holder {
        Some(h) => conn.execute(
            "DELETE FROM concurrency_slots WHERE run_id = ?1 AND holder = ?2",
            params![run_id, h],
        )?,
        None => conn.execute("DELETE FROM concurrency_slots WHERE run_id = ?1", [run_id])?,
    };
    Ok(())
}

/// A run's attempt: 1, and one more for each time it was queued again.
pub(super) fn attempt_of(conn: &Connection, run_id: i64) -> Result<u32> {
    let queued: i64 = conn.query_row(
        "SELECT COUNT(*) FROM transitions
         WHERE run_id = ?1 AND job IS NULL AND to_status = 'queued' AND from_status IS NOT NULL",
        [run_id],
        |r| r.get(0),
    )?;
    Ok(1 + queued as u32)
}

pub(super) fn transitions(conn: &Connection, run_id: i64) -> Result<Vec<Transition>> {
    let mut stmt = conn.prepare_cached(
        "SELECT job, from_status, to_status, at, reason FROM transitions
         WHERE run_id = ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([run_id])?;
    let mut out = Vec::new();
    let parse =
        |s: String| Status::parse(&s).ok_or_else(|| StateError::Corrupt(format!("status {s:?}")));
    while let Some(row) = rows.next()? {
        out.push(Transition {
            job: row.get(0)?,
            from: row.get::<_, Option<String>>(1)?.map(parse).transpose()?,
            to: parse(row.get(2)?)?,
            at: row.get(3)?,
            reason: row.get(4)?,
        });
    }
    Ok(out)
}
