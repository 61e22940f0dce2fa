//! A run's source taken from a git repository at a ref: the URL and ref are
//! checked, the `git` command fetches that one commit into a fresh directory
//! and checks it out, and the commit id comes back so the run records what it
//! ran (and a restarted server fetches the same commit again).
//!
//! The URL and ref come from whoever may create runs, so they are hostile
//! input. Neither can become an option (a leading `-` is refused and `--`
//! stands before them) nor code: only the `https`, `http`, `ssh`, `git` and
//! `file` protocols are allowed (`ext::` would run a command), `file://` only
//! for a repository under the server's root, hooks and submodules are off,
//! the user's and system's git configuration are not read (a global
//! `filter.*.smudge` or `core.fsmonitor` would run a program), git never
//! prompts, and a git that runs too long or writes too much is killed with
//! its process group. The checkout may not hold a symbolic link that points
//! outside it.
//!
//! Not here: where the checkout lives and when it goes (the server's runs),
//! planning the workflow in it (`server::load`).

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The protocols a URL may use (`GIT_ALLOW_PROTOCOL`).
pub const PROTOCOLS: [&str; 5] = ["https", "http", "ssh", "git", "file"];

/// The most of git's stderr kept for an error message.
const MAX_STDERR: u64 = 16 * 1024;

/// How long git may take and how much it may write.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For the fetch and the checkout together.
    pub timeout: Duration,
    /// The checkout with its `.git`.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(300),
            max_bytes: 2 << 30,
        }
    }
}

/// Why a source could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitError {
    /// The URL or ref is refused before git runs; `field` is `url` or `ref`.
    Refused {
        field: &'static str,
        message: String,
    },
    /// `file://` names a path outside the server's root.
    Outside(String),
    /// git ran and failed (no such ref, unreachable host, too slow, too big, a
    /// link out of the checkout); `field` is what most likely is wrong.
    Failed {
        field: &'static str,
        message: String,
    },
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitError::Refused { message, .. }
            | GitError::Failed { message, .. }
            | GitError::Outside(message) => f.write_str(message),
        }
    }
}

fn refused(field: &'static str, message: String) -> GitError {
    GitError::Refused { field, message }
}

/// `url` checked; returns the URL git is given (a `file://` URL with its path
/// resolved, so what was checked is what git reads).
pub fn check_url(url: &str, root: &Path) -> Result<String, GitError> {
    let bad = |why: &str| refused("url", format!("git URL `{url}` {why}"));
    if url.is_empty() {
        return Err(refused("url", "the git URL is empty".into()));
    }
    if url.len() > 2048 {
        return Err(bad("is longer than 2048 bytes"));
    }
    if url.starts_with('-') {
        return Err(bad("starts with `-`"));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("holds whitespace or a control character"));
    }
    let allowed = || {
        format!(
            "must be {}:// (file:// only under the server's root) or user@host:path",
            PROTOCOLS.join("://, ")
        )
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return if scp_like(url) {
            Ok(url.to_string())
        } else {
            Err(bad(&allowed()))
        };
    };
    if !PROTOCOLS.contains(&scheme) {
        return Err(bad(&allowed()));
    }
    if rest.starts_with('-') || rest.is_empty() {
        return Err(bad("has no host"));
    }
    if scheme != "file" {
        return Ok(url.to_string());
    }
    local_repository(url, rest, root).map(|p| format!("file://{}", p.display()))
}

/// `url` as it may be shown and recorded in the open: an `http(s)://`
/// URL's user info (often a token) and any other URL's password are `***`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let shown = if scheme.starts_with("http") {
        "***".to_string()
    } else {
        match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***"),
            None => userinfo.to_string(),
        }
    };
    format!("{scheme}://{shown}@{host}{path}")
}

