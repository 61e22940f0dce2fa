//! Checking a rubric before anything runs: duplicate ids, unknown `needs`, cycles,
//! negative points, bad regexes, limits out of range. Errors point at `rubric.yaml:LINE:COL`
//! where the source has positions.

use std::collections::HashMap;
use std::path::{Component, Path};

use super::model::*;

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
    #[error(
        "criterion `{id}` has a timeout over the limit of {}; give it a shorter one",
        crate::rubric::DurationSpec(super::MAX_TIMEOUT)
    )]
    LongTimeout { id: String },
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
            if c.timeout.is_some_and(|t| t.0 > super::MAX_TIMEOUT) {
                return Err(fail(c.span.id, Invalid::LongTimeout { id: c.id.clone() }));
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
        if self.defaults.timeout.0 > super::MAX_TIMEOUT {
            return Err(fail(
                None,
                Invalid::LongTimeout {
                    id: "defaults".into(),
                },
            ));
        }
        for c in &self.criteria {
            for (k, need) in c.needs.iter().enumerate() {
                if !seen.contains_key(need.as_str()) {
                    let suggestion = crate::diag::did_you_mean(need, seen.keys().copied());
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
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
