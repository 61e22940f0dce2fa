//! `trun logs RUN [JOB[.STEP]]`: which log files a selector means, with a
//! did-you-mean when it names nothing.

use super::render::step_reason;
use super::HistoryError;
use crate::state::{JobDetail, RunDetail, StepDetail, Store};
use std::path::{Path, PathBuf};

/// How a recorded log path names a log a worker uploaded to the remote
/// cache: `cas:HASH/SIZE`.
pub const CACHED_LOG: &str = "cas:";

/// Where a step's log is: a file of this workspace, or a blob a `trun
/// worker` uploaded to the remote cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRef {
    File(PathBuf),
    Cached(String),
}

/// Why a log could not be read.
#[derive(Debug)]
pub enum LogReadError {
    /// The step printed nothing (it left no log file).
    Empty,
    Failed(String),
}

impl LogRef {
    fn of(workspace: &Path, recorded: &str) -> LogRef {
        match recorded.strip_prefix(CACHED_LOG) {
            Some(digest) => LogRef::Cached(digest.to_string()),
            None => LogRef::File(workspace.join(recorded)),
        }
    }

    /// The log's first `limit` bytes; a cached one needs `cache`.
    pub fn read(
        &self,
        cache: Option<&crate::cache::RemoteCache>,
        limit: u64,
    ) -> Result<Vec<u8>, LogReadError> {
        use std::io::Read;
        let mut buf = Vec::new();
        self.open(cache)?
            .take(limit)
            .read_to_end(&mut buf)
            .map_err(|e| LogReadError::Failed(format!("cannot read the log: {e}")))?;
        Ok(buf)
    }

    /// The whole log, copied to `out` as it is read (a log may be larger
    /// than memory should hold); a cached one needs `cache`.
    pub fn copy_to(
        &self,
        cache: Option<&crate::cache::RemoteCache>,
        out: &mut dyn std::io::Write,
    ) -> Result<(), LogReadError> {
        let mut file = self.open(cache)?;
        std::io::copy(&mut file, out)
            .map(drop)
            .map_err(|e| LogReadError::Failed(format!("cannot read the log: {e}")))
    }

    /// The log, open for reading: a file here, or the cached blob fetched
    /// into a temporary file and checked against its digest first.
    fn open(
        &self,
        cache: Option<&crate::cache::RemoteCache>,
    ) -> Result<std::fs::File, LogReadError> {
        match self {
            LogRef::File(path) => std::fs::File::open(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => LogReadError::Empty,
                _ => LogReadError::Failed(format!("cannot read {}: {e}", path.display())),
            }),
            LogRef::Cached(text) => {
                let cache = cache.ok_or_else(|| {
                    LogReadError::Failed(
                        "this step ran on a trun worker, which put its log in the remote cache: give --remote-cache URL (or TRUN_REMOTE_CACHE)".into(),
                    )
                })?;
                let d =
                    crate::worker::snapshot::parse_digest(text).map_err(LogReadError::Failed)?;
                let failed = |e: String| LogReadError::Failed(e);
                let mut tmp = tempfile::tempfile()
                    .map_err(|e| failed(format!("cannot create a temporary file: {e}")))?;
                match cache.client().get_blob(&d, &mut tmp) {
                    Ok(crate::cache::client::Fetched::Ok) => {}
                    Ok(_) => {
                        return Err(failed(format!(
                            "the remote cache has no intact copy of the log {text}"
                        )))
                    }
                    Err(e) => {
                        return Err(failed(format!(
                            "cannot fetch the log from the remote cache: {e}"
                        )))
                    }
                }
                use std::io::Seek;
                tmp.rewind()
                    .map_err(|e| failed(format!("cannot read a temporary file: {e}")))?;
                Ok(tmp)
            }
        }
    }
}

/// `trun logs RUN [JOB[.STEP]]`: the log files of a whole run, of one job (by
/// key, or by job id for every leg of a matrix), or of one step (by id or
/// 1-based position), each with a label like `build.compile`, in plan order.
/// Relative log paths are resolved against `workspace` (the directory that
/// holds `.trun`).
pub fn logs(
    store: &dyn Store,
    workspace: &Path,
    run_id: i64,
    selector: Option<&str>,
) -> Result<Vec<(String, LogRef)>, HistoryError> {
    let detail = store.run(run_id)?.ok_or(HistoryError::NoSuchRun(run_id))?;
    Ok(log_selection(&detail, selector)?
        .into_iter()
        .map(|l| (l.label, LogRef::of(workspace, &l.log_path)))
        .collect())
}

/// One step log a selector names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedLog {
    /// `build.compile`.
    pub label: String,
    pub job_key: String,
    /// The step's 0-based position in its job.
    pub position: usize,
    /// As recorded, relative to the workspace.
    pub log_path: String,
}

