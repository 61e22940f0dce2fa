//! Workflow commands: the `::name key=value,…::data` lines a step prints to
//! talk to the runner, parsed and acted on as GitHub's runner does.
//!
//! [`parse`] reads one line; [`Commands`] holds one step's state (a
//! `::stop-commands::` token, what `::set-output` and friends set) and says
//! what each line becomes ([`Seen`]). Properties and data are unescaped as on
//! GitHub (`%25` `%0D` `%0A`, and `%3A` `%2C` in properties).
//!
//! Decisions, documented in the README:
//! - `::set-output` is honoured with a deprecation warning, as on GitHub.
//! - `::set-env` and `::add-path` are refused with GitHub's error unless the
//!   step's environment has `ACTIONS_ALLOW_UNSECURE_COMMANDS=true` (then
//!   honoured, with a warning): any line a step prints (a file it `cat`s, a
//!   test's output) could otherwise set `BASH_ENV` or `PATH` for the steps
//!   after it.
//! - `::debug::` lines are shown only when debugging is on
//!   (`ACTIONS_STEP_DEBUG` or `RUNNER_DEBUG`).
//! - Commands are read on stdout and stderr alike, as GitHub's runner does.
//! - `::save-state` is accepted and has no effect for `run:` steps (on GitHub,
//!   state reaches only the `post:` of the same action).
//!
//! This module does no I/O: the output sink feeds it lines and sends the
//! events.

use crate::event::{Annotation, AnnotationLevel};
use std::collections::BTreeMap;

/// The longest command name considered; a longer word is plain output.
const MAX_NAME: usize = 64;

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    pub props: BTreeMap<String, String>,
    pub data: String,
}

/// Parses `::name props::data` (leading whitespace allowed). `None` when the
/// line is not a command.
pub fn parse(line: &str) -> Option<Command> {
    let rest = line.trim_start().strip_prefix("::")?;
    let end = rest.find("::")?;
    let (head, data) = (&rest[..end], &rest[end + 2..]);
    let (name, props_text) = match head.find(' ') {
        Some(i) => (&head[..i], head[i + 1..].trim()),
        None => (head, ""),
    };
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return None;
    }
    let mut props = BTreeMap::new();
    for p in props_text.split(',') {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        // GitHub drops a property without `=` or with an empty key.
        if let Some((k, v)) = p.split_once('=') {
            let k = k.trim();
            if !k.is_empty() {
                props.insert(k.to_string(), unescape_property(v));
            }
        }
    }
    Some(Command {
        name: name.to_string(),
        props,
        data: unescape_data(data),
    })
}

/// `%25` `%0D` `%0A` in a command's data.
pub fn unescape_data(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    s.replace("%0D", "\r")
        .replace("%0d", "\r")
        .replace("%0A", "\n")
        .replace("%0a", "\n")
        .replace("%25", "%")
}

/// [`unescape_data`] plus `%3A` (`:`) and `%2C` (`,`) in a property value.
pub fn unescape_property(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    s.replace("%0D", "\r")
        .replace("%0d", "\r")
        .replace("%0A", "\n")
        .replace("%0a", "\n")
        .replace("%3A", ":")
        .replace("%3a", ":")
        .replace("%2C", ",")
        .replace("%2c", ",")
        .replace("%25", "%")
}

/// What a line of step output turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Plain output (not a command, an unknown one, or commands are stopped).
    Output,
    /// A command that shows nothing (`::set-output`, `::stop-commands`, …).
    Done,
    /// `::add-mask::VALUE`: mask this from now on (the line shows nothing).
    Mask(String),
    /// `::group::TITLE`.
    Group(String),
    EndGroup,
    /// `::error`/`::warning`/`::notice`, or trun's warning about a command.
    Annotate(Annotation),
    /// `::debug::MESSAGE`, when debugging is on.
    Debug(String),
}

/// One step's workflow-command state and what its commands set.
#[derive(Debug, Default)]
pub struct Commands {
    /// `::stop-commands::TOKEN` is in force: only `::TOKEN::` resumes.
    stopped: Option<String>,
    debug: bool,
    allow_unsecure: bool,
    warned_set_output: bool,
    /// `::set-output name=x::v`.
    pub outputs: BTreeMap<String, String>,
    /// `::set-env name=x::v`, when allowed.
    pub env: Vec<(String, String)>,
    /// `::add-path::dir`, when allowed.
    pub path: Vec<String>,
    /// A refused command fails the step, as on GitHub.
    pub failure: Option<String>,
}

