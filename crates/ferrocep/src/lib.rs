//! The `ferrocep` command line, as a library so that the binary stays a thin
//! `main.rs` and tests and examples can reach the pieces.
//!
//! - [`alloc`]: the process's allocator (large buffers on huge pages);
//! - [`cli`]: argument definitions (clap) and exit codes;
//! - [`match_cmd`]: `ferrocep match`, the spec-over-JSONL contract of
//!   `shared/spec/pattern-spec.md` section 3;
//! - [`parallel`]: `match --workers N`, keys partitioned over threads;
//! - [`input`]: reading JSON lines in large chunks;
//! - [`key`]: the partition key, inline when short;
//! - [`output`]: the JSON-lines sink that writes matches, timeouts and late
//!   events with the original event text, unchanged;
//! - [`demo`]: `ferrocep demo`, the reference Flink jobs (order timeout, login
//!   failures) on live processing-time sources.

#![warn(missing_docs)]

pub mod alloc;
pub mod cli;
pub mod demo;
pub mod input;
pub mod key;
pub mod match_cmd;
pub mod output;
pub mod parallel;

/// The README's Rust code blocks, compiled and run as doctests so the README
/// cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
