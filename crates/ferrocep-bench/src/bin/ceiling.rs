//! The hand-specialised program of the performance issue, for measuring the
//! ceiling side by side with `ferrocep match`: the order-timeout job
//! (`create` followed by `pay` of the same `order_id` within 10 minutes,
//! skip past last event) written for this one job and nothing else.
//!
//! ```text
//! ceiling INPUT OUTPUT
//! ceiling --parse-only INPUT
//! ```
//!
//! Each line is parsed with serde_json into a borrowed struct; pending creates
//! sit in an Fx hash map keyed by order id; their deadlines in a FIFO queue
//! (creates arrive in time order in `gen_orders.py` workloads without
//! disorder, so the queue is sorted without a heap); output goes through a
//! buffered writer in the format of `ferrocep match`. At the end of the input
//! every pending order times out, as at Flink's final watermark. It assumes
//! in-order input and well-formed lines: no late events, no out-of-orderness
//! buffer, no dead letters, no pattern engine. That is what makes it a
//! ceiling and not a competitor; counts must equal `ferrocep match` on the
//! same file (bench/compare.sh checks it).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::process::ExitCode;

use rustc_hash::FxHashMap;
use serde::Deserialize;

const WINDOW_MS: i64 = 600_000;

#[derive(Deserialize)]
struct Order<'a> {
    #[serde(borrow)]
    order_id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    ts: i64,
}

/// A create waiting for its pay: its line, for the output.
struct Pending {
    line: Box<str>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [flag, input] if flag == "--parse-only" => parse_only(input),
        [input, output] => run(input, output),
        _ => {
            eprintln!("usage: ceiling INPUT OUTPUT | ceiling --parse-only INPUT");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok((matches, timeouts)) => {
            eprintln!("matches: {matches}\ntimeouts: {timeouts}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ceiling: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(input: &str, output: &str) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    let mut reader = BufReader::with_capacity(1 << 16, File::open(input)?);
    let mut out = BufWriter::with_capacity(1 << 16, File::create(output)?);
    let mut pending: FxHashMap<Box<str>, Pending> = FxHashMap::default();
    let mut deadlines: VecDeque<(i64, Box<str>)> = VecDeque::new();
    let (mut matches, mut timeouts) = (0u64, 0u64);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = std::str::from_utf8(&line)?.trim_end();
        if text.is_empty() {
            continue;
        }
        let order: Order = serde_json::from_str(text)?;
        // Flink times a partial match out once the watermark reaches its
        // start + window, before the events at that watermark run.
        while let Some((deadline, _)) = deadlines.front() {
            if *deadline > order.ts {
                break;
            }
            let (deadline, id) = deadlines.pop_front().expect("front exists");
            if let Some(p) = pending.remove(&id) {
                timeout(&mut out, &id, deadline, &p)?;
                timeouts += 1;
            }
        }
        match order.kind.as_ref() {
            "create" => {
                let id: Box<str> = order.order_id.as_ref().into();
                deadlines.push_back((order.ts + WINDOW_MS, id.clone()));
                pending.insert(id, Pending { line: text.into() });
            }
            "pay" => {
                if let Some(p) = pending.remove(order.order_id.as_ref()) {
                    write_match(&mut out, &order.order_id, &p, text)?;
                    matches += 1;
                }
            }
            _ => {}
        }
    }
    for (deadline, id) in deadlines {
        if let Some(p) = pending.remove(&id) {
            timeout(&mut out, &id, deadline, &p)?;
            timeouts += 1;
        }
    }
    out.flush()?;
    Ok((matches, timeouts))
}

/// Only reads and parses the lines: the issue's second reference figure
/// ("parsing JSON lines alone with serde_json").
fn parse_only(input: &str) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    let mut reader = BufReader::with_capacity(1 << 16, File::open(input)?);
    let mut line = Vec::new();
    let (mut creates, mut pays) = (0u64, 0u64);
    while {
        line.clear();
        reader.read_until(b'\n', &mut line)? > 0
    } {
        let order: Order = serde_json::from_str(std::str::from_utf8(&line)?.trim_end())?;
        match order.kind.as_ref() {
            "create" => creates += 1,
            _ => pays += 1,
        }
    }
    Ok((creates, pays))
}

fn write_key(out: &mut impl std::io::Write, key: &str) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, key).map_err(std::io::Error::other)
}

fn write_match(
    out: &mut impl std::io::Write,
    key: &str,
    create: &Pending,
    pay: &str,
) -> std::io::Result<()> {
    out.write_all(br#"{"kind":"match","key":"#)?;
    write_key(out, key)?;
    out.write_all(br#","events":{"create":["#)?;
    out.write_all(create.line.as_bytes())?;
    out.write_all(br#"],"pay":["#)?;
    out.write_all(pay.as_bytes())?;
    out.write_all(b"]}}\n")
}

fn timeout(
    out: &mut impl std::io::Write,
    key: &str,
    at: i64,
    create: &Pending,
) -> std::io::Result<()> {
    out.write_all(br#"{"kind":"timeout","key":"#)?;
    write_key(out, key)?;
    write!(out, r#","timeout_at":{at},"events":{{"create":["#)?;
    out.write_all(create.line.as_bytes())?;
    out.write_all(b"]}}\n")
}
