//! The server's runs: a table of every run created over the API, a queue of
//! those waiting, and the dispatcher that starts them, in order, each on its
//! own thread through the workspace's one [`Session`] (which holds the
//! workspace lock for the server's life, so a run never shares the workspace
//! with another trun). Up to `--max-runs` runs go at once; their jobs share
//! one `-j` and a job runs in one run at a time ([`SharedLimits`]). A run
//! whose workflow-level `concurrency` group is full stays queued, `waiting`
//! with the reason, and the dispatcher starts the runs behind it that can go.
//!
//! A run is recorded in the store when it is created (`queued`, with its
//! request, so a restarted server plans it again and runs it), then runs
//! through the engine. Its status changes go through the store's one
//! transition rule ([`crate::state::transition`]) and are recorded there:
//! `queued → running`, `running ⇄ paused` (pause, resume; advance and
//! `max_steps` open the engine's [`Gate`] for that many steps, and it closes
//! by itself), and the final status. An illegal change is a 409. This table
//! only adds what the store cannot keep: the queue in order, the live event
//! log for SSE, the gate and the cancel switch of each running run.

use super::error::ApiError;
use super::events::{EventLog, LogReporter};
use super::load::{self, Source};
use super::metrics::{Metrics, MetricsReporter};
use super::sources::{self, GitSource};
use crate::event::{now_ms, Millis, Status};
use crate::exec::concurrency::{waiting_reason, POLL};
use crate::exec::gate::{Budget, Gate};
use crate::exec::shared::SharedLimits;
use crate::plan::{Plan, Request};
use crate::session::{QueuedRun, RunConfig, Session, StepHooksChoice};
use crate::state::{transition, Claim, Illegal, Queued, ServerRun, Store};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Finished runs beyond this many are forgotten by the table (oldest first);
/// their record stays in the store.
const MAX_KEPT_RUNS: usize = 1000;
/// Finished runs beyond this many (newest first) no longer keep their SSE
/// event log in memory.
const MAX_KEPT_EVENT_LOGS: usize = 50;

/// What a client sees of a run besides its store record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: String,
    pub status: Status,
    pub url: String,
    pub workflow: String,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// The run's id in the store (`trun show ID`).
    pub store_run_id: Option<i64>,
    /// 1, and one more for each retry.
    pub attempt: u32,
    /// Why the run could not run at all (the session refused it).
    pub error: Option<String>,
    /// The git repository, ref and commit the run ran from, when it came
    /// from one (`workflow` is then a path in that repository).
    pub git: Option<GitSource>,
}

struct EntryState {
    status: Status,
    started_at: Option<Millis>,
    finished_at: Option<Millis>,
    error: Option<String>,
    /// How many of the run's recorded transitions the metrics have counted.
    counted_transitions: usize,
}

pub struct RunEntry {
    pub id: String,
    workflow: String,
    created_at: Millis,
    /// The run's id in the store.
    pub run_id: i64,
    state: Mutex<EntryState>,
    pub log: Arc<EventLog>,
    cancel: watch::Sender<bool>,
    /// Taken by the worker when the run starts.
    plan: Mutex<Option<Plan>>,
    /// Pause, resume, advance, `max_steps`: consulted by the engine before each step.
    gate: Arc<Gate>,
    /// The create request as stored, to plan the run again for a retry.
    request: String,
    /// The attempt the worker starts next, and the jobs it keeps.
    next: Mutex<QueuedRun>,
    /// The workflow's concurrency group, rendered with the run's inputs.
    group: Option<String>,
    /// Where the run's workflow came from, when it is a git repository.
    git: Option<GitSource>,
}

impl RunEntry {
    fn state(&self) -> MutexGuard<'_, EntryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn view(&self) -> RunView {
        let s = self.state();
        RunView {
            id: self.id.clone(),
            status: s.status,
            url: format!("/api/v1/runs/{}", self.id),
            workflow: self.workflow.clone(),
            created_at: self.created_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
            store_run_id: Some(self.run_id),
            attempt: self.next.lock().unwrap_or_else(|p| p.into_inner()).attempt,
            error: s.error.clone(),
            git: self.git.clone(),
        }
    }

    pub fn store_run_id(&self) -> Option<i64> {
        Some(self.run_id)
    }

    pub fn status(&self) -> Status {
        self.state().status
    }
}

#[derive(Default)]
struct Table {
    by_id: HashMap<String, Arc<RunEntry>>,
    /// Creation order.
    order: Vec<String>,
    queue: VecDeque<String>,
    /// Runs executing now (each on its own thread).
    active: usize,
    shutting_down: bool,
}

