//! `trun validate`: check the workflow file without running anything.

use super::{load, CmdResult, FileOnly, EXIT_OK};

pub(super) fn cmd_validate(a: FileOnly) -> CmdResult {
    let (wf, _) = load(&a.file)?;
    let n = wf.workflow.jobs.value.len();
    outln!(
        "{}: ok ({n} job{})",
        wf.path.display(),
        if n == 1 { "" } else { "s" }
    );
    Ok(EXIT_OK)
}
