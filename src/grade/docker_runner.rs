//! Grading in containers: a [`CriterionRunner`] that gives every repository its own Docker
//! container, with no network, memory/pid/CPU limits and a per-command time limit.
//!
//! Layout inside the container of one repository:
//! - the repository itself, bind-mounted **read-only** at its host path (`$TRUN_REPO`);
//! - `/work`, a tmpfs holding a writable scratch copy of it, the working directory of every
//!   command (its size counts against the memory limit, so a repository cannot fill the
//!   host's disk through it);
//! - `/trun/out`, a host directory in which each command gets a fresh `$TRUN_OUT`;
//! - `/trun/in`, read-only, holding each command's standard input as a file.
//!
//! The container's only process of its own is an idle shell (as for job containers); each
//! command is a `docker exec`. Output is read as raw bytes and capped at `max-output` as it
//! arrives, so a command printing gigabytes without a newline costs the grader nothing.
//!
//! # What the scorer can trust
//!
//! Partial credit comes from files a criterion's command leaves in `$TRUN_OUT`. That
//! command usually runs the student's code, in the same container and as the same user, so
//! *student code run by a command can write anything that command could*: a test harness
//! that executes student code in-process cannot be protected from it, in a container or not.
//! What this runner guarantees is that a file counts only for the command that wrote it:
//! - every command gets a new `$TRUN_OUT` whose name is random and created by the grader
//!   just before the command starts, so code from an earlier command (or the setup) cannot
//!   guess it and pre-seed it;
//! - when a command ends (or times out) every process in the container but its idle init is
//!   killed (`kill -9 -1`), so nothing left in the background can write into a later
//!   command's `$TRUN_OUT`; if that kill cannot run (a fork bomb holding every pid for
//!   longer than the retries last, or a deleted `/bin/sh`), the sandbox refuses to run
//!   anything more and the remaining criteria are `error`;
//! - only then does the grader copy the command's `$TRUN_OUT` to a directory the container
//!   never sees: regular files only (no symlinks, FIFOs or devices, so a command cannot make
//!   the grader read `/etc/shadow` or block on a pipe), at most [`OUT_FILES_CAP`] bytes.
//!   The scorer reads that copy.
//!
//! What it does not guarantee: the root file system of the container is writable, so a
//! command can replace tools (`/usr/bin/python`) that *later* commands of the same
//! repository use. A teacher who needs that closed runs those checks from a separate
//! rubric, or uses an image whose tools live in a read-only volume.
//!
//! This module does not score anything and does not decide when to grade (see `score` and
//! `batch`). It is synchronous like the rest of `grade`, and bridges to the async Docker
//! layer through a tokio [`Handle`].

use std::collections::HashSet;
use std::future::Future;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::runtime::Handle;

use super::rubric::{Container, Rubric};
use super::runner::{Captured, CommandSpec, CriterionRunner, Execution, RunnerError, Sandbox};
use crate::docker::actions::{ActionCtx, Memory};
use crate::docker::{ContainerSpec, Docker, DockerError, Labels};
use crate::event::Stream;

/// Memory limit when the rubric sets none.
pub const DEFAULT_MEMORY: u64 = 512 * 1024 * 1024;
/// Process limit when the rubric sets none.
pub const DEFAULT_PIDS: u32 = 256;
/// Bytes of `$TRUN_OUT` files the grader copies out per command.
pub const OUT_FILES_CAP: u64 = 16 * 1024 * 1024;

/// Where the scratch copy lives and commands run.
const WORK: &str = "/work";
const OUT_MOUNT: &str = "/trun/out";
const IN_MOUNT: &str = "/trun/in";
/// How long output may keep arriving after the command ended and its leftovers were killed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How often to ask whether a command that still holds its output open has exited.
const EXIT_POLL: Duration = Duration::from_millis(200);
/// How often to try stopping a command's leftovers before giving up on the sandbox.
const KILL_ATTEMPTS: usize = 10;
/// Kills every process the exec can signal: all but the container's init and itself.
const KILL_ALL: &str = "kill -9 -1 2>/dev/null; exit 0";

