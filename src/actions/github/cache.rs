//! `actions/cache`, `actions/cache/restore` and `actions/cache/save` on trun's
//! content-addressed store (`.trun/cas`): an entry is a manifest (each file's place, hash
//! and mode) kept in the state store's key-value table under its key, and the files'
//! bytes are CAS objects. Semantics as on GitHub: an exact `key` hit restores and sets
//! `cache-hit` to `true`; otherwise the newest entry whose key starts with one of the
//! `restore-keys` (tried in order) is restored with `cache-hit` `false`; after a miss,
//! `actions/cache` saves `path` under `key` when the job succeeds (a job-end hook), and an
//! existing key is never overwritten. Entries are scoped by the `path` input, as GitHub
//! scopes them by version.
//!
//! Paths are hostile: a `path` line may name the workspace (relative) or the home directory
//! (`~/.cargo/registry`), nothing else; `..` is refused; symbolic links are neither saved
//! nor followed, and restoring never writes through one (see [`crate::uptodate::cas`]).
//! A manifest read back from the store is checked the same way.

use super::checkout::relative;
use super::{Ctx, Done};
use crate::event::Stream;
use crate::uptodate::cas::Cas;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The most files one cache entry holds.
const MAX_FILES: usize = 200_000;
/// The longest key GitHub accepts.
const MAX_KEY: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Base {
    Workspace,
    Home,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    base: Base,
    path: String,
    hash: String,
    mode: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    key: String,
    bytes: u64,
    files: Vec<Entry>,
}

/// What `actions/cache` saves when the job succeeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingSave {
    key: String,
    paths: String,
}

/// One line of `path`, resolved: its base and the pattern below it.
pub(super) struct PathLine {
    pub(super) base: Base,
    pub(super) pattern: String,
    pub(super) exclude: bool,
}

pub(super) fn parse_paths(paths: &str, ctx: &Ctx<'_>) -> Result<Vec<PathLine>, String> {
    let mut out = Vec::new();
    for line in paths.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (exclude, l) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let (base, rest) = if let Some(r) = l.strip_prefix("~/") {
            (Base::Home, r.to_string())
        } else if l == "~" {
            (Base::Home, String::new())
        } else if let Some(abs) = l.strip_prefix('/') {
            let abs = Path::new("/").join(abs);
            if let Ok(r) = abs.strip_prefix(&ctx.workspace) {
                (Base::Workspace, r.to_string_lossy().into_owned())
            } else if let Some(r) = ctx.home.as_ref().and_then(|h| abs.strip_prefix(h).ok()) {
                (Base::Home, r.to_string_lossy().into_owned())
            } else {
                return Err(format!(
                    "path `{line}` is outside the workspace and the home directory; trun caches nothing else"
                ));
            }
        } else {
            (Base::Workspace, l.to_string())
        };
        if base == Base::Home && ctx.in_container {
            return Err(format!(
                "path `{line}` is in the home directory, which in a job container is not this machine's; cache paths below the workspace"
            ));
        }
        if Path::new(&rest)
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!("path `{line}` leaves its directory (`..`)"));
        }
        out.push(PathLine {
            base,
            pattern: rest
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string(),
            exclude,
        });
    }
    if out.iter().all(|p| p.exclude) {
        return Err("`path` names nothing to cache".into());
    }
    Ok(out)
}

pub(super) fn base_dir(base: Base, ctx: &Ctx<'_>) -> Result<PathBuf, String> {
    match base {
        Base::Workspace => Ok(ctx.workspace.clone()),
        Base::Home => ctx
            .home
            .clone()
            .ok_or_else(|| "a `~` path, but HOME is not set".to_string()),
    }
}

