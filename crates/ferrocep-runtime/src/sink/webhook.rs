//! The `webhook` sink: outputs POSTed to a URL, at least once, in queue
//! order.
//!
//! Each request has `Content-Type: application/json`, a `Content-Length`
//! body, the configured `headers` and an `Idempotency-Key`. With `batch: 1`
//! the body is the output's JSON object and the key its id; with `batch: N`
//! the body is a JSON array of up to N outputs (those queued already, or
//! arriving within `linger`) and the key their ids joined with `,`. An id
//! with a control character (not allowed in a header) has it written as
//! `%XX` in the key.
//!
//! A 2xx reply delivers the batch. Connection errors, timeouts (`timeout`
//! per request), `408`, `429` and `5xx` are retried up to `max_retries`
//! times, after a delay drawn uniformly between 0 and the exponential bound
//! (`backoff`: initial, multiplier, max), or after `Retry-After` (seconds or
//! an HTTP date, at most [`MAX_RETRY_AFTER`]) when that is longer. Other
//! replies (`4xx`, and `3xx`: redirects are not followed, a POST must not
//! turn into a GET) and exhausted retries send every output of the batch to
//! the dead-letter file, one line each:
//! `{"reason":"HTTP 400 Bad Request: <the first 200 bytes of the reply>","sink":"outputs.timeout[0]","attempts":3,"output":{...}}`,
//! fsynced before the outputs count as finished with.
//!
//! While a batch is being retried, nothing overtakes it: the queue fills and
//! the source slows down. That is the intended backpressure.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use tokio::sync::mpsc::Receiver;

use super::common::{self, Backoff, SinkMetrics};
use super::{Output, SinkCtx};
use crate::clock::SharedClock;
use crate::config::WebhookConfig;

/// The longest `Retry-After` honoured: a longer one (or a date far ahead)
/// waits this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How much of a failed reply's body goes into the dead-letter reason.
const REASON_BODY: usize = 200;

/// The `Idempotency-Key` header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A webhook sink, ready to run.
pub(crate) struct Webhook {
    ctx: SinkCtx,
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    batch: usize,
    linger_ms: i64,
    timeout: Duration,
    max_retries: u32,
    backoff: Backoff,
    dead_letter: DeadLetter,
    m: SinkMetrics,
    delivered: Arc<AtomicU64>,
}

enum Outcome {
    Delivered,
    Retry {
        reason: String,
        after_ms: Option<u64>,
    },
    Reject(String),
}

