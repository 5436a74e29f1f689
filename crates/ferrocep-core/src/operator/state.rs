//! Saving and restoring a [`CepOperator`]'s state, key by key, as bytes: the
//! core decides what the bytes are, the runtime where they go.
//!
//! # What is saved
//!
//! - Per key ([`CepOperator::snapshot_key`]): the key's partial matches
//!   (NFA state, Dewey version, start event) in their heap order, the
//!   matches held back by the skip strategy, the shared-buffer nodes those
//!   reach (edges with their versions and lock counts, so that Flink's
//!   counting goes on exactly) and the events of those nodes, each once; the
//!   key's per-timestamp event counts; its events waiting for the watermark
//!   with their arrival numbers; its window timers, also those of partial
//!   matches that are gone (when one fires the key is advanced to the
//!   current time, which forgets event counts: keeping them all keeps the
//!   restored key exactly the saved one).
//! - Per operator ([`CepOperator::snapshot_meta`]): the time domain, the
//!   watermark or processing time, the largest event timestamp received, the
//!   bounded out-of-orderness promise and the next arrival number.
//!
//! Keys are independent: any subset of them can be restored into an operator
//! built from the same pattern (after [`CepOperator::restore_meta`]), and a
//! restored key behaves exactly as the saved one under the same events and
//! time advances. Nodes that no run reaches any more (Flink's counting can
//! leave some) are not saved.
//!
//! # Key groups
//!
//! Keys are placed in [`KEY_GROUPS`] groups (Flink's max parallelism) by a
//! hash of the key that is stable across processes and versions (the runtime
//! uses its `Key::route_hash`; [`stable_key_hash`] is one for any
//! [`StateCodec`] key). State is stored by (key group, key); a worker owns
//! whole key groups ([`key_group_range`]), so a restart with another number
//! of workers reads exactly its groups.
//!
//! # Format (version 1)
//!
//! Integers are LEB128 varints (`var`); signed ones are zigzag-encoded
//! first (`zig`); `bytes` is a `var` length then the bytes. A `ref` to a node
//! is `0` (none), `1` (a node Flink's counting freed: the handle dangles),
//! or `2 + i` for node `i` of this blob. A `version` (Dewey number) is a
//! `var` count ≥ 1 of `var` digits. A `run` is `var` NFA state, `zig` start
//! timestamp, `var` start sequence (`u32::MAX` for the start run), `ref`
//! last node, `version`.
//!
//! Key blob:
//!
//! ```text
//! u8 1 (version) | u8 'K' | var NFA states | var stages
//! var events    { zig timestamp | var sequence | E }
//! var nodes     { var stage | var event | var lock
//!                 var edges { ref target | version | var lock } }
//! var partial   { run }    heap order, the start run included
//! var held      { run }    heap order
//! var counts    { zig timestamp | var count }
//! var waiting   { zig timestamp | var arrival | E }   by (timestamp, arrival)
//! var timers    { zig time }                          in time order
//! ```
//!
//! Nodes come after the nodes their edges point to (edges point to earlier
//! nodes only, so the graph read back has no cycle); every event is taken by
//! a node and every node is reached from a run.
//!
//! Meta blob:
//!
//! ```text
//! u8 1 (version) | u8 'M' | u8 domain (0 event time, 1 processing time)
//! var NFA states | var stages | zig current time | zig largest timestamp
//! u8 promise (0 none, 1 then zig out-of-orderness) | var next arrival
//! ```
//!
//! Decoding checks every count, index and order and returns a
//! [`StateError`] naming the field, never panics, and allocates at most in
//! proportion to the input.

use std::hash::{BuildHasher, Hash};
use std::ops::Range;

use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

use super::{set_bit, CepOperator, TimeDomain, Waiting};
use crate::nfa::buffer::NodeRef;
use crate::nfa::dewey::DeweyNumber;
use crate::nfa::{run_sort_key, EventId, NfaState, Run};

/// Version of the format written (and the only one read).
pub const FORMAT_VERSION: u8 = 1;
const KIND_KEY: u8 = b'K';
const KIND_META: u8 = b'M';

/// Number of key groups (Flink's max parallelism): the most workers state
/// can be spread over. Fixed: changing it moves every key.
pub const KEY_GROUPS: u32 = 128;

/// Why saved state could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The bytes end in the middle of a field.
    #[error("state ends inside {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// A version this build does not read.
    #[error("unsupported state format version {found} (this build reads version {supported})")]
    Version {
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// Meta bytes given for a key or the reverse.
    #[error("expected {expected} state, found a blob of kind {found:#04x}")]
    Kind {
        /// What was expected ("key" or "operator").
        expected: &'static str,
        /// The kind byte found.
        found: u8,
    },
    /// A field has a value it cannot have.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The state was saved by an operator of another pattern.
    #[error(
        "state was saved for an NFA of {saved_states} states and {saved_stages} stages, \
         this one has {states} and {stages}: restore with the pattern it was saved with"
    )]
    NfaMismatch {
        /// States of the saving NFA.
        saved_states: u32,
        /// Stages of the saving NFA.
        saved_stages: u32,
        /// States of this NFA.
        states: u32,
        /// Stages of this NFA.
        stages: u32,
    },
    /// The state was saved in the other time domain.
    #[error("state was saved in {saved:?}, this operator runs in {this:?}")]
    Domain {
        /// The saving operator's domain.
        saved: TimeDomain,
        /// This operator's domain.
        this: TimeDomain,
    },
    /// Bytes follow the end of the state.
    #[error("{count} unexpected bytes after the end of the {what}")]
    Trailing {
        /// What ended.
        what: &'static str,
        /// How many bytes follow.
        count: usize,
    },
}

fn invalid(what: &'static str, detail: impl Into<String>) -> StateError {
    StateError::Invalid {
        what,
        detail: detail.into(),
    }
}

/// A value that can be saved as bytes: the operator's keys and events.
///
/// `decode` reads what `encode` wrote from the front of `input` and advances
/// it past that (encodings must be self-delimiting: they are concatenated);
/// on bytes `encode` did not write it returns an error, never panics. The
/// helpers of this module ([`put_var`], [`get_var`], [`put_bytes`],
/// [`get_bytes`], ...) do the reading and checking.
pub trait StateCodec: Sized {
    /// Appends the value's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads a value from the front of `input`, advancing it.
    fn decode(input: &mut &[u8]) -> Result<Self, StateError>;
}

