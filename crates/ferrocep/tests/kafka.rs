//! `ferrocep run` on Kafka: the real binary against a real broker on
//! loopback, `nisshi` (installed by `scripts/kafka-broker.sh install`; the
//! tests fail, never skip, when it is missing), written and read with
//! rdkafka.
//!
//! - the order-timeout job from a topic to a topic gives `match`'s outputs
//!   on the same events, keyed by the pattern key, with the id in a header;
//! - the message key and the record timestamp as the pattern's key and time;
//! - SIGKILL in mid-stream and a restart: file sinks hold exactly the
//!   outputs of an uninterrupted run (the source resumes at the offsets of
//!   the checkpoint), a kafka sink each of them at least once;
//! - scale-out (`scale_out: true`): two and three instances joining in
//!   mid-stream write together, by id, exactly one instance's outputs; an
//!   instance stopped with SIGTERM hands its partitions on through the
//!   changelog; one killed with SIGKILL has its partitions taken over from
//!   its last changelog checkpoint, nothing lost.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::run::{free_port, test_seed, Service};
use crate::util::{canon, json_lines, run_match, TempDir};

/// The broker's version, as `scripts/kafka-broker.sh` installs it.
const NISSHI_VERSION: &str = "0.7.0-pre.2";

/// Where the broker is: `FERROCEP_NISSHI`, else the script's cache.
fn nisshi() -> PathBuf {
    if let Some(p) = std::env::var_os("FERROCEP_NISSHI") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "FERROCEP_NISSHI={} is not a file: the kafka tests need the nisshi broker; \
             run scripts/kafka-broker.sh install",
            p.display()
        );
        return p;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let p = home.join(format!(
        ".cache/ferrocep/nisshi-{NISSHI_VERSION}/bin/nisshi"
    ));
    assert!(
        p.is_file(),
        "the kafka tests need the nisshi broker at {} (or FERROCEP_NISSHI naming it): \
         run scripts/kafka-broker.sh install (about 11 minutes once, then cached)",
        p.display()
    );
    p
}

/// A broker on a free loopback port with its data in a scratch directory,
/// killed on drop.
struct Broker {
    child: Option<Child>,
    /// `--storage-engine`: SQLite in the scratch directory, or memory.
    storage: &'static str,
    /// The bootstrap servers of a cluster this test did not start.
    external: Option<String>,
    producer: std::cell::OnceCell<ThreadedProducer<DefaultProducerContext>>,
    port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Broker {
    fn start() -> Broker {
        Broker::start_on("sqlite://nisshi.db")
    }

    /// A broker on the `storage` engine: the in-memory one for topics of
    /// more than ~10k records (nisshi's SQLite store stops serving a
    /// consumer after its first fetch on those).
    fn start_on(storage: &'static str) -> Broker {
        let dir = TempDir::new("nisshi");
        let port = free_port();
        let log = dir.path().join("broker.log");
        let mut b = Broker {
            child: None,
            storage,
            external: None,
            producer: std::cell::OnceCell::new(),
            port,
            log,
            _dir: dir,
        };
        b.spawn();
        b
    }

    /// Starts the broker process on the broker's port and store, and waits
    /// until it listens.
    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let dir = self._dir.path();
        let child = Command::new(nisshi())
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // nisshi reads a sqlite:// path relative to its working
            // directory.
            .args(["--storage-engine", self.storage])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("broker.out")).unwrap())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .unwrap(),
            )
            .spawn()
            .expect("nisshi starts");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nisshi exited at start ({s}):\n{}", self.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "nisshi did not listen on {} within 30 s:\n{}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker (SIGKILL) and starts it again on the same port and
    /// store after `down`.
    fn restart(&mut self, down: Duration) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(down);
        self.spawn();
    }

    /// A cluster started elsewhere (`FERROCEP_KAFKA_BROKERS`), if named.
    fn external() -> Option<Broker> {
        let brokers = std::env::var("FERROCEP_KAFKA_BROKERS").ok()?;
        Some(Broker {
            child: None,
            storage: "",
            external: Some(brokers),
            producer: std::cell::OnceCell::new(),
            port: 0,
            log: PathBuf::new(),
            _dir: TempDir::new("kafka-external"),
        })
    }

    fn brokers(&self) -> String {
        match &self.external {
            Some(b) => b.clone(),
            None => format!("127.0.0.1:{}", self.port),
        }
    }

    /// The log of `topic` as the broker stores it (nisshi keeps it in
    /// SQLite, read with Python's sqlite3), split by the transaction
    /// markers (control records) it wrote: what a `read_committed`
    /// consumer of real Kafka returns, and what it hides.
    fn transactions(&self, topic: &str) -> TxnLog {
        const SCRIPT: &str = r#"
import json, sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
rows = db.execute(
    "select tp.partition, r.offset_id, r.attributes, r.producer_id, r.producer_epoch, r.k, r.v "
    "from record r join topition tp on r.topition = tp.id join topic t on tp.topic = t.id "
    "where t.name = ? order by tp.partition, r.offset_id", (sys.argv[2],))
out = {"committed": [], "aborted": [], "open": [], "commits": 0, "aborts": 0}
pending = {}
for part, off, attrs, pid, epoch, k, v in rows:
    attrs = attrs or 0
    who = (part, pid, epoch)
    if attrs & 32:
        kind = int.from_bytes(bytes(k)[2:4], "big") if k else -1
        recs = pending.pop(who, [])
        if kind == 1:
            out["committed"] += recs; out["commits"] += 1
        else:
            out["aborted"] += recs; out["aborts"] += 1
    elif attrs & 16:
        pending.setdefault(who, []).append(bytes(v).decode())
    else:
        out["committed"].append(bytes(v).decode())
for recs in pending.values():
    out["open"] += recs
print(json.dumps(out))
"#;
        let db = self._dir.path().join("nisshi.db");
        let out = Command::new("python3")
            .args(["-c", SCRIPT])
            .arg(&db)
            .arg(topic)
            .output()
            .expect("python3 runs (the kafka tests read nisshi's log with it)");
        assert!(
            out.status.success(),
            "reading {}: {}",
            db.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let values = |k: &str| -> Vec<Value> {
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|t| serde_json::from_str(t.as_str().unwrap()).unwrap())
                .collect()
        };
        TxnLog {
            committed: values("committed"),
            aborted: values("aborted"),
            open: values("open"),
            commits: v["commits"].as_u64().unwrap(),
            aborts: v["aborts"].as_u64().unwrap(),
        }
    }

    /// The offset that `group` committed for partition 0 of `topic`
    /// (a transactional sink's count of committed outputs).
    fn committed_offset(&self, group: &str, topic: &str) -> i64 {
        self.committed_offset_at(group, topic, 0)
    }

    /// The offset that `group` committed for partition `p` of `topic`.
    fn committed_offset_at(&self, group: &str, topic: &str, p: i32) -> i64 {
        let c: BaseConsumer = self
            .client()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, p);
        let got = c
            .committed_offsets(tpl, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("the offsets of {group}: {e}"));
        match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers());
        c
    }

    /// Creates `topic` with `partitions` partitions.
    fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let res = rt
            .block_on(admin.create_topics([&new], &AdminOptions::new()))
            .unwrap_or_else(|e| panic!("creating {topic}: {e}\n{}", self.log_text()));
        for r in res {
            r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
        }
    }

    /// Writes `records` (key, value, timestamp) to `topic`, partition by
    /// key (librdkafka's default partitioner), and waits for every ack.
    fn produce(&self, topic: &str, records: &[(Option<String>, String, Option<i64>)]) {
        // One producer for the broker's life: with nisshi 0.7.0-pre.2, a
        // consumer may stop at the offset where another producer's records
        // begin (seen after several short-lived producers).
        let p = self.producer.get_or_init(|| {
            self.client()
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .create()
                .unwrap()
        });
        for (k, v, ts) in records {
            let mut r = BaseRecord::<str, str>::to(topic).payload(v.as_str());
            if let Some(k) = k {
                r = r.key(k.as_str());
            }
            if let Some(ts) = ts {
                r = r.timestamp(*ts);
            }
            let mut r = r;
            loop {
                match p.send(r) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        assert!(
                            e.to_string().contains("Queue full"),
                            "producing to {topic}: {e}"
                        );
                        r = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        p.flush(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("flushing to {topic}: {e}\n{}", self.log_text()));
        assert_eq!(p.in_flight_count(), 0);
    }

    /// A reader of every partition of `topic` from its beginning.
    fn reader(&self, topic: &str, partitions: i32) -> Reader {
        self.reader_with(topic, partitions, "read_uncommitted")
    }

    /// A reader of every partition of `topic` with `isolation.level` set to
    /// `isolation`.
    fn reader_with(&self, topic: &str, partitions: i32, isolation: &str) -> Reader {
        let mut config = self.client();
        // KAFKA_DEBUG=fetch,protocol (librdkafka's `debug`) prints the
        // reader's client log.
        if let Ok(d) = std::env::var("KAFKA_DEBUG") {
            config.set("debug", d);
        }
        let c: BaseConsumer<Loud> = config
            .set("group.id", format!("test-reader-{topic}-{isolation}"))
            .set("isolation.level", isolation)
            .set("enable.auto.commit", "false")
            .create_with_context(Loud)
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Offset(0))
                .unwrap();
        }
        c.assign(&tpl).unwrap();
        Reader {
            consumer: c,
            records: Vec::new(),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // The producer first, while the broker still answers.
        drop(self.producer.take());
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A topic's records by the fate of their transaction (see
/// [`Broker::transactions`]).
#[derive(Debug)]
struct TxnLog {
    /// Records of committed transactions, and records written outside any.
    committed: Vec<Value>,
    /// Records of aborted transactions.
    aborted: Vec<Value>,
    /// Records of transactions not ended.
    open: Vec<Value>,
    commits: u64,
    aborts: u64,
}

/// A record read back: key, value (as JSON), headers.
#[derive(Debug, Clone)]
struct Got {
    key: Option<String>,
    value: Value,
    headers: BTreeMap<String, String>,
}

/// The reader's client log to stderr, with `KAFKA_DEBUG`.
struct Loud;
impl rdkafka::ClientContext for Loud {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        if std::env::var_os("KAFKA_DEBUG").is_some() {
            eprintln!("reader {level:?} {fac}: {msg}");
        }
    }
}
impl rdkafka::consumer::ConsumerContext for Loud {}

struct Reader {
    consumer: BaseConsumer<Loud>,
    records: Vec<Got>,
}

impl Reader {
    /// Reads until at least `n` records are in, or `timeout`.
    fn read_until(&mut self, n: usize, timeout: Duration) -> &[Got] {
        let start = Instant::now();
        while self.records.len() < n && start.elapsed() < timeout {
            self.poll(Duration::from_millis(100));
        }
        &self.records
    }

    /// Reads whatever comes within `d`.
    fn poll(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.consumer.poll(left) {
                None => break,
                Some(Err(e)) => eprintln!("reader: {e}"),
                Some(Ok(m)) => {
                    let mut headers = BTreeMap::new();
                    if let Some(h) = m.headers() {
                        for h in h.iter() {
                            let v = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                            headers.insert(h.key.to_string(), v.unwrap_or_default());
                        }
                    }
                    self.records.push(Got {
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        value: serde_json::from_slice(m.payload().unwrap_or_default())
                            .expect("an output record's value is JSON"),
                        headers,
                    });
                }
            }
        }
    }
}

