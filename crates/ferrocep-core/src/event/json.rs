//! A strict JSON scanner that accepts exactly what the oracle's Jackson (2.20, default
//! `StreamReadConstraints`) accepts, without building a tree:
//!
//! - RFC 8259 grammar only: no comments, single quotes, `NaN`, leading zeros, `+1`, `.5`, `5.`,
//!   trailing commas, unescaped control characters; whitespace is space, tab, CR, LF;
//! - escapes `\" \\ \/ \b \f \n \r \t \uXXXX`; a lone surrogate escape (`\ud800`) is accepted
//!   (Jackson reads it into a Java string) and decoded as WTF-8;
//! - nesting depth at most 1000, numbers at most 1000 digits (counted as Jackson counts them),
//!   names at most 50,000 and strings at most 20,000,000 UTF-16 units;
//! - a float whose `BigDecimal` would be out of range (`1e2147483648`) is rejected (Jackson
//!   throws an unchecked `NumberFormatException` there, which fails the oracle's whole job).
//!
//! Duplicate names are allowed; the last one wins (Jackson's tree keeps the last value).

use std::borrow::Cow;
use std::fmt::Write as _;

use super::value::{dedup_last_wins, push_surrogate, Dec, DecParts, Map, Str, Value};

/// Jackson's `StreamReadConstraints` defaults.
pub(crate) const MAX_DEPTH: usize = 1000;
const MAX_NUMBER_LEN: i64 = 1000;
pub(crate) const MAX_NAME_LEN: usize = 50_000;
pub(crate) const MAX_STRING_LEN: usize = 20_000_000;

/// What a scanned value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Nothing recorded (absent).
    None,
    /// A string; `esc`: it contains a backslash escape.
    Str {
        esc: bool,
    },
    /// An integer (no fraction, no exponent).
    Int,
    /// A number with a fraction or an exponent.
    Float,
    True,
    False,
    Null,
    Arr,
    Obj,
}

/// Where a value is in the line: `b[start..end]` is its JSON text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

impl Span {
    pub const NONE: Span = Span {
        start: 0,
        end: 0,
        kind: Kind::None,
    };
}

/// What is wrong with a line that is not JSON (the message is built only when reported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    ExpectedValue,
    ExpectedName,
    ExpectedColon,
    ExpectedObjectSep,
    ExpectedArraySep,
    ExpectedEnd,
    UnterminatedString,
    BadEscape,
    HexDigit,
    ControlChar,
    LeadingZero,
    DigitAfterMinus,
    DigitAfterPoint,
    DigitInExponent,
    NumberTooLong,
    NumberRange,
    BadToken,
    TooDeep,
    StringTooLong,
    NameTooLong,
}

/// Why a line is not JSON: what, and at which byte offset of the scanned text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct JsonError {
    pub pos: usize,
    pub code: Code,
}

impl JsonError {
    /// A short description, e.g. `unexpected character 'x', expected a value`.
    pub fn message(&self, text: &[u8]) -> String {
        let expected = |what: &str| match text.get(self.pos) {
            None => format!("unexpected end of input, expected {what}"),
            Some(_) => format!(
                "unexpected character {:?}, expected {what}",
                char_at(text, self.pos)
            ),
        };
        match self.code {
            Code::ExpectedValue => expected("a value"),
            Code::ExpectedName => expected("a double-quoted field name"),
            Code::ExpectedColon => expected("a colon after a field name"),
            Code::ExpectedObjectSep => expected("a comma or '}' after an object entry"),
            Code::ExpectedArraySep => expected("a comma or ']' after an array element"),
            Code::ExpectedEnd => expected("the end of the line after the JSON value"),
            Code::HexDigit => expected("a hex digit of a \\u escape"),
            Code::DigitAfterMinus => expected("a digit after the minus sign"),
            Code::DigitAfterPoint => expected("a digit after the decimal point"),
            Code::DigitInExponent => expected("a digit in the exponent"),
            Code::UnterminatedString => "unterminated string".to_string(),
            Code::BadEscape => {
                format!(
                    "unrecognized character escape {:?}",
                    char_at(text, self.pos)
                )
            }
            Code::ControlChar => format!(
                "unescaped control character U+{:04X} in a string",
                text.get(self.pos).copied().unwrap_or(0)
            ),
            Code::LeadingZero => "invalid number: leading zeroes are not allowed".to_string(),
            Code::NumberTooLong => "number longer than 1000 digits".to_string(),
            Code::NumberRange => "number out of the range of a decimal".to_string(),
            Code::BadToken => {
                let rest = text.get(self.pos..).unwrap_or(&[]);
                let n = rest
                    .iter()
                    .take(32)
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .count();
                format!(
                    "unrecognized token '{}'",
                    String::from_utf8_lossy(&rest[..n.max(1).min(rest.len())])
                )
            }
            Code::TooDeep => "nesting depth exceeds 1000".to_string(),
            Code::StringTooLong => "string value longer than 20000000 characters".to_string(),
            Code::NameTooLong => "field name longer than 50000 characters".to_string(),
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, JsonError>;

/// Bytes that end the fast path of a string: `"`, `\` and control characters.
static STR_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

pub(crate) const LO: u64 = 0x0101_0101_0101_0101;
pub(crate) const HI: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of `v` that is `"`, `\` or a control character (exact for the lowest
/// such byte, which is all that is used).
#[inline(always)]
pub(crate) fn special_bytes(v: u64) -> u64 {
    let q = v ^ (LO * u64::from(b'"'));
    let s = v ^ (LO * u64::from(b'\\'));
    let quote = q.wrapping_sub(LO) & !q;
    let slash = s.wrapping_sub(LO) & !s;
    let ctl = v.wrapping_sub(LO * 0x20) & !v;
    (quote | slash | ctl) & HI
}

/// Position of the first `"`, `\` or control character at or after `i` (or `b.len()`).
#[inline(always)]
pub(crate) fn find_special(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let m = special_bytes(u64::from_le_bytes(w));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !STR_STOP[b[i] as usize] {
        i += 1;
    }
    i
}

/// A cursor over JSON text.
pub(crate) struct Scanner<'a> {
    pub b: &'a [u8],
    pub i: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Scanner { b, i: 0 }
    }

    #[inline]
    pub fn fail<T>(&self, code: Code) -> Result<T> {
        Err(JsonError { pos: self.i, code })
    }

    #[inline(always)]
    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    pub fn skip_ws(&mut self) {
        match self.b.get(self.i) {
            Some(&c) if c <= b' ' => self.skip_ws_slow(),
            _ => {}
        }
    }

    fn skip_ws_slow(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline(always)]
    pub fn expect(&mut self, c: u8, code: Code) -> Result<()> {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            self.fail(code)
        }
    }

