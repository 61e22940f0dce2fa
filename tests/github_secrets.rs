//! Secrets (`--secret`, `--secret-file`, the `secrets` context), masking, and
//! the workflow commands a step prints (`::set-output`, `::group::`,
//! `::error::`, `::add-mask::`, `::stop-commands::`, `$GITHUB_STEP_SUMMARY`),
//! through the real binary, with what is left on disk read back byte by byte.

mod common;

use common::Test;
use std::path::Path;

const TOKEN: &str = "hunter2-TOKEN-7f3a";
const LINE_ONE: &str = "mline-ONE-93ab";
const LINE_TWO: &str = "mline-TWO-11cd";
const FROM_ENV: &str = "envsecret-Q81z";
/// Built by the step at run time, then registered with `::add-mask::`.
const RUNTIME: &str = "runtime-MASK-5e2f";

/// Every value that must never be seen.
const SECRETS: [&str; 5] = [TOKEN, LINE_ONE, LINE_TWO, FROM_ENV, RUNTIME];

/// Every file under `dir`, recursively (not following links).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let entry = entry.unwrap();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                todo.push(entry.path());
            } else if ty.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

fn assert_hidden(what: &str, haystack: &[u8]) {
    for s in SECRETS {
        let found = haystack.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(!found, "{what} holds the secret {s:?}");
    }
}

/// No file under `.trun` (state.db and its WAL, logs, CAS, lock, annotations,
/// step summaries) holds a secret, nor the database's SQL dump.
fn assert_nothing_on_disk(t: &Test) {
    let trun = t.join(".trun");
    let files = files_under(&trun);
    assert!(
        files.iter().any(|f| f.ends_with("state.db")),
        "no state.db in {files:?}"
    );
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("/cas/")),
        "the run cached nothing in .trun/cas: {files:?}"
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert_hidden(&f.display().to_string(), &bytes);
    }
    let dump = std::process::Command::new("sqlite3")
        .arg(trun.join("state.db"))
        .arg(".dump")
        .output()
        .expect("sqlite3 must be installed to read the state back (apt-get install sqlite3)");
    assert!(dump.status.success(), "sqlite3 .dump failed");
    assert!(
        String::from_utf8_lossy(&dump.stdout).contains("INSERT INTO"),
        "the dump holds no rows"
    );
    assert_hidden("the sqlite3 dump of state.db", &dump.stdout);
}

const LEAKY: &str = r###"
    jobs:
      deploy:
        env:
          TOK: ${{ secrets.TOKEN }}
          MULTI: ${{ secrets.MULTI }}
          FROM: ${{ secrets.FROM_ENV }}
        outputs:
          leaked: ${{ steps.first.outputs.tok }}
        steps:
          - id: first
            name: deploy with ${{ secrets.TOKEN }}
            run: |
              echo "token is $TOK and from env $FROM"
              echo "$MULTI"
              printf 'first half:%s' "${TOK:0:8}"; sleep 0.3; printf '%s:second half\n' "${TOK:8}"
              V="runtime-$(echo MASK)-5e2f"
              echo "::add-mask::$V"
              echo "value is $V"
              echo "tok=$TOK" >> "$GITHUB_OUTPUT"
              echo "::error file=deploy.sh,line=1::failed to use $TOK"
              echo "## Deployed with $TOK and $V" >> "$GITHUB_STEP_SUMMARY"
          - id: build
            if: secrets.TOKEN == 'hunter2-TOKEN-7f3a'
            sources: [in.txt]
            generates: [out.txt]
            run: cp in.txt out.txt; echo "built with ${{ secrets.TOKEN }}"
          - run: echo "${{ secrets.TOKEN }}" >&2; exit 3
    "###;

fn leaky_test() -> Test {
    Test::new()
        .workflow(LEAKY)
        .file("in.txt", "plain input\n")
        .file(
            "secrets.env",
            &format!("# deploy secrets\nexport MULTI=\"{LINE_ONE}\\n{LINE_TWO}\"\n"),
        )
}

