//! Builds a [`Pipeline`] from a loaded config: the engine, the source, the
//! sinks, the operations server and the data directory.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::{EndOfInputConfig, LoadedConfig, SinkConfig, SourceConfig};
use crate::engine::{Engine, EngineOptions};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, SinkSlot};
use crate::server::Readiness;
use crate::sink::{Kind, SinkCtx};
use crate::source::file::FileSource;
use crate::source::generator::GeneratorSource;
use crate::source::http::HttpSource;
use crate::source::stdin::StdinSource;
use crate::source::{Source, StopFlag};

/// What the command line adds to a config.
pub struct Overrides {
    /// `--data-dir`: replaces `state.dir`.
    pub data_dir: Option<PathBuf>,
    /// The clock (the wall clock, or a test's).
    pub clock: SharedClock,
    /// Show a progress line when stderr is a terminal.
    pub progress: bool,
}

/// Why a pipeline could not start (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// A started pipeline and the handle that stops its server when it is over.
pub struct Assembled {
    /// The pipeline, ready to [`Pipeline::run`].
    pub pipeline: Pipeline,
    /// Raise it once the pipeline has returned, to stop the operations
    /// server.
    pub server_stop: StopFlag,
    /// The data directory's lock, held for the run.
    pub lock: File,
}

/// Builds and starts everything but the source.
pub fn assemble(loaded: &LoadedConfig, o: Overrides) -> Result<Assembled, StartError> {
    let cfg = &loaded.config;
    let data_dir = match &o.data_dir {
        Some(d) => d.clone(),
        None => loaded.resolve(&cfg.state.dir),
    };
    std::fs::create_dir_all(&data_dir).map_err(|e| {
        StartError(format!(
            "cannot create the data directory '{}': {e}",
            data_dir.display()
        ))
    })?;
    let lock = lock_data_dir(&data_dir)?;
    let patterns: Vec<(String, ferrocep_core::spec::Spec)> = loaded
        .patterns
        .iter()
        .map(|p| (p.name.clone(), p.spec.clone()))
        .collect();
    let engine = Engine::new(
        &patterns,
        EngineOptions {
            idle_timeout: cfg.time.idle_timeout.map(|m| m.0),
        },
    )
    .map_err(|e| StartError(format!("{}: patterns: {e}", loaded.path.display())))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ferrocep-io")
        .enable_all()
        .build()
        .map_err(|e| StartError(format!("cannot start the async runtime: {e}")))?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(Readiness::default());
    let stop = StopFlag::new();
    crate::pipeline::stop_on_signals(runtime.handle(), stop.clone())
        .map_err(|e| StartError(format!("cannot install signal handlers: {e}")))?;

    let (source, flush_at_end): (Box<dyn Source>, bool) = match &cfg.source {
        SourceConfig::File {
            path,
            follow,
            end_of_input,
        } => (
            Box::new(FileSource::new(loaded.resolve(path), *follow)),
            *end_of_input == EndOfInputConfig::Flush,
        ),
        SourceConfig::Stdin { end_of_input } => (
            Box::new(StdinSource::new()),
            *end_of_input == EndOfInputConfig::Flush,
        ),
        SourceConfig::Http {
            listen,
            path,
            max_body,
            max_backlog,
        } => {
            let addr: SocketAddr = listen.parse().map_err(|e| {
                StartError(format!("{}: source.listen: {e}", loaded.path.display()))
            })?;
            let validator: crate::source::http::Validator = Arc::new(engine.validator());
            (
                Box::new(HttpSource::new(
                    addr,
                    path.clone(),
                    max_body.0,
                    max_backlog.0,
                    validator,
                )),
                true,
            )
        }
        SourceConfig::Generator(g) => (Box::new(GeneratorSource::new(g.clone())), true),
    };

    let mut sinks = Vec::new();
    for kind in Kind::ALL {
        for (i, sc) in sinks_of(cfg, kind).iter().enumerate() {
            let name = format!("outputs.{}[{i}]", kind.as_str());
            let ctx = SinkCtx {
                name: name.clone(),
                metrics: metrics.clone(),
                config_dir: loaded.dir.clone(),
                data_dir: data_dir.clone(),
                clock: o.clock.clone(),
            };
            let handle = crate::sink::spawn(sc, ctx, runtime.handle())
                .map_err(|e| StartError(format!("{}: {name}: {e}", loaded.path.display())))?;
            sinks.push(SinkSlot { kind, name, handle });
        }
    }

    let server_stop = StopFlag::new();
    let server = match &cfg.server {
        Some(s) => {
            let addr: SocketAddr = s.listen.parse().map_err(|e| {
                StartError(format!("{}: server.listen: {e}", loaded.path.display()))
            })?;
            let local = crate::server::start(
                runtime.handle(),
                addr,
                metrics.clone(),
                ready.clone(),
                server_stop.clone(),
            )
            .map_err(|e| StartError(format!("server.listen: cannot listen on {addr}: {e}")))?;
            tracing::info!(%local, "operations server listening (/metrics, /healthz, /readyz)");
            Some(local)
        }
        None => None,
    };

    Ok(Assembled {
        pipeline: Pipeline {
            name: cfg.name.clone(),
            engine,
            source,
            sinks,
            runtime,
            clock: o.clock,
            metrics,
            ready,
            stop,
            data_dir,
            flush_at_end,
            server,
            progress: o.progress,
        },
        server_stop,
        lock,
    })
}

/// The sinks of `kind`: as configured, or the defaults (match and timeout
/// to stdout, late and error to stderr).
fn sinks_of(cfg: &crate::config::PipelineConfig, kind: Kind) -> Vec<SinkConfig> {
    let o = &cfg.outputs;
    let set = match kind {
        Kind::Match => &o.r#match,
        Kind::Timeout => &o.timeout,
        Kind::Late => &o.late,
        Kind::Error => &o.error,
    };
    match set {
        Some(v) => v.clone(),
        None if matches!(kind, Kind::Match | Kind::Timeout) => vec![SinkConfig::Stdout {}],
        None => vec![SinkConfig::Stderr {}],
    }
}

/// Takes the data directory's lock file: one `run` per data directory.
fn lock_data_dir(dir: &std::path::Path) -> Result<File, StartError> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StartError(format!("cannot open '{}': {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError(format!(
            "the data directory '{}' is in use by another ferrocep run",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StartError(format!("cannot lock '{}': {e}", path.display())))
        }
    }
}
