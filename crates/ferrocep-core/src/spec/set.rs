//! [`SpecSet`]: several specs run over one stream, with the line read once.
//!
//! Every spec of a set reads the same key path and the same time field (each
//! may have its own `max_out_of_orderness`, `within`, skip strategy and
//! stages). A line is then scanned once for the union of the fields all
//! expressions read, each distinct expression (by its text, over all specs)
//! is evaluated once, and the one [`JsonEvent`] holding all the results is
//! shared by every spec's pattern: [`SpecSet::specs`] are the specs with
//! their condition indices moved into the set's numbering, so
//! [`Spec::compile`] on them gives patterns that read the shared bits.
//!
//! Conditions that share a conjunct (the operands of a top-level `&&`: all
//! of `many_specs`'s `type == "create" && amount >= lo && amount < hi`
//! share `type == "create"`) evaluate it once per line, and one that is
//! false decides them all (see [`Shared`]).
//!
//! A set of one spec reads lines exactly as [`Spec::ingest`] does; the one
//! difference is [`IngestedRef::key`], borrowed from the line.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::event::{
    recycle_values, Extractor, InlineValues, LineError, Value, ValueSlots, INLINE_SLOTS,
};
use crate::expr::{Conjunct, Expr, ExprError, Fields};
use crate::time::Timestamp;

use super::{Conditions, JsonEvent, Spec};

/// Why specs cannot share one run.
///
/// Specs are named by their `name`, else their file, else `spec N`
/// (1-based); field paths are dotted (`a.b`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    /// No spec was given.
    #[error("no spec")]
    Empty,
    /// Two specs have different `key` paths.
    #[error(
        "specs run together must have the same key: {first} has {}, {other} has {}",
        describe(first_key),
        describe(other_key)
    )]
    DifferentKeys {
        /// The first spec.
        first: String,
        /// Its key path (`None`: no key).
        first_key: Option<String>,
        /// The spec that differs.
        other: String,
        /// Its key path.
        other_key: Option<String>,
    },
    /// Two specs have different `time.field` paths (or one has no `time`).
    #[error(
        "specs run together must have the same time field (or all none): {first} has {}, \
         {other} has {}",
        describe(first_field),
        describe(other_field)
    )]
    DifferentTimeFields {
        /// The first spec.
        first: String,
        /// Its time field path (`None`: no time).
        first_field: Option<String>,
        /// The spec that differs.
        other: String,
        /// Its time field path.
        other_field: Option<String>,
    },
    /// A condition does not parse.
    #[error(transparent)]
    Condition(#[from] ExprError),
    /// A spec reads a field name as a different path than another spec.
    #[error(
        "{spec} reads field '{field}' as a different path than another spec; \
         specs run together must name fields alike"
    )]
    FieldPaths {
        /// The spec.
        spec: String,
        /// The field name both read.
        field: String,
    },
}

/// Specs sharing one read of each line (see the module docs).
#[derive(Clone, Debug)]
pub struct SpecSet {
    specs: Vec<Spec>,
    conditions: Vec<Expr>,
    /// The conditions by their conjuncts, when some conjunct is shared.
    shared: Option<Shared>,
    extractor: Extractor,
    keyed: bool,
    timed: bool,
}

/// The set's conditions as conjunctions of distinct conjuncts: a condition
/// holds when all of its conjuncts do ([`Expr::conjuncts`]), and a conjunct
/// is evaluated at most once per line, when a condition first needs it.
#[derive(Clone, Debug)]
struct Shared {
    conjuncts: Vec<Conjunct>,
    /// Per condition, its conjuncts (indices into `conjuncts`), in its order.
    of: Vec<Box<[u32]>>,
}

/// Conjuncts whose results one line keeps on the stack.
const STACK_CONJUNCTS: usize = 512;

impl Shared {
    /// `None` when no two conditions share a conjunct (nothing to gain).
    fn new(conditions: &[Expr]) -> Option<Shared> {
        let mut conjuncts: Vec<Conjunct> = Vec::new();
        let mut by_key: HashMap<String, u32> = HashMap::new();
        let mut total = 0;
        let mut of = Vec::with_capacity(conditions.len());
        for c in conditions {
            let mut mine = Vec::new();
            for part in c.conjuncts() {
                total += 1;
                let index = match part.key.as_ref().and_then(|k| by_key.get(k)) {
                    Some(&i) => i,
                    None => {
                        let i = u32::try_from(conjuncts.len()).ok()?;
                        if let Some(k) = &part.key {
                            by_key.insert(k.clone(), i);
                        }
                        conjuncts.push(part);
                        i
                    }
                };
                mine.push(index);
            }
            of.push(mine.into_boxed_slice());
        }
        (conjuncts.len() < total).then_some(Shared { conjuncts, of })
    }

