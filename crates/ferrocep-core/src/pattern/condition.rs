//! Stage conditions: simple predicates on one event, and iterative ones that
//! also read the events the partial match has already taken (Flink's
//! `SimpleCondition` / `IterativeCondition`).

use std::fmt;
use std::sync::Arc;

/// Read-only view of the partial match a condition is evaluated for
/// (Flink's `IterativeCondition.Context`).
pub trait Context<E> {
    /// Events already taken by this partial match for stage `name`, in match
    /// order (Flink's `getEventsForPattern`). Unknown names give nothing.
    fn events_for_pattern(&self, name: &str) -> Vec<&E>;
    /// Timestamp of the event being evaluated.
    fn timestamp(&self) -> i64;
    /// The current processing time in ms (Flink's
    /// `ctx.currentProcessingTime()`): the time the operator's caller gave
    /// it last (the core has no clock): in processing time the stamp of the
    /// event or of the latest `advance_time`, in event time what
    /// [`crate::operator::CepOperator::set_processing_time`] set.
    /// `i64::MIN` where no clock was given (contexts outside an operator).
    fn current_processing_time(&self) -> i64 {
        i64::MIN
    }
}

type SimpleFn<E> = dyn Fn(&E) -> bool + Send + Sync;
type IterFn<E> = dyn Fn(&E, &dyn Context<E>) -> bool + Send + Sync;

/// A condition on an event. Built from closures with [`Condition::simple`] and
/// [`Condition::iterative`], combined with [`Condition::and`], [`Condition::or`]
/// and [`Condition::not`].
pub enum Condition<E> {
    /// Holds for every event.
    True,
    /// Looks at the event only.
    Simple(Arc<SimpleFn<E>>),
    /// Looks at the event and the partial match.
    Iterative(Arc<IterFn<E>>),
    /// Both hold (evaluated left to right, short-circuit).
    And(Box<Condition<E>>, Box<Condition<E>>),
    /// Either holds (evaluated left to right, short-circuit).
    Or(Box<Condition<E>>, Box<Condition<E>>),
    /// Does not hold.
    Not(Box<Condition<E>>),
}

impl<E> Clone for Condition<E> {
    fn clone(&self) -> Self {
        match self {
            Condition::True => Condition::True,
            Condition::Simple(f) => Condition::Simple(f.clone()),
            Condition::Iterative(f) => Condition::Iterative(f.clone()),
            Condition::And(a, b) => Condition::And(a.clone(), b.clone()),
            Condition::Or(a, b) => Condition::Or(a.clone(), b.clone()),
            Condition::Not(a) => Condition::Not(a.clone()),
        }
    }
}

impl<E> fmt::Debug for Condition<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::True => f.write_str("true"),
            Condition::Simple(_) => f.write_str("simple(..)"),
            Condition::Iterative(_) => f.write_str("iterative(..)"),
            Condition::And(a, b) => write!(f, "({a:?} && {b:?})"),
            Condition::Or(a, b) => write!(f, "({a:?} || {b:?})"),
            Condition::Not(a) => write!(f, "!{a:?}"),
        }
    }
}

impl<E> Condition<E> {
    /// A condition on the event alone (Flink `SimpleCondition`).
    pub fn simple(f: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        Condition::Simple(Arc::new(f))
    }

    /// A condition that may read the partial match (Flink `IterativeCondition`).
    pub fn iterative(f: impl Fn(&E, &dyn Context<E>) -> bool + Send + Sync + 'static) -> Self {
        Condition::Iterative(Arc::new(f))
    }

    /// `self && other`.
    pub fn and(self, other: Condition<E>) -> Self {
        match (self, other) {
            (Condition::True, c) | (c, Condition::True) => c,
            (a, b) => Condition::And(Box::new(a), Box::new(b)),
        }
    }

    /// `self || other`.
    pub fn or(self, other: Condition<E>) -> Self {
        Condition::Or(Box::new(self), Box::new(other))
    }

    /// `!self`.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Self {
        Condition::Not(Box::new(self))
    }

    /// Whether evaluating needs the partial-match context.
    pub fn is_iterative(&self) -> bool {
        match self {
            Condition::True | Condition::Simple(_) => false,
            Condition::Iterative(_) => true,
            Condition::And(a, b) | Condition::Or(a, b) => a.is_iterative() || b.is_iterative(),
            Condition::Not(a) => a.is_iterative(),
        }
    }

    /// Evaluates the condition for `event`.
    #[inline]
    pub fn eval(&self, event: &E, ctx: &dyn Context<E>) -> bool {
        match self {
            Condition::True => true,
            Condition::Simple(f) => f(event),
            Condition::Iterative(f) => f(event, ctx),
            Condition::And(a, b) => a.eval(event, ctx) && b.eval(event, ctx),
            Condition::Or(a, b) => a.eval(event, ctx) || b.eval(event, ctx),
            Condition::Not(a) => !a.eval(event, ctx),
        }
    }
}
