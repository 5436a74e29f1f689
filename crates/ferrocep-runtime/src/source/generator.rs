//! The `generator` source: events made up on the spot, paced by the clock,
//! so that a pipeline runs with no external service.
//!
//! - `seed`: the reference job's cycle, one event per `interval`: user 1
//!   creates an order, user 2 creates one, user 2 pays it. Each create has a
//!   new order id (`o-1`, `o-2`, ...), so keyed by `order_id` user 1's
//!   orders time out and user 2's are paid.
//! - `orders`: `rate` orders a second from users `u-1` to `u-1000`, each paid
//!   with probability `pay_ratio` after a delay drawn from `pay_delay`; an
//!   event's `ts` lags its due time by up to `out_of_orderness`, so the
//!   stream is that much out of order (never more).
//!
//! Event `i` has position `i`. Each event has a due time relative to the
//! start (the first is due at once); it is sent once the clock reaches it,
//! all events due by then in one batch, and its `ts` is its due time on the
//! clock (less its lag). The events themselves (ids, users, amounts, types,
//! order and the distance between their times) depend only on the config and
//! `seed`, through ChaCha8 seeded with it: the same config gives the same
//! events again; only where `ts` starts depends on the clock at the start.
//! On a resume at position `k`, the events before `k` are made again but not
//! sent, and event `k` is due at once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write;
use std::time::Duration;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{events_in, fail, Batch, Source, SourceCtx, SourceError, SourceErrorKind, SourceMsg};
use crate::config::{DelayDistribution, GeneratorConfig, Workload};

/// Most events in one batch (a clock far ahead of the events makes them
/// all due at once).
const MAX_BATCH: usize = 8192;

/// Longest sleep between two looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Users of the `orders` workload.
const USERS: u64 = 1000;

/// Generates events (see the module docs).
#[derive(Debug, Clone)]
pub struct GeneratorSource {
    cfg: GeneratorConfig,
}

impl GeneratorSource {
    /// A generator of `cfg`'s workload; [`GeneratorSource::check`] says
    /// whether `cfg` is usable (`run` fails otherwise).
    pub fn new(cfg: GeneratorConfig) -> GeneratorSource {
        GeneratorSource { cfg }
    }

    /// Whether `cfg` can run: a rate above 0, a pay ratio in 0..=1, a
    /// uniform delay with `max >= mean`. The error names the field.
    pub fn check(cfg: &GeneratorConfig) -> Result<(), SourceError> {
        Gen::new(cfg)
            .map(|_| ())
            .map_err(|e| SourceError::new(SourceErrorKind::Config, e))
    }
}

/// The workload being generated.
enum Gen {
    Seed(SeedGen),
    Orders(Box<OrdersGen>),
}

impl Gen {
    fn new(cfg: &GeneratorConfig) -> Result<Gen, String> {
        match cfg.workload {
            Workload::Seed => Ok(Gen::Seed(SeedGen {
                i: 0,
                interval: cfg.interval.map_or(1000, |m| m.0),
            })),
            Workload::Orders => OrdersGen::new(cfg).map(|g| Gen::Orders(Box::new(g))),
        }
    }

    /// When the next event is due, ms after the start.
    fn next_due(&self) -> i64 {
        match self {
            Gen::Seed(g) => g.next_due(),
            Gen::Orders(g) => g.next_due(),
        }
    }

    /// Writes the next event into `line`, with the start at `t0`.
    fn emit(&mut self, t0: i64, line: &mut String) {
        match self {
            Gen::Seed(g) => g.emit(t0, line),
            Gen::Orders(g) => g.emit(t0, line),
        }
    }

    /// Moves on to event `i` without writing the ones before.
    fn skip_to(&mut self, i: u64) {
        match self {
            Gen::Seed(g) => g.i = i,
            Gen::Orders(g) => {
                let mut scratch = String::new();
                for _ in 0..i {
                    scratch.clear();
                    g.emit(0, &mut scratch);
                }
            }
        }
    }
}

/// The reference job's cycle.
struct SeedGen {
    /// The next event's number.
    i: u64,
    interval: i64,
}

impl SeedGen {
    fn next_due(&self) -> i64 {
        (self.i as i64).saturating_mul(self.interval)
    }

