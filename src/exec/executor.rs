//! The executor seam: every step process trun starts runs through an
//! [`Executor`], which owns spawning, stdin, the timeout, killing everything
//! the command started, cancellation and streaming output into an
//! [`OutputSink`]. The engine decides *what* runs and what its result means;
//! an executor decides *how* and *where*.
//!
//! Implementations: [`Local`] (a host process; see [`super::process`]) and
//! [`JobContainer`] (`docker exec` in the job's container). The grading
//! sandbox is another one.
//!
//! Not here: retries, `if:`, outputs files, logs' location (the job runner),
//! the Docker API itself ([`crate::docker`]).

use super::output::OutputSink;
use crate::docker::Docker;
use futures_util::future::BoxFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

pub use super::process::{reap_orphans, Exit, Local};

/// One command to run.
#[derive(Debug, Clone, Default)]
pub struct Command {
    pub argv: Vec<String>,
    /// Added to (and overriding) the executor's base environment.
    pub env: Vec<(String, String)>,
    /// Where it runs (in the container's file system for a container).
    pub cwd: PathBuf,
    /// Bytes fed to its standard input, then closed; `None` = no input.
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

pub trait Executor: Send + Sync {
    /// Run one command to its end, streaming output into `sink`; honours `cancel` and `cmd.timeout`
    /// by killing everything the command started.
    fn run<'a>(
        &'a self,
        cmd: &'a Command,
        sink: &'a mut OutputSink,
        cancel: watch::Receiver<bool>,
    ) -> BoxFuture<'a, Exit>;
    /// "local", "container 3f2a1b…" — for logs and errors.
    fn describe(&self) -> String;
}

/// How long a Docker call may go on after the command's timeout or a
/// cancellation asked it to stop (the kill itself is a Docker call).
pub const DOCKER_STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs commands in a running container with `docker exec`; the tree a
/// command starts is killed by its token (see [`crate::docker`]'s exec).
#[derive(Clone)]
pub struct JobContainer {
    docker: Arc<Docker>,
    container: String,
}

impl JobContainer {
    pub fn new(docker: Arc<Docker>, container: impl Into<String>) -> JobContainer {
        JobContainer {
            docker,
            container: container.into(),
        }
    }

    async fn run_exec(
        &self,
        cmd: &Command,
        sink: &mut OutputSink,
        mut cancel: watch::Receiver<bool>,
    ) -> Exit {
        if *cancel.borrow() {
            return Exit::Cancelled;
        }
        // `stop` fires the in-exec kill; the outer loop bounds every Docker
        // call, stalled or not, by the timeout plus a grace.
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let stop = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        let mut on_output = |stream, bytes: &[u8]| sink.write(stream, bytes);
        let mut exec = Box::pin(self.docker.exec_raw_until(
            &self.container,
            cmd.argv.clone(),
            cmd.env.clone(),
            &cmd.cwd,
            cmd.stdin.clone(),
            &mut on_output,
            stop,
        ));
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let deadline = cmd.timeout.map_or(far, |t| Instant::now() + t);
        let mut forced: Option<Exit> = None;
        let mut give_up = far;
        let result = loop {
            tokio::select! {
                r = &mut exec => break Some(r),
                _ = tokio::time::sleep_until(deadline), if forced.is_none() => {
                    forced = Some(Exit::TimedOut(cmd.timeout.unwrap_or_default()));
                    let _ = stop_tx.send(true);
                    give_up = Instant::now() + DOCKER_STOP_GRACE;
                }
                r = cancel.changed(), if forced.is_none() => {
                    if r.is_err() || *cancel.borrow() {
                        forced = Some(Exit::Cancelled);
                        let _ = stop_tx.send(true);
                        give_up = Instant::now() + DOCKER_STOP_GRACE;
                    }
                }
                // Dropping the exec future kills what it started (its guard).
                _ = tokio::time::sleep_until(give_up) => break None,
            }
        };
        drop(exec);
        sink.end_of_output();
        match (forced, result) {
            (Some(f), _) => f,
            (None, Some(Ok(out))) => Exit::Code(out.exit_code as i32),
            (None, Some(Err(e))) => Exit::Failed(e.to_string()),
            (None, None) => Exit::Failed("the Docker daemon stopped answering".into()),
        }
    }
}

