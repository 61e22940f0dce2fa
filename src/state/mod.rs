//! The state store: the one place trun persists anything. Runs, jobs, steps and
//! attempts; the queries behind `trun history`, `show` and `logs`; definition
//! versions, successes and their outputs for the up-to-date engine; the small
//! memory of built-in actions; stored grading results.
//!
//! [`Store`] is the interface, in plain Rust types, so that a second backend
//! (PostgreSQL, for many machines) can sit behind it; [`SqliteStore`] is the
//! embedded one, `<workspace>/.trun/state.db`, one connection per process, one
//! migration list for every table. Callers share one store as
//! `Arc<dyn Store>` (or `Arc<SqliteStore>`): the recorder, the up-to-date engine,
//! action memory and grading all write through the same connection.
//!
//! The engine does not call the store: it emits [`Event`]s, and the
//! [`Recorder`] turns them into rows in batches. The store is not a log store
//! (step output lives in files under `.trun/logs/`; the store keeps their paths)
//! and it decides nothing (up-to-date checks, retries and cancellation belong to
//! the engine). The stat cache ([`StatCache`]) is a machine-local cache, a
//! separate trait: file paths and inode numbers mean nothing on another machine.
//!
//! A run whose process died without finishing (SIGKILL, power loss) stays
//! `running`; [`Store::mark_interrupted`] (run by [`SqliteStore::open`]) notices
//! that its process is gone and marks it `interrupted`, so a killed run never
//! blocks or confuses the next.

mod postgres;
mod process;
mod recorder;
mod records;
mod sqlite;
pub mod transition;
mod webhooks;

pub use postgres::{
    is_postgres_url, redact_url, Claimed, JobQueue, Listener, PostgresStore, QueuedJob, WorkerInfo,
    DONE_CHANNEL, JOBS_CHANNEL, MAX_ATTEMPTS,
};
pub use recorder::{Finished, Recorder, RecorderHandle, Tap};
pub use records::{
    AttemptDetail, Claim, DefinitionRecord, DefinitionRef, GradeRecord, Hash, JobDetail,
    NewSuccess, OutputRecord, PrunedSuccesses, Queued, Retry, RunDetail, RunSummary, ServerRun,
    StatRecord, StepDetail, StepState, SuccessRef,
};
pub use sqlite::SqliteStore;
pub use transition::{Illegal, Transition};
pub use webhooks::{
    NewWebhookDelivery, WebhookAttempt, WebhookDelivery, WebhookDeliveryRecord, WebhookNext,
};

use crate::event::{Event, JobInfo, Status};
use std::path::{Path, PathBuf};

/// The environment variable that names a shared database (PostgreSQL) when
/// `--db` is not given.
pub const DATABASE_URL_ENV: &str = "TRUN_DATABASE_URL";

/// Opens the shared store `url` names (`postgres://…` or `postgresql://…`).
/// Without a URL a workspace uses its SQLite file ([`db_path`]); the stat
/// cache, the workspace lock and the CAS stay in the workspace either way.
pub fn open_store(url: &str) -> Result<Box<dyn Store>> {
    if !is_postgres_url(url) {
        return Err(StateError::Corrupt(format!(
            "--db takes a postgres://user@host:port/database URL, not {:?}",
            if url.contains('@') {
                "(a URL with credentials)".to_string()
            } else {
                url.to_string()
            }
        )));
    }
    Ok(Box::new(PostgresStore::open(url)?))
}

/// A command-line word with any PostgreSQL URL in it stripped of its
/// password (`--db=postgres://u:p@h/db`, or the URL alone), so the command line
/// recorded with a run and shown to a waiting trun never holds it.
pub fn redact_arg(word: &str) -> String {
    match word.split_once('=') {
        Some((flag, url)) if flag.starts_with("--") && is_postgres_url(url) => {
            format!("{flag}={}", redact_url(url))
        }
        _ if is_postgres_url(word) => redact_url(word),
        _ => word.to_string(),
    }
}

