//! Up-to-date checks: does a step need to run, and if not, why not.
//!
//! [`UpToDate`] answers, for one step at a time, whether it must run ([`Decision`]) and
//! says why in words a person can act on (`src/main.rs changed`, `tainted: definition
//! changed`). A step with `sources` is up to date when its [`Fingerprint`] (resolved
//! definition + content of its source files + what its upstream steps produced) equals
//! the one of its last success and every `generates` file still has the content recorded
//! then. What an upstream step produced is the content of its `generates` and its
//! outputs, not its fingerprint: an upstream step that re-ran and wrote the same bytes
//! leaves its dependents up to date (early cutoff; the caller builds those digests, see
//! `uptodate_hooks`).
//! After a success it records the fingerprint, the definition's history and the outputs
//! (stored content-addressed, so an earlier success can be restored after a branch
//! switch instead of re-running).
//!
//! It is not the planner: it does not know about jobs, `needs` or `--force STEP`
//! (the caller passes the upstream fingerprints and `force`), and it never runs a
//! command, and it holds no SQL: what it remembers (definitions, successes, outputs)
//! goes through the [`Store`], and the stat cache through the machine-local
//! [`StatCache`], both usually the process's one [`SqliteStore`](crate::state::SqliteStore).
//!
//! Speed comes from four things: each source directory is walked once per invocation
//! (until [`UpToDate::invalidate`]) however many steps read it, a directory whose
//! listing cannot have changed since the last invocation is not read again, only its
//! files stat'ed (see `walkcache`), a file whose stat is unchanged is not read (see
//! `statcache`), and files that must be read are hashed on all cores.

pub mod cas;
pub mod fingerprint;
pub mod statcache;
pub mod walk;
pub mod walkcache;

pub use fingerprint::{ContentHash, Fingerprint};

use crate::state::{
    NewSuccess, OutputRecord, SqliteStore, StatCache, StateError, StepState, Store,
};
use cas::Cas;
use serde::Serialize;
use statcache::{Cached, FileStat};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use walk::{Entry, Filters, Patterns};
use walkcache::WalkRecord;

/// What the planner knows about one step when asking whether it must run.
#[derive(Debug, Clone)]
pub struct StepSpec {
    /// Stable identity: `"<job key>/<step id>"`, e.g. `"build/compile"`.
    pub key: String,
    /// Resolved definition (command after templating, shell, env, working dir, image,
    /// `with`), hashed canonically (sorted keys).
    pub definition: serde_json::Value,
    /// Globs relative to `base`; `!pattern` negates; `**`, `{a,b}`.
    pub sources: Vec<String>,
    /// Paths or globs relative to `base`; a directory stands for all files below it.
    pub generates: Vec<String>,
    /// The workspace root.
    pub base: PathBuf,
    /// Digests of what the steps it depends on produced (their `generates` content and
    /// outputs, chained over their own upstream), in a stable order.
    pub upstream: Vec<Fingerprint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "reason", rename_all = "snake_case")]
pub enum Decision {
    Run(RunReason),
    Skip(SkipReason),
}

impl Decision {
    pub fn is_run(&self) -> bool {
        matches!(self, Decision::Run(_))
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Run(r) => r.fmt(f),
            Decision::Skip(s) => s.fmt(f),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum RunReason {
    NeverRan,
    Forced,
    /// No `sources`: always runs, like go-task.
    NoSources,
    /// Tainted. `from_version` is the definition version of the last success.
    DefinitionChanged {
        from_version: u32,
    },
    /// Added, removed or modified paths, sorted.
    SourcesChanged {
        changed: Vec<String>,
    },
    UpstreamChanged,
    /// Only in `trun plan`: the step is up to date unless one of these upstream steps,
    /// which will run first, produces different `generates` or outputs.
    UpstreamWillRun {
        steps: Vec<String>,
    },
    GeneratesMissing(Vec<String>),
    GeneratesModified(Vec<String>),
}

/// `a, b, c` or `a, b, c (+4 more)`.
fn name_up_to_three(paths: &[String]) -> String {
    let shown = paths
        .iter()
        .take(3)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > 3 {
        format!("{shown} (+{} more)", paths.len() - 3)
    } else {
        shown
    }
}

impl fmt::Display for RunReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunReason::NeverRan => f.write_str("never ran"),
            RunReason::Forced => f.write_str("forced"),
            RunReason::NoSources => f.write_str("no sources"),
            RunReason::DefinitionChanged { .. } => f.write_str("tainted: definition changed"),
            RunReason::SourcesChanged { changed } => {
                let shown = changed
                    .iter()
                    .take(3)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                write!(f, "{shown} changed")?;
                if changed.len() > 3 {
                    write!(f, " (+{} more)", changed.len() - 3)?;
                }
                Ok(())
            }
            RunReason::UpstreamChanged => f.write_str("an upstream step changed"),
            RunReason::UpstreamWillRun { steps } => match steps.as_slice() {
                [one] => write!(f, "runs if {one}'s output changes"),
                [init @ .., last] if steps.len() <= 3 => write!(
                    f,
                    "runs if the output of {} or {last} changes",
                    init.join(", ")
                ),
                _ => write!(
                    f,
                    "runs if the output of {} changes",
                    name_up_to_three(steps)
                ),
            },
            RunReason::GeneratesMissing(p) => {
                write!(f, "generates path missing: {}", name_up_to_three(p))
            }
            RunReason::GeneratesModified(p) => {
                write!(f, "generates path modified: {}", name_up_to_three(p))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum SkipReason {
    UpToDate,
    RestoredFromCache { files: usize },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::UpToDate => f.write_str("up to date"),
            SkipReason::RestoredFromCache { .. } => f.write_str("restored from cache"),
        }
    }
}

/// The answer for one step, and what [`UpToDate::record_success`] needs afterwards.
#[derive(Debug, Clone)]
pub struct Check {
    pub fingerprint: Fingerprint,
    pub decision: Decision,
    /// The version this definition has, or will get when it next succeeds.
    pub definition_version: u32,
    /// The matched source files with their content hashes, sorted by path.
    pub files: Vec<(String, ContentHash)>,
    /// For a step found up to date: the `generates` (path, content hash) its last
    /// success recorded, sorted; what it hands on to its dependents. Read here
    /// anyway, so the caller need not ask the store again.
    pub produced: Option<Vec<(String, ContentHash)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Objects in the CAS, and their total size.
    pub objects: usize,
    pub bytes: u64,
    /// Recorded successes (each may be restored), and the steps they belong to.
    pub entries: usize,
    pub steps: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PruneReport {
    pub entries_removed: usize,
    pub objects_removed: usize,
    pub bytes_freed: u64,
}

/// Work done by the file index since [`UpToDate::open`]: what the benchmark and
/// `--verbose` output can show to prove a no-op reads no file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct IndexStats {
    pub roots_walked: usize,
    /// Of `roots_walked`, those answered from the walk cache (see `walkcache`).
    pub roots_replayed: usize,
    pub files_listed: usize,
    pub files_hashed: usize,
    pub stat_cache_hits: usize,
}

/// One version of a step's definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DefinitionVersion {
    pub version: u32,
    pub definition: serde_json::Value,
    pub recorded_at_ns: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum UpToDateError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid glob `{pattern}`: {source}")]
    Glob {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("cannot walk {path}: {message}")]
    Walk { path: PathBuf, message: String },
}