/// `user@host:path`, git's short form of ssh (the host never starts with `-`).
fn scp_like(url: &str) -> bool {
    let Some((user_host, path)) = url.split_once(':') else {
        return false;
    };
    let Some((user, host)) = user_host.split_once('@') else {
        return false;
    };
    let word = |s: &str| {
        !s.is_empty()
            && !s.starts_with(['-', '.'])
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    word(user) && word(host) && !path.is_empty() && !path.starts_with('-')
}

/// The repository a `file://` URL names, resolved: under `root`, and so is
/// its `.git` (a `.git` file, which names a git directory anywhere, is refused).
fn local_repository(url: &str, rest: &str, root: &Path) -> Result<PathBuf, GitError> {
    let outside = |why: &str| {
        GitError::Outside(format!(
            "git URL `{url}` {why}: a file:// repository must be under the server's root"
        ))
    };
    let Some(path) = rest.strip_prefix('/').map(|_| rest) else {
        return Err(outside(
            "has a host or a relative path (write file:///absolute/path)",
        ));
    };
    if path.contains(['%', '?', '#']) {
        return Err(refused(
            "url",
            format!("git URL `{url}`: a file:// path may not hold `%`, `?` or `#`"),
        ));
    }
    let root = root
        .canonicalize()
        .map_err(|e| outside(&format!("(the root cannot be resolved: {e})")))?;
    let repo = Path::new(path)
        .canonicalize()
        .map_err(|_| outside("does not exist"))?;
    if !repo.starts_with(&root) {
        return Err(outside("is outside it"));
    }
    let dot = repo.join(".git");
    match std::fs::symlink_metadata(&dot) {
        Ok(m) if m.is_file() => return Err(outside("has a .git file naming a git directory")),
        Ok(_) => {
            let real = dot
                .canonicalize()
                .map_err(|_| outside("has a broken .git"))?;
            if !real.starts_with(&root) {
                return Err(outside("has a .git that links out of it"));
            }
        }
        Err(_) => {}
    }
    Ok(repo)
}

/// `reference` checked: a branch, tag or commit id as git spells them, never
/// an option, a refspec (`a:b`, `+a`) or a revision expression (`a^`, `@{1}`).
pub fn check_ref(reference: &str) -> Result<(), GitError> {
    let bad = |why: &str| refused("ref", format!("git ref `{reference}` {why}"));
    if reference.is_empty() {
        return Err(refused("ref", "the git ref is empty".into()));
    }
    if reference.len() > 255 {
        return Err(bad("is longer than 255 bytes"));
    }
    if reference.starts_with('-') {
        return Err(bad("starts with `-`"));
    }
    if !reference
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        return Err(bad("may hold only letters, digits, `/`, `.`, `_` and `-`"));
    }
    if reference.starts_with(['/', '.'])
        || reference.ends_with(['/', '.'])
        || reference.contains("..")
        || reference.contains("//")
        || reference.contains("/.")
        || reference.ends_with(".lock")
    {
        return Err(bad("is not a valid ref name"));
    }
    Ok(())
}

/// Fetches `reference` of `url` (both checked already) into `dest`, which
/// must not exist, checks it out, and returns the commit id. On an error
/// `dest` may be left half made: the caller removes it.
pub fn fetch(url: &str, reference: &str, dest: &Path, limits: Limits) -> Result<String, GitError> {
    let deadline = Instant::now() + limits.timeout;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| failed("url", format!("cannot create {}: {e}", parent.display())))?;
    }
    let dest_arg = dest.as_os_str().to_owned();
    let run = |args: &[&std::ffi::OsStr], field| git(dest, args, deadline, limits, field);
    // No template: nothing (hooks included) is copied into the new repository.
    run(
        &[
            "init".as_ref(),
            "--quiet".as_ref(),
            "--template=".as_ref(),
            "--".as_ref(),
            &dest_arg,
        ],
        "url",
    )?;
    let fetched = run(
        &[
            "-C".as_ref(),
            dest.as_os_str(),
            "fetch".as_ref(),
            "--quiet".as_ref(),
            "--depth=1".as_ref(),
            "--no-tags".as_ref(),
            "--no-recurse-submodules".as_ref(),
            "--".as_ref(),
            url.as_ref(),
            reference.as_ref(),
        ],
        "url",
    );
    if let Err(GitError::Failed { message, .. }) = &fetched {
        let field = if message.contains("couldn't find remote ref")
            || message.contains("not our ref")
            || message.contains("unadvertised object")
        {
            "ref"
        } else {
            "url"
        };
        // git's words may repeat the URL, with its credentials.
        return Err(failed(field, message.replace(url, &redacted(url))));
    }
    let commit = run(
        &[
            "-C".as_ref(),
            dest.as_os_str(),
            "rev-parse".as_ref(),
            "--verify".as_ref(),
            "--end-of-options".as_ref(),
            "FETCH_HEAD^{commit}".as_ref(),
        ],
        "ref",
    )?
    .trim()
    .to_string();
    run(
        &[
            "-C".as_ref(),
            dest.as_os_str(),
            "checkout".as_ref(),
            "--quiet".as_ref(),
            "--detach".as_ref(),
            commit.as_ref(),
            "--".as_ref(),
        ],
        "ref",
    )?;
    check_links(dest)?;
    let size = dir_size(dest);
    if size > limits.max_bytes {
        return Err(too_big(limits.max_bytes));
    }
    Ok(commit)
}

