//! `docker/pull`: pull an image, verify its id when asked, and do not pull again
//! within `min-interval` of the last successful pull.

use super::schema::{parse_duration, text};
use super::{ActionCtx, ActionError, ActionResult};
use crate::docker::{Docker, DockerError};
use crate::event::Stream;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `repo[:tag]` or `repo@digest` split as the create-image API wants it; a
/// registry port (`127.0.0.1:5000/x`) is not mistaken for a tag.
pub(super) fn split_ref(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (&image[..name_start + i], &image[name_start + i + 1..]),
        None => (image, "latest"),
    }
}

/// Image ids compare without the `sha256:` prefix, and an abbreviated expected id
/// (12+ hex digits, as `docker images` prints) matches its full form.
pub(super) fn same_image_id(actual: &str, expected: &str) -> bool {
    let a = actual.trim().trim_start_matches("sha256:");
    let e = expected.trim().trim_start_matches("sha256:");
    a == e || (e.len() >= 12 && a.starts_with(e))
}

fn memory_key(image: &str) -> String {
    format!("docker/pull/{image}")
}

fn now_secs() -> i64 {
    crate::event::now_ms() / 1000
}

/// `2h`, `5m`, `40s`, `3d`: the age in its largest sensible unit.
pub(super) fn human_age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 90 => format!("{s}s"),
        s if s < 90 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The skip reason when the last pull is within `min-interval` and the image
/// (with the recorded id, and the expected one if given) is still present.
async fn recent_pull(
    with: &Map<String, Value>,
    ctx: &ActionCtx<'_>,
    docker: Option<&Docker>,
) -> Option<(String, String)> {
    let interval = parse_duration(&text(with, "min-interval")?)?;
    let image = text(with, "image")?;
    let record = ctx.memory.get(&memory_key(&image))?;
    let (at, id) = record.split_once(' ')?;
    let age = now_secs() - at.parse::<i64>().ok()?;
    if age < 0 || age as u64 >= interval.as_secs() {
        return None;
    }
    if let Some(expected) = text(with, "image-id") {
        if !same_image_id(id, &expected) {
            return None;
        }
    }
    if let Some(d) = docker {
        if !same_image_id(&d.image_id(&image).await.ok()??, id) {
            return None;
        }
    }
    Some((format!("pulled {} ago", human_age(age)), id.to_string()))
}

pub async fn plan_skip(with: &Map<String, Value>, ctx: &ActionCtx<'_>) -> Option<String> {
    recent_pull(with, ctx, ctx.docker)
        .await
        .map(|(reason, _)| reason)
}

pub async fn run(
    with: &Map<String, Value>,
    ctx: &ActionCtx<'_>,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<ActionResult, ActionError> {
    let docker = ctx.docker("docker/pull")?;
    let image = text(with, "image").unwrap_or_default();
    if let Some((reason, id)) = recent_pull(with, ctx, Some(docker)).await {
        return Ok(ActionResult::skipped(
            reason,
            BTreeMap::from([("image-id".to_string(), id)]),
        ));
    }
    let (repo, tag) = split_ref(&image);
    let mut opts = CreateImageOptionsBuilder::default().from_image(repo);
    if !tag.is_empty() {
        opts = opts.tag(tag);
    }
    let mut stream = docker.api().create_image(Some(opts.build()), None, None);
    while let Some(item) = stream.next().await {
        match item {
            // Per-layer progress ticks are noise in a log; statuses are not.
            Ok(info)
                if info
                    .progress_detail
                    .as_ref()
                    .is_some_and(|p| p.current.is_some()) => {}
            Ok(info) => {
                if let Some(status) = info.status {
                    let line = match info.id {
                        Some(id) => format!("{id}: {status}"),
                        None => status,
                    };
                    out(Stream::Stdout, line);
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Ok(ActionResult::failed(format!(
                    "pulling {image} failed: {}",
                    error.trim()
                )));
            }
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                return Ok(ActionResult::failed(format!(
                    "pulling {image} failed: {}",
                    message.trim()
                )));
            }
            Err(e) => return Err(DockerError::api(format!("pulling {image}"), e).into()),
        }
    }
    let id = docker.require_image(&image).await?;
    if let Some(expected) = text(with, "image-id") {
        if !same_image_id(&id, &expected) {
            return Ok(ActionResult::failed(format!(
                "image {image} has id {id}, but image-id expects {expected}"
            )));
        }
    }
    ctx.memory
        .set(&memory_key(&image), &format!("{} {id}", now_secs()));
    Ok(ActionResult::ok(BTreeMap::from([(
        "image-id".to_string(),
        id,
    )])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_split_like_docker() {
        assert_eq!(split_ref("busybox"), ("busybox", "latest"));
        assert_eq!(split_ref("a/b:1.2"), ("a/b", "1.2"));
        assert_eq!(
            split_ref("127.0.0.1:5000/x/y"),
            ("127.0.0.1:5000/x/y", "latest")
        );
        assert_eq!(split_ref("127.0.0.1:5000/x:v1"), ("127.0.0.1:5000/x", "v1"));
        assert_eq!(split_ref("x@sha256:ab"), ("x@sha256:ab", ""));
    }

    #[test]
    fn image_ids_compare_loosely_but_not_too_loosely() {
        let full = "sha256:0123456789abcdef0123";
        assert!(same_image_id(full, "0123456789abcdef0123"));
        assert!(same_image_id(full, "0123456789ab"));
        assert!(!same_image_id(full, "0123"));
        assert!(!same_image_id(full, "sha256:ffff"));
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(human_age(40), "40s");
        assert_eq!(human_age(600), "10m");
        assert_eq!(human_age(7300), "2h");
        assert_eq!(human_age(3 * 86400), "3d");
    }
}
