//! `trun serve`'s run control, over real HTTP against the real server: pause
//! and resume, advance one step, run up to `max_steps`, illegal transitions
//! (409), the transitions recorded for a run and the metrics that count them,
//! a job behind a failed need, and a restart that runs what was queued.

mod common;

use common::server::{last_run_transition, most_at_once, most_running, Server};
use common::{processes_running, wait_for, Reaper, Test};
use serde_json::{json, Value};
use std::time::Duration;

/// Five steps of one job: the first waits for a `go` file (so a test can
/// pause the run while it runs), each writes `sN.t` with the time it started.
const STEPS: &str = r#"
    jobs:
      a:
        steps:
          - id: s1
            run: |
              date +%s%N > s1.t
              while [ ! -f go ]; do sleep 0.05; done
          - { id: s2, run: date +%s%N > s2.t }
          - { id: s3, run: date +%s%N > s3.t }
          - { id: s4, run: date +%s%N > s4.t }
          - { id: s5, run: date +%s%N > s5.t }
"#;

fn step_status(run: &Value, index: usize) -> String {
    run["run"]["jobs"][0]["steps"][index]["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn error_of(r: reqwest::blocking::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let v: Value = r.json().unwrap();
    (status, v["error"].clone())
}

/// The files `s1.t`..`s5.t` that exist, as step numbers.
fn started(t: &Test) -> Vec<usize> {
    (1..=5).filter(|n| t.exists(&format!("s{n}.t"))).collect()
}

/// Starts a run of `STEPS` and pauses it while its first step runs; returns
/// its id once that step has finished (the run then paused, nothing else started).
fn paused_after_first_step(t: &Test, s: &Server) -> String {
    t.write("steps.yaml", &common::unindent(STEPS));
    let id = s.create(&json!({"workflow": "steps.yaml"}));
    wait_for("the first step", Duration::from_secs(30), || {
        t.exists("s1.t")
    });
    let r = s.post(&format!("/api/v1/runs/{id}/pause"), &json!({}));
    assert_eq!(r.status().as_u16(), 202);
    let v: Value = r.json().unwrap();
    assert_eq!(v["status"], "paused");
    t.write("go", "");
    s.wait_run(&id, "the first step to finish", |r| {
        step_status(r, 0) == "success"
    });
    id
}

/// Waits long enough for a step that should not start to have started.
fn settle() {
    std::thread::sleep(Duration::from_millis(800));
}

#[test]
fn a_paused_run_lets_its_running_step_finish_starts_nothing_then_resumes_to_the_end() {
    let t = Test::new();
    let s = Server::start(&t, &[]);
    let id = paused_after_first_step(&t, &s);
    settle();
    assert_eq!(started(&t), [1], "a step started while the run was paused");
    let run = s.run(&id);
    assert_eq!(run["status"], "paused");
    assert_eq!(run["run"]["status"], "paused");
    assert_eq!(step_status(&run, 1), "pending");
    assert_eq!(s.metric("trun_running_steps"), 0.0);

    let resumed_at = now_ns();
    let r = s.post(&format!("/api/v1/runs/{id}/resume"), &json!({}));
    assert_eq!(r.status().as_u16(), 202);
    let run = s.wait_done(&id);
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(started(&t), [1, 2, 3, 4, 5]);
    let s2: u128 = t.read("s2.t").trim().parse().unwrap();
    assert!(s2 >= resumed_at, "step 2 started before the resume");

    // The run's record says what happened, in order, with reasons.
    let run_moves: Vec<(String, String, String)> = run["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t.get("job").is_none())
        .map(|t| {
            (
                t["from"].as_str().unwrap_or("none").to_string(),
                t["to"].as_str().unwrap().to_string(),
                t["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected = [
        ("none", "queued", ""),
        ("queued", "running", "started"),
        ("running", "paused", "paused over the API"),
        ("paused", "running", "resumed over the API"),
        ("running", "success", ""),
    ];
    assert_eq!(
        run_moves,
        expected
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect::<Vec<_>>()
    );
    let job_moves: Vec<(&str, &str)> = run["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["job"] == "a")
        .map(|t| (t["from"].as_str().unwrap(), t["to"].as_str().unwrap()))
        .collect();
    assert_eq!(job_moves, [("pending", "running"), ("running", "success")]);

    // The metrics count exactly the recorded transitions.
    let transitions = run["transitions"].as_array().unwrap();
    let mut pairs: Vec<(String, String)> = transitions
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap_or("none").to_string(),
                t["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs.dedup();
    let mut counted = 0.0;
    for (from, to) in &pairs {
        let want = transitions
            .iter()
            .filter(|t| t["from"].as_str().unwrap_or("none") == from && t["to"] == to.as_str())
            .count() as f64;
        let got = s.metric(&format!(
            "trun_status_transitions_total{{from=\"{from}\",to=\"{to}\"}}"
        ));
        assert_eq!(got, want, "{from} -> {to}");
        counted += got;
    }
    assert_eq!(counted, transitions.len() as f64);
    assert_eq!(
        s.metric("trun_steps_finished_total{status=\"success\"}"),
        5.0
    );
    assert_eq!(
        s.metric("trun_runs_finished_total{status=\"success\"}"),
        1.0
    );
    assert_eq!(s.metric("trun_step_duration_seconds_count"), 5.0);
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn advance_runs_exactly_one_step_and_max_steps_runs_that_many() {
    let t = Test::new();
    let s = Server::start(&t, &[]);
    let id = paused_after_first_step(&t, &s);

    let r = s.post(&format!("/api/v1/runs/{id}/advance"), &json!({}));
    assert_eq!(r.status().as_u16(), 202);
    let run = s.wait_run(&id, "step 2 to run", |r| step_status(r, 1) == "success");
    settle();
    assert_eq!(started(&t), [1, 2], "advance ran more than one step");
    let run2 = s.run(&id);
    assert_eq!(run2["status"], "paused", "{run}");

    let r = s.post(&format!("/api/v1/runs/{id}/run"), &json!({"max_steps": 2}));
    assert_eq!(r.status().as_u16(), 202);
    s.wait_run(&id, "step 4 to run", |r| step_status(r, 3) == "success");
    settle();
    assert_eq!(
        started(&t),
        [1, 2, 3, 4],
        "max_steps 2 ran another number of steps"
    );
    let run = s.run(&id);
    assert_eq!(run["status"], "paused");
    let budget_spent = run["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["to"] == "paused" && t["reason"] == "its step budget is spent")
        .count();
    assert_eq!(budget_spent, 2, "{}", run["transitions"]);

    let r = s.post(&format!("/api/v1/runs/{id}/advance"), &json!({}));
    assert_eq!(r.status().as_u16(), 202);
    // The last step ends the run: a paused run whose steps are done finishes.
    let run = s.wait_done(&id);
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(started(&t), [1, 2, 3, 4, 5]);
}

#[test]
fn illegal_transitions_are_409_and_bad_requests_400() {
    let t = Test::new().file("ok.yaml", "jobs: { a: { steps: [ { run: 'true' } ] } }\n");
    let s = Server::start(&t, &[]);
    let id = s.create(&json!({"workflow": "ok.yaml"}));
    s.wait_done(&id);
    for action in ["pause", "resume", "advance"] {
        let (code, err) = error_of(s.post(&format!("/api/v1/runs/{id}/{action}"), &json!({})));
        assert_eq!(code, 409, "{action}: {err}");
        assert_eq!(err["code"], "run_finished");
    }
    let (code, err) = error_of(s.post(&format!("/api/v1/runs/{id}/run"), &json!({"max_steps": 3})));
    assert_eq!((code, err["code"].as_str()), (409, Some("run_finished")));
    let (code, err) = error_of(s.post(&format!("/api/v1/runs/{id}/pause"), &json!({})));
    assert_eq!(code, 409);
    assert_eq!(
        err["message"],
        format!("run {id}: cannot go from `success` to `paused`: it succeeded")
    );

    // A running run cannot be resumed, a paused one cannot be paused again.
    let id = paused_after_first_step(&t, &s);
    let (code, err) = error_of(s.post(&format!("/api/v1/runs/{id}/pause"), &json!({})));
    assert_eq!(
        (code, err["code"].as_str()),
        (409, Some("illegal_transition"))
    );
    s.post(&format!("/api/v1/runs/{id}/resume"), &json!({}));
    let run = s.wait_done(&id);
    assert_eq!(run["status"], "success");

    let (code, err) = error_of(s.post(&format!("/api/v1/runs/{id}/run"), &json!({"max_steps": 0})));
    assert_eq!((code, err["field"].as_str()), (400, Some("max_steps")));
    // `2.0` is a JSON Schema integer: it gets as far as the run (finished: 409);
    // `2.5` and `-1` are not.
    let (code, _) = error_of(s.post(
        &format!("/api/v1/runs/{id}/run"),
        &json!({"max_steps": 2.0}),
    ));
    assert_eq!(code, 409);
    for bad in [json!(2.5), json!(-1)] {
        let (code, err) = error_of(s.post(
            &format!("/api/v1/runs/{id}/run"),
            &json!({"max_steps": bad}),
        ));
        assert_eq!(
            (code, err["field"].as_str()),
            (400, Some("max_steps")),
            "{bad}"
        );
    }
    let (code, _) = error_of(s.post(
        &format!("/api/v1/runs/{id}/run"),
        &json!({"max_steps": "$(touch pwned)"}),
    ));
    assert_eq!(code, 400);
    assert!(!t.exists("pwned"));
    let (code, _) = error_of(s.post("/api/v1/runs/nope/pause", &json!({})));
    assert_eq!(code, 404);
}

#[test]
fn a_job_behind_a_failed_need_is_skipped_unless_its_if_says_always() {
    let t = Test::new().file(
        "needs.yaml",
        &common::unindent(
            r#"
            jobs:
              a: { steps: [ { run: exit 3 } ] }
              b: { needs: a, steps: [ { run: touch b.ran } ] }
              c: { needs: a, if: always(), steps: [ { run: touch c.ran } ] }
            "#,
        ),
    );
    let s = Server::start(&t, &[]);
    let id = s.create(&json!({"workflow": "needs.yaml"}));
    let run = s.wait_done(&id);
    assert_eq!(run["status"], "failure");
    assert!(!t.exists("b.ran"));
    assert!(t.exists("c.ran"));
    let b = run["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["job"] == "b")
        .unwrap()
        .clone();
    assert_eq!(b["from"], "pending");
    assert_eq!(b["to"], "skipped");
    assert_eq!(b["reason"], "needs not successful: a failure");
}

#[test]
fn sigterm_keeps_queued_runs_for_the_restarted_server_and_marks_the_running_one_interrupted() {
    let t = Test::new();
    let marker = common::marker();
    t.write(
        "long.yaml",
        &format!("jobs:\n  long:\n    steps:\n      - run: sleep {marker}\n"),
    );
    t.write(
        "after.yaml",
        "inputs:\n  n: { type: string }\njobs:\n  b:\n    steps:\n      - run: echo ran >> \"after-${{ inputs.n }}.txt\"\n",
    );
    // One run at a time, so the others stay queued behind the long one.
    let mut s = Server::start(&t, &["--grace", "1s", "--max-runs", "1"]);
    let long = s.create(&json!({"workflow": "long.yaml"}));
    wait_for("the step's sleep", Duration::from_secs(30), || {
        !processes_running(&["sleep", &marker]).is_empty()
    });
    let _reaper = Reaper(processes_running(&["sleep", &marker]));
    let queued: Vec<String> = (1..=2)
        .map(|n| s.create(&json!({"workflow": "after.yaml", "inputs": {"n": n.to_string()}})))
        .collect();
    assert_eq!(s.run(&queued[0])["status"], "queued");
    let out = s.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(processes_running(&["sleep", &marker]).is_empty());
    assert!(!t.exists("after-1.txt") && !t.exists("after-2.txt"));

    let s = Server::start(&t, &["--grace", "1s", "--max-runs", "1"]);
    for id in &queued {
        let run = s.wait_done(id);
        assert_eq!(run["status"], "success", "{run}");
    }
    // Each ran once, in the order they were created.
    assert_eq!(t.read("after-1.txt"), "ran\n");
    assert_eq!(t.read("after-2.txt"), "ran\n");
    let first: u64 = s.run(&queued[0])["run"]["finished_at"].as_u64().unwrap();
    let second: u64 = s.run(&queued[1])["run"]["started_at"].as_u64().unwrap();
    assert!(first <= second);

    let run = s.run(&long);
    assert_eq!(run["status"], "interrupted");
    assert_eq!(run["run"]["status"], "interrupted");
    let last = last_run_transition(&run);
    assert_eq!(last["from"], "running");
    assert_eq!(last["to"], "interrupted");
    assert_eq!(
        last["reason"],
        "the server stopped while the run was running"
    );
}

#[test]
fn retry_runs_the_failed_jobs_again_as_a_new_attempt_of_the_same_run_and_keeps_the_rest() {
    let t = Test::new().file(
        "flaky.yaml",
        &common::unindent(
            r#"
            jobs:
              a:
                outputs: { v: "${{ steps.s.outputs.v }}" }
                steps:
                  - { id: s, run: 'echo ran >> a.count; echo v=from-a >> "$TRUN_OUTPUT"' }
              b:
                needs: a
                steps:
                  - run: test -f fixed
              c:
                needs: [a, b]
                steps:
                  - run: echo "${{ needs.a.outputs.v }}" > c.txt
              d:
                needs: a
                steps:
                  - run: echo ran >> d.count
            "#,
        ),
    );
    let s = Server::start(&t, &[]);
    let id = s.create(&json!({"workflow": "flaky.yaml"}));
    let run = s.wait_done(&id);
    assert_eq!(run["status"], "failure");
    let store_id = run["store_run_id"].clone();
    assert!(!t.exists("c.txt"));

    t.write("fixed", "");
    let r = s.post(&format!("/api/v1/runs/{id}/retry"), &json!({}));
    assert_eq!(r.status().as_u16(), 202);
    let run = s.wait_done(&id);
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(run["attempt"], 2);
    assert_eq!(run["store_run_id"], store_id);
    // a and d succeeded the first time and did not run again; c had a's output.
    assert_eq!(t.read("a.count"), "ran\n");
    assert_eq!(t.read("d.count"), "ran\n");
    assert_eq!(t.read("c.txt"), "from-a\n");
    let jobs: Vec<(&str, &str)> = run["run"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["key"].as_str().unwrap(), j["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        jobs,
        [
            ("a", "success"),
            ("b", "success"),
            ("c", "success"),
            ("d", "success")
        ]
    );
    let moves: Vec<String> = run["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["reason"] == "retried over the API")
        .map(|t| {
            format!(
                "{} {}->{}",
                t["job"].as_str().unwrap_or("run"),
                t["from"].as_str().unwrap(),
                t["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            "b failure->pending",
            "c skipped->pending",
            "run failure->queued"
        ]
    );

    let (code, err) = error_of(s.post(&format!("/api/v1/runs/{id}/retry"), &json!({})));
    assert_eq!(
        (code, err["code"].as_str()),
        (409, Some("run_finished")),
        "{err}"
    );
}

#[test]
fn a_concurrency_group_with_max_2_never_runs_more_than_2_of_6_and_says_why_the_rest_wait() {
    let t = Test::new().file(
        "deploy.yaml",
        &common::unindent(
            r#"
            inputs:
              env: { type: string, default: prod }
            jobs:
              deploy:
                strategy: { matrix: { n: [1, 2, 3, 4, 5, 6] } }
                concurrency: { group: "deploy-${{ inputs.env }}", max: 2 }
                steps:
                  - run: |
                      start=$(date +%s%N)
                      sleep 0.4
                      echo "$start $(date +%s%N)" > "t-${{ matrix.n }}"
            "#,
        ),
    );
    let s = Server::start(&t, &["-j", "6"]);
    let id = s.create(&json!({"workflow": "deploy.yaml"}));
    let run = s.wait_done(&id);
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(
        most_at_once(&t, &(1..=6).map(|n| n.to_string()).collect::<Vec<_>>()),
        2,
        "the group's limit did not hold, or nothing ran at once"
    );

    // The same from the recorded transitions (ms): never more than 2 running.
    let transitions = run["transitions"].as_array().unwrap();
    assert_eq!(most_running(std::slice::from_ref(&run), false), 2);

    let waits: Vec<&Value> = transitions
        .iter()
        .filter(|t| t["to"] == "waiting")
        .collect();
    assert!(waits.len() >= 4, "{}", run["transitions"]);
    for w in &waits {
        assert!(
            w["reason"]
                .as_str()
                .unwrap()
                .starts_with("concurrency group `deploy-prod` is full (2 running: deploy ("),
            "{w}"
        );
    }
    assert_eq!(
        s.metric("trun_jobs_blocked_by_concurrency_total"),
        waits.len() as f64
    );
}

#[test]
fn cancel_in_progress_cancels_the_groups_running_run_and_replaces_its_queued_one() {
    let t = Test::new().file(
        "deploy.yaml",
        &common::unindent(
            r#"
            inputs:
              env: { type: string }
              secs: { type: string, default: "0" }
            concurrency:
              group: deploy-${{ inputs.env }}
              cancel-in-progress: true
            jobs:
              go:
                steps:
                  - run: |
                      trap 'until [ -e release ]; do sleep 0.02; done; exit 1' TERM
                      echo "${{ inputs.env }}" >> ran.txt; sleep ${{ inputs.secs }}
            "#,
        ),
    );
    // The first run, once cancelled, holds its slot until `release` exists (or
    // trun's kill after its grace): the second run cannot start in the moment
    // between its creation and the third's, however the machine is loaded.
    let s = Server::start(&t, &[]);
    let marker = common::marker();
    let first =
        s.create(&json!({"workflow": "deploy.yaml", "inputs": {"env": "prod", "secs": marker}}));
    wait_for("the first run's sleep", Duration::from_secs(30), || {
        !processes_running(&["sleep", &marker]).is_empty()
    });
    let _reaper = Reaper(processes_running(&["sleep", &marker]));
    let other = s.create(&json!({"workflow": "deploy.yaml", "inputs": {"env": "staging"}}));
    let second = s.create(&json!({"workflow": "deploy.yaml", "inputs": {"env": "prod"}}));
    let third = s.create(&json!({"workflow": "deploy.yaml", "inputs": {"env": "prod"}}));
    std::fs::write(t.join("release"), "").unwrap();

    let run = s.wait_done(&first);
    assert_eq!(run["status"], "cancelled");
    assert!(processes_running(&["sleep", &marker]).is_empty());
    let last = |run: &Value| {
        last_run_transition(run)["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        last(&run),
        format!("replaced by run {second} (concurrency group `deploy-prod`, cancel-in-progress)")
    );
    let run = s.wait_done(&second);
    assert_eq!(run["status"], "cancelled");
    assert_eq!(
        last(&run),
        format!("replaced by run {third} (concurrency group `deploy-prod`, cancel-in-progress)")
    );
    assert_eq!(s.wait_done(&other)["status"], "success");
    assert_eq!(s.wait_done(&third)["status"], "success");
    // The first ran and was cancelled; the second never started.
    assert_eq!(t.read("ran.txt"), "prod\nstaging\nprod\n");
}

#[test]
fn a_bad_concurrency_setting_is_an_error_at_its_line_and_column() {
    let t = Test::new().workflow(&common::unindent(
        r#"
        jobs:
          a:
            concurrency: { group: "x-${{ inputs.nope }}", max: 0 }
            steps: [ { run: "true" } ]
        "#,
    ));
    t.run(&["validate"])
        .status(2)
        .stderr_has("trun.yaml:3:41: error: unknown input `nope` (the workflow declares no inputs)")
        .stderr_has("trun.yaml:3:56: error: concurrency `max` must be at least 1");
    let t = Test::new().workflow(&common::unindent(
        r#"
        concurrency: { grup: x }
        jobs: { a: { steps: [ { run: "true" } ] } }
        "#,
    ));
    t.run(&["validate"]).status(2).stderr_has("trun.yaml:1:");
    t.run(&["validate"]).stderr_has("grup");
}

#[test]
fn follow_streams_a_steps_log_while_it_runs_and_ends_with_the_step() {
    use std::io::{BufRead, BufReader, Read};
    let t = Test::new().file(
        "talk.yaml",
        &common::unindent(
            r#"
            jobs:
              a:
                steps:
                  - id: talk
                    run: |
                      echo "first line"
                      while [ ! -f go ]; do sleep 0.05; done
                      echo "second line"
            "#,
        ),
    );
    let s = Server::start(&t, &[]);
    let id = s.create(&json!({"workflow": "talk.yaml"}));
    s.wait_run(&id, "the step to run", |r| step_status(r, 0) == "running");
    let r = s.get(&format!("/api/v1/runs/{id}/logs/a/talk?follow=true"));
    assert_eq!(r.status().as_u16(), 200);
    let mut reader = BufReader::new(r);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("first line"), "{line:?}");
    // The step is still running: the stream has sent what was written so far.
    assert_eq!(step_status(&s.run(&id), 0), "running");
    t.write("go", "");
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("second line"), "{rest:?}");
    assert_eq!(s.wait_done(&id)["status"], "success");

    // By position too, and `follow` is true or false.
    let r = s.get(&format!("/api/v1/runs/{id}/logs/a/1?follow=true"));
    assert!(r.text().unwrap().contains("second line"));
    let (code, err) = error_of(s.get(&format!("/api/v1/runs/{id}/logs/a/talk?follow=yes")));
    assert_eq!((code, err["field"].as_str()), (400, Some("follow")));
    let (code, _) = error_of(s.get(&format!(
        "/api/v1/runs/{id}/logs/a/..%2F..%2Fetc?follow=true"
    )));
    assert_eq!(code, 404);
}

#[test]
fn trun_run_holds_a_jobs_concurrency_group_too_and_a_hostile_group_stays_a_name() {
    let t = Test::new().workflow(&common::unindent(
        r#"
        inputs:
          env: { type: string }
        jobs:
          one: &job
            concurrency: "lock-${{ inputs.env }}"
            steps:
              - run: |
                  start=$(date +%s%N); sleep 0.3
                  echo "$start $(date +%s%N)" > "t-$TRUN_JOB"
          two: *job
          three: *job
        "#,
    ));
    let hostile = "$(touch pwned)'; DROP TABLE runs; --";
    t.run(&["run", "-j", "3", "-i", &format!("env={hostile}")])
        .success();
    assert!(!t.exists("pwned"));
    let spans: Vec<(u128, u128)> = ["one", "two", "three"]
        .iter()
        .map(|j| {
            let text = t.read(&format!("t-{j}"));
            let (a, b) = text.trim().split_once(' ').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    for (i, (a, b)) in spans.iter().enumerate() {
        for (c, d) in spans.iter().skip(i + 1) {
            assert!(
                b <= c || d <= a,
                "two jobs of one group ran at once: {spans:?}"
            );
        }
    }
    let show = t.show_json("");
    assert_eq!(show["status"], "success");
    // The history still works: the hostile group did not reach SQL as code.
    t.run(&["history"]).success();
}
