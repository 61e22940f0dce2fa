//! `trun plan`: what would run, in order, and why each step runs or is skipped.

use super::{load, out, use_color, CmdResult, PlanArgs, EXIT_OK};
use crate::diag::Diagnostic;
use crate::plan::{self, Request};

pub(super) fn cmd_plan(a: PlanArgs) -> CmdResult {
    let (wf, _) = load(&a.file)?;
    let plan = plan::build(
        &wf,
        &Request {
            jobs: a.jobs,
            inputs: a.inputs,
        },
    )?;
    let explained =
        crate::explain::explain(&plan, &a.force).map_err(|e| vec![Diagnostic::plain(e)])?;
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&explained).unwrap_or_default()
        );
    } else {
        out(&crate::explain::render(
            &explained,
            use_color(a.file.no_color),
        ));
    }
    Ok(EXIT_OK)
}
