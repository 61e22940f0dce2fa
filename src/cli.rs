//! The command line: argument parsing (clap derive) and one function per
//! command that calls the library. Behaviour lives in the library; this
//! module only wires it together and chooses exit codes:
//! 0 success, 1 a step failed, 2 usage or workflow error, 130 interrupted.

use crate::diag::Diagnostic;
use crate::event::{Event, Status};
use crate::exec::{self, Events, RunOptions};
use crate::lock::{HolderInfo, LockError, WorkspaceLock};
use crate::plan::{self, Plan, Request};
use crate::report::{self, ProgressMode, ReportOptions};
use crate::state::Store;
use crate::template::Engine as Templates;
use crate::workflow::{self, WorkflowFile};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

macro_rules! outln {
    ($($t:tt)*) => { out(&format!("{}\n", format!($($t)*))) };
}

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Parser, Debug)]
#[command(
    name = "trun",
    version,
    about = "Run a trun.yaml workflow like make: content-hashed up-to-date checks, parallel jobs, containers, recorded state.",
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  trun                 run the `default` job, or every job\n  trun build test      run `build` and `test` and what they need\n  trun plan            show what would run and why\n  trun -i profile=debug build\n\nExit codes: 0 success, 1 a step failed (or the output could not be written), 2 usage or workflow error, 130 interrupted."
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
    Grade(crate::grade::cli::GradeArgs),
    /// Rubric tools: `trun rubric import autograding.json > rubric.yaml`.
    #[command(subcommand)]
    Rubric(crate::grade::cli::RubricCommand),
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
    let result = match cli.command {
        None => cmd_run(cli.run),
        Some(Command::Run(a)) => cmd_run(a),
        Some(Command::Plan(a)) => cmd_plan(a),
        Some(Command::List(a)) => cmd_list(a),
        Some(Command::Graph(a)) => cmd_graph(a),
        Some(Command::Validate(a)) => cmd_validate(a),
        Some(Command::History(a)) => cmd_history(a),
        Some(Command::Show(a)) => cmd_show(a),
        Some(Command::Logs(a)) => cmd_logs(a),
        Some(Command::Grade(mut a)) => {
            a.no_color = cli.run.file.no_color || std::env::var_os("NO_COLOR").is_some();
            Ok(crate::grade::cli::grade(&a))
        }
        Some(Command::Rubric(c)) => Ok(crate::grade::cli::rubric(&c)),
        Some(Command::Gc(a)) => cmd_gc(a),
        Some(Command::Cache(c)) => cmd_cache(c),
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

/// Write to stdout. A reader that went away (`trun history | head -1`) is
/// ignored; any other failure (`> /dev/full`) is reported and makes the
/// command exit 1 (see `report::output_failed`).
fn out(text: &str) {
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

/// Find, parse and validate the workflow file.
pub fn load(file: &FileArgs) -> Result<(WorkflowFile, Templates), Vec<Diagnostic>> {
    let path = match workflow_path(file)? {
        // Not `exists()`: a link that loops or dangles is there, and `load` says so.
        Ok(p) if file.file.is_some() && std::fs::symlink_metadata(&p).is_err() => {
            return Err(vec![Diagnostic::plain(format!(
                "workflow file {} does not exist",
                p.display()
            ))])
        }
        Ok(p) => p,
        Err(cwd) => {
            return Err(vec![
                no_workflow(&cwd).with_help("create a trun.yaml, or name a file with -f FILE")
            ])
        }
    };
    let wf = WorkflowFile::load(&path).map_err(|d| vec![d])?;
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

fn state_dir(wf: &WorkflowFile) -> PathBuf {
    wf.root.join(".trun")
}

fn cmd_validate(a: FileOnly) -> CmdResult {
    let (wf, _) = load(&a.file)?;
    let n = wf.workflow.jobs.value.len();
    outln!(
        "{}: ok ({n} job{})",
        wf.path.display(),
        if n == 1 { "" } else { "s" }
    );
    Ok(EXIT_OK)
}

fn cmd_list(a: ListArgs) -> CmdResult {
    let (wf, _) = load(&a.file)?;
    let jobs = &wf.workflow.jobs.value;
    if a.json {
        let list: Vec<serde_json::Value> = jobs
            .iter()
            .map(|(id, j)| {
                serde_json::json!({
                    "id": id.value,
                    "name": j.value.name.as_ref().map(|n| n.value.clone()),
                    "needs": j.value.needs.as_ref().map(|n| n.value.iter().map(|s| s.value.clone()).collect::<Vec<_>>()).unwrap_or_default(),
                    "steps": j.value.steps.value.len(),
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(EXIT_OK);
    }
    let width = jobs.keys().map(str::len).max().unwrap_or(0);
    for (id, j) in jobs.iter() {
        let name = j
            .value
            .name
            .as_ref()
            .map(|n| n.value.as_str())
            .unwrap_or("");
        let needs: Vec<&str> = j
            .value
            .needs
            .as_ref()
            .map(|n| n.value.iter().map(|s| s.value.as_str()).collect())
            .unwrap_or_default();
        let mut line = format!("{:width$}  {name}", id.value);
        if !needs.is_empty() {
            line = format!("{}  (needs: {})", line.trim_end(), needs.join(", "));
        }
        outln!("{}", line.trim_end());
    }
    Ok(EXIT_OK)
}

fn cmd_graph(a: GraphArgs) -> CmdResult {
    let (wf, _) = load(&a.file)?;
    let plan = plan::build(&wf, &Request::default())?;
    out(&if a.mermaid {
        crate::graph::mermaid(&plan)
    } else {
        crate::graph::dot(&plan)
    });
    Ok(EXIT_OK)
}

fn cmd_plan(a: PlanArgs) -> CmdResult {
    let (wf, _) = load(&a.file)?;
    for w in plan::warnings(&wf) {
        eprint!("{}", w.render_warning(use_color(a.file.no_color)));
    }
    let plan = plan::build(
        &wf,
        &Request {
            jobs: a.jobs,
            inputs: a.inputs,
        },
    )?;
    let explained =
        crate::explain::explain(&plan, &a.force).map_err(|e| vec![Diagnostic::plain(e)])?;
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&explained).unwrap_or_default()
        );
    } else {
        out(&crate::explain::render(
            &explained,
            use_color(a.file.no_color),
        ));
    }
    Ok(EXIT_OK)
}

fn cmd_run(a: RunArgs) -> CmdResult {
    let (wf, _) = load(&a.file)?;
    for w in plan::warnings(&wf) {
        eprint!("{}", w.render_warning(use_color(a.file.no_color)));
    }
    let plan = plan::build(
        &wf,
        &Request {
            jobs: a.jobs.clone(),
            inputs: a.inputs.clone(),
        },
    )?;
    if a.dry_run {
        let explained =
            crate::explain::explain(&plan, &a.force).map_err(|e| vec![Diagnostic::plain(e)])?;
        if a.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&explained).unwrap_or_default()
            );
        } else {
            out(&crate::explain::render(
                &explained,
                use_color(a.file.no_color),
            ));
        }
        return Ok(EXIT_OK);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return Err(vec![Diagnostic::plain(format!(
                "cannot start the runtime: {e}"
            ))])
        }
    };
    // A plan that needs Docker fails here, before anything runs.
    crate::docker::set_workspace(&wf.root);
    let docker = if plan_needs_docker(&plan) {
        match runtime.block_on(crate::docker::Docker::connect()) {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                return Err(vec![Diagnostic::plain(e.to_string())
                    .with_help("this workflow uses containers or docker/* actions; start Docker or set DOCKER_HOST")])
            }
        }
    } else {
        None
    };
    let dir = state_dir(&wf);
    std::fs::create_dir_all(&dir).map_err(|e| {
        vec![Diagnostic::plain(format!(
            "cannot create {}: {e}",
            dir.display()
        ))]
    })?;
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let holder = HolderInfo::current(command_line);
    let mut lock = match WorkspaceLock::try_acquire(&dir, &holder) {
        Ok(l) => l,
        Err(e @ LockError::Held { .. }) | Err(e @ LockError::HeldByUnknown { .. }) => {
            if a.no_wait {
                return Err(vec![Diagnostic::plain(e.to_string())]);
            }
            match &e {
                LockError::Held {
                    pid,
                    run_id,
                    command,
                    ..
                } => {
                    let run = run_id.map(|r| format!(", run {r}")).unwrap_or_default();
                    eprintln!(
                        "trun: waiting for another trun to finish (pid {pid}{run}: {command})…"
                    );
                }
                _ => eprintln!(
                    "trun: waiting for another process to release {}…",
                    dir.join("lock").display()
                ),
            }
            WorkspaceLock::acquire_blocking(&dir, &holder)
                .map_err(|e| vec![Diagnostic::plain(e.to_string())])?
        }
        Err(e) => return Err(vec![Diagnostic::plain(e.to_string())]),
    };
    let mut store = Store::open(&crate::state::db_path(&wf.root))
        .map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run_id = store
        .begin_run(
            &plan.workflow,
            &wf.path.display().to_string(),
            &args,
            &plan.job_infos(),
        )
        .map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
    let _ = lock.set_run_id(run_id);

    let opts = ReportOptions::resolve(
        if a.json {
            ProgressMode::Json
        } else {
            match a.progress {
                Progress::Auto => ProgressMode::Auto,
                Progress::Tty => ProgressMode::Tty,
                Progress::Plain => ProgressMode::Plain,
                Progress::Github => ProgressMode::Github,
            }
        },
        a.quiet,
        a.verbose,
    );
    let opts = ReportOptions {
        color: opts.color && !a.file.no_color,
        ..opts
    };
    let out: Box<dyn Write + Send> = match opts.mode {
        ProgressMode::Json | ProgressMode::Github => Box::new(std::io::stdout()),
        _ => Box::new(std::io::stderr()),
    };
    let mut reporter = report::reporter(&opts, out);

    let (tx, rx) = std::sync::mpsc::channel::<Event>();
    let plan = Arc::new(plan);
    let hooks = Arc::new(
        crate::uptodate_hooks::Hooks::open(plan.clone(), run_id, &a.force)
            .map_err(|e| vec![Diagnostic::plain(e)])?,
    );
    let log_dir = dir.join("logs").join(run_id.to_string());
    let tmp_dir = dir.join("tmp").join(run_id.to_string());
    for d in [&log_dir, &tmp_dir] {
        // A new run's directories: anything planted there (a symlink to a
        // file worth overwriting) is removed, never written through.
        crate::fsutil::fresh_dir_under(&dir, d).map_err(|e| {
            vec![Diagnostic::plain(format!(
                "cannot create {}: {e}",
                d.display()
            ))]
        })?;
    }
    let memory_store = Store::open(&crate::state::db_path(&wf.root))
        .map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
    let run_opts = RunOptions {
        docker: docker.clone(),
        memory: Arc::new(crate::actions::StoreMemory(std::sync::Mutex::new(
            memory_store,
        ))),
        run_id,
        jobs: a.parallel.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        fail_fast: a.fail_fast,
        log_dir,
        tmp_dir,
        hooks: Some(hooks.clone()),
    };
    // One thread renders events and records them, in batches: the engine
    // never waits for the terminal or the disk.
    let consumer = std::thread::spawn(move || {
        let mut batch: Vec<Event> = Vec::new();
        let mut record_error: Option<String> = None;
        // A commit costs tens of microseconds: gather what arrives within a
        // couple of milliseconds into one transaction. Output lines go to the
        // log files, not the database.
        let gather = std::time::Duration::from_millis(2);
        while let Ok(ev) = rx.recv() {
            let deadline = std::time::Instant::now() + gather;
            let mut next = Some(ev);
            while let Some(ev) = next.take() {
                reporter.event(&ev);
                let last = matches!(ev, Event::RunFinished { .. });
                if !matches!(ev, Event::StepOutput { .. }) {
                    batch.push(ev);
                }
                if last || batch.len() >= 1024 {
                    break;
                }
                next = rx
                    .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                    .ok();
            }
            if !batch.is_empty() {
                if let Err(e) = store.record(&batch) {
                    record_error.get_or_insert(e.to_string());
                }
                batch.clear();
            }
        }
        reporter.finish();
        (store, record_error)
    });

    let result = runtime.block_on(async move {
        let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(crate::signals::forward(cancel_tx));
        let result = exec::run(plan.clone(), run_opts, Events(tx), cancel_rx).await;
        // Whatever the run started in Docker goes, however the run ended
        // (containers marked `keep: true` stay until `trun gc --all`).
        if let Some(d) = &docker {
            if let Ok(report) = d.cleanup_run(run_id).await {
                for e in report.errors {
                    eprintln!("trun: warning: cleanup: {e}");
                }
            }
        }
        result
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    let (_store, record_error) = consumer
        .join()
        .map_err(|_| vec![Diagnostic::plain("the reporter thread panicked")])?;
    hooks.flush();
    let _ = std::fs::remove_dir_all(dir.join("tmp").join(run_id.to_string()));
    if let Some(e) = record_error {
        eprintln!("trun: warning: could not record the run in the state store: {e}");
    }
    drop(lock);
    Ok(match result.status {
        Status::Success => EXIT_OK,
        Status::Cancelled => EXIT_INTERRUPTED,
        _ => EXIT_FAILED,
    })
}

/// Whether anything in the plan talks to Docker.
pub fn plan_needs_docker(plan: &Plan) -> bool {
    plan.jobs.iter().any(|j| {
        j.container.is_some()
            || !j.services.is_empty()
            || j.steps.iter().any(|s| matches!(&s.action, crate::plan::Action::Uses { uses, .. } if crate::actions::needs_docker(uses)))
    })
}

fn cmd_gc(a: GcArgs) -> CmdResult {
    // No need to parse the workflow: a broken file must not keep leftovers.
    let root = workspace_root(&a.file)?;
    crate::docker::set_workspace(&root);
    let live: Vec<i64> = match Store::open(&crate::state::db_path(&root)) {
        // Opening the store marks runs whose process died as interrupted,
        // so what is still `running` here really is running.
        Ok(store) => store
            .runs(10_000)
            .map(|runs| {
                runs.into_iter()
                    .filter(|r| r.status == Status::Running)
                    .map(|r| r.id)
                    .collect()
            })
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| vec![Diagnostic::plain(format!("cannot start the runtime: {e}"))])?;
    let report = runtime
        .block_on(async {
            let d = crate::docker::Docker::connect().await?;
            d.gc(|run| live.contains(&run), a.all).await
        })
        .map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
    outln!(
        "removed {} container{}, {} network{}, {} volume{}{}",
        report.containers.len(),
        if report.containers.len() == 1 {
            ""
        } else {
            "s"
        },
        report.networks.len(),
        if report.networks.len() == 1 { "" } else { "s" },
        report.volumes.len(),
        if report.volumes.len() == 1 { "" } else { "s" },
        if report.kept.is_empty() {
            String::new()
        } else {
            format!("; kept {} (keep: true; use --all)", report.kept.len())
        }
    );
    for e in &report.errors {
        eprintln!("trun: warning: {e}");
    }
    Ok(if report.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

fn cmd_cache(c: CacheCommand) -> CmdResult {
    let plain = |e: String| vec![Diagnostic::plain(e)];
    match c {
        CacheCommand::Stats { file, json } => {
            let (wf, _) = load(&file)?;
            let ut = crate::uptodate_hooks::open_store(&wf.root).map_err(plain)?;
            let st = ut.cache_stats().map_err(|e| plain(e.to_string()))?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
            } else {
                outln!(
                    "{} object{} ({}) in {}\n{} recorded success{} for {} step{}",
                    st.objects,
                    if st.objects == 1 { "" } else { "s" },
                    human_bytes(st.bytes),
                    wf.root.join(".trun/cas").display(),
                    st.entries,
                    if st.entries == 1 { "" } else { "es" },
                    st.steps,
                    if st.steps == 1 { "" } else { "s" },
                );
            }
            Ok(EXIT_OK)
        }
        CacheCommand::Prune {
            file,
            keep,
            older_than,
        } => {
            if keep.is_none() && older_than.is_none() {
                return Err(plain(
                    "say what to prune: --keep N and/or --older-than DURATION".into(),
                ));
            }
            let older = older_than
                .as_deref()
                .map(crate::duration::parse)
                .transpose()
                .map_err(|e| plain(format!("--older-than: {e}")))?;
            let (wf, _) = load(&file)?;
            let ut = crate::uptodate_hooks::open_store(&wf.root).map_err(plain)?;
            let r = ut.prune(keep, older).map_err(|e| plain(e.to_string()))?;
            outln!(
                "forgot {} success{}, deleted {} object{}, freed {}",
                r.entries_removed,
                if r.entries_removed == 1 { "" } else { "es" },
                r.objects_removed,
                if r.objects_removed == 1 { "" } else { "s" },
                human_bytes(r.bytes_freed)
            );
            Ok(EXIT_OK)
        }
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
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

/// The state store, or `None` when nothing was ever recorded here.
fn open_store(file: &FileArgs) -> Result<Option<Store>, Vec<Diagnostic>> {
    let root = workspace_root(file)?;
    crate::fsutil::refuse_symlink(&root.join(".trun"))
        .map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
    let db = crate::state::db_path(&root);
    if !db.exists() {
        return Ok(None);
    }
    Store::open(&db)
        .map(Some)
        .map_err(|e| vec![Diagnostic::plain(e.to_string())])
}

fn no_runs() -> Vec<Diagnostic> {
    vec![Diagnostic::plain("no runs recorded yet in this workspace").with_help("run `trun` first")]
}

fn cmd_history(a: HistoryArgs) -> CmdResult {
    let runs = match open_store(&a.file)? {
        Some(store) => store
            .runs(a.limit)
            .map_err(|e| vec![Diagnostic::plain(e.to_string())])?,
        None => Vec::new(),
    };
    if runs.is_empty() && !a.json {
        outln!("no runs recorded yet");
        return Ok(EXIT_OK);
    }
    if a.json {
        outln!(
            "{}",
            crate::history::history_json(&runs)
                .map_err(|e| vec![Diagnostic::plain(e.to_string())])?
        );
    } else {
        out(&crate::history::render_history(
            &runs,
            use_color(a.file.no_color),
        ));
    }
    Ok(EXIT_OK)
}

fn resolve_run(store: &Store, run: Option<&str>) -> Result<i64, Vec<Diagnostic>> {
    match run {
        None | Some("last") | Some("latest") => store
            .latest_run_id()
            .map_err(|e| vec![Diagnostic::plain(e.to_string())])?
            .ok_or_else(|| vec![Diagnostic::plain("no runs recorded yet")]),
        Some(s) => s.parse::<i64>().map_err(|_| {
            vec![Diagnostic::plain(format!(
                "`{s}` is not a run id (a number, or `last`)"
            ))]
        }),
    }
}

fn cmd_show(a: ShowArgs) -> CmdResult {
    let store = open_store(&a.file)?.ok_or_else(no_runs)?;
    let id = resolve_run(&store, a.run.as_deref())?;
    let detail = store
        .run(id)
        .map_err(|e| vec![Diagnostic::plain(e.to_string())])?
        .ok_or_else(|| {
            vec![Diagnostic::plain(format!("no run {id}"))
                .with_help("`trun history` lists the runs")]
        })?;
    if a.json {
        outln!(
            "{}",
            crate::history::run_json(&detail)
                .map_err(|e| vec![Diagnostic::plain(e.to_string())])?
        );
    } else {
        out(&crate::history::render_run(
            &detail,
            use_color(a.file.no_color),
        ));
    }
    Ok(EXIT_OK)
}

fn cmd_logs(a: LogsArgs) -> CmdResult {
    let store = open_store(&a.file)?.ok_or_else(no_runs)?;
    let id = resolve_run(&store, Some(&a.run))?;
    let files = crate::history::logs(&store, id, a.selector.as_deref())
        .map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
    let many = files.len() > 1;
    let mut out = std::io::stdout().lock();
    for (label, path) in files {
        if many {
            crate::report::ignore_io(writeln!(out, "==> {label} <=="));
        }
        match std::fs::read(&path) {
            Ok(bytes) => {
                crate::report::ignore_io(out.write_all(&bytes));
            }
            // A step that printed nothing leaves no log file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if many {
                    crate::report::ignore_io(writeln!(out, "(no output)"));
                } else {
                    eprintln!("trun: {label} printed nothing");
                }
            }
            Err(e) => {
                crate::report::ignore_io(writeln!(out, "(cannot read {}: {e})", path.display()));
            }
        }
    }
    Ok(EXIT_OK)
}
