//! Memory per pending order: N orders are created (distinct `order_id`s, in
//! event time) and never paid, and the watermark never reaches their window,
//! so every one stays a pending partial match. Runs the real spec path of
//! `ferrocep match`: `Spec::ingest_with` → `CepOperator::process_element`
//! (keys `Option<Box<str>>`, the key's JSON text) → the bounded-out-of-orderness
//! watermark after every event.
//!
//! ```text
//! pending [--orders N] [--spec FILE] [--span-ms MS] [--write FILE]
//! ```
//!
//! - `--orders N` (default 1,000,000): pending orders to hold.
//! - `--spec FILE`: default the oracle's `order-timeout.json` (10m window), built in.
//! - `--span-ms MS` (default 540,000 = 9 min): the creates' timestamps are
//!   spread evenly over this span, which must be shorter than the window.
//! - `--write FILE`: only write the N create lines to FILE (for measuring
//!   `ferrocep match --end-of-input stop` on the same events) and exit.
//! - `--events-only`: only ingest the N create lines into a vector of
//!   events, as the engine stores them (each a `JsonEvent` and the
//!   allocation holding its text), and report `stored_event_bytes_per_order`:
//!   what "the stored event itself" costs, for reporting the engine's bytes
//!   per pending order beyond it.
//!
//! Reports `VmRSS` before the first event (after the spec is compiled) and
//! after the last, the bytes of the events' text the engine keeps, and
//! `bytes per pending order = (RSS after - RSS before - text bytes) / N`.
//! Output is `name: value` lines, read by `bench/memory.sh`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use ferrocep_bench::{order_create_line, peak_rss_bytes, rss_bytes, CountingSink};
use ferrocep_core::operator::{CepOperator, TimeDomain};
use ferrocep_core::spec::{Format, Ingested, JsonEvent, Spec};
use ferrocep_core::time::{BoundedOutOfOrderness, Timestamp, Watermark};

const START_MS: i64 = 1_700_000_000_000;

struct Args {
    orders: u64,
    spec: Option<PathBuf>,
    span_ms: i64,
    write: Option<PathBuf>,
    events_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        orders: 1_000_000,
        spec: None,
        span_ms: 540_000,
        write: None,
        events_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--orders" => {
                a.orders = value()?
                    .replace('_', "")
                    .parse()
                    .map_err(|e| format!("--orders: {e}"))?
            }
            "--spec" => a.spec = Some(PathBuf::from(value()?)),
            "--span-ms" => a.span_ms = value()?.parse().map_err(|e| format!("--span-ms: {e}"))?,
            "--write" => a.write = Some(PathBuf::from(value()?)),
            "--events-only" => a.events_only = true,
            "-h" | "--help" => {
                return Err(
                    "usage: pending [--orders N] [--spec FILE] [--span-ms MS] [--write FILE] [--events-only]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if a.orders == 0 || a.span_ms <= 0 {
        return Err("--orders and --span-ms must be positive".into());
    }
    Ok(a)
}

