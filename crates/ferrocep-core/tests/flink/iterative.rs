//! Ports of Flink CEP tests whose conditions are `IterativeCondition`s (they
//! read the events already matched through `ctx.getEventsForPattern`):
//! `nfa/IterativeConditionsITCase.java` (all 7), the iterative ones of
//! `nfa/UntilConditionITCase.java`, `nfa/SameElementITCase.java`,
//! `nfa/AfterMatchSkipITCase.java`, `CEPITCase.java` and
//! `operator/CEPOperatorTest.java`.

use std::sync::Arc;

use ferrocep_core::operator::{CepOperator, TimeDomain};
use ferrocep_core::output::Collector;
use ferrocep_core::pattern::{Context, Pattern, SkipStrategy};
use ferrocep_core::time::{Timestamp, Watermark};

use crate::util::{
    compare_patterns, feed_nfa, feed_records, first_of, flatten, name_is, runner, Event,
};

/// Sum of the prices of the events matched so far as `stage`.
fn price_sum(ctx: &dyn Context<Event>, stage: &str) -> f64 {
    ctx.events_for_pattern(stage).iter().map(|e| e.price).sum()
}

/// The fields of `IterativeConditionsITCase`.
struct Data {
    start1: Event,
    start2: Event,
    start3: Event,
    start4: Event,
    middle1: Event,
    middle2: Event,
    middle3: Event,
    middle4: Event,
    next_one: Event,
    end: Event,
}

impl Data {
    fn new() -> Self {
        Data {
            start1: Event::new(40, "start", 1.0),
            start2: Event::new(40, "start", 2.0),
            start3: Event::new(40, "start", 3.0),
            start4: Event::new(40, "start", 4.0),
            middle1: Event::sub(41, "foo1", 1.0, 10.0),
            middle2: Event::sub(42, "foo2", 2.0, 10.0),
            middle3: Event::sub(43, "foo3", 3.0, 10.0),
            middle4: Event::sub(43, "foo4", 1.0, 10.0),
            next_one: Event::new(44, "next-one", 1.0),
            end: Event::new(46, "end", 1.0),
        }
    }
}

/// `MySubeventIterCondition`: a `foo*` event whose price keeps the running
/// sum of the `middle` prices below 5.
fn my_subevent_iter_condition(e: &Event, ctx: &dyn Context<Event>) -> bool {
    if !e.name.starts_with("foo") {
        return false;
    }
    price_sum(ctx, "middle") + e.price < 5.0
}

/// `start`, `followedBy("middle").subtype(SubEvent).where(MySubeventIterCondition)
/// .oneOrMore()[.allowCombinations()]`, `followedBy("end")`.
fn branching_pattern(eager: bool) -> Pattern<Event> {
    let p = Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .followed_by("middle")
        .where_(Event::is_sub)
        .where_ctx(my_subevent_iter_condition)
        .one_or_more();
    let p = if eager { p } else { p.allow_combinations() };
    p.followed_by("end").where_(name_is("end"))
}

fn iterative_with_branching_pattern(eager: bool) -> Vec<Vec<Event>> {
    let d = Data::new();
    let input = vec![
        (d.start1, 1),
        (d.middle1, 2),
        (d.middle2, 3),
        (d.start2, 4),
        (d.middle3, 5),
        (d.middle4, 5),
        (d.next_one, 6),
        (d.end, 8),
    ];
    feed_nfa(branching_pattern(eager), &input)
}

/// IterativeConditionsITCase.java `testIterativeWithBranchingPatternEager`.
#[test]
fn iterative_with_branching_pattern_eager() {
    let d = Data::new();
    compare_patterns(
        iterative_with_branching_pattern(true),
        vec![
            vec![
                d.start1.clone(),
                d.end.clone(),
                d.middle1.clone(),
                d.middle2.clone(),
                d.middle4.clone(),
            ],
            vec![
                d.start1.clone(),
                d.end.clone(),
                d.middle2.clone(),
                d.middle1.clone(),
            ],
            vec![d.start1.clone(), d.end.clone(), d.middle1.clone()],
            vec![
                d.start2.clone(),
                d.end.clone(),
                d.middle3.clone(),
                d.middle4.clone(),
            ],
            vec![d.start2, d.end, d.middle3],
        ],
    );
}

