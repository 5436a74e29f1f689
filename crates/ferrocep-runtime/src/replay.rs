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
        crate::parallel::run(set, plan, input, out, errors, options, clock)
    } else if plan.event_time {
        run_sequential(set, plan, input, out, errors, options, clock)
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
    clock: &dyn Clock,
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
            let lines = TextLines::new(&buf, line_no == 0);
            let chunk = lines.text().unwrap_or_default();
            for text in lines {
                line_no += 1;
                match set.ingest_parts(&text, &mut scratch) {
                    Ok(p) => {
                        let key = Key::from_opt(p.key.as_deref());
                        let ts = p
                            .timestamp
                            .map_or(0, ferrocep_core::time::Timestamp::as_millis);
                        blocks.push_from(0, key, ts, p.json, chunk, p.conditions);
                    }
                    Err(e) if options.strict => {
                        bad = Some(Stop::Strict(line_no, e.to_string()));
                        break;
                    }
                    Err(e) => {
                        let _ = writeln!(errors, "line {line_no}: {e}");
                    }
                }
            }
            let chunk_max = blocks.finish_from(chunk, |_, r| batch.push(r));
            m.set_processing_time(clock.now_ms());
            if !batch.is_empty() {
                // The batch holds every event: their `max_before` are the steps.
                m.events(&mut batch, max, &[], &mut out);
            }
            max = max_of(max, chunk_max);
            m.advance_to(max, false, &mut out);
            // A failure comes before a bad line after it: the batch holds
            // only the events before that.
            if let Some((skip, _)) = m.failure() {
                return Err(Stop::Skip(skip));
            }
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
    m.set_processing_time(clock.now_ms());
    m.advance_to(max, flush, &mut out);
    // Buffered events may run into a failure at the flush.
    let result = match (result, m.failure()) {
        (Ok(()), Some((skip, _))) => Err(Stop::Skip(skip)),
        (r, _) => r,
    };
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
        if let Some((skip, _)) = m.failure() {
            return Err(Stop::Skip(skip));
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
                    if let Some((skip, _)) = m.failure() {
                        return Err(Stop::Skip(skip));
                    }
                }
                Err(e) if options.strict => return Err(Stop::Strict(line_no, e.to_string())),
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

/// `--workers N` against one worker: failed reads and writes, closed
/// outputs, `--strict` races and random short streams.
#[cfg(test)]
mod workers_tests {
    use std::io::{self, Cursor, Read, Write};

    use ferrocep_core::spec::{Format, Spec, SpecSet};

    use super::run_with;
    use crate::clock::SystemClock;
    use crate::matcher::Plan;
    use crate::options::{EndOfInput, Options};

    const SPEC: &str = r#"{
      "key": "order_id",
      "time": {"field": "ts", "max_out_of_orderness": "1s"},
      "within": "5s",
      "stages": [
        {"name": "create", "where": "type == \"create\""},
        {"name": "pay", "contiguity": "followed_by", "where": "type == \"pay\""}
      ]
    }"#;

    fn spec_set() -> SpecSet {
        SpecSet::new(vec![Spec::from_str(SPEC, Format::Json).unwrap()]).unwrap()
    }

    fn sorted_lines(out: Vec<u8>) -> Vec<String> {
        let mut lines: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort_unstable();
        lines
    }

    /// About 1.3 MB of orders over 3,000 keys: several input chunks.
    fn orders() -> Vec<u8> {
        let mut s = String::new();
        for i in 0..16_000u64 {
            let (key, ts) = (i % 3_000, 1_000 * i);
            let kind = if i % 3 == 2 { "pay" } else { "create" };
            s.push_str(&format!(
                "{{\"order_id\":\"order-{key}\",\"type\":\"{kind}\",\"ts\":{ts},\"note\":\"padding to make lines longer\"}}\n"
            ));
        }
        assert!(s.len() > 4 * crate::input::CHUNK);
        s.into_bytes()
    }

    /// Reads `data`, then fails once `fail_at` bytes are read.
    struct FailingReader {
        data: Cursor<Vec<u8>>,
        fail_at: u64,
    }

    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let left = self.fail_at.saturating_sub(self.data.position());
            if left == 0 {
                return Err(io::Error::other("the disk went away"));
            }
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            self.data.read(&mut buf[..n])
        }
    }

    /// Takes `limit` bytes, then fails with `kind`.
    struct FailingWriter<'a> {
        out: &'a mut Vec<u8>,
        limit: usize,
        kind: io::ErrorKind,
    }

    impl Write for FailingWriter<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.out.len() + buf.len() > self.limit {
                return Err(io::Error::new(self.kind, "the disk is full"));
            }
            self.out.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn run<R: Read + Send + 'static>(
        input: R,
        workers: usize,
        limit: usize,
        kind: io::ErrorKind,
    ) -> (Result<(), String>, Vec<String>) {
        run_with_strict(input, workers, limit, kind, false)
    }

    fn run_with_strict<R: Read + Send + 'static>(
        input: R,
        workers: usize,
        limit: usize,
        kind: io::ErrorKind,
        strict: bool,
    ) -> (Result<(), String>, Vec<String>) {
        let set = spec_set();
        let mut out = Vec::new();
        let options = Options {
            end_of_input: EndOfInput::Flush,
            strict,
            workers,
            chunk_size: crate::input::CHUNK,
            // More than two workers read as from a live input: one thread
            // reads, the workers parse.
            live_input: workers > 2,
        };
        let writer = FailingWriter {
            out: &mut out,
            limit,
            kind,
        };
        let plan = Plan::new(&set, &[]).unwrap();
        let result = run_with(
            &set,
            &plan,
            input,
            writer,
            &mut io::sink(),
            &options,
            &SystemClock,
        );
        (result.map_err(|f| f.to_string()), sorted_lines(out))
    }

    /// In event time conditions read the run's clock as the current
    /// processing time (Flink's `ctx.currentProcessingTime()`), with one
    /// worker or several.
    #[test]
    fn event_time_conditions_see_the_clock() {
        use std::sync::{Arc, Mutex};

        use ferrocep_core::spec::JsonEvent;
        use ferrocep_core::Pattern;

        let set = spec_set();
        let input: String = (0..50)
            .map(|i| {
                format!(
                    "{{\"order_id\":\"o{}\",\"type\":\"create\",\"ts\":{}}}\n",
                    i % 7,
                    i * 100
                )
            })
            .collect();
        for workers in [1, 3] {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let s = seen.clone();
            let mut plan = Plan::new(&set, &[]).unwrap();
            let p = Pattern::<JsonEvent>::begin("create").where_ctx(move |_e: &JsonEvent, ctx| {
                s.lock().unwrap().push(ctx.current_processing_time());
                true
            });
            plan.nfas = vec![std::sync::Arc::new(p.compile().unwrap())];
            let clock = crate::clock::ManualClock::new(42_000);
            let options = Options {
                workers,
                ..Options::default()
            };
            run_with(
                &set,
                &plan,
                Cursor::new(input.clone().into_bytes()),
                io::sink(),
                &mut io::sink(),
                &options,
                &clock,
            )
            .unwrap();
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 50, "--workers {workers}");
            assert!(
                seen.iter().all(|&t| t == 42_000),
                "--workers {workers}: {seen:?}"
            );
        }
    }

    #[test]
    fn a_failed_read_ends_every_worker_count_alike() {
        let data = orders();
        let fail_at = data.len() as u64 * 2 / 3;
        let read = || FailingReader {
            data: Cursor::new(data.clone()),
            fail_at,
        };
        let (one, one_lines) = run(read(), 1, usize::MAX, io::ErrorKind::Other);
        let whole = run(
            Cursor::new(data.clone()),
            1,
            usize::MAX,
            io::ErrorKind::Other,
        )
        .1;
        let err = one.clone().unwrap_err();
        assert!(
            err.contains("reading input") && err.contains("the disk went away"),
            "{err}"
        );
        // What was read is matched; a failed input is not flushed.
        assert!(one_lines.len() > 1_000 && one_lines.len() < whole.len());
        for workers in [2, 3, 5] {
            let (many, lines) = run(read(), workers, usize::MAX, io::ErrorKind::Other);
            assert_eq!(many, one, "--workers {workers}");
            assert!(lines == one_lines, "--workers {workers}: outputs differ");
        }
    }

    #[test]
    fn a_failed_write_stops_every_worker() {
        let data = orders();
        for workers in [1, 2, 3, 5] {
            let (result, lines) = run(
                Cursor::new(data.clone()),
                workers,
                64 * 1024,
                io::ErrorKind::Other,
            );
            let err = result.unwrap_err();
            assert!(
                err.contains("writing output") && err.contains("the disk is full"),
                "--workers {workers}: {err}"
            );
            assert!(lines.len() < 2_000, "--workers {workers}: stopped early");
        }
    }

    #[test]
    fn a_closed_output_ends_the_run_quietly() {
        let data = orders();
        for workers in [1, 2, 5] {
            let (result, _) = run(
                Cursor::new(data.clone()),
                workers,
                10_000,
                io::ErrorKind::BrokenPipe,
            );
            assert_eq!(result, Ok(()), "--workers {workers}");
        }
    }

    #[test]
    fn strict_in_the_last_chunk_never_flushes() {
        // The thread that finds the end of the input may get there before
        // the one that parses the bad line: the stop must win all the same.
        let input = b"{\"order_id\":\"a\",\"type\":\"create\",\"ts\":1000}\nnot json\n".to_vec();
        for workers in [2, 3, 5] {
            for _ in 0..300 {
                let (result, lines) = run_with_strict(
                    Cursor::new(input.clone()),
                    workers,
                    usize::MAX,
                    io::ErrorKind::Other,
                    true,
                );
                let err = result.unwrap_err();
                assert!(
                    err.contains("line 2: ") && err.contains("--strict"),
                    "{err}"
                );
                assert!(lines.is_empty(), "--workers {workers}: {lines:?}");
            }
        }
    }

    /// A deterministic pseudo-random source (64-bit LCG, high bits).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    /// Runs `input` whole, in chunks of `chunk_size` bytes: the result, the
    /// outputs (sorted) and the bad-line reports (in order).
    fn run_in_chunks(input: &[u8], options: &Options) -> (Result<(), String>, Vec<String>, String) {
        let set = spec_set();
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        let plan = Plan::new(&set, &[]).unwrap();
        let input = Cursor::new(input.to_vec());
        let result = run_with(
            &set,
            &plan,
            input,
            &mut out,
            &mut errors,
            options,
            &SystemClock,
        );
        let errors = String::from_utf8(errors).unwrap();
        (result.map_err(|f| f.to_string()), sorted_lines(out), errors)
    }

    /// Several random specs over one random stream (out of order, late
    /// lines, ties, random out-of-orderness and chunk sizes): the lines an
    /// operator skips (ones its pattern cannot start, of keys it holds no
    /// state for) change nothing: each pattern's output, in order, equals
    /// that of a run that feeds every line to every operator.
    #[test]
    fn skipping_lines_that_cannot_start_changes_nothing() {
        const WHERES: [&str; 6] = [
            r#"type == \"a\" && v < 5"#,
            r#"type == \"a\" && v >= 5"#,
            r#"type == \"c\""#,
            r#"type != \"b\""#,
            r#"type == \"b\" && v > 3"#,
            r#"v <= 4"#,
        ];
        let mut rng = Rng(20_261_208);
        crate::matcher::QUIET_SKIPS.with(|c| c.set(0));
        for case in 0..300 {
            let ooo = [0, 3, 20][rng.below(3) as usize];
            let specs: Vec<Spec> = (0..2 + rng.below(3))
                .map(|i| {
                    let w = |rng: &mut Rng| WHERES[rng.below(6) as usize];
                    let stages = match rng.below(3) {
                        0 => format!(
                            r#"[{{"name": "a", "where": "{}"}},
                                {{"name": "b", "contiguity": "followed_by", "where": "{}"}}]"#,
                            w(&mut rng),
                            w(&mut rng)
                        ),
                        1 => format!(
                            r#"[{{"name": "a", "where": "{}", "times_or_more": 2}},
                                {{"name": "b", "contiguity": "next", "where": "{}"}},
                                {{"name": "c", "contiguity": "not_followed_by", "where": "{}"}}]"#,
                            w(&mut rng),
                            w(&mut rng),
                            w(&mut rng)
                        ),
                        _ => format!(
                            r#"[{{"name": "a", "where": "{}", "one_or_more": true}},
                                {{"name": "b", "contiguity": "followed_by_any", "where": "{}"}}]"#,
                            w(&mut rng),
                            w(&mut rng)
                        ),
                    };
                    let text = format!(
                        r#"{{"name": "p{i}", "key": "k", "time": {{"field": "ts",
                            "max_out_of_orderness": "{ooo}ms"}}, "within": "{}ms",
                            "skip": "skip_past_last_event", "stages": {stages}}}"#,
                        20 + rng.below(180)
                    );
                    Spec::from_str(&text, Format::Json).unwrap()
                })
                .collect();
            let labels: Vec<String> = (0..specs.len()).map(|i| format!("p{i}")).collect();
            let set = SpecSet::new(specs).unwrap();
            let plan = Plan::new(&set, &labels).unwrap();
            let mut input = String::new();
            let mut ts = rng.below(100) as i64 - 60;
            // Stretches of lines in order that start few patterns, so that
            // whole chunks are skipped at once.
            let mut quiet = false;
            for id in 0..30 + rng.below(80) {
                if rng.below(8) == 0 {
                    quiet = !quiet;
                }
                let (kind, v) = if quiet {
                    ts += rng.below(6) as i64;
                    (["d", "q"][rng.below(2) as usize], 9)
                } else {
                    ts += rng.below(40) as i64 - 8;
                    (["a", "b", "c", "d"][rng.below(4) as usize], rng.below(10))
                };
                input.push_str(&format!(
                    "{{\"id\": {id}, \"type\": \"{kind}\", \"v\": {v}, \"ts\": {ts}, \"k\": \"k{}\"}}\n",
                    rng.below(6)
                ));
            }
            let options = Options {
                end_of_input: if rng.below(2) == 0 {
                    EndOfInput::Flush
                } else {
                    EndOfInput::Stop
                },
                strict: false,
                workers: 1,
                chunk_size: 1 + rng.below(400) as usize,
                live_input: false,
            };
            let run = |no_skip: bool| {
                crate::matcher::NO_SKIP.with(|c| c.set(no_skip));
                let (mut out, mut errors) = (Vec::new(), Vec::new());
                let result = run_with(
                    &set,
                    &plan,
                    Cursor::new(input.clone().into_bytes()),
                    &mut out,
                    &mut errors,
                    &options,
                    &SystemClock,
                );
                crate::matcher::NO_SKIP.with(|c| c.set(false));
                assert!(result.is_ok(), "case {case}");
                // Each pattern's lines, in order.
                let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
                for line in String::from_utf8(out).unwrap().lines() {
                    let p = line.split("\"pattern\":\"").nth(1).unwrap_or("");
                    let p = p.split('"').next().unwrap_or("").to_string();
                    by.entry(p).or_default().push(line.to_string());
                }
                by
            };
            let skipping = run(false);
            let feeding = run(true);
            assert!(
                skipping == feeding,
                "case {case}:\n{input}\n{skipping:#?}\nagainst\n{feeding:#?}"
            );
        }
        // The whole-batch skip was taken (often: it is the common case).
        let quiet = crate::matcher::QUIET_SKIPS.with(std::cell::Cell::get);
        assert!(quiet > 100, "{quiet} batches skipped whole");
    }

    /// Short streams in chunks of a few lines or less, so that the threads
    /// race on every chunk: every worker count must give what one gives.
    #[test]
    fn tiny_chunks_give_what_one_worker_gives() {
        let mut rng = Rng(7);
        for case in 0..400 {
            let mut input = String::new();
            let mut t = 1_000i64;
            for _ in 0..rng.below(120) {
                t += rng.below(700) as i64;
                // Some out of order, some late, a few at or before 0.
                let ts = t - rng.below(1_500) as i64;
                let key = rng.below(6);
                let line = match rng.below(40) {
                    0 => "not json".to_string(),
                    1 => format!("{{\"order_id\":\"k{key}\",\"type\":\"pay\"}}"),
                    2 => String::new(),
                    n => {
                        let kind = if n % 2 == 0 { "create" } else { "pay" };
                        format!("{{\"order_id\":\"k{key}\",\"type\":\"{kind}\",\"ts\":{ts}}}")
                    }
                };
                input.push_str(&line);
                input.push('\n');
            }
            let mut options = Options {
                end_of_input: if rng.below(2) == 0 {
                    EndOfInput::Flush
                } else {
                    EndOfInput::Stop
                },
                strict: rng.below(3) == 0,
                workers: 1,
                chunk_size: 1 + rng.below(300) as usize,
                live_input: rng.below(2) == 0,
            };
            let one = run_in_chunks(input.as_bytes(), &options);
            for workers in [2, 3, 5] {
                options.workers = workers;
                let many = run_in_chunks(input.as_bytes(), &options);
                assert!(
                    many == one,
                    "case {case}, --workers {workers}, {options:?}:\n{input}\n{many:?}\nagainst\n{one:?}"
                );
            }
        }
    }
}
