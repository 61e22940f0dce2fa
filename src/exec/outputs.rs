//! The files a step writes to talk back: `$TRUN_OUTPUT` / `$GITHUB_OUTPUT`
//! (step outputs), `$GITHUB_ENV` (env for later steps) and `$GITHUB_PATH`
//! (PATH entries for later steps), in GitHub Actions' formats so existing
//! scripts work unchanged.

use std::collections::BTreeMap;
use std::path::Path;

/// Parse `key=value` lines and heredoc blocks:
///
/// ```text
/// name=value
/// notes<<EOF
/// line 1
/// line 2
/// EOF
/// ```
pub fn parse_kv(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        let heredoc = line.find("<<").filter(|&i| !line[..i].contains('='));
        if let Some(i) = heredoc {
            let key = line[..i].trim();
            let delim = line[i + 2..].trim();
            if key.is_empty() || delim.is_empty() {
                return Err(format!("malformed line `{line}`"));
            }
            let mut value: Vec<&str> = Vec::new();
            let mut closed = false;
            for l in lines.by_ref() {
                if l == delim {
                    closed = true;
                    break;
                }
                value.push(l);
            }
            if !closed {
                return Err(format!("`{key}<<{delim}` has no closing `{delim}` line"));
            }
            out.insert(key.to_string(), value.join("\n"));
        } else if let Some((k, v)) = line.split_once('=') {
            let k = k.trim();
            if k.is_empty() {
                return Err(format!("malformed line `{line}`: empty name"));
            }
            out.insert(k.to_string(), v.to_string());
        } else {
            return Err(format!(
                "malformed line `{line}`: expected `name=value` or `name<<DELIMITER`"
            ));
        }
    }
    Ok(out)
}

/// Which of one step's talk-back files exist, from one read of the run's
/// tmp directory. Most steps write none, and a failed open per file cost a
/// lookup of a name the filesystem had never seen (a fresh negative entry)
/// five times a step; the listing costs one read of a directory that holds
/// little more than the files of the steps running now.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// The names listed that start with the step's stem; `None` when the
    /// directory could not be listed or holds more than [`Written::MAX_LISTED`]
    /// entries (a step filled `$RUNNER_TEMP`): then every file is opened.
    names: Option<Vec<std::ffi::OsString>>,
}

impl Written {
    /// Past this many entries the listing is dropped for one open per file,
    /// so a crowded directory costs no more than before.
    const MAX_LISTED: usize = 256;

    /// Lists `dir` for the files whose names start with `stem`.
    pub fn scan(dir: &Path, stem: &std::ffi::OsStr) -> Written {
        use std::os::unix::ffi::OsStrExt;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Written::default();
        };
        let mut names = Vec::new();
        for (n, entry) in entries.enumerate() {
            let Ok(entry) = entry else {
                return Written::default();
            };
            if n >= Self::MAX_LISTED {
                return Written::default();
            }
            let name = entry.file_name();
            if name.as_bytes().starts_with(stem.as_bytes()) {
                names.push(name);
            }
        }
        Written { names: Some(names) }
    }

    /// Whether `file` may exist: listed, or the listing is unknown.
    pub fn has(&self, file: &Path) -> bool {
        match (&self.names, file.file_name()) {
            (Some(names), Some(n)) => names.iter().any(|x| x == n),
            _ => true,
        }
    }

    /// `read(file)` if the file may exist, else what reading a missing file gives.
    pub fn read<T: Default>(
        &self,
        file: &Path,
        read: impl FnOnce(&Path) -> Result<T, String>,
    ) -> Result<T, String> {
        if self.has(file) {
            read(file)
        } else {
            Ok(T::default())
        }
    }

    /// Notes that trun itself wrote `file` after the listing.
    pub fn add(&mut self, file: &Path) {
        if let (Some(names), Some(n)) = (&mut self.names, file.file_name()) {
            names.push(n.to_os_string());
        }
    }
}

/// The most a talk-back file may hold; a step writing more fails (outputs)
/// or is ignored with a warning (env, path).
pub const MAX_TALK_BACK: u64 = 4 * 1024 * 1024;

/// Reads a talk-back file the step may or may not have written, without
/// trusting it: a symlink is not followed, anything but a regular file (a
/// FIFO would block trun forever) is refused, and at most [`MAX_TALK_BACK`]
/// bytes are read. `Ok(None)` when the step did not write it.
pub fn read_talk_back(path: &Path) -> Result<Option<String>, String> {
    read_capped(path, MAX_TALK_BACK, |len| {
        format!(
            "{} holds {len} bytes, more than the {MAX_TALK_BACK} a step may write there",
            path.display()
        )
    })
}

/// Reads a talk-back file as [`read_talk_back`] does and removes it, so no
/// later step sees it. A file the step did not write costs one failed open.
pub fn take_talk_back(path: &Path) -> Result<Option<String>, String> {
    take(path, read_talk_back(path))
}

/// Removes `path` unless reading it found nothing there.
fn take(path: &Path, read: Result<Option<String>, String>) -> Result<Option<String>, String> {
    if !matches!(read, Ok(None)) {
        let _ = std::fs::remove_file(path);
    }
    read
}

