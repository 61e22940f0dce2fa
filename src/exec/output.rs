//! Where a step's output goes: its log file and the engine's `StepOutput`
//! events, with every byte of memory and disk bounded.
//!
//! An [`OutputSink`] takes raw chunks tagged by stream (stdout and stderr
//! arrive on separate pipes and are fed in the order they were read, so the
//! log keeps the order the step wrote in) and splits them into lines:
//!
//! - a line longer than [`MAX_LINE`] is cut into pieces of that size, so an
//!   output without newlines is never buffered whole;
//! - the log file holds at most [`log_cap`] bytes of output (64 MiB unless
//!   `TRUN_LOG_CAP` says otherwise, in bytes); what does not fit is counted,
//!   and the log ends with `[trun: output cut after 64 MiB; N bytes dropped]`;
//! - events are rate-limited per step (a burst of [`EVENT_BURST`] bytes, then
//!   [`EVENT_RATE`] bytes a second): a flood cannot grow the engine's event
//!   channel faster than a reporter drains it. Lines held back are counted and
//!   a `[trun: … not shown here …]` line says so; the log has them;
//! - an optional capture keeps the first bytes of each stream for a caller that
//!   needs them (the grading scorer compares a criterion's output);
//! - every line is masked (registered secrets become `***`) before it reaches
//!   the log or an event. A value split across two reads is whole by then,
//!   since a line is only passed on once complete; a line cut at [`MAX_LINE`]
//!   keeps back the last bytes that could begin a secret, so a value across
//!   the cut is masked too (values up to half of [`MAX_LINE`]);
//! - for a `run:` step, workflow commands ([`super::commands`]) are acted on:
//!   `::add-mask::` registers a value before its own line is logged (as
//!   `::add-mask::***`), `::group::`, `::error::` and friends become events.
//!
//! This module does not spawn or read processes (the executors do) and does
//! not decide what a step's result is.

use super::commands::{Commands, Seen};
use super::Events;
use crate::event::{Annotation, Event, Stream};
use crate::secrets::Masker;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::event::MAX_LINE;

/// The default cap of one step's log file, in bytes of output.
pub const DEFAULT_LOG_CAP: u64 = 64 * 1024 * 1024;

/// The environment variable that overrides [`DEFAULT_LOG_CAP`] (a number of bytes).
pub const LOG_CAP_ENV: &str = "TRUN_LOG_CAP";

/// Bytes of output a step may send as events at once before the rate applies.
pub const EVENT_BURST: u64 = 4 * 1024 * 1024;

/// Bytes of output per second a step may send as events after its burst.
pub const EVENT_RATE: u64 = 1024 * 1024;

/// Annotations of one step kept for its record (GitHub keeps 10 errors and
/// 10 warnings a step; trun keeps more, but not without bound). All are shown.
pub const MAX_ANNOTATIONS: usize = 1000;

/// The log cap in force: `TRUN_LOG_CAP` (bytes) or [`DEFAULT_LOG_CAP`].
pub fn log_cap() -> u64 {
    std::env::var(LOG_CAP_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_LOG_CAP)
}

/// The output of one step (all its attempts): log file, events, capture.
pub struct OutputSink {
    job: String,
    step: usize,
    events: Events,
    log: Option<LogFile>,
    /// Bytes of the current, unfinished line of each stream (< MAX_LINE).
    partial: [Vec<u8>; 2],
    bucket: Bucket,
    hidden_lines: u64,
    hidden_bytes: u64,
    /// Per stream (stdout, stderr), when a caller asked for a capture.
    capture: [Option<Capture>; 2],
    /// Bytes seen on each stream, kept or not.
    totals: [u64; 2],
    masker: Masker,
    /// Workflow commands, for a step that may give them.
    commands: Option<Commands>,
    /// Annotations the step made, written beside its log.
    annotations: Vec<Annotation>,
}

struct Capture {
    buf: Vec<u8>,
    limit: usize,
    truncated: bool,
}

fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl OutputSink {
    /// Output of step `step` (its index) of job `job`; `log_path` is created
    /// (with its directory, never through a symlink) on the first byte, so a
    /// silent step leaves no file.
    pub fn new(log_path: Option<PathBuf>, events: Events, job: String, step: usize) -> OutputSink {
        OutputSink {
            job,
            step,
            log: log_path.map(|p| LogFile::new(p, log_cap())),
            partial: [Vec::new(), Vec::new()],
            bucket: Bucket::new(),
            hidden_lines: 0,
            hidden_bytes: 0,
            capture: [None, None],
            totals: [0, 0],
            masker: events.masker().clone(),
            commands: None,
            annotations: Vec::new(),
            events,
        }
    }

    /// Act on the workflow commands the step prints (see [`super::commands`]).
    pub fn enable_commands(&mut self, commands: Commands) {
        self.commands = Some(commands);
    }

    /// What the step's workflow commands set, if they are enabled.
    pub fn commands(&self) -> Option<&Commands> {
        self.commands.as_ref()
    }

    /// Use `cap` bytes instead of [`log_cap`] for the log file.
    pub fn with_log_cap(mut self, cap: u64) -> OutputSink {
        if let Some(l) = &mut self.log {
            l.cap = cap;
        }
        self
    }

    /// Also keep the first `limit_bytes` of stdout, for [`OutputSink::take_stdout`].
    pub fn capture_stdout(&mut self, limit_bytes: usize) {
        self.capture_stream(Stream::Stdout, limit_bytes);
    }

    /// Also keep the first `limit_bytes` of `stream`, for [`OutputSink::take_captured`].
    pub fn capture_stream(&mut self, stream: Stream, limit_bytes: usize) {
        self.capture[slot(stream)] = Some(Capture {
            buf: Vec::new(),
            limit: limit_bytes,
            truncated: false,
        });
    }

    /// The captured stdout and whether more was written than kept; empties
    /// the capture (which goes on capturing).
    pub fn take_stdout(&mut self) -> (Vec<u8>, bool) {
        self.take_captured(Stream::Stdout)
    }

    /// What [`OutputSink::capture_stream`] kept of `stream` since the last call, and
    /// whether more was written than kept; the capture goes on.
    pub fn take_captured(&mut self, stream: Stream) -> (Vec<u8>, bool) {
        match &mut self.capture[slot(stream)] {
            Some(c) => (std::mem::take(&mut c.buf), std::mem::take(&mut c.truncated)),
            None => (Vec::new(), false),
        }
    }

    /// Every byte the command wrote on `stream` so far, whatever was kept.
    pub fn total_bytes(&self, stream: Stream) -> u64 {
        self.totals[slot(stream)]
    }

    /// The log file's path, if the step has one.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_ref().map(|l| l.path.as_path())
    }

    /// Bytes of output that did not fit in the log file.
    pub fn log_dropped(&self) -> u64 {
        self.log.as_ref().map_or(0, |l| l.dropped)
    }

    /// A chunk of output as read from `stream`'s pipe.
    pub fn write(&mut self, stream: Stream, mut bytes: &[u8]) {
        self.totals[slot(stream)] += bytes.len() as u64;
        if let Some(c) = &mut self.capture[slot(stream)] {
            let room = c.limit.saturating_sub(c.buf.len());
            c.buf.extend_from_slice(&bytes[..room.min(bytes.len())]);
            if bytes.len() > room {
                c.truncated = true;
            }
        }
        // A flood the log cannot hold and the events may not show yet costs
        // a count, not a pass over every line.
        if self.log.as_ref().is_none_or(LogFile::full)
            && self.partial[slot(stream)].is_empty()
            && !self.bucket.is_open()
            && (self.commands.is_none() || memchr::memmem::find(bytes, b"::").is_none())
        {
            if let Some(l) = &mut self.log {
                l.dropped += bytes.len() as u64;
            }
            self.hidden_bytes += bytes.len() as u64;
            self.hidden_lines += memchr::memchr_iter(b'\n', bytes).count() as u64;
            return;
        }
        while !bytes.is_empty() {
            let s = slot(stream);
            let room = MAX_LINE - self.partial[s].len();
            let window = &bytes[..room.min(bytes.len())];
            match memchr::memchr(b'\n', window) {
                Some(nl) => {
                    let (line, rest) = bytes.split_at(nl + 1);
                    self.finish_line(stream, line, true);
                    bytes = rest;
                }
                None if bytes.len() >= room => {
                    let (piece, rest) = bytes.split_at(room);
                    self.finish_line(stream, piece, false);
                    bytes = rest;
                }
                None => {
                    self.partial[s].extend_from_slice(bytes);
                    bytes = &[];
                }
            }
        }
    }

    /// A whole line trun itself says on the step's behalf (an action's
    /// output, why it failed): logged and shown like the step's own.
    pub fn line(&mut self, stream: Stream, text: &str) {
        self.write(stream, text.as_bytes());
        self.write(stream, b"\n");
    }

    /// A line for the log only (`--- exit code 1; retrying …`); not counted
    /// against the cap, so it is there even after a cut.
    pub fn note(&mut self, text: &str) {
        if let Some(l) = &mut self.log {
            l.write_note(&self.masker.mask(text));
        }
    }

    /// The command ended: its unfinished last lines count as lines.
    pub fn end_of_output(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let s = slot(stream);
            if !self.partial[s].is_empty() {
                let rest = std::mem::take(&mut self.partial[s]);
                self.emit(stream, &rest, false);
            }
        }
    }

    /// The step is over: say what was cut or held back, and flush the log.
    pub fn finish(&mut self) {
        self.end_of_output();
        self.flush_hidden();
        if let Some(l) = &mut self.log {
            l.finish();
        }
        self.write_annotations();
    }

    /// The step's annotations, one JSON object a line, beside its log
    /// (`NN-step.annotations.jsonl`), for `trun show`.
    fn write_annotations(&mut self) {
        let Some(path) = self
            .log_path()
            .map(|p| p.with_extension("annotations.jsonl"))
        else {
            return;
        };
        let annotations = std::mem::take(&mut self.annotations);
        if annotations.is_empty() {
            return;
        }
        let mut text = String::new();
        for a in &annotations {
            text.push_str(&serde_json::to_string(a).unwrap_or_default());
            text.push('\n');
        }
        if let Err(e) = write_beside_log(&path, text.as_bytes()) {
            eprintln!("trun: warning: cannot write {}: {e}", path.display());
        }
        self.annotations = annotations;
    }

    /// Completes the current line of `stream` with `tail` (which ends in a
    /// newline when `complete`, or fills the line to MAX_LINE).
    fn finish_line(&mut self, stream: Stream, tail: &[u8], complete: bool) {
        let s = slot(stream);
        // A piece cut from an over-long line keeps back its last bytes, which
        // may begin a secret that the next piece ends.
        let keep = if complete || self.masker.is_empty() {
            0
        } else {
            self.masker.longest().saturating_sub(1).min(MAX_LINE / 2)
        };
        if self.partial[s].is_empty() && keep == 0 {
            self.emit(stream, tail, complete);
        } else {
            let mut line = std::mem::take(&mut self.partial[s]);
            line.extend_from_slice(tail);
            let cut = line.len() - keep.min(line.len());
            self.emit(stream, &line[..cut], complete);
            line.drain(..cut);
            self.partial[s] = line;
        }
    }

    fn emit(&mut self, stream: Stream, line: &[u8], complete: bool) {
        if line.is_empty() {
            return;
        }
        let body = if complete {
            &line[..line.len() - 1]
        } else {
            line
        };
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let start = body
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(body.len());
        let seen = match &mut self.commands {
            Some(c) if body[start..].starts_with(b"::") => c.line(&String::from_utf8_lossy(body)),
            _ => Seen::Output,
        };
        // `::add-mask::` masks its own line too.
        let mut full = false;
        if let Seen::Mask(value) = &seen {
            full = !self.masker.add(value);
        }
        let line = self.masker.mask_bytes(line);
        if let Some(l) = &mut self.log {
            l.write_line(stream, &line, complete);
        }
        let event = match seen {
            Seen::Output => None,
            Seen::Mask(_) if full => Some(Event::StepOutput {
                job: self.job.clone(),
                step: self.step,
                stream: Stream::Stderr,
                line: format!(
                    "trun: warning: `::add-mask::` ignored: the run masks {} values at most",
                    crate::secrets::MAX_MASKS
                ),
            }),
            Seen::Done | Seen::Mask(_) => return,
            Seen::Group(title) => Some(Event::StepGroup {
                job: self.job.clone(),
                step: self.step,
                title: Some(title),
            }),
            Seen::EndGroup => Some(Event::StepGroup {
                job: self.job.clone(),
                step: self.step,
                title: None,
            }),
            Seen::Annotate(mut a) => {
                for s in [&mut a.title, &mut a.file].into_iter().flatten() {
                    self.masker.mask_in_place(s);
                }
                self.masker.mask_in_place(&mut a.message);
                if self.annotations.len() < MAX_ANNOTATIONS {
                    self.annotations.push(a.clone());
                }
                Some(Event::Annotation {
                    job: self.job.clone(),
                    step: self.step,
                    annotation: a,
                })
            }
            Seen::Debug(m) => Some(Event::StepOutput {
                job: self.job.clone(),
                step: self.step,
                stream,
                line: format!("debug: {m}"),
            }),
        };
        if !self.bucket.take(line.len() as u64) {
            self.hidden_lines += 1;
            self.hidden_bytes += line.len() as u64;
            return;
        }
        self.flush_hidden();
        match event {
            Some(ev) => self.events.send(ev),
            None => {
                let body = if complete {
                    &line[..line.len() - 1]
                } else {
                    &line[..]
                };
                let body = body.strip_suffix(b"\r").unwrap_or(body);
                self.send(stream, String::from_utf8_lossy(body).into_owned());
            }
        }
    }

    fn flush_hidden(&mut self) {
        if self.hidden_bytes == 0 {
            return;
        }
        let msg = format!(
            "[trun: {} lines ({} bytes) of output not shown here (too fast to display); the step's log has them]",
            self.hidden_lines, self.hidden_bytes
        );
        self.hidden_lines = 0;
        self.hidden_bytes = 0;
        self.send(Stream::Stderr, msg);
    }

    fn send(&self, stream: Stream, line: String) {
        self.events.send_masked(Event::StepOutput {
            job: self.job.clone(),
            step: self.step,
            stream,
            line,
        });
    }
}

