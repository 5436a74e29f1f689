//! One operator per pattern over the keys of one partition: the matcher that
//! both `match` and `run` drive.
//!
//! Event time: for each event, in input order, the bounded-out-of-orderness
//! watermark that preceded it (`max_ts - max_out_of_orderness - 1`) goes to
//! `advance_time`, then the event to `process_element`. A [`Matcher`] applies
//! the watermark lazily, just before its next event, and at the end of each
//! chunk of input (so that a live source shows what falls due without waiting
//! for more): nothing can happen between an event's watermark and the next
//! event. A worker of several sees only some events: it also applies, exactly,
//! the watermarks between them at which something of its keys falls due (see
//! [`Matcher::events`]).
//!
//! Processing time: each event is stamped with the clock on arrival; time
//! advances to that stamp before the event ([`Matcher::event_now`]), and
//! [`Matcher::advance_now`] fires timers that fall due between events.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use ferrocep_core::operator::{CepOperator, EventComparator, TimeDomain};
use ferrocep_core::spec::SpecError;
use ferrocep_core::spec::{Conditions, JsonEvent, Spec, SpecSet, TextBlock};
use ferrocep_core::time::{Timestamp, Watermark, MAX_WATERMARK, MIN_WATERMARK};
use ferrocep_core::{Nfa, OutputSink};

use crate::key::Key;
use crate::options::MissedSkip;
use crate::output::{pattern_label, Spill, VecSink, SPILL_AT};

/// What every worker of a run needs: the compiled patterns and how to label
/// and time them.
pub struct Plan {
    pub(crate) nfas: Vec<Arc<Nfa<JsonEvent>>>,
    /// Each spec's `max_out_of_orderness`.
    pub(crate) ooo: Vec<i64>,
    /// Each spec's order of events of equal timestamps (`time.order_by`).
    pub(crate) comparators: Vec<Option<EventComparator<JsonEvent>>>,
    /// Each spec's output label (empty for a single spec).
    pub(crate) labels: Vec<Box<[u8]>>,
    /// Each spec's name for error messages: its label, else its `name`,
    /// else its file's stem.
    pub(crate) names: Vec<Option<String>>,
    pub(crate) event_time: bool,
    /// Each spec's conditions (`where`, `until`): the first 64 as a mask,
    /// and those beyond.
    pub(crate) reads: Vec<(u64, Box<[usize]>)>,
}

impl Plan {
    /// Compiles the specs of `set`; `labels` name each spec's output lines
    /// (`"pattern":"NAME"`), or none when empty.
    pub fn new(set: &SpecSet, labels: &[String]) -> Result<Plan, SpecError> {
        let nfas = set
            .specs()
            .iter()
            .map(|s| s.compile().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan {
            nfas,
            ooo: set
                .specs()
                .iter()
                .map(|s| {
                    s.time.as_ref().map_or(0, |t| {
                        i64::try_from(t.max_out_of_orderness.as_millis()).unwrap_or(i64::MAX)
                    })
                })
                .collect(),
            comparators: set.specs().iter().map(Spec::event_comparator).collect(),
            names: set
                .specs()
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    labels
                        .get(i)
                        .cloned()
                        .or_else(|| s.name.clone())
                        .or_else(|| {
                            s.file()
                                .and_then(std::path::Path::file_stem)
                                .map(|n| n.to_string_lossy().into_owned())
                        })
                })
                .collect(),
            labels: if labels.is_empty() {
                vec![Box::default(); set.specs().len()]
            } else {
                labels.iter().map(|l| pattern_label(l)).collect()
            },
            event_time: set.is_event_time(),
            reads: set
                .specs()
                .iter()
                .map(|s| {
                    let mut low = 0u64;
                    let mut high = Vec::new();
                    let conds = s.stages.iter().flat_map(|st| [&st.where_, &st.until]);
                    for c in conds.flatten() {
                        match c.index {
                            i @ 0..64 => low |= 1 << i,
                            i => high.push(i),
                        }
                    }
                    (low, high.into_boxed_slice())
                })
                .collect(),
        })
    }

    /// Whether the patterns run in event time.
    pub fn event_time(&self) -> bool {
        self.event_time
    }
}

