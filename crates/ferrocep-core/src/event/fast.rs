//! The fast path of [`Extractor::extract`]: one pass over lines of the common shape.
//!
//! It handles what event lines usually are (an object of names without escapes, strings
//! without escapes, plain numbers, literals) with cheap word-at-a-time scanning and no error
//! bookkeeping, and gives up (`None`) on anything else: an escape, an unusual number (with an
//! exponent, very long), a grammar error, the end of the text. The caller then resets the span
//! table and runs the validating scanner ([`Extractor::parse_object`]) over the whole line, so
//! what is accepted or rejected, with which message, and every recorded span is exactly what
//! that scanner gives. The rule that keeps this true: whenever the fast path records a span or
//! accepts a value, the validating scanner would have recorded/accepted the same one.
//!
//! Values it does not take apart itself (containers, strings with escapes, numbers it does not
//! handle) it hands to the validating [`Scanner`] from their first byte.

use super::json::{find_special, special_bytes, Kind, Scanner, Span, HI, LO};
use super::json::{MAX_DEPTH, MAX_NAME_LEN, MAX_STRING_LEN};
use super::Extractor;

/// The 8 bytes at `b[i..i + 8]` as a little-endian word, if there are 8.
#[inline(always)]
fn load8(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*b.get(i..)?.first_chunk::<8>()?))
}

/// Skips JSON whitespace (space, tab, LF, CR) from `i`.
#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// The byte at `*i` after skipping whitespace there (moving `*i`), or `None` at the end.
#[inline(always)]
fn next_byte(b: &[u8], i: &mut usize) -> Option<u8> {
    let c = *b.get(*i)?;
    if c > b' ' {
        return Some(c);
    }
    *i = skip_ws(b, *i);
    b.get(*i).copied()
}

/// Bit 7 of each byte of `w` that is not an ASCII digit (exact for every byte).
#[inline(always)]
fn non_digits(w: u64) -> u64 {
    // Digits become 0..=9; a byte is not a digit when its low 7 bits are >= 10 (adding 0x76
    // sets bit 7, no carry leaves the byte) or its bit 7 is set.
    let t = w ^ (LO * 0x30);
    (((t & !HI).wrapping_add(LO * 0x76)) | t) & HI
}

