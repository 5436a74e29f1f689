//! Running the NFA: Flink's `NFA.process`, `advanceTime`, `computeNextStates`
//! and `processMatchesAccordingToSkipStrategy`, for one key's [`NfaState`]
//! over a [`SharedBuffer`].
//!
//! This module owns the runs (partial matches, [`Run`]), each key's
//! [`NfaState`] and the public [`SharedBuffer`]: the [`buffer`](super::buffer)
//! store plus the run vectors processing reuses. It uses `buffer`, never the
//! reverse.
//!
//! Invariants kept from Flink: every event can start a new match (the start
//! run is re-created after each event); reaching a Stop state discards every
//! branch the run produced for that event; under any skip strategy but
//! `no_skip` a completed match waits while a partial match that started
//! earlier is still open.

use std::cell::OnceCell;
use std::cmp::Ordering;
use std::num::NonZeroU32;
use std::sync::Arc;

use smallvec::SmallVec;

use super::buffer::{EventId, EventIdx, NodeRef, Path, Store};
use std::borrow::Cow;

use super::dewey::{DeweyNumber, PackedDewey};
use super::pq::JavaPq;
use super::{Action, Nfa, StateKind};
use crate::output::MatchRef;
use crate::pattern::{Condition, Context, MatchFailure, SkipStrategy};

/// A partial match (Flink `ComputationState`).
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    state: u32,
    /// With `start_ts`, the id of the first event taken (Flink's
    /// `startEventID`; `NO_START` for the start run), kept as two fields so
    /// that a run takes 40 bytes.
    start_seq: u32,
    start_ts: i64,
    prev: Option<NodeRef>,
    version: DeweyNumber,
}

const NO_START: EventId = EventId {
    ts: -1,
    seq: u32::MAX,
};

impl Run {
    /// A start run: in state `start`, no event taken.
    fn new_start(start: u32, version: DeweyNumber) -> Run {
        Run {
            state: start,
            prev: None,
            version,
            start_ts: NO_START.ts,
            start_seq: NO_START.seq,
        }
    }

    /// The version digit, if this is a start run in state `start` with a
    /// one-digit version (what [`Stored::Start`] keeps of it).
    fn start_version(&self, start: u32) -> Option<u32> {
        let is_start = self.state == start
            && self.prev.is_none()
            && self.start_seq == NO_START.seq
            && self.start_ts == NO_START.ts;
        is_start.then(|| self.version.single()).flatten()
    }

    fn sort_key(&self) -> (i64, i64) {
        run_sort_key(self.start_ts, self.start_seq)
    }

    /// A run from its parts (a restored snapshot).
    pub(crate) fn from_parts(
        state: u32,
        start_ts: i64,
        start_seq: u32,
        prev: Option<NodeRef>,
        version: DeweyNumber,
    ) -> Run {
        Run {
            state,
            start_seq,
            start_ts,
            prev,
            version,
        }
    }

    /// The NFA state the run is in.
    pub(crate) fn state(&self) -> u32 {
        self.state
    }

    /// The start event's timestamp and sequence number (`-1`, `u32::MAX`
    /// for the start run).
    pub(crate) fn start_parts(&self) -> (i64, u32) {
        (self.start_ts, self.start_seq)
    }

    /// The last node taken, if any.
    pub(crate) fn prev(&self) -> Option<NodeRef> {
        self.prev
    }

    /// The run's version.
    pub(crate) fn version(&self) -> &DeweyNumber {
        &self.version
    }

    #[inline]
    fn start_ts(&self) -> i64 {
        self.start_ts
    }

    #[inline]
    fn start(&self) -> EventId {
        EventId {
            ts: self.start_ts,
            seq: self.start_seq,
        }
    }

    #[inline]
    fn start_event(&self) -> Option<EventId> {
        (self.start_seq != u32::MAX).then_some(self.start())
    }
}

/// A [`Run`] whose version packs in 8 bytes, in 32 bytes rather than 40: the
/// form of the one partial match of [`Stored::Start`], which nearly every
/// key with a pending match holds. The version is last, so that its niche
/// is past the bytes of [`Stored::Heap`].
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct PackedRun {
    start_ts: i64,
    prev: Option<NodeRef>,
    state: u32,
    start_seq: u32,
    version: PackedDewey,
}

impl PackedRun {
    /// `r` in 32 bytes, if its version packs.
    #[inline]
    fn pack(r: &Run) -> Option<PackedRun> {
        Some(PackedRun {
            start_ts: r.start_ts,
            prev: r.prev,
            state: r.state,
            start_seq: r.start_seq,
            version: PackedDewey::pack(&r.version)?,
        })
    }

    #[inline]
    fn unpack(self) -> Run {
        Run {
            state: self.state,
            start_seq: self.start_seq,
            start_ts: self.start_ts,
            prev: self.prev,
            version: self.version.unpack(),
        }
    }
}

/// The order of runs (see [`run_cmp`]) from a run's start event: the
/// start run (`start_seq == u32::MAX`) last.
pub(crate) fn run_sort_key(start_ts: i64, start_seq: u32) -> (i64, i64) {
    if start_seq != u32::MAX {
        (start_ts, start_seq as i64)
    } else {
        (i64::MAX, i32::MAX as i64)
    }
}

/// Flink `NFAState.COMPUTATION_STATE_COMPARATOR`: by start event, the start
/// run last.
fn run_cmp(a: &Run, b: &Run) -> Ordering {
    a.sort_key().cmp(&b.sort_key())
}

/// Runs stored inline in a key's state.
const INLINE_RUNS: usize = 2;
/// A key's partial matches.
type Partial = JavaPq<Run, INLINE_RUNS>;

/// Events and nodes of all partial matches of one operator, shared by its
/// keys, with the run vectors that processing reuses.
///
/// The events and nodes are the `nfa::buffer` module's store (Flink's
/// `SharedBuffer`); the run vectors are kept here, beside the runs, so that
/// the store knows nothing of runs.
pub struct SharedBuffer<E> {
    store: Store<E>,
    /// Spare run vectors, so that processing an event allocates nothing.
    run_pool: Vec<Vec<Run>>,
    /// Scratch vectors of `process` (next states, retained states, matches).
    scratch: [Vec<Run>; 3],
    /// The first match a throwing skip strategy could not skip past (read
    /// and cleared with [`SharedBuffer::take_failure`]).
    failure: Option<MatchFailure>,
    /// What conditions read as the current processing time.
    processing_time: i64,
}

impl<E> Default for SharedBuffer<E> {
    fn default() -> Self {
        SharedBuffer {
            store: Store::default(),
            run_pool: Vec::new(),
            scratch: Default::default(),
            failure: None,
            processing_time: i64::MIN,
        }
    }
}

impl<E> SharedBuffer<E> {
    fn take_runs(&mut self) -> Vec<Run> {
        self.run_pool.pop().unwrap_or_default()
    }

