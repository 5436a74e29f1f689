//! The `http` source: clients `POST` events, which are written to the
//! durable [ingest log](crate::source::ingest_log) before the reply; a reader thread
//! tails the log and hands the events to the engine in log order.
//!
//! # Requests (`pipeline-spec.md` section 3)
//!
//! `POST <path>` with one of:
//!
//! - `application/json`: a JSON object, or an array of them;
//! - `application/x-ndjson`, `application/ndjson`, `application/jsonl`,
//!   `application/x-jsonlines`: one JSON value per line (blank lines are
//!   skipped);
//! - no content type: a body that is one JSON value starting with `[` or `{`
//!   is read as JSON, anything else as NDJSON.
//!
//! | reply | when |
//! |---|---|
//! | `202 {"accepted":N,"rejected":[{"index":I,"reason":"..."}]}` | the events are durable; `index` counts the body's events from 0 |
//! | `400 {"error":"..."}` | the body is not JSON (for NDJSON, the line is named) or not UTF-8; nothing is written |
//! | `404` | another path |
//! | `405` with `Allow: POST` | another method |
//! | `413` | the body is over `max_body` (checked while reading) |
//! | `415` | another content type |
//! | `503` with `Retry-After: 1` | the log's backlog (bytes not yet taken by the engine) is over `max_backlog`; nothing is written |
//! | `503` / `500 {"error":"..."}` | the log could not be written or synced (`503` for a full disk) |
//!
//! An event that is not an object, or that the engine's validator refuses
//! (no key or time field, a bad timestamp), is rejected: it is named in the
//! reply and also written to the log as a rejected record, so that it reaches
//! the `error` output in order and durably. Accepted events are stored as
//! their exact JSON text (an event that spans lines inside a JSON array is
//! written on one line, its whitespace outside strings dropped, because
//! outputs are JSON lines).
//!
//! # Positions and stopping
//!
//! An event's position is its record's byte offset in the ingest log. The
//! reader starts at [`SourceCtx::resume_from`]. When the stop flag is raised
//! the server stops accepting and finishes the requests in flight (their
//! events are durable when they are acknowledged); what the engine has not
//! taken stays in the log and is read again after a restart, from the
//! checkpoint's position.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde_json::value::RawValue;

use ferrocep_core::event::LineError;

use super::{Batch, Source, SourceCtx, SourceError, SourceErrorKind, SourceMsg};
use crate::metrics::Metrics;
use crate::source::ingest_log::{IngestLog, LogReader, LogRecord};

/// The engine's check of one event's JSON text (key and time fields, the
/// timestamp): `Err` rejects it, its text the reason in the reply.
pub type Validator = Arc<dyn Fn(&[u8]) -> Result<(), LineError> + Send + Sync>;

/// Most records in one batch to the engine.
const BATCH_RECORDS: usize = 4096;
/// A batch is sent once its text is this long.
const BATCH_BYTES: usize = 4 << 20;
/// How long the reader waits for new records before looking at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// How long in-flight requests get to finish at stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The address the server is bound to, once it is (port 0 picks one).
#[derive(Clone, Default, Debug)]
pub struct BoundAddr(Arc<(Mutex<Option<SocketAddr>>, Condvar)>);

impl BoundAddr {
    fn set(&self, addr: SocketAddr) {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
        self.0 .1.notify_all();
    }

    /// The bound address, waiting up to `timeout` for the server to bind.
    pub fn wait(&self, timeout: Duration) -> Option<SocketAddr> {
        let g = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = self
            .0
             .1
            .wait_timeout_while(g, timeout, |a| a.is_none())
            .unwrap_or_else(|p| p.into_inner());
        *g
    }
}

/// The `http` source (see the module docs).
pub struct HttpSource {
    listen: SocketAddr,
    path: String,
    max_body: u64,
    max_backlog: u64,
    validator: Validator,
    log: Option<IngestLog>,
    bound: BoundAddr,
}

impl HttpSource {
    /// A source that will listen on `listen` for `POST path`, taking bodies
    /// up to `max_body` bytes while at most `max_backlog` bytes of the log
    /// wait for the engine, and checking each event with `validator`.
    pub fn new(
        listen: SocketAddr,
        path: String,
        max_body: u64,
        max_backlog: u64,
        validator: Validator,
    ) -> HttpSource {
        HttpSource {
            listen,
            path,
            max_body,
            max_backlog,
            validator,
            log: None,
            bound: BoundAddr::default(),
        }
    }

    /// Uses `log` instead of opening `<data_dir>/ingest` in
    /// [`Source::run`]: the pipeline keeps a clone to truncate the log
    /// after each checkpoint ([`IngestLog::truncate_before`]).
    pub fn with_log(mut self, log: IngestLog) -> HttpSource {
        self.log = Some(log);
        self
    }

