//! `run --workers N`: the engine's keys split over N threads.
//!
//! Worker `w` owns whole key groups ([`crate::engine::owner`]), as Flink
//! assigns key groups to parallel instances, so a restart with another
//! number of workers restores the same state. Every worker reads every event
//! of a batch (its time moves every watermark) and matches only its own
//! keys; a watermark between two of its events is applied where a timer or
//! waiting event of its keys falls due, which is exactly what those keys see
//! in a single engine (a test compares them on every recorded case). Worker
//! 0 runs on the pipeline's thread and alone reports input errors; the
//! others answer each command with their outputs and their next wake-up.
//! Outputs of one batch come out worker by worker: as a multiset they are a
//! single engine's, ids included.
//!
//! Reading is shared as `match` shares it: each worker reads a share of a
//! batch's lines (key, time, conditions) for all, then each matches its own
//! keys' events of every share, with every line's time. Each line is read
//! once. When the pipeline has the next batch already
//! ([`Engines::start_batch_ahead`]), the others read their shares of it
//! right after their part of this one, while this thread hands the outputs
//! on: they never wait between the two.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::engine::{
    split_shares, Applied, Change, Engine, EngineCheckpoint, EngineError, EngineStats,
    PatternCounts, PatternState, PendingPolicy, Share, WorkerPart,
};
use crate::sink::Output;
use crate::source::{Batch, Position};

/// What a worker thread is asked to do.
enum Cmd {
    Batch(Arc<Batch>, i64),
    Read(Arc<Batch>, std::ops::Range<usize>),
    Part(Arc<Batch>, WorkerPart, i64),
    Time(i64),
    End(bool),
    Checkpoint,
    CheckpointFailed,
    State(bool),
    Counts,
    Apply(Arc<Vec<Change>>, PendingPolicy),
    Drained,
    Retire(Arc<str>),
    DropPartitions(Arc<Vec<u16>>),
    HoldPartitions(Arc<Vec<u16>>, i64),
    RestorePartitions(Arc<Vec<crate::changelog::PartitionState>>),
}

impl Cmd {
    /// Whether a share read before it ([`Engines::ahead`]) is still what a
    /// share read after it would be: the patterns and partitions are the
    /// same.
    fn keeps_shares(&self) -> bool {
        matches!(
            self,
            Cmd::Batch(..)
                | Cmd::Read(..)
                | Cmd::Part(..)
                | Cmd::Time(_)
                | Cmd::Checkpoint
                | Cmd::CheckpointFailed
                | Cmd::State(_)
                | Cmd::Counts
                | Cmd::Drained
        )
    }
}

/// What it answers.
enum Reply {
    Out(Vec<Output>, Option<i64>),
    Share(Share),
    Parts(EngineCheckpoint),
    State(Vec<PatternState>),
    Counts(Vec<PatternCounts>),
    Applied(Result<Vec<Applied>, EngineError>, Vec<Output>),
    Drained(Vec<Arc<str>>),
    Restored(Result<(usize, usize), String>),
}

struct Remote {
    tx: SyncSender<Cmd>,
    rx: Receiver<Reply>,
    thread: Option<JoinHandle<()>>,
    wake: Option<i64>,
}

/// One engine, or several splitting the keys (see the module docs), behind
/// the engine's own methods.
pub struct Engines {
    local: Engine,
    remotes: Vec<Remote>,
    /// State per source partition: one engine per partition, `local` the
    /// template that reads no event ([`crate::tasks`]).
    tasks: Option<crate::tasks::Tasks>,
    /// A batch whose other workers' outputs are not taken yet
    /// ([`Engines::start_batch`]): whether each got its command.
    pending: Option<Vec<bool>>,
    /// Outputs taken from the other workers meanwhile, handed out first by
    /// the next call that hands out outputs.
    early: Vec<Output>,
    /// The next batch, whose shares the other workers were asked to read
    /// right after their part of this one ([`Engines::start_batch_ahead`]):
    /// their replies not taken yet (whether each got the command), or taken
    /// (their shares, in worker order). Dropped by anything that changes
    /// what a share holds (the patterns, the partitions).
    ahead: Option<(Arc<Batch>, Ahead)>,
}

/// The other workers' shares of the next batch ([`Engines::ahead`]).
enum Ahead {
    Asked(Vec<bool>),
    Read(Vec<Share>),
}

