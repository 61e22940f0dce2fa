//! Pinned renderings and log selection against a real SQLite store.

use super::*;
use crate::event::{Event, JobInfo, Millis, Status, StepInfo};
use crate::state::{
    db_path, AttemptDetail, JobDetail, RunDetail, RunSummary, SqliteStore, StepDetail, Store,
};
use std::collections::BTreeMap;
use time::UtcOffset;

const T0: Millis = 1_795_403_525_000; // 2026-11-23 03:12:05 UTC

fn utc(color: bool) -> RenderOptions {
    RenderOptions {
        workers: Default::default(),
        color,
        offset: UtcOffset::UTC,
    }
}

fn summary(id: i64, status: Status, duration_ms: Option<u64>, args: &[&str]) -> RunSummary {
    RunSummary {
        id,
        workflow: "app".into(),
        workflow_path: "/ws/trun.yaml".into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        status,
        started_at: T0 + id * 61_000,
        finished_at: duration_ms.map(|d| T0 + id * 61_000 + d as i64),
        duration_ms,
        pid: 4242,
        host: "box".into(),
    }
}

fn step(index: usize, id: &str, name: &str, status: Status) -> StepDetail {
    StepDetail {
        index,
        id: id.into(),
        name: name.into(),
        status,
        reason: None,
        exit_code: None,
        started_at: None,
        finished_at: None,
        duration_ms: None,
        outputs: BTreeMap::new(),
        log_path: None,
        continue_on_error: false,
        definition_version: None,
        attempts: Vec::new(),
    }
}

fn attempt(n: u32, status: Status) -> AttemptDetail {
    AttemptDetail {
        attempt: n,
        status,
        exit_code: None,
        started_at: None,
        finished_at: None,
        reason: None,
    }
}

fn job(key: &str, status: Status, reason: Option<&str>, steps: Vec<StepDetail>) -> JobDetail {
    JobDetail {
        key: key.into(),
        job_id: key.split(' ').next().unwrap_or(key).into(),
        name: key.into(),
        matrix: BTreeMap::new(),
        needs: Vec::new(),
        status,
        reason: reason.map(str::to_string),
        started_at: None,
        finished_at: None,
        duration_ms: None,
        outputs: BTreeMap::new(),
        steps,
    }
}

fn detail() -> RunDetail {
    let mut fetch = step(0, "fetch", "fetch", Status::Skipped);
    fetch.reason = Some("up to date".into());
    let mut compile = step(1, "compile", "cargo build --release", Status::Success);
    compile.exit_code = Some(0);
    compile.duration_ms = Some(12_345);
    compile.attempts = vec![attempt(1, Status::Failure), attempt(2, Status::Success)];
    let mut lint = step(2, "step-3", "cargo clippy", Status::Failure);
    lint.exit_code = Some(1);
    lint.duration_ms = Some(900);
    lint.reason = Some("exit code 1".into());
    lint.continue_on_error = true;
    let mut unit = step(0, "step-1", "cargo test", Status::Interrupted);
    unit.duration_ms = None;
    let mut build = job("build", Status::Success, None, vec![fetch, compile, lint]);
    build.duration_ms = Some(13_400);
    let test = job("test (1, linux)", Status::Interrupted, None, vec![unit]);
    let deploy = job(
        "deploy",
        Status::Skipped,
        Some("needs failed: test (1, linux)"),
        vec![step(0, "push", "push", Status::Skipped)],
    );
    RunDetail {
        run: summary(
            17,
            Status::Interrupted,
            None,
            &["trun", "deploy", "-i", "msg=a b"],
        ),
        jobs: vec![build, test, deploy],
    }
}

#[test]
fn history_table_is_pinned() {
    let runs = [
        summary(18, Status::Running, None, &["trun"]),
        summary(17, Status::Failure, Some(4_200), &["trun", "build", "test"]),
        summary(3, Status::Success, Some(125_000), &["trun", "ci"]),
    ];
    assert_eq!(
        render_history_with(&runs, &utc(false)),
        "\
RUN  STATUS   STARTED              DURATION  WORKFLOW  ARGS
18   running  2026-11-23 03:30:23  -         app       trun
17   failure  2026-11-23 03:29:22  4.2s      app       trun build test
3    success  2026-11-23 03:15:08  2m05s     app       trun ci
"
    );
    assert_eq!(
        render_history_with(&[], &utc(false)),
        "no runs recorded yet\n"
    );
}

#[test]
fn colour_does_not_change_the_layout() {
    let runs = [summary(17, Status::Failure, Some(4_200), &["trun"])];
    let coloured = render_history_with(&runs, &utc(true));
    assert!(coloured.contains("\x1b[31mfailure\x1b[0m"), "{coloured:?}");
    let stripped = regex_free_strip(&coloured);
    assert_eq!(stripped, render_history_with(&runs, &utc(false)));
}

