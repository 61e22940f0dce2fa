//! Grading through the library API (`grade_repos`: compile to a plan, run it through the
//! engine) on real repositories, processes and SQLite files.
//!
//! The sample student repository is `tests/fixtures/grade/calc` (a C calculator with a
//! Makefile, a shell unit-test script writing JUnit, and the same rubric as YAML, Markdown
//! and GitHub Classroom JSON). Expected score with `rubric.yaml`: 40 of 45 (the unit tests
//! pass 3 of 4, so 15 of 20).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use trun::cli::grade::{grade_repos, GradeOptions};
use trun::grade::report::{self, Format};
use trun::grade::{self, load_rubric, CriterionStatus, RepoResult, Rubric};
use trun::rubric::classroom;

/// What a batch produced, and how long it took.
struct Batch {
    results: Vec<RepoResult>,
    duration: Duration,
}

impl Batch {
    fn cached(&self) -> usize {
        self.results.iter().filter(|r| r.cached).count()
    }

    fn gradebook_csv(&self, rubric: &Rubric) -> String {
        report::gradebook_csv(rubric, &self.results)
    }
}

/// Grades `repos` locally through the engine. With `grader`, that workspace's state store
/// records the run and keeps results for re-grading; without, a throwaway one does.
fn grade_batch(
    rubric: &Rubric,
    repos: &[PathBuf],
    grader: Option<&Path>,
    jobs: usize,
    force: bool,
) -> Batch {
    let scratch = tempfile::tempdir().expect("tempdir");
    let root = grader.unwrap_or(scratch.path());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let graded = grade_repos(
        runtime,
        std::sync::Arc::new(rubric.clone()),
        Path::new("rubric.yaml"),
        root,
        repos,
        &GradeOptions {
            jobs,
            local: true,
            force,
            use_cache: grader.is_some(),
            docker: None,
            runner_name: "local".into(),
            command_line: vec!["grade".into()],
        },
    )
    .unwrap_or_else(|d| panic!("{}", d.render(false)));
    Batch {
        results: graded.results,
        duration: started.elapsed(),
    }
}

fn grade_repo(rubric: &Rubric, repo: &Path) -> RepoResult {
    grade_batch(rubric, &[repo.to_path_buf()], None, 1, false)
        .results
        .remove(0)
}

/// Copies a directory tree (regular files and directories).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Every subdirectory of `dir`, sorted.
fn repos_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grade/calc")
}

fn fixture_rubric(name: &str) -> Rubric {
    load_rubric(&fixture().join(name)).expect("fixture rubric is valid")
}

fn status(r: &RepoResult, id: &str) -> CriterionStatus {
    r.criterion(id).map(|c| c.status).expect("criterion exists")
}

fn points(r: &RepoResult, id: &str) -> f64 {
    r.criterion(id).map(|c| c.points).expect("criterion exists")
}

/// A repository in a temp dir holding `files` (path, content).
fn repo_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, content) in files {
        let p = dir.path().join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(p, content).expect("write");
    }
    dir
}

fn yaml(text: &str) -> Rubric {
    Rubric::from_yaml(text, "test-rubric.yaml").expect("test rubric is valid")
}

#[test]
fn fixture_repo_gets_the_expected_score() {
    let rubric = fixture_rubric("rubric.yaml");
    let r = grade_repo(&rubric, &fixture());
    assert_eq!(r.error, None);
    assert!(r.setup.as_ref().is_some_and(|s| s.passed), "{:?}", r.setup);
    for id in ["builds", "add", "sum", "usage", "version"] {
        assert_eq!(
            status(&r, id),
            CriterionStatus::Passed,
            "{id}: {}",
            report::table(&r, false)
        );
    }
    let unit = r.criterion("unit").expect("unit");
    assert_eq!(unit.status, CriterionStatus::Failed);
    assert_eq!(unit.tests, Some((3, 4)));
    assert_eq!(unit.points, 15.0);
    assert_eq!(unit.reason.as_deref(), Some("3 of 4 tests passed"));
    assert_eq!((r.score, r.max_score), (40.0, 45.0));

    let table = report::table(&r, false);
    assert!(table.contains("Unit tests"), "{table}");
    assert!(table.contains("15/20"), "{table}");
    assert!(
        table
            .lines()
            .last()
            .is_some_and(|l| l.contains("total") && l.contains("40/45")),
        "{table}"
    );
}

