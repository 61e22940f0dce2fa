//! Stopping a run from outside: SIGINT and SIGTERM kill every step's process group
//! (children and grandchildren), record the run as cancelled and exit 130; SIGKILL
//! leaves a database the next `trun` opens, marking the run interrupted. And two
//! `trun`s on one workspace: the second waits for the lock, or with `--no-wait` says
//! who holds it.

mod common;

use std::time::Duration;

use common::{wait_for, Process, Reaper, Running, Test};
use nix::sys::signal::Signal;

/// Two jobs that each start a shell with a background grandchild (`sh -c 'sleep &
/// exec sleep'`), one also a background `sleep`; every process records its pid in
/// `pids-<job>` and the step waits. `later` needs `one` and must never run; `quick`
/// is independent, for a run after the stopped one.
const LONG: &str = r#"
    jobs:
      one:
        steps:
          - run: |
              sh -c 'sleep 300 & echo $! >> pids-one; exec sleep 300' &
              echo $! >> pids-one
              sleep 300 &
              echo $! >> pids-one
              echo $$ >> pids-one
              touch ready-one
              wait
      two:
        steps:
          - run: |
              sh -c 'sleep 300 & echo $! >> pids-two; exec sleep 300' &
              echo $! >> pids-two
              echo $$ >> pids-two
              touch ready-two
              wait
      later:
        needs: one
        steps:
          - run: touch later
      quick:
        steps:
          - run: touch quick
    "#;

/// How many pids each job of `LONG` records: the grandchild writes its own line
/// asynchronously, so readiness is a full count, not the `ready` marker alone.
const PIDS: [(&str, usize); 2] = [("pids-one", 4), ("pids-two", 3)];

