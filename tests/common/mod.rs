//! A small harness that drives the real `trun` binary, in the manner of casey/just's
//! integration tests: each test builds a fresh workspace in a temporary directory,
//! writes a `trun.yaml` (and any other files) into it, runs `trun` there and checks
//! what a user would see — stdout, stderr, the exit code and the files left behind.
//!
//! ```ignore
//! Test::new()
//!     .workflow("jobs: { build: { steps: [ { run: echo hi } ] } }")
//!     .run(&["plan"])
//!     .success()
//!     .stdout_has("build");
//! ```
//!
//! It is not a place for assertions about any one feature; those live in the test
//! files. Every child `trun` runs with a scrubbed environment so that the machine the
//! tests run on (a GitHub Actions runner exports `GITHUB_ACTIONS`, a user may export
//! `NO_COLOR`) cannot change what the tests see.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub mod netns;
pub mod server;

/// The binary under test, built by cargo for this integration test crate.
pub const TRUN: &str = env!("CARGO_BIN_EXE_trun");

/// How long a captured `trun` may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Variables that change trun's output or behaviour and that a developer's shell or a
/// CI runner may have set; every child `trun` starts without them.
const SCRUBBED_ENV: &[&str] = &[
    "CI",
    "GITHUB_ACTIONS",
    "GITHUB_OUTPUT",
    "GITHUB_ENV",
    "GITHUB_PATH",
    "GITHUB_STEP_SUMMARY",
    "TRUN_OUTPUT",
    "NO_COLOR",
    "CLICOLOR",
    "CLICOLOR_FORCE",
    "TRUN_BLESS",
    "TRUN_TOKEN",
    "TRUN_REMOTE_CACHE",
    "TRUN_DATABASE_URL",
    "TRUN_REMOTE_CACHE_KEY",
    "TRUN_REMOTE_CACHE_TOKEN",
    "TRUN_REMOTE_CACHE_ENV",
    "TRUN_SERVER",
    "TRUN_WEBHOOK_SECRET",
];

/// Strips the common leading indentation of every non-blank line, one leading newline
/// and the trailing indentation of the closing quote, so a workflow can be written
/// indented inside a string literal.
pub fn unindent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let text = match text.rfind('\n') {
        Some(i) if text[i + 1..].trim().is_empty() => &text[..=i],
        _ => text,
    };
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches(' ').len())
        .min()
        .unwrap_or(0);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.trim().is_empty() {
            out.push('\n');
        } else {
            out.push_str(&line[indent..]);
            out.push('\n');
        }
    }
    out
}

/// A fresh workspace: a temporary directory holding the files a test wrote.
pub struct Test {
    dir: TempDir,
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("trun-test-")
            .tempdir()
            .expect("create a temporary workspace");
        Test { dir }
    }

    /// Writes `contents` (unindented) to `path`, relative to the workspace,
    /// creating parent directories.
    pub fn file(self, path: &str, contents: &str) -> Self {
        self.write(path, &unindent(contents));
        self
    }

    /// Writes `trun.yaml`.
    pub fn workflow(self, yaml: &str) -> Self {
        self.file("trun.yaml", yaml)
    }

    /// Writes `contents` to `path` verbatim (no unindenting), at any time.
    pub fn write(&self, path: &str, contents: &str) {
        let full = self.join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).expect("create parent directories");
        }
        fs::write(&full, contents).unwrap_or_else(|e| panic!("write {}: {e}", full.display()));
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh copy of `examples/pipelines/NAME`, without build products or state a
    /// developer may have left in it.
    pub fn example(name: &str) -> Self {
        fn copy_tree(from: &Path, to: &Path) {
            fs::create_dir_all(to).expect("mkdir");
            for entry in fs::read_dir(from).expect("read_dir") {
                let entry = entry.expect("entry");
                let name = entry.file_name();
                if [".trun", "build", "dist", "results", "reports"]
                    .iter()
                    .any(|n| name == *n)
                {
                    continue;
                }
                let target = to.join(&name);
                if entry.file_type().expect("file type").is_dir() {
                    copy_tree(&entry.path(), &target);
                } else {
                    // fs::copy keeps the permission bits (scripts stay executable).
                    fs::copy(entry.path(), &target).expect("copy");
                }
            }
        }
        let t = Test::new();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pipelines");
        copy_tree(&dir.join(name), t.path());
        t
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.join(rel).exists()
    }

    pub fn read(&self, rel: &str) -> String {
        let p = self.join(rel);
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    /// Starts building one `trun` invocation in this workspace.
    pub fn args(&self, args: &[&str]) -> Invocation {
        invoke_in(self.path(), args)
    }

    /// Runs `trun ARGS` in the workspace and returns what it printed.
    pub fn run(&self, args: &[&str]) -> Output {
        self.args(args).run()
    }

    /// `trun show RUN --json`, parsed; `RUN` empty means the latest run.
    pub fn show_json(&self, run: &str) -> Value {
        let mut args = vec!["show"];
        if !run.is_empty() {
            args.push(run);
        }
        args.push("--json");
        self.run(&args).success().json()
    }
}

