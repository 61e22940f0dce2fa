//! The content-addressed store of step outputs under `.trun/cas/`.
//!
//! An object is a file's bytes, named by their sha256 and sharded as `ab/cd/<rest>`.
//! Objects are written to a temporary file and renamed into place, so a reader never
//! sees half an object; an object that already exists is not written again. Restoring
//! copies (never hard-links: a build that rewrites its output in place would corrupt
//! the store) and re-verifies the hash while copying.
//!
//! Permissions: the store directory is private (0700, created so), and an object
//! keeps the read bits of the file it came from (a 0600 secret is stored 0400,
//! never world-readable); restoring writes the recorded mode back. Restoring
//! never writes through a symbolic link nor outside the workspace: every
//! directory between the workspace root and the target is checked, and the
//! file is renamed into place (a rename replaces a link, it does not follow it).
//!
//! This module stores and fetches bytes. Which step produced which object, and when an
//! object may be deleted, is recorded in the database by the `UpToDate` facade.

use super::fingerprint::ContentHash;
use super::UpToDateError;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const TEMP_PREFIX: &str = ".tmp-";

/// A file found in the store directory; `hash` is `None` for anything that is not an
/// object (a temporary file, a stray file).
struct StoredFile {
    path: PathBuf,
    hash: Option<ContentHash>,
    size: u64,
    modified: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Cas {
    dir: PathBuf,
    /// The workspace restores must stay inside (see [`Cas::with_root`]).
    root: Option<PathBuf>,
}

/// The object's permission bits for a file of mode `mode`: only its read bits,
/// so an object is never writable and never more readable than its source.
fn object_mode(mode: u32) -> u32 {
    mode & 0o444 | 0o400
}

/// Opens a regular file for reading, following links; a FIFO or device is
/// refused without blocking.
fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if f.metadata()?.is_file() {
        Ok(f)
    } else {
        Err(std::io::Error::other("not a regular file"))
    }
}

/// Opens an object for reading: not through a symlink, and only a regular file
/// (a FIFO planted in the store must not block trun).
fn open_object(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            // A link where an object should be is no object.
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(std::io::ErrorKind::NotFound, "a symbolic link")
            } else {
                e
            }
        })?;
    if f.metadata()?.is_file() {
        Ok(f)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "not a regular file",
        ))
    }
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> UpToDateError + 'a {
    move |source| UpToDateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Copies `from` into `to`, returning the sha256 of the bytes copied.
fn copy_hashing(
    from: &mut impl Read,
    to: &mut impl Write,
    from_path: &Path,
    to_path: &Path,
) -> Result<ContentHash, UpToDateError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).map_err(io_err("read", from_path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(io_err("write", to_path))?;
    }
    Ok(hasher.finalize().into())
}

impl Cas {
    /// The store at `dir`. When `dir` is a workspace's `<root>/.trun/cas`,
    /// restores are confined to `<root>` (as with [`Cas::with_root`]).
    pub fn new(dir: &Path) -> Cas {
        let root = (dir.file_name() == Some("cas".as_ref()))
            .then(|| dir.parent())
            .flatten()
            .filter(|t| t.file_name() == Some(".trun".as_ref()))
            .and_then(Path::parent)
            .map(Path::to_path_buf);
        Cas {
            dir: dir.to_path_buf(),
            root,
        }
    }

    /// Confines restores to the workspace `root`: a target outside it, or one
    /// reached through a symbolic link below it, is refused.
    pub fn with_root(mut self, root: &Path) -> Cas {
        self.root = Some(root.to_path_buf());
        self
    }

    pub fn object_path(&self, hash: &ContentHash) -> PathBuf {
        let hex = hex::encode(hash);
        self.dir.join(&hex[..2]).join(&hex[2..4]).join(&hex[4..])
    }

    pub fn contains(&self, hash: &ContentHash) -> bool {
        std::fs::symlink_metadata(self.object_path(hash)).is_ok_and(|m| m.is_file())
    }

    fn private_dir(&self, dir: &Path) -> Result<(), UpToDateError> {
        crate::fsutil::private_dir(dir).map_err(io_err("create directory", dir))
    }

