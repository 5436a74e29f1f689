//! The registry of the field paths a spec's expressions read: which value of an event goes in
//! which slot.
//!
//! It is the layout both sides of an event's values agree on: the expression parser
//! ([`crate::expr`]) registers each path it reads and compiles the slot into the tree; the
//! [`Extractor`](super::Extractor) fills one value per slot from a line. It lives here, with
//! [`Value`](super::Value), so that the expression language depends on events and not the
//! reverse.

/// The field paths read by all the expressions of a spec, each with its slot: the index of its
/// value in the slice given to [`Expr::test`](crate::expr::Expr::test) (and produced by the
/// [`Extractor`](super::Extractor)).
///
/// As in the oracle, paths are told apart by their dotted name: `` `a.b` `` (one field named
/// `a.b`) and `a.b` (field `b` of `a`) share the slot of whichever came first.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    paths: Vec<Vec<String>>,
    names: Vec<String>,
}

impl Fields {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The slot of `path`: the existing one, or a new one at the end.
    pub fn slot(&mut self, path: &[String]) -> usize {
        let name = path.join(".");
        if let Some(i) = self.names.iter().position(|n| *n == name) {
            return i;
        }
        self.names.push(name);
        self.paths.push(path.to_vec());
        self.paths.len() - 1
    }

    /// The paths, indexed by slot.
    pub fn paths(&self) -> &[Vec<String>] {
        &self.paths
    }

    /// The dotted names, indexed by slot.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// No slots.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}
