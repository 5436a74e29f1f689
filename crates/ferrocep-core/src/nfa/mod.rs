//! The NFA compiled from a pattern and the per-key matching state.
//!
//! [`Nfa`] is immutable and shared (`Arc`) by every key; each key owns an
//! [`NfaState`] (its partial and completed-but-held matches), and all keys of
//! an operator share one [`SharedBuffer`]. Processing follows Flink's `NFA`:
//! `process` never advances time; `advance_time(t)` times out (or, for a
//! trailing `notFollowedBy`, completes) every partial match with
//! `t - start >= window`, reporting `start + window`.

pub(crate) mod buffer;
pub(crate) mod compile;
pub mod dewey;
pub(crate) mod pq;
mod run;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use buffer::EventId;
pub(crate) use run::{run_sort_key, Run};
pub use run::{NfaOutput, NfaRunner, NfaState, SharedBuffer};

use crate::pattern::{Condition, SkipStrategy};

/// What a transition does with the current event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Take,
    Ignore,
    Proceed,
}

/// Kind of an NFA state (Flink `State.StateType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StateKind {
    Normal,
    Final,
    Stop,
    Pending,
}

pub(crate) struct Transition<E> {
    pub(crate) action: Action,
    pub(crate) target: u32,
    pub(crate) condition: Condition<E>,
}

pub(crate) struct State<E> {
    pub(crate) name: Arc<str>,
    /// Index of the stage (shared-buffer page) the state belongs to.
    pub(crate) stage: u32,
    pub(crate) kind: StateKind,
    /// The PREVIOUS_AND_CURRENT window of a run in this state (Flink's
    /// `windowTimes`): it times out when `now - previous >= window`.
    pub(crate) window: Option<i64>,
    pub(crate) transitions: Vec<Transition<E>>,
    /// Whether some transition is a PROCEED (set by [`Nfa::new`]): if none
    /// is, the state's edges are its transitions, in order.
    pub(crate) proceeds: bool,
}

/// A compiled pattern: states and transitions, the window, the skip strategy.
pub struct Nfa<E> {
    pub(crate) states: Vec<State<E>>,
    pub(crate) start: u32,
    pub(crate) stage_names: Vec<Arc<str>>,
    pub(crate) window: Option<i64>,
    pub(crate) skip: SkipStrategy,
    pub(crate) skip_stage: Option<u32>,
    /// `throwExceptionOnMiss` of the skip strategy.
    pub(crate) skip_throw: bool,
    /// Whether every transition out of the start state looks at the event
    /// alone, so [`Nfa::may_start`] can decide without a partial match.
    start_is_simple: bool,
    /// Whether some state has a PREVIOUS_AND_CURRENT window.
    pub(crate) has_state_windows: bool,
    /// Starts loading what an event's output reads (its text), for the
    /// events a timer is about to report; `None`: nothing to load.
    pub(crate) event_prefetch: Option<fn(&E)>,
}

/// The context of a condition that does not read it.
struct NoContext;

impl<E> crate::pattern::Context<E> for NoContext {
    fn events_for_pattern(&self, _: &str) -> Vec<&E> {
        Vec::new()
    }
    fn timestamp(&self) -> i64 {
        0
    }
}

impl<E> Nfa<E> {
    pub(crate) fn new(
        mut states: Vec<State<E>>,
        start: u32,
        stage_names: Vec<Arc<str>>,
        window: Option<i64>,
        skip: SkipStrategy,
        skip_stage: Option<u32>,
        skip_throw: bool,
    ) -> Self {
        let start_is_simple = states[start as usize]
            .transitions
            .iter()
            .all(|t| !t.condition.is_iterative());
        let has_state_windows = states.iter().any(|s| s.window.is_some());
        for s in &mut states {
            s.proceeds = s.transitions.iter().any(|t| t.action == Action::Proceed);
        }
        Nfa {
            states,
            start,
            stage_names,
            window,
            skip,
            skip_stage,
            skip_throw,
            start_is_simple,
            has_state_windows,
            event_prefetch: None,
        }
    }

    /// Sets what [`Self::event_prefetch`] is.
    pub(crate) fn with_event_prefetch(mut self, f: fn(&E)) -> Self {
        self.event_prefetch = Some(f);
        self
    }

    /// Whether `event` can change a key's fresh state (only the start run):
    /// some transition out of the start state accepts it. When none does,
    /// Flink re-creates the start run unchanged (its version grows by the
    /// number of branches taken, zero here), registers nothing in the shared
    /// buffer and sets no timer, so a key without state may skip the event.
    /// Iterative conditions are assumed to accept.
    pub fn may_start(&self, event: &E) -> bool {
        !self.start_is_simple
            || self.states[self.start as usize]
                .transitions
                .iter()
                .any(|t| t.condition.eval(event, &NoContext))
    }

    /// The whole-pattern window in milliseconds (the smallest `within`), if any.
    pub fn window(&self) -> Option<i64> {
        self.window
    }

    /// Whether some stage has a PREVIOUS_AND_CURRENT window (its partial
    /// matches may time out whenever time advances, not only at
    /// `start + window`).
    pub fn has_stage_windows(&self) -> bool {
        self.has_state_windows
    }

    /// The after-match skip strategy.
    pub fn skip_strategy(&self) -> &SkipStrategy {
        &self.skip
    }

    /// Whether the skip strategy fails on a miss
    /// ([`crate::Pattern::throw_exception_on_miss`]).
    pub fn throws_on_miss(&self) -> bool {
        self.skip_throw
    }

    /// Number of NFA states (for diagnostics).
    pub fn num_states(&self) -> usize {
        self.states.len()
    }

    /// Stage names as they appear in outputs, indexed by stage.
    pub fn stage_names(&self) -> &[Arc<str>] {
        &self.stage_names
    }

    /// A description of the states and transitions, for debugging.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (i, st) in self.states.iter().enumerate() {
            s.push_str(&format!(
                "{i} {}{} {:?}\n",
                st.name,
                if i as u32 == self.start {
                    " (start)"
                } else {
                    ""
                },
                st.kind
            ));
            for t in &st.transitions {
                s.push_str(&format!(
                    "   {:?} -> {} {:?}\n",
                    t.action, self.states[t.target as usize].name, t.condition
                ));
            }
        }
        s
    }
}
