//! Running workflows end to end: ordering, outputs and environment files, script
//! injection, matrices, `if:`, failure handling, retries, timeouts, job selection,
//! the output styles, and the small commands around a run (list, graph, schema,
//! completions).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{wait_for, Process, Reaper, Test};
use serde_json::Value;

/// The jobs of a `trun show --json` document, by key.
fn jobs_by_key(show: &Value) -> BTreeMap<String, Value> {
    show["jobs"]
        .as_array()
        .expect("jobs array")
        .iter()
        .map(|j| (j["key"].as_str().unwrap().to_string(), j.clone()))
        .collect()
}

fn status_of(show: &Value, job: &str) -> String {
    jobs_by_key(show)
        .get(job)
        .unwrap_or_else(|| panic!("no job {job} in {show:#}"))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A deterministic pseudo-random sequence (an LCG), so the generated DAG is the
/// same on every run without a `rand` dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn dag_of_200_jobs_runs_in_needs_order_with_two_at_a_time() {
    const N: usize = 200;
    let mut rng = Lcg(42);
    let mut needs: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); N];
    for (i, set) in needs.iter_mut().enumerate().skip(1) {
        for _ in 0..rng.below(4) {
            set.insert(rng.below(i as u64) as usize);
        }
    }
    // Jobs are written newest first, so file order is the reverse of a valid order
    // and only `needs` can make the run come out right.
    let mut yaml = String::from("jobs:\n");
    for i in (0..N).rev() {
        yaml.push_str(&format!("  j{i:03}:\n"));
        if !needs[i].is_empty() {
            let list: Vec<String> = needs[i].iter().map(|n| format!("j{n:03}")).collect();
            yaml.push_str(&format!("    needs: [{}]\n", list.join(", ")));
        }
        yaml.push_str("    steps:\n      - run: 'true'\n");
    }
    let t = Test::new();
    t.write("trun.yaml", &yaml);

    let out = t.run(&["-j", "2", "--json"]);
    out.success();
    let events = out.json_lines();

    // Never more than two jobs running at once, in the order the events were emitted.
    let mut running = 0usize;
    let mut most = 0usize;
    for e in &events {
        match e["event"].as_str() {
            Some("job_started") => {
                running += 1;
                most = most.max(running);
            }
            Some("job_finished") => running -= 1,
            _ => {}
        }
    }
    assert!(most <= 2, "{most} jobs ran at once with -j 2");

    let show = t.show_json("");
    assert_eq!(show["status"], "success");
    let jobs = jobs_by_key(&show);
    assert_eq!(jobs.len(), N);
    for (i, need) in needs.iter().enumerate() {
        let job = &jobs[&format!("j{i:03}")];
        assert_eq!(job["status"], "success", "{job:#}");
        let steps = job["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0]["status"], "success");
        assert_eq!(steps[0]["exit_code"], 0);
        let started = job["started_at"].as_i64().unwrap();
        for n in need {
            let dep = &jobs[&format!("j{n:03}")];
            let finished = dep["finished_at"].as_i64().unwrap();
            assert!(
                started >= finished,
                "j{i:03} started at {started}, before its need j{n:03} finished at {finished}"
            );
        }
    }
}

#[test]
fn job_outputs_feed_a_later_job() {
    let t = Test::new().workflow(
        r#"
        jobs:
          produce:
            outputs:
              a: ${{ steps.s.outputs.a }}
              b: ${{ steps.s.outputs.b }}
              c: ${{ steps.s.outputs.c }}
            steps:
              - id: s
                run: |
                  echo "a=one" >> "$TRUN_OUTPUT"
                  echo "b=two=2" >> "$GITHUB_OUTPUT"
                  {
                    echo "c<<EOF"
                    echo "line 1"
                    echo "line 2"
                    echo "EOF"
                  } >> "$GITHUB_OUTPUT"
          consume:
            needs: produce
            steps:
              - run: |
                  echo "${{ needs.produce.outputs.a }}" > a.txt
                  echo "${{ needs.produce.outputs.b }}" > b.txt
                  echo "${{ needs.produce.outputs.c }}" > c.txt
        "#,
    );
    t.run(&[]).success();
    assert_eq!(t.read("a.txt"), "one\n");
    assert_eq!(t.read("b.txt"), "two=2\n");
    assert_eq!(t.read("c.txt"), "line 1\nline 2\n");

    let show = t.show_json("");
    let produce = &jobs_by_key(&show)["produce"];
    assert_eq!(produce["outputs"]["a"], "one");
    assert_eq!(produce["outputs"]["b"], "two=2");
    assert_eq!(produce["outputs"]["c"], "line 1\nline 2");
    let step = &produce["steps"][0];
    assert_eq!(step["outputs"]["a"], "one");
    assert_eq!(step["outputs"]["c"], "line 1\nline 2");
}