/// The resource limits of a grading container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub memory: u64,
    pub pids: u32,
    pub cpus: Option<f64>,
}

impl Limits {
    /// The rubric's `defaults.memory/pids/cpus`, or 512MiB, 256 and no CPU limit.
    pub fn of(rubric: &Rubric) -> Limits {
        Limits {
            memory: rubric.defaults.memory.map_or(DEFAULT_MEMORY, |m| m.0),
            pids: rubric.defaults.pids.unwrap_or(DEFAULT_PIDS),
            cpus: rubric.defaults.cpus,
        }
    }
}

/// Why a grading container cannot be set up at all (before any repository is graded).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "the rubric's image {image} is not present locally (trun never pulls implicitly); run `docker pull {image}` first"
    )]
    Missing { image: String },
    #[error("cannot build the rubric's image from {dockerfile}: {message}")]
    Build { dockerfile: String, message: String },
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// The image a rubric's criteria run in: its tag and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub tag: String,
    pub id: String,
}

/// Finds the rubric's `container.image` locally, or builds `container.dockerfile` (relative
/// to `rubric_dir`, like the rubric says) with the `docker/build` built-in, which skips the
/// build when the Dockerfile and its context are unchanged (remembered in `memory`).
/// Build output lines go to `on_line`.
pub async fn resolve_image(
    docker: &Docker,
    container: &Container,
    rubric_dir: &Path,
    memory: &dyn Memory,
    on_line: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<Image, ImageError> {
    if let Some(tag) = &container.image {
        return match docker.image_id(tag).await? {
            Some(id) => Ok(Image {
                tag: tag.clone(),
                id,
            }),
            None => Err(ImageError::Missing { image: tag.clone() }),
        };
    }
    let dockerfile = container.dockerfile.clone().unwrap_or_default();
    let context = container.context.clone().unwrap_or_else(|| {
        Path::new(&dockerfile)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| ".".to_string())
    });
    let dir = rubric_dir
        .canonicalize()
        .unwrap_or_else(|_| rubric_dir.to_path_buf());
    // One tag per Dockerfile location: rebuilding it replaces the old image, and two
    // rubrics in different directories never share one by accident.
    let key = {
        use sha2::Digest;
        let h = sha2::Sha256::digest(format!("{}\0{dockerfile}\0{context}", dir.display()));
        hex::encode(&h[..6])
    };
    let tag = format!("trun-grade:{key}");
    let with = serde_json::Map::from_iter([
        ("context".to_string(), context.into()),
        ("dockerfile".to_string(), dockerfile.clone().into()),
        ("tag".to_string(), tag.clone().into()),
    ]);
    let ctx = ActionCtx {
        run_id: 0,
        job: "grade".to_string(),
        step_key: format!("grade/{key}"),
        workspace: dir,
        docker: Some(docker),
        memory,
    };
    let build_error = |message: String| ImageError::Build {
        dockerfile: dockerfile.clone(),
        message,
    };
    let result = crate::docker::actions::run("docker/build", &with, &ctx, on_line)
        .await
        .map_err(|e| build_error(e.to_string()))?;
    if !result.success {
        return Err(build_error(result.message.unwrap_or_default()));
    }
    let id = match result.outputs.get("image-id") {
        Some(id) => id.clone(),
        None => docker.require_image(&tag).await?,
    };
    Ok(Image { tag, id })
}

/// Runs each repository's commands in its own container of `image`.
#[derive(Debug, Clone)]
pub struct DockerRunner {
    docker: Docker,
    handle: Handle,
    image: Image,
    limits: Limits,
    run_id: i64,
    stopper: Stopper,
}

/// Stops a [`DockerRunner`] from elsewhere (a signal handler): after [`Stopper::stop`] no
/// sandbox opens any more, and [`Stopper::idle`] waits until no container is being
/// created, so that removing the run's containers afterwards misses none.
#[derive(Debug, Clone, Default)]
pub struct Stopper(Arc<StopState>);

