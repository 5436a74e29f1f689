//! Checkpoints of `ferrocep run`'s engine with many pending orders: the
//! pause, the bytes of a full and of an incremental checkpoint, the restore
//! time and the bytes per pending order on disk.
//!
//! ```text
//! checkpoint_bench [--orders N] [--new N] [--rounds R] [--spec PATH]
//!                  [--dir DIR] [--keep] [--csv FILE]
//! ```
//!
//! Uses the runtime as a library, the way `run` does (`Engine` on the
//! engine thread, `checkpoint::Store` on the checkpoint thread; the commit
//! is built as `pipeline.rs`'s `write_job` builds it, the restore mirrors
//! `assemble.rs`'s `restore`):
//!
//! 1. fill: an `Engine` with the order-timeout spec (default
//!    `examples/order-timeout.yaml`), checkpoints enabled (full first), fed
//!    `--orders` creates (default 1,000,000) with distinct order ids in
//!    batches of 4,096 lines, 4 events per ms of event time (1M orders span
//!    250 s, inside the 10 m window: none times out). Then a full
//!    checkpoint: `Engine::checkpoint` timed alone (the engine thread's
//!    pause), and the commit into a fresh store timed apart (it runs on the
//!    checkpoint thread);
//! 2. incremental: `--rounds` times (default 10), `--new` events (default
//!    10,000: half pays of the oldest unpaid orders, which match and drop
//!    their keys, half new creates), then a checkpoint, timed the same way;
//!    bytes against the full one;
//! 3. restore: the store closed, opened again, a new engine, every key read
//!    back (`restore_meta`, `for_each_key` → `restore_key`); the key count
//!    is checked against the engine that wrote it. Twice: first after the
//!    commits (fjall replays its journal), then after that store was closed
//!    in turn;
//! 4. size: the store directory on disk after each step; bytes per pending
//!    key once closed and reopened.
//!
//! Bytes: "key+state" is the sum of the encoded keys and states handed to
//! the store, "commit" is `CommitStats::bytes_written` (those plus pattern
//! records and positions), "disk" is `write_bytes` of `/proc/self/io`
//! across the commit (journal, fsync; fjall's background flushes count
//! where they happen to run). Prints a markdown table; `--csv` writes the
//! rows as `phase,metric,value`. After the full commit the bench waits
//! until fjall's background flush of it has ended (nothing written for 1 s),
//! so that the rounds' disk bytes are theirs; "per round, all threads" is
//! everything the process wrote over the rounds (journal, fsyncs, and the
//! flushes and compactions they caused) divided by the rounds. Nothing is
//! asserted but the key counts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ferrocep_core::operator::state::KEY_GROUPS;
use ferrocep_core::spec::Spec;
use ferrocep_runtime::checkpoint::{
    CheckpointWrite, CommitStats, KeyRef, KeyState, PatternRecord, Store,
};
use ferrocep_runtime::engine::{Engine, EngineOptions, PatternCheckpoint};
use ferrocep_runtime::sink::Output;
use ferrocep_runtime::source::Batch;

const T0: i64 = 1_700_000_000_000;
/// Events per millisecond of event time.
const PER_MS: u64 = 4;
const BATCH: usize = 4096;
const PATTERN: &str = "orders";

struct Args {
    orders: u64,
    new: u64,
    rounds: usize,
    spec: PathBuf,
    dir: Option<PathBuf>,
    keep: bool,
    csv: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut a = Args {
        orders: 1_000_000,
        new: 10_000,
        rounds: 10,
        spec: root.join("examples/order-timeout.yaml"),
        dir: None,
        keep: false,
        csv: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--orders" => a.orders = num(value()?)?,
            "--new" => a.new = num(value()?)?,
            "--rounds" => a.rounds = num(value()?)? as usize,
            "--spec" => a.spec = PathBuf::from(value()?),
            "--dir" => a.dir = Some(PathBuf::from(value()?)),
            "--keep" => a.keep = true,
            "--csv" => a.csv = Some(PathBuf::from(value()?)),
            "--bench" => {} // passed by `cargo bench`
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// Feeds lines to the engine in batches, with byte positions as the file
/// source gives them.
struct Feeder {
    batch: Batch,
    pos: u64,
    outputs: Vec<Output>,
    matches: u64,
    line: String,
}

impl Feeder {
    fn push(&mut self, engine: &mut Engine, line: &str) {
        self.batch.push(self.pos, line.as_bytes());
        self.pos += line.len() as u64 + 1;
        if self.batch.len() >= BATCH {
            self.flush(engine);
        }
    }

    fn flush(&mut self, engine: &mut Engine) {
        if self.batch.is_empty() {
            return;
        }
        engine.on_batch(&self.batch, 0, &mut self.outputs);
        self.matches += self.outputs.len() as u64;
        self.outputs.clear();
        self.batch.text.clear();
        self.batch.records.clear();
    }
}

fn ts_of(event: u64) -> i64 {
    T0 + (event / PER_MS) as i64
}

fn disk_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Waits until the process has written nothing for 1 s (at most 60 s):
/// the bytes written meanwhile and the time it took.
fn settle_writes() -> (u64, Duration) {
    let t = Instant::now();
    let start = disk_written();
    let mut last = start;
    while t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(1));
        let now = disk_written();
        if now == last {
            break;
        }
        last = now;
    }
    (last - start, t.elapsed())
}

