//! GitHub Actions expression conformance: every row of
//! `tests/fixtures/expressions.tsv` is evaluated by trun's expression engine
//! through its public API and compared with the result GitHub gives.
//!
//! A row is `expression<TAB>contexts<TAB>expected`: contexts is a JSON object
//! whose keys are the names the expression may start with (empty for none);
//! expected is a JSON value, or `!text` for an error whose message contains
//! `text`. The test prints the pass count and fails on any mismatch.
//!
//! The expression bombs of the hostile-input review (5000 nested parentheses,
//! a 350-byte nested `format()` that grew to 5 GB) are run through the binary.

mod common;

use common::Test;
use serde_json::{Map, Value};
use std::time::{Duration, Instant};
use trun::template::{Engine, StatusFlags};

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        }
        _ => a == b,
    }
}

#[test]
fn expressions_evaluate_as_on_github() {
    let table = include_str!("fixtures/expressions.tsv");
    let workspace = tempfile::tempdir().unwrap();
    let engine = Engine::new(workspace.path().to_path_buf());
    let (mut passed, mut failures) = (0, Vec::new());
    for (n, line) in table.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.splitn(3, '\t');
        let (expr, contexts, expected) = match (cols.next(), cols.next(), cols.next()) {
            (Some(e), Some(c), Some(x)) => (e, c, x),
            _ => panic!("line {}: expected three tab-separated columns", n + 1),
        };
        let contexts: Map<String, Value> = if contexts.is_empty() {
            Map::new()
        } else {
            serde_json::from_str(contexts)
                .unwrap_or_else(|e| panic!("line {}: bad contexts: {e}", n + 1))
        };
        let got = engine.eval_in(expr, &contexts, StatusFlags::default());
        let ok = match (expected.strip_prefix('!'), &got) {
            (Some(text), Err(e)) => e.message.contains(text),
            (None, Ok(value)) => {
                let want: Value = serde_json::from_str(expected)
                    .unwrap_or_else(|e| panic!("line {}: bad expected value: {e}", n + 1));
                same(value, &want)
            }
            _ => false,
        };
        if ok {
            passed += 1;
        } else {
            let shown: String = expr.chars().take(120).collect();
            let got = match got {
                Ok(v) => v.to_string(),
                Err(e) => format!("error: {}", e.message),
            };
            failures.push(format!(
                "line {}: {shown}\n    expected {expected}\n    got      {got}",
                n + 1
            ));
        }
    }
    let total = passed + failures.len();
    println!("expression conformance: {passed}/{total} passed");
    assert!(total >= 400, "the table has only {total} rows");
    assert!(
        failures.is_empty(),
        "{} of {total} expressions differ from GitHub:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The largest resident set of any child this test process has waited for, in
/// bytes (Linux reports kilobytes).
fn max_child_rss() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes into the struct we pass.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: initialised by the successful call above.
    let kb = unsafe { usage.assume_init() }.ru_maxrss;
    u64::try_from(kb).unwrap_or(0) * 1024
}

/// The ~350-byte expression that expanded to gigabytes: each level repeats the
/// one inside it ten times.
fn format_bomb() -> String {
    let mut e = format!("'{}'", "x".repeat(16));
    for _ in 0..9 {
        e = format!("format('{}', {e})", "{0}".repeat(10));
    }
    e
}

#[test]
fn expression_bombs_are_refused_by_validate_quickly_and_in_bounded_memory() {
    let parens = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    let bomb = format_bomb();
    assert!(bomb.len() < 450, "the bomb is {} bytes", bomb.len());
    let t = Test::new().workflow(&format!(
        "jobs:\n  build:\n    steps:\n      - run: touch ran; echo ${{{{ {parens} }}}}\n      - run: touch ran; echo ${{{{ {bomb} }}}}\n"
    ));
    let started = Instant::now();
    let out = t.run(&["validate"]);
    let elapsed = started.elapsed();
    out.status(2)
        .stderr_has("trun.yaml:4:")
        .stderr_has("error: expression nests more than 50 levels deep (the limit is 50)")
        .stderr_has("trun.yaml:5:")
        .stderr_has("the limit is 1048576 bytes (1 MiB)");
    assert!(!t.exists("ran"));
    assert!(
        elapsed < Duration::from_secs(2),
        "validate took {elapsed:?}"
    );
    let rss = max_child_rss();
    assert!(rss < 200 << 20, "trun used {} MiB", rss >> 20);
}

#[test]
fn github_semantics_through_the_binary() {
    // `&&` returns the deciding operand, a missing property is null, filters,
    // `Array` in text, an env variable set at run time by `$GITHUB_ENV`.
    let t = Test::new().workflow(
        r#"
jobs:
  a:
    outputs: { v: "${{ steps.s.outputs.v }}" }
    steps:
      - id: s
        run: echo "v=1" >> "$GITHUB_OUTPUT"
  b:
    needs: [a]
    steps:
      - id: g
        run: echo "LATER=set" >> "$GITHUB_ENV"
      - run: |
          printf '%s|' "${{ '' && 'x' }}" "${{ 0 && true }}" "${{ steps.g.outputs.missing || 'null' }}" > out.txt
          printf '%s|' "${{ contains(needs.*.result, 'failure') }}" "${{ needs.*.result }}" "${{ env.LATER }}" >> out.txt
          printf '%s|' "${{ format('{0}', 1e21) }}" "${{ fromJSON('{}') && 'truthy' }}" >> out.txt
"#,
    );
    t.run(&["validate"]).success();
    t.run(&[]).success();
    assert_eq!(t.read("out.txt"), "|0|null|false|Array|set|1E+21|truthy|");
}
