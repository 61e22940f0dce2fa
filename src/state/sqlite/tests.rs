//! Tests against real SQLite files in temporary directories and real processes.

use super::*;
use crate::state::tests::{args, finished, job, job_finished, started};
use crate::state::{db_path, process, Recorder};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

fn open_in(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&db_path(dir.path())).expect("open state store")
}

fn integrity(store: &SqliteStore) -> String {
    store
        .with_conn(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
        .expect("integrity_check")
}

#[test]
fn open_creates_the_directory_and_applies_every_migration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_in(&dir);
    assert!(dir.path().join(".trun/state.db").is_file());
    let version: i64 = store
        .with_conn(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
        .expect("user_version");
    assert_eq!(version, latest_version());
    let mode: String = store
        .with_conn(|c| c.pragma_query_value(None, "journal_mode", |r| r.get(0)))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    let fk: i64 = store
        .with_conn(|c| c.pragma_query_value(None, "foreign_keys", |r| r.get(0)))
        .expect("foreign_keys");
    assert_eq!(fk, 1);
    assert_eq!(store.latest_run_id().expect("latest"), None);
    assert!(store.runs(10).expect("runs").is_empty());
}

#[test]
fn reopening_keeps_runs_and_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = one_run(&open_in(&dir), "app");
    let store = open_in(&dir);
    let runs = store.runs(10).expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, id);
    assert_eq!(runs[0].status, Status::Success);
    assert_eq!(runs[0].args, args(&["trun", "build"]));
    assert_eq!(store.latest_run_id().expect("latest"), Some(id));
}

/// Begins and finishes one run named `name`; returns its id.
fn one_run(store: &SqliteStore, name: &str) -> i64 {
    let id = store
        .begin_run(
            name,
            "trun.yaml",
            &args(&["trun", "build"]),
            &[job("build", &[], &["compile"])],
        )
        .expect("begin");
    store
        .record(
            id,
            &[Event::RunFinished {
                run_id: id,
                status: Status::Success,
                at: now_ms(),
                duration_ms: 5,
            }],
        )
        .expect("record");
    id
}

#[test]
fn a_closed_store_keeps_its_wal_and_every_way_of_opening_reads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_path(dir.path());
    let id = one_run(&open_in(&dir), "app");
    // Closing did not fold the WAL into the database (that cost every run four
    // fsyncs): the run is in the WAL alone.
    let wal = sibling(&db, "-wal");
    assert!(
        wal.metadata().expect("the WAL outlives the store").len() > 0,
        "the WAL is empty"
    );
    let only_the_file = rusqlite::Connection::open(format!("file:{}?immutable=1", db.display()))
        .and_then(|c| c.query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0)));
    assert!(
        !matches!(only_the_file, Ok(1)),
        "the run was already in the database file itself, so this test proves nothing"
    );
    // A writable open and a read-only one (for a read-only `.trun`) both see it.
    assert_eq!(open_in(&dir).latest_run_id().expect("latest"), Some(id));
    let ro = SqliteStore::open_read_only(&db).expect("read-only open");
    assert_eq!(ro.latest_run_id().expect("latest"), Some(id));
    assert_eq!(ro.runs(10).expect("runs")[0].workflow, "app");
}

#[test]
fn the_wal_of_a_database_moved_aside_does_not_damage_the_next_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_path(dir.path());
    for n in 0..3 {
        one_run(&open_in(&dir), &format!("run {n}"));
    }
    assert!(sibling(&db, "-wal").exists());
    // What the message for a damaged database advises: move the file aside.
    std::fs::rename(&db, dir.path().join("broken.db")).expect("move aside");
    let store = open_in(&dir);
    assert_eq!(integrity(&store), "ok");
    assert!(store.runs(10).expect("runs").is_empty(), "a fresh history");
    assert_eq!(one_run(&store, "new"), 1);
}

/// Points a running run at another process, as if that process had recorded it.
fn pretend_owner(store: &SqliteStore, run_id: i64, pid: i64, start: Option<i64>) {
    store
        .with_conn(|c| {
            c.execute(
                "UPDATE runs SET pid = ?2, pid_start = ?3 WHERE id = ?1",
                params![run_id, pid, start],
            )
        })
        .expect("update owner");
}

