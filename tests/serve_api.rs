//! `trun serve`'s faces beyond runs: webhooks delivered to a real HTTP
//! receiver on 127.0.0.1 (signature checked here, retries, a receiver that
//! hangs), the workflows listing, the OpenAPI document, and the CLI as a
//! client of the API.

mod common;

use common::server::Server;
use common::{wait_for, Test};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a receiver does with a request to one path.
#[derive(Clone)]
enum Answer {
    /// Answers these statuses in turn, then the last one for ever.
    Statuses(Vec<u16>),
    /// Never answers (holds the connection).
    Hang,
    /// Answers 500 with a large, hostile body.
    Flood,
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A real HTTP/1.1 receiver on 127.0.0.1: one thread per connection.
struct Receiver {
    base: String,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(answers: &[(&str, Answer)]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answers: HashMap<String, Answer> = answers
            .iter()
            .map(|(p, a)| (p.to_string(), a.clone()))
            .collect();
        let counts = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        {
            let seen = seen.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let (seen, answers, counts) = (seen.clone(), answers.clone(), counts.clone());
                    std::thread::spawn(move || serve_one(conn, &seen, &answers, &counts));
                }
            });
        }
        Receiver { base, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn requests(&self, path: &str) -> Vec<Received> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

fn serve_one(
    conn: TcpStream,
    seen: &Mutex<Vec<Received>>,
    answers: &HashMap<String, Answer>,
    counts: &Mutex<HashMap<String, usize>>,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    seen.lock().unwrap().push(Received {
        path: path.clone(),
        headers,
        body,
    });
    let n = {
        let mut c = counts.lock().unwrap();
        let n = c.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let mut conn = conn;
    match answers
        .get(&path)
        .cloned()
        .unwrap_or(Answer::Statuses(vec![200]))
    {
        Answer::Statuses(list) => {
            let status = list[(n - 1).min(list.len() - 1)];
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
        Answer::Hang => std::thread::sleep(Duration::from_secs(120)),
        Answer::Flood => {
            let _ = write!(
                conn,
                "HTTP/1.1 500 X\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n\x1b[31mred\x07"
            );
            let chunk = vec![b'A'; 64 * 1024];
            for _ in 0..160 {
                if conn.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
    }
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The deliveries `GET /api/v1/runs/{id}` shows for `url`.
fn deliveries_to(run: &Value, url: &str) -> Vec<Value> {
    run["webhooks"]
        .as_array()
        .unwrap_or_else(|| panic!("no `webhooks` in {run}"))
        .iter()
        .filter(|d| d["url"] == url)
        .cloned()
        .collect()
}

/// Polls the run until every delivery to `url` has ended (delivered or failed).
fn wait_deliveries(s: &Server, id: &str, url: &str, count: usize) -> Vec<Value> {
    let mut found = Vec::new();
    wait_for("webhook deliveries to end", Duration::from_secs(60), || {
        found = deliveries_to(&s.run(id), url);
        found.len() == count
            && found
                .iter()
                .all(|d| matches!(d["status"].as_str(), Some("delivered" | "failed")))
    });
    found
}

#[test]
fn webhooks_are_signed_retried_after_errors_and_recorded() {
    let rx = Receiver::start(&[("/flaky", Answer::Statuses(vec![500, 500, 200]))]);
    let yaml = format!(
        r#"
name: hooked
webhooks:
  - url: {flaky}
    events: [run.succeeded]
    secret: ${{{{ secrets.HOOK_KEY }}}}
    headers:
      X-Team: builders
jobs:
  build:
    webhooks:
      - url: {job}
        events: [job.succeeded, job.failed]
    steps:
      - run: echo built
  test:
    needs: build
    steps:
      - run: echo tested
"#,
        flaky = rx.url("/flaky"),
        job = rx.url("/job"),
    );
    let t = Test::new().file("hooked.yaml", &yaml);
    let server_hook = rx.url("/server");
    let mut s = Server::start_env(
        &t,
        &[
            "--webhook",
            &server_hook,
            "--webhook-secret",
            "server-key",
            "--webhook-backoff",
            "200ms",
        ],
        &[("HOOK_KEY", "k3y with spaces & $(id)")],
    );
    let id = s.create(&json!({"workflow": "hooked.yaml"}));
    assert_eq!(s.wait_done(&id)["status"], "success");

    // The flaky receiver: 500, 500, then 200: three attempts of one delivery,
    // each signed with the workflow's secret and identical.
    let flaky = wait_deliveries(&s, &id, &rx.url("/flaky"), 1);
    assert_eq!(flaky[0]["status"], "delivered", "{flaky:?}");
    assert_eq!(flaky[0]["event"], "run.succeeded");
    let codes: Vec<Value> = flaky[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, vec![json!(500), json!(500), json!(200)]);
    let got = rx.requests("/flaky");
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(
            r.headers["x-trun-signature-256"],
            hmac_hex(b"k3y with spaces & $(id)", &r.body),
            "signature over the exact body"
        );
        assert_eq!(r.headers["x-trun-event"], "run.succeeded");
        assert_eq!(r.headers["x-trun-delivery"], flaky[0]["delivery"]);
        assert_eq!(r.headers["x-team"], "builders");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.body, got[0].body, "a retry sends the same body");
    }
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["event"], "run.succeeded");
    assert_eq!(body["run"]["id"], id.as_str());
    assert_eq!(body["run"]["status"], "success");
    assert_eq!(body["run"]["workflow"], "hooked.yaml");
    assert_eq!(body["run"]["url"], format!("{}/api/v1/runs/{id}", s.base));
    assert!(
        body["run"]["started_at"].as_i64().unwrap() <= body["run"]["finished_at"].as_i64().unwrap()
    );

    // The job's hook hears its own job only; it is unsigned (no secret).
    let job = wait_deliveries(&s, &id, &rx.url("/job"), 1);
    assert_eq!(job[0]["event"], "job.succeeded");
    let got = rx.requests("/job");
    assert_eq!(got.len(), 1);
    assert!(!got[0].headers.contains_key("x-trun-signature-256"));
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["job"]["id"], "build");
    assert_eq!(body["job"]["status"], "success");

    // The server's own hook hears every run event, signed with its key.
    let server = wait_deliveries(&s, &id, &server_hook, 2);
    let events: Vec<&str> = server
        .iter()
        .map(|d| d["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["run.started", "run.succeeded"]);
    for r in rx.requests("/server") {
        assert_eq!(
            r.headers["x-trun-signature-256"],
            hmac_hex(b"server-key", &r.body)
        );
    }

    assert_eq!(
        s.metric("trun_webhook_deliveries_total{result=\"retried\"}"),
        2.0
    );
    assert_eq!(
        s.metric("trun_webhook_deliveries_total{result=\"delivered\"}"),
        4.0
    );
    s.stop().success();
}

#[test]
fn a_hanging_or_flooding_receiver_never_holds_a_run_up() {
    let rx = Receiver::start(&[("/hang", Answer::Hang), ("/flood", Answer::Flood)]);
    let yaml = format!(
        "webhooks:\n  - url: {hang}\n  - url: {flood}\n    events: [run.succeeded]\njobs:\n  a:\n    steps:\n      - run: echo a\n  b:\n    needs: a\n    steps:\n      - run: echo b\n",
        hang = rx.url("/hang"),
        flood = rx.url("/flood"),
    );
    let t = Test::new().file("w.yaml", &yaml);
    let mut s = Server::start(
        &t,
        &[
            "--webhook-timeout",
            "1s",
            "--webhook-attempts",
            "2",
            "--webhook-backoff",
            "100ms",
        ],
    );
    let started = Instant::now();
    let id = s.create(&json!({"workflow": "w.yaml"}));
    assert_eq!(s.wait_done(&id)["status"], "success");
    // Six deliveries to a receiver that never answers, each allowed 1 s per
    // attempt: the run did not wait for any of them.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the run took {:?}",
        started.elapsed()
    );
    let hung = wait_deliveries(&s, &id, &rx.url("/hang"), 6);
    for d in &hung {
        assert_eq!(d["status"], "failed", "{d}");
        let attempts = d["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2);
        for a in attempts {
            assert!(a["status_code"].is_null());
            assert!(a["error"].as_str().unwrap().contains("timed out"), "{a}");
        }
    }
    // A flood of answer is cut to a printable 1 KiB.
    let flood = wait_deliveries(&s, &id, &rx.url("/flood"), 1);
    assert_eq!(flood[0]["status"], "failed");
    for a in flood[0]["attempts"].as_array().unwrap() {
        assert_eq!(a["status_code"], 500);
        let response = a["response"].as_str().unwrap();
        assert!(response.chars().count() <= 1024, "{}", response.len());
        assert!(response.contains("red"));
        assert!(!response.contains('\x1b') && !response.contains('\x07'));
    }
    let out = s.stop();
    out.success();
    assert!(
        !out.stderr.contains("AAAA"),
        "a receiver's answer is never printed"
    );
}

#[test]
fn a_secret_that_is_not_set_is_never_sent_unsigned() {
    let rx = Receiver::start(&[]);
    let yaml = format!(
        "webhooks:\n  - url: {url}\n    secret: ${{{{ secrets.TRUN_TEST_MISSING_KEY }}}}\njobs:\n  a:\n    steps:\n      - run: echo a\n",
        url = rx.url("/signed")
    );
    let t = Test::new().file("w.yaml", &yaml);
    let mut s = Server::start(&t, &[]);
    let id = s.create(&json!({"workflow": "w.yaml"}));
    assert_eq!(s.wait_done(&id)["status"], "success");
    let found = wait_deliveries(&s, &id, &rx.url("/signed"), 4);
    for d in &found {
        assert_eq!(d["status"], "failed");
        let error = d["attempts"][0]["error"].as_str().unwrap();
        assert!(
            error.contains("the secret `secrets.TRUN_TEST_MISSING_KEY` is not set"),
            "{error}"
        );
    }
    assert!(rx.requests("/signed").is_empty());
    s.stop().success();
}

#[test]
fn webhook_mistakes_are_reported_where_they_are() {
    let t = Test::new().workflow(
        r#"
webhooks:
  - url: https://example.com/hook
    events: [run.sucess, job.*]
    secret: ${{ inputs.key }}
    headers:
      X-Trun-Event: mine
      X-Note: "a\nb"
jobs:
  build:
    webhooks:
      - url: http://127.0.0.1:9/x
        events: [run.started]
    steps:
      - run: echo hi
"#,
    );
    let out = t.run(&["validate"]);
    out.status(2);
    let err = &out.stderr;
    let errors: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(
        errors,
        [
            "trun.yaml:2:10: error: webhook URL `https://example.com/hook`: this trun is built without TLS, so it sends webhooks over plain http:// only",
            "trun.yaml:3:14: error: unknown webhook event `run.sucess` (did you mean `run.succeeded`?); events are run.started, run.succeeded, run.failed, run.cancelled, job.started, job.succeeded, job.failed, job.cancelled, job.skipped, or run.*, job.*, *",
            "trun.yaml:4:13: error: a webhook secret is a literal or exactly `${{ secrets.NAME }}`, not `${{ inputs.key }}`",
            "trun.yaml:6:7: error: header `X-Trun-Event` is set by trun and cannot be given",
            "trun.yaml:7:15: error: a header value must be printable text on one line (no newline, no control character)",
            "trun.yaml:12:18: error: a job's webhook hears only its job: `run.started` belongs in the workflow's `webhooks:`",
        ]
    );
}

#[test]
fn workflows_lists_the_roots_files_with_jobs_inputs_and_errors() {
    let t = Test::new()
        .workflow(
            r#"
name: main
inputs:
  env: { type: choice, options: [dev, prod], default: dev, description: where }
  n: { type: number, required: true }
jobs:
  build:
    steps:
      - run: echo build
  test:
    name: Tests
    needs: build
    steps:
      - run: echo test
      - run: echo more
"#,
        )
        .file(
            ".github/workflows/ci.yml",
            "jobs:\n  lint:\n    steps:\n      - run: echo lint\n",
        )
        .file(
            ".github/workflows/broken.yaml",
            "jobs:\n  a:\n    needs: bild\n    steps:\n      - run: echo a\n",
        )
        .file(".github/workflows/notes.txt", "not a workflow");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.yml"), "jobs: {}").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.yml"),
        t.join(".github/workflows/escape.yml"),
    )
    .unwrap();
    let mut s = Server::start(&t, &[]);
    let r = s.get("/api/v1/workflows");
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().unwrap();
    let list = v["workflows"].as_array().unwrap();
    let paths: Vec<&str> = list.iter().map(|w| w["path"].as_str().unwrap()).collect();
    // The symlink out of the root is not listed, nor is a non-YAML file.
    assert_eq!(
        paths,
        [
            "trun.yaml",
            ".github/workflows/broken.yaml",
            ".github/workflows/ci.yml"
        ]
    );
    let main = &list[0];
    assert_eq!(main["name"], "main");
    assert_eq!(main["errors"], json!([]));
    // Jobs exactly as `trun list --json` prints them.
    let listed: Value = serde_json::from_str(&t.run(&["list", "--json"]).stdout).unwrap();
    assert_eq!(main["jobs"], listed);
    assert_eq!(main["jobs"][1]["needs"], json!(["build"]));
    assert_eq!(
        main["inputs"],
        json!([
            {"name": "env", "type": "choice", "description": "where", "required": false, "default": "dev", "options": ["dev", "prod"]},
            {"name": "n", "type": "number", "description": null, "required": true, "default": null, "options": []},
        ])
    );
    let broken = &list[1];
    assert_eq!(broken["jobs"][0]["id"], "a");
    let errors = broken["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = errors[0].as_str().unwrap();
    assert_eq!(
        e,
        ".github/workflows/broken.yaml:3:12: `needs` names unknown job `bild` (help: jobs in this file: a)"
    );
    s.stop().success();
}

#[test]
fn openapi_describes_the_api_and_its_auth() {
    let t = Test::new().workflow("jobs:\n  a:\n    steps:\n      - run: echo a\n");
    let mut s = Server::start(&t, &["--token", "t0ken"]);
    let r = s.get("/openapi.json");
    assert_eq!(r.status().as_u16(), 200);
    let doc: Value = r.json().unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/api/v1/runs", "post"),
        ("/api/v1/runs", "get"),
        ("/api/v1/runs/{id}", "get"),
        ("/api/v1/runs/{id}/events", "get"),
        ("/api/v1/runs/{id}/logs/{job}/{step}", "get"),
        ("/api/v1/runs/{id}/cancel", "post"),
        ("/api/v1/workflows", "get"),
        ("/api/v1/workers", "get"),
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
    // Without the token the document is not served either.
    let anonymous = reqwest::blocking::get(s.url("/openapi.json")).unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    s.stop().success();

    // A server without a token asks for none.
    let mut open = Server::start(&t, &[]);
    let doc: Value = open.get("/openapi.json").json().unwrap();
    assert!(
        doc.get("security").is_none_or(Value::is_null),
        "{}",
        doc["security"]
    );
    open.stop().success();
}

#[test]
fn the_cli_as_a_client_prints_what_it_prints_locally() {
    let t = Test::new().workflow(
        r#"
inputs:
  who: { default: nobody }
jobs:
  build:
    steps:
      - id: hi
        run: echo "hello ${{ inputs.who }}"
  test:
    needs: build
    steps:
      - run: echo testing; exit 3
"#,
    );
    let mut s = Server::start(&t, &["--token", "t0ken"]);
    let client = |args: &[&str]| {
        t.args(args)
            .env("TRUN_SERVER", &s.base)
            .env("TRUN_TOKEN", "t0ken")
            .run()
    };
    // `run` streams the server's events to the same reporter and exits as a
    // local failing run does.
    let ran = client(&["run", "--progress", "plain", "-i", "who=$(id)"]);
    ran.status(1);
    assert!(ran.stderr.contains("[build] hello $(id)"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("run 1: 1 job succeeded, 1 failed"),
        "{}",
        ran.stderr
    );
    client(&["run", "build", "--progress", "plain"]).success();
    // history and show: the same text and JSON as from the workspace itself.
    for args in [
        &["history"][..],
        &["history", "--json"],
        &["show", "1"],
        &["show", "last", "--json"],
        &["logs", "1"],
        &["logs", "1", "build.hi"],
    ] {
        let remote = client(args);
        remote.success();
        let local = t.run(args);
        local.success();
        assert_eq!(remote.stdout, local.stdout, "trun {args:?}");
        assert!(!remote.stdout.is_empty());
    }
    // Errors of the server come back as errors, with its message.
    let missing = client(&["show", "99"]);
    missing.status(2);
    assert!(
        missing.stderr.contains("the server knows no run 99"),
        "{}",
        missing.stderr
    );
    let denied = t
        .args(&["--server", &s.base, "--token", "wrong", "history"])
        .run();
    denied.status(2);
    assert!(denied.stderr.contains("401"), "{}", denied.stderr);
    let invalid = client(&["run", "-f", "nope.yaml"]);
    invalid.status(2);
    assert!(
        invalid
            .stderr
            .contains("there is no workflow file `nope.yaml` under the server's root"),
        "{}",
        invalid.stderr
    );
    s.stop().success();
}

#[test]
fn the_client_cancels_a_run_on_the_server() {
    let marker = common::marker();
    let t = Test::new().workflow(&format!(
        "jobs:\n  long:\n    steps:\n      - run: sleep {marker}\n"
    ));
    let mut s = Server::start(&t, &[]);
    let id = s.create(&json!({"workflow": "trun.yaml"}));
    wait_for("the step's sleep", Duration::from_secs(30), || {
        !common::processes_running(&["sleep", &marker]).is_empty()
    });
    let _reaper = common::Reaper(common::processes_running(&["sleep", &marker]));
    let out = t.args(&["cancel", &id, "--server", &s.base]).run();
    out.success();
    assert_eq!(out.stdout, format!("run {id}: running\n"));
    assert_eq!(s.wait_done(&id)["status"], "cancelled");
    // Once finished, a second cancel is refused with the server's reason.
    let again = t.args(&["cancel", "last", "--server", &s.base]).run();
    again.status(2);
    assert!(
        again.stderr.contains("has already finished (cancelled)"),
        "{}",
        again.stderr
    );
    s.stop().success();
}

#[test]
fn ctrl_c_in_the_client_cancels_the_run_on_the_server() {
    let marker = common::marker();
    let t = Test::new().workflow(&format!(
        "jobs:\n  long:\n    steps:\n      - run: sleep {marker}\n"
    ));
    let mut s = Server::start(&t, &[]);
    let client = t
        .args(&["run", "--progress", "plain"])
        .env("TRUN_SERVER", &s.base)
        .spawn();
    wait_for("the step's sleep", Duration::from_secs(30), || {
        !common::processes_running(&["sleep", &marker]).is_empty()
    });
    let _reaper = common::Reaper(common::processes_running(&["sleep", &marker]));
    client.signal(nix::sys::signal::Signal::SIGINT);
    let out = client.wait(Duration::from_secs(30));
    out.status(130);
    assert!(out.stderr.contains("cancelling run"), "{}", out.stderr);
    wait_for("the sleep to be killed", Duration::from_secs(30), || {
        common::processes_running(&["sleep", &marker]).is_empty()
    });
    let v: Value = s.get("/api/v1/runs").json().unwrap();
    assert_eq!(v["runs"][0]["status"], "cancelled");
    s.stop().success();
}
