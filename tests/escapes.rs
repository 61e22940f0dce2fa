//! Nothing a step starts outlives its step, and no wait is unbounded: a daemon
//! that keeps the step's output pipe open (`setsid -f`), a timeout, the first
//! Ctrl-C, a FIFO planted at a talk-back file, a trun SIGKILLed mid-step (the
//! next trun stops what it left), a `generates` path the step did not produce,
//! and `-j` as one limit for every job and matrix leg. Each test checks /proc
//! and the disk, not only what trun says.

mod common;
mod support;

use common::{marker, processes_running, wait_for, Process, Reaper, Test};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// Fails the test if a `sleep MARKER` is still running (after a moment for
/// the kill to land), and kills it so no test leaves one behind.
fn assert_no_sleep(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = processes_running(&["sleep", marker]);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            drop(Reaper(left.clone()));
            panic!("`sleep {marker}` outlived its step: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_daemon_holding_stdout_neither_hangs_the_run_nor_outlives_its_step() {
    let m = marker();
    let t = Test::new().workflow(&format!(
        r#"
        jobs:
          daemon:
            steps:
              - run: |
                  setsid -f sleep {m}
                  (setsid sleep {m} &)
                  echo started
              - run: echo next step
        "#
    ));
    let started = Instant::now();
    let out = t.args(&["--progress", "plain"]).run();
    out.success().stderr_has("started").stderr_has("next step");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the run took {:?}",
        started.elapsed()
    );
    assert_no_sleep(&m);
}

#[test]
fn a_daemon_that_left_the_group_is_gone_before_the_next_step_starts() {
    // It holds no pipe: the step ends as soon as the shell exits, and the
    // daemon, re-parented to trun, must be found (by its token) and killed
    // then, not at the end of the run.
    let m = marker();
    let t = Test::new().workflow(&format!(
        r#"
        jobs:
          daemon:
            steps:
              - run: |
                  setsid -f sh -c 'echo $$ > daemon.pid; exec sleep {m}' > /dev/null 2>&1 < /dev/null
                  while [ ! -s daemon.pid ]; do sleep 0.01; done
              - run: |
                  pid=$(cat daemon.pid)
                  if kill -0 "$pid" 2>/dev/null; then echo "daemon $pid outlived its step"; exit 1; fi
                  echo daemon gone
        "#
    ));
    t.args(&["--progress", "plain"])
        .run()
        .success()
        .stderr_has("daemon gone");
    assert_no_sleep(&m);
}

#[test]
fn a_timeout_fires_and_kills_a_daemon_that_left_the_group() {
    let m = marker();
    let t = Test::new().workflow(&format!(
        r#"
        jobs:
          slow:
            steps:
              - timeout-minutes: 0.02
                run: |
                  setsid -f sleep {m}
                  sh -c 'trap "" TERM; exec sleep {m}'
        "#
    ));
    let started = Instant::now();
    t.args(&["--progress", "plain"])
        .run()
        .status(1)
        .stderr_has("timed out");
    // 1.2 s of timeout, 2 s of grace for the SIGTERM-ignoring sleep.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the run took {:?}",
        started.elapsed()
    );
    assert_no_sleep(&m);
}

#[test]
fn the_first_sigint_stops_a_step_whose_daemon_holds_the_pipe() {
    let m = marker();
    let t = Test::new().workflow(&format!(
        r#"
        jobs:
          hold:
            steps:
              - run: |
                  setsid -f sleep {m}
                  touch ready
                  sleep {m}
        "#
    ));
    let running = t.args(&["--progress", "plain"]).spawn();
    wait_for("the step to start", Duration::from_secs(30), || {
        t.exists("ready") && processes_running(&["sleep", &m]).len() == 2
    });
    let reaper = Reaper(processes_running(&["sleep", &m]));
    let sent = Instant::now();
    running.signal(Signal::SIGINT);
    let out = running.wait(Duration::from_secs(10));
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "trun took {:?} to stop after one SIGINT",
        sent.elapsed()
    );
    out.status(130);
    assert_no_sleep(&m);
    drop(reaper);
    assert_eq!(t.show_json("")["status"], "cancelled");
}

