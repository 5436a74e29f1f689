//! [`JsonEvent`], the event type patterns built from specs run on: the input
//! line plus the truth value of every condition of the spec, computed once
//! when the event is ingested (conditions are pure functions of the event).

use std::fmt;
use std::sync::Arc;

/// Number of condition bits stored inline, without allocating.
const INLINE_BITS: usize = 128;

/// An input event of a spec: the original JSON line and the precomputed
/// result of each of the spec's conditions (`where` and `until` expressions).
///
/// Cloning is cheap: the line is shared, up to 128 conditions are stored
/// inline, and more are shared too (a run of many specs over one stream
/// hands the same event to each).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JsonEvent {
    raw: Arc<str>,
    conds: CondBits,
}

#[derive(Clone, PartialEq, Eq, Hash)]
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
        JsonEvent {
            raw: raw.into(),
            conds: CondBits::build(conds.len(), holding),
        }
    }

    /// An event for `raw` with the conditions of `results` (`n` of them).
    pub(crate) fn from_results(
        raw: Arc<str>,
        n: usize,
        results: impl Iterator<Item = bool>,
    ) -> Self {
        let holding = results.enumerate().filter(|(_, h)| *h).map(|(i, _)| i);
        JsonEvent {
            raw,
            conds: CondBits::build(n, holding),
        }
    }

    /// The input line (trimmed as [`crate::spec::Spec::ingest`] says).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The shared input line.
    pub fn raw_arc(&self) -> &Arc<str> {
        &self.raw
    }

    /// Whether condition `i` of the spec holds for this event (`false` for an
    /// index the spec does not have).
    #[inline]
    pub fn cond(&self, i: usize) -> bool {
        self.conds.get(i)
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
            .field("raw", &&*self.raw)
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
    fn debug_shows_line_and_bits() {
        let e = JsonEvent::from_parts(r#"{"a":1}"#, &[false, true]);
        assert_eq!(
            format!("{e:?}"),
            r#"JsonEvent { raw: "{\"a\":1}", conds: "01" }"#
        );
    }
}
