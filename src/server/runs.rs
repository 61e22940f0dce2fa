//! The server's runs: a table of every run created over the API, a queue of
//! those waiting, and the one worker thread that runs them, one at a time,
//! through the workspace's [`Session`] (which holds the workspace lock for the
//! server's life, so a run never shares the workspace with another trun).
//!
//! A run is `queued`, then `running`, then ends with the engine's final status
//! (`success`, `failure`, `cancelled`); a queued run cancelled before it starts
//! ends `cancelled` without reaching the store. Everything a run records goes
//! through the session's store; this table only adds what the store cannot know
//! (the API id, queueing, idempotency keys, the SSE event log).

use super::error::ApiError;
use super::events::{EventLog, LogReporter};
use super::load::{self, Source};
use super::metrics::{Metrics, MetricsReporter};
use crate::event::{now_ms, Millis, Status};
use crate::plan::{Plan, Request};
use crate::session::{RunConfig, Session, StepHooksChoice};
use crate::state::Store;
use axum::http::StatusCode;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tokio::sync::watch;

/// Finished runs beyond this many are forgotten by the table (oldest first);
/// their record stays in the store.
const MAX_KEPT_RUNS: usize = 1000;
/// Finished runs beyond this many (newest first) no longer keep their SSE
/// event log in memory.
const MAX_KEPT_EVENT_LOGS: usize = 50;

/// Where a run is, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Queued,
    Running,
    Done(Status),
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Done(s) => s.as_str(),
        }
    }
}

impl Serialize for RunState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a client sees of a run besides its store record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: String,
    pub status: RunState,
    pub url: String,
    pub workflow: String,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// The run's id in the store (`trun show ID`), once it has started.
    pub store_run_id: Option<i64>,
    /// Why the run could not run at all (the session refused it).
    pub error: Option<String>,
}

struct EntryState {
    status: RunState,
    started_at: Option<Millis>,
    finished_at: Option<Millis>,
    store_run_id: Option<i64>,
    error: Option<String>,
}

pub struct RunEntry {
    pub id: String,
    workflow: String,
    created_at: Millis,
    state: Mutex<EntryState>,
    pub log: Arc<EventLog>,
    cancel: watch::Sender<bool>,
    /// Taken by the worker when the run starts.
    plan: Mutex<Option<Plan>>,
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
            store_run_id: s.store_run_id,
            error: s.error.clone(),
        }
    }

    pub fn store_run_id(&self) -> Option<i64> {
        self.state().store_run_id
    }
}

#[derive(Default)]
struct Table {
    by_id: HashMap<String, Arc<RunEntry>>,
    /// Creation order.
    order: Vec<String>,
    queue: VecDeque<String>,
    /// Idempotency key → (hash of the request body, run id).
    keys: HashMap<String, ([u8; 32], String)>,
    shutting_down: bool,
}

/// A create-run request, already parsed.
pub struct NewRun<'a> {
    pub source: Source<'a>,
    pub request: Request,
    pub idempotency: Option<(String, [u8; 32])>,
}

pub struct Runs {
    table: Mutex<Table>,
    wake: Condvar,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    pub root: PathBuf,
    /// Jobs at once within a run (`-j`).
    parallel: usize,
    /// Where runs' webhook deliveries go (set once when the server starts).
    pub webhooks: std::sync::OnceLock<Arc<super::webhooks::Webhooks>>,
}

impl Runs {
    pub fn new(
        store: Arc<dyn Store>,
        root: PathBuf,
        parallel: usize,
        metrics: Arc<Metrics>,
    ) -> Runs {
        Runs {
            table: Mutex::new(Table::default()),
            wake: Condvar::new(),
            metrics,
            store,
            root,
            parallel,
            webhooks: std::sync::OnceLock::new(),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Creates and queues a run, or finds the one its idempotency key made
    /// (`false`: not new). Blocking: it reads and plans the workflow.
    pub fn create(&self, new: NewRun<'_>) -> Result<(Arc<RunEntry>, bool), ApiError> {
        if let Some(found) = self.by_key(new.idempotency.as_ref())? {
            return Ok((found, false));
        }
        let id = new_id();
        let loaded = load::load(&self.root, &id, new.source, &new.request)?;
        let (cancel, _) = watch::channel(false);
        let entry = Arc::new(RunEntry {
            id: id.clone(),
            workflow: loaded.workflow_path,
            created_at: now_ms(),
            state: Mutex::new(EntryState {
                status: RunState::Queued,
                started_at: None,
                finished_at: None,
                store_run_id: None,
                error: None,
            }),
            log: Arc::new(EventLog::default()),
            cancel,
            plan: Mutex::new(Some(loaded.plan)),
        });
        let mut t = self.table();
        if t.shutting_down {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ));
        }
        // Two requests with one key may have raced through the load.
        if let Some((key, hash)) = &new.idempotency {
            if let Some(found) = Self::lookup_key(&t, key, hash)? {
                load::discard(&self.root, &id);
                return Ok((found, false));
            }
            t.keys.insert(key.clone(), (*hash, id.clone()));
        }
        t.by_id.insert(id.clone(), entry.clone());
        t.order.push(id.clone());
        t.queue.push_back(id);
        self.metrics.runs_created.inc();
        self.metrics.queue_depth.set(t.queue.len() as i64);
        drop(t);
        self.wake.notify_all();
        Ok((entry, true))
    }

    fn by_key(&self, key: Option<&(String, [u8; 32])>) -> Result<Option<Arc<RunEntry>>, ApiError> {
        match key {
            Some((key, hash)) => Self::lookup_key(&self.table(), key, hash),
            None => Ok(None),
        }
    }

