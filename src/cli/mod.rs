//! The command line: argument parsing (clap derive) and one function per
//! command that calls the library. Behaviour lives in the library; this
//! module only wires it together and chooses exit codes:
//! 0 success, 1 a step failed, 2 usage or workflow error, 130 interrupted.

use crate::diag::Diagnostic;
use crate::state::SqliteStore;
use crate::template::Engine as Templates;
use crate::workflow::{self, WorkflowFile};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

macro_rules! outln {
    ($($t:tt)*) => { $crate::cli::out(&format!("{}\n", format!($($t)*))) };
}

mod cache;
mod client;
mod gc;
pub mod grade;
mod graph;
mod history;
mod list;
mod plan;
mod run;
mod serve;
mod validate;
mod watch;
mod worker;
mod workflows;

pub use crate::session::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK};

/// Usage or workflow error.
pub const EXIT_USAGE: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "trun",
    version,
    about = "Run a trun.yaml workflow like make: content-hashed up-to-date checks, parallel jobs, containers, recorded state.",
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  trun                 run the `default` job, or every job\n  trun build test      run `build` and `test` and what they need\n  trun plan            show what would run and why\n  trun -i profile=debug build\n  trun -W               list the repository's .github/workflows/*.yml\n  trun -W ci plan       plan .github/workflows/ci.yml (-P ubuntu-latest=IMAGE to run its jobs in a container)\n\nExit codes: 0 success, 1 a step failed (or the output could not be written), 2 usage or workflow error, 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug, Clone, Default)]
pub struct FileArgs {
    /// Change to DIR before doing anything (like make -C).
    #[arg(short = 'C', long = "directory", global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// Workflow file (default: trun.yaml, trun.yml or .trun.yaml here or in a parent directory).
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Never use colour (also: NO_COLOR=1).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Skip the steps that use this action instead of refusing the workflow: a remote
    /// action trun cannot fetch (`codecov/codecov-action`, with or without `@ref`).
    /// Repeatable.
    #[arg(long = "skip-action", global = true, value_name = "NAME")]
    pub skip_actions: Vec<String>,
    #[command(flatten)]
    pub github: GithubArgs,
    /// Use `trun serve` at URL instead of this machine: run, history, show, logs,
    /// cancel, pause and resume go through its API, with the same output.
    #[arg(long, global = true, value_name = "URL", env = "TRUN_SERVER")]
    pub server: Option<String>,
    /// Record runs in a shared PostgreSQL database instead of this workspace's
    /// .trun/state.db: postgres://user[:password]@host[:port]/database. run, history,
    /// show and logs use it; several machines or workspaces pointed at one database
    /// see each other's runs. The lock, the stat cache and the CAS stay local.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "TRUN_DATABASE_URL",
        hide_env_values = true
    )]
    pub db: Option<String>,
    /// Bearer token: the one `trun serve` requires, and the one `--server` sends.
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "TRUN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// Options for GitHub Actions workflow files (`.github/workflows/*.yml`).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "GitHub Actions workflows")]
pub struct GithubArgs {
    /// Alone: list the repository's .github/workflows/*.yml with their jobs and triggers.
    /// With a value: use that workflow, by path or by name (`-W ci` is .github/workflows/ci.yml).
    #[arg(short = 'W', long = "workflows", global = true, value_name = "WORKFLOW", num_args = 0..=1, default_missing_value = "")]
    pub workflows: Option<String>,
    /// Run jobs whose `runs-on` has LABEL in a container of IMAGE instead of on this host
    /// (repeatable; also remembered as `-P LABEL=IMAGE` lines in .trunrc or ~/.config/trun/trunrc).
    #[arg(short = 'P', long = "platform", global = true, value_name = "LABEL=IMAGE", value_parser = crate::github::config::parse_platform)]
    pub platforms: Vec<(String, String)>,
    /// The event the run stands for (`github.event_name`; default: `push` if the workflow has it, else its first trigger).
    #[arg(long = "event", global = true, value_name = "NAME")]
    pub event: Option<String>,
    /// A JSON event payload for `github.event` and $GITHUB_EVENT_PATH (default: a minimal one for the event).
    #[arg(long = "event-path", global = true, value_name = "FILE")]
    pub event_path: Option<PathBuf>,
    /// Set a configuration variable: `vars.NAME` (repeatable).
    #[arg(long = "var", global = true, value_name = "NAME=VALUE", value_parser = crate::github::config::parse_var)]
    pub vars: Vec<(String, String)>,
    /// Read configuration variables from a dotenv file (NAME=VALUE lines).
    #[arg(long = "var-file", global = true, value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
}

