//! `docker/build`: build an image through the Engine API from a tar of the
//! context, and skip the build when nothing it depends on changed.
//!
//! "Nothing changed" means: the same `with` definition, the same content hashes of
//! the `watch` files (or, without `watch`, of every file sent as context), and the
//! image id recorded after the last build still being what `tag` points at. The
//! context is built in memory, so very large contexts cost memory; `.dockerignore`
//! is honoured for plain patterns, `**`, and `!` exceptions.

use super::schema::{list, table, text};
use super::{ActionCtx, ActionError, ActionResult, WithError};
use crate::docker::{Docker, DockerError};
use crate::event::Stream;
use bollard::query_parameters::{BuildImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt;
use globset::{Glob, GlobBuilder, GlobMatcher};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

/// How many lines of the build log a failure message repeats.
const TAIL_LINES: usize = 30;

/// Name under which a Dockerfile from outside the context is added to the tar.
const OUTSIDE_DOCKERFILE: &str = ".trun.Dockerfile";

struct Build {
    context: PathBuf,
    /// Path of the Dockerfile inside the tar.
    dockerfile_in_tar: String,
    /// Set when the Dockerfile lives outside the context and must be added.
    outside_dockerfile: Option<PathBuf>,
    tag: String,
    tags: Vec<String>,
    build_args: HashMap<String, String>,
    params: BuildParams,
    watch: Vec<String>,
}

#[derive(Default)]
struct BuildParams {
    no_cache: bool,
    pull: bool,
    target: Option<String>,
    platform: Option<String>,
    network: Option<String>,
    labels: HashMap<String, String>,
    build_args: HashMap<String, String>,
}

const PARAM_FLAGS: &[&str] = &[
    "--no-cache",
    "--pull",
    "--target",
    "--platform",
    "--network",
    "--label",
    "--build-arg",
];

fn parse_params(params: &[String]) -> Result<BuildParams, WithError> {
    let bad = |message: String| WithError {
        key: Some("params".into()),
        message,
    };
    let tokens: Vec<&str> = params.iter().flat_map(|p| p.split_whitespace()).collect();
    let mut out = BuildParams::default();
    let mut i = 0;
    while i < tokens.len() {
        let (flag, inline) = match tokens[i].split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (tokens[i], None),
        };
        i += 1;
        match flag {
            "--no-cache" => out.no_cache = true,
            "--pull" => out.pull = true,
            "--target" | "--platform" | "--network" | "--label" | "--build-arg" => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let v = tokens
                            .get(i)
                            .ok_or_else(|| bad(format!("`{flag}` in `params` needs a value")))?;
                        i += 1;
                        v.to_string()
                    }
                };
                match flag {
                    "--target" => out.target = Some(value),
                    "--platform" => out.platform = Some(value),
                    "--network" => out.network = Some(value),
                    _ => {
                        let (k, v) = value.split_once('=').unwrap_or((value.as_str(), ""));
                        let map = if flag == "--label" {
                            &mut out.labels
                        } else {
                            &mut out.build_args
                        };
                        map.insert(k.to_string(), v.to_string());
                    }
                }
            }
            other => {
                let hint = crate::diag::did_you_mean_suffix(other, PARAM_FLAGS.iter().copied());
                return Err(bad(format!(
                    "unsupported docker build flag `{other}` in `params`{hint}; supported: {}",
                    PARAM_FLAGS.join(", ")
                )));
            }
        }
    }
    Ok(out)
}

fn definition(with: &Map<String, Value>, ctx: &ActionCtx<'_>) -> Result<Build, ActionError> {
    let context = ctx
        .workspace
        .join(text(with, "context").unwrap_or_else(|| ".".into()));
    // `dockerfile` is relative to the workspace, like `docker build -f` is to the cwd.
    let dockerfile = text(with, "dockerfile")
        .map(|d| ctx.workspace.join(d))
        .unwrap_or_else(|| context.join("Dockerfile"));
    let (dockerfile_in_tar, outside_dockerfile) = match dockerfile.strip_prefix(&context) {
        Ok(rel) => (rel.to_string_lossy().replace('\\', "/"), None),
        Err(_) => (OUTSIDE_DOCKERFILE.to_string(), Some(dockerfile)),
    };
    Ok(Build {
        context,
        dockerfile_in_tar,
        outside_dockerfile,
        tag: text(with, "tag").unwrap_or_default(),
        tags: list(with, "tags"),
        build_args: table(with, "build-args").into_iter().collect(),
        params: parse_params(&list(with, "params"))?,
        watch: list(with, "watch"),
    })
}

