//! The changelog of a kafka source whose state follows its partitions: what
//! each checkpoint writes into a compacted Kafka topic, and how the state of
//! one source partition is read back from it (see `docs/checkpoint-format.md`,
//! "Changelog topic").
//!
//! State unit: a partition number, across every topic of the source (the
//! topics are co-partitioned, as Kafka Streams requires). Changelog
//! partition `p` holds the state of source partition `p`:
//!
//! - a state record per key whose state changed: record key `k` + the
//!   pattern's store name (length-prefixed) + the encoded key (which carries
//!   the partition tag, [`crate::key::Key::tagged`]); value the key's state
//!   blob, or none (a tombstone) when its state is gone;
//! - then one meta record, key `m`, value [`PartitionMeta`] as JSON: the
//!   partition's next offset in each topic, the checkpoint's id, the
//!   patterns (store name, fingerprint, version, whether the checkpoint
//!   wrote every key).
//!
//! Every record of a checkpoint carries the header `ferrocep.ckpt`: the
//! writer's random token and the checkpoint id (16 bytes, big-endian). A
//! reader ([`Replay`]) applies a state record only when a meta record with
//! the same header follows it: the records of a checkpoint cut short (a
//! crash while writing) are never taken, even when another writer's
//! checkpoint comes after them.

use std::collections::{BTreeMap, BTreeSet};

use crate::source::{KafkaOffset, StopFlag};

#[cfg(feature = "kafka")]
pub mod io;

/// The record header naming a record's checkpoint.
pub const HEADER: &str = "ferrocep.ckpt";

/// Version of [`PartitionMeta`].
pub const META_VERSION: u32 = 1;

/// The record key of a partition's meta record.
pub const META_KEY: &[u8] = b"m";

/// The record key of a partition's claim: the instance that gained the
/// partition writes it before it reads the partition back; from there on,
/// only that writer's checkpoints of the partition are taken.
pub const CLAIM_KEY: &[u8] = b"c";

/// The default changelog topic of pipeline `name`.
pub fn default_topic(name: &str) -> String {
    format!("ferrocep-{name}-changelog")
}

/// The meta record of one partition in one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionMeta {
    /// [`META_VERSION`].
    pub v: u32,
    /// The source partition (also the changelog partition).
    pub partition: u16,
    /// The checkpoint's id.
    pub checkpoint: u64,
    /// The writer's token, hex (one per run of an instance).
    pub writer: String,
    /// The clock time of the checkpoint, epoch ms.
    pub at_ms: i64,
    /// The next offset of this partition in each topic read so far.
    pub offsets: Vec<KafkaOffset>,
    /// The patterns whose state the checkpoint holds.
    pub patterns: Vec<MetaPattern>,
    /// The partition's outputs by kind (match, timeout, late, error) over
    /// every run, up to the checkpoint: where a transactional kafka sink's
    /// count of this partition stood (see `sink::kafka`).
    #[serde(default, skip_serializing_if = "no_outputs")]
    pub outputs: [u64; 4],
}

fn no_outputs(o: &[u64; 4]) -> bool {
    o.iter().all(|&n| n == 0)
}

/// A pattern in a [`PartitionMeta`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetaPattern {
    /// Its store name ([`crate::engine::store_name`]).
    pub name: String,
    /// Its fingerprint ([`crate::engine::fingerprint`]).
    pub fingerprint: String,
    /// Its version.
    pub version: u32,
    /// The checkpoint wrote every key of it: the keys before are replaced.
    pub full: bool,
    /// The partition's operator-level state of it (the engine's meta blob:
    /// watermark, time rules), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
}

/// Each pattern's operator-level state of one partition: (store name,
/// meta blob).
pub type PatternMetas = Vec<(String, Vec<u8>)>;

/// A state record read but not yet applied: (header, store name, key,
/// value).
type Pending = ([u8; 16], String, Vec<u8>, Option<Vec<u8>>);

/// The record key of a state record.
pub fn state_key(pattern: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 + pattern.len() + key.len());
    out.push(b'k');
    ferrocep_core::operator::state::put_bytes(&mut out, pattern.as_bytes());
    out.extend_from_slice(key);
    out
}

/// The pattern's store name and the encoded key of a state record's key.
pub fn split_state_key(record_key: &[u8]) -> Option<(&str, &[u8])> {
    let mut input = record_key.strip_prefix(b"k")?;
    let name = ferrocep_core::operator::state::get_str(&mut input, "pattern").ok()?;
    Some((name, input))
}

/// The header value naming checkpoint `id` of writer `token`.
pub fn header(token: u64, id: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(&token.to_be_bytes());
    h[8..].copy_from_slice(&id.to_be_bytes());
    h
}

