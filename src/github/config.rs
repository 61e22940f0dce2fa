//! `.trunrc`: options remembered for a repository (in its root) or for the user
//! (`$XDG_CONFIG_HOME/trun/trunrc`, else `~/.config/trun/trunrc`), like act's `.actrc`.
//! One option per line, as on the command line:
//!
//! ```text
//! # run ubuntu jobs in this image instead of on the host
//! -P ubuntu-latest=node:20-bookworm
//! --var DEPLOY_ENV=staging
//! --var-file .github/vars.env
//! ```
//!
//! The user's file is read first, then the repository's; the command line wins over
//! both (a later `-P` for the same label replaces an earlier one).

use crate::diag::Diagnostic;
use std::path::{Path, PathBuf};

/// The largest `.trunrc` or `--var-file` read: 1 MiB.
pub const MAX_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub platforms: Vec<(String, String)>,
    pub vars: Vec<(String, String)>,
    pub var_files: Vec<PathBuf>,
}

/// The config files that apply to a workspace, in the order they are read.
pub fn paths(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let user_dir = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(d) = user_dir {
        out.push(d.join("trun").join("trunrc"));
    }
    out.push(root.join(".trunrc"));
    out
}

fn read_bounded(path: &Path, what: &str) -> Result<Option<String>, Diagnostic> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Diagnostic::plain(format!(
                "cannot read {what} {}: {e}",
                path.display()
            )))
        }
    };
    let meta = f
        .metadata()
        .map_err(|e| Diagnostic::plain(format!("cannot read {what} {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Diagnostic::plain(format!(
            "{what} {} is not a regular file",
            path.display()
        )));
    }
    if meta.len() > MAX_BYTES {
        return Err(Diagnostic::plain(format!(
            "{what} {} is larger than 1 MiB",
            path.display()
        )));
    }
    let mut s = String::new();
    f.take(MAX_BYTES)
        .read_to_string(&mut s)
        .map_err(|e| Diagnostic::plain(format!("cannot read {what} {}: {e}", path.display())))?;
    Ok(Some(s))
}

/// `LABEL=IMAGE` of `-P`.
pub fn parse_platform(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((l, i)) if !l.trim().is_empty() && !i.trim().is_empty() => {
            Ok((l.trim().to_string(), i.trim().to_string()))
        }
        _ => Err(format!(
            "`{s}` is not LABEL=IMAGE (e.g. -P ubuntu-latest=debian:bookworm)"
        )),
    }
}

/// `NAME=VALUE` of `--var`.
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if valid_name(k) => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "`{s}` is not NAME=VALUE (a name is letters, digits and `_`, not starting with a digit)"
        )),
    }
}

fn valid_name(k: &str) -> bool {
    let mut c = k.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The config of a workspace: the user's file, then the repository's.
pub fn load(root: &Path) -> Result<Config, Diagnostic> {
    let mut cfg = Config::default();
    for p in paths(root) {
        if let Some(text) = read_bounded(&p, "config file")? {
            parse_into(&p, &text, &mut cfg)?;
        }
    }
    Ok(cfg)
}

/// Reads one config file's text into `cfg`; `path` names it in errors and anchors
/// relative `--var-file`s.
pub fn parse_into(path: &Path, text: &str, cfg: &mut Config) -> Result<(), Diagnostic> {
    let base = path.parent().unwrap_or(Path::new("."));
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: String| {
            Diagnostic::plain(format!("{}:{}: {m}", path.display(), i + 1)).with_help(
                "a config line is `-P LABEL=IMAGE`, `--var NAME=VALUE` or `--var-file FILE`",
            )
        };
        let (flag, value) = match line.split_once([' ', '=', '\t']) {
            Some((f, v)) if f.starts_with('-') => (f, v.trim()),
            _ => return Err(err(format!("`{line}` is not an option"))),
        };
        match flag {
            "-P" | "--platform" => cfg.platforms.push(parse_platform(value).map_err(err)?),
            "--var" => cfg.vars.push(parse_var(value).map_err(err)?),
            "--var-file" => cfg.var_files.push(base.join(value)),
            other => {
                return Err(err(format!(
                    "unknown option `{other}`{}",
                    crate::diag::did_you_mean_suffix(
                        other,
                        ["-P", "--platform", "--var", "--var-file"].into_iter()
                    )
                )))
            }
        }
    }
    Ok(())
}

/// A dotenv file (`--var-file`): `NAME=VALUE` lines, `#` comments, an optional
/// `export `, values optionally in single or double quotes. Values are data: nothing
/// is expanded or run.
pub fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, Diagnostic> {
    let text = read_bounded(path, "variables file")?.ok_or_else(|| {
        Diagnostic::plain(format!("variables file {} does not exist", path.display()))
    })?;
    parse_dotenv(path, &text)
}

pub fn parse_dotenv(path: &Path, text: &str) -> Result<Vec<(String, String)>, Diagnostic> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(Diagnostic::plain(format!(
                "{}:{}: expected NAME=VALUE",
                path.display(),
                i + 1
            )));
        };
        let k = k.trim();
        if !valid_name(k) {
            return Err(Diagnostic::plain(format!(
                "{}:{}: invalid name `{}`",
                path.display(),
                i + 1,
                k.escape_debug()
            )));
        }
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines() {
        let mut c = Config::default();
        parse_into(
            Path::new("/r/.trunrc"),
            "# c\n-P ubuntu-latest=img:1\n--var A=b c\n--var-file v.env\n--platform=x=y\n",
            &mut c,
        )
        .unwrap();
        assert_eq!(
            c.platforms,
            vec![
                ("ubuntu-latest".into(), "img:1".into()),
                ("x".into(), "y".into())
            ]
        );
        assert_eq!(c.vars, vec![("A".into(), "b c".into())]);
        assert_eq!(c.var_files, vec![PathBuf::from("/r/v.env")]);
        let e = parse_into(Path::new(".trunrc"), "--plaform a=b\n", &mut c).unwrap_err();
        assert!(
            e.message.contains(".trunrc:1: unknown option `--plaform`"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("did you mean `--platform`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn dotenv_values_are_text() {
        let v = parse_dotenv(
            Path::new("v.env"),
            "# x\nexport A=1\nB=\"$(touch pwned)\"\nC='it''s'\nD=\n",
        )
        .unwrap();
        assert_eq!(
            v,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "$(touch pwned)".into()),
                ("C".into(), "it''s".into()),
                ("D".into(), "".into()),
            ]
        );
        assert!(parse_dotenv(Path::new("v.env"), "1A=x\n").is_err());
    }
}
