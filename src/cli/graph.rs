//! `trun graph`: the job graph as Graphviz DOT or Mermaid.

use super::{load, out, CmdResult, GraphArgs, EXIT_OK};
use crate::plan::{self, Request};

pub(super) fn cmd_graph(a: GraphArgs) -> CmdResult {
    let (wf, _) = load(&a.file)?;
    let plan = plan::build(&wf, &Request::default())?;
    out(&if a.mermaid {
        crate::graph::mermaid(&plan)
    } else {
        crate::graph::dot(&plan)
    });
    Ok(EXIT_OK)
}