    /// Scans a string at `"`; returns (content start, content end, has escapes); the cursor
    /// ends after the closing quote. Does not check the length limits.
    #[inline(always)]
    pub fn scan_string_raw(&mut self) -> Result<(usize, usize, bool)> {
        let b = self.b;
        let start = self.i + 1;
        let mut i = start;
        let mut esc = false;
        loop {
            i = find_special(b, i);
            match b.get(i) {
                Some(b'"') => {
                    self.i = i + 1;
                    return Ok((start, i, esc));
                }
                Some(b'\\') => {
                    esc = true;
                    i += 1;
                    match b.get(i) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 1,
                        Some(b'u') => {
                            i += 1;
                            for _ in 0..4 {
                                match b.get(i) {
                                    Some(c) if c.is_ascii_hexdigit() => i += 1,
                                    _ => {
                                        return Err(JsonError {
                                            pos: i,
                                            code: Code::HexDigit,
                                        })
                                    }
                                }
                            }
                        }
                        None => {
                            return Err(JsonError {
                                pos: i,
                                code: Code::UnterminatedString,
                            })
                        }
                        Some(_) => {
                            return Err(JsonError {
                                pos: i,
                                code: Code::BadEscape,
                            })
                        }
                    }
                }
                None => {
                    return Err(JsonError {
                        pos: i,
                        code: Code::UnterminatedString,
                    })
                }
                Some(_) => {
                    return Err(JsonError {
                        pos: i,
                        code: Code::ControlChar,
                    })
                }
            }
        }
    }

    /// Scans a string value (checks Jackson's string length limit).
    #[inline]
    pub fn scan_string(&mut self) -> Result<bool> {
        let (s, e, esc) = self.scan_string_raw()?;
        if e - s > MAX_STRING_LEN && utf16_len(&self.b[s..e], esc) > MAX_STRING_LEN {
            return Err(JsonError {
                pos: s,
                code: Code::StringTooLong,
            });
        }
        Ok(esc)
    }

    /// Scans an object member name (checks Jackson's name length limit).
    #[inline]
    pub fn scan_name(&mut self) -> Result<(usize, usize, bool)> {
        if self.peek() != Some(b'"') {
            return self.fail(Code::ExpectedName);
        }
        let (s, e, esc) = self.scan_string_raw()?;
        if e - s > MAX_NAME_LEN && utf16_len(&self.b[s..e], esc) > MAX_NAME_LEN {
            return Err(JsonError {
                pos: s,
                code: Code::NameTooLong,
            });
        }
        Ok((s, e, esc))
    }

    /// Scans a number at `-` or a digit (Jackson's rules, including its length count).
    pub fn scan_number(&mut self) -> Result<Kind> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let digits = |mut i: usize| {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            i
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        let leading_zero = match b.get(i) {
            Some(b'0') => {
                i += 1;
                if matches!(b.get(i), Some(b'0'..=b'9')) {
                    return Err(JsonError {
                        pos: start,
                        code: Code::LeadingZero,
                    });
                }
                true
            }
            Some(b'1'..=b'9') => {
                i = digits(i + 1);
                false
            }
            _ => {
                return Err(JsonError {
                    pos: i,
                    code: Code::DigitAfterMinus,
                })
            }
        };
        let int_len = (i - int_start) as i64;
        let mut frac_len: i64 = -1;
        if b.get(i) == Some(&b'.') {
            let s = i + 1;
            i = digits(s);
            if s == i {
                return Err(JsonError {
                    pos: i,
                    code: Code::DigitAfterPoint,
                });
            }
            frac_len = (i - s) as i64;
        }
        let mut exp_len: i64 = -1;
        let mut exp: i64 = 0;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            let neg = b.get(i) == Some(&b'-');
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let s = i;
            while let Some(&c) = b.get(i) {
                if !c.is_ascii_digit() {
                    break;
                }
                exp = (exp * 10 + i64::from(c - b'0')).min(1 << 40);
                i += 1;
            }
            if s == i {
                return Err(JsonError {
                    pos: i,
                    code: Code::DigitInExponent,
                });
            }
            exp_len = (i - s) as i64;
            if neg {
                exp = -exp;
            }
        }
        self.i = i;
        if frac_len < 0 && exp_len < 0 {
            if int_len > MAX_NUMBER_LEN {
                return Err(JsonError {
                    pos: start,
                    code: Code::NumberTooLong,
                });
            }
            return Ok(Kind::Int);
        }
        // Jackson counts int + fraction + exponent digits; on its path for numbers starting
        // with 0, a missing fraction or exponent counts -1 (else 0).
        let len = if leading_zero {
            1 + frac_len + exp_len
        } else {
            int_len + frac_len.max(0) + exp_len.max(0)
        };
        if len > MAX_NUMBER_LEN {
            return Err(JsonError {
                pos: start,
                code: Code::NumberTooLong,
            });
        }
        // BigDecimal: exponent and scale (fraction digits - exponent) within an int.
        let int = i64::from(i32::MIN)..=i64::from(i32::MAX);
        if !int.contains(&exp) || !int.contains(&(frac_len.max(0) - exp)) {
            return Err(JsonError {
                pos: start,
                code: Code::NumberRange,
            });
        }
        Ok(Kind::Float)
    }

    #[inline]
    fn literal(&mut self, word: &'static [u8], kind: Kind) -> Result<Kind> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(kind)
        } else {
            self.fail(Code::BadToken)
        }
    }

    /// Scans any value (validating it); `depth` is the nesting depth of the container that
    /// holds it (0 at the root).
    #[inline]
    pub fn skip_value(&mut self, depth: usize) -> Result<Kind> {
        match self.peek() {
            Some(b'"') => Ok(Kind::Str {
                esc: self.scan_string()?,
            }),
            Some(b'-' | b'0'..=b'9') => self.scan_number(),
            Some(b't') => self.literal(b"true", Kind::True),
            Some(b'f') => self.literal(b"false", Kind::False),
            Some(b'n') => self.literal(b"null", Kind::Null),
            Some(c @ (b'[' | b'{')) => {
                self.skip_container(depth)?;
                Ok(if c == b'[' { Kind::Arr } else { Kind::Obj })
            }
            _ => self.fail(Code::ExpectedValue),
        }
    }

    /// Scans a value inside a container: a scalar, or `true` when the cursor is at a `[`/`{`
    /// to enter.
    #[inline]
    fn scalar_or_open(&mut self) -> Result<bool> {
        match self.peek() {
            Some(b'"') => self.scan_string().map(|_| false),
            Some(b'-' | b'0'..=b'9') => self.scan_number().map(|_| false),
            Some(b't') => self.literal(b"true", Kind::True).map(|_| false),
            Some(b'f') => self.literal(b"false", Kind::False).map(|_| false),
            Some(b'n') => self.literal(b"null", Kind::Null).map(|_| false),
            Some(b'[' | b'{') => Ok(true),
            _ => self.fail(Code::ExpectedValue),
        }
    }

    /// Scans an object's `"name" :` up to its value.
    #[inline]
    fn name_colon(&mut self) -> Result<()> {
        self.scan_name()?;
        self.skip_ws();
        self.expect(b':', Code::ExpectedColon)?;
        self.skip_ws();
        Ok(())
    }

    /// Scans an array or object at `[`/`{` without recursion (a bit stack of open containers).
    fn skip_container(&mut self, depth: usize) -> Result<()> {
        let mut stack = [0u64; MAX_DEPTH / 64 + 1]; // bit set: that level is an object
        let mut level = 0usize;
        // `open`: the cursor is at a `[`/`{` to enter.
        let mut open = true;
        loop {
            if open {
                let is_obj = self.peek() == Some(b'{');
                if depth + level + 1 > MAX_DEPTH {
                    return self.fail(Code::TooDeep);
                }
                if is_obj {
                    stack[level / 64] |= 1 << (level % 64);
                } else {
                    stack[level / 64] &= !(1 << (level % 64));
                }
                level += 1;
                self.i += 1;
                self.skip_ws();
                let close = if is_obj { b'}' } else { b']' };
                if self.peek() == Some(close) {
                    self.i += 1;
                    level -= 1;
                    if level == 0 {
                        return Ok(());
                    }
                } else {
                    if is_obj {
                        self.name_colon()?;
                    }
                    if self.scalar_or_open()? {
                        continue;
                    }
                }
            }
            // After a value inside the container at `level - 1`.
            let is_obj = stack[(level - 1) / 64] & (1 << ((level - 1) % 64)) != 0;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.skip_ws();
                    if is_obj {
                        self.name_colon()?;
                    }
                    open = self.scalar_or_open()?;
                }
                Some(b'}') if is_obj => {
                    self.i += 1;
                    level -= 1;
                    if level == 0 {
                        return Ok(());
                    }
                    open = false;
                }
                Some(b']') if !is_obj => {
                    self.i += 1;
                    level -= 1;
                    if level == 0 {
                        return Ok(());
                    }
                    open = false;
                }
                _ => {
                    return self.fail(if is_obj {
                        Code::ExpectedObjectSep
                    } else {
                        Code::ExpectedArraySep
                    })
                }
            }
        }
    }

    /// After the root value: only whitespace may follow.
    pub fn expect_end(&mut self) -> Result<()> {
        self.skip_ws();
        if self.i < self.b.len() {
            return self.fail(Code::ExpectedEnd);
        }
        Ok(())
    }
}

