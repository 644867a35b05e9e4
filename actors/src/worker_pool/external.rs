//! Workers in any language, over HTTP: the pool's side of external kinds.
//!
//! A task of an external kind ([`Registry::is_external`]) is held by the pool like any
//! other — stored, queued by priority, retried, cancelled, moved when its node is lost —
//! but waits in [`queues::ExternalQueues`] until a registered worker process polls for
//! it, and its attempt runs under a lease ([`book::Book`]) instead of on a worker actor:
//!
//! ```text
//! POST /v1/workers ──────────────► Register ── a worker id, the lease period
//! POST /v1/workers/{w}/poll ─────► Poll ────── leases at once, or parks until a task
//!                                              of its kinds is queued (or the wait ends)
//! POST /v1/workers/{w}/heartbeat ► Heartbeat ─ ok | cancel_requested | stale per token
//! POST /v1/tasks/{id}/complete ──► Report ──── the attempt's terminal write, or a retry
//! DELETE /v1/workers/{w} ────────► Leave ───── its leases go back to the queue
//! ```
//!
//! An attempt is recorded `running` (fenced) when its lease is granted. A worker silent
//! for the lease period loses its leases: each attempt fails with `lease_expired` and is
//! retried like any failure. A report quoting a token that is not a live lease here is
//! refused without a write; the store's fence refuses it too, since every requeue and
//! every move of a task changes its lease token.
//!
//! [`Registry::is_external`]: taskmesh_kernels::Registry::is_external

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::RpcReplyPort;
use taskmesh_kernels::Progress;

use super::PoolMessage;
use super::state::PoolState;
use super::worker::write_running;
use crate::handoff::Job;
use crate::task::{Fence, now_ms};

pub mod book;
pub mod queues;
mod request;
mod settle;

use book::{Book, Parked};
pub use book::{LeaseState, Token, WorkerId, WorkerSpec};
pub use request::{
    Grant, PollAnswer, Registration, Report, Reported, UnknownWorker, WorkerOutcome, WorkerRequest,
};

/// The pool's external side: the workers and their leases, and the queued tasks.
#[derive(Debug)]
pub struct External {
    /// Workers, leases, parked polls.
    pub book: Book<RpcReplyPort<PollAnswer>>,
    /// External tasks waiting for a worker.
    pub queues: queues::ExternalQueues,
}

impl External {
    /// Nothing registered, nothing queued; workers keep leases for `lease_period`.
    pub fn new(lease_period: Duration) -> Self {
        Self {
            book: Book::new(lease_period),
            queues: queues::ExternalQueues::default(),
        }
    }

    /// How often leases and silent workers are checked: a tenth of the lease period,
    /// between 50 and 250 ms (task timeouts are enforced to this precision).
    pub fn check_every(&self) -> Duration {
        (self.book.lease_period() / 10).clamp(Duration::from_millis(50), Duration::from_millis(250))
    }
}

