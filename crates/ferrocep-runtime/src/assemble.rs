//! Builds a [`Pipeline`] from a loaded config: the engine, the source, the
//! sinks, the operations server and the data directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::{EndOfInputConfig, LoadedConfig, SinkConfig, SourceConfig};
use crate::engine::{fingerprint, Change, Engine, EngineOptions, PatternDef, PendingPolicy};
use crate::metrics::Metrics;
use crate::pipeline::{Checkpointing, Pipeline, SinkSlot, SourceCheckpoint};
use crate::server::Readiness;
use crate::sink::file::FileCommit;
use crate::sink::{Kind, SinkCtx};
use crate::source::file::FileSource;
use crate::source::generator::GeneratorSource;
use crate::source::http::HttpSource;
use crate::source::ingest_log::IngestLog;
use crate::source::stdin::StdinSource;
use crate::source::Resume;
use crate::source::{Source, StopFlag};
use crate::workers::Engines;

/// What the command line adds to a config.
pub struct Overrides {
    /// `--data-dir`: replaces `state.dir`.
    pub data_dir: Option<PathBuf>,
    /// The clock (the wall clock, or a test's).
    pub clock: SharedClock,
    /// Show a progress line when stderr is a terminal.
    pub progress: bool,
    /// Threads that match (`--workers`), keys split among them.
    pub workers: usize,
}

