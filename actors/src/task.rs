//! The durable task record, as the store keeps it and the API shows it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use taskmesh_kernels::Progress;
use taskmesh_kernels::task::{TaskId, TaskSpec, TaskStatus};

/// Milliseconds since the Unix epoch. Every timestamp in the store uses it.
pub type Millis = u64;

/// The wall clock in [`Millis`]. Pure code takes `now` as an argument instead.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A task to be created: its id is chosen by the node before the store sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    /// The id the task will have unless its idempotency key already names another.
    pub id: TaskId,
    /// What to run, shared with the job that will run it (serialized as a plain spec).
    pub spec: Arc<TaskSpec>,
    /// When it was accepted.
    pub created_at_ms: Millis,
    /// The node that will hold (queue and run) the task, chosen by the dispatcher before
    /// the write; `None` when no node is chosen yet. A shared store indexes the task under
    /// this node from creation on (see [`crate::store::TaskStore::recoverable`]).
    pub node: Option<String>,
}

/// Everything the store knows about one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task's id.
    pub id: TaskId,
    /// What the client asked for (serialized as a plain spec).
    pub spec: Arc<TaskSpec>,
    /// Current status.
    pub status: TaskStatus,
    /// How many attempts have started (0 while queued for the first time).
    pub attempts: u32,
    /// The kernel's result as JSON text, once succeeded.
    pub result: Option<String>,
    /// The last error message (of the failed attempt, or of the task once failed).
    pub error: Option<String>,
    /// The node that holds the task: the one it was placed on while queued, the one that
    /// ran (or is running) the latest attempt after.
    pub node: Option<String>,
    /// When the task was accepted.
    pub created_at_ms: Millis,
    /// When the latest attempt started.
    pub started_at_ms: Option<Millis>,
    /// When the task reached its terminal status.
    pub finished_at_ms: Option<Millis>,
    /// The task's lease token (fencing): 0 at creation, one more every time
    /// [`crate::store::TaskStore::claim`] or [`crate::store::TaskStore::reassign`] moves
    /// the task to another node, and every time [`crate::store::TaskStore::requeue`]
    /// queues it again for a retry (the retry runs under the new token). Every attempt
    /// carries the token it was given, and the store refuses its writes once the token
    /// has moved on. Records written before the field existed read as 0.
    #[serde(default)]
    pub lease: u64,
    /// The latest progress the task's current (or last) attempt reported, through
    /// [`crate::store::TaskStore::progress`]; cleared when the task is queued again for a
    /// retry or moved to another node. Records written before the field existed read as
    /// `None`.
    #[serde(default)]
    pub progress: Option<Progress>,
}

impl TaskRecord {
    /// The record of a task that was just accepted.
    pub fn queued(task: NewTask) -> Self {
        Self {
            id: task.id,
            spec: task.spec,
            status: TaskStatus::Queued,
            attempts: 0,
            result: None,
            error: None,
            node: task.node,
            created_at_ms: task.created_at_ms,
            started_at_ms: None,
            finished_at_ms: None,
            lease: 0,
            progress: None,
        }
    }
}

/// Who makes a `start` or `requeue` (and, through [`Finish::node`] and [`Finish::lease`],
/// a `finish`): the acting node and the lease token its copy of the task carries. The
/// store applies the change only if the task is held by `node` (or by nobody) and its
/// record's [`TaskRecord::lease`] is `lease`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence<'a> {
    /// The node acting on the task.
    pub node: &'a str,
    /// The lease token the node's attempt was given.
    pub lease: u64,
}

impl<'a> Fence<'a> {
    /// `node` acting with the token `lease`.
    pub fn new(node: &'a str, lease: u64) -> Self {
        Self { node, lease }
    }
}

/// How an attempt ended, as written by [`crate::store::TaskStore::finish`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finish {
    /// A terminal status.
    pub status: TaskStatus,
    /// The result as JSON text (succeeded only).
    pub result: Option<String>,
    /// The error message (failed and cancelled).
    pub error: Option<String>,
    /// The node that ran the last attempt, if any attempt started. When set, the finish
    /// is fenced by holder: refused if another node holds the task.
    pub node: Option<String>,
    /// The lease token of the attempt (or of the record the caller read). The finish is
    /// refused unless it equals the record's [`TaskRecord::lease`], with or without
    /// `node`.
    pub lease: u64,
    /// Attempts started in all.
    pub attempts: u32,
    /// When the last attempt started, if any did.
    pub started_at_ms: Option<Millis>,
    /// When the task finished.
    pub finished_at_ms: Millis,
}
