//! Ctrl-C and SIGTERM become one cancellation: the engine kills every running
//! step's process group and records the run as cancelled; trun exits 130.
//! A second signal while stopping SIGKILLs every running step (and what it
//! started) and exits at once, leaving nothing behind.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// The exit code of an interrupted trun (128 + SIGINT), as shells expect.
pub const EXIT_INTERRUPTED: i32 = 130;

pub async fn forward(cancel: watch::Sender<bool>) {
    twice(|| {
        let _ = cancel.send(true);
        eprintln!("\ntrun: interrupted; stopping running steps (press Ctrl-C again to force)");
    })
    .await
}

/// On the first SIGINT or SIGTERM calls `first` (stop gently); on the second,
/// SIGKILLs every running step and exits 130.
pub async fn twice(first: impl FnOnce()) {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    first();
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    crate::exec::process::kill_all_now();
    std::process::exit(EXIT_INTERRUPTED);
}