/// Why a pipeline could not start (exit status 2). Each variant names the
/// cause and carries what its message says: the config file, the data
/// directory, the sink or the address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The config says something that cannot be used: `at` is the setting
    /// (`patterns`, `source.listen`, `server.admin.token_env`, ...).
    #[error("{}: {at}: {reason}", config.display())]
    Config {
        /// The config file.
        config: PathBuf,
        /// The setting at fault.
        at: &'static str,
        /// Why.
        reason: String,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory '{}': {source}", dir.display())]
    CreateDataDir {
        /// The data directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data directory's lock file could not be opened or locked.
    #[error("cannot {} '{}': {source}", if *opening { "open" } else { "lock" }, path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Whether opening it failed (else taking the lock did).
        opening: bool,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another `ferrocep run` holds the data directory.
    #[error("the data directory '{}' is in use by another ferrocep run", dir.display())]
    InUse {
        /// The data directory.
        dir: PathBuf,
    },
    /// The checkpoint store could not be opened or read.
    #[error(transparent)]
    Store(#[from] crate::checkpoint::StoreError),
    /// The state in the data directory cannot be restored: `reason` says
    /// what (a saved pattern, a key, a source or sink position).
    #[error("data directory '{}': {reason}", dir.display())]
    State {
        /// The data directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The data directory holds the state of another pipeline.
    #[error(
        "the data directory '{}' holds the state of pipeline '{found}', not '{pipeline}': use another data directory",
        dir.display()
    )]
    OtherPipeline {
        /// The data directory.
        dir: PathBuf,
        /// The pipeline whose state it holds.
        found: String,
        /// This pipeline.
        pipeline: String,
    },
    /// The data directory holds state for other patterns (and saved no
    /// specs to run them from).
    #[error(
        "the data directory '{}' holds state for other patterns: checkpoint {checkpoint} has [{}], the config has [{}]; \
         restoring partial matches into another automaton would be wrong: run the old patterns, or use another data directory",
        dir.display(),
        describe(saved),
        describe(config)
    )]
    OtherPatterns {
        /// The data directory.
        dir: PathBuf,
        /// The checkpoint's id.
        checkpoint: u64,
        /// The checkpoint's patterns, as (name, fingerprint).
        saved: Vec<(String, String)>,
        /// The config's patterns, as (name, fingerprint).
        config: Vec<(String, String)>,
    },
    /// The HTTP source's ingest log could not be opened.
    #[error("cannot open the ingest log in '{}': {source}", dir.display())]
    IngestLog {
        /// The ingest log's directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The source could not be made.
    #[error("{}: {reason}", config.display())]
    Source {
        /// The config file.
        config: PathBuf,
        /// Why.
        reason: crate::source::SourceError,
    },
    /// A file sink could not be cut back to the checkpoint.
    #[error("{sink}: restoring the file: {reason}")]
    SinkRestore {
        /// The sink (`outputs.match[0]`).
        sink: String,
        /// Why.
        reason: crate::sink::SinkError,
    },
    /// A sink could not be started.
    #[error("{}: {sink}: {reason}", config.display())]
    Sink {
        /// The config file.
        config: PathBuf,
        /// The sink (`outputs.match[0]`).
        sink: String,
        /// Why.
        reason: crate::sink::SinkError,
    },
    /// The operations server could not listen.
    #[error("server.listen: cannot listen on {addr}: {source}")]
    Server {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A thread, the async runtime or the signal handlers could not be set
    /// up: `doing` says which (`start the worker threads`, ...).
    #[error("cannot {doing}: {source}")]
    Runtime {
        /// What failed.
        doing: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `name (fingerprint), ...` for [`StartError::OtherPatterns`].
fn describe(v: &[(String, String)]) -> String {
    v.iter()
        .map(|(n, f)| format!("{n} ({f})"))
        .collect::<Vec<_>>()
        .join(", ")
}

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
    std::fs::create_dir_all(&data_dir).map_err(|source| StartError::CreateDataDir {
        dir: data_dir.clone(),
        source,
    })?;
    let lock = lock_data_dir(&data_dir)?;
    let config_defs: Vec<PatternDef> = loaded
        .patterns
        .iter()
        .map(|p| PatternDef {
            name: p.name.clone(),
            spec: p.spec.clone(),
            version: 1,
            text: Some(p.text.clone()),
        })
        .collect();
    let config_patterns: Vec<(String, String)> = loaded
        .patterns
        .iter()
        .map(|p| (p.name.clone(), fingerprint(&p.spec)))
        .collect();
    // The state of the last checkpoint, if the data directory has one: it
    // names the patterns that ran (changes included), which run again.
    let store = crate::checkpoint::Store::open(&data_dir)?;
    let checkpoint = store.load()?;
    let saved = match &checkpoint {
        Some(c) => saved_patterns(c, &data_dir)?,
        None => None,
    };
    let defs = saved.as_ref().unwrap_or(&config_defs);
    let scale_out = matches!(&cfg.source, SourceConfig::Kafka(k) if k.scale_out);
    let mut workers = o.workers.max(1) as u32;
    if scale_out && workers > 1 {
        // One engine per partition instead (see `tasks`).
        tracing::warn!(
            workers,
            "a kafka source with scale_out runs one engine per partition: --workers is ignored"
        );
        workers = 1;
    }
    let mut start_changes: Vec<Change> = Vec::new();
    let mut engines = Vec::with_capacity(workers as usize);
    for w in 0..workers {
        let mut e = Engine::with_patterns(
            defs,
            EngineOptions {
                idle_timeout: cfg.time.idle_timeout.map(|m| m.0),
            },
        )
        .map_err(|e| match saved {
            Some(_) => StartError::State {
                dir: data_dir.clone(),
                reason: format!("the saved patterns: {e}"),
            },
            None => StartError::Config {
                config: loaded.path.clone(),
                at: "patterns",
                reason: e.to_string(),
            },
        })?;
        e.set_partition(w, workers);
        if let SourceConfig::Kafka(k) = &cfg.source {
            e.set_partition_tags(k.scale_out);
        }
        engines.push(e);
    }
    let restored = restore(
        &store,
        checkpoint,
        saved.is_some(),
        &mut engines,
        &cfg.name,
        &data_dir,
        o.clock.now_ms(),
    )?;
    // A config whose patterns changed since they were last applied (at a
    // start or by SIGHUP) is applied now, as SIGHUP would: a changed
    // pattern drains its old version.
    if let Some(r) = &restored {
        let changed = match &r.config_patterns {
            Some(before) => *before != config_patterns,
            None => false,
        };
        if saved.is_some() && changed {
            let mut changes: Vec<Change> = config_defs
                .iter()
                .map(|d| Change::Put(Box::new(d.clone())))
                .collect();
            for (name, _) in engines[0].fingerprints() {
                if !config_patterns.iter().any(|(n, _)| **n == *name) {
                    changes.push(Change::Remove(name.to_string()));
                }
            }
            start_changes = changes.clone();
            for e in engines.iter_mut() {
                let mut none = Vec::new();
                let applied = e
                    .apply(&changes, PendingPolicy::Drain, &mut none)
                    .map_err(|e| StartError::Config {
                        config: loaded.path.clone(),
                        at: "patterns",
                        reason: e.to_string(),
                    })?;
                if e.is_first_worker() {
                    for a in applied.iter().filter(|a| a.action != "unchanged") {
                        tracing::info!(
                            who = "start",
                            pattern = %a.name,
                            action = a.action,
                            version = a.version,
                            previous = a.previous,
                            draining = a.draining,
                            "pattern change: the config's patterns differ from the checkpoint's"
                        );
                    }
                }
            }
        }
    }
    if matches!(&cfg.source, SourceConfig::Kafka(k) if k.scale_out) {
        // The changelog holds each partition's state: a partition's keys
        // come from it when the group assigns the partition, not from here
        // (another instance may have moved them on since).
        for e in engines.iter_mut() {
            e.drop_source_partitions(&|_| true);
        }
    }
    let (validator, validator_sets) = engines[0].validator();
    let engine = if scale_out {
        let defs = defs.clone();
        let options = EngineOptions {
            idle_timeout: cfg.time.idle_timeout.map(|m| m.0),
        };
        let make: crate::tasks::MakeEngine =
            Box::new(move || Engine::with_patterns(&defs, options.clone()));
        let template = engines.remove(0);
        Engines::with_tasks(template, crate::tasks::Tasks::new(make, start_changes))
    } else {
        Engines::start(engines).map_err(|source| StartError::Runtime {
            doing: "start the worker threads",
            source,
        })?
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ferrocep-io")
        .enable_all()
        .build()
        .map_err(|source| StartError::Runtime {
            doing: "start the async runtime",
            source,
        })?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(Readiness::default());
    let stop = StopFlag::new();
    let (control_tx, control_rx) = crate::control::channel();
    crate::pipeline::stop_on_signals(
        runtime.handle(),
        stop.clone(),
        Some((control_tx.clone(), loaded.path.clone())),
    )
    .map_err(|source| StartError::Runtime {
        doing: "install signal handlers",
        source,
    })?;

    let mut ingest_log: Option<IngestLog> = None;
    let mut changelog: Option<crate::changelog::Changelog> = None;
    let (source, flush_at_end): (Box<dyn Source>, bool) = match &cfg.source {
        SourceConfig::File {
            path,
            follow,
            end_of_input,
        } => (
            Box::new({
                let f = FileSource::new(loaded.resolve(path), *follow);
                match restored
                    .as_ref()
                    .and_then(|r| r.resume.as_ref())
                    .and_then(|r| r.file)
                {
                    Some(at) => f.resume(at),
                    None => f,
                }
            }),
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
            let addr: SocketAddr =
                listen
                    .parse()
                    .map_err(|e: std::net::AddrParseError| StartError::Config {
                        config: loaded.path.clone(),
                        at: "source.listen",
                        reason: e.to_string(),
                    })?;
            let validator = validator.clone();
            let log = IngestLog::open(&data_dir.join("ingest")).map_err(|source| {
                StartError::IngestLog {
                    dir: data_dir.join("ingest"),
                    source,
                }
            })?;
            ingest_log = Some(log.clone());
            (
                Box::new(
                    HttpSource::new(addr, path.clone(), max_body.0, max_backlog.0, validator)
                        .with_log(log),
                ),
                true,
            )
        }
        SourceConfig::Generator(g) => (Box::new(GeneratorSource::new(g.clone())), true),
        SourceConfig::Kafka(k) => (
            kafka_source(
                k,
                &cfg.name,
                restored.as_ref().and_then(|r| r.resume.as_ref()),
                &metrics,
                &mut changelog,
            )
            .map_err(|reason| StartError::Source {
                config: loaded.path.clone(),
                reason,
            })?,
            true,
        ),
    };

    let mut sinks = Vec::new();
    let mut file_sinks = Vec::new();
    let mut kafka_sinks = Vec::new();
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
            if let (SinkConfig::File { path, .. }, Some(r)) = (sc, restored.as_ref()) {
                // Exactly once: the file is cut back to what the checkpoint
                // holds; the replay writes the rest again.
                if let Some(commit) = r.file_sinks.get(&name) {
                    crate::sink::file::restore(&loaded.dir.join(path), commit).map_err(
                        |reason| StartError::SinkRestore {
                            sink: name.clone(),
                            reason,
                        },
                    )?;
                }
            }
            let start = crate::sink::SinkStart {
                pipeline: cfg.name.clone(),
                kafka: restored
                    .as_ref()
                    .and_then(|r| r.kafka_sinks.get(&name).copied()),
                scale_out: match &cfg.source {
                    SourceConfig::Kafka(k) if k.scale_out => k.topics.first().cloned(),
                    _ => None,
                },
                source_group: match &cfg.source {
                    SourceConfig::Kafka(k) => Some(k.group(&cfg.name)),
                    _ => None,
                },
            };
            let spawned = crate::sink::spawn_sink_inline(
                sc,
                ctx,
                runtime.handle(),
                crate::sink::QUEUE,
                &start,
            )
            .map_err(|reason| StartError::Sink {
                config: loaded.path.clone(),
                sink: name.clone(),
                reason,
            })?;
            if let Some(state) = spawned.file {
                file_sinks.push((name.clone(), state));
            }
            if let Some(shared) = spawned.txn {
                kafka_sinks.push((name.clone(), shared));
            }
            sinks.push(SinkSlot {
                kind,
                name,
                handle: spawned.handle,
            });
        }
    }

    let server_stop = StopFlag::new();
    let server = match &cfg.server {
        Some(s) => {
            let addr: SocketAddr =
                s.listen
                    .parse()
                    .map_err(|e: std::net::AddrParseError| StartError::Config {
                        config: loaded.path.clone(),
                        at: "server.listen",
                        reason: e.to_string(),
                    })?;
            let admin = crate::server::Admin {
                control: control_tx.clone(),
                token: admin_token(&s.admin, loaded)?,
                allow_remote: s.admin.allow_remote,
                max_body: usize::try_from(s.admin.max_body.0).unwrap_or(usize::MAX),
            };
            let token = admin.token.is_some();
            let local = crate::server::start(
                runtime.handle(),
                addr,
                metrics.clone(),
                ready.clone(),
                Some(admin),
                server_stop.clone(),
            )
            .map_err(|source| StartError::Server { addr, source })?;
            tracing::info!(
                %local,
                admin_token = token,
                admin_remote = s.admin.allow_remote,
                "operations server listening (/metrics, /healthz, /readyz, /patterns; PUT/DELETE /patterns/NAME change patterns)"
            );
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
            checkpoints: Some(Checkpointing {
                store: Some(store),
                interval: Duration::from_millis(cfg.state.checkpoint_interval.0.max(1) as u64),
                file_sinks,
                ingest_log,
                next_id: restored.as_ref().map_or(1, |r| r.id + 1),
                sink_wait: Duration::from_secs(30),
                kafka_sinks,
                changelog,
            }),
            resume: restored.and_then(|r| r.resume),
            control: Some(control_rx),
            config_patterns,
            validator: Some(validator_sets),
        },
        server_stop,
        lock,
    })
}

