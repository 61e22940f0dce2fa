//! What a run leaves behind and how a user reads it back: `.trun/state.db`, the
//! step logs under `.trun/logs/`, `trun history`, `trun show [--json]` and
//! `trun logs RUN [JOB[.STEP]]`, including their errors.

mod common;

use common::Test;
use serde_json::Value;

/// `build` (two steps, one writing to stderr) and `test` (exits with the `code`
/// input), so that runs can succeed or fail on demand.
const WORKFLOW: &str = "
    name: st
    inputs:
      code: { type: number, default: 0 }
    jobs:
      build:
        steps:
          - id: compile
            run: echo compiling; sleep 0.05; echo warning >&2
          - run: echo second
      test:
        needs: build
        steps:
          - id: unit
            run: echo testing; exit ${{ inputs.code }}
    ";

/// A workspace with three recorded runs: 1 success, 2 failure (test exits 3),
/// 3 success of `test` alone.
fn three_runs() -> Test {
    let t = Test::new().workflow(WORKFLOW);
    t.run(&["-q"]).success();
    t.run(&["-q", "-i", "code=3"]).status(1);
    t.run(&["-q", "test"]).success();
    t
}

#[test]
fn state_lives_in_dot_trun() {
    let t = Test::new().workflow(WORKFLOW);
    t.run(&[]).success();
    assert!(t.exists(".trun/state.db"));
    let show = t.show_json("1");
    let log = show["jobs"][0]["steps"][0]["log_path"].as_str().unwrap();
    assert!(
        log.contains("/.trun/logs/1/"),
        "logs live under .trun/logs/<run>/: {log}"
    );
    let text = std::fs::read_to_string(log).expect("the step's log file exists");
    assert!(
        text.contains("compiling") && text.contains("warning"),
        "{text}"
    );
}

#[test]
fn history_lists_runs_newest_first() {
    let t = three_runs();
    let out = t.run(&["history"]);
    out.success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert!(lines[0].starts_with("RUN") && lines[0].contains("STATUS"));
    let rows: Vec<(&str, &str)> = lines[1..]
        .iter()
        .map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next().unwrap(), cols.next().unwrap())
        })
        .collect();
    assert_eq!(rows, [("3", "success"), ("2", "failure"), ("1", "success")]);
    assert!(lines[1].ends_with("-q test"), "ARGS column: {}", lines[1]);

    let limited = t.run(&["history", "-n", "2"]);
    assert_eq!(limited.success().stdout.lines().count(), 3);

    let json = t.run(&["history", "--json"]);
    let ids: Vec<i64> = json
        .success()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [3, 2, 1]);
}

/// No runs yet is an empty history, not an error: a script reading
/// `trun history --json` gets `[]`.
#[test]
fn history_of_a_fresh_workspace_is_empty() {
    let t = Test::new().workflow(WORKFLOW);
    assert_eq!(
        t.run(&["history", "--json"]).success().json(),
        Value::Array(vec![])
    );
}

#[test]
fn show_prints_jobs_steps_statuses_and_exit_codes() {
    let t = three_runs();
    let out = t.run(&["show", "2"]);
    out.success()
        .stdout_has("run 2")
        .stdout_has("failure")
        .stdout_has("-q -i code=3");
    // Job rows start with the job; step rows with `N.` and the step.
    let row = |col: usize, name: &str| -> Vec<String> {
        out.stdout
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|cols| cols.get(col).map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no row for {name} in\n{}", out.stdout))
    };
    assert_eq!(row(1, "compile")[..4], ["1.", "compile", "success", "0"]);
    assert_eq!(row(1, "unit")[..4], ["1.", "unit", "failure", "3"]);
    assert_eq!(row(0, "build")[..2], ["build", "success"]);
    assert_eq!(row(0, "test")[..2], ["test", "failure"]);

    // Without a run id, the latest run.
    t.run(&["show"]).success().stdout_has("run 3");
}

