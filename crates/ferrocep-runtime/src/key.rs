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
//!
//! Partition-tagged keys ([`Key::tagged`]): a kafka source whose state
//! follows its partitions keys each event by (source partition, pattern
//! key). The partition rides in front of the text as three bytes, a tag
//! byte (`0x01`, or `0x02` for a pattern without `key`) and the partition
//! in two 7-bit bytes, so the key stays three words and other sources pay
//! nothing. No JSON text starts with a control byte, so a tagged key is
//! never an untagged one; [`Key::text`] and [`Key::bytes`] (what outputs
//! print) leave the tag out, checkpoints keep it.

use std::hash::{Hash, Hasher};

/// Longest key text stored inline.
pub const INLINE: usize = 22;

/// The largest partition a [`Key::tagged`] key holds (14 bits).
pub const MAX_TAGGED_PARTITION: u16 = (1 << 14) - 1;

/// Tag byte of a partition-tagged key with a text.
const TAG_TEXT: u8 = 0x01;
/// Tag byte of a partition-tagged key of a pattern without `key`.
const TAG_NONE: u8 = 0x02;
/// Bytes of the partition tag.
const TAG_LEN: usize = 3;

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

    /// The key of an event of source partition `partition` (at most
    /// [`MAX_TAGGED_PARTITION`]; higher bits are cut) whose pattern key has
    /// the JSON text `text` (see the module docs).
    pub fn tagged(partition: u16, text: Option<&str>) -> Key {
        let tag = [
            if text.is_some() { TAG_TEXT } else { TAG_NONE },
            ((partition >> 7) & 0x7f) as u8,
            (partition & 0x7f) as u8,
        ];
        let t = text.unwrap_or("");
        let n = TAG_LEN + t.len();
        if n <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..TAG_LEN].copy_from_slice(&tag);
            bytes[TAG_LEN..n].copy_from_slice(t.as_bytes());
            Key::Inline {
                len: n as u8,
                bytes,
            }
        } else {
            let mut s = String::with_capacity(n);
            // The tag bytes are ASCII.
            s.extend(tag.iter().map(|&b| b as char));
            s.push_str(t);
            Key::Heap(s.into_boxed_str())
        }
    }

    /// The source partition of a [`Key::tagged`] key.
    #[inline]
    pub fn source_partition(&self) -> Option<u16> {
        match self.raw()? {
            [TAG_TEXT | TAG_NONE, hi, lo, ..] => Some((u16::from(*hi) << 7) | u16::from(*lo)),
            _ => None,
        }
    }

    /// The whole stored text, a partition tag included.
    #[inline]
    fn raw(&self) -> Option<&[u8]> {
        match self {
            Key::None => None,
            Key::Inline { len, bytes } => Some(&bytes[..*len as usize]),
            Key::Heap(s) => Some(s.as_bytes()),
        }
    }

    /// The JSON text, `None` for [`Key::None`] (and a tagged key of a
    /// pattern without `key`).
    #[inline]
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// The JSON text as bytes, `None` for [`Key::None`] (and a tagged key
    /// of a pattern without `key`).
    #[inline]
    pub fn bytes(&self) -> Option<&[u8]> {
        match self.raw()? {
            [TAG_TEXT, _, _, rest @ ..] => Some(rest),
            [TAG_NONE, ..] => None,
            b => Some(b),
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
        match (self.source_partition(), self.text()) {
            (None, None) => f.write_str("Key::None"),
            (None, Some(t)) => write!(f, "Key({t})"),
            (Some(p), None) => write!(f, "Key(partition {p})"),
            (Some(p), Some(t)) => write!(f, "Key(partition {p}, {t})"),
        }
    }
}

/// A key in checkpoints: its JSON text, or none ([`Key::None`]).
impl ferrocep_core::operator::state::StateCodec for Key {
    fn encode(&self, out: &mut Vec<u8>) {
        // The whole text: a partition tag is part of the key.
        match self.raw() {
            None => out.push(0),
            Some(t) => {
                out.push(1);
                ferrocep_core::operator::state::put_bytes(out, t);
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
    fn tagged_keys_keep_partition_and_print_the_plain_text() {
        use ferrocep_core::operator::state::StateCodec;
        let long = format!("\"{}\"", "y".repeat(40));
        for (p, t) in [
            (0u16, Some("\"o-1\"")),
            (7, None),
            (4095, Some("12")),
            (MAX_TAGGED_PARTITION, Some(long.as_str())),
            (300, Some("\"1234567890123456789\"")), // 21 + 3: boxed
        ] {
            let k = Key::tagged(p, t);
            assert_eq!(k.source_partition(), Some(p), "{p} {t:?}");
            assert_eq!(k.text(), t);
            assert_eq!(k.bytes(), t.map(str::as_bytes));
            let mut b = Vec::new();
            k.encode(&mut b);
            let back = Key::decode(&mut b.as_slice()).unwrap();
            assert_eq!(back, k);
            assert_eq!(back.source_partition(), Some(p));
        }
        // Another partition, or no tag: another key.
        assert_ne!(Key::tagged(1, Some("7")), Key::tagged(2, Some("7")));
        assert_ne!(Key::tagged(1, Some("7")), Key::new("7"));
        assert_ne!(Key::tagged(1, None), Key::None);
        assert_eq!(Key::new("7").source_partition(), None);
        assert_eq!(Key::None.source_partition(), None);
        assert!(matches!(
            Key::tagged(3, Some("\"o-1\"")),
            Key::Inline { .. }
        ));
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
