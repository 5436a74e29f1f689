//! `timers`: advancing event time over many keys. `order(create -> pay)
//! within W` in a steady state with P keys pending (P = 1 and 1,000,000; 1,000
//! when run as a test): each iteration creates one order on a new key at
//! `t + 1` and moves the watermark to `t + 1`, which fires two timers: the
//! new event's (it enters the NFA and opens a partial match) and the window
//! timer of the order created P ms earlier (it times out; its key is
//! dropped). The cost per iteration should not depend on P.
//! `advance_none_due` moves the watermark where no timer is due.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrocep_bench::{full_size, CountingSink};
use ferrocep_core::operator::{CepOperator, TimeDomain};
use ferrocep_core::pattern::Pattern;
use ferrocep_core::time::{Timestamp, Watermark};

#[derive(Clone, Copy, Debug)]
struct Ev {
    pay: bool,
}

const START: i64 = 1_700_000_000_000;

struct Steady {
    op: CepOperator<u64, Ev>,
    sink: CountingSink,
    t: i64,
}

impl Steady {
    fn new(pending: i64) -> Self {
        let nfa = Pattern::<Ev>::begin("create")
            .where_(|e: &Ev| !e.pay)
            .followed_by("pay")
            .where_(|e: &Ev| e.pay)
            .within_ms(pending)
            .compile()
            .unwrap();
        let mut s = Steady {
            op: CepOperator::new(Arc::new(nfa), TimeDomain::EventTime),
            sink: CountingSink::default(),
            t: START,
        };
        for _ in 0..pending {
            s.step();
        }
        assert_eq!(s.op.num_partial_matches() as i64, pending);
        s
    }

    #[inline]
    fn step(&mut self) {
        self.t += 1;
        let t = self.t;
        self.op.process_element(
            &(t as u64),
            Ev { pay: false },
            Timestamp::from_millis(t),
            &mut self.sink,
        );
        self.op
            .advance_watermark(Watermark::from_millis(t), &mut self.sink);
    }
}

fn bench_timers(c: &mut Criterion) {
    let big: i64 = if full_size() { 1_000_000 } else { 1_000 };
    let mut g = c.benchmark_group("timers");
    g.throughput(Throughput::Elements(1));
    for pending in [1, big] {
        let mut s = Steady::new(pending);
        g.bench_with_input(
            BenchmarkId::new("advance_fire_2/keys", pending),
            &pending,
            |b, _| b.iter(|| s.step()),
        );
        assert_eq!(s.op.num_keys() as i64, pending);
        let now = s.t;
        g.bench_with_input(
            BenchmarkId::new("advance_none_due/keys", pending),
            &pending,
            |b, _| {
                b.iter(|| {
                    s.op.advance_watermark(Watermark::from_millis(black_box(now)), &mut s.sink)
                })
            },
        );
        black_box(s.sink);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_timers
}
criterion_main!(benches);
