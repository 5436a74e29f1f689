//! Sinks of `ferrocep run`: where outputs go.
//!
//! Every output is one JSON line ([`Output::line`]) of a [`Kind`], with its
//! pattern and a deterministic id already in it. Each configured sink runs as
//! a task on the async runtime and takes outputs from a bounded queue
//! ([`SinkHandle::tx`]), in blocks of a batch's outputs of its kind
//! ([`Block`]); the engine waits when a queue is full, so a sink that is
//! down holds outputs back with bounded memory and slows the source. In
//! `run`, file sinks are written by the engine's thread itself instead
//! ([`spawn_sink_inline`], [`SinkHandle::inline`]): no queue, no hand-over,
//! and a failed write holds the engine as a full queue would.
//! A sink never drops an output silently: it delivers it, or (webhooks) puts
//! it in its dead-letter file with the reason.
//!
//! [`SinkHandle::delivered`] counts the outputs a sink has finished with
//! (written and flushed, acknowledged, or dead-lettered), in queue order: a
//! checkpoint is complete once every sink has finished with every output
//! before it.
//!
//! [`spawn`] starts the sink a [`SinkConfig`] names: [`stdout`] (also
//! stderr), [`file`](mod@file), [`webhook`] or `kafka` (the `kafka` feature). Each writes what is already queued at
//! once, so an output reaches its destination (or its first webhook
//! attempt) within milliseconds of being queued, and each finishes with
//! everything still queued once the queue is closed (all senders dropped):
//! that is the graceful stop. The `sink_queue` gauge counts what is queued
//! or in flight, updated as the sink takes, finishes, and waits between
//! retries.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::SinkConfig;
use crate::metrics::Metrics;

mod common;
pub mod file;
#[cfg(feature = "kafka")]
mod kafka;
pub mod stdout;
pub mod webhook;

/// The kinds of output, each routed to its own sinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A complete match.
    Match,
    /// A partial match whose window ran out (Flink's timeout side output).
    Timeout,
    /// An event behind the watermark (Flink's late-data side output).
    Late,
    /// Input that could not be used (malformed, missing fields), with why.
    Error,
}

impl Kind {
    /// All kinds, in config order.
    pub const ALL: [Kind; 4] = [Kind::Match, Kind::Timeout, Kind::Late, Kind::Error];

    /// The name in configs, output lines and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Match => "match",
            Kind::Timeout => "timeout",
            Kind::Late => "late",
            Kind::Error => "error",
        }
    }
}

/// One output, ready to write: its kind, its id and its JSON line, in one
/// allocation (the engine makes hundreds of thousands a second).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Its kind.
    pub kind: Kind,
    /// The id's bytes, then the line's.
    buf: Vec<u8>,
    id_len: u32,
    /// The source partition whose engine made it ([`NO_PARTITION`]: none).
    partition: u16,
}

/// [`Output::source_partition`] of an output not made per source
/// partition.
const NO_PARTITION: u16 = u16::MAX;

impl Output {
    /// An output of `kind` with `id` (also inside `line`) and `line`, the
    /// whole JSON object without a line end.
    pub fn new(kind: Kind, id: &str, line: &[u8]) -> Output {
        let mut buf = Vec::with_capacity(id.len() + line.len());
        buf.extend_from_slice(id.as_bytes());
        buf.extend_from_slice(line);
        Output::from_parts(kind, buf, id.len())
    }

    /// An output whose `buf` holds its id (its first `id_len` bytes, UTF-8)
    /// and then its line.
    pub(crate) fn from_parts(kind: Kind, buf: Vec<u8>, id_len: usize) -> Output {
        let id_len = if std::str::from_utf8(buf.get(..id_len).unwrap_or_default()).is_ok() {
            id_len as u32
        } else {
            0
        };
        Output {
            kind,
            buf,
            id_len,
            partition: NO_PARTITION,
        }
    }

    /// The source partition whose engine made it, with a kafka source that
    /// scales out (`None` otherwise).
    pub fn source_partition(&self) -> Option<u16> {
        (self.partition != NO_PARTITION).then_some(self.partition)
    }

