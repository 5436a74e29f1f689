//! `ferrocep match`: runs a spec over a JSON-lines stream, exactly as the
//! contract in `shared/spec/pattern-spec.md` section 3 says.
//!
//! Driving the engine:
//! - event time (the spec has `time`): for each good line, in input order,
//!   `process_element(key, event, ts)`, then the bounded-out-of-orderness
//!   watermark that follows the event (`max_ts - max_out_of_orderness - 1`)
//!   goes to `advance_time`. At the end of input, `flush` advances time to
//!   +infinity (`i64::MAX`, Flink's `MAX_WATERMARK`); `stop` leaves it at the
//!   last watermark, so buffered events newer than it are never processed.
//! - processing time (no `time`): each event is stamped with the wall clock on
//!   arrival; time advances to that stamp before the event. Nothing more
//!   happens at the end of input, as in Flink (see the oracle's NOTES.md).
//!
//! Input lines are read as the Flink oracle reads them
//! (`oracle/flink/src/JsonLineSource.java`): a UTF-8 byte-order mark on line 1
//! is dropped, the line is trimmed of ASCII whitespace and control characters,
//! and an empty line is a bad line (`line N: empty line`). Bad lines are
//! reported on stderr as `line N: reason` and skipped; with `--strict` the
//! first one ends the run with exit status 1.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ferrocep_core::operator::{CepOperator, TimeDomain};
use ferrocep_core::spec::Spec;
use ferrocep_core::time::{BoundedOutOfOrderness, MAX_WATERMARK};

use crate::cli::Failure;
use crate::output::{JsonLinesSink, KeyText};

/// What happens when a bounded input ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EndOfInput {
    /// The watermark jumps to +infinity: buffered events run and every
    /// windowed partial match times out (what Flink does when a bounded
    /// source ends).
    #[default]
    Flush,
    /// Time stays at the last watermark; nothing more is reported (a source
    /// that stays open and goes quiet).
    Stop,
}

/// The arguments of `ferrocep match`.
#[derive(Clone, Debug, clap::Args)]
pub struct MatchArgs {
    /// The pattern spec (YAML or JSON).
    #[arg(long, value_name = "SPEC")]
    pub spec: PathBuf,
    /// Events, one JSON object per line; `-` reads standard input.
    #[arg(long, value_name = "FILE|-")]
    pub input: PathBuf,
    /// What happens at the end of the input.
    #[arg(long, value_enum, default_value_t = EndOfInput::Flush, value_name = "MODE")]
    pub end_of_input: EndOfInput,
    /// Stop at the first bad input line (exit status 1) instead of reporting
    /// it and going on.
    #[arg(long)]
    pub strict: bool,
}

/// Runs `ferrocep match`, writing outputs to stdout and bad lines to stderr.
pub fn run(args: &MatchArgs) -> Result<(), Failure> {
    // Spec errors name the file, the line and the field themselves.
    let spec = Spec::from_path(&args.spec).map_err(|e| Failure::spec(e.to_string()))?;
    let input: Box<dyn BufRead> = if args.input.as_os_str() == "-" {
        Box::new(BufReader::with_capacity(1 << 16, io::stdin().lock()))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, open(&args.input)?))
    };
    let stdout = io::stdout();
    let out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let stderr = io::stderr();
    let mut errors = BufWriter::new(stderr.lock());
    let result = run_with(
        &spec,
        input,
        out,
        &mut errors,
        args.end_of_input,
        args.strict,
    );
    let _ = errors.flush();
    result
}

fn open(path: &Path) -> Result<File, Failure> {
    File::open(path)
        .map_err(|e| Failure::usage(format!("cannot open input '{}': {e}", path.display())))
}

/// Runs a parsed spec over `input`, writing outputs to `out` and bad-line
/// reports to `errors`. This is [`run`] without the process's streams.
pub fn run_with<R: BufRead, W: Write, D: Write>(
    spec: &Spec,
    mut input: R,
    out: W,
    errors: &mut D,
    end_of_input: EndOfInput,
    strict: bool,
) -> Result<(), Failure> {
    let nfa = spec.compile().map_err(|e| Failure::spec(e.to_string()))?;
    let domain = if spec.is_event_time() {
        TimeDomain::EventTime
    } else {
        TimeDomain::ProcessingTime
    };
    let mut op: CepOperator<KeyText, _> = CepOperator::new(Arc::new(nfa), domain);
    let mut sink = JsonLinesSink::new(out);
    let mut watermarks =
        BoundedOutOfOrderness::new(spec.time.as_ref().map_or(0, |t| t.max_out_of_orderness));
    let event_time = spec.is_event_time();

    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut scratch = Vec::new(); // field values, reused from line to line
    let mut line_no: u64 = 0;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| Failure::io(format!("reading input: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = decode(&buf, line_no);
        let text = text.trim_matches(|c: char| c <= ' ');
        let ingested = if text.is_empty() {
            Err(Cow::Borrowed("empty line"))
        } else {
            spec.ingest_with(text, &mut scratch)
                .map_err(|e| Cow::Owned(e.to_string()))
        };
        match ingested {
            Ok(ing) => {
                if event_time {
                    let ts = ing.timestamp.unwrap_or(0);
                    op.process_element(ing.key, ing.event, ts, &mut sink);
                    let wm = watermarks.on_event(ts);
                    op.advance_time(wm, &mut sink);
                } else {
                    let now = wall_clock_ms();
                    op.advance_time(now, &mut sink);
                    op.process_element(ing.key, ing.event, now, &mut sink);
                }
                if sink.has_error() {
                    break;
                }
            }
            Err(reason) if strict => {
                return Err(Failure::data(format!(
                    "line {line_no}: {reason} (stopped by --strict)"
                )));
            }
            Err(reason) => {
                let _ = writeln!(errors, "line {line_no}: {reason}");
            }
        }
    }
    if event_time && end_of_input == EndOfInput::Flush && !sink.has_error() {
        op.advance_time(MAX_WATERMARK, &mut sink);
    }
    match sink.finish() {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::io(format!("writing output: {e}"))),
    }
}

/// The line without its line ending, as text; bytes that are not UTF-8 become
/// U+FFFD (as Java's decoder does), and a byte-order mark on line 1 is dropped.
fn decode(buf: &[u8], line_no: u64) -> Cow<'_, str> {
    let mut bytes = buf;
    if let Some(b) = bytes.strip_suffix(b"\n") {
        bytes = b;
    }
    if line_no == 1 {
        if let Some(b) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
            bytes = b;
        }
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The wall clock in epoch milliseconds (processing time).
fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_strips_line_end_and_bom_on_first_line_only() {
        assert_eq!(decode(b"\xEF\xBB\xBF{}\r\n", 1), "{}\r");
        assert_eq!(decode(b"\xEF\xBB\xBF{}\n", 2), "\u{feff}{}");
        assert_eq!(decode(b"{\"a\":\"\xff\"}", 3), "{\"a\":\"\u{fffd}\"}");
    }
}
