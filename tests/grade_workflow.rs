//! `uses: rubric/grade` inside a workflow: the rubric's criteria become
//! generated steps that `trun plan` lists, the run records, and whose score
//! flows out through job outputs.

mod common;

use common::Output;
use std::path::Path;

fn example() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/grading"),
        dir.path(),
    );
    dir
}

fn trun(dir: &Path, args: &[&str]) -> Output {
    common::invoke_in(dir, args).env("NO_COLOR", "1").run()
}

#[test]
fn plan_lists_one_generated_step_per_criterion() {
    let dir = example();
    let out = trun(dir.path(), &["plan"]);
    assert!(out.code == Some(0), "{}", out.stderr);
    let text = out.stdout.clone();
    for (id, title) in [
        ("rubric-setup", "setup"),
        ("rubric-builds", "Builds (0 pts)"),
        ("rubric-add", "add: two arguments (10 pts)"),
        ("rubric-unit", "Unit tests (20 pts)"),
        ("rubric", "score"),
    ] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id));
        let line = line.unwrap_or_else(|| panic!("no step `{id}` in the plan:\n{text}"));
        assert!(line.contains(title), "{line}");
    }
}

#[test]
fn the_score_flows_to_job_outputs_and_every_criterion_is_recorded() {
    let dir = example();
    let out = trun(dir.path(), &["--json", "-i", "student=bob"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let grade_done = events
        .iter()
        .find(|e| e["event"] == "job_finished" && e["job"] == "grade")
        .expect("grade job finished");
    // bob's calculator divides with integers: the unit tests give 15 of 20.
    assert_eq!(grade_done["outputs"]["score"], "40");
    assert_eq!(grade_done["outputs"]["max"], "45");

    let show = trun(dir.path(), &["show", "--json"]);
    let run: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let job = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == "grade")
        .unwrap();
    let steps: Vec<(&str, &str)> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("rubric-setup", "success"),
            ("rubric-builds", "success"),
            ("rubric-add", "success"),
            ("rubric-sum", "success"),
            ("rubric-usage", "success"),
            ("rubric-version", "success"),
            ("rubric-unit", "failure"),
            ("rubric", "success"),
        ]
    );
}

#[test]
fn a_student_whose_code_does_not_build_scores_zero() {
    let dir = example();
    let out = trun(dir.path(), &["--json", "-i", "student=carol"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = out.stdout.clone();
    let finished: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "step_finished" && e["job"] == "grade")
        .collect();
    // The rubric's setup (`make`) fails, so every criterion is an error, as
    // with `trun grade`; grading itself still completes.
    let setup = finished.iter().find(|e| e["step"] == 0).unwrap();
    assert_eq!(setup["status"], "failure", "{setup}");
    let add = finished.iter().find(|e| e["step"] == 2).unwrap();
    assert_eq!(add["outputs"]["status"], "error", "{add}");
    assert_eq!(
        add["reason"], "error: setup failed: exit code 2 (0/10 points)",
        "{add}"
    );
    let done = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "job_finished" && e["job"] == "grade")
        .unwrap();
    assert_eq!(done["outputs"]["score"], "0");
}

#[test]
fn a_rubric_step_with_a_missing_rubric_is_a_plan_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("trun.yaml"),
        "jobs:\n  grade:\n    steps:\n      - uses: rubric/grade\n        with: { rubric: nosuch.yaml }\n",
    )
    .unwrap();
    let out = trun(dir.path(), &[]);
    assert_eq!(out.code, Some(2));
    let err = out.stderr.clone();
    assert!(err.contains("nosuch.yaml"), "{err}");
    assert!(err.contains("rubric/grade"), "{err}");
}
