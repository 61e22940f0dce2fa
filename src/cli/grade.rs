//! The `trun grade` and `trun rubric import` commands: arguments (clap derive, flattened
//! into the main command line by `crate::cli`) and one function per command returning the
//! exit code.
//!
//! `trun grade` loads the rubric, refuses to run student code on this machine unless
//! `--local` says so (or the rubric names a container), reuses stored results of
//! repositories whose watched files did not change, compiles the rest into a plan
//! (`grade::compile`) and runs it through the one run session (`crate::session`): the same
//! engine, `-j`, timeouts, Ctrl-C, reporters and recording as `trun run`. Each repository is
//! a job and each criterion a step (plus `setup` and `score`), so `trun history`, `show` and
//! `logs` list grading too. It then writes the reports asked for (terminal table, JSON,
//! Markdown, JUnit, Gradescope, a CSV gradebook). Exit codes: 0 when grading completed
//! (whatever the scores), 1 when a repository could not be graded (the gradebook says
//! `error`), 2 for usage and rubric errors, 130 when interrupted.
//!
//! Grader state: `.trun/state.db` of the workspace, which is the directory holding the
//! nearest `trun.yaml` above the current directory, or the current directory itself. The
//! grade cache lives in the same store as the run history; nothing is ever written into a
//! student repository.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use clap::{Args, Subcommand};

use crate::diag::Diagnostic;
use crate::docker::grading_image::{resolve_image, Image};
use crate::event::{now_ms, Status};
use crate::exec::grade_step::{GradeSink, Reused};
use crate::grade::report::{self, fmt_points, Format};
use crate::grade::score::{CriterionStatus, RepoResult};
use crate::grade::{compile, GradeCache, Isolation, Submission};
use crate::report::{ProgressMode, ReportOptions};
use crate::rubric::{classroom, parse_rubric, Rubric, RubricError, RubricFormat};
use crate::session::{terminal_reporter, RunConfig, Session, SessionOptions, StepHooksChoice};

pub const EXIT_OK: i32 = 0;
pub const EXIT_ERRORED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_INTERRUPTED: i32 = 130;

/// `trun grade [REPO…] --rubric FILE`.
#[derive(Args, Debug, Clone, Default)]
pub struct GradeArgs {
    /// Student repositories to grade (default: the current directory).
    #[arg(value_name = "REPO")]
    pub repos: Vec<PathBuf>,
    /// Also grade every non-hidden subdirectory of DIR.
    #[arg(long = "repos", value_name = "DIR")]
    pub repos_dir: Option<PathBuf>,
    /// The rubric: rubric.yaml, rubric.md, or GitHub Classroom's autograding.json.
    #[arg(short = 'r', long, value_name = "FILE")]
    pub rubric: PathBuf,
    /// Repositories graded at once (default: number of CPU cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Report written per repository: json, markdown, junit, gradescope (repeatable).
    #[arg(long = "format", value_name = "FORMAT", value_parser = parse_format, value_delimiter = ',')]
    pub format: Vec<Format>,
    /// Write reports here (and gradebook.csv when grading several repositories).
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Grade again even when nothing changed since the stored result.
    #[arg(long)]
    pub force: bool,
    /// Print the results as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Never use colour; set from the global `--no-color`.
    #[arg(skip)]
    pub no_color: bool,
    /// Run the criteria on this machine even if the rubric asks for a container.
    #[arg(long)]
    pub local: bool,
}

/// `trun rubric …`.
#[derive(Subcommand, Debug, Clone)]
pub enum RubricCommand {
    /// Write a rubric (GitHub Classroom's autograding.json, or rubric.md) as rubric.yaml.
    Import {
        /// The rubric to convert, e.g. .github/classroom/autograding.json.
        #[arg(value_name = "FILE")]
        path: PathBuf,
        /// Write to FILE instead of standard output.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// clap value parser for `--format`.
pub fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| {
        format!("unknown report format `{s}`; expected json, markdown, junit or gradescope")
    })
}

