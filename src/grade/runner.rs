//! Running a rubric's commands against one student repository, isolated from the original.
//!
//! A [`CriterionRunner`] opens a [`Sandbox`] for a repository: a writable scratch copy in
//! which commands run, so nothing a student's code does can change the repository being
//! graded. [`LocalRunner`] copies the repository to a temporary directory and runs
//! `sh -c` (or `bash -c`) there in its own process group; a container runner can implement
//! the same two traits without the scorer or the batch changing. This module does not judge
//! results: it reports exit codes, captured output and time, and `score` decides.
//!
//! Local runs are isolated from the *original* only by working on a copy: a command can
//! still read and write anything its user can. Real isolation (no network, resource limits)
//! is the container runner's job.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::rubric::Shell;

/// One command to run in a sandbox.
#[derive(Debug, Clone)]
pub struct CommandSpec<'a> {
    /// Names the command's `$TRUN_OUT` directory: a criterion id, or `setup`.
    pub label: &'a str,
    pub script: &'a str,
    pub shell: Shell,
    /// Written to standard input, which is then closed. `None`: standard input is empty.
    pub stdin: Option<&'a str>,
    /// The whole process group is killed after this long.
    pub timeout: Duration,
    /// Bytes kept per stream; the rest is read and dropped so the command never blocks.
    pub max_output: u64,
}

/// What a captured stream held.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Captured {
    /// The first `max_output` bytes, decoded lossily as UTF-8.
    pub text: String,
    /// Every byte the command wrote to the stream.
    pub total_bytes: u64,
    /// True when bytes were dropped (over the cap, or the pipe was abandoned).
    pub truncated: bool,
}

/// How one command ended.
#[derive(Debug, Clone)]
pub struct Execution {
    /// `None` when killed by a signal (including after a timeout).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub stdout: Captured,
    pub stderr: Captured,
    pub duration: Duration,
    /// The command's `$TRUN_OUT` as seen from the grader, readable until the sandbox is
    /// dropped. Files a command leaves here (`junit.xml`, `score`) feed partial credit.
    pub out_dir: PathBuf,
}

impl Execution {
    pub fn succeeded(&self) -> bool {
        !self.timed_out && self.exit_code == Some(0)
    }

    /// `exit code 2`, `killed by a signal`, `timed out after 5s`.
    pub fn describe(&self, timeout: Duration) -> String {
        if self.timed_out {
            format!("timed out after {}", super::rubric::DurationSpec(timeout))
        } else {
            match self.exit_code {
                Some(code) => format!("exit code {code}"),
                None => "killed by a signal".to_string(),
            }
        }
    }
}

/// The runner failed to do its job (not the student's command failing).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("cannot copy repository {repo} to a scratch directory: {source}")]
    Copy { repo: PathBuf, source: io::Error },
    #[error("repository {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot create a temporary directory: {0}")]
    TempDir(io::Error),
    #[error("cannot start `{shell}`: {source}")]
    Spawn { shell: String, source: io::Error },
    #[error("{0}")]
    Other(String),
}

/// Opens isolated workspaces for repositories. Implementations must be shareable across the
/// batch's worker threads.
pub trait CriterionRunner: Send + Sync {
    /// Prepares a sandbox for `repo`: a writable scratch copy that commands run in.
    fn open(&self, repo: &Path) -> Result<Box<dyn Sandbox>, RunnerError>;

    /// A short name for reports and fingerprints (`local`, `docker:python:3.12`).
    fn name(&self) -> String;
}

