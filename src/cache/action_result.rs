//! The `/ac/` value: Bazel's `ActionResult`, in the JSON form bazel-remote
//! accepts, with trun's additions where the schema has room for them.
//!
//! What trun writes:
//! - `output_files[{path, digest{hash, size_bytes}, is_executable,
//!   node_properties{unix_mode}}]`: the step's `generates` files;
//! - `exit_code` (always 0: only successes are shared);
//! - `stdout_digest`: the step's log as trun records it (stdout and stderr
//!   interleaved; there is no separate `stderr_digest`);
//! - `execution_metadata.worker`: `trun/1 outputs=<hash>/<size>` naming a
//!   blob that holds the step's `$TRUN_OUTPUT` values as a JSON object, and,
//!   when a key is configured, ` hmac-sha256=<hex>`.
//!
//! The signature covers a canonical text built from the parsed values, not
//! the bytes: bazel-remote re-encodes JSON (camelCase names, 64-bit numbers
//! as strings), a WebDAV server keeps the bytes, and both must verify.
//!
//! Everything read back is untrusted: [`ActionResult::parse`] checks every
//! field (digests, sizes, paths) before anything is fetched or written.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The largest `/ac/` value read or written.
pub const MAX_ENTRY_BYTES: u64 = 1 << 20;
/// More output files than this in one entry is not a step's result.
pub const MAX_FILES: usize = 100_000;
const MAX_PATH: usize = 4096;
/// The files of one entry add up to at most this many times the blob limit.
pub const MAX_TOTAL_BLOBS: u64 = 16;
const WORKER_PREFIX: &str = "trun/1";

/// A blob's name and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub hash: [u8; 32],
    pub size: u64,
}

impl Digest {
    pub fn hex(&self) -> String {
        hex::encode(self.hash)
    }
}

/// One output file of a step, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Relative to the workspace, `/`-separated, no `.`/`..`, not under `.trun`.
    pub path: String,
    pub digest: Digest,
    /// Permission bits (`0o777` at most).
    pub mode: u32,
}

/// A checked `/ac/` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    pub files: Vec<OutputFile>,
    pub log: Option<Digest>,
    /// The blob holding the step's outputs (`$TRUN_OUTPUT`) as JSON.
    pub outputs: Digest,
    signature: Option<String>,
}

/// Why an entry was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("not an ActionResult: {0}")]
    Json(String),
    #[error("not written by trun (no `trun/1` worker tag)")]
    NotTrun,
    #[error("exit code {0}: only successes are shared")]
    ExitCode(i64),
    #[error("invalid digest `{0}`")]
    Digest(String),
    #[error("blob of {size} bytes is larger than the limit of {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("unsafe output path {0:?}")]
    Path(String),
    #[error("output path {0:?} is not among the step's `generates`")]
    NotGenerated(String),
    #[error("asks for symbolic links or directories, which trun never shares")]
    Links,
    #[error("too many output files ({0})")]
    TooMany(usize),
    #[error("unsigned, but a remote cache key is configured")]
    Unsigned,
    #[error("bad signature (signed with another key, or changed since)")]
    BadSignature,
}

// ---- wire format ------------------------------------------------------------

#[derive(Serialize, Deserialize, Default)]
struct WireDigest {
    #[serde(default)]
    hash: String,
    #[serde(default, alias = "sizeBytes", deserialize_with = "int64")]
    size_bytes: i64,
}

#[derive(Serialize, Deserialize, Default)]
struct WireNodeProperties {
    #[serde(default, alias = "unixMode", skip_serializing_if = "Option::is_none")]
    unix_mode: Option<u32>,
}

#[derive(Serialize, Deserialize)]
struct WireFile {
    #[serde(default)]
    path: String,
    #[serde(default)]
    digest: WireDigest,
    #[serde(default, alias = "isExecutable")]
    is_executable: bool,
    #[serde(default, alias = "nodeProperties")]
    node_properties: Option<WireNodeProperties>,
}

