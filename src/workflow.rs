//! The workflow file as typed data: `trun.yaml` parsed into structs that keep
//! the location of every value a later check may need to point at.
//!
//! This module only reads and shapes; it does not decide what is valid across
//! values (unknown `needs`, cycles, expression names): that is
//! [`crate::validate`]. Nothing downstream of this module re-reads YAML.

use crate::diag::Diagnostic;
use crate::spanned::{Entries, Loc, Scalar, Sp, StringList};
use schemars::JsonSchema;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A `trun.yaml` workflow.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "trun workflow")]
pub struct Workflow {
    /// Display name of the workflow.
    pub name: Option<Sp<String>>,
    /// Environment variables for every job and step.
    #[serde(default)]
    pub env: Entries<Sp<Scalar>>,
    /// Typed inputs, set with `trun run -i name=value`.
    #[serde(default)]
    pub inputs: Entries<Sp<Input>>,
    /// Defaults for every `run:` step.
    pub defaults: Option<Defaults>,
    /// At most `max` runs of this workflow in one group at once.
    pub concurrency: Option<Sp<Concurrency>>,
    /// The jobs, by id.
    pub jobs: Sp<Entries<Sp<Box<Job>>>>,
    /// GitHub Actions: the events that start the workflow on GitHub. Recorded and
    /// shown by `trun plan`, not enforced; `workflow_dispatch` and `workflow_call`
    /// `inputs` become the workflow's inputs.
    #[serde(rename = "on")]
    pub on: Option<Sp<On>>,
    /// GitHub Actions: the run's display name, an expression over `github` and `inputs`.
    pub run_name: Option<Sp<String>>,
    /// GitHub Actions: the `GITHUB_TOKEN` permissions. Accepted, not enforced (there is no token).
    pub permissions: Option<Sp<serde_json::Value>>,
    /// HTTP endpoints `trun serve` tells about this workflow's runs and jobs.
    #[serde(default)]
    pub webhooks: Vec<Sp<Webhook>>,
}

/// A webhook: `trun serve` POSTs a signed JSON body to `url` on each of
/// `events` (`run.started`, `run.succeeded`, `job.*` …). `trun run` does not
/// deliver webhooks.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Webhook {
    /// `http://host:port/path`.
    pub url: Sp<String>,
    /// Which events to send (default: every event of the webhook's level):
    /// `run.started`, `run.succeeded`, `run.failed`, `run.cancelled`,
    /// `job.started`, `job.succeeded`, `job.failed`, `job.cancelled`,
    /// `job.skipped`, or `run.*`, `job.*`, `*`.
    #[serde(default)]
    pub events: Vec<Sp<String>>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: Entries<Sp<Scalar>>,
    /// Key of the `X-Trun-Signature-256` HMAC: a literal, or
    /// `${{ secrets.NAME }}` / `${{ env.NAME }}` (the server's environment variable NAME).
    pub secret: Option<Sp<String>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Defaults {
    pub run: Option<RunDefaults>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunDefaults {
    /// `bash`, `sh`, or a command template containing `{0}` (the script file).
    pub shell: Option<Sp<String>>,
    pub working_directory: Option<Sp<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Number,
    Boolean,
    Choice,
    /// GitHub Actions' `environment` input: the name of an environment (a string).
    Environment,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Input {
    #[serde(rename = "type", default = "default_input_type")]
    pub kind: Sp<InputType>,
    pub description: Option<String>,
    #[serde(default)]
    pub required: bool,
    pub default: Option<Sp<Scalar>>,
    /// Allowed values of a `choice` input.
    pub options: Option<Sp<Vec<Sp<Scalar>>>>,
}

fn default_input_type() -> Sp<InputType> {
    Sp::synthetic(InputType::String)
}

/// A job: steps run in order, possibly in a container, possibly once per matrix leg.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Job {
    pub name: Option<Sp<String>>,
    /// Jobs that must finish before this one starts.
    pub needs: Option<Sp<StringList>>,
    /// Fan-out: run one instance of this job per file that a step of one of
    /// these jobs writes into `$TRUN_EMIT/<this job>/`; the instance reads it
    /// as `$TRUN_INPUT_FILE` (its name is `$TRUN_INPUT_NAME`).
    pub fed_by: Option<Sp<StringList>>,
    /// Run the job only when this expression is true.
    #[serde(rename = "if")]
    pub if_: Option<Sp<Scalar>>,
    #[serde(default)]
    pub env: Entries<Sp<Scalar>>,
    pub defaults: Option<Defaults>,
    /// Run every step of the job inside this container.
    pub container: Option<Sp<Container>>,
    /// Sidecar containers reachable by name from the job container.
    #[serde(default)]
    pub services: Entries<Sp<Container>>,
    pub strategy: Option<Strategy>,
    /// Job outputs, usually `${{ steps.<id>.outputs.<name> }}`.
    #[serde(default)]
    pub outputs: Entries<Sp<String>>,
    pub timeout_minutes: Option<Sp<f64>>,
    pub continue_on_error: Option<Sp<bool>>,
    /// At most `max` jobs in one group at once, across runs and processes.
    pub concurrency: Option<Sp<Concurrency>>,
    /// The steps, run in order (none for a job that `uses` a reusable workflow).
    #[serde(default = "no_steps")]
    pub steps: Sp<Vec<Sp<Step>>>,
    /// GitHub Actions: the runner labels. The job runs on this host unless `-P LABEL=IMAGE`
    /// maps a label to a container image.
    pub runs_on: Option<Sp<RunsOn>>,
    /// GitHub Actions: the deployment environment. Accepted, not enforced.
    pub environment: Option<Sp<Environment>>,
    /// GitHub Actions: the `GITHUB_TOKEN` permissions of the job. Accepted, not enforced.
    pub permissions: Option<Sp<serde_json::Value>>,
    /// A reusable workflow of this repository to run as this job:
    /// `./.github/workflows/build.yml`. Its jobs appear as `<job>/<its job>`.
    pub uses: Option<Sp<String>>,
    /// The inputs of the reusable workflow named by `uses`.
    #[serde(rename = "with", default)]
    pub with: Entries<Sp<serde_json::Value>>,
    /// The secrets passed to the reusable workflow: a mapping, or `inherit`.
    pub secrets: Option<Sp<JobSecrets>>,
    /// HTTP endpoints `trun serve` tells about this job (`job.*` events).
    #[serde(default)]
    pub webhooks: Vec<Sp<Webhook>>,
}

fn no_steps() -> Sp<Vec<Sp<Step>>> {
    Sp::synthetic(Vec::new())
}

/// `secrets:` of a job calling a reusable workflow.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum JobSecrets {
    /// `inherit`: every secret of the caller.
    Inherit(String),
    Map(Entries<Sp<String>>),
}