/// IterativeConditionsITCase.java `testIterativeWithBranchingPatternCombinations`.
#[test]
fn iterative_with_branching_pattern_combinations() {
    compare_patterns(
        iterative_with_branching_pattern(false),
        branching_combinations_expected(),
    );
}

fn branching_combinations_expected() -> Vec<Vec<Event>> {
    let d = Data::new();
    vec![
        vec![
            d.start1.clone(),
            d.end.clone(),
            d.middle1.clone(),
            d.middle2.clone(),
            d.middle4.clone(),
        ],
        vec![
            d.start1.clone(),
            d.end.clone(),
            d.middle2.clone(),
            d.middle1.clone(),
        ],
        vec![
            d.start1.clone(),
            d.end.clone(),
            d.middle3.clone(),
            d.middle1.clone(),
        ],
        vec![
            d.start2.clone(),
            d.end.clone(),
            d.middle3.clone(),
            d.middle4.clone(),
        ],
        vec![
            d.start1.clone(),
            d.end.clone(),
            d.middle4.clone(),
            d.middle1.clone(),
        ],
        vec![d.start1.clone(), d.end.clone(), d.middle1.clone()],
        vec![d.start2, d.end, d.middle3],
    ]
}

/// `MyEventIterCondition`: a `start` event whose price keeps the running sum
/// of the `start` prices below 5.
fn my_event_iter_condition(e: &Event, ctx: &dyn Context<Event>) -> bool {
    if e.name != "start" {
        return false;
    }
    price_sum(ctx, "start") + e.price < 5.0
}

fn iterative_with_looping_starting(eager: bool) -> Vec<Vec<Event>> {
    let d = Data::new();
    let input = vec![(d.start1, 1), (d.start2, 2), (d.start3, 3), (d.end, 4)];
    let p = Pattern::<Event>::begin("start")
        .where_ctx(my_event_iter_condition)
        .one_or_more();
    let p = if eager {
        p.optional()
    } else {
        p.allow_combinations().optional()
    };
    feed_nfa(p.followed_by("end").where_(name_is("end")), &input)
}

/// IterativeConditionsITCase.java `testIterativeWithLoopingStartingEager`.
#[test]
fn iterative_with_looping_starting_eager() {
    let d = Data::new();
    compare_patterns(
        iterative_with_looping_starting(true),
        vec![
            vec![d.start1.clone(), d.start2.clone(), d.end.clone()],
            vec![d.start1.clone(), d.end.clone()],
            vec![d.start2.clone(), d.end.clone()],
            vec![d.start3.clone(), d.end.clone()],
            vec![d.end],
        ],
    );
}

/// IterativeConditionsITCase.java `testIterativeWithLoopingStartingCombination`.
#[test]
fn iterative_with_looping_starting_combination() {
    let d = Data::new();
    compare_patterns(
        iterative_with_looping_starting(false),
        vec![
            vec![d.start1.clone(), d.start2.clone(), d.end.clone()],
            vec![d.start1.clone(), d.start3.clone(), d.end.clone()],
            vec![d.start1.clone(), d.end.clone()],
            vec![d.start2.clone(), d.end.clone()],
            vec![d.start3.clone(), d.end.clone()],
            vec![d.end],
        ],
    );
}

/// `end` whose `start` events' prices sum to at least 2.
fn end_after_start_sum_at_least_2(e: &Event, ctx: &dyn Context<Event>) -> bool {
    if e.name != "end" {
        return false;
    }
    price_sum(ctx, "start") >= 2.0
}

