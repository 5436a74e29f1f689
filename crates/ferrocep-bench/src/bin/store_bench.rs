//! Which embedded store holds `ferrocep run`'s checkpoints: redb or fjall,
//! measured on the checkpoint's own workload.
//!
//! ```text
//! store_bench [--keys N] [--changed N] [--deletes N] [--value-bytes N] [--dir DIR] [--only redb|fjall]
//! ```
//!
//! For each store, in a fresh directory under DIR (default: a temporary one):
//!
//! 1. fill: N keys (default 1,000,000) of ~300-byte values, in commits of
//!    100,000 keys, laid out as the runtime lays them (pattern id, key
//!    group, key);
//! 2. commit: 10 checkpoints, each 10,000 changed keys and 1,000 deletes
//!    (plus the meta writes), fsynced (redb `Durability::Immediate`, fjall
//!    `PersistMode::SyncAll`); the median time and the bytes the process
//!    wrote to the disk (`/proc/self/io` `write_bytes`) per commit;
//! 3. load: close, reopen and read every key (what a restart does); then
//!    again after a second close (fjall: its journal was replayed and
//!    flushed by the first reopen; redb: the same); and for redb once more
//!    with `set_check_integrity_on_open(true)`, the open that reports a
//!    corrupt file instead of panicking on it;
//! 4. size: the directory's size on disk after the commits.
//!
//! Values are pseudo-random (LZ4 gains nothing), the worst case for fjall's
//! compression and a fair one for redb, which does not compress. Output is
//! `name: value` lines. Nothing is asserted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const PATTERN_ID: u32 = 1;
const KEY_GROUPS: u32 = 128;
const COMMITS: usize = 10;
const FILL_BATCH: usize = 100_000;

struct Args {
    keys: usize,
    changed: usize,
    deletes: usize,
    value_bytes: usize,
    dir: Option<PathBuf>,
    only: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        keys: 1_000_000,
        changed: 10_000,
        deletes: 1_000,
        value_bytes: 300,
        dir: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--keys" => a.keys = num(value()?)?,
            "--changed" => a.changed = num(value()?)?,
            "--deletes" => a.deletes = num(value()?)?,
            "--value-bytes" => a.value_bytes = num(value()?)?,
            "--dir" => a.dir = Some(PathBuf::from(value()?)),
            "--only" => a.only = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// xorshift64*: reproducible values without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The store key of logical key `i`: pattern id, key group, key, as the
/// runtime's store lays it out.
fn store_key(i: usize) -> Vec<u8> {
    let key = format!("order-{i:09}");
    let group = (i as u32).wrapping_mul(2_654_435_761) % KEY_GROUPS;
    let mut k = Vec::with_capacity(6 + key.len());
    k.extend_from_slice(&PATTERN_ID.to_be_bytes());
    k.extend_from_slice(&(group as u16).to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

fn disk_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
}

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

/// One checkpoint's worth of work: which keys change, which go.
struct Round {
    upserts: Vec<(Vec<u8>, Vec<u8>)>,
    deletes: Vec<Vec<u8>>,
}

fn rounds(a: &Args) -> Vec<Round> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut deleted = std::collections::HashSet::new();
    (0..COMMITS)
        .map(|_| {
            let upserts = (0..a.changed)
                .map(|_| {
                    let i = (rng.next() as usize) % a.keys;
                    let mut v = vec![0; a.value_bytes];
                    rng.fill(&mut v);
                    (store_key(i), v)
                })
                .collect();
            let mut deletes = Vec::new();
            while deletes.len() < a.deletes {
                let i = (rng.next() as usize) % a.keys;
                if deleted.insert(i) {
                    deletes.push(store_key(i));
                }
            }
            Round { upserts, deletes }
        })
        .collect()
}

trait Engine {
    fn name(&self) -> &'static str;
    fn open(&mut self, dir: &Path) -> Result<(), String>;
    fn close(&mut self);
    /// Switches to a variant of the open measured once more at the end.
    fn checked_variant(&mut self) -> Option<&'static str> {
        None
    }
    /// One atomic, fsynced commit.
    fn commit(
        &mut self,
        id: u64,
        upserts: &[(Vec<u8>, Vec<u8>)],
        deletes: &[Vec<u8>],
    ) -> Result<(), String>;
    /// Reads every key; returns (count, bytes).
    fn scan_all(&self) -> Result<(u64, u64), String>;
}

