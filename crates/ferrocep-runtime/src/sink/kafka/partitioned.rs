//! The transactional kafka sink of a source that scales out (Kafka
//! Streams' exactly-once per task): one transactional producer per source
//! partition, `transactional.id` `ID-pN`, so the instance that gains a
//! partition fences, by its `init_transactions`, whichever producer wrote
//! it before (a crashed instance's, or a zombie's that lost it without
//! knowing) and aborts that producer's open transaction.
//!
//! Each partition's transaction commits, as the offset of that partition of
//! the source's topic in group `ferrocep-txn.ID`, the count of the
//! partition's outputs committed over every run. The changelog's meta
//! record holds the partition's outputs at its checkpoint. The instance
//! that gains a partition restores its last changelog checkpoint (count C),
//! reads Kafka's count (K ≥ C: Kafka commits before the changelog), and
//! drops the first K − C outputs of the partition's replay: they are the
//! ones Kafka holds. A checkpoint commits every partition's transaction, so
//! the sink's delivered count stays a prefix of its queue.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::Producer;

use super::{sleep_for, KafkaSink, Txn, MAX_BATCH, MAX_TXN_AGE, MAX_TXN_OUTPUTS, TXN_CALL};
use crate::config::KafkaSinkConfig;
use crate::sink::common::{self, Backoff, SinkMetrics};
use crate::sink::{Queued, SinkCtx, SinkRx, TxnShared};

/// Outputs made by no source partition's engine (none are expected) go in
/// a transaction of their own, counted at partition 0 of the sink's topic.
const NO_PARTITION: u16 = u16::MAX;

/// The sink: what each partition's producer is made from.
pub(crate) struct Partitioned {
    cfg: KafkaSinkConfig,
    id: String,
    group: String,
    marker: Arc<BaseConsumer>,
    /// A consumer of the source's group, for its offsets.
    source: Option<Arc<BaseConsumer>>,
    /// The source's topic whose partition offsets hold the counts.
    count_topic: String,
}

/// One source partition's producer and open transaction.
struct Part {
    sink: KafkaSink,
    /// The gain of the partition it was started for
    /// ([`TxnShared::gain_of`]).
    gain: u64,
    /// The outputs of the open transaction.
    open: Vec<Queued>,
    /// How many of `open` were sent.
    sent: usize,
    /// The partition's outputs committed in Kafka, over every run.
    committed: u64,
    /// Its changelog checkpoint's outputs by kind, when it has one.
    restored: Option<[u64; 4]>,
    /// Outputs of the replay Kafka already holds, still to drop (known
    /// once the first output shows the sink's kind).
    skip: Option<u64>,
}

impl Partitioned {
    /// The sink of `cfg` with transactional id prefix `id`, its counts kept
    /// at the partitions of `count_topic`. Fails when librdkafka refuses
    /// the client properties.
    pub(crate) fn new(
        cfg: &KafkaSinkConfig,
        ctx: &SinkCtx,
        id: &str,
        count_topic: &str,
        source_group: Option<&str>,
    ) -> Result<Partitioned, String> {
        // Checks the properties, and makes the consumer of the count group.
        let probe = KafkaSink::new(cfg, ctx, Some(id), source_group)?;
        let Some(t) = probe.txn else {
            return Err("the sink is not transactional".into());
        };
        Ok(Partitioned {
            cfg: cfg.clone(),
            id: id.to_string(),
            group: t.group,
            marker: t.marker,
            source: t.source,
            count_topic: count_topic.to_string(),
        })
    }

    /// The sink's task: every output of `rx` goes in its partition's
    /// transaction; all are committed when `shared` asks, until the queue
    /// is closed and the last ones are committed.
    pub(crate) async fn run(
        self,
        rx: SinkRx,
        ctx: SinkCtx,
        delivered: Arc<AtomicU64>,
        shared: Arc<TxnShared>,
    ) -> Result<(), String> {
        let r = self.transact(rx, &ctx, &delivered, &shared).await;
        super::logged(r, &ctx, &self.cfg.topic)
    }