/// Waits until `f` says done, or panics after `timeout` with `what`, the
/// last thing `f` said and the service's log.
fn wait_for(s: &Service, timeout: Duration, what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match f() {
            Ok(()) => return,
            Err(why) if start.elapsed() > timeout => {
                panic!(
                    "timed out after {timeout:?} waiting for {what}: {why}\nferrocep:\n{}",
                    s.stderr()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// An output as `match` prints it: without `pattern` and `id`.
fn as_match(v: &Value) -> String {
    let mut v = v.clone();
    let o = v.as_object_mut().unwrap();
    o.remove("pattern");
    o.remove("id");
    canon(&v)
}

const SPEC: &str = r#"
name: orders
key: order_id
time:
  field: ts
  max_out_of_orderness: 1s
within: 10s
stages:
  - name: create
    where: type == "create"
  - name: pay
    contiguity: followed_by
    where: type == "pay"
"#;

/// Orders over `n` events in order of time: most paid 2 s after their
/// create, every 7th never (a timeout), every 11th also 12 s after (a
/// timeout, then a late pay or none). Each with its order id.
fn orders(n: usize) -> Vec<(String, String)> {
    let mut lines = Vec::with_capacity(n);
    let mut i = 0u64;
    while lines.len() < n {
        let ts = 1_000 + i * 50;
        let ev = |o: u64, ty: &str| {
            (
                format!("o{o}"),
                format!("{{\"order_id\":\"o{o}\",\"type\":\"{ty}\",\"ts\":{ts}}}"),
            )
        };
        lines.push(ev(i, "create"));
        if i >= 40 && !(i - 40).is_multiple_of(7) {
            lines.push(ev(i - 40, "pay"));
        }
        if i >= 240 && (i - 240).is_multiple_of(11) {
            lines.push(ev(i - 240, "pay"));
        }
        i += 1;
    }
    lines.truncate(n);
    lines
}

/// `match --end-of-input stop` on `events` (a kafka source never ends, so
/// nothing is flushed): its outputs as [`as_match`] text, sorted.
fn want(dir: &TempDir, events: &[(String, String)]) -> Vec<String> {
    let spec = dir.file("orders.yaml", SPEC);
    let text: String = events.iter().map(|(_, l)| format!("{l}\n")).collect();
    let input = dir.file("all.jsonl", &text);
    let run = run_match(&spec, &input, &["--end-of-input", "stop"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut want: Vec<String> = json_lines(&run.stdout).iter().map(as_match).collect();
    want.sort();
    want
}

/// Checks what a kafka sink wrote: each record keyed by its pattern key,
/// its id in the `id` header, and (once de-duplicated by id) exactly `want`.
fn check_records(got: &[Got], want: &[String], duplicates_allowed: bool) {
    let mut by_id: BTreeMap<String, &Got> = BTreeMap::new();
    for g in got {
        let id = g.value["id"].as_str().expect("an output has an id");
        assert_eq!(g.headers.get("id").map(String::as_str), Some(id), "{g:?}");
        assert_eq!(
            g.headers.get("kind").map(String::as_str),
            g.value["kind"].as_str()
        );
        assert_eq!(g.headers.get("pattern").map(String::as_str), Some("orders"));
        assert_eq!(g.key.as_deref(), g.value["key"].as_str(), "{g:?}");
        if by_id.insert(id.to_string(), g).is_some() {
            assert!(duplicates_allowed, "output {id} written twice");
        }
    }
    let mut got: Vec<String> = by_id.values().map(|g| as_match(&g.value)).collect();
    got.sort();
    if duplicates_allowed {
        // Every record is one of the outputs (see the kill test for why
        // not all of them are checked there).
        for g in &got {
            assert!(
                want.binary_search(g).is_ok(),
                "an output match does not make: {g}"
            );
        }
        return;
    }
    assert_eq!(got.len(), want.len(), "outputs by id");
    assert!(got == want, "the outputs differ from match's");
}

/// The order-timeout job from a topic to a topic equals `match` on the
/// same events.
#[test]
fn topic_to_topic_equals_match() {
    let broker = Broker::start();
    let dir = TempDir::new("kafka-e2e");
    let events = orders(3_000);
    let want = want(&dir, &events);
    broker.create_topic("orders", 1);
    broker.create_topic("outputs", 3);
    let records: Vec<_> = events
        .iter()
        .map(|(k, v)| (Some(k.clone()), v.clone(), None))
        .collect();
    broker.produce("orders", &records);
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: e2e\npatterns: [orders.yaml]\n\
             source: {{type: kafka, brokers: '{b}', topics: [orders]}}\n\
             outputs:\n  match: [{{type: kafka, brokers: '{b}', topic: outputs}}]\n  \
             timeout: [{{type: kafka, brokers: '{b}', topic: outputs}}]\n  \
             late: [{{type: kafka, brokers: '{b}', topic: outputs}}]\n  error: [{{type: file, path: errors.jsonl}}]\n\
             state: {{dir: data, checkpoint_interval: 200ms}}\n",
            b = broker.brokers()
        ),
    );
    let mut s = Service::start(dir.path(), &config, &[]);
    let mut reader = broker.reader("outputs", 3);
    let n = reader.read_until(want.len(), Duration::from_secs(60)).len();
    assert!(
        n >= want.len(),
        "{n} of {} outputs within 60 s; ferrocep:\n{}\nbroker:\n{}",
        want.len(),
        s.stderr(),
        broker.log_text()
    );
    // Let a duplicate, if any, show up.
    reader.poll(Duration::from_millis(500));
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(30)), Some(0), "{}", s.stderr());
    check_records(&reader.records, &want, false);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("errors.jsonl")).unwrap_or_default(),
        ""
    );
}

