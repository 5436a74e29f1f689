//! NFA tests on small alphabets, checked against Flink's documented results.

use std::sync::Arc;

use crate::nfa::NfaRunner;
use crate::pattern::{Pattern, SkipStrategy};

/// A test event: a name like "b2"; its first letter is its type.
type Ev = &'static str;

fn is(c: char) -> impl Fn(&Ev) -> bool + Send + Sync + 'static {
    move |e: &Ev| e.starts_with(c)
}

fn run(p: Pattern<Ev>, events: &[Ev]) -> Vec<String> {
    let nfa = Arc::new(p.compile().expect("valid pattern"));
    let mut r = NfaRunner::new(nfa);
    let mut out: Vec<String> = r
        .feed_all(events.iter().enumerate().map(|(i, e)| (*e, i as i64 + 1)))
        .into_iter()
        .map(|m| {
            m.into_iter()
                .flat_map(|(_, evs)| evs)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    out.sort();
    out
}

fn s(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    v.sort();
    v
}

#[test]
fn strict_and_relaxed_contiguity() {
    let p = Pattern::begin("a")
        .where_(is('a'))
        .next("b")
        .where_(is('b'));
    assert_eq!(run(p, &["a1", "b1", "a2", "c1", "b2"]), s(&["a1 b1"]));
    let p = Pattern::begin("a")
        .where_(is('a'))
        .followed_by("b")
        .where_(is('b'));
    assert_eq!(
        run(p, &["a1", "b1", "a2", "c1", "b2"]),
        s(&["a1 b1", "a2 b2"])
    );
    let p = Pattern::begin("a")
        .where_(is('a'))
        .followed_by_any("b")
        .where_(is('b'));
    assert_eq!(
        run(p, &["a1", "b1", "a2", "c1", "b2"]),
        s(&["a1 b1", "a1 b2", "a2 b2"])
    );
}

#[test]
fn looping_prefixes_each_match() {
    let p = Pattern::begin("c")
        .where_(is('c'))
        .followed_by("a")
        .where_(is('a'))
        .one_or_more()
        .followed_by("b")
        .where_(is('b'));
    assert_eq!(
        run(p, &["c1", "a1", "a2", "a3", "b1"]),
        s(&["c1 a1 b1", "c1 a1 a2 b1", "c1 a1 a2 a3 b1"])
    );
}

#[test]
fn allow_combinations_gives_every_subset_after_first() {
    let p = Pattern::begin("c")
        .where_(is('c'))
        .followed_by("a")
        .where_(is('a'))
        .one_or_more()
        .allow_combinations()
        .followed_by("b")
        .where_(is('b'));
    assert_eq!(run(p, &["c1", "a1", "a2", "a3", "b1"]).len(), 4);
}

fn bplus_c(skip: SkipStrategy) -> usize {
    let p = Pattern::begin_with_skip("b", skip)
        .where_(is('b'))
        .one_or_more()
        .followed_by("c")
        .where_(is('c'));
    run(p, &["b1", "b2", "b3", "c1"]).len()
}

#[test]
fn skip_strategies_on_bplus_c() {
    assert_eq!(bplus_c(SkipStrategy::NoSkip), 6);
    assert_eq!(bplus_c(SkipStrategy::SkipToFirst("b".into())), 3);
    assert_eq!(bplus_c(SkipStrategy::SkipToLast("b".into())), 2);
    assert_eq!(bplus_c(SkipStrategy::SkipToNext), 3);
    assert_eq!(bplus_c(SkipStrategy::SkipPastLastEvent), 1);
}

#[test]
fn optional_and_times() {
    let p = Pattern::begin("a")
        .where_(is('a'))
        .followed_by("b")
        .where_(is('b'))
        .optional()
        .followed_by("c")
        .where_(is('c'));
    assert_eq!(run(p, &["a1", "b1", "c1"]), s(&["a1 b1 c1", "a1 c1"]));
    let p = Pattern::begin("a").where_(is('a')).times(2);
    assert_eq!(run(p, &["a1", "a2", "a3"]), s(&["a1 a2", "a2 a3"]));
}

#[test]
fn not_next_and_not_followed_by() {
    let p = Pattern::begin("a")
        .where_(is('a'))
        .not_next("n")
        .where_(is('n'))
        .followed_by("b")
        .where_(is('b'));
    assert_eq!(run(p, &["a1", "n1", "b1", "a2", "c1", "b2"]), s(&["a2 b2"]));
    let p = Pattern::begin("a")
        .where_(is('a'))
        .not_followed_by("n")
        .where_(is('n'))
        .followed_by("b")
        .where_(is('b'));
    assert_eq!(run(p, &["a1", "n1", "b1", "a2", "c1", "b2"]), s(&["a2 b2"]));
}

#[test]
fn window_times_out_and_memory_is_freed() {
    let nfa = Arc::new(
        Pattern::<Ev>::begin("a")
            .where_(is('a'))
            .followed_by("b")
            .where_(is('b'))
            .within_ms(10)
            .compile()
            .unwrap(),
    );
    let mut r = NfaRunner::new(nfa);
    assert!(r.feed("a1", 1).is_empty());
    let (m, t) = r.advance_time(11);
    assert!(m.is_empty());
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].1, 11);
    assert!(r.state().is_idle());
    assert_eq!(r.buffer().num_events(), 0);
    assert_eq!(r.buffer().num_nodes(), 0);
}

#[test]
fn invalid_patterns_are_rejected() {
    assert!(Pattern::<Ev>::begin("a")
        .not_followed_by("b")
        .compile()
        .is_err());
    assert!(Pattern::<Ev>::begin("a").next("a").compile().is_err());
    assert!(
        Pattern::<Ev>::begin_with_skip("a", SkipStrategy::SkipToFirst("x".into()))
            .compile()
            .is_err()
    );
    assert!(Pattern::<Ev>::begin("a").greedy().compile().is_err());
    assert!(Pattern::<Ev>::begin("a")
        .times(2)
        .one_or_more()
        .compile()
        .is_err());
    assert!(Pattern::<Ev>::begin("a")
        .optional()
        .not_next("b")
        .compile()
        .is_err());
}
