//! The `file` sink: JSON lines appended to a file, exactly once across
//! restarts.
//!
//! Outputs are written (and handed to the OS) as soon as they are queued;
//! the file is fsynced every [`SYNC_EVERY`], at close, and when the
//! checkpoint asks ([`FileSinkState::sync`]). [`FileSinkState`] holds the
//! committed position: how many outputs are finished with and how long the
//! current file is after them, and which file that is. A checkpoint records
//! it ([`FileCommit`]); on restore [`restore`] cuts the file back to it, and
//! the replay writes the rest again, identically.
//!
//! With `rotate_bytes`, a line that would take the file past the limit goes
//! to a new file instead: `PATH` is renamed to `PATH.1`, `PATH.1` to
//! `PATH.2`, ..., keeping [`KEEP`] old files. A line longer than the limit
//! gets a file of its own.
//!
//! A write error (a full disk) is logged with the path and retried with
//! backoff, resuming at the first byte not written; nothing is dropped: the
//! queue fills and the source slows down.

use std::borrow::Borrow;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::common::{self, Backoff, SinkMetrics, MAX_WRITE_BATCH};
use super::{Output, Queued, SinkCtx, SinkError, SinkErrorKind, SinkRx};

/// How many rotated files are kept (`PATH.1` ... `PATH.10`).
pub const KEEP: usize = 10;

/// How often a file sink fsyncs what it has written (also at close and on
/// [`FileSinkState::sync`]).
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Where a file sink stands: what a checkpoint records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileCommit {
    /// Outputs finished with since the sink started (the same count as
    /// [`super::SinkHandle::delivered`], read together with `len`).
    pub delivered: u64,
    /// Rotations since the sink started.
    pub generation: u64,
    /// Bytes of the current file, all written and flushed to the OS.
    pub len: u64,
    /// The current file's identity (its inode on Unix, which a rename
    /// keeps), so that [`restore`] finds it among the rotated files.
    pub file_id: Option<u64>,
}

/// The shared state of a running file sink (see the module docs).
#[derive(Debug)]
pub struct FileSinkState {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// A second descriptor of the current file, for [`FileSinkState::sync`].
    file: Option<File>,
    commit: FileCommit,
}

impl FileSinkState {
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The committed position now: every output counted in `delivered` is
    /// in the file before `len`, and nothing after.
    pub fn commit(&self) -> FileCommit {
        self.lock().commit
    }

    /// Fsyncs the current file and returns the committed position, all of
    /// which is then durable. (Rotated files were fsynced before their
    /// rename.)
    pub fn sync(&self) -> Result<FileCommit, SinkError> {
        self.sync_text()
            .map_err(|e| SinkError::new(SinkErrorKind::Io, e))
    }

