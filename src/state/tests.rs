//! The store's test suite, run against both backends: every function below
//! takes a [`Fixture`] and [`store_tests!`] runs it once on a SQLite file in a
//! temporary directory and once on PostgreSQL, in a schema of its own in the
//! database `TRUN_TEST_DATABASE_URL` names (`.ci/postgres start` starts a
//! throwaway server). Without that variable the PostgreSQL tests fail: they
//! never skip.

use super::*;
use crate::event::{Millis, StepInfo, Stream};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One backend's database for one test; [`Fixture::open`] opens it again
/// (another connection, as another process would).
pub(crate) struct Fixture {
    backend: Backend,
}

enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

pub(crate) fn sqlite() -> Fixture {
    Fixture {
        backend: Backend::Sqlite(tempfile::tempdir().expect("tempdir")),
    }
}

/// The PostgreSQL server the tests use, or a panic saying how to get one.
pub(crate) fn test_database_url() -> String {
    std::env::var("TRUN_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "TRUN_TEST_DATABASE_URL is not set: the PostgreSQL store tests need a server. \
             Start a throwaway one with `eval \"$(.ci/postgres start)\"` (bash .ci/run does), \
             or point it at postgres://user@host:port/db"
        )
    })
}

pub(crate) fn postgres() -> Fixture {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Fixture {
        backend: Backend::Postgres {
            url: test_database_url(),
            schema: format!(
                "trun_test_{}_{}_{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        },
    }
}

impl Fixture {
    pub(crate) fn open(&self) -> Box<dyn Store> {
        match &self.backend {
            Backend::Sqlite(dir) => {
                Box::new(SqliteStore::open(&db_path(dir.path())).expect("open SQLite store"))
            }
            Backend::Postgres { url, schema } => {
                Box::new(PostgresStore::open_in_schema(url, schema).expect("open PostgreSQL store"))
            }
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Backend::Postgres { url, schema } = &self.backend {
            if let Ok(mut c) = ::postgres::Client::connect(url, ::postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
            }
        }
    }
}

/// Runs each named test function on SQLite (`sqlite::NAME`) and on
/// PostgreSQL (`postgres::NAME`).
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(&super::sqlite()); } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(&super::postgres()); } )*
        }
    };
}

store_tests!(
    a_realistic_run_reads_back_in_full,
    events_for_steps_generated_after_the_plan_are_recorded,
    record_for_a_run_never_begun_is_an_error,
    kv_values_are_remembered_and_overwritten,
    mark_run_cancels_a_run_and_its_unfinished_work,
    runs_lists_newest_first_up_to_the_limit,
    kv_newest_with_prefix_takes_the_latest_match_and_no_pattern_characters,
    a_run_of_a_dead_process_is_interrupted_on_the_next_open,
    definition_versions_are_recorded_per_step,
    successes_are_versioned_found_and_pruned,
    batched_reads_answer_as_the_single_ones_do,
    artifacts_are_replaced_by_name,
    grade_results_are_kept_per_repo_and_rubric,
    webhooks_are_claimed_once_retried_and_listed,
    a_second_connection_sees_the_first_ones_runs,
    hostile_text_is_stored_as_text,
    the_store_works_from_inside_a_tokio_runtime,
    concurrent_writers_number_definitions_once_and_claim_each_delivery_once,
    a_nul_in_names_and_keys_is_recorded,
    one_idempotency_key_makes_one_run_across_two_connections,
    one_idempotency_key_makes_one_run_when_writers_race,
    transitions_are_checked_recorded_and_a_retry_keeps_what_succeeded,
    job_transitions_come_from_the_recorded_events,
    a_group_holds_at_most_max_across_connections_and_frees_a_finished_runs_slot,
    racing_claimers_never_exceed_a_groups_limit,
    hostile_run_control_text_is_stored_as_text,
);

pub(crate) fn job(key: &str, needs: &[&str], steps: &[&str]) -> JobInfo {
    JobInfo {
        key: key.to_string(),
        job_id: key.split(' ').next().unwrap_or(key).to_string(),
        name: key.to_string(),
        needs: needs.iter().map(|s| s.to_string()).collect(),
        matrix: BTreeMap::new(),
        steps: steps
            .iter()
            .enumerate()
            .map(|(index, id)| StepInfo {
                index,
                id: id.to_string(),
                name: format!("run {id}"),
            })
            .collect(),
    }
}

pub(crate) fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

