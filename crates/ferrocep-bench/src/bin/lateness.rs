//! Timeout lateness of `ferrocep run` with many pending partial matches: how
//! long after its timer is due a timeout reaches its file sink.
//!
//! ```text
//! lateness [--bin PATH] [--pending N] [--probes N] [--interval-ms MS]
//!          [--csv FILE] [--dir DIR] [--keep] [--same-key]
//! ```
//!
//! Starts the real binary (`--bin`, default `target/release/ferrocep`) as
//! `ferrocep run` on a config in a temporary directory (`--dir` to choose
//! it; removed at the end unless `--keep`), with two processing-time
//! patterns keyed by `order_id`, `create` followed by `pay`:
//!
//! - `big` (`kind == "big"`, `within: 1h`): `--pending` creates (default
//!   1,000,000), distinct order ids, appended to the followed input file in
//!   large chunks as fast as possible. They stay pending the whole run.
//! - `probe` (`kind == "probe"`, `within: 2s`): once `/metrics` shows every
//!   `big` create pending, `--probes` creates (default 500), one every
//!   `--interval-ms` (default 20), each with its own order id. None is paid,
//!   so each times out 2 s after it arrived.
//!
//! Every event carries its id as both `order_id` and `probe_id`, and `probe`
//! is keyed by `probe_id`, so that the two patterns run in separate groups
//! of the engine. `--same-key` keys `probe` by `order_id` as well (one group,
//! one condition set for both): at d67914c that makes `probe` read `big`'s
//! conditions (`Engine::new` compiles each spec as written, not as numbered
//! in its group's `SpecSet`), and the run fails on the first `big` create
//! that `probe` times out.
//!
//! Timeouts go to a file sink, which a thread here reads every millisecond.
//! For each probe timeout, lateness = the wall clock (epoch ms) when its line
//! was first read − its `timeout_at` (in processing time, the arrival
//! stamp + `within`: the moment its timer is due). Prints the pending count,
//! lateness percentiles and the run's RSS as a markdown table; `--csv`
//! writes every sample. The lateness includes this reader's own polling
//! (up to 1 ms) and the file sink's write; both processes share the
//! machine's clock.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Args {
    bin: PathBuf,
    pending: u64,
    probes: u64,
    interval_ms: u64,
    csv: Option<PathBuf>,
    dir: Option<PathBuf>,
    keep: bool,
    same_key: bool,
}

const USAGE: &str = "usage: lateness [--bin PATH] [--pending N] [--probes N] [--interval-ms MS] [--csv FILE] [--dir DIR] [--keep] [--same-key]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        bin: PathBuf::from("target/release/ferrocep"),
        pending: 1_000_000,
        probes: 500,
        interval_ms: 20,
        csv: None,
        dir: None,
        keep: false,
        same_key: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| {
            v.replace('_', "")
                .parse::<u64>()
                .map_err(|e| format!("{flag} {v}: {e}"))
        };
        match flag.as_str() {
            "--bin" => a.bin = PathBuf::from(value()?),
            "--pending" => a.pending = num(value()?)?,
            "--probes" => a.probes = num(value()?)?.max(1),
            "--interval-ms" => a.interval_ms = num(value()?)?,
            "--csv" => a.csv = Some(PathBuf::from(value()?)),
            "--dir" => a.dir = Some(PathBuf::from(value()?)),
            "--keep" => a.keep = true,
            "--same-key" => a.same_key = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument '{other}'; {USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lateness: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lateness: {e}");
            ExitCode::FAILURE
        }
    }
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A port free on 127.0.0.1 a moment ago (the run binds it itself).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

/// `GET /metrics` over a plain HTTP/1.1 connection; the body.
fn get_metrics(port: u16) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err("no HTTP header end in the reply".into());
    };
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "reply: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(body.to_string())
}

/// The value of `metric{pattern="PATTERN"}` in a metrics text.
fn gauge(metrics: &str, metric: &str, pattern: &str) -> Option<f64> {
    let label = format!("pattern=\"{pattern}\"");
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(metric)?.strip_prefix('{')?;
        let (labels, value) = rest.split_once('}')?;
        if !labels.split(',').any(|x| x.trim() == label) {
            return None;
        }
        value.split_whitespace().next()?.parse().ok()
    })
}

