//! trun under hostile input, through the binary: a workspace with planted
//! symlinks, a workflow with absurd numbers or sizes, output nobody can write.
//! Each test checks what happened on disk (the link's target untouched, file
//! modes, nothing written outside the workspace) and the exit code, not only
//! what trun said. Exact wording of each error is pinned in `tests/errors.rs`.

mod common;

use common::Test;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::Duration;

/// The time budget for judging a file under 1 MB: 2 s for a release build
/// (what users run; measured in the README). A debug build of the YAML parser
/// is about ten times slower, so the same tests allow it 15 s.
const TIME_LIMIT: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(15)
} else {
    Duration::from_secs(2)
};

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every regular file below `dir`.
fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A directory outside the test's workspace, with one file that must survive.
fn outside() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("trun-outside-")
        .tempdir()
        .unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    (dir, victim)
}

#[test]
fn a_private_generated_file_stays_private_in_the_cache_and_when_restored() {
    let t = Test::new()
        .workflow(
            "
            jobs:
              build:
                steps:
                  - run: |
                      echo ran >> runs
                      (umask 077; echo token > secret)
                    sources: [in.txt]
                    generates: [secret]
            ",
        )
        .file("in.txt", "v1\n");
    t.run(&[]).success();
    assert_eq!(mode(&t.join("secret")), 0o600);
    assert_eq!(mode(&t.join(".trun")), 0o700, ".trun is private");
    assert_eq!(mode(&t.join(".trun/cas")), 0o700, ".trun/cas is private");
    let objects = files_below(&t.join(".trun/cas"));
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(
        mode(&objects[0]),
        0o400,
        "the object keeps the owner's bits"
    );
    for dir in objects[0]
        .ancestors()
        .take_while(|d| d.starts_with(t.join(".trun/cas")))
    {
        if dir.is_dir() {
            assert_eq!(mode(dir) & 0o077, 0, "{} is private", dir.display());
        }
    }

    fs::remove_file(t.join("secret")).unwrap();
    t.run(&[]).success();
    assert_eq!(t.read("secret"), "token\n", "restored from the cache");
    assert_eq!(mode(&t.join("secret")), 0o600, "restored with its mode");
    assert_eq!(t.read("runs"), "ran\n", "restored, not run again");
}

#[test]
fn a_planted_lock_symlink_is_refused_and_its_target_untouched() {
    let (_dir, victim) = outside();
    let t = Test::new().workflow("jobs: { a: { steps: [ { run: touch ran } ] } }");
    fs::create_dir(t.join(".trun")).unwrap();
    symlink(&victim, t.join(".trun/lock")).unwrap();
    t.run(&[]).status(2).stderr_is(&format!(
        "error: {}/.trun/lock is a symbolic link (to {}); trun does not write through links it did not create: remove the link\n",
        t.path().display(),
        victim.display()
    ));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!t.exists("ran"));
}

#[test]
fn a_planted_state_database_link_is_refused_before_sqlite_follows_it() {
    let (dir, _victim) = outside();
    let t = Test::new().workflow("jobs: { a: { steps: [ { run: touch ran } ] } }");
    fs::create_dir(t.join(".trun")).unwrap();
    symlink(dir.path().join("planted.db"), t.join(".trun/state.db")).unwrap();
    t.run(&[]).status(2).stderr_is(&format!(
        "error: {}/.trun/state.db is a symbolic link (to {}/planted.db); trun does not write through links it did not create: remove the link\n",
        t.path().display(),
        dir.path().display()
    ));
    assert!(!dir.path().join("planted.db").exists());
    assert!(!t.exists("ran"));
}