/// The message key and the record timestamp as the pattern's key and time
/// (`message_key_field`, `record_time_field`); a record without a key goes
/// to `error` with its reason.
#[test]
fn message_key_and_record_time_feed_the_pattern() {
    let broker = Broker::start();
    let dir = TempDir::new("kafka-keys");
    let events = orders(400);
    let want = want(&dir, &events);
    broker.create_topic("bare", 1);
    // The values without order_id and ts: those come from the record.
    let mut records: Vec<_> = events
        .iter()
        .map(|(k, v)| {
            let mut v: Value = serde_json::from_str(v).unwrap();
            let ts = v["ts"].as_i64().unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("order_id");
            o.remove("ts");
            (Some(k.clone()), v.to_string(), Some(ts))
        })
        .collect();
    records.push((None, r#"{"type":"create"}"#.to_string(), Some(1_000)));
    broker.produce("bare", &records);
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: keys\npatterns: [orders.yaml]\n\
             source: {{type: kafka, brokers: '{b}', topics: [bare], message_key_field: order_id, record_time_field: ts}}\n\
             outputs:\n  match: [{{type: file, path: m.jsonl}}]\n  timeout: [{{type: file, path: t.jsonl}}]\n  \
             late: [{{type: file, path: late.jsonl}}]\n  error: [{{type: file, path: errors.jsonl}}]\n\
             state: {{dir: data}}\n",
            b = broker.brokers()
        ),
    );
    let read = |f: &str| {
        std::fs::read_to_string(dir.path().join(f))
            .map(|t| json_lines(&t))
            .unwrap_or_default()
    };
    let mut s = Service::start(dir.path(), &config, &[]);
    wait_for(&s, Duration::from_secs(60), "every output", || {
        let n = read("m.jsonl").len() + read("t.jsonl").len() + read("late.jsonl").len();
        let e = read("errors.jsonl").len();
        (n >= want.len() && e > 0)
            .then_some(())
            .ok_or(format!("{n} of {} outputs, {e} errors", want.len()))
    });
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(30)), Some(0), "{}", s.stderr());
    // The events in the outputs hold the fields written into them after the
    // value's own; `canon` sorts fields, so they compare with match's.
    let mut got: Vec<String> = ["m.jsonl", "t.jsonl", "late.jsonl"]
        .iter()
        .flat_map(|f| read(f))
        .collect::<Vec<_>>()
        .iter()
        .map(as_match)
        .collect();
    got.sort();
    assert_eq!(got, want);
    let errors = read("errors.jsonl");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let reason = errors[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no message key"), "{errors:?}");
}

/// SIGKILL in mid-stream, at a random moment, then a restart: the file
/// sinks hold exactly the outputs of an uninterrupted run, each once (the
/// source resumed at the checkpoint's offsets); the kafka sink wrote at
/// least as many records, each a right output.
#[test]
fn sigkill_then_restart_resumes_at_the_checkpoint_offsets() {
    let broker = Broker::start();
    let dir = TempDir::new("kafka-kill");
    let events = orders(20_000);
    let want = want(&dir, &events);
    broker.create_topic("orders", 1);
    broker.create_topic("outputs", 1);
    // A killed member keeps its partitions until its session times out
    // (45 s by default): 6 s, so that each restart reads again soon.
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: kill\npatterns: [orders.yaml]\n\
             source: {{type: kafka, brokers: '{b}', topics: [orders], \
             properties: {{session.timeout.ms: '6000', heartbeat.interval.ms: '1000'}}}}\n\
             outputs:\n  match: [{{type: file, path: out/m.jsonl}}, {{type: kafka, brokers: '{b}', topic: outputs}}]\n  \
             timeout: [{{type: file, path: out/t.jsonl}}, {{type: kafka, brokers: '{b}', topic: outputs}}]\n  \
             late: [{{type: file, path: out/l.jsonl}}, {{type: kafka, brokers: '{b}', topic: outputs}}]\n\
             state: {{dir: data, checkpoint_interval: 50ms}}\n",
            b = broker.brokers()
        ),
    );
    let records: Vec<_> = events
        .iter()
        .map(|(k, v)| (Some(k.clone()), v.clone(), None))
        .collect();
    let count = || file_outputs(dir.path()).len();
    let seed = test_seed() as usize;
    // Read while it runs (the outputs of every instance, killed or not).
    let mut reader = broker.reader("outputs", 1);
    let mut s = Service::start(dir.path(), &config, &[]);
    let mut written = 0;
    for (round, kill_after) in [(0, 5_000 + seed % 3_000), (1, 12_000 + seed % 3_000)] {
        // Counted once the run has started (a restart cuts the files back
        // to its checkpoint first).
        wait_for(&s, Duration::from_secs(30), "the run to start", || {
            s.stderr()
                .contains("kafka source subscribed")
                .then_some(())
                .ok_or(String::new())
        });
        let before = count();
        while written < kill_after {
            let to = (written + 1_000).min(kill_after);
            broker.produce("orders", &records[written..to]);
            written = to;
            reader.poll(Duration::from_millis(10));
        }
        // Kill once the run has taken some of it in.
        // A restarted run waits for the killed member's session to end
        // (6 s) and a rebalance first: slow on a loaded machine.
        wait_for(
            &s,
            Duration::from_secs(90),
            "outputs before the kill",
            || {
                reader.poll(Duration::from_millis(10));
                (count() > before)
                    .then_some(())
                    .ok_or(format!("round {round}: {before} outputs"))
            },
        );
        std::thread::sleep(Duration::from_millis((seed % 7 * 23) as u64));
        s.signal("KILL");
        let _ = s.wait(Duration::from_secs(10));
        eprintln!(
            "round {round}: killed after {written} events, {} outputs in files",
            count()
        );
        s = Service::start(dir.path(), &config, &[]);
    }
    broker.produce("orders", &records[written..]);
    wait_for(
        &s,
        Duration::from_secs(120),
        "every output after the restarts",
        || {
            reader.poll(Duration::from_millis(10));
            let n = count();
            (n >= want.len())
                .then_some(())
                .ok_or(format!("{n} of {}", want.len()))
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(30)), Some(0), "{}", s.stderr());
    exactly_once(&file_outputs(dir.path()), &want, "the file outputs");
    // The kafka sink: every output, duplicates (told apart by id) allowed.
    // The kafka sink wrote each output at least once: at least as many
    // records as outputs, each a right one. (Reading every record back is
    // not possible here: with nisshi 0.7.0-pre.2, a consumer of a topic that
    // producers killed by SIGKILL wrote to stops getting records at some
    // offset below the high watermark, whatever its isolation level.)
    reader.read_until(want.len(), Duration::from_secs(10));
    let fresh: BaseConsumer = broker.client().create().unwrap();
    let (_, high) = fresh
        .fetch_watermarks("outputs", 0, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("the high watermark of outputs: {e}\n{}", broker.log_text()));
    eprintln!(
        "kafka sink: {high} records for {} outputs; read back {}",
        want.len(),
        reader.records.len()
    );
    assert!(
        high as usize >= want.len(),
        "{high} records for {} outputs",
        want.len()
    );
    assert!(!reader.records.is_empty());
    check_records(&reader.records, &want, true);
}

/// The broker killed and restarted in mid-stream: the run rides it out
/// (the source takes its partition again at the offsets it holds, the sink
/// resends what was not acknowledged) and the file sinks hold exactly the
/// outputs of an uninterrupted run; the kafka sink each one at least once.
#[test]
fn a_broker_restart_in_mid_stream_loses_nothing() {
    let mut broker = Broker::start();
    let dir = TempDir::new("kafka-broker-restart");
    let events = orders(6_000);
    let want = want(&dir, &events);
    broker.create_topic("orders", 1);
    broker.create_topic("outputs", 1);
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: restart\npatterns: [orders.yaml]\n\
             source: {{type: kafka, brokers: '{b}', topics: [orders], \
             properties: {{session.timeout.ms: '6000', heartbeat.interval.ms: '1000'}}}}\n\
             outputs:\n  match: [{{type: file, path: out/m.jsonl}}, {{type: kafka, brokers: '{b}', topic: outputs}}]\n  \
             timeout: [{{type: file, path: out/t.jsonl}}, {{type: kafka, brokers: '{b}', topic: outputs}}]\n  \
             late: [{{type: file, path: out/l.jsonl}}, {{type: kafka, brokers: '{b}', topic: outputs}}]\n\
             state: {{dir: data, checkpoint_interval: 100ms}}\n",
            b = broker.brokers()
        ),
    );
    let records: Vec<_> = events
        .iter()
        .map(|(k, v)| (Some(k.clone()), v.clone(), None))
        .collect();
    let count = || file_outputs(dir.path()).len();
    let mut s = Service::start(dir.path(), &config, &[]);
    broker.produce("orders", &records[..3_000]);
    wait_for(
        &s,
        Duration::from_secs(60),
        "outputs before the restart",
        || {
            (count() > 0)
                .then_some(())
                .ok_or("no output yet".to_string())
        },
    );
    let before = count();
    broker.restart(Duration::from_secs(2));
    eprintln!("broker restarted with {before} outputs in files");
    broker.produce("orders", &records[3_000..]);
    wait_for(
        &s,
        Duration::from_secs(120),
        "every output after the broker's restart",
        || {
            let n = count();
            (n >= want.len())
                .then_some(())
                .ok_or(format!("{n} of {}", want.len()))
        },
    );
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(60)), Some(0), "{}", s.stderr());
    exactly_once(&file_outputs(dir.path()), &want, "the file outputs");
    // Every output reached the topic, acknowledged before the stop.
    let fresh: BaseConsumer = broker.client().create().unwrap();
    let (_, high) = fresh
        .fetch_watermarks("outputs", 0, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("the high watermark of outputs: {e}\n{}", broker.log_text()));
    assert!(
        high as usize >= want.len(),
        "{high} records for {} outputs",
        want.len()
    );
    let mut reader = broker.reader("outputs", 1);
    reader.read_until(want.len(), Duration::from_secs(20));
    check_records(&reader.records, &want, true);
}