/// The file name of a default dead-letter file for the sink `name`: its
/// letters, digits, `.`, `-`, `_`, and `_` for anything else.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Webhook {
    /// Checks `cfg` and builds the client; errors name the field, as
    /// `outputs.timeout[0].url: ...`.
    pub(crate) fn new(
        cfg: &WebhookConfig,
        ctx: SinkCtx,
        delivered: Arc<AtomicU64>,
    ) -> Result<Webhook, String> {
        let name = &ctx.name;
        let url = Url::parse(&cfg.url)
            .map_err(|e| format!("{name}.url: invalid URL '{}': {e}", cfg.url))?;
        match url.scheme() {
            "http" => {}
            "https" if cfg!(feature = "tls") => {}
            "https" => {
                return Err(format!(
                    "{name}.url: '{}' needs https, and this ferrocep was built without the `tls` feature",
                    cfg.url
                ))
            }
            s => return Err(format!("{name}.url: '{}': scheme {s} is not http", cfg.url)),
        }
        if cfg.batch == 0 {
            return Err(format!("{name}.batch: must be at least 1"));
        }
        if cfg.timeout.0 <= 0 {
            return Err(format!("{name}.timeout: must be more than 0"));
        }
        if !(cfg.backoff.multiplier.is_finite() && cfg.backoff.multiplier >= 1.0) {
            return Err(format!(
                "{name}.backoff.multiplier: must be a number of at least 1, not {}",
                cfg.backoff.multiplier
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in &cfg.headers {
            let hn = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("{name}.headers.{k}: invalid header name: {e}"))?;
            if matches!(
                hn.as_str(),
                "content-length" | "transfer-encoding" | "host" | IDEMPOTENCY_KEY
            ) {
                return Err(format!(
                    "{name}.headers.{k}: set by the sink, not by the config"
                ));
            }
            let hv = HeaderValue::from_str(v)
                .map_err(|e| format!("{name}.headers.{k}: invalid header value: {e}"))?;
            headers.insert(hn, hv);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("{name}: cannot build the HTTP client: {}", chain(&e)))?;
        let dead_letter = match &cfg.dead_letter {
            Some(p) => ctx.config_dir.join(p),
            None => ctx
                .data_dir
                .join("dead-letter")
                .join(format!("{}.jsonl", sanitize(name))),
        };
        Ok(Webhook {
            client,
            url,
            headers,
            batch: cfg.batch,
            linger_ms: cfg.linger.map_or(0, |l| l.0.max(0)),
            timeout: Duration::from_millis(cfg.timeout.0 as u64),
            max_retries: cfg.max_retries,
            backoff: Backoff::new(&cfg.backoff),
            dead_letter: DeadLetter {
                path: dead_letter,
                file: None,
            },
            m: SinkMetrics::new(&ctx),
            ctx,
            delivered,
        })
    }

    /// The sink's task: until the queue is closed and empty.
    pub(crate) async fn run(mut self, mut rx: Receiver<Arc<Output>>) -> Result<(), String> {
        let mut batch = Vec::with_capacity(self.batch);
        while self.next_batch(&mut rx, &mut batch).await {
            self.m.set_queue(&rx, batch.len());
            self.deliver(&batch, &rx).await?;
            common::finish(&self.delivered, batch.len());
            self.m.set_queue(&rx, 0);
        }
        Ok(())
    }

    /// The next batch: what is queued now, up to `batch`, and with `linger`
    /// what arrives before it has passed. False once the queue is closed
    /// and empty.
    async fn next_batch(&self, rx: &mut Receiver<Arc<Output>>, out: &mut Vec<Arc<Output>>) -> bool {
        if !common::recv_batch(rx, out, self.batch).await {
            return false;
        }
        if out.len() < self.batch && self.linger_ms > 0 {
            let until = self.ctx.clock.now_ms().saturating_add(self.linger_ms);
            while out.len() < self.batch {
                tokio::select! {
                    o = rx.recv() => match o {
                        Some(o) => out.push(o),
                        None => break,
                    },
                    () = common::sleep_until(&self.ctx.clock, until, || {}) => break,
                }
            }
        }
        true
    }

    /// Delivers or dead-letters `batch`, retrying as the module docs say.
    async fn deliver(
        &mut self,
        batch: &[Arc<Output>],
        rx: &Receiver<Arc<Output>>,
    ) -> Result<(), String> {
        let body = body(batch);
        let key = idempotency_key(batch);
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let outcome = self.attempt(body.clone(), &key).await;
            let reason = match outcome {
                Outcome::Delivered => {
                    self.m.delivered.inc_by(batch.len() as u64);
                    return Ok(());
                }
                Outcome::Retry { reason, after_ms } if attempts <= self.max_retries => {
                    self.m.retries.inc();
                    let mut delay = self.backoff.delay_ms(attempts);
                    if let Some(a) = after_ms {
                        delay = delay.max(a);
                    }
                    tracing::debug!(
                        sink = %self.ctx.name,
                        url = %self.url,
                        "{reason}; retry {attempts} of {} in {delay} ms",
                        self.max_retries
                    );
                    let until = self.ctx.clock.now_ms().saturating_add(delay as i64);
                    common::sleep_until(&self.ctx.clock, until, || {
                        self.m.set_queue(rx, batch.len())
                    })
                    .await;
                    continue;
                }
                Outcome::Retry { reason, .. } | Outcome::Reject(reason) => reason,
            };
            tracing::warn!(
                sink = %self.ctx.name,
                url = %self.url,
                path = %self.dead_letter.path.display(),
                "{} outputs dead-lettered after {attempts} attempts: {reason}",
                batch.len()
            );
            let lines = dead_letter_lines(batch, &reason, &self.ctx.name, attempts);
            self.write_dead_letters(lines, rx, batch.len()).await?;
            self.m.dead_letters.inc_by(batch.len() as u64);
            return Ok(());
        }
    }

    /// Appends `lines` to the dead-letter file and fsyncs it, retrying
    /// (and holding the queue) until that works: never dropped.
    async fn write_dead_letters(
        &mut self,
        lines: Vec<u8>,
        rx: &Receiver<Arc<Output>>,
        in_flight: usize,
    ) -> Result<(), String> {
        let backoff = Backoff::local_io();
        let mut off = 0;
        let mut retry = 0;
        let mut lines = lines;
        loop {
            let mut dl = std::mem::take(&mut self.dead_letter);
            let (back, l, o, res) = common::blocking(&self.ctx.name, move || {
                let r = dl.append(&lines, &mut off);
                (dl, lines, off, r)
            })
            .await?;
            (self.dead_letter, lines, off) = (back, l, o);
            match res {
                Ok(()) => return Ok(()),
                Err(e) => {
                    retry += 1;
                    let delay = backoff.delay_ms(retry);
                    tracing::error!(
                        sink = %self.ctx.name,
                        "{e}; the outputs wait, retry {retry} in {delay} ms"
                    );
                    let until = self.ctx.clock.now_ms().saturating_add(delay as i64);
                    common::sleep_until(&self.ctx.clock, until, || self.m.set_queue(rx, in_flight))
                        .await;
                }
            }
        }
    }

    /// One request.
    async fn attempt(&self, body: Vec<u8>, key: &HeaderValue) -> Outcome {
        let req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(IDEMPOTENCY_KEY, key.clone())
            .timeout(self.timeout)
            .body(body);
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    reason: self.describe(&e),
                    after_ms: None,
                }
            }
        };
        let status = resp.status();
        if status.is_success() {
            // Read the reply, so that the connection can be used again.
            let mut read = 0;
            while let Ok(Some(c)) = resp.chunk().await {
                read += c.len();
                if read > 1 << 16 {
                    break;
                }
            }
            return Outcome::Delivered;
        }
        let after_ms = retry_after_ms(resp.headers(), &self.ctx.clock);
        let mut text = Vec::new();
        while text.len() < REASON_BODY {
            match resp.chunk().await {
                Ok(Some(c)) => text.extend_from_slice(&c),
                _ => break,
            }
        }
        text.truncate(REASON_BODY);
        let mut reason = format!(
            "HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .trim_end()
        .to_string();
        if !text.is_empty() {
            reason.push_str(": ");
            reason.push_str(&String::from_utf8_lossy(&text));
        }
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
        {
            Outcome::Retry { reason, after_ms }
        } else {
            Outcome::Reject(reason)
        }
    }

    fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            format!("no reply within {} ms", self.timeout.as_millis())
        } else if e.is_connect() {
            format!("cannot connect: {}", chain(e))
        } else {
            format!("request failed: {}", chain(e))
        }
    }
}

