//! Ports of the processing-time tests of
//! `operator/CEPOperatorTest.java` and `operator/CepProcessFunctionContextTest.java`:
//! the keyed operator in [`TimeDomain::ProcessingTime`] driven by a manual
//! clock.
//!
//! Flink's `harness.setProcessingTime(t)` is `advance_time(t)` (fires the
//! processing-time timers due by `t`), and `harness.processElement(record)`
//! is `process_element(key, event, t)` with `t` the current processing time
//! (the record's own timestamp is ignored in processing time). The test
//! harness's clock starts at `Long.MIN_VALUE`. Events are keyed by id
//! (`CepOperatorTestUtilities`' key selector).
//!
//! Flink's `PatternProcessFunction.Context` is checked through the outputs:
//! `ctx.timestamp()` is the match's `timestamp` (the processing time of the
//! event that completed it) or the timeout's `timeout_at` (`start + within`),
//! and `ctx.currentProcessingTime()` is the operator's clock when the output
//! was emitted.

use std::sync::Arc;

use ferrocep_core::operator::{CepOperator, TimeDomain};
use ferrocep_core::output::{Collector, Output};
use ferrocep_core::pattern::Pattern;
use ferrocep_core::time::Timestamp;

use crate::util::{first_of, name_is, Event};

type Op = CepOperator<i32, Event>;
type Match = Vec<(String, Vec<Event>)>;

fn operator(pattern: Pattern<Event>) -> Op {
    CepOperator::new(
        Arc::new(pattern.compile().expect("pattern compiles")),
        TimeDomain::ProcessingTime,
    )
}

/// `harness.processElement(event)` at the operator's current processing time.
fn element(op: &mut Op, e: &Event, sink: &mut Collector<i32, Event>) {
    let now = op.current_processing_time();
    op.process_element(&e.id, e.clone(), now, sink);
}

/// The matches (Flink's main output) in emission order.
fn matches(sink: &Collector<i32, Event>) -> Vec<Match> {
    sink.matches()
}

/// Flink's `verifyPattern(output, start, middle, end)`: the first event of
/// each of the three stages.
#[track_caller]
fn verify_pattern(m: &Match, start: &Event, middle: &Event, end: &Event) {
    assert_eq!(first_of(m, "start"), Some(start), "start of {m:?}");
    assert_eq!(first_of(m, "middle"), Some(middle), "middle of {m:?}");
    assert_eq!(first_of(m, "end"), Some(end), "end of {m:?}");
}

/// `CEPOperatorTest.SimpleNFAFactory`: `c -> a -> b within 10 ms`.
fn simple_pattern() -> Pattern<Event> {
    Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by("middle")
        .where_(name_is("a"))
        .followed_by("end")
        .where_(name_is("b"))
        .within_ms(10)
}

/// `testKeyedCEPOperatorNFAUpdate[WithRocksDB]`: the snapshot/restore cycles
/// between the records change nothing, and the clock is never set
/// (`Long.MIN_VALUE`).
fn keyed_cep_operator_nfa_update_scenario() {
    let mut op = operator(simple_pattern());
    let mut sink = Collector::default();
    let start = Event::new(42, "c", 1.0);
    let middle = Event::sub(42, "a", 1.0, 10.0);
    let end = Event::new(42, "b", 1.0);

    assert_eq!(op.current_processing_time(), Timestamp::MIN);
    element(&mut op, &start, &mut sink);
    element(&mut op, &Event::new(42, "d", 1.0), &mut sink);
    element(&mut op, &middle, &mut sink);
    element(&mut op, &end, &mut sink);

    let result = matches(&sink);
    assert_eq!(result.len(), 1, "{result:?}");
    verify_pattern(&result[0], &start, &middle, &end);
}

/// CEPOperatorTest.java `testKeyedCEPOperatorNFAUpdate`.
#[test]
fn keyed_cep_operator_nfa_update() {
    keyed_cep_operator_nfa_update_scenario();
}

/// CEPOperatorTest.java `testKeyedCEPOperatorNFAUpdateWithRocksDB` (the state
/// backend makes no difference here).
#[test]
fn keyed_cep_operator_nfa_update_with_rocks_db() {
    keyed_cep_operator_nfa_update_scenario();
}

