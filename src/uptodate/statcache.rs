//! The stat cache: a file whose `stat` has not changed is not read again.
//!
//! Each row maps an absolute path to the size, mtime, inode and ctime seen when its
//! content was last hashed, the hash, and the time the row was written. A row is trusted
//! only when the stat still matches *and* the file was last changed in an earlier second
//! than the row was written: a file rewritten within the same timestamp granularity can
//! keep an identical stat (git's "racy" problem), so such a row is re-hashed next time.
//!
//! This module owns the `uptodate_stat` table and content hashing; it does not walk
//! (see `walk`) and knows nothing about steps.

use super::fingerprint::ContentHash;
use super::walk::Entry;
use super::UpToDateError;
use rayon::prelude::*;
use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The part of `stat` that changes when a file's content may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ino: u64,
    pub ctime_ns: i64,
    /// Permission bits; not part of the change test (a chmod changes ctime anyway).
    pub mode: u32,
}

impl FileStat {
    pub fn from_metadata(m: &std::fs::Metadata) -> FileStat {
        FileStat {
            size: m.size(),
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
            ino: m.ino(),
            ctime_ns: m
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.ctime_nsec()),
            mode: m.mode() & 0o7777,
        }
    }

    fn same_file_state(&self, other: &FileStat) -> bool {
        self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ino == other.ino
            && self.ctime_ns == other.ctime_ns
    }
}

/// One stored row.
#[derive(Debug, Clone, Copy)]
pub struct Cached {
    pub stat: FileStat,
    pub hash: ContentHash,
    pub written_ns: i64,
}

