//! Every error a user can make in a workflow or on the command line: the exact
//! message, `trun.yaml:LINE:COL`, the offending line with a caret under the culprit,
//! exit code 2, and nothing run (the workflow's one step would create `ran`).

mod common;

use common::Test;

/// Runs `trun ARGS` on `yaml` and checks the error is exactly `stderr`, the exit code
/// is 2, stdout is empty and the step that would create `ran` did not run.
fn fails(yaml: &str, args: &[&str], stderr: &str) {
    let t = Test::new().workflow(yaml);
    t.run(args).status(2).stdout_is("").stderr_is(stderr);
    assert!(
        !t.exists("ran"),
        "a step ran although the workflow is invalid"
    );
}

#[test]
fn malformed_yaml_bad_indentation() {
    fails(
        r#"
        jobs:
          build:
            steps:
              - run: touch ran
             oops: 1
        "#,
        &[],
        "
        trun.yaml:5:6: error: while parsing a block mapping, did not find expected key
          |
        5 |      oops: 1
          |      ^^^^
        ",
    );
}

#[test]
fn malformed_yaml_unclosed_quote() {
    fails(
        r#"
        jobs:
          build:
            steps:
              - run: touch ran
              - run: "echo
        "#,
        &[],
        r#"
        trun.yaml:5:14: error: unclosed quote
          |
        5 |       - run: "echo
          |              ^^^^^
        "#,
    );
}

#[test]
fn unknown_key_suggests_the_nearest() {
    fails(
        "
        jobs:
          setup:
            steps:
              - run: touch ran
          build:
            neds: setup
            steps:
              - run: touch ran
        ",
        &[],
        "
        trun.yaml:6:5: error: unknown key `neds` (did you mean `needs`?)
          |
        6 |     neds: setup
          |     ^^^^
          help: valid keys here: name, needs, fed-by, if, env, defaults, container, services, strategy, outputs, timeout-minutes, continue-on-error, concurrency, steps, runs-on, environment, permissions, uses, with, secrets, webhooks
        ",
    );
}

#[test]
fn unknown_step_key() {
    fails(
        "
        jobs:
          build:
            steps:
              - run: touch ran
                timeout-minute: 3
        ",
        &[],
        "
        trun.yaml:5:9: error: unknown key `timeout-minute` (did you mean `timeout-minutes`?)
          |
        5 |         timeout-minute: 3
          |         ^^^^^^^^^^^^^^
          help: valid keys here: id, name, run, shell, working-directory, uses, with, env, if, continue-on-error, timeout-minutes, retry, sources, generates, restart, unsafe-inline-expressions
        ",
    );
}

#[test]
fn wrong_type() {
    fails(
        "
        jobs:
          build:
            timeout-minutes: abc
            steps:
              - run: touch ran
        ",
        &[],
        "
        trun.yaml:3:22: error: wrong type: expected a number
          |
        3 |     timeout-minutes: abc
          |                      ^^^
        ",
    );
}

#[test]
fn needs_unknown_job_suggests_the_nearest() {
    fails(
        "
        jobs:
          build:
            steps:
              - run: touch ran
          test:
            needs: biuld
            steps:
              - run: touch ran
        ",
        &[],
        "
        trun.yaml:6:12: error: `needs` names unknown job `biuld`
          |
        6 |     needs: biuld
          |            ^^^^^
          help: did you mean `build`?
        ",
    );
}

#[test]
fn needs_unknown_job_in_a_list() {
    fails(
        "
        jobs:
          build:
            steps:
              - run: touch ran
          lint:
            steps:
              - run: touch ran
          test:
            needs: [lint, buidl]
            steps:
              - run: touch ran
        ",
        &[],
        "
        trun.yaml:9:19: error: `needs` names unknown job `buidl`
          |
        9 |     needs: [lint, buidl]
          |                   ^^^^^
          help: did you mean `build`?
        ",
    );
}

