//! The operations server of `ferrocep run`: `/metrics` (Prometheus text),
//! `/healthz` (the process is up), `/readyz` (state restored, source open,
//! sinks accepting), `GET /patterns` (the running patterns and versions),
//! and the admin API that changes them (`PUT`/`DELETE /patterns/NAME`), on
//! the async runtime.
//!
//! Admin requests are checked here (peer, token, body size, the spec) and
//! applied by the engine thread ([`crate::control`]); the answer comes once
//! the change is in a committed checkpoint. Only loopback peers may change
//! patterns unless `server.admin.allow_remote` (which needs a token); with
//! a token configured, every change must carry `Authorization: Bearer
//! TOKEN`. A refused request changes nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ferrocep_core::spec::{Format, Spec};

use crate::control::{ControlTx, Origin, Request};
use crate::engine::{Change, PatternDef, PendingPolicy};
use crate::metrics::Metrics;
use crate::source::StopFlag;

/// Who may change patterns, and how the change reaches the engine.
#[derive(Clone)]
pub struct Admin {
    /// To the engine thread.
    pub control: ControlTx,
    /// The bearer token changes must carry, if any.
    pub token: Option<String>,
    /// Accept changes from peers other than loopback.
    pub allow_remote: bool,
    /// The largest request body, bytes.
    pub max_body: usize,
}

/// How long a change may wait for the engine thread and its checkpoint.
const CHANGE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// What `/readyz` looks at.
#[derive(Default)]
pub struct Readiness {
    /// The state in the data directory is restored.
    pub restored: AtomicBool,
    /// The source is open and reading.
    pub source_open: AtomicBool,
    /// Sinks whose queue is full (the pipeline sets it from the queues).
    pub sinks_blocked: AtomicBool,
    /// The running patterns, as `GET /patterns` lists them.
    pub patterns: std::sync::Mutex<Vec<PatternInfo>>,
}

/// A running pattern, as `GET /patterns` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PatternInfo {
    /// Its name.
    pub name: String,
    /// Its version (1: as started).
    pub version: u64,
    /// `active`, or `draining`: an old version that takes no new starts and
    /// keeps its pending partial matches until they end.
    pub state: &'static str,
    /// Its automaton's fingerprint (what checkpoints are checked against).
    pub fingerprint: String,
    /// The spec, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Value>,
    /// Partial matches pending (counted every 10 s).
    pub pending_partial_matches: Option<u64>,
    /// Keys with state.
    pub pending_keys: u64,
}

impl Readiness {
    /// Why the pipeline is not ready, or `None` when it is.
    pub fn why_not(&self) -> Option<&'static str> {
        if !self.restored.load(Ordering::SeqCst) {
            Some("state not restored yet")
        } else if !self.source_open.load(Ordering::SeqCst) {
            Some("source not open")
        } else if self.sinks_blocked.load(Ordering::SeqCst) {
            Some("a sink is not accepting outputs (its queue is full)")
        } else {
            None
        }
    }
}

#[derive(Clone)]
struct Ctx {
    metrics: Arc<Metrics>,
    ready: Arc<Readiness>,
    admin: Option<Admin>,
}

/// The routes (without `admin`, changes answer 501).
pub fn router(metrics: Arc<Metrics>, ready: Arc<Readiness>, admin: Option<Admin>) -> Router {
    let max_body = admin.as_ref().map_or(1 << 20, |a| a.max_body);
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/patterns", get(patterns))
        .route(
            "/patterns/{name}",
            get(pattern).put(put_pattern).delete(delete_pattern),
        )
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(Ctx {
            metrics,
            ready,
            admin,
        })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// The admin settings if `peer` may change patterns, else the refusal.
fn admit<'a>(ctx: &'a Ctx, peer: &SocketAddr, headers: &HeaderMap) -> Result<&'a Admin, Response> {
    let Some(admin) = ctx.admin.as_ref() else {
        return Err(error(
            StatusCode::NOT_IMPLEMENTED,
            "pattern changes are not available in this pipeline",
        ));
    };
    if !admin.allow_remote && !peer.ip().is_loopback() {
        return Err(error(
            StatusCode::FORBIDDEN,
            "pattern changes are accepted from this machine only (server.admin.allow_remote)",
        ));
    }
    if let Some(token) = &admin.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required (Authorization: Bearer TOKEN)",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return Err(r);
        }
    }
    Ok(admin)
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeQuery {
    pending: Option<String>,
}

fn pending_policy(q: &ChangeQuery) -> Result<PendingPolicy, Response> {
    match q.pending.as_deref() {
        None | Some("drain") => Ok(PendingPolicy::Drain),
        Some("drop") => Ok(PendingPolicy::Drop),
        Some(other) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("pending: expected `drain` or `drop`, found {other:?}"),
        )),
    }
}

/// Sends a change to the engine thread and answers with what it did.
async fn change(
    admin: &Admin,
    changes: Vec<Change>,
    pending: PendingPolicy,
    peer: &SocketAddr,
    status: StatusCode,
) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let req = Request::Change {
        changes,
        pending,
        origin: Origin::Api(peer.to_string()),
        reply: Some(tx),
    };
    if admin.control.send(req).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline is stopping");
    }
    match tokio::time::timeout(CHANGE_WAIT, rx).await {
        Ok(Ok(Ok(done))) => (status, axum::Json(done)).into_response(),
        Ok(Ok(Err(refused))) => error(
            StatusCode::from_u16(refused.status).unwrap_or(StatusCode::BAD_REQUEST),
            refused.reason,
        ),
        Ok(Err(_)) => error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline stopped before applying the change"),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "the change was not confirmed in time (a checkpoint is waiting for a sink); it may still apply: see GET /patterns",
        ),
    }
}

