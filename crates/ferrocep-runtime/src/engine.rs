//! The engine of `ferrocep run`: every pattern's operator over the events of
//! one source, the watermarks (Flink's, plus the quiet-stream rule of
//! `pipeline-spec.md` section 5), and the outputs with their ids.
//!
//! Patterns that share their key and time field form a group that reads
//! each event once ([`SpecSet`]); each pattern has its own operator, window,
//! out-of-orderness and watermark. Event time is driven exactly as the
//! sequential `match` drives it: before each event the watermark that
//! preceded it in the source, after each batch the watermark that follows
//! it. Processing-time patterns stamp a batch with the clock when it arrives
//! and fire their timers when the clock reaches them.
//!
//! Quiet stream: with `idle_timeout`, once no event has arrived for that long
//! the watermark of every event-time pattern moves with the clock:
//! `max(w, w_last + (now - t_last) - idle_timeout)`, where `t_last` is the
//! clock time of the last event and `w_last` the pattern's watermark then.
//! [`Engine::next_wake`] says when the next timer falls due under that rule,
//! so the caller can sleep exactly until then.
//!
//! Output ids: every event carries its source position (16 hex digits in
//! front of its stored text, cut off when it is printed). An output's id is
//! `PATTERN:KIND:FIRST-HASH`, where `FIRST` is the position of its first
//! event and `HASH` 16 hex digits of the XXH3 hash of its kind, pattern and
//! every (stage, position) pair of its events. The same events in the same
//! stages give the same id in every run over the same input; anything else
//! gives another. A late event's id is `PATTERN:late:POS`, an input error's
//! `PATTERN:error:POS` (`-:error:POS` when no pattern could read it).

use std::sync::Arc;
use std::time::Duration;

use ferrocep_core::event::Value;
use ferrocep_core::operator::{CepOperator, TimeDomain};
use ferrocep_core::output::{MatchRef, OutputSink};
use ferrocep_core::pattern::MatchFailure;
use ferrocep_core::spec::{Conditions, Format, JsonEvent, Spec, SpecSet, TextBlock};
use ferrocep_core::time::{Timestamp, Watermark, MAX_WATERMARK, MIN_WATERMARK};
use ferrocep_core::Nfa;
use xxhash_rust::xxh3::xxh3_64;

use crate::key::Key;
use crate::matcher::{max_of, watermark};
use crate::output::{write_events_after, write_json_str, write_key};
use crate::sink::{Kind, Output};
use crate::source::{kafka_partition, Batch, Position};

/// Width of the position in front of each event's stored text.
const POS_HEX: usize = 16;

/// A pattern as the engine runs it: one version of a named pattern.
struct PatternOp {
    name: Arc<str>,
    /// 1 as first run; each replacement adds one.
    version: u32,
    /// Its identity in checkpoints ([`store_name`]).
    store_name: Arc<str>,
    /// The spec's text and format, saved with checkpoints so that a restart
    /// runs the same patterns whatever the config says by then.
    text: Option<(Arc<str>, Format)>,
    op: CepOperator<Key, JsonEvent>,
    ooo: i64,
    event_time: bool,
    /// The largest timestamp whose watermark the operator has.
    applied: Option<i64>,
    /// The operator's watermark when the last event arrived (idle rule).
    w_last: i64,
    /// Per kind, an output line up to its id's own part:
    /// `{"kind":"KIND","pattern":"NAME","id":"NAME:KIND:`.
    heads: [Box<[u8]>; 4],
    /// Per kind, the id up to its own part: `NAME:KIND:`.
    ids: [Box<str>; 4],
    /// Outputs of each kind so far, in [`Kind::ALL`] order.
    counts: [u64; 4],
    /// Reused by [`RunSink`].
    scratch: Vec<u8>,
    /// [`fingerprint`] of its spec.
    fingerprint: String,
    /// The next checkpoint writes every key.
    full_next: bool,
    /// Restored events carry condition bits numbered over another set of
    /// specs: they are derived again from their text.
    remap: bool,
}

/// Patterns sharing a key and time field, and so one read of each event.
struct Group {
    set: SpecSet,
    /// The specs of `set` as given, in its order. A change only appends to
    /// them, so that the conditions of the specs before keep their numbers
    /// (events waiting in operators carry their bits in that numbering).
    originals: Vec<Spec>,
    /// Indices into [`Engine::patterns`].
    members: Vec<usize>,
    event_time: bool,
    /// The largest timestamp read so far (event time); with partition
    /// tags, the time the watermark follows (see [`PartitionTimes`]).
    max: Option<i64>,
    /// With partition tags: each source partition's largest timestamp.
    parts: PartitionTimes,
}

/// Per source partition, the largest timestamp read and the clock time of
/// its last event (partition tags, [`Engine::set_partition_tags`]). The
/// watermark follows the smallest of those maxima over the partitions that
/// are not idle (no event for `idle_timeout`), never going back: a partition
/// behind the others holds the watermark, as each Kafka partition does in
/// Flink. A partition counts from its assignment
/// ([`Engine::hold_partitions`]; without one, from its first event on): with
/// no event yet it holds the watermark until it is idle.
#[derive(Debug, Default, Clone)]
struct PartitionTimes {
    /// (partition, largest timestamp, clock time of its last event or of
    /// its assignment).
    parts: Vec<(u16, Option<i64>, i64)>,
}

impl PartitionTimes {
    /// Takes an event of `partition` at `ts`, arrived at clock `now`:
    /// the smallest maximum over the active partitions after it (`None`:
    /// one has none yet).
    fn observe(&mut self, partition: u16, ts: i64, now: i64, idle: Option<i64>) -> Option<i64> {
        match self.parts.iter_mut().find(|e| e.0 == partition) {
            Some(e) => {
                e.1 = max_of(e.1, Some(ts));
                e.2 = now;
            }
            None => self.parts.push((partition, Some(ts), now)),
        }
        let mut min = Some(i64::MAX);
        for e in &self.parts {
            if e.0 == partition || idle.is_none_or(|i| now.saturating_sub(e.2) < i) {
                min = match (min, e.1) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    _ => None,
                };
            }
        }
        min
    }

    /// Partitions assigned at clock `now`: they hold the watermark until
    /// their first event, or until idle.
    fn hold(&mut self, parts: &[u16], now: i64) {
        for &p in parts {
            if !self.parts.iter().any(|e| e.0 == p) {
                self.parts.push((p, None, now));
            }
        }
    }

    /// Forgets partitions (revoked).
    fn forget(&mut self, drop: &dyn Fn(u16) -> bool) {
        self.parts.retain(|e| !drop(e.0));
    }
}

/// An event of a batch as a group reads it: its key, time, range in
/// [`Engine::block`] and conditions; only its time (`None`, no key) for an
/// event of another worker's key.
type Part = (Key, i64, std::ops::Range<usize>, Option<Conditions>);

/// A share of a batch's lines, read by one worker for all of them
/// ([`Engine::read_share`]; see [`crate::workers`]): per group, the lines
/// read well with their time and owner, each worker's events, and the lines
/// that failed.
pub(crate) struct Share {
    groups: Vec<ShareGroup>,
    /// The share's text was valid UTF-8 (else each worker reads the batch
    /// itself, as [`Engine::on_batch`] does).
    exact: bool,
}

struct ShareGroup {
    /// Each line read well, in order: its time and the worker of its key.
    lines: Vec<(i64, u32)>,
    /// Per worker, the events of its keys, in order.
    events: Vec<Vec<SharedEvent>>,
    /// Per worker, its events' text, each with its position in front.
    texts: Vec<TextBlock>,
    /// Lines that failed: their index in the batch, and why.
    errors: Vec<(u32, String)>,
}

/// An event read by another worker: its key, conditions, and the range of
/// its text (with its position) in its worker's [`ShareGroup::texts`].
struct SharedEvent {
    key: Key,
    text: std::ops::Range<usize>,
    conds: Conditions,
}

/// One worker's part of a batch that the workers read in shares
/// ([`split_shares`]): per group, each share in batch order.
pub(crate) struct WorkerPart {
    groups: Vec<Vec<PartOfShare>>,
}

struct PartOfShare {
    /// The share's lines (every worker sees every time).
    lines: Arc<[(i64, u32)]>,
    /// This worker's events of the share.
    events: Vec<SharedEvent>,
    /// Their text.
    text: TextBlock,
    /// Its failed lines: worker 0's alone.
    errors: Vec<(u32, String)>,
}

/// Hands each of `workers` workers its part of the shares (in batch order);
/// `None` when a share was not read exactly (then each worker reads the
/// batch itself).
pub(crate) fn split_shares(shares: Vec<Share>, workers: usize) -> Option<Vec<WorkerPart>> {
    if !shares.iter().all(|s| s.exact) {
        return None;
    }
    let groups = shares.first().map_or(0, |s| s.groups.len());
    let mut parts: Vec<WorkerPart> = (0..workers)
        .map(|_| WorkerPart {
            groups: (0..groups)
                .map(|_| Vec::with_capacity(shares.len()))
                .collect(),
        })
        .collect();
    for share in shares {
        for (gi, g) in share.groups.into_iter().enumerate() {
            let lines: Arc<[(i64, u32)]> = g.lines.into();
            let mut errors = Some(g.errors);
            for ((part, events), text) in parts.iter_mut().zip(g.events).zip(g.texts) {
                if let Some(shares) = part.groups.get_mut(gi) {
                    shares.push(PartOfShare {
                        lines: lines.clone(),
                        events,
                        text,
                        errors: errors.take().unwrap_or_default(),
                    });
                }
            }
        }
    }
    Some(parts)
}

/// One version of a pattern as it stands: what `GET /patterns` and the
/// metrics show.
#[derive(Clone, Debug)]
pub struct PatternState {
    /// The pattern's name.
    pub name: Arc<str>,
    /// Its version.
    pub version: u32,
    /// Draining: an old version that takes no new starts.
    pub draining: bool,
    /// Pending partial matches (when counted: it walks every key).
    pub pending: Option<usize>,
    /// Keys with state.
    pub keys: usize,
    /// The watermark (event time) or the processing time.
    pub time: i64,
    /// [`fingerprint`] of its spec.
    pub fingerprint: String,
    /// The spec's text and format, when known.
    pub text: Option<(Arc<str>, Format)>,
}

/// A pattern to run: its name, spec, version, and the spec's text and
/// format when known (a restart runs the patterns a checkpoint saved from
/// it).
#[derive(Clone, Debug)]
pub struct PatternDef {
    /// The pattern's name.
    pub name: String,
    /// Its checked spec.
    pub spec: Spec,
    /// Its version (1 unless restored).
    pub version: u32,
    /// The spec's text and format.
    pub text: Option<(Arc<str>, Format)>,
}

impl PatternDef {
    /// Version 1 of `spec`, without its text.
    pub fn new(name: impl Into<String>, spec: Spec) -> PatternDef {
        PatternDef {
            name: name.into(),
            spec,
            version: 1,
            text: None,
        }
    }
}

/// A change of the running patterns ([`Engine::apply`]).
#[derive(Clone, Debug)]
pub enum Change {
    /// Adds a pattern, or replaces the active version of the one of that
    /// name (a spec with the same fingerprint changes nothing).
    Put(Box<PatternDef>),
    /// Removes the active version of the pattern of that name.
    Remove(String),
}

/// What becomes of a replaced or removed version's pending partial matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PendingPolicy {
    /// They stay until they complete or time out; the version takes no new
    /// starts (the default).
    #[default]
    Drain,
    /// They go to `error` at once, each with the reason, and the version is
    /// gone.
    Drop,
}

/// What a change did to one pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The pattern's name.
    pub name: String,
    /// `added`, `replaced`, `removed` or `unchanged`.
    pub action: &'static str,
    /// The active version after the change (`None`: removed).
    pub version: Option<u32>,
    /// The version replaced or removed, if any.
    pub previous: Option<u32>,
    /// The previous version drains (`false`: its pending state was dropped,
    /// or there was none to keep).
    pub draining: bool,
    /// Partial matches and waiting events sent to `error` (`?pending=drop`).
    pub dropped: u64,
}

/// A pattern's name and its outputs of each kind, in [`Kind::ALL`] order.
pub type PatternCounts = (Arc<str>, [u64; 4]);

/// A pattern set the engine cannot run, or a change it cannot apply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A pattern's spec cannot run.
    #[error("pattern '{name}': {source}")]
    Pattern {
        /// The pattern's name.
        name: String,
        /// What is wrong with its spec.
        source: Box<PatternSpecError>,
    },
    /// A pattern was placed in no group (a bug of the engine's own).
    #[error("pattern '{name}' is in no group")]
    NoGroup {
        /// The pattern's name.
        name: String,
    },
    /// A change removes a pattern that does not run.
    #[error("no pattern '{name}' runs")]
    NotRunning {
        /// The name given.
        name: String,
    },
}

/// Why a pattern's spec cannot run (see [`EngineError::Pattern`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternSpecError {
    /// The spec does not compile.
    #[error(transparent)]
    Spec(#[from] ferrocep_core::spec::SpecError),
    /// The spec cannot be read as a set of one.
    #[error(transparent)]
    Set(#[from] ferrocep_core::spec::SetError),
}

/// Names the pattern in an error of its spec.
fn in_pattern<E: Into<PatternSpecError>>(name: &str) -> impl FnOnce(E) -> EngineError + '_ {
    move |e| EngineError::Pattern {
        name: name.to_string(),
        source: Box::new(e.into()),
    }
}

/// Counts of what the engine has done, for metrics and the progress line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Events taken (each counted once, whatever the number of patterns).
    pub events: u64,
    /// Outputs of each kind, in [`Kind::ALL`] order.
    pub outputs: [u64; 4],
}

/// What the engine needs to know about the pipeline.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// The quiet-stream rule, ms (event time only).
    pub idle_timeout: Option<i64>,
}

/// Every pattern of a pipeline over one source (see the module docs).
pub struct Engine {
    patterns: Vec<PatternOp>,
    groups: Vec<Group>,
    idle_timeout: Option<i64>,
    /// Clock time of the last event (idle rule).
    t_last: Option<i64>,
    /// Field values, reused from event to event.
    scratch: Vec<Value<'static>>,
    /// Events of a batch being matched, reused; `false`: another worker's.
    routed: Vec<(Key, i64, JsonEvent, bool)>,
    /// This engine's share of the keys when several share the work:
    /// (worker, workers).
    part: Option<(u32, u32)>,
    /// The text of a batch's events with their positions.
    block: String,
    /// Events taken so far.
    events: u64,
    /// Error outputs of input no pattern could read.
    rejected: u64,
    /// Store names of versions gone since the last checkpoint.
    retired: Vec<Arc<str>>,
    /// Outputs of versions gone, by name (the counters only go up).
    retired_counts: Vec<PatternCounts>,
    /// Checkpoints are on: new versions track their changes.
    tracking: bool,
    /// Keys are (source partition, pattern key): see
    /// [`Engine::set_partition_tags`].
    tag_partitions: bool,
    /// With partition tags, the time the watermark follows after each
    /// event of a group's batch, reused.
    part_time: Vec<Option<i64>>,
}

