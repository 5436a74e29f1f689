//! Spec files: the YAML or JSON description of a pattern (the contract's
//! section 1, `shared/spec/pattern-spec.md`), validated into a [`Spec`] and
//! turned into a [`Pattern`] over [`JsonEvent`]s.
//!
//! This module owns the whole path from spec text to pattern, and the event
//! type of spec-driven runs:
//!
//! 1. `raw`: the text is read as YAML (`serde-saphyr`) or JSON (`serde_json`)
//!    into a tree of values; syntax errors carry line and column.
//! 2. `validate`: the tree is checked field by field as the reference
//!    implementation's `Spec.java` does (same accepted forms, same order of
//!    checks), durations are parsed and expressions compiled; errors carry
//!    the field path (`stages[1].where`) and, for YAML, line and column.
//! 3. `build`: the [`Spec`] becomes a [`Pattern`] with one Pattern call per
//!    field in the order of the reference's `Patterns.java`. Pattern errors
//!    (Flink's `MalformedPatternException`) are reported by
//!    [`Spec::from_str`] already, naming the field whose call failed; the
//!    NFA compiler's own checks are reported by [`Spec::compile`].
//! 4. [`Spec::ingest`] turns an input line into a [`JsonEvent`]: key,
//!    timestamp, and every condition evaluated once.
//! 5. [`SpecSet`] runs several specs over one stream: each line is read once
//!    for all of them, and one event carries the conditions of every spec.
//!
//! ```
//! use ferrocep_core::spec::{Format, Spec};
//!
//! let spec = Spec::from_str(
//!     "key: order_id\n\
//!      within: 10m\n\
//!      stages:\n\
//!      \x20 - name: create\n\
//!      \x20 - name: pay\n\
//!      \x20   contiguity: next\n",
//!     Format::Yaml,
//! )
//! .unwrap();
//! assert_eq!(spec.within, Some(std::time::Duration::from_secs(600)));
//! assert_eq!(spec.stages[1].name, "pay");
//! assert!(!spec.is_event_time());
//! ```

mod build;
mod error;
mod event;
mod order;
mod raw;
mod set;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{Location, SpecError, SpecErrorKind, Syntax};
pub use event::{Conditions, JsonEvent, TextBlock};
pub use set::{IngestedParts, IngestedRef, SetError, SpecSet};

use crate::event::{
    recycle_values, Extractor, InlineValues, LineError, Value, ValueSlots, INLINE_SLOTS,
};
use crate::expr::Expr;
use crate::pattern::{Contiguity, Pattern, SkipStrategy};
use crate::time::{duration_millis, Timestamp};

/// How to read a spec text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// JSON if the first character that is not white space is `{` (falling
    /// back to YAML for a YAML flow mapping that is not JSON), else YAML.
    #[default]
    Auto,
}

impl Format {
    /// The format a file name implies: `.json` is JSON, `.yaml`/`.yml` YAML
    /// (case-insensitive); anything else is [`Format::Auto`].
    pub fn from_path(path: &Path) -> Format {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("json") => Format::Json,
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Auto,
        }
    }
}

/// Event time: where the timestamp is and how late events may be.
#[derive(Clone, PartialEq, Eq)]
pub struct TimeSpec {
    /// Field path of the timestamp (`ts`, `meta.at`).
    pub field: Vec<String>,
    /// Bounded out-of-orderness of the watermark (default 0; whole
    /// milliseconds).
    pub max_out_of_orderness: Duration,
    /// `order_by`: field paths that order events of equal timestamps before
    /// they are matched (Flink's `EventComparator`; see
    /// [`Spec::event_comparator`]); empty: arrival order.
    pub order_by: Vec<Vec<String>>,
}

// By hand, so that a spec prints as before `order_by` existed and before
// the windows became `Duration`s (in milliseconds): `run` fingerprints
// specs by their `Debug` text, and keys its checkpoints by the fingerprint.
impl fmt::Debug for TimeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TimeSpec");
        d.field("field", &self.field).field(
            "max_out_of_orderness",
            &duration_millis(self.max_out_of_orderness),
        );
        if !self.order_by.is_empty() {
            d.field("order_by", &self.order_by);
        }
        d.finish()
    }
}

impl TimeSpec {
    /// [`Self::max_out_of_orderness`].
    pub fn out_of_orderness(&self) -> Duration {
        self.max_out_of_orderness
    }
}

/// A `where` or `until` expression of a stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CondRef {
    /// Index of the condition: [`JsonEvent::cond`]`(index)` is its value for
    /// an event. Identical expression texts share one index.
    pub index: usize,
    /// The expression as written.
    pub source: String,
}

/// A stage's `times` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimesSpec {
    /// `times: n`: exactly `n` events (Flink `times(n)`).
    Exactly(u32),
    /// `times: [from, to]`: `from` to `to` events inclusive (Flink `times(from, to)`).
    Range {
        /// Fewest events.
        from: u32,
        /// Most events.
        to: u32,
    },
}