/// The step logs `selector` names in a run's record (see [`logs`]): what
/// `trun logs` reads from files here, and `trun --server URL logs` over the API.
pub fn log_selection(
    detail: &RunDetail,
    selector: Option<&str>,
) -> Result<Vec<SelectedLog>, HistoryError> {
    let run_id = detail.run.id;
    let selected = select(detail, selector)?;
    let mut found = Vec::new();
    for (job, steps) in &selected {
        for (position, step) in steps {
            if let Some(log) = &step.log_path {
                let label = format!("{}.{}", job.key, step_name_for_selector(*position, step));
                found.push(SelectedLog {
                    label,
                    job_key: job.key.clone(),
                    position: *position,
                    log_path: log.clone(),
                });
            }
        }
    }
    if found.is_empty() {
        let what = match selected.as_slice() {
            [(job, steps)] if steps.len() == 1 => {
                let (position, step) = steps[0];
                let why = step_reason(step);
                let why = if why.is_empty() {
                    step.status.to_string()
                } else {
                    format!("{}: {why}", step.status)
                };
                format!(
                    "{}.{} ({why})",
                    job.key,
                    step_name_for_selector(position, step)
                )
            }
            _ => selector.map_or("any step".to_string(), |s| format!("`{s}`")),
        };
        return Err(HistoryError::NoLogs { run: run_id, what });
    }
    Ok(found)
}

type Selected<'a> = Vec<(&'a JobDetail, Vec<(usize, &'a StepDetail)>)>;

fn select<'a>(detail: &'a RunDetail, selector: Option<&str>) -> Result<Selected<'a>, HistoryError> {
    let all_steps = |job: &'a JobDetail| job.steps.iter().enumerate().collect::<Vec<_>>();
    let Some(selector) = selector else {
        return Ok(detail.jobs.iter().map(|j| (j, all_steps(j))).collect());
    };
    let jobs = find_jobs(detail, selector);
    if !jobs.is_empty() {
        return Ok(jobs.into_iter().map(|j| (j, all_steps(j))).collect());
    }
    // Job keys of matrix legs may contain dots (`test (1.5)`), so try every
    // split, the last dot first.
    for (dot, _) in selector.rmatch_indices('.') {
        let (job_part, step_part) = (&selector[..dot], &selector[dot + 1..]);
        let jobs = find_jobs(detail, job_part);
        if jobs.is_empty() {
            continue;
        }
        let selected: Selected<'a> = jobs
            .iter()
            .filter_map(|job| find_step(job, step_part).map(|s| (*job, vec![s])))
            .collect();
        if selected.is_empty() {
            let known: Vec<String> = jobs[0]
                .steps
                .iter()
                .enumerate()
                .map(|(p, s)| step_name_for_selector(p, s))
                .collect();
            return Err(HistoryError::NoSuchStep {
                run: detail.run.id,
                job: job_part.to_string(),
                step: step_part.to_string(),
                suggestion: crate::diag::did_you_mean(step_part, known.iter().map(String::as_str)),
                known,
            });
        }
        return Ok(selected);
    }
    let mut known: Vec<String> = detail.jobs.iter().map(|j| j.key.clone()).collect();
    let mut candidates = known.clone();
    for job in &detail.jobs {
        if !candidates.contains(&job.job_id) {
            candidates.push(job.job_id.clone());
        }
        for (p, s) in job.steps.iter().enumerate() {
            candidates.push(format!("{}.{}", job.key, step_name_for_selector(p, s)));
        }
    }
    known.dedup();
    Err(HistoryError::NoSuchJob {
        run: detail.run.id,
        job: selector.to_string(),
        suggestion: crate::diag::did_you_mean(selector, candidates.iter().map(String::as_str)),
        known,
    })
}

/// A job by its key, else every leg of a matrix by the job id.
fn find_jobs<'a>(detail: &'a RunDetail, name: &str) -> Vec<&'a JobDetail> {
    if let Some(job) = detail.jobs.iter().find(|j| j.key == name) {
        return vec![job];
    }
    detail.jobs.iter().filter(|j| j.job_id == name).collect()
}

/// A step by id, else by 1-based position.
fn find_step<'a>(job: &'a JobDetail, name: &str) -> Option<(usize, &'a StepDetail)> {
    let by_id = job.steps.iter().enumerate().find(|(_, s)| s.id == name);
    by_id.or_else(|| {
        let n: usize = name.parse().ok()?;
        let position = n.checked_sub(1)?;
        job.steps.get(position).map(|s| (position, s))
    })
}

/// What a user types to select this step: its id (`step-N` when it has none).
fn step_name_for_selector(position: usize, step: &StepDetail) -> String {
    if step.id.is_empty() {
        format!("step-{}", position + 1)
    } else {
        step.id.clone()
    }
}
