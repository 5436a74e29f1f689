//! The `kafka` source: the JSON values of the records of some topics, read
//! in a consumer group with librdkafka (the `kafka` feature).
//!
//! Positions: an event's position is its record's place in Kafka, packed
//! into 64 bits ([`position`]): the topic's index in the config (4 bits),
//! the partition (12 bits), the offset (48 bits). So output ids are the same
//! in every run over the same records, whatever the order in which
//! partitions interleave.
//!
//! Resuming: every batch carries the offset of the next record of each
//! partition read so far ([`Resume::kafka`]); a checkpoint stores them. When
//! the group assigns this consumer a partition, it starts at the offset the
//! checkpoint (or this run) has for it, else at the group's committed offset,
//! else at `start`. So a restart after a crash replays exactly the records
//! after the last checkpoint. The source commits no offset to the group:
//! the checkpoint is the one truth (the same records are never taken twice
//! into the state); a transactional kafka sink commits the checkpoint's
//! offsets in its transactions, for those who watch the group.
//!
//! State per partition ([`KafkaSource::with_changelog`]): the consumer's
//! rebalance callback hands the pipeline each partition it gains with its
//! state read from the changelog ([`crate::changelog`]), and starts it at
//! the offset of that state; for each partition it loses, it waits until the
//! pipeline has checkpointed it to the changelog and dropped it. Records
//! read from a lost partition but not yet sent are dropped (the next owner
//! reads them after the checkpoint's offset). A stop leaves the group only
//! once the pipeline's final checkpoint is written (its release flag).
//!
//! A record whose value cannot be an event (no value, or a field to fill in
//! that the record does not have) goes to the `error` output with its
//! position; the engine reports values that are not JSON objects itself.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use serde_json::value::RawValue;

use super::{
    events_in, fail, kafka_partition, Batch, KafkaOffset, Position, Resume, Source, SourceCtx,
    SourceError, SourceErrorKind, SourceMsg, SourceTx, StopFlag,
};
use crate::changelog::io::{client_config, ensure_topic, ChangelogReader, KafkaChangelogWriter};
use crate::changelog::PartitionChange;
use crate::config::KafkaSourceConfig;
use crate::metrics::Metrics;

/// Partitions per topic that a position can hold (12 bits).
pub const MAX_PARTITIONS: i32 = 1 << 12;

/// Bits of the offset in a position.
const OFFSET_BITS: u32 = 48;

/// Most records in one batch.
const MAX_BATCH: usize = 4096;

/// How long one poll waits for a record when none is at hand.
const POLL: Duration = Duration::from_millis(100);

/// How long reading one changelog partition may take.
const CHANGELOG_READ: Duration = Duration::from_secs(120);

/// How long a stopping source waits for the pipeline's final checkpoint
/// before it leaves the group anyway.
const RELEASE_WAIT: Duration = Duration::from_secs(120);

/// How often librdkafka reports statistics (the consumer lag metric).
const STATS_INTERVAL_MS: &str = "5000";

/// The position of the record at `offset` of `partition` of the topic at
/// `topic` in the config; `None` when they do not fit (see the module docs).
pub fn position(topic: usize, partition: i32, offset: i64) -> Option<Position> {
    if topic >= 16
        || !(0..MAX_PARTITIONS).contains(&partition)
        || !(0..1 << OFFSET_BITS).contains(&offset)
    {
        return None;
    }
    Some(((topic as u64) << 60) | ((partition as u64) << OFFSET_BITS) | offset as u64)
}

/// The topic index, partition and offset of a [`position`].
pub fn split_position(pos: Position) -> (usize, i32, i64) {
    (
        (pos >> 60) as usize,
        ((pos >> OFFSET_BITS) & (MAX_PARTITIONS as u64 - 1)) as i32,
        (pos & ((1 << OFFSET_BITS) - 1)) as i64,
    )
}

