//! The `file` source: a JSON-lines file replayed to its end, or followed
//! like `tail -F` (read from its start, then what is appended, across
//! rotation by rename and truncation).
//!
//! An event's position is `base` plus the byte offset of its line in the
//! file. `base` is 0 for the first file and grows by the length of the file
//! left behind at each rotation or truncation, so positions stay unique and
//! increasing across files. [`FilePosition`] (file identity, offset, base),
//! shared through a [`FileProgress`], is what a checkpoint keeps; with it
//! and [`SourceCtx::resume_from`] the source starts again where it was.
//!
//! Following polls: at the end of the file it looks at the path every
//! [`POLL`], so it notices a stop within that time.

use std::fs::{File, Metadata};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use super::lines::{LineSplitter, READ_SIZE};
use super::{
    events_in, fail, Batch, Position, Source, SourceCtx, SourceError, SourceErrorKind, SourceMsg,
};

/// How long a follower waits at the end of the file before it looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// Where a file source is: the file it reads (device and inode) and the
/// offset in it of the next line, with the `base` added to offsets to make
/// positions (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilePosition {
    /// Device of the file (0 where the platform has none).
    pub dev: u64,
    /// Inode of the file (0 where the platform has none).
    pub ino: u64,
    /// Byte offset in the file of the next line to read.
    pub offset: u64,
    /// Added to the file's offsets to make positions.
    pub base: u64,
}

impl FilePosition {
    /// The position the next event will have.
    pub fn position(&self) -> Position {
        self.base + self.offset
    }
}

/// The [`FilePosition`] of a running file source, updated after each batch
/// it sends; clones share it.
#[derive(Clone, Debug, Default)]
pub struct FileProgress(Arc<Mutex<FilePosition>>);

impl FileProgress {
    /// The position now.
    pub fn get(&self) -> FilePosition {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, at: FilePosition) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
}

/// Reads a file (see the module docs).
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    follow: bool,
    resume: Option<FilePosition>,
    progress: FileProgress,
}

impl FileSource {
    /// A source reading `path` to its end, or following it when `follow`.
    pub fn new(path: PathBuf, follow: bool) -> FileSource {
        FileSource {
            path,
            follow,
            resume: None,
            progress: FileProgress::default(),
        }
    }

    /// Resumes from a checkpoint that kept `at`: when the file is still the
    /// one of `at`, reading starts at [`SourceCtx::resume_from`] (a position)
    /// less `at.base`. A file that is another one now is read from its
    /// start, with positions from `resume_from` on. Without this, a
    /// `resume_from` above 0 is taken as an offset in the file as it is.
    pub fn resume(mut self, at: FilePosition) -> FileSource {
        self.resume = Some(at);
        self
    }

    /// A handle on where the source is, to read while it runs.
    pub fn progress(&self) -> FileProgress {
        self.progress.clone()
    }
}

/// Device and inode of a file.
fn identity(m: &Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        (0, 0)
    }
}

/// Where to start in a file of identity `id` and length `len`: (offset,
/// base).
fn start_at(
    resume_from: Position,
    resume: Option<FilePosition>,
    id: (u64, u64),
    len: u64,
    path: &Path,
) -> (u64, u64) {
    if resume_from == 0 {
        return (0, 0);
    }
    let shown = path.display();
    match resume {
        Some(at) if (at.dev, at.ino) == id => {
            if resume_from >= at.base && resume_from - at.base <= len {
                (resume_from - at.base, at.base)
            } else if resume_from < at.base {
                tracing::warn!(
                    "file source: '{shown}' was rotated after the checkpoint at position {resume_from}: \
                     events of the file before it that were not taken into state are not read again"
                );
                (0, at.base)
            } else {
                tracing::warn!(
                    "file source: '{shown}' is shorter ({len} bytes) than at the checkpoint \
                     (position {resume_from}, base {}): reading it from its start",
                    at.base
                );
                (0, resume_from)
            }
        }
        Some(_) => {
            tracing::warn!(
                "file source: '{shown}' is another file than at the checkpoint: reading it from its start"
            );
            (0, resume_from)
        }
        None if resume_from <= len => (resume_from, 0),
        None => {
            tracing::warn!(
                "file source: '{shown}' is shorter ({len} bytes) than the checkpoint's position \
                 {resume_from}: reading it from its start"
            );
            (0, resume_from)
        }
    }
}

