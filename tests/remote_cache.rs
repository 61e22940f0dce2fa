//! The remote cache (Bazel HTTP protocol) against real servers on 127.0.0.1:
//! nginx WebDAV (started by `.ci/run`, or `eval "$(.ci/webdav start)"`) and
//! `trun serve`. A "second machine" is a second workspace directory with its
//! own `.trun`; the steps append to `ran.log`, so a step that ran leaves a
//! trace and a restored one does not.

mod common;

use common::{invoke_in, wait_for, Running, Test};
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The WebDAV server's URL and the directory it stores files in.
fn webdav() -> (String, PathBuf) {
    let url = std::env::var("TRUN_TEST_WEBDAV_URL");
    let root = std::env::var("TRUN_TEST_WEBDAV_ROOT");
    match (url, root) {
        (Ok(u), Ok(r)) if !u.is_empty() && Path::new(&r).is_dir() => (u, PathBuf::from(r)),
        _ => panic!(
            "TRUN_TEST_WEBDAV_URL / TRUN_TEST_WEBDAV_ROOT are not set (or the root is gone): \
             these tests need a WebDAV server. Run `.ci/run`, or start one with \
             `eval \"$(.ci/webdav start)\"` (needs nginx and libnginx-mod-http-dav-ext)."
        ),
    }
}

/// A URL below the WebDAV server unique to one test, so tests running at
/// once never see each other's entries; and the directory holding it.
fn webdav_instance(name: &str) -> (String, PathBuf) {
    let (url, root) = webdav();
    let inst = format!("{name}-{}-{}", std::process::id(), common::marker());
    (format!("{url}/{inst}"), root.join(inst))
}

const PIPELINE: &str = r#"
jobs:
  build:
    steps:
      - id: compile
        sources: ["src/**"]
        generates: ["out/"]
        run: |
          echo compile >> ran.log
          mkdir -p out/bin
          cat src/a.txt src/a.txt > out/data.bin
          printf '#!/bin/sh\necho hi\n' > out/bin/tool && chmod 755 out/bin/tool
          : > out/empty
          chmod 640 out/data.bin
          echo "compiled ok"
          echo "size=42" >> "$TRUN_OUTPUT"
      - id: use
        sources: ["out/**"]
        generates: [report.txt]
        env:
          SIZE: ${{ steps.compile.outputs.size }}
        run: |
          echo use >> ran.log
          echo "size $SIZE" > report.txt
"#;

/// A fresh copy of the project (a new machine: nothing in `.trun`).
fn machine() -> Test {
    Test::new()
        .workflow(PIPELINE)
        .file("src/a.txt", "hello from the source\n")
}

