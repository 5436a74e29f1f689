//! Checkpoints of `ferrocep run`: the embedded store in the data directory
//! that holds the last complete checkpoint (operator state key by key, the
//! source position, each sink's commit position), written incrementally in
//! one atomic, fsynced commit.
//!
//! The store owns `<data_dir>/state/`; nothing else writes there. What a
//! checkpoint means (which keys changed, what the positions are, whether the
//! patterns' fingerprints match) is the caller's business: the store keeps
//! bytes, checks that a write is consistent with what it holds, and reports a
//! directory it cannot trust (newer format, corrupt, in use) as a
//! [`StoreError`] naming the path. The on-disk format is documented in
//! `docs/checkpoint-format.md` at the repository root; [`layout`] is its code.
//!
//! ```no_run
//! # use ferrocep_runtime::checkpoint::*;
//! # fn main() -> Result<(), StoreError> {
//! let mut store = Store::open(std::path::Path::new("/var/lib/ferrocep"))?;
//! if let Some(loaded) = store.load()? {
//!     for p in &loaded.patterns {
//!         // compare p.fingerprint with the running pattern, restore p.meta, then:
//!         store.for_each_key(&p.name, 0..64, |_group, _key, _state| Ok(()))?;
//!     }
//! }
//! let patterns = [PatternRecord {
//!     name: "orders".into(),
//!     fingerprint: "f1".into(),
//!     version: 1,
//!     meta: vec![],
//! }];
//! let upserts = [KeyState { pattern: "orders", key_group: 3, key: b"k", state: b"s" }];
//! store.commit(&CheckpointWrite {
//!     id: 1,
//!     pipeline: "p",
//!     patterns: &patterns,
//!     upserts: &upserts,
//!     deletes: &[],
//!     dropped_patterns: &[],
//!     source: b"{}",
//!     sinks: &[],
//! })?;
//! # Ok(()) }
//! ```

pub mod layout;
mod store;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use store::Store;

/// Why the callback of [`Store::for_each_key`] could not take a key (the
/// runtime's `RestoreError`, say); reported in a [`StoreError::Restore`].
pub type KeyError = Box<dyn std::error::Error + Send + Sync>;

/// One pattern (one operator) of a checkpoint.
///
/// `name` is the pattern's identity in the store: key states name it. A
/// runtime that keeps two versions of one pattern alive (a draining old
/// version beside the new one) gives each its own name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternRecord {
    /// The pattern's name (its identity in the store).
    pub name: String,
    /// A fingerprint of the pattern's spec, so that state is never restored
    /// into another automaton (compared by the runtime on load).
    pub fingerprint: String,
    /// The pattern's version (the runtime's numbering of replacements).
    pub version: u64,
    /// The operator-level state (`CepOperator::snapshot_meta`).
    pub meta: Vec<u8>,
}

/// The state of one key, written by a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyState<'a> {
    /// The pattern (a [`PatternRecord::name`] of the same write).
    pub pattern: &'a str,
    /// The key's group, below `KEY_GROUPS` (`ferrocep_core::operator::state`).
    pub key_group: u32,
    /// The key's bytes.
    pub key: &'a [u8],
    /// The key's state (`CepOperator::snapshot_key`).
    pub state: &'a [u8],
}

/// A key whose state is gone since the previous checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef<'a> {
    /// The pattern (a [`PatternRecord::name`] of the same write).
    pub pattern: &'a str,
    /// The key's group.
    pub key_group: u32,
    /// The key's bytes.
    pub key: &'a [u8],
}

/// What one checkpoint changes, committed by [`Store::commit`] all or
/// nothing.
///
/// Applied in this order: `dropped_patterns` (every key of each, and its
/// record), then `deletes`, then `upserts`; so an upsert wins over a delete
/// of the same key in the same write, and a pattern both dropped and listed
/// in `patterns` (replaced, its old state discarded) starts empty with only
/// this write's upserts. The pattern records, the source position and the
/// sink positions replace the stored ones whole.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointWrite<'a> {
    /// The checkpoint's number: larger than every one committed before.
    pub id: u64,
    /// The pipeline's name.
    pub pipeline: &'a str,
    /// Every pattern the checkpoint holds (names unique). A stored pattern
    /// missing here must be in `dropped_patterns`.
    pub patterns: &'a [PatternRecord],
    /// Keys whose state changed (or is new) since the previous checkpoint.
    pub upserts: &'a [KeyState<'a>],
    /// Keys whose state is gone since the previous checkpoint.
    pub deletes: &'a [KeyRef<'a>],
    /// Patterns whose every key is deleted (a pattern removed or replaced
    /// with its state dropped). Naming one that is not stored is no error.
    pub dropped_patterns: &'a [&'a str],
    /// The source position (opaque bytes).
    pub source: &'a [u8],
    /// Each sink's commit position (opaque bytes), by sink name (unique).
    pub sinks: &'a [(String, Vec<u8>)],
}

/// The last complete checkpoint, without its key states (read those with
/// [`Store::for_each_key`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The checkpoint's number.
    pub id: u64,
    /// The pipeline's name.
    pub pipeline: String,
    /// The store format version the directory was written with.
    pub format_version: u32,
    /// Every pattern, by name.
    pub patterns: Vec<PatternRecord>,
    /// The source position.
    pub source: Vec<u8>,
    /// Each sink's commit position, by sink name.
    pub sinks: Vec<(String, Vec<u8>)>,
}

/// What a commit wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Bytes of keys and values handed to the store (key states, pattern
    /// records, positions and meta), before the store's own framing.
    pub bytes_written: u64,
    /// Key states written.
    pub keys_written: u64,
    /// Key states deleted (deletes given, and the keys of dropped patterns).
    pub keys_deleted: u64,
}

/// Why the checkpoint store could not be opened, read or written. Every
/// variant names the path it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another process (or another store in this one) has the directory open.
    #[error(
        "data directory {} is in use by another ferrocep process (lock held on {})",
        dir.display(),
        lock.display()
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Written by a newer ferrocep, in a format this one does not read.
    #[error(
        "data directory {} was written by a newer ferrocep (format {found}, this one reads up to {supported})",
        dir.display()
    )]
    NewerFormat {
        /// The data directory.
        dir: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The directory's contents cannot be trusted.
    #[error("checkpoint store {} is corrupt: {detail}", path.display())]
    Corrupt {
        /// The store directory or file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The storage engine failed (I/O or an internal error).
    #[error("checkpoint store {}: {what}: {detail}", path.display())]
    Engine {
        /// The store directory.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The engine's error.
        detail: String,
    },
    /// A request that contradicts itself or the store (a caller bug): a
    /// commit that names an unknown pattern, a read of one, a key group out
    /// of range. Nothing was written.
    #[error("checkpoint store {}: invalid request: {detail}", path.display())]
    Invalid {
        /// The store directory.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The callback of [`Store::for_each_key`] failed.
    #[error(
        "checkpoint store {}: restoring a key of pattern {pattern:?} (key group {key_group}): {detail}",
        path.display()
    )]
    Restore {
        /// The store directory.
        path: PathBuf,
        /// The pattern.
        pattern: String,
        /// The key's group.
        key_group: u32,
        /// The callback's error.
        detail: String,
    },
}
