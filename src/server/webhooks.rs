//! Webhooks: `trun serve` tells HTTP endpoints when runs and jobs start and
//! end. A workflow's `webhooks:` (and a job's), plus the server's own
//! `--webhook URL`, name the endpoints and the events they want.
//!
//! The path of a delivery: a [`WebhookReporter`] (a consumer of the engine's
//! events, like every other face) turns an event into a signed JSON body and
//! puts it in the store's durable outbox; the delivery task ([`Webhooks::deliver`])
//! claims due rows, POSTs them with a timeout on tasks of their own, records
//! each attempt with the receiver's answer, and retries with exponential
//! backoff until the delivery's attempts run out (`failed`). So a slow or dead
//! receiver never holds a run up, and a delivery outlives a server restart.
//!
//! Signing is GitHub's: `X-Trun-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
//! The outbox keeps the signed headers, never the secret.
//!
//! Trust: a webhook URL is the workflow author's (trusted like a Makefile);
//! what a receiver answers is not: only its status and a bounded, printable
//! start of its body are kept, and nothing of it is printed.
//!
//! This module does not decide run outcomes and is not a general HTTP client.

use super::metrics::Metrics;
use super::runs::RunEntry;
use crate::diag::{did_you_mean_suffix, Diagnostic};
use crate::event::{now_ms, Event, Millis, Status};
use crate::report::Reporter;
use crate::spanned::Sp;
use crate::state::{NewWebhookDelivery, Store, WebhookAttempt, WebhookDelivery, WebhookNext};
use crate::workflow::{Webhook, WorkflowFile};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};

/// Events a webhook can ask for.
pub const EVENTS: [&str; 9] = [
    "run.started",
    "run.succeeded",
    "run.failed",
    "run.cancelled",
    "job.started",
    "job.succeeded",
    "job.failed",
    "job.cancelled",
    "job.skipped",
];
/// Patterns standing for several events.
const WILDCARDS: [&str; 3] = ["run.*", "job.*", "*"];
/// The most webhooks a workflow may declare, its jobs' included.
pub const MAX_HOOKS: usize = 50;
/// How much of a receiver's answer is kept (and shown by the API).
const MAX_RESPONSE_BYTES: usize = 1024;
/// Deliveries in flight at once.
const MAX_IN_FLIGHT: usize = 16;
/// How often the outbox is looked at for retries that came due.
const POLL: Duration = Duration::from_millis(250);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Headers trun sets itself, which a webhook may not override.
const RESERVED: [&str; 7] = [
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "x-trun-event",
    "x-trun-delivery",
    "x-trun-signature-256",
];

/// Where a signing key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Literal(String),
    /// `${{ secrets.NAME }}`: the server's environment variable NAME.
    Env(String),
}

impl SecretSource {
    /// A `secret:` value: `${{ secrets.NAME }}` or a literal; anything else
    /// holding `${{` is refused (by [`check`]).
    pub fn parse(text: &str) -> Result<SecretSource, String> {
        if !text.contains("${{") {
            return Ok(SecretSource::Literal(text.to_string()));
        }
        let inner = text
            .trim()
            .strip_prefix("${{")
            .and_then(|t| t.strip_suffix("}}"))
            .map(str::trim);
        match inner.and_then(|i| i.strip_prefix("secrets.")) {
            Some(name)
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                Ok(SecretSource::Env(name.to_string()))
            }
            _ => Err(format!(
                "a webhook secret is a literal or exactly `${{{{ secrets.NAME }}}}`, not `{text}`"
            )),
        }
    }

    fn resolve(&self) -> Result<Vec<u8>, String> {
        match self {
            SecretSource::Literal(s) => Ok(s.as_bytes().to_vec()),
            SecretSource::Env(name) => match std::env::var_os(name) {
                Some(v) if !v.is_empty() => Ok(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec()),
                _ => Err(format!(
                    "not sent: the secret `secrets.{name}` is not set (the server's environment variable {name} is empty or missing)"
                )),
            },
        }
    }
}

