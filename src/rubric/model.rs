//! The rubric: what a grader checks in a student repository, and how many points each
//! check is worth.
//!
//! This file holds the typed model that every rubric source (YAML, Markdown, GitHub
//! Classroom's `autograding.json`) ends up as, and the questions asked of it (points, time
//! limits, the order criteria run in). Parsing is in `yaml.rs` (and the other formats'
//! files), checking in `validate.rs`, the duration and size units in `units.rs`. It does
//! not run commands or compute scores: see `exec::sandbox` and `grade::score`.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};

pub use super::units::{ByteSize, DurationSpec};
pub use super::validate::RubricError;

/// A whole rubric, as written in `rubric.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(
    title = "trun rubric",
    description = "A grading rubric for `trun grade`."
)]
pub struct Rubric {
    /// Format version; only `1` exists.
    #[serde(default = "default_version")]
    pub version: u32,
    /// Run the criteria in a container built from a Dockerfile or pulled as an image.
    /// Omit to run them locally in a scratch copy of the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// A command run once per repository before the criteria (e.g. `make`). When it fails,
    /// every criterion is marked `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
    /// Limits that apply to every criterion unless it sets its own.
    #[serde(default, skip_serializing_if = "Defaults::is_default")]
    pub defaults: Defaults,
    /// Globs (relative to the repository) whose contents decide whether a repository must be
    /// graded again. Absent: every file of the repository (respecting `.gitignore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<Vec<String>>,
    /// The checks, in report order.
    pub criteria: Vec<Criterion>,
}

fn default_version() -> u32 {
    1
}

/// Where the criteria run when not locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Container {
    /// An image tag to run, e.g. `python:3.12-slim`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A Dockerfile (relative to the rubric's directory) to build the image from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// Build context for `dockerfile` (default: the Dockerfile's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// The shell a criterion's `run` is given to, as `SHELL -c SCRIPT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Shell {
    #[default]
    Sh,
    Bash,
}

impl Shell {
    pub fn program(self) -> &'static str {
        match self {
            Shell::Sh => "sh",
            Shell::Bash => "bash",
        }
    }
}

/// Rubric-wide defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Defaults {
    /// Per-command time limit (`60s`, `2m`, `1h`); the whole process group is killed after it.
    #[serde(default = "default_timeout")]
    pub timeout: DurationSpec,
    /// Output kept per stream (`64KiB`, `1MiB`); the rest is read and dropped.
    #[serde(default = "default_max_output")]
    pub max_output: ByteSize,
    /// `sh` (default) or `bash`.
    #[serde(default)]
    pub shell: Shell,
    /// Memory limit of the container a repository is graded in, its scratch copy included
    /// (`512MiB`, `1g`). Only with `container`; default 512MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Most processes and threads at once in the container. Only with `container`;
    /// default 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub pids: Option<u32>,
    /// CPUs the container may use (`1`, `0.5`). Only with `container`; default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

fn default_timeout() -> DurationSpec {
    DurationSpec(Duration::from_secs(60))
}

/// The smallest memory limit Docker accepts.
pub(crate) const MIN_MEMORY: u64 = 6 * 1024 * 1024;

fn default_max_output() -> ByteSize {
    ByteSize(64 * 1024)
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timeout: default_timeout(),
            max_output: default_max_output(),
            shell: Shell::Sh,
            memory: None,
            pids: None,
            cpus: None,
        }
    }
}

impl Defaults {
    fn is_default(&self) -> bool {
        *self == Defaults::default()
    }
}

/// One check of the rubric.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Criterion {
    /// Unique id: letters, digits, `-`, `_`, `.`; used in `needs`, step ids and the gradebook.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"))]
    pub id: String,
    /// What a student reads in the report (default: the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Points for passing; partial credit scales it.
    #[serde(default, serialize_with = "serialize_points")]
    #[schemars(range(min = 0))]
    pub points: f64,
    /// Shell script to run in the repository's scratch copy.
    pub run: String,
    /// A command run just before `run` for this criterion only (GitHub Classroom's per-test
    /// `setup`); when it fails the criterion is `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
    /// Criteria that must pass first; when one did not, this one is `skipped` with 0 points.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// Written to the command's standard input, which is then closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// What the command must do to pass. Absent: exit code 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// Partial credit read from a file the command writes under `$TRUN_OUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<ScoreSource>,
    /// Hidden from students until after the due date (Gradescope `after_due_date`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub hidden: bool,
    /// Overrides `defaults.timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// Overrides `defaults.max-output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output: Option<ByteSize>,
    /// Where the criterion was written, for error messages. Not part of the format.
    #[serde(skip)]
    #[schemars(skip)]
    pub span: CriterionSpan,
}

