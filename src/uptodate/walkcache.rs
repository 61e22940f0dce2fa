//! The walk cache: a source walk whose directories have not changed is not walked
//! again, only its files are stat'ed (what make does).
//!
//! Walking with ignore files (read every directory, look for `.gitignore`, `.ignore`
//! and `.git` in each, match every name) was half of a no-op's time over ten thousand
//! files. Yet a walk's answer depends only on the names in the directories it entered
//! and on the ignore files that applied, and a directory's mtime and ctime change
//! whenever a name in it is added, removed or renamed. So a real walk leaves a
//! [`WalkRecord`]: the stamp of every directory it entered, the stamp (or absence) of
//! every file that can change the ignore rules, and the files and links it found. The
//! next walk of the same directory [`replay`]s it when every stamp still matches,
//! stat'ing each recorded file for its current `stat`, and walks for real otherwise.
//!
//! A stamp from the same (coarse) second as the walk could hide a later change that
//! kept the same timestamp, so a record holding one is not kept at all (git's "racy"
//! rule, [`settled_before`]): the next walk is a real one and leaves a settled record.
//!
//! Ignore inputs: in every directory entered, its `.gitignore` and `.ignore` (their
//! absence is covered by the directory's own stamp) and, when it holds a `.git`
//! directory, `.git/info/exclude`; above the walked directory, up to `/`, each
//! ancestor's `.gitignore`, `.ignore`, `.git` and `.git/info/exclude`, present or not.
//! A `.git` *file* (a worktree or submodule, whose excludes live elsewhere) makes the
//! walk uncacheable: it is always walked for real.
//!
//! A record may also carry each file's stat-cache row (stat, content hash, when it
//! was hashed), written once the run has hashed what it needed ([`WalkRecord::with_rows`]):
//! a replay then hands the rows back with the files and the no-op reads no row
//! from the database, only this one record. A row is a hint like any other: it is
//! used only when it is trusted for the file's stat now, as a database row is.
//!
//! This module does not walk (`walk` does) and does not store records (the stat cache's
//! store does); `tests` compares replayed and real walks after random edits.

use super::statcache::{settled_before, Cached, FileStat};
use super::walk::{join_rel, rel_string, strip_base, Entry, Walked};
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What of a file or directory's `stat` changes when its content or listing may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    size: u64,
}

impl Stamp {
    fn of_stat(st: &nix::sys::stat::FileStat) -> Stamp {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Stamp {
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
            ino: st.st_ino,
            size: st.st_size as u64,
        }
    }

    fn of(m: &std::fs::Metadata) -> Stamp {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Stamp {
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            size: m.size(),
        }
    }
}

/// The stamp of `path` (following links) now: `Ok(None)` when it does not exist,
/// `Err` when that cannot be told (the caller then does not trust or keep a record).
/// Of a `.git`, only which one it is counts (its inode): it marks where a repository
/// starts, and git rewrites its directory on every command.
fn stamp_of(path: &Path) -> Result<Option<Stamp>, ()> {
    match std::fs::metadata(path) {
        Ok(m) if path.file_name() == Some(OsStr::new(".git")) => Ok(Some(Stamp {
            mtime_ns: 0,
            ctime_ns: 0,
            ino: m.ino(),
            size: 0,
        })),
        Ok(m) => Ok(Some(Stamp::of(&m))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(_) => Err(()),
    }
}

/// One real walk of one directory, as [`replay`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkRecord {
    /// The walked directory, absolute.
    dir: Vec<u8>,
    /// Every directory entered, the walked one first, with what it listed.
    dirs: Vec<DirRecord>,
    /// Files that decide the ignore rules (absolute), with their stamp or absence.
    guards: Vec<(Vec<u8>, Option<Stamp>)>,
}