    /// The conditions over one line's field values.
    fn evaluate(&self, values: &[Value<'_>]) -> Conditions {
        let n = self.conjuncts.len();
        let mut stack = [0u8; STACK_CONJUNCTS];
        let mut heap = Vec::new();
        // Per conjunct: 0 not yet evaluated, 1 false, 2 true.
        let memo: &mut [u8] = if n <= STACK_CONJUNCTS {
            &mut stack[..n]
        } else {
            heap.resize(n, 0);
            &mut heap
        };
        let conjuncts = &self.conjuncts;
        Conditions::from_results(
            self.of.len(),
            self.of.iter().map(|parts| {
                parts.iter().all(|&c| {
                    let c = c as usize;
                    if memo[c] == 0 {
                        memo[c] = 1 + u8::from(conjuncts[c].test(values));
                    }
                    memo[c] == 2
                })
            }),
        )
    }
}

/// An input line made ready for the engine, its key borrowed from the line.
#[derive(Clone, Debug)]
pub struct IngestedRef<'a> {
    /// JSON text of the key value (`"o-1"` with its quotes, `7`); `None` when
    /// the specs have no `key`.
    pub key: Option<Cow<'a, str>>,
    /// Event timestamp; `None` in processing time.
    pub timestamp: Option<Timestamp>,
    /// The event, the conditions of every spec evaluated.
    pub event: JsonEvent,
}

/// An input line read by [`SpecSet::ingest_parts`]: what makes an event,
/// before it has its line.
#[derive(Clone, Debug)]
pub struct IngestedParts<'a> {
    /// JSON text of the key value; `None` when the specs have no `key`.
    pub key: Option<Cow<'a, str>>,
    /// Event timestamp; `None` in processing time.
    pub timestamp: Option<Timestamp>,
    /// The line as the event keeps it (trimmed, as [`Spec::ingest`] says).
    pub json: &'a str,
    /// The conditions of every spec.
    pub conditions: Conditions,
}

fn name_of(spec: &Spec, i: usize) -> String {
    spec.name
        .clone()
        .or_else(|| spec.file().map(|f| f.display().to_string()))
        .unwrap_or_else(|| format!("spec {}", i + 1))
}

fn dotted(path: Option<&[String]>) -> Option<String> {
    path.map(|p| p.join("."))
}

/// A path as the messages give it: `'a.b'`, or `none`.
fn describe(path: &Option<String>) -> String {
    match path {
        None => "none".to_string(),
        Some(p) => format!("'{p}'"),
    }
}

