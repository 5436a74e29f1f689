//! `shared_buffer`: storing the events of a match and extracting it. The
//! pattern is k stages joined by `next` (`s0 next s1 next ... s(k-1)`), fed
//! `0 1 ... k-1` over and over: each event adds one node to the shared
//! buffer, every k-th completes a match of k events that is extracted,
//! emitted and released. One iteration is one whole match (k events).

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrocep_bench::NfaDriver;
use ferrocep_core::pattern::Pattern;

fn chain(k: u32) -> Pattern<u32> {
    let mut p = Pattern::begin("s0").where_(|e: &u32| *e == 0);
    for i in 1..k {
        p = p.next(format!("s{i}")).where_(move |e: &u32| *e == i);
    }
    p.within_ms(60_000)
}

fn bench_shared_buffer(c: &mut Criterion) {
    let mut g = c.benchmark_group("shared_buffer");
    for k in [2u32, 8, 32] {
        let mut d = NfaDriver::new(chain(k).compile().unwrap());
        let mut ts = 1_000_000i64;
        g.throughput(Throughput::Elements(u64::from(k)));
        g.bench_with_input(BenchmarkId::new("match_of_k", k), &k, |b, &k| {
            b.iter(|| {
                for e in 0..k {
                    ts += 1;
                    d.step(e, ts);
                }
            })
        });
        assert!(d.out.matches > 0 && d.out.events == d.out.matches * u64::from(k));
        assert_eq!(d.buffer_stats(), (0, 0), "a completed chain leaves nothing");
        black_box(d.out);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_shared_buffer
}
criterion_main!(benches);
