//! GitHub Actions workflow files run as they are: `trun -f .github/workflows/ci.yml`,
//! `trun -W`, the `github`/`runner`/`vars`/`strategy` contexts and the `GITHUB_*`
//! variables, the event payload as untrusted data, shell defaults, `-P LABEL=IMAGE`
//! (against the real Docker daemon) and the examples under `examples/github/`.

mod common;
mod support;

use common::Test;
use std::path::Path;

const CI: &str = r#"
    name: CI
    run-name: CI on ${{ github.ref_name }}
    on:
      push:
        branches: [main]
      pull_request:
        types: [opened, synchronize]
      schedule:
        - cron: "0 3 * * 1"
      workflow_dispatch:
        inputs:
          level:
            type: choice
            options: [low, high]
            default: low
          verbose:
            type: boolean
            default: false
          target:
            type: environment
    permissions:
      contents: read
    jobs:
      test:
        runs-on: ${{ matrix.os }}
        environment: { name: staging, url: "https://staging.example" }
        permissions: read-all
        strategy:
          fail-fast: false
          matrix:
            os: [ubuntu-latest, ubuntu-22.04]
        steps:
          - run: echo "leg ${{ strategy.job-index }}/${{ strategy.job-total }} on ${{ matrix.os }} level=${{ inputs.level }} verbose=${{ inputs.verbose }}"
      lint:
        runs-on: [self-hosted, linux]
        needs: test
        steps:
          - run: echo lint
"#;

/// A workspace that is a Git repository (written as files: HEAD, a branch, a remote),
/// holding `.github/workflows/ci.yml`.
fn repo(workflow: &str) -> Test {
    let t = Test::new()
        .file(".github/workflows/ci.yml", workflow)
        .file(".git/HEAD", "ref: refs/heads/main\n")
        .file(
            ".git/refs/heads/main",
            "0123456789abcdef0123456789abcdef01234567\n",
        )
        .file(
            ".git/config",
            "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = git@github.com:acme/widget.git\n",
        );
    // No user config from the machine running the tests.
    std::fs::create_dir_all(t.join("xdg")).unwrap();
    t
}

fn trun(t: &Test, args: &[&str]) -> common::Invocation {
    t.args(args)
        .env("XDG_CONFIG_HOME", &t.join("xdg").display().to_string())
}

#[test]
fn a_github_workflow_plans_with_what_is_not_enforced() {
    let t = repo(CI);
    let out = t.run(&["-f", ".github/workflows/ci.yml", "plan"]);
    out.success()
        .stdout_has("on: push, pull_request, schedule, workflow_dispatch (recorded, not enforced")
        .stdout_has("this run is a `push` event")
        .stdout_has("run-name: CI on main")
        .stdout_has("permissions: not enforced (trun has no GITHUB_TOKEN)")
        .stdout_has("runs-on ubuntu-latest: on this host")
        .stdout_has("runs-on ubuntu-22.04: on this host")
        .stdout_has("runs-on [self-hosted, linux]: on this host")
        .stdout_has("environment staging: accepted, not enforced");
    // list, graph and validate read the file too.
    t.run(&["-f", ".github/workflows/ci.yml", "list"])
        .success()
        .stdout_has("lint")
        .stdout_has("(needs: test)");
    t.run(&["-f", ".github/workflows/ci.yml", "graph"])
        .success()
        .stdout_has("test");
    t.run(&["-f", ".github/workflows/ci.yml", "validate"])
        .success();
}

#[test]
fn a_github_workflow_runs_in_the_repository_root() {
    let t = repo(CI);
    let out = trun(&t, &["-f", ".github/workflows/ci.yml", "-i", "level=high"]).run();
    out.success();
    let all = out.all();
    assert!(
        all.contains("leg 0/2 on ubuntu-latest level=high verbose=false"),
        "{all}"
    );
    assert!(
        all.contains("leg 1/2 on ubuntu-22.04 level=high verbose=false"),
        "{all}"
    );
    // The workspace is the repository, not .github/workflows.
    assert!(t.exists(".trun/state.db"));
    assert!(!t.exists(".github/workflows/.trun"));
    // Dispatch inputs are typed like trun inputs.
    trun(
        &t,
        &["-f", ".github/workflows/ci.yml", "-i", "level=hihg", "plan"],
    )
    .run()
    .status(2)
    .stderr_has("input `level` must be one of low, high, got `hihg`");
    trun(
        &t,
        &[
            "-f",
            ".github/workflows/ci.yml",
            "-i",
            "verbose=yes",
            "plan",
        ],
    )
    .run()
    .status(2)
    .stderr_has("input `verbose` must be `true` or `false`");
}

