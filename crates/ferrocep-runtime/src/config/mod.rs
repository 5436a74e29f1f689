//! The pipeline config of `ferrocep run` (`shared/spec/pipeline-spec.md`
//! section 2): its types, and [`load`], which reads a config file, checks
//! it and loads its patterns, reporting every error it finds. Unknown fields
//! are errors everywhere.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

mod error;
mod load;
#[cfg(test)]
mod tests;
mod tree;

pub use error::{ConfigError, ConfigErrors};
pub use ferrocep_core::spec::Format;
pub use load::{load, parse_str, LoadedConfig, LoadedPattern, PatternSource};

/// A duration in milliseconds: in a config, `250ms`, `10s`, `5m`, `2h`, `1d`
/// or a number of milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(pub i64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum, so that a wrong type (a
        // list, `true`) gets this message, not "did not match any variant".
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Millis;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as 250ms, 10s or 5m, or a number of milliseconds")
            }
            fn visit_u64<E: serde::de::Error>(self, ms: u64) -> Result<Millis, E> {
                i64::try_from(ms)
                    .map(Millis)
                    .map_err(|_| E::custom(format!("duration {ms} ms is too large")))
            }
            fn visit_i64<E: serde::de::Error>(self, ms: i64) -> Result<Millis, E> {
                if ms >= 0 {
                    Ok(Millis(ms))
                } else {
                    self.visit_str(&ms.to_string())
                }
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Millis, E> {
                ferrocep_core::time::parse_duration_ms(text)
                    .map(Millis)
                    .map_err(|_| {
                        E::custom(format!(
                            "invalid duration '{text}': expected milliseconds or a number with unit ms, s, m, h or d (e.g. 250ms, 10s, 5m)"
                        ))
                    })
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes: `1048576`, `512KiB`, `1MiB`, `1GiB` (also `KB`, `MB`,
/// `GB` as powers of 1000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl Bytes {
    /// Parses `text` (see the type docs).
    pub fn parse(text: &str) -> Option<Bytes> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().ok()?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            _ => return None,
        };
        n.checked_mul(mult).map(Bytes)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor for the same reason as `Millis`'s.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size such as 1MiB or 512KiB, or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Bytes, E> {
                Ok(Bytes(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Bytes, E> {
                u64::try_from(n)
                    .map(Bytes)
                    .map_err(|_| E::custom(format!("invalid size {n}: a size is not negative")))
            }
            fn visit_str<E: serde::de::Error>(self, t: &str) -> Result<Bytes, E> {
                Bytes::parse(t).ok_or_else(|| {
                    E::custom(format!(
                        "invalid size '{t}': expected bytes or a number with unit KiB, MiB, GiB (e.g. 1MiB)"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Names the pipeline in logs, metrics and output ids.
    pub name: String,
    /// One or more pattern specs: a path (relative to the config file) or
    /// an inline spec.
    pub patterns: Vec<PatternRef>,
    /// Exactly one source.
    pub source: SourceConfig,
    /// Where each kind of output goes.
    #[serde(default)]
    pub outputs: OutputsConfig,
    /// The quiet-stream rule.
    #[serde(default)]
    pub time: TimeConfig,
    /// State and checkpoints.
    #[serde(default)]
    pub state: StateConfig,
    /// The HTTP server for `/metrics`, `/healthz`, `/readyz` (none if absent).
    #[serde(default)]
    pub server: Option<ServerConfig>,
}

/// A pattern spec: a file, or the spec itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PatternRef {
    /// A spec file, relative to the config file.
    Path(PathBuf),
    /// An inline spec (`pattern-spec.md`).
    Inline(serde_json::Value),
}

/// `source`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// A file: replayed, or followed like `tail -F`.
    File {
        /// The file, relative to the config file.
        path: PathBuf,
        /// Keep reading what is appended, across rotation.
        #[serde(default)]
        follow: bool,
        /// Without `follow`: what happens at the end of the file.
        #[serde(default)]
        end_of_input: EndOfInputConfig,
    },
    /// Standard input; ends with it.
    Stdin {
        /// What happens when standard input ends.
        #[serde(default)]
        end_of_input: EndOfInputConfig,
    },
    /// HTTP ingest into a durable log.
    Http {
        /// Address to listen on, e.g. `127.0.0.1:8080`.
        listen: String,
        /// Path to POST events to.
        #[serde(default = "default_http_path")]
        path: String,
        /// Largest body accepted (413 above).
        #[serde(default = "default_max_body")]
        max_body: Bytes,
        /// Largest backlog of the ingest log not yet taken by the engine
        /// (503 with `Retry-After` above).
        #[serde(default = "default_max_backlog")]
        max_backlog: Bytes,
    },
    /// Generated events, so that the job runs with no external service.
    Generator(GeneratorConfig),
    /// Records of Kafka topics (the `kafka` feature).
    Kafka(KafkaSourceConfig),
}

/// `source` of `type: kafka`: JSON values of the records of `topics`, read
/// in the consumer group `group_id`. The position kept in checkpoints is
/// each partition's offset.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topics to read (at most [`KAFKA_MAX_TOPICS`]). Each must be
    /// partitioned by the pattern key (README, "Kafka").
    pub topics: Vec<String>,
    /// The consumer group (default `ferrocep-NAME`, NAME the pipeline's).
    #[serde(default)]
    pub group_id: Option<String>,
    /// Client properties passed to librdkafka as they are (SASL, TLS,
    /// timeouts, `isolation.level`, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Where a partition that neither a checkpoint nor the group has an
    /// offset for starts: `earliest` (default) or `latest`.
    #[serde(default)]
    pub start: KafkaStart,
    /// Write each record's message key (as a JSON string) into this field
    /// of its event, for a pattern whose `key` is this field. Absent: the
    /// key is read from the value, as for every other source.
    #[serde(default)]
    pub message_key_field: Option<String>,
    /// Write each record's timestamp (ms since the epoch) into this field of
    /// its event, for a pattern whose time field is this field. Absent: the
    /// time is read from the value.
    #[serde(default)]
    pub record_time_field: Option<String>,
    /// State follows partitions: several instances in one group each own
    /// some partitions and their state, kept in a compacted changelog topic
    /// (README, "Kafka"). Off: one instance per group.
    #[serde(default)]
    pub scale_out: bool,
    /// The changelog topic (default `ferrocep-NAME-changelog`), with
    /// `scale_out`.
    #[serde(default)]
    pub changelog_topic: Option<String>,
}

impl KafkaSourceConfig {
    /// The consumer group of the source of pipeline `pipeline`: `group_id`,
    /// else `ferrocep-PIPELINE`.
    pub fn group(&self, pipeline: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("ferrocep-{pipeline}"))
    }
}

/// At most this many topics in one kafka source: an event's position holds
/// its topic's index in 4 bits (see `docs/checkpoint-format.md`).
pub const KAFKA_MAX_TOPICS: usize = 16;

/// See [`KafkaSourceConfig::start`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaStart {
    /// From the oldest record still in the partition.
    #[default]
    Earliest,
    /// From the next record written.
    Latest,
}

impl KafkaStart {
    /// The value of librdkafka's `auto.offset.reset`.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaStart::Earliest => "earliest",
            KafkaStart::Latest => "latest",
        }
    }
}

/// A sink of `type: kafka`: each output is a record of `topic`, its value
/// the output's JSON line, its key the pattern key, and its id also in the
/// header `id`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic written to.
    pub topic: String,
    /// Client properties passed to librdkafka as they are.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Exactly once: outputs go in Kafka transactions committed at each
    /// checkpoint (README, "Kafka"). Implied by `transactional_id`.
    #[serde(default)]
    pub transactional: bool,
    /// The producer's `transactional.id` (default
    /// `ferrocep-PIPELINE-SINK`, e.g. `ferrocep-orders-outputs.timeout[0]`):
    /// a second instance with the same id fences the first.
    #[serde(default)]
    pub transactional_id: Option<String>,
}