#[test]
fn each_comparison_mode_passes_and_fails() {
    let repo = repo_with(&[("README", "x")]);
    let rubric = yaml(
        r#"criteria:
  - { id: exact-ok, points: 1, run: "printf '5\r\n\n'", expect: { stdout: " 5 " } }
  - { id: exact-bad, points: 1, run: "echo 50", expect: { stdout: "5", compare: exact } }
  - { id: contains-ok, points: 1, run: "echo the sum is 5", expect: { stdout: "sum is", compare: contains } }
  - { id: contains-bad, points: 1, run: "echo the sum is 5", expect: { stdout: "total", compare: contains } }
  - { id: regex-ok, points: 1, run: "echo 'result: 42 ok'", expect: { stdout: 'result: \d+', compare: regex } }
  - { id: regex-bad, points: 1, run: "echo 'result: 42 ok'", expect: { stdout: '^\d+$', compare: regex } }
  - { id: stderr-ok, points: 1, run: "echo oops >&2; exit 3", expect: { exit-code: 3, stderr: oops } }
  - { id: exit-bad, points: 1, run: "echo 5; exit 1", expect: { stdout: "5" } }
  - { id: plain-ok, points: 1, run: "true" }
  - { id: plain-bad, points: 1, run: "false" }
"#,
    );
    let r = grade_repo(&rubric, repo.path());
    for id in [
        "exact-ok",
        "contains-ok",
        "regex-ok",
        "stderr-ok",
        "plain-ok",
    ] {
        assert_eq!(
            status(&r, id),
            CriterionStatus::Passed,
            "{id}: {:?}",
            r.criterion(id)
        );
        assert_eq!(points(&r, id), 1.0);
    }
    for id in [
        "exact-bad",
        "contains-bad",
        "regex-bad",
        "exit-bad",
        "plain-bad",
    ] {
        assert_eq!(status(&r, id), CriterionStatus::Failed, "{id}");
        assert_eq!(points(&r, id), 0.0);
    }
    let reason = |id| {
        r.criterion(id)
            .and_then(|c| c.reason.clone())
            .unwrap_or_default()
    };
    assert_eq!(reason("exact-bad"), "stdout did not match (exact)");
    assert_eq!(reason("regex-bad"), "stdout did not match (regex)");
    assert_eq!(reason("exit-bad"), "exit code 1, expected exit code 0");
    assert_eq!(reason("plain-bad"), "exit code 1");
    assert_eq!(r.score, 5.0);
}

#[test]
fn a_timeout_scores_zero_and_the_others_still_run() {
    let repo = repo_with(&[("README", "x")]);
    let rubric = yaml(
        "criteria:\n  - { id: first, points: 1, run: 'true' }\n  - { id: hangs, points: 5, run: 'sleep 30', timeout: 500ms }\n  - { id: after, points: 2, run: 'echo still here', expect: { stdout: still here } }\n",
    );
    let started = Instant::now();
    let r = grade_repo(&rubric, repo.path());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status(&r, "hangs"), CriterionStatus::Timeout);
    assert_eq!(points(&r, "hangs"), 0.0);
    assert_eq!(
        r.criterion("hangs").and_then(|c| c.reason.as_deref()),
        Some("timed out after 500ms")
    );
    assert_eq!(status(&r, "after"), CriterionStatus::Passed);
    assert_eq!(r.score, 3.0);
}

