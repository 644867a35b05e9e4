//! The pool's state and the effects of each message.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use taskmesh_kernels::CancelToken;
use taskmesh_kernels::task::{Priority, TaskId, TaskStatus};
use tokio_util::task::TaskTracker;

use super::executor::AttemptOutcome;
use super::external::External;
use super::queue::PriorityQueues;
use super::recent::RecentlyFinished;
use super::retry::may_retry;
use super::worker::{AttemptReport, Worker, WorkerArgs, WorkerMessage};
use super::{PoolMessage, WorkerPoolConfig};
use crate::context::NodeContext;
use crate::handoff::{CancelOutcome, Job, LoadFigures, PoolLoad};
use crate::task::{TaskRecord, now_ms};

pub(super) struct Slot {
    pub(super) actor: ActorRef<WorkerMessage>,
    running: Option<Running>,
}

pub(super) struct Running {
    pub(super) job: Job,
    pub(super) cancel: CancelToken,
    pub(super) started_at_ms: u64,
}

/// Everything the pool tracks.
pub struct PoolState {
    pub(super) ctx: NodeContext,
    pub(super) config: WorkerPoolConfig,
    pub(super) received_total: u64,
    pub(super) myself: ActorRef<PoolMessage>,
    /// Identifies this pool in load reports; new with every start.
    pub(super) incarnation: u64,
    pub(super) queue: PriorityQueues<Job>,
    /// The queued tasks, with the lease token of their queued copy.
    pub(super) queued_ids: HashMap<TaskId, u64>,
    pub(super) delayed: HashMap<TaskId, Job>,
    pub(super) workers: HashMap<ActorId, Slot>,
    pub(super) idle: Vec<ActorId>,
    pub(super) target_workers: usize,
    pub(super) writes: TaskTracker,
    pub(super) drain_reply: Option<RpcReplyPort<()>>,
    pub(super) draining: bool,
    /// Running attempts (task and lease token) whose task moved since they were given
    /// it: their outcome is dropped.
    pub(super) lost: HashSet<(TaskId, u64)>,
    /// Tasks whose terminal write this pool issued lately: a late copy is dropped.
    pub(super) finished: RecentlyFinished,
    /// External tasks, and the HTTP workers that lease them.
    pub(super) external: External,
}

impl PoolState {
    pub(super) fn new(
        ctx: NodeContext,
        config: WorkerPoolConfig,
        myself: ActorRef<PoolMessage>,
        writes: TaskTracker,
    ) -> Self {
        Self {
            ctx,
            received_total: 0,
            // Random, not the actor id: a restarted process reuses actor ids, and peers
            // must see a new pool that has received nothing of what they sent before.
            incarnation: rand::random(),
            myself,
            queue: PriorityQueues::default(),
            queued_ids: HashMap::new(),
            delayed: HashMap::new(),
            workers: HashMap::new(),
            idle: Vec::new(),
            target_workers: 0,
            writes,
            drain_reply: None,
            draining: false,
            lost: HashSet::new(),
            finished: RecentlyFinished::default(),
            external: External::new(config.worker_lease),
            config,
        }
    }

    /// The newest lease token under which the pool holds the task (queued, delayed or
    /// running), or `None` when it does not hold it.
    fn held_lease(&self, id: &TaskId) -> Option<u64> {
        let running = self
            .workers
            .values()
            .filter_map(|s| s.running.as_ref())
            .filter(|r| &r.job.id == id)
            .map(|r| r.job.lease);
        let queued = self.queued_ids.get(id).copied();
        let delayed = self.delayed.get(id).map(|j| j.lease);
        let leased = self.external.book.lease_of(id).map(|l| l.job.lease);
        running.chain(queued).chain(delayed).chain(leased).max()
    }

    /// Whether the pool holds the task under `lease` or a newer token, so a copy under
    /// `lease` adds nothing.
    fn holds(&self, id: &TaskId, lease: u64) -> bool {
        self.held_lease(id).is_some_and(|held| held >= lease)
    }

