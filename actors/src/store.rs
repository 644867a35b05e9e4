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
//!   creation, or the first node to start it if it was created without one. A shared
//!   store answers [`TaskStore::recoverable`] with only the tasks `node` holds, so a
//!   restarting node never takes another's; a store private to one node answers every
//!   unfinished task.
//! - Fencing: only the holder, with the task's current lease token, may act on a held
//!   task. Every record carries a token ([`TaskRecord::lease`], 0 at creation) that each
//!   [`TaskStore::claim`] and [`TaskStore::reassign`] bumps by one, atomically with the
//!   move. `start(id, fence, ..)` and `requeue(id, fence, ..)` carry the acting node and
//!   the token its attempt was given ([`Fence`]); a `finish` carries them in
//!   [`Finish::node`] and [`Finish::lease`]. A change is refused with
//!   [`Transition::NotHolder`] (nothing written) when the task is held by another node
//!   than the change's, or when its token is not the record's: the second catches a
//!   node whose task was claimed away and back (a → b → a, both sides of a partition
//!   claiming) and whose old attempt still runs. A task held by nobody may be started,
//!   requeued or finished by anyone with the current token. A `finish` without a node
//!   (the API cancelling a task no node started) skips only the holder check: it
//!   carries the token of the record the caller read, so a claim between that read and
//!   the write refuses it. The terminal check comes first: a terminal task answers
//!   [`Transition::Rejected`] to everyone. [`TaskStore::progress`] is fenced the same
//!   way. `start`, `progress` and `finish` never change the token; an applied
//!   [`TaskStore::requeue`] bumps it by one, atomically with the change, so every write
//!   of the attempt that failed (a late `start`, `progress`, `requeue` or `finish` under
//!   the old token) is refused from then on, and the caller, whose requeue was applied,
//!   knows the retry's token: `fence.lease + 1`. So a task may run twice (at least
//!   once), but only the attempt holding the current token can record its terminal
//!   state.
//! - Leases: a live node calls [`TaskStore::renew_lease`] periodically;
//!   [`TaskStore::expired_holders`] names the nodes that hold live tasks without a live
//!   lease, for a survivor to `claim`. [`TaskStore::lease`] reads one node's lease: a
//!   renewal counter that goes up by one with every renewal, or `None` once the lease
//!   lapsed (or was never taken). Whether the counter moves is how a peer tells a node
//!   that still renews (alive, whatever the network between nodes says) from one that
//!   stopped (`crate::failover`). A store private to one node keeps the counter in
//!   memory for the life of the process.
//! - API keys ([`KeyRecord`], `crate::auth`): [`TaskStore::put_key`] writes a key only if
//!   its id is free (so two nodes bootstrapping the same key store it once); a revoke
//!   keeps the first revocation time; listings are ordered by creation time, then id.

use async_trait::async_trait;
use taskmesh_kernels::Progress;
use taskmesh_kernels::task::{TaskId, TaskStatus};

use crate::auth::key::KeyRecord;
use crate::task::{Fence, Finish, Millis, NewTask, TaskRecord};

mod codec;
#[cfg(any(test, feature = "testsuite"))]
pub mod conformance;
pub mod embedded;
#[cfg(test)]
pub(crate) mod intercept;
mod leases;
pub mod memory;
pub mod redis;
mod rules;

pub(crate) use rules::claimed_error;

/// Errors of the store itself (never "not found": that is a normal answer).
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing database failed, or did not answer in time. A write that fails so may
    /// or may not have been applied.
    #[error("store backend failed: {0}")]
    Backend(String),
    /// The backing database refused the connection: the request was never sent, so a
    /// write that fails so wrote nothing.
    #[error("store backend unreachable: {0}")]
    Unreachable(String),
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

impl StoreError {
    /// True when the failed call cannot have written anything: the request never reached
    /// the backend ([`StoreError::Unreachable`]) or the store was closed.
    pub fn nothing_written(&self) -> bool {
        matches!(self, StoreError::Unreachable(_) | StoreError::Closed)
    }
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The change was written.
    Applied,
    /// The task's current status does not allow the change; nothing was written.
    Rejected(TaskStatus),
    /// The task is live but held by another node than the caller, or the caller's lease
    /// token is not the record's (the task was claimed or reassigned since the caller's
    /// attempt was given it); nothing was written. Carries the current holder, which is
    /// the caller itself when the task came back to it under a newer token. The caller
    /// must forget this attempt: the holder runs the task under the current token.
    /// (`None` only for a token mismatch on a task held by nobody, which a store never
    /// produces: every move names a holder.)
    NotHolder(Option<String>),
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
    /// Only tasks submitted by this API key id ([`TaskSpec::submitted_by`]).
    ///
    /// [`TaskSpec::submitted_by`]: taskmesh_kernels::task::TaskSpec::submitted_by
    pub submitted_by: Option<String>,
    /// At most this many records (callers cap it).
    pub limit: usize,
}