#[derive(Serialize, Deserialize, Default)]
struct WireMetadata {
    #[serde(default)]
    worker: String,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(default, alias = "outputFiles")]
    output_files: Vec<WireFile>,
    #[serde(default, alias = "exitCode")]
    exit_code: i64,
    #[serde(
        default,
        alias = "stdoutDigest",
        skip_serializing_if = "Option::is_none"
    )]
    stdout_digest: Option<WireDigest>,
    #[serde(default, alias = "executionMetadata")]
    execution_metadata: WireMetadata,
    // What trun never writes; present and non-empty means the entry is not ours.
    #[serde(default, alias = "outputSymlinks", skip_serializing)]
    output_symlinks: Vec<serde_json::Value>,
    #[serde(default, alias = "outputFileSymlinks", skip_serializing)]
    output_file_symlinks: Vec<serde_json::Value>,
    #[serde(default, alias = "outputDirectorySymlinks", skip_serializing)]
    output_directory_symlinks: Vec<serde_json::Value>,
    #[serde(default, alias = "outputDirectories", skip_serializing)]
    output_directories: Vec<serde_json::Value>,
}

/// protojson writes 64-bit integers as strings; a hand-written entry may not.
fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| D::Error::custom("not an int64")),
        serde_json::Value::String(s) => s.parse().map_err(D::Error::custom),
        _ => Err(D::Error::custom("not an int64")),
    }
}

fn digest(w: &WireDigest, max: u64) -> Result<Digest, EntryError> {
    let bytes = hex::decode(&w.hash)
        .ok()
        .filter(|_| w.hash.len() == 64 && !w.hash.bytes().any(|b| b.is_ascii_uppercase()))
        .ok_or_else(|| EntryError::Digest(w.hash.chars().take(80).collect()))?;
    let size = u64::try_from(w.size_bytes).map_err(|_| EntryError::Digest(w.hash.clone()))?;
    if size > max {
        return Err(EntryError::TooLarge { size, max });
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&bytes);
    Ok(Digest { hash, size })
}

fn wire_digest(d: &Digest) -> WireDigest {
    WireDigest {
        hash: d.hex(),
        size_bytes: d.size as i64,
    }
}

/// A path trun may write below the workspace: relative, `/`-separated plain
/// names only, and not into trun's own directory.
pub fn safe_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= MAX_PATH
        && !path.contains('\0')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && path.split('/').next() != Some(".trun")
}

impl ActionResult {
    pub fn new(files: Vec<OutputFile>, log: Option<Digest>, outputs: Digest) -> ActionResult {
        ActionResult {
            files,
            log,
            outputs,
            signature: None,
        }
    }

    /// The text the signature covers: every value that decides what gets
    /// written, with the key it is stored under.
    fn signed_text(&self, key: &str) -> Vec<u8> {
        let mut t = format!("trun.ac.v1\n{key}\n");
        match &self.log {
            Some(d) => t.push_str(&format!("log {} {}\n", d.hex(), d.size)),
            None => t.push_str("log -\n"),
        }
        t.push_str(&format!(
            "outputs {} {}\n",
            self.outputs.hex(),
            self.outputs.size
        ));
        for f in &self.files {
            t.push_str(&format!(
                "file {}:{} {} {} {:o}\n",
                f.path.len(),
                f.path,
                f.digest.hex(),
                f.digest.size,
                f.mode
            ));
        }
        t.into_bytes()
    }

    fn mac(&self, key: &str, secret: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(&self.signed_text(key));
        mac
    }

