//! The functions and operators of GitHub's expression language, as minijinja
//! functions, plus GitHub's rules for turning values into strings.
//!
//! GitHub compares loosely (`'ABC' == 'abc'`, `1 == '1'`) and prints values its own
//! way (`null` as an empty string, arrays as JSON); minijinja does neither, so the
//! translated expression calls these functions instead of minijinja's operators.
//! Name resolution and the `${{ }}` syntax live elsewhere.

use minijinja::value::{Rest, ValueKind};
use minijinja::{Error, ErrorKind, Value};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::path::Path;

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

/// minijinja's strict mode lets an undefined value reach a function argument;
/// refusing it here makes a missing property an error instead of an empty string.
fn defined(args: &[Value]) -> Result<(), Error> {
    if args.iter().any(Value::is_undefined) {
        return Err(Error::from(ErrorKind::UndefinedError));
    }
    Ok(())
}

pub(crate) fn to_json(v: &Value) -> Json {
    serde_json::to_value(v).unwrap_or(Json::Null)
}

/// A value as GitHub prints it: null is "", numbers without a needless `.0`,
/// strings as they are, arrays and objects as compact JSON.
pub(crate) fn stringify(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format_float(f),
            _ => n.to_string(),
        },
        Json::String(s) => s.clone(),
        Json::Array(_) | Json::Object(_) => v.to_string(),
    }
}

fn format_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{}", f as i128)
    } else {
        format!("{f}")
    }
}

/// GitHub's truthiness: false, 0, NaN, "" and null are false; everything else,
/// including empty arrays and objects, is true.
pub(crate) fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Json::String(s) => !s.is_empty(),
        Json::Array(_) | Json::Object(_) => true,
    }
}

/// GitHub's number coercion, used when two operands have different types.
fn to_number(v: &Json) -> f64 {
    match v {
        Json::Null => 0.0,
        Json::Bool(b) => f64::from(u8::from(*b)),
        Json::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Json::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                0.0
            } else if let Some(hex) = t.strip_prefix("0x") {
                u64::from_str_radix(hex, 16).map_or(f64::NAN, |n| n as f64)
            } else {
                t.parse().unwrap_or(f64::NAN)
            }
        }
        Json::Array(_) | Json::Object(_) => f64::NAN,
    }
}

fn same_type(a: &Json, b: &Json) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

pub(crate) fn loose_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::String(x), Json::String(y)) => x.to_lowercase() == y.to_lowercase(),
        (Json::Null, Json::Null) => true,
        (Json::Bool(x), Json::Bool(y)) => x == y,
        (Json::Array(_), Json::Array(_)) | (Json::Object(_), Json::Object(_)) => a == b,
        _ => to_number(a) == to_number(b),
    }
}

fn loose_cmp(a: &Json, b: &Json) -> Option<Ordering> {
    if same_type(a, b) {
        if let (Json::String(x), Json::String(y)) = (a, b) {
            return Some(x.to_lowercase().cmp(&y.to_lowercase()));
        }
    }
    to_number(a).partial_cmp(&to_number(b))
}

pub(crate) fn eq(a: Value, b: Value) -> Result<bool, Error> {
    defined(&[a.clone(), b.clone()])?;
    Ok(loose_eq(&to_json(&a), &to_json(&b)))
}

pub(crate) fn cmp(a: Value, op: String, b: Value) -> Result<bool, Error> {
    defined(&[a.clone(), b.clone()])?;
    let ord = loose_cmp(&to_json(&a), &to_json(&b));
    Ok(match (op.as_str(), ord) {
        (_, None) => false,
        ("<", Some(o)) => o == Ordering::Less,
        ("<=", Some(o)) => o != Ordering::Greater,
        (">", Some(o)) => o == Ordering::Greater,
        (_, Some(o)) => o != Ordering::Less,
    })
}

pub(crate) fn contains(haystack: Value, needle: Value) -> Result<bool, Error> {
    defined(&[haystack.clone(), needle.clone()])?;
    let needle = to_json(&needle);
    Ok(match to_json(&haystack) {
        Json::Array(items) => items.iter().any(|item| loose_eq(item, &needle)),
        other => stringify(&other)
            .to_lowercase()
            .contains(&stringify(&needle).to_lowercase()),
    })
}

pub(crate) fn starts_with(s: Value, prefix: Value) -> Result<bool, Error> {
    defined(&[s.clone(), prefix.clone()])?;
    let (s, p) = (stringify(&to_json(&s)), stringify(&to_json(&prefix)));
    Ok(s.to_lowercase().starts_with(&p.to_lowercase()))
}

pub(crate) fn ends_with(s: Value, suffix: Value) -> Result<bool, Error> {
    defined(&[s.clone(), suffix.clone()])?;
    let (s, p) = (stringify(&to_json(&s)), stringify(&to_json(&suffix)));
    Ok(s.to_lowercase().ends_with(&p.to_lowercase()))
}

