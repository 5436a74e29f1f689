//! The condition language of spec files: a subset of CEL, exactly as the oracle's `Expr.java`
//! parses and evaluates it.
//!
//! This module owns parsing an expression once into a compiled tree ([`Expr::parse`]), which
//! registers each field path it reads in a [`Fields`] (each distinct path gets a slot), and
//! evaluating the tree over one event's values ([`Expr::test`]), without parsing or
//! allocating per event. Turning a JSON line into those values is [`crate::event`]'s job, and
//! so are [`Value`] and the [`Fields`] registry (re-exported here): this module uses `event`,
//! never the reverse.
//!
//! Grammar (CEL precedence, lowest first):
//!
//! ```text
//! or      := and ( '||' and )*
//! and     := rel ( '&&' rel )*
//! rel     := unary ( ( '==' | '!=' | '<' | '<=' | '>' | '>=' | 'in' ) unary )*
//! unary   := '!' unary | '-' number | primary
//! primary := string | number | 'true' | 'false' | 'null' | path | '(' or ')' | '[' list ']'
//! path    := ident ( '.' ident )*        (an ident may be `back quoted`: any characters)
//! ```
//!
//! Strings are `"…"` or `'…'` with escapes `\n \t \r \\ \" \' \` \? \uXXXX`; numbers are
//! integers or decimals (`3`, `3.0`, `.5`, `1e3`), compared exactly as decimals (`3 == 3.0`).
//! Semantics (CEL): a missing field is `null`; `==`/`!=` across types are false/true; lists
//! compare element-wise, maps by entries; `<`… between different types, with `null`, lists or
//! maps, `!` of a non-bool and `in` on a non-collection are errors; `x in list` tests
//! membership, `x in map` tests keys; `&&`/`||` absorb errors (`false && err` is false,
//! `true || err` is true). A condition holds only when it evaluates to `true`. There are no
//! functions, arithmetic or map literals; `-` only negates a number literal.

mod eval;
mod parse;
mod unicode;

use crate::event::Value;

pub use crate::event::Fields;
pub use parse::MAX_NESTING;

/// A parse error: where (1-based column, in chars of the source) and what, with the oracle's
/// wording (e.g. `unexpected end of expression`, `'=' is not an operator; use '=='`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column}")]
pub struct ExprError {
    /// 1-based column (in chars) of the offending token.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// A compiled condition. `Send + Sync`; evaluation borrows it immutably.
#[derive(Clone, Debug)]
pub struct Expr {
    source: String,
    root: eval::Node,
}

/// The raw outcome of evaluating an expression (the oracle's `Expr.eval`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `true`: the condition holds.
    True,
    /// `false`.
    False,
    /// A CEL evaluation error (the condition does not hold).
    Error,
    /// A value that is not a boolean, e.g. the expression `amount` (does not hold).
    Other,
}

impl Expr {
    /// Parses `src`, registering the field paths it reads in `fields` (nothing is registered
    /// when it does not parse).
    pub fn parse(src: &str, fields: &mut Fields) -> Result<Expr, ExprError> {
        let root = parse::parse(src, fields)?;
        Ok(Expr {
            source: src.to_string(),
            root,
        })
    }

    /// Whether the condition holds for an event whose values (indexed by [`Fields`] slot) are
    /// `values`. A slot beyond `values` reads as `null`.
    #[inline]
    pub fn test(&self, values: &[Value<'_>]) -> bool {
        eval::test(&self.root, values)
    }

    /// The raw outcome (for diagnostics and tests).
    pub fn evaluate(&self, values: &[Value<'_>]) -> Outcome {
        match eval::eval(&self.root, values) {
            eval::V::Bool(true) => Outcome::True,
            eval::V::Bool(false) => Outcome::False,
            eval::V::Err => Outcome::Error,
            _ => Outcome::Other,
        }
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// One conjunct of a condition (see [`Expr::conjuncts`]): a part that must
/// hold for the whole to hold.
#[derive(Clone, Debug)]
pub(crate) struct Conjunct {
    /// Equal for conjuncts that are the same tree over the same slots;
    /// `None` for one that must not be merged with any other (its text
    /// shows a replacement character, which `Debug` also shows for bytes
    /// that are not UTF-8).
    pub(crate) key: Option<String>,
    root: eval::Node,
}

impl Conjunct {
    /// Whether the conjunct holds (as [`Expr::test`]).
    #[inline]
    pub(crate) fn test(&self, values: &[Value<'_>]) -> bool {
        eval::test(&self.root, values)
    }
}

impl Expr {
    /// The operands of the top-level `&&`s (nested ones flattened), or the
    /// whole expression when it is no `&&`. The expression holds exactly
    /// when every one of them holds: CEL's `&&` is `true` only when all its
    /// operands are `true`, and evaluation has no effects, so their order
    /// and which of them are evaluated change nothing. Lets many conditions
    /// that share a conjunct (`type == "create" && ...`) evaluate it once.
    pub(crate) fn conjuncts(&self) -> Vec<Conjunct> {
        fn flatten(n: &eval::Node, out: &mut Vec<Conjunct>) {
            match n {
                eval::Node::And(items) => items.iter().for_each(|it| flatten(it, out)),
                n => {
                    let key = format!("{n:?}");
                    out.push(Conjunct {
                        key: (!key.contains('\u{FFFD}')).then_some(key),
                        root: n.clone(),
                    });
                }
            }
        }
        let mut out = Vec::new();
        flatten(&self.root, &mut out);
        out
    }
}

impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// Splits a field path of a spec (`key`, `time.field`) into segments: `user.id` →
/// `["user", "id"]`. As in the oracle, a segment is any text between dots (`order-id` is one
/// field) and none may be empty; in addition a segment written `` `…` `` is taken literally
/// without its back-quotes, so `` `a.b`.c `` is `["a.b", "c"]`.
pub fn parse_path(src: &str) -> Result<Vec<String>, ExprError> {
    let mut segs = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    loop {
        let start = i;
        let seg: String;
        if chars.get(i) == Some(&'`') {
            let Some(rel) = chars[i + 1..].iter().position(|&c| c == '`') else {
                return Err(ExprError {
                    column: start + 1,
                    message: "unterminated `quoted` field name".to_string(),
                });
            };
            seg = chars[i + 1..i + 1 + rel].iter().collect();
            i += rel + 2;
            if i < chars.len() && chars[i] != '.' {
                return Err(ExprError {
                    column: i + 1,
                    message: "expected '.' after a `quoted` field name".to_string(),
                });
            }
        } else {
            while i < chars.len() && chars[i] != '.' {
                i += 1;
            }
            seg = chars[start..i].iter().collect();
            if seg.is_empty() {
                return Err(ExprError {
                    column: start + 1,
                    message: format!("bad field path '{src}'"),
                });
            }
        }
        segs.push(seg);
        if i >= chars.len() {
            return Ok(segs);
        }
        i += 1; // the dot
    }
}

#[cfg(test)]
mod tests;
