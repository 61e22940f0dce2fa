//! GitHub Classroom's autograding actions: `autograding-command-grader`, `-io-grader`,
//! `-python-grader` (under `classroom-resources/` or `education/`) and
//! `autograding-grading-reporter`.
//!
//! A grader runs its `setup-command` and `command` where the step runs (through the
//! step's executor), with `input` on stdin and a `timeout` in minutes, judges the result
//! as trun's grading does ([`crate::grade::compare`]: the same normalisation and `exact`,
//! `contains`, `regex`), and sets the `result` output the real grader sets: base64 of
//! `{"version":1,"status","max_score","tests":[…]}`. The reporter reads each runner's
//! `<ID>_RESULTS` from its environment, prints the table and the total, and fails when
//! points were lost. The same steps read as a rubric are
//! [`crate::rubric::classroom::from_classroom_workflow`] (`trun grade --rubric`).

use super::{Ctx, Done, Probe};
use crate::event::Stream;
use crate::rubric::Compare;
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// A grader's default `timeout`, in minutes, as Classroom's.
const DEFAULT_TIMEOUT_MINUTES: f64 = 10.0;
/// The longest `timeout` a grader may ask for (minutes).
const MAX_TIMEOUT_MINUTES: f64 = 360.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grader {
    Command,
    Io,
    Python,
}

fn minutes(input: &(dyn Fn(&str) -> String + Sync)) -> Result<Duration, String> {
    let t = input("timeout");
    let m = if t.is_empty() {
        DEFAULT_TIMEOUT_MINUTES
    } else {
        t.parse::<f64>()
            .ok()
            .filter(|m| m.is_finite() && *m > 0.0 && *m <= MAX_TIMEOUT_MINUTES)
            .ok_or_else(|| {
                format!(
                    "`timeout: {t}` is not a number of minutes between 0 and {MAX_TIMEOUT_MINUTES}"
                )
            })?
    };
    Ok(Duration::from_secs_f64(m * 60.0))
}

fn score_of(input: &(dyn Fn(&str) -> String + Sync)) -> Result<f64, String> {
    let s = input("max-score");
    if s.is_empty() {
        return Ok(0.0);
    }
    s.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0 && *x <= 1e6)
        .ok_or_else(|| format!("`max-score: {s}` is not a number of points"))
}

/// The comparison of an io grader, named as Classroom names it.
pub fn comparison(method: &str) -> Result<Compare, String> {
    match method {
        "" | "included" | "contains" => Ok(Compare::Contains),
        "exact" => Ok(Compare::Exact),
        "regex" => Ok(Compare::Regex),
        other => Err(format!(
            "`comparison-method: {other}` is not one of exact, contains, regex"
        )),
    }
}

