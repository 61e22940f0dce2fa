//! The engine: runs a [`Plan`]'s jobs as soon as their needs are done, up to
//! `-j N` at once, and emits [`Event`]s. It never prints and never touches the
//! state store; reporters and the recorder consume its events.
//!
//! Cancellation has one entry point, the `cancel` watch channel (Ctrl-C,
//! SIGTERM): every running step's process group is killed, jobs not started
//! are recorded as cancelled, and the run ends `cancelled`.
//!
//! Run control has one entry point too, the [`gate::Gate`] in [`RunOptions`]:
//! a step waits at it before it starts, so a paused run lets its running steps
//! finish and starts nothing new.

pub mod actions;
pub mod commands;
pub mod composite;
pub mod concurrency;
pub mod dispatch;
pub mod executor;
pub mod fanout;
pub mod gate;
pub mod grade_step;
pub mod job;
pub mod matrix;
pub mod output;
pub mod outputs;
pub mod process;
pub mod sandbox;
pub mod shared;

use crate::event::{now_ms, Event, Status};
use crate::plan::Plan;
use crate::state::Claim;
use crate::template::{Context, Engine as Templates, StatusFlags};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// Resolves once the run (or job) is cancelled; never when the sender is
/// gone without cancelling.
pub async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    loop {
        if *cancel.borrow() {
            return;
        }
        if cancel.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Where the engine sends events. Cloneable; sending never blocks.
///
/// Every event leaves the engine here, so this is where secrets are masked:
/// whatever text an event carries (a step's name, a failure's reason that
/// quotes a command, outputs) reaches no reporter, `--json` line or store
/// with a registered value in it.
#[derive(Clone)]
pub struct Events {
    tx: std::sync::mpsc::Sender<Event>,
    masker: crate::secrets::Masker,
}

impl Events {
    /// Events that mask nothing (no secrets in the run).
    pub fn new(tx: std::sync::mpsc::Sender<Event>) -> Events {
        Events::masked(tx, crate::secrets::Masker::default())
    }

    /// Events that mask every value `masker` holds, now or later.
    pub fn masked(tx: std::sync::mpsc::Sender<Event>, masker: crate::secrets::Masker) -> Events {
        Events { tx, masker }
    }

    /// The run's masker (step output sinks mask with it and add to it).
    pub fn masker(&self) -> &crate::secrets::Masker {
        &self.masker
    }

    pub fn send(&self, mut ev: Event) {
        ev.mask(&self.masker);
        let _ = self.tx.send(ev);
    }

    /// Sends an event whose text the caller has masked already.
    pub(crate) fn send_masked(&self, ev: Event) {
        let _ = self.tx.send(ev);
    }
}

#[derive(Clone)]
pub struct RunOptions {
    pub run_id: i64,
    /// Jobs at once.
    pub jobs: usize,
    /// Stop everything at the first failed job.
    pub fail_fast: bool,
    /// `.trun/logs/<run>`.
    pub log_dir: PathBuf,
    /// `.trun/tmp/<run>`: output files of steps.
    pub tmp_dir: PathBuf,
    /// Hooks consulted before each step (up-to-date checks) and after it.
    pub hooks: Option<Arc<dyn job::StepHooks>>,
    /// The Docker connection, when the plan needs one (checked before the run starts).
    pub docker: Option<Arc<crate::docker::Docker>>,
    /// Memory of the built-in actions between runs.
    pub memory: Arc<dyn crate::docker::actions::Memory>,
    /// The run's store, for what actions record with the run (uploaded artifacts).
    pub store: Option<Arc<dyn crate::state::Store>>,
    /// Where the closing step of a graded repository hands its result (`trun grade`).
    pub grades: Option<Arc<dyn grade_step::GradeSink>>,
    /// `.trun/procs`: running step processes are recorded here so that the
    /// next trun can stop them if this one is killed
    /// ([`executor::reap_orphans`]); `None` records nothing.
    pub proc_records: Option<PathBuf>,
    /// Run control (`trun serve`'s pause, advance, `max_steps`): every step
    /// passes it before it starts; `None` lets every step through.
    pub gate: Option<Arc<gate::Gate>>,
    /// Jobs that succeeded in an earlier attempt of this run (a retry), with
    /// their outputs: they count as done and do not run again.
    pub kept: BTreeMap<String, BTreeMap<String, String>>,
    /// The slots of concurrency groups (the state store's); `None` ignores
    /// `concurrency`.
    pub slots: Option<Arc<dyn concurrency::Slots>>,
    /// What this run shares with the other runs of the process (`trun
    /// serve`): their `-j` and each job running in one run at a time.
    pub shared: Option<Arc<shared::SharedLimits>>,
    /// Where plain jobs run when not here (`trun run --dispatch`: on `trun
    /// worker`s); `None` runs every job in this process.
    pub dispatch: Option<Arc<dyn dispatch::Dispatch>>,
    /// Where files emitted for fed jobs not run here go (`trun worker`: to
    /// the coordinator, whose feeds start their instances). `None`: such a
    /// file is noted and dropped, as for a job not selected.
    pub emits: Option<Arc<fanout::Outbox>>,
}

/// How the run ended.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub status: Status,
    pub jobs: BTreeMap<String, Status>,
}

