//! Reading JSON lines in large chunks.
//!
//! [`ChunkReader`] reads the input a few hundred kilobytes at a time and hands
//! out chunks that hold whole lines only (each ends with `\n`, but the last
//! may end without one); [`Lines`] splits a chunk at `\n`, `\r\n` or a lone
//! `\r`, eight bytes at a time, as Java's `readLine` and so the Flink
//! oracle's `JsonLineSource` cut lines (line numbers in reports count them
//! alike).
//! [`decode`] turns a line into text: invalid UTF-8 becomes U+FFFD, and a
//! byte-order mark is dropped from the first line of the input.

use std::borrow::Cow;
use std::io::{self, Read};
use std::ops::Range;

/// How much `ferrocep match` reads at a time ([`ChunkReader::with_chunk_size`]).
pub const CHUNK: usize = 256 * 1024;

/// Reads an input into chunks of whole lines.
pub struct ChunkReader<R> {
    inner: R,
    /// The start of a line that the last read cut.
    carry: Vec<u8>,
    eof: bool,
    size: usize,
}

/// A chunk of lines, filled by [`ChunkReader::next_chunk`] and reused from
/// chunk to chunk. Its bytes past the chunk stay initialized, so that a read
/// does not zero the buffer again first (that was 1 % of a run's
/// instructions).
#[derive(Default)]
pub struct Chunk {
    bytes: Vec<u8>,
    len: usize,
}

impl std::ops::Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Makes `bytes` at least `len` long (zeroing only what is new).
fn at_least(bytes: &mut Vec<u8>, len: usize) {
    if bytes.len() < len {
        bytes.resize(len, 0);
    }
}

impl<R: Read> ChunkReader<R> {
    /// A reader of `inner` reading `size` bytes at a time (at least 1).
    pub fn with_chunk_size(inner: R, size: usize) -> Self {
        ChunkReader {
            inner,
            carry: Vec::new(),
            eof: false,
            size: size.max(1),
        }
    }

    /// Fills `chunk` (emptied first, its buffer reused) with the next lines
    /// of the input, each ending with `\n` but perhaps the very last one.
    /// Returns `false` at the end of the input (then `chunk` is empty). A line
    /// longer than the chunk size grows the chunk until it ends.
    pub fn next_chunk(&mut self, chunk: &mut Chunk) -> io::Result<bool> {
        let bytes = &mut chunk.bytes;
        let carried = self.carry.len();
        at_least(bytes, carried);
        bytes[..carried].copy_from_slice(&self.carry);
        self.carry.clear();
        let mut filled = carried;
        chunk.len = 0;
        loop {
            if self.eof {
                chunk.len = filled;
                return Ok(filled > 0);
            }
            let start = filled;
            at_least(bytes, start + self.size);
            let n = loop {
                match self.inner.read(&mut bytes[start..start + self.size]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            filled = start + n;
            if n == 0 {
                self.eof = true;
                continue;
            }
            if let Some(p) = bytes[start..filled].iter().rposition(|&b| b == b'\n') {
                let end = start + p + 1;
                self.carry.extend_from_slice(&bytes[end..filled]);
                chunk.len = end;
                return Ok(true);
            }
        }
    }
}

/// The lines of a chunk, without their line ends: `\n`, `\r\n` or a lone
/// `\r`, as Java's `BufferedReader.readLine` (and so the Flink oracle) cuts
/// them.
pub struct Lines<'a> {
    chunk: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    /// The lines of `chunk`; a trailing line end does not start another
    /// line. A chunk ends with `\n` (or the input), so a `\r\n` is never
    /// split between two chunks.
    pub fn new(chunk: &'a [u8]) -> Self {
        Lines { chunk, pos: 0 }
    }

    /// Where the next line is in the chunk.
    #[inline]
    fn next_range(&mut self) -> Option<Range<usize>> {
        let rest = &self.chunk[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let start = self.pos;
        match find_line_end(rest) {
            Some(i) => {
                let crlf = rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n');
                self.pos += i + 1 + usize::from(crlf);
                Some(start..start + i)
            }
            None => {
                self.pos = self.chunk.len();
                Some(start..self.chunk.len())
            }
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let chunk = self.chunk;
        self.next_range().map(|r| &chunk[r])
    }
}

/// The lines of a chunk as text, as [`Lines`] then [`decode`] make them. A
/// chunk that is UTF-8 (the common case) is checked once as a whole, which
/// costs a fraction of checking each short line on its own (2.5 % of a run's
/// instructions); its lines are then slices of it, since a line end is an
/// ASCII byte that no multi-byte character contains. Any other chunk is
/// decoded line by line.
pub struct TextLines<'a> {
    lines: Lines<'a>,
    text: Option<&'a str>,
    /// The next line is the input's first (a byte-order mark is dropped).
    first: bool,
}

impl<'a> TextLines<'a> {
    /// The lines of `chunk`; `first` when it starts the input.
    pub fn new(chunk: &'a [u8], first: bool) -> Self {
        TextLines {
            lines: Lines::new(chunk),
            text: std::str::from_utf8(chunk).ok(),
            first,
        }
    }

    /// The whole chunk as text, when it is UTF-8: its lines are then slices
    /// of it.
    pub fn text(&self) -> Option<&'a str> {
        self.text
    }
}

impl<'a> Iterator for TextLines<'a> {
    type Item = Cow<'a, str>;