/// IterativeConditionsITCase.java `testIterativeWithPrevPatternDependency`.
#[test]
fn iterative_with_prev_pattern_dependency() {
    let d = Data::new();
    let input = vec![
        (d.start1.clone(), 1),
        (d.start2.clone(), 2),
        (d.end.clone(), 4),
    ];
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .one_or_more()
        .followed_by("end")
        .where_ctx(end_after_start_sum_at_least_2);

    compare_patterns(
        feed_nfa(pattern, &input),
        vec![
            vec![d.start1, d.start2.clone(), d.end.clone()],
            vec![d.start2, d.end],
        ],
    );
}

/// IterativeConditionsITCase.java `testIterativeWithABACPattern`.
#[test]
fn iterative_with_abac_pattern() {
    let d = Data::new();
    let input = vec![
        (d.start1.clone(), 1),
        (d.middle1.clone(), 2),
        (d.start2.clone(), 2),
        (d.start3.clone(), 2),
        (d.middle2.clone(), 2),
        (d.start4.clone(), 2),
        (d.middle3.clone(), 2),
        (d.middle4.clone(), 2),
        (d.end.clone(), 4),
    ];
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .followed_by_any("middle1")
        .where_(Event::is_sub)
        .where_(|e: &Event| e.name.starts_with("foo"))
        .followed_by("middle2")
        .where_ctx(|e: &Event, ctx: &dyn Context<Event>| {
            if e.name != "start" {
                return false;
            }
            price_sum(ctx, "middle2") + e.price <= 5.0
        })
        .one_or_more()
        .followed_by("end")
        .where_(name_is("end"));

    compare_patterns(
        feed_nfa(pattern, &input),
        vec![
            vec![
                d.start1.clone(),
                d.start2.clone(),
                d.start3.clone(),
                d.middle1.clone(),
                d.end.clone(),
            ],
            vec![
                d.start1.clone(),
                d.middle1.clone(),
                d.start2.clone(),
                d.end.clone(),
            ],
            vec![
                d.start1.clone(),
                d.middle2.clone(),
                d.start4.clone(),
                d.end.clone(),
            ],
            vec![
                d.start2.clone(),
                d.middle2.clone(),
                d.start4.clone(),
                d.end.clone(),
            ],
            vec![d.start3, d.middle2, d.start4, d.end],
        ],
    );
}

/// IterativeConditionsITCase.java `testIterativeWithPrevPatternDependencyAfterBranching`.
#[test]
fn iterative_with_prev_pattern_dependency_after_branching() {
    let d = Data::new();
    let input = vec![
        (d.start1.clone(), 1),
        (d.start2.clone(), 2),
        (d.middle1.clone(), 4),
        (d.start3.clone(), 5),
        (d.middle2.clone(), 6),
        (d.end.clone(), 7),
    ];
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("start"))
        .one_or_more()
        .followed_by_any("middle1")
        .where_(Event::is_sub)
        .where_(|e: &Event| e.name.starts_with("foo"))
        .followed_by_any("end")
        .where_ctx(end_after_start_sum_at_least_2);

    let (s1, s2, s3, m1, m2, end) = (d.start1, d.start2, d.start3, d.middle1, d.middle2, d.end);
    compare_patterns(
        feed_nfa(pattern, &input),
        vec![
            vec![s1.clone(), s2.clone(), m1.clone(), end.clone()],
            vec![s2.clone(), m1, end.clone()],
            vec![s1.clone(), s2.clone(), m2.clone(), end.clone()],
            vec![s1, s2.clone(), s3.clone(), m2.clone(), end.clone()],
            vec![s2.clone(), s3.clone(), m2.clone(), end.clone()],
            vec![s2, m2.clone(), end.clone()],
            vec![s3, m2, end],
        ],
    );
}

/// Input of the two iterative UntilConditionITCase tests.
struct UntilData {
    start: Event,
    middle1: Event,
    middle2: Event,
    middle3: Event,
    input: Vec<(Event, i64)>,
}

