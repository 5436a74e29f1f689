//! The store's byte layout (format version 1): the names of its tables, how
//! keys sort, and the encoding of the records it keeps. Pure functions, no
//! I/O; `docs/checkpoint-format.md` is the description.

use super::PatternRecord;

/// The format version this build writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The first line of the `FORMAT` file.
pub const FORMAT_MAGIC: &str = "ferrocep checkpoint store";

/// Table of the store's metadata (key: one of the `META_*` names).
pub const TABLE_META: &str = "meta";
/// Table of pattern records (key: pattern name, value: [`encode_pattern`]).
pub const TABLE_PATTERNS: &str = "patterns";
/// Table of sink positions (key: sink name, value: opaque bytes).
pub const TABLE_SINKS: &str = "sinks";
/// Table of key states (key: [`state_key`], value: the key's state blob).
pub const TABLE_KEYS: &str = "keys";

/// `meta`: the format version, u32 LE.
pub const META_FORMAT_VERSION: &str = "format_version";
/// `meta`: the pipeline's name, UTF-8.
pub const META_PIPELINE: &str = "pipeline";
/// `meta`: the last complete checkpoint's id, u64 LE.
pub const META_CHECKPOINT_ID: &str = "checkpoint_id";
/// `meta`: the next pattern id to give out, u32 LE.
pub const META_NEXT_PATTERN_ID: &str = "next_pattern_id";
/// `meta`: the source position, opaque bytes.
pub const META_SOURCE: &str = "source";

/// Bytes before the key itself in a [`state_key`].
pub const STATE_KEY_PREFIX: usize = 6;

/// The text of the `FORMAT` file: the format version, readable before the
/// storage engine is opened (so that a newer format that changed the engine
/// is still recognised).
pub fn format_file_text(version: u32) -> String {
    format!("{FORMAT_MAGIC}\nformat {version}\nengine fjall 3\n")
}

/// Reads the version from a `FORMAT` file's text.
pub fn parse_format_file(text: &str) -> Result<u32, LayoutError> {
    let mut lines = text.lines();
    if lines.next() != Some(FORMAT_MAGIC) {
        return Err(LayoutError::NotFormatFile);
    }
    let line = lines.next().unwrap_or("");
    let v = line
        .strip_prefix("format ")
        .ok_or_else(|| LayoutError::NoFormatLine {
            line: line.to_owned(),
        })?;
    v.trim()
        .parse()
        .map_err(|source| LayoutError::FormatVersion {
            version: v.to_owned(),
            source,
        })
}

/// Why a stored record or the `FORMAT` file cannot be read (the store
/// reports it as corrupt, naming the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The `FORMAT` file does not start with the magic line.
    #[error("its first line is not {FORMAT_MAGIC:?}")]
    NotFormatFile,
    /// The `FORMAT` file's second line is not `format N`.
    #[error("its second line {line:?} is not \"format N\"")]
    NoFormatLine {
        /// The line.
        line: String,
    },
    /// The `FORMAT` file's version is not a number.
    #[error("format version {version:?}: {source}")]
    FormatVersion {
        /// The text after `format `.
        version: String,
        /// Why it is not a number.
        source: std::num::ParseIntError,
    },
    /// A pattern record is shorter than its header or fingerprint say.
    #[error("pattern record {name:?} is {len} bytes, too short")]
    ShortPattern {
        /// The pattern.
        name: String,
        /// The record's length.
        len: usize,
    },
    /// A pattern record's fingerprint is not UTF-8.
    #[error("pattern record {name:?}: fingerprint is not UTF-8: {source}")]
    Fingerprint {
        /// The pattern.
        name: String,
        /// Where the UTF-8 breaks.
        source: std::str::Utf8Error,
    },
    /// A pattern record has pattern id 0 (never given out).
    #[error("pattern record {name:?} has pattern id 0")]
    PatternIdZero {
        /// The pattern.
        name: String,
    },
    /// A meta value has the wrong size.
    #[error("meta {what:?} is {len} bytes, not {expected}")]
    MetaSize {
        /// The meta key.
        what: String,
        /// Its length.
        len: usize,
        /// The length it must have.
        expected: usize,
    },
}

