//! [`JsonEvent`], the event type patterns built from specs run on: the input
//! line plus the truth value of every condition of the spec, computed once
//! when the event is ingested (conditions are pure functions of the event).
//!
//! The line is a range of a shared text: its own (one allocation per event)
//! or a [`TextBlock`] holding the lines of many events
//! ([`JsonEvent::in_block`]), which a reader fills once per chunk of input. A
//! block is freed when the last of its events is.
//!
//! An event is three words (24 bytes), since partial matches hold many: a
//! thin pointer to the text, the line's range in it as two `u32`s, and the
//! condition bits, inline for up to 64 conditions. With more conditions (a
//! run of many specs) an event that holds one beyond the first 64 is one
//! pointer to a shared allocation holding the line's place and the bits, made
//! once per event; the others keep their bits inline.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Range;

use arcstr::ArcStr;

use crate::operator::state::{
    get_count, get_str, get_u8, get_var, put_bytes, put_var, StateCodec, StateError,
};
use triomphe::ThinArc;

/// Number of condition bits stored inline, without allocating.
const INLINE_BITS: usize = 64;

/// A text shared by the events whose lines are in it (see
/// [`JsonEvent::in_block`]); cloning it is cheap.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TextBlock(ArcStr);

impl From<&str> for TextBlock {
    fn from(text: &str) -> Self {
        TextBlock(ArcStr::from(text))
    }
}

impl From<String> for TextBlock {
    fn from(text: String) -> Self {
        TextBlock(ArcStr::from(text))
    }
}

impl TextBlock {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TextBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// An input event of a spec: the original JSON line and the precomputed
/// result of each of the spec's conditions (`where` and `until` expressions).
///
/// Cloning is cheap: the line is shared, up to 64 conditions are stored
/// inline, and more are shared too (a run of many specs over one stream
/// hands the same event to each). Events are equal when their lines are and
/// the same conditions hold.
#[derive(Clone)]
pub struct JsonEvent(Repr);

#[derive(Clone)]
enum Repr {
    /// Up to 64 conditions: bit `i` of `bits` is condition `i`.
    Narrow { line: Line, bits: u64 },
    /// More: the line and the bits in one shared allocation. The enum's tag
    /// lives in the niche of `Narrow`'s text pointer, so an event is no
    /// larger than `Narrow`.
    Wide(ThinArc<Line, u64>),
}

/// Where the line is: `text[start..end]`.
#[derive(Clone)]
struct Line {
    text: ArcStr,
    start: u32,
    end: u32,
}

impl Line {
    /// Before the event has a line (the bits of [`Conditions`]); no allocation.
    const NONE: Line = Line {
        text: ArcStr::new(),
        start: 0,
        end: 0,
    };

    /// All of `text`.
    fn whole(text: ArcStr) -> Self {
        // A line beyond 4 GiB: `end == 0` stands for the whole text.
        let end = u32::try_from(text.len()).unwrap_or(0);
        Line {
            text,
            start: 0,
            end,
        }
    }

