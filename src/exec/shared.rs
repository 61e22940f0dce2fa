//! What the runs of one process share when several run at once (`trun
//! serve`): one `-j` limit for the jobs of every run, the rule that a job
//! of a workspace runs in one run at a time (two runs of `build` in the same
//! directory would write the same files at once), and the cancel switches of
//! running jobs, so a job with `cancel-in-progress` stops the holder of its
//! group in another run. (A holder in another process is not reached: it
//! keeps its slot until it ends.)
//!
//! A run started alone (`trun run`) has none of this: its `-j` is its own and
//! nothing else runs in its workspace (the workspace lock sees to that).
//!
//! The job lock is taken before the `-j` permit, so a job waiting for another
//! run's instance of itself never holds a permit that instance needs; the
//! holder, running, waits for nothing but its own steps.

use crate::event::{now_ms, Event};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{watch, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// The limits the runs of one process share.
pub struct SharedLimits {
    permits: Arc<Semaphore>,
    jobs: Mutex<HashMap<String, JobLock>>,
    /// Running jobs by run and key: their cancel switch.
    running: Mutex<HashMap<(i64, String), CancelSwitch>>,
}

/// A running job's cancel switch, while the job runs.
type CancelSwitch = Weak<watch::Sender<bool>>;

struct JobLock {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The run that holds it, for the waiting job's reason.
    holder: Arc<Mutex<i64>>,
}

/// A job's hold on its workspace's instance of itself; released when dropped.
pub struct JobHold {
    _guard: OwnedMutexGuard<()>,
}

impl SharedLimits {
    /// `jobs` at once across every run (at least 1).
    pub fn new(jobs: usize) -> SharedLimits {
        SharedLimits {
            permits: Arc::new(Semaphore::new(jobs.max(1))),
            jobs: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Job `key` of run `run_id` started; `cancel` stops it.
    pub fn job_started(&self, run_id: i64, key: &str, cancel: &Arc<watch::Sender<bool>>) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((run_id, key.to_string()), Arc::downgrade(cancel));
    }

    pub fn job_ended(&self, run_id: i64, key: &str) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(run_id, key.to_string()));
    }

    /// Cancels job `key` of run `run_id` if it runs in this process.
    pub fn cancel_job(&self, run_id: i64, key: &str) -> bool {
        let tx = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(run_id, key.to_string()))
            .and_then(Weak::upgrade);
        tx.is_some_and(|tx| tx.send(true).is_ok())
    }

    /// The `-j` permits every run of the process draws from.
    pub fn permits(&self) -> Arc<Semaphore> {
        self.permits.clone()
    }

    /// Holds job `key` of the workspace at `root` for run `run_id` if no
    /// other run holds it.
    pub fn try_hold_job(&self, root: &Path, key: &str, run_id: i64) -> Option<JobHold> {
        let (lock, holder) = self.job_lock(root, key);
        hold_now(lock, &holder, run_id)
    }

    fn job_lock(&self, root: &Path, key: &str) -> (Arc<tokio::sync::Mutex<()>>, Arc<Mutex<i64>>) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        // Locks nobody holds or waits for go (a holder's guard and a waiter
        // each keep a clone), so the map stays as small as what runs.
        jobs.retain(|_, l| Arc::strong_count(&l.lock) > 1);
        let l = jobs
            .entry(format!("{}\0{key}", root.display()))
            .or_insert_with(|| JobLock {
                lock: Arc::new(tokio::sync::Mutex::new(())),
                holder: Arc::new(Mutex::new(0)),
            });
        (l.lock.clone(), l.holder.clone())
    }

    /// Waits until no other run runs job `key` of the workspace at `root`,
    /// saying once why the job waits (`JobWaiting`); `None` when `cancel`
    /// turned true meanwhile.
    pub async fn hold_job(
        &self,
        root: &Path,
        key: &str,
        run_id: i64,
        events: &super::Events,
        cancel: &mut watch::Receiver<bool>,
    ) -> Option<JobHold> {
        let (lock, holder) = self.job_lock(root, key);
        if let Some(hold) = hold_now(lock.clone(), &holder, run_id) {
            return Some(hold);
        }
        let other = *holder.lock().unwrap_or_else(|p| p.into_inner());
        events.send(Event::JobWaiting {
            job: key.to_string(),
            reason: format!("{key} is running in run {other} (a job runs in one run at a time)"),
            at: now_ms(),
        });
        if *cancel.borrow() {
            return None;
        }
        tokio::select! {
            guard = lock.lock_owned() => {
                *holder.lock().unwrap_or_else(|p| p.into_inner()) = run_id;
                Some(JobHold { _guard: guard })
            }
            _ = cancel.wait_for(|c| *c) => None,
        }
    }
}

/// The job's lock for `run_id` if nobody holds it, naming the run as holder.
fn hold_now(
    lock: Arc<tokio::sync::Mutex<()>>,
    holder: &Mutex<i64>,
    run_id: i64,
) -> Option<JobHold> {
    let guard = lock.try_lock_owned().ok()?;
    *holder.lock().unwrap_or_else(|p| p.into_inner()) = run_id;
    Some(JobHold { _guard: guard })
}

/// Holds a leg's or an instance's job across runs before it takes its
/// permit, when the run shares limits; `Err` when cancelled while waiting.
pub async fn hold(
    runner: &super::job::JobRunner,
    cancel: &mut watch::Receiver<bool>,
) -> Result<Option<JobHold>, Cancelled> {
    let Some(shared) = &runner.opts.shared else {
        return Ok(None);
    };
    shared
        .hold_job(
            &runner.plan.root,
            &runner.job.key,
            runner.opts.run_id,
            &runner.events,
            cancel,
        )
        .await
        .map(Some)
        .ok_or(Cancelled)
}

/// A job was cancelled while it waited for its turn.
#[derive(Debug)]
pub struct Cancelled;

/// Runs a plain job (one that holds a `-j` permit taken by the scheduler)
/// once no other run runs it: while it waits, it gives its permit back and
/// takes one again when its turn comes. A job cancelled while it waits ends
/// `cancelled` without starting.
pub async fn run_held(
    shared: Option<Arc<SharedLimits>>,
    permit: Option<OwnedSemaphorePermit>,
    runner: super::job::JobRunner,
    mut cancel: watch::Receiver<bool>,
) -> super::job::JobResult {
    let Some(shared) = shared else {
        let r = runner.run(cancel).await;
        drop(permit);
        return r;
    };
    let (root, key, run_id) = (
        runner.plan.root.clone(),
        runner.job.key.clone(),
        runner.opts.run_id,
    );
    let mut permit = permit;
    let mut hold = shared.try_hold_job(&root, &key, run_id);
    if hold.is_none() {
        drop(permit.take());
        hold = shared
            .hold_job(&root, &key, run_id, &runner.events, &mut cancel)
            .await;
        if hold.is_some() {
            permit = tokio::select! {
                p = shared.permits().acquire_owned() => p.ok(),
                _ = cancel.wait_for(|c| *c) => None,
            };
        }
    }
    if hold.is_none() || permit.is_none() {
        super::finish_unstarted(
            &runner.events,
            &key,
            crate::event::Status::Cancelled,
            "cancelled",
        );
        return super::job::JobResult {
            status: crate::event::Status::Cancelled,
            outputs: Default::default(),
            forgiven: false,
        };
    }
    let r = runner.run(cancel).await;
    drop(permit);
    drop(hold);
    r
}
