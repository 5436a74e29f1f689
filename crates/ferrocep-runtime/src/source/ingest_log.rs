//! The durable ingest log of the HTTP source: every event a client posted,
//! accepted or rejected, appended and fsynced before the client gets its
//! reply, and read back in order by the thread that feeds the engine.
//!
//! The log owns its directory (`<data_dir>/ingest/`): nothing else writes
//! there. One writer thread does every write; many requests share one
//! `fdatasync` (group commit): the thread takes every append that is
//! waiting, writes them, syncs once, then completes every waiter. An append
//! returns only once its records are durable, and readers see only durable
//! records, so the engine never takes an event that a crash could lose.
//!
//! # Positions
//!
//! The log is one logical stream of records, cut into segment files. A
//! record's [`Position`] is the byte offset of its first byte in that stream
//! (segment headers are not part of it): unique, increasing, and the same
//! after a restart. A segment named by offset `B` holds the stream from `B`:
//! the record at byte `f` of the file (`f >= 16`) is at position
//! `B + f - 16`, and the next segment starts where this one ends.
//!
//! # On-disk format (version 1)
//!
//! ```text
//! <dir>/LOCK                      held (flock) by the process that has the log open
//! <dir>/<B as 20 digits>.seg      segments, by their first position B
//!
//! segment = header record*
//! header  = "FCIL" (4 bytes) | version u8 = 1 | 3 zero bytes | B u64 LE      16 bytes
//! record  = len u32 LE | crc u32 LE | kind u8 | payload (len bytes)           9 + len bytes
//!   crc     = CRC32C (Castagnoli) of kind and payload
//!   kind 1  = accepted event: payload = the event's JSON text
//!   kind 2  = rejected event: payload = reason_len u32 LE | reason (UTF-8) | raw input
//! ```
//!
//! Integers are little-endian. A new segment is started once the current one
//! holds [`DEFAULT_SEGMENT_BYTES`] (a record is never split, so a segment may
//! be larger by one request's records). A segment's header is synced, and
//! the directory too, before any record goes into it.
//!
//! # Crashes
//!
//! Only the last segment is ever written, so only its tail can be torn. On
//! [`IngestLog::open`] the last segment is scanned, and from the first record
//! that is short or whose CRC does not match, the file is cut (with a
//! warning): those bytes were never acknowledged, since a reply waits for
//! the sync. A corrupt record in an older segment is reported by the reader
//! as an error, never skipped. A failed write or sync fails every append of
//! that group; the file is cut back to what was durable, and the log goes
//! on (a full disk may free up). If even that fails, every later append
//! fails until the log is opened again.
//!
//! # Truncation
//!
//! [`IngestLog::truncate_before`] deletes whole segments that end at or
//! before a position (the one a checkpoint has made safe); the last segment
//! is never deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::source::Position;

/// The first bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 4] = *b"FCIL";
/// The format version written in each segment header.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: u64 = 16;
/// Bytes of a record header (length, CRC, kind).
pub const RECORD_HEADER_LEN: u64 = 9;
/// Size at which a new segment is started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Largest payload of one record: far above any body the source accepts, so
/// a larger length field can only be corruption.
pub const MAX_RECORD_PAYLOAD: u32 = 1 << 30;

const KIND_ACCEPTED: u8 = 1;
const KIND_REJECTED: u8 = 2;
const SEGMENT_SUFFIX: &str = ".seg";

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRecord {
    /// An accepted event: its JSON text.
    Accepted(Vec<u8>),
    /// An event the source refused, with why.
    Rejected {
        /// The event's raw input.
        raw: Vec<u8>,
        /// Why it was refused.
        reason: String,
    },
}

impl LogRecord {
    /// Bytes this record takes in the log, header included.
    pub fn encoded_len(&self) -> u64 {
        RECORD_HEADER_LEN + self.payload_len() as u64
    }

    fn payload_len(&self) -> usize {
        match self {
            LogRecord::Accepted(text) => text.len(),
            LogRecord::Rejected { raw, reason } => 4 + reason.len() + raw.len(),
        }
    }

