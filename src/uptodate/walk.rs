//! The file index: which files a step's `sources` and `generates` patterns name.
//!
//! Patterns are globs relative to the workspace root (`**`, `{a,b}`, `!negation`, and
//! `*` does not cross `/`). A pattern's literal prefix decides the directory that is
//! walked (`src/**/*.rs` walks `src/`), so a step never pays for the rest of the tree.
//! Source walks honour `.gitignore`, `.ignore` and `.git/info/exclude` even outside a
//! git repository; `.git/` and `.trun/` are never entered. Output walks (`generates`)
//! apply no ignore files, because build outputs are usually git-ignored.
//!
//! This module lists files and their `stat`; it does not hash or cache anything across
//! invocations (that is `statcache` and `walkcache`, which a traced walk feeds), and it
//! does not decide whether a step runs.

use super::statcache::FileStat;
use super::UpToDateError;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use ignore::WalkBuilder;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One regular file found by a walk. `rel` is relative to the workspace root and uses `/`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub rel: String,
    pub abs: PathBuf,
    pub stat: FileStat,
}

/// A step's compiled `sources` (or `generates`) patterns.
#[derive(Debug)]
pub struct Patterns {
    positive: GlobSet,
    negative: GlobSet,
    /// Directories (relative, `""` for the workspace root) whose pattern was `DIR/**`:
    /// every file below them matches, with no glob to compile or run. The commonest
    /// `sources` form, and compiling a glob set per step cost more than the match.
    everything_below: Vec<String>,
    /// Directories (relative, `""` for the workspace root) to walk for the glob patterns.
    pub roots: Vec<String>,
    /// Patterns without glob syntax: a file is taken as named (even if ignored), a
    /// directory stands for everything below it.
    pub literals: Vec<String>,
}

fn is_glob_component(c: &str) -> bool {
    c.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

/// `./src//a` -> `src/a`; `.` and `./` -> ``.
pub fn normalize(pattern: &str) -> String {
    pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

pub fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl Patterns {
    pub fn parse(patterns: &[String]) -> Result<Patterns, UpToDateError> {
        let mut positive = GlobSetBuilder::new();
        let mut negative = GlobSetBuilder::new();
        let mut roots: Vec<String> = Vec::new();
        let mut literals = Vec::new();
        let mut everything_below = Vec::new();
        let glob = |p: &str| {
            GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|source| UpToDateError::Glob {
                    pattern: p.to_string(),
                    source,
                })
        };
        for raw in patterns {
            if let Some(neg) = raw.strip_prefix('!') {
                let p = normalize(neg);
                negative.add(glob(&p)?);
                // `!build` excludes everything below a directory too, like go-task.
                negative.add(glob(&format!("{p}/**"))?);
                continue;
            }
            let p = normalize(raw);
            let components: Vec<&str> = p.split('/').collect();
            match components.iter().position(|c| is_glob_component(c)) {
                None => {
                    positive.add(glob(&p)?);
                    positive.add(glob(&format!("{p}/**"))?);
                    literals.push(p);
                }
                Some(first_glob) => {
                    let root = components[..first_glob].join("/");
                    // `DIR/**` (or `**`): `**` as the last component matches any path
                    // below DIR, dot files included; checked, not assumed, in the tests.
                    if first_glob + 1 == components.len() && components[first_glob] == "**" {
                        glob(&p)?;
                        everything_below.push(root.clone());
                    } else {
                        positive.add(glob(&p)?);
                    }
                    roots.push(root);
                }
            }
        }
        roots.sort();
        roots.dedup();
        // A root below another root adds nothing: `src/**` already covers `src/a/*.rs`.
        let all = roots.clone();
        roots.retain(|r| !all.iter().any(|a| a != r && is_under(r, a)));
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|source| UpToDateError::Glob {
                pattern: patterns.join(", "),
                source,
            })
        };
        Ok(Patterns {
            positive: build(positive)?,
            negative: build(negative)?,
            everything_below,
            roots,
            literals,
        })
    }

    pub fn matches(&self, rel: &str) -> bool {
        let below = |dir: &String| {
            dir.is_empty()
                || (rel.starts_with(dir.as_str()) && rel.as_bytes().get(dir.len()) == Some(&b'/'))
        };
        (self.everything_below.iter().any(below)
            || (!self.positive.is_empty() && self.positive.is_match(rel)))
            && (self.negative.is_empty() || !self.negative.is_match(rel))
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty() && self.literals.is_empty()
    }
}

