//! `trun run` (and plain `trun`): load, plan, then hand the plan to a run
//! session ([`crate::session`]), which does everything else.

use super::{CmdResult, Progress, RunArgs};
use crate::diag::Diagnostic;
use crate::report::{ProgressMode, ReportOptions};
use crate::session::{
    terminal_reporter, RunConfig, Session, SessionError, SessionOptions, StepHooksChoice,
};
use std::sync::Arc;

pub(super) fn cmd_run(a: RunArgs) -> CmdResult {
    let (wf, mut plan) = super::load_plan(&a.file, &a.jobs, &a.inputs)?;
    a.secrets.apply(&mut plan)?;
    if a.dry_run {
        return super::plan::print_plan(&plan, &a.force, a.json, &a.file);
    }
    let outcome = run_plan(&wf, plan, &a)?;
    if let Some(e) = outcome.record_error {
        eprintln!("trun: warning: could not record the run in the state store: {e}");
    }
    Ok(outcome.exit_code)
}

/// Runs `plan` of `wf` through a new session with `a`'s settings: what `trun run`
/// does after planning, and what each cycle of `trun watch` does.
pub(super) fn run_plan(
    wf: &crate::workflow::WorkflowFile,
    plan: crate::plan::Plan,
    a: &RunArgs,
) -> Result<crate::session::Outcome, Vec<Diagnostic>> {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return Err(vec![Diagnostic::plain(format!(
                "cannot start the runtime: {e}"
            ))])
        }
    };
    // A plan that needs Docker fails here, before anything runs.
    crate::docker::set_workspace(&wf.root);
    let docker = if plan.needs_docker() {
        match runtime.block_on(crate::docker::Docker::connect()) {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                return Err(vec![Diagnostic::plain(e.to_string())
                    .with_help("this workflow uses containers or docker/* actions; start Docker or set DOCKER_HOST")])
            }
        }
    } else {
        None
    };
    let remote = crate::cache::RemoteCache::from_args(&a.remote)
        .map_err(|e| vec![Diagnostic::plain(e)])?
        .map(Arc::new);
    if let (Some(cache), Some(d)) = (&remote, &docker) {
        // Shared keys name a container image by its id, never its tag.
        let mut ids = Vec::new();
        for image in plan
            .jobs
            .iter()
            .filter_map(|j| j.container.as_ref())
            .map(|c| &c.image)
        {
            if let Ok(Some(id)) = runtime.block_on(d.image_id(image)) {
                ids.push((image.clone(), id));
            }
        }
        cache.set_image_ids(ids);
    }
    // `--secret NAME=VALUE` is on the command line, which is recorded with
    // the run and shown to a trun waiting for the lock: masked there too.
    let masker = plan.secrets.masker();
    let words: Vec<String> = std::env::args()
        .map(|w| crate::state::redact_arg(&masker.mask(&w)))
        .collect();
    let mut session = Session::open_with_db(
        &wf.root,
        &SessionOptions {
            command_line: words.join(" "),
            args: words[1.min(words.len())..].to_vec(),
            no_wait: a.no_wait,
        },
        a.file.db.as_deref(),
    )
    .map_err(plain)?;
    if a.dispatch {
        session.set_dispatch(Some(dispatcher(wf, &plan, a, remote.as_deref())?));
    }
    session.set_remote_cache(remote);
    let config = RunConfig {
        workflow_path: wf.path.display().to_string(),
        jobs: a.parallel.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        fail_fast: a.fail_fast,
        hooks: StepHooksChoice::UpToDate {
            force: a.force.clone(),
        },
        reporters: vec![terminal_reporter(&report_options(a))],
        docker,
        grades: None,
        gate: None,
        queued_run: None,
        shared: None,
        dispatch: None,
    };
    session.run(plan, runtime, config).map_err(plain)
}

/// `--dispatch`: the workspace goes to the cache as a snapshot, and the
/// run's jobs to the job queue in the --db database.
fn dispatcher(
    wf: &crate::workflow::WorkflowFile,
    plan: &crate::plan::Plan,
    a: &RunArgs,
    cache: Option<&crate::cache::RemoteCache>,
) -> Result<Arc<dyn crate::exec::dispatch::Dispatch>, Vec<Diagnostic>> {
    let usage = |m: &str| vec![Diagnostic::plain(m.to_string())];
    let db =
        a.file.db.as_deref().ok_or_else(|| {
            usage("--dispatch needs the database workers share: --db postgres://…")
        })?;
    let cache = cache
        .ok_or_else(|| usage("--dispatch needs a cache the workers reach: --remote-cache URL"))?;
    if a.secrets.given() {
        return Err(usage(
            "--dispatch: secrets are not sent to workers (not through the database, not through the cache); give them to each `trun worker` with --secret or --secret-file",
        ));
    }
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (path, root) = (abs(&wf.path), abs(&wf.root));
    let workflow = path
        .strip_prefix(&root)
        .ok()
        .and_then(|p| p.to_str())
        .ok_or_else(|| usage("--dispatch: the workflow file must lie inside the workspace"))?;
    let d = crate::worker::Dispatcher::for_workspace(
        db,
        plan,
        cache,
        &wf.root,
        workflow,
        a.jobs.clone(),
        a.inputs.clone(),
    )
    .map_err(|e| usage(&format!("--dispatch: {e}")))?;
    Ok(Arc::new(d))
}

/// How `a` asks for its run to be shown: also how `trun --server URL run` shows
/// the server's run.
pub(super) fn report_options(a: &RunArgs) -> ReportOptions {
    let opts = ReportOptions::resolve(
        if a.json {
            ProgressMode::Json
        } else {
            match a.progress {
                Progress::Auto => ProgressMode::Auto,
                Progress::Tty => ProgressMode::Tty,
                Progress::Plain => ProgressMode::Plain,
                Progress::Github => ProgressMode::Github,
            }
        },
        a.quiet,
        a.verbose,
    );
    ReportOptions {
        color: opts.color && !a.file.no_color,
        ..opts
    }
}

fn plain(e: SessionError) -> Vec<Diagnostic> {
    vec![Diagnostic::plain(e.to_string())]
}
