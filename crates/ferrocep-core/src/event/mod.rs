//! JSON event lines: validation, key, timestamp and the values the expressions read.
//!
//! This module owns turning one input line into an event, with the oracle's rules
//! (`JsonLineSource.parse`, `Json.at`, `Json.toValue`, real Jackson underneath):
//!
//! - the line is Java-`trim()`med (chars <= U+0020 at both ends); empty → `empty line`;
//! - it must be exactly one JSON value as Jackson 2.20 reads it (strict RFC 8259, depth ≤ 1000,
//!   numbers ≤ 1000 digits, lone surrogate escapes allowed, duplicate names allowed with the
//!   last one winning) → else `invalid JSON: …`;
//! - that value must be an object → else `not a JSON object`;
//! - the key (if the spec has one) is read at its path (each step must be an object); absent or
//!   `null` → `missing key field 'k'`; its text is what Jackson's `JsonNode.toString()` gives
//!   (`"o-1"`, `7`, `1.5E+3`, compact objects), so keys compare exactly as the oracle's;
//! - the time (if the spec has one): absent or `null` → `missing time field 't'`; else integer
//!   epoch ms in any JSON number form with an integral value, or an RFC 3339 string with an
//!   offset (`T` or space, `Z`/`z`, truncated to ms) → else `time field 't' is neither …`;
//! - then one [`Value`] per [`Fields`] slot.
//!
//! It also owns what the expressions read: [`Value`] and the [`Fields`] registry of field paths
//! and their slots. [`crate::expr`] builds on them; nothing here uses `expr`.
//!
//! # How it avoids work
//!
//! No tree is built. A path trie (fields, key and time paths together) drives one pass of a
//! hand-written validating scanner over the line: names that no path uses are compared and
//! skipped, their values validated and skipped; for a name on a path the scanner records where
//! its value is (the last duplicate wins, clearing what an earlier duplicate recorded under
//! it) and descends into it when deeper paths continue there. Only then are the recorded spans
//! turned into values: strings without escapes are borrowed from the line, numbers become an
//! `i64` or an exact unscaled-`i64`-and-scale decimal (longer ones borrow their text), so a
//! typical line costs no allocation at all (the span table lives on the stack for up to 32
//! trie nodes). Arrays and objects become `List`/`Map` values only when an expression reads
//! them whole; the key text is borrowed except for escaped strings, floats, `-0`, arrays and
//! objects, which Jackson re-serialises. Strings are scanned 8 bytes at a time.
//!
//! # Scratch buffer
//!
//! [`Extractor::extract`] fills a caller-owned `Vec<Value<'a>>` whose values borrow the line.
//! To reuse one allocation across lines of different lifetimes, pass it through
//! [`recycle_values`] before each line (`buf = recycle_values(buf)`): it empties the vector and
//! gives it back with a fresh lifetime, keeping the capacity. To keep values beyond the line,
//! use [`Value::into_owned`].
//!
//! The caller strips a UTF-8 BOM from the first line (the oracle does, only there) and splits
//! lines as Java's `readLine` does.

mod fast;
mod fields;
mod json;
mod time;
mod value;

use std::borrow::Cow;

use json::{jackson_text, span_value, string_value, Kind, Scanner, Span, MAX_DEPTH};

pub use fields::Fields;
pub use json::print_lone_surrogates;
pub use value::{recycle_values, Dec, Map, Str, Value};

pub(crate) use time::parse_timestamp_text;
pub(crate) use value::{num_cmp, push_utf16_as_wtf8};