#[test]
fn a_planted_wal_link_is_refused_and_never_removed_or_followed() {
    // The WAL stays beside the database between runs, and a WAL whose database
    // was moved aside is removed before opening: neither may touch a planted link.
    let (dir, victim) = outside();
    let t = Test::new().workflow("jobs: { a: { steps: [ { run: touch ran } ] } }");
    t.run(&["-q"]).success();
    let wal = t.join(".trun/state.db-wal");
    for db_moved_aside in [false, true] {
        let _ = fs::remove_file(&wal);
        symlink(&victim, &wal).unwrap();
        if db_moved_aside {
            fs::rename(t.join(".trun/state.db"), t.join("aside.db")).unwrap();
        }
        fs::remove_file(t.join("ran")).unwrap_or(());
        t.run(&["-q"]).status(2).stderr_is(&format!(
            "error: {} is a symbolic link (to {}); trun does not write through links it did not create: remove the link\n",
            wal.display(),
            victim.display()
        ));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(fs::symlink_metadata(&wal).unwrap().file_type().is_symlink());
        assert!(!t.exists("ran"));
    }
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the victim"
    );
}

#[test]
fn a_symlinked_trun_dir_is_refused_by_run_and_history() {
    let (dir, _victim) = outside();
    let t = Test::new().workflow("jobs: { a: { steps: [ { run: touch ran } ] } }");
    symlink(dir.path(), t.join(".trun")).unwrap();
    let expected = format!(
        "error: {}/.trun is a symbolic link (to {}); trun does not write through links it did not create: remove the link\n",
        t.path().display(),
        dir.path().display()
    );
    t.run(&[]).status(2).stderr_is(&expected);
    t.run(&["history"]).status(2).stderr_is(&expected);
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["victim"], "nothing written through the link");
    assert!(!t.exists("ran"));
}

#[test]
fn links_planted_where_the_next_run_keeps_its_logs_are_removed_not_followed() {
    let (dir, victim) = outside();
    let t = Test::new().workflow("jobs: { build: { steps: [ { run: echo from-the-step } ] } }");
    fs::create_dir_all(t.join(".trun/logs/1/build")).unwrap();
    symlink(&victim, t.join(".trun/logs/1/build/01-step-1.log")).unwrap();
    fs::create_dir_all(t.join(".trun/tmp")).unwrap();
    symlink(dir.path(), t.join(".trun/tmp/1")).unwrap();
    t.run(&[]).success();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    let log = t.join(".trun/logs/1/build/01-step-1.log");
    assert!(fs::symlink_metadata(&log).unwrap().is_file());
    assert_eq!(fs::read_to_string(&log).unwrap(), "from-the-step\n");
}

#[test]
fn generates_through_a_symlinked_directory_is_refused_before_anything_runs() {
    let (dir, _victim) = outside();
    let t = Test::new()
        .workflow(
            "
            jobs:
              build:
                steps:
                  - run: mkdir -p out && echo v1 > out/app && echo ran >> runs
                    sources: [in.txt]
                    generates: [out/app]
            ",
        )
        .file("in.txt", "v1\n");
    t.run(&[]).success();
    // A checkout replaces the output directory by a link elsewhere.
    fs::remove_dir_all(t.join("out")).unwrap();
    symlink(dir.path(), t.join("out")).unwrap();
    t.run(&[]).status(2).stderr_is(
        "
        trun.yaml:6:21: error: `generates` path `out/app` goes through the symbolic link `out`
          |
        6 |         generates: [out/app]
          |                     ^^^^^^^
          help: trun reads and restores files only inside the workspace, never through links: name the real directory
        ",
    );
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing restored there"
    );
    assert_eq!(t.read("runs"), "ran\n");
}

#[test]
fn generates_outside_the_workspace_is_refused_and_the_file_there_kept() {
    let t = Test::new().file(
        "ws/trun.yaml",
        "
        jobs:
          build:
            steps:
              - run: echo built > ../x
                sources: [in.txt]
                generates: [../x]
        ",
    );
    t.write("x", "user edit\n");
    t.args(&["plan"])
        .current_dir("ws")
        .run()
        .status(2)
        .stderr_is(
            "
        trun.yaml:6:21: error: `generates` path `../x` leaves the workspace
          |
        6 |         generates: [../x]
          |                     ^^^^
          help: trun only reads and restores files inside the workspace
        ",
        );
    t.args(&[]).current_dir("ws").run().status(2);
    assert_eq!(t.read("x"), "user edit\n");
}

