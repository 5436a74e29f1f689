//! Evaluation of a compiled expression over one event's values, with CEL's (and the oracle's)
//! semantics. Nothing is allocated: intermediate results are borrowed views, and a list literal
//! that reads fields is checked once and then read lazily, item by item.

use std::cmp::Ordering;

use crate::event::{num_cmp, Value};

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

/// A compiled expression node.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// A constant (lists of constants are folded into one).
    Lit(Value<'static>),
    /// The value of a field slot.
    Field(usize),
    /// A list literal with at least one non-constant item.
    List(Vec<Node>),
    Not(Box<Node>),
    /// `a && b && …` (CEL: any `false` wins, else all `true`, else error).
    And(Vec<Node>),
    /// `a || b || …` (CEL: any `true` wins, else all `false`, else error).
    Or(Vec<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    /// `field op constant` (the common case, evaluated without recursion).
    CmpFieldLit(CmpOp, usize, Box<Value<'static>>),
    /// `constant op field`.
    CmpLitField(CmpOp, Box<Value<'static>>, usize),
    /// `field == "s"` (or `!=` when `ne`): never an error.
    StrEq {
        slot: usize,
        lit: Box<[u8]>,
        ne: bool,
    },
    /// `field op number` (any operator but `in`).
    NumCmp(CmpOp, usize, Box<Value<'static>>),
    /// `field in ["a", "b", …]` (only strings): never an error. `set` is sorted when `sorted`
    /// (large lists: binary search).
    StrIn {
        slot: usize,
        set: Box<[Box<[u8]>]>,
        sorted: bool,
    },
}

impl CmpOp {
    /// The operator with its operands swapped (`a < b` is `b > a`).
    fn mirror(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            other => other,
        }
    }

    /// Whether an ordering satisfies the operator (`==`/`!=` included).
    #[inline]
    fn holds(self, c: Ordering) -> bool {
        match self {
            CmpOp::Eq => c == Ordering::Equal,
            CmpOp::Ne => c != Ordering::Equal,
            CmpOp::Lt => c == Ordering::Less,
            CmpOp::Le => c != Ordering::Greater,
            CmpOp::Gt => c == Ordering::Greater,
            CmpOp::Ge => c != Ordering::Less,
            CmpOp::In => false,
        }
    }
}

/// `field op constant`, specialised by the constant's type.
fn field_lit(op: CmpOp, slot: usize, v: Value<'static>) -> Node {
    match (op, v) {
        (CmpOp::Eq | CmpOp::Ne, Value::Str(s)) => Node::StrEq {
            slot,
            lit: s.as_bytes().into(),
            ne: op == CmpOp::Ne,
        },
        (CmpOp::In, Value::List(items)) if items.iter().all(|v| matches!(v, Value::Str(_))) => {
            let mut set: Vec<Box<[u8]>> = items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => s.as_bytes().into(),
                    _ => Box::default(),
                })
                .collect();
            let sorted = set.len() > 8;
            if sorted {
                set.sort();
                set.dedup();
            }
            Node::StrIn {
                slot,
                set: set.into(),
                sorted,
            }
        }
        (op, v @ (Value::Int(_) | Value::Dec(_))) if op != CmpOp::In => {
            Node::NumCmp(op, slot, Box::new(v))
        }
        (op, v) => Node::CmpFieldLit(op, slot, Box::new(v)),
    }
}

impl Node {
    /// A comparison node, specialised when one side is a field and the other a constant.
    pub(crate) fn cmp(op: CmpOp, a: Node, b: Node) -> Node {
        match (a, b) {
            (Node::Field(i), Node::Lit(v)) => field_lit(op, i, v),
            (Node::Lit(v), Node::Field(i)) if op != CmpOp::In => field_lit(op.mirror(), i, v),
            (Node::Lit(v), Node::Field(i)) => Node::CmpLitField(op, Box::new(v), i),
            (a, b) => Node::Cmp(op, Box::new(a), Box::new(b)),
        }
    }
}

/// An intermediate result.
#[derive(Clone, Copy, Debug)]
pub(crate) enum V<'x> {
    Err,
    Null,
    Bool(bool),
    /// A number, string, list or map.
    Val(&'x Value<'x>),
    /// A list literal whose items are known not to be errors.
    Lazy(&'x [Node]),
}

#[inline]
fn view<'x>(v: &'x Value<'x>) -> V<'x> {
    match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Bool(*b),
        _ => V::Val(v),
    }
}