fn regex_free_strip(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn show_is_pinned() {
    assert_eq!(
        render_run_with(&detail(), &utc(false)),
        "\
run 17 · app · interrupted
  workflow  /ws/trun.yaml
  command   trun deploy -i 'msg=a b'
  started   2026-11-23 03:29:22
  process   pid 4242 on box

JOB / STEP                            STATUS       EXIT  DURATION  REASON
build                                 success            13.4s
  1. fetch                            skipped                      up to date
  2. cargo build --release [compile]  success      0     12.3s     2 attempts
  3. cargo clippy                     failure      1     900ms     exit code 1; continue-on-error
test (1, linux)                       interrupted
  1. cargo test                       interrupted
deploy                                skipped                      needs failed: test (1, linux)
  1. push                             skipped
"
    );
}

#[test]
fn show_json_round_trips() {
    let detail = detail();
    let json = run_json(&detail).expect("json");
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(value["id"], 17, "run fields are at the top level");
    assert_eq!(value["status"], "interrupted");
    assert_eq!(value["jobs"][0]["steps"][0]["reason"], "up to date");
    let back: RunDetail = serde_json::from_str(&json).expect("parse back");
    assert_eq!(back, detail);
    let list = history_json(std::slice::from_ref(&detail.run)).expect("json");
    let back: Vec<RunSummary> = serde_json::from_str(&list).expect("parse back");
    assert_eq!(back, [detail.run]);
}

#[test]
fn durations_and_times_format_for_people() {
    assert_eq!(format_duration(0), "0ms");
    assert_eq!(format_duration(999), "999ms");
    assert_eq!(format_duration(1_000), "1.0s");
    assert_eq!(format_duration(59_949), "59.9s");
    assert_eq!(format_duration(60_000), "1m00s");
    assert_eq!(format_duration(3_725_000), "1h02m");
    let plus_two = UtcOffset::from_hms(2, 0, 0).expect("offset");
    assert_eq!(format_time(T0, plus_two), "2026-11-23 05:12:05");
}

/// A store with one run: build (fetch up to date, compile, test), and a
/// matrix job `test` with two legs.
fn store_with_logs() -> (tempfile::TempDir, SqliteStore, i64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&db_path(dir.path())).expect("open");
    let info = |key: &str, job_id: &str, steps: &[&str]| JobInfo {
        key: key.into(),
        job_id: job_id.into(),
        name: key.into(),
        needs: Vec::new(),
        matrix: BTreeMap::new(),
        steps: steps
            .iter()
            .enumerate()
            .map(|(index, id)| StepInfo {
                index,
                id: id.to_string(),
                name: id.to_string(),
            })
            .collect(),
    };
    let jobs = [
        info("build", "build", &["fetch", "compile", "step-3"]),
        info("test (1)", "test", &["step-1"]),
        info("test (2)", "test", &["step-1"]),
    ];
    let run = store
        .begin_run("app", "trun.yaml", &[], &jobs)
        .expect("begin");
    let mut events = Vec::new();
    for job in &jobs {
        for step in &job.steps {
            let up_to_date = step.id == "fetch";
            events.push(Event::StepFinished {
                job: job.key.clone(),
                step: step.index,
                status: if up_to_date {
                    Status::Skipped
                } else {
                    Status::Success
                },
                exit_code: (!up_to_date).then_some(0),
                reason: up_to_date.then(|| "up to date".to_string()),
                attempt: 1,
                at: T0,
                duration_ms: 1,
                outputs: BTreeMap::new(),
                continue_on_error: false,
                log_path: (!up_to_date)
                    .then(|| format!(".trun/logs/{run}/{}/{}.log", job.key, step.index + 1)),
            });
        }
    }
    store.record(run, &events).expect("record");
    (dir, store, run)
}

fn labels(found: &[(String, super::LogRef)]) -> Vec<&str> {
    found.iter().map(|(label, _)| label.as_str()).collect()
}

#[test]
fn logs_resolve_runs_jobs_and_steps() {
    let (dir, store, run) = store_with_logs();
    let all = logs(&store, dir.path(), run, None).expect("all");
    assert_eq!(
        labels(&all),
        [
            "build.compile",
            "build.step-3",
            "test (1).step-1",
            "test (2).step-1"
        ]
    );
    assert_eq!(
        all[0].1,
        super::LogRef::File(dir.path().join(format!(".trun/logs/{run}/build/2.log"))),
        "relative paths are resolved against the workspace"
    );
    let build = logs(&store, dir.path(), run, Some("build")).expect("job");
    assert_eq!(labels(&build), ["build.compile", "build.step-3"]);
    let by_id = logs(&store, dir.path(), run, Some("build.compile")).expect("step by id");
    assert_eq!(labels(&by_id), ["build.compile"]);
    let by_position = logs(&store, dir.path(), run, Some("build.3")).expect("step by position");
    assert_eq!(labels(&by_position), ["build.step-3"]);
    let matrix = logs(&store, dir.path(), run, Some("test")).expect("every leg");
    assert_eq!(labels(&matrix), ["test (1).step-1", "test (2).step-1"]);
    let leg = logs(&store, dir.path(), run, Some("test (2).1")).expect("one leg");
    assert_eq!(labels(&leg), ["test (2).step-1"]);
}

#[test]
fn logs_explain_what_they_cannot_find() {
    let (dir, store, run) = store_with_logs();
    let message = |selector| {
        logs(&store, dir.path(), run, Some(selector))
            .expect_err("should fail")
            .to_string()
    };
    assert_eq!(
        message("buld"),
        format!("run {run} has no job `buld`; did you mean `build`?")
    );
    assert_eq!(
        message("buld.compile"),
        format!("run {run} has no job `buld.compile`; did you mean `build.compile`?")
    );
    assert_eq!(
        message("build.compil"),
        format!("job `build` of run {run} has no step `compil`; did you mean `compile`?")
    );
    assert_eq!(
        message("build.9"),
        format!("job `build` of run {run} has no step `9`; it has `fetch`, `compile`, `step-3`")
    );
    assert_eq!(
        message("zzzzzzzz"),
        format!("run {run} has no job `zzzzzzzz`; it has `build`, `test (1)`, `test (2)`")
    );
    assert_eq!(
        message("build.fetch"),
        format!("run {run} recorded no log for build.fetch (skipped: up to date)")
    );
    assert_eq!(
        logs(&store, dir.path(), run + 1, None)
            .expect_err("no run")
            .to_string(),
        format!(
            "there is no run {} in this workspace's history; `trun history` lists the runs",
            run + 1
        )
    );
}
