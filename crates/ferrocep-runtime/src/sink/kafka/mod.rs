//! The `kafka` sink (the `kafka` feature): each output becomes a record of
//! the configured topic, its value the output's JSON line, its key the
//! pattern key (the line's `key`, a string as its text, anything else as its
//! JSON; no key when the pattern has none), and headers `id` (the output id,
//! for de-duplication), `kind` and `pattern`.
//!
//! Delivery is at least once: the producer is idempotent (librdkafka retries
//! without duplicates or reordering while it can), and an output counts as
//! delivered only once the broker has acknowledged it with every in-sync
//! replica (`acks=all`). A record that still fails (the broker down longer
//! than `message.timeout.ms`, say) is sent again after a backoff, holding
//! the queue back meanwhile, so nothing is dropped; a resend may duplicate a
//! record, which its `id` header tells apart.
//!
//! Transactional (`transactional: true` or a `transactional_id`): exactly
//! once for `read_committed` consumers. Outputs go in a Kafka transaction
//! that stays open until a checkpoint asks for it ([`TxnShared`]); the
//! checkpoint waits until it is committed, so Kafka's commit comes first and
//! the checkpoint that covers it second. Each transaction also commits, as
//! the offset of partition 0 of the topic in the consumer group
//! `ferrocep-txn.ID`, the count of outputs committed so far over every run.
//! A crash between the two commits leaves Kafka ahead of the checkpoint: the
//! restart, after `init_transactions` has fenced the dead producer and
//! aborted its open transaction, reads that count, and drops as many outputs
//! of the replay as Kafka already holds (the replay from the checkpoint
//! gives the same outputs in the same order, as it does for file sinks). A
//! crash before Kafka's commit leaves an aborted transaction and nothing to
//! drop. A second instance with the same transactional id fences the first:
//! the first's next produce or commit fails with `ProducerFenced` and its
//! sink stops, naming the id, which stops that instance.
//!
//! With a kafka source that scales out, a transactional sink keeps one
//! transaction per source partition instead ([`partitioned`]).
//!
//! [`TxnShared`]: super::TxnShared

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use serde_json::value::RawValue;

use super::common::{self, Backoff, SinkMetrics};
use super::{Output, Queued, SinkCtx, SinkRx, TxnShared};
use crate::config::KafkaSinkConfig;

mod partitioned;
pub(crate) use partitioned::Partitioned;

/// Most outputs taken off the queue at once.
const MAX_BATCH: usize = 4096;

/// Most outputs sent and not yet acknowledged (below librdkafka's default
/// queue of 100,000 messages).
const WINDOW: usize = 32 * 1024;

/// How long one blocking transactional call (init, commit, abort) waits.
const TXN_CALL: Duration = Duration::from_secs(30);

/// Outputs of one transaction kept to send again after an abort: a
/// transaction this big is committed without waiting for a checkpoint.
const MAX_TXN_OUTPUTS: usize = 100_000;

/// A transaction this old is committed without waiting for a checkpoint
/// (checkpoints being skipped, say), well within librdkafka's default
/// `transaction.timeout.ms` of 60 s.
const MAX_TXN_AGE: Duration = Duration::from_secs(20);

/// Client properties the sink sets unless the config sets them.
const DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
];

/// A producer for one sink.
pub(crate) struct KafkaSink {
    producer: FutureProducer<LogContext>,
    topic: String,
    txn: Option<Txn>,
}

/// What a transactional sink has beyond its producer.
struct Txn {
    /// The producer's `transactional.id`.
    id: String,
    /// The group whose offset of partition 0 of the topic is the count of
    /// committed outputs.
    group: String,
    /// A consumer of that group (never subscribed): its metadata for
    /// `send_offsets_to_transaction`, and reading the count at start.
    marker: Arc<BaseConsumer>,
    /// The topic partition whose offset in `group` is the count: partition
    /// 0 of the sink's topic, or, per source partition, that partition of
    /// the source's topic.
    count_at: (String, i32),
    /// A consumer of the kafka source's group (never subscribed): the
    /// source's offsets of a checkpoint are committed to it in the
    /// transaction.
    source: Option<Arc<BaseConsumer>>,
    /// Whose source offsets the transactions commit: one source
    /// partition's, or every partition's (`None`).
    source_partition: Option<i32>,
}

