//! The keyed CEP operator (Flink `CepOperator`): one [`NfaState`] per key,
//! one shared buffer for all keys, and a timer service ordered by time.
//!
//! Event time: an event with `ts > watermark` waits in one queue shared by
//! all keys, ordered by (timestamp, arrival); otherwise it is late. When the
//! watermark advances to `t`, the waiting events with timestamps `<= t` run
//! in that order, each after `advance_time(ts)` of its key, and then every
//! key that ran an event advances to `t`. Keys are independent, so this is
//! what Flink's per-key timers at each buffered timestamp do (each key sees
//! its events in order, then the watermark), without a timer or a buffer
//! per key. A partial match that leaves the start state with a start
//! timestamp > 0 sets a timer at `start + window`, so timeouts fire without
//! further events.
//!
//! Processing time: each event is processed on arrival at the current time;
//! window timers are at `start + window + 1` (Flink's processing-time timers).
//!
//! Advancing time costs O(due events and timers): in-order events and timers
//! sit in deques (a heap takes those that arrive out of order); keys with
//! nothing due are not touched. A key whose state is back to the bare start
//! run with nothing waiting is dropped.
//!
//! State can be saved and restored key by key, and the keys changed or
//! dropped since the last checkpoint listed: see [`state`].

mod index;
pub mod state;

use std::borrow::Borrow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxBuildHasher;

use crate::nfa::{Nfa, NfaOutput, NfaState, SharedBuffer};
use crate::output::{MatchRef, OutputSink};
use crate::slots::{prefetch, Slots};
use crate::time::{duration_millis, Timestamp, Watermark, MIN_WATERMARK};
use index::KeyIndex;
pub use state::{key_group, key_group_range, stable_key_hash, StateCodec, StateError, KEY_GROUPS};

/// Which clock drives the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeDomain {
    /// Event timestamps and watermarks (Flink's default).
    EventTime,
    /// The caller's clock: events are stamped with "now" on arrival.
    ProcessingTime,
}

struct KeyEntry<K> {
    key: K,
    gen: u32,
    /// Events of this key waiting in the operator's queue: the key is kept
    /// while any wait.
    queued: u32,
    state: NfaState,
}

/// What [`CepOperator::prefetch_hashed`] brings into the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prefetch {
    /// Where the key index keeps the key: issue this a few events ahead.
    Index,
    /// The key's state: issue this after [`Prefetch::Index`], when the index
    /// line has arrived (a couple of events ahead).
    State,
}

/// An event as given to [`CepOperator::process_element`]: moved in (`E`),
/// or borrowed (`&E`) and cloned only when the operator keeps it.
pub trait IntoEvent<E> {
    /// The event, to look at.
    fn as_event(&self) -> &E;
    /// The event, to keep.
    fn into_event(self) -> E;
}

impl<E> IntoEvent<E> for E {
    #[inline(always)]
    fn as_event(&self) -> &E {
        self
    }
    #[inline(always)]
    fn into_event(self) -> E {
        self
    }
}

impl<E: Clone> IntoEvent<E> for &E {
    #[inline(always)]
    fn as_event(&self) -> &E {
        self
    }
    #[inline(always)]
    fn into_event(self) -> E {
        self.clone()
    }
}

/// Flink's `CepOperator` over keys `K` and events `E`.
pub struct CepOperator<K, E> {
    nfa: Arc<Nfa<E>>,
    domain: TimeDomain,
    buf: SharedBuffer<E>,
    /// Key -> slot; the key itself is stored once, in its slot.
    index: KeyIndex,
    hasher: FxBuildHasher,
    keys: Slots<KeyEntry<K>>,
    next_gen: u32,
    /// Event time: events waiting for the watermark, all keys together.
    waiting: EventQueue<E>,
    /// Keys that ran events in the current `advance_time` (may repeat).
    touched: Vec<(u32, u32)>,
    /// Timers at window ends. A timer set twice fires twice; the second
    /// firing finds nothing to do.
    window_timers: TimerQueue,
    current: i64,
    /// Event time: the largest timestamp received, and the caller's promise
    /// (see [`Self::set_bounded_out_of_orderness`]).
    max_ts: i64,
    out_of_orderness: Option<i64>,
    /// Keys changed and dropped since the last checkpoint.
    changes: Changes<K>,
    /// Draining: events that arrive from this arrival number on take no new
    /// starts (see [`CepOperator::stop_starts`]).
    starts_until: Option<u64>,
    /// The first match a throwing skip strategy could not skip past.
    failure: Option<Failure<K>>,
    /// Orders events of equal timestamps before they run (Flink's
    /// `EventComparator`); `None`: arrival order.
    comparator: Option<EventComparator<E>>,
    /// The events of one timestamp being sorted by `comparator` (reused).
    batch: Vec<Waiting<E>>,
}

/// Orders events of equal timestamps before matching (Flink's
/// `EventComparator`, given to `CEP.pattern(input, pattern, comparator)`).
/// The sort is stable: events the comparator finds equal keep their
/// arrival order.
pub type EventComparator<E> = Arc<dyn Fn(&E, &E) -> std::cmp::Ordering + Send + Sync>;

/// A failed match of a skip strategy with `throwExceptionOnMiss`, with the
/// key it happened for (see [`CepOperator::failure`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure<K> {
    /// The key whose match failed.
    pub key: K,
    /// What failed, in Flink's words.
    pub error: crate::pattern::MatchFailure,
}

/// Change tracking for incremental checkpoints ([`CepOperator::take_dirty`]):
/// bits per slot, apart from the keys' entries so that they keep their size.
struct Changes<K> {
    on: bool,
    /// Bit per slot: its key changed since the last take (listed in
    /// `changed` when set).
    changed_bits: Vec<u64>,
    changed: Vec<u32>,
    /// Bit per slot: its key is in the caller's store (it was reported as
    /// changed, or restored), so dropping it must be reported.
    stored_bits: Vec<u64>,
    dropped: Vec<K>,
}

impl<K> Default for Changes<K> {
    fn default() -> Self {
        Changes {
            on: false,
            changed_bits: Vec::new(),
            changed: Vec::new(),
            stored_bits: Vec::new(),
            dropped: Vec::new(),
        }
    }
}

fn bit_word(slot: u32) -> (usize, u64) {
    (slot as usize / 64, 1u64 << (slot % 64))
}

fn set_bit(bits: &mut Vec<u64>, slot: u32) -> bool {
    let (w, b) = bit_word(slot);
    if w >= bits.len() {
        bits.resize(w + 1, 0);
    }
    let was = bits[w] & b != 0;
    bits[w] |= b;
    !was
}

/// Clears a bit, returning whether it was set.
fn clear_bit(bits: &mut [u64], slot: u32) -> bool {
    let (w, b) = bit_word(slot);
    match bits.get_mut(w) {
        Some(word) if *word & b != 0 => {
            *word &= !b;
            true
        }
        _ => false,
    }
}