/// Runs `trun rubric …`.
pub fn rubric(cmd: &RubricCommand) -> i32 {
    match cmd {
        RubricCommand::Import { path, out } => rubric_import(path, out.as_deref()),
    }
}

/// `trun grade`, on the real stdout and stderr, relative to the current directory.
pub fn grade(args: &GradeArgs) -> i32 {
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot read the current directory: {e}");
            return EXIT_USAGE;
        }
    };
    let mut args = args.clone();
    args.no_color |= std::env::var_os("NO_COLOR").is_some() || !std::io::stdout().is_terminal();
    grade_with(
        &args,
        &cwd,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr(),
    )
}

/// `trun rubric import FILE [-o OUT]`: the rubric as `rubric.yaml` text, on stdout or in
/// `out`. Any rubric format is read; the point is GitHub Classroom's autograding.json.
pub fn rubric_import(path: &Path, out: Option<&Path>) -> i32 {
    rubric_import_with(
        path,
        out,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr(),
    )
}

/// [`rubric_import`] writing to `stdout` and `stderr`.
pub fn rubric_import_with(
    path: &Path,
    out: Option<&Path>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let rubric = match read_rubric(path, path) {
        Ok(r) => r,
        Err(d) => {
            let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let _ = write!(stderr, "{}", d.render(color));
            return EXIT_USAGE;
        }
    };
    let yaml = classroom::to_yaml(&rubric);
    let Some(file) = out else {
        let _ = write!(stdout, "{yaml}");
        return EXIT_OK;
    };
    match std::fs::write(file, yaml) {
        Ok(()) => {
            let _ = writeln!(
                stderr,
                "trun: wrote {} ({} criteria, {} points)",
                file.display(),
                rubric.criteria.len(),
                fmt_points(rubric.max_score())
            );
            EXIT_OK
        }
        Err(e) => {
            let _ = writeln!(stderr, "error: cannot write {}: {e}", file.display());
            EXIT_USAGE
        }
    }
}

/// Reads and validates the rubric at `abs`, naming it `shown` in messages; errors become a
/// diagnostic with the offending line when the rubric has positions.
fn read_rubric(shown: &Path, abs: &Path) -> Result<Rubric, Diagnostic> {
    let text = std::fs::read_to_string(abs)
        .map_err(|e| Diagnostic::plain(format!("cannot read rubric {}: {e}", shown.display())))?;
    let origin = shown.display().to_string();
    parse_rubric(&text, RubricFormat::of(shown), &origin)
        .map_err(|e| rubric_diagnostic(&e, shown, &text))
}

fn rubric_diagnostic(e: &RubricError, path: &Path, text: &str) -> Diagnostic {
    let (pos, message) = match e {
        RubricError::Syntax { pos, message, .. } => (*pos, message.clone()),
        RubricError::Invalid { pos, kind, .. } => (*pos, kind.to_string()),
        RubricError::Read { .. } => (None, e.to_string()),
    };
    let mut d = Diagnostic::plain(message);
    if !matches!(e, RubricError::Read { .. }) {
        d.path = Some(path.to_path_buf());
    }
    if let Some(p) = pos {
        d.line = p.line as u32;
        d.col = p.col as u32;
        d.source_line = text
            .lines()
            .nth((p.line as usize).saturating_sub(1))
            .map(str::to_string);
        d.width = 1;
    }
    d
}

/// The workspace whose `.trun/state.db` holds grading runs and the grade cache: the
/// directory of the nearest `trun.yaml` above `cwd`, or `cwd`.
pub fn state_root(cwd: &Path) -> PathBuf {
    crate::workflow::discover(cwd)
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| cwd.to_path_buf())
}

/// What `grade_with` writes to: results on `out`, progress and messages on `err`.
struct Io<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    color: bool,
}

