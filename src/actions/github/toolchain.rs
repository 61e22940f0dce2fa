//! `actions/setup-python`, `-node`, `-go`, `-java` and `dtolnay/rust-toolchain` on the
//! host: the toolchain already on PATH is used when it satisfies the request, and the
//! step log says so (`using host python 3.11.7 for python-version 3.11`); otherwise the
//! step fails saying what was asked and what the host has. Nothing is downloaded.

use super::version::{Request, Version};
use super::{Builtin, Ctx, Done, Probe};
use crate::event::Stream;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The biggest version file read (`.nvmrc`, `go.mod`, `package.json`).
const MAX_VERSION_FILE: u64 = 1 << 20;

struct Lang {
    /// `python`, as the log and messages name it.
    name: &'static str,
    /// The version input (`python-version`) and its file input.
    input: &'static str,
    file_input: &'static str,
    /// Files read when neither input is given, in order.
    default_files: &'static [&'static str],
    /// Commands asked for the version, the first that runs wins.
    commands: &'static [&'static [&'static str]],
}

fn lang(kind: Builtin) -> Lang {
    match kind {
        Builtin::SetupPython => Lang {
            name: "python",
            input: "python-version",
            file_input: "python-version-file",
            default_files: &[".python-version"],
            commands: &[&["python3", "--version"], &["python", "--version"]],
        },
        Builtin::SetupNode => Lang {
            name: "node",
            input: "node-version",
            file_input: "node-version-file",
            default_files: &[],
            commands: &[&["node", "--version"]],
        },
        Builtin::SetupGo => Lang {
            name: "go",
            input: "go-version",
            file_input: "go-version-file",
            default_files: &[],
            commands: &[&["go", "version"]],
        },
        _ => Lang {
            name: "java",
            input: "java-version",
            file_input: "java-version-file",
            default_files: &[],
            commands: &[&["java", "-version"]],
        },
    }
}

/// The version requested by a version file, read as the action reads it.
fn from_file(name: &str, file: &str, text: &str) -> Option<String> {
    let base = file.rsplit('/').next().unwrap_or(file);
    let first_line = || {
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
    };
    match base {
        "package.json" => serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| {
                v.pointer("/volta/node")
                    .or_else(|| v.pointer("/engines/node"))
                    .and_then(|n| n.as_str())
                    .map(str::to_string)
            }),
        "go.mod" | "go.work" => {
            let word = |prefix: &str| {
                text.lines()
                    .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_string()))
            };
            word("toolchain go").or_else(|| word("go "))
        }
        "pyproject.toml" => text.lines().find_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("requires-python")?
                .trim()
                .strip_prefix('=')?;
            Some(rest.trim().trim_matches('"').trim_matches('\'').to_string())
        }),
        ".tool-versions" => text.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            let tool = w.next()?;
            let tool = if tool == "nodejs" {
                "node"
            } else if tool == "golang" {
                "go"
            } else {
                tool
            };
            (tool == name).then(|| w.next()).flatten().map(|v| {
                // `java temurin-17.0.2`: the version after the distribution.
                v.rsplit('-').next().unwrap_or(v).to_string()
            })
        }),
        _ => first_line().map(|l| l.trim_start_matches('v').to_string()),
    }
}

fn read_version_file(ctx: &Ctx<'_>, file: &str) -> Result<String, String> {
    let rel = super::checkout::relative(file)
        .map_err(|why| format!("`{file}` {why}"))?
        .ok_or_else(|| format!("`{file}` names no file"))?;
    crate::fsutil::no_symlink_below(&ctx.workspace, &ctx.workspace.join(&rel))
        .map_err(|e| e.to_string())?;
    let path = ctx.workspace.join(&rel);
    let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("cannot read {file}: {e}"))?;
    if !meta.is_file() || meta.len() > MAX_VERSION_FILE {
        return Err(format!("{file} is not a regular file of at most 1 MiB"));
    }
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {file}: {e}"))
}

/// What the host has: the version and the command that answered.
async fn host_version(
    probe: &mut dyn Probe,
    commands: &[&[&str]],
) -> Option<(Version, String, String)> {
    for argv in commands {
        if let Some(o) = probe.run(argv).await {
            if let Some(v) = o.success.then(|| Version::find(&o.text())).flatten() {
                return Some((v, argv[0].to_string(), o.text()));
            }
        }
    }
    None
}

