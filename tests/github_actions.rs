//! GitHub Actions' own actions in a trun workflow, through the real binary: remote
//! actions refused in one error (or skipped with `--skip-action`), `actions/checkout`,
//! the `actions/setup-*` actions and `dtolnay/rust-toolchain` on the host's toolchains.

mod common;

use common::{copy_dir, Test};
use std::process::Command;

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A workspace that is a git repository with everything committed.
fn repo(t: &Test) {
    git(t.path(), &["init", "-q", "-b", "main"]);
    git(t.path(), &["add", "-A"]);
    git(t.path(), &["commit", "-q", "-m", "initial"]);
}

/// The host's version of a tool, as `--version` prints it (`3.11.7`).
fn host_version(argv: &[&str]) -> String {
    host_version_in(std::path::Path::new("."), argv)
}

/// The same, asked in `dir` (a version manager's shim reads `.python-version` there).
fn host_version_in(dir: &std::path::Path, argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .output()
        .expect("tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|w| w.contains('.') && w.starts_with(|c: char| c.is_ascii_digit()))
        .expect("a version")
        .trim_end_matches('.')
        .to_string()
}

#[test]
fn remote_actions_are_one_error_listing_each_before_anything_runs() {
    let t = Test::new().workflow(
        r#"
        jobs:
          build:
            steps:
              - run: touch ran
              - uses: codecov/codecov-action@v4
                with: { token: x }
              - uses: docker/build-push-action@v5
          docs:
            steps:
              - uses: peaceiris/actions-gh-pages@v3
        "#,
    );
    let out = t.run(&["--progress", "plain"]);
    out.status(2).stderr_is(
        "
        trun.yaml:5:15: error: 3 steps use remote actions; trun runs without a network and does not download actions:
          trun.yaml:5:15: codecov/codecov-action@v4
          trun.yaml:7:15: docker/build-push-action@v5
          trun.yaml:10:15: peaceiris/actions-gh-pages@v3
          |
        5 |       - uses: codecov/codecov-action@v4
          |               ^^^^^^^^^^^^^^^^^^^^^^^^^
          help: to run the rest of the workflow with those steps skipped: --skip-action codecov/codecov-action --skip-action docker/build-push-action --skip-action peaceiris/actions-gh-pages
        ",
    );
    assert!(!t.exists("ran"), "nothing runs before the error");
    t.run(&["validate"]).status(2);
    t.run(&["plan"]).status(2);
}

#[test]
fn skip_action_runs_the_rest_and_shows_the_skipped_steps() {
    let t = Test::new().workflow(
        r#"
        jobs:
          build:
            steps:
              - run: touch before
              - id: cov
                uses: codecov/codecov-action@v4
              - run: touch after
        "#,
    );
    t.run(&["plan", "--skip-action", "codecov/codecov-action"])
        .success()
        .stdout_has("--skip-action codecov/codecov-action");
    t.run(&[
        "--progress",
        "plain",
        "--skip-action",
        "codecov/codecov-action@v4",
    ])
    .success();
    assert!(t.exists("before") && t.exists("after"));
    let show = t.show_json("");
    let steps = &show["jobs"][0]["steps"];
    assert_eq!(steps[1]["status"], "skipped", "{show}");
    assert_eq!(
        steps[1]["reason"], "--skip-action codecov/codecov-action@v4",
        "{show}"
    );
    // A name that matches nothing is a typo, not a silent no-op.
    t.run(&["--skip-action", "codecov/codecov"])
        .status(2)
        .stderr_has("--skip-action codecov/codecov: no step uses `codecov/codecov`")
        .stderr_has("codecov/codecov-action@v4");
}

#[test]
fn checkout_is_the_workspace_and_says_so() {
    let t = Test::new()
        .workflow(
            r#"
            jobs:
              build:
                steps:
                  - id: co
                    uses: actions/checkout@v4
                    with: { fetch-depth: 0, submodules: recursive }
                  - run: echo "commit=${{ steps.co.outputs.commit }}" > commit.txt
            "#,
        )
        .file("src/a.txt", "a\n");
    repo(&t);
    let head = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(t.path())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    t.run(&["--progress", "plain", "-v"])
        .success()
        .stderr_has("the workspace is the checkout")
        .stderr_has("not needed offline, ignored: fetch-depth, submodules");
    assert_eq!(
        t.read("commit.txt").trim(),
        format!("commit={}", head.trim())
    );
}

#[test]
fn checkout_path_copies_tracked_files_only_and_never_follows_links_out() {
    let t = Test::new()
        .workflow(
            r#"
            jobs:
              build:
                steps:
                  - uses: actions/checkout@v4
                    with: { path: copy }
                  - run: test -x copy/run.sh && cat copy/src/a.txt && test ! -e copy/untracked && test -L copy/link
            "#,
        )
        .file("src/a.txt", "tracked a\n")
        .file("run.sh", "#!/bin/sh\n");
    std::fs::set_permissions(
        t.join("run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("src/a.txt", t.join("link")).unwrap();
    repo(&t);
    t.write("untracked", "not in git\n");
    t.run(&["--progress", "plain", "-v"])
        .success()
        .stderr_has("tracked a")
        .stderr_has("copied 3 tracked files and 1 links");
    // Run again: the copy is made afresh.
    t.run(&["--progress", "plain"]).success();

    // A tracked link pointing out of the repository is refused, not copied or followed.
    std::os::unix::fs::symlink("/etc/passwd", t.join("evil")).unwrap();
    git(t.path(), &["add", "evil"]);
    git(t.path(), &["commit", "-q", "-m", "evil"]);
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("tracked link `evil` points outside the repository (/etc/passwd)");
}

#[test]
fn checkout_refuses_what_it_cannot_do_offline() {
    for (with, expected) in [
        (
            "{ path: ../outside }",
            "`path: ../outside` leaves the workspace (`..`)",
        ),
        ("{ path: /tmp/x }", "`path: /tmp/x` is absolute"),
        (
            "{ path: src }",
            "`path: src` holds tracked files of the repository",
        ),
        (
            "{ repository: someone/else }",
            "`repository: someone/else` names another repository",
        ),
        (
            "{ ref: no-such-branch }",
            "`ref: no-such-branch` is not in the local repository",
        ),
        (
            "{ ref: \"$(touch pwned)\" }",
            "is not in the local repository",
        ),
    ] {
        let t = Test::new()
            .workflow(&format!(
                "jobs:\n  build:\n    steps:\n      - uses: actions/checkout@v4\n        with: {with}\n"
            ))
            .file("src/a.txt", "a\n");
        repo(&t);
        t.run(&["--progress", "plain"])
            .status(1)
            .stderr_has(expected);
        assert!(!t.exists("pwned") && !t.path().parent().unwrap().join("outside").exists());
    }
    // Not a git repository: `path:` has nothing to copy.
    let t = Test::new().workflow(
        "jobs:\n  build:\n    steps:\n      - uses: actions/checkout@v4\n        with: { path: copy }\n",
    );
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("the workspace is not a git repository");
}

#[test]
fn setup_python_uses_the_host_python_when_it_satisfies_the_request() {
    let host = host_version(&["python3", "--version"]);
    let minor: String = host.split('.').take(2).collect::<Vec<_>>().join(".");
    let t = Test::new().workflow(&format!(
        r#"
        jobs:
          build:
            steps:
              - id: py
                uses: actions/setup-python@v5
                with: {{ python-version: "{minor}", cache: pip }}
              - run: echo "${{{{ steps.py.outputs.python-version }}}}" > version.txt
              - uses: actions/setup-python@v5
                with: {{ python-version: ">=3.0 <4" }}
        "#
    ));
    t.run(&["--progress", "plain", "-v"])
        .success()
        .stderr_has(&format!(
            "using host python {host} for python-version {minor}"
        ))
        .stderr_has("`cache: pip` is not done by trun");
    assert_eq!(t.read("version.txt").trim(), host);

    // A version the host does not have: what was asked and what the host has.
    t.write(
        "trun.yaml",
        "jobs:\n  build:\n    steps:\n      - uses: actions/setup-python@v5\n        with: { python-version: '2.7' }\n",
    );
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has(&format!(
            "python-version asks for python 2.7, but the host has python {host} (python3 on PATH)"
        ));
}

#[test]
fn setup_python_reads_the_version_file_and_refuses_hostile_requests() {
    let host = host_version(&["python3", "--version"]);
    let t = Test::new()
        .workflow("jobs:\n  build:\n    steps:\n      - uses: actions/setup-python@v5\n")
        .file(".python-version", &format!("{host}\n"));
    t.run(&["--progress", "plain", "-v"])
        .success()
        .stderr_has(&format!(
            "using host python {host} for .python-version {host}"
        ));

    for (with, expected) in [
        (
            "{ python-version: '$(touch pwned)' }",
            "is not a version request trun understands",
        ),
        (
            "{ python-version-file: ../../etc/passwd }",
            "leaves the workspace",
        ),
        ("{ python-version-file: link }", "is a symbolic link"),
        (
            "{ python-version: pypy3.10 }",
            "is not a version request trun understands",
        ),
    ] {
        let t = Test::new().workflow(&format!(
            "jobs:\n  build:\n    steps:\n      - uses: actions/setup-python@v5\n        with: {with}\n"
        ));
        std::os::unix::fs::symlink("/etc/hostname", t.join("link")).unwrap();
        t.run(&["--progress", "plain"])
            .status(1)
            .stderr_has(expected);
        assert!(!t.exists("pwned"));
    }
}

#[test]
fn setup_actions_name_a_missing_tool_and_mistyped_inputs() {
    // An empty PATH: no node, no go.
    let t = Test::new().workflow(
        "jobs:\n  build:\n    steps:\n      - uses: actions/setup-node@v4\n        with: { node-version: 20 }\n",
    );
    t.args(&["--progress", "plain"])
        .env("PATH", "/nonexistent")
        .run()
        .status(1)
        .stderr_has("node is not on PATH (asked for node 20 (node-version))");
    let t = Test::new().workflow(
        "jobs:\n  build:\n    steps:\n      - uses: actions/setup-go@v5\n        with: { go-verison: '1.22' }\n",
    );
    t.run(&["validate"])
        .status(2)
        .stderr_has("trun.yaml:5:17: error: actions/setup-go@v5: `actions/setup-go` has no input `go-verison` (did you mean `go-version`?)");
}

#[test]
fn rust_toolchain_uses_the_host_rust_and_checks_components() {
    let host = host_version(&["rustc", "--version"]);
    let minor: String = host.split('.').take(2).collect::<Vec<_>>().join(".");
    let t = Test::new().workflow(&format!(
        r#"
        jobs:
          build:
            steps:
              - id: rust
                uses: dtolnay/rust-toolchain@stable
                with: {{ components: "rustfmt, clippy" }}
              - uses: dtolnay/rust-toolchain@{minor}
              - uses: dtolnay/rust-toolchain@master
                with: {{ toolchain: stable }}
              - run: echo "${{{{ steps.rust.outputs.name }}}} ${{{{ steps.rust.outputs.cachekey }}}}" > out.txt
        "#
    ));
    t.run(&["--progress", "plain", "-v"])
        .success()
        .stderr_has(&format!(
            "using host rust {host} (stable) for toolchain stable"
        ))
        .stderr_has("component rustfmt: present")
        .stderr_has("component clippy: present")
        .stderr_has(&format!(
            "using host rust {host} (stable) for toolchain {minor}"
        ));
    let out = t.read("out.txt");
    assert!(
        out.starts_with("stable ") && out.trim().len() == "stable ".len() + 12,
        "{out}"
    );

    t.write(
        "trun.yaml",
        "jobs:\n  build:\n    steps:\n      - uses: dtolnay/rust-toolchain@1.2\n      - uses: dtolnay/rust-toolchain@nightly\n",
    );
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has(&format!(
            "toolchain 1.2 asked, but the host has rustc {host}"
        ));
    t.write(
        "trun.yaml",
        "jobs:\n  build:\n    steps:\n      - uses: dtolnay/rust-toolchain@stable\n        with: { targets: no-such-target }\n",
    );
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("target no-such-target asked, but the host's toolchain");
    t.write(
        "trun.yaml",
        "jobs:\n  build:\n    steps:\n      - uses: dtolnay/rust-toolchain@v1\n",
    );
    t.run(&["validate"])
        .status(2)
        .stderr_has("needs the input `toolchain`");
}

/// A cache workflow: restore `deps/` (and a file in `~`), build it on a miss.
const CACHE_WORKFLOW: &str = r#"
jobs:
  build:
    steps:
      - id: cache
        uses: actions/cache@v4
        with:
          key: deps-${{ hashFiles('lock.txt') }}
          restore-keys: |
            deps-
          path: |
            deps
            ~/.tool/cache.bin
            !deps/skip-me
      - if: steps.cache.outputs.cache-hit != 'true'
        run: |
          mkdir -p deps/sub "$HOME/.tool"
          cat lock.txt > deps/sub/lib.txt
          echo skip > deps/skip-me
          echo home > "$HOME/.tool/cache.bin"
          chmod 755 deps/sub/lib.txt
          echo built >> log.txt
      - run: echo "hit=${{ steps.cache.outputs.cache-hit }} matched=${{ steps.cache.outputs.cache-matched-key }}" >> log.txt
"#;

#[test]
fn cache_saves_after_a_miss_and_restores_exact_and_prefix_matches() {
    let t = Test::new()
        .workflow(CACHE_WORKFLOW)
        .file("lock.txt", "v1\n");
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_str().unwrap();
    t.args(&["--progress", "plain", "-v"])
        .env("HOME", h)
        .run()
        .success()
        .stderr_has("cache not found for key deps-")
        .stderr_has("saved cache deps-");
    assert_eq!(t.read("log.txt"), "built\nhit=false matched=\n");

    // Everything gone: an exact hit brings it back, with its mode, and skips the build.
    std::fs::remove_dir_all(t.join("deps")).unwrap();
    std::fs::remove_dir_all(home.path().join(".tool")).unwrap();
    std::fs::remove_file(t.join("log.txt")).unwrap();
    t.args(&["--progress", "plain", "-v"])
        .env("HOME", h)
        .run()
        .success()
        .stderr_has("restored cache deps-");
    let log = t.read("log.txt");
    assert!(log.starts_with("hit=true matched=deps-"), "{log}");
    assert_eq!(t.read("deps/sub/lib.txt"), "v1\n");
    assert!(!t.exists("deps/skip-me"), "an excluded path is not cached");
    assert_eq!(
        std::fs::read_to_string(home.path().join(".tool/cache.bin")).unwrap(),
        "home\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(t.join("deps/sub/lib.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );

    // A new lock file: no exact hit, the newest `deps-` entry is restored, not a hit,
    // so the build runs and a new entry is saved.
    t.write("lock.txt", "v2\n");
    std::fs::remove_file(t.join("log.txt")).unwrap();
    t.args(&["--progress", "plain", "-v"])
        .env("HOME", h)
        .run()
        .success()
        .stderr_has("saved cache deps-");
    let log = t.read("log.txt");
    assert!(log.starts_with("built\nhit=false matched=deps-"), "{log}");
}

#[test]
fn cache_is_not_saved_when_the_job_fails() {
    let t = Test::new().workflow(
        r#"
        jobs:
          build:
            steps:
              - uses: actions/cache@v4
                with: { key: k1, path: out }
              - run: mkdir -p out && echo x > out/f && exit 3
        "#,
    );
    t.run(&["--progress", "plain", "-v"])
        .status(1)
        .stderr_lacks("saved cache");
    t.write("trun.yaml", "jobs:\n  build:\n    steps:\n      - id: c\n        uses: actions/cache/restore@v4\n        with: { key: k1, path: out, fail-on-cache-miss: true }\n");
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("cache miss for key k1 and `fail-on-cache-miss` is true");
}

#[test]
fn cache_paths_are_hostile() {
    for (path, expected) in [
        (
            "../outside",
            "path `../outside` leaves its directory (`..`)",
        ),
        (
            "/etc/passwd",
            "path `/etc/passwd` is outside the workspace and the home directory",
        ),
        ("deps/../../x", "leaves its directory"),
    ] {
        let t = Test::new().workflow(&format!(
            "jobs:\n  build:\n    steps:\n      - uses: actions/cache@v4\n        with: {{ key: k, path: '{path}' }}\n"
        ));
        t.run(&["--progress", "plain"])
            .status(1)
            .stderr_has(expected);
    }

    // Save a real file, then plant a link where it would be restored: the restore
    // refuses to write through it and the link's target is untouched.
    let t = Test::new()
        .workflow(
            r#"
            jobs:
              build:
                steps:
                  - uses: actions/cache@v4
                    with: { key: "k-$(touch pwned)", path: out }
                  - run: test -d out || (mkdir out && echo data > out/f && ln -s /etc/hostname out/link)
            "#,
        );
    t.run(&["--progress", "plain", "-v"])
        .success()
        .stderr_has("saved cache k-$(touch pwned) (1 files, 5 B; 1 symbolic links not saved)");
    assert!(!t.exists("pwned"));
    std::fs::remove_dir_all(t.join("out")).unwrap();
    let victim = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(victim.path(), t.join("out")).unwrap();
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("cannot restore out/f");
    assert!(
        !victim.path().join("f").exists(),
        "nothing written through the link"
    );
}

#[test]
fn artifacts_pass_from_a_job_to_the_jobs_that_need_it_and_show_lists_them() {
    let t = Test::new().workflow(
        r#"
        jobs:
          build:
            steps:
              - run: mkdir -p dist/sub && echo wheel > dist/app.whl && echo doc > dist/sub/readme.txt && echo s > dist/.hidden
              - id: up
                uses: actions/upload-artifact@v4
                with: { name: dist, path: dist/, retention-days: 5 }
              - uses: actions/upload-artifact@v4
                with:
                  name: report
                  path: |
                    report-*.txt
                    notes.md
                  if-no-files-found: ignore
              - run: echo "${{ steps.up.outputs.artifact-id }}" > id.txt
          test:
            needs: build
            steps:
              - uses: actions/download-artifact@v4
                with: { name: dist, path: got }
              - run: cat got/app.whl got/sub/readme.txt && test ! -e got/.hidden
              - uses: actions/download-artifact@v4
                with: { path: all }
              - run: test -f all/dist/app.whl
        "#,
    );
    t.run(&["--progress", "plain", "-v", "-j", "1"])
        .success()
        .stderr_has("uploaded artifact dist: 2 files, 10 B (retention-days 5: kept with the run's record)")
        .stderr_has("no files were found with the provided path: report-*.txt, notes.md; no artifact uploaded")
        .stderr_has("downloaded artifact dist (2 files, 10 B) into got");
    assert_eq!(t.read("id.txt").trim(), "1");
    t.run(&["show"])
        .success()
        .stdout_has("artifacts:\n  dist  2 files, 10 B  (job build)");
    let show = t.show_json("");
    assert_eq!(show["artifacts"][0]["name"], "dist");
    assert_eq!(show["artifacts"][0]["bytes"], 10);
}

#[test]
fn artifact_names_and_paths_are_hostile() {
    for (with, expected) in [
        (
            "{ name: ../../evil, path: f }",
            "artifact name `../../evil` contains '/'",
        ),
        ("{ name: 'a\\b', path: f }", "contains '\\\\'"),
        (
            "{ name: x, path: ../f }",
            "path `../f` leaves its directory",
        ),
        (
            "{ name: x, path: nothing-here, if-no-files-found: error }",
            "no files were found with the provided path: nothing-here",
        ),
    ] {
        let t = Test::new()
            .workflow(&format!("jobs:\n  build:\n    steps:\n      - uses: actions/upload-artifact@v4\n        with: {with}\n"))
            .file("f", "x\n");
        t.run(&["--progress", "plain"])
            .status(1)
            .stderr_has(expected);
    }
    let t = Test::new()
        .workflow(
            r#"
            jobs:
              build:
                steps:
                  - uses: actions/upload-artifact@v4
                    with: { name: x, path: f }
                  - uses: actions/upload-artifact@v4
                    with: { name: x, path: f }
            "#,
        )
        .file("f", "x\n");
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("an artifact named `x` was already uploaded in this run (by job `build`)");
    for (with, expected) in [
        (
            "{ name: nope }",
            "no artifact named `nope` in this run; no job has uploaded one yet",
        ),
        ("{ path: ../out }", "`path: ../out` leaves the workspace"),
        (
            "{ run-id: '123' }",
            "trun downloads the artifacts of this run only",
        ),
    ] {
        let t = Test::new().workflow(&format!(
            "jobs:\n  build:\n    steps:\n      - uses: actions/download-artifact@v4\n        with: {with}\n"
        ));
        t.run(&["--progress", "plain"])
            .status(1)
            .stderr_has(expected);
    }
    // A link planted where the download goes is refused, its target untouched.
    let victim = tempfile::tempdir().unwrap();
    let t = Test::new()
        .workflow(
            r#"
            jobs:
              build:
                steps:
                  - uses: actions/upload-artifact@v4
                    with: { name: x, path: f }
                  - uses: actions/download-artifact@v4
                    with: { name: x, path: got }
            "#,
        )
        .file("f", "x\n");
    std::os::unix::fs::symlink(victim.path(), t.join("got")).unwrap();
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("cannot download f");
    assert!(!victim.path().join("f").exists());
}

/// A copy of `examples/github/NAME` in a fresh workspace, committed to git, with its
/// workflow `.github/workflows/FILE` also written as `trun.yaml`, without the `on:`,
/// `permissions:` and `runs-on:` keys, which this trun's parser does not take yet.
fn github_example(name: &str, file: &str) -> Test {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), &target).unwrap();
            }
        }
    }
    let t = Test::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/github")
        .join(name);
    copy(&dir, t.path());
    let text = t.read(&format!(".github/workflows/{file}"));
    let mut out = String::new();
    let mut in_on = false;
    for line in text.lines() {
        if line.starts_with("on:") || line.starts_with("'on':") || line.starts_with("permissions:")
        {
            in_on = true;
            continue;
        }
        if in_on && (line.starts_with(' ') || line.is_empty()) {
            continue;
        }
        in_on = false;
        if line.trim_start().starts_with("runs-on:") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    t.write("trun.yaml", &out);
    repo(&t);
    t
}

