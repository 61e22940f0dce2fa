//! `trun -W`: the GitHub Actions workflows of the repository (`.github/workflows/*.yml`)
//! with their triggers and jobs, as `act -l` lists them; `-W NAME` picks one.

use super::{CmdResult, FileArgs, EXIT_OK};
use crate::diag::Diagnostic;
use crate::workflow::WorkflowFile;
use std::path::PathBuf;

/// The workflow `-W` names: a path as given, else `.github/workflows/NAME`,
/// `NAME.yml` or `NAME.yaml` of the repository here or above.
pub(super) fn choose(name: &str) -> Result<PathBuf, Vec<Diagnostic>> {
    if name.is_empty() {
        return Err(vec![Diagnostic::plain(
            "`-W` without a workflow lists the workflows; it cannot be combined with a command",
        )
        .with_help(
            "run `trun -W` alone to list them, or `trun -W NAME COMMAND` to use one",
        )]);
    }
    let given = PathBuf::from(name);
    if name.contains('/') || std::fs::symlink_metadata(&given).is_ok() {
        return Ok(given);
    }
    let cwd = std::env::current_dir().map_err(|e| {
        vec![Diagnostic::plain(format!(
            "cannot read the current directory: {e}"
        ))]
    })?;
    let Some((_, files)) = crate::github::workflow_files(&cwd) else {
        return Err(vec![Diagnostic::plain(format!(
            "no .github/workflows directory in {} or any parent directory",
            cwd.display()
        ))]);
    };
    let stem = |p: &PathBuf| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if let Some(f) = files
        .iter()
        .find(|p| p.file_name().is_some_and(|f| f == name) || stem(p) == name)
    {
        return Ok(super::pathdiff(f, &cwd));
    }
    let names: Vec<String> = files.iter().map(stem).collect();
    let d = Diagnostic::plain(format!("no workflow `{name}` in .github/workflows"));
    Err(vec![
        match crate::diag::did_you_mean(name, names.iter().map(String::as_str)) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None if names.is_empty() => d.with_help("the directory holds no .yml or .yaml file"),
            None => d.with_help(format!("workflows: {}", names.join(", "))),
        },
    ])
}

pub(super) fn cmd_workflows(file: &FileArgs, json: bool) -> CmdResult {
    if let Some(dir) = &file.directory {
        std::env::set_current_dir(dir).map_err(|e| {
            vec![Diagnostic::plain(format!(
                "cannot change to directory {}: {e}",
                dir.display()
            ))]
        })?;
    }
    let cwd = std::env::current_dir().map_err(|e| {
        vec![Diagnostic::plain(format!(
            "cannot read the current directory: {e}"
        ))]
    })?;
    let Some((_, files)) = crate::github::workflow_files(&cwd) else {
        return Err(vec![Diagnostic::plain(format!(
            "no .github/workflows directory in {} or any parent directory",
            cwd.display()
        ))]);
    };
    let mut listed = Vec::new();
    let mut text = String::new();
    for f in &files {
        let shown = super::pathdiff(f, &cwd).display().to_string();
        match WorkflowFile::load(f) {
            Ok(wf) => {
                let w = &wf.workflow;
                let on = w.on.as_ref().map(|o| o.value.names()).unwrap_or_default();
                let name = w.name.as_ref().map(|n| n.value.clone()).unwrap_or_default();
                let jobs: Vec<serde_json::Value> = w
                    .jobs
                    .value
                    .iter()
                    .map(|(id, j)| {
                        let j = &j.value;
                        serde_json::json!({
                            "id": id.value,
                            "name": j.name.as_ref().map(|n| n.value.clone()),
                            "needs": j.needs.as_ref().map(|n| n.value.iter().map(|s| s.value.clone()).collect::<Vec<_>>()).unwrap_or_default(),
                            "runs-on": j.runs_on.as_ref().map(|r| r.value.describe()),
                        })
                    })
                    .collect();
                text.push_str(&shown);
                if !name.is_empty() {
                    text.push_str(&format!("  {name}"));
                }
                if !on.is_empty() {
                    text.push_str(&format!("  (on: {})", on.join(", ")));
                }
                text.push('\n');
                let width = w.jobs.value.keys().map(str::len).max().unwrap_or(0);
                for j in &jobs {
                    let mut line = format!("  {:width$}", j["id"].as_str().unwrap_or_default());
                    if let Some(r) = j["runs-on"].as_str() {
                        line.push_str(&format!("  runs-on: {r}"));
                    }
                    let needs: Vec<&str> = j["needs"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                        .unwrap_or_default();
                    if !needs.is_empty() {
                        line.push_str(&format!("  needs: {}", needs.join(", ")));
                    }
                    text.push_str(line.trim_end());
                    text.push('\n');
                }
                listed.push(serde_json::json!({
                    "path": shown, "name": name, "on": on, "jobs": jobs,
                }));
            }
            Err(d) => {
                text.push_str(&format!("{shown}  (cannot be read: {})\n", d.message));
                listed.push(serde_json::json!({ "path": shown, "error": d.message }));
            }
        }
    }
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&listed).unwrap_or_default()
        );
    } else if files.is_empty() {
        outln!("no workflow files in .github/workflows");
    } else {
        text.push_str("\nrun one with `trun -W NAME` (or `trun -f PATH`); `trun -W NAME plan` shows what it would do\n");
        super::out(&text);
    }
    Ok(EXIT_OK)
}
