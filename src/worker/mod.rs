//! Jobs spread over machines: a coordinating trun (`trun run --db
//! postgres://… --remote-cache URL --dispatch`) plans and schedules the run as
//! always, but hands each plain job to the PostgreSQL job queue
//! ([`crate::state::JobQueue`]) instead of running its steps itself
//! ([`Dispatcher`]); `trun worker`s on any number of machines claim jobs,
//! run them through the same engine in a work dir of their own
//! ([`run::serve`]), and complete them with their result. A job is the unit
//! that moves: its steps all run on one worker.
//!
//! Nothing is shared but the database and the cache: the workspace travels as
//! a content-addressed snapshot ([`snapshot`]) in the remote cache, and so do
//! the files each job wrote, which the jobs that need it (directly or not)
//! get in their work dir before they start.
//!
//! Not here: scheduling (the engine's), persistence of runs and steps (the
//! store's; a worker records its steps into the coordinator's run), the
//! cache protocol (`crate::cache`).

pub mod guard;
pub mod run;
pub mod snapshot;

use crate::event::{now_ms, Event, Status};
use crate::exec::dispatch::{Dispatch, Dispatched, Of, Pending};
use crate::exec::job::JobResult;
use crate::fanout::Emitted;
use crate::plan::Plan;
use crate::state::{JobQueue, Listener, DONE_CHANNEL, MAX_ATTEMPTS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// What a worker needs to run one job of a run, as queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// The workflow file, relative to the workspace.
    pub workflow: String,
    /// The workspace snapshot's manifest (`hash/size`).
    pub snapshot: String,
    /// The jobs the coordinator was asked to run (the plan is made the same way).
    pub targets: Vec<String>,
    /// `-i name=value`, as given.
    pub inputs: Vec<(String, String)>,
    /// The outputs of each job this one needs, by job key.
    pub needs: BTreeMap<String, BTreeMap<String, String>>,
    /// Manifests (`hash/size`) of the files written by the jobs this one
    /// needs, directly or not, in plan order (a later job's file wins).
    pub files: Vec<String>,
    /// The manifests of what each job this one needs directly wrote (one
    /// per leg of a matrix, sorted): with `needs`, what the job's first step
    /// is keyed on, so a changed upstream makes it run again even where its
    /// `sources` do not cover the files.
    #[serde(default)]
    pub upstream: BTreeMap<String, Vec<String>>,
    /// The job is a leg of a computed matrix or an instance of a fed job:
    /// what the worker makes it from.
    #[serde(default)]
    pub of: Option<Of>,
}

/// How a job ended on its worker, as completed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    pub reason: Option<String>,
    pub outputs: BTreeMap<String, String>,
    /// The manifest (`hash/size`) of the files the job wrote, if any.
    pub files: Option<String>,
    pub worker: String,
    /// The files its steps emitted for fed jobs, in the cache: (step id, file).
    #[serde(default)]
    pub emitted: Vec<(String, Emitted)>,
    /// How each of its steps started and ended (`StepStarted`,
    /// `StepFinished`, as the worker recorded them): the coordinator's
    /// reporters show them as for a local job.
    #[serde(default)]
    pub steps: Vec<Event>,
}

/// The parts of a [`Payload`] every job of a run shares.
#[derive(Debug, Clone)]
pub struct RunSource {
    pub workflow: String,
    pub snapshot: String,
    pub targets: Vec<String>,
    pub inputs: Vec<(String, String)>,
}

type Waiters = Mutex<HashMap<(i64, String), oneshot::Sender<Outcome>>>;

/// The coordinator's side: queues jobs, waits for their results (woken by
/// `NOTIFY`), and rescues attempts whose worker died.
pub struct Dispatcher {
    queue: Arc<JobQueue>,
    source: RunSource,
    /// Each job's needs, by key (to find every job a job depends on).
    needs: BTreeMap<String, Vec<String>>,
    /// Plan order, for the order of files.
    order: Vec<String>,
    /// The manifests of what each finished job wrote, by planned job (one
    /// per leg of a computed matrix).
    produced: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    /// The manifest of what each finished job (leg, instance) wrote, by key.
    wrote: Arc<Mutex<BTreeMap<String, String>>>,
    waiters: Arc<Waiters>,
    stop: Arc<AtomicBool>,
}