#[test]
fn workflows_flag_lists_and_chooses() {
    let t = repo(CI).file(
        ".github/workflows/release.yaml",
        r#"
        on: { push: { tags: ["v*"] } }
        jobs:
          publish:
            runs-on: ubuntu-latest
            steps: [ { run: echo publishing } ]
        "#,
    );
    t.write(".github/workflows/notes.txt", "not a workflow");
    let out = t.args(&["-W"]).current_dir(".github").run();
    out.success()
        .stdout_has("workflows/ci.yml  CI  (on: push, pull_request, schedule, workflow_dispatch)")
        .stdout_has("  test  runs-on: ${{ matrix.os }}")
        .stdout_has("  lint  runs-on: [self-hosted, linux]  needs: test")
        .stdout_has("workflows/release.yaml  (on: push)")
        .stdout_has("  publish  runs-on: ubuntu-latest")
        .stdout_lacks("notes.txt");
    let json = t.run(&["-W", "--json"]).success().json();
    assert_eq!(json[0]["path"], ".github/workflows/ci.yml");
    assert_eq!(json[1]["jobs"][0]["id"], "publish");
    // By name, from anywhere in the repository.
    let out = trun(&t, &["-W", "release"]).current_dir(".github").run();
    out.success();
    assert!(out.all().contains("publishing"), "{}", out.all());
    trun(&t, &["-W", "ci", "plan"])
        .run()
        .success()
        .stdout_has("plan for CI");
    trun(&t, &["-W", "relase"])
        .run()
        .status(2)
        .stderr_has("no workflow `relase` in .github/workflows")
        .stderr_has("did you mean `release`?");
}

#[test]
fn a_repository_without_workflows_says_so() {
    let t = Test::new();
    t.run(&["-W"])
        .status(2)
        .stderr_has("no .github/workflows directory in");
}

#[test]
fn unknown_keys_and_events_are_errors_at_their_place() {
    let t = Test::new().file(
        ".github/workflows/ci.yml",
        r#"
        on: [push, pull_reqest]
        permissions: { contents: read, pul-requests: write }
        jobs:
          test:
            runs-onn: ubuntu-latest
            steps: [ { run: "true" } ]
        "#,
    );
    let out = t.run(&["-f", ".github/workflows/ci.yml", "validate"]);
    out.status(2).stderr_has(
        ".github/workflows/ci.yml:5:5: error: unknown key `runs-onn` (did you mean `runs-on`?)",
    );
    t.write(
        ".github/workflows/ci.yml",
        "on: [push, pull_reqest]\npermissions: { contents: read, pul-requests: write }\njobs:\n  test:\n    runs-on: ubuntu-latest\n    environment: { name: prod, ulr: x }\n    steps: [ { run: \"true\" } ]\n",
    );
    let out = t.run(&["-f", ".github/workflows/ci.yml", "validate"]);
    out.status(2)
        .stderr_has("unknown key `ulr` (did you mean `url`?)");
    t.write(
        ".github/workflows/ci.yml",
        "on: [push, pull_reqest]\npermissions: { contents: read, pul-requests: write }\njobs:\n  test:\n    runs-on: ${{ matrix.os }}\n    env: { OS: \"${{ runner.oss }}\" }\n    steps: [ { run: \"echo ${{ github.shaa }}\" } ]\n",
    );
    let out = t.run(&["-f", ".github/workflows/ci.yml", "validate"]);
    out.status(2)
        .stderr_has(".github/workflows/ci.yml:1:12: error: unknown event `pull_reqest`")
        .stderr_has("did you mean `pull_request`?")
        .stderr_has("unknown permission `pul-requests`")
        .stderr_has("`matrix` is not available here")
        .stderr_has("`github` has no property `shaa` (did you mean `sha`?)")
        .stderr_has("`runner` has no property `oss` (did you mean `os`?)");
}

