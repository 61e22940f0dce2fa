//! Fan-out over produced files: a step writes files into
//! `$TRUN_EMIT/<job>/…`, and each file becomes one instance of job `<job>`
//! (which says `fed-by: <the emitting job>`), keyed `job[name]`, reading the
//! file as `$TRUN_INPUT_FILE`. This module holds what the rest of trun shares
//! about that: the workflow check of `fed-by`, instance keys, the limits, and
//! taking a step's emitted files into the content-addressed store.
//!
//! It is not the scheduler (see `exec::fanout`, which starts the instances)
//! and not the up-to-date decision (see `uptodate_hooks`, which memoises an
//! instance by its input's content and its job's definition).
//!
//! Emitted names are untrusted: they are never pasted into a script (the
//! instance sees them in environment variables only), the instance reads a
//! copy in `.trun/cas` named by its hash (never a path built from the name),
//! links and special files are refused, and the count, depth and sizes are
//! bounded by the constants below.

use crate::diag::{did_you_mean_suffix, Diagnostic};
use crate::spanned::Sp;
use crate::uptodate::cas::Cas;
use crate::workflow::{Job, WorkflowFile};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Files one step may emit (all jobs together); more is an error.
pub const MAX_FILES_PER_STEP: usize = 1000;
/// Bytes of one emitted file.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Bytes of all the files one step emits.
pub const MAX_STEP_BYTES: u64 = 256 << 20;
/// Directories below `$TRUN_EMIT/<job>/`.
pub const MAX_DEPTH: usize = 8;
/// Bytes of an emitted name (its path below `$TRUN_EMIT/<job>/`).
pub const MAX_NAME_BYTES: usize = 1024;

/// The file an instance of a fed job processes.
#[derive(Debug, Clone, Serialize)]
pub struct Input {
    /// Its path below `$TRUN_EMIT/<job>/`, as the emitting step wrote it.
    pub name: String,
    /// sha256 of its content, hex.
    pub sha256: String,
    pub size: u64,
    /// The copy in the content-addressed store (`$TRUN_INPUT_FILE`).
    pub path: PathBuf,
}

/// One file a step emitted: for which job, under which name, what content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emitted {
    pub job: String,
    pub name: String,
    pub sha256: String,
    /// Bytes (what a remote cache names the content by, with its sha256).
    #[serde(default)]
    pub size: u64,
}

impl Emitted {
    /// Its content's digest, as a remote cache names it.
    pub fn digest(&self) -> Result<crate::cache::action_result::Digest, String> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&self.sha256, &mut hash)
            .map_err(|_| format!("{:?}: {:?} is not a sha256", self.name, self.sha256))?;
        Ok(crate::cache::action_result::Digest {
            hash,
            size: self.size,
        })
    }
}

/// How an instance that succeeded ran: here, or on a `trun worker`, which
/// wrote `files` (a manifest in the remote cache; `None`: nothing).
#[derive(Debug, Clone, Copy)]
pub enum RanOn<'a> {
    Here,
    Worker { files: Option<&'a str> },
}

/// Whether an instance must run, decided before it starts (see
/// `uptodate_hooks::instance_check`).
#[derive(Debug, Clone)]
pub struct InstanceCheck {
    /// Hex fingerprint: the job's definition, its steps' `sources`, the
    /// input's name and content.
    pub fingerprint: String,
    /// Hex hash of the job's definition alone (what makes it tainted).
    pub definition: String,
    /// `Some`: up to date, with the files it emitted when it last ran.
    pub up_to_date: Option<Vec<Emitted>>,
    /// Why it runs (`new input`, `definition changed (tainted)`, …) or `up to date`.
    pub reason: String,
    /// Up to date, having run on a `trun worker`: the manifest (`hash/size`,
    /// in the remote cache) of the files it wrote there, which the jobs
    /// after it get instead.
    pub files: Option<String>,
}

/// `process[result_a.txt]`: the key of the instance of `job` made from the
/// file `name`. Control characters are shown escaped, so a name with a
/// newline stays one line in every listing.
pub fn instance_key(job: &str, name: &str) -> String {
    let mut shown = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    format!("{job}[{shown}]")
}