#[derive(Debug, Default)]
struct StopState {
    stopping: AtomicBool,
    opening: AtomicUsize,
    /// Temp dirs of open sandboxes, which a process about to exit must remove itself.
    temp_dirs: Mutex<HashSet<PathBuf>>,
}

impl Stopper {
    pub fn stop(&self) {
        self.0.stopping.store(true, Ordering::SeqCst);
    }

    /// Waits (up to `limit`) until no sandbox is being opened.
    pub async fn idle(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.0.opening.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Removes the temp dirs of the sandboxes still open (their drop will not run when the
    /// process exits).
    pub fn remove_temp_dirs(&self) {
        let dirs = self.0.temp_dirs.lock().unwrap_or_else(|p| p.into_inner());
        for dir in dirs.iter() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Marks a sandbox as being opened, or refuses when stopping. Both orders of `stop` and
    /// this are safe: either this sees the flag, or `idle` sees the count.
    fn enter(&self) -> Result<OpeningGuard<'_>, RunnerError> {
        self.0.opening.fetch_add(1, Ordering::SeqCst);
        let guard = OpeningGuard(self);
        if self.0.stopping.load(Ordering::SeqCst) {
            return Err(RunnerError::Other("grading was interrupted".to_string()));
        }
        Ok(guard)
    }

    fn track(&self, dir: &Path, open: bool) {
        let mut dirs = self.0.temp_dirs.lock().unwrap_or_else(|p| p.into_inner());
        if open {
            dirs.insert(dir.to_path_buf());
        } else {
            dirs.remove(dir);
        }
    }
}

struct OpeningGuard<'a>(&'a Stopper);

impl Drop for OpeningGuard<'_> {
    fn drop(&mut self) {
        self.0 .0.opening.fetch_sub(1, Ordering::SeqCst);
    }
}

impl DockerRunner {
    /// `handle` runs the Docker calls; `run_id` labels the containers (`trun.run`) so that
    /// `trun gc` can find what a killed grading run left behind.
    pub fn new(
        docker: Docker,
        handle: Handle,
        image: Image,
        limits: Limits,
        run_id: i64,
    ) -> DockerRunner {
        DockerRunner {
            docker,
            handle,
            image,
            limits,
            run_id,
            stopper: Stopper::default(),
        }
    }

    /// A handle that stops this runner from another task.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    fn block<F: Future>(&self, fut: F) -> F::Output {
        block_on(&self.handle, fut)
    }

    fn container_spec(&self) -> ContainerSpec {
        ContainerSpec {
            image: self.image.tag.clone(),
            network: Some("none".to_string()),
            memory: Some(self.limits.memory.to_string()),
            cpus: self.limits.cpus,
            pids: Some(i64::from(self.limits.pids)),
            read_only_workspace: true,
            options: vec![
                format!("--tmpfs {WORK}:rw,exec,size={}", self.limits.memory),
                format!("--workdir {WORK}"),
                "--cap-drop ALL".to_string(),
                "--security-opt no-new-privileges".to_string(),
            ],
            ..Default::default()
        }
    }
}

/// Runs `fut` to completion from synchronous code. From a plain thread (the batch's
/// workers) or a `spawn_blocking` thread this is `Handle::block_on`; from a worker of a
/// multi-threaded runtime it first moves the thread out of the async worker pool, where
/// blocking would stall other tasks. A current-thread runtime must call the runner from
/// `spawn_blocking`.
fn block_on<F: Future>(handle: &Handle, fut: F) -> F::Output {
    match Handle::try_current() {
        Ok(current) if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(fut))
        }
        _ => handle.block_on(fut),
    }
}

