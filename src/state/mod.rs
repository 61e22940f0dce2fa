//! The state store: every run, job, step and attempt trun has recorded, in
//! SQLite at `<workspace>/.trun/state.db`.
//!
//! It is the one place that persists. The engine does not call it directly: it
//! emits [`Event`]s, and the [`Recorder`] thread turns them into rows in batches,
//! one transaction per batch, so recording a thousand steps costs milliseconds.
//! Commands that look back (`trun history`, `show`, `logs`) read it through the
//! queries in `query.rs`. It is not a log store (step output lives in files
//! under `.trun/logs/`, the store keeps their paths) and it does not decide
//! anything (up-to-date checks, retries, cancellation belong to the engine).
//!
//! A run whose process died without finishing (SIGKILL, power loss) stays
//! `running` in the database; [`Store::open`] notices that its process is gone
//! and marks it `interrupted`, so a killed run never blocks or confuses the next.

mod migrations;
mod process;
mod query;
mod recorder;

pub use query::{AttemptDetail, JobDetail, RunDetail, RunSummary, StepDetail};
pub use recorder::{Recorder, RecorderHandle};

use crate::event::{now_ms, Event, JobInfo, Millis, Status};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the state database of a workspace lives.
pub fn db_path(workspace: &Path) -> PathBuf {
    workspace.join(".trun").join("state.db")
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the state database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the state database {} has schema version {found}, but this trun knows versions up to {known}: \
         it was written by a newer trun. Use that trun, or move the file aside to start a fresh history",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database holds an unreadable value: {0}")]
    Corrupt(String),
    #[error("no run is being recorded: begin_run must come before recording events")]
    NoActiveRun,
    #[error("cannot start the state recorder thread: {0}")]
    Thread(std::io::Error),
    #[error("the state recorder thread panicked; the run's record may be incomplete")]
    RecorderPanicked,
}

pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// An open state database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// The run `record` writes to: set by `begin_run`.
    active_run: Option<i64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("active_run", &self.active_run)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, brings its schema up to
    /// date and marks runs whose process has died as interrupted.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| StateError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // busy_timeout first: switching to WAL itself needs a lock that a
        // concurrent trun may hold for a moment.
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StateError::Corrupt(format!(
                "{} refuses WAL journaling (journal_mode is {mode}); is it on a network filesystem?",
                path.display()
            )));
        }
        // NORMAL in WAL mode skips the fsync per commit but never corrupts on a
        // crash: at worst the last commits before a power loss are lost.
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
            .map_err(open_err)?;
        migrations::migrate(&mut conn, path)?;
        // Recording uses a dozen statements over and over; the default cache
        // of 16 would evict some of them once queries run on the same store.
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            active_run: None,
        };
        store.heal_interrupted()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run `record` writes to, once `begin_run` has been called.
    pub fn active_run(&self) -> Option<i64> {
        self.active_run
    }

    /// Records the start of a run with every job and step of its plan pending,
    /// in one transaction, and makes it the run that [`Store::record`] writes to.
    pub fn begin_run(
        &mut self,
        workflow_name: &str,
        workflow_path: &str,
        args: &[String],
        jobs: &[JobInfo],
    ) -> Result<i64> {
        let me = process::ProcessId::current();
        let now = now_ms();
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO runs (workflow, workflow_path, args, status, started_at, pid, pid_start, host)
             VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7)",
            params![
                workflow_name,
                workflow_path,
                to_json(&args)?,
                now,
                me.pid,
                me.start,
                me.host
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
        tx.commit()?;
        self.active_run = Some(run_id);
        Ok(run_id)
    }

    /// Applies a batch of events to the active run in one transaction.
    /// `StepOutput` is ignored: output goes to log files, not to the database.
    pub fn record(&mut self, events: &[Event]) -> Result<()> {
        let run_id = self.active_run.ok_or(StateError::NoActiveRun)?;
        let tx = self.conn.transaction()?;
        for event in events {
            apply(&tx, run_id, event)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Sets a run's status from outside its recording process (`trun cancel`).
    /// A final status also closes the run's unfinished jobs and steps with it.
    /// Returns false when there is no such run.
    pub fn mark_run(&mut self, run_id: i64, status: Status) -> Result<bool> {
        let tx = self.conn.transaction()?;
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

    /// A small value a built-in action remembers between runs (e.g. when an
    /// image was last pulled).
    /// [`Store::set_definition_version`] for many steps, in one transaction.
    pub fn set_definition_versions(
        &mut self,
        run_id: i64,
        versions: &[(String, usize, u32)],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
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

    /// Which version of its definition produced a step's result.
    pub fn set_definition_version(
        &mut self,
        run_id: i64,
        job_key: &str,
        idx: usize,
        version: u32,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE steps SET definition_version = ?4 WHERE run_id = ?1 AND job_key = ?2 AND idx = ?3",
            params![run_id, job_key, idx as i64, version],
        )?;
        Ok(())
    }

    pub fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM kv WHERE namespace = ?1 AND key = ?2",
                params![namespace, key],
                |row| row.get(0),
            )
            .optional()?)
    }

    pub fn kv_set(&mut self, namespace: &str, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO kv (namespace, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            params![namespace, key, value, now_ms()],
        )?;
        Ok(())
    }

    /// Marks as interrupted every run that says it is running but whose process
    /// on this host is gone (or is a different process reusing its pid).
    fn heal_interrupted(&mut self) -> Result<()> {
        let me = process::ProcessId::current();
        let candidates: Vec<(i64, i64, Option<i64>)> = {
            let mut stmt = self.conn.prepare(
                "SELECT id, pid, pid_start FROM runs WHERE status = 'running' AND host = ?1",
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
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for run_id in dead {
            // Re-check under the write lock: the run may have finished between
            // the read above and now.
            let changed = tx.execute(
                "UPDATE runs SET status = 'interrupted' WHERE id = ?1 AND status = 'running'",
                [run_id],
            )?;
            if changed > 0 {
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
        Ok(())
    }
}

/// Gives unfinished jobs, steps and attempts of a run a final status:
/// `running` ones get `running_to`, `pending`/`waiting` ones get `pending_to`.
fn close_unfinished(
    tx: &Transaction<'_>,
    run_id: i64,
    running_to: Status,
    pending_to: Status,
    now: Millis,
) -> Result<()> {
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
        Event::JobStarted { job, at } => {
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

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| StateError::Corrupt(format!("cannot encode JSON: {e}")))
}

fn outputs_from_json(text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|e| StateError::Corrupt(format!("outputs {text:?}: {e}")))
}

#[cfg(test)]
mod tests;