/// One walked directory: its files (sorted by relative path) and the stat-cache rows
/// loaded for them, aligned by index.
struct Listing {
    entries: Vec<Entry>,
    cached: Vec<Option<Cached>>,
    /// The row each file's hash was settled with, once per invocation: a file
    /// read for one step is not read for the next.
    settled: Vec<OnceLock<Cached>>,
    /// The walk record behind the listing, kept to be stored again with the
    /// rows ([`UpToDate::store_walk_rows`]).
    record: Option<WalkRecord>,
    /// `cached` came from the walk record: a row it lacks, or one that is not
    /// trusted, is looked up in the store before the file is read. Otherwise
    /// the record holds no rows yet.
    from_record: bool,
    /// How many of the record's rows were missing or stale.
    stale: std::sync::atomic::AtomicUsize,
}

impl Listing {
    /// Its record is worth writing again, with rows: it has none yet, or more
    /// than a few of its rows were stale (a handful are looked up in the store
    /// on every run rather than rewriting a record of ten thousand files).
    fn rows_worth_storing(&self) -> bool {
        let stale = self.stale.load(std::sync::atomic::Ordering::Relaxed);
        self.record.is_some() && (!self.from_record || stale * 64 > self.entries.len())
    }
}

/// What [`UpToDate::walk_sources`] found in one directory: the files; their
/// rows when the walk cache had them; the record to keep; whether it walked
/// for real.
#[derive(Default)]
struct Walk {
    entries: Vec<Entry>,
    rows: Option<Vec<Option<Cached>>>,
    record: Option<WalkRecord>,
    fresh: bool,
}

/// Per-invocation memory: walks, hashes already settled, compiled patterns.
#[derive(Default)]
struct Index {
    /// Keyed by (workspace root, directory relative to it; "" for the root itself).
    listings: HashMap<(PathBuf, String), Arc<Listing>>,
    /// Hashes of files outside listings (literal sources, outputs).
    resolved: HashMap<PathBuf, ContentHash>,
    patterns: HashMap<Vec<String>, Arc<Patterns>>,
    stats: IndexStats,
}

/// A file about to get a hash: where it is, its stat now, and its stat-cache row.
struct Candidate {
    rel: String,
    abs: PathBuf,
    stat: FileStat,
    cached: Option<Cached>,
}

/// See the module documentation. `Send + Sync`: one instance serves the planner and the
/// engine's threads.
pub struct UpToDate {
    store: Arc<dyn Store>,
    stats: Arc<dyn StatCache>,
    cas: Cas,
    index: Mutex<Index>,
    /// Walks answered by the walk cache; counted apart from `index` because
    /// walks run while its lock is held.
    replayed: std::sync::atomic::AtomicUsize,
    /// What [`UpToDate::prefetch`] read for each step, taken by its first check.
    prefetched: Mutex<HashMap<String, Prefetched>>,
}

