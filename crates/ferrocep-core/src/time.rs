//! Time: the newtypes of event time, duration parsing for specs, and Flink's
//! bounded-out-of-orderness watermark (`max_ts - max_out_of_orderness - 1`,
//! emitted after every event; none before the first).

/// The smallest watermark: nothing seen yet (Flink `Long.MIN_VALUE`).
pub const MIN_WATERMARK: i64 = i64::MIN;
/// The watermark a bounded input ends with (Flink `Watermark.MAX_WATERMARK`).
pub const MAX_WATERMARK: i64 = i64::MAX;

/// Flink's `BoundedOutOfOrdernessWatermarks`, with a watermark after every event.
#[derive(Clone, Debug)]
pub struct BoundedOutOfOrderness {
    max_out_of_orderness: i64,
    max_ts: Option<i64>,
}

impl BoundedOutOfOrderness {
    /// A generator allowing events up to `max_out_of_orderness` ms behind the newest.
    pub fn new(max_out_of_orderness: i64) -> Self {
        BoundedOutOfOrderness {
            max_out_of_orderness,
            max_ts: None,
        }
    }

    /// Records an event timestamp and returns the watermark that follows it.
    pub fn on_event(&mut self, ts: i64) -> i64 {
        let max = self.max_ts.map_or(ts, |m| m.max(ts));
        self.max_ts = Some(max);
        self.current()
    }

    /// The current watermark ([`MIN_WATERMARK`] before the first event).
    pub fn current(&self) -> i64 {
        match self.max_ts {
            None => MIN_WATERMARK,
            Some(m) => m
                .saturating_sub(self.max_out_of_orderness)
                .saturating_sub(1),
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
        let mut w = BoundedOutOfOrderness::new(0);
        assert_eq!(w.current(), MIN_WATERMARK);
        assert_eq!(w.on_event(10), 9);
        assert_eq!(w.on_event(5), 9);
        let mut w = BoundedOutOfOrderness::new(100);
        assert_eq!(w.on_event(1000), 899);
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