/// The end of the run of ASCII digits starting at `i`.
#[inline(always)]
pub(crate) fn skip_digits(b: &[u8], mut i: usize) -> usize {
    while let Some(w) = load8(b, i) {
        let m = non_digits(w);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// The validating scanner's reading of the value at `i`, with the depth of its container.
#[cold]
fn slow_value(b: &[u8], i: usize, depth: usize) -> Option<(Kind, usize)> {
    let mut sc = Scanner { b, i };
    let kind = sc.skip_value(depth).ok()?;
    Some((kind, sc.i))
}

/// A number at `i` (`-` or a digit): integers, and decimals without an exponent, up to a
/// length where no limit can apply; anything else goes to the validating scanner.
#[inline(always)]
fn number(b: &[u8], i: usize, depth: usize) -> Option<(Kind, usize)> {
    let mut j = i + usize::from(b[i] == b'-');
    match b.get(j) {
        Some(b'0') => {
            j += 1;
            if b.get(j).is_some_and(u8::is_ascii_digit) {
                return None; // a leading zero
            }
        }
        Some(b'1'..=b'9') => j = skip_digits(b, j + 1),
        _ => return None,
    }
    match b.get(j) {
        Some(b'.') => {
            let f = j + 1;
            j = skip_digits(b, f);
            // Without an exponent and under 1000 characters neither the digit count nor the
            // scale can be out of Jackson's range.
            if j == f || matches!(b.get(j), Some(b'e' | b'E')) || j - i > 900 {
                return slow_value(b, i, depth);
            }
            Some((Kind::Float, j))
        }
        Some(b'e' | b'E') => slow_value(b, i, depth),
        _ if j - i > 900 => slow_value(b, i, depth),
        _ => Some((Kind::Int, j)),
    }
}

/// A string at `i` (its `"`).
#[inline(always)]
fn string(b: &[u8], i: usize, depth: usize) -> Option<(Kind, usize)> {
    let s = i + 1;
    let e = find_special(b, s);
    match b.get(e) {
        Some(b'"') if e - s <= MAX_STRING_LEN => Some((Kind::Str { esc: false }, e + 1)),
        Some(b'\\') => slow_value(b, i, depth),
        _ => None,
    }
}

/// `word` at `i`.
#[inline(always)]
fn literal(b: &[u8], i: usize, word: &[u8], kind: Kind) -> Option<(Kind, usize)> {
    if b.get(i..i + word.len()) == Some(word) {
        Some((kind, i + word.len()))
    } else {
        None
    }
}

/// Any value at `i` (not whitespace), inside a container at nesting depth `depth`.
#[inline(always)]
fn value(b: &[u8], i: usize, c: u8, depth: usize) -> Option<(Kind, usize)> {
    match c {
        b'"' => string(b, i, depth),
        b'-' | b'0'..=b'9' => number(b, i, depth),
        b't' => literal(b, i, b"true", Kind::True),
        b'f' => literal(b, i, b"false", Kind::False),
        b'n' => literal(b, i, b"null", Kind::Null),
        b'[' | b'{' => slow_value(b, i, depth),
        _ => None,
    }
}

/// A child of a trie node as the fast path compares names with it: its name followed by the
/// closing quote, as one masked word when that fits (names up to 7 bytes), else its first 8
/// bytes.
#[derive(Clone, Debug)]
pub(super) struct Kid {
    pat: u64,
    mask: u64,
    len: usize,
    id: usize,
    /// End of the child's subtree in the trie (`id + 1`: no deeper paths).
    end: usize,
}

impl Kid {
    pub(super) fn new(name: &[u8], id: usize, end: usize) -> Kid {
        let len = name.len();
        // A name that a JSON name can only spell with escapes (or that is over the limit)
        // never matches raw bytes: the mask makes every word compare unequal.
        let plain =
            len <= MAX_NAME_LEN && name.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\');
        let (pat, mask) = if !plain {
            (1, 0)
        } else if len < 8 {
            let quoted = super::prefix_word(name, 0, len) | u64::from(b'"') << (8 * len);
            (quoted, u64::MAX >> (8 * (7 - len)))
        } else {
            (super::prefix_word(name, 0, 8), u64::MAX)
        };
        Kid {
            pat,
            mask,
            len,
            id,
            end,
        }
    }
}

impl Extractor {
    /// The kid of `kids` whose name is spelled without escapes at `b[s..]` (closing quote
    /// included), given the word `w` at `b[s..s + 8]`.
    #[inline(always)]
    fn match_kid<'k>(&self, kids: &'k [Kid], b: &[u8], s: usize, w: u64) -> Option<&'k Kid> {
        kids.iter().find(|k| {
            w & k.mask == k.pat
                && (k.len < 8 || {
                    let e = s + k.len;
                    b.get(e) == Some(&b'"')
                        && (k.len == 8 || b.get(s + 8..e) == self.nodes[k.id].name.get(8..))
                })
        })
    }

    /// A name at `b[s..]` (after its opening quote) that is none of `kids`: the position of its
    /// closing quote, or `None` for escapes, control characters, a missing quote or a name over
    /// the length limit. With fewer than 8 bytes left it also looks for the kid it is.
    #[inline(always)]
    fn other_name<'k>(
        &self,
        kids: &'k [Kid],
        b: &[u8],
        s: usize,
    ) -> Option<(usize, Option<&'k Kid>)> {
        let e = match load8(b, s) {
            Some(w) => {
                let m = special_bytes(w);
                if m != 0 {
                    s + (m.trailing_zeros() / 8) as usize
                } else {
                    find_special(b, s + 8)
                }
            }
            None => {
                let e = find_special(b, s);
                if b.get(e) != Some(&b'"') {
                    return None;
                }
                let n = e - s;
                let w = super::prefix_word(b, s, n) | u64::from(b'"') << (8 * n);
                return Some((e, self.match_kid(kids, b, s, w)));
            }
        };
        if b.get(e) != Some(&b'"') || e - s > MAX_NAME_LEN {
            return None;
        }
        Some((e, None))
    }

    /// Scans the object at `b[i] == '{'` whose trie node is `node`, at nesting depth `depth`,
    /// recording the spans of the trie's children; the position after its `}`, or `None` when
    /// the validating scanner has to read the line.
    pub(super) fn fast_object(
        &self,
        b: &[u8],
        node: usize,
        mut i: usize,
        depth: usize,
        spans: &mut [Span],
    ) -> Option<usize> {
        if depth > MAX_DEPTH {
            return None;
        }
        let kids: &[Kid] = &self.nodes.get(node)?.kids;
        i += 1;
        let mut c = next_byte(b, &mut i)?;
        if c == b'}' {
            return Some(i + 1);
        }
        loop {
            if c != b'"' {
                return None;
            }
            let s = i + 1;
            let found = match load8(b, s) {
                Some(w) => self.match_kid(kids, b, s, w),
                None => None,
            };
            let (e, kid) = match found {
                Some(k) => (s + k.len, Some(k)),
                None => self.other_name(kids, b, s)?,
            };
            i = e + 1;
            if next_byte(b, &mut i)? != b':' {
                return None;
            }
            i += 1;
            c = next_byte(b, &mut i)?;
            match kid {
                None => i = value(b, i, c, depth)?.1,
                Some(k) => {
                    let start = i;
                    let kind = if k.end > k.id + 1 {
                        // A duplicate name replaces everything an earlier occurrence recorded.
                        for sp in spans.get_mut(k.id + 1..k.end)? {
                            *sp = Span::NONE;
                        }
                        if c == b'{' {
                            i = self.fast_object(b, k.id, i, depth + 1, spans)?;
                            Kind::Obj
                        } else {
                            let (kind, j) = value(b, i, c, depth)?;
                            i = j;
                            kind
                        }
                    } else {
                        let (kind, j) = value(b, i, c, depth)?;
                        i = j;
                        kind
                    };
                    *spans.get_mut(k.id)? = Span {
                        start,
                        end: i,
                        kind,
                    };
                }
            }
            match next_byte(b, &mut i)? {
                b',' => {
                    i += 1;
                    c = next_byte(b, &mut i)?;
                }
                b'}' => return Some(i + 1),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_runs() {
        for s in [
            "",
            "1",
            "12345678",
            "123456789",
            "1234567x",
            "12345678x",
            "0123456789012345",
            "1/",
            "1:",
            "1\u{b0}",
            "9\u{80}0",
            "1234567\u{ff}9",
        ] {
            let b = s.as_bytes();
            let want = b.iter().take_while(|c| c.is_ascii_digit()).count();
            assert_eq!(skip_digits(b, 0), want, "{s:?}");
        }
        for byte in 0..=255u8 {
            let w = u64::from_le_bytes([byte, b'0', b'1', b'2', b'3', b'4', b'5', byte]);
            let m = non_digits(w);
            let want = if byte.is_ascii_digit() {
                0
            } else {
                0x80 | 0x80 << 56
            };
            assert_eq!(m, want, "{byte:#x}");
        }
    }

    use crate::event::{java_trim, Fields, Value};
    use proptest::prelude::*;

    fn extractor(fields: &[&str], key: Option<&str>, time: Option<&str>) -> Extractor {
        let p = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
        let mut f = Fields::new();
        for x in fields {
            f.slot(&p(x));
        }
        Extractor::new(&f, key.map(p), time.map(p))
    }

    /// Extractors over paths with the shapes the fast path distinguishes: short and 8-byte and
    /// long names, nested paths, names with characters JSON must escape, non-ASCII, empty.
    fn extractors() -> Vec<Extractor> {
        vec![
            extractor(&["type", "amount"], Some("order_id"), Some("ts")),
            extractor(
                &["a.b", "abcdefghij", "é", "user.id", "user"],
                Some("k"),
                Some("ts"),
            ),
            extractor(
                &["x\"y", "a\\b", "t\u{1}", "", "aaaaaaaa.b"],
                Some("user.id"),
                None,
            ),
            extractor(&[], None, None),
        ]
    }

    /// What a line gives (key, time, values with string bytes, or the error).
    fn outcome(x: &Extractor, line: &str, fast: bool) -> String {
        let mut v = Vec::new();
        let r = x.extract_impl(line, &mut v, fast);
        let vals: Vec<String> = v
            .iter()
            .map(|v| match v {
                Value::Str(s) => format!("Str({:?})", s.as_bytes()),
                v => format!("{v:?}"),
            })
            .collect();
        format!("{r:?} {vals:?}")
    }

    /// Whether the fast path reads `line` by itself; when it does, its spans must be the
    /// validating scanner's.
    fn fast_reads(x: &Extractor, line: &str) -> bool {
        let text = java_trim(line);
        let b = text.as_bytes();
        let n = x.nodes.len();
        let mut fast = vec![Span::NONE; n];
        if b.first() != Some(&b'{') || x.fast_object(b, 0, 0, 1, &mut fast) != Some(b.len()) {
            return false;
        }
        let mut slow = vec![Span::NONE; n];
        assert!(x.scan_validating(text, &mut slow).is_ok(), "{line:?}");
        assert_eq!(fast[1..], slow[1..], "{line:?}");
        true
    }

    fn check(line: &str) {
        for x in extractors() {
            fast_reads(&x, line);
            assert_eq!(
                outcome(&x, line, true),
                outcome(&x, line, false),
                "{line:?}"
            );
        }
    }

    #[test]
    fn fast_path_and_fallback_agree_on_tricky_lines() {
        let x = &extractors()[0];
        // (line, read by the fast path alone)
        let lines = [
            (
                r#"{"order_id":"o-1","user_id":"u-35223","type":"create","ts":1700000000000,"amount":296.97}"#,
                true,
            ),
            (
                r#"{ "order_id" : "o-1" ,	"type":"pay" ,"ts":1700000000000 }"#,
                true,
            ),
            ("{\r\n\"order_id\":7,\n\"ts\":-0}", true),
            (r#"{"order_id":"o-1","order_id":"o-2","ts":1,"ts":2}"#, true),
            (r#"{"ts":1,"order_id":null,"order_id":"o"}"#, true),
            (
                r#"{"order_idx":1,"order_i":2,"orderid":3,"ts":1,"order_id":"z"}"#,
                true,
            ),
            (
                r#"{"typ":"x","types":"y","type":"t","ts":"2024-01-01T00:00:00Z","order_id":[1,{"a":2}]}"#,
                true,
            ),
            (
                r#"{"order_id":{"b":[1,2,{"c":"d"}]},"ts":1.0,"amount":-0.5}"#,
                true,
            ),
            (
                r#"{"order_id":"é😀","ts":0,"amount":12345678901234567890123}"#,
                true,
            ),
            (
                r#"{"ÿ":1,"order_id":"o","ts":10,"t":true,"f":false,"n":null}"#,
                true,
            ),
            (r#"{"order_id":"o","ts":1}"#, true),
            (r#"{"ts":1,"order_id":"o"}"#, true),
            (r#"{}"#, true),
            // values it hands to the validating scanner
            (r#"{"order_id":"o\"-1","ts":1}"#, true),
            (r#"{"order_id":"o","ts":1.5e3}"#, true),
            (r#"{"order_id":"o","ts":1E+3,"amount":-2e-5}"#, true),
            // what the fast path leaves to the validating scanner
            (r#"{"order_\u0069d":"o-1","ts":1}"#, false),
            (r#"{"order_id":"o","ts":1e}"#, false),
            (r#"{"order_id":"o","ts":017}"#, false),
            (r#"{"order_id":"o","ts":-}"#, false),
            (r#"{"order_id":"o","ts":1.}"#, false),
            (r#"{"order_id":"o","ts":.5}"#, false),
            (r#"{"order_id":"o","ts":1,}"#, false),
            (r#"{"order_id":"o","ts":1}x"#, false),
            (r#"{"order_id":"o","ts":1"#, false),
            (r#"{"order_id":"o","ts":tru}"#, false),
            (r#"{"order_id":"o" "ts":1}"#, false),
            ("{\"order_id\":\"o\u{1}\",\"ts\":1}", false),
            ("{\"t\u{1}\":1,\"ts\":1}", false),
            ("{\"order_id\":\"o\",\"ts\":1\u{b}}", false),
            (r#"{"order_id"}"#, false),
            (r#"{"order_id"#, false),
            (r#"{"a"#, false),
            (r#"{"#, false),
            (r#"["order_id"]"#, false),
        ];
        for (line, fast) in lines {
            assert_eq!(fast_reads(x, line), fast, "{line:?}");
            check(line);
        }
        let long = format!(r#"{{"order_id":{},"ts":1}}"#, "9".repeat(1001));
        assert!(!fast_reads(x, &long));
        check(&long);
        let long = format!(r#"{{"order_id":0.{},"ts":1}}"#, "9".repeat(999));
        assert!(fast_reads(x, &long));
        check(&long);
        let long = format!(r#"{{"order_id":1.{},"ts":1}}"#, "9".repeat(1000));
        assert!(!fast_reads(x, &long));
        check(&long);
        let long = format!(r#"{{"order_id":0.{},"ts":1}}"#, "9".repeat(800));
        assert!(fast_reads(x, &long));
        check(&long);
    }

    #[test]
    fn names_that_need_escapes_and_nested_paths() {
        let x = &extractors()[2];
        for (line, fast) in [
            (
                r#"{"x\"y":1,"a\\b":2,"t\u0001":3,"":4,"user":{"id":5}}"#,
                false,
            ),
            (r#"{"x\"y":1}"#, false),
            (r#"{"a\\b":1}"#, false),
            (
                r#"{"":4,"user":{"id":5,"id":6},"aaaaaaaa":{"b":1,"c":2}}"#,
                true,
            ),
            (r#"{"user":{"id":5},"user":7}"#, true),
            (r#"{"user":{"id":5},"user":{"x":1}}"#, true),
            (r#"{"user":{"id":{"deep":[1]}},"aaaaaaaa":[1]}"#, true),
            (r#"{"aaaaaaaab":1,"aaaaaaa":2,"aaaaaaaa":{"b":"x"}}"#, true),
        ] {
            assert_eq!(fast_reads(x, line), fast, "{line:?}");
            check(line);
        }
        let x = &extractors()[1];
        for (line, fast) in [
            (
                r#"{"k":1,"ts":2,"a":{"b":3},"abcdefghij":4,"é":5,"user":{"id":6}}"#,
                true,
            ),
            (
                r#"{"k":1,"ts":2,"abcdefghijk":4,"abcdefghi":5,"abcdefghiJ":6}"#,
                true,
            ),
            (r#"{"k":1,"ts":2,"abcdefgh\u0069j":4}"#, false),
            (r#"{"k":1,"ts":2,"\u00e9":4}"#, false),
            (r#"{"k":1,"ts":2,"a":{"b":{"c":1}},"a":[1]}"#, true),
            (r#"{"k":1,"ts":2,"a":{"b":1,}}"#, false),
        ] {
            assert_eq!(fast_reads(x, line), fast, "{line:?}");
            check(line);
        }
    }

    #[test]
    fn every_prefix_and_cut_of_a_line_agrees() {
        let line = r#"{"order_id":"o-1","user":{"id":7},"type":"create","ts":1700000000000,"amount":296.97,"é":[1,{"a":null}]}"#;
        for i in 0..=line.len() {
            if line.is_char_boundary(i) {
                check(&line[..i]);
                check(&line[i..]);
            }
        }
    }

    /// Event-like lines with tricky pieces, then random edits.
    fn event_lines() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("order_id"),
            Just("ts"),
            Just("type"),
            Just("amount"),
            Just("k"),
            Just("user"),
            Just("a"),
            Just("abcdefghij"),
            Just("aaaaaaaa"),
            Just("é"),
            Just(""),
            Just("x\\\"y"),
            Just("a\\\\b"),
            Just("t\\u0073"),
            Just("order_i"),
            Just("order_idx"),
            Just("user_id"),
        ];
        let value = prop_oneof![
            Just("\"o-1\""),
            Just("1700000000000"),
            Just("-0"),
            Just("0"),
            Just("296.97"),
            Just("1.5e3"),
            Just("1E+2"),
            Just("-12.0"),
            Just("12345678901234567890"),
            Just("true"),
            Just("false"),
            Just("null"),
            Just("\"a\\nb\""),
            Just("\"\\u00e9\""),
            Just("\"é😀\""),
            Just("{}"),
            Just("[]"),
            Just("{\"id\":7,\"b\":[1]}"),
            Just("{\"b\":{\"c\":1}}"),
            Just("[1,\"x\",{\"a\":2}]"),
            Just("\"2024-01-01T00:00:00Z\""),
            Just("\"\""),
        ];
        let ws = prop_oneof![Just(""), Just(""), Just(" "), Just("\t"), Just("\r\n")];
        let member = (ws.clone(), name, ws.clone(), ws.clone(), value, ws);
        (
            prop::collection::vec(member, 0..7),
            prop::collection::vec(
                (
                    any::<prop::sample::Index>(),
                    "[\\PC{\"}\\[\\],:0-9e.\\\\-]{0,2}",
                    0usize..3,
                ),
                0..3,
            ),
        )
            .prop_map(|(members, edits)| {
                let body: Vec<String> = members
                    .iter()
                    .map(|(a, n, b, c, v, d)| format!("{a}\"{n}\"{b}:{c}{v}{d}"))
                    .collect();
                let mut s = format!("{{{}}}", body.join(","));
                crate::event::tests::apply_edits(&mut s, edits);
                s
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn fast_path_agrees_with_the_validating_scanner(line in event_lines()) {
            check(&line);
        }

        #[test]
        fn fast_path_agrees_on_any_text(line in "\\PC{0,40}") {
            check(&line);
            check(&format!("{{{line}"));
        }
    }
}