impl UntilData {
    fn new() -> Self {
        let start = Event::new(40, "c", 1.0);
        let middle1 = Event::new(41, "a", 2.0);
        let middle2 = Event::new(42, "a", 3.0);
        let middle3 = Event::new(40, "d", 1.0);
        let breaking = Event::new(44, "a", 5.0);
        let ignored = Event::new(45, "a", 6.0);
        let input = vec![
            (start.clone(), 1),
            (middle1.clone(), 3),
            (middle2.clone(), 4),
            (middle3.clone(), 5),
            (breaking, 6),
            (ignored, 7),
        ];
        UntilData {
            start,
            middle1,
            middle2,
            middle3,
            input,
        }
    }
}

/// The until condition of both tests: the `middle` prices sum to exactly 6.
fn middle_sum_is_6(_: &Event, ctx: &dyn Context<Event>) -> bool {
    price_sum(ctx, "middle") == 6.0
}

/// UntilConditionITCase.java `testIterativeUntilConditionOneOrMore`; afterwards
/// only the start state is left.
#[test]
fn iterative_until_condition_one_or_more() {
    let d = UntilData::new();
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by("middle")
        .one_or_more()
        .until_ctx(middle_sum_is_6);

    let mut r = runner(pattern);
    compare_patterns(
        feed_records(&mut r, &d.input),
        vec![
            vec![
                d.start.clone(),
                d.middle1.clone(),
                d.middle2.clone(),
                d.middle3.clone(),
            ],
            vec![d.start.clone(), d.middle1.clone(), d.middle2.clone()],
            vec![d.start, d.middle1],
        ],
    );
    assert_eq!(r.state().num_partial_matches(), 0);
    assert!(r.state().is_idle(), "only the start state must be left");
}

/// UntilConditionITCase.java `testIterativeUntilConditionZeroOrMore`; afterwards
/// only the start state is left.
#[test]
fn iterative_until_condition_zero_or_more() {
    let d = UntilData::new();
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by("middle")
        .one_or_more()
        .optional()
        .until_ctx(middle_sum_is_6);

    let mut r = runner(pattern);
    compare_patterns(
        feed_records(&mut r, &d.input),
        vec![
            vec![
                d.start.clone(),
                d.middle1.clone(),
                d.middle2.clone(),
                d.middle3.clone(),
            ],
            vec![d.start.clone(), d.middle1.clone(), d.middle2.clone()],
            vec![d.start.clone(), d.middle1],
            vec![d.start],
        ],
    );
    assert_eq!(r.state().num_partial_matches(), 0);
    assert!(r.state().is_idle(), "only the start state must be left");
}

/// SameElementITCase.java `testClearingBufferWithUntilAtTheEnd`: the until
/// condition counts the events matched as `d`; afterwards only the start
/// state (`a`) is left.
#[test]
fn clearing_buffer_with_until_at_the_end() {
    let a1 = Event::new(40, "a", 1.0);
    let d1 = Event::new(41, "d", 2.0);
    let d2 = Event::new(41, "d", 2.0);
    let d3 = Event::new(41, "d", 2.0);
    let d4 = Event::new(41, "d", 2.0);
    let input = vec![
        (a1.clone(), 1),
        (d1.clone(), 2),
        (d2.clone(), 2),
        (d3.clone(), 2),
        (d4, 4),
    ];
    let pattern = Pattern::<Event>::begin("a")
        .where_(name_is("a"))
        .followed_by("d")
        .where_(name_is("d"))
        .one_or_more()
        .until_ctx(|_: &Event, ctx: &dyn Context<Event>| ctx.events_for_pattern("d").len() == 3);

    let mut r = runner(pattern);
    compare_patterns(
        feed_records(&mut r, &input),
        vec![
            vec![a1.clone(), d1.clone(), d2.clone(), d3],
            vec![a1.clone(), d1.clone(), d2],
            vec![a1, d1],
        ],
    );
    assert_eq!(r.state().num_partial_matches(), 0);
    assert!(r.state().is_idle(), "only the start state must be left");
}