    fn give_runs(&mut self, mut v: Vec<Run>) {
        // Small vectors are not worth keeping (queues of up to two runs are
        // inline), large ones would hold memory.
        if self.run_pool.len() < 4096 && (3..=64).contains(&v.capacity()) {
            v.clear();
            self.run_pool.push(v);
        }
    }

    /// The failure of a skip strategy with `throwExceptionOnMiss` since the
    /// last call, if any (the first one).
    pub fn take_failure(&mut self) -> Option<MatchFailure> {
        self.failure.take()
    }

    /// Sets what conditions read as the current processing time
    /// ([`crate::Context::current_processing_time`]).
    #[inline]
    pub fn set_processing_time(&mut self, now: i64) {
        self.processing_time = now;
    }

    /// The current processing time given with [`Self::set_processing_time`].
    pub fn processing_time(&self) -> i64 {
        self.processing_time
    }

    /// Whether a failure is waiting for [`Self::take_failure`].
    #[inline]
    pub fn has_failure(&self) -> bool {
        self.failure.is_some()
    }

    /// Number of events held.
    pub fn num_events(&self) -> usize {
        self.store.num_events()
    }

    /// The events and nodes (for snapshots).
    pub(crate) fn store(&self) -> &Store<E> {
        &self.store
    }

    /// The events and nodes (for restoring snapshots).
    pub(crate) fn store_mut(&mut self) -> &mut Store<E> {
        &mut self.store
    }

    /// Number of nodes held.
    pub fn num_nodes(&self) -> usize {
        self.store.num_nodes()
    }
}

/// A key's partial matches between two events. Nearly every key holds the
/// start run alone or behind one partial match: `[start]` or `[other,
/// start]` in heap order (the start run sorts last, so that is the only heap
/// of two that holds it). That shape keeps the start run as its version
/// digit (in the spare bytes of the key's [`Counters`]), 40 bytes less per
/// key than the run itself, and the other run packed ([`PackedRun`]) when
/// its version packs; the runs are rebuilt, inline, when the key's next
/// event or timer comes.
#[derive(Clone, Debug)]
enum Stored {
    /// Heap array `[other, start run]`, or `[start run]` when `other` is
    /// `None`: the start run is in the start state, has taken no event and
    /// has the one-digit version [`Counters::version`].
    Start { other: Option<PackedRun> },
    /// Any other heap array (on a pooled vector).
    Heap(JavaPq<Run>),
    /// Matches held back by the skip strategy, beside the partial matches
    /// (rare: boxed, so that a key's state needs no word for them).
    Held(Box<Held>),
}

/// [`Stored::Held`]: `completed` is not empty, but while a key's event or
/// timer is processed (between [`NfaState::take_partial`] and
/// [`NfaState::set_partial`]).
#[derive(Clone, Debug, Default)]
struct Held {
    partial: JavaPq<Run>,
    completed: JavaPq<Run>,
}

impl Stored {
    /// The runs kept as runs, in heap order (the start run of
    /// [`Stored::Start`] is not one).
    fn runs(&self) -> impl Iterator<Item = Cow<'_, Run>> {
        let (one, rest) = match self {
            Stored::Start { other, .. } => (*other, [].as_slice()),
            Stored::Heap(q) => (None, q.iter().as_slice()),
            Stored::Held(h) => (None, h.partial.iter().as_slice()),
        };
        one.map(|r| Cow::Owned(r.unpack()))
            .into_iter()
            .chain(rest.iter().map(Cow::Borrowed))
    }

    /// The box of [`Stored::Held`] (which `self` must be).
    fn into_held(self) -> Box<Held> {
        match self {
            Stored::Held(h) => h,
            _ => Box::default(),
        }
    }

    /// The last nodes of the runs of [`Self::runs`], in that order.
    fn prevs(&self) -> impl Iterator<Item = Option<NodeRef>> + '_ {
        let (one, rest) = match self {
            Stored::Start { other, .. } => (other.map(|r| r.prev), [].as_slice()),
            Stored::Heap(q) => (None, q.iter().as_slice()),
            Stored::Held(h) => (None, h.partial.iter().as_slice()),
        };
        one.into_iter().chain(rest.iter().map(|r| r.prev))
    }

    /// The state and start timestamp of the heap head, `None` when it is the
    /// start run of [`Stored::Start`] (or there is none).
    #[inline]
    fn head(&self) -> Option<(u32, i64)> {
        match self {
            Stored::Start { other, .. } => other.map(|r| (r.state, r.start_ts)),
            Stored::Heap(q) => q.peek().map(|r| (r.state, r.start_ts)),
            Stored::Held(h) => h.partial.peek().map(|r| (r.state, r.start_ts)),
        }
    }
}

/// A key's count of stored events per timestamp (Flink's `eventsCount` of
/// the shared buffer), which numbers the events of one timestamp. Events
/// reach the NFA in time order, so nearly always one timestamp is counted:
/// 16 bytes in the key's state, more on the heap only when time goes back.
///
/// The same 16 bytes keep the version digit of the start run of
/// [`Stored::Start`], which would otherwise pad the partial matches by 8
/// bytes: a key's state is 64 bytes, not 72.
#[derive(Clone, Debug)]
enum Counters {
    /// Count `count - 1` at `ts` (nothing is counted at 1); never zero, so
    /// that the enum's tag fits in it.
    One {
        ts: i64,
        count: NonZeroU32,
        version: u32,
    },
    // Boxed so that the enum takes 16 bytes: this is the rare case.
    Many(Box<ManyCounts>),
}

/// [`Counters::Many`]: counts of several timestamps.
#[derive(Clone, Debug)]
struct ManyCounts {
    counts: Vec<(i64, u32)>,
    version: u32,
}

impl Default for Counters {
    fn default() -> Self {
        Counters::One {
            ts: 0,
            count: NonZeroU32::MIN,
            version: 1,
        }
    }
}

impl Counters {
    /// Counts an event at `ts`, returning its number among them (from 0).
    #[inline]
    fn next(&mut self, at: i64) -> u32 {
        match self {
            Counters::One { ts, count, .. } if count.get() == 1 || *ts == at => {
                if *ts != at {
                    *ts = at;
                }
                let n = count.get() - 1;
                *count = count.saturating_add(1);
                n
            }
            Counters::One { ts, count, version } => {
                *self = Counters::Many(Box::new(ManyCounts {
                    counts: vec![(*ts, count.get() - 1), (at, 1)],
                    version: *version,
                }));
                0
            }
            Counters::Many(m) => match m.counts.iter_mut().find(|(t, _)| *t == at) {
                Some((_, c)) => {
                    *c = c.saturating_add(1);
                    *c - 1
                }
                None => {
                    m.counts.push((at, 1));
                    0
                }
            },
        }
    }

    /// Forgets the counts of timestamps before `at` (Flink's
    /// `SharedBuffer.advanceTime`).
    #[inline(always)]
    fn forget_before(&mut self, at: i64) {
        match self {
            Counters::One { ts, count, .. } => {
                if *ts < at {
                    *count = NonZeroU32::MIN;
                }
            }
            Counters::Many(_) => self.forget_before_many(at),
        }
    }

