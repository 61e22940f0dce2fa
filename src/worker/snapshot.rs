//! Workspaces that move by content: a [`Manifest`] lists files (path, sha256,
//! size, mode); the bytes are blobs in the remote cache (`/cas/<sha256>`) and
//! the manifest is a blob too, so one digest names a whole tree. The
//! coordinator uploads the workspace (respecting `.gitignore`); a worker
//! materialises it in its own work dir, adds the files jobs it depends on
//! produced, and after its job uploads what the job wrote.
//!
//! Manifests come from other machines: every path is checked
//! ([`safe_path`]), files are created below the target directory without
//! following a link, and every blob is verified by its digest as it is
//! fetched. Symbolic links and empty directories are not carried.

use crate::cache::action_result::{safe_path, Digest};
use crate::cache::client::{Client, Fetched};
use crate::uptodate::statcache::hash_file;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// One file of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative, `/`-separated.
    pub path: String,
    /// sha256, lowercase hex.
    pub hash: String,
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
}

impl Entry {
    fn digest(&self) -> Result<Digest, String> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&self.hash, &mut hash)
            .map_err(|_| format!("{}: {:?} is not a sha256", self.path, self.hash))?;
        Ok(Digest {
            hash,
            size: self.size,
        })
    }
}

/// A tree of files, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<Entry>,
}

/// Which files of a directory a manifest takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// What `git add` would: `.gitignore` (and `.ignore`) respected.
    Source,
    /// Every file: what a job wrote is often ignored (`target/`, `dist/`).
    Everything,
}

impl Manifest {
    /// The regular files below `root` (never `.trun/` nor `.git/`; links
    /// are not followed).
    pub fn of_dir(root: &Path, walk: Walk) -> Result<Manifest, String> {
        let mut b = ignore::WalkBuilder::new(root);
        b.hidden(false).follow_links(false).require_git(false);
        if walk == Walk::Everything {
            b.standard_filters(false);
        }
        b.filter_entry(|e| {
            e.depth() != 1 || !matches!(e.file_name().to_str(), Some(".trun") | Some(".git"))
        });
        let mut files = Vec::new();
        for entry in b.build() {
            let entry = entry.map_err(|e| e.to_string())?;
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let rel = entry.path().strip_prefix(root).map_err(|e| e.to_string())?;
            let Some(path) = rel.to_str().map(str::to_string) else {
                return Err(format!("{}: the name is not UTF-8", rel.display()));
            };
            if !safe_path(&path) {
                continue;
            }
            let meta = entry.metadata().map_err(|e| e.to_string())?;
            let hash = hash_file(entry.path()).map_err(|e| e.to_string())?;
            files.push(Entry {
                path,
                hash: hex::encode(hash),
                size: meta.len(),
                mode: meta.permissions().mode() & 0o777,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Manifest { files })
    }

    /// The files of `self` that are not in `before` with the same content
    /// and mode: what a job wrote.
    pub fn changed_since(&self, before: &Manifest) -> Manifest {
        let old: BTreeMap<&str, &Entry> =
            before.files.iter().map(|e| (e.path.as_str(), e)).collect();
        Manifest {
            files: self
                .files
                .iter()
                .filter(|e| old.get(e.path.as_str()) != Some(e))
                .cloned()
                .collect(),
        }
    }

    /// `other`'s files over `self`'s (same path: `other` wins).
    pub fn overlay(&mut self, other: &Manifest) {
        let mut all: BTreeMap<String, Entry> = std::mem::take(&mut self.files)
            .into_iter()
            .map(|e| (e.path.clone(), e))
            .collect();
        for e in &other.files {
            all.insert(e.path.clone(), e.clone());
        }
        self.files = all.into_values().collect();
    }

    fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Uploads every file of the manifest (read from `root`) that the cache
    /// lacks, then the manifest itself; returns the manifest's digest.
    pub fn upload(&self, client: &Client, root: &Path) -> Result<Digest, String> {
        for e in &self.files {
            let d = e.digest()?;
            if !client.has_blob(&d).map_err(|e| e.to_string())? {
                client
                    .put_blob(&d, &root.join(&e.path))
                    .map_err(|e| e.to_string())?;
            }
        }
        let bytes = self.bytes();
        let d = digest_of(&bytes);
        client
            .put_blob_bytes(&d, bytes)
            .map_err(|e| e.to_string())?;
        Ok(d)
    }

    /// Fetches the manifest named by `d` and checks every path in it.
    pub fn fetch(client: &Client, d: &Digest) -> Result<Manifest, String> {
        let bytes = client
            .get_blob_bytes(d)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "manifest {} is missing from the cache or corrupted",
                    d.hex()
                )
            })?;
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| format!("manifest {}: {e}", d.hex()))?;
        for e in &m.files {
            if !safe_path(&e.path) {
                return Err(format!("manifest {}: refused path {:?}", d.hex(), e.path));
            }
            e.digest()?;
        }
        Ok(m)
    }

    /// Writes every file below `root` (created if missing), fetched from the
    /// cache and checked against its digest. A link planted on the way is
    /// refused, never followed.
    pub fn materialise(&self, client: &Client, root: &Path) -> Result<(), String> {
        std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
        for e in &self.files {
            if !safe_path(&e.path) {
                return Err(format!("refused path {:?}", e.path));
            }
            let path = root.join(&e.path);
            let mut file = crate::fsutil::safe_create(root, &path).map_err(|e| e.to_string())?;
            match client.get_blob(&e.digest()?, &mut file) {
                Ok(Fetched::Ok) => {}
                Ok(Fetched::Missing) => {
                    return Err(format!(
                        "{}: blob {} missing from the cache",
                        e.path, e.hash
                    ))
                }
                Ok(Fetched::Corrupt) => {
                    return Err(format!(
                        "{}: blob {} corrupted in the cache",
                        e.path, e.hash
                    ))
                }
                Err(err) => return Err(format!("{}: {err}", e.path)),
            }
            file.set_permissions(std::fs::Permissions::from_mode(e.mode & 0o777))
                .map_err(|err| format!("{}: {err}", e.path))?;
        }
        Ok(())
    }
}

