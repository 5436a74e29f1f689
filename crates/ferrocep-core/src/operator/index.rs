//! The operator's key index: key hash -> key slot, by open addressing with
//! linear probing. Each bucket is one `u64` holding 32 bits of the hash and
//! the slot, so a lookup usually reads one cache line of the index and then
//! the key's own entry, and the line a key lands in is known from its hash
//! alone: the operator can prefetch it for events it will see shortly.
//!
//! Entries are kept in Robin Hood order (along a cluster, no entry is
//! farther from its home bucket than the one after it plus one): a lookup
//! of a key that is not there stops at the first entry nearer its home than
//! the probe has come, instead of at the end of the cluster. Such lookups
//! are most of them when many patterns read one stream (each operator is
//! asked for every key, and holds few). Deletion shifts the following
//! entries of the cluster back (no tombstones), so probe sequences stay
//! short under the constant churn of keys that come and go.

const EMPTY: u64 = 0;
/// The largest load, in eighths, before the table doubles.
const MAX_LOAD_EIGHTHS: usize = 6;

/// Key hashes to slots; the keys themselves live with the caller.
pub(crate) struct KeyIndex {
    buckets: Vec<u64>,
    mask: usize,
    len: usize,
}

/// The 32 bits of a hash the index uses: never zero, so that a bucket with
/// a key is never [`EMPTY`].
#[inline]
fn short(hash: u64) -> u32 {
    // Fx hashes mix only upwards: keys that differ in their last bytes
    // alone (`o-1234` and `o-1235`) differ in the high bits alone, and one
    // more multiply left them in long runs of neighbouring buckets (on
    // sequential order ids at 60 % load, 9 probes an operation and 13
    // entries shifted per removal, against 2.6 and 2.2 now). The two halves
    // of the 128-bit product, folded, mix every bit into every other.
    let p = u128::from(hash) * 0x9e37_79b9_7f4a_7c15;
    (((p as u64) ^ ((p >> 64) as u64)) >> 32) as u32 | 1
}

#[inline]
fn pack(h: u32, slot: u32) -> u64 {
    ((h as u64) << 32) | slot as u64
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            buckets: vec![EMPTY; 16],
            mask: 15,
            len: 0,
        }
    }
}

impl KeyIndex {
    #[inline]
    fn home(&self, h: u32) -> usize {
        h as usize & self.mask
    }

    /// Address of the bucket a key of `hash` starts probing at.
    #[inline]
    pub(crate) fn bucket_ptr(&self, hash: u64) -> *const u64 {
        self.buckets.as_ptr().wrapping_add(self.home(short(hash)))
    }

    /// The first slot whose hash bits match `hash`'s: the key's, most likely
    /// (for prefetching its entry without reading it).
    #[inline]
    pub(crate) fn candidate(&self, hash: u64) -> Option<u32> {
        self.find(hash, |_| true)
    }

    /// How far bucket `i`'s entry `b` is from its home.
    #[inline]
    fn dist(&self, b: u64, i: usize) -> usize {
        i.wrapping_sub(self.home((b >> 32) as u32)) & self.mask
    }

