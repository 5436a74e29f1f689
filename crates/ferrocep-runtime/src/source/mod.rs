//! Sources of `ferrocep run`: where events come from, and where each one is
//! in its source (its [`Position`]), so that outputs get stable ids and a
//! checkpoint can say where to resume.
//!
//! A source runs on its own thread ([`Source::run`]) or, for network sources,
//! on the async runtime, and hands batches of raw lines to the engine through
//! a bounded queue ([`SourceTx`]): when the engine (or a sink behind it) is
//! slow, the queue fills and the source waits, so memory stays bounded.
//!
//! Positions are per source and only grow: a byte offset for a file or
//! stdin, a record offset in the ingest log for HTTP, an event number for the
//! generator. Two events of one source never share a position, and a replay
//! of the same input gives every event the same position again.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

pub mod file;
pub mod generator;
mod lines;
pub mod stdin;

pub use file::{FilePosition, FileProgress, FileSource};
pub use generator::GeneratorSource;
pub use stdin::StdinSource;

use crate::clock::SharedClock;
use crate::metrics::Metrics;

pub mod http;
pub mod ingest_log;
#[cfg(feature = "kafka")]
pub mod kafka;

/// Where an event is in its source (see the module docs).
pub type Position = u64;

/// The partition of a kafka source's position (topic 4 bits, partition 12
/// bits, offset 48 bits; see `source::kafka`).
#[inline]
pub fn kafka_partition(pos: Position) -> u16 {
    ((pos >> 48) & 0xfff) as u16
}

/// Events read from a source: their lines, one after another in `text`, and
/// for each its position and its bytes in `text`.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// The lines' bytes (each line without its line end).
    pub text: Vec<u8>,
    /// The records in source order.
    pub records: Vec<Record>,
    /// Where the source resumes once this batch and everything before it are
    /// in the state (what a checkpoint records); `None` for a source that
    /// cannot resume (stdin).
    pub resume: Option<Resume>,
}

/// Where a source resumes: the position of its first event not yet taken,
/// and what else it needs to read exactly the same events again. Stored in
/// checkpoints as JSON.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resume {
    /// The position of the next event.
    pub position: Position,
    /// A file source: the file's identity and the base of its positions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FilePosition>,
    /// The generator: the clock time its schedule starts at (so that a
    /// replay gives the same timestamps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t0: Option<i64>,
    /// A kafka source: the offset of the next record of each partition it
    /// has read from (its `position` is unused, 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<Vec<KafkaOffset>>,
}

/// Where a kafka source resumes in one partition (see [`Resume::kafka`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KafkaOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the next record to read.
    pub offset: i64,
}

/// One raw event of a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Its position in the source.
    pub pos: Position,
    /// Start of its bytes in [`Batch::text`].
    pub start: u32,
    /// End of its bytes in [`Batch::text`].
    pub end: u32,
}

impl Batch {
    /// An empty batch with room for about `bytes` of text.
    pub fn with_capacity(bytes: usize) -> Batch {
        Batch {
            text: Vec::with_capacity(bytes),
            records: Vec::new(),
            resume: None,
        }
    }

    /// Appends one raw event at `pos`.
    pub fn push(&mut self, pos: Position, line: &[u8]) {
        let start = self.text.len();
        self.text.extend_from_slice(line);
        self.records.push(Record {
            pos,
            start: start as u32,
            end: self.text.len() as u32,
        });
    }

    /// The bytes of `r`.
    pub fn bytes(&self, r: &Record) -> &[u8] {
        &self.text[r.start as usize..r.end as usize]
    }

