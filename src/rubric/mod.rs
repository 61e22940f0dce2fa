//! Rubrics: what a grader checks in a student repository and how many points each check
//! is worth, read from YAML, Markdown or GitHub Classroom's `autograding.json` into one
//! typed [`Rubric`].
//!
//! This module only parses and validates. It sits below the planner (a `rubric/grade`
//! step and `trun grade` both expand a rubric into planned steps), so it must not depend
//! on `plan`, `exec` or `grade`: compiling a rubric into a plan is `grade::compile`, running
//! it is the engine's, and judging results is `grade::score`.

pub mod classroom;
pub mod markdown;
pub mod model;
#[cfg(test)]
mod tests;
pub mod units;
pub mod validate;
pub mod yaml;

use std::path::Path;

pub use model::{
    rubric_schema, Compare, Container, Criterion, CriterionSpan, Defaults, Expect, Pos, Rubric,
    ScoreFrom, ScoreSource, Shell,
};
pub use units::{parse_duration, parse_size, ByteSize, DurationSpec};
pub use validate::{Invalid, RubricError};

/// The longest time limit a rubric may give one command: a day. Longer is a typo, and
/// an unbounded limit would let one repository hold a batch forever.
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The kinds of rubric file trun reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RubricFormat {
    Yaml,
    Markdown,
    /// GitHub Classroom's `.github/classroom/autograding.json`.
    Classroom,
}

impl RubricFormat {
    /// Chosen by extension: `.md`/`.markdown` is Markdown, `.json` is autograding.json,
    /// anything else YAML.
    pub fn of(path: &Path) -> RubricFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("md" | "markdown") => RubricFormat::Markdown,
            Some("json") => RubricFormat::Classroom,
            _ => RubricFormat::Yaml,
        }
    }
}

/// Parses rubric text of a known format; `origin` names it in error messages.
pub fn parse_rubric(text: &str, format: RubricFormat, origin: &str) -> Result<Rubric, RubricError> {
    match format {
        // A GitHub Actions workflow (`jobs:`) grades with Classroom's grader steps.
        RubricFormat::Yaml if classroom::is_workflow(text) => {
            classroom::from_classroom_workflow(text, origin)
        }
        RubricFormat::Yaml => Rubric::from_yaml(text, origin),
        RubricFormat::Markdown => markdown::from_markdown(text, origin),
        RubricFormat::Classroom => classroom::from_autograding_json(text, origin),
    }
}

/// Reads and validates a rubric file of any supported format.
pub fn load_rubric(path: &Path) -> Result<Rubric, RubricError> {
    let text = std::fs::read_to_string(path).map_err(|source| RubricError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_rubric(&text, RubricFormat::of(path), &path.display().to_string())
}
