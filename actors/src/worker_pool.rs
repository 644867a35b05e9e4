//! The WorkerPool: bounded per-priority queues and N supervised [`worker::Worker`]s.
//!
//! ```text
//! WorkerPool ──┬── Worker 1   (one attempt at a time)
//!              ├── Worker 2
//!              └── Worker N   (N between --min-workers and --max-workers)
//! ```
//! The pool owns every task that was placed on it until the task's terminal write is
//! issued. A worker that panics is replaced and the attempt it held counts as failed
//! (retried with backoff, or failed after `max_retries`). On start the pool re-queues every
//! unfinished task the store says this node holds ([`TaskStore::recoverable`]: all of
//! them for a node's own store, only this node's for a shared one), so a restarted pool or
//! node loses nothing and takes nothing from other nodes.
//!
//! [`TaskStore::recoverable`]: crate::store::TaskStore::recoverable

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use taskmesh_kernels::task::{TaskId, TaskStatus};
use tokio_util::task::TaskTracker;

use crate::context::NodeContext;
use crate::handoff::{CancelOutcome, Job, PoolLoad};
use crate::task::{TaskRecord, now_ms};

pub mod executor;
pub mod external;
pub mod progress;
pub mod queue;
mod recent;
pub mod retry;
mod settle;
mod state;
pub mod worker;

use state::PoolState;
use worker::AttemptReport;

/// Settings of the pool, fixed for its lifetime.
#[derive(Clone, Debug)]
pub struct WorkerPoolConfig {
    /// Workers started with the pool (the autoscaler moves it later).
    pub initial_workers: usize,
    /// Tasks that may wait in the queues; the dispatcher refuses more with 503.
    pub queue_capacity: usize,
    /// Delay between attempts.
    pub backoff: retry::Backoff,
    /// How often the pool refreshes its load gauges.
    pub report_interval: Duration,
    /// Resource labels of this node.
    pub labels: Vec<String>,
    /// How long an HTTP worker keeps its leases without a call ([`external`]).
    pub worker_lease: Duration,
}

/// Why the pool took none of an [`PoolMessage::Offer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferRefused {
    /// The node is shutting down.
    Draining,
    /// The tasks do not fit in the queue capacity.
    Full,
}

impl OfferRefused {
    /// The reason as sent to the peer.
    pub fn as_str(self) -> &'static str {
        match self {
            OfferRefused::Draining => "draining",
            OfferRefused::Full => "queue full",
        }
    }
}

/// Messages of the WorkerPool.
pub enum PoolMessage {
    /// Tasks placed on this pool (durably stored already), counted in
    /// [`crate::handoff::LocalLoad`] as incoming until the pool takes them.
    Enqueue(Vec<Job>),
    /// Tasks a peer dispatched here: taken all (`Ok`) only if the pool is not draining
    /// and they fit in its queue capacity; otherwise none are, and the answer says why
    /// (the peer places them elsewhere). Unlike [`PoolMessage::Enqueue`], outside input
    /// cannot grow the queue past its capacity this way.
    Offer(Vec<Job>, RpcReplyPort<Result<(), OfferRefused>>),
    /// Unfinished tasks read back from the store when the pool started.
    Recovered(Vec<TaskRecord>),
    /// A worker finished an attempt.
    Finished {
        /// The worker, which is free again.
        worker: ActorId,
        /// What happened.
        report: AttemptReport,
    },
    /// A retry's backoff elapsed.
    RetryDue(TaskId),
    /// Cancel the task if this pool holds it.
    Cancel(TaskId, RpcReplyPort<CancelOutcome>),
    /// Run with this many workers.
    Resize(usize),
    /// The pool's current load.
    GetLoad(RpcReplyPort<PoolLoad>),
    /// Timer: refresh the load gauges.
    ReportLoad,
    /// Re-read this node's unfinished tasks from the store and queue any this pool does
    /// not hold (sent after a dispatcher restart, which may have lost placements in
    /// flight).
    Rescan,
    /// Timer: queue the tasks the store says this node holds, queued there since before
    /// [`SWEEP_AGE`], that the pool does not hold: a dispatch lost with the node that
    /// sent it would otherwise wait until this node restarts.
    Sweep,
    /// What a sweep read from the store.
    Swept(Vec<TaskRecord>),
    /// Stop starting tasks; reply once no attempt is running and every terminal write
    /// issued so far is durable.
    Drain(RpcReplyPort<()>),
    /// A request of an HTTP worker of external kinds ([`external`]).
    Worker(external::WorkerRequest),
    /// A parked poll's wait ran out.
    PollDue {
        /// The worker.
        worker: external::WorkerId,
        /// Which of its polls.
        seq: u64,
    },
    /// Timer: end the leases of silent workers and leases past their task's timeout.
    ExpireLeases,
    /// The store refused a write of the task's attempt because the task moved since the
    /// attempt was given it (claimed, reassigned or requeued: `Transition::NotHolder`):
    /// another node holds it, or this node does under a newer lease token. The pool
    /// forgets every copy it holds under `lease` or an older token: drops it from its
    /// queues, or cancels its running attempt and writes nothing for it. A copy under a
    /// newer token (the task came back to this node) stays. A retry's refused requeue
    /// (moved away, or ended meanwhile) sends it under the retry's own token, one more
    /// than the refused write's, so its delayed copy goes too.
    Lost {
        /// The task.
        id: TaskId,
        /// The token of the refused write.
        lease: u64,
        /// Its holder, as the store answered.
        holder: Option<String>,
    },
}