struct JobDone {
    /// The job's place in the plan.
    index: usize,
    key: String,
    status: Status,
    outputs: BTreeMap<String, String>,
    /// A failure that `continue-on-error` on the job forgives.
    forgiven: bool,
}

/// Runs a job (a plain job, a computed matrix, or a fed job's instances) on
/// the runtime and tells the scheduler how it ended.
fn report_when_done(
    done: mpsc::UnboundedSender<JobDone>,
    index: usize,
    key: String,
    run: impl std::future::Future<Output = job::JobResult> + Send + 'static,
) {
    tokio::spawn(async move {
        let r = run.await;
        let _ = done.send(JobDone {
            index,
            key,
            status: r.status,
            outputs: r.outputs,
            forgiven: r.forgiven,
        });
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Pending,
    Running,
    Done(Status),
}

/// Run the plan to the end (or until cancelled).
pub async fn run(
    plan: Arc<Plan>,
    opts: RunOptions,
    events: Events,
    mut cancel: watch::Receiver<bool>,
) -> RunResult {
    let started = Instant::now();
    let templates = Arc::new(Templates::new(plan.root.clone()));
    // `$GITHUB_EVENT_PATH`: the payload, written fresh (never through a link) into the
    // run's private tmp dir.
    if let Some(gh) = plan.github.as_ref().filter(|g| !g.env.is_empty()) {
        let file = opts.tmp_dir.join(crate::github::EVENT_FILE);
        let text = serde_json::to_vec(&*gh.event).unwrap_or_default();
        if let Err(e) = outputs::write_fresh(&file, &text) {
            eprintln!("trun: warning: cannot write {}: {e}", file.display());
        }
    }
    events.send(Event::RunStarted {
        run_id: opts.run_id,
        workflow: plan.workflow.clone(),
        at: now_ms(),
        jobs: plan.job_infos(),
    });

    let n = plan.jobs.len();
    let index: BTreeMap<&str, usize> = plan
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.key.as_str(), i))
        .collect();
    let needs: Vec<Vec<usize>> = plan
        .jobs
        .iter()
        .map(|j| {
            j.needs
                .iter()
                .filter_map(|k| index.get(k.as_str()).copied())
                .collect()
        })
        .collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ns) in needs.iter().enumerate() {
        for &d in ns {
            dependents[d].push(i);
        }
    }
    let mut legs_by_id: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, j) in plan.jobs.iter().enumerate() {
        legs_by_id.entry(j.job_id.as_str()).or_default().push(i);
    }
    let mut unfinished_needs: Vec<usize> = needs.iter().map(Vec::len).collect();
    // Jobs whose needs are all final, in plan order.
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| unfinished_needs[i] == 0).collect();
    let mut state = vec![St::Pending; n];
    let mut forgiven = vec![false; n];
    let mut outputs: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); n];
    let mut job_cancel: BTreeMap<usize, Arc<watch::Sender<bool>>> = BTreeMap::new();
    let mut running_per_job: BTreeMap<String, u32> = BTreeMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<JobDone>();
    let mut running = 0usize;
    let mut cancelled = *cancel.borrow();
    let mut failed = false;
    let mut stop_new = cancelled;
    let limit = opts.jobs.max(1);
    // `-j`: one limit for every job instance that runs steps, the legs of a
    // matrix computed at run time included. A running job holds a permit;
    // the job that fans out into legs holds none, each of its legs does.
    let slots = match &opts.shared {
        Some(s) => s.permits(),
        None => Arc::new(Semaphore::new(limit)),
    };
    let mut spare: Option<OwnedSemaphorePermit> = None;
    // Files steps emit for jobs that are `fed-by` them.
    let feeds = Arc::new(fanout::Feeds::new(&plan, opts.emits.clone()));
    let step_feeds = feeds.active().then(|| feeds.clone());
    // Concurrency groups: jobs waiting for a slot (with their group), the
    // ones whose wait was announced, and the slots jobs of this run hold.
    let mut waiting: BTreeMap<usize, String> = BTreeMap::new();
    let mut announced: BTreeSet<usize> = BTreeSet::new();
    let mut held: BTreeSet<usize> = BTreeSet::new();
    let uses_slots = opts.slots.is_some() && plan.jobs.iter().any(|j| j.concurrency.is_some());

    // A job that reached a final state without running: its dependents may now be ready.
    fn settle(
        i: usize,
        st: Status,
        state: &mut [St],
        unfinished_needs: &mut [usize],
        dependents: &[Vec<usize>],
        ready: &mut BTreeSet<usize>,
    ) {
        state[i] = St::Done(st);
        for &d in &dependents[i] {
            unfinished_needs[d] -= 1;
            if unfinished_needs[d] == 0 {
                ready.insert(d);
            }
        }
    }

    // A retry keeps the jobs that succeeded before: done, with their outputs.
    for (i, job) in plan.jobs.iter().enumerate() {
        if let Some(outs) = opts.kept.get(&job.key) {
            outputs[i] = outs.clone();
            settle(
                i,
                Status::Success,
                &mut state,
                &mut unfinished_needs,
                &dependents,
                &mut ready,
            );
        }
    }
    ready.retain(|&i| !opts.kept.contains_key(&plan.jobs[i].key));

    loop {
        // A fed job's feed closes once every job it is fed by has ended.
        feeds.close_finished(&|id| {
            legs_by_id
                .get(id)
                .is_none_or(|ls| ls.iter().all(|&k| matches!(state[k], St::Done(_))))
        });
        // Start or settle ready jobs, in plan order, up to the limit.
        let candidates: Vec<usize> = ready.iter().copied().collect();
        for i in candidates {
            let job = &plan.jobs[i];
            if !stop_new && !job.fans_out() && spare.is_none() {
                spare = slots.clone().try_acquire_owned().ok();
                if spare.is_none() {
                    // Wait for a permit (below); a fan-out later in the
                    // order needs none, but plan order is kept.
                    break;
                }
            }
            if stop_new {
                ready.remove(&i);
                settle(
                    i,
                    Status::Cancelled,
                    &mut state,
                    &mut unfinished_needs,
                    &dependents,
                    &mut ready,
                );
                finish_unstarted(&events, &job.key, Status::Cancelled, "cancelled");
                continue;
            }
            if let Some(mp) = job.max_parallel {
                if running_per_job.get(&job.job_id).copied().unwrap_or(0) >= mp {
                    continue;
                }
            }
            ready.remove(&i);
            let result_of = |d: usize| match state[d] {
                St::Done(Status::Failure) if forgiven[d] => Status::Success,
                St::Done(s) => s,
                _ => Status::Pending,
            };
            let all_ok = needs[i].iter().all(|&d| result_of(d) == Status::Success);
            let any_failed = needs[i].iter().any(|&d| result_of(d) == Status::Failure);
            let flags = StatusFlags {
                success: all_ok,
                failure: any_failed,
                cancelled,
            };
            let ctx = job_context(
                &plan,
                i,
                &legs_by_id,
                &result_of,
                &outputs,
                flags,
                opts.run_id,
                &templates,
            );
            let go = match &job.condition {
                None => Ok(all_ok),
                Some(c) => templates.condition(c, &ctx),
            };
            match go {
                Ok(true) => {
                    if let (Some(c), Some(slots)) = (&job.concurrency, &opts.slots) {
                        let claimed = templates
                            .render(&c.group, &ctx)
                            .map_err(|e| format!("concurrency group: {}", e.message))
                            .and_then(|group| {
                                let claim = slots.claim(&group, c.max, opts.run_id, &job.key);
                                claim.map(|cl| (group, cl))
                            });
                        match claimed {
                            Ok((_, Claim::Claimed)) => {
                                held.insert(i);
                            }
                            Ok((group, Claim::Full(holders))) => {
                                if c.cancel_in_progress {
                                    // The running members of this run stop; one
                                    // that waits is replaced by this one.
                                    // So do those of other runs of this process.
                                    for (r, h) in &holders {
                                        let mine =
                                            index.get(h.as_str()).filter(|_| *r == opts.run_id);
                                        if let Some(tx) = mine.and_then(|hi| job_cancel.get(hi)) {
                                            let _ = tx.send(true);
                                        } else if let Some(s) = &opts.shared {
                                            s.cancel_job(*r, h);
                                        }
                                    }
                                    let replaced: Vec<usize> = waiting
                                        .iter()
                                        .filter(|(_, g)| **g == group)
                                        .map(|(w, _)| *w)
                                        .collect();
                                    for w in replaced {
                                        waiting.remove(&w);
                                        settle(
                                            w,
                                            Status::Cancelled,
                                            &mut state,
                                            &mut unfinished_needs,
                                            &dependents,
                                            &mut ready,
                                        );
                                        finish_unstarted(
                                            &events,
                                            &plan.jobs[w].key,
                                            Status::Cancelled,
                                            &format!(
                                                "replaced by {} (cancel-in-progress)",
                                                job.key
                                            ),
                                        );
                                    }
                                }
                                if announced.insert(i) {
                                    events.send(Event::JobWaiting {
                                        job: job.key.clone(),
                                        reason: concurrency::waiting_reason(
                                            &group,
                                            c.max,
                                            opts.run_id,
                                            &holders,
                                        ),
                                        at: now_ms(),
                                    });
                                }
                                waiting.insert(i, group);
                                continue;
                            }
                            Err(e) => {
                                failed = true;
                                settle(
                                    i,
                                    Status::Failure,
                                    &mut state,
                                    &mut unfinished_needs,
                                    &dependents,
                                    &mut ready,
                                );
                                finish_unstarted(&events, &job.key, Status::Failure, &e);
                                continue;
                            }
                        }
                    }
                    state[i] = St::Running;
                    running += 1;
                    *running_per_job.entry(job.job_id.clone()).or_default() += 1;
                    let (ctx_tx, ctx_rx) = watch::channel(false);
                    let ctx_tx = Arc::new(ctx_tx);
                    if let Some(s) = &opts.shared {
                        s.job_started(opts.run_id, &job.key, &ctx_tx);
                    }
                    job_cancel.insert(i, ctx_tx);
                    let done = done_tx.clone();
                    // Only a job run elsewhere or fanned out takes its needs' outputs
                    // whole; a plain job reads them from its context.
                    let needs_outputs = || -> BTreeMap<String, BTreeMap<String, String>> {
                        needs[i]
                            .iter()
                            .map(|&d| (plan.jobs[d].key.clone(), outputs[d].clone()))
                            .collect()
                    };
                    if !job.fed_by.is_empty() {
                        let feed = fanout::Feed {
                            needs_outputs: needs_outputs(),
                            plan: plan.clone(),
                            job: job.clone(),
                            opts: opts.clone(),
                            events: events.clone(),
                            templates: templates.clone(),
                            base_ctx: ctx,
                            slots: slots.clone(),
                            feeds: feeds.clone(),
                        };
                        let key = feed.job.key.clone();
                        report_when_done(done, i, key, feed.run(ctx_rx));
                    } else if job.dynamic_matrix.is_some() {
                        let fan = matrix::FanOut {
                            needs_outputs: needs_outputs(),
                            plan: plan.clone(),
                            job: job.clone(),
                            opts: opts.clone(),
                            events: events.clone(),
                            templates: templates.clone(),
                            base_ctx: ctx,
                            slots: slots.clone(),
                            feeds: step_feeds.clone(),
                        };
                        let key = fan.job.key.clone();
                        report_when_done(done, i, key, fan.run(ctx_rx));
                    } else if let Some(d) = &opts.dispatch {
                        let run = d.run_job(dispatch::Dispatched {
                            run_id: opts.run_id,
                            job: job.clone(),
                            of: None,
                            needs: needs_outputs(),
                            events: events.clone(),
                            cancel: ctx_rx,
                            feeds: step_feeds.clone(),
                        });
                        let permit = spare.take();
                        report_when_done(done, i, job.key.clone(), async move {
                            let r = run.await;
                            drop(permit);
                            r
                        });
                    } else {
                        let runner = job::JobRunner {
                            plan: plan.clone(),
                            job: job.clone(),
                            opts: opts.clone(),
                            events: events.clone(),
                            templates: templates.clone(),
                            base_ctx: ctx,
                            feeds: step_feeds.clone(),
                        };
                        let permit = spare.take();
                        let key = runner.job.key.clone();
                        let shared = opts.shared.clone();
                        report_when_done(
                            done,
                            i,
                            key,
                            shared::run_held(shared, permit, runner, ctx_rx),
                        );
                    }
                }
                Ok(false) => {
                    let why = if job.condition.is_some() {
                        "`if` was false".to_string()
                    } else {
                        let bad: Vec<String> = needs[i]
                            .iter()
                            .filter(|&&d| result_of(d) != Status::Success)
                            .map(|&d| format!("{} {}", plan.jobs[d].key, result_of(d)))
                            .collect();
                        format!("needs not successful: {}", bad.join(", "))
                    };
                    // A job calling a reusable workflow has no steps of its own:
                    // as on GitHub, it failed when a job of the called workflow did.
                    let called_failed = job.steps.is_empty()
                        && job.call.is_some()
                        && needs[i]
                            .iter()
                            .any(|&d| matches!(result_of(d), Status::Failure | Status::Cancelled));
                    let status = if called_failed {
                        Status::Failure
                    } else {
                        Status::Skipped
                    };
                    settle(
                        i,
                        status,
                        &mut state,
                        &mut unfinished_needs,
                        &dependents,
                        &mut ready,
                    );
                    finish_unstarted(&events, &job.key, status, &why);
                }
                Err(e) => {
                    failed = true;
                    settle(
                        i,
                        Status::Failure,
                        &mut state,
                        &mut unfinished_needs,
                        &dependents,
                        &mut ready,
                    );
                    finish_unstarted(
                        &events,
                        &job.key,
                        Status::Failure,
                        &format!("`if` failed: {}", e.message),
                    );
                }
            }
        }
        if running == 0 {
            if ready.is_empty() && waiting.is_empty() {
                break;
            }
            if ready.is_empty() {
                // Only jobs waiting for slots that other runs hold: ask again soon.
                tokio::select! {
                    _ = tokio::time::sleep(concurrency::POLL) => {}
                    r = cancel.changed(), if !cancelled => {
                        if r.is_err() || *cancel.borrow() {
                            cancelled = true;
                            stop_new = true;
                        }
                    }
                }
                ready.extend(std::mem::take(&mut waiting).into_keys());
            }
            // Settled jobs made others ready; with nothing running, every
            // limit admits at least one of them, so this makes progress.
            continue;
        }
        let want_slot =
            !stop_new && spare.is_none() && ready.iter().any(|&i| !plan.jobs[i].fans_out());
        tokio::select! {
            permit = slots.clone().acquire_owned(), if want_slot => {
                spare = permit.ok();
            }
            _ = tokio::time::sleep(concurrency::POLL), if !waiting.is_empty() => {
                ready.extend(std::mem::take(&mut waiting).into_keys());
            }
            Some(done) = done_rx.recv() => {
                let i = done.index;
                running -= 1;
                if held.remove(&i) {
                    if let Some(slots) = &opts.slots {
                        slots.release(opts.run_id, Some(&done.key));
                    }
                    // A slot is free: the jobs waiting for one ask again.
                    ready.extend(std::mem::take(&mut waiting).into_keys());
                }
                if job_cancel.remove(&i).is_some() {
                    if let Some(s) = &opts.shared {
                        s.job_ended(opts.run_id, &done.key);
                    }
                }
                if let Some(c) = running_per_job.get_mut(&plan.jobs[i].job_id) { *c -= 1; }
                forgiven[i] = done.forgiven;
                outputs[i] = done.outputs;
                settle(i, done.status, &mut state, &mut unfinished_needs, &dependents, &mut ready);
                if done.status == Status::Failure && !done.forgiven {
                    failed = true;
                    let job = &plan.jobs[i];
                    if opts.fail_fast {
                        stop_new = true;
                        for tx in job_cancel.values() { let _ = tx.send(true); }
                    } else if job.fail_fast && !job.matrix.is_empty() {
                        // strategy.fail-fast: the other legs of this matrix stop.
                        for (j, tx) in &job_cancel {
                            if plan.jobs[*j].job_id == job.job_id { let _ = tx.send(true); }
                        }
                        let pending_legs: Vec<usize> = legs_by_id[job.job_id.as_str()]
                            .iter()
                            .copied()
                            .filter(|&j| state[j] == St::Pending)
                            .collect();
                        for j in pending_legs {
                            ready.remove(&j);
                            waiting.remove(&j);
                            settle(j, Status::Cancelled, &mut state, &mut unfinished_needs, &dependents, &mut ready);
                            finish_unstarted(&events, &plan.jobs[j].key, Status::Cancelled, "another leg of the matrix failed (fail-fast)");
                        }
                    }
                }
            }
            r = cancel.changed(), if !cancelled => {
                if r.is_err() || *cancel.borrow() {
                    cancelled = true;
                    stop_new = true;
                    for tx in job_cancel.values() { let _ = tx.send(true); }
                    ready.extend(std::mem::take(&mut waiting).into_keys());
                }
            }
        }
    }

    if uses_slots {
        if let Some(slots) = &opts.slots {
            slots.release(opts.run_id, None);
        }
    }
    // Every command of the run has ended: their record in `.trun/procs` goes.
    if let Some(dir) = &opts.proc_records {
        process::release_records(dir);
    }
    // Jobs that never became ready (a need was cancelled mid-way) end cancelled.
    for (st, job) in state.iter_mut().zip(&plan.jobs) {
        if *st == St::Pending {
            *st = St::Done(Status::Cancelled);
            finish_unstarted(&events, &job.key, Status::Cancelled, "cancelled");
        }
    }

    // A job stopped by `cancel-in-progress` (of this run or another) makes
    // the run cancelled, as on GitHub, unless something failed.
    let job_cancelled = state.contains(&St::Done(Status::Cancelled));
    let status = if cancelled {
        Status::Cancelled
    } else if failed {
        Status::Failure
    } else if job_cancelled {
        Status::Cancelled
    } else {
        Status::Success
    };
    events.send(Event::RunFinished {
        run_id: opts.run_id,
        status,
        at: now_ms(),
        duration_ms: started.elapsed().as_millis() as u64,
    });
    RunResult {
        status,
        jobs: plan
            .jobs
            .iter()
            .zip(&state)
            .map(|(j, s)| {
                (
                    j.key.clone(),
                    if let St::Done(s) = s {
                        *s
                    } else {
                        Status::Cancelled
                    },
                )
            })
            .collect(),
    }
}