/// The character at byte `i` (for messages).
fn char_at(b: &[u8], i: usize) -> char {
    let end = (i + 4).min(b.len());
    let bytes = b.get(i..end).unwrap_or(&[]);
    let s = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    };
    s.chars().next().unwrap_or('\u{FFFD}')
}

/// UTF-16 length of a string's content once its escapes are decoded.
fn utf16_len(raw: &[u8], esc: bool) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if esc && c == b'\\' {
            i += if raw.get(i + 1) == Some(&b'u') { 6 } else { 2 };
            n += 1;
        } else {
            // UTF-8: continuation bytes add nothing; 4-byte sequences are 2 UTF-16 units
            if c & 0xC0 != 0x80 {
                n += if c >= 0xF0 { 2 } else { 1 };
            }
            i += 1;
        }
    }
    n
}

fn hex4(b: &[u8]) -> u16 {
    b.iter().take(4).fold(0u16, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => 0,
        };
        (acc << 4) | u16::from(d)
    })
}

/// Decodes the content of a validated JSON string (between the quotes) into WTF-8.
pub(crate) fn decode_string(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = raw.get(i + 1).copied().unwrap_or(b'\\');
        i += 2;
        match e {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0C),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => {
                let u = hex4(raw.get(i..).unwrap_or(&[]));
                i += 4;
                if (0xD800..0xDC00).contains(&u)
                    && raw.get(i) == Some(&b'\\')
                    && raw.get(i + 1) == Some(&b'u')
                {
                    let lo = hex4(raw.get(i + 2..).unwrap_or(&[]));
                    if (0xDC00..0xE000).contains(&lo) {
                        let cp =
                            0x10000 + ((u32::from(u) - 0xD800) << 10) + (u32::from(lo) - 0xDC00);
                        push_char(&mut out, char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        i += 6;
                        continue;
                    }
                }
                match char::from_u32(u32::from(u)) {
                    Some(ch) => push_char(&mut out, ch),
                    None => push_surrogate(&mut out, u),
                }
            }
            other => out.push(other), // " \ /
        }
    }
    out
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// The string value of a validated JSON string span (quotes included), borrowed when it has
/// no escapes.
#[inline]
pub(crate) fn string_value<'a>(b: &'a [u8], span: Span, esc: bool) -> Str<'a> {
    let raw = &b[span.start + 1..span.end - 1];
    if esc {
        Str::from_wtf8(Cow::Owned(decode_string(raw)))
    } else {
        Str::from_wtf8(Cow::Borrowed(raw))
    }
}

