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
}