impl Io<'_> {
    fn usage(&mut self, d: Diagnostic) -> i32 {
        let _ = write!(self.err, "{}", d.render(self.color));
        EXIT_USAGE
    }

    fn note(&mut self, line: &str) {
        let _ = writeln!(self.err, "trun: {line}");
    }
}

/// `trun grade` relative to `cwd`, writing results to `out` and messages to `err`.
pub fn grade_with(args: &GradeArgs, cwd: &Path, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut io = Io {
        out,
        err,
        color: !args.no_color,
    };
    let rubric = match read_rubric(&args.rubric, &cwd.join(&args.rubric)) {
        Ok(r) => r,
        Err(d) => return io.usage(d),
    };
    let repos = match collect_repos(args, cwd) {
        Ok(r) => r,
        Err(d) => return io.usage(d),
    };
    if args.jobs == Some(0) {
        return io.usage(Diagnostic::plain("-j needs at least 1"));
    }
    let stdout_format = match stdout_format(args, repos.len()) {
        Ok(f) => f,
        Err(d) => return io.usage(d),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return io.usage(Diagnostic::plain(format!("cannot start the runtime: {e}"))),
    };
    let root = state_root(cwd);
    crate::docker::set_workspace(&root);
    let db = crate::state::db_path(&root);
    // Docker first: an unreachable daemon or a missing image must stop us before a run is
    // recorded.
    let rubric_path = cwd.join(&args.rubric);
    if rubric.container.is_none() && !args.local {
        return io.usage(
            Diagnostic::plain(format!(
                "{} names no `container:`, so its commands would run on this machine with no isolation",
                args.rubric.display()
            ))
            .with_help(
                "pass --local to grade on this machine anyway (student code then runs as your user \
                 and can read and write what you can), or add `container: { image: … }` to the rubric",
            ),
        );
    }
    if args.local {
        io.note(&format!(
            "grading on this machine (--local): student code runs as {} with no isolation",
            whoami()
        ));
    }
    let mut rubric = rubric;
    let (docker, runner_name) = match (&rubric.container, args.local) {
        (Some(container), false) => {
            match grading_image(&runtime, container, args, &rubric_path, &db, &mut io) {
                Ok((d, image)) => {
                    let id = image.id.strip_prefix("sha256:").unwrap_or(&image.id);
                    let name = format!("docker:{}@{}", image.tag, id.get(..12).unwrap_or(id));
                    // The sandboxes use the image found (or built) now, by id.
                    rubric.container = Some(crate::rubric::Container {
                        image: Some(image.id.clone()),
                        dockerfile: None,
                        context: None,
                    });
                    (Some(std::sync::Arc::new(d)), name)
                }
                Err(d) => return io.usage(d),
            }
        }
        _ => (None, "local".to_string()),
    };
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let started = Instant::now();
    let graded = grade_repos(
        runtime,
        std::sync::Arc::new(rubric),
        &args.rubric,
        &root,
        &repos,
        &GradeOptions {
            jobs,
            local: args.local,
            force: args.force,
            use_cache: true,
            docker: docker.clone(),
            runner_name: runner_name.clone(),
            command_line: command_line(args),
        },
    );
    let Graded {
        results,
        run_id,
        interrupted,
        rubric,
    } = match graded {
        Ok(g) => g,
        Err(d) => return io.usage(d),
    };
    let took = started.elapsed();
    if interrupted {
        io.note("interrupted: grading stopped, nothing is left running");
        return EXIT_INTERRUPTED;
    }

    if args.json {
        let doc = serde_json::json!({
            "run_id": run_id,
            "rubric": args.rubric,
            "runner": runner_name,
            "duration_ms": took.as_millis() as u64,
            "repos": results,
        });
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        let _ = writeln!(io.out, "{text}");
    } else if let [one] = results.as_slice() {
        let text = match stdout_format {
            Some(f) => format!("{}\n", f.render(one)),
            None => report::table(one, io.color),
        };
        let _ = write!(io.out, "{text}");
    } else {
        let _ = write!(io.out, "{}", summary(&results, io.color));
    }
    let reused = results.iter().filter(|r| r.cached).count();
    // A single repository's table already says it was reused.
    if reused > 0 && (results.len() > 1 || args.json || stdout_format.is_some()) {
        let what = match results.as_slice() {
            [one] => format!(
                "{}: reused the result graded {}",
                one.repo,
                ago(one.graded_at)
            ),
            _ => format!("reused {reused} of {} stored results", results.len()),
        };
        io.note(&format!(
            "{what} (nothing it depends on changed; --force grades again)"
        ));
    }
    if results.len() > 1 {
        let how = if docker.is_some() {
            "a container each"
        } else {
            "locally"
        };
        io.note(&format!(
            "{} repositories in {:.1}s (-j {jobs}, {how})",
            results.len(),
            took.as_secs_f64()
        ));
    }
    if let Err(d) = write_out(args, cwd, &rubric, &results, &mut io) {
        return io.usage(d);
    }
    if results.iter().any(|r| r.error.is_some()) {
        EXIT_ERRORED
    } else {
        EXIT_OK
    }
}

