//! The workspace lock: one running `trun` per workspace at a time.
//!
//! It is an advisory `flock` on `<workspace>/.trun/lock`. The kernel drops it
//! when the holder exits, however it exits, so a SIGKILLed trun never leaves a
//! stale lock behind and there is no lock file to clean up. The holder writes
//! who it is (pid, run id, command line, start time) into the file so that a
//! second trun can say who is in the way instead of just hanging. This module
//! does not decide whether to wait or what to print while waiting: the caller
//! does, with [`WorkspaceLock::try_acquire`] then
//! [`WorkspaceLock::acquire_blocking`]. It does not protect the state database
//! either (SQLite locks that itself); it keeps two runs from stepping on the
//! same working tree and outputs.

use crate::event::{now_ms, Millis};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Who holds (or wants) the lock, as written into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderInfo {
    pub pid: u32,
    pub run_id: Option<i64>,
    /// The command line, e.g. `trun build`.
    pub command: String,
    pub started_at: Millis,
}

impl HolderInfo {
    /// This process, started now, running `command`.
    pub fn current(command: impl Into<String>) -> HolderInfo {
        HolderInfo {
            pid: std::process::id(),
            run_id: None,
            command: command.into(),
            started_at: now_ms(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}", held_message(path, *pid, *run_id, command, *since))]
    Held {
        path: PathBuf,
        pid: u32,
        run_id: Option<i64>,
        command: String,
        since: Millis,
    },
    /// Held by a process that has not (yet) said who it is.
    #[error(
        "another process holds {}; wait for it or use a different directory",
        path.display()
    )]
    HeldByUnknown { path: PathBuf },
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `.trun` or the lock file is a symbolic link or not what it should be
    /// (the message names the path and what is wrong).
    #[error("{0}")]
    Unsafe(std::io::Error),
}

fn held_message(
    path: &Path,
    pid: u32,
    run_id: Option<i64>,
    command: &str,
    since: Millis,
) -> String {
    let run = run_id.map(|id| format!("run {id}, ")).unwrap_or_default();
    let ago = format_age(now_ms().saturating_sub(since));
    format!(
        "another trun (pid {pid}, {run}started {ago} ago: {command}) holds {}; \
         wait for it or use a different directory",
        path.display()
    )
}

/// `12s`, `4m12s`, `2h05m`, `3d04h`.
fn format_age(ms: Millis) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// The entries trun creates in `.trun`, none of which may be a symlink.
const OWN_ENTRIES: [&str; 6] = [
    "state.db",
    "state.db-wal",
    "state.db-shm",
    "cas",
    "logs",
    "tmp",
];

/// Where the lock lives inside a workspace's `.trun` directory.
pub fn lock_path(trun_dir: &Path) -> PathBuf {
    trun_dir.join("lock")
}

/// A held workspace lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct WorkspaceLock {
    file: Flock<File>,
    path: PathBuf,
    holder: HolderInfo,
}

/// How long a process that could not get the lock keeps re-reading the holder
/// information, in case it caught the holder between taking the lock and
/// writing its name.
const HOLDER_READ_TRIES: u32 = 20;
const HOLDER_READ_PAUSE: Duration = Duration::from_millis(10);

impl WorkspaceLock {
    /// Takes the lock; `wait` blocks until it is free, otherwise a held lock is
    /// [`LockError::Held`]. To tell the user whom you are waiting for, use
    /// [`Self::try_acquire`] and then [`Self::acquire_blocking`] instead.
    pub fn acquire(
        trun_dir: &Path,
        wait: bool,
        holder: &HolderInfo,
    ) -> Result<WorkspaceLock, LockError> {
        if wait {
            Self::acquire_blocking(trun_dir, holder)
        } else {
            Self::try_acquire(trun_dir, holder)
        }
    }

