//! [`Store`]: the checkpoint store in `<data_dir>/state/`, on fjall.
//!
//! ```text
//! <data_dir>/state/FORMAT   "ferrocep checkpoint store\nformat 1\nengine fjall 3\n", checked first
//! <data_dir>/state/LOCK     held (flock) while a Store is open
//! <data_dir>/state/LAST     the last committed checkpoint id (u64 LE | CRC32C u32 LE)
//! <data_dir>/state/fjall/   the fjall database (tables meta, patterns, sinks, keys)
//! ```
//!
//! A commit is one fjall write batch, journalled and fsynced
//! (`PersistMode::SyncAll`) before [`Store::commit`] returns: after a crash
//! fjall's recovery drops a batch whose journal entry is incomplete, so the
//! store holds the previous checkpoint whole or the new one whole. `LAST`
//! is written after each commit; a store whose checkpoint is older than
//! `LAST` lost a committed checkpoint (a journal cut short by corruption)
//! and is refused rather than silently started from an older one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use ferrocep_core::operator::state::KEY_GROUPS;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};

use super::layout::{self, FORMAT_VERSION};
use super::{CheckpointWrite, CommitStats, Loaded, PatternRecord, StoreError};

/// fjall's key limit is 65,536 bytes; the store key adds its prefix.
const MAX_KEY_BYTES: usize = 65_536 - layout::STATE_KEY_PREFIX;

/// The checkpoint store of one data directory. See the module docs.
pub struct Store {
    data_dir: PathBuf,
    dir: PathBuf,
    _lock: File,
    last_file: File,
    db: Database,
    meta: Keyspace,
    patterns: Keyspace,
    sinks: Keyspace,
    keys: Keyspace,
    /// Pattern name → pattern id, as committed.
    ids: HashMap<String, u32>,
    last_id: Option<u64>,
    next_pattern_id: u32,
    /// Tests: the commit of this checkpoint id fails as a failed write would,
    /// before anything is written.
    #[cfg(test)]
    pub(crate) fail_commit: Option<u64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("last_id", &self.last_id)
            .field("patterns", &self.ids.len())
            .finish()
    }
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_owned(),
        what,
        source,
    }
}