/// One `trun` invocation in `dir` (a workspace a test made some other way, such as a
/// copy of a fixture), with the same scrubbed environment and time limit as [`Test::run`].
pub fn invoke_in(dir: &Path, args: &[&str]) -> Invocation {
    Invocation {
        dir: dir.to_path_buf(),
        args: args.iter().map(OsString::from).collect(),
        env: Vec::new(),
        cwd: None,
        prefix: Vec::new(),
    }
}

/// One `trun` command line, with its environment and working directory.
pub struct Invocation {
    /// The workspace it runs in.
    dir: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    /// A program that runs `trun` (`ip netns exec NAME`), if any.
    prefix: Vec<OsString>,
}

impl Invocation {
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs in `rel` (relative to the workspace) instead of its root.
    pub fn current_dir(mut self, rel: &str) -> Self {
        self.cwd = Some(self.dir.join(rel));
        self
    }

    /// Runs `trun` through `prefix` (a program and its arguments, such as
    /// `ip netns exec NAME`), which must exec it with the environment given.
    pub fn through(mut self, prefix: &[String]) -> Self {
        self.prefix = prefix.iter().map(OsString::from).collect();
        self
    }

    fn command(&self) -> Command {
        let mut cmd = match self.prefix.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(TRUN);
                cmd
            }
            None => Command::new(TRUN),
        };
        cmd.args(&self.args)
            .current_dir(self.cwd.as_deref().unwrap_or(&self.dir))
            .stdin(Stdio::null());
        for key in SCRUBBED_ENV {
            cmd.env_remove(key);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn describe(&self) -> String {
        let prefix = self.prefix.iter().map(|a| a.to_string_lossy() + " ");
        let args: Vec<_> = self.args.iter().map(|a| a.to_string_lossy()).collect();
        format!("{}trun {}", prefix.collect::<String>(), args.join(" "))
    }

    /// Runs to completion with stdout and stderr captured; fails the test if `trun`
    /// has not exited after two minutes.
    pub fn run(self) -> Output {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {TRUN}: {e}"));
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for trun") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{}` did not exit within {RUN_LIMIT:?}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Output {
            command: self.describe(),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
            code: status.code(),
        }
    }

    /// Runs to completion with stdout going to `stdout` (e.g. `/dev/full`);
    /// the returned stdout is empty, stderr is captured.
    pub fn run_stdout_to(self, stdout: fs::File) -> Output {
        let out = self
            .command()
            .stdout(stdout)
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("spawn {TRUN}: {e}"));
        Output {
            command: self.describe(),
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code(),
        }
    }

    /// Runs with stdout read up to its first line and then closed, as
    /// `trun … | head -1` does; the returned stdout is that line.
    pub fn run_reading_first_line(self) -> Output {
        use std::io::BufRead;
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {TRUN}: {e}"));
        let mut first = String::new();
        {
            let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
            reader.read_line(&mut first).expect("read the first line");
        } // closed here: trun's next write gets EPIPE
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .expect("read stderr");
        let status = child.wait().expect("wait for trun");
        Output {
            command: self.describe(),
            stdout: first,
            stderr,
            code: status.code(),
        }
    }

    /// Runs to completion like [`Self::run`] and also returns the process's
    /// peak resident memory in KiB and its wall-clock time (from `wait4`).
    // The child is reaped by `wait4` (which also reports its memory), not by
    // `Child::wait`.
    #[allow(clippy::zombie_processes)]
    pub fn run_measured(self) -> (Output, u64, Duration) {
        let start = Instant::now();
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {TRUN}: {e}"));
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value to be overwritten.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = child.id() as libc::pid_t;
        let deadline = Instant::now() + RUN_LIMIT;
        loop {
            // SAFETY: plain syscall on our own child with valid out-pointers.
            let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if r == pid {
                break;
            }
            assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("`{}` did not exit within {RUN_LIMIT:?}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let took = start.elapsed();
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        let out = Output {
            command: self.describe(),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
            code,
        };
        (out, usage.ru_maxrss as u64, took)
    }

    /// Starts `trun` in the background, its output going to files rather than pipes:
    /// a step's orphaned grandchildren would otherwise hold a pipe open and a reader
    /// would never see end-of-file.
    pub fn spawn(self) -> Running {
        let out_dir = tempfile::Builder::new()
            .prefix("trun-test-out-")
            .tempdir()
            .expect("create an output directory");
        let stdout = fs::File::create(out_dir.path().join("stdout")).unwrap();
        let stderr = fs::File::create(out_dir.path().join("stderr")).unwrap();
        let child = self
            .command()
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {TRUN}: {e}"));
        Running {
            command: self.describe(),
            child,
            out_dir,
        }
    }
}

/// A `trun` running in the background.
pub struct Running {
    command: String,
    child: Child,
    out_dir: TempDir,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal)
            .unwrap_or_else(|e| panic!("send {signal} to trun: {e}"));
    }

    pub fn stderr_so_far(&self) -> String {
        fs::read_to_string(self.out_dir.path().join("stderr")).unwrap_or_default()
    }

    /// Waits for `trun` to exit; kills it and fails the test after `limit`.
    pub fn wait(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for trun") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "`{}` did not exit within {limit:?}\n--- stderr ---\n{}",
                    self.command,
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        use std::os::unix::process::ExitStatusExt;
        let read =
            |name: &str| fs::read_to_string(self.out_dir.path().join(name)).unwrap_or_default();
        Output {
            command: self.command.clone(),
            stdout: read("stdout"),
            stderr: read("stderr"),
            // A death by signal is reported as 128 + signal, as a shell would.
            code: status.code().or(status.signal().map(|s| 128 + s)),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Never leave a trun behind when a test fails half-way.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one `trun` printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub command: String,
    pub stdout: String,
    pub stderr: String,
    /// The exit code; `None` only when killed by a signal while captured by `run`.
    pub code: Option<i32>,
}

impl Output {
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\ncommand: {}\nexit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        );
    }

    pub fn status(&self, code: i32) -> &Self {
        if self.code != Some(code) {
            self.fail(&format!("expected exit code {code}"));
        }
        self
    }

    pub fn success(&self) -> &Self {
        self.status(0)
    }

    pub fn stdout_is(&self, expected: &str) -> &Self {
        let expected = unindent(expected);
        if self.stdout != expected {
            self.fail(&format!("stdout differs; expected:\n{expected}"));
        }
        self
    }

    pub fn stderr_is(&self, expected: &str) -> &Self {
        let expected = unindent(expected);
        if self.stderr != expected {
            self.fail(&format!("stderr differs; expected:\n{expected}"));
        }
        self
    }

    pub fn stdout_has(&self, needle: &str) -> &Self {
        if !self.stdout.contains(needle) {
            self.fail(&format!("stdout does not contain {needle:?}"));
        }
        self
    }

    pub fn stderr_has(&self, needle: &str) -> &Self {
        if !self.stderr.contains(needle) {
            self.fail(&format!("stderr does not contain {needle:?}"));
        }
        self
    }

    pub fn stdout_lacks(&self, needle: &str) -> &Self {
        if self.stdout.contains(needle) {
            self.fail(&format!("stdout contains {needle:?}"));
        }
        self
    }

    pub fn stderr_lacks(&self, needle: &str) -> &Self {
        if self.stderr.contains(needle) {
            self.fail(&format!("stderr contains {needle:?}"));
        }
        self
    }

    /// Everything printed, stdout then stderr: trun's run reporters write to stderr.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| self.fail(&format!("stdout is not JSON: {e}")))
    }

    /// stdout parsed as JSON lines, one object each.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| self.fail(&format!("not a JSON line ({e}): {line}")))
            })
            .collect()
    }
}

