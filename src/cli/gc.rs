//! `trun gc`: remove containers and networks left behind by killed runs.

use super::{workspace_root, CmdResult, GcArgs, EXIT_FAILED, EXIT_OK};
use crate::diag::Diagnostic;
use crate::event::Status;
use crate::state::{SqliteStore, Store};

pub(super) fn cmd_gc(a: GcArgs) -> CmdResult {
    // No need to parse the workflow: a broken file must not keep leftovers.
    let root = workspace_root(&a.file)?;
    crate::docker::set_workspace(&root);
    // Runs recorded in a shared database (`--db`) are the ones whose ids the
    // containers carry.
    let opened: Result<Box<dyn Store>, _> = match &a.file.db {
        // Unreachable, it cannot say which runs are live: stop rather than
        // remove a running run's containers.
        Some(url) => Ok(
            crate::state::open_store(url).map_err(|e| vec![Diagnostic::plain(e.to_string())])?
        ),
        None => SqliteStore::open(&crate::state::db_path(&root)).map(|s| Box::new(s) as _),
    };
    let live: Vec<i64> = match opened {
        // Opening the store marks runs whose process died as interrupted,
        // so what is still `running` here really is running.
        Ok(store) => store
            .runs(10_000)
            .map(|runs| {
                runs.into_iter()
                    .filter(|r| r.status == Status::Running)
                    .map(|r| r.id)
                    .collect()
            })
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| vec![Diagnostic::plain(format!("cannot start the runtime: {e}"))])?;
    let report = runtime
        .block_on(async {
            let d = crate::docker::Docker::connect().await?;
            d.gc(|run| live.contains(&run), a.all).await
        })
        .map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
    outln!(
        "removed {} container{}, {} network{}, {} volume{}{}",
        report.containers.len(),
        if report.containers.len() == 1 {
            ""
        } else {
            "s"
        },
        report.networks.len(),
        if report.networks.len() == 1 { "" } else { "s" },
        report.volumes.len(),
        if report.volumes.len() == 1 { "" } else { "s" },
        if report.kept.is_empty() {
            String::new()
        } else {
            format!("; kept {} (keep: true; use --all)", report.kept.len())
        }
    );
    for e in &report.errors {
        eprintln!("trun: warning: {e}");
    }
    Ok(if report.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}
