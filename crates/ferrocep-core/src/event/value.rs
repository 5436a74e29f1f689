//! The expression value model: what a field of an event (or a literal of an expression) is.
//!
//! It mirrors the oracle's Java model (`Json.toValue`): `null`, `Boolean`, `String`, `Long`,
//! `BigDecimal`, `List`, `Map`. Strings are kept as WTF-8 bytes so that JSON strings with lone
//! surrogate escapes (`"\ud800"`, which Jackson accepts) keep Java's UTF-16 semantics: byte
//! order of WTF-8 is code-point order, exactly what the oracle's `compareCodePoints` uses.
//! Decimals are exact (`BigDecimal`'s own unscaled-integer-and-scale model, or their text when
//! longer than 18 digits) and compare exactly with any number (no `f64`).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

/// One value of a field of an event, or of an expression literal.
///
/// `Null` stands for both a JSON `null` and a missing field (the oracle makes no difference).
/// Scalars borrow from the input line when they can (`'a`); lists and maps are built only when
/// an expression reads a whole array or object.
#[derive(Clone, Debug, Default)]
pub enum Value<'a> {
    /// JSON `null`, or a field that is absent (or whose path crosses a non-object).
    #[default]
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in `i64` (Java `Long`).
    Int(i64),
    /// Any other number (Java `BigDecimal`): floats, and integers beyond `i64`.
    Dec(Dec<'a>),
    /// A string (Java `String`).
    Str(Str<'a>),
    /// A JSON array.
    List(Vec<Value<'a>>),
    /// A JSON object (keys unique, last duplicate wins, as Jackson's tree does).
    Map(Map<'a>),
}

impl<'a> Value<'a> {
    /// A string value borrowing `s`.
    pub fn str(s: &'a str) -> Value<'a> {
        Value::Str(Str::from(s))
    }

    /// A number value from its JSON/decimal text (`"3"`, `"-1.50"`, `"1e3"`): `Int` when the text
    /// is a plain integer fitting `i64`, else `Dec`. `None` if the text is not a number.
    pub fn number(text: &'a str) -> Option<Value<'a>> {
        let d = Dec::parse(text)?;
        let b = text.as_bytes();
        let plain_int = !b.is_empty()
            && b.iter()
                .enumerate()
                .all(|(i, &c)| c.is_ascii_digit() || (i == 0 && c == b'-'))
            && b.iter().any(|c| c.is_ascii_digit());
        if plain_int {
            if let Ok(v) = text.parse::<i64>() {
                return Some(Value::Int(v));
            }
        }
        Some(Value::Dec(d))
    }

    /// True for `Null` (JSON null or missing).
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value with everything it borrows copied, so that it outlives the input line.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Dec(d) => Value::Dec(d.into_owned()),
            Value::Str(s) => Value::Str(s.into_owned()),
            Value::List(l) => Value::List(l.into_iter().map(Value::into_owned).collect()),
            Value::Map(m) => Value::Map(m.into_owned()),
        }
    }
}

impl From<bool> for Value<'_> {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value<'_> {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::str(s)
    }
}

/// Reuses the allocation of a value vector for another lifetime (empties it first).
///
/// `Extractor::extract` fills a `Vec<Value<'a>>` borrowing from one line; to keep one buffer
/// across lines: `buf = recycle_values(buf)` before each line.
#[allow(clippy::unnecessary_filter_map)] // `filter` could not change the lifetime
pub fn recycle_values<'b>(mut v: Vec<Value<'_>>) -> Vec<Value<'b>> {
    v.clear();
    // In-place collect: same layout, so the allocation is kept and nothing is moved.
    v.into_iter().filter_map(|_| None).collect()
}

// ---------------------------------------------------------------------------------- strings

/// A string as Java sees it: WTF-8 bytes (UTF-8, where a lone UTF-16 surrogate, which a JSON
/// `\ud800` escape can produce, is encoded as its own 3-byte sequence). For any string without
/// lone surrogates the bytes are plain UTF-8.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Str<'a>(Cow<'a, [u8]>);

impl<'a> Str<'a> {
    /// From WTF-8 bytes (as produced by the JSON decoder); not checked.
    pub(crate) fn from_wtf8(b: Cow<'a, [u8]>) -> Str<'a> {
        Str(b)
    }

    /// The WTF-8 bytes (plain UTF-8 unless the string has a lone surrogate).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The string, if it is valid Unicode (no lone surrogate).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The string with each lone surrogate replaced by `?` (what Java's UTF-8 encoder prints).
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        match std::str::from_utf8(&self.0) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => Cow::Owned(wtf8_lossy(&self.0)),
        }
    }

    /// Copies what is borrowed.
    pub fn into_owned(self) -> Str<'static> {
        Str(Cow::Owned(self.0.into_owned()))
    }
}

