//! Grading containers: one isolated container per graded repository, in which the engine
//! `docker exec`s the rubric's commands (see the parent module for the order of things
//! and what the scorer may trust).
//!
//! Layout inside the container:
//! - the root file system is **read-only**; nothing of the host is mounted writable;
//! - the repository is bind-mounted **read-only** at its host path (`$TRUN_REPO`) and
//!   copied into `/work`, a tmpfs the size of the memory limit, the working directory of
//!   every command (its pages count against the memory limit);
//! - `/trun`, a small tmpfs ([`TRUN_TMPFS`]), holds each command's `$TRUN_OUT`;
//! - `/tmp` is a small tmpfs for tools that need one;
//! - no network, memory/pid/CPU limits, every capability dropped, `no-new-privileges`.
//!
//! So every byte a submission can write on the host is its output stream, which the
//! engine caps. The container's only process of its own is an idle shell; each command is
//! an exec, and after each one every other process in the container is killed
//! (`kill -9 -1`). If that kill cannot run (a fork bomb holding every pid, a deleted
//! `/bin/sh`), the container refuses to run anything more.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

use super::{Ran, SandboxCommand};
use crate::docker::{ContainerSpec, Docker, DockerError, Labels};
use crate::event::Stream;
use crate::exec::executor::{Command, Executor, JobContainer};
use crate::exec::output::OutputSink;
use crate::exec::process::Exit;
use crate::grade::Limits;

/// Where the scratch copy lives and commands run.
const WORK: &str = "/work";
/// The tmpfs holding each command's `$TRUN_OUT`.
const TRUN: &str = "/trun";
/// Size of [`TRUN`]: score files are small.
pub const TRUN_TMPFS: &str = "32m";
/// How often to try stopping a command's leftovers before giving up on the container.
const KILL_ATTEMPTS: usize = 10;
/// Kills every process the exec can signal: all but the container's init and itself.
const KILL_ALL: &str = "kill -9 -1 2>/dev/null; exit 0";
/// Prints the cgroup's memory events (cgroup v2, else v1), whose `oom_kill` line counts
/// processes the kernel killed for going over the memory limit.
const OOM_EVENTS: &str =
    "cat /sys/fs/cgroup/memory.events 2>/dev/null || cat /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null";
/// Prints a regular file (never through a symlink) up to a size, exit 3 when there is none.
const READ_FILE: &str = r#"[ -f "$1" ] && [ ! -L "$1" ] || exit 3; head -c "$2" -- "$1""#;

/// One repository's grading container.
pub struct GradingContainer {
    docker: std::sync::Arc<Docker>,
    id: String,
    /// The repository's path, which is also where it is mounted (read-only) inside.
    repo: String,
    /// Set when the container can no longer be trusted to run anything.
    broken: Option<String>,
    /// Out-of-memory kills counted so far, to tell whether the last command was one.
    oom_kills: u64,
    memory: u64,
}

impl GradingContainer {
    /// Starts the container for `repo` from `image` and copies the repository into it.
    /// Creating the container is never abandoned halfway (a container created after the
    /// run's cleanup looked would be left behind); a cancellation during the copy stops
    /// it and removes the container, and is `Ok(None)`.
    pub async fn start(
        docker: &std::sync::Arc<Docker>,
        image: &str,
        limits: Limits,
        repo: &Path,
        labels: &Labels,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Option<GradingContainer>, DockerError> {
        let repo = repo.canonicalize().map_err(|e| DockerError::Api {
            action: format!("reading {}", repo.display()),
            message: e.to_string(),
        })?;
        let spec = ContainerSpec {
            image: image.to_string(),
            network: Some("none".to_string()),
            memory: Some(limits.memory.to_string()),
            cpus: limits.cpus,
            pids: Some(i64::from(limits.pids)),
            read_only_workspace: true,
            options: vec![
                "--read-only".to_string(),
                format!("--tmpfs {WORK}:rw,exec,size={}", limits.memory),
                format!("--tmpfs {TRUN}:rw,size={TRUN_TMPFS}"),
                "--tmpfs /tmp:rw,exec,size=64m".to_string(),
                format!("--workdir {WORK}"),
                "--cap-drop ALL".to_string(),
                "--security-opt no-new-privileges".to_string(),
            ],
            ..Default::default()
        };
        let id = docker.start_job_container(&spec, &repo, labels).await?;
        let c = GradingContainer {
            docker: docker.clone(),
            id,
            repo: repo.display().to_string(),
            broken: None,
            oom_kills: 0,
            memory: limits.memory,
        };
        let mut ignore = |_: Stream, _: String| {};
        let copy = c
            .exec(
                vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    format!("cp -R \"$TRUN_REPO/.\" {WORK}/ && rm -rf {WORK}/.trun"),
                ],
                vec![("TRUN_REPO".into(), c.repo.clone())],
                Duration::from_secs(300),
                &mut ignore,
                Some(cancel),
            )
            .await;
        match copy {
            Ok(Exit::Code(0)) => Ok(Some(c)),
            Ok(Exit::Cancelled) => {
                c.remove().await;
                Ok(None)
            }
            Ok(other) => {
                c.remove().await;
                Err(DockerError::Api {
                    action: "copying the repository into the grading container".into(),
                    message: other.reason(),
                })
            }
            Err(e) => {
                c.remove().await;
                Err(e)
            }
        }
    }