#[test]
fn a_secret_never_reaches_the_terminal_events_logs_state_or_cas() {
    let t = leaky_test();
    let plain = t
        .args(&[
            "--progress",
            "plain",
            "--secret",
            &format!("TOKEN={TOKEN}"),
            "--secret",
            "FROM_ENV",
            "--secret-file",
            "secrets.env",
        ])
        .env("FROM_ENV", FROM_ENV)
        .run();
    plain.status(1);
    let all = plain.all();
    assert_hidden("the plain output", all.as_bytes());
    // The masked lines are there, as `***`.
    for line in [
        "token is *** and from env ***",
        "[deploy] ***",
        "first half:***:second half",
        "value is ***",
        "deploy.sh:1: error: failed to use ***",
        "## Deployed with *** and ***",
        "built with ***",
    ] {
        assert!(all.contains(line), "no {line:?} in\n{all}");
    }

    // The same under --json and the GitHub reporter, with the step re-running.
    for mode in [
        &["--json"][..],
        &["--progress", "github"][..],
        &["--progress", "tty", "--verbose"][..],
    ] {
        let mut args = mode.to_vec();
        let token = format!("TOKEN={TOKEN}");
        args.extend(["--force", "--secret", &token, "--secret", "FROM_ENV"]);
        args.extend(["--secret-file", "secrets.env"]);
        let out = t.args(&args).env("FROM_ENV", FROM_ENV).run();
        out.status(1);
        assert_hidden(&format!("the output of {mode:?}"), out.all().as_bytes());
        assert!(out.all().contains("***"), "{}", out.all());
        if mode == ["--json"] {
            let events = out.json_lines();
            assert!(events.iter().any(|e| e["event"] == "annotation"
                && e["message"] == "failed to use ***"
                && e["file"] == "deploy.sh"));
            assert!(events
                .iter()
                .any(|e| e["event"] == "step_finished" && e["outputs"]["tok"] == "***"));
        }
    }

    // What the user reads back afterwards.
    let show = t.run(&["show"]);
    show.success();
    assert_hidden("trun show", show.all().as_bytes());
    show.stdout_has("deploy.sh:1: error: failed to use ***")
        .stdout_has("## Deployed with *** and ***");
    let json = t.run(&["show", "--json"]);
    assert_hidden("trun show --json", json.all().as_bytes());
    let logs = t.run(&["logs", "last"]);
    assert_hidden("trun logs", logs.all().as_bytes());
    logs.stdout_has("::add-mask::***");
    assert_hidden("trun history", t.run(&["history"]).all().as_bytes());

    assert_nothing_on_disk(&t);
}

#[test]
fn a_secret_is_taken_from_the_environment_or_refused() {
    let t = Test::new().workflow(
        "
        jobs:
          a:
            steps:
              - run: test \"${{ secrets.FROM_ENV }}\" = envsecret-Q81z && echo matched
        ",
    );
    t.args(&["--progress", "plain", "--secret", "FROM_ENV"])
        .env("FROM_ENV", FROM_ENV)
        .run()
        .success()
        .stderr_has("[a] matched");
    t.run(&["--secret", "FROM_ENV_NOT_SET_ANYWHERE"])
        .status(2)
        .stderr_is("error: --secret FROM_ENV_NOT_SET_ANYWHERE: no such variable in trun's environment (give `--secret FROM_ENV_NOT_SET_ANYWHERE=VALUE`, or export FROM_ENV_NOT_SET_ANYWHERE)\n");
    let bad = t.run(&["--secret", &format!("bad-name={TOKEN}")]);
    bad.status(2);
    assert_hidden("a bad --secret's error", bad.all().as_bytes());
    bad.stderr_has("`bad-name` is not a valid secret name");
}

#[test]
fn a_secret_file_error_names_file_line_and_column_without_the_value() {
    let t = Test::new()
        .workflow("jobs: { a: { steps: [ { run: echo hi } ] } }")
        .file("bad.env", &format!("# ok\nA=1\nexport B = \"{TOKEN}\n"))
        .file("noeq.env", &format!("A=1\n\n  {TOKEN}\n"))
        .file("trailing.env", &format!("A='x' {TOKEN}\n"));
    let out = t.run(&["--secret-file", "bad.env"]);
    out.status(2)
        .stderr_is("bad.env:3:12: error: unterminated double-quoted value (no closing \")\n");
    let out = t.run(&["--secret-file", "noeq.env"]);
    out.status(2)
        .stderr_is("noeq.env:3:3: error: expected `NAME=VALUE` (the line has no `=`)\n");
    let out = t.run(&["--secret-file", "trailing.env"]);
    out.status(2)
        .stderr_is("trailing.env:1:7: error: unexpected text after the closing quote\n");
    t.run(&["--secret-file", "missing.env"])
        .status(2)
        .stderr_has("cannot read secret file missing.env");
}

