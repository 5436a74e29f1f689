//! The metrics of `ferrocep run`, in one Prometheus registry
//! (prometheus-client), served as text at `/metrics`.
//!
//! Labels: `source` (its type), `pattern`, `kind` (match, timeout, late,
//! error), `sink` (its place in the config, e.g. `outputs.timeout[0]`).
//! Every metric name starts with `ferrocep_`.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set of one label.
pub type Labels1 = Vec<(&'static str, String)>;

/// Everything the pipeline counts.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Events taken from the source, by `source`.
    pub events_in: Family<Labels1, Counter>,
    /// Input that could not be used, by `source`.
    pub input_errors: Family<Labels1, Counter>,
    /// Outputs, by `pattern` and `kind`.
    pub outputs: Family<Labels1, Counter>,
    /// Partial matches pending, by `pattern`.
    pub pending_partial_matches: Family<Labels1, Gauge>,
    /// Keys with state, by `pattern`.
    pub pending_keys: Family<Labels1, Gauge>,
    /// The watermark (epoch ms), by `pattern`.
    pub watermark_ms: Family<Labels1, Gauge>,
    /// How far the watermark is behind the wall clock, ms, by `pattern`.
    pub watermark_lag_ms: Family<Labels1, Gauge>,
    /// Outputs queued and not yet finished with, by `sink`.
    pub sink_queue: Family<Labels1, Gauge>,
    /// Outputs delivered, by `sink`.
    pub sink_delivered: Family<Labels1, Counter>,
    /// Retried attempts, by `sink`.
    pub sink_retries: Family<Labels1, Counter>,
    /// Outputs dead-lettered, by `sink`.
    pub sink_dead_letters: Family<Labels1, Counter>,
    /// HTTP ingest requests, by `code`.
    pub ingest_requests: Family<Labels1, Counter>,
    /// Bytes in the ingest log not yet taken by the engine.
    pub ingest_backlog_bytes: Gauge,
    /// How long the last checkpoint took, ms.
    pub checkpoint_duration_ms: Gauge,
    /// Bytes the last checkpoint wrote.
    pub checkpoint_size_bytes: Gauge,
    /// When the last checkpoint completed (epoch ms; 0: none yet).
    pub checkpoint_last_ms: Gauge,
    /// Pattern changes, by `action` (added, replaced, removed, unchanged,
    /// rejected) and `via` (api, sighup, start).
    pub pattern_changes: Family<Labels1, Counter>,
    /// Partial matches pending in draining versions, by `pattern` and
    /// `version`.
    pub draining_partial_matches: Family<Labels1, Gauge>,
    /// A kafka source's consumer lag in records, by `topic` and
    /// `partition` (from librdkafka's statistics).
    pub kafka_consumer_lag: Family<Labels1, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics at zero, registered.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("ferrocep");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            events_in: Family::default(),
            input_errors: Family::default(),
            outputs: Family::default(),
            pending_partial_matches: Family::default(),
            pending_keys: Family::default(),
            watermark_ms: Family::default(),
            watermark_lag_ms: Family::default(),
            sink_queue: Family::default(),
            sink_delivered: Family::default(),
            sink_retries: Family::default(),
            sink_dead_letters: Family::default(),
            ingest_requests: Family::default(),
            kafka_consumer_lag: Family::default(),
            ingest_backlog_bytes: Gauge::default(),
            checkpoint_duration_ms: Gauge::default(),
            checkpoint_size_bytes: Gauge::default(),
            checkpoint_last_ms: Gauge::default(),
            pattern_changes: Family::default(),
            draining_partial_matches: Family::default(),
        };
        r.register(
            "events_in",
            "Events taken from the source",
            m.events_in.clone(),
        );
        r.register(
            "input_errors",
            "Input that could not be used",
            m.input_errors.clone(),
        );
        r.register("outputs", "Outputs by pattern and kind", m.outputs.clone());
        r.register(
            "pending_partial_matches",
            "Partial matches pending, by pattern",
            m.pending_partial_matches.clone(),
        );
        r.register(
            "pending_keys",
            "Keys with state, by pattern",
            m.pending_keys.clone(),
        );
        r.register(
            "watermark_ms",
            "The watermark, epoch ms",
            m.watermark_ms.clone(),
        );
        r.register(
            "watermark_lag_ms",
            "How far the watermark is behind the wall clock, ms",
            m.watermark_lag_ms.clone(),
        );
        r.register(
            "sink_queue",
            "Outputs queued for a sink",
            m.sink_queue.clone(),
        );
        r.register(
            "sink_delivered",
            "Outputs delivered by a sink",
            m.sink_delivered.clone(),
        );
        r.register(
            "sink_retries",
            "Retried sink attempts",
            m.sink_retries.clone(),
        );
        r.register(
            "sink_dead_letters",
            "Outputs sent to a dead-letter file",
            m.sink_dead_letters.clone(),
        );
        r.register(
            "ingest_requests",
            "HTTP ingest requests by reply code",
            m.ingest_requests.clone(),
        );
        r.register(
            "ingest_backlog_bytes",
            "Bytes of the ingest log not yet taken by the engine",
            m.ingest_backlog_bytes.clone(),
        );
        r.register(
            "checkpoint_duration_ms",
            "How long the last checkpoint took, ms",
            m.checkpoint_duration_ms.clone(),
        );
        r.register(
            "checkpoint_size_bytes",
            "Bytes the last checkpoint wrote",
            m.checkpoint_size_bytes.clone(),
        );
        r.register(
            "checkpoint_last_ms",
            "When the last checkpoint completed, epoch ms",
            m.checkpoint_last_ms.clone(),
        );
        r.register(
            "pattern_changes",
            "Pattern changes by action and origin",
            m.pattern_changes.clone(),
        );
        r.register(
            "draining_partial_matches",
            "Partial matches pending in draining versions, by pattern and version",
            m.draining_partial_matches.clone(),
        );
        r.register(
            "kafka_consumer_lag",
            "Records of a kafka partition not yet read, by topic and partition",
            m.kafka_consumer_lag.clone(),
        );
        *m.registry.lock().unwrap_or_else(|p| p.into_inner()) = r;
        m
    }

    /// One label.
    pub fn label(name: &'static str, value: &str) -> Labels1 {
        vec![(name, value.to_string())]
    }

    /// Two labels.
    pub fn labels2(a: (&'static str, &str), b: (&'static str, &str)) -> Labels1 {
        vec![(a.0, a.1.to_string()), (b.0, b.1.to_string())]
    }

    /// The Prometheus text format of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &r);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_labelled_counters() {
        let m = Metrics::new();
        m.events_in
            .get_or_create(&Metrics::label("source", "http"))
            .inc_by(3);
        m.outputs
            .get_or_create(&Metrics::labels2(("pattern", "p"), ("kind", "timeout")))
            .inc();
        let text = m.encode();
        assert!(
            text.contains("ferrocep_events_in_total{source=\"http\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ferrocep_outputs_total{pattern=\"p\",kind=\"timeout\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
