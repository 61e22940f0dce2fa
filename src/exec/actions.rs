//! Running a built-in action (`uses:`) as a step: the step's timeout and the
//! run's cancellation around [`crate::docker::actions::run`], its lines into the
//! step's output, and action memory kept in the state store. Which actions exist
//! and how their `with` is checked is [`crate::actions`].

use super::process::Exit;
use crate::docker::actions::{self as builtin, ActionCtx, Memory};
use crate::docker::Docker;
use crate::event::Stream;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What an action step knows about where it runs.
pub struct Ctx {
    pub run_id: i64,
    pub job: String,
    pub step_key: String,
    pub workspace: PathBuf,
    pub docker: Option<Arc<Docker>>,
    pub memory: Arc<dyn Memory>,
}

/// How an action step ended: like a process, plus "nothing needed doing".
pub struct Outcome {
    pub exit: Exit,
    pub outputs: BTreeMap<String, String>,
    pub skipped: Option<String>,
}

/// Run an action with the step's timeout and the run's cancellation.
pub async fn execute(
    uses: &str,
    with: &Map<String, Value>,
    ctx: &Ctx,
    timeout: Option<Duration>,
    cancel: &mut watch::Receiver<bool>,
    log: &mut (dyn Write + Send),
    on_line: &mut (dyn FnMut(Stream, String) + Send),
) -> Outcome {
    let actx = ActionCtx {
        run_id: ctx.run_id,
        job: ctx.job.clone(),
        step_key: ctx.step_key.clone(),
        workspace: ctx.workspace.clone(),
        docker: ctx.docker.as_deref(),
        memory: ctx.memory.as_ref(),
    };
    let mut tee = |stream: Stream, line: String| {
        let _ = writeln!(log, "{line}");
        on_line(stream, line);
    };
    let fut = builtin::run(uses, with, &actx, &mut tee);
    let sleep = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = fut => r,
        _ = sleep => return Outcome { exit: Exit::TimedOut(timeout.unwrap_or_default()), outputs: BTreeMap::new(), skipped: None },
        _ = super::cancelled(cancel) => return Outcome { exit: Exit::Cancelled, outputs: BTreeMap::new(), skipped: None },
    };
    match result {
        Ok(r) => {
            if let Some(m) = &r.message {
                let _ = writeln!(log, "{m}");
                on_line(Stream::Stderr, m.clone());
            }
            Outcome {
                exit: if r.success {
                    Exit::Code(0)
                } else {
                    Exit::Failed(r.message.unwrap_or_else(|| format!("{uses} failed")))
                },
                outputs: r.outputs,
                skipped: r.skipped,
            }
        }
        Err(e) => {
            let msg = e.to_string();
            let _ = writeln!(log, "{msg}");
            on_line(Stream::Stderr, msg.clone());
            Outcome {
                exit: Exit::Failed(msg),
                outputs: BTreeMap::new(),
                skipped: None,
            }
        }
    }
}

/// Action memory (last pull time, last build's inputs) in the state store's
/// key-value table, so it survives between runs. Shares the process's store.
pub struct StoreMemory(pub Arc<dyn crate::state::Store>);

impl Memory for StoreMemory {
    fn get(&self, key: &str) -> Option<String> {
        self.0.kv_get("actions", key).ok().flatten()
    }

    fn set(&self, key: &str, value: &str) {
        let _ = self.0.kv_set("actions", key, value);
    }

    fn newest_with_prefix(&self, prefix: &str) -> Option<(String, String)> {
        self.0
            .kv_newest_with_prefix("actions", prefix)
            .ok()
            .flatten()
    }
}

/// Where a GitHub action's probes run: the step's executor (the job's container, or a
/// host process), with the step's environment and working directory.
pub struct Where<'a> {
    pub executor: &'a dyn super::executor::Executor,
    pub env: &'a [(String, String)],
    pub cwd: &'a std::path::Path,
}

/// The most a probe's stdout may print (`git ls-files -z` of a large repository).
const PROBE_STDOUT_CAP: usize = 64 << 20;
const PROBE_STDERR_CAP: usize = 64 << 10;
/// A probe asks for a version or a file list: a minute is plenty.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs probes through the step's executor; their output is captured, not logged.
struct ExecProbe<'a> {
    at: Where<'a>,
    cancel: watch::Receiver<bool>,
}

impl crate::actions::github::Probe for ExecProbe<'_> {
    fn run<'b>(
        &'b mut self,
        argv: &'b [&'b str],
    ) -> futures_util::future::BoxFuture<'b, Option<crate::actions::github::ProbeOutput>> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        Box::pin(self.exec(argv, None, PROBE_TIMEOUT))
    }

    fn shell<'b>(
        &'b mut self,
        script: &'b str,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
    ) -> futures_util::future::BoxFuture<'b, Option<crate::actions::github::ProbeOutput>> {
        let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        Box::pin(self.exec(argv, stdin, timeout))
    }
}