#[test]
fn step_outputs_feed_a_later_step_of_the_same_job() {
    let t = Test::new().workflow(
        r#"
        jobs:
          build:
            steps:
              - id: version
                run: echo "v=1.2.3" >> "$GITHUB_OUTPUT"
              - run: echo "${{ steps.version.outputs.v }}" > v.txt
        "#,
    );
    t.run(&[]).success();
    assert_eq!(t.read("v.txt"), "1.2.3\n");
}

#[test]
fn github_env_and_github_path_affect_later_steps() {
    let t = Test::new()
        .file(
            "tools/mytool",
            "
            #!/bin/sh
            echo mytool-ran
            ",
        )
        .workflow(
            r#"
            jobs:
              build:
                steps:
                  - run: |
                      chmod +x tools/mytool
                      echo "GREETING=hello there" >> "$GITHUB_ENV"
                      {
                        echo "MULTI<<END"
                        echo "a"
                        echo "b"
                        echo "END"
                      } >> "$GITHUB_ENV"
                      echo "$PWD/tools" >> "$GITHUB_PATH"
                  - run: |
                      echo "$GREETING" > greeting.txt
                      echo "$MULTI" > multi.txt
                      mytool > tool.txt
              after:
                needs: build
                steps:
                  - run: echo "[$GREETING]" > other-job.txt
            "#,
        );
    t.run(&[]).success();
    assert_eq!(t.read("greeting.txt"), "hello there\n");
    assert_eq!(t.read("multi.txt"), "a\nb\n");
    assert_eq!(t.read("tool.txt"), "mytool-ran\n");
    // GITHUB_ENV is per job, as in GitHub Actions.
    assert_eq!(t.read("other-job.txt"), "[]\n");
}

#[test]
fn expression_values_are_not_pasted_into_scripts() {
    let t = Test::new().workflow(
        r#"
        inputs:
          x: { type: string, default: safe }
        jobs:
          echo:
            steps:
              - run: echo "${{ inputs.x }}"
              - run: echo ${{ inputs.x }} > unquoted.txt
              - run: echo '${{ inputs.x }}' > single.txt
        "#,
    );
    let evil = r#""; touch pwned; echo "$(touch pwned2)"#;
    let out = t
        .args(&["--progress", "plain", "-i", &format!("x={evil}")])
        .run();
    out.success();
    assert!(!t.exists("pwned"), "the input was executed as shell");
    assert!(!t.exists("pwned2"), "the input was executed as shell");
    out.stderr_has(&format!("[echo] {evil}\n"));
    assert_eq!(t.read("single.txt"), format!("{evil}\n"));
    let log = t.args(&["logs", "last", "echo.1"]).run();
    log.success().stdout_is(&format!("{evil}\n"));
}

