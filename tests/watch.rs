//! `trun watch` through the real binary (issue 13): real files, real inotify, real
//! processes. What ran is proven by the steps themselves (each appends a line to
//! `ran.txt`); a cycle's end by its status line on stderr.

mod common;

use common::{Running, Test};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// One step that copies `src/in.txt` to `out.txt`, after `pre` (shell).
fn project(pre: &str) -> Test {
    let t = Test::new().workflow(&format!(
        r#"
        name: w
        jobs:
          build:
            steps:
              - id: copy
                run: |
                  echo run >> ran.txt
                  {pre}
                  cat src/in.txt > out.txt
                sources: ["src/**"]
                generates: [out.txt]
        "#
    ));
    t.write("src/in.txt", "v1\n");
    t
}

fn watch(t: &Test) -> Running {
    t.args(&["watch", "--progress", "plain"]).spawn()
}

fn runs(t: &Test) -> usize {
    if t.exists("ran.txt") {
        t.read("ran.txt").lines().count()
    } else {
        0
    }
}

/// Polls `what` every 5 ms until it holds; fails the test with trun's stderr
/// after `limit`. Returns how long it took.
#[track_caller]
fn wait_for(w: &Running, limit: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() > limit {
            panic!(
                "not within {limit:?}: {what}\n--- stderr ---\n{}",
                w.stderr_so_far()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

#[track_caller]
fn cycle_done(w: &Running, n: u32) {
    let line = format!("trun watch: cycle {n}: ");
    wait_for(w, Duration::from_secs(30), &line.clone(), || {
        w.stderr_so_far().contains(&line)
    });
}

#[test]
fn an_edit_runs_the_step_once_within_a_second_and_ctrl_c_exits_130() {
    let t = project("");
    let w = watch(&t);
    cycle_done(&w, 1);
    assert_eq!(runs(&t), 1);
    assert_eq!(t.read("out.txt"), "v1\n");

    t.write("src/in.txt", "v2\n");
    let took = wait_for(
        &w,
        Duration::from_secs(10),
        "a re-run after an edit",
        || runs(&t) == 2,
    );
    eprintln!("trun watch: edit to re-run: {} ms", took.as_millis());
    // Under two cores shared by several builds the figure varies; 1 s is the goal.
    assert!(took < Duration::from_secs(5), "re-run took {took:?}");
    cycle_done(&w, 2);
    assert_eq!(t.read("out.txt"), "v2\n");

    // Its own output written, the run is not a change: nothing more runs.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(runs(&t), 2, "{}", w.stderr_so_far());
    assert!(!w.stderr_so_far().contains("cycle 3"));

    // Ctrl-C while waiting.
    w.signal(Signal::SIGINT);
    w.wait(Duration::from_secs(10)).status(130);
}

#[test]
fn edits_during_a_run_queue_exactly_one_more_cycle() {
    let t = project("sleep 1");
    let w = watch(&t);
    cycle_done(&w, 1);
    t.write("src/in.txt", "v2\n");
    wait_for(&w, Duration::from_secs(10), "cycle 2 to start", || {
        runs(&t) == 2
    });
    for v in ["v3", "v4", "v5"] {
        t.write("src/in.txt", &format!("{v}\n"));
        std::thread::sleep(Duration::from_millis(100));
    }
    cycle_done(&w, 2);
    assert!(
        w.stderr_so_far()
            .contains("files changed during the run; running again"),
        "{}",
        w.stderr_so_far()
    );
    cycle_done(&w, 3);
    assert_eq!(runs(&t), 3);
    assert_eq!(t.read("out.txt"), "v5\n");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(runs(&t), 3, "{}", w.stderr_so_far());
    assert!(!w.stderr_so_far().contains("cycle 4"));
    w.signal(Signal::SIGINT);
    w.wait(Duration::from_secs(10)).status(130);
}

#[test]
fn an_edit_to_the_workflow_replans() {
    let t = project("");
    let w = watch(&t);
    cycle_done(&w, 1);
    let yaml = t
        .read("trun.yaml")
        .replace("echo run", "echo run; echo v2 > v2.txt");
    t.write("trun.yaml", &yaml);
    wait_for(
        &w,
        Duration::from_secs(10),
        "the new definition to run",
        || t.exists("v2.txt"),
    );
    cycle_done(&w, 2);
    assert_eq!(runs(&t), 2);
    w.signal(Signal::SIGINT);
    w.wait(Duration::from_secs(10)).status(130);
}

/// Pids whose command line (arguments joined by spaces) contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        // Arguments are separated by NULs; read them as a shell line.
        if String::from_utf8_lossy(&cmdline)
            .replace('\0', " ")
            .contains(needle)
        {
            found.push(name);
        }
    }
    found
}

#[test]
fn ctrl_c_during_a_run_exits_130_and_leaves_no_process() {
    // A child of the step and a grandchild in the background: both must go.
    let t = project("(sleep 37.25 &) ; sleep 37.25");
    let w = watch(&t);
    wait_for(&w, Duration::from_secs(30), "the step to start", || {
        processes_with("37.25").len() >= 2
    });
    w.signal(Signal::SIGINT);
    w.wait(Duration::from_secs(15)).status(130);
    let left = processes_with("37.25");
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// The process group of `pid`, from /proc (None once it is gone).
fn pgid(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp …; comm may hold spaces, so split after ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)
        .map(str::to_string)
}

fn in_group(group: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.chars().all(|c| c.is_ascii_digit()) && pgid(&name).as_deref() == Some(group) {
            found.push(name);
        }
    }
    found
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn a_restart_step_is_stopped_with_its_process_group_and_its_port_freed_before_it_starts_again() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let t = Test::new().workflow(&format!(
        r#"
        name: server
        jobs:
          serve:
            steps:
              - id: web
                restart: true
                run: |
                  python3 -c "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {port}))" || {{ echo port-taken >> ran.txt; exit 1; }}
                  echo start >> ran.txt
                  sleep 300 &
                  exec python3 -m http.server {port} --bind 127.0.0.1 --directory site
                sources: ["site/**"]
        "#
    ));
    t.write("site/index.html", "v1\n");
    let server = format!("http.server {port}");
    let w = watch(&t);
    wait_for(&w, Duration::from_secs(30), "the server to listen", || {
        listening(port)
    });
    let first = processes_with(&server);
    assert_eq!(first.len(), 1, "{first:?}");
    let group = pgid(&first[0]).expect("the server's process group");
    assert!(in_group(&group).len() >= 2, "server and its sleep");

    t.write("site/index.html", "v2\n");
    wait_for(&w, Duration::from_secs(30), "a new server", || {
        let now = processes_with(&server);
        now.len() == 1 && now != first && listening(port)
    });
    assert!(
        in_group(&group).is_empty(),
        "the old process group is still there: {:?}",
        in_group(&group)
            .iter()
            .map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default())
            .collect::<Vec<_>>()
    );
    assert_eq!(t.read("ran.txt"), "start\nstart\n", "{}", w.stderr_so_far());
    assert!(w.stderr_so_far().contains("stopped to restart serve.web"));
    let second = processes_with(&server);
    let new_group = pgid(&second[0]).expect("the new server's process group");
    assert!(in_group(&new_group).len() >= 2, "new server and its sleep");

    // Ctrl-C with the server up: the whole new group goes (its background
    // `sleep` too), and the port is free again.
    w.signal(Signal::SIGINT);
    w.wait(Duration::from_secs(15)).status(130);
    assert!(processes_with(&server).is_empty());
    // A killed orphan may stay a zombie for a moment, until init reaps it.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !in_group(&new_group).is_empty() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        in_group(&new_group).is_empty(),
        "left in the server's group after Ctrl-C: {:?}",
        in_group(&new_group)
    );
    assert!(!listening(port), "port {port} still taken after Ctrl-C");
}

#[test]
fn a_broken_workflow_while_watching_waits_for_a_fix_and_an_unknown_job_is_a_usage_error() {
    let t = project("");
    t.run(&["watch", "nosuch"])
        .status(2)
        .stderr_has("no job named `nosuch`");

    let w = watch(&t);
    cycle_done(&w, 1);
    let good = t.read("trun.yaml");
    t.write("trun.yaml", "jobs: [");
    cycle_done(&w, 2);
    assert!(w
        .stderr_so_far()
        .contains("trun watch: cycle 2: the workflow has errors; waiting for a change to it"));
    t.write(
        "trun.yaml",
        &good.replace("echo run", "echo run; echo fixed > fixed.txt"),
    );
    wait_for(
        &w,
        Duration::from_secs(10),
        "the fixed workflow to run",
        || t.exists("fixed.txt"),
    );
    w.signal(Signal::SIGINT);
    w.wait(Duration::from_secs(10)).status(130);
}