    #[inline]
    fn next(&mut self) -> Option<Cow<'a, str>> {
        let range = self.lines.next_range()?;
        let first = std::mem::take(&mut self.first);
        Some(match self.text.and_then(|t| t.get(range.clone())) {
            Some(line) if first => Cow::Borrowed(line.strip_prefix('\u{feff}').unwrap_or(line)),
            Some(line) => Cow::Borrowed(line),
            None => decode(&self.lines.chunk[range], first),
        })
    }
}

/// Index of the first `\n` or `\r` in `s`. `memchr2` (SIMD) replaced a
/// hand-written eight-bytes-at-a-time search: 1.7 % fewer instructions for a
/// whole run and no slower (bench/README.md, "Crates against hand-written
/// code").
#[inline]
pub fn find_line_end(s: &[u8]) -> Option<usize> {
    memchr::memchr2(b'\n', b'\r', s)
}

/// The line as text: bytes that are not UTF-8 become U+FFFD (as Java's
/// decoder does), and a byte-order mark is dropped when `first` (line 1).
#[inline]
pub fn decode(line: &[u8], first: bool) -> Cow<'_, str> {
    let mut bytes = line;
    if first {
        if let Some(b) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
            bytes = b;
        }
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(decode_lossy_as_java(bytes)),
    }
}