impl<K> Changes<K> {
    /// The key of `slot` changed. On the path of every event: one test
    /// when tracking is off.
    #[inline(always)]
    fn mark(&mut self, slot: u32) {
        if self.on {
            self.mark_on(slot);
        }
    }

    #[inline(never)]
    fn mark_on(&mut self, slot: u32) {
        if set_bit(&mut self.changed_bits, slot) {
            self.changed.push(slot);
        }
    }

    /// The key of `slot` was dropped: reported if it is in the store.
    #[inline(always)]
    fn dropped(&mut self, slot: u32, key: K) {
        if !self.stored_bits.is_empty() {
            self.dropped_stored(slot, key);
        }
    }

    #[inline(never)]
    fn dropped_stored(&mut self, slot: u32, key: K) {
        if clear_bit(&mut self.stored_bits, slot) && self.on {
            self.dropped.push(key);
        }
    }
}

struct KeyedOut<'a, K, S> {
    key: &'a K,
    timestamp: i64,
    sink: &'a mut S,
}

impl<K, E, S: OutputSink<K, E>> NfaOutput<E> for KeyedOut<'_, K, S> {
    fn on_match(&mut self, m: &MatchRef<'_, E>) {
        self.sink
            .on_match(self.key, m, Timestamp::from_millis(self.timestamp));
    }
    fn on_timeout(&mut self, m: &MatchRef<'_, E>, timeout_at: i64) {
        self.sink
            .on_timeout(self.key, m, Timestamp::from_millis(timeout_at));
    }
    fn on_failure(&mut self, m: &MatchRef<'_, E>, failure: &crate::pattern::MatchFailure) {
        self.sink.on_failure(self.key, m, failure);
    }
}

impl<K: Clone + Eq + Hash, E> CepOperator<K, E> {
    /// An operator running `nfa` in `domain`.
    pub fn new(nfa: Arc<Nfa<E>>, domain: TimeDomain) -> Self {
        CepOperator {
            nfa,
            domain,
            buf: SharedBuffer::default(),
            index: KeyIndex::default(),
            hasher: FxBuildHasher,
            keys: Slots::default(),
            next_gen: 0,
            waiting: EventQueue::default(),
            touched: Vec::new(),
            window_timers: TimerQueue::default(),
            current: MIN_WATERMARK.as_millis(),
            max_ts: i64::MIN,
            out_of_orderness: None,
            changes: Changes::default(),
            starts_until: None,
            failure: None,
            comparator: None,
            batch: Vec::new(),
        }
    }

    /// Turns change tracking for incremental checkpoints on or off (off at
    /// first: it costs a bit per key and a list of dropped keys). Keys that
    /// have state when it is turned on and were not restored count as
    /// changed. See [`Self::take_dirty`].
    pub fn set_change_tracking(&mut self, on: bool) {
        if on && !self.changes.on {
            self.changes.on = true;
            let slots: Vec<u32> = self.keys.iter().map(|(s, _)| s as u32).collect();
            for slot in slots {
                let (w, b) = bit_word(slot);
                let stored = self.changes.stored_bits.get(w).is_some_and(|x| x & b != 0);
                if !stored {
                    self.changes.mark(slot);
                }
            }
        } else if !on {
            self.changes.on = false;
            self.changes.changed.clear();
            self.changes.changed_bits.clear();
            self.changes.dropped.clear();
        }
    }

    /// With change tracking on ([`Self::set_change_tracking`]): the keys
    /// whose state changed since the last call (write their
    /// [`Self::snapshot_key`]), and the keys that were in the caller's store
    /// and have no state any more (delete them). A key is in the store once
    /// it was returned here as changed, or restored with
    /// [`Self::restore_key`]; a key removed with [`Self::remove_key`] is not
    /// reported. Each key is in at most one of the lists. If the caller
    /// could not write them all, its next checkpoint must be a full one.
    pub fn take_dirty(&mut self) -> (Vec<K>, Vec<K>) {
        let mut changed = Vec::with_capacity(self.changes.changed.len());
        let slots = std::mem::take(&mut self.changes.changed);
        for &slot in &slots {
            if !clear_bit(&mut self.changes.changed_bits, slot) {
                continue;
            }
            if let Some(e) = self.keys.get(slot as usize) {
                changed.push(e.key.clone());
                set_bit(&mut self.changes.stored_bits, slot);
            }
        }
        let mut slots = slots;
        slots.clear();
        self.changes.changed = slots;
        let mut dropped = std::mem::take(&mut self.changes.dropped);
        let mut seen =
            std::collections::HashSet::with_capacity_and_hasher(dropped.len(), FxBuildHasher);
        dropped.retain(|k| self.lookup(k).1.is_none() && seen.insert(k.clone()));
        (changed, dropped)
    }

    /// Stops new starts, for a pattern that drains after a change: events
    /// received from now on only continue the partial matches there are
    /// (events received before, still waiting for the watermark, may start
    /// as usual); late events are not reported, and keys without state
    /// skip every event. Returns the arrival number from which events take
    /// no new starts, to save with a checkpoint and give back to
    /// [`Self::stop_starts_from`].
    pub fn stop_starts(&mut self) -> u64 {
        let from = *self.starts_until.get_or_insert(self.waiting.next_seq);
        from
    }

    /// [`Self::stop_starts`] from arrival number `from` (a restored
    /// operator's).
    pub fn stop_starts_from(&mut self, from: u64) {
        self.starts_until = Some(from);
    }

    /// The arrival number from which events take no new starts, if
    /// [`Self::stop_starts`] was called.
    pub fn starts_stopped(&self) -> Option<u64> {
        self.starts_until
    }

