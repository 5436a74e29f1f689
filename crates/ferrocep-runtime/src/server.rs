//! The operations server of `ferrocep run`: `/metrics` (Prometheus text),
//! `/healthz` (the process is up), `/readyz` (state restored, source open,
//! sinks accepting) and `/patterns` (the running patterns), on the async
//! runtime. Changing patterns while running (`PUT`/`DELETE
//! /patterns/NAME`) is not supported yet: those answer 501.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;
use crate::source::StopFlag;

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
    /// `active` (draining versions come with pattern changes).
    pub state: &'static str,
    /// Its automaton's fingerprint (what checkpoints are checked against).
    pub fingerprint: String,
    /// The spec file it was read from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The spec, when it was given inline in the config.
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
}

/// The routes.
pub fn router(metrics: Arc<Metrics>, ready: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/patterns", get(patterns))
        .route(
            "/patterns/{name}",
            get(pattern).put(not_supported).delete(not_supported),
        )
        .with_state(Ctx { metrics, ready })
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

async fn patterns(State(ctx): State<Ctx>) -> Response {
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
    let found = ctx
        .ready
        .patterns
        .lock()
        .ok()
        .and_then(|p| p.iter().find(|p| p.name == name).cloned());
    match found {
        Some(p) => axum::Json(p).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": format!("no pattern '{name}'") })),
        )
            .into_response(),
    }
}

async fn not_supported() -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        axum::Json(serde_json::json!({
            "error": "changing patterns while running is not supported yet: change the config and restart \
                      (a checkpoint is restored only into the same patterns)"
        })),
    )
        .into_response()
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
    stop: StopFlag,
) -> std::io::Result<SocketAddr> {
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr))?;
    let local = listener.local_addr()?;
    let app = router(metrics, ready);
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