/// Appends `v` as an LEB128 varint.
pub fn put_var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an LEB128 varint written by [`put_var`]; `what` names the field in
/// errors.
pub fn get_var(input: &mut &[u8], what: &'static str) -> Result<u64, StateError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first().ok_or(StateError::Truncated { what })?;
        *input = rest;
        if shift == 63 && b > 1 {
            return Err(invalid(what, "varint overflows 64 bits"));
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(invalid(what, "varint longer than 10 bytes"))
}

/// Reads a varint that must fit a `u32`.
pub fn get_var_u32(input: &mut &[u8], what: &'static str) -> Result<u32, StateError> {
    let v = get_var(input, what)?;
    u32::try_from(v).map_err(|_| invalid(what, format!("{v} does not fit 32 bits")))
}

/// Appends `v` zigzag-encoded as a varint.
pub fn put_zig(out: &mut Vec<u8>, v: i64) {
    put_var(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads a value written by [`put_zig`].
pub fn get_zig(input: &mut &[u8], what: &'static str) -> Result<i64, StateError> {
    let v = get_var(input, what)?;
    Ok((v >> 1) as i64 ^ -((v & 1) as i64))
}

/// Reads one byte.
pub fn get_u8(input: &mut &[u8], what: &'static str) -> Result<u8, StateError> {
    let (&b, rest) = input.split_first().ok_or(StateError::Truncated { what })?;
    *input = rest;
    Ok(b)
}

/// Appends `bytes` with their length first.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_var(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads bytes written by [`put_bytes`], borrowed from the input.
pub fn get_bytes<'a>(input: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], StateError> {
    let n = get_var(input, what)?;
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= input.len())
        .ok_or(StateError::Truncated { what })?;
    let (bytes, rest) = input.split_at(n);
    *input = rest;
    Ok(bytes)
}

/// Reads UTF-8 text written by [`put_bytes`].
pub fn get_str<'a>(input: &mut &'a [u8], what: &'static str) -> Result<&'a str, StateError> {
    let bytes = get_bytes(input, what)?;
    std::str::from_utf8(bytes).map_err(|e| invalid(what, e.to_string()))
}

/// Reads the count of a list whose elements take at least one byte each:
/// never more than the bytes left, which bounds what a caller allocates.
pub fn get_count(input: &mut &[u8], what: &'static str) -> Result<usize, StateError> {
    let n = get_var(input, what)?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= input.len())
        .ok_or_else(|| {
            invalid(
                what,
                format!("count {n} exceeds the {} bytes left", input.len()),
            )
        })
}

impl StateCodec for u64 {
    fn encode(&self, out: &mut Vec<u8>) {
        put_var(out, *self);
    }
    fn decode(input: &mut &[u8]) -> Result<Self, StateError> {
        get_var(input, "u64")
    }
}

impl StateCodec for u32 {
    fn encode(&self, out: &mut Vec<u8>) {
        put_var(out, u64::from(*self));
    }
    fn decode(input: &mut &[u8]) -> Result<Self, StateError> {
        get_var_u32(input, "u32")
    }
}

impl StateCodec for u8 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
    fn decode(input: &mut &[u8]) -> Result<Self, StateError> {
        get_u8(input, "u8")
    }
}

impl StateCodec for i64 {
    fn encode(&self, out: &mut Vec<u8>) {
        put_zig(out, *self);
    }
    fn decode(input: &mut &[u8]) -> Result<Self, StateError> {
        get_zig(input, "i64")
    }
}

impl StateCodec for i32 {
    fn encode(&self, out: &mut Vec<u8>) {
        put_zig(out, i64::from(*self));
    }
    fn decode(input: &mut &[u8]) -> Result<Self, StateError> {
        let v = get_zig(input, "i32")?;
        i32::try_from(v).map_err(|_| invalid("i32", format!("{v} does not fit 32 bits")))
    }
}

impl StateCodec for char {
    fn encode(&self, out: &mut Vec<u8>) {
        put_var(out, u64::from(*self));
    }
    fn decode(input: &mut &[u8]) -> Result<Self, StateError> {
        let v = get_var_u32(input, "char")?;
        char::from_u32(v).ok_or_else(|| invalid("char", format!("{v:#x} is not a character")))
    }
}

impl StateCodec for String {
    fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.as_bytes());
    }
    fn decode(input: &mut &[u8]) -> Result<Self, StateError> {
        get_str(input, "text").map(str::to_owned)
    }
}

impl StateCodec for Box<str> {
    fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.as_bytes());
    }
    fn decode(input: &mut &[u8]) -> Result<Self, StateError> {
        get_str(input, "text").map(Box::from)
    }
}

impl<T: StateCodec> StateCodec for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode(out);
            }
        }
    }
    fn decode(input: &mut &[u8]) -> Result<Self, StateError> {
        match get_u8(input, "option tag")? {
            0 => Ok(None),
            1 => T::decode(input).map(Some),
            t => Err(invalid("option tag", format!("{t} is neither 0 nor 1"))),
        }
    }
}

impl<A: StateCodec, B: StateCodec> StateCodec for (A, B) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
    fn decode(input: &mut &[u8]) -> Result<Self, StateError> {
        Ok((A::decode(input)?, B::decode(input)?))
    }
}