fn corrupt(path: &Path, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

fn invalid(path: &Path, detail: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

/// Sorts fjall's errors: I/O stays I/O, a lock is [`StoreError::Locked`],
/// everything about the bytes read is corruption.
fn engine_err(dir: &Path, data_dir: &Path, what: &'static str, e: fjall::Error) -> StoreError {
    use fjall::{Error as E, LsmError as L};
    match e {
        E::Io(source) | E::Storage(L::Io(source)) => StoreError::Io {
            path: dir.to_owned(),
            what,
            source,
        },
        E::Locked => StoreError::Locked {
            dir: data_dir.to_owned(),
            lock: dir.join("fjall"),
        },
        E::Poisoned => StoreError::Engine {
            path: dir.to_owned(),
            what,
            detail: "an earlier write or sync failed; reopen the store".into(),
        },
        E::KeyspaceDeleted => StoreError::Engine {
            path: dir.to_owned(),
            what,
            detail: "keyspace deleted".into(),
        },
        other => corrupt(dir, format!("{what}: {other:?}")),
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "syncing the directory"))
}

impl Store {
    /// Opens or creates `<data_dir>/state/`.
    ///
    /// Errors: a directory in use by another process ([`StoreError::Locked`]),
    /// written in a newer format ([`StoreError::NewerFormat`]), or whose
    /// contents cannot be trusted ([`StoreError::Corrupt`]), each naming the
    /// path.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let dir = data_dir.join("state");
        fs::create_dir_all(&dir)
            .map_err(io_err(&dir, "creating the checkpoint store directory"))?;

        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path, "opening"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: data_dir.to_owned(),
                    lock: lock_path,
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path, "locking")(e)),
        }

        let file_version = check_format_file(data_dir, &dir)?;

        let db_path = dir.join("fjall");
        let db = Database::builder(&db_path)
            .open()
            .map_err(|e| engine_err(&dir, data_dir, "opening", e))?;
        let ks = |name: &'static str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(|e| engine_err(&dir, data_dir, "opening a table", e))
        };
        let (meta, patterns, sinks, keys) = (
            ks(layout::TABLE_META)?,
            ks(layout::TABLE_PATTERNS)?,
            ks(layout::TABLE_SINKS)?,
            ks(layout::TABLE_KEYS)?,
        );

        let last_path = dir.join("LAST");
        let last_existed = last_path.exists();
        let last_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&last_path)
            .map_err(io_err(&last_path, "opening"))?;
        if !last_existed {
            sync_dir(&dir)?;
        }

        let mut store = Store {
            data_dir: data_dir.to_owned(),
            dir,
            _lock: lock,
            last_file,
            db,
            meta,
            patterns,
            sinks,
            keys,
            ids: HashMap::new(),
            last_id: None,
            next_pattern_id: 1,
            #[cfg(test)]
            fail_commit: None,
        };
        store.read_state(file_version)?;
        store.check_last(&last_path)?;
        Ok(store)
    }

    /// The data directory this store is in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The id of the last complete checkpoint, if any.
    pub fn last_id(&self) -> Option<u64> {
        self.last_id
    }

    fn get_meta(&self, key: &str) -> Result<Option<fjall::Slice>, StoreError> {
        self.meta
            .get(key)
            .map_err(|e| engine_err(&self.dir, &self.data_dir, "reading meta", e))
    }

    /// Reads the meta table and the pattern ids, checking them against the
    /// `FORMAT` file.
    fn read_state(&mut self, file_version: u32) -> Result<(), StoreError> {
        let dir = self.dir.clone();
        let version = match self.get_meta(layout::META_FORMAT_VERSION)? {
            Some(v) => Some(
                layout::decode_u32(layout::META_FORMAT_VERSION, &v)
                    .map_err(|e| corrupt(&dir, e.to_string()))?,
            ),
            None => None,
        };
        if let Some(v) = version {
            if v > FORMAT_VERSION {
                return Err(StoreError::NewerFormat {
                    dir: self.data_dir.clone(),
                    found: v,
                    supported: FORMAT_VERSION,
                });
            }
            if v != file_version {
                return Err(corrupt(
                    &dir,
                    format!(
                        "the FORMAT file says format {file_version}, the store's meta says {v}"
                    ),
                ));
            }
        }
        let last_id = match self.get_meta(layout::META_CHECKPOINT_ID)? {
            Some(v) => Some(
                layout::decode_u64(layout::META_CHECKPOINT_ID, &v)
                    .map_err(|e| corrupt(&dir, e.to_string()))?,
            ),
            None => None,
        };
        match (version, last_id) {
            (Some(_), Some(_)) => {}
            (None, None) => {
                // Fresh: nothing else may be there.
                for (name, ks) in [
                    (layout::TABLE_PATTERNS, &self.patterns),
                    (layout::TABLE_SINKS, &self.sinks),
                    (layout::TABLE_KEYS, &self.keys),
                    (layout::TABLE_META, &self.meta),
                ] {
                    if ks.first_key_value().is_some() {
                        return Err(corrupt(
                            &dir,
                            format!("no checkpoint is recorded but table {name} has entries"),
                        ));
                    }
                }
                return Ok(());
            }
            _ => {
                return Err(corrupt(
                    &dir,
                    "meta has one of format_version and checkpoint_id without the other",
                ))
            }
        }
        self.next_pattern_id = match self.get_meta(layout::META_NEXT_PATTERN_ID)? {
            Some(v) => layout::decode_u32(layout::META_NEXT_PATTERN_ID, &v)
                .map_err(|e| corrupt(&dir, e.to_string()))?,
            None => return Err(corrupt(&dir, "meta has no next_pattern_id")),
        };
        for p in self.read_patterns()? {
            let (id, rec) = p;
            if id >= self.next_pattern_id {
                return Err(corrupt(
                    &dir,
                    format!(
                        "pattern {:?} has id {id}, not below next_pattern_id {}",
                        rec.name, self.next_pattern_id
                    ),
                ));
            }
            self.ids.insert(rec.name, id);
        }
        self.last_id = last_id;
        Ok(())
    }

    fn read_patterns(&self) -> Result<Vec<(u32, PatternRecord)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.patterns.iter() {
            let (k, v) = kv
                .into_inner()
                .map_err(|e| engine_err(&self.dir, &self.data_dir, "reading patterns", e))?;
            let name = std::str::from_utf8(&k)
                .map_err(|e| corrupt(&self.dir, format!("a pattern name is not UTF-8: {e}")))?;
            out.push(
                layout::decode_pattern(name, &v).map_err(|e| corrupt(&self.dir, e.to_string()))?,
            );
        }
        Ok(out)
    }

    /// Refuses a store older than the last id `LAST` recorded.
    fn check_last(&mut self, path: &Path) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        self.last_file
            .read_to_end(&mut buf)
            .map_err(io_err(path, "reading"))?;
        if buf.len() != 12 {
            // Never written (a fresh store, or a crash before the first
            // write reached it): nothing to check.
            return Ok(());
        }
        let (id, crc) = buf.split_at(8);
        if crc32c::crc32c(id).to_le_bytes() != crc {
            // A torn write of the 12 bytes: tell nothing.
            tracing::warn!(path = %path.display(), "checksum of LAST does not match; not checked");
            return Ok(());
        }
        let recorded = u64::from_le_bytes(id.try_into().unwrap_or([0; 8]));
        if self.last_id.is_none_or(|have| have < recorded) {
            return Err(corrupt(
                &self.dir,
                format!(
                    "checkpoint {recorded} was committed but the store's last checkpoint is {}: \
                     the store lost committed data",
                    self.last_id
                        .map_or_else(|| "none".to_owned(), |i| i.to_string())
                ),
            ));
        }
        Ok(())
    }

    /// The last complete checkpoint, or `None` for a fresh directory.
    pub fn load(&self) -> Result<Option<Loaded>, StoreError> {
        let Some(id) = self.last_id else {
            return Ok(None);
        };
        let dir = &self.dir;
        let pipeline = self
            .get_meta(layout::META_PIPELINE)?
            .ok_or_else(|| corrupt(dir, "meta has no pipeline"))?;
        let pipeline = std::str::from_utf8(&pipeline)
            .map_err(|e| corrupt(dir, format!("the pipeline name is not UTF-8: {e}")))?
            .to_owned();
        let source = self
            .get_meta(layout::META_SOURCE)?
            .ok_or_else(|| corrupt(dir, "meta has no source position"))?
            .to_vec();
        let patterns = self.read_patterns()?.into_iter().map(|(_, p)| p).collect();
        let mut sinks = Vec::new();
        for kv in self.sinks.iter() {
            let (k, v) = kv
                .into_inner()
                .map_err(|e| engine_err(dir, &self.data_dir, "reading sinks", e))?;
            let name = std::str::from_utf8(&k)
                .map_err(|e| corrupt(dir, format!("a sink name is not UTF-8: {e}")))?;
            sinks.push((name.to_owned(), v.to_vec()));
        }
        Ok(Some(Loaded {
            id,
            pipeline,
            format_version: FORMAT_VERSION,
            patterns,
            source,
            sinks,
        }))
    }

    /// Calls `f(key_group, key, state)` for every key state of `pattern`
    /// whose key group is in `groups`, in (key group, key) order, streaming
    /// from the store. Returns how many keys were visited. An error from `f`
    /// stops the scan ([`StoreError::Restore`]).
    pub fn for_each_key(
        &self,
        pattern: &str,
        groups: Range<u32>,
        mut f: impl FnMut(u32, &[u8], &[u8]) -> Result<(), super::KeyError>,
    ) -> Result<u64, StoreError> {
        let Some(&id) = self.ids.get(pattern) else {
            return Err(invalid(
                &self.dir,
                format!("no pattern {pattern:?} in the last checkpoint"),
            ));
        };
        if groups.end > KEY_GROUPS {
            return Err(invalid(
                &self.dir,
                format!(
                    "key groups {groups:?} go past the last group {}",
                    KEY_GROUPS - 1
                ),
            ));
        }
        if groups.is_empty() {
            return Ok(0);
        }
        let from = layout::state_key_bound(id, groups.start);
        let to = layout::state_key_bound(id, groups.end);
        let mut n = 0;
        for kv in self.keys.range(from..to) {
            let (k, v) = kv
                .into_inner()
                .map_err(|e| engine_err(&self.dir, &self.data_dir, "reading key states", e))?;
            let (kid, group, key) = layout::split_state_key(&k)
                .filter(|&(kid, g, _)| kid == id && groups.contains(&u32::from(g)))
                .ok_or_else(|| {
                    corrupt(&self.dir, format!("a key state outside its range: {k:?}"))
                })?;
            debug_assert_eq!(kid, id);
            f(u32::from(group), key, &v).map_err(|detail| StoreError::Restore {
                path: self.dir.clone(),
                pattern: pattern.to_owned(),
                key_group: u32::from(group),
                detail: detail.to_string(),
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// Commits one checkpoint: all or nothing, durable when it returns.
    /// A write that contradicts itself or the store writes nothing
    /// ([`StoreError::Invalid`]).
    pub fn commit(&mut self, w: &CheckpointWrite<'_>) -> Result<CommitStats, StoreError> {
        let dir = self.dir.clone();
        if let Some(last) = self.last_id {
            if w.id <= last {
                return Err(invalid(
                    &dir,
                    format!("checkpoint {} is not after the last one, {last}", w.id),
                ));
            }
        }
        let dropped: HashSet<&str> = w.dropped_patterns.iter().copied().collect();
        let mut names = HashSet::new();
        for p in w.patterns {
            if !names.insert(p.name.as_str()) {
                return Err(invalid(
                    &dir,
                    format!("pattern {:?} is listed twice", p.name),
                ));
            }
            if p.fingerprint.len() > u32::MAX as usize {
                return Err(invalid(
                    &dir,
                    format!("pattern {:?}: fingerprint too long", p.name),
                ));
            }
        }
        for name in self.ids.keys() {
            if !names.contains(name.as_str()) && !dropped.contains(name.as_str()) {
                return Err(invalid(
                    &dir,
                    format!(
                        "stored pattern {name:?} is neither in the checkpoint's patterns nor dropped"
                    ),
                ));
            }
        }
        let mut sink_names = HashSet::new();
        for (name, _) in w.sinks {
            if !sink_names.insert(name.as_str()) {
                return Err(invalid(&dir, format!("sink {name:?} is listed twice")));
            }
        }

        // The ids after this commit: a dropped pattern listed again starts
        // under a new id, so its old keys and its new ones never collide.
        let mut next_id = self.next_pattern_id;
        let mut ids: HashMap<String, u32> = HashMap::with_capacity(w.patterns.len());
        for p in w.patterns {
            let id = match self.ids.get(&p.name) {
                Some(&id) if !dropped.contains(p.name.as_str()) => id,
                _ => {
                    let id = next_id;
                    next_id = next_id
                        .checked_add(1)
                        .ok_or_else(|| invalid(&dir, "pattern ids exhausted"))?;
                    id
                }
            };
            ids.insert(p.name.clone(), id);
        }

        let store_key = |pattern: &str, key_group: u32, key: &[u8]| {
            let id = *ids.get(pattern).ok_or_else(|| {
                invalid(
                    &dir,
                    format!(
                        "a key of pattern {pattern:?}, which is not in the checkpoint's patterns"
                    ),
                )
            })?;
            if key_group >= KEY_GROUPS {
                return Err(invalid(
                    &dir,
                    format!("pattern {pattern:?}: key group {key_group} is not below {KEY_GROUPS}"),
                ));
            }
            if key.len() > MAX_KEY_BYTES {
                return Err(invalid(
                    &dir,
                    format!(
                        "pattern {pattern:?}: a key of {} bytes (at most {MAX_KEY_BYTES})",
                        key.len()
                    ),
                ));
            }
            Ok(layout::state_key(id, key_group as u16, key))
        };
        // Last operation on a key wins: deletes, then upserts. One batch
        // must not name a key twice (its entries share one sequence number).
        let mut ops: BTreeMap<Vec<u8>, Option<&[u8]>> = BTreeMap::new();
        for d in w.deletes {
            ops.insert(store_key(d.pattern, d.key_group, d.key)?, None);
        }
        for u in w.upserts {
            if u.state.len() > u32::MAX as usize {
                return Err(invalid(
                    &dir,
                    format!("pattern {:?}: state too large", u.pattern),
                ));
            }
            ops.insert(store_key(u.pattern, u.key_group, u.key)?, Some(u.state));
        }

        let mut stats = CommitStats::default();
        #[cfg(test)]
        if self.fail_commit == Some(w.id) {
            return Err(StoreError::Io {
                path: dir.clone(),
                what: "writing the checkpoint",
                source: std::io::Error::other("injected write failure"),
            });
        }
        let mut batch: OwnedWriteBatch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for name in &dropped {
            let Some(&old) = self.ids.get(*name) else {
                continue;
            };
            let from = layout::state_key_bound(old, 0);
            let to = layout::state_key_bound(old, 1 << 16);
            for kv in self.keys.range(from..to) {
                let k = kv.key().map_err(|e| {
                    engine_err(&dir, &self.data_dir, "reading a dropped pattern", e)
                })?;
                batch.remove(&self.keys, k);
                stats.keys_deleted += 1;
            }
            batch.remove(&self.patterns, *name);
        }
        for (k, op) in ops {
            match op {
                Some(state) => {
                    stats.bytes_written += (k.len() + state.len()) as u64;
                    stats.keys_written += 1;
                    batch.insert(&self.keys, k, state);
                }
                None => {
                    stats.keys_deleted += 1;
                    batch.remove(&self.keys, k);
                }
            }
        }
        for p in w.patterns {
            let rec = layout::encode_pattern(ids[&p.name], p);
            stats.bytes_written += (p.name.len() + rec.len()) as u64;
            batch.insert(&self.patterns, p.name.as_str(), rec);
        }
        for kv in self.sinks.iter() {
            let k = kv
                .key()
                .map_err(|e| engine_err(&dir, &self.data_dir, "reading sinks", e))?;
            let gone = std::str::from_utf8(&k).map_or(true, |n| !sink_names.contains(n));
            if gone {
                batch.remove(&self.sinks, k);
            }
        }
        for (name, pos) in w.sinks {
            stats.bytes_written += (name.len() + pos.len()) as u64;
            batch.insert(&self.sinks, name.as_str(), pos.as_slice());
        }
        let meta: [(&str, Vec<u8>); 5] = [
            (
                layout::META_FORMAT_VERSION,
                FORMAT_VERSION.to_le_bytes().to_vec(),
            ),
            (layout::META_PIPELINE, w.pipeline.as_bytes().to_vec()),
            (layout::META_CHECKPOINT_ID, w.id.to_le_bytes().to_vec()),
            (layout::META_NEXT_PATTERN_ID, next_id.to_le_bytes().to_vec()),
            (layout::META_SOURCE, w.source.to_vec()),
        ];
        for (k, v) in meta {
            stats.bytes_written += (k.len() + v.len()) as u64;
            batch.insert(&self.meta, k, v);
        }
        batch
            .commit()
            .map_err(|e| engine_err(&dir, &self.data_dir, "committing a checkpoint", e))?;

        self.ids = ids;
        self.next_pattern_id = next_id;
        self.last_id = Some(w.id);
        self.write_last(w.id)?;
        Ok(stats)
    }

    /// Writes the key states out of fjall's journal into its table files
    /// (tests corrupt those).
    #[cfg(test)]
    pub(super) fn flush_tables(&self) {
        self.keys.rotate_memtable_and_wait().unwrap();
    }

    /// Records `id` in `LAST`, in place: 12 bytes in one sector.
    fn write_last(&mut self, id: u64) -> Result<(), StoreError> {
        let path = self.dir.join("LAST");
        let mut buf = [0u8; 12];
        buf[..8].copy_from_slice(&id.to_le_bytes());
        let crc = crc32c::crc32c(&buf[..8]);
        buf[8..].copy_from_slice(&crc.to_le_bytes());
        self.last_file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.last_file.write_all(&buf))
            .and_then(|()| self.last_file.sync_data())
            .map_err(io_err(&path, "recording the last checkpoint id"))
    }
}

/// Checks (or, in a fresh directory, writes) `FORMAT`; returns its version.
fn check_format_file(data_dir: &Path, dir: &Path) -> Result<u32, StoreError> {
    let path = dir.join("FORMAT");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let v = layout::parse_format_file(&text).map_err(|e| corrupt(&path, e.to_string()))?;
            if v > FORMAT_VERSION {
                return Err(StoreError::NewerFormat {
                    dir: data_dir.to_owned(),
                    found: v,
                    supported: FORMAT_VERSION,
                });
            }
            if v == 0 {
                return Err(corrupt(&path, "format version 0"));
            }
            Ok(v)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A fresh store holds nothing yet but our own files.
            let entries = fs::read_dir(dir).map_err(io_err(dir, "listing"))?;
            for entry in entries {
                let entry = entry.map_err(io_err(dir, "listing"))?;
                let name = entry.file_name();
                if !matches!(name.to_str(), Some("LOCK" | "FORMAT.tmp")) {
                    return Err(corrupt(
                        dir,
                        format!(
                            "it has no FORMAT file but holds {:?}: not a ferrocep checkpoint store",
                            name
                        ),
                    ));
                }
            }
            let tmp = dir.join("FORMAT.tmp");
            let mut f = File::create(&tmp).map_err(io_err(&tmp, "creating"))?;
            f.write_all(layout::format_file_text(FORMAT_VERSION).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io_err(&tmp, "writing"))?;
            fs::rename(&tmp, &path).map_err(io_err(&path, "renaming FORMAT.tmp to"))?;
            sync_dir(dir)?;
            Ok(FORMAT_VERSION)
        }
        Err(e) => Err(io_err(&path, "reading")(e)),
    }
}
