//! `ferrocep match --workers N` in event time: keys partitioned over `N`
//! threads, each of which both parses chunks of the input and matches the
//! events of its keys; outputs equal (as a multiset) to those of one worker.
//!
//! ```text
//!            a chunk of whole lines, parsed by whichever thread is free
//!  input ──▶ ┌──────────────────────────────────────────────────────────┐
//!            │ slots: parsed chunks in input order, one batch per worker │ ──▶ worker j takes
//!            └──────────────────────────────────────────────────────────┘     batch j of each
//!                 at most 2N + 2 chunks read and not taken by every worker     chunk, in order
//! ```
//!
//! - A thread with nothing to match (its next chunk is not parsed yet) reads
//!   the next chunk of whole lines ([`ChunkReader`]; one thread reads at a
//!   time, so chunks are numbered in input order) and parses it: events
//!   (key, timestamp, conditions evaluated: the expensive part) and bad-line
//!   reports. Each event goes to the batch of the worker that a hash of its
//!   key picks, with the largest timestamp before it within the chunk.
//! - Each thread is also a worker: it owns the keys routed to it, with one
//!   operator per spec, and takes its batch of every chunk in input order,
//!   with the largest timestamp of the input before the chunk (a running
//!   maximum it keeps itself) and the chunk's running maxima (its
//!   watermarks). With these a worker knows the global watermark before each
//!   of its events. Before each event it applies the watermark that preceded
//!   the event in the input (so that an event is late exactly when it would be
//!   in a single-threaded run) and each watermark before it at which an event
//!   or a timer of its keys fell due (so that its keys advance through the
//!   very times they would in a single-threaded run; see
//!   `Matcher::events`). At the end it applies the last watermark, then
//!   +infinity under `--end-of-input flush`. Its output lines go to stdout in
//!   blocks of whole lines.
//! - Worker 0 runs on the calling thread: it numbers the lines and writes the
//!   bad-line reports in input order (or ends the run at the first one under
//!   `--strict`, where every worker stops after the events before it).
//!
//! Why one kind of thread rather than readers, parsers and matchers: a thread
//! matches its share of a chunk right after parsing it, while the chunk is
//! still in its core's caches, and there are no more threads than workers to
//! switch between. Parsing goes to whichever thread is free, so it balances
//! itself across the cores and is never a serial step.
//!
//! A live input (a pipe, a terminal, a socket: `Options::live_input`) is read
//! by one more thread that only reads, and the workers parse what it reads: a
//! worker waiting in a read of a quiet source could not match a batch of its
//! that became ready meanwhile, and its outputs would wait for the input's
//! next line.
//!
//! Memory stays bounded: at most `2N + 2` chunks are read and not yet taken
//! by every worker.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use ferrocep_core::event::Value;
use ferrocep_core::spec::SpecSet;

use crate::clock::Clock;
use crate::input::{Chunk, ChunkReader, TextLines};
use crate::key::Key;
use crate::matcher::{max_of, Blocks, Matcher, Plan, Routed};
use crate::options::{EndOfInput, MissedSkip, Options, Stop};
use crate::output::{Spill, SPILL_AT};

/// A bad line of a chunk.
struct BadLine {
    /// Line number within the chunk, from 1.
    line: u64,
    reason: String,
}

/// A chunk, parsed, until every worker has taken its batch.
struct Slot {
    lines: u64,
    /// The events of each worker, in input order (taken by the worker). An
    /// event's `max_before` is the largest timestamp before it within the
    /// chunk.
    batches: Vec<Vec<Routed>>,
    /// The chunk's running maxima, in order (see [`Matcher::events`]); the
    /// last is the chunk's largest timestamp.
    steps: Arc<[i64]>,
    /// How many events of each worker, and how many steps, come before the
    /// first bad line (`None`: no bad line).
    before_bad: Option<(Vec<usize>, usize)>,
    /// Taken by worker 0.
    bad: Vec<BadLine>,
    /// Workers yet to take their batch.
    left: usize,
}