    fn lookup_key(
        t: &Table,
        key: &str,
        hash: &[u8; 32],
    ) -> Result<Option<Arc<RunEntry>>, ApiError> {
        let Some((known_hash, id)) = t.keys.get(key) else {
            return Ok(None);
        };
        if known_hash != hash {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                format!(
                    "Idempotency-Key `{key}` was used for run {id} with a different request body"
                ),
            )
            .field("Idempotency-Key"));
        }
        Ok(t.by_id.get(id).cloned())
    }

    /// Cancels a run: a queued one ends at once, a running one has its
    /// processes killed by the engine and ends `cancelled` when they are gone.
    pub fn cancel(&self, id: &str) -> Result<Arc<RunEntry>, ApiError> {
        let mut t = self.table();
        let entry = t
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("there is no run `{id}`")))?;
        let mut s = entry.state();
        match s.status {
            RunState::Queued => {
                s.status = RunState::Done(Status::Cancelled);
                s.finished_at = Some(now_ms());
                drop(s);
                t.queue.retain(|q| q != id);
                self.metrics.queue_depth.set(t.queue.len() as i64);
                self.metrics.run_finished(Status::Cancelled);
                entry.log.close();
            }
            RunState::Running => {
                drop(s);
                let _ = entry.cancel.send(true);
            }
            RunState::Done(status) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "run_finished",
                    format!("run {id} has already finished ({status})"),
                ))
            }
        }
        Ok(entry.clone())
    }

    /// Stops taking runs and cancels every queued and running one; the worker
    /// ends once the running one is recorded.
    pub fn shutdown(&self) {
        let ids: Vec<String> = {
            let mut t = self.table();
            t.shutting_down = true;
            t.order.clone()
        };
        for id in ids {
            let _ = self.cancel(&id);
        }
        self.wake.notify_all();
    }

    /// The worker: takes queued runs in order and runs each through the session.
    pub fn work(self: Arc<Self>, mut session: Session) {
        loop {
            let entry = {
                let mut t = self.table();
                loop {
                    if let Some(id) = t.queue.pop_front() {
                        self.metrics.queue_depth.set(t.queue.len() as i64);
                        if let Some(e) = t.by_id.get(&id) {
                            break e.clone();
                        }
                        continue;
                    }
                    if t.shutting_down {
                        return;
                    }
                    t = self.wake.wait(t).unwrap_or_else(|p| p.into_inner());
                }
            };
            self.execute(&mut session, &entry);
            self.forget_old();
        }
    }

    fn execute(&self, session: &mut Session, entry: &Arc<RunEntry>) {
        let cancel = {
            let mut s = entry.state();
            if s.status != RunState::Queued {
                return;
            }
            s.status = RunState::Running;
            s.started_at = Some(now_ms());
            // Subscribed under the state lock: a cancel from now on is seen.
            entry.cancel.subscribe()
        };
        let plan = entry.plan.lock().unwrap_or_else(|p| p.into_inner()).take();
        let result = match plan {
            Some(plan) => self.run_plan(session, entry, plan, cancel),
            None => Err("the run has no plan".to_string()),
        };
        let status = match &result {
            Ok(status) => *status,
            Err(_) => Status::Failure,
        };
        {
            let mut s = entry.state();
            s.status = RunState::Done(status);
            s.finished_at = Some(now_ms());
            s.error = result.err();
        }
        self.metrics.run_finished(status);
        entry.log.close();
    }

    fn run_plan(
        &self,
        session: &mut Session,
        entry: &Arc<RunEntry>,
        plan: Plan,
        cancel: watch::Receiver<bool>,
    ) -> Result<Status, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
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
        let started = Arc::downgrade(entry);
        let webhooks = self
            .webhooks
            .get()
            .map(|w| w.reporter(entry.clone(), &plan.webhooks));
        let mut config = RunConfig {
            workflow_path: entry.workflow.clone(),
            jobs: self.parallel,
            fail_fast: false,
            hooks: StepHooksChoice::UpToDate { force: Vec::new() },
            reporters: vec![
                Box::new(LogReporter {
                    log: entry.log.clone(),
                    on_started: Box::new(move |run_id| {
                        if let Some(e) = started.upgrade() {
                            e.state().store_run_id = Some(run_id);
                        }
                    }),
                }),
                Box::new(MetricsReporter::new(self.metrics.clone())),
            ],
            docker,
            grades: None,
        };
        if let Some(w) = webhooks {
            config.reporters.push(Box::new(w));
        }
        let outcome = session
            .run_cancellable(plan, runtime, config, cancel)
            .map_err(|e| e.to_string())?;
        if let Some(e) = outcome.record_error {
            eprintln!(
                "trun: warning: could not record run {} in the state store: {e}",
                entry.id
            );
        }
        Ok(outcome.result.status)
    }

    /// Keeps the table bounded: the oldest finished runs (and their keys) go.
    fn forget_old(&self) {
        let mut t = self.table();
        let finished: Vec<Arc<RunEntry>> = t
            .order
            .iter()
            .rev()
            .filter_map(|id| t.by_id.get(id))
            .filter(|e| matches!(e.state().status, RunState::Done(_)))
            .cloned()
            .collect();
        for e in finished.iter().skip(MAX_KEPT_EVENT_LOGS) {
            e.log.expire();
        }
        let excess = t.order.len().saturating_sub(MAX_KEPT_RUNS);
        for e in finished.iter().rev().take(excess) {
            t.order.retain(|id| *id != e.id);
            t.by_id.remove(&e.id);
            t.keys.retain(|_, (_, run)| *run != e.id);
            load::discard(&self.root, &e.id);
        }
    }
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