impl Engines {
    /// One engine on the calling thread.
    pub fn single(engine: Engine) -> Engines {
        Engines {
            local: engine,
            remotes: Vec::new(),
            tasks: None,
            pending: None,
            early: Vec::new(),
            ahead: None,
        }
    }

    /// One engine per source partition ([`crate::tasks`]), `template`
    /// answering for the patterns.
    pub fn with_tasks(template: Engine, tasks: crate::tasks::Tasks) -> Engines {
        Engines {
            local: template,
            remotes: Vec::new(),
            tasks: Some(tasks),
            pending: None,
            early: Vec::new(),
            ahead: None,
        }
    }

    /// Each task's per-pattern operator-level state of the last
    /// checkpoint (empty without tasks).
    pub fn take_partition_metas(&mut self) -> Vec<crate::tasks::TaskMeta> {
        self.tasks
            .as_mut()
            .map(crate::tasks::Tasks::take_metas)
            .unwrap_or_default()
    }

    /// `engines[w]` as worker `w` (already partitioned with
    /// [`Engine::set_partition`] and restored): the first stays on the
    /// calling thread, each other gets a thread of its own.
    pub fn start(engines: Vec<Engine>) -> std::io::Result<Engines> {
        let mut it = engines.into_iter();
        let local = it
            .next()
            .ok_or_else(|| std::io::Error::other("no engine"))?;
        let mut remotes = Vec::new();
        for (i, mut e) in it.enumerate() {
            let (tx, cmd_rx) = mpsc::sync_channel::<Cmd>(1);
            let (reply_tx, rx) = mpsc::sync_channel::<Reply>(1);
            let thread = std::thread::Builder::new()
                .name(format!("ferrocep-worker-{}", i + 1))
                .spawn(move || {
                    for cmd in cmd_rx {
                        let reply = match cmd {
                            Cmd::Batch(b, now) => {
                                let mut out = Vec::new();
                                e.on_batch(&b, now, &mut out);
                                Reply::Out(out, e.next_wake())
                            }
                            Cmd::Read(b, records) => Reply::Share(e.read_share(&b, records)),
                            Cmd::Part(b, part, now) => {
                                let mut out = Vec::new();
                                e.on_part(&b, part, now, &mut out);
                                Reply::Out(out, e.next_wake())
                            }
                            Cmd::Time(now) => {
                                let mut out = Vec::new();
                                e.on_time(now, &mut out);
                                Reply::Out(out, e.next_wake())
                            }
                            Cmd::End(flush) => {
                                let mut out = Vec::new();
                                e.on_end(flush, &mut out);
                                Reply::Out(out, e.next_wake())
                            }
                            Cmd::Checkpoint => Reply::Parts(e.checkpoint()),
                            Cmd::CheckpointFailed => {
                                e.checkpoint_failed();
                                Reply::Out(Vec::new(), e.next_wake())
                            }
                            Cmd::State(walk) => Reply::State(e.pattern_state(walk)),
                            Cmd::Counts => Reply::Counts(e.output_counts().0),
                            Cmd::Apply(changes, pending) => {
                                let mut out = Vec::new();
                                let r = e.apply(&changes, pending, &mut out);
                                Reply::Applied(r, out)
                            }
                            Cmd::Drained => Reply::Drained(e.drained()),
                            Cmd::Retire(name) => {
                                e.retire(&name);
                                Reply::Out(Vec::new(), e.next_wake())
                            }
                            Cmd::DropPartitions(parts) => {
                                e.drop_source_partitions(&|p| parts.contains(&p));
                                Reply::Out(Vec::new(), e.next_wake())
                            }
                            Cmd::HoldPartitions(parts, now) => {
                                e.hold_partitions(&parts, now);
                                Reply::Out(Vec::new(), e.next_wake())
                            }
                            Cmd::RestorePartitions(states) => {
                                Reply::Restored(restore_states(&mut e, &states))
                            }
                        };
                        if reply_tx.send(reply).is_err() {
                            return;
                        }
                    }
                })?;
            remotes.push(Remote {
                tx,
                rx,
                thread: Some(thread),
                wake: None,
            });
        }
        Ok(Engines {
            local,
            remotes,
            tasks: None,
            pending: None,
            early: Vec::new(),
            ahead: None,
        })
    }