impl<'de> Deserialize<'de> for JobSecrets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SV;
        impl<'de> serde::de::Visitor<'de> for SV {
            type Value = JobSecrets;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`inherit` or a mapping of secret names to values")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<JobSecrets, E> {
                if v == "inherit" {
                    Ok(JobSecrets::Inherit(v.to_string()))
                } else {
                    Err(E::custom(format!(
                        "`secrets: {v}`: write `inherit` or a mapping of secret names to values"
                    )))
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<JobSecrets, A::Error> {
                Entries::<Sp<String>>::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(JobSecrets::Map)
            }
        }
        d.deserialize_any(SV)
    }
}

/// `concurrency: GROUP` or `{group, cancel-in-progress, max}`. The group is
/// an expression (`deploy-${{ inputs.env }}`); at most `max` (default 1)
/// members of a group run at once, the others wait (`waiting`); with
/// `cancel-in-progress: true` a new member cancels the running one instead,
/// and replaces one that waits.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum Concurrency {
    Group(String),
    Full(ConcurrencySpec),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConcurrencySpec {
    pub group: Sp<String>,
    #[serde(default)]
    pub cancel_in_progress: Option<Sp<bool>>,
    /// How many members of the group may run at once (default 1).
    pub max: Option<Sp<u32>>,
}

impl Concurrency {
    pub fn group(&self) -> &str {
        match self {
            Concurrency::Group(g) => g,
            Concurrency::Full(f) => &f.group.value,
        }
    }

    pub fn max(&self) -> u32 {
        match self {
            Concurrency::Full(ConcurrencySpec { max: Some(m), .. }) => m.value,
            _ => 1,
        }
    }

    pub fn cancel_in_progress(&self) -> bool {
        matches!(self, Concurrency::Full(ConcurrencySpec { cancel_in_progress: Some(c), .. }) if c.value)
    }
}

// Not `#[serde(untagged)]` for reading, as for `Container`: the long form's
// own errors ("unknown key `grup`") stay.
impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CV;
        impl<'de> serde::de::Visitor<'de> for CV {
            type Value = Concurrency;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a group name or a mapping with `group`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Concurrency, E> {
                Ok(Concurrency::Group(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<Concurrency, A::Error> {
                ConcurrencySpec::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(Concurrency::Full)
            }
        }
        d.deserialize_any(CV)
    }
}

/// `container: image` or the long form.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum Container {
    Image(String),
    Full(ContainerSpec),
}

