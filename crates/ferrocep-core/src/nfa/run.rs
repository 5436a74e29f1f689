//! Running the NFA: Flink's `NFA.process`, `advanceTime`, `computeNextStates`
//! and `processMatchesAccordingToSkipStrategy`, for one key's [`NfaState`]
//! over a [`SharedBuffer`].
//!
//! Invariants kept from Flink: every event can start a new match (the start
//! run is re-created after each event); reaching a Stop state discards every
//! branch the run produced for that event; under any skip strategy but
//! `no_skip` a completed match waits while a partial match that started
//! earlier is still open.

use std::cell::OnceCell;
use std::cmp::Ordering;
use std::sync::Arc;

use smallvec::SmallVec;

use super::buffer::{EventId, EventIdx, NodeRef, Path, SharedBuffer};
use super::dewey::DeweyNumber;
use super::pq::JavaPq;
use super::{Action, Nfa, StateKind};
use crate::output::MatchRef;
use crate::pattern::{Condition, Context, SkipStrategy};

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
    fn sort_key(&self) -> (i64, i64) {
        match self.start_event() {
            Some(e) => (e.ts, e.seq as i64),
            None => (i64::MAX, i32::MAX as i64),
        }
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

/// Flink `NFAState.COMPUTATION_STATE_COMPARATOR`: by start event, the start
/// run last.
fn run_cmp(a: &Run, b: &Run) -> Ordering {
    a.sort_key().cmp(&b.sort_key())
}

/// Runs stored inline in a key's state.
const INLINE_RUNS: usize = 2;
/// A key's partial matches.
type Partial = JavaPq<Run, INLINE_RUNS>;

/// The matching state of one key (Flink `NFAState` plus the key's
/// per-timestamp event counters of the shared buffer).
#[derive(Clone, Debug)]
pub struct NfaState {
    /// The partial matches in heap order (a `JavaPq`'s array), inline up to
    /// two: the start run and one pending match need no allocation.
    partial: JavaPq<Run, INLINE_RUNS>,
    /// Matches held back by the skip strategy (rare: boxed, `None` when
    /// there are none).
    completed: Option<Box<JavaPq<Run>>>,
    counters: SmallVec<[(i64, u32); 1]>,
}

impl NfaState {
    /// Whether only the start run is left and no match is held back: the
    /// key's state can be dropped.
    pub fn is_idle(&self) -> bool {
        self.completed.is_none()
            && self.partial.len() == 1
            && self.partial.iter().all(|r| r.start_event().is_none())
    }

    /// Returns the state's vectors to the buffer's pool.
    pub fn recycle<E>(self, buf: &mut SharedBuffer<E>) {
        if self.partial.spilled() {
            buf.give_runs(self.partial.into_vec());
        }
        if let Some(c) = self.completed {
            buf.give_runs(c.into_vec());
        }
    }

    /// Number of partial matches, the start run excluded.
    pub fn num_partial_matches(&self) -> usize {
        self.partial
            .iter()
            .filter(|r| r.start_event().is_some())
            .count()
    }

    /// Number of completed matches held back by the skip strategy.
    pub fn num_held_matches(&self) -> usize {
        self.completed.as_ref().map_or(0, |c| c.len())
    }

    /// Starts loading the last node of each partial match, which the key's
    /// next event reads.
    pub(crate) fn prefetch_nodes<E>(&self, buf: &SharedBuffer<E>) {
        for r in self.partial.iter() {
            if let Some(p) = r.prev {
                buf.prefetch_node(p);
            }
        }
    }

    /// Starts loading the events of those nodes (which must be loaded).
    pub(crate) fn prefetch_events<E>(&self, buf: &SharedBuffer<E>) {
        for r in self.partial.iter() {
            if let Some(p) = r.prev {
                buf.prefetch_node_event(p);
            }
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

    /// Stores `q` as the partial matches (inline if they fit).
    fn set_partial<E>(&mut self, buf: &mut SharedBuffer<E>, mut q: Partial) {
        if let Some(v) = q.settle() {
            buf.give_runs(v);
        }
        self.partial = q;
    }

    fn next_event_id(&mut self, ts: i64) -> EventId {
        for (t, c) in self.counters.iter_mut() {
            if *t == ts {
                let seq = *c;
                *c += 1;
                return EventId { ts, seq };
            }
        }
        self.counters.push((ts, 1));
        EventId { ts, seq: 0 }
    }
}

/// Receives what the NFA emits for one key.
pub trait NfaOutput<E> {
    /// A completed match.
    fn on_match(&mut self, m: &MatchRef<'_, E>);
    /// A timed-out partial match; `timeout_at` is `start + window`.
    fn on_timeout(&mut self, m: &MatchRef<'_, E>, timeout_at: i64);
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
                .extract(p, &self.run.version, true)
                .into_iter()
                .next()
                .unwrap_or_default(),
        });
        path.iter()
            .filter(|(s, _)| &*self.nfa.stage_names[*s as usize] == name)
            .map(|(_, e)| self.buf.event(*e))
            .collect()
    }

    fn timestamp(&self) -> i64 {
        self.ts
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
        let mut partial = Partial::default();
        partial.offer(self.start_run(DeweyNumber::new(1)), run_cmp);
        NfaState {
            partial,
            completed: None,
            counters: SmallVec::new(),
        }
    }

    fn start_run(&self, version: DeweyNumber) -> Run {
        Run {
            state: self.start,
            prev: None,
            version,
            start_ts: NO_START.ts,
            start_seq: NO_START.seq,
        }
    }

    fn is_start(&self, r: &Run) -> bool {
        r.state == self.start
    }

    #[inline]
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
            Condition::Simple(f) => f(buf.event(ev)),
            _ => {
                let ctx = Ctx {
                    nfa: self,
                    buf,
                    run,
                    ts,
                    matched: OnceCell::new(),
                };
                cond.eval(buf.event(ev), &ctx)
            }
        }
    }

    /// Feeds one event with timestamp `ts` (Flink `NFA.process`). Returns
    /// whether a new partial match left the start state with a start
    /// timestamp > 0 (the operator then registers a window timer).
    pub fn process(
        &self,
        buf: &mut SharedBuffer<E>,
        st: &mut NfaState,
        event: E,
        ts: i64,
        out: &mut impl NfaOutput<E>,
    ) -> bool {
        let ev = buf.begin_event(event, ts);
        let mut new_start = false;
        let old = std::mem::take(&mut st.partial);
        let mut new_partial = NfaState::new_partial(&old, buf);
        let [mut next, mut retain, potential] = std::mem::take(&mut buf.scratch);
        let mut potential = JavaPq::from_heap_vec(potential);
        let mut runs = old.into_items();
        for run in runs.drain(..) {
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
                            buf.release_node(p, &n.version);
                        }
                    }
                    _ => retain.push(n),
                }
            }
            if discard {
                for r in retain.drain(..) {
                    if let Some(p) = r.prev {
                        buf.release_node(p, &r.version);
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
        }
        if self.skip == SkipStrategy::NoSkip {
            for m in potential.drain() {
                if let Some(p) = m.prev {
                    if let Some(path) = buf.extract(p, &m.version, true).into_iter().next() {
                        self.emit(buf, &path, out, None);
                    }
                    buf.release_node(p, &m.version);
                }
            }
            buf.scratch = [next, retain, potential.into_vec()];
        } else {
            buf.scratch = [next, retain, Vec::new()];
            self.process_matches_by_skip(buf, st, potential, &mut new_partial, out);
        }
        st.set_partial(buf, new_partial);
        buf.finish_event(ev);
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
        st.counters.retain(|(t, _)| *t >= ts);
        // Fast path: nothing can expire. The heap head is the run with the
        // earliest start (the start run sorts last), so if it has not expired
        // none has; and with no expiry and no held match nothing changes.
        let Some(window) = self.window.filter(|w| *w > 0) else {
            if st.completed.is_none() {
                return;
            }
            let mut partial = std::mem::take(&mut st.partial);
            self.process_matches_by_skip(buf, st, JavaPq::default(), &mut partial, out);
            st.set_partial(buf, partial);
            return;
        };
        if st.completed.is_none() {
            match st.partial.peek() {
                Some(head) if self.is_start(head) => return,
                Some(head) if head.start_ts() >= 0 && ts.wrapping_sub(head.start_ts()) < window => {
                    return
                }
                None => return,
                _ => {}
            }
        }
        let old = std::mem::take(&mut st.partial);
        let mut new_partial = NfaState::new_partial(&old, buf);
        let mut potential: JavaPq<Run> = JavaPq::default();
        let mut runs = old.into_items();
        for run in runs.drain(..) {
            let timed_out = match self.window {
                Some(w) => !self.is_start(&run) && w > 0 && ts.wrapping_sub(run.start_ts()) >= w,
                None => false,
            };
            if !timed_out {
                new_partial.offer(run, run_cmp);
                continue;
            }
            if self.states[run.state as usize].kind == StateKind::Pending {
                potential.offer(run, run_cmp);
                continue;
            }
            if let Some(p) = run.prev {
                let at = run.start_ts().wrapping_add(self.window.unwrap_or(0));
                if let Some(path) = buf.extract(p, &run.version, true).into_iter().next() {
                    self.emit(buf, &path, out, Some(at));
                }
                buf.release_node(p, &run.version);
            }
        }
        if runs.spilled() {
            buf.give_runs(runs.into_vec());
        }
        self.process_matches_by_skip(buf, st, potential, &mut new_partial, out);
        st.set_partial(buf, new_partial);
    }

    fn emit(
        &self,
        buf: &SharedBuffer<E>,
        path: &[(u32, EventIdx)],
        out: &mut impl NfaOutput<E>,
        timeout_at: Option<i64>,
    ) {
        let events: SmallVec<[(u32, &E); 8]> =
            path.iter().map(|(s, e)| (*s, buf.event(*e))).collect();
        let m = MatchRef::new(&self.stage_names, &events);
        match timeout_at {
            None => out.on_match(&m),
            Some(at) => out.on_timeout(&m, at),
        }
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
        if st.completed.is_none() && potential.len() <= 1 {
            // Flink adds the match to the empty completed queue and takes it
            // straight out again unless a partial match started before it.
            if let Some(m) = potential.poll(run_cmp) {
                let held = partial
                    .peek()
                    .is_some_and(|p| run_cmp(&m, p) == Ordering::Greater);
                if held {
                    let mut c = Box::new(JavaPq::from_heap_vec(buf.take_runs()));
                    c.offer(m, run_cmp);
                    st.completed = Some(c);
                } else {
                    self.complete(buf, partial, None, m, out);
                }
            }
            self.recycle_potential(buf, potential);
            return;
        }
        let mut completed = st
            .completed
            .take()
            .unwrap_or_else(|| Box::new(JavaPq::from_heap_vec(buf.take_runs())));
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
            st.completed = Some(completed);
        }
    }

    fn recycle_potential(&self, buf: &mut SharedBuffer<E>, potential: JavaPq<Run>) {
        if buf.scratch[2].capacity() == 0 {
            buf.scratch[2] = potential.into_vec();
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
            Some(p) => buf.extract(p, &m.version, false),
            None => Default::default(),
        };
        if let Some(pid) = self.pruning_id(buf, &paths) {
            self.prune(buf, partial, pid);
            if let Some(c) = completed {
                self.prune(buf, c, pid);
            }
        }
        if let Some(first) = paths.first() {
            self.emit(buf, first, out, None);
        }
        if let Some(p) = m.prev {
            buf.release_node(p, &m.version);
        }
    }

    fn pruning_id(&self, buf: &SharedBuffer<E>, paths: &[Path]) -> Option<EventId> {
        let id = |e: EventIdx| buf.event_entry(e).id();
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
                buf.release_node(p, &r.version);
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
        stack.push(run.state);
        while let Some(s) = stack.pop() {
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
                        buf.lock_node(p, &n.version);
                    }
                    result.push(n);
                }
                Action::Take => {
                    let current_version = run.version.increase(take_to_visit.max(0) as u32);
                    let next_version = current_version.add_stage();
                    take_to_visit -= 1;
                    if buf.event_entry(ev).id().seq == u32::MAX {
                        let id = st.next_event_id(ts);
                        buf.set_event_id(ev, id);
                    }
                    let event_id = buf.event_entry(ev).id();
                    let stage = self.states[source as usize].stage;
                    let entry = buf.put(stage, ev, run.prev, &current_version);
                    let start = if is_start { event_id } else { run.start() };
                    let n = Run {
                        state: target,
                        prev: Some(entry),
                        version: next_version.clone(),
                        start_ts: start.ts,
                        start_seq: start.seq,
                    };
                    buf.lock_node(entry, &n.version);
                    result.push(n);
                    if let Some(fin) = self.find_final_after_proceed(buf, target, ev, &run, ts) {
                        let n = Run {
                            state: fin,
                            prev: Some(entry),
                            version: next_version,
                            start_ts: start.ts,
                            start_seq: start.seq,
                        };
                        buf.lock_node(entry, &n.version);
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
            buf.release_node(p, &run.version);
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

    /// The shared buffer (for assertions on what is held).
    pub fn buffer(&self) -> &SharedBuffer<E> {
        &self.buf
    }
}

#[cfg(test)]
mod size_tests {
    /// Every key holds its runs inline: keep them small.
    #[test]
    fn compact_runs() {
        assert_eq!(std::mem::size_of::<super::Run>(), 40);
        assert_eq!(std::mem::size_of::<super::NfaState>(), 120);
    }
}