/// A consumer of `group` (never subscribed) with the sink's client
/// properties: its metadata for `send_offsets_to_transaction`.
fn group_consumer(cfg: &KafkaSinkConfig, group: &str) -> Result<BaseConsumer, String> {
    let mut c = ClientConfig::new();
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        // Offsets of transactions still open are not read.
        .set("isolation.level", "read_committed")
        .set_log_level(RDKafkaLogLevel::Warning);
    c.create()
        .map_err(|e| format!("cannot create the Kafka consumer of group '{group}': {e}"))
}

impl KafkaSink {
    /// A producer to `cfg.topic`, transactional with `txn_id`, committing
    /// the source's offsets to `source_group` in its transactions. Fails
    /// when librdkafka refuses the client properties.
    pub(crate) fn new(
        cfg: &KafkaSinkConfig,
        ctx: &SinkCtx,
        txn_id: Option<&str>,
        source_group: Option<&str>,
    ) -> Result<KafkaSink, String> {
        let txn = match txn_id {
            None => None,
            Some(id) => {
                let group = format!("ferrocep-txn.{id}");
                let marker = group_consumer(cfg, &group)?;
                let source = match source_group {
                    Some(g) => Some(Arc::new(group_consumer(cfg, g)?)),
                    None => None,
                };
                Some(Txn {
                    id: id.to_string(),
                    group,
                    marker: Arc::new(marker),
                    count_at: (cfg.topic.clone(), 0),
                    source,
                    source_partition: None,
                })
            }
        };
        Self::with_txn(cfg, ctx, txn)
    }