impl AsRef<[u8]> for Str<'_> {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl<'a> From<&'a str> for Str<'a> {
    fn from(s: &'a str) -> Self {
        Str(Cow::Borrowed(s.as_bytes()))
    }
}

impl From<String> for Str<'static> {
    fn from(s: String) -> Self {
        Str(Cow::Owned(s.into_bytes()))
    }
}

impl fmt::Debug for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.to_string_lossy(), f)
    }
}

impl fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

/// Replaces the 3-byte encodings of lone surrogates (`ED A0..BF xx`) by `?`.
pub(crate) fn wtf8_lossy(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == 0xED && i + 2 < b.len() && b[i + 1] >= 0xA0 {
            out.push(b'?');
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends UTF-16 code units as WTF-8 (pairs joined, lone surrogates kept).
pub(crate) fn push_utf16_as_wtf8(out: &mut Vec<u8>, units: &[u16]) {
    for r in char::decode_utf16(units.iter().copied()) {
        match r {
            Ok(c) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            Err(e) => push_surrogate(out, e.unpaired_surrogate()),
        }
    }
}

/// Appends a lone surrogate code unit in its generalized UTF-8 (WTF-8) form.
pub(crate) fn push_surrogate(out: &mut Vec<u8>, u: u16) {
    out.push(0xE0 | (u >> 12) as u8);
    out.push(0x80 | ((u >> 6) & 0x3F) as u8);
    out.push(0x80 | (u & 0x3F) as u8);
}

// ---------------------------------------------------------------------------------- maps

/// A JSON object as the oracle's `LinkedHashMap`: distinct keys in first-seen order, each with
/// the value of its last occurrence.
#[derive(Clone, Debug, Default)]
pub struct Map<'a> {
    entries: Vec<(Str<'a>, Value<'a>)>,
}

impl<'a> Map<'a> {
    /// An empty map.
    pub fn new() -> Self {
        Map {
            entries: Vec::new(),
        }
    }

    /// Inserts or replaces (keeping the first position, like `LinkedHashMap::put`).
    pub fn insert(&mut self, key: Str<'a>, value: Value<'a>) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == key) {
            e.1 = value;
        } else {
            self.entries.push((key, value));
        }
    }

    /// A map from entries in order, duplicates merged as [`insert`](Self::insert) would.
    pub fn from_entries(entries: Vec<(Str<'a>, Value<'a>)>) -> Self {
        Map {
            entries: dedup_last_wins(entries),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries
            .iter()
            .find(|e| e.0.as_bytes() == key)
            .map(|e| &e.1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.entries.iter().any(|e| e.0.as_bytes() == key)
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in first-seen order.
    pub fn entries(&self) -> &[(Str<'a>, Value<'a>)] {
        &self.entries
    }

    /// Copies what is borrowed.
    pub fn into_owned(self) -> Map<'static> {
        Map {
            entries: self
                .entries
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }
}

/// Merges duplicate keys the way a `LinkedHashMap` fed in order does: each key at its first
/// position, with the value of its last occurrence. Linear for small inputs, hashed for large.
pub(crate) fn dedup_last_wins<K: AsRef<[u8]>, V>(entries: Vec<(K, V)>) -> Vec<(K, V)> {
    let n = entries.len();
    // first[i]: index of the first entry with the key of entry i
    let first: Vec<usize> = if n <= 16 {
        (0..n)
            .map(|i| {
                (0..i)
                    .find(|&j| entries[j].0.as_ref() == entries[i].0.as_ref())
                    .unwrap_or(i)
            })
            .collect()
    } else {
        let mut seen: std::collections::HashMap<&[u8], usize> =
            std::collections::HashMap::with_capacity(n);
        (0..n)
            .map(|i| *seen.entry(entries[i].0.as_ref()).or_insert(i))
            .collect()
    };
    if first.iter().enumerate().all(|(i, &f)| f == i) {
        return entries;
    }
    let mut slots: Vec<Option<(K, V)>> = entries.into_iter().map(Some).collect();
    for i in 0..n {
        if first[i] != i {
            if let Some((_, v)) = slots[i].take() {
                if let Some(e) = slots[first[i]].as_mut() {
                    e.1 = v;
                }
            }
        }
    }
    slots.into_iter().flatten().collect()
}

// ---------------------------------------------------------------------------------- decimals

/// An exact decimal number (Java `BigDecimal`). Compares exactly with any other number.
///
/// Up to 18 significant digits it is kept as `BigDecimal` itself keeps it, an unscaled `i64`
/// and a scale (value = unscaled × 10^-scale; `2.50` is 250 and 2), which compares with plain
/// integer arithmetic; beyond that, as its text `-?D*(.D*)?([eE][+-]?D+)?` (ASCII digits, at
/// least one mantissa digit), compared digit by digit.
#[derive(Clone)]
pub struct Dec<'a>(Repr<'a>);

#[derive(Clone)]
enum Repr<'a> {
    Small { unscaled: i64, scale: i32 },
    Text(Cow<'a, str>),
}

/// 10^0 ..= 10^18.
const POW10: [i64; 19] = {
    let mut t = [1i64; 19];
    let mut i = 1;
    while i < 19 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

impl<'a> Dec<'a> {
    /// Parses decimal text; `None` unless it has the form above and its exponent fits the
    /// range `BigDecimal` accepts (exponent and scale within `i32`).
    pub fn parse(text: &'a str) -> Option<Dec<'a>> {
        Self::from_cow(Cow::Borrowed(text))
    }

    pub(crate) fn from_cow(text: Cow<'a, str>) -> Option<Dec<'a>> {
        let p = DecParts::parse(text.as_bytes())?;
        if !p.scale_ok() {
            return None;
        }
        Some(Self::from_parts(p).unwrap_or(Dec(Repr::Text(text))))
    }

    /// Builds from number text already checked by the JSON scanner (one pass; the small form
    /// when at most 18 significant digits).
    pub(crate) fn trusted(text: &'a str) -> Dec<'a> {
        let b = text.as_bytes();
        let mut i = 0;
        let neg = b.first() == Some(&b'-');
        if neg {
            i = 1;
        }
        let mut u: i64 = 0;
        let mut sig = 0u32; // significant digits seen (at most 18 are accumulated)
        let mut digit = |c: u8| {
            if sig > 0 || c != b'0' {
                sig += 1;
                if sig <= 18 {
                    u = u * 10 + i64::from(c - b'0');
                }
            }
        };
        while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            digit(c);
            i += 1;
        }
        let mut frac: i64 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
                digit(c);
                frac += 1;
                i += 1;
            }
        }
        let mut exp: i64 = 0;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            let eneg = b.get(i) == Some(&b'-');
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            while let Some(&c) = b.get(i) {
                if !c.is_ascii_digit() {
                    break;
                }
                exp = (exp * 10 + i64::from(c - b'0')).min(1 << 40);
                i += 1;
            }
            if eneg {
                exp = -exp;
            }
        }
        match i32::try_from(frac - exp) {
            Ok(scale) if sig <= 18 && i == b.len() => Dec(Repr::Small {
                unscaled: if neg { -u } else { u },
                scale,
            }),
            _ => Dec(Repr::Text(Cow::Borrowed(text))),
        }
    }

    /// The small form, if the significant digits fit.
    fn from_parts(p: DecParts<'_>) -> Option<Dec<'static>> {
        let digits = p
            .int
            .iter()
            .chain(p.frac.iter())
            .skip_while(|&&c| c == b'0');
        if digits.clone().count() > 18 {
            return None;
        }
        let mut u: i64 = 0;
        for &c in digits {
            u = u * 10 + i64::from(c - b'0');
        }
        let scale = i32::try_from(p.frac.len() as i64 - p.exp).ok()?;
        Some(Dec(Repr::Small {
            unscaled: if p.neg { -u } else { u },
            scale,
        }))
    }

    /// Copies what is borrowed.
    pub fn into_owned(self) -> Dec<'static> {
        Dec(match self.0 {
            Repr::Small { unscaled, scale } => Repr::Small { unscaled, scale },
            Repr::Text(t) => Repr::Text(Cow::Owned(t.into_owned())),
        })
    }

    /// The negated number (expression literal `-x`).
    pub(crate) fn negate(&self) -> Dec<'static> {
        Dec(match &self.0 {
            Repr::Small { unscaled, scale } => Repr::Small {
                unscaled: -unscaled,
                scale: *scale,
            },
            Repr::Text(t) => Repr::Text(Cow::Owned(match t.strip_prefix('-') {
                Some(rest) => rest.to_string(),
                None => format!("-{t}"),
            })),
        })
    }

    fn num(&self) -> Num<'_> {
        match &self.0 {
            Repr::Small { unscaled, scale } => Num::Small(*unscaled, *scale),
            Repr::Text(t) => Num::Text(t),
        }
    }

    /// The value as Java's `BigDecimal.toString()` writes it (`1.7e12` → `1.7E+12`,
    /// `2.50` → `2.50`).
    pub fn java_string(&self) -> String {
        match &self.0 {
            Repr::Small { unscaled, scale } => {
                let mut buf = [0u8; 20];
                let digits = int_digits(*unscaled, &mut buf);
                java_decimal_string(*unscaled < 0, digits, i64::from(*scale))
            }
            Repr::Text(t) => {
                DecParts::parse(t.as_bytes()).map_or_else(|| t.to_string(), |p| p.java_string())
            }
        }
    }

    /// The exact `i64` value if the number is integral and in range (`longValueExact`).
    pub fn to_i64_exact(&self) -> Option<i64> {
        match self.0 {
            Repr::Small { unscaled: 0, .. } => Some(0),
            Repr::Small { unscaled, scale } if scale <= 0 => {
                unscaled.checked_mul(*POW10.get(usize::try_from(-i64::from(scale)).ok()?)?)
            }
            Repr::Small { unscaled, scale } => {
                let p = *POW10.get(usize::try_from(scale).ok()?)?;
                (unscaled % p == 0).then_some(unscaled / p)
            }
            Repr::Text(_) => self.num().with_sig(|s| s.to_i64_exact()),
        }
    }

    /// The value in a canonical form, Java's `stripTrailingZeros().toString()` (`2.50` → `2.5`,
    /// `100.0` → `1E+2`, any zero → `0`): equal numbers give equal strings.
    pub fn canonical_string(&self) -> String {
        self.num().with_sig(|s| s.canonical_string())
    }
}

