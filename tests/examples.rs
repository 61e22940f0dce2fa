//! Every workflow under examples/pipelines/ run through the real binary, each in
//! a fresh copy in a temp dir (never inside the repository), with its expected
//! exit code and the output that shows it did what its header comment says.
//! The Docker examples need a running daemon and the busybox test image (made
//! by tests/support/docker_env.rs); without a daemon they fail, loudly.

mod common;
mod support;

use common::{Output, Test};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::docker_env::ensure_busybox_image;

/// Every example directory. A new example must be added here (and get a test
/// below), or `every_example_is_tested_and_explains_itself` fails.
const EXAMPLES: &[&str] = &[
    "c-library",
    "continue-on-error",
    "docker-image",
    "fan-out",
    "job-outputs",
    "matrix-shards",
    "services",
];

/// Build products and state a developer may have left in the example itself.
const NOT_COPIED: &[&str] = &[".trun", "build", "dist", "results", "reports"];

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pipelines")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if NOT_COPIED.iter().any(|n| name == *n) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            // fs::copy keeps the permission bits (the scripts stay executable).
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A fresh copy of one example in a temp dir.
fn example(name: &str) -> Test {
    let t = Test::new();
    copy_tree(&examples_dir().join(name), t.path());
    t
}

/// Exit code 0 or `code`, and each needle somewhere in what trun printed.
#[track_caller]
fn expect(out: &Output, code: i32, needles: &[&str]) {
    out.status(code);
    for needle in needles {
        assert!(
            out.all().contains(needle),
            "expected {needle:?} in the output of `{}`:\n{}",
            out.command,
            out.all()
        );
    }
}

/// The steps of the latest run as `(job, step id, status)`.
fn steps(t: &Test) -> Vec<(String, String, String)> {
    let show = t.show_json("");
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut steps = Vec::new();
    for job in show["jobs"].as_array().expect("jobs") {
        for step in job["steps"].as_array().expect("steps") {
            steps.push((text(&job["key"]), text(&step["id"]), text(&step["status"])));
        }
    }
    steps
}

/// Asserts that no container or network of this workspace's runs remains.
#[track_caller]
fn assert_no_docker_leftovers(t: &Test) {
    let root = t.path().canonicalize().expect("canonical");
    let ws = hex::encode(&Sha256::digest(root.to_string_lossy().as_bytes())[..8]);
    let filter = format!("label=trun.workspace={ws}");
    for args in [
        vec!["ps", "-aq", "--filter", &filter],
        vec!["network", "ls", "-q", "--filter", &filter],
    ] {
        let out = Command::new("docker").args(&args).output().expect("docker");
        let left = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && left.is_empty(),
            "`docker {}` lists leftovers: {left}",
            args.join(" ")
        );
    }
}

#[test]
fn every_example_is_tested_and_explains_itself() {
    let mut found: Vec<String> = std::fs::read_dir(examples_dir())
        .expect("examples/pipelines")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    found.sort();
    assert_eq!(found, EXAMPLES, "examples/pipelines/ and EXAMPLES differ");
    for name in EXAMPLES {
        let t = example(name);
        let header = t
            .read("trun.yaml")
            .lines()
            .take_while(|l| l.starts_with('#'))
            .count();
        assert!(
            header >= 3,
            "{name}/trun.yaml needs a header comment saying what it shows"
        );
        t.run(&["validate"]).success();
    }
}

#[test]
fn c_library_builds_tests_and_is_up_to_date_the_second_time() {
    let t = example("c-library");
    expect(
        &t.run(&[]),
        0,
        &[
            "0 failure(s)",
            "n=4 mean=2.5 median=2.5 range=3",
            "3 jobs succeeded",
        ],
    );
    assert!(t.exists("build/libstats.a") && t.exists("build/stats"));

    expect(&t.run(&[]), 0, &["up to date"]);
    let second = steps(&t);
    assert_eq!(second.len(), 5, "{second:?}");
    assert!(
        second.iter().all(|(_, _, status)| status == "skipped"),
        "a second run must be all up to date: {second:?}"
    );
    expect(&t.run(&["plan"]), 0, &["0 to run, 5 up to date"]);

    // An edit to the library is noticed, and the plan names the file.
    let mut source = t.read("src/stats.c");
    source.push_str("/* an edit */\n");
    t.write("src/stats.c", &source);
    expect(&t.run(&["plan"]), 0, &["src/stats.c changed"]);
    // A comment leaves build/libstats.a byte-identical: nothing after `lib` runs.
    expect(
        &t.run(&[]),
        0,
        &["up to date: inputs unchanged after lib re-ran"],
    );
    let lib = steps(&t)
        .into_iter()
        .find(|(_, id, _)| id == "lib")
        .expect("lib step");
    assert_eq!(lib.2, "success");
}

