//! Jobs fed by emitted files (`fed-by:`): the engine's side of fan-out.
//!
//! A step's files in `$TRUN_EMIT/<job>/` are taken into the store when the
//! step ends successfully ([`Feeds::collect`], called by the job runner), and
//! sent to the fed job's [`Feed`]. The feed starts one instance per file as
//! soon as it arrives — so at the end of the emitting step, not at the end of
//! its job — each instance holding one of the run's `-j` slots, and ends once
//! every job it is fed by has ended and every instance has finished. Jobs that
//! `need` the fed job therefore wait for all of its instances, chains of fed
//! jobs included.
//!
//! An instance whose input and job definition are unchanged since it last
//! succeeded is up to date: it is reported skipped, and the files it emitted
//! then are sent on again, so the next stage decides for itself. Whether that
//! is so is asked of the [`StepHooks`](super::job::StepHooks), like every
//! up-to-date decision; this module never touches the state store.

use super::job::{JobResult, JobRunner};
use super::{Events, RunOptions};
use crate::event::{now_ms, Event, Status};
use crate::fanout::{instance_key, Emitted, Input, RanOn};
use crate::plan::{Plan, PlannedJob, PlannedStep};
use crate::template::{Context, Engine as Templates};
use crate::uptodate::cas::Cas;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::{watch, Semaphore};

/// What a fed job's feed receives.
#[derive(Debug)]
pub enum FeedMsg {
    /// A file emitted for it by the step `from` (`job.step`).
    File { emitted: Emitted, from: String },
    /// Every job it is fed by has ended: no more files will come.
    Closed,
}

/// Files emitted for fed jobs that do not run in this process: a worker
/// runs one job of a run, and hands what its steps emitted to the
/// coordinator, whose feeds start the instances. (step id, file.)
#[derive(Default)]
pub struct Outbox(Mutex<Vec<(String, Emitted)>>);

impl Outbox {
    pub fn take(&self) -> Vec<(String, Emitted)> {
        std::mem::take(&mut *lock(&self.0))
    }
}

/// The run's routes from emitting steps to fed jobs.
pub struct Feeds {
    plan: Arc<Plan>,
    cas: Cas,
    senders: BTreeMap<String, UnboundedSender<FeedMsg>>,
    /// Where files for a fed job of the workflow with no feed here go.
    outbox: Option<Arc<Outbox>>,
    receivers: Mutex<BTreeMap<String, UnboundedReceiver<FeedMsg>>>,
    closed: Mutex<BTreeSet<String>>,
    /// What each instance emitted, remembered with it when it succeeds.
    by_instance: Mutex<HashMap<String, Vec<Emitted>>>,
}

