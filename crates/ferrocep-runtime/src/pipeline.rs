//! `ferrocep run`: a source, the engine and the sinks, joined.
//!
//! ```text
//!  source thread ──bounded queue──▶ engine (this thread) ──bounded queue per sink──▶ sink tasks
//!  (file, stdin,      of batches      patterns, timers,      blocks of outputs        (stdout, webhook,
//!   generator, http)                  watermarks,            by kind                   kafka; tokio)
//!                                     file sinks' writes
//! ```
//!
//! The engine runs on the calling thread: matching is CPU-bound and keeps
//! its state in one core's caches. It waits for the source's next batch only
//! until the next timer is due ([`crate::engine::Engine::next_wake`]), so timeouts fire on
//! time on a quiet stream. Sinks and network sources run on a small tokio
//! runtime, but for file sinks, which this thread writes itself (a copy into
//! the page cache costs less than waking another thread on a small machine;
//! their tasks only fsync). Every queue is bounded: a slow sink fills its queue, the engine
//! waits on it, the source queue fills and the source waits, so memory stays
//! bounded and nothing is dropped.
//!
//! Checkpoints ([`Checkpointing`]): every interval, the engine thread waits
//! until every sink has delivered every output handed to it, reads each file
//! sink's committed length, and takes the engine's changes since the last
//! checkpoint ([`crate::engine::Engine::checkpoint`]) with the source's resume position; a
//! checkpoint thread writes them to the store in one atomic commit while the
//! engine goes on (one at a time; a failed one makes the next one full). A
//! fresh data directory gets a checkpoint before anything is read, and a stop
//! takes a final one, so a restart resumes exactly where the last one was.
//!
//! Stopping (SIGTERM, SIGINT, [`StopFlag::raise`]): the source stops
//! reading, the engine takes what was already read, a final checkpoint is
//! taken, every sink finishes with every output queued, then
//! [`Pipeline::run`] returns. A second signal during that wait exits at once.
//! The end of a bounded input (a file without `follow`) stops the same way
//! after `end_of_input`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;

use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::server::Readiness;
use crate::sink::file::FileSinkState;
use crate::sink::{Block, Kind, Output, SinkHandle};
use crate::source::ingest_log::IngestLog;
use crate::source::{
    Batch, Resume, Source, SourceCtx, SourceError, SourceErrorKind, SourceMsg, SourceTx, StopFlag,
};
use crate::workers::Engines;

/// Batches queued between the source and the engine.
const SOURCE_QUEUE: usize = 16;

/// How often the gauges that walk the engine's state are set.
const PUBLISH_EVERY: Duration = Duration::from_secs(10);

/// How often the engine looks at the stop flag and pattern changes when
/// nothing else wakes it.
const TICK: Duration = Duration::from_millis(20);

/// A sink of the pipeline and the kind of output it takes.
pub struct SinkSlot {
    /// The kind it takes.
    pub kind: Kind,
    /// Its place in the config, e.g. `outputs.timeout[0]`.
    pub name: String,
    /// The running sink.
    pub handle: SinkHandle,
}

