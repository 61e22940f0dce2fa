//! Containers through the real `trun` binary against the real Docker daemon: job
//! containers, the docker built-ins chained by their outputs, skips, timeouts,
//! an unreachable daemon, Ctrl-C and `trun gc` after a SIGKILL.
//!
//! Each test works in a fresh temp directory (its own workspace, so its own
//! `trun.workspace` label) and ends by asserting through the daemon that no
//! container or network labelled with any of its runs remains. Needs a running
//! Docker daemon, Debian's busybox-static and docker-registry (see
//! tests/support/docker_env.rs); without a daemon these tests fail, loudly.

mod common;
mod support;

use common::{Output, Test};
use nix::sys::signal::Signal;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::docker_env::{ensure_busybox_image, LocalRegistry, BUSYBOX_IMAGE};

/// An image whose default command idles, for `services:` (the busybox test
/// image has no CMD). Built by [`ensure_sidecar_image`].
const SIDECAR_IMAGE: &str = "trun-test/cli-sidecar:latest";

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker {}`: {e}", args.join(" ")))
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn image_id(image: &str) -> String {
    docker_ok(&["image", "inspect", "--format", "{{.Id}}", image])
}

fn ensure_sidecar_image() {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    ensure_busybox_image();
    if docker(&["image", "inspect", SIDECAR_IMAGE])
        .status
        .success()
    {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {BUSYBOX_IMAGE}\nCMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 1; done\"]\n"
        ),
    )
    .expect("write Dockerfile");
    docker_ok(&[
        "build",
        "-q",
        "-t",
        SIDECAR_IMAGE,
        &dir.path().to_string_lossy(),
    ]);
}

/// A workspace (the shared [`Test`] harness) plus what it takes to find
/// everything trun created for it in the daemon.
struct Project {
    t: Test,
    /// The value of the `trun.workspace` label trun puts on what it creates here.
    workspace: String,
}

impl Project {
    fn new(workflow: &str) -> Project {
        ensure_busybox_image();
        let t = Test::new().workflow(workflow);
        let root = t.path().canonicalize().expect("canonical workspace");
        let workspace = hex::encode(&Sha256::digest(root.to_string_lossy().as_bytes())[..8]);
        Project { t, workspace }
    }

    /// `trun ARGS` with `DOCKER_HOST` pointing at a socket that does not exist.
    fn run_without_daemon(&self, args: &[&str]) -> Output {
        self.t
            .args(args)
            .env("DOCKER_HOST", "unix:///nonexistent.sock")
            .run()
    }

    fn history(&self) -> Vec<Value> {
        let out = self.t.run(&["history", "--json"]);
        out.success().json().as_array().cloned().unwrap_or_default()
    }

    /// The ids of every run recorded in this workspace.
    fn run_ids(&self) -> Vec<i64> {
        self.history()
            .iter()
            .filter_map(|r| r["id"].as_i64())
            .collect()
    }

    /// Containers and networks labelled with this workspace and `trun.run=<run>`.
    fn labelled(&self, run: i64) -> (Vec<String>, Vec<String>) {
        let run = format!("label=trun.run={run}");
        let ws = format!("label=trun.workspace={}", self.workspace);
        let lines = |s: String| -> Vec<String> { s.lines().map(str::to_string).collect() };
        let containers = lines(docker_ok(&[
            "ps",
            "-a",
            "--filter",
            &run,
            "--filter",
            &ws,
            "--format",
            "{{.ID}} {{.Names}} {{.Status}}",
        ]));
        let networks = lines(docker_ok(&[
            "network",
            "ls",
            "--filter",
            &run,
            "--filter",
            &ws,
            "--format",
            "{{.ID}} {{.Name}}",
        ]));
        (containers, networks)
    }

    /// Asserts that no container or network of any run of this workspace remains.
    #[track_caller]
    fn assert_clean(&self) {
        let runs = self.run_ids();
        assert!(
            !runs.is_empty(),
            "no runs recorded in {}",
            self.t.path().display()
        );
        for run in runs {
            let (containers, networks) = self.labelled(run);
            assert!(
                containers.is_empty() && networks.is_empty(),
                "run {run} left containers {containers:?} and networks {networks:?}"
            );
        }
    }

    /// Polls until a running container of this workspace carries `label`.
    fn wait_for_container(&self, label: &str) {
        let ws = format!("label=trun.workspace={}", self.workspace);
        let label = format!("label={label}");
        common::wait_for(
            &format!("a running container with {label} and {ws}"),
            Duration::from_secs(90),
            || !docker_ok(&["ps", "-q", "--filter", &ws, "--filter", &label]).is_empty(),
        );
    }
}

impl Drop for Project {
    /// A failed test must not leak containers into the next one: remove
    /// everything labelled with this workspace.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let ws = format!("label=trun.workspace={}", self.workspace);
        let containers = docker(&["ps", "-aq", "--filter", &ws]);
        for id in String::from_utf8_lossy(&containers.stdout).split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
        }
        let networks = docker(&["network", "ls", "-q", "--filter", &ws]);
        for id in String::from_utf8_lossy(&networks.stdout).split_whitespace() {
            let _ = docker(&["network", "rm", id]);
        }
    }
}

/// The step `id` of job `job` in a `trun show --json` document.
fn step<'a>(show: &'a Value, job: &str, id: &str) -> &'a Value {
    show["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["key"] == job))
        .and_then(|j| j["steps"].as_array())
        .and_then(|steps| steps.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {job}.{id} in\n{show:#}"))
}

/// Removes an image reference this test created, whatever happens to the test.
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
    }
}

#[test]
fn container_job_writes_into_the_workspace_and_feeds_a_later_local_job() {
    let p = Project::new(&format!(
        r#"
        jobs:
          boxed:
            container: {BUSYBOX_IMAGE}
            outputs:
              greeting: ${{{{ steps.write.outputs.greeting }}}}
              alias: ${{{{ steps.write.outputs.alias }}}}
            steps:
              - id: write
                run: |
                  echo "made in $(hostname)" > made.txt
                  pwd > where.txt
                  hostname > host.txt
                  echo "greeting=hello from the box" >> "$TRUN_OUTPUT"
                  echo "alias=github-style" >> "$GITHUB_OUTPUT"
                  echo "CARRIED=over" >> "$GITHUB_ENV"
              - id: same
                run: |
                  test "$(hostname)" = "$(cat host.txt)"
                  echo "carried=$CARRIED"
          after:
            needs: boxed
            steps:
              - id: read
                run: |
                  cat made.txt
                  echo "got ${{{{ needs.boxed.outputs.greeting }}}} / ${{{{ needs.boxed.outputs.alias }}}}"
        "#
    ));
    p.t.run(&[])
        .success()
        .stderr_has("carried=over")
        .stderr_has("got hello from the box / github-style");
    // The workspace is bind-mounted at the same path, not copied.
    let root = p.t.path().canonicalize().unwrap();
    assert_eq!(p.t.read("where.txt").trim(), root.to_string_lossy());
    assert_eq!(
        p.t.read("made.txt").trim(),
        format!("made in {}", p.t.read("host.txt").trim())
    );
    let show = p.t.show_json("");
    assert_eq!(
        step(&show, "boxed", "write")["outputs"]["greeting"],
        "hello from the box"
    );
    assert_eq!(step(&show, "after", "read")["status"], "success");
    p.assert_clean();
}

#[test]
fn long_form_container_applies_env_user_and_network() {
    let p = Project::new(&format!(
        r#"
        jobs:
          limited:
            container:
              image: {BUSYBOX_IMAGE}
              env: {{ GREETING: hi-there }}
              network: none
              memory: 64m
              pids: 64
              user: "65534"
            steps:
              - run: |
                  echo "greeting=$GREETING uid=$(id -u)"
                  echo "interfaces=$(ls /sys/class/net | tr '\n' ' ')"
        "#
    ));
    p.t.run(&[])
        .success()
        .stderr_has("greeting=hi-there uid=65534")
        .stderr_has("interfaces=lo ");
    p.assert_clean();
}

#[test]
fn every_matrix_leg_gets_its_own_container() {
    let p = Project::new(&format!(
        r#"
        jobs:
          leg:
            container: {BUSYBOX_IMAGE}
            strategy:
              matrix:
                n: [1, 2]
            steps:
              - run: hostname > "host-${{{{ matrix.n }}}}.txt"
        "#
    ));
    p.t.run(&[]).success();
    assert_ne!(
        p.t.read("host-1.txt"),
        p.t.read("host-2.txt"),
        "both legs ran in one container"
    );
    p.assert_clean();
}

#[test]
fn build_run_exec_chain_passes_ids_between_steps() {
    let tag = "trun-test/cli-chain:latest";
    let _rmi = RemoveImage(tag.into());
    let p = Project::new(&format!(
        r#"
        jobs:
          chain:
            steps:
              - id: build
                uses: docker/build
                with: {{ context: app, tag: "{tag}" }}
              - id: run
                uses: docker/run
                with:
                  image-id: ${{{{ steps.build.outputs.image-id }}}}
                  command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
              - id: exec
                uses: docker/exec
                with:
                  container-id: ${{{{ steps.run.outputs.container-id }}}}
                  expect-image-id: ${{{{ steps.build.outputs.image-id }}}}
                  commands:
                    - greet: /hello.sh
                    - where: pwd
              - id: report
                run: |
                  echo "image=${{{{ steps.build.outputs.image-id }}}}"
                  echo "container=${{{{ steps.run.outputs.container-id }}}}"
                  echo "exit-codes=${{{{ steps.exec.outputs.greet }}}},${{{{ steps.exec.outputs.where }}}}"
        "#
    ));
    p.t.write(
        "app/Dockerfile",
        &format!("FROM {BUSYBOX_IMAGE}\nCOPY hello.sh /hello.sh\nWORKDIR /srv\n"),
    );
    p.t.write("app/hello.sh", "#!/bin/sh\necho hello from the image\n");
    std::fs::set_permissions(
        p.t.join("app/hello.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = p.t.run(&[]);
    out.success()
        .stderr_has("==> greet")
        .stderr_has("hello from the image")
        .stderr_has("/srv")
        .stderr_has("exit-codes=0,0")
        .stderr_has(&format!("image={}", image_id(tag)));
    let show = p.t.show_json("");
    let container = step(&show, "chain", "run")["outputs"]["container-id"]
        .as_str()
        .expect("container-id output")
        .to_string();
    assert_eq!(container.len(), 64, "not a container id: {container}");
    out.stderr_has(&format!("container={container}"));
    assert_eq!(step(&show, "chain", "exec")["outputs"]["greet"], "0");
    // The detached container was removed with the run.
    assert!(
        !docker(&["container", "inspect", &container])
            .status
            .success(),
        "container {container} outlived its run"
    );
    p.assert_clean();
}

#[test]
fn exec_refuses_a_container_of_another_image() {
    let p = Project::new(&format!(
        r#"
        jobs:
          guarded:
            steps:
              - id: run
                uses: docker/run
                with:
                  image: {BUSYBOX_IMAGE}
                  command: sleep 300
                  params: ["-v ${{{{ trun.workspace }}}}:/ws"]
              - id: exec
                uses: docker/exec
                with:
                  container-id: ${{{{ steps.run.outputs.container-id }}}}
                  expect-image-id: sha256:1111111111111111111111111111111111111111111111111111111111111111
                  commands:
                    - touch: touch /ws/ran
              - run: echo "after the" "refusal"
        "#
    ));
    p.t.run(&[])
        .status(1)
        .stderr_has("refusing to run in container")
        .stderr_has(&image_id(BUSYBOX_IMAGE))
        .stderr_has("sha256:1111111111111111111111111111111111111111111111111111111111111111")
        .stderr_lacks("after the refusal");
    assert!(!p.t.exists("ran"), "the command ran anyway");
    assert_eq!(
        step(&p.t.show_json(""), "guarded", "exec")["status"],
        "failure"
    );
    p.assert_clean();
}

#[test]
fn kept_containers_survive_the_run_and_gc_all_removes_them() {
    let p = Project::new(&format!(
        r#"
        jobs:
          start:
            steps:
              - uses: docker/run
                with: {{ image: {BUSYBOX_IMAGE}, command: sleep 300, keep: true }}
        "#
    ));
    p.t.run(&[]).success();
    let run = p.run_ids()[0];
    assert_eq!(p.labelled(run).0.len(), 1, "the kept container is gone");
    p.t.run(&["gc"]).success().stdout_has("kept 1");
    assert_eq!(
        p.labelled(run).0.len(),
        1,
        "plain gc removed a kept container"
    );
    p.t.run(&["gc", "--all"])
        .success()
        .stdout_has("removed 1 container");
    p.assert_clean();
}

#[test]
fn pull_from_a_local_registry_is_skipped_within_min_interval() {
    ensure_busybox_image();
    let registry = LocalRegistry::start();
    let reference = registry.push(
        BUSYBOX_IMAGE,
        &format!("trun-cli/pull-{}:v1", std::process::id()),
    );
    let _rmi = RemoveImage(reference.clone());
    let expected = image_id(BUSYBOX_IMAGE);
    let p = Project::new(&format!(
        r#"
        jobs:
          fetch:
            steps:
              - id: pull
                uses: docker/pull
                with: {{ image: "{reference}", image-id: "{expected}", min-interval: 6h }}
              - id: use
                run: echo "pulled id=${{{{ steps.pull.outputs.image-id }}}}"
        "#
    ));
    assert!(
        !docker(&["image", "inspect", &reference]).status.success(),
        "{reference} must not be present before the pull"
    );
    p.t.run(&[])
        .success()
        .stderr_has(&format!("pulled id={expected}"));
    assert_eq!(
        step(&p.t.show_json(""), "fetch", "pull")["status"],
        "success"
    );
    assert_eq!(image_id(&reference), expected);

    p.t.run(&[])
        .success()
        .stderr_has("↷ pull: pulled ")
        .stderr_has(&format!("pulled id={expected}"));
    let show = p.t.show_json("");
    let pull = step(&show, "fetch", "pull");
    assert_eq!(pull["status"], "skipped");
    assert!(
        pull["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("pulled ") && r.ends_with(" ago")),
        "skip reason: {}",
        pull["reason"]
    );

    // A different expected id fails, naming both.
    p.t.write(
        "wrong.yaml",
        &format!(
            "jobs:\n  fetch:\n    steps:\n      - uses: docker/pull\n        with: {{ image: \"{reference}\", image-id: \"sha256:2222222222222222\" }}\n"
        ),
    );
    p.t.run(&["-f", "wrong.yaml"])
        .status(1)
        .stderr_has(&expected)
        .stderr_has("sha256:2222222222222222");
    p.assert_clean();
}

#[test]
fn rebuild_is_skipped_until_a_watched_file_changes() {
    let tag = "trun-test/cli-rebuild:latest";
    let _rmi = RemoveImage(tag.into());
    let p = Project::new(&format!(
        r#"
        jobs:
          image:
            steps:
              - id: build
                uses: docker/build
                with:
                  context: app
                  tag: "{tag}"
                  watch: [app/Dockerfile, "app/src/**"]
              - id: check
                uses: docker/run
                with:
                  image-id: ${{{{ steps.build.outputs.image-id }}}}
                  command: cat /message.txt
                  wait: true
        "#
    ));
    p.t.write(
        "app/Dockerfile",
        &format!("FROM {BUSYBOX_IMAGE}\nCOPY src/message.txt /message.txt\n"),
    );
    p.t.write("app/src/message.txt", "first message\n");
    p.t.write("app/NOTES.txt", "not watched\n");
    let status = || {
        step(&p.t.show_json(""), "image", "build")["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    p.t.run(&[]).success().stderr_has("first message");
    assert_eq!(status(), "success");
    let first_id = image_id(tag);

    p.t.run(&[])
        .success()
        .stderr_has("image up to date")
        .stderr_has("first message");
    assert_eq!(status(), "skipped", "unchanged watched files must skip");

    // A file in the context that is not watched does not trigger a build.
    p.t.write("app/NOTES.txt", "still not watched\n");
    p.t.run(&[]).success().stderr_has("image up to date");
    assert_eq!(status(), "skipped");

    p.t.write("app/src/message.txt", "second message\n");
    p.t.run(&[])
        .success()
        .stderr_has("second message")
        .stderr_lacks("image up to date");
    assert_eq!(status(), "success", "a changed watched file must rebuild");
    assert_ne!(image_id(tag), first_id);

    // The recorded image is gone: build again although nothing changed.
    docker_ok(&["rmi", "-f", tag]);
    p.t.run(&[]).success().stderr_has("second message");
    assert_eq!(status(), "success", "a removed image must be rebuilt");
    p.assert_clean();
}

/// `trun plan` must say that a build with unchanged inputs and a pull within
/// its `min-interval` will be skipped, and why (issue 4: "the plan says
/// `skip: pulled 2h ago`").
#[test]
fn plan_says_which_docker_actions_will_be_skipped() {
    let tag = "trun-test/cli-plan:latest";
    let _rmi = RemoveImage(tag.into());
    ensure_busybox_image();
    let registry = LocalRegistry::start();
    let reference = registry.push(
        BUSYBOX_IMAGE,
        &format!("trun-cli/plan-{}:v1", std::process::id()),
    );
    let _rmr = RemoveImage(reference.clone());
    let p = Project::new(&format!(
        r#"
        jobs:
          prepare:
            steps:
              - id: pull
                uses: docker/pull
                with: {{ image: "{reference}", min-interval: 6h }}
              - id: build
                uses: docker/build
                with: {{ context: app, tag: "{tag}", watch: [app/Dockerfile] }}
        "#
    ));
    p.t.write("app/Dockerfile", &format!("FROM {BUSYBOX_IMAGE}\n"));
    p.t.run(&[]).success();
    let plan = p.t.run(&["plan"]);
    plan.success();
    let line = |id: &str| {
        plan.stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .unwrap_or_else(|| panic!("no plan line for step {id}:\n{}", plan.stdout))
            .to_string()
    };
    let pull = line("pull");
    assert!(
        pull.trim_start().starts_with("skip") && pull.contains("pulled") && pull.contains("ago"),
        "plan line for the pull: {pull:?}\n{}",
        plan.stdout
    );
    let build = line("build");
    assert!(
        build.trim_start().starts_with("skip") && build.contains("up to date"),
        "plan line for the build: {build:?}\n{}",
        plan.stdout
    );
    p.assert_clean();
}

#[test]
fn files_exist_names_every_missing_path() {
    let p = Project::new(
        r#"
        jobs:
          check:
            steps:
              - id: exist
                uses: files/exist
                with:
                  paths: [present.txt, missing-one.txt, sub/missing-two.txt, sub/here.txt]
              - run: echo "not" "reached"
        "#,
    );
    p.t.write("present.txt", "x");
    p.t.write("sub/here.txt", "x");
    // files/exist needs no Docker, so an unreachable daemon does not matter.
    p.run_without_daemon(&[])
        .status(1)
        .stderr_has("missing files: missing-one.txt, sub/missing-two.txt")
        .stderr_lacks("not reached");
    let show = p.t.show_json("");
    let reason = step(&show, "check", "exist")["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("missing-one.txt")
            && reason.contains("sub/missing-two.txt")
            && !reason.contains("present.txt")
            && !reason.contains("here.txt"),
        "reason: {reason}"
    );
}

#[test]
fn a_missing_image_is_named_with_a_suggestion() {
    let p = Project::new(
        r#"
        jobs:
          boxed:
            container: trun-test/cli-no-such-image:v0
            steps:
              - run: echo "inside" "the box"
        "#,
    );
    p.t.run(&[])
        .status(1)
        .stderr_has("trun-test/cli-no-such-image:v0")
        .stderr_has("docker/pull")
        .stderr_has("docker/build")
        .stderr_lacks("inside the box");
    p.assert_clean();
}

#[test]
fn a_failed_build_shows_the_tail_of_its_log() {
    let tag = "trun-test/cli-broken:latest";
    let _rmi = RemoveImage(tag.into());
    let p = Project::new(&format!(
        r#"
        jobs:
          image:
            steps:
              - id: build
                uses: docker/build
                with: {{ context: app, tag: "{tag}" }}
        "#
    ));
    p.t.write(
        "app/Dockerfile",
        &format!("FROM {BUSYBOX_IMAGE}\nRUN echo compiling-the-thing && exit 3\n"),
    );
    p.t.run(&[]).status(1);
    let show = p.t.show_json("");
    let reason = step(&show, "image", "build")["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("returned a non-zero code: 3") && reason.contains("compiling-the-thing"),
        "the failure must carry the end of the build log: {reason}"
    );
    p.assert_clean();
}

#[test]
fn step_timeout_inside_a_container_kills_the_step() {
    let p = Project::new(&format!(
        r#"
        jobs:
          slow:
            container: {BUSYBOX_IMAGE}
            steps:
              - id: sleepy
                run: echo before; sleep 67; echo after
                timeout-minutes: 0.05
              - id: never
                run: echo "the next" "step ran"
              - id: inspect
                if: always()
                run: |
                  if ps | grep -v grep | grep -q 'sleep 67'; then echo "LEFTOVER sleep"; exit 1; fi
                  echo "no leftover process"
        "#
    ));
    let start = Instant::now();
    let out = p.t.run(&[]);
    let elapsed = start.elapsed();
    out.status(1)
        .stderr_has("before")
        .stderr_has("timed out")
        .stderr_has("no leftover process")
        .stderr_lacks("the next step ran");
    assert!(
        !out.stderr
            .lines()
            .any(|l| l.trim_end().ends_with("] after")),
        "the step went on after its timeout:\n{}",
        out.stderr
    );
    assert!(
        elapsed < Duration::from_secs(40),
        "a 3 s timeout took {elapsed:?}"
    );
    let show = p.t.show_json("");
    assert_eq!(step(&show, "slow", "sleepy")["status"], "failure");
    assert_eq!(step(&show, "slow", "never")["status"], "skipped");
    p.assert_clean();
}

#[test]
fn unreachable_daemon_exits_2_with_one_line_before_anything_runs() {
    let p = Project::new(&format!(
        r#"
        jobs:
          local:
            steps:
              - run: touch local-ran
          boxed:
            needs: local
            container: {BUSYBOX_IMAGE}
            steps:
              - run: touch boxed-ran
        "#
    ));
    let out = p.run_without_daemon(&[]);
    out.status(2);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "stderr:\n{}", out.stderr);
    assert!(
        errors[0].contains("DOCKER_HOST") && errors[0].contains("/nonexistent.sock"),
        "the error must name DOCKER_HOST and the socket: {}",
        errors[0]
    );
    assert!(!p.t.exists("local-ran"), "a step ran");
    assert!(!p.t.exists("boxed-ran"), "a step ran");
    assert!(p.run_ids().is_empty(), "a run was recorded");
}

#[test]
fn an_unknown_container_key_is_named_with_a_suggestion() {
    let p = Project::new(&format!(
        r#"
        jobs:
          boxed:
            container:
              image: {BUSYBOX_IMAGE}
              optoins: --init
            steps:
              - run: "true"
        "#
    ));
    p.t.run(&["validate"])
        .status(2)
        .stderr_has("trun.yaml:5:")
        .stderr_has("optoins")
        .stderr_has("options");
}

/// A job with a container and a service (so a network), stuck in `sleep 300`.
fn stuck_project() -> Project {
    ensure_sidecar_image();
    Project::new(&format!(
        r#"
        jobs:
          stuck:
            container: {BUSYBOX_IMAGE}
            services:
              sidecar: {SIDECAR_IMAGE}
            steps:
              - run: |
                  ping -c 1 sidecar > /dev/null && echo "sidecar reachable"
                  echo "sleeping now"
                  sleep 300
        "#
    ))
}

#[test]
fn sigint_mid_run_stops_the_containers_and_exits_130() {
    let p = stuck_project();
    let running = p.t.args(&[]).spawn();
    p.wait_for_container("trun.job=stuck");
    common::wait_for("the step to start", Duration::from_secs(60), || {
        running.stderr_so_far().contains("sleeping now")
    });
    let run = p.run_ids()[0];
    let (containers, networks) = p.labelled(run);
    assert_eq!(
        containers.len(),
        2,
        "job container + service: {containers:?}"
    );
    assert_eq!(networks.len(), 1, "the service network: {networks:?}");

    let start = Instant::now();
    running.signal(Signal::SIGINT);
    let out = running.wait(Duration::from_secs(60));
    out.status(130).stderr_has("sidecar reachable");
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "Ctrl-C took {:?}",
        start.elapsed()
    );
    assert_eq!(p.history()[0]["status"], "cancelled");
    p.assert_clean();
}

#[test]
fn gc_removes_what_a_sigkilled_run_left_behind() {
    let p = stuck_project();
    let running = p.t.args(&[]).spawn();
    p.wait_for_container("trun.job=stuck");
    common::wait_for("the step to start", Duration::from_secs(60), || {
        running.stderr_so_far().contains("sleeping now")
    });
    running.signal(Signal::SIGKILL);
    running.wait(Duration::from_secs(30)).status(137);

    let run = p.run_ids()[0];
    let (containers, networks) = p.labelled(run);
    assert_eq!(containers.len(), 2, "left behind: {containers:?}");
    assert_eq!(networks.len(), 1, "left behind: {networks:?}");

    p.t.run(&["gc"])
        .success()
        .stdout_has("removed 2 containers, 1 network");
    assert_eq!(p.history()[0]["status"], "interrupted");
    p.assert_clean();
}