/// The value of 8 ASCII digits read as a little-endian word (the first digit in the low byte).
#[inline(always)]
fn eight_digits(w: u64) -> u64 {
    const LOW: u64 = 0x0000_00FF_0000_00FF;
    let w = w.wrapping_sub(LO * u64::from(b'0'));
    // Each byte pair becomes its two-digit value (in the low byte of the pair) ...
    let w = w.wrapping_mul(10).wrapping_add(w >> 8);
    // ... and the four pairs their eight-digit value.
    let hi_pairs = (w & LOW).wrapping_mul(100 + (1_000_000 << 32));
    let lo_pairs = ((w >> 16) & LOW).wrapping_mul(1 + (10_000 << 32));
    hi_pairs.wrapping_add(lo_pairs) >> 32
}

/// The value of a validated JSON integer if it fits `i64`.
#[inline]
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let (neg, mut digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.len() <= 18 {
        let mut v: u64 = 0;
        while let Some((chunk, rest)) = digits.split_first_chunk::<8>() {
            v = v
                .wrapping_mul(100_000_000)
                .wrapping_add(eight_digits(u64::from_le_bytes(*chunk)));
            digits = rest;
        }
        for &c in digits {
            v = v
                .wrapping_mul(10)
                .wrapping_add(u64::from(c.wrapping_sub(b'0')));
        }
        // At most 18 digits: below 10^18, so it fits.
        let v = v as i64;
        return Some(if neg { -v } else { v });
    }
    text.parse::<i64>().ok()
}