/// One repository's scratch workspace. Dropping it removes everything it created.
pub trait Sandbox: Send {
    /// Runs one command in the scratch copy, with `TRUN_OUT` set to a fresh directory and
    /// `TRUN_SCORE` to a file in it.
    fn run(&mut self, spec: &CommandSpec<'_>) -> Result<Execution, RunnerError>;
}

/// Runs commands on this machine in a temporary copy of the repository.
#[derive(Debug, Clone, Default)]
pub struct LocalRunner {
    /// Directory names not copied into the sandbox (default: `.trun`, trun's own state).
    pub skip: Vec<String>,
}

impl LocalRunner {
    pub fn new() -> LocalRunner {
        LocalRunner {
            skip: vec![".trun".to_string()],
        }
    }
}

impl CriterionRunner for LocalRunner {
    fn open(&self, repo: &Path) -> Result<Box<dyn Sandbox>, RunnerError> {
        if !repo.is_dir() {
            return Err(RunnerError::NotADirectory(repo.to_path_buf()));
        }
        let root = tempfile::Builder::new()
            .prefix("trun-grade-")
            .tempdir()
            .map_err(RunnerError::TempDir)?;
        // The outputs live beside the copy, not inside it, so a command cannot find or
        // pre-seed another criterion's result files by walking its working directory.
        let work = root.path().join("repo");
        let outs = root.path().join("out");
        fs::create_dir(&outs).map_err(RunnerError::TempDir)?;
        copy_tree(repo, &work, &self.skip).map_err(|source| RunnerError::Copy {
            repo: repo.to_path_buf(),
            source,
        })?;
        Ok(Box::new(LocalSandbox {
            _root: root,
            work,
            outs,
            count: 0,
        }))
    }

    fn name(&self) -> String {
        "local".to_string()
    }
}

struct LocalSandbox {
    _root: tempfile::TempDir,
    work: PathBuf,
    outs: PathBuf,
    count: usize,
}

impl Sandbox for LocalSandbox {
    fn run(&mut self, spec: &CommandSpec<'_>) -> Result<Execution, RunnerError> {
        self.count += 1;
        let out_dir = self
            .outs
            .join(format!("{:03}-{}", self.count, sanitize(spec.label)));
        fs::create_dir_all(&out_dir).map_err(RunnerError::TempDir)?;
        run_local(spec, &self.work, &out_dir)
    }
}

/// A command label as a file-name fragment.
pub(crate) fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Copies `from` into `to` (created), recreating symlinks as symlinks so a link to `/`
/// does not copy the machine.
pub fn copy_tree(from: &Path, to: &Path, skip: &[String]) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == s.as_str()) {
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst, &[])?;
        } else if kind.is_file() {
            fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// How long to wait for output pipes after the command's process group is gone. A process
/// that escaped the group (setsid) can hold them open forever; we stop waiting.
const PIPE_GRACE: Duration = Duration::from_secs(2);

fn run_local(
    spec: &CommandSpec<'_>,
    work: &Path,
    out_dir: &Path,
) -> Result<Execution, RunnerError> {
    let mut cmd = Command::new(spec.shell.program());
    cmd.arg("-c")
        .arg(spec.script)
        .current_dir(work)
        .env("TRUN_OUT", out_dir)
        .env("TRUN_SCORE", out_dir.join("score"))
        .env("TRUN_CRITERION", spec.label)
        .env("PWD", work)
        .env_remove("OLDPWD")
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| RunnerError::Spawn {
        shell: spec.shell.program().to_string(),
        source,
    })?;
    let pgid = child.id() as i32;

    if let (Some(mut pipe), Some(input)) = (child.stdin.take(), spec.stdin) {
        let input = input.as_bytes().to_vec();
        // A command that never reads its input must not block us: write on a thread and
        // ignore a broken pipe. Dropping `pipe` closes standard input.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let stdout = child.stdout.take().map(|p| capture(p, spec.max_output));
    let stderr = child.stderr.take().map(|p| capture(p, spec.max_output));

    let (status_tx, status_rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = status_tx.send(child.wait());
    });
    let (status, timed_out) = match status_rx.recv_timeout(spec.timeout) {
        Ok(status) => (status, false),
        Err(_) => {
            kill_group(pgid);
            (
                status_rx
                    .recv()
                    .unwrap_or_else(|e| Err(io::Error::other(e))),
                true,
            )
        }
    };
    // Background processes the command left behind belong to the criterion, not to the
    // grader: end them so they cannot hold pipes open or disturb the next criterion.
    kill_group(pgid);
    let duration = started.elapsed();
    let exit_code = match status {
        Ok(s) if !timed_out => s.code(),
        _ => None,
    };
    let deadline = Instant::now() + PIPE_GRACE;
    Ok(Execution {
        exit_code,
        timed_out,
        stdout: collect(stdout, deadline),
        stderr: collect(stderr, deadline),
        duration,
        out_dir: out_dir.to_path_buf(),
    })
}