    /// Sends `cmd` to every other worker, runs `here` on this one, then
    /// takes their replies in worker order.
    fn all(&mut self, cmd: impl Fn() -> Cmd, here: impl FnOnce(&mut Engine)) -> Vec<Reply> {
        self.settle();
        let mut sent = Vec::with_capacity(self.remotes.len());
        for r in &self.remotes {
            let c = cmd();
            if !c.keeps_shares() {
                self.ahead = None;
            }
            sent.push(r.tx.send(c).is_ok());
        }
        here(&mut self.local);
        self.replies(sent)
    }

    /// The other workers' replies, in worker order (`sent`: whether each
    /// got its command).
    fn replies(&mut self, sent: Vec<bool>) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(self.remotes.len());
        for (r, ok) in self.remotes.iter_mut().zip(sent) {
            // A worker that died (it panicked) leaves its keys unserved:
            // that is a bug, and it is loud.
            let reply = ok.then(|| r.rx.recv().ok()).flatten();
            if !matches!(reply, Some(Reply::Out(..) | Reply::Share(_))) {
                // Its next wake-up is not in the reply: unknown until the
                // next one that has it ([`Engines::on_time`] asks).
                r.wake = Some(i64::MIN);
            }
            match reply {
                Some(reply) => replies.push(reply),
                None => panic!("a worker thread of the engine died"),
            }
        }
        replies
    }

    /// Each worker reads its share of `batch`; their shares split by owner.
    fn read_shares(&mut self, batch: &Arc<Batch>, workers: usize) -> Option<Vec<WorkerPart>> {
        self.settle_outputs();
        let n = batch.len();
        let range = |w: usize| w * n / workers..(w + 1) * n / workers;
        // Asked already, right after their part of the batch before?
        let ahead = match self.ahead.take() {
            Some((b, a)) if Arc::ptr_eq(&b, batch) => Some(a),
            Some(other) => {
                // Another batch than the one read ahead: its replies still
                // come first, and are dropped.
                self.ahead = Some(other);
                self.settle();
                self.ahead = None;
                None
            }
            None => None,
        };
        let ahead = ahead.unwrap_or_else(|| {
            let mut sent = Vec::with_capacity(self.remotes.len());
            for (i, r) in self.remotes.iter().enumerate() {
                sent.push(r.tx.send(Cmd::Read(batch.clone(), range(i + 1))).is_ok());
            }
            Ahead::Asked(sent)
        });
        let mut shares = Vec::with_capacity(workers);
        shares.push(self.local.read_share(batch, range(0)));
        match ahead {
            Ahead::Read(theirs) => shares.extend(theirs),
            Ahead::Asked(sent) => {
                for reply in self.replies(sent) {
                    if let Reply::Share(s) = reply {
                        shares.push(s);
                    }
                }
            }
        }
        if shares.len() != workers {
            return None;
        }
        split_shares(shares, workers)
    }

    fn outputs(&mut self, replies: Vec<Reply>, out: &mut Vec<Output>) {
        for (r, reply) in self.remotes.iter_mut().zip(replies) {
            if let Reply::Out(o, wake) = reply {
                out.extend(o);
                r.wake = wake;
            }
        }
    }

    /// Takes the other workers' outputs of a batch still pending (see
    /// [`Engines::start_batch`]) into [`Engines::early`].
    fn settle(&mut self) {
        self.settle_outputs();
        match self.ahead.take() {
            Some((b, Ahead::Asked(sent))) => {
                let shares = self
                    .replies(sent)
                    .into_iter()
                    .filter_map(|r| match r {
                        Reply::Share(s) => Some(s),
                        _ => None,
                    })
                    .collect();
                self.ahead = Some((b, Ahead::Read(shares)));
            }
            other => self.ahead = other,
        }
    }

    /// Takes the other workers' outputs of a batch still pending, leaving
    /// their reading of the next one ([`Engines::ahead`]) under way.
    fn settle_outputs(&mut self) {
        if let Some(sent) = self.pending.take() {
            let replies = self.replies(sent);
            let mut early = std::mem::take(&mut self.early);
            self.outputs(replies, &mut early);
            self.early = early;
        }
    }

    /// Appends the outputs taken before this call, then those still pending.
    fn settle_into(&mut self, out: &mut Vec<Output>) {
        self.settle();
        out.append(&mut self.early);
    }

    /// [`Engine::on_batch`] on every worker (with several, each reads a
    /// share of the batch for all; see the module docs).
    pub fn on_batch(&mut self, batch: &Arc<Batch>, now: i64, out: &mut Vec<Output>) {
        self.start_batch(batch, now, out);
        self.finish_batch(out);
    }

    /// [`Engines::on_batch`] in two steps: this one appends this thread's
    /// worker's outputs and may leave the other workers matching;
    /// [`Engines::finish_batch`] appends theirs (the same outputs in the
    /// same order as `on_batch`). In between, the caller can hand the first
    /// ones on while the others work. Call `finish_batch` before anything
    /// else: a checkpoint in between would miss the pending outputs (the
    /// other methods take them, but hand them out only with their own).
    pub fn start_batch(&mut self, batch: &Arc<Batch>, now: i64, out: &mut Vec<Output>) {
        self.start_batch_ahead(batch, now, out, None);
    }

    /// [`Engines::start_batch`] knowing the batch after it (`next`): the
    /// other workers read their shares of it right after their part of
    /// this one, while this thread hands the outputs on, so that the
    /// workers meet once per batch. Whatever comes in between (timers,
    /// checkpoints, pattern changes) is the same as without.
    pub fn start_batch_ahead(
        &mut self,
        batch: &Arc<Batch>,
        now: i64,
        out: &mut Vec<Output>,
        next: Option<&Arc<Batch>>,
    ) {
        if let Some(t) = &mut self.tasks {
            return t.on_batch(batch, now, out);
        }
        self.settle_outputs();
        out.append(&mut self.early);
        let workers = self.remotes.len() + 1;
        if workers > 1 && batch.len() >= 4 * workers {
            if let Some(parts) = self.read_shares(batch, workers) {
                let mut parts = parts.into_iter();
                let mine = parts.next();
                let mut sent = Vec::with_capacity(self.remotes.len());
                for (r, part) in self.remotes.iter().zip(parts) {
                    sent.push(r.tx.send(Cmd::Part(batch.clone(), part, now)).is_ok());
                }
                if let Some(next) = next.filter(|n| n.len() >= 4 * workers) {
                    let n = next.len();
                    let mut asked = Vec::with_capacity(self.remotes.len());
                    for ((i, r), ok) in self.remotes.iter().enumerate().zip(&sent) {
                        let range = (i + 1) * n / workers..(i + 2) * n / workers;
                        asked.push(*ok && r.tx.send(Cmd::Read(next.clone(), range)).is_ok());
                    }
                    self.ahead = Some((next.clone(), Ahead::Asked(asked)));
                }
                if let Some(mine) = mine {
                    self.local.on_part(batch, mine, now, out);
                }
                self.pending = Some(sent);
                return;
            }
        }
        let replies = self.all(
            || Cmd::Batch(batch.clone(), now),
            |e| e.on_batch(batch, now, out),
        );
        self.outputs(replies, out);
    }

    /// The rest of a batch begun with [`Engines::start_batch`]: the other
    /// workers' outputs.
    pub fn finish_batch(&mut self, out: &mut Vec<Output>) {
        self.settle_outputs();
        out.append(&mut self.early);
    }

    /// [`Engine::on_time`] on every worker.
    pub fn on_time(&mut self, now: i64, out: &mut Vec<Output>) {
        // Not the shares read ahead: waiting for them here would hold this
        // thread while the other workers read.
        self.settle_outputs();
        out.append(&mut self.early);
        if let Some(t) = &mut self.tasks {
            return t.on_time(now, out);
        }
        // The pipeline calls this between any two batches: a worker with no
        // timer due and no idle watermark to move (the same for all: every
        // worker sees every batch at the same time) has nothing to do, and
        // is not woken for it.
        let idle = self.local.idle_watermark_shift(now).is_some();
        if self.remotes.is_empty()
            || !idle && self.remotes.iter().all(|r| r.wake.is_none_or(|w| w > now))
        {
            return self.local.on_time(now, out);
        }
        let replies = self.all(|| Cmd::Time(now), |e| e.on_time(now, out));
        self.outputs(replies, out);
    }

    /// [`Engine::on_end`] on every worker.
    pub fn on_end(&mut self, flush: bool, out: &mut Vec<Output>) {
        self.settle_into(out);
        if let Some(t) = &mut self.tasks {
            return t.on_end(flush, out);
        }
        let replies = self.all(|| Cmd::End(flush), |e| e.on_end(flush, out));
        self.outputs(replies, out);
    }

    /// [`Engine::on_rejected`] (worker 0 reports input errors).
    pub fn on_rejected(&mut self, pos: Position, raw: &str, reason: &str, out: &mut Vec<Output>) {
        self.settle_into(out);
        self.local.on_rejected(pos, raw, reason, out);
    }

    /// The earliest [`Engine::next_wake`] of the workers.
    pub fn next_wake(&self) -> Option<i64> {
        if let Some(t) = &self.tasks {
            return t.next_wake();
        }
        self.remotes
            .iter()
            .map(|r| r.wake)
            .fold(self.local.next_wake(), |a, b| match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
    }

    /// [`Engine::checkpoint`] of every worker, merged: each pattern's keys of
    /// all workers, its operator-level state from worker 0 (the workers'
    /// times are the same; restoring raises each arrival counter past the
    /// restored keys').
    pub fn checkpoint(&mut self) -> EngineCheckpoint {
        if let Some(t) = &mut self.tasks {
            return t.checkpoint(&mut self.local);
        }
        let mut mine = EngineCheckpoint::default();
        let replies = self.all(|| Cmd::Checkpoint, |e| mine = e.checkpoint());
        for reply in replies {
            if let Reply::Parts(parts) = reply {
                // The workers change patterns in lockstep: the same versions
                // in the same order.
                for (m, p) in mine.parts.iter_mut().zip(parts.parts) {
                    m.upserts.extend(p.upserts);
                    m.deletes.extend(p.deletes);
                    m.full |= p.full;
                }
            }
        }
        mine
    }

    /// [`Engine::checkpoint_failed`] on every worker.
    pub fn checkpoint_failed(&mut self) {
        if let Some(t) = &mut self.tasks {
            return t.checkpoint_failed(&mut self.local);
        }
        let replies = self.all(|| Cmd::CheckpointFailed, |e| e.checkpoint_failed());
        let mut none = Vec::new();
        self.outputs(replies, &mut none);
    }

    /// [`Engine::pattern_state`] summed over the workers (the watermark: the
    /// furthest, as every worker reads every event).
    pub fn pattern_state(&mut self, walk: bool) -> Vec<PatternState> {
        if let Some(t) = &self.tasks {
            return t.pattern_state(&self.local, walk);
        }
        let mut mine = Vec::new();
        let replies = self.all(|| Cmd::State(walk), |e| mine = e.pattern_state(walk));
        for reply in replies {
            if let Reply::State(s) = reply {
                for (m, o) in mine.iter_mut().zip(s) {
                    m.pending = match (m.pending, o.pending) {
                        (Some(a), Some(b)) => Some(a + b),
                        _ => None,
                    };
                    m.keys += o.keys;
                    m.time = m.time.max(o.time);
                }
            }
        }
        mine
    }

    /// Outputs per pattern and kind, summed over the workers, and the input
    /// errors no pattern could read.
    pub fn output_counts(&mut self) -> (Vec<PatternCounts>, u64) {
        if let Some(t) = &self.tasks {
            return t.output_counts(&self.local);
        }
        let (mut mine, rejected) = self.local.output_counts();
        let replies = self.all(|| Cmd::Counts, |_| {});
        for reply in replies {
            if let Reply::Counts(c) = reply {
                for (m, o) in mine.iter_mut().zip(c) {
                    for (a, b) in m.1.iter_mut().zip(o.1) {
                        *a += b;
                    }
                }
            }
        }
        (mine, rejected)
    }

    /// [`Engine::apply`] on every worker, at the same point of the input.
    /// The workers hold the same versions, so they all succeed or all fail;
    /// the dropped counts are summed.
    pub fn apply(
        &mut self,
        changes: Vec<Change>,
        pending: PendingPolicy,
        out: &mut Vec<Output>,
    ) -> Result<Vec<Applied>, EngineError> {
        self.settle_into(out);
        if let Some(t) = &mut self.tasks {
            return t.apply(&mut self.local, changes, pending, out);
        }
        let changes = Arc::new(changes);
        let mut mine = Ok(Vec::new());
        let replies = self.all(
            || Cmd::Apply(changes.clone(), pending),
            |e| mine = e.apply(&changes, pending, out),
        );
        for reply in replies {
            if let Reply::Applied(r, o) = reply {
                out.extend(o);
                if let (Ok(m), Ok(r)) = (mine.as_mut(), r) {
                    for (a, b) in m.iter_mut().zip(r) {
                        a.dropped += b.dropped;
                        a.draining |= b.draining;
                    }
                }
            }
        }
        mine
    }

    /// Retires the draining versions that have drained on every worker;
    /// returns each one's name and version.
    pub fn retire_drained(&mut self) -> Vec<(Arc<str>, u32)> {
        if let Some(t) = &mut self.tasks {
            return t.retire_drained(&mut self.local);
        }
        let mut common = self.local.drained();
        if common.is_empty() {
            return Vec::new();
        }
        let replies = self.all(|| Cmd::Drained, |_| {});
        for reply in replies {
            if let Reply::Drained(d) = reply {
                common.retain(|n| d.contains(n));
            }
        }
        let mut gone = Vec::new();
        for name in common {
            let replies = self.all(
                || Cmd::Retire(name.clone()),
                |e| gone.extend(e.retire(&name)),
            );
            let mut none = Vec::new();
            self.outputs(replies, &mut none);
        }
        gone
    }

    /// [`Engine::update_validator`] (worker 0's patterns are everyone's).
    pub fn update_validator(&self, sets: &crate::engine::ValidatorSets) {
        self.local.update_validator(sets);
    }

    /// Events taken (worker 0 reads them all) and outputs of each kind.
    pub fn stats(&mut self) -> EngineStats {
        let events = match &self.tasks {
            Some(t) => t.events(),
            None => self.local.stats().events,
        };
        let (per, rejected) = self.output_counts();
        let mut outputs = [0; 4];
        for (_, c) in per {
            for (o, n) in outputs.iter_mut().zip(c) {
                *o += n;
            }
        }
        outputs[crate::sink::Kind::Error as usize] += rejected;
        EngineStats { events, outputs }
    }
}

