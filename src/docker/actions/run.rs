//! `docker/run`: start a container from an image or an upstream `image-id`,
//! detached by default (later steps exec into it), or run it to its exit (`wait`).
//! Every container carries the run's labels, so the end of the run removes it
//! unless `keep: true`.

use super::schema::{flag, is_single, list, table, text};
use super::{ActionCtx, ActionError, ActionResult};
use crate::docker::exec::Lines;
use crate::docker::options::RunOptions;
use crate::docker::{DockerError, Labels, LABEL_KEEP, LABEL_RUN, LABEL_WORKSPACE};
use crate::event::Stream;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

pub async fn run(
    with: &Map<String, Value>,
    ctx: &ActionCtx<'_>,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<ActionResult, ActionError> {
    let docker = ctx.docker("docker/run")?;
    let image = text(with, "image")
        .or_else(|| text(with, "image-id"))
        .unwrap_or_default();
    docker.require_image(&image).await?;

    let command = list(with, "command");
    let cmd = match (command.is_empty(), is_single(with, "command")) {
        (true, _) => None,
        (false, true) => Some(vec!["sh".to_string(), "-c".to_string(), command.join(" ")]),
        (false, false) => Some(command),
    };
    let wait = flag(with, "wait", !flag(with, "detach", true));
    let mut labels = Labels::new(ctx.run_id, ctx.job.clone()).to_map();
    if flag(with, "keep", false) {
        labels.insert(LABEL_KEEP.to_string(), "true".to_string());
    }
    let mut body = ContainerCreateBody {
        image: Some(image.clone()),
        cmd,
        env: Some(
            table(with, "env")
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        labels: Some(labels),
        host_config: Some(HostConfig::default()),
        ..Default::default()
    };
    let mut flags = list(with, "params");
    flags.extend(
        list(with, "ports")
            .into_iter()
            .map(|p| format!("--publish {p}")),
    );
    RunOptions::parse(&flags)?.apply(&mut body)?;

    let mut opts = CreateContainerOptionsBuilder::default();
    if let Some(name) = text(with, "name") {
        if let Some(problem) = replace_named(docker, &name).await? {
            return Ok(ActionResult::failed(problem));
        }
        opts = opts.name(&name);
    }
    let created = docker
        .api()
        .create_container(Some(opts.build()), body)
        .await
        .map_err(|e| DockerError::api(format!("creating a container from {image}"), e))?;
    let id = created.id;
    let outputs = BTreeMap::from([("container-id".to_string(), id.clone())]);
    docker
        .api()
        .start_container(&id, None)
        .await
        .map_err(|e| DockerError::api(format!("starting a container from {image}"), e))?;
    if !wait {
        return Ok(ActionResult::ok(outputs));
    }

    let logs = LogsOptionsBuilder::default()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut stream = docker.api().logs(&id, Some(logs));
    let mut lines = Lines::default();
    while let Some(item) = stream.next().await {
        match item {
            Ok(LogOutput::StdOut { message }) => lines.push(Stream::Stdout, &message, out),
            Ok(LogOutput::StdErr { message }) => lines.push(Stream::Stderr, &message, out),
            Ok(_) => {}
            Err(e) => {
                return Err(
                    DockerError::api(format!("reading the logs of container {id}"), e).into(),
                )
            }
        }
    }
    lines.flush(out);
    let code = exit_code(docker, &id).await?;
    if code != 0 {
        let mut failed = ActionResult::failed(format!(
            "container {} ({image}) exited with code {code}",
            &id[..12.min(id.len())]
        ));
        failed.outputs = outputs;
        return Ok(failed);
    }
    Ok(ActionResult::ok(outputs))
}

async fn exit_code(docker: &crate::docker::Docker, id: &str) -> Result<i64, DockerError> {
    let mut waits = docker.api().wait_container(id, None);
    match waits.next().await {
        Some(Ok(r)) => Ok(r.status_code),
        // bollard reports a non-zero exit as an error carrying the code.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(DockerError::api(format!("waiting for container {id}"), e)),
        None => Err(DockerError::Api {
            action: format!("waiting for container {id}"),
            message: "no exit status".into(),
        }),
    }
}

/// A fixed `name` collides with the container of the previous run (`keep: true`)
/// on every re-run. A container this workspace's trun created is replaced;
/// another workspace's (its runs may be live) and anything else are left
/// alone, with a message saying so.
async fn replace_named(
    docker: &crate::docker::Docker,
    name: &str,
) -> Result<Option<String>, DockerError> {
    let info = match docker.api().inspect_container(name, None).await {
        Ok(info) => info,
        Err(e) if crate::docker::error::is_not_found(&e) => return Ok(None),
        Err(e) => return Err(DockerError::api(format!("inspecting container {name}"), e)),
    };
    let labels = info
        .config
        .and_then(|c| c.labels)
        .unwrap_or_else(HashMap::new);
    if let Some(problem) = refuse_to_replace(name, &labels) {
        return Ok(Some(problem));
    }
    let rm = RemoveContainerOptionsBuilder::default().force(true).build();
    docker
        .api()
        .remove_container(name, Some(rm))
        .await
        .map_err(|e| DockerError::api(format!("replacing container {name}"), e))?;
    Ok(None)
}

/// Why the existing container `name` (with `labels`) must not be removed, if so.
fn refuse_to_replace(name: &str, labels: &HashMap<String, String>) -> Option<String> {
    if !labels.contains_key(LABEL_RUN) {
        return Some(format!(
            "a container named {name} already exists and was not created by trun; remove it or choose another `name`"
        ));
    }
    let ours = crate::docker::workspace_filter()
        .and_then(|f| f.split_once('=').map(|(_, w)| w.to_string()));
    match (labels.get(LABEL_WORKSPACE), ours) {
        (Some(theirs), Some(ours)) if *theirs == ours => None,
        // Neither is tied to a workspace (a library caller): as before.
        (None, None) => None,
        (theirs, _) => Some(format!(
            "a container named {name} already exists and belongs to another trun workspace ({}); \
             trun does not remove it, since that workspace's run may be using it; \
             remove it there (`trun gc --all`) or choose another `name`",
            theirs.map_or("unknown", String::as_str)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_workspaces_containers_are_replaced() {
        crate::docker::set_workspace(std::path::Path::new("/work/a"));
        let ours = crate::docker::Labels::new(1, "j").to_map();
        assert_eq!(refuse_to_replace("db", &ours), None);
        let mut theirs = ours.clone();
        theirs.insert(LABEL_WORKSPACE.into(), "0123456789abcdef".into());
        let why = refuse_to_replace("db", &theirs).unwrap();
        assert!(
            why.contains("belongs to another trun workspace (0123456789abcdef)"),
            "{why}"
        );
        let why = refuse_to_replace("db", &HashMap::new()).unwrap();
        assert!(why.contains("was not created by trun"), "{why}");
    }
}