#[test]
fn a_run_whose_process_exited_is_interrupted_on_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (dead_run, live_run) = {
        let store = open_in(&dir);
        let jobs = [
            job("build", &[], &["a", "b"]),
            job("test", &["build"], &["c"]),
        ];
        let dead_run = store
            .begin_run("app", "trun.yaml", &[], &jobs)
            .expect("begin");
        store
            .record(
                dead_run,
                &[
                    Event::JobStarted {
                        job: "build".into(),
                        at: 1,
                    },
                    started("build", 0, 1, 2),
                ],
            )
            .expect("record");
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id() as i64;
        child.wait().expect("wait for true");
        pretend_owner(
            &store,
            dead_run,
            pid,
            process::start_time(std::process::id() as i64),
        );
        let live_run = store
            .begin_run("app", "trun.yaml", &[], &jobs)
            .expect("begin");
        (dead_run, live_run)
    };
    let store = open_in(&dir);
    let dead = store.run(dead_run).expect("run").expect("exists");
    assert_eq!(dead.run.status, Status::Interrupted);
    let statuses: Vec<_> = dead
        .jobs
        .iter()
        .flat_map(|j| std::iter::once(j.status).chain(j.steps.iter().map(|s| s.status)))
        .collect();
    assert!(
        statuses.iter().all(|s| *s == Status::Interrupted),
        "{statuses:?}"
    );
    assert_eq!(
        dead.jobs[0].steps[0].attempts[0].status,
        Status::Interrupted
    );
    // This process is alive: its own run is left alone.
    let live = store.run(live_run).expect("run").expect("exists");
    assert_eq!(live.run.status, Status::Running);
}