pub(crate) fn started(job: &str, step: usize, attempt: u32, at: Millis) -> Event {
    Event::StepStarted {
        job: job.into(),
        step,
        name: format!("step {step}"),
        attempt,
        at,
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn finished(
    job: &str,
    step: usize,
    status: Status,
    exit_code: Option<i32>,
    reason: Option<&str>,
    attempt: u32,
    at: Millis,
    duration_ms: u64,
) -> Event {
    Event::StepFinished {
        job: job.into(),
        step,
        status,
        exit_code,
        reason: reason.map(str::to_string),
        attempt,
        at,
        duration_ms,
        outputs: BTreeMap::new(),
        continue_on_error: false,
        log_path: (status != Status::Skipped).then(|| format!(".trun/logs/1/{job}/{step}.log")),
    }
}

pub(crate) fn job_finished(job: &str, status: Status, reason: Option<&str>, at: Millis) -> Event {
    Event::JobFinished {
        job: job.into(),
        status,
        reason: reason.map(str::to_string),
        at,
        duration_ms: 10,
        outputs: BTreeMap::new(),
    }
}

fn a_realistic_run_reads_back_in_full(fx: &Fixture) {
    let store = fx.open();
    let mut matrix_job = job("test (1)", &["build"], &["unit"]);
    matrix_job
        .matrix
        .insert("shard".into(), serde_json::json!(1));
    let jobs = [
        job("build", &[], &["fetch", "compile", "lint"]),
        matrix_job,
        job("deploy", &["build", "test (1)"], &["push"]),
    ];
    let run_id = store
        .begin_run("app", "/ws/trun.yaml", &args(&["trun", "deploy"]), &jobs)
        .expect("begin");

    // Pending before anything happens.
    let detail = store.run(run_id).expect("run").expect("exists");
    assert_eq!(detail.run.status, Status::Running);
    assert!(detail.jobs.iter().all(|j| j.status == Status::Pending));
    assert_eq!(detail.jobs[0].steps.len(), 3);

    let mut outputs = BTreeMap::new();
    outputs.insert("version".to_string(), "1.2.3".to_string());
    let t = 1_700_000_000_000;
    store
        .record(
            run_id,
            &[
                Event::JobStarted {
                    job: "build".into(),
                    at: t,
                },
                finished(
                    "build",
                    0,
                    Status::Skipped,
                    None,
                    Some("up to date"),
                    0,
                    t + 1,
                    0,
                ),
                started("build", 1, 1, t + 2),
                Event::StepOutput {
                    job: "build".into(),
                    step: 1,
                    stream: Stream::Stdout,
                    line: "compiling".into(),
                },
                Event::StepRetrying {
                    job: "build".into(),
                    step: 1,
                    attempt: 1,
                    delay_ms: 100,
                    reason: "exit code 101".into(),
                    exit_code: Some(101),
                },
                started("build", 1, 2, t + 200),
            ],
        )
        .expect("first batch");
    store
        .record(
            run_id,
            &[
                Event::StepFinished {
                    job: "build".into(),
                    step: 1,
                    status: Status::Success,
                    exit_code: Some(0),
                    reason: None,
                    attempt: 2,
                    at: t + 300,
                    duration_ms: 100,
                    outputs: outputs.clone(),
                    continue_on_error: false,
                    log_path: Some(".trun/logs/1/build/2.log".into()),
                },
                started("build", 2, 1, t + 301),
                Event::StepFinished {
                    job: "build".into(),
                    step: 2,
                    status: Status::Failure,
                    exit_code: Some(1),
                    reason: Some("exit code 1".into()),
                    attempt: 1,
                    at: t + 310,
                    duration_ms: 9,
                    outputs: BTreeMap::new(),
                    continue_on_error: true,
                    log_path: Some(".trun/logs/1/build/3.log".into()),
                },
                Event::JobFinished {
                    job: "build".into(),
                    status: Status::Success,
                    reason: None,
                    at: t + 311,
                    duration_ms: 311,
                    outputs: outputs.clone(),
                },
                Event::JobStarted {
                    job: "test (1)".into(),
                    at: t + 312,
                },
                started("test (1)", 0, 1, t + 313),
                finished(
                    "test (1)",
                    0,
                    Status::Failure,
                    Some(2),
                    Some("exit code 2"),
                    1,
                    t + 400,
                    87,
                ),
                job_finished(
                    "test (1)",
                    Status::Failure,
                    Some("step unit failed"),
                    t + 401,
                ),
                // deploy never starts: its need failed.
                job_finished(
                    "deploy",
                    Status::Skipped,
                    Some("needs failed: test (1)"),
                    t + 402,
                ),
                Event::RunFinished {
                    run_id,
                    status: Status::Failure,
                    at: t + 403,
                    duration_ms: 403,
                },
            ],
        )
        .expect("second batch");

    let detail = store.run(run_id).expect("run").expect("exists");
    assert_eq!(detail.run.status, Status::Failure);
    assert_eq!(detail.run.duration_ms, Some(403));
    assert_eq!(detail.run.workflow_path, "/ws/trun.yaml");
    let keys: Vec<_> = detail.jobs.iter().map(|j| j.key.as_str()).collect();
    assert_eq!(keys, ["build", "test (1)", "deploy"], "plan order");

    let build = &detail.jobs[0];
    assert_eq!(build.status, Status::Success);
    assert_eq!(build.outputs, outputs);
    assert_eq!(build.started_at, Some(t));
    let fetch = &build.steps[0];
    assert_eq!(
        (fetch.status, fetch.reason.as_deref()),
        (Status::Skipped, Some("up to date"))
    );
    assert!(fetch.attempts.is_empty());
    assert_eq!(fetch.log_path, None);
    let compile = &build.steps[1];
    assert_eq!(compile.status, Status::Success);
    assert_eq!(compile.name, "step 1", "the name from StepStarted wins");
    assert_eq!(compile.exit_code, Some(0));
    assert_eq!(compile.outputs, outputs);
    assert_eq!(compile.started_at, Some(t + 2), "first attempt's start");
    assert_eq!(
        compile.log_path.as_deref(),
        Some(".trun/logs/1/build/2.log")
    );
    let attempts: Vec<_> = compile
        .attempts
        .iter()
        .map(|a| (a.attempt, a.status, a.reason.as_deref()))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, Status::Failure, Some("exit code 101")),
            (2, Status::Success, None)
        ]
    );
    let lint = &build.steps[2];
    assert_eq!((lint.status, lint.exit_code), (Status::Failure, Some(1)));
    assert!(lint.continue_on_error);

    let test = &detail.jobs[1];
    assert_eq!(test.matrix.get("shard"), Some(&serde_json::json!(1)));
    assert_eq!(test.needs, ["build"]);
    assert_eq!(test.steps[0].attempts.len(), 1);
    assert_eq!(test.steps[0].attempts[0].exit_code, Some(2));

    let deploy = &detail.jobs[2];
    assert_eq!(deploy.status, Status::Skipped);
    assert_eq!(deploy.reason.as_deref(), Some("needs failed: test (1)"));
    assert_eq!(deploy.started_at, None);
    assert_eq!(
        deploy.steps[0].status,
        Status::Skipped,
        "closed with its job"
    );
}

fn events_for_steps_generated_after_the_plan_are_recorded(fx: &Fixture) {
    let store = fx.open();
    let run_id = store
        .begin_run("app", "trun.yaml", &[], &[job("grade", &[], &["setup"])])
        .expect("begin");
    store
        .record(
            run_id,
            &[
                started("grade", 1, 1, 10),
                finished("grade", 1, Status::Success, Some(0), None, 1, 20, 10),
                started("surprise", 0, 1, 30),
            ],
        )
        .expect("record");
    let detail = store.run(run_id).expect("run").expect("exists");
    assert_eq!(detail.jobs[0].steps.len(), 2);
    assert_eq!(detail.jobs[0].steps[1].status, Status::Success);
    assert_eq!(detail.jobs[1].key, "surprise");
    assert_eq!(detail.jobs[1].steps[0].status, Status::Running);
}

fn record_for_a_run_never_begun_is_an_error(fx: &Fixture) {
    let store = fx.open();
    let err = store
        .record(
            42,
            &[Event::JobStarted {
                job: "x".into(),
                at: 0,
            }],
        )
        .expect_err("no run");
    assert!(matches!(err, StateError::NoSuchRun(42)), "{err}");
}

