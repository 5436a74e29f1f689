//! Event timestamps from JSON values, as the oracle's `JsonLineSource.timestamp` reads them.
//!
//! - A JSON integer: epoch milliseconds if it fits `i64`.
//! - A JSON float: its exact `BigDecimal` value if integral and within `i64`
//!   (`1.7e12`, `1700000000000.0`; not `2.5`).
//! - A string: Java `trim()` (strips chars <= U+0020), upper-cased, a space at index 10 turned
//!   into `T`, then `OffsetDateTime.parse(s, ISO_OFFSET_DATE_TIME)` (strict resolver, lenient
//!   offset) and `toInstant().toEpochMilli()` (truncated to ms, overflow = bad):
//!   `YYYY-MM-DDTHH:MM[:SS[.f{0,9}]]` then `Z` or `±HH[:MM[:SS]]` (at most ±18:00), the year
//!   four digits, or a sign and 4 to 10 digits (`+` only beyond four; `-0000` is refused).

/// Parses an RFC 3339 / ISO offset date-time string into epoch milliseconds, as the oracle.
pub(crate) fn parse_timestamp_text(text: &[u8]) -> Option<i64> {
    // Java String.trim(): chars <= U+0020 at both ends (bytes < 0x21 in UTF-8).
    let start = text.iter().position(|&c| c > b' ')?;
    let end = text.iter().rposition(|&c| c > b' ')? + 1;
    let t = &text[start..end];
    // Any non-ASCII character makes it invalid (its upper case is never one the format uses).
    if t.len() > 64 || !t.is_ascii() {
        return None;
    }
    let mut buf = [0u8; 64];
    let s = &mut buf[..t.len()];
    s.copy_from_slice(t);
    s.make_ascii_uppercase();
    if s.len() > 10 && s[10] == b' ' {
        s[10] = b'T';
    }
    parse_iso_offset_date_time(s)
}

struct Cur<'s> {
    s: &'s [u8],
    i: usize,
}

impl Cur<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Exactly `n` digits.
    fn fixed(&mut self, n: usize) -> Option<i64> {
        let mut v = 0i64;
        for _ in 0..n {
            let c = self.peek().filter(u8::is_ascii_digit)?;
            v = v * 10 + i64::from(c - b'0');
            self.i += 1;
        }
        Some(v)
    }

    /// Up to `max` digits; returns (value, count).
    fn digits(&mut self, max: usize) -> (i64, usize) {
        let mut v = 0i64;
        let mut n = 0;
        while n < max {
            match self.peek() {
                Some(c) if c.is_ascii_digit() => {
                    v = v * 10 + i64::from(c - b'0');
                    self.i += 1;
                    n += 1;
                }
                _ => break,
            }
        }
        (v, n)
    }
}

