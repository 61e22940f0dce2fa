//! How a `run:` script becomes a process: the `shell:` of a step.
//!
//! `bash` runs like GitHub Actions' default (`--noprofile --norc -eo
//! pipefail`), `sh` runs with `-e`, and any other value is a command template
//! in which `{0}` is replaced by the path of a file holding the script.

use std::path::Path;

/// Builtins and keywords of sh and bash: a script starting with one needs the shell.
const SHELL_WORDS: &[&str] = &[
    ".", ":", "alias", "bg", "bind", "break", "builtin", "case", "cd", "command", "continue",
    "declare", "do", "done", "echo", "elif", "else", "esac", "eval", "exec", "exit", "export",
    "fc", "fg", "fi", "for", "function", "getopts", "hash", "if", "jobs", "kill", "let", "local",
    "printf", "pwd", "read", "readonly", "return", "select", "set", "shift", "shopt", "source",
    "test", "then", "time", "times", "trap", "type", "typeset", "ulimit", "umask", "unalias",
    "unset", "until", "wait", "while",
];

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Shell {
    Bash,
    Sh,
    /// Argument vector with `{0}` standing for the script file.
    Template(Vec<String>),
}

impl Shell {
    pub fn parse(s: &str) -> Result<Shell, String> {
        match s.trim() {
            "bash" => Ok(Shell::Bash),
            "sh" => Ok(Shell::Sh),
            // As GitHub Actions runs them: `python {0}` (python3 where `python` is missing).
            "python" => {
                let py = if on_path("python") { "python" } else { "python3" };
                Ok(Shell::Template(vec![py.into(), "{0}".into()]))
            }
            "pwsh" if on_path("pwsh") => Ok(Shell::Template(vec![
                "pwsh".into(),
                "-NoProfile".into(),
                "-NonInteractive".into(),
                "-Command".into(),
                ". '{0}'".into(),
            ])),
            "pwsh" => Err(
                "`shell: pwsh` needs PowerShell (`pwsh`), which is not on PATH: install it, or write the step for `bash`".into(),
            ),
            "powershell" | "cmd" => Err(format!(
                "`shell: {}` is Windows-only and trun runs on this host ({}): write the step for `bash` (or `pwsh`, if installed)",
                s.trim(),
                std::env::consts::OS
            )),
            other if other.contains("{0}") => {
                let argv: Vec<String> = other.split_whitespace().map(str::to_string).collect();
                Ok(Shell::Template(argv))
            }
            other => Err(format!(
                "unknown shell `{other}`: use `bash`, `sh`, or a command with `{{0}}` for the script file (e.g. `python3 {{0}}`)"
            )),
        }
    }

    /// Whether `${VAR}` in the script text reads an environment variable, so
    /// expressions can be passed safely by reference: `bash`, `sh`, and a
    /// template that runs a POSIX shell (`bash -e {0}`, `/bin/sh {0}`,
    /// `busybox sh {0}`). Any other interpreter (`python3 {0}`) has its own
    /// syntax, so an expression in its script is refused at plan time.
    pub fn expands_env_refs(&self) -> bool {
        const POSIX: &[&str] = &["sh", "bash", "dash", "ash", "ksh", "mksh", "zsh"];
        match self {
            Shell::Bash | Shell::Sh => true,
            Shell::Template(argv) => {
                let base = |a: &str| {
                    Path::new(a)
                        .file_name()
                        .and_then(|n| n.to_str())
                        .map(str::to_string)
                };
                match argv.first().and_then(|a| base(a)).as_deref() {
                    Some("busybox") => argv.get(1).is_some_and(|a| a == "sh" || a == "ash"),
                    Some(p) => POSIX.contains(&p),
                    None => false,
                }
            }
        }
    }

    pub fn name(&self) -> String {
        match self {
            Shell::Bash => "bash".into(),
            Shell::Sh => "sh".into(),
            Shell::Template(a) => a.join(" "),
        }
    }

    /// The argument vector to run `script`; `script_file` is where the
    /// script was written for template shells.
    pub fn argv(&self, script: &str, script_file: Option<&Path>) -> Vec<String> {
        match self {
            Shell::Bash => vec![
                "bash".into(),
                "--noprofile".into(),
                "--norc".into(),
                "-eo".into(),
                "pipefail".into(),
                "-c".into(),
                script.into(),
            ],
            Shell::Sh => vec!["sh".into(), "-ec".into(), script.into()],
            Shell::Template(t) => {
                let file = script_file
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                t.iter().map(|a| a.replace("{0}", &file)).collect()
            }
        }
    }

