//! Ports of `flink-libraries/flink-cep/src/test/java/org/apache/flink/cep/nfa/GroupITCase.java`
//! (all 18 tests) and `GreedyITCase.testGreedyZeroOrMoreBeforeGroupPattern`.
//!
//! Every test feeds the records the way Flink's `NFATestHarness` does
//! (`advanceTime(ts)` then `process(event, ts)`) and compares the matches as
//! multisets of event lists (`NFATestUtilities.comparePatterns`).

use ferrocep_core::pattern::Pattern;

use crate::util::{compare_patterns, feed_nfa, feed_records, name_is, runner, Event};

/// `Pattern.begin("middle1").where(a).followedBy("middle2").where(b)`, the
/// group most GroupITCase tests use.
fn a_then_b() -> Pattern<Event> {
    Pattern::begin("middle1")
        .where_(name_is("a"))
        .followed_by("middle2")
        .where_(name_is("b"))
}

/// Input of the "c a1 b1 a2 b2 d" tests (ids 40..45, timestamps 1..6).
struct Cabd {
    c: Event,
    a1: Event,
    b1: Event,
    a2: Event,
    b2: Event,
    d: Event,
}

impl Cabd {
    fn new() -> Self {
        Cabd {
            c: Event::new(40, "c", 1.0),
            a1: Event::new(41, "a", 2.0),
            b1: Event::new(42, "b", 3.0),
            a2: Event::new(43, "a", 4.0),
            b2: Event::new(44, "b", 5.0),
            d: Event::new(45, "d", 6.0),
        }
    }

    fn input(&self) -> Vec<(Event, i64)> {
        vec![
            (self.c.clone(), 1),
            (self.a1.clone(), 2),
            (self.b1.clone(), 3),
            (self.a2.clone(), 4),
            (self.b2.clone(), 5),
            (self.d.clone(), 6),
        ]
    }
}

/// Input of the "c a1 b1 a2 b2 a3 b3 d" followedByAny tests (timestamps 1..8).
struct Cabababd {
    c: Event,
    a1: Event,
    b1: Event,
    a2: Event,
    b2: Event,
    a3: Event,
    b3: Event,
    d: Event,
}

impl Cabababd {
    fn new() -> Self {
        Cabababd {
            c: Event::new(40, "c", 1.0),
            a1: Event::new(41, "a", 2.0),
            b1: Event::new(42, "b", 3.0),
            a2: Event::new(43, "a", 4.0),
            b2: Event::new(44, "b", 5.0),
            a3: Event::new(45, "a", 4.0),
            b3: Event::new(46, "b", 5.0),
            d: Event::new(47, "d", 6.0),
        }
    }

    fn input(&self) -> Vec<(Event, i64)> {
        vec![
            (self.c.clone(), 1),
            (self.a1.clone(), 2),
            (self.b1.clone(), 3),
            (self.a2.clone(), 4),
            (self.b2.clone(), 5),
            (self.a3.clone(), 6),
            (self.b3.clone(), 7),
            (self.d.clone(), 8),
        ]
    }
}

/// GroupITCase.java `testGroupFollowedByTimes`: `c (a b){2} d`.
#[test]
fn group_followed_by_times() {
    let e = Cabd::new();
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by_group(a_then_b())
        .times(2)
        .followed_by("end")
        .where_(name_is("d"));

    compare_patterns(
        feed_nfa(pattern, &e.input()),
        vec![vec![e.c, e.a1, e.b1, e.a2, e.b2, e.d]],
    );
}

/// GroupITCase.java `testGroupFollowedByOptional`: `c (a b)? d`.
#[test]
fn group_followed_by_optional() {
    let c = Event::new(40, "c", 1.0);
    let a1 = Event::new(41, "a", 2.0);
    let a2 = Event::new(42, "a", 2.0);
    let b = Event::new(43, "b", 3.0);
    let d = Event::new(44, "d", 4.0);
    let input = vec![
        (c.clone(), 1),
        (a1.clone(), 2),
        (a2.clone(), 3),
        (b.clone(), 4),
        (d.clone(), 5),
    ];

    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by_group(a_then_b())
        .optional()
        .followed_by("end")
        .where_(name_is("d"));

    compare_patterns(
        feed_nfa(pattern, &input),
        vec![vec![c.clone(), d.clone()], vec![c, a1, b, d]],
    );
}