    fn sync_text(&self) -> Result<FileCommit, String> {
        // Not under the lock: a writer on the engine's thread ([`Inline`])
        // must not wait for an fsync to count what it wrote. What the
        // commit counts was written before the fsync starts.
        let (file, commit) = {
            let inner = self.lock();
            let file = match &inner.file {
                Some(f) => Some(
                    f.try_clone()
                        .map_err(|e| format!("{}: cannot fsync: {e}", self.path.display()))?,
                ),
                None => None,
            };
            (file, inner.commit)
        };
        if let Some(f) = file {
            f.sync_data()
                .map_err(|e| format!("{}: fsync failed: {e}", self.path.display()))?;
        }
        Ok(commit)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The data is plain numbers: a panic elsewhere leaves it usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `PATH.n`, or `PATH` for 0.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Cuts `path` back to `len` bytes and fsyncs it. An error if it is
/// shorter: then outputs the checkpoint counted as written are gone.
pub fn truncate_to(path: &Path, len: u64) -> Result<(), SinkError> {
    truncate_text(path, len).map_err(|e| SinkError::new(SinkErrorKind::Io, e))
}

fn truncate_text(path: &Path, len: u64) -> Result<(), String> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: cannot open to cut back: {e}", path.display()))?;
    let have = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if have < len {
        return Err(format!(
            "{}: {have} bytes, shorter than the {len} the checkpoint committed",
            path.display()
        ));
    }
    if have > len {
        f.set_len(len)
            .map_err(|e| format!("{}: cannot cut back to {len} bytes: {e}", path.display()))?;
    }
    f.sync_all()
        .map_err(|e| format!("{}: fsync failed: {e}", path.display()))
}

/// Brings the files of a sink at `path` back to `commit`, before the sink
/// starts again: files rotated in after the checkpoint are removed, the
/// checkpoint's file is renamed back to `path` (found by
/// [`FileCommit::file_id`] among `PATH`, `PATH.1`, ...), and it is cut back
/// to [`FileCommit::len`]. A missing file at length 0 is fine (nothing was
/// written).
pub fn restore(path: &Path, commit: &FileCommit) -> Result<(), SinkError> {
    restore_text(path, commit).map_err(|e| SinkError::new(SinkErrorKind::Io, e))
}

fn restore_text(path: &Path, commit: &FileCommit) -> Result<(), String> {
    let mut at = 0;
    if let Some(want) = commit.file_id {
        let found = (0..=KEEP).find(|&n| {
            std::fs::metadata(rotated(path, n))
                .ok()
                .and_then(|m| file_id(&m))
                == Some(want)
        });
        match found {
            Some(n) => at = n,
            None if commit.len == 0 => {}
            None => {
                return Err(format!(
                    "{}: the file of the checkpoint is gone (rotated out or removed)",
                    path.display()
                ))
            }
        }
    }
    if at > 0 {
        // Newer files hold only outputs after the checkpoint: the replay
        // writes them again.
        for n in 0..at {
            let p = rotated(path, n);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: cannot remove: {e}", p.display())),
            }
        }
        for n in at..=KEEP {
            let (from, to) = (rotated(path, n), rotated(path, n - at));
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(format!(
                        "cannot rename {} to {}: {e}",
                        from.display(),
                        to.display()
                    ))
                }
            }
        }
        sync_dir(path)?;
    }
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && commit.len == 0 => Ok(()),
        _ => truncate_text(path, commit.len),
    }
}

#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    Some(m.ino())
}

#[cfg(not(unix))]
fn file_id(_m: &std::fs::Metadata) -> Option<u64> {
    None
}

pub(crate) fn sync_dir(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: fsync of the directory failed: {e}", dir.display()))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn open_append(path: &Path) -> Result<File, String> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("{}: cannot create directory: {e}", dir.display()))?;
        }
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: cannot open for appending: {e}", path.display()))
}

/// The writing side, owned by the sink's task and moved to the blocking
/// pool for each write.
struct Writer {
    path: PathBuf,
    file: File,
    rotate: Option<u64>,
    state: Arc<FileSinkState>,
    delivered: Arc<AtomicU64>,
    /// Bytes of the current file (the committed length).
    len: u64,
    /// Written since the last fsync.
    dirty: bool,
    /// A rotation in progress: the next `PATH.(n-1)` → `PATH.n` to do, so
    /// that a retry after a failed rename does not shift a file twice.
    rotating: Option<usize>,
    /// The batch being written: next output, and bytes of the current
    /// chunk already written.
    next: usize,
    partial: usize,
    buf: Vec<u8>,
}

impl Writer {
    fn open(
        path: PathBuf,
        rotate: Option<u64>,
        delivered: Arc<AtomicU64>,
    ) -> Result<(Writer, Arc<FileSinkState>), String> {
        let file = open_append(&path)?;
        let meta = file
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let dup = file.try_clone().ok();
        let state = Arc::new(FileSinkState {
            path: path.clone(),
            inner: Mutex::new(Inner {
                file: dup,
                commit: FileCommit {
                    delivered: 0,
                    generation: 0,
                    len: meta.len(),
                    file_id: file_id(&meta),
                },
            }),
        });
        let w = Writer {
            path,
            file,
            rotate: rotate.filter(|&r| r > 0),
            state: state.clone(),
            delivered,
            len: meta.len(),
            dirty: false,
            rotating: None,
            next: 0,
            partial: 0,
            buf: Vec::new(),
        };
        Ok((w, state))
    }