#[test]
fn a_criterion_whose_need_failed_is_skipped() {
    let repo = repo_with(&[("README", "x")]);
    let rubric = yaml(
        "criteria:\n  - { id: builds, run: 'exit 2' }\n  - { id: uses, points: 10, needs: [builds], run: 'true' }\n  - { id: chained, points: 3, needs: [uses], run: 'true' }\n  - { id: free, points: 1, run: 'true' }\n",
    );
    let r = grade_repo(&rubric, repo.path());
    assert_eq!(status(&r, "builds"), CriterionStatus::Failed);
    assert_eq!(status(&r, "uses"), CriterionStatus::Skipped);
    assert_eq!(points(&r, "uses"), 0.0);
    assert_eq!(
        r.criterion("uses").and_then(|c| c.reason.as_deref()),
        Some("needs `builds`, which failed")
    );
    assert_eq!(
        r.criterion("chained").and_then(|c| c.reason.as_deref()),
        Some("needs `uses`, which skipped")
    );
    assert_eq!(status(&r, "free"), CriterionStatus::Passed);
    assert_eq!(r.score, 1.0);
}

#[test]
fn partial_credit_from_junit_and_fraction() {
    let repo = repo_with(&[("README", "x")]);
    let rubric = yaml(
        r#"criteria:
  - id: junit
    points: 9
    run: |
      cat > "$TRUN_OUT/junit.xml" <<'XML'
      <testsuites><testsuite name="t">
        <testcase name="a"/><testcase name="b"/>
        <testcase name="c"><failure message="wrong"/></testcase>
        <testcase name="d"><skipped/></testcase>
      </testsuite></testsuites>
      XML
      exit 1
    score: { from: junit }
  - { id: fraction, points: 10, run: 'echo 0.25 > "$TRUN_SCORE"', score: { from: fraction } }
  - { id: full, points: 4, run: 'echo 1 > "$TRUN_SCORE"', score: { from: fraction } }
  - { id: missing, points: 4, run: 'true', score: { from: junit } }
  - { id: nonsense, points: 4, run: 'echo lots > "$TRUN_SCORE"', score: { from: fraction } }
"#,
    );
    let r = grade_repo(&rubric, repo.path());
    let junit = r.criterion("junit").expect("junit");
    assert_eq!(
        (junit.status, junit.points, junit.tests),
        (CriterionStatus::Failed, 6.0, Some((2, 3)))
    );
    assert_eq!(points(&r, "fraction"), 2.5);
    assert_eq!(status(&r, "full"), CriterionStatus::Passed);
    assert_eq!(status(&r, "missing"), CriterionStatus::Error);
    assert_eq!(
        r.criterion("missing").and_then(|c| c.reason.as_deref()),
        Some("the command wrote no $TRUN_OUT/junit.xml (exit code 0)")
    );
    assert_eq!(status(&r, "nonsense"), CriterionStatus::Error);
    assert_eq!(r.score, 12.5);
}

#[test]
fn failed_setup_marks_every_criterion_error() {
    let repo = repo_with(&[("README", "x")]);
    let rubric = yaml("setup: 'echo no compiler >&2; exit 4'\ncriteria:\n  - { id: a, points: 1, run: 'true' }\n  - { id: b, points: 1, run: 'true' }\n");
    let r = grade_repo(&rubric, repo.path());
    assert!(r
        .criteria
        .iter()
        .all(|c| c.status == CriterionStatus::Error));
    assert_eq!(
        r.criterion("a").and_then(|c| c.reason.as_deref()),
        Some("setup failed: exit code 4")
    );
    assert_eq!(
        r.setup.as_ref().map(|s| s.stderr.text.as_str()),
        Some("no compiler\n")
    );
    assert_eq!(r.score, 0.0);
    // The repository itself graded fine (no crash), so the gradebook shows numbers.
    let csv = report::gradebook_csv(&rubric, &[r]);
    assert!(csv.ends_with(",0,0,0\n"), "{csv}");
}