impl GithubArgs {
    pub fn options(&self) -> crate::github::Options {
        crate::github::Options {
            event_name: self.event.clone(),
            event_path: self.event_path.clone(),
            vars: self.vars.clone(),
            var_files: self.var_files.clone(),
            platforms: self.platforms.clone(),
        }
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Jobs to run, with everything they need (default: the `default` job, or all jobs).
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
    #[command(flatten)]
    pub file: FileArgs,
    /// Set an input: -i name=value (repeatable).
    #[arg(short = 'i', long = "input", value_name = "NAME=VALUE", value_parser = parse_input)]
    pub inputs: Vec<(String, String)>,
    #[command(flatten)]
    pub secrets: SecretArgs,
    /// Jobs to run at once (default: number of CPU cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub parallel: Option<usize>,
    /// Stop every job at the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// Re-run steps even when up to date: all, or the named steps/jobs (`--force build`, `--force build.compile`).
    #[arg(long, value_name = "STEP_OR_JOB", num_args = 0..=1, default_missing_value = "", action = clap::ArgAction::Append)]
    pub force: Vec<String>,
    /// Show the plan instead of running it.
    #[arg(long)]
    pub dry_run: bool,
    /// Output style.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// One JSON event per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Only failures and the summary.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show step output live on a terminal too.
    #[arg(short, long)]
    pub verbose: bool,
    /// If another trun holds this workspace, fail instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub remote: crate::cache::RemoteCacheArgs,
    /// Run no job here: queue each in the --db PostgreSQL database for `trun
    /// worker`s, with the workspace (as .gitignore leaves it) in --remote-cache.
    #[arg(long)]
    pub dispatch: bool,
}

/// `--secret` and `--secret-file`: the `secrets` context.
#[derive(Args, Debug, Clone, Default)]
pub struct SecretArgs {
    /// A secret for `${{ secrets.NAME }}`: NAME to take the value of NAME from trun's
    /// environment (preferred), or NAME=VALUE (visible to other users in `ps`). Repeatable.
    /// Values are shown as *** in all output, logs, events and the state store.
    #[arg(long = "secret", value_name = "NAME[=VALUE]")]
    pub secrets: Vec<String>,
    /// Secrets from a dotenv file: NAME=VALUE lines, `export ` prefixes, quotes and
    /// `#` comments allowed. Repeatable; `--secret` wins over a file.
    #[arg(long = "secret-file", value_name = "FILE")]
    pub secret_files: Vec<PathBuf>,
}

impl SecretArgs {
    /// The secrets given.
    pub fn read(&self) -> Result<crate::secrets::Secrets, Vec<Diagnostic>> {
        let env = |name: &str| std::env::var(name).ok();
        crate::secrets::Secrets::from_args(&self.secret_files, &self.secrets, &env).map_err(|e| {
            match e {
                // file:line:col without the source line, which holds values.
                crate::secrets::SecretError::File {
                    path,
                    line,
                    col,
                    message,
                } => vec![Diagnostic {
                    path: Some(path),
                    line: line as u32,
                    col: col as u32,
                    ..Diagnostic::plain(message)
                }],
                e => vec![Diagnostic::plain(e.to_string())],
            }
        })
    }

    /// Whether any secret is given.
    pub fn given(&self) -> bool {
        !self.secrets.is_empty() || !self.secret_files.is_empty()
    }