impl PoolState {
    /// Handles one request of an HTTP worker.
    pub(super) fn worker_request(&mut self, request: WorkerRequest) {
        let now = Instant::now();
        match request {
            WorkerRequest::Register(spec, reply) => {
                let id: WorkerId = format!("w-{:016x}", rand::random::<u64>()).into();
                tracing::info!(worker = %id, name = %spec.name, kinds = ?spec.kinds, slots = spec.slots, "worker registered");
                self.external.book.register(Arc::clone(&id), spec, now);
                let lease_ms = self.external.book.lease_period().as_millis() as u64;
                let _ = reply.send(Registration {
                    worker_id: id,
                    lease_ms,
                    heartbeat_ms: (lease_ms / 5).max(1),
                });
                self.workers_changed();
            }
            WorkerRequest::Poll {
                worker,
                max,
                wait,
                reply,
            } => self.poll(&worker, max, wait, reply, now),
            WorkerRequest::Heartbeat {
                worker,
                tokens,
                progress,
                reply,
            } => {
                if self.external.book.touch(&worker, now).is_none() {
                    let _ = reply.send(Err(UnknownWorker));
                    return;
                }
                let _ = reply.send(Ok(self.external.book.states(&worker, &tokens)));
                for (token, progress) in progress {
                    self.record_progress(&worker, &token, progress);
                }
            }
            WorkerRequest::Report {
                worker,
                reports,
                reply,
            } => {
                if let Some(w) = &worker
                    && self.external.book.touch(w, now).is_none()
                {
                    let _ = reply.send(Err(UnknownWorker));
                    return;
                }
                let answers = reports
                    .into_iter()
                    .map(|r| self.report(worker.as_deref(), r))
                    .collect();
                let _ = reply.send(Ok(answers));
            }
            WorkerRequest::Leave { worker, reply } => {
                let Some((leases, parked)) = self.external.book.deregister(&worker) else {
                    let _ = reply.send(Err(UnknownWorker));
                    return;
                };
                if let Some(parked) = parked {
                    let _ = parked.reply.send(Ok(Vec::new()));
                }
                tracing::info!(%worker, leases = leases.len(), "worker left; its leases go back to the queue");
                for lease in leases {
                    self.give_back(lease);
                }
                let _ = reply.send(Ok(()));
                self.workers_changed();
            }
        }
    }

    fn poll(
        &mut self,
        worker: &str,
        max: usize,
        wait: Duration,
        reply: RpcReplyPort<PollAnswer>,
        now: Instant,
    ) {
        if self.external.book.touch(worker, now).is_none() {
            let _ = reply.send(Err(UnknownWorker));
            return;
        }
        let id: WorkerId = worker.into();
        let free = max.min(self.external.book.free_slots(worker));
        let grants = self.lease_out(&id, free, now);
        // A poll with no free slot parks too: it is answered once a slot frees (its
        // worker reports) and a task is queued, so a client never spins.
        if !grants.is_empty() || wait.is_zero() {
            let _ = reply.send(Ok(grants));
            return;
        }
        let (seq, replaced) = self.external.book.park(worker, max, reply, now);
        if let Some(old) = replaced {
            let _ = old.send(Ok(Vec::new()));
        }
        self.myself
            .send_after(wait, move || PoolMessage::PollDue { worker: id, seq });
    }

    /// A parked poll's wait ran out: it answers empty.
    pub(super) fn poll_due(&mut self, worker: &str, seq: u64) {
        if let Some(parked) = self.external.book.unpark(worker, Some(seq)) {
            self.observe_poll_wait(&parked);
            let _ = parked.reply.send(Ok(Vec::new()));
        }
    }

    fn observe_poll_wait(&self, parked: &Parked<RpcReplyPort<PollAnswer>>) {
        self.ctx
            .metrics
            .external
            .poll_wait
            .observe(parked.since.elapsed().as_secs_f64());
    }

    /// Leases queued tasks to parked polls, after every message (nothing when no poll is
    /// parked or no external task waits).
    pub(super) fn serve_parked(&mut self) {
        if self.external.queues.is_empty() || self.draining {
            return;
        }
        let parked: Vec<WorkerId> = self
            .external
            .book
            .parked()
            .map(|(id, _)| Arc::clone(id))
            .collect();
        let now = Instant::now();
        for id in parked {
            let parked = self.external.book.parked_of(&id);
            let Some((max, closed)) = parked.map(|p| (p.max, p.reply.is_closed())) else {
                continue;
            };
            let max = max.min(self.external.book.free_slots(&id));
            if closed {
                // The worker hung up on this poll: it gets nothing.
                self.external.book.unpark(&id, None);
                continue;
            }
            let grants = self.lease_out(&id, max, now);
            if grants.is_empty() {
                continue;
            }
            if let Some(parked) = self.external.book.unpark(&id, None) {
                self.observe_poll_wait(&parked);
                if let Err(ractor::MessagingErr::SendErr(Ok(grants))) =
                    parked.reply.send(Ok(grants))
                {
                    // The poll's caller is gone: the tasks go back without using an attempt.
                    for grant in grants {
                        if let Some(lease) = self.external.book.release(&grant.token) {
                            self.give_back(lease);
                        }
                    }
                }
            }
            if self.external.queues.is_empty() {
                break;
            }
        }
    }