/// The `kafka` source, its consumer created (so that bad client properties
/// stop the start) but not yet subscribed.
pub struct KafkaSource {
    consumer: BaseConsumer<Context>,
    cfg: KafkaSourceConfig,
    group_id: String,
}

impl KafkaSource {
    /// A consumer for `cfg` in the group `cfg.group_id` (default
    /// `ferrocep-PIPELINE`), resuming at the offsets of `resume`. Fails
    /// when librdkafka refuses the client properties.
    pub fn new(
        cfg: KafkaSourceConfig,
        pipeline: &str,
        resume: Option<&Resume>,
        metrics: Arc<Metrics>,
    ) -> Result<KafkaSource, SourceError> {
        KafkaSource::build(cfg, pipeline, resume, metrics, None)
    }

    /// A consumer whose state follows its partitions (see the module docs):
    /// each partition it gains starts where the changelog `topic` has its
    /// state (else at the group's committed offset, else at `start`; never
    /// at the local checkpoint's offsets, whose state is not restored). The
    /// pipeline raises `release` once its final checkpoint is written.
    ///
    /// Before it reads a partition back, it claims it with `token`, the
    /// token of the pipeline's changelog writer: checkpoints of the
    /// partition by any other writer after that are not taken.
    pub fn with_changelog(
        cfg: KafkaSourceConfig,
        pipeline: &str,
        topic: &str,
        token: u64,
        release: StopFlag,
        metrics: Arc<Metrics>,
    ) -> Result<KafkaSource, SourceError> {
        let config = client_config(&cfg.brokers, &cfg.properties, false);
        let reader = ChangelogReader::new(&config, topic)
            .map_err(|e| SourceError::new(SourceErrorKind::Config, format!("source: {e}")))?;
        let producer = client_config(&cfg.brokers, &cfg.properties, true);
        let claims = KafkaChangelogWriter::with_token(&producer, topic, token)
            .map_err(|e| SourceError::new(SourceErrorKind::Config, format!("source: {e}")))?;
        let scale = Scale {
            topic: topic.to_string(),
            reader,
            claims: Mutex::new(claims),
            release,
            tx: Mutex::new(None),
            owned: Mutex::new(BTreeSet::new()),
            revoked: AtomicBool::new(false),
            fatal: Mutex::new(None),
        };
        KafkaSource::build(cfg, pipeline, None, metrics, Some(scale))
    }

