//! The local executor: one host process per command, and the means to make
//! sure nothing it starts outlives it.
//!
//! A command runs in its own process group with a unique `TRUN_STEP_TOKEN`
//! in its environment, which everything it starts inherits. trun is a child
//! subreaper (`PR_SET_CHILD_SUBREAPER`), so a process that leaves the group
//! (`setsid`, a double fork) is re-parented to trun rather than to init and
//! stays findable. When the command ends — its main process exited and the
//! output pipes closed or a short drain window passed, or its timeout or the
//! run's cancellation fired — the group is killed and so is every process
//! carrying the token (found in `/proc/*/environ`). A process that clears its
//! environment *and* leaves the group escapes the token scan; it is still
//! trun's child and dies with trun's session at the latest.
//!
//! While a command runs, a record of its token sits in `.trun/procs/` (when
//! the caller gives that directory): if trun is SIGKILLed, the next trun in
//! the workspace reads the records of dead owners and kills what they left
//! ([`reap_orphans`]), so a step never runs twice at once. The record is one
//! file per trun process and directory, written when its first command
//! starts: it names a token prefix that every command's token starts with,
//! and gains a line (token and label) per command. Creating and removing a
//! file per command was a fifth of trun's own time per trivial step.
//!
//! Not here: what a step is, retries, logs (see [`super::output`]).

use super::executor::{Command, Executor};
use super::output::OutputSink;
use crate::event::Stream;
use futures_util::future::BoxFuture;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

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

/// The environment variable carrying a command's token.
pub const TOKEN_VAR: &str = "TRUN_STEP_TOKEN";

/// How long a process group gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// How long output may keep coming after the main process exited (from
/// processes it left behind) before they are killed.
pub const DRAIN: Duration = Duration::from_millis(500);

/// How long the pipes are read after everything was killed; a process that
/// escaped the kill cannot hold trun longer than this.
const AFTER_KILL: Duration = Duration::from_secs(1);

/// How much of a record [`reap_orphans`] reads: a line per command, so about
/// twenty thousand commands' labels; the processes of commands past that are
/// still found by their token's prefix, on the first line.
const RECORD_READ_CAP: u64 = 1 << 20;

/// The commands running now: main pid (also the process group) -> token.
static LIVE: Mutex<Option<HashMap<i32, String>>> = Mutex::new(None);

fn live<T>(f: impl FnOnce(&mut HashMap<i32, String>) -> T) -> T {
    let mut g = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(HashMap::new))
}

/// SIGKILL every running command and everything it started, at once: for a
/// trun that must exit now (a second Ctrl-C) without leaving steps behind.
pub fn kill_all_now() {
    let running: Vec<(i32, String)> = live(|l| l.iter().map(|(p, t)| (*p, t.clone())).collect());
    for (pid, token) in running {
        signal_step(Pid::from_raw(pid), &token, Signal::SIGKILL);
    }
}

/// Make trun the reaper of whatever its steps orphan (once per process).
fn become_subreaper() -> bool {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DONE.get_or_init(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument
        // and touches no memory of ours.
        let ok = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 };
        if ok {
            let _ = std::thread::Builder::new()
                .name("trun-reaper".into())
                .spawn(reap_adopted_zombies);
        }
        ok
    })
}

/// A subreaper adopts what its steps orphan, and an adopted process that exits
/// stays a zombie until trun collects it: in a long run (a step running a test
/// suite that runs trun), they would pile up. Every 250 ms, a child that is a
/// zombie, is not the main process of a running command, and was already one
/// at the previous look (so nobody is about to wait for it) is collected.
fn reap_adopted_zombies() {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let mut before: Vec<i32> = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let Some(children) = children_of_self() else {
            continue;
        };
        let zombies: Vec<i32> = children
            .into_iter()
            .filter(|&p| stat_fields(p).is_some_and(|f| f.first().is_some_and(|s| s == "Z")))
            .filter(|p| !live(|l| l.contains_key(p)))
            .collect();
        for p in zombies.iter().filter(|p| before.contains(p)) {
            let _ = waitpid(Pid::from_raw(*p), Some(WaitPidFlag::WNOHANG));
        }
        before = zombies;
    }
}