impl Drop for OutputSink {
    fn drop(&mut self) {
        if let Some(l) = &mut self.log {
            l.flush();
        }
    }
}

/// Writes a file beside a step's log (`.trun/logs/<run>/<job>/…`), never
/// through a link a step planted.
pub fn write_beside_log(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let run_dir = path
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| std::io::Error::other("a log path needs a run directory"))?;
    let mut f = crate::fsutil::safe_create(run_dir, path)?;
    f.write_all(bytes)
}

/// A token bucket over bytes of event lines. Once empty it stays shut until
/// a quarter of the burst has come back, so a steady flood gives a notice
/// about once a second rather than one per line let through.
struct Bucket {
    tokens: f64,
    last: Instant,
    shut: bool,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            tokens: EVENT_BURST as f64,
            last: Instant::now(),
            shut: false,
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * EVENT_RATE as f64).min(EVENT_BURST as f64);
        if self.shut && self.tokens >= (EVENT_BURST / 4) as f64 {
            self.shut = false;
        }
    }

    /// Whether a line could be let through now.
    fn is_open(&mut self) -> bool {
        if self.shut {
            self.refill();
        }
        !self.shut
    }

    fn take(&mut self, n: u64) -> bool {
        if self.shut || self.tokens < n as f64 {
            self.refill();
        }
        if !self.shut && self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            self.shut = true;
            false
        }
    }
}