/// This thread's time on a CPU and waiting for one, ns
/// (`/proc/thread-self/schedstat`): tells the pause's own work from the
/// time the shared machine took the core away.
fn sched() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut it = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Bytes of the files under `path` (apparent sizes).
fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The commit as `pipeline.rs` (`write_job`) builds it from the engine's
/// parts.
fn commit(store: &mut Store, id: u64, parts: &[PatternCheckpoint]) -> Result<CommitStats, String> {
    let records: Vec<PatternRecord> = parts
        .iter()
        .map(|p| PatternRecord {
            name: p.name.to_string(),
            fingerprint: p.fingerprint.clone(),
            version: 1,
            meta: p.meta.clone(),
        })
        .collect();
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    let mut dropped: Vec<&str> = Vec::new();
    for p in parts {
        if p.full {
            dropped.push(&p.name);
        }
        upserts.extend(p.upserts.iter().map(|(g, k, v)| KeyState {
            pattern: &p.name,
            key_group: *g,
            key: k,
            state: v,
        }));
        deletes.extend(p.deletes.iter().map(|(g, k)| KeyRef {
            pattern: &p.name,
            key_group: *g,
            key: k,
        }));
    }
    let source = format!("{{\"position\":{id}}}");
    store
        .commit(&CheckpointWrite {
            id,
            pipeline: "bench",
            patterns: &records,
            upserts: &upserts,
            deletes: &deletes,
            dropped_patterns: &dropped,
            source: source.as_bytes(),
            sinks: &[],
        })
        .map_err(|e| e.to_string())
}

/// One checkpoint: the engine's pause, then the commit.
struct Taken {
    pause: Duration,
    /// The pause's time on a CPU and waiting for one.
    pause_cpu: Duration,
    pause_wait: Duration,
    commit: Duration,
    upserts: u64,
    deletes: u64,
    kv_bytes: u64,
    stats: CommitStats,
    disk: u64,
}

fn take(engine: &mut Engine, store: &mut Store, id: u64) -> Result<Taken, String> {
    let s0 = sched();
    let t = Instant::now();
    let parts = engine.checkpoint().parts;
    let pause = t.elapsed();
    let s1 = sched();
    let upserts = parts.iter().map(|p| p.upserts.len() as u64).sum();
    let deletes = parts.iter().map(|p| p.deletes.len() as u64).sum();
    let kv_bytes = parts
        .iter()
        .flat_map(|p| p.upserts.iter())
        .map(|(_, k, v)| (k.len() + v.len()) as u64)
        .sum();
    let disk0 = disk_written();
    let t = Instant::now();
    let stats = commit(store, id, &parts)?;
    let commit = t.elapsed();
    let disk = disk_written().saturating_sub(disk0);
    // Freeing the parts belongs to the checkpoint thread too.
    drop(parts);
    Ok(Taken {
        pause,
        pause_cpu: Duration::from_nanos(s1.0.saturating_sub(s0.0)),
        pause_wait: Duration::from_nanos(s1.1.saturating_sub(s0.1)),
        commit,
        upserts,
        deletes,
        kv_bytes,
        stats,
        disk,
    })
}

fn keys_of(engine: &Engine) -> usize {
    engine.pattern_state(false).iter().map(|s| s.keys).sum()
}

/// Opens the store and restores it into a new engine, as `assemble.rs`
/// does. Returns (open, load, restore) times and the keys read.
fn restore(
    data: &Path,
    spec: &Spec,
) -> Result<(Duration, Duration, Duration, u64, Engine), String> {
    let t = Instant::now();
    let store = Store::open(data).map_err(|e| e.to_string())?;
    let open = t.elapsed();
    let t = Instant::now();
    let loaded = store
        .load()
        .map_err(|e| e.to_string())?
        .ok_or("the store holds no checkpoint")?;
    let load = t.elapsed();
    let t = Instant::now();
    let mut engine = new_engine(spec)?;
    engine.enable_checkpoints(false);
    let mut keys = 0;
    for p in &loaded.patterns {
        engine
            .restore_meta(&p.name, &p.meta)
            .map_err(|e| e.to_string())?;
        keys += store
            .for_each_key(&p.name, 0..KEY_GROUPS, |_, k, v| {
                Ok(engine.restore_key(&p.name, k, v)?)
            })
            .map_err(|e| e.to_string())?;
    }
    let keys_time = t.elapsed();
    drop(store);
    Ok((open, load, keys_time, keys, engine))
}