    /// The slot of the key of `hash` for which `is_key(slot)` holds.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let h = short(hash);
        let mut i = self.home(h);
        let mut d = 0;
        loop {
            let b = self.buckets[i];
            // Robin Hood order: an entry nearer its home than `d` means the
            // key would have been placed before it.
            if b == EMPTY || self.dist(b, i) < d {
                return None;
            }
            if (b >> 32) as u32 == h && is_key(b as u32) {
                return Some(b as u32);
            }
            i = (i + 1) & self.mask;
            d += 1;
        }
    }

    /// Adds `slot` for a key of `hash` that is not in the index; `rehash`
    /// gives the hash of the key of a slot when the table grows.
    pub(crate) fn insert(&mut self, hash: u64, slot: u32, rehash: impl Fn(u32) -> u64) {
        if (self.len + 1) * 8 > self.buckets.len() * MAX_LOAD_EIGHTHS {
            self.grow(rehash);
        }
        self.place(pack(short(hash), slot));
        self.len += 1;
    }

    /// Puts `b` in Robin Hood order: it takes the place of the first entry
    /// nearer its home than `b` has come, which moves on in its turn.
    fn place(&mut self, mut b: u64) {
        let mut i = self.home((b >> 32) as u32);
        let mut d = 0;
        loop {
            let here = self.buckets[i];
            if here == EMPTY {
                self.buckets[i] = b;
                return;
            }
            let dh = self.dist(here, i);
            if dh < d {
                self.buckets[i] = b;
                b = here;
                d = dh;
            }
            i = (i + 1) & self.mask;
            d += 1;
        }
    }

    fn grow(&mut self, rehash: impl Fn(u32) -> u64) {
        let bigger = vec![EMPTY; self.buckets.len() * 2];
        let old = std::mem::replace(&mut self.buckets, bigger);
        self.mask = self.buckets.len() - 1;
        for b in old {
            if b != EMPTY {
                let slot = b as u32;
                self.place(pack(short(rehash(slot)), slot));
            }
        }
    }

    /// Removes `slot`, the slot of a key of `hash`.
    pub(crate) fn remove(&mut self, hash: u64, slot: u32) -> bool {
        let h = short(hash);
        let target = pack(h, slot);
        let mut i = self.home(h);
        let mut d = 0;
        loop {
            let b = self.buckets[i];
            if b == EMPTY || self.dist(b, i) < d {
                return false;
            }
            if b == target {
                break;
            }
            i = (i + 1) & self.mask;
            d += 1;
        }
        // Backward shift: each following entry of the cluster that is not
        // at its home moves one bucket back, which keeps the order.
        loop {
            let j = (i + 1) & self.mask;
            let b = self.buckets[j];
            if b == EMPTY || self.dist(b, j) == 0 {
                break;
            }
            self.buckets[i] = b;
            i = j;
        }
        self.buckets[i] = EMPTY;
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// The index agrees with a map under any sequence of inserts and
        /// removes, also when many keys share a hash.
        #[test]
        fn agrees_with_a_map(
            crowded in any::<bool>(),
            ops in proptest::collection::vec((any::<bool>(), 0u64..64), 1..400),
        ) {
            let h = |k: u64| if crowded { k % 3 } else { k.wrapping_mul(0x1_0000_0001) };
            let mut idx = KeyIndex::default();
            let mut model: HashMap<u64, u32> = HashMap::new();
            let mut keys: HashMap<u32, u64> = HashMap::new();
            let mut next_slot = 0u32;
            for (insert, key) in ops {
                let found = idx.find(h(key), |s| keys.get(&s) == Some(&key));
                prop_assert_eq!(found, model.get(&key).copied());
                if insert && found.is_none() {
                    let slot = next_slot;
                    next_slot += 1;
                    keys.insert(slot, key);
                    model.insert(key, slot);
                    idx.insert(h(key), slot, |s| h(keys[&s]));
                } else if !insert {
                    if let Some(slot) = found {
                        prop_assert!(idx.remove(h(key), slot));
                        keys.remove(&slot);
                        model.remove(&key);
                    }
                }
                prop_assert_eq!(idx.len, model.len());
                // Robin Hood order: along a cluster, no entry is farther
                // from its home than the one after it plus one.
                for i in 0..idx.buckets.len() {
                    let j = (i + 1) & idx.mask;
                    let (a, b) = (idx.buckets[i], idx.buckets[j]);
                    if a != EMPTY && b != EMPTY {
                        prop_assert!(idx.dist(b, j) <= idx.dist(a, i) + 1);
                    }
                    if a == EMPTY && b != EMPTY {
                        prop_assert_eq!(idx.dist(b, j), 0);
                    }
                }
            }
            for (&key, &slot) in &model {
                prop_assert_eq!(idx.find(h(key), |s| s == slot), Some(slot));
            }
        }
    }
}
