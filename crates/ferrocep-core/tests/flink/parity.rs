//! Ports of the Flink tests on `WithinType.PREVIOUS_AND_CURRENT`,
//! `throwExceptionOnMiss`, `EventComparator` and `currentProcessingTime()`
//! (`NFAITCase`, `NotPatternITCase`, `AfterMatchSkipITCase`,
//! `CEPOperatorTest`, `CEPITCase`, `CepProcessFunctionContextTest`), with
//! Flink's expected results.

use std::cmp::Ordering;
use std::sync::{Arc, Mutex};

use ferrocep_core::operator::{CepOperator, EventComparator, TimeDomain};
use ferrocep_core::output::Collector;
use ferrocep_core::pattern::{MatchFailure, Pattern, SkipStrategy, WithinType};
use ferrocep_core::time::{Timestamp, Watermark};

use crate::util::{compare_patterns, feed_nfa, first_of, name_is, runner, Event};

type Match = Vec<(String, Vec<Event>)>;

fn ev(id: i32, name: &str) -> Event {
    Event::new(id, name, 1.0)
}

/// The stage -> events maps as sorted `(stage, ids)` lists, for set equality.
fn shape(m: &Match) -> Vec<(String, Vec<i32>)> {
    let mut v: Vec<_> = m
        .iter()
        .map(|(s, es)| (s.clone(), es.iter().map(|e| e.id).collect()))
        .collect();
    v.sort();
    v
}

#[test]
fn simple_pattern_with_time_window_nfa_within_previous_and_current() {
    let (s1, s2, m, e) = (
        ev(1, "start"),
        ev(2, "start"),
        ev(3, "middle"),
        ev(5, "end"),
    );
    let input = vec![
        (s1.clone(), 1),
        (s2.clone(), 2),
        (m.clone(), 3),
        (ev(4, "foobar"), 4),
        (e.clone(), 11),
        (ev(6, "end"), 13),
    ];
    let p = Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .followed_by("middle")
        .where_(name_is("middle"))
        .followed_by("end")
        .where_(name_is("end"))
        .within_type_ms(9, WithinType::PreviousAndCurrent);
    compare_patterns(
        feed_nfa(p, &input),
        vec![vec![s1, m.clone(), e.clone()], vec![s2, m, e]],
    );
}

#[test]
fn simple_pattern_with_timeout_handling_within_previous_and_current() {
    let input = [
        (ev(1, "start"), 1),
        (ev(2, "start"), 2),
        (ev(3, "middle"), 3),
        (ev(4, "foobar"), 4),
        (ev(5, "end"), 11),
        (ev(6, "end"), 13),
    ];
    let p = Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .followed_by_any("middle")
        .where_(name_is("middle"))
        .followed_by_any("end")
        .where_(name_is("end"))
        .within_type_ms(10, WithinType::PreviousAndCurrent);
    let mut r = runner(p);
    let (mut matches, mut timeouts) = (Vec::new(), Vec::new());
    for (e, ts) in input {
        let (m, t) = r.feed_with_timeouts(e, ts);
        matches.extend(m);
        timeouts.extend(t.iter().map(|(m, at)| (shape(m), *at)));
    }
    assert_eq!(matches.len(), 2);
    timeouts.sort();
    let s = |x: &str| x.to_string();
    assert_eq!(
        timeouts,
        vec![
            (vec![(s("middle"), vec![3]), (s("start"), vec![1])], 13),
            (vec![(s("middle"), vec![3]), (s("start"), vec![2])], 13),
        ]
    );
}

#[test]
fn pending_state_matches_within_previous_and_current() {
    let input = [
        (ev(1, "start"), 1),
        (ev(2, "middle"), 4),
        (ev(3, "start"), 5),
        (ev(4, "start"), 11),
        (ev(5, "middle"), 18),
    ];
    let p = Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .not_followed_by("middle")
        .where_(name_is("middle"))
        .within_type_ms(5, WithinType::PreviousAndCurrent);
    let mut r = runner(p);
    let mut pending = Vec::new();
    for (e, ts) in input {
        let (m, _) = r.advance_time(ts);
        pending.extend(m.iter().map(shape));
        r.feed(e, ts);
    }
    pending.sort();
    let s = |x: &str| x.to_string();
    assert_eq!(
        pending,
        vec![vec![(s("start"), vec![3])], vec![(s("start"), vec![4])]]
    );
}