    pub(super) fn enqueue(&mut self, mut job: Job) {
        if self.finished.covers(&job.id, job.lease) {
            // A copy that arrives after this pool finished the task (a dispatch held up
            // in a cut link, delivered after the sweep adopted the task and ran it).
            let _span = job.span().entered();
            tracing::info!(
                lease = job.lease,
                "task already finished here; dropped a late copy"
            );
            return;
        }
        if let Some(held) = self.held_lease(&job.id) {
            // A task may arrive twice (a dispatch and a sweep of the store): hold it once.
            if held >= job.lease {
                return;
            }
            // It came back to this node under a newer token (claimed away and back,
            // a → b → a) while an old copy is still here: the old copy's writes would be
            // refused, so it goes (its attempt cancelled, unrecorded) and the new one runs.
            self.forget(&job.id, Some(held), true);
            let _span = job.span().entered();
            tracing::info!(
                lease = job.lease,
                "task came back under a newer lease; replaced the old copy"
            );
        }
        self.queued_ids.insert(job.id, job.lease);
        job.enqueued_at = Instant::now();
        if self.ctx.kernels.is_external(&job.spec.kind) {
            self.external.queues.push(job);
        } else {
            self.queue.push(job.spec.priority, job);
        }
    }

    /// Whether `n` more tasks from a peer may be queued here: not while draining, and
    /// not past the queue capacity (queued and delayed tasks count).
    pub(super) fn room_for(&self, n: usize) -> Result<(), super::OfferRefused> {
        if self.draining {
            return Err(super::OfferRefused::Draining);
        }
        let held = self.queue.len() + self.external.queues.len() + self.delayed.len();
        if held.saturating_add(n) > self.config.queue_capacity {
            return Err(super::OfferRefused::Full);
        }
        Ok(())
    }

    /// Whether the pool stopped taking work.
    pub(super) fn draining(&self) -> bool {
        self.draining
    }

    /// Queues tasks a sweep found held by this node in the store but not in the pool.
    pub(super) fn adopt(&mut self, records: Vec<TaskRecord>) {
        let orphans: Vec<TaskRecord> = records
            .into_iter()
            .filter(|r| !self.holds(&r.id, r.lease))
            .collect();
        if !orphans.is_empty() {
            tracing::warn!(
                tasks = orphans.len(),
                "adopting tasks this node holds in the store but never received"
            );
            for record in orphans {
                self.enqueue(Job::from_record(record));
            }
        }
    }

    pub(super) fn recover(&mut self, records: Vec<TaskRecord>) {
        let mut requeued = 0usize;
        for record in records {
            if self.holds(&record.id, record.lease) {
                continue;
            }
            let died_running = record.status == TaskStatus::Running;
            if died_running && !may_retry(record.attempts, record.spec.max_retries) {
                let job = Job::from_record(record);
                let error = "the node stopped during the last attempt; retries exhausted";
                self.finish(&job, TaskStatus::Failed, None, Some(error.into()), None);
                continue;
            }
            requeued += 1;
            self.enqueue(Job::from_record(record));
        }
        if requeued > 0 {
            tracing::info!(
                tasks = requeued,
                "re-queued unfinished tasks from the store"
            );
        }
    }

    /// `job`, popped from a queue of `priority`, starts (on a worker, or leased to an
    /// HTTP worker): it is no longer queued, and its wait is observed.
    pub(super) fn left_queue(&mut self, priority: Priority, job: &Job) {
        self.queued_ids.remove(&job.id);
        self.ctx
            .metrics
            .queue_wait
            .with_label_values(&[priority.as_str()])
            .observe(job.enqueued_at.elapsed().as_secs_f64());
    }

    /// Starts queued tasks on idle workers.
    pub(super) fn dispatch(&mut self) {
        while !self.draining && !self.idle.is_empty() && !self.queue.is_empty() {
            let Some(worker) = self.idle.pop() else { break };
            let Some((priority, job)) = self.queue.pop() else {
                self.idle.push(worker);
                break;
            };
            self.left_queue(priority, &job);
            let Some(slot) = self.workers.get_mut(&worker) else {
                self.enqueue(job);
                continue;
            };
            let cancel = CancelToken::new();
            if slot
                .actor
                .cast(WorkerMessage::Run(job.clone(), cancel.clone()))
                .is_err()
            {
                // The worker is gone; its supervision event will replace it.
                self.enqueue(job);
                continue;
            }
            slot.running = Some(Running {
                job,
                cancel,
                started_at_ms: now_ms(),
            });
        }
    }