#[test]
fn example_composite_action_with_inputs_outputs_and_a_nested_composite() {
    let t = github_example("composite-action", "ci.yml");
    t.run(&["validate"]).success();
    t.run(&["plan"])
        .success()
        .stdout_has("quiet/plain")
        .stdout_has("loud/loud/up");
    t.run(&["--progress", "plain", "-v"])
        .success()
        .stderr_has("quiet: hello, world")
        .stderr_has("loud: HELLO, HELLO, WORLD")
        .stderr_has("quiet / loud / up: `if` of the composite's step was false");
    assert_eq!(t.read("loud.txt"), "HELLO, HELLO, WORLD\n");
}

#[test]
fn composite_inputs_never_become_code() {
    let t = Test::new()
        .workflow(
            r#"
            jobs:
              build:
                steps:
                  - id: e
                    uses: ./act
                    with: { value: "$(touch pwned)`touch pwned2`'\"" }
                  - run: test '${{ steps.e.outputs.out }}' = ok
            "#,
        )
        .file(
            "act/action.yaml",
            r#"
            inputs:
              value: { required: true }
            outputs:
              out: { value: "${{ steps.w.outputs.r }}" }
            runs:
              using: composite
              steps:
                - id: w
                  shell: bash
                  run: |
                    printf '%s' "${{ inputs.value }}" > value.txt
                    echo "r=ok" >> "$GITHUB_OUTPUT"
            "#,
        );
    t.run(&["--progress", "plain", "-v"]).success();
    assert_eq!(t.read("value.txt"), "$(touch pwned)`touch pwned2`'\"");
    assert!(!t.exists("pwned") && !t.exists("pwned2"));
}