/// Where the state database of a workspace lives.
pub fn db_path(workspace: &Path) -> PathBuf {
    workspace.join(".trun").join("state.db")
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the state database {}: {source}", path.display())]
    Open { path: PathBuf, source: BackendError },
    /// The database file was deleted or replaced while a run wrote to it.
    #[error("{} was removed or replaced during the run; run {run_id} was not recorded", path.display())]
    Lost { path: PathBuf, run_id: i64 },
    /// The file is there but is not a database (or is damaged beyond reading).
    #[error(
        "the state database {} is damaged ({source}); trun's history and up-to-date records \
         are in it. Move it aside (mv {0} {0}.broken) to start a fresh history; \
         every step then runs once again",
        path.display()
    )]
    Corrupted { path: PathBuf, source: BackendError },
    #[error(
        "the state database {} has schema version {found}, but this trun knows versions up to {known}: \
         it was written by a newer trun. Use that trun, or move the file aside to start a fresh history",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// The backend's own error (SQLite's, PostgreSQL's), kept whole.
    #[error("state database: {0}")]
    Backend(BackendError),
    #[error("state database holds an unreadable value: {0}")]
    Corrupt(String),
    #[error("no run {0} in the state database: begin_run must come before recording its events")]
    NoSuchRun(i64),
    #[error("cannot start the state recorder thread: {0}")]
    Thread(std::io::Error),
    #[error("the state recorder thread panicked; the run's record may be incomplete")]
    RecorderPanicked,
}

pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// An artifact a job of a run uploaded (`actions/upload-artifact`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Artifact {
    pub run_id: i64,
    pub name: String,
    /// The job (instance key) that uploaded it.
    pub job: String,
    pub files: i64,
    pub bytes: i64,
    /// sha256 of the manifest: what the artifact holds, as one value.
    pub digest: String,
    /// JSON list of `{path, hash, mode, size}`; the bytes are CAS objects.
    #[serde(skip)]
    pub manifest: String,
    pub created_at: i64,
}

/// An error of the database library behind a [`Store`]; the backend converts
/// its errors into [`StateError::Backend`] so no caller depends on it.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// Everything trun persists, behind one interface. Every method takes `&self`:
/// an implementation serialises access itself, so one instance serves the
/// recorder thread, the engine's hooks and the planner at once.
pub trait Store: Send + Sync {
    /// Where the store lives, for messages (a file path, a URL without secrets).
    fn location(&self) -> String;

    // ---- runs -------------------------------------------------------------

    /// Records the start of a run with every job and step of its plan pending,
    /// in one transaction, and returns the run's id.
    fn begin_run(
        &self,
        workflow_name: &str,
        workflow_path: &str,
        args: &[String],
        jobs: &[JobInfo],
    ) -> Result<i64>;

    /// Applies a batch of a run's events in one transaction. `StepOutput` is
    /// ignored: output goes to log files, not to the database.
    fn record(&self, run_id: i64, events: &[Event]) -> Result<()>;

    /// Sets a run's status from outside its recording process (`trun cancel`,
    /// Ctrl-C). A final status also closes the run's unfinished jobs and steps.
    /// Returns false when there is no such run.
    fn mark_run(&self, run_id: i64, status: Status) -> Result<bool>;

    /// Marks as interrupted every run that says it is running but whose
    /// process on this host is gone (or is a different process reusing its
    /// pid). Returns how many runs it marked.
    fn mark_interrupted(&self) -> Result<usize>;

    /// Which version of its definition produced each step's result:
    /// (job key, step index, version), in one transaction.
    fn set_definition_versions(&self, run_id: i64, versions: &[(String, usize, u32)])
        -> Result<()>;

    /// The most recent runs, newest first.
    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>>;

    fn latest_run_id(&self) -> Result<Option<i64>>;

    /// Everything recorded about one run, jobs in plan order, steps in order.
    fn run(&self, run_id: i64) -> Result<Option<RunDetail>>;

    // ---- run control (`trun serve`) -------------------------------------------

    /// Records a run created over the API: the run `queued` with every job and
    /// step of its plan pending (as [`Store::begin_run`] does) and `server`
    /// (whose `run_id` and `status` are ignored), in one transaction. When
    /// `server` has an idempotency key some run already holds, nothing is
    /// written and that run comes back as [`Queued::Existing`].
    fn queue_run(
        &self,
        workflow_name: &str,
        workflow_path: &str,
        args: &[String],
        jobs: &[JobInfo],
        server: &ServerRun,
    ) -> Result<Queued>;

