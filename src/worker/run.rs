//! `trun worker`: claims jobs from the queue, up to `-j` at once, and runs
//! each through the engine in a fresh directory of its own work dir: the
//! workspace snapshot, plus the files the jobs it needs wrote, then the
//! job's steps (recorded into the coordinator's run in the shared store),
//! then what it wrote goes to the cache and its result to the queue.
//!
//! It wakes on `NOTIFY` (new work, a finished job), never polls for work; a
//! heartbeat thread renews its leases and rescues other workers' expired
//! ones. SIGTERM (or Ctrl-C) drains: nothing new is claimed, running jobs
//! finish, then it exits; a second signal stops at once.

use super::snapshot::{digest_text, parse_digest, Manifest, Walk};
use super::{Outcome, Payload};
use crate::cache::client::{Client, Fetched};
use crate::cache::RemoteCache;
use crate::event::{now_ms, Event, Status};
use crate::exec::dispatch::Of;
use crate::exec::fanout::Outbox;
use crate::exec::{Events, RunOptions};
use crate::fanout::Emitted;
use crate::state::{
    Claimed, JobQueue, Listener, Recorder, SqliteStore, Store, DONE_CHANNEL, JOBS_CHANNEL,
};
use crate::uptodate::Fingerprint;
use crate::uptodate_hooks::Hooks;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// A worker's settings (`trun worker`'s flags).
pub struct Config {
    pub db: String,
    pub cache: Arc<RemoteCache>,
    pub name: String,
    pub labels: Vec<String>,
    /// Jobs at once.
    pub jobs: usize,
    pub workdir: PathBuf,
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    /// The `secrets` of every job this worker runs (`--secret`, `--secret-file`).
    pub secrets: Arc<crate::secrets::Secrets>,
}

/// The attempts this worker runs, with the switch that stops each.
type Held = Mutex<BTreeMap<(i64, String, i32), watch::Sender<bool>>>;

/// Runs the worker until it is told to stop and has drained.
pub fn serve(cfg: Config) -> Result<(), String> {
    let cfg = Arc::new(cfg);
    std::fs::create_dir_all(&cfg.workdir)
        .map_err(|e| format!("--workdir {}: {e}", cfg.workdir.display()))?;
    let workdir = std::fs::canonicalize(&cfg.workdir)
        .map_err(|e| format!("--workdir {}: {e}", cfg.workdir.display()))?;
    // Before any thread starts (the database driver starts one).
    super::guard::start(&workdir)?;
    let queue = Arc::new(JobQueue::open(&cfg.db).map_err(|e| e.to_string())?);
    let store: Arc<dyn Store> = crate::state::open_store(&cfg.db)
        .map_err(|e| e.to_string())?
        .into();
    let mut listener =
        Listener::open(&cfg.db, None, &[JOBS_CHANNEL, DONE_CHANNEL]).map_err(|e| e.to_string())?;
    queue
        .register_worker(&cfg.name, &cfg.labels)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "trun worker {}: waiting for jobs (labels: {}; -j {})",
        cfg.name,
        if cfg.labels.is_empty() {
            "none".to_string()
        } else {
            cfg.labels.join(",")
        },
        cfg.jobs
    );

    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone());
    let held: Arc<Held> = Arc::default();
    let running = Arc::new(AtomicUsize::new(0));
    let beat = {
        let (queue, held, stop, cfg) = (queue.clone(), held.clone(), stop.clone(), cfg.clone());
        let running = running.clone();
        std::thread::spawn(move || heartbeat(&queue, &held, &stop, &running, &cfg))
    };
    let mut threads = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        while running.load(Ordering::Relaxed) < cfg.jobs.max(1) {
            let claimed = match queue.claim(&cfg.name, &cfg.labels, cfg.lease) {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("trun worker: cannot claim: {e}");
                    break;
                }
            };
            running.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = watch::channel(false);
            held.lock().unwrap_or_else(|p| p.into_inner()).insert(
                (claimed.run_id, claimed.job_key.clone(), claimed.attempt),
                tx,
            );
            let ctx = JobCtx {
                cfg: cfg.clone(),
                queue: queue.clone(),
                store: store.clone(),
                workdir: workdir.clone(),
            };
            let (held, running) = (held.clone(), running.clone());
            threads.push(std::thread::spawn(move || {
                let key = (claimed.run_id, claimed.job_key.clone(), claimed.attempt);
                // The slot is free before the result is sent: its NOTIFY
                // wakes the loop, which may claim at once.
                ctx.run(claimed, rx, || {
                    held.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                    running.fetch_sub(1, Ordering::Relaxed);
                });
            }));
        }
        threads.retain(|t| !t.is_finished());
        // New work and finished jobs (ours included) are announced; the
        // timeout only bounds how late a drain request is noticed.
        if let Err(e) = listener.wait(Duration::from_secs(1)) {
            return Err(format!("the job queue's connection failed: {e}"));
        }
    }
    eprintln!(
        "trun worker {}: draining ({} running)",
        cfg.name,
        running.load(Ordering::Relaxed)
    );
    for t in threads {
        let _ = t.join();
    }
    let _ = beat.join();
    queue.worker_stopped(&cfg.name).map_err(|e| e.to_string())?;
    eprintln!("trun worker {}: stopped", cfg.name);
    Ok(())
}