    /// The JSON stored at `/ac/<key>`, signed with `secret` if given.
    pub fn to_json(&self, key: &str, secret: Option<&[u8]>) -> Vec<u8> {
        let mut worker = format!(
            "{WORKER_PREFIX} outputs={}/{}",
            self.outputs.hex(),
            self.outputs.size
        );
        if let Some(s) = secret {
            let sig = hex::encode(self.mac(key, s).finalize().into_bytes());
            worker.push_str(&format!(" hmac-sha256={sig}"));
        }
        let wire = Wire {
            output_files: self
                .files
                .iter()
                .map(|f| WireFile {
                    path: f.path.clone(),
                    digest: wire_digest(&f.digest),
                    is_executable: f.mode & 0o111 != 0,
                    node_properties: Some(WireNodeProperties {
                        unix_mode: Some(f.mode),
                    }),
                })
                .collect(),
            exit_code: 0,
            stdout_digest: self.log.as_ref().map(wire_digest),
            execution_metadata: WireMetadata { worker },
            output_symlinks: Vec::new(),
            output_file_symlinks: Vec::new(),
            output_directory_symlinks: Vec::new(),
            output_directories: Vec::new(),
        };
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Parses and checks an entry read from `/ac/<key>`: digests well formed,
    /// every blob within `max_blob`, every path safe and accepted by
    /// `generated` (the step's `generates`), and, when `secret` is given, a
    /// valid signature.
    pub fn parse(
        bytes: &[u8],
        key: &str,
        max_blob: u64,
        secret: Option<&[u8]>,
        generated: &dyn Fn(&str) -> bool,
    ) -> Result<ActionResult, EntryError> {
        let wire: Wire =
            serde_json::from_slice(bytes).map_err(|e| EntryError::Json(e.to_string()))?;
        if !(wire.output_symlinks.is_empty()
            && wire.output_file_symlinks.is_empty()
            && wire.output_directory_symlinks.is_empty()
            && wire.output_directories.is_empty())
        {
            return Err(EntryError::Links);
        }
        if wire.exit_code != 0 {
            return Err(EntryError::ExitCode(wire.exit_code));
        }
        let mut words = wire.execution_metadata.worker.split(' ');
        if words.next() != Some(WORKER_PREFIX) {
            return Err(EntryError::NotTrun);
        }
        let mut outputs = None;
        let mut signature = None;
        for w in words {
            if let Some(v) = w.strip_prefix("outputs=") {
                let (h, s) = v.split_once('/').ok_or(EntryError::NotTrun)?;
                let d = WireDigest {
                    hash: h.to_string(),
                    size_bytes: s.parse().map_err(|_| EntryError::NotTrun)?,
                };
                outputs = Some(digest(&d, MAX_ENTRY_BYTES)?);
            } else if let Some(v) = w.strip_prefix("hmac-sha256=") {
                signature = Some(v.to_string());
            }
        }
        let outputs = outputs.ok_or(EntryError::NotTrun)?;
        if wire.output_files.len() > MAX_FILES {
            return Err(EntryError::TooMany(wire.output_files.len()));
        }
        let mut files = Vec::with_capacity(wire.output_files.len());
        let mut seen = std::collections::HashSet::new();
        for f in &wire.output_files {
            if !safe_path(&f.path) || !seen.insert(f.path.as_str()) {
                return Err(EntryError::Path(f.path.chars().take(200).collect()));
            }
            if !generated(&f.path) {
                return Err(EntryError::NotGenerated(f.path.clone()));
            }
            let mode = f
                .node_properties
                .as_ref()
                .and_then(|p| p.unix_mode)
                .map(|m| m & 0o777)
                .unwrap_or(if f.is_executable { 0o755 } else { 0o644 });
            files.push(OutputFile {
                path: f.path.clone(),
                digest: digest(&f.digest, max_blob)?,
                mode,
            });
        }
        // One entry may not fill a disk either.
        let total: u64 = files.iter().map(|f: &OutputFile| f.digest.size).sum();
        let max_total = max_blob.saturating_mul(MAX_TOTAL_BLOBS);
        if total > max_total {
            return Err(EntryError::TooLarge {
                size: total,
                max: max_total,
            });
        }
        let log = match &wire.stdout_digest {
            Some(d) => Some(digest(d, max_blob)?),
            None => None,
        };
        let result = ActionResult {
            files,
            log,
            outputs,
            signature,
        };
        if let Some(secret) = secret {
            let sig = result.signature.as_deref().ok_or(EntryError::Unsigned)?;
            let sig = hex::decode(sig).map_err(|_| EntryError::BadSignature)?;
            result
                .mac(key, secret)
                .verify_slice(&sig)
                .map_err(|_| EntryError::BadSignature)?;
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: u8, size: u64) -> Digest {
        Digest {
            hash: [b; 32],
            size,
        }
    }

    fn sample() -> ActionResult {
        ActionResult::new(
            vec![OutputFile {
                path: "out/app".into(),
                digest: d(1, 10),
                mode: 0o750,
            }],
            Some(d(2, 5)),
            d(3, 2),
        )
    }

    fn any(_: &str) -> bool {
        true
    }

    #[test]
    fn round_trips_signed_and_refuses_another_key() {
        let json = sample().to_json("k", Some(b"secret"));
        let back = ActionResult::parse(&json, "k", 100, Some(b"secret"), &any).unwrap();
        assert_eq!(back.files, sample().files);
        assert_eq!(back.log, sample().log);
        assert_eq!(
            ActionResult::parse(&json, "k", 100, Some(b"other"), &any),
            Err(EntryError::BadSignature)
        );
        // Moved to another key: the signature no longer holds.
        assert_eq!(
            ActionResult::parse(&json, "k2", 100, Some(b"secret"), &any),
            Err(EntryError::BadSignature)
        );
        let unsigned = sample().to_json("k", None);
        assert_eq!(
            ActionResult::parse(&unsigned, "k", 100, Some(b"secret"), &any),
            Err(EntryError::Unsigned)
        );
    }

    #[test]
    fn accepts_protojson_camel_case_with_string_sizes() {
        let h1 = "01".repeat(32);
        let h3 = "03".repeat(32);
        let json = format!(
            r#"{{"outputFiles":[{{"path":"a","digest":{{"hash":"{h1}","sizeBytes":"10"}},"isExecutable":true}}],
               "executionMetadata":{{"worker":"trun/1 outputs={h3}/2"}}}}"#
        );
        let r = ActionResult::parse(json.as_bytes(), "k", 100, None, &any).unwrap();
        assert_eq!(r.files[0].mode, 0o755);
        assert_eq!(r.files[0].digest.size, 10);
    }

