//! The up-to-date engine through the real `trun` binary (issue 3): a project in a temp
//! dir, `trun plan` text pinned for each case, and what actually ran proven by the
//! steps themselves — every step appends its name to `ran.log`, so a test never takes
//! trun's word for whether a command ran.

mod common;

use common::Invocation;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Four steps in three jobs: `build.compile` -> `build.package` -> `test.unit` (needs
/// build), and the unrelated `docs.render`.
const PIPELINE: &str = r#"name: demo
jobs:
  build:
    steps:
      - id: compile
        run: |
          echo compile >> ran.log
          mkdir -p out
          cat src/x.rs src/y.rs > out/app
          chmod 755 out/app
        sources: ["src/**/*.rs"]
        generates: ["out/app"]
      - id: package
        run: |
          echo package >> ran.log
          cp out/app out/pkg
        sources: ["out/app"]
        generates: ["out/pkg"]
  test:
    needs: build
    steps:
      - id: unit
        run: |
          echo unit >> ran.log
          cat out/pkg tests/t.txt > out/unit.ok
        sources: ["tests/**"]
        generates: ["out/unit.ok"]
  docs:
    steps:
      - id: render
        run: |
          echo render >> ran.log
          mkdir -p out
          cat docs/index.md > out/index.html
        sources: ["docs/**"]
        generates: ["out/index.html"]
"#;

/// A project directory and the `trun` binary, driven like a user would.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(workflow: &str) -> Project {
        let p = Project {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        p.write("trun.yaml", workflow);
        p
    }

    /// [`PIPELINE`] with its source files.
    fn pipeline() -> Project {
        let p = Project::new(PIPELINE);
        p.write("src/x.rs", "fn x() {}\n");
        p.write("src/y.rs", "fn y() {}\n");
        p.write("tests/t.txt", "test data\n");
        p.write("docs/index.md", "# docs\n");
        p
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, content).expect("write");
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// `trun ARGS` in the project, through the shared harness (`tests/common`).
    fn cmd(&self, args: &[&str]) -> Invocation {
        common::invoke_in(self.dir.path(), args).env("NO_COLOR", "1")
    }

    /// Runs `trun ARGS`, asserts exit 0, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).run();
        out.success();
        out.stdout
    }

    /// `trun plan ARGS` as text.
    fn plan(&self, args: &[&str]) -> String {
        let mut all = vec!["plan", "--no-color"];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    /// Asserts that `trun plan` has `line` (one step's line, without the newline).
    fn assert_plan_line(&self, line: &str) {
        let plan = self.plan(&[]);
        assert!(
            plan.contains(&format!("{line}\n")),
            "no line `{line}` in:\n{plan}"
        );
    }

    fn plan_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["plan", "--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("plan --json is JSON")
    }

    /// Runs `trun ARGS` and returns the steps whose command ran (sorted), emptying
    /// `ran.log` for the next call.
    fn run(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec!["--progress", "plain"];
        all.extend_from_slice(args);
        self.ok(&all);
        let log = self.path("ran.log");
        let mut ran: Vec<String> = fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let _ = fs::remove_file(&log);
        ran.sort();
        ran
    }

    fn mtime(&self, rel: &str) -> SystemTime {
        fs::metadata(self.path(rel))
            .and_then(|m| m.modified())
            .expect("mtime")
    }

    fn set_mtime(&self, rel: &str, t: SystemTime) {
        fs::File::options()
            .write(true)
            .open(self.path(rel))
            .and_then(|f| f.set_modified(t))
            .expect("set mtime");
    }

    fn mode(&self, rel: &str) -> u32 {
        fs::metadata(self.path(rel))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777
    }
}