/// The first SIGTERM or SIGINT asks for a drain; a second one stops every
/// running step and exits.
fn watch_signals(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(crate::signals::twice(|| {
            stop.store(true, Ordering::Relaxed);
        }));
    });
}

/// Renews leases a third of a lease apart, stops attempts that are no
/// longer ours, and rescues expired ones (any worker may).
fn heartbeat(
    queue: &JobQueue,
    held: &Held,
    stop: &AtomicBool,
    running: &AtomicUsize,
    cfg: &Config,
) {
    let every = (cfg.lease / 3).max(Duration::from_millis(100));
    loop {
        let keys: Vec<(i64, String, i32)> = held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        match queue.heartbeat(&cfg.name, &keys, cfg.lease) {
            Ok(lost) => {
                let held = held.lock().unwrap_or_else(|p| p.into_inner());
                for k in lost {
                    if let Some(tx) = held.get(&k) {
                        let _ = tx.send(true);
                    }
                }
            }
            Err(e) => eprintln!("trun worker: heartbeat: {e}"),
        }
        if let Err(e) = queue.rescue(now_ms()) {
            eprintln!("trun worker: rescue: {e}");
        }
        if stop.load(Ordering::Relaxed) && running.load(Ordering::Relaxed) == 0 {
            return;
        }
        std::thread::sleep(every);
    }
}

/// How the job ended on this worker: status, reason, outputs, and how each
/// of its steps started and ended (as recorded).
type JobEnd = (Status, Option<String>, BTreeMap<String, String>, Vec<Event>);

struct JobCtx {
    cfg: Arc<Config>,
    queue: Arc<JobQueue>,
    store: Arc<dyn Store>,
    workdir: PathBuf,
}

impl JobCtx {
    /// Runs the attempt, calls `done` (its slot is free), then sends the result.
    fn run(&self, c: Claimed, cancel: watch::Receiver<bool>, done: impl FnOnce()) {
        let label = format!("{}:{}:{}", c.run_id, c.job_key, c.attempt);
        eprintln!("trun worker {}: running {label}", self.cfg.name);
        use sha2::Digest as _;
        let dir = self.workdir.join(format!(
            "{}-{}-{}",
            c.run_id,
            &hex::encode(sha2::Sha256::digest(c.job_key.as_bytes()))[..12],
            c.attempt
        ));
        let outcome = match self.attempt(&c, &dir, cancel) {
            Ok(o) => o,
            Err(e) => Outcome {
                status: Status::Failure,
                reason: Some(format!("on worker {}: {e}", self.cfg.name)),
                outputs: BTreeMap::new(),
                files: None,
                worker: self.cfg.name.clone(),
                emitted: Vec::new(),
                steps: Vec::new(),
            },
        };
        let _ = std::fs::remove_dir_all(&dir);
        done();
        let text = serde_json::to_string(&outcome).unwrap_or_default();
        match self
            .queue
            .complete(c.run_id, &c.job_key, c.attempt, &self.cfg.name, &text)
        {
            Ok(true) => eprintln!("trun worker {}: {label} {}", self.cfg.name, outcome.status),
            Ok(false) => eprintln!(
                "trun worker {}: {label}: result refused (the attempt is no longer this worker's)",
                self.cfg.name
            ),
            Err(e) => eprintln!(
                "trun worker {}: {label}: cannot complete: {e}",
                self.cfg.name
            ),
        }
    }

