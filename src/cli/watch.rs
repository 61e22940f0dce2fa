//! `trun watch [JOB…]`: run what is out of date, then again after every change
//! to the selected steps' `sources` or to the workflow file, until Ctrl-C.
//!
//! Each cycle loads the workflow and plans afresh (so an edit to trun.yaml
//! re-plans) and runs the plan through the same session as `trun run`
//! ([`super::run::run_plan`]); what runs is decided by the up-to-date checks,
//! never by which file changed. Changes are debounced (a quiet
//! [`DEBOUNCE`] after the last one); changes that arrive while a cycle runs
//! queue exactly one more. A cycle runs on its own thread while this one
//! waits for changes and signals. A step marked `restart: true` (a server
//! that never ends) is stopped by a change: the cycle's run is cancelled as
//! Ctrl-C would (process groups TERM, then KILL after a grace; the run ends
//! once they are gone) and the next cycle starts it again. Ctrl-C during a
//! cycle cancels it like `trun run` does and exits 130; while waiting it exits
//! 130 at once. The watching itself is [`crate::watch`].

use super::{CmdResult, RunArgs};
use crate::diag::Diagnostic;
use crate::session::EXIT_INTERRUPTED;
use crate::watch::{WatchSet, Watcher};
use clap::Args;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long the tree must be quiet after a change before a cycle starts.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A burst of changes that never goes quiet still starts a cycle after this.
const DEBOUNCE_LIMIT: Duration = Duration::from_secs(2);

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub run: RunArgs,
}

/// What the loop waits on between cycles.
struct Waiting {
    runtime: tokio::runtime::Runtime,
    wake: UnboundedReceiver<()>,
    int: Signal,
    term: Signal,
    /// A SIGTERM trun sent itself to stop a run for a restart, not yet seen
    /// here: it must not be taken for a request to exit.
    own_term: bool,
}

impl Waiting {
    /// Drops the wake-ups already delivered; whether there were any.
    fn drain(&mut self) -> bool {
        let mut any = false;
        while self.wake.try_recv().is_ok() {
            any = true;
        }
        any
    }

    /// Waits for a change and then for quiet. `false`: interrupted.
    fn next_change(&mut self, already: bool) -> bool {
        let Waiting {
            runtime,
            wake,
            int,
            term,
            own_term,
        } = self;
        runtime.block_on(async {
            if !already {
                loop {
                    tokio::select! {
                        _ = wake.recv() => break,
                        _ = int.recv() => return false,
                        _ = term.recv() => if !std::mem::take(own_term) { return false },
                    }
                }
            }
            let until = tokio::time::Instant::now() + DEBOUNCE_LIMIT;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(DEBOUNCE) => return true,
                    _ = tokio::time::sleep_until(until) => return true,
                    _ = wake.recv() => {}
                    _ = int.recv() => return false,
                    _ = term.recv() => if !std::mem::take(own_term) { return false },
                }
            }
        })
    }
}

