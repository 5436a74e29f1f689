//! Replaying a JSON-lines input through the patterns (`ferrocep match`), as
//! the contract in `shared/spec/pattern-spec.md` section 3 says.
//!
//! - Event time (the specs have `time`): the events of each chunk of input go
//!   to the [`Matcher`] in input order, each after the watermark that
//!   preceded it. At the end of input, [`EndOfInput::Flush`] advances time to
//!   +infinity (Flink's `MAX_WATERMARK`); [`EndOfInput::Stop`] leaves it at the
//!   last watermark. With several workers this is [`crate::parallel`].
//! - Processing time: each event is stamped with the [`Clock`] on arrival.
//!   A thread reads the input and the matching thread waits for its chunks
//!   only until the next timer is due, so a timeout fires on time while the
//!   input is quiet. Nothing more happens at the end of input, as in Flink.
//!
//! Input lines are read as the Flink oracle reads them
//! (`oracle/flink/src/JsonLineSource.java`): a UTF-8 byte-order mark on line 1
//! is dropped, the line is trimmed of ASCII whitespace and control characters,
//! and an empty line is a bad line (`line N: empty line`). Bad lines are
//! reported as `line N: reason` and skipped; with `strict` the first one ends
//! the run.
//!
//! Several specs run over one stream with each line read once ([`SpecSet`]);
//! every output line then names its pattern (`"pattern":"NAME"`).

use std::io::{self, Read, Write};
use std::sync::mpsc;

use ferrocep_core::spec::{JsonEvent, SpecSet};

use crate::clock::Clock;
use crate::input::{Chunk, ChunkReader, TextLines};
use crate::key::Key;
use crate::matcher::{max_of, Blocks, Matcher, Plan, Routed};
use crate::options::{EndOfInput, Options, Stop};
use crate::output::WriterSpill;