/// How [`grade_repos`] grades.
pub struct GradeOptions {
    /// Repositories graded at once (the engine's `-j`).
    pub jobs: usize,
    /// Run on this machine even when the rubric names a container.
    pub local: bool,
    /// Grade again even when a stored result is still valid.
    pub force: bool,
    /// Reuse stored results when a repository's fingerprint is unchanged, and store new
    /// ones (in the workspace's state store).
    pub use_cache: bool,
    /// Needed when the rubric runs in a container and `local` is false.
    pub docker: Option<std::sync::Arc<crate::docker::Docker>>,
    /// `local` or `docker:IMAGE@ID`: part of the cache fingerprint.
    pub runner_name: String,
    /// How the run is shown in `trun history`.
    pub command_line: Vec<String>,
}

/// What [`grade_repos`] did.
pub struct Graded {
    /// One per repository, in the order given.
    pub results: Vec<RepoResult>,
    /// The recorded run, when anything ran.
    pub run_id: Option<i64>,
    /// Ctrl-C or SIGTERM stopped it.
    pub interrupted: bool,
    pub rubric: std::sync::Arc<Rubric>,
}

/// Grades `repos` against `rubric`: reuses stored results where nothing changed, compiles
/// the rest into a plan, runs it through the engine (recorded in `root`'s state store, so
/// `trun history`, `show` and `logs` list it), and returns one result per repository.
pub fn grade_repos(
    runtime: tokio::runtime::Runtime,
    rubric: std::sync::Arc<Rubric>,
    rubric_path: &Path,
    root: &Path,
    repos: &[PathBuf],
    opts: &GradeOptions,
) -> Result<Graded, Diagnostic> {
    let plain = |e: String| Diagnostic::plain(e);
    let session = Session::open(
        root,
        &SessionOptions {
            args: opts.command_line.clone(),
            command_line: format!("trun {}", opts.command_line.join(" ")),
            no_wait: false,
        },
    )
    .map_err(|e| plain(e.to_string()))?;
    let cache = opts.use_cache.then(|| GradeCache::new(session.store()));
    let keys = unique_keys(repos);
    // Repositories whose watched files did not change keep their stored result.
    let mut results: Vec<Option<RepoResult>> = vec![None; repos.len()];
    let mut fingerprints: Vec<Option<String>> = vec![None; repos.len()];
    if let Some(cache) = &cache {
        for (i, repo) in repos.iter().enumerate() {
            let fp = crate::grade::fingerprint(&rubric, repo, &opts.runner_name).ok();
            if let (Some(fp), false) = (&fp, opts.force) {
                if let Ok(Some(mut stored)) = cache.lookup(repo, &rubric, fp) {
                    stored.cached = true;
                    stored.repo = keys[i].clone();
                    stored.path = repo.to_path_buf();
                    results[i] = Some(stored);
                }
            }
            fingerprints[i] = fp;
        }
    }
    // Every repository is in the run; the reused ones' steps are skipped as up to date.
    let submissions: Vec<Submission> = repos
        .iter()
        .zip(&keys)
        .map(|(path, key)| Submission {
            key: key.clone(),
            path: path.clone(),
        })
        .collect();
    let reused: HashMap<String, RepoResult> = keys
        .iter()
        .zip(&results)
        .filter_map(|(k, r)| r.clone().map(|r| (k.clone(), r)))
        .collect();
    let isolation = if opts.local {
        Isolation::Local
    } else {
        Isolation::Rubric
    };
    let plan = compile(rubric.clone(), rubric_path, root, &submissions, isolation);
    let collected = std::sync::Arc::new(Collected::default());
    let reporter = terminal_reporter(&ReportOptions::resolve(ProgressMode::Auto, true, false));
    let outcome = session
        .run(
            plan,
            runtime,
            RunConfig {
                workflow_path: rubric_path.display().to_string(),
                jobs: opts.jobs,
                fail_fast: false,
                hooks: StepHooksChoice::Custom(std::sync::Arc::new(Reused::new(reused))),
                reporters: vec![reporter],
                docker: opts.docker.clone(),
                grades: Some(collected.clone()),
                gate: None,
                queued_run: None,
                shared: None,
                dispatch: None,
            },
        )
        .map_err(|e| plain(e.to_string()))?;
    if let Some(e) = &outcome.record_error {
        eprintln!("trun: warning: could not record the run in the state store: {e}");
    }
    let run_id = Some(outcome.run_id);
    let interrupted = outcome.result.status == Status::Cancelled;
    let mut got = collected.take();
    for (i, repo) in repos.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let mut r = got.remove(&keys[i]).unwrap_or_else(|| {
            RepoResult::crashed(
                &rubric,
                repo,
                if interrupted {
                    "grading was interrupted".to_string()
                } else {
                    "grading did not finish".to_string()
                },
                0,
            )
        });
        r.repo = keys[i].clone();
        r.fingerprint = fingerprints[i].clone();
        // A crash says nothing about the student's work: do not keep it.
        if let (Some(cache), Some(fp), None, false) =
            (&cache, &fingerprints[i], &r.error, interrupted)
        {
            let _ = cache.store(repo, &rubric, fp, &r);
        }
        results[i] = Some(r);
    }
    Ok(Graded {
        results: results.into_iter().flatten().collect(),
        run_id,
        interrupted,
        rubric,
    })
}