mod redb_engine {
    use super::*;
    use redb::{Database, Durability, ReadableDatabase, TableDefinition};

    const KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("keys");
    const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

    #[derive(Default)]
    pub struct Redb(Option<Database>, pub bool);

    impl Engine for Redb {
        fn name(&self) -> &'static str {
            "redb"
        }
        fn open(&mut self, dir: &Path) -> Result<(), String> {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            let db = Database::builder()
                .set_check_integrity_on_open(self.1)
                .create(dir.join("state.redb"))
                .map_err(|e| e.to_string())?;
            self.0 = Some(db);
            Ok(())
        }
        fn close(&mut self) {
            self.0 = None;
        }
        fn checked_variant(&mut self) -> Option<&'static str> {
            self.1 = true;
            Some("check_integrity_on_open")
        }
        fn commit(
            &mut self,
            id: u64,
            upserts: &[(Vec<u8>, Vec<u8>)],
            deletes: &[Vec<u8>],
        ) -> Result<(), String> {
            let db = self.0.as_ref().ok_or("not open")?;
            let mut tx = db.begin_write().map_err(|e| e.to_string())?;
            tx.set_durability(Durability::Immediate)
                .map_err(|e| e.to_string())?;
            {
                let mut keys = tx.open_table(KEYS).map_err(|e| e.to_string())?;
                for (k, v) in upserts {
                    keys.insert(k.as_slice(), v.as_slice())
                        .map_err(|e| e.to_string())?;
                }
                for k in deletes {
                    keys.remove(k.as_slice()).map_err(|e| e.to_string())?;
                }
                let mut meta = tx.open_table(META).map_err(|e| e.to_string())?;
                meta.insert("checkpoint_id", id.to_le_bytes().as_slice())
                    .map_err(|e| e.to_string())?;
            }
            tx.commit().map_err(|e| e.to_string())
        }
        fn scan_all(&self) -> Result<(u64, u64), String> {
            let db = self.0.as_ref().ok_or("not open")?;
            let tx = db.begin_read().map_err(|e| e.to_string())?;
            let keys = tx.open_table(KEYS).map_err(|e| e.to_string())?;
            let (mut n, mut bytes) = (0, 0);
            for kv in redb::ReadableTable::iter(&keys).map_err(|e| e.to_string())? {
                let (k, v) = kv.map_err(|e| e.to_string())?;
                n += 1;
                bytes += (k.value().len() + v.value().len()) as u64;
            }
            Ok((n, bytes))
        }
    }
}

mod fjall_engine {
    use super::*;
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

    #[derive(Default)]
    pub struct Fjall(Option<(Database, Keyspace, Keyspace)>);