/// The values one step sees and the next one does not share: `github.action` is
/// each step's own; the run's paths agree with the variables in every step.
#[test]
fn each_step_sees_its_own_action_and_the_runs_paths() {
    let t = repo(
        r#"
        name: steps
        on: push
        jobs:
          show:
            runs-on: ubuntu-latest
            steps:
              - id: first
                run: echo "action=${{ github.action }}"
              - id: second
                if: github.workspace != ''
                run: |
                  echo "action=${{ github.action }}"
                  test "${{ github.event_path }}" = "$GITHUB_EVENT_PATH" && echo "event path agrees"
                  test "${{ runner.temp }}" = "$RUNNER_TEMP" && echo "runner temp agrees"
                  test "${{ github.workspace }}" = "$GITHUB_WORKSPACE" && echo "workspace agrees"
        "#,
    );
    let out = trun(&t, &["-W", "ci"]).env("SHELL", "/bin/false").run();
    out.success();
    let all = out.all();
    for want in [
        "action=first",
        "action=second",
        "event path agrees",
        "runner temp agrees",
        "workspace agrees",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
}

#[test]
fn contexts_and_variables_come_from_the_local_repository() {
    let t = repo(
        r#"
        name: ctx
        on: push
        jobs:
          show:
            runs-on: ubuntu-latest
            env:
              FROM_VARS: ${{ vars.GREETING }}
            steps:
              - run: |
                  echo "sha=${{ github.sha }} ref=${{ github.ref }} name=${{ github.ref_name }}"
                  echo "repo=${{ github.repository }} owner=${{ github.repository_owner }} event=${{ github.event_name }}"
                  echo "job=${{ github.job }} run=${{ github.run_id }} token=[${{ github.token }}] server=${{ github.server_url }}"
                  echo "runner=${{ runner.os }}/${{ runner.arch }} ws=$(test "${{ github.workspace }}" = "$GITHUB_WORKSPACE" && echo true)"
                  echo "vars=${{ vars.GREETING }}/${{ vars.FROM_FILE }}/${{ vars.FROM_RC }}/[${{ vars.MISSING }}] env=$FROM_VARS"
                  echo "env: CI=$CI GA=$GITHUB_ACTIONS SHA=$GITHUB_SHA REF=$GITHUB_REF NAME=$GITHUB_REF_NAME"
                  echo "env: REPO=$GITHUB_REPOSITORY EV=$GITHUB_EVENT_NAME JOB=$GITHUB_JOB OS=$RUNNER_OS ARCH=$RUNNER_ARCH"
                  test -d "$RUNNER_TEMP" && echo "runner temp is a directory"
                  test "$GITHUB_RUN_ID" = "${{ github.run_id }}" && echo "run id agrees"
                  echo "payload after=$(grep -o '"after":"[0-9a-f]*"' "$GITHUB_EVENT_PATH")"
        "#,
    )
    .file("vars.env", "# variables\nFROM_FILE=file\nexport GREETING=overridden\n")
    .file(".trunrc", "# remembered\n--var FROM_RC=rc\n");
    let out = trun(
        &t,
        &[
            "-W",
            "ci",
            "--var-file",
            "vars.env",
            "--var",
            "GREETING=hello",
        ],
    )
    .env("SHELL", "/bin/false")
    .run();
    out.success();
    let all = out.all();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let arch = match std::env::consts::ARCH {
        "x86_64" => "X64",
        "aarch64" => "ARM64",
        other => other,
    };
    for want in [
        format!("sha={sha} ref=refs/heads/main name=main"),
        "repo=acme/widget owner=acme event=push".to_string(),
        "job=show run=1 token=[] server=https://github.com".to_string(),
        format!("runner=Linux/{arch} ws=true"),
        "vars=hello/file/rc/[] env=hello".to_string(),
        format!("env: CI=true GA=true SHA={sha} REF=refs/heads/main NAME=main"),
        format!("env: REPO=acme/widget EV=push JOB=show OS=Linux ARCH={arch}"),
        "runner temp is a directory".to_string(),
        "run id agrees".to_string(),
        format!("payload after=\"after\":\"{sha}\""),
    ] {
        assert!(all.contains(&want), "missing {want:?} in:\n{all}");
    }
}

#[test]
fn a_trun_yaml_gets_the_contexts_but_not_the_ci_variables() {
    let t = Test::new().workflow(
        r#"
        jobs:
          a:
            steps:
              - run: echo "os=${{ runner.os }} ci=[${CI-unset}] ga=[${GITHUB_ACTIONS-unset}]"
        "#,
    );
    // The harness starts trun without the machine's `CI` (a CI runner sets it).
    let out = t.args(&[]).run();
    out.success();
    assert!(
        out.all().contains("os=Linux ci=[unset] ga=[unset]"),
        "{}",
        out.all()
    );
}

#[test]
fn an_event_payload_is_data_never_code() {
    let t = repo(
        r#"
        on: [push, pull_request]
        jobs:
          echo:
            runs-on: ubuntu-latest
            steps:
              - run: |
                  echo "msg=${{ github.event.head_commit.message }}"
                  echo "head=${{ github.head_ref }} base=${{ github.base_ref }} ref=${{ github.ref }} actor=${{ github.actor }}"
                  echo "title=${{ github.event.pull_request.title }}"
        "#,
    );
    let evil = r#"$(touch pwned-subst) `touch pwned-tick` "; touch pwned-quote; echo ""#;
    let payload = serde_json::json!({
        "number": 7,
        "head_commit": { "message": evil },
        "pull_request": { "number": 7, "title": evil, "head": { "ref": "feature/x", "sha": "abc" }, "base": { "ref": "main" } },
        "sender": { "login": "mallory" },
        "repository": { "full_name": "other/proj" }
    });
    t.write("event.json", &payload.to_string());
    let out = trun(
        &t,
        &[
            "-W",
            "ci",
            "--event",
            "pull_request",
            "--event-path",
            "event.json",
        ],
    )
    .run();
    out.success();
    let all = out.all();
    assert!(all.contains(&format!("msg={evil}")), "{all}");
    assert!(all.contains(&format!("title={evil}")), "{all}");
    assert!(
        all.contains("head=feature/x base=main ref=refs/pull/7/merge actor=mallory"),
        "{all}"
    );
    for f in ["pwned-subst", "pwned-tick", "pwned-quote"] {
        assert!(!t.exists(f), "{f} was created: the payload ran as code");
    }
    // An unknown event name is refused with a suggestion.
    trun(&t, &["-W", "ci", "--event", "pull_reqest", "plan"])
        .run()
        .status(2)
        .stderr_has("unknown event `pull_reqest` (did you mean `pull_request`?)");
}

#[test]
fn a_large_event_payload_is_held_once_however_many_jobs_read_it() {
    // Near the 8 MiB cap and made of many small objects, the costliest kind to
    // copy: once per job and step, 40 jobs took seconds and hundreds of MiB.
    let items: Vec<serde_json::Value> = (0..150_000)
        .map(|i| serde_json::json!({ "k": format!("v{i}"), "n": i, "s": "x".repeat(20) }))
        .collect();
    let payload = serde_json::json!({ "items": items }).to_string();
    assert!(payload.len() > 7 << 20, "{} bytes", payload.len());
    let mut workflow = String::from("on: push\njobs:\n");
    let mut all = Vec::new();
    for i in 0..40 {
        workflow.push_str(&format!(
            "  j{i}:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"item ${{{{ github.event.items[3].k }}}} in ${{{{ github.job }}}}\"\n      - run: 'true'\n"
        ));
        all.push(format!("j{i}"));
    }
    // Last, trun's peak memory, read by a step from its parent's status.
    workflow.push_str(&format!(
        "  report:\n    runs-on: ubuntu-latest\n    needs: [{}]\n    steps:\n      - run: grep VmHWM /proc/$PPID/status > hwm.txt\n",
        all.join(", ")
    ));
    let t = repo(&workflow);
    t.write("big.json", &payload);
    let out = trun(&t, &["-W", "ci", "--event-path", "big.json", "-j", "4"]).run();
    out.success();
    for job in ["j0", "j17", "j39"] {
        assert!(
            out.all().contains(&format!("item v3 in {job}")),
            "{}",
            out.all()
        );
    }
    let status = t.read("hwm.txt");
    let kib: u64 = status
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status:?}"));
    // The payload parsed once costs about 100 MiB; a copy per running job (four
    // at a time here) would more than double that.
    assert!(
        kib < 200 << 10,
        "trun peaked at {} MiB for one {} MiB payload",
        kib >> 10,
        payload.len() >> 20
    );
}

