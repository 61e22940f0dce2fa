//! Running a job somewhere else: the seam where the engine, instead of
//! running a plain job's steps in this process ([`super::job::JobRunner`]),
//! hands it to a [`Dispatch`] (`trun run --dispatch` queues it for `trun
//! worker`s in PostgreSQL, `crate::worker::Dispatcher`). The scheduler stays
//! the one here: needs, `if`, concurrency slots, `-j`, the legs of a computed
//! matrix, the instances of a fed job and cancellation are decided before a
//! job is dispatched, exactly as for a local job.

use super::fanout::Feeds;
use super::job::JobResult;
use super::Events;
use crate::fanout::Emitted;
use crate::plan::PlannedJob;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// A job's result, later.
pub type Pending = Pin<Box<dyn Future<Output = JobResult> + Send>>;

/// What a job that is not in the plan as such was made from: whoever runs it
/// makes it again from the planned job the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Of {
    /// A leg of `planned`, whose matrix an earlier job computed.
    Leg {
        planned: String,
        matrix: serde_json::Map<String, serde_json::Value>,
    },
    /// The instance of the fed job `planned` for one emitted file.
    Input { planned: String, input: Emitted },
}

impl Of {
    /// The key of the planned job this one was made from.
    pub fn planned(&self) -> &str {
        match self {
            Of::Leg { planned, .. } | Of::Input { planned, .. } => planned,
        }
    }
}

/// One job to run elsewhere.
pub struct Dispatched {
    pub run_id: i64,
    pub job: PlannedJob,
    /// `None`: `job` is a job of the plan.
    pub of: Option<Of>,
    /// The outputs of each job it needs, by job key.
    pub needs: BTreeMap<String, BTreeMap<String, String>>,
    /// Where the job's `JobStarted` and `JobFinished` go; whoever runs its
    /// steps records those.
    pub events: Events,
    /// Turns true when the job must stop.
    pub cancel: watch::Receiver<bool>,
    /// Where the files its steps emit for fed jobs go (`None`: the workflow
    /// has no fed job).
    pub feeds: Option<Arc<Feeds>>,
}

/// Holds a leg's or an instance's `max-parallel` slot (`width`), then one
/// of the run's `-j` slots, while it runs elsewhere; `None` when stopped
/// first.
pub async fn hold_slots(
    width: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    stop: &watch::Receiver<bool>,
) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
    let width = width.acquire_owned().await.ok()?;
    let slot = slots.acquire_owned().await.ok()?;
    (!*stop.borrow()).then_some((width, slot))
}

pub trait Dispatch: Send + Sync {
    /// Runs the job elsewhere and resolves to how it ended, after the files
    /// it emitted have been sent to their feeds.
    fn run_job(&self, job: Dispatched) -> Pending;

    /// The manifest (`hash/size`, in the remote cache) of the files the
    /// finished job `key` wrote, if any.
    fn files_of(&self, key: &str) -> Option<String>;

    /// An instance of the fed job `planned` is up to date: the files it wrote
    /// when it last ran (`files`, a manifest) count as written in this run.
    fn wrote_earlier(&self, planned: &str, files: &str);
}
