//! Running a command in a running container (`docker exec`), streaming its output
//! line by line, and killing it reliably on timeout or Ctrl-C.
//!
//! The Engine API has no "kill this exec": dropping the attached stream leaves the
//! process running in the container. So every exec gets a unique
//! `TRUN_EXEC_TOKEN=<random>` in its environment, which all its descendants
//! inherit, and killing means a second, tiny exec that scans `/proc/*/environ` for
//! the token, sends SIGTERM, waits up to [`KILL_GRACE`], then SIGKILLs what is
//! left. This works without a pid file (read-only root file systems) and catches
//! children that started their own process group or session. It needs `sh`,
//! `grep`, `kill` and `sleep` in the image, and runs as the container's default
//! user, which is also the exec's user (a process may read the environ of its own
//! uid without CAP_SYS_PTRACE). A process that clears its environment (`env -i`)
//! escapes the scan; container removal at the end of the run still stops it.
//!
//! Cancellation: [`Docker::exec_until`] takes a `stop` future (a timeout, a
//! Ctrl-C notification) and kills before returning; if the exec future itself is
//! dropped, a guard spawns the same kill on the current tokio runtime.

use super::client::Docker;
use super::container::unique_suffix;
use super::error::DockerError;
use crate::event::Stream;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// Time between SIGTERM and SIGKILL when an exec is killed.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// How long output may keep flowing after the kill before we stop reading.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(5);

/// How long one Docker API call may take before the daemon counts as stalled.
pub const API_TIMEOUT: Duration = Duration::from_secs(60);

/// `fut` bounded by [`API_TIMEOUT`]: a stalled daemon becomes an error
/// rather than a hang.
async fn bounded<T>(action: &str, fut: impl Future<Output = T>) -> Result<T, DockerError> {
    tokio::time::timeout(API_TIMEOUT, fut)
        .await
        .map_err(|_| DockerError::Api {
            action: action.to_string(),
            message: format!(
                "the Docker daemon did not answer within {}s",
                API_TIMEOUT.as_secs()
            ),
        })
}

const KILL_SCRIPT: &str = r#"t=$1; n=$2
scan() { found=; for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = "$$" ] && continue; grep -q "TRUN_EXEC_TOKEN=$t" "$d/environ" 2>/dev/null && found="$found $p"; done; }
scan; [ -z "$found" ] && exit 0
kill -TERM $found 2>/dev/null
i=0
while [ "$i" -lt "$n" ]; do sleep 0.1; scan; [ -z "$found" ] && exit 0; i=$((i+1)); done
kill -KILL $found 2>/dev/null
exit 0"#;

/// How a finished exec ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOutcome {
    /// The process's exit code; 128+signal when it was killed by one.
    pub exit_code: i64,
    /// True when `stop` fired and the process (tree) was killed.
    pub killed: bool,
}

impl Docker {
    /// Runs `argv` in `container` (as the container's user) and streams complete
    /// output lines to `on_output` as they arrive, stdout and stderr demultiplexed.
    pub async fn exec(
        &self,
        container: &str,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        workdir: &Path,
        on_output: &mut (dyn FnMut(Stream, String) + Send),
    ) -> Result<ExecOutcome, DockerError> {
        self.exec_until(
            container,
            argv,
            env,
            workdir,
            on_output,
            std::future::pending(),
        )
        .await
    }

    /// [`Docker::exec`] that kills the process tree as soon as `stop` completes
    /// (e.g. `tokio::time::sleep(timeout)` or a Ctrl-C notification) and then
    /// returns with `killed: true`.
    pub async fn exec_until(
        &self,
        container: &str,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        workdir: &Path,
        on_output: &mut (dyn FnMut(Stream, String) + Send),
        stop: impl Future<Output = ()>,
    ) -> Result<ExecOutcome, DockerError> {
        let mut lines = Lines::default();
        let mut raw = |stream: Stream, bytes: &[u8]| lines.push(stream, bytes, on_output);
        let r = self
            .exec_raw_until(container, argv, env, workdir, None, &mut raw, stop)
            .await;
        lines.flush(on_output);
        r
    }

    /// [`Docker::exec_until`] handing over output as it arrives, in chunks
    /// tagged by stream, with `stdin` (if any) written to the command's input
    /// and then closed. Every Docker call is bounded by [`API_TIMEOUT`].
    #[allow(clippy::too_many_arguments)]
    pub async fn exec_raw_until(
        &self,
        container: &str,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        workdir: &Path,
        stdin: Option<Vec<u8>>,
        on_output: &mut (dyn FnMut(Stream, &[u8]) + Send),
        stop: impl Future<Output = ()>,
    ) -> Result<ExecOutcome, DockerError> {
        let token = format!("{}{}", unique_suffix(), unique_suffix());
        let mut env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.push(format!("TRUN_EXEC_TOKEN={token}"));
        let created = bounded(
            "creating an exec",
            self.api().create_exec(
                container,
                CreateExecOptions {
                    attach_stdin: Some(stdin.is_some()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    env: Some(env),
                    cmd: Some(argv),
                    working_dir: Some(workdir.to_string_lossy().to_string()),
                    ..Default::default()
                },
            ),
        )
        .await?
        .map_err(|e| {
            DockerError::api(
                format!("creating an exec in container {}", short(container)),
                e,
            )
        })?;
        let mut guard = KillOnDrop {
            docker: Some(self.clone()),
            container: container.to_string(),
            token: token.clone(),
        };
        let started = bounded(
            "starting an exec",
            self.api()
                .start_exec(&created.id, Some(StartExecOptions::default())),
        )
        .await?
        .map_err(|e| {
            DockerError::api(
                format!("starting an exec in container {}", short(container)),
                e,
            )
        })?;
        let StartExecResults::Attached { mut output, input } = started else {
            return Err(DockerError::Api {
                action: "starting an exec".into(),
                message: "the daemon did not attach the output".into(),
            });
        };
        let feeder = stdin.map(|bytes| {
            let mut input = input;
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = input.write_all(&bytes).await;
                let _ = input.shutdown().await;
            })
        });

