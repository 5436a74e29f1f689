//! Cutting a byte stream into the records of a [`Batch`], for the file and
//! stdin sources: lines end at `\n`, `\r\n` or a lone `\r` (as
//! [`crate::input::Lines`] cuts them), a byte-order mark at offset 0 is
//! dropped, and lines that are empty or only ASCII whitespace give no record.
//!
//! A line is handed out as soon as its end is read, even when that end is a
//! `\r` at the end of a read (a `\n` read next is then taken as the rest of
//! that line end), so a live source never holds a complete line back.

use std::io::{self, Read};

use super::{Batch, Position};

/// How much is read at a time.
pub(crate) const READ_SIZE: usize = 256 * 1024;

/// The state of cutting one stream into lines; its buffer is reused from
/// read to read.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    /// `buf[..held]` is the start of a line whose end has not been read.
    buf: Vec<u8>,
    held: usize,
    /// Offset in the stream of `buf[0]`.
    held_at: u64,
    /// The last line ended with a `\r` that was the last byte read: a `\n`
    /// read next belongs to that line end.
    skip_lf: bool,
}

impl LineSplitter {
    /// A splitter of a stream read from `offset` on.
    pub(crate) fn new(offset: u64) -> Self {
        LineSplitter {
            buf: Vec::new(),
            held: 0,
            held_at: offset,
            skip_lf: false,
        }
    }

    /// Starts again at `offset` of another stream (nothing held).
    pub(crate) fn reset(&mut self, offset: u64) {
        self.held = 0;
        self.held_at = offset;
        self.skip_lf = false;
    }

    /// Offset of the first byte not yet in a record: where the next line
    /// starts.
    pub(crate) fn line_start(&self) -> u64 {
        self.held_at
    }

    /// Offset up to which the stream has been read.
    pub(crate) fn read_to(&self) -> u64 {
        self.held_at + self.held as u64
    }

    /// Reads once from `r` (up to [`READ_SIZE`]) and appends the lines it
    /// completes to `out`, at `base` plus their offset. Returns the bytes
    /// read (0 at the end of the input).
    pub(crate) fn read_from<R: Read + ?Sized>(
        &mut self,
        r: &mut R,
        base: Position,
        out: &mut Batch,
    ) -> io::Result<usize> {
        let start = self.held;
        if self.buf.len() < start + READ_SIZE {
            self.buf.resize(start + READ_SIZE, 0);
        }
        let n = loop {
            match r.read(&mut self.buf[start..start + READ_SIZE]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n > 0 {
            self.split(start + n, base, out);
        }
        Ok(n)
    }

    /// Appends the line held (its end never came: the input is over) to
    /// `out`.
    pub(crate) fn finish(&mut self, base: Position, out: &mut Batch) {
        if self.held > 0 {
            emit(&self.buf[..self.held], self.held_at, base, out);
            self.held_at += self.held as u64;
            self.held = 0;
        }
    }

    /// Cuts `buf[..filled]` (new bytes after the held ones).
    fn split(&mut self, filled: usize, base: Position, out: &mut Batch) {
        let buf = &self.buf[..filled];
        // Start of the current line, and where to look for its end (the held
        // bytes have none).
        let mut line = 0;
        let mut scan = self.held;
        if std::mem::take(&mut self.skip_lf) && buf[0] == b'\n' {
            // `skip_lf` is set only when nothing is held, so the new bytes
            // start at 0.
            line = 1;
            scan = 1;
        }
        while let Some(j) = memchr::memchr2(b'\n', b'\r', &buf[scan..]) {
            let end = scan + j;
            let mut next = end + 1;
            if buf[end] == b'\r' {
                match buf.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            emit(&buf[line..end], self.held_at + line as u64, base, out);
            line = next;
            scan = next;
        }
        self.buf.copy_within(line..filled, 0);
        self.held = filled - line;
        self.held_at += line as u64;
    }
}

/// Appends `line`, found at `offset` of the stream, unless it is blank.
fn emit(line: &[u8], offset: u64, base: Position, out: &mut Batch) {
    let line = match offset {
        0 => line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line),
        _ => line,
    };
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    out.push(base + offset, line);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader handing out its parts one read at a time.
    struct Parts(Vec<Vec<u8>>);

    impl Read for Parts {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let part = self.0.remove(0);
            buf[..part.len()].copy_from_slice(&part);
            Ok(part.len())
        }
    }

    fn cut(parts: &[&[u8]]) -> Vec<(Position, String)> {
        let mut r = Parts(parts.iter().map(|p| p.to_vec()).collect());
        let mut s = LineSplitter::new(0);
        let mut b = Batch::default();
        while s.read_from(&mut r, 100, &mut b).expect("read") > 0 {}
        s.finish(100, &mut b);
        b.records
            .iter()
            .map(|r| (r.pos, String::from_utf8_lossy(b.bytes(r)).into_owned()))
            .collect()
    }

    fn owned(v: &[(Position, &str)]) -> Vec<(Position, String)> {
        v.iter().map(|(p, s)| (*p, s.to_string())).collect()
    }

    #[test]
    fn line_ends_bom_and_blank_lines() {
        let want = owned(&[(100, "a"), (106, "b"), (108, "c"), (113, " d"), (119, "e")]);
        let input: &[u8] = b"\xEF\xBB\xBFa\r\nb\rc\n \t\n d\n\r\r\ne";
        assert_eq!(cut(&[input]), want);
        // Cut at every byte: the same records.
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(cut(&bytes), want);
        // A BOM later in the input is kept.
        assert_eq!(
            cut(&[b"x\n\xEF\xBB\xBFy"]),
            owned(&[(100, "x"), (102, "\u{feff}y")])
        );
    }

    #[test]
    fn a_line_is_out_as_soon_as_its_end_is_read() {
        let mut r = Parts(vec![b"one\r".to_vec(), b"\ntwo".to_vec()]);
        let mut s = LineSplitter::new(0);
        let mut b = Batch::default();
        s.read_from(&mut r, 0, &mut b).expect("read");
        assert_eq!(b.len(), 1);
        assert_eq!(s.line_start(), 4);
        s.read_from(&mut r, 0, &mut b).expect("read");
        assert_eq!(b.len(), 1, "a line without its end is held");
        assert_eq!((s.line_start(), s.read_to()), (5, 8));
        s.finish(0, &mut b);
        assert_eq!(b.records[1].pos, 5);
        assert_eq!(b.bytes(&b.records[1]), b"two");
    }

    #[test]
    fn a_line_longer_than_a_read() {
        let long = vec![b'x'; READ_SIZE * 2 + 7];
        let mut input = long.clone();
        input.extend_from_slice(b"\ny\n");
        let got = cut(&[
            &input[..READ_SIZE],
            &input[READ_SIZE..2 * READ_SIZE],
            &input[2 * READ_SIZE..],
        ]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1.len(), long.len());
        assert_eq!(got[1], (100 + long.len() as u64 + 1, "y".to_string()));
    }
}