/// A create-run request, already parsed.
pub struct NewRun<'a> {
    /// With `git`, a [`Source::Path`] names the workflow file in the repository.
    pub source: Source<'a>,
    /// The repository's URL and the ref to run.
    pub git: Option<(&'a str, &'a str)>,
    pub request: Request,
    pub idempotency: Option<(String, [u8; 32])>,
}

/// A run's request as the store keeps it, to plan the run again after a restart.
#[derive(Serialize, Deserialize)]
struct StoredRequest {
    workflow: Option<String>,
    yaml: Option<String>,
    jobs: Vec<String>,
    inputs: Vec<(String, String)>,
    /// With it, `workflow` is a path in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    git: Option<GitSource>,
}

impl StoredRequest {
    fn request(&self) -> Request {
        Request {
            jobs: self.jobs.clone(),
            inputs: self.inputs.clone(),
        }
    }

    /// The `trun show` command line of a git run: where it came from.
    fn args(&self) -> Vec<String> {
        match &self.git {
            Some(g) => vec![
                "--git".into(),
                crate::git_source::redacted(&g.url),
                "--ref".into(),
                g.reference.clone(),
                "--commit".into(),
                g.commit.clone(),
            ],
            None => Vec::new(),
        }
    }
}

/// What a client asks of a run besides cancel.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    Pause,
    Resume,
    /// Run this many more steps, then pause (`advance` is 1).
    Steps(u64),
}

pub struct Runs {
    table: Mutex<Table>,
    wake: Condvar,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    pub root: PathBuf,
    /// Jobs at once across every run (`-j`).
    parallel: usize,
    /// Runs at once (`--max-runs`).
    max_runs: usize,
    /// The `-j` every run draws from, and a job in one run at a time.
    shared: Arc<SharedLimits>,
    /// `--no-local-exec`: where every job goes instead (set once when the
    /// server starts).
    pub workers: std::sync::OnceLock<Workers>,
    /// `--remote-cache`: where workers' step logs are (set once at start).
    pub remote_cache: std::sync::OnceLock<Arc<crate::cache::RemoteCache>>,
    /// Where runs' webhook deliveries go (set once when the server starts).
    pub webhooks: std::sync::OnceLock<Arc<super::webhooks::Webhooks>>,
    /// How long the running run's steps may take to finish after SIGTERM.
    grace: Duration,
}

/// Why the server did not run a run to its end.
enum RunError {
    /// It could not run, or its run went wrong: recorded `failure`.
    Failed(String),
    /// Another server started it first: nothing is recorded here.
    Elsewhere(String),
}

impl From<String> for RunError {
    fn from(e: String) -> RunError {
        RunError::Failed(e)
    }
}

/// `trun worker`s: the PostgreSQL database they claim jobs from and the
/// cache the root's snapshot goes to.
pub struct Workers {
    pub db: String,
    pub cache: Arc<crate::cache::RemoteCache>,
}

fn conflict(id: &str, e: &Illegal) -> ApiError {
    let code = if e.from.is_final() {
        "run_finished"
    } else {
        "illegal_transition"
    };
    ApiError::new(StatusCode::CONFLICT, code, format!("run {id}: {e}"))
}

fn store_error(e: crate::state::StateError) -> ApiError {
    ApiError::internal(e.to_string())
}