/// One webhook of a plan (or of the server), checked.
#[derive(Debug, Clone)]
pub struct Hook {
    /// The job id whose `webhooks:` it came from; `None` for the workflow's and the server's.
    pub job: Option<String>,
    pub url: String,
    /// Event names or wildcards; empty means every event of the hook's level.
    pub events: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub secret: Option<SecretSource>,
}

impl Hook {
    fn wants(&self, event: &str, job_id: Option<&str>) -> bool {
        if let Some(own) = &self.job {
            // A job's hook hears only its own job.
            if job_id != Some(own.as_str()) {
                return false;
            }
        }
        if self.events.is_empty() {
            return match &self.job {
                Some(_) => event.starts_with("job."),
                None => true,
            };
        }
        self.events.iter().any(|p| {
            p == "*"
                || p == event
                || p.strip_suffix('*')
                    .is_some_and(|prefix| prefix.ends_with('.') && event.starts_with(prefix))
        })
    }
}

fn from_workflow(h: &Webhook, job: Option<&str>) -> Hook {
    Hook {
        job: job.map(str::to_string),
        url: h.url.value.clone(),
        events: h.events.iter().map(|e| e.value.clone()).collect(),
        headers: h
            .headers
            .iter()
            .map(|(k, v)| (k.value.clone(), v.value.0.clone()))
            .collect(),
        secret: h
            .secret
            .as_ref()
            .and_then(|s| SecretSource::parse(&s.value).ok()),
    }
}

/// The webhooks a validated workflow declares, the workflow's first.
pub fn hooks(wf: &WorkflowFile) -> Vec<Hook> {
    let w = &wf.workflow;
    let mut out: Vec<Hook> = w
        .webhooks
        .iter()
        .map(|h| from_workflow(&h.value, None))
        .collect();
    for (id, job) in w.jobs.value.iter() {
        out.extend(
            job.value
                .webhooks
                .iter()
                .map(|h| from_workflow(&h.value, Some(&id.value))),
        );
    }
    out
}

/// Checks every `webhooks:` entry of a workflow: the URL, the event names,
/// the headers, the secret's form.
pub fn check(wf: &WorkflowFile, errs: &mut Vec<Diagnostic>) {
    let w = &wf.workflow;
    let mut count = w.webhooks.len();
    for h in &w.webhooks {
        check_hook(wf, h, false, errs);
    }
    for (_, job) in w.jobs.value.iter() {
        count += job.value.webhooks.len();
        for h in &job.value.webhooks {
            check_hook(wf, h, true, errs);
        }
    }
    if count > MAX_HOOKS {
        let loc = w.webhooks.first().map(|h| h.loc).unwrap_or(w.jobs.loc);
        errs.push(wf.error(
            loc,
            format!("the workflow declares {count} webhooks; at most {MAX_HOOKS} are allowed"),
        ));
    }
}

