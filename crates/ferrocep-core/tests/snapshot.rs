//! Saving and restoring operator state: an operator restored from a
//! snapshot taken at any point of a stream emits, for every key, exactly
//! what the uninterrupted operator emits from there on; the incremental
//! store kept with `take_dirty` always equals a full snapshot; and state
//! split by key groups over two operators gives the same outputs as one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrocep_core::operator::{
    key_group, key_group_range, stable_key_hash, CepOperator, TimeDomain,
};
use ferrocep_core::output::{Collector, Output};
use ferrocep_core::time::{BoundedOutOfOrderness, Timestamp, Watermark};
use ferrocep_core::{Context, Nfa, Pattern, SkipStrategy};
use proptest::prelude::*;

/// An event: its type and a unique id.
type Ev = (char, u32);
type Op = CepOperator<u8, Ev>;

fn is(c: char) -> impl Fn(&Ev) -> bool + Send + Sync + 'static {
    move |e: &Ev| e.0 == c
}

/// Patterns with windows, loops, negations, optional stages, iterative
/// conditions and every skip strategy.
fn patterns() -> Vec<Arc<Nfa<Ev>>> {
    let p: Vec<Pattern<Ev>> = vec![
        Pattern::begin_with_skip("a", SkipStrategy::SkipPastLastEvent)
            .where_(is('a'))
            .followed_by("b")
            .where_(is('b'))
            .within_ms(10),
        Pattern::begin("a")
            .where_(is('a'))
            .next("b")
            .where_(is('b'))
            .one_or_more()
            .followed_by("c")
            .where_(is('c'))
            .within_ms(20),
        Pattern::begin_with_skip("a", SkipStrategy::SkipToNext)
            .where_(is('a'))
            .followed_by_any("b")
            .where_(is('b'))
            .times(2)
            .within_ms(15),
        // A trailing negation: matches complete when the window passes.
        Pattern::begin("a")
            .where_(is('a'))
            .followed_by("b")
            .where_(is('b'))
            .times_range(1, 2)
            .not_followed_by("c")
            .where_(is('c'))
            .within_ms(12),
        Pattern::begin_with_skip("a", SkipStrategy::SkipToFirst("b".into()))
            .where_(is('a'))
            .not_next("x")
            .where_(is('x'))
            .followed_by("b")
            .where_(is('b'))
            .times_or_more(1)
            .greedy()
            .followed_by("c")
            .where_(is('c'))
            .within_ms(25),
        // An iterative condition reads the partial match from the buffer.
        Pattern::begin_with_skip("a", SkipStrategy::SkipToLast("b".into()))
            .where_(is('a'))
            .followed_by_any("b")
            .where_ctx(|e: &Ev, ctx: &dyn Context<Ev>| {
                e.0 == 'b' && ctx.events_for_pattern("b").len() < 3
            })
            .one_or_more()
            .allow_combinations()
            .followed_by("c")
            .where_(is('c'))
            .within_ms(30),
        // No window: partial matches live until completed.
        Pattern::begin_with_skip("a", SkipStrategy::NoSkip)
            .where_(is('a'))
            .followed_by("b")
            .where_(is('b'))
            .one_or_more()
            .until(is('x'))
            .followed_by("c")
            .where_(is('c')),
    ];
    p.into_iter()
        .map(|p| Arc::new(p.compile().expect("pattern compiles")))
        .collect()
}

/// One step: an event (key, type, and the time it is at) and the time
/// advance that follows it.
#[derive(Clone, Debug)]
struct Step {
    key: u8,
    kind: char,
    ts: i64,
    advance: Option<i64>,
}

/// The steps of a stream: event time with a bounded-out-of-orderness
/// watermark after each event, or processing time on a clock that only
/// moves forward (events at the clock, advances now and then, sometimes
/// ahead of the next events: they then come at the time advanced to).
fn steps(domain: TimeDomain, ooo: i64, raw: &[(u8, char, i64, i64, bool)]) -> Vec<Step> {
    let mut clock = 1i64;
    let mut floor = i64::MIN;
    let mut wm = BoundedOutOfOrderness::new(Duration::from_millis(ooo as u64));
    raw.iter()
        .map(|&(key, kind, step, back, adv)| {
            clock += step;
            match domain {
                TimeDomain::EventTime => {
                    let ts = (clock - back).max(1);
                    Step {
                        key,
                        kind,
                        ts,
                        advance: Some(wm.on_event(Timestamp::from_millis(ts)).as_millis()),
                    }
                }
                TimeDomain::ProcessingTime => {
                    let ts = clock.max(floor);
                    if adv {
                        floor = ts + back;
                    }
                    Step {
                        key,
                        kind,
                        ts,
                        advance: adv.then_some(floor),
                    }
                }
            }
        })
        .collect()
}