fn kv_values_are_remembered_and_overwritten(fx: &Fixture) {
    let store = fx.open();
    assert_eq!(store.kv_get("docker/pull", "alpine").expect("get"), None);
    store.kv_set("docker/pull", "alpine", "100").expect("set");
    store
        .kv_set("docker/pull", "alpine", "200")
        .expect("set again");
    store.kv_set("other", "alpine", "x").expect("set other ns");
    drop(store);
    let store = fx.open();
    assert_eq!(
        store
            .kv_get("docker/pull", "alpine")
            .expect("get")
            .as_deref(),
        Some("200")
    );
    assert_eq!(
        store.kv_get("other", "alpine").expect("get").as_deref(),
        Some("x")
    );
}

fn mark_run_cancels_a_run_and_its_unfinished_work(fx: &Fixture) {
    let store = fx.open();
    let run_id = store
        .begin_run("app", "trun.yaml", &[], &[job("a", &[], &["one", "two"])])
        .expect("begin");
    store
        .record(
            run_id,
            &[
                Event::JobStarted {
                    job: "a".into(),
                    at: 1,
                },
                started("a", 0, 1, 2),
            ],
        )
        .expect("record");
    assert!(store.mark_run(run_id, Status::Cancelled).expect("mark"));
    assert!(!store
        .mark_run(run_id + 100, Status::Cancelled)
        .expect("mark missing"));
    let detail = store.run(run_id).expect("run").expect("exists");
    assert_eq!(detail.run.status, Status::Cancelled);
    assert!(detail.run.finished_at.is_some());
    assert_eq!(detail.jobs[0].status, Status::Cancelled);
    let steps: Vec<_> = detail.jobs[0].steps.iter().map(|s| s.status).collect();
    assert_eq!(steps, [Status::Cancelled, Status::Cancelled]);
}

fn runs_lists_newest_first_up_to_the_limit(fx: &Fixture) {
    let store = fx.open();
    let ids: Vec<i64> = (0..5)
        .map(|i| {
            store
                .begin_run(&format!("wf{i}"), "trun.yaml", &[], &[])
                .expect("begin")
        })
        .collect();
    let listed: Vec<i64> = store.runs(3).expect("runs").iter().map(|r| r.id).collect();
    assert_eq!(listed, [ids[4], ids[3], ids[2]]);
    assert_eq!(store.latest_run_id().expect("latest"), Some(ids[4]));
    assert_eq!(store.run(9999).expect("query"), None);
}

fn kv_newest_with_prefix_takes_the_latest_match_and_no_pattern_characters(fx: &Fixture) {
    let store = fx.open();
    store.kv_set("actions", "cache/deps-1", "one").expect("set");
    std::thread::sleep(std::time::Duration::from_millis(5));
    store.kv_set("actions", "cache/deps-2", "two").expect("set");
    store.kv_set("actions", "cache/other", "x").expect("set");
    store
        .kv_set("elsewhere", "cache/deps-3", "not this namespace")
        .expect("set");
    assert_eq!(
        store
            .kv_newest_with_prefix("actions", "cache/deps-")
            .expect("query"),
        Some(("cache/deps-2".to_string(), "two".to_string()))
    );
    // `%` and `_` are characters, not patterns.
    assert_eq!(
        store
            .kv_newest_with_prefix("actions", "cache/%")
            .expect("query"),
        None
    );
    assert_eq!(
        store
            .kv_newest_with_prefix("actions", "cache_deps")
            .expect("query"),
        None
    );
}

impl Fixture {
    /// Points a run at another process, as if that process had recorded it:
    /// under the interface, in each backend's own SQL.
    fn pretend_owner(&self, run_id: i64, pid: i64) {
        match &self.backend {
            Backend::Sqlite(dir) => {
                let c = rusqlite::Connection::open(db_path(dir.path())).expect("open");
                c.execute(
                    "UPDATE runs SET pid = ?2, pid_start = NULL WHERE id = ?1",
                    rusqlite::params![run_id, pid],
                )
                .expect("update owner");
            }
            Backend::Postgres { url, schema } => {
                let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).expect("connect");
                c.execute(
                    &format!(
                        "UPDATE \"{schema}\".runs SET pid = $2, pid_start = NULL WHERE id = $1"
                    ),
                    &[&run_id, &pid],
                )
                .expect("update owner");
            }
        }
    }
}

fn a_run_of_a_dead_process_is_interrupted_on_the_next_open(fx: &Fixture) {
    let store = fx.open();
    let run_id = store
        .begin_run("app", "trun.yaml", &[], &[job("a", &[], &["one", "two"])])
        .expect("begin");
    store
        .record(
            run_id,
            &[
                Event::JobStarted {
                    job: "a".into(),
                    at: 1,
                },
                started("a", 0, 1, 2),
            ],
        )
        .expect("record");
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead_pid = i64::from(child.id());
    child.wait().expect("wait");
    fx.pretend_owner(run_id, dead_pid);
    drop(store);
    let store = fx.open();
    let detail = store.run(run_id).expect("run").expect("exists");
    assert_eq!(detail.run.status, Status::Interrupted);
    assert_eq!(detail.jobs[0].status, Status::Interrupted);
    let steps: Vec<_> = detail.jobs[0].steps.iter().map(|s| s.status).collect();
    assert_eq!(steps, [Status::Interrupted, Status::Interrupted]);
    assert_eq!(
        detail.jobs[0].steps[0].attempts[0].status,
        Status::Interrupted
    );
    // A run of this (living) process is left alone.
    let live = store
        .begin_run("app", "trun.yaml", &[], &[])
        .expect("begin");
    assert_eq!(store.mark_interrupted().expect("mark"), 0);
    assert_eq!(
        store.run(live).expect("run").expect("exists").run.status,
        Status::Running
    );
}

fn definition_versions_are_recorded_per_step(fx: &Fixture) {
    let store = fx.open();
    let run_id = store
        .begin_run("app", "trun.yaml", &[], &[job("a", &[], &["one", "two"])])
        .expect("begin");
    store
        .set_definition_versions(run_id, &[("a".to_string(), 1, 7)])
        .expect("versions");
    let detail = store.run(run_id).expect("run").expect("exists");
    let versions: Vec<_> = detail.jobs[0]
        .steps
        .iter()
        .map(|s| s.definition_version)
        .collect();
    assert_eq!(versions, [None, Some(7)]);
}

fn success<'a>(
    key: &'a str,
    fingerprint: u8,
    def: u8,
    sources: &'a [u8],
    outputs: &'a [OutputRecord],
) -> NewSuccess<'a> {
    NewSuccess {
        step_key: key,
        run_id: 1,
        fingerprint: [fingerprint; 32],
        def_hash: [def; 32],
        definition: "{\"run\":\"make\"}",
        created_ns: i64::from(fingerprint) * 1000,
        sources,
        outputs,
    }
}