    /// Whether no key holds state and no event waits: a draining pattern is
    /// done.
    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
    }

    /// Reports what is pending, for a pattern whose pending partial matches
    /// are dropped: each partial match (and each match the skip strategy
    /// holds back) as a timeout at the current time, and each event still
    /// waiting for the watermark as late. Consumes the operator.
    pub fn report_pending<S: OutputSink<K, E>>(self, sink: &mut S) {
        let now = self.current;
        for (_, e) in self.keys.iter() {
            let mut out = KeyedOut {
                key: &e.key,
                timestamp: now,
                sink: &mut *sink,
            };
            self.nfa.report_pending(&self.buf, &e.state, now, &mut out);
        }
        let mut waiting: Vec<&Waiting<E>> = self.waiting.iter().collect();
        waiting.sort_by_key(|w| w.order());
        for w in waiting {
            if let Some(e) = self.keys.get(w.slot as usize).filter(|e| e.gen == w.gen) {
                sink.on_late(&e.key, &w.event, Timestamp::from_millis(w.ts));
            }
        }
    }

    /// The keys holding state.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.keys.iter().map(|(_, e)| &e.key)
    }

    /// A promise from the caller that its watermarks follow Flink's bounded
    /// out-of-orderness: once an event of timestamp `t` was received, the
    /// watermark is at least `t - out_of_orderness - 1` before the next event.
    /// Then no event older than `max(t) - out_of_orderness` can still arrive
    /// in time, and an event at or before that which no transition out of the
    /// start state accepts, for a key without state, changes nothing: it is
    /// skipped without creating the key (most events of a pattern with a
    /// selective first stage, and most of each pattern's events when many
    /// patterns read one stream).
    pub fn set_bounded_out_of_orderness(&mut self, out_of_orderness: Duration) {
        self.out_of_orderness = Some(duration_millis(out_of_orderness));
    }

    /// Event time, for a caller that applies each watermark lazily, just
    /// before the next event it feeds, and then exactly at each watermark
    /// of the input at which something of the operator falls due (as a
    /// worker that sees only some keys' events must, see
    /// [`Self::next_timer`]): whether an event of `key` at `timestamp`,
    /// which the caller knows no transition out of the start state accepts
    /// ([`Nfa::may_start`] is false), can be skipped together with
    /// advancing the watermark to `watermark` before it. It can when the key
    /// has no state and the event is neither late nor able to be overtaken
    /// by an event that could still come in time (as for a key without
    /// state in [`Self::process_element`]): then the event changes nothing,
    /// as if it were another worker's. When it returns true the event
    /// counts as received (for the out-of-orderness bound), as
    /// `process_element` would have it. A lookup of the key (none when no
    /// key has state) instead of a watermark, a condition and an event:
    /// what makes a line that starts none of many patterns cost little more
    /// than reading it.
    #[inline]
    pub fn skip_unstartable<Q>(
        &mut self,
        key: &Q,
        timestamp: Timestamp,
        watermark: Watermark,
    ) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.domain != TimeDomain::EventTime {
            return false;
        }
        let ts = timestamp.as_millis();
        if ts <= self.current.max(watermark.as_millis()) {
            // Late: reported.
            return false;
        }
        let max_ts = self.max_ts.max(ts);
        let ties = i64::from(self.comparator.is_some());
        let in_order = self
            .out_of_orderness
            .is_some_and(|d| ts <= max_ts.saturating_sub(d).saturating_sub(ties));
        if !in_order || (self.keys.len() != 0 && self.lookup(key).1.is_some()) {
            return false;
        }
        self.max_ts = max_ts;
        true
    }

    /// A hint that an event of a key comes soon: starts loading what
    /// processing it will read, so that the memory latency of the key's
    /// lookup overlaps with the events before it. Changes nothing else; keys
    /// without state cost a lookup of the index. `hash` is the key's.
    #[inline]
    fn prefetch_hashed(&self, hash: u64, what: Prefetch) {
        match what {
            Prefetch::Index => prefetch(self.index.bucket_ptr(hash).cast()),
            Prefetch::State => {
                if let Some(slot) = self.index.candidate(hash) {
                    let at = self.keys.addr(slot as usize);
                    // The key and the runs: an entry spans up to three lines.
                    prefetch(at);
                    prefetch(at.wrapping_add(64));
                    prefetch(at.wrapping_add(128));
                }
            }
        }
    }

    /// Orders the events of each timestamp by `comparator` before they run,
    /// as Flink's `CepOperator` does with an `EventComparator` (a stable
    /// sort: equal events keep their arrival order). In event time the
    /// events of one timestamp are sorted when the watermark passes them.
    /// In processing time events then no longer run on arrival: they wait,
    /// stamped with the time they came, until time passes that millisecond
    /// (Flink's processing-time timer at `stamp + 1`): [`Self::next_timer`]
    /// says when, and [`Self::advance_watermark`] (or [`Self::advance_processing_time`]) runs them. Without a
    /// comparator nothing of this costs anything.
    pub fn set_event_comparator(&mut self, comparator: Option<EventComparator<E>>) {
        self.comparator = comparator;
    }

    /// The first match that a skip strategy with `throwExceptionOnMiss`
    /// could not skip past, and its key ([`crate::Pattern::throw_exception_on_miss`]).
    /// Flink fails the job there: a caller reproducing that stops feeding
    /// the operator once this is set. The failed match is not emitted; the
    /// operator goes on as if the strategy had skipped nothing.
    pub fn failure(&self) -> Option<&Failure<K>> {
        self.failure.as_ref()
    }

    /// Records the NFA's failure, if it has one, for the key of `slot`.
    /// On every event's path: one test of a field that is always clear for
    /// patterns without `throwExceptionOnMiss`.
    #[inline(always)]
    fn check_failure<S: OutputSink<K, E>>(&mut self, slot: u32, sink: &mut S) {
        if self.buf.has_failure() {
            self.note_failure(slot, sink);
        }
    }

    #[inline(never)]
    fn note_failure<S: OutputSink<K, E>>(&mut self, slot: u32, _sink: &mut S) {
        // The sink has seen it already (`OutputSink::on_failure`).
        if let Some(error) = self.buf.take_failure() {
            if self.failure.is_none() {
                let key = self.keys[slot as usize].key.clone();
                self.failure = Some(Failure { key, error });
            }
        }
    }

    /// Sets the current processing time, which conditions read with
    /// [`crate::Context::current_processing_time`] (Flink's
    /// `currentProcessingTime()`; the core has no clock: drive this from the
    /// caller's injectable clock). In processing time the operator also
    /// sets it from each event's stamp and each `advance_time`.
    pub fn set_processing_time(&mut self, now: Timestamp) {
        self.buf.set_processing_time(now.as_millis());
    }

    /// The current processing time as last given ([`Timestamp::MIN`]
    /// before any): set by [`Self::set_processing_time`], and in processing
    /// time by each event's stamp and each advance.
    pub fn current_processing_time(&self) -> Timestamp {
        Timestamp::from_millis(self.buf.processing_time())
    }

    /// The compiled pattern.
    pub fn nfa(&self) -> &Arc<Nfa<E>> {
        &self.nfa
    }

    /// Event time: the current watermark ([`Watermark::MIN`] at first).
    pub fn current_watermark(&self) -> Watermark {
        Watermark::from_millis(self.current)
    }

    /// The earliest pending timer, if any: the time from which
    /// [`Self::advance_watermark`] (event time) or
    /// [`Self::advance_processing_time`] has work to do.
    pub fn next_timer(&self) -> Option<Timestamp> {
        let waiting = match self.domain {
            TimeDomain::EventTime => self.waiting.peek_ts(),
            // Only with a comparator: events wait for their millisecond to pass.
            TimeDomain::ProcessingTime => self.waiting.peek_ts().map(|t| t.saturating_add(1)),
        };
        let next = match (waiting, self.window_timers.peek()) {
            (Some(a), Some(b)) => Some(a.min(b.0)),
            (a, b) => a.or(b.map(|t| t.0)),
        };
        next.map(Timestamp::from_millis)
    }

    /// Number of keys holding state (partial matches or buffered events).
    pub fn num_keys(&self) -> usize {
        self.keys.len()
    }

    /// Number of partial matches over all keys (start runs excluded).
    pub fn num_partial_matches(&self) -> usize {
        self.keys
            .iter()
            .map(|(_, k)| k.state.num_partial_matches())
            .sum()
    }

    /// Events and nodes held by the shared buffer.
    pub fn buffer_stats(&self) -> (usize, usize) {
        (self.buf.num_events(), self.buf.num_nodes())
    }

    /// Event time: whether `timestamp` is at or behind the watermark (late);
    /// otherwise it counts as received.
    fn is_late(&mut self, timestamp: i64) -> bool {
        if self.domain != TimeDomain::EventTime {
            return false;
        }
        if timestamp <= self.current {
            return true;
        }
        self.max_ts = self.max_ts.max(timestamp);
        false
    }

    /// The key's hash, and its slot if it has one.
    fn lookup<Q>(&self, key: &Q) -> (u64, Option<u32>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let keys = &self.keys;
        let found = self
            .index
            .find(hash, |s| keys[s as usize].key.borrow() == key);
        (hash, found)
    }

    /// The key's slot; `None` (and no new key) when `event` can be skipped.
    fn slot_or_skip<Q>(&mut self, key: &Q, event: &E, timestamp: i64) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        // No key has state (a pattern whose starts are rare, one of many
        // over a stream): an event that cannot start needs no lookup.
        if self.keys.len() == 0 && self.skippable(event, timestamp) {
            return None;
        }
        match self.lookup(key) {
            (_, Some(slot)) => Some(slot),
            _ if self.skippable(event, timestamp) => None,
            (hash, None) => Some(self.insert_key(hash, key.to_owned())),
        }
    }

    /// Whether an event for a key without state changes nothing (see
    /// [`Self::set_bounded_out_of_orderness`]).
    fn skippable(&self, event: &E, timestamp: i64) -> bool {
        if self.starts_until.is_some() {
            // Draining: a key without state has nothing to continue.
            return true;
        }
        // With a comparator an event that a later one ties with may be
        // sorted after it (and the key have state by then): only events
        // older than any that can still come in time are skipped.
        let ties = i64::from(self.comparator.is_some());
        let in_order = match self.domain {
            TimeDomain::ProcessingTime => self.comparator.is_none(),
            TimeDomain::EventTime => self
                .out_of_orderness
                .is_some_and(|d| timestamp <= self.max_ts.saturating_sub(d).saturating_sub(ties)),
        };
        in_order && !self.nfa.may_start(event)
    }

    fn insert_key(&mut self, hash: u64, key: K) -> u32 {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let slot = self.keys.insert(KeyEntry {
            key,
            gen,
            queued: 0,
            state: self.nfa.initial_state(),
        }) as u32;
        let (keys, hasher) = (&self.keys, &self.hasher);
        self.index
            .insert(hash, slot, |s| hasher.hash_one(&keys[s as usize].key));
        slot
    }

    fn register_window_timer(&mut self, slot: u32, at: i64) {
        let gen = self.keys[slot as usize].gen;
        self.window_timers.push((at, slot, gen));
    }

    fn drop_if_idle(&mut self, slot: u32) {
        let e = &self.keys[slot as usize];
        if e.queued == 0 && e.state.is_idle() {
            let hash = self.hasher.hash_one(&e.key);
            self.index.remove(hash, slot);
            let e = self.keys.remove(slot as usize);
            // Keep the run vector for the next key instead of freeing it.
            e.state.recycle(&mut self.buf);
            self.changes.dropped(slot, e.key);
        }
    }

    /// Receives one event of `key`. In event time `timestamp` is the event's
    /// time: the event is buffered until the watermark passes it, or reported
    /// late if `timestamp <= watermark`. In processing time `timestamp` is the
    /// current time and the event is processed at once.
    ///
    /// The key is borrowed and cloned only when it is new (`&str` for
    /// `Box<str>` keys: no allocation per event). The event is moved in
    /// (`E`) or borrowed (`&E`, see [`IntoEvent`]) and then cloned only when
    /// the operator keeps it: an event that a key without state can skip is
    /// not (when many patterns read one stream, most are not).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use ferrocep_core::operator::{CepOperator, TimeDomain};
    /// # use ferrocep_core::output::Collector;
    /// # use ferrocep_core::pattern::Pattern;
    /// # use ferrocep_core::time::{Timestamp, Watermark};
    /// let nfa = Pattern::<char>::begin("a").where_(|c: &char| *c == 'a').compile()?;
    /// let mut op = CepOperator::<String, char>::new(Arc::new(nfa), TimeDomain::EventTime);
    /// let mut out = Collector::default();
    /// op.process_element("k1", 'a', Timestamp::from_millis(1), &mut out); // moved
    /// op.process_element("k2", &'a', Timestamp::from_millis(2), &mut out); // borrowed
    /// op.advance_watermark(Watermark::from_millis(2), &mut out);
    /// assert_eq!(out.matches().len(), 2);
    /// # Ok::<(), ferrocep_core::PatternError>(())
    /// ```
    pub fn process_element<Q, V, S>(
        &mut self,
        key: &Q,
        event: V,
        timestamp: Timestamp,
        sink: &mut S,
    ) where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        V: IntoEvent<E>,
        S: OutputSink<K, E>,
    {
        let timestamp = timestamp.as_millis();
        if self.is_late(timestamp) {
            if self.starts_until.is_none() {
                sink.on_late(
                    &key.to_owned(),
                    event.as_event(),
                    Timestamp::from_millis(timestamp),
                );
            }
            return;
        }
        if let Some(slot) = self.slot_or_skip(key, event.as_event(), timestamp) {
            self.process_in_slot(slot, event.into_event(), timestamp, sink);
        }
    }

    /// Feeds a batch: calls `feed` with the operator for each item of
    /// `batch`, in order, and meanwhile starts loading the state of the keys
    /// (`key_of`) a few items ahead, so that, when the keys' state is larger
    /// than the caches, the memory latency of a key's lookup overlaps with
    /// the items before it. `feed` calls [`Self::process_element`] for the
    /// item, and may advance the watermark before it; whatever it does, the
    /// result is that of calling `feed` on each item in a loop.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use ferrocep_core::operator::{CepOperator, TimeDomain};
    /// # use ferrocep_core::output::Collector;
    /// # use ferrocep_core::pattern::Pattern;
    /// # use ferrocep_core::time::{Timestamp, Watermark};
    /// let nfa = Pattern::<char>::begin("a").where_(|c: &char| *c == 'a').compile()?;
    /// let mut op = CepOperator::<u64, char>::new(Arc::new(nfa), TimeDomain::EventTime);
    /// let mut batch = vec![(1, 'a', Timestamp::from_millis(1)), (2, 'b', Timestamp::from_millis(2))];
    /// let mut out = Collector::default();
    /// op.process_batch(&mut batch, |(key, _, _)| key, |op, (key, event, ts)| {
    ///     op.process_element(key, *event, *ts, &mut out);
    /// });
    /// op.advance_watermark(Watermark::MAX, &mut out);
    /// assert_eq!(out.matches().len(), 1);
    /// # Ok::<(), ferrocep_core::PatternError>(())
    /// ```
    pub fn process_batch<T, Q>(
        &mut self,
        batch: &mut [T],
        key_of: impl Fn(&T) -> &Q,
        mut feed: impl FnMut(&mut Self, &mut T),
    ) where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        let prefetch = self.prefetch_pays();
        // The hash of item `i` from its first stage, at `i % 8`, for its second.
        let mut hashes = [0u64; 8];
        for j in 0..batch.len() {
            // Keys are looked up a few events ahead, so that their memory
            // loads while the events before them run.
            if prefetch {
                let i = j + PREFETCH_INDEX_AHEAD;
                if let Some(t) = batch.get(i) {
                    let hash = self.hasher.hash_one(key_of(t));
                    hashes[i % 8] = hash;
                    self.prefetch_hashed(hash, Prefetch::Index);
                }
                let i = j + PREFETCH_STATE_AHEAD;
                if let Some(t) = batch.get(i) {
                    let hash = if i >= PREFETCH_INDEX_AHEAD {
                        hashes[i % 8]
                    } else {
                        self.hasher.hash_one(key_of(t))
                    };
                    self.prefetch_hashed(hash, Prefetch::State);
                }
            }
            feed(self, &mut batch[j]);
        }
    }

    /// Whether [`Self::prefetch_hashed`] is worth its cost: the keys' state is
    /// larger than the caches.
    fn prefetch_pays(&self) -> bool {
        self.keys.len() >= PREFETCH_MIN_KEYS
    }

    fn process_in_slot<S: OutputSink<K, E>>(
        &mut self,
        slot: u32,
        event: E,
        timestamp: i64,
        sink: &mut S,
    ) {
        self.changes.mark(slot);
        match self.domain {
            TimeDomain::EventTime => {
                // The first waiting event runs when the watermark passes it,
                // usually right after this one arrives: its nodes, asked for
                // when it arrived, have loaded, so their events can.
                if let Some(e) = self
                    .waiting
                    .front_slot()
                    .and_then(|next| self.keys.get(next as usize))
                {
                    e.state.prefetch_events(&self.buf);
                }
                let entry = &mut self.keys[slot as usize];
                entry.queued += 1;
                self.waiting.push(timestamp, slot, entry.gen, event);
                // The event runs when the watermark passes it, usually after
                // the next event: its partial matches' nodes load meanwhile.
                entry.state.prefetch_nodes(&self.buf);
            }
            TimeDomain::ProcessingTime if self.comparator.is_some() => {
                if timestamp > self.current {
                    self.current = timestamp;
                }
                let entry = &mut self.keys[slot as usize];
                entry.queued += 1;
                self.waiting.push(self.current, slot, entry.gen, event);
            }
            TimeDomain::ProcessingTime => {
                if timestamp > self.current {
                    self.current = timestamp;
                }
                self.buf.set_processing_time(self.current);
                let nfa = self.nfa.clone();
                let entry = &mut self.keys[slot as usize];
                let mut out = KeyedOut {
                    key: &entry.key,
                    timestamp,
                    sink,
                };
                nfa.advance_time(&mut self.buf, &mut entry.state, timestamp, &mut out);
                let starts = self.starts_until.is_none();
                let new_start = nfa.process_gated(
                    &mut self.buf,
                    &mut entry.state,
                    event,
                    timestamp,
                    &mut out,
                    starts,
                );
                if new_start {
                    if let Some(w) = nfa.window() {
                        self.register_window_timer(
                            slot,
                            timestamp.saturating_add(w).saturating_add(1),
                        );
                    }
                }
                self.check_failure(slot, sink);
                self.drop_if_idle(slot);
            }
        }
    }

    /// Event time: advances the watermark to `watermark` (never back), runs
    /// the events it passes and fires every timer at or before it.
    #[inline]
    pub fn advance_watermark<S: OutputSink<K, E>>(&mut self, watermark: Watermark, sink: &mut S) {
        self.advance_time(watermark.as_millis(), sink);
    }

    /// Processing time: advances the operator's clock to `now` (never back)
    /// and fires every timer at or before it.
    #[inline]
    pub fn advance_processing_time<S: OutputSink<K, E>>(&mut self, now: Timestamp, sink: &mut S) {
        self.advance_time(now.as_millis(), sink);
    }

    /// Advances the watermark (event time) or the processing time to `time`
    /// and fires every timer at or before it.
    fn advance_time<S: OutputSink<K, E>>(&mut self, time: i64, sink: &mut S) {
        if time > self.current {
            self.current = time;
        }
        if self.domain == TimeDomain::ProcessingTime {
            self.buf.set_processing_time(self.current);
        }
        let now = self.current;
        // In processing time (with a comparator) events wait until their
        // millisecond has passed.
        let due = match self.domain {
            TimeDomain::EventTime => now,
            TimeDomain::ProcessingTime => now.saturating_sub(1),
        };
        if self.waiting.peek_ts().is_some_and(|t| t <= due) {
            self.run_waiting(now, due, sink);
        }
        while let Some((_, slot, gen)) = self.window_timers.pop_due(now) {
            // The keys of the next timers load while this one fires, due or
            // not: timers fire in this order, and with a watermark per event
            // usually one fires per call, so that waiting until they are due
            // would leave every key to be read from memory when it fires
            // (the keys of paid orders too, which only find their key gone).
            // Each stage reads what the one before loaded, two timers apart:
            // the key, then its index line and nodes, then the nodes'
            // events, then what their output reads.
            let timers = &self.window_timers.in_order;
            if let Some(&(_, ahead, _)) = timers.get(TIMER_PREFETCH_AHEAD) {
                let p = self.keys.addr(ahead as usize);
                prefetch(p);
                prefetch(p.wrapping_add(64));
                prefetch(p.wrapping_add(128));
            }
            // A key whose timer fires is usually dropped: its index line.
            let live = |i: usize| {
                let &(_, slot, gen) = timers.get(i)?;
                self.keys.get(slot as usize).filter(|e| e.gen == gen)
            };
            if let Some(e) = live(TIMER_PREFETCH_AHEAD - 2) {
                let hash = self.hasher.hash_one(&e.key);
                prefetch(self.index.bucket_ptr(hash).cast());
                e.state.prefetch_nodes(&self.buf);
            }
            if let Some(e) = live(TIMER_PREFETCH_AHEAD - 4) {
                e.state.prefetch_events(&self.buf);
            }
            if let (Some(f), Some(e)) = (self.nfa.event_prefetch, live(0)) {
                e.state.prefetch_event_data(&self.buf, f);
            }
            if self.keys.get(slot as usize).is_some_and(|e| e.gen == gen) {
                self.advance_key(slot, now, sink);
            }
        }
    }

    /// Runs the waiting events up to `due`, then advances their keys to `now`.
    fn run_waiting<S: OutputSink<K, E>>(&mut self, now: i64, due: i64, sink: &mut S) {
        let nfa = self.nfa.clone();
        let window = nfa.window();
        let mut touched = std::mem::take(&mut self.touched);
        if let Some(cmp) = self.comparator.clone() {
            let mut batch = std::mem::take(&mut self.batch);
            while let Some(w) = self.waiting.pop_due(due) {
                let ts = w.ts;
                batch.push(w);
                while self.waiting.peek_ts() == Some(ts) {
                    match self.waiting.pop_due(due) {
                        Some(w) => batch.push(w),
                        None => break,
                    }
                }
                batch.sort_by(|a, b| cmp(&a.event, &b.event));
                for w in batch.drain(..) {
                    self.run_one(&nfa, window, w, &mut touched, sink);
                }
            }
            self.batch = batch;
        } else {
            while let Some(w) = self.waiting.pop_due(due) {
                // A key with waiting events is never dropped, so the slot is live.
                // The next event's nodes' events, if it runs now too (else
                // the next call of `process_in_slot` loads them: its nodes
                // were only just asked for).
                if self.waiting.peek_ts().is_some_and(|t| t <= due) {
                    if let Some(next) = self.waiting.front_slot() {
                        if let Some(e) = self.keys.get(next as usize) {
                            e.state.prefetch_events(&self.buf);
                        }
                    }
                }
                // This key's events loaded meanwhile: their text, which a
                // match reads at its end.
                if let (Some(f), Some(e)) = (nfa.event_prefetch, self.keys.get(w.slot as usize)) {
                    e.state.prefetch_event_data(&self.buf, f);
                }
                self.run_one(&nfa, window, w, &mut touched, sink);
            }
        }
        for &(slot, gen) in &touched {
            if self.keys.get(slot as usize).is_some_and(|e| e.gen == gen) {
                self.advance_key(slot, now, sink);
            }
        }
        touched.clear();
        self.touched = touched;
    }

    /// Runs one waiting event: its key advances to its timestamp, then
    /// processes it.
    #[inline(always)]
    fn run_one<S: OutputSink<K, E>>(
        &mut self,
        nfa: &Nfa<E>,
        window: Option<i64>,
        w: Waiting<E>,
        touched: &mut Vec<(u32, u32)>,
        sink: &mut S,
    ) {
        let entry = &mut self.keys[w.slot as usize];
        debug_assert_eq!(entry.gen, w.gen);
        entry.queued -= 1;
        let mut out = KeyedOut {
            key: &entry.key,
            timestamp: w.ts,
            sink: &mut *sink,
        };
        // Time advances to each event's timestamp before it runs. For a
        // second event of the same timestamp this finds nothing to do, as
        // nothing started before it can expire at the same time.
        nfa.advance_time(&mut self.buf, &mut entry.state, w.ts, &mut out);
        let starts = self.starts_until.is_none_or(|c| w.seq < c);
        let new_start = nfa.process_gated(
            &mut self.buf,
            &mut entry.state,
            w.event,
            w.ts,
            &mut out,
            starts,
        );
        if touched.last() != Some(&(w.slot, w.gen)) {
            touched.push((w.slot, w.gen));
        }
        if new_start {
            if let Some(win) = window {
                // Processing-time timers fire a millisecond later.
                let extra = i64::from(self.domain == TimeDomain::ProcessingTime);
                self.window_timers.push((
                    w.ts.saturating_add(win).saturating_add(extra),
                    w.slot,
                    w.gen,
                ));
            }
        }
        self.check_failure(w.slot, sink);
    }

    /// Advances one key to `now` (its window timer fired, or it ran events).
    /// Inlined into its two callers, as it was before change tracking made
    /// it larger (a call per timer costs ~0.6% of `ferrocep match`).
    #[inline(always)]
    fn advance_key<S: OutputSink<K, E>>(&mut self, slot: u32, now: i64, sink: &mut S) {
        self.changes.mark(slot);
        let entry = &mut self.keys[slot as usize];
        let mut out = KeyedOut {
            key: &entry.key,
            timestamp: now,
            sink,
        };
        self.nfa
            .advance_time(&mut self.buf, &mut entry.state, now, &mut out);
        self.check_failure(slot, sink);
        self.drop_if_idle(slot);
    }
}