    /// A producer to `cfg.topic` with the transaction side `txn`.
    fn with_txn(
        cfg: &KafkaSinkConfig,
        ctx: &SinkCtx,
        txn: Option<Txn>,
    ) -> Result<KafkaSink, String> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &cfg.brokers);
        if let Some(t) = &txn {
            c.set("transactional.id", &t.id);
        }
        for (k, v) in DEFAULTS {
            if !cfg.properties.contains_key(*k) {
                c.set(*k, *v);
            }
        }
        for (k, v) in &cfg.properties {
            c.set(k, v);
        }
        c.set_log_level(RDKafkaLogLevel::Info);
        let producer = c
            .create_with_context(LogContext {
                sink: ctx.name.clone(),
            })
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        Ok(KafkaSink {
            producer,
            topic: cfg.topic.clone(),
            txn,
        })
    }

    /// The sink's task: sends every output of `rx` until the queue is closed
    /// and every output is acknowledged.
    ///
    /// Batches are pipelined: while the broker acknowledges one, the next
    /// ones are sent (up to [`WINDOW`] outputs unacknowledged), so the rate
    /// is not one batch per round trip. Acknowledgements are counted in
    /// queue order; a batch with a failed record is sent again (those
    /// records only) after a backoff before any later batch counts.
    pub(crate) async fn run(
        self,
        mut rx: SinkRx,
        ctx: SinkCtx,
        delivered: Arc<AtomicU64>,
    ) -> Result<(), String> {
        let m = SinkMetrics::new(&ctx);
        let backoff = Backoff::local_io();
        let mut flight: VecDeque<Flight> = VecDeque::new();
        let mut unacked = 0usize;
        let mut open = true;
        while open || !flight.is_empty() {
            let mut batch = Vec::new();
            let room = open && unacked < WINDOW;
            tokio::select! {
                biased;
                more = common::recv_batch(&mut rx, &mut batch, MAX_BATCH), if room => {
                    if !more {
                        open = false;
                        continue;
                    }
                    let which: Vec<usize> = (0..batch.len()).collect();
                    let sent = self.send_batch(&batch, &which).await;
                    unacked += batch.len();
                    flight.push_back(Flight { batch, sent });
                }
                () = settle(flight.front_mut().map(|f| &mut f.sent)), if !flight.is_empty() => {
                    let Some(mut f) = flight.pop_front() else { continue };
                    let mut retry = 0u32;
                    while !f.sent.failed.is_empty() {
                        retry += 1;
                        m.retries.inc_by(f.sent.failed.len() as u64);
                        let delay = backoff.delay_ms(retry);
                        tracing::error!(
                            sink = %ctx.name,
                            topic = %self.topic,
                            "{} outputs not delivered ({}); retry {retry} in {delay} ms",
                            f.sent.failed.len(),
                            f.sent.reason.take().unwrap_or_default()
                        );
                        let until = ctx.clock.now_ms().saturating_add(delay as i64);
                        common::sleep_until(&ctx.clock, until, || m.set_queue(&rx, unacked)).await;
                        let todo = std::mem::take(&mut f.sent.failed);
                        f.sent = self.send_batch(&f.batch, &todo).await;
                        settle(Some(&mut f.sent)).await;
                    }
                    unacked -= f.batch.len();
                    m.delivered.inc_by(f.batch.len() as u64);
                    common::finish(&delivered, f.batch.len());
                }
            }
            m.set_queue(&rx, unacked);
        }
        Ok(())
    }

    /// Hands the outputs of `batch` at `which` to the producer without
    /// waiting for their acknowledgements (see [`Sent`]).
    async fn send_batch(&self, batch: &[Queued], which: &[usize]) -> Sent {
        let mut s = Sent::default();
        s.sent.reserve(which.len());
        for &i in which {
            let o = &batch[i];
            let head = Head::of(o.line());
            let key = head.key();
            loop {
                match self
                    .producer
                    .send_result(record(o, &head, key.as_deref(), &self.topic))
                {
                    Ok(f) => {
                        s.sent.push((i, f));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // librdkafka's own queue is full: its thread drains
                        // it.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((e, _)) => {
                        s.fail(i, e.to_string(), fenced(&e));
                        break;
                    }
                }
            }
        }
        s
    }

    /// Sends the outputs of `batch` at `which` and waits for their
    /// acknowledgements: those that failed, why the first one did, and
    /// whether one failed because another producer fenced this one.
    async fn send_all(
        &self,
        batch: &[Queued],
        which: &[usize],
    ) -> (Vec<usize>, Option<String>, bool) {
        let mut s = self.send_batch(batch, which).await;
        settle(Some(&mut s)).await;
        (s.failed, s.reason, s.fenced)
    }

    /// The transactional sink's task: sends every output of `rx` in
    /// transactions committed when `shared` asks (see the module docs),
    /// until the queue is closed and the last transaction is committed.
    /// `restored`: `shared.base` comes from a checkpoint, so outputs that
    /// Kafka holds beyond it are the replay's to drop.
    pub(crate) async fn run_transactional(
        self,
        rx: SinkRx,
        ctx: SinkCtx,
        delivered: Arc<AtomicU64>,
        shared: Arc<TxnShared>,
        restored: bool,
    ) -> Result<(), String> {
        let r = self.transact(rx, &ctx, &delivered, &shared, restored).await;
        logged(r, &ctx, &self.topic)
    }

    async fn transact(
        &self,
        mut rx: SinkRx,
        ctx: &SinkCtx,
        delivered: &AtomicU64,
        shared: &TxnShared,
        restored: bool,
    ) -> Result<(), String> {
        let Some(t) = &self.txn else {
            return Err("the sink is not transactional".into());
        };
        let m = SinkMetrics::new(ctx);
        let backoff = Backoff::local_io();
        // Fences any earlier producer with this id and aborts its open
        // transaction, so the count read next is final.
        self.retry(ctx, &backoff, "initialising transactions", |p| {
            p.init_transactions(TXN_CALL)
        })
        .await?;
        let marker = self.read_count(ctx, &backoff).await?;
        let mut skip = if !restored {
            if marker > 0 {
                tracing::warn!(
                    sink = %ctx.name, group = %t.group, committed = marker,
                    "a fresh start, but transactional id '{}' committed {marker} outputs before: they are not taken as this run's",
                    t.id
                );
            }
            0
        } else if marker < shared.base {
            tracing::warn!(
                sink = %ctx.name, group = %t.group, committed = marker, checkpoint = shared.base,
                "Kafka holds fewer committed outputs than the checkpoint says (group reset?): nothing is dropped"
            );
            0
        } else {
            marker - shared.base
        };
        tracing::info!(
            sink = %ctx.name, transactional_id = %t.id, checkpoint = shared.base, committed = marker,
            "kafka sink: transactions ready; {skip} outputs of the replay are already committed and are dropped"
        );
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut open: Vec<Queued> = Vec::new();
        let mut opened_at: Option<Instant> = None;
        // Counted since this run started.
        let mut received = 0u64;
        let mut committed = 0u64;
        loop {
            let age_left = opened_at.map(|t| MAX_TXN_AGE.saturating_sub(t.elapsed()));
            let got = tokio::select! {
                more = common::recv_batch(&mut rx, &mut batch, MAX_BATCH) => Some(more),
                () = shared.requested_again() => None,
                () = sleep_for(age_left) => None,
            };
            match got {
                Some(false) => {
                    if !open.is_empty() {
                        let total = shared.base + committed + open.len() as u64;
                        let offsets = shared.source_offsets(None);
                        self.commit(ctx, &m, &backoff, &open, total, &offsets)
                            .await?;
                        m.delivered.inc_by(open.len() as u64);
                        common::finish(delivered, open.len());
                    }
                    m.set_queue(&rx, 0);
                    return Ok(());
                }
                Some(true) => {
                    received += batch.len() as u64;
                    let n = usize::try_from(skip).unwrap_or(usize::MAX).min(batch.len());
                    if n > 0 {
                        skip -= n as u64;
                        committed += n as u64;
                        m.delivered.inc_by(n as u64);
                        common::finish(delivered, n);
                    }
                    if n < batch.len() {
                        if opened_at.is_none() {
                            self.begin()?;
                            opened_at = Some(Instant::now());
                        }
                        let from = open.len();
                        open.extend(batch.drain(n..));
                        m.set_queue(&rx, open.len());
                        self.produce(ctx, &m, &backoff, &open, from).await?;
                    }
                }
                None => {}
            }
            let wanted = shared.requested();
            let asked = wanted > committed && received >= wanted;
            let full = open.len() >= MAX_TXN_OUTPUTS
                || opened_at.is_some_and(|t| t.elapsed() >= MAX_TXN_AGE);
            if !open.is_empty() && (asked || full) {
                let total = shared.base + committed + open.len() as u64;
                let offsets = shared.source_offsets(None);
                self.commit(ctx, &m, &backoff, &open, total, &offsets)
                    .await?;
                committed += open.len() as u64;
                m.delivered.inc_by(open.len() as u64);
                common::finish(delivered, open.len());
                open.clear();
                opened_at = None;
                m.set_queue(&rx, 0);
            }
        }
    }

    fn begin(&self) -> Result<(), String> {
        self.producer
            .begin_transaction()
            .map_err(|e| self.txn_error("beginning a transaction", &e))
    }

    /// Sends `open[from..]` in the open transaction and waits for every
    /// acknowledgement. A failure aborts the transaction and sends all of
    /// `open` again in a new one, after a backoff.
    async fn produce(
        &self,
        ctx: &SinkCtx,
        m: &SinkMetrics,
        backoff: &Backoff,
        open: &[Queued],
        from: usize,
    ) -> Result<(), String> {
        let mut which: Vec<usize> = (from..open.len()).collect();
        let mut retry = 0u32;
        loop {
            let (failed, reason, was_fenced) = self.send_all(open, &which).await;
            if failed.is_empty() {
                return Ok(());
            }
            let reason = reason.unwrap_or_default();
            if was_fenced {
                return Err(self.fenced_message(&reason));
            }
            retry += 1;
            m.retries.inc_by(open.len() as u64);
            let delay = backoff.delay_ms(retry);
            tracing::error!(
                sink = %ctx.name, topic = %self.topic,
                "{} outputs not delivered ({reason}); the transaction is aborted and its {} outputs sent again in {delay} ms",
                failed.len(), open.len()
            );
            self.abort(ctx).await?;
            let until = ctx.clock.now_ms().saturating_add(delay as i64);
            common::sleep_until(&ctx.clock, until, || {}).await;
            self.begin()?;
            which = (0..open.len()).collect();
        }
    }

    /// Commits the open transaction, which holds `open`, with `total` (the
    /// count over every run) as the group's offset and the source's
    /// `source_offsets` (those of this sink's source partition) in the
    /// source's group. An abortable failure sends `open` again in a new
    /// transaction and commits that.
    async fn commit(
        &self,
        ctx: &SinkCtx,
        m: &SinkMetrics,
        backoff: &Backoff,
        open: &[Queued],
        total: u64,
        source_offsets: &[crate::source::KafkaOffset],
    ) -> Result<(), String> {
        let Some(t) = &self.txn else {
            return Err("the sink is not transactional".into());
        };
        let Some(cgm) = t.marker.group_metadata() else {
            return Err(format!("no group metadata for group '{}'", t.group));
        };
        let cgm = Arc::new(cgm);
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&t.count_at.0, t.count_at.1, Offset::Offset(total as i64))
            .map_err(|e| format!("the count {total} as an offset: {e}"))?;
        let offsets = Arc::new(offsets);
        let source = self.source_commit(t, source_offsets)?;
        let mut retry = 0u32;
        loop {
            let (o, g, src) = (offsets.clone(), cgm.clone(), source.clone());
            let r = self
                .blocking(move |p| {
                    p.send_offsets_to_transaction(&o, &g, TXN_CALL)?;
                    if let Some((so, sg)) = &src {
                        p.send_offsets_to_transaction(so, sg, TXN_CALL)?;
                    }
                    p.commit_transaction(TXN_CALL)
                })
                .await;
            let e = match r {
                Ok(()) => {
                    tracing::debug!(sink = %ctx.name, outputs = open.len(), total, "kafka transaction committed");
                    return Ok(());
                }
                Err(e) => e,
            };
            if fenced(&e) {
                return Err(self.fenced_message(&e.to_string()));
            }
            retry += 1;
            let delay = backoff.delay_ms(retry);
            let abortable = matches!(&e, KafkaError::Transaction(t) if t.txn_requires_abort());
            let retriable = matches!(&e, KafkaError::Transaction(t) if t.is_retriable());
            if let KafkaError::Transaction(t) = &e {
                if t.is_fatal() {
                    return Err(format!("committing a transaction: {e} (fatal)"));
                }
            }
            tracing::error!(sink = %ctx.name, topic = %self.topic, "committing a transaction of {} outputs failed ({e}); retry {retry} in {delay} ms", open.len());
            let until = ctx.clock.now_ms().saturating_add(delay as i64);
            common::sleep_until(&ctx.clock, until, || {}).await;
            if retriable && !abortable {
                continue;
            }
            self.abort(ctx).await?;
            self.begin()?;
            m.retries.inc_by(open.len() as u64);
            self.produce(ctx, m, backoff, open, 0).await?;
        }
    }

    /// The source offsets of `offsets` that transaction side `t` commits
    /// (its source partition's), with the source group's metadata; `None`
    /// when there are none or no source group.
    #[allow(clippy::type_complexity)]
    fn source_commit(
        &self,
        t: &Txn,
        offsets: &[crate::source::KafkaOffset],
    ) -> Result<Option<(Arc<TopicPartitionList>, Arc<ConsumerGroupMetadata>)>, String> {
        let Some(consumer) = &t.source else {
            return Ok(None);
        };
        let mut tpl = TopicPartitionList::new();
        for o in offsets
            .iter()
            .filter(|o| t.source_partition.is_none_or(|p| o.partition == p))
        {
            tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset))
                .map_err(|e| format!("source offset {}/{}: {e}", o.topic, o.partition))?;
        }
        if tpl.count() == 0 {
            return Ok(None);
        }
        let Some(cgm) = consumer.group_metadata() else {
            return Err("no group metadata for the source's group".into());
        };
        Ok(Some((Arc::new(tpl), Arc::new(cgm))))
    }

    async fn abort(&self, ctx: &SinkCtx) -> Result<(), String> {
        let backoff = Backoff::local_io();
        self.retry(ctx, &backoff, "aborting a transaction", |p| {
            p.abort_transaction(TXN_CALL)
        })
        .await
    }

    /// The count of committed outputs that Kafka holds (0 before any).
    async fn read_count(&self, ctx: &SinkCtx, backoff: &Backoff) -> Result<u64, String> {
        let Some(t) = &self.txn else {
            return Ok(0);
        };
        let mut retry = 0u32;
        loop {
            let (marker, (topic, p)) = (t.marker.clone(), t.count_at.clone());
            let r = tokio::task::spawn_blocking(move || {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&topic, p);
                let got = marker.committed_offsets(tpl, TXN_CALL)?;
                Ok::<_, KafkaError>(match got.find_partition(&topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) if o > 0 => o as u64,
                    _ => 0,
                })
            })
            .await
            .map_err(|e| format!("reading the committed count: {e}"))?;
            match r {
                Ok(n) => return Ok(n),
                Err(e) => {
                    retry += 1;
                    let delay = backoff.delay_ms(retry);
                    tracing::error!(sink = %ctx.name, group = %t.group, "cannot read the count of committed outputs ({e}); retry {retry} in {delay} ms");
                    let until = ctx.clock.now_ms().saturating_add(delay as i64);
                    common::sleep_until(&ctx.clock, until, || {}).await;
                }
            }
        }
    }

    /// Runs a blocking call on the producer until it succeeds; fencing and
    /// fatal errors end it.
    async fn retry(
        &self,
        ctx: &SinkCtx,
        backoff: &Backoff,
        what: &str,
        f: impl Fn(&FutureProducer<LogContext>) -> Result<(), KafkaError> + Send + Clone + 'static,
    ) -> Result<(), String> {
        let mut retry = 0u32;
        loop {
            let g = f.clone();
            match self.blocking(move |p| g(p)).await {
                Ok(()) => return Ok(()),
                Err(e) if fenced(&e) => return Err(self.fenced_message(&e.to_string())),
                Err(KafkaError::Transaction(t)) if t.is_fatal() => {
                    return Err(format!("{what}: {t} (fatal)"))
                }
                Err(e) => {
                    retry += 1;
                    let delay = backoff.delay_ms(retry);
                    tracing::error!(sink = %ctx.name, "{what} failed ({e}); retry {retry} in {delay} ms");
                    let until = ctx.clock.now_ms().saturating_add(delay as i64);
                    common::sleep_until(&ctx.clock, until, || {}).await;
                }
            }
        }
    }

    /// Runs `f` on the producer off the async workers (librdkafka's
    /// transactional calls block).
    async fn blocking(
        &self,
        f: impl FnOnce(&FutureProducer<LogContext>) -> Result<(), KafkaError> + Send + 'static,
    ) -> Result<(), KafkaError> {
        let p = self.producer.clone();
        tokio::task::spawn_blocking(move || f(&p))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
    }

    /// The source partition whose offsets its transactions commit (`None`:
    /// every partition's).
    fn source_partition(&self) -> Option<i32> {
        self.txn.as_ref().and_then(|t| t.source_partition)
    }

    fn txn_error(&self, what: &str, e: &KafkaError) -> String {
        if fenced(e) {
            self.fenced_message(&e.to_string())
        } else {
            format!("{what}: {e}")
        }
    }

    fn fenced_message(&self, reason: &str) -> String {
        let id = self.txn.as_ref().map_or("", |t| t.id.as_str());
        format!(
            "fenced: another producer with transactional id '{id}' has started (a second instance of this pipeline, \
             or this one restarted elsewhere); this instance stops so that only one writes ({reason})"
        )
    }
}

