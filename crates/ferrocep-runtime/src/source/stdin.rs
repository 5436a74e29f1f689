//! The `stdin` source: standard input (or any reader), read until it ends.
//!
//! An event's position is the byte offset of its line in the input. A pipe
//! cannot be read again, so a restart cannot resume: events read after the
//! last checkpoint are lost in a crash.
//!
//! A read may block for as long as nothing is written, and nothing can wake
//! it; so the reading happens on a thread of its own, and [`Source::run`]
//! only watches it and the stop flag: on a stop it returns at once and
//! leaves the reader blocked (it ends when its read returns or the process
//! exits). Whatever a read returns is sent at once.

use std::io::Read;
use std::time::Duration;

use super::lines::{LineSplitter, READ_SIZE};
use super::{events_in, fail, Batch, Source, SourceCtx, SourceError, SourceErrorKind, SourceMsg};

/// How often `run` looks at the stop flag while the reader reads.
const WATCH: Duration = Duration::from_millis(20);

/// Reads standard input, or another reader (see the module docs).
pub struct StdinSource {
    reader: Box<dyn Read + Send>,
}

impl std::fmt::Debug for StdinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdinSource").finish_non_exhaustive()
    }
}

impl Default for StdinSource {
    fn default() -> Self {
        Self::new()
    }
}

impl StdinSource {
    /// A source reading standard input.
    pub fn new() -> StdinSource {
        StdinSource::from_reader(std::io::stdin())
    }

    /// A source reading `reader` as it would standard input.
    pub fn from_reader<R: Read + Send + 'static>(reader: R) -> StdinSource {
        StdinSource {
            reader: Box::new(reader),
        }
    }
}

/// Reads `reader` to its end, sending lines as they come.
fn read_all(mut reader: Box<dyn Read + Send>, ctx: &SourceCtx) -> Result<(), String> {
    let counter = events_in(&ctx.metrics, "stdin");
    let mut lines = LineSplitter::new(0);
    let send = |batch: Batch| {
        if batch.is_empty() {
            return true;
        }
        let n = batch.len() as u64;
        let sent = ctx.out.send(SourceMsg::Batch(batch));
        if sent {
            counter.inc_by(n);
        }
        sent
    };
    loop {
        if ctx.out.stop().is_raised() {
            return Ok(());
        }
        let mut batch = Batch::with_capacity(READ_SIZE);
        let n = lines
            .read_from(&mut *reader, 0, &mut batch)
            .map_err(|e| format!("stdin source: cannot read standard input: {e}"))?;
        if !send(batch) {
            return Ok(());
        }
        if n == 0 {
            let mut batch = Batch::default();
            lines.finish(0, &mut batch);
            if send(batch) {
                ctx.out.send(SourceMsg::End);
            }
            return Ok(());
        }
    }
}

impl Source for StdinSource {
    fn kind(&self) -> &'static str {
        "stdin"
    }

    fn run(self: Box<Self>, ctx: SourceCtx) -> Result<(), SourceError> {
        let reader = self.reader;
        let reader_ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("ferrocep-stdin".into())
            .spawn(move || match read_all(reader, &reader_ctx) {
                Ok(()) => Ok(()),
                Err(msg) => fail(&reader_ctx.out, SourceErrorKind::Input, msg),
            });
        let handle = match spawned {
            Ok(h) => h,
            Err(e) => {
                return fail(
                    &ctx.out,
                    SourceErrorKind::Thread,
                    format!("stdin source: cannot start its reader thread: {e}"),
                )
            }
        };
        loop {
            if handle.is_finished() {
                return match handle.join() {
                    Ok(result) => result,
                    Err(_) => fail(
                        &ctx.out,
                        SourceErrorKind::Thread,
                        "stdin source: its reader thread panicked".into(),
                    ),
                };
            }
            if ctx.out.stop().is_raised() {
                // The reader may be blocked in a read: leave it.
                return Ok(());
            }
            std::thread::sleep(WATCH);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::clock::SystemClock;
    use crate::source::testing::{collect_until, test_ctx};
    use crate::source::Position;

    const LONG: Duration = Duration::from_secs(10);

    #[test]
    fn reads_a_reader_to_its_end() {
        let t = test_ctx(Arc::new(SystemClock), 0);
        let input = b"\xEF\xBB\xBF{\"a\":1}\r\n \n{\"b\":2}\r{\"c\":3}".to_vec();
        let ctx = t.ctx.clone();
        let h = std::thread::spawn(move || {
            Box::new(StdinSource::from_reader(Cursor::new(input))).run(ctx)
        });
        let (got, last) = collect_until(&t.rx, LONG, |_| false);
        assert!(matches!(last, Some(SourceMsg::End)), "{last:?}");
        let want: Vec<(Position, String)> = vec![
            (0, "{\"a\":1}".into()),
            (14, "{\"b\":2}".into()),
            (22, "{\"c\":3}".into()),
        ];
        assert_eq!(got, want);
        assert_eq!(h.join().expect("thread"), Ok(()));
        assert!(t
            .metrics
            .encode()
            .contains("ferrocep_events_in_total{source=\"stdin\"} 3"));
    }

    #[test]
    fn a_live_pipe_is_sent_as_read_and_a_stop_does_not_wait_for_it() {
        let t = test_ctx(Arc::new(SystemClock), 0);
        let (reader, mut writer) = std::io::pipe().expect("pipe");
        let ctx = t.ctx.clone();
        let h = std::thread::spawn(move || Box::new(StdinSource::from_reader(reader)).run(ctx));
        writer.write_all(b"one\ntwo\r").expect("write");
        // The pipe stays open: both lines come anyway.
        let (got, last) = collect_until(&t.rx, LONG, |r| r.len() >= 2);
        assert!(last.is_none(), "{last:?}");
        assert_eq!(got, vec![(0, "one".to_string()), (4, "two".to_string())]);
        // "\n" completes the "\r" line end: no empty line, and the next
        // line's offset counts it.
        writer.write_all(b"\nthree\n").expect("write");
        let (got, _) = collect_until(&t.rx, LONG, |r| !r.is_empty());
        assert_eq!(got, vec![(9, "three".to_string())]);
        // The reader is blocked in a read; a stop returns anyway.
        std::thread::sleep(Duration::from_millis(50));
        let asked = Instant::now();
        t.stop.raise();
        assert_eq!(h.join().expect("thread"), Ok(()));
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
        drop(writer);
    }
}
