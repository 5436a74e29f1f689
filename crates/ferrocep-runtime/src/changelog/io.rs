//! The changelog topic through librdkafka: creating it, writing a
//! checkpoint's records and waiting for their acknowledgement, and reading
//! one partition back to its end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

use super::{header, ChangelogRecord, ChangelogWrite, PartitionState, Replay, CLAIM_KEY, HEADER};

/// How long a checkpoint waits for the changelog's acknowledgements.
const FLUSH: Duration = Duration::from_secs(60);

/// Consumer-only properties left out of the changelog producer's config.
const CONSUMER_ONLY: &[&str] = &[
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "isolation.level",
    "auto.offset.reset",
    "fetch.min.bytes",
    "fetch.wait.max.ms",
    "group.instance.id",
];

/// A client config for `brokers` with the source's `properties` (those that
/// make sense for `producer` or a consumer).
pub fn client_config(
    brokers: &str,
    properties: &BTreeMap<String, String>,
    producer: bool,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in properties {
        if producer && CONSUMER_ONLY.contains(&k.as_str()) {
            continue;
        }
        c.set(k, v);
    }
    c
}

/// Creates `topic` with `partitions` partitions and `cleanup.policy=compact`
/// unless it exists (with a broker that refuses the policy, without it).
/// Returns its partition count.
pub fn ensure_topic(
    config: &ClientConfig,
    runtime: &tokio::runtime::Handle,
    topic: &str,
    partitions: i32,
) -> Result<i32, String> {
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("changelog '{topic}': cannot create a client: {e}"))?;
    if let Some(n) = partition_count(&consumer, topic)? {
        return Ok(n);
    }
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| format!("changelog '{topic}': cannot create an admin client: {e}"))?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for compact in [true, false] {
        let mut t = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
        if compact {
            t = t.set("cleanup.policy", "compact");
        }
        let r = runtime.block_on(admin.create_topics([&t], &opts));
        match r.map(|mut v| v.pop()) {
            Ok(Some(Ok(_))) => {
                tracing::info!(topic, partitions, compact, "changelog topic created");
                break;
            }
            Ok(Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists)))) => break,
            Ok(Some(Err((_, e)))) if compact => {
                tracing::warn!(topic, error = %e, "cannot create the changelog compacted; trying without cleanup.policy");
            }
            Ok(Some(Err((_, e)))) => {
                return Err(format!("changelog '{topic}': cannot create it: {e}"))
            }
            Ok(None) => return Err(format!("changelog '{topic}': no answer to creating it")),
            Err(e) => return Err(format!("changelog '{topic}': cannot create it: {e}")),
        }
    }
    // The new topic's metadata can take a moment to reach every broker.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(n) = partition_count(&consumer, topic)? {
            return Ok(n);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "changelog '{topic}': created, but not in the metadata"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The partition count of `topic`, `None` when it does not exist.
pub fn partition_count(consumer: &BaseConsumer, topic: &str) -> Result<Option<i32>, String> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(|e| format!("topic '{topic}': cannot read its metadata: {e}"))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .filter(|&n| n > 0))
}

/// The delivery reports of the changelog producer.
#[derive(Default)]
struct Delivery {
    failed: AtomicU64,
    first: Mutex<Option<String>>,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            self.failed.fetch_add(1, Ordering::SeqCst);
            self.first
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| e.to_string());
        }
    }
}

/// Writes checkpoints into the changelog topic (idempotent, `acks=all`).
pub struct KafkaChangelogWriter {
    producer: BaseProducer<Delivery>,
    topic: String,
    token: u64,
}

impl KafkaChangelogWriter {
    /// A writer of `topic` with the client config `config`, its token
    /// random.
    pub fn new(config: &ClientConfig, topic: &str) -> Result<Self, String> {
        Self::with_token(config, topic, rand::random())
    }

    /// A writer of `topic` whose records carry `token` (a second writer of
    /// the same instance: the source's, for claims).
    pub fn with_token(config: &ClientConfig, topic: &str, token: u64) -> Result<Self, String> {
        let mut c = config.clone();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5");
        let producer = c
            .create_with_context(Delivery::default())
            .map_err(|e| format!("changelog '{topic}': cannot create the producer: {e}"))?;
        Ok(KafkaChangelogWriter {
            producer,
            topic: topic.to_string(),
            token,
        })
    }

