//! [`JsonEvent`], the event type patterns built from specs run on: the input
//! line plus the truth value of every condition of the spec, computed once
//! when the event is ingested (conditions are pure functions of the event).
//!
//! The line is a range of a shared text: its own (one allocation per event)
//! or a block holding the lines of many events ([`JsonEvent::in_block`]),
//! which a reader fills once per chunk of input. A block is freed when the
//! last of its events is.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

/// Number of condition bits stored inline, without allocating.
const INLINE_BITS: usize = 128;

/// An input event of a spec: the original JSON line and the precomputed
/// result of each of the spec's conditions (`where` and `until` expressions).
///
/// Cloning is cheap: the line is shared, up to 128 conditions are stored
/// inline, and more are shared too (a run of many specs over one stream
/// hands the same event to each). Events are equal when their lines and
/// conditions are.
#[derive(Clone)]
pub struct JsonEvent {
    /// The line is `text[start..end]`.
    text: Arc<str>,
    start: u32,
    end: u32,
    conds: CondBits,
}

/// The truth value of each condition of a spec for one event, to make a
/// [`JsonEvent`] with later ([`crate::spec::SpecSet::ingest_parts`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Conditions(CondBits);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum CondBits {
    Inline([u64; 2]),
    Heap(Arc<[u64]>),
}

impl CondBits {
    /// The bits of `n` conditions of which those yielded by `holding` hold.
    fn build(n: usize, holding: impl Iterator<Item = usize>) -> Self {
        fn set(words: &mut [u64], i: usize) {
            if let Some(w) = words.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        }
        if n <= INLINE_BITS {
            let mut w = [0; 2];
            holding.for_each(|i| set(&mut w, i));
            CondBits::Inline(w)
        } else {
            let mut w = vec![0; n.div_ceil(64)];
            holding.for_each(|i| set(&mut w, i));
            CondBits::Heap(w.into())
        }
    }

    fn words(&self) -> &[u64] {
        match self {
            CondBits::Inline(w) => w,
            CondBits::Heap(w) => w,
        }
    }

    #[inline]
    fn get(&self, i: usize) -> bool {
        self.words()
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

impl Conditions {
    /// The results of `n` conditions, in order.
    pub(crate) fn from_results(n: usize, results: impl Iterator<Item = bool>) -> Self {
        let holding = results.enumerate().filter(|(_, h)| *h).map(|(i, _)| i);
        Conditions(CondBits::build(n, holding))
    }

    /// Whether condition `i` holds.
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        self.0.get(i)
    }
}

impl JsonEvent {
    /// An event for `raw` whose condition `i` holds iff `conds[i]`.
    ///
    /// [`crate::spec::Spec::ingest`] is the usual way to make events; this is
    /// for tests and for callers that evaluate conditions themselves.
    pub fn from_parts(raw: impl Into<Arc<str>>, conds: &[bool]) -> Self {
        let holding = conds
            .iter()
            .enumerate()
            .filter(|(_, c)| **c)
            .map(|(i, _)| i);
        Self::own(
            raw.into(),
            Conditions(CondBits::build(conds.len(), holding)),
        )
    }

    /// An event whose line is all of `raw`.
    pub fn own(raw: Arc<str>, conds: Conditions) -> Self {
        match u32::try_from(raw.len()) {
            Ok(end) => JsonEvent {
                text: raw,
                start: 0,
                end,
                conds: conds.0,
            },
            // A line beyond 4 GiB: `end == 0` stands for the whole text.
            Err(_) => JsonEvent {
                text: raw,
                start: 0,
                end: 0,
                conds: conds.0,
            },
        }
    }

