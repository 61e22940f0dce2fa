//! Running GitHub Actions workflow files: the `github`, `runner` and `vars` contexts,
//! the `GITHUB_*`/`RUNNER_*` variables a step sees, the event payload, where a job's
//! `runs-on` label runs (`-P LABEL=IMAGE`, remembered in `.trunrc`), and finding the
//! workflows of a repository (`trun -W`).
//!
//! Everything here is read locally: the commit, branch and `origin` remote come from
//! `.git` (see [`git`]), never from the network. The event payload (`--event-path`)
//! is untrusted data: it is bounded in size, must be a JSON object, and reaches steps
//! only as expression values (which `run:` receives through the environment, never as
//! script text) and as the file `$GITHUB_EVENT_PATH`.

pub mod config;
pub mod git;

use crate::diag::Diagnostic;
use crate::workflow::{Workflow, WorkflowFile};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The largest event payload read from `--event-path`: 8 MiB (GitHub caps webhook
/// payloads at 25 MB, but a workflow reads a few fields of it).
pub const MAX_EVENT_BYTES: u64 = 8 * 1024 * 1024;

/// The name of the event payload file in a run's tmp dir (`$GITHUB_EVENT_PATH`).
pub const EVENT_FILE: &str = "event.json";

/// What the command line (and `.trunrc`) say about the GitHub side of a run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--event NAME`: the event the run pretends to be triggered by.
    pub event_name: Option<String>,
    /// `--event-path FILE`: the event payload, JSON.
    pub event_path: Option<PathBuf>,
    /// `--var NAME=VALUE`, after the `--var-file`s (so they win).
    pub vars: Vec<(String, String)>,
    pub var_files: Vec<PathBuf>,
    /// `-P LABEL=IMAGE`: run jobs with that `runs-on` label in that image.
    pub platforms: Vec<(String, String)>,
}

/// The GitHub contexts of a run, computed once when the plan is made.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Contexts {
    /// The `github` context without `event` (which may be large).
    pub github: Map<String, Value>,
    /// `github.event`.
    #[serde(skip)]
    pub event: Arc<Value>,
    pub runner: Map<String, Value>,
    pub vars: Map<String, Value>,
    /// The variables every step of a GitHub Actions workflow sees (`CI`,
    /// `GITHUB_SHA`, `RUNNER_OS`…); empty for a `trun.yaml`.
    pub env: Vec<(String, String)>,
    /// `runs-on` label → image, from `-P` and `.trunrc`.
    pub platforms: Vec<(String, String)>,
}

impl Contexts {
    /// What an expression evaluated before the run sees (a matrix, a job name,
    /// `run-name`, a reusable workflow's `with:`): `inputs`, `github` with its
    /// `event` shared rather than copied, and `vars`. Callers add the rest.
    pub fn expression_context(&self, inputs: Map<String, Value>) -> crate::template::Context {
        crate::template::Context {
            inputs,
            github: self.github.clone(),
            github_event: Some(self.event.clone()),
            vars: self.vars.clone(),
            ..Default::default()
        }
    }

    /// The image a job with these `runs-on` labels runs in, if `-P` maps one of them.
    pub fn image_for(&self, labels: &[String]) -> Option<(String, String)> {
        labels.iter().find_map(|l| {
            self.platforms
                .iter()
                .rev()
                .find(|(k, _)| k.eq_ignore_ascii_case(l))
                .map(|(k, i)| (k.clone(), i.clone()))
        })
    }
}

/// `runner.os` as GitHub spells it.
pub fn runner_os() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "macOS",
        "windows" => "Windows",
        other => other,
    }
}

/// `runner.arch` as GitHub spells it.
pub fn runner_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "X64",
        "aarch64" => "ARM64",
        "arm" => "ARM",
        "x86" => "X86",
        other => other,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.len() < 256)
        .unwrap_or_else(|| "trun".into())
}

