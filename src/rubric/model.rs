//! The rubric: what a grader checks in a student repository, and how many points each
//! check is worth.
//!
//! This module holds the typed model that every rubric source (YAML, Markdown, GitHub
//! Classroom's `autograding.json`) ends up as, the YAML parser, and the validation that runs
//! before anything is executed (duplicate ids, unknown `needs`, cycles, negative points,
//! bad regexes). It does not run commands or compute scores: see `runner` and `score`.
//!
//! Validation errors point at `rubric.yaml:LINE:COL` where the source has positions: the
//! YAML parser reads the file a second time into a lenient skeleton of [`serde_saphyr::Spanned`]
//! values, because the model itself must stay plain (it is also built from JSON and
//! Markdown, serialised back to YAML, and described by the JSON Schema).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Component, Path};
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
const MIN_MEMORY: u64 = 6 * 1024 * 1024;

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

/// A time limit written as `500ms`, `60s`, `2m`, `1h`, `1m30s`, or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSpec(pub Duration);

/// A size written as `64KiB`, `1MiB`, `1GiB`, `10KB`, `512B`, or a bare number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// Parses `60s`, `2m`, `1h`, `500ms`, `1m30s`, or a bare number of seconds: the same
/// durations as in workflow files.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse(text)
}

/// Parses `64KiB`, `1MiB`, `10KB`, `512B`, or a bare number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let digits = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (write e.g. 64KiB, 1MiB)"))?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" | "K" | "k" => 1024.0,
        "MiB" | "M" | "m" => 1024.0 * 1024.0,
        "GiB" | "G" | "g" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => {
            return Err(format!(
                "`{s}` is not a size (units: B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    Ok((n * scale) as u64)
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            write!(f, "0s")
        } else if ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (scale, unit) in UNITS {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// Accepts a string with a unit or a bare number, so `timeout: 60` and `timeout: 60s` both work.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrText::deserialize(d)? {
            NumberOrText::Number(n) => Ok(DurationSpec(Duration::from_secs(n))),
            NumberOrText::Text(t) => parse_duration(&t)
                .map(DurationSpec)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: `500ms`, `60s`, `2m`, `1h`, `1m30s`, or a number of seconds.",
            "oneOf": [
                { "type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]+)?\s*(ms|s|sec|secs|m|min|mins|h|hr|hrs|d))+\s*$" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrText::deserialize(d)? {
            NumberOrText::Number(n) => Ok(ByteSize(n)),
            NumberOrText::Text(t) => parse_size(&t)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: `64KiB`, `1MiB`, `1GiB`, `10KB`, `512B`, or a number of bytes.",
            "oneOf": [
                { "type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*(B|K|k|KiB|M|m|MiB|G|g|GiB|KB|kB|MB|GB)?\s*$" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

/// The JSON Schema of `rubric.yaml`, as committed in `schema/rubric.schema.json`.
pub fn rubric_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Rubric)).unwrap_or(serde_json::Value::Null)
}

/// A rubric that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum RubricError {
    #[error("cannot read rubric {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The text is not of the format (bad YAML/JSON, an unknown field, a wrong type).
    #[error("{}: {message}", at(origin, pos))]
    Syntax {
        origin: String,
        pos: Option<Pos>,
        message: String,
    },
    /// The text parses but breaks a rule of the rubric.
    #[error("{}: {kind}", at(origin, pos))]
    Invalid {
        origin: String,
        pos: Option<Pos>,
        kind: Box<Invalid>,
    },
}

fn at(origin: &str, pos: &Option<Pos>) -> String {
    match pos {
        Some(p) => format!("{origin}:{}:{}", p.line, p.col),
        None => origin.to_string(),
    }
}

/// The rules a parsed rubric can break.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    #[error("unsupported rubric version {0}; this trun reads version 1")]
    Version(u32),
    #[error("the rubric has no criteria; add at least one under `criteria:`")]
    NoCriteria,
    #[error("criterion id `{0}` is not valid: use letters, digits, `-`, `_` and `.`, starting with a letter or digit")]
    BadId(String),
    #[error("duplicate criterion id `{0}`; every criterion needs its own id")]
    DuplicateId(String),
    #[error("criterion `{id}` needs unknown criterion `{need}`{}", did_you_mean(.suggestion))]
    UnknownNeed {
        id: String,
        need: String,
        suggestion: Option<String>,
    },
    #[error("criteria depend on each other in a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("criterion `{id}` has {points} points; points must be a number >= 0")]
    BadPoints { id: String, points: f64 },
    #[error("criterion `{0}` has an empty `run`; give it a command")]
    EmptyRun(String),
    #[error("criterion `{id}` has a zero timeout; give it a positive duration like 10s")]
    ZeroTimeout { id: String },
    #[error("criterion `{id}`: `{pattern}` is not a valid regex: {message}")]
    BadRegex {
        id: String,
        pattern: String,
        message: String,
    },
    #[error("criterion `{id}`: score file `{file}` must be a relative path inside $TRUN_OUT")]
    BadScoreFile { id: String, file: String },
    #[error("`container` needs exactly one of `image` or `dockerfile`")]
    Container,
    #[error("`defaults.{field}` {message}")]
    BadLimit {
        field: &'static str,
        message: String,
    },
}

fn did_you_mean(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

impl Rubric {
    /// Parses and validates a YAML rubric. `origin` names the source in messages
    /// (usually the file path).
    pub fn from_yaml(text: &str, origin: &str) -> Result<Rubric, RubricError> {
        let mut rubric: Rubric = serde_saphyr::from_str(text).map_err(|e| {
            let (pos, message) = yaml_message(&e);
            RubricError::Syntax {
                origin: origin.to_string(),
                pos,
                message,
            }
        })?;
        attach_yaml_spans(&mut rubric, text);
        rubric.validate(origin)?;
        Ok(rubric)
    }

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

    /// Checks every rule; the first broken one is returned, pointing at its position.
    pub fn validate(&self, origin: &str) -> Result<(), RubricError> {
        let fail = |pos: Option<Pos>, kind: Invalid| RubricError::Invalid {
            origin: origin.to_string(),
            pos,
            kind: Box::new(kind),
        };
        if self.version != 1 {
            return Err(fail(None, Invalid::Version(self.version)));
        }
        if let Some(c) = &self.container {
            if c.image.is_some() == c.dockerfile.is_some() {
                return Err(fail(None, Invalid::Container));
            }
        }
        if self.criteria.is_empty() {
            return Err(fail(None, Invalid::NoCriteria));
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, c) in self.criteria.iter().enumerate() {
            if !valid_id(&c.id) {
                return Err(fail(c.span.id, Invalid::BadId(c.id.clone())));
            }
            if seen.insert(c.id.as_str(), i).is_some() {
                return Err(fail(c.span.id, Invalid::DuplicateId(c.id.clone())));
            }
            if !c.points.is_finite() || c.points < 0.0 {
                return Err(fail(
                    c.span.points.or(c.span.id),
                    Invalid::BadPoints {
                        id: c.id.clone(),
                        points: c.points,
                    },
                ));
            }
            if c.run.trim().is_empty() {
                return Err(fail(c.span.id, Invalid::EmptyRun(c.id.clone())));
            }
            if c.timeout.is_some_and(|t| t.0.is_zero()) {
                return Err(fail(c.span.id, Invalid::ZeroTimeout { id: c.id.clone() }));
            }
            if let Some(e) = &c.expect {
                if e.compare == Compare::Regex {
                    for pattern in [&e.stdout, &e.stderr].into_iter().flatten() {
                        if let Err(err) = regex::Regex::new(pattern.trim()) {
                            return Err(fail(
                                c.span.id,
                                Invalid::BadRegex {
                                    id: c.id.clone(),
                                    pattern: pattern.clone(),
                                    message: err.to_string(),
                                },
                            ));
                        }
                    }
                }
            }
            if let Some(s) = &c.score {
                let file = s.file_name();
                let inside = !file.is_empty()
                    && Path::new(file)
                        .components()
                        .all(|part| matches!(part, Component::Normal(_)));
                if !inside {
                    return Err(fail(
                        c.span.id,
                        Invalid::BadScoreFile {
                            id: c.id.clone(),
                            file: file.to_string(),
                        },
                    ));
                }
            }
        }
        if let Some(m) = self.defaults.memory.filter(|m| m.0 < MIN_MEMORY) {
            return Err(fail(
                None,
                Invalid::BadLimit {
                    field: "memory",
                    message: format!("is {m}; Docker needs at least 6MiB"),
                },
            ));
        }
        if self.defaults.pids == Some(0) {
            return Err(fail(
                None,
                Invalid::BadLimit {
                    field: "pids",
                    message: "is 0; allow at least 1 process".to_string(),
                },
            ));
        }
        if let Some(c) = self.defaults.cpus.filter(|c| !(c.is_finite() && *c > 0.0)) {
            return Err(fail(
                None,
                Invalid::BadLimit {
                    field: "cpus",
                    message: format!("is {c}; give a positive number like 1 or 0.5"),
                },
            ));
        }
        if self.defaults.timeout.0.is_zero() {
            return Err(fail(
                None,
                Invalid::ZeroTimeout {
                    id: "defaults".into(),
                },
            ));
        }
        for c in &self.criteria {
            for (k, need) in c.needs.iter().enumerate() {
                if !seen.contains_key(need.as_str()) {
                    let suggestion = seen
                        .keys()
                        .map(|id| (strsim::jaro_winkler(id, need), *id))
                        .filter(|(score, _)| *score > 0.8)
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                        .map(|(_, id)| id.to_string());
                    return Err(fail(
                        c.span.needs.get(k).copied().flatten().or(c.span.id),
                        Invalid::UnknownNeed {
                            id: c.id.clone(),
                            need: need.clone(),
                            suggestion,
                        },
                    ));
                }
            }
        }
        if let Some(cycle) = self.find_cycle() {
            let pos = self.criterion(&cycle[0]).and_then(|c| c.span.id);
            return Err(fail(pos, Invalid::Cycle(cycle)));
        }
        Ok(())
    }

    /// A dependency cycle as `[a, b, a]`, if there is one.
    fn find_cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        fn visit(
            r: &Rubric,
            i: usize,
            index: &HashMap<&str, usize>,
            marks: &mut [Mark],
            stack: &mut Vec<usize>,
        ) -> Option<Vec<String>> {
            marks[i] = Mark::Open;
            stack.push(i);
            for need in &r.criteria[i].needs {
                let Some(&j) = index.get(need.as_str()) else {
                    continue;
                };
                match marks[j] {
                    Mark::Open => {
                        let start = stack.iter().position(|&k| k == j).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[start..]
                            .iter()
                            .map(|&k| r.criteria[k].id.clone())
                            .collect();
                        cycle.push(r.criteria[j].id.clone());
                        return Some(cycle);
                    }
                    Mark::New => {
                        if let Some(c) = visit(r, j, index, marks, stack) {
                            return Some(c);
                        }
                    }
                    Mark::Done => {}
                }
            }
            stack.pop();
            marks[i] = Mark::Done;
            None
        }
        let index: HashMap<&str, usize> = self
            .criteria
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.as_str(), i))
            .collect();
        let mut marks = vec![Mark::New; self.criteria.len()];
        for i in 0..self.criteria.len() {
            if marks[i] == Mark::New {
                if let Some(c) = visit(self, i, &index, &mut marks, &mut Vec::new()) {
                    return Some(c);
                }
            }
        }
        None
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

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// serde-saphyr's message (its first line; the rest is a snippet we do not need) and
/// position.
fn yaml_message(e: &serde_saphyr::Error) -> (Option<Pos>, String) {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default().to_string();
    let pos = e.location().filter(|l| l.line() > 0).map(|l| Pos {
        line: l.line(),
        col: l.column(),
    });
    (pos, first)
}

/// Lenient skeleton read only for positions; unknown fields are ignored here because the
/// strict parse has already accepted the document.
#[derive(Deserialize)]
struct SpanDoc {
    #[serde(default)]
    criteria: Vec<SpanCriterion>,
}

#[derive(Deserialize)]
struct SpanCriterion {
    id: Option<serde_saphyr::Spanned<String>>,
    points: Option<serde_saphyr::Spanned<f64>>,
    needs: Option<Vec<serde_saphyr::Spanned<String>>>,
}

fn attach_yaml_spans(rubric: &mut Rubric, text: &str) {
    let Ok(doc) = serde_saphyr::from_str::<SpanDoc>(text) else {
        return;
    };
    let pos = |loc: &serde_saphyr::Location| {
        (loc.line() > 0).then(|| Pos {
            line: loc.line(),
            col: loc.column(),
        })
    };
    for (c, s) in rubric.criteria.iter_mut().zip(doc.criteria) {
        c.span = CriterionSpan {
            id: s.id.as_ref().and_then(|v| pos(&v.referenced)),
            points: s.points.as_ref().and_then(|v| pos(&v.referenced)),
            needs: s
                .needs
                .unwrap_or_default()
                .iter()
                .map(|v| pos(&v.referenced))
                .collect(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let e =
            err("criteria:\n  - id: a\n    run: x\n    expect: { stdout: '(', compare: regex }\n");
        assert!(e.contains("is not a valid regex"), "{e}");
        let e = err("defaults: { timeout: 5 parsecs }\ncriteria:\n  - {id: a, run: x}\n");
        assert!(e.contains("invalid duration `5 parsecs`"), "{e}");
        let e =
            err("criteria:\n  - id: a\n    run: x\n    score: { from: junit, file: ../x.xml }\n");
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
        assert_eq!(parse_size("10KB"), Ok(10_000));
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
}
