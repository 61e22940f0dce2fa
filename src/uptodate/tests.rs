//! The up-to-date engine against real files in temporary workspaces and a real
//! SQLite store.

use super::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::SystemTime;

struct Ws {
    dir: tempfile::TempDir,
}

impl Ws {
    fn new() -> Ws {
        Ws {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn base(&self) -> &Path {
        self.dir.path()
    }
    fn write(&self, rel: &str, content: &str) {
        let p = self.base().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.base().join(rel)).unwrap()
    }
    fn open(&self) -> UpToDate {
        UpToDate::open(
            &self.base().join(".trun/state.db"),
            &self.base().join(".trun/cas"),
        )
        .unwrap()
    }
    fn spec(&self, key: &str, run: &str, sources: &[&str], generates: &[&str]) -> StepSpec {
        StepSpec {
            key: key.to_string(),
            definition: json!({ "run": run, "shell": "bash" }),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            generates: generates.iter().map(|s| s.to_string()).collect(),
            base: self.base().to_path_buf(),
            upstream: Vec::new(),
        }
    }
}

/// What the engine does for a step: check, run the command (here `effect`),
/// forget the walks, record the success.
fn run(ud: &UpToDate, spec: &StepSpec, effect: impl FnOnce()) -> Check {
    let check = ud.check(spec, false).unwrap();
    effect();
    ud.invalidate();
    ud.record_success(spec, &check, 1).unwrap();
    ud.invalidate();
    check
}

fn recheck(ud: &UpToDate, spec: &StepSpec) -> Check {
    ud.invalidate();
    ud.check(spec, false).unwrap()
}

/// Returns early in a second (but after the kernel's coarse file-time clock, which
/// lags by a tick, has entered it too) so that the next few milliseconds share it.
fn start_of_a_second() {
    loop {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        if (200_000_000..500_000_000).contains(&nanos) {
            return;
        }
        std::thread::sleep(Duration::from_nanos(
            (1_200_000_000 - nanos as u64) % 1_000_000_000 + 1_000_000,
        ));
    }
}

fn next_second() {
    std::thread::sleep(Duration::from_millis(1100));
}

#[test]
fn never_ran_then_up_to_date_then_an_edit_names_the_file() {
    let ws = Ws::new();
    ws.write("src/main.rs", "fn main() {}");
    ws.write("src/lib.rs", "pub fn f() {}");
    let ud = ws.open();
    let spec = ws.spec("build/compile", "cargo build", &["src/**/*.rs"], &[]);
    let first = run(&ud, &spec, || {});
    assert_eq!(first.decision, Decision::Run(RunReason::NeverRan));
    assert_eq!(first.decision.to_string(), "never ran");
    assert_eq!(
        first.files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        vec!["src/lib.rs", "src/main.rs"]
    );

    let again = recheck(&ud, &spec);
    assert_eq!(again.decision, Decision::Skip(SkipReason::UpToDate));
    assert_eq!(again.decision.to_string(), "up to date");
    assert_eq!(again.fingerprint, first.fingerprint);

    ws.write("src/main.rs", "fn main() { println!() }");
    let edited = recheck(&ud, &spec);
    assert_eq!(
        edited.decision,
        Decision::Run(RunReason::SourcesChanged {
            changed: vec!["src/main.rs".into()]
        })
    );
    assert_eq!(edited.decision.to_string(), "src/main.rs changed");
    assert_ne!(edited.fingerprint, first.fingerprint);

    // A fresh process sees the same thing from the database alone.
    drop(ud);
    assert_eq!(
        ws.open().check(&spec, false).unwrap().decision,
        edited.decision
    );
}

#[test]
fn reasons_read_like_the_plan_output() {
    let many = RunReason::SourcesChanged {
        changed: ["a.rs", "b.rs", "c.rs", "d.rs", "e.rs", "f.rs", "g.rs"]
            .map(String::from)
            .to_vec(),
    };
    assert_eq!(many.to_string(), "a.rs, b.rs, c.rs changed (+4 more)");
    assert_eq!(
        RunReason::DefinitionChanged { from_version: 3 }.to_string(),
        "tainted: definition changed"
    );
    assert_eq!(
        RunReason::GeneratesMissing(vec!["out/app".into()]).to_string(),
        "generates path missing: out/app"
    );
    assert_eq!(
        RunReason::GeneratesModified(vec!["out/app".into()]).to_string(),
        "generates path modified: out/app"
    );
    assert_eq!(
        RunReason::UpstreamChanged.to_string(),
        "an upstream step changed"
    );
    let will_run = |steps: &[&str]| {
        RunReason::UpstreamWillRun {
            steps: steps.iter().map(|s| s.to_string()).collect(),
        }
        .to_string()
    };
    assert_eq!(will_run(&["lib"]), "runs if lib's output changes");
    assert_eq!(
        will_run(&["lib", "b.tool"]),
        "runs if the output of lib or b.tool changes"
    );
    assert_eq!(
        will_run(&["a", "b", "c"]),
        "runs if the output of a, b or c changes"
    );
    assert_eq!(
        will_run(&["a", "b", "c", "d"]),
        "runs if the output of a, b, c (+1 more) changes"
    );
    assert_eq!(
        SkipReason::RestoredFromCache { files: 2 }.to_string(),
        "restored from cache"
    );
    assert_eq!(
        serde_json::to_value(Decision::Run(RunReason::GeneratesMissing(vec!["x".into()]))).unwrap(),
        json!({"decision": "run", "reason": {"kind": "generates_missing", "detail": ["x"]}})
    );
}

#[test]
fn forced_and_sourceless_steps_always_run() {
    let ws = Ws::new();
    ws.write("a.txt", "a");
    let ud = ws.open();
    let spec = ws.spec("j/s", "true", &["a.txt"], &[]);
    run(&ud, &spec, || {});
    assert_eq!(
        recheck(&ud, &spec).decision,
        Decision::Skip(SkipReason::UpToDate)
    );
    assert_eq!(
        ud.check(&spec, true).unwrap().decision,
        Decision::Run(RunReason::Forced)
    );
    let none = ws.spec("j/t", "date", &[], &[]);
    run(&ud, &none, || {});
    let c = recheck(&ud, &none);
    assert_eq!(c.decision, Decision::Run(RunReason::NoSources));
    assert_eq!(c.decision.to_string(), "no sources");
}

#[test]
fn touch_without_change_rehashes_the_file_and_stays_up_to_date() {
    let ws = Ws::new();
    ws.write("src/a.c", "int a;");
    ws.write("src/b.c", "int b;");
    next_second();
    let ud = ws.open();
    let spec = ws.spec("c/cc", "cc", &["src/*.c"], &[]);
    let first = run(&ud, &spec, || {});
    let hashed = ud.index_stats().files_hashed;
    assert_eq!(hashed, 2);

    // Rows written a second after the files changed are trusted: nothing is read.
    let noop = recheck(&ud, &spec);
    assert_eq!(noop.decision, Decision::Skip(SkipReason::UpToDate));
    assert_eq!(
        ud.index_stats().files_hashed,
        hashed,
        "a no-op reads no file"
    );

    let f = fs::File::options()
        .write(true)
        .open(ws.base().join("src/a.c"))
        .unwrap();
    f.set_modified(SystemTime::now()).unwrap();
    drop(f);
    let touched = recheck(&ud, &spec);
    assert_eq!(
        ud.index_stats().files_hashed,
        hashed + 1,
        "only the touched file is re-read"
    );
    assert_eq!(touched.decision, Decision::Skip(SkipReason::UpToDate));
    assert_eq!(touched.fingerprint, first.fingerprint);
}

#[test]
fn a_same_second_rewrite_of_equal_size_is_detected() {
    let ws = Ws::new();
    let ud = ws.open();
    let spec = ws.spec("g/gen", "gen", &["in.txt"], &[]);
    start_of_a_second();
    ws.write("in.txt", "aaaa");
    let path = ws.base().join("in.txt");
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    run(&ud, &spec, || {});

    // The row was written in the second the file changed: it is racy, and is read
    // again even though nothing changed.
    let hashed = ud.index_stats().files_hashed;
    assert_eq!(
        recheck(&ud, &spec).decision,
        Decision::Skip(SkipReason::UpToDate)
    );
    assert_eq!(ud.index_stats().files_hashed, hashed + 1);

    // Same size, same mtime: only the content tells.
    ws.write("in.txt", "bbbb");
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 4);
    assert_eq!(
        recheck(&ud, &spec).decision,
        Decision::Run(RunReason::SourcesChanged {
            changed: vec!["in.txt".into()]
        })
    );
}