    /// Marks it as made by the engine of source partition `p`.
    pub(crate) fn set_source_partition(&mut self, p: u16) {
        self.partition = p;
    }

    /// It, marked as made by the engine of source partition `p` (below
    /// `u16::MAX`): a transactional kafka sink of a source that scales out
    /// commits it in that partition's transaction.
    pub fn with_source_partition(mut self, p: u16) -> Output {
        self.set_source_partition(p);
        self
    }

    /// Its id: the same in every run over the same input, across restarts
    /// and replays; consumers de-duplicate on it.
    pub fn id(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.id_len as usize]).unwrap_or_default()
    }

    /// The whole JSON object, without a line end.
    pub fn line(&self) -> &[u8] {
        &self.buf[self.id_len as usize..]
    }
}

/// What a sink gets to run with.
#[derive(Clone)]
pub struct SinkCtx {
    /// Where it is in the config, e.g. `outputs.timeout[0]`: names it in
    /// logs and metrics.
    pub name: String,
    /// Metrics (queue length, retries, dead letters).
    pub metrics: Arc<Metrics>,
    /// The directory of the config file: relative paths are relative to it.
    pub config_dir: PathBuf,
    /// The pipeline's data directory (default dead-letter files live in it).
    pub data_dir: PathBuf,
    /// The clock, for backoff and batching deadlines in tests.
    pub clock: SharedClock,
}

/// Outputs handed to a sink together, in order: one hand-over and one
/// reference count for a whole batch of the engine, not one per output. The
/// sinks of one kind share the block.
pub type Block = Arc<Vec<Output>>;

/// One output of a [`Block`], as a sink holds it: the block and its place
/// in it (no allocation per output).
#[derive(Clone, Debug)]
pub struct Queued {
    block: Block,
    at: usize,
}

impl Queued {
    /// `o` in a block of its own.
    #[cfg(test)]
    pub(crate) fn one(o: Output) -> Queued {
        Queued {
            block: Arc::new(vec![o]),
            at: 0,
        }
    }
}

impl std::borrow::Borrow<Output> for Queued {
    fn borrow(&self) -> &Output {
        self
    }
}

impl std::ops::Deref for Queued {
    type Target = Output;

    fn deref(&self) -> &Output {
        &self.block[self.at]
    }
}

/// The sending side of a sink's queue: blocks of outputs, bounded in
/// outputs (not blocks) by a semaphore of that many permits. A block takes
/// a permit per output (at most the whole bound) and gives them back when
/// the sink takes it.
#[derive(Clone)]
pub struct SinkTx {
    tx: tokio::sync::mpsc::UnboundedSender<Block>,
    room: Arc<tokio::sync::Semaphore>,
    max: usize,
}

/// The receiving side of a sink's queue ([`SinkTx`]).
pub(crate) struct SinkRx {
    rx: tokio::sync::mpsc::UnboundedReceiver<Block>,
    room: Arc<tokio::sync::Semaphore>,
    max: usize,
    /// The block being taken, and its next output.
    cur: Option<Block>,
    next: usize,
}

/// A queue of at most `max` outputs (at least 1).
pub(crate) fn queue(max: usize) -> (SinkTx, SinkRx) {
    let max = max.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let room = Arc::new(tokio::sync::Semaphore::new(max));
    (
        SinkTx {
            tx,
            room: room.clone(),
            max,
        },
        SinkRx {
            rx,
            room,
            max,
            cur: None,
            next: 0,
        },
    )
}

impl SinkTx {
    /// Permits a block takes.
    fn permits(&self, block: &Block) -> u32 {
        u32::try_from(block.len().min(self.max)).unwrap_or(u32::MAX)
    }

    /// Queues `block` if there is room for it now (a full queue is the
    /// backpressure).
    pub fn try_send(
        &self,
        block: impl Into<Block>,
    ) -> Result<(), tokio::sync::mpsc::error::TrySendError<Block>> {
        use tokio::sync::mpsc::error::TrySendError;
        use tokio::sync::TryAcquireError;
        let block = block.into();
        match self.room.try_acquire_many(self.permits(&block)) {
            Ok(p) => p.forget(),
            Err(TryAcquireError::NoPermits) => return Err(TrySendError::Full(block)),
            Err(TryAcquireError::Closed) => return Err(TrySendError::Closed(block)),
        }
        self.tx.send(block).map_err(|e| TrySendError::Closed(e.0))
    }