#[test]
fn matrix_include_and_exclude_produce_the_right_legs() {
    let t = Test::new().workflow(
        r#"
        jobs:
          test:
            strategy:
              matrix:
                os: [linux, mac]
                v: [1, 2]
                exclude:
                  - os: mac
                    v: 1
                include:
                  - os: win
                    v: 3
                  - os: linux
                    v: 2
                    extra: big
            steps:
              - run: echo "${{ matrix.os }}-${{ matrix.v }}" >> legs.txt
        "#,
    );
    t.run(&["-j", "1"]).success();
    let text = t.read("legs.txt");
    let mut legs: Vec<&str> = text.lines().collect();
    legs.sort();
    assert_eq!(legs, ["linux-1", "linux-2", "mac-2", "win-3"]);

    let show = t.show_json("");
    let mut matrices: Vec<String> = show["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            assert_eq!(j["job_id"], "test");
            assert_eq!(j["status"], "success");
            j["matrix"].to_string()
        })
        .collect();
    matrices.sort();
    assert_eq!(
        matrices,
        [
            r#"{"extra":"big","os":"linux","v":2}"#,
            r#"{"os":"linux","v":1}"#,
            r#"{"os":"mac","v":2}"#,
            r#"{"os":"win","v":3}"#,
        ]
    );

    let plan = t.run(&["plan", "--json"]);
    plan.success();
    assert_eq!(plan.json()["jobs"].as_array().unwrap().len(), 4);
}

const AFTER_FAILURE: &str = "
    jobs:
      bad:
        steps:
          - run: exit 3
      plain:
        needs: bad
        steps:
          - run: touch plain
      always:
        needs: bad
        if: always()
        steps:
          - run: touch always
      on-failure:
        needs: bad
        if: ${{ failure() }}
        steps:
          - run: touch on-failure
      on-success:
        needs: bad
        if: success()
        steps:
          - run: touch on-success
      transitive:
        needs: plain
        steps:
          - run: touch transitive
      independent:
        steps:
          - run: touch independent
    ";

#[test]
fn a_failed_job_skips_dependents_unless_their_if_says_otherwise() {
    let t = Test::new().workflow(AFTER_FAILURE);
    t.run(&[]).status(1);
    assert!(t.exists("always"));
    assert!(t.exists("on-failure"));
    assert!(t.exists("independent"));
    assert!(!t.exists("plain"));
    assert!(!t.exists("on-success"));
    assert!(!t.exists("transitive"));

    let show = t.show_json("");
    assert_eq!(show["status"], "failure");
    assert_eq!(status_of(&show, "bad"), "failure");
    assert_eq!(status_of(&show, "plain"), "skipped");
    assert_eq!(status_of(&show, "transitive"), "skipped");
    assert_eq!(status_of(&show, "on-success"), "skipped");
    assert_eq!(status_of(&show, "always"), "success");
    assert_eq!(status_of(&show, "on-failure"), "success");
    assert_eq!(status_of(&show, "independent"), "success");
    let bad = &jobs_by_key(&show)["bad"];
    assert_eq!(bad["steps"][0]["exit_code"], 3);
}

#[test]
fn failure_is_false_and_success_true_when_nothing_failed() {
    let t = Test::new().workflow(
        "
        jobs:
          good:
            steps:
              - run: 'true'
          on-failure:
            needs: good
            if: failure()
            steps:
              - run: touch on-failure
          on-success:
            needs: good
            if: ${{ success() }}
            steps:
              - run: touch on-success
        ",
    );
    t.run(&[]).success();
    assert!(!t.exists("on-failure"));
    assert!(t.exists("on-success"));
}

#[test]
fn fail_fast_stops_running_jobs() {
    let t = Test::new().workflow(
        "
        jobs:
          bad:
            steps:
              - run: until [ -e slow-started ]; do sleep 0.05; done; exit 1
          slow:
            steps:
              - run: touch slow-started; sleep 30; touch slow-done
          later:
            needs: slow
            steps:
              - run: touch later
        ",
    );
    t.run(&["-j", "4", "--fail-fast"]).status(1);
    assert!(
        !t.exists("slow-done"),
        "--fail-fast let a running job finish"
    );
    assert!(!t.exists("later"));
    let show = t.show_json("");
    assert_eq!(status_of(&show, "bad"), "failure");
    assert_eq!(status_of(&show, "slow"), "cancelled");
    assert_ne!(status_of(&show, "later"), "success");
}

#[test]
fn without_fail_fast_running_jobs_finish() {
    let t = Test::new().workflow(
        "
        jobs:
          bad:
            steps:
              - run: until [ -e slow-started ]; do sleep 0.05; done; exit 1
          slow:
            steps:
              - run: touch slow-started; sleep 0.5; touch slow-done
        ",
    );
    t.run(&["-j", "4"]).status(1);
    assert!(t.exists("slow-done"));
}