    /// Appends the record's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let len = self.payload_len();
        let len = u32::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_RECORD_PAYLOAD)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("ingest log: a record of {len} bytes is over the limit of {MAX_RECORD_PAYLOAD}"),
                )
            })?;
        let start = out.len();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        match self {
            LogRecord::Accepted(text) => {
                out.push(KIND_ACCEPTED);
                out.extend_from_slice(text);
            }
            LogRecord::Rejected { raw, reason } => {
                out.push(KIND_REJECTED);
                // Fits: the whole payload fits in u32.
                out.extend_from_slice(&(reason.len() as u32).to_le_bytes());
                out.extend_from_slice(reason.as_bytes());
                out.extend_from_slice(raw);
            }
        }
        let crc = crc32c::crc32c(&out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// The record of `kind` and `payload`, or why they are not one.
    fn decode(kind: u8, mut payload: Vec<u8>) -> Result<LogRecord, String> {
        match kind {
            KIND_ACCEPTED => Ok(LogRecord::Accepted(payload)),
            KIND_REJECTED => {
                let Some(head) = payload.get(..4) else {
                    return Err("rejected record shorter than its reason length".into());
                };
                let rlen = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
                let Some(reason) = payload.get(4..4 + rlen) else {
                    return Err(format!(
                        "rejected record's reason length {rlen} is past its end"
                    ));
                };
                let reason = String::from_utf8_lossy(reason).into_owned();
                let raw = payload.split_off(4 + rlen);
                Ok(LogRecord::Rejected { raw, reason })
            }
            k => Err(format!("unknown record kind {k}")),
        }
    }
}

/// How a log is opened.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// Size at which a new segment is started.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// What readers, the writer and truncation share.
struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    /// Signalled when `end` moves or the writer stops.
    grown: Condvar,
    /// Tests make the next N syncs fail.
    #[cfg(test)]
    fail_syncs: std::sync::atomic::AtomicU32,
}

struct State {
    /// First positions of the segments on disk, oldest first (never empty).
    segments: Vec<Position>,
    /// End of the durable records: the position of the next record.
    end: Position,
    /// The writer has stopped (every handle to the log was dropped).
    closed: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain numbers behind: go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn segment_path(&self, base: Position) -> PathBuf {
        segment_path(&self.dir, base)
    }
}

fn segment_path(dir: &Path, base: Position) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| at(dir, "syncing the directory", e))
}

/// `e`, with the file and what was being done.
fn at(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
}

/// An append waiting for the writer.
struct Req {
    records: Vec<LogRecord>,
    done: tokio::sync::oneshot::Sender<io::Result<Range<Position>>>,
}

/// The append-only ingest log (see the module docs). Clones share the log;
/// dropping the last clone completes the appends under way, stops the writer
/// thread and releases the directory (readers may go on reading).
#[derive(Clone)]
pub struct IngestLog {
    shared: Arc<Shared>,
    writer: Arc<WriterHandle>,
}

/// The writer thread, stopped and joined when the last [`IngestLog`] clone
/// is dropped.
struct WriterHandle {
    tx: Option<mpsc::Sender<Req>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Held while the log is open, so that a second process (or pipeline)
    /// cannot write the same log.
    _lock: File,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop once it has flushed.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for IngestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestLog")
            .field("dir", &self.shared.dir)
            .field("end", &self.end())
            .finish()
    }
}

