//! The image a rubric's criteria run in: found locally, or built from the rubric's
//! Dockerfile with the `docker/build` built-in. trun never pulls implicitly.

use std::path::Path;

use crate::docker::actions::{ActionCtx, Memory};
use crate::docker::{Docker, DockerError};
use crate::event::Stream;
use crate::rubric::Container;

/// Why a grading container cannot be set up at all (before any repository is graded).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "the rubric's image {image} is not present locally (trun never pulls implicitly); run `docker pull {image}` first"
    )]
    Missing { image: String },
    #[error("cannot build the rubric's image from {dockerfile}: {message}")]
    Build { dockerfile: String, message: String },
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// The image a rubric's criteria run in: its tag and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub tag: String,
    pub id: String,
}

/// Finds the rubric's `container.image` locally, or builds `container.dockerfile` (relative
/// to `rubric_dir`, like the rubric says) with the `docker/build` built-in, which skips the
/// build when the Dockerfile and its context are unchanged (remembered in `memory`).
/// Build output lines go to `on_line`.
pub async fn resolve_image(
    docker: &Docker,
    container: &Container,
    rubric_dir: &Path,
    memory: &dyn Memory,
    on_line: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<Image, ImageError> {
    if let Some(tag) = &container.image {
        return match docker.image_id(tag).await? {
            Some(id) => Ok(Image {
                tag: tag.clone(),
                id,
            }),
            None => Err(ImageError::Missing { image: tag.clone() }),
        };
    }
    let dockerfile = container.dockerfile.clone().unwrap_or_default();
    let context = container.context.clone().unwrap_or_else(|| {
        Path::new(&dockerfile)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| ".".to_string())
    });
    let dir = rubric_dir
        .canonicalize()
        .unwrap_or_else(|_| rubric_dir.to_path_buf());
    // One tag per Dockerfile location: rebuilding it replaces the old image, and two
    // rubrics in different directories never share one by accident.
    let key = {
        use sha2::Digest;
        let h = sha2::Sha256::digest(format!("{}\0{dockerfile}\0{context}", dir.display()));
        hex::encode(&h[..6])
    };
    let tag = format!("trun-grade:{key}");
    let with = serde_json::Map::from_iter([
        ("context".to_string(), context.into()),
        ("dockerfile".to_string(), dockerfile.clone().into()),
        ("tag".to_string(), tag.clone().into()),
    ]);
    let ctx = ActionCtx {
        run_id: 0,
        job: "grade".to_string(),
        step_key: format!("grade/{key}"),
        workspace: dir,
        docker: Some(docker),
        memory,
    };
    let build_error = |message: String| ImageError::Build {
        dockerfile: dockerfile.clone(),
        message,
    };
    let result = crate::docker::actions::run("docker/build", &with, &ctx, on_line)
        .await
        .map_err(|e| build_error(e.to_string()))?;
    if !result.success {
        return Err(build_error(result.message.unwrap_or_default()));
    }
    let id = match result.outputs.get("image-id") {
        Some(id) => id.clone(),
        None => docker.require_image(&tag).await?,
    };
    Ok(Image { tag, id })
}
