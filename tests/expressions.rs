//! GitHub Actions expression conformance: every row of
//! `tests/fixtures/expressions.tsv` is evaluated by trun's expression engine
//! through its public API and compared with the result GitHub gives.
//!
//! A row is `expression<TAB>contexts<TAB>expected`: contexts is a JSON object
//! whose keys are the names the expression may start with (empty for none);
//! expected is a JSON value, or `!text` for an error whose message contains
//! `text`. The test prints the pass count and fails on any mismatch.

use serde_json::{Map, Value};
use trun::template::{Engine, StatusFlags};

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((ka, a), (kb, b))| ka == kb && same(a, b))
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