pub(super) fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// Every regular file the `path` lines match, with its base and relative path, sorted.
/// Symbolic links are not followed and not saved (counted in the second value).
pub(super) fn collect(
    lines: &[PathLine],
    ctx: &Ctx<'_>,
) -> Result<(Vec<(Base, String)>, usize), String> {
    let mut found: BTreeMap<(u8, String), Base> = BTreeMap::new();
    let mut links = 0;
    for base in [Base::Workspace, Base::Home] {
        let mine: Vec<&PathLine> = lines.iter().filter(|l| l.base == base).collect();
        if !mine.iter().any(|l| !l.exclude) {
            continue;
        }
        let dir = base_dir(base, ctx)?;
        let glob = |l: &PathLine| {
            let p = if l.pattern.is_empty() {
                "**".to_string()
            } else {
                l.pattern.clone()
            };
            // A matched directory brings everything below it.
            globset::GlobBuilder::new(&p)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("path `{}`: {e}", l.pattern))
        };
        let mut include = globset::GlobSetBuilder::new();
        let mut exclude = globset::GlobSetBuilder::new();
        for l in &mine {
            let g = glob(l)?;
            if l.exclude {
                exclude.add(g);
            } else {
                include.add(g);
            }
        }
        let include = include.build().map_err(|e| e.to_string())?;
        let exclude = exclude.build().map_err(|e| e.to_string())?;
        // Walk only from the literal start of each pattern, not the whole home directory.
        let starts: Vec<String> = mine
            .iter()
            .filter(|l| !l.exclude)
            .map(|l| {
                let lit: Vec<&str> = l.pattern.split('/').take_while(|p| !has_glob(p)).collect();
                lit.join("/")
            })
            .collect();
        for start in starts {
            let rel = relative(&start).map_err(|why| format!("path `{start}` {why}"))?;
            let from = match &rel {
                Some(r) => dir.join(r),
                None => dir.clone(),
            };
            crate::fsutil::no_symlink_below(&dir, &from).map_err(|e| e.to_string())?;
            let mut stack = vec![from];
            while let Some(p) = stack.pop() {
                let Ok(meta) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                let r = p
                    .strip_prefix(&dir)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                if meta.file_type().is_symlink() {
                    links += 1;
                } else if meta.is_dir() {
                    // `.trun` holds the cache itself.
                    if base == Base::Workspace && r == ".trun" {
                        continue;
                    }
                    for e in std::fs::read_dir(&p).map_err(|e| format!("{}: {e}", p.display()))? {
                        stack.push(e.map_err(|e| e.to_string())?.path());
                    }
                } else if meta.is_file() {
                    let matched = include.is_match(&r)
                        || Path::new(&r)
                            .ancestors()
                            .skip(1)
                            .any(|a| !a.as_os_str().is_empty() && include.is_match(a));
                    let excluded = exclude.is_match(&r)
                        || Path::new(&r)
                            .ancestors()
                            .skip(1)
                            .any(|a| !a.as_os_str().is_empty() && exclude.is_match(a));
                    if matched && !excluded {
                        found.insert((base as u8, r), base);
                        if found.len() > MAX_FILES {
                            return Err(format!("`path` matches more than {MAX_FILES} files"));
                        }
                    }
                }
            }
        }
    }
    Ok((found.into_iter().map(|((_, r), b)| (b, r)).collect(), links))
}

/// The key's scope: entries saved with other `path`s are other entries.
fn scoped(paths: &str, key: &str) -> String {
    let norm: Vec<&str> = paths
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let h = hex::encode(Sha256::digest(norm.join("\n").as_bytes()));
    format!("cache/{}/{key}", &h[..16])
}

fn check_key(key: &str, what: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err(format!("`{what}` is empty"));
    }
    if key.len() > MAX_KEY {
        return Err(format!("`{what}` is longer than {MAX_KEY} characters"));
    }
    if key.contains(',') {
        return Err(format!(
            "`{what}` contains a comma, which GitHub does not allow in keys"
        ));
    }
    Ok(())
}

/// Which variant: the whole action, only restore, only save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Both,
    Restore,
    Save,
}

