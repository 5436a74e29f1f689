//! Load on the `http` source of `ferrocep run`: how many events per second
//! it acknowledges (written to the ingest log and fsynced) and how long a
//! reply takes, on loopback.
//!
//! ```text
//! ingest_load [--connections N] [--seconds S] [--batch B] [--dir DIR]
//! ```
//!
//! Starts the source on `127.0.0.1:0` with a validator that accepts every
//! event and a data directory in `DIR` (default: a new directory under the
//! system temp dir, removed at the end; put it on the disk you want to
//! measure). `N` connections (default 4) each post NDJSON bodies of `B`
//! order events (default 1,000) one after another for `S` seconds (default
//! 10). A thread stands in for the engine and takes every event the source
//! hands over. Prints events/s acknowledged, requests/s and reply latency
//! percentiles. Every reply must be `202` with all events accepted, or the
//! run fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrocep_runtime::clock::SystemClock;
use ferrocep_runtime::metrics::Metrics;
use ferrocep_runtime::source::http::HttpSource;
use ferrocep_runtime::source::{Source, SourceCtx, SourceMsg, SourceTx, StopFlag};

struct Args {
    connections: usize,
    seconds: u64,
    batch: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        connections: 4,
        seconds: 10,
        batch: 1000,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--connections" => a.connections = num(value()?)?.max(1) as usize,
            "--seconds" => a.seconds = num(value()?)?.max(1),
            "--batch" => a.batch = num(value()?)?.max(1) as usize,
            "--dir" => a.dir = Some(PathBuf::from(value()?)),
            _ => {
                return Err(format!(
                    "unknown argument {flag}; usage: ingest_load [--connections N] [--seconds S] [--batch B] [--dir DIR]"
                ))
            }
        }
    }
    Ok(a)
}

/// `n` order events as NDJSON: creates and pays of a few thousand orders.
fn body(client: usize, round: usize, n: usize) -> String {
    let mut s = String::with_capacity(n * 96);
    for i in 0..n {
        let order = (client * 1_000_003 + round * n + i) / 2;
        let kind = if i % 2 == 0 { "create" } else { "pay" };
        let ts = 1_700_000_000_000u64 + (round * n + i) as u64;
        s.push_str(&format!(
            "{{\"type\":\"{kind}\",\"order_id\":\"o{order}\",\"user\":\"u{}\",\"amount\":{}.5,\"ts\":{ts}}}\n",
            order % 977,
            order % 300
        ));
    }
    s
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ingest_load: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingest_load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let (dir, remove) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("ferrocep-ingest-load-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;

    // The source, and a thread that takes its events as the engine would.
    let (tx, rx) = sync_channel(64);
    let stop = StopFlag::new();
    let ctx = SourceCtx {
        out: SourceTx::new(tx, stop.clone()),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(Metrics::new()),
        runtime: rt.handle().clone(),
        data_dir: dir.clone(),
        resume_from: 0,
        resume: None,
    };
    let src = HttpSource::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        "/events".into(),
        64 << 20,
        1 << 30,
        Arc::new(|_: &[u8]| Ok(())),
    );
    let bound = src.bound_addr();
    let source = std::thread::spawn(move || Box::new(src).run(ctx));
    let taken = Arc::new(AtomicU64::new(0));
    let engine = {
        let taken = taken.clone();
        std::thread::spawn(move || {
            while let Ok(msg) = rx.recv() {
                match msg {
                    SourceMsg::Batch(b) => {
                        taken.fetch_add(b.len() as u64, Ordering::Relaxed);
                    }
                    SourceMsg::Failed(e) => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        })
    };
    let addr = bound
        .wait(Duration::from_secs(30))
        .ok_or("the source did not bind")?;
    let url = format!("http://{addr}/events");

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..args.connections {
            let url = url.clone();
            let batch = args.batch;
            let bodies: Vec<String> = (0..8).map(|r| body(c, r, batch)).collect();
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .map_err(|e| format!("client: {e}"))?;
                let expect = format!("{{\"accepted\":{batch},");
                let mut lat = Vec::new();
                let mut round = 0;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/x-ndjson")
                        .body(bodies[round % bodies.len()].clone())
                        .send()
                        .await
                        .map_err(|e| format!("POST {url}: {e}"))?;
                    let status = resp.status();
                    let text = resp.text().await.map_err(|e| format!("reply: {e}"))?;
                    lat.push(t0.elapsed());
                    if status.as_u16() != 202 || !text.starts_with(&expect) {
                        return Err(format!("reply {status}: {text}"));
                    }
                    round += 1;
                }
                Ok::<_, String>(lat)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.map_err(|e| format!("client task: {e}"))??);
        }
        Ok::<_, String>(all)
    });
    let elapsed = started.elapsed();
    let mut lat: Vec<Duration> = results?.into_iter().flatten().collect();
    lat.sort_unstable();

    // Let the engine side catch up, then stop.
    let acked = lat.len() as u64 * args.batch as u64;
    let catch_up = Instant::now() + Duration::from_secs(30);
    while taken.load(Ordering::Relaxed) < acked && Instant::now() < catch_up {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.raise();
    source
        .join()
        .map_err(|_| "the source thread panicked")?
        .map_err(|e| format!("source: {e}"))?;
    engine
        .join()
        .map_err(|_| "the engine thread panicked")?
        .map_err(|e| format!("source: {e}"))?;
    let log_bytes: u64 = std::fs::read_dir(dir.join("ingest"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }

    let secs = elapsed.as_secs_f64();
    println!(
        "connections {} x NDJSON bodies of {} events, {:.1} s, data dir {}",
        args.connections,
        args.batch,
        secs,
        dir.display()
    );
    println!(
        "acknowledged: {acked} events in {} requests: {:.0} events/s, {:.0} requests/s",
        lat.len(),
        acked as f64 / secs,
        lat.len() as f64 / secs
    );
    println!(
        "reply latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "taken by the engine side: {} events; ingest log: {log_bytes} bytes",
        taken.load(Ordering::Relaxed)
    );
    Ok(())
}