fn apply(op: &mut Op, id: usize, s: &Step, keep: impl Fn(u8) -> bool, out: &mut Collector<u8, Ev>) {
    if keep(s.key) {
        op.process_element(
            &s.key,
            (s.kind, id as u32),
            Timestamp::from_millis(s.ts),
            out,
        );
    }
    if let Some(t) = s.advance {
        op.advance_watermark(Watermark::from_millis(t), out);
    }
}

/// Outputs per key, in the order each key emitted them.
fn by_key(c: Collector<u8, Ev>) -> BTreeMap<u8, Vec<String>> {
    let mut m: BTreeMap<u8, Vec<String>> = BTreeMap::new();
    for o in c.outputs {
        let (key, s) = match o {
            Output::Match {
                key,
                events,
                timestamp,
            } => (key, format!("match {timestamp} {events:?}")),
            Output::Timeout {
                key,
                events,
                timeout_at,
            } => (key, format!("timeout {timeout_at} {events:?}")),
            Output::Late {
                key,
                event,
                timestamp,
            } => (key, format!("late {timestamp} {event:?}")),
        };
        m.entry(key).or_default().push(s);
    }
    m
}

fn snapshot_all(op: &Op) -> BTreeMap<u8, Vec<u8>> {
    let keys: Vec<u8> = op.keys().copied().collect();
    let blobs = op.snapshot_keys(&keys);
    keys.into_iter()
        .zip(blobs)
        .map(|(k, b)| (k, b.expect("a listed key has state")))
        .collect()
}

fn restored(
    nfa: &Arc<Nfa<Ev>>,
    domain: TimeDomain,
    meta: &[u8],
    keys: &BTreeMap<u8, Vec<u8>>,
    keep: impl Fn(u8) -> bool,
) -> Op {
    let mut op = CepOperator::new(nfa.clone(), domain);
    op.restore_meta(meta).expect("meta restores");
    for (k, b) in keys {
        if keep(*k) {
            op.restore_key(*k, b).expect("key restores");
        }
    }
    op
}

/// Writes what changed since the last checkpoint into `store`.
fn checkpoint(op: &mut Op, store: &mut BTreeMap<u8, Vec<u8>>) {
    let (changed, dropped) = op.take_dirty();
    for k in &dropped {
        assert!(!changed.contains(k), "key {k} both changed and dropped");
        store.remove(k);
    }
    let blobs = op.snapshot_keys(&changed);
    for (k, b) in changed.into_iter().zip(blobs) {
        store.insert(k, b.expect("a changed key that is listed has state"));
    }
}

