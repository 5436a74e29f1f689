//! The `webhook` sink: outputs POSTed to a URL, at least once, in queue
//! order.
//!
//! Each request has `Content-Type: application/json`, a `Content-Length`
//! body, the configured `headers` and an `Idempotency-Key`. With `batch: 1`
//! the body is the output's JSON object and the key its id; with `batch: N`
//! (N > 1) the body is always a JSON array, of up to N outputs (those queued already, or
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

use super::common::{self, Backoff, SinkMetrics};
use super::{Queued, SinkCtx, SinkRx};
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
    pub(crate) async fn run(mut self, mut rx: SinkRx) -> Result<(), String> {
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
    async fn next_batch(&self, rx: &mut SinkRx, out: &mut Vec<Queued>) -> bool {
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
    async fn deliver(&mut self, batch: &[Queued], rx: &SinkRx) -> Result<(), String> {
        let body = body(batch, self.batch > 1);
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
        rx: &SinkRx,
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

/// The request body: the output, or with `array` (a sink whose `batch` is
/// over 1, even when it sends fewer) a JSON array of the outputs, so that
/// the receiver sees one shape.
fn body(batch: &[Queued], array: bool) -> Vec<u8> {
    if let ([one], false) = (batch, array) {
        return one.line().to_vec();
    }
    let mut b = Vec::with_capacity(batch.iter().map(|o| o.line().len() + 1).sum::<usize>() + 2);
    b.push(b'[');
    for (i, o) in batch.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(o.line());
    }
    b.push(b']');
    b
}

/// The ids joined with `,`, control characters as `%XX`.
fn idempotency_key(batch: &[Queued]) -> HeaderValue {
    let mut k = Vec::new();
    for (i, o) in batch.iter().enumerate() {
        if i > 0 {
            k.push(b',');
        }
        for &b in o.id().as_bytes() {
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
fn dead_letter_lines(batch: &[Queued], reason: &str, sink: &str, attempts: u32) -> Vec<u8> {
    let head = format!(
        "{{\"reason\":{},\"sink\":{},\"attempts\":{attempts},\"output\":",
        serde_json::Value::from(reason),
        serde_json::Value::from(sink)
    );
    let mut out = Vec::new();
    for o in batch {
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(o.line());
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::net::SocketAddr;
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;
    use std::time::Instant;

    use axum::extract::State;
    use axum::http::HeaderMap as AxHeaders;
    use axum::response::{IntoResponse, Response};

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::{BackoffConfig, Millis, SinkConfig};
    use crate::sink::common::testutil::{ctx, ctx_with_clock, out, rt, wait_delivered};
    use crate::sink::{spawn_sink, Spawned};

    /// What the receiver does with a request.
    #[derive(Clone, Debug)]
    enum Act {
        Ok,
        Status(u16, Option<String>, &'static str),
        /// Replies 200 after this long (after the sink's timeout).
        Stall(Duration),
    }

    #[derive(Clone, Debug)]
    struct Req {
        key: String,
        content_length: Option<String>,
        chunked: bool,
        content_type: Option<String>,
        token: Option<String>,
        body: Vec<u8>,
        at: Instant,
    }

    /// A real HTTP receiver: acts on each request by its script, then by
    /// its default, and records what it got.
    #[derive(Default)]
    struct Receiver {
        script: Mutex<VecDeque<Act>>,
        default: Mutex<Option<Act>>,
        got: Mutex<Vec<Req>>,
    }

    impl Receiver {
        fn script(&self, acts: impl IntoIterator<Item = Act>) {
            self.script.lock().unwrap().extend(acts);
        }
        fn set_default(&self, a: Act) {
            *self.default.lock().unwrap() = Some(a);
        }
        fn got(&self) -> Vec<Req> {
            self.got.lock().unwrap().clone()
        }
    }

    async fn hook(
        State(r): State<Arc<Receiver>>,
        h: AxHeaders,
        body: axum::body::Bytes,
    ) -> Response {
        let s = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        r.got.lock().unwrap().push(Req {
            key: s("idempotency-key").unwrap_or_default(),
            content_length: s("content-length"),
            chunked: h.contains_key("transfer-encoding"),
            content_type: s("content-type"),
            token: s("x-token"),
            body: body.to_vec(),
            at: Instant::now(),
        });
        let act = r.script.lock().unwrap().pop_front();
        let act = act
            .or_else(|| r.default.lock().unwrap().clone())
            .unwrap_or(Act::Ok);
        match act {
            Act::Ok => "ok".into_response(),
            Act::Status(code, retry_after, body) => {
                let mut resp =
                    (axum::http::StatusCode::from_u16(code).unwrap(), body).into_response();
                if let Some(ra) = retry_after {
                    resp.headers_mut()
                        .insert("retry-after", ra.parse().unwrap());
                }
                resp
            }
            Act::Stall(d) => {
                tokio::time::sleep(d).await;
                "late".into_response()
            }
        }
    }

    fn serve(rt: &tokio::runtime::Runtime, l: tokio::net::TcpListener) -> Arc<Receiver> {
        let r = Arc::new(Receiver::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(r.clone());
        rt.spawn(async move { axum::serve(l, app).await });
        r
    }

    fn receiver(rt: &tokio::runtime::Runtime) -> (Arc<Receiver>, SocketAddr) {
        let l = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = l.local_addr().unwrap();
        (serve(rt, l), addr)
    }

    fn cfg(addr: SocketAddr) -> WebhookConfig {
        WebhookConfig {
            url: format!("http://{addr}/hook"),
            headers: [("X-Token".to_string(), "secret".to_string())].into(),
            batch: 1,
            linger: None,
            timeout: Millis(2_000),
            max_retries: 5,
            backoff: BackoffConfig {
                initial: Millis(10),
                max: Millis(50),
                multiplier: 2.0,
            },
            dead_letter: None,
        }
    }

    fn start(
        rt: &tokio::runtime::Runtime,
        c: WebhookConfig,
        ctx: SinkCtx,
        queue: usize,
    ) -> Spawned {
        spawn_sink(&SinkConfig::Webhook(c), ctx, rt.handle(), queue).unwrap()
    }

    fn close(rt: &tokio::runtime::Runtime, s: Spawned) {
        drop(s.handle.tx);
        rt.block_on(s.handle.task).unwrap().unwrap();
    }

    fn line(i: usize) -> String {
        String::from_utf8(out(i).line().to_vec()).unwrap()
    }

    /// The ids the receiver saw, first time each, in order.
    fn first_seen(got: &[Req]) -> Vec<String> {
        let mut seen = Vec::new();
        for r in got {
            for k in r.key.split(',') {
                if !seen.iter().any(|s| s == k) {
                    seen.push(k.to_string());
                }
            }
        }
        seen
    }

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("p/t/{i}")).collect()
    }

    #[test]
    fn posts_each_output_with_its_key_and_a_content_length() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let (r, addr) = receiver(&rt);
        let c = ctx("outputs.timeout[0]", dir.path());
        let metrics = c.metrics.clone();
        let s = start(&rt, cfg(addr), c, 16);
        let t0 = Instant::now();
        s.handle.tx.blocking_send(out(0)).unwrap();
        wait_delivered(&s.handle.delivered, 1);
        assert!(r.got()[0].at - t0 < Duration::from_secs(2), "prompt");
        for i in 1..5 {
            s.handle.tx.blocking_send(out(i)).unwrap();
        }
        close(&rt, s);
        let got = r.got();
        assert_eq!(got.len(), 5);
        for (i, q) in got.iter().enumerate() {
            assert_eq!(q.key, format!("p/t/{i}"));
            assert_eq!(String::from_utf8(q.body.clone()).unwrap(), line(i));
            assert_eq!(q.content_length, Some(q.body.len().to_string()));
            assert!(!q.chunked);
            assert_eq!(q.content_type.as_deref(), Some("application/json"));
            assert_eq!(q.token.as_deref(), Some("secret"));
        }
        let text = metrics.encode();
        assert!(
            text.contains("ferrocep_sink_delivered_total{sink=\"outputs.timeout[0]\"} 5"),
            "{text}"
        );
        assert!(!dir.path().join("data/dead-letter").exists());
    }

    #[test]
    fn retries_5xx_and_timeouts_until_delivered_with_the_same_key() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let (r, addr) = receiver(&rt);
        r.script([
            Act::Status(500, None, "boom"),
            Act::Status(408, None, ""),
            Act::Stall(Duration::from_millis(1_500)),
            Act::Status(503, None, ""),
        ]);
        let c = ctx("w", dir.path());
        let metrics = c.metrics.clone();
        let mut w = cfg(addr);
        w.timeout = Millis(300);
        let s = start(&rt, w, c, 16);
        s.handle.tx.blocking_send(out(0)).unwrap();
        s.handle.tx.blocking_send(out(1)).unwrap();
        close(&rt, s);
        let got = r.got();
        let keys: Vec<_> = got.iter().map(|q| q.key.as_str()).collect();
        assert_eq!(keys, ["p/t/0", "p/t/0", "p/t/0", "p/t/0", "p/t/0", "p/t/1"]);
        let text = metrics.encode();
        assert!(
            text.contains("ferrocep_sink_retries_total{sink=\"w\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("ferrocep_sink_delivered_total{sink=\"w\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ferrocep_sink_dead_letters_total{sink=\"w\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn retry_after_in_seconds_is_honoured() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let (r, addr) = receiver(&rt);
        r.script([Act::Status(429, Some("1".into()), "slow down")]);
        let s = start(&rt, cfg(addr), ctx("w", dir.path()), 16);
        s.handle.tx.blocking_send(out(0)).unwrap();
        close(&rt, s);
        let got = r.got();
        assert_eq!(got.len(), 2);
        let gap = got[1].at - got[0].at;
        // The backoff alone would be at most 10 ms.
        assert!(gap >= Duration::from_millis(900), "{gap:?}");
        assert!(gap < Duration::from_secs(10), "{gap:?}");
    }

    /// An HTTP date, on a clock the test moves: no retry before it.
    #[test]
    fn retry_after_as_a_date_waits_for_the_clock() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let (r, addr) = receiver(&rt);
        let now_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let clock = ManualClock::new(now_ms);
        let at = UNIX_EPOCH + Duration::from_millis(now_ms as u64 + 60_000);
        r.script([Act::Status(503, Some(httpdate::fmt_http_date(at)), "")]);
        let s = start(
            &rt,
            cfg(addr),
            ctx_with_clock("w", dir.path(), Arc::new(clock.clone())),
            16,
        );
        s.handle.tx.blocking_send(out(0)).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(r.got().len(), 1, "no retry before the date");
        clock.advance(30_000);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(r.got().len(), 1, "no retry before the date");
        clock.advance(31_000);
        wait_delivered(&s.handle.delivered, 1);
        assert_eq!(r.got().len(), 2);
        close(&rt, s);
    }

    #[test]
    fn rejected_and_exhausted_outputs_go_to_the_dead_letter_file_in_order() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let (r, addr) = receiver(&rt);
        r.script([
            Act::Status(400, None, "missing field 'x'"),
            Act::Status(503, None, "down"),
            Act::Status(503, None, "down"),
            Act::Status(502, None, "still down"),
        ]);
        let c = ctx("outputs.timeout[0]", dir.path());
        let metrics = c.metrics.clone();
        let mut w = cfg(addr);
        w.max_retries = 2;
        let s = start(&rt, w, c, 16);
        for i in 0..3 {
            s.handle.tx.blocking_send(out(i)).unwrap();
        }
        close(&rt, s);
        let keys: Vec<_> = r.got().iter().map(|q| q.key.clone()).collect();
        assert_eq!(keys, ["p/t/0", "p/t/1", "p/t/1", "p/t/1", "p/t/2"]);
        let dl = dir.path().join("data/dead-letter/outputs.timeout_0_.jsonl");
        let text = std::fs::read_to_string(&dl).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            lines[0],
            serde_json::json!({
                "reason": "HTTP 400 Bad Request: missing field 'x'",
                "sink": "outputs.timeout[0]",
                "attempts": 1,
                "output": {"id": "p/t/0", "n": 0},
            })
        );
        assert_eq!(lines[1]["reason"], "HTTP 502 Bad Gateway: still down");
        assert_eq!(lines[1]["attempts"], 3);
        assert_eq!(lines[1]["output"]["id"], "p/t/1");
        let m = metrics.encode();
        assert!(
            m.contains("ferrocep_sink_dead_letters_total{sink=\"outputs.timeout[0]\"} 2"),
            "{m}"
        );
        assert!(
            m.contains("ferrocep_sink_delivered_total{sink=\"outputs.timeout[0]\"} 1"),
            "{m}"
        );
    }

    #[test]
    fn a_configured_dead_letter_file_is_relative_to_the_config() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let (r, addr) = receiver(&rt);
        r.script([Act::Status(404, None, "")]);
        let mut w = cfg(addr);
        w.dead_letter = Some("dl/hook.jsonl".into());
        let s = start(&rt, w, ctx("w", dir.path()), 16);
        s.handle.tx.blocking_send(out(0)).unwrap();
        close(&rt, s);
        let text = std::fs::read_to_string(dir.path().join("config/dl/hook.jsonl")).unwrap();
        assert!(
            text.starts_with("{\"reason\":\"HTTP 404 Not Found\""),
            "{text}"
        );
    }

    #[test]
    fn batches_what_arrives_within_linger() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let (r, addr) = receiver(&rt);
        let mut w = cfg(addr);
        w.batch = 3;
        w.linger = Some(Millis(300));
        let s = start(&rt, w, ctx("w", dir.path()), 16);
        for i in 0..7 {
            s.handle.tx.blocking_send(out(i)).unwrap();
        }
        wait_delivered(&s.handle.delivered, 7);
        close(&rt, s);
        let got = r.got();
        let keys: Vec<_> = got.iter().map(|q| q.key.as_str()).collect();
        assert_eq!(keys, ["p/t/0,p/t/1,p/t/2", "p/t/3,p/t/4,p/t/5", "p/t/6"]);
        let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
        assert_eq!(
            body,
            serde_json::json!([{"id":"p/t/0","n":0},{"id":"p/t/1","n":1},{"id":"p/t/2","n":2}])
        );
        let last: serde_json::Value = serde_json::from_slice(&got[2].body).unwrap();
        assert_eq!(last, serde_json::json!([{"id":"p/t/6","n":6}]));
        assert_eq!(got[0].content_length, Some(got[0].body.len().to_string()));
    }

    #[test]
    fn nothing_is_lost_while_the_receiver_is_down() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let l = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let mut w = cfg(addr);
        w.max_retries = 10_000;
        let s = start(&rt, w, ctx("w", dir.path()), 64);
        for i in 0..10 {
            s.handle.tx.blocking_send(out(i)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(s.handle.delivered.load(Ordering::Acquire), 0);
        let l = rt.block_on(tokio::net::TcpListener::bind(addr)).unwrap();
        let r = serve(&rt, l);
        wait_delivered(&s.handle.delivered, 10);
        close(&rt, s);
        assert_eq!(first_seen(&r.got()), ids(0..10));
    }

    /// Connections closed without a reply are retried.
    #[test]
    fn a_closed_connection_is_retried() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let l = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = l.local_addr().unwrap();
        let s = start(&rt, cfg(addr), ctx("w", dir.path()), 16);
        s.handle.tx.blocking_send(out(0)).unwrap();
        let l = rt.block_on(async move {
            use tokio::io::AsyncReadExt;
            for _ in 0..2 {
                let (mut c, _) = l.accept().await.unwrap();
                let mut b = [0u8; 64];
                let _ = c.read(&mut b).await;
            }
            l
        });
        let r = serve(&rt, l);
        wait_delivered(&s.handle.delivered, 1);
        close(&rt, s);
        assert_eq!(first_seen(&r.got()), ids(0..1));
    }

    /// A receiver that keeps failing holds the queue: `try_send` finds it
    /// full and `blocking_send` waits, until the receiver recovers.
    #[test]
    fn a_failing_receiver_makes_the_engine_wait() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let (r, addr) = receiver(&rt);
        r.set_default(Act::Status(503, None, ""));
        let mut w = cfg(addr);
        w.max_retries = 10_000;
        let c = ctx("w", dir.path());
        let metrics = c.metrics.clone();
        let s = start(&rt, w, c, 4);
        let mut sent = 0;
        let t0 = Instant::now();
        loop {
            match s.handle.tx.try_send(out(sent)) {
                Ok(()) => sent += 1,
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(sent <= 5, "a queue of 4 and one in flight");
            std::thread::sleep(Duration::from_millis(20));
            assert!(t0.elapsed() < Duration::from_secs(10));
        }
        let tx = s.handle.tx.clone();
        let waiter = std::thread::spawn(move || {
            tx.blocking_send(out(sent)).unwrap();
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(400));
        assert!(
            !waiter.is_finished(),
            "blocking_send waits while the sink is down"
        );
        assert_eq!(s.handle.delivered.load(Ordering::Acquire), 0);
        let m = metrics.encode();
        assert!(
            m.contains(&format!("ferrocep_sink_queue{{sink=\"w\"}} {sent}")),
            "{m}"
        );
        let recovered = Instant::now();
        r.set_default(Act::Ok);
        let done = waiter.join().unwrap();
        assert!(done >= recovered);
        wait_delivered(&s.handle.delivered, sent as u64 + 1);
        close(&rt, s);
        assert_eq!(first_seen(&r.got()), ids(0..sent + 1));
    }

    #[test]
    fn bad_configs_are_errors_that_name_the_field() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let try_cfg = |f: &dyn Fn(&mut WebhookConfig)| {
            let mut w = cfg(addr);
            f(&mut w);
            spawn_sink(
                &SinkConfig::Webhook(w),
                ctx("outputs.match[1]", dir.path()),
                rt.handle(),
                4,
            )
            .err()
            .unwrap()
            .to_string()
        };
        let e = try_cfg(&|w| w.url = "not a url".into());
        assert!(
            e.starts_with("outputs.match[1].url: invalid URL 'not a url'"),
            "{e}"
        );
        let e = try_cfg(&|w| w.url = "ftp://x/".into());
        assert!(e.starts_with("outputs.match[1].url: "), "{e}");
        if !cfg!(feature = "tls") {
            let e = try_cfg(&|w| w.url = "https://example.com/".into());
            assert!(e.contains("`tls` feature"), "{e}");
        }
        let e = try_cfg(&|w| w.batch = 0);
        assert!(e.starts_with("outputs.match[1].batch: "), "{e}");
        let e = try_cfg(&|w| {
            w.headers.insert("Content-Length".into(), "3".into());
        });
        assert!(
            e.starts_with("outputs.match[1].headers.Content-Length: "),
            "{e}"
        );
        let e = try_cfg(&|w| {
            w.headers.insert("X-Bad".into(), "a\nb".into());
        });
        assert!(e.starts_with("outputs.match[1].headers.X-Bad: "), "{e}");
    }

    #[test]
    fn keys_escape_control_characters_and_names_are_sanitized() {
        let o = crate::sink::Queued::one(crate::sink::Output::new(
            crate::sink::Kind::Match,
            "a\nb",
            b"{}",
        ));
        assert_eq!(
            idempotency_key(&[o.clone(), crate::sink::Queued::one(out(1))]),
            "a%0Ab,p/t/1"
        );
        assert_eq!(sanitize("outputs.timeout[0]"), "outputs.timeout_0_");
        assert_eq!(body(std::slice::from_ref(&o), false), b"{}");
        assert_eq!(body(&[o], true), b"[{}]");
    }
}