/// SameElementITCase.java `testIterativeConditionWSameElement`: `end` takes
/// any event once the `middle` prices sum to 4 (so a third `a` can be `end`).
#[test]
fn iterative_condition_w_same_element() {
    let start = Event::new(40, "c", 1.0);
    let middle1 = Event::new(41, "a", 2.0);
    let middle1a = Event::new(41, "a", 2.0);
    let middle1b = Event::new(41, "a", 2.0);
    let end = Event::new(44, "b", 5.0);
    let input = vec![
        (start.clone(), 1),
        (middle1.clone(), 3),
        (middle1a.clone(), 3),
        (middle1b.clone(), 3),
        (end.clone(), 7),
    ];
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by_any("middle")
        .where_(name_is("a"))
        .one_or_more()
        .optional()
        .allow_combinations()
        .followed_by("end")
        .where_ctx(|_: &Event, ctx: &dyn Context<Event>| price_sum(ctx, "middle") == 4.0);

    compare_patterns(
        feed_nfa(pattern, &input),
        vec![
            vec![
                start.clone(),
                middle1.clone(),
                middle1a.clone(),
                end.clone(),
            ],
            vec![
                start.clone(),
                middle1.clone(),
                middle1a.clone(),
                middle1b.clone(),
            ],
            vec![start, middle1a, middle1b, end],
        ],
    );
}

/// AfterMatchSkipITCase.java `testSkipBeforeOtherAlreadyCompleted`:
/// `skipToFirst("c")`, `b` must have the price of the event matched as `a`.
/// The records have no timestamp (`Long.MIN_VALUE`), and the harness is built
/// with `forPattern`, so the pattern's skip strategy applies.
#[test]
fn skip_before_other_already_completed() {
    let a1 = Event::new(1, "a1", 0.0);
    let c1 = Event::new(2, "c1", 0.0);
    let a2 = Event::new(3, "a2", 1.0);
    let c2 = Event::new(4, "c2", 0.0);
    let b1 = Event::new(5, "b1", 1.0);
    let b2 = Event::new(6, "b2", 0.0);
    let input: Vec<(Event, i64)> = [&a1, &c1, &a2, &c2, &b1, &b2]
        .into_iter()
        .map(|e| (e.clone(), i64::MIN))
        .collect();

    let pattern =
        Pattern::<Event>::begin_with_skip("a", SkipStrategy::SkipToFirst("c".to_string()))
            .where_(|e: &Event| e.name.contains('a'))
            .followed_by("c")
            .where_(|e: &Event| e.name.contains('c'))
            .followed_by("b")
            .where_ctx(|e: &Event, ctx: &dyn Context<Event>| {
                e.name.contains('b')
                    && ctx
                        .events_for_pattern("a")
                        .first()
                        .is_some_and(|a| a.price == e.price)
            });

    compare_patterns(
        feed_records(&mut runner(pattern), &input),
        vec![vec![a1, c1, b2], vec![a2, c2, b1]],
    );
}

/// CEPITCase.java `testPartialMatchTimeoutOutputCompletedMatch`: a non-keyed
/// event-time job over five events (timestamps 0..4, bounded out-of-orderness
/// 5 ms, so every watermark before the end of the input is below all of them)
/// with `skipPastLastEvent`, `start` greedy consecutive one-or-more, `middle`
/// an iterative condition on the number of `start` events, `within(100 ms)`.
/// The select function outputs `start[0].id + "," + middle[0].id`; Flink
/// expects exactly `["3,5"]`.
#[test]
fn partial_match_timeout_output_completed_match() {
    let pattern = Pattern::<Event>::begin_with_skip("start", SkipStrategy::SkipPastLastEvent)
        .where_(name_is("start"))
        .one_or_more()
        .consecutive()
        .greedy()
        .followed_by("middle")
        .where_ctx(|e: &Event, ctx: &dyn Context<Event>| {
            if ctx.events_for_pattern("start").len() > 2 {
                e.name == "middle"
            } else {
                e.name == "end"
            }
        })
        .within_ms(100);
    let nfa = Arc::new(pattern.compile().expect("pattern compiles"));
    let mut op = CepOperator::<(), Event>::new(nfa, TimeDomain::EventTime);
    let mut sink = Collector::default();
    let input = [
        (Event::new(1, "start", 1.0), 0),
        (Event::new(2, "start", 2.0), 1),
        (Event::new(3, "start", 3.0), 2),
        (Event::new(4, "start", 4.0), 3),
        (Event::new(5, "end", 5.0), 4),
    ];
    for (e, ts) in input {
        op.process_element(&(), e, Timestamp::from_millis(ts), &mut sink);
    }
    // End of the bounded input: Long.MAX_VALUE watermark.
    op.advance_watermark(Watermark::MAX, &mut sink);

    let mut result: Vec<String> = sink
        .matches()
        .iter()
        .map(|m| {
            format!(
                "{},{}",
                first_of(m, "start").expect("start").id,
                first_of(m, "middle").expect("middle").id
            )
        })
        .collect();
    result.sort();
    assert_eq!(result, vec!["3,5".to_string()]);
}

