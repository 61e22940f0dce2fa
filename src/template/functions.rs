//! The functions of GitHub's expression language (`contains`, `format`, `join`,
//! `toJSON`, `fromJSON`, `hashFiles`, …) and the memory limits every value they
//! build must fit in.
//!
//! Each function checks the size of its result before building it, so a
//! `format()` that would expand to gigabytes is an error naming the limit rather
//! than an allocation. The status functions and name resolution live in
//! `eval.rs`; coercion rules in `value.rs`.

use super::value::{fold, AsJson, Val};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::path::Path;

/// The largest string one function may build (`format`, `join`, `toJSON`) or
/// read (`fromJSON`), in bytes.
pub const MAX_STRING: usize = 1 << 20;
/// The most memory one evaluation (one field, all its `${{ }}`) may allocate for
/// values, in bytes.
pub const MAX_MEMORY: usize = 16 << 20;
/// The deepest nesting of arrays and objects `fromJSON` accepts.
pub const MAX_JSON_DEPTH: usize = 64;

/// Counts what an evaluation allocates, against [`MAX_MEMORY`].
#[derive(Debug, Default)]
pub(crate) struct Memory {
    used: usize,
}

impl Memory {
    /// Accounts for a string of `bytes` built by `what`, before it is built.
    pub fn string(&mut self, what: &str, bytes: usize) -> Result<(), String> {
        if bytes > MAX_STRING {
            return Err(format!(
                "{what}: the result would be {bytes} bytes; the limit is {MAX_STRING} bytes (1 MiB)"
            ));
        }
        self.other(bytes)
    }

    /// Accounts for any other allocation of `bytes`.
    pub fn other(&mut self, bytes: usize) -> Result<(), String> {
        self.used = self.used.saturating_add(bytes);
        if self.used > MAX_MEMORY {
            return Err(format!(
                "the expression needs more than {MAX_MEMORY} bytes (16 MiB) of memory, the limit"
            ));
        }
        Ok(())
    }
}

/// At most `max` characters of `s`, for quoting user text in a message.
fn shown(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

/// `contains(search, item)`: a case-insensitive substring test when both are
/// primitives, loose equality with any element when `search` is an array, false
/// otherwise.
pub(crate) fn contains(search: &Val, item: &Val) -> bool {
    match search {
        Val::Arr(items) => items
            .iter()
            .any(|j| super::value::loose_eq(&Val::borrowed(j), item)),
        Val::Filtered(items) => items.iter().any(|v| super::value::loose_eq(v, item)),
        s if s.is_primitive() && item.is_primitive() => {
            fold(&s.to_text()).contains(&fold(&item.to_text()))
        }
        _ => false,
    }
}

/// `startsWith` (`prefix` true) and `endsWith`: case-insensitive, primitives only.
pub(crate) fn affix(s: &Val, affix: &Val, prefix: bool) -> bool {
    if !s.is_primitive() || !affix.is_primitive() {
        return false;
    }
    let (s, a) = (fold(&s.to_text()), fold(&affix.to_text()));
    if prefix {
        s.starts_with(&a)
    } else {
        s.ends_with(&a)
    }
}

pub(crate) enum Piece {
    Lit(std::ops::Range<usize>),
    Arg(usize),
}

/// Reads a `format()` string: literal ranges and `{N}` placeholders, `{{` and
/// `}}` for literal braces; anything else is an error, as is a placeholder for
/// an argument that was not given. GitHub evaluates only the arguments the
/// string refers to, so the caller evaluates them after this.
pub(crate) fn format_plan(fmt: &str, arg_count: usize) -> Result<Vec<Piece>, String> {
    let b = fmt.as_bytes();
    let quoted = || shown(fmt, 60);
    let mut pieces = Vec::new();
    let (mut i, mut lit) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'{' if b.get(i + 1) == Some(&b'{') => {
                pieces.push(Piece::Lit(lit..i + 1));
                i += 2;
                lit = i;
            }
            b'{' => {
                let close = fmt[i + 1..].find('}').ok_or_else(|| {
                    format!("format: unclosed `{{` at position {i} in '{}' (write `{{{{` for a literal brace)", quoted())
                })?;
                let inner = &fmt[i + 1..i + 1 + close];
                let index = inner
                    .bytes()
                    .all(|c| c.is_ascii_digit())
                    .then(|| inner.parse::<usize>().ok())
                    .flatten()
                    .ok_or_else(|| {
                        format!("format: `{{{}}}` is not a placeholder like `{{0}}` (write `{{{{` for a literal brace)", shown(inner, 20))
                    })?;
                if index >= arg_count {
                    return Err(format!(
                        "format: placeholder `{{{index}}}` but only {arg_count} argument{} given",
                        if arg_count == 1 { "" } else { "s" }
                    ));
                }
                pieces.push(Piece::Lit(lit..i));
                pieces.push(Piece::Arg(index));
                i += close + 2;
                lit = i;
            }
            b'}' if b.get(i + 1) == Some(&b'}') => {
                pieces.push(Piece::Lit(lit..i + 1));
                i += 2;
                lit = i;
            }
            b'}' => {
                return Err(format!(
                "format: unmatched `}}` at position {i} in '{}' (write `}}}}` for a literal brace)",
                quoted()
            ))
            }
            _ => i += 1,
        }
    }
    pieces.push(Piece::Lit(lit..b.len()));
    Ok(pieces)
}