#[test]
fn two_job_cycle_is_printed() {
    fails(
        "
        jobs:
          a:
            needs: b
            steps:
              - run: touch ran
          b:
            needs: a
            steps:
              - run: touch ran
        ",
        &[],
        "
        trun.yaml:7:12: error: dependency cycle: a -> b -> a
          |
        7 |     needs: a
          |            ^
        ",
    );
}

#[test]
fn longer_cycle_is_printed_in_order() {
    let t = Test::new().workflow(
        "
        jobs:
          build:
            needs: deploy
            steps:
              - run: touch ran
          test:
            needs: build
            steps:
              - run: touch ran
          deploy:
            needs: test
            steps:
              - run: touch ran
        ",
    );
    let out = t.run(&["validate"]);
    out.status(2).stdout_is("");
    // Any rotation of the cycle is fine, read along `needs` (build needs deploy) or
    // against it; it must be a real path through the graph.
    let first = out.stderr.lines().next().unwrap_or_default();
    let cycle = first
        .split("dependency cycle: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no cycle in {first:?}"));
    assert!(
        [
            "build -> deploy -> test -> build",
            "deploy -> test -> build -> deploy",
            "test -> build -> deploy -> test",
            "build -> test -> deploy -> build",
            "test -> deploy -> build -> test",
            "deploy -> build -> test -> deploy",
        ]
        .contains(&cycle),
        "cycle printed as {cycle:?}"
    );
    assert!(first.starts_with("trun.yaml:"), "{first}");
    assert!(!t.exists("ran"));
}

#[test]
fn duplicate_step_id() {
    fails(
        "
        jobs:
          build:
            steps:
              - id: compile
                run: touch ran
              - id: compile
                run: touch ran
        ",
        &[],
        "
        trun.yaml:6:13: error: duplicate step id `compile` in job `build`
          |
        6 |       - id: compile
          |             ^^^^^^^
          help: first used at line 4
        ",
    );
}

#[test]
fn undefined_expression_variable() {
    fails(
        "
        inputs:
          x: { default: 1 }
        jobs:
          build:
            steps:
              - run: touch ran; echo ${{ inptus.x }}
        ",
        &[],
        "
        trun.yaml:6:34: error: unknown name `inptus` (did you mean `inputs`?)
          |
        6 |       - run: touch ran; echo ${{ inptus.x }}
          |                                  ^^^^^^
        ",
    );
}

#[test]
fn undefined_expression_variable_inside_a_block_scalar() {
    fails(
        "
        inputs:
          x: { default: 1 }
        jobs:
          build:
            steps:
              - run: |
                  touch ran
                  echo one
                  echo ${{ inptus.x }}
        ",
        &[],
        "
        trun.yaml:9:20: error: unknown name `inptus` (did you mean `inputs`?)
          |
        9 |           echo ${{ inptus.x }}
          |                    ^^^^^^
        ",
    );
}

#[test]
fn undefined_input_property() {
    fails(
        "
        inputs:
          profile: { default: release }
        jobs:
          build:
            steps:
              - run: touch ran; echo ${{ inputs.profil }}
        ",
        &[],
        "
        trun.yaml:6:41: error: unknown input `profil` (did you mean `profile`?)
          |
        6 |       - run: touch ran; echo ${{ inputs.profil }}
          |                                         ^^^^^^
        ",
    );
}

#[test]
fn undefined_variable_in_if() {
    let t = Test::new().workflow(
        "
        jobs:
          build:
            if: ${{ matrx.os == 'linux' }}
            steps:
              - run: touch ran
        ",
    );
    let out = t.run(&[]);
    out.status(2).stdout_is("");
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("trun.yaml:3:13: error: unknown name `matrx`"),
        "{}",
        out.stderr
    );
    assert!(!t.exists("ran"));
}

const INPUTS: &str = "
    inputs:
      profile: { type: choice, options: [debug, release], default: release }
      count: { type: number, default: 1 }
      flag: { type: boolean, default: false }
      token: { type: string, required: true }
    jobs:
      build:
        steps:
          - run: touch ran
    ";

