//! One step against the remote cache: restore it on a local miss, upload it
//! after a success. Both go through the up-to-date engine's own pieces (the
//! local CAS, the Store's successes, `UpToDate::try_restore`), so a step
//! restored from the remote cache is afterwards exactly like one restored
//! locally.

use super::action_result::{ActionResult, Digest, OutputFile};
use super::client::Fetched;
use super::RemoteCache;
use crate::state::{NewSuccess, OutputRecord, Store};
use crate::uptodate::cas::Cas;
use crate::uptodate::walk::Patterns;
use crate::uptodate::{fingerprint, Check, Decision, RunReason, StepSpec, UpToDate};
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::path::Path;

/// A step restored from the remote cache.
#[derive(Debug)]
pub struct Hit {
    /// Files written (0: they were already in place, or the step has none).
    pub files: usize,
    /// The step's log as recorded where it ran, to replay.
    pub log: Option<Vec<u8>>,
}

fn digest_of(bytes: &[u8]) -> Digest {
    Digest {
        hash: sha2::Sha256::digest(bytes).into(),
        size: bytes.len() as u64,
    }
}

impl RemoteCache {
    fn refuse(&self, step: &str, why: impl std::fmt::Display) {
        eprintln!("trun: warning: {step}: remote cache entry refused: {why}; running the step");
    }

    /// A small blob (log, outputs) into memory: `None` when missing or
    /// corrupted (said), or on a server error (said once).
    fn small_blob(&self, step: &str, d: &Digest, what: &str) -> Option<Vec<u8>> {
        match self.client.get_blob_bytes(d) {
            Ok(Some(b)) => Some(b),
            Ok(None) => {
                self.refuse(
                    step,
                    format_args!("its {what} blob {} is missing or corrupted", d.hex()),
                );
                None
            }
            Err(e) => {
                self.fail(&e);
                None
            }
        }
    }

    /// On a local miss: looks the step up in the remote cache and, on a hit,
    /// restores it. `image`: the job container's image reference, if any.
    /// Never fails the run: anything wrong is a miss.
    pub fn restore(
        &self,
        ut: &UpToDate,
        store: &dyn Store,
        spec: &StepSpec,
        check: &Check,
        image: Option<&str>,
        run_id: i64,
    ) -> Option<Hit> {
        if !self.usable() {
            return None;
        }
        let key = self.key(&check.fingerprint, image)?;
        let bytes = match self.client.get_ac(&key) {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                self.fail(&e);
                return None;
            }
        };
        let patterns = Patterns::parse(&spec.generates).ok()?;
        let entry =
            match ActionResult::parse(&bytes, &key, self.max_blob, self.secret.as_deref(), &|p| {
                patterns.matches(p)
            }) {
                Ok(e) => e,
                Err(e) => {
                    self.refuse(&spec.key, e);
                    return None;
                }
            };
        let outputs: BTreeMap<String, String> = {
            let b = self.small_blob(&spec.key, &entry.outputs, "outputs")?;
            match serde_json::from_slice(&b) {
                Ok(o) => o,
                Err(e) => {
                    self.refuse(&spec.key, format_args!("its outputs blob: {e}"));
                    return None;
                }
            }
        };
        let log = match &entry.log {
            Some(d) => Some(self.small_blob(&spec.key, d, "log")?),
            None => None,
        };

        // Every blob into the local CAS first, verified, before anything is
        // recorded or written into the workspace.
        let trun_dir = spec.base.join(".trun");
        let cas = Cas::new(&trun_dir.join("cas"));
        for f in &entry.files {
            if cas.contains(&f.digest.hash) {
                continue;
            }
            let mut tmp = match tempfile::Builder::new()
                .prefix(".tmp-remote-")
                .tempfile_in(&trun_dir)
            {
                Ok(t) => t,
                Err(e) => {
                    self.refuse(
                        &spec.key,
                        format_args!("cannot create a temporary file: {e}"),
                    );
                    return None;
                }
            };
            match self.client.get_blob(&f.digest, tmp.as_file_mut()) {
                Ok(Fetched::Ok) => {}
                Ok(Fetched::Missing) => {
                    self.refuse(
                        &spec.key,
                        format_args!("blob {} of {} is missing", f.digest.hex(), f.path),
                    );
                    return None;
                }
                Ok(Fetched::Corrupt) => {
                    self.refuse(
                        &spec.key,
                        format_args!(
                            "blob {} of {} is corrupted (its content does not match its digest)",
                            f.digest.hex(),
                            f.path
                        ),
                    );
                    return None;
                }
                Err(e) => {
                    self.fail(&e);
                    return None;
                }
            }
            match cas.store(tmp.path(), None) {
                Ok(h) if h == f.digest.hash => {}
                Ok(_) => {
                    self.refuse(
                        &spec.key,
                        format_args!("blob of {} changed while stored", f.path),
                    );
                    return None;
                }
                Err(e) => {
                    self.refuse(&spec.key, e);
                    return None;
                }
            }
        }

