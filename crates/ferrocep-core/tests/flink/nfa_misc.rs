//! Ports of the Flink CEP tests that assert the internal state after pruning
//! ("Clearing SharedBuffer" of `nfa/NFAITCase.java`, and
//! `nfa/AfterMatchSkipITCase.java` `testSharedBufferIsProperlyCleared`).
//!
//! Flink's `nfaState.getPartialMatches()` holds the start computation state
//! too: "one partial match, named `start`" is ferrocep's
//! `num_partial_matches() == 0` (the start run is not counted) with
//! `is_idle()`.

use ferrocep_core::nfa::NfaRunner;
use ferrocep_core::pattern::{Pattern, SkipStrategy, WithinType};

use crate::util::{name_is, runner, Event};

/// After `advanceTime(10)`: `assertEquals(1, getPartialMatches().size())` and
/// its state is `start`. Also checks that nothing is left in the shared
/// buffer (Flink does not assert it, but every partial match and every
/// emitted match has released its events by then).
#[track_caller]
fn assert_only_start_state(r: &NfaRunner<Event>) {
    assert_eq!(r.state().num_partial_matches(), 0);
    assert!(r.state().is_idle(), "only the start state must be left");
    assert_eq!(r.buffer().num_events(), 0, "shared buffer events");
    assert_eq!(r.buffer().num_nodes(), 0, "shared buffer nodes");
}

/// NFAITCase.java `testTimesClearingBufferWithinFirstAndLast`
/// (`testTimesClearingBuffer(WithinType.FIRST_AND_LAST)`): `c next a{2} -> b
/// within 8 ms`, then `advanceTime(10)` prunes everything.
#[test]
fn times_clearing_buffer_within_first_and_last() {
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .next("middle")
        .where_(name_is("a"))
        .times(2)
        .followed_by("end1")
        .where_(name_is("b"))
        .within_ms(8);
    let mut r = runner(pattern);
    let start = Event::new(40, "c", 1.0);
    let middle1 = Event::new(41, "a", 2.0);
    let middle2 = Event::new(42, "a", 3.0);
    let middle3 = Event::new(43, "a", 4.0);
    let end1 = Event::new(44, "b", 5.0);

    r.feed(start, 1);
    r.feed(middle1, 2);
    r.feed(middle2, 3);
    r.feed(middle3, 4);
    r.feed(end1, 6);
    // pruning element
    r.advance_time(10);

    assert_only_start_state(&r);
}

/// NFAITCase.java `testOptionalClearingBufferWithinFirstAndLast`: `c -> a? -> b
/// within 8 ms`, then `advanceTime(10)`.
#[test]
fn optional_clearing_buffer_within_first_and_last() {
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by("middle")
        .where_(name_is("a"))
        .optional()
        .followed_by("end1")
        .where_(name_is("b"))
        .within_ms(8);
    let mut r = runner(pattern);

    r.feed(Event::new(40, "c", 1.0), 1);
    r.feed(Event::new(43, "a", 4.0), 5);
    r.feed(Event::new(44, "b", 5.0), 6);
    // pruning element
    r.advance_time(10);

    assert_only_start_state(&r);
}

/// `testAtLeastOneClearingBuffer`: `c -> a+ (combinations) -> b within 8 ms`.
fn at_least_one_clearing_buffer() {
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by("middle")
        .where_(name_is("a"))
        .one_or_more()
        .allow_combinations()
        .followed_by("end1")
        .where_(name_is("b"))
        .within_ms(8);
    let mut r = runner(pattern);

    r.feed(Event::new(40, "c", 1.0), 1);
    r.feed(Event::new(41, "a", 2.0), 3);
    r.feed(Event::new(42, "a", 3.0), 4);
    r.feed(Event::new(44, "b", 5.0), 6);
    // pruning element
    r.advance_time(10);

    assert_only_start_state(&r);
}

/// NFAITCase.java `testAtLeastOneClearingBufferWithinFirstAndLast`.
#[test]
fn at_least_one_clearing_buffer_within_first_and_last() {
    at_least_one_clearing_buffer();
}

/// NFAITCase.java `testAtLeastOneClearingBufferWithPreviousAndCurrent`: despite
/// its name, Flink's `testAtLeastOneClearingBuffer(withinType)` ignores the
/// within type (`.within(Time.milliseconds(8))`, i.e. FIRST_AND_LAST), so this
/// is the same scenario as the test above.
#[test]
fn at_least_one_clearing_buffer_with_previous_and_current() {
    at_least_one_clearing_buffer();
}

/// NFAITCase.java `testZeroOrMoreClearingBufferWithinFirstAndLast`:
/// `c -> a* (combinations) -> b within 8 ms`.
#[test]
fn zero_or_more_clearing_buffer_within_first_and_last() {
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by("middle")
        .where_(name_is("a"))
        .one_or_more()
        .allow_combinations()
        .optional()
        .followed_by("end1")
        .where_(name_is("b"))
        .within_ms(8);
    let mut r = runner(pattern);

    r.feed(Event::new(40, "c", 1.0), 1);
    r.feed(Event::new(41, "a", 2.0), 3);
    r.feed(Event::new(42, "a", 3.0), 4);
    r.feed(Event::new(44, "b", 5.0), 6);
    // pruning element
    r.advance_time(10);

    assert_only_start_state(&r);
}