/// CEPOperatorTest.java `testCEPOperatorCleanupProcessingTime`, with
/// `CEPOperatorTest.NFAFactory`: `start ->any middle(SubEvent, volume > 5)
/// ->any end within 10 ms`.
///
/// Flink's `hasNonEmptySharedBuffer(42)` is checked as "key 42 holds state"
/// (ferrocep drops a key whose state is back to the bare start state). Key
/// 43's partial match started at processing time 0, and Flink registers no
/// window timer for a partial match starting at time 0
/// (`getStartTimestamp() > 0`), so key 43 keeps its state to the end; Flink
/// asserts nothing about it after the start.
#[test]
fn cep_operator_cleanup_processing_time() {
    let start1 = Event::new(42, "start", 1.0);
    let start2 = Event::new(42, "start", 2.0);
    let middle1 = Event::sub(42, "foo1", 1.0, 10.0);
    let middle2 = Event::sub(42, "foo2", 1.0, 10.0);
    let middle3 = Event::sub(42, "foo3", 1.0, 10.0);
    let end1 = Event::new(42, "end", 1.0);
    let end2 = Event::new(42, "end", 2.0);
    let start_k2 = Event::new(43, "start", 1.0);

    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .followed_by_any("middle")
        .where_(Event::is_sub)
        .where_(|e: &Event| e.volume() > 5.0)
        .followed_by_any("end")
        .where_(name_is("end"))
        .within_ms(10);
    let mut op = operator(pattern);
    let mut sink = Collector::default();

    op.advance_processing_time(Timestamp::from_millis(0), &mut sink);
    element(&mut op, &start1, &mut sink);
    element(&mut op, &start_k2, &mut sink);
    element(&mut op, &Event::new(42, "foobar", 1.0), &mut sink);
    element(&mut op, &middle1, &mut sink);
    element(&mut op, &Event::sub(42, "barfoo", 1.0, 5.0), &mut sink);
    // hasNonEmptySharedBuffer(42) && hasNonEmptySharedBuffer(43)
    assert_eq!(op.num_keys(), 2);

    op.advance_processing_time(Timestamp::from_millis(3), &mut sink);
    element(&mut op, &start2, &mut sink);
    element(&mut op, &middle2, &mut sink);

    // (snapshot / restore) setProcessingTime(3)
    op.advance_processing_time(Timestamp::from_millis(3), &mut sink);
    element(&mut op, &end1, &mut sink);
    let result = matches(&sink);
    assert_eq!(result.len(), 3, "{result:?}");
    verify_pattern(&result[0], &start1, &middle1, &end1);
    verify_pattern(&result[1], &start1, &middle2, &end1);
    verify_pattern(&result[2], &start2, &middle2, &end1);

    op.advance_processing_time(Timestamp::from_millis(11), &mut sink);
    element(&mut op, &middle3, &mut sink);
    element(&mut op, &end2, &mut sink);
    let result = matches(&sink);
    assert_eq!(result.len(), 5, "{result:?}");
    verify_pattern(&result[3], &start2, &middle2, &end2);
    verify_pattern(&result[4], &start2, &middle3, &end2);

    op.advance_processing_time(Timestamp::from_millis(21), &mut sink);
    // !hasNonEmptySharedBuffer(42): only key 43 is left.
    assert_eq!(op.num_keys(), 1);
    assert_eq!(op.num_partial_matches(), 1);
    assert_eq!(op.buffer_stats().0, 1, "only key 43's start event is held");

    element(&mut op, &start1, &mut sink);
    // hasNonEmptySharedBuffer(42)
    assert_eq!(op.num_keys(), 2);

    op.advance_processing_time(Timestamp::from_millis(49), &mut sink);
    element(&mut op, &Event::new(42, "foobar", 1.0), &mut sink);
    // the pattern expired: !hasNonEmptySharedBuffer(42)
    assert_eq!(op.num_keys(), 1);
    assert_eq!(op.num_partial_matches(), 1);
    assert_eq!(op.buffer_stats().0, 1, "only key 43's start event is held");

    // No further match was emitted (Flink polls exactly these five).
    assert_eq!(matches(&sink).len(), 5);
}

/// The outputs of a `CepProcessFunctionContextTest` run, as the strings its
/// `AccessContextWithNames[WithTimedOut]` functions produce:
/// `"<ctx value>:<name of the first event of stage 1>:<... of stage 2>"`.
#[derive(Default)]
struct ContextOutputs {
    /// Main output (matches).
    main: Vec<String>,
    /// Side output (timed-out partial matches).
    timed_out: Vec<String>,
    seen: usize,
}

/// What `AccessContextWithNames` reads from the context.
#[derive(Clone, Copy)]
enum Accessor {
    /// `ctx.timestamp()`.
    Timestamp,
    /// `ctx.currentProcessingTime()`.
    CurrentProcessingTime,
}

fn names(m: &Match, states: usize) -> String {
    let mut s = String::new();
    for i in 1..=states {
        if let Some(e) = first_of(m, &i.to_string()) {
            s.push(':');
            s.push_str(&e.name);
        }
    }
    s
}

