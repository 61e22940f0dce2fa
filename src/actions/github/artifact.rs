//! `actions/upload-artifact` and `actions/download-artifact` with a local artifact store
//! per run: an artifact's files are CAS objects (`.trun/cas`), and the run's store records
//! each artifact (name, job, files, size, manifest), so `trun show` lists them and a job
//! downloads what a job it needs uploaded.
//!
//! Names and paths are hostile: a name with a path separator or `..` is refused (a
//! "zip-slip" name would write outside the download directory), a manifest path is
//! checked again when downloading, and files are written with [`Cas::restore`], which
//! never writes through a symbolic link nor outside the workspace.

use super::cache::{base_dir, collect, has_glob, parse_paths, Base};
use super::checkout::relative;
use super::{Ctx, Done};
use crate::event::Stream;
use crate::uptodate::cas::Cas;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The characters GitHub refuses in artifact names, and what else would leave a directory.
const BAD_NAME_CHARS: &[char] = &[
    '"', ':', '<', '>', '|', '*', '?', '\r', '\n', '\\', '/', '\0',
];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct File {
    path: String,
    hash: String,
    mode: u32,
    size: u64,
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.len() > 255 {
        return Err(format!("artifact name `{name}` is not a valid name"));
    }
    if let Some(c) = name.chars().find(|c| BAD_NAME_CHARS.contains(c)) {
        return Err(format!(
            "artifact name `{}` contains {c:?}, which artifact names may not hold",
            name.escape_debug()
        ));
    }
    Ok(())
}

fn store<'a>(ctx: &'a Ctx<'_>) -> Result<&'a dyn crate::state::Store, String> {
    ctx.store
        .ok_or_else(|| "artifacts need the run's state store, and this run has none".to_string())
}

/// The directory the artifact's paths are relative to: the least common ancestor of the
/// search paths (the literal start of each `path` line, a file's directory), as GitHub
/// roots an artifact.
fn root_of(lines: &[super::cache::PathLine], ctx: &Ctx<'_>) -> Result<(Base, PathBuf), String> {
    let include: Vec<&super::cache::PathLine> = lines.iter().filter(|l| !l.exclude).collect();
    let base = include[0].base;
    if include.iter().any(|l| l.base != base) {
        return Err(
            "`path` mixes the workspace and the home directory; upload them as two artifacts"
                .into(),
        );
    }
    let dir = base_dir(base, ctx)?;
    let mut root: Option<PathBuf> = None;
    for l in include {
        let lit: Vec<&str> = l.pattern.split('/').take_while(|p| !has_glob(p)).collect();
        let mut search = PathBuf::from(lit.join("/"));
        let globbed = lit.len() < l.pattern.split('/').count();
        if !globbed && dir.join(&search).is_file() {
            search = search.parent().map(Path::to_path_buf).unwrap_or_default();
        }
        root = Some(match root {
            None => search,
            Some(r) => r
                .components()
                .zip(search.components())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect(),
        });
    }
    Ok((base, root.unwrap_or_default()))
}

pub(super) fn upload(
    input: &(dyn Fn(&str) -> String + Sync),
    ctx: &Ctx<'_>,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<Done, String> {
    let name = match input("name") {
        n if n.is_empty() => "artifact".to_string(),
        n => n,
    };
    check_name(&name)?;
    let missing = match input("if-no-files-found").as_str() {
        "" | "warn" => "warn",
        "error" => "error",
        "ignore" => "ignore",
        other => {
            return Err(format!(
                "`if-no-files-found: {other}` is not one of warn, error, ignore"
            ))
        }
    };
    let lines = parse_paths(&input("path"), ctx)?;
    let (base, root) = root_of(&lines, ctx)?;
    let (found, links) = collect(&lines, ctx)?;
    let hidden = input("include-hidden-files") == "true";
    let files: Vec<String> = found
        .into_iter()
        .map(|(_, rel)| rel)
        .filter(|rel| hidden || !rel.split('/').any(|p| p.starts_with('.')))
        .collect();
    let mut outputs = BTreeMap::new();
    if files.is_empty() {
        let lines: Vec<String> = input("path")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let msg = format!(
            "no files were found with the provided path: {}",
            lines.join(", ")
        );
        match missing {
            "error" => return Err(msg),
            "warn" => out(
                Stream::Stderr,
                format!("warning: {msg}; no artifact uploaded"),
            ),
            _ => out(Stream::Stdout, format!("{msg}; no artifact uploaded")),
        }
        return Ok(Done {
            outputs,
            post: None,
        });
    }
    let store = store(ctx)?;
    let existing = store.artifacts(ctx.run_id).map_err(|e| e.to_string())?;
    if let Some(a) = existing.iter().find(|a| a.name == name) {
        if input("overwrite") != "true" {
            return Err(format!(
                "an artifact named `{name}` was already uploaded in this run (by job `{}`); \
                 give another name, or `overwrite: true`",
                a.job
            ));
        }
    }
    let dir = base_dir(base, ctx)?;
    let cas = Cas::new(&ctx.cas_dir);
    let mut manifest = Vec::new();
    let mut bytes = 0;
    for rel in &files {
        let abs = dir.join(rel);
        let meta = std::fs::symlink_metadata(&abs).map_err(|e| format!("{rel}: {e}"))?;
        let hash = cas
            .store(&abs, None)
            .map_err(|e| format!("cannot upload {rel}: {e}"))?;
        let inside = Path::new(rel).strip_prefix(&root).unwrap_or(Path::new(rel));
        bytes += meta.len();
        manifest.push(File {
            path: inside.to_string_lossy().into_owned(),
            hash: hex::encode(hash),
            mode: meta.permissions().mode() & 0o777,
            size: meta.len(),
        });
    }
    let text = serde_json::to_string(&manifest).map_err(|e| e.to_string())?;
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    let created_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    store
        .artifact_put(&crate::state::Artifact {
            run_id: ctx.run_id,
            name: name.clone(),
            job: ctx.job.clone(),
            files: manifest.len() as i64,
            bytes: bytes as i64,
            digest: digest.clone(),
            manifest: text,
            created_at,
        })
        .map_err(|e| e.to_string())?;
    let retention = input("retention-days");
    out(
        Stream::Stdout,
        format!(
            "uploaded artifact {name}: {} files, {}{}{}",
            manifest.len(),
            crate::size::format(bytes),
            if links > 0 {
                format!("; {links} symbolic links not uploaded")
            } else {
                String::new()
            },
            if retention.is_empty() {
                String::new()
            } else {
                format!(" (retention-days {retention}: kept with the run's record)")
            }
        ),
    );
    let id = store
        .artifacts(ctx.run_id)
        .map_err(|e| e.to_string())?
        .iter()
        .position(|a| a.name == name)
        .map_or(0, |i| i + 1);
    outputs.insert("artifact-id".into(), id.to_string());
    outputs.insert("artifact-digest".into(), digest);
    outputs.insert("artifact-url".into(), String::new());
    Ok(Done {
        outputs,
        post: None,
    })
}

