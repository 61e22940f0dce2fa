//! What `trun watch` watches, and which file-system events wake it.
//!
//! A [`WatchSet`] is computed from a plan: the directories holding the selected
//! steps' `sources` (recursively for a glob's root, the parent directory for a
//! named file) and the workflow file's directory. An event wakes the watcher only
//! when its path is the workflow file, or matches some step's `sources` and no
//! step's `generates` (a run writing its own outputs must not start the next
//! cycle), and is neither under `.trun` nor ignored by the workspace's
//! `.gitignore`. [`Watcher`] holds the operating system's watches (inotify through
//! the `notify` crate) and sends one `()` per waking event; debouncing and running
//! are the caller's (`cli/watch.rs`).
//!
//! It is not a second up-to-date engine: a wake-up only means "plan again"; what
//! runs is decided by the same checks as `trun run`.

use crate::plan::Plan;
use crate::uptodate::walk::{self, Patterns};
use crate::uptodate::UpToDateError;
use ignore::gitignore::Gitignore;
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The directories to watch and the filter for events under them.
pub struct WatchSet {
    root: PathBuf,
    workflow: PathBuf,
    /// (directory, recursively), sorted, none below a recursive one.
    dirs: Vec<(PathBuf, bool)>,
    sources: Vec<Patterns>,
    generates: Vec<Patterns>,
    gitignore: Gitignore,
}

impl WatchSet {
    /// The watch set of `plan`, whose workflow file is `workflow` (relative to
    /// the current directory, or absolute).
    pub fn of(plan: &Plan, workflow: &Path) -> Result<WatchSet, UpToDateError> {
        let root = plan.root.clone();
        // The workflow file lives in the workspace root, by definition of the root;
        // events name it by its absolute path.
        let workflow = match workflow.file_name() {
            Some(name) => root.join(name),
            None => workflow.to_path_buf(),
        };
        let mut dirs: Vec<(PathBuf, bool)> = Vec::new();
        let mut sources = Vec::new();
        let mut generates = Vec::new();
        for step in plan.jobs.iter().flat_map(|j| &j.steps) {
            if !step.generates.is_empty() {
                generates.push(Patterns::parse(&step.generates)?);
            }
            if step.sources.is_empty() {
                continue;
            }
            let p = Patterns::parse(&step.sources)?;
            for r in &p.roots {
                dirs.push((root.join(r), true));
            }
            for lit in &p.literals {
                let abs = root.join(lit);
                if abs.is_dir() {
                    dirs.push((abs, true));
                } else {
                    let parent = abs.parent().unwrap_or(&root).to_path_buf();
                    dirs.push((parent, false));
                }
            }
            sources.push(p);
        }
        dirs.push((root.clone(), false));
        // A directory that does not exist yet is watched through its nearest
        // existing ancestor (not recursively: the next cycle's set has it).
        let dirs = dirs
            .into_iter()
            .map(|(d, rec)| {
                let mut at = d.clone();
                while !at.is_dir() {
                    match at.parent() {
                        Some(p) if at.starts_with(&root) && at != root => at = p.to_path_buf(),
                        _ => break,
                    }
                }
                let rec = rec && at == d;
                (at, rec)
            })
            .collect();
        let (gitignore, _) = Gitignore::new(root.join(".gitignore"));
        Ok(WatchSet {
            root,
            workflow,
            dirs: minimal(dirs),
            sources,
            generates,
            gitignore,
        })
    }

    /// The directories watched, with whether recursively.
    pub fn dirs(&self) -> &[(PathBuf, bool)] {
        &self.dirs
    }

    /// Whether a change at `path` should start a cycle.
    pub fn wants(&self, path: &Path) -> bool {
        if path == self.workflow {
            return true;
        }
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return false;
        };
        let rel = walk::rel_string(rel);
        if rel.is_empty() || walk::is_under(&rel, ".trun") {
            return false;
        }
        if self
            .gitignore
            .matched_path_or_any_parents(path, path.is_dir())
            .is_ignore()
        {
            return false;
        }
        self.sources.iter().any(|p| p.matches(&rel))
            && !self.generates.iter().any(|p| p.matches(&rel))
    }
}

/// Drops duplicates and every directory already covered by a recursive watch.
fn minimal(mut dirs: Vec<(PathBuf, bool)>) -> Vec<(PathBuf, bool)> {
    dirs.sort();
    dirs.dedup();
    let all = dirs.clone();
    dirs.retain(|(d, rec)| {
        !all.iter()
            .any(|(o, orec)| *orec && ((o != d && d.starts_with(o)) || (o == d && !*rec)))
    });
    dirs
}

/// Whether an event kind can mean new content (an open or a read cannot).
fn changes_content(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

/// The operating system's watches over the directories of one [`WatchSet`];
/// dropping it removes them. The filter can be replaced without touching the
/// watches (a re-plan that changed patterns but not directories).
pub struct Watcher {
    _inner: notify::RecommendedWatcher,
    filter: Arc<Mutex<Arc<WatchSet>>>,
    dirs: Vec<(PathBuf, bool)>,
}

impl Watcher {
    /// Watches `set`, sending `()` on `wake` for every event it wants.
    pub fn start(
        set: Arc<WatchSet>,
        wake: tokio::sync::mpsc::UnboundedSender<()>,
    ) -> Result<Watcher, notify::Error> {
        let filter = Arc::new(Mutex::new(set.clone()));
        let current = filter.clone();
        let mut inner = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else {
                // An overflowed queue may have lost a change: plan again.
                let _ = wake.send(());
                return;
            };
            let set = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if changes_content(&ev.kind) && ev.paths.iter().any(|p| set.wants(p)) {
                let _ = wake.send(());
            }
        })?;
        for (dir, recursive) in set.dirs() {
            let mode = if *recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            inner.watch(dir, mode)?;
        }
        Ok(Watcher {
            _inner: inner,
            filter,
            dirs: set.dirs().to_vec(),
        })
    }

    /// Whether this watcher watches exactly the directories of `set`.
    pub fn covers(&self, set: &WatchSet) -> bool {
        self.dirs == set.dirs()
    }

    /// Filters events by `set` from now on.
    pub fn refilter(&self, set: Arc<WatchSet>) {
        *self.filter.lock().unwrap_or_else(|e| e.into_inner()) = set;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_below_a_recursive_watch_is_not_watched_again() {
        let d = |s: &str, r: bool| (PathBuf::from(s), r);
        assert_eq!(
            minimal(vec![
                d("/w/src", true),
                d("/w/src/a", true),
                d("/w", false),
                d("/w/src", false),
                d("/w/include", false),
            ]),
            vec![d("/w", false), d("/w/include", false), d("/w/src", true)]
        );
    }
}