// Not `#[serde(untagged)]` for reading: an untagged enum swallows the long
// form's own error ("unknown key `optoins`") into "did not match any variant".
impl<'de> Deserialize<'de> for Container {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CV;
        impl<'de> serde::de::Visitor<'de> for CV {
            type Value = Container;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an image name or a mapping with `image`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Container, E> {
                Ok(Container::Image(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<Container, A::Error> {
                ContainerSpec::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(Container::Full)
            }
        }
        d.deserialize_any(CV)
    }
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContainerSpec {
    pub image: String,
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, Scalar>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub ports: Vec<Scalar>,
    /// Extra options, e.g. `--memory 512m --cpus 1`.
    pub options: Option<String>,
    pub network: Option<String>,
    pub memory: Option<Scalar>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
    pub user: Option<Scalar>,
}

impl Container {
    pub fn spec(&self) -> ContainerSpec {
        match self {
            Container::Image(i) => ContainerSpec {
                image: i.clone(),
                ..Default::default()
            },
            Container::Full(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Strategy {
    pub matrix: Option<Sp<Matrix>>,
    /// Cancel the other legs when one fails (default true).
    pub fail_fast: Option<bool>,
    pub max_parallel: Option<Sp<u32>>,
}

/// `matrix:` axes (each a list of values) plus `include` and `exclude`.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    pub axes: Vec<(Sp<String>, Vec<serde_json::Value>)>,
    /// Axes given as expressions, evaluated when the job is ready.
    pub dynamic: Vec<(Sp<String>, String)>,
    pub include: Vec<serde_json::Map<String, serde_json::Value>>,
    pub exclude: Vec<serde_json::Map<String, serde_json::Value>>,
    /// The whole matrix as one expression (`${{ fromJSON(…) }}`).
    pub expr: Option<String>,
}

impl JsonSchema for Matrix {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Matrix".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let legs = serde_json::json!({ "type": "array", "items": { "type": "object" } });
        let expr = serde_json::json!({ "type": "string", "pattern": "\\$\\{\\{" });
        schemars::json_schema!({
            "description": "Axes, each a list of values; every combination is one leg of the job. `include` adds or extends legs, `exclude` removes them. The matrix, or an axis, may be an expression computed by a needed job: ${{ fromJSON(needs.setup.outputs.matrix) }}.",
            "anyOf": [
                {
                    "type": "object",
                    "properties": { "include": legs, "exclude": legs },
                    "additionalProperties": { "anyOf": [ { "type": "array", "minItems": 1 }, expr ] }
                },
                expr
            ]
        })
    }
}

impl<'de> Deserialize<'de> for Matrix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MV;
        impl<'de> serde::de::Visitor<'de> for MV {
            type Value = Matrix;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping of axes, or an expression such as ${{ fromJSON(needs.setup.outputs.matrix) }}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Matrix, E> {
                if !v.contains("${{") {
                    return Err(E::custom("`matrix` must be a mapping of axes, or an expression such as ${{ fromJSON(needs.setup.outputs.matrix) }}"));
                }
                Ok(Matrix {
                    expr: Some(v.to_string()),
                    ..Matrix::default()
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Matrix, A::Error> {
                use serde::de::Error;
                let entries = Entries::<serde_json::Value>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                let mut m = Matrix::default();
                for (k, v) in entries.0 {
                    match (k.value.as_str(), v) {
                        ("include" | "exclude", v) => {
                            let list: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_value(v)
                                .map_err(|_| A::Error::custom(format!("matrix `{}` must be a list of mappings", k.value)))?;
                            if k.value == "include" {
                                m.include = list;
                            } else {
                                m.exclude = list;
                            }
                        }
                        (_, serde_json::Value::Array(values)) => m.axes.push((k, values)),
                        // An axis computed by an earlier job: `${{ fromJSON(needs.x.outputs.list) }}`.
                        (_, serde_json::Value::String(e)) if e.contains("${{") => m.dynamic.push((k, e)),
                        _ => {
                            return Err(A::Error::custom(format!(
                                "matrix axis `{}` must be a list of values (or an expression giving one)",
                                k.value
                            )))
                        }
                    }
                }
                Ok(m)
            }
        }
        d.deserialize_any(MV)
    }
}

impl Matrix {
    /// Whether the legs are only known once the job's needs have run.
    pub fn is_dynamic(&self) -> bool {
        self.expr.is_some() || !self.dynamic.is_empty()
    }
}

/// One step: a `run:` script or a built-in action (`uses:`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Step {
    /// Identifier used by `steps.<id>.outputs` and `--force`.
    pub id: Option<Sp<String>>,
    pub name: Option<Sp<String>>,
    /// Shell script to run.
    pub run: Option<Sp<String>>,
    /// `bash`, `sh`, or a command template containing `{0}` (the script file).
    pub shell: Option<Sp<String>>,
    pub working_directory: Option<Sp<String>>,
    /// A built-in action, e.g. `files/exist` or `docker/build`.
    pub uses: Option<Sp<String>>,
    /// Inputs of the action named by `uses`.
    #[serde(rename = "with", default)]
    pub with: Entries<Sp<serde_json::Value>>,
    #[serde(default)]
    pub env: Entries<Sp<Scalar>>,
    #[serde(rename = "if")]
    pub if_: Option<Sp<Scalar>>,
    pub continue_on_error: Option<Sp<bool>>,
    pub timeout_minutes: Option<Sp<f64>>,
    pub retry: Option<Sp<Retry>>,
    /// Globs of files whose content decides whether the step is up to date.
    pub sources: Option<Sp<StringList>>,
    /// Paths the step must produce; restored from the cache when possible.
    pub generates: Option<Sp<StringList>>,
    /// A long-running process (a server): under `trun watch` it is stopped (its
    /// whole process group, TERM then KILL) and started again on every change.
    pub restart: Option<Sp<bool>>,
    /// Paste `${{ }}` values into the script text instead of passing them as
    /// environment variables. Unsafe with untrusted values; off by default.
    #[serde(default)]
    pub unsafe_inline_expressions: bool,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Retry {
    /// Total attempts, the first included.
    pub attempts: u32,
    #[serde(default)]
    pub backoff: Backoff,
    /// Delay before the second attempt, e.g. `500ms`, `1s`, `2m`.
    pub delay: Option<Sp<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    #[default]
    Constant,
    Exponential,
}

/// `on:` of a GitHub Actions workflow: one event, a list of events, or a mapping of
/// events to their filters. trun records the triggers (and `trun plan` shows them) but
/// does not enforce them: a workflow runs when you run it.
#[derive(Debug, Clone, Default)]
pub struct On {
    pub events: Vec<(Sp<String>, Event)>,
}

impl On {
    pub fn get(&self, name: &str) -> Option<&Event> {
        self.events
            .iter()
            .find(|(k, _)| k.value == name)
            .map(|(_, e)| e)
    }

    /// The event names, in file order.
    pub fn names(&self) -> Vec<String> {
        self.events.iter().map(|(k, _)| k.value.clone()).collect()
    }
}

/// One event of `on:` and its settings. Filters (`branches`, `paths`, `types`, …) are
/// kept and shown, not applied.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Event {
    pub branches: Option<Sp<StringList>>,
    pub branches_ignore: Option<Sp<StringList>>,
    pub tags: Option<Sp<StringList>>,
    pub tags_ignore: Option<Sp<StringList>>,
    pub paths: Option<Sp<StringList>>,
    pub paths_ignore: Option<Sp<StringList>>,
    pub types: Option<Sp<StringList>>,
    /// `workflow_run`: the workflows it follows.
    pub workflows: Option<Sp<StringList>>,
    /// `workflow_dispatch` and `workflow_call`: typed inputs, merged into the workflow's inputs.
    #[serde(default)]
    pub inputs: Entries<Sp<Input>>,
    /// `workflow_call`: what the called workflow gives back to its caller.
    #[serde(default)]
    pub outputs: Entries<Sp<CallOutput>>,
    /// `workflow_call`: the secrets the caller passes.
    #[serde(default)]
    pub secrets: Entries<Sp<CallSecret>>,
    /// `schedule`: the `cron` lines.
    #[serde(skip)]
    pub schedule: Vec<String>,
}

/// An output of a reusable workflow (`on.workflow_call.outputs.<name>`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CallOutput {
    pub description: Option<String>,
    /// Usually `${{ jobs.<job>.outputs.<name> }}`.
    pub value: Sp<String>,
}

/// A secret a reusable workflow expects (`on.workflow_call.secrets.<name>`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CallSecret {
    pub description: Option<String>,
    #[serde(default)]
    pub required: bool,
}

/// The events GitHub Actions knows: an `on:` key outside this list is a typo.
pub const EVENTS: &[&str] = &[
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "create",
    "delete",
    "deployment",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "fork",
    "gollum",
    "issue_comment",
    "issues",
    "label",
    "merge_group",
    "milestone",
    "page_build",
    "project",
    "project_card",
    "project_column",
    "public",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_target",
    "push",
    "registry_package",
    "release",
    "repository_dispatch",
    "schedule",
    "status",
    "watch",
    "workflow_call",
    "workflow_dispatch",
    "workflow_run",
];

impl<'de> Deserialize<'de> for On {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OV;
        impl<'de> serde::de::Visitor<'de> for OV {
            type Value = On;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event name, a list of event names, or a mapping of events")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<On, E> {
                Ok(On {
                    events: vec![(Sp::synthetic(v.to_string()), Event::default())],
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<On, A::Error> {
                let mut events = Vec::new();
                while let Some(v) = s.next_element::<Sp<String>>()? {
                    events.push((v, Event::default()));
                }
                Ok(On { events })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<On, A::Error> {
                let entries = Entries::<EventValue>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(m),
                )?;
                Ok(On {
                    events: entries.0.into_iter().map(|(k, v)| (k, v.0)).collect(),
                })
            }
        }
        d.deserialize_any(OV)
    }
}

/// An event's value: nothing (`push:`), its settings, or `schedule`'s list of `cron`s.
struct EventValue(Event);

impl<'de> Deserialize<'de> for EventValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EV;
        impl<'de> serde::de::Visitor<'de> for EV {
            type Value = EventValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("nothing, a mapping of event settings, or (for `schedule`) a list of `cron` entries")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<EventValue, E> {
                Ok(EventValue(Event::default()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<EventValue, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Cron {
                    cron: String,
                }
                let mut e = Event::default();
                while let Some(c) = s.next_element::<Cron>()? {
                    e.schedule.push(c.cron);
                }
                Ok(EventValue(e))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<EventValue, A::Error> {
                Event::deserialize(serde::de::value::MapAccessDeserializer::new(m)).map(EventValue)
            }
        }
        d.deserialize_any(EV)
    }
}

impl JsonSchema for On {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "On".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let event = g.subschema_for::<Event>();
        let names: Vec<serde_json::Value> = EVENTS.iter().map(|e| serde_json::json!(e)).collect();
        let schedule = serde_json::json!({
            "type": "array",
            "items": { "type": "object", "properties": { "cron": { "type": "string" } }, "required": ["cron"] }
        });
        schemars::json_schema!({
            "description": "GitHub Actions: the events that start the workflow on GitHub (recorded, not enforced by trun).",
            "anyOf": [
                { "type": "string", "enum": names },
                { "type": "array", "items": { "type": "string", "enum": names } },
                {
                    "type": "object",
                    "properties": { "schedule": schedule },
                    "additionalProperties": { "anyOf": [ { "type": "null" }, event ] }
                }
            ]
        })
    }
}

/// `runs-on:` a label, a list of labels, or `{group, labels}`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunsOnSpec {
    pub group: Option<String>,
    pub labels: Option<StringList>,
}

#[derive(Debug, Clone)]
pub enum RunsOn {
    Labels(Vec<String>),
    Group(RunsOnSpec),
}

impl RunsOn {
    /// The labels, in file order (a group's labels, if it names any).
    pub fn labels(&self) -> Vec<String> {
        match self {
            RunsOn::Labels(l) => l.clone(),
            RunsOn::Group(g) => g
                .labels
                .as_ref()
                .map(|l| l.iter().map(|s| s.value.clone()).collect())
                .unwrap_or_default(),
        }
    }

    /// As written, for messages: `ubuntu-latest`, `[self-hosted, linux]`, `group: big`.
    pub fn describe(&self) -> String {
        match self {
            RunsOn::Labels(l) if l.len() == 1 => l[0].clone(),
            RunsOn::Labels(l) => format!("[{}]", l.join(", ")),
            RunsOn::Group(g) => {
                let mut s = format!("group {}", g.group.as_deref().unwrap_or("?"));
                let l = self.labels();
                if !l.is_empty() {
                    s.push_str(&format!(" [{}]", l.join(", ")));
                }
                s
            }
        }
    }
}

impl<'de> Deserialize<'de> for RunsOn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RV;
        impl<'de> serde::de::Visitor<'de> for RV {
            type Value = RunsOn;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a runner label, a list of labels, or a mapping with `group` and `labels`",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RunsOn, E> {
                Ok(RunsOn::Labels(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<RunsOn, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element::<String>()? {
                    out.push(v);
                }
                Ok(RunsOn::Labels(out))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<RunsOn, A::Error> {
                RunsOnSpec::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(RunsOn::Group)
            }
        }
        d.deserialize_any(RV)
    }
}

impl JsonSchema for RunsOn {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RunsOn".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let spec = g.subschema_for::<RunsOnSpec>();
        schemars::json_schema!({
            "description": "GitHub Actions: runner labels. trun runs the job on this host, or in a container when `-P LABEL=IMAGE` maps a label.",
            "anyOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } }, spec ]
        })
    }
}

/// `environment:` a name, or `{name, url}`. Accepted and shown; trun has no
/// deployment environments, so protection rules and environment secrets do not apply.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    pub name: String,
    pub url: Option<String>,
}

#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum Environment {
    Name(String),
    Full(EnvironmentSpec),
}