/// Polls `cond` every 20 ms until it holds; fails the test with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process, identified by pid and start time so that a recycled pid is not
/// mistaken for the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    start_time: u64,
}

impl Process {
    /// The live process with this pid, if any.
    pub fn find(pid: i32) -> Option<Process> {
        let (state, start_time) = proc_stat(pid)?;
        (state != 'Z' && state != 'X').then_some(Process { pid, start_time })
    }

    /// Still running (a zombie waiting for its reaper counts as gone).
    pub fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((s, t)) if s != 'Z' && s != 'X' && t == self.start_time)
    }

    /// SIGKILL, for cleaning up after a test; errors are ignored.
    pub fn kill(&self) {
        if self.alive() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// State letter and start time (in clock ticks since boot) from `/proc/PID/stat`.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; fields follow it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall; the state is field 3, so index 22 - 3 here.
    let start_time = fields.get(19)?.parse().ok()?;
    Some((state, start_time))
}

/// The parent of a process, from `/proc/PID/stat`.
pub fn parent_pid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name: state, then the parent's pid.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Kills the listed processes when dropped, so a failing test leaves no `sleep 300`
/// behind.
pub struct Reaper(pub Vec<Process>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for p in &self.0 {
            p.kill();
        }
    }
}

/// Copies a directory tree (directories, regular files and symlinks as symlinks), leaving
/// out `.trun`: a fixture copied into a test's workspace.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == ".trun" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_dir(&src, &dst);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src).expect("readlink"), &dst)
                .expect("symlink");
        } else {
            fs::copy(&src, &dst).expect("copy");
        }
    }
}