#[test]
fn missing_required_input() {
    fails(
        INPUTS,
        &["build"],
        "
        trun.yaml:5:3: error: missing required input `token`
          |
        5 |   token: { type: string, required: true }
          |   ^^^^^
          help: pass it with `-i token=VALUE`
        ",
    );
}

/// A bad `-i` value points at the input's declaration, in the same
/// `trun.yaml:LINE:COL` + caret form as every other workflow error.
fn bad_input(args: &[&str], first_line: &str, line: &str, caret: &str) {
    let t = Test::new().workflow(INPUTS);
    let out = t.run(args);
    out.status(2).stdout_is("");
    let lines: Vec<&str> = out.stderr.lines().collect();
    let expected = [first_line, "  |", line, caret];
    assert!(
        lines.len() >= 4 && lines[..4] == expected,
        "expected stderr to begin with\n{}\n--- got ---\n{}",
        expected.join("\n"),
        out.stderr
    );
    assert!(!t.exists("ran"));
}

#[test]
fn bad_choice_input() {
    bad_input(
        &["-i", "token=t", "-i", "profile=fast", "build"],
        "trun.yaml:2:3: error: input `profile` must be one of debug, release, got `fast`",
        "2 |   profile: { type: choice, options: [debug, release], default: release }",
        "  |   ^^^^^^^",
    );
}

#[test]
fn bad_number_input() {
    bad_input(
        &["-i", "token=t", "-i", "count=abc", "build"],
        "trun.yaml:3:3: error: input `count` must be a number, got `abc`",
        "3 |   count: { type: number, default: 1 }",
        "  |   ^^^^^",
    );
}

#[test]
fn bad_boolean_input() {
    bad_input(
        &["-i", "token=t", "-i", "flag=maybe", "build"],
        "trun.yaml:4:3: error: input `flag` must be `true` or `false`, got `maybe`",
        "4 |   flag: { type: boolean, default: false }",
        "  |   ^^^^",
    );
}

#[test]
fn bad_input_default_in_the_file() {
    fails(
        "
        inputs:
          p: { type: choice, options: [a, b], default: c }
        jobs:
          build:
            steps:
              - run: touch ran
        ",
        &[],
        "
        trun.yaml:2:48: error: input `p` must be one of a, b, got `c`
          |
        2 |   p: { type: choice, options: [a, b], default: c }
          |                                                ^
        ",
    );
}

#[test]
fn unknown_input_name() {
    fails(
        INPUTS,
        &["-i", "token=t", "-i", "profle=debug", "build"],
        "
        error: unknown input `profle`
          help: did you mean `profile`?
        ",
    );
}

#[test]
fn input_without_equals_is_a_usage_error() {
    let t = Test::new().workflow(INPUTS);
    t.run(&["-i", "token", "build"])
        .status(2)
        .stderr_has("`token` is not NAME=VALUE");
    assert!(!t.exists("ran"));
}

#[test]
fn unknown_uses() {
    fails(
        "
        jobs:
          build:
            steps:
              - run: touch ran
              - uses: docker/biuld
        ",
        &[],
        "
        trun.yaml:5:15: error: unknown action `docker/biuld`
          |
        5 |       - uses: docker/biuld
          |               ^^^^^^^^^^^^
          help: did you mean `docker/build`?
        ",
    );
}

#[test]
fn unknown_job_on_the_command_line() {
    fails(
        "
        jobs:
          build:
            steps:
              - run: touch ran
          test:
            steps:
              - run: touch ran
        ",
        &["biuld"],
        "
        error: no job named `biuld` in trun.yaml
          help: did you mean `build`?
        ",
    );
}

#[test]
fn unknown_job_with_nothing_close_lists_the_jobs() {
    fails(
        "
        jobs:
          build:
            steps:
              - run: touch ran
          test:
            steps:
              - run: touch ran
        ",
        &["zzzzzz"],
        "
        error: no job named `zzzzzz` in trun.yaml
          help: jobs: build, test
        ",
    );
}

