//! The shared buffer (Flink `SharedBuffer` + `SharedBufferAccessor`): events
//! are stored once and reference-counted; a node is (stage, event) with
//! versioned edges to the previous node of each branch that took it. Partial
//! matches that share a prefix share its nodes, so nothing is copied per
//! partial match.
//!
//! One buffer serves every key of an operator: nodes and events live in slot vectors
//! and are addressed by index, so a key costs no map of its own. Locking and
//! release follow Flink's counting exactly (edges have their own counts and
//! vanish when released), since that decides which paths a later extraction
//! can still see.
//!
//! This module owns that store ([`Store`]) and the handles into it ([`EventId`],
//! [`NodeRef`], [`EventIdx`]); it knows nothing of runs. The public
//! [`SharedBuffer`](super::SharedBuffer) is defined in `run`: it is this store
//! plus the run vectors processing reuses, which are `run`'s.

use std::num::NonZeroU32;

use crate::slots::{prefetch, Slots};
use smallvec::SmallVec;

use super::dewey::{DeweyNumber, PackedDewey};

/// Identity of an event within its key: timestamp, then arrival order among
/// the stored events of that timestamp (Flink `EventId`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId {
    /// Event timestamp.
    pub ts: i64,
    /// Sequence number among the key's stored events of `ts`.
    pub seq: u32,
}

/// One extracted path: (stage, event), oldest first.
pub(crate) type Path = SmallVec<[(u32, EventIdx); 4]>;
/// All paths of an extraction; the first is the emitted one.
pub(crate) type Paths = SmallVec<[Path; 1]>;

/// Handle of a stored event.
pub(crate) type EventIdx = u32;

/// Handle of a node; `gen` detects a handle to a node that was freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NodeRef {
    idx: u32,
    // Never zero, so that `Option<NodeRef>` takes 8 bytes in every run.
    gen: NonZeroU32,
}

impl<E> EventEntry<E> {
    /// The id (`seq` is `u32::MAX` until the event is first taken).
    #[inline]
    pub(crate) fn id(&self) -> EventId {
        EventId {
            ts: self.ts,
            seq: self.seq.get().wrapping_sub(SEQ_OFFSET),
        }
    }

    fn new(event: E, id: EventId, lock: u32) -> Self {
        EventEntry {
            event,
            ts: id.ts,
            seq: encode_seq(id.seq),
            lock,
        }
    }
}

/// `seq` is kept plus [`SEQ_OFFSET`], so that the "not yet taken" `u32::MAX`
/// is 1 and zero is never a value: the niche that lets a free slot of the
/// event store fit in the entry's 40 bytes rather than 48.
const SEQ_OFFSET: u32 = 2;

/// `seq + SEQ_OFFSET`; the one number that does not fit, `u32::MAX - 1` (the
/// key's 4,294,967,295th event of one timestamp, where the counters of
/// [`super::run`] wrap anyway), is kept as the one below it.
#[inline]
fn encode_seq(seq: u32) -> NonZeroU32 {
    NonZeroU32::new(seq.wrapping_add(SEQ_OFFSET)).unwrap_or(NonZeroU32::MAX)
}

pub(crate) struct EventEntry<E> {
    pub(crate) event: E,
    // The event's id as two fields, so that the entry packs in 16 bytes
    // beside the event.
    ts: i64,
    seq: NonZeroU32,
    lock: u32,
}

/// An edge whose version takes more than a [`PackedDewey`] (in
/// [`Edges::Many`]).
struct Edge {
    target: Option<NodeRef>,
    version: DeweyNumber,
    lock: u32,
}

/// An edge whose version packs in 8 bytes: nearly every edge. The version
/// is last, so that its niche is past the bytes of [`Edges::Many`].
#[repr(C)]
struct SmallEdge {
    target: Option<NodeRef>,
    lock: u32,
    version: PackedDewey,
}

struct Node {
    gen: NonZeroU32,
    stage: u32,
    event: EventIdx,
    lock: u32,
    edges: Edges,
}

/// A node's edges. Nearly every node has one, with a version that packs: it
/// is kept in the node, in 24 bytes (the enum's tag lives in the niche of
/// the packed version), so that a node takes 40 bytes. A node with several
/// edges, or one whose version does not pack, keeps them on the heap.
enum Edges {
    None,
    One(SmallEdge),
    // Boxed, so that the variant fits beside the small edge's niche.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Edge>>),
}

