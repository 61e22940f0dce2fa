//! `docker/exec`: run labelled commands in a running container found by id, name
//! or image, refusing when its image is not the expected one.

use super::pull::same_image_id;
use super::schema::{commands, table, text};
use super::{ActionCtx, ActionError, ActionResult};
use crate::docker::{Docker, DockerError, LABEL_RUN};
use crate::event::Stream;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::ListContainersOptionsBuilder;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

pub async fn run(
    with: &Map<String, Value>,
    ctx: &ActionCtx<'_>,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<ActionResult, ActionError> {
    let docker = ctx.docker("docker/exec")?;
    let container = match target(docker, with, ctx).await? {
        Ok(c) => c,
        Err(problem) => return Ok(ActionResult::failed(problem)),
    };
    let id = container.id.clone().unwrap_or_default();
    let short = &id[..12.min(id.len())];
    if container.state.as_ref().and_then(|s| s.running) != Some(true) {
        return Ok(ActionResult::failed(format!(
            "container {short} is not running"
        )));
    }
    let image_id = container.image.clone().unwrap_or_default();
    if let Some(expected) = text(with, "expect-image-id") {
        if !same_image_id(&image_id, &expected) {
            return Ok(ActionResult::failed(format!(
                "refusing to run in container {short}: it runs image {image_id}, but expect-image-id is {expected}"
            )));
        }
    }
    let workdir = container
        .config
        .and_then(|c| c.working_dir)
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());
    let env = table(with, "env");
    let mut outputs = BTreeMap::new();
    for (label, command) in commands(with, "commands") {
        out(Stream::Stdout, format!("==> {label}"));
        let argv = vec!["sh".to_string(), "-c".to_string(), command];
        let outcome = docker
            .exec(&id, argv, env.clone(), &PathBuf::from(&workdir), out)
            .await?;
        outputs.insert(label.clone(), outcome.exit_code.to_string());
        if outcome.exit_code != 0 {
            let mut failed = ActionResult::failed(format!(
                "command `{label}` exited with code {}",
                outcome.exit_code
            ));
            failed.outputs = outputs;
            return Ok(failed);
        }
    }
    Ok(ActionResult::ok(outputs))
}

/// The container to exec in, or a message saying why there is none.
async fn target(
    docker: &Docker,
    with: &Map<String, Value>,
    ctx: &ActionCtx<'_>,
) -> Result<Result<ContainerInspectResponse, String>, DockerError> {
    let by_ref = text(with, "container-id").or_else(|| text(with, "container"));
    if let Some(reference) = by_ref {
        return match docker.api().inspect_container(&reference, None).await {
            Ok(info) => Ok(Ok(info)),
            Err(e) if crate::docker::error::is_not_found(&e) => {
                Ok(Err(format!("no container {reference}")))
            }
            Err(e) => Err(DockerError::api(
                format!("inspecting container {reference}"),
                e,
            )),
        };
    }
    let image = text(with, "image").unwrap_or_default();
    let image_id = docker.require_image(&image).await?;
    let filters = HashMap::from([
        ("ancestor", vec![image.as_str()]),
        ("status", vec!["running"]),
    ]);
    let running = docker
        .api()
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| DockerError::api(format!("listing containers of {image}"), e))?;
    // `ancestor` also matches images built FROM this one; we want this very image.
    let mut found: Vec<_> = running
        .into_iter()
        .filter(|c| {
            c.image_id
                .as_deref()
                .is_some_and(|i| same_image_id(i, &image_id))
        })
        .collect();
    if found.len() > 1 {
        let this_run = ctx.run_id.to_string();
        let ours: Vec<_> = found
            .iter()
            .filter(|c| c.labels.as_ref().and_then(|l| l.get(LABEL_RUN)) == Some(&this_run))
            .cloned()
            .collect();
        if !ours.is_empty() {
            found = ours;
        }
    }
    let ids: Vec<String> = found.iter().filter_map(|c| c.id.clone()).collect();
    match ids.as_slice() {
        [] => Ok(Err(format!("no running container of image {image}; start one with docker/run"))),
        [one] => docker
            .api()
            .inspect_container(one, None)
            .await
            .map(Ok)
            .map_err(|e| DockerError::api(format!("inspecting container {one}"), e)),
        many => Ok(Err(format!(
            "{} running containers of image {image} ({}); target one with `container-id` or `container`",
            many.len(),
            many.iter().map(|i| &i[..12.min(i.len())]).collect::<Vec<_>>().join(", ")
        ))),
    }
}