/// `r`, its error logged as the sink's stop.
fn logged(r: Result<(), String>, ctx: &SinkCtx, topic: &str) -> Result<(), String> {
    if let Err(e) = &r {
        tracing::error!(sink = %ctx.name, topic, "kafka sink stopped: {e}");
    }
    r
}

/// Waits `d`, or forever when `None`.
async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Whether `e` says another producer with the same transactional id has
/// taken over.
fn fenced(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::Fenced
        )
    )
}

/// Whether a record was acknowledged, or why not (and whether because
/// this producer is fenced).
/// A batch sent and not yet all acknowledged (see [`KafkaSink::run`]).
struct Flight {
    batch: Vec<Queued>,
    sent: Sent,
}

/// Outputs handed to the producer ([`KafkaSink::send_batch`]) and what is
/// known of them so far.
#[derive(Default)]
struct Sent {
    /// The records handed to the producer, by index in their batch.
    sent: Vec<(usize, DeliveryFuture)>,
    /// How many of `sent` are settled.
    next: usize,
    /// Indexes in the batch not delivered (sorted once settled).
    failed: Vec<usize>,
    /// Why the first of them was not.
    reason: Option<String>,
    /// One failed because another producer fenced this one.
    fenced: bool,
}

impl Sent {
    fn fail(&mut self, i: usize, why: String, fenced: bool) {
        self.failed.push(i);
        self.fenced |= fenced;
        self.reason.get_or_insert(why);
    }
}