/// A step's state as the store held it when the run opened: its definition
/// and last success, the `generates` of that success and their stat-cache rows.
/// Read for every step at once, and used once: by the step's first check.
/// Later checks of the same key ask the store again. A state that is stale by
/// then (another run of `trun serve` recorded a success meanwhile) only
/// costs a run: a step is still up to date only if its fingerprint is that
/// success's and the files on disk are the ones it recorded.
struct Prefetched {
    state: StepState,
    outputs: Vec<OutputRecord>,
    rows: Vec<Option<Cached>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves data that is still consistent
    // enough for a cache (worst case: a re-walk or re-hash).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// (start, end) of the entries below relative directory `dir` in a listing of `root`.
fn range_below(entries: &[Entry], root: &str, dir: &str) -> (usize, usize) {
    if dir == root {
        return (0, entries.len());
    }
    let lo = format!("{dir}/");
    let hi = format!("{dir}0");
    (
        entries.partition_point(|e| e.rel.as_str() < lo.as_str()),
        entries.partition_point(|e| e.rel.as_str() < hi.as_str()),
    )
}

impl UpToDate {
    /// The up-to-date engine over `store` (definitions, successes) and `stats`
    /// (the stat cache); outputs are stored under `cas_dir`. A process passes
    /// its one store for both.
    pub fn new(store: Arc<dyn Store>, stats: Arc<dyn StatCache>, cas_dir: &Path) -> UpToDate {
        UpToDate {
            store,
            stats,
            cas: Cas::new(cas_dir),
            index: Mutex::new(Index::default()),
            replayed: Default::default(),
            prefetched: Mutex::new(HashMap::new()),
        }
    }

    /// Opens the SQLite state database at `db_path` for this engine alone
    /// (tests, tools); a run shares its store through [`UpToDate::new`].
    pub fn open(db_path: &Path, cas_dir: &Path) -> Result<UpToDate, UpToDateError> {
        let store = Arc::new(SqliteStore::open(db_path)?);
        Ok(UpToDate::new(store.clone(), store, cas_dir))
    }

    /// Walks, in one go and on all cores, every source directory the given steps will
    /// need, so that the [`check`](Self::check)s that follow find them listed. Optional:
    /// `check` walks what it needs itself, one directory at a time.
    pub fn prepare(&self, specs: &[&StepSpec]) -> Result<(), UpToDateError> {
        let mut index = lock(&self.index);
        let mut wanted: Vec<(PathBuf, String)> = Vec::new();
        for spec in specs {
            if spec.sources.is_empty() {
                continue;
            }
            let patterns = patterns_for(&mut index, &spec.sources)?;
            for root in &patterns.roots {
                if find_listing(&index, &spec.base, root).is_none() {
                    wanted.push((spec.base.clone(), root.clone()));
                }
            }
        }
        wanted.sort();
        wanted.dedup();
        let all = wanted.clone();
        wanted.retain(|(b, r)| {
            !all.iter()
                .any(|(ab, ar)| ab == b && ar != r && walk::is_under(r, ar))
        });
        // Many sibling roots (`src/d000/**` … `src/d099/**`) are walked as
        // their parent, once: each separate walk pays for probing every
        // ancestor's ignore files again. The workspace root itself is never
        // substituted, so an unrelated big directory is not walked for nothing.
        let mut by_parent: HashMap<(PathBuf, String), usize> = HashMap::new();
        for (b, r) in &wanted {
            if let Some(i) = r.rfind('/') {
                *by_parent
                    .entry((b.clone(), r[..i].to_string()))
                    .or_default() += 1;
            }
        }
        let merged: Vec<(PathBuf, String)> = by_parent
            .into_iter()
            .filter(|(_, n)| *n >= 4)
            .map(|(k, _)| k)
            .collect();
        if !merged.is_empty() {
            wanted.retain(|(b, r)| {
                !merged
                    .iter()
                    .any(|(mb, mr)| mb == b && walk::is_under(r, mr))
            });
            wanted.extend(merged);
            wanted.sort();
            wanted.dedup();
        }
        if wanted.is_empty() {
            return Ok(());
        }
        // Not `rayon::current_num_threads()`: asking starts rayon's pool, two idle
        // threads a no-op that walks one big root never uses.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let walked = self.walk_sources(&wanted, wanted.len() < cores)?;
        for ((base, root), walk) in wanted.into_iter().zip(walked) {
            let listing = self.listing_of(&mut index, &base.join(&root), walk)?;
            index.listings.insert((base, root), Arc::new(listing));
        }
        Ok(())
    }

    /// Reads, in one go, the state each of `specs` will be checked against:
    /// definition, last success, that success's `generates` and their
    /// stat-cache rows. A no-op over a hundred steps then makes one read
    /// where it made four queries per step. Optional, like
    /// [`prepare`](Self::prepare): a check finds its step here or asks the
    /// store.
    pub fn prefetch(&self, specs: &[&StepSpec]) -> Result<(), UpToDateError> {
        let specs: Vec<&StepSpec> = specs
            .iter()
            .copied()
            .filter(|s| !s.sources.is_empty())
            .collect();
        let keys: Vec<&str> = specs.iter().map(|s| s.key.as_str()).collect();
        let states = self.store.step_states(&keys)?;
        let paths: Vec<PathBuf> = specs
            .iter()
            .zip(&states)
            .flat_map(|(spec, (_, outputs))| outputs.iter().map(|o| spec.base.join(&o.path)))
            .collect();
        let mut rows = self.load_paths(&paths)?.into_iter();
        let mut map = lock(&self.prefetched);
        for (spec, (state, outputs)) in specs.iter().zip(states) {
            let rows: Vec<Option<Cached>> = rows.by_ref().take(outputs.len()).collect();
            map.insert(
                spec.key.clone(),
                Prefetched {
                    state,
                    outputs,
                    rows,
                },
            );
        }
        Ok(())
    }

    /// The fingerprint of the last success of each prefetched step not
    /// checked yet: for the caller's own reads keyed by it.
    pub fn prefetched_fingerprints(&self) -> Vec<(String, Fingerprint)> {
        lock(&self.prefetched)
            .iter()
            .filter_map(|(k, p)| {
                let last = p.state.last_success.as_ref()?;
                Some((k.clone(), Fingerprint(last.fingerprint)))
            })
            .collect()
    }