/// A number value from a validated number span.
#[inline]
pub(crate) fn number_value(text: &str, kind: Kind) -> Value<'_> {
    if kind == Kind::Int {
        if let Some(v) = parse_int(text) {
            return Value::Int(v);
        }
    }
    Value::Dec(Dec::trusted(text))
}

/// The expression value of a validated span of `line`.
#[inline]
pub(crate) fn span_value<'a>(line: &'a str, span: Span) -> Value<'a> {
    let b = line.as_bytes();
    match span.kind {
        Kind::None | Kind::Null => Value::Null,
        Kind::Str { esc: false } => Value::Str(string_value(b, span, false)),
        Kind::Int => match line.get(span.start..span.end).map(parse_int) {
            Some(Some(v)) => Value::Int(v),
            _ => other_span_value(line, span),
        },
        _ => other_span_value(line, span),
    }
}

/// [`span_value`] of the less common kinds.
fn other_span_value<'a>(line: &'a str, span: Span) -> Value<'a> {
    let b = line.as_bytes();
    match span.kind {
        Kind::None | Kind::Null => Value::Null,
        Kind::True => Value::Bool(true),
        Kind::False => Value::Bool(false),
        Kind::Str { esc } => Value::Str(string_value(b, span, esc)),
        Kind::Int | Kind::Float => match line.get(span.start..span.end) {
            Some(t) => number_value(t, span.kind),
            None => Value::Null,
        },
        Kind::Arr | Kind::Obj => {
            let mut s = Scanner { b, i: span.start };
            build_value(line, &mut s).unwrap_or(Value::Null)
        }
    }
}

/// Builds the value at the cursor (already validated, so nesting is at most 1000).
fn build_value<'a>(line: &'a str, s: &mut Scanner<'a>) -> Result<Value<'a>> {
    let start = s.i;
    match s.peek() {
        Some(b'[') => {
            s.i += 1;
            s.skip_ws();
            let mut items = Vec::new();
            if s.peek() == Some(b']') {
                s.i += 1;
                return Ok(Value::List(items));
            }
            loop {
                items.push(build_value(line, s)?);
                s.skip_ws();
                match s.peek() {
                    Some(b',') => {
                        s.i += 1;
                        s.skip_ws();
                    }
                    _ => {
                        s.expect(b']', Code::ExpectedArraySep)?;
                        return Ok(Value::List(items));
                    }
                }
            }
        }
        Some(b'{') => {
            s.i += 1;
            s.skip_ws();
            let mut entries = Vec::new();
            if s.peek() == Some(b'}') {
                s.i += 1;
                return Ok(Value::Map(Map::from_entries(entries)));
            }
            loop {
                let (ks, ke, esc) = s.scan_name()?;
                let key = string_value(
                    s.b,
                    Span {
                        start: ks - 1,
                        end: ke + 1,
                        kind: Kind::None,
                    },
                    esc,
                );
                s.skip_ws();
                s.expect(b':', Code::ExpectedColon)?;
                s.skip_ws();
                let v = build_value(line, s)?;
                entries.push((key, v));
                s.skip_ws();
                match s.peek() {
                    Some(b',') => {
                        s.i += 1;
                        s.skip_ws();
                    }
                    _ => {
                        s.expect(b'}', Code::ExpectedObjectSep)?;
                        return Ok(Value::Map(Map::from_entries(entries)));
                    }
                }
            }
        }
        _ => {
            let kind = s.skip_value(MAX_DEPTH)?;
            Ok(span_value(
                line,
                Span {
                    start,
                    end: s.i,
                    kind,
                },
            ))
        }
    }
}

// ------------------------------------------------------------------ Jackson serialization