// Local only: the cluster feature of ractor needs the impl spelled out.
impl ractor::Message for PoolMessage {}

/// The WorkerPool actor.
pub struct WorkerPool;

/// What the pool is started with.
pub struct WorkerPoolArgs {
    /// Shared node handles.
    pub ctx: NodeContext,
    /// Settings.
    pub config: WorkerPoolConfig,
}

impl Actor for WorkerPool {
    type Msg = PoolMessage;
    type State = PoolState;
    type Arguments = WorkerPoolArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: WorkerPoolArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = PoolState::new(args.ctx, args.config, myself.clone(), TaskTracker::new());
        let kernels = &state.ctx.kernels;
        let kinds: Vec<&str> = kernels
            .kinds()
            .into_iter()
            .chain(kernels.external_kinds())
            .collect();
        state.ctx.local_load.started(&state.config.labels, &kinds);
        state.workers_changed();
        state.resize(state.config.initial_workers).await?;
        state.publish();
        myself.send_interval(state.config.report_interval, || PoolMessage::ReportLoad);
        myself.send_interval(SWEEP_AGE, || PoolMessage::Sweep);
        if kernels_have_external(&state) {
            let every = state.external.check_every();
            myself.send_interval(every, || PoolMessage::ExpireLeases);
        }
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        rescan(myself, state);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PoolMessage::Rescan => rescan(myself, state),
            PoolMessage::Sweep => sweep(myself, state),
            PoolMessage::Swept(records) => {
                let cutoff = now_ms().saturating_sub(SWEEP_AGE.as_millis() as u64);
                let here = Some(&*state.ctx.node_id);
                let orphans: Vec<TaskRecord> = records
                    .into_iter()
                    .filter(|r| r.node.as_deref() == here)
                    .filter(|r| r.status == TaskStatus::Queued && r.created_at_ms < cutoff)
                    .collect();
                state.adopt(orphans);
            }
            PoolMessage::Enqueue(jobs) => {
                let n = jobs.len();
                state.received_total += n as u64;
                jobs.into_iter().for_each(|job| state.enqueue(job));
                state.dispatch();
                // Published before they leave `incoming`: never counted nowhere.
                state.publish();
                state.ctx.local_load.taken(n);
            }
            PoolMessage::Offer(jobs, reply) => {
                let verdict = state.room_for(jobs.len());
                // Taken only if the caller is still waiting for the answer: a caller
                // that gave up places the tasks elsewhere.
                if reply.send(verdict).is_ok() && verdict.is_ok() {
                    state.received_total += jobs.len() as u64;
                    jobs.into_iter().for_each(|job| state.enqueue(job));
                }
            }
            PoolMessage::Recovered(records) => state.recover(records),
            PoolMessage::Finished { worker, report } => state.finished(worker, report).await?,
            PoolMessage::RetryDue(id) => state.retry_due(&id),
            PoolMessage::Cancel(id, reply) => {
                let _ = reply.send(state.cancel(&id));
            }
            PoolMessage::Resize(n) => state.resize(n).await?,
            PoolMessage::GetLoad(reply) => {
                let _ = reply.send(state.load());
            }
            PoolMessage::ReportLoad => state.report_load(),
            PoolMessage::Drain(reply) => state.drain(reply),
            PoolMessage::Lost { id, lease, holder } => state.lost(&id, lease, holder.as_deref()),
            PoolMessage::Worker(request) => state.worker_request(request),
            PoolMessage::PollDue { worker, seq } => state.poll_due(&worker, seq),
            PoolMessage::ExpireLeases => state.expire_leases(),
        }
        state.dispatch();
        state.serve_parked();
        state.publish();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                state.worker_failed(cell.get_id(), &err.to_string()).await?;
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.worker_failed(cell.get_id(), "worker stopped").await?;
            }
            _ => {}
        }
        state.dispatch();
        state.publish();
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_all_workers();
        Ok(())
    }
}