#[test]
fn hidden_criteria_are_after_due_date_in_gradescope() {
    let rubric = fixture_rubric("rubric.yaml");
    let r = grade_repo(&rubric, &fixture());
    let gs: serde_json::Value =
        serde_json::from_str(&report::to_gradescope(&r)).expect("results.json is JSON");
    assert_eq!(gs["score"], 40.0);
    assert!(gs["execution_time"].is_u64());
    let tests = gs["tests"].as_array().expect("tests");
    assert_eq!(tests.len(), 6);
    for t in tests {
        let expected = if t["name"] == "Unit tests" {
            "after_due_date"
        } else {
            "visible"
        };
        assert_eq!(t["visibility"], expected, "{t}");
        for key in ["name", "number", "score", "max_score", "status", "output"] {
            assert!(t.get(key).is_some(), "{key} missing in {t}");
        }
    }
    let unit = tests
        .iter()
        .find(|t| t["name"] == "Unit tests")
        .expect("unit");
    assert_eq!(
        (unit["score"].as_f64(), unit["max_score"].as_f64()),
        (Some(15.0), Some(20.0))
    );
    assert_eq!(unit["status"], "failed");
    assert_eq!(tests[1]["status"], "passed");
    assert_eq!(tests[1]["number"], "2");
}

#[test]
fn every_report_format_renders() {
    let rubric = fixture_rubric("rubric.yaml");
    let r = grade_repo(&rubric, &fixture());
    let out = tempfile::tempdir().expect("tempdir");
    let written = report::write_batch_reports(
        &rubric,
        std::slice::from_ref(&r),
        out.path(),
        &[
            Format::Json,
            Format::Markdown,
            Format::Junit,
            Format::Gradescope,
        ],
    )
    .expect("write reports");
    assert_eq!(written.len(), 5);
    let json: RepoResult = serde_json::from_str(
        &fs::read_to_string(out.path().join("calc/report.json")).expect("json"),
    )
    .expect("report.json reads back");
    assert_eq!(json.score, 40.0);
    let md = fs::read_to_string(out.path().join("calc/report.md")).expect("md");
    assert!(md.starts_with("# calc: 40 / 45\n"), "{md}");
    assert!(
        md.contains("| Unit tests | failed | 15 / 20 | 3 of 4 tests passed |"),
        "{md}"
    );
    let junit = fs::read_to_string(out.path().join("calc/junit.xml")).expect("junit");
    // Our own JUnit reader agrees: 5 criteria passed of 6.
    assert_eq!(trun::grade::score::parse_junit(&junit), Ok((5, 6)));
    let csv = fs::read_to_string(out.path().join("gradebook.csv")).expect("csv");
    assert_eq!(
        csv,
        "repo,builds,add,sum,usage,version,unit,total\ncalc,0,10,5,5,5,15,40\n"
    );
}

#[test]
fn autograding_json_scores_like_the_equivalent_yaml() {
    let classroom = fixture_rubric(".github/classroom/autograding.json");
    let from_json = grade_repo(&classroom, &fixture());
    let yaml_rubric = fixture_rubric("rubric.yaml");
    let from_yaml = grade_repo(&yaml_rubric, &fixture());
    // The Classroom tests are the yaml's builds, add, sum and version criteria.
    for c in &from_json.criteria {
        assert_eq!(c.status, status(&from_yaml, &c.id), "{}", c.id);
        assert_eq!(c.points, points(&from_yaml, &c.id), "{}", c.id);
    }
    assert_eq!(from_json.score, 20.0);
    assert_eq!(from_json.max_score, 20.0);

    // `trun rubric import` output grades the same.
    let imported = classroom::to_yaml(&classroom);
    let reparsed = Rubric::from_yaml(&imported, "imported.yaml").expect("imported yaml is valid");
    assert_eq!(reparsed.canonical(), classroom.canonical());
    let again = grade_repo(&reparsed, &fixture());
    assert_eq!(again.score, from_json.score);
}

#[test]
fn markdown_rubric_is_the_same_rubric() {
    let md = fixture_rubric("rubric.md");
    let yml = fixture_rubric("rubric.yaml");
    assert_eq!(md.canonical(), yml.canonical());
    let r = grade_repo(&md, &fixture());
    assert_eq!((r.score, r.max_score), (40.0, 45.0));
}

