//! The GitHub Actions that nearly every workflow uses, done on this machine without a
//! network: `actions/checkout` (the workspace is the checkout), `actions/setup-python`,
//! `-node`, `-go`, `-java` and `dtolnay/rust-toolchain` (the host's toolchain, when it
//! satisfies the request). Which `uses:` they answer to, their inputs, and what they do.
//!
//! Any other `owner/repo@ref` is a *remote* action: trun cannot fetch it, so validation
//! refuses them all in one error before anything runs (see [`crate::validate`]), and
//! `--skip-action NAME` lets the rest of the workflow run with those steps skipped.
//!
//! Not here: running processes. The actions ask their questions of the host (`python3
//! --version`, `git ls-files`) through a [`Probe`], which the engine backs with the
//! step's executor, so a probe in a container job asks the container.

mod artifact;
pub mod cache;
mod checkout;
pub mod classroom;
mod toolchain;
pub mod version;

use crate::event::Stream;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A GitHub action trun does itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Checkout,
    SetupPython,
    SetupNode,
    SetupGo,
    SetupJava,
    RustToolchain,
    Cache(cache::Variant),
    UploadArtifact,
    DownloadArtifact,
    Grader(classroom::Grader),
    GradingReporter,
}

const COMMAND_GRADER: &[&str] = &[
    "test-name",
    "setup-command",
    "command",
    "timeout",
    "max-score",
];
const IO_GRADER: &[&str] = &[
    "test-name",
    "setup-command",
    "command",
    "input",
    "expected-output",
    "comparison-method",
    "timeout",
    "max-score",
];
const PYTHON_GRADER: &[&str] = &["timeout", "max-score", "setup-command"];

/// `(repository, kind, inputs)` of every GitHub action trun does itself.
const BUILTINS: &[(&str, Builtin, &[&str])] = &[
    (
        "actions/checkout",
        Builtin::Checkout,
        &[
            "repository",
            "ref",
            "token",
            "ssh-key",
            "ssh-known-hosts",
            "ssh-strict",
            "ssh-user",
            "persist-credentials",
            "path",
            "clean",
            "filter",
            "sparse-checkout",
            "sparse-checkout-cone-mode",
            "fetch-depth",
            "fetch-tags",
            "show-progress",
            "lfs",
            "submodules",
            "set-safe-directory",
            "github-server-url",
        ],
    ),
    (
        "actions/setup-python",
        Builtin::SetupPython,
        &[
            "python-version",
            "python-version-file",
            "cache",
            "architecture",
            "check-latest",
            "token",
            "cache-dependency-path",
            "update-environment",
            "allow-prereleases",
            "freethreaded",
        ],
    ),
    (
        "actions/setup-node",
        Builtin::SetupNode,
        &[
            "node-version",
            "node-version-file",
            "architecture",
            "check-latest",
            "registry-url",
            "scope",
            "token",
            "cache",
            "cache-dependency-path",
            "always-auth",
            "package-manager-cache",
            "mirror",
            "mirror-token",
        ],
    ),
    (
        "actions/setup-go",
        Builtin::SetupGo,
        &[
            "go-version",
            "go-version-file",
            "check-latest",
            "token",
            "cache",
            "cache-dependency-path",
            "architecture",
        ],
    ),
    (
        "actions/setup-java",
        Builtin::SetupJava,
        &[
            "java-version",
            "java-version-file",
            "distribution",
            "java-package",
            "architecture",
            "jdkFile",
            "check-latest",
            "server-id",
            "server-username",
            "server-password",
            "settings-path",
            "overwrite-settings",
            "gpg-private-key",
            "gpg-passphrase",
            "cache",
            "cache-dependency-path",
            "job-status",
            "token",
            "mvn-toolchain-id",
            "mvn-toolchain-vendor",
        ],
    ),
    (
        "actions/cache",
        Builtin::Cache(cache::Variant::Both),
        &[
            "key",
            "path",
            "restore-keys",
            "upload-chunk-size",
            "enableCrossOsArchive",
            "fail-on-cache-miss",
            "lookup-only",
            "save-always",
        ],
    ),
    (
        "actions/cache/restore",
        Builtin::Cache(cache::Variant::Restore),
        &[
            "key",
            "path",
            "restore-keys",
            "enableCrossOsArchive",
            "fail-on-cache-miss",
            "lookup-only",
        ],
    ),
    (
        "actions/cache/save",
        Builtin::Cache(cache::Variant::Save),
        &["key", "path", "upload-chunk-size", "enableCrossOsArchive"],
    ),
    (
        "actions/upload-artifact",
        Builtin::UploadArtifact,
        &[
            "name",
            "path",
            "if-no-files-found",
            "retention-days",
            "compression-level",
            "overwrite",
            "include-hidden-files",
        ],
    ),
    (
        "actions/download-artifact",
        Builtin::DownloadArtifact,
        &[
            "name",
            "path",
            "pattern",
            "merge-multiple",
            "github-token",
            "repository",
            "run-id",
            "artifact-ids",
        ],
    ),
    (
        "classroom-resources/autograding-command-grader",
        Builtin::Grader(classroom::Grader::Command),
        COMMAND_GRADER,
    ),
    (
        "education/autograding-command-grader",
        Builtin::Grader(classroom::Grader::Command),
        COMMAND_GRADER,
    ),
    (
        "classroom-resources/autograding-io-grader",
        Builtin::Grader(classroom::Grader::Io),
        IO_GRADER,
    ),
    (
        "education/autograding-io-grader",
        Builtin::Grader(classroom::Grader::Io),
        IO_GRADER,
    ),
    (
        "classroom-resources/autograding-python-grader",
        Builtin::Grader(classroom::Grader::Python),
        PYTHON_GRADER,
    ),
    (
        "education/autograding-python-grader",
        Builtin::Grader(classroom::Grader::Python),
        PYTHON_GRADER,
    ),
    (
        "classroom-resources/autograding-grading-reporter",
        Builtin::GradingReporter,
        &["runners"],
    ),
    (
        "education/autograding-grading-reporter",
        Builtin::GradingReporter,
        &["runners"],
    ),
    (
        "dtolnay/rust-toolchain",
        Builtin::RustToolchain,
        &["toolchain", "targets", "target", "components"],
    ),
];