impl Edges {
    #[inline(always)]
    fn len(&self) -> usize {
        match self {
            Edges::None => 0,
            Edges::One(_) => 1,
            Edges::Many(v) => v.len(),
        }
    }

    /// Edge `i`'s target (`i < len`).
    #[inline]
    fn target(&self, i: usize) -> Option<NodeRef> {
        match self {
            Edges::One(e) => e.target,
            Edges::Many(v) => v[i].target,
            Edges::None => None,
        }
    }

    /// Edge `i`'s lock count (`i < len`).
    #[inline]
    fn lock(&self, i: usize) -> u32 {
        match self {
            Edges::One(e) => e.lock,
            Edges::Many(v) => v[i].lock,
            Edges::None => 0,
        }
    }

    /// Edge `i`'s lock count (`i < len`), to change.
    #[inline(always)]
    fn lock_mut(&mut self, i: usize) -> &mut u32 {
        match self {
            Edges::One(e) => &mut e.lock,
            Edges::Many(v) => &mut v[i].lock,
            Edges::None => unreachable!("lock of a node without edges"),
        }
    }

    /// Edge `i`'s version (`i < len`).
    #[inline]
    fn version(&self, i: usize) -> DeweyNumber {
        match self {
            Edges::One(e) => e.version.unpack(),
            Edges::Many(v) => v[i].version.clone(),
            Edges::None => unreachable!("version of a node without edges"),
        }
    }

    /// Whether `v` is compatible with edge `i`'s version (`i < len`).
    #[inline(always)]
    fn compatible(&self, i: usize, v: &DeweyNumber) -> bool {
        match self {
            Edges::One(e) => e.version.is_compatible_from(v),
            Edges::Many(edges) => v.is_compatible_with(&edges[i].version),
            Edges::None => false,
        }
    }

    #[inline(always)]
    fn push(&mut self, target: Option<NodeRef>, version: &DeweyNumber, lock: u32) {
        match self {
            Edges::None => {
                *self = match PackedDewey::pack(version) {
                    Some(version) => Edges::One(SmallEdge {
                        target,
                        lock,
                        version,
                    }),
                    None => Edges::Many(Box::new(vec![Edge {
                        target,
                        version: version.clone(),
                        lock,
                    }])),
                }
            }
            Edges::Many(v) => v.push(Edge {
                target,
                version: version.clone(),
                lock,
            }),
            Edges::One(first) => {
                let first = Edge {
                    target: first.target,
                    version: first.version.unpack(),
                    lock: first.lock,
                };
                let e = Edge {
                    target,
                    version: version.clone(),
                    lock,
                };
                *self = Edges::Many(Box::new(vec![first, e]));
            }
        }
    }

    /// Removes edge `i` (`i < len`), keeping the order; returns its target
    /// and version.
    #[inline(always)]
    fn remove(&mut self, i: usize) -> (Option<NodeRef>, DeweyNumber) {
        match self {
            Edges::One(e) => {
                let r = (e.target, e.version.unpack());
                *self = Edges::None;
                r
            }
            Edges::Many(v) => {
                let e = v.remove(i);
                (e.target, e.version)
            }
            Edges::None => unreachable!("remove from a node without edges"),
        }
    }
}

/// Events and nodes of all partial matches of one operator (Flink's
/// `SharedBuffer`); the public [`SharedBuffer`](super::SharedBuffer) holds it.
pub(crate) struct Store<E> {
    events: Slots<EventEntry<E>>,
    nodes: Slots<Node>,
    next_gen: NonZeroU32,
    /// Nodes created for the event being processed: (stage, node).
    current_nodes: Vec<(u32, NodeRef)>,
}

impl<E> Default for Store<E> {
    fn default() -> Self {
        Store {
            events: Slots::default(),
            nodes: Slots::default(),
            next_gen: NonZeroU32::MIN,
            current_nodes: Vec::new(),
        }
    }
}

/// Lock counting as Flink's `Lockable.release`: true when the count reaches
/// (or already was) zero.
fn release_count(lock: &mut u32) -> bool {
    if *lock == 0 {
        return true;
    }
    *lock -= 1;
    *lock == 0
}

impl<E> Store<E> {
    /// Number of events held.
    pub(crate) fn num_events(&self) -> usize {
        self.events.len()
    }