#[test]
fn a_reused_pid_does_not_keep_a_dead_run_running() {
    if process::start_time(std::process::id() as i64).is_none() {
        eprintln!("no /proc here: pid reuse cannot be detected");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let run_id = {
        let store = open_in(&dir);
        let id = store
            .begin_run("app", "trun.yaml", &[], &[])
            .expect("begin");
        // Our pid, but a process that started at another time: a reused pid.
        let me = process::ProcessId::current();
        pretend_owner(&store, id, me.pid, me.start.map(|s| s - 1));
        id
    };
    let store = open_in(&dir);
    let run = store.run(run_id).expect("run").expect("exists");
    assert_eq!(run.run.status, Status::Interrupted);
}

#[test]
fn a_database_from_a_newer_trun_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(dir.path());
    drop(SqliteStore::open(&path).expect("create"));
    let too_new = latest_version() + 1;
    Connection::open(&path)
        .and_then(|c| c.pragma_update(None, "user_version", too_new))
        .expect("bump version");
    let err = SqliteStore::open(&path).expect_err("newer schema");
    assert!(matches!(err, StateError::TooNew { found, .. } if found == too_new));
    let message = err.to_string();
    assert!(
        message.contains(&format!("schema version {too_new}")),
        "{message}"
    );
    assert!(message.contains("written by a newer trun"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(dir.path());
    std::fs::create_dir_all(dir.path().join(".trun")).expect("mkdir");
    std::fs::write(&path, vec![b'x'; 4096]).expect("write garbage");
    let message = SqliteStore::open(&path).expect_err("garbage").to_string();
    assert!(message.contains("state.db"), "{message}");
    assert!(message.contains("not a database"), "{message}");
}

#[test]
fn the_recorder_writes_every_event_sent_before_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_in(&dir);
    let jobs: Vec<JobInfo> = (0..50)
        .map(|i| job(&format!("j{i}"), &[], &["s"]))
        .collect();
    let run_id = store
        .begin_run("app", "trun.yaml", &[], &jobs)
        .expect("begin");
    let store = Arc::new(store);
    let (tx, handle) = Recorder::spawn(store.clone(), run_id).expect("spawn recorder");
    let senders: Vec<_> = (0..2)
        .map(|half| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in (half..50).step_by(2) {
                    let key = format!("j{i}");
                    for event in [
                        Event::JobStarted {
                            job: key.clone(),
                            at: 1,
                        },
                        started(&key, 0, 1, 2),
                        finished(&key, 0, Status::Success, Some(0), None, 1, 3, 1),
                        job_finished(&key, Status::Success, None, 4),
                    ] {
                        tx.send(event).expect("recorder alive");
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.join().expect("sender thread");
    }
    tx.send(Event::RunFinished {
        run_id,
        status: Status::Success,
        at: 5,
        duration_ms: 4,
    })
    .expect("recorder alive");
    drop(tx);
    let finished = handle.finish().expect("recorder thread");
    assert!(finished.error.is_none(), "{:?}", finished.error);
    let detail = store.run(run_id).expect("run").expect("exists");
    assert_eq!(detail.run.status, Status::Success);
    assert!(detail
        .jobs
        .iter()
        .all(|j| j.status == Status::Success && j.steps[0].status == Status::Success));
}

#[test]
fn the_recorder_reports_a_write_error_at_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open_in(&dir));
    let (tx, handle) = Recorder::spawn(store, 7).expect("spawn recorder");
    tx.send(Event::JobStarted {
        job: "x".into(),
        at: 0,
    })
    .expect("send");
    drop(tx);
    let finished = handle.finish().expect("recorder thread");
    assert!(matches!(finished.error, Some(StateError::NoSuchRun(7))));
}

/// Speed is measured, not asserted:
/// `cargo test --release --lib recorder_throughput -- --ignored --nocapture`
#[test]
#[ignore = "benchmark; run by hand"]
fn recorder_throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open_in(&dir));
    let n = 1000;
    let jobs: Vec<JobInfo> = (0..n)
        .map(|i| job(&format!("job{i}"), &[], &["true"]))
        .collect();
    let begin = std::time::Instant::now();
    let run_id = store
        .begin_run("bench", "trun.yaml", &[], &jobs)
        .expect("begin");
    let begin_took = begin.elapsed();

    let idle = cpu_time();
    for _ in 0..n {
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
    println!(
        "baseline: the paced sender alone (no events) costs {:.1} µs CPU per step",
        (cpu_time() - idle).as_secs_f64() * 1e6 / n as f64
    );
    for (label, pause) in [("burst", None), ("paced 1 job / 0.5 ms", Some(500))] {
        let (tx, handle) = Recorder::spawn(store.clone(), run_id).expect("spawn recorder");
        let start = std::time::Instant::now();
        let cpu_before = cpu_time();
        for i in 0..n {
            let key = format!("job{i}");
            let t = now_ms();
            for event in [
                Event::JobStarted {
                    job: key.clone(),
                    at: t,
                },
                started(&key, 0, 1, t),
                finished(&key, 0, Status::Success, Some(0), None, 1, t, 1),
                job_finished(&key, Status::Success, None, t),
            ] {
                tx.send(event).expect("recorder alive");
            }
            if let Some(us) = pause {
                std::thread::sleep(std::time::Duration::from_micros(us));
            }
        }
        let sent = start.elapsed();
        drop(tx);
        assert!(handle.finish().expect("recorder").error.is_none());
        let total = start.elapsed();
        let cpu = cpu_time() - cpu_before;
        println!(
            "{label}: {n} jobs x 1 step: wall {total:?} (sending took {sent:?}), \
             CPU {cpu:?} = {:.1} µs CPU per recorded step",
            cpu.as_secs_f64() * 1e6 / n as f64,
        );
    }
    println!("begin_run with {n} jobs: {begin_took:?}");
    // The write path alone, without threads: one transaction per step, and
    // one for everything.
    let events = |i: usize| {
        let key = format!("job{i}");
        let t = now_ms();
        [
            Event::JobStarted {
                job: key.clone(),
                at: t,
            },
            started(&key, 0, 1, t),
            finished(&key, 0, Status::Success, Some(0), None, 1, t, 1),
            job_finished(&key, Status::Success, None, t),
        ]
    };
    let cpu = cpu_time();
    for i in 0..n {
        store.record(run_id, &events(i)).expect("record");
    }
    println!(
        "record(), one transaction per step: {:.1} µs CPU per step",
        (cpu_time() - cpu).as_secs_f64() * 1e6 / n as f64
    );
    let all: Vec<Event> = (0..n).flat_map(events).collect();
    let cpu = cpu_time();
    store.record(run_id, &all).expect("record");
    println!(
        "record(), one transaction for all: {:.1} µs CPU per step",
        (cpu_time() - cpu).as_secs_f64() * 1e6 / n as f64
    );
    let detail = store.run(run_id).expect("run").expect("exists");
    assert!(detail.jobs.iter().all(|j| j.status == Status::Success));
}