#[test]
fn no_workflow_file_found() {
    let t = Test::new();
    t.run(&[]).status(2).stdout_is("").stderr_is(&format!(
        "
        error: no trun.yaml found in {} or any parent directory
          help: create a trun.yaml, or name a file with -f FILE
        ",
        t.path().display()
    ));
    t.run(&["plan"]).status(2).stderr_has("no trun.yaml found");
}

#[test]
fn file_flag_naming_a_missing_file() {
    let t = Test::new().workflow(
        "
        jobs:
          build:
            steps:
              - run: touch ran
        ",
    );
    t.run(&["-f", "nope.yaml"])
        .status(2)
        .stdout_is("")
        .stderr_is("error: workflow file nope.yaml does not exist\n");
    t.run(&["plan", "-f", "nope.yaml"])
        .status(2)
        .stderr_is("error: workflow file nope.yaml does not exist\n");
    assert!(!t.exists("ran"));
}

#[test]
fn errors_in_a_file_named_with_f_carry_its_name() {
    let t = Test::new().file(
        "ci/pipeline.yaml",
        "
        jobs:
          build:
            neds: x
            steps:
              - run: touch ran
        ",
    );
    t.run(&["-f", "ci/pipeline.yaml"])
        .status(2)
        .stderr_has("ci/pipeline.yaml:3:5: error: unknown key `neds`");
    assert!(!t.exists("ci/ran") && !t.exists("ran"));
}

#[test]
fn validate_reports_errors_and_runs_nothing() {
    fails(
        "
        jobs:
          build:
            neds: x
            steps:
              - run: touch ran
        ",
        &["validate"],
        "
        trun.yaml:3:5: error: unknown key `neds` (did you mean `needs`?)
          |
        3 |     neds: x
          |     ^^^^
          help: valid keys here: name, needs, fed-by, if, env, defaults, container, services, strategy, outputs, timeout-minutes, continue-on-error, concurrency, steps, runs-on, environment, permissions, uses, with, secrets, webhooks
        ",
    );
}

#[test]
fn validate_success() {
    let t = Test::new().workflow(
        "
        jobs:
          build:
            steps:
              - run: touch ran
          test:
            needs: build
            steps:
              - run: touch ran
        ",
    );
    t.run(&["validate"])
        .success()
        .stdout_is("trun.yaml: ok (2 jobs)\n")
        .stderr_is("");
    assert!(!t.exists("ran"), "validate must not run anything");
}

#[test]
fn plan_errors_run_nothing_even_when_other_jobs_are_fine() {
    // The error is in `test`; `build` is valid and first in order, yet must not run.
    fails(
        "
        jobs:
          build:
            steps:
              - run: touch ran
          test:
            needs: build
            steps:
              - run: echo ${{ steps.nope.outputs.x }}
        ",
        &[],
        "
        trun.yaml:8:29: error: no earlier step with id `nope` in this job (no earlier step in this job has an `id`)
          |
        8 |       - run: echo ${{ steps.nope.outputs.x }}
          |                             ^^^^
        ",
    );
}

// ---- Hostile input: each message says what is wrong, where, and the limit ----

/// `bytes` as trun.yaml; checks the exact error, exit 2 and that nothing ran.
fn fails_bytes(bytes: &[u8], args: &[&str], stderr: &str) {
    let t = Test::new();
    std::fs::write(t.join("trun.yaml"), bytes).unwrap();
    t.run(args).status(2).stdout_is("").stderr_is(stderr);
    assert!(!t.exists("ran"));
}

#[test]
fn invalid_utf8_names_the_line_and_column_of_the_first_bad_byte() {
    fails_bytes(
        b"jobs:\n  build:\n    steps:\n      - run: touch ran # caf\xe9\n",
        &[],
        "
        trun.yaml:4:29: error: the file is not valid UTF-8 (byte 0xe9)
          |
        4 |       - run: touch ran # caf\u{fffd}
          |                             ^
          help: save the file as UTF-8
        ",
    );
}

