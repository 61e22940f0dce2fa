//! Secrets: the values of the `secrets` expression context, and the
//! [`Masker`] that keeps them (and anything a step registers with
//! `::add-mask::`) out of everything trun shows or writes.
//!
//! The command line builds a [`Secrets`] from `--secret NAME=VALUE`,
//! `--secret NAME` (the value of `NAME` in trun's own environment) and
//! `--secret-file FILE` (dotenv format); the plan carries it, the engine puts
//! it in the `secrets` context of each job, and the session masks with the
//! [`Masker`] built from it. A value never reaches a reporter, a `--json`
//! event, a log file or the state store in clear: the engine's event sender
//! and each step's output sink mask every string they pass on, and the
//! up-to-date fingerprint of a step sees a secret only through
//! [`Secrets::digest`].
//!
//! What is masked, as on GitHub: every non-empty value, whatever its length
//! (a one-character secret turns every such character in the output into
//! `***`, as it does on GitHub; give secrets worth the name), and each line of
//! a multi-line value on its own, since output is shown line by line.
//! Whitespace-only values and lines are not masked. This module does not read
//! step output or decide where masking happens; `exec` does.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Secrets that are switches, not secrets: never masked.
const SWITCHES: [&str; 2] = ["ACTIONS_STEP_DEBUG", "ACTIONS_RUNNER_DEBUG"];

/// The most values one run masks: each `::add-mask::` rebuilds the matcher,
/// so a step printing a million of them must not make trun quadratic.
pub const MAX_MASKS: usize = 1000;

/// What a masked value is replaced by.
pub const MASK: &str = "***";

/// The secrets of one run, by name as given. `Debug` shows names only.
#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