fn finish_unstarted(events: &Events, key: &str, status: Status, reason: &str) {
    events.send(Event::JobFinished {
        job: key.to_string(),
        status,
        reason: Some(reason.to_string()),
        at: now_ms(),
        duration_ms: 0,
        outputs: BTreeMap::new(),
    });
}

/// The GitHub Actions contexts of a job: `github` (with the run and job ids), `runner`,
/// `vars`, `strategy`, and `job.container` / `job.services`.
fn github_contexts(
    plan: &Plan,
    job: &crate::plan::PlannedJob,
    legs_by_id: &BTreeMap<&str, Vec<usize>>,
    run_id: i64,
    ctx: &mut Context,
) {
    if let Some(gh) = &plan.github {
        ctx.github = gh.github.clone();
        ctx.github_event = Some(gh.event.clone());
        for k in ["run_id", "run_number"] {
            ctx.github
                .insert(k.into(), Value::String(run_id.to_string()));
        }
        ctx.github
            .insert("job".into(), Value::String(job.job_id.clone()));
        ctx.runner = gh.runner.clone();
        ctx.vars = gh.vars.clone();
    }
    let legs = legs_by_id
        .get(job.job_id.as_str())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let total = legs.len().max(1);
    let index = legs
        .iter()
        .position(|&l| plan.jobs[l].key == job.key)
        .unwrap_or(0);
    ctx.strategy
        .insert("fail-fast".into(), Value::Bool(job.fail_fast));
    ctx.strategy.insert("job-index".into(), Value::from(index));
    ctx.strategy.insert("job-total".into(), Value::from(total));
    ctx.strategy.insert(
        "max-parallel".into(),
        Value::from(job.max_parallel.map_or(total, |m| m as usize)),
    );
    ctx.job.insert(
        "container".into(),
        serde_json::json!({ "id": "", "network": "" }),
    );
    ctx.job.insert(
        "services".into(),
        Value::Object(
            job.services
                .iter()
                .map(|(k, _)| {
                    (
                        k.clone(),
                        serde_json::json!({ "id": "", "network": "", "ports": {} }),
                    )
                })
                .collect(),
        ),
    );
}