#[test]
fn secrets_in_if_and_env_and_a_missing_one_is_empty() {
    let t = Test::new().workflow(
        "
        jobs:
          a:
            env:
              DEPLOY_KEY: ${{ secrets.DEPLOY_KEY }}
            steps:
              - if: secrets.DEPLOY_KEY == 'k-1'
                run: echo direct-if-ran
              - if: env.DEPLOY_KEY != ''
                run: echo env-if-ran
              - run: echo \"missing=[${{ secrets.NOT_GIVEN }}] token=[${{ secrets.GITHUB_TOKEN }}]\"
        ",
    );
    let out = t.run(&["--progress", "plain", "--secret", "DEPLOY_KEY=k-1"]);
    out.success()
        .stderr_has("[a] direct-if-ran")
        .stderr_has("[a] env-if-ran")
        .stderr_has("[a] missing=[] token=[]")
        .stderr_has("trun.yaml:10:41: warning: secret `NOT_GIVEN` is not given, so it reads as empty (`--secret NOT_GIVEN` or `--secret-file FILE`)")
        .stderr_lacks("secret `DEPLOY_KEY` is not given")
        .stderr_lacks("secret `GITHUB_TOKEN` is not given");
    let out = t.run(&["--progress", "plain"]);
    out.success()
        .stderr_lacks("[a] direct-if-ran\n")
        .stderr_lacks("[a] env-if-ran\n")
        .stderr_has("`if` was false");
}

#[test]
fn a_changed_secret_reruns_the_step_and_the_store_never_holds_it() {
    let t = Test::new()
        .workflow(
            "
            jobs:
              a:
                steps:
                  - id: use
                    sources: [in.txt]
                    run: echo using ${{ secrets.API_KEY }}
                  - id: other
                    sources: [in.txt]
                    run: echo no secret here
            ",
        )
        .file("in.txt", "x\n");
    let run = |value: &str| {
        t.run(&[
            "--progress",
            "plain",
            "--secret",
            &format!("API_KEY={value}"),
        ])
    };
    run(TOKEN).success().stderr_has("[a] using ***");
    // Same value: both up to date.
    run(TOKEN)
        .success()
        .stderr_lacks("using")
        .stderr_lacks("no secret here");
    // A new value re-runs the step that reads it, and only that one.
    run(RUNTIME)
        .success()
        .stderr_has("[a] using ***")
        .stderr_lacks("no secret here");
    let plan = t.run(&["plan", "--secret", &format!("API_KEY={RUNTIME}")]);
    plan.success();
    assert!(
        !plan.stdout.contains("definition changed"),
        "plan and run disagree on the fingerprint:\n{}",
        plan.stdout
    );
    let plan = t.run(&["plan", "--secret", &format!("API_KEY={TOKEN}")]);
    plan.success().stdout_has("definition changed");
    assert_hidden("trun plan", plan.all().as_bytes());
    for f in files_under(&t.join(".trun")) {
        assert_hidden(&f.display().to_string(), &std::fs::read(&f).unwrap());
    }
}

const COMMANDS: &str = r###"
    jobs:
      build:
        steps:
          - id: gen
            run: |
              echo "::set-output name=version::1.2.3"
              echo "::group::Compiling"
              echo "cc -c lib.c"
              echo "::endgroup::"
              echo "::error file=src/lib.rs,line=3,col=7,title=Type error::mismatched types%0Aexpected u8"
              echo "::warning::be careful"
              echo "::notice file=README.md::read me"
              echo "::debug::hidden unless debugging"
              echo "::stop-commands::pause-8f2"
              echo "::error::not an annotation"
              echo "::pause-8f2::"
              echo "# Build report" >> "$GITHUB_STEP_SUMMARY"
              echo "| crate | ok |" >> "$GITHUB_STEP_SUMMARY"
              echo "key=value" >> "$GITHUB_STATE"
          - run: echo "version is ${{ steps.gen.outputs.version }}"
"###;