impl Environment {
    pub fn name(&self) -> &str {
        match self {
            Environment::Name(n) => n,
            Environment::Full(s) => &s.name,
        }
    }
}

impl<'de> Deserialize<'de> for Environment {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EV;
        impl<'de> serde::de::Visitor<'de> for EV {
            type Value = Environment;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an environment name or a mapping with `name` and `url`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Environment, E> {
                Ok(Environment::Name(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<Environment, A::Error> {
                EnvironmentSpec::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(Environment::Full)
            }
        }
        d.deserialize_any(EV)
    }
}

/// The parsed file together with its text, so errors can quote it.
#[derive(Debug, Clone)]
pub struct WorkflowFile {
    pub path: PathBuf,
    /// The directory holding the file: the workspace root.
    pub root: PathBuf,
    pub text: String,
    pub workflow: Workflow,
    /// `--skip-action NAME`: remote actions (or built-in GitHub ones) whose steps are
    /// skipped instead of refused.
    pub skip_actions: Vec<String>,
}

/// File names searched for, in order, in the current directory and its parents.
pub const FILE_NAMES: [&str; 3] = ["trun.yaml", "trun.yml", ".trun.yaml"];

/// The largest workflow file trun reads: 4 MiB. A real workflow is a few
/// kilobytes; past this it is a mistake (`-f /dev/zero`) or an attack.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;
/// The most jobs a workflow may declare.
pub const MAX_JOBS: usize = 5000;
/// The most steps a job may declare.
pub const MAX_STEPS: usize = 1000;

/// Find the workflow file from `start` upwards. Anything at one of the names
/// counts (a directory, a broken or looping link): it is the file the user
/// meant, and [`WorkflowFile::load`] says what is wrong with it rather than
/// silently using another file from a parent directory.
pub fn discover(start: &Path) -> Option<PathBuf> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        for name in FILE_NAMES {
            let p = d.join(name);
            if std::fs::symlink_metadata(&p).is_ok() {
                return Some(p);
            }
        }
        dir = d.parent();
    }
    None
}

