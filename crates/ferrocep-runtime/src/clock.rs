//! Time for everything that is not event time: one injectable clock.
//!
//! Processing-time patterns stamp events with [`Clock::now_ms`] and fire their
//! timers when it reaches them; the idle rule of `run` moves the watermark with
//! it. Nothing else in the runtime reads the system time, so a test that
//! injects a [`ManualClock`] decides what time it is and never sleeps for it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What time it is, in epoch milliseconds, and how long to wait for a later
/// time.
pub trait Clock: Send + Sync + 'static {
    /// The current time, epoch milliseconds.
    fn now_ms(&self) -> i64;

    /// How long a thread should block (on a queue, say) before looking at the
    /// clock again, when it wants to act at `t`: the real time until `t` for
    /// the wall clock; a short poll for a clock that tests move by hand.
    fn wait_for(&self, t: i64) -> Duration;

    /// Returns once `now_ms() >= t`.
    fn sleep_until(&self, t: i64) {
        loop {
            if self.now_ms() >= t {
                return;
            }
            std::thread::sleep(self.wait_for(t));
        }
    }
}

/// A clock shared between threads.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn wait_for(&self, t: i64) -> Duration {
        let ms = t.saturating_sub(self.now_ms()).max(0);
        Duration::from_millis(ms as u64)
    }
}

/// A clock that moves only when told to ([`ManualClock::set`],
/// [`ManualClock::advance`]); clones share the time. Sleeping on it jumps to
/// the deadline.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: i64) -> Self {
        ManualClock {
            now: Arc::new(AtomicI64::new(now)),
        }
    }

    /// Moves the clock to `now` (never backwards).
    pub fn set(&self, now: i64) {
        self.now.fetch_max(now, Ordering::SeqCst);
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms.max(0), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn wait_for(&self, _t: i64) -> Duration {
        // Someone else moves this clock: look again soon.
        Duration::from_millis(2)
    }

    fn sleep_until(&self, t: i64) {
        self.set(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward_and_is_shared() {
        let c = ManualClock::new(100);
        let d = c.clone();
        c.advance(50);
        assert_eq!(d.now_ms(), 150);
        c.set(120);
        assert_eq!(d.now_ms(), 150);
        d.sleep_until(400);
        assert_eq!(c.now_ms(), 400);
    }

    #[test]
    fn system_clock_waits_until_the_time() {
        let c = SystemClock;
        let now = c.now_ms();
        assert!(now > 1_600_000_000_000);
        assert_eq!(c.wait_for(now - 10), Duration::ZERO);
        assert!(c.wait_for(now + 10_000) > Duration::from_secs(5));
    }
}
