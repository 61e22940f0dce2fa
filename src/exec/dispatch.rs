//! Running a job somewhere else: the seam where the engine, instead of
//! running a plain job's steps in this process ([`super::job::JobRunner`]),
//! hands it to a [`Dispatch`] (`trun run --dispatch` queues it for `trun
//! worker`s in PostgreSQL, `crate::worker::Dispatcher`). The scheduler stays
//! the one here: needs, `if`, concurrency slots, `-j` and cancellation are
//! decided before a job is dispatched, exactly as for a local job.

use super::job::JobResult;
use super::Events;
use crate::plan::PlannedJob;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use tokio::sync::watch;

/// A job's result, later.
pub type Pending = Pin<Box<dyn Future<Output = JobResult> + Send>>;

pub trait Dispatch: Send + Sync {
    /// Runs `job` elsewhere and resolves to how it ended. `job` is a job of
    /// the plan, or a leg of one whose matrix an earlier job computed
    /// (`leg`: the planned job's key, and the leg's matrix values). `needs`
    /// holds the outputs of each job it needs, by job key. The dispatcher
    /// sends the job's `JobStarted` and `JobFinished` on `events`; whoever
    /// runs its steps records them. `cancel` turns true when the job must
    /// stop.
    fn run_job(
        &self,
        run_id: i64,
        job: &PlannedJob,
        leg: Option<(&str, &serde_json::Map<String, serde_json::Value>)>,
        needs: BTreeMap<String, BTreeMap<String, String>>,
        events: Events,
        cancel: watch::Receiver<bool>,
    ) -> Pending;
}
