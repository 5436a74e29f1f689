//! The order-timeout job from topic to topic against a plain
//! consume-and-produce pipe with the same client settings, side by side on
//! the same broker and the same records.
//!
//! ```text
//! kafka_bench --brokers HOST:PORT --input EVENTS.jsonl --ferrocep BIN --spec SPEC
//!             [--partitions P] [--instances 1,2,3] [--repeat R] [--csv FILE]
//! kafka_bench --brokers HOST:PORT --count TOPIC
//! ```
//!
//! (`--count` only reads TOPIC back and prints its records and distinct
//! `id` headers. `KAFKA_BENCH_DEBUG=1` prints the pipe's progress and
//! assignment, `KAFKA_BENCH_IDEMPOTENCE=false` turns both pipelines'
//! idempotent producers off.)
//!
//! Loads `EVENTS.jsonl` once into a topic of `P` partitions (default 3),
//! each line a record keyed by its `order_id`, so that Kafka's partitioner
//! puts every order in one partition, as the job requires; then one record
//! per partition, far later in event time, so that every partition's
//! watermark passes every window and each pipeline emits all it will. Then,
//! for each instance count `N` and each of `R` rounds (default 3), in turn:
//!
//! - **pipe**: `N` threads, each a consumer in one new group (the `kafka`
//!   source's settings: no auto commit, `earliest`) and an idempotent
//!   producer with `acks=all`, `linger.ms=5` (the `kafka` sink's defaults),
//!   copying every record's value and key to a new topic;
//! - **ferrocep**: `N` `ferrocep run` processes in one new group (kafka
//!   source, kafka sinks for `match`, `timeout` and `late` into a new topic,
//!   each with its own data directory; with more than one, or with
//!   `--scale-out`, the source's `scale_out: true`: state per partition with
//!   its changelog topic). Each round is its own pipeline (name, group,
//!   changelog), so none resumes another's state.
//!
//! Each is timed by the records of its output topic, polled every 10 ms:
//! from the start to the last new record (wall, including the group join)
//! and from the first output record to the last (the streaming rate, which
//! leaves out the join); the run ends once no record has arrived for
//! `--quiet` seconds (default 3). events/s is the input records over that
//! span. The ratio is ferrocep's events/s over the pipe's, per round, and
//! their median. ferrocep's outputs are then read back and counted by their
//! `id` header (a record sent twice counts once).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::util::Timeout;

/// The most bytes one fetch asks for, in both pipelines: nisshi 0.7
/// builds a fetch reply from its SQLite store in one go, and librdkafka's
/// default (50 MB) makes that reply take longer than the request timeout on
/// a topic of 100k records or more.
const FETCH_MAX_BYTES: &str = "1048576";

/// The producers' `enable.idempotence` in both pipelines
/// (`KAFKA_BENCH_IDEMPOTENCE`, default the sink's `true`).
static IDEMPOTENCE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("KAFKA_BENCH_IDEMPOTENCE").unwrap_or_else(|_| "true".into())
});

struct Args {
    brokers: String,
    input: PathBuf,
    ferrocep: PathBuf,
    spec: PathBuf,
    partitions: i32,
    instances: Vec<usize>,
    repeat: usize,
    quiet: Duration,
    csv: Option<PathBuf>,
    /// `--count TOPIC`: only count the records and distinct ids of TOPIC.
    count: Option<String>,
    /// `--scale-out`: the source's `scale_out: true` with one instance too
    /// (always with several).
    scale_out: bool,
}

const USAGE: &str = "usage: kafka_bench --brokers HOST:PORT --input EVENTS.jsonl --ferrocep BIN \
--spec SPEC [--partitions P] [--instances 1,2,3] [--repeat R] [--quiet S] [--csv FILE] [--scale-out]\n       \
kafka_bench --brokers HOST:PORT --count TOPIC";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        brokers: String::new(),
        input: PathBuf::new(),
        ferrocep: PathBuf::new(),
        spec: PathBuf::new(),
        partitions: 3,
        instances: vec![1],
        repeat: 3,
        quiet: Duration::from_secs(3),
        csv: None,
        count: None,
        scale_out: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--brokers" => a.brokers = value()?,
            "--input" => a.input = value()?.into(),
            "--ferrocep" => a.ferrocep = value()?.into(),
            "--spec" => a.spec = value()?.into(),
            "--partitions" => a.partitions = num(value()?)?.clamp(1, 64) as i32,
            "--instances" => {
                a.instances = value()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .map_err(|e| format!("--instances {s}: {e}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--repeat" => a.repeat = num(value()?)?.max(1) as usize,
            "--quiet" => a.quiet = Duration::from_secs(num(value()?)?.max(1)),
            "--csv" => a.csv = Some(value()?.into()),
            "--count" => a.count = Some(value()?),
            "--scale-out" => a.scale_out = true,
            _ => return Err(format!("unknown argument {flag}; {USAGE}")),
        }
    }
    if a.brokers.is_empty()
        || (a.count.is_none()
            && (a.input.as_os_str().is_empty() || a.ferrocep.as_os_str().is_empty()))
    {
        return Err(USAGE.into());
    }
    Ok(a)
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, String> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| format!("admin client: {e}"))
}