/// `fed-by` names jobs of this file, not the job itself, and a fed job has
/// no matrix of its own (its instances are its legs).
pub fn check_fed_by(
    wf: &WorkflowFile,
    id: &Sp<String>,
    job: &Sp<Box<Job>>,
    ids: &[&str],
    errs: &mut Vec<Diagnostic>,
) {
    let Some(fed_by) = &job.value.fed_by else {
        return;
    };
    for n in fed_by.located() {
        if n.value == id.value {
            errs.push(
                wf.error(n.loc, format!("job `{}` is fed by itself", id.value))
                    .with_help("an instance emitting files for its own job could fan out forever; emit them for another job"),
            );
        } else if !ids.contains(&n.value.as_str()) {
            let d = wf.error(n.loc, format!("`fed-by` names unknown job `{}`", n.value));
            errs.push(
                match crate::diag::did_you_mean(&n.value, ids.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!("jobs in this file: {}", ids.join(", "))),
                },
            );
        }
    }
    if let Some(m) = job.value.strategy.as_ref().and_then(|s| s.matrix.as_ref()) {
        errs.push(
            wf.error(m.loc, format!("job `{}` is `fed-by` emitted files and cannot also have a matrix", id.value))
                .with_help("each emitted file makes one instance of the job; emit one file per combination instead"),
        );
    }
}

/// Takes every file under the emit directory `dir` into the store, checking
/// the limits: `$TRUN_EMIT/<job>/<name…>`. Nothing is followed: a link or a
/// special file anywhere below `dir` is an error naming it. The files are
/// left in place (the directory is removed with the run's tmp dir).
pub fn collect(dir: &Path, cas: &Cas) -> Result<Vec<Emitted>, String> {
    let mut found: Vec<(String, String, PathBuf, u64)> = Vec::new();
    let mut total: u64 = 0;
    let mut budget = MAX_ENTRIES;
    let entries = read_sorted(dir, &mut budget)?;
    for (job, path, ft) in entries {
        if ft.is_symlink() {
            return Err(format!("$TRUN_EMIT/{} is a symbolic link; emit regular files into a directory named after the job", show(&job)));
        }
        if !ft.is_dir() {
            return Err(format!(
                "$TRUN_EMIT/{} is not in a job's directory; write it as $TRUN_EMIT/<job>/{}",
                show(&job),
                show(&job)
            ));
        }
        walk(&path, &job, "", 0, &mut budget, &mut found, &mut total)?;
    }
    let mut out = Vec::with_capacity(found.len());
    for (job, name, path, _) in found {
        let hash = cas
            .store(&path, None)
            .map_err(|e| format!("emitted file {job}/{}: {e}", show(&name)))?;
        // Re-checked on the copy: a file that grew after it was measured
        // (by a process the step left behind) is still refused.
        let size = std::fs::metadata(cas.object_path(&hash))
            .map(|m| m.len())
            .unwrap_or(0);
        if size > MAX_FILE_BYTES {
            return Err(too_big(&job, &name, size));
        }
        out.push(Emitted {
            job,
            name,
            sha256: hex::encode(hash),
            size,
        });
    }
    Ok(out)
}

fn too_big(job: &str, name: &str, size: u64) -> String {
    format!(
        "emitted file {job}/{} has {size} bytes; the limit is {MAX_FILE_BYTES} bytes per file",
        show(name)
    )
}

/// A name as messages show it: quoted with control characters escaped.
fn show(name: &str) -> String {
    format!("{name:?}")
}

type Listing = Vec<(String, PathBuf, std::fs::FileType)>;

/// Directory entries read in all (files and directories, empty ones too), so
/// that a tree of empty directories cannot keep trun listing forever.
const MAX_ENTRIES: usize = 4 * MAX_FILES_PER_STEP;

fn read_sorted(dir: &Path, budget: &mut usize) -> Result<Listing, String> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in rd {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(format!(
                "an emitted name is not valid UTF-8: {:?}",
                entry.file_name()
            ));
        };
        // DirEntry::file_type does not follow links.
        let ft = entry
            .file_type()
            .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
        out.push((name.to_string(), entry.path(), ft));
        if *budget == 0 {
            return Err(format!(
                "the step emitted more than {MAX_ENTRIES} files and directories; the limit is {MAX_FILES_PER_STEP} files per step"
            ));
        }
        *budget -= 1;
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn walk(
    dir: &Path,
    job: &str,
    prefix: &str,
    depth: usize,
    budget: &mut usize,
    found: &mut Vec<(String, String, PathBuf, u64)>,
    total: &mut u64,
) -> Result<(), String> {
    for (name, path, ft) in read_sorted(dir, budget)? {
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if rel.len() > MAX_NAME_BYTES {
            return Err(format!(
                "an emitted name for job `{job}` is {} bytes long; the limit is {MAX_NAME_BYTES}",
                rel.len()
            ));
        }
        if ft.is_symlink() {
            return Err(format!(
                "emitted file {job}/{} is a symbolic link; emit regular files only",
                show(&rel)
            ));
        }
        if ft.is_dir() {
            if depth + 1 > MAX_DEPTH {
                return Err(format!(
                    "emitted directory {job}/{} is nested more than {MAX_DEPTH} levels deep",
                    show(&rel)
                ));
            }
            walk(&path, job, &rel, depth + 1, budget, found, total)?;
            continue;
        }
        if !ft.is_file() {
            return Err(format!(
                "emitted file {job}/{} is not a regular file",
                show(&rel)
            ));
        }
        if found.len() >= MAX_FILES_PER_STEP {
            return Err(format!(
                "the step emitted more than {MAX_FILES_PER_STEP} files; the limit is {MAX_FILES_PER_STEP} per step"
            ));
        }
        let size = std::fs::symlink_metadata(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(too_big(job, &rel, size));
        }
        *total += size;
        if *total > MAX_STEP_BYTES {
            return Err(format!(
                "the step emitted more than {MAX_STEP_BYTES} bytes; the limit is {MAX_STEP_BYTES} bytes per step"
            ));
        }
        found.push((job.to_string(), rel, path, size));
    }
    Ok(())
}