/// [`read_talk_back`] with `max` bytes at most, and `too_big` saying why a
/// file of a given length is refused.
fn read_capped(
    path: &Path,
    max: u64,
    too_big: impl Fn(u64) -> String,
) -> Result<Option<String>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(format!(
                "{} is a symlink; trun does not follow it",
                path.display()
            ))
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file (a FIFO or a device?); trun does not read it",
            path.display()
        ));
    }
    if meta.len() > max {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "{} holds more than the {max} bytes a step may write there",
            path.display()
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// Writes a file trun hands to a step (a script, an action's outputs) in the
/// run's tmp dir, where an earlier step could have planted something at the
/// same name: whatever is there goes first (a FIFO would block the write, a
/// symlink would redirect it), then the file is created afresh (readable by
/// others as before: a job container's user may not be ours).
pub fn write_fresh(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(bytes)
}

/// The most a step may write to `$GITHUB_STEP_SUMMARY` (GitHub's limit).
pub const MAX_STEP_SUMMARY: u64 = 1024 * 1024;

/// Reads and removes `$GITHUB_STEP_SUMMARY` as [`take_talk_back`] does,
/// refusing more than [`MAX_STEP_SUMMARY`] bytes with GitHub's message.
pub fn take_step_summary(path: &Path) -> Result<Option<String>, String> {
    let read = read_capped(path, MAX_STEP_SUMMARY, |len| {
        format!(
            "$GITHUB_STEP_SUMMARY upload aborted, supports content up to a size of {}k, got {}k",
            MAX_STEP_SUMMARY / 1024,
            len / 1024
        )
    });
    take(path, read)
}

/// Read and parse a file the step may or may not have written.
pub fn read_kv(path: &Path) -> Result<BTreeMap<String, String>, String> {
    kv_of(path, read_talk_back(path)?)
}

/// [`read_kv`], and the file removed ([`take_talk_back`]).
pub fn take_kv(path: &Path) -> Result<BTreeMap<String, String>, String> {
    kv_of(path, take_talk_back(path)?)
}

fn kv_of(path: &Path, text: Option<String>) -> Result<BTreeMap<String, String>, String> {
    match text {
        Some(t) => parse_kv(&t).map_err(|e| format!("{}: {e}", path.display())),
        None => Ok(BTreeMap::new()),
    }
}

/// `$GITHUB_PATH`, one directory per line, read and removed ([`take_talk_back`]).
pub fn take_path_file(path: &Path) -> Result<Vec<String>, String> {
    Ok(take_talk_back(path)?
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_heredoc() {
        let m = parse_kv("a=1\nb=x=y\nnotes<<EOF\nl1\nl2\nEOF\n").unwrap();
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "x=y");
        assert_eq!(m["notes"], "l1\nl2");
    }

    #[test]
    fn a_fifo_or_a_symlink_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("env");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read_kv(&fifo).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let link = dir.path().join("out");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        let e = read_kv(&link).unwrap_err();
        assert!(e.contains("symlink"), "{e}");
        assert_eq!(read_kv(&dir.path().join("none")).unwrap(), BTreeMap::new());
    }

    #[test]
    fn a_planted_fifo_does_not_block_a_fresh_write() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.script");
        nix::unistd::mkfifo(&f, nix::sys::stat::Mode::S_IRWXU).unwrap();
        write_fresh(&f, b"echo hi\n").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"echo hi\n");
    }

    #[test]
    fn taking_a_planted_file_refuses_it_and_removes_it_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("secret");
        std::fs::write(&target, "KEY=value\n").unwrap();
        // A symlink to a file elsewhere: refused, the link goes, the target stays.
        let link = dir.path().join("j.0.env");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = take_kv(&link).unwrap_err();
        assert!(e.contains("symlink"), "{e}");
        assert!(link.symlink_metadata().is_err(), "the link is removed");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "KEY=value\n");
        // A FIFO: refused without blocking, and removed.
        let fifo = dir.path().join("j.0.path");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(take_path_file(&fifo).is_err());
        assert!(fifo.symlink_metadata().is_err(), "the FIFO is removed");
        // A summary over GitHub's limit: GitHub's message, and removed.
        let summary = dir.path().join("j.0.summary");
        std::fs::write(&summary, vec![b'x'; MAX_STEP_SUMMARY as usize + 1]).unwrap();
        let e = take_step_summary(&summary).unwrap_err();
        assert!(e.contains("upload aborted"), "{e}");
        assert!(!summary.exists());
        // A file the step wrote: read, then gone; one it did not write: nothing.
        let state = dir.path().join("j.0.state");
        std::fs::write(&state, "a=1\n").unwrap();
        assert_eq!(take_kv(&state).unwrap()["a"], "1");
        assert!(!state.exists());
        assert!(take_kv(&state).unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn unclosed_heredoc_is_an_error() {
        assert!(parse_kv("n<<EOF\nl1\n")
            .unwrap_err()
            .contains("no closing `EOF`"));
    }
}