    /// Number of nodes held.
    pub(crate) fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Stores the event being processed, locked until [`Self::finish_event`]
    /// (Flink's `EventWrapper`). Its id is filled in when first taken.
    pub(crate) fn begin_event(&mut self, event: E, ts: i64) -> EventIdx {
        self.current_nodes.clear();
        self.events
            .insert(EventEntry::new(event, EventId { ts, seq: u32::MAX }, 1)) as EventIdx
    }

    /// Releases the processing lock of the current event.
    pub(crate) fn finish_event(&mut self, ev: EventIdx) {
        self.current_nodes.clear();
        self.release_event(ev);
    }

    pub(crate) fn event(&self, ev: EventIdx) -> &E {
        &self.events[ev as usize].event
    }

    /// Starts loading node `r` (a run's last node), which the key's next
    /// event will read.
    #[inline]
    pub(crate) fn prefetch_node(&self, r: NodeRef) {
        prefetch(self.nodes.addr(r.idx as usize));
    }

    /// Starts loading the event entry of node `r`, if the node is there (it
    /// is read: prefetch it first).
    #[inline]
    pub(crate) fn prefetch_node_event(&self, r: NodeRef) {
        if let Some(n) = self.node(r) {
            prefetch(self.events.addr(n.event as usize));
        }
    }

    /// The event of node `r`, if the node is there (it and the event's
    /// entry are read: prefetch them first).
    #[inline]
    pub(crate) fn node_event(&self, r: NodeRef) -> Option<&E> {
        let n = self.node(r)?;
        self.events.get(n.event as usize).map(|e| &e.event)
    }

    pub(crate) fn event_entry(&self, ev: EventIdx) -> &EventEntry<E> {
        &self.events[ev as usize]
    }

    pub(crate) fn set_event_id(&mut self, ev: EventIdx, id: EventId) {
        let e = &mut self.events[ev as usize];
        e.ts = id.ts;
        e.seq = encode_seq(id.seq);
    }

    fn release_event(&mut self, ev: EventIdx) {
        if let Some(e) = self.events.get_mut(ev as usize) {
            if release_count(&mut e.lock) {
                self.events.remove(ev as usize);
            }
        }
    }

    fn node(&self, r: NodeRef) -> Option<&Node> {
        self.nodes.get(r.idx as usize).filter(|n| n.gen == r.gen)
    }

    fn node_mut(&mut self, r: NodeRef) -> Option<&mut Node> {
        self.nodes
            .get_mut(r.idx as usize)
            .filter(|n| n.gen == r.gen)
    }