/// Builds a `format()` result from its plan and the arguments as text, after
/// checking its size.
pub(crate) fn format_build<'a>(
    fmt: &str,
    pieces: &[Piece],
    values: &[Cow<str>],
    mem: &mut Memory,
) -> Result<Val<'a>, String> {
    let len = pieces.iter().fold(0usize, |n, p| {
        n.saturating_add(match p {
            Piece::Lit(r) => r.len(),
            Piece::Arg(k) => values[*k].len(),
        })
    });
    mem.string("format()", len)?;
    let mut out = String::with_capacity(len);
    for p in pieces {
        match p {
            Piece::Lit(r) => out.push_str(&fmt[r.clone()]),
            Piece::Arg(k) => out.push_str(&values[*k]),
        }
    }
    Ok(Val::Str(Cow::Owned(out)))
}

/// `join(array, sep)`: the elements as text between `sep` (default `,`; a
/// non-primitive separator also means `,`). A primitive joins to itself, an
/// object to "".
pub(crate) fn join<'a>(args: &[Val<'a>], mem: &mut Memory) -> Result<Val<'a>, String> {
    let sep: Cow<str> = match args.get(1) {
        Some(v) if v.is_primitive() => v.to_text(),
        _ => Cow::Borrowed(","),
    };
    let items: Vec<Val> = match &args[0] {
        Val::Arr(a) => a.iter().map(Val::borrowed).collect(),
        Val::Filtered(items) => items.clone(),
        Val::Obj(_) | Val::ObjWith(..) => return Ok(Val::Str(Cow::Borrowed(""))),
        v => return Ok(Val::Str(Cow::Owned(v.to_text().into_owned()))),
    };
    let texts: Vec<Cow<str>> = items.iter().map(Val::to_text).collect();
    let len = texts
        .iter()
        .fold(0usize, |n, t| n.saturating_add(t.len()))
        .saturating_add(sep.len().saturating_mul(texts.len().saturating_sub(1)));
    mem.string("join()", len)?;
    let mut out = String::with_capacity(len);
    for (i, t) in texts.iter().enumerate() {
        if i > 0 {
            out.push_str(&sep);
        }
        out.push_str(t);
    }
    Ok(Val::Str(Cow::Owned(out)))
}