/// The pids of trun's children, from `/proc/self/task/*/children`.
fn children_of_self() -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut children = Vec::new();
    for t in tasks.flatten() {
        children.extend(children_of_task(&t.path())?);
    }
    Some(children)
}

/// The children of one of trun's threads (`/proc/self/task/<tid>`).
fn children_of_task(task: &Path) -> Option<Vec<i32>> {
    use std::io::Read;
    // Through `take`, which reads without the stat a `File` makes for a
    // size hint (a proc file says 0): this is read after every step.
    let mut s = String::new();
    std::fs::File::open(task.join("children"))
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut s)
        .ok()?;
    Some(
        s.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
    )
}

/// Runs commands as host processes.
#[derive(Debug, Clone, Default)]
pub struct Local {
    /// `.trun/procs`: where running commands are recorded, if anywhere.
    records: Option<PathBuf>,
    /// What the record says the command is (`build / compile`).
    label: String,
}

impl Local {
    /// A local executor that records nothing.
    pub fn new() -> Local {
        Local::default()
    }

    /// A local executor that records each running command (as `label`) in
    /// `dir`, so a later trun can stop it if this one is killed.
    pub fn recording(dir: PathBuf, label: impl Into<String>) -> Local {
        Local {
            records: Some(dir),
            label: label.into(),
        }
    }
}

impl Executor for Local {
    fn run<'a>(
        &'a self,
        cmd: &'a Command,
        sink: &'a mut OutputSink,
        cancel: watch::Receiver<bool>,
    ) -> BoxFuture<'a, Exit> {
        Box::pin(self.run_local(cmd, sink, cancel))
    }

    fn describe(&self) -> String {
        "local".into()
    }
}

/// Why the command was stopped from outside.
#[derive(Clone, Copy)]
enum Forced {
    Timeout,
    Cancel,
}

impl Local {
    async fn run_local(
        &self,
        spec: &Command,
        sink: &mut OutputSink,
        mut cancel: watch::Receiver<bool>,
    ) -> Exit {
        let Some((prog, args)) = spec.argv.split_first() else {
            return Exit::SpawnFailed("empty command".into());
        };
        if *cancel.borrow() {
            return Exit::Cancelled;
        }
        let subreaper = become_subreaper();
        let recorded = self.records.as_deref().and_then(|d| {
            Record::command(d, &self.label)
                .map_err(|e| eprintln!("trun: warning: cannot record a step process: {e}"))
                .ok()
        });
        let token = match &recorded {
            Some(r) => r.token.clone(),
            None => fresh_token(),
        };
        spawn_and_wait(prog, args, spec, &token, subreaper, sink, &mut cancel).await
    }
}