    /// Queues `block`, waiting (blocking the thread: not on an async
    /// worker) until there is room. An error (with the block) once the sink
    /// is gone.
    pub fn blocking_send(&self, block: impl Into<Block>) -> Result<(), Block> {
        let block = block.into();
        match block_on(self.room.acquire_many(self.permits(&block))) {
            Ok(p) => p.forget(),
            Err(_) => return Err(block),
        }
        self.tx.send(block).map_err(|e| e.0)
    }

    /// The most outputs it holds.
    pub fn max_capacity(&self) -> usize {
        self.max
    }

    /// Outputs queued and not yet taken by the sink.
    pub fn len(&self) -> usize {
        self.max.saturating_sub(self.room.available_permits())
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Output> for Block {
    fn from(o: Output) -> Block {
        Arc::new(vec![o])
    }
}

/// Runs `f` to completion on this thread (parking it while `f` waits).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

impl SinkRx {
    /// The next output of the current block, if any.
    fn take(&mut self) -> Option<Queued> {
        let block = self.cur.as_ref()?;
        if self.next < block.len() {
            self.next += 1;
            return Some(Queued {
                block: block.clone(),
                at: self.next - 1,
            });
        }
        self.cur = None;
        None
    }

    /// A block off the channel becomes the current one; its permits go
    /// back.
    fn start(&mut self, block: Block) {
        self.room.add_permits(block.len().min(self.max));
        self.cur = Some(block);
        self.next = 0;
    }

    /// The next output, waiting for one; `None` once the queue is closed
    /// and empty. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<Queued> {
        loop {
            if let Some(q) = self.take() {
                return Some(q);
            }
            let block = self.rx.recv().await?;
            self.start(block);
        }
    }

    /// The next output if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Queued> {
        loop {
            if let Some(q) = self.take() {
                return Some(q);
            }
            let block = self.rx.try_recv().ok()?;
            self.start(block);
        }
    }

    /// Outputs queued and not yet taken.
    pub(crate) fn len(&self) -> usize {
        let cur = self.cur.as_ref().map_or(0, |b| b.len() - self.next);
        self.max.saturating_sub(self.room.available_permits()) + cur
    }
}

impl Drop for SinkRx {
    fn drop(&mut self) {
        // A sender waiting for room would wait forever.
        self.room.close();
    }
}

/// A running sink.
pub struct SinkHandle {
    /// Its queue.
    pub tx: SinkTx,
    /// Outputs it has finished with (see the module docs).
    pub delivered: Arc<AtomicU64>,
    /// Ends once the queue is closed and everything in it is finished with.
    pub task: tokio::task::JoinHandle<Result<(), SinkError>>,
    /// A sink that the caller writes itself ([`spawn_sink_inline`]); then
    /// nothing goes through its queue.
    pub inline: Option<Inline>,
}

/// A sink written on the caller's thread ([`spawn_sink_inline`]): a file
/// sink, whose writes are a copy into the page cache. Each output handed to
/// [`Inline::write`] is delivered when it returns.
pub struct Inline(file::Inline);

impl Inline {
    /// Writes `outputs` (each its line and `\n`), retrying a failed write
    /// with backoff until it succeeds (logged): the caller waits, as it
    /// would for a full queue.
    pub fn write(&mut self, outputs: &[Output]) {
        self.0.write(outputs)
    }
}

/// Why a sink could not start, or stopped: its [`kind`](SinkError::kind)
/// (the cause) and a message that names the sink and the field or file
/// (what [`Display`](std::fmt::Display) prints).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    kind: SinkErrorKind,
    message: String,
}

