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

/// The `trun.workspace` label trun puts on what it starts for the workspace at `root`.
fn workspace_label(root: &Path) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(root.to_string_lossy().as_bytes());
    format!("trun.workspace={}", hex::encode(&h[..8]))
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
    assert_eq!(docker_ps(&workspace_label(t.path())), "");
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
    assert_eq!(
        finished(0)["reason"],
        "timeout: timed out after 1s (0/1 points)"
    );
    assert_eq!(finished(1)["outputs"]["status"], "timeout", "{}", out.all());
    // The reason names the limit that applied: what was left of the job's.
    let reason = finished(1)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.starts_with("timeout: timed out after 2")
            || reason.starts_with("timeout: timed out after 3"),
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

/// `docker inspect` of the containers of this workspace, as JSON.
fn inspect_workspace_containers(ws: &Path) -> serde_json::Value {
    let ids = docker_ps(&workspace_label(ws));
    if ids.is_empty() {
        return serde_json::Value::Array(Vec::new());
    }
    let mut args = vec!["inspect".to_string()];
    args.extend(ids.lines().map(str::to_string));
    let out = std::process::Command::new("docker")
        .args(&args)
        .output()
        .expect("docker inspect");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[test]
fn a_grading_container_can_write_nothing_on_the_host() {
    ensure_busybox_image();
    let t = Test::new().file("student/README", "x\n").file(
        "rubric.yaml",
        &format!(
            "container: {{ image: {BUSYBOX_IMAGE} }}\n\
             criteria:\n\
             \x20 - id: fill\n\
             \x20   points: 1\n\
             \x20   timeout: 60s\n\
             \x20   run: dd if=/dev/zero of=$TRUN_OUT/big bs=1M count=200; dd if=/dev/zero of=/big bs=1M count=1; touch /work/ok && sleep 4\n"
        ),
    );
    let running = t
        .args(&["grade", "student", "--rubric", "rubric.yaml"])
        .spawn();
    let mut seen = serde_json::Value::Null;
    wait_for("the grading container", Duration::from_secs(60), || {
        seen = inspect_workspace_containers(t.path());
        seen.as_array().is_some_and(|a| !a.is_empty())
    });
    let c = &seen[0];
    assert_eq!(c["HostConfig"]["ReadonlyRootfs"], true, "{c}");
    assert_eq!(c["HostConfig"]["NetworkMode"], "none");
    for m in c["Mounts"].as_array().expect("mounts") {
        // The one bind mount is the repository, read-only; everything else is tmpfs.
        assert_eq!(m["RW"], false, "a writable host mount: {m}");
    }
    let out = running.wait(Duration::from_secs(90));
    out.success();
    let log =
        std::fs::read_to_string(t.join(".trun/logs/1/student/01-fill.log")).unwrap_or_default();
    assert!(log.contains("No space left on device"), "{log}");
    assert!(log.contains("Read-only file system"), "{log}");
}

#[test]
fn a_fifo_in_the_repo_or_at_the_score_file_blocks_nothing() {
    ensure_busybox_image();
    let t = Test::new().file("student/README", "x\n");
    nix::unistd::mkfifo(
        &t.join("student/pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    for (rubric, extra) in [("local.yaml", "--local"), ("container.yaml", "--force")] {
        let container = if rubric == "container.yaml" {
            format!("container: {{ image: {BUSYBOX_IMAGE} }}\n")
        } else {
            String::new()
        };
        t.write(
            rubric,
            &format!(
                "{container}criteria:\n  - {{ id: reads, points: 1, run: 'cat README' }}\n  - id: fifo-score\n    points: 4\n    timeout: 20s\n    score: {{ from: fraction }}\n    run: mkfifo \"$TRUN_SCORE\"\n"
            ),
        );
        let started = Instant::now();
        let out = t.run(&["grade", "student", "--rubric", rubric, extra, "--json"]);
        out.success();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{rubric}: took {:?}",
            started.elapsed()
        );
        let doc = out.json();
        let criteria = &doc["repos"][0]["criteria"];
        assert_eq!(criteria[0]["status"], "passed", "{rubric}: {doc}");
        assert_eq!(criteria[1]["status"], "error", "{rubric}: {doc}");
        assert!(
            criteria[1]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("wrote no $TRUN_OUT/score")),
            "{rubric}: {doc}"
        );
    }
}

#[test]
fn an_earlier_criterion_cannot_seed_a_later_ones_score() {
    ensure_busybox_image();
    let t = Test::new().file("student/README", "x\n");
    // `seed` leaves a process behind that writes full marks into every $TRUN_OUT it can
    // find; `victim` earns a fifth. Locally the leftover is killed at the step's end (it
    // carries the step's token); in a container every process but init is.
    let seed_local = "(while true; do for d in \"${TMPDIR:-/tmp}\"/trun-grade-*/out-*; do echo 1 > \"$d/score\"; done 2>/dev/null; sleep 0.05; done) & sleep 0.2";
    let seed_container = "(while true; do for d in /trun/out-*; do echo 1 > \"$d/score\"; done 2>/dev/null; sleep 0.05; done) & sleep 0.2";
    for (rubric, seed, extra) in [
        ("local.yaml", seed_local, "--local"),
        ("container.yaml", seed_container, "--force"),
    ] {
        let container = if rubric == "container.yaml" {
            format!("container: {{ image: {BUSYBOX_IMAGE} }}\n")
        } else {
            String::new()
        };
        t.write(
            rubric,
            &format!(
                "{container}criteria:\n  - id: seed\n    points: 1\n    run: '{seed}'\n  - id: victim\n    points: 10\n    score: {{ from: fraction }}\n    run: sleep 1; echo 0.2 > \"$TRUN_SCORE\"; sleep 1\n"
            ),
        );
        let out = t.run(&["grade", "student", "--rubric", rubric, extra, "--json"]);
        out.success();
        let doc = out.json();
        let victim = &doc["repos"][0]["criteria"][1];
        assert_eq!(victim["points"], 2.0, "{rubric}: {doc}");
    }
}

#[test]
fn an_out_of_memory_kill_is_named() {
    ensure_busybox_image();
    let t = Test::new().file("student/README", "x\n").file(
        "rubric.yaml",
        &format!(
            "container: {{ image: {BUSYBOX_IMAGE} }}\n\
             defaults: {{ memory: 24MiB }}\n\
             criteria:\n\
             \x20 - id: hog\n\
             \x20   points: 1\n\
             \x20   run: head -c 200000000 /dev/zero | tail -c 150000000 > /dev/null\n"
        ),
    );
    let out = t.run(&["grade", "student", "--rubric", "rubric.yaml", "--json"]);
    out.success();
    let doc = out.json();
    let reason = doc["repos"][0]["criteria"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason == "killed: out of memory (the container's limit is 24MiB), exit code 137",
        "{doc}"
    );
}
