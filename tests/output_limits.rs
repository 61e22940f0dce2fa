//! A step's output: stdout and stderr reach the events tagged apart, and a
//! step that prints a gigabyte — in lines or without a single newline — keeps
//! trun small (peak RSS read from /proc while it runs) while its log file
//! holds the output up to the documented cap (64 MiB) and says it was cut.

mod common;

use common::{proc_status_kb, Test};
use std::time::Duration;

#[test]
fn stderr_lines_are_tagged_stderr_in_json_events() {
    let t = Test::new().workflow(
        r#"
        jobs:
          talk:
            steps:
              - run: |
                  echo to-stdout
                  sleep 0.3
                  echo to-stderr >&2
                  sleep 0.3
                  echo again-stdout
        "#,
    );
    let out = t.run(&["--json"]);
    out.success();
    let lines: Vec<(String, String)> = out
        .json_lines()
        .into_iter()
        .filter(|e| e["event"] == "step_output")
        .map(|e| {
            (
                e["stream"].as_str().unwrap().to_string(),
                e["line"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = |s: &str, l: &str| (s.to_string(), l.to_string());
    assert_eq!(
        lines,
        vec![
            want("stdout", "to-stdout"),
            want("stderr", "to-stderr"),
            want("stdout", "again-stdout"),
        ]
    );
    // The log keeps both, in the order they arrived (two pipes written within
    // microseconds of each other have no order to keep, hence the sleeps).
    assert_eq!(
        t.read(".trun/logs/1/talk/01-step-1.log"),
        "to-stdout\nto-stderr\nagain-stdout\n"
    );
}

const GIB: u64 = 1 << 30;
const CAP: u64 = 64 << 20;

/// Runs `script` as the only step, sampling trun's peak RSS until it exits;
/// returns the peak in MB and the step's log.
fn run_flood(script: &str) -> (u64, Vec<u8>) {
    let t = Test::new().workflow(&format!(
        r#"
        jobs:
          flood:
            steps:
              - run: {script}
        "#
    ));
    let running = t.args(&["--progress", "plain"]).spawn();
    let pid = running.pid();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(hwm) = proc_status_kb(pid, "VmHWM") {
            peak = peak.max(hwm);
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    });
    let out = running.wait(Duration::from_secs(300));
    let peak_kb = sampler.join().unwrap();
    out.success();
    assert!(peak_kb > 0, "no RSS sample of trun was taken");
    eprintln!("trun's peak RSS (VmHWM): {} MB", peak_kb / 1024);
    let log = std::fs::read(t.join(".trun/logs/1/flood/01-step-1.log")).unwrap();
    (peak_kb / 1024, log)
}

fn assert_cut(log: &[u8]) {
    let dropped = GIB - CAP;
    let notice = format!("\n[trun: output cut after 64 MiB; {dropped} bytes dropped]\n");
    assert_eq!(log.len() as u64, CAP + notice.len() as u64);
    let tail = String::from_utf8_lossy(&log[CAP as usize..]);
    assert_eq!(tail, notice);
}

#[test]
fn a_gigabyte_of_lines_keeps_trun_small_and_the_log_capped() {
    let line = "a line of step output, about as long as the warning line of a compiler is, say ok";
    let (peak_mb, log) = run_flood(&format!("yes '{line}' | head -c {GIB} || true"));
    assert!(peak_mb < 200, "trun peaked at {peak_mb} MB");
    assert!(log.starts_with(format!("{line}\n{line}\n").as_bytes()));
    assert_cut(&log);
}

#[test]
fn a_gigabyte_without_a_newline_keeps_trun_small_and_the_log_capped() {
    let (peak_mb, log) = run_flood(&format!("head -c {GIB} /dev/zero | tr '\\0' x"));
    assert!(peak_mb < 200, "trun peaked at {peak_mb} MB");
    assert!(log[..CAP as usize].iter().all(|&b| b == b'x'));
    assert_cut(&log);
}

#[test]
fn a_huge_step_output_file_fails_the_step_instead_of_filling_the_state() {
    let t = Test::new().workflow(
        r#"
        jobs:
          big:
            steps:
              - id: out
                run: |
                  { printf 'v='; head -c 300000000 /dev/zero | tr '\0' x; echo; } >> "$TRUN_OUTPUT"
        "#,
    );
    t.args(&["--progress", "plain"])
        .run()
        .status(1)
        .stderr_has("bad step output")
        .stderr_has("more than the 4194304 a step may write there");
    let db = std::fs::metadata(t.join(".trun/state.db")).unwrap().len();
    let wal = std::fs::metadata(t.join(".trun/state.db-wal")).map_or(0, |m| m.len());
    assert!(db + wal < 8 << 20, "state.db grew to {} bytes", db + wal);
}