    #[test]
    fn refuses_hostile_entries() {
        let h = "01".repeat(32);
        let entry = |path: &str, size: &str| {
            format!(
                r#"{{"output_files":[{{"path":{},"digest":{{"hash":"{h}","size_bytes":{size}}}}}],
                   "execution_metadata":{{"worker":"trun/1 outputs={h}/1"}}}}"#,
                serde_json::Value::String(path.into())
            )
        };
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../x",
            "./a",
            "a//b",
            ".trun/state.db",
            "",
        ] {
            assert!(
                matches!(
                    ActionResult::parse(entry(bad, "1").as_bytes(), "k", 100, None, &any),
                    Err(EntryError::Path(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            ActionResult::parse(
                entry("a", "\"99999999999\"").as_bytes(),
                "k",
                100,
                None,
                &any
            ),
            Err(EntryError::TooLarge {
                size: 99999999999,
                max: 100
            })
        );
        assert!(ActionResult::parse(entry("a", "-1").as_bytes(), "k", 100, None, &any).is_err());
        // Each file within the limit, but too many of them.
        let many: Vec<String> = (0..20)
            .map(|i| format!(r#"{{"path":"f{i}","digest":{{"hash":"{h}","size_bytes":100}}}}"#))
            .collect();
        let many = format!(
            r#"{{"output_files":[{}],"execution_metadata":{{"worker":"trun/1 outputs={h}/1"}}}}"#,
            many.join(",")
        );
        assert_eq!(
            ActionResult::parse(many.as_bytes(), "k", 100, None, &any),
            Err(EntryError::TooLarge {
                size: 2000,
                max: 1600
            })
        );
        assert_eq!(
            ActionResult::parse(entry("src/main.rs", "1").as_bytes(), "k", 100, None, &|p| p
                .starts_with("out/")),
            Err(EntryError::NotGenerated("src/main.rs".into()))
        );
        let links = format!(
            r#"{{"output_symlinks":[{{"path":"a","target":"/etc"}}],"execution_metadata":{{"worker":"trun/1 outputs={h}/1"}}}}"#
        );
        assert_eq!(
            ActionResult::parse(links.as_bytes(), "k", 100, None, &any),
            Err(EntryError::Links)
        );
        assert_eq!(
            ActionResult::parse(br#"{"exit_code":0}"#, "k", 100, None, &any),
            Err(EntryError::NotTrun)
        );
    }
}