#[test]
fn composite_errors_point_into_the_action_file() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "runs:\n  using: composite\n  steps:\n    - run: echo hi\n",
            "{}",
            "act/action.yml:4:7: error: a `run` step of a composite action needs `shell` (as on GitHub)",
        ),
        (
            "runs:\n  using: node20\n  main: index.js\n",
            "{}",
            "act/action.yml:2:10: error: `runs.using: node20` is a JavaScript action",
        ),
        (
            "inputs:\n  who: { required: true }\nruns:\n  using: composite\n  steps:\n    - { run: echo, shell: bash }\n",
            "{}",
            "act/action.yml:2:3: error: input `who` is required, and step `step-1` does not give it in `with`",
        ),
        (
            "inputs:\n  who: {}\nruns:\n  using: composite\n  steps:\n    - { run: echo, shell: bash }\n",
            "{ woh: x }",
            "`./act` (step `step-1`) has no input `woh` (did you mean `who`?); its inputs: who",
        ),
        (
            "runs:\n  using: composite\n  steps:\n    - uses: ./act\n",
            "{}",
            "composite actions use each other in a cycle: act/action.yml -> act/action.yml",
        ),
        (
            "runs:\n  using: composite\n  steps:\n    - uses: someone/remote@v1\n",
            "{}",
            "act/action.yml:4:13: error: `someone/remote@v1` is a remote action",
        ),
        (
            "runs:\n  using: composite\n  stesp: []\n",
            "{}",
            "act/action.yml:2:3: error: unknown key `stesp` in `runs` of a composite action (did you mean `steps`?)",
        ),
    ];
    for (action, with, expected) in cases {
        let t = Test::new()
            .workflow(&format!(
                "jobs:\n  build:\n    steps:\n      - uses: ./act\n        with: {with}\n"
            ))
            .file("act/action.yml", action);
        t.run(&["validate"]).status(2).stderr_has(expected);
        t.run(&["--progress", "plain"])
            .status(2)
            .stderr_has(expected);
    }
    let t = Test::new().workflow("jobs:\n  build:\n    steps:\n      - uses: ./nowhere\n");
    t.run(&["validate"])
        .status(2)
        .stderr_has("local action `./nowhere`: no action.yml or action.yaml in");
    let t = Test::new().workflow("jobs:\n  build:\n    steps:\n      - uses: ./../x\n");
    t.run(&["validate"])
        .status(2)
        .stderr_has("local action `./../x` leaves the workspace");
}