/// Appends `s` (WTF-8) as a JSON string the way Jackson writes it: `"` and `\` escaped,
/// control characters as `\b \t \n \f \r` or `\u00XX` (upper-case hex), everything else as is.
///
/// A lone surrogate comes out as a lower-case escape (`\ud800`), which Jackson never writes:
/// Java tells such strings apart (`"h\ud800"` and `"h\udbff"` are two keys), though its UTF-8
/// output prints each of them as `?`. [`print_lone_surrogates`] turns the text into that print.
pub(crate) fn write_jackson_string(out: &mut String, mut s: &[u8]) {
    out.push('"');
    loop {
        match std::str::from_utf8(s) {
            Ok(text) => {
                push_jackson_chars(out, text);
                break;
            }
            Err(e) => {
                let (valid, rest) = s.split_at(e.valid_up_to());
                push_jackson_chars(out, std::str::from_utf8(valid).unwrap_or_default());
                match rest {
                    // A lone surrogate in its WTF-8 form (see `push_surrogate`).
                    [0xed, b1 @ 0xa0..=0xbf, b2 @ 0x80..=0xbf, tail @ ..] => {
                        let unit = 0xd000 | (u32::from(b1 & 0x3f) << 6) | u32::from(b2 & 0x3f);
                        let _ = write!(out, "\\u{unit:04x}");
                        s = tail;
                    }
                    // Not produced by the decoder; kept lossy rather than lost.
                    _ => {
                        out.push('?');
                        s = &rest[e.error_len().unwrap_or(rest.len()).min(rest.len())..];
                    }
                }
            }
        }
    }
    out.push('"');
}

/// `text` (a key's JSON text) as Java's UTF-8 output prints it: each lone-surrogate escape of
/// `write_jackson_string` becomes `?`.
pub fn print_lone_surrogates(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    if !b.contains(&b'\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'u') && b.get(i + 2) == Some(&b'd') {
                out.push('?');
                i += 6;
            } else {
                // Any other escape is two characters or `\u00XX`, copied as is.
                out.push_str(&text[i..(i + 2).min(b.len())]);
                i += 2;
            }
        } else {
            let start = i;
            while i < b.len() && b[i] != b'\\' {
                i += 1;
            }
            out.push_str(&text[start..i]);
        }
    }
    Cow::Owned(out)
}

fn push_jackson_chars(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 0xF] as char);
            }
            c => out.push(c),
        }
    }
}

/// The text Jackson's `JsonNode.toString()` gives for a validated span: compact, strings
/// re-escaped, floats as `BigDecimal.toString()`, `-0` as `0`, duplicate names merged (first
/// position, last value).
#[inline]
pub(crate) fn jackson_text<'a>(line: &'a str, span: Span) -> Cow<'a, str> {
    match (span.kind, line.get(span.start..span.end)) {
        (Kind::Str { esc: false }, Some(raw)) => Cow::Borrowed(raw),
        _ => other_jackson_text(line, span),
    }
}

/// [`jackson_text`] of anything but a string without escapes.
fn other_jackson_text<'a>(line: &'a str, span: Span) -> Cow<'a, str> {
    let b = line.as_bytes();
    let raw = line.get(span.start..span.end).unwrap_or("");
    match span.kind {
        Kind::Str { esc: false } => Cow::Borrowed(raw),
        Kind::Int if raw != "-0" => Cow::Borrowed(raw),
        Kind::True | Kind::False | Kind::Null => Cow::Borrowed(raw),
        _ => {
            let mut out = String::with_capacity(span.end - span.start);
            let mut s = Scanner { b, i: span.start };
            // Validated already; on an unexpected failure keep what was written.
            let _ = write_jackson(line, &mut s, &mut out);
            Cow::Owned(out)
        }
    }
}