fn warning(message: String) -> Seen {
    Seen::Annotate(Annotation {
        level: AnnotationLevel::Warning,
        message,
        title: None,
        file: None,
        line: None,
        col: None,
        end_line: None,
        end_column: None,
    })
}

fn number(props: &BTreeMap<String, String>, key: &str) -> Option<u64> {
    props.get(key).and_then(|v| v.trim().parse().ok())
}

/// Whether a step's environment value turns a switch on.
pub fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

impl Commands {
    /// `debug` shows `::debug::` lines; `allow_unsecure` honours `::set-env`
    /// and `::add-path` (`ACTIONS_ALLOW_UNSECURE_COMMANDS=true`).
    pub fn new(debug: bool, allow_unsecure: bool) -> Commands {
        Commands {
            debug,
            allow_unsecure,
            ..Commands::default()
        }
    }

    /// What `line` (without its newline) is, acting on it.
    pub fn line(&mut self, line: &str) -> Seen {
        let Some(cmd) = parse(line) else {
            return Seen::Output;
        };
        if let Some(token) = &self.stopped {
            if cmd.name == *token && cmd.props.is_empty() {
                self.stopped = None;
                return Seen::Done;
            }
            return Seen::Output;
        }
        match cmd.name.as_str() {
            "stop-commands" => {
                // An empty token would make every `::::` line resume: refuse it.
                if cmd.data.is_empty() {
                    return Seen::Output;
                }
                self.stopped = Some(cmd.data);
                Seen::Done
            }
            "add-mask" => Seen::Mask(cmd.data),
            "group" => Seen::Group(cmd.data),
            "endgroup" => Seen::EndGroup,
            "debug" if self.debug => Seen::Debug(cmd.data),
            "debug" => Seen::Done,
            "error" | "warning" | "notice" => {
                let level = match cmd.name.as_str() {
                    "error" => AnnotationLevel::Error,
                    "warning" => AnnotationLevel::Warning,
                    _ => AnnotationLevel::Notice,
                };
                let p = &cmd.props;
                Seen::Annotate(Annotation {
                    level,
                    message: cmd.data,
                    title: p.get("title").cloned().filter(|t| !t.is_empty()),
                    file: p.get("file").cloned().filter(|f| !f.is_empty()),
                    line: number(p, "line"),
                    col: number(p, "col"),
                    end_line: number(p, "endLine"),
                    end_column: number(p, "endColumn"),
                })
            }
            "set-output" => {
                let Some(name) = cmd.props.get("name").filter(|n| !n.trim().is_empty()) else {
                    return warning(
                        "`::set-output` needs a `name` property: `::set-output name=NAME::VALUE`"
                            .into(),
                    );
                };
                self.outputs.insert(name.trim().to_string(), cmd.data);
                if std::mem::replace(&mut self.warned_set_output, true) {
                    Seen::Done
                } else {
                    warning("The `set-output` command is deprecated: append `NAME=VALUE` to the file named by $GITHUB_OUTPUT instead".into())
                }
            }
            "set-env" | "add-path" if !self.allow_unsecure => {
                let message = format!(
                    "Unable to process command '::{}': the `{}` command is disabled; write to the file named by {} instead, or set ACTIONS_ALLOW_UNSECURE_COMMANDS=true in the step's env to allow it",
                    cmd.name,
                    cmd.name,
                    if cmd.name == "set-env" { "$GITHUB_ENV" } else { "$GITHUB_PATH" }
                );
                self.failure.get_or_insert_with(|| message.clone());
                Seen::Annotate(Annotation {
                    level: AnnotationLevel::Error,
                    message,
                    title: None,
                    file: None,
                    line: None,
                    col: None,
                    end_line: None,
                    end_column: None,
                })
            }
            "set-env" => {
                let Some(name) = cmd.props.get("name").filter(|n| !n.trim().is_empty()) else {
                    return warning("`::set-env` needs a `name` property".into());
                };
                self.env.push((name.trim().to_string(), cmd.data));
                warning("The `set-env` command is deprecated: append `NAME=VALUE` to the file named by $GITHUB_ENV instead".into())
            }
            "add-path" => {
                self.path.push(cmd.data);
                warning("The `add-path` command is deprecated: append the directory to the file named by $GITHUB_PATH instead".into())
            }
            // Accepted; only the `post:` of the same action would read it.
            "save-state" | "echo" => Seen::Done,
            _ => Seen::Output,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_properties_and_data() {
        let c = parse("::error file=src/a.rs,line=3,col=7,endLine=4,title=Bad%3A thing%2C really::it broke%0Ahere").unwrap();
        assert_eq!(c.name, "error");
        assert_eq!(c.props["file"], "src/a.rs");
        assert_eq!(c.props["title"], "Bad: thing, really");
        assert_eq!(c.data, "it broke\nhere");
        assert_eq!(
            parse("  ::group::Build %25 test").unwrap().data,
            "Build % test"
        );
        assert_eq!(parse("::endgroup::").unwrap().name, "endgroup");
        for not in [
            "plain text",
            ":: nothing",
            "::no end",
            "::bad!name::x",
            "::::x",
            "x ::error::y",
        ] {
            assert_eq!(parse(not), None, "{not}");
        }
    }

    #[test]
    fn annotations_carry_their_place() {
        let mut c = Commands::new(false, false);
        let Seen::Annotate(a) = c.line("::warning file=app.py,line=12,col=5::unused import") else {
            panic!()
        };
        assert_eq!(a.render(), "app.py:12:5: warning: unused import");
        let Seen::Annotate(a) = c.line("::notice title=Note::hello") else {
            panic!()
        };
        assert_eq!(a.render(), "notice: Note: hello");
        assert_eq!(a.line, None);
    }

    #[test]
    fn stop_commands_until_the_token() {
        let mut c = Commands::new(false, false);
        assert_eq!(c.line("::stop-commands::pause-123"), Seen::Done);
        assert_eq!(c.line("::add-mask::nope"), Seen::Output);
        assert_eq!(c.line("::set-output name=x::1"), Seen::Output);
        assert_eq!(c.line("::pause-123::"), Seen::Done);
        assert_eq!(c.line("::add-mask::yes"), Seen::Mask("yes".into()));
        assert!(c.outputs.is_empty());
        // An empty token is not a way to stop commands.
        assert_eq!(c.line("::stop-commands::"), Seen::Output);
        assert_eq!(c.line("::group::g"), Seen::Group("g".into()));
    }

    #[test]
    fn set_output_warns_once_and_set_env_is_refused_by_default() {
        let mut c = Commands::new(false, false);
        assert!(matches!(
            c.line("::set-output name=a::1"),
            Seen::Annotate(_)
        ));
        assert_eq!(c.line("::set-output name=b::two words"), Seen::Done);
        assert_eq!(c.outputs["b"], "two words");
        assert!(
            matches!(c.line("::set-env name=BASH_ENV::/tmp/x"), Seen::Annotate(a) if a.level == AnnotationLevel::Error)
        );
        assert!(c.env.is_empty());
        assert!(c.failure.as_deref().unwrap().contains("disabled"));
        let mut c = Commands::new(false, true);
        c.line("::set-env name=A::1");
        c.line("::add-path::/opt/bin");
        assert_eq!(c.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(c.path, vec!["/opt/bin".to_string()]);
        assert!(c.failure.is_none());
    }

    #[test]
    fn debug_only_when_asked() {
        assert_eq!(Commands::new(false, false).line("::debug::x"), Seen::Done);
        assert_eq!(
            Commands::new(true, false).line("::debug::x"),
            Seen::Debug("x".into())
        );
    }

    #[test]
    fn hostile_lines() {
        let mut c = Commands::new(false, false);
        // A path-like output name is only a name: outputs are a map, never files.
        c.line("::set-output name=../../x::v");
        assert_eq!(c.outputs["../../x"], "v");
        // Huge and binary lines are plain output or bounded commands, never a panic.
        let huge = format!("::{}::x", "a".repeat(1_000_000));
        assert_eq!(c.line(&huge), Seen::Output);
        let big_data = format!("::notice::{}", "%0A".repeat(100_000));
        assert!(matches!(c.line(&big_data), Seen::Annotate(a) if a.message.len() == 100_000));
        assert_eq!(c.line("::\u{0}\u{7f}::\u{fffd}"), Seen::Output);
        assert_eq!(c.line("::error ,,=x,=,::"), c.line("::error::"));
        assert_eq!(c.line("::unknown-command::x"), Seen::Output);
        // Property values cannot smuggle a second command.
        let Seen::Annotate(a) = c.line("::error title=a%0A::error::b::msg") else {
            panic!()
        };
        assert_eq!(a.title.as_deref(), Some("a\n"));
        assert_eq!(a.message, "error::b::msg");
    }
}