/// One directory a walk entered: its path relative to the walked directory (`""`
/// for itself), its stamp, and the names of what it listed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DirRecord {
    rel: Vec<u8>,
    stamp: Stamp,
    /// Regular files listed.
    files: Vec<Vec<u8>>,
    /// Each file's stat-cache row, aligned with `files`; empty when the record
    /// carries no rows.
    rows: Vec<Option<Cached>>,
    /// Symbolic links met, wherever they point: a link's target may become a
    /// regular file (or stop being one) without any listing changing.
    links: Vec<Vec<u8>>,
}

fn relative(dir: &Path, path: &Path) -> Option<Vec<u8>> {
    strip_base(path, dir).map(|r| r.as_os_str().as_bytes().to_vec())
}

fn join(dir: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(OsStr::from_bytes(rel))
    }
}

/// The record a traced walk of `dir` leaves (`read_ns`: the time taken before it
/// started), or `None` when it cannot be trusted later: a stamp too recent to be
/// settled, a `.git` file, an unreadable stat, or a directory that was not there.
pub fn record(dir: &Path, walked: &Walked, read_ns: i64) -> Option<WalkRecord> {
    use std::collections::HashMap;
    let settled = |s: &Stamp| settled_before(s.mtime_ns.max(s.ctime_ns), read_ns);
    let mut dirs = Vec::with_capacity(walked.dirs.len());
    let mut guards = Vec::new();
    let mut guard = |path: PathBuf, keep_absent: bool| -> Option<()> {
        let stamp = stamp_of(&path).ok()?;
        if stamp.is_some_and(|s| !settled(&s)) {
            return None;
        }
        if stamp.is_some() || keep_absent {
            guards.push((path.into_os_string().into_vec(), stamp));
        }
        Some(())
    };
    // `.git` in `at`: a directory brings its excludes file; a file, excludes this
    // trun cannot follow.
    let git = |at: &Path| -> Option<bool> {
        match std::fs::metadata(at.join(".git")) {
            Ok(m) if m.is_dir() => Some(true),
            Ok(_) => None,
            Err(e) if e.kind() == ErrorKind::NotFound => Some(false),
            Err(_) => None,
        }
    };
    let mut index: HashMap<&Path, usize> = HashMap::with_capacity(walked.dirs.len());
    for (path, meta) in &walked.dirs {
        let stamp = Stamp::of(meta.as_ref()?);
        if !settled(&stamp) {
            return None;
        }
        index.insert(path.as_path(), dirs.len());
        dirs.push(DirRecord {
            rel: relative(dir, path)?,
            stamp,
            files: Vec::new(),
            rows: Vec::new(),
            links: Vec::new(),
        });
        guard(path.join(".gitignore"), false)?;
        guard(path.join(".ignore"), false)?;
        if git(path)? {
            guard(path.join(".git/info/exclude"), true)?;
        }
    }
    let name = |p: &Path| -> Option<(usize, Vec<u8>)> {
        let at = *index.get(p.parent()?)?;
        Some((at, p.file_name()?.as_bytes().to_vec()))
    };
    // Links that resolve to a file are also among the entries; they are replayed
    // as links.
    let links: std::collections::HashSet<&Path> =
        walked.links.iter().map(PathBuf::as_path).collect();
    for e in walked
        .entries
        .iter()
        .filter(|e| !links.contains(e.abs.as_path()))
    {
        let (at, n) = name(&e.abs)?;
        dirs[at].files.push(n);
    }
    for l in &walked.links {
        let (at, n) = name(l)?;
        dirs[at].links.push(n);
    }
    // The walked directory itself must have been entered: a walk of a missing one
    // lists nothing, and nothing would notice it appear.
    dirs.sort_by(|a, b| a.rel.cmp(&b.rel));
    if dirs.first().is_none_or(|d| !d.rel.is_empty()) {
        return None;
    }
    for above in dir.ancestors().skip(1) {
        guard(above.join(".gitignore"), true)?;
        guard(above.join(".ignore"), true)?;
        guard(above.join(".git"), true)?;
        git(above)?;
        guard(above.join(".git/info/exclude"), true)?;
    }
    Some(WalkRecord {
        dir: dir.as_os_str().as_bytes().to_vec(),
        dirs,
        guards,
    })
}

