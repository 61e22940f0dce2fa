//! One local process per step attempt: spawned in its own process group so a
//! timeout or Ctrl-C can kill everything the step started, with its output
//! streamed line by line to the log file and to the engine's events.

use crate::event::Stream;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

/// How a process attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut(Duration),
    Cancelled,
    SpawnFailed(String),
    /// Not a process: an action or the container runtime failed, with why.
    Failed(String),
}

impl Exit {
    pub fn success(&self) -> bool {
        matches!(self, Exit::Code(0))
    }

    pub fn code(&self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(*c),
            _ => None,
        }
    }

    pub fn reason(&self) -> String {
        match self {
            Exit::Code(c) => format!("exit code {c}"),
            Exit::Signal(s) => {
                let name = Signal::try_from(*s)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| s.to_string());
                format!("killed by {name}")
            }
            Exit::TimedOut(d) => format!("timed out after {}", crate::duration::format(*d)),
            Exit::Cancelled => "cancelled".into(),
            Exit::SpawnFailed(e) | Exit::Failed(e) => e.clone(),
        }
    }
}

/// What to run.
pub struct Spec<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    pub timeout: Option<Duration>,
}

/// How long a process group gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// Run a process to completion, streaming its lines to `on_line` and `log`.
pub async fn run(
    spec: Spec<'_>,
    log: &mut (dyn Write + Send),
    cancel: &mut watch::Receiver<bool>,
    on_line: &mut (dyn FnMut(Stream, String) + Send),
) -> Exit {
    let Some((prog, args)) = spec.argv.split_first() else {
        return Exit::SpawnFailed("empty command".into());
    };
    // stdout and stderr share one pipe, as in a terminal: the log keeps the
    // order the step wrote its lines in (two pipes would race each other).
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return Exit::SpawnFailed(format!("cannot create a pipe: {e}")),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return Exit::SpawnFailed(format!("cannot create a pipe: {e}")),
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .current_dir(spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0)
        .kill_on_drop(false);
    let spawned = cmd.spawn();
    // Our copies of the write end must close, or the reader never sees EOF.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Exit::SpawnFailed(format!("`{prog}` not found on PATH"));
        }
        Err(e) => return Exit::SpawnFailed(format!("cannot start `{prog}`: {e}")),
    };
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Stream, Vec<u8>)>();
    let out =
        match tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(reader)) {
            Ok(r) => Some(tokio::spawn(pump(r, Stream::Stdout, tx.clone()))),
            Err(_) => None,
        };
    drop(tx);

    let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);
    let sleep_until = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep_until);
    let mut lines_open = true;
    let mut forced: Option<Exit> = None;
    let status = loop {
        tokio::select! {
            biased;
            line = rx.recv(), if lines_open => match line {
                Some((stream, bytes)) => emit(log, on_line, stream, bytes),
                None => lines_open = false,
            },
            st = child.wait() => break st,
            _ = &mut sleep_until, if forced.is_none() => {
                forced = Some(Exit::TimedOut(spec.timeout.unwrap_or_default()));
                terminate(pgid, &mut child).await;
            }
            r = cancel.changed(), if forced.is_none() => {
                if r.is_err() || *cancel.borrow() {
                    forced = Some(Exit::Cancelled);
                    terminate(pgid, &mut child).await;
                }
            }
        }
    };
    // The step is over: whatever it left running in its group goes too, so
    // no orphan outlives its step and the pipes close.
    if let Some(p) = pgid {
        let _ = killpg(p, Signal::SIGKILL);
    }
    while let Some((stream, bytes)) = rx.recv().await {
        emit(log, on_line, stream, bytes);
    }
    if let Some(h) = out {
        let _ = h.await;
    }
    let _ = log.flush();
    if let Some(f) = forced {
        return f;
    }
    match status {
        Ok(st) => {
            use std::os::unix::process::ExitStatusExt;
            match (st.code(), st.signal()) {
                (Some(c), _) => Exit::Code(c),
                (None, Some(s)) => Exit::Signal(s),
                _ => Exit::Code(-1),
            }
        }
        Err(e) => Exit::SpawnFailed(format!("waiting for the process failed: {e}")),
    }
}

/// SIGTERM the group, give it a grace period, then SIGKILL.
async fn terminate(pgid: Option<Pid>, child: &mut tokio::process::Child) {
    let Some(p) = pgid else { return };
    let _ = killpg(p, Signal::SIGTERM);
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        let _ = killpg(p, Signal::SIGKILL);
    }
}

fn emit(
    log: &mut (dyn Write + Send),
    on_line: &mut (dyn FnMut(Stream, String) + Send),
    stream: Stream,
    bytes: Vec<u8>,
) {
    let _ = log.write_all(&bytes);
    let mut s = String::from_utf8_lossy(&bytes).into_owned();
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    on_line(stream, s);
}

async fn pump<R: AsyncRead + Unpin>(
    r: R,
    stream: Stream,
    tx: tokio::sync::mpsc::UnboundedSender<(Stream, Vec<u8>)>,
) {
    let mut r = BufReader::new(r);
    loop {
        let mut buf = Vec::new();
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if tx.send((stream, buf)).is_err() {
                    break;
                }
            }
        }
    }
}