/// Everything a run needs, built and started (sinks, server) but not yet
/// reading.
pub struct Pipeline {
    /// The pipeline's name.
    pub name: String,
    /// The engine with every pattern (one, or several splitting the keys).
    pub engine: Engines,
    /// The source, not yet started.
    pub source: Box<dyn Source>,
    /// The sinks, running.
    pub sinks: Vec<SinkSlot>,
    /// The async runtime the sinks (and network sources) run on.
    pub runtime: tokio::runtime::Runtime,
    /// The clock.
    pub clock: SharedClock,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` reports.
    pub ready: Arc<Readiness>,
    /// Raised to stop the run.
    pub stop: StopFlag,
    /// The data directory.
    pub data_dir: PathBuf,
    /// At the end of a bounded input, flush (watermark to +infinity).
    pub flush_at_end: bool,
    /// Where the operations server listens, once started.
    pub server: Option<SocketAddr>,
    /// Print a progress line on stderr (when it is a terminal).
    pub progress: bool,
    /// Checkpoints (none: the state is not kept).
    pub checkpoints: Option<Checkpointing>,
    /// Where the source resumes (from the restored checkpoint).
    pub resume: Option<Resume>,
    /// Pattern changes asked by the admin API and SIGHUP.
    pub control: Option<crate::control::ControlRx>,
    /// The config's patterns (name, fingerprint) as last applied, saved
    /// with checkpoints: a restart whose config differs applies it.
    pub config_patterns: Vec<(String, String)>,
    /// What HTTP ingest checks events against: updated after changes.
    pub validator: Option<crate::engine::ValidatorSets>,
}

/// What checkpoints need: the store, how often, and the sinks and the log
/// whose positions they record.
pub struct Checkpointing {
    /// The store in the data directory (moved to the checkpoint thread when
    /// the run starts).
    pub store: Option<crate::checkpoint::Store>,
    /// Time between two checkpoints.
    pub interval: Duration,
    /// File sinks by name: their committed length goes into each checkpoint.
    pub file_sinks: Vec<(String, Arc<FileSinkState>)>,
    /// The HTTP source's ingest log: truncated behind each checkpoint.
    pub ingest_log: Option<IngestLog>,
    /// The number of the next checkpoint.
    pub next_id: u64,
    /// How long a checkpoint waits for the sinks to deliver what came
    /// before it; then it is skipped (and tried again at the next interval).
    pub sink_wait: Duration,
    /// Transactional kafka sinks by name: each checkpoint asks them to
    /// commit, and records their count of committed outputs.
    pub kafka_sinks: Vec<(String, Arc<crate::sink::TxnShared>)>,
    /// A kafka source whose state follows its partitions: each checkpoint
    /// writes the owned partitions' state to the changelog first.
    pub changelog: Option<crate::changelog::Changelog>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The input ended (a bounded source).
    EndOfInput,
    /// Asked to stop (a signal, or the stop flag).
    Stopped,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The source failed.
    #[error("source failed: {0}")]
    Source(#[from] SourceError),
    /// Checkpoints cannot be taken: the pipeline was built without its
    /// checkpoint store.
    #[error("checkpoints: the store is missing")]
    NoStore,
    /// Checkpoints cannot be taken: the checkpoint thread did not start.
    #[error("checkpoints: cannot start the checkpoint thread: {0}")]
    CheckpointThread(std::io::Error),
    /// A sink stopped taking outputs.
    #[error("sink {sink} failed: {reason}")]
    Sink {
        /// Which sink (`outputs.match[0]`).
        sink: String,
        /// How it failed.
        reason: SinkStop,
    },
}

/// How a sink failed the run (its own error is in the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SinkStop {
    /// Its task ended on its own (a fenced kafka sink, say).
    #[error("it stopped (see the log)")]
    Stopped,
    /// Its queue closed while an output was on its way to it.
    #[error("it stopped taking outputs (see the log)")]
    Closed,
}

impl Pipeline {
    /// Runs until the input ends or the stop flag is raised; then delivers
    /// what is in flight and returns.
    pub fn run(self) -> Result<Ended, RunError> {
        let Pipeline {
            name,
            mut engine,
            source,
            sinks,
            runtime,
            clock,
            metrics,
            ready,
            stop,
            data_dir,
            flush_at_end,
            server: _,
            progress,
            mut checkpoints,
            resume,
            control,
            mut config_patterns,
            validator,
        } = self;
        let mut changes = ChangeState::default();
        let (tx, rx) = mpsc::sync_channel::<SourceMsg>(SOURCE_QUEUE);
        let kind_name = source.kind();
        let ctx = SourceCtx {
            out: SourceTx::new(tx, stop.clone()),
            clock: clock.clone(),
            metrics: metrics.clone(),
            runtime: runtime.handle().clone(),
            data_dir: data_dir.clone(),
            resume_from: resume.as_ref().map_or(0, |r| r.position),
            resume: resume.clone(),
        };
        let mut last_resume = resume;
        let mut last_checkpoint = Instant::now();
        let mut writer = match checkpoints.as_mut() {
            Some(c) => {
                let store = c.store.take().ok_or(RunError::NoStore)?;
                let log = c.changelog.as_mut().and_then(|l| l.writer.take());
                Some(
                    CheckpointWriter::start(store, c.ingest_log.clone(), log)
                        .map_err(RunError::CheckpointThread)?,
                )
            }
            None => None,
        };
        let source_thread = std::thread::Builder::new()
            .name(format!("ferrocep-source-{kind_name}"))
            .spawn(move || source.run(ctx))
            .map_err(|e| {
                RunError::Source(SourceError::new(
                    SourceErrorKind::Thread,
                    format!("cannot start the source thread: {e}"),
                ))
            })?;
        ready.restored.store(true, Ordering::SeqCst);
        ready.source_open.store(true, Ordering::SeqCst);
        tracing::info!(pipeline = %name, source = kind_name, "running");

        let mut router = Router::new(sinks, metrics.clone(), ready.clone());
        if let (Some(c), Some(w), None) =
            (checkpoints.as_mut(), writer.as_mut(), last_resume.as_ref())
        {
            if c.next_id == 1 {
                // A fresh data directory: a first checkpoint of the empty
                // state and the sinks as they are, so that a crash before the
                // next one restarts from here (file sinks cut back to it),
                // not from nothing with the outputs already written.
                checkpoint(
                    c,
                    w,
                    &mut engine,
                    &router,
                    &name,
                    None,
                    &clock,
                    &config_patterns,
                );
                w.poll(true, &mut engine, &metrics, &clock);
            }
        }
        list_patterns(&mut engine, &ready, true);
        let mut progress = Progress::new(progress && std::io::stderr().is_terminal());
        let mut out: Vec<Output> = Vec::new();
        publish(&mut engine, &metrics, &ready, clock.now_ms(), true);
        let mut last_metrics = Instant::now();
        let mut last_walk = Instant::now();
        let mut failure: Option<RunError> = None;
        let mut ended = Ended::Stopped;
        // The source's next message, taken early to see the batch after
        // the one being matched ([`Engines::start_batch_ahead`]): a batch
        // (`ahead`) or anything else (`peeked`), at most one of them.
        let mut ahead: Option<Arc<Batch>> = None;
        let mut peeked: Option<SourceMsg> = None;
        loop {
            if stop.is_raised() {
                // What the source already read is taken; nothing more.
                if let Some(b) = ahead.take() {
                    engine.on_batch(&b, clock.now_ms(), &mut out);
                    if b.resume.is_some() {
                        last_resume = b.resume.clone();
                    }
                }
                while let Some(msg) = peeked.take().or_else(|| rx.try_recv().ok()) {
                    match msg {
                        SourceMsg::Batch(b) => {
                            let b = Arc::new(b);
                            engine.on_batch(&b, clock.now_ms(), &mut out);
                            if b.resume.is_some() {
                                last_resume = b.resume.clone();
                            }
                        }
                        SourceMsg::Rejected { pos, raw, reason } => {
                            engine.on_rejected(pos, &raw, &reason, &mut out)
                        }
                        // Partitions moving while stopping: the final
                        // checkpoint writes those still owned; a revoke's
                        // question is dropped (the source goes on).
                        SourceMsg::End | SourceMsg::Failed(_) | SourceMsg::Partitions(_) => {}
                    }
                    if let Err(e) = router.route(&mut out) {
                        failure = Some(e);
                        break;
                    }
                }
                break;
            }
            engine.on_time(clock.now_ms(), &mut out);
            if let Err(e) = router.route(&mut out) {
                failure = Some(e);
                break;
            }
            // Pattern changes, between two batches.
            while let Some(req) = control.as_ref().and_then(|c| c.try_recv().ok()) {
                let position = last_resume.as_ref().map(|r| r.position);
                changes.handle(
                    req,
                    &mut engine,
                    &mut out,
                    &ready,
                    &metrics,
                    position,
                    checkpoints.is_some(),
                    &mut config_patterns,
                );
                if let Some(v) = &validator {
                    engine.update_validator(v);
                }
                if let Err(e) = router.route(&mut out) {
                    failure = Some(e);
                    break;
                }
            }
            if failure.is_some() {
                break;
            }
            let mut wait = match engine.next_wake() {
                Some(t) => clock.wait_for(t).min(TICK),
                None => TICK,
            };
            if !changes.awaiting.is_empty() {
                // A change waits for its checkpoint: look for it often.
                wait = wait.min(Duration::from_millis(1));
            }
            let (batch, msg) = match ahead.take() {
                Some(b) => (Some(b), Err(RecvTimeoutError::Timeout)),
                None => match peeked.take().map_or_else(|| rx.recv_timeout(wait), Ok) {
                    Ok(SourceMsg::Batch(b)) => (Some(Arc::new(b)), Err(RecvTimeoutError::Timeout)),
                    m => (None, m),
                },
            };
            if let Some(b) = batch {
                if peeked.is_none() {
                    match rx.try_recv() {
                        Ok(SourceMsg::Batch(n)) => ahead = Some(Arc::new(n)),
                        Ok(m) => peeked = Some(m),
                        Err(_) => {}
                    }
                }
                engine.start_batch_ahead(&b, clock.now_ms(), &mut out, ahead.as_ref());
                // This thread's worker's outputs go to the sinks while the
                // other workers match (and read the next batch); theirs
                // follow, in the order of `on_batch`.
                let first = router.route(&mut out);
                engine.finish_batch(&mut out);
                if let Err(e) = first {
                    failure = Some(e);
                    break;
                }
                if b.resume.is_some() {
                    last_resume = b.resume.clone();
                }
            }
            match msg {
                // Taken as `batch` above.
                Ok(SourceMsg::Batch(_)) => {}
                Ok(SourceMsg::Rejected { pos, raw, reason }) => {
                    engine.on_rejected(pos, &raw, &reason, &mut out)
                }
                Ok(SourceMsg::End) => {
                    engine.on_end(flush_at_end, &mut out);
                    ended = Ended::EndOfInput;
                    stop.raise();
                }
                Ok(SourceMsg::Failed(reason)) => {
                    failure = Some(RunError::Source(reason));
                    stop.raise();
                }
                Ok(SourceMsg::Partitions(change)) => {
                    if let Err(e) = partitions_moved(
                        change,
                        &mut engine,
                        &mut last_resume,
                        checkpoints.as_mut().zip(writer.as_mut()),
                        &router,
                        &name,
                        &clock,
                        &config_patterns,
                        &metrics,
                        &mut changes,
                    ) {
                        failure = Some(e);
                        stop.raise();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The source ended without saying why: it saw the stop
                    // flag, or it returned an error.
                    stop.raise();
                }
            }
            if let Err(e) = router.route(&mut out) {
                failure = Some(e);
                break;
            }
            if let (Some(c), Some(w)) = (checkpoints.as_mut(), writer.as_mut()) {
                if let Some(done) = w.poll(false, &mut engine, &metrics, &clock) {
                    changes.checkpointed(done);
                }
                if changes.force || last_checkpoint.elapsed() >= c.interval {
                    last_checkpoint = Instant::now();
                    if let Some(id) = checkpoint(
                        c,
                        w,
                        &mut engine,
                        &router,
                        &name,
                        last_resume.as_ref(),
                        &clock,
                        &config_patterns,
                    ) {
                        changes.started(id);
                    }
                }
            }
            if last_metrics.elapsed() >= Duration::from_secs(1) {
                last_metrics = Instant::now();
                // A sink that stopped on its own (a fenced kafka sink) stops
                // the run, also when no output is on its way to it.
                if let Some(slot) = router.sinks.iter().find(|s| s.handle.task.is_finished()) {
                    failure = Some(RunError::Sink {
                        sink: slot.name.clone(),
                        reason: SinkStop::Stopped,
                    });
                    break;
                }
                // Counting pending partial matches walks every key: every
                // 10 s, so that it never holds timers up for long (10 ms at
                // 1M keys); the rest every second.
                let walk = last_walk.elapsed() >= PUBLISH_EVERY;
                if walk {
                    last_walk = Instant::now();
                }
                for (p, v) in engine.retire_drained() {
                    tracing::info!(pattern = %p, version = v, "draining version done: nothing pending any more");
                    list_patterns(&mut engine, &ready, false);
                }
                publish(&mut engine, &metrics, &ready, clock.now_ms(), walk);
                progress.show(&mut engine, clock.now_ms());
            }
        }
        stop.raise();
        ready.source_open.store(false, Ordering::SeqCst);
        publish(&mut engine, &metrics, &ready, clock.now_ms(), true);
        progress.finish();
        let release = checkpoints
            .as_ref()
            .and_then(|c| c.changelog.as_ref())
            .map(|l| l.release.clone());
        if let Some(release) = &release {
            // The source leaves the group once this is written, so that the
            // partitions' next owners read it.
            final_checkpoint(
                failure.is_none(),
                checkpoints.as_mut(),
                writer.take(),
                &mut engine,
                &router,
                &name,
                last_resume.as_ref(),
                &clock,
                &config_patterns,
                &metrics,
                &mut changes,
            );
            release.raise();
        }
        drop(rx);
        match source_thread.join() {
            Ok(Err(e)) if failure.is_none() => failure = Some(RunError::Source(e)),
            Ok(_) => {}
            Err(_) => {
                if failure.is_none() {
                    failure = Some(RunError::Source(SourceError::new(
                        SourceErrorKind::Thread,
                        "the source thread panicked",
                    )));
                }
            }
        }
        let stats = engine.stats();
        tracing::info!(
            events = stats.events,
            matches = stats.outputs[0],
            timeouts = stats.outputs[1],
            late = stats.outputs[2],
            errors = stats.outputs[3],
            "input closed; delivering outputs in flight"
        );
        final_checkpoint(
            failure.is_none(),
            checkpoints.as_mut(),
            writer.take(),
            &mut engine,
            &router,
            &name,
            last_resume.as_ref(),
            &clock,
            &config_patterns,
            &metrics,
            &mut changes,
        );
        changes.abandon();
        router.close(&runtime);
        runtime.shutdown_timeout(Duration::from_secs(1));
        match failure {
            Some(e) => Err(e),
            None => Ok(ended),
        }
    }
}

/// The final checkpoint (with `take`: what was read, and every output of
/// it), then the checkpoint thread closes. Nothing without a writer.
#[allow(clippy::too_many_arguments)]
fn final_checkpoint(
    take: bool,
    checkpoints: Option<&mut Checkpointing>,
    writer: Option<CheckpointWriter>,
    engine: &mut Engines,
    router: &Router,
    name: &str,
    resume: Option<&Resume>,
    clock: &SharedClock,
    config_patterns: &[(String, String)],
    metrics: &Metrics,
    changes: &mut ChangeState,
) {
    let (Some(c), Some(mut w)) = (checkpoints, writer) else {
        return;
    };
    if let Some(done) = w.poll(true, engine, metrics, clock) {
        changes.checkpointed(done);
    }
    if take {
        if let Some(id) = checkpoint(
            c,
            &mut w,
            engine,
            router,
            name,
            resume,
            clock,
            config_patterns,
        ) {
            changes.started(id);
        }
        if let Some(done) = w.poll(true, engine, metrics, clock) {
            changes.checkpointed(done);
        }
    }
    w.close();
}

/// A kafka source's partitions moved (see [`crate::changelog`]). Gained:
/// their keys are restored, and their offsets join the resume point.
/// Lost: a checkpoint writes them to the changelog, their keys are dropped,
/// then the source is answered. Fails when restored state cannot be read.
#[allow(clippy::too_many_arguments)]
fn partitions_moved(
    change: crate::changelog::PartitionChange,
    engine: &mut Engines,
    last_resume: &mut Option<Resume>,
    cp: Option<(&mut Checkpointing, &mut CheckpointWriter)>,
    router: &Router,
    name: &str,
    clock: &SharedClock,
    config_patterns: &[(String, String)],
    metrics: &Metrics,
    changes: &mut ChangeState,
) -> Result<(), RunError> {
    use crate::changelog::PartitionChange;
    match change {
        PartitionChange::Assigned(states) => {
            let parts: Vec<u16> = states.iter().map(|s| s.partition).collect();
            // Whatever this instance held of them is older than the
            // changelog.
            engine.drop_source_partitions(&parts);
            engine.hold_partitions(&parts, clock.now_ms());
            let r = last_resume.get_or_insert_with(Resume::default);
            let offsets = r.kafka.get_or_insert_with(Vec::new);
            for s in &states {
                offsets.retain(|o| o.partition != i32::from(s.partition));
                if let Some(m) = &s.meta {
                    offsets.extend(m.offsets.iter().cloned());
                }
            }
            offsets.sort();
            if let Some((c, _)) = &cp {
                // Before any output of theirs reaches the sinks.
                for (_, shared) in &c.kafka_sinks {
                    for s in &states {
                        shared.gained(s.partition, s.meta.as_ref().map(|m| m.outputs));
                    }
                }
            }
            let (restored, skipped) = engine.restore_partitions(states).map_err(|e| {
                RunError::Source(SourceError::new(
                    SourceErrorKind::Input,
                    format!("source: the changelog's state cannot be restored: {e}"),
                ))
            })?;
            if skipped > 0 {
                tracing::warn!(
                    partitions = ?parts,
                    skipped,
                    "changelog keys of patterns that no longer run as saved are left out"
                );
            }
            tracing::info!(partitions = ?parts, keys = restored, "partitions gained: state restored");
            if let Some((c, _)) = cp {
                if let Some(l) = c.changelog.as_mut() {
                    l.owned.extend(parts);
                }
            }
        }
        PartitionChange::Revoked { partitions, done } => {
            if let Some((c, w)) = cp {
                if let Some(d) = w.poll(true, engine, metrics, clock) {
                    changes.checkpointed(d);
                }
                if let Some(id) = checkpoint(
                    c,
                    w,
                    engine,
                    router,
                    name,
                    last_resume.as_ref(),
                    clock,
                    config_patterns,
                ) {
                    changes.started(id);
                    if let Some(d) = w.poll(true, engine, metrics, clock) {
                        if !d.1 {
                            tracing::error!(partitions = ?partitions, "the checkpoint of revoked partitions failed: their next owner replays from the one before");
                        }
                        changes.checkpointed(d);
                    }
                } else {
                    tracing::warn!(partitions = ?partitions, "no checkpoint of the revoked partitions: their next owner replays from the last one");
                }
                if let Some(l) = c.changelog.as_mut() {
                    for p in &partitions {
                        l.owned.remove(p);
                    }
                }
            }
            engine.drop_source_partitions(&partitions);
            if let Some(r) = last_resume.as_mut().and_then(|r| r.kafka.as_mut()) {
                r.retain(|o| !u16::try_from(o.partition).is_ok_and(|p| partitions.contains(&p)));
            }
            tracing::info!(partitions = ?partitions, "partitions lost: checkpointed and dropped");
            let _ = done.send(());
        }
    }
    Ok(())
}

/// Hands outputs to the sinks of their kind, in blocks: each call's
/// outputs of a kind go to each of its sinks as one [`Block`] (or a few, of
/// at most [`BLOCK`] outputs), shared by those sinks, not one hand-over and
/// one allocation per output.
struct Router {
    sinks: Vec<SinkSlot>,
    by_kind: [Vec<usize>; 4],
    /// Each sink's queue-length gauge (looked up once, not per output).
    queue_gauges: Vec<prometheus_client::metrics::gauge::Gauge>,
    /// Outputs handed to each sink so far.
    sent: Vec<u64>,
    /// Per sink, the blocks handed to it and not yet delivered, oldest
    /// first, and how many outputs they hold: each block's last reference is
    /// dropped here, on the thread that made its outputs, not on a sink's (a
    /// free on another thread than the allocation's costs several times
    /// more, and the allocator cannot reuse the memory for the next
    /// outputs).
    held: Vec<(std::collections::VecDeque<Block>, usize)>,
    /// Outputs of each kind being gathered into blocks.
    gather: [Vec<Output>; 4],
    /// The most outputs in a block of each kind: [`BLOCK`], or less for
    /// a sink with a smaller queue.
    most: [usize; 4],
    ready: Arc<Readiness>,
}

/// At most this many outputs held per sink ([`Router::held`]) beyond its
/// queue: a sink that takes longer to report them delivered frees them
/// itself.
const HELD_BEYOND_QUEUE: usize = 4096;

/// Most outputs in a block: a sink takes a block at once, so this bounds
/// what it holds beyond its queue.
const BLOCK: usize = 1024;

impl Router {
    fn new(sinks: Vec<SinkSlot>, metrics: Arc<Metrics>, ready: Arc<Readiness>) -> Router {
        let mut by_kind: [Vec<usize>; 4] = Default::default();
        for (i, s) in sinks.iter().enumerate() {
            by_kind[s.kind as usize].push(i);
        }
        let queue_gauges = sinks
            .iter()
            .map(|s| {
                metrics
                    .sink_queue
                    .get_or_create(&Metrics::label("sink", &s.name))
                    .clone()
            })
            .collect();
        let sent = vec![0; sinks.len()];
        let held = sinks.iter().map(|_| Default::default()).collect();
        let most = std::array::from_fn(|k| {
            by_kind[k]
                .iter()
                .map(|&i: &usize| sinks[i].handle.tx.max_capacity())
                .min()
                .unwrap_or(1)
                .clamp(1, BLOCK)
        });
        Router {
            most,
            sinks,
            by_kind,
            queue_gauges,
            sent,
            held,
            gather: Default::default(),
            ready,
        }
    }

    /// Sends every output of `out` (emptied) to its sinks, waiting while a
    /// queue is full.
    fn route(&mut self, out: &mut Vec<Output>) -> Result<(), RunError> {
        if out.is_empty() {
            return Ok(());
        }
        self.release();
        let total = out.len();
        for o in out.drain(..) {
            let k = o.kind as usize;
            if self.by_kind[k].is_empty() {
                continue; // routed to `[]`: dropped on purpose
            }
            if self.gather[k].capacity() == 0 {
                self.gather[k].reserve_exact(total.min(self.most[k]));
            }
            self.gather[k].push(o);
            if self.gather[k].len() >= self.most[k] {
                self.flush(k)?;
            }
        }
        for k in 0..4 {
            if !self.gather[k].is_empty() {
                self.flush(k)?;
            }
        }
        for (i, gauge) in self.queue_gauges.iter().enumerate() {
            let delivered = self.sinks[i].handle.delivered.load(Ordering::Acquire);
            gauge.set(self.sent[i].saturating_sub(delivered) as i64);
        }
        self.ready.sinks_blocked.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Hands the outputs gathered of kind `k` to its sinks, as one block.
    fn flush(&mut self, k: usize) -> Result<(), RunError> {
        let block: Block = Arc::new(std::mem::take(&mut self.gather[k]));
        let n = block.len();
        for &i in &self.by_kind[k] {
            if let Some(inline) = &mut self.sinks[i].handle.inline {
                inline.write(&block);
                self.sent[i] += n as u64;
                continue;
            }
            let slot = &self.sinks[i];
            // The fast path parks nothing; a full queue is the
            // backpressure: wait for the sink.
            let closed = match slot.handle.tx.try_send(block.clone()) {
                Ok(()) => false,
                Err(TrySendError::Full(b)) => {
                    self.ready.sinks_blocked.store(true, Ordering::SeqCst);
                    slot.handle.tx.blocking_send(b).is_err()
                }
                Err(TrySendError::Closed(_)) => true,
            };
            if closed {
                return Err(RunError::Sink {
                    sink: slot.name.clone(),
                    reason: SinkStop::Closed,
                });
            }
            self.sent[i] += n as u64;
            let (held, count) = &mut self.held[i];
            while *count + n > slot.handle.tx.max_capacity() + HELD_BEYOND_QUEUE {
                let Some(b) = held.pop_front() else { break };
                *count -= b.len();
            }
            held.push_back(block.clone());
            *count += n;
        }
        Ok(())
    }

    /// Drops the held blocks that their sinks have delivered.
    fn release(&mut self) {
        for ((slot, (held, count)), &sent) in self.sinks.iter().zip(&mut self.held).zip(&self.sent)
        {
            let delivered = slot.handle.delivered.load(Ordering::Acquire);
            // The held ones are the last `count` sent.
            let mut first = sent.saturating_sub(*count as u64);
            while let Some(b) = held.front() {
                if first + b.len() as u64 > delivered {
                    break;
                }
                first += b.len() as u64;
                *count -= b.len();
                held.pop_front();
            }
        }
    }

    /// Closes every queue and waits until each sink has finished with what
    /// it holds.
    fn close(self, rt: &tokio::runtime::Runtime) {
        let mut tasks = Vec::new();
        for s in self.sinks {
            let SinkHandle { tx, task, .. } = s.handle;
            drop(tx);
            tasks.push((s.name, task));
        }
        rt.block_on(async {
            for (name, task) in tasks {
                let mut task = task;
                loop {
                    match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
                        Ok(Ok(Ok(()))) => break,
                        Ok(Ok(Err(e))) => {
                            tracing::error!(sink = %name, error = %e, "sink failed while stopping");
                            break;
                        }
                        Ok(Err(e)) => {
                            tracing::error!(sink = %name, error = %e, "sink task ended abnormally");
                            break;
                        }
                        Err(_) => {
                            tracing::warn!(sink = %name, "still delivering outputs in flight (a second signal exits at once)");
                        }
                    }
                }
            }
        });
    }
}

/// The source part of a checkpoint (`meta/source` in the store, as JSON):
/// where the source resumes, and when the checkpoint was taken.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SourceCheckpoint {
    /// Where the source resumes (`None`: it cannot, or nothing was read).
    pub resume: Option<Resume>,
    /// The clock time of the checkpoint, epoch ms.
    pub at_ms: i64,
    /// The config's patterns (name, fingerprint) as last applied, at start
    /// or by SIGHUP (`None`: saved before patterns could change).
    #[serde(default)]
    pub config_patterns: Option<Vec<(String, String)>>,
}

/// A checkpoint's data, taken on the engine thread and written by the
/// checkpoint thread while the engine goes on (Flink's asynchronous
/// snapshot).
struct CheckpointJob {
    id: u64,
    /// The clock time of the checkpoint.
    at_ms: i64,
    /// For the changelog: the partitions owned, and the source's offsets.
    #[allow(clippy::type_complexity)]
    changelog: Option<(
        std::collections::BTreeSet<u16>,
        Vec<crate::source::KafkaOffset>,
        Vec<crate::tasks::TaskMeta>,
    )>,
    pipeline: String,
    parts: crate::engine::EngineCheckpoint,
    source: Vec<u8>,
    sinks: Vec<(String, Vec<u8>)>,
    /// The ingest log is truncated behind this position once it is written.
    truncate: Option<u64>,
    started: Instant,
}

/// What the checkpoint thread says about a job.
struct CheckpointDone {
    id: u64,
    result: Result<crate::checkpoint::CommitStats, String>,
    started: Instant,
}

/// The checkpoint thread: owns the store, writes one job at a time.
struct CheckpointWriter {
    jobs: mpsc::SyncSender<CheckpointJob>,
    done: mpsc::Receiver<CheckpointDone>,
    thread: Option<std::thread::JoinHandle<()>>,
    in_flight: bool,
}

impl CheckpointWriter {
    fn start(
        mut store: crate::checkpoint::Store,
        log: Option<IngestLog>,
        mut changelog: Option<Box<dyn crate::changelog::ChangelogWrite>>,
    ) -> std::io::Result<Self> {
        let (jobs, job_rx) = mpsc::sync_channel::<CheckpointJob>(1);
        let (done_tx, done) = mpsc::channel::<CheckpointDone>();
        let thread = std::thread::Builder::new()
            .name("ferrocep-checkpoint".into())
            .spawn(move || {
                for job in job_rx {
                    // The changelog first: a local checkpoint never holds
                    // more than the changelog.
                    let result = match (changelog.as_mut(), &job.changelog) {
                        (Some(w), Some((owned, offsets, metas))) => {
                            let records = crate::changelog::records(
                                job.id,
                                w.token(),
                                job.at_ms,
                                &job.parts,
                                owned,
                                offsets,
                                metas,
                            );
                            w.write(job.id, &records)
                        }
                        _ => Ok(()),
                    };
                    let result = result.and_then(|()| write_job(&mut store, &job));
                    if result.is_ok() {
                        if let (Some(log), Some(pos)) = (&log, job.truncate) {
                            if let Err(e) = log.truncate_before(pos) {
                                tracing::warn!(error = %e, "cannot truncate the ingest log behind the checkpoint");
                            }
                        }
                    }
                    let _ = done_tx.send(CheckpointDone {
                        id: job.id,
                        result,
                        started: job.started,
                    });
                }
            })?;
        Ok(CheckpointWriter {
            jobs,
            done,
            thread: Some(thread),
            in_flight: false,
        })
    }

    /// Takes the result of the job in flight, waiting for it with `wait`.
    fn poll(
        &mut self,
        wait: bool,
        engine: &mut Engines,
        metrics: &Metrics,
        clock: &SharedClock,
    ) -> Option<(u64, bool)> {
        if !self.in_flight {
            return None;
        }
        let done = if wait {
            self.done.recv().ok()
        } else {
            self.done.try_recv().ok()
        };
        let Some(d) = done else {
            if wait {
                self.in_flight = false;
            }
            return None;
        };
        self.in_flight = false;
        let ok = d.result.is_ok();
        match d.result {
            Ok(stats) => {
                let ms = d.started.elapsed().as_millis() as i64;
                metrics.checkpoint_duration_ms.set(ms);
                metrics
                    .checkpoint_size_bytes
                    .set(stats.bytes_written as i64);
                metrics.checkpoint_last_ms.set(clock.now_ms());
                tracing::debug!(
                    id = d.id,
                    keys_written = stats.keys_written,
                    keys_deleted = stats.keys_deleted,
                    bytes = stats.bytes_written,
                    ms,
                    "checkpoint"
                );
            }
            Err(e) => {
                engine.checkpoint_failed();
                tracing::error!(id = d.id, error = %e, "checkpoint failed; the next one writes the whole state");
            }
        }
        Some((d.id, ok))
    }

    fn close(mut self) {
        drop(self.jobs);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_job(
    store: &mut crate::checkpoint::Store,
    job: &CheckpointJob,
) -> Result<crate::checkpoint::CommitStats, String> {
    use crate::checkpoint::{CheckpointWrite, KeyRef, KeyState, PatternRecord};
    let records: Vec<PatternRecord> = job
        .parts
        .parts
        .iter()
        .map(|p| PatternRecord {
            name: p.name.to_string(),
            fingerprint: p.fingerprint.clone(),
            version: u64::from(p.version),
            meta: p.meta.clone(),
        })
        .collect();
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    let mut dropped: Vec<&str> = job.parts.retired.iter().map(|n| &**n).collect();
    for p in &job.parts.parts {
        if p.full {
            dropped.push(&p.name);
        }
        for (g, k, v) in &p.upserts {
            upserts.push(KeyState {
                pattern: &p.name,
                key_group: *g,
                key: k,
                state: v,
            });
        }
        for (g, k) in &p.deletes {
            deletes.push(KeyRef {
                pattern: &p.name,
                key_group: *g,
                key: k,
            });
        }
    }
    let write = CheckpointWrite {
        id: job.id,
        pipeline: &job.pipeline,
        patterns: &records,
        upserts: &upserts,
        deletes: &deletes,
        dropped_patterns: &dropped,
        source: &job.source,
        sinks: &job.sinks,
    };
    store.commit(&write).map_err(|e| e.to_string())
}

/// Starts a checkpoint (see the module docs): waits until every sink has
/// delivered every output handed to it, reads the file sinks' committed
/// lengths, takes the engine's changes, and hands them with the source
/// position to the checkpoint thread. Skipped, with a warning, when a sink
/// has not caught up within `sink_wait`.
#[allow(clippy::too_many_arguments)]
fn checkpoint(
    c: &mut Checkpointing,
    writer: &mut CheckpointWriter,
    engine: &mut Engines,
    router: &Router,
    name: &str,
    resume: Option<&Resume>,
    clock: &SharedClock,
    config_patterns: &[(String, String)],
) -> Option<u64> {
    if writer.in_flight {
        return None; // one at a time; the next interval tries again
    }
    let started = Instant::now();
    // Transactional sinks commit what they were handed; Kafka's commit thus
    // comes before the checkpoint's (see `sink::kafka`).
    for (sink, shared) in &c.kafka_sinks {
        if let Some(i) = router.sinks.iter().position(|s| s.name == *sink) {
            let offsets = resume.and_then(|r| r.kafka.clone()).unwrap_or_default();
            shared.request_commit_at(router.sent[i], offsets);
        }
    }
    // Every output before the checkpoint must be delivered: a crash after it
    // replays only what comes after.
    let deadline = started + c.sink_wait;
    for (slot, &sent) in router.sinks.iter().zip(&router.sent) {
        while slot.handle.delivered.load(Ordering::SeqCst) < sent {
            if Instant::now() >= deadline {
                tracing::warn!(sink = %slot.name, "checkpoint skipped: the sink has not delivered the outputs before it yet");
                return None;
            }
            if slot.handle.task.is_finished() {
                tracing::warn!(sink = %slot.name, "checkpoint skipped: the sink has stopped");
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let mut sinks = Vec::with_capacity(c.file_sinks.len() + c.kafka_sinks.len());
    for (sink, shared) in &c.kafka_sinks {
        if let Some(i) = router.sinks.iter().position(|s| s.name == *sink) {
            let commit = crate::sink::KafkaCommit {
                kafka_committed: shared.base + router.sent[i],
            };
            sinks.push((
                sink.clone(),
                serde_json::to_vec(&commit).unwrap_or_default(),
            ));
        }
    }
    for (sink, state) in &c.file_sinks {
        match state.sync() {
            Ok(commit) => sinks.push((
                sink.clone(),
                serde_json::to_vec(&commit).unwrap_or_default(),
            )),
            Err(e) => {
                tracing::warn!(sink = %sink, error = %e, "checkpoint skipped: the file sink cannot sync");
                return None;
            }
        }
    }
    let parts = engine.checkpoint();
    let metas = engine.take_partition_metas();
    let job = CheckpointJob {
        id: c.next_id,
        at_ms: clock.now_ms(),
        changelog: c.changelog.as_ref().map(|l| {
            (
                l.owned.clone(),
                resume.and_then(|r| r.kafka.clone()).unwrap_or_default(),
                metas,
            )
        }),
        pipeline: name.to_string(),
        parts,
        source: serde_json::to_vec(&SourceCheckpoint {
            resume: resume.cloned(),
            at_ms: clock.now_ms(),
            config_patterns: Some(config_patterns.to_vec()),
        })
        .unwrap_or_default(),
        sinks,
        truncate: resume
            .map(|r| r.position)
            .filter(|_| c.ingest_log.is_some()),
        started,
    };
    let id = c.next_id;
    c.next_id += 1;
    if writer.jobs.send(job).is_ok() {
        writer.in_flight = true;
        Some(id)
    } else {
        engine.checkpoint_failed();
        tracing::error!("the checkpoint thread is gone; checkpoints stop");
        None
    }
}

/// Pattern changes on the engine thread: applies them, and answers each
/// once a checkpoint that holds it is committed (see [`crate::control`]).
#[derive(Default)]
struct ChangeState {
    /// Answers waiting for a checkpoint: the checkpoint's id once one was
    /// started after the change.
    awaiting: Vec<Awaiting>,
    /// A checkpoint is wanted now, not at the next interval.
    force: bool,
}

struct Awaiting {
    checkpoint: Option<u64>,
    done: crate::control::Done,
    reply: tokio::sync::oneshot::Sender<Result<crate::control::Done, crate::control::Refused>>,
}

impl ChangeState {
    #[allow(clippy::too_many_arguments)]
    fn handle(
        &mut self,
        req: crate::control::Request,
        engine: &mut Engines,
        out: &mut Vec<Output>,
        ready: &Readiness,
        metrics: &Metrics,
        position: Option<u64>,
        durable: bool,
        config_patterns: &mut Vec<(String, String)>,
    ) {
        use crate::control::{AppliedView, Done, Origin, Refused, Request};
        let (changes, pending, origin, reply) = match req {
            Request::Change {
                changes,
                pending,
                origin,
                reply,
            } => (changes, pending, origin, reply),
            Request::Refresh(done) => {
                list_patterns(engine, ready, true);
                let _ = done.send(());
                return;
            }
            Request::Reload(path) => match reload_changes(&path, engine) {
                Ok((changes, config)) => {
                    *config_patterns = config;
                    (
                        changes,
                        crate::engine::PendingPolicy::Drain,
                        Origin::Sighup,
                        None,
                    )
                }
                Err(errors) => {
                    metrics
                        .pattern_changes
                        .get_or_create(&Metrics::labels2(("action", "rejected"), ("via", "sighup")))
                        .inc();
                    tracing::error!(config = %path.display(), "SIGHUP: the config has errors; the running patterns are unchanged:\n{errors}");
                    return;
                }
            },
        };
        let started = Instant::now();
        match engine.apply(changes, pending, out) {
            Ok(applied) => {
                for a in &applied {
                    metrics
                        .pattern_changes
                        .get_or_create(&Metrics::labels2(
                            ("action", a.action),
                            ("via", origin.via()),
                        ))
                        .inc();
                    if a.action != "unchanged" {
                        tracing::info!(
                            who = %origin.who(),
                            pattern = %a.name,
                            action = a.action,
                            version = a.version,
                            previous = a.previous,
                            draining = a.draining,
                            dropped = a.dropped,
                            position,
                            apply_us = started.elapsed().as_micros() as u64,
                            "pattern change"
                        );
                    }
                }
                list_patterns(engine, ready, false);
                let done = Done {
                    changes: applied
                        .iter()
                        .map(|a| AppliedView::new(a, pending))
                        .collect(),
                    position,
                    checkpoint: None,
                };
                let changed = applied.iter().any(|a| a.action != "unchanged");
                match reply {
                    Some(reply) if durable && changed => {
                        self.force = true;
                        self.awaiting.push(Awaiting {
                            checkpoint: None,
                            done,
                            reply,
                        });
                    }
                    Some(reply) => {
                        let _ = reply.send(Ok(done));
                    }
                    None if durable && changed => self.force = true,
                    None => {}
                }
            }
            Err(e) => {
                metrics
                    .pattern_changes
                    .get_or_create(&Metrics::labels2(
                        ("action", "rejected"),
                        ("via", origin.via()),
                    ))
                    .inc();
                tracing::warn!(who = %origin.who(), error = %e, "pattern change refused");
                let status = match e {
                    crate::engine::EngineError::NotRunning { .. } => 404,
                    _ => 400,
                };
                if let Some(reply) = reply {
                    let _ = reply.send(Err(Refused {
                        status,
                        reason: e.to_string(),
                    }));
                }
            }
        }
    }

    /// A checkpoint was started: it holds every change applied before it.
    fn started(&mut self, id: u64) {
        self.force = false;
        for a in &mut self.awaiting {
            a.checkpoint.get_or_insert(id);
        }
    }

    /// A checkpoint ended: answer the changes it holds, or take another.
    fn checkpointed(&mut self, (id, ok): (u64, bool)) {
        if !ok {
            for a in &mut self.awaiting {
                if a.checkpoint == Some(id) {
                    a.checkpoint = None;
                    self.force = true;
                }
            }
            return;
        }
        let mut i = 0;
        while i < self.awaiting.len() {
            if self.awaiting[i].checkpoint.is_some_and(|c| c <= id) {
                let mut a = self.awaiting.swap_remove(i);
                a.done.checkpoint = Some(id);
                let _ = a.reply.send(Ok(a.done));
            } else {
                i += 1;
            }
        }
    }

    /// The run is over: changes not yet in a checkpoint are answered so.
    fn abandon(&mut self) {
        for a in self.awaiting.drain(..) {
            let _ = a.reply.send(Err(crate::control::Refused {
                status: 503,
                reason: "ferrocep stopped before a checkpoint held the change; it may be absent after a restart".into(),
            }));
        }
    }
}

/// What SIGHUP applies, and the config's patterns as (name, fingerprint).
type Reload = (Vec<crate::engine::Change>, Vec<(String, String)>);

/// The changes that make the running patterns the config's (SIGHUP), and
/// the config's patterns as (name, fingerprint); or the config's errors.
fn reload_changes(path: &std::path::Path, engine: &mut Engines) -> Result<Reload, String> {
    use crate::engine::{fingerprint, Change, PatternDef};
    let loaded = crate::config::load(path).map_err(|e| e.to_string())?;
    let mut changes = Vec::new();
    let mut names = Vec::new();
    for p in &loaded.patterns {
        names.push((p.name.clone(), fingerprint(&p.spec)));
        changes.push(Change::Put(Box::new(PatternDef {
            name: p.name.clone(),
            spec: p.spec.clone(),
            version: 1,
            text: Some(p.text.clone()),
        })));
    }
    for s in engine.pattern_state(false) {
        if !s.draining && !names.iter().any(|(n, _)| *n == *s.name) {
            changes.push(Change::Remove(s.name.to_string()));
        }
    }
    Ok((changes, names))
}

/// Sets the list `GET /patterns` shows from the engine (with `walk`, with
/// fresh pending counts).
fn list_patterns(engine: &mut Engines, ready: &Readiness, walk: bool) {
    let state = engine.pattern_state(walk);
    let Ok(mut list) = ready.patterns.lock() else {
        return;
    };
    let old = std::mem::take(&mut *list);
    for s in state {
        let before = old
            .iter()
            .find(|i| *i.name == *s.name && i.version == u64::from(s.version));
        list.push(crate::server::PatternInfo {
            name: s.name.to_string(),
            version: u64::from(s.version),
            state: if s.draining { "draining" } else { "active" },
            fingerprint: s.fingerprint.clone(),
            spec: s.text.as_ref().and_then(|(t, f)| spec_value(t, *f)),
            pending_partial_matches: s
                .pending
                .map(|p| p as u64)
                .or_else(|| before.and_then(|b| b.pending_partial_matches)),
            pending_keys: s.keys as u64,
        });
    }
}

/// A spec's text as a JSON value, for `GET /patterns`.
fn spec_value(text: &str, format: ferrocep_core::spec::Format) -> Option<serde_json::Value> {
    match format {
        ferrocep_core::spec::Format::Json => serde_json::from_str(text).ok(),
        _ => serde_json::from_str(text)
            .ok()
            .or_else(|| serde_saphyr::from_str(text).ok()),
    }
}

/// Sets the gauges of the engine's state (with `walk`, also the pending
/// partial matches, which takes a walk over every key).
fn publish(engine: &mut Engines, metrics: &Metrics, ready: &Readiness, now: i64, walk: bool) {
    let state = engine.pattern_state(walk);
    if let Ok(mut list) = ready.patterns.lock() {
        for s in &state {
            if let Some(info) = list
                .iter_mut()
                .find(|i| *i.name == *s.name && i.version == u64::from(s.version))
            {
                info.pending_keys = s.keys as u64;
                info.state = if s.draining { "draining" } else { "active" };
                if let Some(p) = s.pending {
                    info.pending_partial_matches = Some(p as u64);
                }
            }
        }
    }
    // Gauges by pattern: its versions together; draining versions also by
    // version.
    let mut by_name: Vec<(&str, Option<usize>, usize, i64)> = Vec::new();
    for s in &state {
        match by_name.iter_mut().find(|b| b.0 == &*s.name) {
            Some(b) => {
                b.1 = b.1.zip(s.pending).map(|(a, c)| a + c);
                b.2 += s.keys;
                b.3 = b.3.max(s.time);
            }
            None => by_name.push((&s.name, s.pending, s.keys, s.time)),
        }
        if s.draining {
            if let Some(p) = s.pending {
                let version = s.version.to_string();
                metrics
                    .draining_partial_matches
                    .get_or_create(&Metrics::labels2(
                        ("pattern", &s.name),
                        ("version", &version),
                    ))
                    .set(p as i64);
            }
        }
    }
    for (name, pending, keys, time) in by_name {
        let l = Metrics::label("pattern", name);
        if let Some(pending) = pending {
            metrics
                .pending_partial_matches
                .get_or_create(&l)
                .set(pending as i64);
        }
        metrics.pending_keys.get_or_create(&l).set(keys as i64);
        metrics.watermark_ms.get_or_create(&l).set(time);
        let lag = if time > i64::MIN / 2 {
            now.saturating_sub(time)
        } else {
            0
        };
        metrics.watermark_lag_ms.get_or_create(&l).set(lag);
    }
    let (per, _) = engine.output_counts();
    for (name, counts) in per {
        for k in Kind::ALL {
            let c = metrics
                .outputs
                .get_or_create(&Metrics::labels2(("pattern", &name), ("kind", k.as_str())));
            let now = counts[k as usize];
            let before = c.get();
            if now > before {
                c.inc_by(now - before);
            }
        }
    }
}

/// The progress line on a terminal.
struct Progress {
    on: bool,
    last: Option<(Instant, u64)>,
}

impl Progress {
    fn new(on: bool) -> Progress {
        Progress { on, last: None }
    }

    fn show(&mut self, engine: &mut Engines, now: i64) {
        if !self.on {
            return;
        }
        let stats = engine.stats();
        let rate = match self.last {
            Some((t, n)) => (stats.events - n) as f64 / t.elapsed().as_secs_f64().max(1e-3),
            None => 0.0,
        };
        self.last = Some((Instant::now(), stats.events));
        let state = engine.pattern_state(false);
        let pending: usize = state.iter().map(|s| s.keys).sum();
        let wm = state.iter().map(|s| s.time).min().unwrap_or(i64::MIN);
        let wm = if wm > i64::MIN / 2 {
            format!("{}s behind", now.saturating_sub(wm) / 1000)
        } else {
            "none".into()
        };
        eprint!(
            "\r\x1b[K{:.0} events/s · {} events · watermark {} · {} keys pending · {} matches · {} timeouts · {} late · {} errors",
            rate,
            stats.events,
            wm,
            pending,
            stats.outputs[0],
            stats.outputs[1],
            stats.outputs[2],
            stats.outputs[3]
        );
    }

    fn finish(&mut self) {
        if self.on && self.last.is_some() {
            eprintln!();
        }
    }
}

/// Raises `stop` at the first SIGTERM or SIGINT; a second one exits the
/// process at once (status 130), for an operator who does not want to wait
/// for a sink that is down. SIGHUP is logged: pattern changes while running
/// are not supported yet.
pub fn stop_on_signals(
    rt: &tokio::runtime::Handle,
    stop: StopFlag,
    reload: Option<(crate::control::ControlTx, PathBuf)>,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let _guard = rt.enter();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    rt.spawn(async move {
        let mut seen = 0;
        loop {
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => {
                    match &reload {
                        Some((tx, path)) => {
                            tracing::info!(config = %path.display(), "SIGHUP: re-reading the config's patterns");
                            let _ = tx.send(crate::control::Request::Reload(path.clone()));
                        }
                        None => tracing::warn!("SIGHUP: nothing to re-read; ignored"),
                    }
                    continue;
                }
            };
            seen += 1;
            if seen == 1 {
                tracing::info!(signal = which, "stopping: no more input is read; delivering outputs in flight");
                stop.raise();
            } else {
                tracing::warn!(signal = which, "second signal: exiting now, outputs in flight are not delivered");
                std::process::exit(130);
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    use ferrocep_core::spec::{Format, Spec};

    use super::*;
    use crate::clock::ManualClock;
    use crate::engine::Engine;
    use crate::engine::EngineOptions;
    use crate::source::Batch;

    /// Sends its batches, then either ends the input or waits for the stop
    /// flag (a quiet live source).
    struct ListSource {
        batches: Vec<Batch>,
        end: bool,
    }

    impl Source for ListSource {
        fn kind(&self) -> &'static str {
            "list"
        }

        fn run(self: Box<Self>, ctx: SourceCtx) -> Result<(), SourceError> {
            for b in self.batches {
                if !ctx.out.send(SourceMsg::Batch(b)) {
                    return Ok(());
                }
            }
            if self.end {
                ctx.out.send(SourceMsg::End);
                return Ok(());
            }
            while !ctx.out.stop().is_raised() {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        }
    }

    /// A sink that keeps what it gets (the real sinks have their own tests).
    fn keeping_sink(rt: &tokio::runtime::Runtime, kept: Arc<Mutex<Vec<Output>>>) -> SinkHandle {
        let (tx, mut rx) = crate::sink::queue(4);
        let delivered = Arc::new(AtomicU64::new(0));
        let d = delivered.clone();
        let task = rt.spawn(async move {
            while let Some(o) = rx.recv().await {
                kept.lock().unwrap().push((*o).clone());
                d.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        });
        SinkHandle {
            tx,
            delivered,
            task,
            inline: None,
        }
    }

    fn spec() -> Spec {
        Spec::from_str(
            r#"{"key":"id","time":{"field":"ts"},"within":"10s",
                "stages":[{"name":"c","where":"t == \"c\""},
                          {"name":"p","contiguity":"followed_by","where":"t == \"p\""}]}"#,
            Format::Json,
        )
        .unwrap()
    }

    fn pipeline(
        source: ListSource,
        clock: SharedClock,
        idle: Option<i64>,
        kept: Arc<Mutex<Vec<Output>>>,
    ) -> (Pipeline, StopFlag) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sinks = Kind::ALL
            .iter()
            .map(|&kind| SinkSlot {
                kind,
                name: format!("outputs.{}[0]", kind.as_str()),
                handle: keeping_sink(&runtime, kept.clone()),
            })
            .collect();
        let stop = StopFlag::new();
        let p = Pipeline {
            name: "t".into(),
            engine: Engines::single(
                Engine::new(
                    &[("orders".into(), spec())],
                    EngineOptions { idle_timeout: idle },
                )
                .unwrap(),
            ),
            source: Box::new(source),
            sinks,
            runtime,
            clock,
            metrics: Arc::new(Metrics::new()),
            ready: Arc::new(Readiness::default()),
            stop: stop.clone(),
            data_dir: std::env::temp_dir(),
            flush_at_end: true,
            server: None,
            progress: false,
            checkpoints: None,
            resume: None,
            control: None,
            config_patterns: Vec::new(),
            validator: None,
        };
        (p, stop)
    }

    fn batch(lines: &[&str], first_pos: u64) -> Batch {
        let mut b = Batch::default();
        for (i, l) in lines.iter().enumerate() {
            b.push(first_pos + i as u64, l.as_bytes());
        }
        b
    }

    #[test]
    fn end_of_input_flushes_and_delivers_everything() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let source = ListSource {
            batches: vec![
                batch(
                    &[
                        r#"{"id":"a","t":"c","ts":1000}"#,
                        r#"{"id":"b","t":"c","ts":2000}"#,
                    ],
                    0,
                ),
                batch(&[r#"{"id":"a","t":"p","ts":3000}"#, "oops"], 2),
            ],
            end: true,
        };
        let (p, _) = pipeline(source, Arc::new(ManualClock::new(0)), None, kept.clone());
        assert_eq!(p.run().unwrap(), Ended::EndOfInput);
        let kept = kept.lock().unwrap();
        let mut kinds: Vec<&str> = kept.iter().map(|o| o.kind.as_str()).collect();
        kinds.sort_unstable();
        assert_eq!(kinds, ["error", "match", "timeout"], "{kept:?}");
    }

    /// The quiet-stream rule end to end: no input after the create, and the
    /// timeout comes out once the clock passes window end + idle timeout;
    /// then the stop flag ends the run (no flush: the input did not end).
    #[test]
    fn quiet_stream_timeout_fires_by_the_clock() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let clock = ManualClock::new(1_000_000);
        let source = ListSource {
            batches: vec![batch(
                &[
                    r#"{"id":"a","t":"c","ts":50000}"#,
                    r#"{"id":"b","t":"c","ts":59000}"#,
                ],
                0,
            )],
            end: false,
        };
        let (p, stop) = pipeline(source, Arc::new(clock.clone()), Some(5_000), kept.clone());
        let run = std::thread::spawn(move || p.run());
        let wait_for = |n: usize| {
            for _ in 0..2_000 {
                if kept.lock().unwrap().len() >= n {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            false
        };
        // Watermark 58_999 at clock 1_000_000; `a`'s window ends at 60_000:
        // due at 1_000_000 + 5_000 + 1_001.
        std::thread::sleep(Duration::from_millis(50));
        clock.set(1_006_000);
        std::thread::sleep(Duration::from_millis(50));
        assert!(kept.lock().unwrap().is_empty(), "fired early");
        clock.set(1_006_001);
        assert!(wait_for(1), "no timeout");
        assert_eq!(kept.lock().unwrap()[0].kind, Kind::Timeout);
        assert!(kept.lock().unwrap()[0]
            .id()
            .starts_with("orders:timeout:0-"));
        clock.advance(9_000);
        assert!(wait_for(2), "no second timeout");
        stop.raise();
        assert_eq!(run.join().unwrap().unwrap(), Ended::Stopped);
        assert_eq!(kept.lock().unwrap().len(), 2);
    }

    /// A checkpoint whose write fails (injected at the store) leaves the one
    /// before it usable, and the next one writes the whole state: the last
    /// checkpoint restores every key, including those changed while the
    /// failed one was being taken.
    #[test]
    fn a_failed_checkpoint_write_is_followed_by_a_full_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = crate::checkpoint::Store::open(dir.path()).unwrap();
        store.fail_commit = Some(2);
        let mut engine =
            Engine::new(&[("orders".into(), spec())], EngineOptions::default()).unwrap();
        engine.enable_checkpoints(true);
        let mut out = Vec::new();
        let mut commit = |engine: &mut Engine, id: u64| {
            let job = CheckpointJob {
                id,
                at_ms: 0,
                changelog: None,
                pipeline: "t".into(),
                parts: engine.checkpoint(),
                source: Vec::new(),
                sinks: Vec::new(),
                truncate: None,
                started: Instant::now(),
            };
            let r = write_job(&mut store, &job);
            if r.is_err() {
                engine.checkpoint_failed();
            }
            r.is_ok()
        };
        for i in 0..9u64 {
            let line = format!(r#"{{"id":"k{i}","t":"c","ts":{}}}"#, 1000 + i);
            engine.on_batch(&batch(&[&line], i), 0, &mut out);
            if i % 3 == 2 {
                let id = i / 3 + 1;
                assert_eq!(commit(&mut engine, id), id != 2, "checkpoint {id}");
            }
        }
        drop(store);
        let store = crate::checkpoint::Store::open(dir.path()).unwrap();
        let loaded = store.load().unwrap().unwrap();
        assert_eq!(loaded.id, 3);
        let mut restored =
            Engine::new(&[("orders".into(), spec())], EngineOptions::default()).unwrap();
        restored
            .restore_meta("orders", &loaded.patterns[0].meta)
            .unwrap();
        let n = store
            .for_each_key("orders", 0..128, |_, k, v| {
                Ok(restored.restore_key("orders", k, v)?)
            })
            .unwrap();
        // Every create's key, those of the failed checkpoint included.
        assert_eq!(n, 9);
    }
}