/// What the path names now, against the file being read.
enum PathState {
    /// The same file, this long.
    Same(u64),
    /// Another file (a rotation).
    Other,
    /// Nothing.
    Missing,
}

/// A file being read.
struct Reader<'a> {
    ctx: &'a SourceCtx,
    path: &'a Path,
    progress: &'a FileProgress,
    counter: Counter,
    file: File,
    id: (u64, u64),
    base: u64,
    lines: LineSplitter,
}

/// How a step of reading went.
enum Step {
    /// Read this many bytes (0: at the end of the file).
    Read(usize),
    /// The pipeline is stopping: return.
    Stop,
}

impl Reader<'_> {
    /// Reads once and sends the lines completed.
    fn read(&mut self) -> Result<Step, String> {
        let mut batch = Batch::with_capacity(READ_SIZE);
        let n = self
            .lines
            .read_from(&mut self.file, self.base, &mut batch)
            .map_err(|e| format!("file source: cannot read '{}': {e}", self.path.display()))?;
        if !self.send(batch) {
            return Ok(Step::Stop);
        }
        Ok(Step::Read(n))
    }

    /// Sends the line held as the file's last, its end never came.
    fn finish(&mut self) -> bool {
        let mut batch = Batch::default();
        self.lines.finish(self.base, &mut batch);
        self.send(batch)
    }

    /// Sends `batch` unless it is empty; `false` when the pipeline stops.
    fn send(&mut self, mut batch: Batch) -> bool {
        let at = FilePosition {
            dev: self.id.0,
            ino: self.id.1,
            offset: self.lines.line_start(),
            base: self.base,
        };
        if !batch.is_empty() {
            batch.resume = Some(super::Resume {
                position: at.position(),
                file: Some(at),
                t0: None,
                kafka: None,
            });
            // Counted as handed over: a reader of the queue sees the count.
            self.counter.inc_by(batch.len() as u64);
            if !self.ctx.out.send(SourceMsg::Batch(batch)) {
                return false;
            }
        }
        self.progress.set(at);
        true
    }

    /// What the path names now.
    fn look(&self) -> Result<PathState, String> {
        match std::fs::metadata(self.path) {
            Ok(m) if identity(&m) == self.id => Ok(PathState::Same(m.len())),
            Ok(_) => Ok(PathState::Other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PathState::Missing),
            Err(e) => Err(format!(
                "file source: cannot look at '{}': {e}",
                self.path.display()
            )),
        }
    }

    /// Starts again at offset 0 of a file after the one read so far: its
    /// last line goes out as it is, and `base` grows by its length. `false`
    /// when the pipeline stops.
    fn restart(&mut self) -> bool {
        if !self.finish() {
            return false;
        }
        self.base += self.lines.read_to();
        self.lines.reset(0);
        true
    }
}

/// Opens `path`, waiting for it to appear when `wait`. `Ok(None)`: the
/// pipeline stopped first.
fn open(ctx: &SourceCtx, path: &Path, wait: bool) -> Result<Option<(File, Metadata)>, String> {
    let mut logged = false;
    loop {
        match File::open(path).and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok(fm) => return Ok(Some(fm)),
            Err(e) if wait && e.kind() == io::ErrorKind::NotFound => {
                if !logged {
                    tracing::info!("file source: waiting for '{}' to appear", path.display());
                    logged = true;
                }
                if ctx.out.stop().is_raised() {
                    return Ok(None);
                }
                std::thread::sleep(POLL);
            }
            Err(e) => {
                return Err(format!(
                    "file source: cannot open '{}': {e}",
                    path.display()
                ))
            }
        }
    }
}