    /// Writes `batch[self.next..]`; after an error, call again with the same
    /// batch to go on where it stopped.
    fn write<O: Borrow<Output>>(&mut self, batch: &[O]) -> io::Result<()> {
        let line_len = |o: &O| o.borrow().line().len() as u64 + 1;
        while self.next < batch.len() {
            let mut end = self.next;
            let mut bytes = 0;
            match self.rotate {
                Some(limit) => {
                    if self.rotating.is_some()
                        || (self.partial == 0
                            && self.len > 0
                            && self.len + line_len(&batch[self.next]) > limit)
                    {
                        self.rotate()?;
                    }
                    while end < batch.len()
                        && (end == self.next || self.len + bytes + line_len(&batch[end]) <= limit)
                    {
                        bytes += line_len(&batch[end]);
                        end += 1;
                    }
                }
                None => {
                    bytes = batch[self.next..].iter().map(line_len).sum();
                    end = batch.len();
                }
            }
            if self.partial == 0 {
                self.buf.clear();
                for o in &batch[self.next..end] {
                    self.buf.extend_from_slice(o.borrow().line());
                    self.buf.push(b'\n');
                }
            }
            self.dirty = true;
            common::write_from(&mut self.file, &self.buf, &mut self.partial)?;
            self.len += bytes;
            let mut inner = self.state.lock();
            inner.commit.len = self.len;
            inner.commit.delivered += (end - self.next) as u64;
            // Under the lock, so that a checkpoint reads both together.
            common::finish(&self.delivered, end - self.next);
            drop(inner);
            self.next = end;
            self.partial = 0;
        }
        Ok(())
    }