impl ExecProbe<'_> {
    async fn exec(
        &mut self,
        argv: Vec<String>,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Option<crate::actions::github::ProbeOutput> {
        let cmd = super::executor::Command {
            argv,
            env: self.at.env.to_vec(),
            cwd: self.at.cwd.to_path_buf(),
            stdin,
            timeout: Some(timeout),
        };
        // No log file, and events nobody receives: the action says what matters.
        let (tx, _) = std::sync::mpsc::channel();
        let mut sink =
            super::output::OutputSink::new(None, super::Events::new(tx), String::new(), 0);
        sink.capture_stream(Stream::Stdout, PROBE_STDOUT_CAP);
        sink.capture_stream(Stream::Stderr, PROBE_STDERR_CAP);
        let exit = self
            .at
            .executor
            .run(&cmd, &mut sink, self.cancel.clone())
            .await;
        if matches!(exit, Exit::SpawnFailed(_)) {
            return None;
        }
        let (out, truncated) = sink.take_captured(Stream::Stdout);
        let (err, _) = sink.take_captured(Stream::Stderr);
        let mut stderr = String::from_utf8_lossy(&err).into_owned();
        if let Exit::TimedOut(t) = exit {
            stderr.push_str(&format!("\ntimed out after {}", crate::duration::format(t)));
        }
        Some(crate::actions::github::ProbeOutput {
            success: exit.success() && !truncated,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr,
        })
    }
}

/// End-of-job work a GitHub action asked for (saving a cache after a miss), run by
/// [`run_post`] when the job succeeded.
pub struct Post {
    pub kind: crate::actions::github::Builtin,
    pub uses: String,
    pub data: Value,
    /// The index of the step that asked, whose output the post's lines join.
    pub step: usize,
}

/// The run around a GitHub action: its workspace, memory, store, and job.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub workspace: &'a std::path::Path,
    pub memory: &'a dyn Memory,
    pub store: Option<&'a dyn crate::state::Store>,
    pub run_id: i64,
    pub job: &'a str,
}

fn github_ctx<'a>(
    uses: &str,
    s: Scope<'a>,
    in_container: bool,
    step_env: &[(String, String)],
) -> crate::actions::github::Ctx<'a> {
    let (workspace, memory) = (s.workspace, s.memory);
    crate::actions::github::Ctx {
        step_env: step_env.to_vec(),
        run_id: s.run_id,
        job: s.job.to_string(),
        store: s.store,
        workspace: workspace.to_path_buf(),
        home: std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from),
        in_container,
        cas_dir: workspace.join(".trun").join("cas"),
        memory,
        uses: uses.to_string(),
    }
}

/// Runs one end-of-job hook; its lines go to `on_line`.
pub fn run_post(
    post: &Post,
    scope: Scope<'_>,
    in_container: bool,
    on_line: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<(), String> {
    let ctx = github_ctx(&post.uses, scope, in_container, &[]);
    crate::actions::github::post(post.kind, &post.data, &ctx, on_line)
}

/// Run one of the GitHub actions trun does itself ([`crate::actions::github`]) with the
/// step's timeout and the run's cancellation; its lines go to the step's output. Also
/// returns what the action wants done at the end of the job.
#[allow(clippy::too_many_arguments)]
pub async fn execute_github(
    kind: crate::actions::github::Builtin,
    uses: &str,
    with: &Map<String, Value>,
    scope: Scope<'_>,
    at: Where<'_>,
    timeout: Option<Duration>,
    cancel: &mut watch::Receiver<bool>,
    sink: &mut super::output::OutputSink,
) -> (Outcome, Option<Value>) {
    let in_container = at.executor.describe() != "local";
    let ctx = github_ctx(uses, scope, in_container, at.env);
    let mut probe = ExecProbe {
        at,
        cancel: cancel.clone(),
    };
    let mut lines: Vec<(Stream, String)> = Vec::new();
    let result = {
        let mut out = |s: Stream, l: String| lines.push((s, l));
        let fut = crate::actions::github::run(kind, with, &ctx, &mut probe, &mut out);
        let sleep = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = fut => Some(r),
            _ = sleep => None,
            _ = super::cancelled(cancel) => return (Outcome { exit: Exit::Cancelled, outputs: BTreeMap::new(), skipped: None }, None),
        }
    };
    for (s, l) in lines {
        sink.line(s, &l);
    }
    match result {
        None => (
            Outcome {
                exit: Exit::TimedOut(timeout.unwrap_or_default()),
                outputs: BTreeMap::new(),
                skipped: None,
            },
            None,
        ),
        Some(Ok(done)) => (
            Outcome {
                exit: Exit::Code(0),
                outputs: done.outputs,
                skipped: None,
            },
            done.post,
        ),
        Some(Err(msg)) => {
            sink.line(Stream::Stderr, &msg);
            (
                Outcome {
                    exit: Exit::Failed(msg),
                    outputs: BTreeMap::new(),
                    skipped: None,
                },
                None,
            )
        }
    }
}