/// Where emitted files may go: `Ok` with the files for jobs in the plan and
/// a note for each job that exists but is not selected (its files are not
/// processed in this run); `Err` naming the first file for a job that does
/// not exist or is not fed by `from_job`.
pub fn check_routes(
    fed_by: &std::collections::BTreeMap<String, Vec<String>>,
    in_plan: &dyn Fn(&str) -> bool,
    from_job: &str,
    from_step: &str,
    emitted: Vec<Emitted>,
) -> Result<(Vec<Emitted>, Vec<String>), String> {
    let mut keep = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for e in emitted {
        let what = format!(
            "step `{from_job}.{from_step}` emitted {} for job `{}`",
            show(&e.name),
            e.job
        );
        match fed_by.get(&e.job) {
            None => {
                return Err(format!(
                    "{what}, which does not exist{}",
                    did_you_mean_suffix(&e.job, fed_by.keys().map(String::as_str))
                ))
            }
            Some(f) if f.is_empty() => {
                return Err(format!(
                    "{what}, which does not take emitted files (give it `fed-by: {from_job}`)"
                ))
            }
            Some(f) if !f.iter().any(|j| j == from_job) => {
                return Err(format!(
                    "{what}, which is fed by {} only (add `{from_job}` to its `fed-by`)",
                    f.join(", ")
                ))
            }
            Some(_) if !in_plan(&e.job) => {
                let note = format!(
                    "trun: job `{}` is not part of this run: its emitted files are not processed",
                    e.job
                );
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
            Some(_) => keep.push(e),
        }
    }
    Ok((keep, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_the_job_and_the_emitting_step() {
        let fed_by: std::collections::BTreeMap<String, Vec<String>> = [
            ("start", vec![]),
            ("process", vec!["start".to_string()]),
            ("report", vec!["process".to_string()]),
            ("later", vec!["start".to_string()]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let file = |job: &str| Emitted {
            job: job.into(),
            name: "a\nb".into(),
            sha256: String::new(),
            size: 0,
        };
        let in_plan = |j: &str| j != "later";
        let route = |job: &str| check_routes(&fed_by, &in_plan, "start", "go", vec![file(job)]);
        assert_eq!(
            route("proces").unwrap_err(),
            "step `start.go` emitted \"a\\nb\" for job `proces`, which does not exist (did you mean `process`?)"
        );
        assert_eq!(
            route("start").unwrap_err(),
            "step `start.go` emitted \"a\\nb\" for job `start`, which does not take emitted files (give it `fed-by: start`)"
        );
        assert_eq!(
            route("report").unwrap_err(),
            "step `start.go` emitted \"a\\nb\" for job `report`, which is fed by process only (add `start` to its `fed-by`)"
        );
        let (keep, notes) = route("later").unwrap();
        assert!(keep.is_empty());
        assert_eq!(
            notes,
            ["trun: job `later` is not part of this run: its emitted files are not processed"]
        );
        let (keep, notes) = route("process").unwrap();
        assert_eq!(keep, [file("process")]);
        assert!(notes.is_empty());
    }

    #[test]
    fn keys_escape_control_characters() {
        assert_eq!(instance_key("p", "a.txt"), "p[a.txt]");
        assert_eq!(instance_key("p", "a\nb"), "p[a\\nb]");
        assert_eq!(instance_key("p", "$(x) 'q\""), "p[$(x) 'q\"]");
    }
}
