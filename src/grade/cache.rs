//! Re-grading without re-running: results stored under a fingerprint of what was graded.
//!
//! A grading fingerprint is the SHA-256 of the rubric's canonical form, the runner's name
//! and the contents of the repository's watched files (the rubric's `watch` globs, or every
//! file not ignored by `.gitignore` when it has none). When a repository's fingerprint is
//! the one its stored result was graded under, that result is reused.
//!
//! Results live in the grader's state store (the process's one [`Store`]), never in the
//! student repository (which grading must not write). This module holds no SQL; it
//! keys results by repository and rubric and encodes them. It does not run anything
//! or decide when to force; the batch does.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::score::RepoResult;
use crate::rubric::Rubric;
use crate::state::{GradeRecord, SqliteStore, StateError, Store};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("grade cache: {0}")]
    State(#[from] StateError),
    #[error("cannot read {path} to fingerprint it: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("watch glob `{glob}` is not valid: {message}")]
    Glob { glob: String, message: String },
    #[error("cannot walk {path}: {message}")]
    Walk { path: PathBuf, message: String },
}

/// The fingerprint a repository is graded under with this rubric and runner.
pub fn fingerprint(rubric: &Rubric, repo: &Path, runner: &str) -> Result<String, CacheError> {
    let mut files = watched_files(rubric, repo)?;
    files.sort();
    let mut h = Sha256::new();
    h.update(b"trun-grade-v1\0");
    h.update(runner.as_bytes());
    h.update(b"\0");
    h.update(rubric.canonical().as_bytes());
    h.update(b"\0");
    for rel in files {
        let path = repo.join(&rel);
        // A symlink counts by where it points, not by what it points at: a link out of the
        // repository must not make the fingerprint depend on the rest of the machine. A
        // FIFO, socket or device counts by its kind: reading one could block forever.
        // Files are hashed as a stream, so a huge (or sparse) file costs no memory.
        let read_err = |source| CacheError::Read {
            path: path.clone(),
            source,
        };
        let meta = std::fs::symlink_metadata(&path).map_err(read_err)?;
        let digest = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(read_err)?;
            Sha256::digest(target.to_string_lossy().as_bytes())
        } else if meta.is_file() {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path)
                .map_err(read_err)?;
            let mut hasher = Sha256::new();
            io::copy(&mut file, &mut hasher).map_err(read_err)?;
            hasher.finalize()
        } else {
            Sha256::digest(format!("special file {:?}", meta.file_type()).as_bytes())
        };
        h.update(rel.as_bytes());
        h.update(b"\0");
        h.update(digest);
    }
    Ok(hex::encode(h.finalize()))
}

/// Paths relative to `repo`, with `/` separators.
fn watched_files(rubric: &Rubric, repo: &Path) -> Result<Vec<String>, CacheError> {
    let globs = match &rubric.watch {
        Some(globs) => {
            let mut set = globset::GlobSetBuilder::new();
            for g in globs {
                let glob = globset::GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| CacheError::Glob {
                        glob: g.clone(),
                        message: e.to_string(),
                    })?;
                set.add(glob);
            }
            Some(set.build().map_err(|e| CacheError::Glob {
                glob: globs.join(", "),
                message: e.to_string(),
            })?)
        }
        None => None,
    };
    // With explicit globs the teacher decides what matters, ignored or not; without them
    // "the repository" means what git would track.
    let mut walk = ignore::WalkBuilder::new(repo);
    walk.standard_filters(false)
        .hidden(false)
        .git_ignore(globs.is_none())
        .require_git(false)
        .filter_entry(|e| !matches!(e.file_name().to_str(), Some(".git" | ".trun")));
    let mut out = Vec::new();
    for entry in walk.build() {
        let entry = entry.map_err(|e| CacheError::Walk {
            path: repo.to_path_buf(),
            message: e.to_string(),
        })?;
        if entry.file_type().is_some_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(repo) else {
            continue;
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        if globs.as_ref().is_none_or(|g| g.is_match(&rel)) {
            out.push(rel);
        }
    }
    Ok(out)
}

/// Stored grading results, in the state store.
pub struct GradeCache {
    store: Arc<dyn Store>,
}

impl GradeCache {
    /// Grading results kept in `store` (shared with the run's recorder).
    pub fn new(store: Arc<dyn Store>) -> GradeCache {
        GradeCache { store }
    }