fn run(t: &Test, cache: &str, extra: &[&str]) -> common::Output {
    let mut args = vec!["run", "--progress", "plain", "--remote-cache", cache];
    args.extend_from_slice(extra);
    t.run(&args)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Machine A runs and uploads; machine B restores everything and runs nothing.
fn second_machine_gets_a_hit(cache: &str, extra: &[&str]) {
    let a = machine();
    run(&a, cache, extra).success();
    assert_eq!(a.read("ran.log"), "compile\nuse\n");

    let b = machine();
    let out = run(&b, cache, extra);
    out.success()
        .stderr_has("compile: restored from remote cache")
        .stderr_has("use: restored from remote cache")
        // The log of the run on machine A, replayed.
        .stderr_has("compiled ok");
    assert!(
        !b.exists("ran.log"),
        "a step ran on machine B:\n{}",
        out.all()
    );
    for f in ["out/data.bin", "out/bin/tool", "out/empty", "report.txt"] {
        assert_eq!(
            fs::read(a.join(f)).unwrap(),
            fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
        assert_eq!(mode(&a.join(f)), mode(&b.join(f)), "mode of {f}");
    }
    assert_eq!(mode(&b.join("out/data.bin")), 0o640);
    assert_eq!(mode(&b.join("out/bin/tool")) & 0o111, 0o111);
    assert_eq!(b.read("report.txt"), "size 42\n");

    // Recorded as up to date through the local store: the next run needs no
    // cache at all.
    b.run(&["run", "--progress", "plain"])
        .success()
        .stderr_has("compile: up to date")
        .stderr_has("use: up to date");
    assert!(!b.exists("ran.log"));
}

#[test]
fn webdav_second_machine_gets_a_hit_and_runs_nothing() {
    let (url, _) = webdav_instance("hit");
    second_machine_gets_a_hit(&url, &[]);
}

/// A running `trun serve` used as the team cache.
struct Server {
    _dir: Test,
    running: Running,
    base: String,
}

impl Server {
    fn start(token: &str) -> Server {
        let dir = Test::new().workflow("jobs: { noop: { steps: [ { run: 'true' } ] } }");
        let running = dir
            .args(&["serve", "--bind", "127.0.0.1:0", "--token", token])
            .spawn();
        let mut base = String::new();
        wait_for(
            "trun serve to listen",
            Duration::from_secs(30),
            || match running.stderr_so_far().split_once(" on http://") {
                Some((_, rest)) => {
                    base = format!("http://{}", rest.lines().next().unwrap_or("").trim());
                    true
                }
                None => false,
            },
        );
        Server {
            _dir: dir,
            running,
            base,
        }
    }

    fn cas_files(&self) -> usize {
        files_under(&self._dir.join(".trun/cas")).len()
    }
}

#[test]
fn serve_second_machine_gets_a_hit_and_runs_nothing() {
    let server = Server::start("s3cret");
    // With an instance name, as Bazel clients may use.
    let url = format!("{}/team", server.base);
    second_machine_gets_a_hit(&url, &["--remote-cache-token", "s3cret"]);
    assert!(server.cas_files() >= 3, "the server's CAS holds the blobs");

    // The token is required: without it, one warning, and the run goes on.
    let c = machine();
    let out = run(&c, &url, &[]);
    out.success();
    assert_eq!(
        out.all().matches("warning: remote cache").count(),
        1,
        "{}",
        out.all()
    );
    out.stderr_has("HTTP 401");
    assert_eq!(c.read("ran.log"), "compile\nuse\n");
    drop(server.running);
}

#[test]
fn serve_cache_endpoints_check_digests_and_sizes() {
    let server = Server::start("tok");
    let client = reqwest::blocking::Client::new();
    let body = b"some blob".to_vec();
    let hash = hex::encode(Sha256::digest(&body));
    let put = |path: &str, body: Vec<u8>| {
        client
            .put(format!("{}{path}", server.base))
            .bearer_auth("tok")
            .body(body)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    // The wrong bytes under a name are refused; the right ones stored.
    assert_eq!(put(&format!("/cas/{hash}"), b"other bytes".to_vec()), 400);
    assert_eq!(put(&format!("/cas/{hash}"), body.clone()), 200);
    assert_eq!(put("/cas/not-a-hash", body.clone()), 400);
    assert_eq!(put(&format!("/ac/{hash}"), b"not json".to_vec()), 400);
    assert_eq!(
        put(&format!("/ac/{hash}"), vec![b' '; 2 << 20]),
        413,
        "an entry over the limit"
    );
    let get = |path: &str, token: Option<&str>| {
        let mut r = client.get(format!("{}{path}", server.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap()
    };
    let got = get(&format!("/cas/{hash}"), Some("tok"));
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.bytes().unwrap().to_vec(), body);
    assert_eq!(get(&format!("/cas/{hash}"), None).status().as_u16(), 401);
    assert_eq!(
        get(&format!("/cas/{}", "0".repeat(64)), Some("tok"))
            .status()
            .as_u16(),
        404
    );
    // The empty blob is always there (as on bazel-remote).
    let empty = hex::encode(Sha256::digest(b""));
    assert_eq!(
        get(&format!("/cas/{empty}"), Some("tok")).status().as_u16(),
        200
    );
}

#[test]
fn webdav_corrupted_blob_is_detected_and_the_step_runs() {
    let (url, dir) = webdav_instance("corrupt");
    let a = machine();
    run(&a, &url, &[]).success();
    let data = fs::read(a.join("out/data.bin")).unwrap();
    let blob = dir.join("cas").join(hex::encode(Sha256::digest(&data)));
    assert!(blob.is_file(), "{} was uploaded", blob.display());
    // Same size, other bytes: only the digest can tell.
    let mut bad = data.clone();
    bad[0] ^= 0xff;
    fs::write(&blob, &bad).unwrap();

    let b = machine();
    let out = run(&b, &url, &[]);
    out.success()
        .stderr_has("remote cache entry refused")
        .stderr_has("corrupted")
        // It wrote the same bytes, so the next step's inputs match machine A's.
        .stderr_has("use: restored from remote cache");
    assert_eq!(b.read("ran.log"), "compile\n");
    assert_eq!(fs::read(b.join("out/data.bin")).unwrap(), data);
}

#[test]
fn webdav_read_only_never_writes() {
    let (url, dir) = webdav_instance("ro");
    let before = files_under(&dir);
    let a = machine();
    run(&a, &url, &["--remote-cache-read-only"]).success();
    assert_eq!(a.read("ran.log"), "compile\nuse\n");
    assert_eq!(
        files_under(&dir),
        before,
        "a read-only run wrote to the cache"
    );
    // And so a second machine finds nothing.
    let b = machine();
    run(&b, &url, &[]).success();
    assert_eq!(b.read("ran.log"), "compile\nuse\n");
    assert!(!files_under(&dir).is_empty());
}

#[test]
fn serve_read_only_never_writes() {
    let server = Server::start("tok");
    let before = server.cas_files();
    let a = machine();
    run(
        &a,
        &server.base,
        &["--remote-cache-token", "tok", "--remote-cache-read-only"],
    )
    .success();
    assert_eq!(server.cas_files(), before);
    let b = machine();
    run(&b, &server.base, &["--remote-cache-token", "tok"]).success();
    assert_eq!(b.read("ran.log"), "compile\nuse\n", "no entry was written");
}

#[test]
fn webdav_entry_signed_with_another_key_is_refused() {
    let (url, _) = webdav_instance("sig");
    let keys = Test::new()
        .file("k1", "first key\n")
        .file("k2", "second key\n");
    let k1 = keys.join("k1").display().to_string();
    let k2 = keys.join("k2").display().to_string();
    let a = machine();
    run(&a, &url, &["--remote-cache-key-file", &k1]).success();

    let b = machine();
    let out = run(
        &b,
        &url,
        &["--remote-cache-key-file", &k2, "--remote-cache-read-only"],
    );
    out.success().stderr_has("bad signature");
    assert_eq!(b.read("ran.log"), "compile\nuse\n");

    // The key from the environment works the same; the right key is a hit.
    let c = machine();
    c.args(&["run", "--progress", "plain", "--remote-cache", &url])
        .env("TRUN_REMOTE_CACHE_KEY", "first key")
        .run()
        .success()
        .stderr_has("compile: restored from remote cache");
    assert!(!c.exists("ran.log"));

    // An unsigned entry is refused by a machine that has a key.
    let (url2, _) = webdav_instance("unsigned");
    run(&machine(), &url2, &[]).success();
    let d = machine();
    run(&d, &url2, &["--remote-cache-key-file", &k1])
        .success()
        .stderr_has("unsigned");
    assert_eq!(d.read("ran.log"), "compile\nuse\n");
}

#[test]
fn server_down_the_run_succeeds_with_one_warning() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a = machine();
    let out = run(&a, &format!("http://127.0.0.1:{port}/"), &[]);
    out.success();
    assert_eq!(
        out.all().matches("warning: remote cache").count(),
        1,
        "{}",
        out.all()
    );
    out.stderr_has("continuing without it");
    assert_eq!(a.read("ran.log"), "compile\nuse\n");
}

#[test]
fn bad_remote_cache_settings_are_usage_errors() {
    let a = machine();
    a.run(&["run", "--remote-cache", "https://cache.example/"])
        .status(2)
        .stderr_has("only http:// is supported");
    a.run(&["run", "--remote-cache", "cache.example"])
        .status(2)
        .stderr_has("expected http://host[:port]/[instance]");
    let empty = Test::new().file("empty", "");
    a.run(&[
        "run",
        "--remote-cache",
        "http://127.0.0.1:1/",
        "--remote-cache-key-file",
        &empty.join("empty").display().to_string(),
    ])
    .status(2)
    .stderr_has("the file is empty");
    assert!(!a.exists("ran.log"));
}

#[test]
fn environment_variables_named_in_remote_cache_env_count() {
    let (url, _) = webdav_instance("env");
    let a = machine();
    a.args(&[
        "run",
        "--progress",
        "plain",
        "--remote-cache",
        &url,
        "--remote-cache-env",
        "CC",
    ])
    .env("CC", "gcc")
    .run()
    .success();
    // Another value of CC: another key, a miss.
    let b = machine();
    b.args(&["run", "--progress", "plain", "--remote-cache", &url])
        .env("TRUN_REMOTE_CACHE_ENV", "CC")
        .env("CC", "clang")
        .run()
        .success();
    assert_eq!(b.read("ran.log"), "compile\nuse\n");
    // The same value: a hit.
    let c = machine();
    c.args(&[
        "run",
        "--progress",
        "plain",
        "--remote-cache",
        &url,
        "--remote-cache-env",
        "CC",
    ])
    .env("CC", "gcc")
    .run()
    .success()
    .stderr_has("restored from remote cache");
    assert!(!c.exists("ran.log"));
}

// ---- hostile entries ----------------------------------------------------------

const ONE_STEP: &str = r#"
jobs:
  gen:
    steps:
      - id: gen
        sources: ["src/**"]
        generates: ["out/"]
        run: |
          echo gen >> ran.log
          mkdir -p out && cp src/a.txt out/a.txt
"#;

/// A workspace at `<outer>/ws`, so a write that escapes it lands in `<outer>`.
fn nested_machine() -> (Test, PathBuf) {
    let outer = Test::new();
    let ws = outer.join("ws");
    fs::create_dir_all(ws.join("src")).unwrap();
    fs::write(ws.join("trun.yaml"), ONE_STEP).unwrap();
    fs::write(ws.join("src/a.txt"), "source\n").unwrap();
    (outer, ws)
}

fn put(url: &str, body: Vec<u8>) {
    let status = reqwest::blocking::Client::new()
        .put(url)
        .body(body)
        .send()
        .unwrap()
        .status();
    assert!(status.is_success(), "PUT {url}: {status}");
}

/// Uploads `bytes` as a blob and returns its digest JSON.
fn blob(url: &str, bytes: &[u8]) -> serde_json::Value {
    let hash = hex::encode(Sha256::digest(bytes));
    put(&format!("{url}/cas/{hash}"), bytes.to_vec());
    serde_json::json!({ "hash": hash, "size_bytes": bytes.len().to_string() })
}

#[test]
fn hostile_entries_never_write_outside_the_workspace() {
    let (url, dir) = webdav_instance("hostile");
    // A real run finds the key the step is stored under.
    let (_a_outer, a) = nested_machine();
    invoke_in(&a, &["run", "--remote-cache", &url])
        .run()
        .success();
    let ac: Vec<PathBuf> = files_under(&dir.join("ac"));
    assert_eq!(ac.len(), 1, "one step, one entry: {ac:?}");
    let entry_url = format!("{url}/ac/{}", ac[0].file_name().unwrap().to_string_lossy());

    let evil = blob(&url, b"evil bytes\n");
    let outputs = blob(&url, b"{}");
    let worker = format!(
        "trun/1 outputs={}/{}",
        outputs["hash"].as_str().unwrap(),
        outputs["size_bytes"].as_str().unwrap()
    );
    let file = |path: &str, digest: &serde_json::Value| serde_json::json!({ "path": path, "digest": digest, "is_executable": false });
    let entry = |files: Vec<serde_json::Value>, extra: serde_json::Value| {
        let mut e = serde_json::json!({
            "output_files": files,
            "exit_code": 0,
            "execution_metadata": { "worker": worker },
        });
        if let serde_json::Value::Object(m) = extra {
            for (k, v) in m {
                e[k] = v;
            }
        }
        serde_json::to_vec(&e).unwrap()
    };

    let (outer, _) = nested_machine();
    let outside = outer.path().to_path_buf();
    let huge = serde_json::json!({ "hash": evil["hash"], "size_bytes": "999999999999999" });
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dot-dot",
            entry(
                vec![file("out/../../escaped.txt", &evil)],
                serde_json::json!({}),
            ),
            "unsafe output path",
        ),
        (
            "parent",
            entry(vec![file("../escaped.txt", &evil)], serde_json::json!({})),
            "unsafe output path",
        ),
        (
            "absolute",
            entry(
                vec![file(&format!("{}/escaped.txt", outside.display()), &evil)],
                serde_json::json!({}),
            ),
            "unsafe output path",
        ),
        (
            "through a symlink",
            entry(
                vec![file("out/link/escaped.txt", &evil)],
                serde_json::json!({}),
            ),
            "restore into",
        ),
        (
            "not generated",
            entry(vec![file("src/a.txt", &evil)], serde_json::json!({})),
            "not among the step's `generates`",
        ),
        (
            "into .trun",
            entry(vec![file(".trun/state.db", &evil)], serde_json::json!({})),
            "unsafe output path",
        ),
        (
            "huge",
            entry(vec![file("out/a.txt", &huge)], serde_json::json!({})),
            "larger than the limit",
        ),
        (
            "symlink outputs",
            entry(
                vec![],
                serde_json::json!({ "output_symlinks": [ { "path": "out/a.txt", "target": "/etc/passwd" } ] }),
            ),
            "symbolic links",
        ),
        (
            "not json",
            b"\x00\x01garbage".to_vec(),
            "not an ActionResult",
        ),
    ];
    for (name, body, expect) in cases {
        put(&entry_url, body);
        let (outer, b) = nested_machine();
        let target = outer.join("target");
        fs::create_dir_all(&target).unwrap();
        fs::create_dir_all(b.join("out")).unwrap();
        std::os::unix::fs::symlink(&target, b.join("out/link")).unwrap();
        let out = invoke_in(&b, &["run", "--progress", "plain", "--remote-cache", &url]).run();
        out.success();
        assert!(
            out.all().contains(expect),
            "{name}: expected `{expect}` in:\n{}",
            out.all()
        );
        assert_eq!(
            fs::read_to_string(b.join("ran.log")).unwrap(),
            "gen\n",
            "{name}: the step ran"
        );
        assert_eq!(
            fs::read_to_string(b.join("src/a.txt")).unwrap(),
            "source\n",
            "{name}"
        );
        assert_eq!(
            fs::read_to_string(b.join("out/a.txt")).unwrap(),
            "source\n",
            "{name}"
        );
        let escaped: Vec<PathBuf> = files_under(outer.path())
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "escaped.txt"))
            .collect();
        assert!(escaped.is_empty(), "{name}: wrote {escaped:?}");
        assert!(
            files_under(&target).is_empty(),
            "{name}: wrote through the symlink"
        );
    }
}

