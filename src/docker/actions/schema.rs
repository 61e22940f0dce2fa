//! The `with` schemas of the built-in actions, their validation, and typed
//! accessors the runners use after validation.

use serde_json::{Map, Value};
use thiserror::Error;

/// A problem with one `with` key (or with the set of keys when `key` is `None`);
/// the caller maps `key` to its file:line:col.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct WithError {
    pub key: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A string (numbers and booleans are accepted and read as text).
    Text,
    /// One string or a list of strings.
    List,
    /// A mapping of names to scalar values (`env`, `build-args`).
    Table,
    Bool,
    /// `6h`, `30m`, `90s`, `1h30m`, `2d`.
    Duration,
    /// A list of single-key mappings `{label: command}`, run in order.
    Commands,
}

struct Key {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn key(name: &'static str, kind: Kind) -> Key {
    Key {
        name,
        kind,
        required: false,
    }
}

const fn required(name: &'static str, kind: Kind) -> Key {
    Key {
        name,
        kind,
        required: true,
    }
}

use Kind::*;

const FILES_EXIST: &[Key] = &[required("paths", List)];
const BUILD: &[Key] = &[
    key("context", Text),
    key("dockerfile", Text),
    required("tag", Text),
    key("tags", List),
    key("build-args", Table),
    key("params", List),
    key("watch", List),
];
const PULL: &[Key] = &[
    required("image", Text),
    key("image-id", Text),
    key("min-interval", Duration),
];
const RUN: &[Key] = &[
    key("image", Text),
    key("image-id", Text),
    key("command", List),
    key("name", Text),
    key("env", Table),
    key("ports", List),
    key("params", List),
    key("detach", Bool),
    key("wait", Bool),
    key("keep", Bool),
];
const EXEC: &[Key] = &[
    key("container-id", Text),
    key("container", Text),
    key("image", Text),
    key("expect-image-id", Text),
    key("env", Table),
    required("commands", Commands),
];

fn schema(uses: &str) -> Option<&'static [Key]> {
    Some(match uses {
        "files/exist" => FILES_EXIST,
        "docker/build" => BUILD,
        "docker/pull" => PULL,
        "docker/run" => RUN,
        "docker/exec" => EXEC,
        _ => return None,
    })
}

fn err(key: Option<&str>, message: String) -> WithError {
    WithError {
        key: key.map(str::to_string),
        message,
    }
}

pub fn validate(uses: &str, with: &Map<String, Value>) -> Result<(), WithError> {
    let Some(keys) = schema(uses) else {
        let hint = crate::diag::did_you_mean_suffix(uses, super::KNOWN.iter().copied());
        return Err(err(None, format!("unknown action `{uses}`{hint}")));
    };
    for (name, value) in with {
        let Some(k) = keys.iter().find(|k| k.name == name) else {
            let hint = super::did_you_mean(name, keys.iter().map(|k| k.name))
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            let all: Vec<&str> = keys.iter().map(|k| k.name).collect();
            return Err(err(
                Some(name),
                format!(
                    "`{uses}` has no input `{name}`; {hint}known inputs: {}",
                    all.join(", ")
                ),
            ));
        };
        check(k, value).map_err(|expected| {
            err(
                Some(name),
                format!("`{name}` of `{uses}` must be {expected}"),
            )
        })?;
    }
    for k in keys.iter().filter(|k| k.required) {
        if !with.contains_key(k.name) {
            return Err(err(
                None,
                format!("`{uses}` requires the input `{}`", k.name),
            ));
        }
    }
    let one_of = |names: &[&str]| -> Result<(), WithError> {
        let given: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| with.contains_key(*n))
            .collect();
        match given.len() {
            0 => Err(err(
                None,
                format!("`{uses}` requires one of {}", quoted(names)),
            )),
            1 => Ok(()),
            _ => Err(err(
                Some(given[1]),
                format!(
                    "`{uses}` takes only one of {}, not both {}",
                    quoted(names),
                    quoted(&given)
                ),
            )),
        }
    };
    match uses {
        "docker/run" => one_of(&["image", "image-id"]),
        "docker/exec" => one_of(&["container-id", "container", "image"]),
        _ => Ok(()),
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_expression(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.contains("${{"))
}

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// `Err(what was expected)` when `value` does not fit `key`.
fn check(key: &Key, value: &Value) -> Result<(), &'static str> {
    if is_expression(value) {
        return Ok(());
    }
    let ok = match key.kind {
        Kind::Text => is_scalar(value),
        Kind::List => is_scalar(value) || value.as_array().is_some_and(|a| a.iter().all(is_scalar)),
        Kind::Table => value.as_object().is_some_and(|m| m.values().all(is_scalar)),
        Kind::Bool => value.is_boolean() || matches!(value.as_str(), Some("true" | "false")),
        Kind::Duration => value.as_str().is_some_and(|s| parse_duration(s).is_some()),
        Kind::Commands => value.as_array().is_some_and(|a| {
            !a.is_empty()
                && a.iter().all(|c| {
                    c.as_object()
                        .is_some_and(|m| m.len() == 1 && m.values().all(is_scalar))
                })
        }),
    };
    if ok {
        return Ok(());
    }
    Err(match key.kind {
        Kind::Text => "a string",
        Kind::List => "a string or a list of strings",
        Kind::Table => "a mapping of names to values",
        Kind::Bool => "true or false",
        Kind::Duration => "a duration like 90s, 30m, 6h, 1h30m or 2d",
        Kind::Commands => "a non-empty list of `label: command` entries",
    })
}