/// User + system CPU time of this process so far.
fn cpu_time() -> std::time::Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

const CHILD_DB: &str = "TRUN_TEST_STATE_CHILD_DB";

/// The writer that `a_sigkilled_writer_leaves_a_healthy_database` kills: it only
/// does something when started by that test with `TRUN_TEST_STATE_CHILD_DB` set.
#[test]
#[ignore = "child process of a_sigkilled_writer_leaves_a_healthy_database"]
fn sigkill_child_writer() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        eprintln!("{CHILD_DB} is not set: this test only runs as a child process");
        return;
    };
    let store = SqliteStore::open(Path::new(&path)).expect("child: open");
    let jobs: Vec<JobInfo> = (0..200)
        .map(|i| job(&format!("job{i}"), &[], &["a", "b"]))
        .collect();
    let run_id = store
        .begin_run("victim", "trun.yaml", &[], &jobs)
        .expect("child: begin");
    println!("READY {run_id}");
    let mut attempt = 1;
    loop {
        for i in 0..200 {
            let key = format!("job{i}");
            let t = now_ms();
            store
                .record(
                    run_id,
                    &[
                        Event::JobStarted {
                            job: key.clone(),
                            at: t,
                        },
                        started(&key, 0, attempt, t),
                        finished(&key, 0, Status::Success, Some(0), None, attempt, t, 0),
                        started(&key, 1, attempt, t),
                    ],
                )
                .expect("child: record");
        }
        if attempt == 1 {
            // Only once: a child blocked on a full pipe would not be killed
            // mid-write.
            println!("ROUND 1");
        }
        attempt += 1;
    }
}

#[test]
fn a_sigkilled_writer_leaves_a_healthy_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(dir.path());
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "state::sqlite::tests::sigkill_child_writer",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut run_id = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child stdout");
        if let Some(id) = line.strip_prefix("READY ") {
            run_id = Some(id.trim().parse::<i64>().expect("run id"));
        }
        if line == "ROUND 1" {
            break;
        }
    }
    let run_id = run_id.expect("the writer started a run");
    // It is writing continuously now, so the kill lands mid-transaction more
    // often than not.
    std::thread::sleep(std::time::Duration::from_millis(50));
    child.kill().expect("SIGKILL the writer");
    let status = child.wait().expect("reap the writer");
    assert!(!status.success());

    let store = SqliteStore::open(&path).expect("the next trun opens the database");
    assert_eq!(integrity(&store), "ok");
    let detail = store.run(run_id).expect("run").expect("exists");
    assert_eq!(detail.run.status, Status::Interrupted);
    assert!(
        detail.jobs[0].steps[0].attempts.len() > 1,
        "the writer got through at least one round before it was killed"
    );
    assert!(detail
        .jobs
        .iter()
        .flat_map(|j| &j.steps)
        .all(|s| s.status.is_final()));
}

/// The schema a state.db had before one migration list owned every table:
/// `user_version` 2 for the run tables, the up-to-date tables versioned in
/// `uptodate_meta`, the grade table in `grade_meta` (verbatim from the modules
/// that created them).
const OLD_UPTODATE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS uptodate_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
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
INSERT OR REPLACE INTO uptodate_meta (key, value) VALUES ('schema_version', 1);
";

const OLD_GRADE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS grade_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS grade_results (
    repo        TEXT NOT NULL,
    rubric      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    result      TEXT NOT NULL,
    graded_at   INTEGER NOT NULL,
    PRIMARY KEY (repo, rubric)
);
INSERT OR REPLACE INTO grade_meta (key, value) VALUES ('schema', '1');
";