/// The event the run stands for: `--event`, else `push` when the workflow has it,
/// else its first trigger, else `workflow_dispatch`.
pub fn event_name(w: &Workflow, asked: Option<&str>) -> Result<String, Diagnostic> {
    if let Some(e) = asked {
        if !crate::workflow::EVENTS.contains(&e) {
            return Err(Diagnostic::plain(format!(
                "unknown event `{e}`{}",
                crate::diag::did_you_mean_suffix(e, crate::workflow::EVENTS.iter().copied())
            ))
            .with_help("name a GitHub Actions event, e.g. --event push or --event pull_request"));
        }
        return Ok(e.to_string());
    }
    let names = w.on.as_ref().map(|o| o.value.names()).unwrap_or_default();
    Ok(if names.iter().any(|n| n == "push") {
        "push".into()
    } else {
        names
            .into_iter()
            .next()
            .unwrap_or_else(|| "workflow_dispatch".into())
    })
}

/// Reads an event payload: a regular file of at most [`MAX_EVENT_BYTES`] holding a
/// JSON object.
pub fn read_event(path: &Path) -> Result<Value, Diagnostic> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Diagnostic::plain(format!("cannot read the event payload {shown}: {e}")))?;
    let meta = f
        .metadata()
        .map_err(|e| Diagnostic::plain(format!("cannot read the event payload {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(Diagnostic::plain(format!(
            "the event payload {shown} is not a regular file"
        )));
    }
    let too_big = || {
        Diagnostic::plain(format!(
            "the event payload {shown} is larger than {} MiB",
            MAX_EVENT_BYTES / (1024 * 1024)
        ))
    };
    if meta.len() > MAX_EVENT_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    f.take(MAX_EVENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Diagnostic::plain(format!("cannot read the event payload {shown}: {e}")))?;
    if bytes.len() as u64 > MAX_EVENT_BYTES {
        return Err(too_big());
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        Diagnostic::plain(format!("the event payload {shown} is not valid JSON: {e}"))
    })?;
    if !v.is_object() {
        return Err(Diagnostic::plain(format!(
            "the event payload {shown} must be a JSON object"
        )));
    }
    Ok(v)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// The contexts of a run of `wf` with `opts`.