/// One stage of a spec, as written (checked, not yet applied to a pattern).
#[derive(Clone, PartialEq, Eq)]
pub struct StageSpec {
    /// Unique stage name; keys the match output.
    pub name: String,
    /// How the stage follows the previous one; `None` on the first stage,
    /// `followed_by` (`SkipTillNext`) when not written on the others.
    pub contiguity: Option<Contiguity>,
    /// The `where` condition; `None` matches every event.
    pub where_: Option<CondRef>,
    /// The `until` condition of a looping stage.
    pub until: Option<CondRef>,
    /// `times`.
    pub times: Option<TimesSpec>,
    /// `times_or_more`.
    pub times_or_more: Option<u32>,
    /// `one_or_more: true`.
    pub one_or_more: bool,
    /// `optional: true`.
    pub optional: bool,
    /// `greedy: true`.
    pub greedy: bool,
    /// `consecutive: true`.
    pub consecutive: bool,
    /// `allow_combinations: true`.
    pub allow_combinations: bool,
    /// `within`: the most time between the match's previous event and this
    /// stage's (Flink `within(d, WithinType.PREVIOUS_AND_CURRENT)`; whole
    /// milliseconds).
    pub within: Option<Duration>,
}

// By hand, to print `within` in milliseconds as before it was a `Duration`
// (see `TimeSpec`'s `Debug`).
impl fmt::Debug for StageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageSpec")
            .field("name", &self.name)
            .field("contiguity", &self.contiguity)
            .field("where_", &self.where_)
            .field("until", &self.until)
            .field("times", &self.times)
            .field("times_or_more", &self.times_or_more)
            .field("one_or_more", &self.one_or_more)
            .field("optional", &self.optional)
            .field("greedy", &self.greedy)
            .field("consecutive", &self.consecutive)
            .field("allow_combinations", &self.allow_combinations)
            .field("within", &self.within.map(duration_millis))
            .finish()
    }
}

/// A checked spec: what to key by, the notion of time, and the pattern.
///
/// Made by [`Spec::from_str`] or [`Spec::from_path`]; every spec made that
/// way also passes the checks of Flink's Pattern API (the NFA compiler's
/// checks run in [`Spec::compile`]).
#[derive(Clone)]
pub struct Spec {
    /// Optional label.
    pub name: Option<String>,
    /// Field path of the partition key; `None` = one global partition.
    pub key: Option<Vec<String>>,
    /// Event time; `None` = processing time.
    pub time: Option<TimeSpec>,
    /// Whole-pattern window (Flink `within`; whole milliseconds).
    pub within: Option<Duration>,
    /// After-match skip strategy.
    pub skip: SkipStrategy,
    /// `skip: {skip_to_first: STAGE, throw_exception_on_miss: true}`: a match
    /// without an event of the stage fails the run (Flink's
    /// `throwExceptionOnMiss()`).
    pub skip_throw: bool,
    /// The stages, first to last (at least one).
    pub stages: Vec<StageSpec>,
    conditions: Vec<Expr>,
    extractor: Extractor,
    file: Option<PathBuf>,
}

/// An input line made ready for the engine.
#[derive(Clone, Debug)]
pub struct Ingested {
    /// JSON text of the key value (`"o-1"` with its quotes, `7`); `None` when
    /// the spec has no `key`.
    pub key: Option<Box<str>>,
    /// Event timestamp; `None` in processing time.
    pub timestamp: Option<Timestamp>,
    /// The event, its conditions evaluated.
    pub event: JsonEvent,
}

impl Spec {
    /// The whole-pattern window, [`Self::within`].
    pub fn window(&self) -> Option<Duration> {
        self.within
    }

    /// Reads and checks the spec file at `path` (the one IO helper of the
    /// core crate: [`std::fs::read_to_string`]). The format comes from the
    /// extension (see [`Format::from_path`]); errors name the file.
    pub fn from_path(path: &Path) -> Result<Spec, SpecError> {
        let file = Some(path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|e| {
            SpecError::new(SpecErrorKind::Io {
                message: e.to_string().to_lowercase(),
            })
            .in_file(file.clone())
        })?;
        let mut spec =
            Self::parse(&text, Format::from_path(path)).map_err(|e| e.in_file(file.clone()))?;
        spec.file = file;
        Ok(spec)
    }

    /// Reads and checks a spec given as text.
    #[allow(clippy::should_implement_trait)] // also implemented: `FromStr` (with `Format::Auto`)
    pub fn from_str(text: &str, format: Format) -> Result<Spec, SpecError> {
        Self::parse(text, format)
    }