impl PartialEq for Dec<'_> {
    /// Numeric equality (`2.50 == 2.5`).
    fn eq(&self, other: &Self) -> bool {
        num_order(self.num(), other.num()) == Ordering::Equal
    }
}

impl Eq for Dec<'_> {}

impl PartialOrd for Dec<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Dec<'_> {
    /// Numeric order.
    fn cmp(&self, other: &Self) -> Ordering {
        num_order(self.num(), other.num())
    }
}

impl fmt::Debug for Dec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dec({})", self.java_string())
    }
}

/// A number to compare: `unscaled × 10^-scale`, or decimal text.
#[derive(Clone, Copy)]
enum Num<'t> {
    Small(i64, i32),
    Text(&'t str),
}

impl Num<'_> {
    /// Runs `f` on the significant digits of the number.
    fn with_sig<R>(self, f: impl FnOnce(Sig<'_>) -> R) -> R {
        match self {
            Num::Small(u, scale) => {
                let mut buf = [0u8; 20];
                let digits = int_digits(u, &mut buf);
                f(DecParts {
                    neg: u < 0,
                    int: digits,
                    frac: &[],
                    exp: -i64::from(scale),
                }
                .sig())
            }
            Num::Text(t) => f(DecParts::parse(t.as_bytes())
                .unwrap_or(DecParts::ZERO)
                .sig()),
        }
    }
}

