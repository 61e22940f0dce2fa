//! GitHub Classroom's `.github/classroom/autograding.json`, read as a rubric, and the
//! rubric written back as YAML for `trun rubric import`.
//!
//! Each entry of `tests[]` becomes one criterion: `name` the title (and, slugged, the id),
//! `run` the command, `setup` the criterion's own setup, `input` its stdin, `output` with
//! `comparison` (`exact`, `included` -> contains, `regex`) its expected stdout, `timeout`
//! in MINUTES, `points` (absent or null: 0). A test with empty `input` and `output` is
//! judged on its exit code alone. Fields this format has and trun does not use are ignored,
//! because Classroom adds fields over time. This module does not run anything.

use serde::Deserialize;

use super::markdown::slug;
use super::{Compare, Criterion, DurationSpec, Expect, Pos, Rubric, RubricError};

#[derive(Debug, Deserialize)]
struct Autograding {
    tests: Vec<ClassroomTest>,
}

#[derive(Debug, Deserialize)]
struct ClassroomTest {
    name: String,
    #[serde(default)]
    setup: Option<String>,
    run: String,
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    comparison: Option<String>,
    /// Minutes.
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    points: Option<f64>,
}

/// Parses and validates `autograding.json`; `origin` names it in messages.
pub fn from_autograding_json(text: &str, origin: &str) -> Result<Rubric, RubricError> {
    let doc: Autograding = serde_json::from_str(text).map_err(|e| RubricError::Syntax {
        origin: origin.to_string(),
        pos: Some(Pos {
            line: e.line() as u64,
            col: e.column() as u64,
        }),
        message: e.to_string(),
    })?;
    let mut criteria: Vec<Criterion> = Vec::new();
    for (i, t) in doc.tests.into_iter().enumerate() {
        let mut id = slug(&t.name);
        // Classroom names need not be unique; ids must be.
        let base = id.clone();
        let mut n = 2;
        while criteria.iter().any(|c| c.id == id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        let mut c = Criterion::new(id, t.points.unwrap_or(0.0), t.run);
        c.title = Some(t.name);
        c.setup = t.setup.filter(|s| !s.trim().is_empty());
        let input = t.input.unwrap_or_default();
        let output = t.output.unwrap_or_default();
        if !input.is_empty() {
            c.stdin = Some(input);
        }
        if !output.is_empty() {
            let compare = match t.comparison.as_deref().unwrap_or("included") {
                "exact" => Compare::Exact,
                "included" | "contains" => Compare::Contains,
                "regex" => Compare::Regex,
                other => {
                    return Err(RubricError::Syntax {
                        origin: origin.to_string(),
                        pos: None,
                        message: format!(
                            "tests[{i}] has comparison `{other}`; expected exact, included or regex"
                        ),
                    })
                }
            };
            c.expect = Some(Expect {
                exit_code: None,
                stdout: Some(output),
                stderr: None,
                compare,
            });
        }
        if let Some(minutes) = t.timeout.filter(|m| *m > 0.0) {
            let limit = super::MAX_TIMEOUT.as_secs_f64() / 60.0;
            if !minutes.is_finite() || minutes > limit {
                return Err(RubricError::Syntax {
                    origin: origin.to_string(),
                    pos: None,
                    message: format!(
                        "tests[{i}] has a timeout of {} minutes, over the limit of {limit} minutes",
                        if minutes.abs() < 1e9 {
                            minutes.to_string()
                        } else {
                            format!("{minutes:e}")
                        }
                    ),
                });
            }
            c.timeout = Some(DurationSpec(std::time::Duration::from_secs_f64(
                minutes * 60.0,
            )));
        }
        criteria.push(c);
    }
    let rubric = Rubric {
        version: 1,
        container: None,
        setup: None,
        defaults: Default::default(),
        watch: None,
        criteria,
    };
    rubric.validate(origin)?;
    Ok(rubric)
}

/// Whether YAML text is a GitHub Actions workflow (a top-level `jobs:`) rather than a rubric.
pub fn is_workflow(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("jobs:"))
}

