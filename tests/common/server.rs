//! A running `trun serve` on 127.0.0.1 (a port the kernel picks) and a blocking
//! HTTP client for it: what the server tests drive.

use super::{wait_for, Running, Test};
use reqwest::blocking::{Client, Response};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::time::Duration;

pub struct Server {
    pub running: Option<Running>,
    pub base: String,
    pub token: Option<String>,
    pub client: Client,
}

impl Server {
    /// Starts `trun serve --bind 127.0.0.1:0 -j 2 EXTRA…` (`-j 2` unless
    /// EXTRA has a `-j`) in the test's workspace and waits until it listens.
    pub fn start(t: &Test, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0"];
        if !extra.contains(&"-j") {
            args.extend(["-j", "2"]);
        }
        args.extend_from_slice(extra);
        let running = t.args(&args).spawn();
        let mut base = String::new();
        wait_for("the server to listen", Duration::from_secs(30), || {
            let err = running.stderr_so_far();
            match err.split_once(" on http://") {
                Some((_, rest)) => {
                    base = format!("http://{}", rest.lines().next().unwrap_or("").trim());
                    true
                }
                None => false,
            }
        });
        let token = extra
            .iter()
            .position(|a| *a == "--token")
            .map(|i| extra[i + 1].to_string());
        Server {
            running: Some(running),
            base,
            token,
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth(&self, rb: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub fn get(&self, path: &str) -> Response {
        self.auth(self.client.get(self.url(path))).send().unwrap()
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.auth(self.client.post(self.url(path)).json(body))
            .send()
            .unwrap()
    }

    /// Creates a run and returns its id (expects 201).
    pub fn create(&self, body: &Value) -> String {
        let r = self.post("/api/v1/runs", body);
        let status = r.status().as_u16();
        let v: Value = r.json().unwrap();
        assert_eq!(status, 201, "create: {v}");
        assert_eq!(
            v["url"],
            format!("/api/v1/runs/{}", v["id"].as_str().unwrap())
        );
        v["id"].as_str().unwrap().to_string()
    }

    /// `GET /api/v1/runs/{id}` (expects 200).
    pub fn run(&self, id: &str) -> Value {
        let r = self.get(&format!("/api/v1/runs/{id}"));
        assert_eq!(r.status().as_u16(), 200);
        r.json().unwrap()
    }

    /// Polls a run until `cond` holds of it; returns its last state.
    pub fn wait_run(&self, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        wait_for(what, Duration::from_secs(60), || {
            last = self.run(id);
            cond(&last)
        });
        last
    }

    /// Polls a run until it has ended; returns its last state.
    pub fn wait_done(&self, id: &str) -> Value {
        self.wait_run(id, "the run to finish", |r| {
            !matches!(
                r["status"].as_str(),
                Some("queued" | "running" | "paused" | "waiting")
            )
        })
    }

    /// Reads the SSE stream of a run to its end: (id, event, data) in order.
    pub fn events(&self, id: &str, last_event_id: Option<u64>) -> Vec<(u64, String, Value)> {
        let mut rb = self.auth(
            self.client
                .get(self.url(&format!("/api/v1/runs/{id}/events"))),
        );
        if let Some(n) = last_event_id {
            rb = rb.header("Last-Event-ID", n.to_string());
        }
        let r = rb.send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let mut out = Vec::new();
        let (mut ev_id, mut kind, mut data) = (0, String::new(), String::new());
        for line in BufReader::new(r).lines() {
            let line = line.unwrap();
            if let Some(v) = line.strip_prefix("id:") {
                ev_id = v.trim().parse().unwrap();
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            } else if line.is_empty() && !data.is_empty() {
                out.push((ev_id, kind.clone(), serde_json::from_str(&data).unwrap()));
                data.clear();
            }
        }
        out
    }

    /// The value of the metric line starting with `line_prefix` (name and labels).
    pub fn metric(&self, line_prefix: &str) -> f64 {
        self.metric_or(line_prefix)
            .unwrap_or_else(|| panic!("no metric `{line_prefix}`"))
    }

    /// The value of a metric line, if the server exports it.
    pub fn metric_or(&self, line_prefix: &str) -> Option<f64> {
        let text = self.get("/metrics").text().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(line_prefix)?.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
    }

    /// SIGTERM, then waits for the server to exit.
    pub fn stop(&mut self) -> super::Output {
        let running = self.running.take().unwrap();
        running.signal(nix::sys::signal::Signal::SIGTERM);
        running.wait(Duration::from_secs(30))
    }
}

impl Server {
    /// Like [`Server::start`], with `env` set in the server's environment
    /// (`${{ secrets.NAME }}` of a webhook reads it there).
    pub fn start_env(t: &Test, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0", "-j", "2"];
        args.extend_from_slice(extra);
        let mut invocation = t.args(&args);
        for (k, v) in env {
            invocation = invocation.env(k, v);
        }
        let running = invocation.spawn();
        let mut base = String::new();
        wait_for(
            "the server to listen",
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
            running: Some(running),
            base,
            token: None,
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }
}

/// Intervals `[start, end)` in ns from the `t-NAME` files steps wrote (`start
/// end`); the most that overlapped at any instant.
pub fn most_at_once(t: &Test, names: &[String]) -> usize {
    let spans: Vec<(u128, u128)> = names
        .iter()
        .map(|n| {
            let text = t.read(&format!("t-{n}"));
            let mut words = text.split_whitespace();
            let start = words.next().unwrap().parse().unwrap();
            let end = words.next().unwrap().parse().unwrap();
            (start, end)
        })
        .collect();
    spans
        .iter()
        .map(|(s, _)| spans.iter().filter(|(a, b)| a <= s && s < b).count())
        .max()
        .unwrap()
}

/// The most jobs (or, with `runs`, runs) the recorded transitions of the
/// runs `all` (as `GET /api/v1/runs/{id}` returns them) say were running at
/// one instant.
pub fn most_running(all: &[Value], runs: bool) -> usize {
    let mut edges: Vec<(u64, i32)> = Vec::new();
    for run in all {
        for t in run["transitions"].as_array().unwrap() {
            if t.get("job").is_some() == runs {
                continue;
            }
            let at = t["at"].as_u64().unwrap();
            match (t["from"].as_str(), t["to"].as_str()) {
                (_, Some("running")) => edges.push((at, 1)),
                (Some("running"), _) => edges.push((at, -1)),
                _ => {}
            }
        }
    }
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// The reasons of the runs' (`runs`) or their jobs' changes to `waiting`.
pub fn waiting_reasons(all: &[Value], runs: bool) -> Vec<String> {
    all.iter()
        .flat_map(|r| r["transitions"].as_array().unwrap().clone())
        .filter(|t| t.get("job").is_none() == runs && t["to"] == "waiting")
        .map(|t| t["reason"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The run's own last recorded transition (not a job's).
pub fn last_run_transition(run: &Value) -> Value {
    run["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|t| t.get("job").is_none())
        .unwrap()
        .clone()
}
