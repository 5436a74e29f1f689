//! `ferrocep match --workers N` in event time: keys partitioned over `N`
//! matching threads, lines parsed by `N` parsing threads, outputs equal (as a
//! multiset) to those of one worker.
//!
//! ```text
//!           chunks of whole lines         parsed chunks          per-worker batches
//!  reader ────────────────────────▶ parsers ────────────▶ sequencer ──────────────▶ workers ──▶ stdout
//!     ▲                                                        │
//!     └───────── empty chunk buffers (at most 2N+2 in flight) ─┘
//! ```
//!
//! - The reader cuts the input into chunks of whole lines ([`ChunkReader`]).
//! - A parser turns a chunk into events (key, timestamp, conditions
//!   evaluated: the expensive part) and bad-line reports, picks each event's
//!   worker from a hash of its key and puts it in that worker's batch with
//!   the largest timestamp before it within the chunk.
//! - The sequencer takes the parsed chunks back in input order. It numbers the
//!   lines, writes the bad-line reports to stderr in order (or stops at the
//!   first one under `--strict`), and hands each worker its batch with the
//!   largest timestamp of the input before the chunk, without touching the
//!   events (they go from the parser's core to the worker's). With the two
//!   maxima a worker knows the largest timestamp before each event in the
//!   input: the global watermark before the event is a function of it.
//!   Every worker also gets every chunk's running maxima (its watermarks).
//! - A worker owns the keys routed to it, with one operator per spec. Before
//!   each event it applies the watermark that preceded the event in the input
//!   (so that an event is late exactly when it would be in a single-threaded
//!   run) and, found in the chunks' maxima, each watermark before it at which
//!   an event or a timer of its keys fell due (so that its keys advance
//!   through the very times they would in a single-threaded run; see
//!   [`Matcher::events`]). At the end it applies the last watermark, then
//!   +infinity under `--end-of-input flush`. Its output lines go to stdout in
//!   blocks of whole lines.
//!
//! Memory stays bounded: at most `2N + 2` chunks are between the reader and
//! the sequencer, and each worker's queue holds a few batches.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use ferrocep_core::event::Value;
use ferrocep_core::spec::SpecSet;

use crate::input::{decode, ChunkReader, Lines};
use crate::key::Key;
use crate::match_cmd::{max_of, Blocks, EndOfInput, Matcher, Options, Plan, Routed, Stop};
use crate::output::{Spill, SPILL_AT};

/// A bad line of a chunk.
struct BadLine {
    /// Line number within the chunk, from 1.
    line: u64,
    reason: String,
}

/// A chunk, parsed.
struct ParsedChunk {
    seq: u64,
    lines: u64,
    /// The events of each worker, in input order. An event's `max_before`
    /// is the largest timestamp before it within the chunk: the worker
    /// combines it with the chunk's base (the largest before the chunk), so
    /// that the sequencer never touches an event.
    batches: Vec<Vec<Routed>>,
    /// The chunk's running maxima, in order (see [`Matcher::events`]); the
    /// last is the chunk's largest timestamp.
    steps: Vec<i64>,
    /// Under `--strict`, how many events of each worker, and how many steps,
    /// come before the first bad line (`None`: no bad line).
    before_bad: Option<(Vec<usize>, usize)>,
    bad: Vec<BadLine>,
    /// The chunk's buffer, to be reused.
    raw: Vec<u8>,
}

enum ToWorker {
    /// A chunk's events for the worker (perhaps none), the largest timestamp
    /// of the input before the chunk, and the chunk's steps.
    Batch(Option<i64>, Vec<Routed>, Arc<[i64]>),
    /// The input is over: the largest timestamp of all routed events, and
    /// whether to flush.
    End(Option<i64>, bool),
}