fn kill_group(pgid: i32) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
}

/// Reads a pipe to its end on a thread, keeping at most `cap` bytes.
fn capture<R: Read + Send + 'static>(mut pipe: R, cap: u64) -> mpsc::Receiver<Captured> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut total: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = cap.saturating_sub(kept.len() as u64) as usize;
                    kept.extend_from_slice(&buf[..n.min(room)]);
                    total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = tx.send(Captured {
            text: String::from_utf8_lossy(&kept).into_owned(),
            total_bytes: total,
            truncated: total > kept.len() as u64,
        });
    });
    rx
}

fn collect(rx: Option<mpsc::Receiver<Captured>>, deadline: Instant) -> Captured {
    let Some(rx) = rx else {
        return Captured::default();
    };
    let wait = deadline.saturating_duration_since(Instant::now());
    rx.recv_timeout(wait).unwrap_or(Captured {
        text: String::new(),
        total_bytes: 0,
        truncated: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(script: &'a str, stdin: Option<&'a str>, timeout_ms: u64) -> CommandSpec<'a> {
        CommandSpec {
            label: "t",
            script,
            shell: Shell::Sh,
            stdin,
            timeout: Duration::from_millis(timeout_ms),
            max_output: 1024,
        }
    }

    fn sandbox() -> (tempfile::TempDir, Box<dyn Sandbox>) {
        let repo = tempfile::tempdir().expect("tempdir");
        fs::write(repo.path().join("file.txt"), "original").expect("write");
        let sb = LocalRunner::new().open(repo.path()).expect("open");
        (repo, sb)
    }

    #[test]
    fn stdin_is_written_then_closed() {
        let (_repo, mut sb) = sandbox();
        let ex = sb
            .run(&spec("cat; echo done", Some("hello\n"), 5000))
            .expect("run");
        assert_eq!(ex.exit_code, Some(0));
        assert_eq!(ex.stdout.text, "hello\ndone\n");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let (_repo, mut sb) = sandbox();
        let started = Instant::now();
        let ex = sb
            .run(&spec("sleep 30 & sleep 30; echo never", None, 300))
            .expect("run");
        assert!(ex.timed_out);
        assert_eq!(ex.exit_code, None);
        // The background sleep held stdout too: it must have died with the group.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(ex.stdout.text, "");
    }

    #[test]
    fn output_is_capped_and_drained() {
        let (_repo, mut sb) = sandbox();
        let ex = sb
            .run(&spec(
                "head -c 3000000 /dev/zero | tr '\\0' x; echo tail >&2",
                None,
                20_000,
            ))
            .expect("run");
        assert_eq!(ex.exit_code, Some(0));
        assert_eq!(ex.stdout.text.len(), 1024);
        assert_eq!(ex.stdout.total_bytes, 3_000_000);
        assert!(ex.stdout.truncated);
        assert_eq!(ex.stderr.text, "tail\n");
    }

    #[test]
    fn commands_work_on_a_copy_with_trun_out_outside_it() {
        let (repo, mut sb) = sandbox();
        let ex = sb
            .run(&spec(
                "cat file.txt; echo changed > file.txt; echo 0.5 > \"$TRUN_SCORE\"; case \"$TRUN_OUT\" in \"$PWD\"*) echo inside;; *) echo outside;; esac",
                None,
                5000,
            ))
            .expect("run");
        assert_eq!(ex.stdout.text, "originaloutside\n");
        assert_eq!(
            fs::read_to_string(repo.path().join("file.txt")).expect("read"),
            "original"
        );
        assert_eq!(
            fs::read_to_string(ex.out_dir.join("score")).expect("score"),
            "0.5\n"
        );
    }
}
