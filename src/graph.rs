//! `trun graph`: the job DAG as Graphviz DOT or Mermaid, one node per job
//! instance (matrix legs included), edges from each need to its dependent.

use crate::plan::Plan;

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn dot(plan: &Plan) -> String {
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box];\n",
        quote(&plan.workflow)
    );
    for j in &plan.jobs {
        let label = if j.name != j.key {
            format!("{}\\n{}", j.key, j.name)
        } else {
            j.key.clone()
        };
        out.push_str(&format!(
            "  {} [label={}];\n",
            quote(&j.key),
            quote(&label).replace("\\\\n", "\\n")
        ));
    }
    for j in &plan.jobs {
        for n in &j.needs {
            out.push_str(&format!("  {} -> {};\n", quote(n), quote(&j.key)));
        }
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(plan: &Plan) -> String {
    let id = |key: &str| -> String {
        let idx = plan.jobs.iter().position(|j| j.key == key).unwrap_or(0);
        format!("j{idx}")
    };
    let mut out = String::from("flowchart LR\n");
    for j in &plan.jobs {
        let label = if j.name != j.key {
            format!("{}<br/>{}", j.key, j.name)
        } else {
            j.key.clone()
        };
        out.push_str(&format!(
            "  {}[\"{}\"]\n",
            id(&j.key),
            label.replace('"', "#quot;")
        ));
    }
    for j in &plan.jobs {
        for n in &j.needs {
            out.push_str(&format!("  {} --> {}\n", id(n), id(&j.key)));
        }
    }
    out
}