/// [`Engine::restore_partition_keys`] of each partition's state: (keys
/// restored, keys left out), or the first error.
fn restore_states(
    e: &mut Engine,
    states: &[crate::changelog::PartitionState],
) -> Result<(usize, usize), String> {
    let (mut restored, mut skipped) = (0, 0);
    for s in states {
        let (r, k) = e
            .restore_partition_keys(&s.patterns(), &s.keys)
            .map_err(|e| format!("partition {}: {e}", s.partition))?;
        restored += r;
        skipped += k;
    }
    Ok((restored, skipped))
}

impl Engines {
    /// [`Engine::drop_source_partitions`] of `parts` on every worker.
    pub fn drop_source_partitions(&mut self, parts: &[u16]) {
        if let Some(t) = &mut self.tasks {
            return t.drop_partitions(parts);
        }
        let parts = Arc::new(parts.to_vec());
        let replies = self.all(
            || Cmd::DropPartitions(parts.clone()),
            |e| {
                e.drop_source_partitions(&|p| parts.contains(&p));
            },
        );
        let mut none = Vec::new();
        self.outputs(replies, &mut none);
    }

    /// [`Engine::hold_partitions`] on every worker.
    pub fn hold_partitions(&mut self, parts: &[u16], now: i64) {
        if self.tasks.is_some() {
            return; // a new task's time starts with its partition
        }
        let shared = Arc::new(parts.to_vec());
        let replies = self.all(
            || Cmd::HoldPartitions(shared.clone(), now),
            |e| e.hold_partitions(parts, now),
        );
        let mut none = Vec::new();
        self.outputs(replies, &mut none);
    }

    /// Restores the keys of partitions gained (each key on the worker that
    /// owns it): (keys restored, keys of patterns not running as saved).
    pub fn restore_partitions(
        &mut self,
        states: Vec<crate::changelog::PartitionState>,
    ) -> Result<(usize, usize), String> {
        if let Some(t) = &mut self.tasks {
            return t.restore(states);
        }
        let states = Arc::new(states);
        let mut mine = Ok((0, 0));
        let replies = self.all(
            || Cmd::RestorePartitions(states.clone()),
            |e| mine = restore_states(e, &states),
        );
        let (mut restored, mut skipped) = mine?;
        for reply in replies {
            if let Reply::Restored(r) = reply {
                let (a, b) = r?;
                restored += a;
                // Every worker sees the same patterns: counted once.
                skipped = skipped.max(b);
            }
        }
        Ok((restored, skipped))
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        for r in self.remotes.drain(..) {
            let Remote { tx, rx, thread, .. } = r;
            // Without their replies' receiver too, a worker still answering
            // (a share read ahead) would wait for it forever.
            drop(tx);
            drop(rx);
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
    }
}
