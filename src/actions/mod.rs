//! The registry of built-in actions (`uses:`): which names exist and how their
//! `with` is validated at plan time. Running one is the engine's
//! (`exec::actions`); the actions themselves live with what they drive
//! ([`crate::docker::actions`]). This module sits below the planner and the
//! validator, so it must not depend on the engine.
//!
//! The GitHub actions trun does itself (`actions/checkout@v4`, `actions/setup-python@v5`,
//! `dtolnay/rust-toolchain@stable`, …) are in [`github`].

pub mod github;

use crate::docker::actions as builtin;
use serde_json::{Map, Value};

pub use builtin::WithError;

/// The action that expands a rubric into one generated step per criterion.
pub const GRADE: &str = "rubric/grade";

/// Every built-in, for help texts and did-you-mean.
pub const KNOWN: &[&str] = &[
    "files/exist",
    "docker/build",
    "docker/pull",
    "docker/run",
    "docker/exec",
    GRADE,
];

pub fn is_builtin(uses: &str) -> bool {
    uses == GRADE || builtin::is_builtin(uses) || github::builtin(uses).is_some()
}

pub fn known() -> &'static [&'static str] {
    KNOWN
}

pub fn needs_docker(uses: &str) -> bool {
    builtin::needs_docker(uses)
}

pub fn validate(uses: &str, with: &Map<String, Value>) -> Result<(), WithError> {
    if github::builtin(uses).is_some() {
        return github::validate(uses, with);
    }
    if uses != GRADE {
        return builtin::validate(uses, with);
    }
    const KEYS: [&str; 3] = ["rubric", "repo", "local"];
    for key in with.keys() {
        if !KEYS.contains(&key.as_str()) {
            let hint = crate::diag::did_you_mean_suffix(key, KEYS);
            return Err(WithError {
                key: Some(key.clone()),
                message: format!(
                    "unknown key `{key}`{hint}; `{GRADE}` takes `rubric`, `repo` and `local`"
                ),
            });
        }
    }
    if let Some(v) = with.get("local") {
        if !v.is_boolean() {
            return Err(WithError {
                key: Some("local".into()),
                message: "`local` is true or false".into(),
            });
        }
    }
    match with.get("rubric") {
        None => Err(WithError {
            key: None,
            message: "missing required key `rubric` (the rubric file)".into(),
        }),
        // The rubric is read at plan time to generate the steps, so it
        // cannot depend on anything computed during the run.
        Some(Value::String(s)) if !s.contains("${{") => Ok(()),
        Some(_) => Err(WithError {
            key: Some("rubric".into()),
            message: "`rubric` must be a literal path (it is read when the plan is made)".into(),
        }),
    }
}