/// Why a line is not an event (the oracle prints `line N: <reason>` and skips it).
///
/// Its message is short and lower-case and names the field, e.g.
/// `missing key field 'k'`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// Nothing but white space.
    #[error("empty line")]
    Empty,
    /// Not JSON.
    #[error("invalid JSON: {message} (column {column})")]
    InvalidJson {
        /// What is wrong, in the oracle's wording.
        message: String,
        /// 1-based column (in chars) where it is wrong.
        column: usize,
    },
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// The key field is missing or null.
    #[error("missing key field{}", quoted(field))]
    MissingKey {
        /// The field's name as the spec gives it, when known.
        field: Option<String>,
    },
    /// The time field is missing or null.
    #[error("missing time field{}", quoted(field))]
    MissingTime {
        /// The field's name as the spec gives it, when known.
        field: Option<String>,
    },
    /// The time field holds neither epoch milliseconds nor an RFC 3339 string.
    #[error(
        "time field '{field}' is neither integer epoch milliseconds nor an RFC 3339 string: {value}"
    )]
    BadTime {
        /// The field's name as the spec gives it.
        field: String,
        /// The field's value, as JSON text.
        value: String,
    },
}

/// ` 'name'`, or nothing for an unknown name.
fn quoted(name: &Option<String>) -> String {
    name.as_ref()
        .map_or_else(String::new, |n| format!(" '{n}'"))
}

/// Where [`Extractor::extract_into`] puts a line's values: a `Vec`, or [`InlineValues`] on
/// the stack (no vector to recycle across lines of different lifetimes).
pub(crate) trait ValueSlots<'a> {
    fn clear_slots(&mut self);
    fn reserve_slots(&mut self, n: usize);
    fn push_slot(&mut self, v: Value<'a>);
    fn as_slots(&self) -> &[Value<'a>];
}

/// Both are vectors of values; only where they keep them differs.
macro_rules! value_slots {
    ($t:ty) => {
        impl<'a> ValueSlots<'a> for $t {
            #[inline]
            fn clear_slots(&mut self) {
                self.clear();
            }
            #[inline]
            fn reserve_slots(&mut self, n: usize) {
                self.reserve(n);
            }
            #[inline]
            fn push_slot(&mut self, v: Value<'a>) {
                self.push(v);
            }
            #[inline]
            fn as_slots(&self) -> &[Value<'a>] {
                self
            }
        }
    };
}

value_slots!(Vec<Value<'a>>);

/// Values of up to [`INLINE_SLOTS`] slots, on the stack.
pub(crate) type InlineValues<'a> = smallvec::SmallVec<[Value<'a>; INLINE_SLOTS]>;

/// Slots that [`InlineValues`] holds without allocating.
pub(crate) const INLINE_SLOTS: usize = 8;

value_slots!(InlineValues<'a>);

/// Key and timestamp of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted<'a> {
    /// JSON text of the key value exactly as the oracle keys it (Jackson's `toString()` of the
    /// node); `None` when no key path is configured.
    pub key: Option<Cow<'a, str>>,
    /// Event time in epoch milliseconds; `None` when no time path is configured.
    pub timestamp: Option<i64>,
    /// The line as the oracle keeps it for output: trimmed (Java `trim()`).
    pub json: &'a str,
}

/// One node of the path trie; nodes are in pre-order, so a node's subtree is `idx..end`.
#[derive(Clone, Debug)]
struct Node {
    name: Box<[u8]>,
    /// The first 8 bytes of the name, little-endian, zero-padded (a quick first comparison).
    prefix: u64,
    children: Vec<usize>,
    end: usize,
    /// The children as the fast path matches them.
    kids: Box<[fast::Kid]>,
}

/// The first `min(n, 8)` bytes of `b[at..at + n]` as a little-endian word, zero-padded.
#[inline(always)]
fn prefix_word(b: &[u8], at: usize, n: usize) -> u64 {
    let mask = if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    };
    match b.get(at..at + 8) {
        Some(chunk) => {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            u64::from_le_bytes(w) & mask
        }
        None => {
            let mut w = [0u8; 8];
            let k = n.min(8).min(b.len().saturating_sub(at));
            w[..k].copy_from_slice(&b[at..at + k]);
            u64::from_le_bytes(w) & mask
        }
    }
}

