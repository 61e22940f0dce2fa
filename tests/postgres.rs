//! `trun run --db postgres://…` through the binary: runs recorded in a real
//! PostgreSQL server (`TRUN_TEST_DATABASE_URL`, started by `.ci/postgres start`),
//! read back by `history` and `show` from the same and from another workspace,
//! and a URL's password never printed. Each test gets a database of its own.

mod common;

use common::{wait_for, Test};
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// A fresh database on the test server; its URL, with `user[:password]@`
/// replaced by `userinfo` when given.
fn fresh_database(userinfo: Option<&str>) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = std::env::var("TRUN_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "TRUN_TEST_DATABASE_URL is not set: these tests need a PostgreSQL server. \
             Start a throwaway one with `eval \"$(.ci/postgres start)\"` (bash .ci/run does)"
        )
    });
    let name = format!(
        "trun_e2e_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = postgres::Client::connect(&base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connect to TRUN_TEST_DATABASE_URL: {e}"));
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.batch_execute(&sql).expect("create a database");
    }
    let (without_query, _) = base.split_once('?').unwrap_or((&base, ""));
    let (server, _db) = without_query
        .rsplit_once('/')
        .expect("TRUN_TEST_DATABASE_URL is postgres://user@host:port/db");
    let server = match userinfo {
        Some(info) => {
            let (scheme, rest) = server.split_once("://").expect("a URL");
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{info}@{host}")
        }
        None => server.to_string(),
    };
    format!("{server}/{name}")
}

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
    // The workspace's own file knows nothing of that success.
    t.run(&["run"]).success().stderr_lacks("up to date");
}