    /// Materialises the job's inputs in `dir`, runs it, uploads what it wrote.
    fn attempt(
        &self,
        c: &Claimed,
        dir: &Path,
        cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        let payload: Payload =
            serde_json::from_str(&c.payload).map_err(|e| format!("unreadable payload: {e}"))?;
        let client = self.cfg.cache.client();
        let mut inputs = Manifest::fetch(client, &parse_digest(&payload.snapshot)?)?;
        for f in &payload.files {
            inputs.overlay(&Manifest::fetch(client, &parse_digest(f)?)?);
        }
        crate::fsutil::fresh_dir_under(&self.workdir, dir).map_err(|e| e.to_string())?;
        inputs.materialise(client, dir)?;
        // What the job starts from, as this machine wrote it (modes after umask).
        let before = Manifest::of_dir(dir, Walk::Everything)?;

        if !crate::cache::action_result::safe_path(&payload.workflow) {
            return Err(format!("refused workflow path {:?}", payload.workflow));
        }
        let file = crate::cli::FileArgs {
            file: Some(dir.join(&payload.workflow)),
            ..Default::default()
        };
        let (_, mut plan) = crate::cli::load_plan(&file, &payload.targets, &payload.inputs)
            .map_err(|d| {
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            })?;
        // A leg or an instance the coordinator made, made again here the
        // same way from the planned job.
        match &payload.of {
            None => {}
            Some(Of::Leg { planned, matrix }) => {
                let Some(j) = plan
                    .jobs
                    .iter_mut()
                    .find(|j| j.key == *planned && j.dynamic_matrix.is_some())
                else {
                    return Err(format!(
                        "the workflow has no job {planned} with a computed matrix"
                    ));
                };
                *j = crate::exec::matrix::leg_job(j, matrix);
            }
            Some(Of::Input { planned, input }) => {
                let path = fetch_input(client, dir, input)?;
                let Some(j) = plan
                    .jobs
                    .iter_mut()
                    .find(|j| j.key == *planned && !j.fed_by.is_empty())
                else {
                    return Err(format!("the workflow has no job {planned} with `fed-by`"));
                };
                *j = crate::exec::fanout::instance_job(j, input.clone(), path);
            }
        }
        plan.jobs
            .retain(|j| j.key == c.job_key || payload.needs.contains_key(&j.key));
        if !plan.jobs.iter().any(|j| j.key == c.job_key) {
            return Err(format!("the workflow has no job {}", c.job_key));
        }

        let outbox = Arc::new(Outbox::default());
        let (status, reason, outputs, steps) =
            self.run_engine(c, plan, &payload, dir, cancel, outbox.clone())?;
        let emitted = upload_emitted(client, dir, outbox.take())?;
        let after = Manifest::of_dir(dir, Walk::Everything)?;
        let wrote = after.changed_since(&before);
        let files = if wrote.files.is_empty() {
            None
        } else {
            Some(digest_text(&wrote.upload(client, dir)?))
        };
        Ok(Outcome {
            status,
            reason,
            outputs,
            files,
            worker: self.cfg.name.clone(),
            emitted,
            steps,
        })
    }