    /// Where the server listens, once bound.
    pub fn bound_addr(&self) -> BoundAddr {
        self.bound.clone()
    }
}

/// What the request handlers share.
struct App {
    log: IngestLog,
    /// Position after the last record handed to the engine.
    consumed: Arc<AtomicU64>,
    path: String,
    max_body: u64,
    max_backlog: u64,
    validator: Validator,
    metrics: Arc<Metrics>,
}

impl Source for HttpSource {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn run(self: Box<Self>, ctx: SourceCtx) -> Result<(), SourceError> {
        use SourceErrorKind::{Config, IngestLog as Log, Network};
        let fail = |kind, msg: String| {
            tracing::error!(error = %msg, "http source failed");
            let e = SourceError::new(kind, msg);
            ctx.out.send(SourceMsg::Failed(e.clone()));
            Err(e)
        };
        if !self.path.starts_with('/') {
            return fail(
                Config,
                format!("http source: path {:?} must start with '/'", self.path),
            );
        }
        let log = match self.log {
            Some(log) => log,
            None => match IngestLog::open(&ctx.data_dir.join("ingest")) {
                Ok(log) => log,
                Err(e) => return fail(Log, format!("http source: opening the ingest log: {e}")),
            },
        };
        let mut reader = match log.reader(ctx.resume_from) {
            Ok(r) => r,
            Err(e) => return fail(Log, format!("http source: {e}")),
        };
        let listener = match ctx
            .runtime
            .block_on(tokio::net::TcpListener::bind(self.listen))
        {
            Ok(l) => l,
            Err(e) => {
                return fail(
                    Network,
                    format!("http source: cannot listen on {}: {e}", self.listen),
                )
            }
        };
        let local = listener.local_addr().unwrap_or(self.listen);
        let consumed = Arc::new(AtomicU64::new(reader.position()));
        let app = Arc::new(App {
            log: log.clone(),
            consumed: consumed.clone(),
            path: self.path.clone(),
            max_body: self.max_body,
            max_backlog: self.max_backlog,
            validator: self.validator.clone(),
            metrics: ctx.metrics.clone(),
        });
        let router = Router::new().fallback(handle).with_state(app);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = ctx.runtime.spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await
        });
        self.bound.set(local);
        tracing::info!(addr = %local, path = %self.path, resume_from = ctx.resume_from, "http source listening");

        let fed = feed(&mut reader, &ctx, &consumed, &log, || server.is_finished());

        // Stop accepting; requests in flight finish (and are durable when
        // acknowledged).
        let _ = stop_tx.send(());
        let abort = server.abort_handle();
        let ended = ctx.runtime.block_on(async {
            match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(format!("http source: the server on {local} failed: {e}")),
                Ok(Err(e)) => Err(format!("http source: the server on {local} stopped: {e}")),
                Err(_) => {
                    abort.abort();
                    tracing::warn!(addr = %local, "http source: requests still in flight after {SHUTDOWN_GRACE:?}, closed");
                    Ok(())
                }
            }
        });
        match fed {
            Err(e) => fail(Log, e),
            Ok(Fed::ServerEnded) => fail(
                Network,
                ended
                    .err()
                    .unwrap_or_else(|| format!("http source: the server on {local} stopped")),
            ),
            Ok(Fed::Stopped) => {
                // Hand over what the last requests wrote, as long as the
                // engine takes it; the rest is read again after a restart.
                let _ = drain(&mut reader, &ctx, &consumed, &log);
                match ended {
                    Ok(()) => Ok(()),
                    Err(e) => fail(Network, e),
                }
            }
        }
    }
}

/// Why [`feed`] returned.
enum Fed {
    Stopped,
    ServerEnded,
}

/// Tails the log into the engine until the stop flag is raised or the
/// server ends.
fn feed(
    reader: &mut LogReader,
    ctx: &SourceCtx,
    consumed: &AtomicU64,
    log: &IngestLog,
    server_ended: impl Fn() -> bool,
) -> Result<Fed, String> {
    loop {
        if ctx.out.stop().is_raised() {
            return Ok(Fed::Stopped);
        }
        if server_ended() {
            return Ok(Fed::ServerEnded);
        }
        match send_available(reader, ctx, consumed, log, POLL)? {
            true => {}
            false => return Ok(Fed::Stopped),
        }
    }
}

/// Sends what is durable now, without waiting for more.
fn drain(
    reader: &mut LogReader,
    ctx: &SourceCtx,
    consumed: &AtomicU64,
    log: &IngestLog,
) -> Result<(), String> {
    while reader.position() < log.end() {
        if !send_available(reader, ctx, consumed, log, Duration::ZERO)? {
            break;
        }
    }
    Ok(())
}