/// The expression context a job starts with: inputs, env, matrix, needs.
#[allow(clippy::too_many_arguments)]
fn job_context(
    plan: &Plan,
    i: usize,
    legs_by_id: &BTreeMap<&str, Vec<usize>>,
    result_of: &dyn Fn(usize) -> Status,
    outputs: &[BTreeMap<String, String>],
    status: StatusFlags,
    run_id: i64,
    templates: &Templates,
) -> Context {
    let job = &plan.jobs[i];
    let mut needs = Map::new();
    for id in &job.needs_ids {
        // Every leg of a needed matrix job: outputs merged (last leg wins),
        // result is failure if any leg failed.
        let mut outs = Map::new();
        let mut result = "success";
        for &k in legs_by_id
            .get(id.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            for (n, v) in &outputs[k] {
                outs.insert(n.clone(), Value::String(v.clone()));
            }
            result = match (result, result_of(k)) {
                (_, Status::Failure) | ("failure", _) => "failure",
                (_, Status::Cancelled) | ("cancelled", _) => "cancelled",
                (_, Status::Skipped) | ("skipped", _) => "skipped",
                (r, _) => r,
            };
        }
        let mut m = Map::new();
        m.insert("outputs".into(), Value::Object(outs));
        m.insert("result".into(), Value::String(result.into()));
        // A job of a called workflow knows its needs by their names in that workflow.
        let name = job
            .call
            .as_ref()
            .and_then(|c| c.needs_alias.iter().find(|(g, _)| g == id))
            .map_or(id, |(_, local)| local);
        needs.insert(name.clone(), Value::Object(m));
    }
    let mut trun = Map::new();
    trun.insert(
        "workspace".into(),
        Value::String(plan.root.display().to_string()),
    );
    trun.insert("run_id".into(), Value::from(run_id));
    trun.insert("os".into(), Value::String(std::env::consts::OS.into()));
    let mut jobm = Map::new();
    jobm.insert("id".into(), Value::String(job.job_id.clone()));
    jobm.insert("name".into(), Value::String(job.name.clone()));
    jobm.insert("status".into(), Value::String("success".into()));
    // A matrix key that only some legs have (from `include`) reads as null
    // in the others, as in GitHub Actions, rather than failing mid-run.
    let mut matrix = job.matrix.clone();
    for &leg in legs_by_id
        .get(job.job_id.as_str())
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        for key in plan.jobs[leg].matrix.keys() {
            if !matrix.contains_key(key) {
                matrix.insert(key.clone(), Value::Null);
            }
        }
    }
    let mut ctx = Context {
        inputs: job
            .call
            .as_ref()
            .map_or_else(|| plan.inputs.clone(), |c| c.inputs.clone()),
        // As on GitHub, `env` holds what the workflow, job and step set, not trun's
        // own environment (which `toJSON(env)` would otherwise print whole).
        env: Map::new(),
        matrix,
        needs,
        steps: Map::new(),
        job: jobm,
        trun,
        secrets: crate::reusable::secrets_context(
            job.call.as_deref(),
            plan.secrets.context(),
            templates,
        ),
        status,
        ..Context::default()
    };
    github_contexts(plan, job, legs_by_id, run_id, &mut ctx);
    // Workflow env is rendered per job so it can use inputs.
    for (k, v) in &plan.env {
        let val = templates.render(v, &ctx).unwrap_or_else(|_| v.clone());
        ctx.env.insert(k.clone(), Value::String(val));
    }
    ctx
}