/// What [`replay`] found: the files, sorted by relative path, and when the record
/// carries rows, each file's row (aligned; `None` for a file without one).
pub struct Replayed {
    pub entries: Vec<Entry>,
    pub rows: Option<Vec<Option<Cached>>>,
}

/// The files a real walk of `dir` (below workspace root `base`) would list now,
/// sorted by relative path, from `record`; `None` when anything it rests on changed
/// (the caller then walks for real). Big records are replayed on several threads:
/// the `stat`s are the whole cost.
pub fn replay(base: &Path, dir: &Path, record: &WalkRecord) -> Option<Replayed> {
    if record.dir != dir.as_os_str().as_bytes() {
        return None;
    }
    for (path, stamp) in &record.guards {
        if stamp_of(Path::new(OsStr::from_bytes(path))).ok()? != *stamp {
            return None;
        }
    }
    let root_rel = rel_string(strip_base(dir, base)?);
    let total: usize = record.dirs.iter().map(|d| d.files.len() + 1).sum();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(total / 2000 + 1);
    let mut entries = if threads <= 1 {
        replay_dirs(dir, &root_rel, &record.dirs)?
    } else {
        // Threads take the next few directories as they go, not fixed shares:
        // the stats cost what the file system makes them cost, and a thread
        // that ends early would leave the other alone with the rest.
        const CHUNK: usize = 16;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let root_rel = root_rel.as_str();
        let take = || {
            let mut mine: Vec<(usize, Vec<Found>)> = Vec::new();
            loop {
                let start = next.fetch_add(CHUNK, std::sync::atomic::Ordering::Relaxed);
                if start >= record.dirs.len() || failed.load(std::sync::atomic::Ordering::Relaxed) {
                    return mine;
                }
                let end = (start + CHUNK).min(record.dirs.len());
                match replay_dirs(dir, root_rel, &record.dirs[start..end]) {
                    Some(e) => mine.push((start, e)),
                    None => {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        return mine;
                    }
                }
            }
        };
        let mut parts: Vec<(usize, Vec<Found>)> = std::thread::scope(|s| {
            let helpers: Vec<_> = (1..threads).map(|_| s.spawn(take)).collect();
            let mut all = take();
            for h in helpers {
                match h.join() {
                    Ok(p) => all.extend(p),
                    Err(_) => failed.store(true, std::sync::atomic::Ordering::Relaxed),
                }
            }
            all
        });
        if failed.into_inner() {
            return None;
        }
        // In directory order, which is nearly the sorted order the sort below wants.
        parts.sort_unstable_by_key(|(start, _)| *start);
        let mut all = Vec::with_capacity(total);
        for (_, p) in parts {
            all.extend(p);
        }
        all
    };
    entries.sort_unstable_by(|a, b| a.0.rel.cmp(&b.0.rel));
    // A record carries rows when every directory has one per file: a record
    // of directories without files has all of its (none) and is not worth
    // storing again on every run.
    let with_rows = record.dirs.iter().all(|d| d.rows.len() == d.files.len());
    let (entries, rows): (Vec<Entry>, Vec<Option<Cached>>) = entries.into_iter().unzip();
    Some(Replayed {
        entries,
        rows: with_rows.then_some(rows),
    })
}

/// A replayed file, with its row from the record.
type Found = (Entry, Option<Cached>);

