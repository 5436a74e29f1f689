//! Reading JSON lines in large chunks.
//!
//! [`ChunkReader`] reads the input a few hundred kilobytes at a time and hands
//! out chunks that hold whole lines only (the last chunk may end without a
//! newline); [`Lines`] splits a chunk at `\n` eight bytes at a time. Lines are
//! cut as Java's `readLine` and the Flink oracle's `JsonLineSource` cut them
//! once trimmed: a `\r` before the `\n` is white space that the trim drops.
//! [`decode`] turns a line into text: invalid UTF-8 becomes U+FFFD, and a
//! byte-order mark is dropped from the first line of the input.

use std::borrow::Cow;
use std::io::{self, Read};

/// How much [`ChunkReader`] reads at a time.
pub const CHUNK: usize = 256 * 1024;

/// Reads an input into chunks of whole lines.
pub struct ChunkReader<R> {
    inner: R,
    /// The start of a line that the last read cut.
    carry: Vec<u8>,
    eof: bool,
    size: usize,
}

impl<R: Read> ChunkReader<R> {
    /// A reader of `inner` reading [`CHUNK`] bytes at a time.
    pub fn new(inner: R) -> Self {
        Self::with_chunk_size(inner, CHUNK)
    }

    /// A reader of `inner` reading `size` bytes at a time (at least 1).
    pub fn with_chunk_size(inner: R, size: usize) -> Self {
        ChunkReader {
            inner,
            carry: Vec::new(),
            eof: false,
            size: size.max(1),
        }
    }

    /// Fills `buf` (emptied first, its capacity reused) with the next lines
    /// of the input, each ending with `\n` but perhaps the very last one.
    /// Returns `false` at the end of the input (then `buf` is empty). A line
    /// longer than the chunk size grows the chunk until it ends.
    pub fn next_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        buf.clear();
        buf.append(&mut self.carry);
        loop {
            if self.eof {
                return Ok(!buf.is_empty());
            }
            let start = buf.len();
            buf.resize(start + self.size, 0);
            let n = loop {
                match self.inner.read(&mut buf[start..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        buf.truncate(start);
                        return Err(e);
                    }
                }
            };
            buf.truncate(start + n);
            if n == 0 {
                self.eof = true;
                continue;
            }
            if let Some(p) = buf[start..].iter().rposition(|&b| b == b'\n') {
                let end = start + p + 1;
                self.carry.extend_from_slice(&buf[end..]);
                buf.truncate(end);
                return Ok(true);
            }
        }
    }
}

/// The lines of a chunk, without their `\n`.
pub struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    /// The lines of `chunk`; a trailing `\n` does not start another line.
    pub fn new(chunk: &'a [u8]) -> Self {
        Lines { rest: chunk }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        match find_newline(self.rest) {
            Some(i) => {
                let line = &self.rest[..i];
                self.rest = &self.rest[i + 1..];
                Some(line)
            }
            None => Some(std::mem::take(&mut self.rest)),
        }
    }
}

/// Index of the first `\n` in `s`, eight bytes at a time.
#[inline]
pub fn find_newline(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut i = 0;
    while let Some(chunk) = s.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w) ^ NL;
        // The lowest byte that is zero sets its high bit here (bytes above it
        // may be flagged falsely; they do not matter).
        let t = x.wrapping_sub(LO) & !x & HI;
        if t != 0 {
            return Some(i + (t.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..].iter().position(|&b| b == b'\n').map(|p| i + p)
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
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(input: &[u8], size: usize) -> Vec<Vec<u8>> {
        let mut r = ChunkReader::with_chunk_size(input, size);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while r.next_chunk(&mut buf).unwrap() {
            out.push(buf.clone());
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
    fn newline_search_matches_a_plain_scan() {
        let mut s = vec![b'a'; 40];
        assert_eq!(find_newline(&s), None);
        for i in 0..40 {
            s[i] = b'\n';
            assert_eq!(find_newline(&s), Some(i));
            // Bytes one bit or one borrow away from '\n' are no newline.
            s[i] = [0x0b, 0x09, 0x8a, 0x00, 0x01][i % 5];
            assert_eq!(find_newline(&s), None);
            s[i] = b'a';
        }
    }

    #[test]
    fn decode_drops_bom_on_first_line_only() {
        assert_eq!(decode(b"\xEF\xBB\xBF{}\r", true), "{}\r");
        assert_eq!(decode(b"\xEF\xBB\xBF{}", false), "\u{feff}{}");
        assert_eq!(decode(b"{\"a\":\"\xff\"}", false), "{\"a\":\"\u{fffd}\"}");
    }
}
