//! Ports of event-time operator tests of `operator/CEPOperatorTest.java` and
//! `operator/CepProcessFunctionContextTest.java` that rely on explicit
//! watermarks (which the spec format, with a watermark after every event,
//! cannot reproduce): the keyed [`CepOperator`] in [`TimeDomain::EventTime`],
//! Flink's `harness.processWatermark(w)` being `advance_time(w)`. Events are
//! keyed by id.

use std::sync::Arc;

use ferrocep_core::operator::{CepOperator, TimeDomain};
use ferrocep_core::output::{Collector, Output};
use ferrocep_core::pattern::Pattern;
use ferrocep_core::time::{Timestamp, Watermark};

use crate::util::{first_of, name_is, Event};

type Op = CepOperator<i32, Event>;
type Match = Vec<(String, Vec<Event>)>;

fn operator(pattern: Pattern<Event>) -> Op {
    CepOperator::new(
        Arc::new(pattern.compile().expect("pattern compiles")),
        TimeDomain::EventTime,
    )
}

/// `harness.processElement(new StreamRecord<>(event, ts))`.
fn element(op: &mut Op, e: &Event, ts: i64, sink: &mut Collector<i32, Event>) {
    op.process_element(&e.id, e.clone(), Timestamp::from_millis(ts), sink);
}

/// Flink's `verifyPattern(output, start, middle, end)`.
#[track_caller]
fn verify_pattern(m: &Match, start: &Event, middle: &Event, end: &Event) {
    assert_eq!(first_of(m, "start"), Some(start), "start of {m:?}");
    assert_eq!(first_of(m, "middle"), Some(middle), "middle of {m:?}");
    assert_eq!(first_of(m, "end"), Some(end), "end of {m:?}");
}

fn late_count(sink: &Collector<i32, Event>) -> usize {
    sink.outputs
        .iter()
        .filter(|o| matches!(o, Output::Late { .. }))
        .count()
}

/// `CEPOperatorTest.NFAFactory`: `start ->any middle(SubEvent, volume > 5)
/// ->any end within 10 ms`.
fn nfa_factory_pattern() -> Pattern<Event> {
    Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .followed_by_any("middle")
        .where_(Event::is_sub)
        .where_(|e: &Event| e.volume() > 5.0)
        .followed_by_any("end")
        .where_(name_is("end"))
        .within_ms(10)
}

/// CEPOperatorTest.java `testCEPOperatorCleanupEventTime` (the snapshot /
/// restore in the middle changes nothing). Flink's per-key assertions
/// (`hasNonEmptySharedBuffer(k)`, "2 keys", "1 key because 43 expired") are
/// checked through the number of keys holding state and the shared buffer's
/// event count; its timer counts are not ported except the final "no timer
/// left".
#[test]
fn cep_operator_cleanup_event_time() {
    let start1 = Event::new(42, "start", 1.0);
    let start2 = Event::new(42, "start", 2.0);
    let middle1 = Event::sub(42, "foo1", 1.0, 10.0);
    let middle2 = Event::sub(42, "foo2", 1.0, 10.0);
    let middle3 = Event::sub(42, "foo3", 1.0, 10.0);
    let end1 = Event::new(42, "end", 1.0);
    let end2 = Event::new(42, "end", 2.0);
    let start_k2 = Event::new(43, "start", 1.0);

    let mut op = operator(nfa_factory_pattern());
    let mut sink = Collector::default();

    op.advance_watermark(Watermark::MIN, &mut sink);
    element(&mut op, &Event::new(42, "foobar", 1.0), 2, &mut sink);
    element(&mut op, &middle1, 2, &mut sink);
    element(&mut op, &Event::sub(42, "barfoo", 1.0, 5.0), 3, &mut sink);
    element(&mut op, &start1, 1, &mut sink);
    element(&mut op, &start_k2, 1, &mut sink);
    // Two keys, everything still queued, nothing in the NFA yet.
    assert_eq!(op.num_keys(), 2);
    assert_eq!(op.buffer_stats(), (0, 0));
    assert_eq!(op.next_timer(), Some(Timestamp::from_millis(1)));

    op.advance_watermark(Watermark::from_millis(2), &mut sink);
    // Both keys now have NFA state: key 42 holds start1 and middle1 (foobar is
    // not taken), key 43 holds its start; barfoo@3 is still queued.
    assert_eq!(op.num_keys(), 2);
    assert_eq!(op.buffer_stats().0, 3);

    element(&mut op, &start2, 4, &mut sink);
    element(&mut op, &middle2, 5, &mut sink);
    // (snapshot / restore)
    element(&mut op, &end1, 6, &mut sink);
    op.advance_watermark(Watermark::from_millis(11), &mut sink);
    op.advance_watermark(Watermark::from_millis(12), &mut sink);

    // "now we have 1 key because the 43 expired and was removed.
    //  42 is still there due to startEvent2"
    assert_eq!(op.num_keys(), 1);
    let m = sink.matches();
    assert_eq!(m.len(), 3, "{m:?}");
    verify_pattern(&m[0], &start1, &middle1, &end1);
    verify_pattern(&m[1], &start1, &middle2, &end1);
    verify_pattern(&m[2], &start2, &middle2, &end1);

    // "this is a late event, because timestamp(12) = last watermark(12)"
    element(&mut op, &middle3, 12, &mut sink);
    assert_eq!(late_count(&sink), 1);
    element(&mut op, &end2, 13, &mut sink);
    op.advance_watermark(Watermark::from_millis(20), &mut sink);
    op.advance_watermark(Watermark::from_millis(21), &mut sink);

    assert_eq!(op.num_keys(), 0);
    assert_eq!(op.buffer_stats(), (0, 0));
    assert_eq!(op.next_timer(), None);
    let m = sink.matches();
    assert_eq!(m.len(), 4, "{m:?}");
    verify_pattern(&m[3], &start2, &middle2, &end2);
}

