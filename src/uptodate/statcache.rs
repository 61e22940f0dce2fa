//! The stat cache: a file whose `stat` has not changed is not read again.
//!
//! Each row maps an absolute path to the size, mtime, inode and ctime seen when its
//! content was last hashed, the hash, and the time the row was written. A row is trusted
//! only when the stat still matches *and* the file was last changed in an earlier second
//! than the row was written: a file rewritten within the same timestamp granularity can
//! keep an identical stat (git's "racy" problem), so such a row is re-hashed next time.
//!
//! This module owns the trust rule and content hashing; the rows themselves are kept
//! by the state store's [`StatCache`](crate::state::StatCache). It does not walk (see
//! `walk`) and knows nothing about steps.

use super::fingerprint::ContentHash;
use super::UpToDateError;
use crate::state::StatRecord;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::io::Read;
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

    /// From a raw `stat`, as [`from_metadata`](Self::from_metadata) reads it;
    /// `None` for anything but a regular file.
    pub fn from_stat(st: &nix::sys::stat::FileStat) -> Option<FileStat> {
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return None;
        }
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Some(FileStat {
            size: st.st_size as u64,
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
            ino: st.st_ino,
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
            mode: st.st_mode & 0o7777,
        })
    }

    fn same_file_state(&self, other: &FileStat) -> bool {
        self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ino == other.ino
            && self.ctime_ns == other.ctime_ns
    }
}

/// One stored row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cached {
    pub stat: FileStat,
    pub hash: ContentHash,
    pub written_ns: i64,
}

impl Cached {
    /// The hash may be reused without reading the file.
    pub fn trusted_for(&self, now: &FileStat) -> bool {
        self.stat.same_file_state(now)
            && settled_before(self.stat.mtime_ns.max(self.stat.ctime_ns), self.written_ns)
    }
}

/// Whether something last changed at `changed_ns` (its mtime or ctime) was
/// settled when it was read at `read_ns`, i.e. no later change can have kept the
/// same timestamp: git's "racy" rule, shared by the stat cache and the walk cache.
pub fn settled_before(changed_ns: i64, read_ns: i64) -> bool {
    const SECOND: i64 = 1_000_000_000;
    // The kernel stamps files from a coarse clock that lags the one we read by up to
    // a scheduler tick: a file written just after we read it may carry a time just
    // before `read_ns`. Compare against a moment safely before the read.
    const CLOCK_SLACK: i64 = 100_000_000;
    // Whole seconds, because some file systems keep only seconds.
    changed_ns.div_euclid(SECOND) < (read_ns - CLOCK_SLACK).div_euclid(SECOND)
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl From<StatRecord> for Cached {
    fn from(r: StatRecord) -> Cached {
        Cached {
            stat: FileStat {
                size: r.size,
                mtime_ns: r.mtime_ns,
                ino: r.ino,
                ctime_ns: r.ctime_ns,
                mode: 0,
            },
            hash: r.hash,
            written_ns: r.written_ns,
        }
    }
}

impl Cached {
    /// The row the state store keeps.
    pub fn record(&self) -> StatRecord {
        StatRecord {
            size: self.stat.size,
            mtime_ns: self.stat.mtime_ns,
            ino: self.stat.ino,
            ctime_ns: self.stat.ctime_ns,
            hash: self.hash,
            written_ns: self.written_ns,
        }
    }
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
}
