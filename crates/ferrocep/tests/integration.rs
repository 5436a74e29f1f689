//! Integration tests of the `ferrocep` binary, built as one test binary of
//! topic modules (ripgrep style). Every test runs the real executable.
//!
//! - `conformance`: every conformance case (`conformance/cases/`, vendored)
//!   against Flink's output;
//! - `match_cli`: the `match` contract: bad lines, `--strict`, bad specs,
//!   stdin, end of input, output text;
//! - `demo`: the live demos, briefly;
//! - `examples`: the spec files in `examples/` on their sample inputs;
//! - `workers`: `--workers N` agrees with one worker on large, disordered
//!   streams (late events, bad lines, `--strict`, both end-of-input modes);
//! - `multi_spec`: several `--spec`s over one stream, labelled by pattern;
//! - `run`: `ferrocep run` with real files, a webhook receiver, signals and
//!   the operations endpoints;
//! - `run_parity`: `run` with a skip strategy that throws on a miss, and
//!   with `time.order_by`;
//! - `pattern_changes`: patterns changed while `run` runs (admin API,
//!   SIGHUP, draining, SIGKILL after a change, restart mid-drain);
//! - `validate`: `validate --config`, good and bad configs;
//! - `kafka`: `run` from and to topics of a real broker (`nisshi`, installed
//!   by `scripts/kafka-broker.sh install`).

mod conformance;
mod demo;
mod examples;
mod kafka;
mod match_cli;
mod multi_spec;
mod pattern_changes;
mod run;
mod run_parity;
mod util;
mod validate;
mod workers;