/// `notFollowedBy` as the last stage with only a PREVIOUS_AND_CURRENT
/// window compiles (Flink accepts the per-state window in place of the
/// whole-pattern one) and completes when the window after `a` closes.
#[test]
fn not_followed_by_within_previous_and_current_at_end() {
    let p = Pattern::<Event>::begin("a")
        .where_(name_is("a"))
        .not_followed_by("b")
        .where_(name_is("b"))
        .within_type_ms(2, WithinType::PreviousAndCurrent);
    let mut r = runner(p);
    r.feed(ev(1, "a"), 1);
    let (m, _) = r.advance_time(3);
    assert_eq!(m.len(), 1);
    assert_eq!(first_of(&m[0], "a"), Some(&ev(1, "a")));
}

/// Flink's `NFATest.testTimeoutWindowPruningWithinPreviousAndNext`:
/// `start -> end` with windowTimes {end: 2}: a partial match waiting for
/// `end` is pruned once its previous event is 2 ms old.
#[test]
fn timeout_window_pruning_within_previous_and_next() {
    let p = Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .followed_by("end")
        .where_(name_is("end"))
        .within_type_ms(2, WithinType::PreviousAndCurrent);
    let input = [
        (Event::new(41, "start", 1.0), 1),
        (Event::new(42, "foobar", 1.0), 2),
        (Event::new(43, "start", 1.0), 3),
        (Event::new(44, "end", 1.0), 4),
    ];
    compare_patterns(
        feed_nfa(p, &input),
        vec![vec![
            Event::new(43, "start", 1.0),
            Event::new(44, "end", 1.0),
        ]],
    );
}

/// A per-stage window longer than the whole-pattern one is refused, as
/// Flink's `checkPatternWindowTimes` refuses it.
#[test]
fn stage_window_larger_than_pattern_window_is_refused() {
    let err = Pattern::<Event>::begin("a")
        .followed_by("b")
        .within_type_ms(10, WithinType::PreviousAndCurrent)
        .within_ms(5)
        .compile()
        .err()
        .expect("refused");
    assert!(err.to_string().contains("cannot be larger"), "{err}");
}

/// `AfterMatchSkipITCase` patterns with `throwExceptionOnMiss()`: the
/// operator reports Flink's exception with the key, and emits nothing for
/// the failed match.
fn run_keyed(
    p: Pattern<Event>,
    input: &[(Event, i64)],
) -> (Collector<i32, Event>, Option<MatchFailure>) {
    let mut op: CepOperator<i32, Event> = CepOperator::new(
        Arc::new(p.compile().expect("compiles")),
        TimeDomain::EventTime,
    );
    let mut sink = Collector::default();
    for (e, ts) in input {
        op.process_element(&7, e.clone(), Timestamp::from_millis(*ts), &mut sink);
    }
    op.advance_watermark(Watermark::from_millis(i64::MAX), &mut sink);
    let f = op.failure().map(|f| {
        assert_eq!(f.key, 7);
        f.error.clone()
    });
    (sink, f)
}

#[test]
fn skip_to_first_element_of_match() {
    let p = Pattern::<Event>::begin_with_skip("a", SkipStrategy::SkipToFirst("a".into()))
        .throw_exception_on_miss()
        .where_(name_is("a"))
        .next("b")
        .where_(name_is("b"));
    let (sink, f) = run_keyed(p, &[(ev(1, "a"), 1), (ev(2, "b"), 2)]);
    assert_eq!(
        f.expect("fails").to_string(),
        "Could not skip to first element of a match."
    );
    assert!(sink.matches().is_empty());
}

#[test]
fn skip_to_first_non_existent_position() {
    let p = Pattern::<Event>::begin_with_skip("a", SkipStrategy::SkipToFirst("b".into()))
        .throw_exception_on_miss()
        .where_(name_is("a"))
        .followed_by("b")
        .where_(name_is("b"))
        .optional()
        .followed_by("c")
        .where_(name_is("c"));
    let (sink, f) = run_keyed(p, &[(ev(1, "a"), 1), (ev(2, "c"), 2)]);
    let f = f.expect("fails");
    assert_eq!(f.stage(), "b");
    assert_eq!(
        f.to_string(),
        "Could not skip to b. No such element in the found match {a, c}"
    );
    assert!(sink.matches().is_empty());
}