/// The cause of a [`SinkError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SinkErrorKind {
    /// Its settings cannot be used (a bad URL, a kafka sink in a build
    /// without kafka).
    Config,
    /// Writing its file or stream failed (or opening the file).
    Io,
    /// A webhook could not deliver.
    Delivery,
    /// The kafka producer failed (or was fenced).
    Broker,
}

impl SinkError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: SinkErrorKind, message: impl Into<String>) -> Self {
        SinkError {
            kind,
            message: message.into(),
        }
    }

    /// The cause.
    pub fn kind(&self) -> SinkErrorKind {
        self.kind
    }

    /// The message (also its `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// `fut`'s error as a [`SinkError`] of `kind`.
async fn typed(
    kind: SinkErrorKind,
    fut: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), SinkError> {
    fut.await.map_err(|m| SinkError::new(kind, m))
}

/// Why a kafka source or sink cannot start in a build without the `kafka`
/// feature.
pub const NO_KAFKA: &str =
    "this ferrocep was built without the `kafka` feature: rebuild with `--features kafka`";

/// How many outputs a sink's queue holds before the engine waits.
pub const QUEUE: usize = 8192;

/// A sink just started, with what else the pipeline may need of it.
pub struct Spawned {
    /// The sink.
    pub handle: SinkHandle,
    /// A file sink's committed position, for checkpoints.
    pub file: Option<Arc<file::FileSinkState>>,
    /// A transactional kafka sink's side of the checkpoint barrier.
    pub txn: Option<Arc<TxnShared>>,
}

/// What a sink starts from beyond its config: the pipeline's name and
/// what the restored checkpoint holds of it.
#[derive(Debug, Clone, Default)]
pub struct SinkStart {
    /// The pipeline's name (default transactional ids derive from it).
    pub pipeline: String,
    /// A transactional kafka sink's count from the restored checkpoint
    /// (`None`: a fresh data directory, or a sink the checkpoint did not
    /// have).
    pub kafka: Option<KafkaCommit>,
    /// With a kafka source that scales out: its (first) topic. A
    /// transactional kafka sink then has one transaction per source
    /// partition, its count at that partition of this topic.
    pub scale_out: Option<String>,
    /// With a kafka source: its consumer group, to which a transactional
    /// kafka sink commits the source's offsets of each checkpoint.
    pub source_group: Option<String>,
}

/// What a checkpoint records of a transactional kafka sink: how many
/// outputs it has committed to Kafka, counted over every run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaCommit {
    /// Outputs committed in Kafka transactions, over every run.
    pub kafka_committed: u64,
}

/// A source partition's gain: its number, and its changelog checkpoint's
/// outputs by kind (`None`: no checkpoint).
pub(crate) type Gain = (u64, Option<[u64; 4]>);

/// The checkpoint barrier of a transactional kafka sink: a checkpoint asks
/// it to commit every output handed to it ([`TxnShared::request_commit`]),
/// then waits for [`SinkHandle::delivered`] as for any sink (a
/// transactional sink counts an output delivered once its transaction is
/// committed), then records `base + sent` ([`KafkaCommit`]).
#[derive(Debug, Default)]
pub struct TxnShared {
    /// Outputs committed by earlier runs (from the restored checkpoint).
    pub base: u64,
    commit_through: AtomicU64,
    wake: tokio::sync::Notify,
    /// With a source that scales out: per source partition gained, the
    /// number of that gain and its changelog checkpoint's outputs by kind
    /// (`None`: no checkpoint yet).
    gained: std::sync::Mutex<std::collections::BTreeMap<u16, Gain>>,
    gains: AtomicU64,
    gain_wake: tokio::sync::Notify,
    /// The kafka source's offsets at the last checkpoint asking for a
    /// commit: committed to the source's group in the transactions.
    source_offsets: std::sync::Mutex<Vec<crate::source::KafkaOffset>>,
}

impl TxnShared {
    /// A barrier whose counts go on from `base`.
    pub fn new(base: u64) -> TxnShared {
        TxnShared {
            base,
            ..TxnShared::default()
        }
    }