    /// Flink `put`: stores the current event under `stage` with an edge to
    /// `previous` labelled `version`.
    pub(crate) fn put(
        &mut self,
        stage: u32,
        ev: EventIdx,
        previous: Option<NodeRef>,
        version: &DeweyNumber,
    ) -> NodeRef {
        if let Some(p) = previous {
            self.lock_node(p, version);
        }
        let existing = self
            .current_nodes
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, r)| *r)
            .filter(|r| self.node(*r).is_some());
        let r = match existing {
            Some(r) => r,
            None => {
                self.events[ev as usize].lock += 1;
                let gen = self.next_gen;
                self.next_gen =
                    NonZeroU32::new(gen.get().wrapping_add(1)).unwrap_or(NonZeroU32::MIN);
                let idx = self.nodes.insert(Node {
                    gen,
                    stage,
                    event: ev,
                    lock: 0,
                    edges: Edges::None,
                }) as u32;
                let r = NodeRef { idx, gen };
                self.current_nodes.push((stage, r));
                r
            }
        };
        if let Some(n) = self.node_mut(r) {
            n.edges.push(previous, version, 0);
        }
        r
    }

    /// Flink `lockNode`.
    #[inline]
    pub(crate) fn lock_node(&mut self, r: NodeRef, version: &DeweyNumber) {
        if let Some(n) = self.node_mut(r) {
            n.lock += 1;
            for i in 0..n.edges.len() {
                if n.edges.compatible(i, version) {
                    *n.edges.lock_mut(i) += 1;
                }
            }
        }
    }

    /// Flink `releaseNode`: releases the node and, transitively, the edges of
    /// `version` and nodes whose count drops to zero.
    pub(crate) fn release_node(&mut self, r: NodeRef, version: &DeweyNumber) {
        // Flink's stack of (node, version), its top kept apart: nearly every
        // release walks a chain (one edge released per node), which then
        // never touches the rest, and the first version is not copied.
        let mut cur = r;
        let mut owned: Option<DeweyNumber> = None;
        let mut rest: SmallVec<[(NodeRef, DeweyNumber); 4]> = SmallVec::new();
        // A node that is gone stops the whole release, as Flink's `break`.
        while let Some(n) = self
            .nodes
            .get_mut(cur.idx as usize)
            .filter(|n| n.gen == cur.gen)
        {
            let v = owned.as_ref().unwrap_or(version);
            let mut top: Option<(NodeRef, DeweyNumber)> = None;
            let mut i = 0;
            while i < n.edges.len() {
                if n.edges.compatible(i, v) && release_count(n.edges.lock_mut(i)) {
                    if let (Some(t), version) = n.edges.remove(i) {
                        if let Some(below) = top.replace((t, version)) {
                            rest.push(below);
                        }
                    }
                    continue;
                }
                i += 1;
            }
            if release_count(&mut n.lock) {
                let ev = n.event;
                self.nodes.remove(cur.idx as usize);
                self.release_event(ev);
            }
            match top.or_else(|| rest.pop()) {
                Some((t, v)) => {
                    cur = t;
                    owned = Some(v);
                }
                None => break,
            }
        }
        if !rest.spilled() && rest.is_empty() {
            // Nearly always: it owns nothing, no drop to call.
            std::mem::forget(rest);
        }
    }

    /// Flink `extractPatterns`: every path back from `r` compatible with
    /// `version`, each as (stage, event) oldest first; the first is the one
    /// Flink emits.
    pub(crate) fn extract(&self, r: NodeRef, version: &DeweyNumber, first_only: bool) -> Paths {
        // Nearly every path is a chain (one compatible edge per node): it is
        // followed without the general walk's stack and copies; at the first
        // fork the general walk starts over (extraction changes nothing).
        let mut path = Path::new();
        let mut entry = Some(r);
        let mut owned: Option<DeweyNumber> = None;
        loop {
            let Some(nr) = entry else {
                path.reverse();
                let mut result = Paths::new();
                result.push(path);
                return result;
            };
            // A dead end without a fork: the general walk finds nothing.
            let Some(n) = self.node(nr) else {
                return Paths::new();
            };
            path.push((n.stage, n.event));
            let v = owned.as_ref().unwrap_or(version);
            let mut next: Option<usize> = None;
            for i in 0..n.edges.len() {
                if n.edges.compatible(i, v) {
                    if next.is_some() {
                        return self.extract_forks(r, version, first_only);
                    }
                    next = Some(i);
                }
            }
            match next {
                Some(i) => {
                    entry = n.edges.target(i);
                    owned = Some(n.edges.version(i));
                }
                None => return Paths::new(),
            }
        }
    }

    /// [`Self::extract`] through forks.
    #[cold]
    #[inline(never)]
    fn extract_forks(&self, r: NodeRef, version: &DeweyNumber, first_only: bool) -> Paths {
        let mut result = Paths::new();
        if self.node(r).is_none() {
            return result;
        }
        struct St {
            entry: Option<NodeRef>,
            version: DeweyNumber,
            path: Path,
        }
        let mut stack: SmallVec<[St; 4]> = SmallVec::new();
        stack.push(St {
            entry: Some(r),
            version: version.clone(),
            path: Path::new(),
        });
        while let Some(st) = stack.pop() {
            let St {
                mut entry,
                mut version,
                mut path,
            } = st;
            // Follow the branch; only forks go through the stack. The last
            // compatible edge is followed at once, which is where popping it
            // would resume, so the order of paths is Flink's.
            loop {
                let Some(nr) = entry else {
                    path.reverse();
                    result.push(path);
                    if first_only {
                        return result;
                    }
                    break;
                };
                let Some(n) = self.node(nr) else { break };
                path.push((n.stage, n.event));
                let mut next: Option<usize> = None;
                for i in 0..n.edges.len() {
                    if n.edges.compatible(i, &version) {
                        if let Some(prev) = next.replace(i) {
                            stack.push(St {
                                entry: n.edges.target(prev),
                                version: n.edges.version(prev),
                                path: path.clone(),
                            });
                        }
                    }
                }
                match next {
                    Some(i) => {
                        entry = n.edges.target(i);
                        version = n.edges.version(i);
                    }
                    None => break,
                }
            }
        }
        result
    }
}
/// Reading and rebuilding one key's part of the store, for snapshots
/// (`operator::state`): the nodes a key's runs reach and their events.
impl<E> Store<E> {
    /// Whether `r` is a live node (not freed since the handle was made).
    pub(crate) fn is_live(&self, r: NodeRef) -> bool {
        self.node(r).is_some()
    }