    #[inline]
    fn as_str(&self) -> &str {
        if self.end == 0 {
            // Empty, or a line of more than 4 GiB that has the text alone.
            return if self.text.len() > u32::MAX as usize {
                &self.text
            } else {
                ""
            };
        }
        self.text
            .get(self.start as usize..self.end as usize)
            .unwrap_or("")
    }
}

/// The truth value of each condition of a spec for one event, to make a
/// [`JsonEvent`] with later ([`crate::spec::SpecSet::ingest_parts`]).
/// Equal when the same conditions hold.
#[derive(Clone)]
pub struct Conditions(Bits);

#[derive(Clone)]
enum Bits {
    Narrow(u64),
    /// The allocation the event will have, its line not yet set
    /// ([`Line::NONE`]).
    Wide(ThinArc<Line, u64>),
}

/// Sets bit `i` of `words` (nothing beyond them).
fn set(words: &mut [u64], i: usize) {
    if let Some(w) = words.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

/// Whether bit `i` of `words` is set (`false` beyond them).
#[inline]
fn get(words: &[u64], i: usize) -> bool {
    words.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// `words` without its trailing zero words: equal for equal sets of bits.
fn significant(words: &[u64]) -> &[u64] {
    let n = words.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1);
    &words[..n]
}

impl Bits {
    /// The bits of `n` conditions of which those yielded by `holding` hold.
    ///
    /// The bits are inline whenever none beyond the first 64 holds, however
    /// many conditions there are: most lines of a run of many specs start
    /// none of their patterns and hold few conditions or none, and an inline
    /// event costs no allocation and no pointer to follow each time one of
    /// the many patterns reads a bit. `holding` must be increasing.
    fn build(n: usize, mut holding: impl Iterator<Item = usize>) -> Self {
        let mut first = [0];
        while let Some(i) = holding.next() {
            if i < INLINE_BITS || n <= INLINE_BITS {
                set(&mut first, i);
                continue;
            }
            let words = n.div_ceil(64);
            let mut arc = ThinArc::from_header_and_iter(Line::NONE, std::iter::repeat_n(0, words));
            arc.with_arc_mut(|a| {
                if let Some(a) = triomphe::Arc::get_mut(a) {
                    let w = a.slice_mut();
                    if let Some(w0) = w.first_mut() {
                        *w0 = first[0];
                    }
                    set(w, i);
                    holding.for_each(|i| set(w, i));
                }
            });
            return Bits::Wide(arc);
        }
        Bits::Narrow(first[0])
    }

    fn words(&self) -> &[u64] {
        match self {
            Bits::Narrow(w) => std::slice::from_ref(w),
            Bits::Wide(a) => &a.slice,
        }
    }

    /// The event of `line` with these bits: in the allocation of the bits
    /// when there is one (a second only when these bits were cloned).
    fn with_line(self, line: Line) -> JsonEvent {
        JsonEvent(match self {
            Bits::Narrow(bits) => Repr::Narrow { line, bits },
            Bits::Wide(mut arc) => {
                let mut line = Some(line);
                arc.with_arc_mut(|a| {
                    if let Some(a) = triomphe::Arc::get_mut(a) {
                        if let Some(line) = line.take() {
                            *a.header_mut() = line;
                        }
                    }
                });
                match line {
                    None => Repr::Wide(arc),
                    Some(line) => Repr::Wide(ThinArc::from_header_and_slice(line, &arc.slice)),
                }
            }
        })
    }
}

impl Conditions {
    /// The results of `n` conditions, in order.
    pub(crate) fn from_results(n: usize, results: impl Iterator<Item = bool>) -> Self {
        let holding = results.enumerate().filter(|(_, h)| *h).map(|(i, _)| i);
        Conditions(Bits::build(n, holding))
    }

    /// Whether condition `i` holds.
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        get(self.0.words(), i)
    }
}

impl PartialEq for Conditions {
    fn eq(&self, other: &Self) -> bool {
        significant(self.0.words()) == significant(other.0.words())
    }
}

impl Eq for Conditions {}

impl Hash for Conditions {
    fn hash<H: Hasher>(&self, state: &mut H) {
        significant(self.0.words()).hash(state);
    }
}

impl fmt::Debug for Conditions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Conditions")
            .field(&BitString(self.0.words()))
            .finish()
    }
}

/// Bits as `0`s and `1`s, up to the last set one.
struct BitString<'a>(&'a [u64]);

impl fmt::Debug for BitString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len() * 64;
        let last = (0..n).rev().find(|&i| get(self.0, i)).map_or(0, |i| i + 1);
        let bits: String = (0..last)
            .map(|i| if get(self.0, i) { '1' } else { '0' })
            .collect();
        fmt::Debug::fmt(&bits, f)
    }
}

