//! What every sink does the same way: taking batches off its queue, its
//! metrics, waiting by the injectable clock, backoff with full jitter, and
//! blocking IO off the async workers.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Queued, SinkCtx, SinkRx};
use crate::clock::SharedClock;
use crate::config::BackoffConfig;
use crate::metrics::Metrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Most outputs a stdout or file sink writes at once: enough to amortise a
/// write call, small enough to count progress often.
pub(crate) const MAX_WRITE_BATCH: usize = 1024;

/// A sink's own metrics, resolved once for its `sink` label.
pub(crate) struct SinkMetrics {
    /// Outputs queued or in flight.
    pub queue: Gauge,
    /// Outputs delivered.
    pub delivered: Counter,
    /// Retried attempts.
    pub retries: Counter,
    /// Outputs dead-lettered.
    pub dead_letters: Counter,
}

impl SinkMetrics {
    pub(crate) fn new(ctx: &SinkCtx) -> SinkMetrics {
        let l = Metrics::label("sink", &ctx.name);
        let m = &ctx.metrics;
        SinkMetrics {
            queue: m.sink_queue.get_or_create(&l).clone(),
            delivered: m.sink_delivered.get_or_create(&l).clone(),
            retries: m.sink_retries.get_or_create(&l).clone(),
            dead_letters: m.sink_dead_letters.get_or_create(&l).clone(),
        }
    }

    /// The queue gauge: what is still in the channel plus `in_flight`.
    pub(crate) fn set_queue(&self, rx: &SinkRx, in_flight: usize) {
        self.queue
            .set(i64::try_from(rx.len() + in_flight).unwrap_or(i64::MAX));
    }
}

/// Marks `n` more outputs finished with (queue order is the caller's).
pub(crate) fn finish(delivered: &AtomicU64, n: usize) {
    delivered.fetch_add(n as u64, Ordering::Release);
}

/// Waits for the next output, then takes whatever else is already queued,
/// up to `max` in `out` (cleared first). False once the queue is closed and
/// empty.
pub(crate) async fn recv_batch(rx: &mut SinkRx, out: &mut Vec<Queued>, max: usize) -> bool {
    out.clear();
    let Some(first) = rx.recv().await else {
        return false;
    };
    out.push(first);
    while out.len() < max {
        match rx.try_recv() {
            Some(o) => out.push(o),
            None => break,
        }
    }
    true
}

/// How long a sink waits for the rest of a burst before it writes.
pub(crate) const LINGER: Duration = Duration::from_millis(2);

/// When a burst is under way (more than one output was queued at once),
/// waits [`LINGER`] for the rest of it and takes that too, up to `max`: one
/// write then takes what would have been many, each a syscall and a hand-over
/// to a blocking thread. A lone output is written at once. Not cancel-safe:
/// call it outside `select!`.
pub(crate) async fn top_up(rx: &mut SinkRx, out: &mut Vec<Queued>, max: usize) {
    if out.len() < 2 || out.len() >= max {
        return;
    }
    tokio::time::sleep(LINGER).await;
    while out.len() < max {
        match rx.try_recv() {
            Some(o) => out.push(o),
            None => break,
        }
    }
}

/// Returns once `clock` reads `t` or later, calling `tick` at least every
/// 100 ms of real time meanwhile (to keep a gauge current while waiting).
pub(crate) async fn sleep_until(clock: &SharedClock, t: i64, mut tick: impl FnMut()) {
    loop {
        if clock.now_ms() >= t {
            return;
        }
        let wait = clock
            .wait_for(t)
            .clamp(Duration::from_millis(1), Duration::from_millis(100));
        tokio::time::sleep(wait).await;
        tick();
    }
}

/// Exponential backoff with full jitter (AWS's "full jitter": a uniform
/// delay between 0 and the exponential bound, which spreads the retries of
/// many clients).
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    initial_ms: f64,
    max_ms: f64,
    multiplier: f64,
}

impl Backoff {
    pub(crate) fn new(cfg: &BackoffConfig) -> Backoff {
        Backoff {
            initial_ms: cfg.initial.0.max(0) as f64,
            max_ms: cfg.max.0.max(0) as f64,
            multiplier: if cfg.multiplier.is_finite() && cfg.multiplier >= 1.0 {
                cfg.multiplier
            } else {
                1.0
            },
        }
    }