#[test]
fn too_many_yaml_nodes_names_the_limit() {
    let mut yaml = String::from(
        "jobs:\n  build:\n    steps:\n      - run: touch ran\n        with:\n          x: [",
    );
    yaml.push_str(&"1,".repeat(260_000));
    yaml.push_str("1]\n");
    fails_bytes(
        yaml.as_bytes(),
        &["validate"],
        &format!(
            "trun.yaml:6:499987: error: the file has too many YAML values (scalars, lists and mappings): the limit is 250000\n  |\n6 | …{}…\n  | {}^\n",
            "1,".repeat(60),
            " ".repeat(41)
        ),
    );
}

#[test]
fn several_yaml_documents_point_at_the_second() {
    fails(
        "
        jobs:
          build:
            steps:
              - run: touch ran
        ---
        jobs: {}
        ",
        &[],
        "
        trun.yaml:5:1: error: trun.yaml holds several YAML documents (`---`); a workflow is one document
          |
        5 | ---
          | ^^^
          help: remove the `---` line and what follows, or move it to a file of its own
        ",
    );
}

#[test]
fn a_directory_named_trun_yaml_is_said_to_be_one() {
    let t = Test::new().workflow("jobs: { build: { steps: [ { run: touch ran } ] } }");
    std::fs::create_dir_all(t.join("sub/trun.yaml")).unwrap();
    t.args(&[])
        .current_dir("sub")
        .run()
        .status(2)
        .stderr_is("error: trun.yaml is a directory, not a workflow file\n  help: name the workflow file with -f FILE\n");
    assert!(!t.exists("ran"), "the parent's trun.yaml was not used");
}

#[test]
fn a_symlink_loop_is_said_to_loop() {
    let t = Test::new();
    std::os::unix::fs::symlink("trun.yaml", t.join("trun.yaml")).unwrap();
    let said = "error: trun.yaml is a symbolic link that loops (it leads back to itself)\n  help: name the workflow file with -f FILE\n";
    t.run(&[]).status(2).stderr_is(said);
    t.run(&["-f", "trun.yaml", "validate"])
        .status(2)
        .stderr_is(said);
}