/// An error and its sources, `: `-separated (reqwest's own text is only
/// the outermost layer).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The request body: the output, or for several a JSON array of them.
fn body(batch: &[Arc<Output>]) -> Vec<u8> {
    if let [one] = batch {
        return one.line.clone();
    }
    let mut b = Vec::with_capacity(batch.iter().map(|o| o.line.len() + 1).sum::<usize>() + 2);
    b.push(b'[');
    for (i, o) in batch.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(&o.line);
    }
    b.push(b']');
    b
}

/// The ids joined with `,`, control characters as `%XX`.
fn idempotency_key(batch: &[Arc<Output>]) -> HeaderValue {
    let mut k = Vec::new();
    for (i, o) in batch.iter().enumerate() {
        if i > 0 {
            k.push(b',');
        }
        for &b in o.id.as_bytes() {
            if (b < 0x20 && b != b'\t') || b == 0x7f {
                k.extend_from_slice(format!("%{b:02X}").as_bytes());
            } else {
                k.push(b);
            }
        }
    }
    // Only control characters are refused, and they are escaped above.
    HeaderValue::from_bytes(&k).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `Retry-After` in ms from now (by `clock`), capped at
/// [`MAX_RETRY_AFTER`]; none if absent or unreadable.
fn retry_after_ms(h: &HeaderMap, clock: &SharedClock) -> Option<u64> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let cap = MAX_RETRY_AFTER.as_millis() as u64;
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.saturating_mul(1000).min(cap));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at_ms = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let now = clock.now_ms().max(0) as u64;
    Some(at_ms.saturating_sub(now).min(cap))
}

/// The dead-letter lines of `batch`.
fn dead_letter_lines(batch: &[Arc<Output>], reason: &str, sink: &str, attempts: u32) -> Vec<u8> {
    let head = format!(
        "{{\"reason\":{},\"sink\":{},\"attempts\":{attempts},\"output\":",
        serde_json::Value::from(reason),
        serde_json::Value::from(sink)
    );
    let mut out = Vec::new();
    for o in batch {
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&o.line);
        out.extend_from_slice(b"}\n");
    }
    out
}

/// The dead-letter file, opened at the first dead letter.
#[derive(Default)]
struct DeadLetter {
    path: PathBuf,
    file: Option<File>,
}

impl DeadLetter {
    /// Appends `lines[*off..]` and fsyncs.
    fn append(&mut self, lines: &[u8], off: &mut usize) -> Result<(), String> {
        let p = self.path.display();
        let f = match &mut self.file {
            Some(f) => f,
            None => {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("dead-letter directory {}: {e}", dir.display()))?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(|e| format!("dead-letter file {p}: cannot open: {e}"))?;
                // A new file's directory entry must be durable too.
                super::file::sync_dir(&self.path)?;
                self.file.insert(f)
            }
        };
        common::write_from(f, lines, off)
            .map_err(|e| format!("dead-letter file {p}: cannot write: {e}"))?;
        f.sync_data()
            .map_err(|e| format!("dead-letter file {p}: fsync failed: {e}"))
    }
}
