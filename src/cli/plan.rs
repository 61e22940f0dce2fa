//! `trun plan` (and `trun run --dry-run`): what would run, in order, and why
//! each step runs or is skipped.

use super::{out, use_color, CmdResult, PlanArgs, EXIT_OK};
use crate::diag::Diagnostic;
use crate::plan::Plan;

pub(super) fn cmd_plan(a: PlanArgs) -> CmdResult {
    let (_, mut plan) = super::load_plan(&a.file, &a.jobs, &a.inputs)?;
    a.secrets.apply(&mut plan)?;
    print_plan(&plan, &a.force, a.json, &a.file)
}

/// Prints the explained plan, as text or JSON.
pub(super) fn print_plan(
    plan: &Plan,
    force: &[String],
    json: bool,
    file: &super::FileArgs,
) -> CmdResult {
    let explained = crate::explain::explain(plan, force, file.db.as_deref())
        .map_err(|e| vec![Diagnostic::plain(e)])?;
    let no_color = file.no_color;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&explained).unwrap_or_default()
        );
    } else {
        out(&crate::explain::render(&explained, use_color(no_color)));
    }
    Ok(EXIT_OK)
}