    fn parse(text: &str, format: Format) -> Result<Spec, SpecError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let tree = match format {
            Format::Yaml => raw::parse(text, Syntax::Yaml)?,
            Format::Json => raw::parse(text, Syntax::Json)?,
            Format::Auto => match raw::detect(text) {
                Syntax::Yaml => raw::parse(text, Syntax::Yaml)?,
                // Not JSON after all (a YAML flow mapping such as `{stages: [...]}`,
                // which the reference, reading any non-.json file as YAML, accepts):
                // YAML if that reads it, else the JSON error.
                Syntax::Json => raw::parse(text, Syntax::Json)
                    .or_else(|e| raw::parse(text, Syntax::Yaml).map_err(|_| e))?,
            },
        };
        let mut v = validate::validate(&tree, text)?;
        let extractor = Extractor::new(
            &v.fields,
            v.key.clone(),
            v.time.as_ref().map(|t| t.field.clone()),
        );
        let locations = std::mem::take(&mut v.locations);
        let spec = Spec {
            name: v.name,
            key: v.key,
            time: v.time,
            within: v.within,
            skip: v.skip,
            skip_throw: v.skip_throw,
            stages: v.stages,
            conditions: v.conditions,
            extractor,
            file: None,
        };
        // Flink throws while the pattern is being built: report it now, with
        // the field whose call failed.
        if let (_, Some((path, error))) = build::build(&spec) {
            let at = validate::location_of(&locations, &path);
            return Err(SpecError::new(SpecErrorKind::Pattern { path, error }).at(at));
        }
        Ok(spec)
    }

    /// The pattern the spec describes, over [`JsonEvent`]s (see the `build`
    /// notes in the module docs for the order of calls).
    pub fn pattern(&self) -> Pattern<JsonEvent> {
        build::build(self).0
    }

    /// Compiles the pattern ([`Pattern::compile`]); its errors become
    /// [`SpecErrorKind::Pattern`].
    pub fn compile(&self) -> Result<crate::nfa::Nfa<JsonEvent>, SpecError> {
        let nfa = self.pattern().compile();
        nfa.map(|n| n.with_event_prefetch(JsonEvent::prefetch_text))
            .map_err(|error| {
                SpecError::new(SpecErrorKind::Pattern {
                    path: String::new(),
                    error,
                })
                .in_file(self.file.clone())
            })
    }

    /// The order of events of equal timestamps that `time.order_by` asks
    /// for, as Flink's `EventComparator` (give it to
    /// [`crate::operator::CepOperator::set_event_comparator`]); `None`
    /// without `order_by`: arrival order. Values order as the expression
    /// language compares them, `null` (or missing) first.
    pub fn event_comparator(&self) -> Option<crate::operator::EventComparator<JsonEvent>> {
        let t = self.time.as_ref()?;
        (!t.order_by.is_empty()).then(|| order::comparator(&t.order_by))
    }

    /// Whether the spec runs in event time (it has `time`).
    pub fn is_event_time(&self) -> bool {
        self.time.is_some()
    }

    /// The file the spec was read from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Number of distinct conditions (bits of a [`JsonEvent`]).
    pub fn condition_count(&self) -> usize {
        self.conditions.len()
    }

    /// Reads one input line: its key and timestamp, and the value of every
    /// condition of the spec. A line that is not a JSON object, or lacks the
    /// key or the time field, is a [`LineError`] (never fatal to a run).
    ///
    /// The event keeps the line as the reference outputs it: trimmed of
    /// white space and control characters at both ends (Java `trim()`).
    pub fn ingest(&self, line: &str) -> Result<Ingested, LineError> {
        self.ingest_with(line, &mut Vec::new())
    }

    /// [`Spec::ingest`] reusing `scratch` for the field values, so that a
    /// loop over lines allocates it once.
    pub fn ingest_with(
        &self,
        line: &str,
        scratch: &mut Vec<Value<'static>>,
    ) -> Result<Ingested, LineError> {
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
    ) -> Result<Ingested, LineError> {
        let extracted = self.extractor.extract_into(line, values)?;
        // The extractor reports a missing key or time; these are only safety nets.
        let key = match (&self.key, extracted.key) {
            (None, _) => None,
            (Some(_), Some(k)) => Some(Box::from(k.as_ref())),
            (Some(_), None) => return Err(LineError::MissingKey { field: None }),
        };
        let timestamp = match (&self.time, extracted.timestamp) {
            (None, _) => None,
            (Some(_), Some(ts)) => Some(Timestamp::from_millis(ts)),
            (Some(_), None) => return Err(LineError::MissingTime { field: None }),
        };
        let event = JsonEvent::own(
            extracted.json,
            Conditions::from_results(
                self.conditions.len(),
                self.conditions.iter().map(|c| c.test(values.as_slots())),
            ),
        );
        Ok(Ingested {
            key,
            timestamp,
            event,
        })
    }
}

impl std::str::FromStr for Spec {
    type Err = SpecError;

    /// [`Spec::from_str`] with [`Format::Auto`].
    fn from_str(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(text, Format::Auto)
    }
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("time", &self.time)
            .field("within", &self.within.map(duration_millis))
            .field("skip", &self.skip)
            .field("skip_throw", &self.skip_throw)
            .field("stages", &self.stages)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