type Timer = (i64, u32, u32);

/// Keys from which [`CepOperator::prefetch_pays`]: ~2 MB of key state, more
/// than the L2 caches of most machines.
const PREFETCH_MIN_KEYS: usize = 12_000;

/// How many items ahead [`CepOperator::process_batch`] prefetches where a
/// key is in the index, and then the key's state.
const PREFETCH_INDEX_AHEAD: usize = 6;
const PREFETCH_STATE_AHEAD: usize = 3;

/// How many timers ahead the keys of the next timers are prefetched.
const TIMER_PREFETCH_AHEAD: usize = 6;

/// A min-queue of timers that is O(1) while timers arrive in time order (a
/// deque) and falls back to a heap for those that do not.
#[derive(Default)]
struct TimerQueue {
    in_order: VecDeque<Timer>,
    out_of_order: BinaryHeap<Reverse<Timer>>,
}

impl TimerQueue {
    fn push(&mut self, t: Timer) {
        match self.in_order.back() {
            Some(last) if t < *last => self.out_of_order.push(Reverse(t)),
            _ => self.in_order.push_back(t),
        }
    }

    fn peek(&self) -> Option<Timer> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(Reverse(b))) => Some(*a.min(b)),
            (Some(a), None) => Some(*a),
            (None, Some(Reverse(b))) => Some(*b),
            (None, None) => None,
        }
    }

    /// Every timer, in no particular order.
    fn iter(&self) -> impl Iterator<Item = &Timer> {
        self.in_order
            .iter()
            .chain(self.out_of_order.iter().map(|r| &r.0))
    }

    fn pop_due(&mut self, now: i64) -> Option<Timer> {
        if self.peek()?.0 <= now {
            self.pop()
        } else {
            None
        }
    }

    fn pop(&mut self) -> Option<Timer> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(Reverse(b))) if b < a => self.out_of_order.pop().map(|r| r.0),
            (Some(_), _) => self.in_order.pop_front(),
            (None, _) => self.out_of_order.pop().map(|r| r.0),
        }
    }
}