#[test]
fn skip_to_last_non_existent_position() {
    let p = Pattern::<Event>::begin_with_skip("a", SkipStrategy::SkipToLast("b".into()))
        .throw_exception_on_miss()
        .where_(name_is("a"))
        .followed_by("b")
        .where_(name_is("b"))
        .optional()
        .followed_by("c")
        .where_(name_is("c"));
    let (_, f) = run_keyed(p, &[(ev(1, "a"), 1), (ev(2, "c"), 2)]);
    assert!(
        matches!(f, Some(MatchFailure::NoSuchElement { .. })),
        "{f:?}"
    );
}

/// Without `throwExceptionOnMiss` the same match is emitted and nothing fails.
#[test]
fn skip_to_first_non_existent_position_without_throw_emits() {
    let p = Pattern::<Event>::begin_with_skip("a", SkipStrategy::SkipToFirst("b".into()))
        .where_(name_is("a"))
        .followed_by("b")
        .where_(name_is("b"))
        .optional()
        .followed_by("c")
        .where_(name_is("c"));
    let (sink, f) = run_keyed(p, &[(ev(1, "a"), 1), (ev(2, "c"), 2)]);
    assert!(f.is_none());
    assert_eq!(sink.matches().len(), 1);
}

/// `CEPOperatorTest.NFAFactory`: `start ->any middle(SubEvent, volume > 5)
/// ->any end within 10 ms`.
fn comparator_pattern() -> Pattern<Event> {
    Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .followed_by_any("middle")
        .where_(|e: &Event| e.is_sub() && e.volume() > 5.0)
        .followed_by_any("end")
        .where_(name_is("end"))
        .within_ms(10)
}

fn by_price() -> EventComparator<Event> {
    Arc::new(|a: &Event, b: &Event| a.price.partial_cmp(&b.price).unwrap_or(Ordering::Equal))
}

#[track_caller]
fn verify(m: &Match, start: &Event, middle: &Event, end: &Event) {
    assert_eq!(first_of(m, "start"), Some(start), "{m:?}");
    assert_eq!(first_of(m, "middle"), Some(middle), "{m:?}");
    assert_eq!(first_of(m, "end"), Some(end), "{m:?}");
}

#[test]
fn cep_operator_comparator_event_time() {
    let start1 = Event::new(42, "start", 1.0);
    let start2 = Event::new(42, "start", 2.0);
    let middle1 = Event::sub(42, "foo1", 1.0, 10.0);
    let middle2 = Event::sub(42, "foo2", 2.0, 10.0);
    let end = Event::new(42, "end", 1.0);
    let start_k2 = Event::new(43, "start", 1.0);
    let mut op: CepOperator<i32, Event> = CepOperator::new(
        Arc::new(comparator_pattern().compile().unwrap()),
        TimeDomain::EventTime,
    );
    op.set_event_comparator(Some(by_price()));
    let mut sink = Collector::default();
    op.advance_watermark(Watermark::from_millis(0), &mut sink);
    for (e, ts) in [
        (start1.clone(), 1),
        (start_k2.clone(), 1),
        (Event::new(42, "foobar", 1.0), 2),
        (Event::sub(42, "barfoo", 1.0, 5.0), 3),
    ] {
        op.process_element(&e.id, &e, Timestamp::from_millis(ts), &mut sink);
    }
    assert_eq!(op.buffer_stats().0, 0);
    op.advance_watermark(Watermark::from_millis(3), &mut sink);
    assert!(op.buffer_stats().0 > 0);
    for (e, ts) in [
        (start2.clone(), 4),
        (middle2.clone(), 5),
        (middle1.clone(), 5),
    ] {
        op.process_element(&e.id, &e, Timestamp::from_millis(ts), &mut sink);
    }
    op.process_element(&42, end.clone(), Timestamp::from_millis(6), &mut sink);
    op.advance_watermark(Watermark::from_millis(6), &mut sink);
    let m = sink.matches();
    assert_eq!(m.len(), 4, "{m:?}");
    verify(&m[0], &start1, &middle1, &end);
    verify(&m[1], &start1, &middle2, &end);
    verify(&m[2], &start2, &middle1, &end);
    verify(&m[3], &start2, &middle2, &end);
}