/// Runs the pipeline; `options.workers` is at least 2.
pub(crate) fn run<R: Read + Send, W: Write + Send, D: Write>(
    set: &SpecSet,
    plan: &Plan,
    input: R,
    out: W,
    errors: &mut D,
    options: &Options,
) -> Result<(), Stop> {
    let n = options.workers.max(1);
    // Chunk buffers: the only way to start a chunk, so no channel below ever
    // holds more than this many and the reader and parsers never block on a
    // send.
    let in_flight = 2 * n + 2;
    let stop = AtomicBool::new(false);
    let read_error: Mutex<Option<io::Error>> = Mutex::new(None);
    let output: Mutex<(W, Option<io::Error>)> = Mutex::new((out, None));

    let (pool_tx, pool_rx) = sync_channel::<Vec<u8>>(in_flight);
    for _ in 0..in_flight {
        let _ = pool_tx.send(Vec::new());
    }
    let (chunk_tx, chunk_rx) = sync_channel::<(u64, Vec<u8>)>(in_flight);
    let chunk_rx = Mutex::new(chunk_rx);
    let (parsed_tx, parsed_rx) = sync_channel::<ParsedChunk>(in_flight);

    let result = std::thread::scope(|s| {
        // Reader.
        let (stop_r, read_error_r) = (&stop, &read_error);
        spawn(s, "ferrocep-read".to_string(), move || {
            let mut reader = ChunkReader::new(input);
            for seq in 0.. {
                let Ok(mut buf) = pool_rx.recv() else { break };
                if stop_r.load(Ordering::Relaxed) {
                    break;
                }
                match reader.next_chunk(&mut buf) {
                    Ok(true) => {
                        if chunk_tx.send((seq, buf)).is_err() {
                            break;
                        }
                    }
                    Ok(false) => break,
                    Err(e) => {
                        *read_error_r.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        break;
                    }
                }
            }
        });
        // Parsers.
        for i in 0..n {
            let chunk_rx = &chunk_rx;
            let parsed_tx = parsed_tx.clone();
            spawn(s, format!("ferrocep-parse-{i}"), move || {
                let mut scratch = Vec::new();
                let mut blocks = Blocks::new(n);
                loop {
                    let next = chunk_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((seq, raw)) = next else { break };
                    let parsed = parse_chunk(set, seq, raw, n, &mut scratch, &mut blocks);
                    if parsed_tx.send(parsed).is_err() {
                        break;
                    }
                }
            });
        }
        drop(parsed_tx);
        // Workers.
        let mut to_workers: Vec<SyncSender<ToWorker>> = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = sync_channel::<ToWorker>(4);
            to_workers.push(tx);
            let (output, stop) = (&output, &stop);
            spawn(s, format!("ferrocep-match-{i}"), move || {
                work(plan, rx, output, stop)
            });
        }
        // The sequencer, on this thread.
        let result = sequence(
            parsed_rx,
            &pool_tx,
            &to_workers,
            errors,
            options,
            &stop,
            &read_error,
        );
        drop(pool_tx);
        drop(to_workers);
        result
    });

    let (mut out, write_error) = output.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = write_error {
        return Err(Stop::Output(e));
    }
    out.flush().map_err(Stop::Output)?;
    if let Some(e) = read_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(Stop::Input(e));
    }
    result
}

/// Spawns a named thread in `scope` (names show in profilers).
fn spawn<'scope, F>(scope: &'scope std::thread::Scope<'scope, '_>, name: String, f: F)
where
    F: FnOnce() + Send + 'scope,
{
    std::thread::Builder::new()
        .name(name)
        .spawn_scoped(scope, f)
        .expect("cannot start a thread");
}

/// Parses the lines of one chunk.
fn parse_chunk(
    set: &SpecSet,
    seq: u64,
    raw: Vec<u8>,
    workers: usize,
    scratch: &mut Vec<Value<'static>>,
    blocks: &mut Blocks,
) -> ParsedChunk {
    let mut bad = Vec::new();
    let mut lines = 0;
    let mut per_worker = vec![0usize; workers];
    let mut before_bad = None;
    let mut steps = Vec::new();
    for line in Lines::new(&raw) {
        lines += 1;
        let text = decode(line, seq == 0 && lines == 1);
        match set.ingest_parts(&text, scratch) {
            Ok(p) => {
                let key = Key::from_opt(p.key.as_deref());
                // Multiply-shift: the high bits of the hash pick the worker.
                let worker = ((u128::from(key.route_hash()) * workers as u128) >> 64) as usize;
                let ts = p.timestamp.unwrap_or(0);
                if steps.last().is_none_or(|&m| ts > m) {
                    steps.push(ts);
                }
                per_worker[worker] += 1;
                blocks.push(worker, key, ts, p.json, p.conditions);
            }
            Err(e) => {
                if before_bad.is_none() {
                    before_bad = Some((per_worker.clone(), steps.len()));
                }
                bad.push(BadLine {
                    line: lines,
                    reason: e.reason,
                })
            }
        }
    }
    // A block per worker: only that worker's thread touches its count.
    let mut batches: Vec<Vec<Routed>> = per_worker.iter().map(|&n| Vec::with_capacity(n)).collect();
    blocks.finish(|worker, r| batches[worker].push(r));
    ParsedChunk {
        seq,
        lines,
        batches,
        steps,
        before_bad,
        bad,
        raw,
    }
}