impl Default for JsonEvent {
    /// The empty line with no condition holding; no allocation (a
    /// placeholder for an event moved out).
    fn default() -> Self {
        JsonEvent(Repr::Narrow {
            line: Line::NONE,
            bits: 0,
        })
    }
}

impl JsonEvent {
    /// An event for `raw` whose condition `i` holds iff `conds[i]`.
    ///
    /// [`crate::spec::Spec::ingest`] is the usual way to make events; this is
    /// for tests and for callers that evaluate conditions themselves.
    pub fn from_parts(raw: impl AsRef<str>, conds: &[bool]) -> Self {
        let holding = conds
            .iter()
            .enumerate()
            .filter(|(_, c)| **c)
            .map(|(i, _)| i);
        Self::own(raw.as_ref(), Conditions(Bits::build(conds.len(), holding)))
    }

    /// An event whose line is all of `raw`, copied into an allocation of its
    /// own.
    pub fn own(raw: &str, conds: Conditions) -> Self {
        conds.0.with_line(Line::whole(ArcStr::from(raw)))
    }

    /// An event whose line is `block[range]`, sharing `block` with the other
    /// events of the block. `None` when `range` is not a slice of `block`
    /// (out of bounds, or not on character boundaries).
    #[inline]
    pub fn in_block(block: &TextBlock, range: Range<usize>, conds: Conditions) -> Option<Self> {
        let line = block.0.get(range.clone())?;
        match (u32::try_from(range.start), u32::try_from(range.end)) {
            (Ok(start), Ok(end)) => Some(conds.0.with_line(Line {
                text: block.0.clone(),
                start,
                end,
            })),
            _ => Some(Self::own(line, conds)),
        }
    }

    /// Starts loading the event's text (the first two cache lines), which
    /// its output reads: the operator calls this for the events of timers
    /// about to fire, stored minutes earlier.
    #[inline]
    pub(crate) fn prefetch_text(&self) {
        let line = self.line();
        let p = line.text.as_ptr().wrapping_add(line.start as usize);
        crate::slots::prefetch(p);
        crate::slots::prefetch(p.wrapping_add(64));
    }

    #[inline]
    fn line(&self) -> &Line {
        match &self.0 {
            Repr::Narrow { line, .. } => line,
            Repr::Wide(a) => &a.header.header,
        }
    }

    #[inline]
    fn words(&self) -> &[u64] {
        match &self.0 {
            Repr::Narrow { bits, .. } => std::slice::from_ref(bits),
            Repr::Wide(a) => &a.slice,
        }
    }

    /// The input line (trimmed as [`crate::spec::Spec::ingest`] says).
    #[inline]
    pub fn raw(&self) -> &str {
        self.line().as_str()
    }

    /// Conditions `64 * w .. 64 * w + 64` as bits (bit `i` is condition
    /// `64 * w + i`; zero beyond the spec's). Events whose bits agree on the
    /// conditions a pattern reads are alike to it.
    #[inline]
    pub fn condition_word(&self, w: usize) -> u64 {
        match &self.0 {
            Repr::Narrow { bits, .. } => {
                if w == 0 {
                    *bits
                } else {
                    0
                }
            }
            Repr::Wide(a) => a.slice.get(w).copied().unwrap_or(0),
        }
    }

    /// Whether condition `i` of the spec holds for this event (`false` for an
    /// index the spec does not have).
    #[inline]
    pub fn cond(&self, i: usize) -> bool {
        match &self.0 {
            Repr::Narrow { bits, .. } => i < 64 && bits & (1 << i) != 0,
            Repr::Wide(a) => get(&a.slice, i),
        }
    }
}

impl PartialEq for JsonEvent {
    fn eq(&self, other: &Self) -> bool {
        self.raw() == other.raw() && significant(self.words()) == significant(other.words())
    }
}

impl Eq for JsonEvent {}

impl Hash for JsonEvent {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.raw().hash(state);
        significant(self.words()).hash(state);
    }
}