pub(crate) fn format(fmt: Value, args: Rest<Value>) -> Result<String, Error> {
    defined(&args)?;
    defined(std::slice::from_ref(&fmt))?;
    let fmt = stringify(&to_json(&fmt));
    let args: Vec<String> = args.iter().map(|a| stringify(&to_json(a))).collect();
    format_str(&fmt, &args).map_err(invalid)
}

fn format_str(fmt: &str, args: &[String]) -> Result<String, String> {
    let mut out = String::with_capacity(fmt.len());
    let mut chars = fmt.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let rest = &fmt[i + 1..];
                let close = rest
                    .find('}')
                    .ok_or_else(|| format!("format: unclosed `{{` at position {i} in '{fmt}' (write `{{{{` for a literal brace)"))?;
                let index: usize = rest[..close].parse().map_err(|_| {
                    format!("format: `{{{}}}` is not a placeholder like `{{0}}` (write `{{{{` for a literal brace)", &rest[..close])
                })?;
                let value = args.get(index).ok_or_else(|| {
                    format!(
                        "format: placeholder `{{{index}}}` but only {} argument{} given",
                        args.len(),
                        if args.len() == 1 { "" } else { "s" }
                    )
                })?;
                out.push_str(value);
                for _ in 0..=close {
                    chars.next();
                }
            }
            '}' => {
                return Err(format!(
                    "format: unmatched `}}` at position {i} in '{fmt}' (write `}}}}` for a literal brace)"
                ))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

pub(crate) fn join(items: Value, sep: Option<Value>) -> Result<String, Error> {
    defined(std::slice::from_ref(&items))?;
    let sep = match sep {
        Some(s) => {
            defined(std::slice::from_ref(&s))?;
            stringify(&to_json(&s))
        }
        None => ",".to_string(),
    };
    Ok(match to_json(&items) {
        Json::Array(items) => items.iter().map(stringify).collect::<Vec<_>>().join(&sep),
        other => stringify(&other),
    })
}

pub(crate) fn to_json_fn(v: Value) -> Result<String, Error> {
    defined(std::slice::from_ref(&v))?;
    serde_json::to_string_pretty(&to_json(&v)).map_err(|e| invalid(format!("toJSON: {e}")))
}

pub(crate) fn from_json(v: Value) -> Result<Value, Error> {
    defined(std::slice::from_ref(&v))?;
    let Some(text) = v.as_str() else {
        return Err(invalid(format!(
            "fromJSON: expects a string, got {}",
            kind_name(v.kind())
        )));
    };
    let parsed: Json = serde_json::from_str(text).map_err(|e| {
        let shown: String = text.chars().take(40).collect();
        invalid(format!("fromJSON: '{shown}' is not valid JSON: {e}"))
    })?;
    Ok(Value::from_serialize(&parsed))
}

fn kind_name(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::None | ValueKind::Undefined => "null",
        ValueKind::Bool => "a boolean",
        ValueKind::Number => "a number",
        ValueKind::String | ValueKind::Bytes => "a string",
        ValueKind::Seq | ValueKind::Iterable => "an array",
        ValueKind::Map => "an object",
        _ => "a value",
    }
}

pub(crate) fn hash_files_fn(workspace: &Path, patterns: Rest<Value>) -> Result<String, Error> {
    defined(&patterns)?;
    let patterns: Vec<String> = patterns.iter().map(|p| stringify(&to_json(p))).collect();
    hash_files(workspace, &patterns).map_err(|e| invalid(format!("hashFiles: {e}")))
}