impl Dispatcher {
    /// A dispatcher for a run of `plan`, read from the workflow file
    /// `workflow` (relative to `root`): the workspace goes to `cache` first,
    /// as a snapshot (as `.gitignore` leaves it), and the jobs to the job
    /// queue in the database at `db`. `trun run --dispatch` and `trun serve
    /// --no-local-exec` both start here.
    pub fn for_workspace(
        db: &str,
        plan: &Plan,
        cache: &crate::cache::RemoteCache,
        root: &std::path::Path,
        workflow: &str,
        targets: Vec<String>,
        inputs: Vec<(String, String)>,
    ) -> Result<Dispatcher, String> {
        if !crate::cache::action_result::safe_path(workflow) {
            return Err(format!(
                "the workflow file {workflow} must lie inside the workspace"
            ));
        }
        let snapshot = snapshot::Manifest::of_dir(root, snapshot::Walk::Source)
            .and_then(|m| m.upload(cache.client(), root))
            .map_err(|e| format!("cannot upload the workspace: {e}"))?;
        let source = RunSource {
            workflow: workflow.to_string(),
            snapshot: snapshot::digest_text(&snapshot),
            targets,
            inputs,
        };
        Dispatcher::start(db, plan, source).map_err(|e| e.to_string())
    }

    /// A dispatcher for runs of `plan` with `source`; starts the thread that
    /// waits for results on a `LISTEN` connection to `url`.
    pub fn start(url: &str, plan: &Plan, source: RunSource) -> crate::state::Result<Dispatcher> {
        let queue = Arc::new(JobQueue::open(url)?);
        let mut listener = Listener::open(url, None, &[DONE_CHANNEL])?;
        let waiters: Arc<Waiters> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (q, w, s) = (queue.clone(), waiters.clone(), stop.clone());
        std::thread::Builder::new()
            .name("trun-dispatch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    // A second's wait also paces the rescue of dead workers' jobs.
                    let _ = listener.wait(Duration::from_secs(1));
                    if let Err(e) = q.rescue(now_ms()) {
                        eprintln!("trun: warning: job queue: {e}");
                    }
                    settle_waiters(&q, &w);
                }
            })
            .map_err(crate::state::StateError::Thread)?;
        Ok(Dispatcher {
            queue,
            source,
            needs: plan
                .jobs
                .iter()
                .map(|j| (j.key.clone(), j.needs.clone()))
                .collect(),
            order: plan.jobs.iter().map(|j| j.key.clone()).collect(),
            produced: Arc::default(),
            wrote: Arc::default(),
            waiters,
            stop,
        })
    }

    /// The manifests of what every job a job with `needs` depends on
    /// wrote, in plan order.
    fn files_for(&self, needs: &[String]) -> Vec<String> {
        let mut seen: BTreeSet<String> = needs.iter().cloned().collect();
        let mut todo = needs.to_vec();
        while let Some(k) = todo.pop() {
            for n in self.needs.get(&k).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        let produced = self.produced.lock().unwrap_or_else(|p| p.into_inner());
        self.order
            .iter()
            .filter(|k| seen.contains(*k))
            .filter_map(|k| produced.get(k))
            .flatten()
            .cloned()
            .collect()
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Hands each waiter whose job has ended its outcome.
fn settle_waiters(queue: &JobQueue, waiters: &Waiters) {
    let keys: Vec<(i64, String)> = waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .keys()
        .cloned()
        .collect();
    // One read per run: the newest attempt of each of its jobs.
    let mut newest: BTreeMap<i64, BTreeMap<String, crate::state::QueuedJob>> = BTreeMap::new();
    for run in keys.iter().map(|(r, _)| *r).collect::<BTreeSet<i64>>() {
        if let Ok(rows) = queue.run_attempts(run) {
            // Ordered by job then attempt: the last row of a job wins.
            newest.insert(
                run,
                rows.into_iter().map(|r| (r.job_key.clone(), r)).collect(),
            );
        }
    }
    for (run, job) in keys {
        let Some(last) = newest.get(&run).and_then(|jobs| jobs.get(&job)) else {
            continue;
        };
        let outcome = match last.state.as_str() {
            "done" => last
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str::<Outcome>(r).ok())
                .unwrap_or_else(|| lost(Status::Failure, "its worker sent an unreadable result")),
            "expired" if last.attempt >= MAX_ATTEMPTS => lost(
                Status::Failure,
                &format!("its worker stopped answering, {} times", last.attempt),
            ),
            "cancelled" => lost(Status::Cancelled, "cancelled"),
            _ => continue,
        };
        let tx = waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(run, job));
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
    }
}

fn lost(status: Status, reason: &str) -> Outcome {
    Outcome {
        status,
        reason: Some(reason.to_string()),
        outputs: BTreeMap::new(),
        files: None,
        worker: String::new(),
        emitted: Vec::new(),
        steps: Vec::new(),
    }
}