#[test]
fn gitignored_files_do_not_affect_the_fingerprint() {
    let ws = Ws::new();
    ws.write(".gitignore", "*.log\n/src/generated/\n");
    ws.write("src/a.rs", "a");
    ws.write("src/debug.log", "1");
    ws.write("src/generated/x.rs", "x");
    let ud = ws.open();
    let spec = ws.spec("b/b", "build", &["src/**"], &[]);
    let first = run(&ud, &spec, || {});
    assert_eq!(
        first.files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        vec!["src/a.rs"]
    );
    ws.write("src/debug.log", "2");
    ws.write("src/new.log", "3");
    ws.write("src/generated/x.rs", "y");
    let c = recheck(&ud, &spec);
    assert_eq!(c.decision, Decision::Skip(SkipReason::UpToDate));
    assert_eq!(c.fingerprint, first.fingerprint);
    // `.trun/` is never a source, even for `**`.
    let all = ws.spec("b/all", "x", &["**"], &[]);
    assert!(ud
        .check(&all, false)
        .unwrap()
        .files
        .iter()
        .all(|(p, _)| !p.starts_with(".trun")));
}

#[test]
fn negation_and_literal_paths() {
    let ws = Ws::new();
    ws.write(".gitignore", "config.local\n");
    ws.write("config.local", "named explicitly");
    ws.write("assets/logo.svg", "<svg/>");
    ws.write("src/a.rs", "a");
    ws.write("src/a_test.rs", "t");
    let ud = ws.open();
    let spec = ws.spec(
        "x/y",
        "x",
        &[
            "src/*.rs",
            "!src/*_test.rs",
            "config.local",
            "assets",
            "missing.txt",
        ],
        &[],
    );
    let c = ud.check(&spec, false).unwrap();
    let names: Vec<&str> = c.files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(names, vec!["assets/logo.svg", "config.local", "src/a.rs"]);
}