pub fn contexts(
    wf: &WorkflowFile,
    opts: &Options,
    inputs: &Map<String, Value>,
) -> Result<Contexts, Vec<Diagnostic>> {
    let w = &wf.workflow;
    let mut errs = Vec::new();
    let rc = config::load(&wf.root).map_err(|d| vec![d])?;
    // Variables: the config's files and values, then the command line's.
    let mut vars = Map::new();
    for f in rc.var_files.iter().chain(&opts.var_files) {
        match config::read_dotenv(f) {
            Ok(pairs) => {
                for (k, v) in pairs {
                    vars.insert(k, Value::String(v));
                }
            }
            Err(d) => errs.push(d),
        }
    }
    for (k, v) in rc.vars.iter().chain(&opts.vars) {
        vars.insert(k.clone(), Value::String(v.clone()));
    }
    let mut platforms = rc.platforms.clone();
    platforms.extend(opts.platforms.iter().cloned());

    let event_name = match event_name(w, opts.event_name.as_deref()) {
        Ok(e) => e,
        Err(d) => {
            errs.push(d);
            String::new()
        }
    };
    let given_event = match &opts.event_path {
        Some(p) => match read_event(p) {
            Ok(v) => Some(v),
            Err(d) => {
                errs.push(d);
                None
            }
        },
        None => None,
    };
    if !errs.is_empty() {
        return Err(errs);
    }

    let git = git::read(&wf.root);
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "trun".into());
    let dir_name = wf
        .root
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "workspace".into());
    let (mut owner, mut repo) = (
        git.owner.clone().unwrap_or_else(|| user.clone()),
        git.repo.clone().unwrap_or(dir_name),
    );
    // A replayed payload names its repository: it wins over the local guess.
    if let Some(full) = given_event
        .as_ref()
        .and_then(|e| str_at(e, &["repository", "full_name"]))
    {
        if let Some((o, r)) = full.split_once('/') {
            owner = o.to_string();
            repo = r.to_string();
        }
    }
    let sha = given_event
        .as_ref()
        .and_then(|e| str_at(e, &["after"]).or_else(|| str_at(e, &["pull_request", "head", "sha"])))
        .map(str::to_string)
        .or(git.sha.clone())
        .unwrap_or_default();
    let pr_number = given_event
        .as_ref()
        .and_then(|e| {
            e.get("number")
                .or_else(|| e.pointer("/pull_request/number"))
        })
        .and_then(Value::as_u64);
    let is_pr = event_name.starts_with("pull_request");
    let reference = match (is_pr, pr_number) {
        (true, Some(n)) => format!("refs/pull/{n}/merge"),
        _ => given_event
            .as_ref()
            .and_then(|e| str_at(e, &["ref"]))
            .map(str::to_string)
            .or(git.reference.clone())
            .unwrap_or_default(),
    };
    let (ref_name, ref_type) = if let Some(b) = reference.strip_prefix("refs/heads/") {
        (b.to_string(), "branch")
    } else if let Some(t) = reference.strip_prefix("refs/tags/") {
        (t.to_string(), "tag")
    } else if let Some(p) = reference.strip_prefix("refs/pull/") {
        (p.to_string(), "branch")
    } else {
        (reference.clone(), "")
    };
    let (head_ref, base_ref) = if is_pr {
        let e = given_event.as_ref();
        (
            e.and_then(|e| str_at(e, &["pull_request", "head", "ref"]))
                .unwrap_or(&ref_name)
                .to_string(),
            e.and_then(|e| str_at(e, &["pull_request", "base", "ref"]))
                .unwrap_or("")
                .to_string(),
        )
    } else {
        (String::new(), String::new())
    };
    let actor = given_event
        .as_ref()
        .and_then(|e| str_at(e, &["sender", "login"]))
        .map(str::to_string)
        .unwrap_or_else(|| user.clone());
    let full_name = format!("{owner}/{repo}");
    let event = match given_event {
        Some(e) => e,
        None => minimal_event(
            &event_name,
            &full_name,
            &owner,
            &repo,
            &reference,
            &sha,
            &actor,
            inputs,
        ),
    };
    let workspace = wf.root.display().to_string();
    let workflow_name = w
        .name
        .as_ref()
        .map(|n| n.value.clone())
        .unwrap_or_else(|| wf.path.display().to_string());
    let rel_path = wf
        .path
        .strip_prefix(&wf.root)
        .unwrap_or(&wf.path)
        .display()
        .to_string();
    let mut g = Map::new();
    let mut put = |k: &str, v: Value| {
        g.insert(k.to_string(), v);
    };
    put("event_name", json!(event_name));
    put("sha", json!(sha));
    put("ref", json!(reference));
    put("ref_name", json!(ref_name));
    put("ref_type", json!(ref_type));
    put("ref_protected", json!(false));
    put("head_ref", json!(head_ref));
    put("base_ref", json!(base_ref));
    put("repository", json!(full_name));
    put("repository_owner", json!(owner));
    put(
        "repositoryUrl",
        json!(format!("git://github.com/{full_name}.git")),
    );
    put("workspace", json!(workspace));
    put("workflow", json!(workflow_name));
    put(
        "workflow_ref",
        json!(format!("{full_name}/{rel_path}@{reference}")),
    );
    put("workflow_sha", json!(sha));
    // Set per run and per job by the engine.
    put("run_id", json!("0"));
    put("run_number", json!("0"));
    put("run_attempt", json!("1"));
    put("job", json!(""));
    put("action", json!(""));
    put("action_path", json!(""));
    put("event_path", json!(""));
    put("env", json!(""));
    put("path", json!(""));
    put("output", json!(""));
    put("step_summary", json!(""));
    put("state", json!(""));
    put("actor", json!(actor));
    put("triggering_actor", json!(actor));
    put("server_url", json!("https://github.com"));
    put("api_url", json!("https://api.github.com"));
    put("graphql_url", json!("https://api.github.com/graphql"));
    put("retention_days", json!("90"));
    // trun has no GitHub token: it talks to no GitHub API.
    put("token", json!(""));
    put("secret_source", json!("None"));

    let mut runner = Map::new();
    runner.insert("os".into(), json!(runner_os()));
    runner.insert("arch".into(), json!(runner_arch()));
    runner.insert("name".into(), json!(hostname()));
    runner.insert("environment".into(), json!("self-hosted"));
    runner.insert("temp".into(), json!(""));
    runner.insert(
        "tool_cache".into(),
        json!(std::env::var("RUNNER_TOOL_CACHE").unwrap_or_default()),
    );
    runner.insert(
        "debug".into(),
        json!(if std::env::var_os("RUNNER_DEBUG").is_some() {
            "1"
        } else {
            ""
        }),
    );

    let mut env = Vec::new();
    if w.is_github() {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        // Tools and scripts ask these to know they run in CI, under GitHub Actions:
        // a workflow file expects what it would see there. trun's own reporter reads
        // its *own* environment, not these, so a nested trun prints GitHub groups.
        env.push(("CI".into(), "true".into()));
        env.push(("GITHUB_ACTIONS".into(), "true".into()));
        for (var, key) in [
            ("GITHUB_EVENT_NAME", "event_name"),
            ("GITHUB_SHA", "sha"),
            ("GITHUB_REF", "ref"),
            ("GITHUB_REF_NAME", "ref_name"),
            ("GITHUB_REF_TYPE", "ref_type"),
            ("GITHUB_HEAD_REF", "head_ref"),
            ("GITHUB_BASE_REF", "base_ref"),
            ("GITHUB_REPOSITORY", "repository"),
            ("GITHUB_REPOSITORY_OWNER", "repository_owner"),
            ("GITHUB_WORKFLOW", "workflow"),
            ("GITHUB_WORKFLOW_REF", "workflow_ref"),
            ("GITHUB_WORKFLOW_SHA", "workflow_sha"),
            ("GITHUB_ACTOR", "actor"),
            ("GITHUB_TRIGGERING_ACTOR", "triggering_actor"),
            ("GITHUB_SERVER_URL", "server_url"),
            ("GITHUB_API_URL", "api_url"),
            ("GITHUB_GRAPHQL_URL", "graphql_url"),
            ("GITHUB_RETENTION_DAYS", "retention_days"),
        ] {
            env.push((var.into(), s(&g[key])));
        }
        for (var, key) in [
            ("RUNNER_OS", "os"),
            ("RUNNER_ARCH", "arch"),
            ("RUNNER_NAME", "name"),
            ("RUNNER_ENVIRONMENT", "environment"),
        ] {
            env.push((var.into(), s(&runner[key])));
        }
        if let Some(tc) = runner["tool_cache"].as_str().filter(|t| !t.is_empty()) {
            env.push(("RUNNER_TOOL_CACHE".into(), tc.to_string()));
        }
    }
    Ok(Contexts {
        github: g,
        event: Arc::new(event),
        runner,
        vars,
        env,
        platforms,
    })
}