fn check_hook(wf: &WorkflowFile, h: &Sp<Webhook>, job_level: bool, errs: &mut Vec<Diagnostic>) {
    let hook = &h.value;
    if let Err(why) = check_url(&hook.url.value) {
        errs.push(wf.error(hook.url.loc, why));
    }
    for e in &hook.events {
        let name = e.value.as_str();
        let known = EVENTS.contains(&name) || WILDCARDS.contains(&name);
        if !known {
            let suffix = did_you_mean_suffix(name, EVENTS.iter().chain(WILDCARDS.iter()).copied());
            errs.push(wf.error(
                e.loc,
                format!(
                    "unknown webhook event `{name}`{suffix}; events are {}, or run.*, job.*, *",
                    EVENTS.join(", ")
                ),
            ));
        } else if job_level && name.starts_with("run.") {
            errs.push(wf.error(
                e.loc,
                format!("a job's webhook hears only its job: `{name}` belongs in the workflow's `webhooks:`"),
            ));
        }
    }
    if let Some(s) = &hook.secret {
        if let Err(why) = SecretSource::parse(&s.value) {
            errs.push(wf.error(s.loc, why));
        } else if s.value.is_empty() {
            errs.push(wf.error(
                s.loc,
                "the webhook secret is empty; leave `secret` out to send unsigned",
            ));
        }
    }
    for (name, value) in hook.headers.iter() {
        let lower = name.value.to_ascii_lowercase();
        if reqwest::header::HeaderName::from_bytes(name.value.as_bytes()).is_err() {
            errs.push(wf.error(
                name.loc,
                format!("`{}` is not a valid HTTP header name", name.value),
            ));
        } else if RESERVED.contains(&lower.as_str()) {
            errs.push(wf.error(
                name.loc,
                format!("header `{}` is set by trun and cannot be given", name.value),
            ));
        }
        if reqwest::header::HeaderValue::from_str(&value.value.0).is_err() {
            errs.push(wf.error(
                value.loc,
                "a header value must be printable text on one line (no newline, no control character)",
            ));
        }
    }
}

/// Why a webhook URL cannot be used, if it cannot.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("invalid webhook URL `{url}`: {e}"))?;
    match parsed.scheme() {
        "http" => {}
        "https" => {
            return Err(format!(
                "webhook URL `{url}`: this trun is built without TLS, so it sends webhooks over plain http:// only"
            ))
        }
        other => return Err(format!("webhook URL `{url}`: scheme `{other}` is not http")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("webhook URL `{url}` has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "webhook URL `{url}` holds credentials; send them in `headers` instead"
        ));
    }
    Ok(())
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, as in `X-Trun-Signature-256`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// How deliveries are tried.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles with each failure.
    pub backoff: Duration,
    /// The longest one attempt may take, answer included.
    pub timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

impl DeliveryPolicy {
    /// When attempt `attempt` (1-based) failed at `now`, what comes next.
    fn after_failure(&self, attempt: u32, now: Millis) -> WebhookNext {
        if attempt >= self.max_attempts {
            return WebhookNext::Failed;
        }
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let wait = self.backoff.saturating_mul(factor).min(MAX_BACKOFF);
        WebhookNext::RetryAt(now + wait.as_millis() as i64)
    }
}

/// The server's webhooks: its own `--webhook`s, the outbox and the delivery task.
pub struct Webhooks {
    store: Arc<dyn Store>,
    server_hooks: Vec<Hook>,
    policy: DeliveryPolicy,
    metrics: Arc<Metrics>,
    /// `http://ADDR`, once the server listens: run URLs in bodies are absolute.
    base_url: OnceLock<String>,
    wake: Notify,
}

impl Webhooks {
    pub fn new(
        store: Arc<dyn Store>,
        server_hooks: Vec<Hook>,
        policy: DeliveryPolicy,
        metrics: Arc<Metrics>,
    ) -> Webhooks {
        Webhooks {
            store,
            server_hooks,
            policy,
            metrics,
            base_url: OnceLock::new(),
            wake: Notify::new(),
        }
    }

    pub fn set_base_url(&self, url: String) {
        let _ = self.base_url.set(url);
    }

    /// The reporter that turns `entry`'s events into deliveries to `plan_hooks`
    /// and the server's own hooks.
    pub fn reporter(
        self: &Arc<Self>,
        entry: Arc<RunEntry>,
        plan_hooks: &[Hook],
    ) -> WebhookReporter {
        let mut hooks = self.server_hooks.clone();
        hooks.extend(plan_hooks.iter().cloned());
        WebhookReporter {
            webhooks: self.clone(),
            entry,
            hooks,
            jobs: HashMap::new(),
            job_started: HashMap::new(),
            run_started: None,
        }
    }