/// SHA-256 over the contents of the files under `workspace` matching `patterns`
/// (globs relative to the workspace; a leading `!` excludes), in sorted path order.
/// Like GitHub, each file is hashed and the digests are hashed again, so the result
/// depends on contents and order, not on file names. `.gitignore` is honoured and
/// `.git/` and `.trun/` are never included. "" when nothing matches.
pub fn hash_files(workspace: &Path, patterns: &[String]) -> Result<String, String> {
    let mut include = globset::GlobSetBuilder::new();
    let mut exclude = globset::GlobSetBuilder::new();
    let mut any_include = false;
    for raw in patterns {
        let (negated, pat) = match raw.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, raw.as_str()),
        };
        let pat = pat.trim_start_matches("./");
        if pat.starts_with('/') || pat.split('/').any(|c| c == "..") {
            return Err(format!(
                "pattern `{raw}` must be relative to the workspace and stay inside it"
            ));
        }
        let glob = globset::GlobBuilder::new(pat)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("invalid pattern `{raw}`: {e}"))?;
        if negated {
            exclude.add(glob);
        } else {
            include.add(glob);
            any_include = true;
        }
    }
    if !any_include {
        return Ok(String::new());
    }
    let include = include.build().map_err(|e| e.to_string())?;
    let exclude = exclude.build().map_err(|e| e.to_string())?;

    let mut files = Vec::new();
    let walker = ignore::WalkBuilder::new(workspace)
        .hidden(false)
        .require_git(false)
        .filter_entry(|e| {
            let name = e.file_name();
            !(e.depth() > 0
                && e.file_type().is_some_and(|t| t.is_dir())
                && (name == ".git" || (name == ".trun" && e.depth() == 1)))
        })
        .build();
    for entry in walker {
        let entry = entry.map_err(|e| e.to_string())?;
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(workspace) else {
            continue;
        };
        let rel: String = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if include.is_match(&rel) && !exclude.is_match(&rel) {
            files.push((rel, entry.into_path()));
        }
    }
    if files.is_empty() {
        return Ok(String::new());
    }
    files.sort();
    let mut outer = Sha256::new();
    for (rel, path) in &files {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read `{rel}`: {e}"))?;
        outer.update(Sha256::digest(&bytes));
    }
    Ok(hex::encode(outer.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stringify_like_github() {
        assert_eq!(stringify(&json!(null)), "");
        assert_eq!(stringify(&json!(true)), "true");
        assert_eq!(stringify(&json!(3)), "3");
        assert_eq!(stringify(&json!(3.0)), "3");
        assert_eq!(stringify(&json!(2.5)), "2.5");
        assert_eq!(stringify(&json!("a b")), "a b");
        assert_eq!(stringify(&json!([1, "x"])), r#"[1,"x"]"#);
        assert_eq!(stringify(&json!({"a": 1})), r#"{"a":1}"#);
    }

    #[test]
    fn loose_equality() {
        assert!(loose_eq(&json!("ABC"), &json!("abc")));
        assert!(loose_eq(&json!(1), &json!("1")));
        assert!(loose_eq(&json!(null), &json!(0)));
        assert!(loose_eq(&json!(true), &json!(1)));
        assert!(!loose_eq(&json!(true), &json!("true")));
        assert!(!loose_eq(&json!("a"), &json!("b")));
        assert!(loose_eq(&json!(null), &json!(null)));
    }

    #[test]
    fn format_placeholders_and_escapes() {
        let args = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            format_str("{0} and {1} and {0}", &args).unwrap(),
            "a and b and a"
        );
        assert_eq!(format_str("{{0}} {{{1}}}", &args).unwrap(), "{0} {b}");
        assert_eq!(
            format_str("{2}", &args).unwrap_err(),
            "format: placeholder `{2}` but only 2 arguments given"
        );
        assert!(format_str("{x}", &args)
            .unwrap_err()
            .contains("not a placeholder"));
        assert!(format_str("a } b", &args)
            .unwrap_err()
            .contains("unmatched `}`"));
        assert!(format_str("a { b", &args).unwrap_err().contains("unclosed"));
    }

    #[test]
    fn hash_files_on_a_real_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        std::fs::create_dir_all(root.join("target")).unwrap();
        std::fs::create_dir_all(root.join(".trun")).unwrap();
        std::fs::write(root.join("src/a.rs"), "fn a() {}").unwrap();
        std::fs::write(root.join("src/deep/b.rs"), "fn b() {}").unwrap();
        std::fs::write(root.join("src/notes.txt"), "notes").unwrap();
        std::fs::write(root.join("target/gen.rs"), "generated").unwrap();
        std::fs::write(root.join(".trun/state.rs"), "state").unwrap();
        std::fs::write(root.join(".gitignore"), "target/\n").unwrap();

        let pats = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let h = hash_files(root, &pats(&["**/*.rs"])).unwrap();

        // Expected: sha256 over the sha256 of each matching file, in path order;
        // target/ is git-ignored and .trun/ is excluded.
        let mut outer = Sha256::new();
        outer.update(Sha256::digest(b"fn a() {}"));
        outer.update(Sha256::digest(b"fn b() {}"));
        assert_eq!(h, hex::encode(outer.finalize()));

        // `*` does not cross directories; `!` excludes.
        let only_a = hash_files(root, &pats(&["src/*.rs"])).unwrap();
        assert_eq!(
            only_a,
            hash_files(root, &pats(&["**/*.rs", "!src/deep/**"])).unwrap()
        );
        assert_ne!(only_a, h);

        // Content changes change the hash.
        std::fs::write(root.join("src/a.rs"), "fn a() { 1 }").unwrap();
        assert_ne!(hash_files(root, &pats(&["**/*.rs"])).unwrap(), h);

        assert_eq!(hash_files(root, &pats(&["**/*.py"])).unwrap(), "");
        assert!(hash_files(root, &pats(&["../x"])).is_err());
    }
}