/// Why the input ends where it does; where two threads find an end at the
/// same chunk, the greater reason wins (see [`State::end_at`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum EndReason {
    /// All of it was read.
    Eof,
    /// Reading failed.
    ReadError,
    /// `--strict` met a bad line in the chunk before.
    Strict,
    /// A skip strategy with `throw_exception_on_miss` failed in the chunk
    /// before (what happened before the bad line of that chunk comes first).
    Failed,
}

/// What the threads share, under one lock.
struct State {
    /// Parsed chunks not yet taken by every worker, by number.
    slots: BTreeMap<u64, Slot>,
    /// The number of the next chunk to read.
    next_read: u64,
    /// A thread is reading (one at a time, so chunks are numbered in order).
    reading: bool,
    /// Chunks read by the reading thread of a live input, not yet parsed,
    /// and buffers for it to read into.
    unparsed: VecDeque<(u64, Chunk)>,
    spare: Vec<Chunk>,
    /// Each worker's next chunk.
    next_taken: Vec<u64>,
    /// The number of chunks to take, and why there are no more; the smallest
    /// wins (a later chunk may have been read before an earlier one stopped
    /// the run under `--strict`).
    end: Option<(u64, EndReason)>,
    read_error: Option<io::Error>,
    /// The earliest failure of a throwing skip strategy: its chunk, the
    /// operator's time then and the worker (the order in which failures of
    /// several workers rank), and the failure.
    failure: Option<((u64, i64, usize), MissedSkip)>,
    /// A worker's output failed: everyone stops.
    stopped: bool,
}

impl State {
    /// The input ends after `chunks` chunks (or earlier). At the same chunk a
    /// stop outranks the end of the input: under `--strict`, the thread that
    /// reads past the last chunk may get there before the one that finds the
    /// bad line in it, and the run must stop all the same (no flush), as a
    /// single thread stops before it reads on; and the bad line comes before
    /// whatever failed to be read after it.
    fn end_at(&mut self, chunks: u64, why: EndReason) {
        if self
            .end
            .is_none_or(|(e, w)| chunks < e || (chunks == e && why > w))
        {
            self.end = Some((chunks, why));
        }
    }
}

/// The pipeline's shared parts.
struct Shared<'a, R, W> {
    set: &'a SpecSet,
    plan: &'a Plan,
    options: &'a Options,
    workers: usize,
    /// At most this many chunks read and not taken by every worker.
    in_flight: u64,
    state: Mutex<State>,
    changed: Condvar,
    /// Only the thread whose `State::reading` it is touches it.
    reader: Mutex<ChunkReader<R>>,
    output: Mutex<(W, Option<io::Error>)>,
    /// Set when the output fails, read by [`SharedSpill`].
    stop: AtomicBool,
    /// What conditions read as the current processing time.
    clock: &'a dyn Clock,
}

impl<R, W> Shared<'_, R, W> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a thread does next.
enum Next {
    /// Read and parse this chunk.
    Read(u64),
    /// Parse this chunk, read by the reading thread of a live input.
    Parse(u64, Chunk),
    /// Match a batch: the largest timestamp before its chunk is the
    /// worker's own running maximum.
    Match {
        batch: Vec<Routed>,
        steps: Arc<[i64]>,
        /// Under `--strict`, the events and steps before the chunk's first
        /// bad line.
        keep: Option<(usize, usize)>,
        lines: u64,
        bad: Vec<BadLine>,
    },
    /// The next batch is not ready: hand on the output lines so far before
    /// reading or waiting (a live source shows them as they come).
    Flush,
    /// The input is over.
    End(EndReason),
    /// The output failed.
    Stop,
}

