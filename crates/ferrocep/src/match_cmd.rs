//! `ferrocep match`: runs specs over a JSON-lines stream, exactly as the
//! contract in `shared/spec/pattern-spec.md` section 3 says.
//!
//! Driving the engine:
//! - event time (the spec has `time`): for each good line, in input order,
//!   `process_element(key, event, ts)`, then the bounded-out-of-orderness
//!   watermark that follows the event (`max_ts - max_out_of_orderness - 1`)
//!   goes to `advance_time`. At the end of input, `flush` advances time to
//!   +infinity (`i64::MAX`, Flink's `MAX_WATERMARK`); `stop` leaves it at the
//!   last watermark, so buffered events newer than it are never processed.
//!   A `Matcher` applies the watermark lazily, just before its next event,
//!   and at the end of each chunk of input (so that a live source shows what
//!   falls due without waiting for more) and of the input: nothing can happen
//!   between an event's watermark and the next event. A worker of
//!   `--workers N` sees only some events: it also
//!   applies, exactly, the watermarks between them at which something of its
//!   keys falls due (see `Matcher::events`).
//! - processing time (no `time`): each event is stamped with the wall clock on
//!   arrival; time advances to that stamp before the event. Nothing more
//!   happens at the end of input, as in Flink (see the oracle's NOTES.md).
//!
//! Input lines are read as the Flink oracle reads them
//! (`oracle/flink/src/JsonLineSource.java`): a UTF-8 byte-order mark on line 1
//! is dropped, the line is trimmed of ASCII whitespace and control characters,
//! and an empty line is a bad line (`line N: empty line`). Bad lines are
//! reported on stderr as `line N: reason` and skipped; with `--strict` the
//! first one ends the run with exit status 1.
//!
//! `--workers N` (event time, N > 1) runs the key-partitioned pipeline of
//! [`crate::parallel`]; its outputs are those of one worker, as a multiset.
//!
//! Several `--spec`s run over one stream with each line read once
//! ([`SpecSet`]); every output line then names its pattern
//! (`"pattern":"NAME"`, the spec's `name` or else its file stem).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ferrocep_core::operator::{CepOperator, Prefetch, TimeDomain};
use ferrocep_core::spec::{Conditions, JsonEvent, Spec, SpecSet, TextBlock};
use ferrocep_core::time::{MAX_WATERMARK, MIN_WATERMARK};
use ferrocep_core::{Nfa, OutputSink};

use crate::cli::Failure;
use crate::input::{Chunk, ChunkReader, TextLines};
use crate::key::Key;
use crate::output::{pattern_label, Spill, VecSink, WriterSpill, SPILL_AT};

/// What happens when a bounded input ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EndOfInput {
    /// The watermark jumps to +infinity: buffered events run and every
    /// windowed partial match times out (what Flink does when a bounded
    /// source ends).
    #[default]
    Flush,
    /// Time stays at the last watermark; nothing more is reported (a source
    /// that stays open and goes quiet).
    Stop,
}

/// The arguments of `ferrocep match`.
#[derive(Clone, Debug, clap::Args)]
pub struct MatchArgs {
    /// The pattern spec (YAML or JSON). Give several (`--spec A B` or
    /// `--spec A --spec B`) to run them all over the stream, reading it once;
    /// they must share the key and time fields, and each output line then
    /// carries `"pattern":"NAME"` (the spec's `name`, else its file stem).
    #[arg(long, value_name = "SPEC", required = true, num_args = 1..)]
    pub spec: Vec<PathBuf>,
    /// Events, one JSON object per line; `-` reads standard input.
    #[arg(long, value_name = "FILE|-")]
    pub input: PathBuf,
    /// What happens at the end of the input.
    #[arg(long, value_enum, default_value_t = EndOfInput::Flush, value_name = "MODE")]
    pub end_of_input: EndOfInput,
    /// Stop at the first bad input line (exit status 1) instead of reporting
    /// it and going on.
    #[arg(long)]
    pub strict: bool,
    /// Threads that parse and match, keys partitioned among them (default:
    /// the number of cores). Processing-time specs always use one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: Option<u32>,
}