fn successes_are_versioned_found_and_pruned(fx: &Fixture) {
    let store = fx.open();
    assert_eq!(
        store.step_state("build").expect("state"),
        StepState::default()
    );
    let outputs = [
        OutputRecord {
            path: "out/z.bin".into(),
            hash: [9; 32],
            mode: 0o755,
            size: 3,
        },
        OutputRecord {
            path: "out/a.txt".into(),
            hash: [8; 32],
            mode: 0o644,
            size: u64::from(u32::MAX) + 1,
        },
    ];
    let v1 = store
        .record_success(&success("build", 1, 1, b"src-a", &outputs))
        .expect("first");
    let v1_again = store
        .record_success(&success("build", 2, 1, b"src-b", &[]))
        .expect("same definition");
    let v2 = store
        .record_success(&success("build", 3, 2, b"src-c", &[]))
        .expect("new definition");
    assert_eq!((v1, v1_again, v2), (1, 1, 2));
    store
        .record_success(&success("test", 1, 5, b"", &[]))
        .expect("other step");

    let state = store.step_state("build").expect("state");
    assert_eq!(
        state.definition,
        Some(DefinitionRef {
            version: 2,
            hash: [2; 32]
        })
    );
    let last = state.last_success.expect("a last success");
    assert_eq!((last.fingerprint, last.def_version), ([3; 32], 2));
    assert_eq!(
        store.latest_definition("build").expect("latest"),
        state.definition
    );
    let history = store.definition_history("build").expect("history");
    assert_eq!(
        history.iter().map(|d| d.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(history[0].definition, "{\"run\":\"make\"}");

    let first = store
        .successes_with_fingerprint("build", &[1; 32])
        .expect("by fingerprint");
    assert_eq!(first.len(), 1);
    assert_eq!(
        store.success_sources(first[0]).expect("sources").as_deref(),
        Some(&b"src-a"[..])
    );
    assert_eq!(store.success_sources(999_999).expect("sources"), None);
    let read = store.success_outputs(first[0]).expect("outputs");
    assert_eq!(
        read.iter().map(|o| o.path.as_str()).collect::<Vec<_>>(),
        ["out/a.txt", "out/z.bin"],
        "sorted by path"
    );
    assert_eq!(read[0].size, u64::from(u32::MAX) + 1);
    assert_eq!(read[1].mode, 0o755);

    // Restoring an older success makes it the latest.
    store
        .set_latest_success("build", first[0])
        .expect("restore");
    assert_eq!(
        store
            .step_state("build")
            .expect("state")
            .last_success
            .map(|s| s.id),
        Some(first[0])
    );
    assert_eq!(store.success_counts().expect("counts"), (4, 2));

    // Keep one per step: the latest (the restored first one) stays, and so does
    // the newest; the middle one goes.
    let pruned = store.prune_successes(Some(1), None).expect("prune");
    assert_eq!(pruned.removed, 1);
    assert_eq!(store.success_counts().expect("counts"), (3, 2));
    assert!(pruned.referenced.contains(&[9; 32]) && pruned.referenced.contains(&[8; 32]));
    // By age: everything before the cutoff except each step's latest.
    let pruned = store.prune_successes(None, Some(i64::MAX)).expect("prune");
    assert_eq!(pruned.removed, 1);
    assert_eq!(store.success_counts().expect("counts"), (2, 2));
}

/// `step_states` and `kv_get_many` (one read for a whole plan) give what
/// `step_state` + `success_outputs` and `kv_get` give key by key, in the
/// order asked, for keys with and without a state, repeated keys included.
fn batched_reads_answer_as_the_single_ones_do(fx: &Fixture) {
    let store = fx.open();
    let outputs = [OutputRecord {
        path: "out/lib.a".into(),
        hash: [7; 32],
        mode: 0o644,
        size: 12,
    }];
    store
        .record_success(&success("lib", 1, 1, b"", &outputs))
        .expect("lib");
    store
        .record_success(&success("lib", 2, 2, b"", &[]))
        .expect("lib again");
    store
        .record_success(&success("app", 3, 3, b"", &outputs))
        .expect("app");
    let keys = ["app", "never-ran", "lib", "app", "it's \"quoted\"%_"];
    let batched = store.step_states(&keys).expect("batch");
    assert_eq!(batched.len(), keys.len());
    for (key, (state, outs)) in keys.iter().zip(&batched) {
        let single = store.step_state(key).expect("single");
        assert_eq!(state, &single, "{key}");
        let single_outs = match &single.last_success {
            Some(last) => store.success_outputs(last.id).expect("outputs"),
            None => Vec::new(),
        };
        assert_eq!(outs, &single_outs, "{key}");
    }
    assert_eq!(batched[0].1.len(), 1, "app's last success made out/lib.a");
    assert!(batched[2].1.is_empty(), "lib's last success made nothing");
    assert_eq!(batched[1].0, StepState::default());

    store.kv_set("ns", "a", "1").expect("set");
    store.kv_set("ns", "c", "3").expect("set");
    store.kv_set("other", "b", "2").expect("set");
    let keys: Vec<String> = ["a", "b", "c", "a"].map(String::from).to_vec();
    assert_eq!(
        store.kv_get_many("ns", &keys).expect("many"),
        [
            Some("1".to_string()),
            None,
            Some("3".to_string()),
            Some("1".to_string())
        ]
    );
    assert!(store.kv_get_many("ns", &[]).expect("none").is_empty());
}

fn artifacts_are_replaced_by_name(fx: &Fixture) {
    let store = fx.open();
    let run_id = store
        .begin_run("app", "trun.yaml", &[], &[])
        .expect("begin");
    let artifact = |name: &str, files: i64| Artifact {
        run_id,
        name: name.into(),
        job: "build".into(),
        files,
        bytes: files * 10,
        digest: format!("sha-{name}-{files}"),
        manifest: "[]".into(),
        created_at: 5,
    };
    store.artifact_put(&artifact("dist", 1)).expect("put");
    store.artifact_put(&artifact("coverage", 2)).expect("put");
    store.artifact_put(&artifact("dist", 3)).expect("replace");
    let listed = store.artifacts(run_id).expect("list");
    assert_eq!(listed, [artifact("coverage", 2), artifact("dist", 3)]);
    assert!(store.artifacts(run_id + 1).expect("list").is_empty());
}

fn grade_results_are_kept_per_repo_and_rubric(fx: &Fixture) {
    let store = fx.open();
    assert_eq!(store.grade_result("r1", "rubric").expect("get"), None);
    let record = |f: &str| GradeRecord {
        fingerprint: f.into(),
        result: format!("{{\"score\":\"{f}\"}}"),
        graded_at: 42,
    };
    store
        .set_grade_result("r1", "rubric", &record("a"))
        .expect("set");
    store
        .set_grade_result("r1", "rubric", &record("b"))
        .expect("overwrite");
    store
        .set_grade_result("r2", "rubric", &record("c"))
        .expect("set");
    assert_eq!(
        store.grade_result("r1", "rubric").expect("get"),
        Some(record("b"))
    );
    assert_eq!(
        store.grade_result("r2", "rubric").expect("get"),
        Some(record("c"))
    );
    assert_eq!(store.grade_result("r1", "other").expect("get"), None);
}

fn delivery(id: &str, due_at: i64, refused: Option<&str>) -> NewWebhookDelivery {
    NewWebhookDelivery {
        delivery: id.into(),
        run_ref: "run-1".into(),
        event: "run.finished".into(),
        url: "http://127.0.0.1:9/hook".into(),
        headers: vec![("X-Trun-Signature-256".into(), "sha256=00".into())],
        body: "{}".into(),
        max_attempts: 3,
        due_at,
        refused: refused.map(str::to_string),
    }
}

fn webhooks_are_claimed_once_retried_and_listed(fx: &Fixture) {
    let store = fx.open();
    store
        .enqueue_webhooks(&[
            delivery("d2", 200, None),
            delivery("d1", 100, None),
            delivery("d3", 100, Some("secret WEBHOOK_KEY is missing")),
            delivery("later", 10_000, None),
        ])
        .expect("enqueue");
    let claimed = store.claim_webhooks(1000, 5000, 10).expect("claim");
    assert_eq!(
        claimed
            .iter()
            .map(|d| d.delivery.as_str())
            .collect::<Vec<_>>(),
        ["d1", "d2"],
        "due ones only, in due order; the refused one is already failed"
    );
    assert_eq!(claimed[0].headers[0].0, "X-Trun-Signature-256");
    assert_eq!((claimed[0].attempts, claimed[0].max_attempts), (0, 3));
    // Claimed until 5000: nobody else gets them before then.
    assert!(store
        .claim_webhooks(2000, 6000, 10)
        .expect("claim")
        .is_empty());
    // d1 is delivered; d2's claimer dies, and after the lease anyone may claim it.
    store
        .record_webhook_attempt(
            claimed[0].id,
            &WebhookAttempt {
                attempt: 1,
                at: 1000,
                duration_ms: 12,
                status_code: Some(200),
                error: None,
                response: Some("ok".into()),
            },
            WebhookNext::Delivered,
        )
        .expect("attempt");
    let again = store.claim_webhooks(5001, 9000, 10).expect("claim");
    assert_eq!(
        again
            .iter()
            .map(|d| d.delivery.as_str())
            .collect::<Vec<_>>(),
        ["d2"]
    );
    store
        .record_webhook_attempt(
            again[0].id,
            &WebhookAttempt {
                attempt: 1,
                at: 5001,
                duration_ms: 3,
                status_code: None,
                error: Some("connection refused".into()),
                response: None,
            },
            WebhookNext::RetryAt(7000),
        )
        .expect("attempt");
    let listed = store.webhook_deliveries("run-1").expect("list");
    let summary: Vec<_> = listed
        .iter()
        .map(|d| {
            (
                d.delivery.as_str(),
                d.status.as_str(),
                d.next_attempt_at,
                d.attempts.len(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("d2", "pending", Some(7000), 1),
            ("d1", "delivered", None, 1),
            ("d3", "failed", None, 1),
            ("later", "pending", Some(10_000), 0),
        ]
    );
    assert_eq!(listed[1].attempts[0].status_code, Some(200));
    assert_eq!(
        listed[2].attempts[0].error.as_deref(),
        Some("secret WEBHOOK_KEY is missing")
    );
    assert!(store.webhook_deliveries("run-2").expect("list").is_empty());
}

fn a_second_connection_sees_the_first_ones_runs(fx: &Fixture) {
    let first = fx.open();
    let second = fx.open();
    let run_id = first
        .begin_run(
            "app",
            "trun.yaml",
            &args(&["trun", "run"]),
            &[job("a", &[], &["one"])],
        )
        .expect("begin");
    second
        .record(
            run_id,
            &[
                started("a", 0, 1, 10),
                finished("a", 0, Status::Success, Some(0), None, 1, 20, 10),
            ],
        )
        .expect("record through the second");
    let seen = first.run(run_id).expect("run").expect("exists");
    assert_eq!(seen.jobs[0].steps[0].status, Status::Success);
    assert_eq!(second.latest_run_id().expect("latest"), Some(run_id));
    if fx.is_postgres() {
        assert!(
            first.location().starts_with("postgres://"),
            "{}",
            first.location()
        );
    } else {
        assert!(first.location().ends_with("state.db"));
    }
}

fn hostile_text_is_stored_as_text(fx: &Fixture) {
    let store = fx.open();
    let nasty =
        "x'); DROP TABLE runs; -- $(touch /tmp/pwned) `id` \"quoted\" ../../etc/passwd %_ é漢";
    let huge = "y".repeat(2 << 20);
    let run_id = store
        .begin_run(
            nasty,
            nasty,
            &args(&[nasty, &huge]),
            &[job(nasty, &[nasty], &[nasty])],
        )
        .expect("begin");
    let mut outputs = BTreeMap::new();
    outputs.insert(nasty.to_string(), huge.clone());
    store
        .record(
            run_id,
            &[Event::JobFinished {
                job: nasty.into(),
                status: Status::Failure,
                reason: Some(nasty.into()),
                at: 5,
                duration_ms: 1,
                outputs,
            }],
        )
        .expect("record");
    store.kv_set(nasty, nasty, &huge).expect("kv");
    let detail = store.run(run_id).expect("run").expect("exists");
    assert_eq!(detail.run.workflow, nasty);
    assert_eq!(detail.run.args[1].len(), huge.len());
    assert_eq!(detail.jobs[0].key, nasty);
    assert_eq!(detail.jobs[0].reason.as_deref(), Some(nasty));
    assert_eq!(detail.jobs[0].outputs[nasty], huge);
    assert_eq!(store.kv_get(nasty, nasty).expect("kv"), Some(huge));
    assert_eq!(
        store.runs(10).expect("runs").len(),
        1,
        "the table is still there"
    );
}

/// trun calls the store from async tasks in places (the server, the engine's
/// hooks): a backend that blocks on a runtime of its own must still work there,
/// on a multi-thread and on a current-thread runtime.
fn the_store_works_from_inside_a_tokio_runtime(fx: &Fixture) {
    let store: std::sync::Arc<dyn Store> = fx.open().into();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let s = store.clone();
    let run_id = multi.block_on(async move {
        tokio::spawn(async move { s.begin_run("app", "trun.yaml", &[], &[]).expect("begin") })
            .await
            .expect("task")
    });
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = store.clone();
    let latest = current.block_on(async move { s.latest_run_id().expect("latest") });
    assert_eq!(latest, Some(run_id));
    assert_eq!(store.runs(5).expect("runs")[0].id, run_id);
}

#[test]
fn a_postgres_location_never_shows_the_password() {
    for (url, shown) in [
        (
            "postgres://ci:s3cret@db.example:5433/trun",
            "postgres://ci@db.example:5433/trun",
        ),
        (
            "postgresql://ci@127.0.0.1/trun?password=s3cret&sslmode=disable",
            "postgres://ci@127.0.0.1:5432/trun",
        ),
        ("postgres://ci:s3cret@[bad", "postgres://(unparseable URL)"),
    ] {
        let redacted = redact_url(url);
        assert_eq!(redacted, shown);
        assert!(!redacted.contains("s3cret"));
    }
    // A refused connection names the server, not the password.
    let err = PostgresStore::open("postgres://ci:s3cret@127.0.0.1:1/trun?connect_timeout=2")
        .expect_err("nothing listens on port 1");
    let message = err.to_string();
    assert!(!message.contains("s3cret"), "{message}");
    assert!(
        message.contains("postgres://ci@127.0.0.1:1/trun"),
        "{message}"
    );
}

/// Several processes (here: connections on threads) write one database at
/// once: a step's definition versions stay 1, 2, 3… with no duplicate, and
/// each webhook delivery is claimed by exactly one of them.
fn concurrent_writers_number_definitions_once_and_claim_each_delivery_once(fx: &Fixture) {
    const WRITERS: u8 = 4;
    let stores: Vec<Box<dyn Store>> = (0..WRITERS).map(|_| fx.open()).collect();
    let versions: Vec<u32> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                scope.spawn(move || {
                    let def = i as u8 + 1;
                    store
                        .record_success(&success("shared", def, def, b"", &[]))
                        .expect("record a success")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer"))
            .collect()
    });
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=u32::from(WRITERS)).collect::<Vec<_>>(),
        "{versions:?}"
    );

    let deliveries: Vec<_> = (0..40)
        .map(|i| delivery(&format!("d{i}"), i64::from(i), None))
        .collect();
    stores[0].enqueue_webhooks(&deliveries).expect("enqueue");
    let claimed: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .map(|store| {
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let batch = store.claim_webhooks(1000, 99_000, 3).expect("claim");
                        if batch.is_empty() {
                            return mine;
                        }
                        mine.extend(batch.into_iter().map(|d| d.delivery));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("claimer"))
            .collect()
    });
    let unique: std::collections::HashSet<_> = claimed.iter().collect();
    assert_eq!(claimed.len(), 40, "every delivery claimed");
    assert_eq!(unique.len(), 40, "none claimed twice: {claimed:?}");
}

#[test]
fn a_postgres_database_from_a_newer_trun_is_refused() {
    let fx = postgres();
    drop(fx.open());
    let Backend::Postgres { url, schema } = &fx.backend else {
        unreachable!()
    };
    let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).expect("connect");
    let current: i64 = c
        .query_one(
            &format!("SELECT version FROM \"{schema}\".trun_schema_version"),
            &[],
        )
        .expect("version")
        .get(0);
    assert!(current >= 1);
    c.batch_execute(&format!(
        "UPDATE \"{schema}\".trun_schema_version SET version = 999"
    ))
    .expect("pretend a newer trun");
    let err = PostgresStore::open_in_schema(url, schema).expect_err("newer schema");
    assert!(
        matches!(err, StateError::TooNew { found: 999, .. }),
        "{err}"
    );
    // Opening again with the same schema version is a no-op that keeps the data.
    c.batch_execute(&format!(
        "UPDATE \"{schema}\".trun_schema_version SET version = {current}"
    ))
    .expect("back");
    let store = fx.open();
    store.kv_set("ns", "k", "v").expect("kv");
    drop(store);
    assert_eq!(
        fx.open().kv_get("ns", "k").expect("kv").as_deref(),
        Some("v")
    );
}