/// What identifies the numbering of a set's conditions: XXH3-64 of their
/// sources in order. Events saved under another numbering are re-read.
fn layout_of(set: &SpecSet) -> u64 {
    let mut text = String::new();
    for c in set.condition_sources() {
        text.push_str(c);
        text.push('\0');
    }
    xxh3_64(text.as_bytes())
}

/// Whether two specs read events alike (same key and time field), so that
/// one group can read for both.
fn same_read(a: &Spec, b: &Spec) -> bool {
    a.key == b.key && a.time.as_ref().map(|t| &t.field) == b.time.as_ref().map(|t| &t.field)
}

/// A version's identity in checkpoints: the name for version 1 (as before
/// patterns could change), `NAME` + U+001F + `vN` after.
pub fn store_name(name: &str, version: u32) -> String {
    if version <= 1 {
        name.to_string()
    } else {
        format!("{name}\u{1f}v{version}")
    }
}

impl PatternOp {
    fn new(def: &PatternDef, nfa: Arc<Nfa<JsonEvent>>) -> PatternOp {
        let spec = &def.spec;
        let name = def.name.as_str();
        let event_time = spec.time.is_some();
        let domain = if event_time {
            TimeDomain::EventTime
        } else {
            TimeDomain::ProcessingTime
        };
        let ooo = spec
            .time
            .as_ref()
            .map_or(Duration::ZERO, |t| t.max_out_of_orderness);
        let mut op = CepOperator::new(nfa, domain);
        op.set_bounded_out_of_orderness(ooo);
        op.set_event_comparator(spec.event_comparator());
        let heads = heads(name, (def.version > 1).then_some(def.version));
        let ids = Kind::ALL.map(|k| format!("{name}:{}:", k.as_str()).into_boxed_str());
        PatternOp {
            name: Arc::from(name),
            version: def.version.max(1),
            store_name: Arc::from(store_name(name, def.version)),
            text: def.text.clone(),
            op,
            ooo: i64::try_from(ooo.as_millis()).unwrap_or(i64::MAX),
            event_time,
            applied: None,
            w_last: MIN_WATERMARK.as_millis(),
            heads,
            ids,
            counts: [0; 4],
            scratch: Vec::new(),
            fingerprint: fingerprint(spec),
            full_next: false,
            remap: false,
        }
    }

    fn draining(&self) -> bool {
        self.op.starts_stopped().is_some()
    }

    /// Stops new starts (from arrival number `from`, restored, or from
    /// now); from then on its outputs name its version, even version 1.
    fn drain(&mut self, from: Option<u64>) {
        match from {
            Some(f) => self.op.stop_starts_from(f),
            None => {
                self.op.stop_starts();
            }
        }
        self.heads = heads(&self.name, Some(self.version));
    }
}

/// Per kind, an output line up to its id's own part:
/// `{"kind":"KIND","pattern":"NAME"[,"version":N],"id":"NAME:KIND:`.
fn heads(name: &str, version: Option<u32>) -> [Box<[u8]>; 4] {
    Kind::ALL.map(|k| {
        let mut h = b"{\"kind\":\"".to_vec();
        h.extend_from_slice(k.as_str().as_bytes());
        h.extend_from_slice(b"\",\"pattern\":");
        let _ = write_json_str(&mut h, name);
        if let Some(v) = version {
            h.extend_from_slice(b",\"version\":");
            h.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        }
        h.extend_from_slice(b",\"id\":");
        let _ = write_json_str(&mut h, &format!("{name}:{}:", k.as_str()));
        h.pop(); // the closing quote: the id goes on
        h.into_boxed_slice()
    })
}

impl Engine {
    /// An engine for `patterns` (each with its name), version 1 of each.
    pub fn new(patterns: &[(String, Spec)], options: EngineOptions) -> Result<Engine, EngineError> {
        let defs: Vec<PatternDef> = patterns
            .iter()
            .map(|(n, s)| PatternDef::new(n.clone(), s.clone()))
            .collect();
        Engine::with_patterns(&defs, options)
    }

    /// An engine for `patterns` (names unique among the active versions; a
    /// restored draining version has the name of its successor).
    pub fn with_patterns(
        patterns: &[PatternDef],
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        // Group by key and time field, in pattern order; specs that cannot
        // share one read (two spellings of one dotted field) run apart.
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (i, def) in patterns.iter().enumerate() {
            match members.iter_mut().find(|m| {
                m.first()
                    .is_some_and(|&j| same_read(&patterns[j].spec, &def.spec))
            }) {
                Some(m) => m.push(i),
                None => members.push(vec![i]),
            }
        }
        let mut groups = Vec::with_capacity(members.len());
        for m in members {
            let specs: Vec<Spec> = m.iter().map(|&i| patterns[i].spec.clone()).collect();
            let event_time = patterns[m[0]].spec.time.is_some();
            match SpecSet::new(specs.clone()) {
                Ok(set) => groups.push(Group {
                    set,
                    originals: specs,
                    members: m,
                    event_time,
                    max: None,
                    parts: PartitionTimes::default(),
                }),
                Err(_) => {
                    for i in m {
                        let spec = patterns[i].spec.clone();
                        let set = SpecSet::new(vec![spec.clone()])
                            .map_err(in_pattern(&patterns[i].name))?;
                        groups.push(Group {
                            set,
                            originals: vec![spec],
                            members: vec![i],
                            event_time,
                            max: None,
                            parts: PartitionTimes::default(),
                        });
                    }
                }
            }
        }
        // Each pattern runs the automaton of its spec as its group's set
        // holds it: the set numbers the conditions of all its specs together,
        // and the events carry their bits in that numbering.
        let mut compiled: Vec<Option<Arc<Nfa<JsonEvent>>>> = vec![None; patterns.len()];
        for g in &groups {
            for (j, &i) in g.members.iter().enumerate() {
                let nfa = g.set.specs()[j]
                    .compile()
                    .map_err(in_pattern(&patterns[i].name))?;
                compiled[i] = Some(Arc::new(nfa));
            }
        }
        let mut ops = Vec::with_capacity(patterns.len());
        for (def, nfa) in patterns.iter().zip(compiled) {
            let nfa = nfa.ok_or_else(|| EngineError::NoGroup {
                name: def.name.clone(),
            })?;
            ops.push(PatternOp::new(def, nfa));
        }
        Ok(Engine {
            patterns: ops,
            groups,
            idle_timeout: options.idle_timeout,
            t_last: None,
            scratch: Vec::new(),
            routed: Vec::new(),
            part: None,
            block: String::new(),
            events: 0,
            rejected: 0,
            retired: Vec::new(),
            retired_counts: Vec::new(),
            tracking: false,
            tag_partitions: false,
            part_time: Vec::new(),
        })
    }