#[test]
fn continue_on_error_lets_the_job_go_on() {
    let t = Test::new().workflow(
        "
        jobs:
          build:
            steps:
              - id: allowed
                run: exit 7
                continue-on-error: true
              - id: last
                run: touch last
          after:
            needs: build
            steps:
              - run: touch after
        ",
    );
    t.run(&[]).success();
    assert!(t.exists("last"));
    assert!(t.exists("after"));
    let show = t.show_json("");
    assert_eq!(show["status"], "success");
    let build = &jobs_by_key(&show)["build"];
    assert_eq!(build["status"], "success");
    assert_eq!(build["steps"][0]["status"], "failure");
    assert_eq!(build["steps"][0]["exit_code"], 7);
    assert_eq!(build["steps"][0]["continue_on_error"], true);
    assert_eq!(build["steps"][1]["status"], "success");
}

#[test]
fn retry_until_success_records_every_attempt() {
    let t = Test::new().workflow(
        r#"
        jobs:
          build:
            steps:
              - id: flaky
                run: |
                  n=$(cat counter 2>/dev/null || echo 0)
                  n=$((n + 1))
                  echo "$n" > counter
                  echo "attempt $n"
                  echo "from$n=yes" >> "$GITHUB_OUTPUT"
                  [ "$n" -ge 3 ]
                retry: { attempts: 3, backoff: exponential, delay: 10ms }
              - run: echo "[${{ steps.flaky.outputs.from1 }}][${{ steps.flaky.outputs.from3 }}]" > seen
        "#,
    );
    t.run(&[]).success();
    assert_eq!(t.read("counter"), "3\n");
    assert_eq!(
        t.read("seen"),
        "[][yes]\n",
        "a failed attempt's outputs are not carried into the next"
    );
    let show = t.show_json("");
    let step = &jobs_by_key(&show)["build"]["steps"][0];
    assert_eq!(step["status"], "success");
    assert_eq!(step["exit_code"], 0);
    let attempts: Vec<(i64, String, Value)> = step["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["status"].as_str().unwrap().to_string(),
                a["exit_code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (1, "failure".to_string(), Value::from(1)),
            (2, "failure".to_string(), Value::from(1)),
            (3, "success".to_string(), Value::from(0)),
        ],
        "every attempt's status and exit code are recorded"
    );
}

#[test]
fn retry_gives_up_after_the_last_attempt() {
    let t = Test::new().workflow(
        r#"
        jobs:
          build:
            steps:
              - run: echo x >> tries; exit 5
                retry: { attempts: 2, delay: 10ms }
          after:
            needs: build
            steps:
              - run: touch after
        "#,
    );
    t.run(&[]).status(1);
    assert_eq!(t.read("tries"), "x\nx\n");
    assert!(!t.exists("after"));
    let show = t.show_json("");
    let step = &jobs_by_key(&show)["build"]["steps"][0];
    assert_eq!(step["status"], "failure");
    assert_eq!(step["exit_code"], 5);
    assert_eq!(step["attempts"].as_array().unwrap().len(), 2);
}

#[test]
fn outputs_env_and_path_are_read_from_a_crowded_tmp_dir_too() {
    // trun lists the run's tmp dir to find what a step wrote; past a few hundred
    // entries (a step filled it) it opens each file instead. Both ways read all.
    let t = Test::new().workflow(
        r#"
        jobs:
          build:
            steps:
              - id: few
                run: |
                  echo "v=few" >> "$GITHUB_OUTPUT"
                  echo "FEW=yes" >> "$GITHUB_ENV"
              - id: many
                run: |
                  d=$(dirname "$GITHUB_OUTPUT")
                  i=0; while [ $i -lt 300 ]; do : > "$d/filler.$i"; i=$((i + 1)); done
                  echo "v=many" >> "$GITHUB_OUTPUT"
                  echo "MANY=yes" >> "$GITHUB_ENV"
                  mkdir -p bin && printf '#!/bin/sh\necho tool-ran\n' > bin/tool && chmod +x bin/tool
                  echo "$PWD/bin" >> "$GITHUB_PATH"
              - run: |
                  echo "${{ steps.few.outputs.v }} ${{ steps.many.outputs.v }} $FEW $MANY $(tool)" > seen
        "#,
    );
    t.run(&[]).success();
    assert_eq!(t.read("seen"), "few many yes yes tool-ran\n");
}

