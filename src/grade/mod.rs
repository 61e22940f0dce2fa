//! Grading student repositories against a rubric.
//!
//! A rubric (YAML, Markdown, or GitHub Classroom's `autograding.json`) is parsed into one
//! typed [`Rubric`]; a [`CriterionRunner`] runs each criterion in a scratch copy of a
//! repository; [`score`] turns what happened into statuses and points; [`report`] renders
//! the result for people and for other tools (JSON, Markdown, JUnit, Gradescope, a CSV
//! gradebook); [`batch`] grades many repositories at once and [`cache`] lets an unchanged
//! repository keep its earlier result.
//!
//! This module is a library: it does not parse command-line arguments or print (the
//! progress bar of a batch is the one exception, and it is hidden when stderr is not a
//! terminal). Container execution plugs in as another [`CriterionRunner`]:
//! [`DockerRunner`]. [`cli`] holds the `trun grade` and `trun rubric import` commands.
//!
//! ```no_run
//! use trun::grade::{self, LocalRunner};
//! let rubric = grade::load_rubric("rubric.yaml".as_ref()).unwrap();
//! let result = grade::grade_repo(&rubric, "students/alice".as_ref(), &LocalRunner::new());
//! print!("{}", grade::report::table(&result, false));
//! ```

pub mod batch;
pub mod cache;
pub mod classroom;
pub mod cli;
pub mod compare;
pub mod docker_runner;
pub mod markdown;
pub mod record;
pub mod report;
pub mod rubric;
pub mod runner;
pub mod score;

use std::path::Path;

pub use batch::{grade_batch, Batch, BatchOptions};
pub use cache::{fingerprint, CacheError, GradeCache};
pub use docker_runner::{DockerRunner, Limits};
pub use rubric::{rubric_schema, Criterion, Rubric, RubricError};
pub use runner::{CommandSpec, CriterionRunner, Execution, LocalRunner, Sandbox};
pub use score::{grade_repo, CriterionResult, CriterionStatus, RepoResult};

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