impl KafkaSinkConfig {
    /// The transactional id of this sink at `sink` (its place in the
    /// config) of pipeline `pipeline`, when it is transactional.
    pub fn transactional_id(&self, pipeline: &str, sink: &str) -> Option<String> {
        match &self.transactional_id {
            Some(id) => Some(id.clone()),
            None if self.transactional => Some(format!("ferrocep-{pipeline}-{sink}")),
            None => None,
        }
    }
}

fn default_http_path() -> String {
    "/events".into()
}

fn default_max_body() -> Bytes {
    Bytes(1 << 20)
}

fn default_max_backlog() -> Bytes {
    Bytes(256 << 20)
}

/// What happens when a bounded input ends (as `match --end-of-input`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndOfInputConfig {
    /// The watermark goes to +infinity: everything pending times out.
    #[default]
    Flush,
    /// Time stays where it is.
    Stop,
}

/// `source` of `type: generator`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Which workload.
    pub workload: Workload,
    /// `seed`: time between two events (default 1s).
    #[serde(default)]
    pub interval: Option<Millis>,
    /// `orders`: orders created per second (default 100).
    #[serde(default)]
    pub rate: Option<f64>,
    /// `orders`: share of orders that get paid, 0..=1 (default 0.8).
    #[serde(default)]
    pub pay_ratio: Option<f64>,
    /// `orders`: how long after its create a pay comes.
    #[serde(default)]
    pub pay_delay: Option<PayDelay>,
    /// `orders`: how far an event's timestamp may lag its place in the
    /// stream (default 0).
    #[serde(default)]
    pub out_of_orderness: Option<Millis>,
    /// `orders`: the random seed (default 1): the same seed gives the same
    /// events.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stop after this many events (then the input ends); default: endless.
    #[serde(default)]
    pub events: Option<u64>,
}