    async fn transact(
        &self,
        mut rx: SinkRx,
        ctx: &SinkCtx,
        delivered: &AtomicU64,
        shared: &TxnShared,
    ) -> Result<(), String> {
        let m = SinkMetrics::new(ctx);
        let backoff = Backoff::local_io();
        let mut parts: BTreeMap<u16, Part> = BTreeMap::new();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut opened_at: Option<Instant> = None;
        // Counted since this run started.
        let (mut received, mut done, mut open) = (0u64, 0u64, 0usize);
        loop {
            let age_left = opened_at.map(|t| MAX_TXN_AGE.saturating_sub(t.elapsed()));
            let got = tokio::select! {
                more = common::recv_batch(&mut rx, &mut batch, MAX_BATCH) => Some(more),
                () = shared.requested_again() => None,
                () = shared.gained_again() => None,
                () = sleep_for(age_left) => None,
            };
            // A partition gained starts its producer at once, fencing its
            // previous owner's before that one commits more.
            for (p, (gain, _)) in shared.gains() {
                if parts.get(&p).is_none_or(|x| x.gain != gain) {
                    self.part(&mut parts, p, ctx, &backoff, shared).await?;
                }
            }
            match got {
                Some(false) => {
                    let n = self
                        .commit_all(ctx, &m, &backoff, &mut parts, shared)
                        .await?;
                    m.delivered.inc_by(n);
                    common::finish(delivered, n as usize);
                    m.set_queue(&rx, 0);
                    return Ok(());
                }
                Some(true) => {
                    received += batch.len() as u64;
                    let mut dropped = 0u64;
                    for o in batch.drain(..) {
                        let p = o.source_partition().unwrap_or(NO_PARTITION);
                        let part = self.part(&mut parts, p, ctx, &backoff, shared).await?;
                        let skip = match part.skip {
                            Some(n) => n,
                            None => part.first_skip(o.kind, p, ctx),
                        };
                        part.skip = Some(skip.saturating_sub(1));
                        if skip > 0 {
                            dropped += 1;
                            continue;
                        }
                        if part.open.is_empty() {
                            part.sink.begin()?;
                        }
                        opened_at.get_or_insert_with(Instant::now);
                        part.open.push(o);
                        open += 1;
                    }
                    if dropped > 0 {
                        done += dropped;
                        m.delivered.inc_by(dropped);
                        common::finish(delivered, dropped as usize);
                    }
                    for part in parts.values_mut().filter(|p| p.sent < p.open.len()) {
                        part.sink
                            .produce(ctx, &m, &backoff, &part.open, part.sent)
                            .await?;
                        part.sent = part.open.len();
                    }
                    m.set_queue(&rx, open);
                }
                None => {}
            }
            let wanted = shared.requested();
            let asked = wanted > done && received >= wanted;
            let full =
                open >= MAX_TXN_OUTPUTS || opened_at.is_some_and(|t| t.elapsed() >= MAX_TXN_AGE);
            if open > 0 && (asked || full) {
                let n = self
                    .commit_all(ctx, &m, &backoff, &mut parts, shared)
                    .await?;
                done += n;
                m.delivered.inc_by(n);
                common::finish(delivered, n as usize);
                open = 0;
                opened_at = None;
                m.set_queue(&rx, 0);
            }
        }
    }

    /// Commits every partition's open transaction; how many outputs they
    /// held.
    async fn commit_all(
        &self,
        ctx: &SinkCtx,
        m: &SinkMetrics,
        backoff: &Backoff,
        parts: &mut BTreeMap<u16, Part>,
        shared: &TxnShared,
    ) -> Result<u64, String> {
        let mut n = 0u64;
        for part in parts.values_mut().filter(|p| !p.open.is_empty()) {
            let total = part.committed + part.open.len() as u64;
            let offsets = shared.source_offsets(part.sink.source_partition());
            part.sink
                .commit(ctx, m, backoff, &part.open, total, &offsets)
                .await?;
            part.committed = total;
            n += part.open.len() as u64;
            part.open.clear();
            part.sent = 0;
        }
        Ok(n)
    }