#[test]
fn cep_operator_comparator_process_time() {
    let start1 = Event::new(42, "start", 1.0);
    let start2 = Event::new(42, "start", 2.0);
    let middle1 = Event::sub(42, "foo1", 3.0, 10.0);
    let middle2 = Event::sub(42, "foo2", 4.0, 10.0);
    let end1 = Event::new(42, "end", 1.0);
    let start_k2 = Event::new(43, "start", 1.0);
    let mut op: CepOperator<i32, Event> = CepOperator::new(
        Arc::new(comparator_pattern().compile().unwrap()),
        TimeDomain::ProcessingTime,
    );
    op.set_event_comparator(Some(by_price()));
    let mut sink = Collector::default();
    op.advance_watermark(Watermark::from_millis(0), &mut sink);
    for e in [
        start1.clone(),
        start_k2,
        Event::new(42, "foobar", 1.0),
        Event::sub(42, "barfoo", 1.0, 5.0),
    ] {
        op.process_element(&e.id, &e, Timestamp::from_millis(0), &mut sink);
    }
    assert_eq!(op.buffer_stats().0, 0, "events wait for their millisecond");
    assert_eq!(op.next_timer(), Some(Timestamp::from_millis(1)));
    op.advance_watermark(Watermark::from_millis(3), &mut sink);
    assert!(op.buffer_stats().0 > 0);
    for e in [middle2.clone(), middle1.clone(), start2.clone()] {
        op.process_element(&e.id, &e, Timestamp::from_millis(3), &mut sink);
    }
    op.advance_watermark(Watermark::from_millis(4), &mut sink);
    op.process_element(&42, end1.clone(), Timestamp::from_millis(4), &mut sink);
    op.advance_watermark(Watermark::from_millis(5), &mut sink);
    let m = sink.matches();
    assert_eq!(m.len(), 4, "{m:?}");
    verify(&m[0], &start1, &middle1, &end1);
    verify(&m[1], &start1, &middle2, &end1);
    verify(&m[2], &start2, &middle1, &end1);
    verify(&m[3], &start2, &middle2, &end1);
}

/// `CEPITCase.testSimplePatternEventTimeWithComparator`: events of one
/// timestamp are matched in the comparator's order (here by price), so
/// `start(price 1) next middle(price 2)` matches although they arrived the
/// other way round.
#[test]
fn simple_pattern_event_time_with_comparator() {
    let p = Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .next("middle")
        .where_(name_is("middle"));
    let mut op: CepOperator<i32, Event> =
        CepOperator::new(Arc::new(p.compile().unwrap()), TimeDomain::EventTime);
    op.set_event_comparator(Some(by_price()));
    let mut sink = Collector::default();
    op.process_element(
        &1,
        Event::new(1, "middle", 2.0),
        Timestamp::from_millis(5),
        &mut sink,
    );
    op.process_element(
        &1,
        Event::new(1, "start", 1.0),
        Timestamp::from_millis(5),
        &mut sink,
    );
    op.advance_watermark(Watermark::from_millis(i64::MAX), &mut sink);
    assert_eq!(sink.matches().len(), 1);
    // Without the comparator arrival order holds: no strict successor.
    let p = Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .next("middle")
        .where_(name_is("middle"));
    let mut op: CepOperator<i32, Event> =
        CepOperator::new(Arc::new(p.compile().unwrap()), TimeDomain::EventTime);
    let mut sink = Collector::default();
    op.process_element(
        &1,
        Event::new(1, "middle", 2.0),
        Timestamp::from_millis(5),
        &mut sink,
    );
    op.process_element(
        &1,
        Event::new(1, "start", 1.0),
        Timestamp::from_millis(5),
        &mut sink,
    );
    op.advance_watermark(Watermark::from_millis(i64::MAX), &mut sink);
    assert!(sink.matches().is_empty());
}

