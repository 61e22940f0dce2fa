//! `actions/checkout`: the workspace already is the checkout, so without `path:` there
//! is nothing to fetch; what can be checked is checked (`repository:` must be this
//! repository, `ref:` what the workspace has checked out). With `path:` the tracked
//! files of the repository are copied into `path` below the workspace, never following
//! a symbolic link out of it.

use super::{Ctx, Done, Probe};
use crate::event::Stream;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Inputs that only matter when fetching over a network: accepted, and said to be unused.
const FETCH_ONLY: &[&str] = &[
    "fetch-depth",
    "fetch-tags",
    "lfs",
    "submodules",
    "sparse-checkout",
    "filter",
    "clean",
    "persist-credentials",
    "show-progress",
    "set-safe-directory",
    "token",
    "ssh-key",
];

async fn git(probe: &mut dyn Probe, ws: &str, args: &[&str]) -> Option<String> {
    let mut argv = vec!["git", "-C", ws];
    argv.extend_from_slice(args);
    let out = probe.run(&argv).await?;
    out.success
        .then(|| out.stdout.trim_end_matches('\n').to_string())
}

/// `owner/repo` of a GitHub remote URL (`https://github.com/o/r.git`, `git@github.com:o/r`).
fn repo_of_url(url: &str) -> Option<String> {
    let rest = url.trim().trim_end_matches('/').trim_end_matches(".git");
    let tail = rest.rsplit_once(':').map_or(rest, |(_, t)| t);
    let parts: Vec<&str> = tail.rsplit('/').take(2).collect();
    (parts.len() == 2).then(|| format!("{}/{}", parts[1], parts[0]))
}

