//! Shared pieces of ferrocep's benchmarks (`publish = false`).
//!
//! - `benches/*.rs`: criterion micro-benchmarks of the hot paths
//!   (`cargo bench -p ferrocep-bench`);
//! - `src/bin/pending.rs`: memory per pending partial match;
//! - `src/bin/store_bench.rs`: the checkpoint store, redb vs fjall;
//! - `src/bin/ingest_load.rs`: events/s the HTTP source acknowledges, and
//!   reply latency, on loopback;
//! - `src/bin/lateness.rs`: how late `ferrocep run` delivers timeouts with
//!   1M partial matches pending (it starts the real binary);
//! - `bench/compare.sh` and `bench/memory.sh` at the repository root drive the
//!   side-by-side run against Flink and the memory runs.
//!
//! Nothing here asserts on timings.
#![warn(missing_docs)]

use std::fmt::Write as _;
use std::sync::Arc;

use ferrocep_core::nfa::{NfaOutput, NfaState, SharedBuffer};
use ferrocep_core::output::{MatchRef, OutputSink};
use ferrocep_core::time::Timestamp;
use ferrocep_core::Nfa;

/// A sink that only counts what the engine emits (it still reads the size of
/// every match, so the match view is not optimised away).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountingSink {
    /// Complete matches.
    pub matches: u64,
    /// Timed-out partial matches.
    pub timeouts: u64,
    /// Late events.
    pub late: u64,
    /// Events over all matches and timeouts.
    pub events: u64,
}

impl<K, E> OutputSink<K, E> for CountingSink {
    #[inline]
    fn on_match(&mut self, _key: &K, m: &MatchRef<'_, E>, _ts: Timestamp) {
        self.matches += 1;
        self.events += m.len() as u64;
    }
    #[inline]
    fn on_timeout(&mut self, _key: &K, m: &MatchRef<'_, E>, _at: Timestamp) {
        self.timeouts += 1;
        self.events += m.len() as u64;
    }
    #[inline]
    fn on_late(&mut self, _key: &K, _event: &E, _ts: Timestamp) {
        self.late += 1;
    }
}

impl<E> NfaOutput<E> for CountingSink {
    #[inline]
    fn on_match(&mut self, m: &MatchRef<'_, E>) {
        self.matches += 1;
        self.events += m.len() as u64;
    }
    #[inline]
    fn on_timeout(&mut self, m: &MatchRef<'_, E>, _at: i64) {
        self.timeouts += 1;
        self.events += m.len() as u64;
    }
}