/// One node's lease as the store holds it ([`TaskStore::lease`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// How many times the lease was renewed since it was last taken (it starts again
    /// after a lapse). Only whether it changed between two reads means anything.
    pub renewals: u64,
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

    /// `queued → running`: records `fence.node`, `attempts` and `started_at_ms`.
    /// Rejected unless the task is queued (or already running, for a re-run after a
    /// crash: running → running is allowed and updates the same fields).
    /// [`Transition::NotHolder`] when another node holds the task or `fence.lease` is not
    /// the record's token: a start never moves a task between nodes (only
    /// [`TaskStore::claim`] and [`TaskStore::reassign`] do); it makes `fence.node` the
    /// holder only of a task held by nobody.
    async fn start(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        attempts: u32,
        started_at_ms: Millis,
    ) -> Result<Transition, StoreError>;

    /// `running|queued → queued` for a retry: records `attempts` and the attempt's
    /// `error`, and bumps the lease token by one (`fence.lease + 1` is the retry's
    /// token), so every later write of the attempt that failed, under `fence.lease`, is
    /// refused; the task stays with its holder. Rejected when the task is terminal;
    /// [`Transition::NotHolder`] when a node other than `fence.node` holds it or
    /// `fence.lease` is not the record's token. A refused requeue writes nothing, the
    /// token included.
    async fn requeue(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        attempts: u32,
        error: Option<String>,
    ) -> Result<Transition, StoreError>;

    /// Records `progress` as the task's latest ([`TaskRecord::progress`]) without
    /// changing its status, fenced like [`TaskStore::start`]: rejected when the task is
    /// terminal, [`Transition::NotHolder`] when a node other than `fence.node` holds it
    /// or `fence.lease` is not the record's token. A `requeue`, `claim` or `reassign`
    /// clears it; a `finish` keeps the last one.
    async fn progress(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        progress: Progress,
    ) -> Result<Transition, StoreError>;

    /// Any non-terminal status → the terminal `finish.status`. The first terminal write
    /// wins: rejected (with the recorded status) when the task is already terminal.
    /// [`Transition::NotHolder`] when `finish.lease` is not the record's token, or when
    /// `finish.node` is set and another node holds the task (a finish without a node is
    /// not fenced by holder, only by token).
    async fn finish(&self, id: &TaskId, finish: Finish) -> Result<Transition, StoreError>;

    /// Moves every live (queued or running) task held by `from` to `to`, atomically, and
    /// answers the moved records as they are after the move, oldest first. Each moved
    /// task's lease token goes up by one. A task that was running goes back to `queued`
    /// with `attempts` unchanged (the attempt that died counts) and `error` set to
    /// `node {from} was lost`; a queued one only changes holder and token. Each task
    /// moves once: a second claim of `from` (by any node) finds nothing, and `from`'s
    /// later `start`/`requeue`/`finish` are refused with [`Transition::NotHolder`], even
    /// after the task comes back to `from` (their token is old). Claiming from oneself
    /// (`from == to`) moves nothing.
    async fn claim(&self, from: &str, to: &str) -> Result<Vec<TaskRecord>, StoreError>;

    /// Moves those of `ids` that are live and still held by `from` to `to`, with the same
    /// changes as [`TaskStore::claim`] (the token goes up by one; a running task returns
    /// to the queue with `error` set to `reassigned from node {from}`); answers the moved
    /// records as they are after the move, in the order given (each once). Unknown,
    /// terminal, and elsewhere-held ids are left alone; `from == to` moves nothing.
    async fn reassign(
        &self,
        ids: &[TaskId],
        from: &str,
        to: &str,
    ) -> Result<Vec<TaskRecord>, StoreError>;

    /// Declares `node` alive for the next `ttl_ms` milliseconds (at least 1), bumps its
    /// renewal counter ([`TaskStore::lease`]), and makes it a known holder. A store
    /// private to one node keeps the counter in memory only and never expires a holder.
    async fn renew_lease(&self, node: &str, ttl_ms: u64) -> Result<(), StoreError>;

    /// `node`'s lease: `None` when it lapsed or was never taken, else its renewal
    /// counter, which every [`TaskStore::renew_lease`] of `node` moves.
    async fn lease(&self, node: &str) -> Result<Option<LeaseInfo>, StoreError>;

    /// The nodes that hold at least one live task and have no live lease (it expired, or
    /// was never taken), sorted: the candidates for [`TaskStore::claim`]. A store private
    /// to one node answers nothing: its only node is the caller, which never expires.
    async fn expired_holders(&self) -> Result<Vec<String>, StoreError>;

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

    /// Stores `key` if no key with its id exists: `true` when written, `false` (nothing
    /// written) when the id is taken. Atomic: of two concurrent puts of one id, one wins.
    async fn put_key(&self, key: KeyRecord) -> Result<bool, StoreError>;

    /// The key with this id, revoked or not.
    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;

    /// Every stored key, revoked and expired ones included, by creation time then id.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;

    /// Marks the key revoked at `at_ms` (a key revoked before keeps its first time):
    /// `true` when the key exists, `false` when there is no such key.
    async fn revoke_key(&self, id: &str, at_ms: Millis) -> Result<bool, StoreError>;
}

/// Sorts keys as [`TaskStore::list_keys`] answers them.
pub(crate) fn sort_keys(keys: &mut [KeyRecord]) {
    keys.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
}