/// GroupITCase.java `testFollowedByGroupTimesOptional`: `c (a b){2}? d`.
#[test]
fn followed_by_group_times_optional() {
    let c = Event::new(40, "c", 1.0);
    let a = Event::new(41, "a", 2.0);
    let d = Event::new(45, "d", 3.0);
    let input = vec![(c.clone(), 1), (a, 2), (d.clone(), 3)];

    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by_group(a_then_b())
        .times(2)
        .optional()
        .followed_by("end")
        .where_(name_is("d"));

    compare_patterns(feed_nfa(pattern, &input), vec![vec![c, d]]);
}

/// GroupITCase.java `testGroupFollowedByOneOrMore`: `c (a b)+ d`.
#[test]
fn group_followed_by_one_or_more() {
    let e = Cabd::new();
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by_group(a_then_b())
        .one_or_more()
        .followed_by("end")
        .where_(name_is("d"));

    compare_patterns(
        feed_nfa(pattern, &e.input()),
        vec![
            vec![e.c.clone(), e.a1.clone(), e.b1.clone(), e.d.clone()],
            vec![e.c, e.a1, e.b1, e.a2, e.b2, e.d],
        ],
    );
}

/// GroupITCase.java `testGroupFollowedByZeroOrMore`: `c (a b)* d`.
#[test]
fn group_followed_by_zero_or_more() {
    let e = Cabd::new();
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by_group(a_then_b())
        .one_or_more()
        .optional()
        .followed_by("end")
        .where_(name_is("d"));

    compare_patterns(
        feed_nfa(pattern, &e.input()),
        vec![
            vec![e.c.clone(), e.d.clone()],
            vec![e.c.clone(), e.a1.clone(), e.b1.clone(), e.d.clone()],
            vec![e.c, e.a1, e.b1, e.a2, e.b2, e.d],
        ],
    );
}

/// GroupITCase.java `testGroupFollowedByAnyTimesCombinations`:
/// `c any (a b){2} d` with `allowCombinations()`.
#[test]
fn group_followed_by_any_times_combinations() {
    let e = Cabababd::new();
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by_any_group(a_then_b())
        .times(2)
        .allow_combinations()
        .followed_by("end")
        .where_(name_is("d"));

    compare_patterns(
        feed_nfa(pattern, &e.input()),
        vec![
            vec![
                e.c.clone(),
                e.a1.clone(),
                e.b1.clone(),
                e.a2.clone(),
                e.b2.clone(),
                e.d.clone(),
            ],
            vec![
                e.c.clone(),
                e.a1.clone(),
                e.b1.clone(),
                e.a3.clone(),
                e.b3.clone(),
                e.d.clone(),
            ],
            vec![e.c, e.a2, e.b2, e.a3, e.b3, e.d],
        ],
    );
}

/// GroupITCase.java `testGroupFollowedByAnyTimesOptional`: `c any (a b){2}? d`.
#[test]
fn group_followed_by_any_times_optional() {
    let e = Cabababd::new();
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by_any_group(a_then_b())
        .times(2)
        .optional()
        .followed_by("end")
        .where_(name_is("d"));

    compare_patterns(
        feed_nfa(pattern, &e.input()),
        vec![
            vec![e.c.clone(), e.d.clone()],
            vec![
                e.c.clone(),
                e.a1.clone(),
                e.b1.clone(),
                e.a2.clone(),
                e.b2.clone(),
                e.d.clone(),
            ],
            vec![e.c, e.a2, e.b2, e.a3, e.b3, e.d],
        ],
    );
}

/// GroupITCase.java `testGroupFollowedByAnyOneOrMore`: `c any (a b){1,} d`.
#[test]
fn group_followed_by_any_one_or_more() {
    let e = Cabababd::new();
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by_any_group(a_then_b())
        .one_or_more()
        .followed_by("end")
        .where_(name_is("d"));

    let input = e.input();
    let Cabababd {
        c,
        a1,
        b1,
        a2,
        b2,
        a3,
        b3,
        d,
    } = e;
    compare_patterns(
        feed_nfa(pattern, &input),
        vec![
            vec![c.clone(), a1.clone(), b1.clone(), d.clone()],
            vec![c.clone(), a2.clone(), b2.clone(), d.clone()],
            vec![c.clone(), a3.clone(), b3.clone(), d.clone()],
            vec![
                c.clone(),
                a1.clone(),
                b1.clone(),
                a2.clone(),
                b2.clone(),
                d.clone(),
            ],
            vec![
                c.clone(),
                a2.clone(),
                b2.clone(),
                a3.clone(),
                b3.clone(),
                d.clone(),
            ],
            vec![c, a1, b1, a2, b2, a3, b3, d],
        ],
    );
}