impl ContextOutputs {
    /// Turns the outputs the sink received since the last call into strings;
    /// `now` is the operator's clock during that call.
    fn collect(
        &mut self,
        sink: &Collector<i32, Event>,
        now: i64,
        accessor: Accessor,
        states: usize,
    ) {
        for o in &sink.outputs[self.seen..] {
            match o {
                Output::Match {
                    events, timestamp, ..
                } => {
                    let v = match accessor {
                        Accessor::Timestamp => *timestamp,
                        Accessor::CurrentProcessingTime => Timestamp::from_millis(now),
                    };
                    self.main.push(format!("{v}{}", names(events, states)));
                }
                Output::Timeout {
                    events, timeout_at, ..
                } => {
                    let v = match accessor {
                        Accessor::Timestamp => *timeout_at,
                        Accessor::CurrentProcessingTime => Timestamp::from_millis(now),
                    };
                    self.timed_out.push(format!("{v}{}", names(events, states)));
                }
                Output::Late { .. } => panic!("no late events in processing time"),
            }
        }
        self.seen = sink.outputs.len();
    }
}

/// Drives a `CepProcessFunctionContextTest` scenario: `(processing time,
/// event name)` steps, each `setProcessingTime(t)` then `processElement`,
/// then an optional final `setProcessingTime`.
fn run_context_test(
    pattern: Pattern<Event>,
    states: usize,
    accessor: Accessor,
    steps: &[(i64, &str)],
    final_time: Option<i64>,
) -> ContextOutputs {
    let mut op = operator(pattern);
    let mut sink = Collector::default();
    let mut out = ContextOutputs::default();
    for &(t, name) in steps {
        op.advance_processing_time(Timestamp::from_millis(t), &mut sink);
        out.collect(
            &sink,
            op.current_processing_time().as_millis(),
            accessor,
            states,
        );
        element(&mut op, &Event::new(0, name, 0.0), &mut sink);
        out.collect(
            &sink,
            op.current_processing_time().as_millis(),
            accessor,
            states,
        );
    }
    if let Some(t) = final_time {
        op.advance_processing_time(Timestamp::from_millis(t), &mut sink);
        out.collect(
            &sink,
            op.current_processing_time().as_millis(),
            accessor,
            states,
        );
    }
    out
}

/// `NFAForwardingFactory`: one state accepting any element.
fn forwarding() -> Pattern<Event> {
    Pattern::begin("1")
}

/// `NFATimingOutFactory`: `1 next 2 within 10 ms`, any elements.
fn timing_out() -> Pattern<Event> {
    Pattern::<Event>::begin("1").next("2").within_ms(10)
}

/// CepProcessFunctionContextTest.java `testTimestampPassingInProcessingTime`.
#[test]
fn timestamp_passing_in_processing_time() {
    let out = run_context_test(
        forwarding(),
        1,
        Accessor::Timestamp,
        &[(1, "A"), (2, "B")],
        Some(3),
    );
    assert_eq!(out.main, ["1:A", "2:B"]);
    assert!(out.timed_out.is_empty());
}

/// CepProcessFunctionContextTest.java `testCurrentProcessingTimeInProcessingTime`.
#[test]
fn current_processing_time_in_processing_time() {
    let out = run_context_test(
        forwarding(),
        1,
        Accessor::CurrentProcessingTime,
        &[(15, "A"), (35, "B")],
        None,
    );
    assert_eq!(out.main, ["15:A", "35:B"]);
    assert!(out.timed_out.is_empty());
}

/// CepProcessFunctionContextTest.java `testTimestampPassingForTimedOutInProcessingTime`.
#[test]
fn timestamp_passing_for_timed_out_in_processing_time() {
    let out = run_context_test(
        timing_out(),
        2,
        Accessor::Timestamp,
        &[(3, "A"), (5, "C"), (20, "B")],
        None,
    );
    assert_eq!(out.main, ["5:A:C"]);
    assert_eq!(out.timed_out, ["15:C"]);
}

/// CepProcessFunctionContextTest.java `testCurrentProcessingTimeForTimedOutInProcessingTime`
/// ("right now we time out only on next event in processing time, therefore
/// the 20").
#[test]
fn current_processing_time_for_timed_out_in_processing_time() {
    let out = run_context_test(
        timing_out(),
        2,
        Accessor::CurrentProcessingTime,
        &[(3, "A"), (5, "B"), (20, "C")],
        None,
    );
    assert_eq!(out.main, ["5:A:B"]);
    assert_eq!(out.timed_out, ["20:B"]);
}
