//! State per source partition as Kafka Streams keeps it: one engine (a
//! "task") per partition of a kafka source that scales out, each with its
//! own operators, watermarks and quiet-stream rule, so that a partition
//! moved to another instance takes its own time along (see
//! [`crate::changelog`]). The watermark of a partition is its own: a
//! partition behind the others, or one restored after a takeover, never has
//! its events judged late by another partition's time.
//!
//! A template engine that reads no event holds the patterns (what the
//! validator, `/patterns` and the checkpoint's pattern records see); every
//! pattern change is applied to it and to every task, and replayed on each
//! task created later, so that all run the same versions in the same order.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::{
    Applied, Change, Engine, EngineCheckpoint, EngineError, PatternCounts, PatternState,
    PendingPolicy,
};
use crate::sink::Output;
use crate::source::{kafka_partition, Batch};

/// Makes a fresh engine of the patterns as the run started.
pub type MakeEngine = Box<dyn Fn() -> Result<Engine, EngineError> + Send>;

/// The tasks of one instance (see the module docs).
pub struct Tasks {
    make: MakeEngine,
    /// Pattern changes since the start, replayed on new tasks.
    changes: Vec<(Arc<Vec<Change>>, PendingPolicy)>,
    tasks: BTreeMap<u16, Engine>,
    /// Output counts and events of tasks dropped (counters only go up).
    gone_counts: Vec<PatternCounts>,
    gone_events: u64,
    /// Each task's meta of the last checkpoint.
    metas: Vec<TaskMeta>,
    /// Each partition's outputs by kind, over every run (restored from the
    /// changelog): a transactional sink's count of what it committed.
    outputs: BTreeMap<u16, [u64; 4]>,
}

/// What a checkpoint's meta record holds of one task beyond its keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMeta {
    /// The source partition.
    pub partition: u16,
    /// Each pattern's operator-level state.
    pub patterns: crate::changelog::PatternMetas,
    /// The partition's outputs by kind ([`crate::sink::Kind`] order) over
    /// every run, up to the checkpoint.
    pub outputs: [u64; 4],
}

impl Tasks {
    /// Tasks made by `make`; `changes` were applied to the template (the
    /// engine that answers for the patterns, passed to the methods that
    /// need it) after `make`'s patterns.
    pub fn new(make: MakeEngine, changes: Vec<Change>) -> Tasks {
        let changes = if changes.is_empty() {
            Vec::new()
        } else {
            vec![(Arc::new(changes), PendingPolicy::Drain)]
        };
        Tasks {
            make,
            changes,
            tasks: BTreeMap::new(),
            gone_counts: Vec::new(),
            gone_events: 0,
            metas: Vec::new(),
            outputs: BTreeMap::new(),
        }
    }

    /// Tags `out[from..]`, made by partition `p`'s task, with `p` and
    /// counts them.
    fn made(outputs: &mut BTreeMap<u16, [u64; 4]>, p: u16, out: &mut [Output], from: usize) {
        let Some(made) = out.get_mut(from..).filter(|m| !m.is_empty()) else {
            return;
        };
        let counts = outputs.entry(p).or_default();
        for o in made {
            o.set_source_partition(p);
            counts[o.kind as usize] += 1;
        }
    }

    /// A new task: the patterns as they run now.
    fn fresh(&self) -> Result<Engine, String> {
        let mut e = (self.make)().map_err(|e| e.to_string())?;
        e.set_partition_tags(true);
        let mut none = Vec::new();
        for (c, pending) in &self.changes {
            e.apply(c, *pending, &mut none)
                .map_err(|e| format!("replaying a pattern change: {e}"))?;
        }
        Ok(e)
    }