impl IngestLog {
    /// Opens (or creates) the log in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> io::Result<IngestLog> {
        Self::open_with(dir, LogOptions::default())
    }

    /// [`IngestLog::open`] with options.
    pub fn open_with(dir: &Path, opts: LogOptions) -> io::Result<IngestLog> {
        fs::create_dir_all(dir).map_err(|e| at(dir, "creating the ingest log directory", e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| at(&lock_path, "opening", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{}: the ingest log is open in another process (or another pipeline uses this data directory)",
                        dir.display()
                    ),
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(at(&lock_path, "locking", e)),
        }

        let mut segments = list_segments(dir)?;
        if segments.is_empty() {
            create_segment(dir, 0)?;
            segments.push(0);
        }
        // Older segments: sound headers, and each starts where the one
        // before ends (a gap would be lost records).
        for w in segments.windows(2) {
            let path = segment_path(dir, w[0]);
            let len = check_header(&path, w[0])?;
            let ends = w[0] + (len - SEGMENT_HEADER_LEN);
            if ends != w[1] {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: ends at position {ends} but the next segment starts at {}: the ingest log has a gap or an overlap",
                        path.display(),
                        w[1]
                    ),
                ));
            }
        }
        let last = *segments.last().unwrap_or(&0);
        let last_path = segment_path(dir, last);
        let good = recover_last(&last_path, last)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&last_path)
            .map_err(|e| at(&last_path, "opening for append", e))?;

        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                segments,
                end: last + (good - SEGMENT_HEADER_LEN),
                closed: false,
            }),
            grown: Condvar::new(),
            #[cfg(test)]
            fail_syncs: std::sync::atomic::AtomicU32::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let mut writer = Writer {
            shared: shared.clone(),
            path: last_path,
            file,
            base: last,
            len: good,
            durable_len: good,
            segment_bytes: opts.segment_bytes.max(SEGMENT_HEADER_LEN + 1),
            failed: None,
        };
        let thread = std::thread::Builder::new()
            .name("ingest-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| at(dir, "starting the writer thread", e))?;
        Ok(IngestLog {
            shared,
            writer: Arc::new(WriterHandle {
                tx: Some(tx),
                thread: Some(thread),
                _lock: lock,
            }),
        })
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Appends `records` in order; returns their positions (from the first
    /// record's to the end of the last) once they are durable.
    pub async fn append(&self, records: Vec<LogRecord>) -> io::Result<Range<Position>> {
        if records.is_empty() {
            let end = self.end();
            return Ok(end..end);
        }
        let (done, rx) = tokio::sync::oneshot::channel();
        let stopped = || {
            io::Error::other(format!(
                "{}: the ingest log writer has stopped",
                self.shared.dir.display()
            ))
        };
        let tx = self.writer.tx.as_ref().ok_or_else(stopped)?;
        tx.send(Req { records, done }).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// The position after the last durable record.
    pub fn end(&self) -> Position {
        self.shared.state().end
    }

    /// The first position still in the log (older segments were truncated).
    pub fn start(&self) -> Position {
        self.shared.state().segments.first().copied().unwrap_or(0)
    }

    /// Bytes of durable records at or after `consumed`.
    pub fn backlog_bytes(&self, consumed: Position) -> u64 {
        self.end().saturating_sub(consumed)
    }

    /// Deletes every segment that ends at or before `pos` (never the last
    /// one); returns how many were deleted. Called once a checkpoint no
    /// longer needs what is before `pos`.
    pub fn truncate_before(&self, pos: Position) -> io::Result<usize> {
        let mut st = self.shared.state();
        let mut deleted = 0;
        while st.segments.len() > 1 && st.segments[1] <= pos {
            let base = st.segments[0];
            let path = self.shared.segment_path(base);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(at(&path, "deleting a truncated segment", e)),
            }
            st.segments.remove(0);
            deleted += 1;
        }
        drop(st);
        if deleted > 0 {
            sync_dir(&self.shared.dir)?;
        }
        Ok(deleted)
    }

    /// A reader from the first record at or after `from` (a position in the
    /// middle of a record means the next record). Fails if `from` is before
    /// the log's start (truncated) or after its end.
    pub fn reader(&self, from: Position) -> io::Result<LogReader> {
        let st = self.shared.state();
        let start = st.segments.first().copied().unwrap_or(0);
        if from < start || from > st.end {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: position {from} is not in the ingest log, which holds {start}..{}",
                    self.shared.dir.display(),
                    st.end
                ),
            ));
        }
        let base = st
            .segments
            .iter()
            .rev()
            .find(|b| **b <= from)
            .copied()
            .unwrap_or(start);
        drop(st);
        let mut r = LogReader {
            shared: self.shared.clone(),
            pos: base,
            seg: None,
        };
        r.open_segment(base)?;
        // Skip the records before `from`, reading only their headers.
        while r.pos < from {
            let (len, _, _) = r.read_header()?;
            let seg = r
                .seg
                .as_mut()
                .ok_or_else(|| io::Error::other("no segment"))?;
            seg.file
                .seek_relative(i64::from(len))
                .map_err(|e| at(&seg.path, "seeking", e))?;
            r.pos += RECORD_HEADER_LEN + u64::from(len);
            r.switch_if_at_segment_end()?;
        }
        Ok(r)
    }

    /// Makes the next `n` syncs fail (tests of the error paths).
    #[cfg(test)]
    pub(crate) fn fail_next_syncs(&self, n: u32) {
        self.shared
            .fail_syncs
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Every intact record on disk in `dir`, in order, read without opening the
/// log (no lock, no writer, no cut): for inspection and tests, also while
/// a process has the log open. Stops at the first torn or corrupt record of
/// each segment.
pub fn scan(dir: &Path) -> io::Result<Vec<LogEntry>> {
    let mut out = Vec::new();
    for base in list_segments(dir)? {
        let path = segment_path(dir, base);
        let len = check_header(&path, base)?;
        let bytes = fs::read(&path).map_err(|e| at(&path, "reading", e))?;
        let bytes = bytes.get(..len as usize).unwrap_or(&bytes);
        let mut off = SEGMENT_HEADER_LEN as usize;
        while let Some(h) = bytes.get(off..off + RECORD_HEADER_LEN as usize) {
            let mut hb = [0u8; RECORD_HEADER_LEN as usize];
            hb.copy_from_slice(h);
            let (plen, crc, kind) = parse_record_header(&hb);
            let start = off + RECORD_HEADER_LEN as usize;
            let Some(payload) = bytes.get(start..start + plen as usize) else {
                break;
            };
            if record_crc(kind, payload) != crc {
                break;
            }
            let Ok(record) = LogRecord::decode(kind, payload.to_vec()) else {
                break;
            };
            let pos = base + (off as u64 - SEGMENT_HEADER_LEN);
            let next = pos + RECORD_HEADER_LEN + u64::from(plen);
            out.push(LogEntry { pos, next, record });
            off = start + plen as usize;
        }
    }
    Ok(out)
}

/// The segment files in `dir`, by first position.
fn list_segments(dir: &Path) -> io::Result<Vec<Position>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| at(dir, "listing", e))? {
        let entry = entry.map_err(|e| at(dir, "listing", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(base) = stem.parse::<u64>() {
                out.push(base);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn header_bytes(base: Position) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..4].copy_from_slice(&SEGMENT_MAGIC);
    h[4] = FORMAT_VERSION;
    h[8..].copy_from_slice(&base.to_le_bytes());
    h
}

/// Creates the segment starting at `base`, its header synced, and syncs the
/// directory.
fn create_segment(dir: &Path, base: Position) -> io::Result<()> {
    let path = segment_path(dir, base);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| at(&path, "creating a segment", e))?;
    f.write_all(&header_bytes(base))
        .and_then(|()| f.sync_all())
        .map_err(|e| at(&path, "writing the segment header", e))?;
    sync_dir(dir)
}

/// Checks the header of the segment at `path`; returns the file's length.
fn check_header(path: &Path, base: Position) -> io::Result<u64> {
    let mut f = File::open(path).map_err(|e| at(path, "opening", e))?;
    let len = f
        .metadata()
        .map_err(|e| at(path, "reading its size", e))?
        .len();
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    f.read_exact(&mut h)
        .map_err(|e| at(path, "reading the segment header", e))?;
    let bad = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    if h[..4] != SEGMENT_MAGIC {
        return Err(bad("not an ingest log segment (bad magic)".into()));
    }
    if h[4] != FORMAT_VERSION {
        return Err(bad(format!(
            "segment format version {} (this build reads version {FORMAT_VERSION})",
            h[4]
        )));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[8..]);
    let in_header = u64::from_le_bytes(b);
    if in_header != base {
        return Err(bad(format!(
            "header says the segment starts at {in_header}, its name says {base}"
        )));
    }
    Ok(len)
}

/// Scans the last segment and cuts a torn or corrupt tail; returns the
/// length of its good part.
fn recover_last(path: &Path, base: Position) -> io::Result<u64> {
    let len = fs::metadata(path)
        .map_err(|e| at(path, "reading its size", e))?
        .len();
    if len < SEGMENT_HEADER_LEN {
        // Torn while being created: nothing in it was ever acknowledged.
        tracing::warn!(file = %path.display(), len, "ingest log: torn segment header, rewriting it");
        let dir = path.parent().unwrap_or(Path::new("."));
        create_segment(dir, base)?;
        return Ok(SEGMENT_HEADER_LEN);
    }
    check_header(path, base)?;
    let f = File::open(path).map_err(|e| at(path, "opening", e))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    r.seek(SeekFrom::Start(SEGMENT_HEADER_LEN))
        .map_err(|e| at(path, "seeking", e))?;
    let mut good = SEGMENT_HEADER_LEN;
    let mut payload = Vec::new();
    let problem = loop {
        if good == len {
            break None;
        }
        if len - good < RECORD_HEADER_LEN {
            break Some(format!(
                "{} bytes, shorter than a record header",
                len - good
            ));
        }
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        r.read_exact(&mut h).map_err(|e| at(path, "reading", e))?;
        let (plen, crc, kind) = parse_record_header(&h);
        if plen > MAX_RECORD_PAYLOAD {
            break Some(format!("record length {plen} over the limit"));
        }
        if len - good - RECORD_HEADER_LEN < u64::from(plen) {
            break Some(format!("record of {plen} bytes cut short"));
        }
        payload.clear();
        payload.resize(plen as usize, 0);
        r.read_exact(&mut payload)
            .map_err(|e| at(path, "reading", e))?;
        if record_crc(kind, &payload) != crc {
            break Some("CRC mismatch".into());
        }
        if let Err(e) = LogRecord::decode(kind, std::mem::take(&mut payload)) {
            break Some(e);
        }
        good += RECORD_HEADER_LEN + u64::from(plen);
    };
    if let Some(why) = problem {
        tracing::warn!(
            file = %path.display(),
            at_byte = good,
            cut_bytes = len - good,
            reason = %why,
            "ingest log: torn or corrupt tail, cutting it (those records were never acknowledged)"
        );
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| at(path, "opening to cut the tail", e))?;
        f.set_len(good)
            .and_then(|()| f.sync_all())
            .map_err(|e| at(path, "cutting the torn tail", e))?;
    }
    Ok(good)
}