/// Whether relative directory `path` is `dir` or below it (`""` is the workspace root).
pub fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path == dir
        || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

fn never_enter(name: &std::ffi::OsStr) -> bool {
    name == ".git" || name == ".trun"
}

/// How a walk treats ignore files.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Filters {
    /// `sources`: .gitignore, .ignore and .git/info/exclude apply.
    IgnoreFiles,
    /// `generates`: every file counts.
    None,
}

fn builder(root: &Path, filters: Filters) -> WalkBuilder {
    let mut b = WalkBuilder::new(root);
    let honour = filters == Filters::IgnoreFiles;
    b.standard_filters(false)
        .hidden(false)
        .parents(honour)
        .ignore(honour)
        .git_ignore(honour)
        .git_exclude(honour)
        // A user's global excludes file differs between machines; a fingerprint must not.
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|e| {
            !(e.file_type().is_some_and(|t| t.is_dir()) && never_enter(e.file_name()))
        });
    b
}

/// The directory of the entries a walker thread is visiting, held open so that its
/// files are stat'ed by name relative to it (`fstatat`) rather than by their full
/// path, which the kernel would resolve component by component for every file: the
/// walker visits a directory's files one after the other. Owned by one walk (never
/// kept across walks: a directory replaced between two walks must not be read
/// through the old one's descriptor).
#[derive(Default)]
struct DirCache {
    dir: Option<(PathBuf, std::os::fd::OwnedFd)>,
}

impl DirCache {
    /// `lstat` of `path`, through its parent directory's descriptor: `Some(None)`
    /// when it is not a regular file, `None` when it cannot be read that way (the
    /// caller falls back to the full path).
    fn lstat(&mut self, path: &Path) -> Option<Option<FileStat>> {
        use nix::fcntl::{AtFlags, OFlag};
        use std::os::unix::ffi::OsStrExt;
        let (parent, name) = (path.parent()?, path.file_name()?);
        let same = self
            .dir
            .as_ref()
            .is_some_and(|(p, _)| p.as_os_str().as_bytes() == parent.as_os_str().as_bytes());
        if !same {
            self.dir = None;
            let fd = nix::fcntl::open(
                parent,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .ok()?;
            self.dir = Some((parent.to_path_buf(), fd));
        }
        let (_, fd) = self.dir.as_ref()?;
        let st = nix::sys::stat::fstatat(fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        Some(FileStat::from_stat(&st))
    }
}

/// What one walker result was, for a traced walk (see [`Walked`]).
enum Seen {
    Nothing,
    File(Entry),
    /// A symbolic link (abs path), with the regular file it resolves to, if any.
    Link(PathBuf, Option<Entry>),
    /// A directory the walker will enter, with its `stat` taken now.
    Dir(PathBuf, Option<std::fs::Metadata>),
}

/// Turns one walker result into what it is: a regular file becomes an [`Entry`], a
/// symlink to a regular file too (its content is what a build reads); directories are
/// stat'ed only when `trace` (see [`Walked`]); dangling links and special files count
/// for nothing.
fn entry_of(
    base: &Path,
    result: Result<ignore::DirEntry, ignore::Error>,
    dirs: &mut DirCache,
    trace: bool,
) -> Result<Seen, UpToDateError> {
    let dent = match result {
        Ok(d) => d,
        Err(err) => {
            // A malformed line in an ignore file is reported by the walker but only
            // affects that line; an unreadable directory would silently drop sources.
            return match err.io_error() {
                Some(io) if io.kind() == std::io::ErrorKind::NotFound => Ok(Seen::Nothing),
                Some(_) => Err(UpToDateError::Walk {
                    path: base.to_path_buf(),
                    message: err.to_string(),
                }),
                None => Ok(Seen::Nothing),
            };
        }
    };
    let Some(ft) = dent.file_type() else {
        return Ok(Seen::Nothing);
    };
    if ft.is_dir() {
        if !trace {
            return Ok(Seen::Nothing);
        }
        let meta = std::fs::metadata(dent.path()).ok();
        return Ok(Seen::Dir(dent.into_path(), meta));
    }
    let stat = if ft.is_file() {
        match dirs.lstat(dent.path()) {
            Some(st) => st,
            None => dent
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| FileStat::from_metadata(&m)),
        }
    } else if ft.is_symlink() {
        std::fs::metadata(dent.path())
            .ok()
            .filter(|m| m.is_file())
            .map(|m| FileStat::from_metadata(&m))
    } else {
        return Ok(Seen::Nothing);
    };
    let entry = match (stat, strip_base(dent.path(), base)) {
        (Some(stat), Some(rel)) => Some(Entry {
            rel: rel_string(rel),
            stat,
            abs: dent.path().to_path_buf(),
        }),
        _ => None,
    };
    Ok(match entry {
        _ if ft.is_symlink() => Seen::Link(dent.into_path(), entry),
        Some(e) => Seen::File(e),
        None => Seen::Nothing,
    })
}

/// `path` relative to `base`, which it was built from by joining (the walker joins
/// names onto the walked directory): a byte prefix and a `/`, so no component-wise
/// comparison (`Path::strip_prefix` was 6% of a no-op's instructions). Falls back to
/// `strip_prefix` for anything else (`.`/`..` or doubled `/` in `base`).
pub(super) fn strip_base<'a>(path: &'a Path, base: &Path) -> Option<&'a Path> {
    use std::os::unix::ffi::OsStrExt;
    let (p, b) = (path.as_os_str().as_bytes(), base.as_os_str().as_bytes());
    let clean = !b.is_empty()
        && !b.windows(2).any(|w| w == b"//")
        && !b.split(|&c| c == b'/').any(|c| c == b"." || c == b"..");
    if clean {
        let rest = p.strip_prefix(b)?;
        let rest = if b.ends_with(b"/") {
            rest
        } else {
            rest.strip_prefix(b"/")
                .or(if rest.is_empty() { Some(rest) } else { None })?
        };
        if !rest.starts_with(b"/") {
            return Some(Path::new(std::ffi::OsStr::from_bytes(rest)));
        }
    }
    path.strip_prefix(base).ok()
}