/// A byte buffer that refuses to grow past a cap, so serializing a huge value
/// stops at the limit instead of allocating it all.
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_STRING {
            return Err(std::io::Error::other("limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `toJSON(value)`: pretty-printed JSON, two-space indent, as GitHub prints it.
pub(crate) fn to_json<'a>(v: &Val, mem: &mut Memory) -> Result<Val<'a>, String> {
    let mut out = Capped(Vec::new());
    serde_json::to_writer_pretty(&mut out, &AsJson(v)).map_err(|_| {
        format!("toJSON(): the result would be more than {MAX_STRING} bytes; the limit is {MAX_STRING} bytes (1 MiB)")
    })?;
    mem.string("toJSON()", out.0.len())?;
    let text = String::from_utf8(out.0).map_err(|e| format!("toJSON(): {e}"))?;
    Ok(Val::Str(Cow::Owned(text)))
}

/// What parsing JSON text will build, read without parsing it: the deepest
/// nesting of `[`/`{`, and the number of values (roughly: brackets and commas
/// outside strings, plus one).
fn json_shape(text: &str) -> (usize, usize) {
    let (mut depth, mut max, mut values) = (0usize, 0usize, 1usize);
    let (mut in_str, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
                values += 1;
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' => values += 1,
            _ => {}
        }
    }
    (max, values)
}

/// The memory one parsed JSON value may take, for accounting (a `Value` and its
/// share of the map or vector holding it).
const JSON_VALUE_COST: usize = 80;

/// `fromJSON(text)`: the value the JSON text describes. The text's size and
/// nesting are checked before it is parsed.
pub(crate) fn from_json(v: &Val, mem: &mut Memory) -> Result<Val<'static>, String> {
    let text = v.to_text();
    if text.len() > MAX_STRING {
        return Err(format!(
            "fromJSON(): the text is {} bytes; the limit is {MAX_STRING} bytes (1 MiB)",
            text.len()
        ));
    }
    let (depth, values) = json_shape(&text);
    if depth > MAX_JSON_DEPTH {
        return Err(format!(
            "fromJSON(): the JSON nests {depth} levels deep; the limit is {MAX_JSON_DEPTH}"
        ));
    }
    mem.other(
        values
            .saturating_mul(JSON_VALUE_COST)
            .saturating_add(text.len()),
    )?;
    // GitHub reads the first JSON value and ignores what follows it.
    let first = serde_json::Deserializer::from_str(&text)
        .into_iter::<Json>()
        .next()
        .unwrap_or_else(|| serde_json::from_str::<Json>(""));
    let parsed =
        first.map_err(|e| format!("fromJSON: '{}' is not valid JSON: {e}", shown(&text, 40)))?;
    Ok(Val::owned(parsed))
}

/// `hashFiles(patterns…)`.
pub(crate) fn hash_files_fn(workspace: &Path, args: &[Val]) -> Result<Val<'static>, String> {
    let patterns: Vec<String> = args.iter().map(|p| p.to_text().into_owned()).collect();
    hash_files(workspace, &patterns)
        .map(|h| Val::Str(Cow::Owned(h)))
        .map_err(|e| format!("hashFiles: {e}"))
}