fn names(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// What `trun plan` says for a step it will skip. The plan speaks of what will happen
/// (`restore from cache`); the run's record says what did (`restored from cache`).
const SKIP_REASONS: &[&str] = &["up to date", "restore from cache"];

/// The plan text for [`PIPELINE`] with one reason per step, `run`/`skip` derived from
/// whether the reason is a skip reason.
fn pipeline_plan(compile: &str, package: &str, unit: &str, render: &str) -> String {
    let line = |id: &str, reason: &str| {
        let skip = SKIP_REASONS.contains(&reason);
        format!(
            "   {}  {id:7}  {reason}\n",
            if skip { "skip" } else { "run " }
        )
    };
    let reasons = [compile, package, unit, render];
    let nrun = reasons.iter().filter(|r| !SKIP_REASONS.contains(r)).count();
    // Steps that run only if an upstream step's output changes are counted apart.
    let nmaybe = reasons.iter().filter(|r| r.starts_with("runs if ")).count();
    let maybe = if nmaybe > 0 {
        format!(", {nmaybe} if an upstream output changes")
    } else {
        String::new()
    };
    format!(
        "plan for demo: 3 jobs, 4 steps ({} to run{maybe}, {} up to date)\n\n1. build\n{}{}\n2. test  needs: build\n{}\n3. docs\n{}",
        nrun - nmaybe,
        4 - nrun,
        line("compile", compile),
        line("package", package),
        line("unit", unit),
        line("render", render),
    )
}

fn all_up_to_date() -> String {
    pipeline_plan("up to date", "up to date", "up to date", "up to date")
}

const EVERY_STEP: &[&str] = &["compile", "package", "unit", "render"];

#[test]
fn first_run_runs_everything_and_second_run_nothing() {
    let p = Project::pipeline();
    assert_eq!(
        p.plan(&[]),
        pipeline_plan("never ran", "never ran", "never ran", "never ran")
    );
    // `trun run --dry-run` is the same plan and runs nothing.
    assert_eq!(p.ok(&["run", "--dry-run", "--no-color"]), p.plan(&[]));
    assert!(!p.path("ran.log").exists(), "--dry-run ran a step");

    assert_eq!(p.run(&[]), names(EVERY_STEP));
    assert_eq!(p.read("out/app"), "fn x() {}\nfn y() {}\n");

    assert_eq!(p.plan(&[]), all_up_to_date());
    assert_eq!(p.run(&[]), names(&[]), "a second run ran steps");
    assert_eq!(p.run(&[]), names(&[]), "a third run ran steps");
}

#[test]
fn up_to_date_steps_are_reported_skipped_in_the_run_record() {
    let p = Project::pipeline();
    p.run(&[]);
    p.run(&[]);
    let show: Value = serde_json::from_str(&p.ok(&["show", "--json"])).expect("show --json");
    let steps: Vec<&Value> = show["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .flat_map(|j| j["steps"].as_array().expect("steps"))
        .collect();
    assert_eq!(steps.len(), 4);
    for s in steps {
        assert_eq!(s["status"], "skipped", "{s}");
        assert_eq!(s["reason"], "up to date", "{s}");
    }
}

#[test]
fn editing_a_source_runs_that_step_and_its_dependents_only() {
    let p = Project::pipeline();
    p.run(&[]);
    p.write("src/x.rs", "fn x() { changed() }\n");
    assert_eq!(
        p.plan(&[]),
        pipeline_plan(
            "src/x.rs changed",
            "runs if compile's output changes",
            "runs if build.compile's output changes",
            "up to date"
        )
    );
    assert_eq!(p.run(&[]), names(&["compile", "package", "unit"]));
    assert_eq!(p.read("out/pkg"), "fn x() { changed() }\nfn y() {}\n");
    assert_eq!(p.plan(&[]), all_up_to_date());

    // A new file under the glob counts as a change too, and only `docs` runs for docs.
    p.write("docs/more.md", "more\n");
    assert_eq!(
        p.plan(&[]),
        pipeline_plan(
            "up to date",
            "up to date",
            "up to date",
            "docs/more.md changed"
        )
    );
    assert_eq!(p.run(&[]), names(&["render"]));
}

#[test]
fn plan_names_up_to_three_changed_files_then_counts_the_rest() {
    let p = Project::pipeline();
    for f in ["a", "b", "c", "d"] {
        p.write(&format!("src/{f}.rs"), "1\n");
    }
    p.run(&[]);
    for f in ["a", "b", "c", "d", "x"] {
        p.write(&format!("src/{f}.rs"), "2\n");
    }
    p.assert_plan_line("   run   compile  src/a.rs, src/b.rs, src/c.rs changed (+2 more)");
}

#[test]
fn touching_without_changing_runs_nothing() {
    let p = Project::pipeline();
    p.run(&[]);
    for f in [
        "src/x.rs",
        "src/y.rs",
        "tests/t.txt",
        "docs/index.md",
        "out/app",
    ] {
        let t = p.mtime(f) + Duration::from_secs(5);
        p.set_mtime(f, t);
    }
    assert_eq!(p.plan(&[]), all_up_to_date());
    assert_eq!(p.run(&[]), names(&[]));
    // And once more, now that the stat cache has seen the new mtimes.
    assert_eq!(p.plan(&[]), all_up_to_date());
    assert_eq!(p.run(&[]), names(&[]));
}

#[test]
fn editing_the_command_taints_the_step_and_its_dependents_run_only_if_its_output_changed() {
    let p = Project::pipeline();
    p.run(&[]);
    let edited = PIPELINE.replace("chmod 755 out/app", "chmod 0755 out/app");
    assert_ne!(edited, PIPELINE);
    p.write("trun.yaml", &edited);
    assert_eq!(
        p.plan(&[]),
        pipeline_plan(
            "tainted: definition changed",
            "runs if compile's output changes",
            "runs if build.compile's output changes",
            "up to date"
        )
    );
    // `chmod 0755` writes what `chmod 755` wrote: its dependents are cut off.
    assert_eq!(p.run(&[]), names(&["compile"]));
    assert_eq!(p.plan(&[]), all_up_to_date());

    // An env change is a definition change too.
    let with_env = edited.replace(
        "      - id: package\n",
        "      - id: package\n        env: { LEVEL: \"3\" }\n",
    );
    p.write("trun.yaml", &with_env);
    assert_eq!(
        p.plan(&[]),
        pipeline_plan(
            "up to date",
            "tainted: definition changed",
            "runs if build.package's output changes",
            "up to date"
        )
    );
    assert_eq!(p.run(&[]), names(&["package"]));
    // A definition change that changes what it writes runs its dependents.
    p.write(
        "trun.yaml",
        &with_env.replace(
            "cp out/app out/pkg",
            "cp out/app out/pkg; echo v2 >> out/pkg",
        ),
    );
    assert_eq!(p.run(&[]), names(&["package", "unit"]));
}

/// Finds, in a `trun show --json` step object, a number under a key naming a
/// (definition) version.
fn definition_version(step: &Value) -> Option<u64> {
    step.as_object()?
        .iter()
        .find(|(k, v)| k.contains("version") && v.is_u64())
        .and_then(|(_, v)| v.as_u64())
}

#[test]
fn show_says_which_definition_version_produced_a_result() {
    let p = Project::pipeline();
    p.run(&[]);
    p.write(
        "trun.yaml",
        &PIPELINE.replace("chmod 755 out/app", "chmod 0755 out/app"),
    );
    p.run(&[]);
    let show: Value = serde_json::from_str(&p.ok(&["show", "--json"])).expect("show --json");
    let build = &show["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|j| j["key"] == "build")
        .expect("build")["steps"];
    let compile = &build[0];
    assert_eq!(compile["id"], "compile");
    assert_eq!(
        definition_version(compile),
        Some(2),
        "`trun show --json` does not say which definition version produced build.compile: {compile}"
    );
    let text = p.ok(&["show", "--no-color"]);
    assert!(
        text.contains("v2"),
        "`trun show` does not name the definition version:\n{text}"
    );
}

#[test]
fn deleting_a_generated_file_restores_it_from_the_cache_without_running() {
    let p = Project::pipeline();
    p.run(&[]);
    let content = p.read("out/app");
    fs::remove_file(p.path("out/app")).expect("rm");
    assert_eq!(
        p.run(&[]),
        names(&[]),
        "the command ran instead of a restore"
    );
    assert_eq!(p.read("out/app"), content);
    assert_eq!(p.mode("out/app"), 0o755, "restored file lost its mode");
    let show = p.ok(&["show", "--no-color"]);
    assert!(show.contains("restored from cache"), "{show}");

    // A modified output is put back the same way.
    p.write("out/app", "garbage\n");
    assert_eq!(p.run(&[]), names(&[]));
    assert_eq!(p.read("out/app"), content);
    assert_eq!(p.plan(&[]), all_up_to_date());
}

#[test]
fn plan_predicts_a_restore_from_cache_for_a_deleted_output() {
    // The plan must agree with the run that follows: the run restores `out/app` and
    // runs nothing, so the plan must not announce three steps to run.
    let p = Project::pipeline();
    p.run(&[]);
    fs::remove_file(p.path("out/app")).expect("rm");
    assert_eq!(
        p.plan(&[]),
        pipeline_plan(
            "restore from cache",
            "up to date",
            "up to date",
            "up to date"
        )
    );
    assert_eq!(p.run(&[]), names(&[]));
}

#[test]
fn branch_switch_back_restores_without_running() {
    let p = Project::pipeline();
    p.write("src/x.rs", "A\n");
    assert_eq!(p.run(&[]), names(EVERY_STEP));
    p.write("src/x.rs", "B\n");
    assert_eq!(p.run(&[]), names(&["compile", "package", "unit"]));
    assert_eq!(p.read("out/unit.ok"), "B\nfn y() {}\ntest data\n");
    p.write("src/x.rs", "A\n");
    assert_eq!(p.run(&[]), names(&[]), "switching back to A ran commands");
    assert_eq!(p.read("out/app"), "A\nfn y() {}\n");
    assert_eq!(p.read("out/pkg"), "A\nfn y() {}\n");
    assert_eq!(p.read("out/unit.ok"), "A\nfn y() {}\ntest data\n");
    assert_eq!(p.mode("out/app"), 0o755);
    assert_eq!(p.plan(&[]), all_up_to_date());
}

#[test]
fn plan_predicts_a_restore_after_a_branch_switch() {
    let p = Project::pipeline();
    p.write("src/x.rs", "A\n");
    p.run(&[]);
    p.write("src/x.rs", "B\n");
    p.run(&[]);
    p.write("src/x.rs", "A\n");
    assert_eq!(
        p.plan(&[]),
        pipeline_plan(
            "restore from cache",
            "restore from cache",
            "restore from cache",
            "up to date"
        )
    );
    assert_eq!(p.run(&[]), names(&[]));
}

#[test]
fn gitignored_files_do_not_affect_fingerprints() {
    let p = Project::pipeline();
    p.write(".gitignore", "*.gen.rs\nscratch/\n");
    p.write("src/old.gen.rs", "1\n");
    p.run(&[]);
    p.write("src/new.gen.rs", "new\n");
    p.write("src/old.gen.rs", "2\n");
    p.write("src/scratch/deep.rs", "x\n");
    assert_eq!(p.plan(&[]), all_up_to_date());
    assert_eq!(p.run(&[]), names(&[]));
    fs::remove_file(p.path("src/old.gen.rs")).expect("rm");
    assert_eq!(p.plan(&[]), all_up_to_date());
    assert_eq!(p.run(&[]), names(&[]));
    // The same kind of file, not ignored, does count.
    p.write("src/new.rs", "new\n");
    assert_eq!(
        p.plan(&[]),
        pipeline_plan(
            "src/new.rs changed",
            "runs if compile's output changes",
            "runs if build.compile's output changes",
            "up to date"
        )
    );
}

#[test]
fn same_second_rewrite_of_the_same_length_is_detected() {
    let p = Project::pipeline();
    for round in 0..3 {
        let before = format!("aaaa{round}\n");
        let after = format!("bbbb{round}\n");
        p.write("src/x.rs", &before);
        p.run(&[]);
        let t = p.mtime("src/x.rs");
        // Rewritten at once, same size, and the mtime put back exactly: only the
        // content (and ctime) differ from what the last run saw.
        p.write("src/x.rs", &after);
        p.set_mtime("src/x.rs", t);
        assert_eq!(p.mtime("src/x.rs"), t);
        let plan = p.plan(&[]);
        assert!(
            plan.contains("   run   compile  src/x.rs changed\n"),
            "round {round}:\n{plan}"
        );
        assert_eq!(
            p.run(&[]),
            names(&["compile", "package", "unit"]),
            "round {round}"
        );
        assert_eq!(p.read("out/app"), format!("{after}fn y() {{}}\n"));
        assert_eq!(
            p.run(&[]),
            names(&[]),
            "round {round}: not up to date afterwards"
        );
    }
}

#[test]
fn force_reruns_only_what_it_names() {
    let p = Project::pipeline();
    p.run(&[]);
    assert_eq!(
        p.plan(&["--force"]),
        pipeline_plan("forced", "forced", "forced", "forced")
    );
    assert_eq!(p.run(&["--force"]), names(EVERY_STEP));

    assert_eq!(
        p.plan(&["--force", "build.compile"]),
        pipeline_plan(
            "forced",
            "runs if compile's output changes",
            "runs if build.compile's output changes",
            "up to date"
        )
    );
    assert_eq!(p.run(&["--force", "build.compile"]), names(&["compile"]));

    assert_eq!(
        p.plan(&["--force", "test"]),
        pipeline_plan("up to date", "up to date", "forced", "up to date")
    );
    assert_eq!(p.run(&["--force", "test"]), names(&["unit"]));
    assert_eq!(p.run(&["--force", "docs.render"]), names(&["render"]));
    assert_eq!(p.run(&[]), names(&[]));
}

#[test]
fn force_of_an_unknown_name_is_a_usage_error_with_a_suggestion() {
    let p = Project::pipeline();
    for args in [
        &["plan", "--force", "nosuch"][..],
        &["--force", "nosuch"],
        &["run", "--force", "nosuch"],
    ] {
        p.cmd(args)
            .run()
            .status(2)
            .stderr_has("--force nosuch: no such job or step in the plan");
    }
    p.cmd(&["--force", "buidl"])
        .run()
        .status(2)
        .stderr_has("(did you mean `build`?)");
    p.cmd(&["--force", "build.compil"])
        .run()
        .status(2)
        .stderr_has("(did you mean `build.compile`?)");
    assert!(!p.path("ran.log").exists(), "a rejected --force ran steps");
}

#[test]
fn force_suggests_a_bare_step_id() {
    // `--force compile` is accepted (a bare step id), so a typo of it should get a
    // suggestion as well.
    let p = Project::pipeline();
    let out = p.cmd(&["--force", "compil"]).run();
    out.status(2);
    assert!(
        out.stderr.contains("did you mean `compile`?")
            || out.stderr.contains("did you mean `build.compile`?"),
        "{}",
        out.stderr
    );
}

const OUTPUTS: &str = r#"name: outs
jobs:
  build:
    outputs:
      ver: ${{ steps.compile.outputs.v }}
    steps:
      - id: compile
        run: |
          echo compile >> ran.log
          echo "v=$(cat src/x.rs)" >> "$TRUN_OUTPUT"
          touch out.bin
        sources: ["src/x.rs"]
        generates: ["out.bin"]
      - id: use
        run: echo "step=${{ steps.compile.outputs.v }}" >> seen.txt
  deploy:
    needs: build
    steps:
      - id: ship
        run: echo "job=${{ needs.build.outputs.ver }}" >> seen.txt
"#;

/// What `use` and `ship` saw, emptying `seen.txt`.
fn seen(p: &Project) -> Vec<String> {
    let mut v: Vec<String> = p.read("seen.txt").lines().map(str::to_string).collect();
    fs::remove_file(p.path("seen.txt")).expect("rm seen.txt");
    v.sort();
    v
}

#[test]
fn outputs_of_an_up_to_date_step_are_still_available() {
    let p = Project::new(OUTPUTS);
    p.write("src/x.rs", "one");
    assert_eq!(p.run(&[]), names(&["compile"]));
    assert_eq!(seen(&p), names(&["step=one", "job=one"]));
    assert_eq!(p.run(&[]), names(&[]));
    assert_eq!(seen(&p), names(&["step=one", "job=one"]));
}

#[test]
fn outputs_of_a_restored_step_are_those_of_the_restored_success() {
    let p = Project::new(OUTPUTS);
    p.write("src/x.rs", "one");
    p.run(&[]);
    p.write("src/x.rs", "two");
    assert_eq!(p.run(&[]), names(&["compile"]));
    p.write("src/x.rs", "one");
    seen(&p);
    assert_eq!(p.run(&[]), names(&[]), "switching back ran compile");
    assert_eq!(
        seen(&p),
        names(&["step=one", "job=one"]),
        "a restored step handed on the outputs of another run"
    );
}

#[test]
fn plan_json_has_the_decisions_as_data() {
    let p = Project::pipeline();
    let first = p.plan_json(&[]);
    assert_eq!(first["workflow"], "demo");
    for s in first["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .flat_map(|j| j["steps"].as_array().expect("steps"))
    {
        assert_eq!(s["action"], "run", "{s}");
        assert_eq!(
            s["decision"],
            serde_json::json!({"decision": "run", "reason": {"kind": "never_ran"}}),
            "{s}"
        );
    }
    p.run(&[]);
    p.write("src/x.rs", "changed\n");
    p.write(
        "trun.yaml",
        &PIPELINE.replace("cp out/app out/pkg", "cp -p out/app out/pkg"),
    );
    let v = p.plan_json(&[]);
    let step = |job: &str, id: &str| -> Value {
        v["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .find(|j| j["key"] == job)
            .and_then(|j| {
                j["steps"]
                    .as_array()
                    .expect("steps")
                    .iter()
                    .find(|s| s["id"] == id)
                    .cloned()
            })
            .unwrap_or_else(|| panic!("no {job}.{id} in {v}"))
    };
    let compile = step("build", "compile");
    assert_eq!(compile["action"], "run");
    assert_eq!(compile["reason"], "src/x.rs changed");
    assert_eq!(
        compile["decision"],
        serde_json::json!({"decision": "run", "reason": {"kind": "sources_changed", "detail": {"changed": ["src/x.rs"]}}})
    );
    let package = step("build", "package");
    assert_eq!(package["reason"], "tainted: definition changed");
    assert_eq!(package["decision"]["decision"], "run");
    assert_eq!(package["decision"]["reason"]["kind"], "definition_changed");
    assert_eq!(package["decision"]["reason"]["detail"]["from_version"], 1);
    let unit = step("test", "unit");
    assert_eq!(
        unit["reason"],
        "runs if the output of build.compile or build.package changes"
    );
    assert_eq!(
        unit["decision"],
        serde_json::json!({"decision": "run", "reason": {"kind": "upstream_will_run", "detail": {"steps": ["build.compile", "build.package"]}}})
    );
    let render = step("docs", "render");
    assert_eq!(render["action"], "skip");
    assert_eq!(render["reason"], "up to date");
    assert_eq!(
        render["decision"],
        serde_json::json!({"decision": "skip", "reason": {"kind": "up_to_date"}})
    );

    let forced = p.plan_json(&["--force", "docs"]);
    let render = &forced["jobs"][2]["steps"][0];
    assert_eq!(render["id"], "render");
    assert_eq!(
        render["decision"],
        serde_json::json!({"decision": "run", "reason": {"kind": "forced"}})
    );
}

fn cache_stats(p: &Project) -> Value {
    serde_json::from_str(&p.ok(&["cache", "stats", "--json"])).expect("cache stats --json")
}

#[test]
fn cache_stats_and_prune() {
    let p = Project::pipeline();
    p.write("src/x.rs", "A\n");
    p.run(&[]);
    p.write("src/x.rs", "B\n");
    p.run(&[]);
    p.write("src/x.rs", "C\n");
    p.run(&[]);
    // 4 first successes + 3 steps x 2 re-runs.
    let st = cache_stats(&p);
    assert_eq!(st["entries"], 10, "{st}");
    assert_eq!(st["steps"], 4, "{st}");
    let objects = st["objects"].as_u64().expect("objects");
    assert!(objects >= 4, "{st}");
    assert!(st["bytes"].as_u64().expect("bytes") > 0, "{st}");
    let text = p.ok(&["cache", "stats"]);
    assert!(text.contains("10 recorded successes for 4 steps"), "{text}");
    assert!(text.contains(&format!("{objects} objects (")), "{text}");

    // Recent successes are not older than 7 days: nothing goes.
    let out = p.ok(&["cache", "prune", "--older-than", "7d"]);
    assert!(
        out.starts_with("forgot 0 successes, deleted 0 objects"),
        "{out}"
    );
    assert_eq!(cache_stats(&p)["entries"], 10);

    let out = p.ok(&["cache", "prune", "--keep", "1"]);
    assert!(out.starts_with("forgot 6 successes, deleted "), "{out}");
    let st = cache_stats(&p);
    assert_eq!(st["entries"], 4, "{st}");
    assert!(st["objects"].as_u64().expect("objects") < objects, "{st}");
    // The latest successes survive: still up to date, and outputs still restorable.
    assert_eq!(p.plan(&[]), all_up_to_date());
    fs::remove_file(p.path("out/app")).expect("rm");
    assert_eq!(p.run(&[]), names(&[]));
    assert_eq!(p.read("out/app"), "C\nfn y() {}\n");
    // A's success was pruned: switching back to A runs again.
    p.write("src/x.rs", "A\n");
    assert_eq!(p.run(&[]), names(&["compile", "package", "unit"]));

    p.cmd(&["cache", "prune"]).run().status(2);
}

#[test]
fn step_without_sources_always_runs() {
    let p = Project::new(
        "name: demo\njobs:\n  j:\n    steps:\n      - id: always\n        run: echo always >> ran.log\n",
    );
    assert_eq!(p.run(&[]), names(&["always"]));
    assert_eq!(p.run(&[]), names(&["always"]));
    p.assert_plan_line("   run   always  no sources");
}

#[test]
fn a_failed_step_is_not_up_to_date_next_time() {
    let p = Project::new(
        r#"name: demo
jobs:
  j:
    steps:
      - id: flaky
        run: |
          echo flaky >> ran.log
          echo made > out.txt
          test -f pass
        sources: ["src/**"]
        generates: ["out.txt"]
"#,
    );
    p.write("src/a", "1\n");
    p.cmd(&["--progress", "plain"]).run().status(1);
    p.assert_plan_line("   run   flaky  never ran");
    let _ = fs::remove_file(p.path("ran.log"));
    p.write("pass", "");
    assert_eq!(p.run(&[]), names(&["flaky"]));
    assert_eq!(p.run(&[]), names(&[]));
}

#[test]
fn a_generates_path_the_step_did_not_make_fails_it_and_it_runs_again() {
    let p = Project::new(
        r#"name: demo
jobs:
  j:
    steps:
      - id: forgetful
        run: echo forgetful >> ran.log
        sources: ["src/**"]
        generates: ["never-made.txt"]
"#,
    );
    p.write("src/a", "1\n");
    // The step fails, naming the path (tests/escapes.rs has the rest), so no
    // success is recorded and the next run runs it again.
    p.cmd(&["--progress", "plain"])
        .run()
        .status(1)
        .stderr_has("`generates`: never-made.txt");
    let _ = fs::remove_file(p.path("ran.log"));
    p.assert_plan_line("   run   forgetful  never ran");
}

#[test]
fn outputs_whose_cache_objects_are_gone_or_corrupt_are_rebuilt() {
    let p = Project::pipeline();
    p.run(&[]);
    let content = p.read("out/app");
    // Corrupt every object: a restore must notice and run the command instead.
    let mut objects = Vec::new();
    let mut dirs = vec![p.path(".trun/cas")];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).expect("read cas").flatten() {
            if e.file_type().expect("type").is_dir() {
                dirs.push(e.path());
            } else {
                objects.push(e.path());
            }
        }
    }
    // out/app and out/pkg hold the same bytes: one object (deduplicated).
    assert_eq!(objects.len(), 3, "{objects:?}");
    for o in &objects {
        let mut perm = fs::metadata(o).expect("stat").permissions();
        perm.set_mode(0o644);
        fs::set_permissions(o, perm).expect("chmod");
        fs::write(o, "corrupt").expect("corrupt");
    }
    fs::remove_file(p.path("out/app")).expect("rm");
    assert_eq!(p.run(&[]), names(&["compile"]));
    assert_eq!(p.read("out/app"), content);

    // And with the store emptied.
    fs::remove_dir_all(p.path(".trun/cas")).expect("rm cas");
    fs::remove_file(p.path("out/pkg")).expect("rm");
    assert_eq!(p.run(&[]), names(&["package"]));
    assert_eq!(p.read("out/pkg"), content);
    assert_eq!(p.run(&[]), names(&[]));
}

#[test]
fn the_state_directory_is_never_a_source() {
    // `**` at the root matches everything, but `.trun/` (rewritten by every run) must
    // never count, or nothing would ever be up to date.
    let p = Project::new(
        r#"name: demo
jobs:
  j:
    steps:
      - id: all
        run: |
          echo all >> ran.log
          echo done > out.txt
        sources: ["**"]
        generates: ["out.txt"]
"#,
    );
    p.write(".gitignore", "ran.log\nout.txt\n");
    p.write("a.txt", "a\n");
    assert_eq!(p.run(&[]), names(&["all"]));
    assert_eq!(p.run(&[]), names(&[]));
    p.assert_plan_line("   skip  all   up to date");
    p.write("a.txt", "b\n");
    p.assert_plan_line("   run   all   a.txt changed");
}
