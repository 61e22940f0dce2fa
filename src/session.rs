//! The run session: everything around one run of a [`Plan`] that is not the
//! engine itself. [`Session::open`] takes the workspace lock and opens the
//! process's one state store; [`Session::run`] begins the run in the store,
//! starts the recorder (which feeds the reporters as it goes), installs signal
//! forwarding, runs [`crate::exec::run`], and afterwards cleans up (the
//! run's containers, its tmp dir, the up-to-date hooks' pending writes) and
//! turns the result into an exit code.
//!
//! Every face of trun that runs a plan comes through here with its own plan,
//! reporters and hooks: `trun run` today, `trun grade` and the server next. It
//! does not parse arguments, load workflows or build plans (the caller does),
//! and it never renders events itself (reporters do).

use crate::event::{Event, Status};
use crate::exec::job::StepHooks;
use crate::exec::{Events, RunOptions, RunResult};
use crate::lock::{HolderInfo, LockError, WorkspaceLock};
use crate::plan::Plan;
use crate::report::{self, ProgressMode, ReportOptions, Reporter};
use crate::state::{self, Recorder, SqliteStore, StatCache, StateError, Store, Tap};
use crate::uptodate_hooks::{Force, Hooks};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Exit codes of a finished run.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub use crate::signals::EXIT_INTERRUPTED;

/// Why a session could not start or finish. Each message is the one a user
/// sees; the caller only renders it.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The up-to-date hooks refused the run (`--force` naming no step).
    #[error("{0}")]
    Hooks(String),
    #[error("the reporter thread panicked")]
    ReporterPanicked,
    /// A queued run could not start (it was cancelled meanwhile, say).
    #[error("the run cannot start: {0}")]
    Transition(crate::state::Illegal),
}

/// How to take the workspace and what to record about who ran.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// The command line as words, recorded with the run (`trun history`).
    pub args: Vec<String>,
    /// The command line as one string, shown to a trun waiting for the lock.
    pub command_line: String,
    /// Fail at once when another trun holds the workspace, instead of waiting.
    pub no_wait: bool,
}

/// What runs around the engine's steps.
pub enum StepHooksChoice {
    /// Up-to-date checks over the session's store; the names are `--force`.
    UpToDate { force: Vec<String> },
    /// The caller's own hooks (a grading scorer); flushing them is theirs.
    Custom(Arc<dyn StepHooks>),
    /// Every step runs.
    None,
}

/// One run's settings.
pub struct RunConfig {
    /// Recorded as the run's workflow file.
    pub workflow_path: String,
    /// Jobs at once (`-j`).
    pub jobs: usize,
    pub fail_fast: bool,
    pub hooks: StepHooksChoice,
    /// Every reporter sees every event, in order, on the recorder's thread.
    pub reporters: Vec<Box<dyn Reporter>>,
    /// The Docker connection, when the plan needs one (made on `runtime`).
    pub docker: Option<Arc<crate::docker::Docker>>,
    /// Where graded repositories' results go (`trun grade`).
    pub grades: Option<Arc<dyn crate::exec::grade_step::GradeSink>>,
    /// Run control (`trun serve`): the gate every step passes before it starts.
    pub gate: Option<Arc<crate::exec::gate::Gate>>,
    /// A run already recorded `queued` ([`Store::queue_run`],
    /// [`Store::retry_run`]): the session starts that one instead of
    /// beginning a new one.
    pub queued_run: Option<QueuedRun>,
    /// What the run shares with the other runs of the process (`trun
    /// serve` runs several at once): one `-j`, and a job running in one
    /// run at a time. `None`: the run's `-j` is its own.
    pub shared: Option<Arc<crate::exec::shared::SharedLimits>>,
    /// Where this run's plain jobs go instead of this process (`trun serve
    /// --no-local-exec`); `None`: the session's ([`Session::set_dispatch`]).
    pub dispatch: Option<Arc<dyn crate::exec::dispatch::Dispatch>>,
}