/// The source partition of an encoded key (`None`: not partition-tagged).
pub fn key_partition(key: &[u8]) -> Option<u16> {
    use ferrocep_core::operator::state::StateCodec;
    let mut input = key;
    crate::key::Key::decode(&mut input).ok()?.source_partition()
}

/// One record of a checkpoint for the changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord<'a> {
    /// The changelog partition (= the source partition).
    pub partition: u16,
    /// The record key.
    pub key: Vec<u8>,
    /// The value (`None`: a tombstone).
    pub value: Option<std::borrow::Cow<'a, [u8]>>,
}

/// The records a checkpoint writes: each changed key of an `owned`
/// partition, then one meta record per owned partition (with its offsets
/// from `offsets`, and each pattern's operator-level state from `metas`,
/// per partition). Keys without a partition tag, or of partitions not
/// owned, are left out.
pub fn records<'a>(
    id: u64,
    token: u64,
    at_ms: i64,
    parts: &'a crate::engine::EngineCheckpoint,
    owned: &BTreeSet<u16>,
    offsets: &[KafkaOffset],
    metas: &[crate::tasks::TaskMeta],
) -> Vec<ChangelogRecord<'a>> {
    let mut out = Vec::new();
    for p in &parts.parts {
        for (_, k, v) in &p.upserts {
            if let Some(part) = key_partition(k).filter(|q| owned.contains(q)) {
                out.push(ChangelogRecord {
                    partition: part,
                    key: state_key(&p.name, k),
                    value: Some(std::borrow::Cow::Borrowed(v.as_slice())),
                });
            }
        }
        for (_, k) in &p.deletes {
            if let Some(part) = key_partition(k).filter(|q| owned.contains(q)) {
                out.push(ChangelogRecord {
                    partition: part,
                    key: state_key(&p.name, k),
                    value: None,
                });
            }
        }
    }
    let patterns: Vec<MetaPattern> = parts
        .parts
        .iter()
        .map(|p| MetaPattern {
            name: p.name.to_string(),
            fingerprint: p.fingerprint.clone(),
            version: p.version,
            full: p.full,
            meta: None,
        })
        .collect();
    for &part in owned {
        let task = metas.iter().find(|m| m.partition == part);
        let meta = PartitionMeta {
            v: META_VERSION,
            partition: part,
            checkpoint: id,
            writer: format!("{token:016x}"),
            at_ms,
            offsets: offsets
                .iter()
                .filter(|o| o.partition == i32::from(part))
                .cloned()
                .collect(),
            patterns: patterns
                .iter()
                .map(|mp| MetaPattern {
                    meta: task
                        .and_then(|t| t.patterns.iter().find(|(n, _)| *n == mp.name))
                        .map(|(_, b)| hex(b)),
                    ..mp.clone()
                })
                .collect(),
            outputs: task.map(|t| t.outputs).unwrap_or_default(),
        };
        out.push(ChangelogRecord {
            partition: part,
            key: META_KEY.to_vec(),
            // Serializing plain data into a vector cannot fail.
            value: Some(serde_json::to_vec(&meta).unwrap_or_default().into()),
        });
    }
    out
}

/// The state of one source partition as its changelog holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// The partition.
    pub partition: u16,
    /// The last complete checkpoint's meta record (`None`: none yet).
    pub meta: Option<PartitionMeta>,
    /// Each key's state: (store name, encoded key, state).
    pub keys: Vec<(String, Vec<u8>, Vec<u8>)>,
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

/// The bytes of [`hex`] text (`None`: not hex).
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let t = text.as_bytes();
    if !t.len().is_multiple_of(2) {
        return None;
    }
    let d = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
    t.chunks(2)
        .map(|c| Some((d(c[0])? << 4) | d(c[1])?))
        .collect()
}

impl PartitionState {
    /// Each pattern's operator-level state in the meta record: (store
    /// name, meta blob).
    pub fn metas(&self) -> PatternMetas {
        self.meta
            .iter()
            .flat_map(|m| &m.patterns)
            .filter_map(|p| Some((p.name.clone(), unhex(p.meta.as_deref()?)?)))
            .collect()
    }

    /// The patterns of the meta record as (store name, fingerprint).
    pub fn patterns(&self) -> Vec<(String, String)> {
        self.meta
            .iter()
            .flat_map(|m| &m.patterns)
            .map(|p| (p.name.clone(), p.fingerprint.clone()))
            .collect()
    }
}