    fn build(
        cfg: KafkaSourceConfig,
        pipeline: &str,
        resume: Option<&Resume>,
        metrics: Arc<Metrics>,
        scale: Option<Scale>,
    ) -> Result<KafkaSource, SourceError> {
        let group_id = cfg.group(pipeline);
        let mut next = BTreeMap::new();
        for o in resume.and_then(|r| r.kafka.as_ref()).into_iter().flatten() {
            next.insert((o.topic.clone(), o.partition), o.offset);
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &cfg.brokers)
            .set("group.id", &group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", cfg.start.as_str())
            .set("statistics.interval.ms", STATS_INTERVAL_MS);
        if scale.is_some() {
            // Partition p of every topic is one state unit: the range
            // strategy gives one member the same partitions of each topic
            // (co-partitioned topics, as Kafka Streams requires).
            c.set("partition.assignment.strategy", "range");
        }
        for (k, v) in &cfg.properties {
            c.set(k, v);
        }
        c.set_log_level(RDKafkaLogLevel::Info);
        let context = Context {
            next: Mutex::new(next),
            metrics,
            scale,
        };
        let consumer: BaseConsumer<Context> = c.create_with_context(context).map_err(|e| {
            SourceError::new(
                SourceErrorKind::Config,
                format!("source: cannot create the Kafka consumer: {e}"),
            )
        })?;
        Ok(KafkaSource {
            consumer,
            cfg,
            group_id,
        })
    }

    /// The consumer group.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }
}

impl Source for KafkaSource {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn run(self: Box<Self>, ctx: SourceCtx) -> Result<(), SourceError> {
        let KafkaSource {
            consumer,
            cfg,
            group_id,
        } = *self;
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        if let Some(scale) = &consumer.context().scale {
            if let Err(e) = prepare_changelog(&cfg, scale, &ctx) {
                return fail(&ctx.out, SourceErrorKind::Broker, format!("source: {e}"));
            }
        }
        if let Err(e) = consumer.subscribe(&topics) {
            return fail(
                &ctx.out,
                SourceErrorKind::Broker,
                format!("source: cannot subscribe to {}: {e}", topics.join(", ")),
            );
        }
        tracing::info!(brokers = %cfg.brokers, topics = %topics.join(","), group = %group_id, "kafka source subscribed");
        let r = read(&consumer, &cfg, &ctx);
        if let Some(scale) = &consumer.context().scale {
            // Leaving the group hands the partitions on: only once the
            // pipeline's final checkpoint is in the changelog.
            let deadline = Instant::now() + RELEASE_WAIT;
            while !scale.release.is_raised() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        drop(consumer);
        r
    }
}

/// Reads records into batches until the stop flag, or a failure.
fn read(
    consumer: &BaseConsumer<Context>,
    cfg: &KafkaSourceConfig,
    ctx: &SourceCtx,
) -> Result<(), SourceError> {
    {
        let events = events_in(&ctx.metrics, "kafka");
        let input_errors = ctx
            .metrics
            .input_errors
            .get_or_create(&Metrics::label("source", "kafka"))
            .clone();
        let mut last_warning: Option<Instant> = None;
        let mut suppressed = 0u64;
        loop {
            if ctx.out.stop().is_raised() {
                return Ok(());
            }
            let mut batch = Batch::with_capacity(64 << 10);
            let mut taken = false;
            let mut wait = POLL;
            while batch.len() < MAX_BATCH {
                let polled = consumer.poll(wait);
                if let Some(scale) = &consumer.context().scale {
                    if let Some(e) = scale
                        .fatal
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take()
                    {
                        return fail(&ctx.out, SourceErrorKind::Broker, format!("source: {e}"));
                    }
                    if scale.revoked.swap(false, Ordering::SeqCst) {
                        // Read from partitions now gone: the next owner
                        // reads them again after the checkpoint's offset.
                        let owned = scale.owned.lock().unwrap_or_else(PoisonError::into_inner);
                        batch = keep_owned(&batch, &owned);
                    }
                }
                let msg = match polled {
                    None => break,
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        if is_fatal(&e) {
                            return fail(
                                &ctx.out,
                                SourceErrorKind::Broker,
                                format!("source: kafka: {e}"),
                            );
                        }
                        // Broker or topic trouble librdkafka retries by
                        // itself: said at most every 10 s.
                        if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                            tracing::warn!(error = %e, suppressed, "kafka source: consumer error (retrying)");
                            last_warning = Some(Instant::now());
                            suppressed = 0;
                        } else {
                            suppressed += 1;
                        }
                        break;
                    }
                };
                wait = Duration::ZERO;
                let topic = msg.topic();
                let Some(ti) = cfg.topics.iter().position(|t| t == topic) else {
                    continue; // not subscribed (cannot happen with names)
                };
                if let Some(scale) = &consumer.context().scale {
                    let owned = scale.owned.lock().unwrap_or_else(PoisonError::into_inner);
                    if !u16::try_from(msg.partition()).is_ok_and(|p| owned.contains(&p)) {
                        continue; // fetched before its partition went
                    }
                }
                let Some(pos) = position(ti, msg.partition(), msg.offset()) else {
                    return fail(
                        &ctx.out,
                        SourceErrorKind::Input,
                        format!(
                            "source: kafka: record at offset {} of partition {} of topic '{topic}' has no position: \
                             at most {MAX_PARTITIONS} partitions per topic and offsets below 2^{OFFSET_BITS}",
                            msg.offset(),
                            msg.partition()
                        ),
                    );
                };
                consumer
                    .context()
                    .advance(topic, msg.partition(), msg.offset() + 1);
                taken = true;
                let text = event_text(
                    msg.payload(),
                    msg.key(),
                    msg.timestamp().to_millis(),
                    cfg.message_key_field.as_deref(),
                    cfg.record_time_field.as_deref(),
                );
                match text {
                    Ok(t) => batch.push(pos, &t),
                    Err(reason) => {
                        // In source order: the events before it first.
                        if !batch.is_empty() {
                            let b = std::mem::replace(&mut batch, Batch::with_capacity(64 << 10));
                            if !send_batch(ctx, consumer, b, &events) {
                                return Ok(());
                            }
                        }
                        input_errors.inc();
                        let raw =
                            String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned();
                        if !ctx.out.send(SourceMsg::Rejected { pos, raw, reason }) {
                            return Ok(());
                        }
                    }
                }
            }
            // Also after rejected records only: the checkpoint moves past
            // them (an empty batch carries just the resume point).
            if taken && !send_batch(ctx, consumer, batch, &events) {
                return Ok(());
            }
        }
    }
}