/// GroupITCase.java `testGroupNextZeroOrMore`: `c next (a b)* d` with the
/// group `consecutive()`.
#[test]
fn group_next_zero_or_more() {
    let c = Event::new(40, "c", 1.0);
    let a1 = Event::new(41, "a", 2.0);
    let b1 = Event::new(42, "b", 3.0);
    let a2 = Event::new(43, "a", 3.0);
    let b2 = Event::new(44, "b", 3.0);
    let a3 = Event::new(45, "a", 4.0);
    let b3 = Event::new(46, "b", 3.0);
    let d = Event::new(47, "d", 1.0);
    let input = vec![
        (c.clone(), 1),
        (a1.clone(), 3),
        (b1.clone(), 4),
        (a2.clone(), 5),
        (b2.clone(), 6),
        (a3.clone(), 7),
        (b3.clone(), 8),
        (d.clone(), 9),
    ];

    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .next_group(a_then_b())
        .one_or_more()
        .optional()
        .consecutive()
        .followed_by("end")
        .where_(name_is("d"));

    compare_patterns(
        feed_nfa(pattern, &input),
        vec![
            vec![c.clone(), d.clone()],
            vec![c.clone(), a1.clone(), b1.clone(), d.clone()],
            vec![
                c.clone(),
                a1.clone(),
                b1.clone(),
                a2.clone(),
                b2.clone(),
                d.clone(),
            ],
            vec![c, a1, b1, a2, b2, a3, b3, d],
        ],
    );
}

/// Input of `testGroupNotFollowedBy` / `testGroupNotNext`.
fn c_ab_d_ab_e() -> (Vec<(Event, i64)>, [Event; 4]) {
    let c = Event::new(40, "c", 1.0);
    let a1 = Event::new(41, "a", 2.0);
    let b1 = Event::new(42, "b", 3.0);
    let d = Event::new(43, "d", 3.0);
    let a2 = Event::new(44, "a", 4.0);
    let b2 = Event::new(45, "b", 5.0);
    let e = Event::new(46, "e", 6.0);
    let input = vec![
        (c.clone(), 1),
        (a1, 2),
        (b1, 3),
        (d, 4),
        (a2.clone(), 5),
        (b2.clone(), 6),
        (e.clone(), 7),
    ];
    (input, [c, a2, b2, e])
}

/// GroupITCase.java `testGroupNotFollowedBy`: `c any (a b) notFollowedBy d, e`.
#[test]
fn group_not_followed_by() {
    let (input, [c, a2, b2, e]) = c_ab_d_ab_e();
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by_any_group(a_then_b())
        .not_followed_by("notPattern")
        .where_(name_is("d"))
        .followed_by("end")
        .where_(name_is("e"));

    compare_patterns(feed_nfa(pattern, &input), vec![vec![c, a2, b2, e]]);
}

/// GroupITCase.java `testGroupNotNext`: `c any (a b) notNext d, e`.
#[test]
fn group_not_next() {
    let (input, [c, a2, b2, e]) = c_ab_d_ab_e();
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by_any_group(a_then_b())
        .not_next("notPattern")
        .where_(name_is("d"))
        .followed_by("end")
        .where_(name_is("e"));

    compare_patterns(feed_nfa(pattern, &input), vec![vec![c, a2, b2, e]]);
}

/// `Pattern.begin("middle2").where(b).followedBy("middle3").where(c)`.
fn b_then_c() -> Pattern<Event> {
    Pattern::begin("middle2")
        .where_(name_is("b"))
        .followed_by("middle3")
        .where_(name_is("c"))
}

/// GroupITCase.java `testGroupNest`: `d (a (b c)*)? e`.
#[test]
fn group_nest() {
    let d = Event::new(40, "d", 1.0);
    let a1 = Event::new(41, "a", 2.0);
    let b1 = Event::new(42, "b", 3.0);
    let c1 = Event::new(43, "c", 4.0);
    let b2 = Event::new(44, "b", 5.0);
    let c2 = Event::new(45, "c", 4.0);
    let e = Event::new(46, "e", 6.0);
    let input = vec![
        (d.clone(), 1),
        (a1.clone(), 2),
        (b1.clone(), 3),
        (c1.clone(), 4),
        (b2.clone(), 5),
        (c2.clone(), 6),
        (e.clone(), 7),
    ];

    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("d"))
        .followed_by_group(
            Pattern::begin("middle1")
                .where_(name_is("a"))
                .followed_by_group(b_then_c())
                .one_or_more()
                .optional(),
        )
        .optional()
        .followed_by("end")
        .where_(name_is("e"));

    compare_patterns(
        feed_nfa(pattern, &input),
        vec![
            vec![d.clone(), e.clone()],
            vec![d.clone(), a1.clone(), e.clone()],
            vec![d.clone(), a1.clone(), b1.clone(), c1.clone(), e.clone()],
            vec![d, a1, b1, c1, b2, c2, e],
        ],
    );
}