pub(super) async fn run(
    input: &(dyn Fn(&str) -> String + Sync),
    ctx: &Ctx<'_>,
    probe: &mut dyn Probe,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<Done, String> {
    let ws = ctx.workspace.display().to_string();
    let head = git(probe, &ws, &["rev-parse", "--verify", "-q", "HEAD"]).await;
    let repository = input("repository");
    if !repository.is_empty() {
        let origin = git(probe, &ws, &["remote", "get-url", "origin"])
            .await
            .and_then(|u| repo_of_url(&u));
        if !origin
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case(&repository))
        {
            return Err(format!(
                "`repository: {repository}` names another repository than the workspace's ({}); \
                 trun does not fetch over the network: clone it in a `run` step, or skip this step with \
                 `--skip-action actions/checkout`",
                origin.as_deref().unwrap_or("no `origin` remote")
            ));
        }
    }
    let wanted = input("ref");
    if !wanted.is_empty() {
        let Some(head) = head.as_deref() else {
            return Err(format!(
                "`ref: {wanted}` asked, but the workspace is not a git repository"
            ));
        };
        let spec = format!("{wanted}^{{commit}}");
        match git(
            probe,
            &ws,
            &["rev-parse", "--verify", "-q", "--end-of-options", &spec],
        )
        .await
        {
            Some(c) if c == head => {}
            Some(c) => {
                return Err(format!(
                    "`ref: {wanted}` is {}, but the workspace has {} checked out; trun runs on the \
                     workspace as it is: check out `{wanted}` first, or drop `ref:`",
                    short(&c),
                    short(head)
                ))
            }
            None => {
                return Err(format!(
                    "`ref: {wanted}` is not in the local repository (trun does not fetch)"
                ))
            }
        }
    }
    let unused: Vec<&str> = FETCH_ONLY
        .iter()
        .copied()
        .filter(|k| !input(k).is_empty())
        .collect();
    if !unused.is_empty() {
        out(
            Stream::Stdout,
            format!("not needed offline, ignored: {}", unused.join(", ")),
        );
    }
    let mut outputs = BTreeMap::new();
    if let Some(h) = &head {
        outputs.insert("commit".to_string(), h.clone());
        let r = git(probe, &ws, &["symbolic-ref", "-q", "HEAD"])
            .await
            .unwrap_or_default();
        outputs.insert("ref".to_string(), r);
    }
    let path = input("path");
    let dest = match relative(&path) {
        Ok(None) => {
            out(
                Stream::Stdout,
                match &head {
                    Some(h) => format!(
                        "the workspace is the checkout ({} at {}): nothing to fetch",
                        ctx.workspace.display(),
                        short(h)
                    ),
                    None => format!(
                        "the workspace is the checkout ({}, not a git repository): nothing to fetch",
                        ctx.workspace.display()
                    ),
                },
            );
            return Ok(Done {
                outputs,
                post: None,
            });
        }
        Ok(Some(d)) => d,
        Err(why) => return Err(format!("`path: {path}` {why}")),
    };
    if head.is_none() {
        return Err(format!(
            "`path: {path}` copies the repository's tracked files, but the workspace is not a git repository"
        ));
    }
    let listed = probe
        .run(&["git", "-C", &ws, "ls-files", "-z", "--cached"])
        .await
        .filter(|o| o.success)
        .ok_or("`git ls-files` failed in the workspace")?;
    let files: Vec<&str> = listed
        .stdout
        .split('\0')
        .filter(|f| !f.is_empty())
        .collect();
    let dest_s = dest.to_string_lossy().into_owned();
    if files
        .iter()
        .any(|f| *f == dest_s || f.starts_with(&format!("{dest_s}/")))
    {
        return Err(format!(
            "`path: {path}` holds tracked files of the repository; checking out into it would overwrite them"
        ));
    }
    let (copied, links) = copy_tracked(&ctx.workspace, &dest, &files)?;
    out(
        Stream::Stdout,
        format!(
            "copied {copied} tracked files{} of {} into {}",
            if links > 0 {
                format!(" and {links} links")
            } else {
                String::new()
            },
            ctx.workspace.display(),
            dest_s
        ),
    );
    Ok(Done {
        outputs,
        post: None,
    })
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// `path` as a relative path below the workspace: `None` for the workspace itself.
pub(super) fn relative(path: &str) -> Result<Option<PathBuf>, &'static str> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("leaves the workspace (`..`)"),
            Component::RootDir | Component::Prefix(_) => {
                return Err("is absolute; it must lie below the workspace")
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Copies each tracked file (as it is in the working tree) from `ws` to `ws/dest`.
/// A symbolic link is recreated only when it points inside the repository; the copy
/// is written with [`crate::fsutil::safe_create`], so a link planted in `dest` is
/// refused, not followed.
fn copy_tracked(ws: &Path, dest: &Path, files: &[&str]) -> Result<(usize, usize), String> {
    let root = ws.join(dest);
    crate::fsutil::fresh_dir_under(ws, &root).map_err(|e| e.to_string())?;
    let (mut copied, mut links) = (0, 0);
    for f in files {
        let rel = match relative(f) {
            Ok(Some(r)) => r,
            _ => return Err(format!("tracked path `{f}` is not a plain relative path")),
        };
        let from = ws.join(&rel);
        let to = root.join(&rel);
        let meta = match std::fs::symlink_metadata(&from) {
            Ok(m) => m,
            // Deleted in the working tree: the checkout has what the workspace has.
            Err(_) => continue,
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&from).map_err(|e| e.to_string())?;
            let inside = !target.is_absolute()
                && stays_inside(rel.parent().unwrap_or(Path::new("")), &target);
            if !inside {
                return Err(format!(
                    "tracked link `{f}` points outside the repository ({}); not copied",
                    target.display()
                ));
            }
            if let Some(parent) = to.parent() {
                crate::fsutil::create_dir_under(&root, parent).map_err(|e| e.to_string())?;
            }
            std::os::unix::fs::symlink(&target, &to)
                .map_err(|e| format!("{}: {e}", to.display()))?;
            links += 1;
        } else if meta.is_file() {
            let bytes = std::fs::read(&from).map_err(|e| format!("{}: {e}", from.display()))?;
            let mut file = crate::fsutil::safe_create(&root, &to).map_err(|e| e.to_string())?;
            file.write_all(&bytes)
                .and_then(|_| file.set_permissions(meta.permissions()))
                .map_err(|e| format!("{}: {e}", to.display()))?;
            copied += 1;
        }
        // A gitlink (submodule) is a directory: submodules are not fetched.
    }
    Ok((copied, links))
}

/// Whether `target`, read from directory `dir` (relative to the repository), stays inside it.
fn stays_inside(dir: &Path, target: &Path) -> bool {
    let mut depth: i64 = dir.components().count() as i64;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_from_remotes() {
        assert_eq!(
            repo_of_url("https://github.com/o/r.git").as_deref(),
            Some("o/r")
        );
        assert_eq!(
            repo_of_url("git@github.com:o/r.git").as_deref(),
            Some("o/r")
        );
        assert_eq!(
            repo_of_url("ssh://git@github.com/o/r").as_deref(),
            Some("o/r")
        );
    }

    #[test]
    fn paths_stay_below_the_workspace() {
        assert_eq!(relative("").unwrap(), None);
        assert_eq!(relative("./").unwrap(), None);
        assert_eq!(relative("a/b").unwrap(), Some(PathBuf::from("a/b")));
        assert!(relative("../x").is_err());
        assert!(relative("a/../../x").is_err());
        assert!(relative("/etc").is_err());
        assert!(stays_inside(Path::new("a/b"), Path::new("../c")));
        assert!(!stays_inside(Path::new("a"), Path::new("../../etc/passwd")));
    }
}