    fn task(&mut self, p: u16) -> &mut Engine {
        if !self.tasks.contains_key(&p) {
            let e = match self.fresh() {
                Ok(mut e) => {
                    e.enable_checkpoints(true);
                    e
                }
                Err(err) => {
                    // The template's patterns did build: a bug if not.
                    tracing::error!(partition = p, error = %err, "cannot make the partition's engine");
                    let mut e = Engine::new(&[], Default::default())
                        .unwrap_or_else(|_| unreachable!("an engine without patterns"));
                    e.enable_checkpoints(true);
                    e
                }
            };
            self.tasks.insert(p, e);
        }
        // Inserted just above when missing.
        self.tasks.get_mut(&p).unwrap_or_else(|| unreachable!())
    }

    /// [`Engine::on_batch`]: each partition's events to its task.
    pub fn on_batch(&mut self, batch: &Batch, now: i64, out: &mut Vec<Output>) {
        let mut parts: BTreeMap<u16, Batch> = BTreeMap::new();
        for r in &batch.records {
            parts
                .entry(kafka_partition(r.pos))
                .or_insert_with(|| Batch::with_capacity(batch.text.len()))
                .push(r.pos, batch.bytes(r));
        }
        for (p, b) in parts {
            let from = out.len();
            self.task(p).on_batch(&b, now, out);
            Self::made(&mut self.outputs, p, out, from);
        }
    }

    /// [`Engine::on_time`] of every task.
    pub fn on_time(&mut self, now: i64, out: &mut Vec<Output>) {
        for (&p, e) in self.tasks.iter_mut() {
            let from = out.len();
            e.on_time(now, out);
            Self::made(&mut self.outputs, p, out, from);
        }
    }

    /// [`Engine::on_end`] of every task.
    pub fn on_end(&mut self, flush: bool, out: &mut Vec<Output>) {
        for (&p, e) in self.tasks.iter_mut() {
            let from = out.len();
            e.on_end(flush, out);
            Self::made(&mut self.outputs, p, out, from);
        }
    }

    /// The earliest wake-up of the tasks.
    pub fn next_wake(&self) -> Option<i64> {
        self.tasks.values().filter_map(Engine::next_wake).min()
    }

    /// The template's checkpoint (the patterns) with every task's keys; each
    /// task's operator-level state is kept for [`Tasks::take_metas`].
    pub fn checkpoint(&mut self, template: &mut Engine) -> EngineCheckpoint {
        let mut all = template.checkpoint();
        self.metas.clear();
        for (&p, e) in self.tasks.iter_mut() {
            let c = e.checkpoint();
            let mut metas = Vec::with_capacity(c.parts.len());
            for (m, part) in all.parts.iter_mut().zip(c.parts) {
                metas.push((part.name.to_string(), part.meta));
                m.upserts.extend(part.upserts);
                m.deletes.extend(part.deletes);
                m.full |= part.full;
            }
            self.metas.push(TaskMeta {
                partition: p,
                patterns: metas,
                outputs: self.outputs.get(&p).copied().unwrap_or_default(),
            });
            for r in c.retired {
                if !all.retired.contains(&r) {
                    all.retired.push(r);
                }
            }
        }
        all
    }

    /// Each task's (store name, operator-level state) of the last
    /// checkpoint.
    pub fn take_metas(&mut self) -> Vec<TaskMeta> {
        std::mem::take(&mut self.metas)
    }

    /// [`Engine::checkpoint_failed`] of the template and every task.
    pub fn checkpoint_failed(&mut self, template: &mut Engine) {
        template.checkpoint_failed();
        for e in self.tasks.values_mut() {
            e.checkpoint_failed();
        }
    }

