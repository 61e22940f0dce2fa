//! Fingerprints: the one hash that says "these are the inputs this step ran with".
//!
//! This module turns a step's resolved definition, its matched source files (path and
//! content hash) and its upstream fingerprints into a [`Fingerprint`], and diffs two
//! recorded source lists to name the files that changed. It is pure computation: it
//! does not walk the file system, read files or touch the database (see `walk`,
//! `statcache` and the `UpToDate` facade for that).

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;

/// A sha256 content hash of one file.
pub type ContentHash = [u8; 32];

/// The identity of a step's inputs: definition, source contents and upstream fingerprints.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for people (the way git abbreviates commits).
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// Writes `value` as JSON with object keys sorted, whatever map type serde_json was
/// built with: another crate in the tree may enable `preserve_order`, and a
/// definition written with keys in another order must hash the same.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The hash of a resolved definition; equal definitions (up to key order) hash equal.
pub fn definition_hash(definition: &serde_json::Value) -> ContentHash {
    Sha256::digest(canonical_json(definition).as_bytes()).into()
}

/// Combines the inputs of a step. Every variable-length part is length-prefixed so
/// that no two different input lists can produce the same byte stream.
pub fn compute(
    definition_hash: &ContentHash,
    files: &[(String, ContentHash)],
    upstream: &[Fingerprint],
) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(b"trun.fingerprint.v1\0");
    h.update(definition_hash);
    h.update((files.len() as u64).to_le_bytes());
    for (path, hash) in files {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update(hash);
    }
    h.update((upstream.len() as u64).to_le_bytes());
    for fp in upstream {
        h.update(fp.0);
    }
    Fingerprint(h.finalize().into())
}

/// Packs a sorted source list for storage: `u32 len, path bytes, 32-byte hash` per file.
/// A blob per success (rather than a row per file) keeps recording a success to one
/// insert, and it is only read back when a fingerprint differs.
pub fn encode_files(files: &[(String, ContentHash)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(files.iter().map(|(p, _)| p.len() + 36).sum());
    for (path, hash) in files {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(hash);
    }
    out
}

/// The inverse of [`encode_files`]; `None` when the blob is truncated or not UTF-8.
pub fn decode_files(mut blob: &[u8]) -> Option<Vec<(String, ContentHash)>> {
    let mut out = Vec::new();
    while !blob.is_empty() {
        let len = u32::from_le_bytes(blob.get(..4)?.try_into().ok()?) as usize;
        let path = std::str::from_utf8(blob.get(4..4 + len)?).ok()?.to_string();
        let hash: ContentHash = blob.get(4 + len..36 + len)?.try_into().ok()?;
        out.push((path, hash));
        blob = &blob[36 + len..];
    }
    Some(out)
}

/// Paths added, removed or modified between two sorted source lists, sorted.
pub fn changed_paths(
    before: &[(String, ContentHash)],
    now: &[(String, ContentHash)],
) -> Vec<String> {
    use std::cmp::Ordering;
    let (mut i, mut j) = (0, 0);
    let mut changed = Vec::new();
    while i < before.len() || j < now.len() {
        let order = match (before.get(i), now.get(j)) {
            (Some(a), Some(b)) => a.0.cmp(&b.0),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                changed.push(before[i].0.clone());
                i += 1;
            }
            Ordering::Greater => {
                changed.push(now[j].0.clone());
                j += 1;
            }
            Ordering::Equal => {
                if before[i].1 != now[j].1 {
                    changed.push(now[j].0.clone());
                }
                i += 1;
                j += 1;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_change_the_definition_hash() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"run":"make","env":{"B":"2","A":"1"}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"env":{"A":"1","B":"2"},"run":"make"}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"env":{"A":"1","B":"2"},"run":"make"}"#
        );
        assert_eq!(definition_hash(&a), definition_hash(&b));
        assert_ne!(
            definition_hash(&a),
            definition_hash(&json!({"run": "make all"}))
        );
    }

    #[test]
    fn every_input_part_changes_the_fingerprint() {
        let d = definition_hash(&json!({"run": "x"}));
        let files = vec![("a".to_string(), [1; 32]), ("b".to_string(), [2; 32])];
        let base = compute(&d, &files, &[]);
        assert_eq!(base, compute(&d, &files, &[]));
        assert_ne!(
            base,
            compute(&definition_hash(&json!({"run": "y"})), &files, &[])
        );
        assert_ne!(base, compute(&d, &files[..1], &[]));
        assert_ne!(
            base,
            compute(&d, &[("a".into(), [1; 32]), ("b".into(), [3; 32])], &[])
        );
        assert_ne!(base, compute(&d, &files, &[Fingerprint([9; 32])]));
        // A path boundary moved between two names must not collide.
        assert_ne!(
            compute(&d, &[("ab".into(), [0; 32]), ("c".into(), [0; 32])], &[]),
            compute(&d, &[("a".into(), [0; 32]), ("bc".into(), [0; 32])], &[])
        );
    }

    #[test]
    fn files_round_trip_and_diff_names_added_removed_and_modified() {
        let before = vec![
            ("a.rs".to_string(), [1; 32]),
            ("b.rs".to_string(), [2; 32]),
            ("c.rs".to_string(), [3; 32]),
        ];
        assert_eq!(decode_files(&encode_files(&before)).unwrap(), before);
        assert_eq!(decode_files(&encode_files(&before)[..10]), None);
        let now = vec![
            ("b.rs".to_string(), [7; 32]),
            ("c.rs".to_string(), [3; 32]),
            ("d.rs".to_string(), [4; 32]),
        ];
        assert_eq!(changed_paths(&before, &now), vec!["a.rs", "b.rs", "d.rs"]);
        assert!(changed_paths(&now, &now).is_empty());
    }
}