impl Cached {
    /// The hash may be reused without reading the file.
    pub fn trusted_for(&self, now: &FileStat) -> bool {
        const SECOND: i64 = 1_000_000_000;
        // The kernel stamps files from a coarse clock that lags the one we read by up to
        // a scheduler tick: a file written just after we read it may carry a time just
        // before `written_ns`. Compare against a moment safely before the write.
        const CLOCK_SLACK: i64 = 100_000_000;
        let changed = self.stat.mtime_ns.max(self.stat.ctime_ns);
        // Whole seconds, because some file systems keep only seconds.
        self.stat.same_file_state(now)
            && changed.div_euclid(SECOND) < (self.written_ns - CLOCK_SLACK).div_euclid(SECOND)
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub fn key_of(abs: &Path) -> String {
    abs.to_string_lossy().into_owned()
}

/// The rows for `entries` (the sorted walk of directory `dir`), aligned by index, from
/// one range query on the primary key. Rows and entries sort alike (`<dir>/<rest>`), so
/// pairing them is one merge pass that borrows the row's path instead of copying it.
pub fn load_dir(
    conn: &Connection,
    dir: &Path,
    entries: &[Entry],
) -> Result<Vec<Option<Cached>>, UpToDateError> {
    let mut lo = key_of(dir);
    if !lo.ends_with('/') {
        lo.push('/');
    }
    // '0' is the byte after '/': [dir/, dir0) is exactly the paths below dir.
    let hi = format!("{}0", &lo[..lo.len() - 1]);
    let mut stmt = conn.prepare_cached(
        "SELECT path, size, mtime_ns, ino, ctime_ns, hash, written_ns FROM uptodate_stat WHERE path >= ?1 AND path < ?2 ORDER BY path",
    )?;
    let mut rows = stmt.query(params![lo, hi])?;
    let mut out = vec![None; entries.len()];
    let mut next = 0;
    while let Some(row) = rows.next()? {
        let path = row.get_ref(0)?.as_bytes().map_err(rusqlite::Error::from)?;
        while next < entries.len() && entries[next].abs.as_os_str().as_bytes() < path {
            next += 1;
        }
        if next == entries.len() {
            break;
        }
        if entries[next].abs.as_os_str().as_bytes() == path {
            out[next] = cached_of(row, 1)?;
            next += 1;
        }
    }
    Ok(out)
}

/// Rows for a few named files (outputs), one statement prepared once.
pub fn load_paths(
    conn: &Connection,
    paths: &[PathBuf],
) -> Result<Vec<Option<Cached>>, UpToDateError> {
    let mut stmt = conn.prepare_cached(
        "SELECT path, size, mtime_ns, ino, ctime_ns, hash, written_ns FROM uptodate_stat WHERE path = ?1",
    )?;
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let mut rows = stmt.query(params![key_of(p)])?;
        out.push(match rows.next()? {
            Some(row) => cached_of(row, 1)?,
            None => None,
        });
    }
    Ok(out)
}

/// A stat row read from six columns starting at `at`: `size, mtime_ns, ino, ctime_ns,
/// hash, written_ns`.
pub fn cached_of(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Option<Cached>> {
    let Ok(hash) = <ContentHash>::try_from(r.get_ref(at + 4)?.as_blob()?) else {
        return Ok(None);
    };
    Ok(Some(Cached {
        stat: FileStat {
            size: r.get::<_, i64>(at)? as u64,
            mtime_ns: r.get(at + 1)?,
            ino: r.get::<_, i64>(at + 2)? as u64,
            ctime_ns: r.get(at + 3)?,
            mode: 0,
        },
        hash,
        written_ns: r.get(at + 5)?,
    }))
}

/// Writes rows in the caller's transaction (one transaction per batch keeps the write
/// to a single fsync).
pub fn store(
    tx: &rusqlite::Transaction<'_>,
    rows: &[(PathBuf, Cached)],
) -> Result<(), UpToDateError> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR REPLACE INTO uptodate_stat (path, size, mtime_ns, ino, ctime_ns, hash, written_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (path, c) in rows {
        stmt.execute(params![
            key_of(path),
            c.stat.size as i64,
            c.stat.mtime_ns,
            c.stat.ino as i64,
            c.stat.ctime_ns,
            &c.hash[..],
            c.written_ns
        ])?;
    }
    Ok(())
}

/// sha256 of a file's content.
pub fn hash_file(path: &Path) -> Result<ContentHash, UpToDateError> {
    let io = |source| UpToDateError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Hashes files on all cores. Returns the rows to write back: the stat is the one taken
/// *before* reading, and `written_ns` is taken before any file is read, so a write that
/// races the read leaves a row that is either stale-by-stat or racy, never trusted.
pub fn hash_all(files: &[(PathBuf, FileStat)]) -> Result<Vec<(PathBuf, Cached)>, UpToDateError> {
    let written_ns = now_ns();
    files
        .par_iter()
        .map(|(path, stat)| {
            Ok((
                path.clone(),
                Cached {
                    stat: *stat,
                    hash: hash_file(path)?,
                    written_ns,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mtime_s: i64) -> FileStat {
        FileStat {
            size: 4,
            mtime_ns: mtime_s * 1_000_000_000 + 5,
            ino: 7,
            ctime_ns: mtime_s * 1_000_000_000 + 5,
            mode: 0o644,
        }
    }

    #[test]
    fn a_row_is_trusted_only_for_an_older_second_and_the_same_stat() {
        let row = Cached {
            stat: stat(100),
            hash: [0; 32],
            written_ns: 101 * 1_000_000_000 + 500_000_000,
        };
        assert!(row.trusted_for(&stat(100)));
        assert!(!row.trusted_for(&FileStat {
            size: 5,
            ..stat(100)
        }));
        assert!(!row.trusted_for(&FileStat {
            ino: 8,
            ..stat(100)
        }));
        let racy = Cached {
            written_ns: 100 * 1_000_000_000 + 900_000_000,
            ..row
        };
        assert!(
            !racy.trusted_for(&stat(100)),
            "written in the second the file changed"
        );
        let lagging = Cached {
            written_ns: 101 * 1_000_000_000 + 20_000_000,
            ..row
        };
        assert!(
            !lagging.trusted_for(&stat(100)),
            "written a tick after the second the file changed"
        );
    }

    #[test]
    fn rows_round_trip_through_sqlite_by_directory_range() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("s.db")).unwrap();
        conn.execute_batch(super::super::MIGRATIONS[0]).unwrap();
        let row = |n: u8| Cached {
            stat: stat(n as i64),
            hash: [n; 32],
            written_ns: 9,
        };
        let tx = conn.transaction().unwrap();
        store(
            &tx,
            &[
                (PathBuf::from("/w/src/a.rs"), row(1)),
                (PathBuf::from("/w/src/sub/b.rs"), row(2)),
                (PathBuf::from("/w/src0/c.rs"), row(3)),
                (PathBuf::from("/w/src.rs"), row(4)),
            ],
        )
        .unwrap();
        tx.commit().unwrap();
        let entry = |p: &str| Entry {
            rel: String::new(),
            abs: PathBuf::from(p),
            stat: stat(0),
        };
        let got = load_dir(
            &conn,
            Path::new("/w/src"),
            &[
                entry("/w/src/a.rs"),
                entry("/w/src/new.rs"),
                entry("/w/src/sub/b.rs"),
            ],
        )
        .unwrap();
        assert_eq!(
            got.iter().map(|c| c.map(|c| c.hash[0])).collect::<Vec<_>>(),
            vec![Some(1), None, Some(2)]
        );
        assert_eq!(got[2].unwrap().stat.mtime_ns, stat(2).mtime_ns);
        assert!(load_dir(&conn, Path::new("/w/src"), &[])
            .unwrap()
            .is_empty());
        let one = load_paths(
            &conn,
            &[PathBuf::from("/w/src.rs"), PathBuf::from("/w/none")],
        )
        .unwrap();
        assert_eq!(one[0].map(|c| c.hash), Some([4; 32]));
        assert!(one[1].is_none());
    }
}
