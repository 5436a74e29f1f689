//! The JSON-lines sink of `ferrocep match`: one line per match, timeout or
//! late event, in the order the engine emits them.
//!
//! ```text
//! {"kind":"match","key":"o-1","events":{"create":[{...}],"pay":[{...}]}}
//! {"kind":"timeout","key":"o-7","timeout_at":1700000600000,"events":{"create":[{...}]}}
//! {"kind":"late","key":"o-9","event":{...}}
//! ```
//!
//! Invariants: events and keys are written as the exact text they had in the
//! input (`100.0` stays `100.0`, key order and spacing are kept), never
//! re-serialised; `key` is omitted when the key is `None` (a spec without
//! `key`). This is the hot path of output, so lines are assembled with direct
//! byte writes into a buffered writer, with no intermediate JSON values.
//!
//! [`OutputSink`] methods cannot fail, so the first write error is kept in the
//! sink ([`JsonLinesSink::take_error`]) and every later write is skipped; the
//! driver checks it after each event. [`VecSink`] writes into a byte buffer
//! that the driver hands to the real output in large blocks (one per worker,
//! so lines of different workers never interleave).
//!
//! When several patterns run over one stream, each line names its pattern
//! right after `kind`: `{"kind":"match","pattern":"big-orders","key":...}`.

use std::io::{self, Write};

use ferrocep_core::output::{MatchRef, OutputSink};
use ferrocep_core::spec::JsonEvent;
use ferrocep_core::time::Timestamp;

use crate::key::Key;
use ferrocep_core::event::print_lone_surrogates;

/// An event that can show the JSON text it was read from.
pub trait RawJson {
    /// The event's JSON text, exactly as it appeared in the input.
    fn raw_json(&self) -> &str;
}

impl RawJson for JsonEvent {
    #[inline]
    fn raw_json(&self) -> &str {
        self.raw()
    }
}

impl RawJson for str {
    #[inline]
    fn raw_json(&self) -> &str {
        self
    }
}

impl RawJson for String {
    #[inline]
    fn raw_json(&self) -> &str {
        self
    }
}

impl RawJson for Box<str> {
    #[inline]
    fn raw_json(&self) -> &str {
        self
    }
}

/// A partition key as text: the key field's JSON text, or `None` for a
/// spec without `key` (one global partition; no `key` in the output).
pub type KeyText = Option<Box<str>>;

/// A key that can show the JSON text it was read as.
pub trait KeyJson {
    /// The key's JSON text; `None` when there is no key (no `key` field in
    /// the output).
    fn key_json(&self) -> Option<&str>;

    /// The same text as bytes (for a key that can give them without checking
    /// them for UTF-8 again).
    #[inline]
    fn key_json_bytes(&self) -> Option<&[u8]> {
        self.key_json().map(str::as_bytes)
    }
}

impl KeyJson for KeyText {
    #[inline]
    fn key_json(&self) -> Option<&str> {
        self.as_deref()
    }
}

impl KeyJson for Key {
    #[inline]
    fn key_json(&self) -> Option<&str> {
        self.text()
    }

    #[inline]
    fn key_json_bytes(&self) -> Option<&[u8]> {
        self.bytes()
    }
}

/// The `,"pattern":"NAME"` member that labels the lines of one pattern when
/// several run together.
pub fn pattern_label(name: &str) -> Box<[u8]> {
    let mut out = b",\"pattern\":".to_vec();
    // Writing into a vector cannot fail.
    let _ = write_json_str(&mut out, name);
    out.into_boxed_slice()
}

/// Writes the contract's JSON lines into `W` (give it a `BufWriter`).
#[derive(Debug)]
pub struct JsonLinesSink<W: Write> {
    out: W,
    error: Option<io::Error>,
    matches: u64,
    timeouts: u64,
    late: u64,
}

impl<W: Write> JsonLinesSink<W> {
    /// A sink writing into `out`.
    pub fn new(out: W) -> Self {
        JsonLinesSink {
            out,
            error: None,
            matches: 0,
            timeouts: 0,
            late: 0,
        }
    }

    /// Whether a write has failed (everything after it was dropped).
    #[inline]
    pub fn has_error(&self) -> bool {
        self.error.is_some()
    }

    /// The first write error, if any, leaving none behind.
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// Number of (matches, timeouts, late events) written so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.matches, self.timeouts, self.late)
    }

    /// Flushes the writer and returns it, or the first error met.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(self.out)
    }

    #[inline]
    fn record(&mut self, r: io::Result<()>) {
        if let Err(e) = r {
            if self.error.is_none() {
                self.error = Some(e);
            }
        }
    }
}