/// A path below the workspace (`None` for the workspace itself); `Err` says why not.
pub fn checkout_relative(path: &str) -> Result<Option<PathBuf>, &'static str> {
    checkout::relative(path)
}

/// `owner/repo[/path]` and the ref of `owner/repo[/path]@ref`.
pub fn split_ref(uses: &str) -> (&str, Option<&str>) {
    match uses.rsplit_once('@') {
        Some((name, r)) => (name, Some(r)),
        None => (uses, None),
    }
}

/// The built-in that answers to `uses` (any ref: `actions/checkout@v4`, `@main`, `@<sha>`).
pub fn builtin(uses: &str) -> Option<Builtin> {
    let (name, r) = split_ref(uses);
    r?;
    BUILTINS
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, b, _)| *b)
}

/// A local action or reusable workflow: `./path` in the repository.
pub fn is_local(uses: &str) -> bool {
    uses.starts_with("./")
}

/// An action trun would have to download: `owner/repo@ref` that is not a built-in, or
/// `docker://image`.
pub fn is_remote(uses: &str) -> bool {
    !is_local(uses)
        && builtin(uses).is_none()
        && (uses.contains('@') || uses.starts_with("docker://"))
}

/// Whether `--skip-action NAME` covers `uses`: the whole `owner/repo@ref`, or
/// `owner/repo` for any ref (case-insensitive, as GitHub compares repositories).
pub fn skip_matches(name: &str, uses: &str) -> bool {
    let name = name.trim();
    name.eq_ignore_ascii_case(uses)
        || (!name.contains('@') && split_ref(uses).0.eq_ignore_ascii_case(name))
}

/// Plan-time check of `with`: unknown inputs (with a did-you-mean). Values are read
/// when the step runs, after rendering.
pub fn validate(uses: &str, with: &Map<String, Value>) -> Result<(), super::WithError> {
    let Some((name, kind, inputs)) = BUILTINS
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(split_ref(uses).0))
    else {
        return Err(super::WithError {
            key: None,
            message: format!("`{uses}` is not an action trun does itself"),
        });
    };
    for key in with.keys() {
        if !inputs.contains(&key.as_str()) {
            let hint = crate::diag::did_you_mean_suffix(key, inputs.iter().copied());
            return Err(super::WithError {
                key: Some(key.clone()),
                message: format!(
                    "`{name}` has no input `{key}`{hint}; its inputs: {}",
                    inputs.join(", ")
                ),
            });
        }
    }
    let required: &[&str] = match kind {
        Builtin::Cache(_) => &["key", "path"],
        Builtin::UploadArtifact => &["path"],
        Builtin::Grader(classroom::Grader::Command) => &["command"],
        Builtin::Grader(classroom::Grader::Io) => &["command", "expected-output"],
        Builtin::GradingReporter => &["runners"],
        _ => &[],
    };
    {
        for required in required.iter().copied() {
            if !with.contains_key(required) {
                return Err(super::WithError {
                    key: None,
                    message: format!("`{name}` requires the input `{required}`"),
                });
            }
        }
    }
    if *kind == Builtin::RustToolchain
        && toolchain::rust_ref_is_branch(split_ref(uses).1.unwrap_or_default())
        && !with.contains_key("toolchain")
    {
        return Err(super::WithError {
            key: None,
            message: format!(
                "`{uses}` needs the input `toolchain` (the ref names no toolchain; write e.g. `dtolnay/rust-toolchain@stable`)"
            ),
        });
    }
    Ok(())
}