/// Why `path` cannot be read as a workflow file, in words.
fn unreadable(path: &Path, e: &std::io::Error) -> Diagnostic {
    let shown = path.display();
    let d = match e.raw_os_error() {
        Some(libc::ELOOP) => Diagnostic::plain(format!(
            "{shown} is a symbolic link that loops (it leads back to itself)"
        )),
        Some(libc::EISDIR) => {
            Diagnostic::plain(format!("{shown} is a directory, not a workflow file"))
        }
        Some(libc::ENOENT) if std::fs::symlink_metadata(path).is_ok() => {
            let to = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            Diagnostic::plain(format!(
                "{shown} is a symbolic link to {to}, which does not exist"
            ))
        }
        _ => Diagnostic::plain(format!("cannot read {shown}: {e}")),
    };
    d.with_help("name the workflow file with -f FILE")
}

/// 1-based line and column of byte `offset` in `bytes`, counting characters
/// of the valid text before it.
fn line_col(bytes: &[u8], offset: usize) -> (u32, u32) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
    (line as u32, col as u32)
}

/// The text of a workflow file, or a diagnostic naming the first byte that is
/// not UTF-8.
pub fn decode(path: &Path, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        let (line, col) = line_col(&bytes, at);
        let line_text = String::from_utf8_lossy(&bytes)
            .lines()
            .nth(line as usize - 1)
            .unwrap_or("")
            .to_string();
        let mut d = Diagnostic::at(
            path,
            &line_text,
            Loc {
                line: 1,
                col,
                offset: None,
            },
            format!(
                "the file is not valid UTF-8 (byte 0x{:02x})",
                bytes.get(at).copied().unwrap_or(0)
            ),
        )
        .with_width(1)
        .with_help(
            if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
                "the file is UTF-16: save it as UTF-8"
            } else {
                "save the file as UTF-8"
            },
        );
        d.line = line;
        d
    })
}

