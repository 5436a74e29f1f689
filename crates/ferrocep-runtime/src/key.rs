//! [`Key`], the partition key of `ferrocep match`: the key field's JSON text
//! (`"o-1"` with its quotes, `7`), stored inline when it is short.
//!
//! Keys are made for every input line and looked up in the operator's key
//! table, so they avoid the heap: a text of up to [`INLINE`] bytes (every
//! usual id) is kept in the value itself and compared and hashed as three
//! machine words; only longer texts are boxed. Equal texts always take the
//! same form, so equality and hashing are those of the text.
//!
//! A key is three words (24 bytes): the inline text leaves one byte for the
//! variant's tag.

use std::hash::{Hash, Hasher};

/// Longest key text stored inline.
pub const INLINE: usize = 22;

/// Longest text hashed as three words (its bytes, zero-padded, and its
/// length): the inline texts and those one byte longer, so that hashes are
/// those of keys before [`INLINE`] went from 23 to 22.
const WORDS: usize = 23;

/// A partition key (see the module docs); [`Key::None`] is the one partition
/// of a spec without `key` (no `key` in the output).
#[derive(Clone, PartialEq, Eq)]
pub enum Key {
    /// No key field: one global partition.
    None,
    /// A text of at most [`INLINE`] bytes, zero-padded.
    Inline {
        /// Length of the text.
        len: u8,
        /// The text, then zeros.
        bytes: [u8; INLINE],
    },
    /// A longer text.
    Heap(Box<str>),
}

impl Key {
    /// The key whose JSON text is `text`.
    #[inline]
    pub fn new(text: &str) -> Key {
        let b = text.as_bytes();
        if b.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..b.len()].copy_from_slice(b);
            Key::Inline {
                len: b.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(text.into())
        }
    }

    /// The key of a line: its text, or [`Key::None`] without a key field.
    #[inline]
    pub fn from_opt(text: Option<&str>) -> Key {
        text.map_or(Key::None, Key::new)
    }

    /// The JSON text, `None` for [`Key::None`].
    #[inline]
    pub fn text(&self) -> Option<&str> {
        match self {
            Key::None => None,
            Key::Inline { len, bytes } => std::str::from_utf8(&bytes[..*len as usize]).ok(),
            Key::Heap(s) => Some(s),
        }
    }

    /// The JSON text as bytes, `None` for [`Key::None`].
    #[inline]
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Key::None => None,
            Key::Inline { len, bytes } => Some(&bytes[..*len as usize]),
            Key::Heap(s) => Some(s.as_bytes()),
        }
    }

    /// A well-mixed 64-bit hash that is independent of the operator's own
    /// key hashing (so that routing keys to workers by it does not leave
    /// part of each worker's key table unused).
    #[inline]
    pub fn route_hash(&self) -> u64 {
        #[inline]
        fn mix(h: u64, w: u64) -> u64 {
            // splitmix64's finaliser over a running sum.
            let mut z = h.wrapping_add(w).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        match self {
            Key::None => 0,
            Key::Inline { len, bytes } => {
                let [a, b, c] = words(*len, bytes);
                mix(mix(mix(0, a), b), c)
            }
            Key::Heap(s) => match short_words(s) {
                Some([a, b, c]) => mix(mix(mix(0, a), b), c),
                None => s.as_bytes().chunks(8).fold(s.len() as u64, |h, c| {
                    let mut w = [0u8; 8];
                    w[..c.len()].copy_from_slice(c);
                    mix(h, u64::from_le_bytes(w))
                }),
            },
        }
    }
}

/// The inline text and its length as three words: the text zero-padded to
/// [`WORDS`] bytes, then the length.
#[inline(always)]
fn words(len: u8, bytes: &[u8; INLINE]) -> [u64; 3] {
    let mut w = [[0u8; 8]; 3];
    w[0].copy_from_slice(&bytes[0..8]);
    w[1].copy_from_slice(&bytes[8..16]);
    w[2][..INLINE - 16].copy_from_slice(&bytes[16..INLINE]);
    w[2][7] = len;
    w.map(u64::from_le_bytes)
}

/// A boxed text of at most [`WORDS`] bytes as three words, as [`words`]
/// makes them.
#[inline]
fn short_words(s: &str) -> Option<[u64; 3]> {
    let b = s.as_bytes();
    (b.len() <= WORDS).then(|| {
        let mut padded = [0u8; 24];
        padded[..b.len()].copy_from_slice(b);
        padded[WORDS] = b.len() as u8;
        let mut w = [[0u8; 8]; 3];
        for (i, chunk) in padded.chunks_exact(8).enumerate() {
            w[i].copy_from_slice(chunk);
        }
        w.map(u64::from_le_bytes)
    })
}