fn kernels_have_external(state: &PoolState) -> bool {
    state.ctx.kernels.external_kinds().next().is_some()
}

/// Reads the unfinished tasks this node holds from the store in the background and feeds
/// them back to the pool as [`PoolMessage::Recovered`]; a failed read stops the pool so
/// its supervisor restarts it and the read is tried again.
fn rescan(myself: ActorRef<PoolMessage>, state: &PoolState) {
    let store = state.ctx.store.clone();
    let node = Arc::clone(&state.ctx.node_id);
    tokio::spawn(async move {
        match recoverable(&*store, &node).await {
            Ok(records) => {
                let _ = myself.cast(PoolMessage::Recovered(records));
            }
            Err(e) => {
                tracing::error!(error = %e, "reading unfinished tasks failed; pool restarts");
                myself.stop(Some("recovery read failed".into()));
            }
        }
    });
}

/// The unfinished tasks this node takes back. A private store (embedded) returns every
/// unfinished task, some held under another id this node had before (its id follows
/// the hostname and port); those are claimed first, so the holder fence lets them run.
async fn recoverable(
    store: &dyn crate::store::TaskStore,
    node: &str,
) -> Result<Vec<TaskRecord>, crate::store::StoreError> {
    let records = store.recoverable(node).await?;
    let mut foreign: Vec<String> = records
        .iter()
        .filter_map(|r| r.node.clone())
        .filter(|holder| holder != node)
        .collect();
    if foreign.is_empty() {
        return Ok(records);
    }
    foreign.sort();
    foreign.dedup();
    // A claim puts running tasks back to queued; remember them, so the pool still sees
    // an attempt that died with the node (and fails the task if it has no retry left).
    let was_running: std::collections::HashSet<TaskId> = records
        .iter()
        .filter(|r| r.status == TaskStatus::Running)
        .map(|r| r.id)
        .collect();
    for holder in &foreign {
        let claimed = store.claim(holder, node).await?;
        if !claimed.is_empty() {
            tracing::info!(from = %holder, tasks = claimed.len(), "took back tasks held under a former node id");
        }
    }
    let mut records = store.recoverable(node).await?;
    for r in &mut records {
        if r.status == TaskStatus::Queued && was_running.contains(&r.id) {
            r.status = TaskStatus::Running;
        }
    }
    Ok(records)
}

/// How old a queued task must be before a sweep adopts it, and how often sweeps run.
pub const SWEEP_AGE: Duration = Duration::from_secs(5);

fn sweep(myself: ActorRef<PoolMessage>, state: &PoolState) {
    if state.draining() {
        return;
    }
    let store = state.ctx.store.clone();
    let node = Arc::clone(&state.ctx.node_id);
    tokio::spawn(async move {
        match store.recoverable(&node).await {
            Ok(records) => {
                let _ = myself.cast(PoolMessage::Swept(records));
            }
            Err(e) => tracing::warn!(error = %e, "sweeping the store for lost tasks failed"),
        }
    });
}

#[cfg(test)]
mod tests;