impl CriterionRunner for DockerRunner {
    fn open(&self, repo: &Path) -> Result<Box<dyn Sandbox>, RunnerError> {
        if !repo.is_dir() {
            return Err(RunnerError::NotADirectory(repo.to_path_buf()));
        }
        let _opening = self.stopper.enter()?;
        let repo = repo.canonicalize().map_err(|source| RunnerError::Copy {
            repo: repo.to_path_buf(),
            source,
        })?;
        let root = tempfile::Builder::new()
            .prefix("trun-grade-")
            .tempdir()
            .map_err(RunnerError::TempDir)?;
        let host_out = root.path().join("out");
        let host_in = root.path().join("in");
        let results = root.path().join("results");
        for dir in [&host_out, &host_in, &results] {
            std::fs::create_dir(dir).map_err(RunnerError::TempDir)?;
        }
        // The container's root has no CAP_DAC_OVERRIDE: it can write here only because the
        // directory is open to all. The temp root around it is 0700, closed to other users.
        std::fs::set_permissions(&host_out, std::fs::Permissions::from_mode(0o777))
            .map_err(RunnerError::TempDir)?;
        let mut spec = self.container_spec();
        spec.volumes = vec![
            format!("{}:{OUT_MOUNT}", host_out.display()),
            format!("{}:{IN_MOUNT}:ro", host_in.display()),
        ];
        let job = super::score::repo_name(&repo);
        let labels = Labels::new(self.run_id, job);
        let container = self
            .block(self.docker.start_job_container(&spec, &repo, &labels))
            .map_err(|e| RunnerError::Other(format!("cannot start the grading container: {e}")))?;
        self.stopper.track(root.path(), true);
        let mut sandbox = DockerSandbox {
            docker: self.docker.clone(),
            handle: self.handle.clone(),
            container,
            repo: repo.display().to_string(),
            host_out,
            host_in,
            results,
            count: 0,
            broken: None,
            stopper: self.stopper.clone(),
            root,
        };
        sandbox.copy_repo()?;
        Ok(Box::new(sandbox))
    }

    /// `docker:IMAGE@ID`: a rebuilt image is a different runner, so repositories graded in
    /// the old one are graded again.
    fn name(&self) -> String {
        let id = self
            .image
            .id
            .strip_prefix("sha256:")
            .unwrap_or(&self.image.id);
        format!("docker:{}@{}", self.image.tag, id.get(..12).unwrap_or(id))
    }
}

/// One repository's container. Dropping it removes the container.
struct DockerSandbox {
    docker: Docker,
    handle: Handle,
    container: String,
    /// The repository's path, which is also where it is mounted (read-only) inside.
    repo: String,
    host_out: PathBuf,
    host_in: PathBuf,
    /// Snapshots of each command's `$TRUN_OUT`; never mounted into the container.
    results: PathBuf,
    count: usize,
    /// Set when the sandbox can no longer be trusted to run anything (see the module docs).
    broken: Option<String>,
    stopper: Stopper,
    root: tempfile::TempDir,
}

impl DockerSandbox {
    fn block<F: Future>(&self, fut: F) -> F::Output {
        block_on(&self.handle, fut)
    }

    fn copy_repo(&mut self) -> Result<(), RunnerError> {
        let argv = [
            "/bin/sh",
            "-c",
            "cp -R \"$TRUN_REPO/.\" /work/ && rm -rf /work/.trun",
        ];
        let env = vec![format!("TRUN_REPO={}", self.repo)];
        let done = self.block(exec_captured(
            &self.docker,
            &self.container,
            argv.iter().map(|s| s.to_string()).collect(),
            env,
            Duration::from_secs(300),
            64 * 1024,
        ));
        match done {
            Ok(ex) if ex.exit_code == Some(0) => Ok(()),
            Ok(ex) => Err(RunnerError::Copy {
                repo: PathBuf::from(&self.repo),
                source: io::Error::other(format!(
                    "copying into the container failed ({}): {}",
                    ex.describe(),
                    ex.stderr.text.trim()
                )),
            }),
            Err(e) => Err(RunnerError::Other(e.to_string())),
        }
    }