/// The payload a run gets without `--event-path`: the fields workflows commonly read,
/// filled from the local repository.
#[allow(clippy::too_many_arguments)]
fn minimal_event(
    name: &str,
    full_name: &str,
    owner: &str,
    repo: &str,
    reference: &str,
    sha: &str,
    actor: &str,
    inputs: &Map<String, Value>,
) -> Value {
    let repository = json!({
        "name": repo,
        "full_name": full_name,
        "owner": { "login": owner },
        "default_branch": reference.strip_prefix("refs/heads/").unwrap_or("main"),
    });
    let sender = json!({ "login": actor });
    match name {
        "push" => json!({
            "ref": reference,
            "before": "0000000000000000000000000000000000000000",
            "after": sha,
            "repository": repository,
            "head_commit": { "id": sha },
            "pusher": { "name": actor },
            "sender": sender,
        }),
        "workflow_dispatch" | "workflow_call" => {
            // `github.event.inputs` holds every input as text, as GitHub sends it.
            let text: Map<String, Value> = inputs
                .iter()
                .map(|(k, v)| {
                    let t = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), Value::String(t))
                })
                .collect();
            json!({ "inputs": text, "ref": reference, "repository": repository, "sender": sender })
        }
        _ => json!({ "repository": repository, "sender": sender }),
    }
}

/// The workflow files of the repository holding `dir`: `.github/workflows/*.yml` and
/// `*.yaml` of the nearest directory (upwards) that has them, sorted by name.
pub fn workflow_files(dir: &Path) -> Option<(PathBuf, Vec<PathBuf>)> {
    let mut d = Some(dir);
    while let Some(cur) = d {
        let wd = cur.join(".github").join("workflows");
        if wd.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&wd)
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
                .collect();
            files.sort();
            return Some((cur.to_path_buf(), files));
        }
        d = cur.parent();
    }
    None
}
