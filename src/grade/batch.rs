//! Grading many repositories at once.
//!
//! A fixed number of worker threads (`-j`) take repositories from a shared queue; each
//! repository is graded on its own, so one that crashes the runner, hangs (its criteria time
//! out) or floods its output (capped by the runner) costs only its own slot and ends as a row
//! of the gradebook. A progress bar over repositories is drawn on stderr when it is a
//! terminal. Threads rather than async tasks, because every criterion is a blocking child
//! process and the runner already waits on threads. This module does not render reports.

use std::io::IsTerminal;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::cache::{fingerprint, GradeCache};
use super::report;
use super::rubric::Rubric;
use super::runner::CriterionRunner;
use super::score::{grade_repo, RepoResult};

#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Repositories graded at once (at least 1).
    pub jobs: usize,
    /// Draw a progress bar on stderr (only when stderr is a terminal).
    pub progress: bool,
    /// Re-run even when a stored result matches the fingerprint.
    pub force: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            progress: true,
            force: false,
        }
    }
}

/// Results of a batch, in the order the repositories were given.
#[derive(Debug, Clone)]
pub struct Batch {
    pub results: Vec<RepoResult>,
    pub duration: Duration,
}

impl Batch {
    /// The CSV gradebook of this batch.
    pub fn gradebook_csv(&self, rubric: &Rubric) -> String {
        report::gradebook_csv(rubric, &self.results)
    }

    /// How many results were reused from the cache.
    pub fn cached(&self) -> usize {
        self.results.iter().filter(|r| r.cached).count()
    }
}

/// Every subdirectory of `dir` that is not hidden, sorted by name (`--repos DIR`).
pub fn repos_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut repos = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type()?.is_dir() {
            repos.push(entry.path());
        }
    }
    repos.sort();
    Ok(repos)
}

/// Grades one repository, reusing a stored result when its fingerprint is unchanged (unless
/// `force`), storing the new one otherwise. Never fails and never panics: a cache problem
/// only means grading without the cache, and a panic becomes a crashed result.
pub fn grade_one(
    rubric: &Rubric,
    repo: &Path,
    runner: &dyn CriterionRunner,
    cache: Option<&GradeCache>,
    force: bool,
) -> RepoResult {
    let started = Instant::now();
    let fp = cache.and_then(|_| fingerprint(rubric, repo, &runner.name()).ok());
    if let (Some(cache), Some(fp), false) = (cache, &fp, force) {
        if let Ok(Some(mut stored)) = cache.lookup(repo, rubric, fp) {
            stored.cached = true;
            stored.repo = super::score::repo_name(repo);
            stored.path = repo.to_path_buf();
            return stored;
        }
    }
    let graded = catch_unwind(AssertUnwindSafe(|| grade_repo(rubric, repo, runner)));
    let mut result = match graded {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            RepoResult::crashed(
                rubric,
                repo,
                format!("grading panicked: {what}"),
                started.elapsed().as_millis() as u64,
            )
        }
    };
    result.fingerprint = fp.clone();
    // A crash says nothing about the student's work: do not keep it.
    if let (Some(cache), Some(fp), None) = (cache, &fp, &result.error) {
        let _ = cache.store(repo, rubric, fp, &result);
    }
    result
}

/// Grades `repos` with at most `opts.jobs` at once. Returns one result per repository,
/// in the order given, whatever happened to each.
pub fn grade_batch(
    rubric: &Rubric,
    repos: &[PathBuf],
    runner: &dyn CriterionRunner,
    cache: Option<&GradeCache>,
    opts: &BatchOptions,
) -> Batch {
    let started = Instant::now();
    let target = if opts.progress && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(repos.len() as u64), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} grading [{bar:30}] {pos}/{len} repos {elapsed} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));

    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<RepoResult>>> = repos.iter().map(|_| Mutex::new(None)).collect();
    let workers = opts.jobs.clamp(1, repos.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(repo) = repos.get(i) else { break };
                let result = grade_one(rubric, repo, runner, cache, opts.force);
                bar.set_message(format!(
                    "{}: {}/{}",
                    result.repo,
                    report::fmt_points(result.score),
                    report::fmt_points(result.max_score)
                ));
                bar.inc(1);
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(result);
                }
            });
        }
    });
    bar.finish_and_clear();
    let results = slots
        .into_iter()
        .zip(repos)
        .map(|(slot, repo)| {
            slot.into_inner().ok().flatten().unwrap_or_else(|| {
                RepoResult::crashed(rubric, repo, "grading did not finish".to_string(), 0)
            })
        })
        .collect();
    Batch {
        results,
        duration: started.elapsed(),
    }
}
