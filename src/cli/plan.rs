//! `trun plan` (and `trun run --dry-run`): what would run, in order, and why
//! each step runs or is skipped.

use super::{load, out, use_color, CmdResult, PlanArgs, EXIT_OK};
use crate::diag::Diagnostic;
use crate::plan::{self, Plan, Request};

pub(super) fn cmd_plan(a: PlanArgs) -> CmdResult {
    let (wf, _) = load(&a.file)?;
    for w in plan::warnings(&wf) {
        eprint!("{}", w.render_warning(super::use_color(a.file.no_color)));
    }
    let plan = plan::build(
        &wf,
        &Request {
            jobs: a.jobs,
            inputs: a.inputs,
        },
    )?;
    print_plan(&plan, &a.force, a.json, a.file.no_color)
}

/// Prints the explained plan, as text or JSON.
pub(super) fn print_plan(plan: &Plan, force: &[String], json: bool, no_color: bool) -> CmdResult {
    let explained = crate::explain::explain(plan, force).map_err(|e| vec![Diagnostic::plain(e)])?;
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