/// Runs the pipeline; `options.workers` is at least 2.
pub(crate) fn run<R: Read + Send, W: Write + Send, D: Write>(
    set: &SpecSet,
    plan: &Plan,
    input: R,
    out: W,
    errors: &mut D,
    options: &Options,
    clock: &dyn Clock,
) -> Result<(), Stop> {
    let n = options.workers.max(1);
    let shared = Shared {
        set,
        plan,
        options,
        workers: n,
        in_flight: 2 * n as u64 + 2,
        state: Mutex::new(State {
            slots: BTreeMap::new(),
            next_read: 0,
            reading: false,
            unparsed: VecDeque::new(),
            spare: Vec::new(),
            next_taken: vec![0; n],
            end: None,
            read_error: None,
            failure: None,
            stopped: false,
        }),
        changed: Condvar::new(),
        reader: Mutex::new(ChunkReader::with_chunk_size(input, options.chunk_size)),
        output: Mutex::new((out, None)),
        stop: AtomicBool::new(false),
        clock,
    };

    let result = std::thread::scope(|s| {
        if options.live_input {
            let shared = &shared;
            std::thread::Builder::new()
                .name("ferrocep-read".to_string())
                .spawn_scoped(s, move || read_ahead(shared))
                .expect("cannot start a thread");
        }
        for j in 1..n {
            let shared = &shared;
            std::thread::Builder::new()
                .name(format!("ferrocep-worker-{j}"))
                .spawn_scoped(s, move || work(shared, j, None))
                .expect("cannot start a thread");
        }
        work(&shared, 0, Some(errors))
    });

    let Shared { output, state, .. } = shared;
    let (mut out, write_error) = output.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = write_error {
        return Err(Stop::Output(e));
    }
    out.flush().map_err(Stop::Output)?;
    let state = state.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some((_, skip)) = state.failure {
        // Nothing after its chunk ran; a bad line in that chunk came after it.
        return Err(Stop::Skip(skip));
    }
    if let (Some((_, EndReason::ReadError)), Some(e)) = (state.end, state.read_error) {
        return Err(Stop::Input(e));
    }
    result
}

/// One thread: reads and parses chunks when its next batch is not ready,
/// matches its batches in input order; worker 0 also reports bad lines.
fn work<R: Read, W: Write>(
    shared: &Shared<'_, R, W>,
    j: usize,
    mut errors: Option<&mut dyn Write>,
) -> Result<(), Stop> {
    let _guard = StopOnPanic(shared);
    let n = shared.workers;
    let mut m = Matcher::new(shared.plan);
    let mut out = SharedSpill {
        output: &shared.output,
        stop: &shared.stop,
        failed: false,
    };
    let mut raw = Chunk::default();
    let mut scratch = Vec::new();
    let mut blocks = Blocks::new(n);
    // This worker's next chunk, the largest timestamp before it, and (worker
    // 0) the number of lines before it.
    let mut next = 0u64;
    let mut max: Option<i64> = None;
    let mut line_base = 0u64;
    let mut failed = false;
    loop {
        match next_step(shared, j, next, m.pending_out() > 0) {
            Next::Read(seq) => {
                if read_chunk(shared, seq, &mut raw) {
                    // Another thread may read while this one parses.
                    shared.changed.notify_all();
                    parse_and_publish(shared, seq, &raw, &mut scratch, &mut blocks);
                }
                shared.changed.notify_all();
            }
            Next::Parse(seq, chunk) => {
                parse_and_publish(shared, seq, &chunk, &mut scratch, &mut blocks);
                shared.lock().spare.push(chunk);
                shared.changed.notify_all();
            }
            Next::Match {
                mut batch,
                steps,
                keep,
                lines,
                bad,
            } => {
                next += 1;
                let base = max;
                let steps = match keep {
                    Some((events, steps_kept)) => {
                        batch.truncate(events);
                        &steps[..steps_kept]
                    }
                    None => &steps[..],
                };
                max = max_of(max, steps.last().copied());
                m.set_processing_time(shared.clock.now_ms());
                m.events(&mut batch, base, steps, &mut out);
                if !failed {
                    if let Some((skip, time)) = m.failure() {
                        failed = true;
                        note_failure(shared, (next - 1, time, j), skip);
                    }
                }
                if m.pending_out() >= SPILL_AT / 4 {
                    m.flush_out(&mut out);
                }
                if out.failed {
                    return stop_all(shared);
                }
                if let Some(errors) = errors.as_mut() {
                    if let Some(b) = bad.first().filter(|_| shared.options.strict) {
                        // The other workers stop after this chunk too.
                        finish(&mut m, max, false, &mut out);
                        return Err(Stop::Strict(line_base + b.line, b.reason.clone()));
                    }
                    for b in &bad {
                        let _ = writeln!(errors, "line {}: {}", line_base + b.line, b.reason);
                    }
                    line_base += lines;
                }
            }
            Next::End(why) => {
                m.set_processing_time(shared.clock.now_ms());
                let flush = why == EndReason::Eof
                    && shared.options.end_of_input == EndOfInput::Flush
                    && !shared.stop.load(Ordering::Relaxed);
                finish(&mut m, max, flush, &mut out);
                if !failed {
                    // Buffered events may run into one at the flush.
                    if let Some((skip, time)) = m.failure() {
                        note_failure(shared, (next, time, j), skip);
                    }
                }
                return Ok(());
            }
            Next::Flush => {
                m.flush_out(&mut out);
                if out.failed {
                    return stop_all(shared);
                }
            }
            Next::Stop => return Ok(()),
        }
    }
}

