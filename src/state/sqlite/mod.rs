//! The embedded backend: SQLite at `<workspace>/.trun/state.db`, WAL, one
//! connection per process behind a mutex.
//!
//! Everything SQLite-specific lives here and below: pragmas, `INSERT OR
//! REPLACE`, `WITHOUT ROWID`, the `user_version` migration list. One
//! [`SqliteStore`] owns every table of the file, and a `trun run` opens exactly
//! one: the recorder, the up-to-date engine, action memory and grading share it
//! (as `Arc<SqliteStore>` or `Arc<dyn Store>`). A mutex rather than a pool: a
//! run's writes are small batches, and SQLite takes one writer at a time anyway.

mod control;
mod migrations;
mod queries;
mod runs;
mod statcache;
mod uptodate;
mod webhooks;

#[cfg(test)]
pub(crate) use migrations::latest_version;

use super::records::{
    Claim, DefinitionRecord, DefinitionRef, GradeRecord, Hash, NewSuccess, OutputRecord,
    PrunedSuccesses, Queued, Retry, RunDetail, RunSummary, ServerRun, StatRecord, StepState,
};
use super::transition::{Illegal, Transition};
use super::{Result, StatCache, StateError, Store};
use crate::event::{now_ms, Event, JobInfo, Status};
use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// An open state database. See the module documentation.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, brings its schema up
    /// to date and marks runs whose process has died as interrupted.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source: rusqlite::Error| {
            let corrupted = matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
            );
            if corrupted {
                StateError::Corrupted {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                }
            } else {
                StateError::Open {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                }
            }
        };
        remove_orphaned_wal(path);
        let mut conn = Connection::open(path).map_err(open_err)?;
        // busy_timeout first: switching to WAL itself needs a lock that a
        // concurrent trun may hold for a moment. Ten seconds: grading many
        // repositories at once writes from many threads of several processes.
        conn.busy_timeout(Duration::from_secs(10))
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
        // The WAL stays between runs. Checkpointing it at every close cost each run
        // four fsyncs (the WAL and the database at the checkpoint, then the new WAL's
        // header and its directory entry at the next open), which was most of what a
        // no-op at 10 000 files spent beyond make's own work. SQLite's autocheckpoint
        // still folds it into the database once it passes 256 pages (1 MiB, a few
        // no-op runs), which also bounds what the next open reads back, and a WAL a
        // large run grew is cut back to 4 MiB when it restarts.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(open_err)?;
        conn.execute_batch("PRAGMA wal_autocheckpoint=256; PRAGMA journal_size_limit=4194304;")
            .map_err(open_err)?;
        migrations::migrate(&mut conn, path)?;
        // Recording, up-to-date checks and the stat cache use a few dozen
        // statements over and over; the default cache of 16 would evict some.
        conn.set_prepared_statement_cache_capacity(128);
        let store = SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        };
        store.mark_interrupted()?;
        Ok(store)
    }

    /// Opens the database at `path` only to read it, for looking back (`trun history`,
    /// `show`, `logs`) where `.trun` cannot be written (a read-only mount, another user's
    /// workspace): no migration, no WAL switch, no marking of interrupted runs, and SQLite
    /// told the file cannot change under it (`immutable=1`), so it needs no lock or
    /// `-shm` file. Runs not yet folded into the database are in its WAL, which
    /// `immutable` would ignore: when the WAL is there, SQLite reads it and its
    /// `-shm` read-only instead. A database from another version of trun is refused,
    /// not guessed at.
    pub fn open_read_only(path: &Path) -> Result<SqliteStore> {
        use rusqlite::OpenFlags;
        let open_err = |source: rusqlite::Error| StateError::Open {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        let pending = sibling(path, "-wal").exists();
        let uri = format!(
            "file:{}{}",
            path.display()
                .to_string()
                .replace('%', "%25")
                .replace('?', "%3f")
                .replace('#', "%23"),
            if pending { "" } else { "?immutable=1" }
        );
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(open_err)?;
        if !migrations::is_current(&conn)? {
            return Err(StateError::Corrupt(format!(
                "{} was written by another version of trun and cannot be upgraded read-only; \
                 run trun where .trun is writable to upgrade it",
                path.display()
            )));
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves no transaction open (an
        // unfinished one rolls back on drop), so the connection is still good.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the connection: for tests that look under the interface.
    #[cfg(test)]
    pub(crate) fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        f(&self.conn())
    }
}

/// `<db><suffix>`: the WAL (`-wal`) or its index (`-shm`) beside the database.
fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes the WAL and its index when their database is gone: someone moved or
/// deleted `state.db` (as the message for a damaged one advises) and left them.
/// SQLite matches a WAL to its database by name only, so it would replay the old
/// pages into the new, empty file and damage that too.
fn remove_orphaned_wal(db: &Path) {
    if matches!(db.symlink_metadata(), Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
        for suffix in ["-wal", "-shm"] {
            // Nothing there is the usual case; a WAL that cannot be removed makes
            // the open below fail with SQLite's own words.
            let _ = std::fs::remove_file(sibling(db, suffix));
        }
    }
}

impl From<rusqlite::Error> for StateError {
    fn from(e: rusqlite::Error) -> StateError {
        StateError::Backend(Box::new(e))
    }
}

fn kv_get(conn: &Connection, namespace: &str, key: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT value FROM kv WHERE namespace = ?1 AND key = ?2")?
        .query_row(params![namespace, key], |row| row.get(0))
        .optional()?)
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn enqueue_webhooks(&self, deliveries: &[super::NewWebhookDelivery]) -> Result<()> {
        webhooks::enqueue(&mut self.conn(), deliveries)
    }

    fn claim_webhooks(
        &self,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<super::WebhookDelivery>> {
        webhooks::claim(&mut self.conn(), now, lease_until, limit)
    }

    fn record_webhook_attempt(
        &self,
        id: i64,
        attempt: &super::WebhookAttempt,
        next: super::WebhookNext,
    ) -> Result<()> {
        webhooks::record_attempt(&mut self.conn(), id, attempt, next)
    }

    fn webhook_deliveries(&self, run_ref: &str) -> Result<Vec<super::WebhookDeliveryRecord>> {
        webhooks::deliveries(&self.conn(), run_ref)
    }

    fn begin_run(
        &self,
        workflow_name: &str,
        workflow_path: &str,
        args: &[String],
        jobs: &[JobInfo],
    ) -> Result<i64> {
        runs::begin_run(&mut self.conn(), workflow_name, workflow_path, args, jobs)
    }

    fn record(&self, run_id: i64, events: &[Event]) -> Result<()> {
        runs::record(&mut self.conn(), run_id, events)
    }

    fn mark_run(&self, run_id: i64, status: Status) -> Result<bool> {
        runs::mark_run(&mut self.conn(), run_id, status)
    }

    fn mark_interrupted(&self) -> Result<usize> {
        runs::mark_interrupted(&mut self.conn())
    }

    fn set_definition_versions(
        &self,
        run_id: i64,
        versions: &[(String, usize, u32)],
    ) -> Result<()> {
        runs::set_definition_versions(&mut self.conn(), run_id, versions)
    }

    fn queue_run(
        &self,
        workflow_name: &str,
        workflow_path: &str,
        args: &[String],
        jobs: &[JobInfo],
        server: &ServerRun,
    ) -> Result<Queued> {
        control::queue_run(
            &mut self.conn(),
            workflow_name,
            workflow_path,
            args,
            jobs,
            server,
        )
    }

    fn server_runs(&self) -> Result<Vec<ServerRun>> {
        control::server_runs(&self.conn())
    }

    fn transition_run(
        &self,
        run_id: i64,
        to: Status,
        reason: &str,
    ) -> Result<std::result::Result<Status, Illegal>> {
        control::transition_run(&mut self.conn(), run_id, to, reason)
    }

    fn retry_run(&self, run_id: i64, reason: &str) -> Result<std::result::Result<Retry, Illegal>> {
        control::retry_run(&mut self.conn(), run_id, reason)
    }

    fn claim_slot(&self, group: &str, max: u32, run_id: i64, holder: &str) -> Result<Claim> {
        control::claim_slot(&mut self.conn(), group, max, run_id, holder)
    }

    fn release_slots(&self, run_id: i64, holder: Option<&str>) -> Result<()> {
        control::release_slots(&self.conn(), run_id, holder)
    }

    fn transitions(&self, run_id: i64) -> Result<Vec<Transition>> {
        control::transitions(&self.conn(), run_id)
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>> {
        queries::runs(&self.conn(), limit)
    }

    fn latest_run_id(&self) -> Result<Option<i64>> {
        queries::latest_run_id(&self.conn())
    }

    fn run(&self, run_id: i64) -> Result<Option<RunDetail>> {
        queries::run(&self.conn(), run_id)
    }

    fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>> {
        kv_get(&self.conn(), namespace, key)
    }

    fn kv_get_many(&self, namespace: &str, keys: &[String]) -> Result<Vec<Option<String>>> {
        let conn = self.conn();
        // One read transaction: one snapshot, one WAL read lock for them all.
        let tx = conn.unchecked_transaction()?;
        let out = keys
            .iter()
            .map(|key| kv_get(&tx, namespace, key))
            .collect::<Result<Vec<_>>>()?;
        tx.commit()?;
        Ok(out)
    }

    fn kv_set(&self, namespace: &str, key: &str, value: &str) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO kv (namespace, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )?
            .execute(params![namespace, key, value, now_ms()])?;
        Ok(())
    }

    fn kv_newest_with_prefix(
        &self,
        namespace: &str,
        prefix: &str,
    ) -> Result<Option<(String, String)>> {
        // `substr` rather than LIKE: a key may hold `%` and `_`.
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT key, value FROM kv WHERE namespace = ?1 AND substr(key, 1, length(?2)) = ?2
                 ORDER BY updated_at DESC, rowid DESC LIMIT 1",
            )?
            .query_row(params![namespace, prefix], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?)
    }

    fn artifact_put(&self, a: &crate::state::Artifact) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO artifacts (run_id, name, job, files, bytes, digest, manifest, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                a.run_id,
                a.name,
                a.job,
                a.files,
                a.bytes,
                a.digest,
                a.manifest,
                a.created_at
            ])?;
        Ok(())
    }

    fn artifacts(&self, run_id: i64) -> Result<Vec<crate::state::Artifact>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT run_id, name, job, files, bytes, digest, manifest, created_at
             FROM artifacts WHERE run_id = ?1 ORDER BY name",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok(crate::state::Artifact {
                run_id: r.get(0)?,
                name: r.get(1)?,
                job: r.get(2)?,
                files: r.get(3)?,
                bytes: r.get(4)?,
                digest: r.get(5)?,
                manifest: r.get(6)?,
                created_at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn step_state(&self, step_key: &str) -> Result<StepState> {
        uptodate::step_state(&self.conn(), step_key)
    }

    fn step_states(&self, keys: &[&str]) -> Result<Vec<(StepState, Vec<OutputRecord>)>> {
        let conn = self.conn();
        // One read transaction: one snapshot, one WAL read lock for them all.
        let tx = conn.unchecked_transaction()?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let state = uptodate::step_state(&tx, key)?;
            let outputs = match &state.last_success {
                Some(last) => uptodate::success_outputs(&tx, last.id)?,
                None => Vec::new(),
            };
            out.push((state, outputs));
        }
        tx.commit()?;
        Ok(out)
    }

    fn latest_definition(&self, step_key: &str) -> Result<Option<DefinitionRef>> {
        uptodate::latest_definition(&self.conn(), step_key)
    }

    fn definition_history(&self, step_key: &str) -> Result<Vec<DefinitionRecord>> {
        uptodate::definition_history(&self.conn(), step_key)
    }

    fn success_sources(&self, success_id: i64) -> Result<Option<Vec<u8>>> {
        uptodate::success_sources(&self.conn(), success_id)
    }

    fn success_outputs(&self, success_id: i64) -> Result<Vec<OutputRecord>> {
        uptodate::success_outputs(&self.conn(), success_id)
    }

    fn successes_with_fingerprint(&self, step_key: &str, fingerprint: &Hash) -> Result<Vec<i64>> {
        uptodate::successes_with_fingerprint(&self.conn(), step_key, fingerprint)
    }

    fn set_latest_success(&self, step_key: &str, success_id: i64) -> Result<()> {
        uptodate::set_latest_success(&self.conn(), step_key, success_id)
    }

    fn record_success(&self, success: &NewSuccess<'_>) -> Result<u32> {
        uptodate::record_success(&mut self.conn(), success)
    }

    fn success_counts(&self) -> Result<(usize, usize)> {
        uptodate::success_counts(&self.conn())
    }

    fn prune_successes(
        &self,
        keep: Option<usize>,
        created_before_ns: Option<i64>,
    ) -> Result<PrunedSuccesses> {
        uptodate::prune_successes(&mut self.conn(), keep, created_before_ns)
    }

    fn grade_result(&self, repo: &str, rubric: &str) -> Result<Option<GradeRecord>> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT fingerprint, result, graded_at FROM grade_results WHERE repo = ?1 AND rubric = ?2",
            )?
            .query_row(params![repo, rubric], |r| {
                Ok(GradeRecord {
                    fingerprint: r.get(0)?,
                    result: r.get(1)?,
                    graded_at: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn set_grade_result(&self, repo: &str, rubric: &str, record: &GradeRecord) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO grade_results (repo, rubric, fingerprint, result, graded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                repo,
                rubric,
                record.fingerprint,
                record.result,
                record.graded_at
            ])?;
        Ok(())
    }
}

impl StatCache for SqliteStore {
    fn stats_under(&self, dir: &Path, files: &[&Path]) -> Result<Vec<Option<StatRecord>>> {
        statcache::stats_under(&self.conn(), dir, files)
    }

    fn stats_of(&self, files: &[&Path]) -> Result<Vec<Option<StatRecord>>> {
        statcache::stats_of(&self.conn(), files)
    }

    fn store_stats(&self, rows: &[(&Path, StatRecord)]) -> Result<()> {
        statcache::store_stats(&mut self.conn(), rows)
    }

    fn walk_records(&self, dirs: &[&Path]) -> Result<Vec<Option<Vec<u8>>>> {
        statcache::walk_records(&self.conn(), dirs)
    }

    fn store_walk_records(&self, records: &[(&Path, Vec<u8>)]) -> Result<()> {
        statcache::store_walk_records(&mut self.conn(), records)
    }
}

#[cfg(test)]
mod tests;