#[allow(clippy::too_many_arguments)]
async fn spawn_and_wait(
    prog: &str,
    args: &[String],
    spec: &Command,
    token: &str,
    subreaper: bool,
    sink: &mut OutputSink,
    cancel: &mut watch::Receiver<bool>,
) -> Exit {
    let pipes = std::io::pipe().and_then(|o| Ok((o, std::io::pipe()?)));
    let ((out_r, out_w), (err_r, err_w)) = match pipes {
        Ok(p) => p,
        Err(e) => return Exit::SpawnFailed(format!("cannot create a pipe: {e}")),
    };
    // Found here, as make does, rather than by the child trying each PATH entry.
    let path = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| std::ffi::OsString::from(v))
        .or_else(|| std::env::var_os("PATH"));
    let found = path.and_then(|p| crate::shell::find_on_path(prog, &p));
    let mut cmd = tokio::process::Command::new(found.as_deref().unwrap_or(Path::new(prog)));
    cmd.arg0(prog)
        .args(args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(TOKEN_VAR, token)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(out_w)
        .stderr(err_w)
        .process_group(0)
        .kill_on_drop(false);
    let spawned = cmd.spawn();
    // Our copies of the write ends must close, or the reader never sees EOF.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        // The directory is looked at only now: a check before every spawn
        // showed in a run of many short steps.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !spec.cwd.is_dir() => {
            return Exit::SpawnFailed(missing_working_directory(&spec.cwd));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Exit::SpawnFailed(format!("`{prog}` not found on PATH"));
        }
        Err(e) => return Exit::SpawnFailed(format!("cannot start `{prog}`: {e}")),
    };
    let Some(pid) = child.id().map(|id| id as i32) else {
        return Exit::SpawnFailed(format!("`{prog}` exited before it could be watched"));
    };
    live(|l| l.insert(pid, token.to_string()));
    let pgid = Pid::from_raw(pid);
    let feeder = match (child.stdin.take(), &spec.stdin) {
        (Some(mut w), Some(bytes)) => {
            let bytes = bytes.clone();
            Some(tokio::spawn(async move {
                let _ = w.write_all(&bytes).await;
            }))
        }
        _ => None,
    };
    let mut pipes = Pipes::new(out_r, err_r);

    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let deadline = spec.timeout.map_or(far, |t| Instant::now() + t);
    let mut forced: Option<Forced> = None;
    // Armed only when a signal was sent: a timer that never fires still
    // costs a registration on every turn of the loop.
    let mut kill_at: Option<Instant> = None;
    let mut status = None;
    let mut drain_until = far;
    loop {
        if status.is_some() && !pipes.is_open() {
            break;
        }
        // Not `biased`: a pipe that is always ready must not starve the
        // timeout or the exit.
        tokio::select! {
            _ = pipes.pump(sink), if pipes.is_open() => {}
            st = child.wait(), if status.is_none() => {
                status = Some(st);
                drain_until = Instant::now() + DRAIN;
            }
            _ = tokio::time::sleep_until(drain_until), if status.is_some() => break,
            _ = tokio::time::sleep_until(deadline), if spec.timeout.is_some() && forced.is_none() && status.is_none() => {
                forced = Some(Forced::Timeout);
                signal_step(pgid, token, Signal::SIGTERM);
                kill_at = Some(Instant::now() + GRACE);
            }
            r = cancel.changed(), if forced.is_none() && status.is_none() => {
                if r.is_err() || *cancel.borrow() {
                    forced = Some(Forced::Cancel);
                    signal_step(pgid, token, Signal::SIGTERM);
                    kill_at = Some(Instant::now() + GRACE);
                }
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                kill_at = None;
                signal_step(pgid, token, Signal::SIGKILL);
            }
        }
    }
    // The step is over: whatever it left running goes too, so nothing
    // outlives it and the pipes close.
    let status = match status {
        Some(s) => s,
        None => {
            signal_step(pgid, token, Signal::SIGKILL);
            child.wait().await
        }
    };
    live(|l| l.remove(&pid));
    kill_step(pgid, token, subreaper).await;
    let until = Instant::now() + AFTER_KILL;
    while pipes.is_open() {
        tokio::select! {
            _ = pipes.pump(sink) => {}
            _ = tokio::time::sleep_until(until) => break,
        }
    }
    if let Some(f) = feeder {
        f.abort();
    }
    sink.end_of_output();
    match forced {
        Some(Forced::Timeout) => return Exit::TimedOut(spec.timeout.unwrap_or_default()),
        Some(Forced::Cancel) => return Exit::Cancelled,
        None => {}
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

/// Why a step whose directory is not there cannot run.
pub(crate) fn missing_working_directory(dir: &Path) -> String {
    format!("working-directory {} does not exist", dir.display())
}

/// The read ends of a command's stdout and stderr, read by one task so the
/// sink gets chunks in the order they arrived.
struct Pipes {
    out: Option<tokio::net::unix::pipe::Receiver>,
    err: Option<tokio::net::unix::pipe::Receiver>,
    out_buf: Vec<u8>,
    err_buf: Vec<u8>,
}

impl Pipes {
    fn new(out: std::io::PipeReader, err: std::io::PipeReader) -> Pipes {
        // Our own read ends of fresh pipes: one fcntl makes each non-blocking,
        // where tokio's checked constructor spends three syscalls finding out.
        let receiver = |fd: std::io::PipeReader| {
            let fd = std::os::fd::OwnedFd::from(fd);
            nix::fcntl::fcntl(
                &fd,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .ok()?;
            tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(fd).ok()
        };
        Pipes {
            out: receiver(out),
            err: receiver(err),
            // Capacity, not zeroed length: `read_buf` fills the spare capacity, so a
            // step no longer pays for clearing 128 KiB it mostly never uses (15% of
            // trun's own instructions per trivial step).
            out_buf: Vec::with_capacity(64 * 1024),
            err_buf: Vec::with_capacity(64 * 1024),
        }
    }

    fn is_open(&self) -> bool {
        self.out.is_some() || self.err.is_some()
    }

    /// Moves the next chunk from whichever pipe has one into `sink`, or
    /// notes an end of file. Cancel-safe: a chunk read is a chunk written.
    async fn pump(&mut self, sink: &mut OutputSink) {
        async fn read(
            pipe: &mut Option<tokio::net::unix::pipe::Receiver>,
            buf: &mut Vec<u8>,
        ) -> usize {
            buf.clear();
            match pipe {
                Some(p) => p.read_buf(buf).await.unwrap_or(0),
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            n = read(&mut self.out, &mut self.out_buf) => match n {
                0 => self.out = None,
                n => sink.write(Stream::Stdout, &self.out_buf[..n]),
            },
            n = read(&mut self.err, &mut self.err_buf) => match n {
                0 => self.err = None,
                n => sink.write(Stream::Stderr, &self.err_buf[..n]),
            },
        }
    }
}

/// Signal the command's group and every process carrying its token; returns
/// the latter.
fn signal_step(pgid: Pid, token: &str, sig: Signal) -> Vec<i32> {
    let found = pids_with_token(token);
    let _ = killpg(pgid, sig);
    for &p in &found {
        let _ = kill(Pid::from_raw(p), sig);
    }
    found
}

/// After the main process is gone: SIGKILL the group and whatever carries
/// the token, until nothing does; reap the ones that were trun's children.
async fn kill_step(pgid: Pid, token: &str, subreaper: bool) {
    // A subreaper with no child but running steps has no process of this
    // step to look for: anything the step left would now be our child.
    if subreaper && !has_unknown_children() {
        let _ = killpg(pgid, Signal::SIGKILL);
        return;
    }
    let mut killed: Vec<i32> = Vec::new();
    for _ in 0..20 {
        // Found before the kill, while they still show their environment.
        let found = signal_step(pgid, token, Signal::SIGKILL);
        if found.is_empty() {
            break;
        }
        killed.extend(found);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reap(&killed).await;
}

/// Collects the exit status of killed processes that were re-parented to trun,
/// so they do not linger as zombies. Only pids trun killed itself: another
/// child of trun is waited for by whoever started it.
async fn reap(pids: &[i32]) {
    let me = std::process::id() as i32;
    let mut mine: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|&p| parent_of(p) == Some(me))
        .collect();
    mine.sort_unstable();
    mine.dedup();
    for _ in 0..100 {
        mine.retain(|&p| {
            use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
            !matches!(
                waitpid(Pid::from_raw(p), Some(WaitPidFlag::WNOHANG)),
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_)
            )
        });
        if mine.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether trun has adopted a process that is not the main process of a
/// running command: an orphan re-parented to it. Linux gives a subreaper's
/// orphans to its first live thread, the main one, which lives as long as
/// trun runs commands; the threads that started commands have them as
/// children. So only the main thread's children are read, one file rather
/// than one per thread (a tenth of trun's own time per trivial step).
fn has_unknown_children() -> bool {
    static MAIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let main =
        MAIN.get_or_init(|| PathBuf::from(format!("/proc/self/task/{}", std::process::id())));
    let Some(children) = children_of_task(main) else {
        return true;
    };
    live(|l| children.iter().any(|c| !l.contains_key(c)))
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: i32) -> Option<i32> {
    stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse().ok()))
}

/// Fields of `/proc/PID/stat` after the command name: state is [0], ppid
/// [1], start time [19].
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether `pid` is a process that has not exited (gone, or a zombie).
pub fn running(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid).and_then(|f| f.get(19).and_then(|t| t.parse().ok()))
}

/// A token no other command of any trun has.
fn fresh_token() -> String {
    format!(
        "{}{}{}",
        crate::docker::unique_suffix(),
        crate::docker::unique_suffix(),
        std::process::id()
    )
}

/// Every live process (but trun) whose environment carries `token`.
pub fn pids_with_token(token: &str) -> Vec<i32> {
    pids_with_tokens(|t| t == token.as_bytes())
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// Every live process (but trun) with a token that `matches`, with that token.
fn pids_with_tokens(matches: impl Fn(&[u8]) -> bool) -> Vec<(i32, String)> {
    let name = format!("{TOKEN_VAR}=");
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let token = env
            .split(|&b| b == 0)
            .filter_map(|var| var.strip_prefix(name.as_bytes()))
            .find(|t| matches(t));
        if let Some(t) = token {
            found.push((pid, String::from_utf8_lossy(t).into_owned()));
        }
    }
    found
}

/// The record of this process's commands in one directory:
/// `<dir>/<trun pid>-<prefix>`. Its first line holds the owner's pid and
/// start time and the token prefix (ending in `.`); each command adds a line
/// with its token (`<prefix><n>`) and label. It stays while trun runs
/// commands there, and goes with [`release_records`].
struct Record {
    file: std::fs::File,
    path: PathBuf,
    prefix: String,
    commands: u64,
    /// Commands started and not yet ended.
    running: usize,
    /// The run is over: the last command to end removes the record.
    released: bool,
}

/// This process's records, by directory.
static RECORDS: Mutex<Option<HashMap<PathBuf, Record>>> = Mutex::new(None);

/// A command entered in a record: its token. Ending it (drop) lets the
/// record go if the run is over.
struct Recorded {
    dir: PathBuf,
    token: String,
}

impl Record {
    fn open(dir: &Path) -> std::io::Result<Record> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        ensure_private_dir(dir)?;
        let me = std::process::id() as i32;
        let prefix = format!("{}.", fresh_token());
        let path = dir.join(format!("{me}-{prefix}"));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        // trun's own start time never changes: read /proc/self/stat once.
        static STARTED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let started = *STARTED.get_or_init(|| start_time(me).unwrap_or(0));
        file.write_all(format!("{me} {started} {prefix}\n").as_bytes())?;
        Ok(Record {
            file,
            path,
            prefix,
            commands: 0,
            running: 0,
            released: false,
        })
    }

    /// Enters a command labelled `label` in the record of `dir` (made now if
    /// this process has none there), before it starts.
    fn command(dir: &Path, label: &str) -> std::io::Result<Recorded> {
        use std::io::Write;
        let mut g = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
        let records = g.get_or_insert_with(HashMap::new);
        let record = match records.entry(dir.to_path_buf()) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(Record::open(dir)?),
        };
        record.commands += 1;
        let token = format!("{}{}", record.prefix, record.commands);
        // One write (`O_APPEND`): a line is never split by another's.
        let line = format!("{token} {}\n", label.replace('\n', " "));
        record.file.write_all(line.as_bytes())?;
        record.running += 1;
        record.released = false;
        Ok(Recorded {
            dir: dir.to_path_buf(),
            token,
        })
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let mut g = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
        let Some(records) = g.as_mut() else { return };
        let Some(r) = records.get_mut(&self.dir) else {
            return;
        };
        r.running = r.running.saturating_sub(1);
        if r.released && r.running == 0 {
            remove_record(records, &self.dir);
        }
    }
}