#[test]
fn a_missing_working_directory_fails_the_step_and_says_which() {
    let t = Test::new().workflow(
        r#"
        jobs:
          build:
            steps:
              - run: touch ran
                working-directory: not-here
        "#,
    );
    t.run(&[]).status(1);
    assert!(!t.exists("ran"));
    let show = t.show_json("");
    let step = &jobs_by_key(&show)["build"]["steps"][0];
    assert_eq!(step["status"], "failure");
    let reason = step["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("working-directory")
            && reason.contains("not-here")
            && reason.contains("does not exist"),
        "{reason}"
    );
}

#[test]
fn step_timeout_kills_the_process_group_and_reports_timed_out() {
    let t = Test::new().workflow(
        r#"
        jobs:
          build:
            steps:
              - run: |
                  sh -c 'sleep 30 & echo $! >> pids; sleep 30' &
                  echo $! >> pids
                  sleep 30 &
                  echo $! >> pids
                  echo $$ >> pids
                  wait
                timeout-minutes: 0.02
          after:
            needs: build
            steps:
              - run: touch after
        "#,
    );
    let out = t
        .args(&["--progress", "plain"])
        .spawn()
        .wait(Duration::from_secs(25));
    out.status(1).stderr_has("timed out");
    assert!(!t.exists("after"));

    let pids: Vec<i32> = t
        .read("pids")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 4, "the step recorded its pids");
    let procs: Vec<Process> = pids.iter().filter_map(|&p| Process::find(p)).collect();
    let reaper = Reaper(procs.clone());
    wait_for(
        "the timed-out step's processes to die",
        Duration::from_secs(10),
        || procs.iter().all(|p| !p.alive()),
    );
    drop(reaper);

    let show = t.show_json("");
    let step = &jobs_by_key(&show)["build"]["steps"][0];
    assert_eq!(step["status"], "failure");
    assert!(
        step["reason"].as_str().unwrap_or("").contains("timed out"),
        "{step:#}"
    );
}

const SELECTION: &str = "
    jobs:
      setup:
        steps:
          - run: touch setup
      build:
        needs: setup
        steps:
          - run: touch build
      test:
        needs: build
        steps:
          - run: touch test
      lint:
        steps:
          - run: touch lint
      default:
        needs: build
        steps:
          - run: touch default
    ";

#[test]
fn no_job_arguments_run_the_default_job_and_its_needs() {
    let t = Test::new().workflow(SELECTION);
    t.run(&[]).success();
    for ran in ["setup", "build", "default"] {
        assert!(t.exists(ran), "{ran} did not run");
    }
    for not in ["test", "lint"] {
        assert!(!t.exists(not), "{not} ran but `default` does not need it");
    }
}

#[test]
fn no_job_arguments_and_no_default_job_run_everything() {
    let t = Test::new().workflow(
        "
        jobs:
          a:
            steps:
              - run: touch a
          b:
            needs: a
            steps:
              - run: touch b
          c:
            steps:
              - run: touch c
        ",
    );
    t.run(&[]).success();
    assert!(t.exists("a") && t.exists("b") && t.exists("c"));
}

#[test]
fn naming_a_job_runs_it_and_its_needs_only() {
    let t = Test::new().workflow(SELECTION);
    t.run(&["build"]).success();
    assert!(t.exists("setup") && t.exists("build"));
    for not in ["test", "lint", "default"] {
        assert!(!t.exists(not), "{not} ran");
    }
    let show = t.show_json("");
    let keys: BTreeSet<String> = jobs_by_key(&show).into_keys().collect();
    assert_eq!(keys, BTreeSet::from(["build".into(), "setup".into()]));
}

