//! `trun list`: the jobs of the workflow, as text or JSON.

use super::{load, CmdResult, ListArgs, EXIT_OK};

pub(super) fn cmd_list(a: ListArgs) -> CmdResult {
    let (wf, _) = load(&a.file)?;
    let jobs = &wf.workflow.jobs.value;
    if a.json {
        let list = wf.job_summaries();
        outln!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(EXIT_OK);
    }
    let width = jobs.keys().map(str::len).max().unwrap_or(0);
    for (id, j) in jobs.iter() {
        let name = j
            .value
            .name
            .as_ref()
            .map(|n| n.value.as_str())
            .unwrap_or("");
        let needs: Vec<&str> = j
            .value
            .needs
            .as_ref()
            .map(|n| n.value.iter().map(|s| s.value.as_str()).collect())
            .unwrap_or_default();
        let mut line = format!("{:width$}  {name}", id.value);
        if !needs.is_empty() {
            line = format!("{}  (needs: {})", line.trim_end(), needs.join(", "));
        }
        outln!("{}", line.trim_end());
    }
    Ok(EXIT_OK)
}
