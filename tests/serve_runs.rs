//! `trun serve` runs several runs at once, over real HTTP against the real
//! server: their jobs share one `-j`; a job of the workspace runs in one run
//! at a time; `concurrency` groups (job and workflow level, `max: N`) hold
//! across runs, from the times the steps wrote and from the recorded
//! transitions; a job's `cancel-in-progress` stops the holder in another run
//! (its processes gone from /proc).

mod common;

use common::server::{last_run_transition, most_at_once, most_running, waiting_reasons, Server};
use common::{processes_running, wait_for, Reaper, Test};
use serde_json::{json, Value};
use std::time::Duration;

/// A step that writes `t-N`: the ns it started and ended, around a sleep.
fn timed_step(n: &str, secs: &str) -> String {
    format!(r#"start=$(date +%s%N); sleep {secs}; echo "$start $(date +%s%N)" > "t-{n}""#)
}

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| i.to_string()).collect()
}

/// Creates one run per name of the inline workflow `yaml(name)`, all
/// before any can end; waits for each and returns their records.
fn run_all(s: &Server, names: &[String], yaml: impl Fn(&str) -> String) -> Vec<Value> {
    let ids: Vec<String> = names
        .iter()
        .map(|n| s.create(&json!({ "yaml": yaml(n) })))
        .collect();
    ids.iter()
        .map(|id| {
            let run = s.wait_done(id);
            assert_eq!(run["status"], "success", "{run}");
            run
        })
        .collect()
}

#[test]
fn runs_go_at_once_and_their_jobs_share_one_j() {
    // Four runs, each of its own job: with -j 4 all four run at once; with
    // -j 2 never more than two, though four runs are running.
    for (j, expect) in [("4", 4), ("2", 2)] {
        let t = Test::new();
        let s = Server::start(&t, &["-j", j]);
        let ns = names(4);
        let runs = run_all(&s, &ns, |n| {
            format!(
                "jobs:\n  job{n}:\n    steps:\n      - run: '{}'\n",
                timed_step(n, "0.6")
            )
        });
        assert_eq!(most_at_once(&t, &ns), expect, "-j {j}");
        assert_eq!(most_running(&runs, false), expect, "-j {j}: recorded jobs");
        assert_eq!(most_running(&runs, true), 4, "-j {j}: the runs themselves");
    }
}

#[test]
fn a_job_runs_in_one_run_at_a_time_and_the_other_says_why_it_waits() {
    let t = Test::new().file(
        "build.yaml",
        &format!(
            "inputs:\n  n: {{ type: string }}\njobs:\n  build:\n    steps:\n      - run: '{}'\n",
            timed_step("${{ inputs.n }}", "0.4")
        ),
    );
    let s = Server::start(&t, &["-j", "4"]);
    let ns = names(3);
    let ids: Vec<String> = ns
        .iter()
        .map(|n| s.create(&json!({"workflow": "build.yaml", "inputs": {"n": n}})))
        .collect();
    let runs: Vec<Value> = ids.iter().map(|id| s.wait_done(id)).collect();
    for run in &runs {
        assert_eq!(run["status"], "success", "{run}");
    }
    assert_eq!(most_at_once(&t, &ns), 1, "`build` ran in two runs at once");
    let reasons = waiting_reasons(&runs, false);
    assert!(!reasons.is_empty(), "no job waited: {runs:?}");
    for r in &reasons {
        assert!(
            r.starts_with("build is running in run ")
                && r.ends_with(" (a job runs in one run at a time)"),
            "{r}"
        );
    }
}

#[test]
fn a_job_concurrency_group_with_max_2_holds_across_6_runs() {
    let t = Test::new();
    let s = Server::start(&t, &["-j", "6"]);
    let ns = names(6);
    let runs = run_all(&s, &ns, |n| {
        format!(
            "jobs:\n  deploy{n}:\n    concurrency: {{ group: deploy, max: 2 }}\n    steps:\n      - run: '{}'\n",
            timed_step(n, "0.4")
        )
    });
    assert_eq!(
        most_at_once(&t, &ns),
        2,
        "the limit did not hold, or nothing ran at once"
    );
    assert_eq!(most_running(&runs, false), 2);
    let waits = waiting_reasons(&runs, false);
    assert!(waits.len() >= 4, "{waits:?}");
    for w in &waits {
        assert!(
            w.starts_with("concurrency group `deploy` is full (2 running: run "),
            "{w}"
        );
    }
}