pub(super) async fn setup(
    kind: Builtin,
    input: &(dyn Fn(&str) -> String + Sync),
    ctx: &Ctx<'_>,
    probe: &mut dyn Probe,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<Done, String> {
    let l = lang(kind);
    let mut requests: Vec<(String, String)> = input(l.input)
        .lines()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| (s.to_string(), l.input.to_string()))
        .collect();
    if requests.is_empty() {
        let file = input(l.file_input);
        let candidates: Vec<String> = if file.is_empty() {
            l.default_files
                .iter()
                .filter(|f| ctx.workspace.join(f).is_file())
                .map(|f| f.to_string())
                .collect()
        } else {
            vec![file]
        };
        if let Some(f) = candidates.first() {
            let text = read_version_file(ctx, f)?;
            let v = from_file(l.name, f, &text)
                .ok_or_else(|| format!("{f} names no {} version", l.name))?;
            requests.push((v, f.clone()));
        }
    }
    if requests.is_empty() && kind == Builtin::SetupJava {
        return Err("`actions/setup-java` needs `java-version` or `java-version-file`".into());
    }
    let Some((host, program, _)) = host_version(probe, l.commands).await else {
        let asked = requests
            .iter()
            .map(|(r, from)| format!("{} {r} ({from})", l.name))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "{} is not on PATH{}; trun uses the host's toolchain and downloads nothing: install it",
            l.name,
            if asked.is_empty() {
                String::new()
            } else {
                format!(" (asked for {asked})")
            }
        ));
    };
    if requests.is_empty() {
        out(
            Stream::Stdout,
            format!(
                "no {} asked: using host {} {host} ({program})",
                l.input, l.name
            ),
        );
    }
    for (text, from) in &requests {
        let req = Request::parse(text).map_err(|why| format!("{from}: {why}"))?;
        if !req.matches(&host) {
            return Err(format!(
                "{from} asks for {} {text}, but the host has {} {host} ({program} on PATH); \
                 trun uses the host's toolchain and downloads nothing: install a matching {} \
                 (first on PATH) or change the request",
                l.name, l.name, l.name
            ));
        }
        let note = req
            .channel()
            .map(|c| format!(" (which release `{c}` is today cannot be checked offline)"))
            .unwrap_or_default();
        out(
            Stream::Stdout,
            format!("using host {} {host} for {from} {text}{note}", l.name),
        );
    }
    let cache = input("cache");
    if !cache.is_empty() && cache != "false" {
        out(
            Stream::Stdout,
            format!(
                "`cache: {cache}` is not done by trun; use `actions/cache` for dependency caches"
            ),
        );
    }
    let mut outputs = BTreeMap::new();
    match kind {
        Builtin::SetupPython => {
            outputs.insert("python-version".into(), host.to_string());
            let exe = probe
                .run(&[&program, "-c", "import sys; print(sys.executable)"])
                .await
                .filter(|o| o.success)
                .map(|o| o.stdout.trim().to_string())
                .unwrap_or_default();
            outputs.insert("python-path".into(), exe);
            outputs.insert("cache-hit".into(), "false".into());
        }
        Builtin::SetupNode => {
            outputs.insert("node-version".into(), format!("v{host}"));
            outputs.insert("cache-hit".into(), "false".into());
        }
        Builtin::SetupGo => {
            outputs.insert("go-version".into(), host.to_string());
            outputs.insert("cache-hit".into(), "false".into());
        }
        _ => {
            outputs.insert("distribution".into(), input("distribution"));
            outputs.insert("version".into(), host.to_string());
            let home = probe
                .run(&["java", "-XshowSettings:properties", "-version"])
                .await
                .and_then(|o| {
                    o.text()
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("java.home = ").map(str::to_string))
                })
                .unwrap_or_default();
            outputs.insert("path".into(), home);
            outputs.insert("cache-hit".into(), "false".into());
        }
    }
    Ok(Done {
        outputs,
        post: None,
    })
}