    /// `PATH` → `PATH.1` (and older ones up), then a new `PATH`.
    fn rotate(&mut self) -> io::Result<()> {
        let mut n = match self.rotating {
            Some(n) => n,
            None => {
                // Durable before it is renamed: the checkpoint may refer to it.
                self.file.sync_data()?;
                self.dirty = false;
                KEEP
            }
        };
        self.rotating = Some(n);
        while n >= 1 {
            match std::fs::rename(rotated(&self.path, n - 1), rotated(&self.path, n)) {
                Ok(()) => {}
                // A PATH removed by someone else: the new file replaces it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            n -= 1;
            self.rotating = Some(n);
        }
        let file = open_append(&self.path).map_err(io::Error::other)?;
        sync_dir(&self.path).map_err(io::Error::other)?;
        let meta = file.metadata()?;
        let dup = file.try_clone().ok();
        self.file = file;
        self.len = 0;
        self.rotating = None;
        let mut inner = self.state.lock();
        inner.file = dup;
        inner.commit.generation += 1;
        inner.commit.len = 0;
        inner.commit.file_id = file_id(&meta);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// Opens the file of a file sink at `path` (now, so that a bad path stops
/// `run` at start) and returns its task and shared state.
pub(crate) fn start(
    path: PathBuf,
    rotate_bytes: Option<u64>,
    rx: SinkRx,
    ctx: SinkCtx,
    delivered: Arc<AtomicU64>,
) -> Result<
    (
        impl std::future::Future<Output = Result<(), String>> + Send + 'static,
        Arc<FileSinkState>,
    ),
    String,
> {
    let (w, state) =
        Writer::open(path, rotate_bytes, delivered).map_err(|e| format!("{}: {e}", ctx.name))?;
    Ok((run(w, rx, ctx), state))
}

/// A file sink that the engine's thread writes itself, with no queue and
/// no hand-over to another thread: on two cores, a thread that wakes for
/// every few writes costs the engine more than the writes (a copy into the
/// page cache). A write error is logged and retried with backoff on the
/// same thread, which holds the engine (and so the source) back, as a full
/// queue would; a task of the sink's runtime fsyncs every [`SYNC_EVERY`]
/// and at close.
pub(crate) struct Inline {
    w: Writer,
    m: SinkMetrics,
    ctx: SinkCtx,
    backoff: Backoff,
}

impl Inline {
    /// Writes `outputs`, retrying until they are written: then they are
    /// delivered.
    pub(crate) fn write(&mut self, outputs: &[Output]) {
        let mut retry = 0;
        while let Err(e) = self.w.write(outputs) {
            retry += 1;
            self.m.retries.inc();
            let delay = self.backoff.delay_ms(retry);
            tracing::error!(
                sink = %self.ctx.name,
                path = %self.w.path.display(),
                "writing the file failed: {e}; retry {retry} in {delay} ms"
            );
            let pending = outputs.len().saturating_sub(self.w.next);
            self.m.queue.set(i64::try_from(pending).unwrap_or(i64::MAX));
            let until = self.ctx.clock.now_ms().saturating_add(delay as i64);
            while self.ctx.clock.now_ms() < until {
                std::thread::sleep(
                    self.ctx
                        .clock
                        .wait_for(until)
                        .clamp(Duration::from_millis(1), Duration::from_millis(100)),
                );
            }
        }
        self.w.next = 0;
        self.m.delivered.inc_by(outputs.len() as u64);
        if retry > 0 {
            self.m.queue.set(0);
        }
    }
}

/// [`start`] for a sink written by the caller ([`Inline`]): the writer, and
/// the task that fsyncs it every [`SYNC_EVERY`] and at close (once `rx`
/// closes; nothing is queued to it).
#[allow(clippy::type_complexity)]
pub(crate) fn start_inline(
    path: PathBuf,
    rotate_bytes: Option<u64>,
    rx: SinkRx,
    ctx: SinkCtx,
    delivered: Arc<AtomicU64>,
) -> Result<
    (
        Inline,
        impl std::future::Future<Output = Result<(), String>> + Send + 'static,
        Arc<FileSinkState>,
    ),
    String,
> {
    let (w, state) =
        Writer::open(path, rotate_bytes, delivered).map_err(|e| format!("{}: {e}", ctx.name))?;
    let inline = Inline {
        w,
        m: SinkMetrics::new(&ctx),
        ctx: ctx.clone(),
        backoff: Backoff::local_io(),
    };
    Ok((inline, sync_every(state.clone(), rx, ctx), state))
}

async fn sync_every(state: Arc<FileSinkState>, mut rx: SinkRx, ctx: SinkCtx) -> Result<(), String> {
    let mut tick = tokio::time::interval(SYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            o = rx.recv() => match o {
                None => break,
                Some(_) => tracing::error!(sink = %ctx.name, "an output was queued to a sink written inline: dropped (a bug)"),
            },
            _ = tick.tick() => {
                let st = state.clone();
                if let Err(e) = common::blocking(&ctx.name, move || st.sync_text()).await? {
                    // The next tick (or the checkpoint, or the close) tries again.
                    tracing::error!(sink = %ctx.name, "{e}");
                }
            }
        }
    }
    let st = state.clone();
    common::blocking(&ctx.name, move || st.sync_text())
        .await?
        .map(|_| ())
}

#[derive(Clone, Copy)]
enum Step {
    Write,
    Sync,
}

async fn run(mut w: Writer, mut rx: SinkRx, ctx: SinkCtx) -> Result<(), String> {
    let m = SinkMetrics::new(&ctx);
    let backoff = Backoff::local_io();
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_WRITE_BATCH);
    let mut tick = tokio::time::interval(SYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    while open {
        let step = tokio::select! {
            more = common::recv_batch(&mut rx, &mut batch, MAX_WRITE_BATCH) => {
                if more { Step::Write } else { open = false; Step::Sync }
            }
            _ = tick.tick() => Step::Sync,
        };
        if let Step::Write = step {
            common::top_up(&mut rx, &mut batch, MAX_WRITE_BATCH).await;
            m.set_queue(&rx, batch.len());
        }
        let mut retry = 0;
        loop {
            let b = std::mem::take(&mut batch);
            let (back, b, res) = common::blocking(&ctx.name, move || {
                let r = match step {
                    Step::Write => w.write(&b),
                    Step::Sync => w.sync(),
                };
                if r.is_ok() {
                    w.next = 0;
                }
                (w, b, r)
            })
            .await?;
            w = back;
            batch = b;
            match res {
                Ok(()) => break,
                Err(e) => {
                    retry += 1;
                    m.retries.inc();
                    let delay = backoff.delay_ms(retry);
                    tracing::error!(
                        sink = %ctx.name,
                        path = %w.path.display(),
                        "writing the file failed: {e}; retry {retry} in {delay} ms"
                    );
                    let until = ctx.clock.now_ms().saturating_add(delay as i64);
                    let pending = match step {
                        Step::Write => batch.len().saturating_sub(w.next),
                        Step::Sync => 0,
                    };
                    common::sleep_until(&ctx.clock, until, || m.set_queue(&rx, pending)).await;
                }
            }
        }
        if let Step::Write = step {
            m.delivered.inc_by(batch.len() as u64);
            m.set_queue(&rx, 0);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::config::{Bytes, SinkConfig};
    use crate::sink::common::testutil::{ctx, out, rt, wait_delivered};
    use crate::sink::spawn_sink;

    fn lines(range: std::ops::Range<usize>) -> String {
        range
            .map(|i| format!("{{\"id\":\"p/t/{i}\",\"n\":{i}}}\n"))
            .collect()
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    fn file_cfg(rotate: Option<u64>) -> SinkConfig {
        SinkConfig::File {
            path: "out/t.jsonl".into(),
            rotate_bytes: rotate.map(Bytes),
        }
    }

    #[test]
    fn appends_lines_promptly_and_tracks_the_committed_length() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let c = ctx("outputs.timeout[1]", dir.path());
        let metrics = c.metrics.clone();
        let path = dir.path().join("config/out/t.jsonl");
        let s = spawn_sink(&file_cfg(None), c, rt.handle(), 16).unwrap();
        let state = s.file.clone().unwrap();
        assert_eq!(state.path(), path);
        s.handle.tx.blocking_send(out(0)).unwrap();
        // Written before anything closes the queue or asks for a sync.
        wait_delivered(&s.handle.delivered, 1);
        assert_eq!(read(&path), lines(0..1));
        let c1 = state.sync().unwrap();
        assert_eq!(c1.delivered, 1);
        assert_eq!(c1.len, lines(0..1).len() as u64);
        assert_eq!(c1.generation, 0);
        for i in 1..100 {
            s.handle.tx.blocking_send(out(i)).unwrap();
        }
        drop(s.handle.tx);
        rt.block_on(s.handle.task).unwrap().unwrap();
        assert_eq!(read(&path), lines(0..100));
        let c2 = state.commit();
        assert_eq!(c2.delivered, 100);
        assert_eq!(c2.len, lines(0..100).len() as u64);
        assert_eq!(c2.file_id, c1.file_id);
        let text = metrics.encode();
        assert!(
            text.contains("ferrocep_sink_delivered_total{sink=\"outputs.timeout[1]\"} 100"),
            "{text}"
        );
    }

    #[test]
    fn an_inline_sink_writes_on_the_callers_thread_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let c = ctx("outputs.timeout[0]", dir.path());
        let metrics = c.metrics.clone();
        let path = dir.path().join("config/out/t.jsonl");
        let start = crate::sink::SinkStart::default();
        let s = crate::sink::spawn_sink_inline(&file_cfg(Some(50)), c, rt.handle(), 16, &start)
            .unwrap();
        let state = s.file.clone().unwrap();
        let mut inline = s.handle.inline.unwrap();
        // Delivered when `write` returns: nothing waits on another thread.
        inline.write(&[out(0)]);
        assert_eq!(s.handle.delivered.load(Ordering::Acquire), 1);
        assert_eq!(read(&path), lines(0..1));
        // Every line of outputs 0..=9 is 21 bytes: two fit in 50.
        inline.write(&(1..5).map(out).collect::<Vec<_>>());
        assert_eq!(s.handle.delivered.load(Ordering::Acquire), 5);
        assert_eq!(read(&rotated(&path, 2)), lines(0..2));
        assert_eq!(read(&rotated(&path, 1)), lines(2..4));
        assert_eq!(read(&path), lines(4..5));
        let c = state.sync().unwrap();
        assert_eq!((c.delivered, c.generation), (5, 2));
        assert_eq!(c.len, lines(4..5).len() as u64);
        // Closing the queue ends the task (after a last fsync).
        drop(s.handle.tx);
        rt.block_on(s.handle.task).unwrap().unwrap();
        let text = metrics.encode();
        assert!(
            text.contains("ferrocep_sink_delivered_total{sink=\"outputs.timeout[0]\"} 5"),
            "{text}"
        );
    }

    #[test]
    fn an_inline_write_to_a_full_disk_is_retried_until_it_goes_through() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let c = ctx("s", dir.path());
        let metrics = c.metrics.clone();
        let cfg = SinkConfig::File {
            path: "/dev/full".into(),
            rotate_bytes: None,
        };
        let start = crate::sink::SinkStart::default();
        let s = crate::sink::spawn_sink_inline(&cfg, c, rt.handle(), 4, &start).unwrap();
        let mut inline = s.handle.inline.unwrap();
        let t = std::thread::spawn(move || inline.write(&[out(0)]));
        std::thread::sleep(Duration::from_millis(300));
        // Still retrying: the caller waits, nothing is counted or dropped.
        assert!(!t.is_finished());
        assert_eq!(s.handle.delivered.load(Ordering::Acquire), 0);
        let text = metrics.encode();
        assert!(
            !text.contains("ferrocep_sink_retries_total{sink=\"s\"} 0"),
            "{text}"
        );
        s.handle.task.abort();
    }

    #[test]
    fn appends_to_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let path = dir.path().join("config/out/t.jsonl");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, lines(0..2)).unwrap();
        let s = spawn_sink(&file_cfg(None), ctx("s", dir.path()), rt.handle(), 4).unwrap();
        assert_eq!(
            s.file.as_ref().unwrap().commit().len,
            lines(0..2).len() as u64
        );
        s.handle.tx.blocking_send(out(2)).unwrap();
        drop(s.handle.tx);
        rt.block_on(s.handle.task).unwrap().unwrap();
        assert_eq!(read(&path), lines(0..3));
    }

