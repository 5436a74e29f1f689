//! A pattern change beside many pending orders: how long `Engine::apply`
//! takes on the engine thread, and how long the checkpoint that makes it
//! durable pauses matching, with `--orders` pending partial matches in
//! another pattern (default 1,000,000).
//!
//! ```text
//! change_bench [--orders N] [--rounds R]
//! ```
//!
//! An `Engine` runs two patterns the way `run` does: `orders` (the
//! order-timeout spec, 10 min window) fed `--orders` creates with distinct
//! ids (none times out), and `rule` (a small pattern over the same events).
//! Checkpoints are on and a first full checkpoint has been taken, as in a
//! running pipeline. Then, `--rounds` times (default 5), `rule` is replaced
//! by a spec with another window (its old version drains), and timed:
//! `apply` alone, then `Engine::checkpoint` (the engine thread's part of
//! the checkpoint the reply waits for; the commit runs on the checkpoint
//! thread while matching goes on). The same is measured with no pending
//! order, to show the cost does not grow with the other pattern's state.
//! Prints a markdown table of medians; asserts nothing but that each change
//! replaced the pattern.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ferrocep_core::spec::{Format, Spec};
use ferrocep_runtime::engine::{Change, Engine, EngineOptions, PatternDef, PendingPolicy};
use ferrocep_runtime::source::Batch;

const T0: i64 = 1_700_000_000_000;

const ORDERS: &str = r#"{"name":"orders","key":"order_id","time":{"field":"ts"},"within":"10m",
  "stages":[{"name":"create","where":"type == \"create\""},
            {"name":"pay","contiguity":"followed_by","where":"type == \"pay\""}]}"#;

fn rule(window_s: u32) -> Spec {
    let text = format!(
        r#"{{"name":"rule","key":"order_id","time":{{"field":"ts"}},"within":"{window_s}s",
  "stages":[{{"name":"big","where":"type == \"create\" && amount > {window_s}"}},
            {{"name":"pay","contiguity":"followed_by","where":"type == \"pay\""}}]}}"#
    );
    Spec::from_str(&text, Format::Json).expect("the rule spec")
}

fn engine(orders: usize) -> Engine {
    let specs = [
        (
            "orders".to_string(),
            Spec::from_str(ORDERS, Format::Json).expect("the orders spec"),
        ),
        ("rule".to_string(), rule(10)),
    ];
    let mut e = Engine::new(&specs, EngineOptions::default()).expect("engine");
    e.enable_checkpoints(true);
    let mut out = Vec::new();
    let mut pos = 0u64;
    let mut i = 0usize;
    while i < orders {
        let mut b = Batch::default();
        for _ in 0..4096.min(orders - i) {
            let line = format!(
                r#"{{"order_id":"o{i}","type":"create","amount":{},"ts":{}}}"#,
                i % 100,
                T0 + (i / 4) as i64
            );
            b.push(pos, line.as_bytes());
            pos += line.len() as u64 + 1;
            i += 1;
        }
        e.on_batch(&b, 0, &mut out);
        out.clear();
    }
    let _ = e.checkpoint();
    e
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let mut orders = 1_000_000usize;
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse().ok());
        match (a.as_str(), v) {
            ("--orders", Some(n)) => orders = n,
            ("--rounds", Some(n)) => rounds = n.max(1),
            _ => {
                eprintln!("usage: change_bench [--orders N] [--rounds R]");
                return ExitCode::from(2);
            }
        }
    }
    println!(
        "| pending orders (other pattern) | apply, median | checkpoint pause after it, median |"
    );
    println!("|---:|---:|---:|");
    for n in [0, orders] {
        let t = Instant::now();
        let mut e = engine(n);
        let fill = t.elapsed();
        let (mut apply, mut pause) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            let def = PatternDef::new("rule", rule(11 + r as u32));
            let mut out = Vec::new();
            let t = Instant::now();
            let done = e
                .apply(
                    &[Change::Put(Box::new(def))],
                    PendingPolicy::Drain,
                    &mut out,
                )
                .expect("the change applies");
            apply.push(t.elapsed());
            assert_eq!(done[0].action, "replaced");
            let t = Instant::now();
            let ck = e.checkpoint();
            pause.push(t.elapsed());
            drop(ck);
        }
        eprintln!("filled {n} orders in {fill:?}");
        println!(
            "| {n} | {:.3} ms | {:.3} ms |",
            median(apply).as_secs_f64() * 1e3,
            median(pause).as_secs_f64() * 1e3
        );
    }
    ExitCode::SUCCESS
}