#[test]
fn fan_out_processes_every_emitted_file_then_nothing() {
    let t = example("fan-out");
    expect(
        &t.run(&["--progress", "plain"]),
        0,
        &[
            "process[hello.txt]",
            "transform[fruits.list]",
            "report[upper-notes.txt]",
        ],
    );
    assert_eq!(t.read("reports/upper-hello.txt"), "HELLO\nWORLD\n");
    assert_eq!(t.read("reports/sorted-fruits.list"), "apple\nfig\npear\n");
    assert!(t.read("summary.txt").contains("reports/upper-notes.txt"));
    std::fs::remove_file(t.join("ran.log")).expect("ran.log");
    expect(&t.run(&["--progress", "plain"]), 0, &["up to date"]);
    assert!(!t.exists("ran.log"), "the second run ran something");
}

#[test]
fn matrix_shards_run_every_leg_and_cover_every_test() {
    let t = example("matrix-shards");
    expect(
        &t.run(&[]),
        0,
        &[
            "dash-default: 8 of 8 tests passed",
            "bash-default: 8 of 8 tests passed",
            "bash-posix: 8 of 8 tests passed",
            "bash-trace: 4 traced",
            "legs: 7",
            "8 jobs succeeded",
        ],
    );
    // `exclude` dropped dash + posix; `include` added the traced leg.
    let jobs: Vec<String> = steps(&t)
        .into_iter()
        .map(|(job, _, _)| job)
        .filter(|job| job.starts_with("test"))
        .collect();
    assert_eq!(jobs.len(), 7, "{jobs:?}");
    assert!(!jobs
        .iter()
        .any(|j| j.contains("posix") && j.contains("dash")));
    assert_eq!(jobs.iter().filter(|j| j.contains("trace")).count(), 1);
}

#[test]
fn job_outputs_reach_later_jobs() {
    let t = example("job-outputs");
    expect(
        &t.run(&[]),
        0,
        &[
            "release 1.4.2 (package: success)",
            "- faster start-up",
            "- fix the about page",
            "dist/site-1.4.2-linux-amd64.tar",
            "Version 1.4.2, built for linux-arm64.",
        ],
    );
    assert!(t.exists("dist/site-1.4.2-linux-arm64.tar"));
}

#[test]
fn continue_on_error_records_failures_and_still_exits_0() {
    let t = example("continue-on-error");
    expect(
        &t.run(&[]),
        0,
        &[
            "found unfinished sections",
            "ok: reference.md",
            "warning: the docs lint failed",
            "nightly: success",
        ],
    );
    let all = steps(&t);
    let status = |job: &str, id: &str| {
        all.iter()
            .find(|(j, i, _)| j == job && (id.is_empty() || i == id))
            .map(|(_, _, s)| s.clone())
            .unwrap_or_else(|| panic!("no step {job}.{id} in {all:?}"))
    };
    assert_eq!(status("docs", "lint"), "failure");
    assert_eq!(status("docs", "links"), "success");
    assert_eq!(status("nightly", ""), "failure");
    assert_eq!(status("summary", ""), "success");
}

#[test]
fn docker_image_is_built_once_and_tested_inside() {
    ensure_busybox_image();
    let t = example("docker-image");
    expect(
        &t.run(&[]),
        0,
        &[
            "Successfully tagged trun-example/greeter:dev",
            "ok   no name is a usage error",
            "0 failure(s)",
            "Hello, smoke!",
            "hello=0 shout=0",
        ],
    );
    // The job container wrote into the workspace.
    let report = t.read("reports/test-greet.txt");
    assert_eq!(report.lines().filter(|l| l.starts_with("ok")).count(), 4);
    assert_no_docker_leftovers(&t);

    expect(&t.run(&[]), 0, &["image up to date", "hello=0 shout=0"]);
    assert_no_docker_leftovers(&t);
}

#[test]
fn services_are_reachable_by_name() {
    ensure_busybox_image();
    let t = example("services");
    expect(
        &t.run(&[]),
        0,
        &[
            "ok   health",
            "ok   version 2.0.1",
            "ok   404 for a missing page",
        ],
    );
    assert_no_docker_leftovers(&t);
}