/// A 64-bit hash of the key's [`StateCodec`] bytes that never changes
/// across processes, machines and versions (FNV-1a), for [`key_group`].
pub fn stable_key_hash<K: StateCodec>(key: &K) -> u64 {
    let mut bytes = Vec::new();
    key.encode(&mut bytes);
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The key group (`0..KEY_GROUPS`) of a key of stable hash `hash` (Flink's
/// `KeyGroupRangeAssignment.assignToKeyGroup`: a murmur finaliser of the
/// hash, modulo the number of groups).
pub fn key_group(hash: u64) -> u32 {
    let mut h = hash;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h % u64::from(KEY_GROUPS)) as u32
}

/// The key groups worker `worker` of `workers` owns (Flink's
/// `computeKeyGroupRangeForOperatorIndex`): contiguous ranges that cover
/// `0..KEY_GROUPS` once. Empty when `worker >= workers`.
pub fn key_group_range(worker: u32, workers: u32) -> Range<u32> {
    if worker >= workers {
        return 0..0;
    }
    let (g, w, p) = (u64::from(KEY_GROUPS), u64::from(worker), u64::from(workers));
    let start = (w * g).div_ceil(p);
    let end = ((w + 1) * g).div_ceil(p);
    start as u32..end as u32
}

/// The worker, of `workers`, whose [`key_group_range`] holds `group` (Flink
/// `computeOperatorIndexForKeyGroup`).
pub fn key_group_worker(group: u32, workers: u32) -> u32 {
    (u64::from(group) * u64::from(workers.max(1)) / u64::from(KEY_GROUPS)) as u32
}

/// A reference to a node as saved.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum NodeSlot {
    None,
    Dangling,
    Node(u32),
}

fn put_ref(out: &mut Vec<u8>, r: NodeSlot) {
    put_var(
        out,
        match r {
            NodeSlot::None => 0,
            NodeSlot::Dangling => 1,
            NodeSlot::Node(i) => 2 + u64::from(i),
        },
    );
}

/// Reads a node reference, which must be below `limit`.
fn get_ref(input: &mut &[u8], limit: usize, what: &'static str) -> Result<NodeSlot, StateError> {
    match get_var(input, what)? {
        0 => Ok(NodeSlot::None),
        1 => Ok(NodeSlot::Dangling),
        v => {
            let i = v - 2;
            if i < limit as u64 {
                Ok(NodeSlot::Node(i as u32))
            } else {
                Err(invalid(
                    what,
                    format!("node {i} is not among the {limit} before it"),
                ))
            }
        }
    }
}

fn put_version(out: &mut Vec<u8>, v: &DeweyNumber) {
    put_var(out, v.len() as u64);
    for d in v.digits() {
        put_var(out, u64::from(d));
    }
}

fn get_version(input: &mut &[u8], what: &'static str) -> Result<DeweyNumber, StateError> {
    let n = get_count(input, what)?;
    if n == 0 {
        return Err(invalid(what, "a version has at least one digit"));
    }
    let mut digits: SmallVec<[u32; 8]> = SmallVec::with_capacity(n);
    for _ in 0..n {
        digits.push(get_var_u32(input, what)?);
    }
    Ok(DeweyNumber::from_digits(&digits))
}

/// A run as saved.
struct RunImage {
    state: u32,
    start_ts: i64,
    start_seq: u32,
    prev: NodeSlot,
    version: DeweyNumber,
}

struct NodeImage {
    stage: u32,
    event: u32,
    lock: u32,
    edges: Vec<(NodeSlot, DeweyNumber, u32)>,
}

/// A key's state read back and checked, not yet in the operator.
struct KeyImage<E> {
    events: Vec<(E, EventId)>,
    nodes: Vec<NodeImage>,
    partial: Vec<RunImage>,
    held: Vec<RunImage>,
    counts: Vec<(i64, u32)>,
    waiting: Vec<(i64, u64, E)>,
    timers: Vec<i64>,
}

/// The shape of the NFA, checked when restoring.
fn nfa_shape<E>(nfa: &crate::nfa::Nfa<E>) -> (u32, u32) {
    (nfa.num_states() as u32, nfa.stage_names().len() as u32)
}

fn put_header(out: &mut Vec<u8>, kind: u8, shape: (u32, u32)) {
    out.push(FORMAT_VERSION);
    out.push(kind);
    put_var(out, u64::from(shape.0));
    put_var(out, u64::from(shape.1));
}