/// An event waiting for the watermark.
struct Waiting<E> {
    ts: i64,
    /// Arrival order, for events of equal timestamps.
    seq: u64,
    slot: u32,
    gen: u32,
    event: E,
}

impl<E> Waiting<E> {
    fn order(&self) -> (i64, u64) {
        (self.ts, self.seq)
    }
}

/// Min-heap entry of [`EventQueue`].
struct Late<E>(Waiting<E>);

impl<E> PartialEq for Late<E> {
    fn eq(&self, other: &Self) -> bool {
        self.0.order() == other.0.order()
    }
}
impl<E> Eq for Late<E> {}
impl<E> PartialOrd for Late<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Late<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.order().cmp(&self.0.order())
    }
}

/// Events of all keys in (timestamp, arrival) order: O(1) for events that
/// arrive in time order (a deque), a heap for those that do not.
struct EventQueue<E> {
    in_order: VecDeque<Waiting<E>>,
    out_of_order: BinaryHeap<Late<E>>,
    next_seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            in_order: VecDeque::new(),
            out_of_order: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    #[inline]
    fn push(&mut self, ts: i64, slot: u32, gen: u32, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let w = Waiting {
            ts,
            seq,
            slot,
            gen,
            event,
        };
        match self.in_order.back() {
            Some(last) if ts < last.ts => self.out_of_order.push(Late(w)),
            _ => self.in_order.push_back(w),
        }
    }