impl Executor for JobContainer {
    fn run<'a>(
        &'a self,
        cmd: &'a Command,
        sink: &'a mut OutputSink,
        cancel: watch::Receiver<bool>,
    ) -> BoxFuture<'a, Exit> {
        Box::pin(self.run_exec(cmd, sink, cancel))
    }

    fn describe(&self) -> String {
        format!(
            "container {}",
            self.container.get(..12).unwrap_or(&self.container)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Stream};

    fn sink() -> (OutputSink, std::sync::mpsc::Receiver<Event>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (
            OutputSink::new(None, super::super::Events::new(tx), "j".into(), 0),
            rx,
        )
    }

    fn sh(script: &str) -> Command {
        Command {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            ..Command::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_keeps_streams_apart_feeds_stdin_and_captures() {
        let (mut s, rx) = sink();
        s.capture_stdout(4);
        let mut cmd = sh("cat; echo oops >&2; exit 3");
        cmd.stdin = Some(b"hello\n".to_vec());
        let (_tx, cancel) = watch::channel(false);
        let exit = Local::new().run(&cmd, &mut s, cancel).await;
        assert_eq!(exit, Exit::Code(3));
        assert_eq!(s.take_stdout(), (b"hell".to_vec(), true));
        let got: Vec<(Stream, String)> = rx
            .try_iter()
            .filter_map(|e| match e {
                Event::StepOutput { stream, line, .. } => Some((stream, line)),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, "hello".into()),
                (Stream::Stderr, "oops".into())
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_timeout_fires_while_output_floods() {
        let (mut s, _rx) = sink();
        let mut cmd = sh("yes");
        cmd.timeout = Some(Duration::from_millis(300));
        let (_tx, cancel) = watch::channel(false);
        let started = std::time::Instant::now();
        let exit = Local::new().run(&cmd, &mut s, cancel).await;
        assert_eq!(exit, Exit::TimedOut(Duration::from_millis(300)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A daemon that answers the ping and then never again: the step's
    /// timeout still ends the step, a grace later.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_docker_daemon_is_bounded_by_the_step_timeout() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut conn = conn;
                    let mut buf = Vec::new();
                    let mut byte = [0u8; 1];
                    while conn.read(&mut byte).is_ok_and(|n| n == 1) {
                        buf.push(byte[0]);
                        if !buf.ends_with(b"\r\n\r\n") {
                            continue;
                        }
                        let head = String::from_utf8_lossy(&buf).to_string();
                        buf.clear();
                        let body = if head.contains("/_ping") {
                            "OK"
                        } else if head.contains("/version") {
                            r#"{"ApiVersion":"1.41","Version":"fake"}"#
                        } else {
                            // Stall: hold the connection, answer nothing.
                            std::thread::sleep(Duration::from_secs(3600));
                            return;
                        };
                        let _ = write!(
                            conn,
                            "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                });
            }
        });
        let host = format!("unix://{}", sock.display());
        let docker = Docker::connect_with(&host, "test").await.unwrap();
        let exec = JobContainer::new(Arc::new(docker), "0123456789abcdef");
        let (mut s, _rx) = sink();
        let mut cmd = sh("true");
        cmd.timeout = Some(Duration::from_millis(500));
        let (_tx, cancel) = watch::channel(false);
        let started = std::time::Instant::now();
        let exit = exec.run(&cmd, &mut s, cancel).await;
        assert_eq!(exit, Exit::TimedOut(Duration::from_millis(500)));
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(500) + DOCKER_STOP_GRACE + Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(exec.describe(), "container 0123456789ab");
    }
}