/// Reads up to a batch of records (waiting up to `wait` for the first) and
/// sends them in order: accepted events as batches, rejected ones one by
/// one. Returns `false` when the engine no longer takes messages.
fn send_available(
    reader: &mut LogReader,
    ctx: &SourceCtx,
    consumed: &AtomicU64,
    log: &IngestLog,
    wait: Duration,
) -> Result<bool, String> {
    let entries = reader
        .next_batch(BATCH_RECORDS, wait)
        .map_err(|e| format!("http source: reading the ingest log: {e}"))?;
    if entries.is_empty() {
        return Ok(true);
    }
    let events_in = ctx
        .metrics
        .events_in
        .get_or_create(&Metrics::label("source", "http"));
    let input_errors = ctx
        .metrics
        .input_errors
        .get_or_create(&Metrics::label("source", "http"));
    let mut batch = Batch::with_capacity(64 << 10);
    let mut batch_end = 0;
    let send_batch = |batch: &mut Batch, end: u64| -> bool {
        if batch.is_empty() {
            return true;
        }
        let n = batch.len() as u64;
        batch.resume = Some(super::Resume {
            position: end,
            file: None,
            t0: None,
            kafka: None,
        });
        // Counted as handed over: a reader of the queue sees the count.
        events_in.inc_by(n);
        if !ctx.out.send(SourceMsg::Batch(std::mem::take(batch))) {
            return false;
        }
        consumed.fetch_max(end, Ordering::SeqCst);
        true
    };
    for e in entries {
        match e.record {
            LogRecord::Accepted(text) => {
                batch.push(e.pos, &text);
                batch_end = e.next;
                if batch.text.len() >= BATCH_BYTES && !send_batch(&mut batch, batch_end) {
                    return Ok(false);
                }
            }
            LogRecord::Rejected { raw, reason } => {
                if !send_batch(&mut batch, batch_end) {
                    return Ok(false);
                }
                let msg = SourceMsg::Rejected {
                    pos: e.pos,
                    raw: String::from_utf8_lossy(&raw).into_owned(),
                    reason,
                };
                input_errors.inc();
                if !ctx.out.send(msg) {
                    return Ok(false);
                }
                consumed.fetch_max(e.next, Ordering::SeqCst);
            }
        }
    }
    if !send_batch(&mut batch, batch_end) {
        return Ok(false);
    }
    let backlog = log.backlog_bytes(consumed.load(Ordering::SeqCst));
    ctx.metrics
        .ingest_backlog_bytes
        .set(i64::try_from(backlog).unwrap_or(i64::MAX));
    Ok(true)
}

/// The reply to one request, counted by code.
async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let resp = respond(&app, req).await;
    app.metrics
        .ingest_requests
        .get_or_create(&Metrics::label("code", resp.status().as_str()))
        .inc();
    resp
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
    rejected: Vec<RejectedEvent>,
}

#[derive(Serialize)]
struct RejectedEvent {
    index: usize,
    reason: String,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn json_reply(status: StatusCode, body: &impl Serialize) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text,
    )
        .into_response()
}

fn error_reply(status: StatusCode, error: String) -> Response {
    json_reply(status, &ErrorBody { error })
}

async fn respond(app: &App, req: Request) -> Response {
    if req.uri().path() != app.path {
        return error_reply(
            StatusCode::NOT_FOUND,
            format!(
                "no such path {:?}: POST events to {:?}",
                req.uri().path(),
                app.path
            ),
        );
    }
    if req.method() != Method::POST {
        let mut r = error_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} not allowed: POST events", req.method()),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let content_type = match req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        None => None,
        Some(Ok(t)) => Some(t.to_string()),
        Some(Err(_)) => {
            return error_reply(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content type is not ASCII".into(),
            )
        }
    };
    if let Err(e) = format_of(content_type.as_deref()) {
        return error_reply(e.status(), e.to_string());
    }
    let too_large = || {
        error_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over the limit of {} bytes", app.max_body),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.max_body) {
        return too_large();
    }
    let backlog = app.log.backlog_bytes(app.consumed.load(Ordering::SeqCst));
    if backlog > app.max_backlog {
        let mut r = error_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "ingest backlog of {backlog} bytes is over its bound of {} bytes: retry later",
                app.max_backlog
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let limit = usize::try_from(app.max_body).unwrap_or(usize::MAX);
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Err(e) => return error_reply(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let decoded = match decode_body(content_type.as_deref(), &body) {
        Ok(d) => d,
        Err(e) => return error_reply(e.status(), e.to_string()),
    };
    let mut records = Vec::with_capacity(decoded.len());
    let mut rejected = Vec::new();
    for (index, d) in decoded.into_iter().enumerate() {
        let text = d.text.as_bytes();
        let verdict = if d.is_object {
            (app.validator)(text)
        } else {
            Err(LineError::NotAnObject)
        };
        match verdict {
            Ok(()) => records.push(LogRecord::Accepted(text.to_vec())),
            Err(e) => {
                let reason = e.to_string();
                records.push(LogRecord::Rejected {
                    raw: text.to_vec(),
                    reason: reason.clone(),
                });
                rejected.push(RejectedEvent { index, reason });
            }
        }
    }
    let accepted = records.len() - rejected.len();
    if let Err(e) = app.log.append(records).await {
        let status = if e.kind() == std::io::ErrorKind::StorageFull {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        return error_reply(status, format!("ingest log: {e}"));
    }
    let backlog = app.log.backlog_bytes(app.consumed.load(Ordering::SeqCst));
    app.metrics
        .ingest_backlog_bytes
        .set(i64::try_from(backlog).unwrap_or(i64::MAX));
    json_reply(StatusCode::ACCEPTED, &Accepted { accepted, rejected })
}

/// How a body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON value: an object, or an array of events.
    Json,
    /// One JSON value per line.
    Ndjson,
}

/// One event of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Its JSON text, on one line.
    pub text: Cow<'a, str>,
    /// Whether it is a JSON object (anything else is rejected).
    pub is_object: bool,
}