/// `VmRSS` of a process, in bytes.
fn rss_of(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The 1-, 5- and 15-minute load averages.
fn loadavg() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

const BIG_SPEC: &str = "name: big
key: order_id
within: 1h
stages:
  - name: create
    where: type == \"create\" && kind == \"big\"
  - name: pay
    where: type == \"pay\" && kind == \"big\"
";

/// The probe pattern, keyed by `key`.
fn probe_spec(key: &str) -> String {
    format!(
        "name: probe
key: {key}
within: 2s
stages:
  - name: create
    where: type == \"create\" && kind == \"probe\"
  - name: pay
    where: type == \"pay\" && kind == \"probe\"
"
    )
}

/// The probe pattern's window: a probe's timeout is due this long after it
/// arrived.
const PROBE_WITHIN_MS: i64 = 2000;

fn config(port: u16) -> String {
    format!(
        "name: lateness
patterns: [big.yaml, probe.yaml]
source: {{type: file, path: in.jsonl, follow: true}}
outputs:
  match: []
  late: []
  timeout: [{{type: file, path: out/timeouts.jsonl}}]
  error: [{{type: file, path: out/errors.jsonl}}]
state: {{dir: data}}
server: {{listen: \"127.0.0.1:{port}\"}}
"
    )
}

/// A probe timeout as read from the sink's file.
struct Sample {
    key: String,
    timeout_at: i64,
    observed_ms: i64,
}

/// Reads `path` every millisecond from where it left off until `want`
/// probe timeouts were seen or `stop` is raised; stamps each complete line
/// with the wall clock when it was first read.
fn tail(path: &Path, want: usize, stop: &AtomicBool) -> Result<(Vec<Sample>, u64), String> {
    let mut samples = Vec::with_capacity(want);
    let mut other = 0u64;
    let mut file: Option<File> = None;
    let mut pos = 0u64;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    while samples.len() < want && !stop.load(Ordering::Relaxed) {
        if file.is_none() {
            match File::open(path) {
                Ok(f) => file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        let mut got = false;
        if let Some(f) = file.as_mut() {
            f.seek(SeekFrom::Start(pos))
                .map_err(|e| format!("{}: seek: {e}", path.display()))?;
            loop {
                let n = f
                    .read(&mut chunk)
                    .map_err(|e| format!("{}: read: {e}", path.display()))?;
                if n == 0 {
                    break;
                }
                pos += n as u64;
                pending.extend_from_slice(&chunk[..n]);
                got = true;
            }
        }
        if got {
            let now = epoch_ms();
            let mut start = 0;
            while let Some(nl) = pending[start..].iter().position(|&b| b == b'\n') {
                let line = &pending[start..start + nl];
                start += nl + 1;
                let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
                    format!(
                        "{}: not a JSON line ({e}): {}",
                        path.display(),
                        String::from_utf8_lossy(line)
                    )
                })?;
                if v.get("pattern").and_then(|p| p.as_str()) != Some("probe") {
                    other += 1;
                    continue;
                }
                let key = v.get("key").and_then(|k| k.as_str()).unwrap_or_default();
                if !key.starts_with("p-") {
                    return Err(format!(
                        "{}: the probe pattern timed out an event that is not a probe \
                         (the engine mixed up the patterns' conditions?): {}",
                        path.display(),
                        String::from_utf8_lossy(line)
                    ));
                }
                let Some(timeout_at) = v.get("timeout_at").and_then(|t| t.as_i64()) else {
                    return Err(format!(
                        "{}: a probe timeout without timeout_at: {}",
                        path.display(),
                        String::from_utf8_lossy(line)
                    ));
                };
                samples.push(Sample {
                    key: key.to_string(),
                    timeout_at,
                    observed_ms: now,
                });
            }
            pending.drain(..start);
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok((samples, other))
}

/// Ends the run: SIGTERM, then waits up to 60 s (SIGKILL after that).
fn terminate(child: &mut Child) -> Result<String, String> {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let t = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(format!("{st}")),
            Ok(None) if t.elapsed() > Duration::from_secs(60) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the run did not stop within 60 s of SIGTERM; killed".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("wait: {e}")),
        }
    }
}

/// Kills the run if this program returns early.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let bin = std::fs::canonicalize(&args.bin)
        .map_err(|e| format!("--bin {}: {e}", args.bin.display()))?;
    let (dir, remove) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("ferrocep-lateness-{}", std::process::id())),
            !args.keep,
        ),
    };
    std::fs::create_dir_all(dir.join("out")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = measure(args, &bin, &dir);
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("lateness: working files kept in {}", dir.display());
    }
    result
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn measure(args: &Args, bin: &Path, dir: &Path) -> Result<(), String> {
    let load_before = loadavg();
    let port = free_port()?;
    write_file(&dir.join("big.yaml"), BIG_SPEC)?;
    let probe_key = if args.same_key {
        "order_id"
    } else {
        "probe_id"
    };
    write_file(&dir.join("probe.yaml"), &probe_spec(probe_key))?;
    let cfg = dir.join("pipeline.yaml");
    write_file(&cfg, &config(port))?;
    let input_path = dir.join("in.jsonl");
    let mut input = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&input_path)
        .map_err(|e| format!("{}: {e}", input_path.display()))?;
    let log_path = dir.join("run.log");
    let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let child = Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .arg("--no-progress")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let pid = child.id();
    let mut guard = Guard(Some(child));
    let failed = |what: String| {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        format!("{what}\n--- run.log ---\n{log}")
    };

    // The server is up once /metrics answers.
    let t0 = Instant::now();
    while get_metrics(port).is_err() {
        if let Some(c) = guard.0.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                return Err(failed(format!("the run exited at start: {st}")));
            }
        }
        if t0.elapsed() > Duration::from_secs(30) {
            return Err(failed("/metrics did not answer within 30 s".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // The big creates, in 4 MiB chunks.
    let t_load = Instant::now();
    let mut buf = String::with_capacity(4 << 20);
    for i in 0..args.pending {
        let _ = writeln!(
            buf,
            "{{\"type\":\"create\",\"kind\":\"big\",\"order_id\":\"b-{i}\",\"probe_id\":\"b-{i}\",\"amount\":12.5}}"
        );
        if buf.len() >= 4 << 20 {
            input
                .write_all(buf.as_bytes())
                .map_err(|e| format!("{}: {e}", input_path.display()))?;
            buf.clear();
        }
    }
    input
        .write_all(buf.as_bytes())
        .map_err(|e| format!("{}: {e}", input_path.display()))?;
    let written = t_load.elapsed();
    let mut big_pending = 0.0;
    loop {
        let m = get_metrics(port).map_err(|e| failed(format!("/metrics: {e}")))?;
        if let Some(v) = gauge(&m, "ferrocep_pending_partial_matches", "big") {
            big_pending = v;
            if v as u64 >= args.pending {
                break;
            }
        }
        if let Some(c) = guard.0.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                return Err(failed(format!("the run exited while loading: {st}")));
            }
        }
        if t_load.elapsed() > Duration::from_secs(300) {
            return Err(failed(format!(
                "only {big_pending} of {} big creates pending after 300 s",
                args.pending
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let loaded = t_load.elapsed();
    eprintln!(
        "lateness: {} big creates written in {:.2} s, all pending after {:.2} s; {} probes every {} ms",
        args.pending,
        written.as_secs_f64(),
        loaded.as_secs_f64(),
        args.probes,
        args.interval_ms
    );

    // The reader starts before the first probe.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let path = dir.join("out/timeouts.jsonl");
        let stop = stop.clone();
        let want = args.probes as usize;
        std::thread::spawn(move || tail(&path, want, &stop))
    };
    let t_probe = Instant::now();
    for i in 0..args.probes {
        let due = t_probe + Duration::from_millis(i * args.interval_ms);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let line = format!(
            "{{\"type\":\"create\",\"kind\":\"probe\",\"order_id\":\"p-{i}\",\"probe_id\":\"p-{i}\",\"amount\":1.5}}\n"
        );
        input
            .write_all(line.as_bytes())
            .map_err(|e| format!("{}: {e}", input_path.display()))?;
    }
    // Every probe is due 2 s after it arrived; give them 60 s in all.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut at_end = None;
    while !reader.is_finished() {
        if Instant::now() >= deadline {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        if at_end.is_none() && t_probe.elapsed() > Duration::from_millis(PROBE_WITHIN_MS as u64) {
            // Mid-run, while probes are firing: the state and the memory
            // the lateness was measured against.
            at_end = get_metrics(port).ok().map(|m| (m, rss_of(pid)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (samples, other) = reader
        .join()
        .map_err(|_| "the reader thread panicked".to_string())??;
    let (metrics, rss) = match at_end {
        Some(x) => x,
        None => (get_metrics(port).unwrap_or_default(), rss_of(pid)),
    };
    let big_now = gauge(&metrics, "ferrocep_pending_partial_matches", "big").unwrap_or(f64::NAN);
    let status = match guard.0.take() {
        Some(mut c) => terminate(&mut c)?,
        None => String::new(),
    };

    let mut late: Vec<i64> = samples
        .iter()
        .map(|s| s.observed_ms - s.timeout_at)
        .collect();
    late.sort_unstable();
    let mib = |b: Option<u64>| b.map_or("?".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0));
    println!("| pending (`big`) | probe timeouts seen | lateness p50 | p90 | p99 | max | min | RSS of the run |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} of {} | {} ms | {} ms | {} ms | {} ms | {} ms | {} |",
        big_now,
        late.len(),
        args.probes,
        percentile(&late, 0.50),
        percentile(&late, 0.90),
        percentile(&late, 0.99),
        late.last().copied().unwrap_or(0),
        late.first().copied().unwrap_or(0),
        mib(rss)
    );
    eprintln!(
        "lateness: other timeout lines {other}; the run exited: {status}; \
         load average before: {load_before}, after: {}",
        loadavg()
    );
    if let Some(path) = &args.csv {
        let mut s = String::from("pending,probe_key,timeout_at_ms,observed_ms,lateness_ms\n");
        for x in &samples {
            let _ = writeln!(
                s,
                "{},{},{},{},{}",
                args.pending,
                x.key,
                x.timeout_at,
                x.observed_ms,
                x.observed_ms - x.timeout_at
            );
        }
        write_file(path, &s)?;
    }
    if late.len() < args.probes as usize {
        return Err(failed(format!(
            "only {} of {} probe timeouts within 60 s",
            late.len(),
            args.probes
        )));
    }
    Ok(())
}
