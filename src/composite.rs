//! Local composite actions (`uses: ./path/to/action`): the `action.yml` (or
//! `action.yaml`) is read with locations like the workflow file, and a step that uses
//! it is expanded at plan time into the action's steps, as generated, first-class
//! steps (in `trun plan`, the store, the reports). Each generated step carries the
//! [`Frame`] of its composite: the engine gives it the composite's own `inputs` (the
//! caller's `with`, rendered, over the defaults) and `steps`, and publishes the
//! composite's `outputs` as the calling step's (see `exec::composite`).
//!
//! Not here: running anything. Nested composites are expanded recursively, up to
//! [`MAX_DEPTH`], and a composite that uses itself (directly or not) is an error
//! naming the cycle.

use crate::diag::Diagnostic;
use crate::plan::{Action, PlannedStep};
use crate::spanned::{Entries, Scalar, Sp};
use crate::workflow::Step;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How deeply composites may use composites (GitHub allows 9 levels).
pub const MAX_DEPTH: usize = 9;

/// The file names of an action, in the order GitHub looks for them.
const FILE_NAMES: [&str; 2] = ["action.yml", "action.yaml"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ActionFile {
    #[allow(dead_code)]
    name: Option<Sp<String>>,
    #[allow(dead_code)]
    description: Option<Sp<String>>,
    #[allow(dead_code)]
    author: Option<Sp<String>>,
    #[allow(dead_code)]
    branding: Option<serde_json::Value>,
    #[serde(default)]
    inputs: Entries<Sp<ActionInput>>,
    #[serde(default)]
    outputs: Entries<Sp<ActionOutput>>,
    runs: Sp<Runs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ActionInput {
    #[allow(dead_code)]
    description: Option<Sp<String>>,
    required: Option<Sp<bool>>,
    default: Option<Sp<Scalar>>,
    #[allow(dead_code)]
    deprecation_message: Option<Sp<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionOutput {
    #[allow(dead_code)]
    description: Option<Sp<String>>,
    value: Option<Sp<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Runs {
    using: Sp<String>,
    #[serde(default)]
    steps: Option<Sp<Vec<Sp<Step>>>>,
    /// The keys of `node*` and `docker` actions: read to refuse them clearly.
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A composite action as a caller's step runs it.
#[derive(Debug)]
pub struct Frame {
    /// The calling step's id (as its own scope names it: `steps.<caller_id>`), and
    /// whether the user gave it (only then is it published).
    pub caller_id: String,
    pub caller_has_id: bool,
    /// The generated id prefix of the composite's steps (`<caller id>/`).
    pub prefix: String,
    /// The frame of the composite that uses this one.
    pub parent: Option<Arc<Frame>>,
    /// The caller's `with` (templates, rendered in the caller's scope).
    pub with: Map<String, Value>,
    /// Every input and its default (a template), if it has one.
    pub inputs: Vec<(String, Option<String>)>,
    /// `outputs.<name>.value` templates, over the composite's own steps.
    pub outputs: Vec<(String, String)>,
    /// The caller's `if`, evaluated in the caller's scope.
    pub condition: Option<String>,
    /// The action's directory (`GITHUB_ACTION_PATH`).
    pub action_path: PathBuf,
}

impl Frame {
    /// The frames from the outermost composite to this one.
    pub fn chain(self: &Arc<Frame>) -> Vec<Arc<Frame>> {
        let mut out = vec![self.clone()];
        while let Some(p) = out.last().and_then(|f| f.parent.clone()) {
            out.push(p);
        }
        out.reverse();
        out
    }
}

/// What the expansion needs of the caller's plan.
pub struct Expansion<'a> {
    pub root: &'a Path,
    pub job_shell: Option<&'a str>,
    pub job_wd: Option<&'a str>,
    pub in_container: bool,
    pub skip_actions: &'a [String],
}

/// Loads `dir/action.yml` (or `.yaml`).
fn load(root: &Path, uses: &str) -> Result<(PathBuf, String, ActionFile), Diagnostic> {
    let rel = crate::actions::github::checkout_relative(uses.trim_start_matches("./"))
        .map_err(|why| Diagnostic::plain(format!("local action `{uses}` {why}")))?;
    let dir = root.join(rel.unwrap_or_default());
    crate::fsutil::no_symlink_below(root, &dir)
        .map_err(|e| Diagnostic::plain(format!("local action `{uses}`: {e}")))?;
    let Some(path) = FILE_NAMES.iter().map(|f| dir.join(f)).find(|p| p.is_file()) else {
        return Err(Diagnostic::plain(format!(
            "local action `{uses}`: no action.yml or action.yaml in {}",
            dir.display()
        )));
    };
    let shown = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
    let bytes = crate::workflow::read_bounded(&path)?;
    let text = crate::workflow::decode(&shown, bytes)?;
    crate::workflow::check_tags(&shown, &text)?;
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.with_snippet = false;
    let file: ActionFile = serde_saphyr::from_str_with_options(&text, options)
        .map_err(|e| Diagnostic::from_yaml(&shown, &text, &e))?;
    Ok((shown, text, file))
}

/// Expands `step` (a `uses: ./path` step) into the composite's steps, recursively.
/// `stack` holds the action files being expanded, for the cycle error.
pub fn expand(
    x: &Expansion<'_>,
    step: &PlannedStep,
    uses: &str,
    with: &Map<String, Value>,
    parent: Option<Arc<Frame>>,
    stack: &mut Vec<PathBuf>,
) -> Result<Vec<PlannedStep>, Diagnostic> {
    let (path, text, file) = load(x.root, uses)?;
    let err = |loc, m: String| Diagnostic::at(&path, &text, loc, m);
    if let Some(i) = stack.iter().position(|p| *p == path) {
        let mut cycle: Vec<String> = stack[i..].iter().map(|p| p.display().to_string()).collect();
        cycle.push(path.display().to_string());
        return Err(Diagnostic::plain(format!(
            "composite actions use each other in a cycle: {}",
            cycle.join(" -> ")
        )));
    }
    if stack.len() >= MAX_DEPTH {
        return Err(Diagnostic::plain(format!(
            "composite actions nest more than {MAX_DEPTH} deep (at {})",
            path.display()
        )));
    }
    let using = &file.runs.value.using;
    if using.value != "composite" {
        let what = if using.value.starts_with("node") {
            "a JavaScript action: trun has no Node.js runtime for actions"
        } else if using.value == "docker" {
            "a Docker container action: trun does not build or run those"
        } else {
            "not an action kind trun knows (composite, node20, docker)"
        };
        return Err(err(
            using.loc,
            format!(
                "`runs.using: {}` is {what}; only `composite` local actions run",
                using.value
            ),
        ));
    }
    if let Some(k) = file.runs.value.other.keys().next() {
        let hint = crate::diag::did_you_mean_suffix(k, ["using", "steps"]);
        return Err(err(
            file.runs.loc,
            format!("unknown key `{k}` in `runs` of a composite action{hint}"),
        ));
    }
    let Some(steps) = &file.runs.value.steps else {
        return Err(err(
            file.runs.loc,
            "a composite action needs `runs.steps`".into(),
        ));
    };
    // Inputs: what the caller may give, and what it must.
    let known: Vec<&str> = file.inputs.keys().collect();
    for k in with.keys() {
        if !known.contains(&k.as_str()) {
            let hint = crate::diag::did_you_mean_suffix(k, known.iter().copied());
            return Err(Diagnostic::plain(format!(
                "`{uses}` (step `{}`) has no input `{k}`{hint}; its inputs: {}",
                step.id,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    for (k, input) in file.inputs.iter() {
        let required = input.value.required.as_ref().is_some_and(|r| r.value);
        if required && input.value.default.is_none() && !with.contains_key(&k.value) {
            return Err(err(
                k.loc,
                format!(
                    "input `{}` is required, and step `{}` does not give it in `with`",
                    k.value, step.id
                ),
            ));
        }
    }
    let mut outputs = Vec::new();
    for (k, o) in file.outputs.iter() {
        let Some(v) = &o.value.value else {
            return Err(err(
                k.loc,
                format!("output `{}` of a composite action needs `value`", k.value),
            ));
        };
        outputs.push((k.value.clone(), v.value.clone()));
    }
    let action_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let frame = Arc::new(Frame {
        caller_id: step.local_id().to_string(),
        caller_has_id: step.has_id,
        prefix: format!("{}/", step.id),
        parent,
        with: with.clone(),
        inputs: file
            .inputs
            .iter()
            .map(|(k, i)| {
                (
                    k.value.clone(),
                    i.value.default.as_ref().map(|d| d.value.0.clone()),
                )
            })
            .collect(),
        outputs,
        condition: step.condition.clone(),
        action_path: x.root.join(&action_dir),
    });
    stack.push(path.clone());
    let mut out: Vec<PlannedStep> = Vec::new();
    for (i, s) in steps.value.iter().enumerate() {
        let st = &s.value;
        match (&st.run, &st.uses) {
            (Some(_), None) if st.shell.is_none() => {
                return Err(err(
                    s.loc,
                    "a `run` step of a composite action needs `shell` (as on GitHub)".into(),
                ))
            }
            (None, None) | (Some(_), Some(_)) => {
                return Err(err(
                    s.loc,
                    "a step needs either `run` (with `shell`) or `uses`".into(),
                ))
            }
            _ => {}
        }
        let mut inner =
            crate::plan::plan_step(i, st, s.loc.line, x.job_shell, x.job_wd, x.in_container);
        inner.id = format!("{}{}", frame.prefix, inner.id);
        inner.name = format!("{} / {}", step.name, inner.name);
        inner.frame = Some(frame.clone());
        // The caller's env reaches the composite's steps, under their own.
        let mut env = step.env.clone();
        env.retain(|(k, _)| !inner.env.iter().any(|(ik, _)| ik == k));
        env.append(&mut inner.env);
        let action_path = frame.action_path.display().to_string();
        if !action_path.contains("${{") {
            env.push(("GITHUB_ACTION_PATH".into(), action_path));
        }
        inner.env = env;
        inner.line = step.line;
        if inner.working_directory.is_none() {
            inner.working_directory = step.working_directory.clone();
        }
        match &inner.action {
            Action::Uses { uses: u, with: w } if crate::actions::github::is_local(u) => {
                let (u, w) = (u.clone(), w.clone());
                out.extend(expand(x, &inner, &u, &w, Some(frame.clone()), stack)?);
                continue;
            }
            Action::Uses { uses: u, .. } if crate::actions::github::is_remote(u) => {
                match x
                    .skip_actions
                    .iter()
                    .find(|n| crate::actions::github::skip_matches(n, u))
                {
                    Some(n) => inner.skip = Some(format!("--skip-action {n}")),
                    None => {
                        let loc = st.uses.as_ref().map(|u| u.loc).unwrap_or(s.loc);
                        return Err(err(loc, format!("`{u}` is a remote action; trun runs without a network and does not download actions"))
                            .with_help(format!("to run the rest with this step skipped: --skip-action {}", crate::actions::github::split_ref(u).0)));
                    }
                }
            }
            Action::Uses { uses: u, with: w } => {
                if !crate::actions::is_builtin(u) {
                    let loc = st.uses.as_ref().map(|u| u.loc).unwrap_or(s.loc);
                    return Err(err(loc, format!("unknown action `{u}`")));
                }
                if let Err(e) = crate::actions::validate(u, w) {
                    let loc = st.uses.as_ref().map(|u| u.loc).unwrap_or(s.loc);
                    return Err(err(loc, format!("{u}: {}", e.message)));
                }
            }
            _ => {}
        }
        out.push(inner);
    }
    stack.pop();
    if out.is_empty() {
        return Err(err(
            steps.loc,
            "a composite action needs at least one step".into(),
        ));
    }
    Ok(out)
}

/// `trun validate`: reads and expands the composite a workflow step uses, as the plan will.
pub fn check(wf: &crate::workflow::WorkflowFile, step: &Step, line: u32) -> Result<(), Diagnostic> {
    let planned = crate::plan::plan_step(0, step, line, None, None, false);
    let Action::Uses { uses, with } = &planned.action else {
        return Ok(());
    };
    let x = Expansion {
        root: &wf.root,
        job_shell: None,
        job_wd: None,
        in_container: false,
        skip_actions: &wf.skip_actions,
    };
    expand(&x, &planned, uses, with, None, &mut Vec::new()).map(drop)
}