/// A step's log file: created on the first byte, never through a symlink,
/// at most `cap` bytes of output plus trun's own notes.
struct LogFile {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    broken: bool,
    cap: u64,
    written: u64,
    dropped: u64,
    /// The stream whose line the log's last bytes left unfinished (a piece
    /// of an over-long line); another stream's line starts on a new line.
    open_line: Option<Stream>,
    at_line_start: bool,
}

impl LogFile {
    fn new(path: PathBuf, cap: u64) -> LogFile {
        LogFile {
            path,
            file: None,
            broken: false,
            cap,
            written: 0,
            dropped: 0,
            open_line: None,
            at_line_start: true,
        }
    }

    fn full(&self) -> bool {
        self.written >= self.cap
    }

    fn open(&mut self) -> Option<&mut std::io::BufWriter<std::fs::File>> {
        if self.broken {
            return None;
        }
        if self.file.is_none() {
            // `.trun/logs/<run>/<job>/NN-step.log`: the run's log directory was made
            // fresh by the session; below it, a link a step planted (for a later
            // step's log, say) is never followed.
            let opened = match self.path.parent().and_then(Path::parent) {
                Some(run_dir) => crate::fsutil::safe_create(run_dir, &self.path),
                None => Err(std::io::Error::other("a log path needs a run directory")),
            };
            match opened {
                Ok(f) => self.file = Some(std::io::BufWriter::with_capacity(64 * 1024, f)),
                Err(e) => {
                    self.broken = true;
                    eprintln!(
                        "trun: warning: cannot write log {}: {e}",
                        self.path.display()
                    );
                    return None;
                }
            }
        }
        self.file.as_mut()
    }