/// Timestamp of create `i` of `n`, spread evenly over `span` ms.
fn ts_of(i: u64, n: u64, span: i64) -> i64 {
    START_MS + ((i as u128 * span as u128) / n as u128) as i64
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pending: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let a = parse_args()?;
    let n = a.orders;
    let mut line = String::with_capacity(160);

    if let Some(path) = &a.write {
        let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 16, f);
        for i in 0..n {
            line.clear();
            order_create_line(&mut line, i + 1, ts_of(i, n, a.span_ms));
            line.push('\n');
            w.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
        }
        w.flush().map_err(|e| e.to_string())?;
        return Ok(());
    }

    let spec = match &a.spec {
        Some(p) => Spec::from_path(p),
        None => Spec::from_str(ferrocep_bench::ORDER_TIMEOUT_SPEC, Format::Auto),
    }
    .map_err(|e| e.to_string())?;
    let within = spec.within.ok_or("the spec needs a `within`")?;
    let within = i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
    if !spec.is_event_time() {
        return Err("the spec must be in event time (`time`)".into());
    }
    if a.span_ms >= within {
        return Err(format!(
            "--span-ms {} must be shorter than the window ({within} ms)",
            a.span_ms
        ));
    }
    if a.events_only {
        return stored_events(&spec, &a);
    }
    let ooo = spec
        .time
        .as_ref()
        .map_or(Duration::ZERO, |t| t.max_out_of_orderness);
    let nfa = Arc::new(spec.compile().map_err(|e| e.to_string())?);
    let mut op: CepOperator<Option<Box<str>>, JsonEvent> =
        CepOperator::new(nfa, TimeDomain::EventTime);
    let mut watermarks = BoundedOutOfOrderness::new(ooo);
    let mut sink = CountingSink::default();

    let rss_before = rss_bytes().ok_or("cannot read VmRSS from /proc/self/status")?;
    let started = Instant::now();
    let text_bytes = ingest_creates(&spec, &a, |ing| {
        let ts = ing.timestamp.map_or(0, Timestamp::as_millis);
        op.process_element(&ing.key, ing.event, Timestamp::from_millis(ts), &mut sink);
        op.advance_watermark(watermarks.on_event(Timestamp::from_millis(ts)), &mut sink);
    })?;
    // The events of the newest timestamp wait for a watermark past it: bring
    // time to the end of the span (still short of every window).
    op.advance_watermark(Watermark::from_millis(START_MS + a.span_ms), &mut sink);
    let secs = started.elapsed().as_secs_f64();
    let rss_after = rss_bytes().unwrap_or(0);
    let peak = peak_rss_bytes().unwrap_or(0);
    let (buf_events, buf_nodes) = op.buffer_stats();
    let partial = op.num_partial_matches();

    let grown = rss_after.saturating_sub(rss_before);
    let per_order_total = grown as f64 / n as f64;
    let per_order_engine = grown.saturating_sub(text_bytes) as f64 / n as f64;
    println!("orders: {n}");
    println!("span_ms: {}", a.span_ms);
    println!("window_ms: {within}");
    println!("seconds: {secs:.3}");
    println!("events_per_s: {:.0}", n as f64 / secs);
    println!("keys: {}", op.num_keys());
    println!("partial_matches: {partial}");
    println!("buffer_events: {buf_events}");
    println!("buffer_nodes: {buf_nodes}");
    println!(
        "outputs: matches={} timeouts={} late={}",
        sink.matches, sink.timeouts, sink.late
    );
    println!("rss_before_bytes: {rss_before}");
    println!("rss_after_bytes: {rss_after}");
    println!("peak_rss_bytes: {peak}");
    println!("event_text_bytes: {text_bytes}");
    println!(
        "event_text_bytes_per_order: {:.1}",
        text_bytes as f64 / n as f64
    );
    println!("bytes_per_order_total: {per_order_total:.1}");
    println!("bytes_per_order_beyond_text: {per_order_engine:.1}");
    println!(
        "summary: {n} pending orders: RSS {:.1} MiB -> {:.1} MiB (peak {:.1} MiB); \
         {per_order_total:.0} B/order, {per_order_engine:.0} B/order beyond the {:.0} B of event text",
        mib(rss_before),
        mib(rss_after),
        mib(peak),
        text_bytes as f64 / n as f64
    );
    if partial as u64 != n || sink.timeouts != 0 || sink.matches != 0 {
        return Err(format!(
            "expected {n} pending partial matches and no output, got {partial} pending, {} matches, {} timeouts",
            sink.matches, sink.timeouts
        ));
    }
    // Keep the state alive until after the measurement.
    drop(op);
    Ok(())
}

/// Makes the N create lines and hands each, ingested by `spec`, to `f`;
/// returns the bytes of their text.
fn ingest_creates(spec: &Spec, a: &Args, mut f: impl FnMut(Ingested)) -> Result<u64, String> {
    let n = a.orders;
    let mut line = String::with_capacity(160);
    let mut scratch = Vec::new();
    let mut text_bytes: u64 = 0;
    for i in 0..n {
        line.clear();
        order_create_line(&mut line, i + 1, ts_of(i, n, a.span_ms));
        let ing = spec
            .ingest_with(&line, &mut scratch)
            .map_err(|e| format!("generated line {}: {e}", i + 1))?;
        text_bytes += ing.event.raw().len() as u64;
        f(ing);
    }
    Ok(text_bytes)
}

/// `--events-only`: RSS of the N events alone, as the engine stores them.
fn stored_events(spec: &Spec, a: &Args) -> Result<(), String> {
    let n = a.orders;
    let rss_before = rss_bytes().ok_or("cannot read VmRSS from /proc/self/status")?;
    let mut events: Vec<JsonEvent> = Vec::with_capacity(n as usize);
    let text_bytes = ingest_creates(spec, a, |ing| events.push(ing.event))?;
    let rss_after = rss_bytes().unwrap_or(0);
    let per_event = rss_after.saturating_sub(rss_before) as f64 / n as f64;
    println!("orders: {n}");
    println!(
        "event_text_bytes_per_order: {:.1}",
        text_bytes as f64 / n as f64
    );
    println!("stored_event_bytes_per_order: {per_event:.1}");
    println!(
        "summary: {n} stored events alone: {per_event:.0} B each ({} B handle + the allocation \
         of its {:.0} B of text)",
        std::mem::size_of::<JsonEvent>(),
        text_bytes as f64 / n as f64
    );
    drop(events);
    Ok(())
}
