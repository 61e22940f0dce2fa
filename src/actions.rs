//! The registry of built-in actions (`uses:`): which names exist, how their
//! `with` is validated at plan time, and how a step runs one. The actions
//! themselves live with what they drive ([`crate::docker::actions`]).

use crate::event::Stream;
use crate::exec::process::Exit;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

pub const KNOWN: &[&str] = &["files/exist", "docker/build", "docker/pull", "docker/run", "docker/exec"];

pub fn is_builtin(uses: &str) -> bool {
    KNOWN.contains(&uses)
}

pub fn known() -> &'static [&'static str] {
    KNOWN
}

/// A problem with a `with:` block, naming the key when there is one.
#[derive(Debug, Clone)]
pub struct WithError {
    pub key: Option<String>,
    pub message: String,
}

pub fn validate(_uses: &str, _with: &Map<String, Value>) -> Result<(), WithError> {
    Ok(())
}

/// What an action step knows about where it runs.
pub struct Ctx {
    pub run_id: i64,
    pub job: String,
    pub step_key: String,
    pub workspace: PathBuf,
    /// Where outputs go, in `$TRUN_OUTPUT` format.
    pub output_file: PathBuf,
}

#[allow(clippy::too_many_arguments)]
pub async fn execute(
    uses: &str,
    _with: &Map<String, Value>,
    _ctx: &Ctx,
    _timeout: Option<Duration>,
    _cancel: &mut watch::Receiver<bool>,
    _log: &mut (dyn Write + Send),
    _on_line: &mut (dyn FnMut(Stream, String) + Send),
) -> Exit {
    Exit::SpawnFailed(format!("{uses}: not available in this build"))
}
