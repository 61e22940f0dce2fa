//! Run control in PostgreSQL (`trun serve`): the same rows and rules as the
//! SQLite backend's `control.rs`. Where SQLite takes its one write lock
//! (`BEGIN IMMEDIATE`), this takes a transaction-scoped advisory lock keyed by
//! what must be exclusive (an idempotency key, a concurrency group) or a row
//! lock on the run, so the rule holds across processes and machines.

use super::super::records::{Claim, Queued, Retry, ServerRun};
use super::super::transition::{self, Illegal, Transition};
use super::super::{outputs_from_json, process, Result, StateError};
use super::nul_free;
use super::runs::{close_unfinished, insert_run, log_transition, status_of};
use crate::event::{now_ms, JobInfo, Status};
use postgres::{Client, Row, Transaction};

const SERVER_RUN_COLUMNS: &str =
    "s.id, s.run_id, s.request, s.idempotency_key, s.body_hash, s.created_at, r.status";

/// Namespaces of the advisory locks below (the first key of the two-key
/// form), apart from the migration lock's single key.
const KEY_LOCK: i32 = 0x7472_0001;
const GROUP_LOCK: i32 = 0x7472_0002;

fn server_run(row: &Row) -> Result<ServerRun> {
    let status: String = row.get(6);
    Ok(ServerRun {
        id: row.get(0),
        run_id: row.get(1),
        request: row.get(2),
        idempotency_key: row.get(3),
        body_hash: row.get(4),
        created_at: row.get(5),
        status: Status::parse(&status)
            .ok_or_else(|| StateError::Corrupt(format!("status {status:?}")))?,
    })
}

/// Locks `name` in namespace `space` until the transaction ends.
fn lock(tx: &mut Transaction<'_>, space: i32, name: &str) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&space, &name],
    )?;
    Ok(())
}

pub(super) fn queue_run(
    client: &mut Client,
    workflow_name: &str,
    workflow_path: &str,
    args: &[String],
    jobs: &[JobInfo],
    server: &ServerRun,
) -> Result<Queued> {
    let mut tx = client.transaction()?;
    let key = server.idempotency_key.as_deref().map(nul_free);
    if let Some(key) = &key {
        // The key is looked up and claimed under one lock, so two processes
        // creating with one key make one run (the UNIQUE column backs it).
        lock(&mut tx, KEY_LOCK, key)?;
        let found = tx.query_opt(
            &format!(
                "SELECT {SERVER_RUN_COLUMNS} FROM server_runs s JOIN runs r ON r.id = s.run_id
                 WHERE s.idempotency_key = $1"
            ),
            &[key],
        )?;
        if let Some(found) = found {
            return Ok(Queued::Existing(server_run(&found)?));
        }
    }
    let run_id = insert_run(
        &mut tx,
        workflow_name,
        workflow_path,
        args,
        jobs,
        Status::Queued,
    )?;
    tx.execute(
        "INSERT INTO server_runs (id, run_id, request, idempotency_key, body_hash, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &nul_free(&server.id),
            &run_id,
            &nul_free(&server.request),
            &key.as_deref(),
            &server.body_hash,
            &server.created_at,
        ],
    )?;
    tx.commit()?;
    Ok(Queued::New(ServerRun {
        run_id,
        status: Status::Queued,
        ..server.clone()
    }))
}

pub(super) fn server_runs(client: &mut Client) -> Result<Vec<ServerRun>> {
    client
        .query(
            &format!(
                "SELECT {SERVER_RUN_COLUMNS} FROM server_runs s JOIN runs r ON r.id = s.run_id
                 ORDER BY s.created_at, s.run_id"
            ),
            &[],
        )?
        .iter()
        .map(server_run)
        .collect()
}

/// Locks the run's row and reads its status: the check and the change that
/// follow see no other writer's change in between.
fn lock_run(tx: &mut Transaction<'_>, run_id: i64) -> Result<Status> {
    tx.execute("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE", &[&run_id])?;
    status_of(tx, run_id, None)?.ok_or(StateError::NoSuchRun(run_id))
}

pub(super) fn transition_run(
    client: &mut Client,
    run_id: i64,
    to: Status,
    reason: &str,
) -> Result<std::result::Result<Status, Illegal>> {
    let mut tx = client.transaction()?;
    let from = lock_run(&mut tx, run_id)?;
    if let Err(illegal) = transition::check(from, to) {
        return Ok(Err(illegal));
    }
    let now = now_ms();
    if matches!(from, Status::Queued | Status::Waiting) && to == Status::Running {
        // The run starts now, in this process: `mark_interrupted` of a later
        // trun finds it by this pid if the process dies.
        let me = process::ProcessId::current();
        tx.execute(
            "UPDATE runs SET status = $2, started_at = $3, pid = $4, pid_start = $5, host = $6
             WHERE id = $1",
            &[&run_id, &to.as_str(), &now, &me.pid, &me.start, &me.host],
        )?;
    } else if to.is_final() {
        tx.execute(
            "UPDATE runs SET status = $2, finished_at = $3,
                    duration_ms = GREATEST($3 - started_at, 0)
             WHERE id = $1",
            &[&run_id, &to.as_str(), &now],
        )?;
        close_unfinished(&mut tx, run_id, to, to, now)?;
    } else {
        tx.execute(
            "UPDATE runs SET status = $2 WHERE id = $1",
            &[&run_id, &to.as_str()],
        )?;
    }
    log_transition(&mut tx, run_id, None, Some(from), to, now, Some(reason))?;
    tx.commit()?;
    Ok(Ok(from))
}

