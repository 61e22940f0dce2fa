//! Runs whose source is a git repository at a ref, over real HTTP against
//! the real server, from real repositories made with `git`: the ref's
//! workflow runs (another branch's does not), the commit is recorded and
//! shown, the checkout is the server's own and goes when the run ends, a
//! restarted server runs the recorded commit, and hostile URLs and refs are
//! refused before anything runs.

mod common;

use common::server::Server;
use common::{fresh_database, invoke_in, wait_for, Test};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `git ARGS` in `dir`, which must succeed; its stdout, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=trun test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A workflow whose one step writes `which` into `marks/<which>` (outside
/// the checkout, which the server removes) and as the step's output.
fn workflow(marks: &Path, which: &str) -> String {
    format!(
        "jobs:\n  build:\n    outputs: {{ which: \"${{{{ steps.s.outputs.which }}}}\" }}\n    steps:\n      - id: s\n        run: |\n          mkdir -p {m}\n          echo {which} > {m}/{which}\n          echo \"which=$(cat which.txt)\" >> \"$GITHUB_OUTPUT\"\n",
        m = marks.display()
    )
}

/// A repository at `root/repo`: `main` runs the workflow `main`, branch
/// `other` runs `other`; returns (main's commit, other's).
fn repo(root: &Path, marks: &Path) -> (String, String) {
    let dir = root.join("repo");
    std::fs::create_dir_all(dir.join(".github/workflows")).unwrap();
    git(&dir, &["init", "-q"]);
    let commit = |which: &str| {
        std::fs::write(dir.join(".github/workflows/ci.yml"), workflow(marks, which)).unwrap();
        std::fs::write(dir.join("which.txt"), which).unwrap();
        git(&dir, &["add", "."]);
        git(&dir, &["commit", "-qm", which]);
        git(&dir, &["rev-parse", "HEAD"])
    };
    let main = commit("main");
    git(&dir, &["checkout", "-qb", "other"]);
    let other = commit("other");
    git(&dir, &["checkout", "-q", "main"]);
    (main, other)
}

fn file_url(t: &Test) -> String {
    format!("file://{}", t.join("repo").display())
}

fn create_git(s: &Server, url: &str, reference: &str) -> reqwest::blocking::Response {
    s.post(
        "/api/v1/runs",
        &json!({"git": {"url": url, "ref": reference}, "workflow": ".github/workflows/ci.yml"}),
    )
}

/// Creates a git run (expects 201); its id.
fn create_git_run(s: &Server, url: &str, reference: &str) -> String {
    let r = create_git(s, url, reference);
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap());
    r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Commits `text` as the repository's workflow on the branch checked out; the commit.
fn commit_workflow(dir: &Path, text: &str, message: &str) -> String {
    std::fs::write(dir.join(".github/workflows/ci.yml"), text).unwrap();
    git(dir, &["commit", "-qam", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// The workflow that marks `ran` ran and the one that marks `not` did not,
/// and the run's checkout is gone.
fn ran_only(t: &Test, marks: &Path, ran: &str, not: &str) {
    assert!(marks.join(ran).exists(), "{ran} did not run");
    assert!(!marks.join(not).exists(), "{not} ran");
    wait_for("the checkout to go", Duration::from_secs(10), || {
        sources_left(t).is_empty()
    });
}

/// The error body of a refused create: (status, code, field, message).
fn refused(r: reqwest::blocking::Response) -> (u16, String, String, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().unwrap();
    let e = &v["error"];
    (
        status,
        e["code"].as_str().unwrap_or("").to_string(),
        e["field"].as_str().unwrap_or("").to_string(),
        e["message"].as_str().unwrap_or("").to_string(),
    )
}

fn sources_left(t: &Test) -> Vec<String> {
    std::fs::read_dir(t.join(".trun/sources"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_refs_workflow_runs_from_a_checkout_of_its_own_and_the_commit_is_recorded() {
    let marks = tempfile::tempdir().unwrap();
    let t = Test::new();
    let (main, other) = repo(t.path(), marks.path());
    let s = Server::start(&t, &[]);
    for (reference, commit, which) in [("other", &other, "other"), ("main", &main, "main")] {
        let id = create_git_run(&s, &file_url(&t), reference);
        let run = s.wait_done(&id);
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(run["workflow"], ".github/workflows/ci.yml");
        assert_eq!(
            run["git"],
            json!({"url": file_url(&t), "ref": reference, "commit": commit})
        );
        let job = &run["run"]["jobs"][0];
        assert_eq!(job["outputs"]["which"], which, "{run}");
        // `trun show` says where the run came from.
        let store_id = run["store_run_id"].as_i64().unwrap().to_string();
        t.run(&["show", &store_id])
            .success()
            .stdout_has(&format!("--ref {reference} --commit {commit}"));
        wait_for("the checkout to go", Duration::from_secs(10), || {
            sources_left(&t).is_empty()
        });
    }
    let mut ran: Vec<String> = std::fs::read_dir(marks.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ran.sort();
    assert_eq!(ran, ["main", "other"]);
    // The workspace itself was never touched: main's workflow is not
    // checked out at the root, and the repository stays on main.
    assert!(!t.exists(".github"));
    assert_eq!(git(&t.join("repo"), &["rev-parse", "HEAD"]), main);
}

#[test]
fn hostile_urls_and_refs_are_refused_and_nothing_runs() {
    let marks = tempfile::tempdir().unwrap();
    let t = Test::new();
    repo(t.path(), marks.path());
    let elsewhere = Test::new();
    repo(elsewhere.path(), marks.path());
    let s = Server::start(&t, &[]);
    let pwned = marks.path().join("pwned");
    let cases = [
        // ext:: would run a shell command.
        (
            format!("ext::sh -c touch% {}", pwned.display()),
            "main".to_string(),
            400,
            "git.url",
        ),
        (
            format!("ext::sh -c 'touch {}'", pwned.display()),
            "main".to_string(),
            400,
            "git.url",
        ),
        // An option in the URL's or the ref's place.
        (
            format!("--upload-pack=touch {}", pwned.display()),
            "main".to_string(),
            400,
            "git.url",
        ),
        (
            file_url(&t),
            format!("--upload-pack=touch {}", pwned.display()),
            400,
            "git.ref",
        ),
        (
            file_url(&t),
            "main:refs/heads/x".to_string(),
            400,
            "git.ref",
        ),
        // A repository on the server's disk outside its root.
        (
            format!("file://{}/repo", elsewhere.path().display()),
            "main".to_string(),
            400,
            "git.url",
        ),
        (
            format!("file://{}/repo/../../", t.path().display()),
            "main".to_string(),
            400,
            "git.url",
        ),
        (
            elsewhere.join("repo").display().to_string(),
            "main".to_string(),
            400,
            "git.url",
        ),
    ];
    for (url, reference, status, field) in &cases {
        let (got, code, got_field, message) = refused(create_git(&s, url, reference));
        assert_eq!(
            (got, got_field.as_str()),
            (*status, *field),
            "{url} {reference}: {code}: {message}"
        );
    }
    let (status, code, field, message) = refused(create_git(&s, &file_url(&t), "no-such-branch"));
    assert_eq!(
        (status, code.as_str(), field.as_str()),
        (422, "git_fetch_failed", "git.ref")
    );
    assert!(
        message.contains("couldn't find remote ref no-such-branch"),
        "{message}"
    );
    // `git` without `workflow`, or with `yaml`: a clear 400.
    let r = s.post(
        "/api/v1/runs",
        &json!({"git": {"url": file_url(&t), "ref": "main"}, "yaml": "jobs: {}"}),
    );
    let (status, _, field, _) = refused(r);
    assert_eq!((status, field.as_str()), (400, "workflow"));
    let listed: Value = s.get("/api/v1/runs").json().unwrap();
    assert_eq!(listed["total"], 0, "{listed}");
    assert!(!pwned.exists(), "a hostile URL or ref ran a command");
    assert!(
        std::fs::read_dir(marks.path()).unwrap().next().is_none(),
        "a workflow ran"
    );
    assert!(sources_left(&t).is_empty(), "{:?}", sources_left(&t));
}

#[test]
fn a_queued_git_run_runs_its_recorded_commit_after_a_restart() {
    let marks = tempfile::tempdir().unwrap();
    let t = Test::new().file(
        "slow.yaml",
        "jobs:\n  slow:\n    steps:\n      - run: sleep 30\n",
    );
    let (main, _) = repo(t.path(), marks.path());
    let mut s = Server::start(&t, &["--grace", "1s", "--max-runs", "1"]);
    let slow = s.create(&json!({"workflow": "slow.yaml"}));
    s.wait_run(&slow, "the slow run to start", |r| r["status"] == "running");
    let id = create_git_run(&s, &file_url(&t), "main");
    assert_eq!(s.run(&id)["status"], "queued");
    s.stop();
    // main moves on while the server is down: the run still runs the
    // commit it was created at.
    let dir = t.join("repo");
    commit_workflow(&dir, &workflow(marks.path(), "moved"), "moved");
    let s = Server::start(&t, &["--grace", "1s", "--max-runs", "1"]);
    let run = s.wait_done(&id);
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(run["git"]["commit"], main.as_str());
    ran_only(&t, marks.path(), "main", "moved");
}

#[test]
fn a_git_run_goes_to_a_worker_as_a_snapshot_of_its_checkout() {
    let db = fresh_database(None);
    let cache_dir = Test::new().workflow("jobs: { noop: { steps: [ { run: 'true' } ] } }");
    let cache = Server::start(&cache_dir, &["--db", &db]);
    let home = Test::new();
    let worker = invoke_in(
        home.path(),
        &[
            "worker",
            "--db",
            &db,
            "--remote-cache",
            &cache.base,
            "--workdir",
            "work",
            "--name",
            "w1",
        ],
    )
    .spawn();
    wait_for(
        "the worker to wait for jobs",
        Duration::from_secs(30),
        || worker.stderr_so_far().contains("waiting for jobs"),
    );
    let marks = tempfile::tempdir().unwrap();
    let t = Test::new();
    let (_, other) = repo(t.path(), marks.path());
    let s = Server::start(
        &t,
        &[
            "--db",
            &db,
            "--no-local-exec",
            "--remote-cache",
            &cache.base,
        ],
    );
    let id = create_git_run(&s, &file_url(&t), "other");
    let run = s.wait_done(&id);
    assert_eq!(
        run["status"],
        "success",
        "{run}\n{}",
        worker.stderr_so_far()
    );
    assert_eq!(run["git"]["commit"], other.as_str());
    assert_eq!(run["run"]["jobs"][0]["outputs"]["which"], "other", "{run}");
    ran_only(&t, marks.path(), "other", "main");
}

#[test]
fn a_retry_runs_the_recorded_commit_again_though_the_branch_moved() {
    let marks = tempfile::tempdir().unwrap();
    let t = Test::new();
    let (main, _) = repo(t.path(), marks.path());
    let dir = t.join("repo");
    // main's workflow fails until the test allows it.
    let gated = format!(
        "jobs:\n  build:\n    steps:\n      - run: test -e {m}/allow && touch {m}/retried\n",
        m = marks.path().display()
    );
    let gated_commit = commit_workflow(&dir, &gated, "gated");
    assert_ne!(gated_commit, main);
    let s = Server::start(&t, &[]);
    let id = create_git_run(&s, &file_url(&t), "main");
    assert_eq!(s.wait_done(&id)["status"], "failure");
    // main moves on; the retry still runs the commit the run recorded.
    commit_workflow(&dir, &workflow(marks.path(), "moved"), "moved");
    std::fs::write(marks.path().join("allow"), "").unwrap();
    let r = s.post(&format!("/api/v1/runs/{id}/retry"), &json!({}));
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap());
    let run = s.wait_run(&id, "the retry to finish", |r| r["status"] == "success");
    assert_eq!(run["git"]["commit"], gated_commit.as_str());
    assert_eq!(run["attempt"], 2);
    ran_only(&t, marks.path(), "retried", "moved");
}

#[test]
fn openapi_describes_the_git_source() {
    let t = Test::new();
    let s = Server::start(&t, &[]);
    let doc: Value = s.get("/openapi.json").json().unwrap();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["CreateBody"]["allOf"][0]["properties"]["git"]["oneOf"][1]["$ref"],
        "#/components/schemas/GitBody",
        "{}",
        schemas["CreateBody"]
    );
    assert_eq!(schemas["GitBody"]["required"], json!(["url", "ref"]));
    assert_eq!(schemas["GitBody"]["additionalProperties"], false);
    assert_eq!(
        schemas["GitSource"]["required"],
        json!(["url", "ref", "commit"])
    );
    // `git` goes with `workflow`, never with `yaml`.
    assert_eq!(
        schemas["CreateBody"]["allOf"][1]["oneOf"][1]["properties"]["git"]["type"],
        "null"
    );
}
