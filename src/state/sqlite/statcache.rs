//! The stat cache in SQLite (`uptodate_stat`): one row per hashed file, keyed
//! by its absolute path; and the walk cache (`uptodate_walk`): one record per
//! walked directory, keyed by its absolute path, which the record repeats
//! (a lossy key cannot make two directories share one). Machine-local: it lives beside the store, on the same
//! connection, but is no part of the [`Store`](super::super::Store) interface.

use super::super::records::{Hash, StatRecord};
use super::super::Result;
use rusqlite::{params, Connection, Row};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn key_of(abs: &Path) -> String {
    abs.to_string_lossy().into_owned()
}

/// Rows for `files` (sorted by path bytes, all below `dir`), aligned with them,
/// read with one range query and merged in order.
pub(super) fn stats_under(
    conn: &Connection,
    dir: &Path,
    files: &[&Path],
) -> Result<Vec<Option<StatRecord>>> {
    let mut out = vec![None; files.len()];
    if files.is_empty() {
        return Ok(out);
    }
    let mut lo = key_of(dir);
    if !lo.ends_with('/') {
        lo.push('/');
    }
    // Every key below `dir/` sorts before `dir0` ('0' follows '/').
    let hi = format!("{}0", &lo[..lo.len() - 1]);
    let mut stmt = conn.prepare_cached(
        "SELECT path, size, mtime_ns, ino, ctime_ns, hash, written_ns FROM uptodate_stat
         WHERE path >= ?1 AND path < ?2 ORDER BY path",
    )?;
    let mut rows = stmt.query(params![lo, hi])?;
    let mut next = 0;
    while let Some(row) = rows.next()? {
        let path = row.get_ref(0)?.as_bytes().map_err(rusqlite::Error::from)?;
        while next < files.len() && files[next].as_os_str().as_bytes() < path {
            next += 1;
        }
        if next == files.len() {
            break;
        }
        if files[next].as_os_str().as_bytes() == path {
            out[next] = record_of(row)?;
            next += 1;
        }
    }
    Ok(out)
}

pub(super) fn stats_of(conn: &Connection, files: &[&Path]) -> Result<Vec<Option<StatRecord>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT path, size, mtime_ns, ino, ctime_ns, hash, written_ns FROM uptodate_stat WHERE path = ?1",
    )?;
    let mut out = Vec::with_capacity(files.len());
    for p in files {
        let mut rows = stmt.query(params![key_of(p)])?;
        out.push(match rows.next()? {
            Some(row) => record_of(row)?,
            None => None,
        });
    }
    Ok(out)
}

pub(super) fn store_stats(conn: &mut Connection, rows: &[(&Path, StatRecord)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO uptodate_stat (path, size, mtime_ns, ino, ctime_ns, hash, written_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (path, r) in rows {
            stmt.execute(params![
                key_of(path),
                r.size as i64,
                r.mtime_ns,
                r.ino as i64,
                r.ctime_ns,
                &r.hash[..],
                r.written_ns
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn walk_records(conn: &Connection, dirs: &[&Path]) -> Result<Vec<Option<Vec<u8>>>> {
    let mut stmt = conn.prepare_cached("SELECT record FROM uptodate_walk WHERE dir = ?1")?;
    let mut out = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let mut rows = stmt.query(params![key_of(dir)])?;
        out.push(match rows.next()? {
            Some(row) => Some(row.get::<_, Vec<u8>>(0)?),
            None => None,
        });
    }
    Ok(out)
}

pub(super) fn store_walk_records(
    conn: &mut Connection,
    records: &[(&Path, Vec<u8>)],
) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    {
        let mut stmt = tx
            .prepare_cached("INSERT OR REPLACE INTO uptodate_walk (dir, record) VALUES (?1, ?2)")?;
        for (dir, record) in records {
            stmt.execute(params![key_of(dir), record])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// A row (path first), or None when its hash is not a 32-byte blob (a row
/// this trun cannot trust is as good as no row).
fn record_of(r: &Row<'_>) -> rusqlite::Result<Option<StatRecord>> {
    // Raw column refs rather than `get::<T>`: a no-op reads one row per source file.
    let int = |i: usize| {
        r.get_ref(i)
            .and_then(|v| v.as_i64().map_err(rusqlite::Error::from))
    };
    let Ok(hash) = <Hash>::try_from(r.get_ref(5)?.as_blob()?) else {
        return Ok(None);
    };
    Ok(Some(StatRecord {
        size: int(1)? as u64,
        mtime_ns: int(2)?,
        ino: int(3)? as u64,
        ctime_ns: int(4)?,
        hash,
        written_ns: int(6)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use crate::state::{StatCache, StatRecord};
    use std::path::Path;

    #[test]
    fn rows_round_trip_by_directory_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let row = |n: u8| StatRecord {
            size: 4,
            mtime_ns: n as i64,
            ino: 7,
            ctime_ns: n as i64,
            hash: [n; 32],
            written_ns: 9,
        };
        store
            .store_stats(&[
                (Path::new("/w/src/a.rs"), row(1)),
                (Path::new("/w/src/sub/b.rs"), row(2)),
                (Path::new("/w/src0/c.rs"), row(3)),
                (Path::new("/w/src.rs"), row(4)),
            ])
            .unwrap();
        let got = store
            .stats_under(
                Path::new("/w/src"),
                &[
                    Path::new("/w/src/a.rs"),
                    Path::new("/w/src/new.rs"),
                    Path::new("/w/src/sub/b.rs"),
                ],
            )
            .unwrap();
        assert_eq!(
            got.iter().map(|c| c.map(|c| c.hash[0])).collect::<Vec<_>>(),
            vec![Some(1), None, Some(2)]
        );
        assert_eq!(got[2].unwrap().mtime_ns, 2);
        assert!(store
            .stats_under(Path::new("/w/src"), &[])
            .unwrap()
            .is_empty());
        let one = store
            .stats_of(&[Path::new("/w/src.rs"), Path::new("/w/none")])
            .unwrap();
        assert_eq!(one[0].map(|c| c.hash), Some([4; 32]));
        assert!(one[1].is_none());
    }
}