    /// [`Self::forget_before`] of [`Counters::Many`] (rare: out of the way).
    #[cold]
    #[inline(never)]
    fn forget_before_many(&mut self, at: i64) {
        if let Counters::Many(m) = self {
            m.counts.retain(|(t, _)| *t >= at);
            match m.counts[..] {
                [] => *self = Counters::one(0, 0, m.version),
                [(ts, count)] => *self = Counters::one(ts, count, m.version),
                _ => {}
            }
        }
    }

    /// Count `count` at `ts`, and the start run's version digit.
    fn one(ts: i64, count: u32, version: u32) -> Counters {
        Counters::One {
            ts,
            count: NonZeroU32::new(count.saturating_add(1)).unwrap_or(NonZeroU32::MAX),
            version,
        }
    }

    /// The counts: (timestamp, count), counts > 0.
    fn counts(&self) -> SmallVec<[(i64, u32); 2]> {
        match self {
            Counters::One { ts, count, .. } if count.get() > 1 => {
                smallvec::smallvec![(*ts, count.get() - 1)]
            }
            Counters::One { .. } => SmallVec::new(),
            Counters::Many(m) => m.counts.iter().copied().collect(),
        }
    }

    /// The version digit of the start run of [`Stored::Start`].
    #[inline]
    fn version(&self) -> u32 {
        match self {
            Counters::One { version, .. } => *version,
            Counters::Many(m) => m.version,
        }
    }

    #[inline]
    fn set_version(&mut self, v: u32) {
        match self {
            Counters::One { version, .. } => *version = v,
            Counters::Many(m) => m.version = v,
        }
    }
}

/// The matching state of one key (Flink `NFAState` plus the key's
/// per-timestamp event counters of the shared buffer).
#[derive(Clone, Debug)]
pub struct NfaState {
    /// The partial matches in heap order (a `JavaPq`'s array), and the
    /// matches held back by the skip strategy ([`Stored::Held`]).
    partial: Stored,
    counters: Counters,
}

impl NfaState {
    /// Whether only the start run is left and no match is held back: the
    /// key's state can be dropped.
    pub fn is_idle(&self) -> bool {
        let idle = |q: &JavaPq<Run>| q.len() == 1 && q.iter().all(|r| r.start_event().is_none());
        match &self.partial {
            Stored::Start { other, .. } => other.is_none(),
            Stored::Heap(q) => idle(q),
            Stored::Held(h) => h.completed.is_empty() && idle(&h.partial),
        }
    }

    /// Returns the state's vectors to the buffer's pool.
    pub fn recycle<E>(self, buf: &mut SharedBuffer<E>) {
        match self.partial {
            Stored::Start { .. } => {}
            Stored::Heap(q) => buf.give_runs(q.into_vec()),
            Stored::Held(h) => {
                let Held { partial, completed } = *h;
                buf.give_runs(partial.into_vec());
                buf.give_runs(completed.into_vec());
            }
        }
    }

    /// The matches held back by the skip strategy, if any.
    #[inline]
    fn completed(&self) -> Option<&JavaPq<Run>> {
        match &self.partial {
            Stored::Held(h) if !h.completed.is_empty() => Some(&h.completed),
            _ => None,
        }
    }

    /// Takes the held-back matches out, if any.
    fn take_completed(&mut self) -> Option<JavaPq<Run>> {
        match &mut self.partial {
            Stored::Held(h) if !h.completed.is_empty() => Some(std::mem::take(&mut h.completed)),
            _ => None,
        }
    }

    /// Keeps `c` (not empty) as the held-back matches; `start` is the NFA's
    /// start state.
    fn set_completed(&mut self, start: u32, c: JavaPq<Run>) {
        if let Stored::Held(h) = &mut self.partial {
            h.completed = c;
            return;
        }
        let partial = JavaPq::from_heap_vec(self.take_partial(start).into_vec());
        self.partial = Stored::Held(Box::new(Held {
            partial,
            completed: c,
        }));
    }

    /// Number of partial matches, the start run excluded.
    pub fn num_partial_matches(&self) -> usize {
        self.partial
            .runs()
            .filter(|r| r.start_event().is_some())
            .count()
    }

