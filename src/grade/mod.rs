//! Grading student repositories against a rubric: a compiler and a scorer, not a runner.
//!
//! [`compile`] turns a [`Rubric`] and a list of repositories into a [`crate::plan::Plan`]
//! (one job per repository, one generated step per criterion) that the one engine runs
//! with the same `-j`, timeouts, Ctrl-C, progress view, history and logs as any workflow.
//! The engine runs each command in the repository's sandbox (a scratch copy, or an
//! isolated container) and hands what it observed to [`score`], a pure function that
//! decides statuses and points. [`report`] renders results for people and for the tools
//! graders already use (JSON, Markdown, JUnit, Gradescope, a CSV gradebook), and [`cache`]
//! lets an unchanged repository keep its earlier result.
//!
//! Nothing here spawns a process, talks to Docker or prints: running belongs to `exec`,
//! the command line to `trun grade` (`src/cli/grade.rs`). Rubric formats live in
//! [`crate::rubric`].

pub mod cache;
pub mod compare;
pub mod compile;
pub mod report;
pub mod score;

pub use crate::rubric::{load_rubric, parse_rubric, Criterion, Rubric, RubricError, RubricFormat};
pub use cache::{fingerprint, CacheError, GradeCache};
pub use compile::{compile, Isolation, Limits, Submission};
pub use score::{Captured, CriterionResult, CriterionStatus, Observed, RepoResult};