fn parse_record_header(h: &[u8; RECORD_HEADER_LEN as usize]) -> (u32, u32, u8) {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    (len, crc, h[8])
}

fn record_crc(kind: u8, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload)
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    path: PathBuf,
    file: File,
    /// First position of the current segment.
    base: Position,
    /// Bytes written to the current segment (header included).
    len: u64,
    /// Of which durable.
    durable_len: u64,
    segment_bytes: u64,
    /// Set when the log cannot go on (see the module docs).
    failed: Option<String>,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Req>) {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut waiting: Vec<(Req, Range<Position>)> = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut reqs = vec![first];
            reqs.extend(rx.try_iter());
            for req in reqs {
                if let Some(why) = &self.failed {
                    let _ = req.done.send(Err(io::Error::other(format!(
                        "{}: the ingest log failed earlier ({why}); restart to reopen it",
                        self.shared.dir.display()
                    ))));
                    continue;
                }
                // A segment is full: make what is pending durable, then
                // start the next one.
                if self.len + buf.len() as u64 >= self.segment_bytes
                    && self.len + (buf.len() as u64) > SEGMENT_HEADER_LEN
                {
                    self.flush(&mut buf, &mut waiting);
                    if self.failed.is_none() && self.len == self.durable_len {
                        if let Err(e) = self.roll() {
                            self.fail_hard(e.to_string());
                        }
                    }
                    if let Some(why) = &self.failed {
                        let _ = req.done.send(Err(io::Error::other(why.clone())));
                        continue;
                    }
                }
                let start = self.base + (self.len - SEGMENT_HEADER_LEN) + buf.len() as u64;
                let before = buf.len();
                let mut bad = None;
                for rec in &req.records {
                    if let Err(e) = rec.encode(&mut buf) {
                        bad = Some(e);
                        break;
                    }
                }
                if let Some(e) = bad {
                    buf.truncate(before);
                    let _ = req.done.send(Err(e));
                    continue;
                }
                let end = start + (buf.len() - before) as u64;
                waiting.push((req, start..end));
            }
            self.flush(&mut buf, &mut waiting);
        }
        let mut st = self.shared.state();
        st.closed = true;
        drop(st);
        self.shared.grown.notify_all();
    }

    /// Writes `buf` and syncs it, then completes `waiting`.
    fn flush(&mut self, buf: &mut Vec<u8>, waiting: &mut Vec<(Req, Range<Position>)>) {
        if waiting.is_empty() {
            buf.clear();
            return;
        }
        let result = self.write_and_sync(buf);
        buf.clear();
        match result {
            Ok(()) => {
                let end = self.base + (self.len - SEGMENT_HEADER_LEN);
                self.shared.state().end = end;
                self.shared.grown.notify_all();
                for (req, range) in waiting.drain(..) {
                    let _ = req.done.send(Ok(range));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "ingest log: write failed, failing the waiting appends");
                for (req, _) in waiting.drain(..) {
                    let _ = req.done.send(Err(io::Error::new(e.kind(), msg.clone())));
                }
                // Cut back to what is durable so that the next group starts
                // on a sound tail.
                let cut = self
                    .file
                    .set_len(self.durable_len)
                    .and_then(|()| self.file.sync_all());
                match cut {
                    Ok(()) => self.len = self.durable_len,
                    Err(e2) => {
                        self.fail_hard(format!("{msg}; then cutting the tail back failed: {e2}"))
                    }
                }
            }
        }
    }

    fn write_and_sync(&mut self, buf: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        {
            use std::sync::atomic::Ordering;
            let f = &self.shared.fail_syncs;
            if f.load(Ordering::SeqCst) > 0 {
                f.fetch_sub(1, Ordering::SeqCst);
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!("{}: injected sync failure", self.path.display()),
                ));
            }
        }
        self.len += buf.len() as u64;
        self.file
            .write_all(buf)
            .map_err(|e| at(&self.path, "appending", e))?;
        self.file
            .sync_data()
            .map_err(|e| at(&self.path, "syncing", e))?;
        self.durable_len = self.len;
        Ok(())
    }

    fn roll(&mut self) -> io::Result<()> {
        let base = self.base + (self.len - SEGMENT_HEADER_LEN);
        create_segment(&self.shared.dir, base)?;
        let path = self.shared.segment_path(base);
        // Append mode, as at open: after a cut (`set_len`) the next write
        // goes to the new end, not past it.
        self.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| at(&path, "opening for append", e))?;
        self.path = path;
        self.base = base;
        self.len = SEGMENT_HEADER_LEN;
        self.durable_len = SEGMENT_HEADER_LEN;
        self.shared.state().segments.push(base);
        Ok(())
    }

    fn fail_hard(&mut self, why: String) {
        tracing::error!(error = %why, "ingest log: cannot go on; appends fail until it is reopened");
        self.failed = Some(why);
    }
}