/// How a run goes, beyond its specs and streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// What happens at the end of the input.
    pub end_of_input: EndOfInput,
    /// Stop at the first bad line.
    pub strict: bool,
    /// Number of workers (1: everything on the calling thread).
    pub workers: usize,
    /// Bytes read at a time ([`crate::input::CHUNK`]; tests make it small, so
    /// that a short input spans many chunks).
    pub chunk_size: usize,
    /// The input may wait for data (a pipe, a terminal, a socket; not a
    /// regular file): with several workers one thread then does all the
    /// reading, so that no worker waits in a read with a batch of its ready.
    pub live_input: bool,
}

/// Runs `ferrocep match`, writing outputs to stdout and bad lines to stderr.
pub fn run(args: &MatchArgs) -> Result<(), Failure> {
    // Spec errors name the file, the line and the field themselves.
    let specs = args
        .spec
        .iter()
        .map(|p| Spec::from_path(p).map_err(|e| Failure::spec(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let labels = pattern_names(&specs)?;
    let set = SpecSet::new(specs).map_err(|e| Failure::spec(e.to_string()))?;
    let (input, live_input): (Box<dyn Read + Send>, bool) = if args.input.as_os_str() == "-" {
        (Box::new(io::stdin()), !stdin_is_file())
    } else {
        let file = open(&args.input)?;
        let live = !file.metadata().is_ok_and(|m| m.is_file());
        (Box::new(file), live)
    };
    let workers = match args.workers {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let options = Options {
        end_of_input: args.end_of_input,
        strict: args.strict,
        workers,
        chunk_size: crate::input::CHUNK,
        live_input,
    };
    // Not locked for the whole run: a worker thread that panics must be able
    // to say so (and the run then fail) rather than wait for the lock.
    let mut errors = BufWriter::new(io::stderr());
    let result = run_with(&set, &labels, input, io::stdout(), &mut errors, &options);
    let _ = errors.flush();
    result
}

/// The names that label each spec's output lines when there are several
/// (none for one spec): each spec's `name`, else its file stem. Two specs
/// with the same name are an error.
pub fn pattern_names(specs: &[Spec]) -> Result<Vec<String>, Failure> {
    if specs.len() < 2 {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let name = s
            .name
            .clone()
            .or_else(|| {
                s.file()
                    .and_then(Path::file_stem)
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| format!("spec-{}", i + 1));
        if names.contains(&name) {
            return Err(Failure::usage(format!(
                "two specs are named '{name}': give each a distinct `name`"
            )));
        }
        names.push(name);
    }
    Ok(names)
}

/// Whether standard input is a regular file (redirected from one), which
/// never waits for data.
fn stdin_is_file() -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .and_then(|f| f.metadata())
            .is_ok_and(|m| m.is_file())
    }
    #[cfg(not(unix))]
    {
        false
    }
}

fn open(path: &Path) -> Result<File, Failure> {
    File::open(path)
        .map_err(|e| Failure::usage(format!("cannot open input '{}': {e}", path.display())))
}

/// Runs `set` over `input`, writing outputs to `out` and bad-line reports to
/// `errors`. `labels` name the patterns in the output (empty: one spec, no
/// label). This is [`run`] without the process's streams.
pub fn run_with<R: Read + Send, W: Write + Send, D: Write>(
    set: &SpecSet,
    labels: &[String],
    input: R,
    out: W,
    errors: &mut D,
    options: &Options,
) -> Result<(), Failure> {
    let nfas = set
        .specs()
        .iter()
        .map(|s| s.compile().map(Arc::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::spec(e.to_string()))?;
    let plan = Plan {
        nfas,
        ooo: set
            .specs()
            .iter()
            .map(|s| s.time.as_ref().map_or(0, |t| t.max_out_of_orderness))
            .collect(),
        labels: if labels.is_empty() {
            vec![Box::default(); set.specs().len()]
        } else {
            labels.iter().map(|l| pattern_label(l)).collect()
        },
        event_time: set.is_event_time(),
    };
    let result = if plan.event_time && options.workers > 1 {
        crate::parallel::run(set, &plan, input, out, errors, options)
    } else {
        run_sequential(set, &plan, input, out, errors, options)
    };
    match result {
        Err(Stop::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(Stop::Output(e)) => Err(Failure::io(format!("writing output: {e}"))),
        Err(Stop::Input(e)) => Err(Failure::io(format!("reading input: {e}"))),
        Err(Stop::Strict(line, reason)) => Err(Failure::data(format!(
            "line {line}: {reason} (stopped by --strict)"
        ))),
        Ok(()) => Ok(()),
    }
}

/// Why a run ended early.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Writing the output failed.
    Output(io::Error),
    /// Reading the input failed.
    Input(io::Error),
    /// `--strict` met a bad line (its number and the reason).
    Strict(u64, String),
}

/// What every worker of a run needs: the compiled patterns and how to label
/// and time them.
pub(crate) struct Plan {
    pub nfas: Vec<Arc<Nfa<JsonEvent>>>,
    /// Each spec's `max_out_of_orderness`.
    pub ooo: Vec<i64>,
    /// Each spec's output label (empty for a single spec).
    pub labels: Vec<Box<[u8]>>,
    pub event_time: bool,
}

/// The watermark after events whose largest timestamp is `max`.
#[inline]
/// The larger of two optional timestamps.
pub(crate) fn max_of(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn watermark(max: Option<i64>, ooo: i64) -> i64 {
    match max {
        None => MIN_WATERMARK,
        Some(m) => m.saturating_sub(ooo).saturating_sub(1),
    }
}

/// An event-time event on its way to a [`Matcher`], with the largest
/// timestamp of the events before it in the input (the watermark before it is
/// a function of that).
pub(crate) struct Routed {
    pub key: Key,
    pub ts: i64,
    pub max_before: Option<i64>,
    pub event: JsonEvent,
}

/// A chunk's watermark steps, for a [`Matcher`] that sees only some of the
/// chunk's events (see [`Matcher::events`]).
struct Steps<'a> {
    /// Increasing.
    steps: &'a [i64],
    /// Steps before this one are behind the operator.
    next: usize,
    /// The largest timestamp before the chunk: steps up to it are not
    /// watermarks of the input.
    base: Option<i64>,
}

impl Steps<'_> {
    /// Applies, one after the other, the watermarks of the steps below
    /// `until` at which something of the operator is due, each exactly as the
    /// input had it: the first step whose watermark reaches the operator's
    /// next timer.
    fn catch_up<S: OutputSink<Key, JsonEvent>>(
        &mut self,
        until: i64,
        op: &mut CepOperator<Key, JsonEvent>,
        applied: &mut Option<i64>,
        ooo: i64,
        sink: &mut S,
    ) {
        while self.next < self.steps.len() {
            let Some(due) = op.next_timer() else { return };
            // The smallest step whose watermark `step - ooo - 1` reaches it.
            let need = due.saturating_add(ooo).saturating_add(1);
            // Mostly nothing is due before the event's own watermark.
            if need >= until {
                return;
            }
            let rest = &self.steps[self.next..];
            // None yet; an event buffered later may be due earlier.
            if rest.last().is_none_or(|&s| s < need) {
                return;
            }
            let k = first_at_least(rest, need);
            let s = rest[k];
            if s >= until {
                return;
            }
            self.next += k + 1;
            if Some(s) > self.base && Some(s) > *applied {
                *applied = Some(s);
                op.advance_time(watermark(Some(s), ooo), sink);
            }
        }
    }
}

/// The index of the first of `sorted` (increasing) that is at least `x`, or
/// its length if there is none. It is usually among the first few (the
/// events of the other workers in between), so this gallops before it
/// bisects.
fn first_at_least(sorted: &[i64], x: i64) -> usize {
    let mut hi = 1;
    while hi < sorted.len() && sorted[hi - 1] < x {
        hi *= 2;
    }
    let lo = hi / 2;
    let hi = hi.min(sorted.len());
    lo + sorted[lo..hi].partition_point(|&s| s < x)
}

/// The events of a chunk being read: their lines are copied one after the
/// other into a text block per worker, which the events then share (one
/// allocation per block and chunk instead of one per event; a block is freed
/// with the last of its events, so it holds the lines of a chunk's events,
/// and never the bad or blank lines).
pub(crate) struct Blocks {
    texts: Vec<String>,
    pending: Vec<Pending>,
}

struct Pending {
    key: Key,
    ts: i64,
    block: u32,
    range: Range<usize>,
    conditions: Conditions,
}

impl Blocks {
    /// Room for `n` blocks.
    pub fn new(n: usize) -> Blocks {
        Blocks {
            texts: vec![String::new(); n.max(1)],
            pending: Vec::new(),
        }
    }

    /// An event of `block` (below `n`), its line `json`.
    #[inline]
    pub fn push(&mut self, block: usize, key: Key, ts: i64, json: &str, conditions: Conditions) {
        let text = &mut self.texts[block];
        let start = text.len();
        text.push_str(json);
        self.pending.push(Pending {
            key,
            ts,
            block: block as u32,
            range: start..text.len(),
            conditions,
        });
    }

    /// Makes the blocks and hands out their events in the order they came,
    /// each with its block and the largest timestamp before it in this chunk
    /// (`max_before`); returns the chunk's largest timestamp.
    pub fn finish(&mut self, mut f: impl FnMut(usize, Routed)) -> Option<i64> {
        let shared: Vec<Option<TextBlock>> = self
            .texts
            .iter_mut()
            .map(|t| {
                let block = (!t.is_empty()).then(|| TextBlock::from(t.as_str()));
                t.clear();
                block
            })
            .collect();
        let mut max = None;
        for p in self.pending.drain(..) {
            let b = p.block as usize;
            let event = shared[b]
                .as_ref()
                .and_then(|text| JsonEvent::in_block(text, p.range, p.conditions))
                // Every range is a line just copied into its block.
                .unwrap_or_else(|| JsonEvent::from_parts("", &[]));
            f(
                b,
                Routed {
                    key: p.key,
                    ts: p.ts,
                    max_before: max,
                    event,
                },
            );
            max = max_of(max, Some(p.ts));
        }
        max
    }
}

/// How many events ahead [`Matcher::events`] prefetches where a key is in the
/// index, and then the key's state.
const PREFETCH_INDEX_AHEAD: usize = 6;
const PREFETCH_STATE_AHEAD: usize = 3;

/// One operator per spec over the keys of one partition, and the output
/// they have produced and not yet handed on.
///
/// Event-time events come in batches, and each operator takes the whole
/// batch before the next one does: the operators are independent, so this
/// changes only the order of the output lines of different specs, and one
/// operator's state stays in the caches for a whole batch.
pub(crate) struct Matcher {
    ops: Vec<CepOperator<Key, JsonEvent>>,
    ooo: Vec<i64>,
    labels: Vec<Box<[u8]>>,
    /// Per operator, the largest timestamp whose watermark it has.
    applied: Vec<Option<i64>>,
    /// Output lines not yet written.
    out: Vec<u8>,
}

impl Matcher {
    pub fn new(plan: &Plan) -> Matcher {
        let domain = if plan.event_time {
            TimeDomain::EventTime
        } else {
            TimeDomain::ProcessingTime
        };
        Matcher {
            ops: plan
                .nfas
                .iter()
                .zip(&plan.ooo)
                .map(|(n, &ooo)| {
                    let mut op = CepOperator::new(n.clone(), domain);
                    // `events` applies the watermark `max - ooo - 1` before
                    // each event, as the promise requires.
                    op.set_bounded_out_of_orderness(ooo);
                    op
                })
                .collect(),
            ooo: plan.ooo.clone(),
            labels: plan.labels.clone(),
            applied: vec![None; plan.nfas.len()],
            out: Vec::with_capacity(SPILL_AT + (SPILL_AT >> 2)),
        }
    }

    /// Event-time events, in input order (`batch` is left empty); `base` is
    /// the largest timestamp of the input before the batch's chunk.
    ///
    /// `steps` are the chunk's running maxima (each timestamp of the chunk
    /// that is larger than all before it within the chunk, in order): those
    /// above `base` are the chunk's watermarks. A batch that holds only some
    /// of the chunk's events (a worker of several) needs them: the operators
    /// must reach each watermark at which an event or a timer of theirs is
    /// due, exactly as in a run of the whole input, because a key advanced
    /// past several such times at once can turn out differently (a partial
    /// match pruned by a match completed at an earlier time may time out
    /// instead, and one that started at `ts <= 0` has no timer of its own and
    /// ends wherever its key was last advanced). A batch of all of the chunk's
    /// events (one worker) passes `&[]`: its events' own `max_before` are
    /// then every step.
    pub fn events(
        &mut self,
        batch: &mut Vec<Routed>,
        base: Option<i64>,
        steps: &[i64],
        spill: &mut dyn Spill,
    ) {
        let n = self.ops.len();
        for i in 0..n {
            let mut sink = VecSink {
                out: &mut self.out,
                label: &self.labels[i],
                spill: &mut *spill,
            };
            let (op, applied, ooo) = (&mut self.ops[i], &mut self.applied[i], self.ooo[i]);
            let last = i + 1 == n;
            let prefetch = op.prefetch_pays();
            let mut steps = Steps {
                steps,
                next: 0,
                base,
            };
            for j in 0..batch.len() {
                // Keys are looked up a few events ahead, so that their memory
                // loads while the events before them run.
                if prefetch {
                    if let Some(r) = batch.get(j + PREFETCH_INDEX_AHEAD) {
                        op.prefetch(&r.key, Prefetch::Index);
                    }
                    if let Some(r) = batch.get(j + PREFETCH_STATE_AHEAD) {
                        op.prefetch(&r.key, Prefetch::State);
                    }
                }
                let r = &mut batch[j];
                // The watermark that preceded the event, then the event.
                let before = max_of(base, r.max_before);
                if *applied != before {
                    // Up to the step before the event's own watermark, which
                    // comes next in any case.
                    let until = before.unwrap_or(i64::MIN);
                    steps.catch_up(until, op, applied, ooo, &mut sink);
                    if *applied != before {
                        *applied = before;
                        op.advance_time(watermark(before, ooo), &mut sink);
                    }
                }
                if last {
                    // The last operator takes the events themselves.
                    let event = std::mem::take(&mut r.event);
                    op.process_element_by(&r.key, event, r.ts, &mut sink);
                } else {
                    op.process_element_ref(&r.key, &r.event, r.ts, &mut sink);
                }
            }
            // What falls due at the chunk's watermarks after the batch's last
            // event happens before this worker's next event in the input.
            steps.catch_up(i64::MAX, op, applied, ooo, &mut sink);
            if last {
                batch.clear();
            }
        }
    }

    /// A processing-time event, arriving at `now`.
    pub fn event_now(&mut self, key: &Key, event: JsonEvent, now: i64, spill: &mut dyn Spill) {
        let n = self.ops.len();
        let mut event = Some(event);
        for (i, op) in self.ops.iter_mut().enumerate() {
            let mut sink = VecSink {
                out: &mut self.out,
                label: &self.labels[i],
                spill: &mut *spill,
            };
            op.advance_time(now, &mut sink);
            let e = if i + 1 == n {
                event.take()
            } else {
                event.clone()
            };
            if let Some(e) = e {
                op.process_element_by(key, e, now, &mut sink);
            }
        }
    }

    /// Applies the watermark that follows the input's largest timestamp so
    /// far, `max`, now rather than before the next event: the same watermark
    /// at the same point of the input, but what falls due at it comes out
    /// before more input arrives (a live source shows a match once its
    /// watermark has passed). With `flush` (at the end of the input),
    /// +infinity after it.
    pub fn advance_to(&mut self, max: Option<i64>, flush: bool, spill: &mut dyn Spill) {
        for (i, op) in self.ops.iter_mut().enumerate() {
            let mut sink = VecSink {
                out: &mut self.out,
                label: &self.labels[i],
                spill: &mut *spill,
            };
            if self.applied[i] != max {
                self.applied[i] = max;
                op.advance_time(watermark(max, self.ooo[i]), &mut sink);
            }
            if flush {
                op.advance_time(MAX_WATERMARK, &mut sink);
            }
        }
    }

    /// Hands the lines not yet written to `spill`.
    pub fn flush_out(&mut self, spill: &mut dyn Spill) {
        if !self.out.is_empty() {
            spill.spill(&self.out);
            self.out.clear();
        }
    }

    /// Bytes of output not yet written.
    pub fn pending_out(&self) -> usize {
        self.out.len()
    }
}

/// Everything on the calling thread, line after line.
fn run_sequential<R: Read, W: Write, D: Write>(
    set: &SpecSet,
    plan: &Plan,
    input: R,
    out: W,
    errors: &mut D,
    options: &Options,
) -> Result<(), Stop> {
    let mut m = Matcher::new(plan);
    let mut out = WriterSpill { out, error: None };
    let mut reader = ChunkReader::with_chunk_size(input, options.chunk_size);
    let mut buf = Chunk::default();
    let mut scratch = Vec::new(); // field values, reused from line to line
    let mut line_no: u64 = 0;
    let mut max: Option<i64> = None;
    let mut batch: Vec<Routed> = Vec::new();
    let mut blocks = Blocks::new(1);
    let result = (|| {
        loop {
            match reader.next_chunk(&mut buf) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(Stop::Input(e)),
            }
            // Event time: the chunk's events are read, then matched.
            let mut bad = None;
            for text in TextLines::new(&buf, line_no == 0) {
                line_no += 1;
                match set.ingest_parts(&text, &mut scratch) {
                    Ok(p) => {
                        let key = Key::from_opt(p.key.as_deref());
                        if plan.event_time {
                            let ts = p.timestamp.unwrap_or(0);
                            blocks.push(0, key, ts, p.json, p.conditions);
                        } else {
                            let event = JsonEvent::own(p.json, p.conditions);
                            m.event_now(&key, event, wall_clock_ms(), &mut out);
                        }
                    }
                    Err(e) if options.strict => {
                        bad = Some(Stop::Strict(line_no, e.reason));
                        break;
                    }
                    Err(e) => {
                        let _ = writeln!(errors, "line {line_no}: {e}");
                    }
                }
            }
            let chunk_max = blocks.finish(|_, r| batch.push(r));
            if !batch.is_empty() {
                // The batch holds every event: their `max_before` are the steps.
                m.events(&mut batch, max, &[], &mut out);
            }
            max = max_of(max, chunk_max);
            if plan.event_time {
                m.advance_to(max, false, &mut out);
            }
            if let Some(stop) = bad {
                return Err(stop);
            }
            // Once a chunk (a live source shows its outputs as they come).
            m.flush_out(&mut out);
            if let Some(e) = out.error.take() {
                return Err(Stop::Output(e));
            }
        }
        Ok(())
    })();
    if matches!(result, Err(Stop::Output(_))) {
        return result;
    }
    if plan.event_time {
        // The watermark of the last good event was due before anything stopped.
        let flush = result.is_ok() && options.end_of_input == EndOfInput::Flush;
        m.advance_to(max, flush, &mut out);
    }
    m.flush_out(&mut out);
    if let Some(e) = out.error.take() {
        return Err(Stop::Output(e));
    }
    out.out.flush().map_err(Stop::Output)?;
    result
}

/// The wall clock in epoch milliseconds (processing time).
fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::first_at_least;

    #[test]
    fn first_at_least_agrees_with_bisection() {
        assert_eq!(first_at_least(&[], 5), 0);
        for len in 1..40i64 {
            let sorted: Vec<i64> = (0..len).map(|i| i * 3 - 10).collect();
            let last = *sorted.last().unwrap();
            // Past the last too: then the length.
            for x in (sorted[0] - 2)..=(last + 2) {
                assert_eq!(
                    first_at_least(&sorted, x),
                    sorted.partition_point(|&s| s < x),
                    "len {len}, x {x}"
                );
            }
        }
    }
}