/// The answer to one probe: whether it exited 0, and what it printed.
pub struct ProbeOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl ProbeOutput {
    /// Both streams: `java -version` answers on stderr.
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs a short command where the step would run, for an action's questions to the host.
pub trait Probe: Send {
    /// `None` when the program could not be started at all (not on PATH).
    fn run<'a>(&'a mut self, argv: &'a [&'a str]) -> BoxFuture<'a, Option<ProbeOutput>>;
    /// A script run by `sh -c`, with `stdin` and a time limit (a grader's command);
    /// a command that timed out is not `success`.
    fn shell<'a>(
        &'a mut self,
        script: &'a str,
        stdin: Option<Vec<u8>>,
        timeout: std::time::Duration,
    ) -> BoxFuture<'a, Option<ProbeOutput>>;
}

/// What a GitHub action knows about where it runs.
pub struct Ctx<'a> {
    /// The workspace (`github.workspace`): the checkout.
    pub workspace: PathBuf,
    /// `$HOME` of the user running trun (`~` in `actions/cache` paths).
    pub home: Option<PathBuf>,
    /// The job runs in a container (whose `~` is not this machine's).
    pub in_container: bool,
    /// `.trun/cas`: where cached and uploaded files' bytes go.
    pub cas_dir: PathBuf,
    /// The state store's memory of actions (cache manifests).
    pub memory: &'a dyn crate::docker::actions::Memory,
    /// The step's environment (what the reporter reads `<ID>_RESULTS` from).
    pub step_env: Vec<(String, String)>,
    /// The run, the job instance, and the store that records the run's artifacts.
    pub run_id: i64,
    pub job: String,
    pub store: Option<&'a dyn crate::state::Store>,
    /// The step's `uses:` as written, for messages.
    pub uses: String,
}

/// How a GitHub action ended (`Err` is a failure with its message).
pub struct Done {
    pub outputs: BTreeMap<String, String>,
    /// Work for the end of the job, if it succeeds (saving a cache after a miss):
    /// handed back to [`post`].
    pub post: Option<Value>,
}

/// The end-of-job work an action asked for ([`Done::post`]), when the job succeeded.
pub fn post(
    kind: Builtin,
    data: &Value,
    ctx: &Ctx<'_>,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<(), String> {
    match kind {
        Builtin::Cache(_) => {
            let pending: cache::PendingSave =
                serde_json::from_value(data.clone()).map_err(|e| e.to_string())?;
            cache::save(&pending, ctx, out)
        }
        _ => Ok(()),
    }
}

/// Runs the built-in `kind` with its rendered `with`; lines go to `out`.
pub async fn run(
    kind: Builtin,
    with: &Map<String, Value>,
    ctx: &Ctx<'_>,
    probe: &mut dyn Probe,
    out: &mut (dyn FnMut(Stream, String) + Send),
) -> Result<Done, String> {
    let input = |k: &str| -> String {
        match with.get(k) {
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    };
    match kind {
        Builtin::Checkout => checkout::run(&input, ctx, probe, out).await,
        Builtin::RustToolchain => toolchain::rust(&input, ctx, probe, out).await,
        Builtin::Cache(v) => cache::run(v, &input, ctx, out),
        Builtin::UploadArtifact => artifact::upload(&input, ctx, out),
        Builtin::DownloadArtifact => artifact::download(&input, ctx, out),
        Builtin::Grader(g) => classroom::grade(g, &input, ctx, probe, out).await,
        Builtin::GradingReporter => classroom::report(&input, ctx, out),
        _ => toolchain::setup(kind, &input, ctx, probe, out).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(builtin("actions/checkout@v4"), Some(Builtin::Checkout));
        assert_eq!(builtin("Actions/Checkout@main"), Some(Builtin::Checkout));
        assert_eq!(builtin("actions/checkout"), None);
        assert_eq!(
            builtin("dtolnay/rust-toolchain@1.89"),
            Some(Builtin::RustToolchain)
        );
        assert!(is_remote("docker/build-push-action@v5"));
        assert!(is_remote("docker://alpine:3"));
        assert!(!is_remote("docker/build"));
        assert!(!is_remote("./.github/actions/x"));
        assert!(!is_remote("actions/setup-python@v5"));
    }

    #[test]
    fn skip_names_with_or_without_ref() {
        assert!(skip_matches(
            "actions/upload-pages-artifact",
            "actions/upload-pages-artifact@v3"
        ));
        assert!(skip_matches(
            "Codecov/codecov-action@v4",
            "codecov/codecov-action@v4"
        ));
        assert!(!skip_matches(
            "codecov/codecov-action@v3",
            "codecov/codecov-action@v4"
        ));
        assert!(!skip_matches(
            "codecov/codecov",
            "codecov/codecov-action@v4"
        ));
    }

    #[test]
    fn unknown_inputs_get_a_suggestion() {
        let mut with = Map::new();
        with.insert("pyhton-version".into(), Value::String("3.11".into()));
        let e = validate("actions/setup-python@v5", &with).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("pyhton-version"));
        assert!(e.message.starts_with("`actions/setup-python` has no input `pyhton-version` (did you mean `python-version`?)"), "{}", e.message);
        assert!(validate("dtolnay/rust-toolchain@master", &Map::new()).is_err());
        assert!(validate("dtolnay/rust-toolchain@stable", &Map::new()).is_ok());
    }
}