    fn emit(&mut self, t0: i64, line: &mut String) {
        let (cycle, step) = (self.i / 3, self.i % 3);
        // User 1's order of the cycle, then user 2's, which user 2 pays.
        let (user, order, kind) = match step {
            0 => (1, 2 * cycle + 1, "create"),
            1 => (2, 2 * cycle + 2, "create"),
            _ => (2, 2 * cycle + 2, "pay"),
        };
        let ts = t0 + self.next_due();
        let _ = write!(
            line,
            r#"{{"user_id":"{user}","order_id":"o-{order}","type":"{kind}","ts":{ts}}}"#
        );
        self.i += 1;
    }
}

/// A pay to come.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pay {
    /// Due, ms after the start (first: the heap is by due time).
    due: i64,
    /// The order's number.
    order: u64,
    user: u64,
    cents: u64,
    /// How far its `ts` is before its due time.
    lag: i64,
}

/// The pay delay distribution, in ms.
enum Delay {
    Exponential { mean: f64, cap: Option<i64> },
    Uniform { low: i64, high: i64 },
    Fixed(i64),
}

/// A realistic stream of orders.
struct OrdersGen {
    rng: ChaCha8Rng,
    /// Orders a millisecond.
    per_ms: f64,
    pay_ratio: f64,
    delay: Delay,
    out_of_orderness: i64,
    /// The next order's number (from 0; its id is one more).
    next_order: u64,
    pays: BinaryHeap<Reverse<Pay>>,
}

impl OrdersGen {
    fn new(cfg: &GeneratorConfig) -> Result<OrdersGen, String> {
        let rate = cfg.rate.unwrap_or(100.0);
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!("generator: rate must be above 0, not {rate}"));
        }
        let pay_ratio = cfg.pay_ratio.unwrap_or(0.8);
        if !(0.0..=1.0).contains(&pay_ratio) {
            return Err(format!(
                "generator: pay_ratio must be in 0..=1, not {pay_ratio}"
            ));
        }
        let (dist, mean, max) = match &cfg.pay_delay {
            Some(d) => (d.distribution, d.mean.map(|m| m.0), d.max.map(|m| m.0)),
            None => (DelayDistribution::Exponential, None, None),
        };
        let mean = mean.unwrap_or(120_000);
        let delay = match dist {
            DelayDistribution::Exponential => Delay::Exponential {
                mean: mean as f64,
                cap: max,
            },
            DelayDistribution::Uniform => match max {
                Some(max) if max >= mean => Delay::Uniform {
                    low: mean,
                    high: max,
                },
                Some(max) => {
                    return Err(format!(
                        "generator: pay_delay.max ({max} ms) must not be below pay_delay.mean ({mean} ms) for a uniform delay"
                    ))
                }
                None => {
                    return Err(
                        "generator: pay_delay.max is needed for a uniform delay (it is uniform between mean and max)"
                            .into(),
                    )
                }
            },
            DelayDistribution::Fixed => Delay::Fixed(mean),
        };
        // The seed's bytes, as they are: a fixed expansion that no library
        // update can change.
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&cfg.seed.unwrap_or(1).to_le_bytes());
        Ok(OrdersGen {
            rng: ChaCha8Rng::from_seed(seed),
            per_ms: rate / 1000.0,
            pay_ratio,
            delay,
            out_of_orderness: cfg.out_of_orderness.map_or(0, |m| m.0),
            next_order: 0,
            pays: BinaryHeap::new(),
        })
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.rng.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A lag in `0..=out_of_orderness`.
    fn lag(&mut self) -> i64 {
        match u64::try_from(self.out_of_orderness) {
            Ok(o) if o > 0 => self.below(o + 1) as i64,
            _ => 0,
        }
    }

    fn pay_delay(&mut self) -> i64 {
        match self.delay {
            Delay::Exponential { mean, cap } => {
                let d = (-mean * (1.0 - self.unit()).ln()) as i64;
                cap.map_or(d, |c| d.min(c))
            }
            Delay::Uniform { low, high } => low + self.below((high - low) as u64 + 1) as i64,
            Delay::Fixed(d) => d,
        }
    }

    fn create_due(&self, order: u64) -> i64 {
        (order as f64 / self.per_ms) as i64
    }

    fn next_due(&self) -> i64 {
        let create = self.create_due(self.next_order);
        match self.pays.peek() {
            Some(Reverse(p)) if p.due < create => p.due,
            _ => create,
        }
    }

    fn emit(&mut self, t0: i64, line: &mut String) {
        let create = self.create_due(self.next_order);
        let (kind, due, order, user, cents, lag) = match self.pays.peek() {
            Some(Reverse(p)) if p.due < create => {
                let Some(Reverse(p)) = self.pays.pop() else {
                    return;
                };
                ("pay", p.due, p.order, p.user, p.cents, p.lag)
            }
            _ => {
                let order = self.next_order;
                self.next_order += 1;
                let user = 1 + self.below(USERS);
                let cents = 500 + self.below(49_501);
                let lag = self.lag();
                if self.unit() < self.pay_ratio {
                    let due = create + self.pay_delay();
                    let lag = self.lag();
                    self.pays.push(Reverse(Pay {
                        due,
                        order,
                        user,
                        cents,
                        lag,
                    }));
                }
                ("create", create, order, user, cents, lag)
            }
        };
        let _ = write!(
            line,
            r#"{{"order_id":"o-{:06}","user_id":"u-{user}","type":"{kind}","amount":{}.{:02},"ts":{}}}"#,
            order + 1,
            cents / 100,
            cents % 100,
            t0 + due - lag
        );
    }
}

