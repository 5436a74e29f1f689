//! The operator against a model of Flink's `CepOperator` built from the NFA
//! alone: every key keeps its own buffer of events, and when the watermark
//! passes some of them, the key runs them in (timestamp, arrival) order,
//! advancing time to each new timestamp first, then to the watermark. The
//! operator instead keeps one queue for all keys, skips events that cannot
//! start a match for keys without state, and drops idle keys; with positive
//! timestamps (every partial match then has a window timer) both must give
//! the same outputs, as multisets, for any stream and any out-of-orderness.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrocep_core::nfa::{NfaOutput, NfaState, SharedBuffer};
use ferrocep_core::operator::{CepOperator, TimeDomain};
use ferrocep_core::output::{Collector, Output};
use ferrocep_core::time::{BoundedOutOfOrderness, Timestamp, Watermark};
use ferrocep_core::{MatchRef, Nfa, Pattern, SkipStrategy};
use proptest::prelude::*;

/// An event: its type and a unique id.
type Ev = (char, u32);

fn patterns() -> Vec<Arc<Nfa<Ev>>> {
    let is = |c: char| move |e: &Ev| e.0 == c;
    vec![
        Arc::new(
            Pattern::<Ev>::begin_with_skip("a", SkipStrategy::SkipPastLastEvent)
                .where_(is('a'))
                .followed_by("b")
                .where_(is('b'))
                .within_ms(10)
                .compile()
                .unwrap(),
        ),
        Arc::new(
            Pattern::<Ev>::begin("a")
                .where_(is('a'))
                .next("b")
                .where_(is('b'))
                .one_or_more()
                .followed_by("c")
                .where_(is('c'))
                .within_ms(20)
                .compile()
                .unwrap(),
        ),
        Arc::new(
            Pattern::<Ev>::begin_with_skip("a", SkipStrategy::SkipToNext)
                .where_(is('a'))
                .followed_by_any("b")
                .where_(is('b'))
                .times(2)
                .within_ms(15)
                .compile()
                .unwrap(),
        ),
    ]
}

struct Gather<'a> {
    key: u8,
    out: &'a mut Vec<String>,
}

impl NfaOutput<Ev> for Gather<'_> {
    fn on_match(&mut self, m: &MatchRef<'_, Ev>) {
        self.out
            .push(format!("match {} {:?}", self.key, m.to_owned_map()));
    }
    fn on_timeout(&mut self, m: &MatchRef<'_, Ev>, at: i64) {
        self.out
            .push(format!("timeout {} {at} {:?}", self.key, m.to_owned_map()));
    }
}

/// A buffered event: timestamp, arrival, event.
type Queued = (i64, u64, Ev);

/// Flink's operator, key by key.
struct Model {
    nfa: Arc<Nfa<Ev>>,
    buf: SharedBuffer<Ev>,
    keys: BTreeMap<u8, (NfaState, Vec<Queued>)>,
    watermark: i64,
    arrivals: u64,
    out: Vec<String>,
}

impl Model {
    fn event(&mut self, key: u8, ev: Ev, ts: i64) {
        if ts <= self.watermark {
            self.out.push(format!("late {key} {ev:?} {ts}"));
            return;
        }
        self.arrivals += 1;
        let nfa = &self.nfa;
        let entry = self
            .keys
            .entry(key)
            .or_insert_with(|| (nfa.initial_state(), Vec::new()));
        entry.1.push((ts, self.arrivals, ev));
    }

    fn advance(&mut self, w: i64) {
        if w <= self.watermark {
            return;
        }
        self.watermark = w;
        for (&key, (state, queued)) in self.keys.iter_mut() {
            queued.sort_by_key(|(ts, seq, _)| (*ts, *seq));
            let due = queued.partition_point(|(ts, _, _)| *ts <= w);
            let mut out = Gather {
                key,
                out: &mut self.out,
            };
            let mut last = None;
            for (ts, _, ev) in queued.drain(..due) {
                if last != Some(ts) {
                    self.nfa.advance_time(&mut self.buf, state, ts, &mut out);
                    last = Some(ts);
                }
                self.nfa.process(&mut self.buf, state, ev, ts, &mut out);
            }
            self.nfa.advance_time(&mut self.buf, state, w, &mut out);
        }
    }
}

fn operator_outputs(c: Collector<u8, Ev>) -> Vec<String> {
    c.outputs
        .into_iter()
        .map(|o| match o {
            Output::Match { key, events, .. } => format!("match {key} {events:?}"),
            Output::Timeout {
                key,
                events,
                timeout_at,
            } => format!("timeout {key} {timeout_at} {events:?}"),
            Output::Late {
                key,
                event,
                timestamp,
            } => format!("late {key} {event:?} {timestamp}"),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn operator_equals_per_key_model(
        which in 0usize..3,
        ooo in prop_oneof![Just(0i64), Just(3), Just(12)],
        stream in proptest::collection::vec(
            (0u8..4, prop_oneof![Just('a'), Just('b'), Just('c'), Just('x')], 0i64..8, 0i64..6),
            1..120,
        ),
    ) {
        let nfa = patterns()[which].clone();
        let mut op = CepOperator::new(nfa.clone(), TimeDomain::EventTime);
        op.set_bounded_out_of_orderness(Duration::from_millis(ooo as u64));
        let mut model = Model {
            nfa,
            buf: SharedBuffer::default(),
            keys: BTreeMap::new(),
            watermark: i64::MIN,
            arrivals: 0,
            out: Vec::new(),
        };
        let mut collected = Collector::default();
        let mut wm = BoundedOutOfOrderness::new(Duration::from_millis(ooo as u64));
        // Timestamps mostly move forward, with jitter back (late or not).
        let mut clock = 1i64;
        for (id, (key, kind, step, back)) in stream.into_iter().enumerate() {
            clock += step;
            let ts = (clock - back).max(1);
            let ev = (kind, id as u32);
            op.process_element(&key, ev, Timestamp::from_millis(ts), &mut collected);
            model.event(key, ev, ts);
            let w = wm.on_event(Timestamp::from_millis(ts));
            op.advance_watermark(w, &mut collected);
            model.advance(w.as_millis());
        }
        op.advance_watermark(Watermark::MAX, &mut collected);
        model.advance(i64::MAX);
        let mut got = operator_outputs(collected);
        let mut want = model.out;
        got.sort();
        want.sort();
        prop_assert_eq!(got, want);
        prop_assert_eq!(op.num_keys(), 0);
        prop_assert_eq!(op.buffer_stats(), (0, 0));
    }
}