/// A workflow may put a NUL in a name (`"a\0b"` in YAML). SQLite keeps it;
/// PostgreSQL's text cannot, and stores U+FFFD instead: either way the run is
/// recorded, and a key finds what was stored under it.
fn a_nul_in_names_and_keys_is_recorded(fx: &Fixture) {
    let store = fx.open();
    let key = "a\0b";
    let run_id = store
        .begin_run("wf\0", "trun.yaml", &[], &[job(key, &[], &["s\0"])])
        .expect("begin");
    store
        .record(
            run_id,
            &[
                Event::JobStarted {
                    job: key.into(),
                    at: 1,
                },
                started(key, 0, 1, 2),
                finished(key, 0, Status::Failure, Some(1), Some("bad\0"), 1, 3, 1),
                job_finished(key, Status::Failure, Some("why\0"), 4),
            ],
        )
        .expect("record");
    store
        .set_definition_versions(run_id, &[(key.to_string(), 0, 2)])
        .expect("versions");
    let detail = store.run(run_id).expect("run").expect("exists");
    let same = |s: &str| s.replace('\0', "\u{FFFD}");
    assert_eq!(
        detail.jobs.len(),
        1,
        "events found the job begin_run recorded"
    );
    assert_eq!(same(&detail.jobs[0].key), "a\u{FFFD}b");
    assert_eq!(detail.jobs[0].status, Status::Failure);
    let step = &detail.jobs[0].steps[0];
    assert_eq!(step.status, Status::Failure);
    assert_eq!(step.definition_version, Some(2));
    assert_eq!(same(step.reason.as_deref().unwrap_or("")), "bad\u{FFFD}");
    store.kv_set("ns\0", "k\0", "v\0").expect("kv");
    assert_eq!(
        store
            .kv_get("ns\0", "k\0")
            .expect("kv")
            .as_deref()
            .map(same),
        Some("v\u{FFFD}".to_string())
    );
}