/// Writes `s` as a JSON string literal (quotes and escapes included).
#[inline]
pub fn write_json_str<W: Write + ?Sized>(w: &mut W, s: &str) -> io::Result<()> {
    let bytes = s.as_bytes();
    // Names (stages, patterns) nearly never need an escape: one write.
    if !needs_escape(bytes) {
        w.write_all(b"\"")?;
        w.write_all(bytes)?;
        return w.write_all(b"\"");
    }
    write_json_str_escaped(w, bytes)
}

/// Whether `bytes` needs an escape inside a JSON string.
#[inline(always)]
fn needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

fn write_json_str_escaped<W: Write + ?Sized>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(b"\"")?;
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => {
                w.write_all(&bytes[start..i])?;
                write!(w, "\\u{b:04x}")?;
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        w.write_all(&bytes[start..i])?;
        w.write_all(esc)?;
        start = i + 1;
    }
    w.write_all(&bytes[start..])?;
    w.write_all(b"\"")
}

/// `open` (`{"kind":"KIND"`, one constant) + `label` + `,"key":KEY` (no
/// key for [`Key::None`]).
#[inline]
pub(crate) fn write_head<W: Write, K: KeyJson>(
    w: &mut W,
    open: &[u8],
    label: &[u8],
    key: &K,
) -> io::Result<()> {
    w.write_all(open)?;
    // Empty unless several patterns run together.
    if !label.is_empty() {
        w.write_all(label)?;
    }
    write_key(w, key)
}

/// `,"key":KEY` (nothing for a spec without `key`).
#[inline]
pub(crate) fn write_key<W: Write, K: KeyJson>(w: &mut W, key: &K) -> io::Result<()> {
    if let Some(k) = key.key_json_bytes() {
        w.write_all(b",\"key\":")?;
        // The key's text tells lone surrogates apart; Java prints them as
        // `?`. Only an escape can be one, so only then is the text needed.
        match has_backslash(k).then(|| key.key_json()).flatten() {
            Some(text) => w.write_all(print_lone_surrogates(text).as_bytes())?,
            None => w.write_all(k)?,
        }
    }
    Ok(())
}

/// Whether `bytes` holds a `\`: eight bytes at a time (a key is written
/// with every match and timeout line, and is mostly 8 to 16 bytes long).
#[inline]
fn has_backslash(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let w = <[u8; 8]>::try_from(word).map_or(0, u64::from_le_bytes) ^ (ONES * u64::from(b'\\'));
        // Nonzero exactly when a byte of `w` is zero, a `\` in `word`.
        if w.wrapping_sub(ONES) & !w & HIGHS != 0 {
            return true;
        }
    }
    words.remainder().contains(&b'\\')
}

fn write_events<W: Write, E: RawJson>(w: &mut W, m: &MatchRef<'_, E>) -> io::Result<()> {
    write_events_after(w, m, 0)
}

/// `,"events":{...}` with each event's text from byte `skip` on (the events
/// of `run` carry their source position in front of their text).
pub(crate) fn write_events_after<W: Write, E: RawJson>(
    w: &mut W,
    m: &MatchRef<'_, E>,
    skip: usize,
) -> io::Result<()> {
    w.write_all(b",\"events\":{")?;
    // Stages in order of their first event, each with its events in match
    // order (as `MatchRef::for_each_stage`, without a call per stage).
    let events = m.staged_events();
    for (i, (stage, _)) in events.iter().enumerate() {
        if events[..i].iter().any(|(s, _)| s == stage) {
            continue;
        }
        // The first event's stage is the first written; a later one
        // closes the stage before it.
        let name = m.stage_name(*stage);
        if needs_escape(name.as_bytes()) {
            if i > 0 {
                w.write_all(b"],")?;
            }
            write_json_str(w, name)?;
            w.write_all(b":[")?;
        } else {
            w.write_all(if i > 0 { b"],\"" } else { b"\"" })?;
            w.write_all(name.as_bytes())?;
            w.write_all(b"\":[")?;
        }
        let mut first = true;
        for (_, e) in events[i..].iter().filter(|(s, _)| s == stage) {
            if !first {
                w.write_all(b",")?;
            }
            first = false;
            let raw = e.raw_json().as_bytes();
            w.write_all(raw.get(skip..).unwrap_or_default())?;
        }
    }
    // The last stage's `]` with the object's end.
    w.write_all(if events.is_empty() { b"}" } else { b"]}" })
}