/// The larger of two optional timestamps.
pub fn max_of(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The watermark after events whose largest timestamp is `max`.
pub(crate) fn watermark(max: Option<i64>, ooo: i64) -> i64 {
    match max {
        None => MIN_WATERMARK.as_millis(),
        Some(m) => m.saturating_sub(ooo).saturating_sub(1),
    }
}

/// An event-time event on its way to a [`Matcher`], with the largest
/// timestamp of the events before it in the input (the watermark before it is
/// a function of that).
pub struct Routed {
    /// The partition key.
    pub key: Key,
    /// The event's timestamp.
    pub ts: i64,
    /// The largest timestamp before it in the input.
    pub max_before: Option<i64>,
    /// The event.
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
    // Inlined into `Matcher::events`'s per-event closure: most calls find
    // no steps at all, and a call per event costs ~0.3% of `match`.
    #[inline(always)]
    fn catch_up<S: OutputSink<Key, JsonEvent>>(
        &mut self,
        until: i64,
        op: &mut CepOperator<Key, JsonEvent>,
        applied: &mut Option<i64>,
        ooo: i64,
        sink: &mut S,
    ) {
        while self.next < self.steps.len() {
            let Some(due) = op.next_timer().map(Timestamp::as_millis) else {
                return;
            };
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
                op.advance_watermark(Watermark::from_millis(watermark(Some(s), ooo)), sink);
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
/// and never the bad or blank lines: at most the line ends between them).
pub struct Blocks {
    texts: Vec<String>,
    pending: Vec<Pending>,
    /// Lines of the chunk ([`Blocks::push_from`]) not yet copied into their
    /// block: one copy per stretch of adjacent lines instead of one a line.
    span: Option<Span>,
}

/// Adjacent lines of a chunk bound for one block: bytes `start..end` of the
/// chunk.
struct Span {
    block: usize,
    start: usize,
    end: usize,
}

/// The most bytes between two lines of one [`Span`] (a line end, `\r\n`
/// at most): the block keeps them, never a bad or blank line.
const SPAN_GAP: usize = 2;

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
            span: None,
        }
    }

    /// As [`Blocks::push`] for a line `json` that is usually a slice of
    /// `chunk` (the text of the chunk being read): adjacent lines are
    /// copied together when the span ends, with the line ends between
    /// them. Call [`Blocks::finish_from`] with the same `chunk`.
    #[inline]
    pub fn push_from(
        &mut self,
        block: usize,
        key: Key,
        ts: i64,
        json: &str,
        chunk: &str,
        conditions: Conditions,
    ) {
        // Where `json` starts in `chunk`, if it is a slice of it.
        let start = (json.as_ptr() as usize).wrapping_sub(chunk.as_ptr() as usize);
        let inside = start <= chunk.len() && json.len() <= chunk.len() - start;
        if !inside {
            self.flush_span(chunk);
            return self.push(block, key, ts, json, conditions);
        }
        let end = start + json.len();
        // A span runs from a line's start to a line's end: whatever lies
        // between, both are character boundaries.
        let adjacent = self
            .span
            .as_ref()
            .is_some_and(|s| s.block == block && start.wrapping_sub(s.end) <= SPAN_GAP);
        if !adjacent {
            self.flush_span(chunk);
        }
        let span = self.span.get_or_insert(Span { block, start, end });
        span.end = end;
        let at = self.texts[block].len() + (start - span.start);
        self.pending.push(Pending {
            key,
            ts,
            block: block as u32,
            range: at..at + json.len(),
            conditions,
        });
    }

    /// Copies the waiting span of `chunk` into its block.
    #[inline]
    fn flush_span(&mut self, chunk: &str) {
        if let Some(s) = self.span.take() {
            // Both ends are ends of lines that are slices of `chunk`.
            self.texts[s.block].push_str(chunk.get(s.start..s.end).unwrap_or_default());
        }
    }

    /// [`Blocks::finish`] after lines pushed with [`Blocks::push_from`] of
    /// `chunk`.
    pub fn finish_from(&mut self, chunk: &str, f: impl FnMut(usize, Routed)) -> Option<i64> {
        // The usual chunk: its events are one span, which becomes its block
        // as it is (one copy of the text, not two).
        let direct = match self.span.take() {
            Some(s) if self.texts[s.block].is_empty() => {
                Some((s.block, chunk.get(s.start..s.end).unwrap_or_default()))
            }
            span => {
                self.span = span;
                self.flush_span(chunk);
                None
            }
        };
        self.finish_with(direct, f)
    }

    /// An event of `block` (below `n`), its line `json`.
    #[inline]
    pub fn push(&mut self, block: usize, key: Key, ts: i64, json: &str, conditions: Conditions) {
        debug_assert!(self.span.is_none(), "lines of a chunk not copied");
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
    pub fn finish(&mut self, f: impl FnMut(usize, Routed)) -> Option<i64> {
        debug_assert!(self.span.is_none(), "lines of a chunk not copied");
        self.finish_with(None, f)
    }

    /// [`Blocks::finish`], the text of block `direct.0` being `direct.1`.
    fn finish_with(
        &mut self,
        direct: Option<(usize, &str)>,
        mut f: impl FnMut(usize, Routed),
    ) -> Option<i64> {
        let shared: Vec<Option<TextBlock>> = self
            .texts
            .iter_mut()
            .enumerate()
            .map(|(i, t)| {
                let block = match direct {
                    Some((b, text)) if b == i => Some(TextBlock::from(text)),
                    _ => (!t.is_empty()).then(|| TextBlock::from(t.as_str())),
                };
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

/// Whether an operator's pattern can start from an event, remembered for
/// the last few combinations of its conditions seen. The patterns are built
/// from specs, whose conditions read nothing but the event's bits of the
/// spec's own conditions: events that agree on those start a pattern alike,
/// and the lines of a stream have few such combinations (most hold none of
/// a pattern's conditions, or one).
#[derive(Clone)]
struct StartCache {
    /// The spec's conditions among the first 64.
    low: u64,
    /// Its conditions beyond: an event that holds one is not remembered.
    high: Box<[usize]>,
    seen: [(u64, bool); START_CACHE],
    len: usize,
    next: usize,
}

/// Distinct condition bits a [`StartCache`] remembers.
const START_CACHE: usize = 4;

impl StartCache {
    /// [`Nfa::may_start`] of `op`'s pattern for `event`.
    fn new(low: u64, high: Box<[usize]>) -> StartCache {
        StartCache {
            low,
            high,
            seen: [(0, false); START_CACHE],
            len: 0,
            next: 0,
        }
    }

    #[inline]
    fn may_start(&mut self, op: &CepOperator<Key, JsonEvent>, event: &JsonEvent) -> bool {
        if self.high.iter().any(|&i| event.cond(i)) {
            return op.nfa().may_start(event);
        }
        let bits = event.condition_word(0) & self.low;
        if let Some(&(_, starts)) = self.seen[..self.len].iter().find(|(b, _)| *b == bits) {
            return starts;
        }
        let starts = op.nfa().may_start(event);
        if self.len < START_CACHE {
            self.len += 1;
        }
        self.seen[self.next] = (bits, starts);
        self.next = (self.next + 1) % START_CACHE;
        starts
    }
}

/// One operator per spec over the keys of one partition, and the output
/// they have produced and not yet handed on.
///
/// Event-time events come in batches, and each operator takes the whole
/// batch before the next one does: the operators are independent, so this
/// changes only the order of the output lines of different specs, and one
/// operator's state stays in the caches for a whole batch.
pub struct Matcher {
    ops: Vec<CepOperator<Key, JsonEvent>>,
    ooo: Vec<i64>,
    labels: Vec<Box<[u8]>>,
    names: Vec<Option<String>>,
    event_time: bool,
    /// Per operator, the largest timestamp whose watermark it has.
    applied: Vec<Option<i64>>,
    /// Per operator, whether its pattern can start from events of given
    /// condition bits (see [`Matcher::events`]).
    starts: Vec<StartCache>,
    /// Output lines not yet written.
    out: Vec<u8>,
    /// The watermark steps of a batch of a whole chunk (kept for the next).
    steps: Vec<i64>,
    /// Whether lines that change nothing for an operator are skipped (off
    /// only in tests, to compare against feeding every line).
    skip: bool,
    /// Per operator, whether its events are in order as soon as they are not
    /// late (`max_out_of_orderness` 0, no `order_by`): see [`Quiet`].
    prompt: Vec<bool>,
    /// Words of condition bits the events carry.
    words: usize,
}

/// Most distinct combinations of condition bits a [`Quiet`] batch holds.
const QUIET_KINDS: usize = 4;

/// What an operator needs to know of a batch to skip all of it at once:
/// whether no line starts its pattern and each line is in order and not
/// late, for an operator without keys (as [`CepOperator::skip_unstartable`]
/// asks, line by line). Computed once per batch, so that a line that no
/// pattern can start costs one pass over the batch, not one per pattern.
struct Quiet {
    /// An event of each distinct combination of condition bits.
    kinds: [usize; QUIET_KINDS],
    len: usize,
    min_ts: i64,
    max_ts: i64,
}

impl Quiet {
    /// None when some event is older than the input before it (late for
    /// the operators this serves), or the events hold too many combinations
    /// of conditions to be worth it.
    fn new(batch: &[Routed], base: Option<i64>, words: usize) -> Option<Quiet> {
        let first = batch.first()?;
        let mut q = Quiet {
            kinds: [0; QUIET_KINDS],
            len: 1,
            min_ts: first.ts,
            max_ts: first.ts,
        };
        let same = |a: &JsonEvent, b: &JsonEvent| {
            (0..words).all(|w| a.condition_word(w) == b.condition_word(w))
        };
        for (j, r) in batch.iter().enumerate() {
            q.min_ts = q.min_ts.min(r.ts);
            q.max_ts = q.max_ts.max(r.ts);
            // An event older than the input before it is late (below).
            if max_of(base, r.max_before).is_some_and(|b| r.ts < b) {
                return None;
            }
            if !q.kinds[..q.len]
                .iter()
                .any(|&k| same(&batch[k].event, &r.event))
            {
                if q.len == QUIET_KINDS {
                    return None;
                }
                q.kinds[q.len] = j;
                q.len += 1;
            }
        }
        Some(q)
    }

    /// Whether `op` (with `starts`, `prompt`) would skip each event of
    /// `batch`, with the watermark before it: then it takes them all at once.
    fn skip_all(
        &self,
        batch: &[Routed],
        op: &mut CepOperator<Key, JsonEvent>,
        starts: &mut StartCache,
        prompt: bool,
    ) -> bool {
        // With no out-of-orderness and no ties, an event not late is in
        // order; not late is `ts > current` and `ts >= before` (the
        // watermark before it is `before - 1`). Skipping adds no key.
        prompt
            && op.num_keys() == 0
            && self.min_ts > op.current_watermark().as_millis()
            && self.kinds[..self.len]
                .iter()
                .all(|&k| !starts.may_start(op, &batch[k].event))
            // Counts the events as received: the largest is what counts.
            && op.skip_unstartable(
                &batch[0].key,
                Timestamp::from_millis(self.max_ts),
                MIN_WATERMARK,
            )
    }
}

#[cfg(test)]
thread_local! {
    /// Tests: matchers made on this thread feed every line to every operator.
    pub(crate) static NO_SKIP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
thread_local! {
    /// Tests: batches that operators of matchers on this thread skipped whole.
    pub(crate) static QUIET_SKIPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn no_skip() -> bool {
    NO_SKIP.with(std::cell::Cell::get)
}

#[cfg(not(test))]
fn no_skip() -> bool {
    false
}

impl Matcher {
    /// One operator per pattern of `plan`, with no keys yet.
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
                .zip(&plan.comparators)
                .map(|((n, &ooo), cmp)| {
                    let mut op = CepOperator::new(n.clone(), domain);
                    op.set_event_comparator(cmp.clone());
                    // `events` applies the watermark `max - ooo - 1` before
                    // each event, as the promise requires.
                    op.set_bounded_out_of_orderness(Duration::from_millis(ooo.max(0) as u64));
                    op
                })
                .collect(),
            ooo: plan.ooo.clone(),
            labels: plan.labels.clone(),
            names: plan.names.clone(),
            event_time: plan.event_time,
            applied: vec![None; plan.nfas.len()],
            starts: plan
                .reads
                .iter()
                .map(|(low, high)| StartCache::new(*low, high.clone()))
                .collect(),
            out: Vec::with_capacity(SPILL_AT + (SPILL_AT >> 2)),
            steps: Vec::new(),
            skip: !no_skip(),
            prompt: plan
                .ooo
                .iter()
                .zip(&plan.comparators)
                .map(|(&ooo, cmp)| ooo == 0 && cmp.is_none())
                .collect(),
            words: plan
                .reads
                .iter()
                .flat_map(|(_, high)| high.iter())
                .max()
                .map_or(1, |&i| i / 64 + 1),
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
        // The operators skip the events that change nothing for them (see
        // below), as a worker of several never sees other workers' events:
        // like it, they need the chunk's watermark steps. A batch of the
        // whole chunk has them in its events.
        let mut own = std::mem::take(&mut self.steps);
        let steps = if steps.is_empty() {
            own.clear();
            let mut max = base;
            for r in batch.iter() {
                if Some(r.ts) > max {
                    own.push(r.ts);
                    max = Some(r.ts);
                }
            }
            &own[..]
        } else {
            steps
        };
        let quiet = if self.skip && self.prompt.contains(&true) {
            Quiet::new(batch, base, self.words)
        } else {
            None
        };
        for i in 0..n {
            if self.ops[i].failure().is_some() {
                // Stopped at its failure, as Flink's job (see `failure`).
                if i + 1 == n {
                    batch.clear();
                }
                continue;
            }
            let mut sink = VecSink {
                out: &mut self.out,
                label: &self.labels[i],
                spill: &mut *spill,
            };
            let (op, applied, ooo) = (&mut self.ops[i], &mut self.applied[i], self.ooo[i]);
            let starts = &mut self.starts[i];
            let skip = self.skip;
            let last = i + 1 == n;
            let mut steps = Steps {
                steps,
                next: 0,
                base,
            };
            if quiet
                .as_ref()
                .is_some_and(|q| q.skip_all(batch, op, starts, self.prompt[i]))
            {
                // As if each line were skipped below; what falls due at the
                // chunk's steps comes after.
                #[cfg(test)]
                QUIET_SKIPS.with(|c| c.set(c.get() + 1));
                steps.catch_up(i64::MAX, op, applied, ooo, &mut sink);
                if last {
                    batch.clear();
                }
                continue;
            }
            op.process_batch(
                batch,
                |r| &r.key,
                |op, r| {
                    if op.failure().is_some() {
                        // Stopped at its failure: the rest is not matched.
                        return;
                    }
                    // The watermark that preceded the event, then the event.
                    let before = max_of(base, r.max_before);
                    // A line that cannot start the pattern, of a key without
                    // state, changes nothing, nor does the watermark before
                    // it: both are skipped, as if the line were another
                    // worker's (what falls due meanwhile comes at its step).
                    if skip
                        && !starts.may_start(op, &r.event)
                        && op.skip_unstartable(
                            &r.key,
                            Timestamp::from_millis(r.ts),
                            Watermark::from_millis(watermark(before, ooo)),
                        )
                    {
                        return;
                    }
                    if *applied != before {
                        // Up to the step before the event's own watermark, which
                        // comes next in any case.
                        let until = before.unwrap_or(i64::MIN);
                        steps.catch_up(until, op, applied, ooo, &mut sink);
                        if *applied != before {
                            *applied = before;
                            op.advance_watermark(
                                Watermark::from_millis(watermark(before, ooo)),
                                &mut sink,
                            );
                        }
                    }
                    let ts = Timestamp::from_millis(r.ts);
                    if last {
                        // The last operator takes the events themselves.
                        let event = std::mem::take(&mut r.event);
                        op.process_element(&r.key, event, ts, &mut sink);
                    } else {
                        op.process_element(&r.key, &r.event, ts, &mut sink);
                    }
                },
            );
            // What falls due at the chunk's watermarks after the batch's last
            // event happens before this worker's next event in the input.
            if op.failure().is_none() {
                steps.catch_up(i64::MAX, op, applied, ooo, &mut sink);
            }
            if last {
                batch.clear();
            }
        }
        self.steps = own;
    }

    /// Event time: sets what conditions read as the current processing time
    /// (Flink's `ctx.currentProcessingTime()`) to `now`, the run's clock
    /// (drivers set it once per batch). In processing time each operator
    /// takes it from the events' stamps and its timers instead.
    pub fn set_processing_time(&mut self, now: i64) {
        if self.event_time {
            for op in &mut self.ops {
                op.set_processing_time(Timestamp::from_millis(now));
            }
        }
    }

    /// A processing-time event, arriving at `now`.
    pub fn event_now(&mut self, key: &Key, event: JsonEvent, now: i64, spill: &mut dyn Spill) {
        let n = self.ops.len();
        let mut event = Some(event);
        for (i, op) in self.ops.iter_mut().enumerate() {
            if op.failure().is_some() {
                continue;
            }
            let mut sink = VecSink {
                out: &mut self.out,
                label: &self.labels[i],
                spill: &mut *spill,
            };
            op.advance_processing_time(Timestamp::from_millis(now), &mut sink);
            let e = if i + 1 == n {
                event.take()
            } else {
                event.clone()
            };
            if let Some(e) = e {
                op.process_element(key, e, Timestamp::from_millis(now), &mut sink);
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
            if op.failure().is_some() {
                continue;
            }
            let mut sink = VecSink {
                out: &mut self.out,
                label: &self.labels[i],
                spill: &mut *spill,
            };
            if self.applied[i] != max {
                self.applied[i] = max;
                op.advance_watermark(
                    Watermark::from_millis(watermark(max, self.ooo[i])),
                    &mut sink,
                );
            }
            if flush {
                op.advance_watermark(MAX_WATERMARK, &mut sink);
            }
        }
    }

    /// Processing time: fires the timers due at `now` (between events).
    pub fn advance_now(&mut self, now: i64, spill: &mut dyn Spill) {
        for (i, op) in self.ops.iter_mut().enumerate() {
            if op.failure().is_some() {
                continue;
            }
            if op
                .next_timer()
                .map(Timestamp::as_millis)
                .is_some_and(|t| t <= now)
            {
                let mut sink = VecSink {
                    out: &mut self.out,
                    label: &self.labels[i],
                    spill: &mut *spill,
                };
                op.advance_processing_time(Timestamp::from_millis(now), &mut sink);
            }
        }
    }

    /// The first match that a skip strategy with `throw_exception_on_miss`
    /// could not skip past (of the first pattern that has one), with the
    /// time of its operator then (watermark or processing time). Flink's
    /// job fails there: the pattern's operator takes nothing more, and the
    /// caller stops the run.
    pub fn failure(&self) -> Option<(MissedSkip, i64)> {
        self.ops.iter().enumerate().find_map(|(i, op)| {
            let f = op.failure()?;
            let time = if self.event_time {
                op.current_watermark().as_millis()
            } else {
                op.current_processing_time().as_millis()
            };
            let skip = MissedSkip {
                pattern: self.names[i].clone(),
                key: f.key.text().map(str::to_string),
                failure: f.error.clone(),
            };
            Some((skip, time))
        })
    }

    /// The earliest timer of any operator.
    pub fn next_timer(&self) -> Option<i64> {
        self.ops
            .iter()
            .filter(|op| op.failure().is_none())
            .filter_map(|op| op.next_timer().map(Timestamp::as_millis))
            .min()
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

#[cfg(test)]
mod tests {
    use super::{first_at_least, Blocks, Key};
    use ferrocep_core::spec::{Conditions, Format, Spec, SpecSet};

    /// The conditions of a line under a one-condition spec.
    fn conditions(line: &str) -> Conditions {
        let spec = r#"{"stages": [{"name": "a", "where": "a == 1"}]}"#;
        let set = SpecSet::new(vec![Spec::from_str(spec, Format::Json).unwrap()]).unwrap();
        set.ingest_parts(line, &mut Vec::new()).unwrap().conditions
    }

    /// The events' text and timestamps after `push` of each `(line, ts)`,
    /// lines given as ranges of `chunk` or as their own text.
    fn through_blocks(
        chunk: &str,
        lines: &[(Result<std::ops::Range<usize>, &str>, i64)],
    ) -> Vec<(String, i64)> {
        let mut blocks = Blocks::new(1);
        for (line, ts) in lines {
            let json = match line {
                Ok(r) => &chunk[r.clone()],
                Err(own) => own,
            };
            let conds = conditions(json);
            blocks.push_from(0, Key::None, *ts, json, chunk, conds);
        }
        let mut out = Vec::new();
        blocks.finish_from(chunk, |_, r| out.push((r.event.raw().to_string(), r.ts)));
        out
    }

    #[test]
    fn push_from_keeps_each_line_text() {
        let chunk = "{\"a\":1}\n{\"b\":\"é\"}\r\nbad line\n\n{\"c\":3}\n{\"d\":4}";
        let at = |s: &str| {
            let i = chunk.find(s).unwrap();
            Ok(i..i + s.len())
        };
        let cases = [
            // One span.
            vec![(at("{\"a\":1}"), 1), (at("{\"b\":\"é\"}"), 2)],
            // A bad and a blank line between: two spans.
            vec![
                (at("{\"a\":1}"), 1),
                (at("{\"b\":\"é\"}"), 2),
                (at("{\"c\":3}"), 3),
                (at("{\"d\":4}"), 4),
            ],
            // A line of its own text between lines of the chunk.
            vec![
                (at("{\"a\":1}"), 1),
                (Err("{\"x\":0}"), 9),
                (at("{\"d\":4}"), 4),
            ],
            vec![
                (Err("{\"x\":0}"), 9),
                (at("{\"c\":3}"), 3),
                (at("{\"d\":4}"), 4),
            ],
        ];
        for lines in cases {
            let want: Vec<(String, i64)> = lines
                .iter()
                .map(|(l, ts)| {
                    let text = match l {
                        Ok(r) => &chunk[r.clone()],
                        Err(own) => own,
                    };
                    (text.to_string(), *ts)
                })
                .collect();
            assert_eq!(through_blocks(chunk, &lines), want);
        }
        // Two chunks through the same blocks.
        let mut blocks = Blocks::new(1);
        for chunk in ["{\"a\":1}\n{\"b\":2}", "{\"c\":3}"] {
            for line in chunk.split('\n') {
                let conds = conditions(line);
                blocks.push_from(0, Key::None, 0, line, chunk, conds);
            }
            let mut got = Vec::new();
            blocks.finish_from(chunk, |_, r| got.push(r.event.raw().to_string()));
            assert_eq!(got, chunk.split('\n').collect::<Vec<_>>());
        }
    }

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