    /// Takes up to `max` queued tasks of the worker's kinds and leases them to it,
    /// recording each attempt as running.
    fn lease_out(&mut self, worker: &WorkerId, max: usize, now: Instant) -> Vec<Grant> {
        if self.draining {
            return Vec::new();
        }
        let registered = self.external.book.worker(worker);
        let Some((kinds, class)) = registered.map(|w| (w.spec.kinds.clone(), w.spec.class.clone()))
        else {
            return Vec::new();
        };
        let mut grants = Vec::new();
        while grants.len() < max {
            let Some((priority, job)) = self.external.queues.pop_for(&kinds, class.as_deref())
            else {
                break;
            };
            self.left_queue(priority, &job);
            let started_at_ms = now_ms();
            let token = self
                .external
                .book
                .grant(worker, job.clone(), now, started_at_ms);
            self.record_start(&job, started_at_ms);
            grants.push(Grant {
                id: job.id,
                kind: job.spec.kind.clone(),
                params: job.spec.params.clone(),
                attempt: job.attempts + 1,
                token,
                timeout_ms: job.spec.timeout_ms,
            });
        }
        grants
    }

    /// Records the leased attempt as running, without waiting; if the task moved since
    /// the pool was given it, the pool is told ([`PoolMessage::Lost`]) and the lease ends.
    fn record_start(&self, job: &Job, started_at_ms: u64) {
        let write = write_running(
            &self.ctx,
            &self.myself,
            job,
            job.attempts + 1,
            started_at_ms,
        );
        self.writes.spawn(write);
    }

    /// Writes a leased attempt's progress, fenced, without waiting.
    fn record_progress(&self, worker: &str, token: &Token, progress: Progress) {
        let Some(lease) = self.external.book.lease(token) else {
            return;
        };
        if &*lease.worker != worker {
            return;
        }
        let (store, id, node) = (
            self.ctx.store.clone(),
            lease.job.id,
            self.ctx.node_id.clone(),
        );
        let lease = lease.job.lease;
        self.writes.spawn(async move {
            let fence = Fence::new(&node, lease);
            if let Err(e) = store.progress(&id, fence, progress).await {
                tracing::debug!(task_id = %id, error = %e, "recording progress failed");
            }
        });
    }

    /// The worker set changed: the kinds served here and the classes of their workers
    /// go to placement ([`crate::handoff::LocalLoad`]).
    pub(super) fn workers_changed(&self) {
        let unserved: Vec<String> = self
            .ctx
            .kernels
            .external_kinds()
            .filter(|k| !self.external.book.serves(k))
            .map(str::to_owned)
            .collect();
        let mut labels = self.config.labels.clone();
        labels.extend(self.external.book.classes());
        labels.sort();
        labels.dedup();
        self.ctx.local_load.external_changed(&labels, &unserved);
    }

    /// Refreshes the external gauges.
    pub(super) fn report_external(&self) {
        let m = &self.ctx.metrics.external;
        let waiting = self.external.queues.per_kind();
        for kind in self.ctx.kernels.external_kinds() {
            let workers = self
                .external
                .book
                .workers()
                .filter(|(_, w)| w.spec.kinds.iter().any(|k| k == kind))
                .count();
            m.workers.with_label_values(&[kind]).set(workers as i64);
            let queued = waiting.get(kind).copied().unwrap_or(0);
            let stranded = if workers == 0 { queued } else { 0 };
            m.unserved_tasks
                .with_label_values(&[kind])
                .set(stranded as i64);
        }
        m.leases.set(self.external.book.leases() as i64);
        m.parked_polls
            .set(self.external.book.parked().count() as i64);
    }
}