fn read_pids(t: &Test, file: &str) -> Vec<i32> {
    if !t.exists(file) {
        return Vec::new();
    }
    t.read(file)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Starts the `LONG` workflow and waits until both jobs have started all their
/// processes; returns the running trun and those processes.
fn start_long(t: &Test) -> (Running, Vec<Process>) {
    let running = t
        .args(&["-j", "4", "--progress", "plain", "one", "two", "later"])
        .spawn();
    wait_for("both jobs to start", Duration::from_secs(30), || {
        t.exists("ready-one")
            && t.exists("ready-two")
            && PIDS.iter().all(|&(f, n)| read_pids(t, f).len() == n)
    });
    let mut procs = Vec::new();
    for (file, _) in PIDS {
        for pid in read_pids(t, file) {
            let p = Process::find(pid).unwrap_or_else(|| panic!("pid {pid} is not running"));
            procs.push(p);
        }
    }
    (running, procs)
}

fn assert_all_gone(procs: &[Process]) {
    let reaper = Reaper(procs.to_vec());
    wait_for(
        "every step process to be killed",
        Duration::from_secs(10),
        || procs.iter().all(|p| !p.alive()),
    );
    drop(reaper);
}

fn stop_kills_everything_and_records_cancelled(signal: Signal) {
    let t = Test::new().workflow(LONG);
    let (running, procs) = start_long(&t);
    let reaper = Reaper(procs.clone());
    running.signal(signal);
    let out = running.wait(Duration::from_secs(30));
    out.status(130);
    assert_all_gone(&procs);
    drop(reaper);
    assert!(!t.exists("later"), "a job ran after the run was stopped");

    let show = t.show_json("");
    assert_eq!(show["status"], "cancelled", "{show:#}");
    for job in show["jobs"].as_array().unwrap() {
        if job["key"] == "one" || job["key"] == "two" {
            assert_eq!(job["status"], "cancelled", "{job:#}");
            assert_eq!(job["steps"][0]["status"], "cancelled", "{job:#}");
        } else {
            assert_ne!(job["status"], "success", "{job:#}");
        }
    }
    t.run(&["history"]).success().stdout_has("cancelled");
}

#[test]
fn sigint_kills_every_step_process_and_records_the_run_as_cancelled() {
    stop_kills_everything_and_records_cancelled(Signal::SIGINT);
}

#[test]
fn sigterm_kills_every_step_process_and_records_the_run_as_cancelled() {
    stop_kills_everything_and_records_cancelled(Signal::SIGTERM);
}

#[test]
fn sigkill_leaves_an_openable_database_and_an_interrupted_run() {
    let t = Test::new().workflow(LONG);
    let (running, procs) = start_long(&t);
    // Nobody is left to clean up after SIGKILL; the test does it.
    let reaper = Reaper(procs.clone());
    running.signal(Signal::SIGKILL);
    running.wait(Duration::from_secs(30)).status(128 + 9);

    // The next trun opens the database and sees the dead run for what it is, even
    // while the orphaned steps still run.
    t.run(&["history"]).success().stdout_has("interrupted");
    let show = t.show_json("1");
    assert_eq!(show["status"], "interrupted", "{show:#}");

    // Another run works; it must not be blocked by the dead run's lock.
    t.args(&["--no-wait", "quick"]).run().success();
    assert!(t.exists("quick"));
    assert_eq!(t.show_json("2")["status"], "success");
    drop(reaper);
}

const HOLD: &str = "
    jobs:
      hold:
        steps:
          - run: touch started; sleep 2; touch held
      quick:
        steps:
          - run: touch quick
    ";

#[test]
fn a_second_trun_with_no_wait_names_the_holder() {
    let t = Test::new().workflow(HOLD);
    let first = t.args(&["hold"]).spawn();
    wait_for(
        "the first run to start its step",
        Duration::from_secs(30),
        || t.exists("started"),
    );
    let second = t.run(&["--no-wait", "quick"]);
    assert_ne!(
        second.code,
        Some(0),
        "--no-wait ran while another trun held the lock"
    );
    second
        .stderr_has(&format!("pid {}", first.pid()))
        .stderr_has("run 1");
    assert!(!t.exists("quick"));
    first.wait(Duration::from_secs(30)).success();
    assert!(t.exists("held"));
}

#[test]
fn a_second_trun_waits_for_the_first_then_runs() {
    let t = Test::new().workflow(HOLD);
    let first = t.args(&["hold"]).spawn();
    wait_for(
        "the first run to start its step",
        Duration::from_secs(30),
        || t.exists("started"),
    );
    let second = t.args(&["quick"]).spawn();
    first.wait(Duration::from_secs(30)).success();
    second.wait(Duration::from_secs(30)).success();
    assert!(t.exists("held") && t.exists("quick"));

    let one = t.show_json("1");
    let two = t.show_json("2");
    assert_eq!(one["status"], "success");
    assert_eq!(two["status"], "success");
    assert_eq!(one["jobs"][0]["key"], "hold");
    assert_eq!(two["jobs"][0]["key"], "quick");
    let one_finished = one["finished_at"].as_i64().unwrap();
    let two_step_started = two["jobs"][0]["steps"][0]["started_at"].as_i64().unwrap();
    assert!(
        two_step_started >= one_finished,
        "the second run's step started at {two_step_started}, before the first run finished at {one_finished}"
    );
}

/// The children of `pid` that are zombies, from `/proc/*/stat`.
fn zombie_children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") && f.get(1).and_then(|s| s.parse::<i32>().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

#[test]
fn processes_a_step_orphans_are_collected_when_they_exit_not_left_as_zombies() {
    // A step leaves a short-lived background process behind (its shell exits
    // first): trun, the subreaper, adopts it; when it exits, trun must collect
    // it while the run goes on, or a long run piles up zombies.
    let marker = common::marker();
    let t = Test::new().workflow(&format!(
        r#"
        jobs:
          a:
            steps:
              - run: (sleep 0.2 &) ; sleep {marker}
        "#
    ));
    let running = t.args(&["--progress", "plain"]).spawn();
    let pid = running.pid();
    wait_for("the step's sleep", Duration::from_secs(30), || {
        !common::processes_running(&["sleep", &marker]).is_empty()
    });
    let _reaper = Reaper(common::processes_running(&["sleep", &marker]));
    // The orphan exits after 0.2 s; trun looks every 250 ms and collects a
    // zombie it has seen twice: by 1.5 s it must be gone.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        zombie_children(pid).is_empty(),
        "zombies left under trun: {:?}",
        zombie_children(pid)
    );
    running.signal(Signal::SIGINT);
    running.wait(Duration::from_secs(15)).status(130);
}