/// A real HTTP server on 127.0.0.1 that misbehaves: answers every request
/// with `response`, or never answers when it is `None`. Returns its URL.
fn bad_server(response: Option<&'static str>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            match response {
                Some(r) => {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 4096];
                    let _ = c.read(&mut buf);
                    let _ = c.write_all(r.as_bytes());
                }
                // Accepted, never answered: only a timeout ends the wait.
                None => held.push(c),
            }
        }
    });
    url
}

#[test]
fn server_errors_and_timeouts_never_fail_the_run() {
    let a = machine();
    let url = bad_server(Some(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    ));
    let out = run(&a, &url, &[]);
    out.success().stderr_has("HTTP 500");
    assert_eq!(
        out.all().matches("warning: remote cache").count(),
        1,
        "{}",
        out.all()
    );
    assert_eq!(a.read("ran.log"), "compile\nuse\n");

    let b = machine();
    let started = std::time::Instant::now();
    let out = run(&b, &bad_server(None), &["--remote-cache-timeout", "1s"]);
    out.success().stderr_has("timed out");
    assert_eq!(
        out.all().matches("warning: remote cache").count(),
        1,
        "{}",
        out.all()
    );
    assert_eq!(b.read("ran.log"), "compile\nuse\n");
    // One timeout, then the cache is left alone for the rest of the run.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