/// The records of `batch` of partitions in `owned`.
fn keep_owned(batch: &Batch, owned: &BTreeSet<u16>) -> Batch {
    let mut out = Batch::with_capacity(batch.text.len());
    for r in &batch.records {
        if owned.contains(&kafka_partition(r.pos)) {
            out.push(r.pos, batch.bytes(r));
        }
    }
    out
}

/// Creates the changelog topic if it is missing (as many partitions as the
/// source's topic with the most), and hands the rebalance callback the
/// pipeline's queue.
fn prepare_changelog(
    cfg: &KafkaSourceConfig,
    scale: &Scale,
    ctx: &SourceCtx,
) -> Result<(), String> {
    let config = client_config(&cfg.brokers, &cfg.properties, false);
    let probe: BaseConsumer = config
        .create()
        .map_err(|e| format!("cannot create a client: {e}"))?;
    let mut partitions = 0;
    for t in &cfg.topics {
        let n = crate::changelog::io::partition_count(&probe, t)?.unwrap_or(0);
        partitions = partitions.max(n);
    }
    if partitions == 0 {
        return Err(format!(
            "none of the topics {} exists yet: the changelog takes their partition count",
            cfg.topics.join(", ")
        ));
    }
    let n = ensure_topic(&config, &ctx.runtime, &scale.topic, partitions)?;
    if n < partitions {
        return Err(format!(
            "the changelog '{}' has {n} partitions, the source's topics {partitions}: it needs as many",
            scale.topic
        ));
    }
    *scale.tx.lock().unwrap_or_else(PoisonError::into_inner) = Some(ctx.out.clone());
    Ok(())
}

/// Sends `batch` with the offsets read so far as its resume point.
fn send_batch(
    ctx: &SourceCtx,
    consumer: &BaseConsumer<Context>,
    mut batch: Batch,
    events: &prometheus_client::metrics::counter::Counter,
) -> bool {
    batch.resume = Some(Resume {
        position: 0,
        file: None,
        t0: None,
        kafka: Some(consumer.context().offsets()),
    });
    let n = batch.len() as u64;
    // While the pipeline is full (a slow sink), the consumer is not polled,
    // so librdkafka's statistics stop: the lag comes from the broker's
    // watermarks instead.
    let sent = ctx.out.send_or_report(SourceMsg::Batch(batch), || {
        consumer.context().report_lag(consumer)
    });
    if sent {
        events.inc_by(n);
    }
    sent
}

/// Errors after which the consumer cannot go on.
fn is_fatal(e: &KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::Fatal
                | C::InvalidArgument
                | C::Authentication
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
        )
    )
}

