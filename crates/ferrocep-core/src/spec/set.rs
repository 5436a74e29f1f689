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
//! A set of one spec reads lines exactly as [`Spec::ingest`] does; the one
//! difference is [`IngestedRef::key`], borrowed from the line.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::event::{
    recycle_values, Extractor, InlineValues, LineError, Value, ValueSlots, INLINE_SLOTS,
};
use crate::expr::{Expr, ExprError, Fields};
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
    extractor: Extractor,
    keyed: bool,
    timed: bool,
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
        let conditions = Conditions::from_results(
            self.conditions.len(),
            self.conditions.iter().map(|c| c.test(values.as_slots())),
        );
        Ok(IngestedParts {
            key,
            timestamp,
            json: extracted.json,
            conditions,
        })
    }
}
