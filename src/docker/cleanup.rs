//! Removing what a run created: at the end of every run, and `trun gc` for the
//! leftovers of runs that were killed before they could clean up.
//!
//! Selection is by label only (`trun.run=<id>`), never by name, so nothing a user
//! created by hand is touched. Containers labelled `trun.keep=true` (`docker/run`
//! with `keep: true`) are left alone on purpose. Images are products, not
//! leftovers, and are never removed here.

use super::client::Docker;
use super::error::{is_not_found, DockerError};
use super::{LABEL_KEEP, LABEL_RUN};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use std::collections::{BTreeSet, HashMap};

/// What a cleanup removed, kept, and could not remove (with the daemon's reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    /// `keep: true` containers left running.
    pub kept: Vec<String>,
    pub errors: Vec<String>,
}

impl CleanupReport {
    fn merge(&mut self, other: CleanupReport) {
        self.containers.extend(other.containers);
        self.networks.extend(other.networks);
        self.volumes.extend(other.volumes);
        self.kept.extend(other.kept);
        self.errors.extend(other.errors);
    }
}

impl Docker {
    /// Removes one container trun started (a job container at the end of its
    /// job), and the job's service network if it had one. Already gone is fine.
    pub async fn remove_job_container(
        &self,
        id: &str,
        network: Option<&str>,
    ) -> Result<(), DockerError> {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.api().remove_container(id, Some(opts)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(DockerError::api("removing the job container", e)),
        }
        if let Some(net) = network {
            // Services on the network go first (they carry the job's labels
            // and are removed with the run); a network still in use waits for that.
            let _ = self.api().remove_network(net).await;
        }
        Ok(())
    }

    /// Force-removes every container, network and volume labelled
    /// `trun.run=<run_id>`, except containers labelled `trun.keep=true`.
    pub async fn cleanup_run(&self, run_id: i64) -> Result<CleanupReport, DockerError> {
        self.remove_labelled(&format!("{LABEL_RUN}={run_id}"), false)
            .await
    }

    /// Removes everything labelled `trun.run` whose run is not live according to
    /// `is_live` (ask the state store). Kept containers stay unless `include_kept`.
    pub async fn gc(
        &self,
        is_live: impl Fn(i64) -> bool,
        include_kept: bool,
    ) -> Result<CleanupReport, DockerError> {
        let mut runs = BTreeSet::new();
        let ws = super::workspace_filter();
        let mut labels = vec![LABEL_RUN];
        labels.extend(ws.as_deref());
        let filter = HashMap::from([("label", labels)]);
        let containers = self
            .api()
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filter)
                    .build(),
            ))
            .await
            .map_err(|e| DockerError::api("listing containers", e))?;
        runs.extend(containers.iter().filter_map(|c| run_label(&c.labels)));
        let networks = self
            .api()
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&filter)
                    .build(),
            ))
            .await
            .map_err(|e| DockerError::api("listing networks", e))?;
        runs.extend(networks.iter().filter_map(|n| run_label(&n.labels)));
        let volumes = self
            .api()
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filter)
                    .build(),
            ))
            .await
            .map_err(|e| DockerError::api("listing volumes", e))?;
        runs.extend(
            volumes
                .volumes
                .iter()
                .flatten()
                .filter_map(|v| v.labels.get(LABEL_RUN)?.parse::<i64>().ok()),
        );

        let mut report = CleanupReport::default();
        for run in runs.into_iter().filter(|r| !is_live(*r)) {
            report.merge(
                self.remove_labelled(&format!("{LABEL_RUN}={run}"), include_kept)
                    .await?,
            );
        }
        Ok(report)
    }

    async fn remove_labelled(
        &self,
        label: &str,
        include_kept: bool,
    ) -> Result<CleanupReport, DockerError> {
        let ws = super::workspace_filter();
        let mut labels = vec![label];
        labels.extend(ws.as_deref());
        let filter = HashMap::from([("label", labels)]);
        let mut report = CleanupReport::default();

        let containers = self
            .api()
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filter)
                    .build(),
            ))
            .await
            .map_err(|e| DockerError::api("listing containers", e))?;
        for c in containers {
            let Some(id) = c.id else { continue };
            let keep = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_KEEP))
                .is_some_and(|v| v == "true");
            if keep && !include_kept {
                report.kept.push(id);
                continue;
            }
            let opts = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            match self.api().remove_container(&id, Some(opts)).await {
                Ok(()) => report.containers.push(id),
                Err(e) if is_not_found(&e) => {}
                Err(e) => report
                    .errors
                    .push(format!("container {id}: {}", super::error::describe(&e))),
            }
        }

        // Networks after containers: a network with endpoints cannot be removed.
        let networks = self
            .api()
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&filter)
                    .build(),
            ))
            .await
            .map_err(|e| DockerError::api("listing networks", e))?;
        for n in networks {
            let Some(id) = n.id else { continue };
            match self.api().remove_network(&id).await {
                Ok(()) => report.networks.push(id),
                Err(e) if is_not_found(&e) => {}
                Err(e) => report
                    .errors
                    .push(format!("network {id}: {}", super::error::describe(&e))),
            }
        }

        let volumes = self
            .api()
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filter)
                    .build(),
            ))
            .await
            .map_err(|e| DockerError::api("listing volumes", e))?;
        for v in volumes.volumes.into_iter().flatten() {
            let opts = RemoveVolumeOptionsBuilder::default().force(true).build();
            match self.api().remove_volume(&v.name, Some(opts)).await {
                Ok(()) => report.volumes.push(v.name),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    report
                        .errors
                        .push(format!("volume {}: {}", v.name, super::error::describe(&e)))
                }
            }
        }
        Ok(report)
    }
}

fn run_label(labels: &Option<HashMap<String, String>>) -> Option<i64> {
    labels.as_ref()?.get(LABEL_RUN)?.parse().ok()
}