/// A run the store holds `queued`, and what an earlier attempt of it left.
#[derive(Debug, Clone, Default)]
pub struct QueuedRun {
    pub run_id: i64,
    /// 1, or more for a retry: its logs go to `.trun/logs/<run>.<attempt>`.
    pub attempt: u32,
    /// Jobs that succeeded in an earlier attempt, with their outputs: they
    /// do not run again.
    pub kept: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub run_id: i64,
    pub result: RunResult,
    /// 0 success, 1 a step failed, 130 interrupted.
    pub exit_code: i32,
    /// The run ran, but its record in the store may be incomplete.
    pub record_error: Option<StateError>,
}

/// The workspace, held: its lock and the process's one state store.
pub struct Session {
    root: PathBuf,
    trun_dir: PathBuf,
    /// Held for the session's life; it names the run last started.
    lock: std::sync::Mutex<WorkspaceLock>,
    sqlite: Arc<SqliteStore>,
    /// Where runs are recorded: the SQLite file above, or a shared database
    /// (`--db postgres://…`); the stat cache stays in the SQLite file.
    store: Arc<dyn Store>,
    /// Device and inode of `state.db` when it was opened: a run whose database was
    /// deleted or replaced meanwhile recorded nothing anyone will read.
    db_identity: Option<(u64, u64)>,
    /// Recorded with each run.
    args: Vec<String>,
    /// `--remote-cache`: where runs of this session share step results.
    remote_cache: Option<Arc<crate::cache::RemoteCache>>,
    /// Where this session's runs send their plain jobs (`trun run --dispatch`).
    dispatch: Option<Arc<dyn crate::exec::dispatch::Dispatch>>,
}

impl Session {
    /// Takes the lock of the workspace at `root` (waiting for another trun,
    /// with a note on stderr, unless `no_wait`) and opens its state store.
    pub fn open(root: &Path, options: &SessionOptions) -> Result<Session, SessionError> {
        Session::open_with_db(root, options, None)
    }

    /// [`Session::open`], recording runs in the shared database `db`
    /// (`postgres://…`) when given; the workspace lock, the stat cache and the
    /// CAS stay in the workspace.
    pub fn open_with_db(
        root: &Path,
        options: &SessionOptions,
        db: Option<&str>,
    ) -> Result<Session, SessionError> {
        let trun_dir = root.join(".trun");
        std::fs::create_dir_all(&trun_dir).map_err(|source| SessionError::CreateDir {
            path: trun_dir.clone(),
            source,
        })?;
        let holder = HolderInfo::current(options.command_line.clone());
        let lock = match WorkspaceLock::try_acquire(&trun_dir, &holder) {
            Ok(lock) => lock,
            Err(e @ (LockError::Held { .. } | LockError::HeldByUnknown { .. })) => {
                if options.no_wait {
                    return Err(e.into());
                }
                match &e {
                    LockError::Held {
                        pid,
                        run_id,
                        command,
                        ..
                    } => {
                        let run = run_id.map(|r| format!(", run {r}")).unwrap_or_default();
                        eprintln!(
                            "trun: waiting for another trun to finish (pid {pid}{run}: {command})…"
                        );
                    }
                    _ => eprintln!(
                        "trun: waiting for another process to release {}…",
                        trun_dir.join("lock").display()
                    ),
                }
                WorkspaceLock::acquire_blocking(&trun_dir, &holder)?
            }
            Err(e) => return Err(e.into()),
        };
        // A trun killed mid-step (SIGKILL) left its step processes running: stop
        // them before anything runs again, so no step runs twice at once.
        for m in crate::exec::executor::reap_orphans(&trun_dir.join("procs")) {
            eprintln!("trun: {m}");
        }
        let sqlite = Arc::new(SqliteStore::open(&state::db_path(root))?);
        let db_identity = file_identity(&state::db_path(root));
        let store: Arc<dyn Store> = match db {
            Some(url) => state::open_store(url)?.into(),
            None => sqlite.clone(),
        };
        Ok(Session {
            store,
            root: root.to_path_buf(),
            trun_dir,
            lock: std::sync::Mutex::new(lock),
            sqlite,
            db_identity,
            args: options.args.clone(),
            remote_cache: None,
            dispatch: None,
        })
    }