    /// Takes the lock if it is free; otherwise says who holds it.
    pub fn try_acquire(trun_dir: &Path, holder: &HolderInfo) -> Result<WorkspaceLock, LockError> {
        let path = lock_path(trun_dir);
        let mut file = open(trun_dir, &path)?;
        for _ in 0..HOLDER_READ_TRIES {
            match lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => return Self::held(flock, path, holder),
                Err((back, Errno::EWOULDBLOCK)) => file = back,
                Err((_, errno)) => return Err(io_error(&path, errno)),
            }
            if let Some(info) = read_holder(&file) {
                return Err(LockError::Held {
                    path,
                    pid: info.pid,
                    run_id: info.run_id,
                    command: info.command,
                    since: info.started_at,
                });
            }
            std::thread::sleep(HOLDER_READ_PAUSE);
        }
        Err(LockError::HeldByUnknown { path })
    }

    /// Blocks the calling thread until the lock is free, then takes it. (In
    /// async code, call it from a blocking task.)
    pub fn acquire_blocking(
        trun_dir: &Path,
        holder: &HolderInfo,
    ) -> Result<WorkspaceLock, LockError> {
        let path = lock_path(trun_dir);
        let file = open(trun_dir, &path)?;
        match lock(file, FlockArg::LockExclusive) {
            Ok(flock) => Self::held(flock, path, holder),
            Err((_, errno)) => Err(io_error(&path, errno)),
        }
    }

    /// Reads who holds the lock at `trun_dir` now, if anyone says so. The file
    /// may be stale when nobody holds the lock; this does not check.
    pub fn read_holder(trun_dir: &Path) -> Option<HolderInfo> {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking and not through a link: a FIFO or a planted symlink at
        // the lock's place must not hang or mislead a reader.
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(lock_path(trun_dir))
            .ok()
            .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))
            .and_then(|f| read_holder(&f))
    }

    /// Records the run id once the state store has assigned it, so that a
    /// waiting trun can name the run.
    pub fn set_run_id(&mut self, run_id: i64) -> Result<(), LockError> {
        self.holder.run_id = Some(run_id);
        write_holder(&self.file, &self.path, &self.holder)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn holder(&self) -> &HolderInfo {
        &self.holder
    }

    fn held(
        flock: Flock<File>,
        path: PathBuf,
        holder: &HolderInfo,
    ) -> Result<WorkspaceLock, LockError> {
        write_holder(&flock, &path, holder)?;
        Ok(WorkspaceLock {
            file: flock,
            path,
            holder: holder.clone(),
        })
    }
}

impl Drop for WorkspaceLock {
    fn drop(&mut self) {
        // Still under the lock here (the flock is released when the field is
        // dropped after this), so nobody else is writing: clear our name so it
        // does not outlive us. Failing to clear it is harmless.
        let _ = self.file.set_len(0);
    }
}

fn open(trun_dir: &Path, path: &Path) -> Result<File, LockError> {
    // `.trun` and the lock file may have been planted as symlinks (a hostile
    // checkout): refuse both rather than truncate or lock what they point at.
    let unsafe_or_io = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::Other {
                LockError::Unsafe(source)
            } else {
                LockError::Io { path, source }
            }
        }
    };
    crate::fsutil::private_dir(trun_dir).map_err(unsafe_or_io(trun_dir))?;
    // What trun keeps in `.trun` is opened by other modules (SQLite follows
    // links and would create a planted `state.db -> /elsewhere/x`): the one
    // who locks the directory checks them all once, before anything opens them.
    for name in OWN_ENTRIES {
        let entry = trun_dir.join(name);
        crate::fsutil::refuse_symlink(&entry).map_err(unsafe_or_io(&entry))?;
    }
    // Never truncate on open: the file may hold the current holder's name.
    // std opens with O_CLOEXEC, so step processes do not inherit the lock.
    crate::fsutil::open_rw_nofollow(path, 0o600).map_err(unsafe_or_io(path))
}

/// `Flock::lock`, retried when a signal interrupts the wait.
fn lock(mut file: File, arg: FlockArg) -> Result<Flock<File>, (File, Errno)> {
    loop {
        match Flock::lock(file, arg) {
            Err((back, Errno::EINTR)) => file = back,
            other => return other,
        }
    }
}

fn io_error(path: &Path, errno: Errno) -> LockError {
    LockError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::from(errno),
    }
}