fn create_topic(brokers: &str, name: &str, partitions: i32) -> Result<(), String> {
    let admin = admin(brokers)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let res = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .map_err(|e| format!("create topic {name}: {e}"))?;
    for r in res {
        r.map_err(|(t, e)| format!("create topic {t}: {e}"))?;
    }
    Ok(())
}

/// The sum over partitions of the high watermark of `topic` (records in it).
fn records_in(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Result<i64, String> {
    let mut n = 0;
    for p in 0..partitions {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p, Timeout::After(Duration::from_secs(10)))
            .map_err(|e| format!("watermarks of {topic}/{p}: {e}"))?;
        n += hi - lo;
    }
    Ok(n)
}

fn watcher(brokers: &str) -> Result<BaseConsumer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-bench-watch")
        .create()
        .map_err(|e| format!("consumer: {e}"))
}

/// The `order_id` of an order event's line (the record key).
fn order_id(line: &str) -> Option<&str> {
    let i = line.find("\"order_id\":\"")? + 12;
    let len = line[i..].find('"')?;
    Some(&line[i..i + len])
}

/// Writes the input into `topic`; returns the number of records.
fn load(a: &Args, topic: &str) -> Result<usize, String> {
    create_topic(&a.brokers, topic, a.partitions)?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| format!("producer: {e}"))?;
    let file = fs::File::open(&a.input).map_err(|e| format!("{}: {e}", a.input.display()))?;
    let mut n = 0usize;
    let mut last_ts = 0i64;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| format!("{}: {e}", a.input.display()))?;
        let key = order_id(&line)
            .ok_or_else(|| format!("{}: a line without order_id: {line}", a.input.display()))?
            .to_string();
        if let Some(i) = line.find("\"ts\":") {
            let digits: String = line[i + 5..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            last_ts = last_ts.max(digits.parse().unwrap_or(0));
        }
        let mut rec = BaseRecord::to(topic).key(&key).payload(&line);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        n += 1;
    }
    // One record per partition a day later in event time: each partition's
    // watermark then passes every window.
    for p in 0..a.partitions {
        let line = format!(
            "{{\"order_id\":\"end-{p}\",\"type\":\"end\",\"ts\":{}}}",
            last_ts + 86_400_000
        );
        let key = format!("end-{p}");
        producer
            .send(BaseRecord::to(topic).key(&key).payload(&line).partition(p))
            .map_err(|(e, _)| format!("produce: {e}"))?;
        n += 1;
    }
    producer
        .flush(Timeout::After(Duration::from_secs(300)))
        .map_err(|e| format!("flush: {e}"))?;
    Ok(n)
}

/// Polls `topic` until no record arrived for `quiet`: (wall s from
/// `start`, s from the first record to the last, records).
fn watch(
    a: &Args,
    topic: &str,
    start: Instant,
    children: &mut [Child],
) -> Result<(f64, f64, i64), String> {
    let c = watcher(&a.brokers)?;
    let (mut first, mut last, mut n) = (None::<Instant>, start, 0i64);
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let now_n = records_in(&c, topic, a.partitions).unwrap_or(n);
        let now = Instant::now();
        if now_n > n {
            n = now_n;
            last = now;
            first.get_or_insert(now);
        } else if n > 0 && now - last > a.quiet {
            break;
        } else if n == 0 && now - start > Duration::from_secs(120) {
            return Err(format!("no record in {topic} after 120 s"));
        }
        for ch in children.iter_mut() {
            if let Ok(Some(s)) = ch.try_wait() {
                return Err(format!("ferrocep exited: {s}"));
            }
        }
    }
    let first = first.unwrap_or(start);
    Ok((
        (last - start).as_secs_f64(),
        (last - first).as_secs_f64(),
        n,
    ))
}