/// The text of the event of a record: its value, with the message key and
/// the record's timestamp written into the fields that `key_field` and
/// `time_field` name (when set). Line ends become spaces (they can only be
/// whitespace between JSON tokens), so that every event is one line.
pub(crate) fn event_text<'a>(
    value: Option<&'a [u8]>,
    key: Option<&[u8]>,
    timestamp: Option<i64>,
    key_field: Option<&str>,
    time_field: Option<&str>,
) -> Result<Cow<'a, [u8]>, String> {
    let Some(value) = value else {
        return Err("the record has no value (a tombstone)".into());
    };
    if key_field.is_none() && time_field.is_none() {
        return Ok(if value.iter().any(|&b| b == b'\n' || b == b'\r') {
            Cow::Owned(
                value
                    .iter()
                    .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
                    .collect(),
            )
        } else {
            Cow::Borrowed(value)
        });
    }
    let key = match key_field {
        None => None,
        Some(f) => match key {
            None => {
                return Err(format!(
                    "the record has no message key to write into field '{f}'"
                ))
            }
            Some(k) => match std::str::from_utf8(k) {
                Ok(k) => Some((f, k)),
                Err(_) => return Err("the record's message key is not UTF-8".into()),
            },
        },
    };
    let time = match time_field {
        None => None,
        Some(f) => match timestamp {
            None => {
                return Err(format!(
                    "the record has no timestamp to write into field '{f}'"
                ))
            }
            Some(t) => Some((f, t)),
        },
    };
    let entries: Entries<'_> = serde_json::from_slice(value)
        .map_err(|e| format!("the record's value is not a JSON object: {e}"))?;
    let mut out = Vec::with_capacity(value.len() + 64);
    out.push(b'{');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    for (k, v) in &entries.0 {
        if Some(k.as_ref()) == key_field || Some(k.as_ref()) == time_field {
            continue; // replaced below
        }
        sep(&mut out);
        json_string(&mut out, k);
        out.push(b':');
        out.extend(
            v.get()
                .bytes()
                .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
    }
    if let Some((f, k)) = key {
        sep(&mut out);
        json_string(&mut out, f);
        out.push(b':');
        json_string(&mut out, k);
    }
    if let Some((f, t)) = time {
        sep(&mut out);
        json_string(&mut out, f);
        out.push(b':');
        out.extend_from_slice(itoa::Buffer::new().format(t).as_bytes());
    }
    out.push(b'}');
    Ok(Cow::Owned(out))
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A JSON object's members in their order, values as they are.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Entries<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Entries<'de>, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                    let val: &'de RawValue = m.next_value()?;
                    v.push((k, val));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// The consumer's callbacks: assignments start where this source is, and
/// librdkafka's logs and statistics go to ours.
struct Context {
    /// The offset of the next record of each partition: from the checkpoint,
    /// then as records are taken.
    next: Mutex<BTreeMap<(String, i32), i64>>,
    metrics: Arc<Metrics>,
    /// State per partition, with a changelog.
    scale: Option<Scale>,
}

/// What the rebalance callback needs for state per partition.
struct Scale {
    /// The changelog topic.
    topic: String,
    reader: ChangelogReader,
    /// Writes the claim of each partition gained.
    claims: Mutex<KafkaChangelogWriter>,
    /// Raised by the pipeline after its final checkpoint.
    release: StopFlag,
    /// The pipeline's queue (set when the source runs).
    tx: Mutex<Option<SourceTx>>,
    /// The partitions assigned now.
    owned: Mutex<BTreeSet<u16>>,
    /// Partitions were revoked during the last poll.
    revoked: AtomicBool,
    /// A rebalance could not restore a partition: the source fails.
    fatal: Mutex<Option<String>>,
}

impl Scale {
    fn send(&self, change: PartitionChange) -> bool {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        tx.is_some_and(|tx| tx.send(SourceMsg::Partitions(change)))
    }

    /// Partitions gained: each one's state from the changelog, sent to the
    /// pipeline, and its start offsets set in `tpl` (and in `next`).
    fn assigned(&self, tpl: &mut TopicPartitionList, next: &Mutex<BTreeMap<(String, i32), i64>>) {
        let parts = partitions_of(tpl);
        let mut states = Vec::with_capacity(parts.len());
        for &p in &parts {
            // The claim first: what is read back ends at a checkpoint of
            // the previous owner at the latest.
            let claimed = self
                .claims
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .claim(p);
            match claimed.and_then(|()| self.reader.read(p, CHANGELOG_READ)) {
                Ok(s) => states.push(s),
                Err(e) => {
                    tracing::error!(error = %e, "kafka source: cannot restore a partition's state");
                    *self.fatal.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                    return;
                }
            }
        }
        let mut next = next.lock().unwrap_or_else(PoisonError::into_inner);
        for s in &states {
            let Some(meta) = &s.meta else { continue };
            for o in &meta.offsets {
                if let Err(e) =
                    tpl.set_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset))
                {
                    // A topic no longer read.
                    tracing::debug!(topic = %o.topic, partition = o.partition, error = %e, "kafka source: changelog offset not used");
                    continue;
                }
                next.insert((o.topic.clone(), o.partition), o.offset);
            }
        }
        drop(next);
        let keys: usize = states.iter().map(|s| s.keys.len()).sum();
        tracing::info!(
            partitions = ?parts,
            keys,
            checkpoints = ?states.iter().map(|s| s.meta.as_ref().map(|m| m.checkpoint)).collect::<Vec<_>>(),
            "kafka source: partitions' state read from the changelog"
        );
        self.owned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(parts.iter().copied());
        self.send(PartitionChange::Assigned(states));
    }

    /// Partitions lost: the pipeline checkpoints and drops them first.
    fn revoked(&self, tpl: &TopicPartitionList, next: &Mutex<BTreeMap<(String, i32), i64>>) {
        let parts = partitions_of(tpl);
        {
            let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
            for p in &parts {
                owned.remove(p);
            }
        }
        next.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(_, p), _| !u16::try_from(*p).is_ok_and(|p| parts.contains(&p)));
        self.revoked.store(true, Ordering::SeqCst);
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.send(PartitionChange::Revoked {
            partitions: parts.clone(),
            done,
        }) {
            // Answered once checkpointed and dropped (or the pipeline is
            // stopping and dropped the question).
            let _ = wait.recv();
            tracing::info!(partitions = ?parts, "kafka source: revoked partitions checkpointed to the changelog");
        }
    }
}