/// Invalid UTF-8 replaced by U+FFFD as Java's UTF-8 decoder replaces it.
/// That is Rust's lossy decoding (one U+FFFD per maximal invalid subpart)
/// but for an encoded UTF-16 surrogate (`ED A0..BF`): Java takes it, with its
/// third byte when that continues it, as one malformed sequence, where Rust
/// takes each byte on its own. Such bytes turn up where text was encoded
/// from lone surrogates, and the count changes keys and event text.
fn decode_lossy_as_java(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (valid, bad) = bytes.split_at(e.valid_up_to());
                // Valid by the error's own account.
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                out.push('\u{fffd}');
                let continues = |b: Option<&u8>| b.is_some_and(|b| (0x80..=0xbf).contains(b));
                let len = match bad {
                    [0xed, 0xa0..=0xbf, rest @ ..] => 2 + usize::from(continues(rest.first())),
                    _ => match e.error_len() {
                        Some(n) => n,
                        // A sequence cut short by the end of the line.
                        None => return out,
                    },
                };
                bytes = &bad[len..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(input: &[u8], size: usize) -> Vec<Vec<u8>> {
        let mut r = ChunkReader::with_chunk_size(input, size);
        let mut out = Vec::new();
        let mut chunk = Chunk::default();
        while r.next_chunk(&mut chunk).unwrap() {
            out.push(chunk.to_vec());
        }
        out
    }

    #[test]
    fn chunks_hold_whole_lines() {
        let input = b"{\"a\":1}\n{\"b\":22}\n\n{\"c\":333}";
        for size in 1..40 {
            let cs = chunks(input, size);
            assert_eq!(cs.concat(), input, "size {size}");
            for c in &cs[..cs.len() - 1] {
                assert_eq!(c.last(), Some(&b'\n'), "size {size}");
            }
            let lines: Vec<&[u8]> = cs.iter().flat_map(|c| Lines::new(c)).collect();
            assert_eq!(
                lines,
                [&b"{\"a\":1}"[..], b"{\"b\":22}", b"", b"{\"c\":333}"],
                "size {size}"
            );
        }
        assert!(chunks(b"", 4).is_empty());
        let lines: Vec<&[u8]> = Lines::new(b"x\n").collect();
        assert_eq!(lines, [b"x"]);
    }

    #[test]
    fn line_end_search_matches_a_plain_scan() {
        let mut s = vec![b'a'; 40];
        assert_eq!(find_line_end(&s), None);
        for i in 0..40 {
            for end in [b'\n', b'\r'] {
                s[i] = end;
                assert_eq!(find_line_end(&s), Some(i));
                // A later line end does not hide this one.
                s[39] = b'\n' + b'\r' - end;
                assert_eq!(find_line_end(&s), Some(i));
                s[39] = b'a';
            }
            // Bytes one bit or one borrow away from '\n' or '\r' are none.
            s[i] = [0x0b, 0x09, 0x8a, 0x00, 0x01, 0x0c, 0x0f, 0x8d][i % 8];
            assert_eq!(find_line_end(&s), None);
            s[i] = b'a';
        }
    }

    #[test]
    fn lines_end_as_java_read_line_ends_them() {
        let lines: Vec<&[u8]> = Lines::new(b"a\rb\r\nc\n\r\r\nd\r").collect();
        assert_eq!(lines, [&b"a"[..], b"b", b"c", b"", b"", b"d"]);
        let lines: Vec<&[u8]> = Lines::new(b"{\"k\":1,\r\"t\":2}\n").collect();
        assert_eq!(lines, [&b"{\"k\":1,"[..], b"\"t\":2}"]);
    }

    #[test]
    fn decode_drops_bom_on_first_line_only() {
        assert_eq!(decode(b"\xEF\xBB\xBF{}\r", true), "{}\r");
        assert_eq!(decode(b"\xEF\xBB\xBF{}", false), "\u{feff}{}");
        assert_eq!(decode(b"{\"a\":\"\xff\"}", false), "{\"a\":\"\u{fffd}\"}");
    }

    #[test]
    fn invalid_utf8_is_replaced_as_java_replaces_it() {
        let r = |b: &[u8]| decode(b, false).into_owned();
        // Encoded surrogates: one U+FFFD each, whole or cut short.
        assert_eq!(r(b"d\xed\xa0\x80x"), "d\u{fffd}x");
        assert_eq!(r(b"f\xed\xbf\xbf"), "f\u{fffd}");
        assert_eq!(r(b"e\xed\xa0"), "e\u{fffd}");
        assert_eq!(r(b"e\xed\xa0\"x"), "e\u{fffd}\"x");
        // Otherwise as Rust: overlong, beyond U+10FFFF, cut short, stray.
        assert_eq!(r(b"\xc0\xaf"), "\u{fffd}\u{fffd}");
        assert_eq!(r(b"\xe0\x80\x80"), "\u{fffd}\u{fffd}\u{fffd}");
        assert_eq!(r(b"\xf4\x90\x80\x80"), "\u{fffd}".repeat(4));
        assert_eq!(r(b"a\xf0\x9f\x98"), "a\u{fffd}");
        assert_eq!(r(b"\x80\xed\x9f\xbf"), "\u{fffd}\u{d7ff}");
    }

    #[test]
    fn text_lines_are_the_decoded_lines() {
        let chunks: [&[u8]; 8] = [
            b"{\"a\":1}\n{\"b\":\"\xc3\xa9\"}\r\n\n\rx\r\r\ny",
            b"\xEF\xBB\xBF{\"a\":1}\n\xEF\xBB\xBFsecond\n",
            b"\xEF\xBB\xBF",
            b"ok\n{\"a\":\"\xff\"}\nok again\r\n",
            b"\xEF\xBB\xBF\xed\xa0\x80\nz",
            b"\xe2\x82\xac\n\xf0\x9f\x98\x80\r",
            b"",
            b"\n\n",
        ];
        for chunk in chunks {
            for first in [true, false] {
                let text: Vec<Cow<str>> = TextLines::new(chunk, first).collect();
                let lines: Vec<Cow<str>> = Lines::new(chunk)
                    .enumerate()
                    .map(|(i, l)| decode(l, first && i == 0))
                    .collect();
                assert_eq!(text, lines, "{chunk:?}, first {first}");
            }
        }
    }
}
