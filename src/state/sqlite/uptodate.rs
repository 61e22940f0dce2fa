//! The up-to-date engine's tables in SQLite (`uptodate_definition`,
//! `uptodate_success`, `uptodate_output`, `uptodate_latest`): definition
//! versions, successes with their fingerprints and outputs.

use super::super::records::{
    DefinitionRecord, DefinitionRef, Hash, NewSuccess, OutputRecord, PrunedSuccesses, StepState,
    SuccessRef,
};
use super::super::Result;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashSet;

fn hash_from_blob(b: Vec<u8>) -> Hash {
    <Hash>::try_from(b.as_slice()).unwrap_or([0; 32])
}

pub(super) fn latest_definition(conn: &Connection, key: &str) -> Result<Option<DefinitionRef>> {
    Ok(conn
        .prepare_cached(
            "SELECT version, def_hash FROM uptodate_definition WHERE step_key = ?1
             ORDER BY version DESC LIMIT 1",
        )?
        .query_row(params![key], |r| {
            Ok(DefinitionRef {
                version: r.get(0)?,
                hash: hash_from_blob(r.get(1)?),
            })
        })
        .optional()?)
}

pub(super) fn step_state(conn: &Connection, key: &str) -> Result<StepState> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.version, d.def_hash, s.id, s.fingerprint, s.def_hash, s.def_version
         FROM (SELECT ?1 AS k) q
         LEFT JOIN (SELECT version, def_hash FROM uptodate_definition WHERE step_key = ?1 ORDER BY version DESC LIMIT 1) d
         LEFT JOIN uptodate_latest l ON l.step_key = q.k
         LEFT JOIN uptodate_success s ON s.id = l.success_id",
    )?;
    Ok(stmt.query_row(params![key], |r| {
        let definition = match r.get::<_, Option<u32>>(0)? {
            Some(version) => Some(DefinitionRef {
                version,
                hash: hash_from_blob(r.get(1)?),
            }),
            None => None,
        };
        let last_success = match r.get::<_, Option<i64>>(2)? {
            Some(id) => Some(SuccessRef {
                id,
                fingerprint: hash_from_blob(r.get(3)?),
                def_hash: hash_from_blob(r.get(4)?),
                def_version: r.get(5)?,
            }),
            None => None,
        };
        Ok(StepState {
            definition,
            last_success,
        })
    })?)
}

pub(super) fn definition_history(conn: &Connection, key: &str) -> Result<Vec<DefinitionRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT version, definition, created_ns FROM uptodate_definition WHERE step_key = ?1 ORDER BY version",
    )?;
    let rows = stmt.query_map(params![key], |r| {
        Ok(DefinitionRecord {
            version: r.get(0)?,
            definition: r.get(1)?,
            recorded_at_ns: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn success_sources(conn: &Connection, success_id: i64) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT sources FROM uptodate_success WHERE id = ?1")?
        .query_row(params![success_id], |r| r.get(0))
        .optional()?)
}

pub(super) fn success_outputs(conn: &Connection, success_id: i64) -> Result<Vec<OutputRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT path, hash, mode, size FROM uptodate_output WHERE success_id = ?1 ORDER BY path",
    )?;
    let rows = stmt.query_map(params![success_id], |r| {
        Ok(OutputRecord {
            path: r.get(0)?,
            hash: hash_from_blob(r.get(1)?),
            mode: r.get(2)?,
            size: r.get::<_, i64>(3)?.max(0) as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn successes_with_fingerprint(
    conn: &Connection,
    key: &str,
    fingerprint: &Hash,
) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM uptodate_success WHERE step_key = ?1 AND fingerprint = ?2 ORDER BY id DESC",
    )?;
    let ids = stmt.query_map(params![key, &fingerprint[..]], |r| r.get::<_, i64>(0))?;
    Ok(ids.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn set_latest_success(conn: &Connection, key: &str, success_id: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO uptodate_latest (step_key, success_id) VALUES (?1, ?2)",
    )?
    .execute(params![key, success_id])?;
    Ok(())
}

pub(super) fn record_success(conn: &mut Connection, s: &NewSuccess<'_>) -> Result<u32> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version = match latest_definition(&tx, s.step_key)? {
        Some(d) if d.hash == s.def_hash => d.version,
        latest => {
            let v = latest.map_or(1, |d| d.version + 1);
            tx.prepare_cached(
                "INSERT INTO uptodate_definition (step_key, version, def_hash, definition, created_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                s.step_key,
                v,
                &s.def_hash[..],
                s.definition,
                s.created_ns
            ])?;
            v
        }
    };
    tx.prepare_cached(
        "INSERT INTO uptodate_success (step_key, run_id, fingerprint, def_version, def_hash, created_ns, sources)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        s.step_key,
        s.run_id,
        &s.fingerprint[..],
        version,
        &s.def_hash[..],
        s.created_ns,
        s.sources
    ])?;
    let success_id = tx.last_insert_rowid();
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO uptodate_output (success_id, path, hash, mode, size) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for o in s.outputs {
            insert.execute(params![
                success_id,
                o.path,
                &o.hash[..],
                o.mode,
                o.size as i64
            ])?;
        }
    }
    set_latest_success(&tx, s.step_key, success_id)?;
    tx.commit()?;
    Ok(version)
}

pub(super) fn success_counts(conn: &Connection) -> Result<(usize, usize)> {
    Ok(conn.query_row(
        "SELECT COUNT(*), COUNT(DISTINCT step_key) FROM uptodate_success",
        [],
        |r| Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as usize)),
    )?)
}

pub(super) fn prune_successes(
    conn: &mut Connection,
    keep: Option<usize>,
    created_before_ns: Option<i64>,
) -> Result<PrunedSuccesses> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut removed = 0;
    if let Some(n) = keep {
        removed += tx.execute(
            "DELETE FROM uptodate_success WHERE id NOT IN (SELECT success_id FROM uptodate_latest) AND id IN (
                 SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY step_key ORDER BY id DESC) AS n
                                 FROM uptodate_success) WHERE n > ?1)",
            params![n as i64],
        )?;
    }
    if let Some(cutoff) = created_before_ns {
        removed += tx.execute(
            "DELETE FROM uptodate_success WHERE created_ns < ?1 AND id NOT IN (SELECT success_id FROM uptodate_latest)",
            params![cutoff],
        )?;
    }
    tx.execute(
        "DELETE FROM uptodate_output WHERE success_id NOT IN (SELECT id FROM uptodate_success)",
        [],
    )?;
    let referenced = tx
        .prepare("SELECT DISTINCT hash FROM uptodate_output")?
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .map(|r| r.map(hash_from_blob))
        .collect::<rusqlite::Result<HashSet<_>>>()?;
    tx.commit()?;
    Ok(PrunedSuccesses {
        removed,
        referenced,
    })
}