#[test]
fn after_sigkill_the_next_run_stops_the_orphans_before_running_the_step_again() {
    let m = marker();
    // Run 1 leaves three processes (one in the group, one that left it with
    // setsid, the shell); run 2 records which of them were still alive (not
    // zombies) when the same step started again.
    let t = Test::new().workflow(&format!(
        r#"
        jobs:
          hold:
            steps:
              - run: |
                  for p in $(cat pids 2>/dev/null); do
                    if [ -r /proc/$p/stat ] && [ "$(cut -d' ' -f3 /proc/$p/stat)" != Z ]; then
                      echo "$p" >> concurrent
                    fi
                  done
                  if [ "$TRUN_RUN_ID" = 1 ]; then
                    sleep {m} &
                    echo $! >> pids
                    setsid -f sh -c 'echo $$ >> pids; exec sleep {m}'
                    echo $$ >> pids
                    while [ "$(wc -l < pids)" -lt 3 ]; do sleep 0.05; done
                    touch ready
                    wait
                  fi
                  touch second
        "#
    ));
    let first = t.args(&["--progress", "plain"]).spawn();
    wait_for("run 1's step to start", Duration::from_secs(30), || {
        t.exists("ready")
    });
    let pids: Vec<i32> = t
        .read("pids")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let procs: Vec<Process> = pids.iter().filter_map(|&p| Process::find(p)).collect();
    assert_eq!(
        procs.len(),
        3,
        "run 1 did not start its processes: {pids:?}"
    );
    let reaper = Reaper(procs.clone());
    first.signal(Signal::SIGKILL);
    first.wait(Duration::from_secs(10)).status(128 + 9);
    assert!(
        procs.iter().all(Process::alive),
        "the orphans died with trun: nothing to test"
    );

    let out = t.args(&["--progress", "plain"]).run();
    out.success()
        .stderr_has("left running by an earlier trun")
        .stderr_has("step `step-1` of job `hold`");
    assert!(t.exists("second"));
    assert!(
        !t.exists("concurrent"),
        "run 2 ran the step while run 1's processes were alive: {}",
        t.read("concurrent")
    );
    assert!(procs.iter().all(|p| !p.alive()));
    assert_no_sleep(&m);
    drop(reaper);
    // The record of the stopped step is gone; nothing is reaped twice.
    let left: Vec<_> = std::fs::read_dir(t.join(".trun/procs"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_fifo_at_a_talk_back_file_neither_hangs_nor_is_read() {
    let t = Test::new().workflow(
        r#"
        jobs:
          env:
            steps:
              - run: rm -f "$GITHUB_ENV" && mkfifo "$GITHUB_ENV"
              - run: rm -f "$GITHUB_PATH" && ln -s /etc/passwd "$GITHUB_PATH"
              - run: echo "after the fifo"
          output:
            steps:
              - run: rm -f "$GITHUB_OUTPUT" && mkfifo "$GITHUB_OUTPUT"
        "#,
    );
    let started = Instant::now();
    let out = t.args(&["--progress", "plain"]).run();
    assert!(started.elapsed() < Duration::from_secs(30));
    out.status(1)
        .stderr_has("after the fifo")
        .stderr_has("$GITHUB_ENV ignored")
        .stderr_has("is not a regular file")
        .stderr_has("$GITHUB_PATH ignored")
        .stderr_has("is a symlink");
    let show = t.show_json("");
    let status = |job: &str| {
        show["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["key"] == job)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("env"), "success");
    assert_eq!(status("output"), "failure");
}

#[test]
fn a_step_that_does_not_produce_its_generates_fails_naming_the_path() {
    let t = Test::new().workflow(
        r#"
        jobs:
          build:
            steps:
              - id: make
                run: mkdir -p out && touch out/a
                generates: [out/a, out/b, "out/*.o"]
              - run: touch after
        "#,
    );
    t.args(&["--progress", "plain"])
        .run()
        .status(1)
        .stderr_has("did not produce a path declared in `generates`: out/b");
    assert!(!t.exists("after"), "the job went on after the failed step");
    let show = t.show_json("");
    let step = &show["jobs"][0]["steps"][0];
    assert_eq!(step["status"], "failure", "{step:#}");
    t.write("out/b", "");
    // With the file there, the same step succeeds.
    t.args(&["--progress", "plain"]).run().success();
}

#[test]
fn j2_never_runs_more_than_two_steps_at_once_dynamic_legs_included() {
    // Every step appends `+ <ns>` when it starts and `- <ns>` when it ends.
    let step = r#"echo "+ $(date +%s%N)" >> times && sleep 0.6 && echo "- $(date +%s%N)" >> times"#;
    let t = Test::new().workflow(&format!(
        r#"
        jobs:
          setup:
            outputs:
              legs: ${{{{ steps.list.outputs.legs }}}}
            steps:
              - id: list
                run: |
                  echo 'legs=[1, 2, 3, 4]' >> "$TRUN_OUTPUT"
                  {step}
          legs:
            needs: setup
            strategy:
              matrix:
                n: ${{{{ fromJSON(needs.setup.outputs.legs) }}}}
            steps:
              - run: '{step}'
          a:
            steps:
              - run: '{step}'
          b:
            steps:
              - run: '{step}'
          c:
            steps:
              - run: '{step}'
        "#
    ));
    t.args(&["-j", "2", "--progress", "plain"]).run().success();
    let mut events: Vec<(u128, i32)> = t
        .read("times")
        .lines()
        .map(|l| {
            let (sign, ns) = l.split_once(' ').unwrap();
            (ns.parse().unwrap(), if sign == "+" { 1 } else { -1 })
        })
        .collect();
    assert_eq!(events.len(), 2 * 8, "8 steps ran: {events:?}");
    // At equal times an end counts before a start.
    events.sort();
    let (mut now, mut peak) = (0, 0);
    for (_, d) in &events {
        now += d;
        peak = peak.max(now);
    }
    assert_eq!(peak, 2, "at most -j 2 steps at once, and two did overlap");
}

#[test]
fn docker_run_with_a_fixed_name_leaves_another_workspaces_container_alone() {
    let image = support::docker_env::ensure_busybox_image();
    let name = format!("trun-escapes-{}", marker());
    let workflow = format!(
        r#"
        jobs:
          start:
            steps:
              - uses: docker/run
                with: {{ image: "{image}", name: {name}, command: sleep 300, keep: true }}
        "#
    );
    let first = Test::new().workflow(&workflow);
    let second = Test::new().workflow(&workflow);
    let docker = |args: &[&str]| {
        std::process::Command::new("docker")
            .args(args)
            .output()
            .expect("docker CLI")
    };
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &self.0])
                .output();
        }
    }
    let _cleanup = Remove(name.clone());
    first.run(&["--progress", "plain"]).success();
    let id = |out: std::process::Output| String::from_utf8_lossy(&out.stdout).trim().to_string();
    let original = id(docker(&["inspect", "--format", "{{.Id}}", &name]));
    assert!(!original.is_empty());

    second
        .run(&["--progress", "plain"])
        .status(1)
        .stderr_has(&format!(
            "a container named {name} already exists and belongs to another trun workspace"
        ));
    let after = docker(&["inspect", "--format", "{{.Id}} {{.State.Running}}", &name]);
    assert_eq!(
        id(after),
        format!("{original} true"),
        "the other workspace's container was replaced or stopped"
    );
    // The workspace that made it may replace it.
    first.run(&["--progress", "plain"]).success();
    assert_ne!(
        id(docker(&["inspect", "--format", "{{.Id}}", &name])),
        original
    );
}

#[test]
fn a_container_step_runs_through_the_same_executor_seam() {
    let image = support::docker_env::ensure_busybox_image();
    let t = Test::new().workflow(&format!(
        r#"
        jobs:
          boxed:
            container: {image}
            steps:
              - run: |
                  echo to-stdout
                  sleep 0.3
                  echo to-stderr >&2
              - timeout-minutes: 0.02
                run: sleep 1000
        "#
    ));
    let started = Instant::now();
    let out = t.run(&["--json"]);
    out.status(1);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let events = out.json_lines();
    let tagged: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["event"] == "step_output")
        .map(|e| (e["stream"].as_str().unwrap(), e["line"].as_str().unwrap()))
        .collect();
    assert_eq!(tagged, [("stdout", "to-stdout"), ("stderr", "to-stderr")]);
    let finished: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .collect();
    assert_eq!(finished[1]["status"], "failure");
    assert!(
        finished[1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("timed out"),
        "{:#}",
        finished[1]
    );
}

#[test]
fn a_fifo_planted_at_the_next_steps_script_file_does_not_hang() {
    let t = Test::new().workflow(
        r#"
        jobs:
          plant:
            steps:
              - run: mkfifo "${GITHUB_ENV%.0.env}.1.script"
              - shell: sh {0}
                run: echo "the script ran"
        "#,
    );
    let started = Instant::now();
    t.args(&["--progress", "plain"])
        .run()
        .success()
        .stderr_has("the script ran");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_second_sigint_exits_at_once_and_leaves_no_step_behind() {
    let m = marker();
    let t = Test::new().workflow(&format!(
        r#"
        jobs:
          stubborn:
            steps:
              - run: |
                  trap '' TERM
                  setsid -f sleep {m}
                  touch ready
                  sleep {m}
        "#
    ));
    let running = t.args(&["--progress", "plain"]).spawn();
    wait_for("the step to start", Duration::from_secs(30), || {
        t.exists("ready") && processes_running(&["sleep", &m]).len() == 2
    });
    let reaper = Reaper(processes_running(&["sleep", &m]));
    running.signal(Signal::SIGINT);
    wait_for("trun to say it is stopping", Duration::from_secs(5), || {
        running.stderr_so_far().contains("interrupted")
    });
    let sent = Instant::now();
    running.signal(Signal::SIGINT);
    running.wait(Duration::from_secs(10)).status(130);
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    assert_no_sleep(&m);
    drop(reaper);
}

/// The container executor called as the grading scorer will: stdin fed,
/// stdout captured and kept apart from stderr, and a timeout that kills the
/// command's whole tree inside the container.
#[test]
fn the_job_container_executor_feeds_stdin_captures_and_kills_on_timeout() {
    use trun::exec::executor::{Command, Executor, Exit, JobContainer};
    use trun::exec::output::OutputSink;
    use trun::exec::Events;

    let image = support::docker_env::ensure_busybox_image();
    let m = marker();
    let out = std::process::Command::new("docker")
        .args(["run", "-d", "--rm", &image, "sleep", "300"])
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &self.0])
                .output();
        }
    }
    let _cleanup = Remove(id.clone());

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let docker = std::sync::Arc::new(trun::docker::Docker::connect().await.unwrap());
        let exec = JobContainer::new(docker, id.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let mut sink = OutputSink::new(None, Events::new(tx), "j".into(), 0);
        sink.capture_stdout(3);
        let (_cancel_tx, cancel) = tokio::sync::watch::channel(false);
        let cmd = Command {
            argv: vec!["sh".into(), "-c".into(), "cat; echo oops >&2".into()],
            cwd: "/".into(),
            stdin: Some(b"hello\n".to_vec()),
            ..Command::default()
        };
        assert_eq!(
            exec.run(&cmd, &mut sink, cancel.clone()).await,
            Exit::Code(0)
        );
        assert_eq!(sink.take_stdout(), (b"hel".to_vec(), true));
        let mut streams: Vec<String> = rx
            .try_iter()
            .filter_map(|e| match e {
                trun::event::Event::StepOutput { stream, line, .. } => {
                    Some(format!("{stream:?} {line}"))
                }
                _ => None,
            })
            .collect();
        streams.sort();
        assert_eq!(streams, ["Stderr oops", "Stdout hello"]);

        let cmd = Command {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("sleep {m} & setsid sleep {m} & sleep {m}"),
            ],
            cwd: "/".into(),
            timeout: Some(Duration::from_millis(500)),
            ..Command::default()
        };
        let started = Instant::now();
        let exit = exec.run(&cmd, &mut sink, cancel).await;
        assert_eq!(exit, Exit::TimedOut(Duration::from_millis(500)));
        assert!(started.elapsed() < Duration::from_secs(15));
    });
    // Inside the container, nothing of the timed-out command is left.
    let top = std::process::Command::new("docker")
        .args(["top", &id])
        .output()
        .expect("docker top");
    let top = String::from_utf8_lossy(&top.stdout);
    assert!(!top.contains(&m), "left in the container:\n{top}");
}