fn memory_key(ctx: &ActionCtx<'_>) -> String {
    format!("docker/build/{}", ctx.step_key)
}

/// The build's fingerprint: its `with` plus the content of what it watches.
fn fingerprint(
    with: &Map<String, Value>,
    build: &Build,
    ctx: &ActionCtx<'_>,
) -> Result<String, ActionError> {
    let mut h = Sha256::new();
    h.update(serde_json::to_string(with).unwrap_or_default());
    let files: Vec<(String, PathBuf)> = if build.watch.is_empty() {
        context_files(build)?
            .into_iter()
            .map(|(rel, abs)| (format!("context:{rel}"), abs))
            .collect()
    } else {
        watched_files(&ctx.workspace, &build.watch)?
    };
    for (name, path) in files {
        h.update(b"\0");
        h.update(name.as_bytes());
        h.update(b"\0");
        match std::fs::read(&path) {
            Ok(bytes) => h.update(Sha256::digest(&bytes)),
            Err(_) => h.update(b"<missing>"),
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Files matched by `watch` (relative to the workspace). A literal path that does
/// not exist still counts (as missing), so creating it later triggers a build.
fn watched_files(
    workspace: &Path,
    patterns: &[String],
) -> Result<Vec<(String, PathBuf)>, ActionError> {
    let mut out = BTreeMap::new();
    for pattern in patterns {
        let is_glob = pattern.contains(['*', '?', '[', '{']);
        if !is_glob {
            let path = workspace.join(pattern);
            if path.is_dir() {
                for file in walk(&path) {
                    out.insert(rel(workspace, &file), file);
                }
            } else {
                out.insert(pattern.trim_start_matches("./").to_string(), path);
            }
            continue;
        }
        let matcher = glob(pattern).map_err(|message| WithError {
            key: Some("watch".into()),
            message,
        })?;
        // Walk only below the literal prefix of the glob (`src/` for `src/**/*.rs`).
        let prefix: PathBuf = Path::new(pattern)
            .components()
            .take_while(|c| {
                !c.as_os_str()
                    .to_string_lossy()
                    .contains(['*', '?', '[', '{'])
            })
            .collect();
        for file in walk(&workspace.join(prefix)) {
            let r = rel(workspace, &file);
            if matcher.is_match(&r) {
                out.insert(r, file);
            }
        }
    }
    Ok(out.into_iter().collect())
}

fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern.trim_start_matches("./"))
        .literal_separator(true)
        .build()
        .map(|g: Glob| g.compile_matcher())
        .map_err(|e| format!("invalid glob `{pattern}`: {e}"))
}

/// Every file below `dir`, sorted, not following symlinks, skipping VCS and trun state.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .follow_links(false)
        .filter_entry(|e| !matches!(e.file_name().to_str(), Some(".git" | ".trun")))
        .build()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_some_and(|t| !t.is_dir()))
        .map(|e| e.into_path())
        .collect();
    files.sort();
    files
}

fn rel(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// A `.dockerignore` rule: the pattern, and whether it re-includes (`!`).
struct IgnoreRule {
    matcher: GlobMatcher,
    include: bool,
}

fn dockerignore(context: &Path) -> Result<Vec<IgnoreRule>, ActionError> {
    let Ok(text) = std::fs::read_to_string(context.join(".dockerignore")) else {
        return Ok(Vec::new());
    };
    let mut rules = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (include, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p.trim()),
            None => (false, line),
        };
        let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
        let matcher = glob(pattern).map_err(|message| WithError {
            key: Some("context".into()),
            message: format!(".dockerignore: {message}"),
        })?;
        rules.push(IgnoreRule { matcher, include });
    }
    Ok(rules)
}