/// Reads at most [`MAX_FILE_BYTES`] of a regular file: a FIFO, a device
/// (`/dev/zero`) or a directory is refused before anything is read.
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| unreadable(path, &e))?;
    let meta = file.metadata().map_err(|e| unreadable(path, &e))?;
    if meta.is_dir() {
        return Err(unreadable(
            path,
            &std::io::Error::from_raw_os_error(libc::EISDIR),
        ));
    }
    if !meta.is_file() {
        return Err(Diagnostic::plain(format!(
            "{} is not a regular file (a device, FIFO or socket); trun reads workflows from files",
            path.display()
        )));
    }
    let too_big = || {
        Diagnostic::plain(format!(
            "{} is larger than {} MiB, the limit for a workflow file",
            path.display(),
            MAX_FILE_BYTES / (1024 * 1024)
        ))
    };
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(path, &e))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Explicit YAML tags other than the core scalar ones (`!!binary`, `!custom`)
/// are refused: a `run: !!binary …` would run text nobody can read in review.
/// Cheap when the file has no `!` at all, which is the common case.
pub(crate) fn check_tags(path: &Path, text: &str) -> Result<(), Diagnostic> {
    use serde_saphyr::granit_parser::{Event, Parser};
    if !text.contains('!') {
        return Ok(());
    }
    const PLAIN: [&str; 7] = ["str", "int", "float", "bool", "null", "map", "seq"];
    for ev in Parser::new_from_str(text) {
        // Syntax errors are reported by the real parse, with its wording.
        let Ok((ev, span)) = ev else { return Ok(()) };
        let tag = match &ev {
            Event::Scalar(_, _, _, Some(t))
            | Event::SequenceStart(_, _, Some(t))
            | Event::MappingStart(_, _, Some(t)) => t,
            _ => continue,
        };
        if tag.handle() == "tag:yaml.org,2002:" && PLAIN.contains(&tag.suffix()) {
            continue;
        }
        let written = format!("{}{}", tag.original_handle(), tag.suffix());
        let value_at = span.start.byte_offset().unwrap_or(0).min(text.len());
        // The event starts at the value; point at the tag written before it.
        let message = format!(
            "YAML tag `{written}` is not allowed: trun reads workflow values as plain text"
        );
        let d = match text.get(..value_at).and_then(|t| t.rfind(&written)) {
            Some(at) => Diagnostic::at_offset(path, text, at, written.len(), message),
            None => Diagnostic::at(
                path,
                text,
                Loc {
                    line: span.start.line() as u32,
                    col: span.start.col() as u32 + 1,
                    offset: Some(value_at),
                },
                message,
            ),
        };
        return Err(d.with_help("remove the tag and write the value itself"));
    }
    Ok(())
}