fn pipe(
    a: &Args,
    input: &str,
    out: &str,
    group: &str,
    instances: usize,
) -> Result<(f64, f64, i64), String> {
    create_topic(&a.brokers, out, a.partitions)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = Instant::now();
    let mut threads = Vec::new();
    for _ in 0..instances {
        let (brokers, input, out, group, stop) = (
            a.brokers.clone(),
            input.to_string(),
            out.to_string(),
            group.to_string(),
            stop.clone(),
        );
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "10000")
                .set("fetch.max.bytes", FETCH_MAX_BYTES)
                .set("max.partition.fetch.bytes", FETCH_MAX_BYTES)
                .create()
                .map_err(|e| format!("consumer: {e}"))?;
            consumer.subscribe(&[&input]).map_err(|e| e.to_string())?;
            let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("enable.idempotence", IDEMPOTENCE.as_str())
                .set("acks", "all")
                .set("linger.ms", "5")
                .create()
                .map_err(|e| format!("producer: {e}"))?;
            let debug = std::env::var_os("KAFKA_BENCH_DEBUG").is_some();
            let mut seen = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                    if debug {
                        eprintln!(
                            "pipe: nothing; {seen} so far; assignment {:?}",
                            consumer.assignment()
                        );
                    }
                    continue;
                };
                seen += 1;
                if debug && seen.is_multiple_of(10_000) {
                    eprintln!(
                        "pipe: {seen} consumed; producer in flight {}",
                        producer.in_flight_count()
                    );
                }
                let m = m.map_err(|e| e.to_string())?;
                let mut rec = BaseRecord::<[u8], [u8]>::to(&out);
                if let Some(k) = m.key() {
                    rec = rec.key(k);
                }
                if let Some(v) = m.payload() {
                    rec = rec.payload(v);
                }
                loop {
                    match producer.send(rec) {
                        Ok(()) => break,
                        Err((_, r)) => {
                            rec = r;
                            producer.poll(Duration::from_millis(1));
                        }
                    }
                }
            }
            let _ = producer.flush(Duration::from_secs(30));
            Ok(())
        }));
    }
    let r = watch(a, out, start, &mut []);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| "pipe thread panicked".to_string())??;
    }
    r
}

fn ferrocep(
    a: &Args,
    input: &str,
    out: &str,
    group: &str,
    instances: usize,
    dir: &Path,
) -> Result<(f64, f64, i64), String> {
    create_topic(&a.brokers, out, a.partitions)?;
    let spec = fs::canonicalize(&a.spec).map_err(|e| format!("{}: {e}", a.spec.display()))?;
    let start = Instant::now();
    let mut children = Vec::new();
    for i in 0..instances {
        let d = dir.join(format!("{group}-{i}"));
        fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let sink = format!(
            "[{{type: kafka, brokers: \"{}\", topic: {out}, properties: {{enable.idempotence: \"{}\"}}}}]",
            a.brokers, *IDEMPOTENCE
        );
        let config = format!(
            "name: bench-{group}\npatterns: [\"{}\"]\nsource:\n  type: kafka\n  brokers: \"{}\"\n  topics: [{input}]\n  \
             group_id: {group}\n  start: earliest\n  scale_out: {scale_out}\n  properties: {{session.timeout.ms: \"10000\", fetch.max.bytes: \"{FETCH_MAX_BYTES}\", max.partition.fetch.bytes: \"{FETCH_MAX_BYTES}\"}}\n\
             outputs:\n  match: {sink}\n  timeout: {sink}\n  late: {sink}\n  error: [{{type: file, path: errors.jsonl}}]\n\
             state:\n  dir: data\n  checkpoint_interval: 10s\n",
            spec.display(),
            a.brokers,
            scale_out = a.scale_out || instances > 1,
        );
        let path = d.join("config.yaml");
        fs::File::create(&path)
            .and_then(|mut f| f.write_all(config.as_bytes()))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let child = Command::new(&a.ferrocep)
            .args(["run", "--config"])
            .arg(&path)
            .current_dir(&d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("stderr.log")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("{}: {e}", a.ferrocep.display()))?;
        children.push(child);
    }
    let r = watch(a, out, start, &mut children);
    for mut c in children {
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        let _ = c.wait();
    }
    let r = r?;
    let (records, ids) = distinct_ids(a, out)?;
    if records != ids {
        eprintln!(
            "{out}: {records} records, {ids} distinct ids ({} resent)",
            records - ids
        );
    }
    Ok((r.0, r.1, ids as i64))
}