impl FileSource {
    fn read_all(&self, ctx: &SourceCtx) -> Result<(), String> {
        let Some((mut file, meta)) = open(ctx, &self.path, self.follow)? else {
            return Ok(());
        };
        let id = identity(&meta);
        let (offset, base) = start_at(ctx.resume_from, self.resume, id, meta.len(), &self.path);
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).map_err(|e| {
                format!("file source: cannot seek in '{}': {e}", self.path.display())
            })?;
        }
        let mut r = Reader {
            ctx,
            path: &self.path,
            progress: &self.progress,
            counter: events_in(&ctx.metrics, "file"),
            file,
            id,
            base,
            lines: LineSplitter::new(offset),
        };
        let stop = ctx.out.stop();
        let mut missing_logged = false;
        loop {
            if stop.is_raised() {
                return Ok(());
            }
            match r.read()? {
                Step::Stop => return Ok(()),
                Step::Read(n) if n > 0 => continue,
                Step::Read(_) => {}
            }
            if !self.follow {
                if r.finish() {
                    ctx.out.send(SourceMsg::End);
                }
                return Ok(());
            }
            match r.look()? {
                PathState::Same(len) if len < r.lines.read_to() => {
                    tracing::info!(
                        "file source: '{}' was truncated: reading it again from its start",
                        self.path.display()
                    );
                    if !r.restart() {
                        return Ok(());
                    }
                    r.file.seek(SeekFrom::Start(0)).map_err(|e| {
                        format!("file source: cannot seek in '{}': {e}", self.path.display())
                    })?;
                }
                PathState::Same(_) => std::thread::sleep(POLL),
                PathState::Other => {
                    // Another file has the name: what was written to the old
                    // one before the rename is read first.
                    loop {
                        match r.read()? {
                            Step::Stop => return Ok(()),
                            Step::Read(0) => break,
                            Step::Read(_) => {}
                        }
                    }
                    match File::open(&self.path).and_then(|f| f.metadata().map(|m| (f, m))) {
                        Ok((file, meta)) => {
                            tracing::info!(
                                "file source: '{}' was rotated: reading the new file",
                                self.path.display()
                            );
                            missing_logged = false;
                            if !r.restart() {
                                return Ok(());
                            }
                            r.file = file;
                            r.id = identity(&meta);
                        }
                        // Gone again between the look and the open: look
                        // again later.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => std::thread::sleep(POLL),
                        Err(e) => {
                            return Err(format!(
                                "file source: cannot open '{}': {e}",
                                self.path.display()
                            ))
                        }
                    }
                }
                PathState::Missing => {
                    if !missing_logged {
                        tracing::info!(
                            "file source: '{}' is gone: waiting for a new file of that name",
                            self.path.display()
                        );
                        missing_logged = true;
                    }
                    std::thread::sleep(POLL);
                }
            }
        }
    }
}