fn write_holder(file: &File, path: &Path, holder: &HolderInfo) -> Result<(), LockError> {
    let mut text = serde_json::to_string(holder).map_err(|e| LockError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    text.push('\n');
    // Write first, then cut: a reader never sees an empty file, at worst our
    // record followed by the tail of an older, longer one, which it ignores.
    file.write_all_at(text.as_bytes(), 0)
        .and_then(|()| file.set_len(text.len() as u64))
        .map_err(|source| LockError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn read_holder(file: &File) -> Option<HolderInfo> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = file.read_at(&mut buf, 0).ok()?;
    serde_json::Deserializer::from_slice(&buf[..n])
        .into_iter::<HolderInfo>()
        .next()?
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    #[test]
    fn a_second_open_file_description_conflicts_and_drop_releases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let trun_dir = dir.path().join(".trun");
        let mut first = WorkspaceLock::try_acquire(&trun_dir, &HolderInfo::current("trun build"))
            .expect("free lock");
        first.set_run_id(17).expect("set run id");
        let err = WorkspaceLock::acquire(&trun_dir, false, &HolderInfo::current("trun test"))
            .expect_err("held");
        match &err {
            LockError::Held {
                pid,
                run_id,
                command,
                ..
            } => {
                assert_eq!(*pid, std::process::id());
                assert_eq!(*run_id, Some(17));
                assert_eq!(command, "trun build");
            }
            other => panic!("expected Held, got {other:?}"),
        }
        let message = err.to_string();
        let expected_start = format!("another trun (pid {}, run 17, started ", std::process::id());
        assert!(message.starts_with(&expected_start), "{message}");
        assert!(
            message.ends_with(&format!(
                "s ago: trun build) holds {}; wait for it or use a different directory",
                trun_dir.join("lock").display()
            )),
            "{message}"
        );
        drop(first);
        let again = WorkspaceLock::try_acquire(&trun_dir, &HolderInfo::current("trun test"))
            .expect("released on drop");
        assert_eq!(
            WorkspaceLock::read_holder(&trun_dir).map(|h| h.command),
            Some("trun test".to_string())
        );
        drop(again);
        assert_eq!(
            WorkspaceLock::read_holder(&trun_dir),
            None,
            "cleared on drop"
        );
    }

    #[test]
    fn held_message_is_pinned() {
        let err = LockError::Held {
            path: PathBuf::from("/ws/.trun/lock"),
            pid: 4242,
            run_id: Some(17),
            command: "trun build".into(),
            since: now_ms() - 12_000,
        };
        assert_eq!(
            err.to_string(),
            "another trun (pid 4242, run 17, started 12s ago: trun build) holds /ws/.trun/lock; \
             wait for it or use a different directory"
        );
        let err = LockError::Held {
            path: PathBuf::from("/ws/.trun/lock"),
            pid: 4242,
            run_id: None,
            command: "trun".into(),
            since: now_ms() - 3_725_000,
        };
        assert_eq!(
            err.to_string(),
            "another trun (pid 4242, started 1h02m ago: trun) holds /ws/.trun/lock; \
             wait for it or use a different directory"
        );
    }

    #[test]
    fn a_holder_that_wrote_nothing_is_reported_as_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let trun_dir = dir.path().join(".trun");
        std::fs::create_dir_all(&trun_dir).expect("mkdir");
        let raw = File::create(lock_path(&trun_dir)).expect("create");
        let _held = Flock::lock(raw, FlockArg::LockExclusiveNonblock).expect("raw flock");
        let err =
            WorkspaceLock::try_acquire(&trun_dir, &HolderInfo::current("trun")).expect_err("held");
        assert!(matches!(err, LockError::HeldByUnknown { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "another process holds {}; wait for it or use a different directory",
                lock_path(&trun_dir).display()
            )
        );
    }

    const CHILD_DIR: &str = "TRUN_TEST_LOCK_CHILD_DIR";

    /// The other process of `another_process_holds_the_lock_until_it_dies`.
    #[test]
    #[ignore = "child process of another_process_holds_the_lock_until_it_dies"]
    fn lock_child_holder() {
        let Some(dir) = std::env::var_os(CHILD_DIR) else {
            eprintln!("{CHILD_DIR} is not set: this test only runs as a child process");
            return;
        };
        let mut lock =
            WorkspaceLock::try_acquire(Path::new(&dir), &HolderInfo::current("trun build"))
                .expect("child: lock");
        lock.set_run_id(17).expect("child: run id");
        println!("LOCKED");
        // Hold it until killed.
        std::thread::sleep(Duration::from_secs(60));
    }

    #[test]
    fn another_process_holds_the_lock_until_it_dies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let trun_dir = dir.path().join(".trun");
        let exe = std::env::current_exe().expect("test binary");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "lock::tests::lock_child_holder",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_DIR, &trun_dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn holder");
        let stdout = child.stdout.take().expect("piped");
        let locked = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line == "LOCKED");
        assert!(locked, "the child took the lock");

        let me = HolderInfo::current("trun test");
        match WorkspaceLock::try_acquire(&trun_dir, &me) {
            Err(LockError::Held {
                pid,
                run_id,
                command,
                ..
            }) => {
                assert_eq!(pid, child.id());
                assert_eq!(run_id, Some(17));
                assert_eq!(command, "trun build");
            }
            other => panic!("expected Held by the child, got {other:?}"),
        }

        let (tx, rx) = mpsc::channel();
        let waiter = {
            let trun_dir = trun_dir.clone();
            std::thread::spawn(move || {
                let got = WorkspaceLock::acquire(&trun_dir, true, &me);
                let _ = tx.send(got.is_ok());
                got
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "the waiter must block while the child holds the lock"
        );
        child.kill().expect("SIGKILL the holder");
        child.wait().expect("reap");
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(true),
            "the kernel released the dead holder's lock"
        );
        let lock = waiter.join().expect("waiter thread").expect("lock");
        assert_eq!(lock.holder().command, "trun test");
        assert_eq!(
            WorkspaceLock::read_holder(&trun_dir).map(|h| h.pid),
            Some(std::process::id())
        );
    }
}