    /// Every run created over the API, oldest first, with its status now.
    fn server_runs(&self) -> Result<Vec<ServerRun>>;

    /// Moves a run to `to` if [`transition::check`] allows it from its status
    /// now, recording the transition with `reason`, in one transaction;
    /// returns the status it left, or why it may not. `queued` → `running`
    /// also records this process as the run's owner (as `begin_run` does);
    /// a final status closes the run's unfinished jobs and steps.
    fn transition_run(
        &self,
        run_id: i64,
        to: Status,
        reason: &str,
    ) -> Result<std::result::Result<Status, Illegal>>;

    /// Queues a finished run that did not succeed again, as a new attempt of
    /// the same run (checked by [`transition::check`], recorded with
    /// `reason`): its jobs that did not succeed, and their steps, go back to
    /// `pending`; the jobs that succeeded are kept. One transaction.
    fn retry_run(&self, run_id: i64, reason: &str) -> Result<std::result::Result<Retry, Illegal>>;

    /// Takes one of the `max` slots of concurrency group `group` for
    /// `holder` (a job key) of run `run_id`, in one write transaction, so the
    /// limit holds across processes sharing the store. Slots of runs that
    /// have finished are free. Holding a slot already is a claim.
    fn claim_slot(&self, group: &str, max: u32, run_id: i64, holder: &str) -> Result<Claim>;

    /// Gives back `holder`'s slots of run `run_id` (every slot of the run
    /// when `holder` is `None`).
    fn release_slots(&self, run_id: i64, holder: Option<&str>) -> Result<()>;

    /// Every recorded status change of a run and its jobs, in order.
    fn transitions(&self, run_id: i64) -> Result<Vec<Transition>>;

    // ---- small values -------------------------------------------------------

    /// A small value remembered between runs (when an image was last pulled,
    /// a step's outputs by fingerprint), by namespace and key.
    fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>>;

    fn kv_set(&self, namespace: &str, key: &str, value: &str) -> Result<()>;

    /// [`Store::kv_get`] of each of `keys`, aligned with them; in one read
    /// where the store can.
    fn kv_get_many(&self, namespace: &str, keys: &[String]) -> Result<Vec<Option<String>>> {
        keys.iter().map(|k| self.kv_get(namespace, k)).collect()
    }

    /// The most recently set `(key, value)` of `namespace` whose key starts with
    /// `prefix` (byte-wise, no pattern characters): `actions/cache`'s `restore-keys`.
    fn kv_newest_with_prefix(
        &self,
        namespace: &str,
        prefix: &str,
    ) -> Result<Option<(String, String)>>;

    // ---- artifacts ------------------------------------------------------------

    /// Records an artifact of a run, replacing one of the same name (the uploader
    /// decides whether that is allowed).
    fn artifact_put(&self, artifact: &Artifact) -> Result<()>;

    /// A run's artifacts, by name.
    fn artifacts(&self, run_id: i64) -> Result<Vec<Artifact>>;

    // ---- up to date -----------------------------------------------------------

    /// The newest definition and the last success of a step, in one read:
    /// this runs once per step per check.
    fn step_state(&self, step_key: &str) -> Result<StepState>;

    /// [`Store::step_state`] of each of `keys`, with the `generates` of its
    /// last success ([`Store::success_outputs`]), aligned with `keys`. A run
    /// asks this once for every step of its plan: where the store can, it
    /// answers in one read, not two queries per step.
    fn step_states(&self, keys: &[&str]) -> Result<Vec<(StepState, Vec<OutputRecord>)>> {
        keys.iter()
            .map(|k| {
                let state = self.step_state(k)?;
                let outputs = match &state.last_success {
                    Some(last) => self.success_outputs(last.id)?,
                    None => Vec::new(),
                };
                Ok((state, outputs))
            })
            .collect()
    }

    /// The newest recorded definition of a step.
    fn latest_definition(&self, step_key: &str) -> Result<Option<DefinitionRef>>;

    /// Every recorded version of a step's definition, oldest first.
    fn definition_history(&self, step_key: &str) -> Result<Vec<DefinitionRecord>>;