/// Whether `n` holds (evaluates to `true`): `field == "s"`, the most common
/// condition, without the call of [`eval`].
#[inline(always)]
pub(crate) fn test(n: &Node, vals: &[Value<'_>]) -> bool {
    match n {
        Node::StrEq { slot, lit, ne } => {
            matches!(vals.get(*slot), Some(Value::Str(s)) if s.as_bytes() == &**lit) != *ne
        }
        _ => matches!(eval(n, vals), V::Bool(true)),
    }
}

pub(crate) fn eval<'x>(n: &'x Node, vals: &'x [Value<'x>]) -> V<'x> {
    match n {
        Node::Lit(v) => view(v),
        Node::Field(i) => field(vals, *i),
        Node::List(items) => {
            if items.iter().any(|it| matches!(eval(it, vals), V::Err)) {
                V::Err
            } else {
                V::Lazy(items)
            }
        }
        Node::Not(a) => match eval(a, vals) {
            V::Bool(b) => V::Bool(!b),
            _ => V::Err,
        },
        Node::And(items) => {
            let mut all_true = true;
            for it in items {
                match eval(it, vals) {
                    V::Bool(false) => return V::Bool(false),
                    V::Bool(true) => {}
                    _ => all_true = false,
                }
            }
            if all_true {
                V::Bool(true)
            } else {
                V::Err
            }
        }
        Node::Or(items) => {
            let mut all_false = true;
            for it in items {
                match eval(it, vals) {
                    V::Bool(true) => return V::Bool(true),
                    V::Bool(false) => {}
                    _ => all_false = false,
                }
            }
            if all_false {
                V::Bool(false)
            } else {
                V::Err
            }
        }
        Node::Cmp(op, a, b) => {
            let x = eval(a, vals);
            if matches!(x, V::Err) {
                return V::Err;
            }
            let y = eval(b, vals);
            if matches!(y, V::Err) {
                return V::Err;
            }
            apply(*op, x, y, vals)
        }
        Node::CmpFieldLit(op, i, v) => apply(*op, field(vals, *i), view(v), vals),
        Node::CmpLitField(op, v, i) => apply(*op, view(v), field(vals, *i), vals),
        Node::StrEq { slot, lit, ne } => {
            V::Bool(matches!(vals.get(*slot), Some(Value::Str(s)) if s.as_bytes() == &**lit) != *ne)
        }
        Node::NumCmp(op, slot, lit) => match vals.get(*slot) {
            Some(x @ (Value::Int(_) | Value::Dec(_))) => match num_cmp(x, lit) {
                Some(c) => V::Bool(op.holds(c)),
                None => V::Err,
            },
            _ => match op {
                CmpOp::Eq => V::Bool(false),
                CmpOp::Ne => V::Bool(true),
                _ => V::Err,
            },
        },
        Node::StrIn { slot, set, sorted } => V::Bool(match vals.get(*slot) {
            Some(Value::Str(s)) if *sorted => {
                set.binary_search_by(|t| (**t).cmp(s.as_bytes())).is_ok()
            }
            Some(Value::Str(s)) => set.iter().any(|t| **t == *s.as_bytes()),
            _ => false,
        }),
    }
}