fn write_match<W: Write, K: KeyJson, E: RawJson>(
    w: &mut W,
    label: &[u8],
    key: &K,
    m: &MatchRef<'_, E>,
) -> io::Result<()> {
    write_head(w, b"{\"kind\":\"match\"", label, key)?;
    write_events(w, m)?;
    w.write_all(b"}\n")
}

fn write_timeout<W: Write, K: KeyJson, E: RawJson>(
    w: &mut W,
    label: &[u8],
    key: &K,
    m: &MatchRef<'_, E>,
    timeout_at: i64,
) -> io::Result<()> {
    write_head(w, b"{\"kind\":\"timeout\"", label, key)?;
    w.write_all(b",\"timeout_at\":")?;
    w.write_all(itoa::Buffer::new().format(timeout_at).as_bytes())?;
    write_events(w, m)?;
    w.write_all(b"}\n")
}

fn write_late<W: Write, K: KeyJson, E: RawJson>(
    w: &mut W,
    label: &[u8],
    key: &K,
    e: &E,
) -> io::Result<()> {
    write_head(w, b"{\"kind\":\"late\"", label, key)?;
    w.write_all(b",\"event\":")?;
    w.write_all(e.raw_json().as_bytes())?;
    w.write_all(b"}\n")
}

impl<W: Write, K: KeyJson, E: RawJson> OutputSink<K, E> for JsonLinesSink<W> {
    fn on_match(&mut self, key: &K, m: &MatchRef<'_, E>, _timestamp: Timestamp) {
        if self.error.is_none() {
            self.matches += 1;
            let r = write_match(&mut self.out, b"", key, m);
            self.record(r);
        }
    }

    fn on_timeout(&mut self, key: &K, m: &MatchRef<'_, E>, timeout_at: Timestamp) {
        if self.error.is_none() {
            self.timeouts += 1;
            let r = write_timeout(&mut self.out, b"", key, m, timeout_at.as_millis());
            self.record(r);
        }
    }

    fn on_late(&mut self, key: &K, event: &E, _timestamp: Timestamp) {
        if self.error.is_none() {
            self.late += 1;
            let r = write_late(&mut self.out, b"", key, event);
            self.record(r);
        }
    }
}

/// Where a [`VecSink`] hands its buffer once it holds [`SPILL_AT`] bytes: a
/// block of whole lines for the real output. Write errors are the
/// implementation's to keep.
pub trait Spill {
    /// Takes a block of whole output lines.
    fn spill(&mut self, block: &[u8]);
}

/// A [`VecSink`] hands its buffer on at this size.
pub const SPILL_AT: usize = 1 << 20;

/// Writes the contract's JSON lines into a byte buffer, each line labelled
/// with `label` (empty, or a [`pattern_label`]); a full buffer goes to
/// `spill`, so that memory stays bounded whatever one call of the engine
/// outputs. Writing into memory cannot fail.
pub struct VecSink<'a> {
    /// Where lines go.
    pub out: &'a mut Vec<u8>,
    /// Written after `kind` in every line.
    pub label: &'a [u8],
    /// Where a full buffer goes.
    pub spill: &'a mut dyn Spill,
}

impl VecSink<'_> {
    #[inline]
    fn check(&mut self) {
        if self.out.len() >= SPILL_AT {
            self.spill.spill(self.out);
            self.out.clear();
        }
    }
}

// Writes into a `Vec` cannot fail: their results are dropped.
impl<K: KeyJson, E: RawJson> OutputSink<K, E> for VecSink<'_> {
    #[inline]
    fn on_match(&mut self, key: &K, m: &MatchRef<'_, E>, _timestamp: Timestamp) {
        let _ = write_match(self.out, self.label, key, m);
        self.check();
    }

    #[inline]
    fn on_timeout(&mut self, key: &K, m: &MatchRef<'_, E>, timeout_at: Timestamp) {
        let _ = write_timeout(self.out, self.label, key, m, timeout_at.as_millis());
        self.check();
    }

    #[inline]
    fn on_late(&mut self, key: &K, event: &E, _timestamp: Timestamp) {
        let _ = write_late(self.out, self.label, key, event);
        self.check();
    }
}

/// A [`Spill`] into a writer, keeping the first write error (and dropping
/// everything after it).
pub struct WriterSpill<W> {
    /// The real output.
    pub out: W,
    /// The first write error.
    pub error: Option<io::Error>,
}