    fn raw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.at_line_start = bytes.ends_with(b"\n");
        if let Some(f) = self.open() {
            if f.write_all(bytes).is_err() {
                self.broken = true;
            }
        }
    }

    fn write_line(&mut self, stream: Stream, line: &[u8], complete: bool) {
        if self.open_line.is_some_and(|s| s != stream) && !self.at_line_start {
            self.raw(b"\n");
        }
        let room = self.cap.saturating_sub(self.written) as usize;
        let kept = &line[..room.min(line.len())];
        self.dropped += (line.len() - kept.len()) as u64;
        self.written += kept.len() as u64;
        self.raw(kept);
        self.open_line = (!complete).then_some(stream);
    }

    fn write_note(&mut self, text: &str) {
        if !self.at_line_start {
            self.raw(b"\n");
        }
        self.raw(text.as_bytes());
        self.raw(b"\n");
        self.open_line = None;
    }

    fn finish(&mut self) {
        if self.dropped > 0 {
            let cap = if self.cap >= 1024 * 1024 && self.cap.is_multiple_of(1024 * 1024) {
                format!("{} MiB", self.cap / (1024 * 1024))
            } else {
                format!("{} bytes", self.cap)
            };
            let note = format!(
                "[trun: output cut after {cap}; {} bytes dropped]",
                self.dropped
            );
            self.write_note(&note);
            self.dropped = 0;
        }
        self.flush();
    }

    fn flush(&mut self) {
        if let Some(f) = &mut self.file {
            let _ = f.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(dir: &Path) -> (OutputSink, std::sync::mpsc::Receiver<Event>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let s = OutputSink::new(Some(dir.join("x.log")), Events::new(tx), "j".into(), 0);
        (s, rx)
    }

    fn lines(rx: &std::sync::mpsc::Receiver<Event>) -> Vec<(Stream, String)> {
        rx.try_iter()
            .filter_map(|e| match e {
                Event::StepOutput { stream, line, .. } => Some((stream, line)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn streams_stay_apart_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, rx) = sink(dir.path());
        s.write(Stream::Stdout, b"a\nb");
        s.write(Stream::Stderr, b"err\r\n");
        s.write(Stream::Stdout, b"c\n");
        s.finish();
        assert_eq!(
            lines(&rx),
            vec![
                (Stream::Stdout, "a".into()),
                (Stream::Stderr, "err".into()),
                (Stream::Stdout, "bc".into()),
            ]
        );
        let log = std::fs::read_to_string(dir.path().join("x.log")).unwrap();
        assert_eq!(log, "a\nerr\r\nbc\n");
    }

    #[test]
    fn a_long_line_is_split_and_the_log_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let (s, rx) = sink(dir.path());
        let mut s = s.with_log_cap(100_000);
        s.capture_stdout(10);
        let chunk = vec![b'x'; 50_000];
        for _ in 0..4 {
            s.write(Stream::Stdout, &chunk);
        }
        s.finish();
        let got = lines(&rx);
        assert_eq!(got.len(), 4, "200 000 bytes = 3 full pieces and a rest");
        assert!(got.iter().all(|(_, l)| l.len() <= MAX_LINE));
        let log = std::fs::read(dir.path().join("x.log")).unwrap();
        let text = String::from_utf8_lossy(&log);
        assert!(
            text.ends_with("\n[trun: output cut after 100000 bytes; 100000 bytes dropped]\n"),
            "{}",
            &text[text.len() - 100..]
        );
        assert_eq!(&log[..100_000], &[b'x'; 100_000][..]);
        assert_eq!(
            log.len(),
            100_000 + "\n[trun: output cut after 100000 bytes; 100000 bytes dropped]\n".len()
        );
        assert_eq!(s.take_stdout(), (vec![b'x'; 10], true));
        assert_eq!(s.total_bytes(Stream::Stdout), 200_000);
        assert_eq!(s.total_bytes(Stream::Stderr), 0);
    }

    #[test]
    fn a_flood_of_events_is_held_back_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, rx) = sink(dir.path());
        let line = [b'y'; 99].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        let block: Vec<u8> = line.repeat(1000);
        // 10 MB at once: more than the burst.
        for _ in 0..100 {
            s.write(Stream::Stdout, &block);
        }
        s.finish();
        let got = lines(&rx);
        let shown: u64 = got.iter().map(|(_, l)| l.len() as u64 + 1).sum();
        assert!(shown <= EVENT_BURST + EVENT_RATE * 2, "{shown}");
        let notice = &got.last().unwrap().1;
        assert!(notice.contains("not shown here"), "{notice}");
        let log = std::fs::metadata(dir.path().join("x.log")).unwrap().len();
        assert_eq!(log, 10_000_000);
    }

    fn masked_sink(dir: &Path, secret: &str) -> (OutputSink, std::sync::mpsc::Receiver<Event>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let masker = crate::secrets::Masker::default();
        masker.add(secret);
        let s = OutputSink::new(
            Some(dir.join("x.log")),
            Events::masked(tx, masker),
            "j".into(),
            0,
        );
        (s, rx)
    }

    #[test]
    fn a_secret_split_across_reads_or_a_long_line_cut_is_masked() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, rx) = masked_sink(dir.path(), "hunter2-secret");
        s.write(Stream::Stdout, b"token: hunter2-");
        s.write(Stream::Stdout, b"secret!\n");
        // A line longer than MAX_LINE with the secret right across the cut.
        let mut long = vec![b'x'; MAX_LINE - 5];
        long.extend_from_slice(b"hunter2-secret");
        long.extend_from_slice(&[b'y'; 10]);
        long.push(b'\n');
        for chunk in long.chunks(1000) {
            s.write(Stream::Stderr, chunk);
        }
        s.finish();
        let got = lines(&rx);
        assert_eq!(got[0], (Stream::Stdout, "token: ***!".to_string()));
        let joined: String = got[1..].iter().map(|(_, l)| l.as_str()).collect();
        assert!(!joined.contains("hunter2"), "a piece shows the secret");
        assert!(joined.contains("***"));
        let log = std::fs::read_to_string(dir.path().join("x.log")).unwrap();
        assert!(!log.contains("hunter2"), "the log shows the secret");
        assert_eq!(log.matches("***").count(), 2);
    }

    #[test]
    fn add_mask_masks_its_own_line_and_what_follows() {
        use crate::exec::commands::Commands;
        let dir = tempfile::tempdir().unwrap();
        let (mut s, rx) = sink(dir.path());
        s.enable_commands(Commands::new(false, false));
        s.write(
            Stream::Stdout,
            b"::add-mask::s3cr3t-value\nnow s3cr3t-value\n",
        );
        s.write(Stream::Stdout, b"::group::Build\nin\n::endgroup::\n");
        s.write(
            Stream::Stdout,
            b"::error file=a.c,line=2::s3cr3t-value broke\n",
        );
        s.finish();
        let events: Vec<Event> = rx.try_iter().collect();
        let text = format!("{events:?}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(matches!(&events[0], Event::StepOutput { line, .. } if line == "now ***"));
        assert!(matches!(&events[1], Event::StepGroup { title: Some(t), .. } if t == "Build"));
        assert!(matches!(&events[3], Event::StepGroup { title: None, .. }));
        assert!(
            matches!(&events[4], Event::Annotation { annotation, .. } if annotation.render() == "a.c:2: error: *** broke")
        );
        let log = std::fs::read_to_string(dir.path().join("x.log")).unwrap();
        assert!(log.starts_with("::add-mask::***\nnow ***\n"), "{log}");
        let kept = std::fs::read_to_string(dir.path().join("x.annotations.jsonl"));
        // The sink's log is not under a run directory here: nothing kept.
        assert!(kept.is_err() || !kept.unwrap().contains("s3cr3t"));
    }
}