/// Why a body cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// A content type this source does not read (415).
    #[error("unsupported content type {0:?}: send application/json or application/x-ndjson")]
    UnsupportedType(String),
    /// Not JSON at all (400).
    #[error("{0}")]
    Syntax(String),
}

impl BodyError {
    /// The reply code.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyError::Syntax(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The format named by a `Content-Type` (`None`: to be sniffed).
pub fn format_of(content_type: Option<&str>) -> Result<Option<BodyFormat>, BodyError> {
    let Some(ct) = content_type else {
        return Ok(None);
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" => Ok(None),
        "application/json" => Ok(Some(BodyFormat::Json)),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => Ok(Some(BodyFormat::Ndjson)),
        _ => Err(BodyError::UnsupportedType(ct.to_string())),
    }
}

fn is_json_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// The events of a body, in order (see the module docs for the formats).
/// Never panics, whatever the bytes.
pub fn decode_body<'a>(
    content_type: Option<&str>,
    body: &'a [u8],
) -> Result<Vec<Decoded<'a>>, BodyError> {
    let format = format_of(content_type)?;
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            let at = e.valid_up_to();
            let line = 1 + memchr::memchr_iter(b'\n', &body[..at]).count();
            return Err(BodyError::Syntax(format!(
                "body is not UTF-8: invalid byte at offset {at} (line {line})"
            )));
        }
    };
    let format = format.unwrap_or_else(|| sniff(text));
    match format {
        BodyFormat::Json => decode_json(text),
        BodyFormat::Ndjson => decode_ndjson(text),
    }
}

/// With no content type: one JSON value starting with `[` or `{` is JSON,
/// anything else NDJSON.
fn sniff(text: &str) -> BodyFormat {
    let t = text.trim_start_matches(is_json_ws);
    if (t.starts_with('[') || t.starts_with('{')) && serde_json::from_str::<&RawValue>(text).is_ok()
    {
        BodyFormat::Json
    } else {
        BodyFormat::Ndjson
    }
}

fn decode_json(text: &str) -> Result<Vec<Decoded<'_>>, BodyError> {
    let t = text.trim_matches(is_json_ws);
    if t.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |e: serde_json::Error| BodyError::Syntax(format!("body is not valid JSON: {e}"));
    if t.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(t).map_err(bad)?;
        Ok(items.into_iter().map(|v| decoded(v.get())).collect())
    } else {
        let v: &RawValue = serde_json::from_str(t).map_err(bad)?;
        Ok(vec![decoded(v.get())])
    }
}

fn decode_ndjson(text: &str) -> Result<Vec<Decoded<'_>>, BodyError> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.trim_matches(is_json_ws);
        if line.is_empty() {
            continue;
        }
        let v: &RawValue = serde_json::from_str(line)
            .map_err(|e| BodyError::Syntax(format!("line {}: not valid JSON: {e}", i + 1)))?;
        out.push(decoded(v.get()));
    }
    Ok(out)
}

fn decoded(text: &str) -> Decoded<'_> {
    let is_object = text.starts_with('{');
    let text = if text.contains(['\n', '\r']) {
        Cow::Owned(one_line(text))
    } else {
        Cow::Borrowed(text)
    };
    Decoded { text, is_object }
}