/// The generator's workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// The reference job's cycle: user 1 create, user 2 create, user 2 pay.
    Seed,
    /// A realistic stream of orders.
    Orders,
}

/// The distribution of pay delays.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayDelay {
    /// `exponential` (default), `uniform` or `fixed`.
    #[serde(default)]
    pub distribution: DelayDistribution,
    /// The mean delay (exponential, fixed) or the lower bound (uniform).
    #[serde(default)]
    pub mean: Option<Millis>,
    /// The upper bound (uniform), or a cap (exponential).
    #[serde(default)]
    pub max: Option<Millis>,
}

/// See [`PayDelay`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DelayDistribution {
    /// Memoryless delays around `mean`.
    #[default]
    Exponential,
    /// Evenly between `mean` and `max`.
    Uniform,
    /// Always `mean`.
    Fixed,
}

/// `outputs`: the sinks of each kind. A kind that is absent gets the
/// default (match and timeout to stdout, late and error to stderr); `[]`
/// drops it on purpose.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsConfig {
    /// Complete matches.
    #[serde(default)]
    pub r#match: Option<Vec<SinkConfig>>,
    /// Timed-out partial matches.
    #[serde(default)]
    pub timeout: Option<Vec<SinkConfig>>,
    /// Late events.
    #[serde(default)]
    pub late: Option<Vec<SinkConfig>>,
    /// Input errors.
    #[serde(default)]
    pub error: Option<Vec<SinkConfig>>,
}

/// One sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// Standard output.
    Stdout {},
    /// Standard error.
    Stderr {},
    /// A JSON-lines file.
    File {
        /// The file, relative to the config file.
        path: PathBuf,
        /// Rotate to `PATH.1`, `PATH.2`, ... once the file reaches this size.
        #[serde(default)]
        rotate_bytes: Option<Bytes>,
    },
    /// HTTP POSTs to a URL.
    Webhook(WebhookConfig),
    /// Records of a Kafka topic (the `kafka` feature).
    Kafka(KafkaSinkConfig),
}