        // Recorded as a success of this step, then written back by the
        // engine's own restore (confined to the workspace, no symlinks).
        let records: Vec<OutputRecord> = entry
            .files
            .iter()
            .map(|f| OutputRecord {
                path: f.path.clone(),
                hash: f.digest.hash,
                mode: f.mode,
                size: f.digest.size,
            })
            .collect();
        let definition = fingerprint::canonical_json(&spec.definition);
        let recorded = store.record_success(&NewSuccess {
            step_key: &spec.key,
            run_id,
            fingerprint: check.fingerprint.0,
            def_hash: fingerprint::definition_hash(&spec.definition),
            definition: &definition,
            created_ns: crate::uptodate::statcache::now_ns(),
            sources: &fingerprint::encode_files(&check.files),
            outputs: &records,
        });
        if let Err(e) = recorded {
            self.refuse(&spec.key, e);
            return None;
        }
        crate::uptodate_hooks::remember_outputs(store, &spec.key, &check.fingerprint, &outputs);
        let files = if records.is_empty() {
            0
        } else {
            let as_restore = Check {
                decision: Decision::Run(RunReason::UpstreamChanged),
                ..check.clone()
            };
            match ut.try_restore(spec, &as_restore) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    self.refuse(&spec.key, "its files could not be restored");
                    return None;
                }
                Err(e) => {
                    self.refuse(&spec.key, e);
                    return None;
                }
            }
        };
        Some(Hit { files, log })
    }

    /// After a success recorded locally: sends its `generates` files (those
    /// the server lacks), its log and outputs, then the entry naming them.
    /// Nothing with `--remote-cache-read-only`.
    pub fn upload(
        &self,
        store: &dyn Store,
        spec: &StepSpec,
        check: &Check,
        image: Option<&str>,
        outputs: &BTreeMap<String, String>,
        log: Option<&Path>,
    ) {
        if self.read_only || !self.usable() {
            return;
        }
        let Some(key) = self.key(&check.fingerprint, image) else {
            return;
        };
        let Ok(state) = store.step_state(&spec.key) else {
            return;
        };
        let Some(last) = state
            .last_success
            .filter(|s| s.fingerprint == check.fingerprint.0)
        else {
            return;
        };
        let Ok(records) = store.success_outputs(last.id) else {
            return;
        };
        let cas = Cas::new(&spec.base.join(".trun").join("cas"));
        let mut files = Vec::with_capacity(records.len());
        for r in &records {
            let object = cas.object_path(&r.hash);
            let Ok(meta) = std::fs::symlink_metadata(&object) else {
                return;
            };
            let d = Digest {
                hash: r.hash,
                size: meta.len(),
            };
            if d.size > self.max_blob {
                eprintln!(
                    "trun: note: {}: not shared: {} is larger than --remote-cache-max-blob",
                    spec.key, r.path
                );
                return;
            }
            if let Err(e) = self.put_if_missing(&d, || self.client.put_blob(&d, &object)) {
                self.fail(&e);
                return;
            }
            files.push(OutputFile {
                path: r.path.clone(),
                digest: d,
                mode: r.mode & 0o777,
            });
        }
        let log = match log.map(std::fs::read) {
            Some(Ok(bytes)) if bytes.len() as u64 <= self.max_blob => {
                let d = digest_of(&bytes);
                if let Err(e) = self.put_if_missing(&d, || self.client.put_blob_bytes(&d, bytes)) {
                    self.fail(&e);
                    return;
                }
                Some(d)
            }
            _ => None,
        };
        let out_bytes = serde_json::to_vec(outputs).unwrap_or_default();
        let out = digest_of(&out_bytes);
        if let Err(e) = self.put_if_missing(&out, || self.client.put_blob_bytes(&out, out_bytes)) {
            self.fail(&e);
            return;
        }
        let entry = ActionResult::new(files, log, out).to_json(&key, self.secret.as_deref());
        if let Err(e) = self.client.put_ac(&key, entry) {
            self.fail(&e);
        }
    }

    fn put_if_missing(
        &self,
        d: &Digest,
        put: impl FnOnce() -> Result<(), super::client::HttpError>,
    ) -> Result<(), super::client::HttpError> {
        if self.client.has_blob(d)? {
            return Ok(());
        }
        put()
    }
}