impl GeneratorSource {
    fn generate(&self, ctx: &SourceCtx) -> Result<(), String> {
        let mut gen = Gen::new(&self.cfg)?;
        let counter = events_in(&ctx.metrics, "generator");
        let limit = self.cfg.events.unwrap_or(u64::MAX);
        let mut pos = ctx.resume_from;
        gen.skip_to(pos);
        // A resumed run keeps its schedule's start, so the same events come
        // with the same timestamps.
        let t0 = match ctx.resume.as_ref().and_then(|r| r.t0) {
            Some(t0) if pos > 0 => t0,
            _ => ctx.clock.now_ms() - gen.next_due(),
        };
        let mut line = String::with_capacity(160);
        loop {
            if ctx.out.stop().is_raised() {
                return Ok(());
            }
            if pos >= limit {
                ctx.out.send(SourceMsg::End);
                return Ok(());
            }
            let now = ctx.clock.now_ms();
            let mut batch = Batch::default();
            while pos < limit && batch.len() < MAX_BATCH && t0 + gen.next_due() <= now {
                line.clear();
                gen.emit(t0, &mut line);
                batch.push(pos, line.as_bytes());
                pos += 1;
            }
            batch.resume = Some(super::Resume {
                position: pos,
                file: None,
                t0: Some(t0),
                kafka: None,
            });
            let n = batch.len();
            if n > 0 {
                counter.inc_by(n as u64);
                if !ctx.out.send(SourceMsg::Batch(batch)) {
                    return Ok(());
                }
            }
            if n == MAX_BATCH || pos >= limit {
                continue;
            }
            let wait = ctx.clock.wait_for(t0 + gen.next_due());
            std::thread::sleep(wait.min(POLL));
        }
    }
}