/// The records of `topic` read back from the start: (records, distinct
/// `id` headers). A ferrocep output's id is the same in every run, so a
/// record written twice (a resend) counts once.
fn distinct_ids(a: &Args, topic: &str) -> Result<(usize, usize), String> {
    use rdkafka::message::Headers;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let c = watcher(&a.brokers)?;
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..a.partitions {
        let (_, hi) = c
            .fetch_watermarks(topic, p, Timeout::After(Duration::from_secs(10)))
            .map_err(|e| format!("watermarks of {topic}/{p}: {e}"))?;
        if hi > 0 {
            ends.insert(p, hi);
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| e.to_string())?;
        }
    }
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let (mut n, mut ids) = (0usize, std::collections::HashSet::new());
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "reading {topic} back: partitions {ends:?} not read to their end in 300 s"
            ));
        }
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.map_err(|e| format!("reading {topic} back: {e}"))?;
        n += 1;
        if let Some(h) = m.headers() {
            if let Some(id) = h.iter().find(|h| h.key == "id").and_then(|h| h.value) {
                ids.insert(id.to_vec());
            }
        }
        if ends
            .get(&m.partition())
            .is_some_and(|&hi| m.offset() + 1 >= hi)
        {
            ends.remove(&m.partition());
        }
    }
    Ok((n, ids.len()))
}

/// One round: pipe wall s, pipe events/s, ferrocep wall s, ferrocep
/// events/s, their ratio, pipe outputs, ferrocep outputs.
type Row = (f64, f64, f64, f64, f64, i64, i64);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run() -> Result<(), String> {
    let mut a = parse_args()?;
    if let Some(topic) = a.count.clone() {
        let meta = watcher(&a.brokers)?
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(|e| format!("metadata of {topic}: {e}"))?;
        a.partitions = meta
            .topics()
            .first()
            .map_or(1, |t| t.partitions().len() as i32);
        let hw = records_in(&watcher(&a.brokers)?, &topic, a.partitions)?;
        let (records, ids) = distinct_ids(&a, &topic)?;
        println!(
            "{topic}: {hw} records by the high watermarks, {records} read back, {ids} distinct ids"
        );
        return Ok(());
    }
    let tag = std::process::id();
    let input = format!("bench-in-{tag}");
    eprintln!(
        "loading {} into {input} ({} partitions) ...",
        a.input.display(),
        a.partitions
    );
    let events = load(&a, &input)?;
    eprintln!("{events} records");
    let dir = std::env::temp_dir().join(format!("kafka-bench-{tag}"));
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut rows: BTreeMap<usize, Vec<Row>> = BTreeMap::new();
    let mut csv = String::from("instances,round,pipeline,wall_s,stream_s,events_per_s,outputs\n");
    for &n in &a.instances {
        for round in 0..a.repeat {
            let g = format!("{tag}-{n}-{round}");
            let p = pipe(
                &a,
                &input,
                &format!("pipe-out-{g}"),
                &format!("pipe-{g}"),
                n,
            )?;
            let f = ferrocep(
                &a,
                &input,
                &format!("fc-out-{g}"),
                &format!("fc-{g}"),
                n,
                &dir,
            )?;
            let rate = |s: f64| events as f64 / s.max(1e-9);
            eprintln!(
                "instances {n} round {round}: pipe {:.2} s wall, {:.0} ev/s; ferrocep {:.2} s wall, {:.0} ev/s ({} outputs); ratio {:.2}",
                p.0, rate(p.1), f.0, rate(f.1), f.2, rate(f.1) / rate(p.1)
            );
            csv += &format!(
                "{n},{round},pipe,{:.3},{:.3},{:.0},{}\n",
                p.0,
                p.1,
                rate(p.1),
                p.2
            );
            csv += &format!(
                "{n},{round},ferrocep,{:.3},{:.3},{:.0},{}\n",
                f.0,
                f.1,
                rate(f.1),
                f.2
            );
            rows.entry(n).or_default().push((
                p.0,
                rate(p.1),
                f.0,
                rate(f.1),
                rate(f.1) / rate(p.1),
                p.2,
                f.2,
            ));
        }
    }
    println!("| instances | pipe wall s | pipe events/s | ferrocep wall s | ferrocep events/s | ferrocep / pipe (median of rounds) | outputs (pipe, ferrocep) |");
    println!("|---:|---:|---:|---:|---:|---:|---|");
    for (n, r) in &rows {
        let col = |f: fn(&Row) -> f64| median(r.iter().map(f).collect());
        println!(
            "| {n} | {:.2} | {:.0} k | {:.2} | {:.0} k | {:.0} % | {}, {} |",
            col(|x| x.0),
            col(|x| x.1) / 1e3,
            col(|x| x.2),
            col(|x| x.3) / 1e3,
            col(|x| x.4) * 100.0,
            r[0].5,
            r[0].6
        );
    }
    if let Some(p) = &a.csv {
        fs::write(p, csv).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kafka_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
