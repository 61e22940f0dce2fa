//! `trun serve`: the real server on 127.0.0.1 (a port the kernel picks), driven
//! over real HTTP: create, poll, events, logs, cancel, idempotency, auth, paths
//! that try to leave the root, metrics, SIGTERM.

mod common;

use common::server::Server;
use common::{processes_running, wait_for, Reaper, Test};
use reqwest::blocking::Response;
use serde_json::{json, Value};
use std::time::Duration;

fn error_of(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let v: Value = r.json().unwrap();
    (status, v["error"].clone())
}

/// Writes `long.yaml` (one step sleeping a marker number of seconds), creates
/// a run of it and waits until its `sleep` runs: (run id, marker, its reaper).
fn start_long_run(t: &Test, s: &Server) -> (String, String, Reaper) {
    let marker = common::marker();
    t.write(
        "long.yaml",
        &format!("jobs:\n  long:\n    steps:\n      - run: sleep {marker}\n"),
    );
    let id = s.create(&json!({"workflow": "long.yaml"}));
    wait_for("the step's sleep", Duration::from_secs(30), || {
        !processes_running(&["sleep", &marker]).is_empty()
    });
    let reaper = Reaper(processes_running(&["sleep", &marker]));
    (id, marker, reaper)
}

const GREET: &str = r#"
    name: greet
    inputs:
      name: { type: string, default: nobody }
    jobs:
      build:
        outputs:
          who: ${{ steps.greet.outputs.name }}
        steps:
          - id: greet
            run: |
              echo "hello from the log"
              echo "name=${{ inputs.name }}" >> "$TRUN_OUTPUT"
          - id: nap
            run: sleep 1
      after:
        needs: build
        steps:
          - run: echo "after ${{ needs.build.outputs.who }}" > after.txt
"#;

#[test]
fn a_run_is_created_watched_and_finishes_with_its_outputs_logs_and_metrics() {
    let t = Test::new().file("flows/greet.yaml", GREET);
    let mut s = Server::start(&t, &[]);
    assert_eq!(s.get("/healthz").status().as_u16(), 200);

    let id = s.create(&json!({"workflow": "flows/greet.yaml", "inputs": {"name": "world"}}));
    // Watched from the start, while it runs: every event in order, then the end.
    let events = s.events(&id, None);
    let kinds: Vec<&str> = events.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_finished"), "{kinds:?}");
    let ids: Vec<u64> = events.iter().map(|(i, _, _)| *i).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>());
    let pos = |kind: &str, job: &str| {
        events
            .iter()
            .position(|(_, k, d)| k == kind && d["job"] == job)
            .unwrap_or_else(|| panic!("no {kind} of {job} in {kinds:?}"))
    };
    assert!(pos("job_finished", "build") < pos("job_started", "after"));
    assert_eq!(events.last().unwrap().2["status"], "success");
    // Resuming after an id sends only what follows it.
    let resumed = s.events(&id, Some(2));
    assert_eq!(resumed.first().map(|e| e.0), Some(3));
    assert_eq!(resumed.len(), events.len() - 2);

    let run = s.wait_done(&id);
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(run["workflow"], "flows/greet.yaml");
    let detail = &run["run"];
    assert_eq!(detail["status"], "success");
    assert_eq!(detail["id"], run["store_run_id"]);
    let build = &detail["jobs"][0];
    assert_eq!(build["key"], "build");
    assert_eq!(build["outputs"]["who"], "world");
    assert_eq!(build["steps"][0]["exit_code"], 0);
    assert_eq!(build["steps"][0]["outputs"]["name"], "world");
    assert!(build["steps"][1]["duration_ms"].as_u64().unwrap() >= 900);
    assert_eq!(detail["jobs"][1]["status"], "success");
    // A workflow runs in its own directory, as with `trun -f`.
    assert_eq!(t.read("flows/after.txt"), "after world\n");

    let log = s.get(&format!("/api/v1/runs/{id}/logs/build/greet"));
    assert_eq!(log.status().as_u16(), 200);
    assert!(log.text().unwrap().contains("hello from the log"));
    let (code, err) = error_of(s.get(&format!("/api/v1/runs/{id}/logs/build/nope")));
    assert_eq!(code, 404);
    assert!(
        err["message"].as_str().unwrap().contains("no step `nope`"),
        "{err}"
    );
    assert_eq!(error_of(s.get("/api/v1/runs/nosuchrun")).0, 404);

    let list: Value = s.get("/api/v1/runs?status=success").json().unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["runs"][0]["id"], id.as_str());
    let none: Value = s.get("/api/v1/runs?status=failure").json().unwrap();
    assert_eq!(none["total"], 0);
    // Any status the schema names filters (a job's `pending` matches no run);
    // a word that is no status is a 400.
    let r = s.get("/api/v1/runs?status=pending");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().unwrap()["total"], 0);
    let (code, err) = error_of(s.get("/api/v1/runs?status=done"));
    assert_eq!((code, err["field"].as_str()), (400, Some("status")));
    let by_file: Value = s
        .get("/api/v1/runs?workflow=flows/greet.yaml")
        .json()
        .unwrap();
    assert_eq!(by_file["total"], 1);
    let other: Value = s.get("/api/v1/runs?workflow=trun.yaml").json().unwrap();
    assert_eq!(other["total"], 0);
    // The server holds the workspace: a second server there is refused.
    t.run(&["serve", "--bind", "127.0.0.1:0"])
        .status(2)
        .stderr_has("holds")
        .stderr_has(".trun/lock; wait for it or use a different directory");
    assert_eq!(error_of(s.get("/api/v1/runs?page=0")).0, 400);

    // The counters are the engine's: one run, three steps that ran.
    assert_eq!(s.metric("trun_runs_created_total"), 1.0);
    assert_eq!(
        s.metric("trun_runs_finished_total{status=\"success\"}"),
        1.0
    );
    assert_eq!(
        s.metric("trun_steps_finished_total{status=\"success\"}"),
        3.0
    );
    assert_eq!(s.metric("trun_step_duration_seconds_count"), 3.0);
    assert_eq!(s.metric("trun_running_steps"), 0.0);
    assert_eq!(s.stop().code, Some(0));
    // The run is in the workspace's store, as `trun show` prints it.
    let show = t.show_json("");
    assert_eq!(show["status"], "success");
    assert_eq!(show["workflow_path"], "flows/greet.yaml");
}