    /// Decides whether `spec` must run. `force`: the user forced this step.
    pub fn check(&self, spec: &StepSpec, force: bool) -> Result<Check, UpToDateError> {
        let def_hash = fingerprint::definition_hash(&spec.definition);
        let mut index = lock(&self.index);
        let files = if spec.sources.is_empty() {
            Vec::new()
        } else {
            self.source_files(&mut index, spec)?
        };
        let fingerprint = fingerprint::compute(&def_hash, &files, &spec.upstream);

        let (state, mut prefetched_outputs) = match lock(&self.prefetched).remove(&spec.key) {
            Some(p) => (p.state, Some((p.outputs, p.rows))),
            None => (self.store.step_state(&spec.key)?, None),
        };
        let StepState {
            definition: latest_def,
            last_success: last,
        } = state;
        let definition_version = match latest_def {
            Some(d) if d.hash == def_hash => d.version,
            Some(d) => d.version + 1,
            None => 1,
        };
        let mut produced = None;
        let decision = if force {
            Decision::Run(RunReason::Forced)
        } else if spec.sources.is_empty() {
            Decision::Run(RunReason::NoSources)
        } else {
            match last {
                None => Decision::Run(RunReason::NeverRan),
                Some(last) if last.def_hash != def_hash => {
                    Decision::Run(RunReason::DefinitionChanged {
                        from_version: last.def_version,
                    })
                }
                Some(last) if last.fingerprint != fingerprint.0 => {
                    let before = self.recorded_sources(last.id)?;
                    let changed = fingerprint::changed_paths(&before, &files);
                    if changed.is_empty() {
                        Decision::Run(RunReason::UpstreamChanged)
                    } else {
                        Decision::Run(RunReason::SourcesChanged { changed })
                    }
                }
                Some(last) => {
                    let (decision, outputs) = self.outputs_decision(
                        &mut index,
                        spec,
                        last.id,
                        prefetched_outputs.take(),
                    )?;
                    produced = Some(outputs);
                    decision
                }
            }
        };
        Ok(Check {
            fingerprint,
            decision,
            definition_version,
            files,
            produced,
        })
    }

    /// The fingerprint of the step's latest success, if any.
    pub fn latest_fingerprint(&self, key: &str) -> Result<Option<Fingerprint>, UpToDateError> {
        Ok(self
            .store
            .step_state(key)?
            .last_success
            .map(|s| Fingerprint(s.fingerprint)))
    }