/// `/`-separated, lossily decoded: a non-UTF-8 name still gets a stable key and is
/// hashed from its real path.
pub fn rel_string(rel: &Path) -> String {
    let s = rel.to_string_lossy();
    if std::path::MAIN_SEPARATOR == '/' {
        s.into_owned()
    } else {
        s.replace(std::path::MAIN_SEPARATOR, "/")
    }
}

/// What a traced walk saw besides its files: every directory it entered (with its
/// `stat`, taken before the directory was read) and every symbolic link it met,
/// wherever it points. With these the walk cache can tell later whether the same walk
/// would still find the same files (see `walkcache`).
#[derive(Default)]
pub struct Walked {
    /// Regular files (and links to them), sorted by relative path.
    pub entries: Vec<Entry>,
    pub dirs: Vec<(PathBuf, Option<std::fs::Metadata>)>,
    pub links: Vec<PathBuf>,
}

impl Walked {
    fn take(&mut self, seen: Seen) {
        match seen {
            Seen::Nothing => {}
            Seen::File(e) => self.entries.push(e),
            Seen::Link(path, e) => {
                self.links.push(path);
                self.entries.extend(e);
            }
            Seen::Dir(path, meta) => self.dirs.push((path, meta)),
        }
    }
}

/// All regular files below `base/root`, sorted by relative path. Walks on one thread
/// when `parallel` is false (cheap for the many small roots of a typical project) and
/// with ignore's parallel walker otherwise (one big root: the stats then use all cores).
pub fn walk(
    base: &Path,
    root: &str,
    filters: Filters,
    parallel: bool,
) -> Result<Vec<Entry>, UpToDateError> {
    Ok(walk_traced(base, root, filters, parallel, false)?.entries)
}