    /// Kills every process the last command left. Failing to is fatal for the sandbox.
    /// A fork bomb can hold every pid the container may have, so that the kill itself
    /// cannot start: retry for a while, since its processes come and go.
    fn kill_leftovers(&mut self) {
        let mut problem = String::new();
        for attempt in 0..KILL_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200));
            }
            let done = self.block(exec_captured(
                &self.docker,
                &self.container,
                vec!["/bin/sh".into(), "-c".into(), KILL_ALL.into()],
                Vec::new(),
                Duration::from_secs(30),
                4096,
            ));
            problem = match done {
                Ok(ex) if ex.exit_code == Some(0) => return,
                Ok(ex) => format!("{}: {}", ex.describe(), ex.stderr.text.trim()),
                Err(e) => e.to_string(),
            };
        }
        self.broken = Some(format!(
            "the grading container can no longer stop leftover processes ({problem}); an earlier command may have broken it"
        ));
    }
}

impl Sandbox for DockerSandbox {
    fn run(&mut self, spec: &CommandSpec<'_>) -> Result<Execution, RunnerError> {
        if let Some(why) = &self.broken {
            return Err(RunnerError::Other(why.clone()));
        }
        self.count += 1;
        let name = format!(
            "{:03}-{}-{}",
            self.count,
            super::runner::sanitize(spec.label),
            random_hex(8)
        );
        let host_out = self.host_out.join(&name);
        std::fs::create_dir(&host_out).map_err(RunnerError::TempDir)?;
        std::fs::set_permissions(&host_out, std::fs::Permissions::from_mode(0o777))
            .map_err(RunnerError::TempDir)?;
        let out = format!("{OUT_MOUNT}/{name}");
        let program = spec.shell.program().to_string();
        let argv: Vec<String> = match spec.stdin {
            Some(input) => {
                std::fs::write(self.host_in.join(&name), input).map_err(RunnerError::TempDir)?;
                vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "exec \"$0\" -c \"$1\" < \"$2\"".into(),
                    program,
                    spec.script.to_string(),
                    format!("{IN_MOUNT}/{name}"),
                ]
            }
            None => vec![program, "-c".into(), spec.script.to_string()],
        };
        let env = vec![
            format!("TRUN_OUT={out}"),
            format!("TRUN_SCORE={out}/score"),
            format!("TRUN_CRITERION={}", spec.label),
            format!("TRUN_REPO={}", self.repo),
        ];
        let done = self.block(exec_captured(
            &self.docker,
            &self.container,
            argv,
            env,
            spec.timeout,
            spec.max_output,
        ));
        // Even when the exec failed to start, something may have run.
        self.kill_leftovers();
        let ex = done.map_err(|e| RunnerError::Other(e.to_string()))?;
        let snapshot = self.results.join(&name);
        std::fs::create_dir(&snapshot).map_err(RunnerError::TempDir)?;
        let mut budget = OUT_FILES_CAP;
        copy_regular_files(&host_out, &snapshot, &mut budget, 0).map_err(RunnerError::TempDir)?;
        Ok(Execution {
            exit_code: ex.exit_code,
            timed_out: ex.timed_out,
            stdout: ex.stdout,
            stderr: ex.stderr,
            duration: ex.duration,
            out_dir: snapshot,
        })
    }
}

impl Drop for DockerSandbox {
    fn drop(&mut self) {
        // Files a command wrote into the bind mount belong to the container's root; remove
        // them from inside, or a grader that is not root could not delete its temp dir.
        let _ = self.block(exec_captured(
            &self.docker,
            &self.container,
            vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("rm -rf {OUT_MOUNT}/* {OUT_MOUNT}/.[!.]*"),
            ],
            Vec::new(),
            Duration::from_secs(30),
            4096,
        ));
        let _ = self.block(self.docker.remove_job_container(&self.container, None));
        self.stopper.track(self.root.path(), false);
    }
}

/// How an exec ended, with its output capped.
struct Ended {
    /// `None` when killed after a timeout.
    exit_code: Option<i32>,
    timed_out: bool,
    stdout: Captured,
    stderr: Captured,
    duration: Duration,
}

impl Ended {
    fn describe(&self) -> String {
        match (self.timed_out, self.exit_code) {
            (true, _) => "timed out".to_string(),
            (false, Some(code)) => format!("exit code {code}"),
            (false, None) => "killed".to_string(),
        }
    }
}