    /// Checks that every group of active patterns can read `line` (missing
    /// key or time field, bad timestamp, not a JSON object): the reason of
    /// the first that cannot. HTTP ingest rejects such events before they
    /// are logged. The sets it checks are shared: after a pattern change,
    /// [`Engine::update_validator`] makes it check the new ones.
    pub fn validator(&self) -> (Validator, ValidatorSets) {
        let sets: ValidatorSets = Arc::new(std::sync::RwLock::new(self.validator_sets()));
        let shared = sets.clone();
        let f = move |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            let mut scratch = Vec::new();
            let sets = shared.read().unwrap_or_else(|p| p.into_inner());
            for set in sets.iter() {
                set.ingest_parts(&text, &mut scratch)?;
            }
            Ok(())
        };
        (Arc::new(f), sets)
    }

    /// Points a validator's sets at the groups with an active pattern now.
    pub fn update_validator(&self, sets: &ValidatorSets) {
        let now = self.validator_sets();
        *sets.write().unwrap_or_else(|p| p.into_inner()) = now;
    }

    fn validator_sets(&self) -> Vec<SpecSet> {
        self.groups
            .iter()
            .filter(|g| g.members.iter().any(|&i| !self.patterns[i].draining()))
            .map(|g| g.set.clone())
            .collect()
    }

    /// Makes this engine worker `worker` of `workers`: it matches only the
    /// keys [`owner`] gives it, reads every event for its time, and only
    /// worker 0 reports input errors.
    pub fn set_partition(&mut self, worker: u32, workers: u32) {
        self.part = (workers > 1).then_some((worker, workers));
    }

    /// Whether this engine is worker 0 (or the only one): the one that
    /// reports what all do alike.
    pub fn is_first_worker(&self) -> bool {
        self.part.is_none_or(|(w, _)| w == 0)
    }

    /// Whether this engine matches `key` (see [`Engine::set_partition`]).
    pub fn owns(&self, key: &Key) -> bool {
        self.part.is_none_or(|(w, n)| owner(key, n) == w)
    }

    /// The names of the patterns, in config order.
    pub fn pattern_names(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| &*p.name)
    }

    /// What the engine has done so far.
    pub fn stats(&self) -> EngineStats {
        let mut outputs = [0; 4];
        for p in &self.patterns {
            for (o, c) in outputs.iter_mut().zip(p.counts) {
                *o += c;
            }
        }
        outputs[Kind::Error as usize] += self.rejected;
        EngineStats {
            events: self.events,
            outputs,
        }
    }

    /// Per version of each pattern, in order (see [`PatternState`]); with
    /// `walk`, the pending partial matches are counted (it walks every key).
    pub fn pattern_state(&self, walk: bool) -> Vec<PatternState> {
        self.patterns
            .iter()
            .map(|p| PatternState {
                name: p.name.clone(),
                version: p.version,
                draining: p.draining(),
                pending: walk.then(|| p.op.num_partial_matches()),
                keys: p.op.num_keys(),
                time: p.op.current_watermark().as_millis(),
                fingerprint: p.fingerprint.clone(),
                text: p.text.clone(),
            })
            .collect()
    }

    /// Takes a batch of events that arrived at clock time `now`; appends the
    /// outputs to `out`.
    pub fn on_batch(&mut self, batch: &Batch, now: i64, out: &mut Vec<Output>) {
        if batch.is_empty() {
            return;
        }
        self.events += batch.len() as u64;
        // Text, checked once for the whole batch: almost always valid.
        let whole = std::str::from_utf8(&batch.text).ok();
        for gi in 0..self.groups.len() {
            self.group_batch(gi, batch, whole, now, out);
        }
        self.batch_done(now);
    }

    /// What the idle rule keeps of a batch that arrived at `now`.
    fn batch_done(&mut self, now: i64) {
        self.t_last = Some(now);
        for p in &mut self.patterns {
            if p.event_time {
                p.w_last = p.op.current_watermark().as_millis();
            }
        }
    }

    /// Reads `batch.records[records]` for every worker: the first half of
    /// [`Engine::on_batch`] when the workers share the reading (see
    /// [`crate::workers`]). Changes nothing but scratch space.
    pub(crate) fn read_share(&mut self, batch: &Batch, records: std::ops::Range<usize>) -> Share {
        let workers = self.part.map_or(1, |(_, n)| n);
        let recs = batch.records.get(records.clone()).unwrap_or_default();
        let mut share = Share {
            groups: Vec::with_capacity(self.groups.len()),
            exact: true,
        };
        let span = match (recs.first(), recs.last()) {
            (Some(a), Some(b)) if a.start <= b.end => a.start as usize..b.end as usize,
            _ => 0..0,
        };
        // Text, checked once for the share: almost always valid.
        let Some(text) = batch
            .text
            .get(span.clone())
            .and_then(|t| std::str::from_utf8(t).ok())
        else {
            share.exact = false;
            return share;
        };
        for g in &self.groups {
            let mut lines = Vec::with_capacity(recs.len());
            let per = recs.len() / workers as usize + 16;
            let mut events: Vec<Vec<SharedEvent>> =
                (0..workers).map(|_| Vec::with_capacity(per)).collect();
            let mut texts: Vec<String> = (0..workers)
                .map(|_| String::with_capacity(span.len() / workers as usize + (POS_HEX + 8) * per))
                .collect();
            let mut errors = Vec::new();
            for (i, r) in recs.iter().enumerate() {
                let line = (r.start as usize)
                    .checked_sub(span.start)
                    .zip((r.end as usize).checked_sub(span.start))
                    .and_then(|(a, b)| text.get(a..b));
                let Some(line) = line else {
                    share.exact = false;
                    return share;
                };
                match g.set.ingest_parts(line, &mut self.scratch) {
                    Ok(p) => {
                        let key = Key::from_opt(p.key.as_deref());
                        let ts = p.timestamp.map_or(0, Timestamp::as_millis);
                        let w = if workers > 1 { owner(&key, workers) } else { 0 };
                        let (Some(mine), Some(block)) =
                            (events.get_mut(w as usize), texts.get_mut(w as usize))
                        else {
                            share.exact = false;
                            return share;
                        };
                        let start = block.len();
                        push_pos(block, r.pos);
                        block.push_str(p.json);
                        lines.push((ts, w));
                        mine.push(SharedEvent {
                            key,
                            text: start..block.len(),
                            conds: p.conditions,
                        });
                    }
                    Err(e) => errors.push(((records.start + i) as u32, e.to_string())),
                }
            }
            share.groups.push(ShareGroup {
                lines,
                events,
                texts: texts.into_iter().map(TextBlock::from).collect(),
                errors,
            });
        }
        share
    }

    /// The second half of [`Engine::on_batch`] when the workers share the
    /// reading: matches this worker's `part` of `batch` (see
    /// [`split_shares`]).
    pub(crate) fn on_part(
        &mut self,
        batch: &Batch,
        part: WorkerPart,
        now: i64,
        out: &mut Vec<Output>,
    ) {
        if batch.is_empty() {
            return;
        }
        self.events += batch.len() as u64;
        let me = self.part.map_or(0, |(w, _)| w);
        for (gi, shares) in part.groups.into_iter().enumerate() {
            let Some(g) = self.groups.get(gi) else {
                break;
            };
            // Errors first, in input order, as `on_batch` gives them.
            for s in &shares {
                for (ri, reason) in &s.errors {
                    let Some(r) = batch.records.get(*ri as usize) else {
                        continue;
                    };
                    let line = String::from_utf8_lossy(batch.bytes(r));
                    for &pi in &g.members {
                        let p = &mut self.patterns[pi];
                        if p.draining() {
                            // The active version of the name reports it.
                            continue;
                        }
                        p.counts[Kind::Error as usize] += 1;
                        out.push(error_output(Some(&p.name), r.pos, &line, reason));
                    }
                }
            }
            self.routed.clear();
            for s in shares {
                let mut events = s.events.into_iter();
                for &(ts, w) in s.lines.iter() {
                    if w != me {
                        // Another worker's key: only its time counts here.
                        self.routed
                            .push((Key::None, ts, JsonEvent::default(), false));
                        continue;
                    }
                    let Some(e) = events.next() else {
                        break;
                    };
                    let event = JsonEvent::in_block(&s.text, e.text, e.conds)
                        // Every range was written into the block.
                        .unwrap_or_default();
                    self.routed.push((e.key, ts, event, true));
                }
            }
            self.match_routed(gi, now, None, out);
        }
        self.batch_done(now);
    }

    fn group_batch(
        &mut self,
        gi: usize,
        batch: &Batch,
        whole: Option<&str>,
        now: i64,
        out: &mut Vec<Output>,
    ) {
        let g = &mut self.groups[gi];
        let tag_base = g.max;
        let block = &mut self.block;
        block.clear();
        let mut parts: Vec<Part> = Vec::with_capacity(batch.len());
        let part = self.part;
        let tag = self.tag_partitions;
        let idle = self.idle_timeout;
        let part_time = &mut self.part_time;
        part_time.clear();
        let errors_here = part.is_none_or(|(w, _)| w == 0);
        for r in &batch.records {
            let bytes = batch.bytes(r);
            let lossy;
            let line: &str = match whole {
                Some(t) => &t[Batch::range(r)],
                None => {
                    lossy = String::from_utf8_lossy(bytes);
                    &lossy
                }
            };
            match g.set.ingest_parts(line, &mut self.scratch) {
                Ok(p) => {
                    let key = if tag {
                        Key::tagged(kafka_partition(r.pos), p.key.as_deref())
                    } else {
                        Key::from_opt(p.key.as_deref())
                    };
                    let ts = p.timestamp.map_or(0, Timestamp::as_millis);
                    if tag && g.event_time {
                        let t = g.parts.observe(kafka_partition(r.pos), ts, now, idle);
                        g.max = max_of(g.max, t);
                        part_time.push(g.max);
                    }
                    if part.is_some_and(|(w, n)| owner(&key, n) != w) {
                        // Another worker's key: only its time counts here.
                        parts.push((Key::None, ts, 0..0, None));
                        continue;
                    }
                    let start = block.len();
                    push_pos(block, r.pos);
                    block.push_str(p.json);
                    parts.push((key, ts, start..block.len(), Some(p.conditions)));
                }
                Err(_) if !errors_here => {}
                Err(e) => {
                    for &pi in &g.members {
                        let p = &mut self.patterns[pi];
                        if p.draining() {
                            // The active version of the name reports it.
                            continue;
                        }
                        p.counts[Kind::Error as usize] += 1;
                        out.push(error_output(Some(&p.name), r.pos, line, &e.to_string()));
                    }
                }
            }
        }
        self.match_parts(gi, parts, now, tag.then_some(tag_base), out);
    }

    /// Matches a group's events of a batch, whose text is in `self.block`:
    /// each event's key, time, range in the block and conditions, or only
    /// its time for another worker's event.
    /// `tag_base`: with partition tags, the group's time before the batch.
    fn match_parts(
        &mut self,
        gi: usize,
        parts: Vec<Part>,
        now: i64,
        tag_base: Option<Option<i64>>,
        out: &mut Vec<Output>,
    ) {
        if parts.is_empty() {
            return;
        }
        let text = TextBlock::from(self.block.as_str());
        self.routed.clear();
        for (key, ts, range, conds) in parts {
            let (event, own) = match conds {
                Some(conds) => (
                    JsonEvent::in_block(&text, range, conds)
                        // Every range was just written into the block.
                        .unwrap_or_default(),
                    true,
                ),
                None => (JsonEvent::default(), false),
            };
            self.routed.push((key, ts, event, own));
        }
        self.match_routed(gi, now, tag_base, out);
    }

    /// Matches a group's events of a batch, in `self.routed` (emptied).
    /// `tag_base`: with partition tags, the group's time before the batch
    /// (`self.part_time` then holds the time after each event).
    fn match_routed(
        &mut self,
        gi: usize,
        now: i64,
        tag_base: Option<Option<i64>>,
        out: &mut Vec<Output>,
    ) {
        if self.routed.is_empty() {
            return;
        }
        let g = &mut self.groups[gi];
        let n = g.members.len();
        if g.event_time {
            // With partition tags, `g.max` has already moved with the
            // batch: the watermark follows `part_time` event by event.
            let tagged = tag_base.is_some() && self.part_time.len() == self.routed.len();
            let base = match tag_base {
                Some(b) if tagged => b,
                _ => g.max,
            };
            for (k, &pi) in g.members.iter().enumerate() {
                let p = &mut self.patterns[pi];
                let last = k + 1 == n;
                // What conditions read as the current processing time.
                p.op.set_processing_time(Timestamp::from_millis(now));
                let mut sink = RunSink {
                    out: &mut *out,
                    heads: &p.heads,
                    ids: &p.ids,
                    counts: &mut p.counts,
                    scratch: &mut p.scratch,
                };
                let mut max = base;
                let applied = &mut p.applied;
                let ooo = p.ooo;
                let part_time = &self.part_time;
                // The index of the event in the batch (with partition tags,
                // the watermark after it is `part_time[i]`).
                let mut i = 0usize;
                // The keys' state loads a few events ahead (another
                // worker's events carry no key: a lookup of nothing).
                p.op.process_batch(
                    &mut self.routed,
                    |r| &r.0,
                    |op, (key, ts, event, own)| {
                        if !*own {
                            // Another worker's event: its watermark is
                            // applied here only where something of this
                            // worker's keys falls due, which is all a single
                            // operator's keys would see of it.
                            let wm = watermark(max, ooo);
                            if *applied != max
                                && op
                                    .next_timer()
                                    .map(Timestamp::as_millis)
                                    .is_some_and(|t| t <= wm)
                            {
                                *applied = max;
                                op.advance_watermark(Watermark::from_millis(wm), &mut sink);
                            }
                            max = if tagged {
                                part_time[i]
                            } else {
                                max_of(max, Some(*ts))
                            };
                            i += 1;
                            return;
                        }
                        if *applied != max {
                            *applied = max;
                            op.advance_watermark(
                                Watermark::from_millis(watermark(max, ooo)),
                                &mut sink,
                            );
                        }
                        if last {
                            let e = std::mem::take(event);
                            op.process_element(key, e, Timestamp::from_millis(*ts), &mut sink);
                        } else {
                            op.process_element(
                                key,
                                &*event,
                                Timestamp::from_millis(*ts),
                                &mut sink,
                            );
                        }
                        max = if tagged {
                            part_time[i]
                        } else {
                            max_of(max, Some(*ts))
                        };
                        i += 1;
                    },
                );
                // The watermark that follows the batch's last event.
                if p.applied != max {
                    p.applied = max;
                    p.op.advance_watermark(
                        Watermark::from_millis(watermark(max, p.ooo)),
                        &mut sink,
                    );
                }
            }
            if !tagged {
                g.max = self.routed.iter().fold(base, |m, r| max_of(m, Some(r.1)));
            }
        } else {
            for (k, &pi) in g.members.iter().enumerate() {
                let p = &mut self.patterns[pi];
                let last = k + 1 == n;
                let mut sink = RunSink {
                    out: &mut *out,
                    heads: &p.heads,
                    ids: &p.ids,
                    counts: &mut p.counts,
                    scratch: &mut p.scratch,
                };
                p.op.advance_processing_time(Timestamp::from_millis(now), &mut sink);
                p.op.process_batch(
                    &mut self.routed,
                    |r| &r.0,
                    |op, (key, _, event, own)| {
                        if !*own {
                            return;
                        }
                        if last {
                            let e = std::mem::take(event);
                            op.process_element(key, e, Timestamp::from_millis(now), &mut sink);
                        } else {
                            op.process_element(
                                key,
                                &*event,
                                Timestamp::from_millis(now),
                                &mut sink,
                            );
                        }
                    },
                );
            }
        }
        self.routed.clear();
    }

    /// Input the source refused (or that no pattern could read): one error
    /// output.
    pub fn on_rejected(&mut self, pos: Position, raw: &str, reason: &str, out: &mut Vec<Output>) {
        self.rejected += 1;
        out.push(error_output(None, pos, raw, reason));
    }

    /// Fires what is due at clock time `now`: processing-time timers, and
    /// event-time timers that the quiet-stream rule has reached.
    pub fn on_time(&mut self, now: i64, out: &mut Vec<Output>) {
        let idle = self.idle_watermark_shift(now);
        for p in &mut self.patterns {
            let mut sink = RunSink {
                out: &mut *out,
                heads: &p.heads,
                ids: &p.ids,
                counts: &mut p.counts,
                scratch: &mut p.scratch,
            };
            if !p.event_time {
                if p.op
                    .next_timer()
                    .map(Timestamp::as_millis)
                    .is_some_and(|t| t <= now)
                {
                    p.op.advance_processing_time(Timestamp::from_millis(now), &mut sink);
                }
            } else if let Some(shift) = idle {
                let w = p.w_last.saturating_add(shift);
                if w > p.op.current_watermark().as_millis() {
                    p.op.set_processing_time(Timestamp::from_millis(now));
                    p.op.advance_watermark(Watermark::from_millis(w), &mut sink);
                }
            }
        }
    }

    /// How far the quiet-stream rule has moved watermarks past `w_last` at
    /// `now` (`None`: not at all).
    pub(crate) fn idle_watermark_shift(&self, now: i64) -> Option<i64> {
        let (idle, t) = (self.idle_timeout?, self.t_last?);
        let shift = now.saturating_sub(t).saturating_sub(idle);
        (shift > 0).then_some(shift)
    }

    /// The clock time at which [`Engine::on_time`] next has work to do, if
    /// any.
    pub fn next_wake(&self) -> Option<i64> {
        let mut wake: Option<i64> = None;
        for p in &self.patterns {
            let Some(due) = p.op.next_timer().map(Timestamp::as_millis) else {
                continue;
            };
            let at = if !p.event_time {
                Some(due)
            } else {
                match (self.idle_timeout, self.t_last) {
                    // The watermark reaches `due` at t + idle + (due - w_last).
                    (Some(idle), Some(t)) if p.w_last > MIN_WATERMARK.as_millis() => Some(
                        t.saturating_add(idle)
                            .saturating_add(due.saturating_sub(p.w_last).max(1)),
                    ),
                    _ => None,
                }
            };
            wake = match (wake, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        wake
    }

    /// The end of a bounded input: with `flush`, every event-time watermark
    /// goes to +infinity (Flink's end of a bounded source).
    pub fn on_end(&mut self, flush: bool, out: &mut Vec<Output>) {
        if flush {
            for p in &mut self.patterns {
                if p.event_time {
                    let mut sink = RunSink {
                        out: &mut *out,
                        heads: &p.heads,
                        ids: &p.ids,
                        counts: &mut p.counts,
                        scratch: &mut p.scratch,
                    };
                    p.op.advance_watermark(MAX_WATERMARK, &mut sink);
                }
            }
        }
    }

    /// Outputs of each kind so far, per pattern in config order, and those
    /// of input no pattern could read ([`Engine::on_rejected`]).
    pub fn output_counts(&self) -> (Vec<PatternCounts>, u64) {
        let mut per: Vec<PatternCounts> = Vec::with_capacity(self.patterns.len());
        let all = self
            .patterns
            .iter()
            .map(|p| (&p.name, &p.counts))
            .chain(self.retired_counts.iter().map(|(n, c)| (n, c)));
        for (name, counts) in all {
            match per.iter_mut().find(|(n, _)| n == name) {
                Some((_, c)) => {
                    for (a, b) in c.iter_mut().zip(counts) {
                        *a += b;
                    }
                }
                None => per.push((name.clone(), *counts)),
            }
        }
        (per, self.rejected)
    }

    /// Applies `changes` at once, between two batches: the source position
    /// of the next event is where they take effect (see the module docs).
    /// All or nothing: a change that cannot be made (a name to remove that
    /// does not run, a spec that cannot be compiled) fails them all.
    /// `pending` says what becomes of the state of replaced and removed
    /// versions; dropped partial matches are appended to `out` as errors.
    pub fn apply(
        &mut self,
        changes: &[Change],
        pending: PendingPolicy,
        out: &mut Vec<Output>,
    ) -> Result<Vec<Applied>, EngineError> {
        // Check first, so that a failure changes nothing.
        for c in changes {
            match c {
                Change::Put(def) => {
                    def.spec.compile().map_err(in_pattern(&def.name))?;
                }
                Change::Remove(name) => {
                    if self.active(name).is_none() {
                        return Err(EngineError::NotRunning { name: name.clone() });
                    }
                }
            }
        }
        let mut done = Vec::with_capacity(changes.len());
        for c in changes {
            let (name, def) = match c {
                Change::Put(def) => (def.name.as_str(), Some(def)),
                Change::Remove(name) => (name.as_str(), None),
            };
            let old = self.active(name);
            if let (Some(i), Some(def)) = (old, def) {
                if self.patterns[i].fingerprint == fingerprint(&def.spec) {
                    // Unchanged: its state stays as it is; only the text
                    // (formatting, comments) may be new.
                    if def.text.is_some() {
                        self.patterns[i].text = def.text.clone();
                    }
                    done.push(Applied {
                        name: name.to_string(),
                        action: "unchanged",
                        version: Some(self.patterns[i].version),
                        previous: None,
                        draining: false,
                        dropped: 0,
                    });
                    continue;
                }
            }
            let mut applied = Applied {
                name: name.to_string(),
                action: match (old, def) {
                    (None, _) => "added",
                    (Some(_), Some(_)) => "replaced",
                    (Some(_), None) => "removed",
                },
                version: None,
                previous: None,
                draining: false,
                dropped: 0,
            };
            let next_version = self
                .patterns
                .iter()
                .filter(|p| *p.name == *name)
                .map(|p| p.version)
                .max()
                .unwrap_or(0)
                + 1;
            if let Some(i) = old {
                applied.previous = Some(self.patterns[i].version);
                match pending {
                    PendingPolicy::Drop => {
                        applied.dropped = self.drop_version(i, out);
                    }
                    PendingPolicy::Drain => {
                        let p = &mut self.patterns[i];
                        p.drain(None);
                        applied.draining = !p.op.is_empty();
                        if !applied.draining {
                            self.retire_at(i);
                        }
                    }
                }
            }
            if let Some(def) = def {
                let mut def = def.clone();
                def.version = if old.is_some() || next_version > 1 {
                    next_version
                } else {
                    def.version.max(1)
                };
                applied.version = Some(def.version);
                self.add_version(&def)?;
            }
            done.push(applied);
        }
        Ok(done)
    }

    /// The index of the active (not draining) version of `name`.
    fn active(&self, name: &str) -> Option<usize> {
        self.patterns
            .iter()
            .position(|p| *p.name == *name && !p.draining())
    }

    /// Adds a version: into a group that reads events alike, its set
    /// extended at the end (the specs before keep their condition numbers),
    /// or a group of its own.
    fn add_version(&mut self, def: &PatternDef) -> Result<(), EngineError> {
        let index = self.patterns.len();
        let mut placed = None;
        for (gi, g) in self.groups.iter().enumerate() {
            if !g.originals.first().is_some_and(|f| same_read(f, &def.spec)) {
                continue;
            }
            let mut specs = g.originals.clone();
            specs.push(def.spec.clone());
            if let Ok(set) = SpecSet::new(specs.clone()) {
                placed = Some((gi, set, specs));
                break;
            }
        }
        let (gi, nfa) = match placed {
            Some((gi, set, specs)) => {
                let nfa = set.specs()[specs.len() - 1]
                    .compile()
                    .map_err(in_pattern(&def.name))?;
                let g = &mut self.groups[gi];
                g.set = set;
                g.originals = specs;
                g.members.push(index);
                (gi, nfa)
            }
            None => {
                let set = SpecSet::new(vec![def.spec.clone()]).map_err(in_pattern(&def.name))?;
                let nfa = set.specs()[0].compile().map_err(in_pattern(&def.name))?;
                self.groups.push(Group {
                    set,
                    originals: vec![def.spec.clone()],
                    members: vec![index],
                    event_time: def.spec.time.is_some(),
                    max: None,
                    parts: PartitionTimes::default(),
                });
                (self.groups.len() - 1, nfa)
            }
        };
        let mut p = PatternOp::new(def, Arc::new(nfa));
        if self.tracking {
            p.op.set_change_tracking(true);
        }
        // It starts at the time the others are at: an event late for them
        // is late for it too.
        let max = self.groups[gi].max;
        if p.event_time {
            p.applied = max;
            if max.is_some() {
                let mut none = Vec::new();
                let mut sink = RunSink {
                    out: &mut none,
                    heads: &p.heads,
                    ids: &p.ids,
                    counts: &mut p.counts,
                    scratch: &mut p.scratch,
                };
                p.op.advance_watermark(Watermark::from_millis(watermark(max, p.ooo)), &mut sink);
            }
            p.w_last = p.op.current_watermark().as_millis();
        }
        self.patterns.push(p);
        Ok(())
    }

    /// Drops version `i` with its state: every partial match and waiting
    /// event goes to `error` with the reason. Returns how many.
    fn drop_version(&mut self, i: usize, out: &mut Vec<Output>) -> u64 {
        let p = &mut self.patterns[i];
        let nfa = p.op.nfa().clone();
        let domain = if p.event_time {
            TimeDomain::EventTime
        } else {
            TimeDomain::ProcessingTime
        };
        let op = std::mem::replace(&mut p.op, CepOperator::new(nfa, domain));
        let reason = format!(
            "pattern '{}' version {} was changed with pending=drop",
            p.name, p.version
        );
        let mut sink = DropSink {
            out,
            pattern: &p.name,
            version: p.version,
            reason: &reason,
            scratch: &mut p.scratch,
            dropped: 0,
        };
        op.report_pending(&mut sink);
        let dropped = sink.dropped;
        p.counts[Kind::Error as usize] += dropped;
        self.retire_at(i);
        dropped
    }

    /// Removes version `i` for good; the next checkpoint deletes its state.
    fn retire_at(&mut self, i: usize) {
        let p = self.patterns.remove(i);
        self.retired.push(p.store_name.clone());
        match self.retired_counts.iter_mut().find(|(n, _)| *n == p.name) {
            Some((_, c)) => {
                for (a, b) in c.iter_mut().zip(p.counts) {
                    *a += b;
                }
            }
            None => self.retired_counts.push((p.name.clone(), p.counts)),
        }
        for g in &mut self.groups {
            g.members.retain(|&m| m != i);
            for m in &mut g.members {
                if *m > i {
                    *m -= 1;
                }
            }
        }
        // A group with no member reads nothing any more. One that keeps
        // members keeps the retired spec in its set: renumbering would
        // break the waiting events' condition bits.
        self.groups.retain(|g| !g.members.is_empty());
    }

    /// Store names of the draining versions with nothing left here: no
    /// key, no waiting event.
    pub fn drained(&self) -> Vec<Arc<str>> {
        self.patterns
            .iter()
            .filter(|p| p.draining() && p.op.is_empty())
            .map(|p| p.store_name.clone())
            .collect()
    }

    /// Retires the draining version `store_name` once it has drained (on
    /// every worker: see [`Engine::drained`]). Returns its name and version.
    pub fn retire(&mut self, store_name: &str) -> Option<(Arc<str>, u32)> {
        let i = self
            .patterns
            .iter()
            .position(|p| *p.store_name == *store_name && p.draining() && p.op.is_empty())?;
        let (name, version) = (self.patterns[i].name.clone(), self.patterns[i].version);
        self.retire_at(i);
        Some((name, version))
    }
}

/// One pattern's part of a checkpoint (see [`Engine::checkpoint`]).
#[derive(Debug, Clone)]
pub struct PatternCheckpoint {
    /// The version's identity in the store ([`store_name`]).
    pub name: Arc<str>,
    /// Its version.
    pub version: u32,
    /// Its fingerprint ([`fingerprint`]).
    pub fingerprint: String,
    /// Operator-level state: the watermark and what the time rules need.
    pub meta: Vec<u8>,
    /// Keys whose state changed: key group, encoded key, state.
    pub upserts: Vec<(u32, Vec<u8>, Vec<u8>)>,
    /// Keys whose state is gone: key group, encoded key.
    pub deletes: Vec<(u32, Vec<u8>)>,
    /// `upserts` holds every key: the pattern's stored keys are replaced.
    pub full: bool,
}

/// What a checkpoint holds of the patterns: each running version's part,
/// and the store names of versions gone since the previous checkpoint.
#[derive(Debug, Clone, Default)]
pub struct EngineCheckpoint {
    /// Each running version, in order.
    pub parts: Vec<PatternCheckpoint>,
    /// Versions retired since the last checkpoint: their state is deleted.
    pub retired: Vec<Arc<str>>,
}

/// What identifies a pattern's automaton: XXH3-64 (hex) of its checked
/// fields (key, time, window, skip strategy, stages). A checkpoint is
/// restored only into patterns with the same fingerprints.
pub fn fingerprint(spec: &Spec) -> String {
    // The windows in milliseconds, as before they were `Duration`s (the
    // spec types' `Debug` prints theirs that way too).
    let within = spec
        .within
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut text = format!(
        "v1|{:?}|{:?}|{:?}|{:?}|{:?}",
        spec.key, spec.time, within, spec.skip, spec.stages
    );
    // Only when set, so that other specs keep their fingerprints.
    if spec.skip_throw {
        text.push_str("|throw_exception_on_miss");
    }
    format!("{:016x}", xxh3_64(text.as_bytes()))
}

/// Why a checkpoint's state cannot be restored into the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The checkpoint names a pattern (a store name) the engine does not run.
    #[error("no pattern '{pattern}'")]
    NoPattern {
        /// The store name.
        pattern: String,
    },
    /// A pattern's saved state does not decode.
    #[error("pattern '{pattern}': {what}: {source}")]
    State {
        /// The store name.
        pattern: String,
        /// Which part: `operator state`, `key` or `key state`.
        what: &'static str,
        /// Why.
        #[source]
        source: ferrocep_core::operator::state::StateError,
    },
    /// A pattern's meta blob of a version this build does not read.
    #[error(
        "pattern '{pattern}': operator state of version {found}, this ferrocep reads {supported}"
    )]
    Version {
        /// The store name.
        pattern: String,
        /// The version found.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },
    /// A pattern record that does not decode ([`Engine::saved_pattern`]).
    #[error("pattern record: {0}")]
    Record(#[source] ferrocep_core::operator::state::StateError),
    /// A pattern record of a newer version.
    #[error("pattern record of version {found}, this ferrocep reads up to {supported}")]
    RecordVersion {
        /// The version found.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },
}

/// What HTTP ingest checks each event with ([`Engine::validator`]).
pub use crate::source::http::Validator;

/// The spec sets a [`Validator`] checks, replaced after pattern changes.
pub type ValidatorSets = Arc<std::sync::RwLock<Vec<SpecSet>>>;

/// Version of the engine's per-pattern meta blob. Version 2 adds the
/// pattern's name, version, drain point and spec text.
const META_VERSION: u8 = 2;

/// A version as a checkpoint saved it ([`Engine::saved_pattern`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedPattern {
    /// The pattern's name.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// Its place among the engine's patterns (outputs of one batch come
    /// out in that order).
    pub order: u32,
    /// The spec's text and format (`None`: saved before checkpoints held
    /// specs; the config's spec of that name is meant).
    pub text: Option<(String, Format)>,
}

impl Engine {
    /// Starts tracking which keys change, for incremental checkpoints. With
    /// `full`, the first checkpoint writes every key (no checkpoint holds
    /// them yet); call it before restoring keys, which are then in the store
    /// already.
    pub fn enable_checkpoints(&mut self, full: bool) {
        self.tracking = true;
        for p in &mut self.patterns {
            p.op.set_change_tracking(true);
            p.full_next = full;
        }
    }

    /// The fingerprint of each active pattern, in order.
    pub fn fingerprints(&self) -> Vec<(Arc<str>, String)> {
        self.patterns
            .iter()
            .filter(|p| !p.draining())
            .map(|p| (p.name.clone(), p.fingerprint.clone()))
            .collect()
    }

    /// What changed since the last checkpoint, per pattern: the keys whose
    /// state changed (with their state) and those whose state is gone, and
    /// each pattern's operator-level state. If the checkpoint that uses this
    /// fails, call [`Engine::checkpoint_failed`]: the next one then writes
    /// every key.
    pub fn checkpoint(&mut self) -> EngineCheckpoint {
        use ferrocep_core::operator::state::{key_group, stable_key_hash, StateCodec};
        let mut group_max: Vec<Option<i64>> = vec![None; self.patterns.len()];
        let mut layouts = vec![0u64; self.patterns.len()];
        for g in &self.groups {
            let layout = layout_of(&g.set);
            for &i in &g.members {
                group_max[i] = g.max;
                layouts[i] = layout;
            }
        }
        let mut out = Vec::with_capacity(self.patterns.len());
        for (i, p) in self.patterns.iter_mut().enumerate() {
            let (changed, dropped) = p.op.take_dirty();
            let full = std::mem::take(&mut p.full_next);
            let keys: Vec<Key> = if full {
                p.op.keys().cloned().collect()
            } else {
                changed
            };
            let states = p.op.snapshot_keys(&keys);
            let encode = |k: &Key| {
                let mut b = Vec::with_capacity(24);
                k.encode(&mut b);
                (key_group(stable_key_hash(k)), b)
            };
            let mut upserts = Vec::with_capacity(keys.len());
            let mut deletes = Vec::new();
            for (k, s) in keys.iter().zip(states) {
                let (g, b) = encode(k);
                match s {
                    Some(s) => upserts.push((g, b, s)),
                    None if !full => deletes.push((g, b)),
                    None => {}
                }
            }
            if !full {
                deletes.extend(dropped.iter().map(encode));
            }
            let mut meta = vec![META_VERSION];
            ferrocep_core::operator::state::put_bytes(&mut meta, &p.op.snapshot_meta());
            p.applied.encode(&mut meta);
            p.w_last.encode(&mut meta);
            group_max[i].encode(&mut meta);
            encode_saved(&mut meta, p, i as u32);
            layouts[i].encode(&mut meta);
            out.push(PatternCheckpoint {
                name: p.store_name.clone(),
                version: p.version,
                fingerprint: p.fingerprint.clone(),
                meta,
                upserts,
                deletes,
                full,
            });
        }
        EngineCheckpoint {
            parts: out,
            retired: std::mem::take(&mut self.retired),
        }
    }

    /// The pattern a checkpoint's meta blob saved: name, version and spec
    /// text (`None` for a blob of version 1, which saved no spec).
    pub fn saved_pattern(bytes: &[u8]) -> Result<Option<SavedPattern>, RestoreError> {
        use ferrocep_core::operator::state::{get_bytes, get_u8, StateCodec};
        let mut input = bytes;
        let err = RestoreError::Record;
        let v = get_u8(&mut input, "meta version").map_err(err)?;
        if v == 1 {
            return Ok(None);
        }
        if v != META_VERSION {
            return Err(RestoreError::RecordVersion {
                found: v,
                supported: META_VERSION,
            });
        }
        get_bytes(&mut input, "operator meta").map_err(err)?;
        Option::<i64>::decode(&mut input).map_err(err)?;
        i64::decode(&mut input).map_err(err)?;
        Option::<i64>::decode(&mut input).map_err(err)?;
        let (saved, _) = decode_saved(&mut input).map_err(err)?;
        Ok(Some(saved))
    }

    /// The checkpoint that used the last [`Engine::checkpoint`] failed: the
    /// next one writes every key.
    pub fn checkpoint_failed(&mut self) {
        for p in &mut self.patterns {
            p.full_next = true;
        }
    }

    /// Restores a pattern's operator-level state from a checkpoint.
    pub fn restore_meta(&mut self, pattern: &str, bytes: &[u8]) -> Result<(), RestoreError> {
        use ferrocep_core::operator::state::{get_bytes, get_u8, StateCodec};
        let (i, p) = self
            .patterns
            .iter_mut()
            .enumerate()
            .find(|(_, p)| &*p.store_name == pattern)
            .ok_or_else(|| RestoreError::NoPattern {
                pattern: pattern.to_string(),
            })?;
        let mut input = bytes;
        let err = |source| RestoreError::State {
            pattern: pattern.to_string(),
            what: "operator state",
            source,
        };
        let v = get_u8(&mut input, "meta version").map_err(err)?;
        if v != META_VERSION && v != 1 {
            return Err(RestoreError::Version {
                pattern: pattern.to_string(),
                found: v,
                supported: META_VERSION,
            });
        }
        let core = get_bytes(&mut input, "operator meta").map_err(err)?;
        p.op.restore_meta(core).map_err(err)?;
        p.applied = Option::<i64>::decode(&mut input).map_err(err)?;
        p.w_last = i64::decode(&mut input).map_err(err)?;
        let max = Option::<i64>::decode(&mut input).map_err(err)?;
        if v >= 2 {
            let (_, drain_from) = decode_saved(&mut input).map_err(err)?;
            if drain_from.is_some() {
                p.drain(drain_from);
            }
        }
        // Version 1 saved no layout: its patterns ran as configured, as
        // they are now (a checkpoint of other patterns was refused).
        let saved_layout = if v >= 2 {
            Some(u64::decode(&mut input).map_err(err)?)
        } else {
            None
        };
        let layout = self
            .groups
            .iter()
            .find(|g| g.members.contains(&i))
            .map(|g| layout_of(&g.set));
        let p = &mut self.patterns[i];
        p.remap = saved_layout.is_some() && saved_layout != layout;
        for g in &mut self.groups {
            if g.members.contains(&i) {
                g.max = max_of(g.max, max);
            }
        }
        Ok(())
    }

    /// Restores one key's state of `pattern` from a checkpoint.
    pub fn restore_key(
        &mut self,
        pattern: &str,
        key: &[u8],
        state: &[u8],
    ) -> Result<(), RestoreError> {
        use ferrocep_core::operator::state::StateCodec;
        let err = |what: &'static str| {
            move |source| RestoreError::State {
                pattern: pattern.to_string(),
                what,
                source,
            }
        };
        let i = self
            .patterns
            .iter()
            .position(|p| &*p.store_name == pattern)
            .ok_or_else(|| RestoreError::NoPattern {
                pattern: pattern.to_string(),
            })?;
        let mut input = key;
        let k = Key::decode(&mut input).map_err(err("key"))?;
        let r = if self.patterns[i].remap {
            // Every version is in a group (see `with_patterns`, `add_version`).
            let Some(g) = self.groups.iter().find(|g| g.members.contains(&i)) else {
                return Err(RestoreError::NoPattern {
                    pattern: pattern.to_string(),
                });
            };
            let set = &g.set;
            let scratch = &mut self.scratch;
            self.patterns[i]
                .op
                .restore_key_with(k, state, |e| reread(set, e, scratch))
        } else {
            self.patterns[i].op.restore_key(k, state)
        };
        r.map_err(err("key state"))
    }
}

