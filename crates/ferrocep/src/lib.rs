//! Complex event processing with Apache Flink CEP's semantics, to the letter:
//! patterns over keyed event streams, in event time or processing time.
//!
//! An order that is created and not paid within ten minutes, in Rust. A sink
//! receives matches, timeouts (Flink's timeout side output) and late events
//! (the late-data side output):
//!
//! ```rust
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use ferrocep::operator::{CepOperator, TimeDomain};
//! use ferrocep::output::{MatchRef, OutputSink};
//! use ferrocep::pattern::Pattern;
//! use ferrocep::time::{BoundedOutOfOrderness, Timestamp, Watermark};
//!
//! #[derive(Clone, Debug)]
//! struct Order {
//!     id: &'static str,
//!     kind: &'static str,
//!     ts: Timestamp,
//! }
//!
//! /// Where a deployment notifies customer service (Flink's sink).
//! #[derive(Default)]
//! struct Notify {
//!     lines: Vec<String>,
//! }
//!
//! impl OutputSink<&'static str, Order> for Notify {
//!     fn on_match(&mut self, order: &&'static str, m: &MatchRef<'_, Order>, _ts: Timestamp) {
//!         let paid = m.events_of("pay").next().unwrap();
//!         self.lines.push(format!("{order} paid at {}", paid.ts));
//!     }
//!     fn on_timeout(&mut self, order: &&'static str, _m: &MatchRef<'_, Order>, at: Timestamp) {
//!         self.lines.push(format!("{order} not paid, timed out at {at}"));
//!     }
//!     fn on_late(&mut self, order: &&'static str, e: &Order, _ts: Timestamp) {
//!         self.lines.push(format!("{order} late {}", e.kind));
//!     }
//! }
//!
//! let nfa = Pattern::<Order>::begin("create")
//!     .where_(|o: &Order| o.kind == "create")
//!     .followed_by("pay")
//!     .where_(|o: &Order| o.kind == "pay")
//!     .within(Duration::from_secs(600))
//!     .compile()?;
//! let mut op = CepOperator::new(Arc::new(nfa), TimeDomain::EventTime);
//! let mut watermarks = BoundedOutOfOrderness::new(Duration::from_secs(5));
//! let mut sink = Notify::default();
//!
//! let ms = Timestamp::from_millis; // also: "2024-05-01T12:00:00Z".parse()?
//! let orders = [
//!     Order { id: "o-1", kind: "create", ts: ms(1_000) },
//!     Order { id: "o-2", kind: "create", ts: ms(2_000) },
//!     Order { id: "o-1", kind: "pay", ts: ms(60_000) },
//!     Order { id: "o-3", kind: "create", ts: ms(700_000) },
//! ];
//! for order in &orders {
//!     // Borrowed: the operator clones an event only if it keeps it.
//!     op.process_element(&order.id, order, order.ts, &mut sink);
//!     op.advance_watermark(watermarks.on_event(order.ts), &mut sink);
//! }
//! op.advance_watermark(Watermark::MAX, &mut sink); // the input is bounded: flush
//!
//! assert_eq!(
//!     sink.lines,
//!     [
//!         "o-1 paid at 60000",
//!         "o-2 not paid, timed out at 602000",
//!         "o-3 not paid, timed out at 1300000",
//!     ]
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! In processing time, create the operator with
//! [`TimeDomain::ProcessingTime`], pass the wall clock
//! (`Timestamp::from(SystemTime::now())`) as the timestamp, and call
//! [`CepOperator::advance_processing_time`] when [`CepOperator::next_timer`]
//! is due so that timeouts fire while the stream is quiet.
//!
//! # What is here
//!
//! - [`pattern`]: the Flink-like Pattern API ([`Pattern`]);
//! - [`operator`]: the keyed CEP operator ([`CepOperator`], Flink's
//!   `CepOperator`), its state saved and restored key by key;
//! - [`output`]: where matches, timeouts and late events go ([`OutputSink`]);
//! - [`time`]: timestamps, watermarks and durations;
//! - [`spec`]: pattern spec files (YAML or JSON, the format of
//!   `ferrocep match --spec`) compiled into a pattern over JSON events
//!   ([`Spec`]);
//! - [`event`], [`expr`]: the JSON event lines and the condition language
//!   that spec files use;
//! - [`nfa`]: the NFA a pattern compiles into;
//! - `runtime` (cargo feature `runtime`, on by default): sources, sinks,
//!   replay over JSON lines, worker threads and the `ferrocep run` service.
//!
//! # Cargo features
//!
//! - `runtime` (default): the [`runtime`] module (tokio, HTTP, the checkpoint
//!   store). Without it the crate is the engine alone: no IO, no clock.
//! - `cli` (default): the dependencies of the `ferrocep` binary. A library
//!   user can leave it out: `ferrocep = { version = "0.1", default-features =
//!   false, features = ["runtime"] }`.

#![deny(missing_docs)]

pub use ferrocep_core::{event, expr, nfa, operator, output, pattern, spec, time};

pub use ferrocep_core::operator::{CepOperator, TimeDomain};
pub use ferrocep_core::output::{MatchRef, OutputSink};
pub use ferrocep_core::pattern::{
    Condition, Context, Contiguity, Pattern, PatternError, SkipStrategy,
};
pub use ferrocep_core::spec::{Format, Spec, SpecError, SpecSet};

/// The runtime around the engine: clock, sources, sinks, replay of JSON
/// lines, worker threads and the `ferrocep run` pipeline.
#[cfg(feature = "runtime")]
pub use ferrocep_runtime as runtime;

/// The README's Rust code blocks, compiled and run as doctests so the README
/// cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    /// The first ```rust block of a text (of doc comment lines when
    /// `prefix` is `//! `).
    fn first_rust_block(text: &str, prefix: &str) -> String {
        let mut out = String::new();
        let mut inside = false;
        for line in text.lines() {
            // `//! ` or, on an empty line, `//!`.
            let Some(line) = line
                .strip_prefix(prefix)
                .or_else(|| line.strip_prefix(prefix.trim_end()))
            else {
                continue;
            };
            if inside {
                if line == "```" {
                    return out;
                }
                out.push_str(line);
                out.push('\n');
            } else if line == "```rust" {
                inside = true;
            }
        }
        out
    }

    /// The crate docs open with the README's example, word for word.
    #[test]
    fn crate_docs_show_the_readme_example() {
        let lib = first_rust_block(include_str!("lib.rs"), "//! ");
        let readme = first_rust_block(include_str!("../../../README.md"), "");
        assert!(!lib.is_empty());
        assert_eq!(lib, readme);
    }
}
