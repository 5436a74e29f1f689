//! The `stdout` and `stderr` sinks: each output is its line and `\n`.
//!
//! Everything already queued is written at once and flushed, then counted
//! as delivered (at least once: a consumer de-duplicates on the ids).
//!
//! A closed reader (`EPIPE`, e.g. `ferrocep run | head`) is not a reason to
//! stop the pipeline or to hold its queue forever: the sink logs an error
//! once, discards the outputs from then on and still counts them as
//! finished with, so that checkpoints and the other sinks go on; at the end
//! it logs how many it discarded. Any other write error (a full disk behind
//! a redirect) is retried with backoff and holds the queue, like a file
//! sink.

use std::io::{self, Write};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::common::{self, Backoff, SinkMetrics, MAX_WRITE_BATCH};
use super::{SinkCtx, SinkRx};

/// The sink's task: writes every output of `rx` to `w` (named `stream` in
/// logs) until the queue is closed and empty.
pub(crate) async fn run<W: Write + Send + 'static>(
    w: W,
    stream: &'static str,
    mut rx: SinkRx,
    ctx: SinkCtx,
    delivered: Arc<AtomicU64>,
) -> Result<(), String> {
    let m = SinkMetrics::new(&ctx);
    let backoff = Backoff::local_io();
    let mut w = Some(w);
    let mut buf = Vec::new();
    let mut batch = Vec::with_capacity(MAX_WRITE_BATCH);
    let mut discarded: u64 = 0;
    while common::recv_batch(&mut rx, &mut batch, MAX_WRITE_BATCH).await {
        common::top_up(&mut rx, &mut batch, MAX_WRITE_BATCH).await;
        m.set_queue(&rx, batch.len());
        if let Some(mut writer) = w.take() {
            buf.clear();
            for o in &batch {
                buf.extend_from_slice(o.line());
                buf.push(b'\n');
            }
            let mut off = 0;
            let mut retry = 0;
            loop {
                let (back, b, o, res) = common::blocking(stream, move || {
                    let r = common::write_from(&mut writer, &buf, &mut off);
                    (writer, buf, off, r)
                })
                .await?;
                (writer, buf, off) = (back, b, o);
                match res {
                    Ok(()) => {
                        w = Some(writer);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                        tracing::error!(
                            sink = %ctx.name,
                            "{stream} is closed ({e}): outputs to it are discarded from now on"
                        );
                        break;
                    }
                    Err(e) => {
                        retry += 1;
                        m.retries.inc();
                        let delay = backoff.delay_ms(retry);
                        tracing::error!(
                            sink = %ctx.name,
                            "writing to {stream} failed: {e}; retry {retry} in {delay} ms"
                        );
                        let until = ctx.clock.now_ms().saturating_add(delay as i64);
                        common::sleep_until(&ctx.clock, until, || m.set_queue(&rx, batch.len()))
                            .await;
                    }
                }
            }
        }
        if w.is_some() {
            m.delivered.inc_by(batch.len() as u64);
        } else {
            discarded += batch.len() as u64;
        }
        common::finish(&delivered, batch.len());
        m.set_queue(&rx, 0);
    }
    if discarded > 0 {
        tracing::error!(
            sink = %ctx.name,
            "{discarded} outputs were discarded because {stream} was closed"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::sink::Output;
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::clock::SystemClock;
    use crate::metrics::Metrics;
    use crate::sink::Kind;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn ctx() -> SinkCtx {
        SinkCtx {
            name: "outputs.match[0]".into(),
            metrics: Arc::new(Metrics::new()),
            config_dir: ".".into(),
            data_dir: ".".into(),
            clock: Arc::new(SystemClock),
        }
    }

    fn out(i: usize) -> Output {
        Output::new(
            Kind::Match,
            &format!("p/m/{i}"),
            format!("{{\"id\":\"p/m/{i}\"}}").as_bytes(),
        )
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn writes_lines_promptly_and_everything_at_close() {
        let rt = rt();
        let buf = Shared::default();
        let (tx, rx) = crate::sink::queue(16);
        let delivered = Arc::new(AtomicU64::new(0));
        let c = ctx();
        let metrics = c.metrics.clone();
        let task = rt.spawn(run(buf.clone(), "stdout", rx, c, delivered.clone()));
        tx.blocking_send(out(0)).unwrap();
        // Promptly: without closing the queue.
        let t0 = std::time::Instant::now();
        while delivered.load(Ordering::Acquire) < 1 {
            assert!(t0.elapsed() < Duration::from_secs(5), "not written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&*buf.0.lock().unwrap(), b"{\"id\":\"p/m/0\"}\n");
        for i in 1..100 {
            tx.blocking_send(out(i)).unwrap();
        }
        drop(tx);
        rt.block_on(task).unwrap().unwrap();
        assert_eq!(delivered.load(Ordering::Acquire), 100);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 100);
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(*l, format!("{{\"id\":\"p/m/{i}\"}}"));
        }
        let text = metrics.encode();
        assert!(
            text.contains("ferrocep_sink_delivered_total{sink=\"outputs.match[0]\"} 100"),
            "{text}"
        );
        assert!(
            text.contains("ferrocep_sink_queue{sink=\"outputs.match[0]\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn a_closed_pipe_does_not_wedge_the_queue() {
        let rt = rt();
        let (reader, writer) = io::pipe().unwrap();
        drop(reader);
        let (tx, rx) = crate::sink::queue(4);
        let delivered = Arc::new(AtomicU64::new(0));
        let task = rt.spawn(run(writer, "stdout", rx, ctx(), delivered.clone()));
        // Far more than the queue holds: a wedged sink would block here.
        for i in 0..50 {
            tx.blocking_send(out(i)).unwrap();
        }
        drop(tx);
        rt.block_on(task).unwrap().unwrap();
        assert_eq!(delivered.load(Ordering::Acquire), 50);
    }
}