#[test]
fn a_bad_event_payload_is_refused_before_anything_runs() {
    let t = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [ { run: touch ran } ]\n",
    );
    // Huge: over the 8 MiB limit, refused from its size.
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(9 * 1024 * 1024));
    t.write("big.json", &big);
    trun(&t, &["-W", "ci", "--event-path", "big.json"])
        .run()
        .status(2)
        .stderr_has("is larger than 8 MiB");
    t.write("list.json", "[1, 2]");
    trun(&t, &["-W", "ci", "--event-path", "list.json"])
        .run()
        .status(2)
        .stderr_has("must be a JSON object");
    t.write("broken.json", "{\"a\": ");
    trun(&t, &["-W", "ci", "--event-path", "broken.json"])
        .run()
        .status(2)
        .stderr_has("is not valid JSON");
    // Deep nesting is an error, not a stack overflow.
    t.write(
        "deep.json",
        &format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
    );
    trun(&t, &["-W", "ci", "--event-path", "deep.json"])
        .run()
        .status(2)
        .stderr_has("is not valid JSON");
    // A FIFO would block a reader forever: refused without waiting for a writer.
    let fifo = t.join("fifo.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    trun(&t, &["-W", "ci", "--event-path", "fifo.json"])
        .run()
        .status(2)
        .stderr_has("is not a regular file");
    assert!(!t.exists("ran"), "a step ran despite a bad payload");
}