// ---- run control (`trun serve`) ---------------------------------------------

fn server_run(id: &str, key: Option<&str>) -> ServerRun {
    ServerRun {
        id: id.into(),
        run_id: 0,
        request: "{}".into(),
        idempotency_key: key.map(str::to_string),
        body_hash: key.map(|_| vec![1, 2, 3]),
        created_at: 1,
        status: Status::Queued,
    }
}

fn queue(store: &dyn Store, id: &str, key: Option<&str>) -> Queued {
    store
        .queue_run(
            "wf",
            "wf.yaml",
            &[],
            &[job("a", &[], &[])],
            &server_run(id, key),
        )
        .expect("queue a run")
}

fn one_idempotency_key_makes_one_run_across_two_connections(fx: &Fixture) {
    let (one, two) = (fx.open(), fx.open());
    let Queued::New(first) = queue(&*one, "r1", Some("k")) else {
        panic!("the first use of a key makes a run")
    };
    let Queued::Existing(again) = queue(&*two, "r2", Some("k")) else {
        panic!("the second use of a key finds the run")
    };
    assert_eq!(again.id, "r1");
    assert_eq!(again.run_id, first.run_id);
    assert_eq!(again.body_hash, Some(vec![1, 2, 3]));
    assert_eq!(two.server_runs().unwrap().len(), 1);
    assert_eq!(one.server_runs().unwrap()[0].status, Status::Queued);
    let Queued::New(other) = queue(&*two, "r3", None) else {
        panic!("a run without a key is always new")
    };
    let listed: Vec<(String, i64)> = one
        .server_runs()
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.run_id))
        .collect();
    assert_eq!(
        listed,
        [
            ("r1".to_string(), first.run_id),
            ("r3".into(), other.run_id)
        ]
    );
    let detail = one.run(first.run_id).unwrap().expect("the queued run");
    assert_eq!(detail.run.status, Status::Queued);
    assert_eq!(detail.jobs[0].status, Status::Pending);
}