/// [`replay`] of some directories of a record: each is opened once, its stamp
/// checked through the descriptor, and its files stat'ed relative to it.
fn replay_dirs(dir: &Path, root_rel: &str, dirs: &[DirRecord]) -> Option<Vec<Found>> {
    use nix::fcntl::{AtFlags, OFlag};
    let mut entries = Vec::with_capacity(dirs.iter().map(|d| d.files.len()).sum());
    for d in dirs {
        let abs = join(dir, &d.rel);
        let fd = nix::fcntl::open(
            &abs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        if Stamp::of_stat(&nix::sys::stat::fstat(&fd).ok()?) != d.stamp {
            return None;
        }
        let rel = if d.rel.is_empty() {
            root_rel.to_string()
        } else {
            join_rel(root_rel, &String::from_utf8_lossy(&d.rel))
        };
        let entry = |name: &[u8], stat: FileStat| Entry {
            rel: join_rel(&rel, &String::from_utf8_lossy(name)),
            abs: abs.join(OsStr::from_bytes(name)),
            stat,
        };
        for (i, name) in d.files.iter().enumerate() {
            // Still a regular file: a name replaced by anything else would have
            // changed its directory's stamp, so anything else here is a surprise.
            let st =
                nix::sys::stat::fstatat(&fd, OsStr::from_bytes(name), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .ok()?;
            let row = d.rows.get(i).copied().flatten();
            entries.push((entry(name, FileStat::from_stat(&st)?), row));
        }
        for name in &d.links {
            let target = abs.join(OsStr::from_bytes(name));
            if let Some(m) = std::fs::metadata(&target).ok().filter(|m| m.is_file()) {
                entries.push((entry(name, FileStat::from_metadata(&m)), None));
            }
        }
    }
    Some(entries)
}

const MAGIC: &[u8; 4] = b"trw3";

impl WalkRecord {
    /// The walked directory.
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(&self.dir))
    }

    /// This record with each file's row from `row_of` (by absolute path), to
    /// be stored once the run has hashed what it needed.
    pub fn with_rows(&self, row_of: impl Fn(&Path) -> Option<Cached>) -> WalkRecord {
        let dir = Path::new(OsStr::from_bytes(&self.dir));
        let dirs = self
            .dirs
            .iter()
            .map(|d| {
                let at = join(dir, &d.rel);
                DirRecord {
                    rows: d
                        .files
                        .iter()
                        .map(|n| {
                            row_of(&at.join(OsStr::from_bytes(n))).map(|c| Cached {
                                // Not part of a row (nor of the change test).
                                stat: FileStat { mode: 0, ..c.stat },
                                ..c
                            })
                        })
                        .collect(),
                    ..d.clone()
                }
            })
            .collect();
        WalkRecord {
            dir: self.dir.clone(),
            dirs,
            guards: self.guards.clone(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let names: usize = self
            .dirs
            .iter()
            .map(|d| {
                d.files
                    .iter()
                    .chain(&d.links)
                    .map(|n| n.len() + 4)
                    .sum::<usize>()
            })
            .sum();
        let mut out = Vec::with_capacity(64 + names + self.dirs.len() * 64);
        out.extend_from_slice(MAGIC);
        put_bytes(&mut out, &self.dir);
        put_u32(&mut out, self.guards.len());
        for (path, stamp) in &self.guards {
            put_bytes(&mut out, path);
            match stamp {
                Some(s) => {
                    out.push(1);
                    put_stamp(&mut out, s);
                }
                None => out.push(0),
            }
        }
        put_u32(&mut out, self.dirs.len());
        for d in &self.dirs {
            put_bytes(&mut out, &d.rel);
            put_stamp(&mut out, &d.stamp);
            for list in [&d.files, &d.links] {
                put_u32(&mut out, list.len());
                for name in list {
                    put_bytes(&mut out, name);
                }
            }
            // Rows: none at all, or one (present or not) per file.
            out.push(u8::from(!d.rows.is_empty()));
            for row in &d.rows {
                match row {
                    Some(c) => {
                        out.push(1);
                        put_row(&mut out, c);
                    }
                    None => out.push(0),
                }
            }
        }
        out
    }

    /// The inverse of [`encode`](Self::encode); `None` for anything else (a record
    /// this trun cannot read is as good as none).
    pub fn decode(blob: &[u8]) -> Option<WalkRecord> {
        let mut r = Reader(blob.strip_prefix(MAGIC)?);
        let dir = r.bytes()?;
        let mut guards = Vec::new();
        for _ in 0..r.u32()? {
            let path = r.bytes()?;
            let stamp = match r.take(1)?[0] {
                0 => None,
                1 => Some(r.stamp()?),
                _ => return None,
            };
            guards.push((path, stamp));
        }
        let mut dirs = Vec::new();
        for _ in 0..r.u32()? {
            let rel = r.bytes()?;
            let stamp = r.stamp()?;
            let mut lists = [Vec::new(), Vec::new()];
            for list in &mut lists {
                for _ in 0..r.u32()? {
                    list.push(r.bytes()?);
                }
            }
            let [files, links] = lists;
            let rows = match r.take(1)?[0] {
                0 => Vec::new(),
                1 => {
                    let mut rows = Vec::with_capacity(files.len());
                    for _ in 0..files.len() {
                        rows.push(match r.take(1)?[0] {
                            0 => None,
                            1 => Some(r.row()?),
                            _ => return None,
                        });
                    }
                    rows
                }
                _ => return None,
            };
            dirs.push(DirRecord {
                rel,
                stamp,
                files,
                rows,
                links,
            });
        }
        if !r.0.is_empty() {
            return None;
        }
        // The database is a file in the workspace like any other: a record must
        // not name anything outside the walked directory.
        let plain = |name: &[u8]| {
            !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/')
        };
        let inside = dirs.iter().all(|d| {
            (d.rel.is_empty() || d.rel.split(|&b| b == b'/').all(plain))
                && d.files.iter().chain(&d.links).all(|n| plain(n))
        });
        inside.then_some(WalkRecord { dir, dirs, guards })
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len());
    out.extend_from_slice(b);
}

fn put_stamp(out: &mut Vec<u8>, s: &Stamp) {
    for v in [s.mtime_ns as u64, s.ctime_ns as u64, s.ino, s.size] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_row(out: &mut Vec<u8>, c: &Cached) {
    let s = &c.stat;
    for v in [
        s.size,
        s.mtime_ns as u64,
        s.ino,
        s.ctime_ns as u64,
        c.written_ns as u64,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&c.hash);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()?;
        Some(self.take(n)?.to_vec())
    }

    fn row(&mut self) -> Option<Cached> {
        let (size, mtime_ns, ino, ctime_ns, written_ns) = (
            self.u64()?,
            self.u64()?,
            self.u64()?,
            self.u64()?,
            self.u64()?,
        );
        Some(Cached {
            stat: FileStat {
                size,
                mtime_ns: mtime_ns as i64,
                ino,
                ctime_ns: ctime_ns as i64,
                mode: 0,
            },
            hash: self.take(32)?.try_into().ok()?,
            written_ns: written_ns as i64,
        })
    }

    fn stamp(&mut self) -> Option<Stamp> {
        Some(Stamp {
            mtime_ns: self.u64()? as i64,
            ctime_ns: self.u64()? as i64,
            ino: self.u64()?,
            size: self.u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::statcache::now_ns;
    use super::super::walk::{walk_traced, Filters};
    use super::*;
    use std::fs;

    type Seen = Vec<(String, PathBuf, FileStat)>;

    fn seen(entries: Vec<Entry>) -> Seen {
        entries
            .into_iter()
            .map(|e| (e.rel, e.abs, e.stat))
            .collect()
    }

    fn real(base: &Path) -> Seen {
        seen(
            walk_traced(base, "src", Filters::IgnoreFiles, false, false)
                .unwrap()
                .entries,
        )
    }

    /// A real, traced walk and the record it leaves, waiting (up to a few seconds)
    /// for the tree's last changes to settle so that a record is kept at all.
    fn settled_record(base: &Path) -> WalkRecord {
        let dir = base.join("src");
        for _ in 0..40 {
            let read_ns = now_ns();
            let walked = walk_traced(base, "src", Filters::IgnoreFiles, false, true).unwrap();
            if let Some(r) = record(&dir, &walked, read_ns) {
                assert_eq!(WalkRecord::decode(&r.encode()).as_ref(), Some(&r));
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the tree never settled");
    }

    /// xorshift64: reproducible edits without a dependency.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                out.extend(files_under(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out.sort();
        out
    }

    /// One random edit of the kind that can change what a walk lists, or only what
    /// a listed file holds; returns what it did.
    fn edit(base: &Path, rng: &mut Rng, n: usize) -> String {
        let src = base.join("src");
        let dirs = ["src", "src/a", "src/a/deep", "src/b", "src/c"];
        let dir = base.join(dirs[rng.below(dirs.len())]);
        let files = files_under(&src);
        let pick = |rng: &mut Rng| files.get(rng.below(files.len().max(1))).cloned();
        match rng.below(9) {
            0 => {
                fs::create_dir_all(&dir).unwrap();
                let name = ["new.txt", "x.log", "keep.log", "gen.o"][rng.below(4)];
                fs::write(dir.join(format!("{n}{name}")), "new").unwrap();
                format!("add {}{name} in {}", n, dir.display())
            }
            1 => match pick(rng) {
                Some(f) => {
                    let _ = fs::remove_file(&f);
                    format!("delete {}", f.display())
                }
                None => "nothing to delete".into(),
            },
            2 => match pick(rng) {
                Some(f) => {
                    fs::create_dir_all(&dir).unwrap();
                    let _ = fs::rename(&f, dir.join(format!("moved{n}.txt")));
                    format!("rename {} into {}", f.display(), dir.display())
                }
                None => "nothing to rename".into(),
            },
            3 => {
                let rules = [
                    "*.log\n",
                    "*.log\n!keep.log\n",
                    "deep/\n",
                    "",
                    "b\n",
                    "*.o\n",
                ];
                let at = [
                    base.join(".gitignore"),
                    src.join(".gitignore"),
                    base.join("src/a/.ignore"),
                ][rng.below(3)]
                .clone();
                if at.parent().unwrap().is_dir() {
                    fs::write(&at, rules[rng.below(rules.len())]).unwrap();
                }
                format!("rules in {}", at.display())
            }
            4 => match pick(rng) {
                // Same size, same second: only the content and mtime differ.
                Some(f) => {
                    let _ = fs::write(&f, format!("{:03}", n % 1000));
                    format!("rewrite {}", f.display())
                }
                None => "nothing to rewrite".into(),
            },
            5 => {
                let link = src.join("link.txt");
                let _ = fs::remove_file(&link);
                let target = ["../target.txt", "a", "../missing"][rng.below(3)];
                std::os::unix::fs::symlink(target, &link).unwrap();
                format!("link to {target}")
            }
            6 => {
                // The link's target changes kind without any listing below src/ changing.
                let t = base.join("target.txt");
                if t.is_dir() {
                    fs::remove_dir_all(&t).unwrap();
                    fs::write(&t, "t").unwrap();
                } else {
                    let _ = fs::remove_file(&t);
                    fs::create_dir(&t).unwrap();
                }
                "flip the link target".into()
            }
            7 => {
                if dir.is_dir() && dir != src {
                    let _ = fs::remove_dir_all(&dir);
                    format!("remove {}", dir.display())
                } else {
                    fs::create_dir_all(dir.join("empty")).unwrap();
                    format!("mkdir in {}", dir.display())
                }
            }
            _ => {
                let _ = fs::remove_dir_all(base.join("src/c"));
                fs::create_dir_all(base.join("src/c/.git/info")).unwrap();
                fs::write(
                    base.join("src/c/.git/info/exclude"),
                    ["*.txt\n", ""][rng.below(2)],
                )
                .unwrap();
                fs::write(base.join("src/c/f.txt"), "c").unwrap();
                "nested repo".into()
            }
        }
    }

    #[test]
    fn a_replayed_walk_lists_what_a_real_walk_lists_after_random_edits() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for f in [
            "src/a/one.txt",
            "src/a/deep/two.txt",
            "src/b/three.log",
            "src/keep.log",
        ] {
            fs::create_dir_all(base.join(f).parent().unwrap()).unwrap();
            fs::write(base.join(f), "abc").unwrap();
        }
        fs::write(base.join("target.txt"), "t").unwrap();
        fs::write(base.join(".gitignore"), "*.log\n").unwrap();
        let src = base.join("src");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut replayed = 0;
        for round in 0..8 {
            let rec = settled_record(base);
            let before = real(base);
            assert_eq!(
                replay(base, &src, &rec).map(|r| seen(r.entries)),
                Some(before.clone()),
                "round {round}: nothing changed since the record"
            );
            let mut done = Vec::new();
            for k in 0..1 + rng.below(3) {
                done.push(edit(base, &mut rng, round * 10 + k));
                let now = real(base);
                // Refusing is always right; answering differently never is.
                if let Some(got) = replay(base, &src, &rec) {
                    replayed += 1;
                    assert_eq!(seen(got.entries), now, "round {round} after {done:?}");
                }
            }
        }
        assert!(
            replayed > 0,
            "no edit left the record usable: the test proves nothing"
        );
    }

    #[test]
    fn a_big_record_replayed_on_several_threads_lists_what_a_real_walk_lists() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for d in 0..6 {
            let at = base.join(format!("src/d{d}"));
            fs::create_dir_all(&at).unwrap();
            for f in 0..900 {
                fs::write(at.join(format!("f{f}.txt")), "x").unwrap();
            }
        }
        std::os::unix::fs::symlink("d0/f1.txt", base.join("src/link")).unwrap();
        let rec = settled_record(base);
        let got = replay(base, &base.join("src"), &rec).map(|r| seen(r.entries));
        assert_eq!(got.as_ref().map(Vec::len), Some(5401));
        assert_eq!(got, Some(real(base)));
    }

    #[test]
    fn rows_stored_with_a_record_come_back_with_their_files_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for d in 0..4 {
            let at = base.join(format!("src/d{d}"));
            fs::create_dir_all(&at).unwrap();
            for f in 0..1200 {
                fs::write(at.join(format!("f{f}.txt")), format!("{d}/{f}")).unwrap();
            }
        }
        std::os::unix::fs::symlink("d0/f1.txt", base.join("src/link")).unwrap();
        let rec = settled_record(base);
        // No rows yet: a replay says so rather than handing back empty ones.
        assert!(replay(base, &base.join("src"), &rec)
            .unwrap()
            .rows
            .is_none());
        // A row per file, made from its path, except for every seventh file.
        let row_of = |p: &Path| -> Option<Cached> {
            let name = p.to_str()?;
            let n: usize = name.bytes().map(usize::from).sum();
            (!n.is_multiple_of(7)).then(|| Cached {
                stat: FileStat {
                    size: n as u64,
                    mtime_ns: n as i64,
                    ino: 1,
                    ctime_ns: 2,
                    mode: 0,
                },
                hash: <sha2::Sha256 as sha2::Digest>::digest(name.as_bytes()).into(),
                written_ns: 3,
            })
        };
        let with = rec.with_rows(row_of);
        let decoded = WalkRecord::decode(&with.encode()).expect("a record with rows decodes");
        assert_eq!(decoded, with);
        // Replayed on several threads, every file gets back its own row; the
        // link, which has none in a record, gets none.
        let got = replay(base, &base.join("src"), &decoded).unwrap();
        let rows = got.rows.expect("the rows come back");
        assert_eq!(rows.len(), got.entries.len());
        assert_eq!(got.entries.len(), 4801);
        for (e, row) in got.entries.iter().zip(&rows) {
            if e.rel == "src/link" {
                assert_eq!(*row, None);
            } else {
                assert_eq!(*row, row_of(&e.abs), "{}", e.rel);
            }
        }
        // A row cut short, or with a flag that is neither 0 nor 1, is no record.
        // Every file has a row here, so the last row's flag is at a known place.
        let blob = rec
            .with_rows(|p| row_of(p).or(row_of(Path::new("/x"))))
            .encode();
        assert!(WalkRecord::decode(&blob).is_some());
        assert!(WalkRecord::decode(&blob[..blob.len() - 1]).is_none());
        let flag = blob.len() - 32 - 40 - 1;
        assert_eq!(blob[flag], 1);
        let mut bad = blob.clone();
        bad[flag] = 2;
        assert!(WalkRecord::decode(&bad).is_none());
    }

    #[test]
    fn a_record_of_directories_without_files_has_all_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        fs::create_dir_all(base.join("src/empty/below")).unwrap();
        let rec = settled_record(base);
        let got = replay(base, &base.join("src"), &rec).unwrap();
        assert!(got.entries.is_empty());
        assert_eq!(got.rows, Some(Vec::new()));
        // One file, and the record says it has no row until one is stored.
        fs::write(base.join("src/empty/a.txt"), "a").unwrap();
        let rec = settled_record(base);
        assert_eq!(replay(base, &base.join("src"), &rec).unwrap().rows, None);
    }

    #[test]
    fn a_walk_of_a_tree_changed_this_second_leaves_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        fs::create_dir_all(base.join("src")).unwrap();
        fs::write(base.join("src/a.txt"), "a").unwrap();
        let read_ns = now_ns();
        let walked = walk_traced(base, "src", Filters::IgnoreFiles, false, true).unwrap();
        assert!(record(&base.join("src"), &walked, read_ns).is_none());
        // A missing directory is not recorded either: nothing would see it appear.
        let walked = walk_traced(base, "nope", Filters::IgnoreFiles, false, true).unwrap();
        assert!(record(&base.join("nope"), &walked, read_ns + 10_000_000_000).is_none());
    }

    #[test]
    fn a_git_file_makes_a_walk_uncacheable_and_garbage_decodes_to_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        fs::create_dir_all(base.join("src")).unwrap();
        fs::write(base.join(".git"), "gitdir: /elsewhere\n").unwrap();
        let walked = walk_traced(base, "src", Filters::IgnoreFiles, false, true).unwrap();
        assert!(record(&base.join("src"), &walked, now_ns() + 10_000_000_000).is_none());
        for blob in [&b""[..], b"trw3", b"trw3\xff\xff\xff\xff", b"xxxx\0\0\0\0"] {
            assert!(WalkRecord::decode(blob).is_none());
        }
        // A record planted to name files outside the walked directory is refused.
        let stamp = Stamp {
            mtime_ns: 1,
            ctime_ns: 1,
            ino: 1,
            size: 1,
        };
        for (rel, name) in [
            ("", "../../etc/passwd"),
            ("..", "passwd"),
            ("a/../..", "x"),
            ("", ".."),
        ] {
            let planted = WalkRecord {
                dir: base.join("src").into_os_string().into_vec(),
                dirs: vec![DirRecord {
                    rel: rel.as_bytes().to_vec(),
                    stamp,
                    files: vec![name.as_bytes().to_vec()],
                    rows: Vec::new(),
                    links: Vec::new(),
                }],
                guards: Vec::new(),
            };
            assert!(
                WalkRecord::decode(&planted.encode()).is_none(),
                "{rel} {name}"
            );
        }
    }
}