/// Docker's rule: the last matching pattern wins, and a pattern matching a
/// directory excludes everything below it.
fn ignored(rel: &str, rules: &[IgnoreRule]) -> bool {
    let mut verdict = false;
    for rule in rules {
        let mut prefix = String::new();
        let matched = rel.split('/').any(|part| {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            rule.matcher.is_match(&prefix)
        });
        if matched {
            verdict = !rule.include;
        }
    }
    verdict
}

/// The files sent as build context (relative name, absolute path), sorted.
fn context_files(build: &Build) -> Result<Vec<(String, PathBuf)>, ActionError> {
    if !build.context.is_dir() {
        return Err(WithError {
            key: Some("context".into()),
            message: format!(
                "build context {} is not a directory",
                build.context.display()
            ),
        }
        .into());
    }
    let rules = dockerignore(&build.context)?;
    let mut files: Vec<(String, PathBuf)> = walk(&build.context)
        .into_iter()
        .map(|p| (rel(&build.context, &p), p))
        // Docker always sends the Dockerfile and .dockerignore, even when ignored.
        .filter(|(r, _)| {
            r == &build.dockerfile_in_tar || r == ".dockerignore" || !ignored(r, &rules)
        })
        .collect();
    if let Some(outside) = &build.outside_dockerfile {
        files.push((OUTSIDE_DOCKERFILE.to_string(), outside.clone()));
    }
    Ok(files)
}

fn context_tar(build: &Build) -> Result<Vec<u8>, ActionError> {
    let io = |source| ActionError::Io {
        action: format!("packing the build context {}", build.context.display()),
        source,
    };
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    for (name, path) in context_files(build)? {
        tar.append_path_with_name(&path, &name).map_err(io)?;
    }
    tar.into_inner().map_err(io)
}

/// The recorded `(fingerprint, image id)` of the last successful build.
fn recorded(ctx: &ActionCtx<'_>) -> Option<(String, String)> {
    let value = ctx.memory.get(&memory_key(ctx))?;
    let (hash, id) = value.split_once(' ')?;
    Some((hash.to_string(), id.to_string()))
}

async fn up_to_date(
    docker: Option<&Docker>,
    tag: &str,
    hash: &str,
    ctx: &ActionCtx<'_>,
) -> Option<String> {
    let (old_hash, old_id) = recorded(ctx)?;
    if old_hash != hash {
        return None;
    }
    match docker {
        Some(d) => (d.image_id(tag).await.ok()?? == old_id).then_some(old_id),
        None => Some(old_id),
    }
}

const SKIP_REASON: &str = "image up to date (definition and watched files unchanged)";

pub async fn plan_skip(with: &Map<String, Value>, ctx: &ActionCtx<'_>) -> Option<String> {
    let build = definition(with, ctx).ok()?;
    let hash = fingerprint(with, &build, ctx).ok()?;
    up_to_date(ctx.docker, &build.tag, &hash, ctx)
        .await
        .map(|_| SKIP_REASON.to_string())
}