fn one_idempotency_key_makes_one_run_when_writers_race(fx: &Fixture) {
    const WRITERS: usize = 4;
    let stores: Vec<Box<dyn Store>> = (0..WRITERS).map(|_| fx.open()).collect();
    let results: Vec<Queued> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| scope.spawn(move || queue(&**store, &format!("r{i}"), Some("k"))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer"))
            .collect()
    });
    let new: Vec<&ServerRun> = results
        .iter()
        .filter_map(|q| match q {
            Queued::New(r) => Some(r),
            Queued::Existing(_) => None,
        })
        .collect();
    assert_eq!(new.len(), 1, "one writer makes the run: {results:?}");
    for q in &results {
        let (Queued::New(r) | Queued::Existing(r)) = q;
        assert_eq!(r.run_id, new[0].run_id, "{results:?}");
    }
    assert_eq!(stores[0].server_runs().unwrap().len(), 1);
    assert_eq!(stores[0].runs(10).unwrap().len(), 1, "no orphan run");
}

/// A transition without its time: job, from, to, reason.
type Move = (Option<String>, Option<Status>, Status, Option<String>);

fn transitions_are_checked_recorded_and_a_retry_keeps_what_succeeded(fx: &Fixture) {
    let store = fx.open();
    let Queued::New(run) = store
        .queue_run(
            "wf",
            "wf.yaml",
            &[],
            &[job("a", &[], &["s"]), job("b", &[], &["s"])],
            &server_run("r", None),
        )
        .unwrap()
    else {
        panic!("a run without a key is new")
    };
    let id = run.run_id;
    let illegal = store.transition_run(id, Status::Paused, "x").unwrap();
    assert_eq!(
        illegal.unwrap_err().to_string(),
        "cannot go from `queued` to `paused`"
    );
    assert_eq!(
        store
            .transition_run(id, Status::Running, "started")
            .unwrap(),
        Ok(Status::Queued)
    );
    let out = BTreeMap::from([("v".to_string(), "1".to_string())]);
    store
        .record(
            id,
            &[
                Event::JobStarted {
                    job: "b".into(),
                    at: 10,
                },
                Event::JobFinished {
                    job: "b".into(),
                    status: Status::Success,
                    reason: None,
                    at: 11,
                    duration_ms: 1,
                    outputs: out.clone(),
                },
            ],
        )
        .unwrap();
    store
        .transition_run(id, Status::Failure, "it failed")
        .unwrap()
        .unwrap();
    assert!(store
        .transition_run(id, Status::Running, "x")
        .unwrap()
        .is_err());
    let ended = store.run(id).unwrap().unwrap();
    assert_eq!(ended.run.status, Status::Failure);
    assert!(ended.run.finished_at.is_some());
    assert_eq!(ended.jobs[0].status, Status::Failure, "closed with the run");
    let retry = store.retry_run(id, "again").unwrap().unwrap();
    assert_eq!(retry.attempt, 2);
    assert_eq!(
        retry.kept,
        BTreeMap::from([("b".to_string(), out)]),
        "job b succeeded and is kept with its outputs"
    );
    let again = store.run(id).unwrap().unwrap();
    assert_eq!(again.run.status, Status::Queued);
    assert_eq!(again.jobs[0].status, Status::Pending);
    assert_eq!(again.jobs[0].steps[0].status, Status::Pending);
    assert_eq!(again.jobs[1].status, Status::Success);
    assert!(store.retry_run(id, "twice").unwrap().is_err(), "queued");
    let moves: Vec<Move> = store
        .transitions(id)
        .unwrap()
        .into_iter()
        .map(|t| (t.job, t.from, t.to, t.reason))
        .collect();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        moves,
        [
            (None, None, Status::Queued, None),
            (None, Some(Status::Queued), Status::Running, s("started")),
            (s("b"), Some(Status::Pending), Status::Running, None),
            (s("b"), Some(Status::Running), Status::Success, None),
            (
                s("a"),
                Some(Status::Pending),
                Status::Failure,
                s("the run ended")
            ),
            (None, Some(Status::Running), Status::Failure, s("it failed")),
            (s("a"), Some(Status::Failure), Status::Pending, s("again")),
            (None, Some(Status::Failure), Status::Queued, s("again")),
        ]
    );
    let times: Vec<Millis> = store
        .transitions(id)
        .unwrap()
        .iter()
        .map(|t| t.at)
        .collect();
    assert!(times.iter().all(|&t| t > 0), "{times:?}");
    assert!(matches!(
        store.transition_run(id + 1000, Status::Running, "x"),
        Err(StateError::NoSuchRun(_))
    ));
}