    /// Runs one command, then kills whatever it left and reads its score file.
    pub async fn run(
        &mut self,
        cmd: &SandboxCommand<'_>,
        name: &str,
        sink: &mut OutputSink,
        cancel: &mut watch::Receiver<bool>,
    ) -> Ran {
        if let Some(why) = &self.broken {
            return Ran::failed(why.clone());
        }
        let out = format!("{TRUN}/out-{name}");
        let mut ignore = |_: Stream, _: String| {};
        match self
            .exec(
                vec![
                    "mkdir".into(),
                    "-m".into(),
                    "0777".into(),
                    "-p".into(),
                    out.clone(),
                ],
                Vec::new(),
                Duration::from_secs(30),
                &mut ignore,
                None,
            )
            .await
        {
            Ok(Exit::Code(0)) => {}
            Ok(e) => {
                return Ran::failed(format!(
                    "cannot create $TRUN_OUT in the container: {}",
                    e.reason()
                ))
            }
            Err(e) => return Ran::failed(e.to_string()),
        }
        let command = Command {
            argv: super::shell_argv(cmd),
            env: vec![
                ("TRUN_OUT".to_string(), out.clone()),
                ("TRUN_SCORE".to_string(), format!("{out}/score")),
                ("TRUN_CRITERION".to_string(), cmd.label.to_string()),
                ("TRUN_REPO".to_string(), self.repo.clone()),
            ],
            cwd: WORK.into(),
            stdin: cmd.stdin.map(|s| s.as_bytes().to_vec()),
            timeout: Some(cmd.timeout),
        };
        let exit = JobContainer::new(self.docker.clone(), self.id.clone())
            .run(&command, sink, cancel.clone())
            .await;
        // Even when the exec failed to start, something may have run.
        self.kill_leftovers().await;
        // SIGKILL (128 + 9) that was not ours: the memory limit, if the cgroup says so.
        let note = match exit {
            Exit::Code(137) => self.oom_since_last().await.then(|| {
                format!(
                    "out of memory (the container's limit is {})",
                    crate::rubric::ByteSize(self.memory)
                )
            }),
            _ => None,
        };
        if let Some(why) = &self.broken {
            return Ran {
                exit,
                files: Err(why.clone()),
                note,
            };
        }
        let files = match cmd.score_file {
            Some(f) => self.read_file(&out, f).await,
            None => Ok(BTreeMap::new()),
        };
        Ran { exit, files, note }
    }

    /// Whether the container's cgroup counted an out-of-memory kill since the last call.
    async fn oom_since_last(&mut self) -> bool {
        let mut text = String::new();
        let mut keep = |stream: Stream, line: String| {
            if stream == Stream::Stdout && text.len() < 4096 {
                text.push_str(&line);
                text.push('\n');
            }
        };
        let _ = self
            .exec(
                vec!["/bin/sh".into(), "-c".into(), OOM_EVENTS.into()],
                Vec::new(),
                Duration::from_secs(30),
                &mut keep,
                None,
            )
            .await;
        let count = text
            .lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let new = count > self.oom_kills;
        self.oom_kills = count;
        new
    }

    /// Runs `argv` to its end (or `timeout`, or cancellation), through the engine's exec.
    async fn exec(
        &self,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        timeout: Duration,
        on_line: &mut (dyn FnMut(Stream, String) + Send),
        cancel: Option<&mut watch::Receiver<bool>>,
    ) -> Result<Exit, DockerError> {
        let mut timed_out = false;
        let mut cancelled = false;
        let stop = async {
            let cancel_wait = async {
                match cancel {
                    Some(c) => crate::exec::cancelled(c).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(timeout) => timed_out = true,
                _ = cancel_wait => cancelled = true,
            }
        };
        let outcome = self
            .docker
            .exec_until(&self.id, argv, env, Path::new(WORK), on_line, stop)
            .await?;
        Ok(if cancelled {
            Exit::Cancelled
        } else if timed_out {
            Exit::TimedOut(timeout)
        } else {
            Exit::Code(outcome.exit_code as i32)
        })
    }

    /// Kills every process the last command left. Failing to is fatal for the container.
    /// A fork bomb can hold every pid the container may have, so that the kill itself
    /// cannot start: retry for a while, since its processes come and go.
    async fn kill_leftovers(&mut self) {
        let mut problem = String::new();
        for attempt in 0..KILL_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let mut ignore = |_: Stream, _: String| {};
            problem = match self
                .exec(
                    vec!["/bin/sh".into(), "-c".into(), KILL_ALL.into()],
                    Vec::new(),
                    Duration::from_secs(30),
                    &mut ignore,
                    None,
                )
                .await
            {
                Ok(Exit::Code(0)) => return,
                Ok(e) => e.reason(),
                Err(e) => e.to_string(),
            };
        }
        self.broken = Some(format!(
            "the grading container can no longer stop leftover processes ({problem}); an earlier command may have broken it"
        ));
    }

    /// The score file `name` of the command whose `$TRUN_OUT` is `out`, if it left one.
    async fn read_file(&self, out: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        if !super::valid_out_path(name) {
            return Err(format!(
                "score file `{name}` must be a relative path inside $TRUN_OUT"
            ));
        }
        let cap = super::OUT_FILE_CAP;
        let mut text: Vec<u8> = Vec::new();
        let mut keep = |stream: Stream, line: String| {
            if stream == Stream::Stdout && (text.len() as u64) < cap {
                text.extend_from_slice(line.as_bytes());
                text.push(b'\n');
            }
        };
        let exit = self
            .exec(
                vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    READ_FILE.into(),
                    "trun-read".into(),
                    format!("{out}/{name}"),
                    cap.to_string(),
                ],
                Vec::new(),
                Duration::from_secs(30),
                &mut keep,
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        match exit {
            Exit::Code(0) => Ok(BTreeMap::from([(name.to_string(), text)])),
            Exit::Code(3) => Ok(BTreeMap::new()),
            other => Err(format!("cannot read $TRUN_OUT/{name}: {}", other.reason())),
        }
    }

    /// Removes the container.
    pub async fn remove(self) {
        let _ = self.docker.remove_job_container(&self.id, None).await;
    }
}