#[test]
fn run_subcommand_takes_job_names_too() {
    let t = Test::new().workflow(SELECTION);
    t.run(&["run", "test", "lint"]).success();
    for ran in ["setup", "build", "test", "lint"] {
        assert!(t.exists(ran), "{ran} did not run");
    }
    assert!(!t.exists("default"));
}

#[test]
fn json_prints_one_event_per_line() {
    let t = Test::new().workflow(
        "
        jobs:
          build:
            steps:
              - id: hello
                run: echo hello
        ",
    );
    let out = t.run(&["--json"]);
    out.success();
    let events = out.json_lines();
    assert!(events.iter().all(|e| e["event"].is_string()), "{events:#?}");
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "run_started",
            "job_started",
            "step_started",
            "step_output",
            "step_finished",
            "job_finished",
            "run_finished",
        ]
    );
    assert_eq!(events[3]["line"], "hello");
    assert_eq!(events[4]["status"], "success");
    assert_eq!(events[4]["exit_code"], 0);
    assert_eq!(events[6]["status"], "success");
}

#[test]
fn github_actions_output_has_groups_and_error_annotations() {
    let t = Test::new().workflow(
        "
        jobs:
          build:
            steps:
              - run: echo building
          test:
            needs: build
            steps:
              - run: echo oops; exit 1
        ",
    );
    let out = t.args(&[]).env("GITHUB_ACTIONS", "true").run();
    out.status(1);
    let all = out.all();
    assert!(all.contains("::group::build"), "{all}");
    assert!(all.contains("::endgroup::"), "{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("::error") && l.contains("exit code 1")),
        "no ::error:: line in\n{all}"
    );
    assert!(all.contains("building") && all.contains("oops"));
}

#[test]
fn plain_progress_prefixes_lines_with_the_job() {
    let t = Test::new().workflow(
        "
        jobs:
          build:
            steps:
              - run: echo compiling
          test:
            needs: build
            steps:
              - run: echo testing
        ",
    );
    let out = t.run(&["--progress", "plain"]);
    out.success()
        .stderr_has("[build] compiling\n")
        .stderr_has("[test] testing\n");
    // And a closing summary table.
    out.stderr_has("JOB").stderr_has("STATUS");
}

/// Runs `trun ARGS` under a pseudo-terminal (util-linux `script`), so that colour is
/// on unless `NO_COLOR` says otherwise.
fn run_on_a_tty(t: &Test, args: &str, no_color: bool) -> String {
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &format!("{} {args}", common::TRUN), "/dev/null"])
        .current_dir(t.path())
        .env_remove("GITHUB_ACTIONS")
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null());
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = cmd
        .output()
        .expect("run `script` (util-linux) to get a pseudo-terminal");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn no_color_means_no_escape_codes() {
    let t = Test::new().workflow(
        "
        jobs:
          build:
            steps:
              - run: echo compiling
        ",
    );
    // The control: on a terminal there is colour.
    let coloured = run_on_a_tty(&t, "--progress plain", false);
    assert!(coloured.contains("compiling"), "{coloured}");
    assert!(
        coloured.contains('\x1b'),
        "no colour on a terminal:\n{coloured}"
    );

    for args in ["--progress plain", "history", "show"] {
        let plain = run_on_a_tty(&t, args, true);
        assert!(!plain.is_empty());
        assert!(
            !plain.contains('\x1b'),
            "`trun {args}` printed escape codes with NO_COLOR set:\n{plain:?}"
        );
    }
    // Without a terminal there is no colour either.
    let out = t.run(&["--progress", "plain"]);
    assert!(!out.all().contains('\x1b'));
}

const SMALL: &str = "
    name: shop
    jobs:
      build:
        name: Build the app
        steps:
          - run: echo build
      test:
        name: Run tests
        needs: build
        steps:
          - run: echo test
      lint:
        steps:
          - run: echo lint
      deploy:
        needs: [test, lint]
        steps:
          - run: echo deploy
    ";

#[test]
fn list_shows_jobs_names_and_needs() {
    Test::new()
        .workflow(SMALL)
        .run(&["list"])
        .success()
        .stdout_is(
            "
        build   Build the app
        test    Run tests  (needs: build)
        lint
        deploy  (needs: test, lint)
        ",
        );
}