/// `e` with its conditions evaluated again by `set` (its text kept, the
/// position in front included).
fn reread(
    set: &SpecSet,
    e: JsonEvent,
    scratch: &mut Vec<Value<'static>>,
) -> Result<JsonEvent, ferrocep_core::operator::state::StateError> {
    let invalid = |detail: String| ferrocep_core::operator::state::StateError::Invalid {
        what: "restored event",
        detail,
    };
    let raw = e.raw();
    let conditions = set
        .ingest_parts(text_of(&e), scratch)
        .map_err(|err| invalid(err.to_string()))?
        .conditions;
    let block = TextBlock::from(raw);
    JsonEvent::in_block(&block, 0..raw.len(), conditions)
        .ok_or_else(|| invalid("its text is too long".to_string()))
}

/// Writes what meta version 2 adds: name, version, drain point, spec text.
fn encode_saved(out: &mut Vec<u8>, p: &PatternOp, order: u32) {
    use ferrocep_core::operator::state::{put_bytes, StateCodec};
    put_bytes(out, p.name.as_bytes());
    u64::from(p.version).encode(out);
    order.encode(out);
    p.op.starts_stopped().encode(out);
    match &p.text {
        None => out.push(0),
        Some((text, format)) => {
            out.push(match format {
                Format::Json => 1,
                Format::Yaml => 2,
                _ => 3,
            });
            put_bytes(out, text.as_bytes());
        }
    }
}

