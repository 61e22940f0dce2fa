//! `trun grade` and `trun rubric import` as a user runs them: on real repositories, real
//! processes, the real Docker daemon (the busybox test image) and real SQLite files.
//!
//! The sample repository is `tests/fixtures/grade/shcalc`: a calculator in POSIX shell, so
//! that the same rubric runs on this machine (`--local`) and in `trun-test/busybox:latest`,
//! which has no compiler. Expected score: 40 of 45 (its unit tests pass 3 of 4).
//!
//! Each test works in its own temp directory, which is its workspace (`.trun/state.db`
//! holds the run history and the grade cache), and runs the real `trun` binary there.
//! Docker tests fail, loudly, without a daemon (see tests/support/docker_env.rs).

mod common;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::docker_env::{ensure_busybox_image, BUSYBOX_IMAGE};
use trun::state::Store as _;

/// What `trun` printed, through the shared harness (`tests/common`).
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    fn ok(self) -> Out {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `trun ARGS` in `cwd` with extra environment variables.
fn trun_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut run = common::invoke_in(cwd, args).env("NO_COLOR", "1");
    for (k, v) in env {
        run = run.env(k, v);
    }
    let out = run.run();
    Out {
        code: out.code.unwrap_or(-1),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

fn trun(cwd: &Path, args: &[&str]) -> Out {
    trun_env(cwd, args, &[])
}

/// `trun grade students/student-00 --rubric RUBRIC EXTRA…` in `ws`.
fn grade_student(ws: &Path, rubric: &str, extra: &[&str]) -> Out {
    let args = [
        &["grade", "students/student-00", "--rubric", rubric][..],
        extra,
    ]
    .concat();
    trun(ws, &args)
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grade/shcalc")
}

/// A workspace holding `count` copies of the fixture as `students/student-NN`, each
/// possibly rewritten by `vary(i, calc.sh)`, and the fixture's rubric as `rubric.yaml`.
fn workspace(count: usize, vary: impl Fn(usize, String) -> String) -> tempfile::TempDir {
    let ws = tempfile::tempdir().expect("tempdir");
    let source = fs::read_to_string(fixture().join("calc.sh")).expect("calc.sh");
    for i in 0..count {
        let dir = ws.path().join(format!("students/student-{i:02}"));
        common::copy_dir(&fixture(), &dir);
        fs::remove_file(dir.join("rubric.yaml")).expect("rm rubric");
        fs::write(dir.join("calc.sh"), vary(i, source.clone())).expect("write calc.sh");
    }
    fs::copy(fixture().join("rubric.yaml"), ws.path().join("rubric.yaml")).expect("rubric");
    ws
}

/// `(id, status, points)` of every criterion of the JSON report's repository `i`.
fn criteria(doc: &Value, i: usize) -> Vec<(String, String, f64)> {
    doc["repos"][i]["criteria"]
        .as_array()
        .expect("criteria")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_string(),
                c["status"].as_str().unwrap_or_default().to_string(),
                c["points"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect()
}

fn docker_out(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Containers left by trun in the workspace at `root` (matched by its `trun.workspace`
/// label, as `trun gc` does).
fn containers_of(root: &Path) -> String {
    use sha2::Digest;
    let ws = hex::encode(&sha2::Sha256::digest(root.to_string_lossy().as_bytes())[..8]);
    docker_out(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=trun.workspace={ws}"),
    ])
}

#[test]
fn the_sample_repo_scores_the_same_locally_and_in_a_container() {
    let ws = workspace(1, |_, s| s);
    let local = grade_student(ws.path(), "rubric.yaml", &["--local"]).ok();
    let table = &local.stdout;
    assert!(table.starts_with("student-00\n"), "{table}");
    assert!(table.contains("Unit tests"), "{table}");
    assert!(
        table
            .lines()
            .last()
            .is_some_and(|l| l.contains("total") && l.contains("40/45")),
        "{table}"
    );

    ensure_busybox_image();
    let local = grade_student(ws.path(), "rubric.yaml", &["--json", "--local"])
        .ok()
        .json();
    let started = Instant::now();
    let container = grade_student(ws.path(), "rubric.yaml", &["--json"])
        .ok()
        .json();
    let took = started.elapsed();
    assert!(
        container["runner"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("docker:{BUSYBOX_IMAGE}@"))),
        "{container}"
    );
    assert_eq!(container["repos"][0]["score"], 40.0, "{container:#}");
    assert_eq!(container["repos"][0]["cached"], false);
    assert_eq!(criteria(&container, 0), criteria(&local, 0));
    let unit = &container["repos"][0]["criteria"][5];
    assert_eq!(unit["tests"], serde_json::json!([3, 4]), "{unit:#}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(container["run_id"].as_i64().is_some(), "{container}");
    assert_eq!(containers_of(ws.path()), "");
}

#[test]
fn a_dockerfile_rubric_grades_in_the_image_it_builds() {
    let ws = workspace(1, |_, s| s);
    fs::create_dir(ws.path().join("image")).expect("mkdir");
    fs::write(
        ws.path().join("image/Dockerfile"),
        format!("FROM {BUSYBOX_IMAGE}\nRUN echo 'from the teacher image' > /greeting\n"),
    )
    .expect("Dockerfile");
    fs::write(
        ws.path().join("built.yaml"),
        "container: { dockerfile: image/Dockerfile }\ncriteria:\n  - id: greeting\n    points: 1\n    run: cat /greeting\n    expect: { stdout: from the teacher image }\n",
    )
    .expect("rubric");
    ensure_busybox_image();
    let first = grade_student(ws.path(), "built.yaml", &["--json"]).ok();
    assert!(
        first.stderr.contains("building the grading image"),
        "{}",
        first.stderr
    );
    let doc = first.json();
    let runner = doc["runner"].as_str().unwrap_or_default().to_string();
    assert!(runner.starts_with("docker:trun-grade:"), "{runner}");
    assert_eq!(
        criteria(&doc, 0),
        [("greeting".into(), "passed".into(), 1.0)]
    );
    // Unchanged Dockerfile: the same image, so the stored result is reused.
    let again = grade_student(ws.path(), "built.yaml", &["--json"])
        .ok()
        .json();
    assert_eq!(again["runner"], doc["runner"]);
    assert_eq!(again["repos"][0]["cached"], true);
    let tag = runner
        .trim_start_matches("docker:")
        .split('@')
        .next()
        .unwrap_or_default();
    docker_out(&["rmi", "-f", tag]);
}

/// A rubric in the busybox image probing the sandbox; every criterion passes in it.
const SANDBOX_RUBRIC: &str = r#"
container: { image: "trun-test/busybox:latest" }
defaults: { timeout: 10s, pids: 64, memory: 128MiB }
criteria:
  - id: no-network
    points: 1
    run: ls /sys/class/net
    expect: { stdout: lo }
  - id: no-route-out
    points: 1
    run: "! wget -q -T 3 -O /dev/null http://1.1.1.1/"
  - id: repo-read-only
    points: 1
    run: test -f "$TRUN_REPO/calc.sh" && ! touch "$TRUN_REPO/pwned" && ! rm "$TRUN_REPO/calc.sh"
  - id: scratch-writable
    points: 1
    run: echo scribble > calc.sh && cat calc.sh && cp calc.sh ./new-file
    expect: { stdout: scribble }
  - id: out-outside-the-copy
    points: 1
    run: 'case "$TRUN_OUT" in "$PWD"*) exit 1;; esac; test -d "$TRUN_OUT" && test -w "$TRUN_OUT"'
  - id: limits
    points: 1
    run: cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max; cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes
    expect: { stdout: "64\n134217728" }
"#;

#[test]
fn in_the_container_the_network_is_off_and_the_repo_read_only() {
    let ws = workspace(1, |_, s| s);
    fs::write(ws.path().join("sandbox.yaml"), SANDBOX_RUBRIC).expect("rubric");
    ensure_busybox_image();
    let out = grade_student(ws.path(), "sandbox.yaml", &["--json"]).ok();
    let doc = out.json();
    for (id, status, points) in criteria(&doc, 0) {
        assert_eq!(
            (status.as_str(), points),
            ("passed", 1.0),
            "{id}: {:#}",
            doc["repos"][0]["criteria"]
        );
    }
    let repo = ws.path().join("students/student-00");
    assert!(!repo.join("pwned").exists());
    assert!(!repo.join("new-file").exists());
    assert!(fs::read_to_string(repo.join("calc.sh"))
        .expect("calc.sh")
        .contains("usage"));
}

/// Criteria that try to outlive their time or forge a later criterion's result.
const HOSTILE_RUBRIC: &str = r#"
container: { image: "trun-test/busybox:latest" }
defaults: { timeout: 20s, max-output: 1KiB }
criteria:
  - id: hang
    points: 1
    timeout: 1s
    run: sleep 100 & sleep 100
  - id: leftover
    points: 1
    run: sleep 77 & echo started
    expect: { stdout: started }
  - id: watcher
    points: 1
    run: |
      (while :; do for d in /trun/out/*/; do echo 1 > "$d/score" 2>/dev/null; done; sleep 0.05; done) &
      echo planted
  - id: forged
    points: 10
    run: sleep 1
    score: { from: fraction }
  - id: symlink
    points: 10
    run: ln -s /etc/hostname "$TRUN_SCORE"
    score: { from: fraction }
  - id: nothing-left
    points: 1
    run: ps -o args | grep -v grep | grep -E 'sleep (100|77)|/trun/out' || echo clean
    expect: { stdout: clean }
  - id: flood
    points: 1
    run: head -c 10485760 /dev/zero | tr '\0' x
"#;

#[test]
fn in_the_container_timeouts_kill_everything_and_results_cannot_be_forged() {
    let ws = workspace(1, |_, s| s);
    fs::write(ws.path().join("hostile.yaml"), HOSTILE_RUBRIC).expect("rubric");
    ensure_busybox_image();
    let started = Instant::now();
    let doc = grade_student(ws.path(), "hostile.yaml", &["--json"])
        .ok()
        .json();
    let took = started.elapsed();
    let c = &doc["repos"][0]["criteria"];
    let got: Vec<(String, String, f64)> = criteria(&doc, 0);
    let want = [
        ("hang", "timeout", 0.0),
        ("leftover", "passed", 1.0),
        ("watcher", "passed", 1.0),
        ("forged", "error", 0.0),
        ("symlink", "error", 0.0),
        ("nothing-left", "passed", 1.0),
        ("flood", "passed", 1.0),
    ];
    let want: Vec<(String, String, f64)> = want
        .iter()
        .map(|(a, b, p)| (a.to_string(), b.to_string(), *p))
        .collect();
    assert_eq!(got, want, "{c:#}");
    assert!(
        c[3]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("wrote no $TRUN_OUT/score")),
        "{:#}",
        c[3]
    );
    assert!(c[1]["duration_ms"].as_u64().is_some_and(|ms| ms < 5000));
    assert_eq!(c[6]["stdout"]["total_bytes"], 10 * 1024 * 1024);
    assert_eq!(c[6]["stdout"]["text"].as_str().map(str::len), Some(1024));
    assert_eq!(c[6]["stdout"]["truncated"], true);
    assert!(took < Duration::from_secs(40), "{took:?}");
}

/// A batch of 20 copies of the fixture: 4 hangs in `add`, 9 prints 10 MB for `version`,
/// 12 has no calc.sh (setup fails), 15 subtracts, 19 is not a directory.
fn batch_workspace() -> tempfile::TempDir {
    let ws = workspace(20, |i, src| match i {
        4 => src.replace(
            "add) echo $(($2 + $3)) ;;",
            "add) while :; do sleep 1; done ;;",
        ),
        9 => src.replace(
            "version) echo \"calc 1.0\" ;;",
            "version) head -c 10485760 /dev/zero | tr '\\0' x ;;",
        ),
        15 => src.replace("$(($2 + $3))", "$(($2 - $3))"),
        _ => src,
    });
    let students = ws.path().join("students");
    fs::remove_file(students.join("student-12/calc.sh")).expect("rm");
    let crash = students.join("student-19");
    fs::remove_dir_all(&crash).expect("rm");
    fs::write(&crash, "not a directory").expect("write");
    let rubric = fs::read_to_string(ws.path().join("rubric.yaml")).expect("rubric");
    fs::write(
        ws.path().join("rubric.yaml"),
        rubric.replace("timeout: 5s", "timeout: 3s"),
    )
    .expect("rubric");
    ws
}

/// `trun grade students/student-00 … students/student-19 --rubric rubric.yaml -j 2 --out
/// grades EXTRA…`: named one by one, because `--repos` lists directories only and the
/// batch has a repository that is not one.
fn batch_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec!["grade"];
    for i in 0..20 {
        args.push(Box::leak(
            format!("students/student-{i:02}").into_boxed_str(),
        ));
    }
    args.extend(["--rubric", "rubric.yaml", "-j", "2", "--out", "grades"]);
    args.extend(extra);
    args
}

fn expect_full_gradebook(ws: &Path, out: &Out) {
    assert_eq!(out.code, 1, "one repository errored\n{}", out.stderr);
    let book = fs::read_to_string(ws.join("grades/gradebook.csv")).expect("gradebook");
    let lines: Vec<&str> = book.lines().collect();
    assert_eq!(lines.len(), 21, "{book}");
    assert_eq!(lines[0], "repo,runs,add,sum,usage,version,unit,total");
    assert_eq!(lines[1], "student-00,0,10,5,5,5,15,40");
    assert_eq!(
        lines[5], "student-04,0,0,5,5,5,15,30",
        "hang: add times out"
    );
    assert_eq!(
        lines[10], "student-09,0,10,5,5,0,15,35",
        "flood: version fails"
    );
    assert_eq!(lines[13], "student-12,0,0,0,0,0,0,0", "setup failed");
    assert_eq!(lines[16], "student-15,0,0,5,5,5,15,30", "wrong add");
    assert_eq!(
        lines[20],
        "student-19,error,error,error,error,error,error,error"
    );
    for (i, line) in lines.iter().enumerate().skip(1) {
        if ![5, 10, 13, 16, 20].contains(&i) {
            assert!(line.ends_with(",40"), "{line}");
        }
    }
    for i in 0..19 {
        let report = ws.join(format!("grades/student-{i:02}/report.json"));
        assert!(report.is_file(), "{}", report.display());
    }
    let summary = &out.stdout;
    assert!(
        summary.contains("student-04") && summary.contains("timed out: add"),
        "{summary}"
    );
    assert!(summary.contains("is not a directory"), "{summary}");
    assert!(out.stderr.contains("wrote "), "{}", out.stderr);
}

#[test]
fn a_batch_of_20_with_a_hang_and_a_flood_yields_a_full_gradebook() {
    let ws = batch_workspace();
    let started = Instant::now();
    let out = trun(ws.path(), &batch_args(&["--local"]));
    expect_full_gradebook(ws.path(), &out);
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_batch_of_20_in_containers_yields_the_same_gradebook() {
    let ws = batch_workspace();
    ensure_busybox_image();
    let out = trun(ws.path(), &batch_args(&[]));
    expect_full_gradebook(ws.path(), &out);
}

#[test]
fn gradescope_results_show_hidden_criteria_after_the_due_date() {
    let ws = workspace(1, |_, s| s);
    grade_student(
        ws.path(),
        "rubric.yaml",
        &[
            "--local",
            "--format",
            "gradescope,junit",
            "--out",
            "results",
        ],
    )
    .ok();
    let text = fs::read_to_string(ws.path().join("results/results.json")).expect("results.json");
    let results: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(results["score"], 40.0);
    let tests = results["tests"].as_array().expect("tests");
    assert_eq!(tests.len(), 6);
    for t in tests {
        let want = if t["name"] == "Unit tests" {
            "after_due_date"
        } else {
            "visible"
        };
        assert_eq!(t["visibility"], want, "{t:#}");
    }
    assert_eq!(tests[5]["score"], 15.0);
    assert_eq!(tests[5]["max_score"], 20.0);
    assert!(ws.path().join("results/junit.xml").is_file());

    // One format of one repository can go to stdout instead.
    let out = grade_student(
        ws.path(),
        "rubric.yaml",
        &["--local", "--format", "gradescope"],
    )
    .ok();
    let again: Value = serde_json::from_str(&out.stdout).expect("stdout is results.json");
    assert_eq!(again["tests"], results["tests"]);
}

#[test]
fn rubric_import_round_trip_gives_the_same_score() {
    let ws = workspace(1, |_, s| s);
    let json = fixture().join(".github/classroom/autograding.json");
    let json = json.to_str().expect("utf-8 path");
    let printed = trun(ws.path(), &["rubric", "import", json]).ok();
    assert!(printed.stdout.contains("criteria:"), "{}", printed.stdout);
    let wrote = trun(
        ws.path(),
        &["rubric", "import", json, "-o", "imported.yaml"],
    )
    .ok();
    assert!(
        wrote
            .stderr
            .contains("imported.yaml (4 criteria, 25 points)"),
        "{}",
        wrote.stderr
    );
    assert_eq!(
        fs::read_to_string(ws.path().join("imported.yaml")).expect("imported"),
        printed.stdout
    );
    let grade = |rubric: &str| {
        grade_student(ws.path(), rubric, &["--local", "--json"])
            .ok()
            .json()
    };
    let from_json = grade(json);
    let from_yaml = grade("imported.yaml");
    assert_eq!(from_json["repos"][0]["score"], 20.0, "{from_json:#}");
    assert_eq!(criteria(&from_yaml, 0), criteria(&from_json, 0));
}

#[test]
fn regrading_says_it_reused_results_and_force_grades_again() {
    let ws = workspace(2, |_, s| s);
    let first = grade_student(ws.path(), "rubric.yaml", &["--local"]).ok();
    assert!(!first.stdout.contains("cached"), "{}", first.stdout);
    let again = grade_student(ws.path(), "rubric.yaml", &["--local"]).ok();
    assert!(
        again.stdout.starts_with(
            "student-00 (cached: nothing changed since it was last graded; --force re-runs)\n"
        ),
        "{}",
        again.stdout
    );
    assert!(again.stdout.contains("40/45"), "{}", again.stdout);
    let forced = grade_student(ws.path(), "rubric.yaml", &["--local", "--force"]).ok();
    assert!(!forced.stdout.contains("cached"), "{}", forced.stdout);

    let many = [
        "grade",
        "--repos",
        "students",
        "--rubric",
        "rubric.yaml",
        "--local",
    ];
    let batch = trun(ws.path(), &many).ok();
    assert!(
        batch.stderr.contains("reused 1 of 2 stored results"),
        "{}",
        batch.stderr
    );
    // A watched file changes: only that repository is graded again.
    let calc = ws.path().join("students/student-01/calc.sh");
    let src = fs::read_to_string(&calc).expect("calc.sh");
    fs::write(&calc, src.replace("$(($2 + $3))", "$(($2 - $3))")).expect("write");
    let batch = trun(ws.path(), &[&many[..], &["--json"]].concat()).ok();
    let doc = batch.json();
    assert_eq!(doc["repos"][0]["cached"], true);
    assert_eq!(doc["repos"][1]["cached"], false);
    assert_eq!(doc["repos"][1]["score"], 30.0);
    assert!(batch.stderr.contains("reused 1 of 2"), "{}", batch.stderr);

    // Every invocation is a run in the workspace's history: a job per repository, a step
    // per criterion (after `setup`).
    let store = trun::state::SqliteStore::open(&ws.path().join(".trun/state.db")).expect("store");
    let runs = store.runs(10).expect("runs");
    assert_eq!(runs.len(), 5);
    assert!(runs
        .iter()
        .all(|r| r.workflow == "grade rubric.yaml" && r.status.as_str() == "success"));
    let latest = store.run(runs[0].id).expect("run").expect("exists");
    let jobs: Vec<&str> = latest.jobs.iter().map(|j| j.key.as_str()).collect();
    assert_eq!(jobs, ["student-00", "student-01"]);
    let steps: Vec<&str> = latest.jobs[1].steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        steps,
        ["setup", "runs", "add", "sum", "usage", "version", "unit", "score"]
    );
    let add = &latest.jobs[1].steps[2];
    assert_eq!(add.status.as_str(), "failure");
    assert_eq!(
        add.reason.as_deref(),
        Some("failed: stdout did not match (exact) (0/10 points)")
    );
    // `trun logs RUN student-01.add` reads the step's log.
    let log = add
        .log_path
        .as_deref()
        .expect("add printed, so it has a log");
    // The criterion's output, then why it failed.
    assert_eq!(
        fs::read_to_string(log).expect("log"),
        "-1\nfailed: stdout did not match (exact) (0/10 points)\n"
    );
    let reused = &latest.jobs[0].steps[2];
    assert_eq!(reused.status.as_str(), "skipped");
    assert!(
        reused
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("up to date, reused: passed")),
        "{:?}",
        reused.reason
    );
    // Nothing was written into the student repositories.
    assert!(!ws.path().join("students/student-00/.trun").exists());
    assert!(!ws.path().join("students/student-00/calc").exists());
}

#[test]
fn rubric_errors_point_at_the_line_and_exit_2() {
    let ws = workspace(2, |_, s| s);
    fs::write(
        ws.path().join("bad.yaml"),
        "criteria:\n  - id: builds\n    run: make\n  - id: add\n    run: x\n    needs: [biulds]\n",
    )
    .expect("write");
    let out = grade_student(ws.path(), "bad.yaml", &[]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with(
            "bad.yaml:6:13: error: criterion `add` needs unknown criterion `biulds` (did you mean `builds`?)\n"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("6 |     needs: [biulds]"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");

    let out = trun(ws.path(), &["grade", "nowhere", "--rubric", "rubric.yaml"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (2, "error: repository nowhere does not exist\n")
    );
    let out = trun(
        ws.path(),
        &[
            "grade",
            "students/student-00",
            "students/student-01",
            "--rubric",
            "rubric.yaml",
            "--local",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: --format writes files: give --out DIR"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_unreachable_docker_daemon_is_one_line_suggesting_local() {
    let ws = workspace(1, |_, s| s);
    let out = trun_env(
        ws.path(),
        &["grade", "students/student-00", "--rubric", "rubric.yaml"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(
            "error: rubric.yaml grades in a container, but cannot reach the Docker daemon at unix:///nonexistent/docker.sock"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--local"), "{}", out.stderr);
    // Nothing was recorded: the run never started.
    let store = trun::state::SqliteStore::open(&ws.path().join(".trun/state.db")).expect("store");
    assert_eq!(store.runs(10).expect("runs").len(), 0);
}

#[test]
fn ctrl_c_removes_the_containers_and_records_the_run_as_cancelled() {
    let ws = workspace(20, |_, s| s);
    ensure_busybox_image();
    let running = || containers_of(ws.path());
    let child = common::invoke_in(
        ws.path(),
        &[
            "grade",
            "--repos",
            "students",
            "--rubric",
            "rubric.yaml",
            "-j",
            "2",
        ],
    )
    .spawn();
    common::wait_for("a grading container", Duration::from_secs(60), || {
        !running().is_empty()
    });
    child.signal(nix::sys::signal::Signal::SIGINT);
    child.wait(Duration::from_secs(60)).status(130);
    assert_eq!(running(), "", "containers left behind");
    let store = trun::state::SqliteStore::open(&ws.path().join(".trun/state.db")).expect("store");
    let runs = store.runs(1).expect("runs");
    assert_eq!(runs[0].status.as_str(), "cancelled");
}