/// One record read back, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its position.
    pub pos: Position,
    /// The position after it.
    pub next: Position,
    /// The record.
    pub record: LogRecord,
}

struct OpenSeg {
    base: Position,
    path: PathBuf,
    file: BufReader<File>,
}

/// Reads the log in order from a position, waiting for new records
/// ([`IngestLog::reader`]).
pub struct LogReader {
    shared: Arc<Shared>,
    /// Position of the next record.
    pos: Position,
    seg: Option<OpenSeg>,
}

impl LogReader {
    /// Position of the next record to be read.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// The next record, waiting up to `wait` for one; `None` if none came
    /// (or the log was closed).
    pub fn next(&mut self, wait: Duration) -> io::Result<Option<LogEntry>> {
        if !self.wait_for_data(wait) {
            return Ok(None);
        }
        self.read_one().map(Some)
    }

    /// Up to `max` records: waits up to `wait` for the first, then takes
    /// what is durable without waiting.
    pub fn next_batch(&mut self, max: usize, wait: Duration) -> io::Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        if !self.wait_for_data(wait) {
            return Ok(out);
        }
        let end = self.shared.state().end;
        while out.len() < max && self.pos < end {
            out.push(self.read_one()?);
        }
        Ok(out)
    }

    /// Whether a durable record is at `pos`, waiting up to `wait`.
    fn wait_for_data(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut st = self.shared.state();
        loop {
            if st.end > self.pos {
                return true;
            }
            if st.closed {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .grown
                .wait_timeout(st, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn open_segment(&mut self, base: Position) -> io::Result<()> {
        let path = self.shared.segment_path(base);
        let f = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{}: segment gone (truncated behind a checkpoint?) while reading at position {}",
                        path.display(),
                        self.pos
                    ),
                )
            } else {
                at(&path, "opening", e)
            }
        })?;
        let mut file = BufReader::with_capacity(256 << 10, f);
        file.seek(SeekFrom::Start(SEGMENT_HEADER_LEN))
            .map_err(|e| at(&path, "seeking", e))?;
        self.seg = Some(OpenSeg { base, path, file });
        Ok(())
    }

    /// Moves to the next segment if the reader is at the start of it.
    fn switch_if_at_segment_end(&mut self) -> io::Result<()> {
        let next = {
            let st = self.shared.state();
            st.segments.iter().find(|b| **b > self.seg_base()).copied()
        };
        if next == Some(self.pos) {
            self.open_segment(self.pos)?;
        }
        Ok(())
    }

    fn seg_base(&self) -> Position {
        self.seg.as_ref().map_or(0, |s| s.base)
    }

    fn corrupt(&self, what: String) -> io::Error {
        let path = self.seg.as_ref().map(|s| s.path.display().to_string());
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: corrupt ingest log record at position {}: {what}",
                path.unwrap_or_default(),
                self.pos
            ),
        )
    }

    fn read_header(&mut self) -> io::Result<(u32, u32, u8)> {
        let pos = self.pos;
        let seg = self
            .seg
            .as_mut()
            .ok_or_else(|| io::Error::other("no segment"))?;
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        seg.file.read_exact(&mut h).map_err(|e| {
            at(
                &seg.path,
                &format!("reading the record at position {pos}"),
                e,
            )
        })?;
        let (len, crc, kind) = parse_record_header(&h);
        if len > MAX_RECORD_PAYLOAD {
            return Err(self.corrupt(format!("length {len} over the limit")));
        }
        Ok((len, crc, kind))
    }

    /// Reads the record at `pos`, which is durable.
    fn read_one(&mut self) -> io::Result<LogEntry> {
        self.switch_if_at_segment_end()?;
        let (len, crc, kind) = self.read_header()?;
        let pos = self.pos;
        let seg = self
            .seg
            .as_mut()
            .ok_or_else(|| io::Error::other("no segment"))?;
        let mut payload = vec![0u8; len as usize];
        seg.file.read_exact(&mut payload).map_err(|e| {
            at(
                &seg.path,
                &format!("reading the record at position {pos}"),
                e,
            )
        })?;
        if record_crc(kind, &payload) != crc {
            return Err(self.corrupt("CRC mismatch".into()));
        }
        let record = LogRecord::decode(kind, payload).map_err(|e| self.corrupt(e))?;
        let next = pos + RECORD_HEADER_LEN + u64::from(len);
        self.pos = next;
        Ok(LogEntry { pos, next, record })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn acc(s: &str) -> LogRecord {
        LogRecord::Accepted(s.as_bytes().to_vec())
    }

    fn rej(s: &str, why: &str) -> LogRecord {
        LogRecord::Rejected {
            raw: s.as_bytes().to_vec(),
            reason: why.into(),
        }
    }

    fn read_all(log: &IngestLog, from: Position) -> Vec<LogEntry> {
        let mut r = log.reader(from).expect("reader");
        let mut out = Vec::new();
        while r.position() < log.end() {
            out.extend(r.next_batch(3, Duration::ZERO).expect("read"));
        }
        out
    }

    fn small(dir: &Path, segment_bytes: u64) -> IngestLog {
        IngestLog::open_with(dir, LogOptions { segment_bytes }).expect("open")
    }

    #[test]
    fn appends_read_back_with_stable_positions_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = IngestLog::open(dir.path()).unwrap();
        let r1 = block(log.append(vec![acc("{\"a\":1}"), rej("5", "not a JSON object")])).unwrap();
        assert_eq!(r1.start, 0);
        assert_eq!(r1.end, 9 + 7 + 9 + 4 + 17 + 1);
        let r2 = block(log.append(vec![acc("{\"b\":2}")])).unwrap();
        assert_eq!(r2.start, r1.end);
        let before = read_all(&log, 0);
        assert_eq!(before.len(), 3);
        assert_eq!(before[1].record, rej("5", "not a JSON object"));
        assert_eq!(before[0].next, before[1].pos);
        drop(log);

        let log = IngestLog::open(dir.path()).unwrap();
        assert_eq!(log.end(), r2.end);
        assert_eq!(read_all(&log, 0), before);
        let r3 = block(log.append(vec![acc("{}")])).unwrap();
        assert_eq!(r3.start, r2.end, "appends go on at the old end");
    }

    #[test]
    fn concurrent_appends_get_contiguous_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let log = IngestLog::open(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let mut ranges = rt.block_on(async {
            let tasks: Vec<_> = (0..64)
                .map(|i| {
                    let log = log.clone();
                    tokio::spawn(async move {
                        log.append(vec![acc(&format!("{{\"i\":{i}}}")); 10]).await
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap().unwrap());
            }
            out
        });
        ranges.sort_by_key(|r| r.start);
        for w in ranges.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert_eq!(ranges.last().unwrap().end, log.end());
        assert_eq!(read_all(&log, 0).len(), 640);
    }

    /// The tail of the last segment, cut in the middle of a record, is cut
    /// back to the last whole record on open.
    #[test]
    fn torn_tail_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = IngestLog::open(dir.path()).unwrap();
        block(log.append(vec![acc("{\"a\":1}"), acc("{\"a\":2}")])).unwrap();
        let third = block(log.append(vec![acc("{\"a\":3}")])).unwrap();
        drop(log);
        let seg = segment_path(dir.path(), 0);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(SEGMENT_HEADER_LEN + third.start + 12).unwrap();
        drop(f);

        let log = IngestLog::open(dir.path()).unwrap();
        assert_eq!(log.end(), third.start);
        assert_eq!(
            fs::metadata(&seg).unwrap().len(),
            SEGMENT_HEADER_LEN + third.start
        );
        let got = read_all(&log, 0);
        assert_eq!(got.len(), 2);
        let again = block(log.append(vec![acc("{\"a\":4}")])).unwrap();
        assert_eq!(again.start, third.start);
        assert_eq!(read_all(&log, 0)[2].record, acc("{\"a\":4}"));
    }

    #[test]
    fn corrupt_tail_record_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = IngestLog::open(dir.path()).unwrap();
        let first = block(log.append(vec![acc("{\"a\":1}")])).unwrap();
        block(log.append(vec![acc("{\"a\":2}")])).unwrap();
        drop(log);
        let seg = segment_path(dir.path(), 0);
        let mut bytes = fs::read(&seg).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        fs::write(&seg, &bytes).unwrap();

        let log = IngestLog::open(dir.path()).unwrap();
        assert_eq!(log.end(), first.end);
        assert_eq!(read_all(&log, 0).len(), 1);
    }

    #[test]
    fn zeroed_tail_and_torn_header_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let log = small(dir.path(), 64);
        let a = block(log.append(vec![acc(&"x".repeat(60))])).unwrap();
        // The next append starts a segment; leave it with half a header.
        block(log.append(vec![acc("{}")])).unwrap();
        drop(log);
        let second = segment_path(dir.path(), a.end);
        fs::write(&second, b"FCI").unwrap();
        let log = small(dir.path(), 64);
        assert_eq!(log.end(), a.end);
        drop(log);
        // Zeros past the end (a file extended but not written).
        let f = OpenOptions::new().write(true).open(&second).unwrap();
        f.set_len(SEGMENT_HEADER_LEN + 100).unwrap();
        drop(f);
        let log = small(dir.path(), 64);
        assert_eq!(log.end(), a.end);
        assert_eq!(read_all(&log, 0).len(), 1);
    }

    #[test]
    fn segments_roll_are_read_across_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let log = small(dir.path(), 100);
        let mut ranges = Vec::new();
        for i in 0..10 {
            ranges.push(block(log.append(vec![acc(&format!("{{\"i\":{i:040}}}"))])).unwrap());
        }
        let segs = list_segments(dir.path()).unwrap();
        assert!(segs.len() >= 4, "{segs:?}");
        let all = read_all(&log, 0);
        assert_eq!(all.len(), 10);
        for (e, r) in all.iter().zip(&ranges) {
            assert_eq!(e.pos, r.start);
        }

        // Nothing before position 0 or at a position inside the first
        // segment can go.
        assert_eq!(log.truncate_before(0).unwrap(), 0);
        let cut = ranges[6].start;
        let deleted = log.truncate_before(cut).unwrap();
        assert!(deleted >= 2);
        assert!(log.start() <= cut);
        assert_eq!(read_all(&log, cut)[0].pos, cut);
        assert!(log.reader(0).is_err(), "position 0 was truncated");
        drop(log);

        let log = small(dir.path(), 100);
        assert_eq!(read_all(&log, cut).len(), 4);
        // The last segment is never deleted.
        log.truncate_before(u64::MAX).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
        let next = block(log.append(vec![acc("{}")])).unwrap();
        assert_eq!(next.start, ranges[9].end);
    }

    #[test]
    fn reader_resumes_at_the_next_record_and_waits_for_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let log = IngestLog::open(dir.path()).unwrap();
        let a = block(log.append(vec![acc("{\"a\":1}"), acc("{\"a\":2}")])).unwrap();
        let entries = read_all(&log, 0);
        // From the middle of the first record: the second one.
        let mut r = log.reader(entries[0].pos + 3).unwrap();
        assert_eq!(r.position(), entries[1].pos);
        assert_eq!(r.next(Duration::ZERO).unwrap().unwrap(), entries[1]);
        assert_eq!(r.next(Duration::ZERO).unwrap(), None);
        assert!(log.reader(a.end + 1).is_err(), "past the end");

        let t = std::thread::spawn(move || r.next(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        block(log.append(vec![acc("{\"a\":3}")])).unwrap();
        let got = t.join().unwrap().unwrap().unwrap();
        assert_eq!(got.pos, a.end);
        assert_eq!(got.record, acc("{\"a\":3}"));
    }

    #[test]
    fn a_failed_sync_fails_the_append_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = IngestLog::open(dir.path()).unwrap();
        let a = block(log.append(vec![acc("{\"a\":1}")])).unwrap();
        log.fail_next_syncs(1);
        let err = block(log.append(vec![acc("{\"a\":2}")])).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(
            err.to_string().contains("00000000000000000000.seg"),
            "{err}"
        );
        assert_eq!(log.end(), a.end);
        let b = block(log.append(vec![acc("{\"a\":3}")])).unwrap();
        assert_eq!(b.start, a.end);
        let recs: Vec<_> = read_all(&log, 0).into_iter().map(|e| e.record).collect();
        assert_eq!(recs, vec![acc("{\"a\":1}"), acc("{\"a\":3}")]);
    }

    #[test]
    fn a_second_open_of_the_same_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _log = IngestLog::open(dir.path()).unwrap();
        let err = IngestLog::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("another process"), "{err}");
    }

    #[test]
    fn an_unknown_version_is_an_error_not_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        drop(IngestLog::open(dir.path()).unwrap());
        let seg = segment_path(dir.path(), 0);
        let mut bytes = fs::read(&seg).unwrap();
        bytes[4] = 9;
        fs::write(&seg, &bytes).unwrap();
        let err = IngestLog::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
    }
}