/// Repository results handed over by the engine's closing grading steps.
#[derive(Default)]
struct Collected(Mutex<HashMap<String, RepoResult>>);

impl Collected {
    fn take(&self) -> HashMap<String, RepoResult> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl GradeSink for Collected {
    fn graded(&self, job: &str, result: RepoResult) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.to_string(), result);
    }
}

/// Which report goes to stdout instead of the table: without `--out`, one format of one
/// repository may; more is a usage error.
fn stdout_format(args: &GradeArgs, repos: usize) -> Result<Option<Format>, Diagnostic> {
    match (&args.out, args.format.as_slice()) {
        (None, []) | (Some(_), _) => Ok(None),
        (None, [f]) if repos == 1 && !args.json => Ok(Some(*f)),
        (None, _) => Err(
            Diagnostic::plain("--format writes files: give --out DIR").with_help(
                "without --out, only one format for one repository can go to standard output",
            ),
        ),
    }
}

/// Connects to Docker and finds (or builds) the rubric's image.
fn grading_image(
    runtime: &tokio::runtime::Runtime,
    container: &crate::rubric::Container,
    args: &GradeArgs,
    rubric_path: &Path,
    db: &Path,
    io: &mut Io<'_>,
) -> Result<(crate::docker::Docker, Image), Diagnostic> {
    let docker = runtime
        .block_on(crate::docker::Docker::connect())
        .map_err(|e| {
            Diagnostic::plain(format!(
                "{} grades in a container, but {e} (or pass --local to grade on this machine, without isolation)",
                args.rubric.display()
            ))
        })?;
    if container.dockerfile.is_some() {
        io.note(
            "building the grading image (skipped when its Dockerfile and context are unchanged)",
        );
    }
    let store: std::sync::Arc<dyn crate::state::Store> = std::sync::Arc::new(
        crate::state::SqliteStore::open(db).map_err(|e| Diagnostic::plain(e.to_string()))?,
    );
    let memory = crate::exec::actions::StoreMemory(store);
    let rubric_dir = rubric_path.parent().unwrap_or(Path::new("."));
    let image = runtime
        .block_on(resolve_image(
            &docker,
            container,
            rubric_dir,
            &memory,
            &mut |_, _| {},
        ))
        .map_err(|e| Diagnostic::plain(e.to_string()))?;
    Ok((docker, image))
}