    /// Opens the SQLite state database at `db_path` for the cache alone.
    pub fn open(db_path: &Path) -> Result<GradeCache, CacheError> {
        Ok(GradeCache::new(Arc::new(SqliteStore::open(db_path)?)))
    }

    fn key(repo: &Path, rubric: &Rubric) -> (String, String) {
        let repo = repo.canonicalize().unwrap_or_else(|_| repo.to_path_buf());
        let rubric = hex::encode(Sha256::digest(rubric.canonical().as_bytes()));
        (repo.display().to_string(), rubric)
    }

    /// The stored result for `repo` under this rubric, if it was graded under `fingerprint`.
    pub fn lookup(
        &self,
        repo: &Path,
        rubric: &Rubric,
        fingerprint: &str,
    ) -> Result<Option<RepoResult>, CacheError> {
        let (repo_key, rubric_key) = Self::key(repo, rubric);
        let row = self.store.grade_result(&repo_key, &rubric_key)?;
        // A row this trun cannot read (older layout) is treated as absent and overwritten.
        Ok(row
            .filter(|r| r.fingerprint == fingerprint)
            .and_then(|r| serde_json::from_str(&r.result).ok()))
    }

    /// Stores `result` as the latest for `repo` under this rubric.
    pub fn store(
        &self,
        repo: &Path,
        rubric: &Rubric,
        fingerprint: &str,
        result: &RepoResult,
    ) -> Result<(), CacheError> {
        let (repo_key, rubric_key) = Self::key(repo, rubric);
        let record = GradeRecord {
            fingerprint: fingerprint.to_string(),
            result: serde_json::to_string(result).unwrap_or_default(),
            graded_at: result.graded_at,
        };
        self.store
            .set_grade_result(&repo_key, &rubric_key, &record)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rubric(watch: Option<&str>) -> Rubric {
        let w = watch
            .map(|w| format!("watch: [\"{w}\"]\n"))
            .unwrap_or_default();
        Rubric::from_yaml(&format!("{w}criteria:\n  - {{id: a, run: 'true'}}\n"), "r")
            .expect("valid")
    }

    #[test]
    fn fingerprint_follows_watched_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        std::fs::write(dir.path().join("src/a.c"), "1").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "x").expect("write");
        let r = rubric(Some("src/**"));
        let before = fingerprint(&r, dir.path(), "local").expect("fp");
        std::fs::write(dir.path().join("notes.txt"), "y").expect("write");
        assert_eq!(fingerprint(&r, dir.path(), "local").expect("fp"), before);
        std::fs::write(dir.path().join("src/a.c"), "2").expect("write");
        assert_ne!(fingerprint(&r, dir.path(), "local").expect("fp"), before);

        let all = rubric(None);
        let before = fingerprint(&all, dir.path(), "local").expect("fp");
        std::fs::write(dir.path().join(".gitignore"), "build/\n").expect("write");
        let with_ignore = fingerprint(&all, dir.path(), "local").expect("fp");
        assert_ne!(with_ignore, before);
        std::fs::create_dir(dir.path().join("build")).expect("mkdir");
        std::fs::write(dir.path().join("build/out"), "o").expect("write");
        assert_eq!(
            fingerprint(&all, dir.path(), "local").expect("fp"),
            with_ignore
        );
        assert_ne!(
            fingerprint(&all, dir.path(), "docker").expect("fp"),
            with_ignore
        );
    }

    #[test]
    fn results_are_kept_by_fingerprint_in_a_shared_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("alice");
        std::fs::create_dir(&repo).expect("mkdir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&crate::state::db_path(dir.path())).expect("store"));
        let cache = GradeCache::new(store.clone());
        let r = rubric(None);
        assert!(cache.lookup(&repo, &r, "fp1").expect("lookup").is_none());
        let result = RepoResult::crashed(&r, &repo, "boom".into(), 5);
        cache.store(&repo, &r, "fp1", &result).expect("store");
        let found = cache
            .lookup(&repo, &r, "fp1")
            .expect("lookup")
            .expect("stored");
        assert_eq!(found.error.as_deref(), Some("boom"));
        assert!(
            cache.lookup(&repo, &r, "fp2").expect("lookup").is_none(),
            "another fingerprint is a miss"
        );
        // A second cache over the same store (the same connection) sees it.
        let again = GradeCache::new(store);
        assert!(again.lookup(&repo, &r, "fp1").expect("lookup").is_some());
    }
}