/// A sink that stalls holds the consumer back: while the webhook receiver
/// leaves every request hanging, the events read stop growing well short
/// of the topic (the queues are bounded) and the consumer lag says how far;
/// once it answers, every output arrives and the run stops cleanly.
#[test]
fn a_stalled_sink_holds_the_consumer_back() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let broker = Broker::start_on("memory://nisshi/");
    let dir = TempDir::new("kafka-stall");
    // The queues hold ~90k of these events (16 source batches of up to
    // 4,096 records, 8,192 outputs per sink).
    let events = orders(200_000);
    let want = want(&dir, &events);
    broker.create_topic("orders", 1);
    let up = Arc::new(AtomicBool::new(false));
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let hook = stalling_receiver(up.clone(), received.clone());
    let port = free_port();
    let sink = format!(
        "[{{type: webhook, url: 'http://127.0.0.1:{hook}/notify', batch: 200, timeout: 10m}}]"
    );
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: stall\npatterns: [orders.yaml]\n\
             source: {{type: kafka, brokers: '{b}', topics: [orders], \
             properties: {{statistics.interval.ms: '1000'}}}}\n\
             outputs:\n  match: {sink}\n  timeout: {sink}\n  late: {sink}\n\
             server: {{listen: '127.0.0.1:{port}'}}\n",
            b = broker.brokers()
        ),
    );
    let records: Vec<_> = events
        .iter()
        .map(|(k, v)| (Some(k.clone()), v.clone(), None))
        .collect();
    broker.produce("orders", &records);
    let mut s = Service::start(dir.path(), &config, &[]);
    let metric = |name: &str| -> Option<f64> {
        let (_, body) = crate::run::http_get::get(&format!("http://127.0.0.1:{port}/metrics"))?;
        body.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .reduce(f64::max)
    };
    // The events read stop growing: the same count 2 s apart.
    let mut last = -1.0;
    let mut read = 0.0;
    wait_for(&s, Duration::from_secs(90), "the consumer to stop", || {
        read = metric("ferrocep_events_in_total").unwrap_or(0.0);
        let still = read > 0.0 && read == last;
        last = read;
        std::thread::sleep(Duration::from_secs(2));
        still.then_some(()).ok_or(format!("{read} events read"))
    });
    assert!(
        read < (events.len() * 3 / 5) as f64,
        "the consumer read {read} of {} events while the sink was stalled",
        events.len()
    );
    wait_for(&s, Duration::from_secs(30), "the consumer lag", || {
        let lag = metric("ferrocep_kafka_consumer_lag").unwrap_or(0.0);
        // Most of what is not read (nisshi's in-memory store can report a
        // high watermark somewhat below the records it holds).
        (lag >= (events.len() as f64 - read) / 2.0)
            .then_some(())
            .ok_or(format!("lag {lag} with {read} of {} read", events.len()))
    });
    up.store(true, Ordering::SeqCst);
    wait_for(&s, Duration::from_secs(180), "every output", || {
        let n = received.lock().unwrap().len();
        (n >= want.len())
            .then_some(())
            .ok_or(format!("{n} of {} outputs", want.len()))
    });
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(60)), Some(0), "{}", s.stderr());
    let got = received.lock().unwrap();
    let by_id: BTreeMap<&str, &Value> = got
        .iter()
        .map(|v| (v["id"].as_str().expect("an output has an id"), v))
        .collect();
    let mut got: Vec<String> = by_id.values().map(|v| as_match(v)).collect();
    got.sort();
    assert!(got == want, "the webhook's outputs differ from match's");
}

/// A webhook receiver that leaves every request hanging until `up`, then
/// takes each body (an output or an array of them) into `received`.
fn stalling_receiver(
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    received: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/notify",
                axum::routing::post(move |body: String| {
                    let (up, received) = (up.clone(), received.clone());
                    async move {
                        while !up.load(std::sync::atomic::Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        let v: Value = serde_json::from_str(&body).unwrap();
                        let mut r = received.lock().unwrap();
                        match v {
                            Value::Array(a) => r.extend(a),
                            v => r.push(v),
                        }
                        axum::http::StatusCode::OK
                    }
                }),
            );
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    port
}

/// Without the broker the tests fail with how to get it (checked here on a
/// path that does not exist).
#[test]
fn a_missing_broker_says_how_to_install_it() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kafka::topic_to_topic_equals_match",
            "--nocapture",
        ])
        .env("FERROCEP_NISSHI", Path::new("/nonexistent/nisshi"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("run scripts/kafka-broker.sh install"),
        "{text}"
    );
}

/// `want`'s outputs of one kind.
fn of_kind(want: &[String], kind: &str) -> Vec<String> {
    want.iter()
        .filter(|w| serde_json::from_str::<Value>(w).unwrap()["kind"] == kind)
        .cloned()
        .collect()
}

/// The outputs in the file sinks `out/m.jsonl`, `out/t.jsonl` and
/// `out/l.jsonl` under `dir`.
fn file_outputs(dir: &Path) -> Vec<Value> {
    ["out/m.jsonl", "out/t.jsonl", "out/l.jsonl"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(dir.join(f))
                .map(|t| json_lines(&t))
                .unwrap_or_default()
        })
        .collect()
}

/// Each of `got` once by id, and together exactly `want`.
fn exactly_once(got: &[Value], want: &[String], what: &str) {
    let ids: BTreeSet<&str> = got.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "{what}: an output committed twice");
    let mut got: Vec<String> = got.iter().map(as_match).collect();
    got.sort();
    assert_eq!(got.len(), want.len(), "{what}: outputs");
    assert!(got == want, "{what}: the outputs differ from match's");
}

/// A pipeline whose timeouts go to `alerts` in transactions, the rest to
/// files. Transactions stay open until the next checkpoint: with
/// `interval` long, each run writes one transaction, committed only when it
/// stops (what nisshi can recover after a SIGKILL; see the README).
fn txn_config(dir: &TempDir, broker: &Broker, name: &str, group: &str, interval: &str) -> PathBuf {
    dir.file("orders.yaml", SPEC);
    dir.file(
        "pipe.yaml",
        &format!(
            "name: {name}\npatterns: [orders.yaml]\n\
             source: {{type: kafka, brokers: '{b}', topics: [orders], group_id: {group}, \
             properties: {{session.timeout.ms: '6000', heartbeat.interval.ms: '1000'}}}}\n\
             outputs:\n  match: [{{type: file, path: out/m.jsonl}}]\n  \
             timeout: [{{type: kafka, brokers: '{b}', topic: alerts, transactional_id: alerts-{name}}}]\n  \
             late: [{{type: file, path: out/l.jsonl}}]\n\
             state: {{dir: data, checkpoint_interval: {interval}}}\n",
            b = broker.brokers()
        ),
    )
}

/// Exactly once into Kafka across SIGKILLs: each run's transaction is left
/// open by the kill and aborted by the restart (its producer fenced); the
/// last run commits at its stop. The records of committed transactions (by
/// the broker's commit markers) are every timeout once; the killed runs'
/// records are in aborted transactions only.
#[test]
fn transactional_sink_commits_each_output_once_across_sigkills() {
    let broker = Broker::start();
    let dir = TempDir::new("kafka-txn-kill");
    let events = orders(6_000);
    let all = want(&dir, &events);
    let want = of_kind(&all, "timeout");
    broker.create_topic("orders", 1);
    broker.create_topic("alerts", 1);
    let config = txn_config(&dir, &broker, "txkill", "txkill", "1h");
    let records: Vec<_> = events
        .iter()
        .map(|(k, v)| (Some(k.clone()), v.clone(), None))
        .collect();
    let in_log = || {
        let t = broker.transactions("alerts");
        t.committed.len() + t.aborted.len() + t.open.len()
    };
    let mut s = Service::start(dir.path(), &config, &[]);
    let mut written = 0;
    for (round, upto) in [(0, 2_000), (1, 4_000)] {
        wait_for(&s, Duration::from_secs(30), "the run to start", || {
            s.stderr()
                .contains("transactions ready")
                .then_some(())
                .ok_or(String::new())
        });
        let before = in_log();
        broker.produce("orders", &records[written..upto]);
        written = upto;
        wait_for(
            &s,
            Duration::from_secs(60),
            "records in the open transaction",
            || {
                let n = in_log();
                (n > before)
                    .then_some(())
                    .ok_or(format!("round {round}: {n} records"))
            },
        );
        s.signal("KILL");
        let _ = s.wait(Duration::from_secs(10));
        let t = broker.transactions("alerts");
        eprintln!(
            "round {round}: killed; {} committed, {} aborted, {} open records",
            t.committed.len(),
            t.aborted.len(),
            t.open.len()
        );
        assert!(t.committed.is_empty(), "nothing is committed before a stop");
        s = Service::start(dir.path(), &config, &[]);
    }
    broker.produce("orders", &records[written..]);
    let count = || {
        std::fs::read_to_string(dir.path().join("out/m.jsonl"))
            .map(|t| json_lines(&t).len())
            .unwrap_or(0)
    };
    let matches = of_kind(&all, "match").len();
    wait_for(
        &s,
        Duration::from_secs(90),
        "every match in its file",
        || {
            let n = count();
            (n >= matches)
                .then_some(())
                .ok_or(format!("{n} of {matches}"))
        },
    );
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(60)), Some(0), "{}", s.stderr());
    let t = broker.transactions("alerts");
    eprintln!(
        "alerts: {} commits ({} records), {} aborts ({} records), {} open",
        t.commits,
        t.committed.len(),
        t.aborts,
        t.aborted.len(),
        t.open.len()
    );
    exactly_once(&t.committed, &want, "committed transactions");
    assert!(t.open.is_empty(), "a transaction was left open");
    assert!(
        t.aborts >= 2,
        "each killed run's transaction is aborted: {t:?}"
    );
    assert!(!t.aborted.is_empty());
    assert_eq!(
        broker.committed_offset("ferrocep-txn.alerts-txkill", "alerts"),
        want.len() as i64,
        "the count of committed outputs"
    );
    assert_eq!(
        broker.committed_offset("txkill", "orders"),
        events.len() as i64,
        "the source's offsets, committed in the last transaction"
    );
}