/// Reads chunk `seq` (the caller is the one thread reading) and records the
/// outcome; `true` when it holds lines.
fn read_chunk<R: Read, W>(shared: &Shared<'_, R, W>, seq: u64, chunk: &mut Chunk) -> bool {
    let read = shared
        .reader
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .next_chunk(chunk);
    let mut st = shared.lock();
    st.reading = false;
    match read {
        Ok(true) => return true,
        Ok(false) => st.end_at(seq, EndReason::Eof),
        Err(e) => {
            st.read_error = Some(e);
            st.end_at(seq, EndReason::ReadError);
        }
    }
    false
}

/// Parses chunk `seq` and makes it a slot for the workers.
fn parse_and_publish<R, W>(
    shared: &Shared<'_, R, W>,
    seq: u64,
    raw: &[u8],
    scratch: &mut Vec<Value<'static>>,
    blocks: &mut Blocks,
) {
    let slot = parse_chunk(shared.set, seq, raw, shared.workers, scratch, blocks);
    let mut st = shared.lock();
    if shared.options.strict && slot.before_bad.is_some() {
        st.end_at(seq + 1, EndReason::Strict);
    }
    st.slots.insert(seq, slot);
}

/// The reading thread of a live input (`Options::live_input`): it alone waits
/// for the input, so that a worker never waits in a read while a batch of its
/// is ready (its outputs would wait for the input's next line). The workers
/// parse what it reads.
fn read_ahead<R: Read, W>(shared: &Shared<'_, R, W>) {
    loop {
        let (seq, mut chunk) = {
            let mut st = shared.lock();
            loop {
                if st.stopped || st.end.is_some() {
                    return;
                }
                let oldest = st.next_taken.iter().copied().min().unwrap_or(0);
                if st.next_read - oldest < shared.in_flight {
                    break;
                }
                st = shared.changed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            st.reading = true;
            st.next_read += 1;
            (st.next_read - 1, st.spare.pop().unwrap_or_default())
        };
        if read_chunk(shared, seq, &mut chunk) {
            shared.lock().unparsed.push_back((seq, chunk));
        }
        shared.changed.notify_all();
    }
}

/// Stops the other threads if this one panics: they would otherwise wait
/// for it forever, and the panic would never reach the caller.
struct StopOnPanic<'s, 'a, R, W>(&'s Shared<'a, R, W>);

impl<R, W> Drop for StopOnPanic<'_, '_, R, W> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().stopped = true;
            self.0.changed.notify_all();
        }
    }
}

/// The end of a worker's input: the last watermark, +infinity when `flush`,
/// and its last outputs.
fn finish<W: Write>(m: &mut Matcher, max: Option<i64>, flush: bool, out: &mut SharedSpill<'_, W>) {
    m.advance_to(max, flush, out);
    m.flush_out(out);
}

