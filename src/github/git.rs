//! What the local Git repository says about itself, read from `.git` directly: the
//! commit checked out, the branch, and the `origin` remote's owner and name. No
//! network, no `git` process; every file is read with a size limit, and anything
//! unreadable is simply unknown.

use std::path::{Path, PathBuf};

/// The most bytes read from one file of `.git` (a `packed-refs` of a big repository
/// is a few megabytes).
const MAX_READ: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitInfo {
    /// The commit checked out (40 hex digits), when known.
    pub sha: Option<String>,
    /// `refs/heads/main`, or `None` on a detached HEAD.
    pub reference: Option<String>,
    /// `owner` and `name` of the `origin` remote, when it looks like a GitHub-style URL.
    pub owner: Option<String>,
    pub repo: Option<String>,
}

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut s = String::new();
    f.take(MAX_READ).read_to_string(&mut s).ok()?;
    Some(s)
}

/// The repository's git directory and its common directory (they differ in a
/// worktree), searched from `start` upwards.
fn git_dirs(start: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let dot = d.join(".git");
        if dot.is_dir() {
            return Some((dot.clone(), dot));
        }
        if dot.is_file() {
            let text = read_small(&dot)?;
            let gitdir = text.lines().find_map(|l| l.strip_prefix("gitdir:"))?.trim();
            let gitdir = d.join(gitdir);
            let common = read_small(&gitdir.join("commondir"))
                .map(|c| gitdir.join(c.trim()))
                .unwrap_or_else(|| gitdir.clone());
            return Some((gitdir, common));
        }
        dir = d.parent();
    }
    None
}

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A ref's commit: the loose file, else `packed-refs`.
fn resolve(gitdir: &Path, common: &Path, name: &str) -> Option<String> {
    if name.contains("..") || !name.starts_with("refs/") {
        return None;
    }
    for base in [gitdir, common] {
        if let Some(t) = read_small(&base.join(name)) {
            let t = t.trim();
            if is_sha(t) {
                return Some(t.to_string());
            }
        }
    }
    let packed = read_small(&common.join("packed-refs"))?;
    packed.lines().find_map(|l| {
        let (sha, r) = l.split_once(' ')?;
        (r.trim() == name && is_sha(sha)).then(|| sha.to_string())
    })
}

/// `owner/name` from a remote URL: `https://github.com/o/r.git`,
/// `git@github.com:o/r.git`, `ssh://git@host/o/r`.
pub fn owner_repo(url: &str) -> Option<(String, String)> {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix(".git").unwrap_or(url);
    let path = if let Some((_, rest)) = url.split_once("://") {
        rest.split_once('/')?.1
    } else if let Some((host, rest)) = url.split_once(':') {
        if host.contains('/') {
            return None; // a local path
        }
        rest
    } else {
        return None;
    };
    let mut parts = path.rsplit('/');
    let repo = parts.next()?.to_string();
    let owner = parts.next()?.to_string();
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (ok(&owner) && ok(&repo)).then_some((owner, repo))
}

/// The `url` of `[remote "origin"]` in a git config file.
fn origin_url(config: &str) -> Option<String> {
    let mut in_origin = false;
    for line in config.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_origin = l.replace(' ', "") == "[remote\"origin\"]";
            continue;
        }
        if in_origin {
            if let Some((k, v)) = l.split_once('=') {
                if k.trim() == "url" {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

/// What the repository holding `dir` says about itself; empty outside a repository.
pub fn read(dir: &Path) -> GitInfo {
    let Some((gitdir, common)) = git_dirs(dir) else {
        return GitInfo::default();
    };
    let mut info = GitInfo::default();
    if let Some(head) = read_small(&gitdir.join("HEAD")) {
        let head = head.trim();
        if let Some(r) = head.strip_prefix("ref:") {
            let r = r.trim().to_string();
            info.sha = resolve(&gitdir, &common, &r);
            info.reference = Some(r);
        } else if is_sha(head) {
            info.sha = Some(head.to_string());
        }
    }
    if let Some((o, r)) = read_small(&common.join("config"))
        .as_deref()
        .and_then(origin_url)
        .as_deref()
        .and_then(owner_repo)
    {
        info.owner = Some(o);
        info.repo = Some(r);
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls_give_owner_and_name() {
        for url in [
            "https://github.com/rust-lang/cargo.git",
            "git@github.com:rust-lang/cargo.git",
            "ssh://git@github.com/rust-lang/cargo",
            "https://github.com/rust-lang/cargo/",
        ] {
            assert_eq!(
                owner_repo(url),
                Some(("rust-lang".into(), "cargo".into())),
                "{url}"
            );
        }
        assert_eq!(owner_repo("/srv/git/cargo"), None);
        assert_eq!(owner_repo("https://h/o/$(rm -rf ~)"), None);
    }

    #[test]
    fn origin_is_found_among_remotes() {
        let cfg = "[core]\n\tbare = false\n[remote \"upstream\"]\n\turl = https://x/a/b\n[remote \"origin\"]\n\turl = git@github.com:me/proj.git\n";
        assert_eq!(
            origin_url(cfg).as_deref(),
            Some("git@github.com:me/proj.git")
        );
    }

    #[test]
    fn head_branch_and_packed_refs() {
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join(".git");
        std::fs::create_dir_all(g.join("refs/heads")).unwrap();
        std::fs::write(g.join("HEAD"), "ref: refs/heads/topic\n").unwrap();
        let sha = "0123456789abcdef0123456789abcdef01234567";
        std::fs::write(
            g.join("packed-refs"),
            format!("# pack-refs\n{sha} refs/heads/topic\n"),
        )
        .unwrap();
        std::fs::write(
            g.join("config"),
            "[remote \"origin\"]\n url = https://github.com/o/r.git\n",
        )
        .unwrap();
        let sub = d.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        let info = read(&sub);
        assert_eq!(info.sha.as_deref(), Some(sha));
        assert_eq!(info.reference.as_deref(), Some("refs/heads/topic"));
        assert_eq!(info.owner.as_deref(), Some("o"));
        assert_eq!(info.repo.as_deref(), Some("r"));
    }
}
