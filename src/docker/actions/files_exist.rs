//! `files/exist`: every listed path (relative to the workspace) must exist.

use super::schema::list;
use super::{ActionCtx, ActionError, ActionResult};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub fn run(with: &Map<String, Value>, ctx: &ActionCtx<'_>) -> Result<ActionResult, ActionError> {
    let paths = list(with, "paths");
    // Every missing path is named, not only the first: fixing one at a time is tedious.
    let missing: Vec<String> = paths
        .iter()
        .filter(|p| !ctx.workspace.join(p).exists())
        .cloned()
        .collect();
    Ok(match missing.as_slice() {
        [] => ActionResult::ok(BTreeMap::new()),
        [one] => ActionResult::failed(format!("missing file: {one}")),
        many => ActionResult::failed(format!("missing files: {}", many.join(", "))),
    })
}