#[test]
fn a_device_or_fifo_is_refused_before_reading() {
    let t = Test::new();
    t.run(&["-f", "/dev/zero", "validate"]).status(2).stderr_is(
        "error: /dev/zero is not a regular file (a device, FIFO or socket); trun reads workflows from files\n",
    );
    nix::unistd::mkfifo(&t.join("fifo.yaml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    t.run(&["-f", "fifo.yaml", "validate"]).status(2).stderr_is(
        "error: fifo.yaml is not a regular file (a device, FIFO or socket); trun reads workflows from files\n",
    );
    std::fs::write(t.join("big.yaml"), vec![b'#'; 4 * 1024 * 1024 + 1]).unwrap();
    t.run(&["-f", "big.yaml", "validate"])
        .status(2)
        .stderr_is("error: big.yaml is larger than 4 MiB, the limit for a workflow file\n");
}

#[test]
fn a_megabyte_line_is_cut_around_the_error() {
    let yaml = format!(
        "jobs:\n  build:\n    steps:\n      - run: touch ran {} ${{{{ nope.x }}}} {}\n",
        "a".repeat(500_000),
        "b".repeat(500_000)
    );
    let caret_line = format!("  | {}^^^^", " ".repeat(41));
    fails_bytes(
        yaml.as_bytes(),
        &[],
        &format!(
            "trun.yaml:4:500029: error: unknown name `nope`\n  |\n4 | …{} ${{{{ nope.x }}}} {}…\n{caret_line}\n",
            "a".repeat(35),
            "b".repeat(70)
        ),
    );
}

#[test]
fn env_names_that_no_process_can_receive_are_refused() {
    fails(
        r#"
        env:
          "X=Y": 1
          "": 2
        jobs:
          build:
            steps:
              - run: touch ran
        "#,
        &[],
        r#"
        trun.yaml:2:3: error: invalid environment variable name `X=Y`
          |
        2 |   "X=Y": 1
          |   ^^^^^
          help: a name cannot be empty or contain `=` or a NUL character
        trun.yaml:3:3: error: invalid environment variable name ``
          |
        3 |   "": 2
          |   ^^
          help: a name cannot be empty or contain `=` or a NUL character
        2 errors
        "#,
    );
}

#[test]
fn a_nul_character_is_refused_at_plan_time() {
    fails(
        r#"
        jobs:
          build:
            steps:
              - run: "touch ran\0x"
        "#,
        &[],
        r#"
        trun.yaml:4:14: error: this value contains a NUL character (`\0`), which no program can receive
          |
        4 |       - run: "touch ran\0x"
          |              ^^^^^^^^^^^^^^
        "#,
    );
}

#[test]
fn a_binary_tag_is_refused_where_text_is_expected() {
    // `dG91Y2ggcmFu` is base64 for `touch ran`.
    fails(
        "
        jobs:
          build:
            steps:
              - run: !!binary dG91Y2ggcmFu
        ",
        &[],
        "
        trun.yaml:4:14: error: YAML tag `!!binary` is not allowed: trun reads workflow values as plain text
          |
        4 |       - run: !!binary dG91Y2ggcmFu
          |              ^^^^^^^^
          help: remove the tag and write the value itself
        ",
    );
}

#[test]
fn a_nan_timeout_is_an_error() {
    fails(
        "
        jobs:
          build:
            steps:
              - run: touch ran
                timeout-minutes: .nan
        ",
        &["validate"],
        "
        trun.yaml:5:26: error: `timeout-minutes` must be a number of minutes, not NaN
          |
        5 |         timeout-minutes: .nan
          |                          ^^^^
        ",
    );
}

#[test]
fn a_huge_timeout_names_the_limit() {
    fails(
        "
        jobs:
          build:
            timeout-minutes: 1e308
            steps:
              - run: touch ran
        ",
        &[],
        "
        trun.yaml:3:22: error: `timeout-minutes: 1e308` is too long: the limit is 30d (43200 minutes)
          |
        3 |     timeout-minutes: 1e308
          |                      ^^^^^
        ",
    );
}

#[test]
fn a_huge_retry_delay_names_the_limit() {
    fails(
        "
        jobs:
          build:
            steps:
              - run: touch ran
                retry: { attempts: 3, delay: 1e300 }
        ",
        &[],
        "
        trun.yaml:5:38: error: duration `1e300` is too long: the limit is 30d (43200 minutes)
          |
        5 |         retry: { attempts: 3, delay: 1e300 }
          |                                      ^^^^^
        ",
    );
}

#[test]
fn an_absolute_source_is_an_error_not_made_relative() {
    fails(
        "
        jobs:
          build:
            steps:
              - run: touch ran
                sources: [/etc/hostname]
        ",
        &[],
        "
        trun.yaml:5:19: error: `sources` path `/etc/hostname` is absolute
          |
        5 |         sources: [/etc/hostname]
          |                   ^^^^^^^^^^^^^
          help: write paths relative to the workspace (the directory of trun.yaml)
        ",
    );
}

#[test]
fn a_matrix_over_the_leg_limit_is_refused_by_validate() {
    fails(
        "
        jobs:
          build:
            strategy:
              matrix: { a: [1, 2, 3, 4, 5, 6, 7, 8, 9], b: [1, 2, 3, 4, 5, 6, 7, 8, 9], c: [1, 2, 3, 4], include: [{ a: 0 }] }
            steps:
              - run: touch ran
        ",
        &["validate"],
        "
        trun.yaml:4:15: error: the matrix has 325 legs (9 × 9 × 4 + 1 include); the limit is 256
          |
        4 |       matrix: { a: [1, 2, 3, 4, 5, 6, 7, 8, 9], b: [1, 2, 3, 4, 5, 6, 7, 8, 9], c: [1, 2, 3, 4], include: [{ a: 0 }] }
          |               ^
        ",
    );
}

#[test]
fn a_workflow_that_plans_too_many_job_runs_names_the_limit() {
    let axis: Vec<String> = (0..16).map(|i| i.to_string()).collect();
    let mut yaml = String::from("jobs:\n");
    for i in 0..40 {
        yaml.push_str(&format!(
            "  j{i}: {{ strategy: {{ matrix: {{ x: [{0}], y: [{0}] }} }}, steps: [ {{ run: touch ran }} ] }}\n",
            axis.join(", ")
        ));
    }
    fails_bytes(
        yaml.as_bytes(),
        &["validate"],
        "trun.yaml:2:3: error: the workflow plans 10240 job runs (jobs × matrix legs); the limit is 10000\n  |\n2 |   j0: { strategy: { matrix: { x: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], y: [0, 1, 2, 3, 4, 5, 6, 7, 8, …\n  |   ^^\n",
    );
}

#[test]
fn control_characters_in_a_message_cannot_drive_the_terminal() {
    fails(
        r#"
        jobs:
          "a\e[2Jb":
            steps:
              - run: touch ran
        "#,
        &[],
        r#"
        trun.yaml:2:3: error: invalid job id `a\u{1b}[2Jb`: use letters, digits, `-` and `_`, starting with a letter or `_`
          |
        2 |   "a\e[2Jb":
          |   ^^^^^^^^^
        "#,
    );
}

#[test]
fn a_key_past_the_parser_look_ahead_names_the_limit() {
    let yaml = format!(
        "jobs:\n  {}:\n    steps:\n      - run: touch ran\n",
        "k".repeat(5000)
    );
    fails_bytes(
        yaml.as_bytes(),
        &[],
        &format!(
            "trun.yaml:2:3: error: this key is longer than 1024 characters, the limit for a YAML key\n  |\n2 |   {}…\n  |   {}\n  help: use a shorter key\n",
            "k".repeat(118),
            "^".repeat(118)
        ),
    );
}

#[test]
fn a_container_env_name_with_equals_is_refused() {
    fails(
        r#"
        jobs:
          build:
            container: { image: busybox, env: { "A=B": x } }
            steps:
              - run: touch ran
        "#,
        &["validate"],
        r#"
        trun.yaml:3:16: error: invalid environment variable name `A=B`
          |
        3 |     container: { image: busybox, env: { "A=B": x } }
          |                ^
          help: a name cannot be empty or contain `=` or a NUL character
        "#,
    );
}

#[test]
fn a_damaged_state_database_says_what_to_do() {
    let t = Test::new().workflow("jobs: { a: { steps: [ { run: 'true' } ] } }");
    t.write(".trun/state.db", "this is not a database\n");
    let db = t.join(".trun/state.db");
    t.run(&["history"]).status(2).stderr_is(&format!(
        "error: the state database {0} is damaged (file is not a database); trun's history and \
         up-to-date records are in it. Move it aside (mv {0} {0}.broken) to start a fresh \
         history; every step then runs once again\n",
        db.display()
    ));
}

#[test]
fn a_huge_autograding_timeout_is_an_error_not_a_panic() {
    let t = Test::new().file(
        "autograding.json",
        r#"{"tests":[{"name":"a","run":"true","timeout":1e308,"points":1}]}"#,
    );
    t.run(&["rubric", "import", "autograding.json"])
        .status(2)
        .stderr_is(
            "autograding.json: error: tests[0] has a timeout of 1e308 minutes, over the limit of 1440 minutes\n",
        );
}

#[test]
fn a_rubric_limit_of_the_wrong_type_says_what_was_expected() {
    let t = Test::new().file("student/README", "x\n").file(
        "rubric.yaml",
        "criteria:\n  - { id: a, run: x, timeout: {a: 1} }\n",
    );
    t.run(&["grade", "student", "--rubric", "rubric.yaml", "--local"])
        .status(2)
        .stderr_is(
            "rubric.yaml:2:31: error: invalid type: map, expected a duration like `30s`, `2m` or a number of seconds
  |
2 |   - { id: a, run: x, timeout: {a: 1} }
  |                               ^
",
        );
}