    /// The `generates` files (path, content hash) recorded by the step's latest success,
    /// sorted by path: what its dependents received from it.
    pub fn latest_outputs(&self, key: &str) -> Result<Vec<(String, ContentHash)>, UpToDateError> {
        let Some(last) = self.store.step_state(key)?.last_success else {
            return Ok(Vec::new());
        };
        let mut out: Vec<(String, ContentHash)> = self
            .store
            .success_outputs(last.id)?
            .into_iter()
            .map(|o| (o.path, o.hash))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The outputs (path, content hash) of a success of `key` with exactly
    /// this fingerprint whose objects are all still in the CAS, newest first:
    /// what [`try_restore`](Self::try_restore) would write. Changes nothing;
    /// `trun plan` uses it to predict restores.
    pub fn restorable_outputs(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
    ) -> Result<Option<Vec<(String, ContentHash)>>, UpToDateError> {
        for id in self.store.successes_with_fingerprint(key, &fingerprint.0)? {
            let outputs = self.store.success_outputs(id)?;
            if !outputs.is_empty() && outputs.iter().all(|o| self.cas.contains(&o.hash)) {
                return Ok(Some(
                    outputs.into_iter().map(|o| (o.path, o.hash)).collect(),
                ));
            }
        }
        Ok(None)
    }

    /// When `check` says run because of changed sources/upstream or damaged outputs but
    /// an earlier success had exactly this fingerprint, writes that success's outputs
    /// back from the CAS, makes it the step's last success, and returns how many files
    /// were written (`Some(0)`: they were already right). `None`: the step must run
    /// (no such success, it recorded no outputs, or an object is gone).
    ///
    /// A step tainted by a definition change, a forced step and a step without sources
    /// are never restored. Writing files forgets the walk results, like `invalidate`.
    pub fn try_restore(
        &self,
        spec: &StepSpec,
        check: &Check,
    ) -> Result<Option<usize>, UpToDateError> {
        match &check.decision {
            Decision::Run(
                RunReason::SourcesChanged { .. }
                | RunReason::UpstreamChanged
                | RunReason::GeneratesMissing(_)
                | RunReason::GeneratesModified(_),
            ) => {}
            _ => return Ok(None),
        }
        let candidates: Vec<(i64, Vec<OutputRecord>)> = self
            .store
            .successes_with_fingerprint(&spec.key, &check.fingerprint.0)?
            .into_iter()
            .map(|id| Ok((id, self.store.success_outputs(id)?)))
            .collect::<Result<_, UpToDateError>>()?;
        for (id, outputs) in candidates {
            if outputs.is_empty() || !outputs.iter().all(|o| self.cas.contains(&o.hash)) {
                continue;
            }
            let mut written = 0;
            let mut complete = true;
            for OutputRecord {
                path, hash, mode, ..
            } in &outputs
            {
                let abs = spec.base.join(path);
                let in_place = std::fs::metadata(&abs)
                    .ok()
                    .filter(|m| m.is_file())
                    .is_some_and(|m| {
                        (FileStat::from_metadata(&m).mode & 0o111) == (mode & 0o111)
                            && statcache::hash_file(&abs).ok() == Some(*hash)
                    });
                if in_place {
                    continue;
                }
                if !self.cas.restore(hash, &abs, *mode)? {
                    complete = false;
                    break;
                }
                written += 1;
            }
            if written > 0 {
                self.invalidate();
            }
            if !complete {
                continue;
            }
            self.store.set_latest_success(&spec.key, id)?;
            return Ok(Some(written));
        }
        Ok(None)
    }

    /// Records a successful run of `spec` whose pre-run check was `check`: the
    /// fingerprint, the source hashes (to name changed files later), the definition
    /// (a new version when its hash changed) and every `generates` file, stored in the
    /// CAS. A `generates` path the step did not produce is not recorded; the next check
    /// reports it missing. Returns the recorded `generates` (path, content hash), sorted.
    pub fn record_success(
        &self,
        spec: &StepSpec,
        check: &Check,
        run_id: i64,
    ) -> Result<Vec<(String, ContentHash)>, UpToDateError> {
        use rayon::prelude::*;
        let def_hash = fingerprint::definition_hash(&spec.definition);
        let outputs = if spec.generates.is_empty() {
            Vec::new()
        } else {
            let patterns = Patterns::parse(&spec.generates)?;
            walk::expand_outputs(&spec.base, &patterns)?
        };
        let hashed = statcache::hash_all(
            &outputs
                .iter()
                .map(|e| (e.abs.clone(), e.stat))
                .collect::<Vec<_>>(),
        )?;
        let stored: Vec<ContentHash> = outputs
            .par_iter()
            .zip(hashed.par_iter())
            .map(|(e, (_, c))| self.cas.store(&e.abs, Some(c.hash)))
            .collect::<Result<_, _>>()?;
        let now = statcache::now_ns();

        let recorded: Vec<OutputRecord> = outputs
            .iter()
            .zip(&stored)
            .map(|(e, hash)| OutputRecord {
                path: e.rel.clone(),
                hash: *hash,
                mode: e.stat.mode,
                size: e.stat.size,
            })
            .collect();
        let definition = fingerprint::canonical_json(&spec.definition);
        let sources = fingerprint::encode_files(&check.files);
        self.store.record_success(&NewSuccess {
            step_key: &spec.key,
            run_id,
            fingerprint: check.fingerprint.0,
            def_hash,
            definition: &definition,
            created_ns: now,
            sources: &sources,
            outputs: &recorded,
        })?;
        self.store_stats(&hashed)?;
        let mut produced: Vec<(String, ContentHash)> =
            recorded.into_iter().map(|o| (o.path, o.hash)).collect();
        produced.sort();
        Ok(produced)
    }

    /// Files may have changed (a step ran): forget this invocation's walks and hashes.
    /// The stat cache in the database stays; it is what makes the next walk cheap.
    pub fn invalidate(&self) {
        let mut index = lock(&self.index);
        index.listings.clear();
        index.resolved.clear();
    }

    /// The newest definition version recorded for a step.
    pub fn definition_version(&self, key: &str) -> Result<Option<u32>, UpToDateError> {
        Ok(self.store.latest_definition(key)?.map(|d| d.version))
    }

    /// Every recorded version of a step's definition, oldest first (for `trun show`).
    pub fn definition_history(&self, key: &str) -> Result<Vec<DefinitionVersion>, UpToDateError> {
        Ok(self
            .store
            .definition_history(key)?
            .into_iter()
            .map(|d| DefinitionVersion {
                version: d.version,
                definition: serde_json::from_str(&d.definition)
                    .unwrap_or(serde_json::Value::String(d.definition)),
                recorded_at_ns: d.recorded_at_ns,
            })
            .collect())
    }

    pub fn index_stats(&self) -> IndexStats {
        IndexStats {
            roots_replayed: self.replayed.load(std::sync::atomic::Ordering::Relaxed),
            ..lock(&self.index).stats
        }
    }

    pub fn cache_stats(&self) -> Result<CacheStats, UpToDateError> {
        let (objects, bytes) = self.cas.usage()?;
        let (entries, steps) = self.store.success_counts()?;
        Ok(CacheStats {
            objects,
            bytes,
            entries,
            steps,
        })
    }

    /// Forgets recorded successes beyond the `keep` newest per step and/or older than
    /// `older_than` (a step's last success is always kept: it is what makes it up to
    /// date), then deletes CAS objects no remaining success refers to. With neither
    /// limit, only unreferenced objects are deleted.
    pub fn prune(
        &self,
        keep: Option<usize>,
        older_than: Option<Duration>,
    ) -> Result<PruneReport, UpToDateError> {
        let mut report = PruneReport::default();
        let cutoff = older_than.map(|age| {
            statcache::now_ns().saturating_sub(age.as_nanos().min(i64::MAX as u128) as i64)
        });
        let pruned = self.store.prune_successes(keep, cutoff)?;
        report.entries_removed = pruned.removed;
        let referenced: HashSet<ContentHash> = pruned.referenced;
        let (objects, bytes) = self.cas.collect_garbage(&referenced)?;
        report.objects_removed = objects;
        report.bytes_freed = bytes;
        Ok(report)
    }

    /// The step's matched source files with their hashes, sorted by path.
    fn source_files(
        &self,
        index: &mut Index,
        spec: &StepSpec,
    ) -> Result<Vec<(String, ContentHash)>, UpToDateError> {
        let patterns = patterns_for(index, &spec.sources)?;
        let mut dirs: Vec<String> = patterns.roots.clone();
        let mut literal_files = Vec::new();
        for lit in &patterns.literals {
            if let Some(e) = walk::stat_file(&spec.base, lit) {
                literal_files.push(e);
            } else if spec.base.join(lit).is_dir() {
                dirs.push(lit.clone());
            }
        }
        let mut groups: Vec<(Arc<Listing>, Vec<usize>)> = Vec::new();
        for dir in &dirs {
            let (listing, start, end) = self.listing(index, &spec.base, dir)?;
            let picked: Vec<usize> = (start..end)
                .filter(|&i| patterns.matches(&listing.entries[i].rel))
                .collect();
            groups.push((listing, picked));
        }

        let mut to_hash: Vec<(PathBuf, FileStat)> = Vec::new();
        let mut slots: Vec<(&Listing, usize)> = Vec::new();
        // Rows a walk record lacked, or held stale: the store may have them.
        let mut look_up: Vec<(&Listing, usize)> = Vec::new();
        for (listing, picked) in &groups {
            for &i in picked {
                if listing.settled[i].get().is_some() {
                    continue;
                }
                let e = &listing.entries[i];
                match listing.cached[i].filter(|row| row.trusted_for(&e.stat)) {
                    Some(row) => {
                        index.stats.stat_cache_hits += 1;
                        let _ = listing.settled[i].set(row);
                    }
                    None if listing.from_record => look_up.push((listing, i)),
                    None => {
                        to_hash.push((e.abs.clone(), e.stat));
                        slots.push((listing, i));
                    }
                }
            }
        }
        if !look_up.is_empty() {
            let paths: Vec<PathBuf> = look_up
                .iter()
                .map(|(l, i)| l.entries[*i].abs.clone())
                .collect();
            for ((listing, i), row) in look_up.into_iter().zip(self.load_paths(&paths)?) {
                listing
                    .stale
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let e = &listing.entries[i];
                match row.filter(|row| row.trusted_for(&e.stat)) {
                    Some(row) => {
                        index.stats.stat_cache_hits += 1;
                        let _ = listing.settled[i].set(row);
                    }
                    None => {
                        to_hash.push((e.abs.clone(), e.stat));
                        slots.push((listing, i));
                    }
                }
            }
        }
        for ((listing, i), row) in slots.into_iter().zip(self.hash_and_store(index, &to_hash)?) {
            let _ = listing.settled[i].set(row);
        }
        let mut files: Vec<(String, ContentHash)> = groups
            .iter()
            .flat_map(|(l, picked)| {
                picked.iter().map(|&i| {
                    (
                        l.entries[i].rel.clone(),
                        l.settled[i].get().map(|c| c.hash).unwrap_or_default(),
                    )
                })
            })
            .collect();

        if !literal_files.is_empty() {
            let paths: Vec<PathBuf> = literal_files.iter().map(|e| e.abs.clone()).collect();
            let rows = self.load_paths(&paths)?;
            let candidates: Vec<Candidate> = literal_files
                .into_iter()
                .zip(rows)
                .filter(|(e, _)| patterns.matches(&e.rel))
                .map(|(e, cached)| Candidate {
                    rel: e.rel,
                    abs: e.abs,
                    stat: e.stat,
                    cached,
                })
                .collect();
            let hashes = self.resolve(index, &candidates)?;
            files.extend(candidates.into_iter().map(|c| c.rel).zip(hashes));
        }
        if dirs.len() + patterns.literals.len() > 1 {
            files.sort_by(|a, b| a.0.cmp(&b.0));
            files.dedup_by(|a, b| a.0 == b.0);
        }
        Ok(files)
    }

    /// Reads and hashes files on all cores and writes their stat-cache rows back in one
    /// transaction.
    fn hash_and_store(
        &self,
        index: &mut Index,
        files: &[(PathBuf, FileStat)],
    ) -> Result<Vec<Cached>, UpToDateError> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let rows = statcache::hash_all(files)?;
        index.stats.files_hashed += rows.len();
        self.store_stats(&rows)?;
        Ok(rows.into_iter().map(|(_, c)| c).collect())
    }