    /// Asks the sink to commit its transaction once it holds the first
    /// `sent` outputs of this run.
    pub fn request_commit(&self, sent: u64) {
        self.commit_through
            .fetch_max(sent, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// [`TxnShared::request_commit`] by a checkpoint whose kafka source
    /// resumes at `offsets`: the transactions commit them to the source's
    /// consumer group along with the outputs (where tools that watch the
    /// group see the pipeline's progress).
    pub fn request_commit_at(&self, sent: u64, offsets: Vec<crate::source::KafkaOffset>) {
        *self
            .source_offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = offsets;
        self.request_commit(sent);
    }

    /// The source's offsets of the last [`TxnShared::request_commit_at`]
    /// of partition `partition` (every partition: `None`).
    #[cfg(feature = "kafka")] // the kafka sinks' side
    pub(crate) fn source_offsets(&self, partition: Option<i32>) -> Vec<crate::source::KafkaOffset> {
        self.source_offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|o| partition.is_none_or(|p| o.partition == p))
            .cloned()
            .collect()
    }

    /// How many outputs of this run a checkpoint wants committed.
    pub fn requested(&self) -> u64 {
        self.commit_through
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Source partition `p` was gained, restored from a changelog
    /// checkpoint with `outputs` by kind (`None`: none): the sink starts
    /// its transactions anew and drops what of its replay Kafka holds.
    /// Called before any output of the gain is handed to the sink.
    pub fn gained(&self, p: u16, outputs: Option<[u64; 4]>) {
        let n = self.gains.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.gained
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(p, (n, outputs));
        self.gain_wake.notify_one();
    }

    /// Every partition's last gain ([`TxnShared::gained`]).
    #[cfg(feature = "kafka")] // the kafka sinks' side
    pub(crate) fn gains(&self) -> Vec<(u16, Gain)> {
        self.gained
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(&p, &g)| (p, g))
            .collect()
    }

    /// Waits for the next [`TxnShared::gained`] (one made since the last
    /// wait counts).
    #[cfg(feature = "kafka")] // the kafka sinks' side
    pub(crate) async fn gained_again(&self) {
        self.gain_wake.notified().await
    }

    /// The last gain of source partition `p` ([`TxnShared::gained`]).
    #[cfg(feature = "kafka")] // the kafka sinks' side
    pub(crate) fn gain_of(&self, p: u16) -> Option<Gain> {
        self.gained
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&p)
            .copied()
    }

    /// Waits for the next [`TxnShared::request_commit`] (one made since the
    /// last wait counts).
    pub async fn requested_again(&self) {
        self.wake.notified().await
    }
}

/// Starts the sink `cfg` as a task on `rt`, with a queue of [`QUEUE`]
/// outputs. Errors (a bad URL, a file that cannot be opened) name the sink
/// (`ctx.name`) and the field.
pub fn spawn(
    cfg: &SinkConfig,
    ctx: SinkCtx,
    rt: &tokio::runtime::Handle,
) -> Result<SinkHandle, SinkError> {
    spawn_sink(cfg, ctx, rt, QUEUE).map(|s| s.handle)
}

/// [`spawn`] with a queue of `queue` outputs (at least 1), also returning a
/// file sink's [`file::FileSinkState`].
pub fn spawn_sink(
    cfg: &SinkConfig,
    ctx: SinkCtx,
    rt: &tokio::runtime::Handle,
    queue: usize,
) -> Result<Spawned, SinkError> {
    spawn_sink_from(cfg, ctx, rt, queue, &SinkStart::default())
}

/// [`spawn_sink_from`], but a file sink is written by the caller's thread
/// ([`SinkHandle::inline`]; its task only fsyncs); other sinks are queued
/// as usual.
pub fn spawn_sink_inline(
    cfg: &SinkConfig,
    ctx: SinkCtx,
    rt: &tokio::runtime::Handle,
    queue: usize,
    start: &SinkStart,
) -> Result<Spawned, SinkError> {
    let SinkConfig::File { path, rotate_bytes } = cfg else {
        return spawn_sink_from(cfg, ctx, rt, queue, start);
    };
    let (tx, rx) = self::queue(queue);
    let delivered = Arc::new(AtomicU64::new(0));
    let path = ctx.config_dir.join(path);
    let (inline, fut, state) =
        file::start_inline(path, rotate_bytes.map(|b| b.0), rx, ctx, delivered.clone())
            .map_err(|m| SinkError::new(SinkErrorKind::Io, m))?;
    let task = rt.spawn(typed(SinkErrorKind::Io, fut));
    Ok(Spawned {
        handle: SinkHandle {
            tx,
            delivered,
            task,
            inline: Some(Inline(inline)),
        },
        file: Some(state),
        txn: None,
    })
}

