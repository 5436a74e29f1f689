//! The Pattern API: a Flink-like builder describing a sequence of stages, their
//! conditions, contiguity, quantifiers, window and after-match skip strategy.
//!
//! A [`Pattern`] is only a description; [`Pattern::compile`] checks it the way
//! Flink's `Pattern` methods and `NFACompiler` do and turns it into an
//! immutable [`crate::nfa::Nfa`]. That method is defined in `nfa::compile`,
//! which owns compilation: `nfa` uses this module, never the reverse.
//!
//! ```
//! use ferrocep_core::pattern::Pattern;
//! use std::time::Duration;
//!
//! #[derive(Clone, Debug)]
//! struct Order { kind: &'static str }
//!
//! let nfa = Pattern::<Order>::begin("create")
//!     .where_(|o: &Order| o.kind == "create")
//!     .followed_by("pay")
//!     .where_(|o: &Order| o.kind == "pay")
//!     .within(Duration::from_secs(600))
//!     .compile()
//!     .unwrap();
//! assert_eq!(nfa.window(), Some(600_000));
//! ```

mod condition;

pub use condition::{Condition, Context};

use std::time::Duration;

use thiserror::Error;

/// How a stage's first event follows the previous stage (Flink `ConsumingStrategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Contiguity {
    /// `next`: the very next event.
    Strict,
    /// `followedBy`: skip non-matching events, take the first matching one.
    SkipTillNext,
    /// `followedByAny`: every later matching event starts another branch.
    SkipTillAny,
    /// `notNext`: the next event must not match.
    NotNext,
    /// `notFollowedBy`: no matching event until the next stage matches.
    NotFollow,
}

/// Which two events of a match a `within` window spans (Flink `WithinType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WithinType {
    /// From the match's first event to its last (Flink's default): one
    /// window for the whole pattern, the smallest of all stages'.
    #[default]
    FirstAndLast,
    /// From the match's previous event to the event this stage takes: a
    /// window per stage, checked whenever time advances (a partial match
    /// waiting in the stage times out at `previous + window`).
    PreviousAndCurrent,
}

/// What happens after a match is found (Flink `AfterMatchSkipStrategy`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum SkipStrategy {
    /// Every match is emitted.
    #[default]
    NoSkip,
    /// Discard partial matches that started with the match's first event.
    SkipToNext,
    /// Discard partial matches that started at or before the match's last event.
    SkipPastLastEvent,
    /// Discard partial matches that started before the first event of the stage.
    SkipToFirst(String),
    /// Discard partial matches that started before the last event of the stage.
    SkipToLast(String),
}

impl SkipStrategy {
    /// The stage name a `skip_to_first`/`skip_to_last` strategy refers to.
    pub fn stage_name(&self) -> Option<&str> {
        match self {
            SkipStrategy::SkipToFirst(s) | SkipStrategy::SkipToLast(s) => Some(s),
            _ => None,
        }
    }
}

/// A pattern that is not valid, rejected as Flink rejects it
/// (`MalformedPatternException`).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternError {
    /// Something Flink refuses while the pattern is being built or compiled.
    #[error("malformed pattern at stage '{stage}': {message}")]
    Malformed {
        /// The stage the problem was found at.
        stage: String,
        /// What is wrong, in Flink's words where it has them.
        message: String,
    },
}

/// A match that a skip strategy with [`Pattern::throw_exception_on_miss`]
/// cannot skip past: Flink's `FlinkRuntimeException` from
/// `SkipToElementStrategy`, which fails the job. Messages are Flink's.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MatchFailure {
    /// The match has no event of the strategy's stage.
    #[error("Could not skip to {stage}. No such element in the found match {found}")]
    NoSuchElement {
        /// The stage the strategy skips to.
        stage: String,
        /// The stages that took part in the match, as `{a, c}`.
        found: String,
    },
    /// The strategy would skip to the match's own first event, which would
    /// find the same match again (`skip_to_first` on the first stage).
    #[error("Could not skip to first element of a match.")]
    FirstElement {
        /// The stage the strategy skips to.
        stage: String,
    },
}

