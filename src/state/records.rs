//! What the store hands back: plain serializable structs for the rows `trun
//! history`, `show` and `logs` read, and for what the up-to-date engine and
//! grading keep. No SQL here: every backend returns these same types.

use crate::event::{Millis, Status};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// One line of `trun history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunSummary {
    pub id: i64,
    pub workflow: String,
    pub workflow_path: String,
    /// The command line that started the run.
    pub args: Vec<String>,
    pub status: Status,
    /// Milliseconds since the Unix epoch.
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
    pub duration_ms: Option<u64>,
    pub pid: i64,
    pub host: String,
}

/// Everything recorded about one run, jobs in plan order, steps in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunSummary,
    pub jobs: Vec<JobDetail>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobDetail {
    pub key: String,
    pub job_id: String,
    pub name: String,
    pub matrix: BTreeMap<String, serde_json::Value>,
    pub needs: Vec<String>,
    pub status: Status,
    pub reason: Option<String>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub duration_ms: Option<u64>,
    pub outputs: BTreeMap<String, String>,
    pub steps: Vec<StepDetail>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepDetail {
    pub index: usize,
    pub id: String,
    pub name: String,
    pub status: Status,
    /// Why it ended this way; `up to date` for a step skipped by its fingerprint.
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub duration_ms: Option<u64>,
    pub outputs: BTreeMap<String, String>,
    pub log_path: Option<String>,
    pub continue_on_error: bool,
    /// The version of the step's definition this result came from (steps
    /// with `sources` only; a new version is a tainted step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition_version: Option<u32>,
    pub attempts: Vec<AttemptDetail>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptDetail {
    pub attempt: u32,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub reason: Option<String>,
}

/// A SHA-256 digest: a file's content, a definition, a fingerprint.
pub type Hash = [u8; 32];

/// The newest recorded definition of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefinitionRef {
    pub version: u32,
    pub hash: Hash,
}

/// One version of a step's definition, as `trun show` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionRecord {
    pub version: u32,
    /// The canonical JSON of the definition.
    pub definition: String,
    pub recorded_at_ns: i64,
}

/// The success a step is up to date against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuccessRef {
    pub id: i64,
    pub fingerprint: Hash,
    pub def_hash: Hash,
    pub def_version: u32,
}

/// What the up-to-date check of one step reads, in one round trip: the newest
/// definition and the last success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepState {
    pub definition: Option<DefinitionRef>,
    pub last_success: Option<SuccessRef>,
}

/// One `generates` file recorded with a success (its content is in the CAS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// Relative to the workspace, `/`-separated.
    pub path: String,
    pub hash: Hash,
    pub mode: u32,
    pub size: u64,
}

/// A success to record. The store gives the definition a new version when
/// `def_hash` differs from the newest recorded one, in the same transaction.
#[derive(Debug, Clone)]
pub struct NewSuccess<'a> {
    pub step_key: &'a str,
    pub run_id: i64,
    pub fingerprint: Hash,
    pub def_hash: Hash,
    /// Canonical JSON of the definition, kept for `trun show`.
    pub definition: &'a str,
    pub created_ns: i64,
    /// The encoded (path, hash) list of the sources, to name changed files later.
    pub sources: &'a [u8],
    pub outputs: &'a [OutputRecord],
}

/// What [`Store::prune_successes`](super::Store::prune_successes) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunedSuccesses {
    pub removed: usize,
    /// Content hashes the remaining successes still refer to: the CAS objects to keep.
    pub referenced: HashSet<Hash>,
}

/// One file's stat-cache row: the stat it had when it was hashed, and the hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatRecord {
    pub size: u64,
    pub mtime_ns: i64,
    pub ino: u64,
    pub ctime_ns: i64,
    pub hash: Hash,
    /// When the row was written (ns since the epoch): a row is only trusted
    /// for a file last changed in an earlier second.
    pub written_ns: i64,
}

/// A stored grading result of one repository under one rubric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradeRecord {
    /// The grading fingerprint the result was computed under.
    pub fingerprint: String,
    /// The result, as JSON (the grade module's `RepoResult`).
    pub result: String,
    /// Milliseconds since the epoch.
    pub graded_at: i64,
}

/// A run created over the API (`trun serve`), as the store keeps it: enough
/// to plan it again after a restart, and its idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerRun {
    /// The API's id of the run.
    pub id: String,
    /// The run's id in the store (`trun show ID`).
    pub run_id: i64,
    /// The create request as the server reads it back (JSON).
    pub request: String,
    pub idempotency_key: Option<String>,
    /// The hash of the request body the key was first used with.
    pub body_hash: Option<Vec<u8>>,
    pub created_at: Millis,
    /// The run's status now (from its run record).
    pub status: Status,
}

/// Whether [`Store::queue_run`](super::Store::queue_run) made a run or found
/// the one its idempotency key made before.
#[derive(Debug, Clone, PartialEq)]
pub enum Queued {
    New(ServerRun),
    Existing(ServerRun),
}

/// What [`Store::retry_run`](super::Store::retry_run) made of a finished run:
/// its new attempt number and the jobs it keeps (those that succeeded), with
/// their outputs, which the jobs that run again may need.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Retry {
    pub attempt: u32,
    pub kept: BTreeMap<String, BTreeMap<String, String>>,
}

/// What [`Store::claim_slot`](super::Store::claim_slot) found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller holds a slot of the group now (or already did).
    Claimed,
    /// The group is full: these (run id, holder) hold its slots, oldest first.
    Full(Vec<(i64, String)>),
}