/// sha256 and size of bytes in memory.
pub fn digest_of(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    Digest {
        hash: sha2::Sha256::digest(bytes).into(),
        size: bytes.len() as u64,
    }
}

/// `hash/size`: how a digest travels in a payload.
pub fn digest_text(d: &Digest) -> String {
    format!("{}/{}", d.hex(), d.size)
}

/// The digest [`digest_text`] wrote.
pub fn parse_digest(text: &str) -> Result<Digest, String> {
    let (h, s) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not HASH/SIZE"))?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(h, &mut hash).map_err(|_| format!("{text:?} is not HASH/SIZE"))?;
    let size = s
        .parse()
        .map_err(|_| format!("{text:?} is not HASH/SIZE"))?;
    Ok(Digest { hash, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_respects_gitignore_and_skips_trun() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".gitignore"), "out/\n").unwrap();
        std::fs::create_dir_all(d.path().join("out")).unwrap();
        std::fs::create_dir_all(d.path().join(".trun")).unwrap();
        std::fs::create_dir_all(d.path().join("src")).unwrap();
        std::fs::write(d.path().join("out/x"), "x").unwrap();
        std::fs::write(d.path().join(".trun/state.db"), "db").unwrap();
        std::fs::write(d.path().join("src/a.txt"), "a").unwrap();
        let src = Manifest::of_dir(d.path(), Walk::Source).unwrap();
        let paths: Vec<&str> = src.files.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, [".gitignore", "src/a.txt"]);
        let all = Manifest::of_dir(d.path(), Walk::Everything).unwrap();
        let changed = all.changed_since(&src);
        let paths: Vec<&str> = changed.files.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["out/x"]);
    }

    /// A manifest from another machine naming a path out of the work dir,
    /// or through a link planted in it, writes nothing outside: each is
    /// refused before anything is fetched (the cache here is unreachable).
    #[test]
    fn a_hostile_manifest_writes_nothing_outside_the_work_dir() {
        let outside = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), work.path().join("link")).unwrap();
        let client = Client::new(
            "http://127.0.0.1:1/",
            None,
            std::time::Duration::from_secs(1),
        );
        let d = digest_of(b"pwned");
        for path in [
            "../escaped",
            "/tmp/escaped",
            "link/escaped",
            "a/../../escaped",
            "$(touch pwned)/'x\"",
        ] {
            let m = Manifest {
                files: vec![Entry {
                    path: path.to_string(),
                    hash: d.hex(),
                    size: d.size,
                    mode: 0o644,
                }],
            };
            let err = m.materialise(&client, work.path()).unwrap_err();
            assert!(!err.is_empty(), "{path}");
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(!work.path().parent().unwrap().join("escaped").exists());
        assert!(!work.path().join("pwned").exists());
    }

    #[test]
    fn digests_travel_as_text() {
        let d = digest_of(b"abc");
        assert_eq!(parse_digest(&digest_text(&d)).unwrap(), d);
        assert!(parse_digest("zz/1").is_err());
    }
}