/// Reads a changelog partition from its start, record by record (see the
/// module docs), into the state of its last complete checkpoint.
#[derive(Debug, Default)]
pub struct Replay {
    partition: u16,
    /// Applied: by store name, encoded key to state.
    keys: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Read since the last meta record: (header, store name, key, value).
    pending: Vec<Pending>,
    meta: Option<PartitionMeta>,
    /// The writer token of the last claim ([`CLAIM_KEY`]): only its
    /// checkpoints are taken after it.
    claimant: Option<[u8; 8]>,
    /// Checkpoints of writers that no longer owned the partition (a
    /// zombie's), not taken.
    pub foreign: u64,
    /// Records that were not of this format (skipped).
    pub skipped: u64,
}

impl Replay {
    /// A replay of changelog partition `partition`.
    pub fn new(partition: u16) -> Replay {
        Replay {
            partition,
            ..Replay::default()
        }
    }

    /// Takes the next record.
    pub fn record(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, header: Option<&[u8]>) {
        let Some(h) = header.and_then(|h| <[u8; 16]>::try_from(h).ok()) else {
            self.skipped += 1;
            return;
        };
        let Some(key) = key else {
            self.skipped += 1;
            return;
        };
        let mut token = [0u8; 8];
        token.copy_from_slice(&h[..8]);
        if key == CLAIM_KEY {
            // What the previous owner had not finished is not taken.
            self.pending.clear();
            self.claimant = Some(token);
            return;
        }
        if key == META_KEY {
            let Some(meta) = value.and_then(|v| serde_json::from_slice::<PartitionMeta>(v).ok())
            else {
                self.skipped += 1;
                return;
            };
            if self.claimant.is_some_and(|c| c != token) {
                // A writer that lost the partition without knowing.
                self.pending.retain(|(ph, ..)| *ph != h);
                self.foreign += 1;
                return;
            }
            for p in meta.patterns.iter().filter(|p| p.full) {
                self.keys.remove(&p.name);
            }
            for (ph, name, k, v) in std::mem::take(&mut self.pending) {
                if ph != h {
                    continue; // a checkpoint cut short
                }
                let map = self.keys.entry(name).or_default();
                match v {
                    Some(v) => {
                        map.insert(k, v);
                    }
                    None => {
                        map.remove(&k);
                    }
                }
            }
            // Patterns the checkpoint no longer has are gone.
            self.keys
                .retain(|name, _| meta.patterns.iter().any(|p| p.name == *name));
            self.meta = Some(meta);
            return;
        }
        match split_state_key(key) {
            Some((name, k)) => {
                self.pending
                    .push((h, name.to_string(), k.to_vec(), value.map(<[u8]>::to_vec)))
            }
            None => self.skipped += 1,
        }
    }

    /// The state of the last complete checkpoint.
    pub fn finish(self) -> PartitionState {
        let keys = self
            .keys
            .into_iter()
            .flat_map(|(name, m)| m.into_iter().map(move |(k, v)| (name.clone(), k, v)))
            .collect();
        PartitionState {
            partition: self.partition,
            meta: self.meta,
            keys,
        }
    }
}

/// A kafka source's partitions moved (its consumer group rebalanced).
#[derive(Debug)]
pub enum PartitionChange {
    /// Partitions given to this instance, each with its state from the
    /// changelog: restored before any record of them is read.
    Assigned(Vec<PartitionState>),
    /// Partitions taken away: every record read from them is in the engine
    /// already. The engine thread checkpoints them to the changelog, drops
    /// their keys, then answers on `done` (the source waits for it before
    /// the group hands them on).
    Revoked {
        /// The partitions.
        partitions: Vec<u16>,
        /// Answered once they are checkpointed and dropped.
        done: std::sync::mpsc::SyncSender<()>,
    },
}

/// Writes a checkpoint's records to the changelog, waiting until every one
/// is acknowledged.
pub trait ChangelogWrite: Send {
    /// Writes `records` in order (per partition) with the header of
    /// checkpoint `id`; `Err` names what failed.
    fn write(&mut self, id: u64, records: &[ChangelogRecord<'_>]) -> Result<(), String>;
    /// The writer's token (in every record's header).
    fn token(&self) -> u64;
}

/// The changelog side of a pipeline whose state follows its source's
/// partitions.
pub struct Changelog {
    /// The writer (moved to the checkpoint thread when the run starts).
    pub writer: Option<Box<dyn ChangelogWrite>>,
    /// The partitions this instance owns now.
    pub owned: BTreeSet<u16>,
    /// Raised by the pipeline once its final checkpoint is written: the
    /// source leaves the group only then, so that the next owner reads it.
    pub release: StopFlag,
}

#[cfg(test)]
mod tests;