/// Runs `set`, compiled as `plan` ([`Plan::new`]), over `input`, writing
/// outputs to `out` and bad-line reports to `errors`. Processing-time specs
/// take their time from `clock`. A closed output (broken pipe) ends the run
/// quietly.
pub fn run_with<R: Read + Send + 'static, W: Write + Send, D: Write>(
    set: &SpecSet,
    plan: &Plan,
    input: R,
    out: W,
    errors: &mut D,
    options: &Options,
    clock: &dyn Clock,
) -> Result<(), Stop> {
    let result = if plan.event_time && options.workers > 1 {
        crate::parallel::run(set, plan, input, out, errors, options)
    } else if plan.event_time {
        run_sequential(set, plan, input, out, errors, options)
    } else {
        run_processing_time(set, plan, input, out, errors, options, clock)
    };
    match result {
        Err(Stop::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Event time, everything on the calling thread, chunk after chunk.
fn run_sequential<R: Read, W: Write, D: Write>(
    set: &SpecSet,
    plan: &Plan,
    input: R,
    out: W,
    errors: &mut D,
    options: &Options,
) -> Result<(), Stop> {
    let mut m = Matcher::new(plan);
    let mut out = WriterSpill { out, error: None };
    let mut reader = ChunkReader::with_chunk_size(input, options.chunk_size);
    let mut buf = Chunk::default();
    let mut scratch = Vec::new(); // field values, reused from line to line
    let mut line_no: u64 = 0;
    let mut max: Option<i64> = None;
    let mut batch: Vec<Routed> = Vec::new();
    let mut blocks = Blocks::new(1);
    let result = (|| {
        loop {
            match reader.next_chunk(&mut buf) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(Stop::Input(e)),
            }
            // The chunk's events are read, then matched.
            let mut bad = None;
            for text in TextLines::new(&buf, line_no == 0) {
                line_no += 1;
                match set.ingest_parts(&text, &mut scratch) {
                    Ok(p) => {
                        let key = Key::from_opt(p.key.as_deref());
                        let ts = p.timestamp.unwrap_or(0);
                        blocks.push(0, key, ts, p.json, p.conditions);
                    }
                    Err(e) if options.strict => {
                        bad = Some(Stop::Strict(line_no, e.reason));
                        break;
                    }
                    Err(e) => {
                        let _ = writeln!(errors, "line {line_no}: {e}");
                    }
                }
            }
            let chunk_max = blocks.finish(|_, r| batch.push(r));
            if !batch.is_empty() {
                // The batch holds every event: their `max_before` are the steps.
                m.events(&mut batch, max, &[], &mut out);
            }
            max = max_of(max, chunk_max);
            m.advance_to(max, false, &mut out);
            if let Some(stop) = bad {
                return Err(stop);
            }
            // Once a chunk (a live source shows its outputs as they come).
            m.flush_out(&mut out);
            if let Some(e) = out.error.take() {
                return Err(Stop::Output(e));
            }
        }
        Ok(())
    })();
    if matches!(result, Err(Stop::Output(_))) {
        return result;
    }
    // The watermark of the last good event was due before anything stopped.
    let flush = result.is_ok() && options.end_of_input == EndOfInput::Flush;
    m.advance_to(max, flush, &mut out);
    m.flush_out(&mut out);
    if let Some(e) = out.error.take() {
        return Err(Stop::Output(e));
    }
    out.out.flush().map_err(Stop::Output)?;
    result
}

/// A chunk read by the reading thread of a processing-time run.
type ReadResult = io::Result<Option<Chunk>>;

/// Processing time: a thread reads, this one matches and fires timers when
/// they fall due, input or not.
fn run_processing_time<R: Read + Send + 'static, W: Write, D: Write>(
    set: &SpecSet,
    plan: &Plan,
    input: R,
    out: W,
    errors: &mut D,
    options: &Options,
    clock: &dyn Clock,
) -> Result<(), Stop> {
    let mut m = Matcher::new(plan);
    let mut out = WriterSpill { out, error: None };
    // Two chunks in flight: reading goes on while one is matched, and memory
    // stays bounded.
    let (tx, rx) = mpsc::sync_channel::<ReadResult>(2);
    let (back_tx, back_rx) = mpsc::channel::<Chunk>();
    let chunk_size = options.chunk_size;
    let reader = std::thread::Builder::new()
        .name("ferrocep-read".into())
        .spawn(move || {
            let mut reader = ChunkReader::with_chunk_size(input, chunk_size);
            loop {
                let mut buf = back_rx.try_recv().unwrap_or_default();
                let r = match reader.next_chunk(&mut buf) {
                    Ok(true) => Ok(Some(buf)),
                    Ok(false) => Ok(None),
                    Err(e) => Err(e),
                };
                let last = !matches!(r, Ok(Some(_)));
                if tx.send(r).is_err() || last {
                    return;
                }
            }
        })
        .map_err(Stop::Input)?;
    let mut scratch = Vec::new();
    let mut line_no: u64 = 0;
    let result = (|| loop {
        // Timers that are due fire before the next chunk is looked at.
        let now = clock.now_ms();
        m.advance_now(now, &mut out);
        m.flush_out(&mut out);
        if let Some(e) = out.error.take() {
            return Err(Stop::Output(e));
        }
        let chunk = match m.next_timer() {
            Some(t) => match rx.recv_timeout(clock.wait_for(t)) {
                Ok(c) => c,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            },
            None => match rx.recv() {
                Ok(c) => c,
                Err(_) => return Ok(()),
            },
        };
        let buf = match chunk {
            Ok(Some(buf)) => buf,
            Ok(None) => return Ok(()),
            Err(e) => return Err(Stop::Input(e)),
        };
        for text in TextLines::new(&buf, line_no == 0) {
            line_no += 1;
            match set.ingest_parts(&text, &mut scratch) {
                Ok(p) => {
                    let key = Key::from_opt(p.key.as_deref());
                    let event = JsonEvent::own(p.json, p.conditions);
                    m.event_now(&key, event, clock.now_ms(), &mut out);
                }
                Err(e) if options.strict => return Err(Stop::Strict(line_no, e.reason)),
                Err(e) => {
                    let _ = writeln!(errors, "line {line_no}: {e}");
                }
            }
        }
        let _ = back_tx.send(buf);
    })();
    // The reader may be blocked on a live input that never ends; it is not
    // waited for (it ends with the process, or at its next read).
    drop(rx);
    if reader.is_finished() {
        let _ = reader.join();
    }
    if matches!(result, Err(Stop::Output(_))) {
        return result;
    }
    m.flush_out(&mut out);
    if let Some(e) = out.error.take() {
        return Err(Stop::Output(e));
    }
    out.out.flush().map_err(Stop::Output)?;
    result
}