/// The format of a spec body, by its content type (JSON, YAML, or for a
/// plain or form type, told by the text itself).
fn body_format(headers: &HeaderMap) -> Result<Format, Response> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/json" => Ok(Format::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => Ok(Format::Yaml),
        // `curl -d` sends a form type: the text says what it is.
        "" | "text/plain" | "application/x-www-form-urlencoded" | "application/octet-stream" => {
            Ok(Format::Auto)
        }
        other => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {other} is not a pattern spec: use application/json or application/yaml"),
        )),
    }
}

/// A spec body checked as `validate` checks a spec: every error with its
/// field path.
fn parse_spec(name: &str, body: &[u8], format: Format) -> Result<Spec, Response> {
    let text = std::str::from_utf8(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not UTF-8: {e}"),
        )
    })?;
    let refuse = |path: Option<&str>, message: String| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "error": match path {
                    Some(p) => format!("{p}: {message}"),
                    None => message.clone(),
                },
                "errors": [{ "path": path.unwrap_or(""), "message": message }],
            })),
        )
            .into_response()
    };
    let spec = Spec::from_str(text, format).map_err(|e| {
        let mut message = e.kind().to_string();
        if let Some(p) = e.path() {
            if let Some(rest) = message.strip_prefix(&format!("{p}: ")) {
                message = rest.to_string();
            }
        }
        refuse(e.path(), message)
    })?;
    if let Err(e) = spec.compile() {
        return Err(refuse(None, format!("the pattern does not compile: {e}")));
    }
    match &spec.name {
        Some(n) if n != name => Err(refuse(
            Some("name"),
            format!("the spec is named {n:?} but the path names {name:?}"),
        )),
        _ => Ok(spec),
    }
}

async fn put_pattern(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::extract::Path(name): axum::extract::Path<String>,
    query: Result<Query<ChangeQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let admin = match admit(&ctx, &peer, &headers) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "the only parameter is pending=drain|drop",
        );
    };
    let pending = match pending_policy(&query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = crate::config::check_pattern_name(&name) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let format = match body_format(&headers) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let spec = match parse_spec(&name, &body, format) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let text: Arc<str> = String::from_utf8_lossy(&body).into();
    let def = PatternDef {
        name,
        spec,
        version: 1,
        text: Some((text, format)),
    };
    change(
        &admin,
        vec![Change::Put(Box::new(def))],
        pending,
        &peer,
        StatusCode::OK,
    )
    .await
}

async fn delete_pattern(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::extract::Path(name): axum::extract::Path<String>,
    query: Result<Query<ChangeQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let admin = match admit(&ctx, &peer, &headers) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "the only parameter is pending=drain|drop",
        );
    };
    let pending = match pending_policy(&query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    change(
        &admin,
        vec![Change::Remove(name)],
        pending,
        &peer,
        StatusCode::OK,
    )
    .await
}

async fn metrics_text(State(ctx): State<Ctx>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ctx.metrics.encode(),
    )
        .into_response()
}

/// Asks the engine thread for fresh pending counts (walking every key
/// takes ~10 ms per million), waiting at most a second for them.
async fn refresh(ctx: &Ctx) {
    if let Some(admin) = &ctx.admin {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if admin.control.send(Request::Refresh(tx)).is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rx).await;
        }
    }
}

async fn patterns(State(ctx): State<Ctx>) -> Response {
    refresh(&ctx).await;
    let list = ctx
        .ready
        .patterns
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    axum::Json(serde_json::json!({ "patterns": list })).into_response()
}

async fn pattern(
    State(ctx): State<Ctx>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    refresh(&ctx).await;
    let found: Vec<PatternInfo> = ctx
        .ready
        .patterns
        .lock()
        .map(|p| p.iter().filter(|p| p.name == name).cloned().collect())
        .unwrap_or_default();
    // The active version, with the draining ones beside it.
    let active = found.iter().find(|p| p.state == "active").cloned();
    let draining: Vec<&PatternInfo> = found.iter().filter(|p| p.state != "active").collect();
    match active.or_else(|| found.first().cloned()) {
        Some(p) => {
            let mut v = serde_json::to_value(&p).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "draining".into(),
                    serde_json::to_value(&draining).unwrap_or_default(),
                );
            }
            axum::Json(v).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": format!("no pattern '{name}'") })),
        )
            .into_response(),
    }
}

async fn readyz(State(ctx): State<Ctx>) -> Response {
    match ctx.ready.why_not() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// Binds `addr` and serves on `rt` until `stop` is raised. Binding happens
/// before this returns, so a bad or busy address is an error at start.
pub fn start(
    rt: &tokio::runtime::Handle,
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<Readiness>,
    admin: Option<Admin>,
    stop: StopFlag,
) -> std::io::Result<SocketAddr> {
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr))?;
    let local = listener.local_addr()?;
    let app = router(metrics, ready, admin).into_make_service_with_connect_info::<SocketAddr>();
    rt.spawn(async move {
        let shutdown = async move {
            while !stop.is_raised() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "operations server failed");
        }
    });
    Ok(local)
}
