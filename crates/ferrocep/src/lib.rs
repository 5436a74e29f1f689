//! The `ferrocep` command line, as a library so that the binary stays a thin
//! `main.rs` and tests and examples can reach the pieces. Everything between
//! the engine and the commands is in `ferrocep-runtime`; this crate owns the
//! arguments, the exit statuses and the human-facing demos.
//!
//! - [`alloc`]: the process's allocator (large buffers on huge pages);
//! - [`cli`]: argument definitions (clap), dispatch to the commands;
//! - [`failure`]: why a command failed, and its exit status;
//! - [`args`]: argument values shared by several commands;
//! - [`match_cmd`]: `ferrocep match`, over `ferrocep_runtime::replay`;
//! - [`run_cmd`]: `ferrocep run`, over `ferrocep_runtime::pipeline`;
//! - [`validate_cmd`]: `ferrocep validate`, over `ferrocep_runtime::config`;
//! - [`demo`]: `ferrocep demo`, the reference Flink jobs (order timeout, login
//!   failures) on live processing-time sources.

#![warn(missing_docs)]

pub mod alloc;
pub mod args;
pub mod cli;
pub mod demo;
pub mod failure;
pub mod match_cmd;
pub mod run_cmd;
pub mod validate_cmd;

/// The README's Rust code blocks, compiled and run as doctests so the README
/// cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
