//! Creating trun's own files and directories in a workspace that may be hostile.
//!
//! A workspace is written by people and programs trun does not trust (a student
//! repository, a step of an earlier run). A symlink planted at `.trun/lock`,
//! `.trun/logs/7` or `out/` would make an ordinary `open(O_CREAT|O_TRUNC)` write
//! wherever it points. The functions here walk a path one component at a time
//! from a directory trun trusts (`base`), opening each directory with
//! `O_NOFOLLOW | O_DIRECTORY` relative to the previous one (`openat`), so no
//! component can be swapped for a symlink between the check and the use, and
//! open the final file with `O_NOFOLLOW`.
//!
//! This module does not decide *where* trun writes (that is the caller's), and
//! it does not sandbox steps: a step can still write anywhere its user can.

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode};
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Mode of the directories trun creates inside `.trun/`: only the owner may look.
pub const PRIVATE_DIR: u32 = 0o700;

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::other(format!("{} {why}", path.display()))
}

fn symlink_error(path: &Path) -> io::Error {
    let target = std::fs::read_link(path)
        .map(|t| format!(" (to {})", t.display()))
        .unwrap_or_default();
    refused(
        path,
        &format!(
            "is a symbolic link{target}; trun does not write through links it did not create: \
             remove the link"
        ),
    )
}

/// Fails when `path` itself is a symbolic link; a missing path is fine.
pub fn refuse_symlink(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(symlink_error(path)),
        _ => Ok(()),
    }
}

/// Makes `path` a private directory (mode 0700) that is not a symbolic link:
/// creates it (and missing parents) if needed, tightens the mode of an existing
/// one we own. Used for `.trun` and `.trun/cas`, whose contents (build outputs,
/// logs, the state database) may hold secrets.
pub fn private_dir(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(symlink_error(path)),
        Ok(m) if m.is_dir() => {
            if m.permissions().mode() & 0o077 != 0 {
                // Not ours to tighten (another user's checkout): leave it.
                let _ =
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_DIR));
            }
            Ok(())
        }
        Ok(_) => Err(refused(path, "is not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR)
            .create(path)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
            }),
        Err(e) => Err(e),
    }
}

/// The components of `path` below `base`, refusing `..` and paths outside `base`.
fn relative_parts(base: &Path, path: &Path) -> io::Result<Vec<PathBuf>> {
    let rel = path
        .strip_prefix(base)
        .map_err(|_| refused(path, &format!("is not inside {}", base.display())))?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => parts.push(PathBuf::from(n)),
            Component::CurDir => {}
            _ => return Err(refused(path, "leaves its directory (`..`)")),
        }
    }
    Ok(parts)
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn to_io(p: &Path) -> impl FnOnce(nix::errno::Errno) -> io::Error + '_ {
    move |e| {
        if e == nix::errno::Errno::ELOOP || e == nix::errno::Errno::ENOTDIR {
            if let Ok(m) = std::fs::symlink_metadata(p) {
                if m.file_type().is_symlink() {
                    return symlink_error(p);
                }
            }
        }
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("cannot open {}: {e}", p.display()))
    }
}

/// Opens directory `dir`, which must be `base` or below it, creating missing
/// directories with `mode`. Nothing between `base` and `dir` may be a symbolic
/// link (`base` itself may be: it is the trusted starting point).
pub fn open_dir_under(base: &Path, dir: &Path, mode: u32) -> io::Result<OwnedFd> {
    let parts = relative_parts(base, dir)?;
    // `base` itself is trusted (the workspace the user chose may well be
    // reached through a link, e.g. `~/ws -> /data/ws`): follow it; only what
    // lies below it is opened without following links.
    let mut fd = openat(
        nix::fcntl::AT_FDCWD,
        base,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(to_io(base))?;
    let mut at = base.to_path_buf();
    for part in parts {
        at.push(&part);
        match openat(&fd, part.as_path(), dir_flags(), Mode::empty()) {
            Ok(next) => fd = next,
            Err(nix::errno::Errno::ENOENT) => {
                match mkdirat(&fd, part.as_path(), Mode::from_bits_truncate(mode)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(to_io(&at)(e)),
                }
                fd = openat(&fd, part.as_path(), dir_flags(), Mode::empty()).map_err(to_io(&at))?;
            }
            Err(e) => return Err(to_io(&at)(e)),
        }
    }
    Ok(fd)
}

/// Creates directory `dir` below `base` (see [`open_dir_under`]).
pub fn create_dir_under(base: &Path, dir: &Path) -> io::Result<()> {
    open_dir_under(base, dir, PRIVATE_DIR).map(drop)
}

/// Makes `dir` (below `base`) a new, empty, real directory: whatever is at
/// its place is removed first (a planted link is removed, not followed;
/// `remove_dir_all` never follows links). For per-run directories such as
/// `.trun/logs/<run>`, which cannot legitimately exist before the run.
pub fn fresh_dir_under(base: &Path, dir: &Path) -> io::Result<()> {
    relative_parts(base, dir)?;
    if let Some(parent) = dir.parent() {
        open_dir_under(base, parent, PRIVATE_DIR)?;
    }
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(dir)?,
        Ok(_) => std::fs::remove_file(dir)?,
        Err(_) => {}
    }
    create_dir_under(base, dir)
}