impl Hash for Key {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Key::None => state.write_u8(0),
            Key::Inline { len, bytes } => {
                let [a, b, c] = words(*len, bytes);
                state.write_u64(a);
                state.write_u64(b);
                state.write_u64(c);
            }
            Key::Heap(s) => match short_words(s) {
                Some([a, b, c]) => {
                    state.write_u64(a);
                    state.write_u64(b);
                    state.write_u64(c);
                }
                None => s.hash(state),
            },
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.text() {
            None => f.write_str("Key::None"),
            Some(t) => write!(f, "Key({t})"),
        }
    }
}

/// A key in checkpoints: its JSON text, or none ([`Key::None`]).
impl ferrocep_core::operator::state::StateCodec for Key {
    fn encode(&self, out: &mut Vec<u8>) {
        match self.text() {
            None => out.push(0),
            Some(t) => {
                out.push(1);
                ferrocep_core::operator::state::put_bytes(out, t.as_bytes());
            }
        }
    }

    fn decode(input: &mut &[u8]) -> Result<Self, ferrocep_core::operator::state::StateError> {
        use ferrocep_core::operator::state::{get_str, get_u8, StateError};
        match get_u8(input, "key tag")? {
            0 => Ok(Key::None),
            1 => Ok(Key::new(get_str(input, "key text")?)),
            t => Err(StateError::Invalid {
                what: "key tag",
                detail: format!("{t}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn inline_and_heap_round_trip() {
        for t in [
            "",
            "7",
            "\"o-1\"",
            "\"1234567890123456789\"",
            "\"12345678901234567890\"",
            "\"123456789012345678901\"",
            "\"a much longer key that is boxed\"",
        ] {
            let k = Key::new(t);
            assert_eq!(k.text(), Some(t));
            assert_eq!(k.bytes(), Some(t.as_bytes()));
            assert_eq!(matches!(k, Key::Inline { .. }), t.len() <= INLINE, "{t}");
            assert_eq!(k, Key::new(t));
        }
        assert_eq!(Key::from_opt(None).text(), None);
    }

    #[test]
    fn a_key_is_three_words() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
    }

    /// `route_hash` and `Hash` as they were with 23 inline bytes.
    #[test]
    fn hashes_are_those_of_23_inline_bytes() {
        fn old_words(t: &str) -> [u64; 3] {
            let mut bytes = [0u8; 23];
            bytes[..t.len()].copy_from_slice(t.as_bytes());
            let mut w = [[0u8; 8]; 3];
            w[0].copy_from_slice(&bytes[0..8]);
            w[1].copy_from_slice(&bytes[8..16]);
            w[2][..7].copy_from_slice(&bytes[16..23]);
            w[2][7] = t.len() as u8;
            w.map(u64::from_le_bytes)
        }
        fn hash_of(k: &Key) -> u64 {
            let mut h = std::hash::DefaultHasher::new();
            k.hash(&mut h);
            h.finish()
        }
        fn hash_words([a, b, c]: [u64; 3]) -> u64 {
            let mut h = std::hash::DefaultHasher::new();
            h.write_u64(a);
            h.write_u64(b);
            h.write_u64(c);
            h.finish()
        }
        let mix = |h: u64, w: u64| {
            let mut z = h.wrapping_add(w).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let long = "x".repeat(40);
        for t in [
            "",
            "7",
            "\"1234567890123456789\"",   // 21 bytes
            "\"12345678901234567890\"",  // 22: the longest inline
            "\"123456789012345678901\"", // 23: boxed now
        ] {
            let k = Key::new(t);
            let [a, b, c] = old_words(t);
            assert_eq!(k.route_hash(), mix(mix(mix(0, a), b), c), "{t}");
            assert_eq!(hash_of(&k), hash_words(old_words(t)), "{t}");
        }
        let k = Key::new(&long);
        assert!(matches!(k, Key::Heap(_)));
        let mut h = std::hash::DefaultHasher::new();
        long.as_str().hash(&mut h);
        assert_eq!(hash_of(&k), h.finish());
    }

    #[test]
    fn distinct_texts_are_distinct_keys() {
        // Zero padding and the length word keep "a" and "a\0" apart.
        let texts = ["a", "a\0", "\0a", "", "ab", "ba", "\"x\"", "x"];
        let keys: HashSet<Key> = texts.iter().map(|t| Key::new(t)).collect();
        assert_eq!(keys.len(), texts.len());
        let routes: HashSet<u64> = texts.iter().map(|t| Key::new(t).route_hash()).collect();
        assert_eq!(routes.len(), texts.len());
    }
}