/// Reads what [`encode_saved`] wrote: the pattern and its drain point.
fn decode_saved(
    input: &mut &[u8],
) -> Result<(SavedPattern, Option<u64>), ferrocep_core::operator::state::StateError> {
    use ferrocep_core::operator::state::{get_str, get_u8, StateCodec};
    let name = get_str(input, "pattern name")?.to_string();
    let version = u64::decode(input)?;
    let order = u32::decode(input)?;
    let drain_from = Option::<u64>::decode(input)?;
    let text = match get_u8(input, "spec format")? {
        0 => None,
        f => {
            let format = match f {
                1 => Format::Json,
                2 => Format::Yaml,
                _ => Format::Auto,
            };
            Some((get_str(input, "spec text")?.to_string(), format))
        }
    };
    Ok((
        SavedPattern {
            name,
            version: u32::try_from(version).unwrap_or(u32::MAX),
            order,
            text,
        },
        drain_from,
    ))
}

/// State per source partition (a kafka source with a changelog, see
/// [`crate::changelog`]): keys tagged with their partition, and the state
/// of whole partitions dropped and restored as the consumer group moves them.
impl Engine {
    /// With `on`, each event's key is (its source partition, its pattern
    /// key) ([`Key::tagged`], the partition read from its kafka position),
    /// so that a partition's state can move to another instance. Outputs
    /// show the pattern key alone. Set before the first event.
    pub fn set_partition_tags(&mut self, on: bool) {
        self.tag_partitions = on;
    }

    /// The store name and fingerprint of every version (draining ones too).
    pub fn fingerprint_of_stores(&self) -> Vec<(Arc<str>, String)> {
        self.patterns
            .iter()
            .map(|p| (p.store_name.clone(), p.fingerprint.clone()))
            .collect()
    }

    /// Partitions assigned at clock `now`: until its first event (or, with
    /// `idle_timeout`, until idle that long) each holds the watermark back,
    /// as an assigned Kafka partition does in Flink.
    pub fn hold_partitions(&mut self, parts: &[u16], now: i64) {
        if self.tag_partitions {
            for g in &mut self.groups {
                g.parts.hold(parts, now);
            }
        }
    }

    /// Drops the state of every key of a source partition that `drop`
    /// names (partitions revoked, whose state is in the changelog): no
    /// output, as if they had never been seen here. Returns the keys
    /// dropped.
    pub fn drop_source_partitions(&mut self, drop: &dyn Fn(u16) -> bool) -> usize {
        for g in &mut self.groups {
            g.parts.forget(drop);
        }
        let mut n = 0;
        for p in &mut self.patterns {
            let gone: Vec<Key> =
                p.op.keys()
                    .filter(|k| k.source_partition().is_some_and(drop))
                    .cloned()
                    .collect();
            for k in &gone {
                p.op.remove_key(k);
            }
            n += gone.len();
        }
        n
    }

    /// Restores the keys of partitions gained: each (store name, encoded
    /// key, state) of a pattern that `patterns` (store name, fingerprint)
    /// lists with the fingerprint of the running version of that store
    /// name, and of a key this engine owns. Returns (keys restored, keys
    /// of patterns not running as saved, which are left out).
    pub fn restore_partition_keys(
        &mut self,
        patterns: &[(String, String)],
        keys: &[(String, Vec<u8>, Vec<u8>)],
    ) -> Result<(usize, usize), RestoreError> {
        use ferrocep_core::operator::state::StateCodec;
        let runs = |name: &str| {
            self.patterns.iter().any(|p| {
                *p.store_name == *name
                    && patterns
                        .iter()
                        .any(|(n, f)| n == name && *f == p.fingerprint)
            })
        };
        let ok: Vec<bool> = keys.iter().map(|(name, _, _)| runs(name)).collect();
        let (mut restored, mut skipped) = (0, 0);
        for ((name, k, state), ok) in keys.iter().zip(ok) {
            if !ok {
                skipped += 1;
                continue;
            }
            let mut input = k.as_slice();
            let key = Key::decode(&mut input).map_err(|source| RestoreError::State {
                pattern: name.clone(),
                what: "key",
                source,
            })?;
            if !self.owns(&key) {
                continue;
            }
            self.restore_key(name, k, state)?;
            restored += 1;
        }
        Ok((restored, skipped))
    }
}

/// The worker, of `workers`, that owns `key`: whole key groups (by the key's
/// stable hash) go to each worker, as Flink assigns them.
pub fn owner(key: &Key, workers: u32) -> u32 {
    use ferrocep_core::operator::state::{key_group, key_group_worker};
    key_group_worker(key_group(key.route_hash()), workers)
}

/// `v` as 16 lowercase hex digits.
fn hex16(v: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    std::array::from_fn(|i| HEX[((v >> ((15 - i) * 4)) & 0xf) as usize])
}

/// Writes `pos` as [`POS_HEX`] hex digits.
fn push_pos(block: &mut String, pos: Position) {
    // Hex digits are ASCII.
    block.push_str(std::str::from_utf8(&hex16(pos)).unwrap_or("0000000000000000"));
}

/// The position in front of an event's stored text.
#[inline]
fn pos_of(e: &JsonEvent) -> Position {
    let Some(hex) = e.raw().as_bytes().get(..POS_HEX) else {
        return 0;
    };
    // Written by `push_pos`: lowercase hex digits only.
    hex.iter().fold(0u64, |v, &b| {
        let d = if b <= b'9' { b - b'0' } else { b - b'a' + 10 };
        (v << 4) | u64::from(d & 0xf)
    })
}

/// The event's own text, without its position.
fn text_of(e: &JsonEvent) -> &str {
    e.raw().get(POS_HEX..).unwrap_or_default()
}

/// An `error` output for input at `pos`.
fn error_output(pattern: Option<&str>, pos: Position, raw: &str, reason: &str) -> Output {
    let id = format!("{}:error:{pos}", pattern.unwrap_or("-"));
    let mut line = Vec::with_capacity(64 + raw.len() + reason.len());
    line.extend_from_slice(b"{\"kind\":\"error\",\"pattern\":");
    match pattern {
        Some(p) => {
            let _ = write_json_str(&mut line, p);
        }
        None => line.extend_from_slice(b"null"),
    }
    line.extend_from_slice(b",\"id\":");
    let _ = write_json_str(&mut line, &id);
    line.extend_from_slice(b",\"position\":");
    line.extend_from_slice(itoa::Buffer::new().format(pos).as_bytes());
    line.extend_from_slice(b",\"reason\":");
    let _ = write_json_str(&mut line, reason);
    line.extend_from_slice(b",\"raw\":");
    let _ = write_json_str(&mut line, raw);
    line.push(b'}');
    Output::new(Kind::Error, &id, &line)
}

/// The operator's outputs as `run` writes them.
struct RunSink<'a> {
    out: &'a mut Vec<Output>,
    heads: &'a [Box<[u8]>; 4],
    ids: &'a [Box<str>; 4],
    counts: &'a mut [u64; 4],
    /// What an id's hash is taken over, reused.
    scratch: &'a mut Vec<u8>,
}

impl RunSink<'_> {
    /// Starts an output of `kind`: its line up to the end of its id, and the
    /// id's own part (`FIRST-HASH`, or `POS` for a late event) in `suffix`.
    /// The buffer of an [`Output`]: the id, then the line so far; and the
    /// id's length.
    fn start(&self, kind: Kind, suffix: &[u8], key: &Key, capacity: usize) -> (Vec<u8>, usize) {
        let head = &self.heads[kind as usize];
        let prefix = self.ids[kind as usize].as_bytes();
        let id_len = prefix.len() + suffix.len();
        let mut buf = Vec::with_capacity(id_len + head.len() + suffix.len() + capacity + 96);
        buf.extend_from_slice(prefix);
        // The suffix is ASCII digits, hex and `-`.
        buf.extend_from_slice(suffix);
        buf.extend_from_slice(head);
        buf.extend_from_slice(suffix);
        buf.push(b'"');
        let _ = write_key(&mut buf, key);
        (buf, id_len)
    }

    /// `FIRST-HASH` of a match or timeout (see the module docs), its
    /// length, and the bytes of its events' text.
    fn suffix(&mut self, kind: Kind, m: &MatchRef<'_, JsonEvent>) -> ([u8; 40], usize, usize) {
        match_suffix(self.ids[kind as usize].as_bytes(), m, self.scratch)
    }
}

/// `FIRST-HASH` of a match or timeout whose id starts with `prefix`
/// (`NAME:KIND:`; see the module docs), its length, and the bytes of its
/// events' text. `scratch` holds what the hash is taken over.
fn match_suffix(
    prefix: &[u8],
    m: &MatchRef<'_, JsonEvent>,
    scratch: &mut Vec<u8>,
) -> ([u8; 40], usize, usize) {
    // One-shot XXH3 over `NAME:KIND:` and each stage and position: the
    // streaming hasher costs several times more for inputs this short.
    let h = scratch;
    h.clear();
    h.extend_from_slice(prefix);
    let mut first = None;
    let mut text = 0;
    for (stage, e) in m.iter() {
        let pos = pos_of(e);
        first.get_or_insert(pos);
        text += e.raw().len();
        h.push(0);
        h.extend_from_slice(stage.as_bytes());
        h.push(0);
        h.extend_from_slice(&pos.to_le_bytes());
    }
    let digest = xxh3_64(h);
    let mut out = [0u8; 40];
    let mut itoa = itoa::Buffer::new();
    let first = itoa.format(first.unwrap_or(0)).as_bytes();
    out[..first.len()].copy_from_slice(first);
    let mut n = first.len();
    out[n] = b'-';
    n += 1;
    out[n..n + 16].copy_from_slice(&hex16(digest));
    n += 16;
    (out, n, text)
}