    /// The listing covering relative directory `dir`, walking it if no listing of it or
    /// of a directory above it exists yet; with the range of entries below `dir`.
    fn listing(
        &self,
        index: &mut Index,
        base: &Path,
        dir: &str,
    ) -> Result<(Arc<Listing>, usize, usize), UpToDateError> {
        if let Some((root, listing)) = find_listing(index, base, dir) {
            let (s, e) = range_below(&listing.entries, &root, dir);
            return Ok((listing, s, e));
        }
        let pair = (base.to_path_buf(), dir.to_string());
        let walk = self
            .walk_sources(std::slice::from_ref(&pair), false)?
            .pop()
            .unwrap_or_default();
        let listing = Arc::new(self.listing_of(index, &base.join(dir), walk)?);
        index
            .listings
            .insert((base.to_path_buf(), dir.to_string()), listing.clone());
        let n = listing.entries.len();
        Ok((listing, 0, n))
    }

    /// The source files below each (workspace root, relative directory), as
    /// [`walk::walk`] with ignore files lists them: replayed from the walk cache
    /// where nothing it rests on changed, walked for real (and recorded) otherwise.
    /// `parallel`: walk each directory on all cores (few big roots) rather than
    /// several directories at once (many small ones).
    fn walk_sources(
        &self,
        roots: &[(PathBuf, String)],
        parallel: bool,
    ) -> Result<Vec<Walk>, UpToDateError> {
        use rayon::prelude::*;
        let dirs: Vec<PathBuf> = roots
            .iter()
            .map(|(b, r)| if r.is_empty() { b.clone() } else { b.join(r) })
            .collect();
        let dir_refs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        let records = self.stats.walk_records(&dir_refs)?;
        let one = |((base, root), dir): (&(PathBuf, String), &PathBuf),
                   record: &Option<Vec<u8>>|
         -> Result<Walk, UpToDateError> {
            let decoded = record.as_deref().and_then(WalkRecord::decode);
            let replayed = decoded
                .as_ref()
                .and_then(|r| walkcache::replay(base, dir, r));
            if let Some(r) = replayed {
                self.replayed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(Walk {
                    entries: r.entries,
                    rows: r.rows,
                    record: decoded,
                    fresh: false,
                });
            }
            let read_ns = statcache::now_ns();
            let walked = walk::walk_traced(base, root, Filters::IgnoreFiles, parallel, true)?;
            let record = walkcache::record(dir, &walked, read_ns);
            Ok(Walk {
                entries: walked.entries,
                rows: None,
                record,
                fresh: true,
            })
        };
        let results: Vec<Walk> = if parallel || roots.len() < 2 {
            roots
                .iter()
                .zip(&dirs)
                .zip(&records)
                .map(|(pair, record)| one(pair, record))
                .collect::<Result<_, _>>()?
        } else {
            roots
                .par_iter()
                .zip(dirs.par_iter())
                .zip(records.par_iter())
                .map(|(pair, record)| one(pair, record))
                .collect::<Result<_, _>>()?
        };
        // A new record is kept at once, rows or not: a run that stops before
        // its end still leaves the next one a walk to replay.
        let fresh: Vec<(&Path, Vec<u8>)> = dir_refs
            .iter()
            .zip(&results)
            .filter(|(_, w)| w.fresh)
            .filter_map(|(dir, w)| Some((*dir, w.record.as_ref()?.encode())))
            .collect();
        self.stats.store_walk_records(&fresh)?;
        Ok(results)
    }