/// [`walk`], also noting the directories entered and the links met when `trace`.
pub fn walk_traced(
    base: &Path,
    root: &str,
    filters: Filters,
    parallel: bool,
    trace: bool,
) -> Result<Walked, UpToDateError> {
    let dir = if root.is_empty() {
        base.to_path_buf()
    } else {
        base.join(root)
    };
    if !dir.is_dir() {
        return Ok(Walked::default());
    }
    let b = builder(&dir, filters);
    let mut walked = Walked::default();
    if parallel {
        let found: Mutex<Walked> = Mutex::new(Walked::default());
        let failed: Mutex<Option<UpToDateError>> = Mutex::new(None);
        let (found_in, failed_in) = (&found, &failed);
        b.build_parallel().run(|| {
            let mut dirs = DirCache::default();
            Box::new(move |result| {
                match entry_of(base, result, &mut dirs, trace) {
                    Ok(Seen::Nothing) => {}
                    Ok(seen) => found_in
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take(seen),
                    Err(err) => {
                        *failed_in.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
                        return ignore::WalkState::Quit;
                    }
                }
                ignore::WalkState::Continue
            })
        });
        if let Some(err) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(err);
        }
        walked = found.into_inner().unwrap_or_else(|p| p.into_inner());
    } else {
        let mut dirs = DirCache::default();
        for result in b.build() {
            walked.take(entry_of(base, result, &mut dirs, trace)?);
        }
    }
    walked.entries.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
    Ok(walked)
}

/// A literal path that names a file: stat it (following symlinks). `None` when it is
/// missing, a directory or unreadable.
pub fn stat_file(base: &Path, rel: &str) -> Option<Entry> {
    if rel.split('/').any(|c| never_enter(c.as_ref())) {
        return None;
    }
    let abs = base.join(rel);
    let meta = std::fs::metadata(&abs).ok().filter(|m| m.is_file())?;
    Some(Entry {
        rel: rel.to_string(),
        stat: FileStat::from_metadata(&meta),
        abs,
    })
}