fn group_of(k: u8) -> u32 {
    key_group(stable_key_hash(&k))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn restored_operator_continues_as_the_uninterrupted_one(
        which in 0usize..7,
        processing in any::<bool>(),
        ooo in prop_oneof![Just(0i64), Just(3), Just(12)],
        raw in proptest::collection::vec(
            (0u8..5, prop_oneof![Just('a'), Just('b'), Just('c'), Just('x')], 0i64..7, 0i64..6, any::<bool>()),
            1..150,
        ),
        cuts in proptest::collection::vec(0usize..150, 1..4),
        checkpoint_every in 1usize..20,
    ) {
        let nfa = patterns()[which].clone();
        let domain = if processing { TimeDomain::ProcessingTime } else { TimeDomain::EventTime };
        let steps = steps(domain, ooo, &raw);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % steps.len()).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let first = cuts[0];

        let mut a: Op = CepOperator::new(nfa.clone(), domain);
        let mut b: Option<Op> = None;
        let mut workers: Option<[Op; 2]> = None;
        if domain == TimeDomain::EventTime {
            a.set_bounded_out_of_orderness(Duration::from_millis(ooo as u64));
        }
        a.set_change_tracking(true);
        let mut store = BTreeMap::new();
        let (mut out_a, mut out_b, mut out_w) =
            (Collector::default(), Collector::default(), Collector::default());
        let mut ignore = Collector::default();
        let worker0 = key_group_range(0, 2);

        for (i, s) in steps.iter().enumerate() {
            if cuts.contains(&i) {
                // The incremental store equals a full snapshot.
                checkpoint(&mut a, &mut store);
                let full = snapshot_all(&a);
                prop_assert_eq!(&store, &full);
                let meta = a.snapshot_meta();
                if i == first {
                    b = Some(restored(&nfa, domain, &meta, &store, |_| true));
                    let w0 = restored(&nfa, domain, &meta, &store, |k| worker0.contains(&group_of(k)));
                    let w1 = restored(&nfa, domain, &meta, &store, |k| !worker0.contains(&group_of(k)));
                    workers = Some([w0, w1]);
                } else if let Some(op) = b.as_mut() {
                    // Restore the restored operator again, from its own state,
                    // into an operator that already holds stale state.
                    let own = snapshot_all(op);
                    prop_assert_eq!(&own, &full, "restored state diverged before step {}", i);
                    let own_meta = op.snapshot_meta();
                    prop_assert_eq!(&own_meta, &meta);
                    let mut again = restored(&nfa, domain, &own_meta, &own, |_| true);
                    for k in 0u8..5 {
                        if let Some(bytes) = own.get(&k) {
                            again.restore_key(k, bytes).expect("restores over itself");
                        }
                    }
                    b = Some(again);
                }
            } else if i % checkpoint_every == 0 {
                checkpoint(&mut a, &mut store);
            }
            let after = i >= first;
            apply(&mut a, i, s, |_| true, if after { &mut out_a } else { &mut ignore });
            if let Some(op) = b.as_mut() {
                apply(op, i, s, |_| true, &mut out_b);
            }
            if let Some([w0, w1]) = workers.as_mut() {
                apply(w0, i, s, |k| worker0.contains(&group_of(k)), &mut out_w);
                apply(w1, i, s, |k| !worker0.contains(&group_of(k)), &mut out_w);
            }
        }
        // The states are the same, byte for byte, before the end.
        let b = b.as_mut().expect("the first cut is a step");
        prop_assert_eq!(snapshot_all(&a), snapshot_all(b));
        // Split over two, every key with state is in one of them (a worker
        // sees a smaller largest timestamp, so it may keep a key the single
        // operator could skip; arrival numbers differ too).
        let [w0, w1] = workers.as_mut().expect("the first cut is a step");
        for k in a.keys() {
            prop_assert!(w0.keys().chain(w1.keys()).any(|x| x == k), "key {} lost", k);
        }

        a.advance_processing_time(Timestamp::MAX, &mut out_a);
        b.advance_processing_time(Timestamp::MAX, &mut out_b);
        w0.advance_processing_time(Timestamp::MAX, &mut out_w);
        w1.advance_processing_time(Timestamp::MAX, &mut out_w);
        let want = by_key(out_a);
        prop_assert_eq!(&by_key(out_b), &want);
        prop_assert_eq!(&by_key(out_w), &want);
        prop_assert_eq!(a.num_keys(), b.num_keys());
        prop_assert_eq!(a.buffer_stats(), b.buffer_stats());
    }
}

/// A key removed from an operator leaves nothing behind, and removing or
/// restoring over a key with waiting events keeps the queue consistent.
#[test]
fn remove_and_replace_keys_with_waiting_events() {
    let nfa = patterns()[1].clone();
    let events = [
        (1u8, 'a', 5),
        (1, 'b', 6),
        (2, 'a', 5),
        (1, 'b', 9),
        (2, 'b', 9),
    ];
    let feed = |op: &mut Op, out: &mut Collector<u8, Ev>| {
        for (i, (k, c, ts)) in events.into_iter().enumerate() {
            op.process_element(&k, (c, i as u32), Timestamp::from_millis(ts), out);
        }
        op.advance_watermark(Watermark::from_millis(6), out);
    };
    let finish = |op: &mut Op, out: &mut Collector<u8, Ev>| {
        op.process_element(&1, ('c', 9), Timestamp::from_millis(10), out);
        op.advance_watermark(Watermark::MAX, out);
    };
    let mut reference: Op = CepOperator::new(nfa.clone(), TimeDomain::EventTime);
    let mut want = Collector::default();
    feed(&mut reference, &mut want);
    finish(&mut reference, &mut want);

    let mut op: Op = CepOperator::new(nfa.clone(), TimeDomain::EventTime);
    let mut out = Collector::default();
    feed(&mut op, &mut out);
    let one = op.snapshot_key(&1).expect("key 1 has state");
    let two = op.snapshot_key(&2).expect("key 2 has state");
    op.remove_key(&2);
    assert!(op.snapshot_key(&2).is_none());
    // Replacing key 1 by its own state changes nothing.
    op.restore_key(1, &one).expect("restores");
    assert_eq!(op.snapshot_key(&1), Some(one.clone()));
    op.remove_key(&1);
    assert_eq!(op.num_keys(), 0);
    assert_eq!(op.buffer_stats(), (0, 0));
    assert_eq!(
        op.next_timer(),
        Some(Timestamp::from_millis(25)),
        "stale timers may stay"
    );
    op.restore_key(2, &two).expect("restores");
    op.restore_key(1, &one).expect("restores");
    finish(&mut op, &mut out);
    assert_eq!(out.outputs, want.outputs);
    assert_eq!(out.matches().len(), 2, "{:?}", out.outputs);
    assert_eq!(op.num_keys(), 0);
    assert_eq!(op.buffer_stats(), (0, 0));
}