/// Writes the reports to `--out` (JSON when no `--format` is given): a single repository's
/// straight into the directory (where Gradescope expects `results.json`), a batch's as
/// `gradebook.csv` and one directory per repository.
fn write_out(
    args: &GradeArgs,
    cwd: &Path,
    rubric: &Rubric,
    results: &[RepoResult],
    io: &mut Io<'_>,
) -> Result<(), Diagnostic> {
    let Some(dir) = &args.out else {
        if results.len() > 1 && !args.json {
            io.note("pass --out DIR to write gradebook.csv and a report per repository");
        }
        return Ok(());
    };
    let dir = cwd.join(dir);
    let formats = if args.format.is_empty() {
        vec![Format::Json]
    } else {
        args.format.clone()
    };
    let written = match results {
        [one] => report::write_reports(one, &dir, &formats),
        _ => report::write_batch_reports(rubric, results, &dir, &formats),
    }
    .map_err(|e| Diagnostic::plain(format!("cannot write reports to {}: {e}", dir.display())))?;
    if results.len() > 1 {
        io.note(&format!(
            "wrote {} and reports for {} repositories",
            dir.join("gradebook.csv").display(),
            results.len()
        ));
    } else {
        let names: Vec<String> = written.iter().map(|f| f.display().to_string()).collect();
        io.note(&format!("wrote {}", names.join(", ")));
    }
    Ok(())
}

/// The repositories named on the command line and found under `--repos`, in that order;
/// the current directory when neither is given.
fn collect_repos(args: &GradeArgs, cwd: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut repos = Vec::new();
    for r in &args.repos {
        let path = if r.is_absolute() {
            r.clone()
        } else if r.as_os_str() == "." {
            cwd.to_path_buf()
        } else {
            cwd.join(r)
        };
        if !path.exists() {
            return Err(Diagnostic::plain(format!(
                "repository {} does not exist",
                r.display()
            )));
        }
        repos.push(path);
    }
    if let Some(dir) = &args.repos_dir {
        let found = repos_in(&cwd.join(dir))
            .map_err(|e| Diagnostic::plain(format!("cannot list {}: {e}", dir.display())))?;
        if found.is_empty() {
            return Err(Diagnostic::plain(format!(
                "{} has no repositories (subdirectories) to grade",
                dir.display()
            )));
        }
        repos.extend(found);
    } else if repos.is_empty() {
        repos.push(cwd.to_path_buf());
    }
    Ok(repos)
}

/// The user the grader runs as, for the `--local` warning.
fn whoami() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// Every subdirectory of `dir` that is not hidden, sorted by name (`--repos DIR`).
fn repos_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut repos = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type()?.is_dir() {
            repos.push(entry.path());
        }
    }
    repos.sort();
    Ok(repos)
}