    /// Partition `p`'s producer, started (and Kafka's count read) when `p`
    /// was gained since.
    async fn part<'a>(
        &self,
        parts: &'a mut BTreeMap<u16, Part>,
        p: u16,
        ctx: &SinkCtx,
        backoff: &Backoff,
        shared: &TxnShared,
    ) -> Result<&'a mut Part, String> {
        let (gain, restored) = shared.gain_of(p).unwrap_or((0, None));
        if parts.get(&p).is_some_and(|x| x.gain != gain) {
            if let Some(old) = parts.remove(&p) {
                if !old.open.is_empty() {
                    // Left from before the partition was lost: the replay
                    // from its checkpoint makes them again.
                    tracing::warn!(sink = %ctx.name, partition = p, outputs = old.open.len(), "outputs of a partition lost and gained again are aborted: its replay makes them again");
                    let _ = old.sink.abort(ctx).await;
                }
            }
        }
        Ok(match parts.entry(p) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => v.insert(self.start(p, gain, restored, ctx, backoff).await?),
        })
    }

    async fn start(
        &self,
        p: u16,
        gain: u64,
        restored: Option<[u64; 4]>,
        ctx: &SinkCtx,
        backoff: &Backoff,
    ) -> Result<Part, String> {
        let (id, count_at) = if p == NO_PARTITION {
            (format!("{}-none", self.id), (self.cfg.topic.clone(), 0))
        } else {
            (
                format!("{}-p{p}", self.id),
                (self.count_topic.clone(), i32::from(p)),
            )
        };
        let txn = Txn {
            id: id.clone(),
            group: self.group.clone(),
            marker: self.marker.clone(),
            count_at,
            source: self.source.clone(),
            source_partition: (p != NO_PARTITION).then_some(i32::from(p)),
        };
        let sink = KafkaSink::with_txn(&self.cfg, ctx, Some(txn))?;
        // Fences the partition's earlier producer, wherever it runs, and
        // aborts its open transaction: the count read next is final.
        sink.retry(ctx, backoff, "initialising transactions", |pr| {
            pr.init_transactions(TXN_CALL)
        })
        .await?;
        let committed = sink.read_count(ctx, backoff).await?;
        tracing::info!(sink = %ctx.name, partition = p, transactional_id = %id, committed, "kafka sink: partition's transactions ready");
        Ok(Part {
            sink,
            gain,
            open: Vec::new(),
            sent: 0,
            committed,
            restored,
            skip: None,
        })
    }
}

impl Part {
    /// How many of the partition's first outputs (of `kind`, the sink's)
    /// Kafka holds already: Kafka's count less the changelog
    /// checkpoint's.
    fn first_skip(&self, kind: crate::sink::Kind, p: u16, ctx: &SinkCtx) -> u64 {
        let committed = self.committed;
        let skip = match self.restored.map(|c| c[kind as usize]) {
            None => {
                if committed > 0 {
                    tracing::warn!(sink = %ctx.name, partition = p, committed, "the partition has no changelog checkpoint, but its transactional id committed {committed} outputs before: they are not taken as this run's");
                }
                0
            }
            Some(c) if committed < c => {
                tracing::warn!(sink = %ctx.name, partition = p, committed, checkpoint = c, "Kafka holds fewer committed outputs of the partition than its changelog checkpoint says (group reset?): nothing is dropped");
                0
            }
            Some(c) => committed - c,
        };
        tracing::info!(sink = %ctx.name, partition = p, "kafka sink: {skip} outputs of the partition's replay are already committed and are dropped");
        skip
    }
}