    /// The state name of every partial match, the start run included, in
    /// heap order: what Flink's tests read as
    /// `nfaState.getPartialMatches().stream().map(getCurrentStateName)`
    /// (`middle:0` for a loop's state). `nfa` is the automaton the state
    /// belongs to.
    pub fn partial_match_states<'n, E>(&self, nfa: &'n Nfa<E>) -> Vec<&'n str> {
        let name = |state: u32| nfa.states.get(state as usize).map_or("?", |s| &*s.name);
        match &self.partial {
            Stored::Start { other, .. } => other
                .iter()
                .map(|r| name(r.state))
                .chain(std::iter::once(name(nfa.start)))
                .collect(),
            Stored::Heap(q) => q.iter().map(|r| name(r.state)).collect(),
            Stored::Held(h) => h.partial.iter().map(|r| name(r.state)).collect(),
        }
    }

    /// Number of completed matches held back by the skip strategy.
    pub fn num_held_matches(&self) -> usize {
        self.completed().map_or(0, |c| c.len())
    }

    /// Starts loading the last node of each partial match, which the key's
    /// next event reads.
    pub(crate) fn prefetch_nodes<E>(&self, buf: &SharedBuffer<E>) {
        for p in self.partial.prevs().flatten() {
            buf.store.prefetch_node(p);
        }
    }

    /// Starts loading what `f` loads of those nodes' events (the nodes and
    /// the events' entries must be loaded).
    pub(crate) fn prefetch_event_data<E>(&self, buf: &SharedBuffer<E>, f: fn(&E)) {
        for p in self.partial.prevs().flatten() {
            if let Some(e) = buf.store.node_event(p) {
                f(e);
            }
        }
    }

    /// Starts loading the events of those nodes (which must be loaded).
    pub(crate) fn prefetch_events<E>(&self, buf: &SharedBuffer<E>) {
        for p in self.partial.prevs().flatten() {
            buf.store.prefetch_node_event(p);
        }
    }

    /// An empty queue for the partial matches that replace `old`: inline
    /// when `old` was, else on a pooled vector.
    fn new_partial<E>(old: &Partial, buf: &mut SharedBuffer<E>) -> Partial {
        if old.spilled() {
            JavaPq::from_heap_vec(buf.take_runs())
        } else {
            JavaPq::default()
        }
    }

    /// Takes the partial matches out as runs (inline up to two), leaving
    /// none (and the held-back matches in place); `start` is the NFA's start
    /// state.
    #[inline]
    fn take_partial(&mut self, start: u32) -> Partial {
        if let Stored::Held(h) = &mut self.partial {
            return JavaPq::from_heap_vec(std::mem::take(&mut h.partial).into_vec());
        }
        match std::mem::replace(&mut self.partial, Stored::Heap(JavaPq::default())) {
            Stored::Start { other } => {
                let s = Run::new_start(start, DeweyNumber::new(self.counters.version()));
                let items = match other {
                    Some(o) => SmallVec::from_buf([o.unpack(), s]),
                    None => {
                        let mut items = SmallVec::new();
                        items.push(s);
                        items
                    }
                };
                JavaPq::from_heap_items(items)
            }
            Stored::Heap(q) => JavaPq::from_heap_vec(q.into_vec()),
            Stored::Held(_) => unreachable!("taken above"),
        }
    }

    /// Stores `q` as the partial matches, in the compact shape if it has it
    /// (beside the held-back matches, if there are any).
    #[inline]
    fn set_partial<E>(&mut self, buf: &mut SharedBuffer<E>, start: u32, q: Partial) {
        if let Stored::Held(h) = &mut self.partial {
            if !h.completed.is_empty() {
                let mut v = std::mem::take(&mut h.partial).into_vec();
                v.clear();
                v.extend(q.into_items());
                h.partial = JavaPq::from_heap_vec(v);
                return;
            }
            // Nothing is held back any more: back to the usual shapes.
            let Held { partial, completed } =
                *std::mem::replace(&mut self.partial, Stored::Heap(JavaPq::default())).into_held();
            buf.give_runs(partial.into_vec());
            buf.give_runs(completed.into_vec());
        }
        let mut items = q.into_items();
        // The start run's version digit, and the other run packed.
        let compact = match items.as_slice() {
            [s] => s.start_version(start).map(|v| (v, None)),
            [o, s] if o.start_event().is_some() => s
                .start_version(start)
                .and_then(|v| Some((v, Some(PackedRun::pack(o)?)))),
            _ => None,
        };
        let new = match compact {
            Some((version, other)) => {
                if items.spilled() {
                    items.clear();
                    buf.give_runs(items.into_vec());
                }
                self.counters.set_version(version);
                Stored::Start { other }
            }
            None if items.spilled() => Stored::Heap(JavaPq::from_heap_vec(items.into_vec())),
            None => {
                let mut v = buf.take_runs();
                v.extend(items);
                Stored::Heap(JavaPq::from_heap_vec(v))
            }
        };
        // What is replaced is the empty queue `take_partial` left, which
        // owns nothing: no drop to call.
        let old = std::mem::replace(&mut self.partial, new);
        if matches!(&old, Stored::Heap(q) if !q.spilled()) {
            std::mem::forget(old);
        }
    }

    /// The partial matches in heap order, the start run included (copies).
    pub(crate) fn partial_runs(&self, start: u32) -> SmallVec<[Run; INLINE_RUNS]> {
        match &self.partial {
            Stored::Start { other } => other
                .iter()
                .map(|r| r.unpack())
                .chain(std::iter::once(Run::new_start(
                    start,
                    DeweyNumber::new(self.counters.version()),
                )))
                .collect(),
            Stored::Heap(q) => q.iter().cloned().collect(),
            Stored::Held(h) => h.partial.iter().cloned().collect(),
        }
    }

    /// The matches held back by the skip strategy, in heap order.
    pub(crate) fn completed_runs(&self) -> &[Run] {
        self.completed().map_or(&[], |c| c.iter().as_slice())
    }

    /// Every run, partial (the start run of the compact shape excepted)
    /// and held back.
    pub(crate) fn all_runs(&self) -> impl Iterator<Item = Cow<'_, Run>> {
        self.partial
            .runs()
            .chain(self.completed_runs().iter().map(Cow::Borrowed))
    }

    /// The event counts per timestamp: (timestamp, count), counts > 0.
    pub(crate) fn counts(&self) -> SmallVec<[(i64, u32); 2]> {
        self.counters.counts()
    }

    /// A state from its parts: `partial` and `completed` in heap order,
    /// `counts` with distinct timestamps and counts > 0 (a restored
    /// snapshot); `start` is the NFA's start state.
    pub(crate) fn from_parts<E>(
        buf: &mut SharedBuffer<E>,
        start: u32,
        partial: Vec<Run>,
        completed: Vec<Run>,
        counts: &[(i64, u32)],
    ) -> NfaState {
        let mut st = NfaState {
            partial: Stored::Heap(JavaPq::default()),
            counters: match counts {
                [] => Counters::default(),
                [(ts, count)] => Counters::one(*ts, *count, 1),
                more => Counters::Many(Box::new(ManyCounts {
                    counts: more.to_vec(),
                    version: 1,
                })),
            },
        };
        let q: Partial = if partial.len() > INLINE_RUNS {
            JavaPq::from_heap_vec(partial)
        } else {
            JavaPq::from_heap_items(partial.into_iter().collect())
        };
        st.set_partial(buf, start, q);
        if !completed.is_empty() {
            st.set_completed(start, JavaPq::from_heap_vec(completed));
        }
        st
    }

    #[inline]
    fn next_event_id(&mut self, ts: i64) -> EventId {
        EventId {
            ts,
            seq: self.counters.next(ts),
        }
    }
}

/// Puts `v` in `slot`, a vector emptied with `mem::take`: when that owns no
/// buffer (nearly always) it is not dropped, which saves a call per vector
/// and event.
#[inline(always)]
fn put_back(slot: &mut Vec<Run>, v: Vec<Run>) {
    let old = std::mem::replace(slot, v);
    if old.capacity() == 0 {
        // No buffer, so no elements: nothing to free.
        std::mem::forget(old);
    }
}

/// Receives what the NFA emits for one key.
pub trait NfaOutput<E> {
    /// A completed match.
    fn on_match(&mut self, m: &MatchRef<'_, E>);
    /// A timed-out partial match; `timeout_at` is `start + window`.
    fn on_timeout(&mut self, m: &MatchRef<'_, E>, timeout_at: i64);
    /// A completed match that a skip strategy with `throwExceptionOnMiss`
    /// could not skip past: it is not emitted (Flink fails the job). Every
    /// such match comes here; ignored by default.
    fn on_failure(&mut self, m: &MatchRef<'_, E>, failure: &MatchFailure) {
        let _ = (m, failure);
    }
}

/// The partial match a condition is evaluated for (Flink `ConditionContext`).
struct Ctx<'a, E> {
    nfa: &'a Nfa<E>,
    buf: &'a SharedBuffer<E>,
    run: &'a Run,
    ts: i64,
    matched: OnceCell<Path>,
}

impl<E> Context<E> for Ctx<'_, E> {
    fn events_for_pattern(&self, name: &str) -> Vec<&E> {
        let path = self.matched.get_or_init(|| match self.run.prev {
            None => Path::new(),
            Some(p) => self
                .buf
                .store
                .extract(p, &self.run.version, true)
                .into_iter()
                .next()
                .unwrap_or_default(),
        });
        path.iter()
            .filter(|(s, _)| &*self.nfa.stage_names[*s as usize] == name)
            .map(|(_, e)| self.buf.store.event(*e))
            .collect()
    }

    fn timestamp(&self) -> i64 {
        self.ts
    }

    fn current_processing_time(&self) -> i64 {
        self.buf.processing_time
    }
}