fn get_header(
    input: &mut &[u8],
    kind: u8,
    expected: &'static str,
    shape: (u32, u32),
) -> Result<(), StateError> {
    let version = get_u8(input, "format version")?;
    if version != FORMAT_VERSION {
        return Err(StateError::Version {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let found = get_u8(input, "blob kind")?;
    if found != kind {
        return Err(StateError::Kind { expected, found });
    }
    let states = get_var_u32(input, "number of NFA states")?;
    let stages = get_var_u32(input, "number of stages")?;
    if (states, stages) != shape {
        return Err(StateError::NfaMismatch {
            saved_states: states,
            saved_stages: stages,
            states: shape.0,
            stages: shape.1,
        });
    }
    Ok(())
}

/// The heap order of `runs` is a `JavaPq`'s (each parent sorts at or before
/// its children).
fn check_heap(runs: &[RunImage], what: &'static str) -> Result<(), StateError> {
    let key = |r: &RunImage| run_sort_key(r.start_ts, r.start_seq);
    for (i, r) in runs.iter().enumerate().skip(1) {
        if key(r) < key(&runs[(i - 1) / 2]) {
            return Err(invalid(what, format!("run {i} sorts before its parent")));
        }
    }
    Ok(())
}

/// The nodes reached from `roots` in an order where each node comes after
/// the nodes its edges point to.
fn reachable_nodes<E>(
    store: &crate::nfa::buffer::Store<E>,
    roots: impl Iterator<Item = NodeRef>,
) -> Vec<NodeRef> {
    let mut order = Vec::new();
    let mut seen: FxHashSet<NodeRef> = FxHashSet::default();
    let mut stack: Vec<(NodeRef, usize)> = Vec::new();
    for root in roots {
        if !store.is_live(root) || !seen.insert(root) {
            continue;
        }
        stack.push((root, 0));
        while let Some((r, next)) = stack.last_mut() {
            let r = *r;
            match store.node_edges(r).nth(*next) {
                Some((target, _, _)) => {
                    *next += 1;
                    if let Some(t) = target {
                        if store.is_live(t) && seen.insert(t) {
                            stack.push((t, 0));
                        }
                    }
                }
                None => {
                    stack.pop();
                    order.push(r);
                }
            }
        }
    }
    order
}

fn run_roots(state: &NfaState) -> impl Iterator<Item = NodeRef> + '_ {
    state.all_runs().filter_map(|r| r.prev())
}

impl<K: Clone + Eq + Hash, E> CepOperator<K, E> {
    /// Drops all state of `key` (its partial matches, buffered events and
    /// waiting events), as if it had never been seen. Not reported by
    /// [`Self::take_dirty`]: use it to hand keys to another operator.
    pub fn remove_key(&mut self, key: &K) {
        let (hash, Some(slot)) = self.lookup(key) else {
            return;
        };
        let entry = &self.keys[slot as usize];
        let nodes = reachable_nodes(self.buf.store(), run_roots(&entry.state));
        for r in nodes {
            self.buf.store_mut().remove_node(r);
        }
        if entry.queued > 0 {
            self.waiting.remove_key(slot, entry.gen);
        }
        self.index.remove(hash, slot);
        let entry = self.keys.remove(slot as usize);
        entry.state.recycle(&mut self.buf);
        super::clear_bit(&mut self.changes.stored_bits, slot);
        super::clear_bit(&mut self.changes.changed_bits, slot);
    }
}

impl<K: Clone + Eq + Hash + StateCodec, E: StateCodec> CepOperator<K, E> {
    /// The complete state of `key` (see the [module docs](self)), `None`
    /// when the key has none. Its waiting events and timers are found by a
    /// scan of the operator's queues: to save many keys, use
    /// [`Self::snapshot_keys`], which scans them once.
    pub fn snapshot_key(&self, key: &K) -> Option<Vec<u8>> {
        self.snapshot_keys(std::slice::from_ref(key))
            .pop()
            .flatten()
    }

    /// [`Self::snapshot_key`] of each of `keys`, in order, reading the
    /// operator's queues of waiting events and timers once for all of them.
    pub fn snapshot_keys(&self, keys: &[K]) -> Vec<Option<Vec<u8>>> {
        let slots: Vec<Option<u32>> = keys.iter().map(|k| self.lookup(k).1).collect();
        let live = |slot: u32, gen: u32| self.keys.get(slot as usize).is_some_and(|e| e.gen == gen);
        let mut waiting: FxHashMap<u32, Vec<&Waiting<E>>> = FxHashMap::default();
        let mut timers: FxHashMap<u32, Vec<i64>> = FxHashMap::default();
        let wanted: FxHashSet<u32> = slots.iter().flatten().copied().collect();
        if slots
            .iter()
            .flatten()
            .any(|&s| self.keys[s as usize].queued > 0)
        {
            for w in self.waiting.iter() {
                if wanted.contains(&w.slot) && live(w.slot, w.gen) {
                    waiting.entry(w.slot).or_default().push(w);
                }
            }
        }
        if !wanted.is_empty() {
            for &(at, slot, gen) in self.window_timers.iter() {
                if wanted.contains(&slot) && live(slot, gen) {
                    timers.entry(slot).or_default().push(at);
                }
            }
        }
        slots
            .into_iter()
            .map(|s| {
                let s = s?;
                Some(self.encode_key(
                    s,
                    waiting.remove(&s).unwrap_or_default(),
                    timers.remove(&s).unwrap_or_default(),
                ))
            })
            .collect()
    }

    fn encode_key(
        &self,
        slot: u32,
        mut waiting: Vec<&Waiting<E>>,
        mut timers: Vec<i64>,
    ) -> Vec<u8> {
        let entry = &self.keys[slot as usize];
        let state = &entry.state;
        let store = self.buf.store();
        let mut out = Vec::with_capacity(64);
        put_header(&mut out, KIND_KEY, nfa_shape(&self.nfa));

        let nodes = reachable_nodes(store, run_roots(state));
        let node_index: FxHashMap<NodeRef, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, i as u32))
            .collect();
        let slot_of = |r: Option<NodeRef>| match r {
            None => NodeSlot::None,
            Some(r) => node_index
                .get(&r)
                .map_or(NodeSlot::Dangling, |&i| NodeSlot::Node(i)),
        };
        // Events, each once, in the order nodes first take them.
        let mut event_index: FxHashMap<u32, u32> = FxHashMap::default();
        let mut events = Vec::new();
        for &r in &nodes {
            if let Some((_, ev, _)) = store.node_parts(r) {
                event_index.entry(ev).or_insert_with(|| {
                    events.push(ev);
                    (events.len() - 1) as u32
                });
            }
        }
        put_var(&mut out, events.len() as u64);
        for &ev in &events {
            let e = store.event_entry(ev);
            let id = e.id();
            put_zig(&mut out, id.ts);
            put_var(&mut out, u64::from(id.seq));
            e.event.encode(&mut out);
        }
        put_var(&mut out, nodes.len() as u64);
        for &r in &nodes {
            let (stage, ev, lock) = store.node_parts(r).unwrap_or_default();
            put_var(&mut out, u64::from(stage));
            put_var(
                &mut out,
                u64::from(event_index.get(&ev).copied().unwrap_or(0)),
            );
            put_var(&mut out, u64::from(lock));
            let edges: SmallVec<[_; 2]> = store.node_edges(r).collect();
            put_var(&mut out, edges.len() as u64);
            for (target, version, lock) in edges {
                put_ref(&mut out, slot_of(target));
                put_version(&mut out, &version);
                put_var(&mut out, u64::from(lock));
            }
        }
        let put_run = |out: &mut Vec<u8>, r: &Run| {
            let (ts, seq) = r.start_parts();
            put_var(out, u64::from(r.state()));
            put_zig(out, ts);
            put_var(out, u64::from(seq));
            put_ref(out, slot_of(r.prev()));
            put_version(out, r.version());
        };
        let partial = state.partial_runs(self.nfa.start);
        put_var(&mut out, partial.len() as u64);
        for r in &partial {
            put_run(&mut out, r);
        }
        let held = state.completed_runs();
        put_var(&mut out, held.len() as u64);
        for r in held {
            put_run(&mut out, r);
        }
        let counts = state.counts();
        put_var(&mut out, counts.len() as u64);
        for (ts, n) in counts {
            put_zig(&mut out, ts);
            put_var(&mut out, u64::from(n));
        }
        waiting.sort_unstable_by_key(|w| w.order());
        put_var(&mut out, waiting.len() as u64);
        for w in waiting {
            put_zig(&mut out, w.ts);
            put_var(&mut out, w.seq);
            w.event.encode(&mut out);
        }
        timers.sort_unstable();
        put_var(&mut out, timers.len() as u64);
        for at in timers {
            put_zig(&mut out, at);
        }
        out
    }

    fn decode_key(&self, mut input: &[u8]) -> Result<KeyImage<E>, StateError> {
        let input = &mut input;
        let (num_states, num_stages) = nfa_shape(&self.nfa);
        get_header(input, KIND_KEY, "key", (num_states, num_stages))?;
        let n = get_count(input, "number of events")?;
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            let ts = get_zig(input, "event timestamp")?;
            let seq = get_var_u32(input, "event sequence")?;
            events.push((E::decode(input)?, EventId { ts, seq }));
        }
        let n = get_count(input, "number of nodes")?;
        let mut nodes: Vec<NodeImage> = Vec::with_capacity(n);
        let mut taken = vec![false; events.len()];
        for i in 0..n {
            let stage = get_var_u32(input, "node stage")?;
            if stage >= num_stages {
                return Err(invalid(
                    "node stage",
                    format!("stage {stage} of node {i}, the NFA has {num_stages}"),
                ));
            }
            let event = get_var_u32(input, "node event")?;
            match taken.get_mut(event as usize) {
                Some(t) => *t = true,
                None => {
                    return Err(invalid(
                        "node event",
                        format!("event {event} of node {i}, there are {}", events.len()),
                    ))
                }
            }
            let lock = get_var_u32(input, "node lock count")?;
            let m = get_count(input, "number of edges")?;
            let mut edges = Vec::with_capacity(m.min(4));
            for _ in 0..m {
                let target = get_ref(input, i, "edge target")?;
                let version = get_version(input, "edge version")?;
                let lock = get_var_u32(input, "edge lock count")?;
                edges.push((target, version, lock));
            }
            nodes.push(NodeImage {
                stage,
                event,
                lock,
                edges,
            });
        }
        if let Some(e) = taken.iter().position(|t| !t) {
            return Err(invalid("events", format!("event {e} is in no node")));
        }
        let mut runs = |what: &'static str| -> Result<Vec<RunImage>, StateError> {
            let n = get_count(input, what)?;
            let mut runs = Vec::with_capacity(n);
            for _ in 0..n {
                let state = get_var_u32(input, "run state")?;
                if state >= num_states {
                    return Err(invalid(
                        "run state",
                        format!("state {state}, the NFA has {num_states}"),
                    ));
                }
                runs.push(RunImage {
                    state,
                    start_ts: get_zig(input, "run start timestamp")?,
                    start_seq: get_var_u32(input, "run start sequence")?,
                    prev: get_ref(input, nodes.len(), "run node")?,
                    version: get_version(input, "run version")?,
                });
            }
            check_heap(&runs, what)?;
            Ok(runs)
        };
        let partial = runs("partial matches")?;
        let held = runs("held matches")?;
        // Every node is reached from a run (edges point to earlier nodes).
        let mut reached = vec![false; nodes.len()];
        for r in partial.iter().chain(&held) {
            if let NodeSlot::Node(i) = r.prev {
                reached[i as usize] = true;
            }
        }
        for i in (0..nodes.len()).rev() {
            if !reached[i] {
                return Err(invalid("nodes", format!("node {i} is reached from no run")));
            }
            for (t, _, _) in &nodes[i].edges {
                if let NodeSlot::Node(j) = t {
                    reached[*j as usize] = true;
                }
            }
        }
        let n = get_count(input, "number of event counts")?;
        let mut counts: Vec<(i64, u32)> = Vec::with_capacity(n);
        for _ in 0..n {
            let ts = get_zig(input, "count timestamp")?;
            let c = get_var_u32(input, "event count")?;
            if c == 0 || counts.iter().any(|(t, _)| *t == ts) {
                return Err(invalid(
                    "event counts",
                    format!("count {c} at {ts}: counts are > 0, one per timestamp"),
                ));
            }
            counts.push((ts, c));
        }
        let n = get_count(input, "number of waiting events")?;
        let mut waiting: Vec<(i64, u64, E)> = Vec::with_capacity(n);
        for _ in 0..n {
            let ts = get_zig(input, "waiting event timestamp")?;
            let seq = get_var(input, "waiting event arrival")?;
            if waiting
                .last()
                .is_some_and(|(t, s, _)| (*t, *s) >= (ts, seq))
            {
                return Err(invalid(
                    "waiting events",
                    format!("({ts}, {seq}) is not after the event before it"),
                ));
            }
            waiting.push((ts, seq, E::decode(input)?));
        }
        let n = get_count(input, "number of timers")?;
        let mut timers: Vec<i64> = Vec::with_capacity(n);
        for _ in 0..n {
            let at = get_zig(input, "timer")?;
            if timers.last().is_some_and(|&t| t > at) {
                return Err(invalid(
                    "timers",
                    format!("{at} is before the timer before it"),
                ));
            }
            timers.push(at);
        }
        if !input.is_empty() {
            return Err(StateError::Trailing {
                what: "key state",
                count: input.len(),
            });
        }
        Ok(KeyImage {
            events,
            nodes,
            partial,
            held,
            counts,
            waiting,
            timers,
        })
    }

    /// Puts back the state of `key` saved by [`Self::snapshot_key`] (of an
    /// operator of the same pattern and time domain), replacing any state
    /// the key has. On error the operator is unchanged. The key counts as
    /// stored, not changed, for [`Self::take_dirty`].
    pub fn restore_key(&mut self, key: K, bytes: &[u8]) -> Result<(), StateError> {
        self.restore_key_with(key, bytes, Ok)
    }

    /// [`Self::restore_key`], each event passed through `map` first: a
    /// caller whose events carry derived data that may have changed since
    /// the snapshot (condition bits numbered over another set of patterns)
    /// derives it again. On error the operator is unchanged.
    pub fn restore_key_with(
        &mut self,
        key: K,
        bytes: &[u8],
        mut map: impl FnMut(E) -> Result<E, StateError>,
    ) -> Result<(), StateError> {
        let mut image = self.decode_key(bytes)?;
        image.events = image
            .events
            .into_iter()
            .map(|(e, id)| Ok((map(e)?, id)))
            .collect::<Result<_, StateError>>()?;
        image.waiting = image
            .waiting
            .into_iter()
            .map(|(ts, seq, e)| Ok((ts, seq, map(e)?)))
            .collect::<Result<_, StateError>>()?;
        self.remove_key(&key);
        let start = self.nfa.start;
        let store = self.buf.store_mut();
        let evs: Vec<u32> = image
            .events
            .into_iter()
            .map(|(e, id)| store.restore_event(e, id))
            .collect();
        let refs: Vec<NodeRef> = image
            .nodes
            .iter()
            .map(|n| store.restore_node(n.stage, evs[n.event as usize], n.lock))
            .collect();
        let node = |s: NodeSlot| match s {
            NodeSlot::None => None,
            NodeSlot::Dangling => Some(NodeRef::DANGLING),
            NodeSlot::Node(i) => Some(refs[i as usize]),
        };
        for (n, &r) in image.nodes.into_iter().zip(&refs) {
            for (target, version, lock) in n.edges {
                store.restore_edge(r, node(target), version, lock);
            }
        }
        let to_runs = |runs: Vec<RunImage>| -> Vec<Run> {
            runs.into_iter()
                .map(|r| Run::from_parts(r.state, r.start_ts, r.start_seq, node(r.prev), r.version))
                .collect()
        };
        let state = NfaState::from_parts(
            &mut self.buf,
            start,
            to_runs(image.partial),
            to_runs(image.held),
            &image.counts,
        );
        if state.is_idle() && image.waiting.is_empty() {
            // No state: as after the key's last drop (its timers find
            // nothing to do).
            for r in refs {
                self.buf.store_mut().remove_node(r);
            }
            state.recycle(&mut self.buf);
            return Ok(());
        }
        let hash = self.hasher.hash_one(&key);
        let slot = self.insert_key(hash, key);
        let entry = &mut self.keys[slot as usize];
        let gen = entry.gen;
        entry.queued = image.waiting.len() as u32;
        std::mem::replace(&mut entry.state, state).recycle(&mut self.buf);
        for (ts, seq, event) in image.waiting {
            self.waiting.push_restored(ts, seq, slot, gen, event);
        }
        for at in image.timers {
            self.window_timers.push((at, slot, gen));
        }
        set_bit(&mut self.changes.stored_bits, slot);
        super::clear_bit(&mut self.changes.changed_bits, slot);
        Ok(())
    }

    /// The operator-level state (see the [module docs](self)): no key's.
    pub fn snapshot_meta(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        put_header(&mut out, KIND_META, nfa_shape(&self.nfa));
        out.insert(2, domain_byte(self.domain));
        put_zig(&mut out, self.current);
        put_zig(&mut out, self.max_ts);
        match self.out_of_orderness {
            None => out.push(0),
            Some(d) => {
                out.push(1);
                put_zig(&mut out, d);
            }
        }
        put_var(&mut out, self.waiting.next_seq);
        out
    }

    /// Puts back what [`Self::snapshot_meta`] saved (of an operator of the
    /// same pattern and time domain). On error the operator is unchanged.
    pub fn restore_meta(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let mut input = bytes;
        let input = &mut input;
        // The domain byte sits between the kind and the NFA shape.
        let version = get_u8(input, "format version")?;
        if version != FORMAT_VERSION {
            return Err(StateError::Version {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let kind = get_u8(input, "blob kind")?;
        if kind != KIND_META {
            return Err(StateError::Kind {
                expected: "operator",
                found: kind,
            });
        }
        let saved = match get_u8(input, "time domain")? {
            0 => TimeDomain::EventTime,
            1 => TimeDomain::ProcessingTime,
            d => return Err(invalid("time domain", format!("{d} is neither 0 nor 1"))),
        };
        if saved != self.domain {
            return Err(StateError::Domain {
                saved,
                this: self.domain,
            });
        }
        let shape = nfa_shape(&self.nfa);
        let states = get_var_u32(input, "number of NFA states")?;
        let stages = get_var_u32(input, "number of stages")?;
        if (states, stages) != shape {
            return Err(StateError::NfaMismatch {
                saved_states: states,
                saved_stages: stages,
                states: shape.0,
                stages: shape.1,
            });
        }
        let current = get_zig(input, "current time")?;
        let max_ts = get_zig(input, "largest timestamp")?;
        let out_of_orderness = match get_u8(input, "out-of-orderness tag")? {
            0 => None,
            1 => Some(get_zig(input, "out-of-orderness")?),
            t => {
                return Err(invalid(
                    "out-of-orderness tag",
                    format!("{t} is neither 0 nor 1"),
                ))
            }
        };
        let next_seq = get_var(input, "next arrival")?;
        if !input.is_empty() {
            return Err(StateError::Trailing {
                what: "operator state",
                count: input.len(),
            });
        }
        self.current = current;
        self.max_ts = max_ts;
        self.out_of_orderness = out_of_orderness;
        self.waiting.next_seq = self.waiting.next_seq.max(next_seq);
        Ok(())
    }
}

fn domain_byte(d: TimeDomain) -> u8 {
    match d {
        TimeDomain::EventTime => 0,
        TimeDomain::ProcessingTime => 1,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::output::Collector;
    use crate::pattern::Pattern;
    use crate::spec::JsonEvent;
    use crate::time::{Timestamp, Watermark};

    fn round_trip<T: StateCodec + PartialEq + std::fmt::Debug>(v: T) {
        let mut out = Vec::new();
        v.encode(&mut out);
        let mut input = out.as_slice();
        assert_eq!(T::decode(&mut input).expect("decodes"), v);
        assert!(input.is_empty(), "{v:?} leaves bytes");
        // Every proper prefix is an error.
        for n in 0..out.len() {
            assert!(T::decode(&mut &out[..n]).is_err(), "{v:?} cut at {n}");
        }
    }

    #[test]
    fn scalars_and_texts_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            round_trip(v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -64, 64] {
            round_trip(v);
        }
        round_trip(u32::MAX);
        round_trip(i32::MIN);
        round_trip('é');
        round_trip(String::from("o-1 \"é\""));
        round_trip(Box::<str>::from(""));
        round_trip(Some(Box::<str>::from("k")));
        round_trip(None::<u64>);
        round_trip(('a', 7u32));
    }

    #[test]
    fn bad_scalars_are_errors() {
        // 11 bytes of continuation, and a 10th byte beyond 64 bits.
        assert!(u64::decode(&mut &[0xff; 11][..]).is_err());
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert!(u64::decode(&mut over.as_slice()).is_err());
        assert!(u32::decode(&mut &[0x80, 0x80, 0x80, 0x80, 0x10][..]).is_err());
        assert!(char::decode(&mut &[0x80, 0xb0, 0x03][..]).is_err()); // a surrogate
        assert!(String::decode(&mut &[2, 0xc3, 0x28][..]).is_err());
        assert!(String::decode(&mut &[0xff, 0xff, 0x03, b'a'][..]).is_err());
        assert!(Option::<u8>::decode(&mut &[2, 0][..]).is_err());
    }

    #[test]
    fn json_events_round_trip_narrow_and_wide() {
        let narrow = JsonEvent::from_parts(r#"{"type":"pay"}"#, &[true, false, true]);
        let mut bits = vec![false; 130];
        bits[0] = true;
        bits[64] = true;
        bits[129] = true;
        let wide = JsonEvent::from_parts(r#"{"a":"é"}"#, &bits);
        for e in [narrow, wide, JsonEvent::default()] {
            let mut out = Vec::new();
            e.encode(&mut out);
            let back = JsonEvent::decode(&mut out.as_slice()).expect("decodes");
            assert_eq!(back, e);
            assert_eq!(format!("{back:?}"), format!("{e:?}"));
            for i in 0..200 {
                assert_eq!(back.cond(i), e.cond(i), "bit {i}");
            }
            for n in 0..out.len() {
                assert!(JsonEvent::decode(&mut &out[..n]).is_err());
            }
            // The form is kept: re-encoding gives the same bytes.
            let mut again = Vec::new();
            back.encode(&mut again);
            assert_eq!(again, out);
        }
        assert!(JsonEvent::decode(&mut &[0, 2][..]).is_err());
    }

    #[test]
    fn key_groups_cover_every_group_once() {
        for workers in 1..=KEY_GROUPS + 3 {
            let mut next = 0;
            for w in 0..workers {
                let r = key_group_range(w, workers);
                assert_eq!(r.start, next.min(KEY_GROUPS), "{w} of {workers}");
                assert!(r.clone().all(|g| key_group_worker(g, workers) == w));
                next = r.end.max(next);
            }
            assert_eq!(next, KEY_GROUPS);
            assert!(key_group_range(workers, workers).is_empty());
        }
        let groups: FxHashSet<u32> = (0u64..10_000)
            .map(|k| key_group(stable_key_hash(&k)))
            .collect();
        assert_eq!(groups.len(), KEY_GROUPS as usize);
        // Fixed forever: a change would move every key's state.
        assert_eq!(stable_key_hash(&String::from("o-1")), 0x8b93_ce8a_00a7_367d);
        assert_eq!(key_group(0x8b93_ce8a_00a7_367d), 102);
    }

    type Ev = (char, u32);

    /// An operator with partial matches, a held match and waiting events.
    fn busy_operator() -> CepOperator<u64, Ev> {
        let nfa = Arc::new(
            Pattern::<Ev>::begin_with_skip("a", crate::SkipStrategy::SkipPastLastEvent)
                .where_(|e: &Ev| e.0 == 'a')
                .followed_by_any("b")
                .where_(|e: &Ev| e.0 == 'b')
                .one_or_more()
                .followed_by("c")
                .where_(|e: &Ev| e.0 == 'c')
                .within_ms(100)
                .compile()
                .expect("compiles"),
        );
        let mut op = CepOperator::new(nfa, TimeDomain::EventTime);
        let mut out = Collector::default();
        for (i, (c, ts)) in [('a', 1), ('b', 2), ('a', 3), ('b', 4), ('b', 5), ('c', 9)]
            .into_iter()
            .enumerate()
        {
            op.process_element(&7, (c, i as u32), Timestamp::from_millis(ts), &mut out);
        }
        op.advance_watermark(Watermark::from_millis(5), &mut out);
        op
    }

    /// Flink's `NFAITCase.testNFASerialization` (the NFA state survives
    /// serialization: the copy equals the original): a key's state and the
    /// operator's, saved and restored into a new operator, save to the same
    /// bytes, and both operators then give the same outputs.
    #[test]
    fn nfa_serialization() {
        let op = busy_operator();
        let (blob, meta) = (op.snapshot_key(&7).expect("state"), op.snapshot_meta());
        let mut copy = CepOperator::new(op.nfa().clone(), TimeDomain::EventTime);
        copy.restore_meta(&meta).expect("meta");
        copy.restore_key(7, &blob).expect("key");
        assert_eq!(copy.snapshot_key(&7), Some(blob));
        assert_eq!(copy.snapshot_meta(), meta);
        let (mut a, mut b) = (op, copy);
        let (mut out_a, mut out_b) = (Collector::default(), Collector::default());
        for (c, ts) in [('b', 10), ('c', 11), ('a', 12), ('c', 13)] {
            a.process_element(&7, (c, 0), Timestamp::from_millis(ts), &mut out_a);
            b.process_element(&7, (c, 0), Timestamp::from_millis(ts), &mut out_b);
        }
        a.advance_watermark(Watermark::from_millis(i64::MAX), &mut out_a);
        b.advance_watermark(Watermark::from_millis(i64::MAX), &mut out_b);
        assert!(!out_a.outputs.is_empty());
        assert_eq!(out_a.outputs, out_b.outputs);
    }

    #[test]
    fn corrupt_key_state_is_an_error() {
        let op = busy_operator();
        let blob = op.snapshot_key(&7).expect("key 7 has state");
        let meta = op.snapshot_meta();
        assert!(blob.len() > 40, "{} bytes", blob.len());
        let mut fresh = CepOperator::new(op.nfa().clone(), TimeDomain::EventTime);
        fresh.restore_meta(&meta).expect("restores");
        fresh.restore_key(7, &blob).expect("restores");
        assert_eq!(fresh.snapshot_key(&7), Some(blob.clone()));
        for n in 0..blob.len() {
            assert!(fresh.restore_key(7, &blob[..n]).is_err(), "cut at {n}");
        }
        for n in 0..meta.len() {
            assert!(fresh.restore_meta(&meta[..n]).is_err(), "cut at {n}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(matches!(
            fresh.restore_key(7, &longer),
            Err(StateError::Trailing { .. })
        ));
        let mut v2 = blob.clone();
        v2[0] = 2;
        assert!(matches!(
            fresh.restore_key(7, &v2),
            Err(StateError::Version { found: 2, .. })
        ));
        assert!(matches!(
            fresh.restore_key(7, &meta),
            Err(StateError::Kind { .. })
        ));
        let other = CepOperator::<u64, Ev>::new(
            Arc::new(
                Pattern::<Ev>::begin("a")
                    .where_(|e: &Ev| e.0 == 'a')
                    .compile()
                    .expect("compiles"),
            ),
            TimeDomain::ProcessingTime,
        );
        let mut other = other;
        assert!(matches!(
            other.restore_key(7, &blob),
            Err(StateError::NfaMismatch { .. })
        ));
        assert!(matches!(
            other.restore_meta(&meta),
            Err(StateError::Domain { .. })
        ));
        // A failed restore leaves the key as it was.
        assert_eq!(fresh.snapshot_key(&7), Some(blob));
    }

    proptest! {
        /// Any byte flipped, inserted or removed, anywhere: an error or a
        /// state that restores, never a panic; and an operator restored
        /// from such bytes runs to the end without panicking.
        #[test]
        fn damaged_state_never_panics(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let op = busy_operator();
            let mut blob = op.snapshot_key(&7).expect("key 7 has state");
            let mut meta = op.snapshot_meta();
            for (at, byte, how) in edits {
                for b in [&mut blob, &mut meta] {
                    let i = at.index(b.len());
                    match how {
                        0 => b[i] ^= byte | 1,
                        1 => b.insert(i, byte),
                        _ => {
                            b.remove(i);
                        }
                    }
                }
            }
            let mut fresh = CepOperator::new(op.nfa().clone(), TimeDomain::EventTime);
            let _ = fresh.restore_meta(&meta);
            if fresh.restore_key(7, &blob).is_ok() {
                let mut out = Collector::default();
                fresh.process_element(&7, ('c', 99), Timestamp::from_millis(50), &mut out);
                fresh.advance_processing_time(Timestamp::MAX, &mut out);
                let _ = fresh.snapshot_key(&7);
                fresh.remove_key(&7);
            }
        }
    }

    /// Every byte of a key's state flipped in a few ways: an error, or a
    /// state that runs to the end without panicking (the NFA trusts lock
    /// counts only as far as it must).
    #[test]
    fn every_flipped_byte_is_safe() {
        let op = busy_operator();
        let blob = op.snapshot_key(&7).expect("key 7 has state");
        for i in 0..blob.len() {
            for x in [1u8, 2, 3, 4, 8, 16, 32, 64, 128, 0xff] {
                let mut b = blob.clone();
                b[i] ^= x;
                let mut fresh =
                    CepOperator::<u64, Ev>::new(op.nfa().clone(), TimeDomain::EventTime);
                if fresh.restore_key(7, &b).is_ok() {
                    let mut out = Collector::default();
                    fresh.process_element(&7, ('c', 99), Timestamp::from_millis(50), &mut out);
                    fresh.advance_watermark(Watermark::MAX, &mut out);
                }
            }
        }
    }

    #[test]
    fn undamaged_runs_to_the_end() {
        let op = busy_operator();
        let blob = op.snapshot_key(&7).expect("key 7 has state");
        let meta = op.snapshot_meta();
        let mut fresh = CepOperator::new(op.nfa().clone(), TimeDomain::EventTime);
        fresh.restore_meta(&meta).unwrap();
        fresh.restore_key(7, &blob).unwrap();
        let mut op = op;
        let (mut o1, mut o2) = (Collector::default(), Collector::default());
        op.process_element(&7, ('c', 99), Timestamp::from_millis(50), &mut o1);
        op.advance_watermark(Watermark::MAX, &mut o1);
        fresh.process_element(&7, ('c', 99), Timestamp::from_millis(50), &mut o2);
        fresh.advance_watermark(Watermark::MAX, &mut o2);
        assert_eq!(o1.outputs, o2.outputs);
    }

    #[test]
    fn take_dirty_lists_changed_and_dropped_keys() {
        let mut op = busy_operator();
        assert_eq!(op.take_dirty(), (vec![], vec![]), "tracking is off");
        op.set_change_tracking(true);
        assert_eq!(op.take_dirty(), (vec![7], vec![]), "existing keys count");
        assert_eq!(op.take_dirty(), (vec![], vec![]));
        let mut out = Collector::default();
        op.process_element(&8, ('a', 10), Timestamp::from_millis(20), &mut out);
        op.advance_watermark(Watermark::from_millis(6), &mut out);
        // Key 7 was not touched: its next event waits for time 9.
        assert_eq!(op.take_dirty(), (vec![8], vec![]));
        // Key 8 is dropped once its match times out; 9 comes and goes
        // between two checkpoints and is never reported.
        op.process_element(&9, ('a', 11), Timestamp::from_millis(30), &mut out);
        op.advance_watermark(Watermark::from_millis(500), &mut out);
        assert_eq!(op.num_keys(), 0);
        let (changed, mut dropped) = op.take_dirty();
        dropped.sort_unstable();
        assert_eq!((changed, dropped), (vec![], vec![7, 8]));
        // Restored keys are stored, not changed; removed keys are not reported.
        let mut op2 = busy_operator();
        let blob = op2.snapshot_key(&7).expect("state");
        op2.remove_key(&7);
        op2.set_change_tracking(true);
        op2.restore_key(7, &blob).expect("restores");
        assert_eq!(op2.take_dirty(), (vec![], vec![]));
        op2.remove_key(&7);
        assert_eq!(op2.take_dirty(), (vec![], vec![]));
    }
}
