//! Time: the types of event time ([`Timestamp`], [`Watermark`]), duration
//! parsing for specs, and Flink's bounded-out-of-orderness watermark
//! (`max_ts - max_out_of_orderness - 1`, emitted after every event; none
//! before the first).
//!
//! Both types are milliseconds since the Unix epoch in an `i64`, as in Flink,
//! and cost no more than the `i64` (`#[repr(transparent)]`); they differ in
//! type so that an event's time and a watermark cannot be swapped. Durations
//! are [`std::time::Duration`].
//!
//! ```
//! use std::time::Duration;
//! use ferrocep_core::time::{Timestamp, Watermark};
//!
//! let ts: Timestamp = "2024-05-01T12:00:00.250Z".parse()?;
//! assert_eq!(ts, Timestamp::from_millis(1_714_564_800_250));
//! let wm = Watermark::at(ts.saturating_sub(Duration::from_secs(5)));
//! assert!(!wm.passed(ts)); // an event at `ts` is not late yet
//! assert!(Watermark::at(ts).passed(ts));
//! # Ok::<(), ferrocep_core::time::TimeError>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The smallest watermark: nothing seen yet (Flink `Long.MIN_VALUE`).
pub const MIN_WATERMARK: Watermark = Watermark::MIN;
/// The watermark a bounded input ends with (Flink `Watermark.MAX_WATERMARK`).
pub const MAX_WATERMARK: Watermark = Watermark::MAX;

/// A point in time: milliseconds since the Unix epoch (negative before it).
///
/// An event's time in event time, or the clock's reading in processing time.
/// Made from epoch milliseconds ([`Timestamp::from_millis`]), an RFC 3339
/// text ([`Timestamp::parse_rfc3339`], also [`str::parse`]) or a
/// [`SystemTime`] (the core has no clock: the wall clock's time is
/// `Timestamp::from(SystemTime::now())`).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The earliest timestamp.
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// The latest timestamp.
    pub const MAX: Timestamp = Timestamp(i64::MAX);
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// `ms` milliseconds since the Unix epoch.
    #[inline]
    pub const fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    #[inline]
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 date-time with an offset (`2024-05-01T12:00:00Z`,
    /// `2024-05-01 12:00:00.250+02:00`), as spec files read a `time.field`
    /// that is a string; fractions below a millisecond are truncated.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimeError> {
        crate::event::parse_timestamp_text(text.as_bytes())
            .map(Timestamp)
            .ok_or_else(|| TimeError::Rfc3339 {
                text: text.to_string(),
            })
    }

    /// `self + d`, at most [`Timestamp::MAX`].
    #[inline]
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_millis(d)))
    }

    /// `self - d`, at least [`Timestamp::MIN`].
    #[inline]
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_millis(d)))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }
}

impl From<SystemTime> for Timestamp {
    /// Truncated to milliseconds; saturating far from the epoch.
    fn from(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(duration_millis(d)),
            Err(e) => Timestamp(duration_millis(e.duration()).saturating_neg()),
        }
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;

    /// [`Timestamp::parse_rfc3339`].
    fn from_str(s: &str) -> Result<Timestamp, TimeError> {
        Timestamp::parse_rfc3339(s)
    }
}

impl fmt::Display for Timestamp {
    /// Epoch milliseconds, as the engine's outputs write them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Event time's progress (Flink `Watermark`): no event at or before it is
/// expected any more, so an event with a timestamp at or before the
/// watermark is late. Milliseconds since the Unix epoch, like [`Timestamp`].
///
/// In processing time the operator's clock advances instead, to the current
/// [`Timestamp`] (see [`crate::operator::CepOperator::advance_processing_time`]).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watermark(i64);

impl Watermark {
    /// The smallest watermark: nothing seen yet (Flink `Long.MIN_VALUE`).
    pub const MIN: Watermark = Watermark(i64::MIN);
    /// The watermark a bounded input ends with: everything is due (Flink
    /// `Watermark.MAX_WATERMARK`).
    pub const MAX: Watermark = Watermark(i64::MAX);

    /// The watermark `ms` milliseconds since the Unix epoch.
    #[inline]
    pub const fn from_millis(ms: i64) -> Watermark {
        Watermark(ms)
    }

    /// Milliseconds since the Unix epoch.
    #[inline]
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The watermark at `ts`: events up to and including `ts` are late.
    #[inline]
    pub const fn at(ts: Timestamp) -> Watermark {
        Watermark(ts.0)
    }

    /// The watermark's time as a [`Timestamp`].
    #[inline]
    pub const fn timestamp(self) -> Timestamp {
        Timestamp(self.0)
    }