#[test]
fn a_definition_change_taints_and_versions_increment() {
    let ws = Ws::new();
    ws.write("a.txt", "a");
    let ud = ws.open();
    let v1 = ws.spec("j/s", "make", &["a.txt"], &[]);
    assert_eq!(ud.check(&v1, false).unwrap().definition_version, 1);
    run(&ud, &v1, || {});
    assert_eq!(ud.definition_version("j/s").unwrap(), Some(1));

    // Same definition, keys in another order: not a change.
    let mut reordered = v1.clone();
    reordered.definition = serde_json::from_str(r#"{"shell":"bash","run":"make"}"#).unwrap();
    assert_eq!(
        recheck(&ud, &reordered).decision,
        Decision::Skip(SkipReason::UpToDate)
    );

    let v2 = ws.spec("j/s", "make all", &["a.txt"], &[]);
    let c = recheck(&ud, &v2);
    assert_eq!(
        c.decision,
        Decision::Run(RunReason::DefinitionChanged { from_version: 1 })
    );
    assert_eq!(c.decision.to_string(), "tainted: definition changed");
    assert_eq!(c.definition_version, 2);
    run(&ud, &v2, || {});
    assert_eq!(ud.definition_version("j/s").unwrap(), Some(2));
    assert_eq!(
        recheck(&ud, &v2).decision,
        Decision::Skip(SkipReason::UpToDate)
    );

    let back = recheck(&ud, &v1);
    assert_eq!(
        back.decision,
        Decision::Run(RunReason::DefinitionChanged { from_version: 2 })
    );
    assert_eq!(
        back.definition_version, 3,
        "history is kept; going back is a new version"
    );
    assert_eq!(
        ud.try_restore(&v1, &back).unwrap(),
        None,
        "a tainted step is not restored"
    );
    run(&ud, &v1, || {});
    let history = ud.definition_history("j/s").unwrap();
    assert_eq!(
        history.iter().map(|h| h.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        history[1].definition,
        json!({"run": "make all", "shell": "bash"})
    );
    assert_eq!(ud.definition_version("other").unwrap(), None);
}

#[test]
fn upstream_fingerprint_changes_propagate() {
    let ws = Ws::new();
    ws.write("a.txt", "a");
    ws.write("b.txt", "b");
    let ud = ws.open();
    let up = ws.spec("a/one", "one", &["a.txt"], &[]);
    let up_check = run(&ud, &up, || {});
    let mut down = ws.spec("b/two", "two", &["b.txt"], &[]);
    down.upstream = vec![up_check.fingerprint];
    run(&ud, &down, || {});
    assert_eq!(
        recheck(&ud, &down).decision,
        Decision::Skip(SkipReason::UpToDate)
    );

    ws.write("a.txt", "A");
    let up_now = recheck(&ud, &up);
    assert!(up_now.decision.is_run());
    down.upstream = vec![up_now.fingerprint];
    let c = recheck(&ud, &down);
    assert_eq!(c.decision, Decision::Run(RunReason::UpstreamChanged));
    assert_eq!(c.decision.to_string(), "an upstream step changed");
}

#[test]
fn deleted_generates_are_restored_with_content_and_mode() {
    let ws = Ws::new();
    ws.write("src/main.c", "int main;");
    let ud = ws.open();
    let spec = ws.spec(
        "build/link",
        "cc -o out/app",
        &["src/**"],
        &["out/app", "out/docs"],
    );
    run(&ud, &spec, || {
        ws.write("out/app", "#!/bin/sh\necho built\n");
        fs::set_permissions(ws.base().join("out/app"), fs::Permissions::from_mode(0o755)).unwrap();
        ws.write("out/docs/index.html", "<h1>docs</h1>");
    });
    assert_eq!(
        recheck(&ud, &spec).decision,
        Decision::Skip(SkipReason::UpToDate)
    );

    fs::remove_file(ws.base().join("out/app")).unwrap();
    let c = recheck(&ud, &spec);
    assert_eq!(
        c.decision,
        Decision::Run(RunReason::GeneratesMissing(vec!["out/app".into()]))
    );
    assert_eq!(c.decision.to_string(), "generates path missing: out/app");
    assert_eq!(ud.try_restore(&spec, &c).unwrap(), Some(1));
    assert_eq!(ws.read("out/app"), "#!/bin/sh\necho built\n");
    assert_eq!(
        fs::metadata(ws.base().join("out/app"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        recheck(&ud, &spec).decision,
        Decision::Skip(SkipReason::UpToDate)
    );

    ws.write("out/docs/index.html", "<h1>edited</h1>");
    let c = recheck(&ud, &spec);
    assert_eq!(
        c.decision,
        Decision::Run(RunReason::GeneratesModified(vec![
            "out/docs/index.html".into()
        ]))
    );
    assert_eq!(ud.try_restore(&spec, &c).unwrap(), Some(1));
    assert_eq!(ws.read("out/docs/index.html"), "<h1>docs</h1>");

    // The executable bit is part of an output.
    fs::set_permissions(ws.base().join("out/app"), fs::Permissions::from_mode(0o644)).unwrap();
    let c = recheck(&ud, &spec);
    assert_eq!(
        c.decision,
        Decision::Run(RunReason::GeneratesModified(vec!["out/app".into()]))
    );
}

#[test]
fn an_earlier_success_is_restored_after_a_branch_switch() {
    let ws = Ws::new();
    let ud = ws.open();
    let spec = ws.spec("build/app", "build", &["src/**"], &["out/app"]);
    ws.write("src/x.c", "version A");
    let a = run(&ud, &spec, || ws.write("out/app", "built from A"));
    ws.write("src/x.c", "version B");
    let b = run(&ud, &spec, || ws.write("out/app", "built from B"));
    assert_ne!(a.fingerprint, b.fingerprint);

    ws.write("src/x.c", "version A");
    let c = recheck(&ud, &spec);
    assert_eq!(c.fingerprint, a.fingerprint);
    assert_eq!(
        c.decision,
        Decision::Run(RunReason::SourcesChanged {
            changed: vec!["src/x.c".into()]
        })
    );
    assert_eq!(ud.try_restore(&spec, &c).unwrap(), Some(1));
    assert_eq!(ws.read("out/app"), "built from A");
    assert_eq!(
        recheck(&ud, &spec).decision,
        Decision::Skip(SkipReason::UpToDate)
    );

    // Inputs never seen before: nothing to restore, the step must run.
    ws.write("src/x.c", "version C");
    let c = recheck(&ud, &spec);
    assert_eq!(ud.try_restore(&spec, &c).unwrap(), None);
    assert_eq!(ws.read("out/app"), "built from A");
}

#[test]
fn stats_and_prune_keep_the_last_success() {
    let ws = Ws::new();
    let ud = ws.open();
    let spec = ws.spec("build/app", "build", &["src/**"], &["out/app"]);
    for (i, v) in ["one", "two", "three"].iter().enumerate() {
        ws.write("src/x.c", v);
        run(&ud, &spec, || ws.write("out/app", &format!("built {i}")));
    }
    assert_eq!(
        ud.cache_stats().unwrap(),
        CacheStats {
            objects: 3,
            bytes: 21,
            entries: 3,
            steps: 1
        }
    );
    let report = ud.prune(Some(2), None).unwrap();
    assert_eq!(
        report,
        PruneReport {
            entries_removed: 1,
            objects_removed: 1,
            bytes_freed: 7
        }
    );
    assert_eq!(ud.cache_stats().unwrap().entries, 2);
    let report = ud.prune(None, Some(Duration::ZERO)).unwrap();
    assert_eq!(report.entries_removed, 1);
    assert_eq!(ud.cache_stats().unwrap().objects, 1);
    // The last success survives any prune and keeps the step up to date.
    assert_eq!(
        ud.prune(Some(0), Some(Duration::ZERO)).unwrap(),
        PruneReport::default()
    );
    assert_eq!(
        recheck(&ud, &spec).decision,
        Decision::Skip(SkipReason::UpToDate)
    );
    fs::remove_file(ws.base().join("out/app")).unwrap();
    let c = recheck(&ud, &spec);
    assert_eq!(ud.try_restore(&spec, &c).unwrap(), Some(1));
    assert_eq!(ws.read("out/app"), "built 2");
}

#[test]
fn each_directory_is_walked_once_per_invocation() {
    let ws = Ws::new();
    for d in 0..5 {
        for f in 0..3 {
            ws.write(&format!("src/d{d}/f{f}.rs"), "x");
        }
    }
    let ud = ws.open();
    let specs: Vec<StepSpec> = (0..5)
        .map(|d| ws.spec(&format!("j{d}/s"), "x", &[&format!("src/d{d}/**")], &[]))
        .chain([ws.spec("all/s", "x", &["src/**/*.rs"], &[])])
        .collect();
    ud.prepare(&specs.iter().collect::<Vec<_>>()).unwrap();
    for s in &specs {
        ud.check(s, false).unwrap();
    }
    for s in &specs {
        ud.check(s, false).unwrap();
    }
    let stats = ud.index_stats();
    assert_eq!(stats.roots_walked, 1, "src/ covers every src/dN/");
    assert_eq!(stats.files_listed, 15);
    assert_eq!(stats.files_hashed, 15, "each file hashed once");
    // Without prepare, a sub-directory walked first is not walked again by itself.
    ud.invalidate();
    ud.check(&specs[0], false).unwrap();
    ud.check(&specs[0], false).unwrap();
    assert_eq!(ud.index_stats().roots_walked, 2);
}

/// Waits until everything written so far is older than the current second (the
/// walk cache keeps no record of a tree changed in the second it was walked).
fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

#[test]
fn a_settled_tree_is_replayed_by_the_next_invocation_and_changes_still_show() {
    let ws = Ws::new();
    ws.write("src/a.rs", "a");
    ws.write("src/sub/b.rs", "b");
    ws.write("src/sub/c.log", "c");
    let spec = ws.spec("b/s", "build", &["src/**"], &[]);
    settle();
    run(&ws.open(), &spec, || {});
    let ud = ws.open();
    assert_eq!(
        ud.check(&spec, false).unwrap().decision,
        Decision::Skip(SkipReason::UpToDate)
    );
    assert_eq!(
        ud.index_stats().roots_replayed,
        1,
        "the second invocation replays"
    );
    // Each change between two invocations: the replay is refused, or agrees.
    let change = |i: usize| match i {
        0 => ws.write("src/sub/new.rs", "n"),
        1 => fs::remove_file(ws.base().join("src/a.rs")).unwrap(),
        2 => ws.write(".gitignore", "*.log\n"),
        _ => ws.write("src/sub/b.rs", "B"),
    };
    let shows = [
        "src/sub/new.rs",
        "src/a.rs",
        "src/sub/c.log",
        "src/sub/b.rs",
    ];
    for (i, path) in shows.into_iter().enumerate() {
        settle();
        run(&ws.open(), &spec, || {});
        change(i);
        match ws.open().check(&spec, false).unwrap().decision {
            Decision::Run(RunReason::SourcesChanged { changed }) => {
                assert_eq!(changed, vec![path.to_string()])
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

/// The stat-cache table's rows, forgotten: what is still known comes from the
/// walk records.
fn forget_stat_rows(ws: &Ws) {
    let db = rusqlite::Connection::open(ws.base().join(".trun/state.db")).unwrap();
    db.execute("DELETE FROM uptodate_stat", []).unwrap();
}

/// A new invocation (a new trun) that walks, then checks `spec`.
fn next_invocation(ws: &Ws, spec: &StepSpec) -> (UpToDate, Decision) {
    let ud = ws.open();
    ud.prepare(&[spec]).unwrap();
    let decision = ud.check(spec, false).unwrap().decision;
    (ud, decision)
}

#[test]
fn the_rows_stored_with_a_walk_serve_the_next_no_op_and_a_stale_one_is_looked_up() {
    let ws = Ws::new();
    for f in 0..50 {
        ws.write(&format!("src/d/f{f:02}.txt"), "same size");
    }
    let spec = ws.spec("b/s", "build", &["src/**"], &[]);
    settle();
    // A first invocation walks, hashes every file and stores the record with rows.
    let (ud, _) = next_invocation(&ws, &spec);
    run(&ud, &spec, || {});
    ud.prepare(&[&spec]).unwrap();
    let up_to_date = Decision::Skip(SkipReason::UpToDate);
    assert_eq!(ud.check(&spec, false).unwrap().decision, up_to_date);
    ud.store_walk_rows().unwrap();
    settle();
    forget_stat_rows(&ws);
    // The next: replayed, and not one file read, though the table is empty.
    let (ud, decision) = next_invocation(&ws, &spec);
    assert_eq!(decision, up_to_date);
    let stats = ud.index_stats();
    assert_eq!(
        (stats.roots_replayed, stats.files_hashed),
        (1, 0),
        "{stats:?}"
    );
    // Rewritten in place with the same size: no name changes, the directory's
    // stamp stays, and only the file's own row is stale.
    ws.write("src/d/f07.txt", "othr size");
    settle();
    let (ud, decision) = next_invocation(&ws, &spec);
    match decision {
        Decision::Run(RunReason::SourcesChanged { changed }) => {
            assert_eq!(changed, vec!["src/d/f07.txt".to_string()])
        }
        other => panic!("{other:?}"),
    }
    let stats = ud.index_stats();
    assert_eq!(
        (stats.roots_replayed, stats.files_hashed),
        (1, 1),
        "{stats:?}"
    );
    ud.record_success(&spec, &ud.check(&spec, false).unwrap(), 1)
        .unwrap();
    // One stale row in fifty is more than a few: the record is stored again
    // and the next invocation reads nothing, even with the table emptied.
    ud.store_walk_rows().unwrap();
    settle();
    forget_stat_rows(&ws);
    let (ud, decision) = next_invocation(&ws, &spec);
    assert_eq!(decision, up_to_date);
    assert_eq!(ud.index_stats().files_hashed, 0);
}

#[test]
fn up_to_date_is_send_and_sync() {
    fn assert<T: Send + Sync>() {}
    assert::<UpToDate>();
}

#[test]
fn latest_outputs_are_what_the_last_success_recorded() {
    let ws = Ws::new();
    let ud = ws.open();
    ws.write("src/a.txt", "a");
    let spec = ws.spec("b/s", "cp src/a.txt out.txt", &["src/**"], &["out.txt"]);
    assert!(ud.latest_outputs(&spec.key).unwrap().is_empty());
    let check = ud.check(&spec, false).unwrap();
    ws.write("out.txt", "a");
    let produced = ud.record_success(&spec, &check, 1).unwrap();
    assert_eq!(produced.len(), 1);
    assert_eq!(produced[0].0, "out.txt");
    assert_eq!(ud.latest_outputs(&spec.key).unwrap(), produced);
}

#[test]
fn a_prefetched_state_decides_like_the_store_and_a_stale_one_never_skips_wrongly() {
    let ws = Ws::new();
    ws.write("src/a.c", "int a;");
    let spec = ws.spec("lib/build", "cc", &["src/**"], &["out/lib.a"]);
    let other = ws.spec("app/build", "cc", &["src/**"], &[]);
    let ud = ws.open();
    run(&ud, &spec, || ws.write("out/lib.a", "one"));
    run(&ud, &other, || {});
    drop(ud);

    // Read ahead, then checked: the same answers as from the store.
    let ahead = ws.open();
    ahead.prefetch(&[&spec, &other]).unwrap();
    let fps = ahead.prefetched_fingerprints();
    assert_eq!(fps.len(), 2, "{fps:?}");
    let check = ahead.check(&spec, false).unwrap();
    assert_eq!(check.decision, Decision::Skip(SkipReason::UpToDate));
    assert_eq!(check.produced.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        ahead.check(&other, false).unwrap().decision,
        ws.open().check(&other, false).unwrap().decision
    );
    assert!(
        ahead.prefetched_fingerprints().is_empty(),
        "each is used once"
    );

    // Read ahead, then another process records a success with other
    // contents under the same fingerprint: the stale state only costs a run.
    let stale = ws.open();
    stale.prefetch(&[&spec]).unwrap();
    let elsewhere = ws.open();
    run(&elsewhere, &spec, || ws.write("out/lib.a", "two!"));
    let decision = stale.check(&spec, false).unwrap().decision;
    assert_eq!(
        decision,
        Decision::Run(RunReason::GeneratesModified(vec!["out/lib.a".into()]))
    );
    // The next check asks the store, which knows the newer success.
    assert_eq!(
        recheck(&stale, &spec).decision,
        Decision::Skip(SkipReason::UpToDate)
    );
    // And an output edited after the read ahead is seen.
    let edited = ws.open();
    edited.prefetch(&[&spec]).unwrap();
    ws.write("out/lib.a", "three");
    assert_eq!(
        edited.check(&spec, false).unwrap().decision,
        Decision::Run(RunReason::GeneratesModified(vec!["out/lib.a".into()]))
    );
}