pub(super) fn download(
    input: &(dyn Fn(&str) -> String + Sync),
    ctx: &Ctx<'_>,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<Done, String> {
    for other in ["repository", "run-id", "artifact-ids"] {
        let v = input(other);
        if !v.is_empty() {
            return Err(format!(
                "`{other}: {v}`: trun downloads the artifacts of this run only (it does not fetch over the network)"
            ));
        }
    }
    let path = input("path");
    let rel = relative(&path).map_err(|why| format!("`path: {path}` {why}"))?;
    let dest = match &rel {
        Some(r) => ctx.workspace.join(r),
        None => ctx.workspace.clone(),
    };
    let store = store(ctx)?;
    let all = store.artifacts(ctx.run_id).map_err(|e| e.to_string())?;
    let name = input("name");
    let chosen: Vec<(&crate::state::Artifact, PathBuf)> = if !name.is_empty() {
        let Some(a) = all.iter().find(|a| a.name == name) else {
            let names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
            let hint = crate::diag::did_you_mean_suffix(&name, names.iter().copied());
            return Err(format!(
                "no artifact named `{name}` in this run{hint}; {}",
                if names.is_empty() {
                    "no job has uploaded one yet (does this job `needs` the uploading job?)"
                        .to_string()
                } else {
                    format!("uploaded so far: {}", names.join(", "))
                }
            ));
        };
        vec![(a, dest.clone())]
    } else {
        let pattern = input("pattern");
        let matcher = if pattern.is_empty() {
            None
        } else {
            Some(
                globset::Glob::new(&pattern)
                    .map_err(|e| format!("`pattern: {pattern}`: {e}"))?
                    .compile_matcher(),
            )
        };
        let merge = input("merge-multiple") == "true";
        all.iter()
            .filter(|a| matcher.as_ref().is_none_or(|m| m.is_match(&a.name)))
            .map(|a| {
                check_name(&a.name)?;
                Ok((
                    a,
                    if merge {
                        dest.clone()
                    } else {
                        dest.join(&a.name)
                    },
                ))
            })
            .collect::<Result<_, String>>()?
    };
    let cas = Cas::new(&ctx.cas_dir).with_root(&ctx.workspace);
    for (a, into) in &chosen {
        let files: Vec<File> = serde_json::from_str(&a.manifest)
            .map_err(|e| format!("artifact {}: damaged manifest: {e}", a.name))?;
        for f in &files {
            let Ok(Some(rel)) = relative(&f.path) else {
                return Err(format!(
                    "artifact {} holds the path `{}`, which leaves the download directory; refused",
                    a.name, f.path
                ));
            };
            let hash: [u8; 32] = hex::decode(&f.hash)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| format!("artifact {}: damaged manifest", a.name))?;
            match cas.restore(&hash, &into.join(&rel), f.mode & 0o777) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(format!(
                        "artifact {}: the bytes of {} are gone from .trun/cas",
                        a.name, f.path
                    ))
                }
                Err(e) => return Err(format!("cannot download {}: {e}", f.path)),
            }
        }
        out(
            Stream::Stdout,
            format!(
                "downloaded artifact {} ({} files, {}) into {}",
                a.name,
                a.files,
                crate::size::format(a.bytes as u64),
                into.strip_prefix(&ctx.workspace)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        );
    }
    if chosen.is_empty() {
        out(
            Stream::Stdout,
            "no artifacts matched; nothing downloaded".into(),
        );
    }
    let mut outputs = BTreeMap::new();
    outputs.insert("download-path".into(), dest.display().to_string());
    Ok(Done {
        outputs,
        post: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_a_directory_are_refused() {
        for bad in ["../x", "a/b", "a\\b", "..", ".", "", "x:y", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("dist-linux x86_64 (1)").is_ok());
    }
}