/// A Classroom workflow (`.github/workflows/classroom.yml`) read as a rubric: each step
/// that uses `autograding-command-grader`, `-io-grader` or `-python-grader` (of
/// `classroom-resources/` or `education/`) becomes one criterion, as the entries of
/// `autograding.json` do; other steps (checkout, the reporter) are not graded.
pub fn from_classroom_workflow(text: &str, origin: &str) -> Result<Rubric, RubricError> {
    let syntax = |message: String| RubricError::Syntax {
        origin: origin.to_string(),
        pos: None,
        message,
    };
    let doc: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| syntax(e.to_string()))?;
    let mut tests = Vec::new();
    for (_, job) in doc["jobs"].as_object().into_iter().flatten() {
        for step in job["steps"].as_array().into_iter().flatten() {
            let uses = step["uses"].as_str().unwrap_or("");
            let repo = uses.split('@').next().unwrap_or("").to_ascii_lowercase();
            let kind = ["classroom-resources/", "education/"]
                .iter()
                .find_map(|o| repo.strip_prefix(o))
                .unwrap_or("");
            if !matches!(
                kind,
                "autograding-command-grader"
                    | "autograding-io-grader"
                    | "autograding-python-grader"
            ) {
                continue;
            }
            let with = &step["with"];
            let text_of = |k: &str| match &with[k] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                v => Some(v.to_string()),
            };
            let num = |k: &str| text_of(k).and_then(|s| s.trim().parse::<f64>().ok());
            let name = text_of("test-name")
                .or_else(|| step["name"].as_str().map(str::to_string))
                .or_else(|| step["id"].as_str().map(str::to_string))
                .unwrap_or_else(|| kind.to_string());
            let run = match kind {
                "autograding-python-grader" => "python3 -m pytest".to_string(),
                _ => text_of("command").unwrap_or_default(),
            };
            if run.contains("${{") {
                return Err(syntax(format!(
                    "the command of grader `{name}` uses an expression; a rubric needs literal commands"
                )));
            }
            tests.push(serde_json::json!({
                "name": name,
                "setup": text_of("setup-command"),
                "run": run,
                "input": text_of("input"),
                "output": text_of("expected-output"),
                "comparison": text_of("comparison-method"),
                "timeout": num("timeout"),
                "points": num("max-score"),
            }));
        }
    }
    if tests.is_empty() {
        return Err(syntax(
            "the workflow has no Classroom grader steps (autograding-command-grader, -io-grader, -python-grader)".into(),
        ));
    }
    from_autograding_json(&serde_json::json!({ "tests": tests }).to_string(), origin)
}

/// The rubric as `rubric.yaml` text, which parses back to the same rubric.
pub fn to_yaml(rubric: &Rubric) -> String {
    let body = serde_saphyr::to_string(rubric).unwrap_or_default();
    format!("# trun rubric; see schema/rubric.schema.json\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"tests":[
      {"name":"Builds","setup":"","run":"make","input":"","output":"","comparison":"included","timeout":1,"points":null},
      {"name":"add 2 3","setup":"","run":"./calc add 2 3","input":"","output":"5","comparison":"exact","timeout":0.5,"points":10},
      {"name":"add 2 3","run":"./calc sum","input":"1\n2\n","output":"^3$","comparison":"regex","timeout":10,"points":5}
    ]}"#;

    #[test]
    fn maps_tests_to_criteria() {
        let r = from_autograding_json(JSON, "autograding.json").expect("valid");
        let ids: Vec<&str> = r.criteria.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["builds", "add-2-3", "add-2-3-2"]);
        assert!(r.criteria[0].expect.is_none());
        assert_eq!(r.criteria[0].timeout.map(|t| t.0.as_secs()), Some(60));
        assert_eq!(r.criteria[1].timeout.map(|t| t.0.as_secs()), Some(30));
        assert_eq!(
            r.criteria[1].expect.as_ref().map(|e| e.compare),
            Some(Compare::Exact)
        );
        assert_eq!(r.criteria[2].stdin.as_deref(), Some("1\n2\n"));
        assert_eq!(r.max_score(), 15.0);
    }

    #[test]
    fn yaml_round_trips() {
        let r = from_autograding_json(JSON, "autograding.json").expect("valid");
        let yaml = to_yaml(&r);
        let back = Rubric::from_yaml(&yaml, "imported.yaml").expect("imported YAML is valid");
        assert_eq!(back.canonical(), r.canonical(), "{yaml}");
    }

    #[test]
    fn bad_json_and_comparison_are_reported() {
        let e = from_autograding_json("{\"tests\": [", "a.json")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.starts_with("a.json:1:")),
            "{e:?}"
        );
        let e = from_autograding_json(
            r#"{"tests":[{"name":"x","run":"y","output":"z","comparison":"fuzzy"}]}"#,
            "a.json",
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("a.json: tests[0] has comparison `fuzzy`; expected exact, included or regex")
        );
    }
}
