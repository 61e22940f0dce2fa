//! A worker killed outright (SIGKILL, OOM) cannot stop its steps, and its
//! jobs run again elsewhere once its lease ends: a step must not keep
//! running on the dead worker meanwhile. So `trun worker` forks, before it
//! starts any thread, a guard process that holds the read end of a pipe
//! whose write end only the worker holds (close-on-exec: steps do not
//! inherit it). When the worker is gone, however it died, the pipe reads end
//! of file and the guard stops every step process the worker's jobs
//! recorded (`.trun/procs` in each job directory, the records the engine
//! keeps for [`crate::exec::process::reap_orphans`]), grandchildren
//! included, then removes the job directories and exits.

use std::path::{Path, PathBuf};

/// Forks the guard for `workdir`. Call it while the process has one thread.
pub fn start(workdir: &Path) -> Result<(), String> {
    use nix::unistd::{fork, pipe2, ForkResult};
    let (read, write) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("cannot make a pipe: {e}"))?;
    let workdir = workdir.to_path_buf();
    // SAFETY: the process has a single thread here (the caller's contract),
    // so the child may run ordinary Rust code after the fork.
    match unsafe { fork() }.map_err(|e| format!("cannot fork the guard: {e}"))? {
        ForkResult::Parent { .. } => {
            drop(read);
            // The write end stays open for the worker's whole life.
            std::mem::forget(write);
            Ok(())
        }
        ForkResult::Child => {
            drop(write);
            let worker = nix::unistd::getppid().as_raw();
            // Signals meant for the worker's terminal group are the worker's
            // to handle; the guard ends when the worker does.
            for s in [
                nix::sys::signal::Signal::SIGINT,
                nix::sys::signal::Signal::SIGTERM,
            ] {
                // SAFETY: installing SIG_IGN has no handler code to run.
                let _ =
                    unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigIgn) };
            }
            let mut file = std::fs::File::from(read);
            let mut buf = [0u8; 64];
            loop {
                use std::io::Read;
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            // The pipe closes with the worker's files, a moment before the
            // worker is seen to have exited; until then its records read as
            // a live owner's and would be left alone.
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while crate::exec::process::running(worker) && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            for dir in job_dirs(&workdir) {
                for m in crate::exec::process::reap_orphans(&dir.join(".trun").join("procs")) {
                    eprintln!("trun worker: {m}");
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
            // SAFETY: ends the forked child without running the parent's
            // exit handlers a second time.
            unsafe { libc::_exit(0) }
        }
    }
}

fn job_dirs(workdir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(workdir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}
