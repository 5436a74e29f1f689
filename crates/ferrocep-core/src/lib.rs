//! ferrocep-core: Apache Flink CEP semantics, to the letter, with no IO and no clock.
//!
//! Events, watermarks and "now" go in; matches, timeouts and late events come out.
//!
//! - [`pattern`]: the Flink-like Pattern API;
//! - [`nfa`]: the NFA compiled from a pattern, its per-key state and shared buffer;
//! - [`operator`]: the keyed CEP operator (Flink `CepOperator`): event-time buffering,
//!   watermarks, timers, processing time with an injected clock; its state
//!   saved and restored key by key, in key groups ([`operator::state`]);
//! - [`time`]: durations and the bounded-out-of-orderness watermark;
//! - [`expr`]: the CEL-subset condition language of spec files;
//! - [`event`]: JSON event lines: field extraction, keys and timestamps, and the values and
//!   field slots the expressions read;
//! - [`spec`]: spec files (YAML/JSON) compiled into a pattern over JSON events.
#![deny(missing_docs)]

pub mod event;
pub mod expr;
pub mod nfa;
pub mod operator;
pub mod output;
pub mod pattern;
mod slots;
pub mod spec;
pub mod time;

pub use nfa::Nfa;
pub use output::{MatchRef, OutputSink};
pub use pattern::{
    Condition, Context, Contiguity, MatchFailure, Pattern, PatternError, SkipStrategy, WithinType,
};