fn write_jackson(line: &str, s: &mut Scanner<'_>, out: &mut String) -> Result<()> {
    let start = s.i;
    match s.peek() {
        Some(b'[') => {
            s.i += 1;
            s.skip_ws();
            out.push('[');
            if s.peek() == Some(b']') {
                s.i += 1;
                out.push(']');
                return Ok(());
            }
            loop {
                write_jackson(line, s, out)?;
                s.skip_ws();
                match s.peek() {
                    Some(b',') => {
                        s.i += 1;
                        s.skip_ws();
                        out.push(',');
                    }
                    _ => {
                        s.expect(b']', Code::ExpectedArraySep)?;
                        out.push(']');
                        return Ok(());
                    }
                }
            }
        }
        Some(b'{') => {
            // Collect entries first: a duplicate name replaces the value at the first position.
            s.i += 1;
            s.skip_ws();
            let mut entries: Vec<(Vec<u8>, String)> = Vec::new();
            if s.peek() != Some(b'}') {
                loop {
                    let (ks, ke, esc) = s.scan_name()?;
                    let raw = &s.b[ks..ke];
                    let key = if esc {
                        decode_string(raw)
                    } else {
                        raw.to_vec()
                    };
                    s.skip_ws();
                    s.expect(b':', Code::ExpectedColon)?;
                    s.skip_ws();
                    let mut v = String::new();
                    write_jackson(line, s, &mut v)?;
                    entries.push((key, v));
                    s.skip_ws();
                    if s.peek() == Some(b',') {
                        s.i += 1;
                        s.skip_ws();
                    } else {
                        break;
                    }
                }
            }
            s.expect(b'}', Code::ExpectedObjectSep)?;
            let entries = dedup_last_wins(entries);
            out.push('{');
            for (n, (k, v)) in entries.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_jackson_string(out, k);
                out.push(':');
                out.push_str(v);
            }
            out.push('}');
            Ok(())
        }
        _ => {
            let kind = s.skip_value(MAX_DEPTH)?;
            let raw = line.get(start..s.i).unwrap_or("");
            match kind {
                Kind::Str { esc } => {
                    let content = &s.b[start + 1..s.i - 1];
                    if esc {
                        write_jackson_string(out, &decode_string(content));
                    } else {
                        write_jackson_string(out, content);
                    }
                }
                Kind::Int => out.push_str(if raw == "-0" { "0" } else { raw }),
                Kind::Float => match DecParts::parse(raw.as_bytes()) {
                    Some(p) => out.push_str(&p.java_string()),
                    None => out.push_str(raw),
                },
                _ => out.push_str(raw),
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(s: &str) -> bool {
        let mut sc = Scanner::new(s.as_bytes());
        sc.skip_ws();
        sc.skip_value(0).is_ok() && sc.expect_end().is_ok()
    }

    #[test]
    fn grammar() {
        for ok in [
            r#"{}"#,
            r#"{"a":1}"#,
            r#" { "a" : [ 1 , 2.5e-3 , -0 , true , false , null , "x" , { } , [ ] ] } "#,
            r#"{"a":"\"\\\/\b\f\n\r\t\u00e9\ud800"}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"":0}"#,
            "{\"a\":\t\r\n1}",
            r#"[1,[2,[3]]]"#,
            r#""s""#,
            r#"-1.5E+10"#,
            r#"0"#,
            r#"{"a":"é😀\u2028"}"#,
        ] {
            assert!(valid(ok), "{ok}");
        }
        for bad in [
            "",
            "{",
            "}",
            "{,}",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":1 "b":2}"#,
            "{'a':1}",
            "{a:1}",
            r#"{"a":tru}"#,
            r#"{"a":truex}"#,
            r#"{"a":01}"#,
            r#"{"a":-01}"#,
            r#"{"a":.5}"#,
            r#"{"a":5.}"#,
            r#"{"a":1.e5}"#,
            r#"{"a":+1}"#,
            r#"{"a":-}"#,
            r#"{"a":NaN}"#,
            r#"{"a":1e}"#,
            r#"{"a":1e+}"#,
            r#"[1,]"#,
            r#"[,1]"#,
            r#"{"a":1}x"#,
            r#"{"a":1}{}"#,
            "{\"a\":\"x\u{1}\"}",
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\u12G4"}"#,
            "{\"a\":1\u{b}}",
            "{\"a\":1}\u{a0}",
            "\u{feff}{}",
            r#"{"a":1}//c"#,
            r#"[1 2]"#,
            r#"{"a":"x}"#,
            r#"{"a":1e2147483648}"#,
            r#"{"a":1e-2147483648}"#,
            r#"{"a":1.5e-2147483647}"#,
            r#"{"a":[}"#,
            r#"{"a":{]}"#,
            r#"{"a" : 1 : 2}"#,
        ] {
            assert!(!valid(bad), "{bad}");
        }
    }

    #[test]
    fn depth_limit() {
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(999), "]".repeat(999));
        assert!(valid(&ok));
        let bad = format!("{{\"a\":{}{}}}", "[".repeat(1000), "]".repeat(1000));
        assert!(!valid(&bad));
        let deep = "[".repeat(100_000);
        assert!(!valid(&deep));
    }

    #[test]
    fn number_length_limit_as_jackson() {
        let n = |s: String| valid(&format!("{{\"a\":{s}}}"));
        assert!(n("1".repeat(1000)));
        assert!(!n("1".repeat(1001)));
        assert!(n(format!("-{}", "1".repeat(1000))));
        assert!(n(format!("{}.5", "1".repeat(999))));
        assert!(!n(format!("{}.5", "1".repeat(1000))));
        assert!(n(format!("0.{}", "1".repeat(1000))));
        assert!(!n(format!("0.{}", "1".repeat(1001))));
        assert!(!n(format!("0.{}e5", "1".repeat(999))));
        assert!(n(format!("0.{}e5", "1".repeat(998))));
        assert!(n(format!("0e{}", "0".repeat(1000))));
        assert!(!n(format!("0e{}", "0".repeat(1001))));
        assert!(n(format!("1e{}1", "0".repeat(998))));
        assert!(!n(format!("1e{}1", "0".repeat(999))));
        assert!(n("1e00000000000000000000005".to_string()));
    }

    #[test]
    fn name_length_limit() {
        assert!(valid(&format!("{{\"{}\":1}}", "k".repeat(50_000))));
        assert!(!valid(&format!("{{\"{}\":1}}", "k".repeat(50_001))));
        // counted in UTF-16 units after decoding escapes
        assert!(valid(&format!("{{\"{}\":1}}", "\\u0041".repeat(50_000))));
    }

    #[test]
    fn integers() {
        for v in [
            0i64,
            7,
            -7,
            12345678,
            -87654321,
            123456789,
            1700000000000,
            -1700000000123,
            999999999999999999,
            -999999999999999999,
            1000000000000000000,
            i64::MAX,
            i64::MIN,
            10000001,
            90000009,
        ] {
            assert_eq!(parse_int(&v.to_string()), Some(v), "{v}");
        }
        assert_eq!(parse_int("-0"), Some(0));
        assert_eq!(parse_int("9223372036854775808"), None);
        for n in 1..=18 {
            let t: String = (0..n).map(|i| char::from(b'1' + (i % 9) as u8)).collect();
            assert_eq!(parse_int(&t), t.parse().ok(), "{t}");
        }
    }

    #[test]
    fn decoding() {
        assert_eq!(decode_string(br#"a\"b\\c\/d\n"#), b"a\"b\\c/d\n");
        assert_eq!(decode_string(br#"\u00e9\ud83d\ude00"#), "é😀".as_bytes());
        assert_eq!(decode_string(br#"\ud800x"#), [0xED, 0xA0, 0x80, b'x']);
        assert_eq!(decode_string(br#"\ud83d\u0041"#), [0xED, 0xA0, 0xBD, b'A']);
    }

    fn jt(s: &str) -> String {
        let mut sc = Scanner::new(s.as_bytes());
        let kind = sc.skip_value(0).unwrap_or(Kind::None);
        jackson_text(
            s,
            Span {
                start: 0,
                end: sc.i,
                kind,
            },
        )
        .into_owned()
    }

    #[test]
    fn jackson_serialization() {
        assert_eq!(jt("1"), "1");
        assert_eq!(jt("-0"), "0");
        assert_eq!(jt("1.0"), "1.0");
        assert_eq!(jt("1.50"), "1.50");
        assert_eq!(jt("1e2"), "1E+2");
        assert_eq!(jt("-0.0"), "0.0");
        assert_eq!(jt(r#""a""#), r#""a""#);
        assert_eq!(jt(r#""a\/b""#), r#""a/b""#);
        assert_eq!(jt(r#""\u00e9""#), r#""é""#);
        assert_eq!(
            jt(r#""\u0001\u001f\b\f\n\r\t\"\\""#),
            r#""\u0001\u001F\b\f\n\r\t\"\\""#
        );
        assert_eq!(jt("\"\\u007f\\u2028\""), "\"\u{7f}\u{2028}\"");
        assert_eq!(
            jt(r#"{"a" : 1 , "b":[1, 2.0 ,"x"]}"#),
            r#"{"a":1,"b":[1,2.0,"x"]}"#
        );
        assert_eq!(jt(r#"{"a":1,"a":2,"b":3}"#), r#"{"a":2,"b":3}"#);
        assert_eq!(jt(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
        assert_eq!(jt("[ ]"), "[]");
        assert_eq!(jt("{ }"), "{}");
        assert_eq!(jt("true"), "true");
        assert_eq!(jt(r#""\ud83d\ude00""#), "\"😀\"");
        assert_eq!(jt(r#""\ud800""#), "\"\\ud800\"");
        assert_eq!(jt(r#""h\udbffé\n""#), "\"h\\udbffé\\n\"");
        assert_eq!(print_lone_surrogates("\"h\\udbffé\\n\""), "\"h?é\\n\"");
        assert_eq!(
            print_lone_surrogates("\"a\\\\ud800\\u001F\""),
            "\"a\\\\ud800\\u001F\""
        );
        assert_eq!(jt("1E400"), "1E+400");
        assert_eq!(jt(r#"{"\u0061":{"x":1e1}}"#), r#"{"a":{"x":1E+1}}"#);
    }

    #[test]
    fn building_values() {
        let line = r#"[1, 2.50, "x", null, {"a": true, "a": false, "b": [ ]}]"#;
        let mut sc = Scanner::new(line.as_bytes());
        let kind = sc.skip_value(0).unwrap_or(Kind::None);
        let v = span_value(
            line,
            Span {
                start: 0,
                end: sc.i,
                kind,
            },
        );
        let Value::List(items) = v else {
            panic!("not a list")
        };
        assert_eq!(items.len(), 5);
        assert!(matches!(items[0], Value::Int(1)));
        assert!(matches!(&items[1], Value::Dec(d) if d.java_string() == "2.50"));
        assert!(matches!(&items[2], Value::Str(s) if s.as_str() == Some("x")));
        assert!(matches!(items[3], Value::Null));
        let Value::Map(m) = &items[4] else {
            panic!("not a map")
        };
        assert_eq!(m.len(), 2);
        assert!(matches!(m.get(b"a"), Some(Value::Bool(false))));
    }
}