/// Job keys for the repositories: their directory names, made unique with `-2`, `-3`.
fn unique_keys(repos: &[PathBuf]) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    repos
        .iter()
        .map(|r| {
            let name = crate::grade::score::repo_name(r);
            let n = seen.entry(name.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                name
            } else {
                format!("{name}-{n}")
            }
        })
        .collect()
}

/// How the invocation is shown in `trun history`.
fn command_line(args: &GradeArgs) -> Vec<String> {
    let mut v = vec!["grade".to_string()];
    v.extend(args.repos.iter().map(|r| r.display().to_string()));
    if let Some(d) = &args.repos_dir {
        v.extend(["--repos".to_string(), d.display().to_string()]);
    }
    v.extend(["--rubric".to_string(), args.rubric.display().to_string()]);
    if let Some(j) = args.jobs {
        v.push(format!("-j{j}"));
    }
    for (on, flag) in [
        (args.force, "--force"),
        (args.local, "--local"),
        (args.json, "--json"),
    ] {
        if on {
            v.push(flag.to_string());
        }
    }
    v
}

/// The batch summary: one line per repository (score, and why it lost points in a way a
/// grader should look at), then the mean.
fn summary(results: &[RepoResult], color: bool) -> String {
    let width = results
        .iter()
        .map(|r| console::measure_text_width(&r.repo))
        .max()
        .unwrap_or(0)
        .max("repo".len());
    let mut out = format!("{:width$}  {:>9}  notes\n", "repo", "score");
    for r in results {
        let score = match &r.error {
            Some(_) => "error".to_string(),
            None => format!("{}/{}", fmt_points(r.score), fmt_points(r.max_score)),
        };
        let mut notes: Vec<String> = Vec::new();
        if let Some(e) = &r.error {
            notes.push(e.clone());
        }
        if let Some(s) = r.setup.as_ref().filter(|s| !s.passed) {
            notes.push(format!("setup failed: {}", s.reason));
        }
        let timed_out: Vec<&str> = r
            .criteria
            .iter()
            .filter(|c| c.status == CriterionStatus::Timeout)
            .map(|c| c.id.as_str())
            .collect();
        if !timed_out.is_empty() {
            notes.push(format!("timed out: {}", timed_out.join(", ")));
        }
        if r.cached {
            notes.push("reused".to_string());
        }
        let score = format!("{score:>9}");
        let score = if color && r.error.is_some() {
            console::style(score)
                .red()
                .bold()
                .force_styling(true)
                .to_string()
        } else {
            score
        };
        let line = format!("{}  {score}  {}", pad(&r.repo, width), notes.join("; "));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let graded: Vec<&RepoResult> = results.iter().filter(|r| r.error.is_none()).collect();
    if let Some(first) = graded.first() {
        let mean = graded.iter().map(|r| r.score).sum::<f64>() / graded.len() as f64;
        let errors = results.len() - graded.len();
        out.push_str(&format!(
            "{}  {:>9}  {}\n",
            pad("mean", width),
            format!("{}/{}", fmt_points(mean), fmt_points(first.max_score)),
            if errors > 0 {
                format!("{errors} not graded")
            } else {
                String::new()
            }
        ));
    }
    out
}

fn pad(s: &str, width: usize) -> String {
    let n = console::measure_text_width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago`.
fn ago(ms: i64) -> String {
    let s = ((now_ms() - ms) / 1000).max(0);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_repo_names_get_unique_keys() {
        let repos = [
            PathBuf::from("/a/alice"),
            PathBuf::from("/b/alice"),
            PathBuf::from("/c/bob"),
        ];
        assert_eq!(unique_keys(&repos), ["alice", "alice-2", "bob"]);
    }

    #[test]
    fn format_names_parse() {
        assert_eq!(parse_format("gradescope"), Ok(Format::Gradescope));
        assert_eq!(
            parse_format("csv"),
            Err(
                "unknown report format `csv`; expected json, markdown, junit or gradescope"
                    .to_string()
            )
        );
    }
}
