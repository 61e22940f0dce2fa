//! How a `run:` script becomes a process: the `shell:` of a step.
//!
//! `bash` runs like GitHub Actions' default (`--noprofile --norc -eo
//! pipefail`), `sh` runs with `-e`, and any other value is a command template
//! in which `{0}` is replaced by the path of a file holding the script.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Shell {
    Bash,
    Sh,
    /// Argument vector with `{0}` standing for the script file.
    Template(Vec<String>),
}

impl Shell {
    pub fn parse(s: &str) -> Result<Shell, String> {
        match s.trim() {
            "bash" => Ok(Shell::Bash),
            "sh" => Ok(Shell::Sh),
            other if other.contains("{0}") => {
                let argv: Vec<String> = other.split_whitespace().map(str::to_string).collect();
                Ok(Shell::Template(argv))
            }
            other => Err(format!(
                "unknown shell `{other}`: use `bash`, `sh`, or a command with `{{0}}` for the script file (e.g. `python3 {{0}}`)"
            )),
        }
    }

    /// Whether `${VAR}` in the script text reads an environment variable, so
    /// expressions can be passed safely by reference.
    pub fn expands_env_refs(&self) -> bool {
        matches!(self, Shell::Bash | Shell::Sh)
    }

    pub fn name(&self) -> String {
        match self {
            Shell::Bash => "bash".into(),
            Shell::Sh => "sh".into(),
            Shell::Template(a) => a.join(" "),
        }
    }

    /// The argument vector to run `script`; `script_file` is where the
    /// script was written for template shells.
    pub fn argv(&self, script: &str, script_file: Option<&Path>) -> Vec<String> {
        match self {
            Shell::Bash => vec![
                "bash".into(),
                "--noprofile".into(),
                "--norc".into(),
                "-eo".into(),
                "pipefail".into(),
                "-c".into(),
                script.into(),
            ],
            Shell::Sh => vec!["sh".into(), "-ec".into(), script.into()],
            Shell::Template(t) => {
                let file = script_file
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                t.iter().map(|a| a.replace("{0}", &file)).collect()
            }
        }
    }

    pub fn needs_script_file(&self) -> bool {
        matches!(self, Shell::Template(_))
    }
}