fn calculate_increasing_self_state(ignore: u32, take: u32) -> u32 {
    if take == 0 && ignore == 0 {
        0
    } else {
        ignore + take.max(1)
    }
}

impl<E> Nfa<E> {
    /// A fresh key state: only the start run (version 1), inline.
    pub fn initial_state(&self) -> NfaState {
        NfaState {
            partial: Stored::Start { other: None },
            counters: Counters::default(),
        }
    }

    fn start_run(&self, version: DeweyNumber) -> Run {
        Run::new_start(self.start, version)
    }

    fn is_start(&self, r: &Run) -> bool {
        r.state == self.start
    }

    #[inline(always)]
    fn check(
        &self,
        cond: &Condition<E>,
        buf: &SharedBuffer<E>,
        ev: EventIdx,
        run: &Run,
        ts: i64,
    ) -> bool {
        match cond {
            Condition::True => true,
            Condition::Simple(f) => f(buf.store.event(ev)),
            // The ignore condition of `followed_by` (Flink's NOT of the take
            // condition): no context to build.
            Condition::Not(c) => match &**c {
                Condition::Simple(f) => !f(buf.store.event(ev)),
                _ => self.check_in_context(cond, buf, ev, run, ts),
            },
            _ => self.check_in_context(cond, buf, ev, run, ts),
        }
    }

    /// [`Self::check`] of a condition that may read the partial match.
    #[inline(never)]
    fn check_in_context(
        &self,
        cond: &Condition<E>,
        buf: &SharedBuffer<E>,
        ev: EventIdx,
        run: &Run,
        ts: i64,
    ) -> bool {
        let ctx = Ctx {
            nfa: self,
            buf,
            run,
            ts,
            matched: OnceCell::new(),
        };
        cond.eval(buf.store.event(ev), &ctx)
    }

    /// Feeds one event with timestamp `ts` (Flink `NFA.process`). Returns
    /// whether a new partial match left the start state with a start
    /// timestamp > 0 (the operator then registers a window timer).
    #[inline]
    pub fn process(
        &self,
        buf: &mut SharedBuffer<E>,
        st: &mut NfaState,
        event: E,
        ts: i64,
        out: &mut impl NfaOutput<E>,
    ) -> bool {
        self.process_gated(buf, st, event, ts, out, true)
    }

    /// [`Nfa::process`]; with `starts` false the event only continues
    /// partial matches: the start run does not take it (a pattern that is
    /// draining after a change takes no new starts).
    pub fn process_gated(
        &self,
        buf: &mut SharedBuffer<E>,
        st: &mut NfaState,
        event: E,
        ts: i64,
        out: &mut impl NfaOutput<E>,
        starts: bool,
    ) -> bool {
        let ev = buf.store.begin_event(event, ts);
        let mut new_start = false;
        let old = st.take_partial(self.start);
        let mut new_partial = NfaState::new_partial(&old, buf);
        let [mut next, mut retain, potential] = std::mem::take(&mut buf.scratch);
        let mut potential = JavaPq::from_heap_vec(potential);
        let mut runs = old.into_items();
        for run in runs.drain(..) {
            if !starts && run.start_event().is_none() {
                new_partial.offer(run, run_cmp);
                continue;
            }
            let from_start = self.is_start(&run);
            self.compute_next_states(buf, st, run, ev, ts, &mut next);
            let mut discard = false;
            for n in next.drain(..) {
                if from_start && n.start_ts() > 0 {
                    new_start = true;
                }
                match self.states[n.state as usize].kind {
                    StateKind::Final => potential.offer(n, run_cmp),
                    StateKind::Stop => {
                        discard = true;
                        if let Some(p) = n.prev {
                            buf.store.release_node(p, &n.version);
                        }
                    }
                    _ => retain.push(n),
                }
            }
            if discard {
                for r in retain.drain(..) {
                    if let Some(p) = r.prev {
                        buf.store.release_node(p, &r.version);
                    }
                }
            } else {
                for r in retain.drain(..) {
                    new_partial.offer(r, run_cmp);
                }
            }
        }
        if runs.spilled() {
            buf.give_runs(runs.into_vec());
        } else {
            // Drained and inline: it owns nothing.
            std::mem::forget(runs);
        }
        if self.skip == SkipStrategy::NoSkip {
            for m in potential.drain() {
                if let Some(p) = m.prev {
                    if let Some(path) = buf.store.extract(p, &m.version, true).into_iter().next() {
                        self.emit(buf, &path, out, None);
                    }
                    buf.store.release_node(p, &m.version);
                }
            }
            put_back(&mut buf.scratch[0], next);
            put_back(&mut buf.scratch[1], retain);
            put_back(&mut buf.scratch[2], potential.into_vec());
        } else {
            put_back(&mut buf.scratch[0], next);
            put_back(&mut buf.scratch[1], retain);
            self.process_matches_by_skip(buf, st, potential, &mut new_partial, out);
        }
        st.set_partial(buf, self.start, new_partial);
        buf.store.finish_event(ev);
        new_start
    }

    /// Advances time to `ts` (Flink `NFA.advanceTime`): partial matches with
    /// `ts - start >= window` time out (reported at `start + window`), or
    /// complete if they wait in a trailing `notFollowedBy`.
    pub fn advance_time(
        &self,
        buf: &mut SharedBuffer<E>,
        st: &mut NfaState,
        ts: i64,
        out: &mut impl NfaOutput<E>,
    ) {
        st.counters.forget_before(ts);
        // Fast path: nothing can expire. The heap head is the run with the
        // earliest start (the start run sorts last), so if it has not expired
        // none has; and with no expiry and no held match nothing changes.
        // Per-stage windows run from each run's previous event, which the
        // heap does not order: then every run is looked at.
        if !self.has_state_windows {
            let Some(window) = self.window.filter(|w| *w > 0) else {
                if st.completed().is_none() {
                    return;
                }
                let mut partial = st.take_partial(self.start);
                self.process_matches_by_skip(buf, st, JavaPq::default(), &mut partial, out);
                st.set_partial(buf, self.start, partial);
                return;
            };
            if st.completed().is_none() {
                match st.partial.head() {
                    Some((state, _)) if state == self.start => return,
                    Some((_, start_ts)) if start_ts >= 0 && ts.wrapping_sub(start_ts) < window => {
                        return
                    }
                    None => return,
                    _ => {}
                }
            }
        }
        let old = st.take_partial(self.start);
        let mut new_partial = NfaState::new_partial(&old, buf);
        let mut potential: JavaPq<Run> = JavaPq::default();
        let mut runs = old.into_items();
        for run in runs.drain(..) {
            // Flink checks the state's window from the previous event first,
            // and reports its expiry when both have expired.
            let by_previous = match self.states[run.state as usize].window {
                Some(w) if !self.is_start(&run) => {
                    let prev_ts = run.prev.map_or(-1, |p| buf.store.node_ts(p));
                    (ts.wrapping_sub(prev_ts) >= w).then(|| prev_ts.wrapping_add(w))
                }
                _ => None,
            };
            let by_first = match self.window {
                Some(w) => !self.is_start(&run) && w > 0 && ts.wrapping_sub(run.start_ts()) >= w,
                None => false,
            };
            let timed_out = by_previous.is_some() || by_first;
            if !timed_out {
                new_partial.offer(run, run_cmp);
                continue;
            }
            if self.states[run.state as usize].kind == StateKind::Pending {
                potential.offer(run, run_cmp);
                continue;
            }
            if let Some(p) = run.prev {
                let at = by_previous
                    .unwrap_or_else(|| run.start_ts().wrapping_add(self.window.unwrap_or(0)));
                if let Some(path) = buf.store.extract(p, &run.version, true).into_iter().next() {
                    self.emit(buf, &path, out, Some(at));
                }
                buf.store.release_node(p, &run.version);
            }
        }
        if runs.spilled() {
            buf.give_runs(runs.into_vec());
        }
        self.process_matches_by_skip(buf, st, potential, &mut new_partial, out);
        st.set_partial(buf, self.start, new_partial);
    }