impl SpecSet {
    /// A set of `specs` (at least one). Fails when they do not all have the
    /// same `key` path and the same `time.field` (or all no `time`), or when
    /// two specs read different field paths under one dotted name (`` `a.b` ``
    /// and `a.b`), which one scan cannot tell apart.
    pub fn new(specs: Vec<Spec>) -> Result<SpecSet, SetError> {
        let Some(first) = specs.first() else {
            return Err(SetError::Empty);
        };
        let time_field = |s: &Spec| s.time.as_ref().map(|t| t.field.clone());
        for (i, s) in specs.iter().enumerate().skip(1) {
            if s.key != first.key {
                return Err(SetError::DifferentKeys {
                    first: name_of(first, 0),
                    first_key: dotted(first.key.as_deref()),
                    other: name_of(s, i),
                    other_key: dotted(s.key.as_deref()),
                });
            }
            if time_field(s) != time_field(first) {
                return Err(SetError::DifferentTimeFields {
                    first: name_of(first, 0),
                    first_field: dotted(time_field(first).as_deref()),
                    other: name_of(s, i),
                    other_field: dotted(time_field(s).as_deref()),
                });
            }
        }

        let mut fields = Fields::new();
        let mut conditions: Vec<Expr> = Vec::new();
        let mut by_source: HashMap<String, usize> = HashMap::new();
        let mut mapped = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            // The spec's own slots, to check that the union keeps its paths.
            let mut own = Fields::new();
            let mut global = Vec::with_capacity(spec.conditions.len());
            for c in &spec.conditions {
                let src = c.source();
                // Each source parsed once already: it parses again.
                Expr::parse(src, &mut own)?;
                let index = match by_source.get(src) {
                    Some(&g) => g,
                    None => {
                        let e = Expr::parse(src, &mut fields)?;
                        conditions.push(e);
                        by_source.insert(src.to_string(), conditions.len() - 1);
                        conditions.len() - 1
                    }
                };
                global.push(index);
            }
            for (path, name) in own.paths().iter().zip(own.names()) {
                let at = fields.names().iter().position(|n| n == name);
                if at.is_some_and(|at| fields.paths()[at] != *path) {
                    return Err(SetError::FieldPaths {
                        spec: name_of(spec, i),
                        field: name.to_string(),
                    });
                }
            }
            let mut s = spec.clone();
            for st in &mut s.stages {
                for c in [&mut st.where_, &mut st.until].into_iter().flatten() {
                    c.index = global[c.index];
                }
            }
            mapped.push(s);
        }
        let extractor = Extractor::new(
            &fields,
            first.key.clone(),
            first.time.as_ref().map(|t| t.field.clone()),
        );
        // Each spec also reads lines as the set does, so that it stays whole.
        for s in &mut mapped {
            s.conditions = conditions.clone();
            s.extractor = extractor.clone();
        }
        Ok(SpecSet {
            shared: Shared::new(&conditions),
            keyed: first.key.is_some(),
            timed: first.time.is_some(),
            specs: mapped,
            conditions,
            extractor,
        })
    }

    /// The specs, their conditions numbered as in the set's events (compile
    /// these, not the originals, to run them on [`SpecSet::ingest_with`]'s
    /// events; their own [`Spec::ingest`] reads lines as the set does).
    pub fn specs(&self) -> &[Spec] {
        &self.specs
    }

    /// Whether the specs run in event time (they have `time`).
    pub fn is_event_time(&self) -> bool {
        self.timed
    }

    /// Whether the specs have a `key`.
    pub fn is_keyed(&self) -> bool {
        self.keyed
    }

    /// The sources of the set's conditions, in the numbering of its events'
    /// condition bits.
    pub fn condition_sources(&self) -> impl Iterator<Item = &str> {
        self.specs
            .first()
            .into_iter()
            .flat_map(|s| s.conditions.iter().map(|c| c.source()))
    }

    /// Number of distinct conditions over all specs.
    pub fn condition_count(&self) -> usize {
        self.conditions.len()
    }

    /// Reads one input line as [`Spec::ingest_with`] does, for all specs at
    /// once: the key (borrowed from the line when it can be), the timestamp,
    /// and every condition evaluated once. `scratch` is reused for the field
    /// values.
    pub fn ingest_with<'a>(
        &self,
        line: &'a str,
        scratch: &mut Vec<Value<'static>>,
    ) -> Result<IngestedRef<'a>, LineError> {
        let p = self.ingest_parts(line, scratch)?;
        Ok(IngestedRef {
            key: p.key,
            timestamp: p.timestamp,
            event: JsonEvent::own(p.json, p.conditions),
        })
    }

    /// [`SpecSet::ingest_with`] without making the event: the caller puts
    /// [`IngestedParts::json`] where it likes (a block shared by many events,
    /// see [`JsonEvent::in_block`]).
    pub fn ingest_parts<'a>(
        &self,
        line: &'a str,
        scratch: &mut Vec<Value<'static>>,
    ) -> Result<IngestedParts<'a>, LineError> {
        if self.extractor.slots() <= INLINE_SLOTS {
            return self.ingest_values(line, &mut InlineValues::new());
        }
        let mut values = recycle_values(std::mem::take(scratch));
        let result = self.ingest_values(line, &mut values);
        *scratch = recycle_values(values);
        result
    }

    fn ingest_values<'a, S: ValueSlots<'a>>(
        &self,
        line: &'a str,
        values: &mut S,
    ) -> Result<IngestedParts<'a>, LineError> {
        let extracted = self.extractor.extract_into(line, values)?;
        // The extractor reports a missing key or time; these are only safety nets.
        let key = match (self.keyed, extracted.key) {
            (false, _) => None,
            (true, Some(k)) => Some(k),
            (true, None) => return Err(LineError::MissingKey { field: None }),
        };
        let timestamp = match (self.timed, extracted.timestamp) {
            (false, _) => None,
            (true, Some(ts)) => Some(Timestamp::from_millis(ts)),
            (true, None) => return Err(LineError::MissingTime { field: None }),
        };
        let conditions = match &self.shared {
            Some(shared) => shared.evaluate(values.as_slots()),
            None => Conditions::from_results(
                self.conditions.len(),
                self.conditions.iter().map(|c| c.test(values.as_slots())),
            ),
        };
        Ok(IngestedParts {
            key,
            timestamp,
            json: extracted.json,
            conditions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Format;

    fn spec(name: &str, wheres: &[&str]) -> Spec {
        let stages: Vec<String> = wheres
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let w = serde_json::to_string(w).unwrap();
                format!(r#"{{"name": "s{i}", "where": {w}}}"#)
            })
            .collect();
        let text = format!(
            r#"{{"name": "{name}", "key": "k", "stages": [{}]}}"#,
            stages.join(", ")
        );
        Spec::from_str(&text, Format::Json).unwrap()
    }

    /// Conditions that share conjuncts, evaluated once each, agree with each
    /// condition evaluated whole, errors and missing fields included
    /// (`false && error` is false, `true && error` does not hold).
    #[test]
    fn shared_conjuncts_agree_with_whole_conditions() {
        let wheres = [
            r#"type == "create" && amount >= 10 && amount < 20"#,
            r#"type == "create" && amount >= 20"#,
            r#"(type == "create" && amount >= 10) && x > 1"#,
            r#"amount >= 10 && type == "create""#,
            r#"type == "create" || amount < 20"#,
            r#"type == "pay""#,
            r#"!(x > 1) && type == "create""#,
            r#"tag == "\uFFFD" && type == "create""#,
        ];
        let specs = wheres
            .iter()
            .enumerate()
            .map(|(i, w)| spec(&format!("p{i}"), &[w]))
            .collect();
        let set = SpecSet::new(specs).unwrap();
        assert!(set.shared.is_some(), "the conditions share conjuncts");
        let lines = [
            r#"{"k":1,"type":"create","amount":15}"#,
            r#"{"k":1,"type":"create","amount":25,"x":2}"#,
            r#"{"k":1,"type":"create","amount":"a lot","x":2}"#,
            r#"{"k":1,"type":"create","x":"two"}"#,
            r#"{"k":1,"type":"pay","amount":15}"#,
            r#"{"k":1,"type":"view"}"#,
            r#"{"k":1,"type":"create","amount":5,"x":0,"tag":"\uFFFD"}"#,
            r#"{"k":1,"type":"create","amount":null,"x":null}"#,
        ];
        let mut scratch = Vec::new();
        for line in lines {
            let shared = set.ingest_with(line, &mut scratch).unwrap();
            let mut whole = set.clone();
            whole.shared = None;
            let expected = whole.ingest_with(line, &mut scratch).unwrap();
            for i in 0..set.condition_count() {
                assert_eq!(
                    shared.event.cond(i),
                    expected.event.cond(i),
                    "condition {i} ({}) on {line}",
                    set.conditions[i].source()
                );
            }
            assert_eq!(shared.event, expected.event);
        }
    }

    /// Many conditions: an event that holds none beyond the first 64 keeps
    /// its bits inline and equals one that does not; one that holds a later
    /// one reads it.
    #[test]
    fn many_conditions() {
        let specs = (0..100)
            .map(|i| {
                spec(
                    &format!("p{i}"),
                    &[&format!("type == \"create\" && n == {i}")],
                )
            })
            .collect();
        let set = SpecSet::new(specs).unwrap();
        assert_eq!(set.condition_count(), 100);
        let mut scratch = Vec::new();
        for n in [0, 63, 64, 99, 100] {
            let line = format!(r#"{{"k":1,"type":"create","n":{n}}}"#);
            let e = set.ingest_with(&line, &mut scratch).unwrap().event;
            for i in 0..100 {
                assert_eq!(e.cond(i), i == n, "condition {i} on {line}");
            }
        }
        let none = set
            .ingest_with(r#"{"k":1,"type":"view"}"#, &mut scratch)
            .unwrap()
            .event;
        assert_eq!(none, JsonEvent::from_parts(none.raw(), &[false; 100]));
    }
}