/// Valid JSON text without its whitespace outside strings (inside strings a
/// line end is always escaped, so the result is one line).
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !is_json_ws(c) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::source::ingest_log;
    use crate::source::{Position, SourceTx, StopFlag};
    use proptest::prelude::*;
    use std::io::{Read as _, Write as _};
    use std::path::Path;
    use std::sync::mpsc::{sync_channel, Receiver};

    /// The engine's check, roughly: a string `k` and a numeric `ts`.
    fn validator() -> Validator {
        Arc::new(|text: &[u8]| {
            let v: serde_json::Value =
                serde_json::from_slice(text).map_err(|e| LineError::InvalidJson {
                    message: e.to_string(),
                    column: e.column(),
                })?;
            if !v.get("k").is_some_and(|k| k.is_string()) {
                return Err(LineError::MissingKey {
                    field: Some("k".into()),
                });
            }
            if !v.get("ts").is_some_and(|t| t.is_i64()) {
                return Err(LineError::MissingTime {
                    field: Some("ts".into()),
                });
            }
            Ok(())
        })
    }

    struct Running {
        addr: SocketAddr,
        url: String,
        rx: Receiver<SourceMsg>,
        stop: StopFlag,
        thread: std::thread::JoinHandle<Result<(), SourceError>>,
        metrics: Arc<Metrics>,
        client: reqwest::Client,
        rt: tokio::runtime::Runtime,
    }

    struct Opts {
        max_body: u64,
        max_backlog: u64,
        resume_from: Position,
        queue: usize,
        log: Option<IngestLog>,
    }

    impl Default for Opts {
        fn default() -> Self {
            Opts {
                max_body: 1 << 20,
                max_backlog: 1 << 30,
                resume_from: 0,
                queue: 1024,
                log: None,
            }
        }
    }

    fn start(data_dir: &Path, opts: Opts) -> Running {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = sync_channel(opts.queue);
        let stop = StopFlag::new();
        let metrics = Arc::new(Metrics::new());
        let ctx = SourceCtx {
            out: SourceTx::new(tx, stop.clone()),
            clock: Arc::new(SystemClock),
            metrics: metrics.clone(),
            runtime: rt.handle().clone(),
            data_dir: data_dir.to_path_buf(),
            resume_from: opts.resume_from,
            resume: None,
        };
        let mut src = HttpSource::new(
            "127.0.0.1:0".parse().unwrap(),
            "/events".into(),
            opts.max_body,
            opts.max_backlog,
            validator(),
        );
        if let Some(log) = opts.log {
            src = src.with_log(log);
        }
        let bound = src.bound_addr();
        let thread = std::thread::spawn(move || Box::new(src).run(ctx));
        let addr = bound.wait(Duration::from_secs(30)).expect("bound");
        Running {
            addr,
            url: format!("http://{addr}/events"),
            rx,
            stop,
            thread,
            metrics,
            client: reqwest::Client::new(),
            rt,
        }
    }

    type Reply = (u16, reqwest::header::HeaderMap, String);

    impl Running {
        fn post(&self, ct: Option<&str>, body: &str) -> Reply {
            self.send(reqwest::Method::POST, &self.url, ct, body)
        }

        fn send(&self, method: reqwest::Method, url: &str, ct: Option<&str>, body: &str) -> Reply {
            self.rt.block_on(async {
                let mut req = self.client.request(method, url).body(body.to_string());
                if let Some(ct) = ct {
                    req = req.header("content-type", ct);
                }
                let resp = req.send().await.expect("request");
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                (status, headers, resp.text().await.expect("body"))
            })
        }

        /// Messages until `n` events (accepted or rejected) came.
        fn take(&self, n: usize) -> Vec<(Position, String, Option<String>)> {
            let mut out = Vec::new();
            while out.len() < n {
                match self
                    .rx
                    .recv_timeout(Duration::from_secs(30))
                    .expect("a message")
                {
                    SourceMsg::Batch(b) => {
                        for r in &b.records {
                            let text = String::from_utf8(b.bytes(r).to_vec()).unwrap();
                            out.push((r.pos, text, None));
                        }
                    }
                    SourceMsg::Rejected { pos, raw, reason } => out.push((pos, raw, Some(reason))),
                    other => panic!("unexpected {other:?}"),
                }
            }
            out
        }

        fn stop(self) -> Result<(), SourceError> {
            self.stop.raise();
            let r = self.thread.join().unwrap();
            drop(self.rt);
            r
        }
    }

    fn json(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn an_object_is_accepted_and_reaches_the_engine_as_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let s = start(dir.path(), Opts::default());
        let ev = r#"{"k":"a",  "ts":1, "x":[1, 2]}"#;
        let (code, _, body) = s.post(Some("application/json"), ev);
        assert_eq!(code, 202, "{body}");
        assert_eq!(json(&body), json(r#"{"accepted":1,"rejected":[]}"#));
        assert_eq!(s.take(1), vec![(0, ev.to_string(), None)]);
        let m = s.metrics.encode();
        assert!(
            m.contains("ferrocep_ingest_requests_total{code=\"202\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("ferrocep_events_in_total{source=\"http\"} 1"),
            "{m}"
        );
        s.stop().unwrap();
    }

    #[test]
    fn a_mixed_array_accepts_the_good_and_rejects_the_rest_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = start(dir.path(), Opts::default());
        let body = "[{\"k\":\"a\",\"ts\":1},\n 5, {\"k\":\"b\"},\n {\n  \"k\": \"c\",\n  \"ts\": 3, \"s\": \"x y\"\n }]";
        let (code, _, reply) = s.post(Some("application/json; charset=utf-8"), body);
        assert_eq!(code, 202, "{reply}");
        assert_eq!(
            json(&reply),
            json(
                r#"{"accepted":2,"rejected":[{"index":1,"reason":"not a JSON object"},{"index":2,"reason":"missing time field 'ts'"}]}"#
            )
        );
        let got = s.take(4);
        let texts: Vec<_> = got.iter().map(|g| (g.1.as_str(), g.2.as_deref())).collect();
        assert_eq!(
            texts,
            vec![
                (r#"{"k":"a","ts":1}"#, None),
                ("5", Some("not a JSON object")),
                (r#"{"k":"b"}"#, Some("missing time field 'ts'")),
                // Spread over lines in the body: one line, strings intact.
                (r#"{"k":"c","ts":3,"s":"x y"}"#, None),
            ]
        );
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "positions grow");
        let m = s.metrics.encode();
        assert!(
            m.contains("ferrocep_input_errors_total{source=\"http\"} 2"),
            "{m}"
        );
        s.stop().unwrap();
    }

    #[test]
    fn ndjson_and_sniffed_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let s = start(dir.path(), Opts::default());
        let nd = "{\"k\":\"a\",\"ts\":1}\r\n\n  {\"k\":\"b\",\"ts\":2}  \n[1]\n";
        let (code, _, reply) = s.post(Some("application/x-ndjson"), nd);
        assert_eq!(code, 202, "{reply}");
        assert_eq!(
            json(&reply),
            json(r#"{"accepted":2,"rejected":[{"index":2,"reason":"not a JSON object"}]}"#)
        );
        let (code, _, reply) = s.post(None, "{\"k\":\"c\",\"ts\":3}\n{\"k\":\"d\",\"ts\":4}\n");
        assert_eq!((code, json(&reply)["accepted"].as_u64()), (202, Some(2)));
        let (code, _, reply) = s.post(None, "[{\"k\":\"e\",\"ts\":5}]");
        assert_eq!((code, json(&reply)["accepted"].as_u64()), (202, Some(1)));
        let (code, _, reply) = s.post(Some("application/jsonl"), "");
        assert_eq!(
            (code, json(&reply)),
            (202, json(r#"{"accepted":0,"rejected":[]}"#))
        );
        let (code, _, reply) = s.post(Some("application/json"), " [ ] ");
        assert_eq!((code, json(&reply)["accepted"].as_u64()), (202, Some(0)));
        let texts: Vec<_> = s.take(6).into_iter().map(|g| g.1).collect();
        assert_eq!(
            texts,
            vec![
                r#"{"k":"a","ts":1}"#,
                r#"{"k":"b","ts":2}"#,
                "[1]",
                r#"{"k":"c","ts":3}"#,
                r#"{"k":"d","ts":4}"#,
                r#"{"k":"e","ts":5}"#
            ]
        );
        s.stop().unwrap();
    }

    #[test]
    fn error_replies_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = start(
            dir.path(),
            Opts {
                max_body: 100,
                ..Opts::default()
            },
        );
        let (code, _, reply) = s.post(Some("application/json"), r#"{"a":"#);
        assert_eq!(code, 400, "{reply}");
        assert!(
            json(&reply)["error"].as_str().unwrap().contains("EOF"),
            "{reply}"
        );
        let (code, _, reply) = s.post(None, "hello");
        assert_eq!(code, 400, "{reply}");
        let (code, _, reply) = s.post(
            Some("application/x-ndjson"),
            "{\"k\":\"a\",\"ts\":1}\n{oops\n",
        );
        assert_eq!(code, 400, "{reply}");
        assert!(
            json(&reply)["error"]
                .as_str()
                .unwrap()
                .starts_with("line 2:"),
            "{reply}"
        );

        let (code, headers, _) = s.send(reqwest::Method::GET, &s.url, None, "");
        assert_eq!(code, 405);
        assert_eq!(headers.get("allow").unwrap(), "POST");
        let (code, _, _) = s.send(reqwest::Method::PUT, &s.url, Some("application/json"), "{}");
        assert_eq!(code, 405);
        let other = format!("http://{}/other", s.addr);
        let (code, _, _) = s.send(
            reqwest::Method::POST,
            &other,
            Some("application/json"),
            "{}",
        );
        assert_eq!(code, 404);
        let (code, _, reply) = s.post(Some("text/plain"), "{}");
        assert_eq!(code, 415, "{reply}");
        let (code, _, reply) = s.post(
            Some("application/json"),
            &format!("[{}]", "1,".repeat(60) + "1"),
        );
        assert_eq!(code, 413, "{reply}");

        // Without a length: the limit holds while reading.
        let mut c = std::net::TcpStream::connect(s.addr).unwrap();
        let chunk = "x".repeat(64);
        let mut req = String::from(
            "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        );
        for _ in 0..4 {
            req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
        }
        req.push_str("0\r\n\r\n");
        c.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        let _ = c.read_to_string(&mut resp);
        assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");

        assert!(ingest_log::scan(&dir.path().join("ingest"))
            .unwrap()
            .is_empty());
        let m = s.metrics.encode();
        for code in ["400", "404", "405", "413", "415"] {
            assert!(
                m.contains(&format!(
                    "ferrocep_ingest_requests_total{{code=\"{code}\"}}"
                )),
                "{code}: {m}"
            );
        }
        s.stop().unwrap();
    }

    /// The records are on disk, readable by a fresh reader of the files,
    /// when the reply arrives.
    #[test]
    fn the_reply_comes_after_the_records_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let s = start(dir.path(), Opts::default());
        for i in 0..20 {
            let body = format!("{{\"k\":\"a\",\"ts\":{i}}}\n5\n");
            let (code, _, _) = s.post(Some("application/x-ndjson"), &body);
            assert_eq!(code, 202);
            let on_disk = ingest_log::scan(&dir.path().join("ingest")).unwrap();
            assert_eq!(on_disk.len(), 2 * (i + 1));
            assert_eq!(
                on_disk[2 * i].record,
                LogRecord::Accepted(format!("{{\"k\":\"a\",\"ts\":{i}}}").into_bytes())
            );
            assert!(
                matches!(&on_disk[2 * i + 1].record, LogRecord::Rejected { raw, .. } if raw == b"5")
            );
        }
        s.stop().unwrap();
    }

    #[test]
    fn a_backlog_over_its_bound_is_503_until_the_engine_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        // A queue of one message: the reader holds the second batch until
        // the engine takes the first.
        let s = start(
            dir.path(),
            Opts {
                max_backlog: 10,
                queue: 1,
                ..Opts::default()
            },
        );
        let ev = r#"{"k":"a","ts":1}"#;
        assert_eq!(s.post(Some("application/json"), ev).0, 202);
        // The first batch sits in the queue; a later one blocks the reader,
        // so its bytes stay in the backlog. (Which post is refused first
        // depends on how soon the reader has queued the first batch.)
        let log_end = || {
            ingest_log::scan(&dir.path().join("ingest"))
                .unwrap()
                .last()
                .map_or(0, |e| e.next)
        };
        let mut refused = None;
        for _ in 0..200 {
            let (code, headers, reply) = s.post(Some("application/json"), ev);
            if code == 503 {
                refused = Some((headers, reply));
                break;
            }
            assert_eq!(code, 202);
        }
        let (headers, reply) = refused.expect("a 503 once the backlog is over 10 bytes");
        assert_eq!(headers.get("retry-after").unwrap(), "1");
        assert!(reply.contains("backlog"), "{reply}");
        let end = log_end();
        assert_eq!(s.post(Some("application/json"), ev).0, 503);
        assert_eq!(log_end(), end, "nothing written on 503");

        // The engine takes everything: accepted again.
        let n = ingest_log::scan(&dir.path().join("ingest")).unwrap().len();
        s.take(n);
        let mut code = 0;
        for _ in 0..3000 {
            code = s.post(Some("application/json"), ev).0;
            if code == 202 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(code, 202);
        s.stop().unwrap();
    }

    #[test]
    fn a_failed_sync_is_never_a_202() {
        let dir = tempfile::tempdir().unwrap();
        let log = IngestLog::open(&dir.path().join("ingest")).unwrap();
        let s = start(
            dir.path(),
            Opts {
                log: Some(log.clone()),
                ..Opts::default()
            },
        );
        log.fail_next_syncs(1);
        let (code, _, reply) = s.post(Some("application/json"), r#"{"k":"a","ts":1}"#);
        assert_eq!(code, 503, "{reply}");
        assert!(reply.contains("injected sync failure"), "{reply}");
        assert!(ingest_log::scan(&dir.path().join("ingest"))
            .unwrap()
            .is_empty());
        assert_eq!(
            s.post(Some("application/json"), r#"{"k":"a","ts":2}"#).0,
            202
        );
        assert_eq!(s.take(1)[0].1, r#"{"k":"a","ts":2}"#);
        s.stop().unwrap();
    }

    #[test]
    fn a_restart_resumes_from_a_position_with_the_same_positions() {
        let dir = tempfile::tempdir().unwrap();
        let s = start(dir.path(), Opts::default());
        let body = "{\"k\":\"a\",\"ts\":1}\n{\"k\":\"a\",\"ts\":2}\nnull\n{\"k\":\"a\",\"ts\":3}\n";
        assert_eq!(s.post(Some("application/x-ndjson"), body).0, 202);
        let first = s.take(4);
        s.stop().unwrap();

        let s = start(
            dir.path(),
            Opts {
                resume_from: first[1].0,
                ..Opts::default()
            },
        );
        assert_eq!(s.take(3), first[1..].to_vec());
        assert_eq!(
            s.post(Some("application/json"), r#"{"k":"a","ts":4}"#).0,
            202
        );
        let next = s.take(1);
        assert!(next[0].0 > first[3].0);
        s.stop().unwrap();
    }

    #[test]
    fn stop_closes_the_listener_and_returns() {
        let dir = tempfile::tempdir().unwrap();
        let s = start(dir.path(), Opts::default());
        let addr = s.addr;
        assert_eq!(
            s.post(Some("application/json"), r#"{"k":"a","ts":1}"#).0,
            202
        );
        s.stop().unwrap();
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[test]
    fn a_busy_address_fails_with_the_address_named() {
        let dir = tempfile::tempdir().unwrap();
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = busy.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = sync_channel(4);
        let ctx = SourceCtx {
            out: SourceTx::new(tx, StopFlag::new()),
            clock: Arc::new(SystemClock),
            metrics: Arc::new(Metrics::new()),
            runtime: rt.handle().clone(),
            data_dir: dir.path().to_path_buf(),
            resume_from: 0,
            resume: None,
        };
        let src = HttpSource::new(addr, "/events".into(), 1 << 20, 1 << 20, validator());
        let err = Box::new(src).run(ctx).unwrap_err();
        assert!(err.message().contains(&addr.to_string()), "{err}");
        assert_eq!(err.kind(), SourceErrorKind::Network);
        assert!(matches!(rx.try_recv(), Ok(SourceMsg::Failed(m)) if m == err));
    }

    #[test]
    fn decode_body_formats() {
        let ok = |ct: Option<&str>, body: &str| -> Vec<(String, bool)> {
            decode_body(ct, body.as_bytes())
                .unwrap()
                .into_iter()
                .map(|d| (d.text.into_owned(), d.is_object))
                .collect()
        };
        assert_eq!(
            ok(Some("application/json"), " {\"a\":1} "),
            vec![("{\"a\":1}".into(), true)]
        );
        assert_eq!(
            ok(Some("application/json"), "\"s\""),
            vec![("\"s\"".into(), false)]
        );
        assert_eq!(
            ok(
                Some("APPLICATION/JSON"),
                "[{\"a\":\"x\\n\\\" y\"},\n[1,\n2]]"
            ),
            vec![
                ("{\"a\":\"x\\n\\\" y\"}".into(), true),
                ("[1,2]".into(), false)
            ]
        );
        assert_eq!(ok(None, "  "), vec![]);
        assert_eq!(
            ok(None, "1\n2"),
            vec![("1".into(), false), ("2".into(), false)]
        );
        assert!(matches!(
            decode_body(Some("text/csv"), b"a,b"),
            Err(BodyError::UnsupportedType(t)) if t == "text/csv"
        ));
        let err = decode_body(Some("application/x-ndjson"), b"{}\n\xff\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "body is not UTF-8: invalid byte at offset 3 (line 2)"
        );
        let err = decode_body(Some("application/json"), b"{} {}").unwrap_err();
        assert!(err.to_string().contains("trailing characters"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn decode_body_never_panics(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            ct in proptest::option::of(proptest::sample::select(vec![
                "application/json", "application/x-ndjson", "text/plain", "",
            ])),
        ) {
            if let Ok(events) = decode_body(ct, &body) {
                for e in events {
                    // Every event is one line of valid JSON.
                    proptest::prop_assert!(!e.text.contains('\n'));
                    proptest::prop_assert!(serde_json::from_str::<&RawValue>(&e.text).is_ok());
                }
            }
        }

        #[test]
        fn decode_body_keeps_json_like_bodies_valid(
            v in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<i64>().prop_map(|n| serde_json::json!({"n": n, "s": "a\nb"})),
                    "[a-z \\n\"\\\\]{0,8}".prop_map(serde_json::Value::String),
                ],
                0..8,
            ),
        ) {
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            let got = decode_body(Some("application/json"), pretty.as_bytes()).unwrap();
            proptest::prop_assert_eq!(got.len(), v.len());
            for (d, want) in got.iter().zip(&v) {
                let back: serde_json::Value = serde_json::from_str(&d.text).unwrap();
                proptest::prop_assert_eq!(&back, want);
                proptest::prop_assert!(!d.text.contains('\n'));
            }
        }
    }
}