/// Reads lines into events for one spec: built once from the expressions' [`Fields`] and the
/// key and time paths, then used for every line (`Send + Sync`, no interior state).
#[derive(Clone, Debug)]
pub struct Extractor {
    nodes: Vec<Node>,
    slot_nodes: Vec<usize>,
    key_node: Option<usize>,
    time_node: Option<usize>,
    key_name: String,
    time_name: String,
}

/// Spans kept on the stack for tries up to this many nodes.
const STACK_SPANS: usize = 32;

impl Extractor {
    /// An extractor for the field paths of `fields` (one value per slot, in slot order), the
    /// key path and the time path (segments, as [`parse_path`](crate::expr::parse_path) gives).
    pub fn new(fields: &Fields, key: Option<Vec<String>>, time: Option<Vec<String>>) -> Extractor {
        // Build a temporary tree, then lay it out in pre-order.
        struct Tmp {
            name: Vec<u8>,
            children: Vec<usize>,
        }
        let mut tmp = vec![Tmp {
            name: Vec::new(),
            children: Vec::new(),
        }];
        let mut insert = |path: &[String]| -> usize {
            let mut cur = 0;
            for seg in path {
                let found = tmp[cur]
                    .children
                    .iter()
                    .copied()
                    .find(|&c| tmp[c].name == seg.as_bytes());
                cur = match found {
                    Some(c) => c,
                    None => {
                        tmp.push(Tmp {
                            name: seg.as_bytes().to_vec(),
                            children: Vec::new(),
                        });
                        let id = tmp.len() - 1;
                        tmp[cur].children.push(id);
                        id
                    }
                };
            }
            cur
        };
        let slot_tmp: Vec<usize> = fields.paths().iter().map(|p| insert(p)).collect();
        let key_tmp = key.as_deref().map(&mut insert);
        let time_tmp = time.as_deref().map(&mut insert);

        let mut order = vec![0usize; tmp.len()]; // tmp id -> final id
        let mut nodes: Vec<Node> = Vec::with_capacity(tmp.len());
        // Iterative pre-order walk: (tmp id, parent final id).
        let mut stack: Vec<(usize, Option<usize>)> = vec![(0, None)];
        while let Some((t, parent)) = stack.pop() {
            let id = nodes.len();
            order[t] = id;
            let name = tmp[t].name.clone().into_boxed_slice();
            nodes.push(Node {
                prefix: prefix_word(&name, 0, name.len()),
                name,
                children: Vec::new(),
                end: 0,
                kids: Box::default(),
            });
            if let Some(p) = parent {
                nodes[p].children.push(id);
            }
            for &c in tmp[t].children.iter().rev() {
                stack.push((c, Some(id)));
            }
        }
        // Subtree ends, children before parents (reverse pre-order).
        for id in (0..nodes.len()).rev() {
            let end = nodes[id]
                .children
                .iter()
                .map(|&c| nodes[c].end)
                .max()
                .unwrap_or(id + 1);
            nodes[id].end = end.max(id + 1);
        }
        for id in 0..nodes.len() {
            let kids = nodes[id]
                .children
                .iter()
                .map(|&c| fast::Kid::new(&nodes[c].name, c, nodes[c].end))
                .collect();
            nodes[id].kids = kids;
        }
        Extractor {
            nodes,
            slot_nodes: slot_tmp.iter().map(|&t| order[t]).collect(),
            key_node: key_tmp.map(|t| order[t]),
            time_node: time_tmp.map(|t| order[t]),
            key_name: key.as_deref().map(|p| p.join(".")).unwrap_or_default(),
            time_name: time.as_deref().map(|p| p.join(".")).unwrap_or_default(),
        }
    }

    /// Number of values [`extract`](Self::extract) produces (the `Fields` slots).
    pub fn slots(&self) -> usize {
        self.slot_nodes.len()
    }