pub(super) fn retry_run(
    client: &mut Client,
    run_id: i64,
    reason: &str,
) -> Result<std::result::Result<Retry, Illegal>> {
    let mut tx = client.transaction()?;
    let from = lock_run(&mut tx, run_id)?;
    if let Err(illegal) = transition::check(from, Status::Queued) {
        return Ok(Err(illegal));
    }
    let now = now_ms();
    let mut kept = std::collections::BTreeMap::new();
    let mut again: Vec<(String, Status)> = Vec::new();
    for row in tx.query(
        "SELECT key, status, outputs FROM jobs WHERE run_id = $1 ORDER BY position",
        &[&run_id],
    )? {
        let key: String = row.get(0);
        let status: String = row.get(1);
        match Status::parse(&status) {
            Some(Status::Success) => {
                kept.insert(key, outputs_from_json(row.get(2))?);
            }
            Some(s) => again.push((key, s)),
            None => return Err(StateError::Corrupt(format!("status {status:?}"))),
        }
    }
    for (job, status) in &again {
        tx.execute(
            "UPDATE jobs SET status = 'pending', reason = NULL, started_at = NULL,
                    finished_at = NULL, duration_ms = NULL, outputs = '{}'
             WHERE run_id = $1 AND key = $2",
            &[&run_id, job],
        )?;
        tx.execute(
            "UPDATE steps SET status = 'pending', reason = NULL, exit_code = NULL,
                    started_at = NULL, finished_at = NULL, duration_ms = NULL,
                    outputs = '{}', log_path = NULL, attempts = 0
             WHERE run_id = $1 AND job_key = $2",
            &[&run_id, job],
        )?;
        // The step attempts of the earlier run attempt go: the engine numbers
        // the new ones from 1 (the transitions keep what happened before).
        tx.execute(
            "DELETE FROM attempts WHERE run_id = $1 AND job_key = $2",
            &[&run_id, job],
        )?;
        if *status != Status::Pending {
            log_transition(
                &mut tx,
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
        "UPDATE runs SET status = 'queued', finished_at = NULL, duration_ms = NULL WHERE id = $1",
        &[&run_id],
    )?;
    log_transition(
        &mut tx,
        run_id,
        None,
        Some(from),
        Status::Queued,
        now,
        Some(reason),
    )?;
    let attempt = attempt_of(&mut tx, run_id)?;
    tx.commit()?;
    Ok(Ok(Retry { attempt, kept }))
}

pub(super) fn claim_slot(
    client: &mut Client,
    group: &str,
    max: u32,
    run_id: i64,
    holder: &str,
) -> Result<Claim> {
    let (group, holder) = (nul_free(group), nul_free(holder));
    let mut tx = client.transaction()?;
    // One claimer of a group at a time, across processes: the count below and
    // the insert after it see no other claim in between.
    lock(&mut tx, GROUP_LOCK, &group)?;
    // Slots of runs that ended (or whose process died and was marked) are free.
    tx.execute(
        "DELETE FROM concurrency_slots WHERE group_name = $1 AND run_id NOT IN
            (SELECT id FROM runs WHERE status IN ('queued', 'waiting', 'running', 'paused'))",
        &[&group],
    )?;
    let holders: Vec<(i64, String)> = tx
        .query(
            "SELECT run_id, holder FROM concurrency_slots WHERE group_name = $1
             ORDER BY claimed_at, run_id, holder",
            &[&group],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if holders.iter().any(|(r, h)| *r == run_id && *h == holder) {
        tx.commit()?;
        return Ok(Claim::Claimed);
    }
    if holders.len() >= max as usize {
        tx.commit()?;
        return Ok(Claim::Full(holders));
    }
    tx.execute(
        "INSERT INTO concurrency_slots (group_name, run_id, holder, claimed_at)
         VALUES ($1, $2, $3, $4)",
        &[&group, &run_id, &holder, &now_ms()],
    )?;
    tx.commit()?;
    Ok(Claim::Claimed)
}

pub(super) fn release_slots(client: &mut Client, run_id: i64, holder: Option<&str>) -> Result<()> {
    match holder {
        Some(h) => client.execute(
            "DELETE FROM concurrency_slots WHERE run_id = $1 AND holder = $2",
            &[&run_id, &nul_free(h)],
        )?,
        None => client.execute(
            "DELETE FROM concurrency_slots WHERE run_id = $1",
            &[&run_id],
        )?,
    };
    Ok(())
}

/// A run's attempt: 1, and one more for each time it was queued again.
fn attempt_of(tx: &mut Transaction<'_>, run_id: i64) -> Result<u32> {
    let queued: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM transitions
             WHERE run_id = $1 AND job IS NULL AND to_status = 'queued'
               AND from_status IS NOT NULL",
            &[&run_id],
        )?
        .get(0);
    Ok(1 + queued as u32)
}

pub(super) fn transitions(client: &mut Client, run_id: i64) -> Result<Vec<Transition>> {
    let parse =
        |s: String| Status::parse(&s).ok_or_else(|| StateError::Corrupt(format!("status {s:?}")));
    let mut out = Vec::new();
    for row in client.query(
        "SELECT job, from_status, to_status, at, reason FROM transitions
         WHERE run_id = $1 ORDER BY seq",
        &[&run_id],
    )? {
        out.push(Transition {
            job: row.get(0),
            from: row.get::<_, Option<String>>(1).map(parse).transpose()?,
            to: parse(row.get(2))?,
            at: row.get(3),
            reason: row.get(4),
        });
    }
    Ok(out)
}
