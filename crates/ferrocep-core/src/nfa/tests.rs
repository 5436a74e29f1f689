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

mod properties {
    //! Invariants that hold whatever the pattern.
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct E {
        kind: u8,
        idx: u32,
    }

    #[derive(Clone, Debug)]
    struct StageGen {
        kind: u8,
        contiguity: u8,
        quant: u8,
        optional: bool,
    }

    fn stage_gen() -> impl Strategy<Value = StageGen> {
        (0u8..3, 0u8..3, 0u8..5, any::<bool>()).prop_map(|(kind, contiguity, quant, optional)| {
            StageGen {
                kind,
                contiguity,
                quant,
                optional,
            }
        })
    }

    fn build(stages: &[StageGen], skip: SkipStrategy, window: Option<i64>) -> Pattern<E> {
        let mut p: Option<Pattern<E>> = None;
        for (i, s) in stages.iter().enumerate() {
            let name = format!("s{i}");
            let mut q = match p {
                None => Pattern::begin_with_skip(name, skip.clone()),
                Some(p) => match s.contiguity {
                    0 => p.next(name),
                    1 => p.followed_by(name),
                    _ => p.followed_by_any(name),
                },
            };
            let k = s.kind;
            q = q.where_(move |e: &E| e.kind == k);
            q = match s.quant {
                1 => q.one_or_more(),
                2 => q.times(2),
                3 => q.times_range(1, 3),
                _ => q,
            };
            if s.optional && i + 1 < stages.len() {
                q = q.optional();
            }
            p = Some(q);
        }
        let mut p = p.expect("at least one stage");
        if let Some(w) = window {
            p = p.within_ms(w);
        }
        p
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn matches_respect_conditions_order_window_and_skip(
            stages in prop::collection::vec(stage_gen(), 1..4),
            kinds in prop::collection::vec(0u8..3, 0..14),
            skip_past in any::<bool>(),
            window in prop::option::of(2i64..8),
        ) {
            let skip = if skip_past { SkipStrategy::SkipPastLastEvent } else { SkipStrategy::NoSkip };
            let Ok(nfa) = build(&stages, skip, window).compile() else { return Ok(()); };
            let mut r = NfaRunner::new(Arc::new(nfa));
            let mut all = Vec::new();
            for (i, k) in kinds.iter().enumerate() {
                for m in r.feed(E { kind: *k, idx: i as u32 }, i as i64 + 1) {
                    all.push(m);
                }
            }
            let mut last_end: Option<u32> = None;
            for m in &all {
                let mut idxs = Vec::new();
                for (stage, evs) in m {
                    let si: usize = stage[1..].parse().unwrap();
                    for e in evs {
                        prop_assert_eq!(e.kind, stages[si].kind, "event satisfies its stage condition");
                        idxs.push(e.idx);
                    }
                }
                let mut sorted = idxs.clone();
                sorted.sort();
                sorted.dedup();
                prop_assert_eq!(sorted.len(), idxs.len(), "no event twice in one match");
                let (first, last) = (sorted[0], *sorted.last().unwrap());
                if let Some(w) = window {
                    prop_assert!(((last - first) as i64) < w, "match spans less than the window");
                }
                if skip_past {
                    if let Some(end) = last_end {
                        prop_assert!(first > end, "skip_past_last_event: matches do not overlap");
                    }
                    last_end = Some(last);
                }
            }
            // Nothing leaks: after the window passes everything is released.
            if window.is_some() {
                r.advance_time(i64::MAX / 2);
                prop_assert_eq!(r.state().num_partial_matches(), 0);
                prop_assert_eq!(r.buffer().num_nodes(), 0);
                prop_assert_eq!(r.buffer().num_events(), 0);
            }
        }
    }
}