    /// An event whose line is `block[range]`, sharing `block` with the other
    /// events of the block. `None` when `range` is not a slice of `block`
    /// (out of bounds, or not on character boundaries).
    #[inline]
    pub fn in_block(block: &Arc<str>, range: Range<usize>, conds: Conditions) -> Option<Self> {
        let line = block.get(range.clone())?;
        match (u32::try_from(range.start), u32::try_from(range.end)) {
            (Ok(start), Ok(end)) => Some(JsonEvent {
                text: block.clone(),
                start,
                end,
                conds: conds.0,
            }),
            _ => Some(Self::own(Arc::from(line), conds)),
        }
    }

    /// The input line (trimmed as [`crate::spec::Spec::ingest`] says).
    #[inline]
    pub fn raw(&self) -> &str {
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

    /// Whether condition `i` of the spec holds for this event (`false` for an
    /// index the spec does not have).
    #[inline]
    pub fn cond(&self, i: usize) -> bool {
        self.conds.get(i)
    }
}

impl PartialEq for JsonEvent {
    fn eq(&self, other: &Self) -> bool {
        self.raw() == other.raw() && self.conds == other.conds
    }
}

impl Eq for JsonEvent {}

impl Hash for JsonEvent {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.raw().hash(state);
        self.conds.hash(state);
    }
}

impl fmt::Debug for JsonEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bits = String::new();
        let n = self.conds.words().len() * 64;
        let last = (0..n).rev().find(|&i| self.cond(i)).map_or(0, |i| i + 1);
        for i in 0..last {
            bits.push(if self.cond(i) { '1' } else { '0' });
        }
        f.debug_struct("JsonEvent")
            .field("raw", &self.raw())
            .field("conds", &bits)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_heap_bits() {
        let e = JsonEvent::from_parts("{}", &[true, false, true]);
        assert!(e.cond(0) && !e.cond(1) && e.cond(2));
        assert!(!e.cond(3) && !e.cond(10_000));
        assert!(matches!(e.conds, CondBits::Inline(_)));

        let mut many = vec![false; 300];
        many[0] = true;
        many[127] = true;
        many[128] = true;
        many[299] = true;
        let e = JsonEvent::from_parts("{}", &many);
        assert!(matches!(e.conds, CondBits::Heap(_)));
        for (i, want) in many.iter().enumerate() {
            assert_eq!(e.cond(i), *want, "bit {i}");
        }
        assert!(!e.cond(300) && !e.cond(usize::MAX));
    }

    #[test]
    fn events_in_one_block_share_it_and_compare_by_line() {
        let block: Arc<str> = Arc::from("{\"a\":1}{\"b\":2}é");
        let bits = |v: &[bool]| {
            let e = JsonEvent::from_parts("", v);
            Conditions(e.conds)
        };
        let a = JsonEvent::in_block(&block, 0..7, bits(&[true])).unwrap();
        let b = JsonEvent::in_block(&block, 7..14, bits(&[false, true])).unwrap();
        assert_eq!(a.raw(), "{\"a\":1}");
        assert_eq!(b.raw(), "{\"b\":2}");
        assert!(a.cond(0) && !b.cond(0) && b.cond(1));
        assert_eq!(Arc::strong_count(&block), 3);
        // Equal to an event with the same line of its own.
        assert_eq!(a, JsonEvent::from_parts("{\"a\":1}", &[true]));
        assert_ne!(a, JsonEvent::from_parts("{\"a\":1}", &[false]));
        // Not a slice of the block: out of bounds, or inside a character.
        assert!(JsonEvent::in_block(&block, 10..99, bits(&[])).is_none());
        assert!(JsonEvent::in_block(&block, 14..15, bits(&[])).is_none());
        drop((a, b));
        assert_eq!(Arc::strong_count(&block), 1);
        assert_eq!(JsonEvent::from_parts("", &[]).raw(), "");
    }

    #[test]
    fn debug_shows_line_and_bits() {
        let e = JsonEvent::from_parts(r#"{"a":1}"#, &[false, true]);
        assert_eq!(
            format!("{e:?}"),
            r#"JsonEvent { raw: "{\"a\":1}", conds: "01" }"#
        );
    }
}
