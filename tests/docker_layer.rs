//! The Docker layer against the real daemon: job containers, exec streaming and
//! killing, services, the built-in actions, and exact cleanup by run label.
//! Needs a running Docker daemon plus Debian's busybox-static and docker-registry
//! (see tests/support/docker_env.rs); without a daemon these tests fail, loudly.

mod support;

use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::docker_env::{ensure_busybox_image, CleanupOnPanic, LocalRegistry};
use trun::docker::actions::{self, ActionCtx, Memory};
use trun::docker::{ContainerSpec, Docker, Labels, ServiceSpec, LABEL_RUN};
use trun::event::Stream;

#[derive(Default)]
struct MemMemory(Mutex<HashMap<String, String>>);

impl Memory for MemMemory {
    fn get(&self, key: &str) -> Option<String> {
        self.0.lock().unwrap().get(key).cloned()
    }
    fn set(&self, key: &str, value: &str) {
        self.0
            .lock()
            .unwrap()
            .insert(key.to_string(), value.to_string());
    }
}

async fn docker() -> Docker {
    Docker::connect().await.unwrap_or_else(|e| panic!("{e}"))
}

/// A run id no other test (or test process) uses at the same time.
fn run_id() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 2) as i64 + 1_000_000
}

/// Removes the run's containers and networks like the end of a run does, then
/// asserts through the API that nothing labelled with the run remains.
async fn finish(docker: &Docker, run_id: i64) {
    let report = docker.cleanup_run(run_id).await.expect("cleanup");
    assert!(
        report.errors.is_empty(),
        "cleanup errors: {:?}",
        report.errors
    );
    assert_nothing_left(docker, run_id).await;
}

async fn assert_nothing_left(docker: &Docker, run_id: i64) {
    use bollard::query_parameters::{ListContainersOptionsBuilder, ListNetworksOptionsBuilder};
    let label = format!("{LABEL_RUN}={run_id}");
    let filters = HashMap::from([("label", vec![label.as_str()])]);
    let containers = docker
        .api()
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    assert!(
        containers.is_empty(),
        "containers left for run {run_id}: {containers:?}"
    );
    let networks = docker
        .api()
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    assert!(
        networks.is_empty(),
        "networks left for run {run_id}: {networks:?}"
    );
}

fn with(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("with must be an object")
}

type Lines = Vec<(Stream, String)>;

fn collector(lines: &mut Lines) -> impl FnMut(Stream, String) + Send + '_ {
    move |s, l| lines.push((s, l))
}

fn stdout(lines: &Lines) -> Vec<&str> {
    lines
        .iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .map(|(_, l)| l.as_str())
        .collect()
}