    /// The listing of `walk` (of `dir`): with the rows its record carried, or
    /// those of the store.
    fn listing_of(
        &self,
        index: &mut Index,
        dir: &Path,
        walk: Walk,
    ) -> Result<Listing, UpToDateError> {
        index.stats.roots_walked += 1;
        index.stats.files_listed += walk.entries.len();
        let from_record = walk.rows.is_some();
        let cached = match walk.rows {
            Some(rows) => rows,
            None => self.load_dir(dir, &walk.entries)?,
        };
        Ok(Listing {
            settled: walk.entries.iter().map(|_| OnceLock::new()).collect(),
            entries: walk.entries,
            cached,
            from_record,
            record: walk.record,
            stale: Default::default(),
        })
    }

    /// Stores the walk records of this invocation's listings again, now with
    /// each file's row, where that is worth it (see [`Listing`]); the next
    /// no-op then reads its rows with its walk. Called once the run's checks
    /// are done, so the rows hold the hashes they settled.
    pub fn store_walk_rows(&self) -> Result<(), UpToDateError> {
        let (dirs, blobs): (Vec<PathBuf>, Vec<Vec<u8>>) = {
            let index = lock(&self.index);
            index
                .listings
                .values()
                .filter(|l| l.rows_worth_storing())
                .filter_map(|l| {
                    let record = l.record.as_ref()?;
                    let rows: HashMap<&Path, Cached> = l
                        .entries
                        .iter()
                        .enumerate()
                        .filter_map(|(i, e)| {
                            let row = l.settled[i].get().copied().or(l.cached[i])?;
                            Some((e.abs.as_path(), row))
                        })
                        .collect();
                    let with_rows = record.with_rows(|p| rows.get(p).copied());
                    Some((with_rows.dir(), with_rows.encode()))
                })
                .unzip()
        };
        let records: Vec<(&Path, Vec<u8>)> = dirs.iter().map(PathBuf::as_path).zip(blobs).collect();
        Ok(self.stats.store_walk_records(&records)?)
    }

    /// Content hashes for files outside listings, in order: from this invocation's
    /// memory, from a trusted stat-cache row, or by reading the file.
    fn resolve(
        &self,
        index: &mut Index,
        files: &[Candidate],
    ) -> Result<Vec<ContentHash>, UpToDateError> {
        let mut out: Vec<ContentHash> = Vec::with_capacity(files.len());
        let mut to_hash: Vec<(PathBuf, FileStat)> = Vec::new();
        let mut at: Vec<usize> = Vec::new();
        for (i, c) in files.iter().enumerate() {
            if let Some(h) = index.resolved.get(&c.abs) {
                out.push(*h);
            } else if let Some(row) = c.cached.filter(|row| row.trusted_for(&c.stat)) {
                index.stats.stat_cache_hits += 1;
                index.resolved.insert(c.abs.clone(), row.hash);
                out.push(row.hash);
            } else {
                out.push([0; 32]);
                to_hash.push((c.abs.clone(), c.stat));
                at.push(i);
            }
        }
        let rows = self.hash_and_store(index, &to_hash)?;
        for ((i, (abs, _)), row) in at.into_iter().zip(to_hash).zip(rows) {
            out[i] = row.hash;
            index.resolved.insert(abs, row.hash);
        }
        Ok(out)
    }