impl Source for GeneratorSource {
    fn kind(&self) -> &'static str {
        "generator"
    }

    fn run(self: Box<Self>, ctx: SourceCtx) -> Result<(), SourceError> {
        match self.generate(&ctx) {
            Ok(()) => Ok(()),
            Err(msg) => fail(&ctx.out, SourceErrorKind::Config, msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::{Millis, PayDelay};
    use crate::source::testing::test_ctx;
    use crate::source::Position;

    const T0: i64 = 1_733_580_000_000;

    fn cfg(workload: Workload) -> GeneratorConfig {
        GeneratorConfig {
            workload,
            interval: None,
            rate: None,
            pay_ratio: None,
            pay_delay: None,
            out_of_orderness: None,
            seed: None,
            events: None,
        }
    }

    /// Runs `cfg` from `resume_from` on a manual clock standing at `T0`,
    /// moving it by `step` whenever no event comes for a few ms, until the
    /// generator ends.
    fn run(cfg: GeneratorConfig, resume_from: Position, step: i64) -> Vec<(Position, String)> {
        let clock = ManualClock::new(T0);
        let t = test_ctx(Arc::new(clock.clone()), resume_from);
        let ctx = t.ctx.clone();
        let h = std::thread::spawn(move || Box::new(GeneratorSource::new(cfg)).run(ctx));
        let deadline = Instant::now() + Duration::from_secs(60);
        // The generator reads its schedule's start from the clock when it
        // starts: the clock stands still until its first event (or, for one
        // that waits for the clock first, a while), or a slow start on a
        // loaded machine would shift every timestamp.
        let started = Instant::now();
        let mut out = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "no end after {} events",
                out.len()
            );
            match t.rx.recv_timeout(Duration::from_millis(5)) {
                Ok(SourceMsg::Batch(b)) => out.extend(
                    b.records
                        .iter()
                        .map(|r| (r.pos, String::from_utf8_lossy(b.bytes(r)).into_owned())),
                ),
                Ok(SourceMsg::End) => break,
                Ok(other) => panic!("{other:?}"),
                Err(_) if out.is_empty() && started.elapsed() < Duration::from_millis(500) => {}
                Err(_) => clock.advance(step),
            }
        }
        assert_eq!(h.join().expect("thread"), Ok(()));
        out
    }

    fn json(line: &str) -> serde_json::Value {
        serde_json::from_str(line).expect("generated JSON")
    }

    #[test]
    fn seed_is_the_reference_cycle_one_event_per_interval() {
        let mut c = cfg(Workload::Seed);
        c.events = Some(6);
        let got = run(c, 0, 1000);
        let want: Vec<(Position, String)> = [
            r#"{"user_id":"1","order_id":"o-1","type":"create","ts":1733580000000}"#,
            r#"{"user_id":"2","order_id":"o-2","type":"create","ts":1733580001000}"#,
            r#"{"user_id":"2","order_id":"o-2","type":"pay","ts":1733580002000}"#,
            r#"{"user_id":"1","order_id":"o-3","type":"create","ts":1733580003000}"#,
            r#"{"user_id":"2","order_id":"o-4","type":"create","ts":1733580004000}"#,
            r#"{"user_id":"2","order_id":"o-4","type":"pay","ts":1733580005000}"#,
        ]
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64, s.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn seed_waits_for_the_clock() {
        let clock = ManualClock::new(T0);
        let t = test_ctx(Arc::new(clock.clone()), 0);
        let mut c = cfg(Workload::Seed);
        c.interval = Some(Millis(500));
        let ctx = t.ctx.clone();
        let h = std::thread::spawn(move || Box::new(GeneratorSource::new(c)).run(ctx));
        let first =
            t.rx.recv_timeout(Duration::from_secs(10))
                .expect("first event");
        assert!(matches!(first, SourceMsg::Batch(ref b) if b.len() == 1));
        // The clock does not move: nothing more comes.
        assert!(t.rx.recv_timeout(Duration::from_millis(100)).is_err());
        clock.advance(1000);
        match t.rx.recv_timeout(Duration::from_secs(10)) {
            Ok(SourceMsg::Batch(b)) => {
                let pos: Vec<u64> = b.records.iter().map(|r| r.pos).collect();
                assert_eq!(pos, [1, 2]);
            }
            other => panic!("{other:?}"),
        }
        let asked = Instant::now();
        t.stop.raise();
        assert_eq!(h.join().expect("thread"), Ok(()));
        assert!(asked.elapsed() < Duration::from_secs(2));
        assert!(t
            .metrics
            .encode()
            .contains("ferrocep_events_in_total{source=\"generator\"} 3"));
    }

    fn orders(seed: u64, events: u64) -> GeneratorConfig {
        let mut c = cfg(Workload::Orders);
        c.seed = Some(seed);
        c.events = Some(events);
        c.out_of_orderness = Some(Millis(5000));
        c
    }

    #[test]
    fn orders_are_the_same_for_the_same_seed() {
        let a = run(orders(7, 3000), 0, 30_000);
        let b = run(orders(7, 3000), 0, 30_000);
        assert_eq!(a.len(), 3000);
        assert_eq!(a, b);
        let c = run(orders(8, 3000), 0, 30_000);
        assert_ne!(a, c);
        let first = json(&a[0].1);
        assert_eq!(first["order_id"], "o-000001");
        assert_eq!(first["type"], "create");
        assert!(
            first["amount"].is_f64()
                && first["user_id"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("u-"))
        );
        // Positions count events from 0.
        assert!(a.iter().enumerate().all(|(i, (p, _))| *p == i as u64));
    }

    #[test]
    fn a_resume_continues_with_the_same_events() {
        let whole = run(orders(3, 400), 0, 30_000);
        let rest = run(orders(3, 400), 150, 30_000);
        assert_eq!(rest.len(), 250);
        let shift = json(&rest[0].1)["ts"].as_i64().unwrap_or(0)
            - json(&whole[150].1)["ts"].as_i64().unwrap_or(0);
        for ((p, a), (q, b)) in whole[150..].iter().zip(&rest) {
            assert_eq!(p, q);
            let (mut a, mut b) = (json(a), json(b));
            let ta = a["ts"].as_i64().unwrap_or(0);
            let tb = b["ts"].as_i64().unwrap_or(0);
            assert_eq!(tb - ta, shift, "{a} {b}");
            a["ts"] = 0.into();
            b["ts"] = 0.into();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn about_pay_ratio_of_orders_are_paid_and_after_their_create() {
        let mut c = cfg(Workload::Orders);
        c.pay_ratio = Some(0.8);
        // Each pay comes before the next order: the first 10,000 orders and
        // their pays are all in.
        c.pay_delay = Some(PayDelay {
            distribution: DelayDistribution::Fixed,
            mean: Some(Millis(1)),
            max: None,
        });
        c.events = Some(20_000);
        let got = run(c, 0, 60_000);
        let mut created = std::collections::HashMap::new();
        let mut pays = 0;
        for (_, line) in &got {
            let e = json(line);
            let id = e["order_id"].as_str().unwrap_or_default().to_string();
            let ts = e["ts"].as_i64().unwrap_or(0);
            if e["type"] == "create" {
                created.insert(id, ts);
            } else {
                pays += 1;
                assert_eq!(created.get(&id).map(|t| ts - t), Some(1), "{line}");
            }
        }
        let orders = created.len();
        assert!(orders >= 10_000, "{orders}");
        let ratio = pays as f64 / orders as f64;
        assert!((0.78..0.82).contains(&ratio), "{ratio}");
    }

    #[test]
    fn timestamps_lag_by_at_most_out_of_orderness() {
        let mut c = orders(1, 10_000);
        c.pay_delay = Some(PayDelay {
            distribution: DelayDistribution::Exponential,
            mean: Some(Millis(3000)),
            max: Some(Millis(20_000)),
        });
        let got = run(c, 0, 30_000);
        let mut max = i64::MIN;
        let mut out_of_order = 0;
        for (_, line) in &got {
            let ts = json(line)["ts"].as_i64().unwrap_or(0);
            assert!(ts >= max.saturating_sub(5000), "{ts} after {max}");
            out_of_order += usize::from(ts < max);
            max = max.max(ts);
        }
        assert!(out_of_order > 1000, "{out_of_order}");
    }

    #[test]
    fn uniform_delays_stay_between_mean_and_max() {
        let mut c = cfg(Workload::Orders);
        c.pay_delay = Some(PayDelay {
            distribution: DelayDistribution::Uniform,
            mean: Some(Millis(1000)),
            max: Some(Millis(3000)),
        });
        c.events = Some(5000);
        let got = run(c, 0, 10_000);
        // Orders created in the last 3 s may have their pay past the end:
        // they are left out, or short delays would count more.
        let last = got
            .last()
            .map_or(0, |(_, l)| json(l)["ts"].as_i64().unwrap_or(0));
        let mut created = std::collections::HashMap::new();
        let mut delays = Vec::new();
        for (_, line) in &got {
            let e = json(line);
            let id = e["order_id"].as_str().unwrap_or_default().to_string();
            let ts = e["ts"].as_i64().unwrap_or(0);
            match created.get(&id) {
                None => {
                    created.insert(id, ts);
                }
                Some(t) if *t <= last - 3000 => delays.push(ts - t),
                Some(_) => {}
            }
        }
        assert!(delays.len() > 1000);
        assert!(
            delays.iter().all(|d| (1000..=3000).contains(d)),
            "{delays:?}"
        );
        let mean = delays.iter().sum::<i64>() as f64 / delays.len() as f64;
        assert!((1900.0..2100.0).contains(&mean), "{mean}");
    }

    #[test]
    fn bad_configs_are_refused_naming_the_field() {
        let mut c = cfg(Workload::Orders);
        c.rate = Some(0.0);
        assert!(GeneratorSource::check(&c).is_err_and(|e| e.message().contains("rate")));
        let mut c = cfg(Workload::Orders);
        c.pay_ratio = Some(1.5);
        assert!(GeneratorSource::check(&c).is_err_and(|e| e.message().contains("pay_ratio")));
        let mut c = cfg(Workload::Orders);
        c.pay_delay = Some(PayDelay {
            distribution: DelayDistribution::Uniform,
            mean: Some(Millis(10)),
            max: None,
        });
        assert!(GeneratorSource::check(&c).is_err_and(|e| e.message().contains("pay_delay.max")));
        // `run` fails with the same message.
        let t = test_ctx(Arc::new(ManualClock::new(T0)), 0);
        let err = Box::new(GeneratorSource::new(c)).run(t.ctx.clone());
        assert!(err.is_err());
        assert!(matches!(t.rx.try_recv(), Ok(SourceMsg::Failed(_))));
        assert!(GeneratorSource::check(&cfg(Workload::Seed)).is_ok());
    }
}