    /// Parses one line (without the trailing newline). Fills `values` with one [`Value`] per
    /// `Fields` slot (clearing it first; on error it is left empty).
    ///
    /// Errors, in the oracle's order: empty line, not JSON, not an object, missing or `null`
    /// key, missing or `null` time, unusable time.
    pub fn extract<'a>(
        &self,
        line: &'a str,
        values: &mut Vec<Value<'a>>,
    ) -> Result<Extracted<'a>, LineError> {
        self.extract_impl(line, values, true)
    }

    /// [`Self::extract`] into any [`ValueSlots`].
    #[inline]
    pub(crate) fn extract_into<'a, S: ValueSlots<'a>>(
        &self,
        line: &'a str,
        values: &mut S,
    ) -> Result<Extracted<'a>, LineError> {
        self.extract_impl(line, values, true)
    }

    /// [`Self::extract`], with or without its fast path (`fast: false` only in tests, which
    /// check that both ways give the same).
    #[inline(always)]
    fn extract_impl<'a, S: ValueSlots<'a>>(
        &self,
        line: &'a str,
        values: &mut S,
        fast: bool,
    ) -> Result<Extracted<'a>, LineError> {
        values.clear_slots();
        let text = java_trim(line);
        if text.is_empty() {
            return Err(LineError::Empty);
        }
        // The span table, sized to the trie: on the stack unless it is large.
        let n = self.nodes.len();
        if n <= 8 {
            self.extract_with(text, values, &mut [Span::NONE; 8][..n], fast)
        } else if n <= STACK_SPANS {
            self.extract_with(text, values, &mut [Span::NONE; STACK_SPANS][..n], fast)
        } else {
            self.extract_with(text, values, &mut vec![Span::NONE; n], fast)
        }
    }

    #[inline(always)]
    fn extract_with<'a, S: ValueSlots<'a>>(
        &self,
        text: &'a str,
        values: &mut S,
        spans: &mut [Span],
        fast: bool,
    ) -> Result<Extracted<'a>, LineError> {
        let b = text.as_bytes();
        let fast = fast
            && b.first() == Some(&b'{')
            && self.fast_object(b, 0, 0, 1, spans) == Some(b.len());
        if !fast {
            spans.fill(Span::NONE);
            self.scan_validating(text, spans)?;
        }
        spans[0] = Span {
            start: 0,
            end: text.len(),
            kind: Kind::Obj,
        };

        let mut key = None;
        if let Some(k) = self.key_node {
            let sp = spans[k];
            if matches!(sp.kind, Kind::None | Kind::Null) {
                return Err(LineError::MissingKey {
                    field: Some(self.key_name.clone()),
                });
            }
            key = Some(jackson_text(text, sp));
        }
        let mut timestamp = None;
        if let Some(t) = self.time_node {
            let sp = spans[t];
            if matches!(sp.kind, Kind::None | Kind::Null) {
                return Err(LineError::MissingTime {
                    field: Some(self.time_name.clone()),
                });
            }
            match span_timestamp(text, sp) {
                Some(ts) => timestamp = Some(ts),
                None => {
                    return Err(LineError::BadTime {
                        field: self.time_name.clone(),
                        value: jackson_text(text, sp).into_owned(),
                    })
                }
            }
        }
        values.reserve_slots(self.slot_nodes.len());
        for &n in &self.slot_nodes {
            values.push_slot(span_value(text, spans[n]));
        }
        Ok(Extracted {
            key,
            timestamp,
            json: text,
        })
    }

    /// Reads `text` with the validating scanner, recording spans as [`Self::fast_object`] does
    /// (what decides acceptance and every error message).
    #[cold]
    fn scan_validating(&self, text: &str, spans: &mut [Span]) -> Result<(), LineError> {
        let mut sc = Scanner::new(text.as_bytes());
        let invalid = |e: json::JsonError| {
            let column = text.get(..e.pos).map_or(e.pos, |p| p.chars().count()) + 1;
            LineError::InvalidJson {
                message: e.message(text.as_bytes()).to_string(),
                column,
            }
        };
        if sc.peek() != Some(b'{') {
            sc.skip_value(0).map_err(invalid)?;
            sc.expect_end().map_err(invalid)?;
            return Err(LineError::NotAnObject);
        }
        self.parse_object(&mut sc, 0, 1, spans).map_err(invalid)?;
        sc.expect_end().map_err(invalid)?;
        Ok(())
    }

    /// The child of `node` named by the JSON name `b[s..e]` (`esc`: it has escapes).
    #[inline]
    fn find_child(&self, node: usize, b: &[u8], s: usize, e: usize, esc: bool) -> Option<usize> {
        let children = &self.nodes[node].children;
        if esc {
            let name = json::decode_string(&b[s..e]);
            return children
                .iter()
                .copied()
                .find(|&c| *self.nodes[c].name == *name);
        }
        let n = e - s;
        let w = prefix_word(b, s, n);
        children.iter().copied().find(|&c| {
            let node = &self.nodes[c];
            node.prefix == w && node.name.len() == n && (n <= 8 || node.name[8..] == b[s + 8..e])
        })
    }

    /// Scans an object at `{` whose trie node is `node` and nesting depth `depth`, recording
    /// the spans of the trie's children.
    fn parse_object(
        &self,
        sc: &mut Scanner<'_>,
        node: usize,
        depth: usize,
        spans: &mut [Span],
    ) -> json::Result<()> {
        if depth > MAX_DEPTH {
            return sc.fail(json::Code::TooDeep);
        }
        sc.i += 1;
        sc.skip_ws();
        if sc.peek() == Some(b'}') {
            sc.i += 1;
            return Ok(());
        }
        let has_children = !self.nodes[node].children.is_empty();
        loop {
            let (ks, ke, esc) = sc.scan_name()?;
            sc.skip_ws();
            sc.expect(b':', json::Code::ExpectedColon)?;
            sc.skip_ws();
            let child = if has_children {
                self.find_child(node, sc.b, ks, ke, esc)
            } else {
                None
            };
            match child {
                None => {
                    sc.skip_value(depth)?;
                }
                Some(c) => {
                    let start = sc.i;
                    // A duplicate name replaces everything an earlier occurrence recorded.
                    let end = self.nodes[c].end;
                    for s in &mut spans[c + 1..end] {
                        *s = Span::NONE;
                    }
                    let kind = if end > c + 1 && sc.peek() == Some(b'{') {
                        self.parse_object(sc, c, depth + 1, spans)?;
                        Kind::Obj
                    } else {
                        sc.skip_value(depth)?
                    };
                    spans[c] = Span {
                        start,
                        end: sc.i,
                        kind,
                    };
                }
            }
            sc.skip_ws();
            match sc.peek() {
                Some(b',') => {
                    sc.i += 1;
                    sc.skip_ws();
                }
                Some(b'}') => {
                    sc.i += 1;
                    return Ok(());
                }
                _ => return sc.fail(json::Code::ExpectedObjectSep),
            }
        }
    }
}

/// Java's `String.trim()`: strips chars <= U+0020 at both ends.
#[inline]
fn java_trim(line: &str) -> &str {
    let b = line.as_bytes();
    let mut s = 0;
    let mut e = b.len();
    while s < e && b[s] <= b' ' {
        s += 1;
    }
    while e > s && b[e - 1] <= b' ' {
        e -= 1;
    }
    line.get(s..e).unwrap_or("")
}

/// The oracle's `JsonLineSource.timestamp` on a validated span.
#[inline]
fn span_timestamp(text: &str, sp: Span) -> Option<i64> {
    match sp.kind {
        Kind::Int => json::parse_int(text.get(sp.start..sp.end)?),
        _ => other_timestamp(text, sp),
    }
}

/// [`span_timestamp`] of anything but a plain integer.
#[cold]
fn other_timestamp(text: &str, sp: Span) -> Option<i64> {
    let raw = text.get(sp.start..sp.end)?;
    match sp.kind {
        Kind::Int => json::parse_int(raw),
        Kind::Float => Dec::trusted(raw).to_i64_exact(),
        Kind::Str { esc } => {
            let s = string_value(text.as_bytes(), sp, esc);
            time::parse_timestamp_text(s.as_bytes())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