/// A worker's operator met a failure of a throwing skip strategy at
/// `rank` (chunk, time, worker): the input ends after that chunk for every
/// worker (no flush), and the earliest failure is the run's.
fn note_failure<R, W>(shared: &Shared<'_, R, W>, rank: (u64, i64, usize), skip: MissedSkip) {
    let mut st = shared.lock();
    st.end_at(rank.0 + 1, EndReason::Failed);
    if st.failure.as_ref().is_none_or(|(r, _)| rank < *r) {
        st.failure = Some((rank, skip));
    }
    drop(st);
    shared.changed.notify_all();
}

/// A worker's output failed: every thread stops (the error is the run's).
fn stop_all<R, W>(shared: &Shared<'_, R, W>) -> Result<(), Stop> {
    shared.lock().stopped = true;
    shared.changed.notify_all();
    Ok(())
}

/// Waits for worker `j`'s next thing to do: its batch of chunk `next` once
/// parsed; or else, with output lines not yet handed on (`pending`), those;
/// or else a chunk to read while fewer than `in_flight` are.
fn next_step<R, W>(shared: &Shared<'_, R, W>, j: usize, next: u64, pending: bool) -> Next {
    let mut st = shared.lock();
    loop {
        if st.stopped {
            return Next::Stop;
        }
        if let Some((_, why)) = st.end.filter(|&(end, _)| next >= end) {
            return Next::End(why);
        }
        if let Some(slot) = st.slots.get_mut(&next) {
            let batch = std::mem::take(&mut slot.batches[j]);
            let steps = slot.steps.clone();
            let keep = slot
                .before_bad
                .as_ref()
                .filter(|_| shared.options.strict)
                .map(|(counts, steps)| (counts[j], *steps));
            let lines = slot.lines;
            let bad = if j == 0 {
                std::mem::take(&mut slot.bad)
            } else {
                Vec::new()
            };
            slot.left -= 1;
            if slot.left == 0 {
                st.slots.remove(&next);
            }
            st.next_taken[j] = next + 1;
            drop(st);
            // A chunk fewer in flight, perhaps.
            shared.changed.notify_all();
            return Next::Match {
                batch,
                steps,
                keep,
                lines,
                bad,
            };
        }
        if pending {
            // Reading a live source may wait for it as long as it is quiet.
            return Next::Flush;
        }
        if let Some((seq, chunk)) = st.unparsed.pop_front() {
            return Next::Parse(seq, chunk);
        }
        let oldest = st.next_taken.iter().copied().min().unwrap_or(0);
        if !shared.options.live_input
            && !st.reading
            && st.end.is_none()
            && st.next_read - oldest < shared.in_flight
        {
            st.reading = true;
            let seq = st.next_read;
            st.next_read += 1;
            return Next::Read(seq);
        }
        st = shared.changed.wait(st).unwrap_or_else(|p| p.into_inner());
    }
}

/// Parses the lines of one chunk.
fn parse_chunk(
    set: &SpecSet,
    seq: u64,
    raw: &[u8],
    workers: usize,
    scratch: &mut Vec<Value<'static>>,
    blocks: &mut Blocks,
) -> Slot {
    let mut bad = Vec::new();
    let mut lines = 0;
    let mut per_worker = vec![0usize; workers];
    let mut before_bad = None;
    let mut steps = Vec::new();
    for text in TextLines::new(raw, seq == 0) {
        lines += 1;
        match set.ingest_parts(&text, scratch) {
            Ok(p) => {
                let key = Key::from_opt(p.key.as_deref());
                // Multiply-shift: the high bits of the hash pick the worker.
                let worker = ((u128::from(key.route_hash()) * workers as u128) >> 64) as usize;
                let ts = p
                    .timestamp
                    .map_or(0, ferrocep_core::time::Timestamp::as_millis);
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
                    reason: e.to_string(),
                })
            }
        }
    }
    // A block per worker: only that worker's thread touches its count.
    let mut batches: Vec<Vec<Routed>> = per_worker.iter().map(|&n| Vec::with_capacity(n)).collect();
    blocks.finish(|worker, r| batches[worker].push(r));
    Slot {
        lines,
        batches,
        steps: steps.into(),
        before_bad,
        bad,
        left: workers,
    }
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