#[test]
fn an_idempotency_key_makes_one_run_and_refuses_a_different_body() {
    let t = Test::new().workflow("jobs: { a: { steps: [ { run: 'true' } ] } }");
    let s = Server::start(&t, &[]);
    let body = json!({"workflow": "trun.yaml"});
    let send = |body: &Value| {
        s.client
            .post(s.url("/api/v1/runs"))
            .header("Idempotency-Key", "k-1")
            .json(body)
            .send()
            .unwrap()
    };
    let first = send(&body);
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().unwrap();
    let again = send(&body);
    assert_eq!(again.status().as_u16(), 200);
    let again: Value = again.json().unwrap();
    assert_eq!(first["id"], again["id"]);
    let (code, err) = error_of(send(&json!({"workflow": "trun.yaml", "jobs": ["a"]})));
    assert_eq!(code, 409);
    assert_eq!(err["code"], "idempotency_key_reused");
    assert_eq!(err["field"], "Idempotency-Key");
    let list: Value = s.get("/api/v1/runs").json().unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(s.metric("trun_runs_created_total"), 1.0);
}

#[test]
fn a_broken_workflow_is_422_with_file_line_and_column() {
    let t = Test::new().file(
        "broken.yaml",
        r#"
        jobs:
          a:
            steps:
              - run: echo hi
                timeout-minutes: soon
        "#,
    );
    let s = Server::start(&t, &[]);
    let (code, err) = error_of(s.post("/api/v1/runs", &json!({"workflow": "broken.yaml"})));
    assert_eq!(code, 422);
    assert_eq!(err["code"], "invalid_workflow");
    assert_eq!(err["field"], "workflow");
    let msg = err["message"].as_str().unwrap();
    assert!(msg.starts_with("broken.yaml:5:"), "{msg}");

    let (code, err) = error_of(s.post(
        "/api/v1/runs",
        &json!({"yaml": "jobs:\n  a:\n    needs: [ghost]\n    steps: [ { run: 'true' } ]\n"}),
    ));
    assert_eq!(code, 422);
    assert_eq!(err["field"], "yaml");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.starts_with(".trun/server/") && msg.contains(".yaml:3:"),
        "{msg}"
    );
    // A refused inline workflow is not kept.
    let kept = std::fs::read_dir(t.join(".trun/server")).unwrap().count();
    assert_eq!(kept, 0);

    let (code, err) = error_of(
        s.client
            .post(s.url("/api/v1/runs"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .unwrap(),
    );
    assert_eq!(code, 400);
    assert_eq!(err["code"], "bad_request");
    let (code, _) = error_of(s.post(
        "/api/v1/runs",
        &json!({"workflow": "broken.yaml", "yaml": "x"}),
    ));
    assert_eq!(code, 400);
    assert_eq!(s.metric("trun_runs_created_total"), 0.0);
}

#[test]
fn inline_yaml_runs_in_the_root() {
    let t = Test::new();
    let s = Server::start(&t, &[]);
    let id =
        s.create(&json!({"yaml": "jobs:\n  w:\n    steps:\n      - run: echo made > made.txt\n"}));
    assert_eq!(s.wait_done(&id)["status"], "success");
    assert_eq!(t.read("made.txt"), "made\n");
}

#[test]
fn cancel_kills_a_running_runs_processes_and_a_queued_run_never_starts() {
    let t = Test::new();
    t.write(
        "after.yaml",
        "jobs:\n  b:\n    steps:\n      - run: echo ran > after.txt\n",
    );
    let s = Server::start(&t, &["--max-runs", "1"]);
    let (long, marker, _reaper) = start_long_run(&t, &s);
    let queued = s.create(&json!({"workflow": "after.yaml"}));
    // One run at a time (`--max-runs 1`): the second waits.
    assert_eq!(s.run(&queued)["status"], "queued");
    assert_eq!(s.metric("trun_running_steps"), 1.0);

    let r = s.post(&format!("/api/v1/runs/{queued}/cancel"), &json!({}));
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(s.run(&queued)["status"], "cancelled");
    let r = s.post(&format!("/api/v1/runs/{long}/cancel"), &json!({}));
    assert_eq!(r.status().as_u16(), 202);
    let run = s.wait_done(&long);
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(run["run"]["status"], "cancelled");
    assert!(processes_running(&["sleep", &marker]).is_empty());
    assert!(!t.exists("after.txt"));
    let (code, err) = error_of(s.post(&format!("/api/v1/runs/{long}/cancel"), &json!({})));
    assert_eq!(code, 409);
    assert_eq!(err["code"], "run_finished");
    assert_eq!(
        s.metric("trun_runs_finished_total{status=\"cancelled\"}"),
        2.0
    );
    assert_eq!(s.metric("trun_running_steps"), 0.0);
    assert_eq!(s.metric("trun_queue_depth"), 0.0);
}

#[test]
fn sigterm_stops_the_running_run_after_the_grace_records_it_interrupted_and_exits_0() {
    let t = Test::new();
    let mut s = Server::start(&t, &["--grace", "1s"]);
    let (_, marker, _reaper) = start_long_run(&t, &s);
    let out = s.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(processes_running(&["sleep", &marker]).is_empty());
    let show = t.show_json("");
    assert_eq!(show["status"], "interrupted");
}

#[test]
fn a_token_guards_everything_but_healthz() {
    let t = Test::new().workflow("jobs: { a: { steps: [ { run: 'true' } ] } }");
    let s = Server::start(&t, &["--token", "s3cret"]);
    let bare = |path: &str| s.client.get(s.url(path)).send().unwrap();
    assert_eq!(bare("/healthz").status().as_u16(), 200);
    let r = bare("/api/v1/runs");
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let (code, err) = error_of(r);
    assert_eq!(code, 401);
    assert_eq!(err["code"], "unauthorized");
    assert_eq!(bare("/metrics").status().as_u16(), 401);
    let wrong = s
        .client
        .get(s.url("/api/v1/runs"))
        .bearer_auth("s3cres")
        .send()
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert_eq!(s.get("/api/v1/runs").status().as_u16(), 200);
    let id = s.create(&json!({"workflow": "trun.yaml"}));
    assert_eq!(s.wait_done(&id)["status"], "success");
}

#[test]
fn a_workflow_path_cannot_leave_the_root() {
    let outside = Test::new().file(
        "evil.yaml",
        "jobs: { e: { steps: [ { run: touch pwned } ] } }",
    );
    let t = Test::new().file(
        "root/ok.yaml",
        "jobs: { a: { steps: [ { run: 'true' } ] } }",
    );
    std::os::unix::fs::symlink(outside.join("evil.yaml"), t.join("root/link.yaml")).unwrap();
    std::os::unix::fs::symlink(outside.path(), t.join("root/dir")).unwrap();
    t.write(
        "evil.yaml",
        "jobs: { e: { steps: [ { run: touch pwned } ] } }",
    );
    let root = t.join("root");
    let s = Server::start(&t, &["--root", root.to_str().unwrap()]);
    let abs = outside.join("evil.yaml");
    for (path, why) in [
        ("../evil.yaml", "leaves the root"),
        ("sub/../../evil.yaml", "leaves the root"),
        (abs.to_str().unwrap(), "is absolute"),
        ("link.yaml", "symlink pointing outside"),
        ("dir/evil.yaml", "symlink pointing outside"),
    ] {
        let (code, err) = error_of(s.post("/api/v1/runs", &json!({"workflow": path})));
        assert_eq!(code, 400, "{path}: {err}");
        assert_eq!(err["code"], "path_outside_root", "{path}");
        assert!(
            err["message"].as_str().unwrap().contains(why),
            "{path}: {err}"
        );
    }
    let (code, err) = error_of(s.post("/api/v1/runs", &json!({"workflow": "missing.yaml"})));
    assert_eq!(code, 422);
    assert_eq!(err["code"], "workflow_not_found");
    assert!(!outside.exists("pwned") && !t.exists("pwned") && !t.exists("root/pwned"));
    let id = s.create(&json!({"workflow": "ok.yaml"}));
    assert_eq!(s.wait_done(&id)["status"], "success");
}

#[test]
fn a_public_address_without_a_token_is_refused_at_start() {
    let t = Test::new();
    let out = t.run(&["serve", "--bind", "0.0.0.0:0"]);
    out.status(2).stderr_has(
        "refusing to listen on 0.0.0.0:0 without a token: anyone who can reach it could run commands",
    );
}

#[test]
fn an_oversized_body_is_refused_and_old_runs_stop_keeping_their_events() {
    let t = Test::new().workflow("jobs: { a: { steps: [ { run: 'true' } ] } }");
    let s = Server::start(&t, &[]);
    let big = json!({"yaml": "x".repeat((1 << 20) + 1)});
    let (code, err) = error_of(s.post("/api/v1/runs", &big));
    assert_eq!(code, 413);
    assert_eq!(err["code"], "body_rejected");
    assert_eq!(error_of(s.get("/api/v1/runs?page=x")).0, 400);

    // 52 runs, queued behind one another: each runs once, in order, and only
    // the newest 50 finished runs keep their event log in memory.
    let ids: Vec<String> = (0..52)
        .map(|_| s.create(&json!({"workflow": "trun.yaml"})))
        .collect();
    for id in &ids {
        assert_eq!(s.wait_done(id)["status"], "success");
    }
    let store_ids: Vec<i64> = ids
        .iter()
        .map(|id| s.run(id)["store_run_id"].as_i64().unwrap())
        .collect();
    assert!(store_ids.windows(2).all(|w| w[0] < w[1]), "{store_ids:?}");
    let list: Value = s.get("/api/v1/runs?per_page=100").json().unwrap();
    assert_eq!(list["total"], 52);
    assert_eq!(list["runs"][0]["id"], ids[51].as_str());
    let (code, err) = error_of(s.get(&format!("/api/v1/runs/{}/events", ids[0])));
    assert_eq!(code, 404);
    assert_eq!(err["code"], "events_expired");
    assert_eq!(s.events(&ids[51], None).last().unwrap().1, "run_finished");
    assert_eq!(
        s.metric("trun_runs_finished_total{status=\"success\"}"),
        52.0
    );
}

#[test]
fn concurrent_creates_lose_no_run_and_one_key_makes_one_run() {
    let t = Test::new().workflow("jobs: { a: { steps: [ { run: 'true' } ] } }");
    let s = Server::start(&t, &[]);
    let body = json!({"workflow": "trun.yaml"});
    // 16 clients at once: 8 with their own key, 8 sharing one.
    let results: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (s, body) = (&s, &body);
                scope.spawn(move || {
                    let key = if i % 2 == 0 {
                        format!("own-{i}")
                    } else {
                        "shared".into()
                    };
                    let r = s
                        .client
                        .post(s.url("/api/v1/runs"))
                        .header("Idempotency-Key", key)
                        .json(body)
                        .send()
                        .unwrap();
                    let code = r.status().as_u16();
                    let v: Value = r.json().unwrap();
                    (code, v["id"].as_str().unwrap().to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let shared: std::collections::BTreeSet<&str> = results
        .iter()
        .skip(1)
        .step_by(2)
        .map(|(_, id)| id.as_str())
        .collect();
    assert_eq!(shared.len(), 1, "{results:?}");
    assert_eq!(
        results.iter().filter(|(c, _)| *c == 201).count(),
        9,
        "{results:?}"
    );
    let all: std::collections::BTreeSet<&str> = results.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(all.len(), 9);
    for id in &all {
        assert_eq!(s.wait_done(id)["status"], "success");
    }
    let list: Value = s.get("/api/v1/runs").json().unwrap();
    assert_eq!(list["total"], 9);
    assert_eq!(
        s.metric("trun_runs_finished_total{status=\"success\"}"),
        9.0
    );
    // Each ran once: nine runs in the store.
    let history = t.run(&["history", "--json"]).success().json();
    assert_eq!(history.as_array().unwrap().len(), 9);
}
