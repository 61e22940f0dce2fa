//! `trun list`: the jobs of the workflow, as text or JSON.

use super::{load, CmdResult, ListArgs, EXIT_OK};

pub(super) fn cmd_list(a: ListArgs) -> CmdResult {
    let (wf, _) = load(&a.file)?;
    let jobs = &wf.workflow.jobs.value;
    // The jobs a reusable workflow call runs: `caller/called`.
    let calls = crate::reusable::load_tree(&wf, 0)?;
    let called_ids = |id: &str| -> Vec<String> {
        calls
            .get(id)
            .map(|c| crate::reusable::job_ids(id, c))
            .unwrap_or_default()
    };
    if a.json {
        let mut list = wf.job_summaries();
        for j in &mut list {
            j.calls = called_ids(&j.id);
        }
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
        if let Some(u) = &j.value.uses {
            line = format!("{}  (uses: {})", line.trim_end(), u.value);
        }
        outln!("{}", line.trim_end());
        for c in called_ids(&id.value) {
            outln!("  {c}");
        }
    }
    Ok(EXIT_OK)
}