    /// The engine, on the one job (its needs kept as done), its step events
    /// recorded into the coordinator's run. The job's own start and end are
    /// the coordinator's to record.
    fn run_engine(
        &self,
        c: &Claimed,
        mut plan: crate::plan::Plan,
        payload: &Payload,
        dir: &Path,
        cancel: watch::Receiver<bool>,
        outbox: Arc<Outbox>,
    ) -> Result<JobEnd, String> {
        // The worker's own secrets: they never travel through the queue.
        plan.secrets = self.cfg.secrets.clone();
        let plan = Arc::new(plan);
        let trun_dir = dir.join(".trun");
        let log_dir = trun_dir.join("logs").join(c.run_id.to_string());
        let tmp_dir = trun_dir.join("tmp").join(c.run_id.to_string());
        for d in [&log_dir, &tmp_dir] {
            crate::fsutil::fresh_dir_under(dir, d).map_err(|e| e.to_string())?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let docker = if plan.needs_docker() {
            crate::docker::set_workspace(dir);
            Some(Arc::new(
                runtime
                    .block_on(crate::docker::Docker::connect())
                    .map_err(|e| e.to_string())?,
            ))
        } else {
            None
        };
        let hooks = self.hooks(&plan, payload, c.run_id, &trun_dir)?;
        let opts = RunOptions {
            run_id: c.run_id,
            jobs: 1,
            fail_fast: false,
            log_dir,
            tmp_dir,
            hooks: Some(hooks.clone() as Arc<dyn crate::exec::job::StepHooks>),
            docker: docker.clone(),
            memory: Arc::new(crate::exec::actions::StoreMemory(self.store.clone())),
            store: Some(self.store.clone()),
            grades: None,
            proc_records: Some(trun_dir.join("procs")),
            gate: None,
            kept: payload.needs.clone(),
            // The coordinator took the job's concurrency slot before queuing it.
            slots: None,
            dispatch: None,
            shared: None,
            emits: Some(outbox),
        };
        let (rec_tx, recorder) =
            Recorder::spawn(self.store.clone(), c.run_id).map_err(|e| e.to_string())?;
        let (tx, rx) = std::sync::mpsc::channel::<Event>();
        let job_key = c.job_key.clone();
        let cache = self.cfg.cache.clone();
        let filter = std::thread::spawn(move || {
            let mut end = None;
            let mut steps = Vec::new();
            for ev in rx {
                match ev {
                    Event::RunStarted { .. } | Event::RunFinished { .. } => {}
                    Event::JobStarted { .. } | Event::JobWaiting { .. } => {}
                    Event::JobFinished {
                        job,
                        status,
                        reason,
                        outputs,
                        ..
                    } => {
                        if job == job_key {
                            end = Some((status, reason, outputs, std::mem::take(&mut steps)));
                        }
                    }
                    mut ev => {
                        // A step's log goes to the cache, and the record
                        // names it there: `trun logs` elsewhere reads it.
                        if let Event::StepFinished { log_path, .. } = &mut ev {
                            *log_path = log_path.take().map(|p| shared_log(&cache, p));
                        }
                        if matches!(ev, Event::StepStarted { .. } | Event::StepFinished { .. }) {
                            steps.push(ev.clone());
                        }
                        let _ = rec_tx.send(ev);
                    }
                }
            }
            end
        });
        let masker = plan.secrets.masker();
        let run_id = c.run_id;
        runtime.block_on(async move {
            let events = Events::masked(tx, masker);
            crate::exec::run(plan, opts, events, cancel).await;
            if let Some(d) = &docker {
                let _ = d.cleanup_run(run_id).await;
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
        hooks.flush();
        let end = filter.join().map_err(|_| "the event thread panicked")?;
        match recorder.finish() {
            Ok(f) => {
                if let Some(e) = f.error {
                    eprintln!("trun worker: the job's steps may be recorded incompletely: {e}");
                }
            }
            Err(e) => eprintln!("trun worker: recording: {e}"),
        }
        end.ok_or_else(|| "the job did not run".to_string())
    }
}

impl JobCtx {
    /// The up-to-date checks of the job's steps, as in a local run: over the
    /// shared store (what earlier runs recorded, on any machine) and the
    /// remote cache (what they produced), so a step whose inputs did not
    /// change is restored, not run. File stats are this attempt's own: its
    /// directory is new, and the shared store must not fill with them.
    fn hooks(
        &self,
        plan: &Arc<crate::plan::Plan>,
        payload: &Payload,
        run_id: i64,
        trun_dir: &Path,
    ) -> Result<Arc<Hooks>, String> {
        let stats =
            Arc::new(SqliteStore::open(&trun_dir.join("stats.db")).map_err(|e| e.to_string())?);
        let hooks = Hooks::open(plan.clone(), self.store.clone(), stats, run_id, &[])?
            .with_remote_cache(Some(self.cfg.cache.clone()));
        for (job, outputs) in &payload.needs {
            let files = payload.upstream.get(job).map(|f| f.join("\n"));
            hooks.ran_elsewhere(job, upstream_digest(outputs, files.as_deref()));
        }
        Ok(Arc::new(hooks))
    }
}

/// What a job that ran on another machine hands on: its outputs and the
/// manifest of the files it wrote.
fn upstream_digest(outputs: &BTreeMap<String, String>, files: Option<&str>) -> Fingerprint {
    use sha2::Digest as _;
    let files = Fingerprint(sha2::Sha256::digest(files.unwrap_or("").as_bytes()).into());
    crate::uptodate_hooks::produced_digest(&[], outputs, &[files])
}

/// The file an instance processes, from the cache (checked against its
/// digest), as `.trun/input/<sha256>` of the attempt's directory.
fn fetch_input(client: &Client, dir: &Path, input: &Emitted) -> Result<PathBuf, String> {
    let d = input.digest()?;
    if d.size > crate::fanout::MAX_FILE_BYTES {
        return Err(format!(
            "the input {:?} is larger than an emitted file may be",
            input.name
        ));
    }
    let path = dir.join(".trun").join("input").join(d.hex());
    let mut file = crate::fsutil::safe_create(dir, &path).map_err(|e| e.to_string())?;
    match client.get_blob(&d, &mut file) {
        Ok(Fetched::Ok) => Ok(path),
        Ok(Fetched::Missing) => Err(format!("the input {:?} is not in the cache", input.name)),
        Ok(Fetched::Corrupt) => Err(format!(
            "the cache's copy of the input {:?} does not match its digest",
            input.name
        )),
        Err(e) => Err(format!("cannot fetch the input {:?}: {e}", input.name)),
    }
}

/// Puts the files the job's steps emitted for fed jobs (taken into this
/// attempt's store, `.trun/cas`) in the cache, for the coordinator's feeds.
fn upload_emitted(
    client: &Client,
    dir: &Path,
    emitted: Vec<(String, Emitted)>,
) -> Result<Vec<(String, Emitted)>, String> {
    let cas = crate::uptodate::cas::Cas::new(&dir.join(".trun").join("cas"));
    let mut out = Vec::with_capacity(emitted.len());
    for (step, e) in emitted {
        let d = e.digest()?;
        client
            .put_blob(&d, &cas.object_path(&d.hash))
            .map_err(|err| format!("cannot upload the emitted file {:?}: {err}", e.name))?;
        out.push((step, e));
    }
    Ok(out)
}

/// A step's log file, uploaded to the cache: `cas:HASH/SIZE`, which
/// [`crate::history::LogRef`] reads back on any machine. A step that printed
/// nothing has no file and keeps its path (read as "printed nothing"); a log
/// the cache would not take keeps its path too, with a warning.
fn shared_log(cache: &RemoteCache, path: String) -> String {
    let Ok(bytes) = std::fs::read(&path) else {
        return path;
    };
    let d = super::snapshot::digest_of(&bytes);
    match cache.client().put_blob_bytes(&d, bytes) {
        Ok(()) => format!("{}{}", crate::history::CACHED_LOG, digest_text(&d)),
        Err(e) => {
            eprintln!("trun worker: warning: cannot upload the log {path}: {e}");
            path
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instance's input as another machine names it: a size past what a
    /// step may emit, a digest that is no sha256, or a name with shell text
    /// and `../` is refused or kept out of every path; nothing is written
    /// outside the attempt's directory (the cache here is unreachable).
    #[test]
    fn a_hostile_input_is_refused_or_stays_inside_the_attempt() {
        let outside = tempfile::tempdir().unwrap();
        let dir = outside.path().join("attempt");
        std::fs::create_dir(&dir).unwrap();
        let client = Client::new("http://127.0.0.1:1/", None, Duration::from_secs(1));
        let input = |name: &str, sha256: &str, size: u64| Emitted {
            job: "process".into(),
            name: name.into(),
            sha256: sha256.into(),
            size,
        };
        let sha = "ab".repeat(32);
        let huge = input("big.txt", &sha, u64::MAX);
        let err = fetch_input(&client, &dir, &huge).unwrap_err();
        assert!(err.contains("larger than"), "{err}");
        let bad = input("x", "$(touch pwned)/../../x", 3);
        assert!(fetch_input(&client, &dir, &bad).is_err());
        // The name never makes the path: only the digest does.
        let named = input("../../$(touch pwned)'\"", &sha, 3);
        let err = fetch_input(&client, &dir, &named).unwrap_err();
        assert!(err.contains("cannot fetch"), "{err}");
        let mut left: Vec<String> = std::fs::read_dir(outside.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["attempt"]);
        assert!(!dir.join("pwned").exists());
        // What the failed fetch created is the digest's file, in the attempt.
        let created: Vec<_> = std::fs::read_dir(dir.join(".trun/input"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(created, [std::ffi::OsString::from(&sha)]);
    }
}
