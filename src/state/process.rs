//! Who recorded a run, and whether that process is still alive.
//!
//! A pid alone cannot say that: after a SIGKILL the pid may be reused by an
//! unrelated process. So a run also stores its process's start time (from
//! `/proc/<pid>/stat` on Linux) and a pid only counts as alive when the start
//! time still matches. Where `/proc` is missing the check falls back to the pid.

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

pub(super) struct ProcessId {
    pub pid: i64,
    pub start: Option<i64>,
    pub host: String,
}

impl ProcessId {
    pub fn current() -> ProcessId {
        let pid = std::process::id() as i64;
        ProcessId {
            pid,
            start: start_time(pid),
            host: hostname(),
        }
    }
}

/// Whether the process `pid` on this host, started at `start`, still exists.
pub(super) fn is_alive(pid: i64, start: Option<i64>) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match kill(Pid::from_raw(raw), None) {
        // EPERM: it exists but belongs to another user.
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    match (start, start_time(pid)) {
        (Some(stored), Some(now)) => stored == now,
        // Cannot tell: trust the pid rather than interrupt a live run.
        _ => true,
    }
}

/// The process's start time in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), or None where that is not available.
pub(super) fn start_time(pid: i64) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself contain
    // spaces or ')', so count fields from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' come field 3 (state) onwards; field 22 is the 20th of those.
    rest.split_whitespace().nth(19)?.parse().ok()
}

pub(super) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes and gethostname writes
    // at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        let me = ProcessId::current();
        assert!(is_alive(me.pid, me.start));
        if cfg!(target_os = "linux") {
            assert!(me.start.is_some());
            assert!(!is_alive(me.pid, me.start.map(|s| s + 1)), "pid reuse");
        }
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id() as i64;
        child.wait().expect("wait");
        assert!(!is_alive(pid, None));
    }

    #[test]
    fn hostname_is_not_empty() {
        assert!(!hostname().is_empty());
    }
}