    /// The range of `r` in [`Batch::text`].
    pub fn range(r: &Record) -> Range<usize> {
        r.start as usize..r.end as usize
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// What a source tells the engine.
#[derive(Debug)]
pub enum SourceMsg {
    /// Events, in source order.
    Batch(Batch),
    /// Input the source itself refused (an HTTP event that is not an
    /// object, say): it goes to the `error` output with the reason.
    Rejected {
        /// Where it was (for its output id).
        pos: Position,
        /// The raw input, as text (lossy for bytes that are not UTF-8).
        raw: String,
        /// Why it was refused.
        reason: String,
    },
    /// The input is over (a file read to its end without `follow`): the
    /// engine applies `end_of_input` and the pipeline stops.
    End,
    /// The source failed and cannot go on.
    Failed(SourceError),
    /// A kafka source whose state follows its partitions gained or lost
    /// some (see [`crate::changelog`]).
    Partitions(crate::changelog::PartitionChange),
}

/// The engine's end of a source's queue, and the stop flag.
#[derive(Clone)]
pub struct SourceTx {
    tx: SyncSender<SourceMsg>,
    stop: StopFlag,
}

impl SourceTx {
    /// A sender over `tx`, giving up when `stop` is raised.
    pub fn new(tx: SyncSender<SourceMsg>, stop: StopFlag) -> Self {
        SourceTx { tx, stop }
    }

    /// Sends `msg`, waiting while the queue is full. Returns `false` when the
    /// pipeline is stopping or gone: the source should then return. (A
    /// sender blocked on a full queue wakes when the engine, stopping, drops
    /// its end.)
    pub fn send(&self, msg: SourceMsg) -> bool {
        if self.stop.is_raised() {
            return false;
        }
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Disconnected(_)) => false,
            Err(TrySendError::Full(m)) => self.tx.send(m).is_ok(),
        }
    }

    /// [`SourceTx::send`], calling `while_full` every second while the
    /// queue stays full (a source that can tell how far it is falling
    /// behind says so then). It checks the queue every few milliseconds
    /// instead of sleeping until it has room.
    pub fn send_or_report(&self, msg: SourceMsg, mut while_full: impl FnMut()) -> bool {
        let mut msg = msg;
        let mut last = std::time::Instant::now();
        let mut nap = std::time::Duration::from_micros(100);
        loop {
            if self.stop.is_raised() {
                return false;
            }
            match self.tx.try_send(msg) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(m)) => msg = m,
            }
            if last.elapsed() >= std::time::Duration::from_secs(1) {
                while_full();
                last = std::time::Instant::now();
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(std::time::Duration::from_millis(5));
        }
    }

    /// The stop flag.
    pub fn stop(&self) -> &StopFlag {
        &self.stop
    }
}

/// Raised once when the pipeline stops (SIGTERM, SIGINT, end of input, a
/// fatal error); sources stop reading when they see it.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises it.
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether it is raised.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a source gets to run with.
#[derive(Clone)]
pub struct SourceCtx {
    /// Where its events go.
    pub out: SourceTx,
    /// The clock (the generator paces itself by it; tests move it by hand).
    pub clock: SharedClock,
    /// Metrics (events in, input errors).
    pub metrics: Arc<Metrics>,
    /// The async runtime, for network sources.
    pub runtime: tokio::runtime::Handle,
    /// The pipeline's data directory (the HTTP ingest log lives in it).
    pub data_dir: std::path::PathBuf,
    /// Where to resume: the position of the first event not yet taken into
    /// state (0 at a fresh start). Sources that cannot seek ignore it.
    pub resume_from: Position,
    /// What the checkpoint recorded with it ([`Resume`]), if anything.
    pub resume: Option<Resume>,
}

/// A source of raw events.
pub trait Source: Send + 'static {
    /// A short name for logs and metrics (`file`, `http`, ...).
    fn kind(&self) -> &'static str;

    /// Reads until the input ends (then sends [`SourceMsg::End`]), the stop
    /// flag is raised, or it fails (then sends [`SourceMsg::Failed`] and
    /// returns the error). Runs on a thread of its own.
    fn run(self: Box<Self>, ctx: SourceCtx) -> Result<(), SourceError>;
}