/// Creates (or truncates) the file `path` for writing, where `path` lies below
/// the trusted directory `base`: missing directories in between are created
/// (mode 0700), and no component below `base`, the file included, may be a
/// symbolic link. A symlink planted at the file's place is refused, never
/// followed, so its target is left untouched.
///
/// For the step logs `exec` writes under `.trun/logs/<run>/`: call
/// `safe_create(&log_dir, &log_path)` instead of `File::create(&log_path)`.
pub fn safe_create(base: &Path, path: &Path) -> io::Result<File> {
    let parent = path.parent().unwrap_or(base);
    let name = path
        .file_name()
        .ok_or_else(|| refused(path, "names no file"))?;
    let dir = open_dir_under(base, parent, PRIVATE_DIR)?;
    let flags = OFlag::O_WRONLY
        | OFlag::O_CREAT
        | OFlag::O_TRUNC
        | OFlag::O_NOFOLLOW
        | OFlag::O_CLOEXEC
        | OFlag::O_NOCTTY;
    match openat(
        &dir,
        Path::new(name),
        flags,
        Mode::from_bits_truncate(0o644),
    ) {
        Ok(fd) => Ok(File::from(fd)),
        Err(nix::errno::Errno::ELOOP) => Err(symlink_error(path)),
        Err(e) => {
            let e = io::Error::from(e);
            Err(io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", path.display()),
            ))
        }
    }
}

/// Opens `path` for reading and writing, creating it if missing and never
/// truncating it, refusing a symbolic link at its place (`O_NOFOLLOW`).
pub fn open_rw_nofollow(path: &Path, mode: u32) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                symlink_error(path)
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    Ok(file)
}

/// Whether `path` is `base` or lies below it with no symbolic link (nor `..`)
/// on the way. Components that do not exist yet count as safe: they will be
/// created as real directories.
pub fn no_symlink_below(base: &Path, path: &Path) -> io::Result<()> {
    no_symlink_below_memo(base, path, &mut HashSet::new())
}

/// [`no_symlink_below`] for many paths at one moment: `clean` holds the
/// directories found to be no link so far, and is not asked about again
/// (a plan of a hundred steps naming `src/dNN` looks at `src` once).
pub fn no_symlink_below_memo(
    base: &Path,
    path: &Path,
    clean: &mut HashSet<PathBuf>,
) -> io::Result<()> {
    let parts = relative_parts(base, path)?;
    let mut at = base.to_path_buf();
    for part in parts {
        at.push(part);
        if clean.contains(&at) {
            continue;
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Err(symlink_error(&at)),
            Ok(m) if m.is_dir() => {
                clean.insert(at.clone());
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::symlink;

    #[test]
    fn the_memo_skips_directories_already_seen_but_never_a_link_below_them() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir_all(base.join("src/a")).unwrap();
        symlink("/", base.join("src/out")).unwrap();
        let mut clean = HashSet::new();
        no_symlink_below_memo(base, &base.join("src/a"), &mut clean).unwrap();
        assert_eq!(clean, HashSet::from([base.join("src"), base.join("src/a")]));
        let err = no_symlink_below_memo(base, &base.join("src/out/etc"), &mut clean).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert!(!clean.contains(&base.join("src/out")));
    }

    #[test]
    fn safe_create_refuses_a_planted_file_link_and_leaves_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("logs");
        std::fs::create_dir(&base).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        symlink(&victim, base.join("step.log")).unwrap();
        let err = safe_create(&base, &base.join("step.log")).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn safe_create_refuses_a_planted_directory_link() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("logs");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        symlink(&elsewhere, base.join("7")).unwrap();
        let err = safe_create(&base, &base.join("7/job/step.log")).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
        // A real path works, creating the directories.
        let mut f = safe_create(&base, &base.join("8/job/step.log")).unwrap();
        f.write_all(b"ok").unwrap();
        assert_eq!(
            std::fs::read_to_string(base.join("8/job/step.log")).unwrap(),
            "ok"
        );
        assert!(safe_create(&base, &base.join("../x")).is_err());
    }

    #[test]
    fn a_base_reached_through_a_link_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        symlink(dir.path().join("real"), dir.path().join("ws")).unwrap();
        let base = dir.path().join("ws");
        safe_create(&base, &base.join("a/b.log")).unwrap();
        assert!(dir.path().join("real/a/b.log").is_file());
    }

    #[test]
    fn private_dir_refuses_a_link_and_is_0700() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".trun");
        private_dir(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let link = dir.path().join("other");
        symlink(&p, &link).unwrap();
        assert!(private_dir(&link).is_err());
    }
}