#[test]
fn example_classroom_workflow_runs_and_grades() {
    let t = github_example("classroom", "classroom.yml");
    t.run(&["--progress", "plain", "-v"])
        .success()
        .stderr_has("✓ square unit checks: pass (6/6 points)")
        .stderr_has("✓ square of 7: pass (4/4 points)")
        .stderr_has("Total points: 10/10");
    // The same workflow as a rubric, through trun's grading.
    t.run(&[
        "grade",
        "--local",
        "--rubric",
        ".github/workflows/classroom.yml",
        "--json",
    ])
    .success()
    .stdout_has("\"score\": 10");

    // A wrong answer: the io grader fails it, the reporter says so and fails.
    t.write(
        "square.py",
        "import sys\n\ndef square(n):\n    return n * n\n\nif __name__ == '__main__':\n    print(int(sys.stdin.readline()) * 2)\n",
    );
    t.run(&["--progress", "plain", "-v"])
        .status(1)
        .stderr_has(
            "✗ square of 7: fail (0/4 points): output does not equal the expected output \"49\"",
        )
        .stderr_has("Total points: 6/10");
    t.run(&[
        "grade",
        "--local",
        "--force",
        "--rubric",
        ".github/workflows/classroom.yml",
        "--json",
    ])
    .stdout_has("\"score\": 6");
}