/// Whole points as integers (`10`, not `10.0`) in written rubrics and the canonical form.
fn serialize_points<S: Serializer>(points: &f64, s: S) -> Result<S::Ok, S::Error> {
    if points.fract() == 0.0 && points.abs() < 1e15 {
        s.serialize_i64(*points as i64)
    } else {
        s.serialize_f64(*points)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Criterion {
    /// A criterion that passes on exit code 0, with every optional field empty.
    pub fn new(id: impl Into<String>, points: f64, run: impl Into<String>) -> Criterion {
        Criterion {
            id: id.into(),
            title: None,
            points,
            run: run.into(),
            setup: None,
            needs: Vec::new(),
            stdin: None,
            expect: None,
            score: None,
            hidden: false,
            timeout: None,
            max_output: None,
            span: CriterionSpan::default(),
        }
    }

    /// The title, or the id when there is none.
    pub fn display_title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.id)
    }
}

/// Expected behaviour of a criterion's command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Expect {
    /// Required exit code (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Expected standard output, compared after normalising CRLF and trimming both sides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// Expected standard error, compared the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// How `stdout`/`stderr` are compared.
    #[serde(default, skip_serializing_if = "Compare::is_exact")]
    pub compare: Compare,
}

/// Output comparison mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// Equal after normalisation.
    #[default]
    Exact,
    /// The expected text occurs somewhere in the output.
    Contains,
    /// The expected text is a regular expression found somewhere in the output (unanchored).
    Regex,
}

impl Compare {
    fn is_exact(&self) -> bool {
        *self == Compare::Exact
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compare::Exact => "exact",
            Compare::Contains => "contains",
            Compare::Regex => "regex",
        }
    }
}

/// Where partial credit comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScoreSource {
    pub from: ScoreFrom,
    /// File under `$TRUN_OUT` (default `junit.xml` for junit, `score` for fraction, which is
    /// also `$TRUN_SCORE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScoreFrom {
    /// JUnit XML: passed test cases / all test cases (skipped ones not counted) × points.
    Junit,
    /// A number from 0 to 1 × points.
    Fraction,
}

impl ScoreSource {
    /// The file name under `$TRUN_OUT` that holds the score.
    pub fn file_name(&self) -> &str {
        match (&self.file, self.from) {
            (Some(f), _) => f,
            (None, ScoreFrom::Junit) => "junit.xml",
            (None, ScoreFrom::Fraction) => "score",
        }
    }
}

/// Line and column (1-based) in the rubric source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub col: u64,
}

/// Positions of a criterion's parts, when the source had them.
#[derive(Debug, Clone, Default)]
pub struct CriterionSpan {
    pub id: Option<Pos>,
    pub points: Option<Pos>,
    /// One entry per `needs` item.
    pub needs: Vec<Option<Pos>>,
}

/// The JSON Schema of `rubric.yaml`, as committed in `schema/rubric.schema.json`.
pub fn rubric_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Rubric)).unwrap_or(serde_json::Value::Null)
}

impl Rubric {
    /// The form hashed into a grading fingerprint: every field that changes what runs or
    /// how it is scored, in a fixed order.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Sum of the points of all criteria.
    pub fn max_score(&self) -> f64 {
        self.criteria.iter().map(|c| c.points).sum()
    }

    pub fn criterion(&self, id: &str) -> Option<&Criterion> {
        self.criteria.iter().find(|c| c.id == id)
    }

    /// The time limit a criterion runs under.
    pub fn timeout_of(&self, c: &Criterion) -> Duration {
        c.timeout.unwrap_or(self.defaults.timeout).0
    }

    /// The output cap a criterion runs under.
    pub fn max_output_of(&self, c: &Criterion) -> u64 {
        c.max_output.unwrap_or(self.defaults.max_output).0
    }

    /// Criterion indices in an order where every criterion comes after its needs, keeping
    /// the written order otherwise. Assumes a validated (acyclic) rubric.
    pub fn run_order(&self) -> Vec<usize> {
        let index: BTreeMap<&str, usize> = self
            .criteria
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.as_str(), i))
            .collect();
        let mut placed = vec![false; self.criteria.len()];
        let mut order = Vec::with_capacity(self.criteria.len());
        while order.len() < self.criteria.len() {
            // The first criterion in written order whose needs are all placed.
            let ready = self.criteria.iter().enumerate().position(|(i, c)| {
                !placed[i]
                    && c.needs
                        .iter()
                        .all(|n| index.get(n.as_str()).is_none_or(|&j| placed[j]))
            });
            match ready {
                Some(i) => {
                    placed[i] = true;
                    order.push(i);
                }
                None => {
                    // A cycle slipped past validation: run the rest in written order rather
                    // than loop forever.
                    order.extend((0..self.criteria.len()).filter(|&i| !placed[i]));
                    break;
                }
            }
        }
        order
    }
}