/// The repository holding a `.github/workflows` directory, if `dir` is one.
pub fn github_repo_root(dir: &Path) -> Option<PathBuf> {
    let workflows = dir.file_name()?;
    let github = dir.parent()?;
    (workflows == "workflows" && github.file_name()? == ".github")
        .then(|| github.parent().map(Path::to_path_buf))
        .flatten()
}

impl Workflow {
    /// `on.workflow_dispatch.inputs` and `on.workflow_call.inputs` become inputs of
    /// the workflow (`-i name=value`, `inputs.name`), unless `inputs:` names them too.
    fn merge_event_inputs(&mut self) {
        let Some(on) = &self.on else { return };
        for event in ["workflow_dispatch", "workflow_call"] {
            let Some(e) = on.value.get(event) else {
                continue;
            };
            for (k, v) in e.inputs.iter() {
                if self.inputs.get(&k.value).is_none() {
                    self.inputs.0.push((k.clone(), v.clone()));
                }
            }
        }
    }

    /// Whether this is a GitHub Actions workflow (it says `on:`).
    pub fn is_github(&self) -> bool {
        self.on.is_some()
    }
}

impl WorkflowFile {
    /// Reads and parses a workflow file, refusing what is not a regular file
    /// of at most [`MAX_FILE_BYTES`] of UTF-8.
    pub fn load(path: &Path) -> Result<WorkflowFile, Diagnostic> {
        let bytes = read_bounded(path)?;
        let text = decode(path, bytes)?;
        Self::parse(path, text)
    }