/// Takes parsed chunks back in order, reports bad lines and routes events.
fn sequence<D: Write>(
    parsed_rx: Receiver<ParsedChunk>,
    pool_tx: &SyncSender<Vec<u8>>,
    to_workers: &[SyncSender<ToWorker>],
    errors: &mut D,
    options: &Options,
    stop: &AtomicBool,
    read_error: &Mutex<Option<io::Error>>,
) -> Result<(), Stop> {
    let mut waiting: BTreeMap<u64, ParsedChunk> = BTreeMap::new();
    let mut next_seq = 0u64;
    let mut line_base = 0u64;
    let mut max: Option<i64> = None;
    let mut result = Ok(());
    'chunks: for chunk in parsed_rx.iter() {
        waiting.insert(chunk.seq, chunk);
        while let Some(chunk) = waiting.remove(&next_seq) {
            next_seq += 1;
            let ParsedChunk {
                lines,
                mut batches,
                mut steps,
                before_bad,
                bad,
                raw,
                ..
            } = chunk;
            let base = max;
            // Under --strict, the events before the first bad line only.
            if let Some((counts, keep_steps)) = before_bad.filter(|_| options.strict) {
                steps.truncate(keep_steps);
                for (batch, keep) in batches.iter_mut().zip(counts) {
                    batch.truncate(keep);
                }
            }
            max = max_of(max, steps.last().copied());
            // Every worker gets every chunk's steps, even without events.
            let steps: Arc<[i64]> = steps.into();
            for (tx, batch) in to_workers.iter().zip(batches) {
                if tx
                    .send(ToWorker::Batch(base, batch, steps.clone()))
                    .is_err()
                {
                    // A worker ended: its output failed.
                    stop.store(true, Ordering::Relaxed);
                    break 'chunks;
                }
            }
            if let Some(b) = bad.first().filter(|_| options.strict) {
                result = Err(Stop::Strict(line_base + b.line, b.reason.clone()));
                stop.store(true, Ordering::Relaxed);
                break 'chunks;
            }
            for b in &bad {
                let _ = writeln!(errors, "line {}: {}", line_base + b.line, b.reason);
            }
            line_base += lines;
            // Hand the buffer back: the reader may read another chunk.
            let _ = pool_tx.send(raw);
            if stop.load(Ordering::Relaxed) {
                break 'chunks;
            }
        }
    }
    // The reader has ended when the parsed chunks have: a read error is
    // known by now, and, as a stop, it does not flush.
    let read_failed = read_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some();
    let flush = result.is_ok()
        && !read_failed
        && !stop.load(Ordering::Relaxed)
        && options.end_of_input == EndOfInput::Flush;
    for tx in to_workers {
        let _ = tx.send(ToWorker::End(max, flush));
    }
    result
}

/// A worker's way to the shared output: a block at a time, under the lock;
/// the first error stops the run.
struct SharedSpill<'a, W> {
    output: &'a Mutex<(W, Option<io::Error>)>,
    stop: &'a AtomicBool,
    failed: bool,
}

impl<W: Write> Spill for SharedSpill<'_, W> {
    fn spill(&mut self, block: &[u8]) {
        let mut o = self.output.lock().unwrap_or_else(|p| p.into_inner());
        if o.1.is_none() {
            if let Err(e) = o.0.write_all(block) {
                o.1 = Some(e);
                self.stop.store(true, Ordering::Relaxed);
            }
        }
        self.failed = o.1.is_some();
    }
}

/// One worker: matches its events, writes its outputs in blocks.
fn work<W: Write>(
    plan: &Plan,
    rx: Receiver<ToWorker>,
    output: &Mutex<(W, Option<io::Error>)>,
    stop: &AtomicBool,
) {
    let mut m = Matcher::new(plan);
    let mut out = SharedSpill {
        output,
        stop,
        failed: false,
    };
    for msg in rx.iter() {
        match msg {
            ToWorker::Batch(base, mut batch, steps) => {
                m.events(&mut batch, base, &steps, &mut out);
                if m.pending_out() >= SPILL_AT / 4 {
                    m.flush_out(&mut out);
                }
                if out.failed {
                    // Dropping the queue ends the sequencer too.
                    return;
                }
            }
            ToWorker::End(max, flush) => {
                m.finish(max, flush, &mut out);
                break;
            }
        }
    }
    m.flush_out(&mut out);
}
