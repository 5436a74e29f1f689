//! Everything between the CEP engine (`ferrocep-core`, no IO and no clock)
//! and the `ferrocep` commands: the clock, reading and writing JSON lines,
//! the matcher that fans events out to several patterns, the parallel
//! workers, and the pipelines that `match`, `demo` and `run` drive.
//!
//! - [`clock`]: the one injectable clock (processing time, idle timeouts);
//! - [`key`]: the partition key, inline when short;
//! - [`input`]: reading JSON lines in large chunks;
//! - [`output`]: the JSON-lines formats of matches, timeouts and late events;
//! - [`matcher`]: one operator per pattern over the keys of a partition;
//! - [`options`]: how a replay runs and why it stops;
//! - [`replay`]: specs over a JSON-lines input (`ferrocep match`);
//! - [`parallel`]: the same with keys partitioned over worker threads;
//! - [`live`]: a processing-time job on a paced source (`ferrocep demo`);
//! - [`config`]: the pipeline config of `ferrocep run`;
//! - [`source`], [`sink`]: where `run` reads events and writes outputs;
//! - [`source::ingest_log`]: the durable log behind the HTTP source;
//! - [`metrics`]: the Prometheus metrics of `run`;
//! - [`checkpoint`]: the checkpoint store in the data directory;
//! - [`changelog`]: a kafka source's state per partition in a changelog topic;
//! - [`engine`]: every pattern of `run` over one source, watermarks, the
//!   quiet-stream rule, output ids, checkpoint and restore of its state;
//! - [`pipeline`]: `run`'s source, engine and sinks joined, checkpoints, stop;
//! - [`assemble`]: a pipeline built from a loaded config, restored from its
//!   data directory;
//! - [`server`]: `/metrics`, `/healthz`, `/readyz`, `/patterns` and the
//!   admin API that changes patterns;
//! - [`control`]: pattern changes asked of the engine thread, and answers;
//! - [`workers`]: `run --workers N`, the engine's keys split over threads;
//! - [`tasks`]: one engine per partition of a kafka source that scales out.

#![warn(missing_docs)]

pub mod assemble;
pub mod changelog;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod control;
pub mod engine;
pub mod input;
pub mod key;
pub mod live;
pub mod matcher;
pub mod metrics;
pub mod options;
pub mod output;
pub mod parallel;
pub mod pipeline;
pub mod replay;
pub mod server;
pub mod sink;
pub mod source;
pub mod tasks;
pub mod workers;
