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
          help: valid keys here: name, needs, if, env, defaults, container, services, strategy, outputs, timeout-minutes, continue-on-error, steps
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
          help: valid keys here: name, needs, if, env, defaults, container, services, strategy, outputs, timeout-minutes, continue-on-error, steps
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