impl Source for FileSource {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn run(self: Box<Self>, ctx: SourceCtx) -> Result<(), SourceError> {
        match self.read_all(&ctx) {
            Ok(()) => Ok(()),
            Err(msg) => fail(&ctx.out, SourceErrorKind::Input, msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::mpsc::Receiver;
    use std::thread::JoinHandle;
    use std::time::Instant;

    use super::*;
    use crate::clock::SystemClock;
    use crate::source::testing::{collect_until, test_ctx, TestCtx};

    const LONG: Duration = Duration::from_secs(10);

    fn start(src: FileSource, t: &TestCtx) -> JoinHandle<Result<(), SourceError>> {
        let ctx = t.ctx.clone();
        std::thread::spawn(move || Box::new(src).run(ctx))
    }

    fn owned(v: &[(Position, &str)]) -> Vec<(Position, String)> {
        v.iter().map(|(p, s)| (*p, s.to_string())).collect()
    }

    /// Records until `n` of them have come.
    fn take(rx: &Receiver<SourceMsg>, n: usize) -> Vec<(Position, String)> {
        let (got, last) = collect_until(rx, LONG, |r| r.len() >= n);
        assert!(last.is_none(), "{last:?}");
        assert_eq!(got.len(), n, "{got:?}");
        got
    }

    fn append(path: &Path, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .expect("open for append");
        f.write_all(bytes).expect("append");
    }

    fn stop_and_join(t: &TestCtx, h: JoinHandle<Result<(), SourceError>>) {
        t.stop.raise();
        assert_eq!(h.join().expect("source thread"), Ok(()));
    }

    #[test]
    fn replay_gives_each_line_at_its_offset_then_ends() {
        let t = test_ctx(Arc::new(SystemClock), 0);
        let path = t.dir.path().join("in.jsonl");
        std::fs::write(
            &path,
            b"\xEF\xBB\xBF{\"a\":1}\r\n\n  \r{\"b\":2}\r{\"c\":3}\n{\"d\":4}",
        )
        .expect("write");
        let h = start(FileSource::new(path, false), &t);
        let (got, last) = collect_until(&t.rx, LONG, |_| false);
        assert!(matches!(last, Some(SourceMsg::End)), "{last:?}");
        assert_eq!(
            got,
            owned(&[
                (0, "{\"a\":1}"),
                (16, "{\"b\":2}"),
                (24, "{\"c\":3}"),
                (32, "{\"d\":4}")
            ])
        );
        assert_eq!(h.join().expect("thread"), Ok(()));
        assert!(t
            .metrics
            .encode()
            .contains("ferrocep_events_in_total{source=\"file\"} 4"));
    }

    #[test]
    fn a_large_file_comes_in_large_batches_with_every_line() {
        let t = test_ctx(Arc::new(SystemClock), 0);
        let path = t.dir.path().join("big.jsonl");
        let mut text = Vec::new();
        let mut want = Vec::new();
        for i in 0..50_000 {
            want.push(text.len() as u64);
            writeln!(text, "{{\"i\":{i}}}").expect("write");
        }
        std::fs::write(&path, &text).expect("write");
        let h = start(FileSource::new(path, false), &t);
        let mut positions = Vec::new();
        let mut batches = 0;
        loop {
            match t.rx.recv_timeout(LONG).expect("message") {
                SourceMsg::Batch(b) => {
                    batches += 1;
                    positions.extend(b.records.iter().map(|r| r.pos));
                }
                SourceMsg::End => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(positions, want);
        assert!(batches <= text.len() / READ_SIZE + 2, "{batches} batches");
        assert_eq!(h.join().expect("thread"), Ok(()));
    }

    #[test]
    fn a_missing_file_fails_naming_it() {
        let t = test_ctx(Arc::new(SystemClock), 0);
        let path = t.dir.path().join("nope.jsonl");
        let h = start(FileSource::new(path.clone(), false), &t);
        let err = h.join().expect("thread").expect_err("missing file");
        assert!(err.message().contains(&path.display().to_string()), "{err}");
        assert_eq!(err.kind(), SourceErrorKind::Input);
        match t.rx.recv_timeout(LONG) {
            Ok(SourceMsg::Failed(msg)) => assert_eq!(msg, err),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn follow_reads_what_is_appended_and_holds_a_partial_line() {
        let t = test_ctx(Arc::new(SystemClock), 0);
        let path = t.dir.path().join("live.jsonl");
        std::fs::write(&path, b"a\nb\n").expect("write");
        let src = FileSource::new(path.clone(), true);
        let progress = src.progress();
        let h = start(src, &t);
        assert_eq!(take(&t.rx, 2), owned(&[(0, "a"), (2, "b")]));
        append(&path, b"c");
        // The line has no end yet: nothing comes.
        let (got, _) = collect_until(&t.rx, Duration::from_millis(300), |r| !r.is_empty());
        assert!(got.is_empty(), "{got:?}");
        append(&path, b"d\r\ne\n");
        assert_eq!(take(&t.rx, 2), owned(&[(4, "cd"), (8, "e")]));
        let deadline = Instant::now() + LONG;
        while progress.get().offset != 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let at = progress.get();
        assert_eq!((at.offset, at.base, at.position()), (10, 0, 10));
        stop_and_join(&t, h);
    }

    #[test]
    fn follow_survives_rotation_by_rename() {
        let t = test_ctx(Arc::new(SystemClock), 0);
        let path = t.dir.path().join("app.log");
        std::fs::write(&path, b"one\n").expect("write");
        let h = start(FileSource::new(path.clone(), true), &t);
        assert_eq!(take(&t.rx, 1), owned(&[(0, "one")]));
        // The writer still has the old file open: what it writes after the
        // rename is read before the new file.
        let mut old = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        std::fs::rename(&path, t.dir.path().join("app.log.1")).expect("rename");
        old.write_all(b"two\nthree").expect("write");
        std::thread::sleep(Duration::from_millis(120));
        std::fs::write(&path, b"four\n").expect("write new");
        // "three" had no line end: it goes out when the old file is left.
        assert_eq!(
            take(&t.rx, 3),
            owned(&[(4, "two"), (8, "three"), (13, "four")])
        );
        append(&path, b"five\n");
        assert_eq!(take(&t.rx, 1), owned(&[(18, "five")]));
        stop_and_join(&t, h);
    }

    #[test]
    fn follow_starts_again_after_truncation() {
        let t = test_ctx(Arc::new(SystemClock), 0);
        let path = t.dir.path().join("app.log");
        std::fs::write(&path, b"aaaa\nbbbb\n").expect("write");
        let src = FileSource::new(path.clone(), true);
        let progress = src.progress();
        let h = start(src, &t);
        assert_eq!(take(&t.rx, 2), owned(&[(0, "aaaa"), (5, "bbbb")]));
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .expect("truncate");
        append(&path, b"c\n");
        assert_eq!(take(&t.rx, 1), owned(&[(10, "c")]));
        let deadline = Instant::now() + LONG;
        while progress.get().offset != 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!((progress.get().offset, progress.get().base), (2, 10));
        stop_and_join(&t, h);
    }

    #[test]
    fn follow_waits_for_the_file_to_appear() {
        let t = test_ctx(Arc::new(SystemClock), 0);
        let path = t.dir.path().join("later.jsonl");
        let h = start(FileSource::new(path.clone(), true), &t);
        std::thread::sleep(Duration::from_millis(150));
        std::fs::write(&path, b"x\n").expect("write");
        assert_eq!(take(&t.rx, 1), owned(&[(0, "x")]));
        stop_and_join(&t, h);
    }

    #[test]
    fn a_stop_ends_a_follow_promptly() {
        for exists in [true, false] {
            let t = test_ctx(Arc::new(SystemClock), 0);
            let path = t.dir.path().join("idle.jsonl");
            if exists {
                std::fs::write(&path, b"x\n").expect("write");
            }
            let h = start(FileSource::new(path, true), &t);
            std::thread::sleep(Duration::from_millis(150));
            let asked = Instant::now();
            stop_and_join(&t, h);
            // ~50 ms expected; the slack is for a loaded machine.
            assert!(
                asked.elapsed() < Duration::from_secs(2),
                "{:?}",
                asked.elapsed()
            );
        }
    }

    #[test]
    fn resume_starts_at_the_checkpointed_position() {
        let path_text = b"l0\nl1\nl2\n";
        // First run: read it all and keep where it was.
        let t = test_ctx(Arc::new(SystemClock), 0);
        let path = t.dir.path().join("in.jsonl");
        std::fs::write(&path, path_text).expect("write");
        let src = FileSource::new(path.clone(), false);
        let progress = src.progress();
        start(src, &t).join().expect("thread").expect("run");
        let at = progress.get();
        assert_eq!(at.offset, 9);

        // Resume at l1 (position 3) of the same file.
        let t2 = test_ctx(Arc::new(SystemClock), 3);
        let h = start(FileSource::new(path.clone(), false).resume(at), &t2);
        let (got, last) = collect_until(&t2.rx, LONG, |_| false);
        assert!(matches!(last, Some(SourceMsg::End)), "{last:?}");
        assert_eq!(got, owned(&[(3, "l1"), (6, "l2")]));
        h.join().expect("thread").expect("run");

        // Another file now (another inode than the checkpoint's): read from
        // its start, positions on from the checkpoint's.
        let t3 = test_ctx(Arc::new(SystemClock), 3);
        let mut other = at;
        other.ino = at.ino.wrapping_add(1);
        let h = start(FileSource::new(path, false).resume(other), &t3);
        let (got, _) = collect_until(&t3.rx, LONG, |_| false);
        assert_eq!(got, owned(&[(3, "l0"), (6, "l1"), (9, "l2")]));
        h.join().expect("thread").expect("run");
    }
}