fn is_leap(y: i64) -> bool {
    (y & 3) == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn month_len(y: i64, m: i64) -> i64 {
    match m {
        2 => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Java's `LocalDate.toEpochDay()`.
fn epoch_day(y: i64, m: i64, d: i64) -> i64 {
    let mut total = 365 * y;
    if y >= 0 {
        total += (y + 3) / 4 - (y + 99) / 100 + (y + 399) / 400;
    } else {
        total -= y / -4 - y / -100 + y / -400;
    }
    total += (367 * m - 362) / 12;
    total += d - 1;
    if m > 2 {
        total -= 1;
        if !is_leap(y) {
            total -= 1;
        }
    }
    total - 719_528
}

fn parse_iso_offset_date_time(s: &[u8]) -> Option<i64> {
    let mut c = Cur { s, i: 0 };
    // Year: YEAR, width 4..10, SignStyle.EXCEEDS_PAD, strict.
    let year = match c.peek()? {
        sign @ (b'+' | b'-') => {
            c.i += 1;
            let (v, n) = c.digits(10);
            if n < 4 || (sign == b'+' && n == 4) {
                return None;
            }
            if sign == b'-' {
                if v == 0 {
                    return None;
                }
                -v
            } else {
                v
            }
        }
        _ => c.fixed(4)?,
    };
    if !(-999_999_999..=999_999_999).contains(&year) {
        return None;
    }
    if !c.eat(b'-') {
        return None;
    }
    let month = c.fixed(2)?;
    if !c.eat(b'-') {
        return None;
    }
    let day = c.fixed(2)?;
    if !c.eat(b'T') {
        return None;
    }
    let hour = c.fixed(2)?;
    if !c.eat(b':') {
        return None;
    }
    let minute = c.fixed(2)?;
    let mut second = 0;
    let mut nanos = 0i64;
    if c.eat(b':') {
        second = c.fixed(2)?;
        if c.eat(b'.') {
            let (v, n) = c.digits(9);
            nanos = v * 10i64.pow(9 - n as u32);
            if matches!(c.peek(), Some(b'0'..=b'9')) {
                return None;
            }
        }
    }
    // Offset: "Z", or +HH, +HH:MM, +HH:MM:SS.
    let offset = if c.eat(b'Z') {
        0
    } else {
        let neg = match c.peek()? {
            b'+' => false,
            b'-' => true,
            _ => return None,
        };
        c.i += 1;
        let h = c.fixed(2)?;
        let mut m = 0;
        let mut sec = 0;
        if c.eat(b':') {
            m = c.fixed(2)?;
            if c.eat(b':') {
                sec = c.fixed(2)?;
            }
        }
        if h > 18 || m > 59 || sec > 59 {
            return None;
        }
        let total = h * 3600 + m * 60 + sec;
        if total > 18 * 3600 {
            return None;
        }
        if neg {
            -total
        } else {
            total
        }
    };
    if c.i != s.len() {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_len(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let secs = i128::from(epoch_day(year, month, day)) * 86_400
        + i128::from(hour * 3600 + minute * 60 + second)
        - i128::from(offset);
    let millis = secs * 1000 + i128::from(nanos / 1_000_000);
    i64::try_from(millis).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Option<i64> {
        parse_timestamp_text(s.as_bytes())
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(ts("2024-01-01T00:00:00Z"), Some(1_704_067_200_000));
        assert_eq!(ts("2024-01-01T00:00Z"), Some(1_704_067_200_000));
        assert_eq!(ts("2024-01-01T00:00:00.Z"), Some(1_704_067_200_000));
        assert_eq!(
            ts("2024-01-01T00:00:00.123456789Z"),
            Some(1_704_067_200_123)
        );
        assert_eq!(ts("2024-01-01T00:00:01.500+00:00"), Some(1_704_067_201_500));
        assert_eq!(ts("2024-01-01T01:00:03+01:00"), Some(1_704_067_203_000));
        assert_eq!(ts("2024-01-01T00:00:00+01"), Some(1_704_063_600_000));
        assert_eq!(ts("2024-01-01T00:00:00+01:30:15"), Some(1_704_061_785_000));
        assert_eq!(ts("2024-01-01T00:00:00+18:00"), Some(1_704_002_400_000));
        assert_eq!(ts("2024-01-01T00:00:00-18:00"), Some(1_704_132_000_000));
        assert_eq!(ts("2024-01-01T00:00:00+17:59:59"), Some(1_704_002_401_000));
        assert_eq!(ts("2024-01-01T00:00:00-00:00"), Some(1_704_067_200_000));
        assert_eq!(ts("2024-01-01T00:00:00.+01:00"), Some(1_704_063_600_000));
        assert_eq!(ts(" 2024-01-01 00:00:00z "), Some(1_704_067_200_000));
        assert_eq!(ts("2024-01-01t00:00:00z"), Some(1_704_067_200_000));
        assert_eq!(
            ts("\u{1}2024-01-01T00:00:00Z\u{0}"),
            Some(1_704_067_200_000)
        );
        assert_eq!(ts("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        assert_eq!(ts("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(ts("1969-12-31T23:59:59.9999Z"), Some(-1));
        assert_eq!(ts("+12024-01-01T00:00:00Z"), Some(317_273_587_200_000));
        assert_eq!(ts("-0001-01-01T00:00:00Z"), Some(-62_198_755_200_000));
        assert_eq!(ts("0000-01-01T00:00:00Z"), Some(-62_167_219_200_000));
        assert_eq!(ts("-0004-02-29T00:00:00Z"), Some(-62_288_352_000_000));
        assert_eq!(ts("+00000-01-01T00:00:00Z"), Some(-62_167_219_200_000));
        assert_eq!(ts("+0000002024-01-01T00:00:00Z"), Some(1_704_067_200_000));
        assert_eq!(ts("+292278994-08-17T07:12:55.807Z"), Some(i64::MAX));
        assert_eq!(ts("-292275055-05-16T16:47:04.192Z"), Some(i64::MIN));
        assert_eq!(
            ts("2024-01-01T00:00:00.999999999-00:00:01"),
            Some(1_704_067_201_999)
        );
    }

    #[test]
    fn refused_forms() {
        for s in [
            "yesterday",
            "",
            "2024-01-01T00Z",
            "2024-01-01T00:00:00.1234567891Z",
            "2024-01-01T00:00:00+0130",
            "2024-01-01T00:00:00+013015",
            "2024-01-01T00:00:00+1",
            "2024-01-01T00:00:00+01:3",
            "2024-01-01T00:00:00+18:01",
            "2024-01-01T00:00:00+19",
            "2024-01-01T00:00:00-18:00:01",
            "2024-01-01T00:00:00UTC",
            "2024-01-01T00:00:00",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "-0001-02-29T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T23:59:60Z",
            "2024-01-01T00:60:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "+2024-01-01T00:00:00Z",
            "12024-01-01T00:00:00Z",
            "-0000-01-01T00:00:00Z",
            "-00000-01-01T00:00:00Z",
            "+999999999-12-31T23:59:59Z",
            "+1000000000-01-01T00:00:00Z",
            "+292278994-08-17T07:12:55.808Z",
            "-292275055-05-16T16:47:04.191Z",
            "2024-1-01T00:00:00Z",
            "2024-01-01T0:00:00Z",
            "2024-01-01T00:00:00,5Z",
            "2024-01-01  00:00:00Z",
            "2024-01-01x00:00:00Z",
            "2024-01-01T00:00:00+01:00:60",
            "2024-01-01T00:00:00+01:60",
            "2024-01-01T00:00:00+01:30:15.5",
            "2024-01-01T00:00:00+00:00Z",
            "2024-01-01T00:00:.5Z",
            "2024-01-01T00:00.5Z",
            "2024-01-01T00:00:00.000000000000Z",
            "٢٠٢٤-01-01T00:00:00Z",
            "2024-01-01T00:00:00ｚ",
            "1700000000000",
        ] {
            assert_eq!(ts(s), None, "{s}");
        }
    }
}
