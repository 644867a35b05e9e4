//! The durable task store: one trait at the I/O seam, several implementations.
//!
//! - [`embedded::EmbeddedStore`]: the single-node default, on redb with group commit.
//! - [`memory::MemoryStore`]: in-memory, for unit tests of other modules.
//! - [`redis::RedisStore`]: the shared store of a cluster; Lua scripts for atomic
//!   transitions, one pipeline per batch of concurrent calls.
//!
//! Every implementation runs the same conformance suite, `conformance` (built for this
//! crate's tests and, for other crates, with the `testsuite` feature).
//!
//! # Rules every implementation keeps
//! - A method returns only after its write is durable (for the embedded store: committed
//!   and fsynced). Implementations batch concurrent callers into one commit
//!   (group commit) rather than committing per call.
//! - Terminal statuses are final: the first terminal write wins, later ones are refused
//!   with [`Transition::Rejected`].
//! - An idempotency key maps to the first task created with it, for as long as that task's
//!   record exists.
//! - Creating a task whose id already exists writes nothing and answers
//!   [`Created::Existing`] with that id, so a retried submission cannot reset a task.
//! - A [`TaskStore::finish`] whose status is not terminal is refused like any other
//!   disallowed change ([`Transition::Rejected`] with the current status).
//! - Listings are newest first by id (ids are time-ordered) and examine at most the newest
//!   `max(limit × 50, 10 000)` records, so a rare filter may find fewer than `limit`.
//!   `unfinished` and `recoverable` are oldest first by id.
//! - A task is held by one node (its record's `node`): the node it was placed on at
//!   creation, then the node that started its latest attempt. A shared store answers
//!   [`TaskStore::recoverable`] with only the tasks `node` holds, so a restarting node
//!   never takes another's; a store private to one node answers every unfinished task.

use async_trait::async_trait;
use taskmesh_cluster::protocol::{TaskId, TaskStatus};

use crate::task::{Finish, Millis, NewTask, TaskRecord};

mod codec;
#[cfg(any(test, feature = "testsuite"))]
pub mod conformance;
pub mod embedded;
pub mod memory;
pub mod redis;
mod rules;

/// Errors of the store itself (never "not found": that is a normal answer).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing database failed or is unreachable.
    #[error("store backend failed: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt record for task {id}: {reason}")]
    Corrupt {
        /// The task whose record is unreadable.
        id: String,
        /// What went wrong.
        reason: String,
    },
    /// The store is shutting down and takes no more writes.
    #[error("store is closed")]
    Closed,
}

/// What happened to one task of a [`TaskStore::create`] call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// A new record was written with this id.
    New(TaskId),
    /// The idempotency key already named this task; nothing was written.
    Existing(TaskId),
}

impl Created {
    /// The id the client should see.
    pub fn id(&self) -> &TaskId {
        match self {
            Created::New(id) | Created::Existing(id) => id,
        }
    }
}

/// The answer to a conditional state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The change was written.
    Applied,
    /// The task's current status does not allow the change; nothing was written.
    Rejected(TaskStatus),
    /// No such task.
    NotFound,
}

/// Filters for [`TaskStore::list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only tasks in this status.
    pub status: Option<TaskStatus>,
    /// Only tasks of this kind.
    pub kind: Option<String>,
    /// At most this many records (callers cap it).
    pub limit: usize,
}

/// Durable task state. Cheap to share: implementations are `Arc`-friendly and `Sync`.
#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Durably creates the tasks, in order. A task whose idempotency key is already
    /// taken (by a stored task, or by an earlier task of the same call) is not written
    /// and comes back as [`Created::Existing`] with the first task's id.
    async fn create(&self, tasks: Vec<NewTask>) -> Result<Vec<Created>, StoreError>;

    /// The task's record, if it exists.
    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError>;

    /// `queued → running`: records `node`, `attempts` and `started_at_ms`.
    /// Rejected unless the task is queued (or already running, for a re-run after a
    /// crash: running → running is allowed and updates the same fields).
    async fn start(
        &self,
        id: &TaskId,
        node: &str,
        attempts: u32,
        started_at_ms: Millis,
    ) -> Result<Transition, StoreError>;

    /// `running|queued → queued` for a retry: records `attempts` and the attempt's
    /// `error`. Rejected when the task is terminal.
    async fn requeue(
        &self,
        id: &TaskId,
        attempts: u32,
        error: Option<String>,
    ) -> Result<Transition, StoreError>;

    /// Any non-terminal status → the terminal `finish.status`. The first terminal write
    /// wins: rejected (with the recorded status) when the task is already terminal.
    async fn finish(&self, id: &TaskId, finish: Finish) -> Result<Transition, StoreError>;

    /// Up to `filter.limit` records, newest first.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<TaskRecord>, StoreError>;

    /// Every task that is queued or running, oldest first (recovery after a restart).
    async fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError>;

    /// The unfinished tasks a node takes back when it (re)starts, oldest first: every
    /// unfinished task for a store private to one node (embedded, memory); only the tasks
    /// held by `node` for a shared store (Redis).
    async fn recoverable(&self, node: &str) -> Result<Vec<TaskRecord>, StoreError>;

    /// Deletes terminal tasks that finished before `finished_before`, with their
    /// idempotency keys. Returns how many were deleted.
    async fn purge_finished(&self, finished_before: Millis) -> Result<usize, StoreError>;

    /// Cheap reachability check for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
}