    /// Reports every partial match of `st` and every match its skip
    /// strategy holds back as timed out at `at`, for a pattern whose pending
    /// partial matches are dropped. The state is not changed: drop it after.
    pub fn report_pending(
        &self,
        buf: &SharedBuffer<E>,
        st: &NfaState,
        at: i64,
        out: &mut impl NfaOutput<E>,
    ) {
        for run in st.all_runs() {
            if let Some(p) = run.prev {
                if let Some(path) = buf.store.extract(p, &run.version, true).into_iter().next() {
                    self.emit(buf, &path, out, Some(at));
                }
            }
        }
    }

    fn emit(
        &self,
        buf: &SharedBuffer<E>,
        path: &[(u32, EventIdx)],
        out: &mut impl NfaOutput<E>,
        timeout_at: Option<i64>,
    ) {
        let events: SmallVec<[(u32, &E); 8]> = path
            .iter()
            .map(|(s, e)| (*s, buf.store.event(*e)))
            .collect();
        let m = MatchRef::new(&self.stage_names, &events);
        match timeout_at {
            None => out.on_match(&m),
            Some(at) => out.on_timeout(&m, at),
        }
    }

    fn emit_failure(
        &self,
        buf: &SharedBuffer<E>,
        path: &[(u32, EventIdx)],
        out: &mut impl NfaOutput<E>,
        failure: &MatchFailure,
    ) {
        let events: SmallVec<[(u32, &E); 8]> = path
            .iter()
            .map(|(s, e)| (*s, buf.store.event(*e)))
            .collect();
        out.on_failure(&MatchRef::new(&self.stage_names, &events), failure);
    }

    fn process_matches_by_skip(
        &self,
        buf: &mut SharedBuffer<E>,
        st: &mut NfaState,
        potential: JavaPq<Run>,
        partial: &mut Partial,
        out: &mut impl NfaOutput<E>,
    ) {
        let mut potential = potential;
        if st.completed().is_none() && potential.len() <= 1 {
            // Flink adds the match to the empty completed queue and takes it
            // straight out again unless a partial match started before it.
            if let Some(m) = potential.poll(run_cmp) {
                let held = partial
                    .peek()
                    .is_some_and(|p| run_cmp(&m, p) == Ordering::Greater);
                if held {
                    let mut c = JavaPq::from_heap_vec(buf.take_runs());
                    c.offer(m, run_cmp);
                    st.set_completed(self.start, c);
                } else {
                    self.complete(buf, partial, None, m, out);
                }
            }
            self.recycle_potential(buf, potential);
            return;
        }
        let mut completed = st
            .take_completed()
            .unwrap_or_else(|| JavaPq::from_heap_vec(buf.take_runs()));
        for m in potential.drain() {
            completed.offer(m, run_cmp);
        }
        self.recycle_potential(buf, potential);
        while let Some(earliest) = completed.peek() {
            if let Some(p) = partial.peek() {
                if run_cmp(earliest, p) == Ordering::Greater {
                    break;
                }
            }
            let Some(m) = completed.poll(run_cmp) else {
                break;
            };
            self.complete(buf, partial, Some(&mut completed), m, out);
        }
        if completed.is_empty() {
            buf.give_runs(completed.into_vec());
        } else {
            st.set_completed(self.start, completed);
        }
    }

    fn recycle_potential(&self, buf: &mut SharedBuffer<E>, potential: JavaPq<Run>) {
        if buf.scratch[2].capacity() == 0 {
            put_back(&mut buf.scratch[2], potential.into_vec());
        } else {
            buf.give_runs(potential.into_vec());
        }
    }

    /// Emits completed match `m` and prunes what the skip strategy says.
    fn complete(
        &self,
        buf: &mut SharedBuffer<E>,
        partial: &mut Partial,
        completed: Option<&mut JavaPq<Run>>,
        m: Run,
        out: &mut impl NfaOutput<E>,
    ) {
        let paths = match m.prev {
            Some(p) => buf.store.extract(p, &m.version, false),
            None => Default::default(),
        };
        // Flink computes the pruning id, which throws, before it emits: the
        // failed match is not emitted and nothing is pruned.
        if self.skip_throw {
            if let Some(f) = self.skip_miss(buf, &paths) {
                if let Some(first) = paths.first() {
                    self.emit_failure(buf, first, out, &f);
                }
                if buf.failure.is_none() {
                    buf.failure = Some(f);
                }
                if let Some(p) = m.prev {
                    buf.store.release_node(p, &m.version);
                }
                return;
            }
        }
        // Emitted before pruning, which emits nothing: the path's events are
        // then live whatever the lock counts (a restored state is trusted
        // no further than that).
        if let Some(first) = paths.first() {
            self.emit(buf, first, out, None);
        }
        if let Some(pid) = self.pruning_id(buf, &paths) {
            self.prune(buf, partial, pid);
            if let Some(c) = completed {
                self.prune(buf, c, pid);
            }
        }
        if let Some(p) = m.prev {
            buf.store.release_node(p, &m.version);
        }
    }

    /// Flink's `SkipToElementStrategy.getPruningId` with
    /// `shouldThrowException`: the failure it throws, if any.
    fn skip_miss(&self, buf: &SharedBuffer<E>, paths: &[Path]) -> Option<MatchFailure> {
        let stage = self.skip_stage?;
        let stage_name = self.stage_names[stage as usize].to_string();
        let id = |e: EventIdx| buf.store.event_entry(e).id();
        let mut pruning: Option<EventId> = None;
        for path in paths {
            let mut of_stage = path.iter().filter(|(s, _)| *s == stage);
            let pick = if matches!(self.skip, SkipStrategy::SkipToFirst(_)) {
                of_stage.next()
            } else {
                of_stage.next_back()
            };
            match pick {
                None => {
                    let mut found: Vec<&str> = Vec::new();
                    for (s, _) in path.iter() {
                        let n = &*self.stage_names[*s as usize];
                        if !found.contains(&n) {
                            found.push(n);
                        }
                    }
                    return Some(MatchFailure::NoSuchElement {
                        stage: stage_name,
                        found: format!("{{{}}}", found.join(", ")),
                    });
                }
                Some((_, e)) => {
                    let v = id(*e);
                    pruning = Some(pruning.map_or(v, |p| p.max(v)));
                }
            }
            let first = path.iter().map(|(_, e)| id(*e)).min();
            if pruning.is_some() && pruning == first {
                return Some(MatchFailure::FirstElement { stage: stage_name });
            }
        }
        None
    }