/// The store key of a key state: `pattern id u32 BE | key group u16 BE | key`,
/// so that keys sort by (pattern, key group, key) and a worker's key groups
/// are one range.
pub fn state_key(pattern_id: u32, key_group: u16, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(STATE_KEY_PREFIX + key.len());
    k.extend_from_slice(&pattern_id.to_be_bytes());
    k.extend_from_slice(&key_group.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The first store key of `(pattern_id, key_group)`: the bound of a range
/// scan (`key_group` may be one past the last group).
pub fn state_key_bound(pattern_id: u32, key_group: u32) -> Vec<u8> {
    // Group 65536 is the start of the next pattern id.
    let (id, group) = match u16::try_from(key_group) {
        Ok(g) => (u64::from(pattern_id), g),
        Err(_) => (u64::from(pattern_id) + 1, 0),
    };
    let mut k = Vec::with_capacity(STATE_KEY_PREFIX + 4);
    match u32::try_from(id) {
        Ok(id) => k.extend_from_slice(&id.to_be_bytes()),
        // Past pattern id u32::MAX, which is never given out (the store
        // stops at u32::MAX - 1).
        Err(_) => return vec![0xff; STATE_KEY_PREFIX + 1],
    }
    k.extend_from_slice(&group.to_be_bytes());
    k
}

/// Splits a store key into (pattern id, key group, key).
pub fn split_state_key(k: &[u8]) -> Option<(u32, u16, &[u8])> {
    let id = u32::from_be_bytes(k.get(0..4)?.try_into().ok()?);
    let group = u16::from_be_bytes(k.get(4..6)?.try_into().ok()?);
    Some((id, group, k.get(STATE_KEY_PREFIX..)?))
}

/// A pattern record as stored (the name is the table key):
/// `pattern id u32 LE | version u64 LE | fingerprint length u32 LE |
/// fingerprint (UTF-8) | meta (the rest)`.
pub fn encode_pattern(id: u32, p: &PatternRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + p.fingerprint.len() + p.meta.len());
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&p.version.to_le_bytes());
    v.extend_from_slice(&(p.fingerprint.len() as u32).to_le_bytes());
    v.extend_from_slice(p.fingerprint.as_bytes());
    v.extend_from_slice(&p.meta);
    v
}

/// Reads a stored pattern record: (pattern id, record).
pub fn decode_pattern(name: &str, v: &[u8]) -> Result<(u32, PatternRecord), LayoutError> {
    let short = || LayoutError::ShortPattern {
        name: name.to_owned(),
        len: v.len(),
    };
    let id = u32::from_le_bytes(
        v.get(0..4)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    let version = u64::from_le_bytes(
        v.get(4..12)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    let flen = u32::from_le_bytes(
        v.get(12..16)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    let fend = 16usize
        .checked_add(flen as usize)
        .filter(|&e| e <= v.len())
        .ok_or_else(short)?;
    let fingerprint =
        std::str::from_utf8(&v[16..fend]).map_err(|source| LayoutError::Fingerprint {
            name: name.to_owned(),
            source,
        })?;
    if id == 0 {
        return Err(LayoutError::PatternIdZero {
            name: name.to_owned(),
        });
    }
    Ok((
        id,
        PatternRecord {
            name: name.to_owned(),
            fingerprint: fingerprint.to_owned(),
            version,
            meta: v[fend..].to_vec(),
        },
    ))
}

/// Reads a fixed-size little-endian integer stored in `meta`.
pub fn decode_u64(what: &str, v: &[u8]) -> Result<u64, LayoutError> {
    let b: [u8; 8] = v.try_into().map_err(|_| meta_size(what, v, 8))?;
    Ok(u64::from_le_bytes(b))
}

/// Reads a u32 stored in `meta`.
pub fn decode_u32(what: &str, v: &[u8]) -> Result<u32, LayoutError> {
    let b: [u8; 4] = v.try_into().map_err(|_| meta_size(what, v, 4))?;
    Ok(u32::from_le_bytes(b))
}

fn meta_size(what: &str, v: &[u8], expected: usize) -> LayoutError {
    LayoutError::MetaSize {
        what: what.to_owned(),
        len: v.len(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_sort_by_pattern_group_key() {
        let a = state_key(1, 0, b"zzz");
        let b = state_key(1, 1, b"a");
        let c = state_key(2, 0, b"");
        assert!(a < b && b < c);
        assert!(state_key_bound(1, 1) <= b && b < state_key_bound(1, 2));
        assert!(state_key(1, u16::MAX, b"x") < state_key_bound(1, 65536));
        assert_eq!(state_key_bound(1, 65536), state_key_bound(2, 0));
        assert!(state_key(u32::MAX - 1, u16::MAX, b"\xff") < state_key_bound(u32::MAX - 1, 65536));
        assert_eq!(split_state_key(&b), Some((1, 1, &b"a"[..])));
        assert_eq!(split_state_key(&[0, 0, 0]), None);
    }

    #[test]
    fn pattern_records_round_trip_and_reject_garbage() {
        let p = PatternRecord {
            name: "orders".into(),
            fingerprint: "abc".into(),
            version: 7,
            meta: vec![1, 2, 3],
        };
        let enc = encode_pattern(9, &p);
        assert_eq!(decode_pattern("orders", &enc), Ok((9, p)));
        for cut in 0..enc.len() - 3 {
            assert!(decode_pattern("orders", &enc[..cut]).is_err(), "cut {cut}");
        }
        let mut huge = enc.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_pattern("orders", &huge).is_err());
    }

    #[test]
    fn format_file_round_trips() {
        assert_eq!(parse_format_file(&format_file_text(1)), Ok(1));
        assert_eq!(parse_format_file(&format_file_text(42)), Ok(42));
        assert!(parse_format_file("hello\n").is_err());
        assert!(parse_format_file(&format!("{FORMAT_MAGIC}\nformat x\n")).is_err());
    }
}