pub(super) fn cmd_watch(a: WatchArgs) -> CmdResult {
    let a = a.run;
    if a.dry_run {
        return Err(vec![Diagnostic::plain(
            "trun watch runs what is out of date; for the plan use `trun plan`",
        )]);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| vec![Diagnostic::plain(format!("cannot start the runtime: {e}"))])?;
    // Installed before the first cycle: once a run has taken over SIGINT, only
    // a listener can end trun while it waits.
    let (int, term) = runtime
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })
        .map_err(|e| vec![Diagnostic::plain(format!("cannot handle signals: {e}"))])?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waiting = Waiting {
        runtime,
        wake: rx,
        int,
        term,
        own_term: false,
    };
    let mut watched: Option<Watcher> = None;
    let mut queued = true;
    let mut cycle: u64 = 0;
    loop {
        cycle += 1;
        if cycle > 1 && !waiting.next_change(queued) {
            return Ok(EXIT_INTERRUPTED);
        }
        // Changes up to here are seen by this cycle's plan.
        waiting.drain();
        queued = false;
        let started = Instant::now();
        let planned = super::load_plan(&a.file, &a.jobs, &a.inputs).and_then(|(wf, mut plan)| {
            a.secrets.apply(&mut plan)?;
            Ok((wf, plan))
        });
        let (wf, plan) = match planned {
            Ok(p) => p,
            // Nothing watched yet: a usage or workflow error, as with `trun run`.
            Err(errs) if watched.is_none() => return Err(errs),
            Err(errs) => {
                render(&errs);
                status(cycle, "the workflow has errors; waiting for a change to it");
                // Keep the previous watches: they include the workflow file.
                queued = false;
                continue;
            }
        };
        let set =
            WatchSet::of(&plan, &wf.path).map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
        let set = Arc::new(set);
        match &watched {
            Some(w) if w.covers(&set) => w.refilter(set),
            _ => {
                let watcher = Watcher::start(set, tx.clone()).map_err(|e| {
                    vec![Diagnostic::plain(format!("cannot watch the sources: {e}"))]
                })?;
                watched = Some(watcher);
            }
        }
        // Steps marked `restart: true` (servers) run every cycle: the last
        // cycle's instance was stopped, so up to date is not a reason to skip.
        let servers = restart_steps(&wf, &plan);
        let mut args = a.clone();
        args.force.extend(servers.iter().cloned());
        let (done_tx, mut done) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(super::run::run_plan(&wf, plan, &args));
        });
        let mut interrupted = false;
        let mut restarting = false;
        let finished = {
            let Waiting {
                runtime,
                wake,
                int,
                term,
                own_term,
            } = &mut waiting;
            runtime.block_on(async {
                loop {
                    tokio::select! {
                        r = &mut done => return r,
                        Some(()) = wake.recv() => {
                            queued = true;
                            if !servers.is_empty() && !restarting {
                                restarting = true;
                                *own_term = true;
                                // The session's one cancellation input is its
                                // signal handling: stopping the run for a
                                // restart is what Ctrl-C does (every step's
                                // process group gets TERM, then KILL after a
                                // grace), and the run ends only once they are
                                // gone, so the port is free for the next one.
                                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM);
                            }
                        }
                        _ = int.recv() => interrupted = true,
                        _ = term.recv() => {
                            if !std::mem::take(own_term) {
                                interrupted = true;
                            }
                        }
                    }
                }
            })
        };
        if interrupted {
            return Ok(EXIT_INTERRUPTED);
        }
        reap_zombies();
        let outcome = match finished {
            Ok(Ok(o)) => o,
            Ok(Err(errs)) => {
                render(&errs);
                status(cycle, "could not run; waiting for changes");
                queued = waiting.drain() || queued;
                continue;
            }
            Err(_) => return Err(vec![Diagnostic::plain("the run thread panicked")]),
        };
        if restarting {
            waiting.drain();
            status(
                cycle,
                &format!(
                    "run {} stopped to restart {}; running again",
                    outcome.run_id,
                    servers.join(", ")
                ),
            );
            queued = true;
            continue;
        }
        if outcome.exit_code == EXIT_INTERRUPTED {
            return Ok(EXIT_INTERRUPTED);
        }
        let verdict = if outcome.exit_code == 0 {
            "succeeded"
        } else {
            "failed"
        };
        queued = waiting.drain() || queued;
        let next = if queued {
            "files changed during the run; running again"
        } else {
            "waiting for changes (Ctrl-C to stop)"
        };
        status(
            cycle,
            &format!(
                "run {} {verdict} in {:.2}s; {next}",
                outcome.run_id,
                started.elapsed().as_secs_f64()
            ),
        );
    }
}

/// Collects the exit status of every child that has ended. The engine stops
/// a cancelled step's whole group, but a process the step orphaned (re-parented
/// to trun, the subreaper) may be left a zombie, which a one-shot `trun run`
/// never notices and a `trun watch` restarting a server would pile up. Only
/// between cycles: then no step runs, so no child here is anyone else's.
fn reap_zombies() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// The steps of `plan` marked `restart: true`, as `--force` names them.
fn restart_steps(wf: &crate::workflow::WorkflowFile, plan: &crate::plan::Plan) -> Vec<String> {
    let mut names = Vec::new();
    for job in &plan.jobs {
        let Some(def) = wf.workflow.jobs.value.get(&job.job_id) else {
            continue;
        };
        for step in &job.steps {
            let restart = def
                .value
                .steps
                .value
                .get(step.index)
                .and_then(|s| s.value.restart.as_ref())
                .is_some_and(|r| r.value);
            if restart {
                names.push(format!("{}.{}", job.key, step.id));
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The one status line of a cycle, on stderr with the run's own output.
fn status(cycle: u64, text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "trun watch: cycle {cycle}: {text}");
}

fn render(errs: &[Diagnostic]) {
    let color = super::use_color(false);
    let mut err = std::io::stderr().lock();
    for d in errs {
        let _ = write!(err, "{}", d.render(color));
    }
}