#[test]
fn a_database_from_before_the_one_migration_list_opens_with_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(dir.path());
    std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
    {
        // What the previous trun left: its two run migrations, then the
        // up-to-date and grade tables with their own version tables, and a
        // row in each.
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(migrations::MIGRATIONS[0])
            .expect("migration 1");
        conn.execute_batch(migrations::MIGRATIONS[1])
            .expect("migration 2");
        conn.pragma_update(None, "user_version", 2)
            .expect("version");
        conn.execute_batch(OLD_UPTODATE_SCHEMA)
            .expect("old up-to-date schema");
        conn.execute_batch(OLD_GRADE_SCHEMA)
            .expect("old grade schema");
        conn.execute_batch(
            "INSERT INTO runs (workflow, workflow_path, args, status, started_at, finished_at,
                               duration_ms, pid, host)
             VALUES ('app', 'trun.yaml', '[\"trun\"]', 'success', 1000, 2000, 1000, 1, 'h');
             INSERT INTO kv (namespace, key, value, updated_at) VALUES ('actions', 'pull', '42', 1);
             INSERT INTO uptodate_definition VALUES ('build/s', 1, x'11', '{\"run\":\"make\"}', 5);
             INSERT INTO uptodate_success (id, step_key, run_id, fingerprint, def_version, def_hash,
                                           created_ns, sources)
             VALUES (7, 'build/s', 1, zeroblob(32), 1, x'11', 5, x'');
             INSERT INTO uptodate_output VALUES (7, 'out/app', zeroblob(32), 493, 3);
             INSERT INTO uptodate_latest VALUES ('build/s', 7);
             INSERT INTO uptodate_stat VALUES ('/w/src/a.rs', 4, 10, 99, 10, zeroblob(32), 20);
             INSERT INTO grade_results VALUES ('/repos/alice', 'r1', 'fp', '{\"score\":3}', 30);",
        )
        .expect("old rows");
    }

    let store = SqliteStore::open(&path).expect("the old database opens");
    let version: i64 = store
        .with_conn(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
        .expect("user_version");
    assert_eq!(version, latest_version());
    let leftovers: i64 = store
        .with_conn(|c| {
            c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('uptodate_meta', 'grade_meta')",
                [],
                |r| r.get(0),
            )
        })
        .expect("count");
    assert_eq!(leftovers, 0, "the old version tables are gone");

    // Every row is still there, read through the interface.
    let runs = store.runs(10).expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].workflow.as_str(), runs[0].status),
        ("app", Status::Success)
    );
    assert_eq!(
        store.kv_get("actions", "pull").expect("kv").as_deref(),
        Some("42")
    );
    let state = store.step_state("build/s").expect("step state");
    assert_eq!(state.definition.map(|d| d.version), Some(1));
    assert_eq!(state.last_success.map(|s| s.id), Some(7));
    let outputs = store.success_outputs(7).expect("outputs");
    assert_eq!(outputs.len(), 1);
    assert_eq!(
        (outputs[0].path.as_str(), outputs[0].mode),
        ("out/app", 493)
    );
    let stat = store
        .stats_of(&[Path::new("/w/src/a.rs")])
        .expect("stat cache");
    assert_eq!(stat[0].map(|s| s.ino), Some(99));
    let graded = store
        .grade_result("/repos/alice", "r1")
        .expect("grade")
        .expect("kept");
    assert_eq!(
        (graded.fingerprint.as_str(), graded.result.as_str()),
        ("fp", "{\"score\":3}")
    );
    // And the store keeps working on it.
    let run_id = store
        .begin_run("app", "trun.yaml", &[], &[job("build", &[], &["s"])])
        .expect("begin on the migrated database");
    assert_eq!(run_id, 2);
    assert_eq!(integrity(&store), "ok");
}

#[test]
fn a_store_is_usable_as_arc_dyn_store() {
    fn assert_store<T: Store + StatCache + Send + Sync + 'static>() {}
    assert_store::<SqliteStore>();
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(open_in(&dir));
    let run_id = store
        .begin_run("app", "trun.yaml", &[], &[job("a", &[], &["s"])])
        .expect("begin");
    let (tx, handle) = Recorder::spawn(store.clone(), run_id).expect("recorder");
    tx.send(started("a", 0, 1, 1)).expect("send");
    tx.send(finished("a", 0, Status::Success, Some(0), None, 1, 2, 1))
        .expect("send");
    tx.send(Event::RunFinished {
        run_id,
        status: Status::Success,
        at: 3,
        duration_ms: 2,
    })
    .expect("send");
    drop(tx);
    assert!(handle.finish().expect("recorder").error.is_none());
    let detail = store.run(run_id).expect("run").expect("exists");
    assert_eq!(detail.run.status, Status::Success);
    assert_eq!(detail.jobs[0].steps[0].status, Status::Success);
    store.kv_set("ns", "k", "v").expect("kv");
    assert_eq!(store.kv_get("ns", "k").expect("kv").as_deref(), Some("v"));
    assert!(store.location().ends_with("state.db"));
}