/// The distinct partition numbers of `tpl`.
fn partitions_of(tpl: &TopicPartitionList) -> Vec<u16> {
    let set: BTreeSet<u16> = tpl
        .elements()
        .iter()
        .filter_map(|e| u16::try_from(e.partition()).ok())
        .collect();
    set.into_iter().collect()
}

impl Context {
    fn advance(&self, topic: &str, partition: i32, next: i64) {
        let mut map = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(&(topic.to_string(), partition)) {
            Some(o) => *o = next,
            None => {
                map.insert((topic.to_string(), partition), next);
            }
        }
    }

    /// Sets the consumer lag of each partition read from: its high
    /// watermark (asked of the broker, half a second at most), less the
    /// next offset to take.
    fn report_lag(&self, consumer: &BaseConsumer<Context>) {
        let next: Vec<((String, i32), i64)> = self
            .next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for ((topic, p), next) in next {
            if let Ok((_, hi)) = consumer.fetch_watermarks(&topic, p, Duration::from_millis(500)) {
                if hi >= 0 {
                    self.metrics
                        .kafka_consumer_lag
                        .get_or_create(&Metrics::labels2(
                            ("topic", &topic),
                            ("partition", &p.to_string()),
                        ))
                        .set((hi - next).max(0));
                }
            }
        }
    }