impl<W: Write> Spill for WriterSpill<W> {
    fn spill(&mut self, block: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(block) {
                self.error = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn has_backslash_finds_every_position() {
        for len in 0..40 {
            let plain: Vec<u8> = (0..len)
                .map(|i| [b'a', 0x5b, 0x5d, 0xdc, 0x00, b'"'][i % 6])
                .collect();
            assert!(!super::has_backslash(&plain), "len {len}");
            for at in 0..len {
                let mut with = plain.clone();
                with[at] = b'\\';
                assert!(super::has_backslash(&with), "len {len}, at {at}");
            }
        }
    }

    use super::*;
    use std::sync::Arc;

    fn names() -> Vec<Arc<str>> {
        vec![Arc::from("create"), Arc::from("pay")]
    }

    fn sink_text(f: impl FnOnce(&mut JsonLinesSink<Vec<u8>>)) -> String {
        let mut sink = JsonLinesSink::new(Vec::new());
        f(&mut sink);
        String::from_utf8(sink.finish().unwrap()).unwrap()
    }

    #[test]
    fn match_keeps_original_text_and_stage_order() {
        let create = String::from(r#"{"k": "a", "amount": 100.0}"#);
        let pay1 = String::from(r#"{"k":"a","type":"pay","n":1}"#);
        let pay2 = String::from(r#"{"k":"a","type":"pay","n":2}"#);
        let names = names();
        let events = [(0, &create), (1, &pay1), (1, &pay2)];
        let text = sink_text(|s| {
            s.on_match(
                &Some("\"a\"".into()),
                &MatchRef::new(&names, &events),
                Timestamp::from_millis(5),
            );
        });
        assert_eq!(
            text,
            concat!(
                r#"{"kind":"match","key":"a","events":{"create":[{"k": "a", "amount": 100.0}],"#,
                r#""pay":[{"k":"a","type":"pay","n":1},{"k":"a","type":"pay","n":2}]}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn timeout_and_late_without_key() {
        let create = String::from(r#"{"type":"create"}"#);
        let names = names();
        let events = [(0, &create)];
        let text = sink_text(|s| {
            s.on_timeout(
                &None,
                &MatchRef::new(&names, &events),
                Timestamp::from_millis(1_700_000_600_000),
            );
            OutputSink::<KeyText, String>::on_late(s, &None, &create, Timestamp::from_millis(3));
        });
        assert_eq!(
            text,
            concat!(
                r#"{"kind":"timeout","timeout_at":1700000600000,"events":{"create":[{"type":"create"}]}}"#,
                "\n",
                r#"{"kind":"late","event":{"type":"create"}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn numeric_key_is_written_as_is() {
        let e = String::from(r#"{"user":7}"#);
        let text = sink_text(|s| {
            OutputSink::<KeyText, String>::on_late(
                s,
                &Some("7".into()),
                &e,
                Timestamp::from_millis(3),
            );
        });
        assert_eq!(
            text,
            "{\"kind\":\"late\",\"key\":7,\"event\":{\"user\":7}}\n"
        );
    }

    #[test]
    fn vec_sink_spills_whole_lines_when_full() {
        struct Blocks(Vec<Vec<u8>>);
        impl Spill for Blocks {
            fn spill(&mut self, block: &[u8]) {
                self.0.push(block.to_vec());
            }
        }
        let e = "x".repeat(1000);
        let mut blocks = Blocks(Vec::new());
        let mut out = Vec::new();
        let mut sink = VecSink {
            out: &mut out,
            label: b",\"pattern\":\"p\"",
            spill: &mut blocks,
        };
        for _ in 0..3_000 {
            OutputSink::<KeyText, String>::on_late(&mut sink, &None, &e, Timestamp::from_millis(1));
        }
        let line = format!("{{\"kind\":\"late\",\"pattern\":\"p\",\"event\":{e}}}\n");
        let per_block = SPILL_AT.div_ceil(line.len());
        assert_eq!(blocks.0.len(), 3_000 / per_block);
        for b in &blocks.0 {
            assert_eq!(b.len(), per_block * line.len());
            assert!(b.starts_with(line.as_bytes()) && b.ends_with(b"\n"));
        }
        assert_eq!(out.len(), (3_000 % per_block) * line.len());
    }

    #[test]
    fn stage_names_are_escaped() {
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é").unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn write_errors_are_kept_and_later_writes_skipped() {
        struct Failing(u32);
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                self.0 += 1;
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let e = String::from("{}");
        let mut sink = JsonLinesSink::new(Failing(0));
        OutputSink::<KeyText, String>::on_late(&mut sink, &None, &e, Timestamp::from_millis(1));
        OutputSink::<KeyText, String>::on_late(&mut sink, &None, &e, Timestamp::from_millis(2));
        assert!(sink.has_error());
        assert_eq!(sink.out.0, 1);
        assert_eq!(sink.take_error().unwrap().kind(), io::ErrorKind::BrokenPipe);
    }
}