    /// The timestamp of the event of node `r` (Flink's `previousTimestamp`
    /// of a run whose last node is `r`).
    pub(crate) fn node_ts(&self, r: NodeRef) -> i64 {
        match self.node_parts(r) {
            Some((_, ev, _)) => self.event_entry(ev).id().ts,
            None => -1,
        }
    }

    /// A live node's stage, event and lock count.
    pub(crate) fn node_parts(&self, r: NodeRef) -> Option<(u32, EventIdx, u32)> {
        self.node(r).map(|n| (n.stage, n.event, n.lock))
    }

    /// A live node's edges, in order: (target, version, lock count).
    pub(crate) fn node_edges(
        &self,
        r: NodeRef,
    ) -> impl Iterator<Item = (Option<NodeRef>, DeweyNumber, u32)> + '_ {
        let edges = self.node(r).map(|n| &n.edges);
        (0..edges.map_or(0, Edges::len)).filter_map(move |i| {
            let e = edges?;
            Some((e.target(i), e.version(i), e.lock(i)))
        })
    }

    /// Stores a restored event, unlocked until nodes take it
    /// ([`Self::restore_node`]).
    pub(crate) fn restore_event(&mut self, event: E, id: EventId) -> EventIdx {
        self.events.insert(EventEntry::new(event, id, 0)) as EventIdx
    }

    /// Adds a restored node (edges come with [`Self::restore_edge`]); the
    /// node holds its event, as a node made by `put` does.
    pub(crate) fn restore_node(&mut self, stage: u32, ev: EventIdx, lock: u32) -> NodeRef {
        if let Some(e) = self.events.get_mut(ev as usize) {
            e.lock += 1;
        }
        let gen = self.next_gen;
        self.next_gen = NonZeroU32::new(gen.get().wrapping_add(1)).unwrap_or(NonZeroU32::MIN);
        let idx = self.nodes.insert(Node {
            gen,
            stage,
            event: ev,
            lock,
            edges: Edges::None,
        }) as u32;
        NodeRef { idx, gen }
    }

    /// Appends an edge to a restored node.
    pub(crate) fn restore_edge(
        &mut self,
        r: NodeRef,
        target: Option<NodeRef>,
        version: DeweyNumber,
        lock: u32,
    ) {
        if let Some(n) = self.node_mut(r) {
            n.edges.push(target, &version, lock);
        }
    }

    /// Frees a node whatever its counts (its key is being removed),
    /// releasing its event.
    pub(crate) fn remove_node(&mut self, r: NodeRef) {
        if let Some(n) = self.node(r) {
            let ev = n.event;
            self.nodes.remove(r.idx as usize);
            self.release_event(ev);
        }
    }
}

impl NodeRef {
    /// A handle that is never live: what a run or edge holds after Flink's
    /// counting freed its node, restored as such. No store reaches
    /// `u32::MAX` nodes.
    pub(crate) const DANGLING: NodeRef = NodeRef {
        idx: u32::MAX,
        gen: NonZeroU32::MAX,
    };
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Nodes and edges are held per pending partial match: keep them small.
    #[test]
    fn compact_nodes() {
        assert_eq!(std::mem::size_of::<Option<NodeRef>>(), 8);
        assert_eq!(std::mem::size_of::<SmallEdge>(), 20);
        assert_eq!(std::mem::size_of::<Edges>(), 24);
        assert_eq!(std::mem::size_of::<Node>(), 40);
        assert_eq!(std::mem::size_of::<crate::slots::Slot<Node>>(), 40);
    }

    #[test]
    fn event_ids_round_trip() {
        for seq in [0, 1, 7, u32::MAX - 2, u32::MAX] {
            let e = EventEntry::new((), EventId { ts: -3, seq }, 0);
            assert_eq!(e.id(), EventId { ts: -3, seq });
        }
        // The one that does not fit stays below "not yet taken".
        let e = EventEntry::new(
            (),
            EventId {
                ts: 0,
                seq: u32::MAX - 1,
            },
            0,
        );
        assert_eq!(e.id().seq, u32::MAX - 2);
    }
}