    /// The encoded source list recorded with a success.
    fn success_sources(&self, success_id: i64) -> Result<Option<Vec<u8>>>;

    /// The `generates` files recorded with a success, sorted by path.
    fn success_outputs(&self, success_id: i64) -> Result<Vec<OutputRecord>>;

    /// Successes of a step with exactly this fingerprint, newest first.
    fn successes_with_fingerprint(&self, step_key: &str, fingerprint: &Hash) -> Result<Vec<i64>>;

    /// Makes a success the one the step is up to date against (a restore).
    fn set_latest_success(&self, step_key: &str, success_id: i64) -> Result<()>;

    /// Records a success with its outputs and makes it the step's latest, in
    /// one transaction. Returns the definition version it was recorded under.
    fn record_success(&self, success: &NewSuccess<'_>) -> Result<u32>;

    /// (recorded successes, distinct steps they belong to).
    fn success_counts(&self) -> Result<(usize, usize)>;

    /// Forgets successes beyond the `keep` newest per step and/or created
    /// before `created_before_ns`; a step's latest success is always kept.
    fn prune_successes(
        &self,
        keep: Option<usize>,
        created_before_ns: Option<i64>,
    ) -> Result<PrunedSuccesses>;

    // ---- grading ----------------------------------------------------------------

    /// The stored result of grading `repo` under `rubric` (both keys chosen by
    /// the grader), whatever fingerprint it was graded under.
    fn grade_result(&self, repo: &str, rubric: &str) -> Result<Option<GradeRecord>>;

    /// Stores a result as the latest for `repo` under `rubric`.
    fn set_grade_result(&self, repo: &str, rubric: &str, record: &GradeRecord) -> Result<()>;

    // ---- webhook outbox (`trun serve`) ----------------------------------------

    /// Puts deliveries in the outbox, in one transaction.
    fn enqueue_webhooks(&self, deliveries: &[NewWebhookDelivery]) -> Result<()>;

    /// Claims up to `limit` deliveries due at `now` (ms) until `lease_until`:
    /// no other claim gets them before then, and after it (the claimer died)
    /// anyone may claim them again.
    fn claim_webhooks(
        &self,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>>;

    /// Records an attempt of a claimed delivery and what comes next.
    fn record_webhook_attempt(
        &self,
        id: i64,
        attempt: &WebhookAttempt,
        next: WebhookNext,
    ) -> Result<()>;

    /// The deliveries of one run (by the server's run id), oldest first, each
    /// with its attempts.
    fn webhook_deliveries(&self, run_ref: &str) -> Result<Vec<WebhookDeliveryRecord>>;
}

/// The up-to-date engine's machine-local stat cache: for each file hashed, the
/// stat it had and its content hash, so an unchanged file is not read again.
/// Keys are absolute paths on this machine.
pub trait StatCache: Send + Sync {
    /// The rows for `files`, all below `dir` and sorted by path bytes, aligned
    /// with `files` (`None` where there is no row). One range read: this is
    /// what a no-op over ten thousand files costs.
    fn stats_under(&self, dir: &Path, files: &[&Path]) -> Result<Vec<Option<StatRecord>>>;

    /// The rows for arbitrary files, aligned with `files`.
    fn stats_of(&self, files: &[&Path]) -> Result<Vec<Option<StatRecord>>>;

    /// Writes (replacing) rows, in one transaction.
    fn store_stats(&self, rows: &[(&Path, StatRecord)]) -> Result<()>;

    /// The walk records (see `uptodate::walkcache`) kept for these walked
    /// directories, aligned with `dirs`; opaque bytes to the store.
    fn walk_records(&self, dirs: &[&Path]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Writes (replacing) walk records, in one transaction.
    fn store_walk_records(&self, records: &[(&Path, Vec<u8>)]) -> Result<()>;
}

/// `outputs` of jobs and steps are stored as a JSON object.
fn outputs_from_json(text: &str) -> Result<std::collections::BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|e| StateError::Corrupt(format!("outputs {text:?}: {e}")))
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| StateError::Corrupt(format!("cannot encode JSON: {e}")))
}

#[cfg(test)]
mod tests;