    /// Whether an event at `ts` is behind this watermark (late).
    #[inline]
    pub const fn passed(self, ts: Timestamp) -> bool {
        ts.0 <= self.0
    }
}

impl Default for Watermark {
    /// [`Watermark::MIN`].
    fn default() -> Watermark {
        Watermark::MIN
    }
}

impl fmt::Display for Watermark {
    /// Epoch milliseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why a time was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// Not an RFC 3339 date-time with an offset, or out of range.
    #[error("invalid timestamp '{text}': expected an RFC 3339 date-time with an offset (e.g. 2024-05-01T12:00:00Z)")]
    Rfc3339 {
        /// The text as given.
        text: String,
    },
}

/// Whole milliseconds of `d`, at most `i64::MAX`.
#[inline]
pub(crate) fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Flink's `BoundedOutOfOrderness` watermarks, with a watermark after every event.
#[derive(Clone, Debug)]
pub struct BoundedOutOfOrderness {
    max_out_of_orderness: i64,
    max_ts: Option<i64>,
}

impl BoundedOutOfOrderness {
    /// A generator allowing events up to `max_out_of_orderness` behind the
    /// newest (whole milliseconds).
    pub fn new(max_out_of_orderness: Duration) -> Self {
        BoundedOutOfOrderness {
            max_out_of_orderness: duration_millis(max_out_of_orderness),
            max_ts: None,
        }
    }

    /// Records an event timestamp and returns the watermark that follows it.
    pub fn on_event(&mut self, ts: Timestamp) -> Watermark {
        let ts = ts.0;
        let max = self.max_ts.map_or(ts, |m| m.max(ts));
        self.max_ts = Some(max);
        self.current()
    }

    /// The current watermark ([`Watermark::MIN`] before the first event).
    pub fn current(&self) -> Watermark {
        match self.max_ts {
            None => Watermark::MIN,
            Some(m) => Watermark(
                m.saturating_sub(self.max_out_of_orderness)
                    .saturating_sub(1),
            ),
        }
    }
}

/// Why a duration text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration '{text}': expected milliseconds or a number with unit ms, s, m, h or d (e.g. 250ms, 10s, 10m)")]
pub struct DurationError {
    /// The text as given.
    pub text: String,
}

/// Parses `250ms`, `10s`, `10m`, `2h`, `1d` or a bare integer (milliseconds).
pub fn parse_duration_ms(text: &str) -> Result<i64, DurationError> {
    let err = || DurationError {
        text: text.to_string(),
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(err());
    }
    let n: i64 = num.parse().map_err(|_| err())?;
    let mul = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(err()),
    };
    n.checked_mul(mul).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_follows_flink_formula() {
        let t = Timestamp::from_millis;
        let w = Watermark::from_millis;
        let mut g = BoundedOutOfOrderness::new(Duration::ZERO);
        assert_eq!(g.current(), MIN_WATERMARK);
        assert_eq!(g.on_event(t(10)), w(9));
        assert_eq!(g.on_event(t(5)), w(9));
        let mut g = BoundedOutOfOrderness::new(Duration::from_millis(100));
        assert_eq!(g.on_event(t(1000)), w(899));
    }

    #[test]
    fn timestamps_from_millis_text_and_system_time() {
        let ts = Timestamp::parse_rfc3339("1970-01-01T00:00:01.5Z").unwrap();
        assert_eq!(ts.as_millis(), 1_500);
        assert_eq!(
            "1969-12-31T23:59:59Z".parse(),
            Ok(Timestamp::from_millis(-1_000))
        );
        assert_eq!(
            "2024-05-01 14:00:00+02:00".parse::<Timestamp>(),
            "2024-05-01T12:00:00Z".parse::<Timestamp>()
        );
        assert!(matches!(
            Timestamp::parse_rfc3339("yesterday"),
            Err(TimeError::Rfc3339 { .. })
        ));
        let d = Duration::from_millis(1_234);
        assert_eq!(
            Timestamp::from(UNIX_EPOCH + d),
            Timestamp::from_millis(1_234)
        );
        assert_eq!(
            Timestamp::from(UNIX_EPOCH - d),
            Timestamp::from_millis(-1_234)
        );
        assert_eq!(Timestamp::MAX.saturating_add(d), Timestamp::MAX);
        assert_eq!(ts.saturating_sub(d).as_millis(), 266);
        assert_eq!(
            ts.duration_since(Timestamp::EPOCH),
            Duration::from_millis(1_500)
        );
        assert_eq!(Timestamp::EPOCH.duration_since(ts), Duration::ZERO);
        assert_eq!(ts.to_string(), "1500");
    }

    #[test]
    fn watermarks_pass_timestamps_at_or_before_them() {
        let ts = Timestamp::from_millis(10);
        assert!(Watermark::at(ts).passed(ts));
        assert!(!Watermark::from_millis(9).passed(ts));
        assert!(!Watermark::MIN.passed(Timestamp::MIN.saturating_add(Duration::from_millis(1))));
        assert!(Watermark::MAX.passed(Timestamp::MAX));
        assert_eq!(Watermark::default(), Watermark::MIN);
        assert_eq!(Watermark::at(ts).timestamp(), ts);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("10s"), Ok(10_000));
        assert_eq!(parse_duration_ms("10m"), Ok(600_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("1500"), Ok(1500));
        assert!(parse_duration_ms("ten").is_err());
        assert!(parse_duration_ms("5y").is_err());
        assert!(parse_duration_ms("").is_err());
    }
}