/// What nisshi cannot show, on a real Kafka cluster named by
/// `FERROCEP_KAFKA_BROKERS` (`host:port,...`; without it the test says it
/// did not run and passes): two runs killed in mid-transaction, then one
/// stopped; a `read_committed` consumer sees every timeout exactly once (the
/// killed runs' records are hidden), a `read_uncommitted` one sees them too.
#[test]
fn read_committed_sees_each_output_once_on_real_kafka() {
    let Some(broker) = Broker::external() else {
        eprintln!("not run: set FERROCEP_KAFKA_BROKERS to a real Kafka cluster to run it");
        return;
    };
    let dir = TempDir::new("kafka-real");
    let events = orders(6_000);
    let want = of_kind(&want(&dir, &events), "timeout");
    let run = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let (orders_topic, alerts) = (format!("orders-{run}"), format!("alerts-{run}"));
    broker.create_topic(&orders_topic, 1);
    broker.create_topic(&alerts, 1);
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: real\npatterns: [orders.yaml]\n\
             source: {{type: kafka, brokers: '{b}', topics: ['{orders_topic}'], group_id: 'real-{run}', \
             properties: {{session.timeout.ms: '6000', heartbeat.interval.ms: '1000'}}}}\n\
             outputs:\n  match: []\n  \
             timeout: [{{type: kafka, brokers: '{b}', topic: '{alerts}', transactional_id: 'alerts-{run}'}}]\n  \
             late: []\n\
             state: {{dir: data, checkpoint_interval: 1h}}\n",
            b = broker.brokers()
        ),
    );
    let records: Vec<_> = events
        .iter()
        .map(|(k, v)| (Some(k.clone()), v.clone(), None))
        .collect();
    let fresh: BaseConsumer = broker.client().create().unwrap();
    let high = || {
        fresh
            .fetch_watermarks(&alerts, 0, Duration::from_secs(20))
            .map(|(_, h)| h)
            .unwrap_or(0)
    };
    let mut s = Service::start(dir.path(), &config, &[]);
    let mut written = 0;
    for (round, upto) in [(0, 2_000), (1, 4_000)] {
        wait_for(&s, Duration::from_secs(60), "the run to start", || {
            s.stderr()
                .contains("transactions ready")
                .then_some(())
                .ok_or(String::new())
        });
        let before = high();
        broker.produce(&orders_topic, &records[written..upto]);
        written = upto;
        wait_for(
            &s,
            Duration::from_secs(60),
            "records in the open transaction",
            || {
                let n = high();
                (n > before)
                    .then_some(())
                    .ok_or(format!("round {round}: high watermark {n}"))
            },
        );
        s.signal("KILL");
        let _ = s.wait(Duration::from_secs(10));
        s = Service::start(dir.path(), &config, &[]);
    }
    broker.produce(&orders_topic, &records[written..]);
    let mut committed = broker.reader_with(&alerts, 1, "read_committed");
    // The last run's outputs become visible at its stop (its one commit).
    std::thread::sleep(Duration::from_secs(5));
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(60)), Some(0), "{}", s.stderr());
    committed.read_until(want.len(), Duration::from_secs(60));
    committed.poll(Duration::from_secs(2));
    let got: Vec<Value> = committed.records.iter().map(|g| g.value.clone()).collect();
    exactly_once(&got, &want, "read_committed");
    let mut all = broker.reader_with(&alerts, 1, "read_uncommitted");
    all.read_until(want.len() + 1, Duration::from_secs(30));
    assert!(
        all.records.len() > want.len(),
        "the killed runs' records are in the log ({} records, {} outputs)",
        all.records.len(),
        want.len()
    );
}