    /// Shares the step results of this session's runs through a remote cache.
    pub fn set_remote_cache(&mut self, cache: Option<Arc<crate::cache::RemoteCache>>) {
        self.remote_cache = cache;
    }

    /// Runs this session's plain jobs through `dispatch` (on `trun worker`s)
    /// instead of in this process.
    pub fn set_dispatch(&mut self, dispatch: Option<Arc<dyn crate::exec::dispatch::Dispatch>>) {
        self.dispatch = dispatch;
    }

    /// The session's store: share it, never open a second one.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The session's machine-local stat cache (the same connection).
    pub fn stat_cache(&self) -> Arc<dyn StatCache> {
        self.sqlite.clone()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs `plan` to the end on `runtime` (shut down afterwards) and releases
    /// the workspace. Ctrl-C or SIGTERM cancels the run (exit code 130); a
    /// second one exits at once.
    pub fn run(
        self,
        plan: Plan,
        runtime: tokio::runtime::Runtime,
        config: RunConfig,
    ) -> Result<Outcome, SessionError> {
        self.run_with(plan, runtime, config, None)
    }

    /// [`Session::run`] for a caller that outlives its runs (`trun serve`):
    /// the run is cancelled when `cancel` turns true rather than on a signal
    /// (the caller handles signals), and the session keeps its lock and store
    /// for the next run. Several runs may go at once, each on its own thread
    /// and runtime (give them [`RunConfig::shared`]).
    pub fn run_cancellable(
        &self,
        plan: Plan,
        runtime: tokio::runtime::Runtime,
        config: RunConfig,
        cancel: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Outcome, SessionError> {
        self.run_with(plan, runtime, config, Some(cancel))
    }

    fn run_with(
        &self,
        plan: Plan,
        runtime: tokio::runtime::Runtime,
        config: RunConfig,
        cancel: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Result<Outcome, SessionError> {
        // A `--force` naming nothing is a usage error before a run is recorded.
        if let StepHooksChoice::UpToDate { force } = &config.hooks {
            Force::new(force)
                .check(&plan)
                .map_err(SessionError::Hooks)?;
        }
        let store = self.store();
        let was_queued = config.queued_run.is_some();
        let queued = config.queued_run.unwrap_or_default();
        let run_id = if was_queued {
            store
                .transition_run(queued.run_id, Status::Running, "started")?
                .map_err(SessionError::Transition)?;
            queued.run_id
        } else {
            store.begin_run(
                &plan.workflow,
                &config.workflow_path,
                &self.args,
                &plan.job_infos(),
            )?
        };
        let _ = self
            .lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_run_id(run_id);

        let plan = Arc::new(plan);
        // Secrets, and what steps register with `::add-mask::`, are masked in
        // every event the engine sends.
        let masker = plan.secrets.masker();
        let (hooks, up_to_date): (Option<Arc<dyn StepHooks>>, _) = match config.hooks {
            StepHooksChoice::UpToDate { force } => {
                let h = Arc::new(
                    Hooks::open(
                        plan.clone(),
                        store.clone(),
                        self.stat_cache(),
                        run_id,
                        &force,
                    )
                    .map_err(SessionError::Hooks)?
                    .with_remote_cache(self.remote_cache.clone()),
                );
                (Some(h.clone()), Some(h))
            }
            StepHooksChoice::Custom(h) => (Some(h), None),
            StepHooksChoice::None => (None, None),
        };
        let log_dir = self.trun_dir.join("logs").join(match queued.attempt {
            0 | 1 => run_id.to_string(),
            n => format!("{run_id}.{n}"),
        });
        let tmp_dir = self.trun_dir.join("tmp").join(run_id.to_string());
        for dir in [&log_dir, &tmp_dir] {
            // A new run's directories: anything planted there (a symlink to a file
            // worth overwriting) is removed, never written through.
            crate::fsutil::fresh_dir_under(&self.trun_dir, dir).map_err(|source| {
                SessionError::CreateDir {
                    path: dir.clone(),
                    source,
                }
            })?;
        }
        let docker = config.docker;
        let run_opts = RunOptions {
            docker: docker.clone(),
            memory: Arc::new(crate::exec::actions::StoreMemory(store.clone())),
            store: Some(store.clone()),
            run_id,
            jobs: config.jobs,
            fail_fast: config.fail_fast,
            log_dir,
            tmp_dir: tmp_dir.clone(),
            hooks,
            grades: config.grades,
            proc_records: Some(self.trun_dir.join("procs")),
            gate: config.gate,
            kept: queued.kept,
            slots: Some(Arc::new(crate::exec::concurrency::StoreSlots(
                store.clone(),
            ))),
            shared: config.shared,
            dispatch: config.dispatch.or_else(|| self.dispatch.clone()),
            emits: None,
        };
        // One thread renders events and records them, in batches: the engine
        // never waits for the terminal or the disk.
        let (tx, recorder) =
            Recorder::spawn_with(store.clone(), run_id, Reporters(config.reporters))?;

        // The engine runs as a task on the runtime's workers, not on this
        // thread: a job's end then wakes the scheduler on the same worker
        // (tokio's next-task slot) instead of across threads.
        let engine = runtime.spawn(async move {
            let cancel_rx = cancel.unwrap_or_else(|| {
                let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
                tokio::spawn(crate::signals::forward(cancel_tx));
                cancel_rx
            });
            let events = Events::masked(tx, masker);
            let result = crate::exec::run(plan, run_opts, events, cancel_rx).await;
            // Whatever the run started in Docker goes, however the run ended
            // (containers marked `keep: true` stay until `trun gc --all`).
            if let Some(d) = &docker {
                if let Ok(report) = d.cleanup_run(run_id).await {
                    for e in report.errors {
                        eprintln!("trun: warning: cleanup: {e}");
                    }
                }
            }
            result
        });
        let result = match runtime.block_on(engine) {
            Ok(r) => r,
            // A panic in the engine is a bug: it surfaces as one, here.
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("the engine task ended without a result: {e}"),
            },
        };
        // Tasks still holding an event sender end here, so the recorder sees
        // the channel close.
        runtime.shutdown_timeout(Duration::from_secs(1));
        let finished = recorder
            .finish()
            .map_err(|_| SessionError::ReporterPanicked)?;
        let Reporters(mut reporters) = finished.tap;
        for r in &mut reporters {
            r.finish();
        }
        if let Some(h) = &up_to_date {
            h.flush();
        }
        let _ = std::fs::remove_dir_all(&tmp_dir);
        let mut exit_code = match result.status {
            Status::Success => EXIT_OK,
            Status::Cancelled => EXIT_INTERRUPTED,
            _ => EXIT_FAILED,
        };
        let mut record_error = finished.error;
        let db = state::db_path(&self.root);
        // Only a run recorded in that file is lost with it; a shared database
        // (`--db`) keeps its runs whatever happens to the workspace's file.
        let recorded_in_file = self.store.location() == self.sqlite.location();
        if recorded_in_file && file_identity(&db) != self.db_identity {
            // Writes went to a file that is no longer there: say so, and do not
            // call the run a success nobody can look up.
            record_error = Some(StateError::Lost { path: db, run_id });
            if exit_code == EXIT_OK {
                exit_code = EXIT_FAILED;
            }
        }
        Ok(Outcome {
            run_id,
            result,
            exit_code,
            record_error,
        })
    }
}

/// Device and inode of `path`, if it exists.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The reporters, fed by the recorder thread.
struct Reporters(Vec<Box<dyn Reporter>>);

impl Tap for Reporters {
    fn event(&mut self, ev: &Event) {
        for r in &mut self.0 {
            r.event(ev);
        }
    }
}

/// The terminal reporter for `opts`: JSON lines and GitHub annotations on
/// stdout (a CI reads them there), progress and plain lines on stderr.
pub fn terminal_reporter(opts: &ReportOptions) -> Box<dyn Reporter> {
    let out: Box<dyn Write + Send> = match opts.mode {
        ProgressMode::Json | ProgressMode::Github => Box::new(std::io::stdout()),
        _ => Box::new(std::io::stderr()),
    };
    report::reporter(opts, out)
}
