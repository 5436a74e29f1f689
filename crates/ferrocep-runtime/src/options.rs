//! How a replay of an input runs ([`Options`]), and why one stops early
//! ([`Stop`]): shared by the sequential and the parallel replay.

use std::io;

use ferrocep_core::pattern::MatchFailure;

/// What happens when a bounded input ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EndOfInput {
    /// The watermark jumps to +infinity: buffered events run and every
    /// windowed partial match times out (what Flink does when a bounded
    /// source ends).
    #[default]
    Flush,
    /// Time stays at the last watermark; nothing more is reported (a source
    /// that stays open and goes quiet).
    Stop,
}

/// How a run goes, beyond its specs and streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// What happens at the end of the input.
    pub end_of_input: EndOfInput,
    /// Stop at the first bad line.
    pub strict: bool,
    /// Number of workers (1: everything on the calling thread).
    pub workers: usize,
    /// Bytes read at a time ([`crate::input::CHUNK`]; tests make it small, so
    /// that a short input spans many chunks).
    pub chunk_size: usize,
    /// The input may wait for data (a pipe, a terminal, a socket; not a
    /// regular file): with several workers one thread then does all the
    /// reading, so that no worker waits in a read with a batch of its ready.
    pub live_input: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            end_of_input: EndOfInput::Flush,
            strict: false,
            workers: 1,
            chunk_size: crate::input::CHUNK,
            live_input: false,
        }
    }
}

/// Why a run ended early.
#[derive(Debug)]
pub enum Stop {
    /// Writing the output failed.
    Output(io::Error),
    /// Reading the input failed.
    Input(io::Error),
    /// `--strict` met a bad line (its number and the reason).
    Strict(u64, String),
    /// A skip strategy with `throw_exception_on_miss` could not skip past a
    /// match: the run stops there, as Flink's job fails.
    Skip(MissedSkip),
}

/// A match that a skip strategy with `throw_exception_on_miss` could not
/// skip past: which pattern, which key, and Flink's reason (which names the
/// stage).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissedSkip {
    /// The pattern's name, when it has one (a single spec without `name`
    /// and read from no file has none).
    pub pattern: Option<String>,
    /// The key's JSON text (`None`: the spec has no `key`).
    pub key: Option<String>,
    /// What failed, in Flink's words.
    pub failure: MatchFailure,
}

impl std::fmt::Display for MissedSkip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = &self.pattern {
            write!(f, "pattern '{p}': ")?;
        }
        let what = match &self.failure {
            MatchFailure::FirstElement { .. } => "is the match's first event",
            _ => "is missing from the match",
        };
        write!(
            f,
            "the skip strategy's stage '{}' {what}",
            self.failure.stage()
        )?;
        match &self.key {
            Some(k) => write!(f, " for key {k}")?,
            None => write!(f, " (no key)")?,
        }
        write!(
            f,
            " (throw_exception_on_miss stops the run): {}",
            self.failure
        )
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Output(e) => write!(f, "writing output: {e}"),
            Stop::Input(e) => write!(f, "reading input: {e}"),
            Stop::Strict(line, reason) => {
                write!(f, "line {line}: {reason} (stopped by --strict)")
            }
            Stop::Skip(m) => m.fmt(f),
        }
    }
}

impl std::error::Error for Stop {}