/// Parses `90s`, `30m`, `6h`, `2d`, `1h30m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return None,
        };
    }
    (number.is_empty() && !text.is_empty()).then(|| std::time::Duration::from_secs(total))
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn text(with: &Map<String, Value>, key: &str) -> Option<String> {
    with.get(key).and_then(scalar_text)
}

/// A `List` key: one string or a list; absent is empty.
pub fn list(with: &Map<String, Value>, key: &str) -> Vec<String> {
    match with.get(key) {
        Some(Value::Array(items)) => items.iter().filter_map(scalar_text).collect(),
        Some(v) => scalar_text(v).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Whether a `List` key was given as a single string (e.g. `command: make test`).
pub fn is_single(with: &Map<String, Value>, key: &str) -> bool {
    with.get(key).is_some_and(|v| !v.is_array())
}

pub fn table(with: &Map<String, Value>, key: &str) -> Vec<(String, String)> {
    with.get(key)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), scalar_text(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn flag(with: &Map<String, Value>, key: &str, default: bool) -> bool {
    match with.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => default,
    }
}

pub fn commands(with: &Map<String, Value>, key: &str) -> Vec<(String, String)> {
    with.get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|c| {
                    c.as_object()?
                        .iter()
                        .next()
                        .and_then(|(k, v)| Some((k.clone(), scalar_text(v)?)))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn with(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn unknown_key_is_named_with_a_suggestion() {
        let e = validate("docker/build", &with(json!({"tag": "a", "wacth": ["x"]}))).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("wacth"));
        assert_eq!(
            e.message,
            "`docker/build` has no input `wacth`; did you mean `watch`? known inputs: context, dockerfile, tag, tags, build-args, params, watch"
        );
    }

    #[test]
    fn missing_required_key() {
        let e = validate("docker/pull", &with(json!({}))).unwrap_err();
        assert_eq!(e.message, "`docker/pull` requires the input `image`");
    }

    #[test]
    fn wrong_types_are_reported_per_key() {
        let e = validate(
            "docker/pull",
            &with(json!({"image": "x", "min-interval": "soon"})),
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("min-interval"));
        assert_eq!(
            e.message,
            "`min-interval` of `docker/pull` must be a duration like 90s, 30m, 6h, 1h30m or 2d"
        );
        let e = validate(
            "docker/exec",
            &with(json!({"image": "x", "commands": ["ls"]})),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "`commands` of `docker/exec` must be a non-empty list of `label: command` entries"
        );
        let e = validate("docker/run", &with(json!({"image": "x", "detach": "yes"}))).unwrap_err();
        assert_eq!(e.message, "`detach` of `docker/run` must be true or false");
    }

    #[test]
    fn expressions_pass_plan_time_checks() {
        validate(
            "docker/run",
            &with(
                json!({"image-id": "${{ steps.b.outputs.image-id }}", "detach": "${{ inputs.d }}"}),
            ),
        )
        .unwrap();
    }

    #[test]
    fn exactly_one_target() {
        let e = validate("docker/exec", &with(json!({"commands": [{"a": "ls"}]}))).unwrap_err();
        assert_eq!(
            e.message,
            "`docker/exec` requires one of `container-id`, `container`, `image`"
        );
        let e = validate("docker/run", &with(json!({"image": "a", "image-id": "b"}))).unwrap_err();
        assert_eq!(
            e.message,
            "`docker/run` takes only one of `image`, `image-id`, not both `image`, `image-id`"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172800)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("6"), Some(Duration::from_secs(6)));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("5m3"), None);
    }
}