impl Feeds {
    pub fn new(plan: &Arc<Plan>, outbox: Option<Arc<Outbox>>) -> Feeds {
        let mut senders = BTreeMap::new();
        let mut receivers = BTreeMap::new();
        for j in plan.jobs.iter().filter(|j| !j.fed_by.is_empty()) {
            let (tx, rx) = unbounded_channel();
            senders.insert(j.job_id.clone(), tx);
            receivers.insert(j.job_id.clone(), rx);
        }
        Feeds {
            plan: plan.clone(),
            cas: Cas::new(&plan.root.join(".trun").join("cas")),
            senders,
            outbox,
            receivers: Mutex::new(receivers),
            closed: Mutex::new(BTreeSet::new()),
            by_instance: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the workflow has a job `fed-by` others. Only then do steps
    /// get a `$TRUN_EMIT` (a directory made and read per step costs a few
    /// system calls a thousand-step no-op need not pay).
    pub fn active(&self) -> bool {
        self.plan.fed_by.values().any(|f| !f.is_empty())
    }

    /// A fresh, empty `$TRUN_EMIT` for a step of `job`, with a directory
    /// ready for each job fed by it (`$TRUN_EMIT/process/`).
    pub fn prepare(&self, tmp_dir: &Path, dir: &Path, job: &PlannedJob) -> std::io::Result<()> {
        crate::fsutil::fresh_dir_under(tmp_dir, dir)?;
        for (fed, by) in &self.plan.fed_by {
            if by.contains(&job.job_id) {
                crate::fsutil::create_dir_under(tmp_dir, &dir.join(fed))?;
            }
        }
        Ok(())
    }

    /// Takes the files a step emitted into `dir` and sends them on: `Ok` with
    /// notes for the step's log, `Err` (the step fails) for a file no job
    /// may take or a limit passed.
    pub fn collect(
        &self,
        dir: &Path,
        from: &PlannedJob,
        step: &PlannedStep,
        hooks: Option<&dyn super::job::StepHooks>,
    ) -> Result<Vec<String>, String> {
        let emitted = crate::fanout::collect(dir, &self.cas)?;
        let _ = std::fs::remove_dir_all(dir);
        if emitted.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(h) = hooks {
            h.step_emitted(&from.key, step, &emitted);
        }
        self.send(from, step, emitted)
    }

    /// Sends files emitted by `from`'s step `step` (now, or when it last ran)
    /// to the feeds of their jobs.
    pub fn send(
        &self,
        from: &PlannedJob,
        step: &PlannedStep,
        emitted: Vec<Emitted>,
    ) -> Result<Vec<String>, String> {
        let in_plan = |id: &str| self.senders.contains_key(id) || self.outbox.is_some();
        // An instance remembers every file it emitted, also those for a job
        // not in this run: a later run that has it replays them.
        let all = from.input.is_some().then(|| emitted.clone());
        let (keep, mut notes) = crate::fanout::check_routes(
            &self.plan.fed_by,
            &in_plan,
            &from.job_id,
            &step.id,
            emitted,
        )?;
        if let Some(all) = all {
            lock(&self.by_instance)
                .entry(from.key.clone())
                .or_default()
                .extend(all);
        }
        let mut per_job: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &keep {
            *per_job.entry(e.job.as_str()).or_default() += 1;
        }
        for (job, n) in per_job {
            notes.push(format!(
                "trun: emitted {n} file{} for `{job}`",
                if n == 1 { "" } else { "s" }
            ));
        }
        let origin = format!("{}.{}", from.key, step.id);
        for e in keep {
            if let Some(tx) = self.senders.get(&e.job) {
                let _ = tx.send(FeedMsg::File {
                    emitted: e,
                    from: origin.clone(),
                });
            } else if let Some(out) = &self.outbox {
                lock(&out.0).push((step.id.clone(), e));
            }
        }
        Ok(notes)
    }

    fn take_receiver(&self, job_id: &str) -> Option<UnboundedReceiver<FeedMsg>> {
        lock(&self.receivers).remove(job_id)
    }

    fn take_emitted(&self, key: &str) -> Vec<Emitted> {
        lock(&self.by_instance).remove(key).unwrap_or_default()
    }

    /// Closes the feed of every fed job whose emitters have all ended
    /// (`ended(job id)`; a job not in the run has ended). Called by the
    /// scheduler whenever a job may have ended.
    pub fn close_finished(&self, ended: &dyn Fn(&str) -> bool) {
        if self.senders.is_empty() {
            return;
        }
        let mut closed = lock(&self.closed);
        for j in self.plan.jobs.iter().filter(|j| !j.fed_by.is_empty()) {
            if closed.contains(&j.job_id) || !j.fed_by.iter().all(|f| ended(f)) {
                continue;
            }
            closed.insert(j.job_id.clone());
            if let Some(tx) = self.senders.get(&j.job_id) {
                let _ = tx.send(FeedMsg::Closed);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fed job while the run lasts: one instance per file it receives.
pub struct Feed {
    pub plan: Arc<Plan>,
    pub job: PlannedJob,
    pub opts: RunOptions,
    pub events: Events,
    pub templates: Arc<Templates>,
    pub base_ctx: Context,
    /// The run's `-j` slots: an instance runs only holding one.
    pub slots: Arc<Semaphore>,
    pub feeds: Arc<Feeds>,
    /// The outputs of the jobs this one needs, by key: what an instance that
    /// runs elsewhere ([`RunOptions::dispatch`]) is sent.
    pub needs_outputs: BTreeMap<String, BTreeMap<String, String>>,
}

impl Feed {
    pub async fn run(self, mut cancel: watch::Receiver<bool>) -> JobResult {
        let started = std::time::Instant::now();
        let Some(mut rx) = self.feeds.take_receiver(&self.job.job_id) else {
            return self.finish(Status::Failure, Some("no feed".into()), started);
        };
        let width = self
            .job
            .max_parallel
            .map(|m| m as usize)
            .unwrap_or(Semaphore::MAX_PERMITS)
            .clamp(1, Semaphore::MAX_PERMITS);
        let width = Arc::new(Semaphore::new(width));
        let (stop_tx, _) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        // Name -> the step that emitted it: a name is one instance per run.
        let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut failed: Vec<String> = Vec::new();
        let mut problems: Vec<String> = Vec::new();
        let mut cancelled = false;
        let mut up_to_date = 0usize;
        let mut closed = false;
        let mut stopping = *cancel.borrow();
        loop {
            if (closed || stopping) && tasks.is_empty() {
                break;
            }
            tokio::select! {
                msg = rx.recv(), if !closed && !stopping => match msg {
                    None | Some(FeedMsg::Closed) => closed = true,
                    Some(FeedMsg::File { emitted, from }) => {
                        if let Some((first, _)) = seen.get(&emitted.name) {
                            let key = instance_key(&self.job.job_id, &emitted.name);
                            problems.push(format!(
                                "{key} was emitted twice (by {first} and {from}); a name makes one instance per run"
                            ));
                            failed.push(key);
                            continue;
                        }
                        seen.insert(emitted.name.clone(), (from.clone(), emitted.sha256.clone()));
                        match self.instance(emitted) {
                            Err((key, why)) => {
                                problems.push(why);
                                failed.push(key);
                            }
                            Ok((job, check)) => {
                                if check.as_ref().is_some_and(|c| c.up_to_date.is_some()) {
                                    // What it wrote on a worker then, the jobs after it get now.
                                    if let (Some(d), Some(files)) = (&self.opts.dispatch, check.as_ref().and_then(|c| c.files.as_deref())) {
                                        d.wrote_earlier(&self.job.key, files);
                                    }
                                    match self.report_up_to_date(&job, check) {
                                        Ok(()) => up_to_date += 1,
                                        Err(why) => {
                                            problems.push(why);
                                            failed.push(job.key.clone());
                                        }
                                    }
                                    continue;
                                }
                                if let Some(d) = self.opts.dispatch.clone() {
                                    tasks.spawn(self.elsewhere(d, job, check, width.clone(), stop_tx.subscribe()));
                                    continue;
                                }
                                let runner = JobRunner {
                                    plan: self.plan.clone(),
                                    job,
                                    opts: self.opts.clone(),
                                    events: self.events.clone(),
                                    templates: self.templates.clone(),
                                    base_ctx: self.base_ctx.clone(),
                                    feeds: Some(self.feeds.clone()),
                                };
                                let width = width.clone();
                                let slots = self.slots.clone();
                                let mut stop = stop_tx.subscribe();
                                let feeds = self.feeds.clone();
                                let hooks = self.opts.hooks.clone();
                                tasks.spawn(async move {
                                    let key = runner.job.key.clone();
                                    let Ok(_width) = width.acquire_owned().await else {
                                        return (key, None);
                                    };
                                    let Ok(_hold) = super::shared::hold(&runner, &mut stop).await else {
                                        return (key, None);
                                    };
                                    let Ok(_permit) = slots.acquire_owned().await else {
                                        return (key, None);
                                    };
                                    if *stop.borrow() {
                                        return (key, None);
                                    }
                                    let job = runner.job.clone();
                                    let r = runner.run(stop).await;
                                    let emitted = feeds.take_emitted(&key);
                                    if let (Some(h), Some(c), Status::Success) = (&hooks, &check, r.status) {
                                        h.instance_done(&job, c, &emitted, RanOn::Here);
                                    }
                                    (key, Some(r))
                                });
                            }
                        }
                    }
                },
                joined = tasks.join_next(), if !tasks.is_empty() => {
                    let Some(Ok((key, result))) = joined else { continue };
                    match result {
                        None => {
                            cancelled = true;
                            self.events.send(Event::JobFinished { job: key, status: Status::Cancelled, reason: Some("cancelled".into()), at: now_ms(), duration_ms: 0, outputs: BTreeMap::new() });
                        }
                        Some(r) if r.status == Status::Failure && !r.forgiven => failed.push(key),
                        Some(r) if r.status == Status::Cancelled => cancelled = true,
                        Some(_) => {}
                    }
                }
                r = cancel.changed(), if !stopping => {
                    if r.is_err() || *cancel.borrow() {
                        stopping = true;
                        cancelled = true;
                        let _ = stop_tx.send(true);
                    }
                }
            }
        }
        if !stopping {
            if let Some(h) = &self.opts.hooks {
                let known: Vec<(String, String)> = seen
                    .iter()
                    .map(|(n, (_, sha))| (n.clone(), sha.clone()))
                    .collect();
                h.instances_seen(&self.job.job_id, &known);
            }
        }
        for p in &problems {
            self.events.send(Event::StepOutput {
                job: self.job.key.clone(),
                step: 0,
                stream: crate::event::Stream::Stderr,
                line: format!("trun: {p}"),
            });
        }
        let (status, reason) = if !failed.is_empty() {
            let mut why = format!("failed: {}", failed.join(", "));
            if let Some(p) = problems.first() {
                why = format!("{why} ({p})");
            }
            (Status::Failure, Some(why))
        } else if cancelled {
            (Status::Cancelled, Some("cancelled".to_string()))
        } else {
            // `trun show` says what the instances amounted to.
            let n = seen.len();
            (
                Status::Success,
                Some(format!(
                    "{n} instance{}: {} ran, {up_to_date} up to date",
                    if n == 1 { "" } else { "s" },
                    n - up_to_date
                )),
            )
        };
        self.finish(status, reason, started)
    }

    /// An instance run elsewhere, holding its `max-parallel` and `-j` slots here.
    fn elsewhere(
        &self,
        d: Arc<dyn super::dispatch::Dispatch>,
        job: PlannedJob,
        check: Option<crate::fanout::InstanceCheck>,
        width: Arc<Semaphore>,
        stop: watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = (String, Option<JobResult>)> + Send + 'static {
        let slots = self.slots.clone();
        let feeds = self.feeds.clone();
        let hooks = self.opts.hooks.clone();
        let (run_id, events) = (self.opts.run_id, self.events.clone());
        let (planned, fed) = (self.job.key.clone(), self.job.job_id.clone());
        let needs = self.needs_outputs.clone();
        async move {
            let key = job.key.clone();
            let Some(_held) = super::dispatch::hold_slots(width, slots, &stop).await else {
                return (key, None);
            };
            let input = job.input.clone().map(|i| Emitted {
                job: fed,
                name: i.name,
                sha256: i.sha256,
                size: i.size,
            });
            let of = input.map(|input| super::dispatch::Of::Input { planned, input });
            let r = d
                .run_job(super::dispatch::Dispatched {
                    run_id,
                    job: job.clone(),
                    of,
                    needs,
                    events,
                    cancel: stop,
                    feeds: Some(feeds.clone()),
                })
                .await;
            let emitted = feeds.take_emitted(&key);
            if let (Some(h), Some(c), Status::Success) = (&hooks, &check, r.status) {
                let files = d.files_of(&key);
                let on = RanOn::Worker {
                    files: files.as_deref(),
                };
                h.instance_done(&job, c, &emitted, on);
            }
            (key, Some(r))
        }
    }

    /// The instance for an emitted file, and whether it is up to date.
    #[allow(clippy::type_complexity)]
    fn instance(
        &self,
        e: Emitted,
    ) -> Result<(PlannedJob, Option<crate::fanout::InstanceCheck>), (String, String)> {
        let key = instance_key(&self.job.job_id, &e.name);
        let hash: Option<[u8; 32]> = hex::decode(&e.sha256)
            .ok()
            .and_then(|b| b.try_into().ok())
            // An instance that runs elsewhere gets its input from the
            // remote cache, not from this machine's store.
            .filter(|h| self.opts.dispatch.is_some() || self.feeds.cas.contains(h));
        let Some(hash) = hash else {
            return Err((
                key.clone(),
                format!("{key}: its input is no longer in the store (.trun/cas); run again with --force {}", self.job.job_id),
            ));
        };
        let path = self.feeds.cas.object_path(&hash);
        let job = instance_job(&self.job, e, path);
        let check = self
            .opts
            .hooks
            .as_ref()
            .and_then(|h| h.instance_check(&job));
        Ok((job, check))
    }

    /// An up-to-date instance: reported skipped, its earlier files sent on.
    fn report_up_to_date(
        &self,
        job: &PlannedJob,
        check: Option<crate::fanout::InstanceCheck>,
    ) -> Result<(), String> {
        let emitted = check.and_then(|c| c.up_to_date).unwrap_or_default();
        let at = now_ms();
        self.events.send(Event::JobStarted {
            job: job.key.clone(),
            at,
        });
        let mut sent = Ok(());
        // What it emitted is sent on as if its last step had emitted it
        // (the step that did is not recorded; the routes are the job's).
        if let Some(last) = job.steps.last() {
            if !emitted.is_empty() {
                sent = self.feeds.send(job, last, emitted).map(drop);
            }
        }
        for s in &job.steps {
            self.events.send(Event::StepFinished {
                job: job.key.clone(),
                step: s.index,
                status: Status::Skipped,
                exit_code: None,
                reason: Some("up to date".into()),
                attempt: 0,
                at,
                duration_ms: 0,
                outputs: BTreeMap::new(),
                continue_on_error: false,
                log_path: None,
            });
        }
        let (status, reason) = match &sent {
            Ok(()) => (Status::Success, None),
            Err(e) => (Status::Failure, Some(e.clone())),
        };
        self.events.send(Event::JobFinished {
            job: job.key.clone(),
            status,
            reason,
            at,
            duration_ms: 0,
            outputs: BTreeMap::new(),
        });
        sent
    }

    fn finish(
        &self,
        status: Status,
        reason: Option<String>,
        started: std::time::Instant,
    ) -> JobResult {
        self.events.send(Event::JobFinished {
            job: self.job.key.clone(),
            status,
            reason,
            at: now_ms(),
            duration_ms: started.elapsed().as_millis() as u64,
            outputs: BTreeMap::new(),
        });
        JobResult {
            status,
            outputs: BTreeMap::new(),
            forgiven: status == Status::Failure && self.job.continue_on_error,
        }
    }
}

/// The instance of the fed job `planned` that processes the emitted file
/// `e`, whose content is at `path` (`$TRUN_INPUT_FILE`).
pub fn instance_job(planned: &PlannedJob, e: Emitted, path: std::path::PathBuf) -> PlannedJob {
    let key = instance_key(&planned.job_id, &e.name);
    let mut job = planned.clone();
    if job.name == planned.key {
        job.name = key.clone();
    } else {
        job.name = format!("{} {}", job.name, key.trim_start_matches(&planned.job_id));
    }
    job.key = key;
    job.fed_by = Vec::new();
    job.input = Some(Input {
        name: e.name,
        sha256: e.sha256,
        size: e.size,
        path,
    });
    job
}