    fn enqueue(&self, rows: Vec<NewWebhookDelivery>, refused: usize) {
        if rows.is_empty() {
            return;
        }
        match self.store.enqueue_webhooks(&rows) {
            Ok(()) => {
                for _ in 0..refused {
                    self.count("failed");
                }
                self.wake.notify_one();
            }
            // Not a reason to stop the run; the server's log says it.
            Err(e) => eprintln!(
                "trun: warning: cannot queue {} webhook deliveries: {e}",
                rows.len()
            ),
        }
    }

    fn count(&self, result: &str) {
        self.metrics
            .webhook_deliveries
            .with_label_values(&[result])
            .inc();
    }

    /// The delivery task: claims due deliveries and sends each on a task of
    /// its own, until `stop` turns true. Deliveries left then stay in the
    /// outbox for the next server.
    pub async fn deliver(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let client = match reqwest::Client::builder()
            .timeout(self.policy.timeout)
            .connect_timeout(self.policy.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("trun/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("trun: warning: webhooks are off: cannot build an HTTP client: {e}");
                return;
            }
        };
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        // A claim lasts past the longest attempt, so a live server never sees
        // its own claim lapse.
        let lease = self.policy.timeout + Duration::from_secs(30);
        loop {
            if *stop.borrow() {
                return;
            }
            let free = slots.available_permits();
            let claimed = if free == 0 {
                Vec::new()
            } else {
                let store = self.store.clone();
                let now = now_ms();
                let until = now + lease.as_millis() as i64;
                match tokio::task::spawn_blocking(move || store.claim_webhooks(now, until, free))
                    .await
                {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        eprintln!("trun: warning: cannot read the webhook outbox: {e}");
                        Vec::new()
                    }
                    Err(_) => Vec::new(),
                }
            };
            let full = !claimed.is_empty() && claimed.len() == free;
            for d in claimed {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let this = self.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    this.attempt(&client, d).await;
                    drop(permit);
                    this.wake.notify_one();
                });
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                changed = stop.changed() => if changed.is_err() { return },
            }
        }
    }

    async fn attempt(&self, client: &reqwest::Client, d: WebhookDelivery) {
        let number = d.attempts + 1;
        let at = now_ms();
        let started = std::time::Instant::now();
        let mut request = client.post(&d.url).body(d.body.clone());
        for (k, v) in &d.headers {
            request = request.header(k, v);
        }
        let (status_code, error, response) = match request.send().await {
            Ok(mut resp) => {
                let code = resp.status().as_u16();
                let mut kept = Vec::new();
                // Read at most what is kept; the rest is never read.
                let mut read_error = None;
                while kept.len() < MAX_RESPONSE_BYTES {
                    match resp.chunk().await {
                        Ok(Some(chunk)) => {
                            let room = MAX_RESPONSE_BYTES - kept.len();
                            kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            read_error = Some(describe(&e));
                            break;
                        }
                    }
                }
                (Some(code), read_error, Some(printable(&kept)))
            }
            Err(e) => (None, Some(describe(&e)), None),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let ok = status_code.is_some_and(|c| (200..300).contains(&c));
        let next = if ok {
            WebhookNext::Delivered
        } else {
            self.policy.after_failure(number, at + duration_ms as i64)
        };
        self.count(match next {
            WebhookNext::Delivered => "delivered",
            WebhookNext::RetryAt(_) => "retried",
            WebhookNext::Failed => "failed",
        });
        let attempt = WebhookAttempt {
            attempt: number,
            at,
            duration_ms,
            status_code,
            error,
            response,
        };
        let store = self.store.clone();
        let id = d.id;
        let recorded =
            tokio::task::spawn_blocking(move || store.record_webhook_attempt(id, &attempt, next))
                .await;
        if let Ok(Err(e)) = recorded {
            eprintln!(
                "trun: warning: cannot record webhook delivery {}: {e}",
                d.delivery
            );
        }
    }
}

/// An error of reqwest in words, without the URL (which the record has).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "cannot read the answer"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    let text = if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    };
    printable(text.as_bytes())
}