/// A crash after Kafka's commit and before the checkpoint's: the restart
/// from the checkpoint replays outputs that Kafka already holds, and the
/// sink drops exactly those (the count committed with each transaction
/// says how many). Driven through the sink's API: `ferrocep run` cannot be
/// killed between the two commits on purpose.
#[test]
fn transactional_sink_drops_the_replay_of_what_kafka_committed() {
    use ferrocep::runtime::config::{KafkaSinkConfig, SinkConfig};
    use ferrocep::runtime::sink::{KafkaCommit, Kind, Output, SinkStart};

    let broker = Broker::start();
    let dir = TempDir::new("kafka-txn-replay");
    broker.create_topic("out", 1);
    let cfg = SinkConfig::Kafka(KafkaSinkConfig {
        brokers: broker.brokers(),
        topic: "out".into(),
        properties: Default::default(),
        transactional: true,
        transactional_id: None,
    });
    let output = |i: u64| {
        let id = format!("p:timeout:{i}");
        let line = format!(r#"{{"kind":"timeout","pattern":"p","key":"k{i}","id":"{id}"}}"#);
        Output::new(Kind::Timeout, &id, line.as_bytes())
    };
    // One run: outputs `from..to`, resuming from `restored`; commits them
    // at a checkpoint and stops.
    let run = |restored: Option<u64>, from: u64, to: u64| {
        let start = SinkStart {
            pipeline: "replay".into(),
            kafka: restored.map(|n| KafkaCommit { kafka_committed: n }),
            scale_out: None,
            source_group: None,
        };
        let outputs = (from..to).map(output).collect();
        drive_txn_sink(&dir, &cfg, &start, |_| {}, outputs, vec![]);
    };
    let ids = |t: &TxnLog| -> Vec<String> {
        t.committed
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    };
    let range =
        |a: u64, b: u64| -> Vec<String> { (a..b).map(|i| format!("p:timeout:{i}")).collect() };
    run(Some(0), 0, 10);
    assert_eq!(
        broker.committed_offset("ferrocep-txn.ferrocep-replay-outputs.timeout[0]", "out"),
        10
    );
    // Restarted from a checkpoint that had 4: outputs 4..10 come again.
    run(Some(4), 4, 14);
    let t = broker.transactions("out");
    assert_eq!(ids(&t), range(0, 14), "{t:?}");
    assert_eq!(
        broker.committed_offset("ferrocep-txn.ferrocep-replay-outputs.timeout[0]", "out"),
        14
    );
    // Restarted from a checkpoint that had everything: nothing is dropped.
    run(Some(14), 14, 16);
    assert_eq!(ids(&broker.transactions("out")), range(0, 16));
}

/// Two instances with one transactional id: the second fences the first,
/// whose next produce fails; it stops with an error naming the id. The
/// second goes on and commits every output once.
#[test]
fn a_second_instance_fences_the_first() {
    let broker = Broker::start();
    let (da, db) = (TempDir::new("kafka-fence-a"), TempDir::new("kafka-fence-b"));
    let events = orders(4_000);
    let all = want(&da, &events);
    let want = of_kind(&all, "timeout");
    broker.create_topic("orders", 1);
    broker.create_topic("alerts", 1);
    // Separate groups, so that both read every record; one transactional id.
    let ca = txn_config(&da, &broker, "fence", "fence-a", "1h");
    let cb = txn_config(&db, &broker, "fence", "fence-b", "1h");
    let records: Vec<_> = events
        .iter()
        .map(|(k, v)| (Some(k.clone()), v.clone(), None))
        .collect();
    let mut a = Service::start(da.path(), &ca, &[]);
    wait_for(&a, Duration::from_secs(30), "a to start", || {
        a.stderr()
            .contains("transactions ready")
            .then_some(())
            .ok_or(String::new())
    });
    broker.produce("orders", &records[..2_000]);
    wait_for(&a, Duration::from_secs(60), "a's records", || {
        let t = broker.transactions("alerts");
        (!t.open.is_empty()).then_some(()).ok_or(format!("{t:?}"))
    });
    let mut b = Service::start(db.path(), &cb, &[]);
    wait_for(&b, Duration::from_secs(30), "b to start", || {
        b.stderr()
            .contains("transactions ready")
            .then_some(())
            .ok_or(String::new())
    });
    broker.produce("orders", &records[2_000..]);
    let code = a.wait(Duration::from_secs(60));
    assert_ne!(code, Some(0), "the fenced instance fails");
    let err = a.stderr();
    assert!(
        err.contains("fenced") && err.contains("alerts-fence"),
        "the fenced instance says why:\n{err}"
    );
    let matches = of_kind(&all, "match").len();
    let count = || {
        std::fs::read_to_string(db.path().join("out/m.jsonl"))
            .map(|t| json_lines(&t).len())
            .unwrap_or(0)
    };
    wait_for(&b, Duration::from_secs(90), "b's matches", || {
        let n = count();
        (n >= matches)
            .then_some(())
            .ok_or(format!("{n} of {matches}"))
    });
    b.signal("TERM");
    assert_eq!(b.wait(Duration::from_secs(60)), Some(0), "{}", b.stderr());
    let t = broker.transactions("alerts");
    exactly_once(&t.committed, &want, "b's committed transactions");
    assert!(
        t.aborts >= 1 && !t.aborted.is_empty(),
        "a's transaction is aborted: {t:?}"
    );
}

// ---------------------------------------------------------------------------
// Scale-out: several instances in one group, state per partition in the
// changelog topic.

impl Broker {
    /// Writes `values` to partition `partition` of `topic` (no key).
    fn produce_at(&self, topic: &str, partition: i32, values: &[String]) {
        let p = self.producer.get_or_init(|| {
            self.client()
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .create()
                .unwrap()
        });
        for v in values {
            let r = BaseRecord::<str, str>::to(topic)
                .partition(partition)
                .payload(v.as_str());
            if let Err((e, _)) = p.send(r) {
                panic!("producing to {topic}/{partition}: {e}");
            }
        }
        p.flush(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("flushing to {topic}: {e}\n{}", self.log_text()));
    }
}

/// One instance of a scaled-out pipeline: its own directory (config, data,
/// output files).
struct Instance {
    dir: TempDir,
    config: PathBuf,
    service: Option<Service>,
}

impl Instance {
    fn new(broker: &Broker, name: &str, i: usize) -> Instance {
        let dir = TempDir::new(&format!("kafka-scale-{i}"));
        dir.file("orders.yaml", SPEC);
        let config = dir.file(
            "pipe.yaml",
            &format!(
                "name: {name}\npatterns: [orders.yaml]\n\
                 source: {{type: kafka, brokers: '{b}', topics: [orders], scale_out: true, \
                 properties: {{session.timeout.ms: '6000', heartbeat.interval.ms: '500'}}}}\n\
                 outputs:\n  match: [{{type: file, path: out/m.jsonl}}]\n  \
                 timeout: [{{type: file, path: out/t.jsonl}}]\n  \
                 late: [{{type: file, path: out/l.jsonl}}]\n  error: [{{type: file, path: out/e.jsonl}}]\n\
                 state: {{dir: data, checkpoint_interval: 200ms}}\n",
                b = broker.brokers()
            ),
        );
        Instance {
            dir,
            config,
            service: None,
        }
    }

    fn start(&mut self) {
        self.service = Some(Service::start(self.dir.path(), &self.config, &[]));
    }

    fn service(&self) -> &Service {
        self.service.as_ref().unwrap()
    }

    /// The outputs in its files (a line cut short by a SIGKILL left out).
    fn outputs(&self) -> Vec<Value> {
        ["out/m.jsonl", "out/t.jsonl", "out/l.jsonl", "out/e.jsonl"]
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(self.dir.path().join(f))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// The ids and outputs (as `match` prints them) of every instance, and how
/// many outputs were written more than once.
fn union(instances: &[Instance]) -> (BTreeMap<String, String>, usize) {
    let mut by_id = BTreeMap::new();
    let mut twice = 0;
    for i in instances {
        for v in i.outputs() {
            let id = v["id"].as_str().unwrap().to_string();
            if by_id.insert(id, as_match(&v)).is_some() {
                twice += 1;
            }
        }
    }
    (by_id, twice)
}

/// Records to produce: key, value, timestamp.
type Records = Vec<(Option<String>, String, Option<i64>)>;

/// The events of the scale-out tests over `partitions` partitions, and
/// what `match` gives on them: the orders keyed by order id, then one
/// event far ahead in each partition, so that every partition's time (the
/// watermark is the smallest) passes every window.
fn scale_events(
    broker: &Broker,
    dir: &TempDir,
    n: usize,
    partitions: i32,
) -> (Records, Vec<String>, Vec<String>) {
    let events = orders(n);
    let closing: Vec<String> = (0..partitions)
        .map(|p| format!(r#"{{"order_id":"end-{p}","type":"end","ts":10000000}}"#))
        .collect();
    let mut all = events.clone();
    all.extend(closing.iter().map(|c| (String::new(), c.clone())));
    let want = want(dir, &all);
    broker.create_topic("orders", partitions);
    let records = events
        .iter()
        .map(|(k, v)| (Some(k.clone()), v.clone(), None))
        .collect();
    (records, closing, want)
}

/// Waits until the instances' outputs hold every id of `want`.
fn wait_for_all(instances: &[Instance], want: &[String], timeout: Duration) {
    let start = Instant::now();
    loop {
        let (got, _) = union(instances);
        if got.len() >= want.len() {
            return;
        }
        if start.elapsed() > timeout {
            let logs: Vec<String> = instances
                .iter()
                .filter(|i| i.service.is_some())
                .map(|i| i.service().stderr())
                .collect();
            panic!(
                "{} of {} outputs within {timeout:?}; logs:\n{}",
                got.len(),
                want.len(),
                logs.join("\n-----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks that the outputs by id are `want`, each id once.
fn check_union(instances: &[Instance], want: &[String], duplicates_allowed: bool) {
    let (got, twice) = union(instances);
    if !duplicates_allowed {
        assert_eq!(twice, 0, "outputs written by two instances");
    }
    let mut got: Vec<String> = got.into_values().collect();
    got.sort();
    if got != want {
        let w: BTreeSet<&String> = want.iter().collect();
        let g: BTreeSet<&String> = got.iter().collect();
        let extra: Vec<_> = g.difference(&w).take(5).collect();
        let missing: Vec<_> = w.difference(&g).take(5).collect();
        eprintln!(
            "{} not one instance's, e.g. {extra:#?}\n{} missing, e.g. {missing:#?}",
            g.difference(&w).count(),
            w.difference(&g).count()
        );
    }
    assert_eq!(got.len(), want.len(), "outputs by id");
    assert!(
        got == want,
        "the outputs differ from one instance's (match's)"
    );
}

/// Waits until an instance's log says `what` `n` times.
fn wait_log(s: &Service, what: &str, n: usize, timeout: Duration) {
    wait_for(s, timeout, what, || {
        let c = s.stderr().matches(what).count();
        (c >= n).then_some(()).ok_or(format!("{c} times"))
    });
}

/// Instances joining one by one in mid-stream: after each rebalance the
/// partitions' state moves through the changelog, and together they write,
/// by id, exactly the outputs of one instance (match's), none twice.
fn instances_share_the_work(count: usize) {
    let broker = Broker::start();
    let dir = TempDir::new("kafka-scale");
    let partitions = 4;
    let (records, closing, want) = scale_events(&broker, &dir, 6_000, partitions);
    let mut instances: Vec<Instance> = (0..count)
        .map(|i| Instance::new(&broker, "scale", i))
        .collect();
    let chunk = records.len() / (count + 1);
    broker.produce("orders", &records[..chunk]);
    instances[0].start();
    wait_log(
        instances[0].service(),
        "partitions gained",
        1,
        Duration::from_secs(30),
    );
    for i in 1..count {
        // Some outputs first, then the next instance joins.
        wait_for(
            instances[0].service(),
            Duration::from_secs(30),
            "outputs",
            || {
                (!union(&instances).0.is_empty())
                    .then_some(())
                    .ok_or(String::new())
            },
        );
        instances[i].start();
        wait_log(
            instances[i].service(),
            "partitions gained",
            1,
            Duration::from_secs(60),
        );
        broker.produce("orders", &records[chunk * i..chunk * (i + 1)]);
    }
    broker.produce("orders", &records[chunk * count..]);
    for (p, c) in closing.iter().enumerate() {
        broker.produce_at("orders", p as i32, std::slice::from_ref(c));
    }
    wait_for_all(&instances, &want, Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(500));
    for i in &mut instances {
        let s = i.service.as_mut().unwrap();
        s.signal("TERM");
    }
    for i in &mut instances {
        let s = i.service.as_mut().unwrap();
        assert_eq!(s.wait(Duration::from_secs(60)), Some(0), "{}", s.stderr());
    }
    // Every instance had a share.
    for (n, i) in instances.iter().enumerate() {
        let log = i.service().stderr();
        eprintln!(
            "instance {n}: {} outputs, {} times partitions gained, {} lost",
            i.outputs().len(),
            log.matches("partitions gained").count(),
            log.matches("partitions lost").count()
        );
        assert!(
            !i.outputs().is_empty(),
            "an instance wrote nothing:\n{}",
            i.service().stderr()
        );
    }
    check_union(&instances, &want, false);
}

#[test]
fn two_instances_write_the_outputs_of_one() {
    instances_share_the_work(2);
}

#[test]
fn three_instances_write_the_outputs_of_one() {
    instances_share_the_work(3);
}

/// An instance killed by SIGKILL in mid-stream: once its session has
/// expired the other takes its partitions, restores their last changelog
/// checkpoint and reads on from its offsets. No output is lost; by id, the
/// outputs are one instance's (those written again after the kill are the
/// same outputs).
#[test]
fn a_killed_instance_s_partitions_go_on_elsewhere() {
    let broker = Broker::start();
    let dir = TempDir::new("kafka-scale-kill");
    let partitions = 4;
    let (records, closing, want) = scale_events(&broker, &dir, 8_000, partitions);
    let mut instances: Vec<Instance> = (0..2)
        .map(|i| Instance::new(&broker, "scalekill", i))
        .collect();
    let seed = test_seed() as usize;
    let third = records.len() / 3;
    broker.produce("orders", &records[..third]);
    instances[0].start();
    wait_log(
        instances[0].service(),
        "partitions gained",
        1,
        Duration::from_secs(30),
    );
    instances[1].start();
    wait_log(
        instances[1].service(),
        "partitions gained",
        1,
        Duration::from_secs(60),
    );
    // The second owns some partitions now: feed it and kill it mid-stream.
    let kill_at = third + third / 2 + seed % (third / 2);
    broker.produce("orders", &records[third..kill_at]);
    wait_for(
        instances[1].service(),
        Duration::from_secs(30),
        "outputs of the second",
        || {
            (!instances[1].outputs().is_empty())
                .then_some(())
                .ok_or(String::new())
        },
    );
    std::thread::sleep(Duration::from_millis((seed % 5 * 37) as u64));
    {
        let s = instances[1].service.as_mut().unwrap();
        s.signal("KILL");
        let _ = s.wait(Duration::from_secs(10));
    }
    eprintln!("second instance killed after {kill_at} events");
    broker.produce("orders", &records[kill_at..]);
    for (p, c) in closing.iter().enumerate() {
        broker.produce_at("orders", p as i32, std::slice::from_ref(c));
    }
    // The first takes every partition once the session (6 s) expired.
    wait_log(
        instances[0].service(),
        "partitions gained",
        3,
        Duration::from_secs(60),
    );
    wait_for_all(&instances, &want, Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(500));
    let s = instances[0].service.as_mut().unwrap();
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(60)), Some(0), "{}", s.stderr());
    let (_, twice) = union(&instances);
    eprintln!("{twice} outputs written again after the kill");
    check_union(&instances, &want, true);
}

/// An instance stopped with SIGTERM in mid-stream writes its final
/// checkpoint to the changelog before it leaves the group: the other takes
/// its partitions from there, and nothing is written twice or lost.
#[test]
fn a_stopped_instance_hands_its_partitions_on() {
    let broker = Broker::start();
    let dir = TempDir::new("kafka-scale-stop");
    let (records, closing, want) = scale_events(&broker, &dir, 6_000, 4);
    let mut instances: Vec<Instance> = (0..2)
        .map(|i| Instance::new(&broker, "scalestop", i))
        .collect();
    let third = records.len() / 3;
    broker.produce("orders", &records[..third]);
    instances[0].start();
    wait_log(
        instances[0].service(),
        "partitions gained",
        1,
        Duration::from_secs(30),
    );
    instances[1].start();
    wait_log(
        instances[1].service(),
        "partitions gained",
        1,
        Duration::from_secs(60),
    );
    broker.produce("orders", &records[third..2 * third]);
    wait_for(
        instances[1].service(),
        Duration::from_secs(30),
        "outputs of the second",
        || {
            (!instances[1].outputs().is_empty())
                .then_some(())
                .ok_or(String::new())
        },
    );
    {
        let s = instances[1].service.as_mut().unwrap();
        s.signal("TERM");
        assert_eq!(s.wait(Duration::from_secs(60)), Some(0), "{}", s.stderr());
    }
    broker.produce("orders", &records[2 * third..]);
    for (p, c) in closing.iter().enumerate() {
        broker.produce_at("orders", p as i32, std::slice::from_ref(c));
    }
    wait_log(
        instances[0].service(),
        "partitions gained",
        3,
        Duration::from_secs(60),
    );
    wait_for_all(&instances, &want, Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(500));
    let s = instances[0].service.as_mut().unwrap();
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(60)), Some(0), "{}", s.stderr());
    check_union(&instances, &want, false);
}

// ---------------------------------------------------------------------------
// Scale-out with a transactional sink: one transaction per source
// partition, its producer fenced by the partition's next owner.

impl Instance {
    /// An instance whose timeouts go to topic `alerts` in transactions, with
    /// no checkpoint but at rebalances and the stop (nisshi leaves a killed
    /// producer's second transaction open for ever; see the README).
    fn transactional(broker: &Broker, name: &str, i: usize) -> Instance {
        let dir = TempDir::new(&format!("kafka-scale-txn-{i}"));
        dir.file("orders.yaml", SPEC);
        let config = dir.file(
            "pipe.yaml",
            &format!(
                "name: {name}\npatterns: [orders.yaml]\n\
                 source: {{type: kafka, brokers: '{b}', topics: [orders], scale_out: true, \
                 properties: {{session.timeout.ms: '6000', heartbeat.interval.ms: '500'}}}}\n\
                 outputs:\n  match: [{{type: file, path: out/m.jsonl}}]\n  \
                 timeout: [{{type: kafka, brokers: '{b}', topic: alerts, transactional_id: alerts-{name}}}]\n  \
                 late: [{{type: file, path: out/l.jsonl}}]\n  error: [{{type: file, path: out/e.jsonl}}]\n\
                 state: {{dir: data, checkpoint_interval: 1h}}\n",
                b = broker.brokers()
            ),
        );
        Instance {
            dir,
            config,
            service: None,
        }
    }
}

/// Two transactional instances over four partitions, both in the group
/// before any event, then every order produced: each instance has open
/// transactions. Returns the instances, the closing events and the wanted
/// timeouts and matches.
fn transactional_pair(
    broker: &Broker,
    dir: &TempDir,
    name: &str,
) -> (Vec<Instance>, Vec<String>, Vec<String>, Vec<String>) {
    let (records, closing, want) = scale_events(broker, dir, 6_000, 4);
    broker.create_topic("alerts", 1);
    let mut instances: Vec<Instance> = (0..2)
        .map(|i| Instance::transactional(broker, name, i))
        .collect();
    instances[0].start();
    wait_log(
        instances[0].service(),
        "partitions gained",
        1,
        Duration::from_secs(30),
    );
    instances[1].start();
    wait_log(
        instances[1].service(),
        "partitions gained",
        1,
        Duration::from_secs(60),
    );
    broker.produce("orders", &records);
    // Both have timeouts in open transactions.
    for i in &instances {
        wait_log(
            i.service(),
            "of the partition's replay are already committed",
            1,
            Duration::from_secs(30),
        );
    }
    wait_for(
        instances[1].service(),
        Duration::from_secs(30),
        "records in open transactions",
        || {
            let n = broker.transactions("alerts").open.len();
            (n > 0).then_some(()).ok_or(format!("{n} records"))
        },
    );
    (
        instances,
        closing,
        of_kind(&want, "timeout"),
        of_kind(&want, "match"),
    )
}

/// Ends a [`transactional_pair`] test: the closing events, every match in
/// the files, the first instance stopped; then the committed records of
/// `alerts` are each timeout once, nothing is left open, `who`'s records
/// are in aborted transactions, and the source's offsets of pipeline
/// `name` are committed.
fn finish_transactional(
    broker: &Broker,
    name: &str,
    who: &str,
    instances: &mut [Instance],
    closing: &[String],
    timeouts: &[String],
    matches: &[String],
) {
    for (p, c) in closing.iter().enumerate() {
        broker.produce_at("orders", p as i32, std::slice::from_ref(c));
    }
    wait_log(
        instances[0].service(),
        "partitions gained",
        3,
        Duration::from_secs(60),
    );
    wait_for_all(instances, matches, Duration::from_secs(90));
    let s = instances[0].service.as_mut().unwrap();
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(60)), Some(0), "{}", s.stderr());
    let t = broker.transactions("alerts");
    eprintln!(
        "alerts: {} commits ({} records), {} aborts ({} records), {} open",
        t.commits,
        t.committed.len(),
        t.aborts,
        t.aborted.len(),
        t.open.len()
    );
    exactly_once(&t.committed, timeouts, "committed transactions");
    assert!(t.open.is_empty(), "a transaction was left open");
    assert!(
        t.aborts >= 1 && !t.aborted.is_empty(),
        "the {who}'s transactions are aborted: {t:?}"
    );
    // The source's offsets went in the transactions too.
    let group = &format!("ferrocep-{name}");
    for p in 0..4 {
        let o = broker.committed_offset_at(group, "orders", p);
        assert!(o > 0, "partition {p}'s source offset in {group}: {o}");
    }
}

/// An instance killed with SIGKILL with open transactions: the instance
/// that takes its partitions fences their producers (their open
/// transactions are aborted) and replays them from their changelog
/// checkpoint; the committed records are each timeout once.
#[test]
fn a_killed_instance_s_open_transactions_are_aborted() {
    let broker = Broker::start();
    let dir = TempDir::new("kafka-scale-txn-kill");
    let (mut instances, closing, timeouts, matches) = transactional_pair(&broker, &dir, "txscale");
    {
        let s = instances[1].service.as_mut().unwrap();
        s.signal("KILL");
        let _ = s.wait(Duration::from_secs(10));
    }
    finish_transactional(
        &broker,
        "txscale",
        "killed instance",
        &mut instances,
        &closing,
        &timeouts,
        &matches,
    );
}

/// A zombie: an instance paused (SIGSTOP) past its session loses its
/// partitions without knowing; their new owner fences their producers.
/// When the zombie wakes (SIGCONT), its commit fails, it says it was
/// fenced and exits; nothing it wrote after the takeover is committed.
#[test]
fn a_paused_instance_is_fenced_when_it_wakes() {
    let broker = Broker::start();
    let dir = TempDir::new("kafka-scale-txn-zombie");
    let (mut instances, closing, timeouts, matches) = transactional_pair(&broker, &dir, "txzombie");
    let ready = |s: &Service| s.stderr().matches("partition's transactions ready").count();
    let before = ready(instances[0].service());
    instances[1].service().signal("STOP");
    // The session (6 s) expires: the first takes every partition.
    wait_log(
        instances[0].service(),
        "partitions gained",
        3,
        Duration::from_secs(60),
    );
    // Its producers of every partition started again: those of the
    // zombie's partitions fenced the zombie's.
    wait_for(
        instances[0].service(),
        Duration::from_secs(60),
        "the producers of every partition",
        || {
            let n = ready(instances[0].service()) - before;
            (n >= 4).then_some(()).ok_or(format!("{n} started"))
        },
    );
    instances[1].service().signal("CONT");
    {
        let s = instances[1].service.as_mut().unwrap();
        let code = s.wait(Duration::from_secs(60));
        let err = s.stderr();
        assert_ne!(code, Some(0), "the zombie fails:\n{err}");
        assert!(err.contains("fenced"), "the zombie says why:\n{err}");
    }
    finish_transactional(
        &broker,
        "txzombie",
        "zombie",
        &mut instances,
        &closing,
        &timeouts,
        &matches,
    );
}

/// The transactional sink of a source that scales out, through its API:
/// each source partition's outputs go in that partition's transactions,
/// its count of committed outputs at that partition of the source's topic.
/// A partition gained from a changelog checkpoint behind Kafka's count
/// drops the outputs of its replay that Kafka holds, the other partition's
/// none.
#[test]
fn partitioned_sink_drops_what_kafka_committed_per_partition() {
    use ferrocep::runtime::config::{KafkaSinkConfig, SinkConfig};
    use ferrocep::runtime::sink::{Kind, Output, SinkStart};
    use ferrocep::runtime::source::KafkaOffset;

    let broker = Broker::start();
    let dir = TempDir::new("kafka-txn-parts");
    broker.create_topic("orders", 2);
    broker.create_topic("out", 1);
    let cfg = SinkConfig::Kafka(KafkaSinkConfig {
        brokers: broker.brokers(),
        topic: "out".into(),
        properties: Default::default(),
        transactional: true,
        transactional_id: Some("parts".into()),
    });
    let output = |p: u16, i: u64| {
        let id = format!("p{p}:timeout:{i}");
        let line = format!(r#"{{"kind":"timeout","pattern":"p","key":"k{i}","id":"{id}"}}"#);
        Output::new(Kind::Timeout, &id, line.as_bytes()).with_source_partition(p)
    };
    // One run: partition p gained from a checkpoint of `restored` timeouts,
    // its outputs `from..to`, interleaved; committed at a checkpoint.
    let run = |parts: &[(u16, Option<u64>, u64, u64)]| {
        let start = SinkStart {
            pipeline: "parts".into(),
            kafka: None,
            scale_out: Some("orders".into()),
            source_group: Some("src".into()),
        };
        let longest = parts.iter().map(|&(_, _, a, b)| b - a).max().unwrap_or(0);
        let outputs = (0..longest)
            .flat_map(|k| {
                parts
                    .iter()
                    .filter(move |&&(_, _, from, to)| from + k < to)
                    .map(move |&(p, _, from, _)| output(p, from + k))
            })
            .collect();
        let gain = |txn: &ferrocep::runtime::sink::TxnShared| {
            for &(p, restored, ..) in parts {
                txn.gained(p, restored.map(|n| [0, n, 0, 0]));
            }
        };
        // The source's offsets of the checkpoint: each partition's `to`.
        let offsets = parts
            .iter()
            .map(|&(p, _, _, to)| KafkaOffset {
                topic: "orders".into(),
                partition: i32::from(p),
                offset: to as i64,
            })
            .collect();
        drive_txn_sink(&dir, &cfg, &start, gain, outputs, offsets);
    };
    let ids = |p: u16| -> Vec<String> {
        let mut v: Vec<String> = broker
            .transactions("out")
            .committed
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .filter(|id| id.starts_with(&format!("p{p}:")))
            .collect();
        v.sort_by_key(|id| id.rsplit(':').next().unwrap().parse::<u64>().unwrap());
        v
    };
    let range = |p: u16, a: u64, b: u64| -> Vec<String> {
        (a..b).map(|i| format!("p{p}:timeout:{i}")).collect()
    };
    let count = |p: i32| broker.committed_offset_at("ferrocep-txn.parts", "orders", p);
    run(&[(0, None, 0, 10), (1, None, 0, 6)]);
    assert_eq!((count(0), count(1)), (10, 6));
    // Partition 0 from a checkpoint that had 4 (outputs 4..10 come again),
    // partition 1 from one that had all 6.
    run(&[(0, Some(4), 4, 14), (1, Some(6), 6, 9)]);
    assert_eq!(ids(0), range(0, 0, 14));
    assert_eq!(ids(1), range(1, 0, 9));
    assert_eq!((count(0), count(1)), (14, 9));
    // Each partition's transaction committed its source offsets too.
    let source = |p: i32| broker.committed_offset_at("src", "orders", p);
    assert_eq!((source(0), source(1)), (14, 9));
    let t = broker.transactions("out");
    assert!(t.open.is_empty() && t.aborted.is_empty(), "{t:?}");
}

/// Drives a transactional kafka sink through its API, as one run of a
/// pipeline: starts it from `start`, hands `setup` its barrier, sends
/// `outputs`, asks a checkpoint with the source at `offsets` to commit
/// them, waits until it has, and stops it.
fn drive_txn_sink(
    dir: &TempDir,
    cfg: &ferrocep::runtime::config::SinkConfig,
    start: &ferrocep::runtime::sink::SinkStart,
    setup: impl FnOnce(&ferrocep::runtime::sink::TxnShared),
    outputs: Vec<ferrocep::runtime::sink::Output>,
    offsets: Vec<ferrocep::runtime::source::KafkaOffset>,
) {
    use ferrocep::runtime::clock::SystemClock;
    use ferrocep::runtime::metrics::Metrics;
    use ferrocep::runtime::sink::{self, SinkCtx};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ctx = SinkCtx {
        name: "outputs.timeout[0]".into(),
        metrics: Arc::new(Metrics::new()),
        config_dir: dir.path().to_path_buf(),
        data_dir: dir.path().to_path_buf(),
        clock: Arc::new(SystemClock),
    };
    let s = sink::spawn_sink_from(cfg, ctx, rt.handle(), 64, start).unwrap();
    let txn = s.txn.expect("a transactional sink");
    setup(&txn);
    let sent = outputs.len() as u64;
    for o in outputs {
        s.handle.tx.blocking_send(o).unwrap();
    }
    txn.request_commit_at(sent, offsets);
    let t0 = Instant::now();
    while s.handle.delivered.load(Ordering::SeqCst) < sent {
        assert!(t0.elapsed() < Duration::from_secs(60), "not committed");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(s.handle.tx);
    rt.block_on(s.handle.task).unwrap().unwrap();
}