/// Forgets this process's record in `dir` and removes its file.
fn remove_record(records: &mut HashMap<PathBuf, Record>, dir: &Path) {
    if let Some(r) = records.remove(dir) {
        let _ = std::fs::remove_file(&r.path);
    }
}

/// The run that recorded commands in `dir` is over: its record goes now, or
/// when the last command still running there ends (another run of the same
/// process may still run some).
pub fn release_records(dir: &Path) {
    let mut g = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(records) = g.as_mut() else { return };
    let Some(r) = records.get_mut(dir) else {
        return;
    };
    if r.running == 0 {
        remove_record(records, dir);
    } else {
        r.released = true;
    }
}

/// Creates `dir` (mode 0700) or checks that it is a real directory, not a
/// symlink planted to make trun write elsewhere.
fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    if std::fs::symlink_metadata(dir)?.is_dir() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{} is not a directory (a symlink?); refusing to use it",
            dir.display()
        )))
    }
}

/// Stops what an earlier trun, killed before it could clean up, left running:
/// for every record in `dir` whose owner is no longer alive, kills the
/// processes carrying its token and removes the record. Returns one message
/// per record that still had processes, for the caller to print. Call it
/// holding the workspace lock, before the run starts.
pub fn reap_orphans(dir: &Path) -> Vec<String> {
    let mut messages = Vec::new();
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return messages;
    };
    if !meta.is_dir() {
        return vec![format!(
            "{} is not a directory; left alone (remove it)",
            dir.display()
        )];
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return messages;
    };
    for e in entries.flatten() {
        let path = e.path();
        let text = {
            use std::io::Read;
            use std::os::unix::fs::OpenOptionsExt;
            let mut s = String::new();
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path);
            match opened {
                Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => {
                    // A line per command; a planted giant is read in part.
                    let _ = f.take(RECORD_READ_CAP).read_to_string(&mut s);
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            }
            s
        };
        let mut lines = text.lines();
        let mut it = lines.next().unwrap_or("").splitn(4, ' ');
        let (Some(owner), Some(started), Some(token)) = (
            it.next().and_then(|p| p.parse::<i32>().ok()),
            it.next().and_then(|p| p.parse::<u64>().ok()),
            it.next().filter(|t| !t.is_empty()),
        ) else {
            let _ = std::fs::remove_file(&path);
            continue;
        };
        // Same pid and start time: the owner (maybe this very process) lives.
        let owner_alive = start_time(owner) == Some(started) && running(owner);
        if owner_alive {
            continue;
        }
        // A prefix (`….`) with a line per command, or (an older trun's) one
        // command's token and label.
        let labels: HashMap<&str, &str> = if token.ends_with('.') {
            lines
                .filter_map(|l| l.split_once(' '))
                .filter(|(t, _)| t.starts_with(token))
                .collect()
        } else {
            HashMap::from([(token, it.next().unwrap_or("a step"))])
        };
        let ours = |t: &[u8]| {
            if token.ends_with('.') {
                t.starts_with(token.as_bytes())
            } else {
                t == token.as_bytes()
            }
        };
        let mut killed: HashMap<i32, String> = HashMap::new();
        for _ in 0..20 {
            let found = pids_with_tokens(ours);
            if found.is_empty() {
                break;
            }
            for (p, _) in &found {
                let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            }
            killed.extend(found);
            std::thread::sleep(Duration::from_millis(10));
        }
        // One message per command that had processes left.
        let mut per_label: std::collections::BTreeMap<&str, usize> = Default::default();
        for t in killed.values() {
            *per_label
                .entry(labels.get(t.as_str()).copied().unwrap_or("a step"))
                .or_default() += 1;
        }
        for (label, n) in per_label {
            messages.push(format!(
                "stopped {n} process{} of {label} left running by an earlier trun (pid {owner}) that was killed before it could stop them",
                if n == 1 { "" } else { "es" }
            ));
        }
        let _ = std::fs::remove_file(&path);
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn commands_share_one_record_that_goes_when_the_last_one_ends_after_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("procs");
        let a = Record::command(&dir, "step `a` of job `j`").unwrap();
        let b = Record::command(&dir, "step `b` of job `j`").unwrap();
        let files = files_in(&dir);
        assert_eq!(files.len(), 1, "one record per process: {files:?}");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let prefix = lines[0].split(' ').nth(2).unwrap();
        assert!(prefix.ends_with('.'), "{text}");
        assert_eq!(
            lines[1..],
            [
                format!("{} step `a` of job `j`", a.token),
                format!("{} step `b` of job `j`", b.token)
            ]
        );
        assert!(a.token.starts_with(prefix) && b.token.starts_with(prefix));
        assert_ne!(a.token, b.token);
        // The run ends while `b` still runs (another run of a server): the
        // record stays for `b`, and goes with it.
        drop(a);
        release_records(&dir);
        assert_eq!(files_in(&dir).len(), 1);
        drop(b);
        assert!(files_in(&dir).is_empty());
        // A later command makes a new record.
        let c = Record::command(&dir, "step `c`").unwrap();
        assert_eq!(files_in(&dir).len(), 1);
        drop(c);
        release_records(&dir);
        assert!(files_in(&dir).is_empty());
    }

    #[test]
    fn a_dead_owners_record_stops_every_process_with_its_prefix_and_names_its_step() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("procs");
        std::fs::create_dir(&dir).unwrap();
        let prefix = format!("{}.", fresh_token());
        // Left by a trun that is gone: no process has pid 0x7ffffff0's start time.
        std::fs::write(
            dir.join(format!("2147483632-{prefix}")),
            format!("2147483632 1 {prefix}\n{prefix}1 step `one`\n{prefix}2 step `two`\n"),
        )
        .unwrap();
        let spawn = |token: &str| {
            std::process::Command::new("sleep")
                .arg("60")
                .env(TOKEN_VAR, token)
                .spawn()
                .unwrap()
        };
        let mut two = spawn(&format!("{prefix}2"));
        let mut other = spawn(&format!("x{prefix}2"));
        let messages = reap_orphans(&dir);
        assert_eq!(two.wait().unwrap().code(), None, "killed by a signal");
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].contains("1 process of step `two`"),
            "{messages:?}"
        );
        assert!(files_in(&dir).is_empty());
        // A token that only contains the prefix is not the record's.
        assert!(other.try_wait().unwrap().is_none());
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn planted_records_kill_nothing_and_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("procs");
        std::fs::create_dir(&dir).unwrap();
        // A prefix ends in the `.` no token has before its counter, so a short
        // one matches no step's token; `$(...)` and quotes are text, never run.
        let mut victim = std::process::Command::new("sleep")
            .arg("60")
            .env(TOKEN_VAR, format!("{}.1", fresh_token()))
            .spawn()
            .unwrap();
        for (name, text) in [
            ("2147483632-a", "2147483632 1 .\n"),
            ("2147483633-b", "2147483633 1 a.\n"),
            ("2147483634-c", "2147483634 1 $(touch pwned).\n"),
            ("2147483635-d", "2147483635 1 \"'\n"),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        // A record bigger than the reaper reads, and a link to a file elsewhere.
        let prefix = format!("{}.", fresh_token());
        let mut big = format!("2147483636 1 {prefix}\n");
        big.push_str(&format!("{prefix}1 {}\n", "x".repeat(3 << 20)));
        std::fs::write(dir.join("2147483636-big"), big).unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::write(&elsewhere, format!("2147483637 1 {prefix}\n")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("2147483637-link")).unwrap();
        let messages = reap_orphans(&dir);
        assert!(messages.is_empty(), "{messages:?}");
        assert!(victim.try_wait().unwrap().is_none(), "a step was killed");
        assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
        assert!(elsewhere.exists(), "the link's target was touched");
        assert!(!tmp.path().join("pwned").exists() && !Path::new("pwned").exists());
        victim.kill().unwrap();
        victim.wait().unwrap();
    }
}