#[test]
fn student_code_cannot_modify_the_original_repo() {
    let repo = repo_with(&[("main.c", "int main(){}"), ("sub/keep.txt", "keep")]);
    let rubric = yaml(
        "setup: 'touch built.o'\ncriteria:\n  - { id: vandal, points: 1, run: 'rm -rf ./* && echo pwned > main.c && touch evil' }\n  - { id: sees-damage, points: 1, run: 'test -f evil && test ! -e sub' }\n",
    );
    let r = grade_repo(&rubric, repo.path());
    // Both ran, in the same scratch copy, so the second sees what the first did ...
    assert_eq!(status(&r, "vandal"), CriterionStatus::Passed);
    assert_eq!(status(&r, "sees-damage"), CriterionStatus::Passed);
    // ... and the original is untouched.
    assert_eq!(
        fs::read_to_string(repo.path().join("main.c")).expect("main.c"),
        "int main(){}"
    );
    assert_eq!(
        fs::read_to_string(repo.path().join("sub/keep.txt")).expect("keep"),
        "keep"
    );
    assert!(!repo.path().join("evil").exists());
    assert!(!repo.path().join("built.o").exists());
    assert!(!repo.path().join(".trun").exists());
}

/// `count` copies of the fixture; `vary(i, calc_c)` may rewrite each one's source.
fn student_repos(
    root: &Path,
    count: usize,
    vary: impl Fn(usize, String) -> String,
) -> Vec<PathBuf> {
    let source = fs::read_to_string(fixture().join("calc.c")).expect("calc.c");
    (0..count)
        .map(|i| {
            let dir = root.join(format!("student-{i:02}"));
            copy_tree(&fixture(), &dir).expect("copy fixture");
            fs::write(dir.join("calc.c"), vary(i, source.clone())).expect("write calc.c");
            dir
        })
        .collect()
}

#[test]
fn a_batch_of_20_with_a_hang_a_flood_and_a_crash_yields_a_full_gradebook() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut repos = student_repos(root.path(), 20, |i, src| {
        match i {
        // Hangs in `add` (and so in nothing else).
        4 => src.replace("printf(\"%ld\\n\", a + b);", "for (;;) sleep(1);"),
        // Prints 10 MB for `version`.
        9 => src.replace(
            "printf(\"calc 1.0\\n\");",
            "for (long i = 0; i < 10L * 1024 * 1024 / 32; i++) fputs(\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\\n\", stdout);",
        ),
        // Does not compile: setup fails.
        12 => src.replace("return usage();\n    const", "return usage()\n    const"),
        // Wrong answer for add.
        15 => src.replace("a + b", "a - b"),
        _ => src,
    }
    });
    // Not a repository at all: the runner cannot open it.
    let crash = root.path().join("student-19");
    fs::remove_dir_all(&crash).expect("rm");
    fs::write(&crash, "not a directory").expect("write");
    repos[19] = crash;

    let mut rubric = fixture_rubric("rubric.yaml");
    rubric.defaults.timeout = trun::rubric::DurationSpec(Duration::from_secs(3));
    let jobs = 2;
    let batch = grade_batch(&rubric, &repos, None, jobs, false);
    assert_eq!(batch.results.len(), 20);
    let csv = batch.gradebook_csv(&rubric);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 21, "{csv}");
    assert_eq!(lines[0], "repo,builds,add,sum,usage,version,unit,total");
    assert_eq!(lines[1], "student-00,0,10,5,5,5,15,40");
    assert_eq!(
        lines[5], "student-04,0,0,5,5,5,15,30",
        "hang: add times out"
    );
    assert_eq!(
        lines[10], "student-09,0,10,5,5,0,15,35",
        "flood: version fails"
    );
    assert_eq!(
        lines[13], "student-12,0,0,0,0,0,0,0",
        "no build: every criterion error"
    );
    assert_eq!(lines[16], "student-15,0,0,5,5,5,15,30", "wrong add");
    assert_eq!(
        lines[20],
        "student-19,error,error,error,error,error,error,error"
    );

    let hang = &batch.results[4];
    assert_eq!(status(hang, "add"), CriterionStatus::Timeout);
    let flood = batch.results[9].criterion("version").expect("version");
    assert!(flood.stdout.truncated);
    assert_eq!(flood.stdout.total_bytes, 10 * 1024 * 1024);
    assert_eq!(flood.stdout.text.len(), 64 * 1024);
    assert!(batch.results[19]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("is not a directory")));
}