pub async fn run(
    with: &Map<String, Value>,
    ctx: &ActionCtx<'_>,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<ActionResult, ActionError> {
    let docker = ctx.docker("docker/build")?;
    let build = definition(with, ctx)?;
    let hash = fingerprint(with, &build, ctx)?;
    if let Some(id) = up_to_date(Some(docker), &build.tag, &hash, ctx).await {
        return Ok(ActionResult::skipped(
            SKIP_REASON.into(),
            BTreeMap::from([("image-id".to_string(), id)]),
        ));
    }

    let tar = context_tar(&build)?;
    let mut build_args = build.params.build_args.clone();
    build_args.extend(build.build_args.clone());
    let mut opts = BuildImageOptionsBuilder::default()
        .dockerfile(&build.dockerfile_in_tar)
        .t(&build.tag)
        .rm(true)
        // Failed builds must not leave unlabelled intermediate containers behind.
        .forcerm(true)
        .nocache(build.params.no_cache)
        .buildargs(&build_args)
        .labels(&build.params.labels);
    if build.params.pull {
        opts = opts.pull("true");
    }
    if let Some(t) = &build.params.target {
        opts = opts.target(t);
    }
    if let Some(p) = &build.params.platform {
        opts = opts.platform(p);
    }
    if let Some(n) = &build.params.network {
        opts = opts.networkmode(n);
    }
    let mut stream =
        docker
            .api()
            .build_image(opts.build(), None, Some(bollard::body_full(tar.into())));
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut image_id = None;
    let mut pending = String::new();
    let emit = |line: String,
                tail: &mut VecDeque<String>,
                out: &mut (dyn FnMut(Stream, String) + Send)| {
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        out(Stream::Stdout, line);
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream {
                    pending.push_str(&text);
                    while let Some(pos) = pending.find('\n') {
                        let line: String = pending.drain(..=pos).collect();
                        emit(line.trim_end().to_string(), &mut tail, out);
                    }
                }
                if let Some(id) = info.aux.and_then(|a| a.id) {
                    image_id = Some(id);
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                if !pending.is_empty() {
                    emit(std::mem::take(&mut pending), &mut tail, out);
                }
                let tail: Vec<String> = tail.into_iter().collect();
                return Ok(ActionResult::failed(format!(
                    "docker build of {} failed: {}\nlast {} lines of the build log:\n{}",
                    build.tag,
                    error.trim(),
                    tail.len(),
                    tail.join("\n")
                )));
            }
            Err(e) => return Err(DockerError::api(format!("building {}", build.tag), e).into()),
        }
    }
    if !pending.is_empty() {
        emit(pending, &mut tail, out);
    }
    let image_id = match image_id {
        Some(id) => id,
        None => docker.require_image(&build.tag).await?,
    };
    for extra in &build.tags {
        let (repo, tag) = super::pull::split_ref(extra);
        let opts = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        docker
            .api()
            .tag_image(&image_id, Some(opts))
            .await
            .map_err(|e| DockerError::api(format!("tagging {image_id} as {extra}"), e))?;
    }
    ctx.memory
        .set(&memory_key(ctx), &format!("{hash} {image_id}"));
    Ok(ActionResult::ok(BTreeMap::from([(
        "image-id".to_string(),
        image_id,
    )])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(lines: &[&str]) -> Vec<IgnoreRule> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), lines.join("\n")).unwrap();
        dockerignore(dir.path()).unwrap()
    }

    #[test]
    fn dockerignore_last_match_wins_and_dirs_exclude_contents() {
        let r = rules(&["# comment", "target", "*.log", "!keep.log", "**/tmp"]);
        assert!(ignored("target/debug/app", &r));
        assert!(ignored("a.log", &r));
        assert!(!ignored("keep.log", &r));
        assert!(ignored("x/y/tmp/z", &r));
        assert!(!ignored("src/main.rs", &r));
    }

    #[test]
    fn params_parse_and_reject_unknown_flags() {
        let p =
            parse_params(&["--no-cache --target=dev".into(), "--build-arg A=1".into()]).unwrap();
        assert!(p.no_cache);
        assert_eq!(p.target.as_deref(), Some("dev"));
        assert_eq!(p.build_args.get("A").map(String::as_str), Some("1"));
        let e = parse_params(&["--no-cach".into()]).err().unwrap();
        assert_eq!(e.key.as_deref(), Some("params"));
        assert!(e.message.starts_with("unsupported docker build flag `--no-cach` in `params` (did you mean `--no-cache`?)"), "{}", e.message);
    }

    #[test]
    fn watch_globs_match_below_their_prefix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/a")).unwrap();
        std::fs::write(dir.path().join("src/a/x.rs"), "x").unwrap();
        std::fs::write(dir.path().join("src/y.txt"), "y").unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM x").unwrap();
        let files = watched_files(
            dir.path(),
            &["src/**/*.rs".into(), "Dockerfile".into(), "gone".into()],
        )
        .unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["Dockerfile", "gone", "src/a/x.rs"]);
    }
}