/// The files a step's `generates` names right now, sorted: literal files, everything
/// below literal directories, and glob matches, with no ignore files applied.
pub fn expand_outputs(base: &Path, patterns: &Patterns) -> Result<Vec<Entry>, UpToDateError> {
    let mut out = Vec::new();
    for lit in &patterns.literals {
        if let Some(e) = stat_file(base, lit) {
            out.push(e);
        } else if base.join(lit).is_dir() {
            out.extend(walk(base, lit, Filters::None, false)?);
        }
    }
    for root in &patterns.roots {
        out.extend(
            walk(base, root, Filters::None, false)?
                .into_iter()
                .filter(|e| patterns.matches(&e.rel)),
        );
    }
    out.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
    out.dedup_by(|a, b| a.rel == b.rel);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn pats(p: &[&str]) -> Patterns {
        Patterns::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn roots_come_from_the_literal_prefix() {
        let p = pats(&[
            "src/**/*.rs",
            "src/a/*.rs",
            "./lib/{x,y}.c",
            "Cargo.toml",
            "!src/gen/**",
        ]);
        assert_eq!(p.roots, vec!["lib", "src"]);
        assert_eq!(p.literals, vec!["Cargo.toml"]);
        assert!(p.matches("src/a/b/c.rs"));
        assert!(p.matches("lib/x.c") && !p.matches("lib/z.c"));
        assert!(!p.matches("src/gen/out.rs"), "negation wins");
        assert!(!p.matches("src/a.c"));
        assert_eq!(pats(&["**/*.rs"]).roots, vec![""]);
        assert_eq!(pats(&["*.rs"]).roots, vec![""]);
        assert!(
            !pats(&["*.rs"]).matches("src/a.rs"),
            "`*` does not cross `/`"
        );
    }

    #[test]
    fn everything_below_a_directory_matches_as_the_glob_would() {
        let paths = [
            "src/a.rs",
            "src/.hidden",
            "src/.git-like/x",
            "src/deep/er/still/f.txt",
            "src/sp ace/[b]{c}*.txt",
            "src0/a.rs",
            "srcx",
            "a.rs",
            ".env",
            "lib/src/a.rs",
        ];
        for (fast, neg) in [
            ("src/**", None),
            ("./src//**", None),
            ("**", None),
            ("src/**", Some("!src/deep/**")),
            ("**", Some("!**/*.txt")),
        ] {
            let mut list = vec![fast.to_string()];
            list.extend(neg.map(str::to_string));
            let p = Patterns::parse(&list).unwrap();
            assert!(p.positive.is_empty(), "{fast} takes the fast path");
            let mut set = GlobSetBuilder::new();
            let glob = |g: &str| {
                GlobBuilder::new(g)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .unwrap()
            };
            set.add(glob(&normalize(fast)));
            let set = set.build().unwrap();
            let negative = neg.map(|n| {
                let n = normalize(&n[1..]);
                let mut b = GlobSetBuilder::new();
                b.add(glob(&n));
                b.add(glob(&format!("{n}/**")));
                b.build().unwrap()
            });
            for path in paths {
                let want =
                    set.is_match(path) && !negative.as_ref().is_some_and(|n| n.is_match(path));
                assert_eq!(p.matches(path), want, "{fast} {neg:?} on {path}");
            }
        }
        assert!(!pats(&["src/**/*.rs"]).positive.is_empty());
    }

    #[test]
    fn strip_base_agrees_with_strip_prefix() {
        for (path, base) in [
            ("/w/src/a.rs", "/w"),
            ("/w/src/a.rs", "/w/"),
            ("/w/src/a.rs", "/w/src"),
            ("/wx/a.rs", "/w"),
            ("/w", "/w"),
            ("/a.rs", "/"),
            ("/w/./x/a", "/w/."),
            ("/w/x//a", "/w/x/"),
            ("rel/x", "rel"),
        ] {
            assert_eq!(
                strip_base(Path::new(path), Path::new(base)),
                Path::new(path).strip_prefix(base).ok(),
                "{path} - {base}"
            );
        }
    }

    #[test]
    fn bad_glob_is_an_error_naming_the_pattern() {
        let err = Patterns::parse(&["src/[a.rs".to_string()]).unwrap_err();
        assert!(err.to_string().contains("src/[a.rs"), "{err}");
    }

    #[test]
    fn walk_honours_gitignore_outside_git_and_skips_trun() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        fs::create_dir_all(base.join("src/sub")).unwrap();
        fs::create_dir_all(base.join(".trun/cas")).unwrap();
        fs::write(base.join(".gitignore"), "*.log\n").unwrap();
        fs::write(base.join("src/.ignore"), "skip.txt\n").unwrap();
        for f in [
            "src/a.rs",
            "src/sub/b.rs",
            "src/x.log",
            "src/skip.txt",
            "src/.hidden",
            ".trun/cas/obj",
        ] {
            fs::write(base.join(f), f).unwrap();
        }
        let rels = |v: Vec<Entry>| v.into_iter().map(|e| e.rel).collect::<Vec<_>>();
        let serial = rels(walk(base, "src", Filters::IgnoreFiles, false).unwrap());
        // Ignore files are files like any other: editing one can change a build.
        assert_eq!(
            serial,
            vec!["src/.hidden", "src/.ignore", "src/a.rs", "src/sub/b.rs"]
        );
        assert_eq!(
            rels(walk(base, "src", Filters::IgnoreFiles, true).unwrap()),
            serial
        );
        let all = rels(walk(base, "", Filters::None, false).unwrap());
        assert!(
            all.contains(&"src/x.log".to_string()) && !all.iter().any(|r| r.starts_with(".trun"))
        );
        assert!(walk(base, "missing", Filters::IgnoreFiles, false)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn outputs_expand_literal_dirs_and_globs_without_ignore_files() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        fs::create_dir_all(base.join("dist/js")).unwrap();
        fs::write(base.join(".gitignore"), "dist/\nout.bin\n").unwrap();
        fs::write(base.join("dist/js/app.js"), "x").unwrap();
        fs::write(base.join("out.bin"), "y").unwrap();
        fs::write(base.join("a.o"), "z").unwrap();
        let got: Vec<String> = expand_outputs(base, &pats(&["dist", "out.bin", "*.o", "missing"]))
            .unwrap()
            .into_iter()
            .map(|e| e.rel)
            .collect();
        assert_eq!(got, vec!["a.o", "dist/js/app.js", "out.bin"]);
    }
}