/// The admin token, from the environment variable or file the config
/// names (never from the config itself).
fn admin_token(
    a: &crate::config::AdminConfig,
    loaded: &LoadedConfig,
) -> Result<Option<String>, StartError> {
    let config = |at, reason| StartError::Config {
        config: loaded.path.clone(),
        at,
        reason,
    };
    let token = if let Some(var) = &a.token_env {
        let v = std::env::var(var).map_err(|_| {
            config(
                "server.admin.token_env",
                format!("the environment variable {var} is not set"),
            )
        })?;
        Some(v)
    } else if let Some(file) = &a.token_file {
        let path = loaded.resolve(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            config(
                "server.admin.token_file",
                format!("cannot read '{}': {e}", path.display()),
            )
        })?;
        Some(text.lines().next().unwrap_or("").to_string())
    } else {
        None
    };
    match token.map(|t| t.trim().to_string()) {
        Some(t) if t.is_empty() => Err(config("server.admin", "the token is empty".into())),
        t => Ok(t),
    }
}

/// The kafka source of `k`, resuming at `resume`'s offsets; with
/// `scale_out`, its state per partition in the changelog (`changelog` gets
/// the pipeline's side of it).
#[cfg(feature = "kafka")]
fn kafka_source(
    k: &crate::config::KafkaSourceConfig,
    pipeline: &str,
    resume: Option<&Resume>,
    metrics: &Arc<Metrics>,
    changelog: &mut Option<crate::changelog::Changelog>,
) -> Result<Box<dyn Source>, crate::source::SourceError> {
    use crate::source::{SourceError, SourceErrorKind};
    if !k.scale_out {
        let s =
            crate::source::kafka::KafkaSource::new(k.clone(), pipeline, resume, metrics.clone())?;
        return Ok(Box::new(s));
    }
    let topic = k
        .changelog_topic
        .clone()
        .unwrap_or_else(|| crate::changelog::default_topic(pipeline));
    let config = crate::changelog::io::client_config(&k.brokers, &k.properties, true);
    let writer = crate::changelog::io::KafkaChangelogWriter::new(&config, &topic)
        .map_err(|e| SourceError::new(SourceErrorKind::Config, format!("source: {e}")))?;
    let release = StopFlag::new();
    use crate::changelog::ChangelogWrite;
    let s = crate::source::kafka::KafkaSource::with_changelog(
        k.clone(),
        pipeline,
        &topic,
        writer.token(),
        release.clone(),
        metrics.clone(),
    )?;
    *changelog = Some(crate::changelog::Changelog {
        writer: Some(Box::new(writer)),
        owned: Default::default(),
        release,
    });
    Ok(Box::new(s))
}