    /// Claims changelog partition `partition` for this writer (see
    /// [`CLAIM_KEY`]), waiting for the acknowledgement.
    pub fn claim(&mut self, partition: u16) -> Result<(), String> {
        let value = format!(r#"{{"v":1,"writer":"{:016x}"}}"#, self.token);
        self.write(
            0,
            &[ChangelogRecord {
                partition,
                key: CLAIM_KEY.to_vec(),
                value: Some(value.into_bytes().into()),
            }],
        )
    }
}

impl ChangelogWrite for KafkaChangelogWriter {
    fn token(&self) -> u64 {
        self.token
    }

    fn write(&mut self, id: u64, records: &[ChangelogRecord<'_>]) -> Result<(), String> {
        let ctx = self.producer.context();
        ctx.failed.store(0, Ordering::SeqCst);
        let h = header(self.token, id);
        for r in records {
            let headers = OwnedHeaders::new().insert(Header {
                key: HEADER,
                value: Some(&h[..]),
            });
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic)
                .partition(i32::from(r.partition))
                .key(&r.key[..])
                .headers(headers);
            if let Some(v) = &r.value {
                rec = rec.payload(&v[..]);
            }
            loop {
                match self.producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        rec = back;
                        self.producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => {
                        return Err(format!(
                            "changelog '{}' partition {}: {e}",
                            self.topic, r.partition
                        ))
                    }
                }
            }
        }
        self.producer
            .flush(FLUSH)
            .map_err(|e| format!("changelog '{}': not acknowledged: {e}", self.topic))?;
        let failed = ctx.failed.load(Ordering::SeqCst);
        if failed > 0 {
            let first = ctx
                .first
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .unwrap_or_default();
            return Err(format!(
                "changelog '{}': {failed} records not written: {first}",
                self.topic
            ));
        }
        Ok(())
    }
}

/// Reads changelog partitions to their end, with a consumer of no group.
pub struct ChangelogReader {
    consumer: BaseConsumer,
    topic: String,
}

impl ChangelogReader {
    /// A reader of `topic` with the client config `config` (its group and
    /// offset settings are replaced: it commits nothing).
    pub fn new(config: &ClientConfig, topic: &str) -> Result<Self, String> {
        let mut c = config.clone();
        c.set("group.id", format!("{topic}.reader"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest");
        let consumer = c
            .create()
            .map_err(|e| format!("changelog '{topic}': cannot create the reader: {e}"))?;
        Ok(ChangelogReader {
            consumer,
            topic: topic.to_string(),
        })
    }

    /// The state of source partition `partition`: its changelog partition
    /// read from its start to its end (the high watermark when it begins),
    /// within `timeout`.
    pub fn read(&self, partition: u16, timeout: Duration) -> Result<PartitionState, String> {
        let topic = &self.topic;
        let p = i32::from(partition);
        let err = |what: String| format!("changelog '{topic}' partition {p}: {what}");
        let (low, high) = self
            .consumer
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .map_err(|e| err(format!("cannot read its end: {e}")))?;
        let mut replay = Replay::new(partition);
        if high <= low {
            return Ok(replay.finish());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| err(e.to_string()))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| err(format!("cannot assign it: {e}")))?;
        let deadline = Instant::now() + timeout;
        let mut next = low;
        let result = loop {
            if next >= high {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err(err(format!(
                    "read to offset {next} of {high} within {} s only",
                    timeout.as_secs()
                )));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(e)) => {
                    tracing::warn!(topic, partition = p, error = %e, "changelog read: retrying");
                }
                Some(Ok(m)) => {
                    if m.partition() != p || m.topic() != topic {
                        continue;
                    }
                    let h = m
                        .headers()
                        .and_then(|hs| hs.iter().find(|h| h.key == HEADER).and_then(|h| h.value));
                    replay.record(m.key(), m.payload(), h);
                    next = m.offset() + 1;
                }
            }
        };
        let _ = self.consumer.unassign();
        result?;
        if replay.foreign > 0 {
            tracing::warn!(
                topic,
                partition = p,
                checkpoints = replay.foreign,
                "changelog checkpoints of an instance that no longer owned the partition are not taken"
            );
        }
        if replay.skipped > 0 {
            tracing::warn!(
                topic,
                partition = p,
                skipped = replay.skipped,
                "changelog records of another format skipped"
            );
        }
        Ok(replay.finish())
    }
}