/// [`spawn_sink`] with what the sink starts from: a transactional kafka
/// sink needs `start` (its default transactional id, and the count of the
/// restored checkpoint).
pub fn spawn_sink_from(
    cfg: &SinkConfig,
    ctx: SinkCtx,
    rt: &tokio::runtime::Handle,
    queue: usize,
    start: &SinkStart,
) -> Result<Spawned, SinkError> {
    use SinkErrorKind::{Config, Delivery, Io};
    let err = |kind| move |m| SinkError::new(kind, m);
    #[cfg(not(feature = "kafka"))]
    let _ = start;
    #[allow(unused_mut)] // set by the kafka sink only
    let mut txn = None;
    let (tx, rx) = self::queue(queue);
    let delivered = Arc::new(AtomicU64::new(0));
    let d = delivered.clone();
    let mut file_state = None;
    // reqwest's client may need the runtime's context to be built.
    let _guard = rt.enter();
    let task = match cfg {
        SinkConfig::Stdout {} => rt.spawn(typed(
            Io,
            stdout::run(std::io::stdout(), "stdout", rx, ctx, d),
        )),
        SinkConfig::Stderr {} => rt.spawn(typed(
            Io,
            stdout::run(std::io::stderr(), "stderr", rx, ctx, d),
        )),
        SinkConfig::File { path, rotate_bytes } => {
            let path = ctx.config_dir.join(path);
            let (fut, state) =
                file::start(path, rotate_bytes.map(|b| b.0), rx, ctx, d).map_err(err(Io))?;
            file_state = Some(state);
            rt.spawn(typed(Io, fut))
        }
        SinkConfig::Webhook(w) => rt.spawn(typed(
            Delivery,
            webhook::Webhook::new(w, ctx, d)
                .map_err(err(Config))?
                .run(rx),
        )),
        #[cfg(feature = "kafka")]
        SinkConfig::Kafka(k) => match k.transactional_id(&start.pipeline, &ctx.name) {
            None => {
                let sink = kafka::KafkaSink::new(k, &ctx, None, None).map_err(err(Config))?;
                rt.spawn(typed(SinkErrorKind::Broker, sink.run(rx, ctx, d)))
            }
            Some(id) if start.scale_out.is_some() => {
                let topic = start.scale_out.as_deref().unwrap_or_default();
                let group = start.source_group.as_deref();
                let sink =
                    kafka::Partitioned::new(k, &ctx, &id, topic, group).map_err(err(Config))?;
                let shared = Arc::new(TxnShared::new(0));
                txn = Some(shared.clone());
                rt.spawn(typed(SinkErrorKind::Broker, sink.run(rx, ctx, d, shared)))
            }
            Some(id) => {
                let group = start.source_group.as_deref();
                let sink = kafka::KafkaSink::new(k, &ctx, Some(&id), group).map_err(err(Config))?;
                let shared = Arc::new(TxnShared::new(start.kafka.map_or(0, |c| c.kafka_committed)));
                txn = Some(shared.clone());
                let restored = start.kafka.is_some();
                rt.spawn(typed(
                    SinkErrorKind::Broker,
                    sink.run_transactional(rx, ctx, d, shared, restored),
                ))
            }
        },
        #[cfg(not(feature = "kafka"))]
        SinkConfig::Kafka(_) => return Err(SinkError::new(Config, NO_KAFKA)),
    };
    Ok(Spawned {
        handle: SinkHandle {
            tx,
            delivered,
            task,
            inline: None,
        },
        file: file_state,
        txn,
    })
}