/// Keeps the first `cap` bytes of a stream and counts the rest.
struct Cap {
    kept: Vec<u8>,
    total: u64,
    cap: u64,
}

impl Cap {
    fn new(cap: u64) -> Cap {
        Cap {
            kept: Vec::new(),
            total: 0,
            cap,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.kept.len() as u64) as usize;
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.total += bytes.len() as u64;
    }

    fn finish(self, cut_short: bool) -> Captured {
        Captured {
            truncated: cut_short || self.total > self.kept.len() as u64,
            text: String::from_utf8_lossy(&self.kept).into_owned(),
            total_bytes: self.total,
        }
    }
}

/// Runs `argv` in `container`, reading raw output with a cap, killing everything but init
/// when `timeout` passes. Not [`Docker::exec_until`]: that one splits output into lines,
/// and a command printing without newlines would make it buffer without bound.
async fn exec_captured(
    docker: &Docker,
    container: &str,
    argv: Vec<String>,
    env: Vec<String>,
    timeout: Duration,
    cap: u64,
) -> Result<Ended, DockerError> {
    let api = docker.api();
    let created = api
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                env: Some(env),
                cmd: Some(argv),
                working_dir: Some(WORK.to_string()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| api_error("creating an exec in the grading container", e))?;
    let started = Instant::now();
    let StartExecResults::Attached { mut output, .. } = api
        .start_exec(&created.id, None)
        .await
        .map_err(|e| api_error("starting an exec in the grading container", e))?
    else {
        return Err(DockerError::Api {
            action: "starting an exec in the grading container".into(),
            message: "the daemon did not attach its output".into(),
        });
    };
    let (mut stdout, mut stderr) = (Cap::new(cap), Cap::new(cap));
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + EXIT_POLL, EXIT_POLL);
    let mut timed_out = false;
    // Set once the command is over: from then on output is read only until this instant.
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut ended_at: Option<Instant> = None;
    let mut cut_short = false;
    loop {
        let drain = async {
            match drain_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            item = output.next() => match item {
                None => break,
                Some(Ok(LogOutput::StdOut { message })) => stdout.push(&message),
                Some(Ok(LogOutput::StdErr { message })) => stderr.push(&message),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(api_error("reading the output of an exec", e)),
            },
            _ = &mut deadline, if drain_until.is_none() => {
                timed_out = true;
                ended_at = Some(Instant::now());
                kill_all(docker, container).await;
                drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            // A background process can hold the output open after the command exited;
            // the command is over when the daemon says so.
            _ = poll.tick(), if drain_until.is_none() => {
                let running = api
                    .inspect_exec(&created.id)
                    .await
                    .map_err(|e| api_error("inspecting an exec", e))?
                    .running;
                if running == Some(false) {
                    ended_at = Some(Instant::now());
                    kill_all(docker, container).await;
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                }
            }
            _ = drain => {
                cut_short = true;
                break;
            }
        }
    }
    let duration = ended_at.unwrap_or_else(Instant::now) - started;
    let mut exit_code = None;
    // The stream can close a moment before the daemon records the exit code.
    for _ in 0..100 {
        let info = api
            .inspect_exec(&created.id)
            .await
            .map_err(|e| api_error("inspecting an exec", e))?;
        if info.running != Some(true) {
            exit_code = info.exit_code;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Ended {
        exit_code: if timed_out {
            None
        } else {
            exit_code.map(|c| c as i32)
        },
        timed_out,
        stdout: stdout.finish(cut_short),
        stderr: stderr.finish(cut_short),
        duration,
    })
}

/// `kill -9 -1` in the container, ignoring failures (the caller's own kill check reports
/// them): used to end a timed-out command at once.
async fn kill_all(docker: &Docker, container: &str) {
    let api = docker.api();
    let created = api
        .create_exec(
            container,
            CreateExecOptions::<String> {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(vec!["/bin/sh".into(), "-c".into(), KILL_ALL.into()]),
                ..Default::default()
            },
        )
        .await;
    if let Ok(created) = created {
        if let Ok(StartExecResults::Attached { mut output, .. }) =
            api.start_exec(&created.id, None).await
        {
            while output.next().await.is_some() {}
        }
    }
}

fn api_error(action: &str, e: bollard::errors::Error) -> DockerError {
    let message = match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            message.trim().to_string()
        }
        other => other.to_string(),
    };
    DockerError::Api {
        action: action.to_string(),
        message,
    }
}