impl MatchFailure {
    /// The stage the skip strategy names.
    pub fn stage(&self) -> &str {
        match self {
            MatchFailure::NoSuchElement { stage, .. } | MatchFailure::FirstElement { stage } => {
                stage
            }
        }
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn malformed(stage: &str, message: impl Into<String>) -> PatternError {
    PatternError::Malformed {
        stage: stage.to_string(),
        message: message.into(),
    }
}

/// Quantifier kind of a stage (Flink `QuantifierProperty` SINGLE/LOOPING/TIMES).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QuantKind {
    Single,
    Looping,
    Times,
}

/// A stage's quantifier, as Flink's `Quantifier`.
#[derive(Clone, Debug)]
pub(crate) struct Quantifier {
    pub(crate) kind: QuantKind,
    pub(crate) consuming: Contiguity,
    pub(crate) inner: Contiguity,
    pub(crate) optional: bool,
    pub(crate) greedy: bool,
}

/// `times(from, to)`; looping stages use `to = from` and loop after it.
/// `window`: Flink's `times(n, windowTime)` and kin, the most time between
/// two consecutive events the stage takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) window: Option<i64>,
}

/// What a stage matches: one event per step, or a whole nested pattern.
#[derive(Clone, Debug)]
pub(crate) enum StageBody<E> {
    Single { condition: Option<Condition<E>> },
    Group(Box<Pattern<E>>),
}

/// One element of the pattern (a Flink `Pattern` object in its `previous` chain).
#[derive(Clone, Debug)]
pub(crate) struct Stage<E> {
    pub(crate) name: String,
    pub(crate) body: StageBody<E>,
    pub(crate) quantifier: Quantifier,
    pub(crate) times: Option<Times>,
    pub(crate) until: Option<Condition<E>>,
    /// `within(.., FirstAndLast)`.
    pub(crate) window: Option<i64>,
    /// `within(.., PreviousAndCurrent)`.
    pub(crate) prev_window: Option<i64>,
}

impl<E> Stage<E> {
    fn new(name: String, body: StageBody<E>, consuming: Contiguity) -> Self {
        Stage {
            name,
            body,
            quantifier: Quantifier {
                kind: QuantKind::Single,
                consuming,
                inner: Contiguity::SkipTillNext,
                optional: false,
                greedy: false,
            },
            times: None,
            until: None,
            window: None,
            prev_window: None,
        }
    }

    pub(crate) fn condition(&self) -> Condition<E> {
        match &self.body {
            StageBody::Single { condition } => condition.clone().unwrap_or(Condition::True),
            StageBody::Group(_) => Condition::True,
        }
    }

    pub(crate) fn is_group(&self) -> bool {
        matches!(self.body, StageBody::Group(_))
    }
}

/// A CEP pattern: a sequence of stages, built like Flink's `Pattern`.
///
/// Methods that configure a stage (`where_`, `times`, `optional`, …) apply to
/// the stage added last, as in Flink. Mistakes are recorded and reported by
/// [`Pattern::compile`], so builder chains stay fluent.
#[derive(Clone, Debug)]
pub struct Pattern<E> {
    pub(crate) stages: Vec<Stage<E>>,
    pub(crate) skip: SkipStrategy,
    /// Flink's `throwExceptionOnMiss()` on a skip-to-element strategy.
    pub(crate) skip_throw: bool,
    pub(crate) error: Option<PatternError>,
}

impl<E> Pattern<E> {
    /// Starts a pattern with a stage named `name` (Flink `Pattern.begin`).
    pub fn begin(name: impl Into<String>) -> Self {
        Self::begin_with_skip(name, SkipStrategy::NoSkip)
    }

    /// Starts a pattern with an after-match skip strategy
    /// (Flink `Pattern.begin(name, strategy)`).
    pub fn begin_with_skip(name: impl Into<String>, skip: SkipStrategy) -> Self {
        Pattern {
            stages: vec![Stage::new(
                name.into(),
                StageBody::Single { condition: None },
                Contiguity::Strict,
            )],
            skip,
            skip_throw: false,
            error: None,
        }
    }

