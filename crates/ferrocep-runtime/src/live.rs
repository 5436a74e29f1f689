//! A processing-time job driven by the clock: events from a paced source,
//! timers fired on time between them.
//!
//! Invariant of the [`drive`] loop: timeouts fire on time even when no event
//! arrives. Between events it sleeps only until the earlier of the next event
//! and the operator's next timer ([`CepOperator::next_timer`]), and advances
//! processing time when a timer is due. The clock is injected ([`Clock`]), so
//! tests run it on a [`crate::clock::ManualClock`] and never sleep.

use std::hash::Hash;
use std::io;

use ferrocep_core::operator::CepOperator;
use ferrocep_core::output::OutputSink;
use ferrocep_core::time::Timestamp;

use crate::clock::Clock;

/// A live job's output: the operator's outputs plus a line per arriving
/// event.
pub trait LiveSink<K, E>: OutputSink<K, E> {
    /// An event arrived (before it is processed).
    fn arrived(&mut self, key: &K, event: &E, now: i64);
    /// The first write error, if any.
    fn take_error(&mut self) -> Option<io::Error>;
}

/// How a live source paces its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Time between two events, ms; the first comes one interval after start
    /// (the seed source sleeps before each event).
    pub interval: i64,
    /// Stop after this many events, once pending timers have fired; `None`
    /// runs forever.
    pub events: Option<u64>,
}

/// Runs a processing-time job: events from `source(i)` arrive every
/// `pace.interval` ms, stamped with the clock; timers fire on time between
/// events. With a finite `pace.events`, keeps going after the last event until
/// no timer is pending.
pub fn drive<K, E, C, S>(
    clock: &C,
    op: &mut CepOperator<K, E>,
    pace: Pace,
    mut source: impl FnMut(u64, i64) -> (K, E),
    sink: &mut S,
) -> io::Result<()>
where
    K: Clone + Eq + Hash,
    E: Clone,
    C: Clock + ?Sized,
    S: LiveSink<K, E>,
{
    let mut due = clock.now_ms().saturating_add(pace.interval);
    let mut last_advance = i64::MIN;
    let mut i: u64 = 0;
    while pace.events.is_none_or(|n| i < n) {
        // Wait for the next event, firing timers that fall due meanwhile.
        loop {
            let now = clock.now_ms();
            if matches!(op.next_timer().map(Timestamp::as_millis), Some(t) if t <= now)
                && now > last_advance
            {
                op.advance_processing_time(Timestamp::from_millis(now), sink);
                last_advance = now;
                continue;
            }
            if now >= due {
                break;
            }
            let wake = match op.next_timer().map(Timestamp::as_millis) {
                Some(t) if t > now => t.min(due),
                _ => due,
            };
            clock.sleep_until(wake);
        }
        let now = clock.now_ms();
        if now > last_advance {
            op.advance_processing_time(Timestamp::from_millis(now), sink);
            last_advance = now;
        }
        let (key, event) = source(i, now);
        sink.arrived(&key, &event, now);
        op.process_element(&key, event, Timestamp::from_millis(now), sink);
        if let Some(e) = sink.take_error() {
            return Err(e);
        }
        i += 1;
        due = due.saturating_add(pace.interval);
    }
    // Bounded run: let the pending partial matches time out.
    while let Some(t) = op.next_timer().map(Timestamp::as_millis) {
        clock.sleep_until(t);
        let now = clock.now_ms();
        if now <= last_advance {
            break; // the timer did not go away when its time came; do not spin
        }
        op.advance_processing_time(Timestamp::from_millis(now), sink);
        last_advance = now;
    }
    sink.take_error().map_or(Ok(()), Err)
}