/// Exact numeric order.
fn num_order(a: Num<'_>, b: Num<'_>) -> Ordering {
    if let (Num::Small(ua, sa), Num::Small(ub, sb)) = (a, b) {
        if sa == sb {
            return ua.cmp(&ub);
        }
        // Align the scales in i128: |unscaled| < 2^63 and 10^18 < 2^60.
        let d = i64::from(sa) - i64::from(sb);
        if let Some(&p) = POW10.get(d.unsigned_abs() as usize) {
            let (x, y) = if d > 0 {
                (i128::from(ua), i128::from(ub) * i128::from(p))
            } else {
                (i128::from(ua) * i128::from(p), i128::from(ub))
            };
            return x.cmp(&y);
        }
    }
    a.with_sig(|x| b.with_sig(|y| x.cmp(&y)))
}

/// The pieces of a decimal's text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DecParts<'t> {
    pub neg: bool,
    pub int: &'t [u8],
    pub frac: &'t [u8],
    /// Exponent, saturated to ±(10^15) (far beyond anything valid).
    pub exp: i64,
}

const EXP_CAP: i64 = 1_000_000_000_000_000;

impl<'t> DecParts<'t> {
    const ZERO: DecParts<'static> = DecParts {
        neg: false,
        int: b"0",
        frac: b"",
        exp: 0,
    };

    /// `-?D*(.D*)?([eE][+-]?D+)?`, at least one mantissa digit.
    pub fn parse(b: &'t [u8]) -> Option<DecParts<'t>> {
        let mut i = 0;
        let neg = b.first() == Some(&b'-');
        if neg {
            i = 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int = &b[s..i];
        let mut frac: &[u8] = &[];
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac = &b[s..i];
        }
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut exp: i64 = 0;
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let mut eneg = false;
            if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                eneg = b[i] == b'-';
                i += 1;
            }
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                exp = (exp * 10 + i64::from(b[i] - b'0')).min(EXP_CAP);
                i += 1;
            }
            if s == i {
                return None;
            }
            if eneg {
                exp = -exp;
            }
        }
        if i != b.len() {
            return None;
        }
        Some(DecParts {
            neg,
            int,
            frac,
            exp,
        })
    }

    /// `BigDecimal` limits: the exponent and the scale (= fraction digits - exponent) must fit
    /// an `int` (else Java throws "Exponent overflow" / "Scale out of range").
    pub fn scale_ok(&self) -> bool {
        let int = i64::from(i32::MIN)..=i64::from(i32::MAX);
        int.contains(&self.exp) && int.contains(&(self.frac.len() as i64 - self.exp))
    }

    /// Significant digits and the position of the decimal point.
    pub fn sig(&self) -> Sig<'t> {
        let n = self.int.len() + self.frac.len();
        let at = |k: usize| {
            if k < self.int.len() {
                self.int[k]
            } else {
                self.frac[k - self.int.len()]
            }
        };
        let mut start = 0;
        while start < n && at(start) == b'0' {
            start += 1;
        }
        let mut end = n;
        while end > start && at(end - 1) == b'0' {
            end -= 1;
        }
        Sig {
            neg: self.neg,
            a: self.int,
            b: self.frac,
            start,
            end,
            point: self.int.len() as i64 + self.exp - start as i64,
        }
    }

    /// `BigDecimal.toString()` of `new BigDecimal(text)`.
    pub fn java_string(&self) -> String {
        // unscaled = int ++ frac without leading zeros; scale = frac digits - exponent
        let mut digits: Vec<u8> = self.int.iter().chain(self.frac.iter()).copied().collect();
        let lz = digits.iter().take_while(|&&c| c == b'0').count();
        digits.drain(..lz.min(digits.len().saturating_sub(1)));
        let zero = digits.iter().all(|&c| c == b'0');
        let scale = self.frac.len() as i64 - self.exp;
        java_decimal_string(self.neg && !zero, &digits, scale)
    }
}

