//! What HTTP workers ask the pool ([`WorkerRequest`]) and what they are told.

use std::time::Duration;

use ractor::RpcReplyPort;
use taskmesh_kernels::Progress;
use taskmesh_kernels::task::{TaskId, TaskStatus};
use tokio::sync::oneshot;

use super::book::{LeaseState, Token, WorkerId, WorkerSpec};
use crate::store::Transition;

/// What a registration answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The worker's id, for every later call.
    pub worker_id: WorkerId,
    /// How long it keeps its leases without a call.
    pub lease_ms: u64,
    /// How often it should heartbeat.
    pub heartbeat_ms: u64,
}

/// One task leased to a worker by a poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The task.
    pub id: TaskId,
    /// Its kind.
    pub kind: String,
    /// Its params (JSON text).
    pub params: String,
    /// The attempt number (1 for the first).
    pub attempt: u32,
    /// What every report of this attempt must quote.
    pub token: Token,
    /// The task's hard time limit, if it has one.
    pub timeout_ms: Option<u64>,
}

/// How a worker says an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerOutcome {
    /// It succeeded with this result (JSON text).
    Succeeded(String),
    /// It failed; `retryable` says whether another attempt may help.
    Failed {
        /// What went wrong.
        message: String,
        /// Whether a retry may help.
        retryable: bool,
    },
}

/// One reported attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The task.
    pub id: TaskId,
    /// The attempt's token.
    pub token: Token,
    /// How it ended.
    pub outcome: WorkerOutcome,
}

/// What became of one [`Report`].
#[derive(Debug)]
pub enum Reported {
    /// The terminal write of this status is issued; the store's answer comes here.
    Writing(TaskStatus, oneshot::Receiver<Transition>),
    /// The attempt failed and the task will be retried.
    Retrying,
    /// The token is not a live lease here (of this worker): nothing was written. Whether
    /// it is stale or the task finished is for the caller to read from the store.
    Unknown,
}

/// The worker id is not registered here (never was, expired, or left).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no such worker")]
pub struct UnknownWorker;

/// The answer to a poll.
pub type PollAnswer = Result<Vec<Grant>, UnknownWorker>;

/// Requests of HTTP workers, answered through their reply port.
pub enum WorkerRequest {
    /// Register a worker.
    Register(WorkerSpec, RpcReplyPort<Registration>),
    /// Lease up to `max` tasks (capped at the worker's free slots), waiting up to `wait`
    /// for the first one.
    Poll {
        /// The worker.
        worker: String,
        /// At most this many tasks.
        max: usize,
        /// How long to wait when none is queued.
        wait: Duration,
        /// The answer.
        reply: RpcReplyPort<PollAnswer>,
    },
    /// A sign of life with the tokens the worker holds and their latest progress.
    Heartbeat {
        /// The worker.
        worker: String,
        /// The tokens it holds.
        tokens: Vec<Token>,
        /// Latest progress per token.
        progress: Vec<(Token, Progress)>,
        /// One state per token, in order.
        reply: RpcReplyPort<Result<Vec<LeaseState>, UnknownWorker>>,
    },
    /// Attempts that ended. With a worker, each token must be a lease of that worker.
    Report {
        /// The reporting worker, when known.
        worker: Option<String>,
        /// The attempts.
        reports: Vec<Report>,
        /// One answer per report, in order; an error for a worker not registered here.
        reply: RpcReplyPort<Result<Vec<Reported>, UnknownWorker>>,
    },
    /// The worker leaves: its leases go back to the queue without using an attempt.
    Leave {
        /// The worker.
        worker: String,
        /// Done.
        reply: RpcReplyPort<Result<(), UnknownWorker>>,
    },
}