    pub(super) async fn finished(
        &mut self,
        worker: ActorId,
        report: AttemptReport,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(slot) = self.workers.get_mut(&worker) {
            slot.running = None;
            if self.workers.len() > self.target_workers {
                self.retire(worker);
            } else {
                self.idle.push(worker);
            }
        }
        self.settle(report);
        self.maybe_finish_drain();
        Ok(())
    }

    /// A write under `lease` was refused because the task moved ([`PoolMessage::Lost`]):
    /// forget the copies held under that token or an older one without any store write,
    /// cancelling an attempt if one runs.
    pub(super) fn lost(&mut self, id: &TaskId, lease: u64, holder: Option<&str>) {
        let outcome = self.forget(id, Some(lease), true);
        if outcome != CancelOutcome::NotHere {
            tracing::info!(task_id = %id, ?holder, lease, "another node holds the task; dropped it");
        }
    }

    /// A client's cancel: every copy of the task goes.
    pub(super) fn cancel(&mut self, id: &TaskId) -> CancelOutcome {
        self.forget(id, None, false)
    }

    /// Drops the copies of the task held under a lease token up to `up_to` (every copy
    /// for `None`): queued and delayed ones are removed, running ones have their cancel
    /// flag raised, and with `lost` their outcome is dropped unrecorded. `Removed` if a
    /// waiting copy went, else `Signalled` if a running one was, else `NotHere`.
    fn forget(&mut self, id: &TaskId, up_to: Option<u64>, lost: bool) -> CancelOutcome {
        let covered = |lease: u64| up_to.is_none_or(|max| lease <= max);
        let mut outcome = CancelOutcome::NotHere;
        if self.queued_ids.get(id).is_some_and(|&l| covered(l)) {
            self.queued_ids.remove(id);
            if self.queue.remove_where(|j| &j.id == id).is_none() {
                self.external.queues.remove(id);
            }
            outcome = CancelOutcome::Removed;
        }
        if self.delayed.get(id).is_some_and(|j| covered(j.lease)) {
            self.delayed.remove(id);
            outcome = CancelOutcome::Removed;
        }
        let running = self
            .workers
            .values()
            .filter_map(|s| s.running.as_ref())
            .filter(|r| &r.job.id == id && covered(r.job.lease));
        for r in running {
            r.cancel.cancel();
            if lost {
                self.lost.insert((*id, r.job.lease));
            }
            if outcome == CancelOutcome::NotHere {
                outcome = CancelOutcome::Signalled;
            }
        }
        // A leased attempt: a task that moved ends its lease at once (the worker hears
        // `stale`); a client's cancel reaches the worker in its next heartbeat.
        let leased = self.external.book.lease_of(id).map(|l| l.job.lease);
        if leased.is_some_and(covered) {
            if lost {
                self.external.book.release_task(id);
            } else if let Some(lease) = self.external.book.lease_of_mut(id) {
                lease.cancel_requested = true;
            }
            if outcome == CancelOutcome::NotHere {
                outcome = CancelOutcome::Signalled;
            }
        }
        outcome
    }

    /// Grows or shrinks the pool to `n` workers (idle ones retire first; busy ones when
    /// they finish).
    pub(super) async fn resize(&mut self, n: usize) -> Result<(), ActorProcessingErr> {
        self.target_workers = n;
        while self.workers.len() < n {
            self.spawn_worker().await?;
        }
        while self.workers.len() > n {
            let Some(worker) = self.idle.pop() else { break };
            self.retire(worker);
        }
        Ok(())
    }

    async fn spawn_worker(&mut self) -> Result<(), ActorProcessingErr> {
        let args = WorkerArgs {
            ctx: self.ctx.clone(),
            pool: self.myself.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, Worker, args, self.myself.get_cell()).await?;
        let id = actor.get_id();
        self.workers.insert(
            id,
            Slot {
                actor,
                running: None,
            },
        );
        self.idle.push(id);
        Ok(())
    }

