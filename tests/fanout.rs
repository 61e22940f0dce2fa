//! Fan-out over produced files through the real binary: a step writes files
//! into `$TRUN_EMIT/<job>/`, each becomes an instance of the job `fed-by` it.
//! What ran is proven by the steps themselves: every step of the
//! `examples/pipelines/fan-out` example appends `$TRUN_JOB` to `ran.log`.

mod common;

use common::Test;
use serde_json::Value;

/// Runs `trun` (extra args appended) and returns the job keys that ran a
/// step, sorted, emptying `ran.log`.
fn ran(t: &Test, args: &[&str]) -> Vec<String> {
    let mut all = vec!["--progress", "plain"];
    all.extend_from_slice(args);
    t.run(&all).success();
    take_ran(t)
}

fn take_ran(t: &Test) -> Vec<String> {
    let text = if t.exists("ran.log") {
        t.read("ran.log")
    } else {
        String::new()
    };
    let _ = std::fs::remove_file(t.join("ran.log"));
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    v
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// (job key, status) of every job of the latest run.
fn jobs(t: &Test) -> Vec<(String, String)> {
    let show = t.show_json("");
    show["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| {
            (
                j["key"].as_str().unwrap_or_default().to_string(),
                j["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

const FIRST: &[&str] = &[
    "start",
    "process[hello.txt]",
    "process[notes.txt]",
    "transform[fruits.list]",
    "report[upper-hello.txt]",
    "report[upper-notes.txt]",
    "report[sorted-fruits.list]",
    "summary",
];

#[test]
fn first_run_processes_every_file_and_the_second_nothing() {
    let t = Test::example("fan-out");
    assert_eq!(ran(&t, &[]), sorted(FIRST));
    assert_eq!(t.read("reports/upper-notes.txt"), "FAN OUT\nOVER FILES\n");
    assert_eq!(t.read("reports/sorted-fruits.list"), "apple\nfig\npear\n");
    // `trun show` lists every instance with its input's name and status.
    let shown = jobs(&t);
    for key in &FIRST[1..7] {
        assert!(
            shown.iter().any(|(k, s)| k == key && s == "success"),
            "{key} in {shown:?}"
        );
    }

    let reason_of = |show: &Value, key: &str| {
        show["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["key"] == key)
            .map(|j| j["reason"].clone())
    };
    assert_eq!(
        reason_of(&t.show_json(""), "process"),
        Some(Value::from("2 instances: 2 ran, 0 up to date"))
    );

    assert_eq!(ran(&t, &[]), Vec::<String>::new());
    let show = t.show_json("");
    assert_eq!(
        reason_of(&show, "report"),
        Some(Value::from("3 instances: 0 ran, 3 up to date"))
    );
    let instance = show["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == "report[upper-hello.txt]")
        .expect("instance shown");
    assert_eq!(instance["status"], "success");
    assert_eq!(instance["steps"][0]["status"], "skipped");
    assert_eq!(instance["steps"][0]["reason"], "up to date");
}

#[test]
fn a_new_input_file_runs_only_its_chain() {
    let t = Test::example("fan-out");
    ran(&t, &[]);
    t.write("inputs/more.txt", "one more\n");
    assert_eq!(
        ran(&t, &[]),
        sorted(&[
            "start",
            "process[more.txt]",
            "report[upper-more.txt]",
            "summary"
        ])
    );
    assert_eq!(t.read("reports/upper-more.txt"), "ONE MORE\n");
    // A changed file is a changed input: its chain only.
    t.write("inputs/fruits.list", "plum\napple\n");
    assert_eq!(
        ran(&t, &[]),
        sorted(&[
            "start",
            "transform[fruits.list]",
            "report[sorted-fruits.list]",
            "summary"
        ])
    );
    assert_eq!(t.read("reports/sorted-fruits.list"), "apple\nplum\n");
}

#[test]
fn an_edited_process_script_reprocesses_every_process_instance_and_what_follows() {
    let t = Test::example("fan-out");
    ran(&t, &[]);
    t.write(
        "scripts/upper.sh",
        "#!/bin/sh\n# Upper-cases standard input, quoted.\ntr a-z A-Z | sed 's/^/> /'\n",
    );
    let plan = t.run(&["plan"]);
    plan.success()
        .stdout_has("process[hello.txt]  sources changed")
        .stdout_has("transform[fruits.list]  up to date if start emits it unchanged");
    assert_eq!(
        ran(&t, &[]),
        sorted(&[
            "process[hello.txt]",
            "process[notes.txt]",
            "report[upper-hello.txt]",
            "report[upper-notes.txt]",
            "summary"
        ])
    );
    assert_eq!(t.read("reports/upper-hello.txt"), "> HELLO\n> WORLD\n");
    // An edit that changes nothing they write: the instances re-run, what
    // they feed is up to date (early cutoff, by content).
    t.write(
        "scripts/upper.sh",
        "#!/bin/sh\n# Upper-cases standard input, quoted (a comment).\ntr a-z A-Z | sed 's/^/> /'\n",
    );
    assert_eq!(
        ran(&t, &[]),
        sorted(&["process[hello.txt]", "process[notes.txt]"])
    );
}

#[test]
fn an_edited_job_definition_is_tainted_and_reprocesses_its_inputs() {
    let t = Test::example("fan-out");
    ran(&t, &[]);
    let yaml = t.read("trun.yaml").replace(
        "sort < \"$TRUN_INPUT_FILE\"",
        "sort -r < \"$TRUN_INPUT_FILE\"",
    );
    t.write("trun.yaml", &yaml);
    t.run(&["plan"])
        .success()
        .stdout_has("run   transform[fruits.list]  definition changed (tainted)")
        .stdout_has("skip  process[hello.txt]  up to date if start emits it unchanged");
    assert_eq!(
        ran(&t, &[]),
        sorted(&[
            "transform[fruits.list]",
            "report[sorted-fruits.list]",
            "summary"
        ])
    );
    assert_eq!(t.read("reports/sorted-fruits.list"), "pear\nfig\napple\n");
}

#[test]
fn plan_says_who_decides_the_instances_and_lists_the_last_ones() {
    let t = Test::example("fan-out");
    t.run(&["plan"])
        .success()
        .stdout_has("instances of process are decided when start emits; none known yet")
        .stdout_has("instances of report are decided when process and transform emit");
    ran(&t, &[]);
    t.run(&["plan"])
        .success()
        .stdout_has("; 6 instances known from the last run (0 to run if emitted again)");
    let out = t.run(&["plan", "--json"]);
    out.success();
    let plan = out.json();
    let process = plan["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == "process")
        .expect("process planned");
    let keys: Vec<&str> = process["fan_out"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["process[hello.txt]", "process[notes.txt]"]);
    assert_eq!(process["fan_out"]["fed_by"], serde_json::json!(["start"]));
}

#[test]
fn json_events_carry_the_instance_key() {
    let t = Test::example("fan-out");
    let out = t.run(&["--json"]);
    out.success();
    let events: Vec<Value> = out.json_lines();
    let started: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "job_started" || e["type"] == "job_started")
        .filter_map(|e| e["job"].as_str())
        .collect();
    assert!(
        started.contains(&"process[hello.txt]") && started.contains(&"report[sorted-fruits.list]"),
        "job_started events: {started:?}\n{}",
        out.all()
    );
}

#[test]
fn instances_start_when_their_file_exists_and_respect_j() {
    // `slow` emits a file, then keeps running: the instance runs meanwhile.
    // Under -j 2 two things run at once at most: the slow step and one instance.
    let t = Test::new().workflow(
        r#"
        jobs:
          slow:
            steps:
              - run: for i in 1 2 3; do echo "$i" > "$TRUN_EMIT/each/f$i"; done
              - run: |
                  for i in $(seq 1 100); do test -e done-f1 && test -e done-f2 && test -e done-f3 && exit 0; sleep 0.1; done
                  echo "instances did not run while the job ran"; exit 1
          each:
            fed-by: slow
            steps:
              - run: |
                  mkdir lock || { echo "two instances at once under -j 2"; exit 1; }
                  sleep 0.2
                  rmdir lock
                  touch "done-$TRUN_INPUT_NAME"
          after:
            needs: each
            steps:
              - run: ls done-f1 done-f2 done-f3 > after.txt
        "#,
    );
    t.run(&["-j", "2", "--progress", "plain"]).success();
    assert_eq!(t.read("after.txt"), "done-f1\ndone-f2\ndone-f3\n");
}

const ROUTER: &str = r#"
    jobs:
      start:
        steps:
          - run: |
              mkdir -p "$TRUN_EMIT/TARGET"
              echo x > "$TRUN_EMIT/TARGET/result_a.txt"
      process:
        fed-by: start
        steps:
          - run: cat "$TRUN_INPUT_FILE"
      other:
        steps:
          - run: "true"
"#;

#[test]
fn a_file_for_an_unknown_job_fails_the_step_naming_it() {
    let t = Test::new().workflow(&ROUTER.replace("TARGET", "proces"));
    t.run(&["--progress", "plain"]).status(1).stderr_has(
        "step `start.step-1` emitted \"result_a.txt\" for job `proces`, which does not exist (did you mean `process`?)",
    );
    let t = Test::new().workflow(&ROUTER.replace("TARGET", "other"));
    t.run(&["--progress", "plain"]).status(1).stderr_has(
        "step `start.step-1` emitted \"result_a.txt\" for job `other`, which does not take emitted files (give it `fed-by: start`)",
    );
}

#[test]
fn fed_by_is_checked_with_the_file_position() {
    let t = Test::new().workflow(
        r#"
        jobs:
          start:
            steps:
              - run: "true"
          process:
            fed-by: strat
            steps:
              - run: "true"
        "#,
    );
    t.run(&["validate"])
        .status(2)
        .stderr_has("trun.yaml:6:13")
        .stderr_has("`fed-by` names unknown job `strat`")
        .stderr_has("did you mean `start`?");
    let t = Test::new().workflow(
        r#"
        jobs:
          a:
            fed-by: b
            steps:
              - run: "true"
          b:
            fed-by: a
            steps:
              - run: "true"
        "#,
    );
    t.run(&["validate"])
        .status(2)
        .stderr_has("dependency cycle: a -> b -> a");
}

/// A workflow whose `start` step runs `SCRIPT`, feeding `process`, whose
/// instances record their name and input.
fn hostile(script: &str) -> Test {
    let yaml = format!(
        r#"
jobs:
  start:
    steps:
      - run: |
{}
  process:
    fed-by: start
    steps:
      - run: |
          printf '%s\n' "$TRUN_INPUT_NAME" >> names.log
          printf '%s\n' "$TRUN_INPUT_FILE" >> files.log
"#,
        script
            .lines()
            .map(|l| format!("          {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Test::new().workflow(&yaml)
}

#[test]
fn hostile_names_never_become_code_and_are_shown_escaped() {
    let t = hostile(
        r#"cd "$TRUN_EMIT/process"
echo 1 > '$(touch pwned)'
echo 2 > 'a"b'"'"'c'
echo 3 > "$(printf 'line\nbreak')"
echo 4 > '-rf'
echo 5 > ' ;touch pwned2;'"#,
    );
    t.run(&["--progress", "plain"]).success();
    assert!(
        !t.exists("pwned") && !t.exists("pwned2"),
        "a name ran as code"
    );
    let mut names: Vec<String> = t
        .read("names.log")
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    names.sort();
    // The newline name arrives whole, split over two lines of the log.
    assert!(names.contains(&"$(touch pwned)".to_string()), "{names:?}");
    assert!(names.contains(&"a\"b'c".to_string()), "{names:?}");
    assert!(names.contains(&"-rf".to_string()), "{names:?}");
    assert!(names.contains(&" ;touch pwned2;".to_string()), "{names:?}");
    // Every input is a copy in the store, never a path built from the name.
    let cas = t.path().canonicalize().unwrap().join(".trun/cas");
    for f in t.read("files.log").lines() {
        assert!(
            std::path::Path::new(f).starts_with(&cas),
            "{f} is not in {}",
            cas.display()
        );
    }
    let keys: Vec<String> = jobs(&t).into_iter().map(|(k, _)| k).collect();
    assert!(
        keys.contains(&"process[line\\nbreak]".to_string()),
        "{keys:?}"
    );
}

#[test]
fn links_and_special_files_are_refused_not_followed() {
    let t = hostile(r#"ln -s /etc/passwd "$TRUN_EMIT/process/passwd""#);
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("emitted file process/\"passwd\" is a symbolic link; emit regular files only");
    assert!(!t.exists("names.log"));

    let t = hostile(
        r#"rmdir "$TRUN_EMIT/process"
ln -s / "$TRUN_EMIT/process""#,
    );
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("$TRUN_EMIT/\"process\" is a symbolic link");

    let t = hostile(r#"mkfifo "$TRUN_EMIT/process/fifo""#);
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("emitted file process/\"fifo\" is not a regular file");

    // `../` leaves $TRUN_EMIT: the file is not an emitted file at all.
    let t = hostile(r#"echo x > "$TRUN_EMIT/process/../escaped""#);
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("$TRUN_EMIT/\"escaped\" is not in a job's directory");
}

#[test]
fn counts_sizes_and_depths_are_bounded() {
    let t = hostile(r#"cd "$TRUN_EMIT/process" && for i in $(seq 1 1001); do : > "f$i"; done"#);
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("the step emitted more than 1000 files; the limit is 1000 per step");
    assert!(!t.exists("names.log"));

    // Empty directories count too: listing them is bounded.
    let t = hostile(r#"cd "$TRUN_EMIT/process" && mkdir $(seq -f 'd%g' 1 4001)"#);
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("the step emitted more than 4000 files and directories");

    let t = hostile(r#"head -c 67108865 /dev/zero > "$TRUN_EMIT/process/big""#);
    t.run(&["--progress", "plain"]).status(1).stderr_has(
        "emitted file process/\"big\" has 67108865 bytes; the limit is 67108864 bytes per file",
    );

    let t =
        hostile(r#"d="$TRUN_EMIT/process/1/2/3/4/5/6/7/8/9"; mkdir -p "$d" && echo x > "$d/deep""#);
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("is nested more than 8 levels deep");
}

#[test]
fn the_same_name_from_two_emitters_fails_the_fed_job() {
    let t = Test::new().workflow(
        r#"
        jobs:
          a:
            steps:
              - run: echo a > "$TRUN_EMIT/sink/same"
          b:
            steps:
              - run: echo b > "$TRUN_EMIT/sink/same"
          sink:
            fed-by: [a, b]
            steps:
              - run: cat "$TRUN_INPUT_FILE"
        "#,
    );
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("sink[same] was emitted twice");
}

#[test]
fn ctrl_c_stops_running_instances_and_exits_130() {
    let t = Test::new().workflow(
        r#"
        jobs:
          start:
            steps:
              - run: for i in 1 2; do true > "$TRUN_EMIT/wait/f$i"; done
          wait:
            fed-by: start
            steps:
              - run: |
                  echo $$ > "pid-$TRUN_INPUT_NAME"
                  sleep 60
        "#,
    );
    let running = t.args(&["-j", "4", "--progress", "plain"]).spawn();
    common::wait_for(
        "both instances to start",
        std::time::Duration::from_secs(30),
        || t.exists("pid-f1") && t.exists("pid-f2"),
    );
    let procs: Vec<common::Process> = ["pid-f1", "pid-f2"]
        .iter()
        .filter_map(|f| t.read(f).trim().parse().ok())
        .filter_map(common::Process::find)
        .collect();
    assert_eq!(procs.len(), 2, "both instance shells are running");
    let reaper = common::Reaper(procs.clone());
    running.signal(nix::sys::signal::Signal::SIGINT);
    running.wait(std::time::Duration::from_secs(30)).status(130);
    common::wait_for(
        "every instance process to be killed",
        std::time::Duration::from_secs(10),
        || procs.iter().all(|p| !p.alive()),
    );
    drop(reaper);
    let statuses = jobs(&t);
    assert!(
        statuses
            .iter()
            .any(|(k, s)| k == "wait[f1]" && s == "cancelled"),
        "{statuses:?}"
    );
}

#[test]
fn files_for_a_job_left_out_of_the_run_reach_it_in_a_later_run() {
    let t = Test::example("fan-out");
    // `trun process` runs start and process; report is not part of the run.
    t.run(&["--progress", "plain", "process"])
        .success()
        .stderr_has("job `report` is not part of this run: its emitted files are not processed");
    assert_eq!(
        take_ran(&t),
        sorted(&["start", "process[hello.txt]", "process[notes.txt]"])
    );
    // The full run: process is up to date and hands its files on again.
    assert_eq!(
        ran(&t, &[]),
        sorted(&[
            "transform[fruits.list]",
            "report[upper-hello.txt]",
            "report[upper-notes.txt]",
            "report[sorted-fruits.list]",
            "summary"
        ])
    );
    assert_eq!(t.read("reports/upper-hello.txt"), "HELLO\nWORLD\n");
}