/// A problem with `--secret` or `--secret-file`. Its message never holds a
/// value: a parse error names the file, line and column only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("--secret {name}: no such variable in trun's environment (give `--secret {name}=VALUE`, or export {name})")]
    NotInEnvironment { name: String },
    #[error("--secret {given}: `{name}` is not a valid secret name (letters, digits and `_`, not starting with a digit)")]
    BadName { given: String, name: String },
    #[error("{}:{line}:{col}: error: {message}", path.display())]
    File {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("cannot read secret file {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
}

/// The most a secret file may hold.
pub const MAX_SECRET_FILE: u64 = 1024 * 1024;

/// Whether `name` may name a secret: GitHub's rule (letters, digits and `_`,
/// not starting with a digit).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Secrets {
    /// Secrets from `--secret-file` files (in order), then `--secret` flags
    /// (each `NAME=VALUE` or `NAME`), later ones winning. `env` looks up a
    /// name in trun's environment.
    pub fn from_args(
        files: &[PathBuf],
        flags: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Secrets, SecretError> {
        let mut s = Secrets::default();
        for f in files {
            for (k, v) in parse_file(f)? {
                s.insert(k, v);
            }
        }
        for given in flags {
            let (name, value) = match given.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.to_string())),
                None => (given.trim(), None),
            };
            if !valid_name(name) {
                return Err(SecretError::BadName {
                    given: if value.is_some() {
                        format!("{name}=…")
                    } else {
                        given.clone()
                    },
                    name: name.to_string(),
                });
            }
            let value = match value {
                Some(v) => v,
                None => env(name).ok_or_else(|| SecretError::NotInEnvironment {
                    name: name.to_string(),
                })?,
            };
            s.insert(name.to_string(), value);
        }
        Ok(s)
    }

    /// Adds or replaces one secret (names compare ignoring case, as on GitHub).
    pub fn insert(&mut self, name: String, value: String) {
        self.values.retain(|k, _| !k.eq_ignore_ascii_case(&name));
        self.values.insert(name, value);
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The names given, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The value of `name` (ignoring case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `secrets` context: every secret given, and `GITHUB_TOKEN` (empty
    /// unless given: trun holds no token). A name not given reads as null.
    pub fn context(&self) -> Map<String, Json> {
        let mut m: Map<String, Json> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        if self.get("GITHUB_TOKEN").is_none() {
            m.insert("GITHUB_TOKEN".into(), Json::String(String::new()));
        }
        m
    }

    /// A digest of every name and value, for the up-to-date fingerprint of a
    /// step that uses secrets: it changes when a value changes and does not
    /// hold the value. Empty when there are no secrets.
    ///
    /// It is a salted SHA-256: it hides a strong secret, but a short or
    /// guessable one could be found by trying candidates against it, so the
    /// store keeps only the fingerprint that hashes it in turn.
    pub fn digest(&self) -> String {
        if self.values.is_empty() {
            return String::new();
        }
        let mut h = Sha256::new();
        h.update(b"trun secrets v1\0");
        for (k, v) in &self.values {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// A masker holding every secret value, except the debug switches
    /// GitHub reads from secrets (`ACTIONS_STEP_DEBUG=true` would otherwise
    /// mask every `true` in the output).
    pub fn masker(&self) -> Masker {
        let m = Masker::default();
        for (k, v) in &self.values {
            if !SWITCHES.iter().any(|s| s.eq_ignore_ascii_case(k)) {
                let _ = m.add(v);
            }
        }
        m
    }
}

/// Each `secrets.NAME` (or `secrets['NAME']`) in a workflow's text: byte
/// offset of the name and the name, first use of each name only.
pub fn names_used(text: &str) -> Vec<(usize, &str)> {
    let mut seen: Vec<(usize, &str)> = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = find_ignore_case(&text[from..], "secrets") {
        let at = from + i;
        from = at + "secrets".len();
        let before_ok = at == 0
            || !(bytes[at - 1].is_ascii_alphanumeric()
                || bytes[at - 1] == b'_'
                || bytes[at - 1] == b'.');
        if !before_ok {
            continue;
        }
        let rest = &text[from..];
        let (start, quoted) = if rest.starts_with('.') {
            (from + 1, None)
        } else if rest.starts_with("['") || rest.starts_with("[\"") {
            (from + 2, Some(rest.as_bytes()[1]))
        } else {
            continue;
        };
        let len = text[start..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if len == 0 || quoted.is_some_and(|q| bytes.get(start + len) != Some(&q)) {
            continue;
        }
        let name = &text[start..start + len];
        if !seen.iter().any(|(_, n)| n.eq_ignore_ascii_case(name)) {
            seen.push((start, name));
        }
    }
    seen
}

fn find_ignore_case(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Parses a dotenv file: `KEY=VALUE` lines, blank lines and `#` comments
/// ignored, an optional `export ` prefix, values unquoted (trimmed, a ` #`
/// starts a comment), in single quotes (literal) or in double quotes
/// (`\n`, `\t`, `\"`, `\\` escapes; may span lines).
pub fn parse_file(path: &Path) -> Result<Vec<(String, String)>, SecretError> {
    use std::io::Read;
    let read_err = |message: String| SecretError::Read {
        path: path.to_path_buf(),
        message,
    };
    let f = std::fs::File::open(path).map_err(|e| read_err(e.to_string()))?;
    let meta = f.metadata().map_err(|e| read_err(e.to_string()))?;
    if !meta.is_file() {
        return Err(read_err("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    f.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_err(e.to_string()))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(read_err(format!("larger than {MAX_SECRET_FILE} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| read_err("not UTF-8 text".into()))?;
    parse_dotenv(&text).map_err(|(line, col, message)| SecretError::File {
        path: path.to_path_buf(),
        line,
        col,
        message,
    })
}

/// [`parse_file`] on text; an error is (line, column, message), 1-based.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, (usize, usize, String)> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let raw = lines[i].strip_suffix('\r').unwrap_or(lines[i]);
        i += 1;
        let indent = raw.len() - raw.trim_start().len();
        let mut line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut col = indent + 1;
        if let Some(rest) = line.strip_prefix("export ") {
            let skipped = line.len() - rest.trim_start().len();
            col += skipped;
            line = rest.trim_start();
        }
        let Some(eq) = line.find('=') else {
            return Err((
                lineno,
                col,
                "expected `NAME=VALUE` (the line has no `=`)".into(),
            ));
        };
        let name = line[..eq].trim_end();
        if !valid_name(name) {
            return Err((
                lineno,
                col,
                format!("`{name}` is not a valid secret name (letters, digits and `_`, not starting with a digit)"),
            ));
        }
        let after = &line[eq + 1..];
        let vcol = col + eq + 1 + (after.len() - after.trim_start().len());
        let value = after.trim_start();
        let (value, rest, rest_col, rest_line) = match value.chars().next() {
            Some(q @ ('\'' | '"')) => {
                // The value runs to the matching quote, perhaps on a later line.
                let mut buf = String::new();
                let mut cur = &value[1..];
                let mut cur_col = vcol + 1;
                let mut cur_line = lineno;
                let closed = loop {
                    match find_quote(cur, q) {
                        Some(end) => {
                            buf.push_str(&unescape(&cur[..end], q));
                            break Some((&cur[end + 1..], cur_col + end + 1, cur_line));
                        }
                        None => {
                            buf.push_str(&unescape(cur, q));
                            if i >= lines.len() {
                                break None;
                            }
                            buf.push('\n');
                            cur = lines[i].strip_suffix('\r').unwrap_or(lines[i]);
                            cur_col = 1;
                            cur_line = i + 1;
                            i += 1;
                        }
                    }
                };
                match closed {
                    Some((rest, c, l)) => (buf, rest, c, l),
                    None => {
                        return Err((
                            lineno,
                            vcol,
                            format!(
                                "unterminated {} value (no closing {q})",
                                if q == '"' {
                                    "double-quoted"
                                } else {
                                    "single-quoted"
                                }
                            ),
                        ))
                    }
                }
            }
            _ => {
                let end = value.find(" #").or_else(|| value.find("\t#"));
                let v = end.map_or(value, |e| &value[..e]).trim_end();
                (v.to_string(), "", 0, lineno)
            }
        };
        let trailing = rest.trim_start();
        if !trailing.is_empty() && !trailing.starts_with('#') {
            let c = rest_col + (rest.len() - trailing.len());
            return Err((
                rest_line,
                c,
                "unexpected text after the closing quote".into(),
            ));
        }
        out.push((name.to_string(), value));
    }
    Ok(out)
}

/// The byte index of the quote closing a value in `s`, skipping `\"` in a
/// double-quoted value.
fn find_quote(s: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && q == '"' {
            escaped = true;
        } else if c == q {
            return Some(i);
        }
    }
    None
}

fn unescape(s: &str, q: char) -> String {
    if q == '\'' {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Replaces registered values with [`MASK`]. Cheap to clone (one shared set):
/// the session, the engine's event sender and every step's output sink hold
/// the same one, so a value a step registers with `::add-mask::` is masked
/// everywhere from then on.
#[derive(Clone, Default)]
pub struct Masker(Arc<RwLock<MaskSet>>);

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} values)", self.read().values.len())
    }
}

#[derive(Default)]
struct MaskSet {
    values: Vec<String>,
    matcher: Option<AhoCorasick>,
    longest: usize,
}

impl Masker {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, MaskSet> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `value`: each of its lines (without a trailing `\r`), and
    /// the whole value too when it has several. Whitespace-only pieces are
    /// ignored. `false` when the masker is full ([`MAX_MASKS`] values) and a
    /// piece was not added.
    pub fn add(&self, value: &str) -> bool {
        let mut pieces: Vec<&str> = value
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        if pieces.len() > 1 {
            pieces.push(value);
        }
        let mut set = self.0.write().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        let mut all = true;
        for p in pieces {
            if p.trim().is_empty() || set.values.iter().any(|v| v == p) {
                continue;
            }
            if set.values.len() >= MAX_MASKS {
                all = false;
                continue;
            }
            set.values.push(p.to_string());
            changed = true;
        }
        if changed {
            set.longest = set.values.iter().map(String::len).max().unwrap_or(0);
            set.matcher = AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&set.values)
                .ok();
        }
        all
    }

    /// Whether nothing is registered (masking is then free).
    pub fn is_empty(&self) -> bool {
        self.read().values.is_empty()
    }

    /// The length in bytes of the longest registered value.
    pub fn longest(&self) -> usize {
        self.read().longest
    }

    /// `text` with every registered value replaced by [`MASK`].
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let set = self.read();
        match &set.matcher {
            Some(m) if m.is_match(text) => {
                Cow::Owned(m.replace_all(text, &vec![MASK; set.values.len()]))
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// [`Masker::mask`] on bytes (a log line that may not be UTF-8).
    pub fn mask_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let set = self.read();
        match &set.matcher {
            Some(m) if m.is_match(bytes) => {
                let masks = vec![MASK.as_bytes(); set.values.len()];
                Cow::Owned(m.replace_all_bytes(bytes, &masks))
            }
            _ => Cow::Borrowed(bytes),
        }
    }

    /// Masks `s` in place.
    pub fn mask_in_place(&self, s: &mut String) {
        if let Cow::Owned(m) = self.mask(s) {
            *s = m;
        }
    }

    /// Whether `text` holds a registered value.
    pub fn reveals(&self, text: &str) -> bool {
        self.read()
            .matcher
            .as_ref()
            .is_some_and(|m| m.is_match(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_forms() {
        let text = "# comment\n\nA=plain value  # trailing comment\nexport B = 'single # not a comment'\nC=\"line1\\nline2 \\\"q\\\"\"\nD=\"multi\nline\"\nE=\n  F=x#y\r\n";
        let got = parse_dotenv(text).unwrap();
        assert_eq!(
            got,
            vec![
                ("A".to_string(), "plain value".to_string()),
                ("B".to_string(), "single # not a comment".to_string()),
                ("C".to_string(), "line1\nline2 \"q\"".to_string()),
                ("D".to_string(), "multi\nline".to_string()),
                ("E".to_string(), String::new()),
                ("F".to_string(), "x#y".to_string()),
            ]
        );
    }

    #[test]
    fn dotenv_errors_have_line_and_column_and_no_value() {
        assert_eq!(
            parse_dotenv("A=1\nnoequals\n").unwrap_err(),
            (2, 1, "expected `NAME=VALUE` (the line has no `=`)".into())
        );
        assert_eq!(
            parse_dotenv("  1BAD=x").unwrap_err().0..=parse_dotenv("  1BAD=x").unwrap_err().1,
            1..=3
        );
        let e = parse_dotenv("A=1\nB=\"hunter2\n").unwrap_err();
        assert_eq!((e.0, e.1), (2, 3));
        assert!(!e.2.contains("hunter2"));
        let e = parse_dotenv("A='x' hunter2").unwrap_err();
        assert_eq!((e.0, e.1), (1, 7));
        assert!(!e.2.contains("hunter2"));
    }

    #[test]
    fn names_used_in_a_workflow() {
        let text = "run: ${{ secrets.A }} ${{ Secrets['B_2'] }} ${{ secrets.a }} mysecrets.X ${{ toJSON(secrets) }}";
        let got: Vec<&str> = names_used(text).into_iter().map(|(_, n)| n).collect();
        assert_eq!(got, vec!["A", "B_2"]);
        assert_eq!(names_used(text)[0].0, text.find(".A").unwrap() + 1);
    }

    #[test]
    fn flags_and_environment() {
        let env = |n: &str| (n == "FROM_ENV").then(|| "e-value".to_string());
        let s = Secrets::from_args(&[], &["A=1=2".into(), "FROM_ENV".into()], &env).unwrap();
        assert_eq!(s.get("a"), Some("1=2"));
        assert_eq!(s.get("FROM_ENV"), Some("e-value"));
        assert_eq!(
            Secrets::from_args(&[], &["MISSING".into()], &env).unwrap_err(),
            SecretError::NotInEnvironment {
                name: "MISSING".into()
            }
        );
        let e = Secrets::from_args(&[], &["bad-name=hunter2".into()], &env).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(format!("{s:?}"), "{\"A\", \"FROM_ENV\"}");
        let ctx = s.context();
        assert_eq!(ctx["GITHUB_TOKEN"], "");
    }

    #[test]
    fn digest_changes_with_the_value_and_hides_it() {
        let mut a = Secrets::default();
        a.insert("TOKEN".into(), "hunter2".into());
        let mut b = Secrets::default();
        b.insert("TOKEN".into(), "hunter3".into());
        assert_ne!(a.digest(), b.digest());
        assert!(!a.digest().contains("hunter2"));
        assert_eq!(Secrets::default().digest(), "");
    }

    #[test]
    fn masking_lines_and_overlaps() {
        let m = Masker::default();
        assert!(m.add("ab"));
        assert!(m.add("abcd"));
        assert!(m.add("line one\r\nline two"));
        assert!(m.add("   "));
        assert_eq!(m.mask("xabcdx ab"), "x***x ***");
        assert_eq!(m.mask("say line one"), "say ***");
        assert_eq!(m.mask("line two!"), "***!");
        assert_eq!(m.mask("   "), "   ");
        assert!(matches!(m.mask("nothing"), Cow::Borrowed(_)));
        assert_eq!(&*m.mask_bytes(b"\xffab\xfe"), b"\xff***\xfe");
        assert_eq!(m.longest(), "line one\r\nline two".len());
    }

    #[test]
    fn a_flood_of_values_is_capped() {
        let m = Masker::default();
        let t = std::time::Instant::now();
        for i in 0..MAX_MASKS + 500 {
            let added = m.add(&format!("value-{i}"));
            assert_eq!(added, i < MAX_MASKS, "{i}");
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(20));
        assert_eq!(m.mask("value-7 extra-1400"), "*** extra-1400");
        assert!(!m.add("value-1499"), "the set is full");
    }
}