/// Waits for every acknowledgement of `s`, noting failures; cancel-safe
/// (what is settled stays settled).
async fn settle(s: Option<&mut Sent>) {
    let Some(s) = s else { return };
    while let Some((i, fut)) = s.sent.get_mut(s.next) {
        let i = *i;
        if let Err((why, fenced)) = outcome(fut.await) {
            s.fail(i, why, fenced);
        }
        s.next += 1;
    }
    s.failed.sort_unstable();
}

/// The record of output `o`: its line, key and headers.
fn record<'a>(
    o: &'a Output,
    head: &'a Head<'a>,
    key: Option<&'a [u8]>,
    topic: &'a str,
) -> FutureRecord<'a, [u8], [u8]> {
    let headers = OwnedHeaders::new_with_capacity(3)
        .insert(Header {
            key: "id",
            value: Some(o.id()),
        })
        .insert(Header {
            key: "kind",
            value: Some(o.kind.as_str()),
        })
        .insert(Header {
            key: "pattern",
            value: head.pattern.as_deref(),
        });
    let mut record = FutureRecord::to(topic).payload(o.line()).headers(headers);
    if let Some(k) = key {
        record = record.key(k);
    }
    record
}

fn outcome(r: <DeliveryFuture as std::future::Future>::Output) -> Result<(), (String, bool)> {
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err((e.to_string(), fenced(&e))),
        Err(_) => Err(("the producer dropped the record".into(), false)),
    }
}