fn ctx<'a>(
    run_id: i64,
    ws: &Path,
    docker: Option<&'a Docker>,
    memory: &'a dyn Memory,
) -> ActionCtx<'a> {
    ActionCtx {
        run_id,
        job: "test".into(),
        step_key: format!("test.step-{run_id}"),
        workspace: ws.to_path_buf(),
        docker,
        memory,
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_daemon_is_one_clear_line() {
    let err = Docker::connect_with("unix:///nonexistent/docker.sock", "DOCKER_HOST is not set")
        .await
        .expect_err("no daemon there");
    let text = err.to_string();
    assert!(
        text.starts_with("cannot reach the Docker daemon at unix:///nonexistent/docker.sock (DOCKER_HOST is not set): "),
        "{text}"
    );
    assert!(text.ends_with(" — is Docker running?"), "{text}");
    assert!(!text.contains('\n'), "{text}");
    println!("{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn job_container_runs_steps_in_the_workspace_and_streams_output() {
    let image = ensure_busybox_image();
    let docker = docker().await;
    let run = run_id();
    let _guard = CleanupOnPanic(run);
    let ws = tempfile::tempdir().unwrap();
    let spec = ContainerSpec {
        image,
        env: vec![("FROM_SPEC".into(), "spec-value".into())],
        memory: Some("64m".into()),
        cpus: Some(0.5),
        pids: Some(64),
        network: Some("none".into()),
        ..Default::default()
    };
    let id = docker
        .start_job_container(&spec, ws.path(), &Labels::new(run, "build"))
        .await
        .unwrap();

    let info = docker.api().inspect_container(&id, None).await.unwrap();
    let host = info.host_config.unwrap();
    assert_eq!(host.memory, Some(64 * 1024 * 1024));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.pids_limit, Some(64));
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    let labels = info.config.unwrap().labels.unwrap();
    assert_eq!(labels.get("trun.run"), Some(&run.to_string()));
    assert_eq!(labels.get("trun.job").map(String::as_str), Some("build"));

    let output = ws.path().join(".trun-output");
    let script = r#"echo one; echo oops >&2; echo "two $FROM_SPEC $STEP_VAR"; pwd; echo hi > made.txt; echo "answer=42" >> "$TRUN_OUTPUT"; exit 3"#;
    let mut lines = Lines::new();
    let env = vec![
        ("STEP_VAR".into(), "step-value".into()),
        ("TRUN_OUTPUT".into(), output.to_string_lossy().into()),
    ];
    let outcome = docker
        .exec(&id, sh(script), env, ws.path(), &mut collector(&mut lines))
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, 3);
    assert!(!outcome.killed);
    let ws_text = ws.path().to_string_lossy().to_string();
    assert_eq!(
        stdout(&lines),
        vec!["one", "two spec-value step-value", ws_text.as_str()]
    );
    assert!(lines.contains(&(Stream::Stderr, "oops".into())));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("made.txt")).unwrap(),
        "hi\n"
    );
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "answer=42\n");

    let mut none = Lines::new();
    let ok = docker
        .exec(
            &id,
            sh("true"),
            vec![],
            ws.path(),
            &mut collector(&mut none),
        )
        .await
        .unwrap();
    assert_eq!(ok.exit_code, 0);
    finish(&docker, run).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_image_says_no_implicit_pull() {
    let docker = docker().await;
    let spec = ContainerSpec {
        image: "trun-test/never-built:nope".into(),
        ..Default::default()
    };
    let err = docker
        .start_job_container(&spec, Path::new("/tmp"), &Labels::new(run_id(), "j"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "image trun-test/never-built:nope is not present locally (no registry pulls happen implicitly); add a docker/pull or docker/build step"
    );
}

/// Lists the command lines of the container's processes that start with `needle`.
async fn processes(docker: &Docker, id: &str, needle: &str) -> Vec<String> {
    let mut lines = Lines::new();
    let script = "for d in /proc/[0-9]*; do tr '\\0' ' ' < $d/cmdline 2>/dev/null; echo; done";
    docker
        .exec(
            id,
            sh(script),
            vec![],
            Path::new("/"),
            &mut collector(&mut lines),
        )
        .await
        .unwrap();
    lines
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| l.starts_with(needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_an_exec_leaves_no_process_behind() {
    let image = ensure_busybox_image();
    let docker = docker().await;
    let run = run_id();
    let _guard = CleanupOnPanic(run);
    let ws = tempfile::tempdir().unwrap();
    let spec = ContainerSpec {
        image,
        ..Default::default()
    };
    let id = docker
        .start_job_container(&spec, ws.path(), &Labels::new(run, "kill"))
        .await
        .unwrap();

    // The probe does see processes: the container's idle loop sleeps.
    assert_eq!(processes(&docker, &id, "sleep 3600").await.len(), 1);

    // A stop signal (the engine's timeout): the whole tree, background child included, dies.
    let mut lines = Lines::new();
    let started = Instant::now();
    let outcome = docker
        .exec_until(
            &id,
            sh("sleep 301 & echo started; sleep 302; echo never"),
            vec![],
            ws.path(),
            &mut collector(&mut lines),
            tokio::time::sleep(Duration::from_millis(500)),
        )
        .await
        .unwrap();
    assert!(outcome.killed);
    assert_ne!(outcome.exit_code, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "kill took {:?}",
        started.elapsed()
    );
    assert_eq!(stdout(&lines), vec!["started"]);
    assert_eq!(
        processes(&docker, &id, "sleep 30").await,
        Vec::<String>::new()
    );

    // Dropping the exec future (tokio::time::timeout) kills too, in the background.
    let mut sink = Lines::new();
    let dropped = tokio::time::timeout(
        Duration::from_millis(500),
        docker.exec(
            &id,
            sh("sleep 303 & sleep 304"),
            vec![],
            ws.path(),
            &mut collector(&mut sink),
        ),
    )
    .await;
    assert!(dropped.is_err(), "the exec should have timed out");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes(&docker, &id, "sleep 30").await;
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running after drop: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    finish(&docker, run).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn services_are_reachable_by_name() {
    let image = ensure_busybox_image();
    let docker = docker().await;
    let run = run_id();
    let _guard = CleanupOnPanic(run);
    let ws = tempfile::tempdir().unwrap();
    let labels = Labels::new(run, "svc");
    let web = ServiceSpec {
        name: "web".into(),
        image: image.clone(),
        command: Some(sh(
            "mkdir -p /www && echo served > /www/index.html && httpd -f -p 8080 -h /www",
        )),
        ..Default::default()
    };
    let network = docker.start_services(&labels, &[web]).await.unwrap();
    let spec = ContainerSpec {
        image,
        network: Some(network),
        ..Default::default()
    };
    let id = docker
        .start_job_container(&spec, ws.path(), &labels)
        .await
        .unwrap();
    let mut lines = Lines::new();
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://web:8080/index.html && exit 0; sleep 0.3; done; exit 1";
    let outcome = docker
        .exec(
            &id,
            sh(script),
            vec![],
            ws.path(),
            &mut collector(&mut lines),
        )
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, 0, "{lines:?}");
    assert_eq!(stdout(&lines), vec!["served"]);
    finish(&docker, run).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_exist_names_every_missing_path() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("a.txt"), "").unwrap();
    let memory = MemMemory::default();
    let c = ctx(run_id(), ws.path(), None, &memory);
    let mut lines = Lines::new();
    let r = actions::run(
        "files/exist",
        &with(json!({"paths": ["a.txt", "b.txt", "c/d.txt"]})),
        &c,
        &mut collector(&mut lines),
    )
    .await
    .unwrap();
    assert!(!r.success);
    assert_eq!(r.message.as_deref(), Some("missing files: b.txt, c/d.txt"));
    let r = actions::run(
        "files/exist",
        &with(json!({"paths": "a.txt"})),
        &c,
        &mut collector(&mut lines),
    )
    .await
    .unwrap();
    assert!(r.success);
    assert!(!actions::needs_docker("files/exist"));
}

#[tokio::test(flavor = "multi_thread")]
async fn build_skips_when_watched_files_are_unchanged_and_rebuilds_after_a_change() {
    let base = ensure_busybox_image();
    let docker = docker().await;
    let run = run_id();
    let _guard = CleanupOnPanic(run);
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(
        ws.path().join("Dockerfile"),
        format!("FROM {base}\nCOPY app.txt /app.txt\nRUN cat /app.txt\n"),
    )
    .unwrap();
    std::fs::write(ws.path().join("app.txt"), format!("v1-{run}\n")).unwrap();
    std::fs::write(ws.path().join("unwatched.txt"), "x\n").unwrap();
    let tag = format!("trun-test/build-{run}:latest");
    let w = with(
        json!({"tag": tag, "tags": [format!("trun-test/build-{run}:extra")], "watch": ["Dockerfile", "app.txt"]}),
    );
    let memory = MemMemory::default();
    let c = ctx(run, ws.path(), Some(&docker), &memory);

    let mut lines = Lines::new();
    let first = actions::run("docker/build", &w, &c, &mut collector(&mut lines))
        .await
        .unwrap();
    assert!(first.success, "{first:?}");
    assert_eq!(first.skipped, None);
    let id1 = first.outputs["image-id"].clone();
    assert!(id1.starts_with("sha256:"), "{id1}");
    assert!(
        stdout(&lines).contains(&format!("v1-{run}").as_str()),
        "the RUN output is streamed: {lines:?}"
    );
    assert_eq!(
        docker
            .image_id(&format!("trun-test/build-{run}:extra"))
            .await
            .unwrap(),
        Some(id1.clone())
    );

    assert!(actions::plan_skip("docker/build", &w, &c).await.is_some());
    std::fs::write(ws.path().join("unwatched.txt"), "changed\n").unwrap();
    let second = actions::run("docker/build", &w, &c, &mut collector(&mut Lines::new()))
        .await
        .unwrap();
    assert_eq!(
        second.skipped.as_deref(),
        Some("image up to date (definition and watched files unchanged)")
    );
    assert_eq!(second.outputs["image-id"], id1);

    std::fs::write(ws.path().join("app.txt"), format!("v2-{run}\n")).unwrap();
    assert_eq!(actions::plan_skip("docker/build", &w, &c).await, None);
    let mut lines = Lines::new();
    let third = actions::run("docker/build", &w, &c, &mut collector(&mut lines))
        .await
        .unwrap();
    assert!(third.success && third.skipped.is_none(), "{third:?}");
    assert_ne!(third.outputs["image-id"], id1);
    assert!(
        stdout(&lines).contains(&format!("v2-{run}").as_str()),
        "{lines:?}"
    );

    for t in [tag.clone(), format!("trun-test/build-{run}:extra"), id1] {
        let _ = docker
            .api()
            .remove_image(
                &t,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
    }
    finish(&docker, run).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn build_failure_shows_the_tail_of_the_log() {
    let base = ensure_busybox_image();
    let docker = docker().await;
    let run = run_id();
    let _guard = CleanupOnPanic(run);
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(
        ws.path().join("Dockerfile"),
        format!("FROM {base}\nRUN for i in $(seq -w 1 40); do echo out-$i; done; exit 7\n"),
    )
    .unwrap();
    let memory = MemMemory::default();
    let c = ctx(run, ws.path(), Some(&docker), &memory);
    let w = with(json!({"tag": format!("trun-test/broken-{run}")}));
    let r = actions::run("docker/build", &w, &c, &mut collector(&mut Lines::new()))
        .await
        .unwrap();
    assert!(!r.success);
    let message = r.message.unwrap();
    assert!(
        message.starts_with(&format!("docker build of trun-test/broken-{run} failed: ")),
        "{message}"
    );
    assert!(message.contains("returned a non-zero code: 7"), "{message}");
    assert!(
        message.contains("last 30 lines of the build log:\n"),
        "{message}"
    );
    assert!(
        message.contains("out-40") && message.contains("out-15"),
        "{message}"
    );
    assert!(!message.contains("out-01"), "only the tail: {message}");
    finish(&docker, run).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn build_run_exec_chain_flows_by_image_id_and_container_id() {
    let base = ensure_busybox_image();
    let docker = docker().await;
    let run = run_id();
    let _guard = CleanupOnPanic(run);
    let ws = tempfile::tempdir().unwrap();
    // A label makes this image (and so its id) unique to the test.
    std::fs::write(
        ws.path().join("Dockerfile"),
        format!("FROM {base}\nLABEL trun.test.run={run}\nWORKDIR /srv\n"),
    )
    .unwrap();
    let memory = MemMemory::default();
    let c = ctx(run, ws.path(), Some(&docker), &memory);
    let tag = format!("trun-test/chain-{run}:latest");
    let built = actions::run(
        "docker/build",
        &with(json!({"tag": tag})),
        &c,
        &mut collector(&mut Lines::new()),
    )
    .await
    .unwrap();
    let image_id = built.outputs["image-id"].clone();

    let started = actions::run(
        "docker/run",
        &with(json!({"image-id": image_id, "command": "trap 'exit 0' TERM; sleep 300 & wait", "env": {"GREETING": "hello"}})),
        &c,
        &mut collector(&mut Lines::new()),
    )
    .await
    .unwrap();
    assert!(started.success, "{started:?}");
    let container_id = started.outputs["container-id"].clone();

    let mut lines = Lines::new();
    let exec = actions::run(
        "docker/exec",
        &with(json!({
            "container-id": container_id,
            "expect-image-id": image_id,
            "commands": [{"greet": "echo $GREETING from $(pwd)"}, {"fail": "exit 4"}, {"never": "echo never"}]
        })),
        &c,
        &mut collector(&mut lines),
    )
    .await
    .unwrap();
    assert!(!exec.success);
    assert_eq!(
        exec.message.as_deref(),
        Some("command `fail` exited with code 4")
    );
    assert_eq!(
        stdout(&lines),
        vec!["==> greet", "hello from /srv", "==> fail"]
    );
    assert_eq!(exec.outputs.get("greet").map(String::as_str), Some("0"));
    assert_eq!(exec.outputs.get("fail").map(String::as_str), Some("4"));
    assert!(!exec.outputs.contains_key("never"));

    // Found by image, all commands succeed.
    let by_image = actions::run(
        "docker/exec",
        &with(json!({"image": tag, "commands": [{"check": "test -d /srv"}]})),
        &c,
        &mut collector(&mut Lines::new()),
    )
    .await
    .unwrap();
    assert!(by_image.success, "{by_image:?}");
    assert_eq!(by_image.outputs.get("check").map(String::as_str), Some("0"));

    // A mismatched expected image id refuses to run anything, naming both ids.
    let busybox_id = docker.image_id(&base).await.unwrap().unwrap();
    let mut lines = Lines::new();
    let refused = actions::run(
        "docker/exec",
        &with(json!({"container-id": container_id, "expect-image-id": busybox_id, "commands": [{"x": "echo ran"}]})),
        &c,
        &mut collector(&mut lines),
    )
    .await
    .unwrap();
    assert!(!refused.success);
    let message = refused.message.unwrap();
    assert!(
        message.starts_with("refusing to run in container "),
        "{message}"
    );
    assert!(
        message.contains(&image_id) && message.contains(&busybox_id),
        "{message}"
    );
    assert!(lines.is_empty(), "nothing ran: {lines:?}");

    // `wait: true` runs to exit, streams logs and fails on a non-zero exit.
    let mut lines = Lines::new();
    let waited = actions::run(
        "docker/run",
        &with(
            json!({"image": tag, "command": ["sh", "-c", "echo from-run; exit 5"], "wait": true}),
        ),
        &c,
        &mut collector(&mut lines),
    )
    .await
    .unwrap();
    assert!(!waited.success);
    assert!(
        waited
            .message
            .as_deref()
            .unwrap()
            .ends_with(&format!("({tag}) exited with code 5")),
        "{waited:?}"
    );
    assert_eq!(stdout(&lines), vec!["from-run"]);

    finish(&docker, run).await;
    let _ = docker
        .api()
        .remove_image(
            &tag,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kept_containers_survive_the_run_until_gc() {
    let image = ensure_busybox_image();
    let docker = docker().await;
    let run = run_id();
    let _guard = CleanupOnPanic(run);
    let ws = tempfile::tempdir().unwrap();
    let memory = MemMemory::default();
    let c = ctx(run, ws.path(), Some(&docker), &memory);
    let name = format!("trun-test-kept-{run}");
    let w = with(json!({"image": image, "command": "sleep 300", "keep": true, "name": name}));
    let kept = actions::run("docker/run", &w, &c, &mut collector(&mut Lines::new()))
        .await
        .unwrap();
    let id = kept.outputs["container-id"].clone();
    let report = docker.cleanup_run(run).await.unwrap();
    assert_eq!(report.kept, vec![id.clone()]);
    assert!(docker.api().inspect_container(&name, None).await.is_ok());

    // Re-running with the same name replaces trun's own container.
    let again = actions::run("docker/run", &w, &c, &mut collector(&mut Lines::new()))
        .await
        .unwrap();
    assert!(again.success, "{again:?}");
    assert_ne!(again.outputs["container-id"], id);

    let report = docker.gc(|r| r != run, true).await.unwrap();
    assert!(
        report.containers.contains(&again.outputs["container-id"]),
        "{report:?}"
    );
    assert_nothing_left(&docker, run).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_from_a_local_registry_skips_within_min_interval_and_verifies_the_id() {
    let image = ensure_busybox_image();
    let docker = docker().await;
    let run = run_id();
    let _guard = CleanupOnPanic(run);
    let registry = LocalRegistry::start();
    let reference = registry.push(&image, &format!("trun-test/pulled-{run}:v1"));
    assert_eq!(
        docker.image_id(&reference).await.unwrap(),
        None,
        "removed locally before the pull"
    );
    let expected_id = docker.image_id(&image).await.unwrap().unwrap();
    let ws = tempfile::tempdir().unwrap();
    let memory = MemMemory::default();
    let c = ctx(run, ws.path(), Some(&docker), &memory);
    let w = with(json!({"image": reference, "min-interval": "1h", "image-id": expected_id}));

    let first = actions::run("docker/pull", &w, &c, &mut collector(&mut Lines::new()))
        .await
        .unwrap();
    assert!(first.success, "{first:?}");
    assert_eq!(first.skipped, None);
    assert_eq!(first.outputs["image-id"], expected_id);

    let plan = actions::plan_skip("docker/pull", &w, &c).await;
    assert!(
        plan.as_deref()
            .is_some_and(|p| p.starts_with("pulled ") && p.ends_with(" ago")),
        "{plan:?}"
    );
    let second = actions::run("docker/pull", &w, &c, &mut collector(&mut Lines::new()))
        .await
        .unwrap();
    assert_eq!(second.skipped, plan);
    assert_eq!(second.outputs["image-id"], expected_id);

    // Without the interval memory, a wrong expected id fails naming both ids.
    let fresh = MemMemory::default();
    let c2 = ctx(run, ws.path(), Some(&docker), &fresh);
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let bad = actions::run(
        "docker/pull",
        &with(json!({"image": reference, "image-id": wrong})),
        &c2,
        &mut collector(&mut Lines::new()),
    )
    .await
    .unwrap();
    assert!(!bad.success);
    assert_eq!(
        bad.message,
        Some(format!(
            "image {reference} has id {expected_id}, but image-id expects {wrong}"
        ))
    );

    let _ = docker
        .api()
        .remove_image(
            &reference,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
    drop(registry);
    finish(&docker, run).await;
}

/// `cargo test --test docker_layer -- --ignored --nocapture bench`: 20 trivial
/// steps as execs in one container vs 20 `docker run --rm` (CLI, as a user would).
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn bench_exec_vs_docker_run() {
    let image = ensure_busybox_image();
    let docker = docker().await;
    let run = run_id();
    let _guard = CleanupOnPanic(run);
    let ws = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let id = docker
        .start_job_container(
            &ContainerSpec {
                image: image.clone(),
                ..Default::default()
            },
            ws.path(),
            &Labels::new(run, "bench"),
        )
        .await
        .unwrap();
    let start = t0.elapsed();
    let mut per_step = Vec::new();
    let t1 = Instant::now();
    for _ in 0..20 {
        let t = Instant::now();
        let o = docker
            .exec(&id, sh("true"), vec![], ws.path(), &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(o.exit_code, 0);
        per_step.push(t.elapsed());
    }
    let execs = t1.elapsed();
    finish(&docker, run).await;
    let t2 = Instant::now();
    for _ in 0..20 {
        let s = std::process::Command::new("docker")
            .args(["run", "--rm", &image, "sh", "-c", "true"])
            .status()
            .unwrap();
        assert!(s.success());
    }
    let runs = t2.elapsed();
    per_step.sort();
    println!("| variant | total | per step |");
    println!("|---|---|---|");
    println!("| container start (once) | {start:?} | |");
    println!(
        "| 20 x exec in one container | {execs:?} | median {:?}, max {:?} |",
        per_step[10], per_step[19]
    );
    println!("| 20 x docker run --rm | {runs:?} | {:?} |", runs / 20);
}