    fn pruning_id(&self, buf: &SharedBuffer<E>, paths: &[Path]) -> Option<EventId> {
        let id = |e: EventIdx| buf.store.event_entry(e).id();
        let mut pruning: Option<EventId> = None;
        for path in paths {
            match &self.skip {
                SkipStrategy::NoSkip => return None,
                SkipStrategy::SkipToNext => {
                    // Flink takes the minimum over each stage's first event.
                    for (i, (s, e)) in path.iter().enumerate() {
                        if path[..i].iter().any(|(s2, _)| s2 == s) {
                            continue;
                        }
                        let v = id(*e);
                        pruning = Some(pruning.map_or(v, |p| p.min(v)));
                    }
                }
                SkipStrategy::SkipPastLastEvent => {
                    for (_, e) in path {
                        let v = id(*e);
                        pruning = Some(pruning.map_or(v, |p| p.max(v)));
                    }
                }
                SkipStrategy::SkipToFirst(_) | SkipStrategy::SkipToLast(_) => {
                    let stage = self.skip_stage?;
                    let mut of_stage = path.iter().filter(|(s, _)| *s == stage);
                    let pick = if matches!(self.skip, SkipStrategy::SkipToFirst(_)) {
                        of_stage.next()
                    } else {
                        of_stage.next_back()
                    };
                    if let Some((_, e)) = pick {
                        let v = id(*e);
                        pruning = Some(pruning.map_or(v, |p| p.max(v)));
                    }
                }
            }
        }
        pruning
    }

    fn prune<const N: usize>(
        &self,
        buf: &mut SharedBuffer<E>,
        queue: &mut JavaPq<Run, N>,
        pid: EventId,
    ) {
        if queue.is_empty() {
            return;
        }
        let strict = matches!(
            self.skip,
            SkipStrategy::SkipToFirst(_) | SkipStrategy::SkipToLast(_)
        );
        let removed = queue.bulk_remove(
            |r| match r.start_event() {
                Some(s) => {
                    if strict {
                        s < pid
                    } else {
                        s <= pid
                    }
                }
                None => false,
            },
            run_cmp,
        );
        for r in removed {
            if let Some(p) = r.prev {
                buf.store.release_node(p, &r.version);
            }
        }
    }

    fn compute_next_states(
        &self,
        buf: &mut SharedBuffer<E>,
        st: &mut NfaState,
        run: Run,
        ev: EventIdx,
        ts: i64,
        result: &mut Vec<Run>,
    ) {
        // Decision graph: follow PROCEED edges whose condition holds, collect
        // TAKE and IGNORE edges whose condition holds.
        let mut edges: SmallVec<[(u32, u32, Action, u32); 4]> = SmallVec::new(); // (source, transition idx, action, target)
        let mut total_take = 0u32;
        let mut total_ignore = 0u32;
        let mut stack: SmallVec<[u32; 4]> = SmallVec::new();
        let own = &self.states[run.state as usize];
        // Without PROCEED transitions the graph is the state's own edges:
        // no stack to walk.
        let mut next = (!own.proceeds).then_some(run.state);
        if next.is_none() {
            stack.push(run.state);
        }
        while let Some(s) = next.take().or_else(|| stack.pop()) {
            for (ti, t) in self.states[s as usize].transitions.iter().enumerate() {
                if !self.check(&t.condition, buf, ev, &run, ts) {
                    continue;
                }
                match t.action {
                    Action::Proceed => stack.push(t.target),
                    Action::Ignore | Action::Take => {
                        let self_ignore = t.action == Action::Ignore && t.target == run.state;
                        if !self_ignore {
                            if t.action == Action::Ignore {
                                total_ignore += 1;
                            } else {
                                total_take += 1;
                            }
                        }
                        edges.push((s, ti as u32, t.action, t.target));
                    }
                }
            }
        }

        let is_start = self.is_start(&run);
        let mut take_to_visit = total_take.saturating_sub(1) as i64;
        let mut ignore_to_visit = total_ignore;
        let total_take_to_skip = total_take.saturating_sub(1);

        for &(source, _ti, action, target) in &edges {
            match action {
                Action::Ignore => {
                    if is_start {
                        continue;
                    }
                    let version = if target == run.state {
                        run.version
                            .increase(calculate_increasing_self_state(total_ignore, total_take))
                    } else {
                        let v = run
                            .version
                            .increase(total_take_to_skip + ignore_to_visit)
                            .add_stage();
                        ignore_to_visit = ignore_to_visit.saturating_sub(1);
                        v
                    };
                    let n = Run {
                        state: target,
                        prev: run.prev,
                        version,
                        start_ts: run.start_ts,
                        start_seq: run.start_seq,
                    };
                    if let Some(p) = n.prev {
                        buf.store.lock_node(p, &n.version);
                    }
                    result.push(n);
                }
                Action::Take => {
                    let current_version = run.version.increase(take_to_visit.max(0) as u32);
                    let next_version = current_version.add_stage();
                    take_to_visit -= 1;
                    if buf.store.event_entry(ev).id().seq == u32::MAX {
                        let id = st.next_event_id(ts);
                        buf.store.set_event_id(ev, id);
                    }
                    let event_id = buf.store.event_entry(ev).id();
                    let stage = self.states[source as usize].stage;
                    let entry = buf.store.put(stage, ev, run.prev, &current_version);
                    let start = if is_start { event_id } else { run.start() };
                    let n = Run {
                        state: target,
                        prev: Some(entry),
                        version: next_version.clone(),
                        start_ts: start.ts,
                        start_seq: start.seq,
                    };
                    buf.store.lock_node(entry, &n.version);
                    result.push(n);
                    if let Some(fin) = self.find_final_after_proceed(buf, target, ev, &run, ts) {
                        let n = Run {
                            state: fin,
                            prev: Some(entry),
                            version: next_version,
                            start_ts: start.ts,
                            start_seq: start.seq,
                        };
                        buf.store.lock_node(entry, &n.version);
                        result.push(n);
                    }
                }
                Action::Proceed => {}
            }
        }

        if is_start {
            let total = calculate_increasing_self_state(total_ignore, total_take);
            result.push(self.start_run(run.version.increase(total)));
        }
        if let Some(p) = run.prev {
            buf.store.release_node(p, &run.version);
        }
    }