        let mut stop = std::pin::pin!(stop);
        let mut killed = false;
        loop {
            let next = async {
                if killed {
                    tokio::time::timeout(DRAIN_AFTER_KILL, output.next())
                        .await
                        .unwrap_or(None)
                } else {
                    output.next().await
                }
            };
            tokio::select! {
                item = next => match item {
                    None => break,
                    Some(Ok(LogOutput::StdOut { message })) => on_output(Stream::Stdout, &message),
                    Some(Ok(LogOutput::StdErr { message })) => on_output(Stream::Stderr, &message),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(DockerError::api("reading exec output", e)),
                },
                _ = &mut stop, if !killed => {
                    killed = true;
                    bounded("killing an exec", self.kill_exec(container, &token)).await??;
                }
            }
        }
        if let Some(f) = feeder {
            f.abort();
        }
        guard.docker = None;

        // The stream can close a moment before the daemon records the exit code.
        for _ in 0..50 {
            let info = bounded("inspecting an exec", self.api().inspect_exec(&created.id))
                .await?
                .map_err(|e| DockerError::api("inspecting an exec", e))?;
            if info.running != Some(true) {
                return Ok(ExecOutcome {
                    exit_code: info.exit_code.unwrap_or(-1),
                    killed,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(DockerError::Api {
            action: "waiting for an exec to finish".into(),
            message: "its output ended but the daemon still reports it running".into(),
        })
    }

    /// Kills every process in `container` whose environment carries `token`
    /// (SIGTERM, then SIGKILL after [`KILL_GRACE`]). See the module docs.
    pub async fn kill_exec(&self, container: &str, token: &str) -> Result<(), DockerError> {
        let tenths = (KILL_GRACE.as_millis() / 100).to_string();
        let argv = ["sh", "-c", KILL_SCRIPT, "trun-kill", token, &tenths]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let created = self
            .api()
            .create_exec(
                container,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(argv),
                    ..Default::default()
                },
            )
            .await;
        let created = match created {
            Ok(c) => c,
            // A container that is gone or stopped has no process left to kill.
            Err(e) if super::error::is_not_found(&e) => return Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => return Ok(()),
            Err(e) => return Err(DockerError::api("killing an exec", e)),
        };
        if let Ok(StartExecResults::Attached { mut output, .. }) =
            self.api().start_exec(&created.id, None).await
        {
            while output.next().await.is_some() {}
        }
        Ok(())
    }
}

/// Kills the exec when its future is dropped before it finished (the caller gave
/// up: `tokio::time::timeout` elapsed, a `select!` branch lost, a task aborted).
struct KillOnDrop {
    docker: Option<Docker>,
    container: String,
    token: String,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let Some(docker) = self.docker.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let container = std::mem::take(&mut self.container);
            let token = std::mem::take(&mut self.token);
            rt.spawn(async move {
                let _ = bounded("killing an exec", docker.kill_exec(&container, &token)).await;
            });
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Splits the byte chunks of each stream into lines; a chunk boundary can fall
/// anywhere, even inside a UTF-8 sequence, so bytes are buffered until `\n`.
#[derive(Default)]
pub(crate) struct Lines {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Lines {
    pub(crate) fn push(
        &mut self,
        stream: Stream,
        bytes: &[u8],
        out: &mut (dyn FnMut(Stream, String) + Send),
    ) {
        let buf = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        buf.extend_from_slice(bytes);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            out(stream, text(&line[..line.len() - 1]));
        }
        // A line without end is passed on in pieces, not kept whole.
        while buf.len() >= crate::event::MAX_LINE {
            let piece: Vec<u8> = buf.drain(..crate::event::MAX_LINE).collect();
            out(stream, text(&piece));
        }
    }

    pub(crate) fn flush(&mut self, out: &mut (dyn FnMut(Stream, String) + Send)) {
        for (stream, buf) in [
            (Stream::Stdout, &mut self.stdout),
            (Stream::Stderr, &mut self.stderr),
        ] {
            if !buf.is_empty() {
                out(stream, text(buf));
                buf.clear();
            }
        }
    }
}

fn text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.strip_suffix('\r').unwrap_or(&s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_survive_arbitrary_chunking() {
        let mut got = Vec::new();
        let mut out = |s: Stream, l: String| got.push((s, l));
        let mut lines = Lines::default();
        lines.push(Stream::Stdout, b"he", &mut out);
        lines.push(Stream::Stderr, b"err\r\n", &mut out);
        lines.push(Stream::Stdout, b"llo\nwor", &mut out);
        lines.push(Stream::Stdout, "ld \u{e9}\n".as_bytes(), &mut out);
        lines.push(Stream::Stdout, b"tail", &mut out);
        lines.flush(&mut out);
        assert_eq!(
            got,
            vec![
                (Stream::Stderr, "err".to_string()),
                (Stream::Stdout, "hello".to_string()),
                (Stream::Stdout, "world \u{e9}".to_string()),
                (Stream::Stdout, "tail".to_string()),
            ]
        );
    }
}