/// A webhook sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST (`http://...`).
    pub url: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Outputs per request (a JSON array when more than 1).
    #[serde(default = "one")]
    pub batch: usize,
    /// How long to wait before sending a batch that is not full.
    #[serde(default)]
    pub linger: Option<Millis>,
    /// Timeout of one request.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: Millis,
    /// Retries after the first attempt before the output is dead-lettered.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Exponential backoff between attempts.
    #[serde(default)]
    pub backoff: BackoffConfig,
    /// Where outputs that cannot be delivered go, with the reason (default:
    /// `dead-letter/<sink>.jsonl` in the data directory).
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
}

fn one() -> usize {
    1
}

fn default_webhook_timeout() -> Millis {
    Millis(10_000)
}

fn default_max_retries() -> u32 {
    10
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    /// The first delay.
    #[serde(default = "default_backoff_initial")]
    pub initial: Millis,
    /// The largest delay.
    #[serde(default = "default_backoff_max")]
    pub max: Millis,
    /// Each delay is this many times the one before.
    #[serde(default = "default_backoff_multiplier")]
    pub multiplier: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: default_backoff_initial(),
            max: default_backoff_max(),
            multiplier: default_backoff_multiplier(),
        }
    }
}

fn default_backoff_initial() -> Millis {
    Millis(200)
}

fn default_backoff_max() -> Millis {
    Millis(30_000)
}

fn default_backoff_multiplier() -> f64 {
    2.0
}

/// `time`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// Event time: after this long without events, the watermark moves with
    /// the wall clock (`pipeline-spec.md` section 5). Absent: Flink's
    /// behaviour (the watermark waits for the next event).
    #[serde(default)]
    pub idle_timeout: Option<Millis>,
}

/// `state`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The data directory (relative to the config file); `--data-dir`
    /// overrides it.
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
    /// Time between two checkpoints.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: Millis,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: default_state_dir(),
            checkpoint_interval: default_checkpoint_interval(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("data")
}

fn default_checkpoint_interval() -> Millis {
    Millis(10_000)
}

/// `server`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`, e.g. `127.0.0.1:9464`.
    pub listen: String,
    /// The admin API (`PUT`/`DELETE /patterns/NAME`).
    #[serde(default)]
    pub admin: AdminConfig,
}

/// `server.admin`: who may change patterns. The token itself is never in
/// the config: it comes from an environment variable or a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Accept changes from peers other than loopback (default false: only
    /// from this machine, whatever address `listen` binds). Needs a token.
    #[serde(default)]
    pub allow_remote: bool,
    /// Name of an environment variable holding the bearer token that
    /// changes must carry.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding the bearer token (its first line).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The largest request body (a pattern spec), default 1 MiB.
    #[serde(default = "default_max_body")]
    pub max_body: Bytes,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            allow_remote: false,
            token_env: None,
            token_file: None,
            max_body: default_max_body(),
        }
    }
}

/// Whether `name` can name a pattern: not empty, at most 200 bytes, no
/// control characters (names appear in paths, ids, logs and labels).
pub fn check_pattern_name(name: &str) -> Result<(), PatternNameError> {
    if name.is_empty() {
        return Err(PatternNameError::Empty);
    }
    if name.len() > 200 {
        return Err(PatternNameError::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(PatternNameError::ControlCharacter);
    }
    Ok(())
}

/// Why a name cannot name a pattern ([`check_pattern_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternNameError {
    /// The name is empty.
    #[error("a pattern name must not be empty")]
    Empty,
    /// The name is longer than 200 bytes.
    #[error("a pattern name must be at most 200 bytes")]
    TooLong,
    /// The name has a control character.
    #[error("a pattern name must not contain control characters")]
    ControlCharacter,
}