impl OutputSink<Key, JsonEvent> for RunSink<'_> {
    fn on_match(&mut self, key: &Key, m: &MatchRef<'_, JsonEvent>, _ts: Timestamp) {
        let (suffix, n, text) = self.suffix(Kind::Match, m);
        let (mut line, id) = self.start(Kind::Match, &suffix[..n], key, text);
        let _ = write_events_after(&mut line, m, POS_HEX);
        line.push(b'}');
        self.counts[Kind::Match as usize] += 1;
        self.out.push(Output::from_parts(Kind::Match, line, id));
    }

    fn on_timeout(&mut self, key: &Key, m: &MatchRef<'_, JsonEvent>, timeout_at: Timestamp) {
        let (suffix, n, text) = self.suffix(Kind::Timeout, m);
        let (mut line, id) = self.start(Kind::Timeout, &suffix[..n], key, text);
        line.extend_from_slice(b",\"timeout_at\":");
        line.extend_from_slice(
            itoa::Buffer::new()
                .format(timeout_at.as_millis())
                .as_bytes(),
        );
        let _ = write_events_after(&mut line, m, POS_HEX);
        line.push(b'}');
        self.counts[Kind::Timeout as usize] += 1;
        self.out.push(Output::from_parts(Kind::Timeout, line, id));
    }

    fn on_late(&mut self, key: &Key, event: &JsonEvent, _ts: Timestamp) {
        let mut pos = itoa::Buffer::new();
        let pos = pos.format(pos_of(event)).as_bytes();
        let text = text_of(event);
        let (mut line, id) = self.start(Kind::Late, pos, key, text.len());
        line.extend_from_slice(b",\"event\":");
        line.extend_from_slice(text.as_bytes());
        line.push(b'}');
        self.counts[Kind::Late as usize] += 1;
        self.out.push(Output::from_parts(Kind::Late, line, id));
    }

    /// Flink would fail the job; a service reports the match as an `error`
    /// (with `stage`, `reason` and its events; its id as a match's, of kind
    /// error), logs it, and the pattern goes on.
    fn on_failure(&mut self, key: &Key, m: &MatchRef<'_, JsonEvent>, failure: &MatchFailure) {
        let (suffix, n, text) = self.suffix(Kind::Error, m);
        let (mut line, id) = self.start(Kind::Error, &suffix[..n], key, text);
        let reason = format!(
            "the skip strategy's stage '{}' {} (throw_exception_on_miss): {failure}",
            failure.stage(),
            match failure {
                MatchFailure::FirstElement { .. } => "is the match's first event",
                _ => "is missing from the match",
            }
        );
        line.extend_from_slice(b",\"stage\":");
        let _ = write_json_str(&mut line, failure.stage());
        line.extend_from_slice(b",\"reason\":");
        let _ = write_json_str(&mut line, &reason);
        let _ = write_events_after(&mut line, m, POS_HEX);
        line.push(b'}');
        let pattern = self.ids[Kind::Error as usize].trim_end_matches(":error:");
        tracing::warn!(
            "pattern '{pattern}', key {}: {reason}; sent to the error output",
            key.text().unwrap_or("(none)")
        );
        self.counts[Kind::Error as usize] += 1;
        self.out.push(Output::from_parts(Kind::Error, line, id));
    }
}

/// The pending state of a version dropped by a change, as `error` outputs:
/// `{"kind":"error","pattern":..,"version":..,"id":..,"reason":..,` then
/// `"events":{stage:[..]}` for a partial match or `"event":..` for an event
/// still waiting for the watermark.
struct DropSink<'a> {
    out: &'a mut Vec<Output>,
    pattern: &'a str,
    version: u32,
    reason: &'a str,
    scratch: &'a mut Vec<u8>,
    dropped: u64,
}

impl DropSink<'_> {
    fn head(&self, id: &str, key: &Key) -> Vec<u8> {
        let mut line = Vec::with_capacity(160);
        line.extend_from_slice(b"{\"kind\":\"error\",\"pattern\":");
        let _ = write_json_str(&mut line, self.pattern);
        line.extend_from_slice(b",\"version\":");
        line.extend_from_slice(itoa::Buffer::new().format(self.version).as_bytes());
        line.extend_from_slice(b",\"id\":");
        let _ = write_json_str(&mut line, id);
        line.extend_from_slice(b",\"reason\":");
        let _ = write_json_str(&mut line, self.reason);
        let _ = write_key(&mut line, key);
        line
    }
}