#[test]
fn a_missing_literal_source_is_a_warning_not_silence() {
    let t = Test::new().workflow(
        "
        jobs:
          build:
            steps:
              - run: echo hi
                sources: [src/main.c, \"src/**/*.h\", gen/out.txt]
              - run: mkdir -p gen && echo x > gen/out.txt
                generates: [gen/out.txt]
        ",
    );
    t.run(&["plan"]).success().stderr_is(
        r#"
        trun.yaml:5:19: warning: source `src/main.c` does not exist
          |
        5 |         sources: [src/main.c, "src/**/*.h", gen/out.txt]
          |                   ^^^^^^^^^^
          help: the step's up-to-date check ignores it until it exists
        "#,
    );
}

#[test]
fn output_that_cannot_be_written_exits_1_and_a_closed_pipe_exits_0() {
    let t = Test::new().workflow("jobs: { build: { steps: [ { run: echo hi } ] } }");
    t.run(&[]).success();
    let full = || {
        fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let said = "trun: error: cannot write the output: No space left on device (os error 28)\n";
    for args in [
        &["history"][..],
        &["history", "--json"],
        &["show"],
        &["show", "--json"],
        &["list"],
        &["plan"],
        &["validate"],
        &["schema"],
        &["logs", "1"],
    ] {
        let out = t.args(args).run_stdout_to(full());
        out.status(1).stderr_is(said);
    }
    // A run whose events cannot be written still runs and is recorded, but
    // does not claim success.
    let out = t.args(&["run", "--json"]).run_stdout_to(full());
    out.status(1).stderr_is(said);
    assert_eq!(t.show_json("")["status"], "success");

    // A reader that stops early (`| head -1`) is not an error.
    let t = Test::new().workflow(
        "jobs: { build: { steps: [ { run: 'for i in $(seq 1 20000); do echo line $i; done' } ] } }",
    );
    let out = t.args(&["run", "--json"]).run_reading_first_line();
    out.status(0).stderr_is("");
    assert!(out.stdout.starts_with("{\"event\":\"run_started\""));
    assert_eq!(t.show_json("")["status"], "success");
    let out = t.args(&["schema"]).run_reading_first_line();
    out.status(0).stderr_is("");
}

#[test]
fn absurd_numbers_are_errors_not_panics() {
    for (field, value) in [
        ("timeout-minutes", ".nan"),
        ("timeout-minutes", "1e308"),
        ("timeout-minutes", "-1"),
        ("timeout-minutes", ".inf"),
        ("retry", "{ attempts: 3, delay: 1e300 }"),
        ("retry", "{ attempts: 3, delay: 99999999999999999999d }"),
        ("retry", "{ attempts: 4000000000, delay: 1s }"),
    ] {
        let t = Test::new().workflow(&format!(
            "jobs: {{ a: {{ steps: [ {{ run: touch ran, {field}: {value} }} ] }} }}"
        ));
        for cmd in [&["validate"][..], &["plan"], &[]] {
            let out = t.run(cmd);
            out.status(2).stderr_lacks("panicked");
        }
        assert!(!t.exists("ran"), "{field}: {value}");
    }
}

#[test]
fn a_ten_million_leg_matrix_is_refused_before_it_is_expanded() {
    let axis = "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]";
    let axes: Vec<String> = "abcdefg".chars().map(|c| format!("{c}: {axis}")).collect();
    let t = Test::new().workflow(&format!(
        "jobs: {{ a: {{ strategy: {{ matrix: {{ {} }} }}, steps: [ {{ run: touch ran }} ] }} }}",
        axes.join(", ")
    ));
    for cmd in [&["validate"][..], &["plan"], &[]] {
        let (out, rss_kib, took) = t.args(cmd).run_measured();
        out.status(2).stderr_has(
            "the matrix has 10000000 legs (10 × 10 × 10 × 10 × 10 × 10 × 10); the limit is 256",
        );
        assert!(rss_kib < 200 * 1024, "{cmd:?}: {rss_kib} KiB");
        assert!(took < TIME_LIMIT, "{cmd:?}: {took:?}");
    }
    assert!(!t.exists("ran"));
}

/// Files under 1 MB built to cost as much as possible; each must be judged
/// (accepted or refused) in under 2 s and 200 MB.
#[test]
fn adversarial_workflow_files_stay_within_time_and_memory() {
    let mut cases: Vec<(&str, String)> = Vec::new();
    // Deep block nesting.
    let mut deep = String::from("jobs:\n  a:\n    steps:\n      - run: echo\n        with:\n");
    for i in 0..900 {
        deep.push_str(&" ".repeat(10 + i * 2));
        deep.push_str("k:\n");
    }
    cases.push(("deep block nesting", deep));
    // Deep flow nesting.
    cases.push((
        "deep flow nesting",
        format!(
            "jobs: {{ a: {{ steps: [ {{ run: echo, with: {{ x: {}{} }} }} ] }} }}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    ));
    // Billion laughs: each level repeats the one before ten times.
    let mut laughs = String::from(
        "jobs:\n  a:\n    steps:\n      - run: echo\n        with:\n          x0: &a0 [\"lol\"]\n",
    );
    for i in 1..30 {
        laughs.push_str(&format!(
            "          x{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(", ")
        ));
    }
    cases.push(("billion laughs", laughs));
    // Many anchors and aliases, each small.
    let mut anchors = String::from("jobs:\n  a:\n    env:\n");
    for i in 0..20_000 {
        anchors.push_str(&format!("      K{i}: &v{i} x\n"));
    }
    anchors.push_str("    steps:\n      - run: echo\n        env:\n");
    for i in 0..20_000 {
        anchors.push_str(&format!("          A{i}: *v{i}\n"));
    }
    cases.push(("40000 anchors and aliases", anchors));
    // A 1 MB single line (a script), with an expression at its end.
    cases.push((
        "a 1 MB line",
        format!(
            "jobs: {{ a: {{ steps: [ {{ run: \"echo {} ${{{{ inputs.x }}}}\" }} ] }} }}\n",
            "x".repeat(1_000_000)
        ),
    ));
    // Thousands of jobs in one chain of needs.
    let mut chain = String::from("jobs:\n  j0: { steps: [ { run: echo } ] }\n");
    for i in 1..4000 {
        chain.push_str(&format!(
            "  j{i}: {{ needs: [j{}], steps: [ {{ run: echo }} ] }}\n",
            i - 1
        ));
    }
    cases.push(("4000 jobs in a chain", chain));
    // A 16 × 16 matrix on 200 jobs: 51 200 planned jobs.
    let mut wide = String::from("jobs:\n");
    let axis: Vec<String> = (0..16).map(|i| i.to_string()).collect();
    for i in 0..200 {
        wide.push_str(&format!(
            "  j{i}: {{ strategy: {{ matrix: {{ x: [{0}], y: [{0}] }} }}, steps: [ {{ run: echo }}, {{ run: echo }} ] }}\n",
            axis.join(", ")
        ));
    }
    cases.push(("200 jobs of 256 legs", wide));
    // Expressions everywhere.
    let mut exprs = String::from("jobs:\n  a:\n    steps:\n");
    for i in 0..5000 {
        exprs.push_str(&format!(
            "      - run: echo ${{{{ format('{{0}}{{1}}', github.sha, matrix.x) }}}} {i}\n"
        ));
    }
    cases.push(("5000 expression steps", exprs));

    for (what, text) in &cases {
        assert!(text.len() < 1_100_000, "{what}: {} bytes", text.len());
        let t = Test::new().workflow("jobs: {}");
        t.write("trun.yaml", text);
        for cmd in [&["validate"][..], &["plan"]] {
            let (out, rss_kib, took) = t.args(cmd).run_measured();
            assert!(
                matches!(out.code, Some(0 | 2)),
                "{what}: {cmd:?} exited {:?}\n{}",
                out.code,
                &out.stderr[..out.stderr.len().min(2000)]
            );
            assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
            // A refusal says which limit in words, not in a parser's Debug form.
            assert!(
                !out.stderr.contains("budget breached"),
                "{what}: {}",
                out.stderr
            );
            assert!(rss_kib < 200 * 1024, "{what}: {cmd:?} used {rss_kib} KiB");
            assert!(took < TIME_LIMIT, "{what}: {cmd:?} took {took:?}");
            // No diagnostic echoes a whole megabyte line.
            assert!(
                out.stderr.lines().all(|l| l.chars().count() < 400),
                "{what}: a long line in the message"
            );
        }
    }
}

#[test]
fn hashing_a_large_sparse_source_streams_it() {
    let t = Test::new().workflow(
        "
        jobs:
          build:
            steps:
              - run: echo hi
                sources: [big.bin]
        ",
    );
    let big = fs::File::create(t.join("big.bin")).unwrap();
    big.set_len(256 * 1024 * 1024).unwrap();
    let (out, rss_kib, _) = t.args(&[]).run_measured();
    out.success();
    assert!(
        rss_kib < 100 * 1024,
        "hashing a 256 MiB file used {rss_kib} KiB"
    );
}

#[test]
fn a_workspace_reached_through_a_link_still_restores_its_outputs() {
    let t = Test::new()
        .file(
            "real/trun.yaml",
            "
            jobs:
              build:
                steps:
                  - run: mkdir -p out && echo built > out/app && echo ran >> runs
                    sources: [in.txt]
                    generates: [out/app]
            ",
        )
        .file("real/in.txt", "v1\n");
    symlink(t.join("real"), t.join("ws")).unwrap();
    t.args(&[]).current_dir("ws").run().success();
    fs::remove_file(t.join("real/out/app")).unwrap();
    t.args(&[]).current_dir("ws").run().success();
    assert_eq!(t.read("real/out/app"), "built\n", "restored");
    assert_eq!(t.read("real/runs"), "ran\n", "not run again");
}

/// An input an attacker chose: every quoting context and command substitution at once.
const NASTY: &str = "a'b\"c $(touch pwned-subst) `touch pwned-tick` ; touch pwned-semi";

#[test]
fn expressions_under_posix_template_shells_reach_the_script_as_data() {
    let t = common::Test::new().workflow(&format!(
        r#"
        inputs:
          x: {{ default: {} }}
        jobs:
          j:
            steps:
              - shell: bash -e {{0}}
                run: |
                  echo "1:${{{{ inputs.x }}}}"
                  echo '2:${{{{ inputs.x }}}}'
                  echo 3:${{{{ inputs.x }}}}
                  cat <<EOF
                  4:${{{{ inputs.x }}}}
                  EOF
              - shell: sh -e {{0}}
                run: echo "5:${{{{ inputs.x }}}}"
        "#,
        serde_json::to_string(NASTY).unwrap()
    ));
    let out = t.run(&["--progress", "plain"]);
    out.success();
    for n in ["1", "2", "4", "5"] {
        assert!(
            out.stderr.contains(&format!("{n}:{NASTY}")),
            "{n}: {}",
            out.stderr
        );
    }
    // Unquoted, the shell splits the value into words, but never runs any of it.
    for planted in ["pwned-subst", "pwned-tick", "pwned-semi"] {
        assert!(
            !t.exists(planted),
            "{planted} was created: the value ran as code"
        );
    }
}

#[test]
fn an_expression_an_interpreter_would_read_as_code_is_refused_before_anything_runs() {
    let t = common::Test::new().workflow(
        r#"
        jobs:
          j:
            steps:
              - run: touch ran
              - shell: python3 {0}
                run: print("${{ job.id }}")
        "#,
    );
    t.run(&[]).status(2).stderr_is(
        r#"
        trun.yaml:6:14: error: `${{ }}` in a script run by `python3 {0}` would be pasted into its code
          |
        6 |         run: print("${{ job.id }}")
          |              ^^^^^^^^^^
          help: pass the value through the step's `env:` and read it from the environment (os.environ["NAME"], process.env.NAME), or set `unsafe-inline-expressions: true` on the step to paste the value into the text
        "#,
    );
    assert!(!t.exists("ran"), "nothing runs when the file is refused");
}

#[test]
fn an_expression_in_a_quoted_heredoc_is_refused_where_it_stands() {
    let t = common::Test::new().workflow(
        "
        jobs:
          j:
            steps:
              - run: |
                  echo one
                  cat <<'EOF'
                  q: ${{ job.id }}
                  EOF
        ",
    );
    t.run(&["validate"])
        .status(2)
        .stderr_has("trun.yaml:7:14: error: `${{ }}` inside a quoted heredoc (line 3 of the script) cannot reach it as data");
    // Opting in pastes the value, as the user asked.
    t.write(
        "trun.yaml",
        "jobs:\n  j:\n    steps:\n      - unsafe-inline-expressions: true\n        run: |\n          cat <<'EOF'\n          q: ${{ job.id }}\n          EOF\n",
    );
    t.run(&["--progress", "plain"]).success().stderr_has("q: j");
}

#[test]
fn docker_commands_with_expressions_are_refused_unless_given_as_argv() {
    let t = common::Test::new().workflow(
        r#"
        jobs:
          j:
            steps:
              - uses: docker/exec
                with: { container: c, commands: [ { hi: "echo ${{ job.id }}" } ] }
              - uses: docker/run
                with: { image: busybox, command: "echo ${{ job.id }}" }
        "#,
    );
    let out = t.run(&["validate"]);
    out.status(2)
        .stderr_has(
            "trun.yaml:5:31: error: `${{ }}` in `commands` would be pasted into a shell command",
        )
        .stderr_has(
            "trun.yaml:7:33: error: `${{ }}` in `command` would be pasted into a shell command",
        );
    // A list is an argument vector: no shell reads it, so the value is data.
    t.write(
        "trun.yaml",
        "jobs:\n  j:\n    steps:\n      - uses: docker/run\n        with: { image: busybox, command: [echo, '${{ job.id }}'] }\n",
    );
    t.run(&["validate"]).success();
}

#[test]
fn a_read_only_trun_dir_still_shows_history_show_and_logs() {
    let t = common::Test::new().workflow("jobs: { a: { steps: [ { run: echo hello } ] } }");
    t.run(&["-q"]).success();
    // `.trun` read-only, as on a read-only mount: in a private mount namespace, so
    // nothing outside this test sees it (needs root, as `.ci/run` has).
    let script = format!(
        "mount --bind .trun .trun && mount -o remount,bind,ro .trun && \
         {trun} history && {trun} show last && {trun} logs last",
        trun = common::TRUN
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .current_dir(t.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("unshare (util-linux) runs; this test needs root for a private mount");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("success"), "{stdout}");
    assert!(stdout.contains("hello"), "{stdout}");
}

#[test]
fn deleting_the_state_database_mid_run_is_said_and_fails_the_run() {
    let t = common::Test::new().workflow(
        "jobs: { a: { steps: [ { run: 'rm -f .trun/state.db .trun/state.db-wal .trun/state.db-shm; echo gone' } ] } }",
    );
    let out = t.run(&["-q"]);
    out.status(1).stderr_has(&format!(
        "trun: warning: could not record the run in the state store: {} was removed or replaced during the run; run 1 was not recorded",
        t.join(".trun/state.db").display()
    ));
}
