//! `trun serve` as a team cache: the Bazel HTTP remote-cache protocol at
//! `/cas/<sha256>` and `/ac/<key>` (also below `/<instance>/`), GET, HEAD and
//! PUT, behind the API's bearer token.
//!
//! Blobs live in the server workspace's own CAS (`.trun/cas`), so they are
//! the same files a local restore reads; a blob is accepted only when its
//! bytes hash to its name. Entries are JSON `ActionResult`s kept in the
//! store (namespace `remote-ac`), so they are stored wherever the server's
//! state is. The server does not interpret entries: clients check them.
//!
//! Bounded: a blob larger than [`MAX_BLOB`] or an entry larger than
//! [`MAX_ENTRY`] is refused (413) while it streams in, never buffered whole.

use super::api::AppState;
use super::error::ApiError;
use crate::uptodate::cas::Cas;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use sha2::Digest;
use std::io::Write;
use std::sync::Arc;

/// The largest blob accepted.
pub const MAX_BLOB: u64 = 1 << 30;
/// The largest `/ac/` entry accepted.
pub const MAX_ENTRY: u64 = crate::cache::action_result::MAX_ENTRY_BYTES;
const AC_NAMESPACE: &str = "remote-ac";

type St = State<Arc<AppState>>;

/// The cache routes; the caller puts them behind its auth layer.
pub fn routes() -> Router<Arc<AppState>> {
    let cas = || get(get_blob).head(head_blob).put(put_blob);
    let ac = || get(get_entry).head(head_entry).put(put_entry);
    Router::new()
        .route("/cas/{hash}", cas())
        .route("/ac/{key}", ac())
        .route(
            "/{instance}/cas/{hash}",
            get(|s: St, Path((_, h)): Path<(String, String)>| get_blob(s, Path(h)))
                .head(|s: St, Path((_, h)): Path<(String, String)>| head_blob(s, Path(h)))
                .put(|s: St, Path((_, h)): Path<(String, String)>, b: Body| {
                    put_blob(s, Path(h), b)
                }),
        )
        .route(
            "/{instance}/ac/{key}",
            get(|s: St, Path((_, k)): Path<(String, String)>| get_entry(s, Path(k)))
                .head(|s: St, Path((_, k)): Path<(String, String)>| head_entry(s, Path(k)))
                .put(|s: St, Path((_, k)): Path<(String, String)>, b: Body| {
                    put_entry(s, Path(k), b)
                }),
        )
}

fn cas(s: &AppState) -> Cas {
    Cas::new(&s.runs.root.join(".trun").join("cas"))
}

/// A lowercase sha256 in hex, as the protocol names blobs and entries.
fn parse_hash(text: &str) -> Result<[u8; 32], ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "`{}` is not a lowercase sha256 in hex",
            text.chars().take(80).collect::<String>()
        ))
    };
    if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad());
    }
    let bytes = hex::decode(text).map_err(|_| bad())?;
    let mut h = [0u8; 32];
    h.copy_from_slice(&bytes);
    Ok(h)
}

fn too_large(what: &str, max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("{what} larger than {max} bytes"),
    )
}

fn missing(what: &str) -> ApiError {
    ApiError::not_found(format!("no such {what}"))
}

async fn head_blob(State(s): St, Path(hash): Path<String>) -> Result<Response, ApiError> {
    let h = parse_hash(&hash)?;
    if h == crate::cache::client::EMPTY_HASH {
        return Ok(StatusCode::OK.into_response());
    }
    let path = cas(&s).object_path(&h);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {
            Ok(([(header::CONTENT_LENGTH, m.len())], StatusCode::OK).into_response())
        }
        _ => Err(missing("blob")),
    }
}

async fn get_blob(State(s): St, Path(hash): Path<String>) -> Result<Response, ApiError> {
    let h = parse_hash(&hash)?;
    if h == crate::cache::client::EMPTY_HASH {
        return Ok(StatusCode::OK.into_response());
    }
    let path = cas(&s).object_path(&h);
    let file = match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => tokio::fs::File::open(&path)
            .await
            .map_err(|_| missing("blob"))?,
        _ => return Err(missing("blob")),
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Streams `body` into a temporary file under the CAS directory, at most
/// `max` bytes, returning it with the sha256 of its bytes.
async fn receive(
    dir: &std::path::Path,
    body: Body,
    max: u64,
    what: &str,
) -> Result<(tempfile::NamedTempFile, [u8; 32]), ApiError> {
    crate::fsutil::private_dir(dir).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-put-")
        .tempfile_in(dir)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        size += chunk.len() as u64;
        if size > max {
            return Err(too_large(what, max));
        }
        hasher.update(&chunk);
        tmp.write_all(&chunk)
            .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    Ok((tmp, hasher.finalize().into()))
}

async fn put_blob(
    State(s): St,
    Path(hash): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let h = parse_hash(&hash)?;
    let cas = cas(&s);
    let dir = s.runs.root.join(".trun").join("cas");
    let (tmp, got) = receive(&dir, body, MAX_BLOB, "a blob").await?;
    if got != h {
        return Err(ApiError::bad_request(format!(
            "the body's sha256 is {}, not {hash}",
            hex::encode(got)
        )));
    }
    if h != crate::cache::client::EMPTY_HASH && !cas.contains(&h) {
        let path = tmp.path().to_path_buf();
        tokio::task::spawn_blocking(move || cas.store(&path, Some(h)).map(drop))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    Ok(StatusCode::OK.into_response())
}

fn entry(s: &AppState, key: &str) -> Result<Option<String>, ApiError> {
    parse_hash(key)?;
    s.runs
        .store
        .kv_get(AC_NAMESPACE, key)
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn head_entry(State(s): St, Path(key): Path<String>) -> Result<Response, ApiError> {
    match entry(&s, &key)? {
        Some(e) => Ok(([(header::CONTENT_LENGTH, e.len())], StatusCode::OK).into_response()),
        None => Err(missing("entry")),
    }
}

async fn get_entry(State(s): St, Path(key): Path<String>) -> Result<Response, ApiError> {
    match entry(&s, &key)? {
        Some(e) => Ok(([(header::CONTENT_TYPE, "application/json")], e).into_response()),
        None => Err(missing("entry")),
    }
}

async fn put_entry(
    State(s): St,
    Path(key): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    parse_hash(&key)?;
    let mut bytes = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if (bytes.len() + chunk.len()) as u64 > MAX_ENTRY {
            return Err(too_large("an entry", MAX_ENTRY));
        }
        bytes.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(bytes)
        .ok()
        .filter(|t| serde_json::from_str::<serde_json::Value>(t).is_ok_and(|v| v.is_object()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "an entry must be a JSON ActionResult (Content-Type: application/json)",
            )
        })?;
    s.runs
        .store
        .kv_set(AC_NAMESPACE, &key, &text)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(StatusCode::OK.into_response())
}
