//! A validated spec turned into a [`Pattern`] over [`JsonEvent`]s, exactly as
//! the reference's `Patterns.build` does it: one Pattern call per spec field,
//! in a fixed order, because Flink's checks (quantifier already applied,
//! optional after greedy, `until` on a non-looping stage, ...) depend on it.
//!
//! For each stage, in order:
//! `begin(name, skip)` (first stage) or `next` / `followed_by` /
//! `followed_by_any` / `not_next` / `not_followed_by` (its contiguity), then
//! `where`, `times(n)`, `times(from, to)`, `times_or_more`, `one_or_more`,
//! `optional`, `greedy`, `consecutive`, `allow_combinations`, `until`,
//! `within` (PREVIOUS_AND_CURRENT), each only when the field is set.
//! Finally the whole-pattern `within` on the last stage.
//!
//! A condition is the precomputed bit of its expression:
//! `move |e: &JsonEvent| e.cond(i)`. A stage without `where` gets no
//! condition (Flink's "every event").

use crate::pattern::{Condition, Contiguity, Pattern, PatternError, WithinType};

use super::event::JsonEvent;
use super::{Spec, TimesSpec};

/// The condition that reads bit `i` of an event.
fn cond(i: usize) -> Condition<JsonEvent> {
    Condition::simple(move |e: &JsonEvent| e.cond(i))
}

/// Builds the pattern; also returns the first Pattern error with the spec
/// field whose call caused it (`stages[1].greedy`, `within`, ...).
pub(crate) fn build(spec: &Spec) -> (Pattern<JsonEvent>, Option<(String, PatternError)>) {
    let mut first_error: Option<(String, PatternError)> = None;
    // Records the error a call just made, naming the field.
    let mut check = |p: Pattern<JsonEvent>, field: &dyn Fn() -> String| {
        if first_error.is_none() {
            if let Some(e) = &p.error {
                first_error = Some((field(), e.clone()));
            }
        }
        p
    };

    let mut pattern: Option<Pattern<JsonEvent>> = None;
    for (i, g) in spec.stages.iter().enumerate() {
        let at = |field: &'static str| move || format!("stages[{i}].{field}");
        let name = g.name.clone();
        let mut p = match pattern.take() {
            None => Pattern::begin_with_skip(name, spec.skip.clone()),
            Some(p) => {
                let p = match g.contiguity.unwrap_or(Contiguity::SkipTillNext) {
                    Contiguity::Strict => p.next(name),
                    Contiguity::SkipTillAny => p.followed_by_any(name),
                    Contiguity::NotNext => p.not_next(name),
                    Contiguity::NotFollow => p.not_followed_by(name),
                    Contiguity::SkipTillNext => p.followed_by(name),
                };
                check(p, &at("contiguity"))
            }
        };
        if let Some(w) = &g.where_ {
            p = check(p.where_condition(cond(w.index)), &at("where"));
        }
        match g.times {
            Some(TimesSpec::Exactly(n)) => p = check(p.times(n), &at("times")),
            Some(TimesSpec::Range { from, to }) => {
                p = check(p.times_range(from, to), &at("times"));
            }
            None => {}
        }
        if let Some(n) = g.times_or_more {
            p = check(p.times_or_more(n), &at("times_or_more"));
        }
        if g.one_or_more {
            p = check(p.one_or_more(), &at("one_or_more"));
        }
        if g.optional {
            p = check(p.optional(), &at("optional"));
        }
        if g.greedy {
            p = check(p.greedy(), &at("greedy"));
        }
        if g.consecutive {
            p = check(p.consecutive(), &at("consecutive"));
        }
        if g.allow_combinations {
            p = check(p.allow_combinations(), &at("allow_combinations"));
        }
        if let Some(u) = &g.until {
            p = check(p.until_condition(cond(u.index)), &at("until"));
        }
        if let Some(w) = g.within {
            p = check(
                p.within_type(w, WithinType::PreviousAndCurrent),
                &at("within"),
            );
        }
        pattern = Some(p);
    }
    // A validated spec has at least one stage; an emptied one still gets a pattern.
    let mut p = pattern.unwrap_or_else(|| Pattern::begin_with_skip("", spec.skip.clone()));
    if let Some(w) = spec.within {
        p = check(p.within(w), &|| "within".to_string());
    }
    if spec.skip_throw {
        p = check(p.throw_exception_on_miss(), &|| "skip".to_string());
    }
    (p, first_error)
}