#[test]
fn the_default_shell_is_bash_as_on_github_whatever_shell_the_user_has() {
    let t = repo(
        r#"
        on: push
        jobs:
          sh:
            runs-on: ubuntu-latest
            steps:
              - run: |
                  echo "bash=${BASH_VERSION:+yes}"
                  case $- in *e*) echo errexit on;; esac
                  set -o | grep pipefail
              - shell: python
                run: |
                  import sys
                  print("python", sys.version_info[0])
        "#,
    );
    let out = trun(&t, &["-W", "ci"]).env("SHELL", "/usr/bin/false").run();
    out.success();
    let all = out.all();
    assert!(all.contains("bash=yes"), "{all}");
    assert!(all.contains("errexit on"), "{all}");
    assert!(
        all.contains("pipefail       \ton") || all.contains("pipefail\ton"),
        "{all}"
    );
    assert!(all.contains("python 3"), "{all}");
}

#[test]
fn windows_shells_are_refused_before_anything_runs() {
    let t = repo(
        "on: push\njobs:\n  a:\n    runs-on: windows-latest\n    steps:\n      - run: touch ran\n      - run: dir\n        shell: cmd\n",
    );
    trun(&t, &["-W", "ci"])
        .run()
        .status(2)
        .stderr_has(".github/workflows/ci.yml:8:16: error: `shell: cmd` is Windows-only");
    assert!(!t.exists("ran"));
    if !on_path("pwsh") {
        t.write(
            ".github/workflows/ci.yml",
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: Write-Host hi\n        shell: pwsh\n",
        );
        trun(&t, &["-W", "ci"])
            .run()
            .status(2)
            .stderr_has("`shell: pwsh` needs PowerShell (`pwsh`), which is not on PATH");
    }
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| Path::new(&d).join(name).is_file()))
}

#[test]
fn config_file_errors_name_the_line() {
    let t = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [ { run: \"true\" } ]\n",
    )
    .file(".trunrc", "-P ubuntu-latest=img\n--plaform x=y\n");
    trun(&t, &["-W", "ci", "plan"])
        .run()
        .status(2)
        .stderr_has(".trunrc:2: unknown option `--plaform` (did you mean `--platform`?)");
}

#[test]
fn a_platform_mapping_shows_in_the_plan_and_the_command_line_wins() {
    let t = repo("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [ { run: \"true\" } ]\n  b:\n    runs-on: ubuntu-latest\n    container: alpine:3\n    steps: [ { run: \"true\" } ]\n")
        .file(".trunrc", "-P ubuntu-latest=from-rc:1\n");
    trun(&t, &["-W", "ci", "plan"])
        .run()
        .success()
        .stdout_has("runs-on ubuntu-latest: in container from-rc:1 (-P ubuntu-latest=from-rc:1)")
        .stdout_has("runs-on ubuntu-latest: on this host, steps in the job's container");
    trun(&t, &["-W", "ci", "-P", "ubuntu-latest=from-cli:2", "plan"])
        .run()
        .success()
        .stdout_has("runs-on ubuntu-latest: in container from-cli:2 (-P ubuntu-latest=from-cli:2)");
}

/// `-P LABEL=IMAGE` runs the job in that image, through the job-container path, with
/// the workspace mounted and the GitHub variables set.
#[test]
fn docker_platform_image_runs_the_job_in_a_container() {
    let base = support::docker_env::ensure_busybox_image();
    let image = "trun-test/ghfile-busybox:latest";
    let tag = std::process::Command::new("docker")
        .args(["tag", &base, image])
        .status()
        .expect("docker tag");
    assert!(tag.success(), "docker tag {base} {image} failed");
    let t = repo(
        r#"
        on: push
        jobs:
          inside:
            runs-on: ubuntu-latest
            steps:
              - run: |
                  test -f /.dockerenv && echo "in a container"
                  echo "ev=$GITHUB_EVENT_NAME os=${{ runner.os }}"
                  echo made-inside > made.txt
        "#,
    );
    let out = trun(&t, &["-W", "ci", "-P", &format!("ubuntu-latest={image}")]).run();
    out.success();
    let all = out.all();
    assert!(all.contains("in a container"), "{all}");
    assert!(all.contains("ev=push os=Linux"), "{all}");
    assert_eq!(t.read("made.txt").trim(), "made-inside");
    // No container of this workspace is left behind (trun labels each with a digest
    // of the workspace path).
    let ws = {
        use sha2::Digest;
        let root = t.path().canonicalize().expect("canonical workspace");
        let h = sha2::Sha256::digest(root.to_string_lossy().as_bytes());
        h[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let ps = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label=trun.workspace={ws}"),
            "-q",
        ])
        .output()
        .expect("docker ps");
    let left = String::from_utf8_lossy(&ps.stdout).trim().to_string();
    assert!(left.is_empty(), "containers left behind: {left}");
}

/// A fresh copy of `examples/github/NAME` in a temporary workspace.
fn github_example(name: &str) -> Test {
    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name();
            if [".trun", "target", "Cargo.lock"].iter().any(|n| name == *n) {
                continue;
            }
            let target = to.join(&name);
            if entry.file_type().expect("file type").is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy");
            }
        }
    }
    let t = Test::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/github");
    copy_tree(&dir.join(name), t.path());
    std::fs::create_dir_all(t.join("xdg")).unwrap();
    t
}