    fn recorded_sources(
        &self,
        success_id: i64,
    ) -> Result<Vec<(String, ContentHash)>, UpToDateError> {
        let blob = self.store.success_sources(success_id)?.unwrap_or_default();
        // An undecodable blob only loses the names of changed files, not correctness.
        Ok(fingerprint::decode_files(&blob).unwrap_or_default())
    }

    /// Skip, unless a `generates` file of the last success is gone or differs; with
    /// the outputs that success recorded (path, content hash), sorted.
    /// `prefetched`: that success's outputs and their rows, read already.
    fn outputs_decision(
        &self,
        index: &mut Index,
        spec: &StepSpec,
        success_id: i64,
        prefetched: Option<(Vec<OutputRecord>, Vec<Option<Cached>>)>,
    ) -> Result<(Decision, Vec<(String, ContentHash)>), UpToDateError> {
        let (recorded, rows) = match prefetched {
            Some(p) => p,
            None => {
                let recorded = self.store.success_outputs(success_id)?;
                let abs: Vec<PathBuf> = recorded.iter().map(|o| spec.base.join(&o.path)).collect();
                let rows = self.load_paths(&abs)?;
                (recorded, rows)
            }
        };
        let mut produced: Vec<(String, ContentHash)> =
            recorded.iter().map(|o| (o.path.clone(), o.hash)).collect();
        produced.sort();
        let outputs: Vec<(String, ContentHash, u32, Option<Cached>)> = recorded
            .into_iter()
            .zip(rows)
            .map(|(o, cached)| (o.path, o.hash, o.mode, cached))
            .collect();
        let mut missing: Vec<String> = Vec::new();
        let mut modified: Vec<String> = Vec::new();
        let mut present: Vec<(Candidate, ContentHash, u32)> = Vec::new();
        for (rel, hash, mode, cached) in outputs {
            let abs = spec.base.join(&rel);
            match std::fs::metadata(&abs).ok().filter(|m| m.is_file()) {
                None => missing.push(rel),
                Some(m) => present.push((
                    Candidate {
                        rel,
                        abs,
                        stat: FileStat::from_metadata(&m),
                        cached,
                    },
                    hash,
                    mode,
                )),
            }
        }
        for lit in &spec.generates {
            let rel = walk::normalize(lit);
            // A recorded output found on disk above needs no second look.
            if !lit.starts_with('!')
                && !rel.contains(['*', '?', '[', '{'])
                && !missing.contains(&rel)
                && !present.iter().any(|(c, _, _)| c.rel == rel)
                && !spec.base.join(&rel).exists()
            {
                missing.push(rel);
            }
        }
        if !present.is_empty() {
            let candidates: Vec<Candidate> = present
                .iter()
                .map(|(c, _, _)| Candidate {
                    rel: c.rel.clone(),
                    abs: c.abs.clone(),
                    stat: c.stat,
                    cached: c.cached,
                })
                .collect();
            let now = self.resolve(index, &candidates)?;
            for ((c, recorded, mode), hash) in present.into_iter().zip(now) {
                if hash != recorded || (c.stat.mode & 0o111) != (mode & 0o111) {
                    modified.push(c.rel);
                }
            }
        }
        missing.sort();
        modified.sort();
        let decision = if !missing.is_empty() {
            Decision::Run(RunReason::GeneratesMissing(missing))
        } else if !modified.is_empty() {
            Decision::Run(RunReason::GeneratesModified(modified))
        } else {
            Decision::Skip(SkipReason::UpToDate)
        };
        Ok((decision, produced))
    }
}

/// The stat cache, in the engine's own types.
impl UpToDate {
    fn load_dir(
        &self,
        dir: &Path,
        entries: &[Entry],
    ) -> Result<Vec<Option<Cached>>, UpToDateError> {
        let files: Vec<&Path> = entries.iter().map(|e| e.abs.as_path()).collect();
        Ok(self
            .stats
            .stats_under(dir, &files)?
            .into_iter()
            .map(|r| r.map(Cached::from))
            .collect())
    }

    fn load_paths(&self, paths: &[PathBuf]) -> Result<Vec<Option<Cached>>, UpToDateError> {
        let files: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        Ok(self
            .stats
            .stats_of(&files)?
            .into_iter()
            .map(|r| r.map(Cached::from))
            .collect())
    }

    fn store_stats(&self, rows: &[(PathBuf, Cached)]) -> Result<(), UpToDateError> {
        let rows: Vec<(&Path, crate::state::StatRecord)> = rows
            .iter()
            .map(|(p, c)| (p.as_path(), c.record()))
            .collect();
        Ok(self.stats.store_stats(&rows)?)
    }
}

fn patterns_for(index: &mut Index, sources: &[String]) -> Result<Arc<Patterns>, UpToDateError> {
    if let Some(p) = index.patterns.get(sources) {
        return Ok(p.clone());
    }
    let p = Arc::new(Patterns::parse(sources)?);
    index.patterns.insert(sources.to_vec(), p.clone());
    Ok(p)
}

/// A listing of `dir` or of a directory above it, with the directory it was walked from.
fn find_listing(index: &Index, base: &Path, dir: &str) -> Option<(String, Arc<Listing>)> {
    let mut candidate = dir.to_string();
    let mut key = (base.to_path_buf(), String::new());
    loop {
        key.1 = candidate.clone();
        if let Some(l) = index.listings.get(&key) {
            return Some((candidate, l.clone()));
        }
        if candidate.is_empty() {
            return None;
        }
        candidate = match candidate.rfind('/') {
            Some(i) => candidate[..i].to_string(),
            None => String::new(),
        };
    }
}

#[cfg(test)]
mod tests;
