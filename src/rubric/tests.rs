//! Unit tests of the rubric model, its YAML form and its validation.

use super::model::*;
#[allow(unused_imports)]
use super::*;
use std::time::Duration;

const FULL: &str = r#"version: 1
container: { dockerfile: Dockerfile }
setup: make
defaults: { timeout: 60s, max-output: 64KiB }
watch: ["src/**", "Makefile"]
criteria:
  - { id: builds, title: Builds, points: 0, run: make }
  - id: add
    title: "add: two arguments"
    points: 10
    needs: [builds]
    run: ./calc add 2 3
    stdin: ""
    expect: { exit-code: 0, stdout: "5", compare: exact }
  - id: unit
    title: Unit tests
    points: 20
    run: pytest --junitxml="$TRUN_OUT/junit.xml"
    score: { from: junit, file: junit.xml }
    hidden: true
"#;

fn err(text: &str) -> String {
    match Rubric::from_yaml(text, "rubric.yaml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn parses_the_issue_example() {
    let r = Rubric::from_yaml(FULL, "rubric.yaml").expect("valid rubric");
    assert_eq!(r.criteria.len(), 3);
    assert_eq!(
        r.container.as_ref().and_then(|c| c.dockerfile.as_deref()),
        Some("Dockerfile")
    );
    assert_eq!(r.defaults.timeout.0, Duration::from_secs(60));
    assert_eq!(r.defaults.max_output.0, 65536);
    let add = r.criterion("add").expect("add");
    assert_eq!(add.needs, vec!["builds"]);
    assert_eq!(
        add.expect.as_ref().and_then(|e| e.stdout.as_deref()),
        Some("5")
    );
    assert_eq!(add.span.id, Some(Pos { line: 8, col: 9 }));
    let unit = r.criterion("unit").expect("unit");
    assert!(unit.hidden);
    assert_eq!(unit.score.as_ref().map(|s| s.from), Some(ScoreFrom::Junit));
    assert_eq!(r.max_score(), 30.0);
}

#[test]
fn unknown_field_is_a_syntax_error() {
    let e = err("criteria:\n  - id: a\n    run: true\n    pionts: 3\n");
    assert!(e.starts_with("rubric.yaml:"), "{e}");
    assert!(e.contains("pionts"), "{e}");
}

#[test]
fn duplicate_id_points_at_the_second() {
    let e = err("criteria:\n  - id: a\n    run: 'true'\n  - id: a\n    run: 'true'\n");
    assert_eq!(
        e,
        "rubric.yaml:4:9: duplicate criterion id `a`; every criterion needs its own id"
    );
}

#[test]
fn unknown_need_suggests_a_name() {
    let e = err(
        "criteria:\n  - id: builds\n    run: make\n  - id: add\n    run: x\n    needs: [biulds]\n",
    );
    assert_eq!(
            e,
            "rubric.yaml:6:13: criterion `add` needs unknown criterion `biulds` (did you mean `builds`?)"
        );
}

#[test]
fn cycle_is_named() {
    let e = err(
            "criteria:\n  - {id: a, run: x, needs: [b]}\n  - {id: b, run: x, needs: [c]}\n  - {id: c, run: x, needs: [a]}\n",
        );
    assert!(
        e.ends_with("criteria depend on each other in a cycle: a -> b -> c -> a"),
        "{e}"
    );
}

#[test]
fn negative_points_rejected() {
    let e = err("criteria:\n  - id: a\n    points: -2\n    run: x\n");
    assert_eq!(
        e,
        "rubric.yaml:3:13: criterion `a` has -2 points; points must be a number >= 0"
    );
}

#[test]
fn bad_regex_and_bad_duration() {
    let e = err("criteria:\n  - id: a\n    run: x\n    expect: { stdout: '(', compare: regex }\n");
    assert!(e.contains("is not a valid regex"), "{e}");
    let e = err("defaults: { timeout: 5 parsecs }\ncriteria:\n  - {id: a, run: x}\n");
    assert!(e.contains("invalid duration `5 parsecs`"), "{e}");
    let e = err("criteria:\n  - id: a\n    run: x\n    score: { from: junit, file: ../x.xml }\n");
    assert!(
        e.contains("must be a relative path inside $TRUN_OUT"),
        "{e}"
    );
}

#[test]
fn container_limits_parse_and_are_checked() {
    let r = Rubric::from_yaml(
        "defaults: { memory: 1g, pids: 64, cpus: 0.5 }\ncriteria:\n  - {id: a, run: x}\n",
        "r",
    )
    .expect("valid");
    assert_eq!(r.defaults.memory, Some(ByteSize(1 << 30)));
    assert_eq!((r.defaults.pids, r.defaults.cpus), (Some(64), Some(0.5)));
    let e = err("defaults: { memory: 1MiB }\ncriteria:\n  - {id: a, run: x}\n");
    assert_eq!(
        e,
        "rubric.yaml: `defaults.memory` is 1MiB; Docker needs at least 6MiB"
    );
    let e = err("defaults: { pids: 0 }\ncriteria:\n  - {id: a, run: x}\n");
    assert_eq!(
        e,
        "rubric.yaml: `defaults.pids` is 0; allow at least 1 process"
    );
    let e = err("defaults: { cpus: 0 }\ncriteria:\n  - {id: a, run: x}\n");
    assert!(
        e.ends_with("`defaults.cpus` is 0; give a positive number like 1 or 0.5"),
        "{e}"
    );
}

#[test]
fn durations_and_sizes() {
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
    assert_eq!(parse_size("64KiB"), Ok(65536));
    assert_eq!(parse_size("1MiB"), Ok(1 << 20));
    assert_eq!(
        parse_size("10KB"),
        Ok(10 * 1024),
        "one size parser: binary units"
    );
    assert_eq!(DurationSpec(Duration::from_secs(120)).to_string(), "2m");
    assert_eq!(
        DurationSpec(Duration::from_millis(1500)).to_string(),
        "1500ms"
    );
    assert_eq!(ByteSize(65536).to_string(), "64KiB");
    assert_eq!(ByteSize(1000).to_string(), "1000B");
}

#[test]
fn run_order_puts_needs_first() {
    let r = Rubric::from_yaml(
        "criteria:\n  - {id: a, run: x, needs: [b]}\n  - {id: b, run: x}\n  - {id: c, run: x}\n",
        "r",
    )
    .expect("valid");
    assert_eq!(r.run_order(), vec![1, 0, 2]);
}

#[test]
fn schema_file_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/rubric.schema.json");
    let fresh = format!(
        "{}\n",
        serde_json::to_string_pretty(&rubric_schema()).expect("schema serialises")
    );
    if std::env::var_os("TRUN_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale; regenerate it with `TRUN_BLESS=1 cargo test --lib schema_file_is_up_to_date`",
        path.display()
    );
}
