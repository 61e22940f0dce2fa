//! `trun history`, `trun show RUN` and `trun logs RUN [JOB[.STEP]]`: looking
//! back at recorded runs. Rendering lives in [`crate::history`].

use super::{open_store, out, use_color, CmdResult, HistoryArgs, LogsArgs, ShowArgs, EXIT_OK};
use crate::diag::Diagnostic;
use crate::history::LogReadError;
use crate::state::Store;
use std::io::Write;

fn no_runs() -> Vec<Diagnostic> {
    vec![Diagnostic::plain("no runs recorded yet in this workspace").with_help("run `trun` first")]
}

pub(super) fn cmd_history(a: HistoryArgs) -> CmdResult {
    let runs = match open_store(&a.file)? {
        Some((store, _)) => store
            .runs(a.limit)
            .map_err(|e| vec![Diagnostic::plain(e.to_string())])?,
        None => Vec::new(),
    };
    if runs.is_empty() && !a.json {
        outln!("no runs recorded yet");
        return Ok(EXIT_OK);
    }
    if a.json {
        outln!(
            "{}",
            crate::history::history_json(&runs)
                .map_err(|e| vec![Diagnostic::plain(e.to_string())])?
        );
    } else {
        out(&crate::history::render_history(
            &runs,
            use_color(a.file.no_color),
        ));
    }
    Ok(EXIT_OK)
}

/// Which `trun worker` ran each job of run `id` that went to the job queue
/// of the database at `db` (its newest attempt), by job key. Empty for a
/// database without workers; a queue that cannot be read is said, not hidden.
fn where_jobs_ran(db: &str, id: i64) -> std::collections::BTreeMap<String, (String, i32)> {
    if !crate::state::is_postgres_url(db) {
        return Default::default();
    }
    let attempts = crate::state::JobQueue::open(db).and_then(|q| q.run_attempts(id));
    match attempts {
        // Ordered by job then attempt: the newest attempt of a job wins.
        Ok(rows) => rows
            .into_iter()
            .filter_map(|r| Some((r.job_key, (r.worker?, r.attempt))))
            .collect(),
        Err(e) => {
            eprintln!("trun: warning: cannot read where the jobs ran (the job queue): {e}");
            Default::default()
        }
    }
}

fn resolve_run(store: &dyn Store, run: Option<&str>) -> Result<i64, Vec<Diagnostic>> {
    match run {
        None | Some("last") | Some("latest") => store
            .latest_run_id()
            .map_err(|e| vec![Diagnostic::plain(e.to_string())])?
            .ok_or_else(|| vec![Diagnostic::plain("no runs recorded yet")]),
        Some(s) => s.parse::<i64>().map_err(|_| {
            vec![Diagnostic::plain(format!(
                "`{s}` is not a run id (a number, or `last`)"
            ))]
        }),
    }
}

pub(super) fn cmd_show(a: ShowArgs) -> CmdResult {
    let (store, _) = open_store(&a.file)?.ok_or_else(no_runs)?;
    let id = resolve_run(&*store, a.run.as_deref())?;
    let detail = store
        .run(id)
        .map_err(|e| vec![Diagnostic::plain(e.to_string())])?
        .ok_or_else(|| {
            vec![Diagnostic::plain(format!("no run {id}"))
                .with_help("`trun history` lists the runs")]
        })?;
    // Uploaded artifacts (`actions/upload-artifact`), with their sizes.
    let artifacts = store
        .artifacts(id)
        .map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
    let workers = a
        .file
        .db
        .as_deref()
        .map(|db| where_jobs_ran(db, id))
        .unwrap_or_default();
    if a.json {
        let text = crate::history::run_json(&detail)
            .map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
        if artifacts.is_empty() && workers.is_empty() {
            outln!("{text}");
        } else {
            let mut v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
            if !artifacts.is_empty() {
                v["artifacts"] = serde_json::to_value(&artifacts).unwrap_or_default();
            }
            for job in v["jobs"].as_array_mut().into_iter().flatten() {
                let at = job["key"].as_str().and_then(|k| workers.get(k));
                if let Some((worker, attempt)) = at {
                    job["worker"] = serde_json::json!(worker);
                    job["attempt"] = serde_json::json!(attempt);
                }
            }
            outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    } else {
        let mut opts = crate::history::RenderOptions::new(use_color(a.file.no_color));
        opts.workers = workers
            .into_iter()
            .map(|(job, (worker, attempt))| {
                let shown = match attempt {
                    1 => format!("worker {worker}"),
                    n => format!("worker {worker}, attempt {n}"),
                };
                (job, shown)
            })
            .collect();
        out(&crate::history::render_run_with(&detail, &opts));
        if !artifacts.is_empty() {
            outln!("\nartifacts:");
            for art in &artifacts {
                outln!(
                    "  {}  {} file{}, {}  (job {})",
                    art.name,
                    art.files,
                    if art.files == 1 { "" } else { "s" },
                    crate::size::format(art.bytes.max(0) as u64),
                    art.job
                );
            }
        }
        out(&crate::report::summary::stored_notes(&detail));
    }
    Ok(EXIT_OK)
}

pub(super) fn cmd_logs(a: LogsArgs) -> CmdResult {
    let (store, root) = open_store(&a.file)?.ok_or_else(no_runs)?;
    let id = resolve_run(&*store, Some(&a.run))?;
    let files = crate::history::logs(&*store, &root, id, a.selector.as_deref())
        .map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
    let cache =
        crate::cache::RemoteCache::from_args(&a.remote).map_err(|e| vec![Diagnostic::plain(e)])?;
    let many = files.len() > 1;
    let mut out = std::io::stdout().lock();
    for (label, log) in files {
        if many {
            crate::report::ignore_io(writeln!(out, "==> {label} <=="));
        }
        match log.copy_to(cache.as_ref(), &mut out) {
            Ok(()) => {}
            // A step that printed nothing leaves no log file.
            Err(LogReadError::Empty) => {
                if many {
                    crate::report::ignore_io(writeln!(out, "(no output)"));
                } else {
                    eprintln!("trun: {label} printed nothing");
                }
            }
            Err(LogReadError::Failed(e)) => {
                crate::report::ignore_io(writeln!(out, "({e})"));
            }
        }
    }
    Ok(EXIT_OK)
}