/// Bytes as text fit to show: invalid UTF-8 and control characters replaced.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_RESPONSE_BYTES)])
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// A delivery id no other delivery has had: 16 hex digits.
fn delivery_id() -> String {
    use sha2::Digest;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(b"webhook");
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hex::encode(&h.finalize()[..8])
}

struct JobSeen {
    job_id: String,
    name: String,
}

/// Turns one run's engine events into outbox rows.
pub struct WebhookReporter {
    webhooks: Arc<Webhooks>,
    entry: Arc<RunEntry>,
    hooks: Vec<Hook>,
    jobs: HashMap<String, JobSeen>,
    job_started: HashMap<String, Millis>,
    run_started: Option<Millis>,
}

impl WebhookReporter {
    fn run_json(&self, status: &str, finished_at: Option<Millis>) -> Value {
        let view = self.entry.view();
        let base = self
            .webhooks
            .base_url
            .get()
            .map(String::as_str)
            .unwrap_or("");
        json!({
            "id": view.id,
            "status": status,
            "workflow": view.workflow,
            "url": format!("{base}{}", view.url),
            "created_at": view.created_at,
            "started_at": self.run_started.or(view.started_at),
            "finished_at": finished_at,
            "store_run_id": view.store_run_id,
        })
    }

    fn job_of(&self, key: &str) -> (String, String) {
        match self.jobs.get(key) {
            Some(j) => (j.job_id.clone(), j.name.clone()),
            // A leg of a matrix computed at run time: `test (1, linux)` is of `test`.
            None => {
                let id = key.split(" (").next().unwrap_or(key).to_string();
                (id, key.to_string())
            }
        }
    }

    fn send(&self, event: &str, job_id: Option<&str>, body: Value) {
        let wanted: Vec<&Hook> = self
            .hooks
            .iter()
            .filter(|h| h.wants(event, job_id))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let run_ref = self.entry.id.clone();
        let now = now_ms();
        let mut refused = 0;
        let rows = wanted
            .into_iter()
            .map(|hook| {
                let delivery = delivery_id();
                let mut body = body.clone();
                body["event"] = json!(event);
                body["delivery"] = json!(delivery);
                let text = body.to_string();
                let mut headers = vec![
                    ("Content-Type".to_string(), "application/json".to_string()),
                    ("X-Trun-Event".to_string(), event.to_string()),
                    ("X-Trun-Delivery".to_string(), delivery.clone()),
                ];
                let mut not_sent = None;
                match hook.secret.as_ref().map(SecretSource::resolve) {
                    Some(Ok(key)) => headers.push((
                        "X-Trun-Signature-256".to_string(),
                        sign(&key, text.as_bytes()),
                    )),
                    Some(Err(why)) => {
                        // Never sent unsigned: recorded failed, with why.
                        refused += 1;
                        not_sent = Some(why);
                    }
                    None => {}
                }
                headers.extend(hook.headers.iter().cloned());
                NewWebhookDelivery {
                    delivery,
                    run_ref: run_ref.clone(),
                    event: event.to_string(),
                    url: hook.url.clone(),
                    headers,
                    body: text,
                    max_attempts: self.webhooks.policy.max_attempts,
                    due_at: now,
                    refused: not_sent,
                }
            })
            .collect();
        self.webhooks.enqueue(rows, refused);
    }
}

fn outcome(status: Status) -> Option<&'static str> {
    Some(match status {
        Status::Success => "succeeded",
        Status::Failure | Status::Interrupted => "failed",
        Status::Cancelled => "cancelled",
        Status::Skipped => "skipped",
        _ => return None,
    })
}