/// `BigDecimal.toString()` for an unscaled value (its digits, no leading zeros) and a scale.
pub(crate) fn java_decimal_string(neg: bool, digits: &[u8], scale: i64) -> String {
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    let d = |s: &[u8]| s.iter().map(|&c| c as char).collect::<String>();
    let n = digits.len() as i64;
    let adjusted = -scale + (n - 1);
    if scale == 0 {
        out.push_str(&d(digits));
    } else if scale > 0 && adjusted >= -6 {
        if n > scale {
            let cut = (n - scale) as usize;
            out.push_str(&d(&digits[..cut]));
            out.push('.');
            out.push_str(&d(&digits[cut..]));
        } else {
            out.push_str("0.");
            for _ in 0..(scale - n) {
                out.push('0');
            }
            out.push_str(&d(digits));
        }
    } else {
        out.push_str(&d(&digits[..1]));
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&d(&digits[1..]));
        }
        if adjusted != 0 {
            out.push('E');
            if adjusted > 0 {
                out.push('+');
            }
            out.push_str(&adjusted.to_string());
        }
    }
    out
}

/// A number as significant digits `0.d1d2…dn × 10^point` (no leading or trailing zero digit;
/// no digits at all for zero). The digits are `concat(a, b)[start..end]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sig<'t> {
    pub neg: bool,
    a: &'t [u8],
    b: &'t [u8],
    start: usize,
    end: usize,
    pub point: i64,
}

impl<'t> Sig<'t> {
    fn len(&self) -> usize {
        self.end - self.start
    }

    fn digit(&self, k: usize) -> u8 {
        let k = self.start + k;
        if k < self.a.len() {
            self.a[k]
        } else {
            self.b[k - self.a.len()]
        }
    }

    fn signum(&self) -> i8 {
        if self.len() == 0 {
            0
        } else if self.neg {
            -1
        } else {
            1
        }
    }