/// Events of `testGroupNestTimes` / `testGroupNestTimesConsecutive`:
/// d, a1, (b c) x3, a2, (b c) x3, e.
struct Nest {
    d: Event,
    a1: Event,
    bc1: [Event; 6],
    a2: Event,
    bc2: [Event; 6],
    e: Event,
}

impl Nest {
    fn new() -> Self {
        Nest {
            d: Event::new(40, "d", 1.0),
            a1: Event::new(41, "a", 2.0),
            bc1: [
                Event::new(42, "b", 3.0),
                Event::new(43, "c", 4.0),
                Event::new(44, "b", 5.0),
                Event::new(45, "c", 4.0),
                Event::new(46, "b", 5.0),
                Event::new(47, "c", 4.0),
            ],
            a2: Event::new(48, "a", 2.0),
            bc2: [
                Event::new(49, "b", 3.0),
                Event::new(50, "c", 4.0),
                Event::new(51, "b", 5.0),
                Event::new(52, "c", 4.0),
                Event::new(53, "b", 5.0),
                Event::new(54, "c", 4.0),
            ],
            e: Event::new(55, "e", 6.0),
        }
    }

    /// `d, a1..c3, a2..c6, e` as one list.
    fn all(&self) -> Vec<Event> {
        let mut v = vec![self.d.clone(), self.a1.clone()];
        v.extend(self.bc1.iter().cloned());
        v.push(self.a2.clone());
        v.extend(self.bc2.iter().cloned());
        v.push(self.e.clone());
        v
    }

    fn first_group(&self) -> Vec<Event> {
        let mut v = vec![self.d.clone(), self.a1.clone()];
        v.extend(self.bc1.iter().cloned());
        v.push(self.e.clone());
        v
    }

    fn second_group(&self) -> Vec<Event> {
        let mut v = vec![self.d.clone(), self.a2.clone()];
        v.extend(self.bc2.iter().cloned());
        v.push(self.e.clone());
        v
    }
}

/// GroupITCase.java `testGroupNestTimes`: `d any (a (b c){3}){0,2} e`.
#[test]
fn group_nest_times() {
    let n = Nest::new();
    let input: Vec<(Event, i64)> = n.all().into_iter().zip(1..).collect();

    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("d"))
        .followed_by_any_group(
            Pattern::begin("middle1")
                .where_(name_is("a"))
                .followed_by_group(b_then_c())
                .times(3),
        )
        .times_range(0, 2)
        .followed_by("end")
        .where_(name_is("e"));

    compare_patterns(
        feed_nfa(pattern, &input),
        vec![
            vec![n.d.clone(), n.e.clone()],
            n.first_group(),
            n.second_group(),
            n.all(),
        ],
    );
}

/// GroupITCase.java `testGroupNestTimesConsecutive`:
/// `d any (a (b c){3} consecutive){0,2} consecutive e`, with a "breaking"
/// event between c4 and b5.
#[test]
fn group_nest_times_consecutive() {
    let n = Nest::new();
    let mut events = vec![n.d.clone(), n.a1.clone()];
    events.extend(n.bc1.iter().cloned());
    events.push(n.a2.clone());
    events.extend(n.bc2[..2].iter().cloned());
    events.push(Event::new(0, "breaking", 99.0));
    events.extend(n.bc2[2..].iter().cloned());
    events.push(n.e.clone());
    let input: Vec<(Event, i64)> = events.into_iter().zip(1..).collect();
    assert_eq!(input.last().map(|r| r.1), Some(17));

    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("d"))
        .followed_by_any_group(
            Pattern::begin("middle1")
                .where_(name_is("a"))
                .followed_by_group(b_then_c())
                .times(3)
                .consecutive(),
        )
        .times_range(0, 2)
        .consecutive()
        .followed_by("end")
        .where_(name_is("e"));

    compare_patterns(
        feed_nfa(pattern, &input),
        vec![vec![n.d.clone(), n.e.clone()], n.first_group()],
    );
}

/// GroupITCase.java `testGroupBegin`: `(a b){1,2} d`, the pattern begins with
/// a group.
#[test]
fn group_begin() {
    let a1 = Event::new(41, "a", 2.0);
    let b1 = Event::new(42, "b", 3.0);
    let a2 = Event::new(43, "a", 4.0);
    let b2 = Event::new(44, "b", 5.0);
    let d = Event::new(45, "d", 6.0);
    let input = vec![
        (a1.clone(), 1),
        (b1.clone(), 2),
        (a2.clone(), 3),
        (b2.clone(), 4),
        (d.clone(), 5),
    ];

    let pattern = Pattern::<Event>::begin_group(a_then_b())
        .times_range(1, 2)
        .followed_by("end")
        .where_(name_is("d"));

    compare_patterns(
        feed_nfa(pattern, &input),
        vec![
            vec![a1.clone(), b1.clone(), d.clone()],
            vec![a2.clone(), b2.clone(), d.clone()],
            vec![a1, b1, a2, b2, d],
        ],
    );
}