    /// The argument vector of a script that is one simple command (`cargo
    /// build --release`, `true`), to be exec'd without a shell, as make does:
    /// no quotes, variables, globs, redirections, operators or builtins, so
    /// the shell would do nothing but split on spaces and exec. `None` means
    /// the script needs its shell.
    pub fn direct_argv(&self, script: &str) -> Option<Vec<String>> {
        if !matches!(self, Shell::Bash | Shell::Sh) {
            return None;
        }
        let s = script.trim();
        if s.is_empty() || s.contains('\n') {
            return None;
        }
        let plain = |c: char| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    ' ' | '-' | '_' | '.' | '/' | ',' | '+' | '@' | '%' | ':' | '='
                )
        };
        if !s.chars().all(plain) {
            return None;
        }
        let argv: Vec<String> = s
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        let first = argv.first()?;
        // `VAR=value cmd` is an assignment, and builtins have no binary (or
        // behave differently from it).
        if first.contains('=') || SHELL_WORDS.contains(&first.as_str()) {
            return None;
        }
        Some(argv)
    }

    /// The shell of a `run:` step that names none, on this host, as on GitHub:
    /// `bash` when it is on PATH, else `sh`. The user's `$SHELL` plays no part.
    pub fn host_default() -> &'static str {
        static BASH: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *BASH.get_or_init(|| on_path("bash")) {
            "bash"
        } else {
            "sh"
        }
    }

    pub fn needs_script_file(&self) -> bool {
        matches!(self, Shell::Template(_))
    }
}

/// Whether an executable named `name` is on PATH.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| find_on_path(name, &p).is_some())
}

/// Where `execvp` would find `name` on `path`: the first directory holding a
/// regular file by that name that we may execute. `None` when there is none,
/// when `name` holds a `/` (it is not looked up), or when the search reaches
/// an empty or relative entry (found from the child's working directory,
/// which only the child knows): the caller then leaves the search to the
/// child. Looking up in the parent costs a `stat` per directory; leaving it to
/// the child costs a failed `execve` each, which on Linux builds and drops an
/// address space every time.
pub fn find_on_path(name: &str, path: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    use nix::unistd::{access, AccessFlags};
    if name.is_empty() || name.contains('/') {
        return None;
    }
    for dir in std::env::split_paths(path) {
        if !dir.is_absolute() {
            return None;
        }
        let candidate = dir.join(name);
        let is_file = std::fs::metadata(&candidate).is_ok_and(|m| m.is_file());
        if is_file && access(&candidate, AccessFlags::X_OK).is_ok() {
            return Some(candidate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path_as_execvp_would() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let put = |p: &std::path::Path, mode: u32| {
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        put(&a.join("tool"), 0o644); // not executable: passed over
        put(&b.join("tool"), 0o755);
        std::fs::create_dir_all(a.join("dir")).unwrap(); // a directory: passed over
        put(&b.join("dir"), 0o755);
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(find_on_path("tool", &path), Some(b.join("tool")));
        assert_eq!(find_on_path("dir", &path), Some(b.join("dir")));
        assert_eq!(find_on_path("missing", &path), None);
        // A name with a slash is not looked up; a relative entry leaves the
        // search to the child, which knows its working directory.
        assert_eq!(find_on_path("./tool", &path), None);
        let relative = std::env::join_paths([std::path::Path::new("rel"), &b]).unwrap();
        assert_eq!(find_on_path("tool", &relative), None);
        let dotdot = std::env::join_paths([std::path::Path::new("../b"), &b]).unwrap();
        assert_eq!(find_on_path("tool", &dotdot), None, "relative: the child's");
        // Hostile names and entries are looked up as names, never run.
        let odd = dir.path().join("it's \"$(touch pwned)\"");
        let path = std::env::join_paths([&odd, &b]).unwrap();
        assert_eq!(find_on_path("tool", &path), Some(b.join("tool")));
        assert_eq!(find_on_path("$(touch pwned)", &path), None);
        assert_eq!(find_on_path("`touch pwned`", &path), None);
        assert!(!dir.path().join("pwned").exists() && !std::path::Path::new("pwned").exists());
        // A huge PATH of entries that do not exist is a stat each, and no match.
        let huge: Vec<std::path::PathBuf> = (0..20_000)
            .map(|i| dir.path().join(format!("none{i}")))
            .collect();
        assert_eq!(
            find_on_path("tool", &std::env::join_paths(&huge).unwrap()),
            None
        );
    }

    #[test]
    fn simple_commands_skip_the_shell() {
        assert_eq!(
            Shell::Sh.direct_argv(" true "),
            Some(vec!["true".to_string()])
        );
        assert_eq!(
            Shell::Bash.direct_argv("cargo build --release"),
            Some(vec!["cargo".into(), "build".into(), "--release".into()])
        );
    }

    #[test]
    fn anything_the_shell_would_interpret_keeps_it() {
        for s in [
            "echo hi",
            "exit 3",
            "a && b",
            "ls *.rs",
            "echo $HOME",
            "x=1 cmd",
            "cat <f",
            "a\nb",
            "cd dir",
            "say 'hi'",
        ] {
            assert_eq!(Shell::Bash.direct_argv(s), None, "{s}");
        }
        assert_eq!(
            Shell::Template(vec!["python3".into(), "{0}".into()]).direct_argv("true"),
            None
        );
    }
}