    /// Starts a pattern whose first stage is the group `group`
    /// (Flink `Pattern.begin(Pattern)`).
    pub fn begin_group(group: Pattern<E>) -> Self {
        Self::begin_group_with_skip(group, SkipStrategy::NoSkip)
    }

    /// [`Pattern::begin_group`] with an after-match skip strategy.
    pub fn begin_group_with_skip(group: Pattern<E>, skip: SkipStrategy) -> Self {
        let mut p = Pattern {
            stages: Vec::new(),
            skip,
            skip_throw: false,
            error: None,
        };
        p.push_group(group, Contiguity::Strict);
        p
    }

    /// The after-match skip strategy.
    pub fn skip_strategy(&self) -> &SkipStrategy {
        &self.skip
    }

    /// Makes a `skip_to_first` / `skip_to_last` strategy fail when a match
    /// has no event of its stage (Flink's
    /// `skipToFirst(..).throwExceptionOnMiss()`), instead of skipping
    /// nothing. The failure is a [`MatchFailure`], reported with its key by
    /// the operator ([`crate::operator::CepOperator::failure`]); the match is
    /// not emitted. Other strategies refuse it.
    pub fn throw_exception_on_miss(mut self) -> Self {
        if self.skip.stage_name().is_none() {
            let name = self.last_name();
            self.fail(
                &name,
                "throwExceptionOnMiss applies to skip_to_first and skip_to_last only",
            );
        } else {
            self.skip_throw = true;
        }
        self
    }

    /// Whether the skip strategy fails on a miss
    /// ([`Pattern::throw_exception_on_miss`]).
    pub fn throws_on_miss(&self) -> bool {
        self.skip_throw
    }