fn job_transitions_come_from_the_recorded_events(fx: &Fixture) {
    let store = fx.open();
    let id = store
        .begin_run("wf", "wf.yaml", &[], &[job("a", &[], &["s"])])
        .unwrap();
    let waiting = |at| Event::JobWaiting {
        job: "a".into(),
        reason: "group g is full".into(),
        at,
    };
    store
        .record(
            id,
            &[
                waiting(1),
                waiting(2),
                Event::JobStarted {
                    job: "a".into(),
                    at: 3,
                },
                job_finished("a", Status::Success, None, 4),
                Event::RunFinished {
                    run_id: id,
                    status: Status::Success,
                    at: 5,
                    duration_ms: 5,
                },
            ],
        )
        .unwrap();
    // A run already final keeps its status when the engine ends it later.
    let other = store
        .begin_run("wf", "wf.yaml", &[], &[job("a", &[], &[])])
        .unwrap();
    store
        .transition_run(other, Status::Interrupted, "the server stopped")
        .unwrap()
        .unwrap();
    store
        .record(
            other,
            &[Event::RunFinished {
                run_id: other,
                status: Status::Cancelled,
                at: 9,
                duration_ms: 9,
            }],
        )
        .unwrap();
    assert_eq!(
        store.run(other).unwrap().unwrap().run.status,
        Status::Interrupted
    );
    let moves: Vec<(Option<String>, Option<Status>, Status, Millis)> = store
        .transitions(id)
        .unwrap()
        .into_iter()
        .map(|t| (t.job, t.from, t.to, t.at))
        .collect();
    let a = Some("a".to_string());
    assert_eq!(
        moves[1..],
        [
            (a.clone(), Some(Status::Pending), Status::Waiting, 1),
            (a.clone(), Some(Status::Waiting), Status::Running, 3),
            (a.clone(), Some(Status::Running), Status::Success, 4),
            (None, Some(Status::Running), Status::Success, 5),
        ],
        "waiting twice is one transition"
    );
    assert_eq!(moves[0].2, Status::Running, "begin_run records the start");
}

fn a_group_holds_at_most_max_across_connections_and_frees_a_finished_runs_slot(fx: &Fixture) {
    let (one, two) = (fx.open(), fx.open());
    let run = |s: &dyn Store| {
        s.begin_run("wf", "wf.yaml", &[], &[job("a", &[], &[])])
            .unwrap()
    };
    let (r1, r2) = (run(&*one), run(&*two));
    assert_eq!(one.claim_slot("g", 2, r1, "a").unwrap(), Claim::Claimed);
    assert_eq!(one.claim_slot("g", 2, r1, "a").unwrap(), Claim::Claimed);
    assert_eq!(two.claim_slot("g", 2, r2, "a").unwrap(), Claim::Claimed);
    assert_eq!(
        two.claim_slot("g", 2, r2, "b").unwrap(),
        Claim::Full(vec![(r1, "a".into()), (r2, "a".into())])
    );
    assert_eq!(
        two.claim_slot("other", 1, r2, "b").unwrap(),
        Claim::Claimed,
        "groups are apart"
    );
    one.release_slots(r1, Some("a")).unwrap();
    assert_eq!(two.claim_slot("g", 2, r2, "b").unwrap(), Claim::Claimed);
    // A run that ended holds nothing, even if it never gave its slots back.
    assert!(matches!(
        one.claim_slot("g", 2, r1, "c").unwrap(),
        Claim::Full(_)
    ));
    one.mark_run(r2, Status::Cancelled).unwrap();
    assert_eq!(one.claim_slot("g", 2, r1, "c").unwrap(), Claim::Claimed);
    one.release_slots(r1, None).unwrap();
    let r3 = run(&*two);
    assert_eq!(two.claim_slot("g", 1, r3, "a").unwrap(), Claim::Claimed);
}

fn racing_claimers_never_exceed_a_groups_limit(fx: &Fixture) {
    const CLAIMERS: usize = 6;
    const MAX: u32 = 2;
    let stores: Vec<Box<dyn Store>> = (0..CLAIMERS).map(|_| fx.open()).collect();
    let runs: Vec<i64> = stores
        .iter()
        .map(|s| {
            s.begin_run("wf", "wf.yaml", &[], &[job("a", &[], &[])])
                .unwrap()
        })
        .collect();
    for round in 0..5 {
        let group = format!("g{round}");
        let claimed: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = stores
                .iter()
                .zip(&runs)
                .map(|(store, &run)| {
                    let group = &group;
                    scope.spawn(move || {
                        store.claim_slot(group, MAX, run, "a").expect("claim") == Claim::Claimed
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("claimer"))
                .collect()
        });
        let won = claimed.iter().filter(|&&c| c).count();
        assert_eq!(won, MAX as usize, "round {round}: {claimed:?}");
    }
}

fn hostile_run_control_text_is_stored_as_text(fx: &Fixture) {
    let store = fx.open();
    let hostile = "x'); DROP TABLE runs; -- $(touch /tmp/pwned) \0\u{0}";
    let nul = "k\0ey";
    let Queued::New(run) = queue(&*store, hostile, Some(nul)) else {
        panic!("a new key makes a run")
    };
    let Queued::Existing(found) = queue(&*store, "other", Some(nul)) else {
        panic!("the same key, NUL and all, finds the run")
    };
    assert_eq!(found.run_id, run.run_id);
    let same = |s: &str| s.replace('\0', "\u{FFFD}");
    assert_eq!(same(&found.id), same(hostile));
    store
        .transition_run(run.run_id, Status::Cancelled, hostile)
        .unwrap()
        .unwrap();
    let reasons: Vec<String> = store
        .transitions(run.run_id)
        .unwrap()
        .into_iter()
        .filter_map(|t| t.reason)
        .collect();
    assert!(
        reasons.iter().any(|r| same(r) == same(hostile)),
        "{reasons:?}"
    );
    let live = store
        .begin_run("wf", "wf.yaml", &[], &[job("a", &[], &[])])
        .unwrap();
    assert_eq!(
        store.claim_slot(hostile, 1, live, nul).unwrap(),
        Claim::Claimed
    );
    let Claim::Full(holders) = store.claim_slot(hostile, 1, live, "b").unwrap() else {
        panic!("the group of one is full")
    };
    let holders: Vec<(i64, String)> = holders.into_iter().map(|(r, h)| (r, same(&h))).collect();
    assert_eq!(holders, [(live, same(nul))]);
    store.release_slots(live, Some(nul)).unwrap();
    assert_eq!(
        store.claim_slot(hostile, 1, live, "b").unwrap(),
        Claim::Claimed,
        "the slot was given back under the same holder"
    );
    assert_eq!(store.runs(10).unwrap().len(), 2, "the runs table is there");
}