#[test]
fn show_json_records_the_whole_run() {
    let t = three_runs();
    let show = t.show_json("2");
    assert_eq!(show["id"], 2);
    assert_eq!(show["workflow"], "st");
    assert_eq!(show["status"], "failure");
    assert_eq!(show["args"], serde_json::json!(["-q", "-i", "code=3"]));
    assert!(show["started_at"].as_i64().unwrap() <= show["finished_at"].as_i64().unwrap());

    let jobs = show["jobs"].as_array().unwrap();
    let keys: Vec<&str> = jobs.iter().map(|j| j["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["build", "test"]);
    assert_eq!(jobs[1]["needs"], serde_json::json!(["build"]));

    let build = &jobs[0];
    assert_eq!(build["status"], "success");
    let steps = build["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["id"], "compile");
    assert_eq!(steps[0]["status"], "success");
    assert_eq!(steps[0]["exit_code"], 0);
    assert_eq!(steps[1]["name"], "echo second");

    let test = &jobs[1];
    assert_eq!(test["status"], "failure");
    let unit = &test["steps"][0];
    assert_eq!(unit["id"], "unit");
    assert_eq!(unit["status"], "failure");
    assert_eq!(unit["exit_code"], 3);
    assert_eq!(unit["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(unit["attempts"][0]["exit_code"], 3);
    for job in jobs {
        for step in job["steps"].as_array().unwrap() {
            let (s, f) = (&step["started_at"], &step["finished_at"]);
            assert!(s.as_i64().unwrap() <= f.as_i64().unwrap(), "{step:#}");
            assert!(
                std::path::Path::new(step["log_path"].as_str().unwrap()).exists(),
                "{step:#}"
            );
        }
    }
}

#[test]
fn logs_of_a_step_a_job_and_a_run() {
    let t = three_runs();
    t.run(&["logs", "2", "build.compile"])
        .success()
        .stdout_is("compiling\nwarning\n");
    // A step without an id, by its number.
    t.run(&["logs", "2", "build.2"])
        .success()
        .stdout_is("second\n");
    t.run(&["logs", "2", "test.unit"])
        .success()
        .stdout_is("testing\n");
    t.run(&["logs", "last", "test"])
        .success()
        .stdout_is("testing\n");
    let job = t.run(&["logs", "2", "build"]);
    job.success().stdout_has("compiling").stdout_has("second");
    let run = t.run(&["logs", "1"]);
    run.success()
        .stdout_has("==> build.compile <==\ncompiling\n")
        .stdout_has("==> test.unit <==\ntesting\n");
}

#[test]
fn logs_with_a_mistyped_job_suggests_the_nearest() {
    let t = three_runs();
    t.run(&["logs", "last", "tset"])
        .status(2)
        .stdout_is("")
        .stderr_is("error: run 3 has no job `tset`; did you mean `test`?\n");
}

#[test]
fn logs_with_a_mistyped_step_suggests_the_nearest() {
    let t = three_runs();
    t.run(&["logs", "2", "build.compil"])
        .status(2)
        .stderr_is("error: job `build` of run 2 has no step `compil`; did you mean `compile`?\n");
    t.run(&["logs", "2", "build.3"])
        .status(2)
        .stderr_is("error: job `build` of run 2 has no step `3`; it has `compile`, `step-2`\n");
}

#[test]
fn show_and_logs_of_a_missing_run() {
    let t = three_runs();
    t.run(&["show", "99"]).status(2).stderr_has("no run 99");
    t.run(&["logs", "99"]).status(2).stderr_has("no run 99");
}

#[test]
fn runs_are_numbered_and_kept_across_invocations() {
    let t = Test::new().workflow(WORKFLOW);
    for _ in 0..3 {
        t.run(&["-q", "build"]).success();
    }
    assert_eq!(t.show_json("")["id"], 3);
    assert_eq!(t.show_json("1")["jobs"].as_array().unwrap().len(), 1);
}

/// `trun history | head -1`: a closed stdout is not a crash.
#[test]
fn a_closed_stdout_does_not_panic() {
    let t = three_runs();
    for args in [
        &["history", "--json"][..],
        &["schema"],
        &["completions", "bash"],
    ] {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        drop(read); // every write to stdout now fails with EPIPE
        let out = std::process::Command::new(common::TRUN)
            .args(args)
            .current_dir(t.path())
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run trun");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "`trun {}` panicked on a closed stdout:\n{stderr}",
            args.join(" ")
        );
    }
}

/// The files `pid` has open whose path is exactly `path`, from `/proc/<pid>/fd`.
fn open_fds_on(pid: i32, path: &std::path::Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/<pid>/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target == path)
        .count()
}

/// The recorder, the up-to-date checks, action memory: one connection to
/// state.db for all of them, seen from outside in `/proc/<pid>/fd` while a
/// step runs.
#[test]
fn a_run_opens_one_connection_to_the_state_database() {
    let t = Test::new()
        .file("src/a.txt", "a")
        .file("in.txt", "x")
        .workflow(
            "
            jobs:
              check:
                steps:
                  - uses: files/exist
                    with: { paths: [in.txt] }
              build:
                needs: check
                steps:
                  - run: cat src/a.txt > out.txt
                    sources: ['src/**']
                    generates: [out.txt]
                  - run: touch started; sleep 3
            ",
        );
    // A first run creates state.db; the second opens an existing one, as a
    // user's every run after the first does.
    t.run(&["-q", "check"]).success();
    let running = t.args(&["-q"]).spawn();
    common::wait_for(
        "the sleeping step to start",
        std::time::Duration::from_secs(30),
        || t.exists("started"),
    );
    let db = std::fs::canonicalize(t.join(".trun/state.db")).expect("state.db exists");
    let wal = db.with_file_name("state.db-wal");
    let (db_fds, wal_fds) = (
        open_fds_on(running.pid(), &db),
        open_fds_on(running.pid(), &wal),
    );
    running.wait(std::time::Duration::from_secs(30)).success();
    assert_eq!(db_fds, 1, "trun had {db_fds} connections open to {db:?}");
    assert!(wal_fds <= 1, "trun had {wal_fds} handles on {wal:?}");
    // The run was recorded, and the up-to-date step is up to date next time.
    assert_eq!(t.show_json("2")["status"], "success");
    t.run(&["plan"]).stdout_has("up to date");
}