/// Why a source failed: its [`kind`](SourceError::kind) (the cause) and a
/// message that names the source and where it failed (what
/// [`Display`](std::fmt::Display) prints).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    kind: SourceErrorKind,
    message: String,
}

/// The cause of a [`SourceError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceErrorKind {
    /// Its settings cannot be used (an HTTP path without `/`, a generator
    /// it cannot make).
    Config,
    /// Its input could not be opened or read (a file, stdin, a record
    /// without a position).
    Input,
    /// It could not listen, or its server failed.
    Network,
    /// The HTTP source's ingest log could not be opened or read.
    IngestLog,
    /// The kafka brokers refused it (subscribing, a fatal consumer error).
    Broker,
    /// One of its threads could not start, or panicked.
    Thread,
}

impl SourceError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: SourceErrorKind, message: impl Into<String>) -> Self {
        SourceError {
            kind,
            message: message.into(),
        }
    }

    /// The cause.
    pub fn kind(&self) -> SourceErrorKind {
        self.kind
    }

    /// The message (also its `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Sends [`SourceMsg::Failed`] with a `kind` error saying `msg` and returns
/// it as the error of [`Source::run`].
pub(crate) fn fail(out: &SourceTx, kind: SourceErrorKind, msg: String) -> Result<(), SourceError> {
    let e = SourceError::new(kind, msg);
    out.send(SourceMsg::Failed(e.clone()));
    Err(e)
}

/// The `events_in` counter of a source of `kind`.
pub(crate) fn events_in(
    metrics: &Metrics,
    kind: &str,
) -> prometheus_client::metrics::counter::Counter {
    metrics
        .events_in
        .get_or_create(&Metrics::label("source", kind))
        .clone()
}

#[cfg(test)]
pub(crate) mod testing {
    //! A [`SourceCtx`] for tests, with the other end of its queue.

    use std::sync::mpsc::{sync_channel, Receiver};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{Position, SourceCtx, SourceMsg, SourceTx, StopFlag};
    use crate::clock::SharedClock;
    use crate::metrics::Metrics;

    /// A context and what a test needs around it.
    pub(crate) struct TestCtx {
        pub ctx: SourceCtx,
        pub rx: Receiver<SourceMsg>,
        pub stop: StopFlag,
        pub metrics: Arc<Metrics>,
        pub dir: tempfile::TempDir,
        _runtime: tokio::runtime::Runtime,
    }

    /// A context on `clock`, resuming at `resume_from`, with a queue of 16.
    pub(crate) fn test_ctx(clock: SharedClock, resume_from: Position) -> TestCtx {
        let (tx, rx) = sync_channel(16);
        let stop = StopFlag::new();
        let metrics = Arc::new(Metrics::new());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("test runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = SourceCtx {
            out: SourceTx::new(tx, stop.clone()),
            clock,
            metrics: metrics.clone(),
            runtime: runtime.handle().clone(),
            data_dir: dir.path().to_path_buf(),
            resume_from,
            resume: None,
        };
        TestCtx {
            ctx,
            rx,
            stop,
            metrics,
            dir,
            _runtime: runtime,
        }
    }

    /// Records of batches received until `done` says so (given every record
    /// so far) or `End`/`Failed` arrives, within `timeout`: the records as
    /// (position, text) and the last message that was not a batch.
    pub(crate) fn collect_until(
        rx: &Receiver<SourceMsg>,
        timeout: Duration,
        mut done: impl FnMut(&[(Position, String)]) -> bool,
    ) -> (Vec<(Position, String)>, Option<SourceMsg>) {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while !done(&out) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(SourceMsg::Batch(b)) => out.extend(
                    b.records
                        .iter()
                        .map(|r| (r.pos, String::from_utf8_lossy(b.bytes(r)).into_owned())),
                ),
                Ok(other) => return (out, Some(other)),
                Err(_) => break,
            }
        }
        (out, None)
    }
}