/// A glob as GitHub's `@actions/glob` reads it: `**` is "any directories" only as
/// a whole path segment; inside a segment (`dir-**`) it is a plain `*`.
fn normalize_pattern(pat: &str) -> String {
    pat.split('/')
        .map(|seg| {
            if seg == "**" || !seg.contains("**") {
                return seg.to_string();
            }
            let mut out = String::with_capacity(seg.len());
            for c in seg.chars() {
                if !(c == '*' && out.ends_with('*')) {
                    out.push(c);
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether `rel` (a file's path relative to the workspace) or one of its parent
/// directories matches: a pattern naming a directory takes every file in it.
fn matches_path(set: &globset::GlobSet, rel: &str) -> bool {
    if set.is_match(rel) {
        return true;
    }
    rel.match_indices('/').any(|(i, _)| set.is_match(&rel[..i]))
}

/// SHA-256 over the contents of the files under `workspace` matching `patterns`
/// (globs relative to the workspace; a leading `!` excludes), in sorted path order.
/// Like GitHub, each file is hashed and the digests are hashed again, so the result
/// depends on contents and order, not on file names; a pattern that matches a
/// directory takes the files inside it. Unlike GitHub, `.gitignore` is honoured
/// (a `target/` or `node_modules/` would otherwise be read whole), and `.git/`
/// and `.trun/` are never included. "" when nothing matches. Files are read in
/// chunks, so a huge file costs time, not memory.
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
        let pat = normalize_pattern(pat);
        let glob = globset::GlobBuilder::new(&pat)
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
        if matches_path(&include, &rel) && !matches_path(&exclude, &rel) {
            files.push((rel, entry.into_path()));
        }
    }
    if files.is_empty() {
        return Ok(String::new());
    }
    files.sort();
    let mut outer = Sha256::new();
    for (rel, path) in &files {
        let mut inner = Sha256::new();
        std::fs::File::open(path)
            .and_then(|mut f| std::io::copy(&mut f, &mut inner))
            .map_err(|e| format!("cannot read `{rel}`: {e}"))?;
        outer.update(inner.finalize());
    }
    Ok(hex::encode(outer.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Val<'_> {
        Val::Str(Cow::Borrowed(x))
    }

    fn fmt(f: &str, args: &[&str]) -> Result<String, String> {
        let pieces = format_plan(f, args.len())?;
        let values: Vec<Cow<str>> = args.iter().map(|a| Cow::Borrowed(*a)).collect();
        format_build(f, &pieces, &values, &mut Memory::default()).map(|v| v.to_text().into_owned())
    }

    #[test]
    fn format_placeholders_and_escapes() {
        assert_eq!(
            fmt("{0} and {1} and {0}", &["a", "b"]).unwrap(),
            "a and b and a"
        );
        assert_eq!(fmt("{{0}} {{{1}}}", &["a", "b"]).unwrap(), "{0} {b}");
        assert_eq!(
            fmt("{2}", &["a", "b"]).unwrap_err(),
            "format: placeholder `{2}` but only 2 arguments given"
        );
        assert!(fmt("{x}", &[]).unwrap_err().contains("not a placeholder"));
        assert!(fmt("a } b", &[]).unwrap_err().contains("unmatched `}`"));
        assert!(fmt("a { b", &[]).unwrap_err().contains("unclosed"));
    }

    #[test]
    fn format_refuses_a_huge_result_before_building_it() {
        let many = "{0}".repeat(7000);
        let big = "x".repeat(MAX_STRING);
        let e = fmt(&many, &[&big]).unwrap_err();
        assert_eq!(
            e,
            "format(): the result would be 7340032000 bytes; the limit is 1048576 bytes (1 MiB)"
        );
    }

    #[test]
    fn from_json_bounds_depth() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let e = from_json(&s(&deep), &mut Memory::default()).unwrap_err();
        assert_eq!(
            e,
            "fromJSON(): the JSON nests 100 levels deep; the limit is 64"
        );
        assert_eq!(json_shape(r#"{"a": "[[,[[", "b": [1, {"c": 2}]}"#), (3, 6));
        // Many tiny values cost more than their text: counted before parsing.
        let many = format!("[{}[]]", "[],".repeat(300_000));
        let e = from_json(&s(&many), &mut Memory::default()).unwrap_err();
        assert!(e.ends_with("of memory, the limit"), "{e}");
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

        // A pattern matching a directory takes the files inside it, also when
        // `**` is part of a name (`dir-**`), as GitHub's glob does.
        std::fs::create_dir_all(root.join("dir-x/sub")).unwrap();
        std::fs::write(root.join("dir-x/sub/c.txt"), "c").unwrap();
        let mut only_c = Sha256::new();
        only_c.update(Sha256::digest(b"c"));
        let only_c = hex::encode(only_c.finalize());
        assert_eq!(hash_files(root, &pats(&["dir-**"])).unwrap(), only_c);
        assert_eq!(hash_files(root, &pats(&["dir-x"])).unwrap(), only_c);
        assert_eq!(
            hash_files(root, &pats(&["dir-x", "!dir-x/sub"])).unwrap(),
            ""
        );
        assert!(hash_files(root, &pats(&["../x"])).is_err());
    }
}