/// Live processes (zombies do not count) whose command line is exactly `argv`:
/// how a test finds what a step left running, by a marker in its arguments.
pub fn processes_running(argv: &[&str]) -> Vec<Process> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want) {
            if let Some(p) = Process::find(pid) {
                found.push(p);
            }
        }
    }
    found
}

/// A marker unlikely to collide with anything else on the machine: a number of
/// seconds for a `sleep` the test can then look for with [`processes_running`].
pub fn marker() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}{:05}{}",
        7 + N.fetch_add(1, Ordering::Relaxed) % 2,
        (std::process::id() ^ nanos) % 100_000,
        N.load(Ordering::Relaxed) % 10
    )
}

/// A field of `/proc/PID/status` in kB (`VmHWM`, `VmRSS`), if the process lives.
pub fn proc_status_kb(pid: i32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A fresh database on the PostgreSQL server of `TRUN_TEST_DATABASE_URL` (the
/// test fails, saying how to start one, without it); its URL, with
/// `user[:password]@` replaced by `userinfo` when given.
pub fn fresh_database(userinfo: Option<&str>) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let base = std::env::var("TRUN_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "TRUN_TEST_DATABASE_URL is not set: these tests need a PostgreSQL server. \
             Start a throwaway one with `eval \"$(.ci/postgres start)\"` (bash .ci/run does)"
        )
    });
    let name = format!(
        "trun_e2e_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut admin = postgres::Client::connect(&base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connect to TRUN_TEST_DATABASE_URL: {e}"));
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.batch_execute(&sql).expect("create a database");
    }
    let (without_query, _) = base.split_once('?').unwrap_or((&base, ""));
    let (server, _db) = without_query
        .rsplit_once('/')
        .expect("TRUN_TEST_DATABASE_URL is postgres://user@host:port/db");
    let server = match userinfo {
        Some(info) => {
            let (scheme, rest) = server.split_once("://").expect("a URL");
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{info}@{host}")
        }
        None => server.to_string(),
    };
    format!("{server}/{name}")
}