#[test]
fn graph_prints_dot() {
    Test::new()
        .workflow(SMALL)
        .run(&["graph"])
        .success()
        .stdout_is(
            r#"
            digraph "shop" {
              rankdir=LR;
              node [shape=box];
              "build" [label="build\nBuild the app"];
              "test" [label="test\nRun tests"];
              "lint" [label="lint"];
              "deploy" [label="deploy"];
              "build" -> "test";
              "test" -> "deploy";
              "lint" -> "deploy";
            }
            "#,
        );
}

#[test]
fn graph_prints_mermaid() {
    Test::new()
        .workflow(SMALL)
        .run(&["graph", "--mermaid"])
        .success()
        .stdout_is(
            r#"
            flowchart LR
              j0["build<br/>Build the app"]
              j1["test<br/>Run tests"]
              j2["lint"]
              j3["deploy"]
              j0 --> j1
              j1 --> j3
              j2 --> j3
            "#,
        );
}

#[test]
fn plan_lists_jobs_in_order_and_runs_nothing() {
    let t = Test::new().workflow(
        "
        name: shop
        jobs:
          test:
            needs: build
            steps:
              - run: touch ran
          build:
            steps:
              - id: compile
                run: touch ran
        ",
    );
    let out = t.run(&["plan"]);
    out.success();
    let build = out.stdout.find("1. build").expect("build is first");
    let test = out.stdout.find("2. test").expect("test is second");
    assert!(build < test);
    out.stdout_has("compile");
    assert!(!t.exists("ran"));
    t.run(&["--dry-run"]).success();
    assert!(!t.exists("ran"), "--dry-run ran a step");
}

#[test]
fn schema_is_valid_json() {
    let out = Test::new().run(&["schema"]);
    out.success();
    let schema = out.json();
    assert!(schema["$schema"].is_string(), "{schema:#}");
    assert!(schema["properties"]["jobs"].is_object(), "{schema:#}");
}

#[test]
fn bash_completions() {
    let out = Test::new().run(&["completions", "bash"]);
    out.success().stdout_has("trun");
    assert!(out.stdout.len() > 100);
}

#[test]
fn workflow_is_found_in_a_parent_directory() {
    let t = Test::new()
        .workflow(
            "
            jobs:
              build:
                steps:
                  - run: pwd > where.txt
            ",
        )
        .file("src/deep/.keep", "");
    t.args(&[]).current_dir("src/deep").run().success();
    // The workspace root is the workflow file's directory.
    assert!(t.exists("where.txt"), "steps run in the workspace root");
}

#[test]
fn trun_yml_and_dot_trun_yaml_are_found() {
    for name in ["trun.yml", ".trun.yaml"] {
        let t = Test::new().file(
            name,
            "
            jobs:
              build:
                steps:
                  - run: touch ran
            ",
        );
        t.run(&[]).success();
        assert!(t.exists("ran"), "{name} was not used");
    }
}

#[test]
fn env_precedence_workflow_job_step() {
    let t = Test::new().workflow(
        r#"
        env: { A: workflow, B: workflow, C: workflow }
        jobs:
          build:
            env: { B: job, C: job }
            steps:
              - env: { C: step }
                run: echo "$A $B $C" > env.txt
        "#,
    );
    t.run(&[]).success();
    assert_eq!(t.read("env.txt"), "workflow job step\n");
}

#[test]
fn expression_functions_and_contexts() {
    let t = Test::new().workflow(
        r#"
        env: { GREETING: hi }
        jobs:
          build:
            steps:
              - run: |
                  echo "${{ format('{0}-{1}', 'a', 'b') }}" > out.txt
                  echo "${{ contains('abc', 'b') }} ${{ startsWith('abc', 'a') }} ${{ endsWith('abc', 'x') }}" >> out.txt
                  echo "${{ join(fromJSON('[1, 2, 3]'), '+') }}" >> out.txt
                  echo "${{ env.GREETING }} ${{ trun.run_id }} ${{ job.status }}" >> out.txt
                  echo "${{ trun.workspace }}" > workspace.txt
                  echo "${{ hashFiles('trun.yaml') }}" > hash.txt
        "#,
    );
    t.run(&[]).success();
    assert_eq!(
        t.read("out.txt"),
        "a-b\ntrue true false\n1+2+3\nhi 1 success\n"
    );
    let workspace = std::fs::canonicalize(t.read("workspace.txt").trim()).unwrap();
    assert_eq!(workspace, std::fs::canonicalize(t.path()).unwrap());
    let hash = t.read("hash.txt");
    let hash = hash.trim();
    assert!(
        hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "hashFiles gave {hash:?}"
    );
}