#[inline]
fn field<'x>(vals: &'x [Value<'x>], i: usize) -> V<'x> {
    vals.get(i).map_or(V::Null, view)
}

/// A comparison of two non-error operands.
#[inline]
fn apply<'x>(op: CmpOp, x: V<'x>, y: V<'x>, vals: &'x [Value<'x>]) -> V<'x> {
    match op {
        CmpOp::Eq => V::Bool(equal(x, y, vals)),
        CmpOp::Ne => V::Bool(!equal(x, y, vals)),
        CmpOp::In => contains(y, x, vals),
        _ => match compare(x, y) {
            None => V::Err,
            Some(c) => V::Bool(op.holds(c)),
        },
    }
}

/// A list-like value: an event/constant list or a lazy list literal.
#[derive(Clone, Copy)]
enum ListRef<'x> {
    Vals(&'x [Value<'x>]),
    Lazy(&'x [Node]),
}

impl<'x> ListRef<'x> {
    fn of(v: V<'x>) -> Option<ListRef<'x>> {
        match v {
            V::Val(Value::List(l)) => Some(ListRef::Vals(l)),
            V::Lazy(items) => Some(ListRef::Lazy(items)),
            _ => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            ListRef::Vals(l) => l.len(),
            ListRef::Lazy(l) => l.len(),
        }
    }

    fn get(&self, i: usize, vals: &'x [Value<'x>]) -> V<'x> {
        match self {
            ListRef::Vals(l) => l.get(i).map_or(V::Null, view),
            ListRef::Lazy(l) => l.get(i).map_or(V::Null, |n| eval(n, vals)),
        }
    }
}

/// The oracle's `Expr.equal`: `null` equals only `null`; numbers compare exactly; lists
/// element-wise; maps by key set and values; otherwise same type and equal.
fn equal<'x>(x: V<'x>, y: V<'x>, vals: &'x [Value<'x>]) -> bool {
    match (x, y) {
        (V::Null, V::Null) => true,
        (V::Bool(a), V::Bool(b)) => a == b,
        (V::Val(a), V::Val(b)) => match (a, b) {
            (Value::Str(s), Value::Str(t)) => s.as_bytes() == t.as_bytes(),
            (Value::Int(i), Value::Int(j)) => i == j,
            (Value::Map(m), Value::Map(n)) => {
                m.len() == n.len()
                    && m.entries().iter().all(|(k, v)| match n.get(k.as_bytes()) {
                        Some(w) => equal(view(v), view(w), vals),
                        None => false,
                    })
            }
            (Value::List(_), Value::List(_)) => lists_equal(x, y, vals),
            _ => num_cmp(a, b) == Some(Ordering::Equal),
        },
        (V::Lazy(_), _) | (_, V::Lazy(_)) => lists_equal(x, y, vals),
        _ => false,
    }
}

fn lists_equal<'x>(x: V<'x>, y: V<'x>, vals: &'x [Value<'x>]) -> bool {
    match (ListRef::of(x), ListRef::of(y)) {
        (Some(l), Some(m)) => {
            l.len() == m.len() && (0..l.len()).all(|i| equal(l.get(i, vals), m.get(i, vals), vals))
        }
        _ => false,
    }
}

/// `x in coll`: list membership by `equal`, map key membership for a string; else an error.
fn contains<'x>(coll: V<'x>, x: V<'x>, vals: &'x [Value<'x>]) -> V<'x> {
    if let Some(l) = ListRef::of(coll) {
        return V::Bool((0..l.len()).any(|i| equal(x, l.get(i, vals), vals)));
    }
    match coll {
        V::Val(Value::Map(m)) => V::Bool(match x {
            V::Val(Value::Str(s)) => m.contains_key(s.as_bytes()),
            _ => false,
        }),
        _ => V::Err,
    }
}

/// The oracle's `Expr.compare`: numbers, strings (code point order), booleans; else none.
fn compare(x: V<'_>, y: V<'_>) -> Option<Ordering> {
    match (x, y) {
        (V::Bool(a), V::Bool(b)) => Some(a.cmp(&b)),
        (V::Val(Value::Str(s)), V::Val(Value::Str(t))) => Some(s.as_bytes().cmp(t.as_bytes())),
        (V::Val(a), V::Val(b)) => num_cmp(a, b),
        _ => None,
    }
}