fn new_engine(spec: &Spec) -> Result<Engine, String> {
    Engine::new(&[(PATTERN.into(), spec.clone())], EngineOptions::default())
        .map_err(|e| e.to_string())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mb(b: u64) -> String {
    format!("{:.2} MB", b as f64 / 1e6)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn run(a: &Args, root: &Path, rows: &mut Vec<(String, String, String)>) -> Result<(), String> {
    let spec = Spec::from_path(&a.spec).map_err(|e| format!("{}: {e}", a.spec.display()))?;
    let data = root.join("data");
    let mut row = |phase: &str, metric: &str, value: String| {
        println!("| {phase} | {metric} | {value} |");
        rows.push((phase.into(), metric.into(), value));
    };
    println!("| phase | metric | value |\n|---|---|---:|");

    // 1. Fill and take a full checkpoint.
    let mut engine = new_engine(&spec)?;
    engine.enable_checkpoints(true);
    let mut f = Feeder {
        batch: Batch::with_capacity(BATCH * 128),
        pos: 0,
        outputs: Vec::new(),
        matches: 0,
        line: String::new(),
    };
    let t = Instant::now();
    let mut event = 0u64;
    for n in 1..=a.orders {
        f.line.clear();
        ferrocep_bench::order_create_line(&mut f.line, n, ts_of(event));
        let line = std::mem::take(&mut f.line);
        f.push(&mut engine, &line);
        f.line = line;
        event += 1;
    }
    f.flush(&mut engine);
    let fill = t.elapsed();
    let keys_full = keys_of(&engine);
    row("fill", "orders fed", a.orders.to_string());
    row("fill", "feed time", format!("{:.2} s", fill.as_secs_f64()));
    row("fill", "keys with state", keys_full.to_string());
    row("fill", "RSS", mb(ferrocep_bench::rss_bytes().unwrap_or(0)));

    let mut store = Store::open(&data).map_err(|e| e.to_string())?;
    let mut id = 1;
    let full = take(&mut engine, &mut store, id)?;
    id += 1;
    let dir_full = dir_size(&data);
    row("full", "pause (Engine::checkpoint)", ms(full.pause));
    row(
        "full",
        "pause: on CPU / waiting for a CPU",
        format!("{} / {}", ms(full.pause_cpu), ms(full.pause_wait)),
    );
    row("full", "commit (checkpoint thread)", ms(full.commit));
    row("full", "keys written", full.upserts.to_string());
    row("full", "key+state bytes", full.kv_bytes.to_string());
    row(
        "full",
        "key+state bytes per key",
        format!("{:.1}", full.kv_bytes as f64 / full.upserts.max(1) as f64),
    );
    row(
        "full",
        "commit bytes (CommitStats)",
        full.stats.bytes_written.to_string(),
    );
    row(
        "full",
        "disk write_bytes during commit",
        full.disk.to_string(),
    );
    row("full", "store dir after commit", dir_full.to_string());
    // fjall flushes the commit's memtable to a table in the background:
    // let that end before the incremental rounds, so that their disk bytes
    // are their own (and report it).
    let settle = settle_writes();
    row(
        "full",
        "background writes after the commit",
        format!("{} in {:.1} s", settle.0, settle.1.as_secs_f64()),
    );
    row("full", "store dir after those", dir_size(&data).to_string());
    let disk_rounds0 = disk_written();

    // 2. Incremental checkpoints after `new` events each.
    let mut paid = 0u64;
    let mut created = a.orders;
    let mut pauses = Vec::new();
    let mut cpus = Vec::new();
    let mut commits = Vec::new();
    let mut last = None;
    for r in 0..a.rounds {
        let matches0 = f.matches;
        for i in 0..a.new {
            f.line.clear();
            if i % 2 == 0 {
                paid += 1;
                ferrocep_bench::order_pay_line(&mut f.line, paid, ts_of(event));
            } else {
                created += 1;
                ferrocep_bench::order_create_line(&mut f.line, created, ts_of(event));
            }
            let line = std::mem::take(&mut f.line);
            f.push(&mut engine, &line);
            f.line = line;
            event += 1;
        }
        f.flush(&mut engine);
        let inc = take(&mut engine, &mut store, id)?;
        id += 1;
        let p = format!("incremental {}", r + 1);
        row(&p, "matches out", (f.matches - matches0).to_string());
        row(&p, "pause (Engine::checkpoint)", ms(inc.pause));
        row(
            &p,
            "pause: on CPU / waiting for a CPU",
            format!("{} / {}", ms(inc.pause_cpu), ms(inc.pause_wait)),
        );
        row(&p, "commit (checkpoint thread)", ms(inc.commit));
        row(
            &p,
            "keys written / deleted",
            format!("{} / {}", inc.upserts, inc.deletes),
        );
        row(
            &p,
            "key+state bytes (vs full)",
            format!(
                "{} ({:.2} %)",
                inc.kv_bytes,
                inc.kv_bytes as f64 * 100.0 / full.kv_bytes.max(1) as f64
            ),
        );
        row(
            &p,
            "commit bytes (vs full)",
            format!(
                "{} ({:.2} %)",
                inc.stats.bytes_written,
                inc.stats.bytes_written as f64 * 100.0 / full.stats.bytes_written.max(1) as f64
            ),
        );
        row(
            &p,
            "disk write_bytes during commit (vs full)",
            format!(
                "{} ({:.2} %)",
                inc.disk,
                inc.disk as f64 * 100.0 / full.disk.max(1) as f64
            ),
        );
        pauses.push(inc.pause);
        cpus.push(inc.pause_cpu);
        commits.push(inc.commit);
        last = Some(inc);
    }
    if let Some(inc) = &last {
        row(
            "incremental",
            "median / max pause",
            format!(
                "{} / {}",
                ms(median(pauses.clone())),
                ms(pauses.iter().max().copied().unwrap_or_default())
            ),
        );
        row(
            "incremental",
            "median / max pause on CPU",
            format!(
                "{} / {}",
                ms(median(cpus.clone())),
                ms(cpus.iter().max().copied().unwrap_or_default())
            ),
        );
        row("incremental", "median commit", ms(median(commits)));
        row(
            "incremental",
            "last: commit bytes vs full",
            format!(
                "{:.2} %",
                inc.stats.bytes_written as f64 * 100.0 / full.stats.bytes_written.max(1) as f64
            ),
        );
    }
    let disk_rounds = disk_written().saturating_sub(disk_rounds0);
    row(
        "incremental",
        "disk write_bytes per round, all threads (vs full commit's)",
        format!(
            "{} ({:.2} %)",
            disk_rounds / a.rounds.max(1) as u64,
            (disk_rounds / a.rounds.max(1) as u64) as f64 * 100.0 / full.disk.max(1) as f64
        ),
    );
    let keys_now = keys_of(&engine);
    row("after rounds", "keys with state", keys_now.to_string());
    row("after rounds", "store dir", dir_size(&data).to_string());
    drop(store);
    row("closed", "store dir", dir_size(&data).to_string());
    drop(engine);

    // 3. Restore, twice.
    for (what, settle) in [
        ("restore 1 (after commits)", false),
        ("restore 2 (reopened)", true),
    ] {
        if settle {
            // Background work of fjall after the first reopen has ended
            // with its close; give the disk a moment.
            std::thread::sleep(Duration::from_millis(500));
        }
        let (open, load, keys_t, keys, restored) = restore(&data, &spec)?;
        let total = open + load + keys_t;
        row(what, "open", ms(open));
        row(what, "load (meta)", ms(load));
        row(what, "restore_meta + for_each_key/restore_key", ms(keys_t));
        row(what, "total", ms(total));
        row(what, "keys read", keys.to_string());
        let got = keys_of(&restored);
        row(what, "engine keys after restore", got.to_string());
        if keys as usize != keys_now || got != keys_now {
            return Err(format!(
                "{what}: {keys} keys read, {got} in the engine, {keys_now} expected"
            ));
        }
        row(what, "store dir after close", dir_size(&data).to_string());
    }

    // 4. On disk per pending key.
    let size = dir_size(&data);
    row("on disk", "store dir (closed, reopened, closed)", mb(size));
    row(
        "on disk",
        "bytes per pending order",
        format!("{:.1}", size as f64 / keys_now.max(1) as f64),
    );
    Ok(())
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("checkpoint_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let (root, temp) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("checkpoint_bench-{}", std::process::id())),
            true,
        ),
    };
    if let Err(e) = std::fs::create_dir_all(&root) {
        eprintln!("checkpoint_bench: {}: {e}", root.display());
        return ExitCode::FAILURE;
    }
    let mut rows = Vec::new();
    let result = run(&a, &root, &mut rows);
    if temp && !a.keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    if let Some(csv) = &a.csv {
        let mut text = String::from("phase,metric,value\n");
        for (p, m, v) in &rows {
            text.push_str(&format!("\"{p}\",\"{m}\",\"{v}\"\n"));
        }
        if let Err(e) = std::fs::write(csv, text) {
            eprintln!("checkpoint_bench: {}: {e}", csv.display());
            return ExitCode::FAILURE;
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("checkpoint_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
