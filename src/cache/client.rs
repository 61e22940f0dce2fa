//! HTTP for the Bazel remote-cache protocol: `GET|HEAD|PUT /cas/<sha256>` and
//! `/ac/<key>` below a base URL (`http://host[:port]/[instance]`).
//!
//! Every call is bounded: a connect timeout, a per-request timeout, and a
//! limit on the bytes read from a response (a blob streams to a file while
//! it is hashed; it is kept only if its hash is the one asked for). The
//! calls block; they run on a thread of their own so that they may be made
//! from inside the engine's async runtime.

use super::action_result::{Digest, MAX_ENTRY_BYTES};
use sha2::Digest as _;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// sha256 of nothing: the empty blob is never fetched nor stored (a WebDAV
/// server may not have it; bazel-remote always does).
pub const EMPTY_HASH: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// What went wrong talking to the cache server: the run goes on without it.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Transport(String),
    #[error("{method} {url}: HTTP {status}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
    },
    #[error("{0}: the response is larger than the limit of {1} bytes")]
    TooLarge(String, u64),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// A blob fetched into a file, or why not.
pub enum Fetched {
    Ok,
    Missing,
    /// The server answered with bytes whose hash or size is not the blob's.
    Corrupt,
}

pub struct Client {
    base: String,
    token: Option<String>,
    /// For each request, from connecting to the last byte.
    timeout: Duration,
    http: OnceLock<Result<reqwest::blocking::Client, String>>,
}

/// Runs `f` on a fresh thread: the blocking client refuses to run inside an
/// async runtime, and the engine calls the cache from one.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    })
}

impl Client {
    /// `base` without a trailing slash.
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            timeout,
            http: OnceLock::new(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn http(&self) -> Result<&reqwest::blocking::Client, HttpError> {
        self.http
            .get_or_init(|| {
                reqwest::blocking::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT.min(self.timeout))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| HttpError::Transport(e.clone()))
    }

    fn url(&self, kind: &str, name: &str) -> String {
        format!("{}/{kind}/{name}", self.base)
    }

    fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::blocking::RequestBuilder, HttpError> {
        let mut r = self.http()?.request(method, url).timeout(self.timeout);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        Ok(r)
    }

    fn send(
        &self,
        method: &'static str,
        url: &str,
        r: reqwest::blocking::RequestBuilder,
    ) -> Result<Option<reqwest::blocking::Response>, HttpError> {
        let resp = r
            .send()
            .map_err(|e| HttpError::Transport(format!("{method} {url}: {}", without_url(&e))))?;
        match resp.status().as_u16() {
            200..=299 => Ok(Some(resp)),
            404 => Ok(None),
            status => Err(HttpError::Status {
                method,
                url: url.to_string(),
                status,
            }),
        }
    }

    /// A PUT: a 404 (a read-only WebDAV location) is an error too.
    fn send_put(&self, url: String, r: reqwest::blocking::RequestBuilder) -> Result<(), HttpError> {
        match self.send("PUT", &url, r)? {
            Some(_) => Ok(()),
            None => Err(HttpError::Status {
                method: "PUT",
                url,
                status: 404,
            }),
        }
    }

    /// `GET /ac/<key>`: `None` on a miss.
    pub fn get_ac(&self, key: &str) -> Result<Option<Vec<u8>>, HttpError> {
        off_runtime(|| {
            let url = self.url("ac", key);
            let r = self
                .request(reqwest::Method::GET, &url)?
                .header(reqwest::header::ACCEPT, "application/json");
            let Some(resp) = self.send("GET", &url, r)? else {
                return Ok(None);
            };
            let mut body = Vec::new();
            read_bounded(resp, &mut body, MAX_ENTRY_BYTES, &url)?;
            Ok(Some(body))
        })
    }

    /// `PUT /ac/<key>`.
    pub fn put_ac(&self, key: &str, body: Vec<u8>) -> Result<(), HttpError> {
        off_runtime(|| {
            let url = self.url("ac", key);
            let r = self
                .request(reqwest::Method::PUT, &url)?
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            self.send_put(url, r)
        })
    }

    /// `HEAD /cas/<hash>`: is the blob there?
    pub fn has_blob(&self, d: &Digest) -> Result<bool, HttpError> {
        if d.hash == EMPTY_HASH {
            return Ok(true);
        }
        off_runtime(|| {
            let url = self.url("cas", &d.hex());
            let r = self.request(reqwest::Method::HEAD, &url)?;
            Ok(self.send("HEAD", &url, r)?.is_some())
        })
    }

    /// `PUT /cas/<hash>` with the bytes of `file`.
    pub fn put_blob(&self, d: &Digest, file: &Path) -> Result<(), HttpError> {
        if d.hash == EMPTY_HASH {
            return Ok(());
        }
        off_runtime(|| {
            let url = self.url("cas", &d.hex());
            let f = std::fs::File::open(file)
                .map_err(|e| HttpError::Io(format!("read {}", file.display()), e))?;
            let r = self
                .request(reqwest::Method::PUT, &url)?
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, d.size)
                .body(reqwest::blocking::Body::sized(f, d.size));
            self.send_put(url, r)
        })
    }