    /// Exact numeric comparison.
    pub fn cmp(&self, o: &Sig<'_>) -> Ordering {
        let (sx, sy) = (self.signum(), o.signum());
        if sx != sy {
            return sx.cmp(&sy);
        }
        if sx == 0 {
            return Ordering::Equal;
        }
        let mut mag = self.point.cmp(&o.point);
        if mag == Ordering::Equal {
            let n = self.len().min(o.len());
            mag = (0..n)
                .map(|k| self.digit(k).cmp(&o.digit(k)))
                .find(|c| *c != Ordering::Equal)
                .unwrap_or_else(|| self.len().cmp(&o.len()));
        }
        if sx < 0 {
            mag.reverse()
        } else {
            mag
        }
    }

    /// `longValueExact()`: the value if integral and within `i64`.
    pub fn to_i64_exact(self) -> Option<i64> {
        let n = self.len() as i64;
        if n == 0 {
            return Some(0);
        }
        if self.point < n || self.point > 19 {
            return None;
        }
        let mut v: i128 = 0;
        for k in 0..self.len() {
            v = v * 10 + i128::from(self.digit(k) - b'0');
        }
        for _ in 0..(self.point - n) {
            v *= 10;
        }
        if self.neg {
            v = -v;
        }
        i64::try_from(v).ok()
    }

    /// `stripTrailingZeros().toString()` (used to show values canonically).
    pub fn canonical_string(&self) -> String {
        if self.len() == 0 {
            return "0".to_string();
        }
        let digits: Vec<u8> = (0..self.len()).map(|k| self.digit(k)).collect();
        let scale = self.len() as i64 - self.point;
        java_decimal_string(self.neg, &digits, scale)
    }
}

/// Writes `|v|` in decimal into `buf`, returning the digits.
pub(crate) fn int_digits(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut u = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    &buf[i..]
}

fn slow_num<'t>(v: &'t Value<'_>) -> Option<Num<'t>> {
    match v {
        Value::Int(i) => Some(Num::Small(*i, 0)),
        Value::Dec(d) => Some(d.num()),
        _ => None,
    }
}