#[test]
fn regrading_reuses_stored_results_until_something_changes() {
    let root = tempfile::tempdir().expect("tempdir");
    let repos = student_repos(root.path(), 2, |_, src| src);
    let grader = root.path().join("grader");
    let rubric = fixture_rubric("rubric.yaml");
    let jobs = 2;

    let first = grade_batch(&rubric, &repos, Some(&grader), jobs, false);
    assert_eq!(first.cached(), 0);
    let again = grade_batch(&rubric, &repos, Some(&grader), jobs, false);
    assert_eq!(again.cached(), 2);
    assert_eq!(again.results[0].score, 40.0);
    assert_eq!(again.results[0].graded_at, first.results[0].graded_at);
    assert!(report::table(&again.results[0], false).contains("(cached: nothing changed"));

    let forced = grade_batch(&rubric, &repos, Some(&grader), jobs, true);
    assert_eq!(forced.cached(), 0);

    // A watched file changes: that repository is graded again, the other is not.
    let src = fs::read_to_string(repos[1].join("calc.c")).expect("read");
    fs::write(repos[1].join("calc.c"), src.replace("a + b", "a - b")).expect("write");
    // An unwatched file changes: no effect.
    fs::write(repos[0].join("NOTES.txt"), "hello").expect("write");
    let changed = grade_batch(&rubric, &repos, Some(&grader), jobs, false);
    assert!(changed.results[0].cached);
    assert!(!changed.results[1].cached);
    assert_eq!(changed.results[1].score, 30.0);

    // A different rubric is a different fingerprint.
    let mut other = rubric.clone();
    other.criteria[1].points = 11.0;
    let other_run = grade_batch(&other, &repos, Some(&grader), jobs, false);
    assert_eq!(other_run.cached(), 0);

    // Nothing was written into the student repositories.
    assert!(!repos[0].join(".trun").exists());
    assert!(!repos[0].join("calc").exists());
}

#[test]
fn load_rubric_reports_errors_with_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rubric.yaml");
    fs::write(&path, "criteria:\n  - { id: a, run: x, needs: [b] }\n").expect("write");
    let e = load_rubric(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        e,
        format!(
            "{}:2:30: criterion `a` needs unknown criterion `b`",
            path.display()
        )
    );
    let e = load_rubric(&dir.path().join("missing.yaml"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.starts_with("cannot read rubric "), "{e}");
    assert_eq!(
        grade::RubricFormat::of(Path::new("x/rubric.md")),
        grade::RubricFormat::Markdown
    );
}

#[test]
fn the_grading_example_grades_as_documented() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/grading");
    let repos = repos_in(&example.join("students"));
    let expected = "repo,builds,add,sum,usage,version,unit,total\n\
                    alice,0,10,5,5,5,20,45\n\
                    bob,0,10,5,5,5,15,40\n\
                    carol,0,0,0,0,0,0,0\n";
    for name in ["rubric.yaml", "rubric.md"] {
        let rubric = load_rubric(&example.join(name)).expect("example rubric is valid");
        let jobs = 2;
        let batch = grade_batch(&rubric, &repos, None, jobs, false);
        assert_eq!(batch.gradebook_csv(&rubric), expected, "{name}");
    }
}

/// Timing figures for the report: `cargo test --release --test grade_lib -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_grading_20_fixture_repos() {
    let root = tempfile::tempdir().expect("tempdir");
    let repos = student_repos(root.path(), 20, |_, src| src);
    let rubric = fixture_rubric("rubric.yaml");
    for jobs in [1, 2] {
        let batch = grade_batch(&rubric, &repos, None, jobs, false);
        assert!(batch.results.iter().all(|r| r.score == 40.0));
        println!(
            "grading 20 fixture repos at -j {jobs}: {:.2?}",
            batch.duration
        );
    }
}