#[test]
fn a_workflow_concurrency_group_with_max_2_holds_across_6_runs_the_rest_wait_queued() {
    let t = Test::new();
    let s = Server::start(&t, &["-j", "6"]);
    let ns = names(6);
    let runs = run_all(&s, &ns, |n| {
        format!(
            "concurrency: {{ group: deploy, max: 2 }}\njobs:\n  deploy{n}:\n    steps:\n      - run: '{}'\n",
            timed_step(n, "0.4")
        )
    });
    assert_eq!(most_at_once(&t, &ns), 2);
    assert_eq!(most_running(&runs, true), 2, "recorded runs");
    let waits = waiting_reasons(&runs, true);
    assert!(waits.len() >= 4, "{waits:?}");
    let held = regex_like_two_runs(&waits[0]);
    assert!(held, "{}", waits[0]);
    assert!(s.metric("trun_jobs_blocked_by_concurrency_total") >= 4.0);
}

/// `concurrency group `deploy` is full (2 running: run A, run B)`.
fn regex_like_two_runs(reason: &str) -> bool {
    let Some(rest) = reason.strip_prefix("concurrency group `deploy` is full (2 running: ") else {
        return false;
    };
    let Some(list) = rest.strip_suffix(')') else {
        return false;
    };
    let parts: Vec<&str> = list.split(", ").collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            p.strip_prefix("run ")
                .is_some_and(|id| id.parse::<i64>().is_ok())
        })
}

#[test]
fn a_jobs_cancel_in_progress_stops_the_holder_in_another_run() {
    let t = Test::new().file(
        "deploy.yaml",
        &common::unindent(
            r#"
            inputs:
              n: { type: string }
              secs: { type: string, default: "0" }
            jobs:
              go:
                concurrency: { group: prod, cancel-in-progress: true }
                steps:
                  - run: echo "${{ inputs.n }}" >> ran.txt; sleep ${{ inputs.secs }}
            "#,
        ),
    );
    let s = Server::start(&t, &["-j", "4"]);
    let marker = common::marker();
    let first = s.create(&json!({"workflow": "deploy.yaml", "inputs": {"n": "1", "secs": marker}}));
    wait_for("the first run's sleep", Duration::from_secs(30), || {
        !processes_running(&["sleep", &marker]).is_empty()
    });
    let _reaper = Reaper(processes_running(&["sleep", &marker]));
    let second = s.create(&json!({"workflow": "deploy.yaml", "inputs": {"n": "2"}}));

    let run = s.wait_done(&first);
    assert_eq!(run["status"], "cancelled", "{run}");
    assert!(
        processes_running(&["sleep", &marker]).is_empty(),
        "the first run's step is still running"
    );
    let run = s.wait_done(&second);
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(t.read("ran.txt"), "1\n2\n");
}

#[test]
fn a_run_waiting_for_its_group_when_the_server_stops_runs_after_the_restart() {
    let t = Test::new().file(
        "gate.yaml",
        &common::unindent(
            r#"
            inputs:
              n: { type: string }
            concurrency: { group: gate }
            jobs:
              a:
                steps:
                  - run: |
                      echo "${{ inputs.n }}" >> started.txt
                      while [ ! -f go ]; do sleep 0.05; done
            "#,
        ),
    );
    let mut s = Server::start(&t, &["--grace", "1s"]);
    let first = s.create(&json!({"workflow": "gate.yaml", "inputs": {"n": "1"}}));
    wait_for("the first run's step", Duration::from_secs(30), || {
        t.exists("started.txt")
    });
    let second = s.create(&json!({"workflow": "gate.yaml", "inputs": {"n": "2"}}));
    let run = s.wait_run(&second, "the second run to wait", |r| {
        r["status"] == "waiting"
    });
    let waited = last_run_transition(&run);
    assert_eq!(waited["to"], "waiting");
    let first_store_id = s.run(&first)["store_run_id"].as_i64().unwrap();
    assert_eq!(
        waited["reason"],
        format!("concurrency group `gate` is full (1 running: run {first_store_id})")
    );
    let out = s.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(t.read("started.txt"), "1\n");

    t.write("go", "");
    let s = Server::start(&t, &["--grace", "1s"]);
    assert_eq!(s.run(&first)["status"], "interrupted");
    let run = s.wait_done(&second);
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(t.read("started.txt"), "1\n2\n");
}
