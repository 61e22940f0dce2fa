//! Early cutoff through the real binary (issue 13): a step re-runs only when what it
//! reads changed, not because an upstream step ran. Uses the C example with every
//! step's command prefixed by `echo ID >> ran.txt`, so what ran is proven by the
//! steps themselves.

mod common;

use common::Test;
use serde_json::Value;

/// The C example, each step appending its id to `ran.txt` before its command.
fn c_library() -> Test {
    let t = Test::example("c-library");
    let mut out = String::new();
    let mut id = String::new();
    for line in t.read("trun.yaml").lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if let Some(rest) = trimmed.strip_prefix("- id: ") {
            id = rest.to_string();
        }
        match trimmed.strip_prefix("run: ") {
            Some("|") => {
                out.push_str(line);
                out.push_str(&format!("\n{indent}  echo {id} >> ran.txt\n"));
            }
            Some(cmd) => out.push_str(&format!("{indent}run: echo {id} >> ran.txt && {cmd}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    t.write("trun.yaml", &out);
    t
}

/// Runs `trun` and returns the step ids that ran, sorted (independent jobs run in
/// parallel), emptying `ran.txt`.
fn ran(t: &Test) -> Vec<String> {
    t.run(&["--progress", "plain"]).success();
    let ran = if t.exists("ran.txt") {
        t.read("ran.txt")
    } else {
        String::new()
    };
    let _ = std::fs::remove_file(t.join("ran.txt"));
    let mut ran: Vec<String> = ran.lines().map(str::to_string).collect();
    ran.sort();
    ran
}

/// (step id, status, reason) of every step of the latest run.
fn shown(t: &Test) -> Vec<(String, String, String)> {
    let show = t.show_json("");
    show["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .flat_map(|j| j["steps"].as_array().expect("steps").clone())
        .map(|s: Value| {
            let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (text("id"), text("status"), text("reason"))
        })
        .collect()
}

fn plan(t: &Test) -> String {
    t.run(&["plan", "--no-color"]).success().stdout.clone()
}

/// The plan of the C example with one reason per step (lib, tool, compile, unit,
/// run-tool); `run`/`skip` follows from the reason.
fn c_plan(reasons: [&str; 5]) -> String {
    let line = |id: &str, reason: &str, name: &str| {
        let skip = reason == "up to date" || reason == "restore from cache";
        format!(
            "   {}  {id:8}  {reason}  — {name}\n",
            if skip { "skip" } else { "run " }
        )
    };
    let nrun = reasons
        .iter()
        .filter(|r| **r != "up to date" && **r != "restore from cache")
        .count();
    let nmaybe = reasons.iter().filter(|r| r.starts_with("runs if ")).count();
    let maybe = if nmaybe > 0 {
        format!(", {nmaybe} if an upstream output changes")
    } else {
        String::new()
    };
    format!(
        "plan for c-library: 3 jobs, 5 steps ({} to run{maybe}, {} up to date)\n\n1. build\n{}{}\n2. test  needs: build\n{}{}\n3. smoke  needs: build\n{}",
        nrun - nmaybe,
        5 - nrun,
        line("lib", reasons[0], "compile libstats.a"),
        line("tool", reasons[1], "link the stats tool"),
        line("compile", reasons[2], "compile the unit tests"),
        line("unit", reasons[3], "run the unit tests"),
        line("run-tool", reasons[4], "run the tool on a sample"),
    )
}

/// Sorted, as [`ran`] returns them.
const EVERY_STEP: [&str; 5] = ["compile", "lib", "run-tool", "tool", "unit"];

#[test]
fn a_comment_in_the_library_runs_only_lib_and_no_dependent() {
    let t = c_library();
    assert_eq!(ran(&t), EVERY_STEP);
    assert_eq!(ran(&t), Vec::<String>::new(), "a second run ran steps");

    let source = t.read("src/stats.c");
    t.write("src/stats.c", &format!("{source}/* only a comment */\n"));
    assert_eq!(
        plan(&t),
        c_plan([
            "src/stats.c changed",
            "runs if lib's output changes",
            "runs if build.lib's output changes",
            "runs if build.lib's output changes",
            "runs if build.lib's output changes",
        ])
    );
    assert_eq!(ran(&t), ["lib"], "build/libstats.a is byte-identical");
    let show = shown(&t);
    let reason = |id: &str| {
        show.iter()
            .find(|s| s.0 == id)
            .unwrap_or_else(|| panic!("no {id} in {show:?}"))
            .clone()
    };
    assert_eq!(reason("lib").1, "success");
    assert_eq!(
        reason("tool"),
        (
            "tool".into(),
            "skipped".into(),
            "up to date: inputs unchanged after lib re-ran".into()
        )
    );
    for id in ["compile", "unit", "run-tool"] {
        assert_eq!(
            reason(id).2,
            "up to date: inputs unchanged after build.lib re-ran",
            "{id}"
        );
    }
    assert_eq!(plan(&t), c_plan(["up to date"; 5]));
    assert_eq!(ran(&t), Vec::<String>::new());
}

#[test]
fn a_real_change_to_the_library_runs_the_chain() {
    let t = c_library();
    assert_eq!(ran(&t), EVERY_STEP);
    let source = t.read("src/stats.c");
    t.write(
        "src/stats.c",
        &format!("{source}int stats_version(void) {{ return 2; }}\n"),
    );
    assert_eq!(
        plan(&t),
        c_plan([
            "src/stats.c changed",
            "runs if lib's output changes",
            "runs if build.lib's output changes",
            "runs if build.lib's output changes",
            "runs if build.lib's output changes",
        ])
    );
    assert_eq!(ran(&t), EVERY_STEP, "build/libstats.a changed");
    assert_eq!(plan(&t), c_plan(["up to date"; 5]));
}

#[test]
fn an_upstream_restored_from_the_cache_leaves_its_dependents_up_to_date() {
    let t = c_library();
    assert_eq!(ran(&t), EVERY_STEP);
    let v1 = t.read("src/stats.c");
    t.write("src/stats.c", &format!("{v1}/* v2, a comment */\n"));
    assert_eq!(ran(&t), ["lib"]);

    // Back to v1: lib's earlier success is restored, and what it restores is what its
    // dependents last read.
    t.write("src/stats.c", &v1);
    assert_eq!(
        plan(&t),
        c_plan([
            "restore from cache",
            "up to date",
            "up to date",
            "up to date",
            "up to date",
        ])
    );
    assert_eq!(ran(&t), Vec::<String>::new());
    let show = shown(&t);
    assert_eq!(
        show[0],
        ("lib".into(), "skipped".into(), "restored from cache".into())
    );
    assert!(
        show[1..]
            .iter()
            .all(|s| s.1 == "skipped" && s.2 == "up to date"),
        "{show:?}"
    );
}

#[test]
fn a_dependent_runs_when_an_output_it_receives_changes_and_only_then() {
    let t = Test::new().workflow(
        r#"
        name: outputs
        jobs:
          build:
            steps:
              - id: version
                run: |
                  echo version >> ran.txt
                  echo "v=$(head -n 1 src/version.txt)" >> "$TRUN_OUTPUT"
                sources: [src/version.txt]
              - id: stamp
                run: |
                  echo stamp >> ran.txt
                  echo "${{ steps.version.outputs.v }}" > stamp.txt
                sources: [src/stamp.txt]
                generates: [stamp.txt]
        "#,
    );
    t.write("src/version.txt", "1.0\n");
    t.write("src/stamp.txt", "x\n");
    assert_eq!(ran(&t), ["stamp", "version"]);
    // A second line changes the file but not the output.
    t.write("src/version.txt", "1.0\nnotes\n");
    assert_eq!(ran(&t), ["version"]);
    t.write("src/version.txt", "2.0\nnotes\n");
    assert_eq!(ran(&t), ["stamp", "version"]);
    assert_eq!(t.read("stamp.txt"), "2.0\n");
}

/// The digest of a step without `sources` is its definition over its upstream, and
/// trun computes it only for the steps some step with `sources` reads through a
/// chain of such steps. Here `pack` (with sources) reads `configure` through `prep`,
/// two jobs up; `lint` is read by nobody.
#[test]
fn a_step_with_sources_reruns_when_a_sourceless_step_two_jobs_up_changes_and_only_then() {
    let flow = |configure: &str, lint: &str| {
        format!(
            r#"
        name: chain
        jobs:
          configure:
            steps:
              - run: echo configure >> ran.txt && echo {configure} > mode.txt
          lint:
            steps:
              - run: echo lint >> ran.txt && echo {lint}
          prep:
            needs: [configure]
            steps:
              - run: echo prep >> ran.txt
          pack:
            needs: [prep, lint]
            steps:
              - run: echo pack >> ran.txt && cp src/a.txt packed.txt
                sources: [src/a.txt]
                generates: [packed.txt]
        "#
        )
    };
    let t = Test::new().workflow(&flow("fast", "ok"));
    t.write("src/a.txt", "a\n");
    assert_eq!(ran(&t), ["configure", "lint", "pack", "prep"]);
    // Steps without sources always run; `pack` is up to date.
    assert_eq!(ran(&t), ["configure", "lint", "prep"]);
    // `lint` changed: `pack` needs it, so its digest is read too.
    t.write("trun.yaml", &common::unindent(&flow("fast", "fine")));
    assert_eq!(ran(&t), ["configure", "lint", "pack", "prep"]);
    assert_eq!(ran(&t), ["configure", "lint", "prep"]);
    // `configure` changed, two jobs up from `pack` through `prep`.
    t.write("trun.yaml", &common::unindent(&flow("slow", "fine")));
    assert_eq!(ran(&t), ["configure", "lint", "pack", "prep"]);
    assert_eq!(ran(&t), ["configure", "lint", "prep"]);
}
