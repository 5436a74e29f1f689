//! Pattern changes while `run` runs: what the admin API (`PUT`/`DELETE
//! /patterns/NAME`) and SIGHUP ask of the engine thread, and what it
//! answers.
//!
//! The engine thread takes a request between two batches, so the change
//! takes effect at a source position: events before it in source order
//! start matches in the old version, events after it in the new one,
//! whenever they are processed. It then takes a checkpoint at once and
//! answers when that checkpoint is committed: a change that was answered
//! survives a crash, and one that was not answered may be absent after
//! one, never half there (the checkpoint holds the patterns and their
//! state together).

use std::path::PathBuf;
use std::sync::mpsc;

use crate::engine::{Applied, Change, PendingPolicy};

/// Where a change came from, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The admin API, from this peer address (with a token, if one was
    /// required).
    Api(String),
    /// SIGHUP: the config file's patterns.
    Sighup,
    /// The start: a config whose patterns differ from the checkpoint's.
    Start,
}

impl Origin {
    /// The `via` label of metrics.
    pub fn via(&self) -> &'static str {
        match self {
            Origin::Api(_) => "api",
            Origin::Sighup => "sighup",
            Origin::Start => "start",
        }
    }

    /// Who, for logs.
    pub fn who(&self) -> String {
        match self {
            Origin::Api(peer) => format!("api {peer}"),
            Origin::Sighup => "SIGHUP".to_string(),
            Origin::Start => "start".to_string(),
        }
    }
}

/// A request to the engine thread.
pub enum Request {
    /// Apply these changes together.
    Change {
        /// The changes.
        changes: Vec<Change>,
        /// What becomes of replaced and removed versions' state.
        pending: PendingPolicy,
        /// Who asked.
        origin: Origin,
        /// The answer, once the change is durable (or failed).
        reply: Option<tokio::sync::oneshot::Sender<Result<Done, Refused>>>,
    },
    /// Re-read the patterns of this config file and apply the difference.
    Reload(PathBuf),
    /// Count the pending partial matches now (for `GET /patterns`), then
    /// answer.
    Refresh(tokio::sync::oneshot::Sender<()>),
}

/// A change applied.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Done {
    /// What it did, pattern by pattern.
    pub changes: Vec<AppliedView>,
    /// The source position from which it takes effect (`None`: nothing read
    /// yet, or the source has no positions).
    pub position: Option<u64>,
    /// The checkpoint that holds it (`None`: checkpoints are off).
    pub checkpoint: Option<u64>,
}

/// [`Applied`] as the API shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AppliedView {
    /// The pattern.
    pub name: String,
    /// `added`, `replaced`, `removed` or `unchanged`.
    pub action: &'static str,
    /// The active version after the change (absent: removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The version replaced or removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<u32>,
    /// `draining` (it keeps its pending partial matches), `dropped` (they
    /// went to `error`) or `gone` (it had none); absent when there was no
    /// previous version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<&'static str>,
    /// Partial matches and waiting events sent to `error`.
    pub dropped: u64,
}

impl AppliedView {
    /// The view of `a`, under `pending`.
    pub fn new(a: &Applied, pending: PendingPolicy) -> AppliedView {
        AppliedView {
            name: a.name.clone(),
            action: a.action,
            version: a.version,
            previous: a.previous,
            previous_state: a.previous.map(|_| {
                if a.draining {
                    "draining"
                } else if pending == PendingPolicy::Drop && a.dropped > 0 {
                    "dropped"
                } else {
                    "gone"
                }
            }),
            dropped: a.dropped,
        }
    }
}

/// A change refused, with the HTTP status that says why.
#[derive(Clone, Debug)]
pub struct Refused {
    /// 400 (cannot be applied), 404 (no such pattern), 503 (stopping).
    pub status: u16,
    /// Why.
    pub reason: String,
}

/// The sending end, for the server and the signal handler.
pub type ControlTx = mpsc::Sender<Request>;

/// The receiving end, for the engine thread.
pub type ControlRx = mpsc::Receiver<Request>;

/// A new control channel.
pub fn channel() -> (ControlTx, ControlRx) {
    mpsc::channel()
}