    fn retire(&mut self, worker: ActorId) {
        self.idle.retain(|w| *w != worker);
        if let Some(slot) = self.workers.remove(&worker) {
            slot.actor.stop(Some("pool shrinking".into()));
        }
    }

    /// A worker died: replace it and settle the attempt it held.
    pub(super) async fn worker_failed(
        &mut self,
        worker: ActorId,
        reason: &str,
    ) -> Result<(), ActorProcessingErr> {
        let Some(slot) = self.workers.remove(&worker) else {
            return Ok(()); // retired on purpose
        };
        self.idle.retain(|w| *w != worker);
        self.ctx.metrics.worker_restarts.inc();
        tracing::warn!(worker = %worker, reason, "worker died; replacing it");
        if let Some(running) = slot.running {
            let report = AttemptReport {
                job: running.job,
                outcome: AttemptOutcome::Failed(format!("worker crashed: {reason}")),
                started_at_ms: running.started_at_ms,
            };
            self.settle(report);
        }
        if self.workers.len() < self.target_workers {
            self.spawn_worker().await?;
        }
        self.maybe_finish_drain();
        Ok(())
    }

    fn figures(&self) -> LoadFigures {
        let busy = self
            .workers
            .values()
            .filter(|s| s.running.is_some())
            .count();
        LoadFigures {
            incarnation: self.incarnation,
            queued: {
                let (mine, theirs) = (self.queue.depths(), self.external.queues.depths());
                [0, 1, 2].map(|i| mine[i] + theirs[i])
            },
            delayed: self.delayed.len(),
            busy,
            workers: self.workers.len(),
            capacity: self.config.queue_capacity,
            received_total: self.received_total,
            draining: self.draining,
        }
    }

    pub(super) fn load(&self) -> PoolLoad {
        let node = self.ctx.node_id.to_string();
        PoolLoad::new(node, self.config.labels.clone(), self.figures())
    }

    /// Publishes the pool's figures for the dispatcher ([`crate::handoff::LocalLoad`]):
    /// its admission view is exact right after every change, without a message.
    pub(super) fn publish(&self) {
        self.ctx.local_load.publish(&self.figures());
    }

    pub(super) fn report_load(&self) {
        let load = self.figures();
        let m = &self.ctx.metrics;
        for p in Priority::ALL {
            m.queue_depth
                .with_label_values(&[p.as_str()])
                .set(load.queued[p.index()] as i64);
        }
        m.workers.with_label_values(&["busy"]).set(load.busy as i64);
        m.workers
            .with_label_values(&["idle"])
            .set((load.workers - load.busy) as i64);
        self.report_external();
        self.ctx.notifier.prune();
    }

    pub(super) fn drain(&mut self, reply: RpcReplyPort<()>) {
        self.draining = true;
        self.drain_reply = Some(reply);
        // The dispatcher places nothing more here from now, not a report period later.
        self.publish();
        self.maybe_finish_drain();
    }

    fn maybe_finish_drain(&mut self) {
        let busy =
            self.workers.values().any(|s| s.running.is_some()) || self.external.book.leases() > 0;
        if busy || self.drain_reply.is_none() {
            return;
        }
        if let Some(reply) = self.drain_reply.take() {
            let writes = self.writes.clone();
            writes.close();
            tokio::spawn(async move {
                writes.wait().await;
                let _ = reply.send(());
            });
        }
    }

    /// Stops every worker and raises the cancel flag of every running attempt: stopping
    /// an actor does not stop the kernel thread it waits on, and the runtime waits for
    /// that thread before the process can exit. The tasks stay `running` in the store
    /// and are re-run by the next pool.
    pub(super) fn stop_all_workers(&mut self) {
        for (_, slot) in self.workers.drain() {
            if let Some(running) = &slot.running {
                running.cancel.cancel();
            }
            slot.actor.stop(Some("pool stopping".into()));
        }
    }
}