/// `testCurrentProcessingTimeInEventTime`, through the condition context:
/// a condition reads the processing time the caller set (100), not the
/// event's timestamp (5).
#[test]
fn current_processing_time_in_event_time() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let p = Pattern::<Event>::begin("1").where_ctx(move |_e: &Event, ctx| {
        s.lock()
            .unwrap()
            .push((ctx.current_processing_time(), ctx.timestamp()));
        true
    });
    let mut op: CepOperator<i32, Event> =
        CepOperator::new(Arc::new(p.compile().unwrap()), TimeDomain::EventTime);
    let mut sink = Collector::default();
    op.set_processing_time(Timestamp::from_millis(10));
    op.process_element(&1, ev(1, "A"), Timestamp::from_millis(5), &mut sink);
    op.set_processing_time(Timestamp::from_millis(100));
    op.advance_watermark(Watermark::from_millis(6), &mut sink);
    assert_eq!(sink.matches().len(), 1);
    assert_eq!(*seen.lock().unwrap(), vec![(100, 5)]);
}

/// `testCurrentProcessingTimeForTimedOutInEventTime`: the processing time
/// the caller set when the watermark came is what a timeout handler reads.
#[test]
fn current_processing_time_for_timed_out_in_event_time() {
    let p = Pattern::<Event>::begin("1").next("2").within_ms(10);
    let mut op: CepOperator<i32, Event> =
        CepOperator::new(Arc::new(p.compile().unwrap()), TimeDomain::EventTime);
    let mut sink = Collector::default();
    op.process_element(&1, ev(1, "A"), Timestamp::from_millis(5), &mut sink);
    op.process_element(&1, ev(1, "B"), Timestamp::from_millis(20), &mut sink);
    op.process_element(&1, ev(1, "C"), Timestamp::from_millis(3), &mut sink);
    op.set_processing_time(Timestamp::from_millis(100));
    op.advance_watermark(Watermark::from_millis(22), &mut sink);
    assert_eq!(op.current_processing_time(), Timestamp::from_millis(100));
    let m = sink.matches();
    assert_eq!(m.len(), 1);
    assert_eq!(first_of(&m[0], "1").map(|e| e.name.as_str()), Some("C"));
    let t = sink.timeouts();
    assert_eq!(t.len(), 1);
    assert_eq!(first_of(&t[0].0, "1").map(|e| e.name.as_str()), Some("A"));
}

/// `CEPITCase.testProcessingTimeWithinPreviousAndCurrent`: in processing
/// time a per-stage window of one day lets every pair match.
#[test]
fn processing_time_within_previous_and_current() {
    let p = Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .followed_by("end")
        .where_(name_is("end"))
        .within_type_ms(86_400_000, WithinType::PreviousAndCurrent);
    let mut op: CepOperator<i32, Event> =
        CepOperator::new(Arc::new(p.compile().unwrap()), TimeDomain::ProcessingTime);
    let mut sink = Collector::default();
    for (i, name) in ["start", "start", "end"].iter().enumerate() {
        op.process_element(
            &1,
            ev(i as i32, name),
            Timestamp::from_millis(10 + i as i64),
            &mut sink,
        );
    }
    assert_eq!(sink.matches().len(), 2);
}

/// `CEPITCase.testTimeoutHandlingWithinPreviousAndCurrent`: with a 3 ms
/// window between events, a partial match whose next event comes later
/// times out at `previous + 3`.
#[test]
fn timeout_handling_within_previous_and_current() {
    let p = Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .followed_by("middle")
        .where_(name_is("middle"))
        .followed_by("end")
        .where_(name_is("end"))
        .within_type_ms(3, WithinType::PreviousAndCurrent);
    let mut op: CepOperator<i32, Event> =
        CepOperator::new(Arc::new(p.compile().unwrap()), TimeDomain::EventTime);
    let mut sink = Collector::default();
    for (e, ts) in [
        (ev(1, "start"), 1),
        (ev(1, "middle"), 2),
        (ev(1, "end"), 4),
        (ev(1, "start"), 10),
        (ev(1, "middle"), 11),
        (ev(1, "end"), 20),
    ] {
        op.process_element(&1, e, Timestamp::from_millis(ts), &mut sink);
    }
    op.advance_watermark(Watermark::from_millis(i64::MAX), &mut sink);
    assert_eq!(sink.matches().len(), 1);
    let t = sink.timeouts();
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].1, Timestamp::from_millis(14));
}
