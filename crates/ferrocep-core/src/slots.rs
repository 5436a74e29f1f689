//! Entries by slot number (the operator's keys, the shared buffer's nodes
//! and events): a vector with a free list, like the `slab` crate, which also
//! gives the address of a slot without reading it, so that what an event
//! will touch can be prefetched while earlier events run.

use std::ops::{Index, IndexMut};

pub(crate) enum Slot<T> {
    /// Free; the next free slot (`u32::MAX`: none).
    Free(u32),
    Used(T),
}

/// Entries addressed by `usize` slots, reused after removal (last freed,
/// first reused: its memory is likely still cached).
pub(crate) struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: u32,
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            slots: Vec::new(),
            free: u32::MAX,
            len: 0,
        }
    }
}

impl<T> Slots<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        if self.free != u32::MAX {
            let i = self.free as usize;
            // What is replaced is the free slot itself: taking its link
            // out of it by value leaves nothing to drop.
            match std::mem::replace(&mut self.slots[i], Slot::Used(value)) {
                Slot::Free(next) => self.free = next,
                Slot::Used(_) => unreachable!("slot {i} on the free list is used"),
            }
            i
        } else {
            self.slots.push(Slot::Used(value));
            self.slots.len() - 1
        }
    }

    /// Removes the entry of a used slot.
    ///
    /// # Panics
    /// If the slot is not used (a bug in the caller).
    pub(crate) fn remove(&mut self, i: usize) -> T {
        match std::mem::replace(&mut self.slots[i], Slot::Free(self.free)) {
            Slot::Used(v) => {
                self.free = i as u32;
                self.len -= 1;
                v
            }
            Slot::Free(_) => panic!("slot {i} is not used"),
        }
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        match self.slots.get_mut(i) {
            Some(Slot::Used(v)) => Some(v),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        match self.slots.get(i) {
            Some(Slot::Used(v)) => Some(v),
            _ => None,
        }
    }

    /// The address of slot `i`, without reading it (for prefetching).
    #[inline]
    pub(crate) fn addr(&self, i: usize) -> *const u8 {
        self.slots.as_ptr().wrapping_add(i).cast()
    }

    #[allow(dead_code)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| match s {
            Slot::Used(v) => Some((i, v)),
            Slot::Free(_) => None,
        })
    }
}

impl<T> Index<usize> for Slots<T> {
    type Output = T;

    #[inline]
    fn index(&self, i: usize) -> &T {
        match &self.slots[i] {
            Slot::Used(v) => v,
            Slot::Free(_) => panic!("slot {i} is not used"),
        }
    }
}

impl<T> IndexMut<usize> for Slots<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        match &mut self.slots[i] {
            Slot::Used(v) => v,
            Slot::Free(_) => panic!("slot {i} is not used"),
        }
    }
}

/// Asks the CPU to bring the cache line at `p` in: a hint, which never
/// faults and never reads into the program, whatever the address.
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: `prefetcht0` is a hint: it does not fault on any address and
    // has no effect the program can observe; SSE is part of x86_64.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_the_last_freed_slot() {
        let mut s = Slots::default();
        let a = s.insert("a");
        let b = s.insert("b");
        let c = s.insert("c");
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(s.remove(b), "b");
        assert_eq!(s.remove(a), "a");
        assert_eq!(s.len(), 1);
        assert!(s.get(a).is_none());
        assert_eq!(s.insert("d"), a);
        assert_eq!(s.insert("e"), b);
        assert_eq!(s.insert("f"), 3);
        assert_eq!(
            s.iter().map(|(i, v)| (i, *v)).collect::<Vec<_>>(),
            vec![(0, "d"), (1, "e"), (2, "c"), (3, "f")]
        );
        prefetch(s.addr(2));
        prefetch(s.addr(1 << 40));
        assert_eq!(s[2], "c");
    }
}