/// Whether a `dtolnay/rust-toolchain@REF` names a branch or tag of the action rather than
/// a toolchain: `@master`, `@v1`, a commit.
pub(super) fn rust_ref_is_branch(r: &str) -> bool {
    r == "master"
        || r == "main"
        || (r.starts_with('v') && r[1..].chars().all(|c| c.is_ascii_digit()) && r.len() > 1)
        || (r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The channel of a `rustc --version` line: `stable`, `beta` or `nightly`.
fn rust_channel(version_line: &str) -> &'static str {
    let word = version_line.split_whitespace().nth(1).unwrap_or("");
    if word.contains("nightly") || word.contains("-dev") {
        "nightly"
    } else if word.contains("beta") {
        "beta"
    } else {
        "stable"
    }
}

pub(super) async fn rust(
    input: &(dyn Fn(&str) -> String + Sync),
    ctx: &Ctx<'_>,
    probe: &mut dyn Probe,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<Done, String> {
    let _ = ctx;
    let given = input("toolchain");
    let r = super::split_ref(&ctx.uses)
        .1
        .unwrap_or_default()
        .to_string();
    let toolchain = if given.is_empty() { r } else { given };
    let rustc = probe
        .run(&["rustc", "--version"])
        .await
        .filter(|o| o.success)
        .ok_or_else(|| {
            format!("rustc is not on PATH (asked for toolchain {toolchain}); trun uses the host's toolchain and downloads nothing: install it (rustup.rs)")
        })?;
    let line = rustc.stdout.trim().to_string();
    let host =
        Version::find(&line).ok_or_else(|| format!("cannot read `rustc --version`: {line}"))?;
    let channel = rust_channel(&line);
    // `stable-x86_64-unknown-linux-gnu`, `nightly-2024-05-01`: the channel is the first word.
    let asked_channel = toolchain.split('-').next().unwrap_or("");
    let ok = match asked_channel {
        "stable" | "beta" | "nightly" => channel == asked_channel,
        v => {
            let req = Request::parse(v).map_err(|why| format!("toolchain: {why}"))?;
            channel == "stable" && req.matches(&host)
        }
    };
    if !ok {
        return Err(format!(
            "toolchain {toolchain} asked, but the host has {line}; trun uses the host's toolchain and downloads nothing: \
             install it (`rustup toolchain install {toolchain}`, then make it the default here with \
             `rustup override set {toolchain}`) or change the request"
        ));
    }
    let note = if toolchain.contains('-') || matches!(asked_channel, "stable" | "beta" | "nightly")
    {
        " (which release that is today cannot be checked offline)"
    } else {
        ""
    };
    out(
        Stream::Stdout,
        format!("using host rust {host} ({channel}) for toolchain {toolchain}{note}"),
    );
    let list = |s: String| -> Vec<String> {
        s.split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    let sysroot = probe
        .run(&["rustc", "--print", "sysroot"])
        .await
        .filter(|o| o.success)
        .map(|o| std::path::PathBuf::from(o.stdout.trim()));
    for component in list(input("components")) {
        let found = match component.as_str() {
            "rustfmt" => probe
                .run(&["cargo", "fmt", "--version"])
                .await
                .is_some_and(|o| o.success),
            "clippy" => probe
                .run(&["cargo", "clippy", "--version"])
                .await
                .is_some_and(|o| o.success),
            "rust-src" => sysroot
                .as_ref()
                .is_some_and(|s| s.join("lib/rustlib/src").is_dir()),
            other => probe
                .run(&["rustup", "component", "list", "--installed"])
                .await
                .is_some_and(|o| {
                    o.success
                        && o.stdout
                            .lines()
                            .any(|l| l == other || l.starts_with(&format!("{other}-")))
                }),
        };
        if !found {
            return Err(format!(
                "component {component} asked, but the host's toolchain ({line}) does not have it: \
                 `rustup component add {component}`"
            ));
        }
        out(Stream::Stdout, format!("component {component}: present"));
    }
    let mut targets = list(input("targets"));
    targets.extend(list(input("target")));
    for target in targets {
        let present = sysroot
            .as_ref()
            .is_some_and(|s| s.join("lib/rustlib").join(&target).join("lib").is_dir());
        if !present {
            return Err(format!(
                "target {target} asked, but the host's toolchain ({line}) does not have it: \
                 `rustup target add {target}`"
            ));
        }
        out(Stream::Stdout, format!("target {target}: present"));
    }
    let verbose = probe
        .run(&["rustc", "-vV"])
        .await
        .map(|o| o.stdout)
        .unwrap_or(line.clone());
    let hash = hex::encode(Sha256::digest(verbose.as_bytes()));
    let mut outputs = BTreeMap::new();
    outputs.insert("cachekey".into(), hash[..12].to_string());
    outputs.insert("name".into(), toolchain);
    Ok(Done {
        outputs,
        post: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_files() {
        assert_eq!(
            from_file("python", ".python-version", "# pinned\n3.11.7\n").as_deref(),
            Some("3.11.7")
        );
        assert_eq!(from_file("node", ".nvmrc", "v20\n").as_deref(), Some("20"));
        assert_eq!(
            from_file("node", "package.json", r#"{"engines":{"node":">=18"}}"#).as_deref(),
            Some(">=18")
        );
        assert_eq!(
            from_file("go", "go.mod", "module x\n\ngo 1.21\n").as_deref(),
            Some("1.21")
        );
        assert_eq!(
            from_file("go", "go.mod", "module x\ngo 1.21\ntoolchain go1.22.3\n").as_deref(),
            Some("1.22.3")
        );
        assert_eq!(
            from_file(
                "python",
                "pyproject.toml",
                "[project]\nrequires-python = \">=3.9\"\n"
            )
            .as_deref(),
            Some(">=3.9")
        );
        assert_eq!(
            from_file(
                "java",
                ".tool-versions",
                "nodejs 20.1.0\njava temurin-17.0.2\n"
            )
            .as_deref(),
            Some("17.0.2")
        );
    }

    #[test]
    fn rust_refs_and_channels() {
        assert!(rust_ref_is_branch("master"));
        assert!(rust_ref_is_branch("v1"));
        assert!(!rust_ref_is_branch("stable"));
        assert!(!rust_ref_is_branch("1.89"));
        assert_eq!(
            rust_channel("rustc 1.91.0 (f8297e351 2025-10-28)"),
            "stable"
        );
        assert_eq!(
            rust_channel("rustc 1.93.0-nightly (abc 2025-11-01)"),
            "nightly"
        );
        assert_eq!(rust_channel("rustc 1.92.0-beta.3 (abc 2025-11-01)"), "beta");
    }
}