fn failed(field: &'static str, message: String) -> GitError {
    GitError::Failed { field, message }
}

fn too_big(max: u64) -> GitError {
    failed(
        "url",
        format!("the repository's checkout is larger than {max} bytes; git was stopped"),
    )
}

/// Runs `git ARGS` hardened as the module says, until it ends or `deadline`
/// (or `dir` grows past the limit): then its process group is killed.
/// Returns its stdout.
fn git(
    dir: &Path,
    args: &[&std::ffi::OsStr],
    deadline: Instant,
    limits: Limits,
    field: &'static str,
) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    // Nothing of the server's environment steers git (GIT_DIR, GIT_CONFIG_*…).
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(k);
        }
    }
    // An operator's own ssh command is kept; either way ssh never prompts.
    let ssh = std::env::var_os("GIT_SSH_COMMAND").unwrap_or_else(|| "ssh".into());
    let mut batch = ssh;
    batch.push(" -o BatchMode=yes");
    cmd.env("GIT_SSH_COMMAND", batch);
    cmd.env("GIT_ALLOW_PROTOCOL", PROTOCOLS.join(":"))
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("SSH_ASKPASS", "/bin/false")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .args([
            "-c",
            "protocol.ext.allow=never",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "submodule.recurse=false",
            "-c",
            "transfer.fsckObjects=true",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(field, format!("cannot run git: {e}")))?;
    let pid = Pid::from_raw(child.id() as i32);
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(r) = r {
                let mut r = r.take(MAX_STDERR * 64);
                let _ = r.read_to_end(&mut out);
                // Drain the rest so git is never blocked on a full pipe.
                let _ = std::io::copy(&mut r.into_inner(), &mut std::io::sink());
            }
            out
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let mut last_size_check = Instant::now();
    let mut stopped = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => {
                stopped = Some(failed(field, format!("cannot wait for git: {e}")));
                break None;
            }
        }
        if Instant::now() >= deadline {
            stopped = Some(failed(
                field,
                format!(
                    "git took longer than {} s and was stopped",
                    limits.timeout.as_secs()
                ),
            ));
            break None;
        }
        if last_size_check.elapsed() >= Duration::from_millis(500) {
            last_size_check = Instant::now();
            if dir_size(dir) > limits.max_bytes {
                stopped = Some(too_big(limits.max_bytes));
                break None;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.is_none() {
        // Its children (ssh, upload-pack, remote helpers) go with it.
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = child.wait();
    }
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if let Some(e) = stopped {
        return Err(e);
    }
    let status = status.expect("a status when not stopped");
    if !status.success() {
        let text = String::from_utf8_lossy(&err[..err.len().min(MAX_STDERR as usize)])
            .trim()
            .to_string();
        let verb = args
            .iter()
            .map(|a| a.to_string_lossy())
            .find(|a| ["init", "fetch", "rev-parse", "checkout"].contains(&a.as_ref()))
            .unwrap_or_default();
        return Err(failed(
            field,
            format!("git {verb} failed ({status}): {text}"),
        ));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Refuses a checkout holding a symbolic link that resolves outside it or to
/// nothing (which a step could fill in with a link out).
fn check_links(dest: &Path) -> Result<(), GitError> {
    let root = dest
        .canonicalize()
        .map_err(|e| failed("url", format!("cannot resolve the checkout: {e}")))?;
    let mut todo = vec![root.clone()];
    while let Some(dir) = todo.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| failed("url", format!("cannot read {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !(dir == root && entry.file_name() == ".git") {
                    todo.push(path);
                }
            } else if kind.is_symlink() {
                let inside = path.canonicalize().is_ok_and(|t| t.starts_with(&root));
                if !inside {
                    let rel = path.strip_prefix(&root).unwrap_or(&path);
                    return Err(failed(
                        "ref",
                        format!(
                            "the repository holds a symbolic link `{}` that points outside it or to nothing; such a checkout is refused",
                            rel.display()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The bytes of the regular files below `dir` (links not followed).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_that_could_run_code_or_act_as_options_are_refused() {
        let root = tempfile::tempdir().unwrap();
        for url in [
            "ext::sh -c touch% /tmp/x",
            "ext::sh",
            "fd::3",
            "--upload-pack=touch /tmp/x",
            "-oProxyCommand=x",
            "/etc",
            "../repo",
            "ftp://host/repo",
            "-x@host:repo",
            "user@-host:repo",
            "https://host/a b",
            "https://host/a\nb",
            "",
        ] {
            let e = check_url(url, root.path()).unwrap_err();
            assert!(
                matches!(e, GitError::Refused { field: "url", .. }),
                "{url}: {e:?}"
            );
        }
        for url in [
            "https://example.com/o/r.git",
            "http://example.com/r",
            "ssh://git@example.com/r",
            "git://example.com/r",
            "git@example.com:o/r.git",
        ] {
            assert_eq!(check_url(url, root.path()).unwrap(), url);
        }
    }

    #[test]
    fn credentials_in_a_url_are_not_shown() {
        for (url, shown) in [
            (
                "https://x-token:s3cret@example.com/o/r.git",
                "https://***@example.com/o/r.git",
            ),
            ("https://s3cret@example.com/r", "https://***@example.com/r"),
            (
                "ssh://git:s3cret@example.com/r",
                "ssh://git:***@example.com/r",
            ),
            ("ssh://git@example.com/r@x", "ssh://git@example.com/r@x"),
            ("https://example.com/r", "https://example.com/r"),
            ("git@example.com:o/r.git", "git@example.com:o/r.git"),
        ] {
            assert_eq!(redacted(url), shown);
        }
    }

    #[test]
    fn file_urls_must_stay_under_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("repo")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
        let file = |p: &Path| format!("file://{}", p.display());
        let inside = check_url(&file(&root.path().join("repo")), root.path()).unwrap();
        assert_eq!(
            inside,
            file(&root.path().canonicalize().unwrap().join("repo"))
        );
        for url in [
            file(outside.path()),
            file(&root.path().join("out")),
            file(&root.path().join("repo/../..")),
            file(&root.path().join("missing")),
            format!("file://localhost{}", root.path().join("repo").display()),
        ] {
            let e = check_url(&url, root.path()).unwrap_err();
            assert!(matches!(e, GitError::Outside(_)), "{url}: {e:?}");
        }
    }

    #[test]
    fn refs_that_are_options_refspecs_or_expressions_are_refused() {
        for r in [
            "--upload-pack=touch /tmp/x",
            "-b",
            "a:b",
            "+main",
            "main^",
            "main~1",
            "@{1}",
            "a..b",
            "a b",
            "/main",
            "main/",
            "main.lock",
            "",
        ] {
            assert!(check_ref(r).is_err(), "{r}");
        }
        for r in [
            "main",
            "refs/heads/main",
            "v1.2.3",
            "feature/x-y_z",
            "0123abcd",
        ] {
            check_ref(r).unwrap();
        }
    }

    /// A repository under `root/repo` with `main` holding `a.txt = one` and
    /// `other` holding `a.txt = two`; returns (main's commit, other's).
    fn repo(root: &Path) -> (String, String) {
        let dir = root.join("repo");
        std::fs::create_dir_all(&dir).unwrap();
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "-c",
                    "init.defaultBranch=main",
                ])
                .args(args)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        git(&["init", "-q"]);
        std::fs::write(dir.join("a.txt"), "one").unwrap();
        git(&["add", "."]);
        git(&["commit", "-qm", "one"]);
        let main = git(&["rev-parse", "HEAD"]);
        git(&["checkout", "-qb", "other"]);
        std::fs::write(dir.join("a.txt"), "two").unwrap();
        git(&["commit", "-qam", "two"]);
        let other = git(&["rev-parse", "HEAD"]);
        git(&["checkout", "-q", "main"]);
        (main, other)
    }

    #[test]
    fn a_branch_or_a_commit_is_fetched_and_checked_out() {
        let root = tempfile::tempdir().unwrap();
        let (main, other) = repo(root.path());
        let url = check_url(
            &format!("file://{}/repo", root.path().display()),
            root.path(),
        )
        .unwrap();
        for (reference, commit, text) in [
            ("main", &main, "one"),
            ("other", &other, "two"),
            (main.as_str(), &main, "one"),
            (other.as_str(), &other, "two"),
        ] {
            let dest = root.path().join("out").join(reference);
            assert_eq!(
                &fetch(&url, reference, &dest, Limits::default()).unwrap(),
                commit
            );
            assert_eq!(std::fs::read_to_string(dest.join("a.txt")).unwrap(), text);
        }
        let e = fetch(&url, "nope", &root.path().join("nope"), Limits::default()).unwrap_err();
        assert!(
            matches!(&e, GitError::Failed { field: "ref", message } if message.contains("nope")),
            "{e:?}"
        );
    }

    #[test]
    fn an_unreachable_host_fails_without_showing_the_urls_credentials() {
        // Port 1 of the loopback address: nothing listens, the connection is refused.
        let root = tempfile::tempdir().unwrap();
        let url = "http://x-token:s3cret@127.0.0.1:1/repo.git";
        let e = fetch(url, "main", &root.path().join("r"), Limits::default()).unwrap_err();
        match e {
            GitError::Failed { field, message } => {
                assert_eq!(field, "url");
                assert!(message.starts_with("git fetch failed"), "{message}");
                assert!(!message.contains("s3cret"), "{message}");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn git_itself_refuses_ext_urls_should_one_get_past_the_check() {
        // Defence in depth: fetch is handed what check_url refuses.
        let root = tempfile::tempdir().unwrap();
        let marker = root.path().join("pwned");
        let url = format!("ext::sh -c touch% {}", marker.display());
        let e = fetch(&url, "main", &root.path().join("r"), Limits::default()).unwrap_err();
        assert!(e.to_string().contains("git fetch failed"), "{e}");
        assert!(!marker.exists(), "ext:: ran a command");
    }

    #[test]
    fn a_checkout_larger_than_the_limit_or_with_a_link_out_is_refused() {
        let root = tempfile::tempdir().unwrap();
        repo(root.path());
        let url = check_url(
            &format!("file://{}/repo", root.path().display()),
            root.path(),
        )
        .unwrap();
        let small = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        let e = fetch(&url, "main", &root.path().join("big"), small).unwrap_err();
        assert!(e.to_string().contains("larger than 10 bytes"), "{e}");

        let dir = root.path().join("repo");
        std::os::unix::fs::symlink("/etc/passwd", dir.join("out")).unwrap();
        std::os::unix::fs::symlink("a.txt", dir.join("in")).unwrap();
        let out = Command::new("sh")
            .args([
                "-c",
                "git add . && git -c user.name=t -c user.email=t@t commit -qm links",
            ])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let e = fetch(&url, "main", &root.path().join("links"), Limits::default()).unwrap_err();
        assert!(e.to_string().contains("symbolic link `out`"), "{e}");
    }

    #[test]
    fn a_git_that_runs_too_long_is_killed_with_its_children() {
        // A git whose child never ends (as a hung ssh or upload-pack would):
        // at the deadline git and the child are killed.
        let root = tempfile::tempdir().unwrap();
        let pid_file = root.path().join("pid");
        let alias = format!(
            "alias.hang=!sh -c 'echo $$ > {}; exec sleep 30'",
            pid_file.display()
        );
        let start = Instant::now();
        let e = git(
            root.path(),
            &["-c".as_ref(), alias.as_ref(), "hang".as_ref()],
            Instant::now() + Duration::from_millis(800),
            Limits::default(),
            "url",
        )
        .unwrap_err();
        assert!(e.to_string().contains("was stopped"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10));
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
        let gone = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            std::fs::read_to_string(proc.join("stat")).map_or(true, |s| s.contains(") Z "))
        });
        assert!(gone, "the child {} still runs", pid.trim());
    }
}