    pub fn parse(path: &Path, text: String) -> Result<WorkflowFile, Diagnostic> {
        if text.len() > MAX_FILE_BYTES {
            return Err(Diagnostic::plain(format!(
                "{} is larger than {} MiB, the limit for a workflow file",
                path.display(),
                MAX_FILE_BYTES / (1024 * 1024)
            )));
        }
        check_tags(path, &text)?;
        // YAML 1.2 booleans, as GitHub Actions reads them: `yes`, `on`, `n`
        // stay strings.
        let mut options = serde_saphyr::Options::default();
        options.strict_booleans = true;
        options.with_snippet = false;
        let mut workflow: Workflow = serde_saphyr::from_str_with_options(&text, options)
            .map_err(|e| Diagnostic::from_yaml(path, &text, &e))?;
        workflow.merge_event_inputs();
        let too_many = |loc: Loc, what: String| Diagnostic::at(path, &text, loc, what);
        if workflow.jobs.value.len() > MAX_JOBS {
            return Err(too_many(
                workflow.jobs.loc,
                format!(
                    "the workflow has {} jobs; the limit is {MAX_JOBS}",
                    workflow.jobs.value.len()
                ),
            ));
        }
        for (id, job) in workflow.jobs.value.iter() {
            if job.value.steps.value.len() > MAX_STEPS {
                return Err(too_many(
                    job.value.steps.loc,
                    format!(
                        "job `{}` has {} steps; the limit is {MAX_STEPS}",
                        id.value,
                        job.value.steps.value.len()
                    ),
                ));
            }
        }
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let root = abs
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        // A GitHub Actions workflow's workspace is the repository, not `.github/workflows`.
        let root = github_repo_root(&root).unwrap_or(root);
        Ok(WorkflowFile {
            path: path.to_path_buf(),
            root,
            text,
            workflow,
            skip_actions: Vec::new(),
        })
    }

    /// An error pointing at `loc` in this file.
    pub fn error(&self, loc: Loc, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(&self.path, &self.text, loc, message)
    }
}

/// A job as `trun list --json` and `GET /api/v1/workflows` show it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct JobSummary {
    pub id: String,
    pub name: Option<String>,
    pub needs: Vec<String>,
    /// How many steps it has.
    pub steps: usize,
    /// The reusable workflow it calls (`uses: ./.github/workflows/x.yml`).
    pub uses: Option<String>,
    /// The plan jobs that call runs, `caller/called` (filled by `trun list`).
    pub calls: Vec<String>,
}

/// An input as `GET /api/v1/workflows` shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct InputSummary {
    pub name: String,
    /// `string`, `number`, `boolean` or `choice`.
    #[serde(rename = "type")]
    pub kind: String,
    pub description: Option<String>,
    pub required: bool,
    pub default: Option<String>,
    /// The allowed values of a `choice` input.
    pub options: Vec<String>,
}

impl WorkflowFile {
    /// Its jobs, in file order.
    pub fn job_summaries(&self) -> Vec<JobSummary> {
        self.workflow
            .jobs
            .value
            .iter()
            .map(|(id, j)| JobSummary {
                id: id.value.clone(),
                name: j.value.name.as_ref().map(|n| n.value.clone()),
                needs: j
                    .value
                    .needs
                    .as_ref()
                    .map(|n| n.value.iter().map(|s| s.value.clone()).collect())
                    .unwrap_or_default(),
                steps: j.value.steps.value.len(),
                uses: j.value.uses.as_ref().map(|u| u.value.clone()),
                calls: Vec::new(),
            })
            .collect()
    }

    /// Its inputs, in file order.
    pub fn input_summaries(&self) -> Vec<InputSummary> {
        self.workflow
            .inputs
            .iter()
            .map(|(name, i)| InputSummary {
                name: name.value.clone(),
                kind: match i.value.kind.value {
                    InputType::String => "string",
                    InputType::Number => "number",
                    InputType::Boolean => "boolean",
                    InputType::Choice => "choice",
                    InputType::Environment => "environment",
                }
                .to_string(),
                description: i.value.description.clone(),
                required: i.value.required,
                default: i.value.default.as_ref().map(|d| d.value.0.clone()),
                options: i
                    .value
                    .options
                    .as_ref()
                    .map(|o| o.value.iter().map(|v| v.value.0.clone()).collect())
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// The JSON Schema of the workflow file, generated from these types.
pub fn schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Workflow);
    serde_json::to_value(schema).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    /// `schema/trun.schema.json` is what `trun schema` prints; regenerate with
    /// `TRUN_BLESS=1 cargo test --lib schema_file_is_up_to_date`.
    #[test]
    fn schema_file_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/trun.schema.json");
        let now = format!(
            "{}\n",
            serde_json::to_string_pretty(&super::schema()).unwrap()
        );
        if std::env::var_os("TRUN_BLESS").is_some() {
            std::fs::write(&path, &now).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == now,
            "{} is stale: regenerate it with `TRUN_BLESS=1 cargo test --lib schema_file_is_up_to_date`",
            path.display()
        );
    }
}