/// Whether a benchmark binary runs for real (`cargo bench` passes `--bench`)
/// rather than once as a test (`cargo test --all-targets`): set-ups use their
/// full sizes only then, so that the test run stays quick.
pub fn full_size() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`, ...); `None`
/// where there is no procfs.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Current resident set size in bytes (`VmRSS`).
pub fn rss_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS")
}

/// Peak resident set size in bytes (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM")
}

/// Appends the create event of order `n` at `ts`, as `gen_orders.py` writes
/// it (without the newline):
/// `{"order_id":"o-<n>","user_id":"u-<k>","type":"create","ts":<ts>,"amount":<d>.<dd>}`.
/// The user and amount are derived from `n` (deterministic, no RNG).
pub fn order_create_line(out: &mut String, n: u64, ts: i64) {
    let mix = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let user = 1 + (mix >> 40) % 250_000;
    let cents = 500 + (mix >> 8) % 49_500;
    let _ = write!(
        out,
        "{{\"order_id\":\"o-{n}\",\"user_id\":\"u-{user}\",\"type\":\"create\",\"ts\":{ts},\"amount\":{}.{:02}}}",
        cents / 100,
        cents % 100
    );
}

/// The pay event of order `n` at `ts`, in the same form as
/// [`order_create_line`].
pub fn order_pay_line(out: &mut String, n: u64, ts: i64) {
    order_create_line(out, n, ts);
    // Same text with "create" replaced: keep one formatter.
    if let Some(p) = out.rfind("\"create\"") {
        out.replace_range(p..p + 8, "\"pay\"");
    }
}

/// Order events shaped like `gen_orders.py`'s (not the same random draws):
/// order `n` is created at `start + 10 n` ms (100 orders/s); 70 % pay within
/// the 10m window, 10 % pay too late, 20 % never. Lines are in timestamp
/// order (ties in creation order); the stream is cut after `events` lines.
pub fn order_workload(events: usize, start: i64) -> Vec<String> {
    let mut timed: Vec<(i64, u64, bool)> = Vec::with_capacity(events + events / 2);
    let orders = (events as u64 * 10).div_ceil(17).max(1);
    for n in 1..=orders {
        let ts = start + 10 * n as i64;
        timed.push((ts, n, false));
        let mix = n.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 11;
        let roll = mix % 100;
        let delay = (mix / 100) as i64;
        if roll < 70 {
            timed.push((ts + 1_000 + delay % 598_000, n, true));
        } else if roll < 80 {
            timed.push((ts + 600_000 + delay % 600_000, n, true));
        }
    }
    timed.sort_unstable();
    timed.truncate(events);
    timed
        .into_iter()
        .map(|(ts, n, pay)| {
            let mut s = String::with_capacity(112);
            if pay {
                order_pay_line(&mut s, n, ts);
            } else {
                order_create_line(&mut s, n, ts);
            }
            s
        })
        .collect()
}

/// One key's NFA driven the way Flink's `NFATestHarness` does (and
/// `ferrocep_core::nfa::NfaRunner`, without its owned copies of every match):
/// `advance_time(ts)` then `process(event, ts)`, with a counting output.
pub struct NfaDriver<E> {
    nfa: Arc<Nfa<E>>,
    buf: SharedBuffer<E>,
    state: NfaState,
    /// What the NFA emitted so far.
    pub out: CountingSink,
}

impl<E> NfaDriver<E> {
    /// A driver with a fresh key state and an empty shared buffer.
    pub fn new(nfa: Nfa<E>) -> Self {
        let state = nfa.initial_state();
        NfaDriver {
            nfa: Arc::new(nfa),
            buf: SharedBuffer::default(),
            state,
            out: CountingSink::default(),
        }
    }

    /// Advances time to `ts`, then processes `event` at `ts`.
    #[inline]
    pub fn step(&mut self, event: E, ts: i64) {
        self.nfa
            .advance_time(&mut self.buf, &mut self.state, ts, &mut self.out);
        self.nfa
            .process(&mut self.buf, &mut self.state, event, ts, &mut self.out);
    }

    /// Partial matches held (the start run excluded).
    pub fn partial_matches(&self) -> usize {
        self.state.num_partial_matches()
    }

    /// Events and nodes held by the shared buffer.
    pub fn buffer_stats(&self) -> (usize, usize) {
        (self.buf.num_events(), self.buf.num_nodes())
    }
}

/// The order-timeout job of the Flink oracle (`shared/oracle/flink/order-timeout.json`):
/// key `order_id`, event time on `ts`, `create` followed_by `pay` within 10m,
/// `skip_past_last_event`.
pub const ORDER_TIMEOUT_SPEC: &str = r#"{
  "name": "order-timeout",
  "key": "order_id",
  "time": {"field": "ts", "max_out_of_orderness": "0s"},
  "within": "10m",
  "skip": "skip_past_last_event",
  "stages": [
    {"name": "create", "where": "type == \"create\""},
    {"name": "pay", "contiguity": "followed_by", "where": "type == \"pay\""}
  ]
}"#;

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocep_core::spec::{Format, Spec};

    #[test]
    fn order_lines_ingest_as_the_spec_expects() {
        let spec = Spec::from_str(ORDER_TIMEOUT_SPEC, Format::Auto).unwrap();
        let mut line = String::new();
        order_create_line(&mut line, 42, 1_700_000_000_000);
        let ing = spec.ingest(&line).unwrap();
        assert_eq!(ing.key.as_deref(), Some("\"o-42\""));
        assert_eq!(
            ing.timestamp,
            Some(ferrocep_core::time::Timestamp::from_millis(
                1_700_000_000_000
            ))
        );
        assert!(ing.event.cond(0) && !ing.event.cond(1));
        line.clear();
        order_pay_line(&mut line, 42, 1_700_000_000_001);
        let ing = spec.ingest(&line).unwrap();
        assert!(!ing.event.cond(0) && ing.event.cond(1));
    }

    #[test]
    fn workload_is_sorted_and_cut() {
        let w = order_workload(1_000, 0);
        assert_eq!(w.len(), 1_000);
        let spec = Spec::from_str(ORDER_TIMEOUT_SPEC, Format::Auto).unwrap();
        let ts: Vec<i64> = w
            .iter()
            .map(|l| spec.ingest(l).unwrap().timestamp.unwrap().as_millis())
            .collect();
        assert!(ts.windows(2).all(|p| p[0] <= p[1]));
        let pays = w.iter().filter(|l| l.contains("\"pay\"")).count();
        assert!((200..500).contains(&pays), "{pays} pays");
    }

    #[test]
    fn rss_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes().unwrap() > 0);
            assert!(peak_rss_bytes().unwrap() >= rss_bytes().unwrap() / 2);
        }
    }
}
