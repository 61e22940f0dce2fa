//! Grading runs through the one engine: a rubric's `container:` is honoured inside a
//! workflow step, Ctrl-C stops a criterion at once and leaves nothing behind, and both a
//! criterion's `timeout` and its job's `timeout-minutes` apply. Each test drives the real
//! binary and checks what happened in /proc, on disk and in Docker, not only trun's words.

mod common;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{wait_for, Test};
use nix::sys::signal::Signal;
use support::docker_env::{ensure_busybox_image, BUSYBOX_IMAGE};

/// Pids of live processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let entry = entry.expect("entry");
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // A zombie has an empty command line; it is no longer running anything.
        if text.contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// Entries of `dir` (a test's own TMPDIR) whose names start with `trun-grade-`.
fn scratch_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("trun-grade-"))
                .collect()
        })
        .unwrap_or_default()
}

fn docker_ps(label: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_rubric_container_is_honoured_in_a_workflow_step() {
    ensure_busybox_image();
    let marker = format!(
        "/tmp/trun-host-marker-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let t = Test::new()
        .file("student/main.sh", "echo hello\n")
        .file(
            "rubric.yaml",
            &format!(
                "container: {{ image: {BUSYBOX_IMAGE} }}\n\
                 criteria:\n\
                 \x20 - id: inside\n\
                 \x20   points: 1\n\
                 \x20   run: test -f /.dockerenv && touch {marker} && echo in-a-container\n\
                 \x20   expect: {{ stdout: in-a-container }}\n\
                 \x20 - id: no-network\n\
                 \x20   points: 1\n\
                 \x20   run: test \"$(ls /sys/class/net)\" = lo\n"
            ),
        )
        .workflow(
            "jobs:\n  grade:\n    outputs: { score: '${{ steps.rubric.outputs.score }}' }\n    steps:\n      - id: rubric\n        uses: rubric/grade\n        with: { rubric: rubric.yaml, repo: student }\n",
        );
    let out = t.run(&["--json"]);
    out.success();
    let events = out.json_lines();
    let done = events
        .iter()
        .find(|e| e["event"] == "job_finished" && e["job"] == "grade")
        .expect("job finished");
    assert_eq!(done["outputs"]["score"], "2", "{}", out.all());
    // The criterion ran in the container: the host never saw its file.
    assert!(
        !Path::new(&marker).exists(),
        "the criterion ran on the host: {marker} exists"
    );
    // And the container is gone.
    assert_eq!(
        docker_ps(&format!("trun.workspace={}", t.path().display())),
        ""
    );
}

#[test]
fn ctrl_c_during_a_criterion_exits_130_and_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let marker = format!("trun-grade-sleeper-{}", std::process::id());
    let t = Test::new().file("student/README", "x\n").file(
        "rubric.yaml",
        &format!(
            "criteria:\n  - id: slow\n    points: 1\n    timeout: 10m\n    run: |\n      sh -c 'sleep 600; : {marker}' &\n      setsid sh -c 'sleep 601; : {marker}' &\n      sleep 602\n"
        ),
    );
    let running = t
        .args(&["grade", "student", "--rubric", "rubric.yaml", "--local"])
        .env("TMPDIR", &tmp.path().display().to_string())
        .spawn();
    wait_for("the criterion to start", Duration::from_secs(30), || {
        processes_with(&marker).len() >= 2
    });
    assert_eq!(
        scratch_dirs(tmp.path()).len(),
        1,
        "one scratch copy while grading"
    );
    let sent = Instant::now();
    running.signal(Signal::SIGINT);
    let out = running.wait(Duration::from_secs(20));
    out.status(130);
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        sent.elapsed()
    );
    wait_for(
        "the criterion's processes to go",
        Duration::from_secs(2),
        || processes_with(&marker).is_empty(),
    );
    assert_eq!(scratch_dirs(tmp.path()), Vec::<String>::new());
    let run = t.show_json("last");
    assert_eq!(run["status"], "cancelled", "{run}");
}

#[test]
fn a_criterion_timeout_and_the_job_timeout_both_apply() {
    let t = Test::new()
        .file("student/README", "x\n")
        .file(
            "rubric.yaml",
            "criteria:\n  - { id: short, points: 1, timeout: 1s, run: 'sleep 30' }\n  - { id: long, points: 1, timeout: 10m, run: 'sleep 30' }\n  - { id: after, points: 1, run: 'true' }\n",
        )
        .workflow(
            "jobs:\n  grade:\n    timeout-minutes: 0.06\n    steps:\n      - id: rubric\n        uses: rubric/grade\n        with: { rubric: rubric.yaml, repo: student, local: true }\n",
        );
    let started = Instant::now();
    let out = t.run(&["--json"]);
    let took = started.elapsed();
    // 1 s for `short`, then `long` is cut at the job's limit (3.6 s in all).
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(took >= Duration::from_secs(3), "took {took:?}");
    let events = out.json_lines();
    let finished = |id: usize| {
        events
            .iter()
            .find(|e| e["event"] == "step_finished" && e["step"] == id)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(finished(0)["outputs"]["status"], "timeout", "{}", out.all());
    assert_eq!(finished(0)["reason"], "timed out after 1s");
    assert_eq!(finished(1)["outputs"]["status"], "timeout", "{}", out.all());
    // The reason names the limit that applied: what was left of the job's.
    let reason = finished(1)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.starts_with("timed out after 2") || reason.starts_with("timed out after 3"),
        "{reason}"
    );
}

#[test]
fn a_rubric_without_a_container_needs_an_explicit_local() {
    let t = Test::new()
        .file("student/README", "x\n")
        .file("rubric.yaml", "criteria:\n  - { id: a, points: 1, run: 'true' }\n")
        .workflow(
            "jobs:\n  grade:\n    steps:\n      - uses: rubric/grade\n        with: { rubric: rubric.yaml, repo: student }\n",
        );
    t.run(&["grade", "student", "--rubric", "rubric.yaml"])
        .status(2)
        .stderr_has("rubric.yaml names no `container:`, so its commands would run on this machine with no isolation")
        .stderr_has("pass --local");
    assert!(!t.exists(".trun/logs"), "nothing ran before the refusal");
    t.run(&["grade", "student", "--rubric", "rubric.yaml", "--local"])
        .success()
        .stderr_has("grading on this machine (--local): student code runs as ");
    t.run(&[])
        .status(2)
        .stderr_has("add `local: true` to the step's `with`");
}