    #[test]
    fn rotates_before_a_line_would_pass_the_limit_and_keeps_ten_files() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let path = dir.path().join("config/out/t.jsonl");
        // Every line of outputs 0..=9 is 21 bytes: two fit in 50.
        let s = spawn_sink(&file_cfg(Some(50)), ctx("s", dir.path()), rt.handle(), 64).unwrap();
        let state = s.file.clone().unwrap();
        for i in 0..7 {
            s.handle.tx.blocking_send(out(i)).unwrap();
        }
        wait_delivered(&s.handle.delivered, 7);
        assert_eq!(read(&rotated(&path, 3)), lines(0..2));
        assert_eq!(read(&rotated(&path, 2)), lines(2..4));
        assert_eq!(read(&rotated(&path, 1)), lines(4..6));
        assert_eq!(read(&path), lines(6..7));
        let c = state.commit();
        assert_eq!((c.delivered, c.generation, c.len), (7, 3, 21));
        // 30 lines make 15 files: the oldest 4 are gone.
        for i in 7..30 {
            s.handle.tx.blocking_send(out(i)).unwrap();
        }
        drop(s.handle.tx);
        rt.block_on(s.handle.task).unwrap().unwrap();
        assert!(!rotated(&path, KEEP + 1).exists());
        let mut all = String::new();
        for n in (0..=KEEP).rev() {
            let t = read(&rotated(&path, n));
            assert!(t.len() <= 50, "{n}: {t}");
            all.push_str(&t);
        }
        assert!(lines(0..30).ends_with(&all));
        assert!(all.starts_with(&lines(8..9)), "{all}");
    }

    #[test]
    fn a_line_longer_than_the_limit_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let path = dir.path().join("config/out/t.jsonl");
        let s = spawn_sink(&file_cfg(Some(5)), ctx("s", dir.path()), rt.handle(), 8).unwrap();
        for i in 0..3 {
            s.handle.tx.blocking_send(out(i)).unwrap();
        }
        drop(s.handle.tx);
        rt.block_on(s.handle.task).unwrap().unwrap();
        assert_eq!(read(&rotated(&path, 2)), lines(0..1));
        assert_eq!(read(&rotated(&path, 1)), lines(1..2));
        assert_eq!(read(&path), lines(2..3));
    }

    /// The exactly-once story: a checkpoint's commit, more output (across a
    /// rotation), a crash; restore cuts back, the replay writes the rest
    /// again, and the files equal those of a run without a crash.
    #[test]
    fn restore_cuts_back_to_the_commit_across_rotations() {
        let rt = rt();
        let run = |dir: &Path, outputs: std::ops::Range<usize>| -> FileCommit {
            let s = spawn_sink(&file_cfg(Some(50)), ctx("s", dir), rt.handle(), 64).unwrap();
            for i in outputs {
                s.handle.tx.blocking_send(out(i)).unwrap();
            }
            let state = s.file.clone().unwrap();
            drop(s.handle.tx);
            rt.block_on(s.handle.task).unwrap().unwrap();
            state.sync().unwrap()
        };
        let straight = tempfile::tempdir().unwrap();
        run(straight.path(), 0..9);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config/out/t.jsonl");
        let commit = run(dir.path(), 0..3);
        assert_eq!((commit.generation, commit.len), (1, 21));
        // Past the checkpoint: outputs 3..7, two more rotations.
        let s = spawn_sink(&file_cfg(Some(50)), ctx("s", dir.path()), rt.handle(), 64).unwrap();
        for i in 3..7 {
            s.handle.tx.blocking_send(out(i)).unwrap();
        }
        drop(s.handle.tx);
        rt.block_on(s.handle.task).unwrap().unwrap();
        assert_eq!(read(&rotated(&path, 3)), lines(0..2));

        restore(&path, &commit).unwrap();
        assert_eq!(read(&rotated(&path, 1)), lines(0..2));
        assert_eq!(read(&path), lines(2..3));
        assert!(!rotated(&path, 2).exists());
        run(dir.path(), 3..9);
        for n in 0..=KEEP {
            let a = rotated(&straight.path().join("config/out/t.jsonl"), n);
            assert_eq!(read(&rotated(&path, n)), read(&a), "file {n}");
        }
    }

    #[test]
    fn truncate_to_cuts_back_and_refuses_to_grow() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        truncate_to(&p, 4).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"0123");
        truncate_to(&p, 4).unwrap();
        let e = truncate_to(&p, 9).unwrap_err();
        assert!(e.message().contains("shorter than the 9"), "{e}");
        assert!(e.message().contains(&p.display().to_string()), "{e}");
        let e = truncate_to(&dir.path().join("none"), 0).unwrap_err();
        assert!(e.message().contains("none"), "{e}");
        // Nothing written yet: restoring a zero commit is fine.
        restore(&dir.path().join("none"), &FileCommit::default()).unwrap();
    }

    #[test]
    fn a_path_that_cannot_be_opened_is_an_error_at_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config/out/t.jsonl")).unwrap();
        let rt = rt();
        let e = spawn_sink(
            &file_cfg(None),
            ctx("outputs.late[0]", dir.path()),
            rt.handle(),
            4,
        )
        .err()
        .unwrap();
        assert_eq!(e.kind(), crate::sink::SinkErrorKind::Io);
        let e = e.to_string();
        assert!(e.starts_with("outputs.late[0]: "), "{e}");
        assert!(e.contains("t.jsonl"), "{e}");
    }

    /// A full disk: the output is not dropped nor counted; the sink retries
    /// (and the queue holds) until it can write.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_holds_the_queue() {
        if !Path::new("/dev/full").exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let c = ctx("s", dir.path());
        let metrics = c.metrics.clone();
        let cfg = SinkConfig::File {
            path: "/dev/full".into(),
            rotate_bytes: None,
        };
        let s = spawn_sink(&cfg, c, rt.handle(), 2).unwrap();
        for i in 0..3 {
            s.handle.tx.blocking_send(out(i)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        // The sink holds what it took; the queue (2) fills behind it.
        let mut queued = 0;
        while s.handle.tx.try_send(out(10 + queued)).is_ok() {
            queued += 1;
            assert!(queued <= 2, "the queue holds");
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(s.handle.delivered.load(Ordering::Acquire), 0);
        let text = metrics.encode();
        assert!(
            !text.contains("ferrocep_sink_retries_total{sink=\"s\"} 0"),
            "{text}"
        );
        let gauge = format!("ferrocep_sink_queue{{sink=\"s\"}} {}", 3 + queued);
        assert!(text.contains(&gauge), "{text}");
        s.handle.task.abort();
    }
}