    fn find_final_after_proceed(
        &self,
        buf: &SharedBuffer<E>,
        state: u32,
        ev: EventIdx,
        run: &Run,
        ts: i64,
    ) -> Option<u32> {
        if !self.states[state as usize].proceeds {
            return None;
        }
        let mut stack: SmallVec<[u32; 4]> = SmallVec::new();
        stack.push(state);
        while let Some(s) = stack.pop() {
            for t in &self.states[s as usize].transitions {
                if t.action == Action::Proceed && self.check(&t.condition, buf, ev, run, ts) {
                    if self.states[t.target as usize].kind == StateKind::Final {
                        return Some(t.target);
                    }
                    stack.push(t.target);
                }
            }
        }
        None
    }
}

/// Drives one NFA over a single stream the way Flink's `NFATestHarness`
/// does: for each record `advance_time(ts)` then `process(event, ts)`, in the
/// order given, with no sorting. Useful for tests and embedding without keys.
pub struct NfaRunner<E> {
    nfa: Arc<Nfa<E>>,
    buf: SharedBuffer<E>,
    state: NfaState,
}

/// Owned match: stage name -> events.
pub type OwnedMatch<E> = Vec<(String, Vec<E>)>;

#[derive(Default)]
struct Gather<E> {
    matches: Vec<OwnedMatch<E>>,
    timeouts: Vec<(OwnedMatch<E>, i64)>,
}

impl<E: Clone> NfaOutput<E> for Gather<E> {
    fn on_match(&mut self, m: &MatchRef<'_, E>) {
        self.matches.push(m.to_owned_map());
    }
    fn on_timeout(&mut self, m: &MatchRef<'_, E>, timeout_at: i64) {
        self.timeouts.push((m.to_owned_map(), timeout_at));
    }
}

impl<E: Clone> NfaRunner<E> {
    /// A runner with a fresh state.
    pub fn new(nfa: Arc<Nfa<E>>) -> Self {
        let state = nfa.initial_state();
        NfaRunner {
            nfa,
            buf: SharedBuffer::default(),
            state,
        }
    }

    /// `advance_time(ts)` then `process(event, ts)`; returns the matches
    /// (timeouts from the advance are dropped; use [`Self::feed_all`]).
    pub fn feed(&mut self, event: E, ts: i64) -> Vec<OwnedMatch<E>> {
        let (m, _) = self.feed_with_timeouts(event, ts);
        m
    }

    /// Like [`Self::feed`], also returning timed-out partial matches.
    #[allow(clippy::type_complexity)]
    pub fn feed_with_timeouts(
        &mut self,
        event: E,
        ts: i64,
    ) -> (Vec<OwnedMatch<E>>, Vec<(OwnedMatch<E>, i64)>) {
        let mut g = Gather {
            matches: Vec::new(),
            timeouts: Vec::new(),
        };
        self.nfa
            .advance_time(&mut self.buf, &mut self.state, ts, &mut g);
        self.nfa
            .process(&mut self.buf, &mut self.state, event, ts, &mut g);
        (g.matches, g.timeouts)
    }

    /// Advances time only; returns matches (pending `notFollowedBy`) and timeouts.
    #[allow(clippy::type_complexity)]
    pub fn advance_time(&mut self, ts: i64) -> (Vec<OwnedMatch<E>>, Vec<(OwnedMatch<E>, i64)>) {
        let mut g = Gather {
            matches: Vec::new(),
            timeouts: Vec::new(),
        };
        self.nfa
            .advance_time(&mut self.buf, &mut self.state, ts, &mut g);
        (g.matches, g.timeouts)
    }

    /// Feeds every `(event, ts)` in order and returns all matches.
    pub fn feed_all(&mut self, events: impl IntoIterator<Item = (E, i64)>) -> Vec<OwnedMatch<E>> {
        let mut all = Vec::new();
        for (e, ts) in events {
            all.extend(self.feed(e, ts));
        }
        all
    }

    /// The key state (for assertions on pruning).
    pub fn state(&self) -> &NfaState {
        &self.state
    }

    /// The automaton.
    pub fn nfa(&self) -> &Nfa<E> {
        &self.nfa
    }

    /// The shared buffer (for assertions on what is held).
    pub fn buffer(&self) -> &SharedBuffer<E> {
        &self.buf
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::pattern::Pattern;

    /// Every key holds its runs inline: keep them small.
    #[test]
    fn compact_runs() {
        assert_eq!(std::mem::size_of::<Run>(), 40);
        assert_eq!(std::mem::size_of::<PackedRun>(), 32);
        assert_eq!(std::mem::size_of::<Stored>(), 32);
        assert_eq!(std::mem::size_of::<Counters>(), 16);
        assert_eq!(std::mem::size_of::<NfaState>(), 48);
    }

    proptest::proptest! {
        /// The compact counters number events as Flink's map of counts per
        /// timestamp does, also when time goes back.
        #[test]
        fn counters_number_events_as_a_map_of_counts(
            ops in proptest::collection::vec((proptest::bool::ANY, 0i64..4), 0..40)
        ) {
            let mut c = Counters::default();
            let mut model: std::collections::BTreeMap<i64, u32> = Default::default();
            for (count, ts) in ops {
                if count {
                    let want = *model.get(&ts).unwrap_or(&0);
                    model.insert(ts, want + 1);
                    proptest::prop_assert_eq!(c.next(ts), want);
                } else {
                    model.retain(|t, _| *t >= ts);
                    c.forget_before(ts);
                }
                let counted: Vec<_> = model.iter().map(|(t, n)| (*t, *n)).collect();
                let mut got = c.counts().to_vec();
                got.sort();
                proptest::prop_assert_eq!(got, counted);
                proptest::prop_assert_eq!(c.version(), 1);
            }
        }
    }

    struct Count(usize);
    impl NfaOutput<i32> for Count {
        fn on_match(&mut self, _: &MatchRef<'_, i32>) {
            self.0 += 1;
        }
        fn on_timeout(&mut self, _: &MatchRef<'_, i32>, _: i64) {
            self.0 += 1;
        }
    }

    /// The start run alone or behind one partial match is kept compact;
    /// more runs go to a vector and come back to the compact shape.
    #[test]
    fn start_run_is_kept_compact_while_it_fits() {
        let p = Pattern::begin("a")
            .where_(|x: &i32| *x == 1)
            .followed_by("b")
            .where_(|x: &i32| *x == 2);
        let nfa = p.compile().expect("compiles");
        let mut buf = SharedBuffer::default();
        let mut st = nfa.initial_state();
        let mut out = Count(0);
        assert!(matches!(st.partial, Stored::Start { other: None }));
        assert_eq!(st.counters.version(), 1);
        nfa.process(&mut buf, &mut st, 1, 1, &mut out);
        assert!(matches!(st.partial, Stored::Start { other: Some(_), .. }));
        assert_eq!(st.num_partial_matches(), 1);
        nfa.process(&mut buf, &mut st, 1, 2, &mut out);
        assert!(matches!(&st.partial, Stored::Heap(q) if q.len() == 3));
        assert_eq!(st.num_partial_matches(), 2);
        nfa.process(&mut buf, &mut st, 2, 3, &mut out);
        assert_eq!(out.0, 2);
        assert!(st.is_idle() && matches!(st.partial, Stored::Start { other: None, .. }));
    }
}
