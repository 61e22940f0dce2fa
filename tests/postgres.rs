//! `trun run --db postgres://…` through the binary: runs recorded in a real
//! PostgreSQL server (`TRUN_TEST_DATABASE_URL`, started by `.ci/postgres start`),
//! read back by `history` and `show` from the same and from another workspace,
//! and a URL's password never printed. Each test gets a database of its own.

mod common;

use common::server::Server;
use common::{fresh_database, processes_running, wait_for, Reaper, Test};
use std::time::Duration;

const WORKFLOW: &str = "
    name: shared
    jobs:
      build:
        steps:
          - run: echo building > built.txt
      test:
        needs: build
        steps:
          - run: cat built.txt
    ";

#[test]
fn two_workspaces_share_their_runs_through_one_database() {
    let url = fresh_database(None);
    let a = Test::new().workflow(WORKFLOW);
    a.run(&["run", "-q", "--db", &url]).success();
    a.run(&["history", "--db", &url])
        .success()
        .stdout_has("shared");
    let shown = a.run(&["show", "--db", &url, "--json"]).success().json();
    assert_eq!(shown["status"], "success", "{shown}");
    let jobs: Vec<_> = shown["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| {
            (
                j["key"].as_str().unwrap_or(""),
                j["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(jobs, [("build", "success"), ("test", "success")]);
    // The logs are files in this workspace; the database says where.
    a.run(&["logs", "--db", &url, "last", "test"])
        .success()
        .stdout_has("building");
    // The workspace's own file recorded nothing: the run is in PostgreSQL.
    a.run(&["history"])
        .success()
        .stdout_has("no runs recorded yet");

    // Another workspace (another machine, as far as trun knows) sees that run,
    // and its own run lands beside it.
    let b = Test::new().workflow(&WORKFLOW.replace("shared", "second"));
    let seen = b.run(&["history", "--db", &url, "--json"]).success().json();
    assert_eq!(seen.as_array().expect("runs").len(), 1, "{seen}");
    assert_eq!(seen[0]["workflow"], "shared");
    b.run(&["run", "-q", "--db", &url]).success();
    // TRUN_DATABASE_URL does what --db does.
    let both = a
        .args(&["history", "--json"])
        .env("TRUN_DATABASE_URL", &url)
        .run();
    let both = both.success().json();
    let names: Vec<_> = both
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["workflow"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["second", "shared"], "newest first");
    let latest = a
        .args(&["show", "--json"])
        .env("TRUN_DATABASE_URL", &url)
        .run();
    assert_eq!(latest.success().json()["workflow"], "second");
}

#[test]
fn a_password_in_the_url_is_never_printed_or_recorded() {
    // Trust authentication on the test server accepts any password.
    let url = fresh_database(Some("trun:hunter2-secret"));
    let t = Test::new().workflow(WORKFLOW);
    let run = t.run(&["run", "--db", &url]);
    run.success();
    assert!(!run.all().contains("hunter2"), "{}", run.all());
    let equals = format!("--db={url}");
    t.run(&["run", "-q", &equals]).success();
    let shown = t.run(&["show", "--db", &url, "--json"]);
    shown.success();
    assert!(!shown.stdout.contains("hunter2"), "{}", shown.stdout);
    assert!(
        shown.stdout.contains("--db=postgres://trun@"),
        "the recorded command line keeps the URL without its password: {}",
        shown.stdout
    );
    let history = t.run(&["history", "--db", &url]);
    history.success();
    assert!(!history.all().contains("hunter2"));

    // Unreachable: the error names the server, without the password.
    let refused = t.run(&[
        "history",
        "--db",
        "postgres://ci:hunter2-secret@127.0.0.1:1/trun?connect_timeout=5",
    ]);
    refused.status(2);
    refused.stderr_has("postgres://ci@127.0.0.1:1/trun");
    assert!(!refused.all().contains("hunter2"), "{}", refused.all());

    // --help never shows the environment's value.
    let help = t
        .args(&["run", "--help"])
        .env("TRUN_DATABASE_URL", &url)
        .run();
    help.success().stdout_has("--db <URL>");
    assert!(!help.all().contains("hunter2"));
}

#[test]
fn a_db_that_is_not_a_postgres_url_is_a_usage_error() {
    let t = Test::new().workflow(WORKFLOW);
    let out = t.run(&["run", "--db", "mysql://root:pw@localhost/x"]);
    assert_ne!(out.code, Some(0));
    out.stderr_has("postgres://");
    assert!(!out.all().contains(":pw@"), "{}", out.all());
}

#[test]
fn trun_serve_records_its_runs_in_the_database() {
    let url = fresh_database(None);
    let t = Test::new().workflow(WORKFLOW);
    let server = t
        .args(&["serve", "--bind", "127.0.0.1:0", "--db", &url])
        .spawn();
    let mut base = String::new();
    wait_for(
        "the server to listen",
        Duration::from_secs(30),
        || match server.stderr_so_far().split_once(" on http://") {
            Some((_, rest)) => {
                base = format!("http://{}", rest.lines().next().unwrap_or("").trim());
                true
            }
            None => false,
        },
    );
    let client = reqwest::blocking::Client::new();
    let created: serde_json::Value = client
        .post(format!("{base}/api/v1/runs"))
        .json(&serde_json::json!({"workflow": "trun.yaml"}))
        .send()
        .expect("POST /api/v1/runs")
        .json()
        .expect("JSON");
    let id = created["id"].as_str().expect("a run id").to_string();
    wait_for("the run to finish", Duration::from_secs(60), || {
        let run: serde_json::Value = client
            .get(format!("{base}/api/v1/runs/{id}"))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_default();
        !matches!(run["status"].as_str(), Some("queued" | "running") | None)
    });
    // Another workspace reads the server's run from the database.
    let other = Test::new();
    let runs = other
        .run(&["history", "--db", &url, "--json"])
        .success()
        .json();
    assert_eq!(runs[0]["workflow"], "shared", "{runs}");
    assert_eq!(runs[0]["status"], "success", "{runs}");
}

#[test]
fn up_to_date_records_live_in_the_database() {
    let url = fresh_database(None);
    let t = Test::new()
        .workflow(
            "
            jobs:
              build:
                steps:
                  - run: cp in.txt out.txt
                    sources: [in.txt]
                    generates: [out.txt]
            ",
        )
        .file("in.txt", "hello\n");
    t.run(&["run", "--db", &url])
        .success()
        .stderr_lacks("up to date");
    t.run(&["run", "--db", &url])
        .success()
        .stderr_has("up to date");
    // `trun plan --db` judges against the same successes as `trun run --db`.
    t.run(&["plan", "--db", &url])
        .success()
        .stdout_has("(0 to run, 1 up to date)");
    t.run(&["run", "--dry-run", "--db", &url])
        .success()
        .stdout_has("(0 to run, 1 up to date)");
    // The workspace's own file knows nothing of that success.
    t.run(&["plan"])
        .success()
        .stdout_has("(1 to run, 0 up to date)");
    t.run(&["run"]).success().stderr_lacks("up to date");
}

/// `[start, end)` in ns from the `t-JOB` file a job of [`LOCKED`] wrote.
fn span(t: &Test, job: &str) -> (u128, u128) {
    let text = t.read(&format!("t-{job}"));
    let (a, b) = text.trim().split_once(' ').expect("start and end");
    (a.parse().expect("start"), b.parse().expect("end"))
}

/// Two jobs of one concurrency group, each writing when it ran.
const LOCKED: &str = r#"
    jobs:
      one: &job
        concurrency: shared-lock
        steps:
          - run: |
              start=$(date +%s%N); sleep 0.3
              echo "$start $(date +%s%N)" > "t-$TRUN_JOB"
      two: *job
    "#;

#[test]
fn a_concurrency_group_holds_across_workspaces_sharing_the_database() {
    let url = fresh_database(None);
    let (a, b) = (Test::new().workflow(LOCKED), Test::new().workflow(LOCKED));
    let running: Vec<_> = [&a, &b]
        .iter()
        .map(|t| t.args(&["run", "-j", "2", "--db", &url]).spawn())
        .collect();
    for r in running {
        let out = r.wait(Duration::from_secs(60));
        assert_eq!(out.code, Some(0), "{}", out.all());
    }
    let spans = [
        span(&a, "one"),
        span(&a, "two"),
        span(&b, "one"),
        span(&b, "two"),
    ];
    for (i, (x0, x1)) in spans.iter().enumerate() {
        for (y0, y1) in spans.iter().skip(i + 1) {
            assert!(
                x1 <= y0 || y1 <= x0,
                "two holders of one group ran at once across processes: {spans:?}"
            );
        }
    }
}

#[test]
fn trun_serve_on_the_database_keeps_queued_runs_across_a_restart_and_records_transitions() {
    let url = fresh_database(None);
    let t = Test::new();
    let marker = common::marker();
    t.write(
        "long.yaml",
        &format!("jobs:\n  long:\n    steps:\n      - run: sleep {marker}\n"),
    );
    t.write(
        "after.yaml",
        "jobs:\n  b:\n    steps:\n      - run: echo ran >> after.txt\n",
    );
    // One run at a time, so the second stays queued behind the first.
    let mut s = Server::start(&t, &["--grace", "1s", "--db", &url, "--max-runs", "1"]);
    let long = s.create(&serde_json::json!({"workflow": "long.yaml"}));
    wait_for("the step's sleep", Duration::from_secs(30), || {
        !processes_running(&["sleep", &marker]).is_empty()
    });
    let _reaper = Reaper(processes_running(&["sleep", &marker]));
    let queued = s.create(&serde_json::json!({"workflow": "after.yaml"}));
    assert_eq!(s.run(&queued)["status"], "queued");
    let out = s.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!t.exists("after.txt"), "the queued run waited");
    // The queue lives in the database, not the workspace's state file.
    std::fs::remove_file(t.join(".trun/state.db")).ok();

    let s = Server::start(&t, &["--grace", "1s", "--db", &url]);
    let run = s.wait_done(&queued);
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(t.read("after.txt"), "ran\n", "it ran once");
    let moves: Vec<(String, String)> = run["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .filter(|t| t.get("job").is_none())
        .map(|t| {
            (
                t["from"].as_str().unwrap_or("").to_string(),
                t["to"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        moves,
        [
            pair("", "queued"),
            pair("queued", "running"),
            pair("running", "success")
        ],
        "{run}"
    );
    let long = s.run(&long);
    assert_eq!(long["status"], "interrupted", "{long}");
}

#[test]
fn two_servers_on_one_database_run_a_queued_run_once_after_a_restart() {
    let url = fresh_database(None);
    // Long enough that a server that lost the race sees the run `running`.
    let after = "jobs:\n  b:\n    steps:\n      - run: sleep 1; echo ran >> after.txt\n";
    let marker = common::marker();
    let first = Test::new()
        .file(
            "long.yaml",
            &format!("jobs:\n  long:\n    steps:\n      - run: sleep {marker}\n"),
        )
        .file("after.yaml", after);
    let mut s = Server::start(&first, &["--grace", "1s", "--db", &url, "--max-runs", "1"]);
    s.create(&serde_json::json!({"workflow": "long.yaml"}));
    wait_for("the step's sleep", Duration::from_secs(30), || {
        !processes_running(&["sleep", &marker]).is_empty()
    });
    let _reaper = Reaper(processes_running(&["sleep", &marker]));
    let queued: Vec<String> = (0..4)
        .map(|_| s.create(&serde_json::json!({"workflow": "after.yaml"})))
        .collect();
    assert_eq!(s.stop().code, Some(0));

    // Two servers, each in a workspace of its own, take the queue back at once.
    let a = Test::new().file("after.yaml", after);
    let b = Test::new().file("after.yaml", after);
    // One run at a time each: both queues hold runs the other may take.
    let sa = Server::start(&a, &["--db", &url, "--max-runs", "1"]);
    let sb = Server::start(&b, &["--db", &url, "--max-runs", "1"]);
    for id in &queued {
        let run = sa.wait_done(id);
        assert_eq!(run["status"], "success", "{run}");
    }
    let ran = |t: &Test| {
        if t.exists("after.txt") {
            t.read("after.txt").lines().count()
        } else {
            0
        }
    };
    assert_eq!(
        ran(&a) + ran(&b),
        queued.len(),
        "a queued run ran twice (or not at all)"
    );
    // The server that lost a run says so, and recorded nothing over it.
    for id in &queued {
        let on_b = sb.run(id);
        let seen = on_b["status"].as_str().unwrap_or("").to_string();
        assert!(
            seen == "success" || seen == "running",
            "server b shows {seen}: {on_b}"
        );
    }
}
