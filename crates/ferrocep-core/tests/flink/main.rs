//! Ports of Apache Flink CEP tests (`flink-libraries/flink-cep/src/test/java/org/apache/flink/cep/`)
//! that the spec-file format cannot express (see
//! `conformance/NOT-AS-SPEC.md`): group patterns, iterative
//! conditions, processing time with a manual clock, and assertions on the
//! NFA state and shared buffer after pruning.
//!
//! Each test is named after the Flink test method (`testGroupFollowedByTimes`
//! -> `group_followed_by_times`) and asserts Flink's expected results.

mod event_time;
mod group;
mod iterative;
mod nfa_misc;
mod parity;
mod processing_time;
mod util;