    /// Sets each partition of `tpl` that this run (or its checkpoint) has
    /// read from to start at its next offset.
    fn start_at_checkpoint(&self, tpl: &mut TopicPartitionList) {
        let next = self
            .next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut at = Vec::new();
        for e in tpl.elements() {
            if let Some(&o) = next.get(&(e.topic().to_string(), e.partition())) {
                at.push((e.topic().to_string(), e.partition(), o));
            }
        }
        for (topic, partition, o) in &at {
            if let Err(e) = tpl.set_partition_offset(topic, *partition, Offset::Offset(*o)) {
                tracing::error!(%topic, partition, error = %e, "kafka source: cannot set the start offset");
            }
        }
    }

    fn offsets(&self) -> Vec<KafkaOffset> {
        self.next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|((topic, partition), offset)| KafkaOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
            })
            .collect()
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "rdkafka", facility = fac, "{message}")
            }
            L::Warning => tracing::warn!(target: "rdkafka", facility = fac, "{message}"),
            L::Notice | L::Info => tracing::info!(target: "rdkafka", facility = fac, "{message}"),
            L::Debug => tracing::debug!(target: "rdkafka", facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "rdkafka", %error, "kafka source: {reason}");
    }

    fn stats(&self, s: Statistics) {
        for (topic, t) in &s.topics {
            for (p, part) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition. The
                // lag is counted from the records handed to the pipeline
                // (`app_offset`): librdkafka's `consumer_lag` counts from
                // the committed offset, which lags (only a transactional
                // sink commits it, at checkpoints).
                let lag = if part.app_offset >= 0 && part.hi_offset >= 0 {
                    (part.hi_offset - part.app_offset).max(0)
                } else {
                    part.consumer_lag
                };
                if *p >= 0 && lag >= 0 {
                    self.metrics
                        .kafka_consumer_lag
                        .get_or_create(&Metrics::labels2(
                            ("topic", topic),
                            ("partition", &p.to_string()),
                        ))
                        .set(lag);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                match &self.scale {
                    // The changelog says where each partition resumes.
                    Some(scale) => scale.assigned(tpl, &self.next),
                    None => self.start_at_checkpoint(tpl),
                }
                tracing::info!(
                    partitions = %describe(tpl),
                    "kafka source: partitions assigned"
                );
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = %describe(tpl), "kafka source: partitions revoked");
                if let Some(scale) = &self.scale {
                    scale.revoked(tpl, &self.next);
                }
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "kafka source: rebalance failed");
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "kafka source: applying the assignment failed");
        }
    }
}