#[test]
fn classroom_graders_keep_input_as_data_and_honour_timeouts() {
    let t = Test::new().workflow(
        r#"
        jobs:
          grade:
            steps:
              - id: io
                uses: classroom-resources/autograding-io-grader@v1
                with:
                  command: cat
                  input: "$(touch pwned)"
                  expected-output: "$(touch pwned)"
                  comparison-method: exact
                  max-score: 1
              - id: slow
                uses: education/autograding-command-grader@v1
                with: { command: sleep 30, timeout: 0.02, max-score: 2 }
              - uses: classroom-resources/autograding-grading-reporter@v1
                env:
                  IO_RESULTS: ${{ steps.io.outputs.result }}
                  SLOW_RESULTS: ${{ steps.slow.outputs.result }}
                with: { runners: "io, slow" }
        "#,
    );
    let started = std::time::Instant::now();
    t.run(&["--progress", "plain", "-v"])
        .status(1)
        .stderr_has("✓ test: pass (1/1 points)")
        .stderr_has("✗ test: fail (0/2 points)")
        .stderr_has("Total points: 1/3");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the timeout stopped `sleep 30`"
    );
    assert!(!t.exists("pwned"));
    t.write(
        "trun.yaml",
        "jobs:\n  g:\n    steps:\n      - uses: classroom-resources/autograding-io-grader@v1\n        with: { command: cat, expected-output: x, comparison-method: fuzzy }\n",
    );
    t.run(&["--progress", "plain"])
        .status(1)
        .stderr_has("`comparison-method: fuzzy` is not one of exact, contains, regex");
}