    /// For local IO errors (disk full, a closed descriptor): 100 ms doubling
    /// up to 5 s, so that recovery is noticed soon.
    pub(crate) fn local_io() -> Backoff {
        Backoff {
            initial_ms: 100.0,
            max_ms: 5_000.0,
            multiplier: 2.0,
        }
    }

    /// The exponential bound before retry `retry` (1 for the first retry).
    pub(crate) fn bound_ms(&self, retry: u32) -> u64 {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let b = (self.initial_ms * self.multiplier.powi(exp)).min(self.max_ms);
        if b.is_finite() {
            b.max(0.0) as u64
        } else {
            self.max_ms as u64
        }
    }

    /// The delay before retry `retry`: uniform in `0..=bound_ms(retry)`.
    pub(crate) fn delay_ms(&self, retry: u32) -> u64 {
        rand::random_range(0..=self.bound_ms(retry))
    }
}

/// Writes `buf[*off..]`, moving `*off` past what was written, so that a
/// retry after an error goes on where the last attempt stopped (a failed
/// `write` call writes nothing) and no byte is written twice.
pub(crate) fn write_from(w: &mut impl Write, buf: &[u8], off: &mut usize) -> io::Result<()> {
    while *off < buf.len() {
        match w.write(&buf[*off..]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => *off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    w.flush()
}

/// Runs blocking IO on tokio's blocking pool, so that a slow disk or a
/// stalled pipe never holds an async worker.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("{what}: the IO task failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Millis;

    #[test]
    fn backoff_grows_to_its_max_and_jitters_below_the_bound() {
        let b = Backoff::new(&BackoffConfig {
            initial: Millis(100),
            max: Millis(1_000),
            multiplier: 2.0,
        });
        assert_eq!(b.bound_ms(1), 100);
        assert_eq!(b.bound_ms(2), 200);
        assert_eq!(b.bound_ms(4), 800);
        assert_eq!(b.bound_ms(5), 1_000);
        assert_eq!(b.bound_ms(u32::MAX), 1_000);
        for retry in 1..20 {
            assert!(b.delay_ms(retry) <= b.bound_ms(retry));
        }
    }

    #[test]
    fn write_from_resumes_where_it_stopped() {
        struct Flaky {
            out: Vec<u8>,
            fail_after: usize,
        }
        impl Write for Flaky {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.out.len() >= self.fail_after {
                    self.fail_after = usize::MAX;
                    return Err(io::Error::other("disk full"));
                }
                let n = b.len().min(3);
                self.out.extend_from_slice(&b[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = Flaky {
            out: Vec::new(),
            fail_after: 5,
        };
        let mut off = 0;
        assert!(write_from(&mut w, b"hello world", &mut off).is_err());
        assert_eq!(off, 6);
        write_from(&mut w, b"hello world", &mut off).unwrap();
        assert_eq!(w.out, b"hello world");
    }
}

/// What the sink tests share.
#[cfg(test)]
pub(crate) mod testutil {
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::clock::{SharedClock, SystemClock};
    use crate::metrics::Metrics;
    use crate::sink::{Kind, Output, SinkCtx};

    /// A runtime like the pipeline's.
    pub fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// A context with its directories in `dir`.
    pub fn ctx(name: &str, dir: &Path) -> SinkCtx {
        ctx_with_clock(name, dir, Arc::new(SystemClock))
    }

    /// [`ctx`] with `clock`.
    pub fn ctx_with_clock(name: &str, dir: &Path, clock: SharedClock) -> SinkCtx {
        SinkCtx {
            name: name.into(),
            metrics: Arc::new(Metrics::new()),
            config_dir: dir.join("config"),
            data_dir: dir.join("data"),
            clock,
        }
    }

    /// Output number `i`.
    pub fn out(i: usize) -> Output {
        Output::new(
            Kind::Timeout,
            &format!("p/t/{i}"),
            format!("{{\"id\":\"p/t/{i}\",\"n\":{i}}}").as_bytes(),
        )
    }

    /// Waits (5 s at most) until `delivered` reaches `n`.
    pub fn wait_delivered(delivered: &AtomicU64, n: u64) {
        let t0 = Instant::now();
        while delivered.load(Ordering::Acquire) < n {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{} of {n} delivered",
                delivered.load(Ordering::Acquire)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