/// CEPOperatorTest.java `testCEPOperatorSerializationWRocksDB`: the keyed
/// event-time operator with explicit watermarks (0, 2, 5, 100) and the
/// branching pattern with `MySubeventIterCondition` and `allowCombinations()`.
/// The RocksDB backend is irrelevant here; the expected matches are those of
/// `testIterativeWithBranchingPatternCombinations`.
#[test]
fn cep_operator_serialization_w_rocks_db() {
    let start1 = Event::new(40, "start", 1.0);
    let start2 = Event::new(40, "start", 2.0);
    let middle1 = Event::sub(40, "foo1", 1.0, 10.0);
    let middle2 = Event::sub(40, "foo2", 2.0, 10.0);
    let middle3 = Event::sub(40, "foo3", 3.0, 10.0);
    let middle4 = Event::sub(40, "foo4", 1.0, 10.0);
    let next_one = Event::new(40, "next-one", 1.0);
    let end = Event::new(40, "end", 1.0);

    let nfa = Arc::new(branching_pattern(false).compile().expect("compiles"));
    let mut op = CepOperator::<i32, Event>::new(nfa, TimeDomain::EventTime);
    let mut sink = Collector::default();
    let mut element = |op: &mut CepOperator<i32, Event>, e: &Event, ts: i64| {
        op.process_element(&e.id, e.clone(), Timestamp::from_millis(ts), &mut sink);
    };
    op.advance_watermark(Watermark::from_millis(0), &mut Collector::default());
    element(&mut op, &start1, 1);
    element(&mut op, &middle1, 2);
    let mut wm_out = Collector::default();
    op.advance_watermark(Watermark::from_millis(2), &mut wm_out);
    element(&mut op, &middle3, 5);
    element(&mut op, &middle2, 3);
    element(&mut op, &start2, 4);
    op.advance_watermark(Watermark::from_millis(5), &mut wm_out);
    element(&mut op, &next_one, 7);
    element(&mut op, &end, 8);
    element(&mut op, &middle4, 6);
    op.advance_watermark(Watermark::from_millis(100), &mut wm_out);

    assert!(
        sink.outputs.is_empty(),
        "no late events: {:?}",
        sink.outputs
    );
    let actual: Vec<Vec<Event>> = wm_out.matches().into_iter().map(flatten).collect();
    compare_patterns(
        actual,
        vec![
            vec![
                start1.clone(),
                end.clone(),
                middle1.clone(),
                middle2.clone(),
                middle4.clone(),
            ],
            vec![start1.clone(), end.clone(), middle2, middle1.clone()],
            vec![
                start1.clone(),
                end.clone(),
                middle3.clone(),
                middle1.clone(),
            ],
            vec![
                start2.clone(),
                end.clone(),
                middle3.clone(),
                middle4.clone(),
            ],
            vec![start1.clone(), end.clone(), middle4, middle1.clone()],
            vec![start1, end.clone(), middle1],
            vec![start2, end, middle3],
        ],
    );
}