    impl Engine for Fjall {
        fn name(&self) -> &'static str {
            "fjall"
        }
        fn open(&mut self, dir: &Path) -> Result<(), String> {
            let db = Database::builder(dir).open().map_err(|e| e.to_string())?;
            let keys = db
                .keyspace("keys", KeyspaceCreateOptions::default)
                .map_err(|e| e.to_string())?;
            let meta = db
                .keyspace("meta", KeyspaceCreateOptions::default)
                .map_err(|e| e.to_string())?;
            self.0 = Some((db, keys, meta));
            Ok(())
        }
        fn close(&mut self) {
            self.0 = None;
        }
        fn commit(
            &mut self,
            id: u64,
            upserts: &[(Vec<u8>, Vec<u8>)],
            deletes: &[Vec<u8>],
        ) -> Result<(), String> {
            let (db, keys, meta) = self.0.as_ref().ok_or("not open")?;
            let mut b = db.batch().durability(Some(PersistMode::SyncAll));
            for (k, v) in upserts {
                b.insert(keys, k.as_slice(), v.as_slice());
            }
            for k in deletes {
                b.remove(keys, k.as_slice());
            }
            b.insert(meta, "checkpoint_id", id.to_le_bytes().as_slice());
            b.commit().map_err(|e| e.to_string())
        }
        fn scan_all(&self) -> Result<(u64, u64), String> {
            let (_, keys, _) = self.0.as_ref().ok_or("not open")?;
            let (mut n, mut bytes) = (0, 0);
            for kv in keys.iter() {
                let (k, v) = kv.into_inner().map_err(|e| e.to_string())?;
                n += 1;
                bytes += (k.len() + v.len()) as u64;
            }
            Ok((n, bytes))
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn run(engine: &mut dyn Engine, a: &Args, root: &Path, work: &[Round]) -> Result<(), String> {
    let dir = root.join(engine.name());
    let _ = std::fs::remove_dir_all(&dir);
    let name = engine.name();
    engine.open(&dir)?;

    let mut rng = Rng(42);
    let t = Instant::now();
    let mut start = 0;
    let mut id = 0;
    while start < a.keys {
        let end = (start + FILL_BATCH).min(a.keys);
        let batch: Vec<_> = (start..end)
            .map(|i| {
                let mut v = vec![0; a.value_bytes];
                rng.fill(&mut v);
                (store_key(i), v)
            })
            .collect();
        id += 1;
        engine.commit(id, &batch, &[])?;
        start = end;
    }
    println!("{name}.fill_s: {}", secs(t.elapsed()));
    println!("{name}.size_after_fill_bytes: {}", dir_size(&dir));

    let mut times = Vec::new();
    let mut written = Vec::new();
    for round in work {
        id += 1;
        let w0 = disk_written();
        let t = Instant::now();
        engine.commit(id, &round.upserts, &round.deletes)?;
        times.push(t.elapsed());
        if let (Some(w0), Some(w1)) = (w0, disk_written()) {
            written.push(w1 - w0);
        }
    }
    times.sort();
    written.sort();
    let ms: Vec<String> = times
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
        .collect();
    println!("{name}.commit_ms_sorted: {}", ms.join(" "));
    println!(
        "{name}.commit_ms_median: {:.1}",
        times[times.len() / 2].as_secs_f64() * 1e3
    );
    if !written.is_empty() {
        println!(
            "{name}.commit_disk_write_bytes_median: {}",
            written[written.len() / 2]
        );
    }
    println!("{name}.size_after_commits_bytes: {}", dir_size(&dir));

    engine.close();
    let t = Instant::now();
    engine.open(&dir)?;
    let opened = t.elapsed();
    let (n, bytes) = engine.scan_all()?;
    let total = t.elapsed();
    println!("{name}.reopen_s: {}", secs(opened));
    println!(
        "{name}.load_all_s: {} ({n} keys, {bytes} bytes)",
        secs(total)
    );
    engine.close();
    println!("{name}.size_after_reopen_bytes: {}", dir_size(&dir));
    let t = Instant::now();
    engine.open(&dir)?;
    let opened = t.elapsed();
    engine.scan_all()?;
    println!("{name}.second_reopen_s: {}", secs(opened));
    println!("{name}.second_load_all_s: {}", secs(t.elapsed()));
    engine.close();
    if let Some(label) = engine.checked_variant() {
        let t = Instant::now();
        engine.open(&dir)?;
        let opened = t.elapsed();
        engine.scan_all()?;
        println!("{name}.{label}_reopen_s: {}", secs(opened));
        println!("{name}.{label}_load_all_s: {}", secs(t.elapsed()));
        engine.close();
    }
    Ok(())
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("store_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let tmp;
    let root = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("store_bench-{}", std::process::id()));
            tmp
        }
    };
    println!(
        "keys: {} changed: {} deletes: {} value_bytes: {}",
        a.keys, a.changed, a.deletes, a.value_bytes
    );
    let work = rounds(&a);
    let mut engines: Vec<Box<dyn Engine>> = vec![
        Box::<redb_engine::Redb>::default(),
        Box::<fjall_engine::Fjall>::default(),
    ];
    let mut status = ExitCode::SUCCESS;
    for e in engines.iter_mut() {
        if a.only.as_deref().is_some_and(|o| o != e.name()) {
            continue;
        }
        if let Err(err) = run(e.as_mut(), &a, &root, &work) {
            eprintln!("store_bench: {}: {err}", e.name());
            status = ExitCode::FAILURE;
        }
    }
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    status
}