impl OutputSink<Key, JsonEvent> for DropSink<'_> {
    fn on_match(&mut self, _key: &Key, _m: &MatchRef<'_, JsonEvent>, _ts: Timestamp) {}

    fn on_timeout(&mut self, key: &Key, m: &MatchRef<'_, JsonEvent>, _at: Timestamp) {
        // The id as a timeout's, of kind error: the same partial match
        // dropped in a replay has the same id.
        let prefix = format!("{}:error:", self.pattern);
        let (suffix, n, _) = match_suffix(prefix.as_bytes(), m, self.scratch);
        let id = format!(
            "{prefix}{}",
            std::str::from_utf8(&suffix[..n]).unwrap_or_default()
        );
        let mut line = self.head(&id, key);
        let _ = write_events_after(&mut line, m, POS_HEX);
        line.push(b'}');
        self.dropped += 1;
        self.out.push(Output::new(Kind::Error, &id, &line));
    }

    fn on_late(&mut self, key: &Key, event: &JsonEvent, _ts: Timestamp) {
        let id = format!("{}:error:{}", self.pattern, pos_of(event));
        let mut line = self.head(&id, key);
        line.extend_from_slice(b",\"event\":");
        line.extend_from_slice(text_of(event).as_bytes());
        line.push(b'}');
        self.dropped += 1;
        self.out.push(Output::new(Kind::Error, &id, &line));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::io::Cursor;
    use std::path::Path;

    use ferrocep_core::spec::Format;

    use super::*;
    use crate::clock::ManualClock;
    use crate::matcher::Plan;
    use crate::options::{EndOfInput, Options};

    /// A recorded case of the repository, in event time (processing time
    /// stamps differ from run to run).
    struct Case {
        path: std::path::PathBuf,
        spec: Spec,
        flush: bool,
        /// Each event's JSON text.
        events: Vec<String>,
    }

    /// Every event-time case of `crates/ferrocep/tests/cases` (more than 50).
    fn event_time_cases() -> Vec<Case> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ferrocep/tests/cases");
        let mut cases = Vec::new();
        for dir in ["edges", "flink-ports"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                let case: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let spec = Spec::from_str(&case["spec"].to_string(), Format::Json).unwrap();
                if spec.time.is_none() {
                    continue;
                }
                cases.push(Case {
                    path,
                    spec,
                    flush: case["end_of_input"].as_str() != Some("stop"),
                    events: case["events"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e.to_string())
                        .collect(),
                });
            }
        }
        assert!(cases.len() > 50, "only {} cases", cases.len());
        cases
    }

    /// `line` without the `"pattern"` and `"id"` members `run` adds.
    fn as_match_prints(line: &[u8]) -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_slice(line).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("pattern");
        o.remove("id");
        v
    }

    fn replay(spec: &Spec, input: &str, flush: bool) -> Vec<serde_json::Value> {
        let set = SpecSet::new(vec![spec.clone()]).unwrap();
        let plan = Plan::new(&set, &[]).unwrap();
        let mut out = Vec::new();
        let options = Options {
            end_of_input: if flush {
                EndOfInput::Flush
            } else {
                EndOfInput::Stop
            },
            ..Options::default()
        };
        let clock = ManualClock::new(0);
        crate::replay::run_with(
            &set,
            &plan,
            Cursor::new(input.as_bytes().to_vec()),
            &mut out,
            &mut std::io::sink(),
            &options,
            &clock,
        )
        .unwrap();
        out.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    /// Runs `input` through an engine in batches of sizes taken from `sizes`.
    fn engine_run(spec: &Spec, input: &str, flush: bool, sizes: &[usize]) -> Vec<Output> {
        let mut engine =
            Engine::new(&[("p".into(), spec.clone())], EngineOptions::default()).unwrap();
        let mut out = Vec::new();
        let lines: Vec<(u64, &str)> = {
            let mut pos = 0u64;
            input
                .split('\n')
                .map(|l| {
                    let p = pos;
                    pos += l.len() as u64 + 1;
                    (p, l)
                })
                .filter(|(_, l)| !l.trim().is_empty())
                .collect()
        };
        let mut i = 0;
        let mut k = 0;
        while i < lines.len() {
            let n = sizes[k % sizes.len()].max(1);
            k += 1;
            let mut batch = Batch::default();
            for (pos, l) in &lines[i..(i + n).min(lines.len())] {
                batch.push(*pos, l.as_bytes());
            }
            i += n;
            engine.on_batch(&batch, 0, &mut out);
        }
        engine.on_end(flush, &mut out);
        out
    }

    /// The repository's recorded cases, in event time: `run`'s engine gives
    /// exactly `match`'s outputs, in the same order, whatever the batches.
    #[test]
    fn engine_equals_match_on_recorded_cases() {
        for Case {
            path,
            spec,
            flush,
            events,
        } in event_time_cases()
        {
            let input: String = events.iter().map(|e| format!("{e}\n")).collect();
            let want = replay(&spec, &input, flush);
            for sizes in [&[1usize][..], &[3, 1, 4, 1, 5], &[1000]] {
                let got = engine_run(&spec, &input, flush, sizes);
                let got: Vec<_> = got.iter().map(|o| as_match_prints(o.line())).collect();
                assert_eq!(got, want, "{} in batches {sizes:?}", path.display());
            }
        }
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let spec = Spec::from_str(
            r#"{"key":"id","time":{"field":"ts"},"within":"10ms",
                "stages":[{"name":"a","where":"t == \"a\""},
                          {"name":"b","contiguity":"followed_by_any","where":"t == \"b\""}]}"#,
            Format::Json,
        )
        .unwrap();
        // The same event text twice: different positions, different ids.
        let input = "{\"id\":1,\"t\":\"a\",\"ts\":1}\n{\"id\":1,\"t\":\"a\",\"ts\":1}\n{\"id\":1,\"t\":\"b\",\"ts\":3}\n{\"id\":1,\"t\":\"b\",\"ts\":0}\nnot json\n";
        let a = engine_run(&spec, input, true, &[1]);
        let b = engine_run(&spec, input, true, &[2, 3]);
        // Errors come out as a batch is read, before its events' outputs.
        let mut ids: Vec<&str> = a.iter().map(|o| o.id()).collect();
        let mut ids_b: Vec<&str> = b.iter().map(|o| o.id()).collect();
        ids.sort_unstable();
        ids_b.sort_unstable();
        assert_eq!(ids, ids_b);
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        let kinds: Vec<Kind> = a.iter().map(|o| o.kind).collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == Kind::Match).count(),
            2,
            "{kinds:?}"
        );
        assert!(kinds.contains(&Kind::Late) && kinds.contains(&Kind::Error));
        let err = a.iter().find(|o| o.kind == Kind::Error).unwrap();
        let v: serde_json::Value = serde_json::from_slice(err.line()).unwrap();
        assert_eq!(v["raw"], "not json");
        assert_eq!(v["pattern"], "p");
        for o in &a {
            let v: serde_json::Value = serde_json::from_slice(o.line()).unwrap();
            assert_eq!(v["id"], o.id());
            assert_eq!(v["kind"], o.kind.as_str());
        }
    }

    /// In event time conditions read the clock time of the batch (or of the
    /// idle rule's advance) as the current processing time.
    #[test]
    fn event_time_patterns_see_the_clock_as_processing_time() {
        let spec = Spec::from_str(
            r#"{"key":"id","time":{"field":"ts"},"within":"10s",
                "stages":[{"name":"c","where":"t == \"c\""},
                          {"name":"p","where":"t == \"p\""}]}"#,
            Format::Json,
        )
        .unwrap();
        let mut e = Engine::new(
            &[("orders".into(), spec)],
            EngineOptions {
                idle_timeout: Some(1_000),
            },
        )
        .unwrap();
        let mut out = Vec::new();
        let mut b = Batch::default();
        b.push(0, br#"{"id":"o1","t":"c","ts":100000}"#);
        e.on_batch(&b, 7_000, &mut out);
        let now = |e: &Engine| e.patterns[0].op.current_processing_time().as_millis();
        assert_eq!(now(&e), 7_000);
        e.on_time(9_000, &mut out);
        assert_eq!(now(&e), 9_000);
    }

    /// The quiet-stream rule: a timeout fires `idle_timeout` after its window
    /// ends on the clock, and an event behind the moved watermark is late.
    #[test]
    fn idle_timeout_moves_the_watermark_with_the_clock() {
        let spec = Spec::from_str(
            r#"{"key":"id","time":{"field":"ts","max_out_of_orderness":"1s"},"within":"10s",
                "stages":[{"name":"c","where":"t == \"c\""},
                          {"name":"p","contiguity":"followed_by","where":"t == \"p\""}]}"#,
            Format::Json,
        )
        .unwrap();
        let mut e = Engine::new(
            &[("orders".into(), spec)],
            EngineOptions {
                idle_timeout: Some(5_000),
            },
        )
        .unwrap();
        let mut out = Vec::new();
        let mut b = Batch::default();
        b.push(0, br#"{"id":"o1","t":"c","ts":100000}"#);
        // Arrives at clock 1_000_000; watermark 98_999; window ends at 110_000.
        e.on_batch(&b, 1_000_000, &mut out);
        assert!(out.is_empty());
        // The event itself waits for the watermark to pass 100_000, then
        // its window: due when 98_999 + (now - 1_000_000) - 5_000 >= 110_000.
        let mut wake = e.next_wake().unwrap();
        for _ in 0..5 {
            e.on_time(wake - 1, &mut out);
            assert!(out.is_empty(), "fired early at {wake}");
            e.on_time(wake, &mut out);
            if !out.is_empty() {
                break;
            }
            wake = e.next_wake().unwrap();
        }
        assert_eq!(out.len(), 1, "{wake}");
        assert_eq!(out[0].kind, Kind::Timeout);
        assert_eq!(wake, 1_000_000 + 5_000 + (110_000 - 98_999));
        // A pay for it now is behind the watermark: late.
        out.clear();
        let mut b = Batch::default();
        b.push(40, br#"{"id":"o1","t":"p","ts":105000}"#);
        e.on_batch(&b, wake + 10, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, Kind::Late);
        assert_eq!(out[0].id(), "orders:late:40");
    }

    /// Without `idle_timeout`, Flink's behaviour: a quiet stream fires nothing.
    #[test]
    fn no_idle_timeout_no_wake() {
        let spec = Spec::from_str(
            r#"{"key":"id","time":{"field":"ts"},"within":"10s",
                "stages":[{"name":"c","where":"t == \"c\""},
                          {"name":"p","contiguity":"followed_by","where":"t == \"p\""}]}"#,
            Format::Json,
        )
        .unwrap();
        let mut e = Engine::new(&[("o".into(), spec)], EngineOptions::default()).unwrap();
        let mut out = Vec::new();
        let mut b = Batch::default();
        b.push(0, br#"{"id":"o1","t":"c","ts":100000}"#);
        e.on_batch(&b, 0, &mut out);
        assert_eq!(e.next_wake(), None);
        e.on_time(i64::MAX / 2, &mut out);
        assert!(out.is_empty());
    }

    /// Checkpoints taken incrementally at a few points of each recorded case,
    /// kept in a map as the store keeps them, and restored into a fresh
    /// engine at one of them: all later outputs (ids included) are those of
    /// an uninterrupted run.
    #[test]
    fn restore_from_incremental_checkpoints_continues_exactly() {
        use std::collections::BTreeMap;
        for Case {
            path,
            spec,
            flush,
            events,
        } in event_time_cases()
        {
            let n = events.len();
            let batch = |from: usize, to: usize| {
                let mut b = Batch::default();
                for (i, e) in events.iter().enumerate().take(to).skip(from) {
                    b.push(i as u64 * 1000, e.as_bytes());
                }
                b
            };
            let patterns = [("p".to_string(), spec.clone())];
            let mut whole = Engine::new(&patterns, EngineOptions::default()).unwrap();
            let mut want = Vec::new();
            for i in 0..n {
                whole.on_batch(&batch(i, i + 1), 0, &mut want);
            }
            whole.on_end(flush, &mut want);
            for cut in [n / 3, n / 2, n.saturating_sub(1)] {
                let mut a = Engine::new(&patterns, EngineOptions::default()).unwrap();
                a.enable_checkpoints(true);
                let mut got = Vec::new();
                let mut store: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
                let mut meta = a.checkpoint().parts.remove(0).meta;
                for i in 0..cut {
                    a.on_batch(&batch(i, i + 1), 0, &mut got);
                    if i % 2 == 0 || i + 1 == cut {
                        for pc in a.checkpoint().parts {
                            if pc.full {
                                store.clear();
                            }
                            for (_, k, v) in pc.upserts {
                                store.insert(k, v);
                            }
                            for (_, k) in pc.deletes {
                                store.remove(&k);
                            }
                            meta = pc.meta;
                        }
                    }
                }
                let mut b = Engine::new(&patterns, EngineOptions::default()).unwrap();
                b.restore_meta("p", &meta).unwrap();
                for (k, v) in &store {
                    b.restore_key("p", k, v).unwrap();
                }
                for i in cut..n {
                    b.on_batch(&batch(i, i + 1), 0, &mut got);
                }
                b.on_end(flush, &mut got);
                assert_eq!(got, want, "{} cut at {cut}", path.display());
            }
        }
    }

    #[test]
    fn workers_reading_in_shares_equal_one_engine_with_bad_lines() {
        // Two groups (another key field), bad lines among the events, and
        // a batch that is not UTF-8 (each worker then reads all of it).
        let by_user = Spec::from_str(
            r#"{"key":"u","time":{"field":"ts"},"within":"5 s",
                "stages":[{"name":"c","where":"t == \"c\""},
                          {"name":"p","contiguity":"followed_by","where":"t == \"p\""}]}"#,
            Format::Json,
        )
        .unwrap();
        let patterns = [
            ("orders".to_string(), order_spec("10s", "t == \\\"p\\\"")),
            ("users".to_string(), by_user),
        ];
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for (i, (_, l)) in order_events(300).into_iter().enumerate() {
            let with_user = l.replacen('{', &format!(r#"{{"u":"u{}","#, i % 7), 1);
            lines.push(with_user.into_bytes());
            if i % 37 == 5 {
                lines.push(b"not json".to_vec());
            }
            if i % 53 == 9 {
                lines.push(br#"{"id":"o-x","u":"u1","t":"c"}"#.to_vec());
            }
            if i == 200 {
                lines.push(b"{\"id\":\"o\xff\",\"t\":\"c\",\"ts\":1}".to_vec());
            }
        }
        let batches = lines.len().div_ceil(64);
        let run = |workers: u32, shared: bool| {
            let mut engines: Vec<Engine> = (0..workers)
                .map(|w| {
                    let mut e = Engine::new(&patterns, EngineOptions::default()).unwrap();
                    e.set_partition(w, workers);
                    e
                })
                .collect();
            let mut out = Vec::new();
            let mut read_in_shares = 0;
            for (c, chunk) in lines.chunks(64).enumerate() {
                let mut b = Batch::default();
                for (i, l) in chunk.iter().enumerate() {
                    b.push((c * 64 + i) as u64 * 100, l);
                }
                let (n, w) = (b.len(), workers as usize);
                let shares = engines
                    .iter_mut()
                    .enumerate()
                    .map(|(i, e)| e.read_share(&b, i * n / w..(i + 1) * n / w))
                    .collect();
                match split_shares(shares, w).filter(|_| shared) {
                    Some(parts) => {
                        read_in_shares += 1;
                        for (e, part) in engines.iter_mut().zip(parts) {
                            e.on_part(&b, part, 0, &mut out);
                        }
                    }
                    None => {
                        for e in &mut engines {
                            e.on_batch(&b, 0, &mut out);
                        }
                    }
                }
            }
            for e in &mut engines {
                e.on_end(true, &mut out);
            }
            let mut lines: Vec<Vec<u8>> = out.iter().map(|o| o.line().to_vec()).collect();
            lines.sort();
            // Every batch but the one that is not UTF-8.
            assert!(!shared || read_in_shares + 1 == batches);
            lines
        };
        let want = run(1, false);
        assert!(want.iter().any(|l| l.starts_with(b"{\"kind\":\"error\"")));
        assert!(want.iter().any(|l| l.starts_with(b"{\"kind\":\"timeout\"")));
        for workers in [2, 3] {
            assert!(run(workers, true) == want, "{workers} workers");
        }
    }

    fn order_spec(within: &str, pay: &str) -> Spec {
        Spec::from_str(
            &format!(
                r#"{{"key":"id","time":{{"field":"ts"}},"within":"{within}",
                    "stages":[{{"name":"c","where":"t == \"c\""}},
                              {{"name":"p","contiguity":"followed_by","where":"{pay}"}}]}}"#
            ),
            Format::Json,
        )
        .unwrap()
    }

    /// Orders o0.. created every 700 ms, each paid 4, 9, 15 s later or
    /// never (by its number); in time order. Positions: index * 100.
    fn order_events(n: usize) -> Vec<(u64, String)> {
        let mut ev: Vec<(i64, String)> = Vec::new();
        for i in 0..n as i64 {
            let ts = 1_000 + i * 700;
            ev.push((ts, format!(r#"{{"id":"o{i}","t":"c","ts":{ts}}}"#)));
            let delay = [4_000, 9_000, 15_000, -1][(i % 4) as usize];
            if delay > 0 {
                let p = ts + delay;
                ev.push((p, format!(r#"{{"id":"o{i}","t":"p","ts":{p}}}"#)));
            }
        }
        ev.sort_by_key(|e| e.0);
        ev.into_iter()
            .enumerate()
            .map(|(i, (_, l))| (i as u64 * 100, l))
            .collect()
    }

    fn feed(e: &mut Engine, events: &[(u64, String)], out: &mut Vec<Output>) {
        for (pos, line) in events {
            let mut b = Batch::default();
            b.push(*pos, line.as_bytes());
            e.on_batch(&b, 0, out);
        }
    }

    /// An output as `match` would print it, its version taken off.
    fn unversioned(o: &Output) -> String {
        let mut v: serde_json::Value = serde_json::from_slice(o.line()).unwrap();
        v.as_object_mut().unwrap().remove("version");
        v.to_string()
    }

    /// The first position of a match or timeout (from its id).
    fn first_pos(o: &Output) -> u64 {
        let own = o.id().rsplit(':').next().unwrap();
        own.split('-').next().unwrap().parse().unwrap()
    }

    /// A replaced pattern drains: starts before the change are the old
    /// version's and end by its window, starts after are the new one's;
    /// each side equals a run of that version alone, and another pattern of
    /// the same group is untouched. A checkpoint in the middle of the drain,
    /// restored into an engine built from the saved patterns, goes on with
    /// exactly the same outputs.
    #[test]
    fn replacing_a_pattern_drains_the_old_version() {
        let v1 = order_spec("10s", "t == \\\"p\\\"");
        let v2 = order_spec("20s", "t == \\\"p\\\" && ts > 0");
        let other = order_spec("5s", "t == \\\"p\\\"");
        let events = order_events(120);
        let cut = events.len() / 2;
        let change_pos = events[cut].0;
        let both = [
            ("orders".to_string(), v1.clone()),
            ("other".to_string(), other.clone()),
        ];

        // Reference runs: each version alone.
        let mut want_v1 = Vec::new();
        let mut e = Engine::new(&both[..1], EngineOptions::default()).unwrap();
        feed(&mut e, &events, &mut want_v1);
        e.on_end(true, &mut want_v1);
        let mut want_other = Vec::new();
        let mut e = Engine::new(&both[1..], EngineOptions::default()).unwrap();
        feed(&mut e, &events, &mut want_other);
        e.on_end(true, &mut want_other);
        let mut want_v2 = Vec::new();
        let mut e =
            Engine::new(&[("orders".into(), v2.clone())], EngineOptions::default()).unwrap();
        // The new version starts at the watermark the others are at.
        feed(&mut e, &events[cut - 1..cut], &mut Vec::new());
        feed(&mut e, &events[cut..], &mut want_v2);
        e.on_end(true, &mut want_v2);
        let old_side = want_v1.iter().filter(|o| first_pos(o) < change_pos).count();
        let new_side = want_v2
            .iter()
            .filter(|o| first_pos(o) >= change_pos)
            .count();
        assert!(old_side > 20 && new_side > 20, "{old_side} {new_side}");
        let mut want: Vec<String> = want_v1
            .iter()
            .filter(|o| first_pos(o) < change_pos)
            .chain(want_v2.iter().filter(|o| first_pos(o) >= change_pos))
            .chain(&want_other)
            .map(unversioned)
            .collect();
        want.sort();

        for restart_at in [None, Some(cut + 20), Some(cut + 60)] {
            let mut e = Engine::new(&both, EngineOptions::default()).unwrap();
            e.enable_checkpoints(true);
            let mut got = Vec::new();
            feed(&mut e, &events[..cut], &mut got);
            let applied = e
                .apply(
                    &[Change::Put(Box::new(PatternDef {
                        name: "orders".into(),
                        spec: v2.clone(),
                        version: 1,
                        text: None,
                    }))],
                    PendingPolicy::Drain,
                    &mut got,
                )
                .unwrap();
            assert_eq!(applied[0].action, "replaced");
            assert_eq!(
                (applied[0].version, applied[0].previous),
                (Some(2), Some(1))
            );
            assert!(applied[0].draining);
            let states = e.pattern_state(true);
            assert_eq!(states.len(), 3);
            assert!(states[0].draining && states[0].pending.unwrap() > 0);
            let rest = match restart_at {
                None => cut,
                Some(at) => {
                    feed(&mut e, &events[cut..at], &mut got);
                    // The whole state, as a store would hold it.
                    let ck = e.checkpoint();
                    let saved: Vec<SavedPattern> = ck
                        .parts
                        .iter()
                        .map(|p| Engine::saved_pattern(&p.meta).unwrap().unwrap())
                        .collect();
                    let defs: Vec<PatternDef> = saved
                        .iter()
                        .map(|s| PatternDef {
                            name: s.name.clone(),
                            spec: if s.name == "other" {
                                other.clone()
                            } else if s.version == 1 {
                                v1.clone()
                            } else {
                                v2.clone()
                            },
                            version: s.version,
                            text: None,
                        })
                        .collect();
                    let mut b = Engine::with_patterns(&defs, EngineOptions::default()).unwrap();
                    for p in &ck.parts {
                        b.restore_meta(&p.name, &p.meta).unwrap();
                        for (_, k, v) in &p.upserts {
                            b.restore_key(&p.name, k, v).unwrap();
                        }
                    }
                    e = b;
                    at
                }
            };
            feed(&mut e, &events[rest..], &mut got);
            e.on_end(true, &mut got);
            // Everything ended: the old version has drained.
            assert_eq!(e.drained().len(), 1);
            let gone = e.retire(&e.drained()[0].clone()).unwrap();
            assert_eq!((&*gone.0, gone.1), ("orders", 1));
            assert_eq!(e.checkpoint().retired.len(), 1);
            let versions: BTreeSet<&str> = got
                .iter()
                .filter(|o| o.id().starts_with("orders:") && first_pos(o) >= change_pos)
                .map(|o| {
                    if std::str::from_utf8(o.line())
                        .unwrap()
                        .contains("\"version\":2")
                    {
                        "v2"
                    } else {
                        "v1"
                    }
                })
                .collect();
            assert_eq!(
                versions,
                BTreeSet::from(["v2"]),
                "outputs of the new version carry it"
            );
            let mut got: Vec<String> = got.iter().map(unversioned).collect();
            got.sort();
            assert_eq!(got, want, "restart at {restart_at:?}");
        }
    }

    /// `pending=drop`: the old version's partial matches and waiting events
    /// go to `error` with the reason, at once; removal takes the name away.
    #[test]
    fn drop_and_remove() {
        let v1 = order_spec("10s", "t == \\\"p\\\"");
        let events = order_events(20);
        let mut e =
            Engine::new(&[("orders".into(), v1.clone())], EngineOptions::default()).unwrap();
        let mut out = Vec::new();
        feed(&mut e, &events[..10], &mut out);
        let pending = e.pattern_state(true)[0].pending.unwrap();
        assert!(pending > 0);
        out.clear();
        let applied = e
            .apply(
                &[Change::Remove("orders".into())],
                PendingPolicy::Drop,
                &mut out,
            )
            .unwrap();
        assert_eq!(applied[0].action, "removed");
        assert!(applied[0].dropped >= pending as u64);
        assert_eq!(out.len() as u64, applied[0].dropped);
        for o in &out {
            assert_eq!(o.kind, Kind::Error);
            let v: serde_json::Value = serde_json::from_slice(o.line()).unwrap();
            assert!(
                v["reason"].as_str().unwrap().contains("pending=drop"),
                "{v}"
            );
        }
        assert!(e.pattern_state(false).is_empty());
        assert_eq!(e.checkpoint().retired.len(), 1);
        assert!(e
            .apply(
                &[Change::Remove("orders".into())],
                PendingPolicy::Drain,
                &mut out
            )
            .is_err());
        // Removed with draining: what started goes on to its end, nothing
        // new starts, and then the version is gone.
        let mut e =
            Engine::new(&[("orders".into(), v1.clone())], EngineOptions::default()).unwrap();
        let mut out = Vec::new();
        feed(&mut e, &events[..10], &mut out);
        out.clear();
        let cut = events[10].0;
        let a = e
            .apply(
                &[Change::Remove("orders".into())],
                PendingPolicy::Drain,
                &mut out,
            )
            .unwrap();
        assert!(a[0].draining && a[0].version.is_none());
        feed(&mut e, &events[10..], &mut out);
        e.on_end(true, &mut out);
        assert!(
            out.iter().any(|o| o.kind == Kind::Match),
            "started matches complete"
        );
        assert!(
            out.iter().all(|o| first_pos(o) < cut),
            "nothing starts after the removal"
        );
        assert!(out.iter().all(|o| std::str::from_utf8(o.line())
            .unwrap()
            .contains("\"version\":1")));
        let drained = e.drained();
        assert_eq!(drained.len(), 1);
        e.retire(&drained[0]);
        assert!(e.pattern_state(false).is_empty());
        // Unchanged specs keep their state; a new name is added.
        let mut e =
            Engine::new(&[("orders".into(), v1.clone())], EngineOptions::default()).unwrap();
        feed(&mut e, &events[..10], &mut out);
        let before = e.pattern_state(true)[0].pending;
        let a = e
            .apply(
                &[
                    Change::Put(Box::new(PatternDef::new("orders", v1.clone()))),
                    Change::Put(Box::new(PatternDef::new(
                        "big",
                        order_spec("1s", "t == \\\"p\\\""),
                    ))),
                ],
                PendingPolicy::Drain,
                &mut out,
            )
            .unwrap();
        assert_eq!((a[0].action, a[1].action), ("unchanged", "added"));
        assert_eq!(e.pattern_state(true)[0].pending, before);
        assert_eq!(e.pattern_state(true)[1].version, 1);
    }

    /// HTTP ingest's checks follow pattern changes: a removed pattern's key
    /// is no longer required, an added one's is.
    #[test]
    fn the_validator_follows_changes() {
        let by_order = order_spec("10s", "t == \\\"p\\\"");
        let by_user = Spec::from_str(
            r#"{"key":"user","time":{"field":"ts"},"within":"1s",
                "stages":[{"name":"a","where":"t == \"c\""}]}"#,
            Format::Json,
        )
        .unwrap();
        let mut e = Engine::new(&[("orders".into(), by_order)], EngineOptions::default()).unwrap();
        let (check, sets) = e.validator();
        let user_only = br#"{"user":"u1","t":"c","ts":5}"#;
        assert!(check(user_only).is_err());
        let mut out = Vec::new();
        e.apply(
            &[
                Change::Remove("orders".into()),
                Change::Put(Box::new(PatternDef::new("users", by_user))),
            ],
            PendingPolicy::Drain,
            &mut out,
        )
        .unwrap();
        e.update_validator(&sets);
        assert_eq!(check(user_only), Ok(()));
        assert!(check(br#"{"id":"o1","t":"c","ts":5}"#).is_err());
    }

    #[test]
    fn fingerprints_tell_patterns_apart() {
        let a =
            Spec::from_str(r#"{"within":"10s","stages":[{"name":"a"}]}"#, Format::Json).unwrap();
        let b =
            Spec::from_str(r#"{"within":"11s","stages":[{"name":"a"}]}"#, Format::Json).unwrap();
        let c = Spec::from_str(
            r#"{"name":"other","within":"10s","stages":[{"name":"a"}]}"#,
            Format::Json,
        )
        .unwrap();
        assert_ne!(fingerprint(&a), fingerprint(&b));
        // The name is the pattern's label, not its automaton.
        assert_eq!(fingerprint(&a), fingerprint(&c));
    }

    /// Checkpoints are restored only into patterns of the same fingerprint:
    /// a change to how specs print would orphan every saved state. Pinned to
    /// the values of the millisecond-typed fields, before they became
    /// `Duration`s.
    #[test]
    fn fingerprints_stay_as_they_were() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-timeout.yaml");
        let spec = Spec::from_path(&path).unwrap();
        assert_eq!(fingerprint(&spec), "f6aa25bef728ec87");
        // Stage windows, `order_by` and a throwing skip print too.
        let spec = Spec::from_str(
            r#"{"key":"k","time":{"field":"ts","max_out_of_orderness":"1500ms","order_by":["n"]},
                "within":"1h","skip":{"skip_to_first":"b","throw_exception_on_miss":true},
                "stages":[{"name":"a"},{"name":"b","within":"2s","optional":true},
                          {"name":"c","within":250,"where":"n > 1"}]}"#,
            Format::Json,
        )
        .unwrap();
        assert_eq!(fingerprint(&spec), "90cdf20f84d821ce");
    }

    /// Two patterns with one key and time field share a read of each event:
    /// each still runs its own conditions (a group numbers the conditions of
    /// all its specs together), as `match` with both specs does.
    #[test]
    fn patterns_sharing_a_key_keep_their_own_conditions() {
        let big = Spec::from_str(
            r#"{"name":"big","key":"id","time":{"field":"ts"},"within":"10s",
                "stages":[{"name":"c","where":"kind == \"big\" && t == \"c\""},
                          {"name":"p","contiguity":"followed_by","where":"t == \"p\""}]}"#,
            Format::Json,
        )
        .unwrap();
        let probe = Spec::from_str(
            r#"{"name":"probe","key":"id","time":{"field":"ts"},"within":"2s",
                "stages":[{"name":"c","where":"kind == \"probe\""},
                          {"name":"p","contiguity":"followed_by","where":"t == \"p\" && kind == \"probe\""}]}"#,
            Format::Json,
        )
        .unwrap();
        let input = [
            r#"{"id":"b","kind":"big","t":"c","ts":1000}"#,
            r#"{"id":"q","kind":"probe","t":"c","ts":1100}"#,
            r#"{"id":"b","kind":"big","t":"p","ts":1500}"#,
            r#"{"id":"r","kind":"probe","t":"c","ts":1600}"#,
            r#"{"id":"r","kind":"probe","t":"p","ts":1700}"#,
            r#"{"id":"z","kind":"big","t":"c","ts":30000}"#,
        ];
        let patterns = [
            ("big".to_string(), big.clone()),
            ("probe".to_string(), probe.clone()),
        ];
        let mut e = Engine::new(&patterns, EngineOptions::default()).unwrap();
        let mut out = Vec::new();
        let mut b = Batch::default();
        for (i, l) in input.iter().enumerate() {
            b.push(i as u64, l.as_bytes());
        }
        e.on_batch(&b, 0, &mut out);
        e.on_end(false, &mut out);
        let mut got: Vec<String> = out
            .iter()
            .map(|o| {
                let mut v: serde_json::Value = serde_json::from_slice(o.line()).unwrap();
                v.as_object_mut().unwrap().remove("id");
                v.to_string()
            })
            .collect();
        got.sort();
        let set = SpecSet::new(vec![big, probe]).unwrap();
        let plan = Plan::new(&set, &["big".to_string(), "probe".to_string()]).unwrap();
        let mut text = Vec::new();
        crate::replay::run_with(
            &set,
            &plan,
            Cursor::new(input.join("\n").into_bytes()),
            &mut text,
            &mut std::io::sink(),
            &Options {
                end_of_input: EndOfInput::Stop,
                ..Options::default()
            },
            &ManualClock::new(0),
        )
        .unwrap();
        let mut want: Vec<String> = text
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_slice::<serde_json::Value>(l)
                    .unwrap()
                    .to_string()
            })
            .collect();
        want.sort();
        assert_eq!(got, want);
        // b matched by big, r by probe, q and r's pay (a probe event too)
        // timed out by probe; big's conditions never matched a probe event.
        assert_eq!(got.len(), 4, "{got:?}");
    }

    /// Key-partitioned engines (each reads every event, matches its keys)
    /// give a single engine's outputs, ids included, on every recorded case,
    /// in any batching.
    #[test]
    fn partitioned_engines_equal_one_engine_on_recorded_cases() {
        for Case {
            path,
            spec,
            flush,
            events,
        } in event_time_cases()
        {
            let patterns = [("p".to_string(), spec.clone())];
            // `shared`: the workers read the batches in shares for all.
            let run = |workers: u32, size: usize, shared: bool| {
                let mut engines: Vec<Engine> = (0..workers)
                    .map(|w| {
                        let mut e = Engine::new(&patterns, EngineOptions::default()).unwrap();
                        e.set_partition(w, workers);
                        e
                    })
                    .collect();
                let mut out = Vec::new();
                for (c, chunk) in events.chunks(size).enumerate() {
                    let mut b = Batch::default();
                    for (i, e) in chunk.iter().enumerate() {
                        b.push((c * size + i) as u64 * 100, e.as_bytes());
                    }
                    if shared {
                        let (n, w) = (b.len(), workers as usize);
                        let shares = engines
                            .iter_mut()
                            .enumerate()
                            .map(|(i, e)| e.read_share(&b, i * n / w..(i + 1) * n / w))
                            .collect();
                        let parts = split_shares(shares, w).unwrap();
                        for (e, part) in engines.iter_mut().zip(parts) {
                            e.on_part(&b, part, 0, &mut out);
                        }
                        continue;
                    }
                    for e in &mut engines {
                        e.on_batch(&b, 0, &mut out);
                    }
                }
                for e in &mut engines {
                    e.on_end(flush, &mut out);
                }
                let mut lines: Vec<Vec<u8>> = out.iter().map(|o| o.line().to_vec()).collect();
                lines.sort();
                lines
            };
            let want = run(1, 3, false);
            for workers in [2, 3, 5] {
                for size in [1, 4, 1000] {
                    for shared in [false, true] {
                        assert!(
                            run(workers, size, shared) == want,
                            "{}: {workers} workers, batches of {size}, shared {shared}",
                            path.display()
                        );
                    }
                }
            }
        }
    }

    /// The position of offset `offset` of kafka partition `partition`.
    fn kpos(partition: u64, offset: u64) -> u64 {
        (partition << 48) | offset
    }

    fn lines(out: &[Output]) -> Vec<String> {
        let mut l: Vec<String> = out
            .iter()
            .map(|o| String::from_utf8(o.line().to_vec()).unwrap())
            .collect();
        l.sort();
        l
    }

    /// Keys tagged with their partition give the outputs of plain keys
    /// (the key printed without its tag); a partition's state moved to
    /// another engine through the changelog records goes on there with
    /// exactly the outputs one engine gives.
    #[test]
    fn partition_state_moves_between_engines() {
        use std::collections::BTreeSet;
        let spec = order_spec("10s", "t == \\\"p\\\"");
        let part_of = |line: &str| -> u64 {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = v["id"].as_str().unwrap();
            id[1..].parse::<u64>().unwrap() % 3
        };
        let events: Vec<(u64, String)> = order_events(60)
            .into_iter()
            .enumerate()
            .map(|(i, (_, l))| (kpos(part_of(&l), i as u64), l))
            .collect();
        let new = |tag: bool| {
            let mut e =
                Engine::new(&[("o".into(), spec.clone())], EngineOptions::default()).unwrap();
            e.set_partition_tags(tag);
            e
        };
        let whole = |tag: bool| {
            let mut e = new(tag);
            let mut out = Vec::new();
            feed(&mut e, &events, &mut out);
            e.on_end(true, &mut out);
            lines(&out)
        };
        let want = whole(false);
        assert!(want.iter().any(|l| l.contains(r#""kind":"timeout""#)));
        assert!(want.iter().any(|l| l.contains(r#""key":"o7""#)), "{want:?}");
        assert_eq!(whole(true), want);

        // Half the events in one engine, then partition 2 moves.
        let (first, rest) = events.split_at(events.len() / 2);
        let mut a = new(true);
        a.enable_checkpoints(true);
        let mut out = Vec::new();
        feed(&mut a, first, &mut out);
        let cp = a.checkpoint();
        let owned: BTreeSet<u16> = [0, 1, 2].into();
        let records = crate::changelog::records(1, 5, 0, &cp, &owned, &[], &[]);
        let mut replay = crate::changelog::Replay::new(2);
        for r in records.iter().filter(|r| r.partition == 2) {
            let h = crate::changelog::header(5, 1);
            replay.record(Some(&r.key), r.value.as_deref(), Some(&h));
        }
        let state = replay.finish();
        assert!(!state.keys.is_empty());
        let dropped = a.drop_source_partitions(&|p| p == 2);
        assert_eq!(dropped, state.keys.len());
        let mut b = new(true);
        b.enable_checkpoints(false);
        let (restored, skipped) = b
            .restore_partition_keys(&state.patterns(), &state.keys)
            .unwrap();
        assert_eq!((restored, skipped), (state.keys.len(), 0));
        // Another fingerprint: left out.
        let other = vec![("o".to_string(), "0".to_string())];
        assert_eq!(
            new(true)
                .restore_partition_keys(&other, &state.keys)
                .unwrap(),
            (0, state.keys.len())
        );
        for (pos, line) in rest {
            let e = if kafka_partition(*pos) == 2 {
                &mut b
            } else {
                &mut a
            };
            feed(e, &[(*pos, line.clone())], &mut out);
        }
        a.on_end(true, &mut out);
        b.on_end(true, &mut out);
        assert_eq!(lines(&out), want);
    }

    /// With partition tags the watermark is the smallest over the
    /// partitions: a partition behind the others is not late.
    #[test]
    fn the_watermark_waits_for_the_slowest_partition() {
        let spec = order_spec("10s", "t == \\\"p\\\"");
        let events = [
            (kpos(0, 0), r#"{"id":"a","t":"c","ts":1000}"#),
            (kpos(1, 0), r#"{"id":"b","t":"c","ts":1000}"#),
            (kpos(0, 1), r#"{"id":"a","t":"p","ts":100000}"#),
            (kpos(1, 1), r#"{"id":"b","t":"p","ts":2000}"#),
        ];
        let run = |tag: bool| {
            let mut e =
                Engine::new(&[("o".into(), spec.clone())], EngineOptions::default()).unwrap();
            e.set_partition_tags(tag);
            let mut out = Vec::new();
            let ev: Vec<(u64, String)> = events.iter().map(|(p, l)| (*p, l.to_string())).collect();
            feed(&mut e, &ev, &mut out);
            e.on_end(true, &mut out);
            out.iter()
                .map(|o| o.kind.as_str().to_string())
                .collect::<Vec<_>>()
        };
        // One stream: b's pay is late, a times out.
        assert!(run(false).contains(&"late".to_string()), "{:?}", run(false));
        // Per partition: b's pay matches.
        let tagged = run(true);
        assert!(tagged.contains(&"match".to_string()), "{tagged:?}");
        assert!(!tagged.contains(&"late".to_string()), "{tagged:?}");
    }
}