#[test]
fn workflow_commands_in_the_plain_reporter_and_the_summary() {
    let t = Test::new().workflow(COMMANDS);
    let out = t.run(&["--progress", "plain"]);
    out.success()
        .stderr_has("[build] version is 1.2.3")
        .stderr_has("[build] ▸ Compiling\n[build]   cc -c lib.c\n")
        .stderr_has("[build] src/lib.rs:3:7: error: Type error: mismatched types\nexpected u8\n")
        .stderr_has("[build] warning: be careful\n")
        .stderr_has("[build] README.md: notice: read me\n")
        .stderr_has("[build] ::error::not an annotation\n")
        .stderr_lacks("hidden unless debugging")
        .stderr_lacks("pause-8f2")
        .stderr_has("warning: The `set-output` command is deprecated");
    // The closing summary: annotations, then the step summary.
    let tail = &out.stderr[out.stderr.find("run 1:").expect("a count line")..];
    assert!(
        tail.contains("annotations:\n")
            && tail.contains("  src/lib.rs:3:7: error: Type error: mismatched types\n    expected u8 (build / gen)\n")
            && tail.contains("\n── summary of build / gen ──\n# Build report\n| crate | ok |\n"),
        "{tail}"
    );
    assert!(!tail.contains("not an annotation"), "{tail}");
    // Stored with the run.
    t.run(&["show", "1"])
        .success()
        .stdout_has("src/lib.rs:3:7: error: Type error: mismatched types")
        .stdout_has("── summary of build / gen ──\n# Build report\n| crate | ok |\n");
    // Debugging shows `::debug::`.
    t.args(&["--progress", "plain"])
        .env("RUNNER_DEBUG", "1")
        .run()
        .success()
        .stderr_has("[build] debug: hidden unless debugging");
}

#[test]
fn workflow_commands_are_re_emitted_under_github() {
    let t = Test::new().workflow(COMMANDS);
    let out = t.run(&["--progress", "github"]);
    out.success()
        .stdout_has("::group::Compiling\ncc -c lib.c\n::endgroup::\n")
        .stdout_has(
            "::error file=src/lib.rs,line=3,col=7,title=Type error::mismatched types%0Aexpected u8\n",
        )
        .stdout_has("::notice file=README.md::read me\n");
    // Output that only looks like a command is fenced so the GitHub runner
    // reading trun's output does not act on it either.
    let at = out.stdout.find("\n::error::not an annotation\n").unwrap();
    let before = &out.stdout[..at];
    let token = before
        .rsplit("::stop-commands::")
        .next()
        .expect("a stop-commands fence");
    assert!(token.starts_with("trun-"), "{before}");
    assert!(out.stdout[at..].contains(&format!("\n::{}::\n", token.trim())));
}

#[test]
fn set_env_and_add_path_are_refused_unless_allowed() {
    let t = Test::new().workflow(
        r###"
        jobs:
          refused:
            steps:
              - run: echo "::set-env name=BASH_ENV::/tmp/evil"
          allowed:
            env:
              ACTIONS_ALLOW_UNSECURE_COMMANDS: "true"
            steps:
              - run: |
                  echo "::set-env name=GREETING::hello"
                  mkdir -p bin && printf '#!/bin/sh\necho from-added-path\n' > bin/tool && chmod +x bin/tool
                  echo "::add-path::$PWD/bin"
              - run: echo "greeting=$GREETING"; tool
        "###,
    );
    let out = t.run(&["--progress", "plain"]);
    out.status(1)
        .stderr_has("Unable to process command '::set-env': the `set-env` command is disabled")
        .stderr_has("[allowed] greeting=hello")
        .stderr_has("[allowed] from-added-path")
        .stderr_has("warning: The `set-env` command is deprecated");
}

#[test]
fn a_step_summary_over_one_mebibyte_is_dropped_with_an_error() {
    let t = Test::new().workflow(
        r###"
        jobs:
          a:
            steps:
              - run: head -c 1100000 /dev/zero | tr '\0' x >> "$GITHUB_STEP_SUMMARY"
        "###,
    );
    let out = t.run(&["--progress", "plain"]);
    out.success()
        .stderr_has("$GITHUB_STEP_SUMMARY upload aborted, supports content up to a size of 1024k, got 1074k")
        .stderr_lacks("── summary of");
}

#[test]
fn a_hostile_summary_or_state_file_is_refused_not_followed() {
    let t = Test::new()
        .workflow(
            r###"
            jobs:
              a:
                steps:
                  - run: ln -s "$PWD/target.txt" "$GITHUB_STEP_SUMMARY"; mkfifo "$GITHUB_STATE"
            "###,
        )
        .file("target.txt", "not a summary\n");
    let out = t.run(&["--progress", "plain"]);
    out.success()
        .stderr_has("is a symlink; trun does not follow it")
        .stderr_has("$GITHUB_STATE ignored")
        .stderr_lacks("not a summary");
}
