//! The state database's schema, as one ordered list of migrations for every
//! table in `state.db`: runs, the up-to-date engine's tables, the stat cache,
//! grading results.
//!
//! `PRAGMA user_version` holds how many migrations a database has seen. Opening
//! applies the missing ones in one transaction, so a schema change is made by
//! appending to [`MIGRATIONS`], never by editing an entry that has shipped. This
//! module knows nothing about what the tables mean; reads and writes live in
//! the sibling modules.
//!
//! Before migration 3 the up-to-date tables and the grade table were created by
//! their own modules, versioned in `uptodate_meta` and `grade_meta`. Migrations
//! 3 and 4 adopt them: `IF NOT EXISTS` keeps the rows of a database that already
//! has them, and the old version tables are dropped.

use super::super::StateError;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

/// Migration `i` moves a database from `user_version = i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: runs, jobs, steps, attempts, kv.
    r#"
    CREATE TABLE runs (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        workflow      TEXT    NOT NULL,
        workflow_path TEXT    NOT NULL,
        args          TEXT    NOT NULL,          -- JSON array of the command line
        status        TEXT    NOT NULL,
        started_at    INTEGER NOT NULL,          -- ms since the Unix epoch
        finished_at   INTEGER,
        duration_ms   INTEGER,
        pid           INTEGER NOT NULL,
        pid_start     INTEGER,                   -- process start time (ticks since boot), to detect pid reuse
        host          TEXT    NOT NULL
    );
    CREATE INDEX runs_by_status ON runs(status);

    CREATE TABLE jobs (
        run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        key         TEXT    NOT NULL,
        position    INTEGER NOT NULL,            -- order in the plan
        job_id      TEXT    NOT NULL,
        name        TEXT    NOT NULL,
        matrix      TEXT    NOT NULL,            -- JSON object
        needs       TEXT    NOT NULL,            -- JSON array
        status      TEXT    NOT NULL,
        reason      TEXT,
        started_at  INTEGER,
        finished_at INTEGER,
        duration_ms INTEGER,
        outputs     TEXT    NOT NULL DEFAULT '{}',
        PRIMARY KEY (run_id, key)
    );

    CREATE TABLE steps (
        run_id            INTEGER NOT NULL,
        job_key           TEXT    NOT NULL,
        idx               INTEGER NOT NULL,
        step_id           TEXT    NOT NULL,
        name              TEXT    NOT NULL,
        status            TEXT    NOT NULL,
        reason            TEXT,
        exit_code         INTEGER,
        started_at        INTEGER,
        finished_at       INTEGER,
        duration_ms       INTEGER,
        outputs           TEXT    NOT NULL DEFAULT '{}',
        log_path          TEXT,
        continue_on_error INTEGER NOT NULL DEFAULT 0,
        attempts          INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, job_key, idx),
        FOREIGN KEY (run_id, job_key) REFERENCES jobs(run_id, key) ON DELETE CASCADE
    );

    CREATE TABLE attempts (
        run_id      INTEGER NOT NULL,
        job_key     TEXT    NOT NULL,
        step_idx    INTEGER NOT NULL,
        attempt     INTEGER NOT NULL,
        status      TEXT    NOT NULL,
        exit_code   INTEGER,
        started_at  INTEGER,
        finished_at INTEGER,
        reason      TEXT,
        PRIMARY KEY (run_id, job_key, step_idx, attempt),
        FOREIGN KEY (run_id, job_key, step_idx) REFERENCES steps(run_id, job_key, idx) ON DELETE CASCADE
    );

    CREATE TABLE kv (
        namespace  TEXT    NOT NULL,
        key        TEXT    NOT NULL,
        value      TEXT    NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, key)
    );
    "#,
    // 2: which version of a step's definition produced its result (the
    // up-to-date engine numbers definitions; `trun show` names the version).
    r#"
    ALTER TABLE steps ADD COLUMN definition_version INTEGER;
    "#,
    // 3: the up-to-date engine's tables (definitions, successes, outputs, the
    // latest success of each step) and the machine-local stat cache.
    r#"
    CREATE TABLE IF NOT EXISTS uptodate_stat (
        path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ino INTEGER NOT NULL,
        ctime_ns INTEGER NOT NULL, hash BLOB NOT NULL, written_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS uptodate_definition (
        step_key TEXT NOT NULL, version INTEGER NOT NULL, def_hash BLOB NOT NULL, definition TEXT NOT NULL,
        created_ns INTEGER NOT NULL, PRIMARY KEY (step_key, version)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS uptodate_success (
        id INTEGER PRIMARY KEY, step_key TEXT NOT NULL, run_id INTEGER NOT NULL, fingerprint BLOB NOT NULL,
        def_version INTEGER NOT NULL, def_hash BLOB NOT NULL, created_ns INTEGER NOT NULL, sources BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS uptodate_success_by_fingerprint ON uptodate_success (step_key, fingerprint);
    CREATE TABLE IF NOT EXISTS uptodate_output (
        success_id INTEGER NOT NULL, path TEXT NOT NULL, hash BLOB NOT NULL, mode INTEGER NOT NULL, size INTEGER NOT NULL,
        PRIMARY KEY (success_id, path)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS uptodate_latest (step_key TEXT PRIMARY KEY, success_id INTEGER NOT NULL) WITHOUT ROWID;
    DROP TABLE IF EXISTS uptodate_meta;
    "#,
    // 4: stored grading results, by repository and rubric.
    r#"
    CREATE TABLE IF NOT EXISTS grade_results (
        repo        TEXT NOT NULL,
        rubric      TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        result      TEXT NOT NULL,
        graded_at   INTEGER NOT NULL,
        PRIMARY KEY (repo, rubric)
    );
    DROP TABLE IF EXISTS grade_meta;
    "#,
    // 5: artifacts a run's jobs uploaded (`actions/upload-artifact`): the files'
    // bytes are CAS objects, `manifest` says which file is which.
    r#"
    CREATE TABLE IF NOT EXISTS artifacts (
        run_id     INTEGER NOT NULL,
        name       TEXT    NOT NULL,
        job        TEXT    NOT NULL,
        files      INTEGER NOT NULL,
        bytes      INTEGER NOT NULL,
        digest     TEXT    NOT NULL,
        manifest   TEXT    NOT NULL,             -- JSON: [{path, hash, mode, size}]
        created_at INTEGER NOT NULL,             -- ms since the Unix epoch
        PRIMARY KEY (run_id, name)
    );
    "#,
    // 6 (webhooks): the webhook outbox of `trun serve`, each delivery with
    // its attempts and the receiver's answers.
    r#"
    CREATE TABLE webhook_deliveries (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery     TEXT    NOT NULL UNIQUE,   -- the X-Trun-Delivery id
        run_ref      TEXT    NOT NULL,          -- the server's run id
        event        TEXT    NOT NULL,
        url          TEXT    NOT NULL,
        headers      TEXT    NOT NULL,          -- JSON array of [name, value], signature included
        body         TEXT    NOT NULL,
        status       TEXT    NOT NULL,          -- pending, delivering, delivered, failed
        attempts     INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        next_at      INTEGER NOT NULL,          -- ms: when due (pending) or when the claim lapses (delivering)
        created_at   INTEGER NOT NULL,
        finished_at  INTEGER
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_at);
    CREATE INDEX webhook_deliveries_by_run ON webhook_deliveries(run_ref);
    CREATE TABLE webhook_attempts (
        delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
        attempt     INTEGER NOT NULL,
        at          INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        status_code INTEGER,
        error       TEXT,
        response    TEXT,                      -- the start of the answer, bounded
        PRIMARY KEY (delivery_id, attempt)
    );
    "#,
    // 7: run control (`trun serve`): every status change of a run or a job
    // with its time and reason, and the runs created over the API (their
    // request, so a restarted server can plan a queued run again, and their
    // idempotency key, unique so that one key makes one run across processes),
    // and the slots of concurrency groups.
    r#"
    CREATE TABLE transitions (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id      INTEGER NOT NULL,
        job         TEXT,                        -- NULL: the run itself
        from_status TEXT,                        -- NULL: created
        to_status   TEXT    NOT NULL,
        at          INTEGER NOT NULL,            -- ms since the Unix epoch
        reason      TEXT
    );
    CREATE INDEX transitions_by_run ON transitions(run_id, seq);
    CREATE TABLE server_runs (
        id              TEXT    PRIMARY KEY,     -- the API's run id
        run_id          INTEGER NOT NULL UNIQUE,
        request         TEXT    NOT NULL,        -- JSON, as the server reads it back
        idempotency_key TEXT    UNIQUE,
        body_hash       BLOB,
        created_at      INTEGER NOT NULL
    );
    -- Concurrency groups: a member holds a slot while it runs; a slot whose
    -- run has finished (or was marked interrupted) is free again.
    CREATE TABLE concurrency_slots (
        group_name TEXT    NOT NULL,
        run_id     INTEGER NOT NULL,
        holder     TEXT    NOT NULL,             -- a job key
        claimed_at INTEGER NOT NULL,
        PRIMARY KEY (group_name, run_id, holder)
    );
    "#,
    // 8: the walk cache (machine-local like the stat cache): what the last
    // walk of a source directory entered and found, so that an unchanged tree
    // is not walked again.
    r#"
    CREATE TABLE uptodate_walk (
        dir    TEXT PRIMARY KEY,                 -- the walked directory, absolute
        record BLOB NOT NULL
    );
    "#,
];

/// Number of migrations this build knows; the `user_version` it leaves behind.
#[cfg(test)]
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Brings `conn` up to [`latest_version`], or refuses a database written by a
/// newer trun rather than guessing at a schema it does not know.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StateError> {
    migrate_with(conn, path, MIGRATIONS)
}

fn migrate_with(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<(), StateError> {
    let known = migrations.len() as i64;
    let found = user_version(conn)?;
    if found > known {
        return Err(too_new(path, found, known));
    }
    if found == known {
        return Ok(());
    }
    // IMMEDIATE takes the write lock up front, so two trun processes opening a
    // fresh database at once cannot both apply migration 1; the loser re-reads
    // the version under the lock and finds nothing left to do.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = user_version(&tx)?;
    if found > known {
        return Err(too_new(path, found, known));
    }
    for sql in &migrations[found as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", known)?;
    tx.commit()?;
    Ok(())
}

/// Whether `conn` already has this build's schema (nothing to migrate).
pub(super) fn is_current(conn: &Connection) -> Result<bool, StateError> {
    Ok(user_version(conn)? == MIGRATIONS.len() as i64)
}

fn user_version(conn: &Connection) -> Result<i64, StateError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

fn too_new(path: &Path, found: i64, known: i64) -> StateError {
    StateError::TooNew {
        path: path.to_path_buf(),
        found,
        known,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_migration_applies_on_top_of_an_earlier_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let mut conn = Connection::open(&path).expect("open");
        migrate_with(&mut conn, &path, &MIGRATIONS[..1]).expect("first");
        let extended = [MIGRATIONS[0], "CREATE TABLE later (x INTEGER);"];
        migrate_with(&mut conn, &path, &extended).expect("second");
        assert_eq!(user_version(&conn).expect("version"), 2);
        conn.execute("INSERT INTO later (x) VALUES (1)", [])
            .expect("the appended migration created its table");
        // Reopening with the same list is a no-op.
        migrate_with(&mut conn, &path, &extended).expect("again");
        assert_eq!(user_version(&conn).expect("version"), 2);
    }

    #[test]
    fn a_failing_migration_leaves_the_database_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let mut conn = Connection::open(&path).expect("open");
        let broken = [MIGRATIONS[0], "CREATE TABLE broken (;"];
        assert!(migrate_with(&mut conn, &path, &broken).is_err());
        assert_eq!(user_version(&conn).expect("version"), 0);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'runs'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(
            tables, 0,
            "migration 1 was rolled back with the failing one"
        );
    }
}