    /// Stores the file at `src` and returns the hash of what was stored. `expected` is
    /// the hash the caller believes the file has: when that object already exists the
    /// file is not read at all.
    pub fn store(
        &self,
        src: &Path,
        expected: Option<ContentHash>,
    ) -> Result<ContentHash, UpToDateError> {
        // A generated file may be a link to the real one (`lib.so -> lib.so.1`):
        // its content is what is stored. Only a regular file is read, though.
        let mut file = open_regular(src).map_err(io_err("read", src))?;
        let mode = object_mode(
            file.metadata()
                .map_err(io_err("read", src))?
                .permissions()
                .mode(),
        );
        if let Some(h) = expected {
            if self.contains(&h) {
                self.tighten(&self.object_path(&h), mode)?;
                return Ok(h);
            }
        }
        if let Some(trun) = self
            .dir
            .parent()
            .filter(|p| p.file_name() == Some(".trun".as_ref()))
        {
            self.private_dir(trun)?;
        }
        self.private_dir(&self.dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(&self.dir)
            .map_err(io_err("create a temporary file in", &self.dir))?;
        let tmp_path = tmp.path().to_path_buf();
        // The name comes from the bytes actually copied, so an object's name always
        // matches its content even if the file changed since it was hashed.
        let hash = copy_hashing(&mut file, tmp.as_file_mut(), src, &tmp_path)?;
        let dest = self.object_path(&hash);
        if self.contains(&hash) {
            self.tighten(&dest, mode)?;
            return Ok(hash);
        }
        let shard = dest.parent().unwrap_or(&self.dir);
        crate::fsutil::create_dir_under(&self.dir, shard)
            .map_err(io_err("create directory", shard))?;
        std::fs::set_permissions(&tmp_path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", &tmp_path))?;
        tmp.persist(&dest).map_err(|e| UpToDateError::Io {
            op: "rename into",
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(hash)
    }

    /// An object shared by files of different modes is as private as the most
    /// private of them.
    fn tighten(&self, object: &Path, mode: u32) -> Result<(), UpToDateError> {
        let Ok(m) = std::fs::symlink_metadata(object) else {
            return Ok(());
        };
        let now = m.permissions().mode() & 0o7777;
        if now & !mode != 0 {
            std::fs::set_permissions(object, std::fs::Permissions::from_mode(now & mode))
                .map_err(io_err("chmod", object))?;
        }
        Ok(())
    }

    /// Writes object `hash` to `target` with permission bits `mode`, atomically.
    /// `Ok(false)` when the object is missing or its bytes no longer match its name
    /// (the damaged object is removed so the next success stores it again).
    pub fn restore(
        &self,
        hash: &ContentHash,
        target: &Path,
        mode: u32,
    ) -> Result<bool, UpToDateError> {
        let object = self.object_path(hash);
        let mut src = match open_object(&object) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("read", &object)(e)),
        };
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match &self.root {
            // Every directory from the workspace root down is opened without
            // following links (and created if missing): a planted `out -> /etc`
            // or a `../` path is refused, not written through.
            Some(root) => crate::fsutil::open_dir_under(root, &parent, 0o755)
                .map(drop)
                .map_err(|source| UpToDateError::Io {
                    op: "restore into",
                    path: target.to_path_buf(),
                    source,
                })?,
            None => {
                std::fs::create_dir_all(&parent).map_err(io_err("create directory", &parent))?
            }
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(&parent)
            .map_err(io_err("create a temporary file in", &parent))?;
        let tmp_path = tmp.path().to_path_buf();
        let got = copy_hashing(&mut src, tmp.as_file_mut(), &object, &tmp_path)?;
        if got != *hash {
            let _ = std::fs::remove_file(&object);
            return Ok(false);
        }
        std::fs::set_permissions(&tmp_path, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(io_err("chmod", &tmp_path))?;
        tmp.persist(target).map_err(|e| UpToDateError::Io {
            op: "rename into",
            path: target.to_path_buf(),
            source: e.error,
        })?;
        Ok(true)
    }

    /// Every object file: (path, hash if the name is a valid object name, size, mtime).
    fn objects(&self) -> Result<Vec<StoredFile>, UpToDateError> {
        let mut out = Vec::new();
        let read = |dir: &Path| -> Result<Vec<std::fs::DirEntry>, UpToDateError> {
            match std::fs::read_dir(dir) {
                Ok(it) => it.collect::<Result<_, _>>().map_err(io_err("list", dir)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(io_err("list", dir)(e)),
            }
        };
        let mut stack = vec![(self.dir.clone(), String::new(), 0)];
        while let Some((dir, prefix, depth)) = stack.pop() {
            for entry in read(&dir)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    if depth < 2 {
                        stack.push((path, format!("{prefix}{name}"), depth + 1));
                    }
                    continue;
                }
                let hash = (depth == 2)
                    .then(|| hex::decode(format!("{prefix}{name}")).ok())
                    .flatten()
                    .and_then(|b| <ContentHash>::try_from(b.as_slice()).ok());
                out.push(StoredFile {
                    path,
                    hash,
                    size: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(out)
    }

    /// (objects, bytes) currently stored.
    pub fn usage(&self) -> Result<(usize, u64), UpToDateError> {
        let objects = self.objects()?;
        Ok((
            objects.iter().filter(|o| o.hash.is_some()).count(),
            objects
                .iter()
                .filter(|o| o.hash.is_some())
                .map(|o| o.size)
                .sum(),
        ))
    }

    /// Deletes objects not in `keep`, and temporary files left by a crash (only those
    /// older than an hour: a younger one may belong to a process writing right now).
    /// Returns (objects removed, bytes freed).
    pub fn collect_garbage(
        &self,
        keep: &HashSet<ContentHash>,
    ) -> Result<(usize, u64), UpToDateError> {
        let stale_before = SystemTime::now() - Duration::from_secs(3600);
        let (mut removed, mut bytes) = (0, 0);
        for StoredFile {
            path,
            hash,
            size,
            modified,
        } in self.objects()?
        {
            let delete = match hash {
                Some(h) => !keep.contains(&h),
                None => {
                    let temp = path
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(TEMP_PREFIX));
                    temp && modified < stale_before
                }
            };
            if delete {
                std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
                if hash.is_some() {
                    removed += 1;
                    bytes += size;
                }
            }
        }
        Ok((removed, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn store_is_sharded_deduplicated_and_restore_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(&dir.path().join("cas"));
        let src = dir.path().join("app");
        fs::write(&src, b"binary").unwrap();
        let h = cas.store(&src, None).unwrap();
        assert_eq!(h, <[u8; 32]>::from(Sha256::digest(b"binary")));
        let hex = hex::encode(h);
        let obj = dir
            .path()
            .join("cas")
            .join(&hex[..2])
            .join(&hex[2..4])
            .join(&hex[4..]);
        assert_eq!(fs::read(&obj).unwrap(), b"binary");
        // A second store of the same bytes under another name adds nothing.
        let copy = dir.path().join("copy");
        fs::write(&copy, b"binary").unwrap();
        assert_eq!(cas.store(&copy, Some(h)).unwrap(), h);
        assert_eq!(cas.usage().unwrap(), (1, 6));

        let target = dir.path().join("out/bin/app");
        assert!(cas.restore(&h, &target, 0o755).unwrap());
        assert_eq!(fs::read(&target).unwrap(), b"binary");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(
            !cas.restore(&[0; 32], &target, 0o644).unwrap(),
            "missing object"
        );
    }

    #[test]
    fn a_private_file_stays_private_in_the_store_and_when_restored() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(&dir.path().join(".trun/cas"));
        let src = dir.path().join("secret");
        fs::write(&src, b"token").unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o600)).unwrap();
        let h = cas.store(&src, None).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cas.object_path(&h)), 0o400);
        assert_eq!(mode(&dir.path().join(".trun/cas")), 0o700);
        assert_eq!(mode(&dir.path().join(".trun")), 0o700);
        // The same bytes from a world-readable file do not loosen the object.
        let open = dir.path().join("open");
        fs::write(&open, b"token").unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
        cas.store(&open, Some(h)).unwrap();
        assert_eq!(mode(&cas.object_path(&h)), 0o400);
        fs::remove_file(&src).unwrap();
        assert!(cas.restore(&h, &src, 0o600).unwrap());
        assert_eq!(mode(&src), 0o600);
    }

    #[test]
    fn restore_never_writes_through_a_link_or_outside_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir_all(&ws).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        let cas = Cas::new(&ws.join(".trun/cas"));
        let src = ws.join("a");
        fs::write(&src, b"cached").unwrap();
        let h = cas.store(&src, None).unwrap();
        std::os::unix::fs::symlink(&elsewhere, ws.join("out")).unwrap();
        let err = cas.restore(&h, &ws.join("out/app"), 0o644).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert!(fs::read_dir(&elsewhere).unwrap().next().is_none());
        fs::write(elsewhere.join("x"), b"user edit").unwrap();
        assert!(cas.restore(&h, &ws.join("../elsewhere/x"), 0o644).is_err());
        assert_eq!(fs::read(elsewhere.join("x")).unwrap(), b"user edit");
        // A link at the file's own place is replaced, its target untouched.
        std::os::unix::fs::symlink(elsewhere.join("x"), ws.join("b")).unwrap();
        assert!(cas.restore(&h, &ws.join("b"), 0o644).unwrap());
        assert_eq!(fs::read(elsewhere.join("x")).unwrap(), b"user edit");
        assert_eq!(fs::read(ws.join("b")).unwrap(), b"cached");
    }

    #[test]
    fn a_fifo_or_link_planted_as_an_object_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(&dir.path().join(".trun/cas"));
        let src = dir.path().join("a");
        fs::write(&src, b"data").unwrap();
        let h = cas.store(&src, None).unwrap();
        let obj = cas.object_path(&h);
        fs::remove_file(&obj).unwrap();
        nix::unistd::mkfifo(&obj, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(!cas.contains(&h));
        // Would block forever on a FIFO if it were opened for reading.
        assert!(!cas.restore(&h, &dir.path().join("r"), 0o644).unwrap());
        fs::remove_file(&obj).unwrap();
        std::os::unix::fs::symlink(&src, &obj).unwrap();
        assert!(!cas.contains(&h));
        assert!(!cas.restore(&h, &dir.path().join("r"), 0o644).unwrap());
    }

    #[test]
    fn a_generated_link_is_stored_by_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(&dir.path().join(".trun/cas"));
        fs::write(dir.path().join("lib.so.1"), b"elf").unwrap();
        std::os::unix::fs::symlink("lib.so.1", dir.path().join("lib.so")).unwrap();
        let h = cas.store(&dir.path().join("lib.so"), None).unwrap();
        assert_eq!(fs::read(cas.object_path(&h)).unwrap(), b"elf");
    }

    #[test]
    fn a_failed_write_is_an_error_not_silence() {
        let dir = tempfile::tempdir().unwrap();
        // The store's directory cannot be created: a file is in the way.
        fs::write(dir.path().join("cas"), b"").unwrap();
        let cas = Cas::new(&dir.path().join("cas"));
        let src = dir.path().join("a");
        fs::write(&src, b"x").unwrap();
        assert!(cas.store(&src, None).is_err());
    }

    #[test]
    fn a_damaged_object_is_not_restored_and_garbage_is_collected() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(&dir.path().join("cas"));
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, b"aaa").unwrap();
        fs::write(&b, b"bbbb").unwrap();
        let ha = cas.store(&a, None).unwrap();
        let hb = cas.store(&b, None).unwrap();
        let obj = cas.object_path(&ha);
        fs::set_permissions(&obj, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&obj, b"xxx").unwrap();
        assert!(!cas.restore(&ha, &dir.path().join("r"), 0o644).unwrap());
        assert!(!obj.exists(), "the damaged object is dropped");
        assert!(!dir.path().join("r").exists());

        assert_eq!(cas.collect_garbage(&HashSet::from([hb])).unwrap(), (0, 0));
        assert_eq!(cas.collect_garbage(&HashSet::new()).unwrap(), (1, 4));
        assert_eq!(cas.usage().unwrap(), (0, 0));
    }
}
