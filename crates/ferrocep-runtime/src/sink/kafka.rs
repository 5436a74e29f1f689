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

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientContext;
use serde_json::value::RawValue;
use tokio::sync::mpsc::Receiver;

use super::common::{self, Backoff, SinkMetrics};
use super::{Output, SinkCtx};
use crate::config::KafkaSinkConfig;

/// Most outputs taken off the queue at once.
const MAX_BATCH: usize = 4096;

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
}

impl KafkaSink {
    /// A producer to `cfg.topic`. Fails when librdkafka refuses the client
    /// properties.
    pub(crate) fn new(cfg: &KafkaSinkConfig, ctx: &SinkCtx) -> Result<KafkaSink, String> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &cfg.brokers);
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
        })
    }

    /// The sink's task: sends every output of `rx` until the queue is closed
    /// and every output is acknowledged.
    pub(crate) async fn run(
        self,
        mut rx: Receiver<Arc<Output>>,
        ctx: SinkCtx,
        delivered: Arc<AtomicU64>,
    ) -> Result<(), String> {
        let m = SinkMetrics::new(&ctx);
        let backoff = Backoff::local_io();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while common::recv_batch(&mut rx, &mut batch, MAX_BATCH).await {
            m.set_queue(&rx, batch.len());
            let mut todo: Vec<usize> = (0..batch.len()).collect();
            let mut retry = 0u32;
            while !todo.is_empty() {
                let (failed, reason) = self.send_all(&batch, &todo).await;
                if failed.is_empty() {
                    break;
                }
                retry += 1;
                m.retries.inc_by(failed.len() as u64);
                let delay = backoff.delay_ms(retry);
                tracing::error!(
                    sink = %ctx.name,
                    topic = %self.topic,
                    "{} outputs not delivered ({}); retry {retry} in {delay} ms",
                    failed.len(),
                    reason.unwrap_or_default()
                );
                let until = ctx.clock.now_ms().saturating_add(delay as i64);
                common::sleep_until(&ctx.clock, until, || m.set_queue(&rx, batch.len())).await;
                todo = failed;
            }
            m.delivered.inc_by(batch.len() as u64);
            common::finish(&delivered, batch.len());
            m.set_queue(&rx, 0);
        }
        Ok(())
    }

    /// Sends the outputs of `batch` at `which` and waits for their
    /// acknowledgements: those that failed, and why the first one did.
    async fn send_all(
        &self,
        batch: &[Arc<Output>],
        which: &[usize],
    ) -> (Vec<usize>, Option<String>) {
        let mut failed = Vec::new();
        let mut reason = None;
        let mut fail = |i: usize, why: String, reason: &mut Option<String>| {
            failed.push(i);
            reason.get_or_insert(why);
        };
        let mut in_flight: VecDeque<(usize, DeliveryFuture)> = VecDeque::new();
        for &i in which {
            let o = &batch[i];
            let head = Head::of(o.line());
            let key = head.key();
            loop {
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
                let mut record = FutureRecord::to(&self.topic)
                    .payload(o.line())
                    .headers(headers);
                if let Some(k) = key.as_deref() {
                    record = record.key(k);
                }
                match self.producer.send_result(record) {
                    Ok(f) => {
                        in_flight.push_back((i, f));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // librdkafka's own queue is full: wait for the
                        // oldest in flight, then try again.
                        match in_flight.pop_front() {
                            Some((j, f)) => {
                                if let Err(why) = outcome(f.await) {
                                    fail(j, why, &mut reason);
                                }
                            }
                            None => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                        }
                    }
                    Err((e, _)) => {
                        fail(i, e.to_string(), &mut reason);
                        break;
                    }
                }
            }
        }
        for (j, f) in in_flight {
            if let Err(why) = outcome(f.await) {
                fail(j, why, &mut reason);
            }
        }
        failed.sort_unstable();
        (failed, reason)
    }
}

/// Whether a record was acknowledged, or why not.
fn outcome(r: <DeliveryFuture as std::future::Future>::Output) -> Result<(), String> {
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e.to_string()),
        Err(_) => Err("the producer dropped the record".into()),
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
