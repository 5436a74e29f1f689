//! What the engine emits: matches, timed-out partial matches (Flink's timeout
//! side output) and late events, pushed into an [`OutputSink`].
//!
//! Matches are lent to the sink as a [`MatchRef`] that borrows the events from
//! the shared buffer, so emitting costs no copy; [`Collector`] keeps owned
//! copies for tests and simple embeddings.

use std::sync::Arc;

use crate::pattern::MatchFailure;
use crate::time::Timestamp;

/// A match or timed-out partial match, borrowed from the shared buffer.
///
/// Stages appear in pattern order, each with its events in match order; stages
/// without events (optional or negative ones) are absent, as in Flink's result map.
pub struct MatchRef<'a, E> {
    pub(crate) names: &'a [Arc<str>],
    /// `(stage index, event)`, oldest first.
    pub(crate) events: &'a [(u32, &'a E)],
}

impl<'a, E> MatchRef<'a, E> {
    /// Builds a view from stage names and `(stage index, event)` pairs, oldest first.
    pub fn new(names: &'a [Arc<str>], events: &'a [(u32, &'a E)]) -> Self {
        MatchRef { names, events }
    }

    /// Number of events in the match.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the match holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// All events, oldest first, with their stage names.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a E)> + '_ {
        self.events
            .iter()
            .map(move |(s, e)| (&*self.names[*s as usize], *e))
    }

    /// The stages that took part, in order of their first event, each with its
    /// events in match order (Flink's `Map<String, List<T>>`).
    pub fn for_each_stage(&self, mut f: impl FnMut(&'a str, &mut dyn Iterator<Item = &'a E>)) {
        for (i, (stage, _)) in self.events.iter().enumerate() {
            if self.events[..i].iter().any(|(s, _)| s == stage) {
                continue;
            }
            let mut it = self.events[i..]
                .iter()
                .filter(|(s, _)| s == stage)
                .map(|(_, e)| *e);
            f(&self.names[*stage as usize], &mut it);
        }
    }

    /// All events, oldest first, each with its stage's index (see
    /// [`Self::stage_name`]): for writers that group the events by stage
    /// without a callback per stage.
    #[inline]
    pub fn staged_events(&self) -> &'a [(u32, &'a E)] {
        self.events
    }

    /// The name of stage `stage` (an index of [`Self::staged_events`]).
    #[inline]
    pub fn stage_name(&self, stage: u32) -> &'a str {
        &self.names[stage as usize]
    }

    /// Events taken by stage `name`, in match order.
    pub fn events_of<'b>(&'b self, name: &'b str) -> impl Iterator<Item = &'a E> + 'b {
        self.events
            .iter()
            .filter(move |(s, _)| &*self.names[*s as usize] == name)
            .map(|(_, e)| *e)
    }

    /// Owned copy: stage name -> events, stages in order of their first event.
    pub fn to_owned_map(&self) -> Vec<(String, Vec<E>)>
    where
        E: Clone,
    {
        let mut out: Vec<(String, Vec<E>)> = Vec::new();
        self.for_each_stage(|name, events| {
            out.push((name.to_string(), events.cloned().collect()));
        });
        out
    }
}

/// Receives the operator's outputs, in the order the engine produces them.
pub trait OutputSink<K, E> {
    /// A complete match; `timestamp` is the time of the event or watermark that
    /// completed it.
    fn on_match(&mut self, key: &K, m: &MatchRef<'_, E>, timestamp: Timestamp);
    /// A partial match that expired; `timeout_at` is `start + within`.
    fn on_timeout(&mut self, key: &K, m: &MatchRef<'_, E>, timeout_at: Timestamp);
    /// An event behind the watermark on arrival; it is not matched.
    fn on_late(&mut self, key: &K, event: &E, timestamp: Timestamp);
    /// A match `m` of `key` that the skip strategy could not skip past
    /// ([`crate::Pattern::throw_exception_on_miss`]; Flink fails the job
    /// there): it is not emitted as a match. Called for every such match;
    /// the operator keeps the first ([`crate::operator::CepOperator::failure`]),
    /// so a sink that reproduces Flink stops at the first call. Ignored by
    /// default.
    fn on_failure(&mut self, key: &K, m: &MatchRef<'_, E>, failure: &MatchFailure) {
        let _ = (key, m, failure);
    }
}

/// An owned output, as [`Collector`] keeps it.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<K, E> {
    /// A complete match: stage name -> events.
    Match {
        /// The partition key.
        key: K,
        /// Stage name -> events, stages in match order.
        events: Vec<(String, Vec<E>)>,
        /// Time of the event or watermark that completed it.
        timestamp: Timestamp,
    },
    /// A timed-out partial match.
    Timeout {
        /// The partition key.
        key: K,
        /// Stage name -> events taken before the timeout.
        events: Vec<(String, Vec<E>)>,
        /// `start + within`.
        timeout_at: Timestamp,
    },
    /// A late event.
    Late {
        /// The partition key.
        key: K,
        /// The event.
        event: E,
        /// Its timestamp.
        timestamp: Timestamp,
    },
}

/// A sink that keeps owned copies of everything, for tests and small jobs.
#[derive(Debug)]
pub struct Collector<K, E> {
    /// Everything received, in order.
    pub outputs: Vec<Output<K, E>>,
}

impl<K, E> Default for Collector<K, E> {
    fn default() -> Self {
        Collector {
            outputs: Vec::new(),
        }
    }
}

impl<K: Clone, E: Clone> Collector<K, E> {
    /// The matches only, as stage -> events maps.
    pub fn matches(&self) -> Vec<Vec<(String, Vec<E>)>> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::Match { events, .. } => Some(events.clone()),
                _ => None,
            })
            .collect()
    }

    /// The timeouts only, as (stage -> events, timeout_at).
    #[allow(clippy::type_complexity)]
    pub fn timeouts(&self) -> Vec<(Vec<(String, Vec<E>)>, Timestamp)> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::Timeout {
                    events, timeout_at, ..
                } => Some((events.clone(), *timeout_at)),
                _ => None,
            })
            .collect()
    }
}

impl<K: Clone, E: Clone> OutputSink<K, E> for Collector<K, E> {
    fn on_match(&mut self, key: &K, m: &MatchRef<'_, E>, timestamp: Timestamp) {
        self.outputs.push(Output::Match {
            key: key.clone(),
            events: m.to_owned_map(),
            timestamp,
        });
    }
    fn on_timeout(&mut self, key: &K, m: &MatchRef<'_, E>, timeout_at: Timestamp) {
        self.outputs.push(Output::Timeout {
            key: key.clone(),
            events: m.to_owned_map(),
            timeout_at,
        });
    }
    fn on_late(&mut self, key: &K, event: &E, timestamp: Timestamp) {
        self.outputs.push(Output::Late {
            key: key.clone(),
            event: event.clone(),
            timestamp,
        });
    }
}