/// CEPOperatorTest.java `testCEPOperatorLateRecordsMetric`: watermarks 0, 2, 4
/// make `a@1` (after watermark 2) and `a@3` (after watermark 4) late.
#[test]
fn cep_operator_late_records_metric() {
    let start = Event::new(41, "c", 1.0);
    let middle1 = Event::new(41, "a", 2.0);
    let middle2 = Event::new(41, "a", 3.0);
    let middle3 = Event::new(41, "a", 4.0);

    let mut op = operator(nfa_factory_pattern());
    let mut sink = Collector::default();
    op.advance_watermark(Watermark::from_millis(0), &mut sink);
    element(&mut op, &start, 1, &mut sink);
    op.advance_watermark(Watermark::from_millis(2), &mut sink);
    element(&mut op, &middle1, 1, &mut sink);
    element(&mut op, &middle2, 3, &mut sink);
    op.advance_watermark(Watermark::from_millis(4), &mut sink);
    element(&mut op, &middle3, 3, &mut sink);

    assert_eq!(late_count(&sink), 2);
}

/// CepProcessFunctionContextTest.java `testTimestampPassingForTimedOutInEventTime`:
/// `1 next 2 within 10 ms` over A@5, C@20, B@3 (out of order), watermark 22.
/// The function outputs `ctx.timestamp()` and the names of the first events
/// of stages "1" and "2": main output `["5:B:A"]`, timed out `["15:A"]` (C's
/// partial match would time out at 30, after the watermark).
#[test]
fn timestamp_passing_for_timed_out_in_event_time() {
    let pattern = Pattern::<Event>::begin("1").next("2").within_ms(10);
    let mut op = operator(pattern);
    let mut sink = Collector::default();
    element(&mut op, &Event::new(0, "A", 0.0), 5, &mut sink);
    element(&mut op, &Event::new(0, "C", 0.0), 20, &mut sink);
    element(&mut op, &Event::new(0, "B", 0.0), 3, &mut sink);
    op.advance_watermark(Watermark::from_millis(22), &mut sink);

    let names = |m: &Match| -> String {
        ["1", "2"]
            .iter()
            .filter_map(|s| first_of(m, s))
            .map(|e| format!(":{}", e.name))
            .collect()
    };
    let mut main = Vec::new();
    let mut timed_out = Vec::new();
    for o in &sink.outputs {
        match o {
            Output::Match {
                events, timestamp, ..
            } => main.push(format!("{timestamp}{}", names(events))),
            Output::Timeout {
                events, timeout_at, ..
            } => timed_out.push(format!("{timeout_at}{}", names(events))),
            Output::Late { .. } => panic!("no late event expected: {o:?}"),
        }
    }
    assert_eq!(main, ["5:B:A"]);
    assert_eq!(timed_out, ["15:A"]);
}