/// `topic/partition@offset, ...` for logs.
fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => format!("{}/{}@{o}", e.topic(), e.partition()),
            _ => format!("{}/{}", e.topic(), e.partition()),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(
        value: &str,
        key: Option<&str>,
        ts: Option<i64>,
        kf: Option<&str>,
        tf: Option<&str>,
    ) -> Result<String, String> {
        event_text(Some(value.as_bytes()), key.map(str::as_bytes), ts, kf, tf)
            .map(|c| String::from_utf8(c.into_owned()).unwrap())
    }

    fn config(props: &[(&str, &str)]) -> KafkaSourceConfig {
        KafkaSourceConfig {
            brokers: "127.0.0.1:1".into(),
            topics: vec!["t".into()],
            group_id: None,
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            start: Default::default(),
            message_key_field: None,
            record_time_field: None,
            scale_out: false,
            changelog_topic: None,
        }
    }

    #[test]
    fn bad_client_properties_stop_the_start_naming_them() {
        let m = Arc::new(Metrics::new());
        let e = KafkaSource::new(config(&[("no.such.property", "1")]), "p", None, m.clone())
            .err()
            .expect("refused");
        assert!(e.message().contains("no.such.property"), "{e}");
        let s = KafkaSource::new(config(&[("session.timeout.ms", "7000")]), "p", None, m).unwrap();
        assert_eq!(s.group_id(), "ferrocep-p");
    }

    #[test]
    fn restored_offsets_are_where_partitions_start() {
        let resume = Resume {
            kafka: Some(vec![KafkaOffset {
                topic: "t".into(),
                partition: 2,
                offset: 40,
            }]),
            ..Resume::default()
        };
        let s =
            KafkaSource::new(config(&[]), "p", Some(&resume), Arc::new(Metrics::new())).unwrap();
        let ctx = s.consumer.context();
        assert_eq!(ctx.offsets(), resume.kafka.clone().unwrap());
        ctx.advance("t", 2, 41);
        ctx.advance("t", 0, 7);
        let o = ctx.offsets();
        assert_eq!(
            o.iter()
                .map(|o| (o.partition, o.offset))
                .collect::<Vec<_>>(),
            [(0, 7), (2, 41)]
        );
    }

    #[test]
    fn positions_pack_and_unpack() {
        for (t, p, o) in [
            (0, 0, 0),
            (3, 17, 123_456_789),
            (15, MAX_PARTITIONS - 1, (1 << 48) - 1),
        ] {
            let pos = position(t, p, o).unwrap();
            assert_eq!(split_position(pos), (t, p, o));
        }
        assert_ne!(position(0, 1, 0), position(1, 0, 0));
        assert_ne!(position(0, 1, 0), position(0, 0, 1));
        assert_eq!(position(16, 0, 0), None);
        assert_eq!(position(0, MAX_PARTITIONS, 0), None);
        assert_eq!(position(0, -1, 0), None);
        assert_eq!(position(0, 0, 1 << 48), None);
        assert_eq!(position(0, 0, -1), None);
    }

    #[test]
    fn values_pass_through_as_one_line() {
        assert_eq!(
            text(r#"{"a":1}"#, None, None, None, None).unwrap(),
            r#"{"a":1}"#
        );
        assert_eq!(
            text("{\"a\":\n 1}\r\n", None, None, None, None).unwrap(),
            "{\"a\":  1}  "
        );
        assert!(event_text(None, None, None, None, None)
            .unwrap_err()
            .contains("no value"));
    }

    #[test]
    fn key_and_time_are_written_into_their_fields() {
        assert_eq!(
            text(
                r#"{"b":[1, 2],"a":"x"}"#,
                Some("o-1"),
                Some(1700),
                Some("orderId"),
                Some("ts")
            )
            .unwrap(),
            r#"{"b":[1, 2],"a":"x","orderId":"o-1","ts":1700}"#
        );
        // A field of that name is replaced, the others keep their order.
        assert_eq!(
            text(
                r#"{"ts":"old","orderId":9,"z":{"q":"é\"\n"}}"#,
                Some("k\"1"),
                Some(-5),
                Some("orderId"),
                Some("ts")
            )
            .unwrap(),
            r#"{"z":{"q":"é\"\n"},"orderId":"k\"1","ts":-5}"#
        );
        assert_eq!(
            text("{}", Some("k"), None, Some("k"), None).unwrap(),
            r#"{"k":"k"}"#
        );
        assert_eq!(
            text(" { } ", None, Some(1), None, Some("t")).unwrap(),
            r#"{"t":1}"#
        );
    }

    #[test]
    fn records_that_cannot_be_events_say_why() {
        let e = text(r#"{"a":1}"#, None, None, Some("k"), None).unwrap_err();
        assert!(e.contains("no message key") && e.contains("'k'"), "{e}");
        let e = text(r#"{"a":1}"#, Some("k"), None, Some("k"), Some("t")).unwrap_err();
        assert!(e.contains("no timestamp") && e.contains("'t'"), "{e}");
        let e = text("[1]", Some("k"), None, Some("k"), None).unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
        let e = text("{\"a\":", Some("k"), None, Some("k"), None).unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
        let e = event_text(Some(b"{}"), Some(&[0xff]), None, Some("k"), None).unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
    }
}