#[test]
fn example_python_ci_with_setup_python_cache_and_artifacts_between_jobs() {
    let t = github_example("python-ci", "ci.yml");
    let host = host_version_in(t.path(), &["python3", "--version"]);
    t.run(&["--progress", "plain", "-v"])
        .success()
        .stderr_has(&format!("using host python {host} for .python-version 3"))
        .stderr_has("cache not found for key pip-")
        .stderr_has("saved cache pip-")
        .stderr_has("uploaded artifact dist: 2 files")
        .stderr_has("downloaded artifact dist (2 files")
        .stderr_has(&format!("built with python {host}"));
    t.run(&["show"])
        .success()
        .stdout_has("artifacts:\n  dist  2 files");
    // Again: the cache is hit, and the install step is skipped by its `if`.
    t.run(&["--progress", "plain", "-v"])
        .success()
        .stderr_has("restored cache pip-")
        .stderr_has("Install dependencies: `if` was false");
}

#[test]
fn this_projects_ci_workflow_runs_its_format_job() {
    // The project's own .github/workflows/ci.yml, as it is: checkout and
    // rust-toolchain are built in, `runs-on` is this host. The `fmt` job is the
    // short one (clippy and the test suite would run this suite again); it runs
    // in a copy of the sources, so its `.trun/` stays out of the checkout.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = Test::new();
    for dir in [".github", "src", "tests", "benches"] {
        copy_dir(&repo.join(dir), &t.join(dir));
    }
    for file in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(repo.join(file), t.join(file)).unwrap();
    }
    t.run(&["-f", ".github/workflows/ci.yml", "validate"])
        .success();
    t.run(&["-f", ".github/workflows/ci.yml", "plan"])
        .success()
        .stdout_has("runs-on ubuntu-latest: on this host")
        .stdout_has("actions/checkout@v4")
        .stdout_has("dtolnay/rust-toolchain@stable");
    let out = t.run(&[
        "-f",
        ".github/workflows/ci.yml",
        "-j",
        "2",
        "--progress",
        "plain",
        "fmt",
    ]);
    out.success().stdout_lacks("clippy").stdout_lacks(".ci/run");
    let all = out.all();
    assert!(
        all.contains("using host"),
        "rust-toolchain says which toolchain it used:\n{all}"
    );
    let show = t.show_json("last");
    let steps: Vec<(String, String)> = show["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|j| j["steps"].as_array().unwrap().iter())
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_string(),
                s["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps.len(),
        3,
        "checkout, rust-toolchain, Format: {steps:?}"
    );
    assert!(steps.iter().all(|(_, st)| st == "success"), "{steps:?}");
    // A badly formatted file fails the same job, as it would on GitHub.
    t.write("src/zz_unformatted.rs", "fn  main ( ) { }\n");
    let lib = std::fs::read_to_string(t.join("src/lib.rs")).unwrap();
    t.write("src/lib.rs", &format!("{lib}\nmod zz_unformatted;\n"));
    t.run(&[
        "-f",
        ".github/workflows/ci.yml",
        "--progress",
        "plain",
        "fmt",
    ])
    .status(1);
}