impl Reporter for WebhookReporter {
    fn event(&mut self, ev: &Event) {
        match ev {
            Event::RunStarted { at, jobs, .. } => {
                self.run_started = Some(*at);
                for j in jobs {
                    self.jobs.insert(
                        j.key.clone(),
                        JobSeen {
                            job_id: j.job_id.clone(),
                            name: j.name.clone(),
                        },
                    );
                }
                let body = json!({"run": self.run_json("running", None)});
                self.send("run.started", None, body);
            }
            Event::RunFinished { status, at, .. } => {
                let Some(word) = outcome(*status) else { return };
                let body = json!({"run": self.run_json(status.as_str(), Some(*at))});
                self.send(&format!("run.{word}"), None, body);
            }
            Event::JobStarted { job, at } => {
                self.job_started.insert(job.clone(), *at);
                let (id, name) = self.job_of(job);
                let body = json!({
                    "run": self.run_json("running", None),
                    "job": {"key": job, "id": id, "name": name, "status": "running", "started_at": at},
                });
                self.send("job.started", Some(&id), body);
            }
            Event::JobFinished {
                job,
                status,
                reason,
                at,
                duration_ms,
                outputs,
            } => {
                let Some(word) = outcome(*status) else { return };
                let (id, name) = self.job_of(job);
                let body = json!({
                    "run": self.run_json("running", None),
                    "job": {
                        "key": job, "id": id, "name": name, "status": status.as_str(),
                        "reason": reason, "started_at": self.job_started.get(job),
                        "finished_at": at, "duration_ms": duration_ms, "outputs": outputs,
                    },
                });
                self.send(&format!("job.{word}"), Some(&id), body);
            }
            _ => {}
        }
    }

    fn finish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_githubs_example() {
        // GitHub's documented example: secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn secrets_are_literal_or_a_secrets_reference() {
        assert_eq!(
            SecretSource::parse("abc"),
            Ok(SecretSource::Literal("abc".into()))
        );
        assert_eq!(
            SecretSource::parse("${{ secrets.HOOK_KEY }}"),
            Ok(SecretSource::Env("HOOK_KEY".into()))
        );
        assert!(SecretSource::parse("${{ inputs.x }}").is_err());
        assert!(SecretSource::parse("${{ secrets.A }}-${{ secrets.B }}").is_err());
        assert!(SecretSource::parse("${{ secrets.$(id) }}").is_err());
    }

    #[test]
    fn backoff_doubles_then_gives_up() {
        let p = DeliveryPolicy {
            max_attempts: 4,
            backoff: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(p.after_failure(1, 1000), WebhookNext::RetryAt(1100));
        assert_eq!(p.after_failure(2, 1000), WebhookNext::RetryAt(1200));
        assert_eq!(p.after_failure(3, 1000), WebhookNext::RetryAt(1400));
        assert_eq!(p.after_failure(4, 1000), WebhookNext::Failed);
        let huge = DeliveryPolicy {
            max_attempts: 100,
            ..p
        };
        assert_eq!(huge.after_failure(60, 0), WebhookNext::RetryAt(3_600_000));
    }

    #[test]
    fn hooks_hear_their_level_and_patterns() {
        let hook = |job: Option<&str>, events: &[&str]| Hook {
            job: job.map(str::to_string),
            url: "http://127.0.0.1:1/".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            headers: Vec::new(),
            secret: None,
        };
        assert!(hook(None, &[]).wants("run.started", None));
        assert!(hook(None, &["job.*"]).wants("job.failed", Some("build")));
        assert!(!hook(None, &["job.*"]).wants("run.failed", None));
        assert!(hook(Some("build"), &[]).wants("job.started", Some("build")));
        assert!(!hook(Some("build"), &[]).wants("job.started", Some("test")));
        assert!(!hook(Some("build"), &[]).wants("run.started", None));
        assert!(hook(None, &["*"]).wants("job.skipped", Some("x")));
        assert!(!hook(None, &["run.failed"]).wants("run.succeeded", None));
    }

    #[test]
    fn urls_are_plain_http_with_a_host() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("https://example.com/")
            .unwrap_err()
            .contains("without TLS"));
        assert!(check_url("ftp://x/").is_err());
        assert!(check_url("http://user:pw@host/")
            .unwrap_err()
            .contains("credentials"));
        assert!(check_url("not a url").is_err());
    }
}