#[test]
fn example_rust_ci_runs_its_matrix_offline() {
    let t = github_example("rust-ci");
    t.args(&["-W", "ci", "plan"])
        .env("XDG_CONFIG_HOME", &t.join("xdg").display().to_string())
        .run()
        .success()
        .stdout_has("runs-on ubuntu-latest: on this host")
        .stdout_has("test (ubuntu-latest, dev, strict)")
        .stdout_has("test (ubuntu-latest, release)");
    let out = trun(&t, &["-W", "ci", "-j", "2"]).run();
    out.success();
    let all = out.all();
    for want in [
        "testing tinyparse (MSRV 1.70) on Linux, leg 0 of 2",
        "testing tinyparse (MSRV 1.70) on Linux, leg 1 of 2",
        "test result: ok. 2 passed",
        ">= MSRV 1.70",
        "5 jobs succeeded",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
    // The `strict` feature is what the dispatch input adds to every leg.
    let out = trun(&t, &["-W", "ci", "-i", "features=strict", "test"]).run();
    out.success();
    assert!(
        out.all().contains("test result: ok. 2 passed"),
        "{}",
        out.all()
    );
}

#[test]
fn example_reusable_passes_inputs_outputs_and_secrets_through_nested_calls() {
    let t = github_example("reusable");
    let list = t.run(&["-W", "release", "list"]);
    list.success()
        .stdout_has("build  (needs: version)  (uses: ./.github/workflows/build.yml)\n  build/compile\n  build/package\n")
        .stdout_has("  deploy/notify/send\n  deploy/notify\n");
    let secret = "s3cr3t-deploy-value";
    let out = trun(
        &t,
        &[
            "-W",
            "release",
            "--secret",
            &format!("DEPLOY_KEY={secret}"),
            "-j",
            "2",
        ],
    )
    .run();
    out.success();
    let all = out.all();
    for want in [
        "uploading with token ***",
        format!(
            "notify: deployed to production (token length {})",
            secret.len()
        )
        .as_str(),
        "released 1.4.0: dist/app-linux-",
        "deployed to https://production.example/app",
        "12 jobs succeeded",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
    assert!(!all.contains(secret), "the secret leaked:\n{all}");
    assert!(t.exists("dist/app-linux-x64.tar") && t.exists("dist/app-linux-arm64.tar"));
    // The beta channel goes to staging: `with:` is evaluated with the caller's inputs.
    let out = trun(
        &t,
        &[
            "-W",
            "release",
            "--secret",
            "DEPLOY_KEY=x",
            "-i",
            "channel=beta",
            "deploy",
        ],
    )
    .run();
    out.success();
    assert!(out.all().contains("deployed to staging"), "{}", out.all());
    // Without the secret the called workflow's required `token` arrives empty.
    let out = trun(&t, &["-W", "release", "deploy"]).run();
    out.status(1);
    assert!(out.all().contains("no deployment token"), "{}", out.all());
}

/// A repository with a caller (`ci.yml`) and the files named in `files`.
fn calls(caller: &str, files: &[(&str, &str)]) -> Test {
    let mut t = Test::new().file(".github/workflows/ci.yml", caller);
    for (name, text) in files {
        t = t.file(&format!(".github/workflows/{name}"), text);
    }
    t
}

#[test]
fn remote_reusable_workflows_are_listed_in_one_error() {
    let t = calls(
        "on: push\njobs:\n  a:\n    uses: octo/one/.github/workflows/x.yml@v1\n  b:\n    uses: octo/two/.github/workflows/y.yml@main\n  c:\n    runs-on: ubuntu-latest\n    steps: [ { run: touch ran } ]\n",
        &[],
    );
    t.run(&["-W", "ci"])
        .status(2)
        .stderr_has(".github/workflows/ci.yml:4:11: error: 2 reusable workflows from another repository cannot run offline: `octo/one/.github/workflows/x.yml@v1` (job `a`, line 4), `octo/two/.github/workflows/y.yml@main` (job `b`, line 6)");
    assert!(!t.exists("ran"));
}

#[test]
fn reusable_workflow_mistakes_point_at_the_caller() {
    let called = "on:\n  workflow_call:\n    inputs:\n      target: { type: string, required: true }\n    secrets:\n      token: { required: true }\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: [ { run: \"true\" } ]\n";
    let t = calls(
        "on: push\njobs:\n  a:\n    uses: ./.github/workflows/b.yml\n    with: { targte: linux }\n",
        &[("b.yml", called)],
    );
    t.run(&["-W", "ci", "validate"])
        .status(2)
        .stderr_has("ci.yml:5:13: error: ./.github/workflows/b.yml has no input `targte`")
        .stderr_has("did you mean `target`?")
        .stderr_has("job `a` does not give the required input `target`")
        .stderr_has("job `a` does not pass the required secret `token`");
    // Not a reusable workflow; a path out of the workflows directory; a missing file.
    for (uses, msg) in [
        (
            "./.github/workflows/plain.yml",
            "is not a reusable workflow: its `on` has no `workflow_call`",
        ),
        (
            "./.github/workflows/../../etc/x.yml",
            "leaves the repository",
        ),
        (
            "./scripts/b.yml",
            "a reusable workflow lives in .github/workflows/",
        ),
        ("./.github/workflows/nope.yml", "does not exist"),
    ] {
        t.write(
            ".github/workflows/ci.yml",
            &format!("on: push\njobs:\n  a:\n    uses: {uses}\n"),
        );
        t.write(
            ".github/workflows/plain.yml",
            "on: push\njobs:\n  x:\n    steps: [ { run: \"true\" } ]\n",
        );
        t.run(&["-W", "ci", "validate"]).status(2).stderr_has(msg);
    }
    // An error inside the called file points into that file.
    t.write(
        ".github/workflows/ci.yml",
        "on: push\njobs:\n  a:\n    uses: ./.github/workflows/c.yml\n",
    );
    t.write(
        ".github/workflows/c.yml",
        "on: workflow_call\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: [ { run: \"echo ${{ inputs.nope }}\" } ]\n",
    );
    t.run(&["-W", "ci", "validate"])
        .status(2)
        .stderr_has(".github/workflows/c.yml:5:38: error: unknown input `nope`");
}

#[test]
fn reusable_workflow_cycles_and_depth_are_refused() {
    let call = |next: &str| {
        format!("on: workflow_call\njobs:\n  n:\n    uses: ./.github/workflows/{next}\n")
    };
    let t = calls(
        "on: push\njobs:\n  a:\n    uses: ./.github/workflows/b.yml\n",
        &[("b.yml", &call("c.yml")), ("c.yml", &call("b.yml"))],
    );
    t.run(&["-W", "ci", "validate"]).status(2).stderr_has(
        "reusable workflows call each other in a cycle: ci.yml -> b.yml -> c.yml -> b.yml",
    );
    let leaf = "on: workflow_call\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: [ { run: echo deepest } ]\n";
    // ci -> b -> c -> d: four levels, as GitHub allows.
    let t = calls(
        "on: push\njobs:\n  a:\n    uses: ./.github/workflows/b.yml\n",
        &[
            ("b.yml", &call("c.yml")),
            ("c.yml", &call("d.yml")),
            ("d.yml", leaf),
        ],
    );
    let out = t.run(&["-W", "ci"]);
    out.success();
    assert!(out.all().contains("[a/n/n/x] deepest"), "{}", out.all());
    // One more is refused.
    t.write(".github/workflows/d.yml", &call("e.yml"));
    t.write(".github/workflows/e.yml", leaf);
    t.run(&["-W", "ci", "validate"])
        .status(2)
        .stderr_has("reusable workflows are nested more than 4 levels deep");
}

#[test]
fn the_event_file_is_never_written_through_a_planted_link() {
    let t = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: grep -c '\"after\"' \"$GITHUB_EVENT_PATH\" && test ! -L \"$GITHUB_EVENT_PATH\" && echo fresh file\n",
    );
    t.write("victim.txt", "keep me\n");
    // The next run is run 1: plant its event file as a link to the victim.
    std::fs::create_dir_all(t.join(".trun/tmp/1")).unwrap();
    std::os::unix::fs::symlink(t.join("victim.txt"), t.join(".trun/tmp/1/event.json")).unwrap();
    let out = trun(&t, &["-W", "ci"]).run();
    out.success();
    assert!(out.all().contains("fresh file"), "{}", out.all());
    assert_eq!(t.read("victim.txt"), "keep me\n");
}

#[test]
fn without_a_trun_yaml_the_error_points_at_the_github_workflows() {
    let t = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [ { run: \"true\" } ]\n",
    );
    t.run(&[])
        .status(2)
        .stderr_has("no trun.yaml found")
        .stderr_has("this repository has GitHub Actions workflows: `trun -W` lists them, `trun -W NAME` runs one");
}

#[test]
fn variables_are_data_and_their_files_are_bounded() {
    let t = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"v=${{ vars.EVIL }}\"\n",
    );
    let evil = "$(touch pwned) `touch pwned2` \"; touch pwned3; \"";
    t.write("vars.env", &format!("EVIL='{evil}'\n"));
    let out = trun(&t, &["-W", "ci", "--var-file", "vars.env"]).run();
    out.success();
    assert!(out.all().contains(&format!("v={evil}")), "{}", out.all());
    for f in ["pwned", "pwned2", "pwned3"] {
        assert!(!t.exists(f), "{f}: a variable ran as code");
    }
    t.write("big.env", &format!("A={}\n", "x".repeat(2 * 1024 * 1024)));
    trun(&t, &["-W", "ci", "--var-file", "big.env", "plan"])
        .run()
        .status(2)
        .stderr_has("variables file big.env is larger than 1 MiB");
    trun(&t, &["-W", "ci", "--var-file", "missing.env", "plan"])
        .run()
        .status(2)
        .stderr_has("variables file missing.env does not exist");
    t.write("bad.env", "OK=1\n1BAD=2\n");
    trun(&t, &["-W", "ci", "--var-file", "bad.env", "plan"])
        .run()
        .status(2)
        .stderr_has("bad.env:2: invalid name `1BAD`");
    trun(&t, &["-W", "ci", "--var", "no-equals", "plan"])
        .run()
        .status(2)
        .stderr_has("is not NAME=VALUE");
}

#[test]
fn up_to_date_steps_stay_skipped_although_the_run_id_changes() {
    let t = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: cp in.txt out.txt && echo \"copied in run $GITHUB_RUN_ID\"\n        sources: [in.txt]\n        generates: [out.txt]\n",
    )
    .file("in.txt", "hi\n");
    let first = trun(&t, &["-W", "ci"]).run();
    first.success();
    assert!(first.all().contains("copied in run 1"), "{}", first.all());
    let second = trun(&t, &["-W", "ci"]).run();
    second.success();
    assert!(second.all().contains("up to date"), "{}", second.all());
    assert!(
        !second.all().contains("copied in run 2"),
        "{}",
        second.all()
    );
}

#[test]
fn a_caller_fails_when_a_job_of_the_called_workflow_fails() {
    // As on GitHub: the calling job's result is `failure`, and what needs it is skipped.
    let t = calls(
        "on: push\njobs:\n  build:\n    uses: ./.github/workflows/b.yml\n  after:\n    needs: build\n    runs-on: ubuntu-latest\n    steps: [ { run: echo after } ]\n",
        &[(
            "b.yml",
            "on: workflow_call\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: [ { run: exit 3 } ]\n",
        )],
    );
    t.run(&["-W", "ci", "--progress", "plain"]).status(1);
    let show = t.show_json("last");
    let status = |key: &str| {
        show["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["key"] == key)
            .unwrap_or_else(|| panic!("no job {key}: {show}"))["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status("build/x"), "failure");
    assert_eq!(status("build"), "failure");
    assert_eq!(status("after"), "skipped");
}