impl Dispatch for Dispatcher {
    fn files_of(&self, key: &str) -> Option<String> {
        self.wrote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn wrote_earlier(&self, planned: &str, files: &str) {
        self.produced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(planned.to_string())
            .or_default()
            .push(files.to_string());
    }

    fn run_job(&self, d: Dispatched) -> Pending {
        let Dispatched {
            run_id,
            job,
            of,
            needs,
            events,
            mut cancel,
            feeds,
        } = d;
        let key = job.key.clone();
        let planned = of.as_ref().map_or(key.clone(), |o| o.planned().to_string());
        let labels = job.runs_on.clone();
        let continue_on_error = job.continue_on_error;
        let upstream = {
            let produced = self.produced.lock().unwrap_or_else(|p| p.into_inner());
            job.needs
                .iter()
                .map(|n| {
                    let mut files = produced.get(n).cloned().unwrap_or_default();
                    files.sort();
                    (n.clone(), files)
                })
                .collect()
        };
        let payload = Payload {
            workflow: self.source.workflow.clone(),
            snapshot: self.source.snapshot.clone(),
            targets: self.source.targets.clone(),
            inputs: self.source.inputs.clone(),
            needs,
            files: self.files_for(&job.needs),
            upstream,
            of,
        };
        let started = now_ms();
        events.send(Event::JobStarted {
            job: key.clone(),
            at: started,
        });
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((run_id, key.clone()), tx);
        let payload = serde_json::to_string(&payload);
        let queue = self.queue.clone();
        let waiters = self.waiters.clone();
        let produced_here = self.produced.clone();
        let wrote = self.wrote.clone();
        Box::pin(async move {
            // The database is a blocking client: off the scheduler's threads.
            let blocking = |f: Box<dyn FnOnce() -> Result<(), String> + Send>| async move {
                tokio::task::spawn_blocking(f)
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            };
            let queued = match payload {
                Err(e) => Err(e.to_string()),
                Ok(p) => {
                    let (queue, key) = (queue.clone(), key.clone());
                    blocking(Box::new(move || {
                        queue
                            .enqueue(run_id, &key, &labels, &p)
                            .map_err(|e| e.to_string())
                    }))
                    .await
                }
            };
            let mut outcome = match queued {
                Err(e) => {
                    waiters
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&(run_id, key.clone()));
                    lost(Status::Failure, &format!("cannot queue the job: {e}"))
                }
                Ok(()) => {
                    tokio::select! {
                        r = rx => r.unwrap_or_else(|_| lost(Status::Failure, "the dispatcher stopped")),
                        _ = crate::exec::cancelled(&mut cancel) => {
                            waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(&(run_id, key.clone()));
                            let (queue, key) = (queue.clone(), key.clone());
                            let _ = blocking(Box::new(move || {
                                queue.cancel_job(run_id, &key).map(|_| ()).map_err(|e| e.to_string())
                            }))
                            .await;
                            lost(Status::Cancelled, "cancelled")
                        }
                    }
                }
            };
            // As a local run sends them at the end of each step: before the
            // job counts as ended, so its fed jobs' feeds are still open.
            if let Some(feeds) = &feeds {
                for (step_id, e) in std::mem::take(&mut outcome.emitted) {
                    let sent = match job.steps.iter().find(|s| s.id == step_id) {
                        Some(step) => feeds.send(&job, step, vec![e]).map(drop),
                        None => Err(format!(
                            "a worker sent a file emitted by an unknown step {step_id:?}"
                        )),
                    };
                    if let Err(why) = sent {
                        outcome.status = Status::Failure;
                        outcome.reason = Some(why);
                    }
                }
            }
            if let Some(f) = &outcome.files {
                wrote
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone(), f.clone());
                produced_here
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(planned)
                    .or_default()
                    .push(f.clone());
            }
            // Recorded already, by the worker; sent again (the same rows)
            // so that what reports this run shows them. Only step starts
            // and ends, and only of this job.
            for ev in std::mem::take(&mut outcome.steps) {
                let ours = match &ev {
                    Event::StepStarted { job, .. } | Event::StepFinished { job, .. } => *job == key,
                    _ => false,
                };
                if ours {
                    events.send(ev);
                }
            }
            let at = now_ms();
            events.send(Event::JobFinished {
                job: key.clone(),
                status: outcome.status,
                reason: outcome.reason.clone(),
                at,
                duration_ms: (at - started).max(0) as u64,
                outputs: outcome.outputs.clone(),
            });
            JobResult {
                status: outcome.status,
                outputs: outcome.outputs,
                forgiven: outcome.status == Status::Failure && continue_on_error,
            }
        })
    }
}