/// The fields of an output line the record needs.
#[derive(serde::Deserialize, Default)]
struct Head<'a> {
    #[serde(borrow, default)]
    key: Option<&'a RawValue>,
    #[serde(default)]
    pattern: Option<String>,
}

impl<'a> Head<'a> {
    fn of(line: &'a [u8]) -> Head<'a> {
        // The engine wrote the line: it is a JSON object.
        serde_json::from_slice(line).unwrap_or_default()
    }

    /// The pattern key as the record's key: a string as its text, anything
    /// else as its JSON; none for `null` or no key.
    fn key(&self) -> Option<Vec<u8>> {
        let raw = self.key?.get();
        if raw == "null" {
            return None;
        }
        match serde_json::from_str::<String>(raw) {
            Ok(s) => Some(s.into_bytes()),
            Err(_) => Some(raw.as_bytes().to_vec()),
        }
    }
}

/// librdkafka's logs to ours, naming the sink.
struct LogContext {
    sink: String,
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel as L;
        let sink = &self.sink;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "rdkafka", sink, facility = fac, "{message}")
            }
            L::Warning => tracing::warn!(target: "rdkafka", sink, facility = fac, "{message}"),
            L::Notice | L::Info => {
                tracing::info!(target: "rdkafka", sink, facility = fac, "{message}")
            }
            L::Debug => tracing::debug!(target: "rdkafka", sink, facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "rdkafka", sink = %self.sink, %error, "kafka sink: {reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_key_is_the_pattern_key() {
        let k = |line: &str| Head::of(line.as_bytes()).key();
        assert_eq!(
            k(r#"{"kind":"match","key":"o-1","events":{}}"#),
            Some(b"o-1".to_vec())
        );
        assert_eq!(k(r#"{"key":"a\"b"}"#), Some(b"a\"b".to_vec()));
        assert_eq!(k(r#"{"key":42}"#), Some(b"42".to_vec()));
        assert_eq!(k(r#"{"key":null}"#), None);
        assert_eq!(k(r#"{"kind":"late","event":{"key":"x"}}"#), None);
        assert_eq!(
            Head::of(br#"{"pattern":"p1","key":"k"}"#)
                .pattern
                .as_deref(),
            Some("p1")
        );
    }
}