/// NFAITCase.java `testLoopClearingWithinFirstAndLast`: `start a{4} within 3 ms`
/// (skip past last event; the NFA is driven with `noSkip`), `process(a1, 1)`,
/// `process(a2, 2)`, `advanceTime(4)`: the partial match started by a1 is
/// pruned, the one started by a2 keeps a2, so the shared buffer holds one
/// event.
#[test]
fn loop_clearing_within_first_and_last() {
    // Flink calls nfa.process directly, with AfterMatchSkipStrategy.noSkip().
    let pattern = Pattern::<Event>::begin_with_skip("start", SkipStrategy::NoSkip)
        .times(4)
        .where_(name_is("a"))
        .within_ms(3);
    let mut r = runner(pattern);

    // `feed` also calls advance_time(ts) first, which prunes nothing here
    // (advance_time(2): 2 - 1 < 3).
    assert!(r.feed(Event::new(40, "a", 1.0), 1).is_empty());
    assert!(r.feed(Event::new(40, "a", 1.0), 2).is_empty());
    let (m, _) = r.advance_time(4);
    assert!(m.is_empty());

    assert_eq!(r.buffer().num_events(), 1);
}

/// NFAITCase.java `testTimesClearingBufferWithinPreviousAndCurrent`
/// (`testTimesClearingBuffer(WithinType.PREVIOUS_AND_CURRENT)`): `c next
/// a{2} -> b`, the window of 8 ms between `b` and the event before it; after
/// `advanceTime(10)` only the start state is left.
#[test]
fn times_clearing_buffer_within_previous_and_current() {
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .next("middle")
        .where_(name_is("a"))
        .times(2)
        .followed_by("end1")
        .where_(name_is("b"))
        .within_type_ms(8, WithinType::PreviousAndCurrent);
    let mut r = runner(pattern);

    r.feed(Event::new(40, "c", 1.0), 1);
    r.feed(Event::new(41, "a", 2.0), 2);
    r.feed(Event::new(42, "a", 3.0), 3);
    r.feed(Event::new(43, "a", 4.0), 4);
    r.feed(Event::new(44, "b", 5.0), 6);
    // pruning element
    r.advance_time(10);

    assert_only_start_state(&r);
    assert_eq!(r.state().partial_match_states(r.nfa()), ["start"]);
}

/// NFAITCase.java `testOptionalClearingBufferWithinPreviousAndCurrent`:
/// `c -> a? -> b`, 8 ms between `b` and the event before it.
#[test]
fn optional_clearing_buffer_within_previous_and_current() {
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by("middle")
        .where_(name_is("a"))
        .optional()
        .followed_by("end1")
        .where_(name_is("b"))
        .within_type_ms(8, WithinType::PreviousAndCurrent);
    let mut r = runner(pattern);

    r.feed(Event::new(40, "c", 1.0), 1);
    r.feed(Event::new(43, "a", 4.0), 5);
    r.feed(Event::new(44, "b", 5.0), 6);
    // pruning element
    r.advance_time(10);

    assert_only_start_state(&r);
    assert_eq!(r.state().partial_match_states(r.nfa()), ["start"]);
}

/// NFAITCase.java `testZeroOrMoreClearingBufferWithinPreviousAndCurrent`:
/// `c -> a* (combinations) -> b`, 8 ms between `b` and the event before it.
/// The window is the last stage's only, so at `advanceTime(10)` the two
/// partial matches in the loop (last event at 3 and at 4) stay: Flink
/// asserts the states `middle:0`, `middle:0`, `start`, in that order.
#[test]
fn zero_or_more_clearing_buffer_within_previous_and_current() {
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by("middle")
        .where_(name_is("a"))
        .one_or_more()
        .allow_combinations()
        .optional()
        .followed_by("end1")
        .where_(name_is("b"))
        .within_type_ms(8, WithinType::PreviousAndCurrent);
    let mut r = runner(pattern);

    r.feed(Event::new(40, "c", 1.0), 1);
    r.feed(Event::new(41, "a", 2.0), 3);
    r.feed(Event::new(42, "a", 3.0), 4);
    r.feed(Event::new(44, "b", 5.0), 6);
    // pruning element
    r.advance_time(10);

    assert_eq!(r.state().num_partial_matches(), 2);
    assert_eq!(
        r.state().partial_match_states(r.nfa()).concat(),
        "middle:0middle:0start"
    );
}

/// NFAITCase.java `testLoopClearingWithinPreviousAndCurrent`: as
/// `testLoopClearingWithinFirstAndLast`, but `within(3 ms,
/// PREVIOUS_AND_CURRENT)` on the looping stage: nothing is pruned at
/// `advanceTime(4)` (a2 is 2 ms after a1), so both events stay.
#[test]
fn loop_clearing_within_previous_and_current() {
    let pattern = Pattern::<Event>::begin_with_skip("start", SkipStrategy::NoSkip)
        .times(4)
        .where_(name_is("a"))
        .within_type_ms(3, WithinType::PreviousAndCurrent);
    let mut r = runner(pattern);

    assert!(r.feed(Event::new(40, "a", 1.0), 1).is_empty());
    assert!(r.feed(Event::new(40, "a", 1.0), 2).is_empty());
    let (m, _) = r.advance_time(4);
    assert!(m.is_empty());

    assert_eq!(r.buffer().num_events(), 2);
}

/// AfterMatchSkipITCase.java `testSharedBufferIsProperlyCleared`: four `a`
/// events (timestamps 0..3), `start{2}` with `skipPastLastEvent`; afterwards
/// the shared buffer is empty.
#[test]
fn shared_buffer_is_properly_cleared() {
    let pattern = Pattern::<Event>::begin_with_skip("start", SkipStrategy::SkipPastLastEvent)
        .where_(|_: &Event| true)
        .times(2);
    let mut r = runner(pattern);

    for i in 0..4 {
        r.feed(Event::new(1, "a", 1.0), i);
    }

    assert_eq!(r.buffer().num_events(), 0, "shared buffer events");
    assert_eq!(r.buffer().num_nodes(), 0, "shared buffer nodes");
}
