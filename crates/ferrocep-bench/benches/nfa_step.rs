//! `nfa_step`: one event through one key's NFA (advance time, then process),
//! per contiguity, in a steady state (events keep coming, partial matches
//! keep completing or expiring).
//!
//! - `next`: `a next b` within 1s over `a b x a b x ...`;
//! - `followed_by`: `a followed_by b` within 1s over `a x x b x x ...`;
//! - `one_or_more`: `a followed_by b+ followed_by c` within 50ms,
//!   `skip_past_last_event`, over `a b x b b c ...`.
//!
//! `operator_step/order_timeout` is the whole engine path of the headline job
//! minus IO: pre-ingested order events (about 9,000 open orders at any time)
//! through `CepOperator` in event time with a watermark after every event
//! (`String` keys looked up by `&str`: no allocation per event for the key).

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrocep_bench::{full_size, order_workload, CountingSink, NfaDriver, ORDER_TIMEOUT_SPEC};
use ferrocep_core::operator::{CepOperator, TimeDomain};
use ferrocep_core::pattern::{Pattern, SkipStrategy};
use ferrocep_core::spec::{Format, JsonEvent, Spec};
use ferrocep_core::time::{BoundedOutOfOrderness, Timestamp};

#[derive(Clone, Copy, Debug)]
struct Ev(u8);

fn is(k: u8) -> impl Fn(&Ev) -> bool + Send + Sync + 'static {
    move |e: &Ev| e.0 == k
}

const BATCH: u64 = 1_000;

fn run_stream(c: &mut Criterion, name: &str, pattern: Pattern<Ev>, cycle: &[u8]) {
    let mut d = NfaDriver::new(pattern.compile().unwrap());
    let events: Vec<Ev> = cycle.iter().map(|&k| Ev(k)).collect();
    let mut ts = 1_000_000i64;
    let mut i = 0usize;
    let mut g = c.benchmark_group("nfa_step");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function(name, |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                ts += 1;
                d.step(events[i], ts);
                i = if i + 1 == events.len() { 0 } else { i + 1 };
            }
        })
    });
    g.finish();
    black_box(d.out);
}

fn bench_nfa_step(c: &mut Criterion) {
    let (a, b_, x, c_) = (b'a', b'b', b'x', b'c');
    run_stream(
        c,
        "next",
        Pattern::begin("a")
            .where_(is(a))
            .next("b")
            .where_(is(b_))
            .within_ms(1_000),
        &[a, b_, x],
    );
    run_stream(
        c,
        "followed_by",
        Pattern::begin("a")
            .where_(is(a))
            .followed_by("b")
            .where_(is(b_))
            .within_ms(1_000),
        &[a, x, x, b_, x, x],
    );
    run_stream(
        c,
        "one_or_more",
        Pattern::begin_with_skip("a", SkipStrategy::SkipPastLastEvent)
            .where_(is(a))
            .followed_by("b")
            .where_(is(b_))
            .one_or_more()
            .followed_by("c")
            .where_(is(c_))
            .within_ms(50),
        &[a, b_, x, b_, b_, c_],
    );
}

fn bench_operator_step(c: &mut Criterion) {
    let spec = Spec::from_str(ORDER_TIMEOUT_SPEC, Format::Auto).unwrap();
    let n = if full_size() { 200_000 } else { 5_000 };
    let events: Vec<(String, JsonEvent, i64)> = order_workload(n, 1_700_000_000_000)
        .iter()
        .map(|l| {
            let ing = spec.ingest(l).unwrap();
            (
                ing.key.unwrap().into_string(),
                ing.event,
                ing.timestamp.unwrap().as_millis(),
            )
        })
        .collect();
    // Each replay of the workload is shifted past every window of the last.
    let shift = events.last().unwrap().2 - events[0].2 + 3_600_000;
    let mut op: CepOperator<String, JsonEvent> =
        CepOperator::new(Arc::new(spec.compile().unwrap()), TimeDomain::EventTime);
    let mut wm = BoundedOutOfOrderness::new(Duration::ZERO);
    let mut sink = CountingSink::default();
    let (mut i, mut offset) = (0usize, 0i64);
    let mut g = c.benchmark_group("operator_step");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("order_timeout", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let (key, ev, ts) = &events[i];
                let ts = ts + offset;
                op.process_element(
                    key.as_str(),
                    ev.clone(),
                    Timestamp::from_millis(ts),
                    &mut sink,
                );
                op.advance_watermark(wm.on_event(Timestamp::from_millis(ts)), &mut sink);
                i += 1;
                if i == events.len() {
                    i = 0;
                    offset += shift;
                }
            }
        })
    });
    g.finish();
    black_box(sink);
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_nfa_step, bench_operator_step
}
criterion_main!(benches);