impl fmt::Debug for JsonEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonEvent")
            .field("raw", &self.raw())
            .field("conds", &BitString(self.words()))
            .finish()
    }
}

/// Saved as its line and its condition bits, in the form they have (up
/// to 64 inline, more in one allocation with the line): `bytes` line, then
/// `u8 0 | var bits` or `u8 1 | var words { var word }`.
impl StateCodec for JsonEvent {
    fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.raw().as_bytes());
        match &self.0 {
            Repr::Narrow { bits, .. } => {
                out.push(0);
                put_var(out, *bits);
            }
            Repr::Wide(a) => {
                out.push(1);
                put_var(out, a.slice.len() as u64);
                for &w in &a.slice {
                    put_var(out, w);
                }
            }
        }
    }

    fn decode(input: &mut &[u8]) -> Result<Self, StateError> {
        let raw = get_str(input, "event line")?;
        let line = Line::whole(ArcStr::from(raw));
        match get_u8(input, "event condition form")? {
            0 => Ok(JsonEvent(Repr::Narrow {
                line,
                bits: get_var(input, "event conditions")?,
            })),
            1 => {
                let n = get_count(input, "event condition words")?;
                let mut words = Vec::with_capacity(n);
                for _ in 0..n {
                    words.push(get_var(input, "event conditions")?);
                }
                Ok(JsonEvent(Repr::Wide(ThinArc::from_header_and_slice(
                    line, &words,
                ))))
            }
            f => Err(StateError::Invalid {
                what: "event condition form",
                detail: format!("{f} is neither 0 (inline) nor 1 (shared)"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(v: &[bool]) -> Conditions {
        Conditions::from_results(v.len(), v.iter().copied())
    }

    #[test]
    fn an_event_is_three_words() {
        assert!(std::mem::size_of::<JsonEvent>() <= 32);
        assert_eq!(std::mem::size_of::<JsonEvent>(), 24);
        assert_eq!(std::mem::size_of::<Conditions>(), 16);
    }

    /// The shared buffer holds each event once, beside its id and lock count
    /// (here rather than in `nfa`, which does not know this event type).
    #[test]
    fn a_buffered_event_is_five_words() {
        assert_eq!(
            std::mem::size_of::<crate::nfa::buffer::EventEntry<JsonEvent>>(),
            40
        );
        // And so is its slot in the store: the entry leaves a niche for
        // the slot's tag.
        assert_eq!(
            std::mem::size_of::<crate::slots::Slot<crate::nfa::buffer::EventEntry<JsonEvent>>>(),
            40
        );
    }

    #[test]
    fn inline_and_heap_bits() {
        let e = JsonEvent::from_parts("{}", &[true, false, true]);
        assert!(e.cond(0) && !e.cond(1) && e.cond(2));
        assert!(!e.cond(3) && !e.cond(63) && !e.cond(64) && !e.cond(10_000));
        assert!(matches!(e.0, Repr::Narrow { .. }));

        let mut v = vec![false; 64];
        v[63] = true;
        let e = JsonEvent::from_parts("{}", &v);
        assert!(matches!(e.0, Repr::Narrow { .. }));
        assert!(e.cond(63) && !e.cond(62) && !e.cond(64) && !e.cond(127));

        let mut many = vec![false; 300];
        for i in [0, 63, 64, 127, 128, 299] {
            many[i] = true;
        }
        let e = JsonEvent::from_parts("{\"a\":1}", &many);
        assert!(matches!(e.0, Repr::Wide(_)));
        assert_eq!(e.raw(), "{\"a\":1}");
        for (i, want) in many.iter().enumerate() {
            assert_eq!(e.cond(i), *want, "bit {i}");
            assert_eq!(bits(&many).get(i), *want, "bit {i}");
        }
        assert!(!e.cond(300) && !e.cond(usize::MAX));
        let c = e.clone();
        assert_eq!(c, e);
        assert_eq!(c.raw(), "{\"a\":1}");
    }

    #[test]
    fn wide_bits_are_the_events_one_allocation() {
        let block = TextBlock::from("{\"a\":1}{\"b\":2}");
        let mut many = vec![false; 100];
        many[99] = true;
        let conds = bits(&many);
        let Bits::Wide(arc) = &conds.0 else {
            panic!("wide bits expected")
        };
        let ptr = arc.heap_ptr();
        let e = JsonEvent::in_block(&block, 7..14, conds).unwrap();
        let Repr::Wide(arc) = &e.0 else {
            panic!("wide event expected")
        };
        assert_eq!(arc.heap_ptr(), ptr, "the bits' allocation holds the line");
        assert_eq!(e.raw(), "{\"b\":2}");
        assert!(e.cond(99) && !e.cond(98));
        assert_eq!(ArcStr::strong_count(&block.0), Some(2));

        // Bits that were cloned are copied, not changed under the clone.
        let conds = bits(&many);
        let kept = conds.clone();
        let e = JsonEvent::in_block(&block, 0..7, conds).unwrap();
        assert_eq!(e.raw(), "{\"a\":1}");
        assert!(e.cond(99));
        let Bits::Wide(arc) = &kept.0 else {
            panic!("wide bits expected")
        };
        assert_eq!(arc.header.header.as_str(), "");
        assert!(kept.get(99) && !kept.get(0));
    }

    #[test]
    fn events_in_one_block_share_it_and_compare_by_line() {
        let block = TextBlock::from("{\"a\":1}{\"b\":2}é");
        let a = JsonEvent::in_block(&block, 0..7, bits(&[true])).unwrap();
        let b = JsonEvent::in_block(&block, 7..14, bits(&[false, true])).unwrap();
        assert_eq!(a.raw(), "{\"a\":1}");
        assert_eq!(b.raw(), "{\"b\":2}");
        assert!(a.cond(0) && !b.cond(0) && b.cond(1));
        assert_eq!(ArcStr::strong_count(&block.0), Some(3));
        // Equal to an event with the same line of its own.
        assert_eq!(a, JsonEvent::from_parts("{\"a\":1}", &[true]));
        assert_ne!(a, JsonEvent::from_parts("{\"a\":1}", &[false]));
        // Not a slice of the block: out of bounds, or inside a character.
        assert!(JsonEvent::in_block(&block, 10..99, bits(&[])).is_none());
        assert!(JsonEvent::in_block(&block, 14..15, bits(&[])).is_none());
        drop((a, b));
        assert_eq!(ArcStr::strong_count(&block.0), Some(1));
        assert_eq!(JsonEvent::from_parts("", &[]).raw(), "");
    }

    #[test]
    fn equal_when_the_same_conditions_hold() {
        let mut many = vec![false; 200];
        many[1] = true;
        let wide = JsonEvent::from_parts("{}", &many);
        let narrow = JsonEvent::from_parts("{}", &[false, true]);
        assert_eq!(wide, narrow);
        let hash = |e: &JsonEvent| {
            let mut h = std::hash::DefaultHasher::new();
            e.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&wide), hash(&narrow));
        assert_eq!(bits(&many), bits(&[false, true]));
        many[150] = true;
        assert_ne!(JsonEvent::from_parts("{}", &many), narrow);
        assert_ne!(bits(&many), bits(&[false, true]));
    }

    #[test]
    fn debug_shows_line_and_bits() {
        let e = JsonEvent::from_parts(r#"{"a":1}"#, &[false, true]);
        assert_eq!(
            format!("{e:?}"),
            r#"JsonEvent { raw: "{\"a\":1}", conds: "01" }"#
        );
        let mut many = vec![false; 100];
        many[70] = true;
        let e = JsonEvent::from_parts("{}", &many);
        assert_eq!(
            format!("{e:?}"),
            format!(
                "JsonEvent {{ raw: \"{{}}\", conds: \"{}1\" }}",
                "0".repeat(70)
            )
        );
    }
}