fn encode(v: &Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

pub(super) async fn grade(
    kind: Grader,
    input: &(dyn Fn(&str) -> String + Sync),
    ctx: &Ctx<'_>,
    probe: &mut dyn Probe,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<Done, String> {
    let _ = ctx;
    let timeout = minutes(input)?;
    let max = score_of(input)?;
    let name = match input("test-name") {
        n if n.is_empty() => match kind {
            Grader::Python => "python".to_string(),
            _ => "test".to_string(),
        },
        n => n,
    };
    let command = match kind {
        Grader::Python => "python3 -m pytest".to_string(),
        _ => input("command"),
    };
    if command.is_empty() {
        return Err("the grader needs `command`".into());
    }
    let compare = match kind {
        Grader::Io => Some(comparison(&input("comparison-method"))?),
        _ => None,
    };
    let started = std::time::Instant::now();
    let setup = input("setup-command");
    let mut message = String::new();
    let mut status = "pass";
    if !setup.is_empty() {
        out(Stream::Stdout, format!("setup: {setup}"));
        match probe.shell(&setup, None, timeout).await {
            Some(o) if o.success => {}
            Some(o) => {
                status = "error";
                message = format!("setup command failed: {}", o.stderr.trim());
            }
            None => {
                status = "error";
                message = "setup command could not be started".into();
            }
        }
    }
    if status == "pass" {
        out(Stream::Stdout, format!("run: {command}"));
        let stdin = input("input");
        let stdin = (!stdin.is_empty()).then(|| stdin.into_bytes());
        match probe.shell(&command, stdin, timeout).await {
            None => {
                status = "error";
                message = "the command could not be started".into();
            }
            Some(o) => {
                for l in o.stdout.lines().take(200) {
                    out(Stream::Stdout, l.to_string());
                }
                for l in o.stderr.lines().take(200) {
                    out(Stream::Stderr, l.to_string());
                }
                if let Some(c) = compare {
                    let expected = input("expected-output");
                    if !crate::grade::compare::matches(c, &expected, &o.stdout) {
                        status = "fail";
                        message = format!(
                            "output does not {} the expected output {expected:?}",
                            match c {
                                Compare::Exact => "equal",
                                Compare::Contains => "contain",
                                Compare::Regex => "match",
                            }
                        );
                    }
                } else if !o.success {
                    status = "fail";
                    message = format!("`{command}` failed");
                }
            }
        }
    }
    let score = if status == "pass" { max } else { 0.0 };
    out(
        Stream::Stdout,
        format!(
            "{} {name}: {status} ({}/{} points){}",
            if status == "pass" { "✓" } else { "✗" },
            crate::grade::report::fmt_points(score),
            crate::grade::report::fmt_points(max),
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        ),
    );
    let result = json!({
        "version": 1,
        "status": status,
        "max_score": max,
        "tests": [{
            "name": name,
            "status": status,
            "message": message,
            "test_code": command,
            "filename": "",
            "line_no": 0,
            "execution_time": format!("{:.2}s", started.elapsed().as_secs_f64()),
            "score": score,
        }],
    });
    let mut outputs = BTreeMap::new();
    outputs.insert("result".into(), encode(&result));
    Ok(Done {
        outputs,
        post: None,
    })
}

/// The reporter: every runner's result, a table, the total; a failure when points were lost.
pub(super) fn report(
    input: &(dyn Fn(&str) -> String + Sync),
    ctx: &Ctx<'_>,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<Done, String> {
    let runners: Vec<String> = input("runners")
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    if runners.is_empty() {
        return Err("`runners` names no grader step".into());
    }
    let (mut total, mut max_total) = (0.0, 0.0);
    for r in &runners {
        let var = format!("{}_RESULTS", r.to_uppercase());
        let Some((_, raw)) = ctx.step_env.iter().find(|(k, _)| *k == var) else {
            return Err(format!("runner `{r}`: no `{var}` in the step's env (set it to `${{{{ steps.{r}.outputs.result }}}}`)"));
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .ok_or_else(|| {
                format!("runner `{r}`: `{var}` is not a grader's result (base64 JSON)")
            })?;
        max_total += decoded["max_score"].as_f64().unwrap_or(0.0);
        for t in decoded["tests"].as_array().into_iter().flatten() {
            let score = t["score"].as_f64().unwrap_or(0.0);
            total += score;
            out(
                Stream::Stdout,
                format!(
                    "{} {}  {}  {}",
                    if t["status"] == "pass" { "✓" } else { "✗" },
                    t["name"].as_str().unwrap_or(r),
                    crate::grade::report::fmt_points(score),
                    t["message"].as_str().unwrap_or("")
                ),
            );
        }
    }
    out(
        Stream::Stdout,
        format!(
            "Total points: {}/{}",
            crate::grade::report::fmt_points(total),
            crate::grade::report::fmt_points(max_total)
        ),
    );
    if total < max_total {
        return Err(format!(
            "{} of {} points",
            crate::grade::report::fmt_points(total),
            crate::grade::report::fmt_points(max_total)
        ));
    }
    Ok(Done {
        outputs: BTreeMap::new(),
        post: None,
    })
}