    /// Reads the secrets into `plan` (its `secrets` context and fingerprints).
    pub fn apply(&self, plan: &mut crate::plan::Plan) -> Result<(), Vec<Diagnostic>> {
        let s = self.read()?;
        // As on GitHub a secret that was not given reads as empty; say so
        // before the run rather than let a deploy step log in with nothing.
        if let Ok(text) = std::fs::read_to_string(&plan.path) {
            for (offset, name) in crate::secrets::names_used(&text) {
                if s.get(name).is_none() && !name.eq_ignore_ascii_case("GITHUB_TOKEN") {
                    let d = Diagnostic::at_offset(
                        &plan.path,
                        &text,
                        offset,
                        name.len(),
                        format!("secret `{name}` is not given, so it reads as empty (`--secret {name}` or `--secret-file FILE`)"),
                    );
                    eprint!("{}", d.render_warning(use_color(false)));
                }
            }
        }
        plan.secrets = std::sync::Arc::new(s);
        Ok(())
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Progress {
    #[default]
    Auto,
    Tty,
    Plain,
    Github,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run jobs (the default command).
    Run(RunArgs),
    /// Show what would run, in order, and why each step runs or is skipped.
    Plan(PlanArgs),
    /// Run what is out of date, then again whenever a source or the workflow changes.
    Watch(watch::WatchArgs),
    /// List the jobs of the workflow.
    List(ListArgs),
    /// Print the job graph as Graphviz DOT (or Mermaid).
    Graph(GraphArgs),
    /// Check the workflow file without running anything.
    Validate(FileOnly),
    /// List recorded runs, newest first.
    History(HistoryArgs),
    /// Show one recorded run: jobs, steps, statuses, exit codes.
    Show(ShowArgs),
    /// Print the logs of a run, a job, or a step.
    Logs(LogsArgs),
    /// Grade student repositories against a rubric (YAML, Markdown or Classroom JSON).
    Grade(grade::GradeArgs),
    /// Rubric tools: `trun rubric import autograding.json > rubric.yaml`.
    #[command(subcommand)]
    Rubric(grade::RubricCommand),
    /// Serve runs over HTTP: create, watch (SSE), logs, cancel, metrics.
    Serve(serve::ServeArgs),
    /// Run jobs that `trun run --dispatch` queues in PostgreSQL, on this machine.
    Worker(worker::WorkerArgs),
    /// Cancel a run on a server (`--server URL`).
    Cancel(client::RunRef),
    /// Pause a run on a server: running steps finish, nothing new starts.
    Pause(client::RunRef),
    /// Resume a paused run on a server.
    Resume(client::RunRef),
    /// Remove containers and networks left behind by killed runs.
    Gc(GcArgs),
    /// Inspect or prune the content-addressed output cache (.trun/cas).
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Print the JSON Schema of trun.yaml.
    Schema,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
pub struct FileOnly {
    #[command(flatten)]
    pub file: FileArgs,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
    #[command(flatten)]
    pub file: FileArgs,
    #[arg(short = 'i', long = "input", value_name = "NAME=VALUE", value_parser = parse_input)]
    pub inputs: Vec<(String, String)>,
    #[command(flatten)]
    pub secrets: SecretArgs,
    #[arg(long, value_name = "STEP_OR_JOB", num_args = 0..=1, default_missing_value = "", action = clap::ArgAction::Append)]
    pub force: Vec<String>,
    /// The plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub file: FileArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Mermaid instead of DOT.
    #[arg(long)]
    pub mermaid: bool,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// How many runs.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Run id or `last` (default: the latest run).
    pub run: Option<String>,
    #[command(flatten)]
    pub file: FileArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Size of the cache: objects, bytes, recorded successes.
    Stats {
        #[command(flatten)]
        file: FileArgs,
        #[arg(long)]
        json: bool,
    },
    /// Forget old successes and delete objects nothing refers to any more.
    Prune {
        #[command(flatten)]
        file: FileArgs,
        /// Keep the newest N successes of each step.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Forget successes older than this, e.g. `7d`, `12h`.
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Also remove containers started with `keep: true`.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Run id, or `last`.
    pub run: String,
    /// JOB or JOB.STEP (step by id or 1-based number).
    pub selector: Option<String>,
    #[command(flatten)]
    pub file: FileArgs,
    /// Where `trun worker`s put the logs of the steps they ran.
    #[command(flatten)]
    pub remote: crate::cache::RemoteCacheArgs,
}

fn parse_input(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

/// Entry point: parse arguments, run the command, return the exit code.
pub fn main() -> i32 {
    // `trun -C DIR plan`: a leading -C applies to whatever follows, so the
    // word after it can still be a command rather than a job name.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    while args.len() > 1 {
        let a = args[1].to_string_lossy().into_owned();
        let dir = if a == "-C" || a == "--directory" {
            if args.len() < 3 {
                break;
            }
            let d = args.remove(2);
            args.remove(1);
            d
        } else if let Some(d) = a
            .strip_prefix("--directory=")
            .or_else(|| a.strip_prefix("-C").filter(|d| !d.is_empty()))
        {
            let d = d.into();
            args.remove(1);
            d
        } else {
            break;
        };
        if let Err(e) = std::env::set_current_dir(&dir) {
            eprintln!(
                "error: cannot change to directory {}: {e}",
                PathBuf::from(&dir).display()
            );
            return EXIT_USAGE;
        }
    }
    hoist_subcommand(&mut args);
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    let token = cli.run.file.token.clone();
    let result = match cli.command {
        // A server records runs in its own store: a database named here would
        // be ignored, so it is refused.
        _ if cli.run.file.server.is_some() && cli.run.file.db.is_some() => Err(vec![Diagnostic::plain(
            "`--server` (TRUN_SERVER) and `--db` (TRUN_DATABASE_URL) both say where runs are \
             recorded: the server keeps its own; give one of them",
        )]),
        // `trun -W`: list the repository's GitHub Actions workflows, as `act -l` does.
        None if cli.run.file.github.workflows.as_deref() == Some("") => {
            workflows::cmd_workflows(&cli.run.file, cli.run.json)
        }
        None if cli.run.file.server.is_some() => client::run(&cli.run),
        Some(Command::Run(a)) if a.file.server.is_some() => client::run(&a),
        Some(Command::History(a)) if a.file.server.is_some() => client::history(&a),
        Some(Command::Show(a)) if a.file.server.is_some() => client::show(&a),
        Some(Command::Logs(a)) if a.file.server.is_some() => client::logs(&a),
        Some(Command::Cancel(a)) => client::act(&a, "cancel"),
        Some(Command::Pause(a)) => client::act(&a, "pause"),
        Some(Command::Resume(a)) => client::act(&a, "resume"),
        None => run::cmd_run(cli.run),
        Some(Command::Run(a)) => run::cmd_run(a),
        Some(Command::Plan(a)) => plan::cmd_plan(a),
        Some(Command::Watch(a)) => watch::cmd_watch(a),
        Some(Command::List(a)) => list::cmd_list(a),
        Some(Command::Graph(a)) => graph::cmd_graph(a),
        Some(Command::Validate(a)) => validate::cmd_validate(a),
        Some(Command::History(a)) => history::cmd_history(a),
        Some(Command::Show(a)) => history::cmd_show(a),
        Some(Command::Logs(a)) => history::cmd_logs(a),
        Some(Command::Grade(mut a)) => {
            a.no_color = cli.run.file.no_color || std::env::var_os("NO_COLOR").is_some();
            Ok(grade::grade(&a))
        }
        Some(Command::Rubric(c)) => Ok(grade::rubric(&c)),
        Some(Command::Serve(_)) if cli.run.file.server.is_some() => Err(vec![Diagnostic::plain(
            "`--server` (or TRUN_SERVER) names a server to talk to, and `trun serve` is one: leave it out",
        )]),
        Some(Command::Serve(a)) => serve::cmd_serve(a, token, cli.run.file.db.clone()),
        Some(Command::Worker(a)) => worker::cmd_worker(a, cli.run.file.db.clone()),
        Some(Command::Gc(a)) => gc::cmd_gc(a),
        Some(Command::Cache(c)) => cache::cmd_cache(c),
        Some(Command::Schema) => {
            outln!("{}", schema_text());
            Ok(EXIT_OK)
        }
        Some(Command::Completions { shell }) => {
            let mut cmd = Cli::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "trun", &mut buf);
            out(&String::from_utf8_lossy(&buf));
            Ok(EXIT_OK)
        }
    };
    match result {
        // Output that could not be written is a failure, even of a command
        // that otherwise succeeded.
        Ok(EXIT_OK) if crate::report::output_failed() => EXIT_FAILED,
        Ok(code) => code,
        Err(errs) => {
            let color = use_color(false);
            let mut err = std::io::stderr().lock();
            for d in &errs {
                let _ = write!(err, "{}", d.render(color));
            }
            if errs.len() > 1 {
                let _ = writeln!(err, "{} errors", errs.len());
            }
            EXIT_USAGE
        }
    }
}

type CmdResult = Result<i32, Vec<Diagnostic>>;

/// `trun -f ci.yaml plan` and `trun -i x=1 plan` mean `trun plan -f … -i …`:
/// when only options stand before a command's name, move the name first so
/// it is not taken for a job. Options that take a value are skipped with it.
fn hoist_subcommand(args: &mut Vec<std::ffi::OsString>) {
    const WITH_VALUE: &[&str] = &[
        "-f",
        "--file",
        "-i",
        "--input",
        "-j",
        "--jobs",
        "--progress",
        "--skip-action",
        "-W",
        "--workflows",
        "-P",
        "--platform",
        "--event",
        "--event-path",
        "--var",
        "--var-file",
        "--server",
        "--token",
    ];
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if a == "--" || !a.starts_with('-') {
            if i > 1 && names.contains(&a) {
                let cmd = args.remove(i);
                args.insert(1, cmd);
            }
            return;
        }
        // `--force` takes an optional value: what follows is ambiguous, stop.
        if a == "--force" {
            return;
        }
        i += if WITH_VALUE.contains(&a.as_str()) {
            2
        } else {
            1
        };
    }
}

/// Write to stdout; a reader that went away (`trun history | head -1`) is
/// not an error worth a panic, so a broken pipe is ignored.
pub(crate) fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(text.as_bytes()).and_then(|_| o.flush()) {
        crate::report::note_output_error(&e);
    }
}

/// The committed schema text: `trun schema` output and `schema/trun.schema.json`.
pub fn schema_text() -> String {
    serde_json::to_string_pretty(&workflow::schema()).unwrap_or_default()
}

fn use_color(no_color: bool) -> bool {
    !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

/// Apply `-C DIR`, then find the workflow file: `-f FILE` as given, or
/// `trun.yaml` here or in a parent (relative to where the user stands).
/// `Err(dir searched)` when there is none.
fn workflow_path(file: &FileArgs) -> Result<Result<PathBuf, PathBuf>, Vec<Diagnostic>> {
    if let Some(dir) = &file.directory {
        std::env::set_current_dir(dir).map_err(|e| {
            vec![Diagnostic::plain(format!(
                "cannot change to directory {}: {e}",
                dir.display()
            ))]
        })?;
    }
    if let Some(p) = &file.file {
        return Ok(Ok(p.clone()));
    }
    if let Some(w) = &file.github.workflows {
        return workflows::choose(w).map(Ok);
    }
    let cwd = std::env::current_dir().map_err(|e| {
        vec![Diagnostic::plain(format!(
            "cannot read the current directory: {e}"
        ))]
    })?;
    Ok(match workflow::discover(&cwd) {
        Some(found) => Ok(pathdiff(&found, &cwd)),
        None => Err(cwd),
    })
}

fn no_workflow(searched: &Path) -> Diagnostic {
    Diagnostic::plain(format!(
        "no trun.yaml found in {} or any parent directory",
        searched.display()
    ))
}

/// Load the workflow (printing its warnings) and plan `jobs` with `inputs`: what `trun
/// plan`, `trun run` and each cycle of `trun watch` start from.
pub(crate) fn load_plan(
    file: &FileArgs,
    jobs: &[String],
    inputs: &[(String, String)],
) -> Result<(WorkflowFile, crate::plan::Plan), Vec<Diagnostic>> {
    let (wf, _) = load(file)?;
    for w in crate::plan::warnings(&wf) {
        eprint!("{}", w.render_warning(use_color(file.no_color)));
    }
    let plan = crate::plan::build_with(
        &wf,
        &crate::plan::Request {
            jobs: jobs.to_vec(),
            inputs: inputs.to_vec(),
        },
        &file.github.options(),
    )?;
    Ok((wf, plan))
}

/// Find, parse and validate the workflow file.
pub fn load(file: &FileArgs) -> Result<(WorkflowFile, Templates), Vec<Diagnostic>> {
    let path = match workflow_path(file)? {
        // Not `exists()`: a link that loops or dangles is there, and `load` says so.
        Ok(p)
            if (file.file.is_some() || file.github.workflows.is_some())
                && std::fs::symlink_metadata(&p).is_err() =>
        {
            return Err(vec![Diagnostic::plain(format!(
                "workflow file {} does not exist",
                p.display()
            ))])
        }
        Ok(p) => p,
        Err(cwd) => {
            let help = if crate::github::workflow_files(&cwd).is_some_and(|(_, f)| !f.is_empty()) {
                "this repository has GitHub Actions workflows: `trun -W` lists them, `trun -W NAME` runs one"
            } else {
                "create a trun.yaml, or name a file with -f FILE"
            };
            return Err(vec![no_workflow(&cwd).with_help(help)]);
        }
    };
    let mut wf = WorkflowFile::load(&path).map_err(|d| vec![d])?;
    wf.skip_actions = file.skip_actions.clone();
    let templates = Templates::new(wf.root.clone());
    crate::validate::validate(&wf, &templates)?;
    Ok((wf, templates))
}

fn pathdiff(path: &Path, base: &Path) -> PathBuf {
    if let Ok(rel) = path.strip_prefix(base) {
        return rel.to_path_buf();
    }
    let mut up = PathBuf::new();
    let mut b = base;
    while let Some(parent) = b.parent() {
        up.push("..");
        if let Ok(rel) = path.strip_prefix(parent) {
            return up.join(rel);
        }
        b = parent;
    }
    path.to_path_buf()
}

/// The workspace root (the workflow file's directory) without parsing the
/// file: looking at past runs must work while the file is being fixed.
fn workspace_root(file: &FileArgs) -> Result<PathBuf, Vec<Diagnostic>> {
    let path = match workflow_path(file)? {
        Ok(p) => p,
        // `trun grade` records runs where there is no workflow file.
        Err(cwd) if cwd.join(".trun").is_dir() => return Ok(cwd),
        Err(cwd) => return Err(vec![no_workflow(&cwd)]),
    };
    let abs = std::path::absolute(&path).unwrap_or(path);
    Ok(abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".")))
}

/// The state store with the workspace root, or `None` when nothing was ever
/// recorded here.
/// A store opened for looking back, with the workspace root.
type OpenedStore = (Box<dyn crate::state::Store>, PathBuf);

fn open_store(file: &FileArgs) -> Result<Option<OpenedStore>, Vec<Diagnostic>> {
    if let Some(url) = &file.db {
        // A shared database holds runs of other workspaces too; log files
        // are read from this workspace when they are here.
        let root = match workspace_root(file) {
            Ok(root) => root,
            Err(_) => {
                std::env::current_dir().map_err(|e| vec![Diagnostic::plain(e.to_string())])?
            }
        };
        let store =
            crate::state::open_store(url).map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
        return Ok(Some((store, root)));
    }
    let root = workspace_root(file)?;
    crate::fsutil::refuse_symlink(&root.join(".trun"))
        .map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
    let db = crate::state::db_path(&root);
    if !db.exists() {
        return Ok(None);
    }
    match SqliteStore::open(&db) {
        Ok(s) => Ok(Some((Box::new(s), root))),
        // Looking back needs no writing: a read-only `.trun` (a mount, another
        // user's workspace) is read as it is.
        Err(e) if !dir_writable(&root.join(".trun")) => SqliteStore::open_read_only(&db)
            .map(|s| Some((Box::new(s) as Box<dyn crate::state::Store>, root)))
            .map_err(|_| vec![Diagnostic::plain(e.to_string())]),
        Err(e) => Err(vec![Diagnostic::plain(e.to_string())]),
    }
}

/// Whether this process may create files in `dir`.
fn dir_writable(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
        && !nix::sys::statvfs::statvfs(dir)
            .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
            .unwrap_or(false)
}