pub(super) fn run(
    variant: Variant,
    input: &(dyn Fn(&str) -> String + Sync),
    ctx: &Ctx<'_>,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<Done, String> {
    let key = input("key");
    check_key(&key, "key")?;
    let paths = input("path");
    let lines = parse_paths(&paths, ctx)?;
    let mut outputs = BTreeMap::new();
    if variant == Variant::Save {
        save(&PendingSave { key, paths }, ctx, out)?;
        return Ok(Done {
            outputs,
            post: None,
        });
    }
    let restore_keys: Vec<String> = input("restore-keys")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    for k in &restore_keys {
        check_key(k, "restore-keys")?;
    }
    let exact = ctx.memory.get(&scoped(&paths, &key));
    let (found, hit) = match exact {
        Some(m) => (Some(m), true),
        None => {
            let mut m = None;
            for k in &restore_keys {
                if let Some((_, v)) = ctx.memory.newest_with_prefix(&scoped(&paths, k)) {
                    m = Some(v);
                    break;
                }
            }
            (m, false)
        }
    };
    let manifest: Option<Manifest> = found.and_then(|m| serde_json::from_str(&m).ok());
    let lookup_only = input("lookup-only") == "true";
    let restored = match &manifest {
        Some(m) if lookup_only => {
            out(
                Stream::Stdout,
                format!("cache entry {} exists (lookup-only: not restored)", m.key),
            );
            true
        }
        Some(m) => restore(m, &lines, ctx, out)?,
        None => false,
    };
    let hit = hit && restored;
    let matched = manifest
        .as_ref()
        .filter(|_| restored)
        .map(|m| m.key.clone());
    if matched.is_none() {
        out(
            Stream::Stdout,
            format!(
                "cache not found for key {key}{}",
                if restore_keys.is_empty() {
                    String::new()
                } else {
                    format!(" nor restore-keys {}", restore_keys.join(", "))
                }
            ),
        );
        if input("fail-on-cache-miss") == "true" {
            return Err(format!(
                "cache miss for key {key} and `fail-on-cache-miss` is true"
            ));
        }
    }
    outputs.insert("cache-hit".into(), hit.to_string());
    outputs.insert("cache-primary-key".into(), key.clone());
    outputs.insert("cache-matched-key".into(), matched.unwrap_or_default());
    let post = (variant == Variant::Both && !hit && !lookup_only)
        .then(|| serde_json::to_value(PendingSave { key, paths }).unwrap_or_default());
    Ok(Done { outputs, post })
}

fn restore(
    m: &Manifest,
    lines: &[PathLine],
    ctx: &Ctx<'_>,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<bool, String> {
    for e in &m.files {
        let ok = relative(&e.path).ok().flatten().is_some()
            && hex::decode(&e.hash).is_ok_and(|h| h.len() == 32)
            && lines.iter().any(|l| l.base == e.base);
        if !ok {
            return Err(format!(
                "cache entry {} is damaged (bad path `{}`)",
                m.key, e.path
            ));
        }
    }
    let mut restored = 0;
    for e in &m.files {
        let base = base_dir(e.base, ctx)?;
        let cas = Cas::new(&ctx.cas_dir).with_root(&base);
        let hash: [u8; 32] = hex::decode(&e.hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .unwrap_or_default();
        match cas.restore(&hash, &base.join(&e.path), e.mode & 0o777) {
            Ok(true) => restored += 1,
            Ok(false) => {
                out(Stream::Stderr, format!("cache entry {}: object of {} is gone (`trun cache prune`?); treated as a miss", m.key, e.path));
                return Ok(false);
            }
            Err(err) => return Err(format!("cannot restore {}: {err}", e.path)),
        }
    }
    out(
        Stream::Stdout,
        format!(
            "restored cache {} ({restored} files, {})",
            m.key,
            crate::size::format(m.bytes)
        ),
    );
    Ok(true)
}

/// Saves `path` under `key` (the end-of-job hook of `actions/cache`, and `actions/cache/save`).
pub fn save(
    p: &PendingSave,
    ctx: &Ctx<'_>,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<(), String> {
    let kv = scoped(&p.paths, &p.key);
    if ctx.memory.get(&kv).is_some() {
        out(
            Stream::Stdout,
            format!("cache {} exists already; not saved again", p.key),
        );
        return Ok(());
    }
    let lines = parse_paths(&p.paths, ctx)?;
    let (files, links) = collect(&lines, ctx)?;
    if files.is_empty() {
        out(
            Stream::Stderr,
            format!(
                "warning: `path` matched no files; cache {} not saved",
                p.key
            ),
        );
        return Ok(());
    }
    let mut m = Manifest {
        key: p.key.clone(),
        ..Default::default()
    };
    for (base, rel) in files {
        let abs = base_dir(base, ctx)?.join(&rel);
        let meta =
            std::fs::symlink_metadata(&abs).map_err(|e| format!("{}: {e}", abs.display()))?;
        let hash = Cas::new(&ctx.cas_dir)
            .store(&abs, None)
            .map_err(|e| format!("cannot cache {rel}: {e}"))?;
        m.bytes += meta.len();
        m.files.push(Entry {
            base,
            path: rel,
            hash: hex::encode(hash),
            mode: meta.permissions().mode() & 0o777,
        });
    }
    let text = serde_json::to_string(&m).map_err(|e| e.to_string())?;
    ctx.memory.set(&kv, &text);
    out(
        Stream::Stdout,
        format!(
            "saved cache {} ({} files, {}{})",
            p.key,
            m.files.len(),
            crate::size::format(m.bytes),
            if links > 0 {
                format!("; {links} symbolic links not saved")
            } else {
                String::new()
            }
        ),
    );
    Ok(())
}