impl Runs {
    pub fn new(
        store: Arc<dyn Store>,
        root: PathBuf,
        parallel: usize,
        max_runs: usize,
        metrics: Arc<Metrics>,
        grace: Duration,
    ) -> Runs {
        Runs {
            table: Mutex::new(Table::default()),
            wake: Condvar::new(),
            metrics,
            store,
            root,
            parallel,
            max_runs: max_runs.max(1),
            shared: Arc::new(SharedLimits::new(parallel)),
            grace,
            webhooks: std::sync::OnceLock::new(),
            workers: std::sync::OnceLock::new(),
            remote_cache: std::sync::OnceLock::new(),
        }
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes back the runs an earlier server created: finished ones are listed
    /// again, queued ones are planned again and queued in their order. Returns
    /// how many were queued.
    pub fn restore(self: &Arc<Self>) -> Result<usize, crate::state::StateError> {
        let mut queued = 0;
        // No run is running yet: a queued git run is fetched again below.
        sources::discard_all(&self.root);
        for mut stored in self.store.server_runs()? {
            // A run that waited for its concurrency group never started: it
            // is queued again, in its place.
            if stored.status == Status::Waiting {
                if let Ok(Ok(_)) = self.store.transition_run(
                    stored.run_id,
                    Status::Queued,
                    "queued again: the server restarted while the run waited for its concurrency group",
                ) {
                    stored.status = Status::Queued;
                }
            }
            let request: Option<StoredRequest> = serde_json::from_str(&stored.request).ok();
            let mut plan = None;
            let mut error = None;
            let mut workflow = String::new();
            if let Some(r) = &request {
                workflow = r.workflow.clone().unwrap_or_default();
                if stored.status == Status::Queued {
                    match self.load_stored(&stored.id, r) {
                        Ok(l) => {
                            workflow = l.workflow_path;
                            plan = Some(l.plan);
                        }
                        Err(e) => error = Some(e.message),
                    }
                }
            }
            let mut status = stored.status;
            if status == Status::Queued && plan.is_none() {
                let why = error
                    .clone()
                    .unwrap_or_else(|| "its request is unreadable".into());
                let why = format!("cannot plan it again after a restart: {why}");
                let _ = self
                    .store
                    .transition_run(stored.run_id, Status::Failure, &why);
                error = Some(why);
                status = Status::Failure;
            }
            let entry = self.entry(
                stored.id.clone(),
                stored.run_id,
                workflow,
                stored.created_at,
                status,
                plan,
                stored.request.clone(),
            );
            entry.state().error = error;
            let mut t = self.table();
            t.by_id.insert(stored.id.clone(), entry.clone());
            t.order.push(stored.id.clone());
            if status == Status::Queued {
                t.queue.push_back(stored.id);
                queued += 1;
            } else {
                entry.log.close();
            }
            self.metrics.queue_depth.set(t.queue.len() as i64);
        }
        self.wake.notify_all();
        Ok(queued)
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        self: &Arc<Self>,
        id: String,
        run_id: i64,
        workflow: String,
        created_at: Millis,
        status: Status,
        plan: Option<Plan>,
        request: String,
    ) -> Arc<RunEntry> {
        let group = plan.as_ref().and_then(|p| self.group_of(p).ok()).flatten();
        // As clients see it: no credentials of the URL.
        let git = serde_json::from_str::<StoredRequest>(&request)
            .ok()
            .and_then(|r| r.git)
            .map(|g| GitSource {
                url: crate::git_source::redacted(&g.url),
                ..g
            });
        let (cancel, _) = watch::channel(false);
        let entry = Arc::new(RunEntry {
            id,
            workflow,
            created_at,
            run_id,
            state: Mutex::new(EntryState {
                status,
                started_at: None,
                finished_at: None,
                error: None,
                counted_transitions: 0,
            }),
            log: Arc::new(EventLog::default()),
            cancel,
            plan: Mutex::new(plan),
            gate: Arc::new(Gate::default()),
            request,
            next: Mutex::new(QueuedRun {
                run_id,
                attempt: 1,
                kept: Default::default(),
            }),
            group,
            git,
        });
        // The gate closes by itself when a step budget (advance, max_steps)
        // is spent: the run is paused from then on.
        let weak: Weak<RunEntry> = Arc::downgrade(&entry);
        let runs = Arc::downgrade(self);
        entry.gate.on_closed(Box::new(move |why| {
            if let (Some(e), Some(runs)) = (weak.upgrade(), runs.upgrade()) {
                let mut s = e.state();
                if let Ok(Ok(_)) = runs.store.transition_run(e.run_id, Status::Paused, why) {
                    s.status = Status::Paused;
                }
            }
        }));
        entry
    }

    /// The plan's workflow-level concurrency group, rendered with its inputs.
    fn group_of(&self, plan: &Plan) -> Result<Option<String>, ApiError> {
        let Some(c) = &plan.concurrency else {
            return Ok(None);
        };
        let ctx = crate::template::Context {
            inputs: plan.inputs.clone(),
            ..Default::default()
        };
        crate::template::Engine::new(self.root.clone())
            .render(&c.group, &ctx)
            .map(Some)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_workflow",
                    format!("concurrency group `{}`: {}", c.group, e.message),
                )
                .field("workflow")
            })
    }

    /// `cancel-in-progress` of a workflow-level group: a new run cancels the
    /// group's running run and replaces its queued ones (GitHub's semantics).
    fn cancel_in_progress(&self, new: &RunEntry) {
        let Some(group) = &new.group else { return };
        let victims: Vec<Arc<RunEntry>> = self
            .table()
            .by_id
            .values()
            .filter(|e| e.id != new.id && e.group.as_deref() == Some(group.as_str()))
            .filter(|e| !e.status().is_final())
            .cloned()
            .collect();
        let reason = format!(
            "replaced by run {} (concurrency group `{group}`, cancel-in-progress)",
            new.id
        );
        for e in victims {
            let _ = self.cancel_for(&e.id, &reason);
        }
    }

    pub fn get(&self, id: &str) -> Result<Arc<RunEntry>, ApiError> {
        self.table()
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("there is no run `{id}`")))
    }

    /// Runs newest first, only those with `status` and of `workflow` when
    /// given; and how many match.
    pub fn list(
        &self,
        status: Option<&str>,
        workflow: Option<&str>,
        page: usize,
        per_page: usize,
    ) -> (Vec<RunView>, usize) {
        let entries: Vec<Arc<RunEntry>> = {
            let t = self.table();
            t.order
                .iter()
                .rev()
                .filter_map(|id| t.by_id.get(id).cloned())
                .collect()
        };
        let matching: Vec<RunView> = entries
            .iter()
            .map(|e| e.view())
            .filter(|v| status.is_none_or(|s| v.status.as_str() == s))
            .filter(|v| workflow.is_none_or(|w| v.workflow == w))
            .collect();
        let total = matching.len();
        let page = matching
            .into_iter()
            .skip(page.saturating_sub(1).saturating_mul(per_page))
            .take(per_page)
            .collect();
        (page, total)
    }

    /// Creates and queues a run (recorded `queued` in the store), or finds the
    /// one its idempotency key made (`false`: not new). Blocking: it reads and
    /// plans the workflow.
    pub fn create(self: &Arc<Self>, new: NewRun<'_>) -> Result<(RunView, bool), ApiError> {
        if self.table().shutting_down {
            return Err(shutting_down());
        }
        let id = new_id();
        let mut stored = StoredRequest {
            workflow: match new.source {
                Source::Path(p) | Source::Checkout(p) => Some(p.to_string()),
                Source::Inline(_) => None,
            },
            yaml: match new.source {
                Source::Inline(y) => Some(y.to_string()),
                Source::Path(_) | Source::Checkout(_) => None,
            },
            jobs: new.request.jobs.clone(),
            inputs: new.request.inputs.clone(),
            git: None,
        };
        let loaded = match new.git {
            Some((url, reference)) => {
                let (checkout, commit) = sources::checkout(&self.root, &id, url, reference)?;
                stored.git = Some(GitSource {
                    url: url.to_string(),
                    reference: reference.to_string(),
                    commit,
                });
                let workflow = stored.workflow.as_deref().unwrap_or("");
                load::load(&checkout, &id, Source::Checkout(workflow), &new.request)
            }
            None => load::load(&self.root, &id, new.source, &new.request),
        };
        let discard = || {
            load::discard(&self.root, &id);
            sources::discard(&self.root, &id);
        };
        let loaded = loaded.inspect_err(|_| discard())?;
        if let Err(e) = self.group_of(&loaded.plan) {
            discard();
            return Err(e);
        }
        let cancels_others = loaded
            .plan
            .concurrency
            .as_ref()
            .is_some_and(|c| c.cancel_in_progress);
        let created_at = now_ms();
        let request =
            serde_json::to_string(&stored).map_err(|e| ApiError::internal(e.to_string()))?;
        let server = ServerRun {
            id: id.clone(),
            run_id: 0,
            request: request.clone(),
            idempotency_key: new.idempotency.as_ref().map(|(k, _)| k.clone()),
            body_hash: new.idempotency.as_ref().map(|(_, h)| h.to_vec()),
            created_at,
            status: Status::Queued,
        };
        // Under the table lock: a run is in the store and in the queue together.
        let mut t = self.table();
        if t.shutting_down {
            discard();
            return Err(shutting_down());
        }
        let queued = self
            .store
            .queue_run(
                &loaded.plan.workflow,
                &loaded.workflow_path,
                &stored.args(),
                &loaded.plan.job_infos(),
                &server,
            )
            .map_err(store_error)
            .inspect_err(|_| discard())?;
        let run = match queued {
            Queued::Existing(found) => {
                discard();
                let (key, hash) = new.idempotency.as_ref().expect("only a key finds a run");
                if found.body_hash.as_deref() != Some(hash.as_slice()) {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "idempotency_key_reused",
                        format!(
                            "Idempotency-Key `{key}` was used for run {} with a different request body",
                            found.id
                        ),
                    )
                    .field("Idempotency-Key"));
                }
                let view = match t.by_id.get(&found.id) {
                    Some(e) => e.view(),
                    None => RunView {
                        url: format!("/api/v1/runs/{}", found.id),
                        id: found.id,
                        status: found.status,
                        workflow: String::new(),
                        created_at: found.created_at,
                        started_at: None,
                        finished_at: None,
                        store_run_id: Some(found.run_id),
                        attempt: 1,
                        error: None,
                        git: None,
                    },
                };
                return Ok((view, false));
            }
            Queued::New(run) => run,
        };
        let entry = self.entry(
            id.clone(),
            run.run_id,
            loaded.workflow_path,
            created_at,
            Status::Queued,
            Some(loaded.plan),
            request,
        );
        t.by_id.insert(id.clone(), entry.clone());
        t.order.push(id.clone());
        t.queue.push_back(id);
        self.metrics.runs_created.inc();
        self.metrics.queue_depth.set(t.queue.len() as i64);
        drop(t);
        self.count_transitions(&entry);
        if cancels_others {
            self.cancel_in_progress(&entry);
        }
        self.wake.notify_all();
        Ok((entry.view(), true))
    }

    /// Counts the run's recorded transitions the metrics have not seen yet:
    /// `trun_status_transitions_total` is the store's record, counted.
    fn count_transitions(&self, entry: &RunEntry) {
        let Ok(all) = self.store.transitions(entry.run_id) else {
            return;
        };
        let mut s = entry.state();
        for t in all.iter().skip(s.counted_transitions) {
            let from = t.from.map_or("none", Status::as_str);
            self.metrics.transition(from, t.to.as_str());
        }
        s.counted_transitions = s.counted_transitions.max(all.len());
    }

    /// Cancels a run: a queued one ends at once, a running (or paused) one
    /// has its processes killed by the engine and ends `cancelled` when they
    /// are gone.
    pub fn cancel(&self, id: &str) -> Result<Arc<RunEntry>, ApiError> {
        self.cancel_for(id, "cancelled over the API")
    }

    fn cancel_for(&self, id: &str, reason: &str) -> Result<Arc<RunEntry>, ApiError> {
        let mut t = self.table();
        let entry = t
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("there is no run `{id}`")))?;
        let mut s = entry.state();
        let started = s.started_at.is_some();
        match s.status {
            Status::Queued | Status::Waiting if !started => {
                self.store
                    .transition_run(entry.run_id, Status::Cancelled, reason)
                    .map_err(store_error)?
                    .map_err(|e| conflict(id, &e))?;
                s.status = Status::Cancelled;
                s.finished_at = Some(now_ms());
                drop(s);
                t.queue.retain(|q| q != id);
                self.metrics.queue_depth.set(t.queue.len() as i64);
                self.metrics.run_finished(Status::Cancelled);
                sources::discard(&self.root, id);
                entry.log.close();
                drop(t);
                self.count_transitions(&entry);
            }
            Status::Running | Status::Paused | Status::Waiting => {
                drop(s);
                drop(t);
                // Recorded with its reason now; the engine's own end keeps it
                // (a final status is final).
                let _ = self
                    .store
                    .transition_run(entry.run_id, Status::Cancelled, reason);
                let _ = entry.cancel.send(true);
            }
            status => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "run_finished",
                    format!("run {id} has already finished ({status})"),
                ))
            }
        }
        Ok(entry)
    }

    /// Pause, resume, advance or run up to N steps; a 409 when the run's
    /// status does not allow it (pausing a finished run, resuming a running one).
    pub fn control(&self, id: &str, control: Control) -> Result<Arc<RunEntry>, ApiError> {
        let entry = self.get(id)?;
        {
            let mut s = entry.state();
            let (to, reason, budget) = match control {
                Control::Pause => (
                    Status::Paused,
                    "paused over the API".to_string(),
                    Budget::Steps(0),
                ),
                Control::Resume => (
                    Status::Running,
                    "resumed over the API".to_string(),
                    Budget::Open,
                ),
                Control::Steps(n) => (
                    Status::Running,
                    format!(
                        "{n} more step{} over the API",
                        if n == 1 { "" } else { "s" }
                    ),
                    Budget::Steps(n),
                ),
            };
            match (s.status, control) {
                // A running run given a budget stays running until it is spent.
                (Status::Running, Control::Steps(_)) => {}
                (from, _) => {
                    transition::check(from, to).map_err(|e| conflict(id, &e))?;
                    self.store
                        .transition_run(entry.run_id, to, &reason)
                        .map_err(store_error)?
                        .map_err(|e| conflict(id, &e))?;
                    s.status = to;
                }
            }
            entry.gate.set(budget);
        }
        self.count_transitions(&entry);
        Ok(entry)
    }

    /// Runs a finished run's jobs that did not succeed again, as a new
    /// attempt of the same run (the jobs that succeeded are kept, with their
    /// outputs); a 409 for a run that succeeded or has not finished.
    pub fn retry(&self, id: &str) -> Result<Arc<RunEntry>, ApiError> {
        let entry = self.get(id)?;
        let from = entry.status();
        transition::check(from, Status::Queued).map_err(|e| conflict(id, &e))?;
        let stored: StoredRequest = serde_json::from_str(&entry.request)
            .map_err(|e| ApiError::internal(format!("run {id}'s stored request: {e}")))?;
        // The workflow as it is now: a retry after a fix runs the fix (a git
        // run's is the commit it ran).
        let loaded = self.load_stored(id, &stored)?;
        let mut t = self.table();
        if t.shutting_down {
            return Err(shutting_down());
        }
        let mut s = entry.state();
        let retry = self
            .store
            .retry_run(entry.run_id, "retried over the API")
            .map_err(store_error)?
            .map_err(|e| conflict(id, &e))?;
        *entry.next.lock().unwrap_or_else(|p| p.into_inner()) = QueuedRun {
            run_id: entry.run_id,
            attempt: retry.attempt,
            kept: retry.kept,
        };
        *entry.plan.lock().unwrap_or_else(|p| p.into_inner()) = Some(loaded.plan);
        s.status = Status::Queued;
        s.started_at = None;
        s.finished_at = None;
        s.error = None;
        drop(s);
        entry.cancel.send_replace(false);
        entry.gate.set(Budget::Open);
        entry.log.reopen();
        t.queue.push_back(id.to_string());
        self.metrics.queue_depth.set(t.queue.len() as i64);
        drop(t);
        self.count_transitions(&entry);
        self.wake.notify_all();
        Ok(entry)
    }

    /// Stops taking runs: queued runs stay queued in the store for the next
    /// server; each running run starts no new step, its running steps get the
    /// grace period to finish, then it is cancelled and recorded `interrupted`.
    /// The dispatcher ends once every one is recorded.
    pub fn shutdown(self: &Arc<Self>) {
        let running: Vec<Arc<RunEntry>> = {
            let mut t = self.table();
            if t.shutting_down {
                return;
            }
            t.shutting_down = true;
            t.queue.clear();
            t.by_id
                .values()
                .filter(|e| matches!(e.status(), Status::Running | Status::Paused))
                .cloned()
                .collect()
        };
        self.wake.notify_all();
        for entry in running {
            entry.gate.set(Budget::Steps(0));
            let runs = self.clone();
            let _ = std::thread::Builder::new()
                .name("trun-serve-grace".into())
                .spawn(move || {
                    let until = Instant::now() + runs.grace;
                    while Instant::now() < until
                        && runs.metrics.running_steps.get() > 0
                        && !entry.status().is_final()
                    {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    let _ = runs.store.transition_run(
                        entry.run_id,
                        Status::Interrupted,
                        "the server stopped while the run was running",
                    );
                    let _ = entry.cancel.send(true);
                });
        }
    }

    /// The dispatcher: starts queued runs in order, each on its own thread
    /// through the session, up to `--max-runs` at once; a run whose
    /// workflow-level concurrency group is full waits (`waiting`) and the
    /// runs behind it that can go, go. Returns when the server stops and
    /// every run it started has been recorded.
    pub fn work(self: Arc<Self>, session: Session) {
        let session = Arc::new(session);
        loop {
            let entry = {
                let mut t = self.table();
                loop {
                    if t.shutting_down {
                        if t.active == 0 {
                            return;
                        }
                    } else if t.active < self.max_runs {
                        if let Some(e) = self.next_startable(&mut t) {
                            t.active += 1;
                            break e;
                        }
                    }
                    // A group's slot may free in another process: ask again soon.
                    let groups_wait = t.queue.iter().any(|id| {
                        t.by_id
                            .get(id)
                            .is_some_and(|e| e.status() == Status::Waiting)
                    });
                    t = if groups_wait {
                        self.wake
                            .wait_timeout(t, POLL)
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    } else {
                        self.wake.wait(t).unwrap_or_else(|p| p.into_inner())
                    };
                }
            };
            let runs = self.clone();
            let session = session.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("trun-run-{}", entry.id))
                .spawn({
                    let entry = entry.clone();
                    move || {
                        runs.execute(&session, &entry);
                        runs.finished(&entry);
                    }
                });
            if let Err(e) = spawned {
                let _ = self.store.transition_run(
                    entry.run_id,
                    Status::Failure,
                    &format!("cannot start a thread for the run: {e}"),
                );
                {
                    let mut s = entry.state();
                    s.status = Status::Failure;
                    s.finished_at = Some(now_ms());
                }
                entry.log.close();
                self.finished(&entry);
            }
        }
    }

    /// After a run's thread is done: its group slot goes, the metrics count
    /// its transitions, and the dispatcher may start another.
    fn finished(&self, entry: &Arc<RunEntry>) {
        let _ = self.store.release_slots(entry.run_id, None);
        sources::discard(&self.root, &entry.id);
        self.count_transitions(entry);
        self.forget_old();
        let mut t = self.table();
        t.active -= 1;
        drop(t);
        self.wake.notify_all();
    }

    /// The first queued run that may start now, taken off the queue: one
    /// without a workflow-level concurrency group, or one that got a slot of
    /// its group. A run whose group is full is recorded `waiting` (once,
    /// with who holds the group) and stays in its place.
    fn next_startable(&self, t: &mut MutexGuard<'_, Table>) -> Option<Arc<RunEntry>> {
        let mut i = 0;
        while i < t.queue.len() {
            let id = t.queue[i].clone();
            let Some(entry) = t.by_id.get(&id).cloned() else {
                t.queue.remove(i);
                continue;
            };
            let max = entry
                .plan
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .and_then(|p| p.concurrency.as_ref())
                .map(|c| c.max);
            let claim = match (&entry.group, max) {
                (Some(group), Some(max)) => {
                    match self.store.claim_slot(group, max, entry.run_id, "") {
                        Ok(Claim::Claimed) => None,
                        Ok(Claim::Full(holders)) => {
                            Some(waiting_reason(group, max, entry.run_id, &holders))
                        }
                        Err(e) => Some(format!("cannot claim concurrency group `{group}`: {e}")),
                    }
                }
                _ => None,
            };
            match claim {
                None => {
                    t.queue.remove(i);
                    self.metrics.queue_depth.set(t.queue.len() as i64);
                    return Some(entry);
                }
                Some(reason) => {
                    let mut s = entry.state();
                    if s.status == Status::Queued {
                        if let Ok(Ok(_)) =
                            self.store
                                .transition_run(entry.run_id, Status::Waiting, &reason)
                        {
                            s.status = Status::Waiting;
                            self.metrics.jobs_blocked.inc();
                        }
                    }
                    i += 1;
                }
            }
        }
        None
    }

    fn execute(&self, session: &Session, entry: &Arc<RunEntry>) {
        let cancel = {
            let mut s = entry.state();
            if !matches!(s.status, Status::Queued | Status::Waiting) {
                return;
            }
            s.status = Status::Running;
            s.started_at = Some(now_ms());
            // Subscribed under the state lock: a cancel from now on is seen.
            entry.cancel.subscribe()
        };
        let plan = entry.plan.lock().unwrap_or_else(|p| p.into_inner()).take();
        let result = match plan {
            Some(plan) => self.run_plan(session, entry, plan, cancel),
            None => Err(RunError::Failed("the run has no plan".to_string())),
        };
        if let Err(RunError::Failed(e)) = &result {
            let _ = self.store.transition_run(entry.run_id, Status::Failure, e);
        }
        // The store has the last word (a run the server stopped is
        // `interrupted`; one another server started is that server's).
        let recorded = match self.store.run(entry.run_id) {
            Ok(Some(d)) => Some(d.run.status),
            _ => None,
        };
        let status = match (&result, recorded) {
            (_, Some(s)) if s.is_final() => s,
            (Err(RunError::Elsewhere(_)), Some(s)) => s,
            (Ok(status), _) => *status,
            (Err(_), _) => Status::Failure,
        };
        let elsewhere = matches!(result, Err(RunError::Elsewhere(_)));
        {
            let mut s = entry.state();
            s.status = status;
            s.finished_at = status.is_final().then(now_ms);
            s.error = result.err().map(|e| match e {
                RunError::Failed(e) | RunError::Elsewhere(e) => e,
            });
        }
        if status.is_final() {
            self.metrics.run_finished(status);
        } else if elsewhere {
            self.follow_elsewhere(entry);
        }
        entry.log.close();
    }

    /// A run another server runs: its status here follows the store's until
    /// it ends (that server counts it in its metrics and sends its hooks).
    fn follow_elsewhere(&self, entry: &Arc<RunEntry>) {
        let store = self.store.clone();
        let entry = entry.clone();
        let _ = std::thread::Builder::new()
            .name(format!("trun-follow-{}", entry.id))
            .spawn(move || loop {
                std::thread::sleep(POLL);
                if let Ok(Some(d)) = store.run(entry.run_id) {
                    let mut s = entry.state();
                    s.status = d.run.status;
                    if d.run.status.is_final() {
                        s.finished_at = d.run.finished_at.or(Some(now_ms()));
                        return;
                    }
                }
            });
    }

    fn run_plan(
        &self,
        session: &Session,
        entry: &Arc<RunEntry>,
        plan: Plan,
        cancel: watch::Receiver<bool>,
    ) -> Result<Status, RunError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("trun-run-{}", entry.id))
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let docker = if plan.needs_docker() {
            crate::docker::set_workspace(&plan.root);
            let d = runtime
                .block_on(crate::docker::Docker::connect())
                .map_err(|e| format!("{e} (this workflow uses containers or docker/* actions)"))?;
            Some(Arc::new(d))
        } else {
            None
        };
        let webhooks = self
            .webhooks
            .get()
            .map(|w| w.reporter(entry.clone(), &plan.webhooks));
        let dispatch = match self.workers.get() {
            Some(w) => Some(self.dispatcher(w, entry, &plan)?),
            None => None,
        };
        let mut config = RunConfig {
            workflow_path: entry.workflow.clone(),
            jobs: self.parallel,
            fail_fast: false,
            hooks: StepHooksChoice::UpToDate { force: Vec::new() },
            reporters: vec![
                Box::new(LogReporter {
                    log: entry.log.clone(),
                    on_started: Box::new(|_| {}),
                }),
                Box::new(MetricsReporter::new(self.metrics.clone())),
            ],
            docker,
            grades: None,
            gate: Some(entry.gate.clone()),
            queued_run: Some(entry.next.lock().unwrap_or_else(|p| p.into_inner()).clone()),
            shared: Some(self.shared.clone()),
            dispatch,
        };
        if let Some(w) = webhooks {
            config.reporters.push(Box::new(w));
        }
        let outcome = session
            .run_cancellable(plan, runtime, config, cancel)
            .map_err(|e| match e {
                // Another server on the same database started it first (both
                // took it back from the queue after a restart): it is theirs.
                crate::session::SessionError::Transition(i) if i.from != Status::Queued => {
                    RunError::Elsewhere(format!(
                        "not run here: the store already has it `{}` (another server on the database took it, or it ended)",
                        i.from
                    ))
                }
                e => RunError::Failed(e.to_string()),
            })?;
        if let Some(e) = outcome.record_error {
            eprintln!(
                "trun: warning: could not record run {} in the state store: {e}",
                entry.id
            );
        }
        Ok(outcome.result.status)
    }

    /// The dispatcher that sends this run's jobs to the workers, the root
    /// uploaded as a snapshot first. Inline YAML has no file in the root for
    /// a worker to read: such a run fails with the reason.
    fn dispatcher(
        &self,
        w: &Workers,
        entry: &RunEntry,
        plan: &Plan,
    ) -> Result<Arc<dyn crate::exec::dispatch::Dispatch>, String> {
        let stored: StoredRequest = serde_json::from_str(&entry.request)
            .map_err(|e| format!("the run's stored request: {e}"))?;
        let Some(workflow) = stored.workflow else {
            return Err(
                "inline YAML cannot run on workers (--no-local-exec): name a workflow file under the server's root"
                    .into(),
            );
        };
        // A git run's workspace is its checkout, snapshotted as a root is.
        let workspace = match &stored.git {
            Some(_) => sources::dir(&self.root, &entry.id),
            None => self.root.clone(),
        };
        let d = crate::worker::Dispatcher::for_workspace(
            &w.db,
            plan,
            &w.cache,
            &workspace,
            &workflow,
            stored.jobs,
            stored.inputs,
        )?;
        Ok(Arc::new(d))
    }

    /// Plans a stored request again: a git run in its checkout, fetched
    /// again at the commit it recorded.
    fn load_stored(&self, id: &str, r: &StoredRequest) -> Result<load::Loaded, ApiError> {
        let request = r.request();
        if let Some(git) = &r.git {
            let checkout = sources::checkout_again(&self.root, id, git)?;
            let workflow = r.workflow.as_deref().unwrap_or("");
            return load::load(&checkout, id, Source::Checkout(workflow), &request)
                .inspect_err(|_| sources::discard(&self.root, id));
        }
        let source = match (&r.workflow, &r.yaml) {
            (Some(p), _) => Source::Path(p),
            (None, Some(y)) => Source::Inline(y),
            (None, None) => return Err(ApiError::internal(format!("run {id} has no workflow"))),
        };
        load::load(&self.root, id, source, &request)
    }

    /// Keeps the table bounded: the oldest finished runs go (their record,
    /// idempotency key included, stays in the store).
    fn forget_old(&self) {
        let mut t = self.table();
        let finished: Vec<Arc<RunEntry>> = t
            .order
            .iter()
            .rev()
            .filter_map(|id| t.by_id.get(id))
            .filter(|e| e.status().is_final())
            .cloned()
            .collect();
        for e in finished.iter().skip(MAX_KEPT_EVENT_LOGS) {
            e.log.expire();
        }
        let excess = t.order.len().saturating_sub(MAX_KEPT_RUNS);
        for e in finished.iter().rev().take(excess) {
            t.order.retain(|id| *id != e.id);
            t.by_id.remove(&e.id);
            load::discard(&self.root, &e.id);
        }
    }
}

fn shutting_down() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the server is shutting down",
    )
}

/// A run id no other run of any server has had: a hash of the time, the
/// process and a counter, 16 hex digits.
fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hex::encode(&h.finalize()[..8])
}

/// The hash an idempotency key remembers a request body by.
pub fn body_hash(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}