/// GroupITCase.java `testGroupFollowedByOneOrMoreWithUntilCondition`:
/// `c (a b)+ until d, d`; afterwards only the start state is left
/// (`nfaState.getPartialMatches()` is `[start]`).
#[test]
fn group_followed_by_one_or_more_with_until_condition() {
    let e = Cabd::new();
    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by_group(a_then_b())
        .one_or_more()
        .until(name_is("d"))
        .followed_by("end")
        .where_(name_is("d"));

    let mut r = runner(pattern);
    compare_patterns(
        feed_records(&mut r, &e.input()),
        vec![
            vec![e.c.clone(), e.a1.clone(), e.b1.clone(), e.d.clone()],
            vec![e.c, e.a1, e.b1, e.a2, e.b2, e.d],
        ],
    );
    assert_eq!(r.state().num_partial_matches(), 0);
    assert!(r.state().is_idle(), "only the start state must be left");
}

/// GroupITCase.java `testGroupStartsWithOptionalPattern`: `a next (b? c) next d`.
#[test]
fn group_starts_with_optional_pattern() {
    let a = Event::new(40, "a", 1.0);
    let c = Event::new(41, "c", 2.0);
    let d = Event::new(42, "d", 3.0);
    let input = vec![(a.clone(), 1), (c.clone(), 2), (d.clone(), 3)];

    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("a"))
        .next_group(
            Pattern::begin("middle1")
                .where_(name_is("b"))
                .optional()
                .next("middle2")
                .where_(name_is("c")),
        )
        .next("d")
        .where_(name_is("d"));

    compare_patterns(feed_nfa(pattern, &input), vec![vec![a, c, d]]);
}

/// GroupITCase.java `testFollowedByOptionalGroupPattern`: `a -> (b next c)? next d`.
#[test]
fn followed_by_optional_group_pattern() {
    let a = Event::new(40, "a", 1.0);
    let d1 = Event::new(41, "d", 2.0);
    let d2 = Event::new(42, "d", 3.0);
    let input = vec![(a.clone(), 1), (d1.clone(), 2), (d2, 3)];

    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("a"))
        .followed_by_group(
            Pattern::begin("middle1")
                .where_(name_is("b"))
                .next("middle2")
                .where_(name_is("c")),
        )
        .optional()
        .next("d")
        .where_(name_is("d"));

    compare_patterns(feed_nfa(pattern, &input), vec![vec![a, d1]]);
}

/// GreedyITCase.java `testGreedyZeroOrMoreBeforeGroupPattern`: `c a* (d e){2} f`
/// with `a*` greedy.
#[test]
fn greedy_zero_or_more_before_group_pattern() {
    let c = Event::new(40, "c", 1.0);
    let a1 = Event::new(40, "a", 1.0);
    let a2 = Event::new(40, "a", 1.0);
    let a3 = Event::new(40, "a", 1.0);
    let d1 = Event::new(40, "d", 1.0);
    let e1 = Event::new(40, "e", 1.0);
    let d2 = Event::new(40, "d", 1.0);
    let e2 = Event::new(40, "e", 1.0);
    let f = Event::new(44, "f", 3.0);
    let input = vec![
        (c.clone(), 1),
        (a1.clone(), 2),
        (a2.clone(), 3),
        (Event::new(43, "dummy", 2.0), 4),
        (a3.clone(), 5),
        (d1.clone(), 6),
        (e1.clone(), 7),
        (d2.clone(), 8),
        (e2.clone(), 9),
        (f.clone(), 10),
    ];

    let pattern = Pattern::<Event>::begin("start")
        .where_(name_is("c"))
        .followed_by("middle")
        .where_(name_is("a"))
        .one_or_more()
        .optional()
        .greedy()
        .followed_by_group(
            Pattern::begin("middle1")
                .where_(name_is("d"))
                .followed_by("middle2")
                .where_(name_is("e")),
        )
        .times(2)
        .followed_by("end")
        .where_(name_is("f"));

    compare_patterns(
        feed_nfa(pattern, &input),
        vec![vec![c, a1, a2, a3, d1, e1, d2, e2, f]],
    );
}