#[cfg(not(feature = "kafka"))]
fn kafka_source(
    _: &crate::config::KafkaSourceConfig,
    _: &str,
    _: Option<&Resume>,
    _: &Arc<Metrics>,
    _: &mut Option<crate::changelog::Changelog>,
) -> Result<Box<dyn Source>, crate::source::SourceError> {
    Err(crate::source::SourceError::new(
        crate::source::SourceErrorKind::Config,
        format!("source: {}", crate::sink::NO_KAFKA),
    ))
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
        .map_err(|source| StartError::Lock {
            path: path.clone(),
            opening: true,
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::InUse {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::Lock {
            path,
            opening: false,
            source,
        }),
    }
}

/// What a restored checkpoint gives the rest of the start.
struct Restored {
    id: u64,
    resume: Option<Resume>,
    file_sinks: BTreeMap<String, FileCommit>,
    /// Transactional kafka sinks' counts of committed outputs.
    kafka_sinks: BTreeMap<String, crate::sink::KafkaCommit>,
    /// The config's patterns as last applied.
    config_patterns: Option<Vec<(String, String)>>,
}

/// The patterns a checkpoint saved with their specs, in the order they
/// ran; `None` for a checkpoint that saved no specs (the config's patterns
/// are meant, and must be the same).
fn saved_patterns(
    c: &crate::checkpoint::Loaded,
    data_dir: &std::path::Path,
) -> Result<Option<Vec<PatternDef>>, StartError> {
    let state = |reason| StartError::State {
        dir: data_dir.to_path_buf(),
        reason,
    };
    let mut saved = Vec::with_capacity(c.patterns.len());
    for p in &c.patterns {
        let s = Engine::saved_pattern(&p.meta)
            .map_err(|e| state(format!("pattern '{}': {e}", p.name)))?;
        match s {
            Some(s) => saved.push(s),
            None => return Ok(None),
        }
    }
    if saved.is_empty() || saved.iter().any(|s| s.text.is_none()) {
        return Ok(None);
    }
    saved.sort_by_key(|s| s.order);
    let mut defs = Vec::with_capacity(saved.len());
    for s in saved {
        let Some((text, format)) = s.text else {
            continue;
        };
        let spec = ferrocep_core::spec::Spec::from_str(&text, format).map_err(|e| {
            state(format!(
                "the saved spec of pattern '{}' version {}: {e}",
                s.name, s.version
            ))
        })?;
        defs.push(PatternDef {
            name: s.name,
            spec,
            version: s.version,
            text: Some((text.into(), format)),
        });
    }
    Ok(Some(defs))
}

/// Restores the last checkpoint of `store` into `engine` (nothing for a
/// fresh data directory), and turns on change tracking for the next ones.
/// A checkpoint of other patterns (by name or fingerprint), or of another
/// pipeline, is refused: restoring a partial match into another automaton
/// would be wrong.
fn restore(
    store: &crate::checkpoint::Store,
    checkpoint: Option<crate::checkpoint::Loaded>,
    specs_saved: bool,
    engines: &mut [Engine],
    pipeline: &str,
    data_dir: &std::path::Path,
    now_ms: i64,
) -> Result<Option<Restored>, StartError> {
    let Some(loaded) = checkpoint else {
        for e in engines.iter_mut() {
            e.enable_checkpoints(true);
        }
        return Ok(None);
    };
    let state = |reason| StartError::State {
        dir: data_dir.to_path_buf(),
        reason,
    };
    if loaded.pipeline != pipeline {
        return Err(StartError::OtherPipeline {
            dir: data_dir.to_path_buf(),
            found: loaded.pipeline,
            pipeline: pipeline.to_string(),
        });
    }
    let now = engines[0].fingerprints();
    let saved: Vec<(String, String)> = loaded
        .patterns
        .iter()
        .map(|p| (p.name.clone(), p.fingerprint.clone()))
        .collect();
    let now_list: Vec<(String, String)> = now
        .iter()
        .map(|(n, f)| (n.to_string(), f.clone()))
        .collect();
    if !specs_saved && saved != now_list {
        return Err(StartError::OtherPatterns {
            dir: data_dir.to_path_buf(),
            checkpoint: loaded.id,
            saved,
            config: now_list,
        });
    }
    // Restored keys are in the store already: tracking starts before them.
    let workers = engines.len() as u32;
    let mut keys = 0u64;
    for e in engines.iter_mut() {
        e.enable_checkpoints(false);
    }
    for p in &loaded.patterns {
        for e in engines.iter_mut() {
            e.restore_meta(&p.name, &p.meta)
                .map_err(|e| state(e.to_string()))?;
        }
        // Each key goes to the worker that owns it now, whatever the
        // number of workers that wrote it.
        keys += store
            .for_each_key(
                &p.name,
                0..ferrocep_core::operator::state::KEY_GROUPS,
                |_, k, v| {
                    use ferrocep_core::operator::state::StateCodec;
                    let mut input = k;
                    let key = crate::key::Key::decode(&mut input).map_err(|source| {
                        crate::engine::RestoreError::State {
                            pattern: p.name.clone(),
                            what: "key",
                            source,
                        }
                    })?;
                    let w = crate::engine::owner(&key, workers) as usize;
                    engines[w].restore_key(&p.name, k, v)?;
                    Ok(())
                },
            )
            .map_err(|e| state(e.to_string()))?;
    }
    let source: SourceCheckpoint = if loaded.source.is_empty() {
        SourceCheckpoint::default()
    } else {
        serde_json::from_slice(&loaded.source)
            .map_err(|e| state(format!("the source position is unreadable: {e}")))?
    };
    let resume = source.resume;
    let mut file_sinks = BTreeMap::new();
    let mut kafka_sinks = BTreeMap::new();
    for (name, bytes) in &loaded.sinks {
        if let Ok(k) = serde_json::from_slice::<crate::sink::KafkaCommit>(bytes) {
            kafka_sinks.insert(name.clone(), k);
            continue;
        }
        let commit: FileCommit = serde_json::from_slice(bytes)
            .map_err(|e| state(format!("the position of sink {name} is unreadable: {e}")))?;
        file_sinks.insert(name.clone(), commit);
    }
    let pending: usize = engines
        .iter()
        .flat_map(|e| e.pattern_state(true))
        .filter_map(|s| s.pending)
        .sum();
    let age_s = (now_ms - source.at_ms).max(0) as f64 / 1000.0;
    tracing::info!(
        checkpoint = loaded.id,
        patterns = %loaded.patterns.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(","),
        keys,
        pending_partial_matches = pending,
        source_position = resume.as_ref().map(|r| r.position),
        age_s,
        "state restored"
    );
    Ok(Some(Restored {
        id: loaded.id,
        resume,
        file_sinks,
        kafka_sinks,
        config_patterns: source.config_patterns,
    }))
}

#[cfg(test)]
mod tests {
    use super::StartError;
    use std::path::PathBuf;

    /// The typed errors print the texts the string errors printed (users
    /// and tests match on them).
    #[test]
    fn start_errors_print_the_same_messages() {
        let io = || std::io::Error::other("boom");
        let cases = [
            (
                StartError::Config {
                    config: PathBuf::from("p.yaml"),
                    at: "server.admin",
                    reason: "the token is empty".into(),
                },
                "p.yaml: server.admin: the token is empty",
            ),
            (
                StartError::Lock {
                    path: PathBuf::from("d/LOCK"),
                    opening: true,
                    source: io(),
                },
                "cannot open 'd/LOCK': boom",
            ),
            (
                StartError::Lock {
                    path: PathBuf::from("d/LOCK"),
                    opening: false,
                    source: io(),
                },
                "cannot lock 'd/LOCK': boom",
            ),
            (
                StartError::InUse {
                    dir: PathBuf::from("d"),
                },
                "the data directory 'd' is in use by another ferrocep run",
            ),
            (
                StartError::OtherPatterns {
                    dir: PathBuf::from("d"),
                    checkpoint: 3,
                    saved: vec![("a".into(), "f1".into()), ("b".into(), "f2".into())],
                    config: vec![("a".into(), "f3".into())],
                },
                "the data directory 'd' holds state for other patterns: checkpoint 3 has [a (f1), b (f2)], \
                 the config has [a (f3)]; restoring partial matches into another automaton would be wrong: \
                 run the old patterns, or use another data directory",
            ),
            (
                StartError::Runtime {
                    doing: "start the async runtime",
                    source: io(),
                },
                "cannot start the async runtime: boom",
            ),
            (
                StartError::Server {
                    addr: "127.0.0.1:9".parse().expect("addr"),
                    source: io(),
                },
                "server.listen: cannot listen on 127.0.0.1:9: boom",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }
}
