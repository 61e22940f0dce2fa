//! A matrix computed by an earlier job: `${{ fromJSON(needs.x.outputs.y) }}`
//! for one axis or the whole matrix, expanded when the job is ready.

mod common;

use common::Test;

const WORKFLOW: &str = r#"
    jobs:
      setup:
        outputs:
          targets: ${{ steps.list.outputs.targets }}
          matrix: ${{ steps.list.outputs.matrix }}
        steps:
          - id: list
            run: |
              echo 'targets=["x86", "arm"]' >> "$TRUN_OUTPUT"
              echo 'matrix={"os": ["linux", "mac"], "include": [{"os": "linux", "extra": "big"}]}' >> "$TRUN_OUTPUT"
      build:
        needs: setup
        strategy:
          matrix:
            target: ${{ fromJSON(needs.setup.outputs.targets) }}
        steps:
          - run: echo "built ${{ matrix.target }}" >> built.txt
      test:
        needs: setup
        strategy:
          matrix: ${{ fromJSON(needs.setup.outputs.matrix) }}
        steps:
          - run: echo "${{ matrix.os }}:${{ matrix.extra }}" >> tested.txt
      after:
        needs: [build, test]
        steps:
          - run: echo "after=${{ needs.build.result }},${{ needs.test.result }}" > after.txt
"#;

fn sorted_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn legs_come_from_needs_outputs_and_dependents_wait_for_all_of_them() {
    let t = Test::new().workflow(WORKFLOW);
    t.run(&["-j", "2", "--progress", "plain"]).success();
    assert_eq!(
        sorted_lines(&t.read("built.txt")),
        ["built arm", "built x86"]
    );
    // `extra` exists only in the leg `include` extended: null (empty) elsewhere.
    assert_eq!(sorted_lines(&t.read("tested.txt")), ["linux:big", "mac:"]);
    assert_eq!(t.read("after.txt").trim(), "after=success,success");

    let run = t.show_json("last");
    let keys: Vec<&str> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["key"].as_str().unwrap())
        .collect();
    for leg in [
        "build (x86)",
        "build (arm)",
        "test (linux, big)",
        "test (mac)",
    ] {
        assert!(keys.contains(&leg), "leg {leg} recorded: {keys:?}");
    }
}

#[test]
fn a_failing_leg_fails_the_job_and_skips_its_dependents() {
    let t = Test::new().workflow(&WORKFLOW.replace(
        r#"echo "built ${{ matrix.target }}" >> built.txt"#,
        r#"test "${{ matrix.target }}" != arm"#,
    ));
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("[after] ↷ job skipped");
}

#[test]
fn a_matrix_expression_that_is_not_a_list_is_a_clear_failure() {
    let t = Test::new().workflow(
        r#"
        jobs:
          setup:
            outputs: { v: "${{ steps.s.outputs.v }}" }
            steps:
              - id: s
                run: |
                  echo 'v={"a": 1}' >> "$TRUN_OUTPUT"
          use:
            needs: setup
            strategy:
              matrix:
                x: ${{ fromJSON(needs.setup.outputs.v) }}
            steps:
              - run: "true"
        "#,
    );
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("matrix: axis `x` must be a list");
}

#[test]
fn matrix_expressions_are_checked_before_anything_runs() {
    let t = Test::new().workflow(
        r#"
        jobs:
          use:
            strategy:
              matrix: ${{ fromJSON(needs.setup.outputs.list) }}
            steps:
              - run: touch ran
        "#,
    );
    t.run(&[]).status(2).stderr_has("setup");
    assert!(!t.exists("ran"));
}
