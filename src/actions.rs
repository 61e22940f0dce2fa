//! The registry of built-in actions (`uses:`) as the engine sees it: which
//! names exist, how their `with` is validated at plan time, and how a step
//! runs one. The actions themselves live with what they drive
//! ([`crate::docker::actions`]).

use crate::docker::actions::{self as builtin, ActionCtx, Memory};
use crate::docker::Docker;
use crate::event::Stream;
use crate::exec::process::Exit;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub use builtin::WithError;

/// The action that expands a rubric into one generated step per criterion.
pub const GRADE: &str = "rubric/grade";

/// Every built-in, for help texts and did-you-mean.
pub const KNOWN: &[&str] = &[
    "files/exist",
    "docker/build",
    "docker/pull",
    "docker/run",
    "docker/exec",
    GRADE,
];

pub fn is_builtin(uses: &str) -> bool {
    uses == GRADE || builtin::is_builtin(uses)
}

pub fn known() -> &'static [&'static str] {
    KNOWN
}

pub fn needs_docker(uses: &str) -> bool {
    builtin::needs_docker(uses)
}

pub fn validate(uses: &str, with: &Map<String, Value>) -> Result<(), WithError> {
    if uses != GRADE {
        return builtin::validate(uses, with);
    }
    const KEYS: [&str; 3] = ["rubric", "repo", "local"];
    for key in with.keys() {
        if !KEYS.contains(&key.as_str()) {
            let hint = crate::diag::did_you_mean(key, KEYS)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(WithError {
                key: Some(key.clone()),
                message: format!(
                    "unknown key `{key}`{hint}; `{GRADE}` takes `rubric`, `repo` and `local`"
                ),
            });
        }
    }
    if let Some(v) = with.get("local") {
        if !v.is_boolean() {
            return Err(WithError {
                key: Some("local".into()),
                message: "`local` is true or false".into(),
            });
        }
    }
    match with.get("rubric") {
        None => Err(WithError {
            key: None,
            message: "missing required key `rubric` (the rubric file)".into(),
        }),
        // The rubric is read at plan time to generate the steps, so it
        // cannot depend on anything computed during the run.
        Some(Value::String(s)) if !s.contains("${{") => Ok(()),
        Some(_) => Err(WithError {
            key: Some("rubric".into()),
            message: "`rubric` must be a literal path (it is read when the plan is made)".into(),
        }),
    }
}

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
        _ = crate::exec::cancelled(cancel) => return Outcome { exit: Exit::Cancelled, outputs: BTreeMap::new(), skipped: None },
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