    /// `PUT /cas/<hash>` with bytes in memory.
    pub fn put_blob_bytes(&self, d: &Digest, bytes: Vec<u8>) -> Result<(), HttpError> {
        if d.hash == EMPTY_HASH {
            return Ok(());
        }
        off_runtime(|| {
            let url = self.url("cas", &d.hex());
            let r = self
                .request(reqwest::Method::PUT, &url)?
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes);
            self.send_put(url, r)
        })
    }

    /// `GET /cas/<hash>` into `to`, reading at most `d.size` bytes and
    /// checking the sha256 of what was read. The empty blob is not fetched.
    pub fn get_blob(&self, d: &Digest, to: &mut std::fs::File) -> Result<Fetched, HttpError> {
        if d.hash == EMPTY_HASH && d.size == 0 {
            return Ok(Fetched::Ok);
        }
        off_runtime(|| {
            let url = self.url("cas", &d.hex());
            let r = self.request(reqwest::Method::GET, &url)?;
            let Some(resp) = self.send("GET", &url, r)? else {
                return Ok(Fetched::Missing);
            };
            let mut hasher = sha2::Sha256::new();
            let mut sink = HashingWriter {
                to,
                hasher: &mut hasher,
            };
            match read_bounded(resp, &mut sink, d.size, &url) {
                Ok(n) if n == d.size => {}
                Ok(_) | Err(HttpError::TooLarge(..)) => return Ok(Fetched::Corrupt),
                Err(e) => return Err(e),
            }
            let got: [u8; 32] = hasher.finalize().into();
            Ok(if got == d.hash {
                Fetched::Ok
            } else {
                Fetched::Corrupt
            })
        })
    }

    /// `GET /cas/<hash>` into memory (logs, outputs), bounded by `d.size`.
    pub fn get_blob_bytes(&self, d: &Digest) -> Result<Option<Vec<u8>>, HttpError> {
        let mut tmp =
            tempfile::tempfile().map_err(|e| HttpError::Io("create a temporary file".into(), e))?;
        match self.get_blob(d, &mut tmp)? {
            Fetched::Ok => {}
            Fetched::Missing | Fetched::Corrupt => return Ok(None),
        }
        use std::io::Seek;
        // The file holds what was read, no more than `d.size` bytes; a size
        // named by someone else is not taken as an allocation on trust.
        let mut out = Vec::new();
        tmp.seek(std::io::SeekFrom::Start(0))
            .and_then(|_| tmp.read_to_end(&mut out))
            .map_err(|e| HttpError::Io("read a temporary file".into(), e))?;
        Ok(Some(out))
    }
}

/// What a person needs from reqwest's error: the innermost cause
/// (`Connection refused`), or that it timed out.
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut last: &dyn std::error::Error = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

struct HashingWriter<'a> {
    to: &'a mut std::fs::File,
    hasher: &'a mut sha2::Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.to.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.to.flush()
    }
}

/// Copies the body into `to`, failing past `max` bytes. Returns bytes copied.
fn read_bounded(
    resp: reqwest::blocking::Response,
    to: &mut impl Write,
    max: u64,
    url: &str,
) -> Result<u64, HttpError> {
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(HttpError::TooLarge(url.to_string(), max));
    }
    let mut limited = resp.take(max + 1);
    let n = std::io::copy(&mut limited, to)
        .map_err(|e| HttpError::Transport(format!("GET {url}: reading the response: {e}")))?;
    if n > max {
        return Err(HttpError::TooLarge(url.to_string(), max));
    }
    Ok(n)
}