/// Copies the regular files below `from` into `to`, never following a symlink and never
/// opening anything but a regular file, until `budget` bytes are used (the file that
/// crosses it is cut). Depth is limited so a deep tree cannot exhaust the stack.
fn copy_regular_files(from: &Path, to: &Path, budget: &mut u64, depth: usize) -> io::Result<()> {
    if depth > 16 {
        return Ok(());
    }
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let dst = to.join(entry.file_name());
        if kind.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_regular_files(&entry.path(), &dst, budget, depth + 1)?;
        } else if kind.is_file() && *budget > 0 {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(entry.path());
            let Ok(file) = file else { continue };
            if !file.metadata()?.is_file() {
                continue;
            }
            let mut bytes = Vec::new();
            file.take(*budget).read_to_end(&mut bytes)?;
            *budget -= bytes.len() as u64;
            std::fs::write(&dst, bytes)?;
        }
    }
    Ok(())
}

/// `n` random hex digits from the kernel, so a name cannot be guessed from inside.
fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // No /dev/urandom: fall back on the clock, still unknown inside the container.
        use sha2::Digest;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let h = sha2::Sha256::digest(format!("{now}:{}", std::process::id()));
        let len = bytes.len();
        bytes.copy_from_slice(&h[..len]);
    }
    let mut s = hex::encode(bytes);
    s.truncate(n);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_cap_keeps_the_head_and_counts_the_rest() {
        let mut c = Cap::new(5);
        c.push(b"abc");
        c.push(b"defgh");
        let got = c.finish(false);
        assert_eq!(got.text, "abcde");
        assert_eq!(got.total_bytes, 8);
        assert!(got.truncated);
    }

    #[test]
    fn out_files_copy_skips_links_and_fifos() {
        let dir = tempfile::tempdir().expect("tempdir");
        let from = dir.path().join("from");
        let to = dir.path().join("to");
        std::fs::create_dir_all(from.join("sub")).expect("mkdir");
        std::fs::create_dir(&to).expect("mkdir");
        std::fs::write(from.join("score"), "0.5").expect("write");
        std::fs::write(from.join("sub/junit.xml"), "<x/>").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", from.join("link")).expect("symlink");
        nix::unistd::mkfifo(&from.join("fifo"), nix::sys::stat::Mode::S_IRWXU).expect("fifo");
        let mut budget = OUT_FILES_CAP;
        copy_regular_files(&from, &to, &mut budget, 0).expect("copy");
        assert_eq!(
            std::fs::read_to_string(to.join("score")).expect("score"),
            "0.5"
        );
        assert_eq!(
            std::fs::read_to_string(to.join("sub/junit.xml")).expect("junit"),
            "<x/>"
        );
        assert!(to.join("link").symlink_metadata().is_err());
        assert!(to.join("fifo").symlink_metadata().is_err());
    }

    #[test]
    fn out_files_copy_stops_at_the_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        std::fs::create_dir(&from).expect("mkdir");
        std::fs::create_dir(&to).expect("mkdir");
        std::fs::write(from.join("big"), "x".repeat(100)).expect("write");
        let mut budget = 60;
        copy_regular_files(&from, &to, &mut budget, 0).expect("copy");
        assert_eq!(budget, 0);
        assert_eq!(std::fs::read(to.join("big")).expect("big").len(), 60);
    }

    #[test]
    fn random_names_differ() {
        let a = random_hex(8);
        assert_eq!(a.len(), 8);
        assert_ne!(a, random_hex(8));
    }
}