    /// The template's patterns with the tasks' keys and pending matches
    /// summed, and the furthest time.
    pub fn pattern_state(&self, template: &Engine, walk: bool) -> Vec<PatternState> {
        let mut mine = template.pattern_state(walk);
        for e in self.tasks.values() {
            for (m, o) in mine.iter_mut().zip(e.pattern_state(walk)) {
                m.pending = match (m.pending, o.pending) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                };
                m.keys += o.keys;
                m.time = m.time.max(o.time);
            }
        }
        mine
    }

    /// Outputs per pattern and kind over every task, those dropped
    /// included, and the input errors.
    pub fn output_counts(&self, template: &Engine) -> (Vec<PatternCounts>, u64) {
        let (mut mine, rejected) = template.output_counts();
        let others = self
            .tasks
            .values()
            .flat_map(|e| e.output_counts().0)
            .chain(self.gone_counts.iter().cloned());
        for (name, c) in others {
            match mine.iter_mut().find(|(n, _)| *n == name) {
                Some((_, m)) => {
                    for (a, b) in m.iter_mut().zip(c) {
                        *a += b;
                    }
                }
                None => mine.push((name, c)),
            }
        }
        (mine, rejected)
    }

    /// Events taken by every task, those dropped included.
    pub fn events(&self) -> u64 {
        self.gone_events + self.tasks.values().map(|e| e.stats().events).sum::<u64>()
    }

    /// [`Engine::apply`] to the template and every task (and to the tasks
    /// made later).
    pub fn apply(
        &mut self,
        template: &mut Engine,
        changes: Vec<Change>,
        pending: PendingPolicy,
        out: &mut Vec<Output>,
    ) -> Result<Vec<Applied>, EngineError> {
        let mut applied = template.apply(&changes, pending, out)?;
        for (&p, e) in self.tasks.iter_mut() {
            // The template took them: the tasks, with the same versions, do.
            let from = out.len();
            let r = e.apply(&changes, pending, out);
            Self::made(&mut self.outputs, p, out, from);
            if let Ok(r) = r {
                for (a, b) in applied.iter_mut().zip(r) {
                    a.dropped += b.dropped;
                    a.draining |= b.draining;
                }
            }
        }
        self.changes.push((Arc::new(changes), pending));
        Ok(applied)
    }

    /// Retires the draining versions drained in every task.
    pub fn retire_drained(&mut self, template: &mut Engine) -> Vec<(Arc<str>, u32)> {
        let mut common = template.drained();
        for e in self.tasks.values() {
            let d = e.drained();
            common.retain(|n| d.contains(n));
        }
        let mut gone = Vec::new();
        for name in common {
            gone.extend(template.retire(&name));
            for e in self.tasks.values_mut() {
                e.retire(&name);
            }
        }
        gone
    }

    /// Drops the tasks of `parts` (revoked, checkpointed).
    pub fn drop_partitions(&mut self, parts: &[u16]) {
        for p in parts {
            self.outputs.remove(p);
            if let Some(e) = self.tasks.remove(p) {
                self.gone_events += e.stats().events;
                self.gone_counts.extend(e.output_counts().0);
            }
        }
    }

    /// New tasks for partitions gained, each restored from its changelog
    /// state (operator-level state, then keys, of the patterns that run as
    /// saved): (keys restored, keys left out).
    pub fn restore(
        &mut self,
        states: Vec<crate::changelog::PartitionState>,
    ) -> Result<(usize, usize), String> {
        let (mut restored, mut skipped) = (0, 0);
        for s in states {
            let mut e = self.fresh()?;
            let patterns = s.patterns();
            let running = e.fingerprint_of_stores();
            let ok = |name: &str| {
                running.iter().any(|(n, f)| {
                    **n == *name && patterns.iter().any(|(pn, pf)| pn == name && pf == f)
                })
            };
            if s.meta.is_some() {
                e.enable_checkpoints(false);
                for (name, meta) in s.metas() {
                    if ok(&name) {
                        e.restore_meta(&name, &meta)
                            .map_err(|err| format!("partition {}: {err}", s.partition))?;
                    }
                }
            } else {
                e.enable_checkpoints(true);
            }
            let (r, k) = e
                .restore_partition_keys(&patterns, &s.keys)
                .map_err(|err| format!("partition {}: {err}", s.partition))?;
            restored += r;
            skipped += k;
            let outputs = s.meta.as_ref().map(|m| m.outputs).unwrap_or_default();
            self.outputs.insert(s.partition, outputs);
            if let Some(old) = self.tasks.insert(s.partition, e) {
                self.gone_events += old.stats().events;
                self.gone_counts.extend(old.output_counts().0);
            }
        }
        Ok((restored, skipped))
    }
}