    /// The names of the stages, first to last (groups contribute their inner names).
    pub fn stage_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.stages {
            match &s.body {
                StageBody::Single { .. } => out.push(s.name.clone()),
                StageBody::Group(g) => out.extend(g.stage_names()),
            }
        }
        out
    }

    fn push(mut self, name: impl Into<String>, contiguity: Contiguity) -> Self {
        self.stages.push(Stage::new(
            name.into(),
            StageBody::Single { condition: None },
            contiguity,
        ));
        self
    }

    fn push_group(&mut self, group: Pattern<E>, contiguity: Contiguity) {
        if self.error.is_none() {
            self.error = group.error.clone();
        }
        let name = format!(
            "group({})",
            group.stages.last().map(|s| s.name.as_str()).unwrap_or("")
        );
        self.stages.push(Stage::new(
            name,
            StageBody::Group(Box::new(group)),
            contiguity,
        ));
    }

    /// Appends a stage with strict contiguity (Flink `next`).
    pub fn next(self, name: impl Into<String>) -> Self {
        self.push(name, Contiguity::Strict)
    }
    /// Appends a stage with relaxed contiguity (Flink `followedBy`).
    pub fn followed_by(self, name: impl Into<String>) -> Self {
        self.push(name, Contiguity::SkipTillNext)
    }
    /// Appends a stage with non-deterministic relaxed contiguity (Flink `followedByAny`).
    pub fn followed_by_any(self, name: impl Into<String>) -> Self {
        self.push(name, Contiguity::SkipTillAny)
    }
    /// Appends a negative stage: the next event must not match (Flink `notNext`).
    pub fn not_next(self, name: impl Into<String>) -> Self {
        let mut p = self;
        p.check_previous_not_optional("notNext");
        p.push(name, Contiguity::NotNext)
    }
    /// Appends a negative stage: no matching event may come before the next
    /// stage (Flink `notFollowedBy`).
    pub fn not_followed_by(self, name: impl Into<String>) -> Self {
        let mut p = self;
        p.check_previous_not_optional("notFollowedBy");
        p.push(name, Contiguity::NotFollow)
    }
    /// Appends a group stage with strict contiguity (Flink `next(Pattern)`).
    pub fn next_group(mut self, group: Pattern<E>) -> Self {
        self.push_group(group, Contiguity::Strict);
        self
    }
    /// Appends a group stage with relaxed contiguity (Flink `followedBy(Pattern)`).
    pub fn followed_by_group(mut self, group: Pattern<E>) -> Self {
        self.push_group(group, Contiguity::SkipTillNext);
        self
    }
    /// Appends a group stage with non-deterministic relaxed contiguity
    /// (Flink `followedByAny(Pattern)`).
    pub fn followed_by_any_group(mut self, group: Pattern<E>) -> Self {
        self.push_group(group, Contiguity::SkipTillAny);
        self
    }

    fn check_previous_not_optional(&mut self, what: &str) {
        if let Some(last) = self.stages.last() {
            if last.quantifier.optional {
                let name = last.name.clone();
                self.fail(
                    &name,
                    format!("an optional pattern cannot be followed by {what}; use the optional stage differently"),
                );
            }
        }
    }

    fn fail(&mut self, stage: &str, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(malformed(stage, message));
        }
    }

    fn last(&mut self) -> &mut Stage<E> {
        self.stages
            .last_mut()
            .expect("a pattern always has at least one stage")
    }

    fn last_name(&self) -> String {
        self.stages
            .last()
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    fn and_condition(mut self, c: Condition<E>) -> Self {
        let name = self.last_name();
        match &mut self.last().body {
            StageBody::Single { condition } => {
                *condition = Some(match condition.take() {
                    None => c,
                    Some(prev) => prev.and(c),
                });
            }
            StageBody::Group(_) => self.fail(&name, "a group pattern has no condition of its own"),
        }
        self
    }

    fn or_condition(mut self, c: Condition<E>) -> Self {
        let name = self.last_name();
        match &mut self.last().body {
            StageBody::Single { condition } => {
                *condition = Some(match condition.take() {
                    None => c,
                    Some(prev) => prev.or(c),
                });
            }
            StageBody::Group(_) => self.fail(&name, "a group pattern has no condition of its own"),
        }
        self
    }

    /// Adds a condition on the event alone; several are ANDed (Flink `where`).
    pub fn where_(self, f: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.and_condition(Condition::simple(f))
    }
    /// Adds an iterative condition that can read the events already matched
    /// (Flink `where(IterativeCondition)`).
    pub fn where_ctx(
        self,
        f: impl Fn(&E, &dyn Context<E>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.and_condition(Condition::iterative(f))
    }
    /// Adds a prepared [`Condition`], ANDed with the existing ones.
    pub fn where_condition(self, c: Condition<E>) -> Self {
        self.and_condition(c)
    }
    /// ORs a condition on the event with the existing ones (Flink `or`).
    pub fn or_(self, f: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.or_condition(Condition::simple(f))
    }
    /// ORs an iterative condition with the existing ones.
    pub fn or_ctx(self, f: impl Fn(&E, &dyn Context<E>) -> bool + Send + Sync + 'static) -> Self {
        self.or_condition(Condition::iterative(f))
    }
    /// ORs a prepared [`Condition`] with the existing ones.
    pub fn or_condition_(self, c: Condition<E>) -> Self {
        self.or_condition(c)
    }

    /// Stops a looping stage at the first event satisfying `f` (Flink `until`).
    pub fn until(self, f: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.until_condition(Condition::simple(f))
    }
    /// Iterative variant of [`Pattern::until`].
    pub fn until_ctx(
        self,
        f: impl Fn(&E, &dyn Context<E>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.until_condition(Condition::iterative(f))
    }
    /// [`Pattern::until`] with a prepared [`Condition`].
    pub fn until_condition(mut self, c: Condition<E>) -> Self {
        let name = self.last_name();
        let st = self.last();
        if st.quantifier.kind != QuantKind::Looping {
            self.fail(
                &name,
                "the until condition is only applicable to looping states",
            );
        } else if st.until.is_some() {
            self.fail(&name, "only one until condition can be applied");
        } else {
            st.until = Some(c);
        }
        self
    }

    /// Sets the maximum time between the first and the last event of a match
    /// (Flink `within`, `WithinType.FIRST_AND_LAST`). The smallest window of
    /// all stages applies.
    pub fn within(self, d: Duration) -> Self {
        self.within_ms(duration_ms(d))
    }
    /// [`Pattern::within`] in milliseconds.
    pub fn within_ms(self, ms: i64) -> Self {
        self.within_type_ms(ms, WithinType::FirstAndLast)
    }
    /// Sets a window of the given type on the stage added last (Flink
    /// `within(windowTime, withinType)`). With
    /// [`WithinType::PreviousAndCurrent`] it is the most time between the
    /// match's previous event and the one this stage takes; a stage may
    /// have both types. A stage with a quantifier (`times`, `one_or_more`,
    /// ...) ignores its `PreviousAndCurrent` window, as Flink's compiler
    /// does: give the window to the quantifier instead
    /// ([`Pattern::times_within_ms`] and kin).
    pub fn within_type(self, d: Duration, within_type: WithinType) -> Self {
        self.within_type_ms(duration_ms(d), within_type)
    }
    /// [`Pattern::within_type`] in milliseconds.
    pub fn within_type_ms(mut self, ms: i64, within_type: WithinType) -> Self {
        match within_type {
            WithinType::FirstAndLast => self.last().window = Some(ms),
            WithinType::PreviousAndCurrent => self.last().prev_window = Some(ms),
        }
        self
    }

    fn check_quantifier_free(&mut self) -> bool {
        let name = self.last_name();
        let st = self.last();
        if matches!(
            st.quantifier.consuming,
            Contiguity::NotNext | Contiguity::NotFollow
        ) {
            self.fail(&name, "option not applicable to NOT pattern");
            return false;
        }
        if st.quantifier.kind != QuantKind::Single {
            self.fail(
                &name,
                "already applied quantifier to this pattern; a stage takes one quantifier",
            );
            return false;
        }
        true
    }

    /// The stage matches one or more events (Flink `oneOrMore`).
    pub fn one_or_more(mut self) -> Self {
        if self.check_quantifier_free() {
            let st = self.last();
            st.quantifier.kind = QuantKind::Looping;
            st.times = Some(Times {
                from: 1,
                to: 1,
                window: None,
            });
        }
        self
    }
    /// The stage matches `n` or more events (Flink `timesOrMore`).
    pub fn times_or_more(mut self, n: u32) -> Self {
        if self.check_quantifier_free() {
            if n == 0 {
                let name = self.last_name();
                self.fail(&name, "you should give a positive number greater than 0");
                return self;
            }
            let st = self.last();
            st.quantifier.kind = QuantKind::Looping;
            st.times = Some(Times {
                from: n,
                to: n,
                window: None,
            });
        }
        self
    }
    /// The stage matches exactly `n` events (Flink `times(n)`).
    pub fn times(mut self, n: u32) -> Self {
        if self.check_quantifier_free() {
            if n == 0 {
                let name = self.last_name();
                self.fail(&name, "you should give a positive number greater than 0");
                return self;
            }
            let st = self.last();
            st.quantifier.kind = QuantKind::Times;
            st.times = Some(Times {
                from: n,
                to: n,
                window: None,
            });
        }
        self
    }
    /// The stage matches between `from` and `to` events, inclusive
    /// (Flink `times(from, to)`; `from = 0` makes the stage optional).
    pub fn times_range(mut self, from: u32, to: u32) -> Self {
        if self.check_quantifier_free() {
            let name = self.last_name();
            if from > to || to == 0 {
                self.fail(
                    &name,
                    format!("times({from}, {to}): from must be <= to and to greater than 0"),
                );
                return self;
            }
            let make_optional = from == 0;
            let from = from.max(1);
            {
                let st = self.last();
                st.quantifier.kind = QuantKind::Times;
                st.times = Some(Times {
                    from,
                    to,
                    window: None,
                });
            }
            if make_optional {
                // Flink's `times(0, n)` calls `Quantifier.optional()` directly,
                // which (unlike `Pattern.optional()`) does not look at the
                // previous stage's greediness.
                let st = self.last();
                st.quantifier.optional = true;
            }
        }
        self
    }
    /// [`Pattern::one_or_more`] with at most `ms` between two consecutive
    /// events of the stage (Flink `oneOrMore(windowTime)`).
    pub fn one_or_more_within_ms(self, ms: i64) -> Self {
        self.one_or_more().times_window(ms)
    }
    /// [`Pattern::times_or_more`] with at most `ms` between two consecutive
    /// events of the stage (Flink `timesOrMore(n, windowTime)`).
    pub fn times_or_more_within_ms(self, n: u32, ms: i64) -> Self {
        self.times_or_more(n).times_window(ms)
    }
    /// [`Pattern::times`] with at most `ms` between two consecutive events
    /// of the stage (Flink `times(n, windowTime)`).
    pub fn times_within_ms(self, n: u32, ms: i64) -> Self {
        self.times(n).times_window(ms)
    }
    /// [`Pattern::times_range`] with at most `ms` between two consecutive
    /// events of the stage (Flink `times(from, to, windowTime)`).
    pub fn times_range_within_ms(self, from: u32, to: u32, ms: i64) -> Self {
        self.times_range(from, to).times_window(ms)
    }

    fn times_window(mut self, ms: i64) -> Self {
        if let Some(t) = &mut self.last().times {
            t.window = Some(ms);
        }
        self
    }

    /// The stage may be skipped (Flink `optional`).
    pub fn optional(mut self) -> Self {
        let name = self.last_name();
        let prev_greedy =
            self.stages.len() >= 2 && self.stages[self.stages.len() - 2].quantifier.greedy;
        if prev_greedy {
            self.fail(
                &name,
                "optional pattern cannot be preceded by greedy pattern",
            );
            return self;
        }
        let st = self.last();
        if st.quantifier.optional {
            self.fail(&name, "optional already applied");
        } else if matches!(
            st.quantifier.consuming,
            Contiguity::NotNext | Contiguity::NotFollow
        ) {
            self.fail(&name, "NOT pattern cannot be optional");
        } else {
            st.quantifier.optional = true;
        }
        self
    }
    /// A looping or times stage takes as many events as it can (Flink `greedy`).
    pub fn greedy(mut self) -> Self {
        let name = self.last_name();
        let st = self.last();
        if matches!(
            st.quantifier.consuming,
            Contiguity::NotNext | Contiguity::NotFollow
        ) {
            self.fail(&name, "option not applicable to NOT pattern");
        } else if st.is_group() {
            self.fail(&name, "option not applicable to group pattern");
        } else if st.quantifier.inner == Contiguity::SkipTillAny {
            self.fail(&name, "option not applicable to FollowedByAny pattern");
        } else if st.quantifier.kind == QuantKind::Single {
            self.fail(&name, "option not applicable to singleton quantifier");
        } else {
            st.quantifier.greedy = true;
        }
        self
    }
    /// A looping or times stage's own events must be strictly contiguous
    /// (Flink `consecutive`).
    pub fn consecutive(mut self) -> Self {
        let name = self.last_name();
        let st = self.last();
        if st.quantifier.kind == QuantKind::Single {
            self.fail(&name, "consecutive not applicable to a single-event stage");
        } else if st.quantifier.inner == Contiguity::SkipTillAny {
            self.fail(
                &name,
                "you can apply either combinations or consecutive, not both",
            );
        } else if st.quantifier.inner == Contiguity::Strict {
            self.fail(&name, "consecutive already applied");
        } else {
            st.quantifier.inner = Contiguity::Strict;
        }
        self
    }
    /// A looping or times stage's own events combine non-deterministically
    /// (Flink `allowCombinations`).
    pub fn allow_combinations(mut self) -> Self {
        let name = self.last_name();
        let st = self.last();
        if st.quantifier.kind == QuantKind::Single {
            self.fail(&name, "combinations not applicable to a single-event stage");
        } else if st.quantifier.inner == Contiguity::Strict {
            self.fail(
                &name,
                "you can apply either combinations or consecutive, not both",
            );
        } else if st.quantifier.inner == Contiguity::SkipTillAny {
            self.fail(&name, "combinations already applied");
        } else {
            // Flink's `combinations()` does not look at greediness (only
            // `greedy()` refuses an allowCombinations stage).
            st.quantifier.inner = Contiguity::SkipTillAny;
        }
        self
    }
}