    /// Puts back an event of a restored key, with its arrival number.
    fn push_restored(&mut self, ts: i64, seq: u64, slot: u32, gen: u32, event: E) {
        self.next_seq = self.next_seq.max(seq.saturating_add(1));
        let w = Waiting {
            ts,
            seq,
            slot,
            gen,
            event,
        };
        // Arrival numbers of restored keys interleave: order by both.
        match self.in_order.back() {
            Some(last) if w.order() < last.order() => self.out_of_order.push(Late(w)),
            _ => self.in_order.push_back(w),
        }
    }

    /// Drops the events of the key of (`slot`, `gen`).
    fn remove_key(&mut self, slot: u32, gen: u32) {
        let other = |w: &Waiting<E>| w.slot != slot || w.gen != gen;
        self.in_order.retain(other);
        self.out_of_order.retain(|l| other(&l.0));
    }

    /// Every waiting event, in no particular order.
    fn iter(&self) -> impl Iterator<Item = &Waiting<E>> {
        self.in_order
            .iter()
            .chain(self.out_of_order.iter().map(|l| &l.0))
    }

    /// The slot of the next in-order event, if any (for prefetching).
    fn front_slot(&self) -> Option<u32> {
        self.in_order.front().map(|w| w.slot)
    }

    fn peek_ts(&self) -> Option<i64> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(b)) => Some(a.ts.min(b.0.ts)),
            (Some(a), None) => Some(a.ts),
            (None, Some(b)) => Some(b.0.ts),
            (None, None) => None,
        }
    }

    fn pop_due(&mut self, now: i64) -> Option<Waiting<E>> {
        let from_heap = match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(b)) => b.0.order() < a.order(),
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (None, None) => return None,
        };
        if from_heap {
            if self.out_of_order.peek()?.0.ts <= now {
                return self.out_of_order.pop().map(|l| l.0);
            }
        } else if self.in_order.front()?.ts <= now {
            return self.in_order.pop_front();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Collector, Output};
    use crate::pattern::Pattern;

    type Ev = (&'static str, i64);

    fn order_nfa(window: i64) -> Arc<Nfa<Ev>> {
        Arc::new(
            Pattern::<Ev>::begin("create")
                .where_(|e: &Ev| e.0 == "create")
                .followed_by("pay")
                .where_(|e: &Ev| e.0 == "pay")
                .within_ms(window)
                .compile()
                .unwrap(),
        )
    }

    #[test]
    fn event_time_match_timeout_and_late() {
        let mut op = CepOperator::new(order_nfa(10_000), TimeDomain::EventTime);
        let mut out = Collector::default();
        let mut wm = crate::time::BoundedOutOfOrderness::new(Duration::from_millis(0));
        for (key, ev) in [
            ("o1", ("create", 1_000)),
            ("o2", ("create", 2_000)),
            ("o1", ("pay", 5_000)),
            ("o3", ("pay", 1_500)), // behind the watermark: late
        ] {
            op.process_element(&key, ev, Timestamp::from_millis(ev.1), &mut out);
            let w = wm.on_event(Timestamp::from_millis(ev.1));
            op.advance_watermark(w, &mut out);
        }
        assert!(matches!(out.outputs[0], Output::Late { key: "o3", .. }));
        // The stream goes quiet; the watermark alone completes o1 and times o2 out on time.
        op.advance_watermark(Watermark::from_millis(11_999), &mut out);
        assert_eq!(out.matches().len(), 1);
        assert!(out.timeouts().is_empty());
        op.advance_watermark(Watermark::from_millis(12_000), &mut out);
        assert_eq!(out.timeouts().len(), 1);
        assert_eq!(out.timeouts()[0].1, Timestamp::from_millis(12_000));
        assert_eq!(op.num_keys(), 0, "idle keys are dropped");
        assert_eq!(op.buffer_stats(), (0, 0));
    }

    #[test]
    fn processing_time_timeouts_fire_from_timers() {
        let mut op = CepOperator::new(order_nfa(1_500), TimeDomain::ProcessingTime);
        let mut out = Collector::default();
        op.process_element(
            &"u1",
            ("create", 0),
            Timestamp::from_millis(1_000),
            &mut out,
        );
        op.process_element(
            &"u2",
            ("create", 0),
            Timestamp::from_millis(2_000),
            &mut out,
        );
        assert_eq!(op.next_timer(), Some(Timestamp::from_millis(2_501)));
        op.advance_processing_time(Timestamp::from_millis(2_500), &mut out);
        assert!(out.timeouts().is_empty());
        op.advance_processing_time(Timestamp::from_millis(2_501), &mut out);
        assert_eq!(out.timeouts().len(), 1);
        assert_eq!(out.timeouts()[0].1, Timestamp::from_millis(2_500));
        op.process_element(&"u2", ("pay", 0), Timestamp::from_millis(3_000), &mut out);
        assert_eq!(out.matches().len(), 1);
    }

    #[test]
    fn events_that_cannot_start_skip_keys_without_state() {
        let mut op = CepOperator::new(order_nfa(10_000), TimeDomain::EventTime);
        op.set_bounded_out_of_orderness(Duration::from_millis(5));
        let mut out = Collector::default();
        // pay@20 is not 5 ms behind the newest timestamp: create@16 may still
        // come, so the key is kept.
        op.process_element(&"o1", ("pay", 20), Timestamp::from_millis(20), &mut out);
        op.process_element(&"o1", ("create", 16), Timestamp::from_millis(16), &mut out);
        // pay@14 is 6 ms behind: nothing older can come for o2, and a pay
        // cannot start a match, so o2 is not created.
        op.process_element(&"o2", ("pay", 14), Timestamp::from_millis(14), &mut out);
        assert_eq!(op.num_keys(), 1);
        // A key with state still takes every event.
        op.process_element(&"o1", ("pay", 15), Timestamp::from_millis(15), &mut out);
        op.advance_watermark(Watermark::MAX, &mut out);
        // Flink runs o1 in timestamp order: pay@15 (ignored), create@16, pay@20.
        assert_eq!(
            out.matches(),
            vec![vec![
                ("create".to_string(), vec![("create", 16)]),
                ("pay".to_string(), vec![("pay", 20)]),
            ]]
        );
        assert_eq!(op.num_keys(), 0);

        let mut op = CepOperator::new(order_nfa(10_000), TimeDomain::ProcessingTime);
        op.process_element(&"o3", ("pay", 0), Timestamp::from_millis(1), &mut out);
        assert_eq!(op.num_keys(), 0);
        op.process_element(&"o3", ("create", 0), Timestamp::from_millis(2), &mut out);
        assert_eq!(op.num_keys(), 1);
    }

    /// `process_batch` (which prefetches once there are many keys) gives
    /// what feeding the same events one by one gives; moved and borrowed
    /// events alike.
    #[test]
    fn batches_match_one_by_one() {
        let keys = PREFETCH_MIN_KEYS as u64 + 500;
        let mut events: Vec<(u64, Ev, Timestamp)> = Vec::new();
        for i in 0..2 * keys {
            let (key, ts) = ((i * 7) % keys, i as i64 + 1);
            let kind = if i < keys { "create" } else { "pay" };
            // Odd keys are never paid: they time out.
            if i < keys || key % 2 == 0 {
                events.push((key, (kind, ts), Timestamp::from_millis(ts)));
            }
        }
        let window = 2 * keys as i64;
        let mut one = CepOperator::new(order_nfa(window), TimeDomain::EventTime);
        let mut out_one = Collector::default();
        for (k, e, ts) in &events {
            one.process_element(k, *e, *ts, &mut out_one);
        }
        let mut batched = CepOperator::new(order_nfa(window), TimeDomain::EventTime);
        let mut out_batched = Collector::default();
        for chunk in events.chunks_mut(1000) {
            batched.process_batch(
                chunk,
                |(k, _, _)| k,
                |op, (k, e, ts)| {
                    op.process_element(k, &*e, *ts, &mut out_batched);
                },
            );
        }
        assert!(batched.prefetch_pays());
        one.advance_watermark(Watermark::MAX, &mut out_one);
        batched.advance_watermark(Watermark::MAX, &mut out_batched);
        assert_eq!(out_one.matches(), out_batched.matches());
        assert_eq!(out_one.timeouts(), out_batched.timeouts());
        assert!(!out_one.matches().is_empty() && !out_one.timeouts().is_empty());
    }

    #[test]
    fn stopped_starts_only_continue_what_is_pending() {
        let mut op = CepOperator::new(order_nfa(10_000), TimeDomain::EventTime);
        let mut out = Collector::default();
        // Received before the stop, still waiting for the watermark: starts.
        op.process_element(
            &"o1",
            ("create", 1_000),
            Timestamp::from_millis(1_000),
            &mut out,
        );
        let from = op.stop_starts();
        assert_eq!(op.starts_stopped(), Some(from));
        // After the stop: a create of a waiting key takes no start, a key
        // without state is not created, a late event is not reported.
        op.process_element(
            &"o1",
            ("create", 1_500),
            Timestamp::from_millis(1_500),
            &mut out,
        );
        op.process_element(
            &"o2",
            ("create", 1_200),
            Timestamp::from_millis(1_200),
            &mut out,
        );
        assert_eq!(op.num_keys(), 1);
        op.process_element(
            &"o1",
            ("pay", 2_000),
            Timestamp::from_millis(2_000),
            &mut out,
        );
        op.advance_watermark(Watermark::from_millis(2_000), &mut out);
        op.process_element(&"o3", ("create", 5), Timestamp::from_millis(5), &mut out);
        assert!(out
            .outputs
            .iter()
            .all(|o| !matches!(o, Output::Late { .. })));
        assert_eq!(
            out.matches(),
            vec![vec![
                ("create".to_string(), vec![("create", 1_000)]),
                ("pay".to_string(), vec![("pay", 2_000)]),
            ]]
        );
        assert!(
            op.is_empty(),
            "nothing pending: the draining version is done"
        );

        // Processing time: every event after the stop only continues.
        let mut op = CepOperator::new(order_nfa(10_000), TimeDomain::ProcessingTime);
        let mut out = Collector::default();
        op.process_element(&"u1", ("create", 0), Timestamp::from_millis(1), &mut out);
        op.stop_starts();
        op.process_element(&"u1", ("create", 0), Timestamp::from_millis(2), &mut out);
        op.process_element(&"u2", ("create", 0), Timestamp::from_millis(3), &mut out);
        assert_eq!(op.num_partial_matches(), 1);
        op.process_element(&"u1", ("pay", 0), Timestamp::from_millis(4), &mut out);
        assert_eq!(out.matches().len(), 1);
        assert!(op.is_empty());
    }

    #[test]
    fn report_pending_gives_partial_matches_and_waiting_events() {
        let mut op = CepOperator::new(order_nfa(10_000), TimeDomain::EventTime);
        let mut out = Collector::default();
        op.process_element(
            &"o1",
            ("create", 1_000),
            Timestamp::from_millis(1_000),
            &mut out,
        );
        op.advance_watermark(Watermark::from_millis(1_000), &mut out);
        op.process_element(
            &"o2",
            ("create", 3_000),
            Timestamp::from_millis(3_000),
            &mut out,
        );
        op.report_pending(&mut out);
        assert_eq!(out.timeouts().len(), 1, "o1's partial match");
        assert_eq!(
            out.timeouts()[0].1,
            Timestamp::from_millis(1_000),
            "reported at the current time"
        );
        assert!(
            matches!(out.outputs.last(), Some(Output::Late { key: "o2", .. })),
            "o2's event, still waiting"
        );
    }

    #[test]
    fn equal_timestamps_run_in_arrival_order() {
        let nfa = Arc::new(
            Pattern::<Ev>::begin("a")
                .where_(|e: &Ev| e.0 == "a")
                .next("b")
                .where_(|e: &Ev| e.0 == "b")
                .compile()
                .unwrap(),
        );
        let mut op = CepOperator::new(nfa, TimeDomain::EventTime);
        let mut out = Collector::default();
        op.process_element(&"k", ("a", 5), Timestamp::from_millis(5), &mut out);
        op.process_element(&"k", ("b", 5), Timestamp::from_millis(5), &mut out);
        op.process_element(&"k", ("a", 4), Timestamp::from_millis(4), &mut out);
        op.advance_watermark(Watermark::MAX, &mut out);
        // a@4 runs first, then a@5, b@5: one match a@5 b@5.
        assert_eq!(
            out.matches(),
            vec![vec![
                ("a".to_string(), vec![("a", 5)]),
                ("b".to_string(), vec![("b", 5)]),
            ]]
        );
    }
}