#[test]
fn the_env_context_holds_what_the_workflow_set_not_truns_own_environment() {
    // As on GitHub: `toJSON(env)` shows the workflow's, job's and step's env, and
    // nothing of the environment trun itself was started with.
    let t = Test::new().workflow(
        r#"
        env: { A: one }
        jobs:
          j:
            env: { B: two }
            steps:
              - env: { C: three }
                run: echo "${{ toJSON(env) }}"
        "#,
    );
    let out = t
        .args(&["--progress", "plain"])
        .env("TRUN_SECRET_OF_THE_HOST", "leak")
        .run();
    out.success();
    for want in ["\"A\": \"one\"", "\"B\": \"two\"", "\"C\": \"three\""] {
        assert!(out.stderr.contains(want), "{want}: {}", out.stderr);
    }
    for unwanted in ["TRUN_SECRET_OF_THE_HOST", "\"PATH\""] {
        assert!(!out.stderr.contains(unwanted), "{unwanted}: {}", out.stderr);
    }
}

#[test]
fn expressions_inside_matrix_values_see_the_inputs() {
    let t = Test::new().workflow(
        r#"
        inputs:
          ver: { default: "1" }
        jobs:
          t:
            strategy:
              matrix:
                v: ["${{ inputs.ver }}", "two"]
                include:
                  - { v: two, extra: "${{ format('x-{0}', inputs.ver) }}" }
            steps:
              - run: echo "leg ${{ matrix.v }} ${{ matrix.extra }}"
        "#,
    );
    let out = t.args(&["--progress", "plain", "-i", "ver=9"]).run();
    out.success();
    assert!(
        out.stderr.contains("leg 9 \n") || out.stderr.contains("leg 9 "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("leg two x-9"), "{}", out.stderr);
    // A name that does not exist is an error at plan time, as anywhere else.
    t.write(
        "trun.yaml",
        "jobs:\n  t:\n    strategy:\n      matrix:\n        v: [\"${{ inptus.ver }}\"]\n    steps:\n      - run: echo ${{ matrix.v }}\n",
    );
    t.run(&["validate"])
        .status(2)
        .stderr_has("unknown name `inptus` (did you mean `inputs`?)");
}

/// A step's program is looked up on the PATH the step gets (its job's
/// `env`), not trun's: a job whose PATH lacks the directory does not find it.
#[test]
fn a_shell_is_looked_up_on_the_steps_own_path() {
    let t = Test::new();
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let shell = bin.join("mysh");
    std::fs::write(&shell, "#!/bin/sh\necho \"mysh ran $1\" > mysh.txt\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shell, std::fs::Permissions::from_mode(0o755)).unwrap();
    let t = t.workflow(&format!(
        "
        jobs:
          found:
            env: {{ PATH: '{}:/usr/bin:/bin' }}
            steps:
              - {{ shell: 'mysh {{0}}', run: 'anything' }}
          missing:
            needs: found
            if: always()
            env: {{ PATH: '/usr/bin:/bin' }}
            steps:
              - {{ shell: 'mysh {{0}}', run: 'anything' }}
        ",
        bin.display()
    ));
    let out = t.run(&["-j", "1", "--progress", "plain"]);
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(t.read("mysh.txt").starts_with("mysh ran "), "{}", out.all());
    assert!(
        out.stderr.contains("`mysh` not found on PATH"),
        "{}",
        out.all()
    );
    let show = t.show_json("last");
    let jobs = jobs_by_key(&show);
    assert_eq!(jobs["found"]["status"], "success", "{show}");
    assert_eq!(jobs["missing"]["status"], "failure", "{show}");
}
