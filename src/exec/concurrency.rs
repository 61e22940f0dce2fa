//! Concurrency groups as the engine sees them: before a job with
//! `concurrency` starts, it takes a slot of its group (the group's expression
//! rendered with the job's context); a job whose group is full waits
//! (`waiting`, with the group and its holders as the reason) and the
//! scheduler tries again when a job ends or after [`POLL`]. The slots are in
//! the state store ([`Store::claim_slot`]), so the limit holds across runs
//! and processes; the engine itself only asks.
//!
//! It does not order waiting jobs fairly across processes (whoever asks
//! first after a slot frees gets it) and it does not cancel jobs of other
//! runs: `cancel-in-progress` cancels the holders in this run, and the
//! server cancels whole runs of a workflow-level group.

use crate::state::{Claim, Store};
use std::sync::Arc;
use std::time::Duration;

/// How often a job waiting for a slot that another run holds asks again.
pub const POLL: Duration = Duration::from_millis(200);

/// Where the slots live.
pub trait Slots: Send + Sync {
    /// Takes a slot of `group` (at most `max` holders) for job `holder` of
    /// run `run_id`; the holders when the group is full.
    fn claim(&self, group: &str, max: u32, run_id: i64, holder: &str) -> Result<Claim, String>;
    /// Gives back job `holder`'s slots (all of the run's with `None`).
    fn release(&self, run_id: i64, holder: Option<&str>);
}

/// The slots in the state store, shared with the process's other writers.
pub struct StoreSlots(pub Arc<dyn Store>);

impl Slots for StoreSlots {
    fn claim(&self, group: &str, max: u32, run_id: i64, holder: &str) -> Result<Claim, String> {
        self.0
            .claim_slot(group, max, run_id, holder)
            .map_err(|e| e.to_string())
    }

    fn release(&self, run_id: i64, holder: Option<&str>) {
        let _ = self.0.release_slots(run_id, holder);
    }
}

/// The reason a job waits, as recorded and shown: the group, its limit and
/// who holds it (`job` of this run, `run 12 job` of another, `run 12` for
/// a whole run holding a workflow-level group).
pub fn waiting_reason(group: &str, max: u32, run_id: i64, holders: &[(i64, String)]) -> String {
    let held: Vec<String> = holders
        .iter()
        .map(|(r, h)| {
            if h.is_empty() {
                // A workflow-level group: the whole run holds it.
                format!("run {r}")
            } else if *r == run_id {
                h.clone()
            } else {
                format!("run {r} {h}")
            }
        })
        .collect();
    format!(
        "concurrency group `{group}` is full ({max} running: {})",
        held.join(", ")
    )
}