/// Exact comparison of two numbers given as `Int`/`Dec` values; `None` if either is not a number.
#[inline]
pub(crate) fn num_cmp(x: &Value<'_>, y: &Value<'_>) -> Option<Ordering> {
    let num = |v: &Value<'_>| -> Option<(i64, i32)> {
        match v {
            Value::Int(i) => Some((*i, 0)),
            Value::Dec(Dec(Repr::Small { unscaled, scale })) => Some((*unscaled, *scale)),
            _ => None,
        }
    };
    if let (Value::Int(a), Value::Int(b)) = (x, y) {
        return Some(a.cmp(b));
    }
    if let (Some((ua, sa)), Some((ub, sb))) = (num(x), num(y)) {
        return Some(num_order(Num::Small(ua, sa), Num::Small(ub, sb)));
    }
    Some(num_order(slow_num(x)?, slow_num(y)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Value<'_> {
        Value::number(s).unwrap_or_else(|| panic!("bad number {s}"))
    }

    fn cmp(a: &str, b: &str) -> Ordering {
        num_cmp(&d(a), &d(b)).unwrap_or_else(|| panic!("not numbers"))
    }

    #[test]
    fn number_kinds() {
        assert!(matches!(d("3"), Value::Int(3)));
        assert!(matches!(d("-0"), Value::Int(0)));
        assert!(matches!(d("3.0"), Value::Dec(_)));
        assert!(matches!(d("9223372036854775807"), Value::Int(i64::MAX)));
        assert!(matches!(d("9223372036854775808"), Value::Dec(_)));
        assert!(matches!(d("-9223372036854775808"), Value::Int(i64::MIN)));
        assert!(Value::number("abc").is_none());
        assert!(Value::number("").is_none());
        assert!(Value::number("-").is_none());
        assert!(Value::number("1e").is_none());
        assert!(Value::number("1e2147483647").is_some());
        assert!(Value::number("1e2147483648").is_none());
        assert!(Value::number("1e-2147483648").is_none());
    }

    #[test]
    fn exact_comparison() {
        assert_eq!(cmp("3", "3.0"), Ordering::Equal);
        assert_eq!(cmp("1e2", "100"), Ordering::Equal);
        assert_eq!(cmp("100.000", "1E+2"), Ordering::Equal);
        assert_eq!(cmp("0.1", "0.10"), Ordering::Equal);
        assert_eq!(cmp("-0.0", "0"), Ordering::Equal);
        assert_eq!(cmp("0e5", "-0"), Ordering::Equal);
        assert_eq!(cmp("0.1", "0.2"), Ordering::Less);
        assert_eq!(cmp("-0.1", "-0.2"), Ordering::Greater);
        assert_eq!(cmp("-1", "0.5"), Ordering::Less);
        assert_eq!(
            cmp("9223372036854775807", "9223372036854775808"),
            Ordering::Less
        );
        assert_eq!(
            cmp("9223372036854775807.0000000001", "9223372036854775807"),
            Ordering::Greater
        );
        assert_eq!(
            cmp("-9223372036854775808", "-9223372036854775808.0"),
            Ordering::Equal
        );
        assert_eq!(
            cmp(
                "123456789012345678901234567890",
                "1.2345678901234567890123456789e29"
            ),
            Ordering::Equal
        );
        assert_eq!(cmp("1.000000000000000000001", "1"), Ordering::Greater);
        // f64 would call these equal
        assert_eq!(
            cmp("9007199254740993", "9007199254740992.0"),
            Ordering::Greater
        );
        assert_eq!(
            cmp("0.1", "0.1000000000000000055511151231257827"),
            Ordering::Less
        );
        assert_eq!(cmp("1e-400", "0"), Ordering::Greater);
        assert_eq!(cmp("1e400", "9223372036854775807"), Ordering::Greater);
        assert_eq!(cmp("12", "9.99"), Ordering::Greater);
        assert_eq!(cmp("10", "1e1"), Ordering::Equal);
        assert_eq!(cmp("59.90", "100"), Ordering::Less);
        assert_eq!(cmp(".5", "0.5"), Ordering::Equal);
        assert_eq!(cmp("5.", "5"), Ordering::Equal);
    }

    #[test]
    fn java_strings() {
        let j = |s: &str| Dec::parse(s).map(|d| d.java_string()).unwrap_or_default();
        assert_eq!(j("1.0"), "1.0");
        assert_eq!(j("1.50"), "1.50");
        assert_eq!(j("1e2"), "1E+2");
        assert_eq!(j("1.7e12"), "1.7E+12");
        assert_eq!(j("-0.0"), "0.0");
        assert_eq!(j("0e5"), "0E+5");
        assert_eq!(j("0e-10"), "0E-10");
        assert_eq!(j("0.000001"), "0.000001");
        assert_eq!(j("0.0000001"), "1E-7");
        assert_eq!(j("-1.5e-7"), "-1.5E-7");
        assert_eq!(j("100e-2"), "1.00");
        assert_eq!(j("1.23e-6"), "0.00000123");
        assert_eq!(j("12.3e-8"), "1.23E-7");
        assert_eq!(j("0.1e1"), "1");
        assert_eq!(j("10.00e1"), "100.0");
        assert_eq!(j("0.000"), "0.000");
        assert_eq!(j("1E400"), "1E+400");
        assert_eq!(j("-1E-400"), "-1E-400");
        assert_eq!(
            j("123456789012345678901234567890"),
            "123456789012345678901234567890"
        );
    }

    #[test]
    fn exact_i64() {
        let e = |s: &str| Dec::parse(s).and_then(|d| d.to_i64_exact());
        assert_eq!(e("1.7e12"), Some(1_700_000_000_000));
        assert_eq!(e("1700000000000.0"), Some(1_700_000_000_000));
        assert_eq!(e("2.5"), None);
        assert_eq!(e("-0.0"), Some(0));
        assert_eq!(e("1e400"), None);
        assert_eq!(e("9.223372036854775807E18"), Some(i64::MAX));
        assert_eq!(e("9.223372036854775808E18"), None);
        assert_eq!(e("-9.223372036854775808E18"), Some(i64::MIN));
        assert_eq!(e("1E+3"), Some(1000));
        assert_eq!(e("0e999"), Some(0));
    }

    #[test]
    fn canonical() {
        let c = |s: &str| Dec::parse(s).map(|d| d.canonical_string());
        assert_eq!(c("100.0").as_deref(), Some("1E+2"));
        assert_eq!(c("0.00").as_deref(), Some("0"));
        assert_eq!(c("2.50").as_deref(), Some("2.5"));
        assert_eq!(c("-1.5e-7").as_deref(), Some("-1.5E-7"));
        assert_eq!(
            c("9223372036854775808").as_deref(),
            Some("9223372036854775808")
        );
        assert_eq!(
            c("123456789012345678901234567890").as_deref(),
            Some("1.2345678901234567890123456789E+29")
        );
    }

    #[test]
    fn strings_and_surrogates() {
        let mut v = Vec::new();
        push_utf16_as_wtf8(&mut v, &[0x61, 0xD83D, 0xDE00, 0xD800, 0x62]);
        let s = Str::from_wtf8(Cow::Owned(v));
        assert_eq!(s.as_str(), None);
        assert_eq!(s.to_string_lossy(), "a😀?b");
        // WTF-8 byte order is code point order, surrogates between U+D7FF and U+E000
        let mut hi = Vec::new();
        push_utf16_as_wtf8(&mut hi, &[0xD800]);
        assert!("\u{D7FF}".as_bytes() < hi.as_slice());
        assert!(hi.as_slice() < "\u{E000}".as_bytes());
    }

    fn dec_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        (
            "-?",
            "[0-9]{1,6}",
            proptest::option::of("[0-9]{1,6}"),
            proptest::option::of(-6i32..6),
        )
            .prop_map(|(sign, int, frac, exp)| {
                let int = int.trim_start_matches('0');
                let int = if int.is_empty() { "0" } else { int };
                let mut s = format!("{sign}{int}");
                if let Some(f) = frac {
                    s.push('.');
                    s.push_str(&f);
                }
                if let Some(e) = exp {
                    s.push_str(&format!("e{e}"));
                }
                s
            })
    }

    /// The same value written with more than 18 digits, so it takes the text path.
    fn padded(s: &str) -> String {
        let (m, e) = match s.find('e') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        };
        let dot = if m.contains('.') { "" } else { "." };
        format!("{m}{dot}0000000000000000000000{e}")
    }

    proptest::proptest! {
        #[test]
        fn small_and_text_forms_agree(a in dec_text(), b in dec_text()) {
            let (va, vb) = (d(&a), d(&b));
            let (pa, pb) = (padded(&a), padded(&b));
            let (wa, wb) = (d(&pa), d(&pb));
            let c = num_cmp(&va, &vb);
            proptest::prop_assert!(c.is_some());
            proptest::prop_assert_eq!(num_cmp(&wa, &vb), c);
            proptest::prop_assert_eq!(num_cmp(&va, &wb), c);
            proptest::prop_assert_eq!(num_cmp(&wa, &wb), c);
            proptest::prop_assert_eq!(num_cmp(&va, &wa), Some(Ordering::Equal));
            // at most 13 significant digits: f64 (correctly rounded) keeps the order
            let fa: f64 = a.parse().unwrap_or(f64::NAN);
            let fb: f64 = b.parse().unwrap_or(f64::NAN);
            proptest::prop_assert_eq!(fa.partial_cmp(&fb), c);
            if let (Value::Dec(x), Value::Dec(y)) = (&va, &wa) {
                proptest::prop_assert_eq!(x.java_string(), Dec::parse(&a).map(|d| d.java_string()).unwrap_or_default());
                proptest::prop_assert_eq!(x.canonical_string(), y.canonical_string());
                proptest::prop_assert_eq!(x.to_i64_exact(), y.to_i64_exact());
            }
        }
    }

    #[test]
    fn compact() {
        assert!(std::mem::size_of::<Value<'_>>() <= 32);
    }

    #[test]
    fn recycle_keeps_capacity() {
        let line = String::from("x");
        let mut v: Vec<Value<'_>> = Vec::with_capacity(16);
        v.push(Value::str(&line));
        let w: Vec<Value<'static>> = recycle_values(v);
        assert!(w.is_empty());
        assert!(w.capacity() >= 16);
    }

    #[test]
    fn dedup_large_and_small() {
        let small = vec![("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        assert_eq!(dedup_last_wins(small), vec![("a", 3), ("b", 5), ("c", 4)]);
        let keys: Vec<String> = (0..1000).map(|i| format!("k{}", i % 300)).collect();
        let big: Vec<(&str, usize)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let d = dedup_last_wins(big);
        assert_eq!(d.len(), 300);
        assert_eq!(d[0], ("k0", 900));
        assert_eq!(d[299], ("k299", 899));
    }

    #[test]
    fn map_last_wins_first_position() {
        let mut m = Map::new();
        m.insert(Str::from("a"), Value::Int(1));
        m.insert(Str::from("b"), Value::Int(2));
        m.insert(Str::from("a"), Value::Int(3));
        assert_eq!(m.len(), 2);
        assert!(matches!(m.entries()[0], (_, Value::Int(3))));
        assert!(m.contains_key(b"b"));
        assert!(matches!(m.get(b"a"), Some(Value::Int(3))));
    }
}
